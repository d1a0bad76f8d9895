//! Compares canonical tables and produces the DDL that turns the live schema into the desired
//! one, each statement classified for safety. Pure: no I/O, so it is tested in isolation and
//! every plan it makes is verified on a server before anyone sees it (see `plan`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::schema::sql::quote_ident;
use crate::schema::{Column, ColumnType, IndexKind, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Create,
    Alter,
    Drop,
}

/// One statement of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub table: String,
    pub kind: ChangeKind,
    pub statement: String,
    /// Data can be lost: dropped tables or columns, narrowed types, lossy conversions.
    pub destructive: bool,
    /// Why the change is destructive, one entry per cause.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Not destructive, but worth a reviewer's attention (uniqueness dropped, may fail, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A difference the tool cannot express as DDL it trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("table `{table}`: {message}")]
pub struct DiffError {
    pub table: String,
    pub message: String,
}

/// Changes in execution order, plus per-table problems (those tables get no changes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaDiff {
    pub changes: Vec<Change>,
    pub errors: Vec<DiffError>,
}

#[derive(Default)]
struct TableDiff {
    /// Foreign keys and checks to drop before anything else changes.
    pre: Vec<String>,
    main: Vec<String>,
    /// The partitioning clause, with its own warnings.
    partitioning: Option<(String, Vec<String>)>,
    /// Foreign keys and checks to add once every table exists in its new shape.
    post: Vec<String>,
    reasons: Vec<String>,
    warnings: Vec<String>,
}

/// Diffs a whole database. Statement order makes the plan executable as is: foreign keys and
/// checks are dropped first, tables altered, new tables created (referenced ones first),
/// foreign keys added, and dropped tables removed last (referencing ones first).
pub fn diff_schemas(
    live: &BTreeMap<String, Table>,
    desired: &BTreeMap<String, Table>,
) -> SchemaDiff {
    let mut out = SchemaDiff::default();
    let mut pre = Vec::new();
    let mut main = Vec::new();
    let mut partitioning = Vec::new();
    let mut post = Vec::new();
    for (name, want) in desired {
        let Some(have) = live.get(name) else { continue };
        let diff = match diff_table(have, want) {
            Ok(diff) => diff,
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        };
        let alter = |clauses: &[String]| {
            format!("ALTER TABLE {} {}", quote_ident(name), clauses.join(", "))
        };
        if !diff.pre.is_empty() {
            pre.push(change(
                name,
                ChangeKind::Alter,
                alter(&diff.pre),
                vec![],
                vec![],
            ));
        }
        if !diff.main.is_empty() {
            main.push(change(
                name,
                ChangeKind::Alter,
                alter(&diff.main),
                diff.reasons,
                diff.warnings,
            ));
        }
        if let Some((clause, warnings)) = diff.partitioning {
            partitioning.push(change(
                name,
                ChangeKind::Alter,
                alter(&[clause]),
                vec![],
                warnings,
            ));
        }
        if !diff.post.is_empty() {
            post.push(change(
                name,
                ChangeKind::Alter,
                alter(&diff.post),
                vec![],
                vec![],
            ));
        }
    }
    let created: Vec<&Table> = desired
        .values()
        .filter(|t| !live.contains_key(&t.name))
        .collect();
    let creates = dependency_order(&created).into_iter().map(|t| {
        change(
            &t.name,
            ChangeKind::Create,
            t.create_sql.clone(),
            vec![],
            vec![],
        )
    });
    let dropped: Vec<&Table> = live
        .values()
        .filter(|t| !desired.contains_key(&t.name))
        .collect();
    let mut drop_order = dependency_order(&dropped);
    drop_order.reverse();
    let drops = drop_order.into_iter().map(|t| {
        change(
            &t.name,
            ChangeKind::Drop,
            format!("DROP TABLE {}", quote_ident(&t.name)),
            vec![format!("drops table `{}` and all its rows", t.name)],
            vec![],
        )
    });
    out.changes = pre
        .into_iter()
        .chain(main)
        .chain(partitioning)
        .chain(creates)
        .chain(post)
        .chain(drops)
        .collect();
    out
}

fn change(
    table: &str,
    kind: ChangeKind,
    statement: String,
    reasons: Vec<String>,
    warnings: Vec<String>,
) -> Change {
    Change {
        table: table.to_string(),
        kind,
        statement,
        destructive: !reasons.is_empty(),
        reasons,
        warnings,
    }
}

/// Tables ordered so that a table comes after the tables it references (among `tables`).
fn dependency_order<'a>(tables: &[&'a Table]) -> Vec<&'a Table> {
    let names: BTreeSet<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::new();
    let mut remaining: Vec<&Table> = tables.to_vec();
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|t| {
            let ready = t.foreign_keys.iter().all(|fk| {
                fk.referenced_database.is_some()
                    || fk.referenced_table == t.name
                    || !names.contains(fk.referenced_table.as_str())
                    || placed.contains(fk.referenced_table.as_str())
            });
            if ready {
                placed.insert(t.name.as_str());
                order.push(*t);
            }
            !ready
        });
        if remaining.len() == before {
            // A reference cycle: any order fails the same way, verification will say so.
            order.append(&mut remaining);
        }
    }
    order
}

fn diff_table(have: &Table, want: &Table) -> Result<TableDiff, DiffError> {
    let fail = |message: String| DiffError {
        table: want.name.clone(),
        message,
    };
    if have.other != want.other {
        return Err(fail(format!(
            "definitions schemagate cannot alter differ: live has {:?}, desired has {:?}; change them by hand",
            have.other, want.other
        )));
    }
    let mut d = TableDiff::default();

    // Foreign keys and checks: drop first, add last (same-name replacement cannot share one ALTER).
    let have_fks: HashMap<&str, &str> = have
        .foreign_keys
        .iter()
        .map(|f| (f.name.as_str(), f.definition.as_str()))
        .collect();
    let want_fks: HashMap<&str, &str> = want
        .foreign_keys
        .iter()
        .map(|f| (f.name.as_str(), f.definition.as_str()))
        .collect();
    for fk in &have.foreign_keys {
        if want_fks.get(fk.name.as_str()) != Some(&fk.definition.as_str()) {
            d.pre
                .push(format!("DROP FOREIGN KEY {}", quote_ident(&fk.name)));
        }
    }
    for fk in &want.foreign_keys {
        if have_fks.get(fk.name.as_str()) != Some(&fk.definition.as_str()) {
            d.post.push(format!("ADD {}", fk.definition));
        }
    }
    let have_checks: HashMap<&str, &str> = have
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.definition.as_str()))
        .collect();
    let want_checks: HashMap<&str, &str> = want
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.definition.as_str()))
        .collect();
    for check in &have.checks {
        if want_checks.get(check.name.as_str()) != Some(&check.definition.as_str()) {
            d.pre
                .push(format!("DROP CONSTRAINT {}", quote_ident(&check.name)));
        }
    }
    for check in &want.checks {
        if have_checks.get(check.name.as_str()) != Some(&check.definition.as_str()) {
            d.post.push(format!("ADD {}", check.definition));
            d.warnings.push(format!(
                "adding check `{}` fails if existing rows violate it",
                check.name
            ));
        }
    }

    diff_indexes(have, want, &mut d);
    diff_columns(have, want, &mut d);
    diff_options(have, want, &mut d).map_err(fail)?;

    // Index drops must precede column drops and adds; keep clause groups in that order.
    d.main.sort_by_key(|clause| clause_rank(clause));

    if have.partitioning != want.partitioning {
        d.partitioning = Some(match &want.partitioning {
            Some(p) => (
                p.clone(),
                vec!["repartitions the table (copies every row)".into()],
            ),
            None => ("REMOVE PARTITIONING".into(), vec![]),
        });
    }
    Ok(d)
}

fn clause_rank(clause: &str) -> u8 {
    if clause.starts_with("DROP PRIMARY KEY")
        || clause.starts_with("DROP INDEX")
        || clause.starts_with("RENAME INDEX")
    {
        0
    } else if clause.starts_with("DROP COLUMN") {
        1
    } else if clause.starts_with("ADD COLUMN")
        || clause.starts_with("MODIFY COLUMN")
        || clause.starts_with("CHANGE COLUMN")
    {
        2
    } else if clause.starts_with("ADD ") {
        3
    } else {
        4
    }
}

fn diff_indexes(have: &Table, want: &Table, d: &mut TableDiff) {
    let have_by_name: HashMap<&str, &crate::schema::Index> =
        have.indexes.iter().map(|i| (i.name.as_str(), i)).collect();
    let want_by_name: HashMap<&str, &crate::schema::Index> =
        want.indexes.iter().map(|i| (i.name.as_str(), i)).collect();
    let mut dropped: Vec<&crate::schema::Index> = have
        .indexes
        .iter()
        .filter(|i| {
            want_by_name
                .get(i.name.as_str())
                .map(|w| w.definition != i.definition)
                .unwrap_or(true)
        })
        .collect();
    for index in &want.indexes {
        if have_by_name
            .get(index.name.as_str())
            .map(|h| h.definition == index.definition)
            .unwrap_or(false)
        {
            continue;
        }
        // Same shape under another name, and that name is going away: a rename, not a rebuild.
        let renamed = (!have_by_name.contains_key(index.name.as_str())
            && index.kind != IndexKind::Primary)
            .then(|| {
                dropped.iter().position(|h| {
                    !want_by_name.contains_key(h.name.as_str()) && h.shape() == index.shape()
                })
            })
            .flatten();
        if let Some(at) = renamed {
            let old = dropped.remove(at);
            d.main.push(format!(
                "RENAME INDEX {} TO {}",
                quote_ident(&old.name),
                quote_ident(&index.name)
            ));
            continue;
        }
        d.main.push(format!("ADD {}", index.definition));
        if matches!(index.kind, IndexKind::Unique | IndexKind::Primary) {
            d.warnings.push(format!(
                "adding unique key `{}` fails if existing rows hold duplicates",
                index.name
            ));
        }
    }
    for index in dropped {
        if index.kind == IndexKind::Primary {
            d.main.push("DROP PRIMARY KEY".into());
        } else {
            d.main
                .push(format!("DROP INDEX {}", quote_ident(&index.name)));
        }
        let replaced = want_by_name
            .get(index.name.as_str())
            .is_some_and(|w| w.kind == index.kind && w.columns == index.columns);
        if matches!(index.kind, IndexKind::Unique | IndexKind::Primary) && !replaced {
            d.warnings.push(format!(
                "drops the uniqueness guarantee of `{}`",
                index.name
            ));
        }
    }
}

/// Column definition without its charset clause, and the collation it really has.
fn effective(column: &Column, table: &Table) -> (String, Option<String>) {
    let mut bare = column.definition.clone();
    if let Some((s, e)) = column.data_type.charset_span {
        bare.replace_range(s..e, "");
    }
    let bare = bare.split_whitespace().collect::<Vec<_>>().join(" ");
    if !column.data_type.is_textual() {
        return (bare, None);
    }
    let collation = column
        .collation
        .clone()
        .or_else(|| column.charset.clone())
        .or_else(|| table.collation().map(str::to_string))
        .or_else(|| table.charset().map(str::to_string));
    (bare, collation)
}

fn diff_columns(have: &Table, want: &Table, d: &mut TableDiff) {
    // Renames: the hint names a live column that the desired table no longer has.
    let renames: HashMap<&str, &str> = want
        .columns
        .iter()
        .filter_map(|c| {
            let old = c.renamed_from.as_deref()?;
            (have.column(old).is_some()
                && have.column(&c.name).is_none()
                && want.column(old).is_none())
            .then_some((c.name.as_str(), old))
        })
        .collect();
    let rename_sources: BTreeSet<&str> = renames.values().copied().collect();

    for column in &have.columns {
        if want.column(&column.name).is_none() && !rename_sources.contains(column.name.as_str()) {
            d.main
                .push(format!("DROP COLUMN {}", quote_ident(&column.name)));
            if column.generated.is_none() {
                d.reasons
                    .push(format!("drops column `{}` and its data", column.name));
            }
        }
    }

    // Columns that keep their relative order need no position; the rest are moved.
    let kept: Vec<&str> = have
        .columns
        .iter()
        .filter_map(|c| {
            if rename_sources.contains(c.name.as_str()) {
                renames
                    .iter()
                    .find(|(_, old)| **old == c.name)
                    .map(|(new, _)| *new)
            } else {
                want.column(&c.name).map(|_| c.name.as_str())
            }
        })
        .collect();
    let wanted: Vec<&str> = want
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| kept.contains(n))
        .collect();
    let stay = longest_common_subsequence(&kept, &wanted);

    let charset_changes = have.collation() != want.collation() || have.charset() != want.charset();
    for (i, column) in want.columns.iter().enumerate() {
        let position = if i == 0 {
            " FIRST".to_string()
        } else {
            format!(" AFTER {}", quote_ident(&want.columns[i - 1].name))
        };
        let old_name = renames
            .get(column.name.as_str())
            .copied()
            .unwrap_or(&column.name);
        let Some(old) = have.column(old_name) else {
            d.main.push(format!(
                "ADD COLUMN {} {}{}",
                quote_ident(&column.name),
                column.definition,
                position
            ));
            continue;
        };
        let moved = !stay.contains(column.name.as_str());
        let (old_bare, old_collation) = effective(old, have);
        let (new_bare, new_collation) = effective(column, want);
        let changed = old_bare != new_bare || old_collation != new_collation;
        let renamed = old_name != column.name;
        if !changed && !moved && !renamed {
            continue;
        }
        let definition = explicit_charset(column, want, charset_changes);
        let position = if moved { position } else { String::new() };
        if renamed {
            d.main.push(format!(
                "CHANGE COLUMN {} {} {}{}",
                quote_ident(old_name),
                quote_ident(&column.name),
                definition,
                position
            ));
        } else {
            d.main.push(format!(
                "MODIFY COLUMN {} {}{}",
                quote_ident(&column.name),
                definition,
                position
            ));
        }
        if changed {
            classify(
                old,
                old_collation.as_deref(),
                column,
                new_collation.as_deref(),
                d,
            );
        }
    }
}

/// When the table's default charset changes in the same ALTER, a column that relies on the
/// default must name its charset, or it would keep the old one.
fn explicit_charset(column: &Column, table: &Table, charset_changes: bool) -> String {
    if !charset_changes || !column.data_type.is_textual() || column.data_type.charset_span.is_some()
    {
        return column.definition.clone();
    }
    let (Some(charset), Some(collation)) = (table.charset(), table.collation()) else {
        return column.definition.clone();
    };
    let (_, end) = column.data_type.span;
    format!(
        "{} CHARACTER SET {charset} COLLATE {collation}{}",
        &column.definition[..end],
        &column.definition[end..]
    )
}

fn longest_common_subsequence<'a>(a: &[&'a str], b: &[&'a str]) -> BTreeSet<&'a str> {
    let mut table = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            table[i][j] = if a[i] == b[j] {
                table[i + 1][j + 1] + 1
            } else {
                table[i + 1][j].max(table[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = BTreeSet::new();
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.insert(a[i]);
            i += 1;
            j += 1;
        } else if table[i + 1][j] >= table[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

fn diff_options(have: &Table, want: &Table, d: &mut TableDiff) -> Result<(), String> {
    let charset_keys = ["DEFAULT CHARSET", "CHARSET", "COLLATE", "DEFAULT COLLATE"];
    if have.charset() != want.charset() || have.collation() != want.collation() {
        let mut clause = String::new();
        if let Some(charset) = want.charset() {
            clause.push_str(&format!("DEFAULT CHARSET={charset}"));
        }
        if let Some(collation) = want.collation() {
            if !clause.is_empty() {
                clause.push(' ');
            }
            clause.push_str(&format!("COLLATE={collation}"));
        }
        d.main.push(clause);
    }
    let have_opts: BTreeMap<&str, &str> = have
        .options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let want_opts: BTreeMap<&str, &str> = want
        .options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let keys: BTreeSet<&str> = have_opts.keys().chain(want_opts.keys()).copied().collect();
    for key in keys {
        if charset_keys.contains(&key) || have_opts.get(key) == want_opts.get(key) {
            continue;
        }
        let value = match want_opts.get(key) {
            Some(value) => value.to_string(),
            None => reset_value(key)
                .ok_or_else(|| format!("removing table option {key} is not supported; set it explicitly in the desired schema"))?
                .to_string(),
        };
        if value.is_empty() {
            return Err(format!(
                "table option {key} cannot be changed by ALTER TABLE"
            ));
        }
        if key == "ENGINE" {
            d.warnings.push(format!(
                "changes the storage engine to {value} (copies every row)"
            ));
        }
        d.main.push(format!("{key}={value}"));
    }
    Ok(())
}

/// The value that makes a table option go back to not being shown.
fn reset_value(key: &str) -> Option<&'static str> {
    Some(match key {
        "COMMENT" => "''",
        "ROW_FORMAT" | "STATS_PERSISTENT" | "STATS_AUTO_RECALC" | "STATS_SAMPLE_PAGES"
        | "PACK_KEYS" => "DEFAULT",
        "KEY_BLOCK_SIZE" | "CHECKSUM" | "DELAY_KEY_WRITE" | "PAGE_CHECKSUM" | "MIN_ROWS"
        | "MAX_ROWS" | "AVG_ROW_LENGTH" => "0",
        "PAGE_COMPRESSED" => "0",
        "ENCRYPTED" => "DEFAULT",
        "TRANSACTIONAL" => "DEFAULT",
        _ => return None,
    })
}

/// Classifies a column modification: destructive reasons or warnings.
fn classify(
    old: &Column,
    old_collation: Option<&str>,
    new: &Column,
    new_collation: Option<&str>,
    d: &mut TableDiff,
) {
    let name = &new.name;
    if let Some(why) = narrowing(&old.data_type, &new.data_type) {
        d.reasons.push(format!("`{name}`: {why}"));
    }
    if let (Some(from), Some(to)) = (old_collation, new_collation) {
        if from != to {
            let (from_cs, to_cs) = (charset_of(from), charset_of(to));
            if from_cs == to_cs {
                d.warnings.push(format!(
                    "`{name}`: collation {from} → {to} changes comparisons and unique keys"
                ));
            } else if charset_covers(to_cs, from_cs) {
                d.warnings.push(format!(
                    "`{name}`: charset {from_cs} → {to_cs} rewrites the column"
                ));
            } else {
                d.reasons.push(format!(
                    "`{name}`: charset {from_cs} → {to_cs} cannot hold every {from_cs} character"
                ));
            }
        }
    }
    if old.nullable && !new.nullable {
        d.warnings.push(format!(
            "`{name}`: NOT NULL fails if the column holds NULLs"
        ));
    }
}

fn charset_of(collation: &str) -> &str {
    collation.split('_').next().unwrap_or(collation)
}

fn charset_covers(wide: &str, narrow: &str) -> bool {
    wide == narrow
        || (wide == "utf8mb4"
            && matches!(
                narrow,
                "ascii" | "latin1" | "utf8" | "utf8mb3" | "ucs2" | "utf16" | "utf32"
            ))
        || (matches!(wide, "utf8" | "utf8mb3") && narrow == "ascii")
}

fn int_rank(base: &str) -> Option<u8> {
    Some(match base {
        "tinyint" | "bool" | "boolean" => 1,
        "smallint" => 2,
        "mediumint" => 3,
        "int" | "integer" => 4,
        "bigint" => 8,
        _ => return None,
    })
}

fn text_rank(base: &str) -> Option<u8> {
    Some(match base {
        "tinytext" | "tinyblob" => 1,
        "text" | "blob" => 2,
        "mediumtext" | "mediumblob" => 3,
        "longtext" | "longblob" | "json" => 4,
        _ => return None,
    })
}

fn arg(t: &ColumnType, i: usize) -> Option<u64> {
    t.args.get(i).and_then(|a| a.parse().ok())
}

/// Why a type change can lose data, or None when every old value fits the new type.
fn narrowing(old: &ColumnType, new: &ColumnType) -> Option<String> {
    let (a, b) = (old.base.as_str(), new.base.as_str());
    let shown = |t: &ColumnType| {
        let mut s = t.base.clone();
        if !t.args.is_empty() && !matches!(t.base.as_str(), "enum" | "set") {
            s.push_str(&format!("({})", t.args.join(",")));
        }
        if t.unsigned {
            s.push_str(" unsigned");
        }
        s
    };
    let msg = || {
        Some(format!(
            "{} → {} may not hold every existing value",
            shown(old),
            shown(new)
        ))
    };
    if let (Some(ra), Some(rb)) = (int_rank(a), int_rank(b)) {
        let fits = match (old.unsigned, new.unsigned) {
            (false, true) => false,
            (true, false) => rb > ra,
            _ => rb >= ra,
        };
        return if fits { None } else { msg() };
    }
    if let (Some(ra), Some(rb)) = (text_rank(a), text_rank(b)) {
        let same_family = a.ends_with("text") == b.ends_with("text") || a == "json" || b == "json";
        return if rb >= ra && same_family { None } else { msg() };
    }
    match (a, b) {
        ("decimal", "decimal") | ("float", "float") | ("double", "double") => {
            let (p0, s0) = (arg(old, 0).unwrap_or(10), arg(old, 1).unwrap_or(0));
            let (p1, s1) = (arg(new, 0).unwrap_or(10), arg(new, 1).unwrap_or(0));
            if s1 < s0
                || p1.saturating_sub(s1) < p0.saturating_sub(s0)
                || (old.unsigned != new.unsigned && !old.unsigned)
            {
                msg()
            } else {
                None
            }
        }
        ("float", "double") => None,
        ("char" | "varchar", "char" | "varchar")
        | ("binary" | "varbinary", "binary" | "varbinary")
        | ("bit", "bit") => {
            if arg(new, 0).unwrap_or(1) < arg(old, 0).unwrap_or(1) {
                msg()
            } else {
                None
            }
        }
        ("char" | "varchar", _) if text_rank(b).is_some() && b.ends_with("text") => {
            (b == "tinytext" && arg(old, 0).unwrap_or(0) > 63)
                .then(|| msg())
                .flatten()
        }
        ("varbinary" | "binary", _) if text_rank(b).is_some() && b.ends_with("blob") => None,
        ("enum", "enum") | ("set", "set") => {
            let removed: Vec<&String> = old.args.iter().filter(|v| !new.args.contains(v)).collect();
            if removed.is_empty() {
                None
            } else {
                Some(format!(
                    "removes value(s) {} from the {a}",
                    removed
                        .iter()
                        .map(|v| format!("'{v}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        ("datetime" | "timestamp" | "time", _) if a == b => (arg(new, 0).unwrap_or(0)
            < arg(old, 0).unwrap_or(0))
        .then(|| msg())
        .flatten(),
        ("date", "datetime" | "timestamp") => None,
        ("datetime", "timestamp") | ("timestamp", "datetime") => (arg(new, 0).unwrap_or(0)
            < arg(old, 0).unwrap_or(0))
        .then(|| msg())
        .flatten(),
        _ if a == b && old.args == new.args && old.unsigned == new.unsigned => None,
        _ => msg(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sql: &str) -> Table {
        Table::parse_canonical(sql).unwrap()
    }

    fn one(live: &[&str], desired: &[&str]) -> SchemaDiff {
        let map = |list: &[&str]| {
            list.iter()
                .map(|s| table(s))
                .map(|t| (t.name.clone(), t))
                .collect()
        };
        diff_schemas(&map(live), &map(desired))
    }

    const USERS: &str = "CREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n  `name` varchar(100) DEFAULT NULL,\n  `email` varchar(255) NOT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `email` (`email`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";

    #[test]
    fn identical_tables_need_nothing() {
        let d = one(&[USERS], &[USERS]);
        assert_eq!(d, SchemaDiff::default());
        let with_counter = USERS.replace("ENGINE=InnoDB ", "ENGINE=InnoDB AUTO_INCREMENT=42 ");
        assert!(one(&[&with_counter], &[USERS]).changes.is_empty());
    }

    #[test]
    fn create_and_drop_are_ordered_by_references() {
        let orders = "CREATE TABLE `orders` (\n  `id` int(11) NOT NULL,\n  `user_id` int(11) NOT NULL,\n  KEY `user_id` (`user_id`),\n  CONSTRAINT `fk_user` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`)\n) ENGINE=InnoDB";
        let d = one(&[], &[orders, USERS]);
        let tables: Vec<&str> = d.changes.iter().map(|c| c.table.as_str()).collect();
        assert_eq!(tables, ["users", "orders"]);
        let d = one(&[orders, USERS], &[]);
        let tables: Vec<&str> = d.changes.iter().map(|c| c.table.as_str()).collect();
        assert_eq!(tables, ["orders", "users"]);
        assert!(d
            .changes
            .iter()
            .all(|c| c.destructive && c.kind == ChangeKind::Drop));
    }

    #[test]
    fn columns_added_dropped_moved_and_renamed() {
        let desired = "CREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n  `email` varchar(255) NOT NULL,\n  `full_name` varchar(100) DEFAULT NULL,\n  `age` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `email` (`email`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";
        let mut want = table(desired);
        want.columns[2].renamed_from = Some("name".into());
        let live = table(USERS);
        let d = diff_schemas(
            &[("users".to_string(), live)].into(),
            &[("users".to_string(), want)].into(),
        );
        assert_eq!(d.changes.len(), 1);
        let c = &d.changes[0];
        assert_eq!(
            c.statement,
            "ALTER TABLE `users` CHANGE COLUMN `name` `full_name` varchar(100) DEFAULT NULL AFTER `email`, ADD COLUMN `age` int(11) DEFAULT NULL AFTER `full_name`"
        );
        assert!(!c.destructive);
        // Without the hint it is a drop and an add, which loses data.
        let d = one(&[USERS], &[desired]);
        assert!(d.changes[0].statement.contains("DROP COLUMN `name`"));
        assert!(d.changes[0].destructive);
    }

    #[test]
    fn narrowing_is_destructive_and_widening_is_not() {
        let narrower = USERS.replace("varchar(100)", "varchar(50)");
        let d = one(&[USERS], &[&narrower]);
        assert_eq!(
            d.changes[0].statement,
            "ALTER TABLE `users` MODIFY COLUMN `name` varchar(50) DEFAULT NULL"
        );
        assert!(d.changes[0].destructive);
        let d = one(&[&narrower], &[USERS]);
        assert!(!d.changes[0].destructive);
        let bigint = USERS.replace("`id` int(11)", "`id` bigint(20)");
        assert!(!one(&[USERS], &[&bigint]).changes[0].destructive);
        assert!(one(&[&bigint], &[USERS]).changes[0].destructive);
    }

    #[test]
    fn enum_value_removal_is_destructive() {
        let a = "CREATE TABLE `t` (\n  `s` enum('a','b','c') DEFAULT NULL\n) ENGINE=InnoDB";
        let b = "CREATE TABLE `t` (\n  `s` enum('a','b') DEFAULT NULL\n) ENGINE=InnoDB";
        let d = one(&[a], &[b]);
        assert!(d.changes[0].destructive);
        assert!(d.changes[0].reasons[0].contains("'c'"));
        assert!(!one(&[b], &[a]).changes[0].destructive);
    }

    #[test]
    fn table_charset_change_rewrites_implicit_columns() {
        let latin = USERS.replace(
            "utf8mb4 COLLATE=utf8mb4_general_ci",
            "latin1 COLLATE=latin1_swedish_ci",
        );
        let d = one(&[&latin], &[USERS]);
        let s = &d.changes[0].statement;
        assert!(s.contains("MODIFY COLUMN `name` varchar(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci DEFAULT NULL"), "{s}");
        assert!(
            s.ends_with("DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"),
            "{s}"
        );
        assert!(!d.changes[0].destructive);
        assert!(one(&[USERS], &[&latin]).changes[0].destructive);
    }

    #[test]
    fn index_changes_and_renames() {
        let renamed = USERS.replace("UNIQUE KEY `email`", "UNIQUE KEY `uk_email`");
        let d = one(&[USERS], &[&renamed]);
        assert_eq!(
            d.changes[0].statement,
            "ALTER TABLE `users` RENAME INDEX `email` TO `uk_email`"
        );
        let plain = USERS.replace("UNIQUE KEY `email`", "KEY `email`");
        let d = one(&[USERS], &[&plain]);
        assert_eq!(
            d.changes[0].statement,
            "ALTER TABLE `users` DROP INDEX `email`, ADD KEY `email` (`email`)"
        );
        assert!(d.changes[0]
            .warnings
            .iter()
            .any(|w| w.contains("uniqueness")));
    }

    #[test]
    fn foreign_keys_are_dropped_first_and_added_last() {
        let a = "CREATE TABLE `t` (\n  `a` int(11) DEFAULT NULL,\n  KEY `a` (`a`),\n  CONSTRAINT `fk` FOREIGN KEY (`a`) REFERENCES `p` (`id`)\n) ENGINE=InnoDB";
        let b = a.replace("(`id`)\n", "(`id`) ON DELETE CASCADE\n");
        let d = one(&[a], &[&b]);
        let statements: Vec<&str> = d.changes.iter().map(|c| c.statement.as_str()).collect();
        assert_eq!(
            statements,
            [
                "ALTER TABLE `t` DROP FOREIGN KEY `fk`",
                "ALTER TABLE `t` ADD CONSTRAINT `fk` FOREIGN KEY (`a`) REFERENCES `p` (`id`) ON DELETE CASCADE"
            ]
        );
    }

    #[test]
    fn options_and_partitioning() {
        let commented = USERS.replace(
            "COLLATE=utf8mb4_general_ci",
            "COLLATE=utf8mb4_general_ci COMMENT='people'",
        );
        assert_eq!(
            one(&[USERS], &[&commented]).changes[0].statement,
            "ALTER TABLE `users` COMMENT='people'"
        );
        assert_eq!(
            one(&[&commented], &[USERS]).changes[0].statement,
            "ALTER TABLE `users` COMMENT=''"
        );
        let parted = format!("{USERS}\n PARTITION BY KEY (`id`)\nPARTITIONS 4");
        let d = one(&[USERS], &[&parted]);
        assert_eq!(
            d.changes[0].statement,
            "ALTER TABLE `users` PARTITION BY KEY (`id`)\nPARTITIONS 4"
        );
        assert_eq!(
            one(&[&parted], &[USERS]).changes[0].statement,
            "ALTER TABLE `users` REMOVE PARTITIONING"
        );
    }
}
