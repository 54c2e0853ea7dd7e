//! Standard Webhooks signatures: [`sign`] for the `http` step's `sign:` option and [`verify`]
//! for the webhook trigger's `secret:`.
//!
//! The signature is `v1,<base64 HMAC-SHA256>` over `<webhook-id>.<webhook-timestamp>.<body>`,
//! keyed with the base64-decoded part after `whsec_` (see standardwebhooks.com). A secret
//! without the prefix is base64-decoded too, as the reference libraries do; when it is not valid
//! base64 its raw bytes are the key, so a plain shared password still works between two flowd
//! installations. Verification takes `now` as a parameter (no clock inside), accepts a header
//! holding several space-separated signatures (key rotation: one valid `v1` entry is enough,
//! other versions are ignored) and compares in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SECRET_PREFIX: &str = "whsec_";

/// A secret that cannot key a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the signing secret is empty")]
    EmptySecret,
    #[error("the signing secret after \"whsec_\" is not valid base64")]
    BadSecret,
}

/// Why a signed request was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is more than {tolerance_secs} seconds away from now")]
    TimestampOutOfTolerance { tolerance_secs: i64 },
    #[error("no valid v1 signature in webhook-signature")]
    NoMatchingSignature,
    #[error(transparent)]
    Secret(#[from] SignError),
}

/// The three Standard Webhooks headers as received; `None` when a header is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignatureHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl<'a> SignatureHeaders<'a> {
    /// Reads `webhook-id`, `webhook-timestamp` and `webhook-signature` (axum's `HeaderMap` is the
    /// same type). A header that is not visible ASCII counts as missing.
    pub fn from_header_map(headers: &'a HeaderMap) -> SignatureHeaders<'a> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        SignatureHeaders {
            id: get("webhook-id"),
            timestamp: get("webhook-timestamp"),
            signature: get("webhook-signature"),
        }
    }
}

/// `v1,<base64 signature>` of `body` sent as message `msg_id` at `timestamp` (Unix seconds).
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignError> {
    let mac = signed_mac(secret, msg_id, timestamp, body)?;
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` value for several keys (a key rotation): one `v1,…` per key,
/// separated by spaces, as Standard Webhooks allows; a receiver holding any one key verifies it.
/// An unusable key is reported with its position (1-based).
pub fn sign_all(
    secrets: &[String],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, (usize, SignError)> {
    let signatures = secrets
        .iter()
        .enumerate()
        .map(|(i, secret)| sign(secret, msg_id, timestamp, body).map_err(|e| (i + 1, e)))
        .collect::<Result<Vec<String>, _>>()?;
    Ok(signatures.join(" "))
}

/// Checks a received request against several keys (a key rotation): valid when it verifies
/// under any of them. The error is the first key's.
pub fn verify_any(
    secrets: &[String],
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let mut first_error = None;
    for secret in secrets {
        match verify(secret, headers, body, now, tolerance_secs) {
            Ok(()) => return Ok(()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(VerifyError::Secret(SignError::EmptySecret)))
}

/// Checks a received request: the headers are present, the timestamp is within
/// `tolerance_secs` of `now` (both ways) and one `v1` signature matches.
pub fn verify(
    secret: &str,
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let id = headers.id.ok_or(VerifyError::MissingHeader("webhook-id"))?;
    let timestamp = headers
        .timestamp
        .ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
    let signature = headers
        .signature
        .ok_or(VerifyError::MissingHeader("webhook-signature"))?;
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if now.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return Err(VerifyError::TimestampOutOfTolerance { tolerance_secs });
    }
    let expected = signed_mac(secret, id, timestamp, body)?;
    if candidates(signature).any(|candidate| expected.clone().verify_slice(&candidate).is_ok()) {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

/// The decoded `v1` entries of a signature header; undecodable entries are skipped (they cannot
/// match anyway).
fn candidates(header: &str) -> impl Iterator<Item = Vec<u8>> + '_ {
    header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
}

fn signed_mac(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<HmacSha256, SignError> {
    let key = secret_key(secret)?;
    let mut mac = HmacSha256::new_from_slice(&key).map_err(|_| SignError::EmptySecret)?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// The HMAC key of a `whsec_<base64>` secret, a bare base64 secret or a raw one.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, SignError> {
    let secret = secret.trim();
    let key = match secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => decode_base64(encoded).ok_or(SignError::BadSecret)?,
        None => decode_base64(secret).unwrap_or_else(|| secret.as_bytes().to_vec()),
    };
    if key.is_empty() {
        return Err(SignError::EmptySecret);
    }
    Ok(key)
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS_FILE: &str = "standard-webhooks-vectors.json";

    /// One test case built from the fixtures: the base vector with the case's changes applied.
    struct Case {
        name: String,
        secret: String,
        id: Option<String>,
        timestamp: Option<String>,
        signature: Option<String>,
        body: String,
        now: i64,
    }

    /// The published vectors live in `shared/fixtures/` beside the repository (or a copy in
    /// `tests/fixtures/`); look in the crate's folder and its ancestors.
    fn vectors() -> Value {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = manifest
            .ancestors()
            .flat_map(|dir| {
                [
                    dir.join("tests/fixtures").join(VECTORS_FILE),
                    dir.join("shared/fixtures").join(VECTORS_FILE),
                ]
            })
            .find(|path| path.is_file())
            .expect("standard-webhooks-vectors.json in tests/fixtures or shared/fixtures");
        let text = std::fs::read_to_string(&path).expect("fixture is readable");
        serde_json::from_str(&text).expect("fixture is JSON")
    }

    fn text(v: &Value, key: &str) -> String {
        v[key].as_str().map(str::to_owned).unwrap_or_default()
    }

    fn base_case(v: &Value) -> Case {
        let ts = v["timestamp"].as_i64().expect("timestamp");
        Case {
            name: text(v, "id"),
            secret: text(v, "secret"),
            id: Some(text(v, "id")),
            timestamp: Some(ts.to_string()),
            signature: Some(text(v, "signature")),
            body: text(v, "body"),
            now: ts,
        }
    }

    /// Applies a derived case (`based_on`, then overrides) to its base vector.
    fn derived_case(all: &Value, v: &Value) -> Case {
        let index = v["based_on"].as_u64().expect("based_on") as usize;
        let mut case = base_case(&all["valid"][index]);
        case.name = text(v, "case");
        if let Some(s) = v["secret"].as_str() {
            case.secret = s.to_owned();
        }
        if let Some(s) = v["signature"].as_str() {
            case.signature = Some(s.to_owned());
        }
        match &v["timestamp"] {
            Value::String(s) => case.timestamp = Some(s.clone()),
            Value::Number(n) => case.timestamp = Some(n.to_string()),
            _ => {}
        }
        if let Some(offset) = v["timestamp_offset_s"].as_i64() {
            case.now -= offset;
        }
        match v["drop_header"].as_str() {
            Some("webhook-id") => case.id = None,
            Some("webhook-timestamp") => case.timestamp = None,
            Some("webhook-signature") => case.signature = None,
            _ => {}
        }
        case
    }

    fn check(case: &Case) -> Result<(), VerifyError> {
        let headers = SignatureHeaders {
            id: case.id.as_deref(),
            timestamp: case.timestamp.as_deref(),
            signature: case.signature.as_deref(),
        };
        verify(&case.secret, &headers, case.body.as_bytes(), case.now, 300)
    }

    /// Two keys during a rotation: the header holds one signature per key, the published one
    /// among them, and verifies under each key alone; a request signed with either key alone is
    /// accepted by a receiver listing both.
    #[test]
    fn rotated_keys_sign_once_each_and_verify_alone() {
        let all = vectors();
        let (a, b) = (base_case(&all["valid"][0]), base_case(&all["valid"][1]));
        let id = a.id.clone().unwrap_or_default();
        let ts = all["valid"][0]["timestamp"].as_i64().expect("timestamp");
        let keys = [a.secret.clone(), b.secret.clone()];
        let header = sign_all(&keys, &id, ts, a.body.as_bytes()).expect("signs");
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(Some(entries[0].to_string()), a.signature);
        for key in &keys {
            let headers = SignatureHeaders {
                id: Some(&id),
                timestamp: a.timestamp.as_deref(),
                signature: Some(&header),
            };
            assert_eq!(verify(key, &headers, a.body.as_bytes(), ts, 300), Ok(()));
        }
        for case in [&a, &b] {
            let headers = SignatureHeaders {
                id: case.id.as_deref(),
                timestamp: case.timestamp.as_deref(),
                signature: case.signature.as_deref(),
            };
            assert_eq!(
                verify_any(&keys, &headers, case.body.as_bytes(), case.now, 300),
                Ok(())
            );
            let other = ["whsec_aGk=".to_string()];
            assert!(verify_any(&other, &headers, case.body.as_bytes(), case.now, 300).is_err());
        }
        let bad = [a.secret.clone(), "whsec_%%%".to_string()];
        assert_eq!(sign_all(&bad, &id, ts, b""), Err((2, SignError::BadSecret)));
    }

    #[test]
    fn sign_reproduces_the_published_vectors() {
        let all = vectors();
        let valid = all["valid"].as_array().expect("valid");
        assert!(!valid.is_empty());
        for v in valid {
            let case = base_case(v);
            let ts = v["timestamp"].as_i64().expect("timestamp");
            let id = case.id.clone().unwrap_or_default();
            let signature = sign(&case.secret, &id, ts, case.body.as_bytes()).expect("signs");
            assert_eq!(Some(signature), case.signature, "{}", case.name);
        }
    }

    #[test]
    fn verify_accepts_valid_and_also_valid_vectors() {
        let all = vectors();
        for v in all["valid"].as_array().expect("valid") {
            let case = base_case(v);
            assert_eq!(check(&case), Ok(()), "{}", case.name);
        }
        for v in all["also_valid"].as_array().expect("also_valid") {
            let case = derived_case(&all, v);
            assert_eq!(check(&case), Ok(()), "{}", case.name);
        }
    }

    #[test]
    fn verify_rejects_invalid_vectors() {
        let all = vectors();
        let invalid = all["invalid"].as_array().expect("invalid");
        assert_eq!(invalid.len(), 8);
        for v in invalid {
            let case = derived_case(&all, v);
            assert!(check(&case).is_err(), "{} should be rejected", case.name);
        }
    }

    #[test]
    fn verify_names_the_problem() {
        let all = vectors();
        let mut case = base_case(&all["valid"][0]);
        case.now += 301;
        assert_eq!(
            check(&case),
            Err(VerifyError::TimestampOutOfTolerance {
                tolerance_secs: 300
            })
        );
        case.now -= 1;
        assert_eq!(check(&case), Ok(()), "exactly 300 s off is still accepted");
        case.id = None;
        assert_eq!(check(&case), Err(VerifyError::MissingHeader("webhook-id")));
    }

    #[test]
    fn tampered_body_is_rejected() {
        let all = vectors();
        let mut case = base_case(&all["valid"][0]);
        case.body.push(' ');
        assert_eq!(check(&case), Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn secret_forms() {
        assert_eq!(secret_key("whsec_"), Err(SignError::EmptySecret));
        assert_eq!(secret_key("whsec_%%%"), Err(SignError::BadSecret));
        assert_eq!(secret_key(""), Err(SignError::EmptySecret));
        assert_eq!(secret_key("not base64!"), Ok(b"not base64!".to_vec()));
        assert_eq!(secret_key("whsec_aGk="), Ok(b"hi".to_vec()));
        assert_eq!(secret_key("whsec_aGk"), Ok(b"hi".to_vec()));
    }

    #[test]
    fn header_map_is_read() {
        let mut map = HeaderMap::new();
        map.insert("webhook-id", "msg_1".parse().expect("value"));
        map.insert("webhook-timestamp", "12".parse().expect("value"));
        let headers = SignatureHeaders::from_header_map(&map);
        assert_eq!(headers.id, Some("msg_1"));
        assert_eq!(headers.timestamp, Some("12"));
        assert_eq!(headers.signature, None);
    }
}
