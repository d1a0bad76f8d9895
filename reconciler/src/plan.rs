//! The plan: for every shard of every keyspace, the verified DDL that turns its live schema
//! into the desired one.
//!
//! Desired files are parsed before any server is contacted, so bad input touches nothing.
//! Shards are introspected concurrently (bounded); shards that run the same server version
//! with the same database defaults share one workspace for canonical forms; shards whose
//! plans are identical (the common case) are verified once.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use tracing::{debug, info};

use crate::diff::{diff_schemas, Change, DiffError};
use crate::live::{LiveError, LiveSchema, ServerFlavor, ShardConn};
use crate::schema::{self, DesiredTable, SchemaError, Table};
use crate::source::{Desired, Keyspace};
use crate::workspace::{Workspace, WorkspaceError};

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
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            keyspace: None,
            concurrency: 16,
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
    let database = keyspace.database.as_str();
    let mut lives: Vec<(usize, Result<LiveSchema, LiveError>)> =
        futures::stream::iter(conns.iter().enumerate())
            .map(|(i, conn)| async move { (i, conn.introspect(database).await) })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
    lives.sort_by_key(|(i, _)| *i);
    info!(keyspace = %keyspace.name, shards = conns.len(), elapsed_ms = started.elapsed().as_millis() as u64, "introspected");

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
    let mut groups: BTreeMap<ServerFlavor, Vec<(usize, LiveSchema)>> = BTreeMap::new();
    for (i, live) in lives {
        match live {
            Ok(live) => {
                shards[i].server_version = Some(live.flavor.version.clone());
                groups
                    .entry(live.flavor.clone())
                    .or_default()
                    .push((i, live));
            }
            Err(e) => shards[i].errors.push(PlanIssue {
                table: None,
                message: e.to_string(),
            }),
        }
    }

    let result = plan_groups(&conns, groups, tables, &mut shards).await;
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

async fn plan_groups(
    conns: &[ShardConn],
    groups: BTreeMap<ServerFlavor, Vec<(usize, LiveSchema)>>,
    tables: &[DesiredTable],
    shards: &mut [ShardPlan],
) -> Result<(), PlanError> {
    for (flavor, members) in groups {
        let host = &conns[members[0].0];
        let desired = match canonical_desired(host, &flavor, tables).await {
            Ok(desired) => desired,
            Err(WorkspaceError::Rejected(errors)) => return Err(PlanError::Schema(errors)),
            Err(WorkspaceError::Live(e)) => {
                for (i, _) in &members {
                    shards[*i].errors.push(PlanIssue {
                        table: None,
                        message: format!("cannot compute the desired canonical form: {e}"),
                    });
                }
                continue;
            }
        };

        // Shards with the same live definitions get the same plan: diff and verify it once.
        let mut unique: Vec<SharedPlan> = Vec::new();
        for (i, live) in members {
            let diff = diff_schemas(&live.tables, &desired);
            let found = unique.iter_mut().find(|p| {
                p.changes == diff.changes
                    && p.errors == diff.errors
                    && touched_equal(&p.live, &live.tables, &p.changes)
            });
            match found {
                Some(plan) => plan.shards.push(i),
                None => unique.push(SharedPlan {
                    shards: vec![i],
                    live: live.tables,
                    changes: diff.changes,
                    errors: diff.errors,
                }),
            }
        }
        debug!(version = %flavor.version, distinct_plans = unique.len(), "diffed");
        let verified: Vec<Result<Vec<DiffError>, LiveError>> = futures::stream::iter(unique.iter())
            .map(|p| verify(host, &flavor, &p.live, &desired, &p.changes))
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
    Ok(())
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

async fn canonical_desired(
    host: &ShardConn,
    flavor: &ServerFlavor,
    tables: &[DesiredTable],
) -> Result<BTreeMap<String, Table>, WorkspaceError> {
    let started = Instant::now();
    let workspace = Workspace::create(host, flavor).await?;
    let result = workspace.canonicalize(tables).await;
    workspace.drop().await?;
    debug!(
        tables = tables.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "canonicalized desired tables"
    );
    result
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
