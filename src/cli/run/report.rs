//! What `flowd run` prints. It reads the run as `GET /api/v1/runs/{id}` shows it (so outputs,
//! requests and errors are redacted exactly as the API redacts them) and prints each step once
//! it has finished: id, kind, status, duration, its attempts (in a dry run, the full request that
//! would have gone out), its error and its output as pretty JSON. While the run waits (a delay,
//! or a retry's backoff with `--retry`) it says until when. With `--format json` nothing is
//! printed until the end, then the whole run as one JSON document.

use std::collections::HashMap;

use chrono::Utc;
use serde_json::Value;

use super::{Args, millis_between};
use crate::cli::validate::Format;
use crate::engine::test_run::Notes;
use crate::flow::model::FlowDef;

/// Step states after which a step does not change any more.
const DONE: [&str; 3] = ["succeeded", "failed", "skipped"];

pub(crate) struct Printer {
    format: Format,
    dry_run: bool,
    /// `--retry`: steps were retried as the flow says.
    retry: bool,
    notes: Notes,
    /// The channel of each notify step, to name it in a dry run.
    channels: HashMap<String, &'static str>,
    /// How many steps (in order) have been printed.
    printed: usize,
    /// The wake-up time last announced, so a wait is announced once.
    announced_wait: Option<String>,
    last: Value,
}

impl Printer {
    pub fn new(args: &Args, def: &FlowDef, notes: Notes) -> Printer {
        let channels = def
            .steps
            .iter()
            .filter_map(|s| Some((s.id.clone(), s.notify.as_ref()?.channel.as_str())))
            .collect();
        Printer {
            format: args.format,
            dry_run: args.dry_run,
            retry: args.retry,
            notes,
            channels,
            printed: 0,
            announced_wait: None,
            last: Value::Null,
        }
    }

    pub fn started(&self, flow_id: &str, run_id: &str) {
        let mode = if self.dry_run {
            " (dry run: nothing is sent)"
        } else {
            ""
        };
        let lines = std::iter::once(format!("Running flow `{flow_id}`, run {run_id}{mode}"))
            .chain(self.notes.lines.iter().map(|n| format!("note: {n}")));
        for line in lines {
            match self.format {
                Format::Text => println!("{line}"),
                Format::Json => eprintln!("{line}"),
            }
        }
    }

    /// Prints what changed since the last look.
    pub fn update(&mut self, run: &Value) {
        self.last = run.clone();
        if let Format::Json = self.format {
            return;
        }
        let steps = run["steps"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        while let Some(step) = steps.get(self.printed) {
            if !DONE.contains(&step["status"].as_str().unwrap_or_default()) {
                break;
            }
            self.print_step(step);
            self.printed += 1;
        }
        if run["status"] == "waiting"
            && let Some(step) = steps.get(self.printed)
        {
            self.announce_wait(run, step);
        }
    }

    /// Prints the run's end: its status, duration and error (text), or the whole run (JSON).
    pub fn finished(&self) {
        let run = &self.last;
        if let Format::Json = self.format {
            let mut run = run.clone();
            run["dry_run"] = Value::Bool(self.dry_run);
            match serde_json::to_string_pretty(&run) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("flowd run: {e}"),
            }
            return;
        }
        let steps = run["steps"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let not_run: Vec<&str> = steps
            .iter()
            .skip(self.printed)
            .filter_map(|s| s["id"].as_str())
            .collect();
        if !not_run.is_empty() {
            println!("not run: {}", not_run.join(", "));
        }
        let took = millis_between(&run["started_at"], &run["finished_at"])
            .map_or_else(String::new, |ms| format!(" in {ms} ms"));
        let error = run["error"]
            .as_str()
            .map_or_else(String::new, |e| format!(": {e}"));
        println!(
            "run {}: {}{took}{error}",
            text(&run["id"]),
            text(&run["status"])
        );
        if run["status"] == "failed" && !self.retry {
            println!("(flowd run makes one attempt per step; --retry retries as the flow says)");
        }
    }

    fn print_step(&self, step: &Value) {
        let (id, kind) = (text(&step["id"]), text(&step["kind"]));
        let attempts = step["attempts"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let status = text(&step["status"]);
        let mut head = format!("step {id} ({kind}): {status}");
        if status == "skipped" {
            println!("{head} (its `if` was falsy)");
            return;
        }
        if let Some(ms) = millis_between(&step["started_at"], &step["finished_at"]) {
            head.push_str(&format!(" in {ms} ms"));
        }
        if attempts.len() > 1 {
            head.push_str(&format!(", {} attempts", attempts.len()));
        }
        if let Some((_, wait)) = self.notes.skipped_delays.iter().find(|(s, _)| *s == id) {
            head.push_str(&format!(" (not waited: a served run waits {wait} here)"));
        }
        if step["output"]["dry_run"] == true {
            head.push_str(" (dry run: nothing sent)");
        }
        println!("{head}");
        for attempt in attempts {
            if self.dry_run {
                self.print_would_send(&id, &attempt["request"]);
            } else {
                // A lone attempt's error is the step's error, printed below.
                let line = attempt_line(attempt, attempts.len() > 1);
                println!("  attempt {}: {line}", text(&attempt["n"]));
            }
        }
        if let Some(error) = step["error"].as_str() {
            println!("  error: {error}");
            // The answer that failed the step: a retried status leaves no step output.
            let body = attempts.last().map(|a| &a["response"]["body"]);
            if let Some(body) = body.and_then(Value::as_str).filter(|b| !b.is_empty()) {
                println!("  response: {}", body_text(body, "  "));
            }
        }
        if !step["output"].is_null() {
            println!("  output: {}", pretty(&step["output"], "  "));
        }
    }

    /// The request a dry run rendered: HTTP (method, URL, headers, body) or a message.
    fn print_would_send(&self, step_id: &str, request: &Value) {
        if let (Some(method), Some(url)) = (request["method"].as_str(), request["url"].as_str()) {
            println!("  would send: {method} {url}");
            for header in request["headers"].as_array().into_iter().flatten() {
                println!("    {}: {}", text(&header["name"]), text(&header["value"]));
            }
            if let Some(body) = request["body"].as_str() {
                println!("    body: {}", body_text(body, "    "));
            }
            return;
        }
        let channel = self.channels.get(step_id).copied().unwrap_or("notify");
        println!("  would send ({channel}):");
        for (name, value) in request.as_object().into_iter().flatten() {
            if name != "channel" && !value.is_null() {
                println!("    {name}: {}", indent(&text(value), "    "));
            }
        }
    }

    fn announce_wait(&mut self, run: &Value, step: &Value) {
        let wake_at = text(&run["wake_at"]);
        if self.announced_wait.as_deref() == Some(wake_at.as_str()) {
            return;
        }
        let (id, kind) = (text(&step["id"]), text(&step["kind"]));
        let left = in_from_now(&run["wake_at"]);
        let line = if kind == "delay" {
            format!("step {id} (delay): waiting until {wake_at}{left}; --no-wait skips delays")
        } else {
            let failed = step["attempts"]
                .as_array()
                .and_then(|a| a.last())
                .map_or_else(String::new, |a| format!(" ({})", attempt_line(a, true)));
            format!("step {id} ({kind}): attempt failed{failed}; next attempt at {wake_at}{left}")
        };
        match self.format {
            Format::Text => println!("{line}"),
            Format::Json => eprintln!("{line}"),
        }
        self.announced_wait = Some(wake_at);
    }
}

/// One attempt on one line: what was sent and how it ended (its error only if `with_error`).
fn attempt_line(attempt: &Value, with_error: bool) -> String {
    let request = &attempt["request"];
    let sent = match (request["method"].as_str(), request["url"].as_str()) {
        (Some(method), Some(url)) => format!("{method} {url}"),
        _ => match request["to"].as_str() {
            Some(to) => format!("to {to}"),
            None => "sent".to_string(),
        },
    };
    let result = match (&attempt["response"]["status"], attempt["error"].as_str()) {
        (Value::Number(status), _) => format!("{status}"),
        (_, Some(error)) if with_error => error.to_string(),
        (_, Some(_)) => "no answer".to_string(),
        _ => "ok".to_string(),
    };
    format!("{sent} → {result} in {} ms", text(&attempt["duration_ms"]))
}

/// ` (in 42s)` for a time in the future.
fn in_from_now(time: &Value) -> String {
    let now = Value::String(crate::core::time::rfc3339(Utc::now()));
    match millis_between(&now, time) {
        // Whole seconds: `59999ms` reads worse than `1m`.
        Some(ms) if ms > 0 => {
            let secs = (ms as u64).div_ceil(1000);
            format!(" (in {})", crate::core::duration::Duration::from_secs(secs))
        }
        _ => String::new(),
    }
}

/// A string as is, anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Pretty JSON whose lines after the first are indented by `prefix`.
fn pretty(value: &Value, prefix: &str) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    indent(&text, prefix)
}

/// A body as pretty JSON when it is JSON, else as is.
fn body_text(body: &str, prefix: &str) -> String {
    serde_json::from_str::<Value>(body)
        .map_or_else(|_| indent(body, prefix), |json| pretty(&json, prefix))
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .collect::<Vec<_>>()
        .join(&format!("\n{prefix}"))
}
