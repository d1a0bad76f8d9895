//! The online copy throttles on replica lag: a shard with a replica that does not replicate
//! gets no copy traffic until it does again. Uses its own primary/replica pair.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reconciler::sandbox::Sandbox;
use support::*;

#[test]
fn the_copy_waits_while_a_replica_is_not_replicating() {
    copy_with_a_replica("ROW");
}

/// Statement-based: the copy keeps locking reads (InnoDB refuses READ COMMITTED writes under
/// it), and the replica replays chunks and triggers as statements.
#[test]
fn statement_based_replication_gets_the_same_rows() {
    copy_with_a_replica("STATEMENT");
}

fn copy_with_a_replica(binlog_format: &str) {
    let sandbox = Sandbox::start_with(2, |i| {
        vec![
            "--log-bin=binlog".into(),
            format!("--binlog-format={binlog_format}"),
            format!("--server-id={}", i + 1),
        ]
    })
    .expect("primary and replica");
    let [primary, replica] = sandbox.servers() else {
        panic!("two servers")
    };
    sql(
        replica,
        None,
        &format!(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'root', MASTER_PASSWORD = '', MASTER_USE_GTID = current_pos; START SLAVE;",
            primary.port()
        ),
    );
    let db = database(
        &[primary],
        "lag",
        "CREATE TABLE t (id int NOT NULL PRIMARY KEY, a int NOT NULL) ENGINE=InnoDB;
         INSERT INTO t SELECT seq, seq FROM seq_1_to_20000;",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar::<u64>(&replica.dsn(), &format!("SELECT COUNT(*) FROM `{db}`.t")) != Some(20_000) {
        assert!(Instant::now() < deadline, "the replica never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    sql(replica, None, "STOP SLAVE");

    let cfg = format!(
        "keyspaces:\n  app:\n    database: {db}\n    shards:\n      - name: \"0\"\n        dsn: {}\n        replicas:\n          - {}\n",
        primary.dsn(),
        replica.dsn()
    );
    let dir = repo(
        &cfg,
        &[(
            "app/t.sql",
            "create table t (id int not null primary key, a bigint not null);",
        )],
    );
    let mut apply = Command::new(env!("CARGO_BIN_EXE_schemagate"))
        .args(["apply", "--repo", dir.path().to_str().unwrap(), "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        apply.try_wait().unwrap().is_none(),
        "apply waits for the replica"
    );
    let copied = scalar::<u64>(
        &primary.dsn(),
        "SELECT COALESCE(MAX(rows_copied), 0) FROM _schemagate.cells",
    );
    assert_eq!(
        copied,
        Some(0),
        "no row was copied while the replica was not replicating"
    );

    sql(replica, None, "START SLAVE");
    let out = apply.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar::<String>(&replica.dsn(), &format!("SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = 't' AND COLUMN_NAME = 'a'")).as_deref() != Some("bigint") {
        assert!(Instant::now() < deadline, "the change never reached the replica");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sum = format!("SELECT CONCAT(COUNT(*), '/', SUM(a)) FROM `{db}`.t");
    assert_eq!(
        scalar::<String>(&replica.dsn(), &sum),
        scalar::<String>(&primary.dsn(), &sum),
        "the replica holds the same rows"
    );
}
