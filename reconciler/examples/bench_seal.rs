//! Seal benchmark: 8 sandbox shards under a steady write load, 20 deployments in a row, each a
//! small non-instant change of the table being written (odd deployments add a column with an
//! index, even ones drop them again; every plan differs, so every deployment gets its own id).
//!
//! Each deployment is the real product path: the built binary,
//! `schemagate --log-level info --log-json apply --repo DIR --yes --seal auto --allow-unsafe
//! --format json`. Measured:
//!
//! - the seal skew each deployment records (`seal_skew_ms` of apply's JSON: last shard's
//!   cut-over minus the first, on the controller's clock) — p50 and p99 over the deployments;
//! - the latency of every write of every writer (one connection per shard, autocommit INSERTs
//!   and UPDATEs at a fixed rate, each writer on a thread of its own): the longest write during
//!   the seal windows (from apply printing "gate open" to apply exiting), during staging (apply
//!   start to gate open), and before the first deployment (baseline);
//! - as a cross-check of the skew, the spread of the moments at which each shard's longest
//!   write of a seal window completed (when that shard let writes through again).
//!
//! `TRACE=1` adds one more connection per shard that polls `information_schema.PROCESSLIST`
//! every `TRACE_MS` (5) during deployments; the longest writes are then listed with the
//! statements that ran on their shard meanwhile (which DDL, lock or copy chunk they waited
//! for). The polling adds load: use it to explain stalls, not to measure them.
//!
//! Run with `bench/seal.sh`, or build the binary first (`cargo build --release --bin
//! schemagate`) and `cargo run --release -p reconciler --example bench_seal`.
//! Settings (environment): `SHARDS` (8), `DEPLOYMENTS` (20), `ROWS` (20000 per shard),
//! `RATE` (300 writes/s per shard), `BASELINE_SECS` (5), `PAUSE_MS` (1000, between
//! deployments), `SCHEMAGATE` (the binary; default `target/release/schemagate`), `APPLY_ARGS`
//! (extra arguments for apply, e.g. `--lock-budget-ms 50`), `TRACE`/`TRACE_MS`, `RESULTS` (a
//! JSON file with every deployment, the latency summaries and apply's log lines), `SAME_TAG=1`
//! (odd deployments all add the same column `tag_1`: their plans are identical).

mod bench;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{env_or, loadavg, log};
use mysql_async::prelude::*;
use reconciler::sandbox::Sandbox;
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error + Send + Sync>;

const KEYSPACE: &str = "app";
const DB: &str = "app";

/// The desired `events` table: the base definition, plus `tag_<n>` and its index when given.
fn events_sql(tag: Option<usize>) -> String {
    let (column, key) = match tag {
        Some(n) => (
            format!("  tag_{n} varchar(16) DEFAULT NULL,\n"),
            format!(",\n  KEY idx_tag_{n} (tag_{n})"),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "CREATE TABLE events (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  account_id int NOT NULL,
  kind varchar(32) NOT NULL,
  amount int NOT NULL,
  created_at datetime NOT NULL,
{column}  PRIMARY KEY (id),
  KEY idx_account (account_id){key}
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
"
    )
}

/// Vitess-style key-range names: `-20`, `20-40`, …, `e0-`.
fn shard_name(i: usize, n: usize) -> String {
    let lo = i * 256 / n;
    let hi = (i + 1) * 256 / n;
    let mut name = String::from("-");
    if i > 0 {
        name = format!("{lo:02x}{name}");
    }
    if i + 1 < n {
        name = format!("{name}{hi:02x}");
    }
    name
}

fn write_repo(dir: &Path, dsns: &[String], tag: Option<usize>) -> Result<(), Error> {
    let mut config = format!("keyspaces:\n  {KEYSPACE}:\n    database: {DB}\n    shards:\n");
    for (i, dsn) in dsns.iter().enumerate() {
        config.push_str(&format!(
            "      - name: \"{}\"\n        dsn: {dsn}\n",
            shard_name(i, dsns.len())
        ));
    }
    std::fs::write(dir.join("schemagate.yaml"), config)?;
    let schemas = dir.join("schemas").join(KEYSPACE);
    std::fs::create_dir_all(&schemas)?;
    std::fs::write(schemas.join("events.sql"), events_sql(tag))?;
    Ok(())
}

/// One write: when it started (seconds since the epoch of the run), how long it took.
#[derive(Clone, Copy)]
struct Write {
    start: f64,
    ms: f64,
    ok: bool,
}

impl Write {
    fn end(&self) -> f64 {
        self.start + self.ms / 1000.0
    }

    fn overlaps(&self, from: f64, to: f64) -> bool {
        self.start <= to && self.end() >= from
    }
}

struct WriterResult {
    writes: Vec<Write>,
    /// The first errors, with the start of the failed write.
    errors: Vec<(f64, String)>,
    connection_id: u64,
}

/// Autocommit INSERTs and UPDATEs at `rate` per second on one connection, until `stop`.
fn writer(
    dsn: String,
    rate: f64,
    rows: u64,
    seed: u64,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> Result<WriterResult, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let opts = mysql_async::Opts::from_url(&format!("{dsn}/{DB}")).map_err(|e| e.to_string())?;
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .map_err(|e| e.to_string())?;
        let connection_id = conn.id() as u64;
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut writes = Vec::with_capacity((rate * 600.0) as usize);
        let mut errors = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            ticker.tick().await;
            let started = Instant::now();
            let result = if rand(2) == 0 {
                conn.exec_drop(
                    "INSERT INTO events (account_id, kind, amount, created_at) VALUES (?, ?, ?, NOW())",
                    (rand(10_000), "write", rand(1000)),
                )
                .await
            } else {
                conn.exec_drop(
                    "UPDATE events SET amount = amount + 1 WHERE id = ?",
                    (1 + rand(rows),),
                )
                .await
            };
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if let Err(e) = &result {
                if errors.len() < 20 {
                    errors.push(((started - epoch).as_secs_f64(), e.to_string()));
                }
            }
            writes.push(Write {
                start: (started - epoch).as_secs_f64(),
                ms,
                ok: result.is_ok(),
            });
        }
        let _ = conn.disconnect().await;
        Ok(WriterResult {
            writes,
            errors,
            connection_id,
        })
    })
}

/// `ID, STATE, TIME_MS, INFO` as read.
type ProcessRow = (u64, Option<String>, Option<String>, Option<String>);

/// One look at a shard's processlist: (connection id, state, seconds in it, statement).
struct Snapshot {
    at: f64,
    rows: Vec<(u64, String, f64, String)>,
}

/// Polls the processlist every `every` while `active` (TRACE=1).
fn tracer(
    dsn: String,
    every: Duration,
    epoch: Instant,
    active: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Result<Vec<Snapshot>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let opts = mysql_async::Opts::from_url(&dsn).map_err(|e| e.to_string())?;
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if !active.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let at = epoch.elapsed().as_secs_f64();
            let rows: Vec<ProcessRow> = conn
                .query(
                    "SELECT ID, STATE, CAST(TIME_MS AS CHAR), LEFT(INFO, 140) \
                     FROM information_schema.PROCESSLIST \
                     WHERE COMMAND NOT IN ('Sleep', 'Daemon') AND ID <> CONNECTION_ID()",
                )
                .await
                .map_err(|e| e.to_string())?;
            let rows: Vec<_> = rows
                .into_iter()
                .map(|(id, state, ms, info)| {
                    (
                        id,
                        state.unwrap_or_default(),
                        ms.and_then(|m| m.parse().ok()).unwrap_or(0.0),
                        info.unwrap_or_default()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                })
                .collect();
            if !rows.is_empty() {
                out.push(Snapshot { at, rows });
            }
            tokio::time::sleep(every).await;
        }
        Ok(out)
    })
}

/// A line apply printed on stderr, with when it arrived.
struct LogLine {
    at: f64,
    text: String,
}

/// A JSON log line as `LEVEL message key=value …`; other lines as they are.
fn render_log(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    let level = v["level"].as_str().unwrap_or("");
    let fields = v["fields"].as_object();
    let message = fields
        .and_then(|f| f.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let rest: Vec<String> = fields
        .map(|f| {
            f.iter()
                .filter(|(k, _)| k.as_str() != "message")
                .map(|(k, v)| match v.as_str() {
                    Some(s) => format!("{k}={s}"),
                    None => format!("{k}={v}"),
                })
                .collect()
        })
        .unwrap_or_default();
    format!("{level} {message} {}", rest.join(" "))
        .trim()
        .to_string()
}

#[derive(Debug, Clone, serde::Serialize)]
struct DeploymentResult {
    n: usize,
    id: String,
    change: String,
    load: String,
    /// Seconds since the epoch of the run.
    started: f64,
    gate_open: f64,
    ended: f64,
    staging_ms: f64,
    seal_window_ms: f64,
    seal_skew_ms: f64,
    /// Spread of the completion times of each shard's longest write in the seal window.
    resume_skew_ms: f64,
    /// Longest write in the seal window, and on which shard.
    max_write_ms: f64,
    max_write_shard: String,
    /// Per shard: the longest write in the seal window.
    per_shard_max_ms: Vec<f64>,
    writes_over_100ms: usize,
    writes_over_200ms: usize,
    /// Longest write while staging (triggers created, copy, checksum).
    staging_max_write_ms: f64,
    /// apply's log lines during the seal window (relative to the gate opening).
    seal_log: Vec<String>,
}

/// Nearest-rank percentile.
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

struct Applied {
    json: Value,
    log: Vec<LogLine>,
    gate_open: Option<f64>,
    ended: f64,
}

/// Runs `schemagate apply` on the repository; every stderr line is timestamped on arrival.
fn apply(binary: &Path, repo: &Path, extra: &[String], epoch: Instant) -> Result<Applied, Error> {
    let mut child = Command::new(binary)
        .args(["--log-level", "info", "--log-json", "apply", "--repo"])
        .arg(repo)
        .args([
            "--yes",
            "--seal",
            "auto",
            "--allow-unsafe",
            "--format",
            "json",
        ])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {}: {e}", binary.display()))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let mut log = Vec::new();
    for line in BufReader::new(child.stderr.take().ok_or("no stderr")?)
        .lines()
        .map_while(Result::ok)
    {
        log.push(LogLine {
            at: epoch.elapsed().as_secs_f64(),
            text: line,
        });
    }
    let status = child.wait()?;
    let ended = epoch.elapsed().as_secs_f64();
    let stdout = out_reader.join().map_err(|_| "stdout reader panicked")?;
    if !status.success() {
        let lines: Vec<String> = log.iter().map(|l| render_log(&l.text)).collect();
        return Err(format!(
            "schemagate apply exited with {status}:\n{}\n{stdout}",
            lines.join("\n")
        )
        .into());
    }
    let json: Value = serde_json::from_str(&stdout)
        .map_err(|e| format!("apply printed no JSON ({e}): {stdout}"))?;
    let gate_open = log
        .iter()
        .find(|l| l.text.contains("gate open"))
        .map(|l| l.at);
    Ok(Applied {
        json,
        log,
        gate_open,
        ended,
    })
}

fn default_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("release")
        .join("schemagate")
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let shards: usize = env_or("SHARDS", 8);
    let deployments: usize = env_or("DEPLOYMENTS", 20);
    let rows: u64 = env_or("ROWS", 20_000);
    let rate: f64 = env_or("RATE", 300.0);
    let baseline_secs: f64 = env_or("BASELINE_SECS", 5.0);
    let pause = Duration::from_millis(env_or("PAUSE_MS", 1000));
    let same_tag = env_or("SAME_TAG", 0u8) == 1;
    let trace = env_or("TRACE", 0u8) == 1;
    let trace_every = Duration::from_millis(env_or("TRACE_MS", 5));
    let extra: Vec<String> = env_or("APPLY_ARGS", String::new())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let binary: PathBuf = std::env::var_os("SCHEMAGATE")
        .map(PathBuf::from)
        .unwrap_or_else(default_binary);
    if !binary.is_file() {
        return Err(format!(
            "{} not found: build it first (cargo build --release --bin schemagate) or set SCHEMAGATE",
            binary.display()
        )
        .into());
    }
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let commit = std::env::var("SG_COMMIT").unwrap_or_else(|_| "unknown".into());
    let load_start = loadavg();
    let epoch = Instant::now();

    log(format!(
        "starting {shards} sandbox servers (load {load_start}); {version} from {}",
        binary.display()
    ));
    let sandbox = Sandbox::start(shards)?;
    let dsns: Vec<String> = sandbox.servers().iter().map(|s| s.dsn()).collect();
    let server_version = sandbox.servers()[0].version().to_string();
    log(format!(
        "loading {rows} rows into {DB}.events on every shard"
    ));
    for dsn in &dsns {
        let opts = mysql_async::Opts::from_url(dsn)?;
        let mut c = mysql_async::Conn::new(opts).await?;
        c.query_drop(format!("CREATE DATABASE {DB}")).await?;
        c.query_drop(format!("USE {DB}")).await?;
        c.query_drop(events_sql(None)).await?;
        c.query_drop(format!(
            "INSERT INTO events (account_id, kind, amount, created_at) \
             SELECT seq % 10000, 'seed', seq % 1000, '2024-01-01' + INTERVAL seq MINUTE \
             FROM seq_1_to_{rows}"
        ))
        .await?;
        c.disconnect().await?;
    }
    let repo = tempfile::tempdir()?;
    write_repo(repo.path(), &dsns, None)?;

    log(format!(
        "starting {shards} writers at {rate} writes/s each; {baseline_secs}s baseline"
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = dsns
        .iter()
        .enumerate()
        .map(|(i, dsn)| {
            let (dsn, stop) = (dsn.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("writer-{i}"))
                .spawn(move || writer(dsn, rate, rows, i as u64 + 1, epoch, stop))
        })
        .collect::<Result<_, _>>()?;
    let tracing_active = Arc::new(AtomicBool::new(false));
    let tracers: Vec<_> = if trace {
        dsns.iter()
            .enumerate()
            .map(|(i, dsn)| {
                let (dsn, stop, active) = (dsn.clone(), stop.clone(), tracing_active.clone());
                std::thread::Builder::new()
                    .name(format!("tracer-{i}"))
                    .spawn(move || tracer(dsn, trace_every, epoch, active, stop))
            })
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let baseline_from = epoch.elapsed().as_secs_f64() + 1.0;
    tokio::time::sleep(Duration::from_secs_f64(baseline_secs + 1.0)).await;
    let baseline_to = epoch.elapsed().as_secs_f64();

    let mut results = Vec::new();
    let mut all_logs: Vec<(usize, f64, String)> = Vec::new();
    let mut failure = None;
    for n in 1..=deployments {
        // Odd: add tag_n with an index; even: drop the previous deployment's tag column.
        // SAME_TAG=1 reuses tag_1 every time, so deployments 1, 3, 5, … have identical plans.
        let t = if same_tag { 1 } else { n - (n + 1) % 2 };
        let (tag, change) = if n % 2 == 1 {
            (Some(t), format!("add tag_{t} + idx_tag_{t}"))
        } else {
            (None, format!("drop tag_{t} + idx_tag_{t}"))
        };
        write_repo(repo.path(), &dsns, tag)?;
        let load = loadavg();
        let started = epoch.elapsed().as_secs_f64();
        tracing_active.store(true, Ordering::Relaxed);
        let outcome = {
            let (binary, repo, extra) = (binary.clone(), repo.path().to_path_buf(), extra.clone());
            tokio::task::spawn_blocking(move || apply(&binary, &repo, &extra, epoch)).await?
        };
        tracing_active.store(false, Ordering::Relaxed);
        let applied = match outcome {
            Ok(a) => a,
            Err(e) => {
                log(format!("deployment {n} failed: {e}"));
                failure = Some(format!("deployment {n} ({change}): {e}"));
                break;
            }
        };
        all_logs.extend(applied.log.iter().map(|l| (n, l.at, render_log(&l.text))));
        let d = &applied.json["deployments"][0];
        let state = d["state"].as_str().unwrap_or("?").to_string();
        let strategies: Vec<String> = d["shards"]
            .as_array()
            .map(|shards| {
                shards
                    .iter()
                    .flat_map(|s| s["cells"].as_array().cloned().unwrap_or_default())
                    .map(|c| c["strategy"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default();
        let Some(gate_open) = applied.gate_open else {
            failure = Some(format!(
                "deployment {n} ({change}): apply never printed \"gate open\" (state {state})"
            ));
            break;
        };
        if state != "sealed"
            || strategies.len() != shards
            || strategies.iter().any(|s| s != "shadow")
        {
            failure = Some(format!(
                "deployment {n} ({change}): state {state}, strategies {strategies:?} (want {shards}× shadow)"
            ));
            break;
        }
        // Every deployment must really have changed the fleet: plan must find nothing left.
        let check = Command::new(&binary)
            .args(["plan", "--repo"])
            .arg(repo.path())
            .env_remove("RUST_LOG")
            .output()?;
        if check.status.code() != Some(0) {
            let id = d["id"].as_str().unwrap_or("?");
            let again = results
                .iter()
                .find(|r: &&DeploymentResult| r.id == id)
                .map(|r| format!("; it has the id of deployment {} (same plan text)", r.n))
                .unwrap_or_default();
            failure = Some(format!(
                "deployment {n} ({change}): apply reported {state} (id {id}) but the fleet does \
                 not match the desired state afterwards (plan exit {:?}){again}",
                check.status.code()
            ));
            break;
        }
        let seal_log = applied
            .log
            .iter()
            .filter(|l| l.at >= gate_open)
            .map(|l| {
                format!(
                    "+{:.0}ms {}",
                    (l.at - gate_open) * 1000.0,
                    render_log(&l.text)
                )
            })
            .filter(|l| !l.contains("gate open"))
            .collect();
        results.push(DeploymentResult {
            n,
            id: d["id"].as_str().unwrap_or("?").to_string(),
            change,
            load,
            started,
            gate_open,
            ended: applied.ended,
            staging_ms: (gate_open - started) * 1000.0,
            seal_window_ms: (applied.ended - gate_open) * 1000.0,
            seal_skew_ms: d["seal_skew_ms"].as_f64().unwrap_or(f64::NAN),
            resume_skew_ms: f64::NAN,
            max_write_ms: 0.0,
            max_write_shard: String::new(),
            per_shard_max_ms: vec![],
            writes_over_100ms: 0,
            writes_over_200ms: 0,
            staging_max_write_ms: 0.0,
            seal_log,
        });
        if let Some(r) = results.last() {
            log(format!(
                "deployment {n:2}/{deployments} {:<24} id {}  apply→gate {:6.0} ms  \
                 seal window {:5.0} ms  skew {:6.2} ms  (load {})",
                r.change, r.id, r.staging_ms, r.seal_window_ms, r.seal_skew_ms, r.load
            ));
        }
        tokio::time::sleep(pause).await;
    }
    stop.store(true, Ordering::Relaxed);
    let writer_results: Vec<WriterResult> = writers
        .into_iter()
        .map(|w| {
            w.join()
                .map_err(|_| "a writer panicked".to_string())
                .and_then(|r| r)
        })
        .collect::<Result<_, _>>()?;
    let traces: Vec<Vec<Snapshot>> = tracers
        .into_iter()
        .map(|t| {
            t.join()
                .map_err(|_| "a tracer panicked".to_string())
                .and_then(|r| r)
        })
        .collect::<Result<_, _>>()?;
    let load_end = loadavg();

    // Final check: the fleet matches the last desired state (every change really happened).
    let check = Command::new(&binary)
        .args(["plan", "--repo"])
        .arg(repo.path())
        .env_remove("RUST_LOG")
        .output()?;
    let converged = check.status.code() == Some(0);

    // Attribute writes to windows.
    for r in results.iter_mut() {
        let (from, to) = (r.gate_open, r.ended);
        let mut resumes = Vec::new();
        for (i, w) in writer_results.iter().enumerate() {
            let in_window: Vec<&Write> = w.writes.iter().filter(|x| x.overlaps(from, to)).collect();
            let longest = in_window.iter().max_by(|a, b| a.ms.total_cmp(&b.ms));
            let ms = longest.map_or(0.0, |x| x.ms);
            if let Some(x) = longest {
                resumes.push(x.end());
            }
            if ms > r.max_write_ms {
                r.max_write_ms = ms;
                r.max_write_shard = shard_name(i, shards);
            }
            r.per_shard_max_ms.push(ms);
            r.writes_over_100ms += in_window.iter().filter(|x| x.ms > 100.0).count();
            r.writes_over_200ms += in_window.iter().filter(|x| x.ms > 200.0).count();
            let staging = w
                .writes
                .iter()
                .filter(|x| x.overlaps(r.started, r.gate_open))
                .map(|x| x.ms)
                .fold(0.0, f64::max);
            r.staging_max_write_ms = r.staging_max_write_ms.max(staging);
        }
        if resumes.len() == shards {
            let lo = resumes.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = resumes.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            r.resume_skew_ms = (hi - lo) * 1000.0;
        }
    }

    let phase_of = |at: f64| -> (Option<usize>, &'static str) {
        for r in &results {
            if at >= r.gate_open && at <= r.ended {
                return (Some(r.n), "seal");
            }
            if at >= r.started && at < r.gate_open {
                return (Some(r.n), "staging");
            }
        }
        (None, "outside")
    };
    let all: Vec<&Write> = writer_results.iter().flat_map(|w| &w.writes).collect();
    let in_seal = |w: &Write| results.iter().any(|r| w.overlaps(r.gate_open, r.ended));
    let in_staging = |w: &Write| results.iter().any(|r| w.overlaps(r.started, r.gate_open));
    let pick = |pred: &dyn Fn(&Write) -> bool| -> Vec<f64> {
        all.iter().filter(|w| pred(w)).map(|w| w.ms).collect()
    };
    let baseline = pick(&|w| w.start >= baseline_from && w.end() <= baseline_to);
    let seal_lat = pick(&in_seal);
    let staging_lat = pick(&|w| in_staging(w) && !in_seal(w));
    let overall = pick(&|_| true);
    let failed = |pred: &dyn Fn(&Write) -> bool| all.iter().filter(|w| !w.ok && pred(w)).count();
    let failed_writes = failed(&|_| true);
    let skews: Vec<f64> = results.iter().map(|r| r.seal_skew_ms).collect();
    let resume_skews: Vec<f64> = results
        .iter()
        .map(|r| r.resume_skew_ms)
        .filter(|x| x.is_finite())
        .collect();
    let windows: Vec<f64> = results.iter().map(|r| r.seal_window_ms).collect();
    let max_seal_stall = results.iter().map(|r| r.max_write_ms).fold(0.0, f64::max);
    let max_staging = results
        .iter()
        .map(|r| r.staging_max_write_ms)
        .fold(0.0, f64::max);
    let max_overall = overall.iter().copied().fold(0.0, f64::max);

    println!();
    println!(
        "seal benchmark: {shards} shards, {} of {deployments} deployments sealed, {rows} rows per shard, \
         {rate} writes/s per shard (autocommit INSERT/UPDATE on the table being changed)",
        results.len()
    );
    println!(
        "{version} (commit {commit}), {} {}",
        binary.display(),
        extra.join(" ")
    );
    println!(
        "server {server_version}; {} CPUs; load average at start {load_start}, at end {load_end}{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if trace {
            "; TRACE on (processlist polling adds load)"
        } else {
            ""
        }
    );
    println!();
    println!(
        "{:>3} {:<24} {:>10} {:>9} {:>9} {:>10} {:>10} {:>7} {:>12}",
        "#",
        "change",
        "apply→gate",
        "window",
        "skew",
        "resume",
        "max write",
        "shard",
        "staging max"
    );
    for r in &results {
        println!(
            "{:>3} {:<24} {:>8.0}ms {:>7.0}ms {:>7.2}ms {:>8.1}ms {:>8.1}ms {:>7} {:>10.1}ms",
            r.n,
            r.change,
            r.staging_ms,
            r.seal_window_ms,
            r.seal_skew_ms,
            r.resume_skew_ms,
            r.max_write_ms,
            r.max_write_shard,
            r.staging_max_write_ms
        );
    }
    println!(
        "(apply→gate: process start, plan, staging; window: \"gate open\" → apply exited; \
         resume: spread of the moments each shard's longest write of the window finished)"
    );
    println!();
    println!(
        "seal skew (seal_skew_ms): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms  (nearest rank over {}: p99 is the maximum)",
        percentile(&skews, 50.0),
        percentile(&skews, 99.0),
        percentile(&skews, 100.0),
        skews.len()
    );
    println!(
        "resume skew seen by the writers: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&resume_skews, 50.0),
        percentile(&resume_skews, 99.0)
    );
    println!(
        "seal window: p50 {:.0} ms, max {:.0} ms",
        percentile(&windows, 50.0),
        percentile(&windows, 100.0)
    );
    for (name, v) in [
        ("baseline (no deployment)", &baseline),
        ("staging (not sealing)", &staging_lat),
        ("seal windows", &seal_lat),
        ("overall", &overall),
    ] {
        println!(
            "write latency, {name:<25} n={:<7} p50 {:6.2} ms  p99 {:7.2} ms  p99.9 {:7.2} ms  max {:7.1} ms",
            v.len(),
            percentile(v, 50.0),
            percentile(v, 99.0),
            percentile(v, 99.9),
            percentile(v, 100.0)
        );
    }
    println!(
        "failed writes: {failed_writes} of {} (during staging {}, during seal windows {}, elsewhere {})",
        all.len(),
        failed(&|w| in_staging(w) && !in_seal(w)),
        failed(&in_seal),
        failed(&|w| !in_staging(w) && !in_seal(w)),
    );
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for w in &writer_results {
        for (_, e) in &w.errors {
            match kinds.iter_mut().find(|(k, _)| k == e) {
                Some((_, n)) => *n += 1,
                None => kinds.push((e.clone(), 1)),
            }
        }
    }
    for (e, n) in &kinds {
        println!("  {n}× (of the first 20 per writer) {e}");
    }
    println!(
        "plan finds nothing left to do after every deployment: {}",
        if converged { "yes" } else { "NO" }
    );
    println!();
    println!(
        "goal skew p99 < 100 ms: {}",
        if percentile(&skews, 99.0) < 100.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "goal no write stalled > 200 ms: seal windows {} (longest {max_seal_stall:.1} ms); \
         overall {} (longest {max_overall:.1} ms; staging {max_staging:.1} ms)",
        if max_seal_stall <= 200.0 {
            "met"
        } else {
            "NOT met"
        },
        if max_overall <= 200.0 {
            "met"
        } else {
            "NOT met"
        },
    );
    println!();
    println!("apply's log during the seal windows (INFO and above, ms after \"gate open\"):");
    for r in &results {
        for l in &r.seal_log {
            println!("  #{:<2} {l}", r.n);
        }
    }

    if trace {
        // The longest writes of each phase, with what else ran on their shard meanwhile.
        let mut longest: Vec<(usize, &Write)> = writer_results
            .iter()
            .enumerate()
            .flat_map(|(i, w)| w.writes.iter().map(move |x| (i, x)))
            .filter(|(_, x)| x.ms > 50.0)
            .collect();
        longest.sort_by(|a, b| b.1.ms.total_cmp(&a.1.ms));
        println!();
        println!("TRACE: the longest writes and the other statements on their shard meanwhile:");
        for phase in ["seal", "staging", "outside"] {
            for (i, w) in longest
                .iter()
                .filter(|(_, w)| phase_of(w.start).1 == phase)
                .take(6)
            {
                let (n, _) = phase_of(w.start);
                println!(
                    "  {:.1} ms write on {} at {:.3}s (deployment {}, {phase}):",
                    w.ms,
                    shard_name(*i, shards),
                    w.start,
                    n.map_or("-".to_string(), |n| n.to_string())
                );
                let me = writer_results[*i].connection_id;
                let mut seen: Vec<(String, f64, f64)> = Vec::new();
                for s in traces[*i]
                    .iter()
                    .filter(|s| s.at >= w.start - 0.005 && s.at <= w.end() + 0.005)
                {
                    for (id, state, _, info) in &s.rows {
                        let who = if *id == me { "writer" } else { "other" };
                        let key = format!(
                            "[{who}] {state}: {}",
                            info.chars().take(110).collect::<String>()
                        );
                        let rel = (s.at - w.start) * 1000.0;
                        match seen.iter_mut().find(|(k, _, _)| *k == key) {
                            Some((_, _, last)) => *last = rel,
                            None => seen.push((key, rel, rel)),
                        }
                    }
                }
                for (key, first, last) in seen.iter().take(12) {
                    println!("      {first:+6.0}..{last:+6.0} ms  {key}");
                }
            }
        }
    }

    if let Some(f) = &failure {
        println!();
        println!("STOPPED EARLY: {f}");
    }
    if let Ok(path) = std::env::var("RESULTS") {
        if !path.is_empty() {
            let doc = json!({
                "shards": shards, "deployments": deployments, "rows": rows, "rate": rate,
                "server": server_version, "schemagate": version, "commit": commit,
                "apply_args": extra, "load_start": load_start, "load_end": load_end,
                "trace": trace, "results": results, "failure": failure,
                "failed_writes": failed_writes, "converged": converged,
                "latency_ms": {
                    "baseline": [percentile(&baseline, 50.0), percentile(&baseline, 99.0), percentile(&baseline, 100.0)],
                    "staging": [percentile(&staging_lat, 50.0), percentile(&staging_lat, 99.0), percentile(&staging_lat, 100.0)],
                    "seal": [percentile(&seal_lat, 50.0), percentile(&seal_lat, 99.0), percentile(&seal_lat, 100.0)],
                    "overall": [percentile(&overall, 50.0), percentile(&overall, 99.0), percentile(&overall, 100.0)],
                },
                "apply_log": all_logs,
            });
            std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
        }
    }
    drop(sandbox);
    if failure.is_some() {
        std::process::exit(1);
    }
    Ok(())
}
