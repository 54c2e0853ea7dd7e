//! A real headless Chromium for the console's tests, driven through WebDriver: Debian's
//! `chromedriver` (package `chromium-driver`) on a free port of 127.0.0.1, one browser session,
//! ended when the `Browser` is dropped. Without chromedriver or Chromium the test says so on
//! stderr and is skipped, except under `CI=true`, where it fails: CI installs them (`.ci/run`).
//!
//! With `FLOWD_TEST_SCREENSHOTS=<folder>` set, [`Browser::screenshot`] saves PNGs there
//! (`FLOWD_TEST_SCREENSHOTS=docs/console cargo test --test it console` refreshes the docs').

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, TimeoutConfiguration};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// How long a condition may take on a loaded machine before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

const DRIVERS: [&str; 2] = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
const BROWSERS: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// A browser session, or `None` (with a note on stderr) when Chromium is not installed.
    pub async fn start() -> Option<Browser> {
        let found = |paths: &[&str]| paths.iter().map(PathBuf::from).find(|p| p.exists());
        let (Some(driver_path), Some(browser_path)) = (found(&DRIVERS), found(&BROWSERS)) else {
            skip(
                "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
            );
            return None;
        };
        let port = free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver_path.display()));
        let mut browser = BrowserStart {
            driver: Some(driver),
        };
        let url = format!("http://127.0.0.1:{port}");
        let client = connect(&url, &browser_path).await;
        Some(Browser {
            client,
            driver: browser.driver.take().expect("the driver process"),
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let page = match self.client.find(Locator::Css("body")).await {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!("no element `{css}` on {url:?} ({e}); the page shows:\n{page}")
            }
        }
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("the text of `{css}`: {e}"))
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Waits until the page's text passes `check`; with `reload`, reloads between looks.
    pub async fn wait_for_text(&self, what: &str, reload: bool, check: impl Fn(&str) -> bool) {
        self.wait_for(what, "body", reload, check).await;
    }

    /// Waits until the text of `css` passes `check`; with `reload`, reloads between looks.
    pub async fn wait_for(
        &self,
        what: &str,
        css: &str,
        reload: bool,
        check: impl Fn(&str) -> bool,
    ) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // The page may be loading (after a click or a reload): no element yet, or one that
            // went stale between finding and reading it, is "not yet".
            let text = self.now_text(css).await;
            if text.as_deref().is_some_and(&check) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {PATIENCE:?} for {what}; `{css}` shows: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
            if reload {
                self.client.refresh().await.expect("reload the page");
            }
        }
    }

    /// The text of `css` now, if the page has it.
    async fn now_text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Runs a script in the page and returns its result.
    pub async fn script(&self, script: &str, args: Vec<serde_json::Value>) -> serde_json::Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("run a script in the page: {e}"))
    }

    /// Saves the page as `<name>.png` in `FLOWD_TEST_SCREENSHOTS`, when set.
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("FLOWD_TEST_SCREENSHOTS") else {
            return;
        };
        let png = self.client.screenshot().await.expect("take a screenshot");
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(dir)
            .join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("save {}: {e}", path.display()));
    }

    /// Ends the browser session.
    pub async fn close(self) {
        if let Err(e) = self.client.clone().close().await {
            eprintln!("closing the browser session: {e}");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        stop(&mut self.driver);
    }
}

/// The driver process until the session is up: stopped if connecting panics.
struct BrowserStart {
    driver: Option<Child>,
}

impl Drop for BrowserStart {
    fn drop(&mut self) {
        if let Some(driver) = &mut self.driver {
            stop(driver);
        }
    }
}

fn stop(driver: &mut Child) {
    if let Err(e) = driver.kill() {
        eprintln!("stopping chromedriver: {e}");
    }
    let _ = driver.wait();
}

/// Connects to the driver once it listens; it takes a moment to start.
async fn connect(url: &str, browser: &Path) -> Client {
    let mut capabilities = Capabilities::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": browser,
            // Headless, as root in a container: no sandbox, no GPU, /tmp instead of /dev/shm.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,900", "--lang=en-US"],
        }),
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        // A driver that accepts the connection but never answers must fail the test, not hang it.
        let mut builder = ClientBuilder::new(connector);
        builder.capabilities(capabilities.clone());
        match tokio::time::timeout(PATIENCE, builder.connect(url)).await {
            Ok(Ok(client)) => return with_timeouts(client).await,
            Ok(Err(e)) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Err(e)) => panic!("no WebDriver session from chromedriver at {url}: {e}"),
            Err(_) => panic!("chromedriver at {url} did not answer within {PATIENCE:?}"),
        }
    }
}

/// Bounds page loads and scripts by [`PATIENCE`] (WebDriver's defaults are 300 s and 30 s), so a
/// page that never finishes loading fails its test instead of stalling it for minutes.
async fn with_timeouts(client: Client) -> Client {
    let timeouts = TimeoutConfiguration::new(Some(PATIENCE), Some(PATIENCE), None);
    client
        .update_timeouts(timeouts)
        .await
        .unwrap_or_else(|e| panic!("set the WebDriver timeouts: {e}"));
    client
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Says the test is skipped, on the process's stderr (libtest hides a passing test's output),
/// or fails it under CI, where the browser tests must run.
fn skip(why: &str) {
    let ci = std::env::var("CI").unwrap_or_default();
    if ci.eq_ignore_ascii_case("true") || ci == "1" {
        panic!("{why}, but CI={ci}: in CI the console's browser tests must run");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let note = format!("{test}: skipped: {why}\n");
    if let Err(e) = std::io::stderr().write_all(note.as_bytes()) {
        eprintln!("could not say that the test was skipped: {e}");
    }
}
