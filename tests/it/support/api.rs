//! A client for one engine's REST API, used by every integration test that talks to an engine:
//! over HTTP to a `flowd serve` process or a live server in this process ([`Api::new`]), or
//! through an in-process engine's router with `oneshot`, without a socket ([`Api::in_process`]).
//! The same calls and the same answers either way, so a test reads alike on both.
//!
//! Every request has a deadline ([`REQUEST_TIMEOUT`]): a regression that hangs the engine fails
//! the test instead of hanging it. Errors are `String`s ready for a failure message. One `Api`
//! family shares one `reqwest::Client`: a process-wide client would outlive the test's tokio
//! runtime, and reqwest's pooled connections must not be reused from another runtime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Per request: generous, because a loaded engine answers slowly but must still answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between polling rounds; short, since the deadline, not the pause, bounds the wait.
const POLL: Duration = Duration::from_millis(100);
/// Run lookups in flight at once while polling many runs.
const POLL_CONCURRENCY: usize = 16;

/// Run statuses after which nothing changes any more.
pub const TERMINAL: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// What `POST /api/v1/events` answered for one event.
#[derive(Clone, Debug)]
pub struct EventAck {
    pub event_id: String,
    pub runs: Vec<String>,
}

/// One answer: status, headers and the whole body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`Null` when empty); `Err` when it is not JSON.
    pub fn json(&self) -> Result<Value, String> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "a {} answer is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as JSON, where an empty body is an error too.
    pub fn json_strict(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "a {} answer is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Where requests go.
#[derive(Clone)]
enum Target {
    /// A server on a socket, `http://127.0.0.1:PORT`.
    Http {
        client: reqwest::Client,
        base_url: String,
    },
    /// The router of an engine in this process.
    Router(Router),
}

/// A client for one engine's REST API; cheap to clone into tasks.
#[derive(Clone)]
pub struct Api {
    target: Target,
}

impl Api {
    /// A client of the server at `base_url` (`http://127.0.0.1:PORT`).
    pub fn new(base_url: String) -> Api {
        Api {
            target: Target::Http {
                client: http_client(),
                base_url,
            },
        }
    }

    /// A client that calls `router` directly, as `tower::ServiceExt::oneshot` does.
    pub fn in_process(router: Router) -> Api {
        Api {
            target: Target::Router(router),
        }
    }

    /// Sends `request`, whose URI is a path and query (`/api/v1/runs?limit=5`), and reads the
    /// whole answer. `Err` when no answer comes: a refused or dropped connection, or none
    /// within [`REQUEST_TIMEOUT`].
    pub async fn send(&self, request: Request<Vec<u8>>) -> Result<Answer, String> {
        let what = format!("{} {}", request.method(), request.uri());
        let answer = match &self.target {
            Target::Http { client, base_url } => {
                let (parts, body) = request.into_parts();
                let response = client
                    .request(parts.method, format!("{base_url}{}", parts.uri))
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("{what}: {}", error_chain(&e)))?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await.map_err(|e| {
                    format!("{what}: reading a {status} answer: {}", error_chain(&e))
                })?;
                Answer {
                    status,
                    headers,
                    body,
                }
            }
            Target::Router(router) => {
                let call = async {
                    let response = router
                        .clone()
                        .oneshot(request.map(Body::from))
                        .await
                        .map_err(|e| format!("{what}: {e}"))?;
                    let (parts, body) = response.into_parts();
                    let body = axum::body::to_bytes(body, usize::MAX)
                        .await
                        .map_err(|e| format!("{what}: reading a {} answer: {e}", parts.status))?;
                    Ok::<_, String>(Answer {
                        status: parts.status,
                        headers: parts.headers,
                        body,
                    })
                };
                tokio::time::timeout(REQUEST_TIMEOUT, call)
                    .await
                    .map_err(|_| format!("{what}: no answer within {REQUEST_TIMEOUT:?}"))??
            }
        };
        Ok(answer)
    }

    /// `method path` with an optional body `(content type, bytes)` and further headers.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some((content_type, body)) => {
                request = request.header(
                    CONTENT_TYPE,
                    HeaderValue::from_str(content_type).map_err(|e| e.to_string())?,
                );
                body.to_vec()
            }
            None => Vec::new(),
        };
        let request = request.body(body).map_err(|e| format!("{path}: {e}"))?;
        self.send(request).await
    }

    /// Any request: `body` is `(content type, text)`. Answers the status and the JSON body
    /// (`Null` when empty); `Err` when the server cannot be reached or the body is not JSON.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> Result<(StatusCode, Value), String> {
        let body = body.map(|(content_type, text)| (content_type, text.as_bytes()));
        let answer = self.call(method, path, body, &[]).await?;
        Ok((answer.status, answer.json()?))
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, String> {
        match self.request("GET", path, None).await? {
            (StatusCode::OK, body) => Ok(body),
            (status, body) => Err(format!("GET {path} answered {status}: {body}")),
        }
    }

    /// Posts events (a JSON array) and returns one acknowledgement per event, in order.
    /// `Err` for anything but a 202 with the documented body, including a connection that broke
    /// because the process died: such events count as not acknowledged.
    pub async fn post_events(&self, events: &[Value]) -> Result<Vec<EventAck>, String> {
        let body = serde_json::to_vec(events).map_err(|e| e.to_string())?;
        let answer = self
            .call(
                "POST",
                "/api/v1/events",
                Some(("application/json", &body)),
                &[],
            )
            .await?;
        let status = answer.status;
        let answer = answer.json()?;
        if status != StatusCode::ACCEPTED {
            return Err(format!("POST /api/v1/events answered {status}: {answer}"));
        }
        let items = answer["items"]
            .as_array()
            .ok_or_else(|| format!("POST /api/v1/events: no items in {answer}"))?;
        if items.len() != events.len() {
            return Err(format!(
                "POST /api/v1/events: {} items for {} events: {answer}",
                items.len(),
                events.len()
            ));
        }
        items
            .iter()
            .map(|item| {
                let event_id = item["event_id"].as_str();
                let runs = item["runs"].as_array().map(|runs| {
                    runs.iter()
                        .map(|r| r.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                });
                match (event_id, runs) {
                    (Some(event_id), Some(Some(runs))) => Ok(EventAck {
                        event_id: event_id.to_owned(),
                        runs,
                    }),
                    _ => Err(format!("POST /api/v1/events: malformed item {item}")),
                }
            })
            .collect()
    }

    /// The run with its steps, or `None` for a 404.
    pub async fn get_run(&self, id: &str) -> Result<Option<Value>, String> {
        let path = format!("/api/v1/runs/{id}");
        let (status, answer) = self.request("GET", &path, None).await?;
        match status {
            StatusCode::OK => Ok(Some(answer)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(format!("GET {path} answered {status}: {answer}")),
        }
    }

    /// `PUT /api/v1/secrets/{name}` with `value`; the secret as listed, when the answer is 200.
    pub async fn put_secret(&self, name: &str, value: &str) -> Result<Value, String> {
        let path = format!("/api/v1/secrets/{name}");
        let body = serde_json::json!({ "value": value }).to_string();
        match self
            .request("PUT", &path, Some(("application/json", &body)))
            .await?
        {
            (StatusCode::OK, answer) => Ok(answer),
            (status, answer) => Err(format!("PUT {path} answered {status}: {answer}")),
        }
    }

    /// Starts a run of `flow` with `POST /api/v1/flows/{flow}/trigger` and no input; its id.
    pub async fn trigger(&self, flow: &str) -> Result<String, String> {
        let path = format!("/api/v1/flows/{flow}/trigger");
        match self
            .request("POST", &path, Some(("application/json", "{}")))
            .await?
        {
            (StatusCode::ACCEPTED, answer) => answer["run_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("POST {path} answered no run id: {answer}")),
            (status, answer) => Err(format!("POST {path} answered {status}: {answer}")),
        }
    }

    /// Every run (all pages of `GET /api/v1/runs`), optionally with a `status` filter.
    pub async fn list_runs(&self, status: Option<&str>) -> Result<Vec<Value>, String> {
        let mut runs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", "500");
            if let Some(status) = status {
                query.append_pair("status", status);
            }
            if let Some(cursor) = &cursor {
                query.append_pair("cursor", cursor);
            }
            let path = format!("/api/v1/runs?{}", query.finish());
            let (code, answer) = self.request("GET", &path, None).await?;
            if code != StatusCode::OK {
                return Err(format!("GET {path} answered {code}: {answer}"));
            }
            let items = answer["items"]
                .as_array()
                .ok_or_else(|| format!("GET {path}: no items in {answer}"))?;
            runs.extend(items.iter().cloned());
            match answer["next_cursor"].as_str() {
                Some(next) if !items.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(runs),
            }
        }
    }

    /// Polls one run until `predicate` holds for it; returns that snapshot.
    pub async fn wait_for_run(
        &self,
        id: &str,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(run) = self.get_run(id).await? {
                if predicate(&run) {
                    return Ok(run);
                }
                last = Some(run);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "run {id} did not reach the expected state within {timeout:?}; last seen: {}",
                    last.map_or_else(|| "404".to_owned(), |r| r.to_string())
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until every run in `ids` is terminal and returns each one's terminal snapshot
    /// (final, since a terminal run does not change). Only runs not yet seen terminal are asked
    /// for again, so the polling load shrinks as runs finish.
    pub async fn wait_until_all_terminal(
        &self,
        ids: &[String],
        timeout: Duration,
    ) -> Result<HashMap<String, Value>, String> {
        let deadline = Instant::now() + timeout;
        let mut done: HashMap<String, Value> = HashMap::new();
        let mut open: Vec<String> = ids
            .iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let mut last_seen: HashMap<String, Value> = HashMap::new();
        loop {
            let mut still_open = Vec::new();
            for chunk in open.chunks(POLL_CONCURRENCY) {
                let mut lookups = JoinSet::new();
                for id in chunk {
                    let api = self.clone();
                    let id = id.clone();
                    lookups.spawn(async move {
                        let run = api.get_run(&id).await;
                        (id, run)
                    });
                }
                while let Some(joined) = lookups.join_next().await {
                    let (id, run) = joined.map_err(|e| format!("a run lookup panicked: {e}"))?;
                    match run? {
                        Some(run) if is_terminal(&run) => {
                            done.insert(id, run);
                        }
                        Some(run) => {
                            last_seen.insert(id.clone(), run);
                            still_open.push(id);
                        }
                        None => still_open.push(id),
                    }
                }
            }
            open = still_open;
            if open.is_empty() {
                return Ok(done);
            }
            if Instant::now() >= deadline {
                return Err(describe_open(&open, &last_seen, done.len(), timeout));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

pub fn is_terminal(run: &Value) -> bool {
    run["status"]
        .as_str()
        .is_some_and(|s| TERMINAL.contains(&s))
}

/// Counts of the runs that are still open by status, and a few examples with their steps.
fn describe_open(
    open: &[String],
    last_seen: &HashMap<String, Value>,
    finished: usize,
    timeout: Duration,
) -> String {
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for id in open {
        let status = last_seen
            .get(id)
            .and_then(|r| r["status"].as_str())
            .unwrap_or("404 (not found)");
        *by_status.entry(status.to_owned()).or_insert(0) += 1;
    }
    let mut text = format!(
        "{} of {} runs still not terminal after {timeout:?}; by status: {by_status:?}",
        open.len(),
        open.len() + finished
    );
    for id in open.iter().take(5) {
        let steps = last_seen.get(id).map_or_else(String::new, |run| {
            run["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| format!("{}={}", s["id"], s["status"]))
                .collect::<Vec<_>>()
                .join(" ")
        });
        let status = last_seen
            .get(id)
            .map_or("?", |r| r["status"].as_str().unwrap_or("?"));
        text.push_str(&format!("\n  run {id}: {status}; steps: {steps}"));
    }
    text
}

/// One client per `Api` family: no proxy (the engine is on loopback) and a timeout per
/// request, so a hung engine fails the test instead of hanging it.
pub fn http_client() -> reqwest::Client {
    // reqwest is built without a default rustls provider (flowd ships ring); the tests speak
    // plain HTTP, but building a client still needs one installed.
    if rustls::crypto::CryptoProvider::get_default().is_none()
        && let Err(_lost_race) = rustls::crypto::ring::default_provider().install_default()
    {
        eprintln!("another thread installed a rustls crypto provider first; using that one");
    }
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("build the test HTTP client")
}

/// reqwest's top-level message ("error sending request") hides the cause; show the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
