//! `flowd workspaces create NAME | list`: workspaces (SPEC §11). `default` always exists; a
//! workspace named by a flow file is created when a server loads the flows.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::cli::block_on;
use crate::cli::config::Config;
use crate::cli::database;
use crate::core::time::rfc3339;
use crate::core::workspace::{Access, workspace_name_problem};
use crate::engine::workspaces::create_recorded;
use crate::store::Store;
use crate::store::workspaces;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: WorkspacesCommand,
    /// Database: sqlite://PATH or postgres://…; the server's database.
    #[arg(
        long,
        env = "FLOWD_DATABASE_URL",
        default_value = "sqlite://flowd.db",
        global = true
    )]
    database_url: String,
    /// Create the SQLite file when it does not exist.
    #[arg(long, global = true)]
    create: bool,
}

#[derive(Debug, clap::Subcommand)]
enum WorkspacesCommand {
    /// Create a workspace.
    Create {
        /// Lower-case letters, digits, `_` and `-`, at most 64 characters.
        name: String,
    },
    /// List workspaces: name, created.
    List,
}

pub fn run(args: &Args, config: &Config) -> ExitCode {
    block_on("workspaces", async {
        let store =
            database::open("workspaces", &args.database_url, args.create, &config.store).await?;
        let outcome = command(args, &store).await;
        store.close().await;
        outcome
    })
}

async fn command(args: &Args, store: &Store) -> anyhow::Result<()> {
    let now = Utc::now().timestamp_millis();
    match &args.command {
        WorkspacesCommand::Create { name } => {
            if let Some(problem) = workspace_name_problem(name) {
                anyhow::bail!("{problem}");
            }
            if !create_recorded(store, &Access::local(), name, now).await? {
                anyhow::bail!("a workspace `{name}` exists already");
            }
            eprintln!(
                "Created workspace `{name}`. Give it a key with `flowd keys create NAME --workspace {name} --role editor`."
            );
        }
        WorkspacesCommand::List => {
            for w in workspaces::list(store.reader(), store.backend()).await? {
                let created = DateTime::<Utc>::from_timestamp_millis(w.created_at)
                    .map(rfc3339)
                    .unwrap_or_default();
                println!("{}\tcreated {created}", w.name);
            }
        }
    }
    Ok(())
}

/// Fails with a message saying how to create it when workspace `name` does not exist.
pub async fn require(store: &Store, name: &str) -> anyhow::Result<()> {
    if workspaces::exists(store.reader(), store.backend(), name).await? {
        return Ok(());
    }
    anyhow::bail!(
        "no workspace `{name}`: create it first with `flowd workspaces create {name}` (see `flowd workspaces list`)"
    )
}
