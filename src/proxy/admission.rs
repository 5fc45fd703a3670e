//! The credential check of a protected API: the bearer token or API key, the issuer and
//! scope rules, the client's ACL, the rate limit; the refusal when it fails, and who the
//! caller is when it passes. The proxy and the forward-auth listener share it
//! ([`Gatekeeper`]).

use super::sender::{self, Channel};
use crate::auth::bearer::{self, Presented};
use crate::auth::cache::TokenKey;
use crate::auth::identity::IdentityValues;
use crate::auth::phantom::{self, Phantoms};
use crate::auth::ratelimit::{ConsumerKeys, Decision};
use crate::auth::refusal::{Refusal, Scheme};
use crate::auth::{self, Authenticator, CacheUse, CheckContext, Denial, Principal};
use crate::catalog::registry::ApiKey;
use crate::catalog::{Catalog, Live};
use crate::config::{AuthMode, CredentialMode};
use crate::domain::clock::unix_now;
use crate::domain::oauth::WayIn;
use crate::domain::outcome::Outcome;
use crate::metrics::Metrics;
use crate::routes::Api;
use http::HeaderValue;
use pingora::http::RequestHeader;
use std::sync::Arc;

/// What decides whether a request may reach a protected API: shared by the proxy and the
/// forward-auth listener, so both decide alike and share one token cache.
pub struct Gatekeeper {
    pub catalog: Arc<Live>,
    pub auth: Arc<Authenticator>,
    pub consumers: ConsumerKeys,
    pub metrics: Arc<Metrics>,
    pub phantoms: Phantoms,
    /// DPoP proofs of bound tokens.
    pub dpop: Arc<crate::dpop::Dpop>,
}

/// Who passed, and with what credential.
#[derive(Clone)]
pub enum Caller {
    /// A bearer token; `key` finds what is kept beside it (its phantom).
    Token { principal: Principal, key: TokenKey },
    /// An API key; `key` as for a token (a prefix of the key's digest).
    ApiKey { entry: Arc<ApiKey>, key: u128 },
}

impl Caller {
    /// What the upstream is told.
    pub fn identity(&self) -> &IdentityValues {
        match self {
            Caller::Token { principal, .. } => &principal.identity,
            Caller::ApiKey { entry, .. } => &entry.identity,
        }
    }

    pub fn way_in(&self) -> WayIn {
        self.identity().way_in
    }

    pub fn client_id(&self) -> Option<&str> {
        match self {
            Caller::Token { principal, .. } => principal.client_id.as_deref(),
            Caller::ApiKey { entry, .. } => Some(entry.client.id.as_str()),
        }
    }

    pub fn subject(&self) -> Option<&str> {
        match self {
            Caller::Token { principal, .. } => principal.sub.as_deref(),
            Caller::ApiKey { entry, .. } => Some(entry.client.id.as_str()),
        }
    }

    /// The external issuer's name, for an external token.
    pub fn issuer(&self) -> Option<&str> {
        match self {
            Caller::Token { principal, .. } => principal.issuer.as_deref(),
            Caller::ApiKey { .. } => None,
        }
    }
}

/// A request that may pass: who, the RateLimit headers to add to the answer, and the
/// phantom token that replaces the credential (when the API wants one).
pub struct Admitted {
    pub caller: Caller,
    pub limited: Option<(Decision, HeaderValue)>,
    pub phantom: Option<HeaderValue>,
}

/// Why a request may not pass (cheap to make: the answer is built only if it is sent).
enum Denied<'a> {
    /// No or a bad credential, or too little scope: RFC 6750 (the required scopes for 403).
    Credential(Outcome, Option<&'a str>),
    /// Over its rate limit.
    Limited(Decision, HeaderValue),
}

/// Who a request comes from, once its credential is accepted, and the rule that decided.
struct Passed {
    caller: Caller,
    /// The rate-limit key of the holder; `None` when the API has no limit to count it
    /// against (the key is a hash over the holder's names: not computed for nothing).
    consumer: Option<u64>,
    rule: Option<usize>,
}

impl Gatekeeper {
    /// Decide a request for `api`, whose operation takes the ways in of `mode`: admitted,
    /// or the refusal to answer with.
    pub async fn admit(
        &self,
        req: &RequestHeader,
        api: &Api,
        mode: AuthMode,
        catalog: &Catalog,
        channel: Channel,
    ) -> Result<Admitted, Refusal> {
        let now = unix_now();
        let denied = match self.verdict(req, api, mode, catalog, channel, now).await {
            Ok(passed) => match self.rate_limit(api, &passed) {
                Ok(limited) => {
                    self.metrics.record_validation(Outcome::Ok);
                    let phantom = match api.identity.credential {
                        CredentialMode::Phantom => {
                            Some(self.phantom(&passed.caller, api, catalog, now)?)
                        }
                        CredentialMode::Keep | CredentialMode::Strip => None,
                    };
                    return Ok(Admitted {
                        caller: passed.caller,
                        limited,
                        phantom,
                    });
                }
                Err(d) => d,
            },
            Err(d) => d,
        };
        Err(match denied {
            Denied::Limited(decision, policy) => {
                api.series.count_rate_limited(&self.metrics, &api.name);
                log::debug!(
                    "{} {}: rate limited for API {}",
                    req.method,
                    req.uri.path(),
                    api.name
                );
                Refusal::rate_limited(&decision, &policy)
            }
            Denied::Credential(outcome, required) => {
                self.metrics.record_validation(outcome);
                log::debug!(
                    "{} {}: refused for API {} ({})",
                    req.method,
                    req.uri.path(),
                    api.name,
                    outcome.label()
                );
                let dpop = matches!(
                    outcome,
                    Outcome::DpopProof | Outcome::DpopNonce | Outcome::NotSenderConstrained
                ) || api.dpop_required
                    || matches!(bearer::extract_unchecked(&req.headers), Presented::Dpop(_));
                let scheme = if mode.jwt && dpop {
                    Scheme::Dpop {
                        algs: self.dpop.algs(),
                    }
                } else if mode.jwt {
                    Scheme::Bearer
                } else {
                    Scheme::ApiKey {
                        header: api.api_key_header.as_str(),
                    }
                };
                let mut refusal = Refusal::credential(outcome, required, scheme);
                if outcome == Outcome::DpopNonce
                    && let Ok(v) = HeaderValue::from_str(&self.dpop.nonce(now))
                {
                    refusal.headers.push((crate::token::DPOP_NONCE.clone(), v));
                }
                refusal
            }
        })
    }

    /// The phantom token of `caller` for `api`; a request that should carry one and
    /// cannot is refused, never sent with the client's credential instead.
    fn phantom(
        &self,
        caller: &Caller,
        api: &Api,
        catalog: &Catalog,
        now: i64,
    ) -> Result<HeaderValue, Refusal> {
        let (key, exp) = match caller {
            Caller::Token { principal, key } => (*key, Some(principal.exp)),
            Caller::ApiKey { key, .. } => (*key, None),
        };
        let subject = phantom::Subject {
            identity: caller.identity(),
            exp,
        };
        self.phantoms
            .authorization(key, &api.audience, &subject, &catalog.plan, now)
            .ok_or_else(|| {
                log::error!("API {}: cannot sign a phantom token", api.name);
                Refusal::proxy_failure(500)
            })
    }

    /// Count the request against the API's and the operation's limits.
    fn rate_limit<'a>(
        &self,
        api: &Api,
        passed: &Passed,
    ) -> std::result::Result<Option<(Decision, HeaderValue)>, Denied<'a>> {
        let Some(consumer) = passed.consumer else {
            return Ok(None);
        };
        let rule_limit = passed
            .rule
            .and_then(|i| api.rule_limits.get(i))
            .and_then(Option::as_ref);
        let mut shown = None;
        for limiter in api.limit.iter().chain(rule_limit) {
            let d = limiter.check(consumer);
            if !d.allowed {
                return Err(Denied::Limited(d, limiter.policy().clone()));
            }
            // The tighter of the two is the one to report.
            if shown
                .as_ref()
                .is_none_or(|(s, _): &(Decision, HeaderValue)| d.remaining < s.remaining)
            {
                shown = Some((d, limiter.policy().clone()));
            }
        }
        Ok(shown)
    }

    /// Whether the request's credential opens this operation of `api`.
    async fn verdict<'a>(
        &self,
        req: &RequestHeader,
        api: &'a Api,
        mode: AuthMode,
        catalog: &Catalog,
        channel: Channel,
        now: i64,
    ) -> std::result::Result<Passed, Denied<'a>> {
        if mode.api_key
            && let Some(key) = single_header(req, &api.api_key_header)
        {
            return self.api_key_verdict(key, req, api, catalog);
        }
        if !mode.jwt {
            return Err(Denied::Credential(
                if req.headers.contains_key(&api.api_key_header) {
                    Outcome::Malformed
                } else {
                    Outcome::Missing
                },
                None,
            ));
        }
        let (token, dpop_scheme) = match bearer::extract_unchecked(&req.headers) {
            Presented::Missing => return Err(Denied::Credential(Outcome::Missing, None)),
            Presented::Malformed => return Err(Denied::Credential(Outcome::Malformed, None)),
            Presented::Token(t) => (t, false),
            Presented::Dpop(t) => (t, true),
        };
        // The token's characters are checked on a cache miss only (a hit is a token
        // that passed when it was verified).
        let ctx = CheckContext {
            now,
            issuers: &catalog.issuers,
            plan: &catalog.plan,
        };
        let checked = self
            .auth
            .authenticate_checked(token, &ctx, bearer::is_b64token)
            .await;
        match checked.cache {
            CacheUse::Hit => self.metrics.cache_hits.inc(),
            CacheUse::Miss => self.metrics.cache_misses.inc(),
            CacheUse::Skipped => {}
        }
        let principal = checked.result.map_err(|o| Denied::Credential(o, None))?;
        sender::check(&self.dpop, &principal, dpop_scheme, req, api, channel, now)
            .await
            .map_err(|o| Denied::Credential(o, None))?;
        let denied = |d| match d {
            Denial::WrongAudience => Denied::Credential(Outcome::WrongAudience, None),
            Denial::InsufficientScope { required } => {
                Denied::Credential(Outcome::InsufficientScope, Some(required))
            }
        };
        if let Some(issuer) = principal.issuer.as_deref() {
            // An external issuer's token: its issuer must be one this API trusts (its
            // audience was checked against the issuer's), then the scope rules.
            if !api.issuers.iter().any(|i| &**i == issuer) {
                return Err(Denied::Credential(Outcome::WrongIssuer, None));
            }
            let rule = auth::allowed_by_rules(&principal, &api.rules, &req.method, req.uri.path())
                .map_err(denied)?;
            let consumer = api
                .rate_limited()
                .then(|| self.external_consumer(&principal, issuer));
            return Ok(Passed {
                caller: Caller::Token {
                    principal,
                    key: checked.key,
                },
                consumer,
                rule,
            });
        }
        if !api.own_tokens {
            return Err(Denied::Credential(Outcome::WrongIssuer, None));
        }
        let rule = auth::authorize(
            &principal,
            &api.audience,
            &api.rules,
            &req.method,
            req.uri.path(),
        )
        .map_err(denied)?;
        // The holder's client, user and ACL entry, as configured now.
        if !catalog.registry.permits(
            principal.client_id.as_deref(),
            principal.username.as_deref(),
            &api.name,
        ) {
            return Err(Denied::Credential(Outcome::NotPermitted, None));
        }
        let consumer = api.rate_limited().then(|| {
            self.consumers
                .of(&["", principal.client_id.as_deref().unwrap_or_default()])
        });
        Ok(Passed {
            caller: Caller::Token {
                principal,
                key: checked.key,
            },
            consumer,
            rule,
        })
    }

    fn external_consumer(&self, p: &Principal, issuer: &str) -> u64 {
        let who = p
            .client_id
            .as_deref()
            .or(p.sub.as_deref())
            .unwrap_or_default();
        self.consumers.of(&[issuer, who])
    }

    /// An API key: its credential must have the API in its ACL (or products), and its
    /// roles must satisfy the scope rules.
    fn api_key_verdict<'a>(
        &self,
        key: &[u8],
        req: &RequestHeader,
        api: &'a Api,
        catalog: &Catalog,
    ) -> std::result::Result<Passed, Denied<'a>> {
        if key.is_empty() || key.len() > MAX_API_KEY_LEN {
            return Err(Denied::Credential(Outcome::Malformed, None));
        }
        let digest = crate::store::digest_bytes(key);
        let Some(entry) = catalog.registry.api_key(&digest) else {
            return Err(Denied::Credential(Outcome::UnknownApiKey, None));
        };
        let client = &entry.client;
        if !client.apis.contains(&*api.name) {
            return Err(Denied::Credential(Outcome::NotPermitted, None));
        }
        let rule = auth::scope_rule(&client.scope_set, &api.rules, &req.method, req.uri.path())
            .map_err(|required| Denied::Credential(Outcome::InsufficientScope, Some(required)))?;
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        let consumer = api
            .rate_limited()
            .then(|| self.consumers.of(&["", &client.id]));
        Ok(Passed {
            consumer,
            // The registry's own reference, moved: no second count per request.
            caller: Caller::ApiKey {
                entry,
                key: u128::from_le_bytes(first),
            },
            rule,
        })
    }
}

/// The longest API key read (tollgate's are 47 characters).
const MAX_API_KEY_LEN: usize = 512;

/// The value of a header sent exactly once.
fn single_header<'r>(req: &'r RequestHeader, name: &http::HeaderName) -> Option<&'r [u8]> {
    let mut values = req.headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => Some(v.as_bytes()),
        // Sent twice: not one key; the refusal below says malformed.
        (Some(_), Some(_)) => Some(&[]),
        _ => None,
    }
}
