//! The shadow-table engine against real mariadbd servers: copy, checksum, concurrent writes,
//! resume, refusals, key types. Each test works in a database of its own.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Row, Value};
use reconciler::deploy::shadow::{Capture, CopyOptions, Progress, Shadow, ShadowError, ShadowSpec};
use reconciler::live::ShardConn;
use reconciler::sandbox::{self, Sandbox, Server};
use reconciler::source::Dsn;

const SHADOW: &str = "_sg0123456789ab_new_t";
const PREFIX: &str = "_sg0123456789ab_tr_t";

fn server(i: usize) -> &'static Server {
    &sandbox::shared().expect("sandbox servers start").servers()[i]
}

fn shard(server: &Server) -> ShardConn {
    ShardConn::new("s1", &Dsn::parse(&server.dsn()).expect("dsn"), 8)
}

/// A fresh database loaded with `script`.
async fn database(conn: &ShardConn, prefix: &str, script: &str) -> String {
    let db = sandbox::unique_name(prefix);
    conn.run_script(&format!("CREATE DATABASE `{db}`; USE `{db}`; {script}"))
        .await
        .expect("setup script");
    db
}

fn spec(db: &str, table: &str, statements: &[&str]) -> ShadowSpec {
    ShadowSpec {
        database: db.to_string(),
        table: table.to_string(),
        shadow: SHADOW.to_string(),
        trigger_prefix: PREFIX.to_string(),
        statements: statements.iter().map(|s| s.to_string()).collect(),
        renames: Vec::new(),
        defer_indexes: true,
        carry_foreign_keys: false,
    }
}

async fn rows(conn: &ShardConn, sql: &str) -> Vec<Vec<Value>> {
    let mut c = conn.conn().await.expect("conn");
    let rows: Vec<Row> = c.query(sql).await.expect(sql);
    rows.into_iter().map(Row::unwrap).collect()
}

/// `SELECT columns … ORDER BY order` of the table and of its shadow.
async fn both(
    conn: &ShardConn,
    db: &str,
    (table, shadow): (&str, &str),
    columns: &str,
    order: &str,
) -> (Vec<Vec<Value>>, Vec<Vec<Value>>) {
    let select = |t: &str| format!("SELECT {columns} FROM `{db}`.`{t}` ORDER BY {order}");
    (
        rows(conn, &select(table)).await,
        rows(conn, &select(shadow)).await,
    )
}

async fn exec(conn: &ShardConn, sql: &str) {
    let mut c = conn.conn().await.expect("conn");
    c.query_drop(sql).await.expect(sql);
}

/// The tool's tables and all triggers left in `db`.
async fn artifacts(conn: &ShardConn, db: &str) -> Vec<String> {
    let mut c = conn.conn().await.expect("conn");
    let mut names: Vec<String> = c
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE '\\_sg%'",
            (db,),
        )
        .await
        .expect("tables");
    let triggers: Vec<String> = c
        .exec(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
            (db,),
        )
        .await
        .expect("triggers");
    names.extend(triggers);
    names
}

fn fast() -> CopyOptions {
    CopyOptions {
        target_chunk_time: Duration::from_millis(100),
        ..CopyOptions::default()
    }
}

async fn copy_all(shadow: &Shadow, conn: &ShardConn, checkpoint: Option<String>) -> Vec<Progress> {
    let mut seen = Vec::new();
    let last = shadow
        .copy(conn, checkpoint, &fast(), |p| seen.push(p.clone()))
        .await
        .expect("copy");
    assert_eq!(seen.last(), Some(&last));
    seen
}

fn refusal(result: Result<Shadow, ShadowError>) -> String {
    match result {
        Err(e @ ShadowError::Refused { .. }) => e.to_string(),
        Err(e) => panic!("expected a refusal, got: {e}"),
        Ok(_) => panic!("expected a refusal, got a prepared shadow"),
    }
}

#[tokio::test]
async fn copies_and_checksums_a_table_with_added_column_index_and_wider_column() {
    let conn = shard(server(0));
    let db = database(
        &conn,
        "basic",
        "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, a INT NOT NULL, b VARCHAR(40), \
           c DATETIME(6), d DECIMAL(10,2), g INT AS (a * 2) VIRTUAL);
         INSERT INTO t (a, b, c, d) SELECT seq, IF(seq % 10 = 0, NULL, CONCAT('row-', seq)), \
           '2024-01-01' + INTERVAL seq SECOND, seq / 7 FROM seq_1_to_20000;",
    )
    .await;
    let spec = spec(
        &db,
        "t",
        &[
            "ALTER TABLE `t` ADD COLUMN `e` int NOT NULL DEFAULT 7, ADD KEY `ka` (`a`), \
           MODIFY `b` varchar(80) DEFAULT NULL",
        ],
    );
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    assert!(!shadow.resumed());
    assert_eq!(shadow.spec(), &spec);
    let mut names = artifacts(&conn, &db).await;
    names.sort();
    assert_eq!(
        names,
        [
            SHADOW,
            &format!("{PREFIX}_del"),
            &format!("{PREFIX}_ins"),
            &format!("{PREFIX}_upd")
        ]
    );

    let progress = copy_all(&shadow, &conn, None).await;
    assert!(progress.len() > 2, "{} chunks", progress.len());
    let last = progress.last().expect("a chunk");
    assert_eq!(last.rows_copied, 20_000);
    assert_eq!(last.checkpoint.as_deref(), Some("[20000]"));
    assert!(last.rows_estimated > 10_000 && last.rows_per_sec > 0.0);
    shadow.checksum(&conn).await.expect("checksum");

    let (original, copied) = both(&conn, &db, ("t", SHADOW), "id, a, b, c, d, g", "id").await;
    assert_eq!(original.len(), 20_000);
    assert_eq!(original, copied);
    let e = rows(&conn, &format!("SELECT DISTINCT e FROM `{db}`.`{SHADOW}`")).await;
    assert_eq!(e, [[Value::Bytes(b"7".to_vec())]]);
    let create = rows(&conn, &format!("SHOW CREATE TABLE `{db}`.`{SHADOW}`")).await;
    let Value::Bytes(create) = &create[0][1] else {
        panic!("create text")
    };
    let create = String::from_utf8_lossy(create);
    assert!(
        create.contains("`b` varchar(80)") && create.contains("KEY `ka` (`a`)"),
        "{create}"
    );

    // A second prepare reuses what is there.
    let again = Shadow::prepare(&conn, spec.clone())
        .await
        .expect("prepare again");
    assert!(again.resumed());
    again.checksum(&conn).await.expect("checksum again");

    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    Shadow::cleanup(&conn, &spec).await.expect("cleanup twice");
    assert!(artifacts(&conn, &db).await.is_empty());
    conn.disconnect().await;
}

/// A tiny deterministic PRNG (xorshift64*): the tests need no crate for randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type Model = BTreeMap<i64, (i64, Option<String>, Option<i64>)>;

#[derive(Default)]
struct Counts {
    inserts: usize,
    updates: usize,
    key_changes: usize,
    deletes: usize,
    rollbacks: usize,
    conflicts: usize,
}

const KEY_SPACE: u64 = 40_000;

/// Runs random writes until `stop`, keeping `model` equal to what has been committed. A
/// transaction touches each row once at most, so its changes can be applied on commit.
async fn writer(
    conn: ShardConn,
    db: String,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicUsize>,
    mut model: Model,
) -> (Model, Counts) {
    type Change = Box<dyn FnOnce(&mut Model) + Send>;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut counts = Counts::default();
    let mut c = conn.conn().await.expect("writer conn");
    let table = format!("`{db}`.t");
    while !stop.load(Ordering::Relaxed) {
        let in_tx = rng.below(5) == 0;
        let mut changes: Vec<Change> = Vec::new();
        let mut touched: HashSet<i64> = HashSet::new();
        let mut failed = false;
        if in_tx {
            c.query_drop("BEGIN").await.expect("begin");
        }
        for _ in 0..if in_tx { 3 } else { 1 } {
            let from = rng.below(KEY_SPACE) as i64;
            let existing = model
                .range(from..)
                .chain(model.iter())
                .map(|(k, _)| *k)
                .find(|k| !touched.contains(k));
            let free = loop {
                let id = 1 + rng.below(KEY_SPACE) as i64;
                if !model.contains_key(&id) && !touched.contains(&id) {
                    break id;
                }
            };
            let a = rng.below(1000) as i64;
            let b = (rng.below(4) != 0).then(|| format!("w{}", rng.below(1_000_000)));
            let cc = (rng.below(3) != 0).then(|| rng.below(100) as i64);
            let op = rng.below(4);
            let (sql, params, change): (String, Vec<Value>, Change) = match (op, existing) {
                (1, Some(id)) => {
                    counts.updates += 1;
                    touched.insert(id);
                    (
                        format!("UPDATE {table} SET a = ?, b = ?, c = ? WHERE id = ?"),
                        vec![a.into(), b.clone().into(), cc.into(), id.into()],
                        Box::new(move |m: &mut Model| {
                            m.insert(id, (a, b, cc));
                        }),
                    )
                }
                (2, Some(id)) => {
                    counts.key_changes += 1;
                    touched.extend([id, free]);
                    (
                        format!("UPDATE {table} SET id = ?, a = a + 1 WHERE id = ?"),
                        vec![free.into(), id.into()],
                        Box::new(move |m: &mut Model| {
                            if let Some((a, b, c)) = m.remove(&id) {
                                m.insert(free, (a + 1, b, c));
                            }
                        }),
                    )
                }
                (3, Some(id)) => {
                    counts.deletes += 1;
                    touched.insert(id);
                    (
                        format!("DELETE FROM {table} WHERE id = ?"),
                        vec![id.into()],
                        Box::new(move |m: &mut Model| {
                            m.remove(&id);
                        }),
                    )
                }
                _ => {
                    counts.inserts += 1;
                    touched.insert(free);
                    (
                        format!("INSERT INTO {table} (id, a, b, c) VALUES (?, ?, ?, ?)"),
                        vec![free.into(), a.into(), b.clone().into(), cc.into()],
                        Box::new(move |m: &mut Model| {
                            m.insert(free, (a, b, cc));
                        }),
                    )
                }
            };
            match c.exec_drop(&sql, params).await {
                Ok(()) => {
                    assert_eq!(c.affected_rows(), 1, "{sql}: the model is out of step");
                    changes.push(change);
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                Err(mysql_async::Error::Server(e)) if e.code == 1213 || e.code == 1205 => {
                    counts.conflicts += 1;
                    failed = true;
                    break;
                }
                Err(e) => panic!("{sql}: {e}"),
            }
        }
        if in_tx {
            if failed || rng.below(4) == 0 {
                c.query_drop("ROLLBACK").await.expect("rollback");
                counts.rollbacks += 1;
                continue;
            }
            c.query_drop("COMMIT").await.expect("commit");
        }
        for change in changes {
            change(&mut model);
        }
    }
    (model, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn no_data_is_lost_under_concurrent_inserts_updates_key_changes_and_deletes() {
    let conn = shard(server(1));
    let db = database(
        &conn,
        "writer",
        "CREATE TABLE t (id INT PRIMARY KEY, a INT NOT NULL, b VARCHAR(40), c INT);
         INSERT INTO t SELECT seq * 2, seq, CONCAT('r', seq), IF(seq % 3 = 0, NULL, seq % 100) \
           FROM seq_1_to_15000;",
    )
    .await;
    let model: Model = (1..=15_000i64)
        .map(|s| {
            let c = (s % 3 != 0).then_some(s % 100);
            (s * 2, (s, Some(format!("r{s}")), c))
        })
        .collect();
    let mut spec = spec(
        &db,
        "t",
        &[
            "ALTER TABLE `t` ADD COLUMN `x` int DEFAULT 1, MODIFY `b` varchar(60), \
           ADD KEY `ka` (`a`), RENAME COLUMN `c` TO `c2`",
        ],
    );
    spec.renames = vec![("c".into(), "c2".into())];

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicUsize::new(0));
    let writing = tokio::spawn(writer(
        shard(server(1)),
        db.clone(),
        stop.clone(),
        ops.clone(),
        model,
    ));
    let wait_for = |n: usize| {
        let ops = ops.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while ops.load(Ordering::Relaxed) < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(100).await;
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    let before_copy = ops.load(Ordering::Relaxed);
    // Two copying connections: chunks finish out of order under the writer.
    let options = CopyOptions {
        target_chunk_time: Duration::from_millis(10),
        threads: 2,
        ..CopyOptions::default()
    };
    let mut chunks = 0;
    shadow
        .copy(&conn, None, &options, |_| chunks += 1)
        .await
        .expect("copy");
    let during_copy = ops.load(Ordering::Relaxed) - before_copy;
    shadow.checksum(&conn).await.expect("checksum under writes");
    wait_for(ops.load(Ordering::Relaxed) + 200).await;
    stop.store(true, Ordering::Relaxed);
    let (model, counts) = writing.await.expect("writer");
    eprintln!(
        "{chunks} chunks; writes during the copy: {during_copy}; inserts {}, updates {}, key \
         changes {}, deletes {}, rollbacks {}, lock conflicts {}",
        counts.inserts,
        counts.updates,
        counts.key_changes,
        counts.deletes,
        counts.rollbacks,
        counts.conflicts
    );
    assert!(chunks > 3, "{chunks} chunks");
    assert!(
        during_copy > 50,
        "only {during_copy} writes ran during the copy"
    );
    assert!(counts.key_changes > 20 && counts.deletes > 20 && counts.rollbacks > 5);

    let original = rows(
        &conn,
        &format!("SELECT id, a, b, c FROM `{db}`.t ORDER BY id"),
    )
    .await;
    let copied = rows(
        &conn,
        &format!("SELECT id, a, b, c2 FROM `{db}`.`{SHADOW}` ORDER BY id"),
    )
    .await;
    let expected: Vec<Vec<Value>> = model
        .iter()
        .map(|(id, (a, b, c))| {
            let text = |v: Option<String>| v.map_or(Value::NULL, |s| Value::Bytes(s.into_bytes()));
            vec![
                Value::Bytes(id.to_string().into_bytes()),
                Value::Bytes(a.to_string().into_bytes()),
                text(b.clone()),
                text(c.map(|c| c.to_string())),
            ]
        })
        .collect();
    assert_eq!(original.len(), expected.len());
    assert!(
        original == expected,
        "the table differs from the writer's model"
    );
    assert!(copied == original, "the shadow differs from the table");
    shadow.checksum(&conn).await.expect("checksum at rest");
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    assert!(artifacts(&conn, &db).await.is_empty());
    conn.disconnect().await;
}

/// MariaDB 10.11 fails server-side prepared statements that run while triggers are added one
/// by one ("Table '<shadow>' doesn't exist", MDEV-26048); prepare adds them all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn prepared_statements_of_writers_never_fail_while_triggers_appear() {
    let conn = shard(server(2));
    let db = database(
        &conn,
        "mdev",
        "CREATE TABLE t (id INT PRIMARY KEY, a INT); \
         INSERT INTO t SELECT seq, seq FROM seq_1_to_1000;",
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3i64)
        .map(|w| {
            let (stop, db, writer) = (stop.clone(), db.clone(), shard(server(2)));
            tokio::spawn(async move {
                let mut c = writer.conn().await.expect("conn");
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = (done as i64 * 7 + w) % 1000 + 1;
                    c.exec_drop(format!("UPDATE `{db}`.t SET a = a + 1 WHERE id = ?"), (id,))
                        .await
                        .expect("a prepared UPDATE while triggers are added");
                    done += 1;
                }
                done
            })
        })
        .collect();
    for round in 0..12 {
        let spec = spec(
            &db,
            "t",
            &[&format!("ALTER TABLE `t` ADD COLUMN `x{round}` int")],
        );
        Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
        tokio::time::sleep(Duration::from_millis(10)).await;
        Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        assert!(writer.await.expect("writer") > 0);
    }
    conn.disconnect().await;
}

#[tokio::test]
async fn an_interrupted_copy_resumes_from_its_checkpoint() {
    let conn = shard(server(2));
    let db = database(
        &conn,
        "resume",
        "CREATE TABLE t (id BIGINT UNSIGNED PRIMARY KEY, v VARCHAR(20));
         INSERT INTO t SELECT seq + 18446744073709000000, CONCAT('v', seq) FROM seq_1_to_21000;",
    )
    .await;
    let spec = spec(&db, "t", &["ALTER TABLE `t` ADD COLUMN `n` int"]);
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    let stop = tokio::sync::Notify::new();
    let mut saved: Option<String> = None;
    let mut chunks = 0;
    let options = fast();
    let interrupted = {
        let copying = shadow.copy(&conn, None, &options, |p| {
            saved = p.checkpoint.clone();
            chunks += 1;
            if chunks == 2 {
                stop.notify_one();
            }
        });
        tokio::select! {
            result = copying => result.map(|_| false),
            () = stop.notified() => Ok(true),
        }
    };
    assert!(
        interrupted.expect("copy"),
        "the copy finished before it was interrupted"
    );
    let checkpoint = saved.expect("a checkpoint");
    assert!(checkpoint.starts_with("[18446744073709"), "{checkpoint}");
    drop(shadow);

    // As after a crash: prepare again, then continue from the saved checkpoint.
    let shadow = Shadow::prepare(&conn, spec.clone())
        .await
        .expect("prepare again");
    assert!(shadow.resumed());
    let progress = copy_all(&shadow, &conn, Some(checkpoint.clone())).await;
    let copied = progress.last().expect("a chunk").rows_copied;
    assert!(copied < 21_000, "copied {copied} rows again");
    shadow.checksum(&conn).await.expect("checksum");
    let (original, shadowed) = both(&conn, &db, ("t", SHADOW), "id, v", "id").await;
    assert_eq!(original, shadowed);

    // A checkpoint that cannot be this key's is refused.
    for bad in ["[1, 2]", "[\"x\"]", "not json"] {
        let err = shadow
            .copy(&conn, Some(bad.to_string()), &fast(), |_| {})
            .await
            .expect_err(bad);
        assert!(matches!(err, ShadowError::BadCheckpoint { .. }), "{err}");
    }
    // With other statements, the leftovers are not reused.
    let changed = ShadowSpec {
        statements: vec!["ALTER TABLE `t` ADD COLUMN `m` int".into()],
        ..spec.clone()
    };
    let fresh = Shadow::prepare(&conn, changed.clone())
        .await
        .expect("prepare changed");
    assert!(!fresh.resumed());
    let count = rows(&conn, &format!("SELECT COUNT(*) FROM `{db}`.`{SHADOW}`")).await;
    assert_eq!(count, [[Value::Bytes(b"0".to_vec())]]);
    Shadow::cleanup(&conn, &changed).await.expect("cleanup");
    conn.disconnect().await;
}

#[tokio::test]
async fn refusals_leave_nothing_behind() {
    let conn = shard(server(0));
    let db = database(
        &conn,
        "refuse",
        "CREATE TABLE nokey (a INT, b INT);
         CREATE TABLE nullable_unique (a INT, b INT, UNIQUE KEY (a));
         CREATE TABLE parent (id INT PRIMARY KEY);
         CREATE TABLE child (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES parent (id));
         CREATE TABLE trig (id INT PRIMARY KEY, n INT);
         CREATE TRIGGER trig_bi BEFORE INSERT ON trig FOR EACH ROW SET NEW.n = 1;
         CREATE TABLE dup (id INT PRIMARY KEY, email VARCHAR(50), note VARCHAR(20), num INT);
         INSERT INTO dup VALUES (1, 'a@x', 'abc', 1), (2, 'b@x', NULL, 2), (3, 'a@x', 'abcdefghij', 300);",
    )
    .await;
    let cases: &[(&str, &str, &str)] = &[
        (
            "nokey",
            "ALTER TABLE `nokey` ADD COLUMN c int",
            "no PRIMARY KEY",
        ),
        (
            "nullable_unique",
            "ALTER TABLE `nullable_unique` ADD COLUMN c int",
            "no PRIMARY KEY",
        ),
        (
            "child",
            "ALTER TABLE `child` ADD COLUMN c int",
            "foreign key",
        ),
        (
            "parent",
            "ALTER TABLE `parent` ADD COLUMN c int",
            "references it",
        ),
        ("trig", "ALTER TABLE `trig` ADD COLUMN c int", "trig_bi"),
        (
            "dup",
            "ALTER TABLE `dup` ADD UNIQUE KEY `uk_email` (`email`)",
            "'a@x') occurs 2 times",
        ),
        (
            "dup",
            "ALTER TABLE `dup` MODIFY `note` varchar(20) NOT NULL",
            "`note` becomes NOT NULL",
        ),
        (
            "dup",
            "ALTER TABLE `dup` MODIFY `note` varchar(5)",
            "first at key [3]",
        ),
        (
            "dup",
            "ALTER TABLE `dup` MODIFY `num` tinyint",
            "`num` becomes tinyint(4)",
        ),
        (
            "dup",
            "ALTER TABLE `dup` DROP PRIMARY KEY",
            "stays the same",
        ),
        ("dup", "DROP TABLE `dup`", "does not start with ALTER TABLE"),
        (
            "missing",
            "ALTER TABLE `missing` ADD c int",
            "does not exist",
        ),
    ];
    for (table, statement, expected) in cases {
        let message = refusal(Shadow::prepare(&conn, spec(&db, table, &[statement])).await);
        assert!(message.contains(expected), "{statement}: {message}");
        assert!(message.contains(&format!("`{db}`.`{table}`")), "{message}");
        let left = artifacts(&conn, &db).await;
        assert_eq!(left, ["trig_bi"], "{statement} left {left:?}");
    }

    // A statement the server rejects: the shadow is dropped again.
    let err = Shadow::prepare(
        &conn,
        spec(&db, "dup", &["ALTER TABLE `dup` DROP COLUMN `nope`"]),
    )
    .await
    .expect_err("bad statement");
    assert!(matches!(err, ShadowError::Statement { .. }), "{err}");
    assert_eq!(artifacts(&conn, &db).await, ["trig_bi"]);
    conn.disconnect().await;
}

#[tokio::test]
async fn data_that_breaks_the_change_after_prepare_fails_the_copy_or_checksum() {
    let conn = shard(server(1));
    let db = database(
        &conn,
        "late",
        "CREATE TABLE t (id INT PRIMARY KEY, email VARCHAR(50), note VARCHAR(20));
         INSERT INTO t SELECT seq, CONCAT('u', seq, '@x'), 'n' FROM seq_1_to_3000;",
    )
    .await;
    let spec = spec(
        &db,
        "t",
        &["ALTER TABLE `t` ADD UNIQUE KEY `uk_email` (`email`)"],
    );
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    // Passes the pre-check, then a duplicate arrives: the trigger's REPLACE puts it in the
    // shadow, and the copy of the older row collides with it.
    exec(
        &conn,
        &format!("INSERT INTO `{db}`.t VALUES (5000, 'u17@x', 'late')"),
    )
    .await;
    let failure = match shadow.copy(&conn, None, &fast(), |_| {}).await {
        Err(e) => e,
        Ok(_) => shadow
            .checksum(&conn)
            .await
            .expect_err("checksum must fail"),
    };
    let message = failure.to_string();
    assert!(
        matches!(
            failure,
            ShadowError::Lossy { .. } | ShadowError::Mismatch { .. }
        ),
        "{message}"
    );
    assert!(
        message.contains("uk_email") && message.contains(&db),
        "{message}"
    );
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    assert!(artifacts(&conn, &db).await.is_empty());

    // A shadow changed behind the engine's back: the checksum names the row and the column.
    exec(&conn, &format!("DELETE FROM `{db}`.t WHERE id = 5000")).await;
    let spec = ShadowSpec {
        statements: vec!["ALTER TABLE `t` ADD COLUMN `z` int".into()],
        ..spec
    };
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    copy_all(&shadow, &conn, None).await;
    exec(
        &conn,
        &format!("UPDATE `{db}`.`{SHADOW}` SET note = 'tampered' WHERE id = 2345"),
    )
    .await;
    let err = shadow.checksum(&conn).await.expect_err("mismatch");
    let message = err.to_string();
    assert!(matches!(err, ShadowError::Mismatch { .. }), "{message}");
    assert!(
        message.contains("[2345] differs")
            && message.contains("`note` is 'n' in the table but `note` is 'tampered'"),
        "{message}"
    );
    exec(
        &conn,
        &format!("DELETE FROM `{db}`.`{SHADOW}` WHERE id = 77"),
    )
    .await;
    exec(
        &conn,
        &format!("UPDATE `{db}`.`{SHADOW}` SET note = 'n' WHERE id = 2345"),
    )
    .await;
    let message = shadow
        .checksum(&conn)
        .await
        .expect_err("missing")
        .to_string();
    assert!(
        message.contains("[77] is missing from the shadow"),
        "{message}"
    );
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    assert!(artifacts(&conn, &db).await.is_empty());
    conn.disconnect().await;
}

#[tokio::test]
async fn composite_and_varchar_keys() {
    let conn = shard(server(2));
    let db = database(
        &conn,
        "keys",
        "CREATE TABLE comp (a INT NOT NULL, b VARCHAR(20) NOT NULL, c DATETIME(3) NOT NULL, \
           d VARBINARY(8) NOT NULL, v INT, PRIMARY KEY (a, b, c, d));
         INSERT INTO comp SELECT seq % 7, CONCAT(IF(seq % 2, 'ÄÖ', 'x''y'), seq % 5), \
           '2024-02-29 23:59:59.5' + INTERVAL (seq % 11) SECOND, UNHEX(CONCAT('FF00', LPAD(HEX(seq), 4, '0'))), seq \
           FROM seq_1_to_6000;
         CREATE TABLE vk (k VARCHAR(32) NOT NULL, v INT, UNIQUE KEY uk (k)) \
           DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
         INSERT INTO vk SELECT CONCAT('key-', seq), seq FROM seq_1_to_5000;",
    )
    .await;

    let spec_comp = ShadowSpec {
        shadow: "_sg0123456789ab_new_comp".into(),
        trigger_prefix: "_sg0123456789ab_tr_comp".into(),
        ..spec(
            &db,
            "comp",
            &["ALTER TABLE `comp` ADD COLUMN `z` int DEFAULT 0"],
        )
    };
    let shadow = Shadow::prepare(&conn, spec_comp.clone())
        .await
        .expect("prepare comp");
    // Stop after the first chunk and resume from its checkpoint.
    let mut first: Option<Progress> = None;
    let stop = tokio::sync::Notify::new();
    let options = fast();
    tokio::select! {
        r = shadow.copy(&conn, None, &options, |p| {
            if first.is_none() {
                first = Some(p.clone());
                stop.notify_one();
            }
        }) => { r.expect("copy"); }
        () = stop.notified() => {}
    }
    let checkpoint = first.expect("a chunk").checkpoint.expect("checkpoint");
    let key: serde_json::Value = serde_json::from_str(&checkpoint).expect("json");
    assert_eq!(key.as_array().map(Vec::len), Some(4), "{checkpoint}");
    assert!(
        key[3].as_str().is_some_and(|h| h.starts_with("FF00")),
        "{checkpoint}"
    );
    let progress = copy_all(&shadow, &conn, Some(checkpoint)).await;
    assert!(progress.len() > 1);
    shadow.checksum(&conn).await.expect("checksum comp");
    let (original, copied) = both(
        &conn,
        &db,
        ("comp", &spec_comp.shadow),
        "a, b, c, d, v",
        "a, b, c, d",
    )
    .await;
    assert_eq!(original.len(), 6000);
    assert_eq!(original, copied);

    // A NOT NULL UNIQUE varchar key, case-insensitive; a case-only key change moves the row.
    let spec_vk = ShadowSpec {
        shadow: "_sg0123456789ab_new_vk".into(),
        trigger_prefix: "_sg0123456789ab_tr_vk".into(),
        ..spec(&db, "vk", &["ALTER TABLE `vk` ADD COLUMN `w` varchar(5)"])
    };
    let shadow = Shadow::prepare(&conn, spec_vk.clone())
        .await
        .expect("prepare vk");
    copy_all(&shadow, &conn, None).await;
    exec(
        &conn,
        &format!("UPDATE `{db}`.vk SET k = 'KEY-17' WHERE k = 'key-17'"),
    )
    .await;
    exec(
        &conn,
        &format!("UPDATE `{db}`.vk SET k = 'moved' WHERE k = 'key-18'"),
    )
    .await;
    exec(&conn, &format!("DELETE FROM `{db}`.vk WHERE k = 'key-19'")).await;
    shadow.checksum(&conn).await.expect("checksum vk");
    let (original, copied) = both(&conn, &db, ("vk", &spec_vk.shadow), "BINARY k, v", "k").await;
    assert_eq!(original.len(), 4999);
    assert_eq!(original, copied);
    for spec in [&spec_comp, &spec_vk] {
        Shadow::cleanup(&conn, spec).await.expect("cleanup");
    }
    assert!(artifacts(&conn, &db).await.is_empty());
    conn.disconnect().await;
}

/// Copy speed against the server's own `ALGORITHM=COPY` on 1,000,000 rows, on a server of its
/// own, and against pt-online-schema-change when it is installed. Each contender gets its own
/// copy of the same table. Run with
/// `cargo test -p reconciler --test shadow copy_speed -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn copy_speed_against_native_alter() {
    let sandbox = Sandbox::start(1).expect("sandbox");
    let server = &sandbox.servers()[0];
    let conn = shard(server);
    // Room for every copy in memory, so the comparison is not about the disk. The resize runs
    // in the background: wait for it.
    exec(&conn, "SET GLOBAL innodb_buffer_pool_size = 2147483648").await;
    while rows(&conn, "SELECT @@innodb_buffer_pool_size").await
        != [[Value::Bytes(b"2147483648".to_vec())]]
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let db = database(
        &conn,
        "speed",
        "CREATE TABLE t1 (id INT AUTO_INCREMENT PRIMARY KEY, a INT NOT NULL, b VARCHAR(64), \
           c VARCHAR(64), d INT);
         INSERT INTO t1 (a, b, c, d) SELECT seq % 1000, MD5(seq), CONCAT('name-', seq), seq \
           FROM seq_1_to_1000000;
         CREATE TABLE t2 LIKE t1; INSERT INTO t2 SELECT * FROM t1;
         CREATE TABLE t4 LIKE t1; INSERT INTO t4 SELECT * FROM t1;
         CREATE TABLE t3 LIKE t1; ALTER TABLE t3 ADD COLUMN x int;",
    )
    .await;
    for table in ["t1", "t2", "t4"] {
        rows(
            &conn,
            &format!("SELECT COUNT(*), SUM(LENGTH(b)) FROM `{db}`.{table}"),
        )
        .await;
    }
    let timed = |sql: String| {
        let conn = conn.clone();
        async move {
            let started = Instant::now();
            exec(&conn, &sql).await;
            started.elapsed().as_secs_f64()
        }
    };
    let native = timed(format!(
        "ALTER TABLE `{db}`.t1 ADD COLUMN x int, ALGORITHM=COPY"
    ))
    .await;
    // The server's own row-by-row path, for reference: one INSERT … SELECT of everything.
    let insert_select = timed(format!(
        "INSERT INTO `{db}`.t3 (id, a, b, c, d) SELECT id, a, b, c, d FROM `{db}`.t2"
    ))
    .await;

    let spec = spec(&db, "t2", &["ALTER TABLE `t2` ADD COLUMN `x` int"]);
    let started = Instant::now();
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    let mut chunks = 0;
    let last = shadow
        .copy(&conn, None, &CopyOptions::default(), |_| chunks += 1)
        .await
        .expect("copy");
    let ours = started.elapsed().as_secs_f64();
    let started = Instant::now();
    shadow.checksum(&conn).await.expect("checksum");
    let checksum = started.elapsed().as_secs_f64();
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");

    // The peer, whole run (its copy plus the swap), if installed.
    let started = Instant::now();
    let peer = std::process::Command::new("pt-online-schema-change")
        .args([
            "--alter",
            "ADD COLUMN x int",
            &format!("D={db},t=t4,h=127.0.0.1,P={},u=root", server.port()),
            "--execute",
            "--recursion-method=none",
            "--quiet",
        ])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|_| started.elapsed().as_secs_f64());

    eprintln!(
        "native ALGORITHM=COPY {native:.2}s; one INSERT … SELECT {insert_select:.2}s; shadow \
         prepare+copy {ours:.2}s ({chunks} chunks, last of {} rows, {:.0} rows/s), ratio \
         {:.2}; checksum {checksum:.2}s; pt-online-schema-change {}",
        last.chunk_size,
        last.rows_per_sec,
        ours / native,
        peer.map_or("not run".to_string(), |s| format!(
            "{s:.2}s, ratio {:.2}",
            s / native
        )),
    );
    conn.disconnect().await;
}

/// Every value of a query as text (NULL as `NULL`), for comparisons.
async fn texts(conn: &ShardConn, sql: &str) -> Vec<Vec<String>> {
    rows(conn, sql)
        .await
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| match v {
                    Value::NULL => "NULL".to_string(),
                    Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => other.as_sql(false),
                })
                .collect()
        })
        .collect()
}

async fn auto_increment(conn: &ShardConn, db: &str, table: &str) -> String {
    texts(
        conn,
        &format!(
            "SELECT AUTO_INCREMENT FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{table}'"
        ),
    )
    .await
    .concat()
    .concat()
}

#[tokio::test]
async fn zero_ids_and_the_auto_increment_counter_survive_the_copy() {
    let conn = shard(server(0));
    let db = database(
        &conn,
        "autoinc",
        "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL);
         SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO');
         INSERT INTO t VALUES (0, 0);
         INSERT INTO t (v) SELECT seq FROM seq_1_to_7;
         DELETE FROM t WHERE id >= 5;",
    )
    .await;
    let spec = spec(&db, "t", &["ALTER TABLE `t` ADD COLUMN `w` int"]);
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    // The shadow counts on from the table's counter, not from its own rows (ids 5 to 7 were
    // given out and deleted: handing them out again could confuse whoever saw them).
    assert_eq!(auto_increment(&conn, &db, SHADOW).await, "8");
    // The trigger writes row 0 again; the copy copies it: both keep its 0.
    {
        let mut c = conn.conn().await.expect("conn");
        c.query_drop("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
            .await
            .expect("sql_mode");
        c.query_drop(format!("UPDATE `{db}`.t SET v = 10 WHERE id = 0"))
            .await
            .expect("update");
    }
    copy_all(&shadow, &conn, None).await;
    shadow.checksum(&conn).await.expect("checksum");
    let ids = texts(
        &conn,
        &format!("SELECT id, v FROM `{db}`.`{SHADOW}` ORDER BY id"),
    )
    .await;
    assert_eq!(
        ids,
        [["0", "10"], ["1", "1"], ["2", "2"], ["3", "3"], ["4", "4"]]
    );
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");

    // A counter the statements set themselves wins.
    let spec = ShadowSpec {
        statements: vec!["ALTER TABLE `t` AUTO_INCREMENT = 20".into()],
        ..spec
    };
    Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    assert_eq!(auto_increment(&conn, &db, SHADOW).await, "20");
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    conn.disconnect().await;
}

#[tokio::test]
async fn column_names_match_in_any_case_and_a_column_dropped_and_added_again_is_new() {
    let conn = shard(server(1));
    let db = database(
        &conn,
        "names",
        "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, c1 INT NULL, c2 INT NOT NULL DEFAULT 0);
         INSERT INTO t (c1, c2) SELECT IF(seq % 2, NULL, seq), seq FROM seq_1_to_100;",
    )
    .await;
    // `MODIFY C2` renames `c2` to `C2` (and `id` to `ID`): same columns, their data stays.
    // `c1` is dropped and a new `c1` added: its old values (NULLs included) are gone, every
    // row gets the new default, as with a native ALTER.
    let spec = spec(
        &db,
        "t",
        &[
            "ALTER TABLE `t` MODIFY ID int NOT NULL, MODIFY C2 bigint NOT NULL DEFAULT 0, \
           DROP COLUMN c1, ADD COLUMN c1 int NOT NULL DEFAULT 47",
        ],
    );
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    exec(
        &conn,
        &format!("INSERT INTO `{db}`.t (id, c1, c2) VALUES (101, 5, 500)"),
    )
    .await;
    copy_all(&shadow, &conn, None).await;
    exec(&conn, &format!("UPDATE `{db}`.t SET c2 = -3 WHERE id = 3")).await;
    shadow.checksum(&conn).await.expect("checksum");
    let table = texts(&conn, &format!("SELECT id, c2 FROM `{db}`.t ORDER BY id")).await;
    let copied = texts(
        &conn,
        &format!("SELECT ID, C2 FROM `{db}`.`{SHADOW}` ORDER BY ID"),
    )
    .await;
    assert_eq!(copied.len(), 101);
    assert_eq!(copied, table);
    let new_c1 = texts(&conn, &format!("SELECT DISTINCT c1 FROM `{db}`.`{SHADOW}`")).await;
    assert_eq!(new_c1, [["47"]]);
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    assert!(artifacts(&conn, &db).await.is_empty());
    conn.disconnect().await;
}

#[tokio::test]
async fn a_key_that_grows_keeps_one_row_per_key() {
    let conn = shard(server(2));
    let db = database(
        &conn,
        "grown",
        "CREATE TABLE t (id INT PRIMARY KEY, i INT NOT NULL, v VARCHAR(10));
         INSERT INTO t SELECT seq, seq, 'x' FROM seq_1_to_3000;",
    )
    .await;
    // The shadow's primary key (id, i) would take a second row with the same id: the
    // triggers must remove the old one themselves.
    let spec = spec(
        &db,
        "t",
        &["ALTER TABLE `t` DROP PRIMARY KEY, ADD PRIMARY KEY (`id`, `i`)"],
    );
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    exec(
        &conn,
        &format!("UPDATE `{db}`.t SET i = i + 10000 WHERE id IN (1, 2)"),
    )
    .await;
    copy_all(&shadow, &conn, None).await;
    for sql in [
        "UPDATE `{db}`.t SET i = i + 20000 WHERE id IN (1, 2500)",
        "UPDATE `{db}`.t SET id = 9000 WHERE id = 2999",
        "DELETE FROM `{db}`.t WHERE id = 3",
        "INSERT INTO `{db}`.t VALUES (5000, 1, 'new')",
    ] {
        exec(&conn, &sql.replace("{db}", &db)).await;
    }
    shadow.checksum(&conn).await.expect("checksum");
    let table = texts(&conn, &format!("SELECT id, i, v FROM `{db}`.t ORDER BY id")).await;
    let copied = texts(
        &conn,
        &format!("SELECT id, i, v FROM `{db}`.`{SHADOW}` ORDER BY id"),
    )
    .await;
    assert_eq!(copied.len(), 3000);
    assert_eq!(copied, table);
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    conn.disconnect().await;
}

#[tokio::test]
async fn enum_keys_are_ranged_by_their_index_not_their_text() {
    let conn = shard(server(0));
    // Index order red < green < blue is not the text order (blue < green < red).
    let db = database(
        &conn,
        "enumkey",
        "CREATE TABLE t (id INT NOT NULL, e ENUM('red', 'green', 'blue') NOT NULL, v INT, \
           PRIMARY KEY (id, e));
         INSERT INTO t SELECT seq DIV 3, ELT(1 + seq % 3, 'red', 'green', 'blue'), seq \
           FROM seq_0_to_5999;",
    )
    .await;
    let spec = spec(&db, "t", &["ALTER TABLE `t` ADD COLUMN `z` int"]);
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    // Stop after the first chunk (its checkpoint ends inside an id) and resume from there.
    let mut first: Option<Progress> = None;
    let stop = tokio::sync::Notify::new();
    let options = fast();
    tokio::select! {
        r = shadow.copy(&conn, None, &options, |p| {
            if first.is_none() {
                first = Some(p.clone());
                stop.notify_one();
            }
        }) => { r.expect("copy"); }
        () = stop.notified() => {}
    }
    let checkpoint = first.expect("a chunk").checkpoint.expect("checkpoint");
    let key: serde_json::Value = serde_json::from_str(&checkpoint).expect("json");
    assert!(key[1].is_u64() || key[1].is_i64(), "{checkpoint}");
    exec(&conn, &format!("DELETE FROM `{db}`.t WHERE id = 1500")).await;
    exec(
        &conn,
        &format!("UPDATE `{db}`.t SET e = 'blue', v = -1 WHERE id = 10 AND e = 'red' AND FALSE"),
    )
    .await;
    copy_all(&shadow, &conn, Some(checkpoint)).await;
    shadow.checksum(&conn).await.expect("checksum");
    let count = |table: &str| format!("SELECT COUNT(*) FROM `{db}`.`{table}`");
    assert_eq!(texts(&conn, &count(SHADOW)).await, [["5997"]]);
    assert_eq!(texts(&conn, &count("t")).await, [["5997"]]);
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    conn.disconnect().await;
}

#[tokio::test]
async fn a_row_the_trigger_wrote_first_is_no_loss_whatever_key_reports_it() {
    let conn = shard(server(1));
    let db = database(
        &conn,
        "otherpk",
        "CREATE TABLE t (id INT PRIMARY KEY, i INT NOT NULL, UNIQUE KEY ui (i));
         INSERT INTO t SELECT seq, seq * 2 FROM seq_1_to_100;",
    )
    .await;
    // The shared key stays `id` (now a UNIQUE key); the shadow's primary key is `i`, which the
    // server checks first: a row the trigger already wrote collides there.
    let spec = spec(
        &db,
        "t",
        &[
            "ALTER TABLE `t` DROP PRIMARY KEY, DROP KEY `ui`, ADD PRIMARY KEY (`i`), \
           ADD UNIQUE KEY `uid` (`id`)",
        ],
    );
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    exec(
        &conn,
        &format!("UPDATE `{db}`.t SET i = i + 1 WHERE id = 7"),
    )
    .await;
    copy_all(&shadow, &conn, None).await;
    shadow.checksum(&conn).await.expect("checksum");
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    conn.disconnect().await;
}

#[tokio::test]
async fn temporal_conversions_happen_in_the_copys_time_zone_whatever_the_writers() {
    let conn = shard(server(2));
    let db = database(
        &conn,
        "zones",
        "CREATE TABLE t (id INT PRIMARY KEY, d DATETIME NULL, ts TIMESTAMP NULL, dt DATE NULL);
         INSERT INTO t VALUES (1, '2020-01-01 10:00:00', '2020-01-01 10:00:00', '2020-01-01');",
    )
    .await;
    let spec = spec(
        &db,
        "t",
        &[
            "ALTER TABLE `t` MODIFY d TIMESTAMP NULL, MODIFY ts DATETIME NULL, \
           MODIFY dt TIMESTAMP NULL",
        ],
    );
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    {
        // A writer far from the server's zone: its rows go through the triggers.
        let mut c = conn.conn().await.expect("conn");
        for sql in [
            "SET SESSION time_zone = '+05:00'".to_string(),
            format!(
                "INSERT INTO `{db}`.t VALUES \
                 (2, '2020-06-01 12:00:00', '2020-06-01 12:00:00', '2020-06-01')"
            ),
            format!("UPDATE `{db}`.t SET ts = '2020-01-01 11:00:00' WHERE id = 1"),
        ] {
            c.query_drop(sql).await.expect("writer");
        }
    }
    copy_all(&shadow, &conn, None).await;
    shadow.checksum(&conn).await.expect("checksum");
    // Read in the server's zone (the copy's): every row reads as a native ALTER run there
    // would have left it.
    let read =
        |table: &str| format!("SELECT id, d, ts, DATE(dt) FROM `{db}`.`{table}` ORDER BY id");
    let table = texts(&conn, &read("t")).await;
    let copied = texts(&conn, &read(SHADOW)).await;
    assert_eq!(copied, table);
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    conn.disconnect().await;
}

#[tokio::test]
async fn a_statement_that_renames_the_table_is_refused() {
    let conn = shard(server(0));
    let db = database(
        &conn,
        "renametable",
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1);",
    )
    .await;
    for statement in [
        "ALTER TABLE `t` RENAME TO `u`",
        "ALTER TABLE `t` ADD COLUMN x int, RENAME AS u",
    ] {
        let message = refusal(Shadow::prepare(&conn, spec(&db, "t", &[statement])).await);
        assert!(message.contains("renames the table"), "{message}");
        assert!(artifacts(&conn, &db).await.is_empty());
        let tables = texts(
            &conn,
            &format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}'"
            ),
        )
        .await;
        assert_eq!(tables, [["t"]]);
    }
    // Renaming a column or an index is no table rename.
    let spec = ShadowSpec {
        renames: vec![("v".into(), "w".into())],
        ..spec(&db, "t", &["ALTER TABLE `t` RENAME COLUMN `v` TO `w`"])
    };
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    copy_all(&shadow, &conn, None).await;
    shadow.checksum(&conn).await.expect("checksum");
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    conn.disconnect().await;
}

/// `SHOW CREATE TABLE` without the table's name and its AUTO_INCREMENT counter.
async fn definition(conn: &ShardConn, db: &str, table: &str) -> String {
    let create = rows(conn, &format!("SHOW CREATE TABLE `{db}`.`{table}`")).await;
    let Value::Bytes(create) = &create[0][1] else {
        panic!("create text")
    };
    let text = String::from_utf8_lossy(create);
    let body = &text[text.find('(').expect("column list")..];
    body.split(' ')
        .filter(|word| !word.starts_with("AUTO_INCREMENT="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn secondary_indexes_are_built_after_the_copy_exactly_as_planned() {
    let conn = shard(server(0));
    let db = database(
        &conn,
        "defer",
        "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, a INT NOT NULL, b VARCHAR(40), \
           c DATETIME NOT NULL, e VARCHAR(20) NOT NULL, UNIQUE KEY ue (e), KEY kb (b(10)), \
           KEY kac (a, c) COMMENT 'by account', KEY kc (c));
         INSERT INTO t (a, b, c, e) SELECT seq % 50, CONCAT('b', seq), \
           '2024-01-01' + INTERVAL seq MINUTE, CONCAT('e', seq) FROM seq_1_to_12000;
         CREATE TABLE want LIKE t;",
    )
    .await;
    let statement = "ALTER TABLE `t` ADD COLUMN `f` int NOT NULL DEFAULT 3, DROP KEY `kc`, \
                     ADD KEY `kf` (`f`, `a`)";
    exec(&conn, &statement.replace("`t`", &format!("`{db}`.`want`"))).await;
    let want = definition(&conn, &db, "want").await;

    let spec = spec(&db, "t", &[statement]);
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    let bare = definition(&conn, &db, SHADOW).await;
    assert!(
        bare.contains("UNIQUE KEY `ue`") && !bare.contains("KEY `k"),
        "the shadow starts without its plain indexes: {bare}"
    );
    let progress = copy_all(&shadow, &conn, None).await;
    assert_eq!(definition(&conn, &db, SHADOW).await, want);
    let (original, copied) = both(&conn, &db, ("t", SHADOW), "id, a, b, c, e", "id").await;
    assert_eq!(original, copied);

    // Interrupted before the indexes were built: a resume adds them, and it checks the rows
    // below its checkpoint again first.
    exec(
        &conn,
        &format!("ALTER TABLE `{db}`.`{SHADOW}` DROP KEY `kf`, DROP KEY `kb`"),
    )
    .await;
    let resumed = Shadow::prepare(&conn, spec.clone()).await.expect("resume");
    assert!(resumed.resumed());
    let middle = progress[progress.len() / 2].checkpoint.clone();
    copy_all(&resumed, &conn, middle.clone()).await;
    assert_eq!(definition(&conn, &db, SHADOW).await, want);
    exec(
        &conn,
        &format!("UPDATE `{db}`.`{SHADOW}` SET b = 'tampered' WHERE id = 3"),
    )
    .await;
    let err = resumed
        .copy(&conn, middle, &fast(), |_| {})
        .await
        .expect_err("the rows below the checkpoint are verified");
    assert!(
        matches!(err, ShadowError::Mismatch { .. }) && err.to_string().contains("[3] differs"),
        "{err}"
    );
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");

    // Not deferred: the shadow has every index from the start.
    let kept = ShadowSpec {
        defer_indexes: false,
        carry_foreign_keys: false,
        ..spec.clone()
    };
    let shadow = Shadow::prepare(&conn, kept.clone()).await.expect("prepare");
    assert_eq!(definition(&conn, &db, SHADOW).await, want);
    copy_all(&shadow, &conn, None).await;
    assert_eq!(definition(&conn, &db, SHADOW).await, want);
    Shadow::cleanup(&conn, &kept).await.expect("cleanup");

    // A FULLTEXT index stays in place (it would change places with the plain ones, and an
    // InnoDB temporary table cannot take one): nothing is deferred, the result is the same.
    exec(
        &conn,
        &format!("ALTER TABLE `{db}`.t ADD FULLTEXT KEY ft (b), ALGORITHM=COPY"),
    )
    .await;
    exec(
        &conn,
        &format!("ALTER TABLE `{db}`.want ADD FULLTEXT KEY ft (b), ALGORITHM=COPY"),
    )
    .await;
    let want = definition(&conn, &db, "want").await;
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    assert_eq!(definition(&conn, &db, SHADOW).await, want);
    copy_all(&shadow, &conn, None).await;
    assert_eq!(definition(&conn, &db, SHADOW).await, want);
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    assert!(artifacts(&conn, &db).await.is_empty());
    conn.disconnect().await;
}

/// Runs one side of the seal's capture swap the way its lock holder does: both tables
/// write-locked, the statements as one multi-statement.
async fn turn(conn: &ShardConn, db: &str, statements: &[String]) {
    let mut c = conn.conn().await.expect("conn");
    c.query_drop(format!(
        "LOCK TABLES `{db}`.t WRITE, `{db}`.`{SHADOW}` WRITE"
    ))
    .await
    .expect("lock");
    c.query_drop(statements.join(";\n")).await.expect("swap");
    c.query_drop("UNLOCK TABLES").await.expect("unlock");
}

async fn capture(conn: &ShardConn, spec: &ShadowSpec) -> Result<(), String> {
    match Shadow::capture(conn, spec).await.expect("capture") {
        Capture::Intact(_) => Ok(()),
        Capture::Broken(why) => Err(why),
    }
}

/// The seal turns the capture around under its locks: from the flip on, the reverse triggers
/// repeat every write on the new table into the old one, in the old definition, so that a
/// swap-back loses nothing. Here with a dropped column, an added one, a renamed and narrowed
/// one, a TIMESTAMP becoming DATETIME written from another time zone, and a generated column.
#[tokio::test]
async fn reverse_triggers_carry_the_new_tables_writes_back_into_the_old_table() {
    const OLD: &str = "_sg0123456789ab_old_t";
    let conn = shard(server(1));
    let db = database(
        &conn,
        "reverse",
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, a INT NOT NULL, gone VARCHAR(10) NOT NULL, \
           name VARCHAR(8) NOT NULL, ts TIMESTAMP NULL, g INT AS (a * 2) VIRTUAL) ENGINE=InnoDB;
         INSERT INTO t (id, a, gone, name, ts) SELECT seq, seq, CONCAT('g', seq), \
           CONCAT('n', seq), '2024-01-01 00:00:00' + INTERVAL seq HOUR FROM seq_1_to_50;",
    )
    .await;
    let spec = ShadowSpec {
        renames: vec![("name".into(), "full_name".into())],
        ..spec(
            &db,
            "t",
            &[
                "ALTER TABLE `t` DROP COLUMN `gone`, ADD COLUMN `added` int NOT NULL DEFAULT 5, \
               CHANGE COLUMN `name` `full_name` varchar(20) NOT NULL, MODIFY `ts` datetime NULL",
            ],
        )
    };
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    copy_all(&shadow, &conn, None).await;
    shadow.checksum(&conn).await.expect("checksum");
    assert_eq!(capture(&conn, &spec).await, Ok(()));

    let mode = texts(&conn, "SELECT @@session.sql_mode")
        .await
        .concat()
        .concat();
    let swap = shadow.capture_swap(OLD, &mode);
    // Turned around, the shadow no longer follows the table: never to be sealed as is.
    turn(&conn, &db, &swap.to_reverse).await;
    let why = capture(&conn, &spec)
        .await
        .expect_err("the capture is gone");
    assert!(why.contains("missing"), "{why}");
    // Turned back (an abandoned round), it does again.
    turn(&conn, &db, &swap.to_forward).await;
    assert_eq!(capture(&conn, &spec).await, Ok(()));
    exec(&conn, &format!("UPDATE `{db}`.t SET a = 1000 WHERE id = 1")).await;
    shadow
        .checksum(&conn)
        .await
        .expect("checksum after turning back");

    // The flip, as the seal makes it.
    turn(&conn, &db, &swap.to_reverse).await;
    exec(
        &conn,
        &format!("RENAME TABLE `{db}`.t TO `{db}`.`{OLD}`, `{db}`.`{SHADOW}` TO `{db}`.t"),
    )
    .await;
    {
        // The application, in strict mode and far from the server's zone, writes the new table.
        let mut c = conn.conn().await.expect("conn");
        for sql in [
            "SET SESSION time_zone = '+05:00'".to_string(),
            format!(
                "INSERT INTO `{db}`.t (id, a, added, full_name, ts) \
                 VALUES (100, 7, 9, 'new', '2024-06-01 12:00:00')"
            ),
            // Too long for the old column: stored as the old definition allows.
            format!("INSERT INTO `{db}`.t (id, a, full_name) VALUES (101, 8, 'a longer name')"),
            format!("INSERT INTO `{db}`.t (id, a, full_name) VALUES (102, 9, 'brief')"),
            format!("DELETE FROM `{db}`.t WHERE id = 102"),
            format!("UPDATE `{db}`.t SET a = 70, full_name = 'renamed' WHERE id = 5"),
            format!("UPDATE `{db}`.t SET id = 200 WHERE id = 6"),
            format!("UPDATE `{db}`.t SET ts = '2024-07-01 08:00:00' WHERE id = 8"),
            format!("DELETE FROM `{db}`.t WHERE id = 7"),
        ] {
            c.query_drop(&sql).await.expect(&sql);
        }
    }
    // Read in the server's zone: the old table holds what the new one holds.
    let new_rows = texts(
        &conn,
        &format!("SELECT id, a, LEFT(full_name, 8), ts FROM `{db}`.t ORDER BY id"),
    )
    .await;
    let old_rows = texts(
        &conn,
        &format!("SELECT id, a, name, ts FROM `{db}`.`{OLD}` ORDER BY id"),
    )
    .await;
    assert_eq!(old_rows.len(), 51);
    assert_eq!(old_rows, new_rows);
    // The column only the old table has: kept by updates (even of the key), its default for
    // new rows; the generated column follows.
    let gone = texts(
        &conn,
        &format!("SELECT id, gone FROM `{db}`.`{OLD}` WHERE id IN (5, 100, 101, 200) ORDER BY id"),
    )
    .await;
    assert_eq!(gone, [["5", "g5"], ["100", ""], ["101", ""], ["200", "g6"]]);
    let generated = texts(
        &conn,
        &format!("SELECT COUNT(*) FROM `{db}`.`{OLD}` WHERE g <> a * 2"),
    )
    .await;
    assert_eq!(generated, [["0"]]);

    // The swap-back: the reverse triggers travel back with the shadow; cleanup drops them.
    exec(
        &conn,
        &format!("RENAME TABLE `{db}`.t TO `{db}`.`{SHADOW}`, `{db}`.`{OLD}` TO `{db}`.t"),
    )
    .await;
    let mut names = artifacts(&conn, &db).await;
    names.sort();
    assert_eq!(
        names,
        [
            SHADOW,
            &format!("{PREFIX}_rde"),
            &format!("{PREFIX}_rin"),
            &format!("{PREFIX}_rup")
        ]
    );
    Shadow::drop_reverse_triggers(&conn, &spec, Duration::from_secs(1))
        .await
        .expect("drop reverse triggers");
    assert_eq!(artifacts(&conn, &db).await, [SHADOW]);
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    assert!(artifacts(&conn, &db).await.is_empty());
    conn.disconnect().await;
}

/// Autocommit single-row writes (updates, inserts at the tail, deletes) from several sessions
/// until `stop`; returns (writes, writes that failed with a deadlock or lock wait timeout).
async fn plain_writer(
    conn: ShardConn,
    db: String,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> (usize, usize) {
    let mut rng = Rng(seed);
    let mut c = conn.conn().await.expect("writer conn");
    let (mut writes, mut failed) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let id = 1 + rng.below(30_000);
        let sql = match rng.below(10) {
            0..=5 => format!("UPDATE `{db}`.t SET a = a + 1, b = 'w{id}' WHERE id = {id}"),
            6..=8 => format!("INSERT INTO `{db}`.t (a, b) VALUES ({id}, 'new')"),
            _ => format!("DELETE FROM `{db}`.t WHERE id = {id}"),
        };
        match c.query_drop(&sql).await {
            Ok(()) => writes += 1,
            Err(mysql_async::Error::Server(e)) if e.code == 1213 || e.code == 1205 => failed += 1,
            Err(e) => panic!("{sql}: {e}"),
        }
    }
    (writes, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_copy_causes_no_deadlocks_for_single_row_writers() {
    let conn = shard(server(2));
    let db = database(
        &conn,
        "deadlock",
        "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, a INT NOT NULL, b VARCHAR(40), \
           KEY ka (a));
         INSERT INTO t (a, b) SELECT seq, CONCAT('r', seq) FROM seq_1_to_30000;",
    )
    .await;
    let spec = spec(
        &db,
        "t",
        &["ALTER TABLE `t` ADD COLUMN `x` int DEFAULT 1, MODIFY `b` varchar(60)"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(plain_writer(
                shard(server(2)),
                db.clone(),
                0x9e37_79b9 + i,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    let options = CopyOptions {
        target_chunk_time: Duration::from_millis(20),
        threads: 2,
        ..CopyOptions::default()
    };
    shadow
        .copy(&conn, None, &options, |_| {})
        .await
        .expect("copy");
    stop.store(true, Ordering::Relaxed);
    let (mut writes, mut failed) = (0, 0);
    for writer in writers {
        let (w, f) = writer.await.expect("writer");
        writes += w;
        failed += f;
    }
    eprintln!("{writes} writes, {failed} failed with a lock conflict");
    assert!(writes > 500, "only {writes} writes");
    assert_eq!(
        failed, 0,
        "writes failed with deadlocks or lock wait timeouts"
    );
    shadow.checksum(&conn).await.expect("checksum");
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_long_transaction_delays_the_triggers_without_stalling_writers() {
    let conn = shard(server(0));
    let db = database(
        &conn,
        "longtx",
        "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, a INT NOT NULL);
         INSERT INTO t (a) SELECT seq FROM seq_1_to_1000;",
    )
    .await;
    // A transaction that read the table holds its metadata lock until it ends.
    let mut holder = conn.conn().await.expect("conn");
    holder.query_drop("BEGIN").await.expect("begin");
    holder
        .query_drop(format!("SELECT COUNT(*) FROM `{db}`.t"))
        .await
        .expect("read");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (conn, db, stop) = (shard(server(0)), db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut c = conn.conn().await.expect("writer conn");
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                c.query_drop(format!("INSERT INTO `{db}`.t (a) VALUES (1)"))
                    .await
                    .expect("insert");
                longest = longest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            longest
        })
    };
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        holder.query_drop("COMMIT").await.expect("commit");
    });
    let started = Instant::now();
    let spec = spec(&db, "t", &["ALTER TABLE `t` ADD COLUMN `b` int"]);
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    let waited = started.elapsed();
    release.await.expect("release");
    stop.store(true, Ordering::Relaxed);
    let longest = writer.await.expect("writer");
    eprintln!("prepare waited {waited:?}; longest write {longest:?}");
    assert!(
        waited >= Duration::from_millis(1400),
        "prepare did not wait: {waited:?}"
    );
    assert!(
        longest < Duration::from_millis(300),
        "a write waited {longest:?} behind the tool's lock request"
    );
    shadow
        .copy(&conn, None, &fast(), |_| {})
        .await
        .expect("copy");
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    conn.disconnect().await;
}

#[tokio::test]
async fn carried_foreign_keys_hold_and_new_keys_are_checked() {
    let conn = shard(server(0));
    let db = database(
        &conn,
        "fkcarry",
        "CREATE TABLE customers (id INT PRIMARY KEY);
         CREATE TABLE shops (id INT PRIMARY KEY);
         CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT NOT NULL, shop_id INT, qty INT,
           KEY (shop_id),
           CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id));
         CREATE TABLE receipts (id INT PRIMARY KEY, order_no INT,
           CONSTRAINT fk_order FOREIGN KEY (order_no) REFERENCES customers (id) ON DELETE CASCADE);
         INSERT INTO customers SELECT seq FROM seq_1_to_50;
         INSERT INTO shops SELECT seq FROM seq_1_to_10;
         INSERT INTO orders SELECT seq, 1 + seq % 50, 1 + seq % 10, seq FROM seq_1_to_5000;",
    )
    .await;
    let add_shop_key = "ALTER TABLE `orders` ADD CONSTRAINT `fk_shop` FOREIGN KEY (`shop_id`) REFERENCES `shops` (`id`)";
    let retype = "ALTER TABLE `orders` MODIFY `qty` bigint(20) DEFAULT NULL";
    let carry = |table: &str, statements: &[&str]| ShadowSpec {
        carry_foreign_keys: true,
        ..spec(&db, table, statements)
    };

    // Without the setting the table is refused, and the message names the setting.
    let message = refusal(Shadow::prepare(&conn, spec(&db, "orders", &[retype])).await);
    assert!(message.contains("foreign_keys: carry"), "{message}");
    // A table others reference is refused either way.
    let message = refusal(
        Shadow::prepare(
            &conn,
            carry("customers", &["ALTER TABLE `customers` ADD COLUMN c int"]),
        )
        .await,
    );
    assert!(message.contains("references it"), "{message}");
    // Keys that act on their children, kept or added: a cascade fires no trigger.
    let cascading = format!("{add_shop_key} ON DELETE SET NULL");
    let message = refusal(Shadow::prepare(&conn, carry("orders", &[&cascading])).await);
    assert!(
        message.contains("`fk_shop` changes rows when its parent changes"),
        "{message}"
    );
    let message = refusal(
        Shadow::prepare(
            &conn,
            carry("receipts", &["ALTER TABLE `receipts` ADD COLUMN c int"]),
        )
        .await,
    );
    assert!(message.contains("`fk_order` changes rows"), "{message}");
    // So does a key that would reference the table itself.
    let selfish = "ALTER TABLE `orders` ADD CONSTRAINT `fk_self` FOREIGN KEY (`qty`) REFERENCES `orders` (`id`)";
    let message = refusal(Shadow::prepare(&conn, carry("orders", &[selfish])).await);
    assert!(message.contains("references the table itself"), "{message}");
    // A new key the rows break is refused before anything is copied.
    exec(
        &conn,
        &format!("UPDATE `{db}`.orders SET shop_id = 99 WHERE id = 7"),
    )
    .await;
    let message = refusal(Shadow::prepare(&conn, carry("orders", &[retype, add_shop_key])).await);
    assert!(
        message.contains("finds no row in") && message.contains("[7]"),
        "{message}"
    );
    assert!(artifacts(&conn, &db).await.is_empty());
    exec(
        &conn,
        &format!("UPDATE `{db}`.orders SET shop_id = 2 WHERE id = 7"),
    )
    .await;

    let shadow = Shadow::prepare(&conn, carry("orders", &[retype, add_shop_key]))
        .await
        .expect("prepare");
    let keys = |table: &str| {
        let (conn, db) = (&conn, &db);
        let table = table.to_string();
        async move {
            texts(
                conn,
                &format!(
                    "SELECT CONSTRAINT_NAME, REFERENCED_TABLE_NAME, DELETE_RULE \
                     FROM information_schema.REFERENTIAL_CONSTRAINTS \
                     WHERE CONSTRAINT_SCHEMA = '{db}' AND TABLE_NAME = '{table}' ORDER BY 1"
                ),
            )
            .await
        }
    };
    assert_eq!(
        keys(SHADOW).await,
        [
            vec![
                format!("{PREFIX}_f0"),
                "customers".into(),
                "RESTRICT".into()
            ],
            vec![format!("{PREFIX}_f1"), "shops".into(), "RESTRICT".into()],
        ]
    );
    copy_all(&shadow, &conn, None).await;

    // At the gate the new key already holds (the triggers write the shadow in the writer's
    // session, with its checks).
    let mut c = conn.conn().await.expect("conn");
    let err = c
        .query_drop(format!("DELETE FROM `{db}`.shops WHERE id = 4"))
        .await
        .expect_err("the shadow's new key refuses the parent's delete");
    assert!(err.to_string().contains("foreign key constraint"), "{err}");
    c.query_drop(format!("INSERT INTO `{db}`.orders VALUES (9001, 5, 6, 1)"))
        .await
        .expect("insert");
    c.query_drop(format!(
        "UPDATE `{db}`.orders SET customer_id = 9 WHERE id = 3"
    ))
    .await
    .expect("update");
    drop(c);
    shadow.checksum(&conn).await.expect("checksum at the gate");
    let (table, copy) = both(
        &conn,
        &db,
        ("orders", SHADOW),
        "id, customer_id, shop_id, qty",
        "id",
    )
    .await;
    assert_eq!(table, copy);
    assert!(matches!(
        Shadow::capture(&conn, shadow.spec())
            .await
            .expect("capture"),
        Capture::Intact(_)
    ));

    // A resume finds the same shadow; a shadow that lost a key is made again.
    let resumed = Shadow::prepare(&conn, carry("orders", &[retype, add_shop_key]))
        .await
        .expect("resume");
    assert!(resumed.resumed());
    exec(
        &conn,
        &format!("ALTER TABLE `{db}`.`{SHADOW}` DROP FOREIGN KEY `{PREFIX}_f1`"),
    )
    .await;
    let again = Shadow::prepare(&conn, carry("orders", &[retype, add_shop_key]))
        .await
        .expect("prepare again");
    assert!(!again.resumed());
    assert_eq!(keys(SHADOW).await.len(), 2);
    Shadow::cleanup(&conn, again.spec()).await.expect("cleanup");
    assert!(artifacts(&conn, &db).await.is_empty());
    conn.disconnect().await;
}

/// Rows that appear in a chunk's key range after the chunk locked its rows, and go again at
/// once (a queue on a table with sparse keys; and an AUTO_INCREMENT tail for the last chunk):
/// the copy reads without locks under READ COMMITTED, so it must notice them (the count read
/// differs from the count locked) and lock the chunk again, or it would copy a deleted row back
/// into the shadow and the checksum would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_that_come_and_go_in_a_chunks_range_are_not_copied_back() {
    let conn = shard(server(1));
    let db = database(
        &conn,
        "comego",
        "CREATE TABLE q (id INT AUTO_INCREMENT PRIMARY KEY, a INT NOT NULL, b VARCHAR(40));
         INSERT INTO q (id, a, b) SELECT seq * 2, seq, CONCAT('r', seq) FROM seq_1_to_40000;",
    )
    .await;
    let spec = spec(&db, "q", &["ALTER TABLE `q` MODIFY `b` varchar(60)"]);
    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..3u64)
        .map(|i| {
            let (conn, db, stop) = (shard(server(1)), db.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x5eed + i);
                let mut c = conn.conn().await.expect("conn");
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // An odd key between the rows, or a new one at the end.
                    let insert = match rng.below(4) {
                        0 => format!("INSERT INTO `{db}`.q (a, b) VALUES (0, 'tail')"),
                        _ => format!(
                            "INSERT IGNORE INTO `{db}`.q (id, a, b) VALUES ({}, 0, 'gap')",
                            1 + 2 * rng.below(40_000)
                        ),
                    };
                    c.query_drop(&insert).await.expect("insert");
                    let id = c.last_insert_id().unwrap_or(0);
                    c.query_drop(format!("DELETE FROM `{db}`.q WHERE id = {id}"))
                        .await
                        .expect("delete");
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shadow = Shadow::prepare(&conn, spec.clone()).await.expect("prepare");
    let options = CopyOptions {
        target_chunk_time: Duration::from_millis(20),
        ..CopyOptions::default()
    };
    let copied = shadow.copy(&conn, None, &options, |_| {}).await;
    stop.store(true, Ordering::Relaxed);
    let mut rounds = 0;
    for churner in churners {
        rounds += churner.await.expect("churner");
    }
    copied.expect("copy and its checksum");
    assert!(rounds > 300, "only {rounds} rows came and went");
    shadow.checksum(&conn).await.expect("checksum");
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    conn.disconnect().await;
}

/// A CHECK constraint the change adds and some rows break: the copy fails, naming the
/// constraint (the row it skipped is a loss, not a row that moved).
#[tokio::test]
async fn rows_a_new_check_constraint_rejects_fail_the_copy() {
    let conn = shard(server(0));
    let db = database(
        &conn,
        "checkc",
        "CREATE TABLE t (id INT PRIMARY KEY, x INT NOT NULL);
         INSERT INTO t SELECT seq, IF(seq = 700, -1, seq) FROM seq_1_to_2000;",
    )
    .await;
    let spec = spec(
        &db,
        "t",
        &["ALTER TABLE `t` ADD CONSTRAINT `positive` CHECK (`x` > 0)"],
    );
    let result = match Shadow::prepare(&conn, spec.clone()).await {
        Ok(shadow) => shadow.copy(&conn, None, &fast(), |_| {}).await.map(|_| ()),
        Err(e) => Err(e),
    };
    let message = result.expect_err("a row breaks the check").to_string();
    assert!(
        message.contains("CONSTRAINT `positive` failed"),
        "{message}"
    );
    Shadow::cleanup(&conn, &spec).await.expect("cleanup");
    conn.disconnect().await;
}
