//! `flowd run FLOW --event JSON | --input JSON [--dry-run]`: runs one flow once, in-process,
//! against a temporary SQLite store, and prints each step as it finishes. It is the real engine
//! and runner (the same trigger matching, templates, HTTP client, redaction and state machine
//! as `flowd serve`), pointed at a throw-away database, so what it shows is what a served run
//! would do.
//!
//! Choices made for a run started by hand (docs/cli.md): a step gets one attempt unless
//! `--retry` asks for the flow's retry policy, since a person at a terminal wants the error now,
//! not in five hours; delay steps wait for real unless `--no-wait`; `--dry-run` sends nothing
//! (it renders every request and message instead, see [`Delivery::DryRun`]) and implies
//! `--no-wait`. A disabled flow runs anyway, with a note. Exit codes: 0 the run succeeded, 1 it
//! failed or was cancelled, 2 the flow or the input is wrong.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cli::config::Config;
use crate::cli::validate::Format;
use crate::core::status::RunStatus;
use crate::core::trigger_data::ManualEntity;
use crate::core::workspace::Access;
use crate::engine::EventIn;
use crate::engine::test_run::{
    CLI_SPELLING, Sandbox, TestError, TestOptions, TestTrigger, one_shot,
};
use crate::flow::load::{FileReport, find_flow_files, is_flow_file, load_file, load_files};
use crate::flow::validate::{Options, ValidFlow};
use crate::step::Delivery;
use crate::trigger::entity::check_event;
use crate::trigger::manual::ManualRequest;

mod report;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("trigger").required(true).multiple(true).args(["event", "input", "entity"])))]
pub struct Args {
    /// A flow id from the flows folder, or the path of a flow file.
    flow: String,
    /// An entity event, as `POST /api/v1/events` takes it: JSON text, `@file.json`, or `-` for
    /// standard input. It must match one of the flow's entity triggers.
    #[arg(long, conflicts_with_all = ["input", "entity"])]
    event: Option<String>,
    /// Input of the flow's manual trigger (or of its webhook trigger when it has no manual
    /// one): a JSON object, `@file.json`, or `-`.
    #[arg(long)]
    input: Option<String>,
    /// The entity a manual action runs on, `{"type", "id", "data"}`: JSON, `@file.json`, or `-`.
    #[arg(long)]
    entity: Option<String>,
    /// Send nothing: print every request and message as it would be sent. Implies --no-wait.
    #[arg(long)]
    dry_run: bool,
    /// Finish delay steps at once instead of waiting for them.
    #[arg(long)]
    no_wait: bool,
    /// Retry failing steps as the flow's retry policy says (default: one attempt per step).
    #[arg(long)]
    retry: bool,
    /// Folder of flow files, where FLOW is looked up when it is an id.
    #[arg(long, env = "FLOWD_FLOWS_DIR", default_value = "flows")]
    flows: PathBuf,
    /// Output: text as steps finish, or the finished run as JSON (as `GET /api/v1/runs/{id}`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Why `flowd run` stopped before a run ended.
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// The flow or the input is wrong: exit 2.
    #[error("{0}")]
    Input(String),
    /// Ctrl-C twice: stop at once.
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn input(message: impl Into<String>) -> RunError {
    RunError::Input(message.into())
}

pub fn run(args: &Args, config: &Config) -> ExitCode {
    crate::cli::block_on_with("run", async {
        match run_flow(args, config).await {
            Ok(RunStatus::Succeeded) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(RunError::Input(message)) => {
                eprintln!("flowd run: {message}");
                ExitCode::from(2)
            }
            Err(RunError::Interrupted) => {
                eprintln!("flowd run: interrupted");
                ExitCode::from(130)
            }
            Err(RunError::Internal(e)) => {
                eprintln!("flowd run: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run_flow(args: &Args, config: &Config) -> Result<RunStatus, RunError> {
    let (path, flow) = find_flow(args, &config.validation)?;
    let trigger = read_trigger(args)?;
    let options = TestOptions {
        dry_run: args.dry_run,
        retry: args.retry,
        no_wait: args.no_wait,
    };
    let (def, notes) = one_shot(flow.def.clone(), options);
    let delivery = if args.dry_run {
        Delivery::DryRun
    } else {
        Delivery::Send
    };
    // The database URL is the sandbox's own; secrets come from the environment here.
    let base = config.engine(String::new(), "flowd-run");
    let sandbox = Sandbox::open(base, delivery)
        .await
        .map_err(anyhow::Error::from)?;
    let outcome = async {
        let yaml = std::fs::read_to_string(&path).unwrap_or_default();
        sandbox
            .add_flow(&flow.id, &flow.name, &def, &yaml, Some(&path))
            .await
            .map_err(anyhow::Error::from)?;
        let run_id = sandbox
            .engine()
            .start_test(&flow.id, trigger, &CLI_SPELLING)
            .await
            .map_err(refused)?;
        let mut printer = report::Printer::new(args, &def, notes);
        printer.started(&flow.id, &run_id);
        watch_run(&sandbox, &run_id, &mut printer).await
    }
    .await;
    sandbox.close().await;
    outcome
}

/// A refused test is the input's fault (exit 2); anything else is not.
fn refused(e: TestError) -> RunError {
    match e {
        TestError::Engine(e) => RunError::Internal(e.into()),
        other => input(other.to_string()),
    }
}

/// The flow named by FLOW: a file, or the flow with that id in the flows folder. Problems in
/// the flow are printed as `path:line:column: message`.
fn find_flow(args: &Args, options: &Options) -> Result<(PathBuf, ValidFlow), RunError> {
    let given = Path::new(&args.flow);
    let is_path = is_flow_file(given) || args.flow.contains(std::path::MAIN_SEPARATOR);
    let report = if is_path || given.is_file() {
        if !given.is_file() {
            return Err(input(format!("no flow file `{}`", given.display())));
        }
        load_file(given, options)
    } else {
        flow_in_folder(&args.flows, &args.flow, options)?
    };
    print_diagnostics(&report);
    match report.report.flow {
        Some(flow) => Ok((report.path, flow)),
        None => Err(input(format!(
            "{} is not a valid flow; fix the problems above (`flowd validate` checks files)",
            report.path.display()
        ))),
    }
}

fn flow_in_folder(dir: &Path, id: &str, options: &Options) -> Result<FileReport, RunError> {
    if !dir.is_dir() {
        return Err(input(format!(
            "no flows folder `{}`: pass --flows DIR, or the path of a flow file",
            dir.display()
        )));
    }
    let files = find_flow_files(&[dir.to_path_buf()]).map_err(|e| input(e.to_string()))?;
    let reports = load_files(&files, options);
    let stem = |r: &FileReport| r.path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let found = reports
        .iter()
        .position(|r| r.report.flow.as_ref().is_some_and(|f| f.id == id))
        .or_else(|| reports.iter().position(|r| stem(r).as_deref() == Some(id)));
    match found {
        Some(i) => Ok(reports.into_iter().nth(i).expect("index from position")),
        None => {
            let ids: Vec<&str> = reports
                .iter()
                .filter_map(|r| r.report.flow.as_ref().map(|f| f.id.as_str()))
                .collect();
            Err(input(format!(
                "no flow `{id}` in {} (flows there: {})",
                dir.display(),
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            )))
        }
    }
}

/// Problems as `path:line:column: message`, like `flowd validate` (warnings say so).
fn print_diagnostics(report: &FileReport) {
    for d in &report.report.diagnostics {
        eprintln!("{}:{}:{}: {d}", report.path.display(), d.line, d.column);
    }
}

fn read_trigger(args: &Args) -> Result<TestTrigger, RunError> {
    let stdin_uses = [&args.event, &args.input, &args.entity]
        .iter()
        .filter(|a| a.as_deref() == Some("-"))
        .count();
    if stdin_uses > 1 {
        return Err(input(
            "only one of --event, --input and --entity can read `-` (stdin)",
        ));
    }
    if let Some(event) = &args.event {
        let text = read_source("--event", event)?;
        if text.trim_start().starts_with('[') {
            return Err(input(
                "--event takes one event (an object), not an array: flowd run runs one flow once",
            ));
        }
        let event: EventIn = parse("--event", "an event", &text)?;
        let problems: Vec<String> = check_event(0, &event)
            .iter()
            .map(|p| format!("`{}` {}", p.field, p.message))
            .collect();
        if !problems.is_empty() {
            return Err(input(format!("--event: {}", problems.join("; "))));
        }
        return Ok(TestTrigger::Event(event));
    }
    let input_value = match &args.input {
        Some(text) => parse::<Value>("--input", "JSON", &read_source("--input", text)?)?,
        None => Value::Null,
    };
    if !(input_value.is_object() || input_value.is_null()) {
        return Err(input("--input must be a JSON object"));
    }
    let entity = match &args.entity {
        Some(text) => Some(parse::<ManualEntity>(
            "--entity",
            "an entity {\"type\", \"id\", \"data\"}",
            &read_source("--entity", text)?,
        )?),
        None => None,
    };
    Ok(TestTrigger::Manual(ManualRequest {
        input: input_value,
        entity,
    }))
}

/// The text of a JSON argument: as given, from `@file`, or from standard input for `-`.
fn read_source(flag: &str, value: &str) -> Result<String, RunError> {
    if value == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| input(format!("{flag}: cannot read standard input: {e}")))?;
        return Ok(text);
    }
    match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| input(format!("{flag}: cannot read `{path}`: {e}"))),
        None => Ok(value.to_string()),
    }
}

/// Parses JSON, naming the flag and the position of a problem.
fn parse<T: serde::de::DeserializeOwned>(
    flag: &str,
    what: &str,
    text: &str,
) -> Result<T, RunError> {
    serde_json::from_str(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            input(format!("{flag} is not valid JSON: {e}"))
        } else {
            input(format!("{flag} is not {what}: {e}"))
        }
    })
}

/// How often the run is looked at while it executes: steps are printed at most this late.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Executes the run on the real runner and reports it until it ends. The first Ctrl-C cancels
/// the run (it stops after the step in flight), a second one quits at once.
async fn watch_run(
    sandbox: &Sandbox,
    run_id: &str,
    printer: &mut report::Printer,
) -> Result<RunStatus, RunError> {
    let engine = sandbox.engine();
    let runner = sandbox.start_runner();
    let mut cancelled = false;
    // One listener across the loop: a Ctrl-C while the run is being read is not lost.
    let mut interrupt = Box::pin(tokio::signal::ctrl_c());
    let ended = loop {
        let ended = tokio::select! {
            ended = engine.wait_for_run_end(run_id, LOOK_EVERY) => ended.map_err(anyhow::Error::from)?,
            _ = &mut interrupt => {
                if cancelled {
                    break Err(RunError::Interrupted);
                }
                cancelled = true;
                interrupt = Box::pin(tokio::signal::ctrl_c());
                eprintln!("Cancelling the run after the step in flight (Ctrl-C again to quit at once).");
                if let Err(e) = engine.cancel_run(&Access::local(), run_id).await {
                    eprintln!("flowd run: cannot cancel: {e}");
                }
                false
            }
        };
        let detail =
            crate::api::runs::run_detail(engine, &crate::core::workspace::Access::local(), run_id)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read the run: {e}"))?
                .ok_or_else(|| anyhow::anyhow!("run `{run_id}` disappeared"))?;
        printer.update(&detail);
        if ended {
            break Ok(status_of(&detail));
        }
    };
    runner.stop().await;
    let status = ended?;
    printer.finished();
    Ok(status)
}

fn status_of(detail: &Value) -> RunStatus {
    detail["status"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(RunStatus::Failed)
}

/// Milliseconds between two RFC 3339 times of a run or step, when both are set.
pub(crate) fn millis_between(from: &Value, to: &Value) -> Option<i64> {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    Some((parse(to)? - parse(from)?).num_milliseconds())
}
