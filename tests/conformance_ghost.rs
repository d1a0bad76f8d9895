//! The gh-ost online-migration suite (`shared/conformance/gh-ost/<case>/`, see its README) run
//! through schemagate's shadow strategy (`reconciler::deploy::shadow`) on real MariaDB servers.
//!
//! Per case, in a fresh database of a sandbox server:
//! 1. `create.sql` is piped to the `mariadb` client (`--database=<db>`), as gh-ost's
//!    `localtests/test.sh` does: it makes `gh_ost_test` and usually an EVENT that writes to it
//!    every second, the concurrent DML of the migration. `before.sql` runs next.
//! 2. The ALTER clause is the last `--alter` of `extra_args`, after gh-ost's test default
//!    `--alter='engine=innodb'` (test.sh passes that before the case's arguments, so a case
//!    without `--alter` rebuilds the table). The spec is ``ALTER TABLE `gh_ost_test` <clause>``
//!    with artifact names from `reconciler::naming`.
//! 3. `Shadow::prepare` → `Shadow::copy` → writes go on until every enabled event of the
//!    database has run again after the copy (at least `WRITES_AFTER_COPY`) → the writer stops:
//!    every event is disabled and the running executions are waited for → `Shadow::checksum`.
//! 4. The oracle: `SELECT <orig_columns>` of the table and `SELECT <ghost_columns>` of the
//!    shadow (default `*`), both `ORDER BY <order_by>` (default: the table's primary key, else
//!    its first unique key, else the rows are sorted here), must be identical, value for
//!    value (text protocol); `expect_table_structure` must appear in the shadow's
//!    `SHOW CREATE TABLE`.
//! 5. The seal: triggers dropped, then one `RENAME TABLE t TO _sg…_old_t, _sg…_new_t TO t`. The
//!    new table's `SHOW CREATE TABLE` must equal that of a native `ALTER TABLE … <clause>` run on
//!    an empty `CREATE TABLE … LIKE` clone taken before the migration (AUTO_INCREMENT=N aside);
//!    then no `_sg` table and no trigger beyond the case's own may be left.
//!
//! `expect_failure` cases: the migration (prepare → copy → checksum) must fail, once while the
//! writer runs and once after it stopped; after `Shadow::cleanup` the table must have the same
//! `SHOW CREATE TABLE` as before, the database the same tables and triggers, and (second
//! attempt, writer stopped so that the content is fixed) the same rows. gh-ost's message is
//! informative only; schemagate's is shown in the report.
//!
//! Decisions, each visible in the report:
//! - `sql_mode` is a global setting (the engine's pool connections, the client and new
//!   sessions inherit it): such a case, and one with `before.sql`/`after.sql` (they set
//!   globals), owns its server while it runs (a write lock; other cases hold read locks).
//!   The global sql_mode is set before `create.sql`, the per-case connection pool is created
//!   after it, and the server's original mode is restored before `destroy.sql` (test.sh order).
//! - `ignore_versions` is matched as test.sh does (`^` + the pattern, an extended regular
//!   expression, evaluated by the server's REGEXP) against `@@version` and `@@version_comment`,
//!   case-insensitively for both (test.sh is case-sensitive on the version only because
//!   MariaDB's own builds say "mariadb" in the comment; this Debian build does not).
//! - Cases whose SQL sets binary-log variables (`before.sql`/`after.sql`) run on a server of
//!   their own started with `--log-bin` (the shared sandbox runs `--skip-log-bin`, where the
//!   limit under test cannot occur); if it cannot start, they are skipped in that category.
//! - A case whose `create.sql` says its table comes from `sysbench prepare` (`sysbench/`, as
//!   the README documents) needs the `sysbench` tool: skipped when it is not on PATH. When it
//!   is, the table is `sbtest1` and a `sysbench oltp_write_only` run is the writer, as in
//!   test.sh (that path cannot be exercised here: sysbench is not installed).
//! - Out of scope of the shadow strategy, by design: gh-ost flags asking for features the
//!   strategy refuses (`--include-triggers`: migrating the table's own triggers;
//!   `--discard-foreign-keys`: dropping foreign keys). Such a case is still run: refused
//!   cleanly (nothing left, the table untouched) it counts as skipped in that category; any
//!   other outcome is reported as what it is. An `expect_failure` case is always judged.
//! - gh-ost flags: see `FLAGS` (mapped or ignored, each with its meaning); unknown flags are
//!   listed in the report.
//!
//! `SCHEMAGATE_CONFORMANCE` overrides the suite's location (default `../shared/conformance`;
//! without it the test passes with a note). The report is printed and written to
//! `target/conformance/ghost.txt`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mysql_async::prelude::*;
use mysql_async::{Row, Value};
use reconciler::deploy::shadow::{CopyOptions, Shadow, ShadowError, ShadowSpec};
use reconciler::live::ShardConn;
use reconciler::naming;
use reconciler::sandbox::{self, Sandbox, Server};
use reconciler::schema::strip_auto_increment;
use reconciler::source::Dsn;
use tokio::sync::RwLock;

/// Passed cases measured when the suite was last run; a regression guard.
const PASSED_FLOOR: usize = 81;
/// Cases running at the same time on each server.
const PER_SERVER: usize = 3;
/// gh-ost's test harness passes `--alter='engine=innodb'` before the case's own arguments.
const DEFAULT_ALTER: &str = "engine=innodb";
const TABLE: &str = "gh_ost_test";
/// Shortest time the writer keeps writing after the copy (the triggers' part).
const WRITES_AFTER_COPY: Duration = Duration::from_millis(1200);
/// Longest wait for every event to run again after the copy (one starts 3 s late).
const WRITES_TIMEOUT: Duration = Duration::from_secs(6);
const WRITER_STOP_TIMEOUT: Duration = Duration::from_secs(15);
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// gh-ost flags and what the harness does with them.
const FLAGS: &[(&str, Flag, &str)] = &[
    ("alter", Flag::Mapped, "the ALTER clause (the last one wins, as in gh-ost)"),
    (
        "approve-renamed-columns",
        Flag::Mapped,
        "renames from `CHANGE [COLUMN] old new` go to ShadowSpec.renames (the new column gets the old one's values)",
    ),
    (
        "skip-renamed-columns",
        Flag::Mapped,
        "no renames are passed: a renamed column is then a dropped one plus a new one",
    ),
    (
        "analyze-ghost-table-before-cutover",
        Flag::Mapped,
        "ANALYZE TABLE on the shadow before the rename (schemagate's seal analyzes after it)",
    ),
    (
        "panic-on-warnings",
        Flag::Ignored,
        "always on in schemagate: a copy that changes data fails (Lossy), prepare refuses data that cannot fit",
    ),
    (
        "allow-zero-in-date",
        Flag::Ignored,
        "schemagate runs with the server's sql_mode; zero dates copy when that mode allows them",
    ),
    (
        "attempt-instant-ddl",
        Flag::Ignored,
        "schemagate chooses the instant strategy by itself (proven on an empty clone); this suite exercises the shadow strategy",
    ),
    ("gtid", Flag::Ignored, "binary-log positioning: schemagate reads no binary log"),
    (
        "throttle-query",
        Flag::Ignored,
        "schemagate throttles on Threads_running (CopyOptions::max_threads_running)",
    ),
    (
        "default-retries",
        Flag::Ignored,
        "schemagate retries chunks only on lock conflicts, a fixed number of times",
    ),
    (
        "chunk-size",
        Flag::Ignored,
        "schemagate sizes chunks by time (CopyOptions::target_chunk_time)",
    ),
    (
        "include-triggers",
        Flag::OutOfScope("migrating the table's own triggers (--include-triggers)"),
        "the shadow strategy refuses tables that have triggers",
    ),
    (
        "trigger-suffix",
        Flag::Ignored,
        "belongs to --include-triggers",
    ),
    (
        "remove-trigger-suffix-if-exists",
        Flag::Ignored,
        "belongs to --include-triggers",
    ),
    (
        "discard-foreign-keys",
        Flag::OutOfScope("dropping foreign keys (--discard-foreign-keys)"),
        "the shadow strategy refuses tables in foreign keys",
    ),
];

/// gh-ost's boolean flags: they never take the next argument as their value.
const BOOL_FLAGS: &[&str] = &[
    "approve-renamed-columns",
    "skip-renamed-columns",
    "analyze-ghost-table-before-cutover",
    "panic-on-warnings",
    "allow-zero-in-date",
    "attempt-instant-ddl",
    "gtid",
    "include-triggers",
    "remove-trigger-suffix-if-exists",
    "discard-foreign-keys",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flag {
    Mapped,
    Ignored,
    OutOfScope(&'static str),
}

fn flag_kind(name: &str) -> Option<Flag> {
    FLAGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, k, _)| *k)
}

/// One case directory, read as it is.
#[derive(Debug, Default)]
struct Case {
    name: String,
    create: String,
    /// `--flag` → value (None for boolean flags), in order.
    flags: Vec<(String, Option<String>)>,
    /// Problems reading `extra_args`.
    args_error: Option<String>,
    expect_failure: Option<String>,
    orig_columns: String,
    ghost_columns: String,
    order_by: Option<String>,
    sql_mode: Option<String>,
    before: Option<String>,
    after: Option<String>,
    destroy: Option<String>,
    ignore_versions: Option<String>,
    expect_table_structure: Option<String>,
    sysbench: bool,
}

impl Case {
    fn alter(&self) -> String {
        self.flags
            .iter()
            .rev()
            .find(|(name, _)| name == "alter")
            .and_then(|(_, value)| value.clone())
            .unwrap_or_else(|| DEFAULT_ALTER.to_string())
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|(name, _)| name == flag)
    }

    fn table(&self) -> &'static str {
        if self.sysbench {
            "sbtest1"
        } else {
            TABLE
        }
    }

    /// Global settings change for the whole server: the case must run alone there.
    fn exclusive(&self) -> bool {
        self.sql_mode.is_some() || self.before.is_some() || self.after.is_some()
    }

    fn out_of_scope(&self) -> Option<&'static str> {
        self.flags
            .iter()
            .find_map(|(name, _)| match flag_kind(name) {
                Some(Flag::OutOfScope(category)) => Some(category),
                _ => None,
            })
    }

    fn renames(&self) -> Vec<(String, String)> {
        if self.has("approve-renamed-columns") && !self.has("skip-renamed-columns") {
            renames_of(&self.alter())
        } else {
            Vec::new()
        }
    }
}

fn suite_dir() -> PathBuf {
    match std::env::var_os("SCHEMAGATE_CONFORMANCE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
    }
}

fn read_optional(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

fn load_cases(dir: &Path) -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let args = read_optional(&path, "extra_args").unwrap_or_default();
            let (flags, args_error) = match shell_words(&args) {
                Ok(words) => parse_flags(&words),
                Err(e) => (Vec::new(), Some(e)),
            };
            let trimmed = |file: &str| read_optional(&path, file).map(|s| s.trim().to_string());
            Case {
                create: read_optional(&path, "create.sql").unwrap_or_default(),
                flags,
                args_error,
                expect_failure: trimmed("expect_failure"),
                orig_columns: trimmed("orig_columns").unwrap_or_else(|| "*".into()),
                ghost_columns: trimmed("ghost_columns").unwrap_or_else(|| "*".into()),
                order_by: trimmed("order_by").filter(|s| !s.is_empty()),
                // An empty file means the empty sql_mode.
                sql_mode: trimmed("sql_mode"),
                before: read_optional(&path, "before.sql"),
                after: read_optional(&path, "after.sql"),
                destroy: read_optional(&path, "destroy.sql"),
                ignore_versions: trimmed("ignore_versions").filter(|s| !s.is_empty()),
                expect_table_structure: trimmed("expect_table_structure").filter(|s| !s.is_empty()),
                sysbench: read_optional(&path, "create.sql")
                    .is_some_and(|sql| sql.to_ascii_lowercase().contains("sysbench prepare")),
                name,
            }
        })
        .collect()
}

/// Splits a command line the way a POSIX shell does (quotes and backslashes; no expansion).
fn shell_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => word.push(c),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// gh-ost's flag syntax (Go's `flag` package): `--name=value`, `--name value` for flags that
/// take a value, `--name` for booleans.
fn parse_flags(words: &[String]) -> (Vec<(String, Option<String>)>, Option<String>) {
    let mut flags = Vec::new();
    let mut error = None;
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        let Some(flag) = word.strip_prefix("--").or_else(|| word.strip_prefix('-')) else {
            error = Some(format!("unexpected argument `{word}`"));
            i += 1;
            continue;
        };
        match flag.split_once('=') {
            Some((name, value)) => flags.push((name.to_string(), Some(value.to_string()))),
            None if BOOL_FLAGS.contains(&flag) => flags.push((flag.to_string(), None)),
            None => {
                let value = words.get(i + 1).filter(|w| !w.starts_with('-')).cloned();
                if value.is_some() {
                    i += 1;
                }
                flags.push((flag.to_string(), value));
            }
        }
        i += 1;
    }
    (flags, error)
}

/// Word-level tokens of a SQL fragment: identifiers (backquotes removed, `quoted` set),
/// keywords/bare words, and punctuation; string literals and comments are skipped.
#[derive(Debug, PartialEq)]
enum Token {
    Word { text: String, quoted: bool },
    Other,
}

fn sql_tokens(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') || c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || c == '"' {
            i += 1;
            while i < chars.len() {
                // A backslash escape or a doubled quote.
                if chars[i] == '\\' || (chars[i] == c && chars.get(i + 1) == Some(&c)) {
                    i += 2;
                } else if chars[i] == c {
                    i += 1;
                    break;
                } else {
                    i += 1;
                }
            }
            tokens.push(Token::Other);
        } else if c == '`' {
            let mut text = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '`' && chars.get(i + 1) == Some(&'`') {
                    text.push('`');
                    i += 2;
                } else if chars[i] == '`' {
                    i += 1;
                    break;
                } else {
                    text.push(chars[i]);
                    i += 1;
                }
            }
            tokens.push(Token::Word { text, quoted: true });
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            tokens.push(Token::Word {
                text: chars[start..i].iter().collect(),
                quoted: false,
            });
        } else {
            tokens.push(Token::Other);
            i += 1;
        }
    }
    tokens
}

/// `CHANGE [COLUMN] old new` pairs of an ALTER clause whose names differ (MySQL names of
/// columns are case-insensitive), as gh-ost's parser finds them.
fn renames_of(clause: &str) -> Vec<(String, String)> {
    let tokens = sql_tokens(clause);
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word { text, .. }) => Some(text.as_str()),
        _ => None,
    };
    let keyword = |i: usize, k: &str| matches!(tokens.get(i), Some(Token::Word { text, quoted: false }) if text.eq_ignore_ascii_case(k));
    let mut renames = Vec::new();
    for i in 0..tokens.len() {
        if !keyword(i, "CHANGE") {
            continue;
        }
        let first = if keyword(i + 1, "COLUMN") {
            i + 2
        } else {
            i + 1
        };
        if let (Some(old), Some(new)) = (word(first), word(first + 1)) {
            if !old.eq_ignore_ascii_case(new) {
                renames.push((old.to_string(), new.to_string()));
            }
        }
    }
    renames
}

#[derive(Debug)]
enum Outcome {
    Passed(String),
    Failed { cause: String, detail: String },
    Skipped { category: String, detail: String },
}

fn failed(cause: &str, detail: impl Into<String>) -> Outcome {
    Outcome::Failed {
        cause: cause.to_string(),
        detail: detail.into(),
    }
}

/// One sandbox server as the suite uses it.
struct Srv<'a> {
    server: &'a Server,
    /// Read: an ordinary case; write: a case that changes globals.
    lock: RwLock<()>,
    version: String,
    version_comment: String,
    log_bin: bool,
    sql_mode: String,
}

fn shard(server: &Server, name: &str) -> ShardConn {
    let dsn = Dsn::parse(&server.dsn()).unwrap_or_else(|e| panic!("sandbox DSN: {e}"));
    ShardConn::new(name, &dsn, 8)
}

fn message(e: mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("error {}: {}", s.code, s.message),
        other => other.to_string(),
    }
}

async fn exec(conn: &ShardConn, sql: &str) -> Result<(), String> {
    let mut c = conn.conn().await.map_err(|e| e.to_string())?;
    c.query_drop(sql).await.map_err(message)
}

/// Rows through the text protocol: every value as the server prints it. The harness only
/// reads with it, so a failed read is tried again (information_schema queries on a busy
/// server occasionally fail on their temporary files).
async fn rows(conn: &ShardConn, sql: &str) -> Result<Vec<Vec<Value>>, String> {
    let mut attempt = 1;
    loop {
        let mut c = conn.conn().await.map_err(|e| e.to_string())?;
        match c.query::<Row, _>(sql).await {
            Ok(rows) => return Ok(rows.into_iter().map(Row::unwrap).collect()),
            Err(e) if attempt < 3 => {
                eprintln!("retrying a read ({}): {sql}", message(e));
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(message(e)),
        }
    }
}

async fn strings(conn: &ShardConn, sql: &str) -> Result<Vec<String>, String> {
    let rows = rows(conn, sql).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .map(|v| text(&v))
        .collect())
}

fn text(value: &Value) -> String {
    match value {
        Value::NULL => "NULL".into(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.as_sql(false),
    }
}

fn q(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn lit(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 300 {
        format!("{}…", line.chars().take(300).collect::<String>())
    } else {
        line
    }
}

async fn show_create(conn: &ShardConn, db: &str, table: &str) -> Result<Option<String>, String> {
    let mut c = conn.conn().await.map_err(|e| e.to_string())?;
    match c
        .query_first::<(String, String), _>(format!("SHOW CREATE TABLE {}.{}", q(db), q(table)))
        .await
    {
        Ok(row) => Ok(row.map(|(_, sql)| sql)),
        Err(mysql_async::Error::Server(e)) if e.code == 1146 => Ok(None),
        Err(e) => Err(message(e)),
    }
}

/// Tables and triggers of a database: what a failed migration must leave as it found it.
async fn objects(conn: &ShardConn, db: &str) -> Result<BTreeSet<String>, String> {
    let tables = strings(
        conn,
        &format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {}",
            lit(db)
        ),
    )
    .await?;
    let triggers = strings(
        conn,
        &format!(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {}",
            lit(db)
        ),
    )
    .await?;
    Ok(tables
        .into_iter()
        .map(|t| format!("table {t}"))
        .chain(triggers.into_iter().map(|t| format!("trigger {t}")))
        .collect())
}

fn difference(before: &BTreeSet<String>, after: &BTreeSet<String>) -> Option<String> {
    let added: Vec<&String> = after.difference(before).collect();
    let removed: Vec<&String> = before.difference(after).collect();
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    Some(format!("left behind {added:?}, gone {removed:?}"))
}

/// `ORDER BY` columns when the case gives none: the primary key, else the first unique key.
async fn key_columns(conn: &ShardConn, db: &str, table: &str) -> Result<Vec<String>, String> {
    let rows = rows(
        conn,
        &format!(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} AND NON_UNIQUE = 0 \
             ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME, SEQ_IN_INDEX",
            lit(db),
            lit(table)
        ),
    )
    .await?;
    let first = rows.first().map(|r| text(&r[0]));
    Ok(rows
        .iter()
        .filter(|r| Some(text(&r[0])) == first)
        .map(|r| q(&text(&r[1])))
        .collect())
}

async fn content(
    conn: &ShardConn,
    db: &str,
    table: &str,
    columns: &str,
    order: &Option<String>,
) -> Result<Vec<Vec<Value>>, String> {
    let sql = match order {
        Some(order) => format!(
            "SELECT {columns} FROM {}.{} ORDER BY {order}",
            q(db),
            q(table)
        ),
        None => format!("SELECT {columns} FROM {}.{}", q(db), q(table)),
    };
    let mut rows = rows(conn, &sql).await?;
    if order.is_none() {
        rows.sort_by_key(|r| r.iter().map(text).collect::<Vec<_>>());
    }
    Ok(rows)
}

fn first_row_difference(a: &[Vec<Value>], b: &[Vec<Value>]) -> Option<String> {
    let shown = |r: Option<&Vec<Value>>| match r {
        Some(r) => format!("({})", r.iter().map(text).collect::<Vec<_>>().join(", ")),
        None => "(none)".into(),
    };
    if a == b {
        return None;
    }
    let at = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))?;
    Some(format!(
        "{} rows vs {}; row {at}: table {} but shadow {}",
        a.len(),
        b.len(),
        shown(a.get(at)),
        shown(b.get(at))
    ))
}

fn mariadb_client() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("mariadb"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("mariadb"))
}

/// Runs a script with the `mariadb` client (its `delimiter` command included).
async fn client(server: &Server, db: &str, script: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(mariadb_client())
        .args([
            "--no-defaults".to_string(),
            "--protocol=TCP".into(),
            "--host=127.0.0.1".into(),
            format!("--port={}", server.port()),
            "--user=root".into(),
            "--default-character-set=utf8mb4".into(),
            format!("--database={db}"),
            "--batch".into(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the mariadb client: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| format!("writing to the mariadb client: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("running the mariadb client: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(one_line(&String::from_utf8_lossy(&output.stderr)))
    }
}

/// Whether a regular expression (test.sh: `egrep "^${ignore_versions}"`) matches the server.
async fn version_ignored(conn: &ShardConn, pattern: &str) -> Result<bool, String> {
    let pattern = lit(&format!("(?i)^{pattern}"));
    let row = rows(
        conn,
        &format!("SELECT @@version REGEXP {pattern} OR @@version_comment REGEXP {pattern}"),
    )
    .await?;
    Ok(row.first().and_then(|r| r.first()).map(text).as_deref() == Some("1"))
}

fn binlog_dependent(case: &Case) -> bool {
    [&case.before, &case.after]
        .into_iter()
        .flatten()
        .any(|sql| sql.to_ascii_lowercase().contains("binlog"))
}

fn sysbench_installed() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join("sysbench").is_file())
}

/// What writes to the table during the migration.
enum Writer {
    /// The case's events (none for some cases).
    Events,
    Sysbench(tokio::process::Child),
}

/// Lets the writer work until every enabled event of `db` has started again after now (at
/// least `WRITES_AFTER_COPY`, at most `WRITES_TIMEOUT`); says what wrote.
async fn let_writer_write(conn: &ShardConn, db: &str, writer: &Writer) -> Result<String, String> {
    if let Writer::Sysbench(_) = writer {
        tokio::time::sleep(WRITES_AFTER_COPY * 2).await;
        return Ok("sysbench".into());
    }
    let started = Instant::now();
    let now = strings(conn, "SELECT NOW()").await?.join("");
    let pending_sql = format!(
        "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {} \
         AND STATUS = 'ENABLED' AND (ENDS IS NULL OR ENDS > NOW()) \
         AND (LAST_EXECUTED IS NULL OR LAST_EXECUTED <= {})",
        lit(db),
        lit(&now)
    );
    let events = strings(
        conn,
        &format!(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {} \
             AND STATUS = 'ENABLED'",
            lit(db)
        ),
    )
    .await?
    .len();
    if events == 0 {
        return Ok("none (the case has no enabled event)".into());
    }
    loop {
        let pending = strings(conn, &pending_sql).await?;
        if pending.is_empty() && started.elapsed() >= WRITES_AFTER_COPY {
            return Ok(format!("{events} event(s), each ran again after the copy"));
        }
        if started.elapsed() > WRITES_TIMEOUT {
            return Ok(format!(
                "{events} event(s); {} did not run again within {}s after the copy",
                pending.join(", "),
                WRITES_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the writer: every event of `db` is disabled and its running executions (threads
/// whose default database is `db`; ours have none) are waited for.
async fn stop_writer(conn: &ShardConn, db: &str, writer: &mut Writer) -> Result<(), String> {
    if let Writer::Sysbench(child) = writer {
        // Our own child, by its handle.
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Ok(());
    }
    let events = strings(
        conn,
        &format!(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {}",
            lit(db)
        ),
    )
    .await?;
    for event in events {
        match exec(
            conn,
            &format!("ALTER EVENT {}.{} DISABLE", q(db), q(&event)),
        )
        .await
        {
            // Dropped meanwhile (ON COMPLETION NOT PRESERVE).
            Err(e) if e.contains("1539") => {}
            other => other?,
        }
    }
    let running = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = {} AND ID <> CONNECTION_ID()",
        lit(db)
    );
    let started = Instant::now();
    let mut quiet = 0;
    while quiet < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = strings(conn, &running).await?.join("");
        quiet = if n == "0" { quiet + 1 } else { 0 };
        if started.elapsed() > WRITER_STOP_TIMEOUT {
            return Err(format!("{n} event executions still running"));
        }
    }
    Ok(())
}

fn spec_for(case: &Case, db: &str) -> ShadowSpec {
    let table = case.table();
    let id = naming::deployment_id("gh-ost conformance", None, &case.name);
    ShadowSpec {
        database: db.to_string(),
        table: table.to_string(),
        shadow: naming::artifact(&id, "new", table),
        trigger_prefix: naming::trigger_prefix(&id, table),
        statements: vec![format!("ALTER TABLE {} {}", q(table), case.alter())],
        renames: case.renames(),
        defer_indexes: true,
        carry_foreign_keys: false,
    }
}

fn stage_error(stage: &str, e: &ShadowError) -> (String, String) {
    let kind = match e {
        ShadowError::Refused { .. } => "refused",
        ShadowError::Statement { .. } => "the ALTER failed on the shadow",
        ShadowError::Lossy { .. } => "lossy copy",
        ShadowError::Mismatch { .. } => "checksum mismatch",
        ShadowError::BadCheckpoint { .. } => "bad checkpoint",
        ShadowError::Live(_) => "server error",
    };
    (format!("{stage}: {kind}"), one_line(&e.to_string()))
}

/// prepare → copy → checksum, as one attempt; the error names its stage.
async fn attempt(conn: &ShardConn, spec: &ShadowSpec) -> Result<(), (String, String)> {
    let shadow = Shadow::prepare(conn, spec.clone())
        .await
        .map_err(|e| stage_error("prepare", &e))?;
    shadow
        .copy(conn, None, &CopyOptions::default(), |_| {})
        .await
        .map_err(|e| stage_error("copy", &e))?;
    shadow
        .checksum(conn)
        .await
        .map_err(|e| stage_error("checksum", &e))
}

struct Ctx<'a> {
    srv: &'a Srv<'a>,
    conn: ShardConn,
    db: String,
    reference_db: String,
}

/// An `expect_failure` case: refused or failed, twice, leaving everything as it was.
async fn expect_failure(ctx: &Ctx<'_>, case: &Case, writer: &mut Writer) -> Outcome {
    let (conn, db, table) = (&ctx.conn, ctx.db.as_str(), case.table());
    let spec = spec_for(case, db);
    let mut errors = Vec::new();
    for writing in [true, false] {
        if !writing {
            if let Err(e) = stop_writer(conn, db, writer).await {
                return failed("harness: stopping the writer", e);
            }
        }
        let before = match (
            show_create(conn, db, table).await,
            objects(conn, db).await,
            content(conn, db, table, "*", &None).await,
        ) {
            (Ok(c), Ok(o), Ok(r)) => (c, o, r),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                return failed("harness: reading the table", e)
            }
        };
        let result = attempt(conn, &spec).await;
        let cleaned = Shadow::cleanup(conn, &spec).await;
        let when = if writing {
            "while the writer ran"
        } else {
            "after the writer stopped"
        };
        match result {
            Ok(()) => {
                return failed(
                    "expected failure not reproduced",
                    format!(
                        "the migration succeeded {when} (gh-ost: {})",
                        one_line(case.expect_failure.as_deref().unwrap_or(""))
                    ),
                )
            }
            Err((stage, e)) => errors.push(format!("{stage}: {e}")),
        }
        if let Err(e) = cleaned {
            return failed("cleanup failed", one_line(&e.to_string()));
        }
        // While the writer inserts, only the AUTO_INCREMENT counter may move.
        let comparable = |sql: &Option<String>| match (writing, sql) {
            (true, Some(sql)) => Some(strip_auto_increment(sql)),
            (_, sql) => sql.clone(),
        };
        let after_create = show_create(conn, db, table).await;
        if after_create.as_ref().ok().map(comparable) != Some(comparable(&before.0)) {
            return failed(
                "original changed by a failed migration",
                format!("SHOW CREATE TABLE {when}: {after_create:?}"),
            );
        }
        match objects(conn, db).await {
            Ok(after) => {
                if let Some(d) = difference(&before.1, &after) {
                    return failed("artifacts left", format!("{when}: {d}"));
                }
            }
            Err(e) => return failed("harness: listing tables", e),
        }
        if !writing {
            match content(conn, db, table, "*", &None).await {
                Ok(rows) if rows == before.2 => {}
                Ok(rows) => {
                    return failed(
                        "original changed by a failed migration",
                        first_row_difference(&before.2, &rows).unwrap_or_default(),
                    )
                }
                Err(e) => return failed("harness: reading the table", e),
            }
        }
    }
    errors.dedup();
    Outcome::Passed(format!("failed as expected: {}", errors.join(" | ")))
}

/// A case gh-ost migrates: migrate, verify, seal.
async fn migrate(ctx: &Ctx<'_>, case: &Case, writer: &mut Writer) -> Outcome {
    let (conn, db, table) = (&ctx.conn, ctx.db.as_str(), case.table());
    let spec = spec_for(case, db);
    let objects_before = match objects(conn, db).await {
        Ok(o) => o,
        Err(e) => return failed("harness: listing tables", e),
    };
    let order = match &case.order_by {
        Some(o) => Some(o.clone()),
        None => match key_columns(conn, db, table).await {
            Ok(k) if !k.is_empty() => Some(k.join(", ")),
            Ok(_) => None,
            Err(e) => return failed("harness: reading the key", e),
        },
    };
    let outcome = migrate_prepared(ctx, case, writer, &spec, &order).await;
    if let Outcome::Failed { .. } = &outcome {
        let _ = stop_writer(conn, db, writer).await;
        if let Err(e) = Shadow::cleanup(conn, &spec).await {
            return failed("cleanup failed", one_line(&e.to_string()));
        }
        if let Some(category) = case.out_of_scope() {
            if let Outcome::Failed { cause, detail } = &outcome {
                let untouched = objects(conn, db).await.ok().as_ref() == Some(&objects_before);
                if cause == "prepare: refused" && untouched {
                    return Outcome::Skipped {
                        category: format!("out of scope: {category}"),
                        detail: format!("refused cleanly: {detail}"),
                    };
                }
            }
        }
        return outcome;
    }
    // The seal left the new table under the original name: only the case's objects remain,
    // plus the retention table, which is dropped now.
    let old = naming::artifact(
        &naming::deployment_id("gh-ost conformance", None, &case.name),
        "old",
        table,
    );
    if let Err(e) = exec(conn, &format!("DROP TABLE IF EXISTS {}.{}", q(db), q(&old))).await {
        return failed("harness: dropping the old table", e);
    }
    match objects(conn, db).await {
        Ok(after) => match difference(&objects_before, &after) {
            Some(d) => failed("artifacts left", d),
            None => outcome,
        },
        Err(e) => failed("harness: listing tables", e),
    }
}

async fn migrate_prepared(
    ctx: &Ctx<'_>,
    case: &Case,
    writer: &mut Writer,
    spec: &ShadowSpec,
    order: &Option<String>,
) -> Outcome {
    let (conn, db, table) = (&ctx.conn, ctx.db.as_str(), case.table());
    let shadow = match Shadow::prepare(conn, spec.clone()).await {
        Ok(s) => s,
        Err(e) => {
            let (cause, detail) = stage_error("prepare", &e);
            return failed(&cause, detail);
        }
    };
    let progress = match shadow
        .copy(conn, None, &CopyOptions::default(), |_| {})
        .await
    {
        Ok(p) => p,
        Err(e) => {
            let (cause, detail) = stage_error("copy", &e);
            return failed(&cause, detail);
        }
    };
    let writers = match let_writer_write(conn, db, writer).await {
        Ok(n) => n,
        Err(e) => return failed("harness: waiting for writes", e),
    };
    if let Err(e) = stop_writer(conn, db, writer).await {
        return failed("harness: stopping the writer", e);
    }
    if let Err(e) = shadow.checksum(conn).await {
        let (cause, detail) = stage_error("checksum", &e);
        return failed(&cause, detail);
    }
    let original = content(conn, db, table, &case.orig_columns, order).await;
    let migrated = content(conn, db, &spec.shadow, &case.ghost_columns, order).await;
    let rows = match (original, migrated) {
        (Ok(a), Ok(b)) => match first_row_difference(&a, &b) {
            Some(d) => return failed("content differs", d),
            None => a.len(),
        },
        (Err(e), _) | (_, Err(e)) => return failed("content compare failed", e),
    };
    let shadow_sql = match show_create(conn, db, &spec.shadow).await {
        Ok(Some(sql)) => sql,
        Ok(None) => return failed("shadow missing", "after the checksum"),
        Err(e) => return failed("harness: SHOW CREATE TABLE", e),
    };
    if let Some(expected) = &case.expect_table_structure {
        if !shadow_sql.contains(expected.as_str()) {
            return failed(
                "expected table structure missing",
                format!("`{expected}` not in: {}", one_line(&shadow_sql)),
            );
        }
    }

    // The seal.
    if case.has("analyze-ghost-table-before-cutover") {
        if let Err(e) = exec(
            conn,
            &format!("ANALYZE TABLE {}.{}", q(db), q(&spec.shadow)),
        )
        .await
        {
            return failed("ANALYZE TABLE failed", e);
        }
    }
    if let Err(e) = Shadow::drop_triggers(conn, spec).await {
        return failed("dropping the triggers failed", one_line(&e.to_string()));
    }
    let old = naming::artifact(
        &naming::deployment_id("gh-ost conformance", None, &case.name),
        "old",
        table,
    );
    let rename = format!(
        "RENAME TABLE {db_}.{t} TO {db_}.{old}, {db_}.{s} TO {db_}.{t}",
        db_ = q(db),
        t = q(table),
        old = q(&old),
        s = q(&spec.shadow)
    );
    if let Err(e) = exec(conn, &rename).await {
        return failed("the seal's RENAME failed", e);
    }
    let sealed = match show_create(conn, db, table).await {
        Ok(Some(sql)) => strip_auto_increment(&sql),
        other => {
            return failed(
                "harness: SHOW CREATE TABLE after the seal",
                format!("{other:?}"),
            )
        }
    };
    match show_create(conn, &ctx.reference_db, table).await {
        Ok(Some(reference)) => {
            let reference = strip_auto_increment(&reference);
            if sealed != reference {
                let line = sealed
                    .lines()
                    .zip(reference.lines())
                    .find(|(a, b)| a != b)
                    .map(|(a, b)| format!("have `{}`, native ALTER gives `{}`", a.trim(), b.trim()))
                    .unwrap_or_else(|| "different number of lines".into());
                return failed("definition differs from a native ALTER", line);
            }
        }
        Ok(None) => {
            return failed(
                "native ALTER failed where the shadow succeeded",
                "the reference table is missing",
            )
        }
        Err(e) => return failed("harness: SHOW CREATE TABLE of the reference", e),
    }
    Outcome::Passed(format!(
        "{rows} rows identical; {} rows copied; writer: {writers}",
        progress.rows_copied
    ))
}

/// Everything of one case after its skips: setup, the migration, teardown.
async fn run_loaded(srv: &Srv<'_>, case: &Case) -> Outcome {
    let db = sandbox::unique_name("ghost");
    let reference_db = sandbox::unique_name("ghost_ref");
    let admin = shard(srv.server, "admin");
    for name in [&db, &reference_db] {
        if let Err(e) = exec(&admin, &format!("CREATE DATABASE {}", q(name))).await {
            admin.disconnect().await;
            return failed("harness: CREATE DATABASE", e);
        }
    }
    if let Some(mode) = &case.sql_mode {
        if let Err(e) = exec(&admin, &format!("SET GLOBAL sql_mode = {}", lit(mode))).await {
            admin.disconnect().await;
            return failed("harness: SET GLOBAL sql_mode", e);
        }
    }
    // Created after the global sql_mode: its sessions (the engine's too) inherit it.
    let conn = shard(srv.server, "s1");
    let ctx = Ctx {
        srv,
        conn,
        db: db.clone(),
        reference_db: reference_db.clone(),
    };
    let mut writer = Writer::Events;
    let outcome = match tokio::time::timeout(CASE_TIMEOUT, run_in(&ctx, case, &mut writer)).await {
        Ok(outcome) => outcome,
        Err(_) => failed("timed out", format!("after {}s", CASE_TIMEOUT.as_secs())),
    };
    let _ = stop_writer(&ctx.conn, &db, &mut writer).await;
    if let Some(after) = &case.after {
        if let Err(e) = client(srv.server, &db, after).await {
            eprintln!("{}: after.sql failed: {e}", case.name);
        }
    }
    if case.sql_mode.is_some() {
        if let Err(e) = exec(
            &admin,
            &format!("SET GLOBAL sql_mode = {}", lit(&srv.sql_mode)),
        )
        .await
        {
            eprintln!("{}: restoring the global sql_mode failed: {e}", case.name);
        }
    }
    if let Some(destroy) = &case.destroy {
        if let Err(e) = client(srv.server, &db, destroy).await {
            eprintln!("{}: destroy.sql failed: {e}", case.name);
        }
    }
    for name in [&db, &reference_db] {
        let _ = exec(&admin, &format!("DROP DATABASE IF EXISTS {}", q(name))).await;
    }
    ctx.conn.disconnect().await;
    admin.disconnect().await;
    outcome
}

async fn run_in(ctx: &Ctx<'_>, case: &Case, writer: &mut Writer) -> Outcome {
    let (server, db, table) = (ctx.srv.server, ctx.db.as_str(), case.table());
    if let Err(e) = client(server, db, &case.create).await {
        return failed("create.sql failed to load", e);
    }
    if case.sysbench {
        match start_sysbench(server, db).await {
            Ok(child) => *writer = Writer::Sysbench(child),
            Err(e) => return failed("harness: sysbench", e),
        }
    }
    if case.expect_failure.is_none() {
        // The definition a native ALTER gives, on an empty clone taken now.
        let reference = format!("{}.{}", q(&ctx.reference_db), q(table));
        let made = exec(
            &ctx.conn,
            &format!("CREATE TABLE {reference} LIKE {}.{}", q(db), q(table)),
        )
        .await;
        if let Err(e) = made {
            return failed("harness: cloning the table", e);
        }
        // A failure leaves the reference missing, which the definition check reports.
        if exec(
            &ctx.conn,
            &format!("ALTER TABLE {reference} {}", case.alter()),
        )
        .await
        .is_err()
        {
            let _ = exec(&ctx.conn, &format!("DROP TABLE {reference}")).await;
        }
    }
    if let Some(before) = &case.before {
        if let Err(e) = client(server, db, before).await {
            return failed("before.sql failed", e);
        }
    }
    if case.expect_failure.is_some() {
        expect_failure(ctx, case, writer).await
    } else {
        migrate(ctx, case, writer).await
    }
}

/// sysbench's `oltp_write_only` load on `sbtest1`, as gh-ost's test.sh runs it.
async fn start_sysbench(server: &Server, db: &str) -> Result<tokio::process::Child, String> {
    let common = [
        "oltp_write_only".to_string(),
        "--mysql-host=127.0.0.1".into(),
        format!("--mysql-port={}", server.port()),
        "--mysql-user=root".into(),
        format!("--mysql-db={db}"),
        "--tables=1".into(),
        "--table-size=10000".into(),
    ];
    let prepared = tokio::process::Command::new("sysbench")
        .args(&common)
        .arg("prepare")
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if !prepared.status.success() {
        return Err(one_line(&String::from_utf8_lossy(&prepared.stderr)));
    }
    tokio::process::Command::new("sysbench")
        .args(&common)
        .args([
            "--rand-seed=163",
            "--threads=2",
            "--time=60",
            "--rate=500",
            "run",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())
}

async fn run_case(srv: &Srv<'_>, case: &Case) -> Outcome {
    if let Some(e) = &case.args_error {
        return failed("extra_args unreadable", e.clone());
    }
    if case.sysbench && !sysbench_installed() {
        return Outcome::Skipped {
            category: "needs sysbench (not installed)".into(),
            detail: "the load comes from `sysbench oltp_write_only`".into(),
        };
    }
    if let Some(pattern) = &case.ignore_versions {
        let admin = shard(srv.server, "admin");
        let ignored = version_ignored(&admin, pattern).await;
        admin.disconnect().await;
        match ignored {
            Ok(true) => {
                return Outcome::Skipped {
                    category: "ignore_versions matches this server".into(),
                    detail: format!(
                        "`{pattern}` matches {} ({})",
                        srv.version, srv.version_comment
                    ),
                }
            }
            Ok(false) => {}
            Err(e) => return failed("harness: matching ignore_versions", e),
        }
    }
    if binlog_dependent(case) && !srv.log_bin {
        return Outcome::Skipped {
            category: "needs the binary log (no server with one could start)".into(),
            detail: "its SQL sets binary-log limits that cannot apply without a binary log".into(),
        };
    }
    if case.exclusive() {
        let _alone = srv.lock.write().await;
        run_loaded(srv, case).await
    } else {
        let _shared = srv.lock.read().await;
        run_loaded(srv, case).await
    }
}

async fn server_facts(server: &Server) -> Srv<'_> {
    let admin = shard(server, "admin");
    let row = rows(
        &admin,
        "SELECT @@version, @@version_comment, @@log_bin, @@global.sql_mode",
    )
    .await
    .unwrap_or_else(|e| panic!("reading server facts: {e}"));
    admin.disconnect().await;
    let row: Vec<String> = row
        .first()
        .map(|r| r.iter().map(text).collect())
        .unwrap_or_default();
    Srv {
        server,
        lock: RwLock::new(()),
        version: row.first().cloned().unwrap_or_default(),
        version_comment: row.get(1).cloned().unwrap_or_default(),
        log_bin: row.get(2).map(String::as_str) == Some("1"),
        sql_mode: row.get(3).cloned().unwrap_or_default(),
    }
}

struct Summary {
    passed: usize,
    failed: usize,
    skipped: usize,
}

fn report(
    cases: &[Case],
    outcomes: &[Outcome],
    srv: &Srv<'_>,
    elapsed: Duration,
) -> (String, Summary) {
    let mut summary = Summary {
        passed: 0,
        failed: 0,
        skipped: 0,
    };
    let mut skips: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut causes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (case, outcome) in cases.iter().zip(outcomes) {
        match outcome {
            Outcome::Passed(_) => summary.passed += 1,
            Outcome::Failed { cause, .. } => {
                summary.failed += 1;
                causes.entry(cause).or_default().push(&case.name);
            }
            Outcome::Skipped { category, .. } => {
                summary.skipped += 1;
                skips.entry(category).or_default().push(&case.name);
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gh-ost conformance through the shadow strategy ({} cases, {:.1}s, {} {})",
        cases.len(),
        elapsed.as_secs_f64(),
        srv.version,
        srv.version_comment
    );
    let _ = writeln!(
        out,
        "passed {} / total {} (failed {}, skipped {})",
        summary.passed,
        cases.len(),
        summary.failed,
        summary.skipped
    );
    let _ = writeln!(
        out,
        "{PER_SERVER} cases at a time per server; cases with sql_mode/before.sql/after.sql alone \
         on theirs; binary-log cases on a server started with --log-bin\n"
    );
    let _ = writeln!(out, "skipped, by reason:");
    for (category, names) in &skips {
        let _ = writeln!(
            out,
            "  {:>3}  {category}: {}",
            names.len(),
            names.join(", ")
        );
    }
    let _ = writeln!(out, "\nfailed, by cause:");
    for (cause, names) in &causes {
        let _ = writeln!(out, "  {:>3}  {cause}: {}", names.len(), names.join(", "));
    }
    let _ = writeln!(out, "\ngh-ost flags:");
    let mut used: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for case in cases {
        for (name, _) in &case.flags {
            used.entry(name).or_default().push(&case.name);
        }
    }
    for (name, users) in &used {
        let meaning = match FLAGS.iter().find(|(n, _, _)| n == name) {
            Some((_, Flag::Mapped, m)) => format!("mapped: {m}"),
            Some((_, Flag::Ignored, m)) => format!("ignored: {m}"),
            Some((_, Flag::OutOfScope(c), m)) => format!("out of scope ({c}): {m}"),
            None => "UNKNOWN to this harness".to_string(),
        };
        let _ = writeln!(out, "  --{name} ({} cases): {meaning}", users.len());
    }
    let _ = writeln!(out, "\nper case:");
    for (case, outcome) in cases.iter().zip(outcomes) {
        let line = match outcome {
            Outcome::Passed(note) => format!("pass  {}: {note}", case.name),
            Outcome::Failed { cause, detail } => format!("FAIL  {}: {cause}: {detail}", case.name),
            Outcome::Skipped { category, detail } => {
                format!("skip  {}: {category}: {detail}", case.name)
            }
        };
        let _ = writeln!(out, "  {line}");
    }
    (out, summary)
}

fn write_report(text: &str) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("conformance");
    let path = dir.join("ghost.txt");
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text)) {
        Ok(()) => println!("report written to {}", path.display()),
        Err(e) => println!("cannot write {}: {e}", path.display()),
    }
}

#[test]
fn ghost_conformance() {
    let dir = suite_dir().join("gh-ost");
    if !dir.is_dir() {
        println!(
            "skipped: the gh-ost conformance suite was not found at {} (set SCHEMAGATE_CONFORMANCE)",
            dir.display()
        );
        return;
    }
    let cases = load_cases(&dir);
    let sandbox = sandbox::shared().unwrap_or_else(|e| panic!("starting the sandbox servers: {e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    // The shared servers run without a binary log; cases about its limits get one of their
    // own (they change its globals, so they run there alone anyway).
    let binlog = cases
        .iter()
        .any(binlog_dependent)
        .then(|| {
            Sandbox::start_with(1, |_| {
                vec![
                    "--log-bin=binlog".into(),
                    "--binlog-format=ROW".into(),
                    "--server-id=1".into(),
                ]
            })
        })
        .and_then(|started| match started {
            Ok(sandbox) => Some(sandbox),
            Err(e) => {
                eprintln!("no server with a binary log: {e}");
                None
            }
        });
    let started = Instant::now();
    let (outcomes, first) = runtime.block_on(async {
        let mut servers = Vec::new();
        for server in sandbox.servers() {
            servers.push(server_facts(server).await);
        }
        let binlog = match &binlog {
            Some(sandbox) => Some(server_facts(&sandbox.servers()[0]).await),
            None => None,
        };
        let (servers, binlog, cases) = (&servers, &binlog, &cases);
        let mut outcomes: Vec<(usize, Outcome)> = futures::stream::iter(cases.iter().enumerate())
            .map(|(i, case)| async move {
                let srv = match binlog {
                    Some(srv) if binlog_dependent(case) => srv,
                    _ => &servers[i % servers.len()],
                };
                let started = Instant::now();
                let outcome = run_case(srv, case).await;
                eprintln!(
                    "{:>5.1}s {}: {}",
                    started.elapsed().as_secs_f64(),
                    case.name,
                    match &outcome {
                        Outcome::Passed(_) => "pass".to_string(),
                        Outcome::Failed { cause, .. } => format!("FAIL ({cause})"),
                        Outcome::Skipped { category, .. } => format!("skip ({category})"),
                    }
                );
                (i, outcome)
            })
            .buffer_unordered(PER_SERVER * servers.len())
            .collect()
            .await;
        outcomes.sort_by_key(|(i, _)| *i);
        let first = Srv {
            server: servers[0].server,
            lock: RwLock::new(()),
            version: servers[0].version.clone(),
            version_comment: servers[0].version_comment.clone(),
            log_bin: servers[0].log_bin,
            sql_mode: servers[0].sql_mode.clone(),
        };
        (
            outcomes.into_iter().map(|(_, o)| o).collect::<Vec<_>>(),
            first,
        )
    });
    let (text, summary) = report(&cases, &outcomes, &first, started.elapsed());
    println!("{text}");
    write_report(&text);
    assert!(
        summary.passed >= PASSED_FLOOR,
        "only {}/{} gh-ost cases passed; the floor is {PASSED_FLOOR}",
        summary.passed,
        cases.len()
    );
}

#[test]
fn extra_args_split_like_a_shell() {
    let words = shell_words(
        r#"--alter="change column c2 c3 int not null" --approve-renamed-columns --throttle-query='select false'"#,
    )
    .unwrap();
    assert_eq!(
        words,
        [
            "--alter=change column c2 c3 int not null",
            "--approve-renamed-columns",
            "--throttle-query=select false"
        ]
    );
    let (flags, error) = parse_flags(
        &shell_words(r#"--alter "modify column name mediumtext" --default-retries=1 --gtid"#)
            .unwrap(),
    );
    assert_eq!(error, None);
    assert_eq!(
        flags,
        [
            (
                "alter".to_string(),
                Some("modify column name mediumtext".to_string())
            ),
            ("default-retries".to_string(), Some("1".to_string())),
            ("gtid".to_string(), None),
        ]
    );
}

#[test]
fn renames_are_read_like_gh_ost() {
    assert_eq!(
        renames_of("change column c2 c2a int not null, change column c3 c3 int not null after id"),
        [("c2".to_string(), "c2a".to_string())]
    );
    assert_eq!(
        renames_of("CHANGE `sum_ab` total_ab int as (a + b) virtual"),
        [("sum_ab".to_string(), "total_ab".to_string())]
    );
    assert!(renames_of("add column exchange double comment 'exchange rate'").is_empty());
    assert!(renames_of("add column e double comment 'change rate used for pay'").is_empty());
    assert!(renames_of("modify C2 int not null default 0").is_empty());
    assert!(renames_of("change column C2 c2 int").is_empty());
}
