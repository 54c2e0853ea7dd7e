//! `flowd migrate`: applies the database migrations and says where the schema stands. `serve`
//! does the same on start; this is for deploys that migrate in a separate step.

use std::process::ExitCode;

use crate::cli::block_on;
use crate::cli::config::Config;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Database: sqlite://PATH (created if missing) or postgres://…
    #[arg(long, env = "FLOWD_DATABASE_URL", default_value = "sqlite://flowd.db")]
    database_url: String,
}

pub fn run(args: &Args, config: &Config) -> ExitCode {
    block_on("migrate", async {
        let store = Store::connect(&args.database_url, &config.store).await?;
        let applied = store.pending_migrations().await?;
        store.migrate().await?;
        match applied.as_slice() {
            [] => println!("The {} database is up to date.", store.backend()),
            names => {
                println!(
                    "Applied {} migration(s) to the {} database:",
                    names.len(),
                    store.backend()
                );
                for name in names {
                    println!("  {name}");
                }
            }
        }
        Ok(())
    })
}
