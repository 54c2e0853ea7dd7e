//! The answer to one attempt: reading it (at most 64 KiB of body, the rest is never
//! downloaded), what its status means for the caller, and the `{status, headers, body}` output,
//! all redacted like the request, because an echoing endpoint would otherwise put a secret into
//! stored output.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::{Map, Value, json};

use super::client::Outcome;
use super::headers::header_pairs;
use super::record::{BODY_LIMIT, RecordedResponse, Redactor, truncate_body};
use super::status::{self, StatusClass};

/// A response read up to the body limit.
pub struct Received {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Reads the status, the headers and at most [`BODY_LIMIT`] + 1 bytes of body (the extra byte
/// tells that there was more); the rest is never downloaded.
pub async fn read_response(mut response: reqwest::Response) -> Result<Received, reqwest::Error> {
    let status = response.status();
    let headers = header_pairs(response.headers());
    let mut body = Vec::new();
    while body.len() <= BODY_LIMIT {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk),
            None => break,
        }
    }
    body.truncate(BODY_LIMIT + 1);
    Ok(Received {
        status,
        headers,
        body,
    })
}

pub fn classify_response(
    received: Received,
    redactor: &Redactor,
) -> (Outcome, Option<RecordedResponse>) {
    let status = received.status.as_u16();
    let (text, truncated) = truncate_body(&received.body);
    let recorded = RecordedResponse {
        status,
        headers: redactor.redact_headers(&received.headers),
        body: redactor.redact(&text),
        truncated,
    };
    let error = status_error(received.status);
    let outcome = match status::classify_status(status) {
        StatusClass::Success => Outcome::Succeeded {
            output: output_value(&recorded),
        },
        StatusClass::Retry => Outcome::Retry {
            error,
            retry_after: retry_after(status, &received.headers),
        },
        StatusClass::Fail => Outcome::Fail {
            error,
            output: Some(output_value(&recorded)),
        },
    };
    (outcome, Some(recorded))
}

fn status_error(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

fn retry_after(status: u16, headers: &[(String, String)]) -> Option<Duration> {
    if !status::honours_retry_after(status) {
        return None;
    }
    let (_, value) = headers
        .iter()
        .find(|(name, _)| name.as_str() == RETRY_AFTER.as_str())?;
    status::parse_retry_after(value, Utc::now())
}

/// The output of an `http` step in a dry run: the usual `{status, headers, body}` shape, empty,
/// so later templates render (to empty text), and `dry_run: true`.
pub fn dry_run_output() -> Value {
    json!({"status": null, "headers": {}, "body": null, "dry_run": true})
}

/// `{status, headers, body}`: headers as an object (repeated names joined with ", "), body as
/// JSON when the response says JSON and parses, else text.
fn output_value(response: &RecordedResponse) -> Value {
    let mut headers = Map::new();
    for (name, value) in &response.headers {
        match headers.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    json!({
        "status": response.status,
        "headers": headers,
        "body": body_value(response),
    })
}

fn body_value(response: &RecordedResponse) -> Value {
    let says_json = response
        .headers
        .iter()
        .any(|(name, value)| name == "content-type" && is_json_media_type(value));
    if says_json
        && !response.truncated
        && let Ok(parsed) = serde_json::from_str(&response.body)
    {
        return parsed;
    }
    Value::String(response.body.clone())
}

fn is_json_media_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/problem+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type(""));
    }
}
