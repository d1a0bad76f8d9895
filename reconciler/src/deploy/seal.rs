//! The seal: every shard flips to the new schema at the same moment, or none does.
//! Protocol and failure cases: docs/protocols.md ("The gate and the seal").

use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use mysql_async::prelude::*;
use mysql_async::Conn;
use tracing::{info, warn};

use super::shadow::Shadow;
use super::state::{self, Cell, CellState, CellUpdate, Decision, ShardDeployment, Strategy};
use super::{current_definition, retarget, shadow_spec, DeployError, Fleet};
use crate::live::{quote, LiveError, ShardConn};
use crate::schema::IndexKind;

const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

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

/// What one shard does at the flip.
struct Flip<'a> {
    conn: &'a ShardConn,
    database: String,
    /// Tables the lock connection holds, qualified and quoted.
    locks: Vec<String>,
    /// INSTANT ALTERs that run right before the rename.
    instant: Vec<String>,
    /// `(from, to)` renames, flag → sentinel last.
    renames: Vec<(String, String)>,
    /// `(original, shadow)`: auto-increment counters carried over before the flip.
    counters: Vec<(String, String)>,
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

fn plan_flip<'a>(conn: &'a ShardConn, database: &str, id: &str, cells: &[Cell]) -> Flip<'a> {
    let mut flip = Flip {
        conn,
        database: database.to_string(),
        locks: Vec::new(),
        instant: Vec::new(),
        renames: Vec::new(),
        counters: Vec::new(),
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
                flip.instant.extend(cell.statements.iter().filter_map(|s| {
                    retarget(s, &cell.table, &cell.table, Some("INSTANT")).map(|s| {
                        s.replacen(
                            &format!("ALTER TABLE {}", quote(&cell.table)),
                            &format!("ALTER TABLE {qualified}"),
                            1,
                        )
                    })
                }));
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
        gate_check(&pending, database, id).await?;
        decide(&records, keyspace, id).await?;
        crate::failpoint("seal:after-decision");
        for (conn, _) in &pending {
            state::move_cells(conn, id, keyspace, &[CellState::Ready], CellState::Sealing).await?;
        }
        let flips: Vec<Flip> = pending
            .iter()
            .map(|(conn, record)| plan_flip(conn, database, id, &record.cells))
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
            match flip_round(&flips, id, options).await {
                Ok(times) => break times,
                Err(RoundError::Retry(why)) if attempt < options.attempts => {
                    warn!(deployment = id, attempt, %why, "seal round aborted before any shard flipped; retrying");
                    tokio::time::sleep(options.backoff * attempt).await;
                }
                Err(RoundError::Retry(why)) => {
                    for (conn, _) in &pending {
                        state::move_cells(
                            conn,
                            id,
                            keyspace,
                            &[CellState::Sealing],
                            CellState::Ready,
                        )
                        .await?;
                    }
                    return Err(failed(format!("no shard was flipped: {why} (after {attempt} attempts); cells stay ready — run `schemagate seal {id}` to try again")));
                }
                Err(RoundError::Partial(message)) => return Err(failed(message)),
            }
        };
        crate::failpoint("seal:after-flip");
        record_times(&flips, keyspace, id, &times).await?;
    }
    finish(fleet, id, options).await
}

/// Every cell ready, and every table still as the plan found it.
async fn gate_check(
    pending: &[(&ShardConn, &ShardDeployment)],
    database: &str,
    id: &str,
) -> Result<(), DeployError> {
    let mut problems = Vec::new();
    for (conn, record) in pending {
        problems.extend(repointed_foreign_keys(&conn.shard, &record.cells));
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
            if now != cell.from_sql {
                problems.push(format!(
                    "shard {} table `{}` changed since the plan was made (someone altered it underneath); cancel this deployment and plan again",
                    conn.shard, cell.table
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DeployError::Failed {
            id: id.to_string(),
            message: format!("the gate is closed: {}", problems.join("; ")),
        })
    }
}

/// A new table whose foreign key references a table this deployment renames away would follow
/// the rename (InnoDB re-points foreign keys) and end up referencing the retention table.
fn repointed_foreign_keys(shard: &str, cells: &[Cell]) -> Vec<String> {
    let renamed: Vec<&str> = cells
        .iter()
        .filter(|c| matches!(c.strategy, Strategy::Shadow | Strategy::Drop))
        .map(|c| c.table.as_str())
        .collect();
    cells
        .iter()
        .filter(|c| c.strategy == Strategy::Create)
        .filter_map(|c| Some((c, crate::schema::Table::parse_canonical(c.to_sql.as_deref()?).ok()?)))
        .flat_map(|(c, t)| {
            t.foreign_keys
                .into_iter()
                .filter(|fk| fk.referenced_database.is_none() && renamed.contains(&fk.referenced_table.as_str()))
                .map(move |fk| {
                    format!(
                        "shard {shard}: new table `{}` references `{}`, which this deployment replaces by renaming; the foreign key would follow the old table. Deploy the referenced table's change first, then the new table",
                        c.table, fk.referenced_table
                    )
                })
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
        let why = prepared
            .iter()
            .zip(flips)
            .filter_map(|(r, f)| {
                r.as_ref()
                    .err()
                    .map(|e| format!("shard {}: {e}", f.conn.shard))
            })
            .collect::<Vec<_>>()
            .join("; ");
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
    let held: Vec<Held> = prepared.into_iter().filter_map(Result::ok).collect();
    crate::failpoint("seal:while-locked");
    let started = Instant::now();
    let released = join_all(held.into_iter().zip(flips).map(|(h, f)| release(h, f, id))).await;
    info!(
        deployment = id,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "flip released on every shard"
    );

    let failures: Vec<String> = released
        .iter()
        .zip(flips)
        .filter_map(|(r, f)| {
            r.as_ref()
                .err()
                .map(|e| format!("shard {}: {e}", f.conn.shard))
        })
        .collect();
    if failures.is_empty() {
        return Ok(released.into_iter().filter_map(Result::ok).collect());
    }
    let mut report = vec![format!("the flip failed on {}", failures.join("; "))];
    for (result, flip) in released.iter().zip(flips) {
        if result.is_ok() {
            match swap_back(flip, options).await {
                Ok(()) => report.push(format!(
                    "shard {} was swapped back to the old schema",
                    flip.conn.shard
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

    let mut statements = vec!["SET SESSION lock_wait_timeout = 60".to_string()];
    statements.extend(flip.instant.iter().cloned());
    statements.push(flip.rename_sql(&flip.renames));
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
            return Ok(Held { lock, flip: task });
        }
        if task.is_finished() || Instant::now() > deadline {
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

/// Releases a held shard without flipping it.
async fn abandon(mut held: Held, flip: &Flip<'_>, id: &str) {
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

/// Drops the sentinel and unlocks: the queued flip runs first.
async fn release(mut held: Held, flip: &Flip<'_>, id: &str) -> Result<SystemTime, String> {
    let dropped = held
        .lock
        .query_drop(format!("DROP TABLE {}", flip.qualified(&sentinel(id))))
        .await;
    let _ = held.lock.query_drop("UNLOCK TABLES").await;
    dropped.map_err(|e| e.to_string())?;
    held.flip.await.map_err(|e| e.to_string())?
}

/// Renames a flipped shard back (inverse renames in reverse order).
async fn swap_back(flip: &Flip<'_>, options: &SealOptions) -> Result<(), String> {
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
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(options.backoff).await;
    }
    Err(last)
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

/// After the flip: capture triggers dropped, new tables analyzed, cells sealed, sentinels gone.
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
                // The triggers now sit on the retention table; they must not outlive the seal.
                let mut spec = shadow_spec(database, id, cell);
                spec.table = crate::naming::artifact(id, "old", &cell.table);
                Shadow::drop_triggers(conn, &spec)
                    .await
                    .map_err(|source| DeployError::Shadow {
                        shard: conn.shard.clone(),
                        table: cell.table.clone(),
                        source,
                    })?;
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
