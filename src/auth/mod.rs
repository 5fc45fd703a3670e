//! Request-side authentication: take the bearer token from the request, validate it
//! (cache first, signature on a miss), then check audience and scope rules. Plain
//! functions over plain types; the proxy turns a rejection into an RFC 6750 response.

pub mod bearer;
pub mod cache;
pub mod scope;

use crate::jwt;
use crate::keys::{KeyMiss, KeySet};
use cache::{TokenCache, token_key};
use http::Method;
use scope::{Rule, ScopeDecision, Scopes};
use std::sync::Arc;

/// The result of checking one request's credential, as counted in
/// `tollgate_token_validations_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Missing,
    Malformed,
    BadSignature,
    UnknownKey,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    InsufficientScope,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Ok,
        Outcome::Missing,
        Outcome::Malformed,
        Outcome::BadSignature,
        Outcome::UnknownKey,
        Outcome::Expired,
        Outcome::NotYetValid,
        Outcome::WrongIssuer,
        Outcome::WrongAudience,
        Outcome::InsufficientScope,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Missing => "missing",
            Outcome::Malformed => "malformed",
            Outcome::BadSignature => "bad_signature",
            Outcome::UnknownKey => "unknown_key",
            Outcome::Expired => "expired",
            Outcome::NotYetValid => "not_yet_valid",
            Outcome::WrongIssuer => "wrong_issuer",
            Outcome::WrongAudience => "wrong_audience",
            Outcome::InsufficientScope => "insufficient_scope",
        }
    }

    /// `error_description` of the challenge; never echoes anything from the token.
    fn description(self) -> &'static str {
        match self {
            Outcome::Ok | Outcome::Missing => "",
            Outcome::Malformed => "The access token is malformed",
            Outcome::BadSignature => "The access token signature is invalid",
            Outcome::UnknownKey => "The access token was signed by an unknown key",
            Outcome::Expired => "The access token expired",
            Outcome::NotYetValid => "The access token is not valid yet",
            Outcome::WrongIssuer => "The access token was issued by another issuer",
            Outcome::WrongAudience => "The access token is not valid for this API",
            Outcome::InsufficientScope => "The access token lacks the scope this operation needs",
        }
    }
}

/// What a valid token says about its holder; shared by every request that presents it.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub sub: Option<Box<str>>,
    pub client_id: Option<Box<str>>,
    pub audiences: Box<[Box<str>]>,
    pub scopes: Scopes,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    pub jti: Option<Box<str>>,
}

/// Signature and registered-claim checks against the gateway's key set.
pub struct Validator {
    keys: Arc<KeySet>,
    issuer: Box<str>,
    leeway: i64,
}

impl Validator {
    pub fn new(keys: Arc<KeySet>, issuer: &str, leeway: std::time::Duration) -> Self {
        Self {
            keys,
            issuer: issuer.into(),
            leeway: leeway.as_secs() as i64,
        }
    }

    /// Fully validate a token at time `now` (seconds since the epoch).
    pub fn validate(&self, token: &str, now: i64) -> Result<Principal, Outcome> {
        let unverified = jwt::parse(token).map_err(|_| Outcome::Malformed)?;
        let key = self
            .keys
            .find(unverified.kid.as_deref(), unverified.alg)
            .map_err(|miss| match miss {
                KeyMiss::UnknownKid => Outcome::UnknownKey,
                KeyMiss::WrongAlgorithm => Outcome::BadSignature,
            })?;
        if !key.verify(unverified.signing_input, &unverified.signature) {
            return Err(Outcome::BadSignature);
        }
        let claims = unverified.claims().map_err(|_| Outcome::Malformed)?;
        if claims.iss.as_deref() != Some(&*self.issuer) {
            return Err(Outcome::WrongIssuer);
        }
        let exp = claims.exp.ok_or(Outcome::Malformed)?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(Outcome::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
            || claims
                .iat
                .is_some_and(|iat| iat > now.saturating_add(self.leeway))
        {
            return Err(Outcome::NotYetValid);
        }
        Ok(Principal {
            sub: claims.sub.map(Into::into),
            client_id: claims.client_id.map(Into::into),
            audiences: claims.aud.into_iter().map(Into::into).collect(),
            scopes: claims.scopes,
            exp,
            jti: claims.jti.map(Into::into),
        })
    }
}

/// Whether the cache answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
}

/// Token validation with the moka cache in front: the signature is checked once per
/// token, not once per request.
pub struct Authenticator {
    validator: Validator,
    cache: TokenCache,
}

impl Authenticator {
    pub fn new(validator: Validator, cache: TokenCache) -> Self {
        Self { validator, cache }
    }

    pub fn authenticate(
        &self,
        token: &str,
        now: i64,
    ) -> (Result<Arc<Principal>, Outcome>, CacheUse) {
        let key = token_key(token);
        if let Some(p) = self.cache.get(&key, now) {
            return (Ok(p), CacheUse::Hit);
        }
        let result = self.validator.validate(token, now).map(|p| {
            let p = Arc::new(p);
            if p.exp > now {
                self.cache.insert(key, p.clone());
            }
            p
        });
        (result, CacheUse::Miss)
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }
}

/// Why a validated token may still not call this operation.
#[derive(Debug, PartialEq, Eq)]
pub enum Denial<'a> {
    WrongAudience,
    InsufficientScope { required: &'a str },
}

/// Audience and scope checks for one API operation.
pub fn authorize<'a>(
    principal: &Principal,
    audience: &str,
    rules: &'a [Rule],
    method: &Method,
    path: &str,
) -> Result<(), Denial<'a>> {
    if !principal.audiences.iter().any(|a| &**a == audience) {
        return Err(Denial::WrongAudience);
    }
    match scope::decide(rules, method, path, &principal.scopes) {
        ScopeDecision::Allowed => Ok(()),
        ScopeDecision::Insufficient { required } => Err(Denial::InsufficientScope { required }),
    }
}

/// The RFC 6750 §3 challenge for a refused request: status and `WWW-Authenticate` value.
pub fn challenge(outcome: Outcome, required_scope: Option<&str>) -> (u16, String) {
    const REALM: &str = "Bearer realm=\"tollgate\"";
    match outcome {
        Outcome::Ok | Outcome::Missing => (401, REALM.to_string()),
        Outcome::InsufficientScope => (
            403,
            format!(
                "{REALM}, error=\"insufficient_scope\", error_description=\"{}\", scope=\"{}\"",
                outcome.description(),
                required_scope.unwrap_or_default()
            ),
        ),
        _ => (
            401,
            format!(
                "{REALM}, error=\"invalid_token\", error_description=\"{}\"",
                outcome.description()
            ),
        ),
    }
}

#[cfg(test)]
mod tests;
