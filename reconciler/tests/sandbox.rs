//! The sandbox against real mariadbd servers: the harness every other integration test uses.

use std::net::TcpStream;

use mysql_async::prelude::*;
use mysql_async::Pool;
use reconciler::sandbox::{self, Sandbox};

async fn query<T: FromRow + Send + 'static>(dsn: &str, sql: &str) -> Vec<T> {
    let pool = Pool::new(dsn);
    let rows = pool.get_conn().await.unwrap().query(sql).await.unwrap();
    pool.disconnect().await.unwrap();
    rows
}

async fn exec(dsn: &str, statements: &[String]) {
    let pool = Pool::new(dsn);
    let mut conn = pool.get_conn().await.unwrap();
    for statement in statements {
        conn.query_drop(statement).await.unwrap();
    }
    drop(conn);
    pool.disconnect().await.unwrap();
}

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn servers_run_with_the_sandbox_settings_and_die_on_drop() {
    let sandbox = Sandbox::start(2).unwrap();
    let ports: Vec<u16> = sandbox.servers().iter().map(|s| s.port()).collect();
    assert_ne!(ports[0], ports[1]);
    for server in sandbox.servers() {
        assert_eq!(
            server.dsn(),
            format!("mysql://root@127.0.0.1:{}", server.port())
        );
        let rows: Vec<(String, String, u8, String)> = query(
            &server.dsn(),
            "SELECT VERSION(), @@character_set_server, @@log_bin, @@event_scheduler",
        )
        .await;
        assert_eq!(
            rows,
            [(
                server.version().to_owned(),
                "utf8mb4".into(),
                0,
                "ON".into()
            )]
        );
        assert!(server.version().contains("MariaDB"), "{}", server.version());
    }
    drop(sandbox);
    assert!(!ports.into_iter().any(accepts_connections));
}

#[tokio::test]
async fn kill_and_restart_keep_the_data() {
    let mut sandbox = Sandbox::start(1).unwrap();
    let server = &mut sandbox.servers_mut()[0];
    let db = sandbox::unique_name("restart");
    exec(
        &server.dsn(),
        &[
            format!("CREATE DATABASE {db}"),
            format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"),
            format!("INSERT INTO {db}.t VALUES (1)"),
        ],
    )
    .await;

    server.kill().unwrap();
    assert!(!accepts_connections(server.port()));
    let port = server.port();
    server.restart().unwrap();

    assert_eq!(server.port(), port);
    let rows: Vec<u32> = query(&server.dsn(), &format!("SELECT id FROM {db}.t")).await;
    assert_eq!(rows, [1]);
}

#[test]
fn shared_is_started_once() {
    let first = sandbox::shared().unwrap();
    let second = sandbox::shared().unwrap();
    assert!(std::ptr::eq(first, second));
    assert_eq!(first.servers().len(), 3);
    assert!(first
        .servers()
        .iter()
        .all(|s| accepts_connections(s.port())));
}

#[test]
fn unique_names_are_unique_and_carry_pid_and_prefix() {
    let (a, b) = (sandbox::unique_name("users"), sandbox::unique_name("users"));
    assert_ne!(a, b);
    for name in [a, b] {
        assert!(name.starts_with(&format!("t_{}_", std::process::id())));
        assert!(name.ends_with("_users"));
    }
}
