//! The delivery target: an HTTP/1 server on 127.0.0.1 that answers 200 at once and records, for
//! every request, its arrival time, `Idempotency-Key` and body. It also keeps a per-event
//! delivery count so the harness knows when everything has arrived.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

use crate::workload;

/// One request that reached the sink.
pub struct Arrival {
    /// Nanoseconds since the harness's epoch.
    pub at_ns: u64,
    pub path: String,
    pub idempotency_key: Option<String>,
    /// The parsed body, or the raw text when it is not JSON.
    pub body: Result<Value, String>,
}

pub struct Sink {
    t0: Instant,
    arrivals: Mutex<Vec<Arrival>>,
    /// Deliveries per event index.
    per_event: Vec<AtomicU32>,
    /// Events delivered at least once.
    distinct: AtomicUsize,
    total: AtomicUsize,
}

impl Sink {
    /// Starts the sink on a free port of 127.0.0.1, for events `0..events`.
    pub async fn start(t0: Instant, events: usize) -> anyhow::Result<(Arc<Sink>, SocketAddr)> {
        let sink = Arc::new(Sink {
            t0,
            arrivals: Mutex::new(Vec::with_capacity(events)),
            per_event: (0..events).map(|_| AtomicU32::new(0)).collect(),
            distinct: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(deliver).with_state(sink.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("flowd-bench: the sink stopped: {e}");
            }
        });
        Ok((sink, addr))
    }

    /// Events delivered at least once.
    pub fn distinct(&self) -> usize {
        self.distinct.load(Ordering::Acquire)
    }

    /// All requests received.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Takes the recorded arrivals, in arrival order.
    pub fn take_arrivals(&self) -> Vec<Arrival> {
        std::mem::take(&mut *self.arrivals.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

async fn deliver(
    State(sink): State<Arc<Sink>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at_ns = sink.t0.elapsed().as_nanos() as u64;
    let body = serde_json::from_slice::<Value>(&body)
        .map_err(|_| String::from_utf8_lossy(&body).into_owned());
    if let Some(n) = body.as_ref().ok().and_then(workload::event_index)
        && let Some(count) = sink.per_event.get(n)
        && count.fetch_add(1, Ordering::AcqRel) == 0
    {
        sink.distinct.fetch_add(1, Ordering::AcqRel);
    }
    let arrival = Arrival {
        at_ns,
        path: uri.path().to_string(),
        idempotency_key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    };
    sink.arrivals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(arrival);
    sink.total.fetch_add(1, Ordering::AcqRel);
    StatusCode::OK
}
