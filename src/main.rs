//! `schemagate`: the command-line front of the reconciler library. Commands live in
//! `commands/`, one module each; this file only parses arguments and sets up logging.

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "schemagate",
    version,
    about = "Gated, Git-driven schema changes for sharded MySQL/MariaDB fleets"
)]
struct Cli {
    /// Log as JSON lines on stderr (for log shippers) instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    /// Log level or filter (tracing EnvFilter syntax); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print, per shard, the DDL that turns the live schema into the one in Git.
    /// Exit status: 0 nothing to do, 1 changes planned, 2 error.
    Plan(commands::plan::Args),
    /// Deploy the plan: stage every change on every shard, then seal all shards together.
    /// Exit status 0 only when the requested end state (--seal auto: sealed; manual: ready) is reached.
    Apply(commands::apply::Args),
    /// Show deployments: the readiness matrix of changes × shards, and seal timings.
    Status(commands::status::StatusArgs),
    /// Seal a staged deployment (every shard must be ready).
    Seal(commands::status::SealCmdArgs),
    /// Cancel a deployment before its seal: remove every artifact, leave the tables untouched.
    Cancel(commands::status::IdArgs),
    /// Start local sandbox shards, load the example schema and show what schemagate does.
    Demo(commands::demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level, cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Plan(args) => commands::plan::run(args).await,
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Apply(args) => commands::apply::run(args).await,
            Command::Status(args) => commands::status::status(args).await,
            Command::Seal(args) => commands::status::seal(args).await,
            Command::Cancel(args) => commands::status::cancel(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
