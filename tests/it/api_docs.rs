//! The curl examples of docs/api.md, run against a live server (an engine of the test process on
//! `127.0.0.1:0`). Every `curl` command line of
//! every ```sh / ```bash block is parsed (quotes, `\` continuations, `$VARIABLES`, `# comments`;
//! the flags -X, -H, -d, --data, --data-raw, --data-binary with `@file`), pointed at the test
//! server instead of http://127.0.0.1:8080, and sent with reqwest in document order, so the test
//! does not need curl. Each answer must be below 500 and match what the doc says beside the
//! command: a status written first in its comment or after `→` (else any 2xx), and the shape of
//! a `{key: …, other}` sketch in the comment (keys present, `a|b` alternatives, the first item of
//! a list). Examples added to the doc are picked up without touching this file, unless they need
//! state that is not set up here: an unknown `$VARIABLE` or `<placeholder>` fails with its line.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::api::http_client;
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::sink::Sink;

/// The address the examples are written against.
const DOC_BASE: &str = "http://127.0.0.1:8080";
const PATIENCE: Duration = Duration::from_secs(60);

/// One command of the doc.
#[derive(Debug)]
pub(crate) struct Example {
    pub(crate) line: usize,
    pub(crate) text: String,
    /// The comment on the command's line and the comment lines right above it.
    pub(crate) comment: String,
}

/// A parsed curl command.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<Vec<u8>>,
}

/// Every `curl` command in the shell blocks of `markdown`, continuations joined.
fn examples(markdown: &str) -> Vec<Example> {
    shell_commands(markdown)
        .into_iter()
        .filter(|e| e.text.starts_with("curl "))
        .collect()
}

/// Every command in the shell blocks of `markdown`, continuations joined, with the comments
/// above and beside it.
pub(crate) fn shell_commands(markdown: &str) -> Vec<Example> {
    let mut found = Vec::new();
    let mut in_shell = None::<bool>;
    let mut comment = String::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in markdown.lines().enumerate() {
        let line_no = index + 1;
        if let Some(info) = raw.trim_start().strip_prefix("```") {
            in_shell = match in_shell {
                Some(_) => None,
                None => Some(matches!(
                    info.split_whitespace().next(),
                    Some("sh" | "bash")
                )),
            };
            comment.clear();
            continue;
        }
        if in_shell != Some(true) {
            continue;
        }
        let (start, mut text) = pending.take().unwrap_or((line_no, String::new()));
        text.push_str(raw.trim());
        if let Some(joined) = text.strip_suffix('\\') {
            pending = Some((start, format!("{} ", joined.trim_end())));
            continue;
        }
        if inside_quotes(&text) {
            pending = Some((start, format!("{text}\n")));
            continue;
        }
        if let Some(note) = text.strip_prefix('#') {
            comment.push_str(note.trim());
            comment.push(' ');
        } else if !text.is_empty() {
            found.push(Example {
                line: start,
                text,
                comment: std::mem::take(&mut comment),
            });
        } else {
            comment.clear();
        }
    }
    found
}

/// Whether a quote of `text` is still open at its end: the command goes on on the next line.
fn inside_quotes(text: &str) -> bool {
    let mut open = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (open, c) {
            (None, '#') => return false,
            (None, '\\') | (Some('"'), '\\') => {
                chars.next();
            }
            (None, '\'' | '"') => open = Some(c),
            (Some(q), c) if c == q => open = None,
            _ => {}
        }
    }
    open.is_some()
}

/// Splits a shell line into words, expanding `$NAME` (outside single quotes) from `vars`, and
/// returns the words and the trailing comment.
pub(crate) fn shell_words(
    line: &str,
    vars: &HashMap<&str, String>,
) -> Result<(Vec<String>, String), String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '#' if word.is_none() => {
                return Ok((words, chars.collect::<String>().trim().to_owned()));
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unclosed '".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if chars.peek().is_some_and(|n| "$`\"\\".contains(*n)) => {
                            w.extend(chars.next());
                        }
                        Some('$') => w.push_str(&variable(&mut chars, vars)?),
                        Some(c) => w.push(c),
                        None => return Err("unclosed \"".into()),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '$' => {
                let value = variable(&mut chars, vars)?;
                word.get_or_insert_with(String::new).push_str(&value);
            }
            '<' | '>' | '|' | '&' | ';' | '`' => {
                return Err(format!(
                    "`{c}` outside quotes: write placeholders as $VARIABLES and keep one command per line"
                ));
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok((words, String::new()))
}

fn variable(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    vars: &HashMap<&str, String>,
) -> Result<String, String> {
    let braced = chars.next_if_eq(&'{').is_some();
    let mut name = String::new();
    while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
        name.push(c);
    }
    if braced && chars.next() != Some('}') {
        return Err(format!("unclosed ${{{name}"));
    }
    vars.get(name.as_str()).cloned().ok_or_else(|| {
        format!("unknown variable ${name}: set up what it stands for in tests/it/api_docs.rs")
    })
}

/// The request a curl command sends; files named by `@file` are read from `dir`.
pub(crate) fn curl_request(words: &[String], base: &str, dir: &Path) -> Result<Request, String> {
    let mut method = None;
    let mut url = None;
    let mut headers = Vec::new();
    let mut body: Option<Vec<u8>> = None;
    let mut args = words.iter().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "-X" | "--request" => method = Some(value()?),
            "-H" | "--header" => {
                let header = value()?;
                let (name, text) = header
                    .split_once(':')
                    .ok_or(format!("header without `:`: {header}"))?;
                headers.push((name.trim().to_owned(), text.trim().to_owned()));
            }
            "-d" | "--data" | "--data-raw" | "--data-binary" => {
                let data = value()?;
                let bytes = match data.strip_prefix('@').filter(|_| arg != "--data-raw") {
                    Some(file) => {
                        std::fs::read(dir.join(file)).map_err(|e| format!("@{file}: {e}"))?
                    }
                    None => data.into_bytes(),
                };
                body = Some(bytes);
            }
            "-s" | "--silent" | "-i" | "--include" | "-S" | "--show-error" | "-f" | "--fail" => {}
            flag if flag.starts_with('-') => {
                return Err(format!("curl flag {flag} is not understood by this test"));
            }
            target => url = Some(target.to_owned()),
        }
    }
    let url = url.ok_or("no URL")?;
    let path = url
        .strip_prefix(DOC_BASE)
        .ok_or(format!("the URL does not start with {DOC_BASE}: {url}"))?;
    if body.is_some()
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        // What curl sends for -d without a Content-Type.
        headers.push((
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
    }
    let method = method.unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    Ok(Request {
        method,
        url: format!("{base}{path}"),
        headers,
        body,
    })
}

/// The status the comment announces: its first word, or the number after `→` / `->`.
pub(crate) fn documented_status(comment: &str) -> Option<u16> {
    let words: Vec<&str> = comment.split_whitespace().collect();
    let status = |w: &str| {
        let digits = w.trim_end_matches(|c: char| !c.is_ascii_digit());
        digits
            .parse::<u16>()
            .ok()
            .filter(|s| (100..600).contains(s) && digits.len() == 3)
    };
    let first = words.first().and_then(|w| status(w));
    first.or_else(|| {
        words
            .windows(2)
            .find(|p| p[0] == "→" || p[0] == "->")
            .and_then(|p| status(p[1]))
    })
}

/// A sketch of an answer in a comment: `{items: [{id, name}], next: a|b}`.
#[derive(Debug)]
enum Shape {
    Object(Vec<(String, Option<Shape>)>),
    List(Option<Box<Shape>>),
    OneOf(Vec<String>),
}

/// The first `{…}` of the comment, when it comes first or right after the status.
fn documented_shape(comment: &str) -> Option<Shape> {
    let start = comment.find('{')?;
    let before = comment[..start].trim();
    if !(before.is_empty() || documented_status(before).is_some() || before.ends_with('→')) {
        return None;
    }
    let mut chars = comment[start..].chars().peekable();
    parse_shape(&mut chars)
}

fn parse_shape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Shape> {
    skip_spaces(chars);
    match chars.peek()? {
        '{' => {
            chars.next();
            let mut entries = Vec::new();
            loop {
                skip_spaces(chars);
                if chars.next_if_eq(&'}').is_some() {
                    return Some(Shape::Object(entries));
                }
                let key = word(chars);
                skip_spaces(chars);
                let value = if chars.next_if_eq(&':').is_some() {
                    parse_shape(chars)
                } else {
                    None
                };
                entries.push((key, value));
                skip_spaces(chars);
                match chars.next()? {
                    ',' => {}
                    '}' => return Some(Shape::Object(entries)),
                    _ => return None,
                }
            }
        }
        '[' => {
            chars.next();
            let inner = parse_shape(chars).map(Box::new);
            while chars.next()? != ']' {}
            Some(Shape::List(inner))
        }
        _ => Some(Shape::OneOf(
            word(chars).split('|').map(str::to_owned).collect(),
        )),
    }
}

fn skip_spaces(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
}

fn word(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let mut text = String::new();
    while let Some(c) = chars.next_if(|c| !",:{}[]".contains(*c)) {
        text.push(c);
    }
    text.trim().to_owned()
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Problems between a sketch and an answer; words that are not plain names are prose.
fn check_shape(shape: &Shape, value: &Value, at: &str, problems: &mut Vec<String>) {
    match shape {
        Shape::Object(entries) => {
            let Some(object) = value.as_object() else {
                problems.push(format!("{at}: expected an object, got {value}"));
                return;
            };
            for (key, inner) in entries.iter().filter(|(k, _)| is_name(k)) {
                match (object.get(key), inner) {
                    (None, _) => problems.push(format!("{at}: no `{key}` in {value}")),
                    (Some(v), Some(inner)) => {
                        check_shape(inner, v, &format!("{at}.{key}"), problems)
                    }
                    (Some(_), None) => {}
                }
            }
        }
        Shape::List(inner) => match (value.as_array(), inner) {
            (None, _) => problems.push(format!("{at}: expected a list, got {value}")),
            (Some(items), Some(inner)) if !items.is_empty() => {
                check_shape(inner, &items[0], &format!("{at}[0]"), problems)
            }
            _ => {}
        },
        Shape::OneOf(words) => {
            if let Some(text) = value.as_str()
                && words.iter().all(|w| is_name(w))
                && !words.iter().any(|w| w == text)
            {
                problems.push(format!("{at}: `{text}` is not one of {words:?}"));
            }
        }
    }
}

/// The state the examples talk about: flows in files, a run waiting on a delay, a notification.
fn flow_files(sink: &Sink) -> Vec<(&'static str, String)> {
    vec![
        (
            "resend-invoice.yaml",
            format!(
                "triggers:\n  - manual: {{label: Resend to accounting, entity: invoice}}\nsteps:\n  - id: send\n    http:\n      url: \"{}\"\n      body: {{number: \"{{{{entity.number}}}}\", reason: \"{{{{input.reason}}}}\"}}\n",
                sink.url("/accounting")
            ),
        ),
        (
            "shop-orders.yaml",
            "triggers:\n  - webhook: {path: shop/orders}\nsteps:\n  - id: order\n    map: {order: \"{{input.order}}\"}\n".into(),
        ),
        (
            "guest-welcome.yaml",
            "triggers:\n  - entity: guest\n    on: create\nsteps:\n  - id: hello\n    map: {email: \"{{entity.email}}\"}\n".into(),
        ),
        (
            "slow.yaml",
            "triggers:\n  - manual: {label: Slow}\nsteps:\n  - id: wait\n    delay: 1h\n".into(),
        ),
        (
            "tell.yaml",
            "triggers:\n  - manual: {label: Tell}\nsteps:\n  - id: note\n    notify: {channel: inbox, subject: Hello, text: From the docs test}\n".into(),
        ),
    ]
}

/// What the docs' `--data-binary @my-flow.yaml` sends.
const MY_FLOW: &str = "id: greet\ntriggers:\n  - entity: contact\n    on: create\nsteps:\n  - id: hello\n    map: {text: \"hello {{entity.name}}\"}\n";

async fn call(client: &reqwest::Client, method: &str, url: &str) -> (StatusCode, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = client
        .request(method, url)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A run of `slow` parked on its delay: cancel, retry and replay all apply to it.
async fn waiting_run(client: &reqwest::Client, base: &str) -> String {
    let (status, body) = call(client, "POST", &format!("{base}/api/v1/flows/slow/trigger")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["run_id"].as_str().expect("run_id").to_owned();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (_, run) = call(client, "GET", &format!("{base}/api/v1/runs/{id}")).await;
        if run["status"] == "waiting" {
            return id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never waited: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_notification(client: &reqwest::Client, base: &str) -> String {
    let (status, body) = call(
        client,
        "POST",
        &format!("{base}/api/v1/flows/tell/trigger?wait=30s"),
    )
    .await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &Value::from("succeeded")),
        "{body}"
    );
    let (_, list) = call(client, "GET", &format!("{base}/api/v1/notifications")).await;
    list["items"][0]["id"]
        .as_str()
        .expect("a notification")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_curl_example_of_the_api_doc_answers_as_documented() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/api.md");
    let examples = examples(&doc);
    assert!(
        examples.len() >= 20,
        "found only {} curl examples: {examples:#?}",
        examples.len()
    );

    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    for (name, text) in flow_files(&sink) {
        std::fs::write(flows.join(name), text).unwrap();
    }
    std::fs::write(dir.path().join("my-flow.yaml"), MY_FLOW).unwrap();
    let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
    let mut engine = TestEngine::start(&EngineSetup::new(url, &flows)).await;
    let base = engine.serve().await;
    let client = http_client();
    let vars: HashMap<&str, String> = HashMap::from([
        // The server runs without keys, so any key passes; `auth_and_cli.rs` tests keys.
        ("KEY", "fk_docs_example".to_owned()),
        ("RUN_ID", waiting_run(&client, &base).await),
        ("NOTIFICATION_ID", a_notification(&client, &base).await),
    ]);

    let mut failures = Vec::new();
    for example in &examples {
        let at = format!("docs/api.md:{}: {}", example.line, example.text);
        let parsed = shell_words(&example.text, &vars)
            .and_then(|(words, inline)| Ok((curl_request(&words, &base, dir.path())?, inline)));
        let (request, inline) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                failures.push(format!("{at}\n    cannot run it: {e}"));
                continue;
            }
        };
        let comment = format!("{} {inline}", example.comment);
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
        let mut builder = client.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder.send().await.unwrap_or_else(|e| panic!("{at}: {e}"));
        let status = response.status();
        let is_json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let text = response.text().await.unwrap_or_default();
        let mut problems = Vec::new();
        match documented_status(comment.trim()) {
            Some(expected) if status.as_u16() != expected => {
                problems.push(format!("answered {status}, the doc says {expected}"))
            }
            None if !status.is_success() => problems.push(format!(
                "answered {status}; the doc shows no status, so 2xx is expected"
            )),
            _ if status.is_server_error() => problems.push(format!("answered {status}")),
            _ => {}
        }
        if let (Some(shape), true) = (documented_shape(comment.trim()), is_json) {
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            check_shape(&shape, &value, "answer", &mut problems);
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{at}\n    {}\n    body: {text}",
                problems.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} examples of docs/api.md do not answer as documented:\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n"),
    );
    engine.stop().await;
}

#[test]
fn the_doc_parsers_read_what_the_doc_writes() {
    let vars = HashMap::from([("RUN_ID", "r1".to_owned())]);
    let (words, comment) = shell_words(
        r#"curl -X POST -H 'A: b c' "http://x/$RUN_ID/y" -d '{"a": "it'\''s"}'   # 202 {run_id}"#,
        &vars,
    )
    .unwrap();
    assert_eq!(
        words,
        [
            "curl",
            "-X",
            "POST",
            "-H",
            "A: b c",
            "http://x/r1/y",
            "-d",
            r#"{"a": "it's"}"#
        ]
    );
    assert_eq!(comment, "202 {run_id}");
    assert!(shell_words("curl http://x/runs/<run id>", &vars).is_err());
    assert!(shell_words("curl http://x/$NOPE", &vars).is_err());

    assert_eq!(
        documented_status("202 {status: a|b}; 409 when finished"),
        Some(202)
    );
    assert_eq!(
        documented_status("create from YAML → 201 with the flow at revision 1"),
        Some(201)
    );
    assert_eq!(documented_status("204; runs stay"), Some(204));
    assert_eq!(documented_status("also limit (at most 500)"), None);

    let shape = documented_shape("202 {status: cancelled|cancelling}; 409 when finished").unwrap();
    let mut problems = Vec::new();
    check_shape(
        &shape,
        &serde_json::json!({"status": "cancelled"}),
        "a",
        &mut problems,
    );
    assert!(problems.is_empty(), "{problems:?}");
    check_shape(
        &shape,
        &serde_json::json!({"status": "done"}),
        "a",
        &mut problems,
    );
    check_shape(&shape, &serde_json::json!({"other": 1}), "a", &mut problems);
    assert_eq!(problems.len(), 2, "{problems:?}");
    let shape = documented_shape("{items: [{id, name, …}], next_cursor}").unwrap();
    let mut problems = Vec::new();
    check_shape(
        &shape,
        &serde_json::json!({"items": [{"id": 1}], "next_cursor": null}),
        "a",
        &mut problems,
    );
    assert_eq!(problems, ["a.items[0]: no `name` in {\"id\":1}"]);
    assert!(documented_shape("Prometheus text, e.g. flowd_runs{flow=\"x\"}").is_none());

    let markdown = "text\n```sh\n# first\ncurl -X POST http://127.0.0.1:8080/a \\\n  -d '{}'\nflowd keys list\ncurl http://127.0.0.1:8080/b  # 200\n```\n```json\ncurl no\n```\n";
    let found = examples(markdown);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!((found[0].line, found[0].comment.trim()), (4, "first"));
    assert_eq!(
        found[0].text,
        "curl -X POST http://127.0.0.1:8080/a -d '{}'"
    );
    assert_eq!(found[1].comment, "");
}
