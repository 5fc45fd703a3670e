//! The validated settings of one external issuer (the `idp` module runs on them), and the
//! checks that make them safe to run.

use crate::domain::claim::ClaimPath;
use crate::domain::jose::JwsAlg;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One trusted external issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerSettings {
    /// The config name: logs and metric labels.
    pub name: String,
    /// The exact `iss` value its tokens carry.
    pub issuer: String,
    /// Where its key set is published.
    pub keys: KeySource,
    /// The token's `aud` must contain one of these (at least one).
    pub audiences: Vec<String>,
    /// The JWS algorithms its tokens may use (at least one).
    pub algorithms: Vec<JwsAlg>,
    /// The `typ` header its tokens must carry (compared as RFC 7515 says), when set; e.g.
    /// `at+jwt` for RFC 9068 access tokens.
    pub typ: Option<String>,
    /// Where the scopes are: `None` reads `scope` (space-separated string or array), else
    /// `scp`; a path such as `roles` or `realm_access.roles` reads that claim instead.
    pub scope_claim: Option<ClaimPath>,
    /// The claim that names the subject (`sub` by default).
    pub subject_claim: ClaimPath,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    pub refresh: RefreshSettings,
    /// Extra trusted root certificates (PEM) for the HTTPS fetches.
    pub ca_file: Option<PathBuf>,
}

/// Where an issuer's JWKS is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// This URL (http or https).
    JwksUri(String),
    /// OIDC discovery: `GET {issuer}/.well-known/openid-configuration`, whose `issuer` must
    /// equal ours exactly, and its `jwks_uri`.
    Discovery,
}

/// How the key set is kept fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshSettings {
    /// The shortest a key set is kept before it is fetched again, whatever the
    /// `Cache-Control` of its response (`no-cache` and `no-store` mean this).
    pub min_lifetime: Duration,
    /// The longest a key set is kept, whatever its `max-age`.
    pub max_lifetime: Duration,
    /// How long a key set is kept when its response says nothing (no `max-age`).
    pub default_lifetime: Duration,
    /// A `kid` miss refetches only when the last fetch started at least this long ago.
    pub kid_miss_cooldown: Duration,
    /// The bound on one fetch (discovery and JWKS together), and on a request's wait for a
    /// refetch it asked for.
    pub fetch_timeout: Duration,
    /// The first retry after a failed fetch; it doubles with each failure in a row.
    pub retry_initial: Duration,
    /// The longest wait between retries.
    pub retry_max: Duration,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        Self {
            min_lifetime: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(24 * 3600),
            default_lifetime: Duration::from_secs(600),
            kid_miss_cooldown: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

impl IssuerSettings {
    /// Settings with the defaults for everything but what names the issuer.
    pub fn new(name: &str, issuer: &str, keys: KeySource, audiences: Vec<String>) -> Self {
        Self {
            name: name.to_string(),
            issuer: issuer.to_string(),
            keys,
            audiences,
            algorithms: vec![JwsAlg::RS256, JwsAlg::ES256],
            typ: None,
            scope_claim: None,
            subject_claim: ClaimPath::sub(),
            leeway: Duration::from_secs(60),
            refresh: RefreshSettings::default(),
            ca_file: None,
        }
    }

    /// Every problem with these settings (empty when they can run).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.name.is_empty() {
            p.push("the name is empty".to_string());
        }
        if self.issuer.is_empty() {
            p.push("`issuer` is empty".to_string());
        }
        match &self.keys {
            KeySource::JwksUri(uri) => {
                if let Err(e) = http_url(uri) {
                    p.push(format!("`jwks_uri` {e}"));
                }
            }
            KeySource::Discovery => {
                if let Err(e) = http_url(&self.issuer) {
                    p.push(format!("discovery needs an http(s) `issuer`: it {e}"));
                }
            }
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            p.push("`audiences` must list at least one non-empty audience".to_string());
        }
        if self.algorithms.is_empty() {
            p.push("`algorithms` must allow at least one algorithm".to_string());
        }
        if self.typ.as_deref() == Some("") {
            p.push("`typ` is empty".to_string());
        }
        p.extend(self.refresh.problems());
        p
    }
}

impl RefreshSettings {
    /// Every problem with these settings (empty when they can run). The config file's own
    /// checks report the same under each key's path; this guards settings made in code.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let r = self;
        if r.min_lifetime.is_zero() {
            p.push("the minimum key-set lifetime must be more than 0".to_string());
        }
        if r.min_lifetime > r.max_lifetime {
            p.push("the minimum key-set lifetime is longer than the maximum".to_string());
        }
        if r.default_lifetime < r.min_lifetime || r.default_lifetime > r.max_lifetime {
            p.push(
                "the default key-set lifetime must lie between the minimum and the maximum"
                    .to_string(),
            );
        }
        if r.kid_miss_cooldown.is_zero() {
            p.push("the kid-miss cooldown must be more than 0".to_string());
        }
        if r.fetch_timeout.is_zero() {
            p.push("the fetch timeout must be more than 0".to_string());
        }
        if r.retry_initial.is_zero() || r.retry_initial > r.retry_max {
            p.push("the first retry must be more than 0 and at most the longest".to_string());
        }
        p
    }
}

/// Why an issuer's address or extra roots cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IssuerSetupError {
    #[error("`{text}` is not a URL: {source}")]
    NotAUrl {
        text: String,
        source: url::ParseError,
    },
    #[error("`{0}` is not an http(s) URL")]
    NotHttp(String),
    #[error("cannot read `ca_file` {}: {source}", path.display())]
    ReadCaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`ca_file` {}: {source}", path.display())]
    BadCaFile {
        path: PathBuf,
        source: reqwest::Error,
    },
    #[error("`ca_file` {} holds no certificate", path.display())]
    EmptyCaFile { path: PathBuf },
}

/// `text` as an absolute http or https URL.
pub fn http_url(text: &str) -> Result<reqwest::Url, IssuerSetupError> {
    let url = reqwest::Url::parse(text).map_err(|source| IssuerSetupError::NotAUrl {
        text: text.to_string(),
        source,
    })?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(IssuerSetupError::NotHttp(text.to_string())),
    }
}

/// The trusted roots of a `ca_file` (PEM, one certificate at least).
pub fn load_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, IssuerSetupError> {
    let pem = std::fs::read(path).map_err(|source| IssuerSetupError::ReadCaFile {
        path: path.to_path_buf(),
        source,
    })?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
        IssuerSetupError::BadCaFile {
            path: path.to_path_buf(),
            source,
        }
    })?;
    if roots.is_empty() {
        return Err(IssuerSetupError::EmptyCaFile {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}
