//! The `http` step: one HTTP request per attempt, retried with backoff until the target answers
//! 2xx. Output: `{status, headers, body}`. Here: the configuration, its rules (`validate`), its
//! compilation, and rendering one attempt into an `OutboundRequest` that `crate::outbound` sends
//! (guard, signing, encoding and recording live there).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::diagnostic::{Diagnostic, FlowPath};
use crate::core::duration::Duration;
use crate::outbound::tls::{self, ClientTls, TlsProblem};
use crate::outbound::{Credentials, DEFAULT_TIMEOUT, OutboundRequest};
pub use crate::outbound::{Format, Method};
use crate::step::check::{Context, Findings, Secret, list_items};
use crate::step::retry::{Retry, RetryPolicy};
use crate::step::{Attempt, StepCall, StepEnv};
use crate::template::{CompiledValue, Template, TemplateList, TemplateStr, compile_text};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// GET, POST, PUT, PATCH or DELETE. Default POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// The target URL.
    pub url: TemplateStr,
    /// Request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, TemplateStr>>,
    /// Query parameters, URL-encoded and appended to the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<BTreeMap<String, TemplateStr>>,
    /// Basic or bearer authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// The request body: any mapping value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    /// How the body is encoded: json (default), form, xml or text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Per attempt; default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Overrides the flow's `settings.retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Sign the request with a Standard Webhooks signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<Sign>,
    /// Present a client certificate (two-way TLS, mutual TLS) to an https target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    /// HTTP basic authentication.
    Basic(BasicAuth),
    /// A bearer token: `Authorization: Bearer <token>`.
    Bearer(TemplateStr),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: TemplateStr,
    pub password: TemplateStr,
}

/// The body: any value; strings may hold templates.
pub type Body = crate::step::map::MapConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sign {
    /// A `whsec_…` secret, usually `{{secrets.NAME}}`; a list during a key rotation: every key
    /// signs, one `v1,…` each in `webhook-signature`.
    pub secret: TemplateList,
}

/// A client certificate and a private CA to trust: PEM texts, usually `{{secrets.NAME}}` each.
/// `client_cert` and `client_key` go together; `ca` may stand alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The client certificate in PEM (the certificate first, then any intermediates), usually
    /// `{{secrets.NAME}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<TemplateStr>,
    /// Its private key in PEM (PKCS#8, RSA or EC): `{{secrets.NAME}}`, never written in the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<TemplateStr>,
    /// PEM certificates of a private CA to trust for the target's certificate, besides the
    /// system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<TemplateStr>,
}

/// Checks an `http` step at `path` (`steps[i].http`): its templates, that the URL can be one,
/// header names, that a literal body fits its format, the timeout and the retry policy.
pub fn validate(http: &HttpConfig, path: &FlowPath, cx: &Context<'_>) -> Vec<Diagnostic> {
    let mut found = Findings::new(cx);
    if found.template(&http.url, path.key("url"), Secret::No) {
        check_url(&mut found, &http.url, path.key("url"), cx.require_https);
    }
    for (map, key) in [(&http.headers, "headers"), (&http.query, "query")] {
        for (name, value) in map.iter().flatten() {
            found.template(value, path.key(key).key(name), Secret::No);
        }
    }
    for name in http.headers.iter().flat_map(|h| h.keys()) {
        if name.is_empty() || !name.bytes().all(is_header_name_byte) {
            found.error(
                path.key("headers").key(name),
                format!("`{name}` is not a valid header name"),
            );
        }
    }
    match &http.auth {
        Some(Auth::Basic(basic)) => {
            let auth = path.key("auth").key("basic");
            found.template(&basic.username, auth.key("username"), Secret::No);
            found.template(&basic.password, auth.key("password"), Secret::Yes);
        }
        Some(Auth::Bearer(token)) => {
            found.template(token, path.key("auth").key("bearer"), Secret::Yes);
        }
        None => {}
    }
    if let Some(body) = &http.body {
        found.value(&body.0, path.key("body"));
        check_body_format(&mut found, &body.0, http.format.unwrap_or_default(), path);
    }
    if let Some(sign) = &http.sign {
        let secret_path = path.key("sign").key("secret");
        if sign.secret.items().is_empty() {
            found.error(secret_path.clone(), "list at least one signing secret");
        }
        for (secret, at) in list_items(&sign.secret, &secret_path) {
            found.template(secret, at, Secret::Yes);
        }
    }
    if let Some(tls) = &http.tls {
        check_tls(&mut found, tls, &path.key("tls"));
    }
    if http.timeout.is_some_and(|t| t.as_millis() == 0) {
        found.error(
            path.key("timeout"),
            "the attempt timeout must be longer than 0",
        );
    }
    if let Some(retry) = &http.retry {
        found.extend(retry.validate(&path.key("retry"), cx));
    }
    found.finish()
}

/// Checks a client certificate's templates and, when the secrets it reads are known here, that
/// the certificate and key parse and match (a warning: secrets change at run time, and a step
/// with a bad identity fails its attempt with the same message).
fn check_tls(found: &mut Findings<'_>, tls: &Tls, path: &FlowPath) {
    match (&tls.client_cert, &tls.client_key, &tls.ca) {
        (Some(_), None, _) => found.error(
            path.key("client_cert"),
            "`client_cert` needs `client_key`, its private key (`{{secrets.NAME}}`)",
        ),
        (None, Some(_), _) => found.error(
            path.key("client_key"),
            "`client_key` needs `client_cert`, the certificate it belongs to",
        ),
        (None, None, None) => found.error(
            path.clone(),
            "`tls` needs `client_cert` and `client_key`, or `ca`, or all three",
        ),
        _ => {}
    }
    let parts = [
        (&tls.client_cert, "client_cert", Secret::No),
        (&tls.client_key, "client_key", Secret::Yes),
        (&tls.ca, "ca", Secret::No),
    ];
    let mut compiled = true;
    for (text, key, secret) in parts {
        if let Some(text) = text {
            compiled &= found.template(text, path.key(key), secret);
        }
    }
    // Checked now only when every part is known without a run; otherwise at each attempt.
    let render = |text: &Option<TemplateStr>| match text {
        Some(text) => found.render_with_secrets(text).map(Some),
        None => Some(None),
    };
    let (Some(cert), Some(key), Some(ca), true) = (
        render(&tls.client_cert),
        render(&tls.client_key),
        render(&tls.ca),
        compiled,
    ) else {
        return;
    };
    let identity = ClientTls {
        identity: cert.zip(key),
        ca,
    };
    if let Err(problem) = tls::check(&identity) {
        let at = match problem {
            TlsProblem::NoCertificate
            | TlsProblem::BadCertificatePem(_)
            | TlsProblem::UnreadableCertificate(_) => "client_cert",
            TlsProblem::NoCaCertificate | TlsProblem::BadCaPem(_) => "ca",
            _ => "client_key",
        };
        found.warning(
            path.key(at),
            format!("{problem}; until it is fixed every attempt of this step fails"),
        );
    }
}

/// Checks what can be known of a URL before templates render: its scheme.
fn check_url(found: &mut Findings<'_>, url: &TemplateStr, path: FlowPath, require_https: bool) {
    let text = url.as_str();
    let literal = text.split("{{").next().unwrap_or_default();
    let Some((scheme, _)) = literal.split_once("://") else {
        if !text.contains("{{") {
            found.error(
                path,
                format!("`{text}` is not a URL: it must start with `https://` or `http://`"),
            );
        }
        return;
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {}
        "http" if require_https => found.error(
            path,
            format!("`{text}` uses http, but FLOWD_HTTP_REQUIRE_HTTPS is set: use an https:// URL"),
        ),
        "http" => {}
        other => found.error(
            path,
            format!("`{other}` URLs are not supported: use https:// or http://"),
        ),
    }
}

/// Form bodies are flat key/value pairs and text bodies are strings; catch literal misfits.
fn check_body_format(found: &mut Findings<'_>, body: &Value, format: Format, path: &FlowPath) {
    match (format, body) {
        (Format::Form, Value::Object(fields)) => {
            for (key, value) in fields {
                if value.is_object() || value.is_array() {
                    found.error(
                        path.key("body").key(key),
                        "`format: form` sends flat key/value pairs: this value is a mapping or a list",
                    );
                }
            }
        }
        (Format::Form | Format::Xml, Value::Array(_) | Value::Number(_) | Value::Bool(_)) => found
            .error(
                path.key("body"),
                format!("`format: {}` needs a mapping as the body", format.as_str()),
            ),
        (Format::Text, Value::Object(_) | Value::Array(_)) => found.error(
            path.key("body"),
            "`format: text` sends the body as it is: write it as a string (or use `format: json`)",
        ),
        _ => {}
    }
}

fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An `http` step compiled once per flow revision.
#[derive(Debug)]
pub struct HttpStep {
    method: Method,
    url: Template,
    headers: Vec<(String, Template)>,
    query: Vec<(String, Template)>,
    auth: Option<CompiledAuth>,
    body: Option<CompiledValue>,
    format: Format,
    timeout: std::time::Duration,
    sign: Vec<Template>,
    tls: Option<CompiledTls>,
    pub retry: Retry,
}

#[derive(Debug)]
struct CompiledTls {
    identity: Option<(Template, Template)>,
    ca: Option<Template>,
}

impl CompiledTls {
    fn compile(tls: &Tls) -> Result<CompiledTls, String> {
        let compile =
            |t: &Option<TemplateStr>| t.as_ref().map(|t| compile_text(t.as_str())).transpose();
        Ok(CompiledTls {
            identity: compile(&tls.client_cert)?.zip(compile(&tls.client_key)?),
            ca: compile(&tls.ca)?,
        })
    }

    /// The identity of one attempt. Not added to the redacted texts: it never appears in a
    /// request or response, and the secrets it comes from are redacted anyway.
    fn render(&self, cx: &Value) -> ClientTls {
        ClientTls {
            identity: self
                .identity
                .as_ref()
                .map(|(cert, key)| (cert.render_text(cx), key.render_text(cx))),
            ca: self.ca.as_ref().map(|ca| ca.render_text(cx)),
        }
    }
}

#[derive(Debug)]
enum CompiledAuth {
    Basic(Template, Template),
    Bearer(Template),
}

impl HttpStep {
    pub fn compile(
        config: &HttpConfig,
        flow_retry: Option<&RetryPolicy>,
    ) -> Result<HttpStep, String> {
        let pairs = |map: &Option<BTreeMap<String, TemplateStr>>| {
            map.iter()
                .flatten()
                .map(|(k, v)| Ok((k.clone(), compile_text(v.as_str())?)))
                .collect::<Result<Vec<_>, String>>()
        };
        let auth = match &config.auth {
            Some(Auth::Basic(b)) => Some(CompiledAuth::Basic(
                compile_text(b.username.as_str())?,
                compile_text(b.password.as_str())?,
            )),
            Some(Auth::Bearer(t)) => Some(CompiledAuth::Bearer(compile_text(t.as_str())?)),
            None => None,
        };
        let body = config
            .body
            .as_ref()
            .map(|b| CompiledValue::compile(&b.0).map_err(|e| format!("{e:?}")))
            .transpose()?;
        Ok(HttpStep {
            method: config.method.unwrap_or_default(),
            url: compile_text(config.url.as_str())?,
            headers: pairs(&config.headers)?,
            query: pairs(&config.query)?,
            auth,
            body,
            format: config.format.unwrap_or_default(),
            timeout: config.timeout.map_or(DEFAULT_TIMEOUT, |t| t.to_std()),
            sign: config
                .sign
                .as_ref()
                .map_or(Ok(Vec::new()), |s| s.secret.compile())?,
            tls: config.tls.as_ref().map(CompiledTls::compile).transpose()?,
            retry: Retry::resolve(config.retry.as_ref(), flow_retry),
        })
    }

    /// The request of one attempt, templates rendered against the run context.
    pub fn render(&self, call: &StepCall<'_>) -> OutboundRequest {
        self.render_marked(call).0
    }

    /// The request of one attempt, with what the templates that read secrets rendered: secret
    /// too, whatever helpers transformed it, so redacted wherever the request is recorded.
    pub fn render_marked(&self, call: &StepCall<'_>) -> (OutboundRequest, Vec<String>) {
        let cx = call.context;
        let derived = std::cell::RefCell::new(Vec::new());
        let text = |t: &Template| {
            let out = t.render_text(cx);
            if t.reads_secrets() {
                derived.borrow_mut().push(out.clone());
            }
            out
        };
        let body = self.body.as_ref().map(|b| {
            let rendered = b.render(cx);
            derived.borrow_mut().extend(b.secret_strings(&rendered));
            rendered
        });
        let request = OutboundRequest {
            method: self.method,
            url: text(&self.url),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
            query: self
                .query
                .iter()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
            auth: self.auth.as_ref().map(|a| match a {
                CompiledAuth::Basic(u, p) => Credentials::Basic {
                    username: text(u),
                    password: text(p),
                },
                CompiledAuth::Bearer(t) => Credentials::Bearer(text(t)),
            }),
            body,
            format: self.format,
            timeout: self.timeout,
            idempotency_key: call.idempotency_key(),
            sign_secrets: self.sign.iter().map(text).collect(),
            tls: self.tls.as_ref().map(|tls| tls.render(cx)),
        };
        (request, derived.into_inner())
    }

    /// Sends one attempt.
    pub async fn execute(&self, env: &StepEnv, call: &StepCall<'_>) -> Attempt {
        let (request, derived) = self.render_marked(call);
        let attempt = env.send(&request, &derived).await;
        env.metrics.http_attempt(call.flow_id, attempt.delivery);
        Attempt::from(attempt)
    }
}
