//! Deployment state, kept on the shards themselves in the tool's metadata database, so the
//! controller holds nothing that a restart could lose (see docs/protocols.md).

use std::time::SystemTime;

use mysql_async::prelude::*;
use serde::{Deserialize, Serialize};

use crate::live::{quote, LiveError, ShardConn};
use crate::naming::METADATA_DATABASE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellState {
    Queued,
    Staging,
    Ready,
    Sealing,
    Sealed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Create,
    Drop,
    Instant,
    Shadow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    None,
    Seal,
    Abort,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

text_enum!(CellState { Queued = "queued", Staging = "staging", Ready = "ready", Sealing = "sealing", Sealed = "sealed", Failed = "failed", Cancelled = "cancelled" });
text_enum!(Strategy { Create = "create", Drop = "drop", Instant = "instant", Shadow = "shadow" });
text_enum!(Decision { None = "none", Seal = "seal", Abort = "abort" });

impl CellState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CellState::Sealed | CellState::Failed | CellState::Cancelled
        )
    }
}

/// One table's change on one shard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub table: String,
    pub strategy: Strategy,
    pub state: CellState,
    pub statements: Vec<String>,
    /// The live definition the plan started from (`None` for a new table).
    #[serde(skip)]
    pub from_sql: Option<String>,
    /// The desired definition (`CREATE TABLE` text; `None` for a dropped table).
    #[serde(skip)]
    pub to_sql: Option<String>,
    #[serde(skip)]
    pub renames: Vec<(String, String)>,
    pub rows_copied: u64,
    pub rows_estimated: u64,
    pub rows_per_sec: f64,
    #[serde(skip)]
    pub checkpoint: Option<String>,
    pub error: Option<String>,
    pub sealed_at: Option<String>,
}

impl Cell {
    /// A cell not started yet, with nothing recorded.
    pub fn queued(table: &str, strategy: Strategy, statements: Vec<String>) -> Cell {
        Cell {
            table: table.to_string(),
            strategy,
            state: CellState::Queued,
            statements,
            from_sql: None,
            to_sql: None,
            renames: Vec::new(),
            rows_copied: 0,
            rows_estimated: 0,
            rows_per_sec: 0.0,
            checkpoint: None,
            error: None,
            sealed_at: None,
        }
    }
}

/// A deployment as one shard records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardDeployment {
    pub id: String,
    pub keyspace: String,
    pub shard: String,
    pub database: String,
    pub revision: Option<String>,
    pub decision: Decision,
    pub sealed_at: Option<String>,
    pub seal_skew_ms: Option<f64>,
    pub error: Option<String>,
    pub created_at: String,
    pub cells: Vec<Cell>,
}

impl ShardDeployment {
    /// The least advanced cell decides; any failure makes the whole shard failed.
    pub fn state(&self) -> CellState {
        if self.cells.iter().any(|c| c.state == CellState::Failed) {
            return CellState::Failed;
        }
        self.cells
            .iter()
            .map(|c| c.state)
            .min()
            .unwrap_or(CellState::Sealed)
    }
}

/// Now, as RFC 3339 with microseconds (UTC).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

fn db() -> String {
    quote(METADATA_DATABASE)
}

/// Creates the metadata database and tables if they do not exist.
pub async fn ensure_schema(conn: &ShardConn) -> Result<(), LiveError> {
    let db = db();
    let script = format!(
        "CREATE DATABASE IF NOT EXISTS {db};
         CREATE TABLE IF NOT EXISTS {db}.deployments (
           id CHAR(12) NOT NULL, keyspace VARCHAR(64) NOT NULL, shard VARCHAR(255) NOT NULL,
           database_name VARCHAR(64) NOT NULL, revision VARCHAR(64) NULL,
           decision VARCHAR(8) NOT NULL DEFAULT 'none',
           sealed_at VARCHAR(40) NULL, seal_skew_ms DOUBLE NULL, error TEXT NULL,
           created_at VARCHAR(40) NOT NULL,
           PRIMARY KEY (id, keyspace, shard), KEY keyspace (keyspace, created_at)
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
         CREATE TABLE IF NOT EXISTS {db}.cells (
           deployment_id CHAR(12) NOT NULL, keyspace VARCHAR(64) NOT NULL, shard VARCHAR(255) NOT NULL,
           table_name VARCHAR(64) NOT NULL, position INT NOT NULL,
           strategy VARCHAR(8) NOT NULL, state VARCHAR(10) NOT NULL,
           statements LONGTEXT NOT NULL, from_sql LONGTEXT NULL, to_sql LONGTEXT NULL, renames TEXT NOT NULL,
           rows_copied BIGINT UNSIGNED NOT NULL DEFAULT 0, rows_estimated BIGINT UNSIGNED NOT NULL DEFAULT 0,
           rows_per_sec DOUBLE NOT NULL DEFAULT 0, checkpoint TEXT NULL, error TEXT NULL,
           sealed_at VARCHAR(40) NULL, updated_at VARCHAR(40) NOT NULL,
           PRIMARY KEY (deployment_id, keyspace, shard, table_name)
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;"
    );
    conn.run_script(&script).await
}

/// Records a deployment and its cells; a no-op for what is already recorded (resume).
pub async fn insert(conn: &ShardConn, d: &ShardDeployment) -> Result<(), LiveError> {
    let mut c = conn.conn().await?;
    let err = |e| conn.query_error("recording the deployment in _schemagate", e);
    c.exec_drop(
        format!(
            "INSERT IGNORE INTO {}.deployments (id, keyspace, shard, database_name, revision, decision, created_at) VALUES (?, ?, ?, ?, ?, 'none', ?)",
            db()
        ),
        (&d.id, &d.keyspace, &d.shard, &d.database, &d.revision, &d.created_at),
    )
    .await
    .map_err(err)?;
    for (position, cell) in d.cells.iter().enumerate() {
        c.exec_drop(
            format!(
                "INSERT IGNORE INTO {}.cells (deployment_id, keyspace, shard, table_name, position, strategy, state, statements, from_sql, to_sql, renames, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                db()
            ),
            (
                &d.id,
                &d.keyspace,
                &d.shard,
                &cell.table,
                position as u64,
                cell.strategy.as_str(),
                cell.state.as_str(),
                serde_json::to_string(&cell.statements).unwrap_or_default(),
                &cell.from_sql,
                &cell.to_sql,
                serde_json::to_string(&cell.renames).unwrap_or_default(),
                now_rfc3339(),
            ),
        )
        .await
        .map_err(err)?;
    }
    Ok(())
}

type DeploymentRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<f64>,
    Option<String>,
    String,
);

/// Deployments of `keyspace` (in `database`) recorded on this shard, newest first (all of them, or one id).
pub async fn load(
    conn: &ShardConn,
    keyspace: &str,
    database: &str,
    id: Option<&str>,
) -> Result<Vec<ShardDeployment>, LiveError> {
    let mut c = conn.conn().await?;
    // The database alone proves nothing: `plan` creates it for its canonical cache. `cells`
    // is the last table `ensure_schema` creates.
    let exists: Option<String> = c
        .exec_first(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'cells'",
            (METADATA_DATABASE,),
        )
        .await
        .map_err(|e| conn.query_error("looking for _schemagate", e))?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    let rows: Vec<DeploymentRow> = c
        .exec(
            format!(
                "SELECT id, keyspace, shard, database_name, revision, decision, sealed_at, seal_skew_ms, error, created_at FROM {}.deployments WHERE keyspace = ? AND shard = ? AND database_name = ? AND (? IS NULL OR id = ?) ORDER BY created_at DESC",
                db()
            ),
            (keyspace, &conn.shard, database, id, id),
        )
        .await
        .map_err(|e| conn.query_error("reading deployments", e))?;
    let mut out = Vec::with_capacity(rows.len());
    for (
        id,
        keyspace,
        shard,
        database,
        revision,
        decision,
        sealed_at,
        seal_skew_ms,
        error,
        created_at,
    ) in rows
    {
        let cells = load_cells(conn, &mut c, &id, &keyspace).await?;
        out.push(ShardDeployment {
            id,
            keyspace,
            shard,
            database,
            revision,
            decision: Decision::parse(&decision).unwrap_or(Decision::None),
            sealed_at,
            seal_skew_ms,
            error,
            created_at,
            cells,
        });
    }
    Ok(out)
}

async fn load_cells(
    conn: &ShardConn,
    c: &mut mysql_async::Conn,
    id: &str,
    keyspace: &str,
) -> Result<Vec<Cell>, LiveError> {
    let rows: Vec<mysql_async::Row> = c
        .exec(
            format!(
                "SELECT table_name, strategy, state, statements, from_sql, to_sql, renames, rows_copied, rows_estimated, rows_per_sec, checkpoint, error, sealed_at FROM {}.cells WHERE deployment_id = ? AND keyspace = ? AND shard = ? ORDER BY position",
                db()
            ),
            (id, keyspace, &conn.shard),
        )
        .await
        .map_err(|e| conn.query_error("reading deployment cells", e))?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            let text =
                |r: &mut mysql_async::Row, i: usize| r.take::<Option<String>, _>(i).flatten();
            Cell {
                table: text(&mut r, 0).unwrap_or_default(),
                strategy: text(&mut r, 1)
                    .and_then(|s| Strategy::parse(&s))
                    .unwrap_or(Strategy::Shadow),
                state: text(&mut r, 2)
                    .and_then(|s| CellState::parse(&s))
                    .unwrap_or(CellState::Failed),
                statements: text(&mut r, 3)
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default(),
                from_sql: text(&mut r, 4),
                to_sql: text(&mut r, 5),
                renames: text(&mut r, 6)
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default(),
                rows_copied: r.take::<Option<u64>, _>(7).flatten().unwrap_or_default(),
                rows_estimated: r.take::<Option<u64>, _>(8).flatten().unwrap_or_default(),
                rows_per_sec: r.take::<Option<f64>, _>(9).flatten().unwrap_or_default(),
                checkpoint: text(&mut r, 10),
                error: text(&mut r, 11),
                sealed_at: text(&mut r, 12),
            }
        })
        .collect())
}

/// What a stage step learned about a cell.
#[derive(Debug, Default, Clone)]
pub struct CellUpdate<'a> {
    pub state: Option<CellState>,
    pub strategy: Option<Strategy>,
    pub rows_copied: Option<u64>,
    pub rows_estimated: Option<u64>,
    pub rows_per_sec: Option<f64>,
    pub checkpoint: Option<&'a str>,
    pub error: Option<&'a str>,
    pub sealed_at: Option<&'a str>,
    /// The live definition the plan started from (stale-plan protection at the seal).
    pub from_sql: Option<&'a str>,
    /// The definition after an INSTANT change, as proven on the empty clone.
    pub to_sql: Option<&'a str>,
}

pub async fn update_cell(
    conn: &ShardConn,
    id: &str,
    keyspace: &str,
    table: &str,
    u: &CellUpdate<'_>,
) -> Result<(), LiveError> {
    let mut c = conn.conn().await?;
    c.exec_drop(
        format!(
            "UPDATE {}.cells SET state = COALESCE(?, state), strategy = COALESCE(?, strategy), rows_copied = COALESCE(?, rows_copied), rows_estimated = COALESCE(?, rows_estimated), rows_per_sec = COALESCE(?, rows_per_sec), checkpoint = COALESCE(?, checkpoint), error = COALESCE(?, error), sealed_at = COALESCE(?, sealed_at), from_sql = COALESCE(?, from_sql), to_sql = COALESCE(?, to_sql), updated_at = ? WHERE deployment_id = ? AND keyspace = ? AND shard = ? AND table_name = ?",
            db()
        ),
        mysql_async::Params::Positional(vec![
            u.state.map(CellState::as_str).into(),
            u.strategy.map(Strategy::as_str).into(),
            u.rows_copied.into(),
            u.rows_estimated.into(),
            u.rows_per_sec.into(),
            u.checkpoint.into(),
            u.error.into(),
            u.sealed_at.into(),
            u.from_sql.into(),
            u.to_sql.into(),
            now_rfc3339().into(),
            id.into(),
            keyspace.into(),
            conn.shard.as_str().into(),
            table.into(),
        ]),
    )
    .await
    .map_err(|e| conn.query_error(format!("recording the progress of `{table}`"), e))
}

/// Sets every cell of the deployment on this shard from one state to another.
pub async fn move_cells(
    conn: &ShardConn,
    id: &str,
    keyspace: &str,
    from: &[CellState],
    to: CellState,
) -> Result<(), LiveError> {
    let mut c = conn.conn().await?;
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    c.exec_drop(
        format!(
            "UPDATE {}.cells SET state = ?, updated_at = ? WHERE deployment_id = ? AND keyspace = ? AND shard = ? AND FIND_IN_SET(state, ?)",
            db()
        ),
        (to.as_str(), now_rfc3339(), id, keyspace, &conn.shard, from.join(",")),
    )
    .await
    .map_err(|e| conn.query_error("recording cell states", e))
}

pub async fn set_decision(
    conn: &ShardConn,
    id: &str,
    keyspace: &str,
    decision: Decision,
) -> Result<(), LiveError> {
    let mut c = conn.conn().await?;
    c.exec_drop(
        format!(
            "UPDATE {}.deployments SET decision = ? WHERE id = ? AND keyspace = ? AND shard = ?",
            db()
        ),
        (decision.as_str(), id, keyspace, &conn.shard),
    )
    .await
    .map_err(|e| conn.query_error("recording the seal decision", e))
}

pub async fn record_seal(
    conn: &ShardConn,
    id: &str,
    keyspace: &str,
    sealed_at: Option<&str>,
    skew_ms: Option<f64>,
    error: Option<&str>,
) -> Result<(), LiveError> {
    let mut c = conn.conn().await?;
    c.exec_drop(
        format!(
            "UPDATE {}.deployments SET sealed_at = COALESCE(?, sealed_at), seal_skew_ms = COALESCE(?, seal_skew_ms), error = ? WHERE id = ? AND keyspace = ? AND shard = ?",
            db()
        ),
        (sealed_at, skew_ms, error, id, keyspace, &conn.shard),
    )
    .await
    .map_err(|e| conn.query_error("recording the seal", e))
}

/// Removes every record of a deployment on this shard (a cancelled deployment started again).
pub async fn forget(conn: &ShardConn, id: &str, keyspace: &str) -> Result<(), LiveError> {
    let mut c = conn.conn().await?;
    for table in ["cells", "deployments"] {
        let column = if table == "cells" {
            "deployment_id"
        } else {
            "id"
        };
        c.exec_drop(
            format!(
                "DELETE FROM {}.{table} WHERE {column} = ? AND keyspace = ? AND shard = ?",
                db()
            ),
            (id, keyspace, &conn.shard),
        )
        .await
        .map_err(|e| conn.query_error("forgetting a cancelled deployment", e))?;
    }
    Ok(())
}
