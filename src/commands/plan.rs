use std::process::ExitCode;

use reconciler::plan::{self, Plan, PlanOptions};

use crate::output::{self, Format};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::Target,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Shards introspected at the same time across the fleet.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Compute every desired table's canonical form on the server instead of reusing the
    /// cache kept in `_schemagate.canonical`.
    #[arg(long)]
    pub no_cache: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let desired = args.target.load().await?;
    let options = PlanOptions {
        keyspace: args.target.keyspace,
        concurrency: args.concurrency,
        cache: !args.no_cache,
    };
    let plan = plan::plan(&desired, &options).await?;
    output::print_plan(&plan, args.format)?;
    Ok(exit_code(&plan))
}

/// `skeema diff` / `terraform plan -detailed-exitcode`: 0 in sync, 1 changes, 2 errors.
pub fn exit_code(plan: &Plan) -> ExitCode {
    if plan.has_errors() {
        ExitCode::from(2)
    } else if plan.has_changes() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
