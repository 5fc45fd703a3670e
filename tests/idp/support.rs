//! Harness for the external-IdP tests: a tiny JWKS server (hyper, 127.0.0.1) whose key set,
//! status and Cache-Control can be changed and whose requests are counted; signing keys
//! made here; a real oidc-provider process; the refresh loop run in the background; and
//! polling with a deadline.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate::config::{IssuerSettings, KeySource, RefreshSettings};
use tollgate::domain::jose::JwsAlg;
use tollgate::idp::Issuers;

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Poll `ready` every 10 ms until it holds; panic naming `what` after 20 s.
pub async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- Logs ----

/// What tollgate's idp module logged, level and text, from every test of this binary.
static LOGS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("tollgate::idp")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let text = record.args().to_string();
            LOGS.lock().unwrap().push((record.level(), text));
        }
    }

    fn flush(&self) {}
}

/// Start capturing the idp module's logs (once per test binary).
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_boxed_logger(Box::new(Capture)).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// The captured lines of `level` that contain `needle`.
pub fn logged(level: log::Level, needle: &str) -> Vec<String> {
    LOGS.lock()
        .unwrap()
        .iter()
        .filter(|(l, text)| *l == level && text.contains(needle))
        .map(|(_, text)| text.clone())
        .collect()
}

/// Whether any captured line, at any level, contains `needle`.
pub fn logged_anywhere(needle: &str) -> bool {
    LOGS.lock()
        .unwrap()
        .iter()
        .any(|(_, text)| text.contains(needle))
}

// ---- Signing keys ----

enum Pair {
    Es(EcdsaKeyPair),
    Rs(RsaKeyPair),
}

/// A provider's signing key with its kid.
pub struct Key {
    pub kid: String,
    pair: Pair,
}

impl Key {
    pub fn es256(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.into(),
            pair: Pair::Es(pair),
        }
    }

    pub fn rs256(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        Self {
            kid: kid.into(),
            pair: Pair::Rs(pair),
        }
    }

    pub fn alg(&self) -> JwsAlg {
        match self.pair {
            Pair::Es(_) => JwsAlg::ES256,
            Pair::Rs(_) => JwsAlg::RS256,
        }
    }

    /// The public JWK as a provider publishes it.
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Es(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                       "kid": self.kid, "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..])})
            }
            Pair::Rs(k) => {
                let p = k.public_key();
                json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                       "n": B64.encode(p.modulus().big_endian_without_leading_zero()),
                       "e": B64.encode(p.exponent().big_endian_without_leading_zero())})
            }
        }
    }

    /// Sign exactly this header and these claims.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match &self.pair {
            Pair::Es(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Pair::Rs(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
        };
        format!("{input}.{}", B64.encode(sig))
    }

    /// A token from `iss` for `orders`, valid for five minutes, with `extra` claims merged
    /// over the defaults.
    pub fn token(&self, iss: &str, extra: Value) -> String {
        self.token_with_kid(&self.kid, iss, extra)
    }

    /// The same, naming `kid` in the header whatever this key's own kid is.
    pub fn token_with_kid(&self, kid: &str, iss: &str, extra: Value) -> String {
        let now = unix_now();
        let mut claims = json!({"iss": iss, "sub": "user-1", "aud": "orders",
                                "exp": now + 300, "iat": now, "scope": "orders:read"});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let header = json!({"alg": self.alg().as_str(), "typ": "at+jwt", "kid": kid});
        self.sign(&header, &claims)
    }
}

// ---- The JWKS server ----

struct Served {
    status: u16,
    body: Vec<u8>,
    cache_control: Option<String>,
}

/// A JWKS endpoint at `/jwks`; counts the requests it answers there. `/moved` redirects
/// to it, `/to-https` to the same place over https.
pub struct JwksServer {
    pub addr: SocketAddr,
    served: Arc<Mutex<Served>>,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    /// Serve `keys` on 127.0.0.1, a port of the system's choosing.
    pub async fn start(keys: &[&Key]) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), keys).await
    }

    /// Serve `keys` on `addr` (to start a server late on a port named before).
    pub async fn start_on(addr: SocketAddr, keys: &[&Key]) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Served {
            status: 200,
            body: Vec::new(),
            cache_control: Some("public, max-age=300".into()),
        }));
        let requests = Arc::new(AtomicU64::new(0));
        let (s, r) = (served.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req| answer(req, s.clone(), r.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let server = Self {
            addr,
            served,
            requests,
            task,
        };
        server.serve(keys);
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// Publish `keys` from now on (a rotation).
    pub fn serve(&self, keys: &[&Key]) {
        let doc = json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() });
        self.serve_raw(200, doc.to_string().into_bytes());
    }

    /// Answer with this status and body from now on.
    pub fn serve_raw(&self, status: u16, body: Vec<u8>) {
        let mut s = self.served.lock().unwrap();
        s.status = status;
        s.body = body;
    }

    pub fn cache_control(&self, value: Option<&str>) {
        self.served.lock().unwrap().cache_control = value.map(str::to_string);
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn answer(
    req: Request<Incoming>,
    served: Arc<Mutex<Served>>,
    requests: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body, cache_control) = {
        let s = served.lock().unwrap();
        (s.status, s.body.clone(), s.cache_control.clone())
    };
    let redirect = match req.uri().path() {
        "/moved" => Some("/jwks".to_string()),
        "/to-https" => {
            let host = req.headers().get("host").and_then(|h| h.to_str().ok());
            Some(format!("https://{}/jwks", host.unwrap_or("127.0.0.1")))
        }
        _ => None,
    };
    if let Some(location) = redirect {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = hyper::StatusCode::FOUND;
        r.headers_mut()
            .insert("location", location.parse().unwrap());
        return Ok(r);
    }
    if req.uri().path() != "/jwks" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
        return Ok(r);
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/jwk-set+json".parse().unwrap());
    if let Some(cc) = cache_control {
        r.headers_mut().insert("cache-control", cc.parse().unwrap());
    }
    Ok(r)
}

// ---- Issuer settings and the running loop ----

/// Settings for `name` reading `jwks_uri`: short retries, a cooldown of `cooldown`.
pub fn issuer(name: &str, iss: &str, jwks_uri: &str, cooldown: Duration) -> IssuerSettings {
    let mut s = IssuerSettings::new(
        name,
        iss,
        KeySource::JwksUri(jwks_uri.into()),
        vec!["orders".into()],
    );
    s.algorithms = vec![JwsAlg::ES256, JwsAlg::RS256];
    s.refresh = RefreshSettings {
        min_lifetime: Duration::from_secs(1),
        max_lifetime: Duration::from_secs(3600),
        default_lifetime: Duration::from_secs(300),
        kid_miss_cooldown: cooldown,
        fetch_timeout: Duration::from_secs(5),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
    };
    s
}

/// The issuers with their refresh loops running; stopped when dropped.
pub struct Running {
    pub issuers: Arc<Issuers>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

pub fn run(settings: Vec<IssuerSettings>) -> Running {
    let issuers = Arc::new(Issuers::new(settings).unwrap());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let i = issuers.clone();
    let task = tokio::spawn(async move { i.run(shutdown).await });
    Running {
        issuers,
        stop,
        task,
    }
}

// ---- oidc-provider ----

/// A real OpenID provider (tests/interop/idp.mjs); killed when dropped.
pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    pub token_endpoint: String,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OidcProvider {
    pub async fn start(client_id: &str, secret: &str, resource: &str, scope: &str) -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "run `npm ci --prefix tests/interop` (scripts/test.sh does)"
        );
        let mut child = Command::new("node")
            .current_dir(&dir)
            .args(["idp.mjs", client_id, secret, resource, scope])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is installed (scripts/install-deps.sh)");
        let stdout = child.stdout.take().unwrap();
        // The script prints its line once it listens: reading it is the readiness check.
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        })
        .await
        .unwrap()
        .unwrap();
        let v: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("idp.mjs printed {line:?}: {e}"));
        Self {
            child,
            issuer: v["issuer"].as_str().unwrap().to_string(),
            token_endpoint: v["token_endpoint"].as_str().unwrap().to_string(),
        }
    }

    /// An access token from the client_credentials grant for `resource`.
    pub async fn token(
        &self,
        client_id: &str,
        secret: &str,
        resource: &str,
        scope: &str,
    ) -> String {
        let response = reqwest::Client::new()
            .post(&self.token_endpoint)
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", resource),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }
}
