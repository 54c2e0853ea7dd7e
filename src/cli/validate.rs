//! `flowd validate [PATH...]`: validates flow files and folders (default `./flows`), printing
//! each problem as `path:line:column: message`. Exit 0 when every flow is valid (warnings
//! allowed), 1 when any has an error, 2 when a path cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::cli::config::Config;
use crate::core::diagnostic::Diagnostic;
use crate::flow::load::{FileReport, find_flow_files, load_files};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Flow files or folders to validate.
    #[arg(default_value = "flows")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
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
    let reports = load_files(&files, &config.validation);
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
