//! The admin API from a test: the `admin:` section of a gateway (its own loopback port,
//! a key with every scope and one that may only read), and a client for it.

use serde_json::Value;

/// The admin key with every scope.
pub const KEY: &str = "test-admin-key";
/// An admin key that may only read.
pub const READER: &str = "test-reader-key";

fn sha256_hex(s: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `admin:` for `tollgate.yaml` on `port` (put it in `GatewaySpec::extra`).
pub fn section(port: u16) -> String {
    format!(
        "admin:\n  listen: 127.0.0.1:{port}\n  keys:\n    - name: ops\n      sha256: {}\n      scopes: [read, credentials:write, subscriptions:write, registration:write]\n    - name: auditor\n      sha256: {}\n      scopes: [read]\n",
        sha256_hex(KEY),
        sha256_hex(READER)
    )
}

/// A client of one gateway's admin API.
#[derive(Clone)]
pub struct Admin {
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
}

/// An answer: status, ETag version, body (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub version: Option<u64>,
    pub body: Value,
}

impl Admin {
    pub fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            key: KEY.into(),
            http: reqwest::Client::new(),
        }
    }

    pub fn with_key(&self, key: &str) -> Self {
        Self {
            key: key.into(),
            ..self.clone()
        }
    }

    /// `method path` with an optional JSON body and `If-Match` version.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        if_match: Option<u64>,
    ) -> Answer {
        // The admin listener may start a moment after the public one the harness waits
        // for: a refused connection is tried again, for at most 10 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let resp = loop {
            let mut req = self
                .http
                .request(method.parse().unwrap(), format!("{}{path}", self.base))
                .bearer_auth(&self.key);
            if let Some(b) = &body {
                req = req.json(b);
            }
            if let Some(v) = if_match {
                req = req.header("if-match", format!("\"{v}\""));
            }
            match req.send().await {
                Ok(r) => break r,
                Err(e) if e.is_connect() && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("admin API at {}: {e}", self.base),
            }
        };
        let status = resp.status().as_u16();
        let version = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_matches('"').parse().ok());
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Answer {
            status,
            version,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(body), None).await
    }

    /// Create a credential; panics unless 201. Returns (client_id, client_secret).
    pub async fn create_credential(&self, body: Value) -> (String, String) {
        let a = self.post("/v1/credentials", body).await;
        assert_eq!(a.status, 201, "{:?}", a.body);
        (
            a.body["client_id"].as_str().unwrap().to_string(),
            a.body["client_secret"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }
}
