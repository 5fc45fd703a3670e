//! What a validated credential says about its holder, ready for the upstream: the values
//! of the identity headers, made once when the credential is validated (they are cached
//! with it), never per request; and the claims the configuration names, read by path.

use crate::config::{IdentityConfig, IdentitySettings};
use crate::domain::claim::ClaimPath;
use crate::domain::oauth::WayIn;
use crate::domain::scope::Scopes;
use http::HeaderValue;
use serde_json::Value;
use std::hash::{Hash, Hasher};

/// The claim paths any API's identity headers name, in one order, and how array claims
/// are joined. Its `id` changes when they do: a holder made under another plan is made
/// again rather than served with the wrong claims.
#[derive(Debug)]
pub struct ClaimPlan {
    pub id: u64,
    pub paths: Box<[ClaimPath]>,
    pub separator: Box<str>,
}

impl ClaimPlan {
    pub fn new(paths: Vec<ClaimPath>, separator: &str) -> Self {
        // Equal plans get equal ids, across reloads too: cached holders stay valid.
        let mut h = std::hash::DefaultHasher::new();
        for p in &paths {
            p.as_str().hash(&mut h);
        }
        separator.hash(&mut h);
        Self {
            id: h.finish(),
            paths: paths.into(),
            separator: separator.into(),
        }
    }

    /// No claims named: nothing to read from a token beyond its registered claims.
    pub fn none() -> Self {
        Self::new(Vec::new(), ",")
    }

    /// The position of `path` in the plan.
    pub fn index_of(&self, path: &ClaimPath) -> Option<usize> {
        self.paths.iter().position(|p| p == path)
    }
}

/// A claim's value: as a header (arrays joined) and as JSON (for a phantom token).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimValue {
    pub header: HeaderValue,
    pub json: Box<str>,
}

/// The identity header values of one holder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentityValues {
    pub way_in: WayIn,
    pub subject: Option<HeaderValue>,
    pub client_id: Option<HeaderValue>,
    pub scope: Option<HeaderValue>,
    /// The external issuer's name.
    pub issuer: Option<HeaderValue>,
    /// The API key's name.
    pub credential: Option<HeaderValue>,
    /// The plan's claims, in its order (`None`: absent, or not sendable as a header).
    pub claims: Box<[Option<ClaimValue>]>,
    /// The plan `claims` follows.
    pub plan: u64,
}

/// Who a credential names, for [`IdentityValues::new`].
pub struct Who<'a> {
    pub way_in: WayIn,
    pub subject: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub scopes: &'a Scopes,
    pub issuer: Option<&'a str>,
    pub credential: Option<&'a str>,
}

impl IdentityValues {
    /// The values for `who`, with the plan's claims read from `claims` (when the
    /// credential has any).
    pub fn new(who: Who<'_>, claims: Option<&Value>, plan: &ClaimPlan) -> Self {
        let value = |s: Option<&str>| s.and_then(|s| HeaderValue::from_str(s).ok());
        let scope = (!who.scopes.is_empty())
            .then(|| who.scopes.to_space_separated())
            .and_then(|s| HeaderValue::try_from(s).ok());
        Self {
            way_in: who.way_in,
            subject: value(who.subject),
            client_id: value(who.client_id),
            scope,
            issuer: value(who.issuer),
            credential: value(who.credential),
            claims: plan
                .paths
                .iter()
                .map(|p| claims.and_then(|c| claim_value(p, c, &plan.separator)))
                .collect(),
            plan: plan.id,
        }
    }
}

/// A claim as a header value: a string as it is, a number or boolean as written, the
/// items of an array joined by `separator` (nested arrays and objects as JSON); `None` when
/// absent, null, or not a valid header value.
fn claim_value(path: &ClaimPath, claims: &Value, separator: &str) -> Option<ClaimValue> {
    let v = path.lookup(claims)?;
    let text = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(separator),
        other => other.to_string(),
    };
    Some(ClaimValue {
        header: HeaderValue::try_from(text).ok()?,
        json: v.to_string().into(),
    })
}

/// The identity headers a client might forge: every configured name (of any API, or the
/// gateway's defaults) and the configured prefixes. Removed from every proxied request.
pub struct SpoofGuard {
    /// The configured names no prefix covers (none, with the defaults: every built-in
    /// name starts with `x-auth-`), so that a request's header names are each compared
    /// with the prefixes and these only.
    names: Box<[http::HeaderName]>,
    prefixes: Box<[Box<str>]>,
}

impl SpoofGuard {
    pub fn new<'a>(
        settings: &'a IdentitySettings,
        apis: impl Iterator<Item = &'a IdentityConfig>,
    ) -> Self {
        let mut names: Vec<http::HeaderName> = Vec::new();
        for identity in std::iter::once(&settings.defaults).chain(apis) {
            for n in identity
                .headers
                .names()
                .chain(identity.claims.iter().map(|(n, _)| n))
            {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        let prefixes: Box<[Box<str>]> = settings
            .remove_prefixes
            .iter()
            .map(|p| p.as_str().into())
            .collect();
        names.retain(|n| !prefixes.iter().any(|p| n.as_str().starts_with(&**p)));
        Self {
            names: names.into(),
            prefixes,
        }
    }

    /// Whether a client's header of this name is to be removed.
    pub fn forbids(&self, name: &http::HeaderName) -> bool {
        let text = name.as_str();
        self.prefixes.iter().any(|p| text.starts_with(&**p)) || self.names.contains(name)
    }
}

impl Default for SpoofGuard {
    /// What an empty configuration removes: the built-in identity headers and prefix.
    fn default() -> Self {
        Self::new(&IdentitySettings::default(), std::iter::empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(paths: &[&str]) -> ClaimPlan {
        ClaimPlan::new(
            paths.iter().map(|p| ClaimPath::parse(p).unwrap()).collect(),
            ",",
        )
    }

    #[test]
    fn values_are_made_from_the_holder_and_the_planned_claims() {
        let p = plan(&["realm_access.roles", "tenant.id", "missing", "bad"]);
        let claims = json!({
            "realm_access": {"roles": ["admin", "ops"]},
            "tenant": {"id": 42},
            "bad": "line\nbreak",
        });
        let scopes = Scopes::from_space_separated("a b");
        let v = IdentityValues::new(
            Who {
                way_in: WayIn::External,
                subject: Some("alice"),
                client_id: Some("app"),
                scopes: &scopes,
                issuer: Some("kc"),
                credential: None,
            },
            Some(&claims),
            &p,
        );
        assert_eq!(v.subject.as_ref().unwrap(), "alice");
        assert_eq!(v.scope.as_ref().unwrap(), "a b");
        assert_eq!(v.issuer.as_ref().unwrap(), "kc");
        assert!(v.credential.is_none());
        let c = |i: usize| v.claims[i].as_ref();
        assert_eq!(c(0).unwrap().header, "admin,ops");
        assert_eq!(&*c(0).unwrap().json, r#"["admin","ops"]"#);
        assert_eq!(c(1).unwrap().header, "42");
        assert!(c(2).is_none());
        // A value that cannot be a header is left out, never sent broken.
        assert!(c(3).is_none());
        assert_eq!(v.plan, p.id);
    }

    #[test]
    fn the_guard_forbids_configured_names_and_prefixes_and_compares_each_once() {
        let guard = SpoofGuard::default();
        let h = http::HeaderName::from_static;
        for forged in ["x-auth-subject", "x-auth-scope", "x-auth-anything"] {
            assert!(guard.forbids(&h(forged)), "{forged}");
        }
        for kept in ["accept", "x-request-id", "x-authority"] {
            assert!(!guard.forbids(&h(kept)), "{kept}");
        }
        // Every built-in name is under the built-in prefix: no name is compared one by one.
        assert!(guard.names.is_empty());

        let mut settings = IdentitySettings::default();
        settings.defaults.headers.subject = Some(h("x-user"));
        settings.defaults.claims = vec![(h("x-auth-tenant"), ClaimPath::parse("t").unwrap())];
        let guard = SpoofGuard::new(&settings, std::iter::empty());
        assert!(guard.forbids(&h("x-user")));
        assert!(guard.forbids(&h("x-auth-tenant")));
        assert!(!guard.forbids(&h("x-username")));
        assert_eq!(&*guard.names, &[h("x-user")]);
        settings.remove_prefixes.clear();
        let guard = SpoofGuard::new(&settings, std::iter::empty());
        assert!(guard.forbids(&h("x-auth-tenant")));
        assert!(guard.forbids(&h("x-auth-scope")));
        assert!(!guard.forbids(&h("x-auth-anything")));
    }

    #[test]
    fn equal_plans_have_equal_ids() {
        assert_eq!(plan(&["a", "b.c"]).id, plan(&["a", "b.c"]).id);
        assert_ne!(plan(&["a"]).id, plan(&["b"]).id);
        assert_ne!(
            plan(&["a"]).id,
            ClaimPlan::new(vec![ClaimPath::parse("a").unwrap()], ";").id
        );
    }
}
