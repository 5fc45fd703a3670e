//! One test per validation outcome, with real keys.

use super::*;
use crate::config::{CacheSettings, SigningKeySource, StoreSync, TokenSettings};
use crate::domain::jose::Algorithm;
use crate::domain::oauth::{Family, Format};
use crate::keys::{KeyRing, KeySet};
use crate::store::{Revocation, RevocationTarget};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use revocations::Revocations;
use serde_json::json;
use std::time::Duration;

const ISS: &str = "https://gw.example";
const NOW: i64 = 1_900_000_000;

fn keyset() -> Arc<KeyRing> {
    let settings = TokenSettings {
        signing_key: SigningKeySource::Generated {
            algorithm: Algorithm::ES256,
            kid: None,
        },
        verification_keys: vec![],
        leeway: Duration::from_secs(60),
        access_token_lifetime: Duration::from_secs(900),
        refresh_grace_period: Duration::from_secs(10),
        rotation: crate::config::RotationSettings {
            every: None,
            publish_ahead: Duration::from_secs(600),
        },
        jwks_max_age: Duration::from_secs(300),
        session_lifetime: Duration::from_secs(3600),
    };
    let der = crate::keys::generate_pkcs8(Algorithm::ES256).unwrap();
    Arc::new(KeyRing::from(KeySet::load(&settings, Some(&der)).unwrap()))
}

struct Fixture {
    keys: Arc<KeyRing>,
    validator: Validator,
}

fn fixture() -> Fixture {
    let keys = keyset();
    let validator = Validator::new(keys.clone(), ISS, Duration::from_secs(60));
    Fixture { keys, validator }
}

fn claims() -> serde_json::Value {
    json!({
        "iss": ISS, "sub": "client-1", "aud": ["orders"], "exp": NOW + 600,
        "iat": NOW, "nbf": NOW, "jti": "j1", "client_id": "client-1", "scope": "orders:read",
    })
}

fn sign(keys: &KeyRing, claims: &serde_json::Value) -> String {
    keys.get()
        .signing()
        .sign_compact(claims.to_string().as_bytes())
        .unwrap()
}

fn with(mut c: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    c[key] = value;
    c
}

#[test]
fn good_token_yields_its_principal() {
    let f = fixture();
    let p = f
        .validator
        .validate(&sign(&f.keys, &claims()), NOW, &ClaimPlan::none())
        .unwrap();
    assert_eq!(p.sub.as_deref(), Some("client-1"));
    assert_eq!(p.client_id.as_deref(), Some("client-1"));
    assert_eq!(&*p.audiences, &["orders".into()] as &[Box<str>]);
    assert!(p.scopes.contains("orders:read"));
    assert_eq!(p.exp, NOW + 600);
    assert_eq!(p.jti.as_deref(), Some("j1"));
}

#[test]
fn garbage_is_malformed() {
    let f = fixture();
    for t in ["garbage", "a.b.c", "e30.e30.e30"] {
        assert_eq!(
            f.validator.validate(t, NOW, &ClaimPlan::none()),
            Err(Outcome::Malformed),
            "{t}"
        );
    }
}

#[test]
fn alg_none_is_malformed() {
    let f = fixture();
    let h = B64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let c = B64.encode(claims().to_string());
    for t in [format!("{h}.{c}."), format!("{h}.{c}.AAAA")] {
        assert_eq!(
            f.validator.validate(&t, NOW, &ClaimPlan::none()),
            Err(Outcome::Malformed)
        );
    }
}

#[test]
fn tampered_claims_fail_the_signature() {
    let f = fixture();
    let good = sign(&f.keys, &claims());
    let (h, rest) = good.split_once('.').unwrap();
    let (_, s) = rest.split_once('.').unwrap();
    let forged = B64.encode(with(claims(), "scope", json!("orders:read admin")).to_string());
    let t = format!("{h}.{forged}.{s}");
    assert_eq!(
        f.validator.validate(&t, NOW, &ClaimPlan::none()),
        Err(Outcome::BadSignature)
    );
}

#[test]
fn another_keys_signature_is_refused() {
    let f = fixture();
    let other = keyset();
    // Different key, so a different kid: the key is unknown.
    assert_eq!(
        f.validator
            .validate(&sign(&other, &claims()), NOW, &ClaimPlan::none()),
        Err(Outcome::UnknownKey)
    );
    // Same kid as ours but signed by the other key: the signature is bad.
    let t = sign(&other, &claims());
    let (_, rest) = t.split_once('.').unwrap();
    let our_header = B64
        .encode(json!({"alg":"ES256","typ":"JWT","kid": f.keys.get().signing().kid()}).to_string());
    let spliced = format!("{our_header}.{rest}");
    assert_eq!(
        f.validator.validate(&spliced, NOW, &ClaimPlan::none()),
        Err(Outcome::BadSignature)
    );
}

#[test]
fn algorithm_confusion_is_refused() {
    let f = fixture();
    // HS256 "signed" with the public key: not an accepted alg at all.
    let h = B64.encode(json!({"alg":"HS256","kid": f.keys.get().signing().kid()}).to_string());
    let c = B64.encode(claims().to_string());
    assert_eq!(
        f.validator
            .validate(&format!("{h}.{c}.AAAA"), NOW, &ClaimPlan::none()),
        Err(Outcome::Malformed)
    );
    // RS256 claimed for our ES256 key.
    let h = B64.encode(json!({"alg":"RS256","kid": f.keys.get().signing().kid()}).to_string());
    assert_eq!(
        f.validator
            .validate(&format!("{h}.{c}.AAAA"), NOW, &ClaimPlan::none()),
        Err(Outcome::BadSignature)
    );
}

#[test]
fn expiry_respects_leeway() {
    let f = fixture();
    let t = sign(&f.keys, &with(claims(), "exp", json!(NOW - 30)));
    assert!(
        f.validator.validate(&t, NOW, &ClaimPlan::none()).is_ok(),
        "within the 60 s leeway"
    );
    let t = sign(&f.keys, &with(claims(), "exp", json!(NOW - 60)));
    assert_eq!(
        f.validator.validate(&t, NOW, &ClaimPlan::none()),
        Err(Outcome::Expired)
    );
    let t = sign(&f.keys, &with(claims(), "exp", json!(NOW - 3600)));
    assert_eq!(
        f.validator.validate(&t, NOW, &ClaimPlan::none()),
        Err(Outcome::Expired)
    );
}

#[test]
fn a_token_without_exp_is_immortal() {
    let f = fixture();
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    let p = f
        .validator
        .validate(
            &sign(&f.keys, &c),
            NOW + 10 * 365 * 86_400,
            &ClaimPlan::none(),
        )
        .unwrap();
    assert_eq!(p.exp, i64::MAX);
}

#[test]
fn future_nbf_and_iat_are_not_yet_valid() {
    let f = fixture();
    let t = sign(&f.keys, &with(claims(), "nbf", json!(NOW + 3600)));
    assert_eq!(
        f.validator.validate(&t, NOW, &ClaimPlan::none()),
        Err(Outcome::NotYetValid)
    );
    let t = sign(&f.keys, &with(claims(), "iat", json!(NOW + 3600)));
    assert_eq!(
        f.validator.validate(&t, NOW, &ClaimPlan::none()),
        Err(Outcome::NotYetValid)
    );
    let t = sign(&f.keys, &with(claims(), "nbf", json!(NOW + 30)));
    assert!(
        f.validator.validate(&t, NOW, &ClaimPlan::none()).is_ok(),
        "within the leeway"
    );
}

#[test]
fn wrong_issuer_is_refused() {
    let f = fixture();
    let t = sign(
        &f.keys,
        &with(claims(), "iss", json!("https://evil.example")),
    );
    assert_eq!(
        f.validator.validate(&t, NOW, &ClaimPlan::none()),
        Err(Outcome::WrongIssuer)
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        f.validator
            .validate(&sign(&f.keys, &c), NOW, &ClaimPlan::none()),
        Err(Outcome::WrongIssuer)
    );
}

#[test]
fn audience_and_scope_are_checked_per_api() {
    let f = fixture();
    let p = f
        .validator
        .validate(&sign(&f.keys, &claims()), NOW, &ClaimPlan::none())
        .unwrap();
    let rules = vec![
        Rule::new(&["GET".into()], "/orders/**", &["orders:read".into()], &[]).unwrap(),
        Rule::new(
            &["POST".into()],
            "/orders/**",
            &["orders:write".into()],
            &[],
        )
        .unwrap(),
    ];
    assert_eq!(
        authorize(&p, "orders", &rules, &Method::GET, "/orders/1"),
        Ok(Some(0))
    );
    assert_eq!(
        authorize(&p, "billing", &rules, &Method::GET, "/orders/1"),
        Err(Denial::WrongAudience)
    );
    assert_eq!(
        authorize(&p, "orders", &rules, &Method::POST, "/orders"),
        Err(Denial::InsufficientScope {
            required: "orders:write"
        })
    );
}

struct Stateful {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    auth: Authenticator,
    keys: Arc<KeyRing>,
}

fn stateful() -> Stateful {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store: Arc<dyn Store> =
        Arc::new(crate::store::sqlite::SqliteStore::open(&path, StoreSync::Normal).unwrap());
    let keys = keyset();
    let auth = Authenticator::new(
        Validator::new(keys.clone(), ISS, Duration::from_secs(60)),
        TokenCache::new(CacheSettings {
            max_entries: 100,
            ttl: Duration::from_secs(60),
        }),
        store.clone(),
        Arc::new(Revocations::default()),
    );
    Stateful {
        _dir: dir,
        store,
        auth,
        keys,
    }
}

#[tokio::test]
async fn cache_serves_repeat_presentations_and_skips_failures() {
    let s = stateful();
    let now = crate::domain::clock::unix_now();
    let good = sign(
        &s.keys,
        &json!({"iss": ISS, "aud": "orders", "exp": now + 600}),
    );
    let Checked {
        result: r,
        cache: c,
        ..
    } = s
        .auth
        .authenticate(&good, &CheckContext::own_tokens(now))
        .await;
    assert!(r.is_ok());
    assert_eq!(c, CacheUse::Miss);
    let Checked {
        result: r2,
        cache: c2,
        ..
    } = s
        .auth
        .authenticate(&good, &CheckContext::own_tokens(now))
        .await;
    assert_eq!(c2, CacheUse::Hit);
    assert!(Arc::ptr_eq(&r.unwrap().holder, &r2.unwrap().holder));

    let bad = sign(&s.keys, &json!({"iss": "other", "exp": now + 600}));
    for _ in 0..2 {
        let Checked {
            result: r,
            cache: c,
            ..
        } = s
            .auth
            .authenticate(&bad, &CheckContext::own_tokens(now))
            .await;
        assert_eq!((r.err(), c), (Some(Outcome::WrongIssuer), CacheUse::Miss));
    }
    // A cached token is refused once its exp has passed.
    let Checked { result: r, .. } = s
        .auth
        .authenticate(&good, &CheckContext::own_tokens(now + 600 + 61))
        .await;
    assert_eq!(r.err(), Some(Outcome::Expired));
}

#[tokio::test]
async fn cached_tokens_of_one_holder_share_it() {
    let s = stateful();
    let now = crate::domain::clock::unix_now();
    let claims = |jti: &str, scope: &str| {
        json!({"iss": ISS, "sub": "c1", "client_id": "c1", "aud": "orders",
               "exp": now + 600, "jti": jti, "scope": scope})
    };
    let mut holders = Vec::new();
    for (jti, scope) in [
        ("a", "orders:read"),
        ("b", "orders:read"),
        ("c", "orders:write"),
    ] {
        let Checked {
            result: r,
            cache: c,
            ..
        } = s
            .auth
            .authenticate(
                &sign(&s.keys, &claims(jti, scope)),
                &CheckContext::own_tokens(now),
            )
            .await;
        assert_eq!(c, CacheUse::Miss);
        let p = r.unwrap();
        assert_eq!(p.jti.as_deref(), Some(jti));
        holders.push(p.holder);
    }
    assert!(Arc::ptr_eq(&holders[0], &holders[1]));
    assert!(!Arc::ptr_eq(&holders[0], &holders[2]));
    assert!(holders[2].scopes.contains("orders:write"));
    assert!(!holders[2].scopes.contains("orders:read"));
}

fn opaque_record(jti: &str, expires_at: Option<i64>) -> TokenRecord {
    TokenRecord {
        kind: TokenKind::Access,
        jti: jti.into(),
        grant_id: "g1".into(),
        client_id: "app".into(),
        family: Family::Credential,
        username: Some("alice".into()),
        scope: "orders:read".into(),
        audiences: vec!["orders".into()],
        format: Format::Opaque,
        issued_at: 100,
        expires_at,
        used_at: None,
        revoked: false,
        cnf: None,
    }
}

#[tokio::test]
async fn opaque_tokens_are_looked_up_and_cached() {
    let s = stateful();
    let now = crate::domain::clock::unix_now();
    let token = opaque::generate(opaque::Kind::Access).unwrap();
    let record = opaque_record("j1", Some(now + 60));
    s.store
        .insert(vec![(digest(&token), record)])
        .await
        .unwrap();
    let Checked {
        result: r,
        cache: c,
        ..
    } = s
        .auth
        .authenticate(&token, &CheckContext::own_tokens(now))
        .await;
    let p = r.unwrap();
    assert_eq!(c, CacheUse::Miss);
    assert_eq!(p.username.as_deref(), Some("alice"));
    assert_eq!(p.sub.as_deref(), Some("alice"));
    assert_eq!(p.grant_id.as_deref(), Some("g1"));
    assert!(p.scopes.contains("orders:read"));
    assert_eq!(
        s.auth
            .authenticate(&token, &CheckContext::own_tokens(now))
            .await
            .cache,
        CacheUse::Hit
    );

    let unknown = opaque::generate(opaque::Kind::Access).unwrap();
    let Checked {
        result: r,
        cache: _,
        ..
    } = s
        .auth
        .authenticate(&unknown, &CheckContext::own_tokens(now))
        .await;
    assert_eq!(r.err(), Some(Outcome::UnknownToken));
    let refresh = opaque::generate(opaque::Kind::Refresh).unwrap();
    let Checked {
        result: r,
        cache: _,
        ..
    } = s
        .auth
        .authenticate(&refresh, &CheckContext::own_tokens(now))
        .await;
    assert_eq!(r.err(), Some(Outcome::Malformed));
}

#[tokio::test]
async fn revocations_apply_to_cached_tokens_at_once() {
    let s = stateful();
    let now = crate::domain::clock::unix_now();
    let claims =
        json!({"iss": ISS, "aud": "orders", "exp": now + 600, "jti": "jwt-1", "gid": "g9"});
    let jwt = sign(&s.keys, &claims);
    assert!(
        s.auth
            .authenticate(&jwt, &CheckContext::own_tokens(now))
            .await
            .result
            .is_ok()
    );
    let revoke = |target| Revocation {
        target,
        until: None,
    };
    s.auth
        .revocations()
        .add(&[revoke(RevocationTarget::Grant("g9".into()))]);
    let Checked {
        result: r,
        cache: c,
        ..
    } = s
        .auth
        .authenticate(&jwt, &CheckContext::own_tokens(now))
        .await;
    assert_eq!((r.err(), c), (Some(Outcome::Revoked), CacheUse::Hit));

    let token = opaque::generate(opaque::Kind::Access).unwrap();
    let record = opaque_record("j2", None);
    s.store
        .insert(vec![(digest(&token), record)])
        .await
        .unwrap();
    assert!(
        s.auth
            .authenticate(&token, &CheckContext::own_tokens(now))
            .await
            .result
            .is_ok()
    );
    s.auth
        .revocations()
        .add(&[revoke(RevocationTarget::Jti("j2".into()))]);
    let Checked {
        result: r,
        cache: _,
        ..
    } = s
        .auth
        .authenticate(&token, &CheckContext::own_tokens(now))
        .await;
    assert_eq!(r.err(), Some(Outcome::Revoked));
}
