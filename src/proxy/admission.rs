//! The credential check of a protected API: the bearer token or API key, the issuer and
//! scope rules, the client's ACL, the rate limit; and the RFC 6750 answer when it fails.

use super::{Admission, Ctx, Gateway, respond};
use crate::auth::bearer::{self, Presented};
use crate::auth::ratelimit::Decision;
use crate::auth::refusal::{Refusal, Scheme};
use crate::auth::{self, CacheUse, Denial, Principal};
use crate::catalog::Catalog;
use crate::domain::clock::unix_now;
use crate::domain::outcome::Outcome;
use crate::routes::Api;
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Why a request may not pass (cheap to make: the answer is built only if it is sent).
enum Denied<'a> {
    /// No or a bad credential, or too little scope: RFC 6750 (the required scopes for 403).
    Credential(Outcome, Option<&'a str>),
    /// Over its rate limit.
    Limited(Decision, HeaderValue),
}

/// Who a request comes from, once its credential is accepted, and the rule that decided.
struct Passed {
    /// The rate-limit key of the holder; `None` when the API has no limit to count it
    /// against (the key is a hash over the holder's names: not computed for nothing).
    consumer: Option<u64>,
    rule: Option<usize>,
}

impl Gateway {
    /// Check the request's credential for `api`: it passes, or it has been answered.
    pub(super) async fn check_credential(
        &self,
        session: &mut Session,
        api: &Api,
        catalog: &Catalog,
        ctx: &mut Ctx,
    ) -> Result<Admission> {
        let denied = match self.verdict(session.req_header(), api, catalog).await {
            Ok(passed) => match self.rate_limit(api, &passed) {
                Ok(limited) => {
                    self.metrics.record_validation(Outcome::Ok);
                    ctx.limited = limited;
                    return Ok(Admission::Pass);
                }
                Err(d) => d,
            },
            Err(d) => d,
        };
        let req = session.req_header();
        let refusal = match denied {
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
                let scheme = if api.auth.jwt {
                    Scheme::Bearer
                } else {
                    Scheme::ApiKey {
                        header: api.api_key_header.as_str(),
                    }
                };
                Refusal::credential(outcome, required, scheme)
            }
        };
        respond::send_refusal(session, refusal).await?;
        Ok(Admission::Answered)
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
        catalog: &Catalog,
    ) -> std::result::Result<Passed, Denied<'a>> {
        if api.auth.api_key
            && let Some(key) = single_header(req, &api.api_key_header)
        {
            return self.api_key_verdict(key, req, api, catalog);
        }
        if !api.auth.jwt {
            return Err(Denied::Credential(
                if req.headers.contains_key(&api.api_key_header) {
                    Outcome::Malformed
                } else {
                    Outcome::Missing
                },
                None,
            ));
        }
        let token = match bearer::extract_unchecked(&req.headers) {
            Presented::Missing => return Err(Denied::Credential(Outcome::Missing, None)),
            Presented::Malformed => return Err(Denied::Credential(Outcome::Malformed, None)),
            Presented::Token(t) => t,
        };
        // The token's characters are checked on a cache miss only (a hit is a token
        // that passed when it was verified).
        let (result, cache) = self
            .auth
            .authenticate_checked(token, unix_now(), &catalog.issuers, bearer::is_b64token)
            .await;
        match cache {
            CacheUse::Hit => self.metrics.cache_hits.inc(),
            CacheUse::Miss => self.metrics.cache_misses.inc(),
            CacheUse::Skipped => {}
        }
        let principal = result.map_err(|o| Denied::Credential(o, None))?;
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
            return Ok(Passed {
                consumer: api
                    .rate_limited()
                    .then(|| self.external_consumer(&principal, issuer)),
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
        Ok(Passed {
            consumer: api.rate_limited().then(|| {
                self.consumers
                    .of(&["", principal.client_id.as_deref().unwrap_or_default()])
            }),
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
        let Some((client, _name)) = catalog.registry.api_key(&digest) else {
            return Err(Denied::Credential(Outcome::UnknownApiKey, None));
        };
        if !client.apis.contains(&*api.name) {
            return Err(Denied::Credential(Outcome::NotPermitted, None));
        }
        let rule = auth::scope_rule(&client.scope_set, &api.rules, &req.method, req.uri.path())
            .map_err(|required| Denied::Credential(Outcome::InsufficientScope, Some(required)))?;
        Ok(Passed {
            consumer: api
                .rate_limited()
                .then(|| self.consumers.of(&["", &client.id])),
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
