//! The validation pipeline against an in-memory key set, `peek_issuer`, settings checks
//! and the kid-miss decisions.

use super::*;

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
        .unwrap()
        .to_string();
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
    assert!(
        Issuers::new(vec![ca])
            .err()
            .unwrap()
            .to_string()
            .contains("ca_file")
    );
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
            .to_string()
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
