//! Copy benchmark: the same non-instant ALTER of a 1,000,000-row table, three ways, on one
//! sandbox server, in one run:
//!
//! - `schemagate`: the shadow strategy as `apply` stages a cell on a shard without replicas
//!   ([`Shadow::prepare`], then [`Shadow::copy`] with the default [`CopyOptions`], which
//!   checksums behind the copy and adds the deferred secondary index); time to `ready`.
//! - `pt-osc`: `pt-online-schema-change --execute` at its defaults (chunk-time 0.5 s), from
//!   start to exit, with its phases taken from its (autoflushed) progress lines.
//! - `native`: `ALTER TABLE … ALGORITHM=COPY`, the server's own copy (blocks writes: the floor).
//!
//! Every contender gets its own fresh copy of the same source table, made right before it runs
//! (so each starts with its table in the buffer pool), after the server has flushed its dirty
//! pages and purged its undo history. Rounds rotate the order.
//!
//! Run with `bench/copy.sh`, or `cargo run --release -p reconciler --example bench_copy`.
//! Settings (environment): `ROWS` (1000000), `ROUNDS` (5), `BUFFER_POOL_MB` (1024; 0 keeps
//! the sandbox's 128M), `REDO_LOG_MB` (512; 0 keeps the sandbox's 64M), `CONTENDERS`
//! (`schemagate,pt-osc,native`), `PTOSC` (`pt-online-schema-change`), `RESULTS` (a JSON file
//! for the raw timings), `DIAG=1` (also time single-statement variants of the copy and the
//! checksum, to show where schemagate's time goes), `RUST_LOG=reconciler=debug` (the engine's
//! chunk and index-build log lines on stderr), `COPY_THREADS` (1), `DEFER_INDEXES` (1; 0 keeps
//! the secondary index in the shadow during the copy, as on a shard with replicas).

mod bench;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench::{env_or, loadavg, log};
use mysql_async::prelude::*;
use mysql_async::Conn;
use reconciler::deploy::shadow::{CopyOptions, Shadow, ShadowSpec};
use reconciler::live::ShardConn;
use reconciler::sandbox::Sandbox;
use reconciler::source::Dsn;
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

const DB: &str = "bench";
const COLUMNS: &str = "account_id, qty, name, note, created_at";
const ALTER_CLAUSES: &str = "MODIFY COLUMN `qty` bigint(20) NOT NULL, \
                             ADD COLUMN `flags` int(11) NOT NULL DEFAULT 0";

fn create_table(name: &str) -> String {
    format!(
        "CREATE TABLE {DB}.{name} (
           id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
           account_id int(11) NOT NULL,
           qty int(11) NOT NULL,
           name varchar(64) NOT NULL,
           note varchar(255) DEFAULT NULL,
           created_at datetime NOT NULL,
           PRIMARY KEY (id),
           KEY idx_account (account_id, created_at)
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"
    )
}

async fn status_u64(c: &mut Conn, name: &str) -> Result<u64, Error> {
    let row: Option<(String, String)> = c
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .await?;
    Ok(row.and_then(|(_, v)| v.parse().ok()).unwrap_or(0))
}

/// Waits (up to 2 minutes) until the server has flushed its dirty pages and purged the undo
/// history, so that no contender pays for the previous one's background work.
async fn settle(c: &mut Conn) -> Result<(), Error> {
    let started = Instant::now();
    let before: Option<(u64, u64, f64)> = c
        .query_first(
            "SELECT @@innodb_io_capacity, @@innodb_io_capacity_max, @@innodb_max_dirty_pages_pct",
        )
        .await?;
    let (io, io_max, pct) = before.unwrap_or((200, 2000, 90.0));
    // Flush everything now, as fast as the disk allows.
    c.query_drop(
        "SET GLOBAL innodb_io_capacity_max = 100000, innodb_io_capacity = 50000, \
         innodb_max_dirty_pages_pct = 0",
    )
    .await?;
    loop {
        let dirty = status_u64(c, "Innodb_buffer_pool_pages_dirty").await?;
        let history = status_u64(c, "Innodb_history_list_length").await?;
        if (dirty < 200 && history < 1000) || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.query_drop(format!(
        "SET GLOBAL innodb_max_dirty_pages_pct = {pct}, innodb_io_capacity = {io}, \
         innodb_io_capacity_max = {io_max}"
    ))
    .await?;
    Ok(())
}

/// A fresh copy of `src` named `name`.
async fn fresh_copy(c: &mut Conn, name: &str) -> Result<(), Error> {
    c.query_drop(format!("DROP TABLE IF EXISTS {DB}.{name}"))
        .await?;
    c.query_drop(create_table(name)).await?;
    c.query_drop(format!(
        "INSERT INTO {DB}.{name} (id, {COLUMNS}) SELECT id, {COLUMNS} FROM {DB}.src ORDER BY id"
    ))
    .await?;
    c.query_drop(format!("ANALYZE TABLE {DB}.{name}")).await?;
    settle(c).await
}

/// Row count and the new definition's two columns, checked after each contender.
async fn verify(c: &mut Conn, table: &str, rows: u64) -> Result<(), Error> {
    let count: Option<u64> = c
        .query_first(format!("SELECT COUNT(*) FROM {DB}.{table}"))
        .await?;
    let create: Option<(String, String)> = c
        .query_first(format!("SHOW CREATE TABLE {DB}.{table}"))
        .await?;
    let create = create.map(|(_, s)| s).unwrap_or_default();
    if count != Some(rows)
        || !create.contains("`qty` bigint(20) NOT NULL")
        || !create.contains("`flags` int(11) NOT NULL DEFAULT 0")
    {
        return Err(format!("{table}: {count:?} rows (want {rows}), definition:\n{create}").into());
    }
    Ok(())
}

#[derive(Default, Clone, Debug, serde::Serialize)]
struct Timing {
    contender: String,
    round: usize,
    load: String,
    /// Seconds to the end state each contender reaches (schemagate: ready; the others: done).
    total: f64,
    /// The row copy alone.
    copy: f64,
    /// schemagate: prepare / after the last chunk (the deferred index, the checksum's tail);
    /// pt-osc: setup (start to first chunk) / after the copy
    /// (analyze, swap, drop old table, drop triggers).
    before: f64,
    after: f64,
    chunks: u64,
    note: String,
}

/// The defaults, with `COPY_THREADS` if set.
fn copy_options() -> CopyOptions {
    let defaults = CopyOptions::default();
    CopyOptions {
        threads: env_or("COPY_THREADS", defaults.threads),
        ..defaults
    }
}

async fn run_schemagate(
    conn: &ShardConn,
    c: &mut Conn,
    rows: u64,
    round: usize,
) -> Result<Timing, Error> {
    let table = "c_sg";
    let spec = ShadowSpec {
        database: DB.into(),
        table: table.into(),
        shadow: format!("_sgbench{round}_new_{table}"),
        trigger_prefix: format!("_sgbench{round}_tr_{table}"),
        statements: vec![format!("ALTER TABLE `{table}` {ALTER_CLAUSES}")],
        renames: vec![],
        defer_indexes: env_or("DEFER_INDEXES", 1u8) == 1,
        carry_foreign_keys: false,
    };
    let load = loadavg();
    let t0 = Instant::now();
    let shadow = Shadow::prepare(conn, spec.clone()).await?;
    let t1 = Instant::now();
    let mut chunks = 0u64;
    let mut sizes = Vec::new();
    let mut last_chunk = t1;
    let progress = shadow
        .copy(conn, None, &copy_options(), |p| {
            chunks += 1;
            sizes.push(p.chunk_size);
            last_chunk = Instant::now();
        })
        .await?;
    let t2 = Instant::now();
    verify(c, &spec.shadow, rows).await?;
    Shadow::cleanup(conn, &spec).await?;
    let largest = sizes.iter().max().copied().unwrap_or(0);
    Ok(Timing {
        contender: "schemagate".into(),
        round,
        load,
        total: (t2 - t0).as_secs_f64(),
        copy: (last_chunk - t1).as_secs_f64(),
        before: (t1 - t0).as_secs_f64(),
        after: (t2 - last_chunk).as_secs_f64(),
        chunks,
        note: format!(
            "{} rows read, largest chunk {largest} rows, {:.0} rows/s",
            progress.rows_copied, progress.rows_per_sec
        ),
    })
}

fn run_ptosc(ptosc: &str, port: u16, rows: u64, round: usize) -> Result<Timing, Error> {
    let table = "c_pt";
    let load = loadavg();
    let t0 = Instant::now();
    let mut child = Command::new(ptosc)
        .args([
            "--execute",
            "--alter",
            ALTER_CLAUSES,
            &format!("D={DB},t={table},h=127.0.0.1,P={port},u=root"),
            "--no-check-replication-filters",
            "--recursion-method=none",
            "--no-version-check",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {ptosc}: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    // pt-osc sets $OUTPUT_AUTOFLUSH: each line arrives when it is printed.
    let mut marks: Vec<(Instant, String)> = Vec::new();
    for line in BufReader::new(child.stdout.take().ok_or("no stdout")?)
        .lines()
        .map_while(Result::ok)
    {
        marks.push((Instant::now(), line));
    }
    let status = child.wait()?;
    let t_end = Instant::now();
    let stderr_text = err_reader.join().unwrap_or_default();
    if !status.success() {
        let out: Vec<&str> = marks.iter().map(|(_, l)| l.as_str()).collect();
        return Err(format!(
            "pt-online-schema-change failed ({status}):\n{}\n{stderr_text}",
            out.join("\n")
        )
        .into());
    }
    let at = |needle: &str| {
        marks
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    };
    let copy_start = at("Copying approximately").ok_or("pt-osc printed no copy start")?;
    let copy_end = at("Copied rows OK").ok_or("pt-osc printed no copy end")?;
    let analyzed = at("Analyzing new table").is_some();
    Ok(Timing {
        contender: "pt-osc".into(),
        round,
        load,
        total: (t_end - t0).as_secs_f64(),
        copy: (copy_end - copy_start).as_secs_f64(),
        before: (copy_start - t0).as_secs_f64(),
        after: (t_end - copy_end).as_secs_f64(),
        chunks: 0,
        note: format!(
            "{rows} rows; after the copy: {}swap, drop old table, drop triggers",
            if analyzed { "ANALYZE, " } else { "" }
        ),
    })
}

async fn run_native(c: &mut Conn, round: usize) -> Result<Timing, Error> {
    let load = loadavg();
    let t0 = Instant::now();
    c.query_drop(format!(
        "ALTER TABLE {DB}.c_native ALGORITHM=COPY, {ALTER_CLAUSES}"
    ))
    .await?;
    let total = t0.elapsed().as_secs_f64();
    Ok(Timing {
        contender: "native".into(),
        round,
        load,
        total,
        copy: total,
        ..Default::default()
    })
}

/// Single statements over the whole table, to attribute schemagate's time (DIAG=1): what the
/// SQL-level copy costs at best, what the native ALTER does differently, and what the checksum's
/// per-row hash costs.
async fn diagnose(c: &mut Conn) -> Result<Vec<(String, f64)>, Error> {
    let mut out = Vec::new();
    let shadow = "d_shadow";
    let cols = "id, account_id, qty, name, note, created_at";
    let src = format!("{DB}.d_src FORCE INDEX (PRIMARY)");
    fresh_copy(c, "d_src").await?;
    // (name, extra ALTER on the empty shadow, statements timed together)
    let variants: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "one INSERT … SELECT of the whole table, no lock clause",
            "",
            vec![format!("INSERT INTO {DB}.{shadow} ({cols}) SELECT {cols} FROM {src} ORDER BY id")],
        ),
        (
            "one INSERT IGNORE … SELECT … LOCK IN SHARE MODE of the whole table",
            "",
            vec![format!("INSERT IGNORE INTO {DB}.{shadow} ({cols}) SELECT {cols} FROM {src} ORDER BY id LOCK IN SHARE MODE")],
        ),
        (
            "100 chunks of 10,000 rows (schemagate's copy statement, fixed size)",
            "",
            vec![],
        ),
        (
            "bulk-insert path (unique_checks=0, foreign_key_checks=0, empty table): what ALGORITHM=COPY uses",
            "",
            vec![
                "SET SESSION unique_checks = 0, foreign_key_checks = 0".into(),
                format!("INSERT INTO {DB}.{shadow} ({cols}) SELECT {cols} FROM {src} ORDER BY id"),
                "SET SESSION unique_checks = 1, foreign_key_checks = 1".into(),
            ],
        ),
        (
            "shadow without its secondary index: INSERT … SELECT, then ADD INDEX (INPLACE, LOCK=NONE)",
            ", DROP KEY idx_account",
            vec![
                format!("INSERT IGNORE INTO {DB}.{shadow} ({cols}) SELECT {cols} FROM {src} ORDER BY id LOCK IN SHARE MODE"),
                format!("ALTER TABLE {DB}.{shadow} ADD KEY idx_account (account_id, created_at), ALGORITHM=INPLACE, LOCK=NONE"),
            ],
        ),
    ];
    for (name, alter, statements) in variants {
        for s in [
            format!("DROP TABLE IF EXISTS {DB}.{shadow}"),
            format!("CREATE TABLE {DB}.{shadow} LIKE {DB}.d_src"),
            format!("ALTER TABLE {DB}.{shadow} {ALTER_CLAUSES}{alter}"),
        ] {
            c.query_drop(s).await?;
        }
        settle(c).await?;
        let t = Instant::now();
        if statements.is_empty() {
            let mut lo = 0u64;
            loop {
                c.exec_drop(
                    format!("INSERT IGNORE INTO {DB}.{shadow} ({cols}) SELECT {cols} FROM {src} WHERE `id` > ? AND (@k := id) IS NOT NULL ORDER BY id LIMIT 10000 LOCK IN SHARE MODE"),
                    (lo,),
                )
                .await?;
                let affected = c.affected_rows();
                let last: Option<Option<u64>> = c.query_first("SELECT @k").await?;
                lo = last.flatten().unwrap_or(lo);
                if affected < 10_000 {
                    break;
                }
            }
        } else {
            for s in statements {
                c.query_drop(s).await?;
            }
        }
        out.push((name.to_string(), t.elapsed().as_secs_f64()));
        log(format!("diag: {name}: {:.2}s", t.elapsed().as_secs_f64()));
    }
    // The checksum's per-row work over one side, in one statement each.
    let quoted =
        "CONCAT_WS(',', QUOTE(CAST(`id` AS BINARY)), QUOTE(CAST(`account_id` AS BINARY)), \
                  QUOTE(CAST(`qty` AS BINARY)), QUOTE(CAST(`name` AS BINARY)), \
                  QUOTE(CAST(`note` AS BINARY)), QUOTE(CAST(`created_at` AS BINARY)))";
    let row = "CONCAT_WS(',', `id`, `account_id`, `qty`, COALESCE(LENGTH(`name`), -1), \
               CAST(`name` AS BINARY), COALESCE(LENGTH(`note`), -1), CAST(`note` AS BINARY), \
               `created_at`)";
    for (name, sql) in [
        (
            "checksum as schemagate computes it (CRC32 of the length-prefixed row), one side",
            format!("SELECT COUNT(*), BIT_XOR(CRC32({row})) FROM {src}"),
        ),
        (
            "the earlier row text (every value QUOTEd) with CRC32 and CRC32C (64 bits), one side",
            format!(
                "SELECT COUNT(*), BIT_XOR((CRC32({quoted}) << 32) | CRC32C({quoted})) FROM {src}"
            ),
        ),
        (
            "plain full scan (COUNT(*) over the primary key), one side",
            format!("SELECT COUNT(*) FROM {src} WHERE id > 0"),
        ),
    ] {
        let t = Instant::now();
        let _: Vec<mysql_async::Row> = c.query(sql).await?;
        out.push((name.to_string(), t.elapsed().as_secs_f64()));
        log(format!("diag: {name}: {:.2}s", t.elapsed().as_secs_f64()));
    }
    c.query_drop(format!("DROP TABLE IF EXISTS {DB}.{shadow}, {DB}.d_src"))
        .await?;
    Ok(out)
}

async fn set_global_size(
    c: &mut Conn,
    variable: &str,
    bytes: u64,
    status: Option<&str>,
) -> Result<(), Error> {
    c.query_drop(format!("SET GLOBAL {variable} = {bytes}"))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now: Option<u64> = c.query_first(format!("SELECT @@{variable}")).await?;
        let busy = match status {
            Some(s) => {
                let row: Option<(String, String)> = c
                    .query_first(format!("SHOW GLOBAL STATUS LIKE '{s}'"))
                    .await?;
                let text = row.map(|(_, v)| v).unwrap_or_default();
                !(text.is_empty() || text.contains("ompleted"))
            }
            None => false,
        };
        if (now == Some(bytes) && !busy) || Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // RUST_LOG=reconciler=debug shows each chunk and the index build.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let rows: u64 = env_or("ROWS", 1_000_000);
    let rounds: usize = env_or("ROUNDS", 5);
    let pool_mb: u64 = env_or("BUFFER_POOL_MB", 1024);
    let redo_mb: u64 = env_or("REDO_LOG_MB", 512);
    let ptosc: String = env_or("PTOSC", "pt-online-schema-change".to_string());
    let contenders: Vec<String> = env_or("CONTENDERS", "schemagate,pt-osc,native".to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let diag = env_or("DIAG", 0u8) == 1;
    let load_start = loadavg();

    log(format!("starting a sandbox server (load {load_start})"));
    let sandbox = Sandbox::start(1)?;
    let server = &sandbox.servers()[0];
    let dsn = Dsn::parse(&server.dsn())?;
    let conn = ShardConn::new("bench", &dsn, 8);
    let mut c = conn.conn().await?;
    // The library's sessions wait at most 5 s for locks; the benchmark's own may wait longer.
    c.query_drop("SET SESSION lock_wait_timeout = 600, innodb_lock_wait_timeout = 600")
        .await?;
    if pool_mb > 0 {
        set_global_size(
            &mut c,
            "innodb_buffer_pool_size",
            pool_mb << 20,
            Some("Innodb_buffer_pool_resize_status"),
        )
        .await?;
    }
    if redo_mb > 0 {
        set_global_size(&mut c, "innodb_log_file_size", redo_mb << 20, None).await?;
    }
    let settings: Option<(u64, u64, u64, u64)> = c
        .query_first(
            "SELECT @@innodb_buffer_pool_size >> 20, @@innodb_log_file_size >> 20, \
             @@innodb_flush_log_at_trx_commit, @@innodb_doublewrite",
        )
        .await?;
    let (pool, redo, flush, doublewrite) = settings.unwrap_or_default();
    let server_settings = format!(
        "buffer pool {pool}M, redo log {redo}M, flush_log_at_trx_commit={flush}, \
         doublewrite={doublewrite}, no binlog"
    );
    log(format!("server {} ({server_settings})", server.version()));

    log(format!("loading {rows} rows into {DB}.src"));
    let t = Instant::now();
    c.query_drop(format!("CREATE DATABASE {DB}")).await?;
    c.query_drop(create_table("src")).await?;
    let step = 100_000u64;
    let mut from = 1u64;
    while from <= rows {
        let to = (from + step - 1).min(rows);
        c.query_drop(format!(
            "INSERT INTO {DB}.src (id, {COLUMNS}) \
             SELECT seq, (seq * 7919) % 50000, seq % 1000, CONCAT('customer-', seq), \
                    IF(seq % 4 = 0, NULL, MD5(seq)), \
                    '2024-01-01' + INTERVAL (seq * 37) % 31536000 SECOND \
             FROM {DB}.seq_{from}_to_{to}"
        ))
        .await?;
        from = to + 1;
    }
    c.query_drop(format!("ANALYZE TABLE {DB}.src")).await?;
    let size: Option<(u64, u64)> = c
        .exec_first(
            "SELECT DATA_LENGTH >> 20, INDEX_LENGTH >> 20 FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'src'",
            (DB,),
        )
        .await?;
    let (data_mb, index_mb) = size.unwrap_or_default();
    log(format!(
        "loaded in {:.1}s: {data_mb} MiB data, {index_mb} MiB secondary index",
        t.elapsed().as_secs_f64()
    ));

    let mut timings: Vec<Timing> = Vec::new();
    for round in 1..=rounds {
        for k in 0..contenders.len() {
            let who = &contenders[(k + round - 1) % contenders.len()];
            let table = match who.as_str() {
                "schemagate" => "c_sg",
                "pt-osc" => "c_pt",
                "native" => "c_native",
                other => return Err(format!("unknown contender {other}").into()),
            };
            fresh_copy(&mut c, table).await?;
            let timing = match who.as_str() {
                "schemagate" => run_schemagate(&conn, &mut c, rows, round).await?,
                "pt-osc" => {
                    let ptosc = ptosc.clone();
                    let port = server.port();
                    tokio::task::spawn_blocking(move || run_ptosc(&ptosc, port, rows, round))
                        .await??
                }
                _ => run_native(&mut c, round).await?,
            };
            if who != "schemagate" {
                verify(&mut c, table, rows).await?;
            }
            log(format!(
                "round {round}/{rounds} {who:<10} total {:6.2}s  copy {:6.2}s  before {:5.2}s  \
                 after {:5.2}s  (load {})  {}",
                timing.total, timing.copy, timing.before, timing.after, timing.load, timing.note
            ));
            timings.push(timing);
            c.query_drop(format!("DROP TABLE IF EXISTS {DB}.{table}"))
                .await?;
        }
    }
    let diagnostics = if diag {
        diagnose(&mut c).await?
    } else {
        vec![]
    };
    let load_end = loadavg();
    drop(c);
    conn.disconnect().await;

    let of = |who: &str, f: fn(&Timing) -> f64| {
        median(
            timings
                .iter()
                .filter(|t| t.contender == who)
                .map(f)
                .collect(),
        )
    };
    println!();
    println!(
        "copy benchmark: {rows} rows ({data_mb} MiB data + {index_mb} MiB index), ALTER TABLE … {ALTER_CLAUSES}"
    );
    println!("server {} ({server_settings})", server.version());
    let commit = std::env::var("SG_COMMIT").unwrap_or_else(|_| "unknown".into());
    println!("schemagate commit {commit}; pt-online-schema-change from {ptosc}");
    println!(
        "{} CPUs; load average at start {load_start}, at end {load_end}; {rounds} round(s), order rotated",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "{:<11} {:>9} {:>9} {:>9} {:>9}   runs (total s)",
        "contender", "total s", "copy s", "before s", "after s"
    );
    for who in &contenders {
        let runs: Vec<String> = timings
            .iter()
            .filter(|t| &t.contender == who)
            .map(|t| format!("{:.2}", t.total))
            .collect();
        println!(
            "{who:<11} {:9.2} {:9.2} {:9.2} {:9.2}   {}",
            of(who, |t| t.total),
            of(who, |t| t.copy),
            of(who, |t| t.before),
            of(who, |t| t.after),
            runs.join(" ")
        );
    }
    println!("(schemagate: before = prepare, copy = rows copied (checksummed alongside),");
    println!(" after = deferred index and the checksum's last chunks, total = time to ready;");
    println!(
        " pt-osc: before = start to first chunk, after = analyze/swap/drop; native: one statement)"
    );
    let has = |who: &str| contenders.iter().any(|c| c == who);
    if has("schemagate") {
        let sg = of("schemagate", |t| t.total);
        let sg_copy = of("schemagate", |t| t.copy);
        println!();
        if has("pt-osc") {
            let pt = of("pt-osc", |t| t.total);
            let pt_copy = of("pt-osc", |t| t.copy);
            println!(
                "schemagate ready / pt-osc total: {:.2}x   (goal <= 0.6x: {})",
                sg / pt,
                if sg / pt <= 0.6 { "met" } else { "NOT met" }
            );
            println!("schemagate copy / pt-osc copy:   {:.2}x", sg_copy / pt_copy);
        }
        if has("native") {
            let native = of("native", |t| t.total);
            println!(
                "schemagate ready / native:       {:.2}x   (goal <= 1.3x: {})",
                sg / native,
                if sg / native <= 1.3 { "met" } else { "NOT met" }
            );
            println!("schemagate copy / native:        {:.2}x", sg_copy / native);
            if has("pt-osc") {
                println!(
                    "pt-osc total / native:           {:.2}x",
                    of("pt-osc", |t| t.total) / native
                );
            }
        }
    }
    if !diagnostics.is_empty() {
        println!();
        println!("diagnostics (single statements over the whole table):");
        for (name, secs) in &diagnostics {
            println!("  {secs:7.2}s  {name}");
        }
    }
    if let Ok(path) = std::env::var("RESULTS") {
        if !path.is_empty() {
            let doc = json!({
                "rows": rows, "rounds": rounds, "server": server.version(), "commit": commit,
                "settings": server_settings, "load_start": load_start, "load_end": load_end,
                "data_mib": data_mb, "index_mib": index_mb, "alter": ALTER_CLAUSES,
                "timings": timings, "diagnostics": diagnostics,
            });
            std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(())
}
