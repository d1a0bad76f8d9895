//! Compares canonical tables and produces the DDL that turns the live schema into the desired
//! one, each statement classified for safety. Pure: no I/O, so it is tested in isolation and
//! every plan it makes is verified on a server before anyone sees it (see `plan`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::schema::sql::quote_ident;
use crate::schema::{Column, ColumnType, ForeignKey, Generated, Index, IndexKind, Table};

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
///
/// With `foreign_key_checks` on, the server refuses to change the type or collation of a
/// column a foreign key uses, on either side, and to drop a column a foreign key of another
/// table references; such foreign keys are dropped first and added back last, and a table
/// about to be dropped first lets go of the tables that change. Tables created in a
/// reference cycle get the foreign keys that close it once all of them exist.
pub fn diff_schemas(
    live: &BTreeMap<String, Table>,
    desired: &BTreeMap<String, Table>,
) -> SchemaDiff {
    let mut out = SchemaDiff::default();
    let mut phases = Phases::default();
    let retyped = retyped_columns(live, desired);
    let mut altered: BTreeSet<&str> = BTreeSet::new();
    for (name, want) in desired {
        let Some(have) = live.get(name) else { continue };
        let cycled = foreign_keys_to_cycle(have, want, &retyped);
        // Most tables are identical: their canonical text says so without a full diff.
        if cycled.is_empty() && have.create_sql == want.create_sql {
            continue;
        }
        match diff_table(have, want, &cycled) {
            Ok(diff) => {
                if !diff.main.is_empty() || diff.partitioning.is_some() {
                    altered.insert(name.as_str());
                }
                phases.add(name, diff);
            }
            Err(e) => out.errors.push(e),
        }
    }
    let creates = create_tables(live, desired, &mut phases.post);
    let drops = drop_tables(live, desired, &altered, &mut phases.pre);
    out.changes = phases
        .pre
        .into_iter()
        .chain(phases.main)
        .chain(creates)
        .chain(phases.post)
        .chain(drops)
        .collect();
    out
}

/// The ALTER statements of a plan by phase.
#[derive(Default)]
struct Phases {
    pre: Vec<Change>,
    main: Vec<Change>,
    post: Vec<Change>,
}

impl Phases {
    /// Adds a table's statements. A partitioning change ends its main ALTER, so that the
    /// rows are copied once and the columns and keys the new partitioning needs (or the old
    /// one used) change in the same statement.
    fn add(&mut self, name: &str, diff: TableDiff) {
        let alter = |clauses: &[String]| {
            format!("ALTER TABLE {} {}", quote_ident(name), clauses.join(", "))
        };
        if !diff.pre.is_empty() {
            self.pre.push(change(
                name,
                ChangeKind::Alter,
                alter(&diff.pre),
                vec![],
                vec![],
            ));
        }
        let mut warnings = diff.warnings;
        let main = match (diff.main.is_empty(), diff.partitioning) {
            (true, None) => None,
            (false, None) => Some(alter(&diff.main)),
            (true, Some((clause, more))) => {
                warnings.extend(more);
                Some(alter(&[clause]))
            }
            (false, Some((clause, more))) => {
                warnings.extend(more);
                Some(format!("{} {clause}", alter(&diff.main)))
            }
        };
        if let Some(statement) = main {
            self.main.push(change(
                name,
                ChangeKind::Alter,
                statement,
                diff.reasons,
                warnings,
            ));
        }
        if !diff.post.is_empty() {
            self.post.push(change(
                name,
                ChangeKind::Alter,
                alter(&diff.post),
                vec![],
                vec![],
            ));
        }
    }
}

/// CREATE TABLE for every new table, referenced ones first. A foreign key on a new table that
/// is created later (a reference cycle) is left out of the CREATE and added in `post`.
fn create_tables(
    live: &BTreeMap<String, Table>,
    desired: &BTreeMap<String, Table>,
    post: &mut Vec<Change>,
) -> Vec<Change> {
    let created: Vec<&Table> = desired
        .values()
        .filter(|t| !live.contains_key(&t.name))
        .collect();
    let mut pending: BTreeSet<&str> = created.iter().map(|t| t.name.as_str()).collect();
    let mut out = Vec::new();
    for t in dependency_order(&created) {
        pending.remove(t.name.as_str());
        let deferred: Vec<&str> = t
            .foreign_keys
            .iter()
            .filter(|fk| {
                fk.referenced_database.is_none() && pending.contains(fk.referenced_table.as_str())
            })
            .map(|fk| fk.definition.as_str())
            .collect();
        let create = t.create_sql_without(&deferred);
        out.push(change(&t.name, ChangeKind::Create, create, vec![], vec![]));
        if !deferred.is_empty() {
            let clauses: Vec<String> = deferred.iter().map(|d| format!("ADD {d}")).collect();
            let statement = format!(
                "ALTER TABLE {} {}",
                quote_ident(&t.name),
                clauses.join(", ")
            );
            post.push(change(
                &t.name,
                ChangeKind::Alter,
                statement,
                vec![],
                vec![],
            ));
        }
    }
    out
}

/// DROP TABLE for every table that is not desired, referencing ones first. Before anything
/// changes, a dropped table lets go of the tables this plan alters (their columns may change
/// before it goes) and of dropped tables that go before it (a reference cycle).
fn drop_tables(
    live: &BTreeMap<String, Table>,
    desired: &BTreeMap<String, Table>,
    altered: &BTreeSet<&str>,
    pre: &mut Vec<Change>,
) -> Vec<Change> {
    let dropped: Vec<&Table> = live
        .values()
        .filter(|t| !desired.contains_key(&t.name))
        .collect();
    let mut order = dependency_order(&dropped);
    order.reverse();
    let mut gone: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for t in order {
        pre.extend(release_references(t, |name| {
            altered.contains(name) || gone.contains(name)
        }));
        gone.insert(t.name.as_str());
        out.push(change(
            &t.name,
            ChangeKind::Drop,
            format!("DROP TABLE {}", quote_ident(&t.name)),
            vec![format!("drops table `{}` and all its rows", t.name)],
            vec![],
        ));
    }
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

/// Per desired table, the columns whose type or collation changes or which are re-created.
fn retyped_columns<'a>(
    live: &BTreeMap<String, Table>,
    desired: &'a BTreeMap<String, Table>,
) -> BTreeMap<&'a str, BTreeSet<&'a str>> {
    let mut out = BTreeMap::new();
    for (name, want) in desired {
        let Some(have) = live.get(name) else { continue };
        let renames = renames(have, want);
        let columns: BTreeSet<&str> = want
            .columns
            .iter()
            .filter(|c| {
                live_column(have, &renames, c).is_some_and(|old| {
                    type_text(old) != type_text(c)
                        || effective(old, have).1 != effective(c, want).1
                        || recreated(old, c)
                })
            })
            .map(|c| c.name.as_str())
            .collect();
        if !columns.is_empty() {
            out.insert(name.as_str(), columns);
        }
    }
    out
}

/// Names of unchanged foreign keys of `want` that use a retyped column on either side.
fn foreign_keys_to_cycle<'a>(
    have: &Table,
    want: &'a Table,
    retyped: &BTreeMap<&str, BTreeSet<&str>>,
) -> BTreeSet<&'a str> {
    let uses = |table: &str, columns: &[String]| {
        retyped
            .get(table)
            .is_some_and(|r| columns.iter().any(|c| r.contains(c.as_str())))
    };
    want.foreign_keys
        .iter()
        .filter(|fk| {
            have.foreign_keys
                .iter()
                .any(|h| h.name == fk.name && h.definition == fk.definition)
        })
        .filter(|fk| {
            uses(&want.name, &fk.columns)
                || (fk.referenced_database.is_none()
                    && uses(&fk.referenced_table, &fk.referenced_columns))
        })
        .map(|fk| fk.name.as_str())
        .collect()
}

/// Drops the foreign keys of a table about to be dropped that reference a table for which
/// `release` holds.
fn release_references(table: &Table, release: impl Fn(&str) -> bool) -> Option<Change> {
    let clauses: Vec<String> = table
        .foreign_keys
        .iter()
        .filter(|fk| {
            fk.referenced_database.is_none()
                && fk.referenced_table != table.name
                && release(&fk.referenced_table)
        })
        .map(|fk| format!("DROP FOREIGN KEY {}", quote_ident(&fk.name)))
        .collect();
    (!clauses.is_empty()).then(|| {
        change(
            &table.name,
            ChangeKind::Alter,
            format!(
                "ALTER TABLE {} {}",
                quote_ident(&table.name),
                clauses.join(", ")
            ),
            vec![],
            vec![],
        )
    })
}

fn type_text(column: &Column) -> &str {
    let (start, end) = column.data_type.span;
    column.definition.get(start..end).unwrap_or_default()
}

/// MariaDB cannot turn a column into or out of a generated one, nor switch VIRTUAL and
/// STORED, in place: such a column is dropped and added again.
fn recreated(old: &Column, new: &Column) -> bool {
    old.generated != new.generated
}

fn diff_table(have: &Table, want: &Table, cycled: &BTreeSet<&str>) -> Result<TableDiff, DiffError> {
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
    let recreated = recreated_columns(have, want);
    let mut cycled = cycled.clone();
    cycled.extend(constraints_using(want, &recreated));
    let added_fks = diff_constraints(have, want, &cycled, &mut d);
    let rebuilt = keys_behind_foreign_keys(have, want, &added_fks);
    diff_indexes(have, want, &rebuilt, &mut d);
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

/// Desired names of the columns that are dropped and added again (see [`recreated`]).
fn recreated_columns<'a>(have: &Table, want: &'a Table) -> BTreeSet<&'a str> {
    let renames = renames(have, want);
    want.columns
        .iter()
        .filter(|c| live_column(have, &renames, c).is_some_and(|old| recreated(old, c)))
        .map(|c| c.name.as_str())
        .collect()
}

/// Foreign keys and checks of `want` that name one of `columns`: the server refuses to drop a
/// column they use, even to add it back in the same statement.
fn constraints_using<'a>(want: &'a Table, columns: &BTreeSet<&str>) -> Vec<&'a str> {
    let fks = want
        .foreign_keys
        .iter()
        .filter(|fk| fk.columns.iter().any(|c| columns.contains(c.as_str())))
        .map(|fk| fk.name.as_str());
    let checks = want
        .checks
        .iter()
        .filter(|check| {
            columns
                .iter()
                .any(|c| check.definition.contains(&quote_ident(c)))
        })
        .map(|check| check.name.as_str());
    fks.chain(checks).collect()
}

/// Foreign keys and checks: dropped first, added last (a same-name replacement cannot share
/// one ALTER). `cycled` names unchanged ones that must be dropped and added back all the same.
/// Returns the foreign keys that are added.
fn diff_constraints<'a>(
    have: &Table,
    want: &'a Table,
    cycled: &BTreeSet<&str>,
    d: &mut TableDiff,
) -> Vec<&'a ForeignKey> {
    let have_fks: Vec<(&str, &str)> = have
        .foreign_keys
        .iter()
        .map(|f| (&*f.name, &*f.definition))
        .collect();
    let want_fks: Vec<(&str, &str)> = want
        .foreign_keys
        .iter()
        .map(|f| (&*f.name, &*f.definition))
        .collect();
    let have_checks: Vec<(&str, &str)> = have
        .checks
        .iter()
        .map(|c| (&*c.name, &*c.definition))
        .collect();
    let want_checks: Vec<(&str, &str)> = want
        .checks
        .iter()
        .map(|c| (&*c.name, &*c.definition))
        .collect();
    let keeps = |element: (&str, &str), other: &[(&str, &str)]| {
        !cycled.contains(element.0) && other.contains(&element)
    };
    for fk in &have_fks {
        if !keeps(*fk, &want_fks) {
            d.pre
                .push(format!("DROP FOREIGN KEY {}", quote_ident(fk.0)));
        }
    }
    for check in &have_checks {
        if !keeps(*check, &want_checks) {
            d.pre
                .push(format!("DROP CONSTRAINT {}", quote_ident(check.0)));
        }
    }
    let mut added = Vec::new();
    for (fk, pair) in want.foreign_keys.iter().zip(&want_fks) {
        if !keeps(*pair, &have_fks) {
            d.post.push(format!("ADD {}", fk.definition));
            added.push(fk);
        }
    }
    for check in &want_checks {
        if keeps(*check, &have_checks) {
            continue;
        }
        d.post.push(format!("ADD {}", check.1));
        if !have_checks.contains(check) {
            d.warnings.push(format!(
                "adding check `{}` fails if existing rows violate it",
                check.0
            ));
        }
    }
    added
}

/// Existing plain keys on exactly the columns of a foreign key that is added under another
/// name, when the server may have created the key implicitly for an earlier foreign key: it
/// is named after the first column, or after a live foreign key. The server replaces such a
/// key with one named after the new constraint (nothing shows whether it was implicit);
/// re-created explicitly in the main ALTER, it is kept. Key name → foreign key name.
fn keys_behind_foreign_keys<'a>(
    have: &Table,
    want: &'a Table,
    added: &[&'a ForeignKey],
) -> BTreeMap<&'a str, &'a str> {
    let mut out = BTreeMap::new();
    for fk in added {
        let key = want
            .indexes
            .iter()
            .find(|i| i.kind == IndexKind::Plain && i.columns == fk.columns && i.name != fk.name);
        let Some(key) = key else { continue };
        let live = have
            .indexes
            .iter()
            .any(|h| h.name == key.name && h.definition == key.definition);
        if live && may_be_implicit(&key.name, &fk.columns, have) {
            out.insert(key.name.as_str(), fk.name.as_str());
        }
    }
    out
}

/// The names the server gives the key it creates for a foreign key: the constraint's name,
/// else the first column's, with `_2`, `_3`, … when taken.
fn may_be_implicit(key: &str, columns: &[String], have: &Table) -> bool {
    let after_column = columns.first().is_some_and(|first| {
        key == first
            || key
                .strip_prefix(first.as_str())
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    after_column || have.foreign_keys.iter().any(|fk| fk.name == key)
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

/// What the ALTER does to one desired key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate<'a> {
    /// Unchanged: it stays where it is.
    Kept,
    /// The same key under a new name: `RENAME INDEX` keeps its place.
    Renamed(&'a Index),
    /// Created by the ALTER: new, changed, or rebuilt.
    Added,
}

/// Why an unchanged key is rebuilt.
enum Rebuild<'a> {
    /// To keep the foreign key's key (see [`keys_behind_foreign_keys`]).
    ForeignKey(&'a str),
    /// To be listed where it is declared (see [`keep_declared_order`]).
    Order,
}

fn diff_indexes(have: &Table, want: &Table, rebuilt: &BTreeMap<&str, &str>, d: &mut TableDiff) {
    let mut fates = index_fates(have, want, rebuilt);
    let mut reasons: BTreeMap<&str, Rebuild> = rebuilt
        .iter()
        .map(|(key, fk)| (*key, Rebuild::ForeignKey(fk)))
        .collect();
    for i in keep_declared_order(want, &mut fates) {
        reasons
            .entry(want.indexes[i].name.as_str())
            .or_insert(Rebuild::Order);
    }
    let survivors: BTreeSet<&str> = want
        .indexes
        .iter()
        .zip(&fates)
        .filter_map(|(index, fate)| match fate {
            Fate::Kept => Some(index.name.as_str()),
            Fate::Renamed(old) => Some(old.name.as_str()),
            Fate::Added => None,
        })
        .collect();
    for index in have
        .indexes
        .iter()
        .filter(|i| !survivors.contains(i.name.as_str()))
    {
        drop_index(index, want, d);
    }
    for (index, fate) in want.indexes.iter().zip(&fates) {
        match fate {
            Fate::Kept => {}
            Fate::Renamed(old) => d.main.push(format!(
                "RENAME INDEX {} TO {}",
                quote_ident(&old.name),
                quote_ident(&index.name)
            )),
            Fate::Added => {
                d.main.push(format!("ADD {}", index.definition));
                warn_added(index, reasons.get(index.name.as_str()), d);
            }
        }
    }
}

fn warn_added(index: &Index, rebuild: Option<&Rebuild>, d: &mut TableDiff) {
    let name = &index.name;
    let warning = match rebuild {
        Some(Rebuild::ForeignKey(fk)) => format!(
            "rebuilds key `{name}` so that foreign key `{fk}` keeps using it (adding a foreign key replaces a key the server created implicitly)"
        ),
        Some(Rebuild::Order) => format!(
            "rebuilds key `{name}` so that the keys stay in the declared order; declare new keys after the existing ones of their kind to avoid this"
        ),
        None if matches!(index.kind, IndexKind::Unique | IndexKind::Primary) => {
            format!("adding unique key `{name}` fails if existing rows hold duplicates")
        }
        None => return,
    };
    d.warnings.push(warning);
}

fn drop_index(index: &Index, want: &Table, d: &mut TableDiff) {
    if index.kind == IndexKind::Primary {
        d.main.push("DROP PRIMARY KEY".into());
    } else {
        d.main
            .push(format!("DROP INDEX {}", quote_ident(&index.name)));
    }
    let replaced = want
        .indexes
        .iter()
        .any(|w| w.name == index.name && w.kind == index.kind && w.columns == index.columns);
    if matches!(index.kind, IndexKind::Unique | IndexKind::Primary) && !replaced {
        d.warnings.push(format!(
            "drops the uniqueness guarantee of `{}`",
            index.name
        ));
    }
}

/// The fate of each desired key, in `want.indexes` order. A key with the same shape under a
/// name that is going away is a rename, not a rebuild.
fn index_fates<'a>(have: &'a Table, want: &Table, rebuilt: &BTreeMap<&str, &str>) -> Vec<Fate<'a>> {
    let wanted = |name: &str| want.indexes.iter().any(|w| w.name == name);
    let mut vanishing: Vec<&Index> = have.indexes.iter().filter(|h| !wanted(&h.name)).collect();
    want.indexes
        .iter()
        .map(|index| {
            if rebuilt.contains_key(index.name.as_str()) {
                return Fate::Added;
            }
            match have.indexes.iter().find(|h| h.name == index.name) {
                Some(h) if h.definition == index.definition => Fate::Kept,
                Some(_) => Fate::Added,
                None if index.kind == IndexKind::Primary => Fate::Added,
                None => match vanishing.iter().position(|h| h.shape() == index.shape()) {
                    Some(at) => Fate::Renamed(vanishing.remove(at)),
                    None => Fate::Added,
                },
            }
        })
        .collect()
}

/// The server lists a table's keys by class (see [`key_class`]), and within a class in the
/// order they were created; an ALTER creates its keys after the existing ones. So an
/// existing key declared after a new key of its class is rebuilt in the same ALTER, and the
/// server lists the keys as declared: every shard shows the same `SHOW CREATE TABLE`,
/// whether its table was created from the file or altered. Keys the ALTER does not add to
/// keep their places, even if the live order already differs. Returns the rebuilt positions.
fn keep_declared_order(want: &Table, fates: &mut [Fate]) -> Vec<usize> {
    let classes: Vec<KeyClass> = want.indexes.iter().map(|i| key_class(i, want)).collect();
    let mut rebuilt = Vec::new();
    for (i, class) in classes.iter().enumerate() {
        let behind_new_key = (0..i).any(|j| fates[j] == Fate::Added && classes[j] == *class);
        if behind_new_key && fates[i] != Fate::Added {
            fates[i] = Fate::Added;
            rebuilt.push(i);
        }
    }
    rebuilt
}

/// MariaDB's key order (`sort_keys`) without the creation order: the primary key, unique keys
/// (not long-hash before long-hash, without nullable columns before with, whole columns
/// before prefixes), the rest, fulltext keys last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    Primary,
    Unique {
        long_hash: bool,
        nullable: bool,
        prefix: bool,
    },
    Plain,
    Fulltext,
}

fn key_class(index: &Index, table: &Table) -> KeyClass {
    match index.kind {
        IndexKind::Primary => KeyClass::Primary,
        IndexKind::Unique => KeyClass::Unique {
            long_hash: index.definition.contains(" USING HASH"),
            nullable: index
                .columns
                .iter()
                .any(|c| table.column(c).is_some_and(|c| c.nullable)),
            prefix: index.definition.contains("`("),
        },
        IndexKind::Plain | IndexKind::Spatial => KeyClass::Plain,
        IndexKind::Fulltext => KeyClass::Fulltext,
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

/// Live names of renamed columns, by desired name: the hint names a live column that the
/// desired table no longer has.
fn renames<'a>(have: &Table, want: &'a Table) -> HashMap<&'a str, &'a str> {
    want.columns
        .iter()
        .filter_map(|c| {
            let old = c.renamed_from.as_deref()?;
            (have.column(old).is_some()
                && have.column(&c.name).is_none()
                && want.column(old).is_none())
            .then_some((c.name.as_str(), old))
        })
        .collect()
}

/// The live column a desired column continues: through a rename, or by name.
fn live_column<'a>(
    have: &'a Table,
    renames: &HashMap<&str, &str>,
    column: &Column,
) -> Option<&'a Column> {
    let old = renames
        .get(column.name.as_str())
        .copied()
        .unwrap_or(&column.name);
    have.column(old)
}

fn diff_columns(have: &Table, want: &Table, d: &mut TableDiff) {
    let renames = renames(have, want);
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
        let Some(old) = live_column(have, &renames, column) else {
            d.main.push(format!(
                "ADD COLUMN {} {}{}",
                quote_ident(&column.name),
                column.definition,
                position
            ));
            continue;
        };
        let old_name = old.name.as_str();
        if recreated(old, column) {
            recreate_column(old, column, &position, d);
            continue;
        }
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

/// Drops `old` and adds `new` in its place (see [`recreated`]); keys on the column follow
/// it by name.
fn recreate_column(old: &Column, new: &Column, position: &str, d: &mut TableDiff) {
    d.main
        .push(format!("DROP COLUMN {}", quote_ident(&old.name)));
    d.main.push(format!(
        "ADD COLUMN {} {}{position}",
        quote_ident(&new.name),
        new.definition
    ));
    let name = &new.name;
    match (old.generated, new.generated) {
        (None, Some(_)) => d.reasons.push(format!(
            "`{name}` becomes a generated column: its stored values are replaced by computed ones"
        )),
        (Some(_), None) => d.reasons.push(format!(
            "`{name}` becomes a regular column: it is re-created with its default, the computed values are not kept"
        )),
        _ => d.warnings.push(format!(
            "`{name}` is re-created as a {} generated column (copies the table)",
            if new.generated == Some(Generated::Stored) { "STORED" } else { "VIRTUAL" }
        )),
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
                .then(&msg)
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
        .then(&msg)
        .flatten(),
        ("date", "datetime" | "timestamp") => None,
        ("datetime", "timestamp") | ("timestamp", "datetime") => (arg(new, 0).unwrap_or(0)
            < arg(old, 0).unwrap_or(0))
        .then(&msg)
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
        let a = "CREATE TABLE `t` (\n  `a` int(11) DEFAULT NULL,\n  KEY `k_a` (`a`),\n  CONSTRAINT `fk` FOREIGN KEY (`a`) REFERENCES `p` (`id`)\n) ENGINE=InnoDB";
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

    fn statements(d: &SchemaDiff) -> Vec<&str> {
        d.changes.iter().map(|c| c.statement.as_str()).collect()
    }

    #[test]
    fn keys_the_server_may_have_created_for_a_foreign_key_survive_its_re_adding() {
        let live = "CREATE TABLE `posts` (\n  `id` int(11) NOT NULL,\n  `author_id` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `author_id` (`author_id`),\n  CONSTRAINT `posts_ibfk_1` FOREIGN KEY (`author_id`) REFERENCES `users` (`id`)\n) ENGINE=InnoDB";
        let desired = live.replace("REFERENCES `users`", "REFERENCES `admins`");
        let d = one(&[live], &[&desired]);
        assert_eq!(
            statements(&d),
            [
                "ALTER TABLE `posts` DROP FOREIGN KEY `posts_ibfk_1`",
                "ALTER TABLE `posts` DROP INDEX `author_id`, ADD KEY `author_id` (`author_id`)",
                "ALTER TABLE `posts` ADD CONSTRAINT `posts_ibfk_1` FOREIGN KEY (`author_id`) REFERENCES `admins` (`id`)"
            ]
        );
        assert!(d.changes[1].warnings[0].contains("foreign key `posts_ibfk_1` keeps using it"));
        assert!(may_be_implicit(
            "author_id_2",
            &["author_id".into()],
            &table(live)
        ));
        assert!(may_be_implicit("posts_ibfk_1", &["x".into()], &table(live)));
        assert!(!may_be_implicit(
            "idx_author",
            &["author_id".into()],
            &table(live)
        ));
    }

    #[test]
    fn foreign_keys_on_retyped_columns_are_dropped_and_added_back() {
        let parent =
            "CREATE TABLE `p` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
        let child = "CREATE TABLE `c` (\n  `pid` int(11) DEFAULT NULL,\n  KEY `k` (`pid`),\n  CONSTRAINT `fk` FOREIGN KEY (`pid`) REFERENCES `p` (`id`)\n) ENGINE=InnoDB";
        let wide = |t: &str| t.replace("int(11)", "bigint(20)");
        let d = one(&[parent, child], &[&wide(parent), &wide(child)]);
        assert_eq!(
            statements(&d),
            [
                "ALTER TABLE `c` DROP FOREIGN KEY `fk`",
                "ALTER TABLE `c` MODIFY COLUMN `pid` bigint(20) DEFAULT NULL",
                "ALTER TABLE `p` MODIFY COLUMN `id` bigint(20) NOT NULL",
                "ALTER TABLE `c` ADD CONSTRAINT `fk` FOREIGN KEY (`pid`) REFERENCES `p` (`id`)"
            ]
        );
        // Only the referenced side changes: the foreign key still has to let go.
        let d = one(&[parent, child], &[&wide(parent), child]);
        assert_eq!(
            d.changes[0].statement,
            "ALTER TABLE `c` DROP FOREIGN KEY `fk`"
        );
        // A change that keeps the type, such as NOT NULL, needs nothing of the kind.
        let not_null = child.replace("DEFAULT NULL", "NOT NULL");
        let d = one(&[parent, child], &[parent, &not_null]);
        assert_eq!(
            statements(&d),
            ["ALTER TABLE `c` MODIFY COLUMN `pid` int(11) NOT NULL"]
        );
    }

    #[test]
    fn a_dropped_table_lets_go_of_the_tables_that_change_before_it_goes() {
        let users = "CREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
        let taggings = "CREATE TABLE `taggings` (\n  `user_id` int(11) NOT NULL,\n  KEY `fk_u` (`user_id`),\n  CONSTRAINT `fk_u` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`)\n) ENGINE=InnoDB";
        let renamed = "CREATE TABLE `users` (\n  `user_id` int(11) NOT NULL,\n  PRIMARY KEY (`user_id`)\n) ENGINE=InnoDB";
        let d = one(&[users, taggings], &[renamed]);
        let s = statements(&d);
        assert_eq!(s[0], "ALTER TABLE `taggings` DROP FOREIGN KEY `fk_u`");
        assert!(
            s[1].starts_with("ALTER TABLE `users` DROP PRIMARY KEY, DROP COLUMN `id`"),
            "{s:?}"
        );
        assert_eq!(s[2], "DROP TABLE `taggings`");
        // A dropped table whose references do not change is simply dropped.
        let d = one(&[users, taggings], &[users]);
        assert_eq!(statements(&d), ["DROP TABLE `taggings`"]);
    }

    #[test]
    fn generated_columns_that_change_kind_are_recreated() {
        let virt = "CREATE TABLE `t` (\n  `a` int(11) DEFAULT NULL,\n  `b` int(11) GENERATED ALWAYS AS (`a` * 2) VIRTUAL,\n  `c` int(11) DEFAULT NULL,\n  CONSTRAINT `pos` CHECK (`b` > 0)\n) ENGINE=InnoDB";
        let stored = virt.replace("VIRTUAL", "STORED");
        let d = one(&[virt], &[&stored]);
        assert_eq!(
            statements(&d),
            [
                "ALTER TABLE `t` DROP CONSTRAINT `pos`",
                "ALTER TABLE `t` DROP COLUMN `b`, ADD COLUMN `b` int(11) GENERATED ALWAYS AS (`a` * 2) STORED AFTER `a`",
                "ALTER TABLE `t` ADD CONSTRAINT `pos` CHECK (`b` > 0)"
            ]
        );
        assert!(!d.changes[1].destructive);
        // The check already held, so re-adding it cannot fail.
        assert!(d.changes[1].warnings.iter().all(|w| !w.contains("violate")));
        let regular = virt.replace("GENERATED ALWAYS AS (`a` * 2) VIRTUAL", "DEFAULT NULL");
        let d = one(&[&regular], &[virt]);
        assert!(d.changes[1].destructive, "{d:?}");
        assert!(d.changes[1]
            .statement
            .contains("DROP COLUMN `b`, ADD COLUMN `b` int(11) GENERATED"));
        let d = one(&[virt], &[&regular]);
        assert!(
            d.changes[1].reasons[0].contains("becomes a regular column"),
            "{d:?}"
        );
    }

    #[test]
    fn new_keys_keep_the_declared_order() {
        let live = "CREATE TABLE `t` (\n  `a` int(11) NOT NULL,\n  `b` int(11) DEFAULT NULL,\n  `c` int(11) DEFAULT NULL,\n  PRIMARY KEY (`a`),\n  KEY `b` (`b`),\n  FULLTEXT KEY `ft` (`c`)\n) ENGINE=InnoDB";
        let first = live.replace("  KEY `b` (`b`),\n", "  KEY `c` (`c`),\n  KEY `b` (`b`),\n");
        let d = one(&[live], &[&first]);
        assert_eq!(
            statements(&d),
            ["ALTER TABLE `t` DROP INDEX `b`, ADD KEY `c` (`c`), ADD KEY `b` (`b`)"]
        );
        assert!(d.changes[0].warnings[0].contains("declared order"));
        // Declared last, the new key is simply added.
        let last = live.replace("  KEY `b` (`b`),\n", "  KEY `b` (`b`),\n  KEY `c` (`c`),\n");
        assert_eq!(
            statements(&one(&[live], &[&last])),
            ["ALTER TABLE `t` ADD KEY `c` (`c`)"]
        );
        // Keys of other classes are listed apart: a unique key never moves plain keys.
        let unique = live.replace(
            "  KEY `b` (`b`),\n",
            "  UNIQUE KEY `u` (`c`),\n  KEY `b` (`b`),\n",
        );
        assert_eq!(
            statements(&one(&[live], &[&unique])),
            ["ALTER TABLE `t` ADD UNIQUE KEY `u` (`c`)"]
        );
        // Live keys already out of the declared order are left alone.
        let swapped = "CREATE TABLE `t` (\n  `b` int(11) DEFAULT NULL,\n  `c` int(11) DEFAULT NULL,\n  KEY `c` (`c`),\n  KEY `b` (`b`)\n) ENGINE=InnoDB";
        let straight = swapped.replace(
            "  KEY `c` (`c`),\n  KEY `b` (`b`)",
            "  KEY `b` (`b`),\n  KEY `c` (`c`)",
        );
        assert!(one(&[swapped], &[&straight]).changes.is_empty());
    }

    #[test]
    fn key_classes_follow_the_server() {
        let t = table("CREATE TABLE `t` (\n  `a` int(11) NOT NULL,\n  `b` int(11) DEFAULT NULL,\n  `c` text DEFAULT NULL,\n  PRIMARY KEY (`a`),\n  UNIQUE KEY `ua` (`a`),\n  UNIQUE KEY `ub` (`b`),\n  UNIQUE KEY `uc` (`c`) USING HASH,\n  UNIQUE KEY `up` (`c`(10)),\n  KEY `kb` (`b`),\n  FULLTEXT KEY `fc` (`c`)\n) ENGINE=InnoDB");
        let classes: Vec<KeyClass> = t.indexes.iter().map(|i| key_class(i, &t)).collect();
        let unique = |long_hash, nullable, prefix| KeyClass::Unique {
            long_hash,
            nullable,
            prefix,
        };
        assert_eq!(
            classes,
            [
                KeyClass::Primary,
                unique(false, false, false),
                unique(false, true, false),
                unique(true, true, false),
                unique(false, true, true),
                KeyClass::Plain,
                KeyClass::Fulltext
            ]
        );
    }

    #[test]
    fn partitioning_ends_the_main_alter() {
        let parted = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `d` date NOT NULL,\n  PRIMARY KEY (`id`,`d`)\n) ENGINE=InnoDB\n PARTITION BY KEY (`d`)\nPARTITIONS 2";
        let plain =
            "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
        let d = one(&[parted], &[plain]);
        assert_eq!(
            statements(&d),
            ["ALTER TABLE `t` DROP PRIMARY KEY, DROP COLUMN `d`, ADD PRIMARY KEY (`id`) REMOVE PARTITIONING"]
        );
        let d = one(&[plain], &[parted]);
        assert_eq!(
            statements(&d),
            ["ALTER TABLE `t` DROP PRIMARY KEY, ADD COLUMN `d` date NOT NULL AFTER `id`, ADD PRIMARY KEY (`id`,`d`) PARTITION BY KEY (`d`)\nPARTITIONS 2"]
        );
        assert!(d.changes[0]
            .warnings
            .iter()
            .any(|w| w.contains("repartitions")));
    }

    #[test]
    fn reference_cycles_are_created_and_dropped() {
        let a = "CREATE TABLE `a` (\n  `id` int(11) NOT NULL,\n  `b_id` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `b_id` (`b_id`),\n  CONSTRAINT `a_ibfk_1` FOREIGN KEY (`b_id`) REFERENCES `b` (`id`)\n) ENGINE=InnoDB";
        let b = "CREATE TABLE `b` (\n  `id` int(11) NOT NULL,\n  `a_id` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `a_id` (`a_id`),\n  CONSTRAINT `b_ibfk_1` FOREIGN KEY (`a_id`) REFERENCES `a` (`id`)\n) ENGINE=InnoDB";
        let d = one(&[], &[a, b]);
        let s = statements(&d);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(
            s[0].starts_with("CREATE TABLE `a`") && !s[0].contains("FOREIGN KEY"),
            "{s:?}"
        );
        assert!(
            s[0].contains("KEY `b_id` (`b_id`)\n) ENGINE=InnoDB"),
            "{}",
            s[0]
        );
        assert_eq!(s[1], b);
        assert_eq!(
            s[2],
            "ALTER TABLE `a` ADD CONSTRAINT `a_ibfk_1` FOREIGN KEY (`b_id`) REFERENCES `b` (`id`)"
        );
        let d = one(&[a, b], &[]);
        assert_eq!(
            statements(&d),
            [
                "ALTER TABLE `a` DROP FOREIGN KEY `a_ibfk_1`",
                "DROP TABLE `b`",
                "DROP TABLE `a`"
            ]
        );
        // A table that references itself needs neither.
        let tree = "CREATE TABLE `n` (\n  `id` int(11) NOT NULL,\n  `up` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `up` (`up`),\n  CONSTRAINT `n_ibfk_1` FOREIGN KEY (`up`) REFERENCES `n` (`id`)\n) ENGINE=InnoDB";
        assert_eq!(statements(&one(&[], &[tree])), [tree]);
        assert_eq!(statements(&one(&[tree], &[])), ["DROP TABLE `n`"]);
    }
}
