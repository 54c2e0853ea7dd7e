//! The HTTP fault matrix (#21, SPEC §4): one `http` step per way a target can misbehave, each
//! against a real local server (raw TCP where HTTP servers cannot misbehave on purpose), all in
//! one engine in the test process. Each case checks what SPEC §4 says: connection errors,
//! timeouts, 408, 429 and 5xx are retried, other 4xx and refused redirects fail at once; the
//! waits between attempts follow the backoff (`delay × 2^(n-1)`, ±20 % jitter) or the target's
//! `Retry-After`; every attempt the target saw is recorded. Waits are read from the attempts'
//! recorded timestamps, not from the test's clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::engine::{EngineSetup, TestEngine};

/// The step's retry policy in every case: three attempts, 200 ms then 400 ms apart.
const ATTEMPTS: usize = 3;
const DELAY_MS: i64 = 200;
/// The step's attempt timeout.
const TIMEOUT_MS: u64 = 300;
/// What a wait may exceed its computed length by: claiming the parked run again and committing
/// it `running` before the next attempt, on a loaded machine.
const LATENCY_MS: i64 = 100;
/// How far a wait may stray from the target's `Retry-After`.
const RETRY_AFTER_TOLERANCE_MS: i64 = 100;

/// What the fault server does with one connection.
#[derive(Clone, Debug)]
enum Act {
    /// Reads the request, answers this status with extra header lines and closes.
    Answer(u16, &'static str),
    /// Reads the request and answers 200 only after `Duration`: past the attempt timeout.
    Late(Duration),
    /// Accepts and never reads or writes.
    Hang,
    /// Reads the request, sends part of the head, then resets the connection (RST).
    Reset,
    /// Reads the request, announces 100 body bytes, sends 10 and closes.
    CloseAfterTenBytes,
    /// Reads the request, sends the head at once, then one body byte every 100 ms.
    SlowBody,
}

/// What a case must end as.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Then {
    /// Retried until the attempts ran out; the run fails.
    RetriedThenFailed,
    /// Failed at the first attempt.
    FailedAtOnce,
    /// Retried after the target's `Retry-After` (1 s), then succeeded.
    RetryAfterThenSucceeded,
}

struct Case {
    name: &'static str,
    /// The act for each connection in turn; the last repeats. Empty: nothing listens (refused).
    acts: Vec<Act>,
    then: Then,
    /// A piece of the last attempt's error.
    error: &'static str,
}

fn cases() -> Vec<Case> {
    use Act::*;
    use Then::*;
    let case = |name, acts, then, error| Case {
        name,
        acts,
        then,
        error,
    };
    vec![
        case(
            "timeout",
            vec![Late(Duration::from_secs(5))],
            RetriedThenFailed,
            "timed out",
        ),
        case("hang", vec![Hang], RetriedThenFailed, "timed out"),
        case(
            "http_500",
            vec![Answer(500, "")],
            RetriedThenFailed,
            "HTTP 500",
        ),
        case(
            "http_503_retry_after",
            vec![Answer(503, "Retry-After: 1\r\n"), Answer(200, "")],
            RetryAfterThenSucceeded,
            "",
        ),
        case(
            "http_429",
            vec![Answer(429, "")],
            RetriedThenFailed,
            "HTTP 429",
        ),
        case(
            "http_408",
            vec![Answer(408, "")],
            RetriedThenFailed,
            "HTTP 408",
        ),
        case("refused", vec![], RetriedThenFailed, "Connection refused"),
        case(
            "reset_mid_response",
            vec![Reset],
            RetriedThenFailed,
            "reset",
        ),
        case(
            "close_after_n_bytes",
            vec![CloseAfterTenBytes],
            RetriedThenFailed,
            "end of file",
        ),
        case("slow_body", vec![SlowBody], RetriedThenFailed, "timed out"),
        case(
            "redirect_to_metadata",
            vec![Answer(
                302,
                "Location: http://169.254.169.254/latest/meta-data/\r\n",
            )],
            FailedAtOnce,
            "169.254.169.254",
        ),
        case("http_404", vec![Answer(404, "")], FailedAtOnce, "HTTP 404"),
        case("http_400", vec![Answer(400, "")], FailedAtOnce, "HTTP 400"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_fault_is_retried_or_failed_as_the_spec_says_and_recorded() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    let cases = cases();
    let mut servers = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let server = FaultServer::start(case.acts.clone()).await;
        std::fs::write(flows.join(format!("f{i}.yaml")), fault_flow(i, &server.url))
            .expect("write the flow");
        servers.push(server);
    }
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let engine = TestEngine::start(&EngineSetup::new(url, &flows)).await;
    let api = engine.api();
    let mut run_ids = Vec::new();
    for i in 0..cases.len() {
        let acks = api
            .post_events(&[json!({"entity": format!("f{i}"), "action": "create", "id": "1"})])
            .await
            .expect("the event is accepted");
        run_ids.push(acks[0].runs[0].clone());
    }
    let runs = api
        .wait_until_all_terminal(&run_ids, Duration::from_secs(120))
        .await
        .expect("every run ends");
    let mut problems = Vec::new();
    for ((case, server), id) in cases.iter().zip(&servers).zip(&run_ids) {
        let run = &runs[id];
        let found = check_case(case, server, run);
        println!("{:<22} {}", case.name, summary(run));
        problems.extend(found.into_iter().map(|p| format!("{}: {p}", case.name)));
    }
    engine.stop().await;
    assert!(
        problems.is_empty(),
        "fault matrix:\n- {}",
        problems.join("\n- ")
    );
}

/// Everything one case must show.
fn check_case(case: &Case, server: &FaultServer, run: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let attempts = attempts(run);
    let (status, count) = match case.then {
        Then::RetriedThenFailed => ("failed", ATTEMPTS),
        Then::FailedAtOnce => ("failed", 1),
        Then::RetryAfterThenSucceeded => ("succeeded", 2),
    };
    if run["status"] != status {
        problems.push(format!(
            "the run ended {}, expected {status}",
            run["status"]
        ));
    }
    if attempts.len() != count {
        problems.push(format!(
            "{} attempts recorded, expected {count}",
            attempts.len()
        ));
    }
    // Every connection the target saw is an attempt on record (a refused one reaches nobody).
    if !case.acts.is_empty() && server.connections() != attempts.len() {
        problems.push(format!(
            "the target saw {} connections, {} attempts are recorded",
            server.connections(),
            attempts.len()
        ));
    }
    let last_error = attempts
        .last()
        .and_then(|a| a["error"].as_str())
        .unwrap_or_default();
    if !last_error.contains(case.error) || (status == "failed" && last_error.is_empty()) {
        problems.push(format!(
            "the last attempt's error is {last_error:?}, expected it to name {:?}",
            case.error
        ));
    }
    for (n, pair) in attempts.windows(2).enumerate() {
        let waited = gap_ms(&pair[0], &pair[1]);
        let (low, high) = match case.then {
            Then::RetryAfterThenSucceeded => (1_000, 1_000 + RETRY_AFTER_TOLERANCE_MS),
            _ => {
                let computed = DELAY_MS << n;
                // -2 ms: the timestamps are whole milliseconds.
                (computed * 8 / 10 - 2, computed * 12 / 10 + LATENCY_MS)
            }
        };
        match waited {
            Some(ms) if (low..=high).contains(&ms) => {}
            other => problems.push(format!(
                "attempt {} began {other:?} ms after attempt {} ended, expected {low}..={high}",
                n + 2,
                n + 1
            )),
        }
    }
    problems
}

fn attempts(run: &Value) -> Vec<Value> {
    run["steps"][0]["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Milliseconds from the end of one attempt to the start of the next, as recorded.
fn gap_ms(before: &Value, after: &Value) -> Option<i64> {
    let time = |v: &Value| {
        DateTime::parse_from_rfc3339(v.as_str()?)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    Some((time(&after["started_at"])? - time(&before["finished_at"])?).num_milliseconds())
}

fn summary(run: &Value) -> String {
    let attempts: Vec<String> = attempts(run)
        .iter()
        .map(|a| format!("{}ms {}", a["duration_ms"], a["error"]))
        .collect();
    format!("{} after [{}]", run["status"], attempts.join(", "))
}

fn fault_flow(i: usize, url: &str) -> String {
    format!(
        r#"id: fault-{i}
triggers:
  - entity: f{i}
    on: [create]
steps:
  - id: push
    http:
      url: "{url}"
      body: {{n: {i}}}
      timeout: {TIMEOUT_MS}ms
      retry: {{attempts: {ATTEMPTS}, delay: {DELAY_MS}ms, max_delay: 1h}}
"#
    )
}

/// A raw TCP server that misbehaves as told, counting connections.
struct FaultServer {
    url: String,
    connections: Arc<AtomicUsize>,
}

impl FaultServer {
    async fn start(acts: Vec<Act>) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let connections = Arc::new(AtomicUsize::new(0));
        if acts.is_empty() {
            // Nothing listens on the port any more: connecting is refused.
            drop(listener);
        } else {
            tokio::spawn(serve(listener, acts, connections.clone()));
        }
        FaultServer { url, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve(listener: TcpListener, acts: Vec<Act>, connections: Arc<AtomicUsize>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let n = connections.fetch_add(1, Ordering::SeqCst);
        let act = acts[n.min(acts.len() - 1)].clone();
        tokio::spawn(async move {
            if let Err(error) = misbehave(socket, act).await {
                eprintln!("fault server: {error}");
            }
        });
    }
}

async fn misbehave(mut socket: TcpStream, act: Act) -> std::io::Result<()> {
    if matches!(act, Act::Hang) {
        // Holding the socket open without a byte either way is the fault.
        return std::future::pending().await;
    }
    read_request(&mut socket).await?;
    match act {
        Act::Answer(status, extra) => {
            let head = format!(
                "HTTP/1.1 {status} Fault\r\n{extra}Content-Type: application/json\r\n\
                 Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
            socket.write_all(head.as_bytes()).await?;
            socket.shutdown().await
        }
        Act::Late(delay) => {
            // Simulates a slow target; the attempt timeout ends the wait on the other side.
            tokio::time::sleep(delay).await;
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
        }
        Act::Hang => Ok(()),
        Act::Reset => {
            socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await?;
            socket.set_zero_linger()?;
            drop(socket);
            Ok(())
        }
        Act::CloseAfterTenBytes => {
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                .await?;
            socket.shutdown().await
        }
        Act::SlowBody => {
            socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n",
                )
                .await?;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for _ in 0..100 {
                tick.tick().await;
                socket.write_all(b"x").await?;
            }
            Ok(())
        }
    }
}

/// Reads a request head and its `Content-Length` body.
async fn read_request(socket: &mut TcpStream) -> std::io::Result<()> {
    let mut seen = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        let read = socket.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        seen.extend_from_slice(&buffer[..read]);
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return Ok(());
            }
        }
    }
}
