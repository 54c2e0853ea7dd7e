//! What an outbound attempt leaves behind for people: the request as sent, the response (the
//! first 64 KiB of its body), the error and the timing, with secrets redacted, plus the attempt
//! as a copy-and-paste `curl` command line.
//!
//! Secrets reach a request through templates (`{{secrets.X}}`), often transformed on the way: a
//! token in a query string is URL-encoded, a password in a JSON body is JSON-escaped, a key may
//! be base64-encoded by a helper. [`Redactor`] therefore replaces each secret value and its
//! base64 (standard and URL-safe, padded or not, and also where the secret sits inside a longer
//! base64 text at any byte alignment, for secrets of six bytes or more), percent-encoded (the
//! sets the `url` crate and common encoders use, and `+` for spaces), JSON-escaped and
//! XML-escaped forms with `***`. The `authorization` and `proxy-authorization` header values are
//! always `***`, since they usually hold credentials that are not declared secrets. A URL's
//! password is masked as well. `webhook-signature` is kept: it reveals nothing about its key.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Method;
use crate::secrets::SharedSecrets;

/// At most this many bytes of a body are kept in a record or a step output.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What replaces a secret.
pub use crate::template::MASK;

/// Header names whose values are always masked.
const CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "proxy-authorization"];

/// Shortest value derived from a secret (by a helper) that is redacted: shorter ones (`yes`, a
/// length) would mask ordinary text everywhere.
pub const MIN_DERIVED_LEN: usize = 4;

/// Shortest base64 fragment redacted when a secret sits inside a longer base64 text; shorter
/// fragments would mask ordinary text.
const MIN_BASE64_CORE: usize = 8;

/// The request as sent (redacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: Method,
    pub url: String,
    /// Lower-case names, in the order sent; JSON: `[{"name", "value"}]`.
    #[serde(with = "header_list")]
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// The body was cut at 64 KiB in this record (it was sent whole).
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
}

/// The response as received (redacted), body cut at 64 KiB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResponse {
    pub status: u16,
    #[serde(with = "header_list")]
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub truncated: bool,
}

/// One attempt of an `http` step, as stored and shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub request: RecordedRequest,
    pub response: Option<RecordedResponse>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Headers as a JSON list of `{name, value}` objects (like HAR): keeps order and repeated names.
mod header_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Header<'a> {
        name: Cow<'a, str>,
        value: Cow<'a, str>,
    }

    pub fn serialize<S: Serializer>(headers: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(headers.iter().map(|(name, value)| Header {
            name: Cow::Borrowed(name),
            value: Cow::Borrowed(value),
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        let headers = Vec::<Header<'static>>::deserialize(d)?;
        Ok(headers
            .into_iter()
            .map(|h| (h.name.into_owned(), h.value.into_owned()))
            .collect())
    }
}

/// The first [`BODY_LIMIT`] bytes of `bytes` as text, cut on a character boundary; invalid UTF-8
/// is replaced (U+FFFD). The flag tells whether anything was cut.
pub fn truncate_body(bytes: &[u8]) -> (String, bool) {
    let mut truncated = bytes.len() > BODY_LIMIT;
    let mut end = bytes.len().min(BODY_LIMIT);
    // Do not split a multi-byte sequence: step back over continuation bytes (at most 3).
    while truncated && end > 0 && bytes.get(end).is_some_and(|b| b & 0xC0 == 0x80) {
        end -= 1;
    }
    let mut text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    // Replacement characters are longer than the bytes they replace.
    if text.len() > BODY_LIMIT {
        let mut cut = BODY_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        truncated = true;
    }
    (text, truncated)
}

/// Replaces secret values, in the encodings they travel in, with `***`.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Every form of every secret, longest first so a long form is masked before a shorter
    /// form inside it could break it up.
    patterns: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} patterns)", self.patterns.len())
    }
}

impl Redactor {
    /// A redactor for these secret values (`String`s or `&str`s); empty values are ignored.
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Redactor {
        let mut patterns: Vec<String> = secrets
            .into_iter()
            .filter(|s| !s.as_ref().is_empty())
            .flat_map(|s| secret_forms(s.as_ref()))
            .filter(|p| !p.is_empty())
            .collect();
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        Redactor { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// This redactor plus values derived from secrets by templates (an upper-cased token, the
    /// parts of a split one); values shorter than [`MIN_DERIVED_LEN`] are left out.
    pub fn with_derived<S: AsRef<str>>(&self, derived: impl IntoIterator<Item = S>) -> Redactor {
        let mut patterns = self.patterns.clone();
        patterns.extend(
            derived
                .into_iter()
                .filter(|s| s.as_ref().len() >= MIN_DERIVED_LEN)
                .flat_map(|s| secret_forms(s.as_ref())),
        );
        patterns.retain(|p| !p.is_empty());
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        Redactor { patterns }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for pattern in &self.patterns {
            if out.contains(pattern.as_str()) {
                out = out.replace(pattern.as_str(), MASK);
            }
        }
        out
    }

    /// Redacts every string and object key inside a JSON value.
    pub fn redact_value(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_value(v)).collect())
            }
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (self.redact(k), self.redact_value(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Redacts header values, masking credential headers whole.
    pub fn redact_headers(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(name, value)| {
                let value = if CREDENTIAL_HEADERS
                    .iter()
                    .any(|h| name.eq_ignore_ascii_case(h))
                {
                    MASK.to_owned()
                } else {
                    self.redact(value)
                };
                (self.redact(name), value)
            })
            .collect()
    }

    /// Redacts a URL and masks its password, if any.
    pub fn redact_url(&self, url: &url::Url) -> String {
        let mut url = url.clone();
        if url.password().is_some() && url.set_password(Some(MASK)).is_err() {
            return self.redact(url.as_str());
        }
        self.redact(url.as_str())
    }
}

/// The redactor of an engine's current secrets: rebuilt when the secrets change (a generation
/// number tells), shared otherwise. Cheap to clone.
#[derive(Clone)]
pub struct LiveRedactor {
    secrets: SharedSecrets,
    cached: Arc<RwLock<(u64, Arc<Redactor>)>>,
}

impl LiveRedactor {
    pub fn new(secrets: SharedSecrets) -> LiveRedactor {
        let generation = secrets.generation();
        let redactor = Arc::new(Redactor::new(secrets.all().values()));
        LiveRedactor {
            secrets,
            cached: Arc::new(RwLock::new((generation, redactor))),
        }
    }

    /// The redactor of the secrets as of now.
    pub fn current(&self) -> Arc<Redactor> {
        let generation = self.secrets.generation();
        if let Ok(cached) = self.cached.read()
            && cached.0 == generation
        {
            return cached.1.clone();
        }
        let redactor = Arc::new(Redactor::new(self.secrets.all().values()));
        if let Ok(mut cached) = self.cached.write() {
            *cached = (generation, redactor.clone());
        }
        redactor
    }

    pub fn redact(&self, text: &str) -> String {
        self.current().redact(text)
    }

    pub fn redact_value(&self, value: &Value) -> Value {
        self.current().redact_value(value)
    }
}

impl fmt::Debug for LiveRedactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.current(), f)
    }
}

/// Percent-encode sets: the `url` crate's fragment, query, special-query, path and userinfo sets,
/// and the RFC 3986 "component" set of common URL-encoding helpers.
const FRAGMENT: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`');
const QUERY: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>');
const SPECIAL_QUERY: &AsciiSet = &QUERY.add(b'\'');
const PATH: &AsciiSet = &QUERY.add(b'?').add(b'^').add(b'`').add(b'{').add(b'}');
const USERINFO: &AsciiSet = &PATH
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'|');
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Every form of a secret that is redacted: the raw value and its upper- and lower-cased forms
/// (a helper or a target may change the case), each as is, base64, percent-encoded,
/// JSON-escaped and XML-escaped.
fn secret_forms(secret: &str) -> Vec<String> {
    let mut cases = vec![secret.to_owned()];
    for cased in [secret.to_uppercase(), secret.to_lowercase()] {
        if !cases.contains(&cased) {
            cases.push(cased);
        }
    }
    let mut forms = Vec::new();
    for value in cases {
        forms.extend(base64_forms(value.as_bytes()));
        forms.extend(url_forms(&value));
        forms.push(json_escaped(&value));
        forms.push(super::body::escape_text(&value));
        forms.push(value);
    }
    forms
}

fn base64_forms(bytes: &[u8]) -> Vec<String> {
    let mut forms = vec![
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ];
    for core in base64_cores(bytes) {
        forms.push(core.replace('+', "-").replace('/', "_"));
        forms.push(core);
    }
    forms
}

/// The base64 characters determined by `bytes` alone when they start at byte offset 0, 1 or 2
/// of a longer text (`user:secret` encoded for basic auth, say).
fn base64_cores(bytes: &[u8]) -> Vec<String> {
    (0..3usize)
        .filter_map(|offset| {
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(bytes);
            let encoded = STANDARD_NO_PAD.encode(&shifted);
            let start = (8 * offset).div_ceil(6);
            let end = 8 * (offset + bytes.len()) / 6;
            encoded.get(start..end).map(str::to_owned)
        })
        .filter(|core| core.len() >= MIN_BASE64_CORE)
        .collect()
}

fn url_forms(secret: &str) -> Vec<String> {
    let mut forms: Vec<String> = [
        NON_ALPHANUMERIC,
        COMPONENT,
        FRAGMENT,
        QUERY,
        SPECIAL_QUERY,
        PATH,
        USERINFO,
    ]
    .iter()
    .map(|set| utf8_percent_encode(secret, set).to_string())
    .collect();
    forms.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
    forms
}

fn json_escaped(secret: &str) -> String {
    let quoted = Value::String(secret.to_owned()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_owned()
}

/// The recorded request as a `curl` command line, one option per line. Every argument is
/// single-quoted for POSIX shells. Secrets are already masked in the record, so the command
/// shows `***` where they were: put them back before running it.
pub fn curl_command(req: &RecordedRequest) -> String {
    let mut lines = vec![format!(
        "curl -X {} {}",
        req.method.as_str(),
        shell_quote(&req.url)
    )];
    for (name, value) in &req.headers {
        // `-H 'name:'` would remove the header; `-H 'name;'` sends it empty.
        let header = if value.is_empty() {
            format!("{name};")
        } else {
            format!("{name}: {value}")
        };
        lines.push(format!("-H {}", shell_quote(&header)));
    }
    if let Some(body) = &req.body {
        lines.push(format!("--data-raw {}", shell_quote(body)));
    }
    let command = lines.join(" \\\n  ");
    if req.truncated {
        format!(
            "# The body was cut at 64 KiB in the record; this command sends the cut body.\n{command}"
        )
    } else {
        command
    }
}

/// Single-quotes `text` for a POSIX shell: `'` becomes `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SECRET: &str = "s3cr3t/t0ken+with space&\"quote\"é";

    fn redactor() -> Redactor {
        Redactor::new([SECRET.to_owned(), String::new()])
    }

    #[test]
    fn redacts_the_value_and_its_encodings() {
        let r = redactor();
        let encodings = [
            SECRET.to_owned(),
            STANDARD.encode(SECRET),
            STANDARD_NO_PAD.encode(SECRET),
            URL_SAFE.encode(SECRET),
            URL_SAFE_NO_PAD.encode(SECRET),
            utf8_percent_encode(SECRET, NON_ALPHANUMERIC).to_string(),
            url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect(),
            json_escaped(SECRET),
        ];
        for encoded in encodings {
            let text = format!("before {encoded} after");
            assert_eq!(r.redact(&text), "before *** after", "{encoded}");
        }
    }

    #[test]
    fn redacts_a_secret_inside_longer_base64() {
        let r = Redactor::new(["hunter2-password"]);
        for prefix in ["", "u:", "ab:", "abc:"] {
            let blob = STANDARD.encode(format!("{prefix}hunter2-password-and-more"));
            let redacted = r.redact(&blob);
            assert!(redacted.contains(MASK), "{prefix}: {redacted}");
            assert!(redacted.len() < blob.len(), "{prefix}");
        }
    }

    #[test]
    fn secrets_in_urls_are_masked() {
        let r = Redactor::new(["tok en".to_owned()]);
        let mut url = url::Url::parse("https://user:pw@example.com/a/tok%20en").expect("url");
        url.query_pairs_mut().append_pair("key", "tok en");
        assert_eq!(
            r.redact_url(&url),
            "https://user:***@example.com/a/***?key=***"
        );
    }

    #[test]
    fn credential_headers_are_always_masked() {
        let r = redactor();
        let headers = vec![
            ("Authorization".to_owned(), "Basic dXNlcjpwYXNz".to_owned()),
            ("proxy-authorization".to_owned(), "x".to_owned()),
            ("x-token".to_owned(), SECRET.to_owned()),
            ("webhook-signature".to_owned(), "v1,abc=".to_owned()),
        ];
        let redacted = r.redact_headers(&headers);
        assert_eq!(redacted[0].1, MASK);
        assert_eq!(redacted[1].1, MASK);
        assert_eq!(redacted[2].1, MASK);
        assert_eq!(redacted[3].1, "v1,abc=");
    }

    #[test]
    fn redacts_inside_json_values() {
        let r = redactor();
        let value = serde_json::json!({"a": [SECRET, 1], SECRET: {"b": format!("x{SECRET}")}});
        let text = r.redact_value(&value).to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn redactor_debug_shows_no_secret() {
        assert!(!format!("{:?}", redactor()).contains("s3cr3t"));
        assert!(Redactor::new(Vec::<String>::new()).is_empty());
    }

    #[test]
    fn cased_and_derived_forms_are_redacted() {
        let r = Redactor::new(["MiXed-Sécret"]);
        for form in [
            "MIXED-SÉCRET",
            "mixed-sécret",
            "TUlYRUQtU8OJQ1JFVA==",
            "mixed-s%C3%A9cret",
        ] {
            assert_eq!(r.redact(&format!("<{form}>")), "<***>", "{form}");
        }
        let derived = r.with_derived(["parts", "no"]);
        assert_eq!(derived.redact("parts no"), "*** no");
        assert_eq!(derived.redact(&STANDARD.encode("parts")), "***");
    }

    #[test]
    fn the_live_redactor_follows_changes() {
        let shared = SharedSecrets::new(crate::secrets::Secrets::default());
        let live = LiveRedactor::new(shared.clone());
        assert_eq!(live.current().redact("new-value"), "new-value");
        shared.set_stored(
            [("acme".to_string(), "T".to_string(), "new-value".to_string())],
            Default::default(),
        );
        assert_eq!(live.current().redact("new-value"), "***");
    }

    #[test]
    fn truncation_keeps_short_bodies_whole() {
        assert_eq!(truncate_body(b"hello"), ("hello".to_owned(), false));
        assert_eq!(truncate_body(b"a\xffb"), ("a\u{FFFD}b".to_owned(), false));
    }

    #[test]
    fn truncation_cuts_on_a_character_boundary() {
        let body = "é".repeat(BODY_LIMIT); // 2 bytes each
        let (text, truncated) = truncate_body(body.as_bytes());
        assert!(truncated);
        assert_eq!(text.len(), BODY_LIMIT);
        let body = format!("a{}", "€".repeat(BODY_LIMIT)); // 3 bytes each, shifted by one
        let (text, truncated) = truncate_body(body.as_bytes());
        assert!(truncated && text.len() <= BODY_LIMIT && text.len() > BODY_LIMIT - 3);
        let (text, truncated) = truncate_body(&vec![0xff; BODY_LIMIT]);
        assert!(
            truncated && text.len() <= BODY_LIMIT,
            "lossy text is cut too"
        );
    }

    fn sample_request() -> RecordedRequest {
        RecordedRequest {
            method: Method::Post,
            url: "https://example.com/it's?a=1".to_owned(),
            headers: vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-empty".to_owned(), String::new()),
            ],
            body: Some(r#"{"name":"O'Brien"}"#.to_owned()),
            truncated: false,
        }
    }

    #[test]
    fn curl_command_quotes_for_the_shell() {
        assert_eq!(
            curl_command(&sample_request()),
            concat!(
                "curl -X POST 'https://example.com/it'\\''s?a=1' \\\n",
                "  -H 'content-type: application/json' \\\n",
                "  -H 'x-empty;' \\\n",
                "  --data-raw '{\"name\":\"O'\\''Brien\"}'"
            )
        );
        assert_eq!(
            shell_quote("$(rm -rf /) `x` \"y\""),
            "'$(rm -rf /) `x` \"y\"'"
        );
    }

    #[test]
    fn record_json_shape() {
        let at = Utc
            .with_ymd_and_hms(2025, 1, 2, 3, 4, 5)
            .single()
            .expect("date");
        let record = AttemptRecord {
            request: sample_request(),
            response: Some(RecordedResponse {
                status: 201,
                headers: vec![("x-a".to_owned(), "1".to_owned())],
                body: "ok".to_owned(),
                truncated: false,
            }),
            error: None,
            started_at: at,
            finished_at: at,
            duration_ms: 12,
        };
        let json = serde_json::to_value(&record).expect("serialises");
        assert_eq!(json["request"]["method"], "POST");
        assert_eq!(json["request"]["headers"][0]["name"], "content-type");
        assert_eq!(json["response"]["headers"][0]["value"], "1");
        assert_eq!(json["started_at"], "2025-01-02T03:04:05Z");
        assert!(json["request"].get("truncated").is_none());
        let back: AttemptRecord = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back, record);
    }
}
