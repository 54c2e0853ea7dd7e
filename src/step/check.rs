//! What validating a step needs from the flow around it, and the checks every kind shares.
//!
//! Step rules live with their kind (`http::validate`, `notify::validate`, …), but a diagnostic
//! needs things only the flow knows: which step ids a template may refer to (the steps that run
//! earlier), the options that tighten validation (`FLOWD_HTTP_REQUIRE_HTTPS`), and the line and
//! column of a path in the source. `flow::validate` passes them down in a [`Context`]; the step
//! layer never sees the YAML tree (the dependency rule keeps `step` below `flow`). [`Findings`]
//! collects one step's diagnostics in the order they are found, with the shared checks: a
//! template compiles and refers only to what exists, a mapping's templates each in their place,
//! a secret is not written into the file.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::core::diagnostic::{Diagnostic, FlowPath, Pos, suggest};
use crate::secrets::Secrets;
use crate::template::{Template, TemplateError, TemplateList, TemplateStr};

/// The names a template may start with: the run context of a flow.
pub const CONTEXT_ROOTS: [&str; 10] = [
    "event", "entity", "previous", "changed", "input", "steps", "flow", "run", "secrets", "now",
];

/// The templates of a one-or-many value with the path of each (`secret` or `secret[i]`).
pub fn list_items<'a>(
    list: &'a TemplateList,
    path: &FlowPath,
) -> impl Iterator<Item = (&'a TemplateStr, FlowPath)> {
    let many = matches!(list, TemplateList::Many(_));
    let path = path.clone();
    list.items().iter().enumerate().map(move |(i, t)| {
        let at = if many { path.index(i) } else { path.clone() };
        (t, at)
    })
}

/// The fix every literal-credential warning names.
const STORE_IT: &str =
    "store it with `flowd secrets set NAME` and write `{{secrets.NAME}}` instead";

/// Query parameters whose literal value is a credential.
const CREDENTIAL_PARAMS: [&str; 10] = [
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
    "client_secret",
    "sig",
    "signature",
];

/// What a template's literal text (outside `{{…}}`) looks like when it holds a credential: a
/// Standard Webhooks or Stripe-style key, a PEM private key, a `Bearer`/`Basic` header with a
/// literal token, or a URL query parameter named like a credential with a literal value.
pub fn looks_like_credential(text: &str) -> Option<String> {
    let literal = literal_text(text);
    if literal.contains("whsec_") {
        return Some("a signing secret (`whsec_…`)".into());
    }
    if literal.contains("sk_live_") {
        return Some("a live API key (`sk_live_…`)".into());
    }
    if literal.contains("-----BEGIN") && literal.contains("PRIVATE KEY") {
        return Some("a PEM private key".into());
    }
    for scheme in ["Bearer ", "Basic "] {
        let lower = text.to_ascii_lowercase();
        if let Some(at) = lower.find(&scheme.to_ascii_lowercase()) {
            let token = text[at + scheme.len()..].trim_start();
            if !token.starts_with("{{") && token.len() >= 8 {
                return Some(format!("a literal `{}` credential", scheme.trim()));
            }
        }
    }
    let query = text.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let credential = CREDENTIAL_PARAMS.contains(&name.to_ascii_lowercase().as_str());
        (credential && !value.is_empty() && !value.contains("{{"))
            .then(|| format!("a credential in the URL's query (`{name}=`)"))
    })
}

/// The text outside `{{…}}`, each expression replaced by a space.
fn literal_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        out.push(' ');
        rest = match rest[start..].find("}}") {
            Some(end) => &rest[start + end + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// What validating a step (or a trigger's template) needs from the flow.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// Where the templates being checked are evaluated.
    pub scope: Scope<'a>,
    /// `FLOWD_HTTP_REQUIRE_HTTPS=true`: literal `http://` URLs are errors.
    pub require_https: bool,
    /// The line and column of a path in the source (or of the deepest part of it that exists).
    pub locate: &'a dyn Fn(&FlowPath) -> Pos,
    /// The names of the secrets set now, when known: a template reading another one is warned
    /// about (the step would fail with `missing_secret`).
    pub known_secrets: Option<&'a BTreeSet<String>>,
    /// The secrets' values, when known (the API): checks that need them (a client certificate
    /// and its key match) run; their messages never quote a value.
    pub secrets: Option<&'a Secrets>,
}

/// Where a template is evaluated, which decides what `steps.X` it may refer to.
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    /// Inside a step: may use earlier steps.
    Step(StepScope<'a>),
    /// A trigger's `if`, a webhook secret: evaluated before any step has run.
    BeforeSteps,
}

/// Which step a template belongs to, for checking `steps.X` references.
#[derive(Clone, Copy)]
pub struct StepScope<'a> {
    /// The ids of the steps before this one, in order.
    pub earlier: &'a [&'a str],
    /// Every step id of the flow, in order.
    pub all: &'a [&'a str],
    /// This step's id.
    pub current: &'a str,
}

/// Whether a value is secret-like (tokens, passwords, signing secrets): those written literally
/// in a flow file end up in git, so validation warns about them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    Yes,
    No,
}

/// The diagnostics found so far, each placed in the source through the [`Context`].
pub struct Findings<'a> {
    cx: &'a Context<'a>,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Findings<'a> {
    pub fn new(cx: &'a Context<'a>) -> Findings<'a> {
        Findings {
            cx,
            diagnostics: Vec::new(),
        }
    }

    pub fn error(&mut self, path: FlowPath, message: impl Into<String>) {
        let pos = (self.cx.locate)(&path);
        self.diagnostics.push(Diagnostic::error(path, pos, message));
    }

    pub fn warning(&mut self, path: FlowPath, message: impl Into<String>) {
        let pos = (self.cx.locate)(&path);
        self.diagnostics
            .push(Diagnostic::warning(path, pos, message));
    }

    /// Adds diagnostics found by another check, after those found so far.
    pub fn extend(&mut self, diagnostics: Vec<Diagnostic>) {
        self.diagnostics.extend(diagnostics);
    }

    pub fn finish(self) -> Vec<Diagnostic> {
        self.diagnostics
    }

    /// Checks a mapping value (map or body): every template inside it compiles and refers to
    /// what exists, each reported at its own place in the value.
    pub fn value(&mut self, value: &Value, path: FlowPath) {
        match value {
            Value::String(text) if text.contains("{{") => {
                self.template(&TemplateStr(text.clone()), path, Secret::No);
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.value(item, path.index(i));
                }
            }
            Value::Object(fields) => {
                for (key, item) in fields {
                    self.value(item, path.key(key));
                }
            }
            _ => {}
        }
    }

    /// Compiles one template and checks its references; returns whether it compiled.
    pub fn template(&mut self, text: &TemplateStr, path: FlowPath, secret: Secret) -> bool {
        match Template::compile(text.as_str()) {
            Ok(template) => {
                self.references(&template.references(), &path);
                self.secrets_set(&template, &path);
                // The specific description (a PEM private key, a `whsec_…`) first.
                if let Some(what) = looks_like_credential(text.as_str()) {
                    self.warning(
                        path,
                        format!("this looks like {what} written in the flow file; {STORE_IT}"),
                    );
                } else if secret == Secret::Yes
                    && !text.as_str().contains("{{")
                    && !text.as_str().is_empty()
                {
                    self.warning(
                        path,
                        format!("this secret is written in the flow file; {STORE_IT}"),
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

    /// What `text` renders to with only the secrets known (no run): `None` when the template
    /// reads anything else, or a secret that is not set, or the secrets are not known here.
    pub fn render_with_secrets(&self, text: &TemplateStr) -> Option<String> {
        let secrets = self.cx.secrets?;
        let template = Template::compile(text.as_str()).ok()?;
        let only_secrets = template
            .references()
            .iter()
            .all(|r| r.first().is_some_and(|root| root == "secrets"));
        let all_set = template.secret_names().iter().all(|n| secrets.is_set(n));
        (only_secrets && all_set)
            .then(|| template.render_text(&serde_json::json!({ "secrets": secrets.to_context() })))
    }

    /// Warns about each secret the template reads that is not set now.
    fn secrets_set(&mut self, template: &Template, path: &FlowPath) {
        let Some(known) = self.cx.known_secrets else {
            return;
        };
        for name in template.secret_names() {
            if !known.contains(&name) {
                self.warning(
                    path.clone(),
                    format!(
                        "the secret `{name}` is not set: set it with `flowd secrets set {name}` (or PUT /api/v1/secrets/{name}, or FLOWD_SECRET_{name}); until then this step fails with missing_secret"
                    ),
                );
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

    fn references(&mut self, references: &[Vec<String>], path: &FlowPath) {
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
                self.step_reference(step, path);
            }
        }
    }

    fn step_reference(&mut self, step: &str, path: &FlowPath) {
        let scope = match self.cx.scope {
            Scope::Step(scope) => scope,
            Scope::BeforeSteps => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_credentials_are_recognised_and_templates_are_not() {
        for (text, what) in [
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "signing secret"),
            ("sk_live_0123456789abcdef", "live API key"),
            ("Bearer abcdefgh12345678", "`Bearer`"),
            ("basic dXNlcjpwYXNzd29yZA==", "`Basic`"),
            (
                "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
                "PEM private key",
            ),
            ("https://api.example.com/x?api_key=abc123", "`api_key=`"),
            ("https://h/x?a=1&Token=t0k", "`Token=`"),
        ] {
            let found = looks_like_credential(text).unwrap_or_default();
            assert!(found.contains(what), "{text}: {found}");
        }
        for text in [
            "Bearer {{secrets.TOKEN}}",
            "{{secrets.WHSEC}}",
            "https://api.example.com/x?api_key={{secrets.KEY}}",
            "https://api.example.com/x?page=2",
            "Bearer short",
            "application/json",
        ] {
            assert_eq!(looks_like_credential(text), None, "{text}");
        }
    }
}
