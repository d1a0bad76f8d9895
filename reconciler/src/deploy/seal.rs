//! The seal: every shard flips to the new schema at the same moment, or none does.
//! Protocol and failure cases: docs/protocols.md ("The gate and the seal").

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use mysql_async::prelude::*;
use mysql_async::Conn;
use tracing::{debug, info, warn};

use super::shadow::{Capture, CaptureSwap, Shadow};
use super::state::{self, Cell, CellState, CellUpdate, Decision, ShardDeployment, Strategy};
use super::{current_definition, retarget, shadow_spec, DeployError, Fleet};
use crate::live::{quote, LiveError, ShardConn};
use crate::schema::IndexKind;
use crate::source::Keyspace;

const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
/// How long `finish` keeps trying to drop the reverse triggers from a live table (each try
/// holds up no one) before it gives up and leaves the seal to be finished by the next run.
const LIVE_TRIGGER_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SealOptions {
    /// How long each shard may try to take its locks in a round (never queueing for them).
    /// Shards that already hold theirs block writes meanwhile, so this bounds the stall.
    pub lock_budget: Duration,
    /// `lock_wait_timeout` (whole seconds) for a swap-back after a partial flip.
    pub swap_back_timeout: Duration,
    /// Lock rounds before the seal gives up (cells stay ready; seal can be retried).
    pub attempts: u32,
    pub backoff: Duration,
    /// After the seal, read every index of each new table once, so the first queries after
    /// the cut-over do not pay for cold pages.
    pub warm_indexes: bool,
}

impl Default for SealOptions {
    fn default() -> Self {
        SealOptions {
            lock_budget: Duration::from_millis(100),
            swap_back_timeout: Duration::from_secs(1),
            attempts: 10,
            warm_indexes: false,
            backoff: Duration::from_millis(200),
        }
    }
}

/// The sentinel and the flag of a deployment on a shard. The flip statement renames the flag
/// onto the sentinel's name, so it can only succeed once the lock holder dropped the sentinel
/// on purpose; a lock holder that dies leaves the sentinel in place and the flip fails.
fn sentinel(id: &str) -> String {
    format!("_sg{id}_seal")
}

fn flag(id: &str) -> String {
    format!("_sg{id}_flag")
}

/// Drops the flag and sentinel tables (cancel, and after a completed seal).
pub async fn drop_sentinels(conn: &ShardConn, database: &str, id: &str) -> Result<(), LiveError> {
    conn.execute(
        "dropping seal sentinels",
        format!(
            "DROP TABLE IF EXISTS {db}.{}, {db}.{}",
            quote(&sentinel(id)),
            quote(&flag(id)),
            db = quote(database)
        ),
    )
    .await
}

/// One table's INSTANT change at the flip.
struct InstantChange {
    table: String,
    /// Qualified, with `ALGORITHM=INSTANT`.
    statements: Vec<String>,
    /// The definition the plan started from: what a swap-back takes the table back to.
    from: Option<String>,
    /// The definition after the change: a table that has it already (a controller died after
    /// running the change under its lock) is not changed again.
    to: Option<String>,
}

/// What one shard does at the flip.
struct Flip<'a> {
    conn: &'a ShardConn,
    database: String,
    /// Tables the lock connection holds, qualified and quoted.
    locks: Vec<String>,
    /// INSTANT changes, run by the lock holder under the lock once every shard holds its own.
    /// Queued ahead of the RENAME instead, they would let writes that waited for the lock in
    /// between: into an old table whose capture is already turned around, and so lost.
    instant: Vec<InstantChange>,
    /// `(from, to)` renames, flag → sentinel last.
    renames: Vec<(String, String)>,
    /// `(original, shadow)`: auto-increment counters carried over before the flip.
    counters: Vec<(String, String)>,
    /// Under the lock, the shadows' capture triggers are turned around (new table → old
    /// table), and turned back if the round is abandoned; see [`CaptureSwap`]. Empty when the
    /// shard has no shadow cell.
    to_reverse: Vec<String>,
    to_forward: Vec<String>,
}

impl Flip<'_> {
    fn qualified(&self, table: &str) -> String {
        format!("{}.{}", quote(&self.database), quote(table))
    }

    fn rename_sql(&self, pairs: &[(String, String)]) -> String {
        let list: Vec<String> = pairs
            .iter()
            .map(|(a, b)| format!("{} TO {}", self.qualified(a), self.qualified(b)))
            .collect();
        format!("RENAME TABLE {}", list.join(", "))
    }
}

fn plan_flip<'a>(
    conn: &'a ShardConn,
    database: &str,
    id: &str,
    cells: &[Cell],
    swaps: &[CaptureSwap],
) -> Flip<'a> {
    let mut flip = Flip {
        conn,
        database: database.to_string(),
        locks: Vec::new(),
        instant: Vec::new(),
        renames: Vec::new(),
        counters: Vec::new(),
        to_reverse: swaps.iter().flat_map(|s| s.to_reverse.clone()).collect(),
        to_forward: swaps.iter().flat_map(|s| s.to_forward.clone()).collect(),
    };
    for cell in cells {
        let new = crate::naming::artifact(id, "new", &cell.table);
        match cell.strategy {
            Strategy::Shadow => {
                flip.locks.push(flip.qualified(&cell.table));
                flip.locks.push(flip.qualified(&new));
                flip.renames.push((
                    cell.table.clone(),
                    crate::naming::artifact(id, "old", &cell.table),
                ));
                flip.counters.push((cell.table.clone(), new.clone()));
                flip.renames.push((new, cell.table.clone()));
            }
            Strategy::Create => {
                flip.locks.push(flip.qualified(&new));
                flip.renames.push((new, cell.table.clone()));
            }
            Strategy::Drop => {
                flip.locks.push(flip.qualified(&cell.table));
                flip.renames.push((
                    cell.table.clone(),
                    crate::naming::artifact(id, "del", &cell.table),
                ));
            }
            Strategy::Instant => {
                flip.locks.push(flip.qualified(&cell.table));
                let qualified = flip.qualified(&cell.table);
                let statements = cell
                    .statements
                    .iter()
                    .filter_map(|s| {
                        retarget(s, &cell.table, &cell.table, Some("INSTANT")).map(|s| {
                            s.replacen(
                                &format!("ALTER TABLE {}", quote(&cell.table)),
                                &format!("ALTER TABLE {qualified}"),
                                1,
                            )
                        })
                    })
                    .collect();
                flip.instant.push(InstantChange {
                    table: cell.table.clone(),
                    statements,
                    from: cell.from_sql.clone(),
                    to: cell.to_sql.clone(),
                });
            }
        }
    }
    flip.locks.push(flip.qualified(&sentinel(id)));
    flip.renames.push((flag(id), sentinel(id)));
    flip
}

/// A shard holding its locks with the flip queued behind them.
struct Held {
    lock: Conn,
    flip: tokio::task::JoinHandle<Result<SystemTime, String>>,
    /// The runner's connection id, to stop its queued flip (see [`stop_flip`]).
    runner_id: Option<u64>,
    /// The capture was (or may have been, if that failed half way) turned around.
    turned: bool,
    /// The INSTANT ALTERs ran (or may have, if one failed).
    altered: bool,
}

/// Seals deployment `id` on every shard together. Shards that already flipped (a previous
/// controller died mid-seal) are finished, not flipped again.
pub async fn seal(fleet: &Fleet, id: &str, options: &SealOptions) -> Result<(), DeployError> {
    let keyspace = fleet.keyspace.name.as_str();
    let database = fleet.keyspace.database.as_str();
    let failed = |message: String| DeployError::Failed {
        id: id.to_string(),
        message,
    };
    let Some(deployment) = fleet.deployment(Some(id)).await? else {
        return Err(DeployError::NotFound {
            keyspace: keyspace.to_string(),
            id: id.to_string(),
        });
    };
    if let Some((shard, error)) = deployment.unreachable.first() {
        return Err(failed(format!(
            "cannot seal while shard {shard} is unreachable ({error}); the gate stays closed"
        )));
    }
    if deployment.shards.len() != fleet.conns.len() {
        return Err(failed(
            "not every shard has this deployment; run apply again first".into(),
        ));
    }
    let records: Vec<(&ShardConn, &ShardDeployment)> = fleet
        .conns
        .iter()
        .filter_map(|c| {
            deployment
                .shards
                .iter()
                .find(|s| s.shard == c.shard)
                .map(|s| (c, s))
        })
        .collect();

    // Which shards still need the flip (a flipped shard has renamed its flag away).
    let mut pending = Vec::new();
    for (conn, record) in &records {
        if record.state() == CellState::Sealed {
            continue;
        }
        if flipped(conn, database, id).await? {
            continue;
        }
        pending.push((*conn, *record));
    }

    if !pending.is_empty() {
        let swaps = match gate_check(&pending, &fleet.keyspace, id).await? {
            Captures::Intact(swaps) => swaps,
            Captures::Stale(stale) => {
                return Err(restage_stale(&records, &pending, &stale, &fleet.keyspace, id).await);
            }
        };
        decide(&records, keyspace, id).await?;
        crate::failpoint("seal:after-decision");
        for (conn, _) in &pending {
            state::move_cells(conn, id, keyspace, &[CellState::Ready], CellState::Sealing).await?;
        }
        let flips: Vec<Flip> = pending
            .iter()
            .zip(&swaps)
            .map(|((conn, record), swaps)| plan_flip(conn, database, id, &record.cells, swaps))
            .collect();
        for flip in &flips {
            flip.conn
                .execute(
                    "creating the seal flag",
                    format!(
                        "CREATE TABLE IF NOT EXISTS {} (id int)",
                        flip.qualified(&flag(id))
                    ),
                )
                .await?;
        }
        let mut attempt = 0;
        let times = loop {
            attempt += 1;
            let why = match flip_round(&flips, id, options).await {
                Ok(times) => break times,
                Err(RoundError::Retry(why)) => why,
                Err(RoundError::Partial(report)) => {
                    let restaged = after_partial_flip(&records, &pending, &fleet.keyspace, id);
                    return Err(failed(format!("{report}; {}", restaged.await)));
                }
            };
            // An abandoned round turned the capture back before unlocking; a lock holder that
            // failed or died half way did not, and that shadow no longer follows its table.
            if let Captures::Stale(stale) = captures(&pending, &fleet.keyspace, id).await? {
                return Err(restage_stale(&records, &pending, &stale, &fleet.keyspace, id).await);
            }
            if attempt < options.attempts {
                warn!(deployment = id, attempt, %why, "seal round aborted before any shard flipped; retrying");
                tokio::time::sleep(options.backoff * attempt).await;
                continue;
            }
            for (conn, _) in &pending {
                state::move_cells(conn, id, keyspace, &[CellState::Sealing], CellState::Ready)
                    .await?;
            }
            return Err(failed(format!("no shard was flipped: {why} (after {attempt} attempts); cells stay ready — run `schemagate seal {id}` to try again")));
        };
        crate::failpoint("seal:after-flip");
        record_times(&flips, keyspace, id, &times).await?;
    }
    finish(fleet, id, options).await
}

/// Every cell ready, every table still as the plan found it, and every shadow still following
/// its table (see [`captures`]).
async fn gate_check<'a>(
    pending: &[(&'a ShardConn, &ShardDeployment)],
    keyspace: &Keyspace,
    id: &str,
) -> Result<Captures<'a>, DeployError> {
    let database = keyspace.database.as_str();
    let mut problems = Vec::new();
    for (conn, record) in pending {
        problems.extend(repointed_foreign_keys(&conn.shard, &record.cells));
        problems.extend(overlong_key_names(&conn.shard, id, &record.cells));
        for cell in &record.cells {
            if !matches!(cell.state, CellState::Ready | CellState::Sealing) {
                problems.push(format!(
                    "shard {} table `{}` is {}",
                    conn.shard,
                    cell.table,
                    cell.state.as_str()
                ));
                continue;
            }
            if cell.strategy == Strategy::Create {
                continue;
            }
            let now = current_definition(conn, database, &cell.table).await?;
            // An INSTANT change may have run already, under a lock whose holder then died.
            let applied = cell.strategy == Strategy::Instant
                && reached(now.as_deref(), cell.to_sql.as_deref());
            if now != cell.from_sql && !applied {
                problems.push(format!(
                    "shard {} table `{}` changed since the plan was made (someone altered it underneath); cancel this deployment and plan again",
                    conn.shard, cell.table
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(DeployError::Failed {
            id: id.to_string(),
            message: format!("the gate is closed: {}", problems.join("; ")),
        });
    }
    captures(pending, keyspace, id).await
}

/// A shadow cell whose shadow no longer follows its table.
struct Stale<'a> {
    conn: &'a ShardConn,
    table: String,
    why: String,
}

enum Captures<'a> {
    /// Every shadow follows its table: per pending shard (same order), the statements that
    /// turn its shadows' capture around under the lock.
    Intact(Vec<Vec<CaptureSwap>>),
    Stale(Vec<Stale<'a>>),
}

/// Checks that every shadow cell's capture triggers are on its table exactly as staging made
/// them, and the shadow has no triggers. The seal turns the capture around under its locks: a
/// lock holder that died (a killed controller, a killed connection) between that and the flip
/// leaves a table whose writes no longer reach the shadow, and such a shadow must never be
/// sealed.
async fn captures<'a>(
    pending: &[(&'a ShardConn, &ShardDeployment)],
    keyspace: &Keyspace,
    id: &str,
) -> Result<Captures<'a>, DeployError> {
    let mut swaps = Vec::new();
    let mut stale = Vec::new();
    for (conn, record) in pending {
        let mut shard = Vec::new();
        // The session mode the lock holder will have: the capture triggers are re-created
        // with the mode staging created them with.
        let session_mode: Option<String> = conn
            .conn()
            .await?
            .query_first("SELECT @@session.sql_mode")
            .await
            .map_err(|e| conn.query_error("reading sql_mode", e))?;
        let session_mode = session_mode.unwrap_or_default();
        for cell in record
            .cells
            .iter()
            .filter(|c| c.strategy == Strategy::Shadow)
        {
            let spec = shadow_spec(keyspace, id, cell);
            let capture = Shadow::capture(conn, &spec)
                .await
                .map_err(|source| DeployError::shadow(conn, &cell.table, source))?;
            match capture {
                Capture::Intact(shadow) => shard.push(shadow.capture_swap(
                    &crate::naming::artifact(id, "old", &cell.table),
                    &session_mode,
                )),
                Capture::Broken(why) => stale.push(Stale {
                    conn,
                    table: cell.table.clone(),
                    why,
                }),
            }
        }
        swaps.push(shard);
    }
    Ok(if stale.is_empty() {
        Captures::Intact(swaps)
    } else {
        Captures::Stale(stale)
    })
}

/// Sends shadow cells back to staging, so that `apply` drops their shadows and copies them
/// again (a shadow that stopped following its table cannot be repaired in place). If no shard
/// has flipped, the seal is taken back as a whole: every sealing cell goes back to ready and
/// the decision to `none`, and the deployment is an ordinary staged one again (it can be
/// cancelled). If a shard did flip, the decision stands: once the cells are staged again, the
/// seal rolls forward. Best effort per shard: returns what could not be recorded (a shard
/// that is down); the gate finds those shadows again on the next run.
async fn restage(
    records: &[(&ShardConn, &ShardDeployment)],
    cells: &[(&ShardConn, String)],
    any_flipped: bool,
    keyspace: &str,
    id: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (conn, table) in cells {
        let update = CellUpdate {
            state: Some(CellState::Staging),
            ..Default::default()
        };
        if let Err(e) = state::update_cell(conn, id, keyspace, table, &update).await {
            failures.push(e.to_string());
        }
    }
    if !any_flipped {
        for (conn, _) in records {
            let back =
                state::move_cells(conn, id, keyspace, &[CellState::Sealing], CellState::Ready);
            if let Err(e) = back.await {
                failures.push(e.to_string());
            } else if let Err(e) = state::set_decision(conn, id, keyspace, Decision::None).await {
                failures.push(e.to_string());
            }
        }
    }
    failures
}

/// The gate found shadows that no longer follow their tables: they go back to staging, and the
/// error says so (roll forward lets `apply` stage them and seal).
async fn restage_stale(
    records: &[(&ShardConn, &ShardDeployment)],
    pending: &[(&ShardConn, &ShardDeployment)],
    stale: &[Stale<'_>],
    config: &Keyspace,
    id: &str,
) -> DeployError {
    let (keyspace, any_flipped) = (config.name.as_str(), pending.len() != records.len());
    let cells: Vec<(&ShardConn, String)> =
        stale.iter().map(|s| (s.conn, s.table.clone())).collect();
    let mut failures = restage(records, &cells, any_flipped, keyspace, id).await;
    // A lock holder that died after running its INSTANT changes left them on a shard that did
    // not flip: they are taken back, as the seal will run them again.
    for (conn, record) in pending {
        let instant = record
            .cells
            .iter()
            .filter(|c| c.strategy == Strategy::Instant);
        for cell in instant {
            let Some(from) = &cell.from_sql else { continue };
            let undone = match undo_connection(conn).await {
                Ok(mut c) => undo_instant(&mut c, &config.database, &cell.table, from)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(why) = undone {
                failures.push(format!(
                    "shard {} table `{}` keeps its INSTANT change ({why})",
                    conn.shard, cell.table
                ));
            }
        }
    }
    let list = stale
        .iter()
        .map(|s| format!("shard {} table `{}` ({})", s.conn.shard, s.table, s.why))
        .collect::<Vec<_>>()
        .join("; ");
    let mut message = format!(
        "these shadow tables no longer follow their tables, so they cannot be sealed: {list}. \
         (A seal interrupted while it held its locks leaves them so: the capture triggers are \
         turned around under the locks.) They were sent back to staging: run `schemagate \
         apply` to copy them again; the seal follows"
    );
    if !failures.is_empty() {
        message.push_str(&format!(
            " (not recorded everywhere: {}; the next run finds them again)",
            failures.join("; ")
        ));
    }
    DeployError::Restage {
        id: id.to_string(),
        message,
    }
}

/// After a partial flip (the flipped shards were swapped back, as far as they could be): every
/// lock holder of the round had turned its shard's capture around, so no shadow of the round
/// follows its table any more. The shards that are not flipped get their shadow cells sent
/// back to staging, their reverse triggers (back on the shadows, naming a table that is gone)
/// dropped first. Returns what that did, for the report.
async fn after_partial_flip(
    records: &[(&ShardConn, &ShardDeployment)],
    pending: &[(&ShardConn, &ShardDeployment)],
    config: &Keyspace,
    id: &str,
) -> String {
    let (database, keyspace) = (config.database.as_str(), config.name.as_str());
    let mut cells = Vec::new();
    let mut still_flipped = Vec::new();
    let mut notes = Vec::new();
    for (conn, record) in pending {
        match flipped(conn, database, id).await {
            Ok(false) => {}
            Ok(true) => {
                still_flipped.push(conn.shard.clone());
                continue;
            }
            Err(e) => {
                // Not known: treated as flipped, so the decision stands and the next run looks.
                still_flipped.push(conn.shard.clone());
                notes.push(e.to_string());
                continue;
            }
        }
        for cell in record
            .cells
            .iter()
            .filter(|c| c.strategy == Strategy::Shadow)
        {
            let spec = shadow_spec(config, id, cell);
            if let Err(e) = Shadow::drop_reverse_triggers(conn, &spec, LIVE_TRIGGER_PATIENCE).await
            {
                notes.push(format!("shard {}: {e}", conn.shard));
            }
            cells.push((*conn, cell.table.clone()));
        }
    }
    let any_flipped = !still_flipped.is_empty() || pending.len() != records.len();
    notes.extend(restage(records, &cells, any_flipped, keyspace, id).await);
    let tables = cells
        .iter()
        .map(|(conn, table)| format!("shard {} table `{table}`", conn.shard))
        .collect::<Vec<_>>()
        .join(", ");
    let mut message = format!(
        "the seal had turned the capture triggers around, so these shadow tables no longer \
         follow their tables and were sent back to staging: {tables}; fix the cause, then run \
         `schemagate apply` to copy them again (the seal follows)"
    );
    if !still_flipped.is_empty() {
        message.push_str(&format!(
            ". Shards {} are (or may be) still flipped: the decision to seal stands, and the \
             seal rolls forward once the rest is staged again",
            still_flipped.join(", ")
        ));
    }
    if !notes.is_empty() {
        message.push_str(&format!(" (also: {})", notes.join("; ")));
    }
    message
}

/// A foreign key that a new table has, or that a shadow carries because the change adds it,
/// and that references a table this deployment renames away, would follow the rename (InnoDB
/// re-points foreign keys) and end up referencing the retention table.
fn repointed_foreign_keys(shard: &str, cells: &[Cell]) -> Vec<String> {
    let renamed: Vec<&str> = cells
        .iter()
        .filter(|c| matches!(c.strategy, Strategy::Shadow | Strategy::Drop))
        .map(|c| c.table.as_str())
        .collect();
    let created = cells
        .iter()
        .filter(|c| c.strategy == Strategy::Create)
        .filter_map(|c| {
            let t = crate::schema::Table::parse_canonical(c.to_sql.as_deref()?).ok()?;
            Some((c, "new table", t.foreign_keys))
        });
    let added = cells
        .iter()
        .filter(|c| c.strategy == Strategy::Shadow)
        .filter_map(|c| {
            let split = super::foreign_keys::split(&c.statements).ok()?;
            let keys = split
                .added
                .iter()
                .filter_map(|d| crate::schema::ForeignKey::parse(d))
                .collect();
            Some((c, "a key added to", keys))
        });
    created
        .chain(added)
        .flat_map(|(c, what, keys)| {
            keys.into_iter()
                .filter(|fk| fk.referenced_database.is_none() && renamed.contains(&fk.referenced_table.as_str()))
                .map(move |fk| {
                    format!(
                        "shard {shard}: {what} `{}` references `{}`, which this deployment replaces by renaming; the foreign key would follow the old table. Deploy the referenced table's change first, then the key",
                        c.table, fk.referenced_table
                    )
                })
        })
        .collect()
}

/// InnoDB renames a generated foreign key name (`<table>_ibfk_<n>`) along with its table, and
/// cuts it at 64 characters: a dropped table's retention name could make two of them the same
/// and fail its shard's RENAME at the flip. (The shadow strategy refuses such keys up front.)
fn overlong_key_names(shard: &str, id: &str, cells: &[Cell]) -> Vec<String> {
    cells
        .iter()
        .filter(|c| c.strategy == Strategy::Drop)
        .filter_map(|c| Some((c, crate::schema::Table::parse_canonical(c.from_sql.as_deref()?).ok()?)))
        .filter_map(|(c, t)| {
            let retention = crate::naming::artifact(id, "del", &c.table);
            let fk = super::foreign_keys::overflowing_generated_name(
                &c.table,
                &retention,
                &t.foreign_keys,
            )?;
            Some(format!(
                "shard {shard}: table `{}` is dropped by renaming it, which would make the generated name of its foreign key `{}` longer than 64 characters; drop that key in a deployment of its own first",
                c.table, fk.name
            ))
        })
        .collect()
}

/// Records the decision to seal on every shard before anything is locked; if one shard cannot
/// record it, it is taken back everywhere.
async fn decide(
    records: &[(&ShardConn, &ShardDeployment)],
    keyspace: &str,
    id: &str,
) -> Result<(), DeployError> {
    let results = join_all(
        records
            .iter()
            .map(|(conn, _)| state::set_decision(conn, id, keyspace, Decision::Seal)),
    )
    .await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        for (conn, _) in records {
            let _ = state::set_decision(conn, id, keyspace, Decision::None).await;
        }
        return Err(e.into());
    }
    Ok(())
}

async fn flipped(conn: &ShardConn, database: &str, id: &str) -> Result<bool, LiveError> {
    let mut c = conn.conn().await?;
    let names: Vec<String> = c
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?, ?)",
            (database, sentinel(id), flag(id)),
        )
        .await
        .map_err(|e| conn.query_error("checking the seal state", e))?;
    Ok(names == [sentinel(id)])
}

enum RoundError {
    /// Nothing flipped; safe to try again.
    Retry(String),
    /// Some shards flipped and the rest could not: they were swapped back (message says how).
    Partial(String),
}

async fn flip_round(
    flips: &[Flip<'_>],
    id: &str,
    options: &SealOptions,
) -> Result<Vec<SystemTime>, RoundError> {
    let prepared = join_all(flips.iter().map(|f| hold(f, id, options))).await;
    if prepared.iter().any(Result::is_err) {
        let why = shard_errors(&prepared, flips).join("; ");
        // Unlocking without dropping the sentinel makes every queued flip fail: nothing flips.
        join_all(
            prepared
                .into_iter()
                .zip(flips)
                .filter_map(|(r, f)| r.ok().map(|h| abandon(h, f, id))),
        )
        .await;
        return Err(RoundError::Retry(why));
    }
    let mut held: Vec<Held> = prepared.into_iter().filter_map(Result::ok).collect();
    // Only once every shard holds its locks: an abandoned round then has nothing to turn back,
    // and its stall stays the lock budget.
    let turned = join_all(held.iter_mut().zip(flips).map(|(h, f)| turn(h, f))).await;
    if turned.iter().any(Result::is_err) {
        let why = shard_errors(&turned, flips).join("; ");
        join_all(held.into_iter().zip(flips).map(|(h, f)| abandon(h, f, id))).await;
        return Err(RoundError::Retry(why));
    }
    crate::failpoint("seal:while-locked");
    let started = Instant::now();
    let released = join_all(held.into_iter().zip(flips).map(|(h, f)| release(h, f, id))).await;
    info!(
        deployment = id,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "flip released on every shard"
    );

    let failures = shard_errors(&released, flips);
    if failures.is_empty() {
        return Ok(released.into_iter().filter_map(Result::ok).collect());
    }
    let mut report = vec![format!("the flip failed on {}", failures.join("; "))];
    for (result, flip) in released.iter().zip(flips) {
        if result.is_err() && !flip.instant.is_empty() {
            // Its INSTANT ALTERs ran under the lock, before the RENAME that failed (unless only
            // the answer was lost: a shard that did flip keeps them).
            let notes = match flipped(flip.conn, &flip.database, id).await {
                Ok(false) => match undo_connection(flip.conn).await {
                    Ok(mut c) => undo_instants(&mut c, flip).await,
                    Err(e) => vec![format!("its INSTANT changes were not checked: {e}")],
                },
                Ok(true) => Vec::new(),
                Err(e) => vec![format!("its INSTANT changes were not checked: {e}")],
            };
            if !notes.is_empty() {
                report.push(format!(
                    "on shard {}, {}",
                    flip.conn.shard,
                    notes.join(", and ")
                ));
            }
        }
        if result.is_ok() {
            match swap_back(flip, options).await {
                Ok(kept) if kept.is_empty() => report.push(format!(
                    "shard {} was swapped back to the old schema, with the writes it took while \
                     flipped (the reverse triggers carried them into the old table)",
                    flip.conn.shard
                )),
                Ok(kept) => report.push(format!(
                    "shard {} was swapped back to the old schema, with the writes it took while \
                     flipped, except that {}",
                    flip.conn.shard,
                    kept.join(", and ")
                )),
                Err(e) => report.push(format!(
                    "shard {} flipped and could NOT be swapped back: {e}",
                    flip.conn.shard
                )),
            }
        }
    }
    Err(RoundError::Partial(report.join("; ")))
}

/// Each failed shard's error, named by shard.
fn shard_errors<T>(results: &[Result<T, String>], flips: &[Flip<'_>]) -> Vec<String> {
    results
        .iter()
        .zip(flips)
        .filter_map(|(r, f)| {
            r.as_ref()
                .err()
                .map(|e| format!("shard {}: {e}", f.conn.shard))
        })
        .collect()
}

/// Takes the shard's locks and queues its flip behind them.
async fn hold(flip: &Flip<'_>, id: &str, options: &SealOptions) -> Result<Held, String> {
    let err = |e: mysql_async::Error| e.to_string();
    // Every connection is ready before the lock is taken: the lock is held for as short a
    // time as possible.
    let mut lock = flip.conn.conn().await.map_err(|e| e.to_string())?;
    let mut runner = flip.conn.conn().await.map_err(|e| e.to_string())?;
    let mut probe = flip.conn.conn().await.map_err(|e| e.to_string())?;
    let runner_id: Option<u64> = runner
        .query_first("SELECT CONNECTION_ID()")
        .await
        .map_err(err)?;
    // lock_wait_timeout = 0: the lock is tried, never queued for. A queued LOCK TABLES would
    // hold up every other session behind it; trying again for a short budget holds up no one.
    lock.query_drop("SET SESSION lock_wait_timeout = 0")
        .await
        .map_err(err)?;
    lock.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {} (id int)",
        flip.qualified(&sentinel(id))
    ))
    .await
    .map_err(err)?;
    let tables: Vec<String> = flip.locks.iter().map(|t| format!("{t} WRITE")).collect();
    let lock_sql = format!("LOCK TABLES {}", tables.join(", "));
    let deadline = Instant::now() + options.lock_budget;
    loop {
        match lock.query_drop(lock_sql.as_str()).await {
            Ok(()) => break,
            Err(mysql_async::Error::Server(e)) if e.code == ER_LOCK_WAIT_TIMEOUT => {
                if Instant::now() > deadline {
                    return Err(format!(
                        "the tables stayed in use for {} ms (a long transaction holds them)",
                        options.lock_budget.as_millis()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    // Held now: DDL under the lock may wait briefly (InnoDB's own threads touch tables too).
    lock.query_drop("SET SESSION lock_wait_timeout = 1")
        .await
        .map_err(err)?;
    // With writes blocked the counters are final: a shadow made by CREATE TABLE … LIKE starts
    // at 1 and would hand out the ids of deleted tail rows again.
    if let Err(e) = carry_auto_increment(&mut lock, flip).await {
        let _ = lock.query_drop("UNLOCK TABLES").await;
        return Err(e);
    }

    let statements = [
        "SET SESSION lock_wait_timeout = 60".to_string(),
        flip.rename_sql(&flip.renames),
    ];
    let task = tokio::spawn(async move {
        for statement in statements {
            runner
                .query_drop(statement)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(SystemTime::now())
    });
    // The flip must be queued behind the lock before anyone is released.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let waiting: Option<u64> = probe
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ? AND STATE LIKE '%metadata lock%'",
                (runner_id,),
            )
            .await
            .map_err(err)?;
        if waiting == Some(1) {
            return Ok(Held {
                lock,
                flip: task,
                runner_id,
                turned: false,
                altered: false,
            });
        }
        if task.is_finished() || Instant::now() > deadline {
            stop_flip(&mut lock, runner_id, flip).await;
            let _ = lock.query_drop("UNLOCK TABLES").await;
            let outcome = task.await.map_err(|e| e.to_string())?;
            return Err(match outcome {
                Err(e) => format!("the flip statement failed before the release: {e}"),
                Ok(_) => "the flip ran before the release (a lock was missing)".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn carry_auto_increment(lock: &mut Conn, flip: &Flip<'_>) -> Result<(), String> {
    for (original, shadow) in &flip.counters {
        // Rows the triggers wrote already moved the shadow's counter past every live id; only
        // ids of deleted tail rows can leave it behind.
        let counters: Option<(Option<u64>, Option<u64>)> = lock
            .exec_first(
                "SELECT MAX(IF(TABLE_NAME = ?, AUTO_INCREMENT, NULL)), MAX(IF(TABLE_NAME = ?, AUTO_INCREMENT, NULL)) \
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?, ?)",
                (original, shadow, &flip.database, original, shadow),
            )
            .await
            .map_err(|e| e.to_string())?;
        if let Some((Some(next), behind)) = counters {
            if behind.is_none_or(|s| s < next) {
                lock.query_drop(format!(
                    "ALTER TABLE {} AUTO_INCREMENT = {next}",
                    flip.qualified(shadow)
                ))
                .await
                .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// Runs the shard's INSTANT changes under its lock, then turns the capture around: from the
/// flip on, the new tables' writes are repeated into the old ones, so that a swap-back loses
/// none. One round trip for all of the
/// shard's shadows, with the flip already queued (trigger DDL upgrades the lock holder's own
/// metadata locks; a queued RENAME does not stand in the way), timed: it adds to the stall.
async fn turn(held: &mut Held, flip: &Flip<'_>) -> Result<(), String> {
    for change in &flip.instant {
        let now = definition(&mut held.lock, &flip.database, &change.table).await?;
        if reached(now.as_deref(), change.to.as_deref()) {
            continue;
        }
        held.altered = true;
        held.lock
            .query_drop(change.statements.join(";\n"))
            .await
            .map_err(|e| format!("running the INSTANT change of `{}`: {e}", change.table))?;
    }
    if flip.to_reverse.is_empty() {
        return Ok(());
    }
    held.turned = true;
    let started = Instant::now();
    let turned = held.lock.query_drop(flip.to_reverse.join(";\n")).await;
    debug!(
        shard = %flip.conn.shard,
        elapsed_us = started.elapsed().as_micros() as u64,
        "capture triggers turned around under the lock"
    );
    turned.map_err(|e| format!("turning the capture triggers around: {e}"))
}

/// Releases a held shard without flipping it, the capture turned back first (before anyone can
/// write) if it was turned around. Errors turning it back are only logged: the seal checks
/// every capture after an abandoned round, and a shadow left without one is staged again
/// instead of sealed.
async fn abandon(mut held: Held, flip: &Flip<'_>, id: &str) {
    if held.turned {
        if let Err(e) = held.lock.query_drop(flip.to_forward.join(";\n")).await {
            warn!(shard = %flip.conn.shard, error = %e, "turning the capture triggers back failed");
        }
    }
    if held.altered {
        for note in undo_instants(&mut held.lock, flip).await {
            warn!(shard = %flip.conn.shard, %note, "taking an INSTANT change back");
        }
    }
    stop_flip(&mut held.lock, held.runner_id, flip).await;
    let _ = held.lock.query_drop("UNLOCK TABLES").await;
    let _ = held.flip.await;
    let _ = held
        .lock
        .query_drop(format!(
            "DROP TABLE IF EXISTS {}",
            flip.qualified(&sentinel(id))
        ))
        .await;
}

/// Interrupts the runner's queued RENAME before the lock holder lets go of a shard it does not
/// flip (the sentinel would make it fail after the unlock anyway; this way it never waits).
async fn stop_flip(lock: &mut Conn, runner_id: Option<u64>, flip: &Flip<'_>) {
    let Some(runner_id) = runner_id else {
        return;
    };
    if let Err(e) = lock.query_drop(format!("KILL QUERY {runner_id}")).await {
        warn!(shard = %flip.conn.shard, error = %e, "stopping the queued flip failed");
    }
}

/// Drops the sentinel and unlocks: the queued flip runs first.
async fn release(mut held: Held, flip: &Flip<'_>, id: &str) -> Result<SystemTime, String> {
    let dropped = held
        .lock
        .query_drop(format!("DROP TABLE {}", flip.qualified(&sentinel(id))))
        .await;
    let _ = held.lock.query_drop("UNLOCK TABLES").await;
    dropped.map_err(|e| e.to_string())?;
    let flipped = held.flip.await.map_err(|e| e.to_string())?;
    // The first shard to flip: the others are anywhere between holding and flipped.
    crate::failpoint("seal:one-flipped");
    flipped
}

/// Renames a flipped shard back (inverse renames in reverse order), then takes its INSTANT
/// changes back; returns what could not be taken back (see [`undo_instant`]).
async fn swap_back(flip: &Flip<'_>, options: &SealOptions) -> Result<Vec<String>, String> {
    let inverse: Vec<(String, String)> = flip
        .renames
        .iter()
        .rev()
        .map(|(a, b)| (b.clone(), a.clone()))
        .collect();
    let mut c = flip.conn.conn().await.map_err(|e| e.to_string())?;
    c.query_drop(format!(
        "SET SESSION lock_wait_timeout = {}",
        options.swap_back_timeout.as_secs().max(1)
    ))
    .await
    .map_err(|e| e.to_string())?;
    let mut last = String::new();
    for _ in 0..options.attempts {
        match c.query_drop(flip.rename_sql(&inverse)).await {
            Ok(()) => return Ok(undo_instants(&mut c, flip).await),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(options.backoff).await;
    }
    Err(last)
}

/// A connection for taking INSTANT changes back outside the seal's lock: its ALTERs wait at
/// most a second for a table in use, so that they never hold the application's writes longer.
async fn undo_connection(conn: &ShardConn) -> Result<Conn, String> {
    let mut c = conn.conn().await.map_err(|e| e.to_string())?;
    c.query_drop("SET SESSION lock_wait_timeout = 1")
        .await
        .map_err(|e| e.to_string())?;
    Ok(c)
}

/// A table's definition (AUTO_INCREMENT removed), read on `c`: it may be the lock holder,
/// which alone can read the tables it holds.
async fn definition(c: &mut Conn, database: &str, table: &str) -> Result<Option<String>, String> {
    super::show_definition(c, database, table)
        .await
        .map_err(|e| e.to_string())
}

/// Whether a table's definition `now` is the one an INSTANT change was proven to give (`to`,
/// read off an empty clone made by `CREATE TABLE … LIKE`, which leaves foreign keys out: they
/// are left out of the comparison).
fn reached(now: Option<&str>, to: Option<&str>) -> bool {
    let (Some(now), Some(to)) = (now, to) else {
        return false;
    };
    let Ok(table) = crate::schema::Table::parse_canonical(now) else {
        return false;
    };
    let keys: Vec<&str> = table
        .foreign_keys
        .iter()
        .map(|fk| fk.definition.as_str())
        .collect();
    table.create_sql_without(&keys) == to
}

/// Takes the shard's INSTANT changes back (see [`undo_instant`]); what it could not, as notes.
async fn undo_instants(c: &mut Conn, flip: &Flip<'_>) -> Vec<String> {
    let mut notes = Vec::new();
    for change in &flip.instant {
        let (table, Some(from)) = (&change.table, &change.from) else {
            continue;
        };
        match undo_instant(c, &flip.database, table, from).await {
            Ok(false) => {}
            Ok(true) => notes.push(format!(
                "table `{table}` got back the columns the change dropped, without their values"
            )),
            Err(why) => notes.push(format!("table `{table}` keeps its new definition ({why})")),
        }
    }
    notes
}

/// Takes an INSTANT change back: the statements that lead from the table's definition now to
/// `from`, each with `ALGORITHM=INSTANT`. Most INSTANT changes have an INSTANT inverse (an
/// added column is dropped, a default or comment restored, a renamed column renamed back);
/// some do not (an ENUM value appended cannot be removed in place), and a dropped column comes
/// back without its values (true: a column was added back). What fails is reported, and the
/// gate then finds the table changed.
async fn undo_instant(
    c: &mut Conn,
    database: &str,
    table: &str,
    from: &str,
) -> Result<bool, String> {
    let now = definition(c, database, table).await?.ok_or("it is gone")?;
    if now == from {
        return Ok(false);
    }
    let parse = |sql: &str| {
        crate::schema::Table::parse_canonical(sql)
            .map(|t| BTreeMap::from([(table.to_string(), t)]))
            .map_err(|e| e.to_string())
    };
    let (now, from) = (parse(&now)?, parse(from)?);
    let diff = crate::diff::diff_schemas(&now, &from);
    if let Some(e) = diff.errors.first() {
        return Err(e.message.clone());
    }
    // A renamed column comes back by a rename, with its values; an added one empty.
    let readded = diff
        .changes
        .iter()
        .any(|change| change.statement.contains("ADD COLUMN"));
    for change in &diff.changes {
        let sql = retarget(&change.statement, table, table, Some("INSTANT"))
            .ok_or_else(|| format!("cannot run `{}` in place", change.statement))?;
        let sql = sql.replacen(
            &format!("ALTER TABLE {}", quote(table)),
            &format!("ALTER TABLE {}.{}", quote(database), quote(table)),
            1,
        );
        c.query_drop(&sql)
            .await
            .map_err(|e| format!("`{sql}`: {e}"))?;
    }
    Ok(readded)
}

async fn record_times(
    flips: &[Flip<'_>],
    keyspace: &str,
    id: &str,
    times: &[SystemTime],
) -> Result<(), DeployError> {
    let first = times.iter().min().copied();
    let last = times.iter().max().copied();
    let skew = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).map(|d| d.as_secs_f64() * 1000.0).ok(),
        _ => None,
    };
    for (flip, at) in flips.iter().zip(times) {
        let at = humantime::format_rfc3339_micros(*at).to_string();
        state::record_seal(flip.conn, id, keyspace, Some(&at), skew, None).await?;
    }
    info!(
        deployment = id,
        skew_ms = skew.unwrap_or_default(),
        "sealed"
    );
    Ok(())
}

/// Reads each index of `table` end to end (an index-only count), loading its pages.
async fn warm_indexes(conn: &ShardConn, database: &str, table: &str) -> Result<(), LiveError> {
    let Some(sql) = current_definition(conn, database, table).await? else {
        return Ok(());
    };
    let Ok(definition) = crate::schema::Table::parse_canonical(&sql) else {
        return Ok(());
    };
    for index in definition.indexes.iter().filter(|i| {
        matches!(
            i.kind,
            IndexKind::Primary | IndexKind::Unique | IndexKind::Plain
        )
    }) {
        conn.execute(
            format!("warming index `{}` of `{table}`", index.name),
            format!(
                "SELECT COUNT(*) FROM {}.{} FORCE INDEX ({})",
                quote(database),
                quote(table),
                quote(&index.name)
            ),
        )
        .await?;
    }
    Ok(())
}

/// After the flip: reverse (and any capture) triggers dropped, new tables analyzed, cells
/// sealed, sentinels gone.
async fn finish(fleet: &Fleet, id: &str, options: &SealOptions) -> Result<(), DeployError> {
    let keyspace = fleet.keyspace.name.as_str();
    let database = fleet.keyspace.database.as_str();
    let Some(deployment) = fleet.deployment(Some(id)).await? else {
        return Ok(());
    };
    for conn in &fleet.conns {
        let Some(record) = deployment.shards.iter().find(|s| s.shard == conn.shard) else {
            continue;
        };
        if record.state() == CellState::Sealed {
            continue;
        }
        for cell in &record.cells {
            if cell.strategy == Strategy::Shadow {
                let wrap = |source| DeployError::shadow(conn, &cell.table, source);
                // The reverse triggers now sit on the live table, writing the retention table:
                // they go first, without queueing writes (the retention table must not be
                // dropped while they exist, so the cell is only sealed once they are gone).
                let spec = shadow_spec(&fleet.keyspace, id, cell);
                Shadow::drop_reverse_triggers(conn, &spec, LIVE_TRIGGER_PATIENCE)
                    .await
                    .map_err(wrap)?;
                // Capture triggers on the retention table: a shard flipped by a controller
                // that did not turn them around.
                let retention = crate::naming::artifact(id, "old", &cell.table);
                let mut old = spec.clone();
                old.table = retention.clone();
                Shadow::drop_triggers(conn, &old).await.map_err(wrap)?;
                if let Some(original) = cell.from_sql.as_deref() {
                    Shadow::restore_foreign_keys(
                        conn,
                        &spec,
                        original,
                        &retention,
                        LIVE_TRIGGER_PATIENCE,
                    )
                    .await
                    .map_err(wrap)?;
                }
            }
            if matches!(cell.strategy, Strategy::Shadow | Strategy::Create) {
                conn.execute(
                    "analyzing the new table",
                    format!("ANALYZE TABLE {}.{}", quote(database), quote(&cell.table)),
                )
                .await?;
                if options.warm_indexes {
                    warm_indexes(conn, database, &cell.table).await?;
                }
            }
            state::update_cell(
                conn,
                id,
                keyspace,
                &cell.table,
                &CellUpdate {
                    state: Some(CellState::Sealed),
                    sealed_at: record.sealed_at.as_deref(),
                    ..Default::default()
                },
            )
            .await?;
        }
        drop_sentinels(conn, database, id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(table: &str, strategy: Strategy, statements: &[&str]) -> Cell {
        let statements = statements.iter().map(|s| s.to_string()).collect();
        Cell {
            state: CellState::Ready,
            ..Cell::queued(table, strategy, statements)
        }
    }

    #[test]
    fn keys_added_to_a_shadow_may_not_reference_a_table_the_seal_renames() {
        let cells = [
            cell("customers", Strategy::Shadow, &["ALTER TABLE `customers` MODIFY `id` bigint(20) NOT NULL"]),
            cell(
                "orders",
                Strategy::Shadow,
                &["ALTER TABLE `orders` ADD CONSTRAINT `fk_c` FOREIGN KEY (`c`) REFERENCES `customers` (`id`)"],
            ),
            cell(
                "notes",
                Strategy::Shadow,
                &["ALTER TABLE `notes` ADD CONSTRAINT `fk_s` FOREIGN KEY (`s`) REFERENCES `shops` (`id`)"],
            ),
        ];
        let problems = repointed_foreign_keys("-80", &cells);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("a key added to `orders` references `customers`"));
    }

    #[test]
    fn a_dropped_table_whose_generated_key_names_would_overflow_is_held_at_the_gate() {
        let dropped = |name: &str| {
            let sql = format!(
                "CREATE TABLE `{name}` (\n  `id` int(11) NOT NULL,\n  `p` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `p` (`p`),\n  CONSTRAINT `{name}_ibfk_1` FOREIGN KEY (`p`) REFERENCES `parents` (`id`)\n) ENGINE=InnoDB"
            );
            Cell {
                from_sql: Some(sql),
                ..cell(name, Strategy::Drop, &[])
            }
        };
        let long = "a_table_name_long_enough_to_overflow_after_renaming";
        let problems =
            overlong_key_names("-80", "0123456789ab", &[dropped("short"), dropped(long)]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(&format!("`{long}_ibfk_1`")),
            "{problems:?}"
        );
    }
}
