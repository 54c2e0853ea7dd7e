//! `flowd validate [PATH...]`: validates flow files and folders (default `./flows`), printing
//! each problem as `path:line:column: message`. Exit 0 when every flow is valid (warnings
//! allowed), 1 when any has an error, 2 when a path cannot be read.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;

use crate::cli::config::Config;
use crate::core::diagnostic::Diagnostic;
use crate::flow::load::{FileReport, find_flow_files, load_files_under};
use crate::flow::validate::Options;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Flow files or folders to validate.
    #[arg(default_value = "flows")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// With a database, secrets the flows read that are set neither there nor in the
    /// environment (`FLOWD_SECRET_*`) are warned about.
    #[arg(long, env = "FLOWD_DATABASE_URL")]
    database_url: Option<String>,
}

/// Output format of commands that print for people or for scripts.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

pub fn run(args: &Args, config: &Config) -> ExitCode {
    let files = match find_flow_files(&args.paths) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("flowd validate: {e}");
            return ExitCode::from(2);
        }
    };
    let options = match known_secrets(args, config) {
        Ok(known) => Options {
            known_secrets: known.map(Arc::new),
            ..config.validation.clone()
        },
        Err(e) => {
            eprintln!("flowd validate: cannot read the secret names from the database: {e:#}");
            return ExitCode::from(2);
        }
    };
    // A folder given is a flows folder: its first-level folders name workspaces, as in serve.
    let roots: Vec<std::path::PathBuf> =
        args.paths.iter().filter(|p| p.is_dir()).cloned().collect();
    let reports = load_files_under(&roots, &files, &options);
    match args.format {
        Format::Text => print_text(&reports),
        Format::Json => print_json(&reports),
    }
    if reports.iter().any(|r| r.report.has_errors()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The names of the secrets set in the environment and, with a database, in its store; `None`
/// (no check) without a database, where the store's secrets are unknown.
fn known_secrets(args: &Args, config: &Config) -> anyhow::Result<Option<BTreeSet<String>>> {
    let Some(url) = &args.database_url else {
        return Ok(None);
    };
    let mut known: BTreeSet<String> = config.secrets.names().map(str::to_string).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stored = runtime.block_on(async {
        let store = Store::connect(url, &config.store).await?;
        store.migrate().await?;
        let rows = crate::store::secrets::list(store.reader()).await?;
        store.close().await;
        anyhow::Ok(rows)
    })?;
    known.extend(stored.into_iter().map(|r| r.name));
    Ok(Some(known))
}

fn print_text(reports: &[FileReport]) {
    for report in reports {
        for d in &report.report.diagnostics {
            println!("{}:{}:{}: {d}", report.path.display(), d.line, d.column);
        }
    }
    let invalid = reports.iter().filter(|r| r.report.has_errors()).count();
    let count = |f: fn(&Diagnostic) -> bool| {
        reports
            .iter()
            .flat_map(|r| &r.report.diagnostics)
            .filter(|d| f(d))
            .count()
    };
    let (errors, warnings) = (count(Diagnostic::is_error), count(|d| !d.is_error()));
    let files = plural(reports.len(), "flow file");
    if invalid == 0 {
        eprintln!("{files} valid ({})", plural(warnings, "warning"));
    } else {
        eprintln!(
            "{files} checked: {invalid} invalid ({}, {})",
            plural(errors, "error"),
            plural(warnings, "warning")
        );
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    file: String,
    flow: Option<&'a str>,
    valid: bool,
    diagnostics: &'a [Diagnostic],
}

fn print_json(reports: &[FileReport]) {
    let items: Vec<JsonReport<'_>> = reports
        .iter()
        .map(|r| JsonReport {
            file: r.path.display().to_string(),
            flow: r.report.flow.as_ref().map(|f| f.id.as_str()),
            valid: !r.report.has_errors(),
            diagnostics: &r.report.diagnostics,
        })
        .collect();
    match serde_json::to_string_pretty(&items) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("flowd validate: {e}"),
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
