//! RFC 9449 §11 and the proofs a thief or a broken client sends: each is refused by the
//! gateway with `invalid_dpop_proof` or `invalid_token` (401, never the upstream's 200).

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// What one attack sends: the `Authorization` value and the `DPoP` headers.
struct Attack {
    name: &'static str,
    authorization: String,
    proofs: Vec<String>,
    /// The `error` the body must name.
    error: &'static str,
}

#[tokio::test]
async fn every_attack_on_a_bound_token_is_refused_before_the_upstream() {
    let (_up, gw) = start("").await;
    let key = DpopKey::es256();
    let body = bound_token(&gw, &key, "/credential/jwt").await;
    let token = body["access_token"].as_str().unwrap().to_string();
    let other_token = bound_token(&gw, &key, "/credential/jwt").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let url = gw.url("/orders/1");
    let dpop = format!("DPoP {token}");
    let good = || proof_for(&key, "GET", &url, &token);
    let claims = || {
        key.claims(&ProofFor {
            htm: "GET",
            htu: &url,
            token: Some(&token),
            nonce: None,
        })
    };
    let with_claims = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        key.sign(&key.header(), &c)
    };
    let with_header = |f: &dyn Fn(&mut Value)| {
        let mut h = key.header();
        f(&mut h);
        key.sign(&h, &claims())
    };
    // An accepted proof, replayed.
    let used = good();
    let (status, _, _) = call(
        &gw,
        reqwest::Method::GET,
        "/orders/1",
        &dpop,
        std::slice::from_ref(&used),
    )
    .await;
    assert_eq!(status, 200);
    let thief = DpopKey::es256();
    let unsigned = format!(
        "{}.{}.",
        B64.encode(json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk}).to_string()),
        B64.encode(claims().to_string())
    );
    let hs256 = format!(
        "{}.{}.{}",
        B64.encode(json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk}).to_string()),
        B64.encode(claims().to_string()),
        B64.encode([0u8; 32])
    );
    let mut private = key.jwk.clone();
    private["d"] = B64.encode([7u8; 32]).into();
    let attacks = vec![
        Attack {
            name: "replayed proof",
            authorization: dpop.clone(),
            proofs: vec![used],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "proof for another method",
            authorization: dpop.clone(),
            proofs: vec![proof_for(&key, "POST", &url, &token)],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "proof for another URL",
            authorization: dpop.clone(),
            proofs: vec![proof_for(&key, "GET", &gw.url("/orders/2"), &token)],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "proof for another host",
            authorization: dpop.clone(),
            proofs: vec![proof_for(
                &key,
                "GET",
                "http://evil.example/orders/1",
                &token,
            )],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "proof signed by a key other than cnf.jkt",
            authorization: dpop.clone(),
            proofs: vec![proof_for(&thief, "GET", &url, &token)],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "ath of another token",
            authorization: dpop.clone(),
            proofs: vec![proof_for(&key, "GET", &url, &other_token)],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "no ath",
            authorization: dpop.clone(),
            proofs: vec![with_claims(&|c| {
                c.as_object_mut().unwrap().remove("ath");
            })],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "iat too old",
            authorization: dpop.clone(),
            proofs: vec![with_claims(&|c| c["iat"] = (unix_now() - 600).into())],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "iat in the future",
            authorization: dpop.clone(),
            proofs: vec![with_claims(&|c| c["iat"] = (unix_now() + 600).into())],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "missing proof",
            authorization: dpop.clone(),
            proofs: vec![],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "bound token as Bearer, with a good proof",
            authorization: format!("Bearer {token}"),
            proofs: vec![good()],
            error: "invalid_token",
        },
        Attack {
            name: "alg none",
            authorization: dpop.clone(),
            proofs: vec![unsigned],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "HS256",
            authorization: dpop.clone(),
            proofs: vec![hs256],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "a private key in jwk",
            authorization: dpop.clone(),
            proofs: vec![with_header(&|h| h["jwk"] = private.clone())],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "typ JWT",
            authorization: dpop.clone(),
            proofs: vec![with_header(&|h| h["typ"] = "JWT".into())],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "a 16 KiB proof",
            authorization: dpop.clone(),
            proofs: vec![with_claims(&|c| c["pad"] = "x".repeat(16 * 1024).into())],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "two DPoP headers",
            authorization: dpop.clone(),
            proofs: vec![good(), good()],
            error: "invalid_dpop_proof",
        },
        Attack {
            name: "a tampered signature",
            authorization: dpop.clone(),
            proofs: vec![{
                let p = good();
                let (head, sig) = p.rsplit_once('.').unwrap();
                let mut s = B64.decode(sig).unwrap();
                s[10] ^= 1;
                format!("{head}.{}", B64.encode(s))
            }],
            error: "invalid_dpop_proof",
        },
    ];
    for a in &attacks {
        let (status, challenge, body) = call(
            &gw,
            reqwest::Method::GET,
            "/orders/1",
            &a.authorization,
            &a.proofs,
        )
        .await;
        assert_eq!(status, 401, "{}: {body}", a.name);
        assert_eq!(body["error"], a.error, "{}: {body}", a.name);
        assert!(
            body.get("path").is_none(),
            "{} reached the upstream",
            a.name
        );
        assert!(challenge.starts_with("DPoP "), "{}: {challenge}", a.name);
        assert!(
            challenge.contains(&format!("error=\"{}\"", a.error)),
            "{}: {challenge}",
            a.name
        );
    }
    // The token itself was never spoiled: a fresh proof still passes.
    let (status, _, _) = call(&gw, reqwest::Method::GET, "/orders/1", &dpop, &[good()]).await;
    assert_eq!(status, 200);
    assert_eq!(
        gw.metric("tollgate_token_validations_total{outcome=\"dpop_proof\"}")
            .await,
        (attacks.len() - 1) as f64
    );

    // At the token endpoint: a bad proof gets no token.
    let htu = gw.url("/credential/jwt");
    let stale = key.sign(
        &key.header(),
        &json!({"jti": "j1", "htm": "POST", "htu": htu, "iat": unix_now() - 600}),
    );
    for (name, proof) in [
        ("stale", stale),
        (
            "wrong method",
            key.proof(&ProofFor {
                htm: "GET",
                htu: &htu,
                ..Default::default()
            }),
        ),
    ] {
        let (status, _, body) = token_request(&gw, "/credential/jwt", CC, SVC, &[proof]).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"], "invalid_dpop_proof", "{name}: {body}");
    }
}

#[tokio::test]
async fn a_proof_replayed_on_another_node_is_refused_in_cluster_mode() {
    let redis = common::redis::Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut spec = GatewaySpec::new(catalog(&up));
        spec.extra = format!("{}dpop:\n  replay: cluster\n", redis.store_section());
        spec.files.push(common::redis::store_key_file());
        spec.issuer = Some("http://gateway.test".into());
        nodes.push(Gateway::start(spec, &key).await);
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let dkey = DpopKey::es256();
    // Issued by node A; both nodes answer for the issuer's URL.
    let issued = bound_token(a, &dkey, "/credential/jwt").await;
    let token = issued["access_token"].as_str().unwrap();
    let proof = proof_for(&dkey, "GET", "http://gateway.test/orders/1", token);
    let auth = format!("DPoP {token}");
    let (status, _, body) = call(
        a,
        reqwest::Method::GET,
        "/orders/1",
        &auth,
        std::slice::from_ref(&proof),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = call(b, reqwest::Method::GET, "/orders/1", &auth, &[proof]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_dpop_proof");
    // A fresh proof passes on B: the token is good everywhere.
    let fresh = proof_for(&dkey, "GET", "http://gateway.test/orders/1", token);
    let (status, _, _) = call(b, reqwest::Method::GET, "/orders/1", &auth, &[fresh]).await;
    assert_eq!(status, 200);
    assert_eq!(
        b.metric("tollgate_dpop_proofs_total{at=\"api\",result=\"replayed\"}")
            .await,
        1.0
    );
}
