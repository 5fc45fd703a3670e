//! The checks on an external token, in RFC 8725 order: strict parse, `alg` from the
//! issuer's allow-list, `typ`, the signature with a key of this issuer, then `iss`, `aud`,
//! the times, the subject and the scope mapping. Plain functions over plain types; the
//! refetch on a key miss is the caller's.

use super::jwks::{KeySet, Lookup};
use super::{ExternalToken, Rejection};
use crate::config::IssuerSettings;
use crate::domain::claim::{email_verified, string_claim};
use crate::domain::scope::Scopes;
use crate::jwt::{self, Unverified};
use std::sync::Arc;

/// Why no key of the issuer's current set verified the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyMiss {
    /// No key set has been fetched yet.
    NoKeys,
    /// No key has the token's `kid` (or, for a kid-less token, none verifies it).
    Unknown,
}

impl KeyMiss {
    pub(super) fn rejection(self) -> Rejection {
        match self {
            KeyMiss::NoKeys => Rejection::NoKeysYet,
            KeyMiss::Unknown => Rejection::UnknownKey,
        }
    }
}

/// A token that did not pass [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    Rejected(Rejection),
    /// A newer key set might verify it.
    Miss(KeyMiss),
}

impl Failure {
    /// The refusal, once no refetch is going to help.
    pub(super) fn rejection(self) -> Rejection {
        match self {
            Failure::Rejected(r) => r,
            Failure::Miss(m) => m.rejection(),
        }
    }
}

/// Parse the token and check what its header says against the issuer's settings.
pub(super) fn read_header<'t>(
    settings: &IssuerSettings,
    token: &'t str,
) -> Result<Unverified<'t>, Rejection> {
    let unverified = jwt::parse(token).map_err(|_| Rejection::Malformed)?;
    if !settings.algorithms.contains(&unverified.alg) {
        return Err(Rejection::AlgorithmNotAllowed);
    }
    if let Some(expected) = &settings.typ
        && !unverified
            .typ
            .as_deref()
            .is_some_and(|t| jwt::typ_is(t, expected))
    {
        return Err(Rejection::WrongType);
    }
    Ok(unverified)
}

/// Verify the signature with `keys` (this issuer's), then the claims.
pub(super) fn check(
    settings: &IssuerSettings,
    name: &Arc<str>,
    keys: Option<&KeySet>,
    unverified: &Unverified<'_>,
    now: i64,
) -> Result<ExternalToken, Failure> {
    let keys = keys.ok_or(Failure::Miss(KeyMiss::NoKeys))?;
    match keys.verify(
        unverified.kid.as_deref(),
        unverified.alg,
        unverified.signing_input,
        &unverified.signature,
    ) {
        Lookup::Verified => {}
        Lookup::BadSignature => return Err(Failure::Rejected(Rejection::BadSignature)),
        Lookup::Miss => return Err(Failure::Miss(KeyMiss::Unknown)),
    }
    claims(settings, name, unverified, now).map_err(Failure::Rejected)
}

/// The claim checks and mapping, for a token whose signature is verified.
fn claims(
    settings: &IssuerSettings,
    name: &Arc<str>,
    unverified: &Unverified<'_>,
    now: i64,
) -> Result<ExternalToken, Rejection> {
    let (c, value) = unverified
        .claims_and_value()
        .map_err(|_| Rejection::Malformed)?;
    if c.iss.as_deref() != Some(settings.issuer.as_str()) {
        return Err(Rejection::WrongIssuer);
    }
    if !c.aud.iter().any(|a| settings.audiences.contains(a)) {
        return Err(Rejection::WrongAudience);
    }
    let leeway = i64::try_from(settings.leeway.as_secs()).unwrap_or(i64::MAX);
    let exp = c.exp.ok_or(Rejection::MissingExpiry)?;
    if now >= exp.saturating_add(leeway) {
        return Err(Rejection::Expired);
    }
    let latest = now.saturating_add(leeway);
    if c.nbf.is_some_and(|nbf| nbf > latest) || c.iat.is_some_and(|iat| iat > latest) {
        return Err(Rejection::NotYetValid);
    }
    let subject = settings
        .subject_claim
        .string(&value)
        .ok_or(Rejection::MissingSubject)?
        .to_string();
    let scopes = match &settings.scope_claim {
        None => c.scopes,
        // Array items are taken whole: one with a space is no scope token (RFC 6749
        // §3.3), and splitting it could grant a scope its parts happen to spell.
        Some(path) => Scopes::from_list(
            path.strings(&value)
                .unwrap_or_default()
                .into_iter()
                .filter(|s| !s.contains(' ')),
        ),
    };
    Ok(ExternalToken {
        issuer_name: Arc::clone(name),
        subject,
        audiences: c.aud,
        scopes,
        exp,
        iat: c.iat,
        nbf: c.nbf,
        jti: c.jti,
        client_id: c.client_id,
        email: string_claim(&value, "email"),
        email_verified: email_verified(&value),
        claims: value,
    })
}
