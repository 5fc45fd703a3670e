//! The authorization flow's pages in a real browser (chromium, phone size): the fields exist
//! and are labelled, nothing scrolls sideways, the CSP lets the inline style apply (and a
//! wrong hash would not), the forms post the fields the handler reads and follow a redirect
//! to another origin. Screenshots go to the target directory; with
//! `TOLLGATE_UPDATE_SCREENSHOTS=1` also to `docs/` for the README.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::browser::{Browser, Device};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate::token::authorize::pages::{self, ConsentPage, LoginPage, ScopeLine};

const CLIENT: &str = "Orders dashboard";
const FLOW: &str = "fl0w-7f3a";
const CSRF: &str = "csrf-91c2-\"quoted\"";

fn login_page(username: &str, error: Option<&str>) -> String {
    pages::login(&LoginPage {
        action: "/authorize/login",
        flow: FLOW,
        csrf: CSRF,
        client_name: CLIENT,
        username,
        error,
    })
}

/// Consent with values long enough to push a careless layout sideways.
fn consent_page() -> String {
    let long_scope = format!("urn:tollgate:scope:{}", "x".repeat(72));
    let scopes = [
        ScopeLine {
            name: "orders:read",
            description: Some("Read your orders and their status"),
        },
        ScopeLine {
            name: "orders:write",
            description: Some("Place and cancel orders for you"),
        },
        ScopeLine {
            name: "profile",
            description: None,
        },
        ScopeLine {
            name: &long_scope,
            description: Some(&"Unbroken".repeat(12)),
        },
    ];
    pages::consent(&ConsentPage {
        action: "/authorize/consent",
        flow: FLOW,
        csrf: CSRF,
        client_name: &format!("{CLIENT} {}", "W".repeat(40)),
        username: "alice.longname@example.com",
        scopes: &scopes,
    })
}

/// The pages on their own server; form posts are recorded and answered with a 303 to
/// `callback` (another origin, as the client's redirect URI would be).
struct PageServer {
    base: String,
    posts: Arc<Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PageServer {
    async fn start(callback: String) -> PageServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let recorded = posts.clone();
        let callback = Arc::new(callback);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (posts, callback) = (recorded.clone(), callback.clone());
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let svc = hyper::service::service_fn(move |req| {
                        serve(req, posts.clone(), callback.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        PageServer {
            base: format!("http://{addr}"),
            posts,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The form fields of the posts to `path`, in order.
    fn posted(&self, path: &str) -> Vec<Vec<(String, String)>> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, body)| {
                form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect()
            })
            .collect()
    }
}

async fn serve(
    req: Request<Incoming>,
    posts: Arc<Mutex<Vec<(String, String)>>>,
    callback: Arc<String>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if req.method() == Method::POST {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        posts
            .lock()
            .unwrap()
            .push((path, String::from_utf8_lossy(&body).into_owned()));
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = hyper::StatusCode::SEE_OTHER;
        resp.headers_mut().insert(
            hyper::header::LOCATION,
            format!("{callback}/callback?code=c0de&state=st4te")
                .parse()
                .unwrap(),
        );
        return Ok(resp);
    }
    let mut headers = pages::headers();
    let html = match path.as_str() {
        "/login" => login_page("", None),
        "/login-failed" => login_page("alice", Some("Wrong username or password.")),
        "/login-unhashed" => {
            // The control: same markup, a CSP that does not allow the stylesheet.
            for (name, value) in &mut headers {
                if *name == hyper::header::CONTENT_SECURITY_POLICY {
                    *value = "default-src 'none'".parse().unwrap();
                }
            }
            login_page("", None)
        }
        "/consent" => consent_page(),
        "/error" => pages::error(
            "Unknown application",
            "This sign-in link names an application that is not registered here. \
             Go back to the application and try again.",
        ),
        "/signed-out" => pages::signed_out(),
        _ => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"not found")));
            *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
            return Ok(resp);
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(html)));
    for (name, value) in headers {
        resp.headers_mut().append(name, value);
    }
    if path == "/login" {
        resp.headers_mut().append(
            hyper::header::SET_COOKIE,
            "tg_flow=fl0w; Path=/; HttpOnly; SameSite=Lax"
                .parse()
                .unwrap(),
        );
    }
    Ok(resp)
}

/// Save a screenshot under the target directory, to look at after a run.
async fn screenshot(browser: &Browser, name: &str) {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    browser.screenshot(target.join(name)).await;
}

/// A screenshot the README shows: also written to `docs/` with
/// `TOLLGATE_UPDATE_SCREENSHOTS=1` (not on every run, so tests leave the tree clean).
async fn readme_screenshot(browser: &Browser, name: &str) {
    screenshot(browser, name).await;
    if std::env::var_os("TOLLGATE_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        browser.screenshot(docs.join(name)).await;
    }
}

async fn viewport_width(browser: &Browser) -> u64 {
    browser
        .execute("return window.innerWidth;", vec![])
        .await
        .as_u64()
        .unwrap()
}

async fn assert_no_horizontal_scroll(browser: &Browser) {
    let v = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await;
    let (scroll, inner) = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
    assert!(
        scroll <= inner,
        "{} scrolls sideways: {scroll} px wide in a {inner} px viewport",
        browser.current_url().await
    );
}

/// The computed style of the first element matching `css`.
async fn computed(browser: &Browser, css: &str, property: &str) -> String {
    browser
        .execute(
            "return getComputedStyle(document.querySelector(arguments[0]))\
             .getPropertyValue(arguments[1]);",
            vec![css.into(), property.into()],
        )
        .await
        .as_str()
        .unwrap()
        .to_string()
}

/// The label text and attributes of the input named `name`.
async fn field(browser: &Browser, name: &str) -> serde_json::Value {
    browser
        .execute(
            "const f = document.querySelector(`[name=\"${arguments[0]}\"]`);
             if (!f) return null;
             return { type: f.type, value: f.value, autocomplete: f.autocomplete,
                      required: f.required,
                      labels: Array.from(f.labels || [], l => l.textContent.trim()) };",
            vec![name.into()],
        )
        .await
}

/// What the echo upstream saw, read from the page the browser landed on.
async fn echoed(browser: &Browser) -> serde_json::Value {
    let text = browser
        .execute(
            "const pre = document.querySelector('pre');
             return (pre || document.body).textContent;",
            vec![],
        )
        .await;
    serde_json::from_str(text.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn login_page_in_a_phone_browser() {
    let client_site = common::start_upstream().await;
    let server = PageServer::start(format!("http://{}", client_site.addr)).await;
    let browser = Browser::start().await;

    browser.goto(&server.url("/login")).await;
    assert_eq!(
        viewport_width(&browser).await,
        u64::from(Device::Phone.size().0)
    );
    assert_eq!(
        browser.execute("return document.title;", vec![]).await,
        "Sign in to Orders dashboard · tollgate"
    );
    assert_eq!(browser.text_of("h1").await, "Sign in");
    assert_eq!(
        browser.text_of(".lede").await,
        "to continue to Orders dashboard"
    );

    let username = field(&browser, "username").await;
    assert_eq!(username["type"], "text");
    assert_eq!(username["autocomplete"], "username");
    assert_eq!(username["required"], true);
    assert_eq!(username["labels"], serde_json::json!(["Username"]));
    let password = field(&browser, "password").await;
    assert_eq!(password["type"], "password");
    assert_eq!(password["autocomplete"], "current-password");
    assert_eq!(password["labels"], serde_json::json!(["Password"]));
    for (name, value) in [("flow", FLOW), ("csrf", CSRF)] {
        let hidden = field(&browser, name).await;
        assert_eq!(hidden["type"], "hidden");
        assert_eq!(hidden["value"], value);
    }
    assert_eq!(
        browser
            .execute("return document.activeElement.name;", vec![])
            .await,
        "username"
    );
    assert_no_horizontal_scroll(&browser).await;

    // The stylesheet applies under our CSP, and would not under one without its hash.
    let styled = computed(&browser, "button", "background-color").await;
    let styled_body = computed(&browser, "body", "background-color").await;
    readme_screenshot(&browser, "login.png").await;
    browser.goto(&server.url("/login-unhashed")).await;
    let unstyled = computed(&browser, "button", "background-color").await;
    let unstyled_body = computed(&browser, "body", "background-color").await;
    assert_ne!(styled, unstyled, "button looks the same without the style");
    assert_ne!(styled_body, unstyled_body);

    // The cookie set with the login page, as the browser keeps it.
    browser.goto(&server.url("/login")).await;
    let cookies = browser.cookies().await;
    let flow = cookies.iter().find(|c| c.name == "tg_flow").unwrap();
    assert_eq!(flow.value, "fl0w");
    assert!(flow.http_only);
    assert!(!flow.secure);
    assert_eq!(flow.same_site.as_deref(), Some("Lax"));
    assert_eq!(flow.path.as_deref(), Some("/"));
    assert_eq!(flow.expires, None);

    // Submitting posts the four fields; the 303 to another origin is followed (no
    // form-action in the CSP) and carries no Referer.
    browser.fill("username", "alice").await;
    browser.fill("password", "pa ss&word").await;
    browser.click_submit("Sign in").await;
    let landed = browser
        .wait_for_url(|u| u.path() == "/callback", Duration::from_secs(10))
        .await;
    assert_eq!(landed.port(), Some(client_site.addr.port()));
    assert_eq!(landed.query(), Some("code=c0de&state=st4te"));
    let fields: Vec<(String, String)> = [
        ("flow", FLOW),
        ("csrf", CSRF),
        ("username", "alice"),
        ("password", "pa ss&word"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(server.posted("/authorize/login"), vec![fields]);
    let seen = echoed(&browser).await;
    assert_eq!(seen["method"], "GET");
    assert!(seen["headers"].get("referer").is_none(), "{seen}");

    // After a failure: the alert, the username kept, the password focused.
    browser.goto(&server.url("/login-failed")).await;
    assert_eq!(
        browser.text_of("[role=alert]").await,
        "Wrong username or password."
    );
    assert_eq!(field(&browser, "username").await["value"], "alice");
    assert_eq!(field(&browser, "password").await["value"], "");
    assert_eq!(
        browser
            .execute("return document.activeElement.name;", vec![])
            .await,
        "password"
    );
    assert_no_horizontal_scroll(&browser).await;
    screenshot(&browser, "login-failed.png").await;
    browser.quit().await;
}

#[tokio::test]
async fn login_page_on_a_desktop() {
    let client_site = common::start_upstream().await;
    let server = PageServer::start(format!("http://{}", client_site.addr)).await;
    let browser = Browser::start_on(Device::Desktop).await;
    browser.goto(&server.url("/login")).await;
    assert_eq!(
        viewport_width(&browser).await,
        u64::from(Device::Desktop.size().0)
    );
    assert_no_horizontal_scroll(&browser).await;
    // The card keeps its reading width and sits in the middle.
    let card = browser
        .execute(
            "const r = document.querySelector('main').getBoundingClientRect();
             return [r.left, window.innerWidth - r.right, r.width];",
            vec![],
        )
        .await;
    let (left, right, width) = (
        card[0].as_f64().unwrap(),
        card[1].as_f64().unwrap(),
        card[2].as_f64().unwrap(),
    );
    assert!(width <= 420.0, "card is {width} px wide");
    assert!(
        (left - right).abs() <= 1.0,
        "card off centre: {left} / {right}"
    );
    readme_screenshot(&browser, "login-desktop.png").await;
    browser.quit().await;
}

#[tokio::test]
async fn consent_error_and_signed_out_pages_in_a_phone_browser() {
    let client_site = common::start_upstream().await;
    let server = PageServer::start(format!("http://{}", client_site.addr)).await;
    let browser = Browser::start().await;

    browser.goto(&server.url("/consent")).await;
    assert_eq!(
        viewport_width(&browser).await,
        u64::from(Device::Phone.size().0)
    );
    assert_eq!(browser.text_of("h1").await, "Allow access?");
    let items = browser
        .execute(
            "return Array.from(document.querySelectorAll('.scopes li'), li => li.innerText);",
            vec![],
        )
        .await;
    assert_eq!(items.as_array().unwrap().len(), 4);
    assert_eq!(items[0], "Read your orders and their status\norders:read");
    assert_eq!(items[2], "profile");
    let buttons = browser
        .execute(
            "return Array.from(document.querySelectorAll('form button'),
                               b => [b.type, b.name, b.value, b.textContent]);",
            vec![],
        )
        .await;
    assert_eq!(
        buttons,
        serde_json::json!([
            ["submit", "decision", "allow", "Allow"],
            ["submit", "decision", "deny", "Deny"]
        ])
    );
    assert_no_horizontal_scroll(&browser).await;
    let allow = computed(&browser, "button[value=allow]", "background-color").await;
    let deny = computed(&browser, "button[value=deny]", "background-color").await;
    assert_ne!(allow, deny, "allow and deny look the same");
    screenshot(&browser, "consent.png").await;

    browser.click_submit("deny").await;
    browser
        .wait_for_url(|u| u.path() == "/callback", Duration::from_secs(10))
        .await;
    let fields: Vec<(String, String)> = [("flow", FLOW), ("csrf", CSRF), ("decision", "deny")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(server.posted("/authorize/consent"), vec![fields]);

    browser.goto(&server.url("/error")).await;
    assert_eq!(browser.text_of("h1").await, "Unknown application");
    assert_eq!(
        browser
            .execute(
                "return document.querySelectorAll('form, a').length;",
                vec![]
            )
            .await,
        0
    );
    assert_no_horizontal_scroll(&browser).await;
    screenshot(&browser, "error.png").await;

    browser.goto(&server.url("/signed-out")).await;
    assert_eq!(browser.text_of("h1").await, "Signed out");
    assert_no_horizontal_scroll(&browser).await;
    browser.quit().await;
}

/// The live (not zombie) processes in process group `pgid`, from /proc.
fn live_in_group(pgid: u32) -> Vec<String> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            live.push(format!("{head})"));
        }
    }
    live
}

#[tokio::test]
async fn dropping_a_browser_leaves_no_process_behind() {
    let browser = Browser::start().await;
    browser.goto("about:blank").await;
    let pgid = browser.driver_pid().unwrap();
    assert!(
        live_in_group(pgid).len() > 1,
        "chromium not in chromedriver's group: {:?}",
        live_in_group(pgid)
    );
    drop(browser);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !live_in_group(pgid).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "still running after drop: {:?}",
            live_in_group(pgid)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
