//! `flowd workspaces create NAME | list | quota NAME`: workspaces (SPEC §11) and their quotas.
//! `default` always exists; a workspace named by a flow file is created when a server loads the
//! flows.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::cli::block_on;
use crate::cli::config::Config;
use crate::cli::database;
use crate::core::time::rfc3339;
use crate::core::workspace::{Access, workspace_name_problem};
use crate::engine::quotas::{parse_quotas, store_quotas};
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
    /// Set a workspace's quotas, replacing both: one left out means no limit. Runs over a quota
    /// are held, never dropped (docs/quotas.md).
    Quota {
        name: String,
        /// Runs that may start per UTC day (1 to 1,000,000,000).
        #[arg(long)]
        runs_per_day: Option<i64>,
        /// HTTP attempts per minute (1 to 1,000,000,000).
        #[arg(long)]
        http_per_minute: Option<i64>,
    },
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
        WorkspacesCommand::Quota {
            name,
            runs_per_day,
            http_per_minute,
        } => set_quota(store, name, *runs_per_day, *http_per_minute, now).await?,
    }
    Ok(())
}

/// `flowd workspaces quota`: checked as `PUT /api/v1/workspaces/{ws}/quotas` checks its body;
/// running servers pick the new quotas up within a second.
async fn set_quota(
    store: &Store,
    name: &str,
    runs_per_day: Option<i64>,
    http_per_minute: Option<i64>,
    now: i64,
) -> anyhow::Result<()> {
    require(store, name).await?;
    let body = json!({"runs_per_day": runs_per_day, "http_attempts_per_minute": http_per_minute});
    let quotas = parse_quotas(&body).map_err(|e| anyhow::anyhow!("{e}"))?;
    let set = store_quotas(store, &Access::local(), name, quotas, now).await?;
    let shown = |limit: Option<i64>| limit.map_or("no limit".to_owned(), |n| n.to_string());
    eprintln!(
        "Quotas of `{name}`: runs per day {}, HTTP attempts per minute {}.",
        shown(set.quotas.runs_per_day),
        shown(set.quotas.http_attempts_per_minute)
    );
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
