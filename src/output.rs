//! Rendering of results for people (text) and for scripts (one JSON document on stdout).

use std::fmt::Write as _;
use std::io::Write as _;

use reconciler::deploy::state::CellState;
use reconciler::deploy::Deployment;
use reconciler::diff::Change;
use reconciler::plan::{KeyspacePlan, Plan, PlanIssue, ShardPlan};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn print_plan(plan: &Plan, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(plan)? + "\n",
        Format::Text => render_plan(plan),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// Shards with the same outcome, largest group first.
fn groups(keyspace: &KeyspacePlan) -> Vec<(Vec<&str>, &[Change], &[PlanIssue])> {
    let mut groups: Vec<(Vec<&str>, &[Change], &[PlanIssue])> = Vec::new();
    for ShardPlan {
        shard,
        changes,
        errors,
        ..
    } in &keyspace.shards
    {
        match groups
            .iter_mut()
            .find(|(_, c, e)| *c == changes.as_slice() && *e == errors.as_slice())
        {
            Some((names, ..)) => names.push(shard),
            None => groups.push((vec![shard], changes, errors)),
        }
    }
    groups.sort_by_key(|(names, ..)| std::cmp::Reverse(names.len()));
    groups
}

fn shard_list(names: &[&str]) -> String {
    const SHOWN: usize = 12;
    let noun = if names.len() == 1 { "shard" } else { "shards" };
    let mut list = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        let _ = write!(list, ", … and {} more", names.len() - SHOWN);
    }
    format!("{} {noun}: {list}", names.len())
}

pub fn render_plan(plan: &Plan) -> String {
    let mut out = String::new();
    let (mut shards, mut changed, mut destructive, mut failed) = (0, 0, 0, 0);
    for keyspace in &plan.keyspaces {
        let _ = writeln!(
            out,
            "keyspace {} (database `{}`)",
            keyspace.keyspace, keyspace.database
        );
        let groups = groups(keyspace);
        let several = groups.len() > 1;
        for (n, (names, changes, errors)) in groups.iter().enumerate() {
            shards += names.len();
            if !changes.is_empty() {
                changed += names.len();
            }
            if !errors.is_empty() {
                failed += names.len();
            }
            destructive += names.len() * changes.iter().filter(|c| c.destructive).count();
            let status = match (changes.len(), errors.len()) {
                (0, 0) => "up to date".to_string(),
                (c, 0) => format!("{c} change{}", if c == 1 { "" } else { "s" }),
                (c, e) => format!(
                    "{c} change{}, {e} error{}",
                    if c == 1 { "" } else { "s" },
                    if e == 1 { "" } else { "s" }
                ),
            };
            let differs = if several && n > 0 {
                "  ← differs from the others"
            } else {
                ""
            };
            let _ = writeln!(out, "  {} — {status}{differs}", shard_list(names));
            for change in changes.iter() {
                let mark = if change.destructive {
                    "DESTRUCTIVE "
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "    {mark}{};",
                    change.statement.replace('\n', "\n      ")
                );
                for reason in &change.reasons {
                    let _ = writeln!(out, "      ! {reason}");
                }
                for warning in &change.warnings {
                    let _ = writeln!(out, "      ~ {warning}");
                }
            }
            for error in errors.iter() {
                let table = error
                    .table
                    .as_deref()
                    .map(|t| format!("table `{t}`: "))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    error: {table}{}",
                    error.message.replace('\n', "\n      ")
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{shards} shard{} checked: {changed} with changes, {destructive} destructive statement{}, {failed} with errors.",
        if shards == 1 { "" } else { "s" },
        if destructive == 1 { "" } else { "s" }
    );
    out
}

/// Deployments as `{"deployments": [...]}` (JSON) or a readiness matrix (text).
pub fn print_deployments(deployments: &[Deployment], format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => {
            serde_json::to_string_pretty(
                &serde_json::json!({ "deployments": deployments.iter().map(deployment_json).collect::<Vec<_>>() }),
            )? + "\n"
        }
        Format::Text => deployments
            .iter()
            .map(render_deployment)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

fn deployment_json(d: &Deployment) -> serde_json::Value {
    serde_json::json!({
        "id": d.id,
        "keyspace": d.keyspace,
        "state": d.state,
        "seal_skew_ms": d.seal_skew_ms,
        "shards": d.shards.iter().map(|s| serde_json::json!({
            "shard": s.shard,
            "state": s.state(),
            "decision": s.decision,
            "sealed_at": s.sealed_at,
            "error": s.error,
            "cells": s.cells,
        })).collect::<Vec<_>>(),
        "unreachable": d.unreachable.iter().map(|(shard, error)| serde_json::json!({"shard": shard, "error": error})).collect::<Vec<_>>(),
    })
}

fn render_deployment(d: &Deployment) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "deployment {}  keyspace {}  state {}",
        d.id,
        d.keyspace,
        d.state.as_str()
    );
    let _ = writeln!(
        out,
        "  {:<10} {:<24} {:<8} {:<9} {:>21} {:>10} {:>8}  error",
        "shard", "table", "strategy", "state", "rows copied/estimated", "rows/s", "eta"
    );
    for shard in &d.shards {
        for cell in &shard.cells {
            let eta = if cell.state == CellState::Staging && cell.rows_per_sec > 0.0 {
                let left = cell.rows_estimated.saturating_sub(cell.rows_copied) as f64;
                format!("{:.0}s", left / cell.rows_per_sec)
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "  {:<10} {:<24} {:<8} {:<9} {:>21} {:>10.0} {:>8}  {}",
                shard.shard,
                cell.table,
                cell.strategy.as_str(),
                cell.state.as_str(),
                format!("{}/{}", cell.rows_copied, cell.rows_estimated),
                cell.rows_per_sec,
                eta,
                cell.error.as_deref().unwrap_or("")
            );
        }
        if let Some(at) = &shard.sealed_at {
            let _ = writeln!(out, "  {:<10} sealed at {at}", shard.shard);
        }
    }
    if let Some(skew) = d.seal_skew_ms {
        let _ = writeln!(out, "  seal skew: {skew:.3} ms (last cut-over minus first)");
    }
    for (shard, error) in &d.unreachable {
        let _ = writeln!(out, "  shard {shard} unreachable: {error}");
    }
    out
}
