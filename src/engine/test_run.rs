//! Test runs: one flow run once on trigger data given by hand — an entity event, the input (and
//! entity) of a manual or webhook trigger, or the trigger data of an earlier run. `flowd run`,
//! `POST /api/v1/flows/{id}/test` and the console's test panel all come here.
//!
//! A dry run executes on a [`Sandbox`]: the real engine and runner (trigger matching, templates,
//! HTTP client with its checks, signing, redaction, state machine) on a throw-away SQLite file,
//! with [`Delivery::DryRun`], so each step's output and each request it would send are what a
//! served run would produce, and nothing is sent or stored in the real database. Sending for real
//! ([`Engine::start_test`] on the real engine) starts one run of that flow only: an event is
//! matched against this flow's triggers alone and is not recorded as an event.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::core::duration::Duration as FlowDuration;
use crate::core::trigger_data::{ManualEntity, TriggerData};
use crate::core::workspace::Access;
use crate::engine::run_view::RunDetail;
use crate::engine::secrets::MasterKeySource;
use crate::engine::{Engine, EngineConfig, EngineError, EventIn, flow_input};
use crate::flow::model::{FlowDef, Trigger};
use crate::flow::registry::FlowEntry;
use crate::runner::worker::{self, RunnerConfig};
use crate::step::Delivery;
use crate::step::retry::RetryPolicy;
use crate::store::StoreOptions;
use crate::store::flows::FlowSource;
use crate::trigger::entity::check_event;
use crate::trigger::manual::{ManualError, ManualRequest};

/// What starts a test run.
#[derive(Debug, Clone)]
pub enum TestTrigger {
    /// An entity event, matched against the flow's entity triggers.
    Event(EventIn),
    /// Input (and entity) of the flow's manual trigger, or of its webhook trigger when it has no
    /// manual one.
    Manual(ManualRequest),
    /// The trigger data of an earlier run, as it was.
    Data(TriggerData),
}

/// How refusals name what was given: `--event` on the command line, `event` in the API.
#[derive(Debug, Clone, Copy)]
pub struct Spelling {
    pub event: &'static str,
    pub input: &'static str,
    pub entity: &'static str,
    /// Around the example of an entity: shell quotes on the command line.
    pub quote: &'static str,
}

pub const CLI_SPELLING: Spelling = Spelling {
    event: "--event",
    input: "--input",
    entity: "--entity",
    quote: "'",
};

pub const API_SPELLING: Spelling = Spelling {
    event: "`event`",
    input: "`input`",
    entity: "`entity`",
    quote: "",
};

/// Why a test run did not start or end.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The trigger data does not fit the flow (the message says why and lists its triggers).
    #[error("{0}")]
    Unfit(String),
    /// The request is not one test: bad JSON shapes, none or several trigger data.
    #[error("{0}")]
    Invalid(String),
    /// The flow refused the run (paused, disabled, the manual trigger's `if` false, bad input).
    #[error(transparent)]
    Refused(ManualError),
    #[error("no flow `{0}`")]
    UnknownFlow(String),
    #[error("no run `{0}` of flow `{1}`")]
    UnknownRun(String, String),
    #[error("the dry run did not end within {} s", DRY_RUN_LIMIT.as_secs())]
    TooLong,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// How a test run differs from a served one.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestOptions {
    /// Send nothing (implies `no_wait`).
    pub dry_run: bool,
    /// Retry failing steps as the flow says (else one attempt per step).
    pub retry: bool,
    /// Finish delay steps at once.
    pub no_wait: bool,
}

/// Notes on how a test run differs from a served one, shown before its steps.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    pub lines: Vec<String>,
    /// Delay steps finished at once, with the wait they skipped.
    pub skipped_delays: Vec<(String, FlowDuration)>,
}

/// What `POST /api/v1/flows/{id}/test` takes: one of `event`, `input` (with `entity` for an
/// action on an entity) or `run_id`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event": {"entity": "guest", "action": "create", "id": "42", "data": {"email": "ada@example.com"}}}))]
pub struct TestRequest {
    /// An entity event, as `POST /api/v1/events` takes one; it must match one of the flow's
    /// entity triggers.
    #[schema(value_type = Option<Object>)]
    pub event: Option<Value>,
    /// What the flow reads as `input`: for its manual trigger, or its webhook trigger when it
    /// has no manual one.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// The entity a manual action runs on, `{"type", "id", "data"}`.
    #[schema(value_type = Option<Object>)]
    pub entity: Option<Value>,
    /// Test with the trigger data of this earlier run of the flow.
    pub run_id: Option<String>,
    /// `true`: start a real run with this trigger data (requests are sent) instead of a dry run.
    #[serde(default)]
    pub send: bool,
}

/// A test's result: the run as `GET /api/v1/runs/{id}` shows it (secrets as `***`). In a dry
/// run it has ended and each http step's attempt holds the request it would send; sent for real,
/// it is the run just started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestRun {
    /// `true`: nothing was sent, nothing stored (the run lived on a throw-away database).
    pub dry_run: bool,
    /// How this run differs from a served one (delays not waited, one attempt per step).
    pub notes: Vec<String>,
    pub run: RunDetail,
}

/// The flow as a test executes it: enabled, one attempt per step unless `retry`, delays of zero
/// with `no_wait` or `dry_run`.
pub fn one_shot(mut def: FlowDef, options: TestOptions) -> (FlowDef, Notes) {
    let mut notes = Notes::default();
    if def.enabled == Some(false) {
        def.enabled = Some(true);
        notes
            .lines
            .push("the flow is disabled (`enabled: false`); running it anyway".into());
    }
    if !options.retry {
        let settings = def.settings.get_or_insert_with(Default::default);
        one_attempt(settings.retry.get_or_insert_with(no_policy));
        for policy in def
            .steps
            .iter_mut()
            .filter_map(|s| s.http.as_mut()?.retry.as_mut())
        {
            one_attempt(policy);
        }
    }
    if options.no_wait || options.dry_run {
        for step in &mut def.steps {
            if let Some(delay) = step.delay.as_mut() {
                notes.skipped_delays.push((step.id.clone(), *delay));
                *delay = FlowDuration::from_millis(0);
            }
        }
    }
    (def, notes)
}

fn no_policy() -> RetryPolicy {
    RetryPolicy {
        attempts: None,
        delay: None,
        max_delay: None,
    }
}

fn one_attempt(policy: &mut RetryPolicy) {
    policy.attempts = Some(1);
}

/// A throw-away engine on a temporary SQLite file, holding the one flow under test.
pub struct Sandbox {
    engine: Engine,
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// An engine like `base` (network policy, mailer, validation, secrets) on a fresh database.
    pub async fn open(base: EngineConfig, delivery: Delivery) -> Result<Sandbox, EngineError> {
        let dir = tempfile::tempdir().map_err(EngineError::TempDir)?;
        let database_url = format!("sqlite://{}", dir.path().join("run.db").display());
        let engine = Engine::open_with(
            EngineConfig {
                database_url,
                // A throw-away store: the durability and pool settings of the real one do not
                // apply, nor does its secret store (the secrets come with `base`).
                store: StoreOptions::default(),
                master_key: MasterKeySource::None,
                ..base
            },
            delivery,
        )
        .await?;
        Ok(Sandbox { engine, dir })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Stores the flow (enabled, as `def` says) and loads it.
    pub async fn add_flow(
        &self,
        id: &str,
        name: &str,
        def: &FlowDef,
        yaml: &str,
        path: Option<&Path>,
    ) -> Result<(), EngineError> {
        let source = if path.is_some() {
            FlowSource::File
        } else {
            FlowSource::Api
        };
        let stored = flow_input(id, name, def, yaml, source, path)?;
        let store = self.engine.store();
        let now = chrono::Utc::now().timestamp_millis();
        let txn = store.begin_write().await?;
        crate::store::flows::save(&txn, store.backend(), &stored, now).await?;
        txn.commit().await.map_err(crate::store::StoreError::from)?;
        self.engine.reload_registry().await
    }

    /// Starts executing runs, one at a time.
    pub fn start_runner(&self) -> RunnerTask {
        let (stop, stop_rx) = watch::channel(false);
        let config = RunnerConfig {
            workers: 1,
            ..RunnerConfig::default()
        };
        let task = tokio::spawn(worker::run(self.engine.runner().clone(), config, stop_rx));
        RunnerTask { stop, task }
    }

    /// Closes the database and removes its folder.
    pub async fn close(self) {
        self.engine.store().clone().close().await;
        drop(self.dir);
    }
}

/// The runner of a [`Sandbox`], until [`RunnerTask::stop`].
pub struct RunnerTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunnerTask {
    pub async fn stop(self) {
        if self.stop.send(true).is_err() {
            tracing::debug!("The runner had stopped already.");
        }
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "The runner task ended abnormally.");
        }
    }
}

/// How long a dry run may take: nothing is sent and delays are skipped, so only a stuck run
/// gets near it.
const DRY_RUN_LIMIT: Duration = Duration::from_secs(30);

/// Dry runs at once in this process: each opens a database of its own, so a burst of tests
/// queues here instead of taking the machine from the runs being served.
static DRY_RUNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

impl Engine {
    /// Tests flow `flow_id` of the access's workspace as `request` asks: a dry run, or a real
    /// run when `send`.
    pub async fn test_flow(
        &self,
        access: &Access,
        flow_id: &str,
        request: TestRequest,
    ) -> Result<TestRun, TestError> {
        let key = crate::engine::flows::key_of(access, flow_id);
        let flow_id = key.as_str();
        if self.registry().get(flow_id).is_none() {
            return Err(TestError::UnknownFlow(flow_id.into()));
        }
        let send = request.send;
        let trigger = self.test_trigger(flow_id, request).await?;
        if !send {
            return self.dry_run(flow_id, trigger, &API_SPELLING).await;
        }
        let run_id = self.start_test(flow_id, trigger, &API_SPELLING).await?;
        let run = self.run_detail(&Access::local(), &run_id).await?;
        let run = run.ok_or_else(|| TestError::UnknownRun(run_id, flow_id.into()))?;
        Ok(TestRun {
            dry_run: false,
            notes: Vec::new(),
            run,
        })
    }

    /// The trigger data a test request gives, checked as the API checks events and actions.
    async fn test_trigger(
        &self,
        flow_id: &str,
        request: TestRequest,
    ) -> Result<TestTrigger, TestError> {
        let given = [
            request.event.is_some(),
            request.input.is_some() || request.entity.is_some(),
            request.run_id.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(TestError::Invalid(
                "give one of `event`, `input` (with `entity` for an action on an entity) or `run_id`"
                    .into(),
            ));
        }
        if let Some(run_id) = request.run_id {
            return Ok(TestTrigger::Data(
                self.trigger_of_run(flow_id, &run_id).await?,
            ));
        }
        if let Some(event) = request.event {
            return test_event(event).map(TestTrigger::Event);
        }
        let input = request.input.unwrap_or(Value::Null);
        let entity = match request.entity {
            None | Some(Value::Null) => None,
            Some(entity) => Some(serde_json::from_value::<ManualEntity>(entity).map_err(|e| {
                TestError::Invalid(format!(
                    "`entity` is not an entity {{\"type\", \"id\", \"data\"}}: {e}"
                ))
            })?),
        };
        Ok(TestTrigger::Manual(ManualRequest { input, entity }))
    }

    /// Starts one run of `flow_id` on this engine with `trigger`; returns its id. On the real
    /// engine this is "send it for real"; on a [`Sandbox`]'s, the start of a dry run.
    pub async fn start_test(
        &self,
        flow_id: &str,
        trigger: TestTrigger,
        spelling: &Spelling,
    ) -> Result<String, TestError> {
        let registry = self.registry();
        let flow = registry
            .get(flow_id)
            .ok_or_else(|| TestError::UnknownFlow(flow_id.into()))?;
        if flow.paused {
            return Err(TestError::Refused(ManualError::Paused(flow_id.into())));
        }
        if !flow.enabled {
            return Err(TestError::Refused(ManualError::Disabled(flow_id.into())));
        }
        match trigger {
            TestTrigger::Event(event) => match self.intake().event_trigger(flow, &event) {
                Some(data) => self.start_with(flow, &data).await,
                None => Err(TestError::Unfit(no_match(flow, &event, spelling))),
            },
            TestTrigger::Manual(request) => self.start_manual(flow, request, spelling).await,
            TestTrigger::Data(data) => self.start_with(flow, &data).await,
        }
    }

    /// Runs `flow_id` (its current revision) once on a sandbox, sending nothing, and answers
    /// the finished run.
    pub async fn dry_run(
        &self,
        flow_id: &str,
        trigger: TestTrigger,
        spelling: &Spelling,
    ) -> Result<TestRun, TestError> {
        let registry = self.registry();
        let flow = registry
            .get(flow_id)
            .ok_or_else(|| TestError::UnknownFlow(flow_id.into()))?;
        let options = TestOptions {
            dry_run: true,
            ..TestOptions::default()
        };
        let (def, notes) = one_shot(flow.flow.def.clone(), options);
        // Closed only when the process ends, so acquiring cannot fail; if it could, run anyway.
        let _turn = DRY_RUNS.acquire().await.ok();
        let config = self.sandbox_config(flow.workspace());
        let sandbox = Sandbox::open(config, Delivery::DryRun).await?;
        // In the sandbox the flow is alone, in `default`, with its own workspace's secrets.
        let bare_id = flow.bare_id();
        let outcome = async {
            sandbox
                .add_flow(bare_id, &flow.name, &def, "", None)
                .await?;
            let run_id = sandbox
                .engine
                .start_test(bare_id, trigger, spelling)
                .await?;
            let runner = sandbox.start_runner();
            let ended = sandbox
                .engine
                .wait_for_run_end(&run_id, DRY_RUN_LIMIT)
                .await;
            runner.stop().await;
            if !ended? {
                return Err(TestError::TooLong);
            }
            let run = sandbox.engine.run_detail(&Access::local(), &run_id).await?;
            let run = run.ok_or_else(|| TestError::UnknownRun(run_id, flow_id.into()))?;
            Ok(TestRun {
                dry_run: true,
                notes: notes_lines(&notes),
                run,
            })
        }
        .await;
        sandbox.close().await;
        outcome
    }

    /// The trigger data of run `run_id` of flow `flow_id`, as it was stored (not redacted: it
    /// only feeds a new run, whose outputs are redacted).
    pub async fn trigger_of_run(
        &self,
        flow_id: &str,
        run_id: &str,
    ) -> Result<TriggerData, TestError> {
        let store = self.store();
        let run = crate::store::run_log::get_run(store.reader(), store.backend(), run_id)
            .await
            .map_err(EngineError::from)?
            .filter(|r| r.flow_id == flow_id)
            .ok_or_else(|| TestError::UnknownRun(run_id.into(), flow_id.into()))?;
        serde_json::from_str(&run.trigger).map_err(|e| {
            TestError::Unfit(format!(
                "the trigger data of run `{run_id}` cannot be read: {e}"
            ))
        })
    }

    async fn start_with(&self, flow: &FlowEntry, data: &TriggerData) -> Result<String, TestError> {
        self.intake()
            .start_run(flow, data)
            .await
            .map_err(|e| TestError::Engine(e.into()))
    }

    async fn start_manual(
        &self,
        flow: &FlowEntry,
        request: ManualRequest,
        spelling: &Spelling,
    ) -> Result<String, TestError> {
        let def = &flow.flow.def;
        match self
            .intake()
            .trigger_manual(&flow.id, request.clone())
            .await
        {
            Ok(run_id) => Ok(run_id),
            Err(ManualError::NoManualTrigger(_)) => {
                let path = def.triggers.iter().find_map(|t| match t {
                    Trigger::Webhook(w) => Some(w.webhook.path.clone()),
                    _ => None,
                });
                let (Some(path), None) = (path, &request.entity) else {
                    return Err(TestError::Unfit(format!(
                        "flow `{}` has no manual trigger{}; its triggers: {}",
                        flow.id,
                        if request.entity.is_some() {
                            format!(" that takes {}", spelling.entity)
                        } else {
                            " or webhook trigger".to_string()
                        },
                        describe_triggers(def, spelling)
                    )));
                };
                let data = TriggerData::Webhook {
                    path,
                    input: request.input,
                };
                self.start_with(flow, &data).await
            }
            Err(ManualError::EntityMismatch(_)) => Err(TestError::Unfit(format!(
                "flow `{}` {}; its triggers: {}",
                flow.id,
                if request.entity.is_some() {
                    format!("does not run on this {}", spelling.entity)
                } else {
                    format!("runs on one entity: pass {}", spelling.entity)
                },
                describe_triggers(def, spelling)
            ))),
            Err(ManualError::Intake(e)) => Err(TestError::Engine(e.into())),
            Err(e) => Err(TestError::Refused(e)),
        }
    }

    /// The configuration of this engine, for a sandbox: the secrets as they are now (the
    /// store's included, fixed for the sandbox's life).
    /// A sandbox sees the secrets of the tested flow's workspace (as its `default`'s).
    fn sandbox_config(&self, workspace: &str) -> EngineConfig {
        EngineConfig {
            secrets: self.inner.secrets.current_in(workspace).fixed(),
            ..self.inner.config.clone()
        }
    }
}

/// An event of a test, checked as `POST /api/v1/events` checks one.
fn test_event(event: Value) -> Result<EventIn, TestError> {
    if !event.is_object() {
        return Err(TestError::Invalid(
            "`event` must be one event (an object)".into(),
        ));
    }
    let event: EventIn = serde_json::from_value(event)
        .map_err(|e| TestError::Invalid(format!("`event` is not an event: {e}")))?;
    let problems: Vec<String> = check_event(0, &event)
        .iter()
        .map(|p| format!("`event.{}` {}", p.field, p.message))
        .collect();
    if !problems.is_empty() {
        return Err(TestError::Invalid(problems.join("; ")));
    }
    Ok(event)
}

fn notes_lines(notes: &Notes) -> Vec<String> {
    let skipped = notes
        .skipped_delays
        .iter()
        .map(|(step, wait)| format!("step {step}: not waited (a served run waits {wait} here)"));
    notes.lines.iter().cloned().chain(skipped).collect()
}

/// Why an event starts no run of `flow`, for a person: the triggers it was checked against.
fn no_match(flow: &FlowEntry, event: &EventIn, spelling: &Spelling) -> String {
    let def = &flow.flow.def;
    let flow_id = &flow.id;
    let has_entity = def.triggers.iter().any(|t| matches!(t, Trigger::Entity(_)));
    if !has_entity {
        return format!(
            "flow `{flow_id}` has no entity trigger, so no event starts it; its triggers: {}. \
             Use {} for a manual or webhook trigger",
            describe_triggers(def, spelling),
            spelling.input
        );
    }
    format!(
        "the event ({}.{}, id {}) matches none of flow `{flow_id}`'s triggers: {}",
        event.entity,
        event.action,
        event.id,
        describe_triggers(def, spelling)
    )
}

/// The flow's triggers in one line, with what each needs.
pub fn describe_triggers(def: &FlowDef, spelling: &Spelling) -> String {
    let described: Vec<String> = def
        .triggers
        .iter()
        .map(|t| match t {
            Trigger::Entity(e) => {
                let actions: Vec<&str> = e.actions().iter().map(|a| a.as_str()).collect();
                let mut text = format!("entity `{}` on {}", e.entity, actions.join("/"));
                if let Some(ids) = &e.ids {
                    let ids: Vec<&str> = ids.iter().map(|i| i.0.as_str()).collect();
                    text.push_str(&format!(" with ids {}", ids.join(", ")));
                }
                if let Some(fields) = &e.fields {
                    text.push_str(&format!(" when {} changed", fields.join(" or ")));
                }
                if let Some(condition) = &e.condition {
                    text.push_str(&format!(" if {}", condition.as_str()));
                }
                text
            }
            Trigger::Manual(m) => match &m.manual.entity {
                Some(entity) => format!(
                    "manual on one `{entity}` ({} {q}{{\"type\": \"{entity}\", \"id\": …, \"data\": {{…}}}}{q}, {})",
                    spelling.entity,
                    spelling.input,
                    q = spelling.quote
                ),
                None => format!("manual ({})", spelling.input),
            },
            Trigger::Schedule(s) => format!("schedule `{}`", s.schedule.cron),
            Trigger::Webhook(w) => format!("webhook `{}`", w.webhook.path),
        })
        .collect();
    described.join("; ")
}
