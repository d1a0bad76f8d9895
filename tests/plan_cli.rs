//! `schemagate plan` end to end: the real binary against real sandbox servers.

mod support;

use support::*;

const USERS_V1: &str = "CREATE TABLE users (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, name varchar(50) NOT NULL, legacy int, KEY name (name)) ENGINE=InnoDB;";

const USERS_V2: &str = "create table users (
  id integer not null auto_increment primary key,
  full_name varchar(100) not null, -- schemagate:renamed-from name
  email varchar(255),
  active bool default true,
  created_at timestamp not null default current_timestamp on update current_timestamp,
  unique (email),
  index (full_name)
);
create table orders (
  id bigint primary key,
  user_id int,
  amount decimal(10,2) not null default 0,
  foreign key (user_id) references users (id)
);
";

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|e| panic!("one JSON document on stdout ({e}): {}", stdout(output)))
}

#[test]
fn plan_converges_on_every_shard_and_reports_exit_codes() {
    let [a, b, ..] = servers() else {
        panic!("two servers")
    };
    let db = database(&[a, b], "converge", USERS_V1);
    // Shard b carries drift: an extra index made by hand.
    sql(b, Some(&db), "ALTER TABLE users ADD KEY legacy (legacy)");
    let dir = repo(
        &config("app", &db, &[("-80", a.dsn()), ("80-", b.dsn())]),
        &[("app/users.sql", USERS_V2)],
    );
    let repo_arg = dir.path().to_str().unwrap();

    let text = schemagate(&["plan", "--repo", repo_arg]);
    assert_eq!(code(&text), 1, "{}{}", stdout(&text), stderr(&text));
    let shown = stdout(&text);
    assert!(shown.contains("1 shard: -80"), "{shown}");
    assert!(shown.contains("differs from the others"), "{shown}");
    assert!(shown.contains("DESTRUCTIVE"), "{shown}");

    let output = schemagate(&["plan", "--repo", repo_arg, "--format", "json"]);
    assert_eq!(code(&output), 1);
    let plan = json(&output);
    let shards = plan["keyspaces"][0]["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    let changes = shards[0]["changes"].as_array().unwrap();
    let kinds: Vec<&str> = changes
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["alter", "create"]);
    let alter = changes[0]["statement"].as_str().unwrap();
    assert!(
        alter.contains("CHANGE COLUMN `name` `full_name`"),
        "rename hint honoured: {alter}"
    );
    assert_eq!(changes[0]["destructive"], true, "drops `legacy`");
    assert_eq!(changes[1]["destructive"], false);

    execute_plan(a, &db, &plan, "-80");
    execute_plan(b, &db, &plan, "80-");
    let again = schemagate(&["plan", "--repo", repo_arg, "--format", "json"]);
    assert_eq!(code(&again), 0, "second plan is empty: {}", stdout(&again));

    // Both shards now match what the desired SQL creates in a fresh database.
    let fresh = database(&[a], "converge_ref", USERS_V2);
    assert_eq!(show_tables(a, &db), show_tables(a, &fresh));
    assert_eq!(show_tables(b, &db), show_tables(a, &fresh));
}

#[test]
fn plan_reads_a_git_revision() {
    let [a, ..] = servers() else {
        panic!("a server")
    };
    let db = database(&[a], "rev", USERS_V1);
    let dir = repo(
        &config("app", &db, &[("0", a.dsn())]),
        &[("app/users.sql", USERS_V1)],
    );
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-C",
                dir.path().to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "v1"]);
    std::fs::write(dir.path().join("schemas/app/users.sql"), USERS_V2).unwrap();
    let repo_arg = dir.path().to_str().unwrap();
    assert_eq!(
        code(&schemagate(&["plan", "--repo", repo_arg, "--rev", "HEAD"])),
        0
    );
    assert_eq!(code(&schemagate(&["plan", "--repo", repo_arg])), 1);
    let bad = schemagate(&["plan", "--repo", repo_arg, "--rev", "no-such-branch"]);
    assert_eq!(code(&bad), 2);
    assert!(stderr(&bad).contains("no-such-branch"), "{}", stderr(&bad));
}

#[test]
fn skeema_and_mysqldump_directories_work_as_they_are() {
    let [a, ..] = servers() else {
        panic!("a server")
    };
    let db = database(&[a], "dump", "CREATE TABLE t (id int NOT NULL, c int GENERATED ALWAYS AS (id * 2) PERSISTENT, PRIMARY KEY (id)) PARTITION BY HASH (id) PARTITIONS 4;");
    let show = show_tables(a, &db).remove(0).1;
    let dump = format!(
        "/*M!999999\\- enable the sandbox mode */\n-- MariaDB dump 10.19\n/*!40101 SET @saved_cs_client = @@character_set_client */;\n/*!40101 SET character_set_client = utf8mb4 */;\nDROP TABLE IF EXISTS `t`;\n{};\n/*!40101 SET character_set_client = @saved_cs_client */;\n",
        show.replace(" PARTITION BY", " /*!50100 PARTITION BY").replace("PARTITIONS 4", "PARTITIONS 4 */")
    );
    let dir = repo(
        &config("app", &db, &[("0", a.dsn())]),
        &[("app/.skeema", "schema=x\n"), ("app/t.sql", &dump)],
    );
    let out = schemagate(&["plan", "--repo", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn bad_input_is_reported_with_its_location_and_touches_nothing() {
    let [a, ..] = servers() else {
        panic!("a server")
    };
    let db = database(&[a], "badinput", USERS_V1);
    let cfg = config("app", &db, &[("0", a.dsn())]);
    let cases: [(&str, &str); 4] = [
        ("create table t (\n  id int,\n  name varchar(10) nonsense\n);", "app/t.sql:3:"),
        ("create table t (id int);\ncreate view v as select 1;", "app/t.sql:2:1: only CREATE TABLE"),
        ("create table users (id int);\ncreate table users (id int);", "already defined at schemas/app/t.sql:1"),
        ("create table t (id int, x int references nowhere (id), y varchar(10) default 'ab', z int default 'q');", "app/t.sql:1:1: the server rejected CREATE TABLE `t`"),
    ];
    for (text, expected) in cases {
        let dir = repo(&cfg, &[("app/t.sql", text)]);
        let out = schemagate(&["plan", "--repo", dir.path().to_str().unwrap()]);
        assert_eq!(code(&out), 2, "{text}");
        assert!(
            stderr(&out).contains(expected),
            "{text}\n→ {}",
            stderr(&out)
        );
    }
    let yaml = repo(
        "keyspaces:\n  app:\n    shards:\n      - name: x\n        dsn: [oops\n",
        &[("app/t.sql", "")],
    );
    let out = schemagate(&["plan", "--repo", yaml.path().to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("schemagate.yaml:"),
        "{}",
        stderr(&out)
    );

    let typo = repo(
        &cfg.replace("    database:", "    databse:"),
        &[("app/t.sql", "")],
    );
    let out = schemagate(&["plan", "--repo", typo.path().to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("databse"), "{}", stderr(&out));

    let dir = repo(&cfg, &[("app/users.sql", USERS_V1)]);
    let out = schemagate(&[
        "plan",
        "--repo",
        dir.path().to_str().unwrap(),
        "--keyspace",
        "nope",
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("unknown keyspace `nope`"),
        "{}",
        stderr(&out)
    );

    // Nothing was touched: the live table is as it was, and no workspace is left behind.
    assert_eq!(show_tables(a, &db).len(), 1);
}

#[test]
fn unreachable_shards_and_bad_credentials_name_the_shard_but_not_the_password() {
    let [a, ..] = servers() else {
        panic!("a server")
    };
    let db = database(&[a], "creds", USERS_V1);
    sql(a, None, "CREATE USER IF NOT EXISTS 'sg_app'@'%' IDENTIFIED BY 'right-horse'; GRANT ALL ON *.* TO 'sg_app'@'%'");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let wrong = a.dsn().replace("root@", "sg_app:${PASSWORD}@");
    let cfg = config(
        "app",
        &db,
        &[
            ("good", a.dsn()),
            (
                "down",
                format!("mysql://root:s3cret-battery@127.0.0.1:{closed}"),
            ),
            ("denied", wrong),
        ],
    );
    let dir = repo(&cfg, &[("app/users.sql", USERS_V1)]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_schemagate"))
        .args([
            "plan",
            "--repo",
            dir.path().to_str().unwrap(),
            "--format",
            "json",
        ])
        .env("PASSWORD", "staple-wrong")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !all.contains("s3cret-battery") && !all.contains("staple-wrong"),
        "{all}"
    );
    let plan = json(&out);
    let shards = &plan["keyspaces"][0]["shards"];
    assert_eq!(shards[0]["changes"].as_array().unwrap().len(), 0);
    let down = shards[1]["errors"][0]["message"].as_str().unwrap();
    assert!(
        down.contains("shard down") && down.contains(&format!("127.0.0.1:{closed}")),
        "{down}"
    );
    let denied = shards[2]["errors"][0]["message"].as_str().unwrap();
    assert!(
        denied.contains("shard denied") && denied.contains("credentials of user `sg_app`"),
        "{denied}"
    );
}

#[test]
fn the_example_repository_parses() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_schemagate"))
        .args([
            "plan",
            "--repo",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/schemas"),
            "--format",
            "json",
        ])
        .env("SHARD_PASSWORD", "not-used")
        .output()
        .unwrap();
    // The example's hosts are not reachable from here: every shard reports that, nothing else.
    assert_eq!(code(&out), 2);
    let plan = json(&out);
    for shard in plan["keyspaces"][0]["shards"].as_array().unwrap() {
        assert!(
            shard["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("cannot connect"),
            "{shard}"
        );
    }
}

#[test]
fn canonical_forms_are_cached_per_statement_text() {
    let [a, ..] = servers() else {
        panic!("a server")
    };
    let db = database(&[a], "cache", USERS_V1);
    let dir = repo(
        &config("app", &db, &[("0", a.dsn())]),
        &[("app/users.sql", USERS_V2)],
    );
    let repo_arg = dir.path().to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "plan",
            "--repo",
            repo_arg,
            "--format",
            "json",
            "--log-level",
            "reconciler=debug",
        ];
        args.extend_from_slice(extra);
        let out = schemagate(&args);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        (stdout(&out), stderr(&out))
    };
    let (first, _) = run(&["--no-cache"]);
    let (_, log) = run(&[]);
    let (cached, log_again) = run(&[]);
    assert!(log.contains("canonicalized desired tables"), "{log}");
    assert!(
        log_again.contains("computed=0"),
        "second run is served from the cache: {log_again}"
    );
    assert_eq!(first, cached, "the cache changes nothing in the plan");
    // Another text for the same table is another key.
    std::fs::write(
        dir.path().join("schemas/app/users.sql"),
        USERS_V2.replace("varchar(255)", "varchar(254)"),
    )
    .unwrap();
    let (_, log) = run(&[]);
    assert!(log.contains("computed=1"), "{log}");
}
