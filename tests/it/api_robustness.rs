//! The malformed-input sweep, against a live server (an engine of the test process serving on
//! `127.0.0.1:0`, so connections are real) on SQLite. Every operation of the
//! OpenAPI document the server itself serves gets malformed JSON, bodies its own schema rejects
//! (wrong types, nulls, unknown fields), unknown and hostile ids, bad query parameters, wrong
//! content types, a body over `FLOWD_MAX_BODY`, missing or bad API keys and methods it does not
//! take. Each answer must be a 4xx in the error shape (checked against the document's
//! `ErrorBody`), never a 5xx or a dropped connection, and `/healthz` must still answer after
//! each operation. The operations come from the document, so a new route is swept without
//! touching this file.
//!
//! A second test sends good requests and checks the answers against the document's response
//! schemas, so the document stays honest in both directions.

use axum::http::Request;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use tempfile::TempDir;

use crate::support::api::Api;
use crate::support::engine::{EngineSetup, TestEngine};

/// `FLOWD_MAX_BODY` of the server under test.
const MAX_BODY: usize = 64 * 1024;
/// A flow every kind of trigger reaches, so requests on known ids get past the lookup.
const SWEEP_FLOW: &str = "id: sweep\ntriggers:\n  - manual: {label: Sweep}\n  - webhook: {path: sweep}\n  - entity: guest\n    on: create\nsteps:\n  - id: m\n    map: {x: 1}\n";
/// Methods tried on every path; the ones a path does not document must answer 405.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

/// What an answer must be.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Status(u16),
    /// Any 4xx.
    ClientError,
    /// The input is not read by this route: anything but a 5xx (a 4xx still in our shape).
    NoServerError,
}

/// One request of the sweep.
struct Probe {
    what: String,
    method: Method,
    /// Path and query, already percent-encoded.
    target: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    authorization: Option<HeaderValue>,
    expect: Expect,
}

/// One operation of the document.
struct Operation {
    method: Method,
    /// The path template, e.g. `/api/v1/runs/{id}`.
    path: String,
    spec: Value,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn parameters(&self, place: &str) -> Vec<&Value> {
        self.spec["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == place)
            .collect()
    }

    fn secured(&self) -> bool {
        self.spec["security"].is_array()
    }

    /// The request body's media types and their schemas.
    fn body_types(&self) -> Vec<(&str, &Value)> {
        self.spec["requestBody"]["content"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(t, media)| (t.as_str(), &media["schema"]))
            .collect()
    }
}

/// The server under test and what the sweep knows about it.
struct Server {
    engine: TestEngine,
    /// A client of the live server.
    api: Api,
    _dir: TempDir,
    /// The API key the server asks for.
    key: String,
    doc: Value,
    /// A run of the sweep flow, for paths that take a run id.
    run_id: String,
    /// A bulk operation, for paths that take an operation id.
    operation_id: String,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let flows = dir.path().join("flows");
        std::fs::create_dir_all(&flows).unwrap();
        std::fs::write(flows.join("sweep.yaml"), SWEEP_FLOW).unwrap();
        let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
        let mut setup = EngineSetup::new(url, flows);
        setup.max_body = MAX_BODY;
        let mut engine = TestEngine::start(&setup).await;
        let key = engine.add_api_key("sweep").await;
        let api = Api::new(engine.serve().await);
        let mut server = Server {
            engine,
            api,
            _dir: dir,
            key,
            doc: Value::Null,
            run_id: String::new(),
            operation_id: String::new(),
        };
        let (status, doc) = server.call(Method::GET, "/api/v1/openapi.json", None).await;
        assert_eq!(status, 200, "{doc}");
        server.doc = doc;
        let (status, run) = server
            .call(Method::POST, "/api/v1/flows/sweep/trigger", Some(json!({})))
            .await;
        assert_eq!(status, 202, "{run}");
        server.run_id = run["run_id"].as_str().expect("run_id").to_owned();
        let (status, op) = server
            .call(
                Method::POST,
                "/api/v1/runs/retry",
                Some(json!({"flow": "sweep"})),
            )
            .await;
        assert_eq!(status, 202, "{op}");
        server.operation_id = op["operation_id"]
            .as_str()
            .expect("operation_id")
            .to_owned();
        server
    }

    /// `Authorization: Bearer <the key>`.
    fn bearer(&self) -> Option<HeaderValue> {
        Some(HeaderValue::from_str(&format!("Bearer {}", self.key)).unwrap())
    }

    /// A well-formed request with the key; the answer as JSON.
    async fn call(&self, method: Method, target: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .header(AUTHORIZATION, format!("Bearer {}", self.key));
        let body = match body {
            Some(body) => {
                request = request.header(CONTENT_TYPE, "application/json");
                body.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let answer = self
            .api
            .send(request.body(body).expect("a request"))
            .await
            .expect("the request is answered");
        let value =
            serde_json::from_slice(&answer.body).unwrap_or_else(|_| Value::String(answer.text()));
        (answer.status.as_u16(), value)
    }

    fn operations(&self) -> Vec<Operation> {
        let mut operations = Vec::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for (method, spec) in item.as_object().expect("path item") {
                operations.push(Operation {
                    method: method.to_uppercase().parse().expect("an HTTP method"),
                    path: path.clone(),
                    spec: spec.clone(),
                });
            }
        }
        assert!(
            operations.len() >= 20,
            "too few operations: {}",
            operations.len()
        );
        operations
    }

    /// The id of something that exists for a path template's `{…}` parameter.
    fn known_id(&self, path: &str) -> String {
        if path.starts_with("/api/v1/flows/") || path.starts_with("/hooks/") {
            "sweep".to_owned()
        } else if path.starts_with("/api/v1/runs/") {
            self.run_id.clone()
        } else if path.starts_with("/api/v1/operations/") {
            self.operation_id.clone()
        } else if path.starts_with("/api/v1/workspaces/") {
            "default".to_owned()
        } else {
            uuid::Uuid::now_v7().to_string()
        }
    }

    /// A validator for `schema`, whose `$ref`s point into the document's components.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let mut root = match schema {
            Value::Object(map) => map.clone(),
            other => Map::from_iter([("allOf".to_owned(), json!([other]))]),
        };
        root.insert("components".into(), self.doc["components"].clone());
        jsonschema::validator_for(&Value::Object(root)).expect("a document schema compiles")
    }

    /// Sends one probe; `Err` says what was wrong with the answer.
    async fn probe(
        &self,
        probe: &Probe,
        error_shape: &jsonschema::Validator,
    ) -> Result<(), String> {
        let mut request = Request::builder()
            .method(probe.method.clone())
            .uri(&probe.target);
        if let Some(content_type) = probe.content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if let Some(authorization) = &probe.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let request = request
            .body(probe.body.clone())
            .map_err(|e| format!("the probe is not a request: {e}"))?;
        let answer = self
            .api
            .send(request)
            .await
            .map_err(|e| format!("no answer (connection dropped?) or body not read: {e}"))?;
        let (status, bytes) = (answer.status, &answer.body);
        let text = String::from_utf8_lossy(bytes);
        let ok = match probe.expect {
            Expect::Status(code) => status.as_u16() == code,
            Expect::ClientError => status.is_client_error(),
            Expect::NoServerError => !status.is_server_error(),
        };
        if !ok {
            return Err(format!(
                "expected {:?}, got {status}: {text:.300}",
                probe.expect
            ));
        }
        if status.is_client_error() {
            let body: Value = serde_json::from_slice(bytes)
                .map_err(|e| format!("{status} answer is not JSON ({e}): {text:.300}"))?;
            let problems: Vec<String> = error_shape
                .iter_errors(&body)
                .map(|e| e.to_string())
                .collect();
            let filled = ["code", "message"]
                .iter()
                .all(|k| body["error"][k].as_str().is_some_and(|s| !s.is_empty()));
            if !problems.is_empty() || !filled {
                return Err(format!(
                    "{status} answer not in the error shape {problems:?}: {text:.300}"
                ));
            }
        }
        Ok(())
    }

    async fn healthy(&self) -> Result<(), String> {
        let response = self
            .api
            .call("GET", "/healthz", None, &[])
            .await
            .map_err(|e| format!("/healthz does not answer: {e}"))?;
        match response.status {
            StatusCode::OK => Ok(()),
            other => Err(format!("/healthz answered {other}")),
        }
    }
}

/// `path` with each `{…}` replaced by `id` (already percent-encoded), and a `{revision}` by the
/// first revision, which every flow has.
fn fill(path: &str, id: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str(&rest[..open]);
        out.push_str(if &rest[open..close] == "{revision}" {
            "1"
        } else {
            id
        });
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// The query every request needs: required parameters set to their example (or `x`).
fn required_query(op: &Operation) -> Vec<(String, String)> {
    op.parameters("query")
        .into_iter()
        .filter(|p| p["required"] == true)
        .map(|p| {
            let value = p["example"].as_str().unwrap_or("x").to_owned();
            (p["name"].as_str().unwrap_or_default().to_owned(), value)
        })
        .collect()
}

fn with_query(path: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return path.to_owned();
    }
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Unknown, malformed and hostile values for a path parameter, percent-encoded.
fn hostile_ids() -> Vec<(String, String)> {
    [
        ("an unknown UUIDv7", uuid::Uuid::now_v7().to_string()),
        ("an encoded slash", "a%2Fb".to_owned()),
        ("bytes that are not UTF-8", "%FF%FE".to_owned()),
        ("a NUL byte", "x%00y".to_owned()),
        ("a path traversal", "..%2F..%2Fetc%2Fpasswd".to_owned()),
        ("an 8 KiB id", "x".repeat(8 * 1024)),
        ("non-ASCII text", "%E6%97%A5%E6%9C%AC".to_owned()),
        ("SQL", "%27%20OR%201%3D1--".to_owned()),
    ]
    .into_iter()
    .map(|(what, id)| (what.to_owned(), id))
    .collect()
}

/// Values a query parameter's schema rules out, with a word on each.
fn bad_query_values(server: &Server, param: &Value) -> Vec<&'static str> {
    let mut schema = param["schema"].clone();
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        schema = server.doc["components"]["schemas"][name].clone();
    }
    let types = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let mut bad = Vec::new();
    if types.iter().any(|t| t == "integer") {
        bad.extend(["abc", "-1", "1.5", "99999999999999999999999"]);
    }
    if types.iter().any(|t| t == "boolean") {
        bad.extend(["maybe", "2"]);
    }
    if schema["format"] == "date-time" {
        bad.extend(["not-a-time", "2026-13-45T99:00:00Z"]);
    }
    if schema["enum"].is_array() {
        bad.push("bogus");
    }
    match param["name"].as_str() {
        Some("cursor") => bad.extend(["garbage", "1.", "%%%"]),
        Some("wait") => bad.extend(["forever", "-5s", "10"]),
        _ => {}
    }
    bad
}

/// The example of a body schema, looked for through `$ref`s and alternatives.
fn example_of(server: &Server, schema: &Value, depth: usize) -> Option<Value> {
    if depth > 8 {
        return None;
    }
    if let Some(example) = schema.get("example") {
        return Some(example.clone());
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next()?;
        return example_of(
            server,
            &server.doc["components"]["schemas"][name],
            depth + 1,
        );
    }
    ["oneOf", "anyOf", "allOf"]
        .iter()
        .filter_map(|k| schema[*k].as_array())
        .flatten()
        .find_map(|s| example_of(server, s, depth + 1))
}

/// JSON bodies the schema rejects: other types whole, the example with one field made wrong
/// (another type, null) or an unknown field added, and the example's values as an array.
fn rejected_bodies(server: &Server, schema: &Value, example: Option<Value>) -> Vec<Value> {
    let wrong = [
        json!(42),
        json!("text"),
        json!(true),
        Value::Null,
        json!([1]),
        json!({"zz_nested": 1}),
    ];
    let mut candidates: Vec<Value> = wrong.to_vec();
    candidates.extend([
        json!([]),
        json!([[]]),
        json!({}),
        json!([{}]),
        json!({"zz_unknown": 1}),
    ]);
    if let Some(Value::Object(example)) = example {
        for key in example.keys() {
            for value in &wrong {
                let mut body = example.clone();
                body.insert(key.clone(), value.clone());
                candidates.push(Value::Object(body));
            }
        }
        let mut extra = example.clone();
        extra.insert("zz_unknown".into(), json!(1));
        candidates.push(Value::Object(extra));
        // serde reads a struct from an array of its fields too, unless the handler refuses.
        let fields = Value::Array(example.values().cloned().collect());
        candidates.push(json!([fields.clone()]));
        candidates.push(fields);
    }
    let validator = server.validator(schema);
    candidates.retain(|c| !validator.is_valid(c));
    candidates
}

/// Builds the probes of one operation.
struct Prober<'a> {
    server: &'a Server,
    op: &'a Operation,
    /// The path with known ids.
    path: String,
    /// The path with known ids and the required query: a request that reaches the handler.
    clean: String,
    probes: Vec<Probe>,
}

impl<'a> Prober<'a> {
    fn new(server: &'a Server, op: &'a Operation) -> Prober<'a> {
        let path = fill(&op.path, &server.known_id(&op.path));
        let clean = with_query(&path, &required_query(op));
        Prober {
            server,
            op,
            path,
            clean,
            probes: Vec::new(),
        }
    }

    /// Every probe of the operation.
    fn all(mut self) -> Vec<Probe> {
        self.ids();
        self.query();
        self.bodies();
        self.keys();
        self.probes
    }

    fn push(
        &mut self,
        what: String,
        target: String,
        body: Option<(&'static str, Vec<u8>)>,
        expect: Expect,
    ) {
        let (content_type, body) = body.map_or((None, Vec::new()), |(t, b)| (Some(t), b));
        self.probes.push(Probe {
            what,
            method: self.op.method.clone(),
            target,
            content_type,
            body,
            authorization: if self.op.secured() {
                self.server.bearer()
            } else {
                None
            },
            expect,
        });
    }

    fn ids(&mut self) {
        if !self.op.path.contains('{') {
            return;
        }
        for (what, id) in hostile_ids() {
            let target = with_query(&fill(&self.op.path, &id), &required_query(self.op));
            self.push(format!("id: {what}"), target, None, Expect::ClientError);
        }
    }

    fn query(&mut self) {
        let params = self.op.parameters("query");
        if params.is_empty() {
            let target = format!("{}?zz_unknown=1&limit=abc&cursor=%FF", self.path);
            self.push(
                "a query on a route without any".into(),
                target,
                None,
                Expect::NoServerError,
            );
            return;
        }
        let required = required_query(self.op);
        let mut unknown = required.clone();
        unknown.push(("zz_unknown".into(), "1".into()));
        let target = with_query(&self.path, &unknown);
        self.push(
            "an unknown query parameter".into(),
            target,
            None,
            Expect::Status(400),
        );
        for param in params {
            let name = param["name"].as_str().unwrap_or_default().to_owned();
            let others: Vec<_> = required
                .iter()
                .filter(|(k, _)| *k != name)
                .cloned()
                .collect();
            if param["required"] == true {
                let target = with_query(&self.path, &others);
                self.push(format!("no `{name}`"), target, None, Expect::Status(400));
            }
            for value in bad_query_values(self.server, param) {
                let mut pairs = others.clone();
                pairs.push((name.clone(), value.to_owned()));
                let target = with_query(&self.path, &pairs);
                self.push(
                    format!("`{name}={value}`"),
                    target,
                    None,
                    Expect::Status(400),
                );
            }
        }
    }

    fn bodies(&mut self) {
        let body_types = self.op.body_types();
        let reads_body = !body_types.is_empty();
        let json_types = body_types.iter().filter(|(t, _)| t.ends_with("json"));
        for (json_type, schema) in json_types {
            for body in MALFORMED_JSON {
                let what = format!(
                    "malformed JSON as {json_type}: {}",
                    String::from_utf8_lossy(body)
                );
                self.push(
                    what,
                    self.clean.clone(),
                    Some(("application/json", body.to_vec())),
                    Expect::ClientError,
                );
            }
            let content_example = &self.op.spec["requestBody"]["content"][*json_type]["example"];
            let example = match content_example {
                Value::Object(_) => Some(content_example.clone()),
                _ => example_of(self.server, schema, 0),
            };
            for body in rejected_bodies(self.server, schema, example) {
                let what = format!("a body its schema rejects: {body}");
                let body = body.to_string().into_bytes();
                self.push(
                    what,
                    self.clean.clone(),
                    Some(("application/json", body)),
                    Expect::ClientError,
                );
            }
        }
        // Routes that read no body must not mind one; routes that do must refuse these.
        let refused = if reads_body {
            Expect::ClientError
        } else {
            Expect::NoServerError
        };
        let listed = |t: &str| {
            body_types
                .iter()
                .any(|(listed, _)| *listed == t || *listed == "*/*")
        };
        let others: [(&'static str, &[u8]); 5] = [
            ("application/json", b"{"),
            ("application/x-www-form-urlencoded", b"a=1&b=2"),
            ("application/xml", b"<flow id=\"x\"/>"),
            ("text/plain", b"hello"),
            ("application/octet-stream", b"\xff\xfe\x00\x81\xc3"),
        ];
        for (content_type, body) in others {
            let binary = content_type == "application/octet-stream";
            let expect = if listed(content_type) && !binary {
                Expect::NoServerError
            } else {
                refused
            };
            let what = format!("a {content_type} body");
            self.push(
                what,
                self.clean.clone(),
                Some((content_type, body.to_vec())),
                expect,
            );
        }
        let oversize = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_BODY + 1024)).into_bytes();
        // Over the limit every route answers 413, whether it reads bodies or not.
        let what = "a body over FLOWD_MAX_BODY".to_owned();
        self.push(
            what,
            self.clean.clone(),
            Some(("application/json", oversize)),
            Expect::Status(413),
        );
    }

    fn keys(&mut self) {
        if !self.op.secured() {
            return;
        }
        let long = format!("Bearer {}", "k".repeat(10 * 1024));
        let bad_keys = [
            ("no API key", None),
            (
                "a wrong key",
                Some(HeaderValue::from_static("Bearer not-the-key")),
            ),
            (
                "another scheme",
                Some(HeaderValue::from_static("Basic c3dlZXA6a2V5")),
            ),
            ("an empty bearer", Some(HeaderValue::from_static("Bearer "))),
            ("a 10 KiB key", Some(HeaderValue::from_str(&long).unwrap())),
            (
                "a key that is not UTF-8",
                Some(HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap()),
            ),
        ];
        for (what, authorization) in bad_keys {
            self.push(what.into(), self.clean.clone(), None, Expect::Status(401));
            if let Some(probe) = self.probes.last_mut() {
                probe.authorization = authorization;
            }
        }
    }
}

/// Bodies that are not JSON, though they look like it.
const MALFORMED_JSON: [&[u8]; 6] = [
    b"{",
    b"{\"a\": 1}}",
    b"[1, 2",
    b"{\"a\": \"\\ud800\"}",
    b"\xEF\xBB\xBF{}",
    b"{'single': 'quotes'}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_malformed_input_with_a_4xx_in_the_error_shape() {
    let mut server = Server::start().await;
    let error_shape = server.validator(&json!({"$ref": "#/components/schemas/ErrorBody"}));
    let operations = server.operations();
    let mut failures = Vec::new();
    let mut sent = 0;
    for op in &operations {
        for probe in Prober::new(&server, op).all() {
            sent += 1;
            if let Err(problem) = server.probe(&probe, &error_shape).await {
                failures.push(format!("{} ({}): {problem}", op.name(), probe.what));
            }
        }
        if let Err(problem) = server.healthy().await {
            panic!("after {}: {problem}", op.name());
        }
    }
    // Methods a path does not take answer 405, in our shape.
    let paths: std::collections::BTreeSet<&str> =
        operations.iter().map(|o| o.path.as_str()).collect();
    for path in paths {
        for method in METHODS {
            if operations
                .iter()
                .any(|o| o.path == path && o.method == method)
            {
                continue;
            }
            let probe = Probe {
                what: "an undocumented method".into(),
                method: method.clone(),
                target: fill(path, &server.known_id(path)),
                content_type: None,
                body: Vec::new(),
                authorization: server.bearer(),
                expect: Expect::Status(405),
            };
            sent += 1;
            if let Err(problem) = server.probe(&probe, &error_shape).await {
                failures.push(format!("{method} {path} ({}): {problem}", probe.what));
            }
        }
    }
    server.healthy().await.expect("the server still answers");
    let panics = server.engine.panics().await;
    assert!(panics.is_empty(), "the server panicked: {panics:#?}");
    assert!(
        failures.is_empty(),
        "{} of {sent} probes failed:\n{}",
        failures.len(),
        failures.join("\n"),
    );
    assert!(sent > 500, "only {sent} probes");
    server.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_requests_get_the_answers_the_document_describes() {
    let server = Server::start().await;
    let served = server.doc.clone();
    assert_eq!(served, serde_json::to_value(flowd::api::openapi()).unwrap());
    let checks: Vec<(Method, String, Option<Value>)> = server
        .operations()
        .into_iter()
        .filter(|op| op.method == Method::GET)
        .map(|op| {
            let target = with_query(&fill(&op.path, &server.known_id(&op.path)), &required_query(&op));
            (Method::GET, target, None)
        })
        .chain([
            (
                Method::POST,
                "/api/v1/flows/sweep/trigger".to_owned(),
                Some(json!({"input": {"n": 1}})),
            ),
            (
                Method::POST,
                "/api/v1/events".to_owned(),
                Some(json!({"entity": "guest", "action": "create", "id": 7, "data": {"name": "Ada"}})),
            ),
            (
                Method::POST,
                "/api/v1/flows/sweep/trigger?wait=30s".to_owned(),
                None,
            ),
        ])
        .collect();
    for (method, target, body) in checks {
        let (status, answer) = server.call(method.clone(), &target, body).await;
        let path = target.split('?').next().unwrap_or_default();
        let op = server
            .operations()
            .into_iter()
            .find(|op| op.method == method && fill(&op.path, &server.known_id(&op.path)) == path)
            .unwrap_or_else(|| panic!("{method} {path} is not in the document"));
        let content = &op.spec["responses"][status.to_string()]["content"];
        if content.get("application/json").is_none() {
            // A text answer (`/metrics`): documented with some other content type, and text.
            assert!(
                (200..300).contains(&status)
                    && content.as_object().is_some_and(|c| !c.is_empty())
                    && answer.as_str().is_some_and(|text| !text.is_empty()),
                "{method} {target}: {status} is not a documented text success: {answer}"
            );
            continue;
        }
        let schema = &content["application/json"]["schema"];
        assert!(
            (200..300).contains(&status) && schema.is_object(),
            "{method} {target}: {status} is not a documented success: {answer}"
        );
        let problems: Vec<String> = server
            .validator(schema)
            .iter_errors(&answer)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            problems.is_empty(),
            "{method} {target} → {status}: {problems:#?}\n{answer}"
        );
    }
    server.engine.stop().await;
}
