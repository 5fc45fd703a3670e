//! The harness of the browser tests of the authorization code flow
//! (tests/authorize_browser.rs, tests/authorize_exchange.rs): a gateway over TLS with a test
//! certificate (so the `__Host-` cookies are real) and a debug log, its catalog of clients,
//! an app's callback on a `127.0.0.1:0` listener, authorization requests with fresh PKCE
//! pairs, and the browser's steps (sign in, wait for a page, arrive at the callback, get a
//! code).

use crate::common::browser::{Browser, BrowserCookie, BrowserResponse};
use crate::common::*;
use fantoccini::Locator;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, ClientId, CsrfToken, EndpointNotSet, EndpointSet, ExtraTokenFields, PkceCodeChallenge,
    RedirectUrl, StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Alice's password. It must never appear in a log line.
pub const PASSWORD: &str = "quartz-Lantern-47-browser";
pub const WRONG: &str = "not-her-password-91";
pub const REPORTS_SECRET: &str = "reports-secret-5d1";
/// The one message of every failed sign-in (wrong password, unknown user, locked out).
pub const FAILED: &str = "The username or password is wrong.";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct IdTokenField {
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

pub type Tokens = StandardTokenResponse<IdTokenField, BasicTokenType>;
pub type OidcClient = oauth2::Client<
    BasicErrorResponse,
    Tokens,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

pub struct Env {
    pub gw: Gateway,
    pub key: TestKey,
    _api: Upstream,
    /// The apps' redirect target: an HTTP server on 127.0.0.1:0 that echoes each request.
    pub app: Upstream,
}

fn catalog(api: &Upstream, app: &Upstream) -> String {
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{api}"] }}
    auth: jwt
    rules: [{{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}]
  - name: billing
    prefix: /billing
    upstream: {{ servers: ["{api}"] }}
    auth: jwt
user_pools:
  - name: staff
    users:
      - username: alice
        password_hash: "{alice}"
        roles: [orders:read]
        email: alice@example.test
        name: Alice Example
credentials:
  - client_id: spa
    client_name: Orders app
    token_endpoint_auth_method: none
    grant_types: [authorization_code, refresh_token]
    redirect_uris: [http://127.0.0.1/callback]
    post_logout_redirect_uris: [http://127.0.0.1/bye]
    allowed_origins: ["http://127.0.0.1:{app_port}"]
    acl: [orders]
    roles: [orders:read]
    user_pool: staff
    token: {{ refresh: true }}
  - client_id: seed
    client_name: Seed 002 app
    token_endpoint_auth_method: none
    grant_types: [authorization_code]
    redirect_uris: ["http://127.0.0.1:{app_port}/callback"]
    acl: [orders]
    roles: [orders:read]
    user_pool: staff
  - client_id: reports
    client_name: Reports
    client_secret_hash: "{reports}"
    grant_types: [authorization_code]
    redirect_uris: ["http://127.0.0.1:{app_port}/callback"]
    acl: [orders]
    roles: [orders:read]
    user_pool: staff
    consent: skip
"#,
        api = api.addr,
        app_port = app.addr.port(),
        alice = cheap_hash(PASSWORD),
        reports = cheap_hash(REPORTS_SECRET),
    )
}

impl Env {
    pub async fn start() -> Env {
        let api = start_upstream().await;
        let app = start_upstream().await;
        let mut spec = GatewaySpec::new(catalog(&api, &app));
        spec.https_issuer = true;
        spec.extra = "log:\n  level: debug\nlimits:\n  failed_auth_window: 1m\n  failed_auth_per_account: 3\n  failed_auth_per_ip: 100\n".into();
        let key = TestKey::generate();
        let gw = Gateway::start(spec, &key).await;
        Env {
            gw,
            key,
            _api: api,
            app,
        }
    }

    /// `path` on the gateway's TLS listener (the issuer).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw.base)
    }

    /// The HTTPS client that trusts the gateway's certificate (redirects not followed).
    pub fn http(&self) -> &reqwest::Client {
        &self.gw.tls.as_ref().expect("TLS listener").1
    }

    pub fn callback(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.app.addr.port())
    }

    pub fn authorize_url(&self, client: &str, params: &[(&str, &str)]) -> String {
        self.authorize_url_at("/oauth2/v2/authorize", client, params)
    }

    pub fn authorize_url_at(&self, path: &str, client: &str, params: &[(&str, &str)]) -> String {
        let mut url = Url::parse(&self.url(path)).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", client)
            .extend_pairs(params);
        url.to_string()
    }

    /// A full authorization request for `client` with a fresh PKCE pair and state.
    pub fn request(&self, client: &str, extra: &[(&str, &str)]) -> Request {
        self.request_at("/oauth2/v2/authorize", client, extra)
    }

    pub fn request_at(&self, path: &str, client: &str, extra: &[(&str, &str)]) -> Request {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random().secret().clone();
        let redirect = self.callback();
        let mut params = vec![
            ("response_type", "code"),
            ("redirect_uri", redirect.as_str()),
            ("scope", "openid profile email orders:read"),
            ("state", state.as_str()),
            ("nonce", "n-0S6_WzA2Mj"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        params.extend_from_slice(extra);
        Request {
            url: self.authorize_url_at(path, client, &params),
            verifier: verifier.secret().clone(),
            state,
        }
    }

    pub fn oauth2_client(&self) -> OidcClient {
        oauth2::Client::new(ClientId::new("spa".into()))
            .set_auth_uri(AuthUrl::new(self.url("/oauth2/v2/authorize")).unwrap())
            .set_token_uri(TokenUrl::new(self.url("/credential/jwt")).unwrap())
            .set_redirect_uri(RedirectUrl::new(self.callback()).unwrap())
    }

    /// `grant_type=authorization_code` by hand, for the answers a library would hide.
    pub async fn exchange(&self, fields: &[(&str, &str)]) -> (u16, Value) {
        let mut form = vec![("grant_type", "authorization_code")];
        form.extend_from_slice(fields);
        let r = self
            .http()
            .post(self.url("/credential/jwt"))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn api(&self, token: &str) -> u16 {
        self.http()
            .get(self.url("/orders/1"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The gateway's log holds none of `secrets`.
    pub fn assert_log_free_of(&self, secrets: &[&str]) {
        let log = self.gw.log();
        assert!(
            log.contains("authorize"),
            "the debug log is being read:\n{log}"
        );
        for s in secrets.iter().filter(|s| s.len() >= 8) {
            assert!(!log.contains(*s), "the log holds a secret ({}…)", &s[..4]);
        }
    }
}

pub struct Request {
    pub url: String,
    pub verifier: String,
    pub state: String,
}

/// The text of the page's `<h1>`, once it is `want` (polled: a click starts a navigation
/// the driver does not wait for).
pub async fn wait_heading(b: &Browser, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(h1) = b.client().find(Locator::Css("h1")).await
            && let Ok(text) = h1.text().await
        {
            if text.trim() == want {
                return;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no heading {want:?} (last {last:?}) on {}\n{}",
        b.current_url().await,
        b.source().await
    );
}

pub async fn sign_in(b: &Browser, username: &str, password: &str) {
    wait_heading(b, "Sign in").await;
    b.fill("username", username).await;
    b.fill("password", password).await;
    b.click_submit("Sign in").await;
}

/// The browser's arrival at the app's callback.
pub async fn arrival(b: &Browser, env: &Env) -> Url {
    let port = env.app.addr.port();
    b.wait_for_url(
        |u| u.port() == Some(port) && u.path() == "/callback",
        Duration::from_secs(20),
    )
    .await
}

pub fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub fn cookie<'a>(cookies: &'a [BrowserCookie], name: &str) -> &'a BrowserCookie {
    cookies
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cookie {name} among {cookies:?}"))
}

/// The last response the browser got for a URL starting with `prefix`.
pub fn response<'a>(responses: &'a [BrowserResponse], prefix: &str) -> &'a BrowserResponse {
    responses
        .iter()
        .rev()
        .find(|r| r.url.starts_with(prefix))
        .unwrap_or_else(|| {
            let seen: Vec<&str> = responses.iter().map(|r| r.url.as_str()).collect();
            panic!("the browser saw no response for {prefix}; it saw {seen:?}")
        })
}

pub fn assert_page_headers(r: &BrowserResponse) {
    let h = |n: &str| r.headers.get(n).map(String::as_str).unwrap_or("");
    let csp = h("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    // A form-action directive would block the final redirect to the app in Chromium.
    assert!(!csp.contains("form-action"), "{csp}");
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("referrer-policy"), "no-referrer");
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert_eq!(h("cache-control"), "no-store");
}

pub fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

pub async fn page_of(b: &Browser, url: &str) -> (Url, String) {
    b.goto(url).await;
    (b.current_url().await, b.source().await)
}

/// Sign Alice in and allow `spa` once, so later flows in this browser end at once.
pub async fn first_code(env: &Env, b: &Browser, req: &Request) -> String {
    b.goto(&req.url).await;
    sign_in(b, "alice", PASSWORD).await;
    wait_heading(b, "Allow access?").await;
    b.click_submit("Allow").await;
    let back = arrival(b, env).await;
    param(&back, "code").unwrap()
}

/// Another code in a browser whose session and consent already cover `spa`.
pub async fn next_code(env: &Env, b: &Browser, req: &Request) -> String {
    b.goto(&req.url).await;
    let back = arrival(b, env).await;
    param(&back, "code").unwrap()
}
