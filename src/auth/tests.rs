//! One test per validation outcome, with real keys.

use super::*;
use crate::config::{CacheSettings, SigningKeySource, TokenSettings};
use crate::keys::Algorithm;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::json;
use std::time::Duration;

const ISS: &str = "https://gw.example";
const NOW: i64 = 1_900_000_000;

fn keyset(dir: &std::path::Path) -> Arc<KeySet> {
    let settings = TokenSettings {
        signing_key: SigningKeySource::Generated {
            algorithm: Algorithm::ES256,
            kid: None,
        },
        verification_keys: vec![],
        leeway: Duration::from_secs(60),
        access_token_lifetime: Duration::from_secs(900),
    };
    Arc::new(KeySet::load(&settings, dir).unwrap())
}

struct Fixture {
    _dir: tempfile::TempDir,
    keys: Arc<KeySet>,
    validator: Validator,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyset(dir.path());
    let validator = Validator::new(keys.clone(), ISS, Duration::from_secs(60));
    Fixture {
        _dir: dir,
        keys,
        validator,
    }
}

fn claims() -> serde_json::Value {
    json!({
        "iss": ISS, "sub": "client-1", "aud": ["orders"], "exp": NOW + 600,
        "iat": NOW, "nbf": NOW, "jti": "j1", "client_id": "client-1", "scope": "orders:read",
    })
}

fn sign(keys: &KeySet, claims: &serde_json::Value) -> String {
    keys.signing()
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
        .validate(&sign(&f.keys, &claims()), NOW)
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
        assert_eq!(f.validator.validate(t, NOW), Err(Outcome::Malformed), "{t}");
    }
}

#[test]
fn alg_none_is_malformed() {
    let f = fixture();
    let h = B64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let c = B64.encode(claims().to_string());
    for t in [format!("{h}.{c}."), format!("{h}.{c}.AAAA")] {
        assert_eq!(f.validator.validate(&t, NOW), Err(Outcome::Malformed));
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
    assert_eq!(f.validator.validate(&t, NOW), Err(Outcome::BadSignature));
}

#[test]
fn another_keys_signature_is_refused() {
    let f = fixture();
    let other_dir = tempfile::tempdir().unwrap();
    let other = keyset(other_dir.path());
    // Different key, so a different kid: the key is unknown.
    assert_eq!(
        f.validator.validate(&sign(&other, &claims()), NOW),
        Err(Outcome::UnknownKey)
    );
    // Same kid as ours but signed by the other key: the signature is bad.
    let t = sign(&other, &claims());
    let (_, rest) = t.split_once('.').unwrap();
    let our_header =
        B64.encode(json!({"alg":"ES256","typ":"JWT","kid": f.keys.signing().kid()}).to_string());
    let spliced = format!("{our_header}.{rest}");
    assert_eq!(
        f.validator.validate(&spliced, NOW),
        Err(Outcome::BadSignature)
    );
}

#[test]
fn algorithm_confusion_is_refused() {
    let f = fixture();
    // HS256 "signed" with the public key: not an accepted alg at all.
    let h = B64.encode(json!({"alg":"HS256","kid": f.keys.signing().kid()}).to_string());
    let c = B64.encode(claims().to_string());
    assert_eq!(
        f.validator.validate(&format!("{h}.{c}.AAAA"), NOW),
        Err(Outcome::Malformed)
    );
    // RS256 claimed for our ES256 key.
    let h = B64.encode(json!({"alg":"RS256","kid": f.keys.signing().kid()}).to_string());
    assert_eq!(
        f.validator.validate(&format!("{h}.{c}.AAAA"), NOW),
        Err(Outcome::BadSignature)
    );
}

#[test]
fn expiry_respects_leeway() {
    let f = fixture();
    let t = sign(&f.keys, &with(claims(), "exp", json!(NOW - 30)));
    assert!(
        f.validator.validate(&t, NOW).is_ok(),
        "within the 60 s leeway"
    );
    let t = sign(&f.keys, &with(claims(), "exp", json!(NOW - 60)));
    assert_eq!(f.validator.validate(&t, NOW), Err(Outcome::Expired));
    let t = sign(&f.keys, &with(claims(), "exp", json!(NOW - 3600)));
    assert_eq!(f.validator.validate(&t, NOW), Err(Outcome::Expired));
}

#[test]
fn missing_exp_is_malformed() {
    let f = fixture();
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        f.validator.validate(&sign(&f.keys, &c), NOW),
        Err(Outcome::Malformed)
    );
}

#[test]
fn future_nbf_and_iat_are_not_yet_valid() {
    let f = fixture();
    let t = sign(&f.keys, &with(claims(), "nbf", json!(NOW + 3600)));
    assert_eq!(f.validator.validate(&t, NOW), Err(Outcome::NotYetValid));
    let t = sign(&f.keys, &with(claims(), "iat", json!(NOW + 3600)));
    assert_eq!(f.validator.validate(&t, NOW), Err(Outcome::NotYetValid));
    let t = sign(&f.keys, &with(claims(), "nbf", json!(NOW + 30)));
    assert!(f.validator.validate(&t, NOW).is_ok(), "within the leeway");
}

#[test]
fn wrong_issuer_is_refused() {
    let f = fixture();
    let t = sign(
        &f.keys,
        &with(claims(), "iss", json!("https://evil.example")),
    );
    assert_eq!(f.validator.validate(&t, NOW), Err(Outcome::WrongIssuer));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        f.validator.validate(&sign(&f.keys, &c), NOW),
        Err(Outcome::WrongIssuer)
    );
}

#[test]
fn audience_and_scope_are_checked_per_api() {
    let f = fixture();
    let p = f
        .validator
        .validate(&sign(&f.keys, &claims()), NOW)
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
        Ok(())
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

#[test]
fn cache_serves_repeat_presentations_and_skips_failures() {
    let f = fixture();
    let auth = Authenticator::new(
        Validator::new(f.keys.clone(), ISS, Duration::from_secs(60)),
        TokenCache::new(CacheSettings {
            max_entries: 100,
            ttl: Duration::from_secs(60),
        }),
    );
    let now = cache::unix_now();
    let good = sign(
        &f.keys,
        &json!({"iss": ISS, "aud": "orders", "exp": now + 600}),
    );
    let (r, c) = auth.authenticate(&good, now);
    assert!(r.is_ok());
    assert_eq!(c, CacheUse::Miss);
    let (r2, c2) = auth.authenticate(&good, now);
    assert_eq!(c2, CacheUse::Hit);
    assert!(Arc::ptr_eq(&r.unwrap(), &r2.unwrap()));

    let bad = sign(&f.keys, &json!({"iss": "other", "exp": now + 600}));
    for _ in 0..2 {
        assert_eq!(
            auth.authenticate(&bad, now),
            (Err(Outcome::WrongIssuer), CacheUse::Miss)
        );
    }
    // A cached token is refused once its exp has passed.
    let (r, _) = auth.authenticate(&good, now + 600 + 61);
    assert_eq!(r.err(), Some(Outcome::Expired));
}

#[test]
fn challenges_follow_rfc6750() {
    assert_eq!(
        challenge(Outcome::Missing, None),
        (401, "Bearer realm=\"tollgate\"".into())
    );
    let (status, h) = challenge(Outcome::Expired, None);
    assert_eq!(status, 401);
    assert!(h.contains("error=\"invalid_token\""), "{h}");
    let (status, h) = challenge(Outcome::InsufficientScope, Some("a b"));
    assert_eq!(status, 403);
    assert!(
        h.contains("error=\"insufficient_scope\"") && h.contains("scope=\"a b\""),
        "{h}"
    );
    for o in Outcome::ALL {
        let (_, h) = challenge(o, Some("s"));
        assert!(http::HeaderValue::from_str(&h).is_ok(), "{o:?}");
    }
}
