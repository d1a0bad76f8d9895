//! The end-to-end harness: sandbox servers shared by the tests of one binary, a fresh
//! database per test, desired-state repositories in temp dirs, and the real binary.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Command, Output};

use reconciler::live::ShardConn;
use reconciler::sandbox::{self, Server};
use reconciler::source::Dsn;

pub fn servers() -> &'static [Server] {
    sandbox::shared().expect("sandbox servers start").servers()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs a SQL script on a server, with `database` as the default database if given.
pub fn sql(server: &Server, database: Option<&str>, script: &str) {
    let script = match database {
        Some(db) => format!("USE `{db}`; {script}"),
        None => script.to_string(),
    };
    runtime().block_on(async {
        let conn = ShardConn::new("test", &Dsn::parse(&server.dsn()).expect("dsn"), 1);
        let result = conn.run_script(&script).await;
        conn.disconnect().await;
        result.expect("script runs");
    });
}

/// Creates a database named after the test on every given server, loaded with `script`.
pub fn database(servers: &[&Server], prefix: &str, script: &str) -> String {
    let name = sandbox::unique_name(prefix);
    for server in servers {
        sql(server, None, &format!("CREATE DATABASE `{name}`"));
        if !script.trim().is_empty() {
            sql(server, Some(&name), script);
        }
    }
    name
}

/// `SHOW CREATE TABLE` of every table of a database, AUTO_INCREMENT counters removed.
pub fn show_tables(server: &Server, database: &str) -> Vec<(String, String)> {
    runtime().block_on(async {
        let conn = ShardConn::new("test", &Dsn::parse(&server.dsn()).expect("dsn"), 2);
        let live = conn.introspect(database).await.expect("introspect");
        conn.disconnect().await;
        live.tables
            .into_iter()
            .map(|(name, t)| (name, t.create_sql))
            .collect()
    })
}

/// The first column of the first row of `query` on `dsn`, `None` when there is none (or the
/// server cannot be reached: fault tests ask dead servers too).
pub fn scalar<T: mysql_async::prelude::FromValue + Send + 'static>(
    dsn: &str,
    query: &str,
) -> Option<T> {
    use mysql_async::prelude::Queryable;
    runtime().block_on(async {
        let opts = mysql_async::Opts::from_url(dsn).ok()?;
        let mut conn = mysql_async::Conn::new(opts).await.ok()?;
        conn.query_first(query).await.ok().flatten()
    })
}

/// `apply --seal manual` until every shard is ready; the deployment id.
pub fn stage(repo: &str) -> String {
    let out = schemagate(&[
        "apply", "--repo", repo, "--yes", "--seal", "manual", "--format", "json",
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert_eq!(result["deployments"][0]["state"], "ready");
    result["deployments"][0]["id"]
        .as_str()
        .expect("an id")
        .to_string()
}

/// A desired-state repository: `schemagate.yaml` plus `schemas/<keyspace>/<file>` files.
pub fn repo(config: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_repo(dir.path(), config, files);
    dir
}

pub fn write_repo(dir: &Path, config: &str, files: &[(&str, &str)]) {
    std::fs::write(dir.join("schemagate.yaml"), config).expect("write config");
    for (path, text) in files {
        let path = dir.join("schemas").join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write schema file");
    }
}

/// A one-keyspace config whose shards are `(name, dsn)`.
pub fn config(keyspace: &str, database: &str, shards: &[(&str, String)]) -> String {
    let mut out = format!("keyspaces:\n  {keyspace}:\n    database: {database}\n    shards:\n");
    for (name, dsn) in shards {
        out.push_str(&format!("      - name: \"{name}\"\n        dsn: {dsn}\n"));
    }
    out
}

pub fn schemagate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_schemagate"))
        .args(args)
        .output()
        .expect("run schemagate")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// Executes, on `server`'s `database`, every statement the JSON plan gives for `shard`.
pub fn execute_plan(server: &Server, database: &str, plan: &serde_json::Value, shard: &str) {
    for keyspace in plan["keyspaces"].as_array().expect("keyspaces") {
        for s in keyspace["shards"].as_array().expect("shards") {
            if s["shard"] != shard {
                continue;
            }
            for change in s["changes"].as_array().expect("changes") {
                sql(
                    server,
                    Some(database),
                    change["statement"].as_str().expect("statement"),
                );
            }
        }
    }
}
