//! Online change of one table on one shard through a shadow table, the way
//! pt-online-schema-change does it (no binlog reader):
//!
//! 1. [`Shadow::prepare`] refuses what the method cannot do safely, creates the shadow
//!    (`CREATE TABLE … LIKE` plus the plan's statements) and three AFTER triggers that repeat
//!    every write on the table into the shadow, inside the writer's own transaction.
//! 2. [`Shadow::copy`] copies the rows that existed before, in key order, in chunks sized to
//!    take about `target_chunk_time` each; the caller persists the checkpoint after each chunk.
//! 3. [`Shadow::checksum`] compares both tables chunk by chunk, each chunk in one consistent
//!    snapshot of both.
//! 4. The seal (elsewhere) turns the capture around under its locks ([`CaptureSwap`]: the new
//!    table's writes then flow back into the old one until the seal is finished), swaps the
//!    tables, then [`Shadow::drop_reverse_triggers`]; to cancel, [`Shadow::cleanup`].
//!
//! Every statement names its database: pool connections have no default database.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, IsolationLevel, Row, TxOpts, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sqlparser::tokenizer::Token;

use super::foreign_keys::{self, Carried};
use crate::live::{LiveError, ShardConn};
use crate::schema::sql::{keyword, quote_ident, quote_string};
use crate::schema::{Column, ForeignKey, IndexKind, Table};

const FIRST_CHUNK: u64 = 1_000;
const MIN_CHUNK: u64 = 10;
const MAX_CHUNK: u64 = 100_000;
/// The checksum reads but never writes, so its chunks get the copy's default time budget.
const CHECKSUM_CHUNK_TIME: Duration = Duration::from_millis(500);
const THROTTLE_PAUSE: Duration = Duration::from_millis(500);
/// A chunk chosen as a deadlock victim, or timed out waiting for a row lock, is retried: both
/// roll back the whole statement, so running it again is safe.
const CHUNK_ATTEMPTS: u32 = 10;
/// DDL waits at most `lock_wait_timeout` (see `live`) for its metadata lock, then gives up so
/// that it never queues the application behind it for long; a few tries ride out a busy moment.
const DDL_ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// A DDL that needs a table the application uses is tried, never queued for, for this long at
/// a time (see `ddl_tried`)…
const MDL_TRY_BUDGET: Duration = Duration::from_millis(100);
/// …and, by default, given up after this long.
const MDL_PATIENCE: Duration = Duration::from_secs(30);
/// Longest value quoted in a message.
const SHOWN_VALUE_CHARS: usize = 60;

const ER_DUP_ENTRY: u16 = 1062;
const ER_NO_SUCH_TABLE: u16 = 1146;
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
/// Warnings a chunk may raise that say nothing about its data: deprecated syntax, and a
/// statement with LIMIT being unsafe for statement-based binary logging.
const BENIGN_WARNINGS: [u16; 2] = [1287, 1592];

/// What to change, given by the caller; every name in it is the caller's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowSpec {
    pub database: String,
    /// The live table.
    pub table: String,
    /// The shadow table's name (an artifact name).
    pub shadow: String,
    /// Capture triggers are `{prefix}_ins`, `{prefix}_upd` and `{prefix}_del`; the seal's
    /// reverse triggers `{prefix}_rin`, `{prefix}_rup` and `{prefix}_rde` (the caller keeps
    /// them within 64 characters).
    pub trigger_prefix: String,
    /// The plan's statements for this table, each ``ALTER TABLE `table` …``; they are run on
    /// the shadow.
    pub statements: Vec<String>,
    /// (old column, new column): the new column gets the old one's values.
    pub renames: Vec<(String, String)>,
    /// Build the shadow without its plain secondary indexes and add them, sorted in one pass,
    /// once the rows are in: about half the copy's work is maintaining those indexes row by
    /// row. The `ALTER` that adds them reaches replicas as one statement, which they replay
    /// for as long as it took; leave this off where replicas must not fall behind.
    #[serde(default)]
    pub defer_indexes: bool,
    /// Give the shadow the table's foreign keys (after the plan) under temporary names,
    /// instead of refusing a table that has any; see [`super::foreign_keys`]. Tables that
    /// other tables reference are refused either way.
    #[serde(default)]
    pub carry_foreign_keys: bool,
}

impl ShadowSpec {
    /// The triggers, in the order they are created: delete, update, insert. (They appear
    /// together under LOCK TABLES; were one missing, a missing insert trigger is the harmless
    /// one, as the copy brings inserted rows anyway.)
    fn triggers(&self) -> [(String, &'static str); 3] {
        [
            (format!("{}_del", self.trigger_prefix), "DELETE"),
            (format!("{}_upd", self.trigger_prefix), "UPDATE"),
            (format!("{}_ins", self.trigger_prefix), "INSERT"),
        ]
    }

    /// The reverse triggers (new table → old table), in the order they are created.
    fn reverse_triggers(&self) -> [(String, &'static str); 3] {
        [
            (format!("{}_rde", self.trigger_prefix), "DELETE"),
            (format!("{}_rup", self.trigger_prefix), "UPDATE"),
            (format!("{}_rin", self.trigger_prefix), "INSERT"),
        ]
    }

    fn table_name(&self) -> String {
        qualify(&self.database, &self.table)
    }

    fn shadow_name(&self) -> String {
        qualify(&self.database, &self.shadow)
    }
}

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Chunks are resized to take about this long (each chunk holds row locks while it runs).
    pub target_chunk_time: Duration,
    /// Before each chunk, wait while the server's `Threads_running` is above this (0: never).
    pub max_threads_running: u64,
    /// Replicas of the shard's primary: before each chunk, wait while any lags more than
    /// `max_replica_lag` or does not replicate at all.
    pub replicas: Vec<ShardConn>,
    pub max_replica_lag: Duration,
    /// Connections copying at once. Chunks are still handed out in key order (each is
    /// locked before the next one's bounds are known); what overlaps is their copying. One by
    /// default: on the 2-CPU benchmark machine a second one made the copy slower (it competes
    /// with the checksum and the server's own threads); servers with cores to spare may gain.
    pub threads: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            // Each chunk holds share locks that application writes to those rows (through the
            // triggers) wait for, and on a busy server a chunk runs over its target (the
            // checksum runs alongside): 50 ms kept every write of the seal benchmark under
            // 150 ms, where 100 ms let some wait 270–300 ms; pt-osc's 0.5 s stalls writers longer.
            target_chunk_time: Duration::from_millis(50),
            max_threads_running: 50,
            replicas: Vec::new(),
            max_replica_lag: Duration::from_secs(5),
            threads: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Rows this call of [`Shadow::copy`] went through (some the triggers had already put in
    /// the shadow).
    pub rows_copied: u64,
    /// The server's estimate of the table's row count, read when the copy started.
    pub rows_estimated: u64,
    /// The last key copied, a JSON array with one element per key column (numbers, strings,
    /// binary columns as hex). Every row with a key up to it is in the shadow.
    pub checkpoint: Option<String>,
    /// Rows asked for in the chunk just copied; a chunk that gets fewer is the last.
    pub chunk_size: u64,
    pub rows_per_sec: f64,
}

/// Every message names the table as `` `database`.`table` ``; the shard is the caller's to add.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    #[error("{table} cannot be changed through a shadow table: {reason}")]
    Refused { table: String, reason: String },
    #[error("{table}: a statement of the plan failed on the shadow table `{shadow}`: {message} (statement: {statement}); the shadow was dropped: plan again against this table")]
    Statement {
        table: String,
        shadow: String,
        statement: String,
        message: String,
    },
    #[error("{table}: copying rows into the shadow table `{shadow}` changed them: {warning}; the new definition cannot hold the existing data: cancel the deployment (which drops the shadow), fix the data or the change, and deploy again")]
    Lossy {
        table: String,
        shadow: String,
        warning: String,
    },
    #[error("{table}: the shadow table `{shadow}` differs from the table for keys {range}: {detail}{}; nothing was switched: cancel the deployment (which drops the shadow and triggers), fix the cause, and deploy again", cause_suffix(.cause))]
    Mismatch {
        table: String,
        shadow: String,
        range: String,
        detail: String,
        cause: Option<String>,
    },
    #[error("{table}: checkpoint {checkpoint} cannot be used: {reason}; resume with the checkpoint the last copy of this shadow reported, or copy again from the start (no checkpoint)")]
    BadCheckpoint {
        table: String,
        checkpoint: String,
        reason: String,
    },
    #[error(transparent)]
    Live(#[from] LiveError),
}

fn cause_suffix(cause: &Option<String>) -> String {
    match cause {
        Some(cause) => format!("; likely cause: {cause}"),
        None => String::new(),
    }
}

/// How a key column's values are read, written into a checkpoint and bound again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// Bound as integers: a string compared with an integer column is compared as a double,
    /// which loses precision past 2^53.
    Int,
    Float,
    /// Bound through `CAST(? AS DECIMAL(p,s))`, for the same reason as `Int`.
    Decimal,
    Text,
    /// Read as `HEX()`, bound through `UNHEX(?)`: checkpoints stay valid UTF-8 JSON.
    Binary,
    /// Date, time, datetime, timestamp: strings the server converts to the column's type.
    Temporal,
    /// ENUM, read and bound as its index (`col + 0`): an ENUM sorts by index, and compared
    /// with an integer it compares the index (with a string it would compare the text, which
    /// is not the index order).
    Enum,
}

#[derive(Debug, Clone)]
struct KeyColumn {
    name: String,
    kind: KeyKind,
    /// `DECIMAL(p,s)` for decimal columns.
    cast: Option<String>,
}

impl KeyColumn {
    fn select_expr(&self) -> String {
        match self.kind {
            KeyKind::Binary => format!("HEX({})", quote_ident(&self.name)),
            _ => self.raw_expr(),
        }
    }

    /// The value a chunk captures for its last key (binary as is, read back through HEX).
    fn raw_expr(&self) -> String {
        match self.kind {
            KeyKind::Enum => format!("({} + 0)", quote_ident(&self.name)),
            _ => quote_ident(&self.name),
        }
    }

    fn placeholder(&self) -> String {
        match (self.kind, &self.cast) {
            (KeyKind::Binary, _) => "UNHEX(?)".to_string(),
            (KeyKind::Decimal, Some(cast)) => format!("CAST(? AS {cast})"),
            _ => "?".to_string(),
        }
    }
}

/// A key shared by both tables: unique, NOT NULL, same columns and types in both.
#[derive(Debug, Clone)]
struct Key {
    columns: Vec<KeyColumn>,
    /// Its index in the table and in the shadow.
    index: String,
    shadow_index: String,
    /// False when the shadow's unique index has more columns after the key's (e.g. the
    /// primary key grows from `(id)` to `(id, i)`): the shadow then does not reject a second
    /// row with the same key, so the triggers remove a row by its key before writing it.
    shadow_exact: bool,
}

/// Data a new definition may not accept, checked before anything is copied and again to
/// explain a checksum mismatch.
#[derive(Debug, Clone)]
enum DataCheck {
    Unique {
        index: String,
        /// Columns of the table with their prefix lengths.
        parts: Vec<(String, Option<u32>)>,
    },
    NotNull {
        column: String,
    },
    Fits {
        column: String,
        /// SQL condition true for the rows whose value does not fit.
        condition: String,
        new_type: String,
    },
}

/// A column the checksum compares, under its name in the table and in the shadow.
#[derive(Debug, Clone)]
struct Compared {
    from: String,
    to: String,
    /// Its text may hold any byte (strings, binary, BIT, ENUM, JSON…): hashed as bytes behind
    /// their length. Numbers and temporal values print without commas and go in as they print.
    bytes: bool,
    nullable: bool,
}

impl Compared {
    /// The column's part of the row text: unambiguous, since `CONCAT_WS` skips NULLs and each
    /// NULL or byte string is announced by a marker (`-1` or its length) first.
    fn expr(&self, side: &Side) -> String {
        let name = quote_ident(match side {
            Side::Table => &self.from,
            Side::Shadow => &self.to,
        });
        match (self.bytes, self.nullable) {
            (true, _) => format!("COALESCE(LENGTH({name}), -1), CAST({name} AS BINARY)"),
            (false, true) => format!("ISNULL({name}), {name}"),
            (false, false) => name,
        }
    }
}

/// Types whose text never holds a comma.
fn prints_plain(column: &Column) -> bool {
    matches!(
        column.data_type.base.as_str(),
        "tinyint"
            | "smallint"
            | "mediumint"
            | "int"
            | "integer"
            | "bigint"
            | "decimal"
            | "numeric"
            | "float"
            | "double"
            | "date"
            | "time"
            | "datetime"
            | "timestamp"
            | "year"
    )
}

/// What [`Shadow::prepare`] worked out from the two definitions.
#[derive(Debug, Clone)]
struct Layout {
    key: Key,
    /// (column of the table, column of the shadow): what the copy and the triggers write.
    columns: Vec<(String, String)>,
    /// The subset the checksum compares.
    compared: Vec<Compared>,
    checks: Vec<DataCheck>,
    /// Columns (of the table) whose values the triggers move between time zones, see
    /// [`ZoneShift`].
    shifts: Vec<(String, ZoneShift)>,
}

/// A value whose meaning depends on the session's `time_zone` (a TIMESTAMP read as text or
/// a date, or a DATETIME/DATE stored into a TIMESTAMP) is converted by the copy in the copy's
/// session, whose zone is the server's global one, as a native ALTER would convert it in its
/// session. A trigger runs in the writer's session, whatever zone that has: it moves the value
/// between the two zones first, so that rows written by the application convert the same way
/// as the copied ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum ZoneShift {
    /// TIMESTAMP to another type: read in the writer's zone, wanted in the global one.
    FromTimestamp,
    /// DATETIME or DATE to TIMESTAMP: meant in the global zone, stored from the writer's.
    ToTimestamp,
}

impl ZoneShift {
    /// The same conversion read the other way (new table to old table).
    fn inverse(self) -> ZoneShift {
        match self {
            ZoneShift::FromTimestamp => ZoneShift::ToTimestamp,
            ZoneShift::ToTimestamp => ZoneShift::FromTimestamp,
        }
    }

    /// `value` moved between the writer's zone and the global one.
    fn apply(self, value: &str) -> String {
        let (from, to) = match self {
            ZoneShift::FromTimestamp => ("@@session.time_zone", "@@global.time_zone"),
            ZoneShift::ToTimestamp => ("@@global.time_zone", "@@session.time_zone"),
        };
        format!("COALESCE(CONVERT_TZ({value}, {from}, {to}), {value})")
    }
}

/// What [`Shadow::capture`] found.
#[derive(Debug, Clone)]
pub enum Capture {
    /// The shadow and the three capture triggers exist exactly as the spec makes them, and the
    /// shadow has no triggers of its own: every write on the table reaches the shadow.
    Intact(Box<Shadow>),
    /// Why the shadow cannot be trusted to follow the table.
    Broken(String),
}

/// The statements with which the seal's lock holder turns the capture around, and back, while
/// it holds both tables write-locked (see docs/protocols.md, "The gate and the seal").
///
/// The capture triggers and the reverse ones must never exist together: before the flip a
/// write on the table would reach the shadow and, through the reverse trigger, the retention
/// table, which does not exist yet (MariaDB opens every table a trigger names, transitively,
/// before the statement runs); after it, a reverse write into the old table would fire the
/// capture triggers left there, which name a shadow that is gone. Either way the application's
/// write would fail. So each direction first drops the other's triggers and only then creates
/// its own; run as one multi-statement, a failure stops before any trigger is created, and a
/// lock holder that dies half way leaves a capture that [`Shadow::capture`] reports broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSwap {
    /// Capture triggers dropped, reverse triggers created on the shadow.
    pub to_reverse: Vec<String>,
    /// Reverse triggers dropped, capture triggers created again on the table.
    pub to_forward: Vec<String>,
}

/// A prepared shadow table: the shadow and its triggers exist.
#[derive(Debug, Clone)]
pub struct Shadow {
    spec: ShadowSpec,
    layout: Layout,
    /// The foreign keys the shadow carries (only with `carry_foreign_keys`).
    keys: Vec<Carried>,
    resumed: bool,
}

/// A chunk's rows, share-locked by its transaction: the range `(lo, hi]` (`hi` is `None` only
/// when no row is left), how many rows it held when locked, and whether it is the last chunk.
struct Locked {
    hi: Option<Vec<Json>>,
    rows: u64,
    last: bool,
}

/// How a chunk's INSERT … SELECT reads the rows its first statement locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// `READ COMMITTED`, no lock clause: a plain read, checked against the number of rows
    /// locked (see [`Shadow::try_copy`]). It saves a second round of lock checks, about 8% of
    /// the copy's time on the benchmark.
    Committed,
    /// `LOCK IN SHARE MODE` again, under the session's isolation level: where the binary log
    /// is statement-based, InnoDB refuses to write under `READ COMMITTED`.
    Locking,
}

/// What one chunk of the copy did.
struct Chunk {
    /// Rows read (some the triggers had already put in the shadow).
    read: u64,
    /// The last key copied, if any row was.
    last: Option<Vec<Json>>,
}

/// Where the copy stands: the next chunk's lower bound and size. A worker holds it while it
/// locks its chunk's rows, which is when the next chunk's lower bound becomes known.
struct Cursor {
    lo: Option<Vec<Json>>,
    /// The next chunk's number (chunks are numbered in key order).
    next: u64,
    size: u64,
    end: bool,
}

/// Chunks finish out of order; the checkpoint only moves past a chunk once every chunk
/// below it has finished.
struct Tally<F> {
    progress: Progress,
    /// The last key of the finished prefix.
    last: Option<Vec<Json>>,
    /// Finished chunks above the prefix: number → last key.
    finished: HashMap<u64, Option<Vec<Json>>>,
    /// The first chunk not in the prefix.
    contiguous: u64,
    started: Instant,
    on_chunk: F,
}

impl<F: FnMut(&Progress)> Tally<F> {
    fn finish(&mut self, seq: u64, chunk: Chunk, size: u64) {
        self.finished.insert(seq, chunk.last);
        while let Some(last) = self.finished.remove(&self.contiguous) {
            if last.is_some() {
                self.last = last;
            }
            self.contiguous += 1;
        }
        let p = &mut self.progress;
        p.rows_copied += chunk.read;
        p.chunk_size = size;
        p.rows_per_sec = p.rows_copied as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        p.checkpoint = self
            .last
            .as_ref()
            .map(|k| Json::Array(k.clone()).to_string());
        (self.on_chunk)(p);
    }
}

/// What the copy's workers share.
struct Work<'a, F> {
    conn: &'a ShardConn,
    options: &'a CopyOptions,
    cursor: &'a tokio::sync::Mutex<Cursor>,
    tally: &'a std::cell::RefCell<Tally<F>>,
    ranges: &'a tokio::sync::mpsc::UnboundedSender<Range>,
}

enum ChunkFailure {
    Sql(mysql_async::Error),
    Shadow(ShadowError),
    /// The chunk's plain read took in rows it had not locked (see [`Shadow::try_copy`]).
    Moved,
}

impl From<mysql_async::Error> for ChunkFailure {
    fn from(e: mysql_async::Error) -> Self {
        ChunkFailure::Sql(e)
    }
}

impl From<ShadowError> for ChunkFailure {
    fn from(e: ShadowError) -> Self {
        ChunkFailure::Shadow(e)
    }
}

/// Keys `(lo, hi]` (`None`: unbounded) for the checksum; `split` ranges are cut into chunks
/// sized by time, the others are checked in one snapshot.
struct Range {
    lo: Option<Vec<Json>>,
    hi: Option<Vec<Json>>,
    split: bool,
}

enum Side {
    Table,
    Shadow,
}

impl Shadow {
    /// Refuses up front, with the reason and nothing left behind, a table that has no shared
    /// key (a PRIMARY KEY, or a UNIQUE key over NOT NULL columns, whose columns stay unchanged
    /// in the new definition), takes part in foreign keys, or already has triggers; and data
    /// the new definition would silently drop or change (duplicates under a new UNIQUE key,
    /// NULLs in a column becoming NOT NULL, values too long or too large for a narrower type).
    /// Those data checks scan the table once each.
    ///
    /// Then creates the shadow and the triggers. If they already exist for this very spec and
    /// still capture every write (a resume after a crash; see [`Shadow::capture`]) they are
    /// reused, and [`Shadow::resumed`] is true; otherwise leftovers are dropped (a shadow a
    /// seal left without capture, with its reverse triggers, included) and everything is
    /// created again, and a saved checkpoint must be discarded (the checksum would catch the
    /// rows it skipped).
    pub async fn prepare(conn: &ShardConn, spec: ShadowSpec) -> Result<Shadow, ShadowError> {
        validate_spec(&spec)?;
        let mut c = conn.conn().await?;
        let original = show_create(&mut c, conn, &spec.database, &spec.table)
            .await?
            .ok_or_else(|| {
                refused(
                    &spec,
                    "the table does not exist (was it renamed or dropped since the plan?)",
                )
            })?;
        refuse_foreign_keys(&mut c, conn, &spec, &original).await?;
        let keys = carried_keys(&spec, &original)?;
        let existing = triggers_on(&mut c, conn, &spec.database, &spec.table).await?;
        let ours: HashSet<String> = spec.triggers().into_iter().map(|(name, _)| name).collect();
        let foreign: Vec<&str> = existing
            .iter()
            .filter(|t| !ours.contains(&t.name))
            .map(|t| t.name.as_str())
            .collect();
        if !foreign.is_empty() {
            return Err(refused(
                &spec,
                format!(
                    "it has triggers ({}); the shadow's triggers would run alongside them, and a \
                     trigger that writes this table again would be copied twice: change it with \
                     a native ALTER, or drop those triggers first",
                    foreign.join(", ")
                ),
            ));
        }
        if candidate_keys(&original).is_empty() {
            return Err(refused(
                &spec,
                "it has no PRIMARY KEY and no UNIQUE key over NOT NULL columns (of a type the \
                 copy can range over); rows cannot be found again without one: add a primary \
                 key first",
            ));
        }

        let ours_existing: Vec<&Trigger> =
            existing.iter().filter(|t| ours.contains(&t.name)).collect();
        let shadow_table = show_create(&mut c, conn, &spec.database, &spec.shadow).await?;
        let on_shadow = match shadow_table {
            Some(_) => triggers_on(&mut c, conn, &spec.database, &spec.shadow).await?,
            None => Vec::new(),
        };
        let capture = check_capture(
            &spec,
            &original,
            shadow_table.as_ref(),
            &existing,
            &on_shadow,
        );
        match capture {
            Capture::Intact(shadow) => return Ok(*shadow),
            Capture::Broken(why) if shadow_table.is_some() => {
                tracing::info!(table = %spec.table, shadow = %spec.shadow, %why, "the existing shadow cannot be resumed");
            }
            Capture::Broken(_) => {}
        }
        if shadow_table.is_some() || !ours_existing.is_empty() {
            // Triggers exist only after the shadow is complete, and the copy only after all
            // three: leftovers of an interrupted prepare or of another spec hold nothing that
            // cannot be made again.
            tracing::info!(table = %spec.table, shadow = %spec.shadow, "dropping the leftovers of an earlier shadow");
            cleanup_with(&mut c, conn, &spec).await?;
        }

        match Shadow::create(&mut c, conn, &spec, &original, keys).await {
            Ok(shadow) => Ok(shadow),
            Err(e) => {
                // Leave nothing behind; the first error is the one to report.
                if let Err(cleanup) = cleanup_with(&mut c, conn, &spec).await {
                    tracing::warn!(error = %cleanup, "dropping the shadow after a failed prepare");
                }
                Err(e)
            }
        }
    }

    async fn create(
        c: &mut Conn,
        conn: &ShardConn,
        spec: &ShadowSpec,
        original: &Table,
        keys: Vec<Carried>,
    ) -> Result<Shadow, ShadowError> {
        let shadow_name = spec.shadow_name();
        ddl(
            c,
            conn,
            &format!("CREATE TABLE {shadow_name} LIKE {}", spec.table_name()),
            "creating the shadow table",
        )
        .await?;
        // LIKE starts the counter at 1: the shadow would hand out the ids of deleted tail rows
        // again. It starts where the table is (the statements may still set their own).
        let next: Option<Option<u64>> = c
            .exec_first(
                "SELECT AUTO_INCREMENT FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&spec.database, &spec.table),
            )
            .await
            .map_err(|e| conn.query_error("reading the table's AUTO_INCREMENT", e))?;
        if let Some(Some(next @ 2..)) = next {
            c.query_drop(format!("ALTER TABLE {shadow_name} AUTO_INCREMENT = {next}"))
                .await
                .map_err(|e| conn.query_error("setting the shadow's AUTO_INCREMENT", e))?;
        }
        let statements = match spec.carry_foreign_keys {
            // The shadow has none of the table's foreign keys to drop; the ones to add it gets
            // under temporary names below.
            true => {
                foreign_keys::split(&spec.statements)
                    .map_err(|r| refused(spec, r))?
                    .statements
            }
            false => spec.statements.clone(),
        };
        for statement in &statements {
            let rewritten = rewrite_alter(statement, &spec.table, &shadow_name)
                .ok_or_else(|| refused(spec, "a statement does not start with ALTER TABLE"))?;
            if let Err(e) = c.query_drop(&rewritten).await {
                return Err(match e {
                    mysql_async::Error::Server(e) => ShadowError::Statement {
                        table: spec.table_name(),
                        shadow: spec.shadow.clone(),
                        statement: statement.clone(),
                        message: e.message,
                    },
                    e => conn.query_error("changing the shadow table", e).into(),
                });
            }
        }
        if !keys.is_empty() {
            // Checks off: the shadow is empty, and this way the keys are added in place.
            let adds: Vec<String> = keys
                .iter()
                .map(|k| format!("ADD {}", k.temporary_definition()))
                .collect();
            let added = async {
                c.query_drop("SET SESSION foreign_key_checks = 0").await?;
                let added = c
                    .query_drop(format!("ALTER TABLE {shadow_name} {}", adds.join(", ")))
                    .await;
                c.query_drop("SET SESSION foreign_key_checks = 1").await?;
                added
            }
            .await;
            if let Err(e) = added {
                return Err(match e {
                    mysql_async::Error::Server(e) => refused(
                        spec,
                        format!(
                            "the shadow cannot take the table's foreign keys: {}",
                            e.message
                        ),
                    ),
                    e => conn
                        .query_error("adding the shadow's foreign keys", e)
                        .into(),
                });
            }
        }
        let shadow_table = show_create(c, conn, &spec.database, &spec.shadow)
            .await?
            .ok_or_else(|| {
                refused(
                    spec,
                    "the shadow table is gone after the plan's statements (do they rename the \
                     table?)",
                )
            })?;
        if !spec.carry_foreign_keys && !shadow_table.foreign_keys.is_empty() {
            return Err(refused(
                spec,
                "the change adds foreign keys; the shadow method cannot carry them: add them \
                 in a separate, native ALTER",
            ));
        }
        let layout = layout(spec, original, &shadow_table).map_err(|r| refused(spec, r))?;
        // A foreign key needs an index on its columns: were that index dropped, the server
        // would refuse, or make one of its own.
        if spec.defer_indexes && keys.is_empty() {
            defer_indexes(c, conn, spec, &shadow_table).await?;
        }
        let shadow = Shadow {
            spec: spec.clone(),
            layout,
            keys,
            resumed: false,
        };
        if let Some(reason) = shadow.first_failed_check(c, conn).await? {
            return Err(refused(spec, reason));
        }
        if let Some(reason) = shadow.first_orphan(c, conn, Side::Table).await? {
            return Err(refused(spec, reason));
        }
        // A trigger runs with the sql_mode it was created with.
        set_copy_mode(c, conn).await?;
        // The three triggers appear at once, under LOCK TABLES. Added one by one, MariaDB
        // 10.11 fails server-side prepared statements that run in between with "Table
        // '<shadow>' doesn't exist" (MDEV-26048; reproduced by this crate's tests).
        ddl_tried(
            c,
            conn,
            &format!(
                "LOCK TABLES {} WRITE, {} WRITE",
                spec.table_name(),
                shadow_name
            ),
            "locking the table to add the triggers (the user needs LOCK TABLES)",
            MDL_PATIENCE,
        )
        .await?;
        let created = shadow.create_triggers(c, conn).await;
        let unlocked = c
            .query_drop("UNLOCK TABLES")
            .await
            .map_err(|e| conn.query_error("unlocking the table", e));
        created?;
        unlocked?;
        Ok(shadow)
    }

    async fn create_triggers(&self, c: &mut Conn, conn: &ShardConn) -> Result<(), LiveError> {
        for (name, event, body) in self.trigger_bodies() {
            let sql = format!(
                "CREATE TRIGGER {} AFTER {event} ON {} FOR EACH ROW {body}",
                qualify(&self.spec.database, &name),
                self.spec.table_name()
            );
            c.query_drop(sql)
                .await
                .map_err(|e| conn.query_error(format!("creating trigger `{name}`"), e))?;
        }
        Ok(())
    }

    /// Copies the rows with a key above `checkpoint` (all rows for `None`) in key order, and
    /// verifies them as it goes: a second connection checksums each chunk once it is committed
    /// (after a resume, everything up to the checkpoint first), then the rows beyond the last
    /// chunk. Indexes left out of the shadow (see [`ShadowSpec::defer_indexes`]) are added at
    /// the end. Returns once the shadow is ready to be swapped in.
    ///
    /// `on_chunk` runs after each committed chunk; persist its checkpoint to resume later.
    /// Dropping the returned future (or a crash) at any point loses nothing: resume from the
    /// last checkpoint reported.
    pub async fn copy(
        &self,
        conn: &ShardConn,
        checkpoint: Option<String>,
        options: &CopyOptions,
        on_chunk: impl FnMut(&Progress),
    ) -> Result<Progress, ShadowError> {
        let lo = match &checkpoint {
            Some(text) => Some(self.parse_checkpoint(text)?),
            None => None,
        };
        let (ranges, copied) = tokio::sync::mpsc::unbounded_channel();
        if let Some(done) = &lo {
            let _ = ranges.send(Range {
                lo: None,
                hi: Some(done.clone()),
                split: true,
            });
        }
        let copying = self.copy_rows(conn, lo, checkpoint, options, on_chunk, ranges);
        let verifying = self.verify(conn, copied, options.max_threads_running);
        let (progress, ()) = tokio::try_join!(copying, verifying)?;
        Ok(progress)
    }

    async fn copy_rows(
        &self,
        conn: &ShardConn,
        lo: Option<Vec<Json>>,
        checkpoint: Option<String>,
        options: &CopyOptions,
        on_chunk: impl FnMut(&Progress),
        ranges: tokio::sync::mpsc::UnboundedSender<Range>,
    ) -> Result<Progress, ShadowError> {
        let mut c = conn.conn().await?;
        let progress = Progress {
            rows_copied: 0,
            rows_estimated: self.estimate_rows(&mut c, conn).await?,
            checkpoint,
            chunk_size: FIRST_CHUNK,
            rows_per_sec: 0.0,
        };
        let cursor = tokio::sync::Mutex::new(Cursor {
            lo: lo.clone(),
            next: 0,
            size: FIRST_CHUNK,
            end: false,
        });
        let tally = std::cell::RefCell::new(Tally {
            progress,
            last: lo,
            finished: HashMap::new(),
            contiguous: 0,
            started: Instant::now(),
            on_chunk,
        });
        let work = Work {
            conn,
            options,
            cursor: &cursor,
            tally: &tally,
            ranges: &ranges,
        };
        futures::future::try_join_all((0..options.threads.max(1)).map(|_| self.copy_worker(&work)))
            .await?;
        let Tally { progress, last, .. } = tally.into_inner();
        // Rows inserted after the last chunk are the triggers' to copy; they are checked too.
        let _ = ranges.send(Range {
            lo: last,
            hi: None,
            split: true,
        });
        drop(ranges);
        self.add_deferred_indexes(&mut c, conn).await?;
        if let Some(reason) = self.first_orphan(&mut c, conn, Side::Shadow).await? {
            return Err(refused(&self.spec, reason));
        }
        Ok(progress)
    }

    /// Takes the next chunk from the cursor, locks its rows (so the next chunk's lower bound
    /// is known and the cursor can be let go), copies it, and reports it; until the end.
    async fn copy_worker(&self, work: &Work<'_, impl FnMut(&Progress)>) -> Result<(), ShadowError> {
        let conn = work.conn;
        let mut c = conn.conn().await?;
        set_copy_mode(&mut c, conn).await?;
        c.query_drop("SET SESSION time_zone = @@global.time_zone")
            .await
            .map_err(|e| conn.query_error("setting the copy's time zone", e))?;
        if !self.keys.is_empty() {
            // The rows come from a table that holds them under its own keys (new keys are
            // checked apart), and a chunk checking parents would take their row locks: a
            // cascading delete of a parent, which locks the parent first and the children
            // after, would then deadlock with it.
            c.query_drop("SET SESSION foreign_key_checks = 0")
                .await
                .map_err(|e| conn.query_error("setting foreign_key_checks", e))?;
        }
        // Whether a duplicate under another unique key of the shadow was found harmless.
        let mut duplicates_explained = false;
        let reads = read_committed(&mut c, conn).await?;
        loop {
            let mut cursor = work.cursor.lock().await;
            if cursor.end {
                return Ok(());
            }
            throttle(&mut c, conn, work.options.max_threads_running).await?;
            wait_for_replicas(conn, work.options).await?;
            let started = Instant::now();
            let (lo, size, seq) = (cursor.lo.clone(), cursor.size, cursor.next);
            let locked = self.lock_rows(&mut c, conn, lo.as_deref(), size).await?;
            cursor.next += 1;
            cursor.end = locked.last;
            if let Some(hi) = &locked.hi {
                cursor.lo = Some(hi.clone());
            }
            drop(cursor);
            let chunk = self
                .copy_locked(
                    &mut c,
                    conn,
                    lo.as_deref(),
                    locked,
                    reads,
                    &mut duplicates_explained,
                )
                .await?;
            let elapsed = started.elapsed();
            {
                let mut cursor = work.cursor.lock().await;
                cursor.size = next_chunk_size(size, elapsed, work.options.target_chunk_time);
            }
            if let Some(last) = &chunk.last {
                // The verifier only stops early on an error, which the caller gets from it.
                let _ = work.ranges.send(Range {
                    lo,
                    hi: Some(last.clone()),
                    split: false,
                });
            }
            tracing::debug!(table = %self.spec.table, read = chunk.read, size, elapsed_ms = elapsed.as_millis() as u64, "copied a chunk");
            work.tally.borrow_mut().finish(seq, chunk, size);
        }
    }

    /// Starts a chunk's transaction and locks the next `size` rows above `lo` (all of them, at
    /// the end of the table); returns their bounds and number. A lost deadlock or a lock wait
    /// timeout rolls it back and it is tried again.
    async fn lock_rows(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        lo: Option<&[Json]>,
        size: u64,
    ) -> Result<Locked, ShadowError> {
        let mut attempt = 1;
        loop {
            let result = async {
                c.query_drop("START TRANSACTION").await?;
                let mut params = self.range_params(lo, None);
                params.push(Value::UInt(size.saturating_sub(1)));
                let hi: Option<Row> = c.exec_first(self.lock_sql(lo.is_some()), params).await?;
                if let Some(row) = hi {
                    let hi = self.key_from_row(&row, 0)?;
                    return Ok::<_, ChunkFailure>(Locked {
                        hi: Some(hi),
                        rows: size,
                        last: false,
                    });
                }
                // The end of the table: the chunk ends at its last row, which is locked too, so
                // that rows inserted above it meanwhile are the triggers' alone.
                let top: Option<Row> = c
                    .exec_first(self.top_sql(lo.is_some()), self.range_params(lo, None))
                    .await?;
                let Some(top) = top else {
                    return Ok(Locked {
                        hi: None,
                        rows: 0,
                        last: true,
                    });
                };
                let hi = self.key_from_row(&top, 0)?;
                let rows = self.relock(c, lo, &hi).await?;
                Ok(Locked {
                    hi: Some(hi),
                    rows,
                    last: true,
                })
            }
            .await;
            match self.retry(c, conn, result, &mut attempt).await? {
                Some(locked) => return Ok(locked),
                None => continue,
            }
        }
    }

    /// Locks the rows of `(lo, hi]` (again) and counts them.
    async fn relock(
        &self,
        c: &mut Conn,
        lo: Option<&[Json]>,
        hi: &[Json],
    ) -> Result<u64, ChunkFailure> {
        let count: Option<u64> = c
            .exec_first(
                self.relock_sql(lo.is_some(), true),
                self.range_params(lo, Some(hi)),
            )
            .await?;
        Ok(count.unwrap_or(0))
    }

    /// Copies the rows of a chunk whose transaction holds them (see [`Shadow::lock_rows`])
    /// and commits. A retry after a lost deadlock locks them again first.
    async fn copy_locked(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        lo: Option<&[Json]>,
        mut locked: Locked,
        reads: Reads,
        duplicates_explained: &mut bool,
    ) -> Result<Chunk, ShadowError> {
        let Some(hi) = locked.hi.clone() else {
            c.query_drop("COMMIT")
                .await
                .map_err(|e| conn.query_error("ending an empty chunk", e))?;
            return Ok(Chunk {
                read: 0,
                last: None,
            });
        };
        let mut attempt = 1;
        loop {
            let result = async {
                // A retry reads with locks: under a steady stream of inserts into the range, a
                // plain read would keep finding rows it did not lock.
                let reads = match attempt {
                    1 => reads,
                    _ => Reads::Locking,
                };
                if attempt > 1 {
                    c.query_drop("START TRANSACTION").await?;
                    locked.rows = self.relock(c, lo, &hi).await?;
                }
                self.try_copy(c, conn, (lo, &hi), locked.rows, reads, duplicates_explained)
                    .await
            }
            .await;
            match self.retry(c, conn, result, &mut attempt).await? {
                Some(chunk) => return Ok(chunk),
                None => continue,
            }
        }
    }

    /// Sorts out a chunk step's outcome: `Some` on success, `None` to try again (after a
    /// rollback and a pause) when it lost a deadlock or timed out on a row lock.
    async fn retry<T>(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        result: Result<T, ChunkFailure>,
        attempt: &mut u32,
    ) -> Result<Option<T>, ShadowError> {
        let failure = match result {
            Ok(value) => return Ok(Some(value)),
            Err(failure) => failure,
        };
        // Best effort: a broken connection has rolled back already.
        let _ = c.query_drop("ROLLBACK").await;
        match failure {
            ChunkFailure::Sql(e) if is_lock_conflict(&e) && *attempt < CHUNK_ATTEMPTS => {
                tracing::debug!(table = %self.spec.table, error = %e, "retrying a chunk");
                tokio::time::sleep(RETRY_PAUSE * *attempt).await;
                *attempt += 1;
                Ok(None)
            }
            ChunkFailure::Moved => {
                // Retried with a locking read, which cannot move: see `copy_locked`.
                tracing::debug!(table = %self.spec.table, "rows were inserted into a chunk's range; copying it again with locks");
                *attempt += 1;
                Ok(None)
            }
            ChunkFailure::Sql(e) => Err(conn
                .query_error(format!("copying rows of `{}`", self.spec.table), e)
                .into()),
            ChunkFailure::Shadow(e) => Err(e),
        }
    }

    /// Adds the indexes [`ShadowSpec::defer_indexes`] left out (all in one `ALTER`, built
    /// in place while the triggers keep writing), then checks that the shadow has exactly the
    /// indexes the plan's statements give the table, in the same order.
    async fn add_deferred_indexes(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
    ) -> Result<(), ShadowError> {
        if !self.spec.defer_indexes {
            return Ok(());
        }
        let Some(expected) = target_indexes(c, conn, &self.spec).await? else {
            return Ok(());
        };
        let indexes = |table: Option<Table>| -> Result<Vec<String>, ShadowError> {
            let table = table.ok_or_else(|| refused(&self.spec, "the shadow table is gone"))?;
            Ok(table.indexes.into_iter().map(|i| i.definition).collect())
        };
        let now = indexes(show_create(c, conn, &self.spec.database, &self.spec.shadow).await?)?;
        // Plain indexes keep the order they were added in: from the first missing one on,
        // every index is (dropped and) added again in the planned order.
        let first = expected.iter().position(|i| !now.contains(&i.definition));
        let missing: Vec<String> = expected[first.unwrap_or(expected.len())..]
            .iter()
            .flat_map(|i| {
                let drop = now
                    .contains(&i.definition)
                    .then(|| format!("DROP INDEX {}", quote_ident(&i.name)));
                drop.into_iter().chain([format!("ADD {}", i.definition)])
            })
            .collect();
        let expected: Vec<String> = expected.into_iter().map(|i| i.definition).collect();
        if !missing.is_empty() {
            // The ALTER waits for the metadata lock of the shadow, which every write to the
            // table takes through the triggers: waiting long would hold those writes up.
            c.query_drop("SET SESSION lock_wait_timeout = 1")
                .await
                .map_err(|e| conn.query_error("setting lock_wait_timeout", e))?;
            let started = Instant::now();
            ddl(
                c,
                conn,
                &format!(
                    "ALTER TABLE {} {}, ALGORITHM=INPLACE, LOCK=NONE",
                    self.spec.shadow_name(),
                    missing.join(", ")
                ),
                "adding the shadow's secondary indexes",
            )
            .await?;
            tracing::debug!(table = %self.spec.table, indexes = missing.len(), elapsed_ms = started.elapsed().as_millis() as u64, "added the shadow's secondary indexes");
        }
        let done = indexes(show_create(c, conn, &self.spec.database, &self.spec.shadow).await?)?;
        if done != expected {
            return Err(refused(
                &self.spec,
                format!(
                    "after the copy the shadow has the indexes [{}], but the plan's statements \
                     give [{}]; cancel the deployment and report this",
                    done.join(", "),
                    expected.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Checksums the ranges the copy sends, in order, on a connection of its own.
    async fn verify(
        &self,
        conn: &ShardConn,
        mut ranges: tokio::sync::mpsc::UnboundedReceiver<Range>,
        max_threads_running: u64,
    ) -> Result<(), ShadowError> {
        let mut c = conn.conn().await?;
        let mut size = FIRST_CHUNK;
        let mut checked = 0;
        while let Some(range) = ranges.recv().await {
            self.verify_range(&mut c, conn, range, &mut size, max_threads_running)
                .await?;
            checked += 1;
        }
        tracing::debug!(table = %self.spec.table, ranges = checked, "checksummed every range");
        Ok(())
    }

    /// Compares the table and the shadow chunk by chunk: row count plus a NULL-safe hash of
    /// every row over the columns both have (renamed columns under their new name). Each chunk
    /// reads both tables in one `START TRANSACTION WITH CONSISTENT SNAPSHOT`: the triggers
    /// write the shadow in the writer's own transaction, so any snapshot sees the two
    /// consistent, even while the application writes. [`Shadow::copy`] already does this as
    /// it goes; this is the same check again over the whole table.
    ///
    /// Left out of the comparison: generated columns, and columns whose type changes (their
    /// values may print differently, e.g. `DECIMAL(5,1)` to `DECIMAL(6,2)`). Widenings that
    /// keep every value's text (a longer `VARCHAR`, a bigger integer type, `VARCHAR` to
    /// `TEXT`) are still compared; narrowings are checked by [`Shadow::prepare`] and by the
    /// copy, which fails on any truncation or conversion.
    pub async fn checksum(&self, conn: &ShardConn) -> Result<(), ShadowError> {
        let mut c = conn.conn().await?;
        let whole = Range {
            lo: None,
            hi: None,
            split: true,
        };
        let mut size = FIRST_CHUNK;
        let max = CopyOptions::default().max_threads_running;
        self.verify_range(&mut c, conn, whole, &mut size, max).await
    }

    async fn verify_range(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        range: Range,
        size: &mut u64,
        max_threads_running: u64,
    ) -> Result<(), ShadowError> {
        let mut lo = range.lo;
        loop {
            throttle(c, conn, max_threads_running).await?;
            let started = Instant::now();
            let hi = match range.split {
                true => self
                    .boundary(c, conn, lo.as_deref(), range.hi.as_deref(), *size)
                    .await?
                    .or_else(|| range.hi.clone()),
                false => range.hi.clone(),
            };
            self.compare(c, conn, lo.as_deref(), hi.as_deref()).await?;
            if !range.split || hi == range.hi {
                return Ok(());
            }
            *size = next_chunk_size(*size, started.elapsed(), CHECKSUM_CHUNK_TIME);
            lo = hi;
        }
    }

    /// Checksums keys `(lo, hi]` of both tables in one snapshot.
    async fn compare(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        lo: Option<&[Json]>,
        hi: Option<&[Json]>,
    ) -> Result<(), ShadowError> {
        let params = self.range_params(lo, hi);
        let context = format!("checksumming `{}`", self.spec.table);
        let mut tx = c
            .start_transaction(snapshot())
            .await
            .map_err(|e| conn.query_error("starting a consistent snapshot for the checksum", e))?;
        let sql_table = self.checksum_sql(Side::Table, lo.is_some(), hi.is_some());
        let sql_shadow = self.checksum_sql(Side::Shadow, lo.is_some(), hi.is_some());
        let table = sums(tx.exec_first(sql_table, params.clone()).await)
            .map_err(|e| conn.query_error(&context, e))?;
        let shadow = sums(tx.exec_first(sql_shadow, params).await)
            .map_err(|e| conn.query_error(&context, e))?;
        tx.commit()
            .await
            .map_err(|e| conn.query_error(&context, e))?;
        if table != shadow {
            return Err(self.mismatch(c, conn, lo, hi, table, shadow).await);
        }
        Ok(())
    }

    /// Drops the triggers, then the shadow (in that order: a trigger whose shadow is gone
    /// would fail the application's writes). Safe to repeat and on partial leftovers.
    pub async fn cleanup(conn: &ShardConn, spec: &ShadowSpec) -> Result<(), ShadowError> {
        let mut c = conn.conn().await?;
        cleanup_with(&mut c, conn, spec).await
    }

    /// Drops only the triggers (after the seal). Safe to repeat.
    pub async fn drop_triggers(conn: &ShardConn, spec: &ShadowSpec) -> Result<(), ShadowError> {
        let mut c = conn.conn().await?;
        drop_triggers_with(&mut c, conn, spec).await
    }

    pub fn spec(&self) -> &ShadowSpec {
        &self.spec
    }

    /// True when [`Shadow::prepare`] found the shadow and triggers of this very spec and
    /// reused them: a checkpoint saved for them is still valid. False when it created them,
    /// so the copy must start from the beginning.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// (name, event, body) of the three triggers, in creation order. The body carries a
    /// fingerprint of the spec, so a resume never reuses triggers made for other statements.
    fn trigger_bodies(&self) -> Vec<(String, &'static str, String)> {
        let shadow = self.spec.shadow_name();
        let old_key = self.key_match("", "OLD.");
        let key_kept = self.key_match("OLD.", "NEW.");
        let new_key = self.key_match("", "NEW.");
        let targets = self.column_list(Side::Shadow);
        let values = self
            .layout
            .columns
            .iter()
            .map(|(from, _)| {
                let value = format!("NEW.{}", quote_ident(from));
                match self.shift(from) {
                    Some(shift) => shift.apply(&value),
                    None => value,
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let replace = format!("REPLACE INTO {shadow} ({targets}) VALUES ({values});");
        let tag = format!("/* schemagate shadow {:016x} */", self.fingerprint());
        let exact = self.layout.key.shadow_exact;
        self.spec
            .triggers()
            .into_iter()
            .map(|(name, event)| {
                let body = match event {
                    "DELETE" => format!("BEGIN {tag} DELETE FROM {shadow} WHERE {old_key}; END"),
                    // A changed key moves the row: remove it under its old key first.
                    // Only then: a DELETE that finds no row locks the gap where it would be,
                    // and two writers holding a gap lock each, each inserting into that gap,
                    // deadlock.
                    "UPDATE" if exact => format!(
                        "BEGIN {tag} IF NOT ({key_kept}) THEN DELETE FROM {shadow} WHERE \
                         {old_key}; END IF; {replace} END"
                    ),
                    // The shadow's index has more columns than the key: REPLACE would keep
                    // the row under its old value of those.
                    "UPDATE" => {
                        format!("BEGIN {tag} DELETE FROM {shadow} WHERE {old_key}; {replace} END")
                    }
                    _ if exact => format!("BEGIN {tag} {replace} END"),
                    _ => format!("BEGIN {tag} DELETE FROM {shadow} WHERE {new_key}; {replace} END"),
                };
                (name, event, body)
            })
            .collect()
    }

    /// (name, event, body) of the reverse triggers, in creation order: every write on the new
    /// table (the shadow, once the seal renamed it into place) repeated into the old table
    /// under its retention name `retention`. The inverse of [`Shadow::trigger_bodies`]: shadow
    /// columns back to the table's, renamed columns under their old name, time zone shifts the
    /// other way, rows found by the shared key; columns only the new table has are left out,
    /// generated columns are never written.
    ///
    /// Unlike the capture, which rewrites whole rows with REPLACE, an update is an UPDATE of
    /// the mapped columns: columns only the old table has (a dropped column) keep their values,
    /// and a row inserted through the new table gets their defaults. `IGNORE`: a row the old
    /// definition cannot hold next to the others (a unique key the change drops) is skipped
    /// rather than failing the application's write, or displacing another row as REPLACE
    /// would; the other conversions are made by the sql_mode without strict mode (see
    /// [`reverse_sql_mode`]).
    fn reverse_trigger_bodies(&self, retention: &str) -> Vec<(String, &'static str, String)> {
        let old = qualify(&self.spec.database, retention);
        let old_key = self.key_match("", "OLD.");
        let values: Vec<(String, String)> = self
            .layout
            .columns
            .iter()
            .map(|(from, to)| {
                let value = format!("NEW.{}", quote_ident(to));
                let value = match self.shift(from) {
                    Some(shift) => shift.inverse().apply(&value),
                    None => value,
                };
                (quote_ident(from), value)
            })
            .collect();
        let targets = values
            .iter()
            .map(|(column, _)| column.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let list = values
            .iter()
            .map(|(_, value)| value.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let assignments = values
            .iter()
            .map(|(column, value)| format!("{column} = {value}"))
            .collect::<Vec<_>>()
            .join(", ");
        let tag = format!("/* schemagate reverse {:016x} */", self.fingerprint());
        self.spec
            .reverse_triggers()
            .into_iter()
            .map(|(name, event)| {
                let body = match event {
                    "DELETE" => format!("BEGIN {tag} DELETE FROM {old} WHERE {old_key}; END"),
                    // A changed key moves the row with its other columns.
                    "UPDATE" => format!(
                        "BEGIN {tag} UPDATE IGNORE {old} SET {assignments} WHERE {old_key}; END"
                    ),
                    _ => format!(
                        "BEGIN {tag} INSERT IGNORE INTO {old} ({targets}) VALUES ({list}); END"
                    ),
                };
                (name, event, body)
            })
            .collect()
    }

    /// The statements that turn the capture around for the seal and back (see
    /// [`CaptureSwap`]). `retention` is the name the table gets at the flip; `session_mode` is
    /// the sql_mode of the session that will run them, before any change.
    pub fn capture_swap(&self, retention: &str, session_mode: &str) -> CaptureSwap {
        let database = &self.spec.database;
        let drop = |triggers: &[(String, &'static str)]| -> Vec<String> {
            triggers
                .iter()
                .rev()
                .map(|(name, _)| format!("DROP TRIGGER IF EXISTS {}", qualify(database, name)))
                .collect()
        };
        let create = |bodies: Vec<(String, &'static str, String)>, on: String| {
            bodies
                .into_iter()
                .map(move |(name, event, body)| {
                    format!(
                        "CREATE TRIGGER {} AFTER {event} ON {on} FOR EACH ROW {body}",
                        qualify(database, &name)
                    )
                })
                .collect::<Vec<_>>()
        };
        let forward = self.spec.triggers();
        let reverse = self.spec.reverse_triggers();
        // A trigger keeps the sql_mode it was created with.
        let mut to_reverse = vec![format!(
            "SET SESSION sql_mode = {}",
            quote_string(&reverse_sql_mode(session_mode))
        )];
        // No drop of reverse triggers first: the gate found the shadow without triggers, and
        // this runs while writes wait (a reverse trigger there would fail the CREATE, safely).
        to_reverse.extend(drop(&forward));
        to_reverse.extend(create(
            self.reverse_trigger_bodies(retention),
            self.spec.shadow_name(),
        ));
        let mut to_forward = vec![format!(
            "SET SESSION sql_mode = {}",
            quote_string(&capture_sql_mode(session_mode))
        )];
        to_forward.extend(drop(&reverse));
        to_forward.extend(drop(&forward));
        to_forward.extend(create(self.trigger_bodies(), self.spec.table_name()));
        CaptureSwap {
            to_reverse,
            to_forward,
        }
    }

    /// Whether the shadow of `spec` still follows its table: the shadow exists, the capture
    /// triggers are on the table with exactly the bodies this spec makes, and the shadow has
    /// no triggers (the seal's reverse ones are only there while it holds its locks, or after
    /// a seal that was interrupted). Reads definitions and triggers; changes nothing.
    pub async fn capture(conn: &ShardConn, spec: &ShadowSpec) -> Result<Capture, ShadowError> {
        let mut c = conn.conn().await?;
        let Some(original) = show_create(&mut c, conn, &spec.database, &spec.table).await? else {
            return Ok(Capture::Broken(format!(
                "table `{}` does not exist",
                spec.table
            )));
        };
        let shadow_table = show_create(&mut c, conn, &spec.database, &spec.shadow).await?;
        let on_table = triggers_on(&mut c, conn, &spec.database, &spec.table).await?;
        let on_shadow = match shadow_table {
            Some(_) => triggers_on(&mut c, conn, &spec.database, &spec.shadow).await?,
            None => Vec::new(),
        };
        Ok(check_capture(
            spec,
            &original,
            shadow_table.as_ref(),
            &on_table,
            &on_shadow,
        ))
    }

    /// Drops the seal's reverse triggers wherever they are. After a flip they sit on the live
    /// table, where a DROP TRIGGER waiting for a long transaction's metadata lock would queue
    /// every write behind it; so each drop only *tries* for the lock (`lock_wait_timeout = 0`)
    /// and is tried again every few milliseconds, for up to `patience`. Safe to repeat.
    pub async fn drop_reverse_triggers(
        conn: &ShardConn,
        spec: &ShadowSpec,
        patience: Duration,
    ) -> Result<(), ShadowError> {
        let mut c = conn.conn().await?;
        for (name, _) in spec.reverse_triggers().iter().rev() {
            ddl_tried(
                &mut c,
                conn,
                &format!("DROP TRIGGER IF EXISTS {}", qualify(&spec.database, name)),
                &format!("dropping trigger `{name}`"),
                patience,
            )
            .await?;
        }
        Ok(())
    }

    /// After the seal: the new table's foreign keys (see [`ShadowSpec::carry_foreign_keys`])
    /// take their own names back from the old table, now `retention`, which gives them up
    /// (it keeps its rows, not its keys). `original` is the table's definition the plan
    /// started from. Each rename is a metadata change, tried without queueing writes for up
    /// to `patience`. Safe to repeat; does nothing for a table that carried no keys.
    pub async fn restore_foreign_keys(
        conn: &ShardConn,
        spec: &ShadowSpec,
        original: &str,
        retention: &str,
        patience: Duration,
    ) -> Result<(), ShadowError> {
        let mut c = conn.conn().await?;
        let Some(live) = show_create(&mut c, conn, &spec.database, &spec.table).await? else {
            return Ok(());
        };
        // Whatever the setting says now: the names are the evidence.
        let temporary = format!("{}_f", spec.trigger_prefix);
        let names: Vec<String> = live.foreign_keys.into_iter().map(|fk| fk.name).collect();
        if !names.iter().any(|n| n.starts_with(&temporary)) {
            return Ok(());
        }
        let original = Table::parse_canonical(original).map_err(|source| LiveError::Canonical {
            shard: conn.shard.clone(),
            source,
        })?;
        // The keys as staged, without the refusals of `carried_keys`: whatever was staged is
        // sealed now, and must get its names back.
        let keys = foreign_keys::split(&spec.statements)
            .and_then(|split| foreign_keys::carried(&spec.trigger_prefix, &original, &split))
            .map_err(|r| refused(spec, r))?;
        let Some(clauses) = foreign_keys::restore_clauses(&keys, &names) else {
            return Ok(());
        };
        // All of them: generated names (`<table>_ibfk_<n>`) were renamed with the table, and a
        // key left there would keep parents from being deleted.
        if let Some(old) = show_create(&mut c, conn, &spec.database, retention).await? {
            let drops: Vec<String> = old
                .foreign_keys
                .iter()
                .map(|fk| format!("DROP FOREIGN KEY {}", quote_ident(&fk.name)))
                .collect();
            if !drops.is_empty() {
                ddl(
                    &mut c,
                    conn,
                    &format!(
                        "ALTER TABLE {} {}",
                        qualify(&spec.database, retention),
                        drops.join(", ")
                    ),
                    "dropping the old table's foreign keys",
                )
                .await?;
            }
        }
        // In place only with checks off: the keys are the ones the shadow held all along.
        c.query_drop("SET SESSION foreign_key_checks = 0")
            .await
            .map_err(|e| conn.query_error("setting foreign_key_checks", e))?;
        let renamed = ddl_tried(
            &mut c,
            conn,
            &format!(
                "ALTER TABLE {} {clauses}, ALGORITHM=INPLACE, LOCK=NONE",
                spec.table_name()
            ),
            "giving the new table's foreign keys their names back",
            patience,
        )
        .await;
        c.query_drop("SET SESSION foreign_key_checks = 1")
            .await
            .map_err(|e| conn.query_error("setting foreign_key_checks", e))?;
        renamed?;
        Ok(())
    }

    fn key_match(&self, left: &str, right: &str) -> String {
        self.layout
            .key
            .columns
            .iter()
            .map(|k| format!("{left}{0} <=> {right}{0}", quote_ident(&k.name)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    fn shift(&self, column: &str) -> Option<ZoneShift> {
        self.layout
            .shifts
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, s)| *s)
    }

    /// Of what the triggers' bodies depend on; not of how the copy goes about its work
    /// (`defer_indexes`), which the seal's capture check does not know.
    fn fingerprint(&self) -> u64 {
        let spec = &self.spec;
        let text = serde_json::json!([
            [
                &spec.database,
                &spec.table,
                &spec.shadow,
                &spec.trigger_prefix,
                &spec.statements,
                &spec.renames,
            ],
            self.layout.columns,
            self.layout
                .key
                .columns
                .iter()
                .map(|k| &k.name)
                .collect::<Vec<_>>(),
        ])
        .to_string();
        // FNV-1a: stable across builds, unlike std's hasher.
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    fn column_list(&self, side: Side) -> String {
        self.layout
            .columns
            .iter()
            .map(|(from, to)| match side {
                Side::Table => quote_ident(from),
                Side::Shadow => quote_ident(to),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn key_select(&self) -> String {
        self.layout
            .key
            .columns
            .iter()
            .map(KeyColumn::select_expr)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn key_order(&self) -> String {
        self.layout
            .key
            .columns
            .iter()
            .map(|k| quote_ident(&k.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn source(&self, side: &Side) -> String {
        match side {
            Side::Table => format!(
                "{} FORCE INDEX ({})",
                self.spec.table_name(),
                quote_ident(&self.layout.key.index)
            ),
            Side::Shadow => format!(
                "{} FORCE INDEX ({})",
                self.spec.shadow_name(),
                quote_ident(&self.layout.key.shadow_index)
            ),
        }
    }

    /// `WHERE` clause for keys above a lower and up to an upper bound. Composite keys are
    /// expanded, `(a > ?) OR (a = ? AND b > ?)`, because row comparisons `(a, b) > (?, ?)` are
    /// not turned into index ranges.
    fn range_where(&self, lower: bool, upper: bool) -> String {
        let key = &self.layout.key.columns;
        let bound = |op_last: &str, op_inner: &str| {
            (0..key.len())
                .map(|i| {
                    let mut terms: Vec<String> = key[..i]
                        .iter()
                        .map(|k| format!("{} = {}", quote_ident(&k.name), k.placeholder()))
                        .collect();
                    let op = if i + 1 == key.len() {
                        op_last
                    } else {
                        op_inner
                    };
                    terms.push(format!(
                        "{} {op} {}",
                        quote_ident(&key[i].name),
                        key[i].placeholder()
                    ));
                    format!("({})", terms.join(" AND "))
                })
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let mut parts = Vec::new();
        if lower {
            parts.push(format!("({})", bound(">", ">")));
        }
        if upper {
            parts.push(format!("({})", bound("<=", "<")));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", parts.join(" AND "))
        }
    }

    /// Parameters for [`Shadow::range_where`], in placeholder order.
    fn range_params(&self, lo: Option<&[Json]>, hi: Option<&[Json]>) -> Vec<Value> {
        let key = &self.layout.key.columns;
        let mut params = Vec::new();
        for bound in [lo, hi].into_iter().flatten() {
            for i in 0..key.len() {
                for (column, value) in key.iter().zip(bound).take(i + 1) {
                    params.push(bind(column.kind, value));
                }
            }
        }
        params
    }

    /// The last key of the next checksum chunk of `size` rows above `lo` (and up to `hi`), or
    /// `None` if fewer rows are left there (the chunk then ends at `hi`).
    async fn boundary(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        lo: Option<&[Json]>,
        hi: Option<&[Json]>,
        size: u64,
    ) -> Result<Option<Vec<Json>>, ShadowError> {
        let sql = self.boundary_sql(lo.is_some(), hi.is_some());
        let mut params = self.range_params(lo, hi);
        params.push(Value::UInt(size.saturating_sub(1)));
        let row: Option<Row> = c
            .exec_first(sql, params)
            .await
            .map_err(|e| conn.query_error("finding the next chunk's last key", e))?;
        row.map(|row| self.key_from_row(&row, 0)).transpose()
    }

    fn key_from_row(&self, row: &Row, first: usize) -> Result<Vec<Json>, ShadowError> {
        self.layout
            .key
            .columns
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let value = row.as_ref(first + i).cloned().unwrap_or(Value::NULL);
                to_json(k.kind, value).ok_or_else(|| {
                    refused(
                        &self.spec,
                        format!("a value of key column `{}` cannot be read back", k.name),
                    )
                })
            })
            .collect()
    }

    /// A chunk's first statement: locks the next `size` rows above the lower bound (InnoDB
    /// locks every row it reads, the skipped ones too) and returns the last one's key, or
    /// nothing when fewer rows are left (it has then locked them all, up to the end).
    ///
    /// LOCK IN SHARE MODE makes the copy read the latest committed rows and hold them until
    /// the chunk commits. Without it, the copy could read a row, a concurrent DELETE (or a
    /// key-changing UPDATE) could commit and its trigger find nothing to delete in the shadow
    /// yet, and the chunk would then insert the stale row, which nothing ever removes. With
    /// it, the writer waits for the chunk (its trigger then deletes the copied row) or the
    /// chunk waits for the writer (and no longer sees the row). The gap locks also hold back
    /// inserts into the range while it is copied.
    ///
    /// Taking every lock of the table's rows before touching the shadow is what keeps the copy
    /// out of deadlocks with writers: a writer locks its row of the table, then (through the
    /// trigger) the shadow's; a copy that took the shadow's locks (INSERT IGNORE locks the
    /// rows it finds already there, and the gaps before them) and then waited for a row of the
    /// table would lock in the opposite order.
    fn lock_sql(&self, lower: bool) -> String {
        format!("{} LOCK IN SHARE MODE", self.boundary_sql(lower, false))
    }

    /// The key `OFFSET ?` rows into a range of the table, in key order.
    fn boundary_sql(&self, lower: bool, upper: bool) -> String {
        format!(
            "SELECT {} FROM {}{} ORDER BY {} LIMIT 1 OFFSET ?",
            self.key_select(),
            self.source(&Side::Table),
            self.range_where(lower, upper),
            self.key_order()
        )
    }

    /// The chunk's copy, of rows it already holds. Rows the triggers put in first win: INSERT
    /// IGNORE skips them, as their values are newer.
    fn insert_sql(&self, lower: bool, reads: Reads) -> String {
        let lock = match reads {
            Reads::Locking => " LOCK IN SHARE MODE",
            Reads::Committed => "",
        };
        format!(
            "INSERT IGNORE INTO {} ({}) SELECT {} FROM {}{} ORDER BY {}{lock}",
            self.spec.shadow_name(),
            self.column_list(Side::Shadow),
            self.column_list(Side::Table),
            self.source(&Side::Table),
            self.range_where(lower, true),
            self.key_order()
        )
    }

    /// Locks the rows of a chunk again, by its bounds, when it is retried.
    fn relock_sql(&self, lower: bool, upper: bool) -> String {
        format!(
            "SELECT COUNT(*) FROM {}{} LOCK IN SHARE MODE",
            self.source(&Side::Table),
            self.range_where(lower, upper)
        )
    }

    /// Locks the last row above the lower bound and returns its key (for the final chunk).
    fn top_sql(&self, lower: bool) -> String {
        let descending = self
            .layout
            .key
            .columns
            .iter()
            .map(|k| format!("{} DESC", quote_ident(&k.name)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {} FROM {}{} ORDER BY {descending} LIMIT 1 LOCK IN SHARE MODE",
            self.key_select(),
            self.source(&Side::Table),
            self.range_where(lower, false),
        )
    }

    /// The second statement of a chunk, and its commit. Under `READ COMMITTED` it reads the
    /// latest committed rows without locking them: the chunk holds share locks on the `rows`
    /// rows it found, which therefore cannot change, but not on the gaps between them. A row
    /// inserted into the range since would be copied without a lock — and copied back into the
    /// shadow if deleted while the statement runs. Such a row makes the count read differ, and
    /// the chunk is rolled back and tried again, locking it too.
    async fn try_copy(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        (lo, hi): (Option<&[Json]>, &[Json]),
        rows: u64,
        reads: Reads,
        duplicates_explained: &mut bool,
    ) -> Result<Chunk, ChunkFailure> {
        c.exec_drop(
            self.insert_sql(lo.is_some(), reads),
            self.range_params(lo, Some(hi)),
        )
        .await?;
        // `Records: N  Duplicates: D  Warnings: W`: N counts the rows read, including those
        // the triggers had already put in the shadow.
        let info = c.info().into_owned();
        let read = info
            .strip_prefix("Records: ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                refused(
                    &self.spec,
                    format!("the server's answer to a chunk (`{info}`) has no row count"),
                )
            })?;
        // A locking read locks what it reads; only a plain read can take in a row it did not
        // lock, which makes it read more. Reading fewer means rows were dropped on the way.
        if reads == Reads::Committed && read > rows {
            return Err(ChunkFailure::Moved);
        }
        if c.get_warnings() > 0 {
            self.check_warnings(c, conn, duplicates_explained).await?;
        }
        if read < rows {
            return Err(ChunkFailure::Shadow(refused(
                &self.spec,
                format!(
                    "a chunk locked {rows} rows but the copy read {read}: rows were left out \
                     without a warning; cancel the deployment and report this"
                ),
            )));
        }
        c.query_drop("COMMIT").await?;
        Ok(Chunk {
            read,
            last: Some(hi.to_vec()),
        })
    }

    /// INSERT IGNORE turns every error into a warning: a duplicate under the shared key only
    /// means a trigger put the row there first, anything else means data was lost or changed.
    ///
    /// A row a trigger put there first collides under every unique key of the shadow, and the
    /// server names the first one it checks (the primary key, which need not be the shared
    /// key). So a duplicate under another key is harmless unless the table holds rows that
    /// key cannot take: the data checks say which, once per copy (the checksum compares every
    /// row in the end anyway).
    async fn check_warnings(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        duplicates_explained: &mut bool,
    ) -> Result<(), ShadowError> {
        let warnings: Vec<Row> = c
            .query("SHOW WARNINGS")
            .await
            .map_err(|e| conn.query_error("reading the copy's warnings", e))?;
        let benign = format!("for key '{}'", self.layout.key.shadow_index);
        let mut other_key = None;
        for row in warnings {
            let level: String = cell(&row, 0).unwrap_or_default();
            let code: u16 = cell(&row, 1).unwrap_or_default();
            let message: String = cell(&row, 2).unwrap_or_default();
            let harmless = level == "Note"
                || BENIGN_WARNINGS.contains(&code)
                || (code == ER_DUP_ENTRY && message.ends_with(&benign));
            if harmless {
                continue;
            }
            if code == ER_DUP_ENTRY {
                other_key.get_or_insert(message);
                continue;
            }
            return Err(self.lossy(message));
        }
        if let Some(message) = other_key.filter(|_| !*duplicates_explained) {
            if let Some(reason) = self.first_failed_check(c, conn).await? {
                return Err(self.lossy(format!("{message}: {reason}")));
            }
            *duplicates_explained = true;
        }
        Ok(())
    }

    fn lossy(&self, warning: String) -> ShadowError {
        ShadowError::Lossy {
            table: self.spec.table_name(),
            shadow: self.spec.shadow.clone(),
            warning,
        }
    }

    async fn estimate_rows(&self, c: &mut Conn, conn: &ShardConn) -> Result<u64, ShadowError> {
        let row: Option<Row> = c
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&self.spec.database, &self.spec.table),
            )
            .await
            .map_err(|e| conn.query_error("estimating the table's rows", e))?;
        Ok(row.and_then(|r| cell::<u64>(&r, 0)).unwrap_or(0))
    }

    fn parse_checkpoint(&self, text: &str) -> Result<Vec<Json>, ShadowError> {
        let fail = |reason: String| ShadowError::BadCheckpoint {
            table: self.spec.table_name(),
            checkpoint: text.to_string(),
            reason,
        };
        let values: Vec<Json> = serde_json::from_str(text)
            .map_err(|e| fail(format!("it is not a JSON array ({e})")))?;
        let key = &self.layout.key.columns;
        if values.len() != key.len() {
            return Err(fail(format!(
                "it has {} values but the key ({}) has {} columns",
                values.len(),
                key.iter()
                    .map(|k| quote_ident(&k.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                key.len()
            )));
        }
        for (k, value) in key.iter().zip(&values) {
            let fits = match k.kind {
                KeyKind::Int | KeyKind::Enum => value.is_i64() || value.is_u64(),
                KeyKind::Float => value.is_number(),
                KeyKind::Binary => value
                    .as_str()
                    .is_some_and(|s| s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit())),
                KeyKind::Decimal | KeyKind::Text | KeyKind::Temporal => value.is_string(),
            };
            if !fits {
                return Err(fail(format!(
                    "{value} is not a value of key column `{}`",
                    k.name
                )));
            }
        }
        Ok(values)
    }

    /// The compared columns as one string per row (see [`Compared::expr`]). Byte strings go
    /// in as `BINARY`, so columns of different collations never meet in one `CONCAT_WS`.
    fn row_text_expr(&self, side: &Side) -> String {
        let parts: Vec<String> = self.layout.compared.iter().map(|c| c.expr(side)).collect();
        format!("CONCAT_WS(',', {})", parts.join(", "))
    }

    /// Row count and the XOR of every row's CRC32, the hash pt-table-checksum uses by default.
    /// A cheap row text matters more than a wider hash: the row text is most of the checksum's
    /// cost, and the checksum is a large part of the time to ready.
    fn checksum_sql(&self, side: Side, lower: bool, upper: bool) -> String {
        format!(
            "SELECT COUNT(*), BIT_XOR(CRC32({})) FROM {}{}",
            self.row_text_expr(&side),
            self.source(&side),
            self.range_where(lower, upper)
        )
    }

    /// Builds the mismatch error: the first differing row of the chunk and, when the data
    /// shows one, the likely cause.
    async fn mismatch(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        lo: Option<&[Json]>,
        hi: Option<&[Json]>,
        table: (u64, u64),
        shadow: (u64, u64),
    ) -> ShadowError {
        let range = match (lo, hi) {
            (None, None) => "(all of them)".to_string(),
            (Some(lo), None) => format!("above {}", Json::Array(lo.to_vec())),
            (None, Some(hi)) => format!("up to {}", Json::Array(hi.to_vec())),
            (Some(lo), Some(hi)) => format!(
                "above {} up to {}",
                Json::Array(lo.to_vec()),
                Json::Array(hi.to_vec())
            ),
        };
        let detail = match self.first_difference(c, conn, lo, hi).await {
            Ok(Some(detail)) => detail,
            Ok(None) => format!(
                "the table has {} rows there, the shadow {} (or their values differ)",
                table.0, shadow.0
            ),
            Err(e) => return e,
        };
        let cause = match self.first_failed_check(c, conn).await {
            Ok(Some(reason)) => Some(reason),
            Ok(None) => Some(
                "something else wrote to the shadow, the triggers were missing for a while, or \
                 the copy resumed from a checkpoint of another shadow"
                    .to_string(),
            ),
            Err(e) => return e,
        };
        ShadowError::Mismatch {
            table: self.spec.table_name(),
            shadow: self.spec.shadow.clone(),
            range,
            detail,
            cause,
        }
    }

    /// Lists key and row hash of the chunk on both sides, in one snapshot, and describes the
    /// first row that differs.
    async fn first_difference(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        lo: Option<&[Json]>,
        hi: Option<&[Json]>,
    ) -> Result<Option<String>, ShadowError> {
        let params = self.range_params(lo, hi);
        let list = |side: Side| {
            format!(
                "SELECT {}, MD5({}) FROM {}{} ORDER BY {}",
                self.key_select(),
                self.row_text_expr(&side),
                self.source(&side),
                self.range_where(lo.is_some(), hi.is_some()),
                self.key_order()
            )
        };
        let context = "listing the rows of a chunk that differs";
        let mut tx = c
            .start_transaction(snapshot())
            .await
            .map_err(|e| conn.query_error(context, e))?;
        let table_rows: Vec<Row> = tx
            .exec(list(Side::Table), params.clone())
            .await
            .map_err(|e| conn.query_error(context, e))?;
        let shadow_rows: Vec<Row> = tx
            .exec(list(Side::Shadow), params)
            .await
            .map_err(|e| conn.query_error(context, e))?;
        let width = self.layout.key.columns.len();
        let keyed = |rows: Vec<Row>| -> Result<Vec<(Vec<Json>, String)>, ShadowError> {
            rows.iter()
                .map(|row| {
                    let key = self.key_from_row(row, 0)?;
                    Ok((key, cell::<String>(row, width).unwrap_or_default()))
                })
                .collect()
        };
        let table_rows = keyed(table_rows)?;
        let shadow_rows = keyed(shadow_rows)?;
        let in_shadow: HashMap<String, &str> = shadow_rows
            .iter()
            .map(|(k, h)| (Json::Array(k.clone()).to_string(), h.as_str()))
            .collect();
        let in_table: HashSet<String> = table_rows
            .iter()
            .map(|(k, _)| Json::Array(k.clone()).to_string())
            .collect();
        for (key, hash) in &table_rows {
            let shown = Json::Array(key.clone()).to_string();
            match in_shadow.get(&shown) {
                None => {
                    return Ok(Some(format!(
                        "the row with key {shown} is missing from the shadow"
                    )))
                }
                Some(h) if h != hash => {
                    let columns = self.differing_columns(&mut tx, conn, key).await?;
                    return Ok(Some(format!("the row with key {shown} differs: {columns}")));
                }
                Some(_) => {}
            }
        }
        let extra = shadow_rows
            .iter()
            .map(|(k, _)| Json::Array(k.clone()).to_string())
            .find(|k| !in_table.contains(k));
        // Best effort: the snapshot was only read.
        let _ = tx.rollback().await;
        Ok(extra.map(|k| format!("the shadow has a row with key {k} that the table does not")))
    }

    async fn differing_columns(
        &self,
        tx: &mut mysql_async::Transaction<'_>,
        conn: &ShardConn,
        key: &[Json],
    ) -> Result<String, ShadowError> {
        let key_match = self
            .layout
            .key
            .columns
            .iter()
            .map(|k| format!("{} = {}", quote_ident(&k.name), k.placeholder()))
            .collect::<Vec<_>>()
            .join(" AND ");
        let params: Vec<Value> = self
            .layout
            .key
            .columns
            .iter()
            .zip(key)
            .map(|(k, v)| bind(k.kind, v))
            .collect();
        let read = |side: Side| {
            let (name, columns) = match side {
                Side::Table => (self.spec.table_name(), self.column_list(Side::Table)),
                Side::Shadow => (self.spec.shadow_name(), self.column_list(Side::Shadow)),
            };
            format!("SELECT {columns} FROM {name} WHERE {key_match}")
        };
        let context = "reading a row that differs";
        let a: Option<Row> = tx
            .exec_first(read(Side::Table), params.clone())
            .await
            .map_err(|e| conn.query_error(context, e))?;
        let b: Option<Row> = tx
            .exec_first(read(Side::Shadow), params)
            .await
            .map_err(|e| conn.query_error(context, e))?;
        let (Some(a), Some(b)) = (a, b) else {
            return Ok("it changed while being read".to_string());
        };
        let compared: HashSet<&str> = self
            .layout
            .compared
            .iter()
            .map(|c| c.from.as_str())
            .collect();
        let differences: Vec<String> = self
            .layout
            .columns
            .iter()
            .enumerate()
            .filter(|(_, (from, _))| compared.contains(from.as_str()))
            .filter_map(|(i, (from, to))| {
                let x = a.as_ref(i).cloned().unwrap_or(Value::NULL);
                let y = b.as_ref(i).cloned().unwrap_or(Value::NULL);
                (x != y).then(|| {
                    format!(
                        "`{from}` is {} in the table but `{to}` is {} in the shadow",
                        show_value(&x),
                        show_value(&y)
                    )
                })
            })
            .collect();
        Ok(if differences.is_empty() {
            "its values differ".to_string()
        } else {
            differences.join("; ")
        })
    }

    /// Runs the data checks on the table; the first problem found, as a message.
    async fn first_failed_check(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
    ) -> Result<Option<String>, ShadowError> {
        let table = self.spec.table_name();
        for check in &self.layout.checks {
            match check {
                DataCheck::Unique { index, parts } => {
                    let exprs: Vec<String> = parts
                        .iter()
                        .map(|(column, prefix)| match prefix {
                            Some(n) => format!("LEFT({}, {n})", quote_ident(column)),
                            None => quote_ident(column),
                        })
                        .collect();
                    let not_null: Vec<String> = parts
                        .iter()
                        .map(|(column, _)| format!("{} IS NOT NULL", quote_ident(column)))
                        .collect();
                    let sql = format!(
                        "SELECT CONCAT_WS(', ', {}), COUNT(*) FROM {table} WHERE {} \
                         GROUP BY {} HAVING COUNT(*) > 1 LIMIT 1",
                        exprs
                            .iter()
                            .map(|e| format!("QUOTE({e})"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        not_null.join(" AND "),
                        exprs.join(", ")
                    );
                    let row: Option<Row> = c
                        .query_first(sql)
                        .await
                        .map_err(|e| conn.query_error("looking for duplicates", e))?;
                    if let Some(row) = row {
                        let values = cell::<Vec<u8>>(&row, 0).unwrap_or_default();
                        let count = cell::<u64>(&row, 1).unwrap_or_default();
                        let columns: Vec<String> =
                            parts.iter().map(|(c, _)| quote_ident(c)).collect();
                        return Ok(Some(format!(
                            "the new UNIQUE key `{index}` over ({}) would drop rows: ({}) occurs \
                             {count} times; remove the duplicates first, or make the key \
                             non-unique",
                            columns.join(", "),
                            shorten(&String::from_utf8_lossy(&values)),
                        )));
                    }
                }
                DataCheck::NotNull { column } => {
                    let condition = format!("{} IS NULL", quote_ident(column));
                    if let Some(key) = self.first_key_where(c, conn, &condition).await? {
                        return Ok(Some(format!(
                            "column `{column}` becomes NOT NULL but holds NULL (first at key \
                             {key}); give those rows a value first, or keep the column nullable"
                        )));
                    }
                }
                DataCheck::Fits {
                    column,
                    condition,
                    new_type,
                } => {
                    if let Some(key) = self.first_key_where(c, conn, condition).await? {
                        return Ok(Some(format!(
                            "column `{column}` becomes {new_type} but holds values that do not \
                             fit (first at key {key}); fix those rows first, or keep the wider \
                             type"
                        )));
                    }
                }
            }
        }
        Ok(None)
    }

    /// A row of `side` that a foreign key the change adds finds no parent for (under MATCH
    /// SIMPLE: every column of the key set), as a refusal; the copy runs with
    /// `foreign_key_checks` off, so the new keys are checked here, on the table before the
    /// copy and on the shadow after it.
    async fn first_orphan(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        side: Side,
    ) -> Result<Option<String>, ShadowError> {
        for key in self.keys.iter().filter(|k| k.new) {
            let fk = ForeignKey::parse(&key.definition).ok_or_else(|| {
                refused(
                    &self.spec,
                    format!("cannot read the foreign key `{}`", key.definition),
                )
            })?;
            let mut columns = Vec::new();
            for name in &fk.columns {
                let column = match side {
                    Side::Shadow => Some(name.clone()),
                    Side::Table => self
                        .layout
                        .columns
                        .iter()
                        .find(|(_, to)| same_name(to, name))
                        .map(|(from, _)| from.clone()),
                };
                let Some(column) = column else {
                    return Ok(Some(format!(
                        "the new foreign key `{}` is over column `{name}`, which the change adds \
                         (or retypes): add the column in one deployment and the key in the next",
                        key.name
                    )));
                };
                columns.push(column);
            }
            let source = match side {
                Side::Table => self.spec.table_name(),
                Side::Shadow => self.spec.shadow_name(),
            };
            let parent = qualify(
                fk.referenced_database
                    .as_deref()
                    .unwrap_or(&self.spec.database),
                &fk.referenced_table,
            );
            let set: Vec<String> = columns
                .iter()
                .map(|c| format!("{source}.{} IS NOT NULL", quote_ident(c)))
                .collect();
            let matched: Vec<String> = columns
                .iter()
                .zip(&fk.referenced_columns)
                .map(|(c, p)| format!("_p.{} = {source}.{}", quote_ident(p), quote_ident(c)))
                .collect();
            let sql = format!(
                "SELECT {} FROM {source} WHERE {} AND NOT EXISTS (SELECT 1 FROM {parent} AS _p \
                 WHERE {}) LIMIT 1",
                self.key_select(),
                set.join(" AND "),
                matched.join(" AND ")
            );
            let row: Option<Row> = c.query_first(sql).await.map_err(|e| {
                conn.query_error(
                    format!("checking the rows against foreign key `{}`", key.name),
                    e,
                )
            })?;
            if let Some(row) = row {
                let at = Json::Array(self.key_from_row(&row, 0)?);
                return Ok(Some(format!(
                    "the new foreign key `{}` finds no row in {parent} for the row at key {at}: \
                     fix those rows first, or leave the key out",
                    key.name
                )));
            }
        }
        Ok(None)
    }

    async fn first_key_where(
        &self,
        c: &mut Conn,
        conn: &ShardConn,
        condition: &str,
    ) -> Result<Option<String>, ShadowError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {condition} LIMIT 1",
            self.key_select(),
            self.spec.table_name()
        );
        let row: Option<Row> = c
            .exec_first(sql, ())
            .await
            .map_err(|e| conn.query_error("checking the data against the new definition", e))?;
        row.map(|row| {
            self.key_from_row(&row, 0)
                .map(|k| Json::Array(k).to_string())
        })
        .transpose()
    }
}

/// The sql_mode the capture triggers are created with, from the session's: the session's plus
/// `NO_AUTO_VALUE_ON_ZERO`, as [`set_copy_mode`] sets it.
fn capture_sql_mode(session: &str) -> String {
    let mut modes: Vec<&str> = session.split(',').filter(|m| !m.is_empty()).collect();
    if !modes.contains(&"NO_AUTO_VALUE_ON_ZERO") {
        modes.push("NO_AUTO_VALUE_ON_ZERO");
    }
    modes.join(",")
}

/// The sql_mode the reverse triggers are created with: the capture triggers' without strict
/// mode (`TRADITIONAL` implies it), so that a row the new definition accepts and the old one
/// cannot hold (a NOT NULL column without default that the new table lacks, a NULL in a
/// column that was NOT NULL, a longer value) is stored as the old definition allows, with a
/// warning, instead of failing the application's write. Only rows written between a flip and
/// its swap-back need them.
fn reverse_sql_mode(session: &str) -> String {
    capture_sql_mode(session)
        .split(',')
        .filter(|m| {
            !matches!(
                *m,
                "STRICT_TRANS_TABLES" | "STRICT_ALL_TABLES" | "TRADITIONAL"
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Puts the copy's session in `READ COMMITTED` unless the server logs statements (see
/// [`Reads`]).
async fn read_committed(c: &mut Conn, conn: &ShardConn) -> Result<Reads, LiveError> {
    let logging: Option<(Option<u64>, Option<String>)> = c
        .query_first("SELECT @@log_bin, @@binlog_format")
        .await
        .map_err(|e| conn.query_error("reading the binary log format", e))?;
    let statements =
        matches!(logging, Some((Some(1), Some(ref f))) if f.eq_ignore_ascii_case("STATEMENT"));
    if statements {
        return Ok(Reads::Locking);
    }
    c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(|e| conn.query_error("setting the copy's isolation level", e))?;
    Ok(Reads::Committed)
}

/// Adds `NO_AUTO_VALUE_ON_ZERO` to the session's sql_mode, for the copy and the triggers: a
/// row whose AUTO_INCREMENT column holds 0 keeps it instead of getting the next number.
async fn set_copy_mode(c: &mut Conn, conn: &ShardConn) -> Result<(), LiveError> {
    c.query_drop(
        "SET SESSION sql_mode = \
         CONCAT_WS(',', NULLIF(@@session.sql_mode, ''), 'NO_AUTO_VALUE_ON_ZERO')",
    )
    .await
    .map_err(|e| conn.query_error("setting the session's sql_mode", e))
}

/// The indexes the plan's statements give the table, worked out on an empty
/// temporary clone; `None` when the server cannot make that clone (InnoDB temporary tables
/// take no FULLTEXT or SPATIAL index, no compressed row format): a statement that fails there
/// fails the same way every time, so nothing was deferred for such a table.
async fn target_indexes(
    c: &mut Conn,
    conn: &ShardConn,
    spec: &ShadowSpec,
) -> Result<Option<Vec<crate::schema::Index>>, LiveError> {
    // Within 64 characters like the triggers' names; temporary, so only this session sees it.
    let name = format!("{}_tmp", spec.trigger_prefix);
    let qualified = qualify(&spec.database, &name);
    let mut statements = vec![format!(
        "CREATE TEMPORARY TABLE {qualified} LIKE {}",
        spec.table_name()
    )];
    for statement in &spec.statements {
        match rewrite_alter(statement, &spec.table, &qualified) {
            Some(rewritten) => statements.push(rewritten),
            None => return Ok(None),
        }
    }
    let mut made = Ok(());
    for statement in statements {
        made = c.query_drop(statement).await;
        if made.is_err() {
            break;
        }
    }
    let clone = match made {
        Ok(()) => show_create(c, conn, &spec.database, &name).await,
        Err(mysql_async::Error::Server(_)) => Ok(None),
        Err(e) => Err(conn.query_error("making a temporary clone of the table", e)),
    };
    c.query_drop(format!("DROP TEMPORARY TABLE IF EXISTS {qualified}"))
        .await
        .map_err(|e| conn.query_error("dropping the temporary clone", e))?;
    Ok(clone?.map(|t| t.indexes))
}

/// Drops the new shadow's plain secondary indexes (see [`ShadowSpec::defer_indexes`]) when
/// the copy can add them back exactly: only when a temporary clone shows the same indexes (the
/// copy works out the missing ones from it) and no SPATIAL or FULLTEXT index would change
/// places with them.
async fn defer_indexes(
    c: &mut Conn,
    conn: &ShardConn,
    spec: &ShadowSpec,
    shadow: &Table,
) -> Result<(), LiveError> {
    let plain: Vec<&crate::schema::Index> = shadow
        .indexes
        .iter()
        .filter(|i| i.kind == IndexKind::Plain)
        .collect();
    let special = shadow
        .indexes
        .iter()
        .any(|i| matches!(i.kind, IndexKind::Fulltext | IndexKind::Spatial));
    if plain.is_empty() || special {
        return Ok(());
    }
    if target_indexes(c, conn, spec).await?.as_ref() != Some(&shadow.indexes) {
        return Ok(());
    }
    let drops = plain
        .iter()
        .map(|i| format!("DROP INDEX {}", quote_ident(&i.name)))
        .collect::<Vec<_>>()
        .join(", ");
    ddl(
        c,
        conn,
        &format!("ALTER TABLE {} {drops}", spec.shadow_name()),
        "leaving the shadow's secondary indexes for after the copy",
    )
    .await
}

async fn cleanup_with(
    c: &mut Conn,
    conn: &ShardConn,
    spec: &ShadowSpec,
) -> Result<(), ShadowError> {
    drop_triggers_with(c, conn, spec).await?;
    // The seal's reverse triggers, left on the shadow by a seal that was interrupted or
    // swapped back (dropping the shadow would take them too; by name they go wherever they are).
    for (name, _) in spec.reverse_triggers().iter().rev() {
        ddl(
            c,
            conn,
            &format!("DROP TRIGGER IF EXISTS {}", qualify(&spec.database, name)),
            &format!("dropping trigger `{name}`"),
        )
        .await?;
    }
    ddl(
        c,
        conn,
        &format!("DROP TABLE IF EXISTS {}", spec.shadow_name()),
        "dropping the shadow table",
    )
    .await?;
    Ok(())
}

async fn drop_triggers_with(
    c: &mut Conn,
    conn: &ShardConn,
    spec: &ShadowSpec,
) -> Result<(), ShadowError> {
    // Reverse order of creation: the insert trigger goes first, so the others keep the
    // shadow right for as long as anything still writes it.
    for (name, _) in spec.triggers().iter().rev() {
        ddl_tried(
            c,
            conn,
            &format!("DROP TRIGGER IF EXISTS {}", qualify(&spec.database, name)),
            &format!("dropping trigger `{name}`"),
            MDL_PATIENCE,
        )
        .await?;
    }
    Ok(())
}

fn refused(spec: &ShadowSpec, reason: impl Into<String>) -> ShadowError {
    ShadowError::Refused {
        table: spec.table_name(),
        reason: reason.into(),
    }
}

fn qualify(database: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(database), quote_ident(name))
}

fn validate_spec(spec: &ShadowSpec) -> Result<(), ShadowError> {
    let problem = if spec.database.is_empty() || spec.table.is_empty() || spec.shadow.is_empty() {
        Some("the database, table and shadow names must not be empty".to_string())
    } else if spec.shadow == spec.table {
        Some("the shadow table cannot have the table's own name".to_string())
    } else if spec.trigger_prefix.is_empty() || spec.trigger_prefix.chars().count() + 4 > 64 {
        Some("the trigger prefix must be 1 to 60 characters long".to_string())
    } else if let Some(s) = spec.statements.iter().find(|s| renames_table(s)) {
        Some(format!(
            "the statement `{}` renames the table; a shadow table stands in for the table under \
             its own name: rename it in a deployment of its own",
            shorten(s)
        ))
    } else {
        spec.statements
            .iter()
            .find(|s| rewrite_alter(s, &spec.table, "").is_none())
            .map(|s| {
                format!(
                    "the statement `{}` does not start with ALTER TABLE {}",
                    shorten(s),
                    quote_ident(&spec.table)
                )
            })
    };
    match problem {
        Some(reason) => Err(refused(spec, reason)),
        None => Ok(()),
    }
}

/// ``ALTER TABLE `table` …`` with the table replaced by `target`, or `None` when the
/// statement does not start that way.
fn rewrite_alter(statement: &str, table: &str, target: &str) -> Option<String> {
    let rest = strip_keyword(statement.trim_start(), "ALTER")?;
    let rest = strip_keyword(rest, "TABLE")?;
    let quoted = quote_ident(table);
    let rest = if let Some(rest) = rest.strip_prefix(&quoted) {
        rest
    } else {
        let rest = rest.strip_prefix(table)?;
        // An unquoted name must end at a word boundary.
        if rest
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
        {
            return None;
        }
        rest
    };
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace) || rest.starts_with(';')) {
        return None;
    }
    Some(format!("ALTER TABLE {target}{rest}"))
}

fn strip_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    let rest = &text[keyword.len()..];
    (head.eq_ignore_ascii_case(keyword) && rest.starts_with(char::is_whitespace))
        .then(|| rest.trim_start())
}

async fn show_create(
    c: &mut Conn,
    conn: &ShardConn,
    database: &str,
    table: &str,
) -> Result<Option<Table>, LiveError> {
    let sql = format!("SHOW CREATE TABLE {}", qualify(database, table));
    let row: Option<Row> = match c.query_first(sql).await {
        Ok(row) => row,
        Err(mysql_async::Error::Server(e)) if e.code == ER_NO_SUCH_TABLE => return Ok(None),
        Err(e) => return Err(conn.query_error(format!("SHOW CREATE TABLE `{table}`"), e)),
    };
    let Some(row) = row else {
        return Ok(None);
    };
    // A view answers with four columns, the view's text second-to-last.
    if row.len() != 2 {
        return Err(LiveError::Query {
            shard: conn.shard.clone(),
            address: conn.address.clone(),
            context: format!("SHOW CREATE TABLE `{table}`"),
            message: "it is a view, not a base table".into(),
        });
    }
    let create: String = cell(&row, 1).unwrap_or_default();
    // The temporary clone of `target_indexes` shows as one; its body reads the same.
    let create = match create.strip_prefix("CREATE TEMPORARY TABLE ") {
        Some(rest) => format!("CREATE TABLE {rest}"),
        None => create,
    };
    Table::parse_canonical(&create)
        .map(Some)
        .map_err(|source| LiveError::Canonical {
            shard: conn.shard.clone(),
            source,
        })
}

async fn refuse_foreign_keys(
    c: &mut Conn,
    conn: &ShardConn,
    spec: &ShadowSpec,
    original: &Table,
) -> Result<(), ShadowError> {
    if let Some(fk) = original
        .foreign_keys
        .first()
        .filter(|_| !spec.carry_foreign_keys)
    {
        return Err(refused(
            spec,
            format!(
                "it has foreign key `{}`; the shadow would need its own: set `foreign_keys: \
                 carry` for the keyspace in schemagate.yaml to give the shadow the table's keys, \
                 or change this table with a native ALTER",
                fk.name
            ),
        ));
    }
    let row: Option<Row> = c
        .exec_first(
            "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME \
             FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ? LIMIT 1",
            (&spec.database, &spec.table),
        )
        .await
        .map_err(|e| conn.query_error("looking for foreign keys that reference the table", e))?;
    if let Some(row) = row {
        let schema: String = cell(&row, 0).unwrap_or_default();
        let table: String = cell(&row, 1).unwrap_or_default();
        let name: String = cell(&row, 2).unwrap_or_default();
        return Err(refused(
            spec,
            format!(
                "foreign key `{name}` of `{schema}`.`{table}` references it; after the swap it \
                 would reference the old table (InnoDB moves references along with a renamed \
                 table): change this table with a native ALTER"
            ),
        ));
    }
    Ok(())
}

/// The foreign keys the shadow of `spec` carries: none unless `carry_foreign_keys`.
fn carried_keys(spec: &ShadowSpec, original: &Table) -> Result<Vec<Carried>, ShadowError> {
    if !spec.carry_foreign_keys {
        return Ok(Vec::new());
    }
    let split = foreign_keys::split(&spec.statements).map_err(|r| refused(spec, r))?;
    let keys = foreign_keys::carried(&spec.trigger_prefix, original, &split)
        .map_err(|r| refused(spec, r))?;
    // A cascade fires no trigger. The shadow's own copy of a key would follow it, but InnoDB
    // cascades into the child tables in the order of their keys' names, so into the shadow
    // before the table: a chunk holding the child row then copies it into the shadow after the
    // cascade passed there, and the shadow keeps a row the table loses.
    let acting = original
        .foreign_keys
        .iter()
        .map(|fk| (&fk.name, &fk.definition))
        .chain(keys.iter().map(|k| (&k.name, &k.definition)))
        .find(|(_, definition)| foreign_keys::acts_on_children(definition));
    if let Some((name, _)) = acting {
        return Err(refused(
            spec,
            format!(
                "foreign key `{name}` changes rows when its parent changes (ON DELETE/UPDATE \
                 CASCADE or SET …): a cascade fires no trigger, so the shadow cannot be kept in \
                 step with it; change this table with a native ALTER"
            ),
        ));
    }
    for key in keys.iter().filter(|k| k.new) {
        let Some(fk) = ForeignKey::parse(&key.definition) else {
            continue;
        };
        let database = fk.referenced_database.as_deref().unwrap_or(&spec.database);
        if same_name(database, &spec.database) && same_name(&fk.referenced_table, &spec.table) {
            return Err(refused(
                spec,
                format!(
                    "the new foreign key `{}` references the table itself; after the swap it \
                     would reference the old table: add it with a native ALTER",
                    key.name
                ),
            ));
        }
    }
    // InnoDB renames a generated key name `<table>_ibfk_<n>` along with its table: at the seal
    // the table's keys take the retention name's, which must fit in 64 characters.
    let too_long =
        foreign_keys::overflowing_generated_name(&spec.table, &spec.shadow, &original.foreign_keys);
    if let Some(fk) = too_long {
        return Err(refused(
            spec,
            format!(
                "foreign key `{}` has a generated name, which the seal's rename would make \
                 longer than 64 characters: give it a name of its own first",
                fk.name
            ),
        ));
    }
    Ok(keys)
}

struct Trigger {
    name: String,
    event: String,
    timing: String,
    body: String,
}

/// See [`Shadow::capture`]: `on_table` and `on_shadow` are the triggers found on each.
fn check_capture(
    spec: &ShadowSpec,
    original: &Table,
    shadow_table: Option<&Table>,
    on_table: &[Trigger],
    on_shadow: &[Trigger],
) -> Capture {
    let Some(shadow_table) = shadow_table else {
        return Capture::Broken(format!("the shadow table `{}` does not exist", spec.shadow));
    };
    let layout = match layout(spec, original, shadow_table) {
        Ok(layout) => layout,
        Err(reason) => {
            return Capture::Broken(format!("the shadow no longer fits the table: {reason}"))
        }
    };
    let keys = match carried_keys(spec, original) {
        Ok(keys) => keys,
        Err(e) => return Capture::Broken(e.to_string()),
    };
    let mut expected: Vec<String> = keys.iter().map(Carried::temporary_definition).collect();
    let mut found: Vec<String> = shadow_table
        .foreign_keys
        .iter()
        .map(|fk| fk.definition.clone())
        .collect();
    expected.sort();
    found.sort();
    if expected != found {
        return Capture::Broken(
            "the shadow's foreign keys are not the ones this change gives it".to_string(),
        );
    }
    let shadow = Shadow {
        spec: spec.clone(),
        layout,
        keys,
        resumed: true,
    };
    for (name, event, body) in shadow.trigger_bodies() {
        match on_table.iter().find(|t| t.name == name) {
            None => return Capture::Broken(format!("capture trigger `{name}` is missing")),
            Some(t) if t.event != event || t.timing != "AFTER" || t.body != body => {
                return Capture::Broken(format!(
                    "capture trigger `{name}` is not the one this change creates"
                ))
            }
            Some(_) => {}
        }
    }
    if !on_shadow.is_empty() {
        let names: Vec<&str> = on_shadow.iter().map(|t| t.name.as_str()).collect();
        return Capture::Broken(format!(
            "the shadow table has triggers of its own ({})",
            names.join(", ")
        ));
    }
    Capture::Intact(Box::new(shadow))
}

async fn triggers_on(
    c: &mut Conn,
    conn: &ShardConn,
    database: &str,
    table: &str,
) -> Result<Vec<Trigger>, ShadowError> {
    let rows: Vec<Row> = c
        .exec(
            "SELECT TRIGGER_NAME, EVENT_MANIPULATION, ACTION_TIMING, ACTION_STATEMENT \
             FROM information_schema.TRIGGERS \
             WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?",
            (database, table),
        )
        .await
        .map_err(|e| conn.query_error(format!("listing the triggers of `{table}`"), e))?;
    Ok(rows
        .iter()
        .map(|row| Trigger {
            name: cell(row, 0).unwrap_or_default(),
            event: cell(row, 1).unwrap_or_default(),
            timing: cell(row, 2).unwrap_or_default(),
            body: cell(row, 3).unwrap_or_default(),
        })
        .collect())
}

/// Runs a DDL statement, retrying when its metadata lock wait times out.
async fn ddl(c: &mut Conn, conn: &ShardConn, sql: &str, context: &str) -> Result<(), LiveError> {
    let mut attempt = 1;
    loop {
        match c.query_drop(sql).await {
            Ok(()) => return Ok(()),
            Err(e) if is_lock_conflict(&e) && attempt < DDL_ATTEMPTS => {
                tracing::info!(error = %e, "{context}: retrying");
                tokio::time::sleep(RETRY_PAUSE * attempt).await;
                attempt += 1;
            }
            Err(e) => return Err(conn.query_error(context, e)),
        }
    }
}

/// Runs a DDL statement that needs a metadata lock the application's sessions take too (on
/// the live table, or on the shadow its triggers write), without ever queueing for it: a
/// queued request holds up every session that comes after it, so a long transaction on the
/// table would stall all writes behind the tool. Each try gives up at once
/// (`lock_wait_timeout = 0`); tries repeat every millisecond for [`MDL_TRY_BUDGET`], then
/// again after growing pauses, for at most `patience`.
async fn ddl_tried(
    c: &mut Conn,
    conn: &ShardConn,
    sql: &str,
    context: &str,
    patience: Duration,
) -> Result<(), LiveError> {
    c.query_drop("SET @_sg_lock_wait = @@session.lock_wait_timeout, SESSION lock_wait_timeout = 0")
        .await
        .map_err(|e| conn.query_error("setting lock_wait_timeout", e))?;
    let started = Instant::now();
    let mut round = 0;
    let outcome = 'rounds: loop {
        let deadline = Instant::now() + MDL_TRY_BUDGET;
        let busy = loop {
            match c.query_drop(sql).await {
                Ok(()) => break 'rounds Ok(()),
                Err(e) if is_lock_conflict(&e) => {
                    if Instant::now() > deadline {
                        break e;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => break 'rounds Err(e),
            }
        };
        if started.elapsed() > patience {
            break Err(busy);
        }
        round += 1;
        tracing::info!(error = %busy, round, "{context}: the table is in use; trying again");
        tokio::time::sleep(RETRY_PAUSE * round.min(10)).await;
    };
    let restored = c
        .query_drop("SET SESSION lock_wait_timeout = @_sg_lock_wait")
        .await
        .map_err(|e| conn.query_error("restoring lock_wait_timeout", e));
    outcome.map_err(|e| {
        conn.query_error(
            format!(
                "{context} (the table stayed in use by other sessions for {} ms; a long \
                 transaction may hold it: run again later)",
                patience.as_millis()
            ),
            e,
        )
    })?;
    restored
}

fn is_lock_conflict(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s)
        if s.code == ER_LOCK_WAIT_TIMEOUT || s.code == ER_LOCK_DEADLOCK)
}

/// Waits while the server runs more than `max` threads (0 disables the check).
async fn throttle(c: &mut Conn, conn: &ShardConn, max: u64) -> Result<(), LiveError> {
    if max == 0 {
        return Ok(());
    }
    loop {
        let row: Option<Row> = c
            .query_first("SHOW GLOBAL STATUS LIKE 'Threads_running'")
            .await
            .map_err(|e| conn.query_error("reading Threads_running", e))?;
        let running = row
            .and_then(|r| cell::<String>(&r, 1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if running <= max {
            return Ok(());
        }
        tracing::info!(
            shard = %conn.shard,
            running,
            max,
            "server busy: pausing the shadow copy"
        );
        tokio::time::sleep(THROTTLE_PAUSE).await;
    }
}

/// Holds the copy while a replica is behind (or not replicating), so the copy's writes never
/// push replicas further out than `max_replica_lag` (pt-online-schema-change's `--max-lag`).
async fn wait_for_replicas(conn: &ShardConn, options: &CopyOptions) -> Result<(), LiveError> {
    for replica in &options.replicas {
        loop {
            let lag = replica.replica_lag().await?;
            if lag.is_some_and(|l| l <= options.max_replica_lag) {
                break;
            }
            tracing::info!(
                shard = %conn.shard,
                replica = %replica.address,
                lag_s = lag.map(|l| l.as_secs()),
                "replica behind: pausing the shadow copy"
            );
            tokio::time::sleep(THROTTLE_PAUSE).await;
        }
    }
    Ok(())
}

fn snapshot() -> TxOpts {
    let mut opts = TxOpts::new();
    opts.with_consistent_snapshot(true)
        .with_isolation_level(IsolationLevel::RepeatableRead)
        .with_readonly(true);
    opts
}

fn sums(row: Result<Option<Row>, mysql_async::Error>) -> Result<(u64, u64), mysql_async::Error> {
    Ok(row?
        .map(|r| {
            (
                cell::<u64>(&r, 0).unwrap_or_default(),
                cell::<u64>(&r, 1).unwrap_or_default(),
            )
        })
        .unwrap_or_default())
}

/// Resizes the next chunk to take about `target`. Growth is capped at 4× per chunk, so that
/// one fast chunk over cached pages does not size the next one for a cold part of the table.
fn next_chunk_size(size: u64, elapsed: Duration, target: Duration) -> u64 {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    let ideal = size as f64 * target.as_secs_f64() / seconds;
    let capped = ideal.min(size as f64 * 4.0);
    (capped as u64).clamp(MIN_CHUNK, MAX_CHUNK)
}

fn cell<T: FromValue>(row: &Row, index: usize) -> Option<T> {
    row.get_opt::<T, usize>(index).and_then(Result::ok)
}

/// A key value as JSON; `None` for a value the kind cannot hold.
fn to_json(kind: KeyKind, value: Value) -> Option<Json> {
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).ok().map(Json::String);
    match (kind, value) {
        (_, Value::NULL) => None,
        (KeyKind::Int | KeyKind::Enum, Value::Int(i)) => Some(Json::from(i)),
        (KeyKind::Int | KeyKind::Enum, Value::UInt(u)) => Some(Json::from(u)),
        (KeyKind::Int | KeyKind::Enum, Value::Bytes(b)) => {
            let s = String::from_utf8(b).ok()?;
            s.parse::<i64>()
                .map(Json::from)
                .or_else(|_| s.parse::<u64>().map(Json::from))
                .ok()
        }
        (KeyKind::Float, Value::Float(f)) => {
            serde_json::Number::from_f64(f64::from(f)).map(Json::Number)
        }
        (KeyKind::Float, Value::Double(f)) => serde_json::Number::from_f64(f).map(Json::Number),
        (KeyKind::Float, Value::Bytes(b)) => {
            let f = String::from_utf8(b).ok()?.parse::<f64>().ok()?;
            serde_json::Number::from_f64(f).map(Json::Number)
        }
        (KeyKind::Temporal, Value::Date(y, m, d, h, i, s, us)) => Some(Json::String(format!(
            "{y:04}-{m:02}-{d:02} {h:02}:{i:02}:{s:02}.{us:06}"
        ))),
        (KeyKind::Temporal, Value::Time(negative, days, h, i, s, us)) => {
            let hours = days * 24 + u32::from(h);
            let sign = if negative { "-" } else { "" };
            Some(Json::String(format!(
                "{sign}{hours:02}:{i:02}:{s:02}.{us:06}"
            )))
        }
        (
            KeyKind::Decimal | KeyKind::Text | KeyKind::Binary | KeyKind::Temporal,
            Value::Bytes(b),
        ) => text(b),
        _ => None,
    }
}

/// A checkpoint value as a statement parameter (validated by `parse_checkpoint` or produced
/// by `to_json`).
fn bind(kind: KeyKind, value: &Json) -> Value {
    match (kind, value) {
        (_, Json::Number(n)) if kind != KeyKind::Float => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::UInt))
            .unwrap_or_else(|| Value::Double(n.as_f64().unwrap_or_default())),
        (_, Json::Number(n)) => Value::Double(n.as_f64().unwrap_or_default()),
        (_, Json::String(s)) => Value::Bytes(s.clone().into_bytes()),
        _ => Value::NULL,
    }
}

fn show_value(value: &Value) -> String {
    match value {
        Value::NULL => "NULL".to_string(),
        Value::Bytes(b) => format!("'{}'", shorten(&String::from_utf8_lossy(b))),
        other => shorten(&other.as_sql(false)),
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= SHOWN_VALUE_CHARS {
        return text.to_string();
    }
    let head: String = text.chars().take(SHOWN_VALUE_CHARS).collect();
    format!("{head}…")
}

/// A key part of an index: column, prefix length, descending.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPart {
    column: String,
    prefix: Option<u32>,
    descending: bool,
}

/// The key parts of an index definition line, e.g. ``UNIQUE KEY `u` (`a`,`b`(10) DESC)``;
/// `None` for anything else inside the parentheses (e.g. expressions).
fn key_parts(definition: &str) -> Option<Vec<KeyPart>> {
    let chars: Vec<char> = definition.chars().collect();
    let mut i = 0;
    let mut quoted = false;
    while i < chars.len() {
        match chars[i] {
            '`' => quoted = !quoted,
            '(' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    i += 1;
    let mut parts = Vec::new();
    loop {
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        if chars.get(i) != Some(&'`') {
            return None;
        }
        i += 1;
        let mut column = String::new();
        loop {
            match (chars.get(i), chars.get(i + 1)) {
                (Some('`'), Some('`')) => {
                    column.push('`');
                    i += 2;
                }
                (Some('`'), _) => {
                    i += 1;
                    break;
                }
                (Some(c), _) => {
                    column.push(*c);
                    i += 1;
                }
                (None, _) => return None,
            }
        }
        let mut prefix = None;
        if chars.get(i) == Some(&'(') {
            let end = chars[i..].iter().position(|c| *c == ')')? + i;
            prefix = Some(chars[i + 1..end].iter().collect::<String>().parse().ok()?);
            i = end + 1;
        }
        let mut word = String::new();
        while let Some(c) = chars.get(i).filter(|c| *c != &',' && *c != &')') {
            word.push(*c);
            i += 1;
        }
        let descending = match word.trim().to_ascii_uppercase().as_str() {
            "" | "ASC" => false,
            "DESC" => true,
            _ => return None,
        };
        parts.push(KeyPart {
            column,
            prefix,
            descending,
        });
        match chars.get(i) {
            Some(',') => i += 1,
            Some(')') => return Some(parts),
            _ => return None,
        }
    }
}

fn key_kind(column: &Column) -> Option<(KeyKind, Option<String>)> {
    let t = &column.data_type;
    let kind = match t.base.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            KeyKind::Int
        }
        "float" | "double" | "real" => KeyKind::Float,
        "decimal" | "numeric" => {
            let precision = t.args.first().map_or("10", String::as_str);
            let scale = t.args.get(1).map_or("0", String::as_str);
            return Some((
                KeyKind::Decimal,
                Some(format!("DECIMAL({precision},{scale})")),
            ));
        }
        "char" | "varchar" => KeyKind::Text,
        "binary" | "varbinary" => KeyKind::Binary,
        "date" | "datetime" | "timestamp" | "time" => KeyKind::Temporal,
        "enum" => KeyKind::Enum,
        _ => return None,
    };
    Some((kind, None))
}

/// The table's indexes that can serve as the shared key, PRIMARY first: unique, over NOT NULL
/// stored columns of a supported type, whole columns in ascending order.
fn candidate_keys(table: &Table) -> Vec<(&crate::schema::Index, Vec<KeyColumn>)> {
    let mut found: Vec<_> = table
        .indexes
        .iter()
        .filter(|index| matches!(index.kind, IndexKind::Primary | IndexKind::Unique))
        .filter(|index| !index.definition.to_ascii_uppercase().contains("USING HASH"))
        .filter_map(|index| {
            let parts = key_parts(&index.definition)?;
            let columns = parts
                .iter()
                .map(|part| {
                    let column = table.column(&part.column)?;
                    if part.prefix.is_some()
                        || part.descending
                        || column.nullable
                        || column.generated.is_some()
                    {
                        return None;
                    }
                    let (kind, cast) = key_kind(column)?;
                    Some(KeyColumn {
                        name: column.name.clone(),
                        kind,
                        cast,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some((index, columns))
        })
        .collect();
    found.sort_by_key(|(index, _)| index.kind != IndexKind::Primary);
    found
}

/// Charset and collation a text column really has (the table's default when not shown).
fn text_charset(column: &Column, table: &Table) -> Option<(String, String)> {
    if !column.data_type.is_textual() {
        return None;
    }
    let charset = column
        .charset
        .clone()
        .or_else(|| table.charset().map(str::to_string))
        .unwrap_or_default();
    let collation = column
        .collation
        .clone()
        .or_else(|| table.collation().map(str::to_string))
        .unwrap_or_default();
    Some((charset, collation))
}

/// MySQL column names are case-insensitive.
fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

fn column<'a>(table: &'a Table, name: &str) -> Option<&'a Column> {
    table
        .column(name)
        .or_else(|| table.columns.iter().find(|c| same_name(&c.name, name)))
}

/// How a trigger must move a column's value between time zones, see [`ZoneShift`].
fn zone_shift(from: &Column, to: &Column) -> Option<ZoneShift> {
    match (from.data_type.base.as_str(), to.data_type.base.as_str()) {
        ("timestamp", "timestamp") => None,
        ("timestamp", _) => Some(ZoneShift::FromTimestamp),
        ("datetime" | "date", "timestamp") => Some(ZoneShift::ToTimestamp),
        _ => None,
    }
}

/// Words after `DROP` that name something other than a column.
const DROP_NOT_A_COLUMN: [&str; 13] = [
    "INDEX",
    "KEY",
    "PRIMARY",
    "UNIQUE",
    "FOREIGN",
    "CONSTRAINT",
    "CHECK",
    "PARTITION",
    "SYSTEM",
    "PERIOD",
    "DEFAULT",
    "FULLTEXT",
    "SPATIAL",
];

/// The significant tokens of a statement (none when it does not tokenize).
fn tokens(statement: &str) -> Vec<Token> {
    crate::schema::sql::tokenize(statement)
        .map(|tokens| {
            tokens
                .into_iter()
                .map(|t| t.token)
                .filter(crate::schema::sql::significant)
                .collect()
        })
        .unwrap_or_default()
}

/// Columns the statements drop (`DROP [COLUMN] [IF EXISTS] c`).
fn dropped_columns(statements: &[String]) -> Vec<String> {
    let mut dropped = Vec::new();
    for statement in statements {
        let tokens = tokens(statement);
        let word = |i: usize| keyword(tokens.get(i)?);
        for i in 0..tokens.len() {
            if word(i).as_deref() != Some("DROP") {
                continue;
            }
            let mut at = i + 1;
            match word(at).as_deref() {
                Some(w) if DROP_NOT_A_COLUMN.contains(&w) => continue,
                Some("COLUMN") => at += 1,
                _ => {}
            }
            if word(at).as_deref() == Some("IF") && word(at + 1).as_deref() == Some("EXISTS") {
                at += 2;
            }
            if let Some(Token::Word(name)) = tokens.get(at) {
                dropped.push(name.value.clone());
            }
        }
    }
    dropped
}

/// True when the statement renames the table itself (`RENAME [TO|AS] …`, not `RENAME
/// COLUMN`/`INDEX`/`KEY`).
fn renames_table(statement: &str) -> bool {
    let tokens = tokens(statement);
    tokens.iter().enumerate().any(|(i, token)| {
        keyword(token).as_deref() == Some("RENAME")
            && !matches!(
                tokens.get(i + 1).and_then(keyword).as_deref(),
                Some("COLUMN" | "INDEX" | "KEY")
            )
    })
}

fn same_type(a: &Column, ta: &Table, b: &Column, tb: &Table) -> bool {
    let (x, y) = (&a.data_type, &b.data_type);
    x.base == y.base
        && x.args == y.args
        && x.unsigned == y.unsigned
        && x.zerofill == y.zerofill
        && text_charset(a, ta) == text_charset(b, tb)
}

const INT_TYPES: [&str; 5] = ["tinyint", "smallint", "mediumint", "int", "bigint"];
const TEXT_TYPES: [&str; 4] = ["tinytext", "text", "mediumtext", "longtext"];
const BLOB_TYPES: [&str; 4] = ["tinyblob", "blob", "mediumblob", "longblob"];

fn rank(types: &[&str], base: &str) -> Option<usize> {
    types.iter().position(|t| *t == base)
}

fn length(column: &Column) -> Option<u64> {
    column.data_type.args.first()?.parse().ok()
}

/// True when every value of `a` reads back with the same text from `b`.
fn widens(a: &Column, ta: &Table, b: &Column, tb: &Table) -> bool {
    let (x, y) = (&a.data_type, &b.data_type);
    if x.unsigned != y.unsigned || x.zerofill || y.zerofill {
        return false;
    }
    if let (Some(i), Some(j)) = (rank(&INT_TYPES, &x.base), rank(&INT_TYPES, &y.base)) {
        return i <= j;
    }
    if text_charset(a, ta) != text_charset(b, tb) {
        return false;
    }
    let longer = || length(b) >= length(a) && length(a).is_some();
    match (x.base.as_str(), y.base.as_str()) {
        ("varchar", "varchar") | ("char", "char") | ("char", "varchar") => longer(),
        ("varbinary", "varbinary") => longer(),
        ("varchar", t) => rank(&TEXT_TYPES, t).is_some(),
        ("varbinary", t) => rank(&BLOB_TYPES, t).is_some(),
        (s, t) => match (rank(&TEXT_TYPES, s), rank(&TEXT_TYPES, t)) {
            (Some(i), Some(j)) => i <= j,
            _ => {
                matches!((rank(&BLOB_TYPES, s), rank(&BLOB_TYPES, t)), (Some(i), Some(j)) if i <= j)
            }
        },
    }
}

/// Signed or unsigned range of an integer type.
fn int_range(column: &Column) -> Option<(i128, i128)> {
    let bits = match column.data_type.base.as_str() {
        "tinyint" => 8,
        "smallint" => 16,
        "mediumint" => 24,
        "int" | "integer" => 32,
        "bigint" => 64,
        _ => return None,
    };
    Some(if column.data_type.unsigned {
        (0, (1i128 << bits) - 1)
    } else {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    })
}

/// SQL condition true for values of `a` that `b` cannot hold, for the narrowings the copy
/// would otherwise turn into silent truncation or clipping.
fn does_not_fit(a: &Column, b: &Column) -> Option<String> {
    let name = quote_ident(&a.name);
    if let (Some((lo_a, hi_a)), Some((lo_b, hi_b))) = (int_range(a), int_range(b)) {
        return (lo_a < lo_b || hi_a > hi_b)
            .then(|| format!("({name} < {lo_b} OR {name} > {hi_b})"));
    }
    let (x, y) = (a.data_type.base.as_str(), b.data_type.base.as_str());
    let textual = ["char", "varchar"];
    let binary = ["binary", "varbinary"];
    let (Some(la), Some(lb)) = (length(a), length(b)) else {
        return None;
    };
    if lb >= la {
        return None;
    }
    if textual.contains(&x) && textual.contains(&y) {
        Some(format!("CHAR_LENGTH({name}) > {lb}"))
    } else if binary.contains(&x) && binary.contains(&y) {
        Some(format!("LENGTH({name}) > {lb}"))
    } else {
        None
    }
}

/// Works out the shared key, the copied and compared columns, and the data checks. Column
/// names match case-insensitively, as they do in MySQL (`MODIFY C2 …` renames `c2` to `C2`).
fn layout(spec: &ShadowSpec, original: &Table, shadow: &Table) -> Result<Layout, String> {
    for (from, to) in &spec.renames {
        if column(original, from).is_none() || column(shadow, to).is_none() {
            return Err(format!(
                "the rename of `{from}` to `{to}` does not match the definitions (`{from}` must \
                 exist now and `{to}` after the change)"
            ));
        }
    }
    let renamed_to = |name: &str| {
        spec.renames
            .iter()
            .find(|(from, _)| same_name(from, name))
            .map(|(_, to)| to.as_str())
    };
    let is_rename_target = |name: &str| spec.renames.iter().any(|(_, to)| same_name(to, name));
    // A column the statements drop and add again is a new column, not a changed one.
    let dropped = dropped_columns(&spec.statements);
    let mut columns = Vec::new();
    let mut compared = Vec::new();
    let mut checks = Vec::new();
    let mut shifts = Vec::new();
    for column_now in &original.columns {
        let target = match renamed_to(&column_now.name) {
            Some(to) => to,
            None if is_rename_target(&column_now.name) => continue,
            None if dropped.iter().any(|d| same_name(d, &column_now.name)) => continue,
            None => column_now.name.as_str(),
        };
        let Some(new) = column(shadow, target) else {
            continue;
        };
        if column_now.generated.is_some() || new.generated.is_some() {
            continue;
        }
        columns.push((column_now.name.clone(), new.name.clone()));
        if same_type(column_now, original, new, shadow) || widens(column_now, original, new, shadow)
        {
            compared.push(Compared {
                from: column_now.name.clone(),
                to: new.name.clone(),
                bytes: !prints_plain(column_now) || !prints_plain(new),
                nullable: column_now.nullable || new.nullable,
            });
        }
        if let Some(shift) = zone_shift(column_now, new) {
            shifts.push((column_now.name.clone(), shift));
        }
        if column_now.nullable && !new.nullable {
            checks.push(DataCheck::NotNull {
                column: column_now.name.clone(),
            });
        }
        if let Some(condition) = does_not_fit(column_now, new) {
            checks.push(DataCheck::Fits {
                column: column_now.name.clone(),
                condition,
                new_type: new.definition[new.data_type.span.0..new.data_type.span.1].to_string(),
            });
        }
    }

    let to_new = |name: &str| {
        columns
            .iter()
            .find(|(a, _)| a == name)
            .map(|(_, b)| b.as_str())
    };
    let to_old: HashMap<&str, &str> = columns
        .iter()
        .map(|(a, b)| (b.as_str(), a.as_str()))
        .collect();
    let shadow_unique: Vec<(&crate::schema::Index, Vec<KeyPart>)> = shadow
        .indexes
        .iter()
        .filter(|i| matches!(i.kind, IndexKind::Primary | IndexKind::Unique))
        .filter_map(|i| Some((i, key_parts(&i.definition)?)))
        .collect();

    let candidates = candidate_keys(original);
    let key = candidates.iter().find_map(|(index, key)| {
        let unchanged = key.iter().all(|k| {
            to_new(&k.name).is_some_and(|new| same_name(new, &k.name))
                && match (column(original, &k.name), column(shadow, &k.name)) {
                    (Some(a), Some(b)) => {
                        same_type(a, original, b, shadow) && !b.nullable && b.generated.is_none()
                    }
                    _ => false,
                }
        });
        if !unchanged {
            return None;
        }
        // The key's columns in order, whole and ascending, first in a unique index of the
        // shadow; an index of exactly those columns is preferred.
        let leads = |parts: &[KeyPart]| {
            parts.len() >= key.len()
                && parts.iter().zip(key).all(|(p, k)| {
                    same_name(&p.column, &k.name) && p.prefix.is_none() && !p.descending
                })
        };
        let usable = shadow_unique.iter().filter(|(i, parts)| {
            !i.definition.to_ascii_uppercase().contains("USING HASH") && leads(parts)
        });
        let (shadow_index, parts) = usable.min_by_key(|(_, parts)| parts.len())?;
        Some(Key {
            columns: key.clone(),
            index: index.name.clone(),
            shadow_index: shadow_index.name.clone(),
            shadow_exact: parts.len() == key.len(),
        })
    });
    let Some(key) = key else {
        return Err(
            "no PRIMARY KEY or UNIQUE key over NOT NULL columns stays the same through the \
             change (same columns, same types, still unique): change the key in a deployment \
             of its own, with the other changes after it"
                .to_string(),
        );
    };

    // UNIQUE keys the table does not already guarantee: duplicates would be dropped silently.
    let old_unique: Vec<Vec<KeyPart>> = original
        .indexes
        .iter()
        .filter(|i| matches!(i.kind, IndexKind::Primary | IndexKind::Unique))
        .filter_map(|i| key_parts(&i.definition))
        .collect();
    for (index, parts) in &shadow_unique {
        let Some(old_parts) = parts
            .iter()
            .map(|p| {
                to_old.get(p.column.as_str()).map(|old| KeyPart {
                    column: old.to_string(),
                    prefix: p.prefix,
                    descending: false,
                })
            })
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        // Implied when an old unique key over whole columns uses only columns of this one.
        let implied = old_unique.iter().any(|old| {
            old.iter().all(|o| {
                o.prefix.is_none()
                    && old_parts
                        .iter()
                        .any(|p| p.column == o.column && p.prefix.is_none())
            })
        });
        if !implied {
            checks.push(DataCheck::Unique {
                index: index.name.clone(),
                parts: old_parts
                    .into_iter()
                    .map(|p| (p.column, p.prefix))
                    .collect(),
            });
        }
    }
    Ok(Layout {
        key,
        columns,
        compared,
        checks,
        shifts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sql: &str) -> Table {
        Table::parse_canonical(sql).unwrap()
    }

    #[test]
    fn key_parts_are_read_from_index_lines() {
        assert_eq!(
            key_parts("UNIQUE KEY `u(x)` (`a`,`b``c`(10) DESC)").unwrap(),
            [
                KeyPart {
                    column: "a".into(),
                    prefix: None,
                    descending: false
                },
                KeyPart {
                    column: "b`c".into(),
                    prefix: Some(10),
                    descending: true
                },
            ]
        );
        assert_eq!(key_parts("PRIMARY KEY (`id`)").unwrap().len(), 1);
        assert!(key_parts("KEY `e` ((`a` + 1))").is_none());
    }

    #[test]
    fn statements_are_pointed_at_the_shadow() {
        assert_eq!(
            rewrite_alter("alter  table `t` ADD COLUMN x int", "t", "`d`.`s`").unwrap(),
            "ALTER TABLE `d`.`s` ADD COLUMN x int"
        );
        assert_eq!(
            rewrite_alter("ALTER TABLE t\nDROP KEY k", "t", "S").unwrap(),
            "ALTER TABLE S\nDROP KEY k"
        );
        assert!(rewrite_alter("ALTER TABLE `tt` ADD x int", "t", "S").is_none());
        assert!(rewrite_alter("ALTER TABLE tt ADD x int", "t", "S").is_none());
        assert!(rewrite_alter("DROP TABLE t", "t", "S").is_none());
    }

    #[test]
    fn dropped_columns_and_table_renames_are_read_from_statements() {
        let statements = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dropped_columns(&statements(&[
                "ALTER TABLE `t` DROP COLUMN c1, ADD COLUMN c1 int DEFAULT 47, drop `c``2`, \
                 DROP PRIMARY KEY, DROP KEY k, DROP INDEX i, DROP FOREIGN KEY f, \
                 DROP CONSTRAINT c, DROP CHECK ck, ALTER COLUMN x DROP DEFAULT",
                "ALTER TABLE `t` DROP IF EXISTS c3, DROP COLUMN IF EXISTS `c4`",
                "ALTER TABLE `t` ADD COLUMN d int COMMENT 'drop me'",
            ])),
            ["c1", "c`2", "c3", "c4"]
        );
        assert!(renames_table("ALTER TABLE `t` RENAME TO u"));
        assert!(renames_table("ALTER TABLE `t` ADD x int, rename as u"));
        assert!(renames_table("ALTER TABLE `t` RENAME u"));
        assert!(!renames_table("ALTER TABLE `t` RENAME COLUMN a TO b"));
        assert!(!renames_table(
            "ALTER TABLE `t` RENAME INDEX a TO b, RENAME KEY c TO d"
        ));
        assert!(!renames_table(
            "ALTER TABLE `t` ADD `rename` int COMMENT 'rename to x'"
        ));
    }

    #[test]
    fn the_checkpoint_moves_only_past_chunks_finished_below_it() {
        let mut seen = Vec::new();
        let mut tally = Tally {
            progress: Progress {
                rows_copied: 0,
                rows_estimated: 0,
                checkpoint: None,
                chunk_size: 0,
                rows_per_sec: 0.0,
            },
            last: None,
            finished: HashMap::new(),
            contiguous: 0,
            started: Instant::now(),
            on_chunk: |p: &Progress| seen.push(p.checkpoint.clone()),
        };
        let chunk = |last: Option<i64>| Chunk {
            read: 10,
            last: last.map(|k| vec![Json::from(k)]),
        };
        tally.finish(1, chunk(Some(20)), 10);
        tally.finish(0, chunk(Some(10)), 10);
        tally.finish(3, chunk(None), 10);
        tally.finish(2, chunk(Some(30)), 10);
        assert_eq!(tally.progress.rows_copied, 40);
        drop(tally);
        assert_eq!(
            seen,
            [
                None,
                Some("[20]".into()),
                Some("[20]".into()),
                Some("[30]".into())
            ]
        );
    }

    #[test]
    fn reverse_triggers_are_created_without_strict_mode() {
        let session = "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";
        assert_eq!(
            capture_sql_mode(session),
            format!("{session},NO_AUTO_VALUE_ON_ZERO")
        );
        assert_eq!(
            reverse_sql_mode(session),
            "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO"
        );
        // TRADITIONAL implies strict mode again; an empty session mode stays valid.
        assert_eq!(
            reverse_sql_mode("STRICT_ALL_TABLES,TRADITIONAL,NO_AUTO_VALUE_ON_ZERO"),
            "NO_AUTO_VALUE_ON_ZERO"
        );
        assert_eq!(capture_sql_mode(""), "NO_AUTO_VALUE_ON_ZERO");
    }

    #[test]
    fn chunks_follow_the_time_budget_within_bounds() {
        let target = Duration::from_millis(500);
        assert_eq!(
            next_chunk_size(1000, Duration::from_millis(250), target),
            2000
        );
        assert_eq!(
            next_chunk_size(1000, Duration::from_millis(1), target),
            4000
        );
        assert_eq!(
            next_chunk_size(1000, Duration::from_secs(100), target),
            MIN_CHUNK
        );
        assert_eq!(
            next_chunk_size(90_000, Duration::from_millis(10), target),
            MAX_CHUNK
        );
    }

    #[test]
    fn composite_ranges_expand_per_column() {
        let original = table(
            "CREATE TABLE `t` (\n  `a` int(11) NOT NULL,\n  `b` varbinary(8) NOT NULL,\n  \
             `c` int(11) DEFAULT NULL,\n  PRIMARY KEY (`a`,`b`)\n) ENGINE=InnoDB",
        );
        let spec = ShadowSpec {
            database: "d".into(),
            table: "t".into(),
            shadow: "s".into(),
            trigger_prefix: "p".into(),
            statements: vec![],
            renames: vec![],
            defer_indexes: true,
            carry_foreign_keys: false,
        };
        let layout = layout(&spec, &original, &original).unwrap();
        let shadow = Shadow {
            spec,
            layout,
            keys: Vec::new(),
            resumed: false,
        };
        assert_eq!(
            shadow.range_where(true, true),
            " WHERE ((`a` > ?) OR (`a` = ? AND `b` > UNHEX(?))) AND \
             ((`a` < ?) OR (`a` = ? AND `b` <= UNHEX(?)))"
        );
        let lo = [Json::from(1), Json::from("ff00")];
        let hi = [Json::from(2), Json::from("00")];
        let params = shadow.range_params(Some(&lo), Some(&hi));
        assert_eq!(
            params,
            [
                Value::Int(1),
                Value::Int(1),
                Value::Bytes(b"ff00".to_vec()),
                Value::Int(2),
                Value::Int(2),
                Value::Bytes(b"00".to_vec()),
            ]
        );
    }

    #[test]
    fn widenings_are_compared_and_narrowings_checked() {
        let a = table(
            "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `v` varchar(20) DEFAULT NULL,\n  \
             `n` int(11) DEFAULT NULL,\n  `d` decimal(5,1) DEFAULT NULL,\n  \
             PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        );
        let b = table(
            "CREATE TABLE `s` (\n  `id` int(11) NOT NULL,\n  `v` varchar(10) DEFAULT NULL,\n  \
             `n` bigint(20) NOT NULL,\n  `d` decimal(6,2) DEFAULT NULL,\n  \
             PRIMARY KEY (`id`),\n  UNIQUE KEY `uv` (`v`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        );
        let spec = ShadowSpec {
            database: "d".into(),
            table: "t".into(),
            shadow: "s".into(),
            trigger_prefix: "p".into(),
            statements: vec![],
            renames: vec![],
            defer_indexes: true,
            carry_foreign_keys: false,
        };
        let l = layout(&spec, &a, &b).unwrap();
        let compared: Vec<&str> = l.compared.iter().map(|c| c.from.as_str()).collect();
        assert_eq!(compared, ["id", "n"]);
        assert!(matches!(&l.checks[0], DataCheck::Fits { column, .. } if column == "v"));
        assert!(matches!(&l.checks[1], DataCheck::NotNull { column } if column == "n"));
        assert!(matches!(&l.checks[2], DataCheck::Unique { index, .. } if index == "uv"));
    }
}
