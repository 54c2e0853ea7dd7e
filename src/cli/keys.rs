//! `flowd keys create NAME | list | revoke ID`: API keys, stored hashed. A new key is printed
//! once; only its prefix is shown afterwards.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::cli::block_on;
use crate::cli::config::Config;
use crate::cli::database;
use crate::core::time::rfc3339;
use crate::core::workspace::Access;
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
    },
    /// List keys: id, prefix, name, created, revoked.
    List,
    /// Revoke a key by id or prefix.
    Revoke { id: String },
}

pub fn run(args: &Args, config: &Config) -> ExitCode {
    block_on("keys", async {
        let store = database::open("keys", &args.database_url, args.create, &config.store).await?;
        let now = Utc::now().timestamp_millis();
        match &args.command {
            KeysCommand::Create { name } => {
                // MERGE: keys (W1 adds workspace and role; keep the audit entry in the txn)
                let txn = store.begin_write().await?;
                let (row, key) = api_keys::create(&txn, name, now).await?;
                let detail = serde_json::json!({"name": row.name, "prefix": row.prefix});
                record_key_change(&txn, &store, AuditAction::KeyCreated, &row.id, detail).await?;
                txn.commit().await?;
                println!("{key}");
                eprintln!(
                    "Created API key `{}` ({}). It is shown only now: store it somewhere safe. \
                     Send it as `Authorization: Bearer <key>`.",
                    row.name, row.prefix
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
                        "{}\t{}\t{}\tcreated {}\t{}",
                        k.id,
                        k.prefix,
                        k.name,
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
                record_key_change(&txn, &store, AuditAction::KeyRevoked, &key.id, detail).await?;
                txn.commit().await?;
                eprintln!("Revoked. Running servers stop accepting it within a second.");
            }
        }
        store.close().await;
        Ok(())
    })
}

/// Records a key created or revoked from the command line, in the change's transaction.
async fn record_key_change(
    txn: &impl sea_orm::ConnectionTrait,
    store: &Store,
    action: AuditAction,
    key_id: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let access = Access::local();
    let change = Change::in_workspace(&access, action, key_id, detail);
    let now = Utc::now().timestamp_millis();
    audit::record(txn, store.backend(), &access, change, now).await?;
    Ok(())
}

fn time(millis: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(millis).map(rfc3339)
}
