//! What tests/registration.rs shares: the catalog, a gateway with registration and an
//! admin listener, registrations, and RFC 7591 answers as the tests read them.

use crate::common::admin::{self, Admin};
use crate::common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub const REGISTER: &str = "/credential/register";
pub const ENABLED: &str = "registration:\n  enabled: true\n";
/// An RFC 7636 S256 challenge (its appendix B example).
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

pub fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
    rules:
      - {{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}
      - {{ methods: [POST], path: "/orders/**", all_of: [orders:write] }}
  - name: billing
    prefix: /billing
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
user_pools:
  - name: staff
    users: [{{ username: alice, password_hash: "{alice}", roles: [orders:read] }}]
"#,
        addr = up.addr,
        alice = cheap_hash("alice-pw"),
    )
}

/// A gateway with the admin API and `registration:` as given (empty: no such section).
pub struct Env {
    pub gw: Gateway,
    pub admin: Admin,
    pub _up: Upstream,
}

/// A registration endpoint's answer: status, `WWW-Authenticate`, `Cache-Control`, body.
pub struct Answer {
    pub status: u16,
    pub challenge: String,
    pub cache: String,
    pub body: Value,
}

/// A registered client, from the 201 answer.
pub struct Reg {
    pub id: String,
    pub secret: String,
    pub uri: String,
    pub rat: String,
    pub body: Value,
}

impl Env {
    pub async fn start(registration: &str) -> Env {
        let up = start_upstream().await;
        let admin_port = free_port();
        let mut spec = GatewaySpec::new(catalog(&up));
        spec.extra = format!("{}{registration}", admin::section(admin_port));
        let gw = Gateway::start(spec, &TestKey::generate()).await;
        let admin = Admin::new(admin_port);
        // The admin listener may answer a moment after the public one.
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = format!("{}/v1/catalog", admin.base);
        while reqwest::get(&url).await.is_err() {
            assert!(Instant::now() < deadline, "admin API not up:\n{}", gw.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Env { gw, admin, _up: up }
    }

    /// An initial access token from the admin API for `grant` (with `expires_in` and
    /// `reusable` when it names them).
    pub async fn initial_token(&self, grant: Value) -> String {
        let a = self.admin.post("/v1/initial-access-tokens", grant).await;
        assert_eq!(a.status, 201, "{:?}", a.body);
        assert_eq!(a.body["registration_endpoint"], self.gw.url(REGISTER));
        a.body["initial_access_token"].as_str().unwrap().to_string()
    }

    /// `POST /credential/register` with `metadata` and a bearer token (none if empty).
    pub async fn register(&self, token: &str, metadata: Value) -> Answer {
        let url = self.gw.url(REGISTER);
        self.manage("POST", &url, token, Some(&metadata)).await
    }

    /// Register `metadata` with `token`; panics unless 201.
    pub async fn registered(&self, token: &str, metadata: Value) -> Reg {
        Reg::of(self.register(token, metadata).await)
    }

    /// `method uri` with a bearer token (none if empty) and an optional JSON body.
    pub async fn manage(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = reqwest::Client::new().request(method.parse().unwrap(), uri);
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Answer::of(req).await
    }

    pub async fn read(&self, uri: &str, token: &str) -> Answer {
        self.manage("GET", uri, token, None).await
    }

    pub async fn put(&self, uri: &str, token: &str, body: &Value) -> Answer {
        self.manage("PUT", uri, token, Some(body)).await
    }

    /// A client_credentials request with client_secret_basic: status and body.
    pub async fn token(&self, id: &str, secret: &str) -> (u16, Value) {
        let r = get_token(&self.gw, "/credential/jwt", id, secret, None).await;
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// An access token for a confidential client; panics unless 200.
    pub async fn access(&self, c: &Reg) -> String {
        let (status, body) = self.token(&c.id, &c.secret).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// `method path` through the proxy with a bearer token: status and the upstream's echo.
    pub async fn api(&self, method: &str, path: &str, token: &str) -> (u16, Value) {
        let req = reqwest::Client::new().request(method.parse().unwrap(), self.gw.url(path));
        let r = req.bearer_auth(token).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The authorization endpoint's status for `client` and `redirect_uri`: 200 (the
    /// sign-in page) when both are trusted, 400 (an error page) when not.
    pub async fn authorize(&self, client: &str, redirect_uri: &str) -> u16 {
        let policy = reqwest::redirect::Policy::none();
        let http = reqwest::Client::builder().redirect(policy).build().unwrap();
        let query = [
            ("client_id", client),
            ("response_type", "code"),
            ("redirect_uri", redirect_uri),
            ("state", "s1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        let req = http.get(self.gw.url("/oauth2/v2/authorize")).query(&query);
        req.send().await.unwrap().status().as_u16()
    }
}

impl Reg {
    /// The client of a registration's answer; panics unless 201.
    pub fn of(a: Answer) -> Reg {
        assert_eq!(a.status, 201, "{}", a.body);
        assert_eq!(a.cache, "no-store");
        let text = |key: &str| a.body[key].as_str().unwrap_or_default().to_string();
        let id = text("client_id");
        let secret = text("client_secret");
        let uri = text("registration_client_uri");
        let rat = text("registration_access_token");
        assert!(!id.is_empty() && !rat.is_empty(), "{}", a.body);
        let body = a.body;
        Reg {
            id,
            secret,
            uri,
            rat,
            body,
        }
    }
}

impl Answer {
    /// The body, after checking the status.
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        &self.body
    }

    pub async fn of(req: reqwest::RequestBuilder) -> Answer {
        let r = req.send().await.unwrap();
        let header = |name: &str| {
            let value = r.headers().get(name).map(|v| v.to_str().unwrap());
            value.unwrap_or_default().to_string()
        };
        let (challenge, cache_control) = (header("www-authenticate"), header("cache-control"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = match text.as_str() {
            "" => Value::Null,
            t => serde_json::from_str(t).unwrap_or_else(|_| panic!("not JSON: {t}")),
        };
        let cache = cache_control;
        Answer {
            status,
            challenge,
            cache,
            body,
        }
    }

    /// A 401 `invalid_token` with its Bearer challenge (RFC 6750 §3).
    pub fn invalid_token(&self, what: &str) {
        assert_eq!(self.status, 401, "{what}: {}", self.body);
        assert_eq!(self.body["error"], "invalid_token", "{what}: {}", self.body);
        let c = &self.challenge;
        assert!(c.starts_with("Bearer "), "{what}: {c}");
        assert!(c.contains(r#"error="invalid_token""#), "{what}: {c}");
    }

    /// A 400 with the RFC 7591 §3.2.2 error `code` and a description.
    pub fn error(&self, code: &str, what: &str) {
        let got = (self.status, self.body["error"].as_str());
        assert_eq!(got, (400, Some(code)), "{what}: {}", self.body);
        let text = self.body["error_description"].as_str().unwrap_or_default();
        assert!(!text.is_empty(), "{what}: {}", self.body);
    }
}

/// `v` with `key` set to `value`, or removed when `value` is null.
pub fn set(mut v: Value, key: &str, value: Value) -> Value {
    let m = v.as_object_mut().unwrap();
    match value {
        Value::Null => m.remove(key),
        value => m.insert(key.into(), value),
    };
    v
}

/// A grant for clients that sign in users of the pool `staff`.
pub fn staff_grant(reusable: bool) -> Value {
    json!({"acl": ["orders"], "roles": ["orders:read"], "user_pool": "staff", "reusable": reusable})
}

pub async fn json_at(url: String) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}
