//! A local HTTP receiver for end-to-end tests: an axum server on `127.0.0.1:0` that records every
//! request it gets (method, path, headers, body, arrival instant, the status it chose) and answers
//! `200 {"ok":true}`. A test can make it answer 500 or 429 (with `Retry-After`) to the first N
//! requests, or hold every answer for a while, to exercise flowd's retries and to widen the window
//! in which a step is in flight when the engine is killed.
//!
//! It stands in for "the CRM" of a flow's `http` step, as svix's `tests/it/utils` receiver does,
//! so delivery guarantees are checked over a real socket and counted where they land.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How often `wait_for` looks at the recorded requests again.
const POLL: Duration = Duration::from_millis(20);

/// One request as the sink received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. `/deliver`.
    pub path: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// When the request reached the handler.
    pub at: Instant,
    /// The status the sink answered (or was answering when the client went away).
    pub status: u16,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.header("idempotency-key")
    }

    /// The body parsed as JSON, or `None` when it is not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether the sink accepted this request (answered 2xx): a delivery, not a failed attempt.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What the sink answers to the first `fail_first` requests.
#[derive(Clone, Copy, Debug)]
pub enum Failure {
    /// This status (e.g. 500) with `{"ok":false}`.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    TooManyRequests { retry_after_secs: u64 },
}

/// How the sink answers. The default accepts everything at once.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    /// How many requests, counted from the start of the sink, get `failure` instead of 200.
    pub fail_first: usize,
    pub failure: Failure,
    /// How long every answer is held back, to simulate a slow endpoint.
    pub delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            fail_first: 0,
            failure: Failure::Status(500),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    behaviour: Behaviour,
    /// Each answer waits `behaviour.delay` plus a varying part of up to this long.
    spread: Duration,
}

type Shared = Arc<Mutex<Inner>>;

/// A running sink; the server stops when this is dropped.
pub struct Sink {
    addr: SocketAddr,
    shared: Shared,
    server: JoinHandle<()>,
}

impl Sink {
    /// A sink that accepts everything at once.
    pub async fn start() -> Sink {
        Sink::start_with(Behaviour::default()).await
    }

    pub async fn start_with(behaviour: Behaviour) -> Sink {
        let shared: Shared = Arc::new(Mutex::new(Inner {
            requests: Vec::new(),
            behaviour,
            spread: Duration::ZERO,
        }));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sink on 127.0.0.1:0");
        let addr = listener.local_addr().expect("the sink's address");
        let app = Router::new().fallback(record).with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("sink on {addr} stopped: {error}");
            }
        });
        Sink {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT<path>`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Changes how later requests are answered; `fail_first` still counts from the sink's start.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.shared).behaviour = behaviour;
    }

    /// Adds a varying part of up to `spread` to every later answer's delay, spread evenly over
    /// the range by request number (no randomness: a failure replays the same way).
    pub fn set_delay_spread(&self, spread: Duration) {
        lock(&self.shared).spread = spread;
    }

    /// A copy of every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).requests.clone()
    }

    pub fn count(&self) -> usize {
        lock(&self.shared).requests.len()
    }

    /// How many requests carried each `Idempotency-Key` (failed attempts included); requests
    /// without the header are counted under the empty key.
    pub fn count_by_idempotency_key(&self) -> HashMap<String, usize> {
        let inner = lock(&self.shared);
        let mut counts = HashMap::new();
        for request in &inner.requests {
            let key = request.idempotency_key().unwrap_or_default().to_owned();
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }

    /// Like `count_by_idempotency_key`, counting only accepted (2xx) requests: deliveries.
    pub fn deliveries_by_idempotency_key(&self) -> HashMap<String, usize> {
        let inner = lock(&self.shared);
        let mut counts = HashMap::new();
        for request in inner.requests.iter().filter(|r| r.accepted()) {
            let key = request.idempotency_key().unwrap_or_default().to_owned();
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }

    /// Polls the recorded requests until `predicate` holds or `timeout` passes; returns whether
    /// it held. The predicate runs under the sink's lock, so keep it short.
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&[Recorded]) -> bool,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if predicate(&lock(&self.shared).requests) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The most requests open at one moment, each open from its arrival for `hold` (the sink's
/// delay): with a concurrency limit, no more than the limit.
pub fn most_open_at_once(arrivals: &[Instant], hold: Duration) -> usize {
    arrivals
        .iter()
        .map(|&a| arrivals.iter().filter(|&&b| b <= a && a < b + hold).count())
        .max()
        .unwrap_or(0)
}

/// Recovers the state of a test that panicked while holding the lock, so the remaining
/// diagnostics still print instead of a second, confusing panic.
fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The one handler: records the request, then answers as the current behaviour says.
async fn record(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let (reply, delay) = {
        let mut inner = lock(&shared);
        let behaviour = inner.behaviour;
        let varying = spread_part(inner.spread, inner.requests.len());
        let reply = if inner.requests.len() < behaviour.fail_first {
            Some(behaviour.failure)
        } else {
            None
        };
        let status = match reply {
            None => 200,
            Some(Failure::Status(status)) => status,
            Some(Failure::TooManyRequests { .. }) => 429,
        };
        inner.requests.push(Recorded {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.to_string()),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect(),
            body,
            at,
            status,
        });
        (reply, behaviour.delay + varying)
    };
    if !delay.is_zero() {
        // Simulates a slow endpoint; nothing waits on this to synchronise.
        tokio::time::sleep(delay).await;
    }
    match reply {
        None => json(StatusCode::OK, r#"{"ok":true}"#),
        Some(Failure::Status(status)) => json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            r#"{"ok":false}"#,
        ),
        Some(Failure::TooManyRequests { retry_after_secs }) => {
            let mut response = json(StatusCode::TOO_MANY_REQUESTS, r#"{"ok":false}"#);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
    }
}

/// The `n`th request's share of `spread`: a multiplicative hash of `n` spread over [0, spread].
fn spread_part(spread: Duration, n: usize) -> Duration {
    if spread.is_zero() {
        return Duration::ZERO;
    }
    let permille = (n as u64).wrapping_mul(2_654_435_761) % 1001;
    spread * permille as u32 / 1000
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fails_the_first_requests_then_accepts_and_counts_keys() {
        let sink = Sink::start_with(Behaviour {
            fail_first: 2,
            failure: Failure::TooManyRequests {
                retry_after_secs: 3,
            },
            delay: Duration::ZERO,
        })
        .await;
        let client = crate::support::api::http_client();
        let mut answers = Vec::new();
        for key in ["a", "a", "a", "b"] {
            let response = client
                .post(sink.url("/deliver"))
                .header("Idempotency-Key", key)
                .body(r#"{"n":1}"#)
                .send()
                .await
                .unwrap();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            answers.push((response.status().as_u16(), retry_after));
        }
        assert_eq!(
            answers,
            [
                (429, Some("3".to_owned())),
                (429, Some("3".to_owned())),
                (200, None),
                (200, None)
            ]
        );
        let counts = sink.count_by_idempotency_key();
        assert_eq!((counts["a"], counts["b"]), (3, 1));
        let deliveries = sink.deliveries_by_idempotency_key();
        assert_eq!((deliveries["a"], deliveries["b"]), (1, 1));
        let first = &sink.requests()[0];
        assert_eq!(
            (first.method.as_str(), first.path.as_str()),
            ("POST", "/deliver")
        );
        assert_eq!(first.json(), Some(serde_json::json!({"n": 1})));
        assert!(
            sink.wait_for(|r| r.len() == 4, Duration::from_secs(1))
                .await
        );
        assert!(
            !sink
                .wait_for(|r| r.len() == 5, Duration::from_millis(50))
                .await
        );
    }
}
