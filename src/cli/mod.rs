//! The `flowd` command line: one file per subcommand. `main` parses arguments and the
//! configuration ([`config`]), sets up logging and turns each command's outcome into an exit code
//! scripts can rely on: 0 success, 1 the command ran and found problems (e.g. invalid flows, a
//! failed run), 2 usage or input errors (a bad flag or setting among them).

pub mod config;
mod database;
mod export;
mod keys;
mod migrate;
mod run;
mod schema;
mod secrets;
pub mod serve;
mod validate;
mod workspaces;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::warn;

use crate::cli::config::{Config, ConfigArgs, LogFormat, LogSettings};
use crate::core::error::Chain;

#[derive(Debug, Parser)]
#[command(
    name = "flowd",
    version,
    about = "Self-hosted workflow automation: YAML flows in git, a persisted runner, one binary."
)]
pub struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
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
    Run(run::Args),
    /// Print the JSON Schema of the flow format (for editor completion).
    Schema(schema::Args),
    /// Apply database migrations.
    Migrate(migrate::Args),
    /// Manage API keys.
    Keys(keys::Args),
    /// Write API-managed flows as YAML files.
    Export(export::Args),
    /// Manage the encrypted secret store.
    Secrets(secrets::Args),
    /// Manage workspaces.
    Workspaces(workspaces::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        end_quietly_on_a_closed_pipe();
    }
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("flowd: {}", Chain(&e));
            return ExitCode::from(2);
        }
    };
    // Commands that report on stdout keep the engine's routine logs out of the way.
    let quiet = matches!(cli.command, Command::Run(_) | Command::Export(_));
    init_logging(&config.log, if quiet { "warn" } else { "info" });
    for warning in &config.warnings {
        warn!(setting = %warning.setting, "{}", warning.message);
    }
    match cli.command {
        Command::Validate(args) => validate::run(&args, &config),
        Command::Schema(args) => schema::run(&args),
        Command::Serve(args) => serve::run(&args, &config),
        Command::Run(args) => run::run(&args, &config),
        Command::Migrate(args) => migrate::run(&args, &config),
        Command::Keys(args) => keys::run(&args, &config),
        Command::Export(args) => export::run(&args, &config),
        Command::Secrets(args) => secrets::run(&args, &config),
        Command::Workspaces(args) => workspaces::run(&args, &config),
    }
}

/// Rust ignores SIGPIPE, so printing to a closed pipe (`flowd validate … | head -1`) fails and
/// `println!` panics. Commands that print take the default action instead and end quietly, as
/// other Unix tools do; the server keeps ignoring it (a client that hangs up is not an error).
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs one command's async work on a fresh runtime; an error is printed as
/// `flowd <command>: <error>` and exits with 1.
pub(crate) fn block_on(
    command: &str,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    block_on_with(command, async {
        match work.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flowd {command}: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs one command's async work on a fresh runtime; the work chooses its exit code.
pub(crate) fn block_on_with(
    command: &str,
    work: impl std::future::Future<Output = ExitCode>,
) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(work),
        Err(e) => {
            eprintln!("flowd {command}: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Human-readable logs by default, JSON with `FLOWD_LOG_FORMAT=json`; the filter from `RUST_LOG`
/// (`--log-filter`), else `default_level`. A filter that does not parse is reported and replaced
/// by `default_level`.
fn init_logging(log: &LogSettings, default_level: &str) {
    let given = log
        .filter
        .as_deref()
        .map(|text| tracing_subscriber::EnvFilter::try_new(text).map_err(|e| (text, e)));
    let (filter, rejected) = match given {
        Some(Ok(filter)) => (filter, None),
        Some(Err(rejected)) => (
            tracing_subscriber::EnvFilter::new(default_level),
            Some(rejected),
        ),
        None => (tracing_subscriber::EnvFilter::new(default_level), None),
    };
    // Colour codes only for a person at a terminal, never in a file or a log collector.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    if let Some((text, error)) = rejected {
        warn!(setting = "RUST_LOG", filter = text, %error, "The log filter does not parse; using {default_level}.");
    }
}
