//! Request-side authentication: take the bearer token from the request, validate it
//! (cache first; on a miss, the signature of a JWT or the store record of an opaque token),
//! refuse revoked ones, then check audience, ACL and scope rules. Plain functions over plain
//! types; the proxy turns a refusal into an RFC 6750 response.

pub mod bearer;
pub mod cache;
pub mod identity;
pub mod phantom;
pub mod ratelimit;
pub mod refusal;
pub mod revocations;

use crate::domain::cnf::Confirmation;
use crate::domain::oauth::{TokenKind, WayIn};
use crate::domain::outcome::Outcome;
use crate::domain::scope::{self, Rule, ScopeDecision, Scopes};
use crate::idp::{ExternalToken, Issuers, Rejection};
use crate::jwt;
use crate::keys::{KeyMiss, KeyRing};
use crate::opaque;
use crate::store::{RevocationSubject, Store, TokenRecord, digest};
use cache::TokenCache;
use compact_str::CompactString;
use http::Method;
use identity::{ClaimPlan, IdentityValues, Who};
use revocations::Revocations;
use std::sync::Arc;

/// How an external issuer's refusal is counted.
impl From<Rejection> for Outcome {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Malformed | Rejection::MissingExpiry | Rejection::MissingSubject => {
                Outcome::Malformed
            }
            Rejection::BadSignature | Rejection::AlgorithmNotAllowed => Outcome::BadSignature,
            Rejection::UnknownKey | Rejection::NoKeysYet => Outcome::UnknownKey,
            Rejection::WrongType => Outcome::WrongType,
            Rejection::UnknownIssuer | Rejection::WrongIssuer => Outcome::WrongIssuer,
            Rejection::Expired => Outcome::Expired,
            Rejection::NotYetValid => Outcome::NotYetValid,
            Rejection::WrongAudience => Outcome::WrongAudience,
        }
    }
}

/// Who holds a token and what it may do. Every token a client (or a user through it) is
/// issued with the same scopes and audiences says the same here, so the cache keeps one
/// copy for all of them ([`Holders`]).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Holder {
    /// The external issuer (its configured name) of a token it signed; `None` for the
    /// gateway's own tokens and API keys.
    pub issuer: Option<Box<str>>,
    pub sub: Option<Box<str>>,
    pub client_id: Option<Box<str>>,
    pub username: Option<Box<str>>,
    pub audiences: Box<[Box<str>]>,
    pub scopes: Scopes,
    /// What the upstream is told about it.
    pub identity: IdentityValues,
}

/// What a valid token says: its holder, shared, and what is the token's own. Cheap to
/// clone (one reference count and a copy); identifiers up to 24 bytes, like the ones this
/// gateway mints, are held inline.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub holder: Arc<Holder>,
    /// Expiry, seconds since the epoch; `i64::MAX` for immortal tokens.
    pub exp: i64,
    pub iat: Option<i64>,
    pub jti: Option<CompactString>,
    pub grant_id: Option<CompactString>,
    /// What the token is bound to: a DPoP key or a client certificate.
    pub cnf: Option<Confirmation>,
    /// For a DPoP-bound token, the `ath` its proofs must carry: hashed once, when the
    /// token is validated, not on every request.
    pub ath: Option<Arc<str>>,
}

impl std::ops::Deref for Principal {
    type Target = Holder;

    fn deref(&self) -> &Holder {
        &self.holder
    }
}

impl Principal {
    /// What a revocation may name of this token.
    pub fn revocation_subject(&self) -> RevocationSubject<'_> {
        RevocationSubject {
            jti: self.jti.as_deref(),
            grant: self.grant_id.as_deref(),
            client_id: self.client_id.as_deref(),
            username: self.username.as_deref(),
            iat: self.iat,
        }
    }

    /// The principal of an external issuer's validated token. It carries no `jti` or grant:
    /// the gateway's revocations name only its own tokens.
    pub fn from_external(t: ExternalToken, plan: &ClaimPlan) -> Self {
        let cnf = t.claims.get("cnf").and_then(|c| {
            let c = c.as_object()?;
            c.iter()
                .find_map(|(m, v)| Confirmation::from_member(m, v.as_str()?))
        });
        let identity = IdentityValues::new(
            Who {
                way_in: WayIn::External,
                subject: Some(&t.subject),
                client_id: t.client_id.as_deref(),
                scopes: &t.scopes,
                issuer: Some(&t.issuer_name),
                credential: None,
            },
            Some(&t.claims),
            plan,
        );
        Self {
            holder: Arc::new(Holder {
                issuer: Some(t.issuer_name.as_ref().into()),
                sub: Some(t.subject.into()),
                client_id: t.client_id.map(Into::into),
                username: None,
                audiences: t.audiences.into_iter().map(Into::into).collect(),
                scopes: t.scopes,
                identity,
            }),
            exp: t.exp,
            iat: t.iat,
            jti: None,
            grant_id: None,
            cnf,
            ath: None,
        }
    }

    /// The principal an opaque access token's record describes.
    pub fn from_record(r: &TokenRecord, plan: &ClaimPlan) -> Self {
        let sub = r.username.as_deref().unwrap_or(&r.client_id);
        let scopes = Scopes::from_space_separated(&r.scope);
        // The claims an opaque token would carry as a JWT, for the plan's paths.
        let claims = (!plan.paths.is_empty()).then(|| {
            serde_json::json!({
                "sub": sub,
                "client_id": r.client_id.as_str(),
                "username": r.username,
                "scope": r.scope,
                "aud": r.audiences,
            })
        });
        let identity = IdentityValues::new(
            Who {
                way_in: WayIn::Opaque,
                subject: Some(sub),
                client_id: Some(&r.client_id),
                scopes: &scopes,
                issuer: None,
                credential: None,
            },
            claims.as_ref(),
            plan,
        );
        Self {
            holder: Arc::new(Holder {
                issuer: None,
                sub: Some(sub.into()),
                client_id: Some(r.client_id.as_str().into()),
                username: r.username.as_deref().map(Into::into),
                audiences: r.audiences.iter().map(|a| a.as_str().into()).collect(),
                scopes,
                identity,
            }),
            exp: r.expires_at.unwrap_or(i64::MAX),
            iat: Some(r.issued_at),
            jti: Some(CompactString::new(&r.jti)),
            grant_id: Some(CompactString::new(&r.grant_id)),
            cnf: r.cnf,
            ath: None,
        }
    }
}

/// One shared [`Holder`] per distinct holder among the cached tokens: a million cached
/// tokens of a hundred clients hold a hundred holders, not a million. Bounded; a holder
/// that falls out is only shared less, never wrong (equality is checked, not the hash).
pub struct Holders {
    by_hash: moka::sync::Cache<u64, Arc<Holder>>,
    hasher: std::hash::RandomState,
}

impl Holders {
    pub fn new(capacity: u64) -> Self {
        Self {
            by_hash: moka::sync::Cache::new(capacity),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The shared copy of `holder`, which becomes the shared copy when there is none.
    pub fn intern(&self, holder: Arc<Holder>) -> Arc<Holder> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(&*holder);
        match self.by_hash.get(&hash) {
            Some(shared) if *shared == *holder => shared,
            Some(_) => holder,
            None => {
                self.by_hash.insert(hash, holder.clone());
                holder
            }
        }
    }
}

/// Signature and registered-claim checks against the gateway's key set.
pub struct Validator {
    keys: Arc<KeyRing>,
    issuer: Box<str>,
    leeway: i64,
}

impl Validator {
    pub fn new(keys: Arc<KeyRing>, issuer: &str, leeway: std::time::Duration) -> Self {
        Self {
            keys,
            issuer: issuer.into(),
            leeway: leeway.as_secs() as i64,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    pub fn leeway(&self) -> i64 {
        self.leeway
    }

    /// The claims of a JWT signed by one of the gateway's keys for its issuer, whatever
    /// its times (revocation looks at expired tokens too).
    pub fn signed_claims(&self, token: &str) -> Result<jwt::Claims, Outcome> {
        self.signed(token).map(|(claims, _)| claims)
    }

    /// The claims and the `typ` header of a JWT signed by one of the gateway's keys.
    fn signed(&self, token: &str) -> Result<(jwt::Claims, Option<String>), Outcome> {
        self.signed_with(token, false)
            .map(|(claims, typ, _)| (claims, typ))
    }

    /// As [`Self::signed`], with the claims as JSON too when `as_json` (for claims read by
    /// path).
    #[allow(clippy::type_complexity)]
    fn signed_with(
        &self,
        token: &str,
        as_json: bool,
    ) -> Result<(jwt::Claims, Option<String>, Option<serde_json::Value>), Outcome> {
        let unverified = jwt::parse(token).map_err(|_| Outcome::Malformed)?;
        let keys = self.keys.get();
        let key = keys
            .find(unverified.kid.as_deref(), unverified.alg)
            .map_err(|miss| match miss {
                KeyMiss::UnknownKid => Outcome::UnknownKey,
                KeyMiss::WrongAlgorithm => Outcome::BadSignature,
            })?;
        if !key.verify(unverified.signing_input, &unverified.signature) {
            return Err(Outcome::BadSignature);
        }
        let (claims, json) = if as_json {
            let (c, v) = unverified
                .claims_and_value()
                .map_err(|_| Outcome::Malformed)?;
            (c, Some(v))
        } else {
            (unverified.claims().map_err(|_| Outcome::Malformed)?, None)
        };
        if claims.iss.as_deref() != Some(&*self.issuer) {
            return Err(Outcome::WrongIssuer);
        }
        Ok((claims, unverified.typ, json))
    }

    /// Fully validate a JWT at time `now` (seconds since the epoch). A token without `exp`
    /// is an immortal token of this gateway.
    pub fn validate(&self, token: &str, now: i64, plan: &ClaimPlan) -> Result<Principal, Outcome> {
        let (claims, typ, json) = self.signed_with(token, !plan.paths.is_empty())?;
        // RFC 9068 §4: an access token says so (`at+jwt`). Tokens signed before tollgate set
        // it say `JWT`, and are told apart from its ID tokens by the grant id they carry.
        let access = match typ.as_deref() {
            Some(t) if jwt::typ_is(t, "at+jwt") => true,
            Some(t) if jwt::typ_is(t, "jwt") => claims.gid.is_some(),
            None => claims.gid.is_some(),
            Some(_) => false,
        };
        if !access {
            return Err(Outcome::WrongType);
        }
        if claims
            .exp
            .is_some_and(|exp| now >= exp.saturating_add(self.leeway))
        {
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
        let identity = IdentityValues::new(
            Who {
                way_in: WayIn::Jwt,
                subject: claims.sub.as_deref(),
                client_id: claims.client_id.as_deref(),
                scopes: &claims.scopes,
                issuer: None,
                credential: None,
            },
            json.as_ref(),
            plan,
        );
        Ok(Principal {
            holder: Arc::new(Holder {
                issuer: None,
                sub: claims.sub.map(Into::into),
                client_id: claims.client_id.map(Into::into),
                username: claims.username.map(Into::into),
                audiences: claims.aud.into_iter().map(Into::into).collect(),
                scopes: claims.scopes,
                identity,
            }),
            exp: claims.exp.unwrap_or(i64::MAX),
            iat: claims.iat,
            jti: claims.jti.map(CompactString::new),
            grant_id: claims.gid.map(CompactString::new),
            cnf: claims.cnf,
            ath: None,
        })
    }
}

/// What a credential check needs besides the credential: the time, the external issuers
/// and the claim plan of the running catalog.
pub struct CheckContext<'a> {
    pub now: i64,
    pub issuers: &'a Issuers,
    pub plan: &'a ClaimPlan,
}

impl CheckContext<'static> {
    /// The gateway's own tokens only, and no claims read by path.
    pub fn own_tokens(now: i64) -> Self {
        static NO_ISSUERS: std::sync::LazyLock<Issuers> = std::sync::LazyLock::new(Issuers::none);
        static NO_CLAIMS: std::sync::LazyLock<ClaimPlan> =
            std::sync::LazyLock::new(ClaimPlan::none);
        CheckContext {
            now,
            issuers: &NO_ISSUERS,
            plan: &NO_CLAIMS,
        }
    }
}

/// The result of a token check, whether the cache answered, and the token's cache key
/// (what is kept beside the token, such as its phantom, is found by it).
pub struct Checked {
    pub result: Result<Principal, Outcome>,
    pub cache: CacheUse,
    pub key: cache::TokenKey,
}

/// Whether the cache answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
    /// Not a cache question: the token was refused before (see
    /// [`Authenticator::authenticate_checked`]).
    Skipped,
}

/// How many distinct holders [`Holders`] shares at most.
const HOLDERS: u64 = 65_536;

/// Token validation with the moka cache in front: a JWT's signature, or an opaque token's
/// store record, is checked once per token, not once per request. Revocations are checked
/// on every request.
pub struct Authenticator {
    validator: Validator,
    cache: TokenCache,
    holders: Holders,
    store: Arc<dyn Store>,
    revocations: Arc<Revocations>,
}

impl Authenticator {
    /// Tokens held by the validation cache (for `tollgate_cache_entries`).
    pub fn cached_tokens(&self) -> u64 {
        self.cache.entry_count()
    }

    pub fn new(
        validator: Validator,
        cache: TokenCache,
        store: Arc<dyn Store>,
        revocations: Arc<Revocations>,
    ) -> Self {
        Self {
            validator,
            holders: Holders::new(HOLDERS),
            cache,
            store,
            revocations,
        }
    }

    pub async fn authenticate(&self, token: &str, ctx: &CheckContext<'_>) -> Checked {
        self.authenticate_checked(token, ctx, |_| true).await
    }

    /// As [`Self::authenticate`], for a token whose syntax `well_formed` judges on a cache
    /// miss only: a cached token passed it when it was verified (only verified tokens are
    /// cached, under a keyed 128-bit hash of the token), so a hit skips the check. A token
    /// that fails it is `Malformed`, and `CacheUse::Skipped`.
    pub async fn authenticate_checked(
        &self,
        token: &str,
        ctx: &CheckContext<'_>,
        well_formed: fn(&str) -> bool,
    ) -> Checked {
        let now = ctx.now;
        let key = self.cache.key(token);
        let (result, used) = match self.cache.get(&key, now) {
            // A holder made under another claim plan (the configuration changed) is made
            // again: the token is checked as on a miss.
            Some(p) if p.holder.identity.plan == ctx.plan.id => (Ok(p), CacheUse::Hit),
            _ if !well_formed(token) => {
                return Checked {
                    result: Err(Outcome::Malformed),
                    cache: CacheUse::Skipped,
                    key,
                };
            }
            _ => {
                // The misses are boxed: their state (a store read, an issuer's key fetch)
                // would otherwise sit in the future of every request, hits included,
                // and be copied with it.
                let result = match opaque::kind_of(token) {
                    Some(opaque::Kind::Access) => Box::pin(self.opaque(token, ctx)).await,
                    // A refresh token is not an access token.
                    Some(opaque::Kind::Refresh) => Err(Outcome::Malformed),
                    None => Box::pin(self.jwt(token, ctx)).await,
                };
                let result = result.map(|mut p| {
                    if matches!(p.cnf, Some(Confirmation::Jkt(_))) {
                        p.ath = Some(crate::domain::cnf::token_hash(token).into());
                    }
                    if p.exp > now {
                        p.holder = self.holders.intern(p.holder);
                        self.cache.insert(key, p.clone());
                    }
                    p
                });
                (result, CacheUse::Miss)
            }
        };
        let result = result.and_then(|p| {
            if self.revocations.is_revoked(p.revocation_subject()) {
                Err(Outcome::Revoked)
            } else {
                Ok(p)
            }
        });
        Checked {
            result,
            cache: used,
            key,
        }
    }

    /// A JWT of the gateway, or of the external issuer its `iss` names.
    async fn jwt(&self, token: &str, ctx: &CheckContext<'_>) -> Result<Principal, Outcome> {
        if !ctx.issuers.is_empty()
            && let Some(iss) = crate::idp::peek_issuer(token)
            && iss != self.validator.issuer()
        {
            let issuer = ctx.issuers.for_iss(&iss).ok_or(Outcome::WrongIssuer)?;
            return issuer
                .verify(token, ctx.now)
                .await
                .map(|t| Principal::from_external(t, ctx.plan))
                .map_err(Outcome::from);
        }
        self.validator.validate(token, ctx.now, ctx.plan)
    }

    async fn opaque(&self, token: &str, ctx: &CheckContext<'_>) -> Result<Principal, Outcome> {
        let now = ctx.now;
        let record = self
            .store
            .get(&digest(token))
            .await
            .map_err(|_| Outcome::StoreUnavailable)?
            .ok_or(Outcome::UnknownToken)?;
        if record.kind != TokenKind::Access {
            return Err(Outcome::Malformed);
        }
        if record.revoked {
            return Err(Outcome::Revoked);
        }
        if record.expires_at.is_some_and(|e| now >= e) {
            return Err(Outcome::Expired);
        }
        Ok(Principal::from_record(&record, ctx.plan))
    }

    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    pub fn revocations(&self) -> &Revocations {
        &self.revocations
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
) -> Result<Option<usize>, Denial<'a>> {
    if !principal.audiences.iter().any(|a| &**a == audience) {
        return Err(Denial::WrongAudience);
    }
    allowed_by_rules(principal, rules, method, path)
}

/// The scope rules for a set of scopes (an API key's credential roles): the rule that
/// decided, or the scopes it needs.
pub fn scope_rule<'a>(
    scopes: &Scopes,
    rules: &'a [Rule],
    method: &Method,
    path: &str,
) -> Result<Option<usize>, &'a str> {
    match scope::decide(rules, method, path, scopes) {
        ScopeDecision::Allowed { rule } => Ok(rule),
        ScopeDecision::Insufficient { required } => Err(required),
    }
}

/// The scope rules alone (no audience: external tokens and API keys are checked against
/// their issuer or credential instead); the index of the rule that decided.
pub fn allowed_by_rules<'a>(
    principal: &Principal,
    rules: &'a [Rule],
    method: &Method,
    path: &str,
) -> Result<Option<usize>, Denial<'a>> {
    match scope::decide(rules, method, path, &principal.scopes) {
        ScopeDecision::Allowed { rule } => Ok(rule),
        ScopeDecision::Insufficient { required } => Err(Denial::InsufficientScope { required }),
    }
}

#[cfg(test)]
mod tests;
