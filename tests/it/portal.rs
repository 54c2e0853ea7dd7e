//! Portal links (`docs/portal.md`): a link issued through the API opens the console once, scoped
//! to its workspace and role, in a real headless Chromium against the real `flowd` binary; it is
//! refused a second time, when expired and when revoked, and revoking or expiry ends the session
//! it opened. Through the API: the round trip, the 422s naming the field, and the token nowhere
//! but in the answer that issued it (not in the database files, flowd's output or the list).
//! The console's framing headers, by default and with frame ancestors set.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::console::csrf_of;
use crate::support::api::{Answer, Api};
use crate::support::browser::Browser;
use crate::support::engine::{EngineSetup, TestEngine};
use crate::support::flowd::{FlowdEnv, FlowdProcess};

const KEY: &str = "fk_portal_test_key_0123456789abcdef";
/// How long a link issued with the shortest ttl may take to expire on a loaded machine.
const EXPIRY_PATIENCE: Duration = Duration::from_secs(240);

const HELLO: &str = "id: hello\nname: Say hello\ntriggers:\n  - manual: {label: Hello}\nsteps:\n  - id: m\n    map: {a: 1}\n";

const GUEST: &str = "id: guest\nname: Greet a guest\ntriggers:\n  - manual: {label: Greet}\nsteps:\n  - id: m\n    map: {a: 1}\n";

fn setup(dir: &Path) -> (String, PathBuf) {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("flows folder");
    std::fs::write(flows.join("hello.yaml"), HELLO).expect("a flow");
    // The folder makes workspace `acme` (created when the flows load) with a flow of its own.
    std::fs::create_dir_all(flows.join("acme")).expect("acme's folder");
    std::fs::write(flows.join("acme").join("guest.yaml"), GUEST).expect("acme's flow");
    (
        format!("sqlite://{}", dir.join("flowd.db").display()),
        flows,
    )
}

async fn start_flowd(dir: &Path, extra: &[(&str, &str)]) -> FlowdProcess {
    let (url, flows) = setup(dir);
    let mut env = FlowdEnv::new(url, flows);
    env.extra.push(("FLOWD_API_KEYS".into(), KEY.into()));
    env.extra
        .extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    FlowdProcess::start(&env).await
}

/// `method path` with the API key and an optional JSON body.
async fn admin(api: &Api, method: &str, path: &str, body: Option<Value>) -> Answer {
    let body = body.map(|b| b.to_string());
    let auth = format!("Bearer {KEY}");
    api.call(
        method,
        path,
        body.as_deref().map(|b| ("application/json", b.as_bytes())),
        &[("authorization", &auth)],
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Issues a link; returns its id and URL.
async fn issue(api: &Api, workspace: &str, body: Value) -> (String, String) {
    let path = format!("/api/v1/workspaces/{workspace}/portal-links");
    let answer = admin(api, "POST", &path, Some(body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    let body = answer.json().expect("JSON");
    (
        body["id"].as_str().expect("id").to_string(),
        body["url"].as_str().expect("url").to_string(),
    )
}

/// The path of a portal URL (`/portal/<token>`), to send to the test's server.
fn path_of(url: &str) -> String {
    let at = url.find("/portal/").expect("a portal URL");
    url[at..].to_string()
}

fn token_of(url: &str) -> String {
    path_of(url)["/portal/".len()..].to_string()
}

/// Opens a link without a browser: the answer and its session cookie, if any.
async fn redeem(api: &Api, url: &str) -> (Answer, Option<String>) {
    let answer = api
        .call("GET", &path_of(url), None, &[])
        .await
        .expect("GET the link");
    let cookie = cookie_set_by(&answer);
    (answer, cookie)
}

async fn page(api: &Api, path: &str, cookie: &str) -> Answer {
    api.call("GET", path, None, &[("cookie", cookie)])
        .await
        .expect("GET a page")
}

async fn link_state(api: &Api, workspace: &str, id: &str) -> String {
    let path = format!("/api/v1/workspaces/{workspace}/portal-links");
    let list = admin(api, "GET", &path, None).await.json().expect("JSON");
    let link = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|l| l["id"] == id)
        .unwrap_or_else(|| panic!("link {id} not listed: {list}"));
    link["state"].as_str().expect("state").to_string()
}

/// Waits, without using them, until the links are past their expiry.
async fn wait_until_expired(api: &Api, workspace: &str, id: &str) {
    let deadline = Instant::now() + EXPIRY_PATIENCE;
    while link_state(api, workspace, id).await != "expired" {
        assert!(
            Instant::now() < deadline,
            "link {id} did not expire within {EXPIRY_PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_link_opens_the_scoped_console_once_until_revoked_or_expired() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let flowd = start_flowd(dir.path(), &[]).await;
    let (api, base) = (flowd.api(), flowd.base_url.clone());
    // Issued first: they expire while the rest runs. One is opened now, one never.
    let (_, opened_then_expired) =
        issue(&api, "default", json!({"role": "viewer", "ttl": "1m"})).await;
    let (never_used_id, never_used) =
        issue(&api, "default", json!({"role": "viewer", "ttl": "1m"})).await;
    let (_, expiring_session) = redeem(&api, &opened_then_expired).await;
    let expiring_session = expiring_session.expect("a session cookie");
    assert_eq!(
        page(&api, "/", &expiring_session).await.status,
        StatusCode::OK
    );

    // A viewer: the workspace in the navigation, no admin pages, no pause button.
    let (_, viewer) = issue(&api, "default", json!({"role": "viewer"})).await;
    assert!(viewer.starts_with(&format!("{base}/portal/")), "{viewer}");
    browser.goto(&viewer).await;
    browser
        .wait_for("the flows grid", "h1", false, |h| h == "Flows")
        .await;
    assert_eq!(browser.text("#workspace").await, "default");
    let source = browser.client.source().await.expect("the page source");
    assert!(source.contains("hello"), "the flow is listed");
    assert!(
        !source.contains("class=\"pause\""),
        "a viewer gets no pause button"
    );
    for admin_page in ["href=\"/nodes\"", "href=\"/workspaces\""] {
        assert!(
            !source.contains(admin_page),
            "{admin_page} is hidden from a viewer"
        );
    }
    // A forged pause with the viewer's own session and token: 403 naming the role needed.
    let cookie = browser
        .client
        .get_named_cookie("flowd_session")
        .await
        .expect("the session cookie");
    let cookie = format!("flowd_session={}", cookie.value());
    let csrf = csrf_of(&source);
    let forged = api
        .call(
            "POST",
            "/flows/hello/pause",
            Some((
                "application/x-www-form-urlencoded",
                format!("_csrf={csrf}").as_bytes(),
            )),
            &[("cookie", &cookie)],
        )
        .await
        .expect("a forged pause");
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.text().contains("operator"), "{}", forged.text());
    assert_eq!(
        page(&api, "/nodes", &cookie).await.status,
        StatusCode::FORBIDDEN
    );
    let flow = admin(&api, "GET", "/api/v1/flows/hello", None)
        .await
        .json()
        .unwrap();
    assert_eq!(flow["paused"], false, "{flow}");

    // The same link again: refused, saying why.
    browser.goto(&viewer).await;
    let why = browser.text(".problem").await;
    assert!(why.contains("already been used"), "{why}");
    assert_eq!(redeem(&api, &viewer).await.0.status, StatusCode::GONE);

    // An admin issues an operator link on the workspaces page; it is shown once.
    let operator = issue_in_the_console(&browser, &base).await;
    let listed = admin(&api, "GET", "/api/v1/workspaces/default/portal-links", None).await;
    let operator_id = listed.json().unwrap()["items"][0]["id"]
        .as_str()
        .expect("the newest link")
        .to_string();
    assert_eq!(link_state(&api, "default", &operator_id).await, "unused");
    browser.goto(&format!("{base}/workspaces")).await;
    let again = browser.client.source().await.expect("the page source");
    assert!(
        !again.contains(&token_of(&operator)),
        "the URL is shown only once"
    );

    // An operator pauses and resumes; revoking the link ends the session on its next request.
    browser.goto(&operator).await;
    browser.click("button.pause").await;
    browser
        .wait_for("the flow paused", ".badge", false, |s| s.contains("paused"))
        .await;
    browser.click("button.resume").await;
    browser.find("button.pause").await;
    let revoked = admin(
        &api,
        "DELETE",
        &format!("/api/v1/workspaces/default/portal-links/{operator_id}"),
        None,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    browser.goto(&format!("{base}/runs")).await;
    let ended = browser.text(".problem").await;
    assert!(ended.contains("ended"), "{ended}");
    browser.goto(&operator).await;
    assert!(browser.text(".problem").await.contains("revoked"));

    // Expiry: the unused link is refused as expired, the opened one's session has ended.
    wait_until_expired(&api, "default", &never_used_id).await;
    let (late, _) = redeem(&api, &never_used).await;
    assert_eq!(late.status, StatusCode::GONE);
    assert!(late.text().contains("expired"), "{}", late.text());
    let after = page(&api, "/", &expiring_session).await;
    assert_eq!(after.status, StatusCode::GONE, "{}", after.text());

    browser.close().await;
}

/// Logs in with the key, issues an operator link for `default` on the workspaces page and returns
/// the URL it shows.
async fn issue_in_the_console(browser: &Browser, base: &str) -> String {
    browser
        .goto(&format!("{base}/login?next=%2Fworkspaces"))
        .await;
    browser
        .find("#key")
        .await
        .send_keys(KEY)
        .await
        .expect("type the key");
    browser.click("form[action='/login'] button").await;
    browser
        .wait_for("the workspaces page", "h1", false, |h| h == "Workspaces")
        .await;
    browser
        .find("#link-workspace")
        .await
        .send_keys("default")
        .await
        .expect("type the workspace");
    browser
        .find("#link-role option[value='operator']")
        .await
        .click()
        .await
        .expect("choose operator");
    browser.click("#issue-link button").await;
    let url = browser.text("#issued-url").await;
    assert!(url.contains("/portal/"), "{url}");
    url
}

/// The session cookie a response sets, as a `cookie` header value.
fn cookie_set_by(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

/// A console session logged in with the admin key, without a browser (nor following the
/// login's redirect, whose answer carries the new session's cookie).
async fn admin_session(api: &Api, base_url: &str) -> String {
    let login = api
        .call("GET", "/login", None, &[])
        .await
        .expect("GET /login");
    let cookie = cookie_set_by(&login).expect("a session cookie");
    let form = format!("_csrf={}&key={KEY}", csrf_of(&login.text()));
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
        .post(format!("{base_url}/login"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("POST /login");
    assert!(answer.status().is_redirection(), "{}", answer.status());
    let set = answer
        .headers()
        .get("set-cookie")
        .expect("the logged-in session's cookie");
    let set = set.to_str().expect("a cookie");
    set.split(';').next().expect("name=value").to_string()
}

/// A portal session sees its workspace's flows and runs only: another workspace's flow or run
/// page is 404, whether named with `?workspace=` or not. An admin session lists every
/// workspace's flows, and the grid's and run page's links open a flow of `acme` by naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_session_sees_only_its_workspace() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flowd = start_flowd(dir.path(), &[]).await;
    let api = flowd.api();
    let ran = |flow: &'static str, ws: &'static str| {
        let api = &api;
        async move {
            let path = format!("/api/v1/flows/{flow}/trigger?wait=20s&workspace={ws}");
            let answer = admin(api, "POST", &path, Some(json!({}))).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
            answer.json().expect("JSON")["id"]
                .as_str()
                .expect("id")
                .to_string()
        }
    };
    let default_run = ran("hello", "default").await;
    let acme_run = ran("guest", "acme").await;

    let (_, link) = issue(&api, "acme", json!({"role": "viewer"})).await;
    let (_, cookie) = redeem(&api, &link).await;
    let cookie = cookie.expect("a session");
    let grid = page(&api, "/", &cookie).await;
    assert_eq!(grid.status, StatusCode::OK);
    assert!(
        grid.text().contains("id=\"workspace\""),
        "the workspace is shown"
    );
    assert!(
        grid.text().contains("Greet a guest"),
        "acme's flow is listed"
    );
    assert!(
        !grid.text().contains("Say hello"),
        "a flow of `default` is not listed for acme"
    );
    assert!(
        grid.text().contains("href=\"/flows/guest?workspace=acme\""),
        "links name the flow's workspace"
    );
    for own in [
        "/flows/guest?workspace=acme".to_string(),
        "/flows/guest".to_string(),
        format!("/runs/{acme_run}"),
        "/runs?workspace=acme".to_string(),
    ] {
        let answer = page(&api, &own, &cookie).await;
        assert_eq!(answer.status, StatusCode::OK, "{own}: {}", answer.text());
    }
    let runs = page(&api, "/runs", &cookie).await.text();
    assert!(
        runs.contains(&acme_run) && !runs.contains(&default_run),
        "{runs}"
    );
    for other in [
        "/flows/hello".to_string(),
        "/flows/hello?workspace=default".to_string(),
        "/flows/guest?workspace=default".to_string(),
        format!("/runs/{default_run}"),
        format!("/runs/{default_run}?workspace=default"),
        "/runs?workspace=default".to_string(),
        "/flows/guest?workspace=nowhere".to_string(),
    ] {
        let answer = page(&api, &other, &cookie).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{other}");
        assert!(!answer.text().contains("Say hello"), "{other}");
    }

    // An admin: every workspace's flows; acme's flow and run pages through their links.
    let admin_cookie = admin_session(&api, &flowd.base_url).await;
    let grid = page(&api, "/", &admin_cookie).await.text();
    assert!(
        grid.contains("Say hello") && grid.contains("Greet a guest"),
        "{grid}"
    );
    assert!(
        grid.contains("href=\"/flows/guest?workspace=acme\""),
        "{grid}"
    );
    let flow = page(&api, "/flows/guest?workspace=acme", &admin_cookie).await;
    assert_eq!(flow.status, StatusCode::OK, "{}", flow.text());
    assert!(flow.text().contains("Greet a guest"), "acme's flow page");
    assert!(flow.text().contains(&acme_run), "its runs are listed on it");
    let run = page(&api, &format!("/runs/{acme_run}"), &admin_cookie).await;
    assert_eq!(run.status, StatusCode::OK);
    assert!(
        run.text().contains("href=\"/flows/guest?workspace=acme\""),
        "the run links to its flow in acme: {}",
        run.text()
    );
    // acme's action, run from its page in the admin session: a run of acme's flow.
    let actions = page(&api, "/actions?flow=guest&workspace=acme", &admin_cookie).await;
    let actions = actions.text();
    assert!(
        actions.contains("action=\"/actions?workspace=acme\"") && !actions.contains("Say hello"),
        "{actions}"
    );
    let form = format!("_csrf={}&flow=guest&entity=&input=", csrf_of(&actions));
    let started = api
        .call(
            "POST",
            "/actions?workspace=acme",
            Some(("application/x-www-form-urlencoded", form.as_bytes())),
            &[("cookie", &admin_cookie)],
        )
        .await
        .expect("run acme's action");
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    assert!(
        started
            .text()
            .contains("href=\"/flows/guest?workspace=acme\""),
        "the action's run is one of acme's flow: {}",
        started.text()
    );
    let hello = page(&api, "/flows/hello?workspace=default", &admin_cookie).await;
    assert_eq!(hello.status, StatusCode::OK);
    assert!(hello.text().contains("Say hello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_links_through_the_api_never_keep_or_show_the_token() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flowd = start_flowd(
        dir.path(),
        &[
            ("FLOWD_PUBLIC_URL", "https://flowd.example.com/"),
            (
                "FLOWD_CONSOLE_FRAME_ANCESTORS",
                "https://app.example.com https://*.example.org",
            ),
        ],
    )
    .await;
    let api = flowd.api();
    let links = "/api/v1/workspaces/acme/portal-links";

    // Bad input: 422 naming the field, nothing stored; an unknown workspace is 404.
    for (body, field) in [
        (json!({"role": "admin"}), "role"),
        (json!({"role": "editor", "ttl": "1h"}), "role"),
        (json!({"ttl": "1h"}), "role"),
        (json!({"role": "viewer", "ttl": "30s"}), "ttl"),
        (json!({"role": "viewer", "ttl": "31d"}), "ttl"),
        (json!({"role": "viewer", "ttl": "soon"}), "ttl"),
        (json!({"role": "viewer", "ttl": 60}), "ttl"),
        (json!({"role": "viewer", "expires": "1h"}), "expires"),
    ] {
        let answer = admin(&api, "POST", links, Some(body.clone())).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error = answer.json().expect("JSON")["error"].clone();
        assert_eq!(error["code"], "invalid_portal_link", "{error}");
        assert_eq!(error["details"][0]["field"], field, "{body}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(field),
            "{error}"
        );
    }
    let listed = admin(&api, "GET", links, None).await.json().unwrap();
    assert_eq!(listed["items"], json!([]), "nothing stored: {listed}");
    let unknown = admin(
        &api,
        "POST",
        "/api/v1/workspaces/Not-A-Name/portal-links",
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let missing = admin(
        &api,
        "POST",
        "/api/v1/workspaces/nowhere/portal-links",
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(
        missing.status,
        StatusCode::NOT_FOUND,
        "a workspace that does not exist"
    );
    assert_eq!(
        missing.json().expect("JSON")["error"]["code"],
        "workspace_not_found"
    );
    let no_key = api
        .call("GET", links, None, &[])
        .await
        .expect("without a key");
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);

    // Issue: the URL starts with FLOWD_PUBLIC_URL; the list shows the link, never its token.
    let issued = admin(
        &api,
        "POST",
        links,
        Some(json!({"role": "operator", "ttl": "2h"})),
    )
    .await;
    assert_eq!(issued.status, StatusCode::CREATED);
    let issued = issued.json().unwrap();
    let url = issued["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with("https://flowd.example.com/portal/"),
        "{url}"
    );
    assert!(
        issued["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{issued}"
    );
    let token = token_of(&url);
    assert_eq!(token.len(), 43, "32 bytes in base64url");
    let listed = admin(&api, "GET", links, None).await;
    assert!(!listed.text().contains(&token), "the list shows no token");
    let item = listed.json().unwrap()["items"][0].clone();
    assert_eq!(
        (
            &item["id"],
            &item["role"],
            &item["state"],
            &item["workspace"]
        ),
        (
            &issued["id"],
            &json!("operator"),
            &json!("unused"),
            &json!("acme")
        ),
        "{item}"
    );

    // A HEAD (a link checker's) does not use the link up.
    let head = api
        .call("HEAD", &path_of(&url), None, &[])
        .await
        .expect("HEAD");
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.headers.get("set-cookie").is_none());

    // Opened: a framed session cookie, the configured frame ancestors, no X-Frame-Options.
    let (opened, cookie) = redeem(&api, &url).await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.text());
    let set = opened.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=None; Secure; Partitioned"),
        "{set}"
    );
    let csp = opened.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.ends_with("frame-ancestors https://app.example.com https://*.example.org"),
        "{csp}"
    );
    assert!(opened.headers.get("x-frame-options").is_none());
    let cookie = cookie.expect("a session");
    let grid = page(&api, "/", &cookie).await;
    assert_eq!(grid.status, StatusCode::OK);
    assert!(
        grid.text()
            .contains("id=\"workspace\" title=\"Workspace\">acme<")
    );
    assert_eq!(
        redeem(&api, &url).await.0.status,
        StatusCode::GONE,
        "single use"
    );
    assert_eq!(
        link_state(&api, "acme", issued["id"].as_str().unwrap()).await,
        "used"
    );

    // Revoked: 204, the session ends; an unknown link or another workspace's is 404.
    let id = issued["id"].as_str().unwrap();
    let other = admin(
        &api,
        "DELETE",
        &format!("/api/v1/workspaces/other/portal-links/{id}"),
        None,
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let revoke = admin(&api, "DELETE", &format!("{links}/{id}"), None).await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT);
    assert_eq!(page(&api, "/", &cookie).await.status, StatusCode::GONE);
    assert_eq!(link_state(&api, "acme", id).await, "revoked");
    let gone = admin(&api, "DELETE", &format!("{links}/nope"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // Issuing and revoking are in acme's audit log, with the link's id and never its token.
    let audit = admin(&api, "GET", "/api/v1/audit?workspace=acme", None).await;
    let entries = audit.json().expect("the audit log")["items"].clone();
    let of = |action: &str| -> Vec<Value> {
        let items = entries.as_array().expect("items").iter();
        items
            .filter(|e| e["action"] == action && e["target"] == id)
            .cloned()
            .collect()
    };
    assert_eq!(of("portal_link.issued").len(), 1, "{entries}");
    assert_eq!(of("portal_link.revoked").len(), 1, "{entries}");
    assert!(
        !entries.to_string().contains(&token),
        "the token is in the audit log"
    );

    // The token is in no database file and in none of flowd's output.
    for file in std::fs::read_dir(dir.path()).expect("the test folder") {
        let path = file.expect("a file").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read a file");
            let found = bytes.windows(token.len()).any(|w| w == token.as_bytes());
            assert!(!found, "the token is in {}", path.display());
        }
    }
    let (lines, _) = flowd.output_lines();
    assert!(
        !lines.iter().any(|l| l.contains(&token)),
        "the token is in flowd's output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_cannot_be_framed_by_default() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (url, flows) = setup(dir.path());
    let engine = TestEngine::start(&EngineSetup::new(url, flows)).await;
    let answer = engine
        .api()
        .call("GET", "/", None, &[])
        .await
        .expect("GET /");
    let csp = answer.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.ends_with("frame-ancestors 'none'"), "{csp}");
    assert_eq!(answer.headers["x-frame-options"], "DENY");
    engine.stop().await;
}
