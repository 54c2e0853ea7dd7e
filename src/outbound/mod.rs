//! Outbound HTTP: everything flowd sends to other systems goes through here. The guarded client
//! ([`HttpClient`]), the SSRF guard that decides which addresses may be reached ([`guard`]),
//! Standard Webhooks signing and verifying ([`sign`]), the record of each attempt with secrets
//! redacted ([`record`]), body encoding ([`body`]) and what a response status means for the next
//! attempt ([`status`]). It sits below the step kinds: the `http` step and the chat channels of
//! `notify` send through it, and the webhook trigger verifies signatures with it, so none of
//! them reaches into another's internals.
//!
//! The interface is small: a caller renders its templates into an [`OutboundRequest`] and hands
//! it to [`HttpClient::attempt_in`], which sends it once and answers an [`Attempt`]: the
//! [`Outcome`] (succeeded, worth a retry, failed for good) and the redacted record for people.
//! Retrying, waiting and counting belong to the caller.

pub mod body;
pub mod client;
pub mod guard;
mod headers;
pub mod record;
mod response;
pub mod sign;
pub mod status;
pub mod tls;

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use client::{Attempt, ClientError, HttpClient, Outcome};

/// Default per-attempt timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

// `Method` and `Format` are also part of the flow format (the `http` step's `method:` and
// `format:`), so their JSON Schema is what `flowd schema` prints for those fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Form,
    Xml,
    Text,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Form => "form",
            Format::Xml => "xml",
            Format::Text => "text",
        }
    }
}

/// Whether requests are sent (`Send`, always in `flowd serve`) or only prepared and recorded as
/// they would be sent, then not sent (`DryRun`, for `flowd run --dry-run`). A dry run goes
/// through the same rendering, checks, encoding and redaction as a real attempt, so what it
/// shows is what would go out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Delivery {
    #[default]
    Send,
    DryRun,
}

/// One request with its templates rendered: what one attempt sends.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Appended to the URL's query (an existing query is kept).
    pub query: Vec<(String, String)>,
    pub auth: Option<Credentials>,
    pub body: Option<Value>,
    pub format: Format,
    /// Per attempt, from connecting to the end of the response.
    pub timeout: Duration,
    /// `<run_id>_<step_id>`: the same on every retry.
    pub idempotency_key: String,
    /// `whsec_…` secrets: sign with Standard Webhooks, once with each (key rotation).
    pub sign_secrets: Vec<String>,
    /// A client certificate to present (two-way TLS); `None`: the shared client, no identity.
    pub tls: Option<tls::ClientTls>,
}

impl OutboundRequest {
    /// A request without headers, query, credentials, body or signature, in JSON, with the
    /// default timeout; set the rest with struct update syntax.
    pub fn new(method: Method, url: String, idempotency_key: String) -> OutboundRequest {
        OutboundRequest {
            method,
            url,
            headers: Vec::new(),
            query: Vec::new(),
            auth: None,
            body: None,
            format: Format::Json,
            timeout: DEFAULT_TIMEOUT,
            idempotency_key,
            sign_secrets: Vec::new(),
            tls: None,
        }
    }
}

/// `Authorization` credentials, sent as the header flowd sets (it wins over a flow's own).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

// Debug output ends up in logs: credentials print as `***`.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"***")
                .finish(),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers.len())
            .field("query", &self.query.len())
            .field("auth", &self.auth)
            .field("format", &self.format)
            .field("timeout", &self.timeout)
            .field("idempotency_key", &self.idempotency_key)
            .field("signing_keys", &self.sign_secrets.len())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_credentials() {
        let request = OutboundRequest {
            auth: Some(Credentials::Basic {
                username: "ada".to_owned(),
                password: "hunter2".to_owned(),
            }),
            sign_secrets: vec!["whsec_c2VjcmV0".to_owned()],
            ..OutboundRequest::new(
                Method::Post,
                "http://127.0.0.1/".to_owned(),
                "run-1_push".to_owned(),
            )
        };
        let text = format!("{request:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("whsec_"),
            "{text}"
        );
    }
}
