//! `schemagate apply`, `status`, `seal` and `cancel` end to end on real sandbox shards, with a
//! concurrent writer proving that nothing is lost.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mysql_async::prelude::*;
use support::*;

const ROWS: u64 = 20_000;

const DESIRED: &str = "create table items (
  id bigint not null primary key,
  val int not null,
  note varchar(200) not null default '',
  added int default 7,
  key (val)
);
create table labels (id int primary key, name varchar(20));
";

fn seed(rows: u64) -> String {
    format!(
        "CREATE TABLE items (id bigint NOT NULL PRIMARY KEY, val int NOT NULL, note varchar(40) NOT NULL DEFAULT '') ENGINE=InnoDB;
         INSERT INTO items (id, val, note) SELECT seq, seq % 1000, CONCAT('n', seq) FROM seq_1_to_{rows};"
    )
}

/// What the writer believes each shard's `items` holds: id → val.
type Model = BTreeMap<i64, i64>;

/// One write of the writer, and what it does to the model once committed.
enum Op {
    Insert(i64, i64),
    Update(i64, i64),
    /// A primary-key-changing update: old id, new id.
    Rekey(i64, i64),
    Delete(i64),
}

impl Op {
    fn statement(&self) -> (&'static str, Vec<mysql_async::Value>) {
        match *self {
            Op::Insert(id, val) => (
                "INSERT INTO items (id, val) VALUES (?, ?)",
                vec![id.into(), val.into()],
            ),
            Op::Update(id, val) => (
                "UPDATE items SET val = ? WHERE id = ?",
                vec![val.into(), id.into()],
            ),
            Op::Rekey(old, new) => (
                "UPDATE items SET id = ? WHERE id = ?",
                vec![new.into(), old.into()],
            ),
            Op::Delete(id) => ("DELETE FROM items WHERE id = ?", vec![id.into()]),
        }
    }

    fn apply(&self, model: &mut Model) {
        match *self {
            Op::Insert(id, val) | Op::Update(id, val) => {
                model.insert(id, val);
            }
            Op::Rekey(old, new) => {
                if let Some(val) = model.remove(&old) {
                    model.insert(new, val);
                }
            }
            Op::Delete(id) => {
                model.remove(&id);
            }
        }
    }
}

/// Random inserts, updates, primary-key-changing updates and deletes, until stopped.
async fn writer(
    dsn: String,
    database: String,
    mut model: Model,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> Model {
    let opts = mysql_async::Opts::from_url(&format!("{dsn}/{database}")).expect("dsn");
    let mut conn = mysql_async::Conn::new(opts).await.expect("writer connects");
    let mut state = seed;
    let mut next_id = ROWS as i64 + 1 + (seed as i64) * 1_000_000;
    let mut rand = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    while !stop.load(Ordering::Relaxed) {
        let keys: Vec<i64> = model.keys().copied().collect();
        let pick = keys[rand(keys.len() as u64) as usize];
        let val = rand(100_000) as i64;
        let op = match rand(4) {
            0 | 2 => {
                next_id += 1;
                if rand(2) == 0 {
                    Op::Insert(next_id, val)
                } else {
                    Op::Rekey(pick, next_id)
                }
            }
            1 => Op::Update(pick, val),
            _ => Op::Delete(pick),
        };
        // A statement either commits (autocommit) or fails as a whole: the model follows.
        let (sql, params) = op.statement();
        if conn.exec_drop(sql, params).await.is_ok() {
            op.apply(&mut model);
        }
    }
    model
}

fn content(dsn: &str, database: &str) -> Model {
    runtime().block_on(async {
        let opts = mysql_async::Opts::from_url(&format!("{dsn}/{database}")).expect("dsn");
        let mut conn = mysql_async::Conn::new(opts).await.expect("connect");
        let rows: Vec<(i64, i64)> = conn
            .query("SELECT id, val FROM items ORDER BY id")
            .await
            .expect("read items");
        rows.into_iter().collect()
    })
}

/// Asserts that a shard's `items` holds exactly `model`, naming the first differences.
fn assert_content(server: &reconciler::sandbox::Server, database: &str, model: &Model) {
    let actual = content(&server.dsn(), database);
    let differences: Vec<String> = actual
        .iter()
        .filter(|(k, v)| model.get(k) != Some(v))
        .map(|(k, v)| format!("{k}: {v} (model {:?})", model.get(k)))
        .chain(
            model
                .iter()
                .filter(|(k, _)| !actual.contains_key(k))
                .map(|(k, v)| format!("{k}: missing (model {v})")),
        )
        .take(10)
        .collect();
    assert!(
        differences.is_empty(),
        "shard on port {}: {} rows, model {}; first differences: {}",
        server.port(),
        actual.len(),
        model.len(),
        differences.join("; ")
    );
}

fn initial_model() -> Model {
    (1..=ROWS as i64).map(|i| (i, i % 1000)).collect()
}

#[test]
fn apply_stages_and_seals_every_shard_without_losing_writes() {
    let [a, b, ..] = servers() else {
        panic!("two servers")
    };
    let db = database(&[a, b], "deploy", &seed(ROWS));
    let dir = repo(
        &config("app", &db, &[("-80", a.dsn()), ("80-", b.dsn())]),
        &[("app/items.sql", DESIRED)],
    );
    let repo_arg = dir.path().to_str().unwrap().to_string();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [(a, 1u64), (b, 2u64)]
        .iter()
        .map(|(server, seed)| {
            rt.spawn(writer(
                server.dsn(),
                db.clone(),
                initial_model(),
                stop.clone(),
                *seed,
            ))
        })
        .collect();

    let out = schemagate(&["apply", "--repo", &repo_arg, "--yes", "--format", "json"]);
    stop.store(true, Ordering::Relaxed);
    let models: Vec<Model> = writers
        .into_iter()
        .map(|w| rt.block_on(w).unwrap())
        .collect();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));

    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let deployment = &result["deployments"][0];
    assert_eq!(deployment["state"], "sealed");
    let skew = deployment["seal_skew_ms"]
        .as_f64()
        .expect("seal skew recorded");
    assert!(skew < 1000.0, "skew {skew} ms");
    for shard in deployment["shards"].as_array().unwrap() {
        let at = shard["sealed_at"].as_str().expect("sealed_at");
        assert!(
            at.contains('T') && at.ends_with('Z') && at.split('.').nth(1).unwrap().len() == 7,
            "RFC 3339 with µs: {at}"
        );
    }

    // Every write the writer saw succeed is there, on both shards, in the new schema.
    for (server, model) in [a, b].iter().zip(&models) {
        assert_content(server, &db, model);
    }
    let fresh = database(&[a], "deploy_ref", DESIRED);
    let want = show_tables(a, &fresh);
    assert_eq!(show_tables(a, &db), want);
    assert_eq!(show_tables(b, &db), want);
    let again = schemagate(&["plan", "--repo", &repo_arg]);
    assert_eq!(code(&again), 0, "{}", stdout(&again));

    // The old table is kept under its retention name; no capture trigger survives the seal.
    let id = deployment["id"].as_str().unwrap();
    let leftovers = runtime().block_on(async {
        let opts = mysql_async::Opts::from_url(&a.dsn()).unwrap();
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let tables: Vec<String> = conn
            .exec("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1", (&db,))
            .await
            .unwrap();
        let triggers: Vec<String> = conn
            .exec("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?", (&db,))
            .await
            .unwrap();
        (tables, triggers)
    });
    let mut tables = leftovers.0;
    tables.sort();
    assert_eq!(
        tables,
        vec![
            format!("_sg{id}_old_items"),
            "items".into(),
            "labels".into()
        ]
    );
    assert!(leftovers.1.is_empty(), "{:?}", leftovers.1);
}

#[test]
fn manual_seal_resume_and_cancel() {
    let [a, b, ..] = servers() else {
        panic!("two servers")
    };
    let db = database(&[a, b], "manual", &seed(2000));
    let dir = repo(
        &config("app", &db, &[("x", a.dsn()), ("y", b.dsn())]),
        &[("app/items.sql", DESIRED)],
    );
    let repo_arg = dir.path().to_str().unwrap().to_string();

    let first = schemagate(&[
        "apply", "--repo", &repo_arg, "--yes", "--seal", "manual", "--format", "json",
    ]);
    assert_eq!(code(&first), 0, "{}{}", stdout(&first), stderr(&first));
    let first: serde_json::Value = serde_json::from_str(&stdout(&first)).unwrap();
    let id = first["deployments"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(first["deployments"][0]["state"], "ready");

    // Applying the same target again resumes the same deployment.
    let second = schemagate(&[
        "apply", "--repo", &repo_arg, "--yes", "--seal", "manual", "--format", "json",
    ]);
    let second: serde_json::Value = serde_json::from_str(&stdout(&second)).unwrap();
    assert_eq!(second["deployments"][0]["id"], id.as_str());

    // Cancel removes every artifact and leaves the tables as they were.
    let before = show_tables(a, &db);
    let cancel = schemagate(&["cancel", &id, "--repo", &repo_arg]);
    assert_eq!(code(&cancel), 0, "{}{}", stdout(&cancel), stderr(&cancel));
    assert_eq!(show_tables(a, &db), before);
    let artifacts = runtime().block_on(async {
        let opts = mysql_async::Opts::from_url(&b.dsn()).unwrap();
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let n: Option<u64> = conn
            .exec_first(
                "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE '\\_sg%') + (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?)",
                (&db, &db),
            )
            .await
            .unwrap();
        n
    });
    assert_eq!(artifacts, Some(0));

    // A new deployment, sealed by the seal command.
    let id = stage(&repo_arg);
    let sealed = schemagate(&["seal", &id, "--repo", &repo_arg, "--format", "json"]);
    assert_eq!(code(&sealed), 0, "{}{}", stdout(&sealed), stderr(&sealed));
    let status = schemagate(&["status", &id, "--repo", &repo_arg]);
    assert!(stdout(&status).contains("seal skew"), "{}", stdout(&status));
    assert_eq!(code(&schemagate(&["plan", "--repo", &repo_arg])), 0);

    // The previous table is kept for the revert window, then dropped by the next run.
    let retained = |server: &reconciler::sandbox::Server| {
        show_tables(server, &db).len() // artifacts are not listed: count them directly
            + runtime().block_on(async {
                let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&server.dsn()).unwrap()).await.unwrap();
                conn.exec_first::<usize, _, _>(
                    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE '\\_sg%\\_old\\_items'",
                    (&db,),
                )
                .await
                .unwrap()
                .unwrap_or(0)
            })
    };
    assert_eq!(retained(a), 3, "items, labels and the retained old items");
    let kept = schemagate(&["apply", "--repo", &repo_arg, "--yes"]);
    assert_eq!(code(&kept), 0, "{}", stderr(&kept));
    assert_eq!(retained(b), 3, "still inside the 30 minute window");
    let expired = schemagate(&["apply", "--repo", &repo_arg, "--yes", "--keep-old", "0s"]);
    assert_eq!(code(&expired), 0, "{}", stderr(&expired));
    assert!(
        stderr(&expired).contains("retention over"),
        "{}",
        stderr(&expired)
    );
    assert_eq!(retained(a), 2);
    assert_eq!(retained(b), 2);
}

#[test]
fn destructive_changes_need_allow_unsafe() {
    let [a, ..] = servers() else {
        panic!("a server")
    };
    let db = database(
        &[a],
        "unsafe",
        "CREATE TABLE doomed (id int PRIMARY KEY); CREATE TABLE kept (id int PRIMARY KEY);",
    );
    let dir = repo(
        &config("app", &db, &[("0", a.dsn())]),
        &[("app/kept.sql", "create table kept (id int primary key);")],
    );
    let out = schemagate(&["apply", "--repo", dir.path().to_str().unwrap(), "--yes"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--allow-unsafe"), "{}", stderr(&out));
    assert_eq!(show_tables(a, &db).len(), 2, "nothing was touched");
}

#[test]
fn the_auto_increment_counter_survives_the_swap() {
    let [a, ..] = servers() else {
        panic!("a server")
    };
    let db = database(
        &[a],
        "autoinc",
        "CREATE TABLE c (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, v int) ENGINE=InnoDB;
         INSERT INTO c (v) SELECT seq FROM seq_1_to_10; DELETE FROM c WHERE id > 7;",
    );
    let counter = || {
        runtime().block_on(async {
            let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&a.dsn()).unwrap()).await.unwrap();
            conn.exec_first::<i64, _, _>(
                "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'c'",
                (&db,),
            )
            .await
            .unwrap()
        })
    };
    let before = counter().expect("an auto-increment counter");
    assert!(before > 8, "the counter is past the deleted rows");
    let desired = "create table c (id int not null auto_increment primary key, v bigint);";
    let dir = repo(
        &config("app", &db, &[("0", a.dsn())]),
        &[("app/c.sql", desired)],
    );
    let out = schemagate(&[
        "apply",
        "--repo",
        dir.path().to_str().unwrap(),
        "--yes",
        "--warm-indexes",
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    sql(a, Some(&db), "INSERT INTO c (v) VALUES (0)");
    let next = runtime().block_on(async {
        let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&a.dsn()).unwrap())
            .await
            .unwrap();
        conn.query_first::<i64, _>(format!("SELECT MAX(id) FROM `{db}`.c"))
            .await
            .unwrap()
    });
    assert_eq!(
        next,
        Some(before),
        "ids of deleted rows are not handed out again"
    );
}

/// Latency of small autocommit writes on `items` (rows 2..), until stopped: the longest one.
async fn timed_writer(dsn: String, database: String, stop: Arc<AtomicBool>) -> std::time::Duration {
    let opts = mysql_async::Opts::from_url(&format!("{dsn}/{database}")).expect("dsn");
    let mut conn = mysql_async::Conn::new(opts).await.expect("writer connects");
    let mut longest = std::time::Duration::ZERO;
    let mut id = 2;
    while !stop.load(Ordering::Relaxed) {
        let started = std::time::Instant::now();
        let _ = conn
            .exec_drop("UPDATE items SET val = val + 1 WHERE id = ?", (id,))
            .await;
        longest = longest.max(started.elapsed());
        id = id % 1000 + 2;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    longest
}

/// A transaction that keeps `table` in use (a row lock on id 1) until it is committed.
async fn hold_row(
    server: &reconciler::sandbox::Server,
    db: &str,
    table: &str,
) -> mysql_async::Conn {
    let opts = mysql_async::Opts::from_url(&format!("{}/{db}", server.dsn())).unwrap();
    let mut conn = mysql_async::Conn::new(opts).await.unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop(format!("SELECT * FROM {table} WHERE id = 1 FOR UPDATE"))
        .await
        .unwrap();
    conn
}

#[test]
fn a_long_transaction_holds_the_seal_back_without_stalling_writers() {
    let [a, b, ..] = servers() else {
        panic!("two servers")
    };
    let db = database(&[a, b], "longtx", &seed(2000));
    let dir = repo(
        &config("app", &db, &[("a", a.dsn()), ("b", b.dsn())]),
        &[("app/items.sql", DESIRED)],
    );
    let repo_arg = dir.path().to_str().unwrap().to_string();
    let id = stage(&repo_arg);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A transaction on shard b keeps `items` in use for the whole first seal attempt.
    let holder = rt.block_on(hold_row(b, &db, "items"));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [a, b]
        .iter()
        .map(|s| rt.spawn(timed_writer(s.dsn(), db.clone(), stop.clone())))
        .collect();
    let refused = schemagate(&["seal", &id, "--repo", &repo_arg, "--seal-attempts", "3"]);
    stop.store(true, Ordering::Relaxed);
    let stalls: Vec<std::time::Duration> = writers
        .into_iter()
        .map(|w| rt.block_on(w).unwrap())
        .collect();
    assert_eq!(
        code(&refused),
        2,
        "{}{}",
        stdout(&refused),
        stderr(&refused)
    );
    assert!(
        stderr(&refused).contains("no shard was flipped"),
        "{}",
        stderr(&refused)
    );
    for stall in &stalls {
        assert!(
            stall.as_millis() < 500,
            "a writer stalled {stall:?} while the seal tried its locks"
        );
    }
    // Nothing flipped anywhere: both shards still have the old table.
    for server in [a, b] {
        assert!(!show_tables(server, &db)
            .iter()
            .any(|(_, sql)| sql.contains("`added`")));
    }

    // Once the transaction ends, the seal goes through.
    rt.block_on(async move {
        let mut holder = holder;
        holder.query_drop("COMMIT").await.unwrap();
    });
    let sealed = schemagate(&["seal", &id, "--repo", &repo_arg]);
    assert_eq!(code(&sealed), 0, "{}{}", stdout(&sealed), stderr(&sealed));
    assert_eq!(code(&schemagate(&["plan", "--repo", &repo_arg])), 0);
}

#[test]
fn a_table_changed_underneath_fails_the_seal_instead_of_sealing() {
    let [a, b, ..] = servers() else {
        panic!("two servers")
    };
    let db = database(&[a, b], "stale", &seed(1000));
    let dir = repo(
        &config("app", &db, &[("a", a.dsn()), ("b", b.dsn())]),
        &[("app/items.sql", DESIRED)],
    );
    let repo_arg = dir.path().to_str().unwrap().to_string();
    let id = stage(&repo_arg);

    // Someone alters the table by hand on shard b while the deployment waits at the gate.
    sql(b, Some(&db), "ALTER TABLE items ADD KEY note (note)");
    let before_a = show_tables(a, &db);
    let out = schemagate(&["seal", &id, "--repo", &repo_arg]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("shard b table `items` changed since the plan was made"),
        "{err}"
    );
    assert_eq!(show_tables(a, &db), before_a, "no shard was sealed");
}

#[test]
fn the_same_change_wanted_again_is_a_new_deployment() {
    let [a, ..] = servers() else {
        panic!("a server")
    };
    let db = database(&[a], "again", &seed(500));
    let with = "create table items (id bigint not null primary key, val int not null, note varchar(40) not null default '', tag varchar(16), key (tag));";
    let without = "create table items (id bigint not null primary key, val int not null, note varchar(40) not null default '');";
    let dir = repo(
        &config("app", &db, &[("0", a.dsn())]),
        &[("app/items.sql", with)],
    );
    let repo_arg = dir.path().to_str().unwrap().to_string();
    let apply = || {
        let out = schemagate(&[
            "apply",
            "--repo",
            &repo_arg,
            "--yes",
            "--allow-unsafe",
            "--format",
            "json",
        ]);
        assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
        let result: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        result["deployments"][0]["id"].as_str().unwrap().to_string()
    };
    let first = apply();
    std::fs::write(dir.path().join("schemas/app/items.sql"), without).unwrap();
    apply();
    std::fs::write(dir.path().join("schemas/app/items.sql"), with).unwrap();
    let third = apply();
    assert_ne!(first, third, "a new deployment, not the sealed first one");
    assert_eq!(
        code(&schemagate(&["plan", "--repo", &repo_arg])),
        0,
        "the change is in place again"
    );
}

/// `plan` creates `_schemagate` for its canonical cache; a first `apply` or `status` on such
/// a server must not take the database for the deployment records.
#[test]
fn apply_and_status_after_a_first_plan_on_a_fresh_server() {
    let sandbox = reconciler::sandbox::Sandbox::start(1).expect("a server");
    let [server] = sandbox.servers() else {
        panic!("one server")
    };
    let db = database(&[server], "fresh", &seed(100));
    let dir = repo(
        &config("app", &db, &[("a", server.dsn())]),
        &[("app/items.sql", DESIRED)],
    );
    let repo_arg = dir.path().to_str().unwrap();
    let plan = schemagate(&["plan", "--repo", repo_arg]);
    assert_eq!(code(&plan), 1, "{}{}", stdout(&plan), stderr(&plan));
    let status = schemagate(&["status", "--repo", repo_arg]);
    assert_eq!(code(&status), 0, "{}{}", stdout(&status), stderr(&status));
    let apply = schemagate(&["apply", "--repo", repo_arg, "--yes"]);
    assert_eq!(code(&apply), 0, "{}{}", stdout(&apply), stderr(&apply));
}

/// Writers on one shard's `items`, each on its own share of the rows (`id % count`), so that
/// each can keep a model of its own; their models together are the table.
fn start_writers(
    rt: &tokio::runtime::Runtime,
    dsn: &str,
    database: &str,
    model: &Model,
    count: u64,
    first_seed: u64,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Model>> {
    (0..count)
        .map(|k| {
            // Inserted ids come from each writer's own range (see `writer`), so a share is
            // only ever written by its writer.
            let share: Model = model
                .iter()
                .filter(|(id, _)| (**id as u64) % count == k)
                .map(|(id, val)| (*id, *val))
                .collect();
            let share = if share.is_empty() {
                model.clone()
            } else {
                share
            };
            rt.spawn(writer(
                dsn.to_string(),
                database.to_string(),
                share,
                stop.clone(),
                first_seed + k,
            ))
        })
        .collect()
}

fn join_writers(
    rt: &tokio::runtime::Runtime,
    writers: Vec<tokio::task::JoinHandle<Model>>,
) -> Model {
    writers
        .into_iter()
        .flat_map(|w| rt.block_on(w).unwrap())
        .collect()
}

/// A shard whose flip fails after the release while another shard flipped: the flipped shard
/// is swapped back, and the writes it took as the new table in between are in the restored
/// table (the reverse triggers carried them); every shadow is sent back to staging, and once
/// the cause is gone `apply` stages again and seals, still without losing a write.
#[test]
fn a_partial_flip_is_swapped_back_without_losing_a_write() {
    let [a, b, ..] = servers() else {
        panic!("two servers")
    };
    let rows = 5_000;
    // `tags` changes INSTANT-ly: its ALTER runs with the flip, and a swap-back takes it back.
    let tags =
        "CREATE TABLE tags (id int NOT NULL PRIMARY KEY, name varchar(20) NOT NULL) ENGINE=InnoDB;
                INSERT INTO tags VALUES (1, 'a'), (2, 'b');";
    let db = database(&[a, b], "swapback", &format!("{}\n{tags}", seed(rows)));
    let dir = repo(
        &config("app", &db, &[("a", a.dsn()), ("b", b.dsn())]),
        &[
            ("app/items.sql", DESIRED),
            (
                "app/tags.sql",
                "create table tags (id int not null primary key, name varchar(20) not null default 'x', extra int);",
            ),
        ],
    );
    let repo_arg = dir.path().to_str().unwrap().to_string();
    let id = stage(&repo_arg);
    // On b a table already has the name `items` gets at the flip: b's RENAME fails once the
    // locks are released, after a's succeeded.
    let retention = reconciler::naming::artifact(&id, "old", "items");
    sql(
        b,
        Some(&db),
        &format!("CREATE TABLE `{retention}` (id int)"),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let initial: Model = (1..=rows as i64).map(|i| (i, i % 1000)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Several writers on a, so that some writes land between its flip and its swap-back.
    let on_a = start_writers(&rt, &a.dsn(), &db, &initial, 3, 1, &stop);
    let on_b = start_writers(&rt, &b.dsn(), &db, &initial, 1, 11, &stop);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = schemagate(&["seal", &id, "--repo", &repo_arg]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (model_a, model_b) = (join_writers(&rt, on_a), join_writers(&rt, on_b));
    assert_eq!(code(&out), 2, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the flip failed on shard b") && err.contains("already exists"),
        "{err}"
    );
    assert!(
        err.contains("shard a was swapped back") && err.contains("sent back to staging"),
        "{err}"
    );

    // Both shards have the old tables, with every write their writers saw succeed.
    for (server, model) in [(a, &model_a), (b, &model_b)] {
        let tables: BTreeMap<String, String> = show_tables(server, &db).into_iter().collect();
        assert!(!tables["items"].contains("`added`"), "{}", tables["items"]);
        assert!(
            !tables["tags"].contains("`extra`") && !tables["tags"].contains("DEFAULT 'x'"),
            "{}",
            tables["tags"]
        );
        assert_content(server, &db, model);
        let dsn = server.dsn();
        // The shadow is not sealable as is: staging again, the seal taken back, no trigger.
        assert_eq!(
            scalar::<String>(&dsn, &format!("SELECT state FROM _schemagate.cells WHERE deployment_id = '{id}' AND table_name = 'items'")).as_deref(),
            Some("staging")
        );
        assert_eq!(
            scalar::<String>(
                &dsn,
                &format!("SELECT decision FROM _schemagate.deployments WHERE id = '{id}'")
            )
            .as_deref(),
            Some("none")
        );
        assert_eq!(
            scalar::<u64>(&dsn, &format!("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}'")),
            Some(0)
        );
    }
    let refused = schemagate(&["seal", &id, "--repo", &repo_arg]);
    assert_eq!(code(&refused), 2);
    assert!(
        stderr(&refused).contains("is staging"),
        "{}",
        stderr(&refused)
    );

    // The cause removed, apply stages again and seals, with writers still running.
    sql(b, Some(&db), &format!("DROP TABLE `{retention}`"));
    let stop = Arc::new(AtomicBool::new(false));
    let on_a = start_writers(&rt, &a.dsn(), &db, &model_a, 1, 21, &stop);
    let on_b = start_writers(&rt, &b.dsn(), &db, &model_b, 1, 31, &stop);
    let out = schemagate(&["apply", "--repo", &repo_arg, "--yes", "--format", "json"]);
    stop.store(true, Ordering::Relaxed);
    let (model_a, model_b) = (join_writers(&rt, on_a), join_writers(&rt, on_b));
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(result["deployments"][0]["id"], id.as_str());
    assert_eq!(result["deployments"][0]["state"], "sealed");
    for (server, model) in [(a, &model_a), (b, &model_b)] {
        assert_content(server, &db, model);
        assert_eq!(
            scalar::<u64>(&server.dsn(), &format!("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}'")),
            Some(0)
        );
        assert!(show_tables(server, &db)
            .iter()
            .any(|(name, sql)| name == "tags" && sql.contains("`extra`")));
    }
    assert_eq!(code(&schemagate(&["plan", "--repo", &repo_arg])), 0);
}

/// An INSTANT change runs at the seal, under the locks once every shard holds its own: a round
/// given up before that (another shard's table stays in use) must not run it anywhere.
#[test]
fn an_abandoned_seal_round_leaves_instant_changes_unapplied() {
    let [a, b, ..] = servers() else {
        panic!("two servers")
    };
    let db = database(
        &[a, b],
        "instant",
        "CREATE TABLE tags (id int NOT NULL PRIMARY KEY, name varchar(20) NOT NULL) ENGINE=InnoDB;
         INSERT INTO tags VALUES (1, 'a'), (2, 'b');",
    );
    let dir = repo(
        &config("app", &db, &[("a", a.dsn()), ("b", b.dsn())]),
        &[(
            "app/tags.sql",
            "create table tags (id int not null primary key, name varchar(20) not null, extra int);",
        )],
    );
    let repo_arg = dir.path().to_str().unwrap().to_string();
    let plan = schemagate(&["plan", "--repo", &repo_arg]);
    assert!(stdout(&plan).contains("instant"), "{}", stdout(&plan));
    let id = stage(&repo_arg);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let holder = rt.block_on(hold_row(b, &db, "tags"));
    let refused = schemagate(&["seal", &id, "--repo", &repo_arg, "--seal-attempts", "2"]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("no shard was flipped"),
        "{}",
        stderr(&refused)
    );
    for server in [a, b] {
        assert!(
            !show_tables(server, &db)
                .iter()
                .any(|(_, sql)| sql.contains("`extra`")),
            "the INSTANT change ran without the seal"
        );
    }
    rt.block_on(async move {
        let mut holder = holder;
        holder.query_drop("COMMIT").await.unwrap();
    });
    let sealed = schemagate(&["seal", &id, "--repo", &repo_arg]);
    assert_eq!(code(&sealed), 0, "{}{}", stdout(&sealed), stderr(&sealed));
    for server in [a, b] {
        assert!(show_tables(server, &db)
            .iter()
            .any(|(_, sql)| sql.contains("`extra`")));
    }
}

/// Runs `statements` on a server: the server's error, if any.
fn runs(server: &reconciler::sandbox::Server, statements: &str) -> Result<(), String> {
    runtime().block_on(async {
        let opts = mysql_async::Opts::from_url(&server.dsn()).map_err(|e| e.to_string())?;
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .map_err(|e| e.to_string())?;
        conn.query_drop(statements).await.map_err(|e| e.to_string())
    })
}

/// `foreign_keys: carry`: a child table goes through the shadow with its foreign keys (one
/// kept under the name InnoDB generated for it, one added), on two shards; after the seal the
/// keys have their own names, the old table gave all of its keys up, and the plan finds nothing
/// left to do.
#[test]
fn foreign_keys_are_carried_through_the_seal_when_configured() {
    let [a, b, ..] = servers() else {
        panic!("two servers")
    };
    let db = database(
        &[a, b],
        "fkseal",
        "CREATE TABLE customers (id int PRIMARY KEY) ENGINE=InnoDB;
         CREATE TABLE shops (id int PRIMARY KEY) ENGINE=InnoDB;
         CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, shop_id int, qty int,
           KEY shop_id (shop_id),
           FOREIGN KEY (customer_id) REFERENCES customers (id)) ENGINE=InnoDB;
         INSERT INTO customers SELECT seq FROM seq_1_to_20;
         INSERT INTO shops SELECT seq FROM seq_1_to_5;
         INSERT INTO orders SELECT seq, 1 + seq % 20, 1 + seq % 5, seq FROM seq_1_to_2000;",
    );
    let files = [
        ("app/customers.sql", "create table customers (id int primary key);"),
        ("app/shops.sql", "create table shops (id int primary key);"),
        (
            "app/orders.sql",
            "create table orders (id int primary key, customer_id int not null, shop_id int, qty bigint,
               key shop_id (shop_id),
               foreign key (customer_id) references customers (id),
               constraint fk_shop foreign key (shop_id) references shops (id));",
        ),
    ];
    let plain = config("app", &db, &[("a", a.dsn()), ("b", b.dsn())]);
    let dir = repo(&plain, &files);
    let repo_arg = dir.path().to_str().unwrap().to_string();
    // The plan already says what apply will refuse.
    let plan = schemagate(&["plan", "--repo", &repo_arg]);
    assert!(
        stdout(&plan).contains("`foreign_keys: carry`"),
        "{}",
        stdout(&plan)
    );
    let out = schemagate(&["apply", "--repo", &repo_arg, "--yes"]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("foreign_keys: carry"),
        "{}",
        stderr(&out)
    );

    let carry = plain.replacen("    shards:", "    foreign_keys: carry\n    shards:", 1);
    std::fs::write(dir.path().join("schemagate.yaml"), carry).unwrap();
    // The failed cell is cancelled, then the same target staged again.
    let failed = schemagate(&["status", "--repo", &repo_arg, "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&stdout(&failed)).unwrap();
    let id = status["deployments"][0]["id"].as_str().unwrap().to_string();
    let out = schemagate(&["cancel", &id, "--repo", &repo_arg]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = stage(&repo_arg);

    // At the gate the shadow's new key already holds.
    sql(a, Some(&db), "INSERT INTO orders VALUES (5001, 3, 2, 1)");
    let refused = runs(a, &format!("DELETE FROM `{db}`.shops WHERE id = 2"));
    assert!(
        refused.is_err_and(|e| e.contains("foreign key constraint")),
        "a shop the shadow's rows reference cannot go"
    );
    let out = schemagate(&["seal", &id, "--repo", &repo_arg]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    for server in [a, b] {
        let tables: BTreeMap<String, String> = show_tables(server, &db).into_iter().collect();
        let orders = &tables["orders"];
        assert!(
            orders.contains("CONSTRAINT `orders_ibfk_1` FOREIGN KEY (`customer_id`) REFERENCES `customers` (`id`)"),
            "{orders}"
        );
        assert!(
            orders
                .contains("CONSTRAINT `fk_shop` FOREIGN KEY (`shop_id`) REFERENCES `shops` (`id`)"),
            "{orders}"
        );
        assert!(orders.contains("`qty` bigint(20)"), "{orders}");
        let retained = format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME LIKE '\\_sg%'"
        );
        assert_eq!(
            scalar::<i64>(&server.dsn(), &retained),
            Some(1),
            "the old table is retained"
        );
        let keys = format!(
            "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = '{db}' AND TABLE_NAME LIKE '\\_sg%'"
        );
        assert_eq!(
            scalar::<i64>(&server.dsn(), &keys),
            Some(0),
            "without its keys (the generated name went along with it at the rename)"
        );
    }
    let count = |server: &reconciler::sandbox::Server| {
        scalar::<i64>(
            &server.dsn(),
            &format!("SELECT COUNT(*) FROM `{db}`.orders"),
        )
    };
    assert_eq!((count(a), count(b)), (Some(2001), Some(2000)));
    // The new table's keys hold; the old table, whose rows still reference customer 7, keeps
    // no parent from going.
    let refused = runs(a, &format!("DELETE FROM `{db}`.customers WHERE id = 4"));
    assert!(refused.is_err(), "orders still reference customer 4");
    let gone = runs(
        a,
        &format!("DELETE FROM `{db}`.orders WHERE customer_id = 7; DELETE FROM `{db}`.customers WHERE id = 7"),
    );
    assert_eq!(gone, Ok(()));
    assert_eq!(
        code(&schemagate(&["plan", "--repo", &repo_arg])),
        0,
        "nothing left to change"
    );
}
