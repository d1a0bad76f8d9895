//! The plan: for every shard of every keyspace, the verified DDL that turns its live schema
//! into the desired one.
//!
//! Desired files are parsed before any server is contacted, so bad input touches nothing.
//! Shards are introspected concurrently (bounded); shards that run the same server version
//! with the same database defaults share one workspace for canonical forms; shards whose
//! plans are identical (the common case) are verified once.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use tracing::{debug, info};

use crate::diff::{diff_schemas, Change, ChangeKind, DiffError};
use crate::live::{CanonicalCache, LiveError, ServerFlavor, ShardConn};
use crate::schema::{self, DesiredTable, SchemaError, Table};
use crate::source::{Desired, ForeignKeys, Keyspace};
use crate::workspace::{self, Workspace, WorkspaceError};

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub keyspaces: Vec<KeyspacePlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyspacePlan {
    pub keyspace: String,
    pub database: String,
    pub shards: Vec<ShardPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardPlan {
    pub shard: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    pub changes: Vec<Change>,
    /// Problems on this shard: unreachable, or tables whose change could not be planned safely.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<PlanIssue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanIssue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub message: String,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.shards().any(|s| !s.changes.is_empty())
    }

    pub fn has_errors(&self) -> bool {
        self.shards().any(|s| !s.errors.is_empty())
    }

    fn shards(&self) -> impl Iterator<Item = &ShardPlan> {
        self.keyspaces.iter().flat_map(|k| k.shards.iter())
    }
}

#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Plan only this keyspace.
    pub keyspace: Option<String>,
    /// Shards introspected at the same time, fleet-wide.
    pub concurrency: usize,
    /// Reuse canonical forms cached in `_schemagate.canonical` on the workspace server.
    pub cache: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            keyspace: None,
            concurrency: 16,
            cache: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("unknown keyspace `{name}`; schemagate.yaml defines: {}", .known.join(", "))]
    UnknownKeyspace { name: String, known: Vec<String> },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Schema(Vec<SchemaError>),
}

/// Plans every selected keyspace. Shard-level problems are reported inside the plan;
/// problems with the desired state itself are errors.
pub async fn plan(desired: &Desired, options: &PlanOptions) -> Result<Plan, PlanError> {
    let keyspaces: Vec<&Keyspace> = match &options.keyspace {
        Some(name) => {
            vec![desired
                .config
                .keyspace(name)
                .ok_or_else(|| PlanError::UnknownKeyspace {
                    name: name.clone(),
                    known: desired
                        .config
                        .keyspaces
                        .iter()
                        .map(|k| k.name.clone())
                        .collect(),
                })?]
        }
        None => desired.config.keyspaces.iter().collect(),
    };
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for keyspace in &keyspaces {
        let files = desired
            .files
            .get(&keyspace.name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        match schema::parse_keyspace(files.iter().map(|f| (f.path.as_str(), f.text.as_str()))) {
            Ok(tables) => parsed.push((*keyspace, tables)),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(PlanError::Schema(errors));
    }
    let mut plan = Plan {
        keyspaces: Vec::new(),
    };
    for (keyspace, tables) in parsed {
        plan.keyspaces
            .push(plan_keyspace(keyspace, &tables, options).await?);
    }
    Ok(plan)
}

async fn plan_keyspace(
    keyspace: &Keyspace,
    tables: &[DesiredTable],
    options: &PlanOptions,
) -> Result<KeyspacePlan, PlanError> {
    let started = Instant::now();
    let conns: Vec<ShardConn> = keyspace
        .shards
        .iter()
        .map(|s| ShardConn::new(&s.name, &s.dsn, 6))
        .collect();
    let mut shards: Vec<ShardPlan> = keyspace
        .shards
        .iter()
        .map(|s| ShardPlan {
            shard: s.name.clone(),
            server_version: None,
            changes: Vec::new(),
            errors: Vec::new(),
        })
        .collect();
    let result = plan_shards(&conns, keyspace, tables, options, &mut shards).await;
    for conn in conns {
        conn.disconnect().await;
    }
    result?;
    info!(keyspace = %keyspace.name, elapsed_ms = started.elapsed().as_millis() as u64, "planned");
    Ok(KeyspacePlan {
        keyspace: keyspace.name.clone(),
        database: keyspace.database.clone(),
        shards,
    })
}

async fn plan_shards(
    conns: &[ShardConn],
    keyspace: &Keyspace,
    tables: &[DesiredTable],
    options: &PlanOptions,
    shards: &mut [ShardPlan],
) -> Result<(), PlanError> {
    let database = keyspace.database.as_str();
    let all: Vec<usize> = (0..conns.len()).collect();
    // Server facts first: they decide the workspaces, which are then built while the shards'
    // tables are read.
    let mut groups: BTreeMap<ServerFlavor, Vec<usize>> = BTreeMap::new();
    for (i, flavor) in
        crate::live::each_shard(conns, &all, options.concurrency, |c| c.flavor(database)).await
    {
        match flavor {
            Ok(flavor) => {
                shards[i].server_version = Some(flavor.version.clone());
                groups.entry(flavor).or_default().push(i);
            }
            Err(e) => shards[i].errors.push(PlanIssue {
                table: None,
                message: e.to_string(),
            }),
        }
    }
    let reachable: Vec<usize> = groups.values().flatten().copied().collect();
    let reading = crate::live::each_shard(conns, &reachable, options.concurrency, |c| {
        c.table_texts(database)
    });
    let canonicalizing = futures::future::join_all(groups.iter().map(|(flavor, members)| {
        canonical_desired(&conns[members[0]], flavor, tables, options.cache)
    }));
    let (texts, canonical) = tokio::join!(reading, canonicalizing);

    let mut parser = CanonicalCache::default();
    let mut lives: BTreeMap<usize, BTreeMap<String, Table>> = BTreeMap::new();
    for (i, result) in texts {
        match result.and_then(|texts| parser.parse_all(&conns[i].shard, texts)) {
            Ok(tables) => {
                lives.insert(i, tables);
            }
            Err(e) => shards[i].errors.push(PlanIssue {
                table: None,
                message: e.to_string(),
            }),
        }
    }
    let mut cleanups = Vec::new();
    let mut outcome = Ok(());
    for ((flavor, members), canonical) in groups.into_iter().zip(canonical) {
        cleanups.extend(canonical.cleanup);
        let members: Vec<(usize, BTreeMap<String, Table>)> = members
            .into_iter()
            .filter_map(|i| lives.remove(&i).map(|t| (i, t)))
            .collect();
        match canonical.tables {
            Ok(desired) => {
                plan_group(
                    &conns[members.first().map_or(0, |m| m.0)],
                    &flavor,
                    members,
                    (&desired, keyspace.foreign_keys),
                    shards,
                )
                .await
            }
            Err(WorkspaceError::Rejected(errors)) => {
                outcome = Err(PlanError::Schema(errors));
                break;
            }
            Err(WorkspaceError::Live(e)) => {
                for (i, _) in &members {
                    shards[*i].errors.push(PlanIssue {
                        table: None,
                        message: format!("cannot compute the desired canonical form: {e}"),
                    });
                }
            }
        }
    }
    for cleanup in cleanups {
        if let Ok(Err(e)) = cleanup.await {
            tracing::warn!("{e}");
        }
    }
    outcome
}

async fn plan_group(
    host: &ShardConn,
    flavor: &ServerFlavor,
    members: Vec<(usize, BTreeMap<String, Table>)>,
    (desired, foreign_keys): (&BTreeMap<String, Table>, ForeignKeys),
    shards: &mut [ShardPlan],
) {
    // Shards with the same live definitions get the same plan: diff and verify it once.
    let mut unique: Vec<SharedPlan> = Vec::new();
    for (i, live) in members {
        let mut diff = diff_schemas(&live, desired);
        online_warnings(&mut diff.changes, &live, foreign_keys);
        let found = unique.iter_mut().find(|p| {
            p.changes == diff.changes
                && p.errors == diff.errors
                && touched_equal(&p.live, &live, &p.changes)
        });
        match found {
            Some(plan) => plan.shards.push(i),
            None => unique.push(SharedPlan {
                shards: vec![i],
                live,
                changes: diff.changes,
                errors: diff.errors,
            }),
        }
    }
    debug!(version = %flavor.version, distinct_plans = unique.len(), "diffed");
    let verified: Vec<Result<Vec<DiffError>, LiveError>> = futures::stream::iter(unique.iter())
        .map(|p| verify(host, flavor, &p.live, desired, &p.changes))
        .buffered(4)
        .collect()
        .await;
    for (shared, verdict) in unique.into_iter().zip(verified) {
        let SharedPlan {
            shards: members,
            changes,
            errors: diff_errors,
            ..
        } = shared;
        let mut issues: Vec<PlanIssue> = diff_errors
            .into_iter()
            .map(|e| PlanIssue {
                table: Some(e.table),
                message: e.message,
            })
            .collect();
        match verdict {
            Ok(errors) => issues.extend(errors.into_iter().map(|e| PlanIssue {
                table: Some(e.table),
                message: e.message,
            })),
            Err(e) => issues.push(PlanIssue {
                table: None,
                message: format!("cannot verify the plan: {e}"),
            }),
        }
        let unverified = issues.iter().any(|i| i.table.is_none());
        let kept: Vec<Change> = if unverified {
            Vec::new()
        } else {
            changes
                .into_iter()
                .filter(|c| {
                    !issues
                        .iter()
                        .any(|i| i.table.as_deref() == Some(c.table.as_str()))
                })
                .collect()
        };
        for i in members {
            shards[i].changes = kept.clone();
            shards[i].errors.extend(issues.iter().cloned());
        }
    }
}

/// What `apply` will refuse to copy online, read off the live tables, as warnings on each
/// altered table's first change: a change that does not prove INSTANT at staging goes
/// through a shadow table, which a table with foreign keys of its own needs
/// `foreign_keys: carry` for, and which a table other tables reference cannot use.
fn online_warnings(changes: &mut [Change], live: &BTreeMap<String, Table>, keys: ForeignKeys) {
    let mut seen: Vec<String> = Vec::new();
    for change in changes.iter_mut().filter(|c| c.kind == ChangeKind::Alter) {
        if seen.contains(&change.table) {
            continue;
        }
        seen.push(change.table.clone());
        let Some(table) = live.get(&change.table) else {
            continue;
        };
        let referencing: Vec<String> = live
            .values()
            .filter(|t| {
                t.foreign_keys.iter().any(|fk| {
                    fk.referenced_database.is_none()
                        && fk.referenced_table.eq_ignore_ascii_case(&change.table)
                })
            })
            .map(|t| format!("`{}`", t.name))
            .collect();
        if !referencing.is_empty() {
            change.warnings.push(format!(
                "foreign keys of {} reference this table: unless the change proves INSTANT at \
                 staging, apply refuses it (after the swap they would reference the old table)",
                referencing.join(", ")
            ));
        } else if !table.foreign_keys.is_empty() && keys == ForeignKeys::Refuse {
            change.warnings.push(
                "this table has foreign keys: unless the change proves INSTANT at staging, \
                 apply refuses to copy it; `foreign_keys: carry` in schemagate.yaml copies \
                 them along"
                    .to_string(),
            );
        } else if let Some(fk) = table
            .foreign_keys
            .iter()
            .find(|fk| crate::deploy::foreign_keys::acts_on_children(&fk.definition))
        {
            change.warnings.push(format!(
                "foreign key `{}` changes rows when its parent changes: unless the change \
                 proves INSTANT at staging, apply refuses to copy this table",
                fk.name
            ));
        }
    }
}

/// A plan that several shards share, with the live tables it was made from.
struct SharedPlan {
    shards: Vec<usize>,
    live: BTreeMap<String, Table>,
    changes: Vec<Change>,
    errors: Vec<DiffError>,
}

/// Two shards share a plan only if the tables it touches are also defined identically.
fn touched_equal(
    a: &BTreeMap<String, Table>,
    b: &BTreeMap<String, Table>,
    changes: &[Change],
) -> bool {
    changes
        .iter()
        .all(|c| a.get(&c.table).map(|t| &t.create_sql) == b.get(&c.table).map(|t| &t.create_sql))
}

/// The desired tables in canonical form, and the workspace drop still running (if any).
struct Canonical {
    tables: Result<BTreeMap<String, Table>, WorkspaceError>,
    cleanup: Option<tokio::task::JoinHandle<Result<(), LiveError>>>,
}

/// Canonical forms come from the cache on the host where possible; the rest are created in a
/// workspace, read back and cached. The workspace is dropped in the background.
async fn canonical_desired(
    host: &ShardConn,
    flavor: &ServerFlavor,
    tables: &[DesiredTable],
    use_cache: bool,
) -> Canonical {
    let started = Instant::now();
    let keys: Vec<String> = tables
        .iter()
        .map(|t| workspace::cache_key(flavor, t))
        .collect();
    let mut texts: HashMap<String, String> = HashMap::new();
    if use_cache {
        match workspace::cached(host, &keys).await {
            Ok(hits) => texts = hits,
            Err(e) => {
                tracing::warn!("canonical-form cache unavailable, computing every table: {e}")
            }
        }
    }
    let misses: Vec<(&DesiredTable, &String)> = tables
        .iter()
        .zip(&keys)
        .filter(|(_, k)| !texts.contains_key(*k))
        .collect();
    let mut cleanup = None;
    if !misses.is_empty() {
        let workspace = match Workspace::create(host, flavor).await {
            Ok(w) => w,
            Err(e) => {
                return Canonical {
                    tables: Err(e.into()),
                    cleanup: None,
                }
            }
        };
        let missing: Vec<&DesiredTable> = misses.iter().map(|(t, _)| *t).collect();
        let computed = workspace.canonical_texts(&missing).await;
        cleanup = Some(tokio::spawn(workspace.drop()));
        let computed = match computed {
            Ok(computed) => computed,
            Err(e) => {
                return Canonical {
                    tables: Err(e),
                    cleanup,
                }
            }
        };
        let key_of: HashMap<&str, &String> =
            misses.iter().map(|(t, k)| (t.name.as_str(), *k)).collect();
        let fresh: Vec<(String, String)> = computed
            .into_iter()
            .filter_map(|(name, text)| key_of.get(name.as_str()).map(|k| ((*k).clone(), text)))
            .collect();
        if use_cache {
            if let Err(e) = workspace::remember(host, &fresh).await {
                tracing::warn!("cannot write the canonical-form cache: {e}");
            }
        }
        texts.extend(fresh);
    }
    debug!(
        tables = tables.len(),
        computed = misses.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "canonicalized desired tables"
    );
    let mut parsed = BTreeMap::new();
    for (table, key) in tables.iter().zip(&keys) {
        let Some(text) = texts.get(key) else { continue };
        let mut canonical = match Table::parse_canonical(text) {
            Ok(t) => t,
            Err(source) => {
                let e = LiveError::Canonical {
                    shard: host.shard.clone(),
                    source,
                };
                return Canonical {
                    tables: Err(e.into()),
                    cleanup,
                };
            }
        };
        for (column, old) in &table.renames {
            if let Some(c) = canonical.columns.iter_mut().find(|c| &c.name == column) {
                c.renamed_from = Some(old.clone());
            }
        }
        parsed.insert(table.name.clone(), canonical);
    }
    Canonical {
        tables: Ok(parsed),
        cleanup,
    }
}

async fn verify(
    host: &ShardConn,
    flavor: &ServerFlavor,
    live: &BTreeMap<String, Table>,
    desired: &BTreeMap<String, Table>,
    changes: &[Change],
) -> Result<Vec<DiffError>, LiveError> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let workspace = Workspace::create(host, flavor).await?;
    let result = workspace.verify(live, desired, changes).await;
    workspace.drop().await?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(tables: &[&str]) -> BTreeMap<String, Table> {
        tables
            .iter()
            .map(|sql| {
                let t = Table::parse_canonical(sql).unwrap_or_else(|e| panic!("{e:?}"));
                (t.name.clone(), t)
            })
            .collect()
    }

    fn alter(table: &str) -> Change {
        Change {
            table: table.into(),
            kind: ChangeKind::Alter,
            statement: format!("ALTER TABLE `{table}` ADD COLUMN `x` int(11) DEFAULT NULL"),
            destructive: false,
            reasons: Vec::new(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn tables_the_online_copy_refuses_are_flagged_in_the_plan() {
        let live = live(&[
            "CREATE TABLE `customers` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB",
            "CREATE TABLE `orders` (\n  `id` int(11) NOT NULL,\n  `c` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `c` (`c`),\n  CONSTRAINT `fk_c` FOREIGN KEY (`c`) REFERENCES `customers` (`id`)\n) ENGINE=InnoDB",
            "CREATE TABLE `notes` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB",
        ]);
        let mut changes = vec![
            alter("customers"),
            alter("orders"),
            alter("orders"),
            alter("notes"),
        ];
        online_warnings(&mut changes, &live, ForeignKeys::Refuse);
        assert!(changes[0].warnings[0].contains("foreign keys of `orders` reference this table"));
        assert!(changes[1].warnings[0].contains("`foreign_keys: carry`"));
        assert!(changes[2].warnings.is_empty() && changes[3].warnings.is_empty());

        let mut changes = vec![alter("customers"), alter("orders")];
        online_warnings(&mut changes, &live, ForeignKeys::Carry);
        assert_eq!(changes[0].warnings.len(), 1);
        assert!(changes[1].warnings.is_empty());
    }
}
