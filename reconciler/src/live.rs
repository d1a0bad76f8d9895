//! Live introspection: the base tables of a keyspace's database on one shard, in canonical
//! form (`SHOW CREATE TABLE`), plus the server facts that decide what canonical means.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use mysql_async::prelude::*;
use mysql_async::{OptsBuilder, Pool, PoolConstraints, PoolOpts};

use crate::naming;
use crate::schema::{CanonicalError, Table};
use crate::source::Dsn;

/// Statements run on every new connection (and again after a reset): DDL must never wait
/// long for a metadata lock, or it would queue every other session behind it.
const SESSION_SETUP: &[&str] = &[
    "SET SESSION lock_wait_timeout = 5",
    "SET SESSION innodb_lock_wait_timeout = 5",
];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per shard used to read table definitions in parallel.
const READERS_PER_SHARD: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("shard {shard}: cannot connect to {address}: {message}; check that the server is up and reachable from here")]
    Unreachable {
        shard: String,
        address: String,
        message: String,
    },
    #[error("shard {shard}: {address} refused the credentials of user `{user}`; check the password in the DSN (or the variable it comes from) and the user's grants")]
    AccessDenied {
        shard: String,
        address: String,
        user: String,
    },
    #[error("shard {shard}: database `{database}` does not exist on {address}; create it (CREATE DATABASE `{database}`) or fix `database` in schemagate.yaml")]
    MissingDatabase {
        shard: String,
        address: String,
        database: String,
    },
    #[error("shard {shard}: {context} failed on {address}: {message}")]
    Query {
        shard: String,
        address: String,
        context: String,
        message: String,
    },
    #[error("shard {shard}: {source}")]
    Canonical {
        shard: String,
        source: CanonicalError,
    },
}

/// Facts about a server that change what a table's canonical form looks like.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerFlavor {
    pub version: String,
    pub charset: String,
    pub collation: String,
    /// Session defaults that change how the server canonicalises a CREATE TABLE
    /// (sql_mode, explicit_defaults_for_timestamp, default engine, default row format).
    pub settings: String,
}

/// The live schema of one shard's database.
#[derive(Debug, Clone)]
pub struct LiveSchema {
    pub flavor: ServerFlavor,
    pub tables: BTreeMap<String, Table>,
}

/// A connection pool to one shard, with the identity used in messages (never the password).
#[derive(Clone, Debug)]
pub struct ShardConn {
    pub shard: String,
    pub address: String,
    pub user: String,
    pub pool: Pool,
}

impl ShardConn {
    pub fn new(shard: &str, dsn: &Dsn, max_connections: usize) -> ShardConn {
        let opts = OptsBuilder::default()
            .ip_or_hostname(dsn.host())
            .tcp_port(dsn.port())
            .user(Some(dsn.user()))
            .pass(dsn.password())
            .prefer_socket(false)
            .setup(SESSION_SETUP.to_vec())
            .pool_opts(PoolOpts::default().with_constraints(
                PoolConstraints::new(0, max_connections.max(1)).unwrap_or_default(),
            ));
        let opts = dsn
            .params()
            .iter()
            .fold(opts, |opts, (name, value)| apply_param(opts, name, value));
        ShardConn {
            shard: shard.to_string(),
            address: format!("{}:{}", dsn.host(), dsn.port()),
            user: dsn.user().to_string(),
            pool: Pool::new(opts),
        }
    }

    pub async fn conn(&self) -> Result<mysql_async::Conn, LiveError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.pool.get_conn()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_error(e)),
            Err(_) => Err(LiveError::Unreachable {
                shard: self.shard.clone(),
                address: self.address.clone(),
                message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            }),
        }
    }

    fn connect_error(&self, e: mysql_async::Error) -> LiveError {
        match &e {
            mysql_async::Error::Server(s) if s.code == 1045 || s.code == 1698 => {
                LiveError::AccessDenied {
                    shard: self.shard.clone(),
                    address: self.address.clone(),
                    user: self.user.clone(),
                }
            }
            _ => LiveError::Unreachable {
                shard: self.shard.clone(),
                address: self.address.clone(),
                message: e.to_string(),
            },
        }
    }

    /// Wraps a query error with the shard, the address and what was being done.
    pub fn query_error(&self, context: impl Into<String>, e: mysql_async::Error) -> LiveError {
        LiveError::Query {
            shard: self.shard.clone(),
            address: self.address.clone(),
            context: context.into(),
            message: e.to_string(),
        }
    }

    /// Version, default charset/collation of `database` (which must exist) and the session
    /// defaults that shape canonical text.
    pub async fn flavor(&self, database: &str) -> Result<ServerFlavor, LiveError> {
        let mut conn = self.conn().await?;
        type Row = (String, String, String, String);
        let row: Option<Row> = conn
            .exec_first(
                "SELECT VERSION(), DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME, \
                 CONCAT_WS(',', @@sql_mode, @@explicit_defaults_for_timestamp, \
                           @@default_storage_engine, @@innodb_default_row_format) \
                 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (database,),
            )
            .await
            .map_err(|e| self.query_error("reading the database defaults", e))?;
        let (version, charset, collation, settings) =
            row.ok_or_else(|| LiveError::MissingDatabase {
                shard: self.shard.clone(),
                address: self.address.clone(),
                database: database.to_string(),
            })?;
        Ok(ServerFlavor {
            version,
            charset,
            collation,
            settings,
        })
    }

    /// `SHOW CREATE TABLE` of each table, read over a few connections at once.
    pub async fn show_create(
        &self,
        database: &str,
        tables: &[String],
    ) -> Result<Vec<(String, String)>, LiveError> {
        let chunk = tables.len().div_ceil(READERS_PER_SHARD).max(1);
        futures::stream::iter(tables.chunks(chunk))
            .map(|names| async move {
                let mut conn = self.conn().await?;
                let mut out = Vec::with_capacity(names.len());
                for name in names {
                    let query = format!("SHOW CREATE TABLE {}.{}", quote(database), quote(name));
                    let row: Option<(String, String)> = conn
                        .query_first(query)
                        .await
                        .map_err(|e| self.query_error(format!("SHOW CREATE TABLE `{name}`"), e))?;
                    if let Some((_, create)) = row {
                        out.push((name.clone(), create));
                    }
                }
                Ok::<_, LiveError>(out)
            })
            .buffer_unordered(READERS_PER_SHARD)
            .try_fold(
                Vec::with_capacity(tables.len()),
                |mut all, part| async move {
                    all.extend(part);
                    Ok(all)
                },
            )
            .await
    }

    /// `SHOW CREATE TABLE` text of every base table of `database`, without the tool's own
    /// artifacts.
    pub async fn table_texts(&self, database: &str) -> Result<Vec<(String, String)>, LiveError> {
        let names: Vec<String> = {
            let mut conn = self.conn().await?;
            conn.exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME",
                (database,),
            )
            .await
            .map_err(|e| self.query_error("listing tables", e))?
        };
        let names: Vec<String> = names
            .into_iter()
            .filter(|n| !naming::is_artifact_table(n))
            .collect();
        self.show_create(database, &names).await
    }

    /// The live schema of `database`: flavor and parsed tables.
    pub async fn introspect(&self, database: &str) -> Result<LiveSchema, LiveError> {
        let flavor = self.flavor(database).await?;
        let mut parser = CanonicalCache::default();
        let tables = parser.parse_all(&self.shard, self.table_texts(database).await?)?;
        Ok(LiveSchema { flavor, tables })
    }

    /// How far this server, a replica, is behind its primary; `None` when replication is not
    /// running (stopped, broken, or not a replica), which a throttle must treat as lagging.
    pub async fn replica_lag(&self) -> Result<Option<Duration>, LiveError> {
        let mut conn = self.conn().await?;
        let row: Option<mysql_async::Row> = conn
            .query_first("SHOW SLAVE STATUS")
            .await
            .map_err(|e| self.query_error("reading the replica status", e))?;
        Ok(row
            .and_then(|r| r.get_opt::<Option<u64>, _>("Seconds_Behind_Master"))
            .and_then(Result::ok)
            .flatten()
            .map(Duration::from_secs))
    }

    /// Runs one statement (or several: the text protocol allows it); `context` says what it
    /// was for if it fails.
    pub async fn execute(
        &self,
        context: impl Into<String>,
        sql: impl AsRef<str>,
    ) -> Result<(), LiveError> {
        let mut conn = self.conn().await?;
        conn.query_drop(sql.as_ref())
            .await
            .map_err(|e| self.query_error(context, e))
    }

    /// Runs a multi-statement SQL script.
    pub async fn run_script(&self, script: &str) -> Result<(), LiveError> {
        self.execute("running a SQL script", script).await
    }

    pub async fn disconnect(self) {
        // A failed disconnect only means the server already dropped us.
        let _ = self.pool.disconnect().await;
    }
}

/// DSN query parameters, already validated by `source::Dsn`, handed to the driver.
fn apply_param(opts: OptsBuilder, name: &str, value: &str) -> OptsBuilder {
    let number = || value.parse::<u32>().ok();
    match name {
        "socket" => opts.socket(Some(value)),
        "prefer_socket" => opts.prefer_socket(value == "true"),
        "tcp_nodelay" => opts.tcp_nodelay(value == "true"),
        "tcp_keepalive" => opts.tcp_keepalive(number().map(|ms| Duration::from_millis(ms.into()))),
        "wait_timeout" => opts.wait_timeout(number().map(|n| n as usize)),
        "max_allowed_packet" => opts.max_allowed_packet(number().map(|n| n as usize)),
        "compression" => opts.compression(match value {
            "fast" => mysql_async::Compression::fast(),
            "best" => mysql_async::Compression::best(),
            "on" | "true" => mysql_async::Compression::default(),
            level => mysql_async::Compression::new(level.parse().unwrap_or(6)),
        }),
        _ => opts,
    }
}

/// Parses canonical texts once: shards of one keyspace mostly return identical text.
#[derive(Default)]
pub struct CanonicalCache {
    parsed: std::collections::HashMap<String, Table>,
}

impl CanonicalCache {
    pub fn parse_all(
        &mut self,
        shard: &str,
        texts: Vec<(String, String)>,
    ) -> Result<BTreeMap<String, Table>, LiveError> {
        let mut tables = BTreeMap::new();
        for (name, create) in texts {
            let table = match self.parsed.get(&create) {
                Some(table) => table.clone(),
                None => {
                    let table =
                        Table::parse_canonical(&create).map_err(|source| LiveError::Canonical {
                            shard: shard.to_string(),
                            source,
                        })?;
                    self.parsed.insert(create, table.clone());
                    table
                }
            };
            tables.insert(name, table);
        }
        Ok(tables)
    }
}

/// Runs `f` on the shards at the indexes `which`, at most `concurrency` at a time; results in
/// index order.
pub async fn each_shard<'a, T, Fut>(
    conns: &'a [ShardConn],
    which: &[usize],
    concurrency: usize,
    f: impl Fn(&'a ShardConn) -> Fut,
) -> Vec<(usize, T)>
where
    Fut: std::future::Future<Output = T> + 'a,
{
    let mut out: Vec<(usize, T)> = futures::stream::iter(which.iter().copied())
        .map(|i| {
            let fut = f(&conns[i]);
            async move { (i, fut.await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    out.sort_by_key(|(i, _)| *i);
    out
}

pub fn quote(name: &str) -> String {
    crate::schema::sql::quote_ident(name)
}
