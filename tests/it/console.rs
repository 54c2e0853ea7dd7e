//! The web console (`docs/console.md`): in a real headless Chromium against an engine of this
//! process served on 127.0.0.1, and, without a browser, the answers a forged request gets.
//! One browser session walks through the scenarios in order, most valuable first; each step
//! waits on what the page shows, with generous deadlines, never for a fixed time.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::api::Api;
use crate::support::browser::Browser;
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::sink::{Behaviour, Failure, Sink};

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("flowd.db").display())
}

/// The example flows of `flows/` and the test's own: `push` (an http step to the sink), `tested`
/// (an http step with a secret header, for the test panel),
/// `greet` (a manual action on a visitor), `limited` (a rate limit of 1/s).
fn flows_dir(dir: &Path, sink: &Sink) -> PathBuf {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("create the flows folder");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    for entry in std::fs::read_dir(&examples).expect("the example flows") {
        let path = entry.expect("an example flow").path();
        std::fs::copy(&path, flows.join(path.file_name().expect("a file name")))
            .expect("copy an example flow");
    }
    let push = format!(
        r#"id: push
name: Push visitors
triggers:
  - entity: visitor
    on: [create]
steps:
  - id: contact
    map: {{visitor: "{{{{entity.id}}}}"}}
  - id: push
    http: {{url: "{}", body: "{{{{steps.contact}}}}"}}
"#,
        sink.url("/push")
    );
    let greet = r#"id: greet
name: Greet a visitor
triggers:
  - manual: {label: Say hello, entity: visitor}
steps:
  - id: hello
    map: {greeting: "Hello {{entity.id}}"}
  - id: tell
    notify: {channel: inbox, subject: "Greeted {{entity.id}}", text: "{{steps.hello.greeting}}"}
"#;
    let limited = r#"id: limited
name: Limited pings
triggers:
  - entity: ping
    on: [create]
settings:
  rate_limit: 1/s
steps:
  - id: shape
    map: {id: "{{entity.id}}"}
"#;
    let tested = format!(
        r#"id: tested
name: Tested in the console
triggers:
  - entity: member
    on: [create]
steps:
  - id: card
    map: {{member: "{{{{entity.id}}}}", name: "{{{{entity.name}}}}"}}
  - id: post
    http: {{url: "{}", headers: {{X-Api-Key: "{{{{secrets.SINK_KEY}}}}"}}, body: "{{{{steps.card}}}}"}}
"#,
        sink.url("/members")
    );
    for (name, yaml) in [
        ("push.yaml", push.as_str()),
        ("tested.yaml", tested.as_str()),
        ("greet.yaml", greet),
        ("limited.yaml", limited),
    ] {
        std::fs::write(flows.join(name), yaml).expect("write a flow");
    }
    flows
}

/// The secret the `tested` flow sends in a header.
const SINK_KEY: &str = "sk-console-Secret-77";

const API_FLOW: &str = "id: edited\nname: Edited in the console\ntriggers:\n  - manual: {label: Go}\nsteps:\n  - id: m\n    map: {a: 1}\n";

async fn emit(api: &Api, entity: &str, id: &str) {
    let event = json!({"entity": entity, "action": "create", "id": id});
    api.post_events(&[event]).await.expect("post an event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let sink = Sink::start_with(Behaviour {
        fail_first: 1,
        failure: Failure::Status(400),
        ..Behaviour::default()
    })
    .await;
    let flows = flows_dir(dir.path(), &sink);
    let setup = EngineSetup {
        master_key: Some(flowd::secrets::cipher::MasterKey::generate()),
        secrets: vec![("SINK_KEY".into(), SINK_KEY.into())],
        ..EngineSetup::new(sqlite_url(dir.path()), flows)
    };
    let mut engine = TestEngine::start(&setup).await;
    let base = engine.serve().await;
    let api = engine.api();
    let (status, _) = api
        .request(
            "POST",
            "/api/v1/flows",
            Some(("application/yaml", API_FLOW)),
        )
        .await
        .expect("create the API flow");
    assert_eq!(status, StatusCode::CREATED);

    grid_lists_the_flows(&browser, &base).await;
    pause_then_resume(&browser, &base).await;
    let run_url = failed_run_appears_live(&browser, &base, &api).await;
    failed_run_shows_request_and_response(&browser, &run_url).await;
    retry_succeeds_once_the_target_is_fixed(&browser, &sink).await;
    test_panel_dry_run_then_send(&browser, &base, &sink).await;
    manual_action_shows_its_run(&browser, &base).await;
    inbox_and_nodes(&browser, &base).await;
    secrets_are_set_and_deleted_write_only(&browser, &base, &api).await;
    edit_with_an_error_then_save(&browser, &base).await;
    usage_shows_limits_exceeded(&browser, &base, &api).await;
    missing_things_are_pages(&browser, &base).await;

    let locked_dir = dir.path().join("locked");
    std::fs::create_dir_all(&locked_dir).expect("create a folder");
    let mut locked = TestEngine::start(&EngineSetup::new(
        sqlite_url(&locked_dir),
        locked_dir.join("no-flows"),
    ))
    .await;
    let key = locked.add_api_key("console").await;
    let locked_base = locked.serve().await;
    login_asks_for_a_key(&browser, &locked_base, &key).await;

    browser.close().await;
    assert_eq!(engine.panics().await, Vec::<String>::new());
    engine.stop().await;
    locked.stop().await;
}

/// The grid lists the example flows with their triggers and targets.
async fn grid_lists_the_flows(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/")).await;
    let grid = browser.text("table.flows").await;
    for flow in [
        "guest-to-crm",
        "order-paid-to-erp",
        "nightly-report",
        "push",
        "edited",
    ] {
        assert!(grid.contains(flow), "the grid lists {flow}:\n{grid}");
    }
    // With its triggers (entity, actions, `if`) and its targets.
    let row = browser.text("#flow-guest-to-crm").await;
    for shown in [
        "guest",
        "create",
        "update",
        "https://crm.example.com/api/v2/contacts",
    ] {
        assert!(
            row.contains(shown),
            "the guest-to-crm row shows {shown}:\n{row}"
        );
    }
    let row = browser.text("#flow-nightly-report").await;
    assert!(row.contains("0 30 3 * * *"), "the schedule's cron: {row}");
    browser.screenshot("flows").await;
}

/// Pause then resume a flow and see its state change.
async fn pause_then_resume(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/")).await;
    browser.click("#flow-greet button.pause").await;
    browser.find("#flow-greet[data-state=paused]").await;
    let note = browser.text("#flow-greet .state-note").await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        note.starts_with("paused ") && note.contains(&today[..7]),
        "the pause date: {note}"
    );
    assert!(browser.text(".notice").await.contains("Paused greet"));
    browser.click("#flow-greet button.resume").await;
    browser.find("#flow-greet[data-state=active]").await;
    let row = browser.text("#flow-greet").await;
    assert!(
        !row.contains("paused "),
        "no pause date once resumed: {row}"
    );
}

/// A run that fails shows up under "Failed" while the page stays open (no reload); returns the
/// run's address.
async fn failed_run_appears_live(browser: &Browser, base: &str, api: &Api) -> String {
    browser.goto(&format!("{base}/runs")).await;
    browser.click("a[data-status=failed]").await;
    browser.find("tbody#runs[data-live]").await;
    // A mark on the page's window: gone if the page were loaded again.
    browser.script("window.flowdMark = 1;", vec![]).await;
    emit(api, "visitor", "7").await;
    let link = browser
        .find("tbody#runs tr.status-failed a[href^='/runs/']")
        .await;
    let mark = browser.script("return window.flowdMark;", vec![]).await;
    assert_eq!(mark, json!(1), "the row came without a reload");
    browser.screenshot("runs").await;
    let href = link.attr("href").await.expect("the link").expect("an href");
    format!("{base}{href}")
}

/// The failed run's page shows what was sent and what came back.
async fn failed_run_shows_request_and_response(browser: &Browser, run_url: &str) {
    browser.goto(run_url).await;
    assert_eq!(browser.text("#run-status").await, "failed");
    let request = browser.text(".request-body").await;
    assert!(
        request.contains(r#""visitor":"7""#),
        "request body: {request}"
    );
    assert_eq!(browser.text(".response-status").await, "400");
    let response = browser.text(".response-body").await;
    assert!(
        response.contains(r#""ok":false"#),
        "response body: {response}"
    );
    assert!(browser.text(".curl pre").await.starts_with("curl"));
    // Cancel is refused for a finished run, with the reason.
    let cancel = browser.find("#cancel").await;
    assert_eq!(
        cancel.attr("disabled").await.expect("attr"),
        Some("true".into())
    );
    assert!(browser.text("#cancel-why").await.contains("already ended"));
    browser.screenshot("run").await;
}

/// Retry after the target is fixed: the run succeeds.
async fn retry_succeeds_once_the_target_is_fixed(browser: &Browser, sink: &Sink) {
    sink.set_behaviour(Behaviour::default());
    browser.click("#retry").await;
    assert!(browser.text(".notice").await.contains("Retrying"));
    browser
        .wait_for("the retried run to succeed", "#run-status", true, |s| {
            s == "succeeded"
        })
        .await;
    let last = "#step-push section.attempt:last-of-type .response-status";
    assert_eq!(browser.text(last).await, "200", "the retry's attempt");
    // The flow's page lists it among its latest runs.
    browser
        .click(".crumbs a[href='/runs?flow=push&workspace=default']")
        .await;
    browser.click("table.runs a[href^='/flows/push']").await;
    assert!(browser.text("#flow-runs").await.contains("succeeded"));
}

/// The flow page's test panel: paste an event, see the request the http step would send with
/// `***` for the secret and nothing sent; a mistake is named in the panel; then send it for real
/// and see the run succeed at the sink, secret and all.
async fn test_panel_dry_run_then_send(browser: &Browser, base: &str, sink: &Sink) {
    let members = |s: &Sink| s.requests().iter().filter(|r| r.path == "/members").count();
    browser.goto(&format!("{base}/flows/tested")).await;
    let prefilled = browser.text("#test-example").await;
    assert!(prefilled.contains(r#""entity": "member""#), "{prefilled}");
    let event = r#"{"entity": "member", "action": "create", "id": "m-1", "data": {"name": "Ada"}}"#;
    set_field(browser, "test-example", "{\"entity\": ").await;
    browser.click("#test-dry").await;
    let problem = browser.text("#test-problem").await;
    assert!(problem.contains("not valid JSON"), "{problem}");
    set_field(browser, "test-example", &event.replace("member", "order")).await;
    browser.click("#test-dry").await;
    // The page before has a problem too: wait for this one.
    browser
        .wait_for("the mismatch to be named", "#test-problem", false, |p| {
            p.contains("matches none of flow `tested`'s triggers: entity `member` on create")
        })
        .await;
    set_field(browser, "test-example", event).await;
    browser.click("#test-dry").await;
    assert_eq!(browser.text("#test-status").await, "succeeded");
    browser.click("#test-result #step-card summary").await;
    let output = browser.text("#test-result #step-card pre").await;
    assert!(
        output.contains(r#""name": "Ada""#),
        "the map's output: {output}"
    );
    let request = browser.text("#test-result #step-post .exchange").await;
    assert!(
        request.contains(&format!("POST {}", sink.url("/members"))),
        "the request: {request}"
    );
    assert!(
        request.contains("x-api-key ***"),
        "the secret is masked: {request}"
    );
    let body = browser.text("#test-result #step-post .request-body").await;
    assert!(body.contains(r#""member":"m-1""#), "the body: {body}");
    let source = browser
        .script("return document.documentElement.outerHTML;", vec![])
        .await;
    assert!(
        !source.to_string().contains(SINK_KEY),
        "no secret in the page"
    );
    assert_eq!(members(sink), 0, "a dry run sends nothing");
    browser
        .script(
            "document.getElementById('test-result').scrollIntoView();",
            vec![],
        )
        .await;
    browser.screenshot("flow-test").await;

    browser.click("#test-send").await;
    assert!(browser.text(".notice").await.contains("Sent for real"));
    browser
        .wait_for("the test run to succeed", "#run-status", true, |s| {
            s == "succeeded"
        })
        .await;
    let sent: Vec<_> = sink
        .requests()
        .into_iter()
        .filter(|r| r.path == "/members")
        .collect();
    assert_eq!(sent.len(), 1, "one real request");
    assert_eq!(sent[0].header("x-api-key"), Some(SINK_KEY));
    assert_eq!(
        sent[0].json(),
        Some(json!({"member": "m-1", "name": "Ada"}))
    );
}

/// Sets a form field's value, as typing would.
async fn set_field(browser: &Browser, id: &str, value: &str) {
    browser
        .script(
            "document.getElementById(arguments[0]).value = arguments[1];",
            vec![
                Value::String(id.to_string()),
                Value::String(value.to_string()),
            ],
        )
        .await;
}

/// Run a manual action on an entity and see its result.
async fn manual_action_shows_its_run(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/actions")).await;
    browser.screenshot("actions").await;
    let id = browser.find("#action-greet input[name=entity_id]").await;
    id.send_keys("42").await.expect("type the id");
    browser.click("#action-greet button[type=submit]").await;
    browser
        .wait_for("the action's run to succeed", "#run-status", true, |s| {
            s == "succeeded"
        })
        .await;
    browser.click("#step-hello summary").await;
    let output = browser.text("#step-hello pre").await;
    assert!(output.contains("Hello 42"), "the step's output: {output}");
}

/// The action's note is in the inbox and is marked read; the nodes page shows this node.
async fn inbox_and_nodes(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/inbox?unread=1")).await;
    let note = browser.text(".inbox li.unread").await;
    assert!(
        note.contains("Greeted 42") && note.contains("Hello 42"),
        "{note}"
    );
    browser.click(".inbox li.unread button").await;
    browser.find(".inbox li.read").await;
    browser.goto(&format!("{base}/inbox?unread=1")).await;
    assert!(browser.text(".inbox").await.contains("Nothing here."));
    browser.goto(&format!("{base}/nodes")).await;
    let nodes = browser.text("table.nodes").await;
    assert!(
        nodes.contains("alive") && nodes.contains("test-"),
        "{nodes}"
    );
}

/// Set a secret in the password field: listed as stored, its value nowhere in the page source
/// (nor in the API's list); a bad name is refused with the rule; delete asks first.
async fn secrets_are_set_and_deleted_write_only(browser: &Browser, base: &str, api: &Api) {
    const VALUE: &str = "console-Wört-s3cr3t/value";
    browser.goto(&format!("{base}/secrets")).await;
    let form = |name: &'static str| async move {
        let field = browser.find("#secret-name").await;
        field.clear().await.expect("clear the name");
        field.send_keys(name).await.expect("type the name");
        let value = browser.find("#secret-value").await;
        assert_eq!(
            value.attr("type").await.expect("type").as_deref(),
            Some("password")
        );
        value.send_keys(VALUE).await.expect("type the value");
        browser.click("form.secret-set button").await;
    };
    form("CONSOLE_TOKEN").await;
    browser
        .wait_for("the secret listed", "#secret-CONSOLE_TOKEN", false, |row| {
            row.contains("CONSOLE_TOKEN") && row.contains("store")
        })
        .await;
    let source = browser.client.source().await.expect("page source");
    assert!(source.contains("Saved CONSOLE_TOKEN"), "the notice");
    assert!(!source.contains(VALUE), "the value is never shown");
    let listed = api.get_json("/api/v1/secrets").await.expect("list");
    assert!(
        listed.to_string().contains("CONSOLE_TOKEN") && !listed.to_string().contains(VALUE),
        "{listed}"
    );
    // HTML validation would stop a bad name in the browser; the server says the rule too.
    browser
        .script(
            "document.querySelector('#secret-name').removeAttribute('pattern')",
            vec![],
        )
        .await;
    form("lower-case").await;
    browser
        .wait_for("the rule of names", ".notice", false, |n| {
            n.contains("not a secret name")
        })
        .await;
    assert!(
        !browser
            .client
            .source()
            .await
            .expect("source")
            .contains(VALUE)
    );
    browser.goto(&format!("{base}/secrets")).await;
    browser.click("#secret-CONSOLE_TOKEN details summary").await;
    browser.click("#secret-CONSOLE_TOKEN details button").await;
    browser
        .wait_for("the secret gone", "table.secrets", false, |t| {
            !t.contains("CONSOLE_TOKEN")
        })
        .await;
}

/// Edit an API flow with an error: the problem shows at its line; fixed and saved, it is a
/// new revision.
async fn edit_with_an_error_then_save(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/flows/edited")).await;
    assert_eq!(browser.text("#flow-revision").await, "1");
    let broken = API_FLOW.replace("map: {a: 1}", "mapp: {a: 1}");
    set_yaml(browser, &broken).await;
    let problem = browser.text("#problems li.error").await;
    assert!(
        problem.contains("line 7, column 5"),
        "the problem is at `mapp`: {problem}"
    );
    browser.screenshot("flow-editor").await;
    let fixed = API_FLOW.replace("map: {a: 1}", "map: {a: 2}");
    set_yaml(browser, &fixed).await;
    browser
        .wait_for_text("the editor to find no problem", false, |p| {
            p.contains("No problems.")
        })
        .await;
    browser.click("#save").await;
    assert!(browser.text(".notice").await.contains("revision 2"));
    assert_eq!(browser.text("#flow-revision").await, "2");
    // The revisions compare, by default the last change: revision 1 → 2.
    browser.click("#compare-go").await;
    let diff = browser.text("#diff").await;
    assert!(
        diff.contains("-     map: {a: 1}") && diff.contains("+     map: {a: 2}"),
        "the diff of revision 1 and 2:\n{diff}"
    );
    browser
        .script(
            "document.getElementById('compare').scrollIntoView();",
            vec![],
        )
        .await;
    browser.screenshot("flow-revisions").await;
}

/// Puts `yaml` in the editor as typing would (an `input` event).
async fn set_yaml(browser: &Browser, yaml: &str) {
    browser
        .script(
            "const t = document.getElementById('yaml'); t.value = arguments[0]; \
             t.dispatchEvent(new Event('input'));",
            vec![Value::String(yaml.to_string())],
        )
        .await;
}

/// The usage page shows the day with rate-limited waits under "limits exceeded".
async fn usage_shows_limits_exceeded(browser: &Browser, base: &str, api: &Api) {
    for id in ["1", "2", "3"] {
        emit(api, "ping", id).await;
    }
    browser.goto(&format!("{base}/usage")).await;
    browser.click("#exceeded").await;
    browser.click("form.grid-form button[type=submit]").await;
    // `push` has runs today too, but none waited on a limit: only `limited` is left.
    browser
        .wait_for(
            "only the day of `limited`, which waited",
            "table.usage",
            true,
            |t| t.contains("limited") && !t.contains("push"),
        )
        .await;
    let url = browser.client.current_url().await.expect("the address");
    assert!(url.as_str().contains("exceeded=1"), "{url}");
    assert!(
        browser
            .text("table.usage tr.exceeded")
            .await
            .contains("limited")
    );
    browser.screenshot("usage").await;
}

/// A missing flow or run is a page, not JSON.
async fn missing_things_are_pages(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/flows/nope")).await;
    assert!(browser.text("h1").await.contains("Not found"));
    browser.goto(&format!("{base}/runs/nope")).await;
    assert!(browser.text(".problem").await.contains("no run"));
}

/// With a key required, the console asks for one, refuses a wrong one, lets a right one in.
async fn login_asks_for_a_key(browser: &Browser, base: &str, key: &str) {
    browser.goto(&format!("{base}/runs")).await;
    browser.find("form[action='/login']").await;
    browser.screenshot("login").await;
    browser
        .find("#key")
        .await
        .send_keys("not-the-key")
        .await
        .expect("type");
    browser.click("form[action='/login'] button").await;
    assert!(browser.text(".problem").await.contains("not valid"));
    browser
        .find("#key")
        .await
        .send_keys(key)
        .await
        .expect("type");
    browser.click("form[action='/login'] button").await;
    // Back where the key was asked for.
    browser
        .wait_for("the run log after logging in", "h1", false, |h| h == "Runs")
        .await;
    browser.click("form.logout button").await;
    browser.find("form[action='/login']").await;
}

/// Without a browser: what forged or unauthenticated requests get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_refuses_requests_without_session_or_csrf_token() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).expect("flows folder");
    std::fs::write(flows.join("x.yaml"), API_FLOW.replace("edited", "x")).expect("a flow");
    let engine = TestEngine::start(&EngineSetup::new(sqlite_url(dir.path()), flows)).await;
    let api = engine.api();

    // Open (no keys): a page sets the session cookie; the CSP is strict.
    let page = api.call("GET", "/", None, &[]).await.expect("GET /");
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let cookie = session_cookie(&page.headers);
    let csrf = csrf_of(&page.text());
    let form = |token: &str| format!("_csrf={token}");

    // No cookie, or a wrong or missing token: refused, and the flow is not paused.
    let no_cookie = api
        .call(
            "POST",
            "/flows/x/pause",
            Some(("application/x-www-form-urlencoded", form(&csrf).as_bytes())),
            &[],
        )
        .await
        .expect("POST without a cookie");
    assert_eq!(no_cookie.status, StatusCode::FORBIDDEN);
    assert!(
        no_cookie.text().contains("<html"),
        "an error page, not JSON"
    );
    for body in [form("wrong"), String::new()] {
        let answer = api
            .call(
                "POST",
                "/flows/x/pause",
                Some(("application/x-www-form-urlencoded", body.as_bytes())),
                &[("cookie", &cookie)],
            )
            .await
            .expect("POST without the token");
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "body {body:?}");
    }
    let flow = api.get_json("/api/v1/flows/x").await.expect("the flow");
    assert_eq!(flow["paused"], false, "{flow}");
    // Cookie and token: done.
    let paused = api
        .call(
            "POST",
            "/flows/x/pause",
            Some(("application/x-www-form-urlencoded", form(&csrf).as_bytes())),
            &[("cookie", &cookie)],
        )
        .await
        .expect("POST with cookie and token");
    assert_eq!(paused.status, StatusCode::SEE_OTHER);
    // The manual trigger of a paused flow is refused as a page that says why.
    let refused = api
        .call(
            "POST",
            "/actions",
            Some((
                "application/x-www-form-urlencoded",
                format!("{}&flow=x", form(&csrf)).as_bytes(),
            )),
            &[("cookie", &cookie)],
        )
        .await
        .expect("run the action of a paused flow");
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.text().contains("paused"), "{}", refused.text());

    // With a key: pages send to the login page; a wrong key is refused; a right one opens.
    let key = engine.add_api_key("console").await;
    let locked = api
        .call("GET", "/runs", None, &[("cookie", &cookie)])
        .await
        .expect("GET");
    assert_eq!(locked.status, StatusCode::SEE_OTHER);
    assert_eq!(locked.headers["location"], "/login?next=%2Fruns");
    let login = |key: String| format!("{}&key={key}&next=%2Fruns", form(&csrf));
    let wrong = api
        .call(
            "POST",
            "/login",
            Some((
                "application/x-www-form-urlencoded",
                login("nope".into()).as_bytes(),
            )),
            &[("cookie", &cookie)],
        )
        .await
        .expect("log in with a wrong key");
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let right = api
        .call(
            "POST",
            "/login",
            Some(("application/x-www-form-urlencoded", login(key).as_bytes())),
            &[("cookie", &cookie)],
        )
        .await
        .expect("log in");
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    let new_cookie = session_cookie(&right.headers);
    assert_ne!(new_cookie, cookie, "a new session after logging in");
    let set = right.headers["set-cookie"].to_str().expect("cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let runs = api
        .call("GET", "/runs", None, &[("cookie", &new_cookie)])
        .await
        .expect("GET");
    assert_eq!(runs.status, StatusCode::OK);
    let old = api
        .call("GET", "/runs", None, &[("cookie", &cookie)])
        .await
        .expect("GET");
    assert_eq!(
        old.status,
        StatusCode::SEE_OTHER,
        "the session before the login is gone"
    );
    engine.stop().await;
}

fn session_cookie(headers: &axum::http::HeaderMap) -> String {
    let set = headers["set-cookie"].to_str().expect("a session cookie");
    set.split(';').next().expect("name=value").to_string()
}

pub(crate) fn csrf_of(page: &str) -> String {
    let start = page
        .find(r#"name="csrf-token" content=""#)
        .expect("the CSRF meta tag")
        + r#"name="csrf-token" content=""#.len();
    page[start..start + page[start..].find('"').expect("end")].to_string()
}
