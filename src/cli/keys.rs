//! `flowd keys create NAME [--workspace W] [--role R] | list | revoke ID`: API keys, stored
//! hashed, each acting in one workspace with one role (SPEC §11). A new key is printed once; only
//! its prefix is shown afterwards.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::cli::block_on;
use crate::cli::config::Config;
use crate::cli::database;
use crate::core::time::rfc3339;
use crate::core::workspace::{Access, Role};
use crate::engine::audit::{self, Change};
use crate::store::Store;
use crate::store::api_keys;
use crate::store::audit::AuditAction;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: KeysCommand,
    /// Database: sqlite://PATH or postgres://…; the server's database.
    #[arg(
        long,
        env = "FLOWD_DATABASE_URL",
        default_value = "sqlite://flowd.db",
        global = true
    )]
    database_url: String,
    /// Create the SQLite file when it does not exist (by default that is an error: keys in a
    /// new file would not reach a server that uses another one).
    #[arg(long, global = true)]
    create: bool,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Create a key and print it (once).
    Create {
        /// A name to tell the key apart, e.g. the program that uses it.
        name: String,
        /// The workspace the key acts in; it must exist (`flowd workspaces create`).
        #[arg(long, default_value = crate::core::workspace::DEFAULT_WORKSPACE)]
        workspace: String,
        /// What the key may do: admin, editor, operator, viewer or trigger (SPEC §11).
        #[arg(long, default_value = "admin", value_parser = parse_role)]
        role: Role,
    },
    /// List keys: id, prefix, name, workspace, role, created, revoked.
    List,
    /// Revoke a key by id or prefix.
    Revoke { id: String },
}

pub fn run(args: &Args, config: &Config) -> ExitCode {
    block_on("keys", async {
        let store = database::open("keys", &args.database_url, args.create, &config.store).await?;
        let now = Utc::now().timestamp_millis();
        match &args.command {
            KeysCommand::Create {
                name,
                workspace,
                role,
            } => {
                crate::cli::workspaces::require(&store, workspace).await?;
                let txn = store.begin_write().await?;
                let (row, key) = api_keys::create(&txn, name, workspace, *role, now).await?;
                let detail = serde_json::json!({
                    "name": row.name, "prefix": row.prefix, "role": row.role
                });
                let created = (AuditAction::KeyCreated, &row);
                record_key_change(&txn, &store, created, detail).await?;
                txn.commit().await?;
                println!("{key}");
                eprintln!(
                    "Created API key `{}` ({}), `{}` of workspace `{}`. It is shown only now: \
                     store it somewhere safe. Send it as `Authorization: Bearer <key>`.",
                    row.name, row.prefix, row.role, row.workspace
                );
            }
            KeysCommand::List => {
                let keys = api_keys::list(store.reader()).await?;
                if keys.is_empty() {
                    eprintln!("No API keys. Create one with `flowd keys create <name>`.");
                }
                for k in keys {
                    let revoked = k.revoked_at.and_then(time).map(|t| format!("revoked {t}"));
                    println!(
                        "{}\t{}\t{}\t{}\t{}\tcreated {}\t{}",
                        k.id,
                        k.prefix,
                        k.name,
                        k.workspace,
                        k.role,
                        time(k.created_at).unwrap_or_default(),
                        revoked.as_deref().unwrap_or("active")
                    );
                }
            }
            KeysCommand::Revoke { id } => {
                let txn = store.begin_write().await?;
                let Some(key) = api_keys::list(&txn)
                    .await?
                    .into_iter()
                    .find(|k| k.revoked_at.is_none() && (k.id == *id || k.prefix == *id))
                else {
                    anyhow::bail!("no active key with id or prefix `{id}`");
                };
                api_keys::revoke(&txn, &key.id, now).await?;
                let detail = serde_json::json!({"name": key.name, "prefix": key.prefix});
                record_key_change(&txn, &store, (AuditAction::KeyRevoked, &key), detail).await?;
                txn.commit().await?;
                eprintln!("Revoked. Running servers stop accepting it within a second.");
            }
        }
        store.close().await;
        Ok(())
    })
}

/// Records a key created or revoked from the command line, in the change's transaction: in the
/// key's own workspace.
async fn record_key_change(
    txn: &impl sea_orm::ConnectionTrait,
    store: &Store,
    (action, key): (AuditAction, &api_keys::ApiKey),
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let access = Access {
        workspace: key.workspace.clone(),
        ..Access::local()
    };
    let change = Change::in_workspace(&access, action, &key.id, detail);
    let now = Utc::now().timestamp_millis();
    audit::record(txn, store.backend(), &access, change, now).await?;
    Ok(())
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        format!("`{text}` is not a role: admin, editor, operator, viewer or trigger")
    })
}

fn time(millis: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(millis).map(rfc3339)
}
