//! Faults during a deployment: a shard's server dies mid-copy. Uses its own servers, since it
//! kills them.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use reconciler::sandbox::Sandbox;
use support::*;

const SEED: &str = "CREATE TABLE big (id int NOT NULL PRIMARY KEY, a int NOT NULL, pad varchar(100) NOT NULL) ENGINE=InnoDB;
INSERT INTO big SELECT seq, seq % 97, REPEAT('x', 100) FROM seq_1_to_300000;";
const DESIRED: &str = "create table big (id int not null primary key, a bigint not null, pad varchar(100) not null, b int);";

/// Starts `apply` in the background and returns once shard `b`'s copy has copied rows.
fn apply_until_copying(repo: &str, b_dsn: &str, extra: &[&str]) -> std::process::Child {
    let apply = Command::new(env!("CARGO_BIN_EXE_schemagate"))
        .args(["apply", "--repo", repo, "--yes"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while scalar::<u64>(
        b_dsn,
        "SELECT COALESCE(MAX(rows_copied), 0) FROM _schemagate.cells WHERE state = 'staging'",
    )
    .unwrap_or(0)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the copy never started on shard b"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    apply
}

#[test]
fn a_shard_dying_during_staging_keeps_the_gate_closed_until_it_returns() {
    let mut sandbox = Sandbox::start(2).expect("servers");
    let [a, b] = sandbox.servers() else {
        panic!("two servers")
    };
    let (a_dsn, b_dsn) = (a.dsn(), b.dsn());
    let db = database(&[a, b], "fault", SEED);
    let dir = repo(
        &config("app", &db, &[("a", a_dsn.clone()), ("b", b_dsn.clone())]),
        &[("app/big.sql", DESIRED)],
    );
    let repo_arg = dir.path().to_str().unwrap().to_string();

    let apply = apply_until_copying(&repo_arg, &b_dsn, &[]);
    sandbox.servers_mut()[1].kill().unwrap();
    let out = apply.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("gate stays closed") && err.contains("shard b"),
        "{err}"
    );

    // The gate stayed closed: shard a is ready but not sealed, its table untouched.
    assert_eq!(
        scalar::<u64>(
            &a_dsn,
            "SELECT COUNT(*) FROM _schemagate.cells WHERE state = 'ready'"
        ),
        Some(1)
    );
    assert_eq!(
        scalar::<u64>(&a_dsn, &format!("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = 'big' AND COLUMN_NAME = 'b'")),
        Some(0)
    );

    // With b still down, cancel cleans a and names b as still to clean.
    let id = runtime().block_on(async {
        let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&a_dsn).unwrap())
            .await
            .unwrap();
        conn.query_first::<String, _>("SELECT id FROM _schemagate.deployments")
            .await
            .unwrap()
    });
    let id = id.expect("deployment id on shard a");
    let cancel = schemagate(&["cancel", &id, "--repo", &repo_arg]);
    assert_eq!(code(&cancel), 2);
    assert!(stderr(&cancel).contains("shard b"), "{}", stderr(&cancel));
    assert_eq!(
        scalar::<u64>(&a_dsn, &format!("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME LIKE '\\_sg%'")),
        Some(0)
    );

    // b returns: cancel finishes there, and a fresh apply deploys everywhere.
    sandbox.servers_mut()[1].restart().unwrap();
    let cancel = schemagate(&["cancel", &id, "--repo", &repo_arg]);
    assert_eq!(code(&cancel), 0, "{}", stderr(&cancel));
    let out = schemagate(&["apply", "--repo", &repo_arg, "--yes"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    for dsn in [&a_dsn, &b_dsn] {
        assert_eq!(
            scalar::<u64>(dsn, &format!("SELECT COUNT(*) FROM `{db}`.big")),
            Some(300_000)
        );
    }
    assert_eq!(code(&schemagate(&["plan", "--repo", &repo_arg])), 0);
}

#[test]
fn apply_resumes_after_a_shard_returns() {
    let mut sandbox = Sandbox::start(2).expect("servers");
    let [a, b] = sandbox.servers() else {
        panic!("two servers")
    };
    let (a_dsn, b_dsn) = (a.dsn(), b.dsn());
    let db = database(&[a, b], "resume", SEED);
    let dir = repo(
        &config("app", &db, &[("a", a_dsn.clone()), ("b", b_dsn.clone())]),
        &[("app/big.sql", DESIRED)],
    );
    let repo_arg = dir.path().to_str().unwrap().to_string();

    let apply = apply_until_copying(&repo_arg, &b_dsn, &["--seal", "manual"]);
    sandbox.servers_mut()[1].kill().unwrap();
    assert_eq!(apply.wait_with_output().unwrap().status.code(), Some(2));

    sandbox.servers_mut()[1].restart().unwrap();
    // The checkpoint survived the crash: staging resumes instead of starting over.
    let checkpoint = runtime().block_on(async {
        let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&b_dsn).unwrap())
            .await
            .unwrap();
        conn.query_first::<Option<String>, _>("SELECT checkpoint FROM _schemagate.cells")
            .await
            .unwrap()
            .flatten()
    });
    assert!(
        checkpoint.is_some(),
        "a copy checkpoint was recorded before the crash"
    );
    let out = schemagate(&["apply", "--repo", &repo_arg, "--yes"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    for dsn in [&a_dsn, &b_dsn] {
        assert_eq!(
            scalar::<u64>(dsn, &format!("SELECT COUNT(*) FROM `{db}`.big")),
            Some(300_000)
        );
    }
}

/// The controller is killed at each interesting point and started again: the deployment must
/// reach the sealed state with every row in place and nothing of the tool left behind.
#[test]
fn a_controller_killed_anywhere_is_finished_by_the_next_run() {
    let [a, b, ..] = servers() else {
        panic!("two servers")
    };
    for point in [
        "stage:after-chunk",
        "gate:open",
        "seal:after-decision",
        "seal:while-locked",
        "seal:one-flipped",
        "seal:after-flip",
    ] {
        // `tags` changes INSTANT-ly, under the seal's lock: a controller killed holding the
        // lock has run it already, and the next run must neither take that for a table
        // changed underneath nor change it again.
        let db = database(
            &[a, b],
            "crash",
            &format!("{SEED}\nCREATE TABLE tags (id int NOT NULL PRIMARY KEY, name varchar(20)) ENGINE=InnoDB;"),
        );
        let dir = repo(
            &config("app", &db, &[("a", a.dsn()), ("b", b.dsn())]),
            &[
                ("app/big.sql", DESIRED),
                (
                    "app/tags.sql",
                    "create table tags (id int not null primary key, name varchar(20), extra int);",
                ),
            ],
        );
        let repo_arg = dir.path().to_str().unwrap().to_string();
        let crashed = Command::new(env!("CARGO_BIN_EXE_schemagate"))
            .args(["apply", "--repo", &repo_arg, "--yes"])
            .env("SCHEMAGATE_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(
            crashed.status.code(),
            None,
            "{point}: the controller died by a signal"
        );
        // The application writes before the next run: a shadow that stopped following the
        // table (the controller died with the capture turned around) would lose these.
        for server in [a, b] {
            sql(
                server,
                Some(&db),
                "UPDATE big SET a = a + 1 WHERE id <= 100;
                 DELETE FROM big WHERE id BETWEEN 101 AND 110;
                 INSERT INTO big (id, a, pad) VALUES (300001, 1, 'y');",
            );
        }

        let out = schemagate(&["apply", "--repo", &repo_arg, "--yes", "--format", "json"]);
        assert_eq!(code(&out), 0, "{point}: {}{}", stdout(&out), stderr(&out));
        assert_eq!(
            code(&schemagate(&["plan", "--repo", &repo_arg])),
            0,
            "{point}: converged"
        );
        for server in [a, b] {
            let dsn = server.dsn();
            assert_eq!(
                scalar::<u64>(&dsn, &format!("SELECT COUNT(*) FROM `{db}`.big")),
                Some(299_991),
                "{point}"
            );
            // Every row as seeded or written since, in the new definition.
            assert_eq!(
                scalar::<u64>(&dsn, &format!("SELECT COUNT(*) FROM `{db}`.big WHERE b IS NULL AND CASE WHEN id <= 100 THEN a = id % 97 + 1 WHEN id <= 300000 THEN id > 110 AND a = id % 97 AND pad = REPEAT('x', 100) ELSE id = 300001 AND a = 1 AND pad = 'y' END")),
                Some(299_991),
                "{point}: content"
            );
            assert_eq!(
                scalar::<u64>(&dsn, &format!("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}'")),
                Some(0),
                "{point}: no trigger left"
            );
            assert_eq!(
                scalar::<u64>(&dsn, &format!("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME LIKE '\\_sg%' AND TABLE_NAME NOT LIKE '\\_sg%\\_old\\_%'")),
                Some(0),
                "{point}: only the retention table is left"
            );
        }
    }
}
