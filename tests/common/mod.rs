//! Test harness: a real HTTP upstream on 127.0.0.1:0, the real tollgate binary with its
//! config written to a temporary directory, readiness by polling, and helpers to mint
//! tokens with the gateway's own signing key.

#![allow(dead_code)]

pub mod admin;
pub mod browser;
pub mod dpop;
pub mod mtls;
pub mod nginx;
pub mod node;
pub mod oauth;
mod ports;
pub use ports::free_port;
pub mod redis;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A real HTTP/1.1 server that answers with a JSON echo of the request it received.
/// `/__sleep/<ms>` waits before answering; `/__status/<code>` answers with that status.
pub struct Upstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start_upstream() -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = hyper::service::service_fn(move |req| echo(req, peer));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    Upstream { addr, task }
}

async fn echo(
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let mut status = 200;
    if let Some(ms) = path.strip_prefix("/__sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if let Some(code) = path.strip_prefix("/__status/") {
        status = code.parse().unwrap_or(500);
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(v.to_str().unwrap_or("").to_string()),
            )
        })
        .collect();
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let doc = serde_json::json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "peer": peer.to_string(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(doc.to_string())));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// argon2id hash with small parameters, so tests do not spend seconds hashing.
pub fn cheap_hash(secret: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    a.hash_password(secret.as_bytes(), &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string()
}

/// The ES256 key the test gateways sign with (kid `test-key`), so tests can mint tokens
/// the gateway accepts, or nearly accepts.
pub struct TestKey {
    pair: EcdsaKeyPair,
    pub pem: String,
}

impl TestKey {
    pub fn generate() -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        Self { pair, pem }
    }

    /// Sign any header and claims with this key.
    pub fn sign(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    /// Sign header and claims given as exact JSON text (duplicate keys and all).
    pub fn sign_raw(&self, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> serde_json::Value {
        use aws_lc_rs::signature::KeyPair as _;
        let point = self.pair.public_key().as_ref();
        serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        })
    }

    /// The header and claims of `jws` if this key signed it (ES256), else `None`.
    pub fn verify(&self, jws: &str) -> Option<(serde_json::Value, serde_json::Value)> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, KeyPair as _, UnparsedPublicKey};
        let (input, sig) = jws.rsplit_once('.')?;
        let (header, claims) = input.split_once('.')?;
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref());
        key.verify(input.as_bytes(), &B64.decode(sig).ok()?).ok()?;
        let part = |p: &str| serde_json::from_slice(&B64.decode(p).ok()?).ok();
        Some((part(header)?, part(claims)?))
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn public_pem(&self) -> String {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        let der = self.pair.public_key().as_der().unwrap();
        pem::encode(&pem::Pem::new("PUBLIC KEY", der.as_ref().to_vec()))
    }

    /// A token as the gateway would issue it, with `claims` merged over the defaults.
    pub fn token(&self, issuer: &str, claims: serde_json::Value) -> String {
        let now = unix_now();
        let mut c = serde_json::json!({
            "iss": issuer, "sub": "reader", "aud": "orders", "exp": now + 300,
            "iat": now, "nbf": now, "jti": "t", "client_id": "reader", "scope": "orders:read",
        });
        for (k, v) in claims.as_object().unwrap() {
            c[k] = v.clone();
        }
        self.sign(
            &serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "test-key"}),
            &c,
        )
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A running tollgate process; killed when dropped.
pub struct Gateway {
    child: Option<Child>,
    /// The threads copying the process's stdout and stderr into the log.
    output: Vec<std::thread::JoinHandle<()>>,
    wrapper: Vec<String>,
    /// With `https_issuer`: the TLS port and a client that trusts the gateway's certificate.
    pub tls: Option<(u16, reqwest::Client)>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub metrics_port: u16,
    pub base: String,
    pub config_path: PathBuf,
}

pub struct GatewaySpec {
    /// The upstreams file.
    pub upstreams: String,
    /// Extra top-level YAML for tollgate.yaml (sections not written by the harness).
    pub extra: String,
    /// `tokens:` section; default signs with the given test key.
    pub tokens: Option<String>,
    /// `listen:` entries beyond the plain HTTP one.
    pub extra_listeners: String,
    /// Files written into the gateway's directory before it starts (certificates, keys).
    pub files: Vec<(String, String)>,
    /// Serve TLS too (a certificate for `localhost`) and use `https://localhost:<port>` as
    /// the issuer, so clients that insist on HTTPS endpoints can run.
    pub https_issuer: bool,
    /// The `server:` section (default: short grace periods).
    pub server: Option<String>,
    /// A command the gateway is started through (e.g. `prlimit --fsize=N --`).
    pub wrapper: Vec<String>,
    /// The `issuer` (default: this gateway's own URL). Nodes of a cluster share one.
    pub issuer: Option<String>,
    /// The plain listener also takes HTTP/2 with prior knowledge (h2c).
    pub h2c: bool,
}

impl GatewaySpec {
    pub fn new(upstreams: impl Into<String>) -> Self {
        Self {
            upstreams: upstreams.into(),
            extra: String::new(),
            tokens: None,
            extra_listeners: String::new(),
            files: Vec::new(),
            https_issuer: false,
            server: None,
            wrapper: Vec::new(),
            issuer: None,
            h2c: false,
        }
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tollgate")
}

impl Gateway {
    /// Write the config for `spec` and start the gateway; returns once it answers. A port
    /// from [`free_port`] can be taken by someone else before the gateway binds it (another
    /// test's outgoing connection): then the gateway is configured on new ports and started
    /// again, up to three times.
    pub async fn start(spec: GatewaySpec, key: &TestKey) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("signing.pem"), &key.pem).unwrap();
        for (name, contents) in &spec.files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        std::fs::write(dir.path().join("upstreams.yaml"), &spec.upstreams).unwrap();
        let config_path = dir.path().join("tollgate.yaml");
        let mut gw = Gateway {
            child: None,
            output: Vec::new(),
            wrapper: spec.wrapper.clone(),
            tls: None,
            dir,
            port: 0,
            metrics_port: 0,
            base: String::new(),
            config_path,
        };
        for attempt in 1..=3 {
            gw.configure(&spec);
            match gw.try_spawn().await {
                Ok(()) => return gw,
                Err(log) if attempt < 3 && log.to_ascii_lowercase().contains("in use") => {
                    let _ = std::fs::remove_file(gw.log_path());
                }
                Err(log) => panic!("tollgate exited early:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Pick the ports and write tollgate.yaml for `spec`.
    fn configure(&mut self, spec: &GatewaySpec) {
        let dir = self.dir.path();
        let port = free_port();
        let metrics_port = free_port();
        let mut base = format!("http://127.0.0.1:{port}");
        let mut extra_listeners = spec.extra_listeners.clone();
        let mut tls = None;
        if spec.https_issuer {
            let tls_port = free_port();
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
            std::fs::write(dir.join("tls-cert.pem"), ck.cert.pem()).unwrap();
            std::fs::write(dir.join("tls-key.pem"), ck.key_pair.serialize_pem()).unwrap();
            extra_listeners.push_str(&format!(
                "  - addr: 127.0.0.1:{tls_port}\n    tls: {{ cert: tls-cert.pem, key: tls-key.pem }}\n"
            ));
            let client = reqwest::Client::builder()
                .add_root_certificate(
                    reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap(),
                )
                .resolve("localhost", ([127, 0, 0, 1], tls_port).into())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            base = format!("https://localhost:{tls_port}");
            tls = Some((tls_port, client));
        }
        let tokens = spec.tokens.clone().unwrap_or_else(|| {
            "tokens:\n  signing_key: { algorithm: ES256, file: signing.pem, kid: test-key }\n"
                .to_string()
        });
        let server = spec.server.clone().unwrap_or_else(|| {
            "server:\n  threads: 2\n  grace_period: 1s\n  graceful_shutdown_timeout: 1s\n".into()
        });
        let issuer = spec.issuer.clone().unwrap_or_else(|| base.clone());
        let conf = format!(
            "listen:\n  - addr: 127.0.0.1:{port}\n{}{}\nmetrics:\n  listen: 127.0.0.1:{metrics_port}\nissuer: {issuer}\nupstreams_file: upstreams.yaml\nstate_dir: state\n{server}{tokens}\n{}\n",
            if spec.h2c { "    h2c: true\n" } else { "" },
            extra_listeners,
            spec.extra
        );
        std::fs::write(&self.config_path, conf).unwrap();
        self.port = port;
        self.metrics_port = metrics_port;
        self.base = base;
        self.tls = tls;
    }

    /// Start (or restart) the process on the existing config and state. Its output goes to
    /// the log file through a pipe, so limits on the process's own files leave it intact.
    pub async fn spawn(&mut self) {
        if let Err(log) = self.try_spawn().await {
            panic!("tollgate exited early:\n{log}");
        }
    }

    /// Start the process and wait until it answers; its log if it exits first.
    async fn try_spawn(&mut self) -> Result<(), String> {
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let mut child = command
            .arg("-c")
            .arg(&self.config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let path = self.log_path();
            self.output.push(std::thread::spawn(move || {
                let mut out = out;
                let mut log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                let _ = std::io::copy(&mut out, &mut log);
            }));
        }
        self.child = Some(child);
        self.wait_ready().await
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap()
    }

    /// Send `signal` (e.g. "TERM") to the gateway.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit; its exit status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Wait (up to 10 s) until the log contains `needle`; whether it did.
    pub async fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut probes = vec![
            (
                reqwest::Client::new(),
                format!("http://127.0.0.1:{}/.well-known/jwks.json", self.port),
            ),
            (
                reqwest::Client::new(),
                format!("http://127.0.0.1:{}/metrics", self.metrics_port),
            ),
        ];
        if let Some((_, c)) = &self.tls {
            probes.push((c.clone(), format!("{}/.well-known/jwks.json", self.base)));
        }
        for (client, url) in probes {
            loop {
                if let Ok(r) = client.get(&url).send().await
                    && r.status().is_success()
                {
                    break;
                }
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                    self.child = None;
                    // The output threads end with the pipes: then the log is complete.
                    for t in self.output.drain(..) {
                        let _ = t.join();
                    }
                    return Err(format!("({status})\n{}", self.log()));
                }
                assert!(
                    Instant::now() < deadline,
                    "tollgate not ready in 30 s:\n{}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        Ok(())
    }

    /// SIGKILL the process and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A URL on the plain listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The client for `base` URLs: trusts the gateway's certificate when it has one.
    pub fn client(&self) -> reqwest::Client {
        self.tls
            .as_ref()
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample line of the metrics text, e.g.
    /// `tollgate_token_validations_total{outcome="ok"}`.
    /// A series not exported yet is waited for a moment: a request is counted as its
    /// handling ends, just after the client has its answer. Absent, it reads 0.
    pub async fn metric(&self, series: &str) -> f64 {
        for _ in 0..25 {
            let text = self.metrics().await;
            let value = text.lines().find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            });
            if let Some(v) = value {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        0.0
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Request a token with client_secret_basic.
pub async fn get_token(
    gw: &Gateway,
    endpoint: &str,
    id: &str,
    secret: &str,
    scope: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    reqwest::Client::new()
        .post(gw.url(endpoint))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap()
}

pub async fn access_token(gw: &Gateway, endpoint: &str, id: &str, secret: &str) -> String {
    let r = get_token(gw, endpoint, id, secret, None).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// `2026-12-06T13:20:05Z` as seconds since the epoch (what `tollgate keys` prints).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // Days from a civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3_600 + mm * 60 + ss)
}
