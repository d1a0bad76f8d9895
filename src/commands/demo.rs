//! `schemagate demo`: the main job end to end on an embedded default. Starts local sandbox
//! shards from the installed `mariadbd`, loads last release's schema (one shard carrying a
//! hand-made hotfix), writes the example desired-state repository, plans against it, then
//! stages the change on every shard and seals them together.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use reconciler::deploy::{self, ApplyOptions, Fleet};
use reconciler::plan::{self, PlanOptions};
use reconciler::sandbox::Sandbox;
use reconciler::source;

use crate::output::{self, Format};

const SHARDS: [&str; 4] = ["-40", "40-80", "80-c0", "c0-"];
const KEYSPACE: &str = "commerce";
const SEED: &str = include_str!("../../examples/demo/seed.sql");
const DRIFT: &str = include_str!("../../examples/demo/drift.sql");
/// Rows per shard, so the shadow copy has something to do while you watch.
const CUSTOMERS: u32 = 50_000;
/// The example repository's schema files, embedded so the demo runs from any directory.
const SCHEMAS: [(&str, &str); 3] = [
    (
        "customers.sql",
        include_str!("../../examples/schemas/schemas/commerce/customers.sql"),
    ),
    (
        "orders.sql",
        include_str!("../../examples/schemas/schemas/commerce/orders.sql"),
    ),
    (
        "products.sql",
        include_str!("../../examples/schemas/schemas/commerce/products.sql"),
    ),
];

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Keep the sandbox shards running after the plan until Ctrl-C, to explore them.
    #[arg(long)]
    pub keep: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let say = |line: &str| {
        if args.format == Format::Text {
            println!("{line}");
        }
    };
    say(&format!(
        "Starting {} sandbox shards from the local mariadbd…",
        SHARDS.len()
    ));
    let sandbox = tokio::task::spawn_blocking(|| Sandbox::start(SHARDS.len()))
        .await?
        .context("starting sandbox shards (schemagate demo needs MariaDB installed: apt-get install mariadb-server)")?;
    for (name, server) in SHARDS.iter().zip(sandbox.servers()) {
        say(&format!(
            "  shard {name:<6} {} ({})",
            server.dsn(),
            server.version()
        ));
    }

    say("Loading last release's schema on every shard, and a hand-made hotfix on shard c0-…");
    for (i, server) in sandbox.servers().iter().enumerate() {
        let mut script = format!(
            "CREATE DATABASE {KEYSPACE}; USE {KEYSPACE}; {SEED}
             INSERT INTO customers (email, name, country)
             SELECT CONCAT('c', seq, '@shard{i}.example'), CONCAT('Customer ', seq), 'US' FROM seq_1_to_{CUSTOMERS};"
        );
        if i + 1 == SHARDS.len() {
            script.push_str(DRIFT);
        }
        run_script(&server.dsn(), &script).await?;
    }

    let repo = tempfile::Builder::new()
        .prefix("schemagate-demo-")
        .tempdir()?;
    write_repo(repo.path(), &sandbox)?;
    say(&format!(
        "Desired state (examples/schemas) written to {}\n\nschemagate plan --repo {}\n",
        repo.path().display(),
        repo.path().display()
    ));
    let desired = source::load(repo.path(), None).await?;
    let plan = plan::plan(&desired, &PlanOptions::default()).await?;
    output::print_plan(&plan, args.format)?;
    if plan.has_errors() {
        return Ok(ExitCode::from(2));
    }

    say("\nschemagate apply --repo … --yes --allow-unsafe   (the plan drops legacy_carts: destructive)\n");
    let Some(keyspace_plan) = plan.keyspaces.first() else {
        return Ok(ExitCode::SUCCESS);
    };
    let keyspace = desired
        .config
        .keyspace(KEYSPACE)
        .context("the demo configuration has no commerce keyspace")?;
    let fleet = Fleet::new(keyspace);
    let options = ApplyOptions {
        allow_unsafe: true,
        ..ApplyOptions::default()
    };
    let bars = super::apply::Bars::new(
        args.format == Format::Text && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let events = |event| bars.show(event);
    let applied = deploy::apply(&fleet, keyspace_plan, None, &options, &events).await;
    bars.finish();
    fleet.disconnect().await;
    let deployments: Vec<_> = applied?.into_iter().collect();
    say("");
    output::print_deployments(&deployments, args.format)?;
    say("Every shard flipped within the seal skew above; the old tables stay under _sg<id>_old_* for 30 min.");

    if args.keep {
        say(&format!(
            "\nSandbox kept running; try `schemagate plan --repo {}`. Ctrl-C stops it.",
            repo.path().display()
        ));
        tokio::signal::ctrl_c().await?;
    }
    let sealed = deployments
        .iter()
        .all(|d| d.state == reconciler::deploy::state::CellState::Sealed);
    Ok(if sealed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn write_repo(dir: &Path, sandbox: &Sandbox) -> anyhow::Result<()> {
    let mut config = format!("keyspaces:\n  {KEYSPACE}:\n    shards:\n");
    for (name, server) in SHARDS.iter().zip(sandbox.servers()) {
        config.push_str(&format!(
            "      - name: \"{name}\"\n        dsn: {}\n",
            server.dsn()
        ));
    }
    std::fs::write(dir.join(source::CONFIG_FILE), config)?;
    let schemas = dir.join(source::SCHEMAS_DIR).join(KEYSPACE);
    std::fs::create_dir_all(&schemas)?;
    for (file, text) in SCHEMAS {
        std::fs::write(schemas.join(file), text)?;
    }
    Ok(())
}

async fn run_script(dsn: &str, script: &str) -> anyhow::Result<()> {
    use reconciler::live::ShardConn;
    let dsn = source::Dsn::parse(dsn)?;
    let conn = ShardConn::new("demo", &dsn, 1);
    let result = conn.run_script(script).await;
    conn.disconnect().await;
    Ok(result?)
}
