pub mod apply;
pub mod demo;
pub mod plan;
pub mod status;

use std::path::PathBuf;

use anyhow::Context;
use reconciler::source::{self, Desired, Keyspace};

/// Where the desired state comes from, and which keyspace to work on: every command takes it.
#[derive(clap::Args)]
pub struct Target {
    /// The desired-state repository (holds schemagate.yaml and schemas/).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Read the desired state from this Git revision instead of the working tree.
    #[arg(long)]
    pub rev: Option<String>,
    /// Work on this keyspace only.
    #[arg(long)]
    pub keyspace: Option<String>,
}

impl Target {
    pub async fn load(&self) -> anyhow::Result<Desired> {
        source::load(&self.repo, self.rev.as_deref())
            .await
            .with_context(|| format!("reading the desired state from {}", self.repo.display()))
    }

    /// The keyspaces this command works on.
    pub fn keyspaces<'a>(&self, desired: &'a Desired) -> anyhow::Result<Vec<&'a Keyspace>> {
        keyspaces(desired, self.keyspace.as_deref())
    }
}

/// The keyspaces a command works on: one by name, or all of them.
pub fn keyspaces<'a>(
    desired: &'a Desired,
    only: Option<&str>,
) -> anyhow::Result<Vec<&'a Keyspace>> {
    match only {
        Some(name) => match desired.config.keyspace(name) {
            Some(keyspace) => Ok(vec![keyspace]),
            None => anyhow::bail!(
                "unknown keyspace `{name}`; schemagate.yaml defines: {}",
                desired
                    .config
                    .keyspaces
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        None => Ok(desired.config.keyspaces.iter().collect()),
    }
}
