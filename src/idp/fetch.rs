//! HTTP for an issuer's keys: OIDC discovery and the JWKS itself, with a timeout on every
//! request, the configured extra roots, redirects only within one scheme, and a cap on the
//! response size. Only the refresh loop calls it.

use crate::config::{IssuerSettings, IssuerSetupError, KeySource, http_url, load_ca_file};
use http::HeaderMap;
use reqwest::{StatusCode, Url};
use std::sync::Mutex;

/// The largest discovery or JWKS response read.
pub(super) const MAX_BODY: usize = 1024 * 1024;

/// Redirects followed at most, each to the scheme of the first URL.
const MAX_REDIRECTS: usize = 3;

const ACCEPT_JWKS: &str = "application/jwk-set+json, application/json;q=0.9";
const ACCEPT_JSON: &str = "application/json";

/// Why an issuer's HTTP client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Settings(#[from] IssuerSetupError),
    #[error("cannot build the HTTP client: {}", chain(.0))]
    Client(reqwest::Error),
}

/// Why a fetch of discovery or the key set failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: {}", chain(source))]
    Transport { url: Url, source: reqwest::Error },
    #[error("GET {url}: status {status}")]
    Status { url: Url, status: StatusCode },
    #[error("GET {url}: the response is over {MAX_BODY} bytes")]
    TooLarge { url: Url },
    #[error("{config}: not OpenID provider metadata: {source}")]
    NotMetadata {
        config: Url,
        source: serde_json::Error,
    },
    #[error("{config}: the metadata names issuer `{named}`, not `{expected}`")]
    OtherIssuer {
        config: Url,
        named: String,
        expected: String,
    },
    #[error("{config}: `jwks_uri` {source}")]
    BadJwksUri {
        config: Url,
        source: IssuerSetupError,
    },
    #[error("{config}: `jwks_uri` {jwks} is not https like the issuer")]
    InsecureJwksUri { config: Url, jwks: Url },
}

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
    pub(super) fn new(settings: &IssuerSettings) -> Result<Self, SetupError> {
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
            for root in load_ca_file(path)? {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder.build().map_err(SetupError::Client)?;
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
    pub(super) async fn fetch(&self) -> Result<Fetched, FetchError> {
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
    async fn discover(&self, issuer: &str, config: &Url) -> Result<Url, FetchError> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: String,
        }
        let doc = self.get(config, ACCEPT_JSON).await?;
        let meta: Metadata =
            serde_json::from_slice(&doc.body).map_err(|source| FetchError::NotMetadata {
                config: config.clone(),
                source,
            })?;
        if meta.issuer != issuer {
            return Err(FetchError::OtherIssuer {
                config: config.clone(),
                named: meta.issuer,
                expected: issuer.to_string(),
            });
        }
        let jwks = http_url(&meta.jwks_uri).map_err(|source| FetchError::BadJwksUri {
            config: config.clone(),
            source,
        })?;
        if config.scheme() == "https" && jwks.scheme() != "https" {
            return Err(FetchError::InsecureJwksUri {
                config: config.clone(),
                jwks,
            });
        }
        Ok(jwks)
    }

    /// GET `url`: only a 200 is taken, and at most [`MAX_BODY`] bytes of it.
    async fn get(&self, url: &Url, accept: &str) -> Result<Fetched, FetchError> {
        let mut response = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| transport(url, e))?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status {
                url: url.clone(),
                status: response.status(),
            });
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(FetchError::TooLarge { url: url.clone() });
        }
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(url, e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(FetchError::TooLarge { url: url.clone() });
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

fn transport(url: &Url, e: reqwest::Error) -> FetchError {
    FetchError::Transport {
        url: url.clone(),
        source: e.without_url(),
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
