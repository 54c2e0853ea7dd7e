//! End-to-end tests of the step kinds (SPEC §1, §2, §4, §5) through the real `flowd serve`
//! binary: each test writes a flow into a temporary flows folder, starts flowd on a temporary
//! SQLite file, posts an entity event to `POST /api/v1/events`, waits for the run to end and
//! checks both sides: what arrived at a real server on loopback (the HTTP sink of
//! `support/sink.rs`, the SMTP sink of `support/smtp.rs`, a closed port) and what the run log
//! (`GET /api/v1/runs/{id}`) recorded. Nothing is mocked. Every wait is on a condition with a
//! generous deadline, since a loaded 2-core machine is slow; the timing assertions only compare
//! gaps that the retry policy makes hundreds of milliseconds apart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use flowd::store::sql::{get, stmt};
use flowd::store::{Backend, Store, StoreOptions};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::flowd::{FlowdEnv, FlowdProcess};
use crate::support::sink::{Behaviour, Failure, Recorded, Sink};
use crate::support::smtp::SmtpSink;

/// How long a run may take to end; the slowest flow here needs a few seconds.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// How long a request may take to show up at a sink after the run recorded it.
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(30);
/// The flow id of every test (each test has its own engine).
const FLOW: &str = "steps-e2e";

/// One engine on its own database and flows folder, removed with the test. Fields drop in
/// order: the process ends before its folder goes.
struct Harness {
    flowd: FlowdProcess,
    dir: TempDir,
    database_url: String,
}

impl Harness {
    /// Writes `flow` (a whole flow file) and starts `flowd serve` with the extra variables.
    async fn start(flow: &str, extra: &[(&str, &str)]) -> Harness {
        let dir = tempfile::tempdir().expect("temporary directory");
        let flows = dir.path().join("flows");
        std::fs::create_dir_all(&flows).expect("create the flows folder");
        std::fs::write(flows.join(format!("{FLOW}.yaml")), flow).expect("write the flow");
        let database_url = format!("sqlite://{}", db_path(dir.path()).display());
        let mut env = FlowdEnv::new(database_url.clone(), flows);
        // No run changes hands in these tests: a takeover would add attempts of its own.
        env.lease = "60s".to_owned();
        env.extra = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        // Every line, so the secret tests can search all of flowd's output.
        env.kept_lines = 1_000_000;
        let flowd = FlowdProcess::start(&env).await;
        Harness {
            flowd,
            dir,
            database_url,
        }
    }

    /// Posts a `guest.create` event with `data` and returns the id of the one run it started.
    async fn post_guest(&self, id: &str, data: Value) -> String {
        let event = json!({"entity": "guest", "action": "create", "id": id, "data": data});
        let acks = self
            .flowd
            .api()
            .post_events(&[event])
            .await
            .unwrap_or_else(|e| panic!("posting the event failed: {e}\n{}", self.tail()));
        match acks.as_slice() {
            [ack] if ack.runs.len() == 1 => ack.runs[0].clone(),
            _ => panic!(
                "expected one event with one run, got {acks:?}\n{}",
                self.tail()
            ),
        }
    }

    /// Waits until the run is terminal and returns it with its steps and attempts.
    async fn run_to_end(&self, run_id: &str) -> Value {
        self.run_to_end_within(run_id, RUN_DEADLINE).await
    }

    async fn run_to_end_within(&self, run_id: &str, deadline: Duration) -> Value {
        let mut runs = self
            .flowd
            .api()
            .wait_until_all_terminal(&[run_id.to_owned()], deadline)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.tail()));
        runs.remove(run_id).expect("the run asked for")
    }

    fn tail(&self) -> String {
        self.flowd.stderr_tail()
    }

    /// The run and the engine's last output, for failure messages.
    fn context(&self, run: &Value) -> String {
        format!("run: {run:#}\n{}", self.tail())
    }
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("flowd.db")
}

/// A flow file: one `guest` create trigger, then `steps` (YAML, indented by two spaces, with
/// `@NAME@` placeholders replaced from `values`).
///
/// Flows whose side-effecting step is retried start with a `lead` map step, so the step under
/// test resumes with earlier step output in place; `retries_of_a_first_step_are_counted` covers
/// a retried first step.
fn flow(steps: &str, values: &[(&str, &str)]) -> String {
    let mut text = format!("id: {FLOW}\ntriggers:\n  - entity: guest\n    on: [create]\n{steps}");
    for (name, value) in values {
        text = text.replace(name, value);
    }
    text
}

/// The step called `id` of a run.
fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step `{id}` in run {run:#}"))
}

fn attempts(step: &Value) -> &[Value] {
    step["attempts"].as_array().map_or(&[], Vec::as_slice)
}

/// The value of header `name` in a recorded request or response (`[{name, value}]`).
fn recorded_header<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    record["headers"]
        .as_array()?
        .iter()
        .find(|h| {
            h["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .and_then(|h| h["value"].as_str())
}

/// Waits until the sink holds at least `n` requests and returns them.
async fn requests_at(sink: &Sink, n: usize, h: &Harness) -> Vec<Recorded> {
    if !sink.wait_for(|r| r.len() >= n, ARRIVAL_DEADLINE).await {
        panic!(
            "the sink got {} request(s), expected {n}: {:?}\n{}",
            sink.count(),
            sink.requests(),
            h.tail()
        );
    }
    sink.requests()
}

fn body_text(request: &Recorded) -> String {
    String::from_utf8_lossy(&request.body).into_owned()
}

fn lowercase_error(attempt: &Value) -> String {
    attempt["error"].as_str().unwrap_or_default().to_lowercase()
}

// ---------------------------------------------------------------------------------------------
// http: retries, Retry-After, failures, timeouts, refused connections
// ---------------------------------------------------------------------------------------------

/// 500, 500, 200: the step succeeds on attempt 3, the backoff doubles (`delay × 2^(n-1)` with
/// ±20 % jitter: 0.8–1.2 s, then 1.6–2.4 s), and every attempt carries `<run_id>_<step_id>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_5xx_is_retried_with_doubling_backoff_and_one_idempotency_key() {
    let sink = Sink::start_with(Behaviour {
        fail_first: 2,
        failure: Failure::Status(500),
        delay: Duration::ZERO,
    })
    .await;
    let url = sink.url("/push");
    let h = Harness::start(
        &flow(
            r#"settings:
  retry: {attempts: 5, delay: 1s, max_delay: 1m}
steps:
  - id: lead
    map: {guest: "{{entity.id}}"}
  - id: push
    http:
      url: "@URL@"
      body: {guest: "{{entity.id}}"}
"#,
            &[("@URL@", &url)],
        ),
        &[],
    )
    .await;
    let run_id = h.post_guest("g1", json!({"name": "Ada"})).await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "succeeded", "{cx}");

    let push = step(&run, "push");
    assert_eq!(push["status"], "succeeded", "{cx}");
    let tries = attempts(push);
    let numbers: Vec<_> = tries.iter().map(|a| a["n"].clone()).collect();
    assert_eq!(numbers, [json!(1), json!(2), json!(3)], "{cx}");
    let statuses: Vec<_> = tries
        .iter()
        .map(|a| a["response"]["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(500), json!(500), json!(200)], "{cx}");
    for failed in &tries[..2] {
        assert!(lowercase_error(failed).contains("500"), "{cx}");
    }
    assert!(tries[2]["error"].is_null(), "{cx}");
    assert_eq!(push["output"]["status"], 200, "{cx}");
    assert_eq!(push["output"]["body"], json!({"ok": true}), "{cx}");

    let key = format!("{run_id}_push");
    for attempt in tries {
        assert_eq!(
            recorded_header(&attempt["request"], "idempotency-key"),
            Some(key.as_str()),
            "{cx}"
        );
    }
    let requests = requests_at(&sink, 3, &h).await;
    assert_eq!(requests.len(), 3, "{requests:?}");
    for request in &requests {
        assert_eq!(
            request.idempotency_key(),
            Some(key.as_str()),
            "{requests:?}"
        );
        assert_eq!(request.json(), Some(json!({"guest": "g1"})), "{requests:?}");
    }
    let codes: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(codes, [500, 500, 200]);

    let first_gap = requests[1].at.duration_since(requests[0].at);
    let second_gap = requests[2].at.duration_since(requests[1].at);
    println!("gaps between attempts: {first_gap:?}, {second_gap:?}");
    assert!(
        first_gap >= Duration::from_millis(800),
        "attempt 2 came {first_gap:?} after attempt 1; the policy asks for 1s ± 20 %"
    );
    assert!(
        second_gap >= Duration::from_millis(1600),
        "attempt 3 came {second_gap:?} after attempt 2; the policy asks for 2s ± 20 %"
    );
    assert!(
        second_gap > first_gap,
        "the backoff did not grow: {first_gap:?} then {second_gap:?}"
    );
    // The flow's policy, not the 10s default, set the pace.
    assert!(
        first_gap < Duration::from_secs(6) && second_gap < Duration::from_secs(9),
        "backoff far longer than the flow's policy: {first_gap:?}, {second_gap:?}"
    );
}

/// 429 with `Retry-After: 1`, then 200: the retry waits about the second the target asked for,
/// although the step's own backoff would be 100 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_honours_retry_after() {
    let sink = Sink::start_with(Behaviour {
        fail_first: 1,
        failure: Failure::TooManyRequests {
            retry_after_secs: 1,
        },
        delay: Duration::ZERO,
    })
    .await;
    let url = sink.url("/limited");
    let h = Harness::start(
        &flow(
            r#"steps:
  - id: lead
    map: {guest: "{{entity.id}}"}
  - id: push
    http:
      url: "@URL@"
      body: {guest: "{{entity.id}}"}
      retry: {attempts: 4, delay: 100ms, max_delay: 1s}
"#,
            &[("@URL@", &url)],
        ),
        &[],
    )
    .await;
    let run_id = h.post_guest("g2", json!({})).await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "succeeded", "{cx}");
    let tries = attempts(step(&run, "push"));
    assert_eq!(tries.len(), 2, "{cx}");
    assert_eq!(tries[0]["response"]["status"], 429, "{cx}");
    assert_eq!(
        recorded_header(&tries[0]["response"], "retry-after"),
        Some("1"),
        "{cx}"
    );
    assert!(lowercase_error(&tries[0]).contains("429"), "{cx}");
    assert_eq!(tries[1]["response"]["status"], 200, "{cx}");

    let requests = requests_at(&sink, 2, &h).await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    let key = format!("{run_id}_push");
    assert!(
        requests
            .iter()
            .all(|r| r.idempotency_key() == Some(key.as_str())),
        "{requests:?}"
    );
    let gap = requests[1].at.duration_since(requests[0].at);
    println!("gap after 429 with Retry-After: 1: {gap:?}");
    assert!(
        gap >= Duration::from_millis(900),
        "the retry came {gap:?} after a 429 with Retry-After: 1"
    );
    assert!(
        gap < Duration::from_secs(8),
        "the retry came {gap:?} after a 429 with Retry-After: 1"
    );
}

/// A 400 is not worth retrying: the run fails after one attempt, with the answer recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_400_fails_at_once_with_the_response_recorded() {
    let sink = Sink::start_with(Behaviour {
        fail_first: usize::MAX,
        failure: Failure::Status(400),
        delay: Duration::ZERO,
    })
    .await;
    let url = sink.url("/reject");
    let h = Harness::start(
        &flow(
            r#"steps:
  - id: push
    http:
      url: "@URL@"
      body: {guest: "{{entity.id}}"}
      retry: {attempts: 5, delay: 100ms}
  - id: never
    map: {reached: true}
"#,
            &[("@URL@", &url)],
        ),
        &[],
    )
    .await;
    let run_id = h.post_guest("g3", json!({})).await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "failed", "{cx}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("push") && error.contains("400"), "{cx}");

    let push = step(&run, "push");
    assert_eq!(push["status"], "failed", "{cx}");
    assert!(
        push["error"].as_str().is_some_and(|e| e.contains("400")),
        "{cx}"
    );
    let tries = attempts(push);
    assert_eq!(tries.len(), 1, "a 400 must not be retried: {cx}");
    assert_eq!(tries[0]["response"]["status"], 400, "{cx}");
    assert_eq!(tries[0]["response"]["body"], r#"{"ok":false}"#, "{cx}");
    assert_eq!(
        recorded_header(&tries[0]["response"], "content-type"),
        Some("application/json"),
        "{cx}"
    );
    assert!(lowercase_error(&tries[0]).contains("400"), "{cx}");
    assert_ne!(step(&run, "never")["status"], "succeeded", "{cx}");
    assert_eq!(sink.count(), 1, "{:?}", sink.requests());
}

/// A target that accepts the connection and never answers: each attempt ends at the step's
/// `timeout` (300 ms, not the 30 s default), and the run fails after its two attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_timeout_ends_each_attempt() {
    let sink = Sink::start_with(Behaviour {
        delay: Duration::from_secs(3600),
        ..Behaviour::default()
    })
    .await;
    let url = sink.url("/silent");
    let h = Harness::start(
        &flow(
            r#"steps:
  - id: lead
    map: {guest: "{{entity.id}}"}
  - id: push
    http:
      url: "@URL@"
      body: {guest: "{{entity.id}}"}
      timeout: 300ms
      retry: {attempts: 2, delay: 100ms}
"#,
            &[("@URL@", &url)],
        ),
        &[],
    )
    .await;
    let run_id = h.post_guest("g4", json!({})).await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "failed", "{cx}");
    let push = step(&run, "push");
    assert_eq!(push["status"], "failed", "{cx}");
    let tries = attempts(push);
    assert_eq!(tries.len(), 2, "{cx}");
    for attempt in tries {
        let error = lowercase_error(attempt);
        assert!(
            error.contains("timed out") || error.contains("timeout"),
            "{cx}"
        );
        assert!(attempt["response"].is_null(), "{cx}");
        let took = attempt["duration_ms"].as_u64().unwrap_or_default();
        assert!(
            (290..10_000).contains(&took),
            "an attempt took {took} ms with a 300 ms timeout: {cx}"
        );
    }
    // Both attempts reached the target; the answer never came.
    let requests = requests_at(&sink, 2, &h).await;
    let key = format!("{run_id}_push");
    assert!(
        requests
            .iter()
            .all(|r| r.idempotency_key() == Some(key.as_str())),
        "{requests:?}"
    );
}

/// Nothing listens on the port: every attempt fails to connect and is retried, each recorded
/// with its error, until the policy gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connection_refused_is_retried() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("its address").port()
    };
    let url = format!("http://127.0.0.1:{port}/closed");
    let h = Harness::start(
        &flow(
            r#"steps:
  - id: lead
    map: {guest: "{{entity.id}}"}
  - id: push
    http:
      url: "@URL@"
      body: {guest: "{{entity.id}}"}
      retry: {attempts: 3, delay: 100ms}
"#,
            &[("@URL@", &url)],
        ),
        &[],
    )
    .await;
    let run_id = h.post_guest("g5", json!({})).await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "failed", "{cx}");
    let push = step(&run, "push");
    assert_eq!(push["status"], "failed", "{cx}");
    let tries = attempts(push);
    assert_eq!(tries.len(), 3, "every attempt the policy allows: {cx}");
    for (i, attempt) in tries.iter().enumerate() {
        assert_eq!(attempt["n"], i + 1, "{cx}");
        assert!(lowercase_error(attempt).contains("connect"), "{cx}");
        assert!(attempt["response"].is_null(), "{cx}");
        assert_eq!(
            attempt["request"]["url"].as_str(),
            Some(url.as_str()),
            "{cx}"
        );
    }
}

/// A retried step that is the flow's *first* step keeps counting its attempts: against a target
/// that always answers 500, `attempts: 3` means three attempts, numbered 1 to 3, then failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_a_first_step_are_counted() {
    let sink = Sink::start_with(Behaviour {
        fail_first: usize::MAX,
        failure: Failure::Status(500),
        delay: Duration::ZERO,
    })
    .await;
    let url = sink.url("/first");
    let h = Harness::start(
        &flow(
            r#"steps:
  - id: push
    http:
      url: "@URL@"
      body: {guest: "{{entity.id}}"}
      retry: {attempts: 3, delay: 100ms, max_delay: 200ms}
"#,
            &[("@URL@", &url)],
        ),
        &[],
    )
    .await;
    let run_id = h.post_guest("r1", json!({})).await;
    // Three attempts with 0.1 s and 0.2 s between them take well under a second.
    let run = h.run_to_end_within(&run_id, Duration::from_secs(60)).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "failed", "{cx}");
    let numbers: Vec<_> = attempts(step(&run, "push"))
        .iter()
        .map(|a| a["n"].clone())
        .collect();
    assert_eq!(numbers, [json!(1), json!(2), json!(3)], "{cx}");
    assert_eq!(sink.count(), 3, "{:?}", sink.requests());
}

// ---------------------------------------------------------------------------------------------
// http: body formats
// ---------------------------------------------------------------------------------------------

/// `json` (default), `form`, `xml` and `text` bodies arrive with the Content-Type and the bytes
/// SPEC §4 and `src/outbound/body.rs` describe. Keys are written in sorted order, so the bytes
/// do not depend on whether maps keep insertion order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_body_formats_arrive_as_specified() {
    let sink = Sink::start().await;
    let base = sink.url("");
    let h = Harness::start(
        &flow(
            r#"steps:
  - id: as_json
    http:
      url: "@BASE@/json"
      body: {age: "{{entity.age}}", name: "{{entity.name}}"}
  - id: as_form
    http:
      url: "@BASE@/form"
      format: form
      body:
        age: "{{entity.age}}"
        name: "{{entity.name}}"
        note: null
        vip: true
        weird: "a=b&c d/é+"
  - id: as_xml
    http:
      url: "@BASE@/xml"
      format: xml
      body:
        guest:
          age: "{{entity.age}}"
          name: "{{entity.name}}"
          none: null
          tags: [x, "y <z>"]
  - id: as_text
    http:
      method: PUT
      url: "@BASE@/text"
      format: text
      body: "Hello {{entity.name}},\nsee you at 9 — ünï \"quoted\""
"#,
            &[("@BASE@", &base)],
        ),
        &[],
    )
    .await;
    let run_id = h
        .post_guest("g6", json!({"age": 36, "name": "Ada Lovelace & co"}))
        .await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "succeeded", "{cx}");
    let requests = requests_at(&sink, 4, &h).await;
    let at = |path: &str| {
        requests
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("nothing arrived at {path}: {requests:?}"))
    };

    let json_request = at("/json");
    assert_eq!(json_request.method, "POST");
    assert_eq!(
        json_request.header("content-type"),
        Some("application/json")
    );
    assert_eq!(
        json_request.json(),
        Some(json!({"age": 36, "name": "Ada Lovelace & co"})),
        "{}",
        body_text(json_request)
    );

    let form = at("/form");
    assert_eq!(
        form.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        body_text(form),
        "age=36&name=Ada+Lovelace+%26+co&note=&vip=true&weird=a%3Db%26c+d%2F%C3%A9%2B"
    );

    let xml = at("/xml");
    assert_eq!(xml.header("content-type"), Some("application/xml"));
    assert_eq!(
        body_text(xml),
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "<guest><age>36</age><name>Ada Lovelace &amp; co</name><none/>",
            "<tags>x</tags><tags>y &lt;z&gt;</tags></guest>"
        )
    );

    let text = at("/text");
    assert_eq!(text.method, "PUT");
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        text.body.as_ref(),
        "Hello Ada Lovelace & co,\nsee you at 9 — ünï \"quoted\"".as_bytes()
    );
    // The run log keeps what was sent.
    let recorded = &attempts(step(&run, "as_form"))[0]["request"];
    assert_eq!(recorded["body"], body_text(form), "{cx}");
}

// ---------------------------------------------------------------------------------------------
// map: JSON types through the runner
// ---------------------------------------------------------------------------------------------

/// Event data with every JSON type and awkward strings goes through a `map` step and an `http`
/// POST: a lone expression keeps its JSON type, text templates render without HTML escaping,
/// `{{` inside data is never evaluated, and a missing field is `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_keeps_json_types_through_the_runner() {
    let sink = Sink::start().await;
    let url = sink.url("/typed");
    let h = Harness::start(
        &flow(
            r#"steps:
  - id: shaped
    map:
      count: "{{entity.count}}"
      neg: "{{entity.neg}}"
      big: "{{entity.big}}"
      price: "{{entity.price}}"
      tiny: "{{entity.tiny}}"
      flag_true: "{{entity.ok}}"
      flag_false: "{{entity.no}}"
      nothing: "{{entity.nothing}}"
      missing: "{{entity.absent}}"
      nested: "{{entity.nested}}"
      deep: "{{entity.nested.a.b}}"
      tricky: "{{entity.tricky}}"
      quotes: "{{entity.quotes}}"
      multi: "{{entity.multi}}"
      unicode: "{{entity.unicode}}"
      zero_str: "{{entity.zero_str}}"
      true_str: "{{entity.true_str}}"
      backslash: "{{entity.backslash}}"
      everything: "{{entity}}"
      text: "n={{entity.count}} p={{entity.price}} ok={{entity.ok}} [{{entity.nothing}}] {{entity.quotes}} / {{entity.unicode}}"
      tricky_text: "x {{entity.tricky}}"
      literal: {n: 1.5, b: false, s: plain, z: null, l: [1, "two"]}
  - id: push
    http:
      url: "@URL@"
      body: "{{steps.shaped}}"
"#,
            &[("@URL@", &url)],
        ),
        &[],
    )
    .await;
    let data = json!({
        "id": "m1",
        "count": 42,
        "neg": -7,
        "big": 9_007_199_254_740_993u64,
        "price": 19.99,
        "tiny": 1e-7,
        "ok": true,
        "no": false,
        "nothing": null,
        "nested": {"a": {"b": [1, "two", null, {"c": false}]}, "empty": {}, "list": []},
        "tricky": "{{entity.id}} and {{#if x}}y{{/if}} {{{raw}}}",
        "quotes": "she said \"hi\" and 'bye' <b>&amp;</b>",
        "multi": "line1\nline2\r\n\tend",
        "unicode": "Zoë — 日本語 🎉",
        "zero_str": "007",
        "true_str": "true",
        "backslash": "C:\\path\\",
    });
    let run_id = h.post_guest("m1", data.clone()).await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "succeeded", "{cx}");
    let expected = json!({
        "count": 42,
        "neg": -7,
        "big": 9_007_199_254_740_993u64,
        "price": 19.99,
        "tiny": 1e-7,
        "flag_true": true,
        "flag_false": false,
        "nothing": null,
        "missing": null,
        "nested": data["nested"],
        "deep": [1, "two", null, {"c": false}],
        "tricky": data["tricky"],
        "quotes": data["quotes"],
        "multi": data["multi"],
        "unicode": data["unicode"],
        "zero_str": "007",
        "true_str": "true",
        "backslash": "C:\\path\\",
        "everything": data,
        "text": "n=42 p=19.99 ok=true [] she said \"hi\" and 'bye' <b>&amp;</b> / Zoë — 日本語 🎉",
        "tricky_text": "x {{entity.id}} and {{#if x}}y{{/if}} {{{raw}}}",
        "literal": {"n": 1.5, "b": false, "s": "plain", "z": null, "l": [1, "two"]},
    });
    assert_eq!(step(&run, "shaped")["output"], expected, "{cx}");
    let requests = requests_at(&sink, 1, &h).await;
    let received = requests[0].json();
    assert_eq!(
        received.as_ref(),
        Some(&expected),
        "the sink got {}",
        body_text(&requests[0])
    );
    // Types, not just values that compare equal after some coercion.
    let received = received.unwrap_or_default();
    assert!(received["big"].is_u64() && received["count"].is_u64());
    assert!(received["neg"].is_i64() && received["price"].is_f64());
    assert!(received["zero_str"].is_string() && received["true_str"].is_string());
    assert_eq!(
        received["big"].as_u64(),
        Some(9_007_199_254_740_993),
        "an integer above 2^53 lost precision"
    );
}

// ---------------------------------------------------------------------------------------------
// notify
// ---------------------------------------------------------------------------------------------

/// `channel: email` goes out through `FLOWD_SMTP_URL` with the rendered subject and text;
/// `channel: inbox` stores a notification (checked in the database: the API has no
/// notifications endpoint yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_sends_email_and_stores_inbox_notifications() {
    let smtp = SmtpSink::start().await;
    let smtp_url = smtp.url();
    let h = Harness::start(
        &flow(
            r#"steps:
  - id: tell
    notify:
      channel: email
      to: "ops@example.com, {{entity.email}}"
      subject: "New guest {{entity.name}}"
      text: "Guest {{entity.name}} <{{entity.email}}> was confirmed.\nSeats: {{entity.seats}} ✓"
  - id: note
    notify:
      channel: inbox
      subject: "Guest {{entity.name}}"
      text: "Mailed {{steps.tell.channel}} for {{entity.email}}"
"#,
            &[],
        ),
        &[("FLOWD_SMTP_URL", &smtp_url)],
    )
    .await;
    let run_id = h
        .post_guest(
            "n1",
            json!({"name": "Zoë Ünal", "email": "zoe@example.com", "seats": 2}),
        )
        .await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "succeeded", "{cx}");

    let mails = smtp
        .wait_for(1, ARRIVAL_DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{cx}"));
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    let mut recipients = mail.to.clone();
    recipients.sort();
    assert_eq!(
        recipients,
        ["ops@example.com", "zoe@example.com"],
        "{mail:#?}"
    );
    assert_eq!(
        mail.subject.as_deref(),
        Some("New guest Zoë Ünal"),
        "{mail:#?}"
    );
    assert_eq!(
        mail.body.trim_end(),
        "Guest Zoë Ünal <zoe@example.com> was confirmed.\nSeats: 2 ✓",
        "{mail:#?}"
    );
    let tell = step(&run, "tell");
    assert_eq!(tell["status"], "succeeded", "{cx}");
    assert_eq!(tell["output"]["channel"], "email", "{cx}");
    let message_id = tell["output"]["id"].as_str().unwrap_or_default();
    assert!(
        !message_id.is_empty()
            && mail
                .header("Message-ID")
                .is_some_and(|h| h.contains(message_id)),
        "output id {message_id:?} is not the mail's Message-ID: {mail:#?}"
    );

    let note = step(&run, "note");
    assert_eq!(note["status"], "succeeded", "{cx}");
    let note_id = format!("{run_id}_note");
    assert_eq!(
        note["output"],
        json!({"channel": "inbox", "id": note_id}),
        "{cx}"
    );
    let stored = inbox_rows(&h.database_url, &run_id).await;
    assert_eq!(
        stored,
        [[
            note_id,
            FLOW.to_owned(),
            "note".to_owned(),
            "Guest Zoë Ünal".to_owned(),
            "Mailed email for zoe@example.com".to_owned(),
        ]],
        "{cx}"
    );
}

/// `[id, flow_id, step_id, title, text]` of the run's stored notifications, read from the
/// database the engine writes (read-only connections).
async fn inbox_rows(database_url: &str, run_id: &str) -> Vec<[String; 5]> {
    let store = Store::connect(database_url, &StoreOptions::default())
        .await
        .expect("open the engine's database");
    let rows = store
        .reader()
        .query_all_raw(stmt(
            Backend::Sqlite,
            "SELECT id, flow_id, step_id, title, text FROM notifications WHERE run_id = ? ORDER BY id",
            vec![run_id.to_owned().into()],
        ))
        .await
        .expect("read the notifications");
    let rows = rows
        .iter()
        .map(|row| {
            ["id", "flow_id", "step_id", "title", "text"]
                .map(|column| get::<String>(row, column).expect("a text column"))
        })
        .collect();
    store.close().await;
    rows
}

// ---------------------------------------------------------------------------------------------
// on_error
// ---------------------------------------------------------------------------------------------

/// A step with `on_error: continue` that fails lets the next step run, with `{error}` as its
/// output, and the run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_continue_lets_the_run_go_on() {
    let refusing = Sink::start_with(Behaviour {
        fail_first: usize::MAX,
        failure: Failure::Status(400),
        delay: Duration::ZERO,
    })
    .await;
    let accepting = Sink::start().await;
    let (bad_url, good_url) = (refusing.url("/bad"), accepting.url("/good"));
    let h = Harness::start(
        &flow(
            r#"steps:
  - id: bad
    on_error: continue
    http:
      url: "@BAD@"
      body: {guest: "{{entity.id}}"}
      retry: {attempts: 3, delay: 100ms}
  - id: after
    http:
      url: "@GOOD@"
      body:
        guest: "{{entity.id}}"
        earlier_error: "{{steps.bad.error}}"
"#,
            &[("@BAD@", &bad_url), ("@GOOD@", &good_url)],
        ),
        &[],
    )
    .await;
    let run_id = h.post_guest("c1", json!({})).await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "succeeded", "{cx}");
    let bad = step(&run, "bad");
    assert_eq!(bad["status"], "failed", "{cx}");
    assert_eq!(attempts(bad).len(), 1, "{cx}");
    let error = bad["output"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("400"), "{cx}");
    assert_eq!(step(&run, "after")["status"], "succeeded", "{cx}");
    assert_eq!(refusing.count(), 1, "{:?}", refusing.requests());

    let requests = requests_at(&accepting, 1, &h).await;
    assert_eq!(
        requests[0].json(),
        Some(json!({"guest": "c1", "earlier_error": error})),
        "{}",
        body_text(&requests[0])
    );
}

// ---------------------------------------------------------------------------------------------
// secrets
// ---------------------------------------------------------------------------------------------

/// A distinctive secret: `+ / = &` make its URL-encoded forms differ from it, and no character
/// needs JSON escaping, so a stored copy would show up byte for byte.
const SECRET: &str = "Tk9-fl0wd+s3cr3t/Z=q&x";
const SECRET_VAR: &str = "FLOWD_SECRET_API_TOKEN";

/// The secret and the encodings it travels in, each with a name for failure messages.
fn secret_forms(extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut forms = vec![
        ("raw".to_owned(), SECRET.to_owned()),
        ("base64".to_owned(), STANDARD.encode(SECRET)),
        ("base64 unpadded".to_owned(), STANDARD_NO_PAD.encode(SECRET)),
        ("base64url".to_owned(), URL_SAFE.encode(SECRET)),
        (
            "base64url unpadded".to_owned(),
            URL_SAFE_NO_PAD.encode(SECRET),
        ),
        (
            "percent-encoded".to_owned(),
            utf8_percent_encode(SECRET, NON_ALPHANUMERIC).to_string(),
        ),
        (
            "form-urlencoded".to_owned(),
            url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect(),
        ),
    ];
    forms.extend(extra.iter().map(|(n, v)| ((*n).to_owned(), v.clone())));
    forms
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Names of the forms found in `bytes`, prefixed with `place`.
fn leaks(place: &str, bytes: &[u8], forms: &[(String, String)]) -> Vec<String> {
    forms
        .iter()
        .filter(|(_, form)| contains(bytes, form.as_bytes()))
        .map(|(name, _)| format!("{place}: the {name} form of the secret"))
        .collect()
}

/// Every file of the SQLite database (`flowd.db`, `-wal`, `-shm`) with its bytes.
fn database_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list the test folder")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("flowd.db"))
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            std::fs::read(entry.path()).ok().map(|bytes| (name, bytes))
        })
        .collect();
    files.sort();
    files
}

/// RUST_LOG for the secret tests: flowd's own debug lines (the attempt and retry logs), the
/// libraries at info.
const DEBUG_LOG: &str = "info,flowd=debug";

/// With `FLOWD_SECRET_API_TOKEN` used as bearer auth, in a header, in the query, in the body
/// (as is, base64- and URL-encoded by helpers) and as a basic-auth password, the secret reaches
/// the target, and neither it nor its base64 or URL-encoded forms appear in the database files,
/// in flowd's output, or in the API's answer (`curl` included). The first attempt gets a 500,
/// so the retry path is covered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_the_database_logs_and_api() {
    let sink = Sink::start_with(Behaviour {
        fail_first: 1,
        failure: Failure::Status(500),
        delay: Duration::ZERO,
    })
    .await;
    let base = sink.url("");
    let mut h = Harness::start(
        &flow(
            r#"steps:
  - id: lead
    map: {guest: "{{entity.id}}"}
  - id: push
    http:
      url: "@BASE@/secret"
      query: {key: "{{secrets.API_TOKEN}}"}
      headers: {X-Api-Key: "{{secrets.API_TOKEN}}", X-Trace: "t-{{secrets.API_TOKEN}}-t"}
      auth: {bearer: "{{secrets.API_TOKEN}}"}
      body:
        token: "{{secrets.API_TOKEN}}"
        note: "uses {{secrets.API_TOKEN}} inside"
        b64: "{{base64 secrets.API_TOKEN}}"
        url: "{{url_encode secrets.API_TOKEN}}"
      retry: {attempts: 3, delay: 100ms}
  - id: basic
    http:
      url: "@BASE@/basic"
      auth: {basic: {username: robot, password: "{{secrets.API_TOKEN}}"}}
      body: {guest: "{{entity.id}}"}
"#,
            &[("@BASE@", &base)],
        ),
        &[(SECRET_VAR, SECRET), ("RUST_LOG", DEBUG_LOG)],
    )
    .await;
    let run_id = h.post_guest("s1", json!({})).await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "succeeded", "{cx}");

    // The secret did its job at the target, in every place the flow put it.
    let requests = requests_at(&sink, 3, &h).await;
    let pushes: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/secret"))
        .collect();
    assert_eq!(pushes.len(), 2, "{requests:?}");
    let url_encoded: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    let push = pushes[1];
    assert_eq!(push.path, format!("/secret?key={url_encoded}"));
    assert_eq!(
        push.header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(push.header("x-api-key"), Some(SECRET));
    assert_eq!(
        push.header("x-trace"),
        Some(format!("t-{SECRET}-t").as_str())
    );
    let body = push.json().unwrap_or_default();
    assert_eq!(body["token"], SECRET, "{}", body_text(push));
    assert_eq!(body["note"], format!("uses {SECRET} inside"));
    assert_eq!(body["b64"], STANDARD.encode(SECRET));
    let helper_encoded = body["url"].as_str().unwrap_or_default().to_owned();
    assert!(
        helper_encoded.len() > SECRET.len() && helper_encoded.contains('%'),
        "url_encode gave {helper_encoded:?}"
    );
    let basic = requests
        .iter()
        .find(|r| r.path == "/basic")
        .unwrap_or_else(|| panic!("no basic-auth request: {requests:?}"));
    let credentials = STANDARD.encode(format!("robot:{SECRET}"));
    assert_eq!(
        basic.header("authorization"),
        Some(format!("Basic {credentials}").as_str())
    );
    let forms = secret_forms(&[
        ("url_encode helper", helper_encoded),
        ("basic credentials", credentials),
    ]);

    // The run log shows the requests, redacted.
    let tries = attempts(step(&run, "push"));
    assert_eq!(tries.len(), 2, "{cx}");
    for attempt in tries {
        let request = &attempt["request"];
        assert_eq!(
            recorded_header(request, "authorization"),
            Some("***"),
            "{cx}"
        );
        assert_eq!(recorded_header(request, "x-api-key"), Some("***"), "{cx}");
        // Rendered by a template that reads a secret: secret as a whole.
        assert_eq!(recorded_header(request, "x-trace"), Some("***"), "{cx}");
        assert!(
            request["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("?key=***")),
            "{cx}"
        );
        let recorded_body: Value =
            serde_json::from_str(request["body"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(recorded_body["token"], "***", "{cx}");
        assert_eq!(recorded_body["note"], "***", "{cx}");
        assert_eq!(recorded_body["b64"], "***", "{cx}");
        assert_eq!(recorded_body["url"], "***", "{cx}");
        let curl = attempt["curl"].as_str().unwrap_or_default();
        assert!(curl.contains("curl") && curl.contains("***"), "{cx}");
    }

    let mut found = Vec::new();
    // The API's answers.
    let api = h.flowd.api();
    let answer = api
        .get_run(&run_id)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{cx}"))
        .unwrap_or_default();
    found.extend(leaks(
        "GET /api/v1/runs/{id}",
        answer.to_string().as_bytes(),
        &forms,
    ));
    let listed = api
        .list_runs(None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{cx}"));
    found.extend(leaks(
        "GET /api/v1/runs",
        json!(listed).to_string().as_bytes(),
        &forms,
    ));
    // The database, while the engine runs (recent pages live in the WAL)…
    for (name, bytes) in database_files(h.dir.path()) {
        found.extend(leaks(&format!("{name} (running)"), &bytes, &forms));
    }
    // …and after an orderly stop, which checkpoints the WAL into the main file.
    if let Err(error) = h.flowd.terminate(Duration::from_secs(30)).await {
        found.push(error);
    }
    let files = database_files(h.dir.path());
    assert!(
        files.iter().any(|(name, _)| name == "flowd.db"),
        "no database file"
    );
    for (name, bytes) in files {
        found.extend(leaks(&format!("{name} (stopped)"), &bytes, &forms));
    }
    // Everything flowd wrote to stdout and stderr, at debug level for flowd itself.
    let (lines, total) = h.flowd.output_lines();
    assert_eq!(lines.len(), total, "some output lines were dropped");
    assert!(
        lines.iter().any(|l| l.contains("HTTP attempt finished")),
        "the debug log of attempts is missing, so the log check proves little"
    );
    found.extend(leaks("flowd output", lines.join("\n").as_bytes(), &forms));
    assert!(
        found.is_empty(),
        "the secret leaked:\n- {}\n{cx}",
        found.join("\n- ")
    );
}

/// A secret in a notification's text is delivered (the email carries it), but the attempt the
/// run log records and the stored inbox notification show `***` (SPEC §2: secrets are always
/// `***` in stored requests and API output).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_notifications_are_redacted_in_records() {
    let smtp = SmtpSink::start().await;
    let smtp_url = smtp.url();
    let mut h = Harness::start(
        &flow(
            r#"steps:
  - id: tell
    notify:
      channel: email
      to: ops@example.com
      subject: "Token {{secrets.API_TOKEN}}"
      text: "The token is {{secrets.API_TOKEN}}."
  - id: note
    notify:
      channel: inbox
      subject: "Token {{secrets.API_TOKEN}}"
      text: "The token is {{secrets.API_TOKEN}}."
"#,
            &[],
        ),
        &[
            (SECRET_VAR, SECRET),
            ("FLOWD_SMTP_URL", &smtp_url),
            ("RUST_LOG", DEBUG_LOG),
        ],
    )
    .await;
    let run_id = h.post_guest("s2", json!({})).await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "succeeded", "{cx}");
    let mails = smtp
        .wait_for(1, ARRIVAL_DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{cx}"));
    assert_eq!(
        mails[0].subject.as_deref(),
        Some(format!("Token {SECRET}").as_str())
    );
    assert_eq!(mails[0].body.trim_end(), format!("The token is {SECRET}."));

    let recorded = &attempts(step(&run, "tell"))[0]["request"];
    assert_eq!(recorded["subject"], "Token ***", "{cx}");
    assert_eq!(recorded["text"], "The token is ***.", "{cx}");
    let stored = inbox_rows(&h.database_url, &run_id).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        (stored[0][3].as_str(), stored[0][4].as_str()),
        ("Token ***", "The token is ***."),
        "{cx}"
    );

    let forms = secret_forms(&[]);
    let mut found = leaks("GET /api/v1/runs/{id}", run.to_string().as_bytes(), &forms);
    if let Err(error) = h.flowd.terminate(Duration::from_secs(30)).await {
        found.push(error);
    }
    for (name, bytes) in database_files(h.dir.path()) {
        found.extend(leaks(&name, &bytes, &forms));
    }
    let (lines, _) = h.flowd.output_lines();
    found.extend(leaks("flowd output", lines.join("\n").as_bytes(), &forms));
    assert!(
        found.is_empty(),
        "the secret leaked:\n- {}\n{cx}",
        found.join("\n- ")
    );
}

/// A `map` step that copies a secret: the output shown by the API shows `***` (SPEC §2), while
/// the next step still sends the real value. The step's stored output keeps the value (a run
/// resumed after a crash feeds it to later steps), like the step's own input would; stored
/// requests and logs never hold it (see `secrets_stay_out_of_the_database_logs_and_api`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_copied_by_a_map_step_is_not_shown() {
    let sink = Sink::start().await;
    let url = sink.url("/mapped");
    let h = Harness::start(
        &flow(
            r#"steps:
  - id: creds
    map: {token: "{{secrets.API_TOKEN}}"}
  - id: push
    http:
      url: "@URL@"
      body: "{{steps.creds}}"
"#,
            &[("@URL@", &url)],
        ),
        &[(SECRET_VAR, SECRET)],
    )
    .await;
    let run_id = h.post_guest("s3", json!({})).await;
    let run = h.run_to_end(&run_id).await;
    let cx = h.context(&run);
    assert_eq!(run["status"], "succeeded", "{cx}");
    let requests = requests_at(&sink, 1, &h).await;
    assert_eq!(requests[0].json(), Some(json!({"token": SECRET})));

    let forms = secret_forms(&[]);
    let found = leaks("GET /api/v1/runs/{id}", run.to_string().as_bytes(), &forms);
    assert_eq!(run["steps"][0]["output"]["token"], "***", "{cx}");
    assert!(
        found.is_empty(),
        "the secret leaked:\n- {}\n{cx}",
        found.join("\n- ")
    );
}
