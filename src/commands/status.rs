//! `schemagate status`, `seal` and `cancel`: a deployment, looked up on the shards themselves.

use std::process::ExitCode;

use reconciler::deploy::state::CellState;
use reconciler::deploy::{self, Fleet};
use reconciler::source;

use crate::output::{self, Format};

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The deployment id (default: the latest deployment of each keyspace).
    pub deployment: Option<String>,
    #[command(flatten)]
    pub target: super::Target,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(clap::Args)]
pub struct IdArgs {
    pub deployment: String,
    #[command(flatten)]
    pub target: super::Target,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(clap::Args)]
pub struct SealCmdArgs {
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub seal: SealArgs,
}

/// How hard the seal tries to take its locks.
#[derive(clap::Args, Clone, Copy)]
pub struct SealArgs {
    /// Time each shard may try to take its table locks in a round, in milliseconds. Locks are
    /// never queued for, and shards already locked block writes meanwhile: this bounds the
    /// write stall.
    #[arg(long, default_value_t = 100)]
    pub lock_budget_ms: u64,
    /// Lock rounds before the seal gives up (nothing is flipped; cells stay ready).
    #[arg(long, default_value_t = 10)]
    pub seal_attempts: u32,
    /// After the seal, read every index of each new table once (warms the buffer pool).
    #[arg(long)]
    pub warm_indexes: bool,
}

impl SealArgs {
    pub fn options(self) -> deploy::seal::SealOptions {
        deploy::seal::SealOptions {
            lock_budget: std::time::Duration::from_millis(self.lock_budget_ms),
            attempts: self.seal_attempts.max(1),
            warm_indexes: self.warm_indexes,
            ..Default::default()
        }
    }
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let desired = args.target.load().await?;
    let mut found = Vec::new();
    for keyspace in args.target.keyspaces(&desired)? {
        let fleet = Fleet::new(keyspace);
        let deployment = fleet.deployment(args.deployment.as_deref()).await;
        fleet.disconnect().await;
        found.extend(deployment?);
    }
    if found.is_empty() {
        if let Some(id) = &args.deployment {
            anyhow::bail!("no deployment {id} on any reachable shard");
        }
    }
    output::print_deployments(&found, args.format)?;
    Ok(ExitCode::SUCCESS)
}

/// The keyspace whose shards know deployment `id`, with its fleet.
async fn locate(desired: &source::Desired, args: &IdArgs) -> anyhow::Result<Fleet> {
    for keyspace in args.target.keyspaces(desired)? {
        let fleet = Fleet::new(keyspace);
        if fleet.deployment(Some(&args.deployment)).await?.is_some() {
            return Ok(fleet);
        }
        fleet.disconnect().await;
    }
    anyhow::bail!(
        "no deployment {} on any reachable shard of the configured keyspaces",
        args.deployment
    )
}

pub async fn seal(cmd: SealCmdArgs) -> anyhow::Result<ExitCode> {
    let args = cmd.id;
    let desired = args.target.load().await?;
    let fleet = locate(&desired, &args).await?;
    let result = deploy::seal::seal(&fleet, &args.deployment, &cmd.seal.options()).await;
    let after = fleet.deployment(Some(&args.deployment)).await;
    fleet.disconnect().await;
    result?;
    let after: Vec<_> = after?.into_iter().collect();
    output::print_deployments(&after, args.format)?;
    let sealed = after.iter().all(|d| d.state == CellState::Sealed);
    Ok(if sealed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

pub async fn cancel(args: IdArgs) -> anyhow::Result<ExitCode> {
    let desired = args.target.load().await?;
    let fleet = locate(&desired, &args).await?;
    let result = deploy::cancel(&fleet, &args.deployment).await;
    fleet.disconnect().await;
    let leftovers = result?;
    for (shard, error) in &leftovers {
        eprintln!(
            "shard {shard} still needs cleaning ({error}); run cancel again when it is reachable"
        );
    }
    if leftovers.is_empty() && args.format == Format::Text {
        println!(
            "deployment {} cancelled; every artifact removed",
            args.deployment
        );
    }
    Ok(if leftovers.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
