//! The guarded HTTP client and one delivery attempt.
//!
//! One [`HttpClient`] (one reqwest client, one connection pool) serves every run; it is built
//! once with the [`NetPolicy`], the policy-enforcing resolver and a redirect policy that checks
//! each hop, and with proxies turned off (a proxy would resolve and connect on our behalf, out of
//! the guard's sight). [`HttpClient::attempt`] sends one rendered request and returns an
//! [`Outcome`] for the caller (which does the retry loop and the waiting) and an
//! [`AttemptRecord`] for people.
//!
//! Every attempt carries `Idempotency-Key`, and with a signing secret the Standard Webhooks
//! headers (see `headers.rs` for which header wins). A GET or DELETE with a body sends the body
//! anyway: some APIs expect it and flowd does not second-guess the flow. The per-attempt timeout
//! covers connecting, sending and reading the whole response. At most 64 KiB of a response body
//! are read; the rest is not downloaded (see `response.rs`). The response kept in the record and
//! the output are redacted like the request, because an echoing endpoint would otherwise put a
//! secret into stored output.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::header::HeaderMap;
use reqwest::{Url, redirect};
use serde_json::Value;

use super::body;
use super::guard::{self, GuardedResolver, NetPolicy};
use super::headers::{build_headers, header_pairs};
use super::record::{AttemptRecord, RecordedRequest, RecordedResponse, Redactor, truncate_body};
use super::response::{classify_response, dry_run_output, read_response};
use super::tls::{self, IdentityClients};
use super::{Delivery, Method, OutboundRequest};
use crate::metrics::HttpOutcome;

/// Redirects followed before an attempt fails.
pub const MAX_REDIRECTS: usize = 5;

/// The shared client: cheap to clone, connections are pooled and reused. Requests with a client
/// certificate go through a client of their own identity, built alike and kept (`tls.rs`).
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    policy: Arc<NetPolicy>,
    hosts: Arc<HashMap<String, Vec<IpAddr>>>,
    identities: Arc<IdentityClients>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub outcome: Outcome,
    pub record: AttemptRecord,
    /// How far the request got, for metrics.
    pub delivery: HttpOutcome,
}

/// What the runner does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx. `output` is `{status, headers, body}`.
    Succeeded { output: Value },
    /// Worth another attempt after the backoff (at least `retry_after` when the server said so).
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Another attempt would not help. `output` is set when a response came back.
    Fail {
        error: String,
        output: Option<Value>,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("too many redirects (more than {MAX_REDIRECTS})")]
struct TooManyRedirects;

/// A request checked and encoded, ready to send.
struct Prepared {
    client: reqwest::Client,
    method: reqwest::Method,
    url: Url,
    headers: HeaderMap,
    body: Option<String>,
}

impl HttpClient {
    pub fn new(policy: NetPolicy) -> Result<HttpClient, ClientError> {
        HttpClient::with_hosts(policy, HashMap::new())
    }

    /// Like [`HttpClient::new`], with a static host table consulted before DNS (tests, or an
    /// `/etc/hosts`-like override); its addresses are checked by the policy like any other.
    pub fn with_hosts(
        policy: NetPolicy,
        hosts: HashMap<String, Vec<IpAddr>>,
    ) -> Result<HttpClient, ClientError> {
        install_crypto_provider();
        let policy = Arc::new(policy);
        let hosts = Arc::new(hosts);
        let inner = builder(&policy, &hosts)
            .build()
            .map_err(ClientError::Build)?;
        Ok(HttpClient {
            inner,
            policy,
            hosts,
            identities: Arc::default(),
        })
    }

    /// The client that sends `req`: the shared one, or the one of its client certificate, built
    /// on first use off the async threads (it reads the system's roots and the key).
    async fn client_for(&self, req: &OutboundRequest) -> Result<reqwest::Client, String> {
        let Some(tls) = &req.tls else {
            return Ok(self.inner.clone());
        };
        if let Some(client) = self.identities.get(tls) {
            return Ok(client);
        }
        let (policy, hosts, identity) = (self.policy.clone(), self.hosts.clone(), tls.clone());
        let built = tokio::task::spawn_blocking(move || {
            tls::configure(builder(&policy, &hosts), &identity)?
                .build()
                .map_err(|e| format!("the client certificate cannot be used: {}", error_chain(&e)))
        })
        .await
        .map_err(|e| format!("the client certificate could not be loaded: {e}"))??;
        Ok(self.identities.keep(tls, built))
    }

    pub fn policy(&self) -> &NetPolicy {
        &self.policy
    }

    /// Sends `req` once. Never panics; every problem becomes a `Fail` or `Retry` outcome.
    pub async fn attempt(&self, req: &OutboundRequest, redactor: &Redactor) -> Attempt {
        self.attempt_in(Delivery::Send, req, redactor).await
    }

    /// Like [`HttpClient::attempt`]; with [`Delivery::DryRun`] the request is prepared and
    /// recorded exactly as it would be sent (checks, encoding, headers, signature, redaction),
    /// then not sent: the outcome is [`dry_run_output`].
    pub async fn attempt_in(
        &self,
        delivery: Delivery,
        req: &OutboundRequest,
        redactor: &Redactor,
    ) -> Attempt {
        let started_at = Utc::now();
        let clock = Instant::now();
        let prepared = match self.client_for(req).await {
            Ok(client) => self.prepare(client, req, started_at.timestamp()),
            Err(error) => Err(error),
        };
        let (outcome, request, response, reached) = match prepared {
            Err(error) => (
                fail(error),
                unsent_record(req, redactor),
                None,
                HttpOutcome::NotSent,
            ),
            Ok(prepared) => {
                let request = sent_record(req.method, &prepared, redactor);
                let (outcome, response, reached) = match delivery {
                    Delivery::Send => self.send(req.timeout, prepared, redactor).await,
                    Delivery::DryRun => (
                        Outcome::Succeeded {
                            output: dry_run_output(),
                        },
                        None,
                        HttpOutcome::NotSent,
                    ),
                };
                (outcome, request, response, reached)
            }
        };
        let outcome = redact_outcome(outcome, redactor);
        let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(
            method = req.method.as_str(),
            url = %request.url,
            status = response.as_ref().map(|r| r.status),
            duration_ms,
            "HTTP attempt finished."
        );
        let record = AttemptRecord {
            error: outcome_error(&outcome),
            request,
            response,
            started_at,
            finished_at: Utc::now(),
            duration_ms,
        };
        Attempt {
            outcome,
            record,
            delivery: reached,
        }
    }

    fn prepare(
        &self,
        client: reqwest::Client,
        req: &OutboundRequest,
        timestamp: i64,
    ) -> Result<Prepared, String> {
        let url = self.target_url(req)?;
        let body = match &req.body {
            Some(value) => body::encode(req.format, value).map_err(|e| e.to_string())?,
            None => None,
        };
        let headers = build_headers(req, body.as_ref(), timestamp)?;
        Ok(Prepared {
            client,
            method: reqwest_method(req.method),
            url,
            headers,
            body: body.map(|b| b.text),
        })
    }

    /// Parses the URL, applies the policy's pre-connect checks and appends the query.
    fn target_url(&self, req: &OutboundRequest) -> Result<Url, String> {
        let raw = req.url.trim();
        let mut url = Url::parse(raw).map_err(|e| format!("invalid URL \"{raw}\": {e}"))?;
        self.policy.check_url(&url).map_err(|e| e.to_string())?;
        if !req.query.is_empty() {
            url.query_pairs_mut().extend_pairs(req.query.iter());
        }
        Ok(url)
    }

    async fn send(
        &self,
        timeout: Duration,
        prepared: Prepared,
        redactor: &Redactor,
    ) -> (Outcome, Option<RecordedResponse>, HttpOutcome) {
        let mut builder = prepared
            .client
            .request(prepared.method, prepared.url)
            .headers(prepared.headers);
        if let Some(body) = prepared.body {
            builder = builder.body(body);
        }
        let exchange = async move { read_response(builder.send().await?).await };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => (
                retry(format!("timed out after {timeout:?}"), None),
                None,
                HttpOutcome::Timeout,
            ),
            Ok(Err(error)) => (classify_error(&error), None, delivery_of_error(&error)),
            Ok(Ok(received)) => {
                let (outcome, response) = classify_response(received, redactor);
                let delivery = match outcome {
                    Outcome::Succeeded { .. } => HttpOutcome::Success,
                    Outcome::Retry { .. } | Outcome::Fail { .. } => HttpOutcome::HttpError,
                };
                (outcome, response, delivery)
            }
        }
    }
}

/// Every client is built alike: the guarded resolver, checked redirects, no proxy.
fn builder(
    policy: &Arc<NetPolicy>,
    hosts: &HashMap<String, Vec<IpAddr>>,
) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(GuardedResolver::new(policy.clone(), hosts.clone()))
        .redirect(redirect_policy(policy.clone()))
        .no_proxy()
        // One request per attempt: the runner owns retries, with backoff and a record each.
        .retry(reqwest::retry::never())
        .pool_idle_timeout(Duration::from_secs(60))
}

/// reqwest falls back to aws-lc-rs, which needs a C toolchain; flowd ships ring instead.
/// Installing is process-wide and idempotent; losing a race to another installer is fine.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_some() {
        return;
    }
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("A rustls crypto provider was installed concurrently.");
    }
}

/// Follows at most [`MAX_REDIRECTS`] hops, each to a URL that passes the same checks as the
/// first request. Host names of later hops go through the guarded resolver as usual.
fn redirect_policy(policy: Arc<NetPolicy>) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(TooManyRedirects);
        }
        match policy.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    })
}

fn reqwest_method(method: Method) -> reqwest::Method {
    match method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

fn sent_record(method: Method, prepared: &Prepared, redactor: &Redactor) -> RecordedRequest {
    let body = prepared
        .body
        .as_deref()
        .map(|text| truncate_body(redactor.redact(text).as_bytes()));
    RecordedRequest {
        method,
        url: redactor.redact_url(&prepared.url),
        headers: redactor.redact_headers(&header_pairs(&prepared.headers)),
        truncated: body.as_ref().is_some_and(|(_, cut)| *cut),
        body: body.map(|(text, _)| text),
    }
}

/// The record of a request that failed before it could be built: what the flow asked for.
fn unsent_record(req: &OutboundRequest, redactor: &Redactor) -> RecordedRequest {
    RecordedRequest {
        method: req.method,
        url: Url::parse(&req.url)
            .map(|url| redactor.redact_url(&url))
            .unwrap_or_else(|_| redactor.redact(&req.url)),
        headers: redactor.redact_headers(&req.headers),
        body: None,
        truncated: false,
    }
}

/// Transport errors: a policy refusal or a redirect problem fails; everything else (refused or
/// reset connections, DNS failures, broken responses) may pass on a later attempt.
fn classify_error(error: &reqwest::Error) -> Outcome {
    if let Some(refusal) = guard::find_refusal(error) {
        return fail(refusal.to_string());
    }
    let message = error_chain(error);
    // A refused certificate stays refused until the configuration or the secrets change.
    if let Some(failure) = tls::handshake_failure(error) {
        return fail(failure);
    }
    if error.is_builder() || error.is_redirect() {
        fail(message)
    } else {
        retry(message, None)
    }
}

/// How far a request that ended in a transport error got: the policy refused it before
/// connecting, redirects went wrong after an answer, or the connection failed.
fn delivery_of_error(error: &reqwest::Error) -> HttpOutcome {
    if guard::find_refusal(error).is_some() || error.is_builder() {
        HttpOutcome::NotSent
    } else if error.is_redirect() {
        HttpOutcome::HttpError
    } else if error.is_timeout() {
        HttpOutcome::Timeout
    } else {
        HttpOutcome::ConnectionError
    }
}

/// The error and its causes, joined: reqwest's top-level message alone says little.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Many errors repeat their cause in their own message.
        if !parts.last().is_some_and(|last| last.ends_with(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

fn fail(error: String) -> Outcome {
    Outcome::Fail {
        error,
        output: None,
    }
}

fn retry(error: String, retry_after: Option<Duration>) -> Outcome {
    Outcome::Retry { error, retry_after }
}

/// Error texts quote URLs and header names, which may carry secrets.
fn redact_outcome(outcome: Outcome, redactor: &Redactor) -> Outcome {
    match outcome {
        Outcome::Succeeded { output } => Outcome::Succeeded {
            output: redactor.redact_value(&output),
        },
        Outcome::Retry { error, retry_after } => Outcome::Retry {
            error: redactor.redact(&error),
            retry_after,
        },
        Outcome::Fail { error, output } => Outcome::Fail {
            error: redactor.redact(&error),
            output: output.map(|v| redactor.redact_value(&v)),
        },
    }
}

fn outcome_error(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Succeeded { .. } => None,
        Outcome::Retry { error, .. } | Outcome::Fail { error, .. } => Some(error.clone()),
    }
}

#[cfg(test)]
mod tests;
