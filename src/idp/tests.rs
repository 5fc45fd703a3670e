//! Unit tests of the external-issuer module: claim paths, Cache-Control lifetimes, JWK
//! parsing, the validation pipeline against an in-memory key set, settings checks and the
//! kid-miss decisions. No sockets (tests/idp.rs runs the real servers).

use super::jwks::{KeySet, Lookup, MAX_KEYS};
use super::lifetime::{Freshness, clamp, freshness, lifetime};
use super::refresh::{Coordinator, MissDecision};
use super::verify::{Failure, KeyMiss, check, read_header};
use super::*;
use crate::jwt::{self, JwsAlg};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use http::HeaderMap;
use serde_json::{Value, json};

// ---- Keys and tokens made here ----

enum TestKey {
    Ec(EcdsaKeyPair, JwsAlg),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl TestKey {
    fn es256() -> Self {
        TestKey::Ec(
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            JwsAlg::ES256,
        )
    }

    fn es384() -> Self {
        TestKey::Ec(
            EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
            JwsAlg::ES384,
        )
    }

    fn rsa() -> Self {
        TestKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    fn ed() -> Self {
        TestKey::Ed(Ed25519KeyPair::generate().unwrap())
    }

    /// The public JWK, with `extra` members merged in.
    fn jwk(&self, extra: Value) -> Value {
        let mut jwk = match self {
            TestKey::Ec(k, alg) => {
                let point = k.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                let crv = if *alg == JwsAlg::ES256 {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({"kty": "EC", "crv": crv,
                       "x": B64.encode(&point[1..1 + len]), "y": B64.encode(&point[1 + len..])})
            }
            TestKey::Rsa(k) => {
                let p = k.public_key();
                json!({"kty": "RSA",
                       "n": B64.encode(p.modulus().big_endian_without_leading_zero()),
                       "e": B64.encode(p.exponent().big_endian_without_leading_zero())})
            }
            TestKey::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(k.public_key().as_ref())})
            }
        };
        for (k, v) in extra.as_object().unwrap() {
            jwk[k] = v.clone();
        }
        jwk
    }

    fn sign(&self, alg: JwsAlg, header: Value, claims: Value) -> String {
        let mut h = json!({"alg": alg.as_str()});
        for (k, v) in header.as_object().unwrap() {
            h[k] = v.clone();
        }
        let input = format!(
            "{}.{}",
            B64.encode(h.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            TestKey::Ec(k, _) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            TestKey::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            TestKey::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                let padding = if alg == JwsAlg::PS256 {
                    &RSA_PSS_SHA256 as &dyn aws_lc_rs::signature::RsaEncoding
                } else {
                    &RSA_PKCS1_SHA256
                };
                k.sign(padding, &rng, input.as_bytes(), &mut sig).unwrap();
                sig
            }
        };
        format!("{input}.{}", B64.encode(sig))
    }
}

fn set(keys: Vec<Value>, allowed: &[JwsAlg]) -> super::jwks::Parsed {
    KeySet::parse(json!({ "keys": keys }).to_string().as_bytes(), allowed).unwrap()
}

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://idp.example/realms/main";

fn settings() -> IssuerSettings {
    let mut s = IssuerSettings::new(
        "main",
        ISS,
        KeySource::Discovery,
        vec!["orders".to_string()],
    );
    s.algorithms = vec![JwsAlg::ES256, JwsAlg::RS256];
    s
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "sub": "user-1", "aud": ["other", "orders"],
                       "exp": NOW + 300, "iat": NOW, "nbf": NOW, "jti": "j1",
                       "scope": "orders:read orders:write"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn run(s: &IssuerSettings, keys: Option<&KeySet>, token: &str) -> Result<ExternalToken, Failure> {
    let u = read_header(s, token).map_err(Failure::Rejected)?;
    check(s, &Arc::from("main"), keys, &u, NOW)
}

fn rejected(r: Rejection) -> Result<ExternalToken, Failure> {
    Err(Failure::Rejected(r))
}

// ---- ClaimPath ----

#[test]
fn claim_paths_parse_and_look_up_nested_and_dotted_names() {
    let c = json!({"sub": "s", "realm_access": {"roles": ["a", "b c", 3]},
                   "scp": "x  y", "https://example.com/roles": ["r"], "n": 5});
    let p = |s: &str| ClaimPath::parse(s).unwrap();
    assert_eq!(p("realm_access.roles").strings(&c).unwrap(), ["a", "b c"]);
    assert_eq!(p("scp").strings(&c).unwrap(), ["x", "y"]);
    assert_eq!(p("https://example.com/roles").strings(&c).unwrap(), ["r"]);
    assert_eq!(p("realm_access.missing").strings(&c), None);
    assert_eq!(p("n").strings(&c), None, "a number is no scope list");
    assert_eq!(p("sub.deeper").lookup(&c), None);
    assert_eq!(ClaimPath::sub().string(&c), Some("s"));
    assert_eq!(p("n").string(&c), None);
    assert_eq!(p("realm_access.roles").to_string(), "realm_access.roles");
    for bad in ["", ".a", "a.", "a..b", "a b", "a\tb", &"x".repeat(300)] {
        assert!(ClaimPath::parse(bad).is_err(), "{bad:?}");
    }
}

// ---- Cache-Control ----

fn headers(lines: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in lines {
        h.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    h
}

#[test]
fn cache_control_is_read_as_rfc_9111_says() {
    let f = |lines: &[(&str, &str)]| freshness(&headers(lines));
    let cc = "cache-control";
    assert_eq!(f(&[(cc, "public, max-age=300")]), Freshness::MaxAge(300));
    assert_eq!(f(&[(cc, "Max-Age=\"60\"")]), Freshness::MaxAge(60));
    assert_eq!(
        f(&[(cc, "max-age=10"), (cc, "max-age=99")]),
        Freshness::MaxAge(10)
    );
    assert_eq!(f(&[(cc, "max-age=10, no-cache")]), Freshness::DoNotKeep);
    assert_eq!(f(&[(cc, "public"), (cc, "no-store")]), Freshness::DoNotKeep);
    assert_eq!(f(&[(cc, "max-age=-1")]), Freshness::Unspecified);
    assert_eq!(f(&[(cc, "max-age=1h")]), Freshness::Unspecified);
    assert_eq!(f(&[(cc, "max-age")]), Freshness::Unspecified);
    assert_eq!(f(&[]), Freshness::Unspecified);
    assert_eq!(
        f(&[(cc, "max-age=99999999999999999999999")]),
        Freshness::MaxAge(u64::MAX)
    );
}

#[test]
fn lifetimes_are_clamped_between_min_and_max() {
    let r = RefreshSettings {
        min_lifetime: Duration::from_secs(60),
        max_lifetime: Duration::from_secs(3600),
        default_lifetime: Duration::from_secs(600),
        ..RefreshSettings::default()
    };
    let l = |lines: &[(&str, &str)]| lifetime(&headers(lines), &r).as_secs();
    assert_eq!(l(&[("cache-control", "max-age=300")]), 300);
    assert_eq!(l(&[("cache-control", "max-age=5")]), 60);
    assert_eq!(l(&[("cache-control", "max-age=86400")]), 3600);
    assert_eq!(l(&[("cache-control", "no-cache")]), 60);
    assert_eq!(l(&[]), 600);
    assert_eq!(
        l(&[("cache-control", "max-age=300"), ("age", "200")]),
        100,
        "a cache in front already held it 200 s"
    );
    assert_eq!(l(&[("cache-control", "max-age=300"), ("age", "900")]), 60);
    assert_eq!(clamp(Duration::ZERO, &r).as_secs(), 60);
}

// ---- JWKs ----

#[test]
fn every_key_type_parses_for_the_algorithms_it_fits() {
    let (ec, ec384, rsa, ed) = (
        TestKey::es256(),
        TestKey::es384(),
        TestKey::rsa(),
        TestKey::ed(),
    );
    let parsed = set(
        vec![
            ec.jwk(json!({"kid": "ec", "use": "sig", "alg": "ES256"})),
            ec384.jwk(json!({"kid": "ec384", "key_ops": ["verify"]})),
            rsa.jwk(json!({"kid": "rsa"})),
            ed.jwk(json!({"kid": "ed", "alg": "EdDSA"})),
            ec.jwk(json!({})),
        ],
        &JwsAlg::ALL,
    );
    assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    assert_eq!(parsed.set.len(), 5);
    let claims = json!({"sub": "s"});
    let verify = |key: &TestKey, alg: JwsAlg, kid: Option<&str>| {
        let header = match kid {
            Some(k) => json!({ "kid": k }),
            None => json!({}),
        };
        let token = key.sign(alg, header, claims.clone());
        let u = jwt::parse(&token).unwrap();
        parsed
            .set
            .verify(u.kid.as_deref(), u.alg, u.signing_input, &u.signature)
    };
    assert_eq!(verify(&ec, JwsAlg::ES256, Some("ec")), Lookup::Verified);
    assert_eq!(
        verify(&ec384, JwsAlg::ES384, Some("ec384")),
        Lookup::Verified
    );
    assert_eq!(verify(&rsa, JwsAlg::RS256, Some("rsa")), Lookup::Verified);
    assert_eq!(verify(&rsa, JwsAlg::PS256, Some("rsa")), Lookup::Verified);
    assert_eq!(verify(&ed, JwsAlg::EdDSA, Some("ed")), Lookup::Verified);
    assert_eq!(
        verify(&ec, JwsAlg::ES256, None),
        Lookup::Verified,
        "kid-less"
    );
    // The key a kid names, and only it, must verify.
    assert_eq!(
        verify(&ec, JwsAlg::ES256, Some("rsa")),
        Lookup::BadSignature
    );
    assert_eq!(verify(&ec, JwsAlg::ES256, Some("gone")), Lookup::Miss);
    assert_eq!(verify(&TestKey::es256(), JwsAlg::ES256, None), Lookup::Miss);
}

#[test]
fn a_jwk_alg_use_and_key_ops_restrict_it() {
    let rsa = TestKey::rsa();
    let parsed = set(
        vec![
            rsa.jwk(json!({"kid": "only-rs256", "alg": "RS256"})),
            rsa.jwk(json!({"kid": "enc", "use": "enc"})),
            rsa.jwk(json!({"kid": "sign-only", "key_ops": ["sign"]})),
            rsa.jwk(json!({"kid": "hmac", "alg": "HS256"})),
            rsa.jwk(json!({"kid": "wrong-kty", "alg": "ES256"})),
            rsa.jwk(json!({"kid": "bad kid!"})),
        ],
        &JwsAlg::ALL,
    );
    assert_eq!(parsed.set.len(), 1);
    assert_eq!(parsed.skipped.len(), 5, "{:?}", parsed.skipped);
    let ps = rsa.sign(JwsAlg::PS256, json!({"kid": "only-rs256"}), json!({}));
    let u = jwt::parse(&ps).unwrap();
    assert_eq!(
        parsed
            .set
            .verify(u.kid.as_deref(), u.alg, u.signing_input, &u.signature),
        Lookup::BadSignature,
        "a key published for RS256 does not verify PS256"
    );
}

#[test]
fn unusable_keys_are_skipped_and_the_rest_kept() {
    let ec = TestKey::es256();
    let short_rsa = json!({"kty": "RSA", "kid": "short", "e": "AQAB",
                           "n": B64.encode([0xC1u8; 128])});
    let mut off_curve = ec.jwk(json!({"kid": "off"}));
    off_curve["y"] = json!(B64.encode([7u8; 32]));
    let parsed = set(
        vec![
            json!({"kty": "oct", "k": "c2VjcmV0", "kid": "oct"}),
            short_rsa,
            json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
            json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
            json!({"kty": "OKP", "crv": "X25519", "x": B64.encode([1u8; 32])}),
            json!({"kty": "RSA", "n": "!!!", "e": "AQAB"}),
            json!("not an object"),
            json!({"kty": 5}),
            off_curve,
            ec.jwk(json!({"kid": "good"})),
        ],
        &JwsAlg::ALL,
    );
    assert_eq!(parsed.set.len(), 1, "{:?}", parsed.skipped);
    assert_eq!(parsed.skipped.len(), 9);
    assert!(parsed.skipped.iter().any(|s| s.contains("1024 bits")));
    // Padded base64url is accepted, as some providers write it.
    let mut padded = ec.jwk(json!({}));
    padded["x"] = json!(format!("{}=", padded["x"].as_str().unwrap()));
    assert_eq!(set(vec![padded], &JwsAlg::ALL).set.len(), 1);
}

#[test]
fn keys_are_kept_only_for_allowed_algorithms_and_up_to_the_cap() {
    let ec = TestKey::es256();
    let parsed = set(vec![ec.jwk(json!({}))], &[JwsAlg::RS256]);
    assert!(parsed.set.is_empty());
    let many = (0..MAX_KEYS + 3)
        .map(|i| ec.jwk(json!({ "kid": format!("k{i}") })))
        .collect();
    let parsed = set(many, &JwsAlg::ALL);
    assert_eq!(parsed.set.len(), MAX_KEYS);
    assert_eq!(parsed.skipped.len(), 3);
    for bad in [&b"[]"[..], b"{}", b"{\"keys\": {}}", b"not json"] {
        assert!(KeySet::parse(bad, &JwsAlg::ALL).is_err());
    }
}

// ---- Validation ----

#[test]
fn a_genuine_token_maps_subject_scopes_and_email() {
    let ec = TestKey::es256();
    let keys = set(vec![ec.jwk(json!({"kid": "k"}))], &JwsAlg::ALL).set;
    let token = ec.sign(
        JwsAlg::ES256,
        json!({"kid": "k", "typ": "at+jwt"}),
        claims(json!({"email": "a@example.com", "email_verified": "true", "client_id": "c"})),
    );
    let t = run(&settings(), Some(&keys), &token).unwrap();
    assert_eq!(&*t.issuer_name, "main");
    assert_eq!(t.subject, "user-1");
    assert_eq!(t.audiences, ["other", "orders"]);
    assert_eq!(t.scopes.to_space_separated(), "orders:read orders:write");
    assert_eq!((t.exp, t.iat, t.nbf), (NOW + 300, Some(NOW), Some(NOW)));
    assert_eq!(t.jti.as_deref(), Some("j1"));
    assert_eq!(t.client_id.as_deref(), Some("c"));
    assert_eq!(t.email.as_deref(), Some("a@example.com"));
    assert_eq!(t.email_verified, Some(true));
    assert_eq!(t.claims["email_verified"], "true");
}

#[test]
fn configured_claims_give_the_subject_and_the_scopes() {
    let ec = TestKey::es256();
    let keys = set(vec![ec.jwk(json!({"kid": "k"}))], &JwsAlg::ALL).set;
    let mut s = settings();
    s.scope_claim = Some(ClaimPath::parse("realm_access.roles").unwrap());
    s.subject_claim = ClaimPath::parse("preferred_username").unwrap();
    let c = claims(json!({"preferred_username": "alice",
                          "realm_access": {"roles": ["orders:read", "orders:write admin", 7]}}));
    let t = run(
        &s,
        Some(&keys),
        &ec.sign(JwsAlg::ES256, json!({"kid": "k"}), c),
    )
    .unwrap();
    assert_eq!(t.subject, "alice");
    assert_eq!(t.scopes.to_space_separated(), "orders:read");
    // `scp` is read when there is no `scope`.
    let c = claims(json!({"scope": null}));
    let mut c = c.as_object().unwrap().clone();
    c.remove("scope");
    c.insert("scp".into(), json!(["a", "b"]));
    let t = run(
        &settings(),
        Some(&keys),
        &ec.sign(JwsAlg::ES256, json!({"kid": "k"}), Value::Object(c)),
    )
    .unwrap();
    assert_eq!(t.scopes.to_space_separated(), "a b");
    // An absent subject claim is refused.
    let t = ec.sign(JwsAlg::ES256, json!({"kid": "k"}), claims(json!({})));
    assert_eq!(
        run(&s, Some(&keys), &t),
        rejected(Rejection::MissingSubject)
    );
}

#[test]
fn each_check_refuses_what_it_should() {
    let (ec, rsa) = (TestKey::es256(), TestKey::rsa());
    let keys = set(
        vec![ec.jwk(json!({"kid": "k"})), rsa.jwk(json!({"kid": "r"}))],
        &JwsAlg::ALL,
    )
    .set;
    let s = settings();
    let es = |c: Value| ec.sign(JwsAlg::ES256, json!({"kid": "k"}), claims(c));
    let r = |token: &str| run(&s, Some(&keys), token);
    assert_eq!(
        r(&es(json!({"iss": "https://evil"}))),
        rejected(Rejection::WrongIssuer)
    );
    assert_eq!(
        r(&es(json!({"iss": format!("{ISS}/")}))),
        rejected(Rejection::WrongIssuer)
    );
    assert_eq!(
        r(&es(json!({"aud": "billing"}))),
        rejected(Rejection::WrongAudience)
    );
    assert_eq!(
        r(&es(json!({"aud": []}))),
        rejected(Rejection::WrongAudience)
    );
    assert_eq!(
        r(&es(json!({"exp": NOW - 61}))),
        rejected(Rejection::Expired)
    );
    assert!(
        r(&es(json!({"exp": NOW - 59}))).is_ok(),
        "within the leeway"
    );
    assert_eq!(r(&es(json!({"exp": null}))), rejected(Rejection::Malformed));
    let mut no_exp = claims(json!({})).as_object().unwrap().clone();
    no_exp.remove("exp");
    let t = ec.sign(JwsAlg::ES256, json!({"kid": "k"}), Value::Object(no_exp));
    assert_eq!(r(&t), rejected(Rejection::MissingExpiry));
    assert_eq!(
        r(&es(json!({"nbf": NOW + 61}))),
        rejected(Rejection::NotYetValid)
    );
    assert_eq!(
        r(&es(json!({"iat": NOW + 61}))),
        rejected(Rejection::NotYetValid)
    );
    assert_eq!(
        r(&es(json!({"sub": ""}))),
        rejected(Rejection::MissingSubject)
    );
    // Signature and key.
    let mut forged = es(json!({}));
    forged.replace_range(forged.len() - 4.., "AAAA");
    assert_eq!(r(&forged), rejected(Rejection::BadSignature));
    let other = TestKey::es256().sign(JwsAlg::ES256, json!({"kid": "k"}), claims(json!({})));
    assert_eq!(r(&other), rejected(Rejection::BadSignature));
    let unknown = ec.sign(JwsAlg::ES256, json!({"kid": "new"}), claims(json!({})));
    assert_eq!(r(&unknown), Err(Failure::Miss(KeyMiss::Unknown)));
    assert_eq!(
        run(&s, None, &es(json!({}))),
        Err(Failure::Miss(KeyMiss::NoKeys))
    );
    // Header: the allow-list, then typ.
    let ps = rsa.sign(JwsAlg::PS256, json!({"kid": "r"}), claims(json!({})));
    assert_eq!(r(&ps), rejected(Rejection::AlgorithmNotAllowed));
    let mut typed = settings();
    typed.typ = Some("at+jwt".into());
    let t = |typ: Value| {
        let token = ec.sign(
            JwsAlg::ES256,
            json!({"kid": "k", "typ": typ}),
            claims(json!({})),
        );
        run(&typed, Some(&keys), &token)
    };
    assert!(t(json!("application/at+jwt")).is_ok());
    assert_eq!(t(json!("JWT")), rejected(Rejection::WrongType));
    let untyped = ec.sign(JwsAlg::ES256, json!({"kid": "k"}), claims(json!({})));
    assert_eq!(
        run(&typed, Some(&keys), &untyped),
        rejected(Rejection::WrongType)
    );
    // HMAC, none, and tricks of the header.
    for alg in ["HS256", "none"] {
        let h = B64.encode(json!({"alg": alg, "kid": "r"}).to_string());
        let token = format!("{h}.{}.c2ln", B64.encode(claims(json!({})).to_string()));
        assert_eq!(r(&token), rejected(Rejection::Malformed), "{alg}");
    }
    let dup = ec.sign(JwsAlg::ES256, json!({"kid": "k"}), json!({}));
    let (_, rest) = dup.split_once('.').unwrap();
    let raw = format!(
        "{}.{rest}",
        B64.encode(r#"{"alg":"ES256","kid":"k","kid":"r"}"#)
    );
    assert_eq!(r(&raw), rejected(Rejection::Malformed));
}

// ---- The issuer's front door ----

#[test]
fn peek_issuer_reads_only_iss() {
    let ec = TestKey::es256();
    let t = ec.sign(
        JwsAlg::ES256,
        json!({}),
        json!({"iss": "https://a", "sub": "x"}),
    );
    assert_eq!(peek_issuer(&t).as_deref(), Some("https://a"));
    let t = ec.sign(JwsAlg::ES256, json!({}), json!({"sub": "x"}));
    assert_eq!(peek_issuer(&t), None);
    let dup = format!("e30.{}.c2ln", B64.encode(r#"{"iss":"a","iss":"b"}"#));
    assert_eq!(peek_issuer(&dup), None);
    assert_eq!(peek_issuer("a.b"), None);
    assert_eq!(peek_issuer("not a token"), None);
}

#[test]
fn settings_problems_are_reported_all_at_once() {
    let mut bad = settings();
    bad.audiences.clear();
    bad.algorithms.clear();
    bad.refresh.kid_miss_cooldown = Duration::ZERO;
    bad.refresh.max_lifetime = Duration::from_secs(30);
    let mut no_url = IssuerSettings::new(
        "b",
        "not a url",
        KeySource::JwksUri("ftp://x/jwks".into()),
        vec!["a".into()],
    );
    no_url.ca_file = None;
    let mut twice = settings();
    twice.name = "main".into();
    let err = Issuers::new(vec![settings(), bad, no_url, twice])
        .err()
        .unwrap();
    for needle in [
        "`audiences`",
        "`algorithms`",
        "cooldown",
        "minimum key-set lifetime is longer",
        "`jwks_uri` `ftp://x/jwks`",
        "the name is used twice",
        "is configured twice",
    ] {
        assert!(err.contains(needle), "{needle} in:\n{err}");
    }
    let mut ca = settings();
    ca.ca_file = Some("/nonexistent/ca.pem".into());
    assert!(Issuers::new(vec![ca]).err().unwrap().contains("ca_file"));
    let issuers = Issuers::new(vec![settings()]).unwrap();
    assert!(issuers.for_iss(ISS).is_some());
    assert!(issuers.for_iss(&format!("{ISS}/")).is_none());
    assert_eq!(issuers.by_name("main").unwrap().name(), "main");
    assert!(!issuers.by_name("main").unwrap().has_keys());
}

#[test]
fn a_ca_file_of_pem_certificates_is_taken() {
    let cert = rcgen::generate_simple_self_signed(vec!["idp.test".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, cert.cert.pem()).unwrap();
    let mut s = settings();
    s.ca_file = Some(path.clone());
    assert!(Issuers::new(vec![s.clone()]).is_ok());
    std::fs::write(&path, "no certificate here").unwrap();
    assert!(
        Issuers::new(vec![s])
            .err()
            .unwrap()
            .contains("no certificate")
    );
}

#[test]
fn kid_misses_refetch_once_per_cooldown_and_share_it() {
    let c = Coordinator::new();
    let (cooldown, timeout) = (Duration::from_secs(60), Duration::from_secs(5));
    assert_eq!(c.cooldown_remaining(cooldown), Duration::ZERO);
    assert_eq!(c.on_miss(cooldown, timeout), MissDecision::Requested);
    // Until the loop has fetched, every other miss waits for that fetch.
    for _ in 0..1000 {
        assert_eq!(c.on_miss(cooldown, timeout), MissDecision::Joined);
    }
    let seen = c.subscribe();
    c.fetch_started();
    assert_eq!(c.on_miss(cooldown, timeout), MissDecision::Joined);
    c.fetch_finished();
    assert!(seen.has_changed().unwrap(), "waiters are woken");
    // After the fetch, the cooldown holds.
    for _ in 0..1000 {
        assert_eq!(c.on_miss(cooldown, timeout), MissDecision::Suppressed);
    }
    assert!(c.cooldown_remaining(cooldown) > Duration::from_secs(50));
    // A cooldown that has passed lets the next miss ask again.
    let short = Duration::from_nanos(1);
    std::thread::sleep(Duration::from_millis(1));
    assert_eq!(c.on_miss(short, timeout), MissDecision::Requested);
    // A request no loop takes up stops holding misses after the fetch timeout.
    assert_eq!(c.on_miss(cooldown, short), MissDecision::Suppressed);
}

#[test]
fn rejection_labels_are_distinct() {
    let labels: std::collections::HashSet<_> = Rejection::ALL.iter().map(|r| r.label()).collect();
    assert_eq!(labels.len(), Rejection::ALL.len());
}
