//! The SSRF table (#21, SPEC §4): every spelling of a refused address flowd's outbound client is
//! handed — decimal, octal, hex, short and mixed forms, IPv6-mapped, a trailing dot, userinfo
//! tricks, upper case — directly, behind a redirect from an allowed server, and behind a name
//! that resolves to it through the client's host table (the resolver hook tests use instead of
//! DNS; its answers pass the same policy check). Each is refused before anything is sent.
//!
//! Nothing can listen on 169.254.169.254 here, so "nothing sent" is shown two ways: for the
//! metadata and link-local spellings the attempt reports `NotSent` with the refused address
//! named; for the same spellings of 127.0.0.2, made refused with `FLOWD_HTTP_DENY`, a listener
//! on that address counts the connections, and must count none. Allow-lists let exactly their
//! ranges through, never the always-refused ones.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use flowd::metrics::HttpOutcome;
use flowd::outbound::guard::NetPolicy;
use flowd::outbound::record::Redactor;
use flowd::outbound::{HttpClient, Method, OutboundRequest, Outcome};
use tokio::net::TcpListener;

use crate::support::sink::Sink;

/// Spellings of 169.254.169.254 (the cloud metadata service), with the address the refusal
/// names: IPv6 forms are named as written, their embedded IPv4 address is what is refused.
const METADATA: [(&str, &str); 16] = [
    (
        "http://169.254.169.254/latest/meta-data/",
        "169.254.169.254",
    ),
    ("http://2852039166/", "169.254.169.254"),
    ("http://0xa9fea9fe/", "169.254.169.254"),
    ("http://0XA9FEA9FE/", "169.254.169.254"),
    ("http://0251.0376.0251.0376/", "169.254.169.254"),
    ("http://0xa9.0xfe.0xa9.0xfe/", "169.254.169.254"),
    ("http://169.254.43518/", "169.254.169.254"),
    ("http://169.16689662/", "169.254.169.254"),
    ("http://169.254.169.254./", "169.254.169.254"),
    ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254"),
    ("http://[::ffff:a9fe:a9fe]/", "::ffff:169.254.169.254"),
    ("http://[::169.254.169.254]/", "::a9fe:a9fe"),
    ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe"),
    ("http://127.0.0.1@169.254.169.254/", "169.254.169.254"),
    ("http://user:pass@169.254.169.254:80/", "169.254.169.254"),
    ("https://169.254.169.254/", "169.254.169.254"),
];

/// Other always-refused targets: link-local v4 and v6, AWS's IPv6 and Alibaba's metadata.
const OTHER_REFUSED: [(&str, &str); 6] = [
    ("http://169.254.0.1/", "169.254.0.1"),
    ("http://[fe80::1]/", "fe80::1"),
    ("http://[FE80::abcd]/", "fe80::abcd"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
    ("http://100.100.100.200/", "100.100.100.200"),
    ("http://1684301000/", "100.100.100.200"),
];

/// Spellings of `127.0.0.2:{port}`, for the listener that counts connections.
fn spellings_of_127_0_0_2(port: u16) -> Vec<(String, &'static str)> {
    [
        ("http://127.0.0.2:{p}/", "127.0.0.2"),
        ("http://2130706434:{p}/", "127.0.0.2"),
        ("http://0x7f000002:{p}/", "127.0.0.2"),
        ("http://0177.0.0.02:{p}/", "127.0.0.2"),
        ("http://0x7f.0.0.2:{p}/", "127.0.0.2"),
        ("http://127.2:{p}/", "127.0.0.2"),
        ("http://127.0.2:{p}/", "127.0.0.2"),
        ("http://127.0.0.2.:{p}/", "127.0.0.2"),
        ("http://[::ffff:127.0.0.2]:{p}/", "::ffff:127.0.0.2"),
        ("http://[::ffff:7f00:2]:{p}/", "::ffff:127.0.0.2"),
        ("http://127.0.0.1:{p}@127.0.0.2:{p}/", "127.0.0.2"),
        ("http://user:pass@127.0.0.2:{p}/x?y=1#z", "127.0.0.2"),
        ("http://blocked.test:{p}/", "127.0.0.2"),
        ("http://BLOCKED.TEST:{p}/", "127.0.0.2"),
    ]
    .into_iter()
    .map(|(url, address)| (url.replace("{p}", &port.to_string()), address))
    .collect()
}

#[tokio::test]
async fn every_spelling_of_a_refused_address_is_refused_before_sending() {
    let (listener, connections) = counting_listener("127.0.0.2:0").await;
    let client = client(&[("FLOWD_HTTP_DENY", "127.0.0.2/32")]);
    let mut problems = Vec::new();
    let metadata = METADATA.map(|(url, address)| (url.to_owned(), address));
    let others = OTHER_REFUSED.map(|(url, address)| (url.to_owned(), address));
    let local = spellings_of_127_0_0_2(listener.port());
    let table: Vec<(String, &str)> = metadata.into_iter().chain(others).chain(local).collect();
    for (url, address) in &table {
        problems.extend(refusal_problem(&client, url, address).await);
    }
    // The same targets behind a redirect from an allowed server: the hop is refused.
    for (target, address) in &table {
        let server = redirect_server(target).await;
        problems.extend(
            refusal_problem(&client, &server.url, address)
                .await
                .map(|p| format!("redirect: {p}")),
        );
        if server.requests() != 1 {
            problems.push(format!(
                "the redirect to {target} was asked {} times",
                server.requests()
            ));
        }
    }
    tokio::task::yield_now().await;
    let connected = connections.load(Ordering::SeqCst);
    if connected != 0 {
        problems.push(format!("127.0.0.2 received {connected} connections"));
    }
    println!(
        "SSRF table: {} spellings, directly and behind a redirect; {connected} connections",
        table.len()
    );
    assert!(
        problems.is_empty(),
        "SSRF table:\n- {}",
        problems.join("\n- ")
    );
}

#[tokio::test]
async fn an_allow_list_admits_exactly_its_ranges_and_never_the_metadata_service() {
    let inside = Sink::start().await; // on 127.0.0.1
    let (outside, outside_connections) = counting_listener("127.0.0.3:0").await;
    let client = client(&[("FLOWD_HTTP_ALLOW", "127.0.0.1/32,169.254.0.0/16")]);
    let attempt = send(&client, &inside.url("/ok")).await;
    assert!(
        matches!(attempt.outcome, Outcome::Succeeded { .. }),
        "an allowed address is reached: {:?}",
        attempt.outcome
    );
    assert_eq!(inside.count(), 1);
    let refused = refusal_problem(&client, &format!("http://{outside}/"), "127.0.0.3").await;
    assert_eq!(refused, None, "outside the allow-list");
    let redirect = redirect_server(&format!("http://{outside}/")).await;
    assert_eq!(
        refusal_problem(&client, &redirect.url, "127.0.0.3").await,
        None,
        "a redirect out of the allow-list"
    );
    // Listing the metadata range does not open it: it is always refused.
    for (url, address) in METADATA {
        assert_eq!(refusal_problem(&client, url, address).await, None, "{url}");
    }
    tokio::task::yield_now().await;
    assert_eq!(outside_connections.load(Ordering::SeqCst), 0);
}

/// `None` when sending to `url` was refused, naming `address`, with nothing sent.
async fn refusal_problem(client: &HttpClient, url: &str, address: &str) -> Option<String> {
    let attempt = send(client, url).await;
    let expected = format!("address {address} is refused by the network policy");
    let refused = matches!(&attempt.outcome, Outcome::Fail { error, .. } if *error == expected);
    // A refused redirect hop comes after one answer; the refused target itself gets nothing.
    let unsent = matches!(
        attempt.delivery,
        HttpOutcome::NotSent | HttpOutcome::HttpError
    );
    (!refused || !unsent || attempt.record.response.is_some()).then(|| {
        format!(
            "{url}: expected \"{expected}\" with nothing sent, got {:?} ({:?})",
            attempt.outcome, attempt.delivery
        )
    })
}

async fn send(client: &HttpClient, url: &str) -> flowd::outbound::Attempt {
    let request = OutboundRequest {
        timeout: std::time::Duration::from_secs(5),
        ..OutboundRequest::new(Method::Get, url.to_owned(), "run_step".to_owned())
    };
    client.attempt(&request, &Redactor::default()).await
}

/// The client of a flowd configured with `vars`, and a host table standing in for DNS.
fn client(vars: &[(&str, &str)]) -> HttpClient {
    let policy = NetPolicy::from_lookup(|name| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    })
    .expect("a valid policy");
    let blocked: IpAddr = "127.0.0.2".parse().expect("an address");
    let hosts = HashMap::from([("blocked.test".to_owned(), vec![blocked])]);
    HttpClient::with_hosts(policy, hosts).expect("the client builds")
}

/// A listener that accepts and counts connections and never answers.
async fn counting_listener(bind: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(bind).await.expect("bind the listener");
    let addr = listener.local_addr().expect("its address");
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

/// A server on 127.0.0.1 that answers every request with a redirect to `target`.
struct Redirect {
    url: String,
    asked: Arc<AtomicUsize>,
}

impl Redirect {
    fn requests(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

async fn redirect_server(target: &str) -> Redirect {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/start", listener.local_addr().expect("address"));
    let asked = Arc::new(AtomicUsize::new(0));
    let (counter, target) = (asked.clone(), target.to_owned());
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let target = target.clone();
        async move { (StatusCode::FOUND, [("location", target)]).into_response() }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Redirect { url, asked }
}
