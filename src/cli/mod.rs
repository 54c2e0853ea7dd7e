//! The `flowd` command line: one file per subcommand. `main` parses arguments, sets up logging
//! and turns each command's outcome into an exit code scripts can rely on: 0 success, 1 the
//! command ran and found problems (e.g. invalid flows), 2 usage errors or unavailable commands.

mod keys;
mod migrate;
mod schema;
mod serve;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "flowd",
    version,
    about = "Self-hosted workflow automation: YAML flows in git, a persisted runner, one binary."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server, runner and scheduler in one process.
    Serve(serve::Args),
    /// Validate flow files or folders (default ./flows).
    Validate(validate::Args),
    /// Run one flow once in-process against a temporary store.
    Run(NotYet),
    /// Print the JSON Schema of the flow format (for editor completion).
    Schema(schema::Args),
    /// Apply database migrations.
    Migrate(migrate::Args),
    /// Manage API keys.
    Keys(keys::Args),
    /// Write API-managed flows as YAML files.
    Export(NotYet),
}

/// Arguments of commands that are not built yet: accepted so `--help` lists the command.
#[derive(Debug, clap::Args)]
struct NotYet {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schema(args) => schema::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Run(_) => not_yet("run"),
        Command::Migrate(args) => migrate::run(&args),
        Command::Keys(args) => keys::run(&args),
        Command::Export(_) => not_yet("export"),
    }
}

fn not_yet(command: &str) -> ExitCode {
    eprintln!("flowd {command}: not available yet in this version");
    ExitCode::from(2)
}

/// Runs one command's async work on a fresh runtime; an error is printed as
/// `flowd <command>: <error>` and exits with 1.
pub(crate) fn block_on(
    command: &str,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flowd {command}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowd {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Human-readable logs by default, JSON with `FLOWD_LOG_FORMAT=json`; level from `RUST_LOG`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("FLOWD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}
