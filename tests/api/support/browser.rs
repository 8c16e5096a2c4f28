//! A real browser for the tests of pages: headless Chromium driven through a private
//! `chromedriver` (Debian's `chromium` and `chromium-driver`), one session per test.
//!
//! The chromedriver is started once per test process on a free loopback port, on first use,
//! and shared by the process's tests: `cargo test` runs them on threads of one process (each
//! gets its own Chromium and profile), nextest gives each test a process and so a chromedriver
//! of its own. Chromium's DevTools ports are chosen by chromedriver, free ones, so neither way
//! collides. Its directory holds every profile and every temporary file chromedriver and
//! Chromium make (`TMPDIR` points there); when the test process exits, also on a panic or a
//! kill, the watchdog stops chromedriver and every Chromium it started and removes it.
//!
//! `CHROME` names another Chromium binary than `/usr/bin/chromium`. Screenshots go to
//! `target/screenshots/` of the checkout, which CI keeps, whatever `CARGO_TARGET_DIR` says.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use base64::Engine;
use fantoccini::{Client, ClientBuilder, Locator, cookies::Cookie, wd::WebDriverCompatibleCommand};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::{Method, Url};
use serde_json::{Value, json};

use super::services::{Watched, on_path, private_dir};

/// How long a wait gives a page before the test fails: pages of our own binary render in
/// milliseconds, but a CI machine running the whole suite may be slow.
pub const WAIT: Duration = Duration::from_secs(15);

/// The window of a laptop.
pub const DESKTOP: (u32, u32) = (1280, 900);
/// The viewport of a phone (an iPhone 12 to 15, in CSS pixels).
pub const PHONE: (u32, u32) = (390, 844);

const INSTALL: &str = "apt-get install chromium chromium-driver";

/// Runs chromedriver in a process group of its own (`setsid` makes this shell its leader), so
/// that stopping it also stops every Chromium it started: chromedriver leaves them running
/// when it is terminated, and each would keep its profile open.
const GROUP: &str = r#"
trap 'trap "" TERM; kill -TERM 0; sleep 1; kill -KILL 0' TERM
"$@" &
wait $!
kill -KILL 0
"#;

struct Driver {
    port: u16,
    dir: PathBuf,
    _process: Watched,
}

static DRIVER: OnceLock<Driver> = OnceLock::new();

fn chrome_binary() -> String {
    std::env::var("CHROME").ok().filter(|c| !c.is_empty()).unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// The process's chromedriver, started on first use.
fn driver() -> &'static Driver {
    DRIVER.get_or_init(|| {
        assert!(on_path("chromedriver"), "this test needs chromedriver and Chromium: {INSTALL}");
        let chrome = chrome_binary();
        assert!(
            std::path::Path::new(&chrome).exists(),
            "this test needs Chromium at {chrome}: {INSTALL} (or set CHROME)"
        );
        let mut last_log = String::new();
        // Another process may take the free port before chromedriver binds it.
        for _ in 0..3 {
            match try_start() {
                Ok(driver) => return driver,
                Err(log) => last_log = log,
            }
        }
        panic!("chromedriver did not start:\n{last_log}");
    })
}

fn try_start() -> Result<Driver, String> {
    let dir = private_dir("cifix-chromedriver-");
    let port = super::free_port();
    let args: Vec<String> = ["sh", "-c", GROUP, "chromedriver-group", "env"]
        .into_iter()
        .map(String::from)
        .chain([format!("TMPDIR={}", dir.display()), "chromedriver".into(), format!("--port={port}")])
        .collect();
    let process = Watched::start(dir.clone(), "chromedriver", "setsid", &args, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if !process.running() {
            let log = process.log_text();
            process.stop();
            return Err(log);
        }
        if http(port, "GET", "/status", None).is_some_and(|status| status.contains("\"ready\":true")) {
            return Ok(Driver { port, dir, _process: process });
        }
        if Instant::now() > deadline {
            let log = process.log_text();
            process.stop();
            return Err(format!("not ready after 30 s:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request to chromedriver without an async runtime, for the start and for `Drop` (which
/// may run while a test unwinds, its runtime unable to drive fantoccini's requests); the body
/// of the answer, or `None` when chromedriver did not answer.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    // chromedriver keeps the connection open whatever the request says: the answer ends where
    // its Content-Length says.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|length| body.len() >= length) {
                return Some(body.to_string());
            }
        }
        match stream.read(&mut chunk).ok()? {
            0 => return text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()),
            n => answer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `target/screenshots/<name>.png` in the checkout, where CI keeps it.
fn save(name: &str, png: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// A message the page logged to its console (`level` is `SEVERE` for errors, `WARNING`, `INFO`
/// …; `source` is `security` for a Content-Security-Policy violation, `network` for a failed
/// request, `javascript` for an uncaught exception, `console-api` for `console.*`).
#[derive(Debug, Clone)]
pub struct ConsoleEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

/// A command chromedriver offers beyond the WebDriver standard, on the current session.
#[derive(Debug)]
struct SessionCommand {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for SessionCommand {
    // `url` is no dependency of ours; its error type is named through `Url`.
    fn endpoint(&self, base: &Url, session: Option<&str>) -> Result<Url, <Url as std::str::FromStr>::Err> {
        base.join(&format!("session/{}/{}", session.unwrap_or_default(), self.path))
    }

    fn method_and_body(&self, _: &Url) -> (Method, Option<String>) {
        (Method::POST, Some(self.body.to_string()))
    }
}

/// A headless Chromium with a fresh profile (no cookies, no storage), closed when dropped.
pub struct Browser {
    client: Client,
    session: String,
    profile: PathBuf,
    closed: bool,
}

impl Browser {
    /// A new browser with a laptop-sized window.
    pub async fn new() -> Browser {
        let driver = driver();
        let profile = driver.dir.join(format!("profile-{}", uuid::Uuid::new_v4()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome_binary(),
                "args": [
                    "--headless=new",
                    // Tests often run as root in a container, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    // A container's /dev/shm is often 64 MB, too small for Chromium.
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                ],
            },
            // What the page logs to its console, Content-Security-Policy violations included.
            "goog:loggingPrefs": { "browser": "ALL" },
            "timeouts": { "pageLoad": 30_000, "script": 30_000, "implicit": 0 },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        // Plain HTTP to a loopback chromedriver: fantoccini's TLS connectors would need a rustls
        // crypto provider chosen for the whole process, and there is nothing to encrypt.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium ({}): {e}", chrome_binary()));
        let session = client.session_id().await.unwrap().expect("a session id");
        Browser { client, session, profile, closed: false }
    }

    /// The fantoccini client, for what the helpers below do not cover (alerts, frames, keys …).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The address of the page the browser shows.
    pub async fn url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_else(|e| format!("(unknown: {e})"))
    }

    /// Waits for an element matching the CSS `selector` and returns it.
    pub async fn wait_for(&self, selector: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(selector))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("no element {selector:?} after {WAIT:?} on {}: {e}", self.url().await),
        }
    }

    /// Waits until the page's visible text contains `text`.
    pub async fn wait_for_text(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.page_text().await.contains(text) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "no text {text:?} after {WAIT:?} on {}; the page says:\n{}",
                    self.url().await,
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The elements matching `selector` now (none is not an error).
    pub async fn find_all(&self, selector: &str) -> Vec<fantoccini::elements::Element> {
        self.client.find_all(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("finding {selector:?}: {e}"))
    }

    /// The visible text of the first element matching `selector` (waited for).
    pub async fn text(&self, selector: &str) -> String {
        self.wait_for(selector).await.text().await.unwrap_or_else(|e| panic!("reading the text of {selector:?}: {e}"))
    }

    /// The visible text of the whole page.
    pub async fn page_text(&self) -> String {
        let text = self.client.execute("return document.body ? document.body.innerText : ''", vec![]).await;
        text.ok().and_then(|t| t.as_str().map(String::from)).unwrap_or_default()
    }

    /// Replaces the value of the input matching `selector` (waited for) by typing `value`.
    pub async fn fill(&self, selector: &str, value: &str) {
        let input = self.wait_for(selector).await;
        input.clear().await.unwrap_or_else(|e| panic!("clearing {selector:?}: {e}"));
        input.send_keys(value).await.unwrap_or_else(|e| panic!("typing into {selector:?}: {e}"));
    }

    /// [`Browser::fill`] for the input named `name`.
    pub async fn fill_by_name(&self, name: &str, value: &str) {
        self.fill(&format!("[name=\"{name}\"]"), value).await;
    }

    /// Clicks the element matching `selector` (waited for).
    pub async fn click(&self, selector: &str) {
        let element = self.wait_for(selector).await;
        if let Err(e) = element.click().await {
            panic!("clicking {selector:?} on {}: {e}", self.url().await);
        }
    }

    /// The cookies the browser holds for the current page, with their flags (`http_only()`,
    /// `same_site()`, `secure()`), which a script on the page could not see. `SameSite` is not
    /// exported by fantoccini: compare `same_site().map(|s| s.to_string())` with `"Strict"`.
    pub async fn cookies(&self) -> Vec<Cookie<'static>> {
        self.client.get_all_cookies().await.unwrap_or_else(|e| panic!("reading the cookies: {e}"))
    }

    /// The cookie named `name`, or a failure naming the cookies there are.
    pub async fn cookie(&self, name: &str) -> Cookie<'static> {
        let cookies = self.cookies().await;
        let names: Vec<String> = cookies.iter().map(|c| c.name().to_string()).collect();
        match cookies.into_iter().find(|c| c.name() == name) {
            Some(cookie) => cookie,
            None => panic!("no cookie {name:?} on {}; there are {names:?}", self.url().await),
        }
    }

    /// Chromium's DevTools protocol, which chromedriver passes on.
    async fn devtools(&self, method: &str, params: Value) -> Value {
        let command = SessionCommand { path: "goog/cdp/execute", body: json!({ "cmd": method, "params": params }) };
        self.client.issue_cmd(command).await.unwrap_or_else(|e| panic!("DevTools {method}: {e}"))
    }

    /// Shows pages as a phone does: a 390×844 viewport, its pixel density, mobile layout rules.
    pub async fn phone(&self) {
        let (width, height) = PHONE;
        let metrics = json!({ "width": width, "height": height, "deviceScaleFactor": 2, "mobile": true });
        self.devtools("Emulation.setDeviceMetricsOverride", metrics).await;
    }

    /// Back to the laptop window after [`Browser::phone`].
    pub async fn desktop(&self) {
        self.devtools("Emulation.clearDeviceMetricsOverride", json!({})).await;
    }

    /// Saves what the window shows as `target/screenshots/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        match self.client.screenshot().await {
            Ok(png) => save(name, &png),
            Err(e) => panic!("a screenshot of {}: {e}", self.url().await),
        }
    }

    /// [`Browser::screenshot`] of the whole page, beyond the window (a long page makes a tall
    /// image: the API docs are 11,000 pixels).
    pub async fn screenshot_full_page(&self, name: &str) -> PathBuf {
        let metrics = self.devtools("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let clip = json!({ "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1 });
        let shot = self
            .devtools("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true, "clip": clip }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("a screenshot"))
            .expect("a base64 screenshot");
        save(name, &png)
    }

    /// What the pages logged to the console since the last call (Chromium hands each entry
    /// out once).
    pub async fn take_console(&self) -> Vec<ConsoleEntry> {
        let command = SessionCommand { path: "se/log", body: json!({ "type": "browser" }) };
        let log = self.client.issue_cmd(command).await.unwrap_or_else(|e| panic!("reading the console: {e}"));
        let field = |entry: &Value, name: &str| entry[name].as_str().unwrap_or_default().to_string();
        log.as_array()
            .into_iter()
            .flatten()
            .map(|e| ConsoleEntry {
                level: field(e, "level"),
                source: field(e, "source"),
                message: field(e, "message"),
            })
            .collect()
    }

    /// The errors among [`Browser::take_console`]: Content-Security-Policy violations, failed
    /// requests, uncaught exceptions, `console.error`.
    pub async fn take_console_errors(&self) -> Vec<ConsoleEntry> {
        self.take_console().await.into_iter().filter(|e| e.level == "SEVERE").collect()
    }

    /// Fails listing the console errors since the last look, if there are any.
    pub async fn assert_no_console_errors(&self) {
        let errors = self.take_console_errors().await;
        if !errors.is_empty() {
            let listed: Vec<String> = errors.iter().map(|e| format!("  [{}] {}", e.source, e.message)).collect();
            panic!("console errors on {}:\n{}", self.url().await, listed.join("\n"));
        }
    }

    /// Ends the session and its Chromium now (dropping the browser does the same).
    pub async fn close(mut self) {
        self.closed = self.client.clone().close().await.is_ok();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.closed {
            // Synchronous: the test's runtime may be unwinding and unable to run fantoccini's
            // own farewell request.
            let _ = http(driver().port, "DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
