//! `schemagate apply`: plan, then create (or resume) the deployment and drive it to the
//! requested end state: staged and ready (`--seal manual`) or sealed (`--seal auto`).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reconciler::deploy::state::CellState;
use reconciler::deploy::{self, ApplyOptions, Event, Fleet, SealMode};
use reconciler::plan::{self, PlanOptions};
use reconciler::source;

use crate::output::{self, Format};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::Target,
    /// `auto`: seal as soon as every shard is ready; `manual`: stop when every shard is ready.
    #[arg(long, value_enum, default_value_t = Seal::Auto)]
    pub seal: Seal,
    /// Deploy destructive changes (dropped tables or columns, narrowed types).
    #[arg(long)]
    pub allow_unsafe: bool,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Shards worked on at the same time.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    #[command(flatten)]
    pub seal_args: super::status::SealArgs,
    /// Target duration of each copy chunk: application writes to rows being copied wait at most
    /// about this long.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub chunk_time: std::time::Duration,
    /// Connections copying rows of one table at once (chunks are still taken in key order;
    /// their copying overlaps). More load on the shard; worth it where it has idle cores.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub copy_threads: u16,
    /// How long the previous version of a replaced table is kept after the seal (revert window).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub keep_old: std::time::Duration,
    /// How long a dropped table's data is kept (renamed) after the seal.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub keep_dropped: std::time::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Seal {
    Auto,
    Manual,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let desired = args.target.load().await?;
    let keyspaces = args.target.keyspaces(&desired)?;
    let options = ApplyOptions {
        seal: match args.seal {
            Seal::Auto => SealMode::Auto,
            Seal::Manual => SealMode::Manual,
        },
        allow_unsafe: args.allow_unsafe,
        concurrency: args.concurrency,
        seal_options: args.seal_args.options(),
        keep_old: args.keep_old,
        copy: deploy::shadow::CopyOptions {
            target_chunk_time: args.chunk_time,
            threads: args.copy_threads.into(),
            ..Default::default()
        },
        keep_dropped: args.keep_dropped,
    };
    let mut results = Vec::new();
    for keyspace in keyspaces {
        let fleet = Fleet::new(keyspace);
        let outcome = deploy_keyspace(&fleet, &desired, &args, &options).await;
        fleet.disconnect().await;
        results.extend(outcome?);
    }
    output::print_deployments(&results, args.format)?;
    let wanted = match options.seal {
        SealMode::Auto => CellState::Sealed,
        SealMode::Manual => CellState::Ready,
    };
    let reached = results
        .iter()
        .all(|d| d.state >= wanted && d.state != CellState::Failed);
    Ok(if reached {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn deploy_keyspace(
    fleet: &Fleet,
    desired: &source::Desired,
    args: &Args,
    options: &ApplyOptions,
) -> anyhow::Result<Vec<deploy::Deployment>> {
    let name = fleet.keyspace.name.clone();
    let mut done = Vec::new();
    for table in deploy::expire_retention(fleet, options).await? {
        eprintln!("keyspace {name}: retention over, dropped {table}");
    }
    // A seal that was decided but not finished (a controller died) is finished first.
    if let Some(finished) = deploy::roll_forward(fleet, options).await? {
        eprintln!(
            "keyspace {name}: finished the interrupted seal of deployment {}",
            finished.id
        );
        done.push(finished);
    }
    let plan_options = PlanOptions {
        keyspace: Some(name.clone()),
        concurrency: args.concurrency,
        ..PlanOptions::default()
    };
    let plan = plan::plan(desired, &plan_options).await?;
    if plan.has_errors() {
        output::print_plan(&plan, Format::Text)?;
        anyhow::bail!("keyspace {name}: the plan has errors (above); nothing was deployed");
    }
    let Some(keyspace_plan) = plan.keyspaces.into_iter().next() else {
        return Ok(done);
    };
    let has_changes = keyspace_plan.shards.iter().any(|s| !s.changes.is_empty());
    if has_changes && args.format == Format::Text {
        print!(
            "{}",
            output::render_plan(&plan::Plan {
                keyspaces: vec![keyspace_plan.clone()]
            })
        );
    }
    if has_changes && !args.yes {
        confirm(&name)?;
    }
    let bars = Bars::new(args.format == Format::Text && std::io::stderr().is_terminal());
    let events = |event: Event| bars.show(event);
    if let Some(deployment) = deploy::apply(
        fleet,
        &keyspace_plan,
        desired.revision.as_deref(),
        options,
        &events,
    )
    .await?
    {
        done.push(deployment);
    } else if args.format == Format::Text {
        println!("keyspace {name}: every shard already matches the desired schema");
    }
    bars.finish();
    Ok(done)
}

fn confirm(keyspace: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("stdin is not a terminal: pass --yes to deploy keyspace {keyspace} without confirmation");
    }
    eprint!("Deploy these changes to keyspace {keyspace}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        anyhow::bail!("not confirmed; nothing was deployed");
    }
    Ok(())
}

/// Per-shard, per-table progress bars in a terminal; plain log lines otherwise.
pub struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<Vec<(String, ProgressBar)>>,
}

impl Bars {
    pub fn new(terminal: bool) -> Bars {
        Bars {
            multi: terminal.then(MultiProgress::new),
            bars: Mutex::new(Vec::new()),
        }
    }

    pub fn show(&self, event: Event) {
        let Event::Cell {
            shard,
            table,
            state,
            strategy,
            rows_copied,
            rows_estimated,
        } = event
        else {
            match &self.multi {
                Some(multi) => {
                    let _ = multi.println("gate open: every shard is ready");
                }
                None => eprintln!("gate open: every shard is ready"),
            }
            return;
        };
        let Some(multi) = &self.multi else {
            if state != CellState::Staging || rows_copied == 0 {
                eprintln!(
                    "shard {shard} table {table} ({}): {}",
                    strategy.as_str(),
                    state.as_str()
                );
            }
            return;
        };
        let key = format!("{shard}/{table}");
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let bar = match bars.iter().find(|(k, _)| *k == key) {
            Some((_, bar)) => bar.clone(),
            None => {
                let bar = multi.add(ProgressBar::new(rows_estimated.max(1)));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>24} {bar:30} {pos}/{len} rows {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_prefix(key.clone());
                bars.push((key, bar.clone()));
                bar
            }
        };
        if rows_estimated > 0 {
            bar.set_length(rows_estimated.max(rows_copied));
        }
        if rows_copied > 0 {
            bar.set_position(rows_copied);
        }
        bar.set_message(format!("{} {}", strategy.as_str(), state.as_str()));
        if state == CellState::Ready {
            bar.finish();
        }
    }

    pub fn finish(&self) {
        if let Ok(bars) = self.bars.lock() {
            for (_, bar) in bars.iter() {
                bar.finish();
            }
        }
    }
}
