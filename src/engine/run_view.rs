//! The run log as the API and the console show it: runs filtered and paged, and one run with
//! every step of its flow revision and every attempt (request, response, copy-as-curl). Secrets
//! are shown as `***` in everything returned here: outputs and trigger data may hold a secret a
//! step copied (SPEC §2).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::core::status::{RunStatus, StepStatus, WaitingReason};
use crate::core::time::rfc3339;
use crate::core::workspace::{Access, split_flow_key};
use crate::engine::flows::key_of;
use crate::engine::{Engine, EngineError};
use crate::outbound::record::{RecordedRequest, curl_command};
use crate::store::limits;
use crate::store::run_log::{self, AttemptDetail, RunFilter, RunRow, StepDetail};

/// A run as lists show it. Times are RFC 3339 UTC.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunOut {
    /// UUIDv7: ids sort by creation time.
    pub id: String,
    /// The flow's id within its workspace.
    pub flow: String,
    /// The workspace of its flow.
    pub workspace: String,
    /// The flow revision the run executes.
    pub revision: i64,
    pub status: RunStatus,
    /// Why a run that is not finished waits: `held` (its flow is paused), `rate_limited`,
    /// `concurrency` (its flow executes as many runs as it may), `order` (an earlier run with
    /// the same order key goes first), `backoff` (a retry), `delay`; null when it executes or
    /// is about to.
    pub waiting_reason: Option<WaitingReason>,
    /// What started the run (`kind`: `entity`, `manual`, `schedule` or `webhook`, and its data).
    pub trigger: Value,
    /// How many times the run was started (retries count).
    pub attempt: i64,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// When a waiting run wakes up (a delay, a retry backoff, the end of a rate-limit wait);
    /// null when unknown (a held run waits for the resume).
    #[schema(format = DateTime)]
    pub wake_at: Option<String>,
    /// The node that holds, or last held, the run.
    pub node: Option<String>,
    pub error: Option<String>,
}

/// A run with every step of its flow revision, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunOut,
    pub steps: Vec<StepOut>,
}

/// One step of a run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepOut {
    pub id: String,
    /// The step kind: `map`, `http`, `notify` or `delay`.
    pub kind: String,
    pub status: StepStatus,
    /// What the step produced (secrets shown as `***`).
    pub output: Option<Value>,
    pub error: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub attempts: Vec<AttemptOut>,
}

/// One attempt of a step: what was sent and received.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptOut {
    /// 1 for the first attempt.
    pub n: i64,
    pub node: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub duration_ms: i64,
    /// The request as sent: `{method, url, headers: [{name, value}], body}`.
    pub request: Option<Value>,
    /// The response as received: `{status, headers, body}`.
    pub response: Option<Value>,
    pub error: Option<String>,
    /// The request as a copy-and-paste command line, secrets redacted.
    pub curl: Option<String>,
}

impl Engine {
    /// Runs `access` sees matching `filter`, newest first, at most `limit`. `filter.flow` is a
    /// flow id of the access's workspace.
    pub async fn list_runs(
        &self,
        access: &Access,
        filter: &RunFilter,
        limit: u64,
    ) -> Result<Vec<RunOut>, EngineError> {
        let store = self.store();
        let filter = RunFilter {
            flow: filter.flow.as_deref().map(|id| key_of(access, id)),
            workspace: (!access.all_workspaces).then(|| access.workspace.clone()),
            ..filter.clone()
        };
        let rows = run_log::list(store.reader(), store.backend(), &filter, limit).await?;
        let full = self.full_flows(&rows).await?;
        self.redacted(
            rows.iter()
                .map(|r| run_out(r, full.contains(&r.flow_id)))
                .collect(),
        )
    }

    /// The run with every step and attempt; `None` when there is no such run that `access`
    /// sees (a run of another workspace is not told apart from none).
    pub async fn run_detail(
        &self,
        access: &Access,
        id: &str,
    ) -> Result<Option<RunDetail>, EngineError> {
        let store = self.store();
        let Some(run) = self.visible_run(access, id).await? else {
            return Ok(None);
        };
        let (steps, attempts) = run_log::steps_of(store.reader(), store.backend(), id).await?;
        // The steps of the revision the run executes; the recorded ones if it cannot be read.
        let flow_steps: Vec<(String, String)> =
            match self.compiled(&run.flow_id, run.revision).await {
                Ok(flow) => flow
                    .steps
                    .iter()
                    .map(|s| (s.id.clone(), s.action.kind().to_string()))
                    .collect(),
                Err(_) => steps
                    .iter()
                    .map(|s| (s.step_id.clone(), s.kind.clone()))
                    .collect(),
            };
        let full = self.full_flows(std::slice::from_ref(&run)).await?;
        let detail = RunDetail {
            run: run_out(&run, full.contains(&run.flow_id)),
            steps: flow_steps
                .iter()
                .enumerate()
                .map(|(i, (step_id, kind))| step_out(i as i64, step_id, kind, &steps, &attempts))
                .collect(),
        };
        self.redacted(detail).map(Some)
    }

    /// The run `id` if it exists and `access` sees its workspace.
    pub(crate) async fn visible_run(
        &self,
        access: &Access,
        id: &str,
    ) -> Result<Option<RunRow>, crate::store::StoreError> {
        let store = self.store();
        let run = run_log::get_run(store.reader(), store.backend(), id).await?;
        Ok(run.filter(|r| access.sees(split_flow_key(&r.flow_id).0)))
    }

    /// The flows of `rows` with a pending run that executes as many runs as their
    /// `concurrency` allows (its runs wait for `concurrency`): one count per such flow.
    async fn full_flows(&self, rows: &[RunRow]) -> Result<HashSet<String>, EngineError> {
        let registry = self.registry();
        let mut candidates: Vec<(&str, u32)> = rows
            .iter()
            .filter(|r| r.status == RunStatus::Pending)
            .filter_map(|r| {
                let limits = registry.limited().iter().find(|l| l.flow_id == r.flow_id)?;
                Some((r.flow_id.as_str(), limits.concurrency?))
            })
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let store = self.store();
        let now = Utc::now().timestamp_millis();
        let mut full = HashSet::new();
        for (flow_id, concurrency) in candidates {
            let load =
                limits::flow_load(store.reader(), store.backend(), flow_id, now, now).await?;
            if load.running >= u64::from(concurrency) {
                full.insert(flow_id.to_string());
            }
        }
        Ok(full)
    }

    /// `answer` with every secret value in it shown as `***`, wherever it is.
    fn redacted<T: Serialize + DeserializeOwned>(&self, answer: T) -> Result<T, EngineError> {
        let mut value = serde_json::to_value(&answer).map_err(EngineError::RunJson)?;
        let redactor = self.step_env().redactor.current();
        match &mut value {
            Value::Array(runs) => runs.iter_mut().for_each(|run| redact_run(&redactor, run)),
            run => redact_run(&redactor, run),
        }
        serde_json::from_value(value).map_err(EngineError::RunJson)
    }
}

/// The parts of a run (as JSON) that hold data — its trigger, outputs, requests, responses and
/// errors — with every secret value shown as `***`. Field names, statuses and kinds are flowd's
/// own words and stay as they are: a secret that happens to be a short word (`c`) would
/// otherwise turn `succeeded` into `su******eeded` and `created_at` into no field at all.
fn redact_run(redactor: &crate::outbound::record::Redactor, run: &mut Value) {
    let redact = |value: &mut Value, keys: &[&str]| {
        for key in keys {
            if let Some(part) = value.get_mut(*key) {
                *part = redactor.redact_value(part);
            }
        }
    };
    redact(run, &["trigger", "error"]);
    let steps = run.get_mut("steps").and_then(Value::as_array_mut);
    for step in steps.into_iter().flatten() {
        redact(step, &["output", "error"]);
        let attempts = step.get_mut("attempts").and_then(Value::as_array_mut);
        for attempt in attempts.into_iter().flatten() {
            redact(attempt, &["request", "response", "error", "curl"]);
        }
    }
}

fn run_out(run: &RunRow, flow_full: bool) -> RunOut {
    let waiting = run.waiting_reason(chrono::Utc::now().timestamp_millis(), flow_full);
    RunOut {
        waiting_reason: waiting.map(|(reason, _)| reason),
        id: run.id.clone(),
        flow: split_flow_key(&run.flow_id).1.to_string(),
        workspace: split_flow_key(&run.flow_id).0.to_string(),
        revision: run.revision,
        status: run.status,
        trigger: serde_json::from_str::<Value>(&run.trigger).unwrap_or(Value::Null),
        attempt: run.attempt,
        created_at: time(Some(run.created_at)),
        started_at: time(run.started_at),
        finished_at: time(run.finished_at),
        wake_at: time(waiting.and_then(|(_, until)| until)),
        node: run.lease_owner.clone(),
        error: run.error.clone(),
    }
}

fn step_out(
    index: i64,
    step_id: &str,
    kind: &str,
    steps: &[StepDetail],
    attempts: &[AttemptDetail],
) -> StepOut {
    let row = steps.iter().find(|s| s.step_index == index);
    StepOut {
        id: step_id.to_string(),
        kind: kind.to_string(),
        status: row.map_or(StepStatus::Pending, |r| r.status),
        output: row
            .and_then(|r| r.output.as_deref())
            .and_then(|o| serde_json::from_str::<Value>(o).ok()),
        error: row.and_then(|r| r.error.clone()),
        started_at: time(row.and_then(|r| r.started_at)),
        finished_at: time(row.and_then(|r| r.finished_at)),
        attempts: attempts
            .iter()
            .filter(|a| a.step_index == index)
            .map(attempt_out)
            .collect(),
    }
}

fn attempt_out(a: &AttemptDetail) -> AttemptOut {
    let request: Option<Value> = a
        .request
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    let curl = request
        .as_ref()
        .and_then(|r| serde_json::from_value::<RecordedRequest>(r.clone()).ok())
        .map(|r| curl_command(&r));
    AttemptOut {
        n: a.n,
        node: a.node.clone(),
        started_at: time(Some(a.started_at)),
        finished_at: time(Some(a.finished_at)),
        duration_ms: a.duration_ms,
        request,
        response: a
            .response
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok()),
        error: a.error.clone(),
        curl,
    }
}

fn time(millis: Option<i64>) -> Option<String> {
    millis
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(rfc3339)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::redact_run;
    use crate::outbound::record::Redactor;

    #[test]
    fn a_short_secret_hides_in_data_but_not_in_statuses_kinds_or_field_names() {
        let redactor = Redactor::new(["c"]);
        let mut run = json!({"status": "succeeded", "created_at": "x", "error": "c!",
            "trigger": {"kind": "manual", "input": {"c": "abc"}},
            "steps": [{"kind": "http", "status": "succeeded", "output": "abc",
                "attempts": [{"n": 1, "curl": "curl -H c", "request": {"url": "c"}}]}]});
        redact_run(&redactor, &mut run);
        assert_eq!(run["status"], "succeeded");
        assert_eq!(run["created_at"], "x");
        assert_eq!(run["error"], "***!");
        assert_eq!(run["trigger"]["input"], json!({"***": "ab***"}));
        assert_eq!(run["steps"][0]["status"], "succeeded");
        assert_eq!(run["steps"][0]["output"], "ab***");
        assert_eq!(run["steps"][0]["attempts"][0]["curl"], "***url -H ***");
        assert_eq!(run["steps"][0]["attempts"][0]["request"]["url"], "***");
    }
}
