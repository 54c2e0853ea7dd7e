//! The HTTP listener. `axum::serve` sets no timer, so a client that sends half a request header
//! keeps its connection (and a file descriptor) forever: a thousand such clients stop the
//! server from accepting anyone (slowloris). This loop serves the same router with hyper's
//! HTTP/1 server, a deadline for request headers, and a cap on open connections per client
//! address, and it drains connections gracefully on shutdown as `axum::serve` does.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

/// Longest a client may take to send a request's line and headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections one client address may hold open at once (`FLOWD_MAX_CONNECTIONS_PER_CLIENT`).
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    /// 0 means no cap (behind a proxy, every connection comes from the proxy's address).
    pub max_connections_per_client: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in progress finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let open = OpenConnections::default();
    // Each connection task holds a receiver; `closed()` below waits until every one has ended.
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    wait_after_accept_error(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = open.take(peer.ip(), limits.max_connections_per_client) else {
            debug!(client = %peer.ip(), "Too many open connections from one client; closing the new one.");
            continue;
        };
        let connection = serve_connection(stream, app.clone(), limits, closing_rx.clone());
        tokio::spawn(async move {
            connection.await;
            drop(slot);
        });
    }
    drop(listener);
    let _no_connection_left = closing_tx.send(true);
    drop(closing_rx);
    closing_tx.closed().await;
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let service = TowerToHyperService::new(app);
    let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
    tokio::select! {
        result = connection.as_mut() => return log_connection_end(result),
        _ = closing.wait_for(|closing| *closing) => {}
    }
    connection.as_mut().graceful_shutdown();
    log_connection_end(connection.await);
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        debug!(%error, "A connection ended with an error.");
    }
}

/// Accepting fails when the process is out of file descriptors; it passes once some close.
async fn wait_after_accept_error(error: &std::io::Error) {
    warn!(%error, "Accepting a connection failed; trying again shortly.");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Open connections per client address.
#[derive(Default, Clone)]
struct OpenConnections(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One open connection, counted until dropped.
struct Slot {
    open: OpenConnections,
    client: IpAddr,
}

impl OpenConnections {
    fn take(&self, client: IpAddr, max: usize) -> Option<Slot> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(client).or_insert(0);
        if max > 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            open: self.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.open.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_at_most_its_cap_and_a_slot_back_when_one_closes() {
        let open = OpenConnections::default();
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 1].into();
        let first = open.take(a, 2).expect("first");
        let _second = open.take(a, 2).expect("second");
        assert!(open.take(a, 2).is_none(), "over the cap");
        assert!(open.take(b, 2).is_some(), "another client is not affected");
        drop(first);
        assert!(open.take(a, 2).is_some(), "a slot comes back on close");
        assert!(open.take(a, 0).is_some(), "0 means no cap");
    }
}
