//! Limits of the HTTP listener against clients that never finish: a `Content-Length` far over
//! the body limit is refused before the body is read, a body that trickles in is cut off with
//! 408, and a crowd of half-open connections (slowloris) neither exhausts the server nor keeps
//! other clients out. Each runs against a live server of an in-process engine, which uses the
//! listener of `flowd serve` (`flowd::api::listen`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::engine::{EngineSetup, TestEngine};

/// Generous: the answers checked here come at once or after a fixed server-side deadline.
const DEADLINE: Duration = Duration::from_secs(90);

async fn live_server() -> (TestEngine, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let mut engine = TestEngine::start(&EngineSetup::new(url, flows)).await;
    let base = engine.serve().await;
    let addr = base.trim_start_matches("http://").to_owned();
    (engine, addr, dir)
}

/// Sends `head` and reads until the server closes the connection or `DEADLINE` passes.
async fn answer_to(addr: &str, head: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head).await.expect("send");
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await
        .expect("the server answers and closes within the deadline");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_content_length_is_refused_before_the_body_is_read() {
    let (engine, addr, _dir) = live_server().await;
    let head = b"POST /api/v1/events HTTP/1.1\r\nHost: flowd\r\nContent-Type: application/json\r\n\
                 Content-Length: 10737418240\r\n\r\n{\"a\"";
    let answer = answer_to(&addr, head).await;
    // A 408 here would mean the server waited for the 10 GiB instead of refusing at once.
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_cut_off_with_408() {
    let (engine, addr, _dir) = live_server().await;
    let head = b"POST /api/v1/events HTTP/1.1\r\nHost: flowd\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n{\"a\"";
    let answer = answer_to(&addr, head).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    engine.stop().await;
}

/// Opens a connection from `source` (any 127.x address is this machine) and sends half a header.
async fn half_open(addr: &str, source: [u8; 4]) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    let mut stream = socket.connect(addr.parse().expect("an address")).await?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: fl")
        .await?;
    Ok(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_do_not_keep_other_clients_out() {
    let (engine, addr, _dir) = live_server().await;
    // 1,100 half-open connections from five addresses, each under the per-client cap (256).
    let mut crowd = Vec::new();
    for source in 2..=6u8 {
        for _ in 0..220 {
            crowd.push(
                half_open(&addr, [127, 0, 0, source])
                    .await
                    .expect("connect"),
            );
        }
    }
    let health = answer_to(
        &addr,
        b"GET /healthz HTTP/1.1\r\nHost: flowd\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // One address over its cap: its 257th connection is closed without an answer.
    let mut greedy = Vec::new();
    for _ in 0..256 {
        greedy.push(half_open(&addr, [127, 0, 0, 7]).await.expect("connect"));
    }
    let mut over = half_open(&addr, [127, 0, 0, 7]).await.expect("connect");
    assert_eq!(
        read_to_close(&mut over).await,
        "",
        "closed without an answer"
    );

    // The header deadline (10 s) closes a half-open connection: the crowd cannot hold on.
    let first = crowd.first_mut().expect("a connection");
    let answer = read_to_close(first).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    drop(greedy);
    engine.stop().await;
}
