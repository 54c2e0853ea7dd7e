//! Validation of one flow: parse the YAML, check its shape against the schema, then check the
//! rules a schema cannot express (ids, step references, templates, cron, URLs, how fields fit
//! together). Every problem is collected, not only the first, each with its position.

use std::collections::{HashMap, HashSet};

use crate::core::diagnostic::{Diagnostic, FlowPath, Pos, Seg, suggest};
use crate::flow::cron::{CronError, CronSchedule};
use crate::flow::model::{EntityAction, FLOW_ID_PATTERN, FlowDef, ScheduleTrigger, Trigger};
use crate::flow::schema::check_shape;
use crate::flow::yaml::{self, Node, NodeValue};
use crate::step::http::{Auth, Format, HttpConfig};
use crate::step::notify::{Channel, NotifyConfig};
use crate::step::{StepDef, StepKind};
use crate::template::TemplateStr;
use crate::template::{Template, TemplateError};

/// Largest flow source accepted, from a file or the API.
pub const MAX_FLOW_BYTES: usize = 1 << 20;

/// The names a template may start with: the run context of a flow.
pub const CONTEXT_ROOTS: [&str; 10] = [
    "event", "entity", "previous", "changed", "input", "steps", "flow", "run", "secrets", "now",
];

/// Settings that tighten validation. The command line's `Config` makes them once at start (the
/// engine keeps them); they follow the same settings as the `http` step's network policy.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `FLOWD_HTTP_REQUIRE_HTTPS=true`: literal `http://` URLs are errors.
    pub require_https: bool,
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
    let flow = (!diagnostics.iter().any(Diagnostic::is_error)).then_some(ValidFlow {
        id,
        name,
        def,
        id_pos,
        webhook_paths,
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
const FLOW_KEYS: [&str; 7] = [
    "id",
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
        let mut node = self.node;
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

    /// Whether the source has `key: []`; other shapes were reported by the shape check.
    fn is_empty_list(&self, key: &str) -> bool {
        matches!(self.node.get(key).map(|n| &n.value), Some(NodeValue::Seq(items)) if items.is_empty())
    }

    fn error(&mut self, path: FlowPath, message: impl Into<String>) {
        let pos = self.pos(&path);
        self.diagnostics.push(Diagnostic::error(path, pos, message));
    }

    fn warning(&mut self, path: FlowPath, message: impl Into<String>) {
        let pos = self.pos(&path);
        self.diagnostics
            .push(Diagnostic::warning(path, pos, message));
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
                        self.check_template(
                            condition,
                            path.key("if"),
                            TemplateUse::Trigger,
                            Secret::No,
                        );
                    }
                }
                Trigger::Manual(m) => {
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
                Trigger::Schedule(s) => self.check_schedule(&s.schedule, path.key("schedule")),
                Trigger::Webhook(w) => {
                    if let Some(secret) = &w.webhook.secret {
                        let secret_path = path.key("webhook").key("secret");
                        self.check_template(secret, secret_path, TemplateUse::Trigger, Secret::Yes);
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
        if settings.timeout.is_some_and(|t| t.as_millis() == 0) {
            self.error(path.key("timeout"), "the run timeout must be longer than 0");
        }
        if let Some(retry) = &settings.retry {
            self.check_retry(retry, path.key("retry"));
        }
    }

    fn check_retry(&mut self, retry: &crate::step::retry::RetryPolicy, path: FlowPath) {
        if let (Some(delay), Some(max)) = (retry.delay, retry.max_delay)
            && delay > max
        {
            self.error(
                path.key("delay"),
                format!("`delay` {delay} is longer than `max_delay` {max}"),
            );
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
            let scope = StepScope {
                earlier: &all_ids[..i],
                all: &all_ids,
                current: &step.id,
            };
            self.check_step(step, &path.index(i), &scope);
        }
    }

    fn check_step(&mut self, step: &StepDef, path: &FlowPath, scope: &StepScope<'_>) {
        if let Some(condition) = &step.condition {
            self.check_template(
                condition,
                path.key("if"),
                TemplateUse::Step(scope),
                Secret::No,
            );
        }
        let kinds = step.kinds();
        match kinds.as_slice() {
            [] => self.error(
                path.clone(),
                "a step needs one of `map`, `http`, `notify` or `delay`",
            ),
            [kind] => self.check_kind(*kind, path, scope),
            [first, second, ..] => self.error(
                path.key(second.name()),
                format!(
                    "a step does one thing: it has both `{}` and `{}`; split it into two steps",
                    first.name(),
                    second.name()
                ),
            ),
        }
    }

    fn check_kind(&mut self, kind: StepKind<'_>, path: &FlowPath, scope: &StepScope<'_>) {
        match kind {
            StepKind::Map(map) => self.check_value(&map.0, path.key("map"), scope),
            StepKind::Http(http) => self.check_http(http, &path.key("http"), scope),
            StepKind::Notify(notify) => self.check_notify(notify, &path.key("notify"), scope),
            StepKind::Delay(_) => {}
        }
    }

    fn check_http(&mut self, http: &HttpConfig, path: &FlowPath, scope: &StepScope<'_>) {
        let used = TemplateUse::Step(scope);
        if self.check_template(&http.url, path.key("url"), used, Secret::No) {
            self.check_url(&http.url, path.key("url"));
        }
        for (map, key) in [(&http.headers, "headers"), (&http.query, "query")] {
            for (name, value) in map.iter().flatten() {
                self.check_template(value, path.key(key).key(name), used, Secret::No);
            }
        }
        for name in http.headers.iter().flat_map(|h| h.keys()) {
            if name.is_empty() || !name.bytes().all(is_header_name_byte) {
                self.error(
                    path.key("headers").key(name),
                    format!("`{name}` is not a valid header name"),
                );
            }
        }
        match &http.auth {
            Some(Auth::Basic(basic)) => {
                let auth = path.key("auth").key("basic");
                self.check_template(&basic.username, auth.key("username"), used, Secret::No);
                self.check_template(&basic.password, auth.key("password"), used, Secret::Yes);
            }
            Some(Auth::Bearer(token)) => {
                self.check_template(token, path.key("auth").key("bearer"), used, Secret::Yes);
            }
            None => {}
        }
        if let Some(body) = &http.body {
            self.check_value(&body.0, path.key("body"), scope);
            self.check_body_format(&body.0, http.format.unwrap_or_default(), path);
        }
        if let Some(sign) = &http.sign {
            self.check_template(
                &sign.secret,
                path.key("sign").key("secret"),
                used,
                Secret::Yes,
            );
        }
        if http.timeout.is_some_and(|t| t.as_millis() == 0) {
            self.error(
                path.key("timeout"),
                "the attempt timeout must be longer than 0",
            );
        }
        if let Some(retry) = &http.retry {
            self.check_retry(retry, path.key("retry"));
        }
    }

    /// Checks what can be known of a URL before templates render: its scheme.
    fn check_url(&mut self, url: &TemplateStr, path: FlowPath) {
        let text = url.as_str();
        let literal = text.split("{{").next().unwrap_or_default();
        let Some((scheme, _)) = literal.split_once("://") else {
            if !text.contains("{{") {
                self.error(
                    path,
                    format!("`{text}` is not a URL: it must start with `https://` or `http://`"),
                );
            }
            return;
        };
        match scheme.to_ascii_lowercase().as_str() {
            "https" => {}
            "http" if self.options.require_https => self.error(
                path,
                format!(
                    "`{text}` uses http, but FLOWD_HTTP_REQUIRE_HTTPS is set: use an https:// URL"
                ),
            ),
            "http" => {}
            other => self.error(
                path,
                format!("`{other}` URLs are not supported: use https:// or http://"),
            ),
        }
    }

    /// Form bodies are flat key/value pairs and text bodies are strings; catch literal misfits.
    fn check_body_format(&mut self, body: &serde_json::Value, format: Format, path: &FlowPath) {
        use serde_json::Value;
        match (format, body) {
            (Format::Form, Value::Object(fields)) => {
                for (key, value) in fields {
                    if value.is_object() || value.is_array() {
                        self.error(
                            path.key("body").key(key),
                            "`format: form` sends flat key/value pairs: this value is a mapping or a list",
                        );
                    }
                }
            }
            (Format::Form | Format::Xml, Value::Array(_) | Value::Number(_) | Value::Bool(_)) => self.error(
                path.key("body"),
                format!("`format: {}` needs a mapping as the body", format_name(format)),
            ),
            (Format::Text, Value::Object(_) | Value::Array(_)) => self.error(
                path.key("body"),
                "`format: text` sends the body as it is: write it as a string (or use `format: json`)",
            ),
            _ => {}
        }
    }

    fn check_notify(&mut self, notify: &NotifyConfig, path: &FlowPath, scope: &StepScope<'_>) {
        let used = TemplateUse::Step(scope);
        let channel = notify.channel.as_str();
        match (notify.channel, &notify.to, &notify.url) {
            (Channel::Email, None, _) => {
                self.error(path.clone(), "`to` is required for `channel: email`")
            }
            (Channel::Slack | Channel::Discord, _, None) => self.error(
                path.clone(),
                format!("`url` (the incoming-webhook URL) is required for `channel: {channel}`"),
            ),
            _ => {}
        }
        if notify.to.is_some() && notify.channel != Channel::Email {
            self.error(
                path.key("to"),
                format!("`to` is for email only; `channel: {channel}` does not use it"),
            );
        }
        if notify.url.is_some() && !matches!(notify.channel, Channel::Slack | Channel::Discord) {
            self.error(
                path.key("url"),
                format!(
                    "`url` is for slack and discord only; `channel: {channel}` does not use it"
                ),
            );
        }
        if notify.subject.is_none() && notify.text.is_none() {
            self.error(path.clone(), "a notification needs a `subject` or a `text`");
        }
        for (value, key) in [
            (&notify.to, "to"),
            (&notify.subject, "subject"),
            (&notify.text, "text"),
        ] {
            if let Some(value) = value {
                self.check_template(value, path.key(key), used, Secret::No);
            }
        }
        if let Some(url) = &notify.url {
            self.check_template(url, path.key("url"), used, Secret::Yes);
        }
    }

    /// Checks a mapping value (map or body): every template inside it compiles and refers to
    /// what exists, each reported at its own place in the value.
    fn check_value(&mut self, value: &serde_json::Value, path: FlowPath, scope: &StepScope<'_>) {
        match value {
            serde_json::Value::String(text) if text.contains("{{") => {
                self.check_template(
                    &TemplateStr(text.clone()),
                    path,
                    TemplateUse::Step(scope),
                    Secret::No,
                );
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_value(item, path.index(i), scope);
                }
            }
            serde_json::Value::Object(fields) => {
                for (key, item) in fields {
                    self.check_value(item, path.key(key), scope);
                }
            }
            _ => {}
        }
    }

    /// Compiles one template and checks its references; returns whether it compiled.
    fn check_template(
        &mut self,
        text: &TemplateStr,
        path: FlowPath,
        used: TemplateUse<'_>,
        secret: Secret,
    ) -> bool {
        match Template::compile(text.as_str()) {
            Ok(template) => {
                self.check_references(&template.references(), &path, used);
                if secret == Secret::Yes
                    && !text.as_str().contains("{{")
                    && !text.as_str().is_empty()
                {
                    self.warning(
                        path,
                        "this secret is written in the flow file; put it in the environment as FLOWD_SECRET_<NAME> and write `{{secrets.NAME}}`",
                    );
                }
                true
            }
            Err(error) => {
                self.template_error(path, &error);
                false
            }
        }
    }

    fn template_error(&mut self, path: FlowPath, error: &TemplateError) {
        let message = if error.line > 1 {
            format!(
                "template error at line {}, column {} of the template: {}",
                error.line, error.column, error.message
            )
        } else {
            format!(
                "template error at column {} of the template: {}",
                error.column, error.message
            )
        };
        self.error(path, message);
    }

    fn check_references(
        &mut self,
        references: &[Vec<String>],
        path: &FlowPath,
        used: TemplateUse<'_>,
    ) {
        for reference in references {
            let Some(root) = reference.first() else {
                continue;
            };
            if !CONTEXT_ROOTS.contains(&root.as_str()) {
                let mut message =
                    format!("`{}` is not part of the run context", reference.join("."));
                match suggest(root, CONTEXT_ROOTS) {
                    Some(close) => message.push_str(&format!("; did you mean `{close}`?")),
                    None => message.push_str(&format!(" ({})", CONTEXT_ROOTS.join(", "))),
                }
                self.warning(path.clone(), message);
                continue;
            }
            if root == "steps"
                && let Some(step) = reference.get(1)
            {
                self.check_step_reference(step, path, used);
            }
        }
    }

    fn check_step_reference(&mut self, step: &str, path: &FlowPath, used: TemplateUse<'_>) {
        let scope = match used {
            TemplateUse::Step(scope) => scope,
            TemplateUse::Trigger => {
                self.error(
                    path.clone(),
                    format!("`steps.{step}` is not available here: no step has run when this is evaluated"),
                );
                return;
            }
        };
        if scope.earlier.contains(&step) {
            return;
        }
        let message = if step == scope.current {
            format!(
                "`steps.{step}` refers to this step itself; a step can only use the output of earlier steps"
            )
        } else if scope.all.contains(&step) {
            format!(
                "`steps.{step}` refers to a step that runs later; a step can only use the output of earlier steps"
            )
        } else {
            let mut m = format!("`steps.{step}` refers to a step that does not exist");
            if let Some(close) = suggest(step, scope.earlier.iter().copied()) {
                m.push_str(&format!("; did you mean `steps.{close}`?"));
            }
            m
        };
        self.error(path.clone(), message);
    }
}

/// Which step a template belongs to, for checking `steps.X` references.
struct StepScope<'a> {
    earlier: &'a [&'a str],
    all: &'a [&'a str],
    current: &'a str,
}

/// Where a template is used, which decides what it may refer to.
#[derive(Clone, Copy)]
enum TemplateUse<'a> {
    /// Inside a step: may use earlier steps.
    Step(&'a StepScope<'a>),
    /// A trigger's `if` or a webhook secret: evaluated before any step.
    Trigger,
}

/// Whether a value is secret-like (tokens, passwords, signing secrets): those written literally
/// in a flow file end up in git, so validation warns about them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Secret {
    Yes,
    No,
}

fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Json => "json",
        Format::Form => "form",
        Format::Xml => "xml",
        Format::Text => "text",
    }
}
