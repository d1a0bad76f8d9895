pub mod apply;
pub mod demo;
pub mod plan;
pub mod status;

use reconciler::source::{Desired, Keyspace};

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
