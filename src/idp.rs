//! External identity providers (Keycloak, Azure AD B2C, Clerk, any OIDC provider): the
//! issuers an API trusts, their key sets kept fresh by a background refresh loop, and the
//! validation of the JWTs they issue (RFC 7519, RFC 8725) into an [`ExternalToken`].
//!
//! The request path never fetches: it reads the issuer's keys lock-free, and on a `kid` it
//! does not know it asks the refresh loop for one refetch (at most one per cooldown, shared
//! by every request that missed) and waits for it, bounded by the fetch timeout.

mod fetch;
mod jwks;
mod lifetime;
mod refresh;
mod verify;

pub use refresh::{IssuerStats, StatsSnapshot};

use crate::config::IssuerSettings;
use crate::domain::scope::Scopes;
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A token an external issuer signed, validated: who it names and what it grants.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalToken {
    /// The configured name of the issuer whose key verified it.
    pub issuer_name: Arc<str>,
    /// From the issuer's subject claim (`sub` unless configured).
    pub subject: String,
    /// `aud`, as the token lists it (one of them is one of the issuer's audiences).
    pub audiences: Vec<String>,
    /// From the issuer's scope mapping.
    pub scopes: Scopes,
    /// Always present: a token without `exp` is refused.
    pub exp: i64,
    pub iat: Option<i64>,
    pub nbf: Option<i64>,
    pub jti: Option<String>,
    /// `client_id` (RFC 9068), when present.
    pub client_id: Option<String>,
    pub email: Option<String>,
    /// `email_verified`: a boolean, or the strings `"true"` / `"false"` some providers send.
    pub email_verified: Option<bool>,
    /// Every claim, for further mapping.
    pub claims: serde_json::Value,
}

/// Why an external token was refused. Each names a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Not a compact JWS tollgate reads (structure, JSON, duplicate names, `crit`, a
    /// symmetric or `none` algorithm), or claims of the wrong type.
    Malformed,
    /// The key named by `kid` does not verify the signature, or does not take this `alg`.
    BadSignature,
    /// No key of this issuer has the token's `kid`, even after a refetch.
    UnknownKey,
    /// The issuer's keys have not been fetched yet (the provider is down or slow).
    NoKeysYet,
    /// `alg` is not in the issuer's allow-list.
    AlgorithmNotAllowed,
    /// The `typ` header is not the one the issuer is configured to require.
    WrongType,
    /// `iss` names no configured issuer (only from [`Issuers::verify`]).
    UnknownIssuer,
    /// `iss` is not exactly the issuer whose key verified the token.
    WrongIssuer,
    Expired,
    /// The token has no `exp`.
    MissingExpiry,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    NotYetValid,
    /// `aud` contains none of the issuer's audiences.
    WrongAudience,
    /// The subject claim is absent or not a non-empty string.
    MissingSubject,
}

impl Rejection {
    pub const ALL: [Rejection; 13] = [
        Rejection::Malformed,
        Rejection::BadSignature,
        Rejection::UnknownKey,
        Rejection::NoKeysYet,
        Rejection::AlgorithmNotAllowed,
        Rejection::WrongType,
        Rejection::UnknownIssuer,
        Rejection::WrongIssuer,
        Rejection::Expired,
        Rejection::MissingExpiry,
        Rejection::NotYetValid,
        Rejection::WrongAudience,
        Rejection::MissingSubject,
    ];

    /// The metric label (`outcome="..."`).
    pub fn label(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::BadSignature => "bad_signature",
            Rejection::UnknownKey => "unknown_key",
            Rejection::NoKeysYet => "no_keys_yet",
            Rejection::AlgorithmNotAllowed => "algorithm_not_allowed",
            Rejection::WrongType => "wrong_type",
            Rejection::UnknownIssuer => "unknown_issuer",
            Rejection::WrongIssuer => "wrong_issuer",
            Rejection::Expired => "expired",
            Rejection::MissingExpiry => "missing_expiry",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::MissingSubject => "missing_subject",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why one configured issuer cannot run.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("issuer `{0}`: the name is used twice")]
    NameTwice(String),
    #[error("issuer `{name}`: issuer `{issuer}` is configured twice")]
    IssuerTwice { name: String, issuer: String },
    #[error("issuer `{name}`: {problem}")]
    Settings { name: String, problem: String },
    #[error("issuer `{name}`: {source}")]
    Setup {
        name: String,
        source: fetch::SetupError,
    },
}

/// Every problem with the configured issuers, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct IssuersError(pub Vec<IssuerError>);

fn lines(errors: &[IssuerError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One configured external issuer: its settings, its current key set and its refresh state.
pub struct ExternalIssuer {
    settings: IssuerSettings,
    name: Arc<str>,
    fetcher: fetch::Fetcher,
    /// `None` until the first successful fetch.
    keys: ArcSwapOption<jwks::KeySet>,
    refresh: refresh::Coordinator,
    stats: IssuerStats,
}

impl ExternalIssuer {
    fn new(settings: IssuerSettings) -> Result<Self, fetch::SetupError> {
        let fetcher = fetch::Fetcher::new(&settings)?;
        Ok(Self {
            name: settings.name.as_str().into(),
            fetcher,
            keys: ArcSwapOption::empty(),
            refresh: refresh::Coordinator::new(),
            stats: IssuerStats::default(),
            settings,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn settings(&self) -> &IssuerSettings {
        &self.settings
    }

    /// Validate `token` at `now` (seconds since the epoch) with this issuer's keys only.
    ///
    /// A `kid` missing from the key set (or a kid-less token no key verifies) asks the
    /// refresh loop for a refetch when the last fetch started at least the cooldown ago,
    /// and waits for it (bounded by the fetch timeout); misses that arrive while one is
    /// pending wait for that same refetch; other misses are refused at once.
    pub async fn verify(&self, token: &str, now: i64) -> Result<ExternalToken, Rejection> {
        let unverified = verify::read_header(&self.settings, token)?;
        let first = self.check(&unverified, now);
        let Err(verify::Failure::Miss(_)) = first else {
            return first.map_err(verify::Failure::rejection);
        };
        // Subscribe before looking again: a fetch that completes from here on wakes us.
        let mut generation = self.refresh.subscribe();
        let again = self.check(&unverified, now);
        let Err(verify::Failure::Miss(miss)) = again else {
            return again.map_err(verify::Failure::rejection);
        };
        let refresh = &self.settings.refresh;
        match self
            .refresh
            .on_miss(refresh.kid_miss_cooldown, refresh.fetch_timeout)
        {
            refresh::MissDecision::Suppressed => {
                self.stats.count_suppressed();
                return Err(miss.rejection());
            }
            refresh::MissDecision::Requested => {
                self.stats.count_kid_miss_refetch();
                log::debug!("issuer {}: unknown key, asking for a refetch", self.name);
                self.refresh.wake_loop();
            }
            refresh::MissDecision::Joined => self.stats.count_joined(),
        }
        // A timeout is not an error here: the lookup below decides.
        let _ = tokio::time::timeout(refresh.fetch_timeout, generation.changed()).await;
        self.check(&unverified, now)
            .map_err(verify::Failure::rejection)
    }

    fn check(
        &self,
        unverified: &crate::jwt::Unverified<'_>,
        now: i64,
    ) -> Result<ExternalToken, verify::Failure> {
        let keys = self.keys.load();
        verify::check(&self.settings, &self.name, keys.as_deref(), unverified, now)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &IssuerStats {
        &self.stats
    }

    /// Whether a key set with at least one usable key is loaded.
    pub fn has_keys(&self) -> bool {
        self.keys.load().as_ref().is_some_and(|k| !k.is_empty())
    }

    /// How long until a kid miss may ask for a refetch again (zero: it may now).
    pub fn refetch_cooldown_remaining(&self) -> Duration {
        self.refresh
            .cooldown_remaining(self.settings.refresh.kid_miss_cooldown)
    }
}

/// Every configured external issuer, found by `iss` or by name.
pub struct Issuers {
    list: Vec<Arc<ExternalIssuer>>,
    by_iss: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
}

impl Issuers {
    /// Check the settings (every problem reported at once, one per line) and build the
    /// issuers. Nothing is fetched until [`Issuers::run`].
    pub fn new(settings: Vec<IssuerSettings>) -> Result<Self, IssuersError> {
        let mut errors = Vec::new();
        let mut list = Vec::new();
        let mut by_iss = HashMap::new();
        let mut by_name = HashMap::new();
        for s in settings {
            let problems = s.problems();
            if by_name.contains_key(&s.name) {
                errors.push(IssuerError::NameTwice(s.name.clone()));
            }
            if by_iss.contains_key(&s.issuer) {
                errors.push(IssuerError::IssuerTwice {
                    name: s.name.clone(),
                    issuer: s.issuer.clone(),
                });
            }
            if !problems.is_empty() {
                errors.extend(problems.into_iter().map(|problem| IssuerError::Settings {
                    name: s.name.clone(),
                    problem,
                }));
                continue;
            }
            let (name, iss) = (s.name.clone(), s.issuer.clone());
            match ExternalIssuer::new(s) {
                Ok(issuer) => {
                    by_name.insert(name, list.len());
                    by_iss.insert(iss, list.len());
                    list.push(Arc::new(issuer));
                }
                Err(source) => errors.push(IssuerError::Setup { name, source }),
            }
        }
        if errors.is_empty() {
            Ok(Self {
                list,
                by_iss,
                by_name,
            })
        } else {
            Err(IssuersError(errors))
        }
    }

    /// Like [`Issuers::new`], keeping the issuers of `previous` whose settings did not
    /// change (their keys and refresh state go on): a configuration reload does not
    /// refetch every key set.
    pub fn rebuild(
        settings: Vec<IssuerSettings>,
        previous: &Issuers,
    ) -> Result<Self, IssuersError> {
        let fresh = Self::new(settings)?;
        let list = fresh
            .list
            .into_iter()
            .map(|new| match previous.by_name(new.name()) {
                Some(old) if old.settings() == new.settings() => Arc::clone(old),
                _ => new,
            })
            .collect();
        Ok(Self {
            list,
            by_iss: fresh.by_iss,
            by_name: fresh.by_name,
        })
    }

    /// An empty set.
    pub fn none() -> Self {
        Self {
            list: Vec::new(),
            by_iss: HashMap::new(),
            by_name: HashMap::new(),
        }
    }

    /// The issuer whose `issuer` is exactly `iss`.
    pub fn for_iss(&self, iss: &str) -> Option<&Arc<ExternalIssuer>> {
        self.by_iss.get(iss).map(|&i| &self.list[i])
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<ExternalIssuer>> {
        self.by_name.get(name).map(|&i| &self.list[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ExternalIssuer>> {
        self.list.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Validate a token with the keys of the issuer its (unverified) `iss` names.
    pub async fn verify(&self, token: &str, now: i64) -> Result<ExternalToken, Rejection> {
        let iss = peek_issuer(token).ok_or(Rejection::Malformed)?;
        let issuer = self.for_iss(&iss).ok_or(Rejection::UnknownIssuer)?;
        issuer.verify(token, now).await
    }

    /// Run every issuer's refresh loop until `shutdown` changes.
    pub async fn run(&self, shutdown: ShutdownWatch) {
        let mut loops = tokio::task::JoinSet::new();
        for issuer in &self.list {
            let issuer = Arc::clone(issuer);
            let shutdown = shutdown.clone();
            loops.spawn(async move { issuer.run(shutdown).await });
        }
        while loops.join_next().await.is_some() {}
    }
}

#[async_trait]
impl BackgroundService for Issuers {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.run(shutdown).await;
    }
}

/// The unverified `iss` of a token, only to choose the issuer whose keys must then verify
/// it (RFC 8725 §3.10). Nothing else may be read from a token before its signature.
pub fn peek_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    if token.len() > crate::domain::jose::MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (Some(_), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let json = B64.decode(claims).ok()?;
    serde_json::from_slice::<Iss>(&json).ok()?.iss
}

#[cfg(test)]
mod tests;
