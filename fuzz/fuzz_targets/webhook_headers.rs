//! Standard Webhooks headers as an inbound webhook receives them: any `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` (the input's first three lines) and body (the
//! rest), verified against a fixed key. Nothing may panic; a forged request never verifies,
//! and the same request signed with the key always does.
#![no_main]

use flowd::outbound::sign::{SignatureHeaders, sign, verify};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_765_000_000;
const TOLERANCE: i64 = 300;

/// A header value as text; `None` when it is missing or not UTF-8 (the server sees it missing).
fn text(part: Option<&[u8]>) -> Option<&str> {
    part.and_then(|p| std::str::from_utf8(p).ok())
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let (id, timestamp, signature) = (text(parts.next()), text(parts.next()), text(parts.next()));
    let body = parts.next().unwrap_or_default();
    let headers = SignatureHeaders {
        id,
        timestamp,
        signature,
    };
    // A signature the fuzzer made up must not verify (it would be a forged HMAC).
    if let Some(signature) = signature {
        let genuine = timestamp
            .and_then(|t| t.trim().parse::<i64>().ok())
            .and_then(|t| sign(SECRET, id.unwrap_or_default(), t, body).ok());
        let forged = genuine.is_none_or(|g| !signature.split_whitespace().any(|s| g == s));
        if forged {
            assert!(
                verify(SECRET, &headers, body, NOW, TOLERANCE).is_err(),
                "a made-up signature verified: {signature:?}"
            );
        }
    }
    // The same id and body, signed now, verify.
    if let Some(id) = id {
        let signed = sign(SECRET, id, NOW, body).expect("the key is valid");
        let now = NOW.to_string();
        let good = SignatureHeaders {
            id: Some(id),
            timestamp: Some(&now),
            signature: Some(&signed),
        };
        assert!(verify(SECRET, &good, body, NOW, TOLERANCE).is_ok());
    }
});
