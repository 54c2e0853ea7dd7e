//! Validation of one flow: parse the YAML, check its shape against the schema, then check the
//! rules a schema cannot express. The flow-level rules live here (ids, triggers, settings, step
//! ids and their order); each step's own rules live with its kind under `crate::step`, reached
//! through `step::validate` with a `step::check::Context`: which earlier steps its templates may
//! use, the options, and where a path sits in this source. Every problem is collected, not only
//! the first, each with its position.

use std::collections::{HashMap, HashSet};

use crate::core::diagnostic::{Diagnostic, FlowPath, Pos, Seg};
use crate::flow::cron::{CronError, CronSchedule};
use crate::flow::model::{
    AutoPause, AutoPauseLimits, EntityAction, FLOW_ID_PATTERN, FlowDef, ScheduleTrigger, Trigger,
};
use crate::flow::registry::{same_flow_clash_message, webhook_clash_key};
use crate::flow::schema::check_shape;
use crate::flow::yaml::{self, Node, NodeValue};
use crate::step::StepDef;
use crate::step::check::{Context, Findings, Scope, Secret, StepScope, list_items};
use crate::step::notify::NotifyConfig;
use crate::template::{TemplateStr, compile_text};

/// Largest flow source accepted, from a file or the API.
pub const MAX_FLOW_BYTES: usize = 1 << 20;

/// Settings that tighten validation. The command line's `Config` makes them once at start (the
/// engine keeps them); they follow the same settings as the `http` step's network policy.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `FLOWD_HTTP_REQUIRE_HTTPS=true`: literal `http://` URLs are errors.
    pub require_https: bool,
    /// The secrets set now, when known (the API, `flowd validate` beside a store): a template
    /// reading another one gets a warning.
    pub known_secrets: Option<std::sync::Arc<std::collections::BTreeSet<String>>>,
    /// The secrets' values, when this node has them (the API): what can only be checked with
    /// them (that an `http` step's client certificate and key match) is checked. In memory only.
    pub secrets: Option<std::sync::Arc<crate::secrets::Secrets>>,
}

/// A flow that passed validation, with what cross-flow checks need.
#[derive(Debug, Clone)]
pub struct ValidFlow {
    pub id: String,
    pub name: String,
    pub def: FlowDef,
    /// Where the id is written (or the top of the file when it comes from the file name).
    pub id_pos: Pos,
    /// Each webhook path with the position of its value.
    pub webhook_paths: Vec<(String, FlowPath, Pos)>,
    /// Its workspace: the `workspace:` key, else `default` until a loader gives the folder's.
    pub workspace: String,
}

impl ValidFlow {
    /// The key the flow is stored under (`core::workspace::flow_key`).
    pub fn key(&self) -> String {
        crate::core::workspace::flow_key(&self.workspace, &self.id)
    }

    /// Whether the flow says `workspace:` itself.
    pub fn declares_workspace(&self) -> bool {
        self.def.workspace.is_some()
    }
}

/// The outcome of validating one flow source: the flow when there is no error, and every
/// diagnostic (errors and warnings).
#[derive(Debug, Clone)]
pub struct Report {
    pub flow: Option<ValidFlow>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    fn failed(diagnostics: Vec<Diagnostic>) -> Report {
        Report {
            flow: None,
            diagnostics,
        }
    }
}

/// Validates a flow written in YAML (JSON is YAML too). `default_id` is the file name without
/// extension, used when the flow has no `id`.
pub fn validate_source(source: &str, default_id: Option<&str>, options: &Options) -> Report {
    if source.len() > MAX_FLOW_BYTES {
        let message = format!(
            "the flow is {} bytes; flows may be at most {MAX_FLOW_BYTES} bytes (1 MiB)",
            source.len()
        );
        return Report::failed(vec![Diagnostic::error(
            FlowPath::root(),
            Pos::START,
            message,
        )]);
    }
    let node = match yaml::parse(source) {
        Ok(node) => node,
        Err(e) => {
            let message = format!("invalid YAML: {}", e.message);
            return Report::failed(vec![Diagnostic::error(FlowPath::root(), e.pos, message)]);
        }
    };
    validate_node(&node, default_id, options)
}

/// Validates a parsed flow tree. Triggers and steps whose shape is wrong are set aside, so the
/// rest of the flow still gets every semantic check and all problems are reported at once.
pub fn validate_node(node: &Node, default_id: Option<&str>, options: &Options) -> Report {
    let shape = check_shape(node);
    let Some(pruned) = prune(node, &shape) else {
        return Report::failed(shape);
    };
    let def: FlowDef = match serde_json::from_value(pruned.json) {
        Ok(def) => def,
        Err(e) if shape.is_empty() => {
            // The shape check should have caught this; say what serde saw rather than nothing.
            return Report::failed(vec![Diagnostic::error(
                FlowPath::root(),
                node.pos,
                e.to_string(),
            )]);
        }
        Err(_) => return Report::failed(shape),
    };
    let mut cx = Cx {
        node,
        options,
        diagnostics: shape,
        trigger_index: pruned.trigger_index,
        step_index: pruned.step_index,
        step_ids: step_ids_of(node),
    };
    let (id, id_pos) = cx.flow_id(&def, default_id);
    cx.check_triggers(&def);
    cx.check_settings(&def);
    cx.check_steps(&def.steps);
    let webhook_paths = cx.webhook_paths(&def);
    let mut diagnostics = cx.diagnostics;
    diagnostics.sort_by_key(|d| (d.line, d.column));
    let name = def.name.clone().unwrap_or_else(|| id.clone());
    let workspace = def
        .workspace
        .clone()
        .unwrap_or_else(|| crate::core::workspace::DEFAULT_WORKSPACE.to_string());
    let flow = (!diagnostics.iter().any(Diagnostic::is_error)).then_some(ValidFlow {
        id,
        name,
        def,
        id_pos,
        webhook_paths,
        workspace,
    });
    Report { flow, diagnostics }
}

/// The flow as JSON without the parts whose shape is wrong, and where the kept triggers and
/// steps stood in the source.
struct Pruned {
    json: serde_json::Value,
    trigger_index: Vec<usize>,
    step_index: Vec<usize>,
}

/// Drops what the shape check found wrong; `None` when the flow is not even a mapping.
fn prune(node: &Node, shape: &[Diagnostic]) -> Option<Pruned> {
    let serde_json::Value::Object(mut root) = node.to_json() else {
        return None;
    };
    let broken = |list: &str, i: usize| {
        shape.iter().any(|d| {
            matches!(d.path.0.as_slice(), [Seg::Key(k), Seg::Index(n), ..] if k == list && *n == i)
        })
    };
    let top_level_broken = |key: &str| {
        shape.iter().any(|d| {
            matches!(d.path.0.as_slice(), [Seg::Key(k), ..] if k == key)
                && !matches!(d.path.0.as_slice(), [_, Seg::Index(_), ..])
        })
    };
    root.retain(|key, _| FLOW_KEYS.contains(&key.as_str()) && !top_level_broken(key));
    let mut keep = |list: &str| -> Vec<usize> {
        let items = match root.remove(list) {
            Some(serde_json::Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let (index, kept): (Vec<usize>, Vec<serde_json::Value>) = items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !broken(list, *i))
            .unzip();
        root.insert(list.to_string(), serde_json::Value::Array(kept));
        index
    };
    let trigger_index = keep("triggers");
    let step_index = keep("steps");
    Some(Pruned {
        json: serde_json::Value::Object(root),
        trigger_index,
        step_index,
    })
}

/// The top-level keys of a flow.
const FLOW_KEYS: [&str; 8] = [
    "id",
    "workspace",
    "name",
    "description",
    "enabled",
    "triggers",
    "settings",
    "steps",
];

/// Every step id written in the source, also of steps set aside, so references to them are
/// not reported as references to missing steps.
fn step_ids_of(node: &Node) -> Vec<Option<String>> {
    match node.get("steps").map(|s| &s.value) {
        Some(NodeValue::Seq(steps)) => steps
            .iter()
            .map(|s| s.get("id").and_then(Node::as_str).map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The validation context: the source tree for positions and the diagnostics found so far.
struct Cx<'a> {
    node: &'a Node,
    options: &'a Options,
    diagnostics: Vec<Diagnostic>,
    /// Source index of each trigger kept after pruning.
    trigger_index: Vec<usize>,
    /// Source index of each step kept after pruning.
    step_index: Vec<usize>,
    /// Every step id in the source, by source index.
    step_ids: Vec<Option<String>>,
}

impl Cx<'_> {
    /// The position of the value at `path`, or of the deepest part of it that exists.
    fn pos(&self, path: &FlowPath) -> Pos {
        position(self.node, path)
    }

    /// Whether the source has `key: []`; other shapes were reported by the shape check.
    fn is_empty_list(&self, key: &str) -> bool {
        matches!(self.node.get(key).map(|n| &n.value), Some(NodeValue::Seq(items)) if items.is_empty())
    }

    fn error(&mut self, path: FlowPath, message: impl Into<String>) {
        let pos = self.pos(&path);
        self.diagnostics.push(Diagnostic::error(path, pos, message));
    }

    /// Runs a check of the step layer with this flow's context: `scope` for its templates, the
    /// options, and positions in this source.
    fn step_check(
        &mut self,
        scope: Scope<'_>,
        check: impl FnOnce(&Context<'_>) -> Vec<Diagnostic>,
    ) {
        let node = self.node;
        let locate = move |path: &FlowPath| position(node, path);
        let cx = Context {
            scope,
            require_https: self.options.require_https,
            locate: &locate,
            known_secrets: self.options.known_secrets.as_deref(),
            secrets: self.options.secrets.as_deref(),
        };
        let found = check(&cx);
        self.diagnostics.extend(found);
    }

    /// Checks a template evaluated before any step (a trigger's `if`, a webhook secret).
    fn check_template(&mut self, text: &TemplateStr, path: FlowPath, secret: Secret) {
        self.step_check(Scope::BeforeSteps, |cx| {
            let mut found = Findings::new(cx);
            found.template(text, path, secret);
            found.finish()
        });
    }

    fn flow_id(&mut self, def: &FlowDef, default_id: Option<&str>) -> (String, Pos) {
        if let Some(id) = &def.id {
            return (id.clone(), self.pos(&FlowPath::root().key("id")));
        }
        let Some(stem) = default_id else {
            self.error(
                FlowPath::root(),
                "`id` is required when the flow does not come from a file",
            );
            return (String::new(), Pos::START);
        };
        static ID_PATTERN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(FLOW_ID_PATTERN).expect("constant pattern")
        });
        if !ID_PATTERN.is_match(stem) {
            self.error(
                FlowPath::root(),
                format!(
                    "the file name `{stem}` is not a valid flow id (lower-case letters, digits, `_` and `-`); add an `id:` or rename the file"
                ),
            );
        }
        (stem.to_string(), Pos::START)
    }

    fn check_triggers(&mut self, def: &FlowDef) {
        let triggers = FlowPath::root().key("triggers");
        if self.is_empty_list("triggers") {
            self.error(triggers.clone(), "a flow needs at least one trigger");
        }
        let entity_types: HashSet<&str> =
            def.entity_triggers().map(|t| t.entity.as_str()).collect();
        // Clash key → the path as first written in this flow.
        let mut hook_paths: HashMap<String, &str> = HashMap::new();
        for (kept, trigger) in def.triggers.iter().enumerate() {
            let path = triggers.index(self.trigger_index[kept]);
            match trigger {
                Trigger::Entity(t) => {
                    if let Some(on) = &t.on
                        && on.to_vec().is_empty()
                    {
                        self.error(
                            path.key("on"),
                            "`on` needs at least one of `create`, `update`, `delete`",
                        );
                    }
                    if let Some(fields) = &t.fields {
                        if !t.actions().contains(&EntityAction::Update) {
                            self.error(
                                path.key("fields"),
                                "`fields` filters updates, but this trigger does not fire on `update`; add `update` to `on` or remove `fields`",
                            );
                        } else if fields.is_empty() {
                            self.error(
                                path.key("fields"),
                                "`fields` needs at least one field name (or leave it out)",
                            );
                        }
                    }
                    if t.ids.as_ref().is_some_and(Vec::is_empty) {
                        self.error(
                            path.key("ids"),
                            "`ids` needs at least one id (or leave it out)",
                        );
                    }
                    if let Some(condition) = &t.condition {
                        self.check_template(condition, path.key("if"), Secret::No);
                    }
                }
                Trigger::Manual(m) => {
                    if let Some(condition) = &m.manual.condition {
                        let at = path.key("manual").key("if");
                        self.check_template(condition, at, Secret::No);
                    }
                    if m.manual.label.trim().is_empty() {
                        self.error(
                            path.key("manual").key("label"),
                            "`label` must not be empty: it is the action's name shown to people",
                        );
                    }
                    if let Some(entity) = &m.manual.entity
                        && !entity_types.is_empty()
                        && !entity_types.contains(entity.as_str())
                    {
                        let mut types: Vec<&str> = entity_types.iter().copied().collect();
                        types.sort_unstable();
                        self.error(
                            path.key("manual").key("entity"),
                            format!(
                                "this action is for `{entity}` entities, but the flow's entity triggers are for {}: the steps would see different kinds of `entity`",
                                types.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                            ),
                        );
                    }
                }
                Trigger::Schedule(s) => {
                    if let Some(condition) = &s.schedule.condition {
                        let at = path.key("schedule").key("if");
                        self.check_template(condition, at, Secret::No);
                    }
                    self.check_schedule(&s.schedule, path.key("schedule"));
                }
                Trigger::Webhook(w) => {
                    let hook = w.webhook.path.as_str();
                    if let Some(problem) = look_alike_path_problem(hook) {
                        self.error(path.key("webhook").key("path"), problem);
                    }
                    match hook_paths.get(&webhook_clash_key(hook)) {
                        Some(first) => {
                            let problem = same_flow_clash_message(first, hook);
                            self.error(path.key("webhook").key("path"), problem);
                        }
                        None => {
                            hook_paths.insert(webhook_clash_key(hook), hook);
                        }
                    }
                    if let Some(condition) = &w.webhook.condition {
                        let at = path.key("webhook").key("if");
                        self.check_template(condition, at, Secret::No);
                    }
                    if let Some(secrets) = &w.webhook.secret {
                        let secret_path = path.key("webhook").key("secret");
                        for (secret, at) in list_items(secrets, &secret_path) {
                            self.check_template(secret, at, Secret::Yes);
                        }
                    }
                }
            }
        }
    }

    /// Checks the cron expression and the time zone, reporting both when both are wrong.
    fn check_schedule(&mut self, schedule: &ScheduleTrigger, path: FlowPath) {
        let timezone = schedule.timezone.as_deref();
        match CronSchedule::parse(&schedule.cron, timezone) {
            Ok(_) => {}
            Err(e @ CronError::Timezone { .. }) => self.error(path.key("timezone"), e.to_string()),
            Err(e @ CronError::Expression { .. }) => {
                self.error(path.key("cron"), e.to_string());
                if let Err(zone @ CronError::Timezone { .. }) =
                    CronSchedule::parse("* * * * *", timezone)
                {
                    self.error(path.key("timezone"), zone.to_string());
                }
            }
        }
    }

    fn webhook_paths(&self, def: &FlowDef) -> Vec<(String, FlowPath, Pos)> {
        def.triggers
            .iter()
            .zip(&self.trigger_index)
            .filter_map(|(t, i)| match t {
                Trigger::Webhook(w) => {
                    let path = FlowPath::root()
                        .key("triggers")
                        .index(*i)
                        .key("webhook")
                        .key("path");
                    Some((w.webhook.path.clone(), path.clone(), self.pos(&path)))
                }
                _ => None,
            })
            .collect()
    }

    fn check_settings(&mut self, def: &FlowDef) {
        let Some(settings) = &def.settings else {
            return;
        };
        let path = FlowPath::root().key("settings");
        if settings.retention.is_some_and(|t| t.as_millis() == 0) {
            self.error(path.key("retention"), "the retention must be longer than 0");
        }
        if settings.timeout.is_some_and(|t| t.as_millis() == 0) {
            self.error(path.key("timeout"), "the run timeout must be longer than 0");
        }
        if let Some(AutoPause::Limits(AutoPauseLimits {
            notify: Some(notify),
            ..
        })) = &settings.auto_pause
        {
            // Checked as the notify step it becomes; its message is flowd's, not a template.
            let config = NotifyConfig {
                subject: Some(TemplateStr("auto pause".into())),
                text: None,
                ..notify.as_notify()
            };
            let at = path.key("auto_pause").key("notify");
            self.step_check(Scope::BeforeSteps, |cx| {
                crate::step::notify::validate(&config, &at, cx)
            });
        }
        if let Some(order_key) = &settings.order_key {
            self.check_template(order_key, path.key("order_key"), Secret::No);
            if compile_text(order_key.as_str()).is_ok_and(|t| t.reads_secrets()) {
                self.error(
                    path.key("order_key"),
                    "`order_key` cannot read secrets: the key is stored with each run",
                );
            }
        }
        if let Some(retry) = &settings.retry {
            let path = path.key("retry");
            self.step_check(Scope::BeforeSteps, |cx| retry.validate(&path, cx));
        }
    }

    fn check_steps(&mut self, steps: &[StepDef]) {
        let path = FlowPath::root().key("steps");
        if self.is_empty_list("steps") {
            self.error(path.clone(), "a flow needs at least one step");
        }
        let source_ids: Vec<String> = self
            .step_ids
            .iter()
            .map(|id| id.clone().unwrap_or_default())
            .collect();
        let all_ids: Vec<&str> = source_ids.iter().map(String::as_str).collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, id) in all_ids.iter().enumerate().filter(|(_, id)| !id.is_empty()) {
            if let Some(first) = seen.insert(id, i) {
                self.error(
                    path.index(i).key("id"),
                    format!("duplicate step id `{id}` (also used by steps[{first}])"),
                );
            }
        }
        let step_index = self.step_index.clone();
        for (step, &i) in steps.iter().zip(&step_index) {
            let scope = Scope::Step(StepScope {
                earlier: &all_ids[..i],
                all: &all_ids,
                current: &step.id,
            });
            let path = path.index(i);
            self.step_check(scope, |cx| crate::step::validate(step, &path, cx));
        }
    }
}

/// The position of the value at `path` in the tree, or of the deepest part of it that exists.
fn position(node: &Node, path: &FlowPath) -> Pos {
    let mut node = node;
    for seg in &path.0 {
        let next = match (seg, &node.value) {
            (Seg::Key(k), _) => node.get(k),
            (Seg::Index(i), NodeValue::Seq(items)) => items.get(*i),
            (Seg::Index(i), _) => node.get(&i.to_string()),
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node.pos
}

/// A webhook path must have one spelling: `x/../sec`, `./sec` or `sec/` would look like `sec`
/// to a person reading a log or a proxy rule while being another path to the router.
fn look_alike_path_problem(path: &str) -> Option<String> {
    let bad = path
        .split('/')
        .find(|segment| segment.is_empty() || *segment == "." || *segment == "..")?;
    let what = if bad.is_empty() {
        "an empty segment (a trailing or doubled `/`)".to_owned()
    } else {
        format!("a `{bad}` segment")
    };
    Some(format!(
        "webhook path `{path}` has {what}: write the path the way it is requested, e.g. `{}`",
        path.split('/')
            .filter(|s| !s.is_empty() && *s != "." && *s != "..")
            .collect::<Vec<_>>()
            .join("/")
    ))
}

#[cfg(test)]
mod look_alike_tests {
    use super::look_alike_path_problem;

    #[test]
    fn webhook_paths_have_one_spelling() {
        for good in ["sec", "shop/orders", "a.b/c~d", "v1.2/x"] {
            assert_eq!(look_alike_path_problem(good), None, "{good}");
        }
        for bad in ["x/../sec", "sec/", "a//b", "./sec", "a/./b"] {
            let problem = look_alike_path_problem(bad).expect(bad);
            assert!(problem.contains(bad), "{problem}");
        }
    }
}
