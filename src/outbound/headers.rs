//! The headers of one attempt, in the order they are decided: the caller's own, the body's
//! `Content-Type` (unless the caller set one), `User-Agent`, then what flowd sets and wins over
//! the caller's: `Authorization` from the credentials, `Idempotency-Key`, and with a signing
//! secret the Standard Webhooks headers. Errors name a header, never its value, which may be a
//! secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT,
};

use super::body::EncodedBody;
use super::sign;
use super::{Credentials, OutboundRequest};

const USER_AGENT_VALUE: &str = concat!("flowd/", env!("CARGO_PKG_VERSION"));

/// Every header of the attempt; `body` is the encoded body, `timestamp` the signing time.
pub fn build_headers(
    req: &OutboundRequest,
    body: Option<&EncodedBody>,
    timestamp: i64,
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &req.headers {
        headers.append(header_name(name)?, header_value(name, value)?);
    }
    if let Some(body) = body
        && !headers.contains_key(CONTENT_TYPE)
    {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(body.content_type));
    }
    if !headers.contains_key(USER_AGENT) {
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    }
    if let Some(auth) = &req.auth {
        headers.insert(AUTHORIZATION, auth_value(auth)?);
    }
    let key = header_value("idempotency-key", &req.idempotency_key)?;
    headers.insert(HeaderName::from_static("idempotency-key"), key);
    if !req.sign_secrets.is_empty() {
        let payload = body.map(|b| b.text.as_bytes()).unwrap_or_default();
        add_signature(
            &mut headers,
            &req.sign_secrets,
            &req.idempotency_key,
            timestamp,
            payload,
        )?;
    }
    Ok(headers)
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("invalid header name \"{name}\""))
}

/// Names the header, never the value: the value may be a secret.
fn header_value(name: &str, value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value).map_err(|_| {
        format!("invalid value for header \"{name}\" (control characters or line breaks)")
    })
}

fn auth_value(auth: &Credentials) -> Result<HeaderValue, String> {
    let text = match auth {
        Credentials::Basic { username, password } => {
            format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{password}"))
            )
        }
        Credentials::Bearer(token) => format!("Bearer {token}"),
    };
    let mut value = header_value("authorization", &text)?;
    value.set_sensitive(true);
    Ok(value)
}

/// The Standard Webhooks headers; with several keys (a rotation), `webhook-signature` carries
/// one `v1,…` per key, separated by spaces, so a receiver with either key verifies it.
fn add_signature(
    headers: &mut HeaderMap,
    secrets: &[String],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<(), String> {
    let signature = sign::sign_all(secrets, id, timestamp, body).map_err(|(n, e)| {
        let which = if secrets.len() > 1 {
            format!(" with key {n}")
        } else {
            String::new()
        };
        format!("cannot sign the request{which}: {e}")
    })?;
    let pairs = [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ];
    for (name, value) in pairs {
        headers.insert(HeaderName::from_static(name), header_value(name, &value)?);
    }
    Ok(())
}

/// Headers as (lower-case name, value) pairs, in order, for records and outputs.
pub fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect()
}
