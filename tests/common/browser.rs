//! A real browser for tests: Debian's chromium, driven by fantoccini through chromedriver on
//! a free loopback port, headless at phone size on a fresh profile. Dropping a [`Browser`]
//! kills chromedriver's process group, which holds chromium and its helpers.
//!
//! WebDriver cannot show response headers: read those with reqwest.

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::Url;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless chromium as root in a closed network: no sandbox (root), no GPU, and none of the
/// background traffic (component updates, sync, QUIC probes) that would otherwise flood it.
/// Our TLS test certificates are self-signed.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",
];

/// What the page is rendered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// A 390 × 844 phone: mobile emulation, so the viewport meta tag counts, touch input
    /// and a device pixel ratio of 2. (A headless window alone is never narrower than
    /// 500 px.)
    Phone,
    /// A 1280 × 800 desktop window.
    Desktop,
}

impl Device {
    /// The viewport in CSS pixels.
    pub const fn size(self) -> (u32, u32) {
        match self {
            Device::Phone => (390, 844),
            Device::Desktop => (1280, 800),
        }
    }

    fn chrome_options(self, profile: &Path) -> serde_json::Value {
        let (width, height) = self.size();
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--window-size={width},{height}"));
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut options = serde_json::json!({ "binary": CHROMIUM, "args": args });
        if self == Device::Phone {
            options["mobileEmulation"] = serde_json::json!({
                "deviceMetrics": {
                    "width": width, "height": height, "pixelRatio": 2.0,
                    "mobile": true, "touch": true,
                },
            });
        }
        options
    }
}

/// A cookie as the browser reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserCookie {
    pub name: String,
    pub value: String,
    pub secure: bool,
    pub http_only: bool,
    /// `Strict`, `Lax` or `None`, when the browser reports one.
    pub same_site: Option<String>,
    pub path: Option<String>,
    pub domain: Option<String>,
    /// Unix seconds; `None` for a session cookie.
    pub expires: Option<i64>,
}

/// chromedriver, started in its own process group; the group is killed on drop.
struct Driver {
    child: Option<Child>,
    log_path: PathBuf,
}

impl Driver {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL the whole group (chromedriver, chromium, its renderers), then reap
    /// chromedriver. The group id is chromedriver's PID, which stays ours until reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A browser session. Methods panic with the page's URL when the page is not as expected:
/// they are for tests.
pub struct Browser {
    // Field order is drop order: the session, then the processes, then the profile.
    client: Client,
    driver: Driver,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver and a chromium session on a phone.
    pub async fn start() -> Browser {
        Self::start_on(Device::Phone).await
    }

    /// Start chromedriver and a chromium session on `device`.
    pub async fn start_on(device: Device) -> Browser {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("chromedriver.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let port = super::free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {CHROMEDRIVER}: {e} (apt-get install chromium chromium-driver)"
                )
            });
        let mut driver = Driver {
            child: Some(child),
            log_path,
        };
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&mut driver, &base).await;

        let capabilities = serde_json::json!({
            "goog:chromeOptions": device.chrome_options(&dir.path().join("profile")),
            "timeouts": { "pageLoad": 30_000, "script": 10_000 },
        });
        // Plain HTTP to chromedriver on loopback: no TLS stack (and no rustls provider) needed.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&base)
            .await
            .unwrap_or_else(|e| panic!("no chromium session: {e}\n{}", driver.log()));
        Browser {
            client,
            driver,
            dir,
        }
    }

    /// The fantoccini client, for anything the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// chromedriver's output so far.
    pub fn log(&self) -> String {
        self.driver.log()
    }

    /// chromedriver's PID: also the process group of chromium and its helpers.
    pub fn driver_pid(&self) -> Option<u32> {
        self.driver.child.as_ref().map(Child::id)
    }

    /// End the session cleanly (chromium exits), then stop chromedriver.
    pub async fn quit(mut self) {
        let _ = self.client.clone().close().await;
        self.driver.kill();
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    pub async fn current_url(&self) -> Url {
        self.client.current_url().await.unwrap()
    }

    /// Poll the URL until `done` accepts it; panics with the last URL after `timeout`.
    pub async fn wait_for_url(&self, done: impl Fn(&Url) -> bool, timeout: Duration) -> Url {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            // Mid-navigation the driver may answer with an error: poll again.
            if let Ok(url) = self.client.current_url().await {
                if done(&url) {
                    return url;
                }
                last = Some(url);
            }
            if Instant::now() >= deadline {
                panic!(
                    "URL not as expected after {timeout:?}; last: {}",
                    last.map_or("none".into(), |u| u.to_string())
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page's markup as the browser has it now.
    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// Type `value` into the (cleared) form field named `name`.
    pub async fn fill(&self, name: &str, value: &str) {
        let field = self.find(&format!("[name={}]", css_string(name))).await;
        field.clear().await.unwrap();
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into {name}: {e}"));
    }

    /// Click the submit button whose `value`, `name` or text is `label`.
    pub async fn click_submit(&self, label: &str) {
        let l = xpath_string(label);
        let xpath = format!(
            "//button[(not(@type) or @type='submit') and (@value={l} or @name={l} or normalize-space(.)={l})]\
             | //input[@type='submit' and (@value={l} or @name={l})]"
        );
        let button = match self.client.find(Locator::XPath(&xpath)).await {
            Ok(button) => button,
            Err(e) => panic!("no submit button {label:?} on {}: {e}", self.here().await),
        };
        button.click().await.unwrap();
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Run `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn execute(&self, script: &str, args: Vec<serde_json::Value>) -> serde_json::Value {
        match self.client.execute(script, args).await {
            Ok(value) => value,
            Err(e) => panic!("script failed on {}: {e}\n{script}", self.here().await),
        }
    }

    /// Every cookie the browser holds for the current page.
    pub async fn cookies(&self) -> Vec<BrowserCookie> {
        self.client
            .get_all_cookies()
            .await
            .unwrap()
            .into_iter()
            .map(|c| BrowserCookie {
                name: c.name().to_string(),
                value: c.value().to_string(),
                secure: c.secure().unwrap_or(false),
                http_only: c.http_only().unwrap_or(false),
                same_site: c.same_site().map(|s| s.to_string()),
                path: c.path().map(str::to_string),
                domain: c.domain().map(str::to_string),
                expires: c
                    .expires()
                    .and_then(|e| e.datetime())
                    .map(|t| t.unix_timestamp()),
            })
            .collect()
    }

    /// Save a PNG of the viewport to `path` (parent directories created).
    pub async fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let png = self.client.screenshot().await.unwrap();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no {css} on {}: {e}", self.here().await),
        }
    }

    async fn here(&self) -> String {
        self.client
            .current_url()
            .await
            .map_or("an unknown page".into(), |u| u.to_string())
    }
}

/// Poll chromedriver's `/status` until it is ready; panic with its output if it exits.
async fn wait_ready(driver: &mut Driver, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{base}/status")).send().await
            && let Ok(status) = r.json::<serde_json::Value>().await
            && status["value"]["ready"] == true
        {
            return;
        }
        if let Some(status) = driver.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!("chromedriver exited early ({status}):\n{}", driver.log());
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver not ready in 30 s:\n{}",
            driver.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `s` as a CSS string literal.
fn css_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `s` as an XPath 1.0 string literal (which has no escapes: quotes are spliced in).
fn xpath_string(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}
