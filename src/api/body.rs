//! Request bodies are read whole, up to `FLOWD_MAX_BODY`, before a request is routed. A handler
//! that has no use for the body would otherwise answer while it is still unread; hyper then
//! closes the connection after that answer without saying so, and a client that reuses the
//! connection sees it dropped. A body over the limit gets our 413 with `Connection: close`,
//! since the rest of it stays unread.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::CONNECTION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;

use crate::api::error::ApiError;

pub async fn read_whole(State(max_body): State<usize>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, max_body).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => {
            let error = e.into_inner();
            let mut response = if error.downcast_ref::<LengthLimitError>().is_some() {
                ApiError::PayloadTooLarge.into_response()
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {error}"))
                    .into_response()
            };
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}
