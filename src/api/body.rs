//! Request bodies are read whole, up to `FLOWD_MAX_BODY`, before a request is routed. A handler
//! that has no use for the body would otherwise answer while it is still unread; hyper then
//! closes the connection after that answer without saying so, and a client that reuses the
//! connection sees it dropped. A body over the limit gets our 413 with `Connection: close`.
//!
//! Before that 413 goes out, up to [`DRAIN_ALLOWANCE`] past the limit is read and thrown away.
//! Closing a socket that still holds unread bytes makes the kernel send a reset, and the reset
//! can destroy the answer before the client reads it: a client still sending its body then sees
//! "broken pipe" instead of 413 (Go's net/http drains for the same reason). A `Content-Length`
//! beyond even that allowance is refused before a byte is read (a client announcing 10 GiB and
//! sending 3 bytes gets its 413 at once, not after a wait), and a body that trickles in slower
//! than [`BODY_READ_TIMEOUT`] gets 408.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::api::error::ApiError;

/// The longest a client may take to send a whole request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How far past the limit an oversized body is read and thrown away before the 413.
pub const DRAIN_ALLOWANCE: u64 = 8 << 20;
/// The longest spent throwing an oversized body away; the 413 goes out after it in any case.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn read_whole(State(max_body): State<usize>, request: Request, next: Next) -> Response {
    let limit = max_body as u64;
    let announced = announced_length(&request);
    if announced.is_some_and(|length| length > limit.saturating_add(DRAIN_ALLOWANCE)) {
        return closing(ApiError::PayloadTooLarge);
    }
    let (parts, mut body) = request.into_parts();
    if announced.is_some_and(|length| length > limit) {
        return refuse_after_draining(&mut body).await;
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, read_up_to(&mut body, max_body));
    match read.await {
        Ok(Ok(Some(bytes))) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Ok(None)) => refuse_after_draining(&mut body).await,
        Ok(Err(error)) => closing(ApiError::BadRequest(format!(
            "cannot read the request body: {error}"
        ))),
        Err(_elapsed) => closing(ApiError::BodyTimeout),
    }
}

/// The whole body, or `None` as soon as it grows past `max` bytes.
async fn read_up_to(body: &mut Body, max: usize) -> Result<Option<Bytes>, axum::Error> {
    let mut whole = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        if whole.len() + data.len() > max {
            return Ok(None);
        }
        whole.extend_from_slice(&data);
    }
    Ok(Some(Bytes::from(whole)))
}

async fn refuse_after_draining(body: &mut Body) -> Response {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, discard(body, DRAIN_ALLOWANCE)).await;
    closing(ApiError::PayloadTooLarge)
}

/// Reads and drops up to `allowance` more bytes of `body`, stopping early at its end or an error.
async fn discard(body: &mut Body, mut allowance: u64) {
    while allowance > 0 {
        let Some(Ok(frame)) = body.frame().await else {
            return;
        };
        if let Ok(data) = frame.into_data() {
            allowance = allowance.saturating_sub(data.len() as u64);
        }
    }
}

fn announced_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The rest of the body may stay unread, so the connection cannot carry another request.
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;

    const LIMIT: usize = 1000;

    /// A body of `len` bytes that counts how many of them the server read.
    fn counted_body(len: usize) -> (Body, Arc<AtomicUsize>) {
        let read = Arc::new(AtomicUsize::new(0));
        let seen = read.clone();
        let body = http_body_util::Full::new(Bytes::from(vec![b'x'; len])).map_frame(move |f| {
            if let Some(data) = f.data_ref() {
                seen.fetch_add(data.len(), Ordering::SeqCst);
            }
            f
        });
        (Body::new(body), read)
    }

    async fn answer(len: usize, announce: Option<u64>) -> (StatusCode, usize) {
        let app = Router::new()
            .route("/", post(|| async { "taken" }))
            .layer(axum::middleware::from_fn_with_state(LIMIT, read_whole));
        let (body, read) = counted_body(len);
        let mut request = Request::post("/");
        if let Some(length) = announce {
            request = request.header(CONTENT_LENGTH, length);
        }
        let response = app.oneshot(request.body(body).unwrap()).await.unwrap();
        (response.status(), read.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn an_oversized_body_is_read_to_its_end_before_the_413() {
        for announce in [Some(LIMIT as u64 + 1), None] {
            let (status, read) = answer(LIMIT + 1, announce).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{announce:?}");
            assert_eq!(
                read,
                LIMIT + 1,
                "announced {announce:?}: the rest must be drained"
            );
        }
        assert_eq!(answer(LIMIT, None).await, (StatusCode::OK, LIMIT));
    }

    #[tokio::test]
    async fn a_body_announced_beyond_the_allowance_is_refused_unread() {
        let huge = LIMIT as u64 + DRAIN_ALLOWANCE + 1;
        let (status, read) = answer(10, Some(huge)).await;
        assert_eq!((status, read), (StatusCode::PAYLOAD_TOO_LARGE, 0));
    }
}
