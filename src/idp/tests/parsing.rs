//! Claim paths, Cache-Control lifetimes and JWK parsing.

use super::*;

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
