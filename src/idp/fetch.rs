//! HTTP for an issuer's keys: OIDC discovery and the JWKS itself, with a timeout on every
//! request, the configured extra roots, redirects only within one scheme, and a cap on the
//! response size. Only the refresh loop calls it.

use super::IssuerSettings;
use super::settings::{KeySource, http_url};
use http::HeaderMap;
use reqwest::{StatusCode, Url};
use std::sync::Mutex;

/// The largest discovery or JWKS response read.
pub(super) const MAX_BODY: usize = 1024 * 1024;

/// Redirects followed at most, each to the scheme of the first URL.
const MAX_REDIRECTS: usize = 3;

const ACCEPT_JWKS: &str = "application/jwk-set+json, application/json;q=0.9";
const ACCEPT_JSON: &str = "application/json";

/// A response read in full.
pub(super) struct Fetched {
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

enum Source {
    Jwks(Url),
    Discovery {
        issuer: String,
        config: Url,
        /// The `jwks_uri` found last; forgotten when fetching it fails.
        jwks: Mutex<Option<Url>>,
    },
}

pub(super) struct Fetcher {
    client: reqwest::Client,
    source: Source,
}

impl Fetcher {
    pub(super) fn new(settings: &IssuerSettings) -> Result<Self, String> {
        let source = match &settings.keys {
            KeySource::JwksUri(uri) => Source::Jwks(http_url(uri)?),
            KeySource::Discovery => Source::Discovery {
                issuer: settings.issuer.clone(),
                config: http_url(&format!(
                    "{}/.well-known/openid-configuration",
                    settings.issuer.trim_end_matches('/')
                ))?,
                jwks: Mutex::new(None),
            },
        };
        let timeout = settings.refresh.fetch_timeout;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let first_scheme = attempt.previous().first().map(|u| u.scheme().to_string());
                if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if first_scheme.is_some_and(|s| s != attempt.url().scheme()) {
                    attempt.error("a redirect to another scheme")
                } else {
                    attempt.follow()
                }
            }));
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read `ca_file` {}: {e}", path.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("`ca_file` {}: {e}", path.display()))?;
            if roots.is_empty() {
                return Err(format!("`ca_file` {} holds no certificate", path.display()));
            }
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))?;
        Ok(Self { client, source })
    }

    /// Where the keys come from, for logs.
    pub(super) fn describe(&self) -> String {
        match &self.source {
            Source::Jwks(url) => url.to_string(),
            Source::Discovery { config, jwks, .. } => {
                match jwks.lock().ok().and_then(|j| j.clone()) {
                    Some(url) => url.to_string(),
                    None => config.to_string(),
                }
            }
        }
    }

    /// Fetch the JWKS (after discovery, when configured and not yet done).
    pub(super) async fn fetch(&self) -> Result<Fetched, String> {
        match &self.source {
            Source::Jwks(url) => self.get(url, ACCEPT_JWKS).await,
            Source::Discovery {
                issuer,
                config,
                jwks,
            } => {
                let known = jwks.lock().ok().and_then(|j| j.clone());
                let url = match known {
                    Some(url) => url,
                    None => {
                        let found = self.discover(issuer, config).await?;
                        if let Ok(mut j) = jwks.lock() {
                            *j = Some(found.clone());
                        }
                        found
                    }
                };
                let result = self.get(&url, ACCEPT_JWKS).await;
                if result.is_err()
                    && let Ok(mut j) = jwks.lock()
                {
                    *j = None;
                }
                result
            }
        }
    }

    /// OIDC Discovery 1.0 §4: the document's `issuer` must be ours exactly (§4.3), and its
    /// `jwks_uri` http(s), https when the issuer is.
    async fn discover(&self, issuer: &str, config: &Url) -> Result<Url, String> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: String,
        }
        let doc = self.get(config, ACCEPT_JSON).await?;
        let meta: Metadata = serde_json::from_slice(&doc.body)
            .map_err(|e| format!("{config}: not OpenID provider metadata: {e}"))?;
        if meta.issuer != issuer {
            return Err(format!(
                "{config}: the metadata names issuer `{}`, not `{issuer}`",
                meta.issuer
            ));
        }
        let jwks = http_url(&meta.jwks_uri).map_err(|e| format!("{config}: `jwks_uri` {e}"))?;
        if config.scheme() == "https" && jwks.scheme() != "https" {
            return Err(format!(
                "{config}: `jwks_uri` {jwks} is not https like the issuer"
            ));
        }
        Ok(jwks)
    }

    /// GET `url`: only a 200 is taken, and at most [`MAX_BODY`] bytes of it.
    async fn get(&self, url: &Url, accept: &str) -> Result<Fetched, String> {
        let mut response = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", chain(&e.without_url())))?;
        if response.status() != StatusCode::OK {
            return Err(format!("GET {url}: status {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(format!("GET {url}: the response is over {MAX_BODY} bytes"));
        }
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {}", chain(&e.without_url())))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("GET {url}: the response is over {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            url: response.url().clone(),
            headers,
            body,
        })
    }
}

/// An error and its causes, `outer: inner: root`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
