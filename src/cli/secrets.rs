//! `flowd secrets set NAME | list | delete NAME | rotate-master-key`: the encrypted secret store.
//! `set` reads the value from stdin when it is not a terminal, else prompts without echo; values
//! are never printed. Running servers pick changes up within a second. `--workspace W` (default
//! `default`) picks the workspace.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use crate::cli::block_on;
use crate::cli::config::Config;
use crate::cli::database;
use crate::core::time::rfc3339;
use crate::core::workspace::Access;
use crate::engine::secrets::{self, MasterKeySource, open_all, open_master_key};
use crate::secrets::cipher::MasterKey;
use crate::secrets::{MAX_VALUE_BYTES, check_name};
use crate::store::Store;
use crate::store::secrets as stored;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SecretsCommand,
    /// Database: sqlite://PATH or postgres://…; the server's database.
    #[arg(
        long,
        env = "FLOWD_DATABASE_URL",
        default_value = "sqlite://flowd.db",
        global = true
    )]
    database_url: String,
    /// Create the SQLite file when it does not exist (by default that is an error: secrets in a
    /// new file would not reach a server that uses another one).
    #[arg(long, global = true)]
    create: bool,
    /// The workspace whose secrets to set, list or delete (SPEC §11); `FLOWD_SECRET_*`
    /// variables belong to `default` only.
    #[arg(long, global = true, default_value = crate::core::workspace::DEFAULT_WORKSPACE)]
    workspace: String,
}

#[derive(Debug, clap::Subcommand)]
enum SecretsCommand {
    /// Set a secret: the value is read from stdin, or asked for without echo.
    Set { name: String },
    /// List secrets: name, source, updated, readable; never values.
    List,
    /// Delete a stored secret.
    Delete { name: String },
    /// Re-encrypt every stored secret with a new master key, all or nothing.
    RotateMasterKey,
}

pub fn run(args: &Args, config: &Config) -> ExitCode {
    block_on("secrets", async {
        let store =
            database::open("secrets", &args.database_url, args.create, &config.store).await?;
        let source = config.master_key_source(&args.database_url);
        let outcome = command(args, config, &store, &source).await;
        store.close().await;
        outcome
    })
}

async fn command(
    args: &Args,
    config: &Config,
    store: &Store,
    source: &MasterKeySource,
) -> anyhow::Result<()> {
    match &args.command {
        SecretsCommand::Set { name } => {
            check_name(name)?;
            crate::cli::workspaces::require(store, &args.workspace).await?;
            let key = open_master_key(store, source).await?;
            let value = read_value(name)?;
            let now = Utc::now().timestamp_millis();
            let local = local_in(&args.workspace);
            secrets::put(store, &local, key.as_ref(), (name, &value), now).await?;
            let pinned = args.workspace == crate::core::workspace::DEFAULT_WORKSPACE
                && config.secrets.is_set(name);
            eprintln!(
                "Stored `{name}`, encrypted. Running servers use it within a second.{}",
                if pinned {
                    " Note: FLOWD_SECRET_ of this name is set here and wins over the store where it is set."
                } else {
                    ""
                }
            );
        }
        SecretsCommand::List => {
            let key = open_master_key(store, source).await.ok().flatten();
            let rows = stored::list_in(store.reader(), &args.workspace).await?;
            let (_, unreadable) = open_all(key.as_ref(), &rows);
            // The environment's secrets belong to `default` only.
            let in_default = args.workspace == crate::core::workspace::DEFAULT_WORKSPACE;
            if rows.is_empty() && config.secrets.names().next().is_none() {
                eprintln!("No secrets. Set one with `flowd secrets set NAME`.");
            }
            for row in &rows {
                let state = if unreadable.contains(&(row.workspace.clone(), row.name.clone())) {
                    "unreadable"
                } else {
                    "ok"
                };
                let source = if in_default && config.secrets.is_set(&row.name) {
                    "environment"
                } else {
                    "store"
                };
                println!(
                    "{}\t{source}\tupdated {}\t{state}",
                    row.name,
                    time(row.updated_at)
                );
            }
            for name in config.secrets.names().filter(|_| in_default) {
                if !rows.iter().any(|r| r.name == name) {
                    println!("{name}\tenvironment\t-\tok");
                }
            }
        }
        SecretsCommand::Delete { name } => {
            let now = Utc::now().timestamp_millis();
            secrets::delete(store, &local_in(&args.workspace), name, now).await?;
            eprintln!("Deleted `{name}`. Running servers stop using it within a second.");
        }
        SecretsCommand::RotateMasterKey => rotate(store, source).await?,
    }
    Ok(())
}

/// Re-encrypts with a new key. With a key file, the new key replaces it (the old one is kept
/// beside it as `.previous` until every node runs with the new one); with FLOWD_MASTER_KEY the
/// new key is printed once, for the operator to put in every node's environment.
async fn rotate(store: &Store, source: &MasterKeySource) -> anyhow::Result<()> {
    let old = open_master_key(store, source)
        .await?
        .context("no master key is set up")?;
    let new = MasterKey::generate();
    if let MasterKeySource::File(path) = source {
        let next = path.with_extension("key.next");
        let _ = std::fs::remove_file(&next);
        new.write_new(&next)?;
        let count = secrets::rotate(store, &old, &new).await?;
        let previous = path.with_extension("key.previous");
        let _ = std::fs::remove_file(&previous);
        std::fs::rename(path, &previous).context("cannot keep the old key file")?;
        std::fs::rename(&next, path).context("cannot put the new key file in place")?;
        eprintln!(
            "Re-encrypted {count} secret(s). The new key is in {}; the old one in {} until every node has the new one (restart them with it).",
            path.display(),
            previous.display()
        );
    } else {
        let count = secrets::rotate(store, &old, &new).await?;
        println!("{}", new.encode());
        eprintln!(
            "Re-encrypted {count} secret(s). The new master key is printed above, only now: set it as FLOWD_MASTER_KEY on every node and restart them."
        );
    }
    Ok(())
}

/// The value from stdin (a pipe or a file), or typed at a prompt without echo.
/// The local administrator acting in `workspace`: the secret lands there and its audit entry
/// names it.
fn local_in(workspace: &str) -> Access {
    Access {
        workspace: workspace.to_owned(),
        ..Access::local()
    }
}

fn read_value(name: &str) -> anyhow::Result<String> {
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Value of {name} (not shown): "))?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .take(MAX_VALUE_BYTES as u64 + 2)
            .read_to_string(&mut text)
            .context("the value on stdin is not UTF-8 text")?;
        // A value piped with `echo` ends with a newline that is not part of it.
        let trimmed = text.strip_suffix('\n').unwrap_or(&text);
        trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string()
    };
    Ok(value)
}

fn time(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .map(rfc3339)
        .unwrap_or_default()
}
