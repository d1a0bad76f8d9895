//! The sqldef conformance suite (`shared/conformance/sqldef/*.yml`, see its README) run
//! against schemagate's planner on real MariaDB servers.
//!
//! Oracle per case: `current` is loaded into database A and `desired` into a fresh database B
//! (fixtures load with foreign key checks off, so their statement order does not matter);
//! schemagate plans A towards `desired`, the plan is executed on A with foreign key checks
//! on, and then a second plan must be empty and every table of A must show exactly the
//! `SHOW CREATE TABLE` of B (`AUTO_INCREMENT=N` aside). sqldef's expected DDL (`up`/`down`)
//! is informative only: the oracle is convergence. Like sqldef, which applies `down` too,
//! each applicable case is also run the other way (`desired` → `current`), reported apart.
//!
//! Decisions on applicability, each reported as a skip reason with counts:
//! - `flavor` naming another product (`mysql`, `tidb`, `!mariadb`) skips the case.
//! - `min_version`/`max_version` are compared numerically with the server's version (10.11)
//!   when the flavor is MariaDB or unspecified: `min_version: '8.0'` runs, `max_version:
//!   '5.7'` does not. A MySQL-8-only feature behind `min_version` that MariaDB lacks is then
//!   caught by the load check below.
//! - sqldef-only options (`offline`, `user`, `manage`, `managed_roles`, `config` keys other
//!   than `bulk_alter`) skip the case; `bulk_alter` is moot (schemagate always emits one ALTER
//!   per table), `legacy_ignore_quotes` is a sqldef parser option and irrelevant.
//! - `enable_drop: false` runs with schemagate's semantics (it always converges), noted.
//! - Views, triggers, events, routines and privileges are out of scope.
//! - `current` or `desired` that MariaDB rejects: skipped as not valid on this server.
//! - A target schema with statements other than CREATE TABLE: schema files hold only
//!   CREATE TABLE (a product decision).
//! - `error:` cases expect sqldef to fail; they pass when schemagate reports an error too (or
//!   the case does not load), and are counted separately.
//!
//! `SCHEMAGATE_CONFORMANCE` overrides the suite's location (default `../shared/conformance`;
//! without it the test passes with a note). The report is printed and written to
//! `target/conformance/sqldef.txt`, with the plan and first mismatch of every failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use mysql_async::prelude::*;
use mysql_async::{Opts, Pool};
use reconciler::plan::{self, Plan, PlanOptions};
use reconciler::sandbox::{self, Sandbox};
use reconciler::schema::{self, strip_auto_increment};
use reconciler::source::{Config, Desired, Dsn, Keyspace, SchemaFile, Shard};
use serde::Deserialize;

/// Converged cases measured when the suite was last made to pass; a regression guard.
const CONVERGED_FLOOR: usize = 200;
/// The same for the reverse direction (`desired` → `current`).
const REVERSE_FLOOR: usize = 198;
/// Cases run at the same time, spread over the shared servers.
const CONCURRENCY: usize = 6;
const KEYSPACE: &str = "conformance";
const ONLY_TABLES: &str = "the target schema has statements other than CREATE TABLE";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    current: String,
    #[serde(default)]
    desired: String,
    /// sqldef's own DDL: informative only, the oracle is convergence.
    #[allow(dead_code)]
    up: Option<String>,
    #[allow(dead_code)]
    down: Option<String>,
    error: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    user: Option<String>,
    flavor: Option<String>,
    managed_roles: Option<Vec<String>>,
    enable_drop: Option<bool>,
    manage: Option<serde_yaml::Value>,
    /// A sqldef parser option: irrelevant to schemagate, which reads any quoting.
    #[allow(dead_code)]
    legacy_ignore_quotes: Option<bool>,
    offline: Option<bool>,
    config: Option<BTreeMap<String, serde_yaml::Value>>,
}

struct Named {
    file: String,
    name: String,
    case: Case,
}

#[derive(Debug)]
enum Outcome {
    Converged,
    Failed {
        reason: String,
        detail: String,
    },
    Skipped(String),
    /// An `error:` case: did schemagate report an error as well?
    ExpectedError {
        errored: bool,
        note: String,
    },
}

struct CaseResult {
    file: String,
    name: String,
    /// `current` → `desired`: the README's oracle.
    forward: Outcome,
    /// `desired` → `current`, as sqldef runs each case both ways; None when not run.
    reverse: Option<Outcome>,
    /// `enable_drop: false`, run with schemagate's always-converge semantics.
    drop_disabled: bool,
}

fn suite_dir() -> PathBuf {
    match std::env::var_os("SCHEMAGATE_CONFORMANCE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
    }
}

fn load_cases(dir: &Path) -> Vec<Named> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let map: serde_yaml::Mapping = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        for (key, value) in map {
            let name = key.as_str().unwrap_or_default().to_string();
            let case: Case = serde_yaml::from_value(value)
                .unwrap_or_else(|e| panic!("{file}: case {name}: {e}"));
            cases.push(Named {
                file: file.clone(),
                name,
                case,
            });
        }
    }
    cases
}

/// `10.11.19-MariaDB-…` → `[10, 11, 19]`.
fn version_numbers(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()
        .unwrap_or_default()
        .split('.')
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// Compares versions component by component, missing components counting as 0.
fn compare_versions(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let len = a.len().max(b.len());
    (0..len)
        .map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// Why the case does not apply to schemagate on this MariaDB server, judged from its options.
fn option_skip(case: &Case, server: &[u64]) -> Option<String> {
    match case.flavor.as_deref() {
        Some("mysql") => return Some("flavor: mysql only".into()),
        Some("tidb") => return Some("flavor: tidb only".into()),
        Some("!mariadb") => return Some("flavor: not for mariadb".into()),
        Some(f) if f.contains("pgvector") => return Some("flavor: pgvector".into()),
        _ => {}
    }
    let shown = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
    if let Some(min) = &case.min_version {
        if compare_versions(server, &version_numbers(min)).is_lt() {
            return Some(format!("min_version {min} > server {}", shown(server)));
        }
    }
    if let Some(max) = &case.max_version {
        // `max_version: 5.7` includes 5.7.x: compare only the given components.
        let max = version_numbers(max);
        if compare_versions(&server[..max.len().min(server.len())], &max).is_gt() {
            return Some(format!(
                "max_version {} < server {}",
                shown(&max),
                shown(server)
            ));
        }
    }
    if case.offline == Some(true) {
        return Some("sqldef option: offline (no server)".into());
    }
    if case.user.is_some() {
        return Some("sqldef option: user".into());
    }
    if case.manage.is_some() || case.managed_roles.is_some() {
        return Some("sqldef option: manage / managed_roles (privileges)".into());
    }
    let semantic = case
        .config
        .iter()
        .flat_map(|c| c.keys())
        .find(|k| k.as_str() != "bulk_alter");
    semantic.map(|key| format!("sqldef option: config.{key}"))
}

/// Upper-case words at the start of each statement, comments removed. Good enough to tell
/// statement kinds apart; trigger bodies split into fragments, but their head is seen.
fn statement_heads(sql: &str) -> Vec<Vec<String>> {
    let text: String = sql
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("--") || t.starts_with('#') {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(|s| {
            s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .take(12)
                .map(str::to_ascii_uppercase)
                .collect::<Vec<_>>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

const OBJECTS: [&str; 10] = [
    "TABLE",
    "INDEX",
    "VIEW",
    "TRIGGER",
    "EVENT",
    "PROCEDURE",
    "FUNCTION",
    "USER",
    "ROLE",
    "DATABASE",
];

/// The object kind a DDL statement head is about, e.g. `CREATE DEFINER=… EVENT` → `EVENT`.
fn object_kind(head: &[String]) -> Option<&str> {
    match head.first().map(String::as_str) {
        Some("GRANT") | Some("REVOKE") => Some("PRIVILEGE"),
        Some("DELIMITER") => Some("DELIMITER"),
        Some("CREATE") | Some("ALTER") | Some("DROP") => head
            .iter()
            .find_map(|w| OBJECTS.iter().find(|o| *o == w).copied()),
        _ => None,
    }
}

fn out_of_scope(case: &Case) -> Option<String> {
    let kinds = [
        "VIEW",
        "TRIGGER",
        "EVENT",
        "PROCEDURE",
        "FUNCTION",
        "PRIVILEGE",
        "USER",
        "ROLE",
        "DELIMITER",
    ];
    for sql in [&case.current, &case.desired] {
        for head in statement_heads(sql) {
            if let Some(kind) = object_kind(&head).filter(|k| kinds.contains(k)) {
                let kind = match kind {
                    "PROCEDURE" | "FUNCTION" | "DELIMITER" => "routines",
                    "PRIVILEGE" | "USER" | "ROLE" => "privileges",
                    "VIEW" => "views",
                    "TRIGGER" => "triggers",
                    _ => "events",
                };
                return Some(format!("out of scope: {kind}"));
            }
        }
    }
    None
}

struct Server {
    dsn: String,
    pool: Pool,
}

impl Server {
    async fn exec(&self, database: Option<&str>, sql: &str) -> Result<(), String> {
        let mut conn = self.pool.get_conn().await.map_err(|e| e.to_string())?;
        if let Some(db) = database {
            conn.query_drop(format!("USE `{db}`"))
                .await
                .map_err(|e| e.to_string())?;
        }
        conn.query_drop(sql).await.map_err(message)
    }

    /// Creates `db` and runs `sql` in it with foreign key checks off (fixture order).
    async fn load(&self, db: &str, sql: &str) -> Result<(), String> {
        self.exec(None, &format!("CREATE DATABASE `{db}`")).await?;
        if sql.trim().is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get_conn().await.map_err(|e| e.to_string())?;
        conn.query_drop(format!("USE `{db}`"))
            .await
            .map_err(message)?;
        conn.query_drop("SET SESSION foreign_key_checks = 0")
            .await
            .map_err(message)?;
        let result = conn.query_drop(sql).await.map_err(message);
        conn.query_drop("SET SESSION foreign_key_checks = 1")
            .await
            .map_err(message)?;
        result
    }

    /// Every base table of `db` with its `SHOW CREATE TABLE`, `AUTO_INCREMENT=N` removed.
    async fn tables(&self, db: &str) -> Result<BTreeMap<String, String>, String> {
        let mut conn = self.pool.get_conn().await.map_err(|e| e.to_string())?;
        let names: Vec<String> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'",
                (db,),
            )
            .await
            .map_err(message)?;
        let mut out = BTreeMap::new();
        for name in names {
            let row: Option<(String, String)> = conn
                .query_first(format!("SHOW CREATE TABLE `{db}`.`{name}`"))
                .await
                .map_err(message)?;
            let create = row
                .map(|(_, c)| strip_auto_increment(&c))
                .unwrap_or_default();
            out.insert(name, create);
        }
        Ok(out)
    }
}

fn message(e: mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("error {}: {}", s.code, s.message),
        other => other.to_string(),
    }
}

fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 200 {
        format!("{}…", line.chars().take(200).collect::<String>())
    } else {
        line
    }
}

fn desired_state(server: &Server, database: &str, desired: &str) -> Desired {
    let dsn = Dsn::parse(&server.dsn).unwrap_or_else(|e| panic!("sandbox DSN: {e}"));
    let config = Config {
        keyspaces: vec![Keyspace {
            name: KEYSPACE.into(),
            database: database.into(),
            shards: vec![Shard {
                name: "s0".into(),
                dsn,
                replicas: Vec::new(),
            }],
            foreign_keys: Default::default(),
        }],
    };
    let files = BTreeMap::from([(
        KEYSPACE.to_string(),
        vec![SchemaFile {
            path: format!("schemas/{KEYSPACE}/desired.sql"),
            text: desired.to_string(),
        }],
    )]);
    Desired {
        config,
        files,
        revision: None,
    }
}

fn statements(plan: &Plan) -> Vec<String> {
    plan.keyspaces
        .iter()
        .flat_map(|k| &k.shards)
        .flat_map(|s| &s.changes)
        .map(|c| c.statement.clone())
        .collect()
}

fn issues(plan: &Plan) -> Vec<String> {
    plan.keyspaces
        .iter()
        .flat_map(|k| &k.shards)
        .flat_map(|s| &s.errors)
        .map(|i| match &i.table {
            Some(t) => format!("table `{t}`: {}", i.message),
            None => i.message.clone(),
        })
        .collect()
}

/// Runs one applicable case: returns Ok for convergence, else a reason and details.
async fn converge(server: &Server, a: &str, b: &str, to: &str) -> Result<(), (String, String)> {
    let desired = desired_state(server, a, to);
    let options = PlanOptions::default();
    let first = plan::plan(&desired, &options).await.map_err(|e| {
        (
            format!("plan refused: {}", one_line(&e.to_string())),
            e.to_string(),
        )
    })?;
    let planned = statements(&first);
    let detail = |extra: &str| format!("plan:\n  {}\n{extra}", planned.join(";\n  "));
    if let Some(issue) = issues(&first).first() {
        return Err((format!("plan error: {}", one_line(issue)), detail(issue)));
    }
    for statement in &planned {
        if let Err(e) = server.exec(Some(a), statement).await {
            let reason = format!("executing the plan failed: {e}");
            return Err((
                one_line(&reason),
                detail(&format!("failed: {statement}\n  {e}")),
            ));
        }
    }
    let second = plan::plan(&desired, &options).await.map_err(|e| {
        (
            format!("second plan refused: {}", one_line(&e.to_string())),
            e.to_string(),
        )
    })?;
    let (again, again_issues) = (statements(&second), issues(&second));
    if !again.is_empty() || !again_issues.is_empty() {
        let what = again
            .first()
            .or(again_issues.first())
            .cloned()
            .unwrap_or_default();
        let extra = format!(
            "second plan:\n  {}",
            again
                .iter()
                .chain(&again_issues)
                .cloned()
                .collect::<Vec<_>>()
                .join(";\n  ")
        );
        return Err((
            format!("second plan not empty: {}", one_line(&what)),
            detail(&extra),
        ));
    }
    let got = server.tables(a).await.map_err(|e| (e.clone(), e))?;
    let want = server.tables(b).await.map_err(|e| (e.clone(), e))?;
    if let Some((reason, extra)) = first_mismatch(&got, &want) {
        return Err((reason, detail(&extra)));
    }
    Ok(())
}

/// The first difference between two databases' tables, as a one-line reason and details.
fn first_mismatch(
    got: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Option<(String, String)> {
    let got_names: Vec<&String> = got.keys().collect();
    let want_names: Vec<&String> = want.keys().collect();
    if got_names != want_names {
        let reason = format!("tables differ: have {got_names:?}, want {want_names:?}");
        return Some((reason.clone(), reason));
    }
    for (name, want_sql) in want {
        let got_sql = &got[name];
        if got_sql == want_sql {
            continue;
        }
        let line = got_sql
            .lines()
            .zip(want_sql.lines())
            .find(|(g, w)| g != w)
            .map(|(g, w)| format!("have `{}`, want `{}`", g.trim(), w.trim()))
            .unwrap_or_else(|| "different number of lines".into());
        let reason = format!("`{name}` differs: {line}");
        let extra = format!("have:\n{got_sql}\nwant:\n{want_sql}");
        return Some((one_line(&reason), extra));
    }
    None
}

async fn run_case(server: &Server, version: &[u64], named: &Named) -> (Outcome, Option<Outcome>) {
    let case = &named.case;
    if let Some(reason) = option_skip(case, version).or_else(|| out_of_scope(case)) {
        return (Outcome::Skipped(reason), None);
    }
    let expected = case.error.as_deref();
    let forward = run_direction(server, &case.current, &case.desired, expected).await;
    if expected.is_some() || matches!(forward, Outcome::Skipped(_)) {
        return (forward, None);
    }
    let reverse = run_direction(server, &case.desired, &case.current, None).await;
    (forward, Some(reverse))
}

/// Plans from `from` to `to` in fresh databases and checks convergence.
async fn run_direction(
    server: &Server,
    from: &str,
    to: &str,
    expected_error: Option<&str>,
) -> Outcome {
    let a = sandbox::unique_name("sqldef_a");
    let b = sandbox::unique_name("sqldef_b");
    let outcome = run_loaded(server, &a, &b, from, to, expected_error).await;
    for db in [&a, &b] {
        // Best effort: the servers are thrown away with the process anyway.
        let _ = server
            .exec(None, &format!("DROP DATABASE IF EXISTS `{db}`"))
            .await;
    }
    outcome
}

async fn run_loaded(
    server: &Server,
    a: &str,
    b: &str,
    from: &str,
    to: &str,
    expected_error: Option<&str>,
) -> Outcome {
    let loaded = match server.load(a, from).await {
        Ok(()) => server.load(b, to).await,
        Err(e) => Err(e),
    };
    if let Err(e) = loaded {
        if expected_error.is_some() {
            return Outcome::ExpectedError {
                errored: true,
                note: format!("does not load on MariaDB: {}", one_line(&e)),
            };
        }
        return Outcome::Skipped(format!("not valid on MariaDB 10.11: {}", one_line(&e)));
    }
    if let Err(errors) = schema::parse_file("desired.sql", to) {
        let only_tables = errors
            .iter()
            .any(|e| e.message.starts_with("only CREATE TABLE statements"));
        if only_tables && expected_error.is_none() {
            return Outcome::Skipped(format!(
                "{ONLY_TABLES} (schema files hold only CREATE TABLE)"
            ));
        }
    }
    let result = converge(server, a, b, to).await;
    match (expected_error, result) {
        (None, Ok(())) => Outcome::Converged,
        (None, Err((reason, detail))) => Outcome::Failed { reason, detail },
        (Some(expected), Ok(())) => Outcome::ExpectedError {
            errored: false,
            note: format!("schemagate converged without an error (sqldef: {expected})"),
        },
        (Some(_), Err((reason, _))) => Outcome::ExpectedError {
            errored: true,
            note: reason,
        },
    }
}

#[derive(Default)]
struct Totals {
    converged: usize,
    applicable: usize,
    reverse_converged: usize,
    reverse_applicable: usize,
    skipped: usize,
    expected_error: usize,
}

impl Totals {
    fn count(&mut self, r: &CaseResult, skips: &mut BTreeMap<String, usize>) {
        match &r.forward {
            Outcome::Converged => {
                self.applicable += 1;
                self.converged += 1;
            }
            Outcome::Failed { .. } => self.applicable += 1,
            Outcome::Skipped(reason) => {
                self.skipped += 1;
                *skips.entry(skip_category(reason)).or_default() += 1;
            }
            Outcome::ExpectedError { .. } => self.expected_error += 1,
        }
        match &r.reverse {
            Some(Outcome::Converged) => {
                self.reverse_applicable += 1;
                self.reverse_converged += 1;
            }
            Some(Outcome::Failed { .. }) => self.reverse_applicable += 1,
            Some(Outcome::Skipped(reason)) => {
                *skips
                    .entry(format!("reverse only: {}", skip_category(reason)))
                    .or_default() += 1;
            }
            _ => {}
        }
    }

    fn add(&mut self, other: &Totals) {
        self.converged += other.converged;
        self.applicable += other.applicable;
        self.reverse_converged += other.reverse_converged;
        self.reverse_applicable += other.reverse_applicable;
        self.skipped += other.skipped;
        self.expected_error += other.expected_error;
    }

    fn row(&self, label: &str) -> String {
        format!(
            "{label:<30} {:>6}/{:<6} {:>6}/{:<6} {:>7} {:>6}",
            self.converged,
            self.applicable,
            self.reverse_converged,
            self.reverse_applicable,
            self.skipped,
            self.expected_error
        )
    }
}

/// Every outcome of one result with its direction label, for listings.
fn outcomes(r: &CaseResult) -> impl Iterator<Item = (&'static str, &Outcome)> {
    std::iter::once(("", &r.forward)).chain(r.reverse.iter().map(|o| (" (reverse)", o)))
}

fn report(results: &[CaseResult], elapsed: std::time::Duration) -> (String, Totals) {
    let mut files: BTreeMap<&str, Totals> = BTreeMap::new();
    let mut skips: BTreeMap<String, usize> = BTreeMap::new();
    for r in results {
        files.entry(&r.file).or_default().count(r, &mut skips);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sqldef conformance ({} cases, {:.1}s)",
        results.len(),
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "converged/applicable: current -> desired (the oracle), and desired -> current (reverse)\n"
    );
    let _ = writeln!(
        out,
        "{:<30} {:>13} {:>13} {:>7} {:>6}",
        "file", "forward", "reverse", "skipped", "error:"
    );
    let mut total = Totals::default();
    for (file, t) in &files {
        let _ = writeln!(out, "{}", t.row(file));
        total.add(t);
    }
    let _ = writeln!(out, "{}\n", total.row("total"));
    let _ = writeln!(out, "skipped, by reason:");
    let mut by_count: Vec<(&String, &usize)> = skips.iter().collect();
    by_count.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
    for (reason, count) in by_count {
        let _ = writeln!(out, "  {count:>4}  {reason}");
    }
    let drop_disabled = results
        .iter()
        .filter(|r| r.drop_disabled && !matches!(r.forward, Outcome::Skipped(_)))
        .count();
    let _ = writeln!(
        out,
        "\nenable_drop: false, run with schemagate semantics (always converge): {drop_disabled}"
    );
    let _ = writeln!(out, "\nexpected-error cases (sqldef's `error:`):");
    for r in results {
        if let Outcome::ExpectedError { errored, note } = &r.forward {
            let verdict = if *errored { "errored too" } else { "NO ERROR" };
            let _ = writeln!(out, "  {}/{}: {verdict}: {note}", r.file, r.name);
        }
    }
    let _ = writeln!(out, "\nfailures:");
    for r in results {
        for (direction, outcome) in outcomes(r) {
            if let Outcome::Failed { reason, .. } = outcome {
                let _ = writeln!(out, "  {}/{}{direction}: {reason}", r.file, r.name);
            }
        }
    }
    let _ = writeln!(out, "\nskipped cases:");
    for r in results {
        for (direction, outcome) in outcomes(r) {
            if let Outcome::Skipped(reason) = outcome {
                let _ = writeln!(out, "  {}/{}{direction}: {reason}", r.file, r.name);
            }
        }
    }
    (out, total)
}

/// Skip reasons with the server's error text are grouped by error number.
fn skip_category(reason: &str) -> String {
    match reason.strip_prefix("not valid on MariaDB 10.11: ") {
        Some(rest) => {
            let code = rest.split(':').next().unwrap_or(rest);
            format!("not valid on MariaDB 10.11 ({code})")
        }
        None => reason.to_string(),
    }
}

fn details(results: &[CaseResult]) -> String {
    let mut out = String::from("\nfailure details:\n");
    for r in results {
        for (direction, outcome) in outcomes(r) {
            if let Outcome::Failed { reason, detail } = outcome {
                let _ = writeln!(
                    out,
                    "\n== {}/{}{direction}: {reason}\n{detail}",
                    r.file, r.name
                );
            }
        }
    }
    out
}

fn write_report(text: &str) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("conformance");
    let path = dir.join("sqldef.txt");
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text)) {
        Ok(()) => println!("report written to {}", path.display()),
        Err(e) => println!("cannot write {}: {e}", path.display()),
    }
}

async fn run_suite(sandbox: &Sandbox, cases: Vec<Named>) -> Vec<CaseResult> {
    let servers: Vec<Server> = sandbox
        .servers()
        .iter()
        .map(|s| {
            let opts = Opts::from_url(&s.dsn()).unwrap_or_else(|e| panic!("sandbox DSN: {e}"));
            Server {
                dsn: s.dsn(),
                pool: Pool::new(opts),
            }
        })
        .collect();
    let version = version_numbers(sandbox.servers()[0].version());
    let servers = &servers;
    let version = &version;
    let mut results: Vec<(usize, CaseResult)> =
        futures::stream::iter(cases.into_iter().enumerate())
            .map(|(i, named)| async move {
                let server = &servers[i % servers.len()];
                let (forward, reverse) = run_case(server, version, &named).await;
                let result = CaseResult {
                    file: named.file,
                    name: named.name,
                    forward,
                    reverse,
                    drop_disabled: named.case.enable_drop == Some(false),
                };
                (i, result)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    for server in servers {
        let _ = server.pool.clone().disconnect().await;
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[test]
fn sqldef_conformance() {
    let dir = suite_dir().join("sqldef");
    if !dir.is_dir() {
        println!(
            "skipped: the sqldef conformance suite was not found at {} (set SCHEMAGATE_CONFORMANCE)",
            dir.display()
        );
        return;
    }
    let cases = load_cases(&dir);
    let sandbox = sandbox::shared().unwrap_or_else(|e| panic!("starting the sandbox servers: {e}"));
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    let results = runtime.block_on(run_suite(sandbox, cases));
    let (summary, total) = report(&results, started.elapsed());
    println!("{summary}");
    write_report(&format!("{summary}{}", details(&results)));
    assert!(
        total.converged >= CONVERGED_FLOOR,
        "only {}/{} applicable sqldef cases converged; the floor is {CONVERGED_FLOOR}",
        total.converged,
        total.applicable
    );
    assert!(
        total.reverse_converged >= REVERSE_FLOOR,
        "only {}/{} applicable sqldef cases converged in reverse; the floor is {REVERSE_FLOOR}",
        total.reverse_converged,
        total.reverse_applicable
    );
}

#[test]
fn versions_compare_numerically() {
    assert_eq!(version_numbers("10.11.19-MariaDB-0+deb12u1"), [10, 11, 19]);
    let server = version_numbers("10.11.19-MariaDB");
    let case = |min: Option<&str>, max: Option<&str>| Case {
        min_version: min.map(str::to_string),
        max_version: max.map(str::to_string),
        ..Case::default()
    };
    assert!(option_skip(&case(Some("8.0"), None), &server).is_none());
    assert!(option_skip(&case(Some("10.2"), None), &server).is_none());
    assert!(option_skip(&case(Some("11.0"), None), &server).is_some());
    assert!(option_skip(&case(None, Some("5.7")), &server).is_some());
    assert!(option_skip(&case(None, Some("10.11")), &server).is_none());
}

#[test]
fn out_of_scope_objects_are_recognised() {
    let case = |sql: &str| Case {
        desired: sql.to_string(),
        ..Case::default()
    };
    let kind = |sql: &str| out_of_scope(&case(sql));
    assert_eq!(kind("CREATE TABLE t (id int);").as_deref(), None);
    assert_eq!(kind("CREATE INDEX i ON t (a);").as_deref(), None);
    assert_eq!(
        kind("CREATE OR REPLACE SQL SECURITY DEFINER VIEW v AS SELECT 1;").as_deref(),
        Some("out of scope: views")
    );
    assert_eq!(
        kind("CREATE DEFINER='root'@'%' EVENT e ON SCHEDULE EVERY 1 DAY DO SELECT 1;").as_deref(),
        Some("out of scope: events")
    );
    assert_eq!(
        kind("-- CREATE VIEW\nCREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW SET @a = 1;")
            .as_deref(),
        Some("out of scope: triggers")
    );
    assert_eq!(
        kind("GRANT SELECT ON t TO r;").as_deref(),
        Some("out of scope: privileges")
    );
}
