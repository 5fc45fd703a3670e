//! The authorization code flow in a real browser (Debian's chromium through chromedriver),
//! over TLS with a test certificate so the `__Host-` cookies are real: authorize → login →
//! consent → the app's callback on a `127.0.0.1:0` listener, then the code exchange with
//! the `oauth2` crate or reqwest, and the tokens against the proxied API.
//!
//! Each test starts its own gateway (the lockout test must not lock the others out) and
//! browser. The gateway logs at debug level, and every test ends by reading the whole log
//! for the password, the codes, the verifiers and the cookies.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::browser::{Browser, BrowserCookie, BrowserResponse};
use common::*;
use fantoccini::Locator;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, EndpointNotSet, EndpointSet, ExtraTokenFields,
    PkceCodeChallenge, RedirectUrl, Scope, StandardRevocableToken, StandardTokenResponse,
    TokenResponse as _, TokenUrl,
};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Alice's password. It must never appear in a log line.
const PASSWORD: &str = "quartz-Lantern-47-browser";
const WRONG: &str = "not-her-password-91";
const REPORTS_SECRET: &str = "reports-secret-5d1";
/// The one message of every failed sign-in (wrong password, unknown user, locked out).
const FAILED: &str = "The username or password is wrong.";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct IdTokenField {
    id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

type Tokens = StandardTokenResponse<IdTokenField, BasicTokenType>;
type OidcClient = oauth2::Client<
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

struct Env {
    gw: Gateway,
    key: TestKey,
    _api: Upstream,
    /// The apps' redirect target: an HTTP server on 127.0.0.1:0 that echoes each request.
    app: Upstream,
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
    async fn start() -> Env {
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
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw.base)
    }

    /// The HTTPS client that trusts the gateway's certificate (redirects not followed).
    fn http(&self) -> &reqwest::Client {
        &self.gw.tls.as_ref().expect("TLS listener").1
    }

    fn callback(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.app.addr.port())
    }

    fn authorize_url(&self, client: &str, params: &[(&str, &str)]) -> String {
        self.authorize_url_at("/oauth2/v2/authorize", client, params)
    }

    fn authorize_url_at(&self, path: &str, client: &str, params: &[(&str, &str)]) -> String {
        let mut url = Url::parse(&self.url(path)).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", client)
            .extend_pairs(params);
        url.to_string()
    }

    /// A full authorization request for `client` with a fresh PKCE pair and state.
    fn request(&self, client: &str, extra: &[(&str, &str)]) -> Request {
        self.request_at("/oauth2/v2/authorize", client, extra)
    }

    fn request_at(&self, path: &str, client: &str, extra: &[(&str, &str)]) -> Request {
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

    fn oauth2_client(&self) -> OidcClient {
        oauth2::Client::new(ClientId::new("spa".into()))
            .set_auth_uri(AuthUrl::new(self.url("/oauth2/v2/authorize")).unwrap())
            .set_token_uri(TokenUrl::new(self.url("/credential/jwt")).unwrap())
            .set_redirect_uri(RedirectUrl::new(self.callback()).unwrap())
    }

    /// `grant_type=authorization_code` by hand, for the answers a library would hide.
    async fn exchange(&self, fields: &[(&str, &str)]) -> (u16, Value) {
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

    async fn api(&self, token: &str) -> u16 {
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
    fn assert_log_free_of(&self, secrets: &[&str]) {
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

struct Request {
    url: String,
    verifier: String,
    state: String,
}

/// The text of the page's `<h1>`, once it is `want` (polled: a click starts a navigation
/// the driver does not wait for).
async fn wait_heading(b: &Browser, want: &str) {
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

async fn sign_in(b: &Browser, username: &str, password: &str) {
    wait_heading(b, "Sign in").await;
    b.fill("username", username).await;
    b.fill("password", password).await;
    b.click_submit("Sign in").await;
}

/// The browser's arrival at the app's callback.
async fn arrival(b: &Browser, env: &Env) -> Url {
    let port = env.app.addr.port();
    b.wait_for_url(
        |u| u.port() == Some(port) && u.path() == "/callback",
        Duration::from_secs(20),
    )
    .await
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn cookie<'a>(cookies: &'a [BrowserCookie], name: &str) -> &'a BrowserCookie {
    cookies
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cookie {name} among {cookies:?}"))
}

/// The last response the browser got for a URL starting with `prefix`.
fn response<'a>(responses: &'a [BrowserResponse], prefix: &str) -> &'a BrowserResponse {
    responses
        .iter()
        .rev()
        .find(|r| r.url.starts_with(prefix))
        .unwrap_or_else(|| {
            let seen: Vec<&str> = responses.iter().map(|r| r.url.as_str()).collect();
            panic!("the browser saw no response for {prefix}; it saw {seen:?}")
        })
}

fn assert_page_headers(r: &BrowserResponse) {
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

fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

#[tokio::test]
async fn the_code_flow_runs_in_a_browser_from_login_to_the_api() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let client = env.oauth2_client();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(["openid", "profile", "email", "orders:read"].map(|s| Scope::new(s.into())))
        .add_extra_param("nonce", "n-8f2e1c")
        .set_pkce_challenge(challenge)
        .url();
    b.goto(url.as_str()).await;
    sign_in(&b, "alice", PASSWORD).await;
    let flow = cookie(&b.cookies().await, "__Host-tollgate-flow").clone();
    assert!(flow.secure && flow.http_only, "{flow:?}");
    assert_eq!(flow.same_site.as_deref(), Some("Lax"));
    assert_eq!(flow.path.as_deref(), Some("/"));
    // `__Host-`: no Domain attribute, so the browser keeps it for this host only.
    assert_eq!(flow.domain.as_deref(), Some("localhost"));

    wait_heading(&b, "Allow access?").await;
    let consent = b.source().await;
    assert!(consent.contains("Orders app") && consent.contains("orders:read"));
    assert!(consent.contains("Your email address"));
    let session = cookie(&b.cookies().await, "__Host-tollgate-session").clone();
    assert!(session.secure && session.http_only, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Lax"));
    assert_eq!(session.expires, None, "a browser-session cookie");
    // One read of the network log, after the consent page: a read drains it, and the
    // login POST and consent page may already be in it by the time the form is sent.
    let pages = b.responses().await;
    assert_page_headers(response(&pages, &env.url("/oauth2/v2/authorize")));
    assert_page_headers(response(&pages, &env.url("/oauth2/v2/consent")));
    // The login POST answered 303 (RFC 9700 §4.11) and the browser followed it.
    assert!(
        pages
            .iter()
            .all(|r| !r.url.contains("/oauth2/v2/login") || r.status == 303),
        "{pages:?}"
    );

    b.click_submit("Allow").await;
    let back = arrival(&b, &env).await;
    assert_eq!(
        param(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );
    assert_eq!(param(&back, "iss").as_deref(), Some(env.gw.base.as_str()));
    let code = param(&back, "code").expect("a code");
    assert!(code.len() >= 43, "at least 256 bits: {code}");
    // The app's listener got the request: its echo is the page the browser shows.
    let echoed = b.source().await;
    assert!(
        echoed.contains("/callback") && echoed.contains(&code),
        "{echoed}"
    );

    let http = env.http().clone();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code exchanges");
    let access = tokens.access_token().secret().clone();
    let refresh = tokens
        .refresh_token()
        .expect("a refresh token")
        .secret()
        .clone();
    assert_eq!(env.api(&access).await, 200);

    // The ID token: signed with the gateway's key, typ JWT, with the OpenID claims.
    let id_token = tokens.extra_fields().id_token.clone().expect("an id_token");
    let (header, id) = env
        .key
        .verify(&id_token)
        .expect("signed by the gateway's key");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(id["iss"], env.gw.base.as_str());
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["aud"], "spa");
    assert_eq!(id["nonce"], "n-8f2e1c");
    assert_eq!(id["email"], "alice@example.test");
    assert_eq!(id["name"], "Alice Example");
    let now = unix_now();
    assert!(id["exp"].as_i64().unwrap() > now);
    assert!(id["auth_time"].as_i64().unwrap() <= id["iat"].as_i64().unwrap());
    {
        use base64::Engine as _;
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
        let half = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d.as_ref()[..16]);
        assert_eq!(id["at_hash"], half.as_str(), "OIDC Core §3.1.3.6");
    }
    // The proxy refuses the ID token as an access token (RFC 9068 typ).
    assert_eq!(env.api(&id_token).await, 401);
    let (_, at) = env.key.verify(&access).unwrap();
    assert_eq!(at["aud"], "orders");
    assert_eq!(at["sub"], "alice");

    let info: Value = env
        .http()
        .get(env.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["email"], "alice@example.test");
    assert_eq!(info["name"], "Alice Example");

    // The public client refreshes without a secret, and the token rotates.
    let r = env
        .http()
        .post(env.url("/credential/jwt"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", "spa"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let refreshed: Value = r.json().await.unwrap();
    assert_ne!(refreshed["refresh_token"].as_str(), Some(refresh.as_str()));

    // A second client, first-party (consent: skip): the session signs Alice in, no form.
    let second = env.request("reports", &[]);
    b.goto(&second.url).await;
    let back = arrival(&b, &env).await;
    assert_eq!(param(&back, "state"), Some(second.state.clone()));
    let seen = b.responses().await;
    assert!(
        !seen
            .iter()
            .any(|r| r.status == 200 && r.url.contains("/oauth2/v2/authorize")),
        "no login page this time: {seen:?}"
    );
    let code2 = param(&back, "code").unwrap();
    // A confidential client must authenticate at the token endpoint.
    let (status, body) = env
        .exchange(&[
            ("code", &code2),
            ("redirect_uri", &env.callback()),
            ("client_id", "reports"),
            ("code_verifier", &second.verifier),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // A refused client authentication does not spend the code: with the secret it works,
    // and the ID token tells the sign-in it came from (the session's, not a new one).
    let reports = |code: String, verifier: String| {
        let http = env.http().clone();
        let url = env.url("/credential/jwt");
        let cb = env.callback();
        async move {
            let r = http
                .post(url)
                .basic_auth("reports", Some(REPORTS_SECRET))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", cb.as_str()),
                    ("code_verifier", verifier.as_str()),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let t = reports(code2.clone(), second.verifier.clone()).await;
    let (_, id2) = env.key.verify(t["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(id2["aud"], "reports");
    assert_eq!(id2["auth_time"], id["auth_time"]);
    let first_auth_time = id["auth_time"].as_i64().unwrap();

    // prompt=login forces the password despite the session.
    let forced = env.request("reports", &[("prompt", "login")]);
    b.goto(&forced.url).await;
    sign_in(&b, "alice", PASSWORD).await;
    let back = arrival(&b, &env).await;
    let code3 = param(&back, "code").unwrap();
    let t = reports(code3.clone(), forced.verifier.clone()).await;
    let (_, id3) = env.key.verify(t["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(id3["aud"], "reports");
    assert!(id3["auth_time"].as_i64().unwrap() >= first_auth_time);

    // max_age: a session older than it asks for the password again; a younger one does not.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let young_enough = env.request("reports", &[("max_age", "3600")]);
    b.goto(&young_enough.url).await;
    arrival(&b, &env).await;
    let too_old = env.request("reports", &[("max_age", "1")]);
    b.goto(&too_old.url).await;
    wait_heading(&b, "Sign in").await;

    let cookies = b.cookies().await;
    let mut secrets: Vec<&str> = vec![
        PASSWORD,
        REPORTS_SECRET,
        &code,
        &code2,
        &code3,
        &second.verifier,
        &forced.verifier,
        &access,
        &refresh,
    ];
    secrets.extend(cookies.iter().map(|c| c.value.as_str()));
    env.assert_log_free_of(&secrets);
    b.quit().await;
}

#[tokio::test]
async fn wrong_passwords_get_one_message_and_lock_the_account() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let req = env.request("spa", &[]);
    b.goto(&req.url).await;
    sign_in(&b, "alice", WRONG).await;
    wait_heading(&b, "Sign in").await;
    assert_eq!(b.text_of("[role=alert]").await, FAILED);
    // The username is kept, the password is not.
    let fields = b
        .execute(
            "return [document.querySelector('[name=username]').value, document.querySelector('[name=password]').value]",
            vec![],
        )
        .await;
    assert_eq!(fields, serde_json::json!(["alice", ""]));
    // An unknown user: the same words (and a dummy hash, so the same time). Its name is
    // markup, echoed escaped into the form.
    let hostile = "\"><b id=injected>x</b>";
    sign_in(&b, hostile, WRONG).await;
    wait_heading(&b, "Sign in").await;
    assert_eq!(b.text_of("[role=alert]").await, FAILED);
    let echoed = b
        .execute(
            "return [document.querySelector('[name=username]').value, !!document.getElementById('injected')]",
            vec![],
        )
        .await;
    assert_eq!(echoed, serde_json::json!([hostile, false]));
    // Two more wrong passwords reach the limit of 3 per account.
    for _ in 0..2 {
        sign_in(&b, "alice", WRONG).await;
        wait_heading(&b, "Sign in").await;
    }
    // Locked: the right password now gets the same message, and no session.
    sign_in(&b, "alice", PASSWORD).await;
    wait_heading(&b, "Sign in").await;
    assert_eq!(b.text_of("[role=alert]").await, FAILED);
    assert!(
        b.cookies()
            .await
            .iter()
            .all(|c| c.name != "__Host-tollgate-session")
    );
    assert!(
        env.gw
            .metric("tollgate_auth_throttled_total{subject=\"user\"}")
            .await
            >= 1.0
    );
    env.assert_log_free_of(&[PASSWORD, WRONG]);
    b.quit().await;
}

#[tokio::test]
async fn forms_without_their_csrf_token_cookie_or_origin_are_refused() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let req = env.request("spa", &[]);
    b.goto(&req.url).await;
    wait_heading(&b, "Sign in").await;
    // The form without its CSRF token: 403, and no sign-in.
    b.execute(
        "document.querySelector('input[name=csrf]').remove()",
        vec![],
    )
    .await;
    sign_in(&b, "alice", PASSWORD).await;
    wait_heading(&b, "Cannot continue").await;
    let seen = b.responses().await;
    assert_eq!(response(&seen, &env.url("/oauth2/v2/login")).status, 403);
    assert_page_headers(response(&seen, &env.url("/oauth2/v2/login")));

    // A CSRF token of another value: 403.
    b.goto(&req.url).await;
    wait_heading(&b, "Sign in").await;
    b.execute(
        "document.querySelector('input[name=csrf]').value = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'",
        vec![],
    )
    .await;
    sign_in(&b, "alice", PASSWORD).await;
    wait_heading(&b, "Cannot continue").await;

    // The right token but without the flow cookie (another browser): 403.
    b.goto(&req.url).await;
    wait_heading(&b, "Sign in").await;
    b.client().delete_all_cookies().await.unwrap();
    sign_in(&b, "alice", PASSWORD).await;
    wait_heading(&b, "Cannot continue").await;
    assert!(b.cookies().await.is_empty(), "no session was set");

    // Cookie and token right, but posted from another origin: 403.
    b.goto(&req.url).await;
    wait_heading(&b, "Sign in").await;
    let flow_cookie = cookie(&b.cookies().await, "__Host-tollgate-flow")
        .value
        .clone();
    let fields = b
        .execute(
            "return ['flow','csrf'].map(n => document.querySelector(`[name=${n}]`).value)",
            vec![],
        )
        .await;
    let post = |headers: &[(&'static str, String)]| {
        let mut r = env
            .http()
            .post(env.url("/oauth2/v2/login"))
            .header("cookie", format!("__Host-tollgate-flow={flow_cookie}"));
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r.form(&[
            ("flow", fields[0].as_str().unwrap()),
            ("csrf", fields[1].as_str().unwrap()),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
    };
    let null = || ("origin", "null".to_string());
    let site = |s: &str| ("sec-fetch-site", s.to_string());
    for refused in [
        vec![("origin", "https://evil.example".to_string())],
        vec![null(), site("cross-site")],
        vec![null(), site("same-site")],
        // An opaque origin (a sandboxed frame) and no fetch metadata.
        vec![null()],
    ] {
        let r = post(&refused).await.unwrap();
        assert_eq!(r.status(), 403, "{refused:?}");
    }
    // The same request from the gateway's own origin signs in (so each 403 was the
    // origin): as the browser sends it (`Origin: null` under no-referrer, and fetch
    // metadata), and with a real Origin.
    let ok = post(&[null(), site("same-origin")]).await.unwrap();
    assert_eq!(ok.status(), 303);
    assert!(
        ok.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/oauth2/v2/consent?flow=")
    );
    let own = Url::parse(&env.gw.base)
        .unwrap()
        .origin()
        .ascii_serialization();
    let ok = post(&[("origin", own)]).await.unwrap();
    assert_eq!(ok.status(), 303);
    env.assert_log_free_of(&[PASSWORD, &flow_cookie]);
    b.quit().await;
}

#[tokio::test]
async fn bad_authorization_requests_get_an_error_page_or_an_error_redirect() {
    let env = Env::start().await;
    let b = Browser::start().await;
    // An unregistered redirect URI, or an unknown client: a page, never a redirect.
    for (url, title) in [
        (
            env.authorize_url(
                "spa",
                &[
                    ("response_type", "code"),
                    ("redirect_uri", "https://evil.example/callback"),
                    ("state", "s"),
                ],
            ),
            "Unknown return address",
        ),
        (
            env.authorize_url(
                "spa",
                &[
                    ("response_type", "code"),
                    ("redirect_uri", &format!("{}/../x", env.callback())),
                ],
            ),
            "Unknown return address",
        ),
        (
            env.authorize_url(
                "nobody",
                &[("response_type", "code"), ("redirect_uri", &env.callback())],
            ),
            "Unknown application",
        ),
    ] {
        let (here, html) = page_of(&b, &url).await;
        assert_eq!(here.host_str(), Some("localhost"), "stayed at the gateway");
        assert!(html.contains(title), "{html}");
        let seen = b.responses().await;
        let r = response(&seen, &env.url("/oauth2/v2/authorize"));
        assert_eq!(r.status, 400);
        assert_page_headers(r);
    }
    // Once client and redirect URI are trusted, errors go back with state and iss.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let cb = env.callback();
    let base = [("redirect_uri", cb.as_str()), ("state", "st-1")];
    let cases: [(&[(&str, &str)], &str); 6] = [
        // The implicit grant is not offered (RFC 9700 §2.1.2).
        (&[("response_type", "token")], "unsupported_response_type"),
        // Nor request objects.
        (
            &[
                ("response_type", "code"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("request", "eyJhbGciOiJub25lIn0.e30."),
            ],
            "request_not_supported",
        ),
        // No PKCE: refused (RFC 9700 §2.1.1).
        (&[("response_type", "code")], "invalid_request"),
        (
            &[
                ("response_type", "code"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (
            &[
                ("response_type", "code"),
                ("code_challenge", "short"),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
        ),
        (
            &[
                ("response_type", "code"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("prompt", "none"),
            ],
            "login_required",
        ),
    ];
    for (params, error) in cases {
        let mut all = base.to_vec();
        all.extend_from_slice(params);
        let url = env.authorize_url("spa", &all);
        b.goto(&url).await;
        let back = arrival(&b, &env).await;
        assert_eq!(param(&back, "error").as_deref(), Some(error), "{params:?}");
        assert_eq!(param(&back, "state").as_deref(), Some("st-1"));
        assert_eq!(param(&back, "iss").as_deref(), Some(env.gw.base.as_str()));
        assert_eq!(param(&back, "code"), None);
    }
    // A repeated parameter (RFC 6749 §3.1): refused on a page, as nothing can be trusted.
    let twice = format!(
        "{}&redirect_uri={}",
        env.request("spa", &[]).url,
        "http%3A%2F%2F127.0.0.1%3A1%2Fcallback"
    );
    let (here, html) = page_of(&b, &twice).await;
    assert_eq!(here.host_str(), Some("localhost"));
    assert!(html.contains("is repeated"), "{html}");
    b.quit().await;
}

async fn page_of(b: &Browser, url: &str) -> (Url, String) {
    b.goto(url).await;
    (b.current_url().await, b.source().await)
}

/// Sign Alice in and allow `spa` once, so later flows in this browser end at once.
async fn first_code(env: &Env, b: &Browser, req: &Request) -> String {
    b.goto(&req.url).await;
    sign_in(b, "alice", PASSWORD).await;
    wait_heading(b, "Allow access?").await;
    b.click_submit("Allow").await;
    let back = arrival(b, env).await;
    param(&back, "code").unwrap()
}

/// Another code in a browser whose session and consent already cover `spa`.
async fn next_code(env: &Env, b: &Browser, req: &Request) -> String {
    b.goto(&req.url).await;
    let back = arrival(b, env).await;
    param(&back, "code").unwrap()
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_gave() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let req = env.request("spa", &[]);
    let code = first_code(&env, &b, &req).await;
    let cb = env.callback();
    let fields = [
        ("code", code.as_str()),
        ("redirect_uri", cb.as_str()),
        ("client_id", "spa"),
        ("code_verifier", req.verifier.as_str()),
    ];
    let (status, first) = env.exchange(&fields).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    assert_eq!(env.api(access).await, 200);

    let (status, again) = env.exchange(&fields).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // RFC 6749 §4.1.2: the tokens issued from the code are revoked.
    assert_eq!(env.api(access).await, 401);
    let r = env
        .http()
        .post(env.url("/credential/jwt"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "spa"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        env.gw.wait_for_log("was used twice").await,
        "the replay is logged"
    );
    env.assert_log_free_of(&[PASSWORD, &code, access, refresh, &req.verifier]);
    b.quit().await;
}

#[tokio::test]
async fn the_code_needs_its_own_verifier_redirect_uri_client_and_endpoint() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let cb = env.callback();

    // No verifier: refused before the code is spent.
    let req = env.request("spa", &[]);
    let code = first_code(&env, &b, &req).await;
    let (status, body) = env
        .exchange(&[("code", &code), ("redirect_uri", &cb), ("client_id", "spa")])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Another well-formed verifier: refused, and the code is spent.
    let (_, other) = PkceCodeChallenge::new_random_sha256();
    let (status, body) = env
        .exchange(&[
            ("code", &code),
            ("redirect_uri", &cb),
            ("client_id", "spa"),
            ("code_verifier", other.secret()),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = env
        .exchange(&[
            ("code", &code),
            ("redirect_uri", &cb),
            ("client_id", "spa"),
            ("code_verifier", &req.verifier),
        ])
        .await;
    assert_eq!(status, 400, "a code is used once, even by a wrong attempt");

    // A verifier of the wrong shape (RFC 7636 §4.1: 43 to 128 unreserved characters).
    let req = env.request("spa", &[]);
    let code = next_code(&env, &b, &req).await;
    let short = &req.verifier[..42];
    let (status, body) = env
        .exchange(&[
            ("code", &code),
            ("redirect_uri", &cb),
            ("client_id", "spa"),
            ("code_verifier", short),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Another redirect URI than the request's.
    let req = env.request("spa", &[]);
    let code = next_code(&env, &b, &req).await;
    let (status, body) = env
        .exchange(&[
            ("code", &code),
            ("redirect_uri", &cb.replace("/callback", "/callback2")),
            ("client_id", "spa"),
            ("code_verifier", &req.verifier),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Another client than the code's.
    let req = env.request("spa", &[]);
    let code = next_code(&env, &b, &req).await;
    let r = env
        .http()
        .post(env.url("/credential/jwt"))
        .basic_auth("reports", Some(REPORTS_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", cb.as_str()),
            ("code_verifier", req.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The per-API endpoint (seed 002): the code is for that API's token endpoint only,
    // and the token's audience is pinned to it.
    let at_api = env.request_at("/orders/oauth2/v2/authorize", "spa", &[]);
    let code = next_code(&env, &b, &at_api).await;
    let (status, body) = env
        .exchange(&[
            ("code", &code),
            ("redirect_uri", &cb),
            ("client_id", "spa"),
            ("code_verifier", &at_api.verifier),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let at_api = env.request_at("/orders/oauth2/v2/authorize", "spa", &[]);
    let code = next_code(&env, &b, &at_api).await;
    let r = env
        .http()
        .post(env.url("/orders/oauth2/v2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", cb.as_str()),
            ("client_id", "spa"),
            ("code_verifier", at_api.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        claims_of(t["access_token"].as_str().unwrap())["aud"],
        "orders"
    );
    b.quit().await;
}

/// Seed 002's steps as it writes them: the authorization request has no `redirect_uri`
/// (the client registered one) and no `state`; the code is exchanged at the API's own token
/// endpoint with `grant_type`, `code`, `code_verifier` and `client_id` only.
#[tokio::test]
async fn seed_002s_code_flow_runs_as_the_seed_writes_it() {
    let env = Env::start().await;
    let b = Browser::start().await;
    // 1. Generate code verifier and challenge.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    // 2. Redirect user to authorize endpoint:
    //    GET /oauth2/v2/authorize?response_type=code&client_id={id}
    //        &code_challenge={challenge}&code_challenge_method=S256
    let url = format!(
        "{}?response_type=code&client_id=seed&code_challenge={}&code_challenge_method=S256",
        env.url("/oauth2/v2/authorize"),
        challenge.as_str()
    );
    b.goto(&url).await;
    sign_in(&b, "alice", PASSWORD).await;
    wait_heading(&b, "Allow access?").await;
    b.click_submit("Allow").await;
    let back = arrival(&b, &env).await;
    let code = param(&back, "code").unwrap();
    assert_eq!(param(&back, "state"), None);
    assert_eq!(param(&back, "iss").as_deref(), Some(env.gw.base.as_str()));

    // 3. Exchange code for token: POST /{api}/oauth2/v2/token. At an API the client may
    //    not call first: refused, and the code is not spent.
    let exchange = |api: &str| {
        env.http()
            .post(env.url(&format!("/{api}/oauth2/v2/token")))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("code_verifier", verifier.secret().as_str()),
                ("client_id", "seed"),
            ])
            .send()
    };
    let r = exchange("billing").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client", "{body}");
    let r = exchange("orders").await.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let access = t["access_token"].as_str().unwrap();
    let c = claims_of(access);
    assert_eq!(c["aud"], "orders");
    assert_eq!(c["scope"], "orders:read");
    assert_eq!(c["sub"], "alice");
    assert_eq!(env.api(access).await, 200);
    // Once only.
    let r = exchange("orders").await.unwrap();
    assert_eq!(r.status(), 400);

    // A code of an API's own authorization endpoint stays pinned to it: refused at the
    // family's token endpoint without being spent, then redeemed where it belongs.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = format!(
        "{}?response_type=code&client_id=seed&code_challenge={}&code_challenge_method=S256",
        env.url("/orders/oauth2/v2/authorize"),
        challenge.as_str()
    );
    b.goto(&url).await;
    let back = arrival(&b, &env).await;
    let code = param(&back, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.secret().as_str()),
        ("client_id", "seed"),
    ];
    let r = env
        .http()
        .post(env.url("/credential/jwt"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = env
        .http()
        .post(env.url("/orders/oauth2/v2/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // An OpenID Connect request must name its redirect URI.
    let (here, html) = page_of(
        &b,
        &format!(
            "{}?response_type=code&client_id=seed&scope=openid&code_challenge={}&code_challenge_method=S256",
            env.url("/oauth2/v2/authorize"),
            challenge.as_str()
        ),
    )
    .await;
    assert_eq!(here.host_str(), Some("localhost"));
    assert!(html.contains("Unknown return address"), "{html}");
    env.assert_log_free_of(&[PASSWORD, &code, access, verifier.secret()]);
    b.quit().await;
}

#[tokio::test]
async fn signing_out_ends_the_session_and_returns_only_to_registered_addresses() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let req = env.request("spa", &[]);
    first_code(&env, &b, &req).await;
    let port = env.app.addr.port();
    let mut logout = Url::parse(&env.url("/oauth2/v2/logout")).unwrap();
    logout.query_pairs_mut().extend_pairs([
        ("client_id", "spa"),
        (
            "post_logout_redirect_uri",
            &format!("http://127.0.0.1:{port}/bye"),
        ),
        ("state", "bye-1"),
    ]);
    b.goto(logout.as_str()).await;
    let at = b
        .wait_for_url(|u| u.path() == "/bye", Duration::from_secs(20))
        .await;
    assert_eq!(param(&at, "state").as_deref(), Some("bye-1"));
    // Signed out: the next authorization asks for the password again.
    let again = env.request("spa", &[]);
    b.goto(&again.url).await;
    wait_heading(&b, "Sign in").await;
    assert!(
        b.cookies()
            .await
            .iter()
            .all(|c| c.name != "__Host-tollgate-session")
    );
    // An address not registered for the client: the signed-out page, no redirect.
    let mut elsewhere = Url::parse(&env.url("/oauth2/v2/logout")).unwrap();
    elsewhere.query_pairs_mut().extend_pairs([
        ("client_id", "spa"),
        ("post_logout_redirect_uri", "https://evil.example/"),
    ]);
    b.goto(elsewhere.as_str()).await;
    wait_heading(&b, "Signed out").await;
    assert_eq!(b.current_url().await.host_str(), Some("localhost"));
    b.quit().await;
}

#[tokio::test]
async fn a_browser_app_exchanges_its_code_from_its_own_origin_only() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let req = env.request("spa", &[]);
    let code = first_code(&env, &b, &req).await;
    // The browser is on the app's page (origin http://127.0.0.1:<app port>, which `spa`
    // allows): the app's script exchanges the code with fetch, through CORS.
    let exchange = "const [url, body, done] = [arguments[0], arguments[1], arguments[2]];
        fetch(url, { method: 'POST', body: new URLSearchParams(body) })
            .then(r => r.json().then(j => done({ status: r.status, body: j })))
            .catch(e => done({ failed: String(e) }));";
    let token_url = env.url("/credential/jwt");
    let body = serde_json::json!({
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": env.callback(),
        "client_id": "spa",
        "code_verifier": req.verifier,
    });
    let answer = b
        .client()
        .execute_async(exchange, vec![token_url.clone().into(), body.clone()])
        .await
        .unwrap();
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(answer["body"]["access_token"].is_string());

    // The same script on a page of another origin: the browser withholds the answer.
    let stranger = start_upstream().await;
    b.goto(&format!("http://127.0.0.1:{}/page", stranger.addr.port()))
        .await;
    let answer = b
        .client()
        .execute_async(exchange, vec![token_url.into(), body])
        .await
        .unwrap();
    assert!(answer["failed"].is_string(), "{answer}");

    // The preflight is answered from the clients' origin lists.
    let preflight = |origin: String| {
        env.http()
            .request(reqwest::Method::OPTIONS, env.url("/credential/jwt"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight(format!("http://127.0.0.1:{}", env.app.addr.port()))
        .await
        .unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        format!("http://127.0.0.1:{}", env.app.addr.port()).as_str()
    );
    let no = preflight(format!("http://127.0.0.1:{}", stranger.addr.port()))
        .await
        .unwrap();
    assert!(no.headers().get("access-control-allow-origin").is_none());
    // None on the authorization endpoint.
    let authorize = env
        .http()
        .get(&req.url)
        .header(
            "origin",
            format!("http://127.0.0.1:{}", env.app.addr.port()),
        )
        .send()
        .await
        .unwrap();
    assert!(
        authorize
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    b.quit().await;
}

#[tokio::test]
async fn discovery_documents_the_flow() {
    let env = Env::start().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let doc: Value = env
            .http()
            .get(env.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["issuer"], env.gw.base.as_str());
        assert_eq!(
            doc["authorization_endpoint"],
            env.url("/oauth2/v2/authorize")
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        let methods = doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        assert!(methods.contains(&"none".into()), "{methods:?}");
        assert_eq!(doc["userinfo_endpoint"], env.url("/userinfo"));
        assert_eq!(doc["end_session_endpoint"], env.url("/oauth2/v2/logout"));
        let grants = doc["grant_types_supported"].as_array().unwrap();
        assert!(grants.contains(&"authorization_code".into()));
    }
    let oidc: Value = env
        .http()
        .get(env.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        oidc["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(
        oidc["subject_types_supported"],
        serde_json::json!(["public"])
    );
}
