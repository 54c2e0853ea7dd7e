//! The `http` step: one HTTP request per attempt, retried with backoff until the target answers
//! 2xx. Output: `{status, headers, body}`.

pub mod retry;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::core::duration::Duration;
use crate::outbound::{Credentials, DEFAULT_TIMEOUT, OutboundRequest};
pub use crate::outbound::{Format, Method};
use crate::step::retry::{Retry, RetryPolicy};
use crate::step::{Attempt, StepCall, StepEnv};
use crate::template::{CompiledValue, Template, TemplateStr, compile_text};

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
    /// A `whsec_…` secret, usually `{{secrets.NAME}}`.
    pub secret: TemplateStr,
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
    sign: Option<Template>,
    pub retry: Retry,
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
                .map(|s| compile_text(s.secret.as_str()))
                .transpose()?,
            retry: Retry::resolve(config.retry.as_ref(), flow_retry),
        })
    }

    /// The request of one attempt, templates rendered against the run context.
    pub fn render(&self, call: &StepCall<'_>) -> OutboundRequest {
        let cx = call.context;
        let text = |t: &Template| t.render_text(cx);
        OutboundRequest {
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
            body: self.body.as_ref().map(|b| b.render(cx)),
            format: self.format,
            timeout: self.timeout,
            idempotency_key: call.idempotency_key(),
            sign_secret: self.sign.as_ref().map(text),
        }
    }

    /// Sends one attempt.
    pub async fn execute(&self, env: &StepEnv, call: &StepCall<'_>) -> Attempt {
        let attempt = env.send(&self.render(call)).await;
        env.metrics.http_attempt(call.flow_id, attempt.delivery);
        Attempt::from(attempt)
    }
}
