//! Phantom tokens: what an API configured with `credential: phantom` receives instead of
//! the caller's credential — a short-lived JWT the gateway signs for that API (`aud`), with
//! the caller's identity, typed `internal+jwt` so the gateway never accepts one itself.
//! One is minted per credential and API and kept (made again shortly before it expires),
//! not signed per request; it never outlives the credential it stands for. A revoked
//! credential is refused before its phantom is looked up, so the phantom is never sent
//! again.

use super::cache::FoldKey;
use super::identity::{ClaimPlan, IdentityValues};
use crate::domain::clock::unix_now_ms;
use crate::keys::{KeyRing, TokenTyp};
use foldhash::fast::FixedState;
use http::HeaderValue;
use serde_json::{Map, Value};
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::Arc;
use std::time::Duration;

/// A minted phantom token and what it was minted for.
struct Minted {
    /// `Bearer <jwt>`.
    authorization: HeaderValue,
    audience: Box<str>,
    /// Made again from then on.
    renew_at: i64,
}

/// What a phantom token says, besides its audience.
pub struct Subject<'a> {
    pub identity: &'a IdentityValues,
    /// When the credential itself expires (`None`: an API key, which does not).
    pub exp: Option<i64>,
}

pub struct Phantoms {
    keys: Arc<KeyRing>,
    issuer: Box<str>,
    lifetime: Duration,
    /// By (credential, audience). Both halves are already unpredictable hashes (a keyed
    /// token hash or a key digest, and a seeded hash): folded, not hashed again.
    minted: moka::sync::Cache<(u128, u64), Arc<Minted>, BuildHasherDefault<FoldKey>>,
    audience_hash: FixedState,
}

/// How many phantom tokens are kept at most.
const KEPT: u64 = 100_000;

impl Phantoms {
    pub fn new(keys: Arc<KeyRing>, issuer: &str, lifetime: Duration) -> Self {
        Self {
            keys,
            issuer: issuer.into(),
            lifetime,
            minted: moka::sync::Cache::builder()
                .max_capacity(KEPT)
                .time_to_live(lifetime)
                .build_with_hasher(BuildHasherDefault::default()),
            audience_hash: FixedState::default(),
        }
    }

    /// The `Authorization` value of the phantom token for `credential` (a token's cache key,
    /// or an API key's) at the API of `audience`; `None` when none can be signed (the
    /// request is then refused rather than sent with the client's credential).
    pub fn authorization(
        &self,
        credential: u128,
        audience: &str,
        subject: &Subject<'_>,
        plan: &ClaimPlan,
        now: i64,
    ) -> Option<HeaderValue> {
        let key = (credential, self.audience_hash.hash_one(audience));
        if let Some(m) = self.minted.get(&key)
            && *m.audience == *audience
            && now < m.renew_at
        {
            return Some(m.authorization.clone());
        }
        let minted = self.mint(audience, subject, plan, now)?;
        let value = minted.authorization.clone();
        self.minted.insert(key, Arc::new(minted));
        Some(value)
    }

    fn mint(
        &self,
        audience: &str,
        subject: &Subject<'_>,
        plan: &ClaimPlan,
        now: i64,
    ) -> Option<Minted> {
        let cap = now.saturating_add(i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX));
        let exp = subject.exp.map_or(cap, |e| e.min(cap));
        if exp <= now {
            return None;
        }
        let claims = claims(&self.issuer, audience, subject, plan, now, exp)?;
        let json = serde_json::to_vec(&claims).ok()?;
        let jwt = self
            .keys
            .get()
            .signing()
            .sign_typed(&json, TokenTyp::Internal)
            .ok()?;
        let authorization = HeaderValue::try_from(format!("Bearer {jwt}")).ok()?;
        // Made again once four fifths of its life are gone, so an upstream never gets one
        // about to expire.
        let renew_at = now.saturating_add((exp - now) * 4 / 5).max(now + 1);
        Some(Minted {
            authorization,
            audience: audience.into(),
            renew_at: renew_at.min(exp),
        })
    }
}

/// The claims of a phantom token: the registered ones, the caller's identity, and the
/// claims the configuration names, at their paths.
fn claims(
    issuer: &str,
    audience: &str,
    subject: &Subject<'_>,
    plan: &ClaimPlan,
    now: i64,
    exp: i64,
) -> Option<Map<String, Value>> {
    let id = subject.identity;
    let text = |v: &Option<HeaderValue>| {
        v.as_ref()
            .and_then(|h| h.to_str().ok())
            .map(|s| Value::String(s.to_string()))
    };
    let mut c = Map::new();
    // Configured claims first: the registered and identity claims below win over any of
    // the same name.
    for (path, value) in plan.paths.iter().zip(id.claims.iter()) {
        if let Some(v) = value
            && let Ok(json) = serde_json::from_str::<Value>(&v.json)
        {
            insert_at(&mut c, path.segments(), json);
        }
    }
    c.insert("iss".into(), issuer.into());
    c.insert("aud".into(), audience.into());
    c.insert("iat".into(), now.into());
    c.insert("exp".into(), exp.into());
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).ok()?;
    let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
    c.insert("jti".into(), format!("{jti}{:x}", unix_now_ms()).into());
    for (name, v) in [
        ("sub", &id.subject),
        ("client_id", &id.client_id),
        ("scope", &id.scope),
        ("auth_issuer", &id.issuer),
        ("auth_credential", &id.credential),
    ] {
        if let Some(v) = text(v) {
            c.insert(name.into(), v);
        }
    }
    c.insert("auth_method".into(), id.way_in.as_str().into());
    Some(c)
}

/// `value` at `segments` in `map`, making the objects on the way.
fn insert_at(map: &mut Map<String, Value>, segments: &[Box<str>], value: Value) {
    let Some((last, path)) = segments.split_last() else {
        return;
    };
    let mut here = map;
    for s in path {
        let next = here
            .entry(s.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(m) = next else {
            return;
        };
        here = m;
    }
    here.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity::Who;
    use crate::domain::claim::ClaimPath;
    use crate::domain::oauth::WayIn;
    use crate::domain::scope::Scopes;
    use serde_json::json;

    fn identity(plan: &ClaimPlan) -> IdentityValues {
        IdentityValues::new(
            Who {
                way_in: WayIn::Opaque,
                subject: Some("alice"),
                client_id: Some("app"),
                scopes: &Scopes::from_space_separated("read"),
                issuer: None,
                credential: None,
            },
            Some(&json!({"realm_access": {"roles": ["a", "b"]}})),
            plan,
        )
    }

    #[test]
    fn claims_carry_the_identity_and_the_planned_claims_at_their_paths() {
        let plan = ClaimPlan::new(vec![ClaimPath::parse("realm_access.roles").unwrap()], ",");
        let id = identity(&plan);
        let c = claims(
            "https://gw",
            "orders",
            &Subject {
                identity: &id,
                exp: Some(2_000),
            },
            &plan,
            1_000,
            1_300,
        )
        .unwrap();
        assert_eq!(c["iss"], "https://gw");
        assert_eq!(c["aud"], "orders");
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["client_id"], "app");
        assert_eq!(c["scope"], "read");
        assert_eq!(c["auth_method"], "opaque");
        assert_eq!(c["exp"], 1_300);
        assert_eq!(c["realm_access"]["roles"], json!(["a", "b"]));
        assert!(c.get("auth_issuer").is_none());
    }
}
