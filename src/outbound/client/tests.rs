//! Integration-style tests of [`HttpClient::attempt`] against real servers on loopback ports:
//! axum servers that record what they receive, raw TCP listeners that count connections or never
//! answer, and no mocks. Targets that must be refused are never listened on by anything but
//! connection counters, so a test also proves that no byte was sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use serde_json::json;

use super::*;
use crate::outbound::record::{BODY_LIMIT, curl_command};
use crate::outbound::sign::{SignatureHeaders, verify};
use crate::outbound::{Credentials, Format};

/// One request as a test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: AxumHeaders,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Reply = Arc<dyn Fn(usize, &Seen) -> Response + Send + Sync>;
type Log = Arc<Mutex<Vec<Seen>>>;

struct Server {
    addr: SocketAddr,
    log: Log,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().expect("log lock").clone()
    }
}

/// An axum server on `bind` that records each request and answers with `reply(n, request)`.
async fn serve_on(
    bind: &str,
    reply: impl Fn(usize, &Seen) -> Response + Send + Sync + 'static,
) -> Server {
    let listener = TcpListener::bind(bind).await.expect("bind test server");
    let addr = listener.local_addr().expect("local addr");
    let log: Log = Arc::default();
    let state: (Log, Reply) = (log.clone(), Arc::new(reply));
    let app = Router::new().fallback(record_and_reply).with_state(state);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("test server stopped: {error}");
        }
    });
    Server { addr, log }
}

async fn serve(reply: impl Fn(usize, &Seen) -> Response + Send + Sync + 'static) -> Server {
    serve_on("127.0.0.1:0", reply).await
}

async fn ok_server() -> Server {
    serve(|_, _| (AxumStatus::OK, "ok").into_response()).await
}

async fn record_and_reply(
    State((log, reply)): State<(Log, Reply)>,
    method: axum::http::Method,
    uri: Uri,
    headers: AxumHeaders,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.to_string(),
        uri: uri.to_string(),
        headers,
        body: body.to_vec(),
    };
    let n = {
        let mut log = log.lock().expect("log lock");
        log.push(seen.clone());
        log.len() - 1
    };
    reply(n, &seen)
}

/// A listener that accepts connections, counts them and never answers.
async fn silent_listener(bind: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(bind).await.expect("bind silent listener");
    let addr = listener.local_addr().expect("local addr");
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (addr, count)
}

fn redirect_to(location: String) -> impl Fn(usize, &Seen) -> Response + Send + Sync + 'static {
    move |_, _| (AxumStatus::FOUND, [("location", location.clone())]).into_response()
}

fn request(url: &str) -> OutboundRequest {
    OutboundRequest {
        method: Method::Post,
        url: url.to_owned(),
        headers: Vec::new(),
        query: Vec::new(),
        auth: None,
        body: Some(json!({"guest": 42})),
        format: Format::Json,
        timeout: Duration::from_secs(5),
        idempotency_key: "run-1_push".to_owned(),
        sign_secrets: Vec::new(),
        tls: None,
    }
}

fn client() -> HttpClient {
    HttpClient::new(NetPolicy::default()).expect("client")
}

fn client_with(vars: &[(&str, &str)]) -> HttpClient {
    let policy = NetPolicy::from_lookup(|name| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    })
    .expect("policy");
    HttpClient::new(policy).expect("client")
}

async fn send(client: &HttpClient, req: &OutboundRequest) -> Attempt {
    client.attempt(req, &Redactor::default()).await
}

fn error_of(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Succeeded { .. } => "",
        Outcome::Retry { error, .. } | Outcome::Fail { error, .. } => error,
    }
}

fn assert_refused(attempt: &Attempt, address: &str) {
    assert_eq!(attempt.delivery, HttpOutcome::NotSent, "{address}");
    match &attempt.outcome {
        Outcome::Fail { error, output } => {
            assert_eq!(
                error,
                &format!("address {address} is refused by the network policy")
            );
            assert!(output.is_none());
        }
        other => panic!("expected a refusal of {address}, got {other:?}"),
    }
    assert!(attempt.record.response.is_none());
    assert_eq!(
        attempt.record.error.as_deref(),
        Some(error_of(&attempt.outcome))
    );
}

#[tokio::test]
async fn server_errors_then_success_are_retry_retry_succeeded() {
    let server = serve(|n, _| match n {
        0 | 1 => (AxumStatus::INTERNAL_SERVER_ERROR, "boom").into_response(),
        _ => (
            AxumStatus::OK,
            [("content-type", "application/json")],
            r#"{"id":7}"#,
        )
            .into_response(),
    })
    .await;
    let client = client();
    let req = request(&server.url("/contacts"));
    let mut outcomes = Vec::new();
    let mut deliveries = Vec::new();
    for _ in 0..3 {
        let attempt = send(&client, &req).await;
        outcomes.push(attempt.outcome);
        deliveries.push(attempt.delivery);
    }
    assert_eq!(
        deliveries,
        [
            HttpOutcome::HttpError,
            HttpOutcome::HttpError,
            HttpOutcome::Success
        ]
    );
    assert_eq!(
        outcomes[0],
        Outcome::Retry {
            error: "HTTP 500 Internal Server Error".to_owned(),
            retry_after: None
        }
    );
    assert!(matches!(outcomes[1], Outcome::Retry { .. }));
    let Outcome::Succeeded { output } = &outcomes[2] else {
        panic!("third attempt should succeed: {:?}", outcomes[2]);
    };
    assert_eq!(output["status"], 200);
    assert_eq!(output["body"], json!({"id": 7}));
    assert_eq!(output["headers"]["content-type"], "application/json");
    assert_eq!(server.seen().len(), 3);
    let keys: Vec<_> = server
        .seen()
        .iter()
        .map(|s| s.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        vec![Some("run-1_push".to_owned()); 3],
        "same key every attempt"
    );
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let server = serve(|_, _| {
        (
            AxumStatus::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response()
    })
    .await;
    let attempt = send(&client(), &request(&server.url("/"))).await;
    assert_eq!(
        attempt.outcome,
        Outcome::Retry {
            error: "HTTP 429 Too Many Requests".to_owned(),
            retry_after: Some(Duration::from_secs(1))
        }
    );
    let response = attempt.record.response.expect("response recorded");
    assert_eq!(response.status, 429);
    assert_eq!(response.body, "slow down");
}

#[tokio::test]
async fn request_timeout_status_is_retried() {
    let server = serve(|_, _| AxumStatus::REQUEST_TIMEOUT.into_response()).await;
    let attempt = send(&client(), &request(&server.url("/"))).await;
    assert!(matches!(
        attempt.outcome,
        Outcome::Retry {
            retry_after: None,
            ..
        }
    ));
}

#[tokio::test]
async fn client_error_fails_with_the_response_recorded() {
    let server = serve(|_, _| {
        (
            AxumStatus::BAD_REQUEST,
            [("content-type", "application/problem+json")],
            r#"{"error":"email is required"}"#,
        )
            .into_response()
    })
    .await;
    let attempt = send(&client(), &request(&server.url("/"))).await;
    let Outcome::Fail { error, output } = &attempt.outcome else {
        panic!("400 should fail: {:?}", attempt.outcome);
    };
    assert_eq!(error, "HTTP 400 Bad Request");
    let output = output.as_ref().expect("output with the response");
    assert_eq!(output["status"], 400);
    assert_eq!(output["body"]["error"], "email is required");
    let response = attempt.record.response.expect("response recorded");
    assert_eq!(response.body, r#"{"error":"email is required"}"#);
    assert!(!response.truncated);
    assert_eq!(
        attempt.record.error.as_deref(),
        Some("HTTP 400 Bad Request")
    );
}

#[tokio::test]
async fn silent_server_times_out_after_the_attempt_timeout() {
    let (addr, connections) = silent_listener("127.0.0.1:0").await;
    let mut req = request(&format!("http://{addr}/"));
    req.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let attempt = send(&client(), &req).await;
    let elapsed = started.elapsed();
    assert_eq!(
        attempt.outcome,
        Outcome::Retry {
            error: "timed out after 300ms".to_owned(),
            retry_after: None
        }
    );
    assert!(elapsed >= Duration::from_millis(280), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(attempt.record.duration_ms >= 280);
    assert_eq!(attempt.delivery, HttpOutcome::Timeout);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connection_refused_is_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let attempt = send(&client(), &request(&format!("http://{addr}/"))).await;
    let Outcome::Retry { error, retry_after } = &attempt.outcome else {
        panic!(
            "refused connection should be retried: {:?}",
            attempt.outcome
        );
    };
    assert!(retry_after.is_none());
    assert!(error.contains("onnect"), "{error}");
    assert!(attempt.record.response.is_none());
    assert_eq!(attempt.delivery, HttpOutcome::ConnectionError);
}

#[tokio::test]
async fn name_without_addresses_is_retried() {
    // A host table entry without addresses fails resolution like an unknown name, without
    // sending a DNS query off the machine.
    let hosts = HashMap::from([("nowhere.test".to_owned(), Vec::new())]);
    let client = HttpClient::with_hosts(NetPolicy::default(), hosts).expect("client");
    let attempt = send(&client, &request("http://nowhere.test/")).await;
    assert!(error_of(&attempt.outcome).contains("returned no address"));
    assert!(
        matches!(attempt.outcome, Outcome::Retry { .. }),
        "{:?}",
        attempt.outcome
    );
}

#[tokio::test]
async fn bodies_arrive_as_specified() {
    let server = ok_server().await;
    let client = client();
    let body = json!({"age": 36, "name": "Ada & co"});
    let cases = [
        (
            Format::Json,
            r#"{"age":36,"name":"Ada & co"}"#,
            "application/json",
        ),
        (
            Format::Form,
            "age=36&name=Ada+%26+co",
            "application/x-www-form-urlencoded",
        ),
        (
            Format::Xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><root><age>36</age><name>Ada &amp; co</name></root>"#,
            "application/xml",
        ),
    ];
    for (format, expected_body, _) in cases {
        let mut req = request(&server.url("/"));
        req.format = format;
        req.body = Some(body.clone());
        let attempt = send(&client, &req).await;
        assert!(matches!(attempt.outcome, Outcome::Succeeded { .. }));
        assert_eq!(attempt.record.request.body.as_deref(), Some(expected_body));
    }
    let mut req = request(&server.url("/"));
    req.format = Format::Text;
    req.body = Some(json!("plain text\nline 2"));
    send(&client, &req).await;
    let seen = server.seen();
    let received: Vec<_> = seen
        .iter()
        .map(|s| (s.body_text(), s.header("content-type").map(str::to_owned)))
        .collect();
    for (i, (_, expected_body, expected_type)) in cases.iter().enumerate() {
        assert_eq!(received[i].0, *expected_body);
        assert_eq!(received[i].1.as_deref(), Some(*expected_type));
    }
    assert_eq!(received[3].0, "plain text\nline 2");
    assert_eq!(received[3].1.as_deref(), Some("text/plain; charset=utf-8"));
}

#[tokio::test]
async fn explicit_content_type_wins_and_get_sends_its_body() {
    let server = ok_server().await;
    let mut req = request(&server.url("/"));
    req.method = Method::Get;
    req.headers = vec![(
        "Content-Type".to_owned(),
        "application/vnd.crm+json".to_owned(),
    )];
    send(&client(), &req).await;
    let seen = &server.seen()[0];
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.header("content-type"),
        Some("application/vnd.crm+json")
    );
    assert_eq!(seen.body_text(), r#"{"guest":42}"#);
}

#[tokio::test]
async fn null_body_sends_nothing() {
    let server = ok_server().await;
    let mut req = request(&server.url("/"));
    req.body = Some(Value::Null);
    let attempt = send(&client(), &req).await;
    assert_eq!(attempt.record.request.body, None);
    let seen = &server.seen()[0];
    assert!(seen.body.is_empty());
    assert_eq!(seen.header("content-type"), None);
}

#[tokio::test]
async fn headers_query_and_auth_arrive() {
    let server = ok_server().await;
    let client = client();
    let mut req = request(&server.url("/contacts?existing=1"));
    req.query = vec![
        ("source".to_owned(), "flowd".to_owned()),
        ("q".to_owned(), "a b&c".to_owned()),
    ];
    req.headers = vec![
        ("X-Tenant".to_owned(), "acme".to_owned()),
        ("Idempotency-Key".to_owned(), "from-the-flow".to_owned()),
    ];
    req.auth = Some(Credentials::Basic {
        username: "ada".to_owned(),
        password: "pw".to_owned(),
    });
    send(&client, &req).await;
    req.auth = Some(Credentials::Bearer("tok".to_owned()));
    send(&client, &req).await;
    let seen = server.seen();
    assert_eq!(seen[0].uri, "/contacts?existing=1&source=flowd&q=a+b%26c");
    assert_eq!(seen[0].header("x-tenant"), Some("acme"));
    assert_eq!(seen[0].header("idempotency-key"), Some("run-1_push"));
    assert_eq!(seen[0].header("authorization"), Some("Basic YWRhOnB3"));
    assert_eq!(seen[1].header("authorization"), Some("Bearer tok"));
    assert!(
        seen[0]
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("flowd/"))
    );
}

#[tokio::test]
async fn signed_request_verifies() {
    let server = ok_server().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut req = request(&server.url("/hook"));
    req.sign_secrets = vec![secret.to_owned()];
    let before = Utc::now().timestamp();
    let attempt = send(&client(), &req).await;
    assert!(matches!(attempt.outcome, Outcome::Succeeded { .. }));
    let seen = &server.seen()[0];
    let id = seen.header("webhook-id").expect("webhook-id");
    let ts = seen.header("webhook-timestamp").expect("webhook-timestamp");
    let signature = seen.header("webhook-signature").expect("webhook-signature");
    assert_eq!(id, "run-1_push");
    let ts_num: i64 = ts.parse().expect("numeric timestamp");
    assert!((before..=before + 5).contains(&ts_num));

    // An independent computation, straight from the Standard Webhooks text.
    let key = STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .expect("key");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&seen.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(signature, expected);

    let headers = SignatureHeaders::from_header_map(&seen.headers);
    assert_eq!(verify(secret, &headers, &seen.body, ts_num, 300), Ok(()));
    let recorded = &attempt.record.request.headers;
    assert!(recorded.contains(&("webhook-signature".to_owned(), expected)));
}

#[tokio::test]
async fn metadata_targets_are_refused() {
    let client = client();
    for (url, address) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
        ),
        ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254"),
        ("http://2852039166/", "169.254.169.254"),
        ("http://0xa9fea9fe/", "169.254.169.254"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
        ("http://100.100.100.200/", "100.100.100.200"),
        ("http://[fe80::1]/", "fe80::1"),
    ] {
        let attempt = send(&client, &request(url)).await;
        assert_refused(&attempt, address);
    }
}

#[tokio::test]
async fn denied_literal_address_is_never_connected() {
    let (addr, connections) = silent_listener("127.0.0.2:0").await;
    let client = client_with(&[("FLOWD_HTTP_DENY", "127.0.0.2/32")]);
    let attempt = send(&client, &request(&format!("http://{addr}/"))).await;
    assert_refused(&attempt, "127.0.0.2");
    let mapped = format!("http://[::ffff:127.0.0.2]:{}/", addr.port());
    assert_refused(&send(&client, &request(&mapped)).await, "::ffff:127.0.0.2");
    tokio::task::yield_now().await;
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn host_names_are_checked_after_resolution() {
    let (blocked, connections) = silent_listener("127.0.0.2:0").await;
    let server = ok_server().await;
    let hosts = HashMap::from([
        (
            "metadata.test".to_owned(),
            vec!["169.254.169.254".parse().expect("ip")],
        ),
        ("blocked.test".to_owned(), vec![blocked.ip()]),
        ("sink.test".to_owned(), vec![server.addr.ip()]),
    ]);
    let policy = NetPolicy::new(
        vec!["127.0.0.2/32".parse().expect("net")],
        Vec::new(),
        false,
    );
    let client = HttpClient::with_hosts(policy, hosts).expect("client");
    let attempt = send(&client, &request("http://metadata.test/")).await;
    assert_refused(&attempt, "169.254.169.254");
    let url = format!("http://blocked.test:{}/", blocked.port());
    assert_refused(&send(&client, &request(&url)).await, "127.0.0.2");
    let url = format!("http://sink.test:{}/", server.addr.port());
    let attempt = send(&client, &request(&url)).await;
    assert!(
        matches!(attempt.outcome, Outcome::Succeeded { .. }),
        "resolver hook works"
    );
    tokio::task::yield_now().await;
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn redirects_are_checked_hop_by_hop() {
    let (blocked, connections) = silent_listener("127.0.0.2:0").await;
    let hosts = HashMap::from([("blocked.test".to_owned(), vec![blocked.ip()])]);
    let policy = NetPolicy::new(
        vec!["127.0.0.2/32".parse().expect("net")],
        Vec::new(),
        false,
    );
    let client = HttpClient::with_hosts(policy, hosts).expect("client");
    let cases = [
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254",
        ),
        (format!("http://{blocked}/"), "127.0.0.2"),
        (
            format!("http://blocked.test:{}/", blocked.port()),
            "127.0.0.2",
        ),
    ];
    for (target, address) in cases {
        let redirector = serve(redirect_to(target)).await;
        let attempt = send(&client, &request(&redirector.url("/start"))).await;
        assert_refused(&attempt, address);
        assert_eq!(redirector.seen().len(), 1);
    }
    tokio::task::yield_now().await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "redirect target contacted"
    );
}

#[tokio::test]
async fn allowed_redirects_are_followed_up_to_five() {
    let sink = ok_server().await;
    let redirector = serve(redirect_to(sink.url("/landed"))).await;
    let attempt = send(&client(), &request(&redirector.url("/"))).await;
    assert!(matches!(attempt.outcome, Outcome::Succeeded { .. }));
    assert_eq!(sink.seen()[0].uri, "/landed");

    let looping = serve(|n, _| {
        (AxumStatus::FOUND, [("location", format!("/hop/{}", n + 1))]).into_response()
    })
    .await;
    let attempt = send(&client(), &request(&looping.url("/hop/0"))).await;
    let Outcome::Fail { error, .. } = &attempt.outcome else {
        panic!("endless redirects should fail: {:?}", attempt.outcome);
    };
    assert!(error.contains("too many redirects"), "{error}");
    assert_eq!(
        looping.seen().len(),
        6,
        "the first request and five redirects"
    );
}

#[tokio::test]
async fn unfollowed_redirect_status_fails() {
    let server = serve(|_, _| AxumStatus::MULTIPLE_CHOICES.into_response()).await;
    let attempt = send(&client(), &request(&server.url("/"))).await;
    let Outcome::Fail { error, output } = &attempt.outcome else {
        panic!("300 should fail: {:?}", attempt.outcome);
    };
    assert_eq!(error, "HTTP 300 Multiple Choices");
    assert!(output.is_some());
}

#[tokio::test]
async fn allow_list_limits_targets() {
    let outside = ok_server().await;
    let inside = serve_on("127.0.0.2:0", |_, _| "ok".into_response()).await;
    let client = client_with(&[("FLOWD_HTTP_ALLOW", "127.0.0.2/32")]);
    let attempt = send(&client, &request(&outside.url("/"))).await;
    assert_refused(&attempt, "127.0.0.1");
    assert!(outside.seen().is_empty());
    let attempt = send(&client, &request(&inside.url("/"))).await;
    assert!(matches!(attempt.outcome, Outcome::Succeeded { .. }));
}

#[tokio::test]
async fn require_https_fails_plain_http_without_sending() {
    let server = ok_server().await;
    let client = client_with(&[("FLOWD_HTTP_REQUIRE_HTTPS", "true")]);
    let attempt = send(&client, &request(&server.url("/"))).await;
    let Outcome::Fail { error, .. } = &attempt.outcome else {
        panic!("plain http should fail: {:?}", attempt.outcome);
    };
    assert!(error.contains("FLOWD_HTTP_REQUIRE_HTTPS"), "{error}");
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn secrets_never_reach_the_record_or_curl() {
    let secret = "p@ss word/+=é";
    let server = serve(|_, seen| {
        let echo = seen.body_text();
        (
            [
                ("content-type", "application/json"),
                ("x-echo", "p@ss word/+=é"),
            ],
            echo,
        )
            .into_response()
    })
    .await;
    let redactor = Redactor::new([secret.to_owned()]);
    let encoded_path: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let mut req = request(&server.url(&format!("/users/{encoded_path}?token={secret}")));
    req.query = vec![("key".to_owned(), secret.to_owned())];
    req.headers = vec![
        ("X-Api-Key".to_owned(), secret.to_owned()),
        ("X-Encoded".to_owned(), STANDARD.encode(secret)),
    ];
    req.auth = Some(Credentials::Basic {
        username: "ada".to_owned(),
        password: secret.to_owned(),
    });
    req.body = Some(json!({
        "password": secret,
        "b64": STANDARD.encode(secret),
        "b64url": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    }));
    let attempt = client().attempt(&req, &redactor).await;
    let Outcome::Succeeded { output } = &attempt.outcome else {
        panic!("should succeed: {:?}", attempt.outcome);
    };
    let seen = &server.seen()[0];
    assert!(
        seen.body_text().contains("p@ss word"),
        "the real request carries the secret"
    );

    let record = serde_json::to_string(&attempt.record).expect("record JSON");
    let curl = curl_command(&attempt.record.request);
    let output = output.to_string();
    let forbidden = [
        secret.to_owned(),
        STANDARD.encode(secret),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        encoded_path,
        STANDARD.encode(format!("ada:{secret}")),
        "p@ss".to_owned(),
        "p%40ss".to_owned(),
    ];
    for text in [&record, &curl, &output] {
        for needle in &forbidden {
            assert!(
                !text.contains(needle.as_str()),
                "{needle:?} leaked into {text}"
            );
        }
        assert!(text.contains("***"));
    }
    assert!(curl.contains("-H 'authorization: ***'"), "{curl}");
}

#[tokio::test]
async fn response_body_is_cut_at_64_kib() {
    let big = "é".repeat(50 * 1024); // 100 KiB
    let server =
        serve(move |_, _| ([("content-type", "application/json")], big.clone()).into_response())
            .await;
    let attempt = send(&client(), &request(&server.url("/"))).await;
    let response = attempt.record.response.expect("response");
    assert!(response.truncated);
    assert_eq!(response.body.len(), BODY_LIMIT);
    let Outcome::Succeeded { output } = &attempt.outcome else {
        panic!("should succeed");
    };
    let body = output["body"].as_str().expect("truncated JSON stays text");
    assert_eq!(body.len(), BODY_LIMIT);
}

#[tokio::test]
async fn endless_body_is_not_downloaded() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        // Read the whole request (a GET: headers only) before answering.
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n";
        if socket.write_all(head).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 16 * 1024];
        // Bounded: 256 MiB at most, far more than the client may read.
        for _ in 0..16 * 1024 {
            if socket.write_all(&chunk).await.is_err() {
                return;
            }
            counter.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    });
    let mut req = request(&format!("http://{addr}/"));
    req.method = Method::Get;
    req.body = None;
    req.timeout = Duration::from_secs(10);
    let attempt = send(&client(), &req).await;
    assert!(
        matches!(attempt.outcome, Outcome::Succeeded { .. }),
        "{:?}",
        attempt.outcome
    );
    let response = attempt.record.response.expect("response");
    assert!(response.truncated);
    assert_eq!(response.body.len(), BODY_LIMIT);
    assert!(attempt.record.duration_ms < 5000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        written.load(Ordering::SeqCst) < 64 * 1024 * 1024,
        "the client stopped reading"
    );
}

#[tokio::test]
async fn bad_input_fails_with_a_clear_error() {
    let server = ok_server().await;
    let client = client();
    let url = server.url("/");
    let mut bad_name = request(&url);
    bad_name.headers = vec![("Bad Header".to_owned(), "x".to_owned())];
    let mut bad_value = request(&url);
    bad_value.headers = vec![("X-Multi".to_owned(), "a\r\nInjected: yes".to_owned())];
    let mut bad_form = request(&url);
    bad_form.format = Format::Form;
    bad_form.body = Some(json!([1, 2]));
    let mut bad_secret = request(&url);
    bad_secret.sign_secrets = vec!["whsec_!!!".to_owned()];
    let mut bad_bearer = request(&url);
    bad_bearer.auth = Some(Credentials::Bearer("a\nb".to_owned()));
    let cases = [
        (request(""), "invalid URL \"\""),
        (request("not a url"), "invalid URL"),
        (request("ftp://127.0.0.1/"), "scheme \"ftp\""),
        (bad_name, "invalid header name \"Bad Header\""),
        (bad_value, "invalid value for header \"X-Multi\""),
        (bad_form, "format form needs an object"),
        (bad_secret, "cannot sign the request"),
        (bad_bearer, "invalid value for header \"authorization\""),
    ];
    for (req, expected) in cases {
        let attempt = send(&client, &req).await;
        let Outcome::Fail { error, output } = &attempt.outcome else {
            panic!("{expected}: expected Fail, got {:?}", attempt.outcome);
        };
        assert!(
            error.contains(expected),
            "{error} should contain {expected}"
        );
        assert!(output.is_none());
        assert!(!error.contains("Injected: yes"));
    }
    assert!(server.seen().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn output_body_is_text_unless_json() {
    let server = serve(|n, _| match n {
        0 => ([("content-type", "text/plain")], r#"{"a":1}"#).into_response(),
        1 => (
            [("content-type", "application/json; charset=utf-8")],
            "not json",
        )
            .into_response(),
        _ => (AxumStatus::NO_CONTENT, [("x-multi", "a")]).into_response(),
    })
    .await;
    let client = client();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        match send(&client, &request(&server.url("/"))).await.outcome {
            Outcome::Succeeded { output } => bodies.push(output),
            other => panic!("should succeed: {other:?}"),
        }
    }
    assert_eq!(bodies[0]["body"], json!(r#"{"a":1}"#));
    assert_eq!(bodies[1]["body"], json!("not json"));
    assert_eq!(bodies[2]["status"], 204);
    assert_eq!(bodies[2]["body"], json!(""));
    assert_eq!(bodies[2]["headers"]["x-multi"], "a");
}

#[tokio::test]
async fn https_goes_through_rustls_with_ring() {
    // A peer that hangs up during the TLS handshake: the handshake runs (so a crypto provider
    // is installed) and the failure is a retryable transport error, not a panic.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let attempt = send(&client(), &request(&format!("https://{addr}/"))).await;
    assert!(
        matches!(attempt.outcome, Outcome::Retry { .. }),
        "{:?}",
        attempt.outcome
    );
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}
