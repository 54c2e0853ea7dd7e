//! Request bodies are read whole, up to `FLOWD_MAX_BODY`, before a request is routed. A handler
//! that has no use for the body would otherwise answer while it is still unread; hyper then
//! closes the connection after that answer without saying so, and a client that reuses the
//! connection sees it dropped. A body over the limit gets our 413 with `Connection: close`,
//! since the rest of it stays unread. A `Content-Length` over the limit is refused before a byte
//! is read (a client announcing 10 GiB and sending 3 bytes gets its 413 at once, not after a
//! wait), and a body that trickles in slower than [`BODY_READ_TIMEOUT`] gets 408.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;

use crate::api::error::ApiError;

/// The longest a client may take to send a whole request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn read_whole(State(max_body): State<usize>, request: Request, next: Next) -> Response {
    if announced_length(&request).is_some_and(|length| length > max_body as u64) {
        return closing(ApiError::PayloadTooLarge);
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, max_body));
    match read.await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => {
            let error = e.into_inner();
            if error.downcast_ref::<LengthLimitError>().is_some() {
                closing(ApiError::PayloadTooLarge)
            } else {
                closing(ApiError::BadRequest(format!(
                    "cannot read the request body: {error}"
                )))
            }
        }
        Err(_elapsed) => closing(ApiError::BodyTimeout),
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

/// The rest of the body stays unread, so the connection cannot carry another request.
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}
