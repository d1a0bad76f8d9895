//! Deployments: one keyspace's plan carried to every shard — staged in shadow tables, held at
//! a gate until every shard is ready, then sealed on all shards together. The protocol, its
//! state and its failure cases are described in docs/protocols.md.

pub mod foreign_keys;
pub mod seal;
pub mod shadow;
pub mod state;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use mysql_async::prelude::*;
use serde::Serialize;
use tracing::warn;

use crate::diff::ChangeKind;
use crate::live::{quote, LiveError, ShardConn};
use crate::naming;
use crate::plan::KeyspacePlan;
use crate::source::{ForeignKeys, Keyspace};
use shadow::{CopyOptions, Shadow, ShadowError, ShadowSpec};
use state::{Cell, CellState, CellUpdate, Decision, ShardDeployment, Strategy};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error("shard {shard}, table `{table}`: {source}")]
    Shadow {
        shard: String,
        table: String,
        source: ShadowError,
    },
    #[error("the plan has destructive changes ({}); review them and pass --allow-unsafe to deploy anyway", .0.join("; "))]
    Unsafe(Vec<String>),
    #[error("deployment {id} is still in progress for keyspace {keyspace}; finish it (`schemagate seal {id}`) or cancel it (`schemagate cancel {id}`) before deploying another target")]
    Active { keyspace: String, id: String },
    #[error("no deployment {id} found for keyspace {keyspace} on any reachable shard")]
    NotFound { keyspace: String, id: String },
    #[error("deployment {id}: {message}")]
    Failed { id: String, message: String },
    /// The seal found shadows that no longer follow their tables and sent them back to
    /// staging: `apply` copies them again, then seals.
    #[error("deployment {id}: {message}")]
    Restage { id: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealMode {
    /// Seal as soon as the gate opens.
    Auto,
    /// Stop once every shard is staged and ready.
    Manual,
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub seal: SealMode,
    pub allow_unsafe: bool,
    /// Shards staged at the same time.
    pub concurrency: usize,
    pub copy: CopyOptions,
    pub seal_options: seal::SealOptions,
    /// How long the previous version of a replaced table is kept after the seal (revert window).
    pub keep_old: Duration,
    /// How long a dropped table's data is kept after the seal.
    pub keep_dropped: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            seal: SealMode::Auto,
            allow_unsafe: false,
            concurrency: 16,
            copy: CopyOptions::default(),
            seal_options: seal::SealOptions::default(),
            keep_old: Duration::from_secs(30 * 60),
            keep_dropped: Duration::from_secs(24 * 3600),
        }
    }
}

/// Progress reported while a deployment runs (for progress bars and logs).
#[derive(Debug, Clone)]
pub enum Event {
    Cell {
        shard: String,
        table: String,
        state: CellState,
        strategy: Strategy,
        rows_copied: u64,
        rows_estimated: u64,
    },
    GateOpen,
}

/// One deployment across the fleet, as the shards record it.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub id: String,
    pub keyspace: String,
    pub state: CellState,
    pub seal_skew_ms: Option<f64>,
    pub shards: Vec<ShardDeployment>,
    /// Shards that could not be read, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<(String, String)>,
}

/// Connections to every shard of a keyspace.
pub struct Fleet {
    pub keyspace: Keyspace,
    pub conns: Vec<ShardConn>,
    /// Each shard's replicas (same order as `conns`), watched by the online copy.
    pub replicas: Vec<Vec<ShardConn>>,
}

impl Fleet {
    pub fn new(keyspace: &Keyspace) -> Fleet {
        Fleet {
            keyspace: keyspace.clone(),
            conns: keyspace
                .shards
                .iter()
                .map(|s| ShardConn::new(&s.name, &s.dsn, 8))
                .collect(),
            replicas: keyspace
                .shards
                .iter()
                .map(|s| {
                    s.replicas
                        .iter()
                        .map(|r| ShardConn::new(&format!("{} (replica)", s.name), r, 2))
                        .collect()
                })
                .collect(),
        }
    }

    pub async fn disconnect(self) {
        for conn in self
            .conns
            .into_iter()
            .chain(self.replicas.into_iter().flatten())
        {
            conn.disconnect().await;
        }
    }

    /// The copy options for one shard: the fleet's, plus that shard's replicas.
    fn copy_options(&self, conn: &ShardConn, base: &CopyOptions) -> CopyOptions {
        let index = self.conns.iter().position(|c| c.shard == conn.shard);
        CopyOptions {
            replicas: index.map(|i| self.replicas[i].clone()).unwrap_or_default(),
            ..base.clone()
        }
    }

    /// Runs `f` on every shard concurrently; results in shard order.
    pub async fn each<'a, T, F, Fut>(&'a self, concurrency: usize, f: F) -> Vec<T>
    where
        F: Fn(&'a ShardConn) -> Fut,
        Fut: std::future::Future<Output = T> + 'a,
    {
        let all: Vec<usize> = (0..self.conns.len()).collect();
        crate::live::each_shard(&self.conns, &all, concurrency, f)
            .await
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// The fleet view of deployment `id` (or of the latest one when `None`).
    pub async fn deployment(&self, id: Option<&str>) -> Result<Option<Deployment>, DeployError> {
        let keyspace = self.keyspace.name.as_str();
        let database = self.keyspace.database.as_str();
        let loaded = self
            .each(16, |conn| state::load(conn, keyspace, database, id))
            .await;
        let mut shards = Vec::new();
        let mut unreachable = Vec::new();
        for (conn, result) in self.conns.iter().zip(loaded) {
            match result {
                // Newest first: the first is the one asked for, or the latest.
                Ok(list) => shards.extend(list.into_iter().next()),
                Err(e) => unreachable.push((conn.shard.clone(), e.to_string())),
            }
        }
        // Without an id, the newest deployment any shard knows decides.
        let newest = shards
            .iter()
            .max_by(|a, b| a.created_at.cmp(&b.created_at))
            .map(|d| d.id.clone());
        let Some(id) = id.map(str::to_string).or(newest) else {
            return Ok(None);
        };
        shards.retain(|d| d.id == id);
        if shards.is_empty() {
            return Ok(None);
        }
        let state = shards
            .iter()
            .map(|s| s.state())
            .min()
            .unwrap_or(CellState::Failed);
        let state = if shards.iter().any(|s| s.state() == CellState::Failed) {
            CellState::Failed
        } else {
            state
        };
        let seal_skew_ms = shards.iter().find_map(|s| s.seal_skew_ms);
        Ok(Some(Deployment {
            id,
            keyspace: keyspace.to_string(),
            state,
            seal_skew_ms,
            shards,
            unreachable,
        }))
    }
}

/// The cells of one shard's plan: one per table, statements in plan order.
fn cells_for(plan: &crate::plan::ShardPlan) -> Vec<Cell> {
    let mut cells: Vec<Cell> = Vec::new();
    for change in &plan.changes {
        if let Some(cell) = cells.iter_mut().find(|c| c.table == change.table) {
            cell.statements.push(change.statement.clone());
            cell.renames.extend(renames_in(&change.statement));
            continue;
        }
        let strategy = match change.kind {
            ChangeKind::Create => Strategy::Create,
            ChangeKind::Drop => Strategy::Drop,
            ChangeKind::Alter => Strategy::Shadow,
        };
        cells.push(Cell {
            to_sql: (change.kind == ChangeKind::Create).then(|| change.statement.clone()),
            renames: renames_in(&change.statement),
            ..Cell::queued(&change.table, strategy, vec![change.statement.clone()])
        });
    }
    cells
}

/// `(old, new)` column names of the `CHANGE COLUMN old new` clauses of a plan statement.
pub fn renames_in(statement: &str) -> Vec<(String, String)> {
    use crate::schema::sql::{keyword, significant, tokenize};
    use sqlparser::tokenizer::Token;
    let Ok(tokens) = tokenize(statement) else {
        return Vec::new();
    };
    let tokens: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| significant(t))
        .collect();
    tokens
        .windows(4)
        .filter_map(|w| {
            match (
                keyword(w[0]).as_deref(),
                keyword(w[1]).as_deref(),
                w[2],
                w[3],
            ) {
                (Some("CHANGE"), Some("COLUMN"), Token::Word(old), Token::Word(new))
                    if old.quote_style.is_some() =>
                {
                    Some((old.value.clone(), new.value.clone()))
                }
                _ => None,
            }
        })
        .filter(|(old, new)| old != new)
        .collect()
}

/// The deployment id of a keyspace plan at a revision. `generation` tells apart deployments of
/// the same target: a change sealed, reverted by hand and wanted again is a new deployment (its
/// retention tables would otherwise take the new one's names).
pub fn deployment_id(plan: &KeyspacePlan, revision: Option<&str>, generation: u32) -> String {
    let shards: BTreeMap<&str, Vec<&str>> = plan
        .shards
        .iter()
        .map(|s| {
            (
                s.shard.as_str(),
                s.changes.iter().map(|c| c.statement.as_str()).collect(),
            )
        })
        .collect();
    let mut text = serde_json::to_string(&shards).unwrap_or_default();
    if generation > 0 {
        text.push_str(&format!("#{generation}"));
    }
    naming::deployment_id(
        &format!("{}/{}", plan.keyspace, plan.database),
        revision,
        &text,
    )
}

/// Finishes a deployment whose seal was decided but not completed (the controller died during
/// the seal): roll forward. Returns the deployment it finished, if any.
pub async fn roll_forward(
    fleet: &Fleet,
    options: &ApplyOptions,
) -> Result<Option<Deployment>, DeployError> {
    let Some(current) = fleet.deployment(None).await? else {
        return Ok(None);
    };
    let decided = current.shards.iter().any(|s| s.decision == Decision::Seal);
    if !decided || current.state == CellState::Sealed {
        return Ok(None);
    }
    // Cells the seal sent back to staging (their shadow stopped following the table) are
    // staged by `apply` first; its seal then rolls forward.
    let restaging = current
        .shards
        .iter()
        .flat_map(|s| &s.cells)
        .any(|c| matches!(c.state, CellState::Queued | CellState::Staging));
    if restaging {
        return Ok(None);
    }
    match seal::seal(fleet, &current.id, &options.seal_options).await {
        Ok(()) => fleet.deployment(Some(&current.id)).await,
        Err(DeployError::Restage { id, message }) => {
            warn!(deployment = %id, "{message} (apply stages them now)");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Drops retention tables whose time is up: previous versions of replaced tables after
/// `keep_old`, dropped tables after `keep_dropped`, counted from each shard's cut-over.
/// Returns the tables dropped, as `shard: table`.
pub async fn expire_retention(
    fleet: &Fleet,
    options: &ApplyOptions,
) -> Result<Vec<String>, DeployError> {
    let keyspace = fleet.keyspace.name.as_str();
    let database = fleet.keyspace.database.as_str();
    let mut dropped = Vec::new();
    for conn in &fleet.conns {
        for record in state::load(conn, keyspace, database, None).await? {
            let Some(sealed) = record
                .sealed_at
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
            else {
                continue;
            };
            let age = SystemTime::now().duration_since(sealed).unwrap_or_default();
            for cell in &record.cells {
                let (role, keep) = match cell.strategy {
                    Strategy::Shadow => ("old", options.keep_old),
                    Strategy::Drop => ("del", options.keep_dropped),
                    _ => continue,
                };
                if cell.state != CellState::Sealed || age < keep {
                    continue;
                }
                let table = naming::artifact(&record.id, role, &cell.table);
                if current_definition(conn, database, &table).await?.is_none() {
                    continue;
                }
                conn.execute(
                    format!("dropping retention table `{table}`"),
                    format!("DROP TABLE IF EXISTS {}.{}", quote(database), quote(&table)),
                )
                .await?;
                dropped.push(format!("{}: {table}", conn.shard));
            }
        }
    }
    Ok(dropped)
}

/// Creates (or resumes) the deployment for `plan` and drives it to the requested end state.
/// `Ok(None)`: nothing to deploy.
pub async fn apply(
    fleet: &Fleet,
    plan: &KeyspacePlan,
    revision: Option<&str>,
    options: &ApplyOptions,
    events: &(dyn Fn(Event) + Sync),
) -> Result<Option<Deployment>, DeployError> {
    let keyspace = fleet.keyspace.name.as_str();
    if plan.shards.iter().all(|s| s.changes.is_empty()) {
        return Ok(None);
    }
    for result in fleet.each(options.concurrency, state::ensure_schema).await {
        result?;
    }
    // The same target as a sealed deployment is a new deployment: skip sealed generations.
    let mut generation = 0;
    let (id, previous) = loop {
        let id = deployment_id(plan, revision, generation);
        match fleet.deployment(Some(&id)).await? {
            Some(d) if d.state == CellState::Sealed => generation += 1,
            previous => break (id, previous),
        }
    };
    if let Some(current) = fleet.deployment(None).await? {
        if current.id != id && !current.state.is_terminal() {
            return Err(DeployError::Active {
                keyspace: keyspace.to_string(),
                id: current.id,
            });
        }
    }
    // The same target after a cancel is a new attempt under the same id.
    if previous.is_some_and(|p| p.state == CellState::Cancelled) {
        let forgotten = fleet
            .each(options.concurrency, |conn| {
                state::forget(conn, &id, keyspace)
            })
            .await;
        for result in forgotten {
            result?;
        }
    }
    let unsafe_changes: Vec<String> = plan
        .shards
        .iter()
        .flat_map(|s| {
            s.changes
                .iter()
                .filter(|c| c.destructive)
                .map(move |c| format!("shard {}: {}", s.shard, c.reasons.join(", ")))
        })
        .collect();
    if !unsafe_changes.is_empty() && !options.allow_unsafe {
        return Err(DeployError::Unsafe(unsafe_changes));
    }

    let created_at = state::now_rfc3339();
    let records = fleet
        .each(options.concurrency, |conn| {
            let shard_plan = plan.shards.iter().find(|s| s.shard == conn.shard);
            let record = ShardDeployment {
                id: id.clone(),
                keyspace: keyspace.to_string(),
                shard: conn.shard.clone(),
                database: fleet.keyspace.database.clone(),
                revision: revision.map(str::to_string),
                decision: Decision::None,
                sealed_at: None,
                seal_skew_ms: None,
                error: None,
                created_at: created_at.clone(),
                cells: shard_plan.map(cells_for).unwrap_or_default(),
            };
            async move { state::insert(conn, &record).await }
        })
        .await;
    for result in records {
        result?;
    }

    let staged = fleet
        .each(options.concurrency, |conn| {
            let copy = fleet.copy_options(conn, &options.copy);
            let (database, id) = (&fleet.keyspace.database, &id);
            async move {
                let stager = Stager {
                    conn,
                    keyspace,
                    database,
                    id,
                    copy: &copy,
                    config: &fleet.keyspace,
                    events,
                };
                stager.shard().await
            }
        })
        .await;
    let failures: Vec<String> = staged
        .into_iter()
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    if !failures.is_empty() {
        return Err(DeployError::Failed {
            id,
            message: format!(
                "staging did not finish on every shard, so the gate stays closed:\n  {}\nFix the cause and run apply again to resume, or cancel the deployment.",
                failures.join("\n  ")
            ),
        });
    }
    events(Event::GateOpen);
    crate::failpoint("gate:open");
    if options.seal == SealMode::Auto {
        seal::seal(fleet, &id, &options.seal_options).await?;
    }
    fleet.deployment(Some(&id)).await
}

/// Staging on one shard: what every step needs to know.
struct Stager<'a> {
    conn: &'a ShardConn,
    keyspace: &'a str,
    database: &'a str,
    id: &'a str,
    copy: &'a CopyOptions,
    config: &'a Keyspace,
    events: &'a (dyn Fn(Event) + Sync),
}

impl Stager<'_> {
    /// Stages every cell of the shard's record that is not ready yet.
    async fn shard(&self) -> Result<(), DeployError> {
        let Some(record) = state::load(self.conn, self.keyspace, self.database, Some(self.id))
            .await?
            .into_iter()
            .next()
        else {
            return Ok(());
        };
        // Decided or not: after a decision, the only cells left to stage are those the seal
        // sent back to staging (see `seal::captures`).
        for cell in &record.cells {
            self.cell(cell).await?;
        }
        Ok(())
    }

    async fn record(&self, table: &str, update: CellUpdate<'_>) -> Result<(), LiveError> {
        state::update_cell(self.conn, self.id, self.keyspace, table, &update).await
    }

    fn event(&self, cell: &Cell, state: CellState, strategy: Strategy, rows: (u64, u64)) {
        (self.events)(Event::Cell {
            shard: self.conn.shard.clone(),
            table: cell.table.clone(),
            state,
            strategy,
            rows_copied: rows.0,
            rows_estimated: rows.1,
        })
    }

    async fn cell(&self, cell: &Cell) -> Result<(), DeployError> {
        let (conn, database, id) = (self.conn, self.database, self.id);
        match cell.state {
            CellState::Queued | CellState::Staging => {}
            CellState::Failed => {
                return Err(DeployError::Failed {
                    id: id.to_string(),
                    message: format!(
                        "shard {}, table `{}` failed: {}",
                        conn.shard,
                        cell.table,
                        cell.error.as_deref().unwrap_or("unknown error")
                    ),
                })
            }
            _ => return Ok(()),
        }
        let mut strategy = cell.strategy;
        if cell.state == CellState::Queued {
            let from_sql = current_definition(conn, database, &cell.table).await?;
            let mut to_sql = None;
            if strategy == Strategy::Shadow {
                to_sql = proves_instant(conn, database, id, cell).await?;
                if to_sql.is_some() {
                    strategy = Strategy::Instant;
                }
            }
            self.record(
                &cell.table,
                CellUpdate {
                    state: Some(CellState::Staging),
                    strategy: Some(strategy),
                    from_sql: from_sql.as_deref(),
                    to_sql: to_sql.as_deref(),
                    ..Default::default()
                },
            )
            .await?;
        }
        let rows = (cell.rows_copied, cell.rows_estimated);
        self.event(cell, CellState::Staging, strategy, rows);
        let result = match strategy {
            Strategy::Drop | Strategy::Instant => Ok(()),
            Strategy::Create => create_staged(conn, database, id, cell).await,
            Strategy::Shadow => self.shadow(cell).await,
        };
        match result {
            Ok(()) => {
                let ready = CellUpdate {
                    state: Some(CellState::Ready),
                    ..Default::default()
                };
                self.record(&cell.table, ready).await?;
                self.event(cell, CellState::Ready, strategy, (0, 0));
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                // A refused or mismatched cell fails for good; a lost connection can be resumed.
                if matches!(e, DeployError::Shadow { .. }) {
                    let _ = Shadow::cleanup(conn, &shadow_spec(self.config, id, cell)).await;
                    let failed = CellUpdate {
                        state: Some(CellState::Failed),
                        error: Some(&message),
                        ..Default::default()
                    };
                    self.record(&cell.table, failed).await?;
                    self.event(cell, CellState::Failed, strategy, (0, 0));
                }
                Err(e)
            }
        }
    }

    /// Shadow strategy: prepare, then copy and verify (progress persisted on the side).
    async fn shadow(&self, cell: &Cell) -> Result<(), DeployError> {
        let (conn, id) = (self.conn, self.id);
        let wrap = |source| DeployError::shadow(conn, &cell.table, source);
        let mut spec = shadow_spec(self.config, id, cell);
        // Replicas replay the ALTER that adds deferred indexes as one long statement: with
        // replicas to keep up, indexes are maintained during the copy instead.
        spec.defer_indexes = self.copy.replicas.is_empty();
        let shadow = Shadow::prepare(conn, spec).await.map_err(wrap)?;
        // Progress is persisted by a side task so the copy loop never waits on bookkeeping; a
        // checkpoint one chunk behind only means one chunk is copied again after a restart.
        let (tx, mut rx) = tokio::sync::watch::channel(None::<shadow::Progress>);
        let persist = async {
            while rx.changed().await.is_ok() {
                let latest = rx.borrow_and_update().clone();
                if let Some(p) = latest {
                    let rows = (p.rows_copied, p.rows_estimated);
                    self.event(cell, CellState::Staging, Strategy::Shadow, rows);
                    let progress = CellUpdate {
                        rows_copied: Some(p.rows_copied),
                        rows_estimated: Some(p.rows_estimated),
                        rows_per_sec: Some(p.rows_per_sec),
                        checkpoint: p.checkpoint.as_deref(),
                        ..Default::default()
                    };
                    self.record(&cell.table, progress).await?;
                }
            }
            Ok::<_, LiveError>(())
        };
        let copying = async move {
            let result = shadow
                // A checkpoint only means something for the very shadow it was taken on.
                .copy(
                    conn,
                    cell.checkpoint.clone().filter(|_| shadow.resumed()),
                    self.copy,
                    |p| {
                        let _ = tx.send(Some(p.clone()));
                        crate::failpoint("stage:after-chunk");
                    },
                )
                .await;
            drop(tx);
            result
        };
        let (copied, persisted) = tokio::join!(copying, persist);
        copied.map_err(wrap)?;
        persisted?;
        Ok(())
    }
}

impl DeployError {
    /// A shadow engine error, placed on its shard and table.
    pub fn shadow(conn: &ShardConn, table: &str, source: ShadowError) -> Self {
        DeployError::Shadow {
            shard: conn.shard.clone(),
            table: table.to_string(),
            source,
        }
    }
}

/// The shadow spec of a cell: artifact names derived from the deployment id.
pub fn shadow_spec(keyspace: &Keyspace, id: &str, cell: &Cell) -> ShadowSpec {
    ShadowSpec {
        database: keyspace.database.clone(),
        table: cell.table.clone(),
        shadow: naming::artifact(id, "new", &cell.table),
        trigger_prefix: naming::trigger_prefix(id, &cell.table),
        statements: cell.statements.clone(),
        renames: cell.renames.clone(),
        defer_indexes: false,
        carry_foreign_keys: keyspace.foreign_keys == ForeignKeys::Carry,
    }
}

/// The table's live definition (AUTO_INCREMENT removed), `None` when it does not exist.
pub async fn current_definition(
    conn: &ShardConn,
    database: &str,
    table: &str,
) -> Result<Option<String>, LiveError> {
    let mut c = conn.conn().await?;
    let exists: Option<String> = c
        .exec_first(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (database, table),
        )
        .await
        .map_err(|e| conn.query_error(format!("looking up `{table}`"), e))?;
    if exists.is_none() {
        return Ok(None);
    }
    show_definition(&mut c, database, table)
        .await
        .map_err(|e| conn.query_error(format!("SHOW CREATE TABLE `{table}`"), e))
}

/// `SHOW CREATE TABLE` on `c`, AUTO_INCREMENT removed (the table must exist).
pub(crate) async fn show_definition(
    c: &mut mysql_async::Conn,
    database: &str,
    table: &str,
) -> Result<Option<String>, mysql_async::Error> {
    let row: Option<(String, String)> = c
        .query_first(format!(
            "SHOW CREATE TABLE {}.{}",
            quote(database),
            quote(table)
        ))
        .await?;
    Ok(row.map(|(_, sql)| crate::schema::strip_auto_increment(&sql)))
}

/// Rewrites a plan statement `ALTER TABLE `table` …` to act on `target`, optionally with an
/// ALGORITHM clause first.
pub fn retarget(
    statement: &str,
    table: &str,
    target: &str,
    algorithm: Option<&str>,
) -> Option<String> {
    let rest = statement.strip_prefix(&format!("ALTER TABLE {} ", quote(table)))?;
    Some(match algorithm {
        Some(a) => format!("ALTER TABLE {} ALGORITHM={a}, {rest}", quote(target)),
        None => format!("ALTER TABLE {} {rest}", quote(target)),
    })
}

/// Whether every statement of the cell runs with ALGORITHM=INSTANT, proven on an empty clone:
/// the table's definition after them (the clone's, under the table's name), or `None`.
async fn proves_instant(
    conn: &ShardConn,
    database: &str,
    id: &str,
    cell: &Cell,
) -> Result<Option<String>, LiveError> {
    let clone = naming::artifact(id, "tst", &cell.table);
    let target = format!("{}.{}", quote(database), quote(&clone));
    let mut c = conn.conn().await?;
    let err = |e| conn.query_error(format!("probing INSTANT for `{}`", cell.table), e);
    c.query_drop(format!("DROP TABLE IF EXISTS {target}"))
        .await
        .map_err(err)?;
    c.query_drop(format!(
        "CREATE TABLE {target} LIKE {}.{}",
        quote(database),
        quote(&cell.table)
    ))
    .await
    .map_err(err)?;
    let mut instant = true;
    for statement in &cell.statements {
        let probe = retarget(statement, &cell.table, &clone, Some("INSTANT")).map(|s| {
            s.replacen(
                &format!("ALTER TABLE {}", quote(&clone)),
                &format!("ALTER TABLE {target}"),
                1,
            )
        });
        match probe {
            Some(probe) if c.query_drop(probe.as_str()).await.is_ok() => {}
            _ => {
                instant = false;
                break;
            }
        }
    }
    let after = match instant {
        true => current_definition(conn, database, &clone)
            .await?
            .and_then(|sql| {
                let rest = sql.strip_prefix(&format!("CREATE TABLE {} (", quote(&clone)))?;
                Some(format!("CREATE TABLE {} ({rest}", quote(&cell.table)))
            }),
        false => None,
    };
    c.query_drop(format!("DROP TABLE IF EXISTS {target}"))
        .await
        .map_err(err)?;
    Ok(after)
}

async fn create_staged(
    conn: &ShardConn,
    database: &str,
    id: &str,
    cell: &Cell,
) -> Result<(), DeployError> {
    let staged = naming::artifact(id, "new", &cell.table);
    let Some(sql) = cell
        .to_sql
        .as_deref()
        .and_then(|s| s.strip_prefix(&format!("CREATE TABLE {} ", quote(&cell.table))))
    else {
        return Err(DeployError::Failed {
            id: id.to_string(),
            message: format!(
                "shard {}: the plan has no definition for new table `{}`",
                conn.shard, cell.table
            ),
        });
    };
    conn.execute(
        format!("creating staged table `{staged}`"),
        format!(
            "CREATE TABLE IF NOT EXISTS {}.{} {sql}",
            quote(database),
            quote(&staged)
        ),
    )
    .await?;
    Ok(())
}

/// Removes every artifact of deployment `id` on every reachable shard and marks its cells
/// cancelled. Returns the shards that could not be cleaned (run cancel again later).
pub async fn cancel(fleet: &Fleet, id: &str) -> Result<Vec<(String, String)>, DeployError> {
    let keyspace = fleet.keyspace.name.as_str();
    let database = fleet.keyspace.database.as_str();
    let Some(deployment) = fleet.deployment(Some(id)).await? else {
        return Err(DeployError::NotFound {
            keyspace: keyspace.to_string(),
            id: id.to_string(),
        });
    };
    if deployment
        .shards
        .iter()
        .any(|s| s.decision == Decision::Seal)
    {
        return Err(DeployError::Failed {
            id: id.to_string(),
            message: "the seal has been decided; it can no longer be cancelled (run `schemagate seal` to finish it)".into(),
        });
    }
    let results = fleet
        .each(16, |conn| {
            let record = deployment
                .shards
                .iter()
                .find(|s| s.shard == conn.shard)
                .cloned();
            async move {
                let Some(record) = record else { return Ok(()) };
                for cell in &record.cells {
                    if cell.state.is_terminal() {
                        continue;
                    }
                    Shadow::cleanup(conn, &shadow_spec(&fleet.keyspace, id, cell))
                        .await
                        .map_err(|source| DeployError::shadow(conn, &cell.table, source))?;
                    let clone = naming::artifact(id, "tst", &cell.table);
                    conn.execute(
                        "dropping a probe table",
                        format!("DROP TABLE IF EXISTS {}.{}", quote(database), quote(&clone)),
                    )
                    .await?;
                }
                seal::drop_sentinels(conn, database, id).await?;
                state::move_cells(
                    conn,
                    id,
                    keyspace,
                    &[
                        CellState::Queued,
                        CellState::Staging,
                        CellState::Ready,
                        CellState::Failed,
                    ],
                    CellState::Cancelled,
                )
                .await?;
                Ok::<_, DeployError>(())
            }
        })
        .await;
    let mut unreachable: Vec<(String, String)> = deployment.unreachable.clone();
    for (conn, result) in fleet.conns.iter().zip(results) {
        if let Err(e) = result {
            unreachable.push((conn.shard.clone(), e.to_string()));
        }
    }
    Ok(unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_come_from_change_column_clauses() {
        let s = "ALTER TABLE `t` CHANGE COLUMN `name` `full_name` varchar(10) NOT NULL, MODIFY COLUMN `a` int(11), CHANGE COLUMN `b` `b` int(11)";
        assert_eq!(
            renames_in(s),
            vec![("name".to_string(), "full_name".to_string())]
        );
    }

    #[test]
    fn statements_are_retargeted_to_artifacts() {
        let s = "ALTER TABLE `t` ADD COLUMN `x` int(11)";
        assert_eq!(
            retarget(s, "t", "_sg1_new_t", Some("INSTANT")).unwrap(),
            "ALTER TABLE `_sg1_new_t` ALGORITHM=INSTANT, ADD COLUMN `x` int(11)"
        );
        assert_eq!(retarget(s, "u", "x", None), None);
    }
}
