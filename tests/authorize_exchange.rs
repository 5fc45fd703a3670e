//! The authorization code after the browser's sign-in (Debian's chromium through
//! chromedriver, the gateway over TLS with a test certificate): a code is redeemed once (a
//! replay revokes what it gave), with its own verifier, redirect URI, client and endpoint;
//! seed 002's flow as the seed writes it (per-API endpoints, no `redirect_uri` or `state`);
//! signing out; a browser app's exchange from its own origin only (CORS); and discovery.
//!
//! Each test starts its own gateway and browser. The gateway logs at debug level, and the
//! replay and seed-002 tests end by reading the whole log for the password, the codes, the
//! verifiers and the tokens.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "authorize/support.rs"]
#[allow(dead_code)]
mod support;

use common::browser::Browser;
use common::*;
use oauth2::PkceCodeChallenge;
use reqwest::Url;
use serde_json::Value;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_gave() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let req = env.request("spa", &[]);
    let code = first_code(&env, &b, &req).await;
    let cb = env.callback();
    let fields = [
        ("code", code.as_str()),
        ("redirect_uri", cb.as_str()),
        ("client_id", "spa"),
        ("code_verifier", req.verifier.as_str()),
    ];
    let (status, first) = env.exchange(&fields).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    assert_eq!(env.api(access).await, 200);

    let (status, again) = env.exchange(&fields).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // RFC 6749 §4.1.2: the tokens issued from the code are revoked.
    assert_eq!(env.api(access).await, 401);
    let r = env
        .http()
        .post(env.url("/credential/jwt"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "spa"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        env.gw.wait_for_log("was used twice").await,
        "the replay is logged"
    );
    env.assert_log_free_of(&[PASSWORD, &code, access, refresh, &req.verifier]);
    b.quit().await;
}

#[tokio::test]
async fn the_code_needs_its_own_verifier_redirect_uri_client_and_endpoint() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let cb = env.callback();

    // No verifier: refused before the code is spent.
    let req = env.request("spa", &[]);
    let code = first_code(&env, &b, &req).await;
    let (status, body) = env
        .exchange(&[("code", &code), ("redirect_uri", &cb), ("client_id", "spa")])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Another well-formed verifier: refused, and the code is spent.
    let (_, other) = PkceCodeChallenge::new_random_sha256();
    let (status, body) = env
        .exchange(&[
            ("code", &code),
            ("redirect_uri", &cb),
            ("client_id", "spa"),
            ("code_verifier", other.secret()),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = env
        .exchange(&[
            ("code", &code),
            ("redirect_uri", &cb),
            ("client_id", "spa"),
            ("code_verifier", &req.verifier),
        ])
        .await;
    assert_eq!(status, 400, "a code is used once, even by a wrong attempt");

    // A verifier of the wrong shape (RFC 7636 §4.1: 43 to 128 unreserved characters).
    let req = env.request("spa", &[]);
    let code = next_code(&env, &b, &req).await;
    let short = &req.verifier[..42];
    let (status, body) = env
        .exchange(&[
            ("code", &code),
            ("redirect_uri", &cb),
            ("client_id", "spa"),
            ("code_verifier", short),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Another redirect URI than the request's.
    let req = env.request("spa", &[]);
    let code = next_code(&env, &b, &req).await;
    let (status, body) = env
        .exchange(&[
            ("code", &code),
            ("redirect_uri", &cb.replace("/callback", "/callback2")),
            ("client_id", "spa"),
            ("code_verifier", &req.verifier),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Another client than the code's.
    let req = env.request("spa", &[]);
    let code = next_code(&env, &b, &req).await;
    let r = env
        .http()
        .post(env.url("/credential/jwt"))
        .basic_auth("reports", Some(REPORTS_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", cb.as_str()),
            ("code_verifier", req.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The per-API endpoint (seed 002): the code is for that API's token endpoint only,
    // and the token's audience is pinned to it.
    let at_api = env.request_at("/orders/oauth2/v2/authorize", "spa", &[]);
    let code = next_code(&env, &b, &at_api).await;
    let (status, body) = env
        .exchange(&[
            ("code", &code),
            ("redirect_uri", &cb),
            ("client_id", "spa"),
            ("code_verifier", &at_api.verifier),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let at_api = env.request_at("/orders/oauth2/v2/authorize", "spa", &[]);
    let code = next_code(&env, &b, &at_api).await;
    let r = env
        .http()
        .post(env.url("/orders/oauth2/v2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", cb.as_str()),
            ("client_id", "spa"),
            ("code_verifier", at_api.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        claims_of(t["access_token"].as_str().unwrap())["aud"],
        "orders"
    );
    b.quit().await;
}

/// Seed 002's steps as it writes them: the authorization request has no `redirect_uri`
/// (the client registered one) and no `state`; the code is exchanged at the API's own token
/// endpoint with `grant_type`, `code`, `code_verifier` and `client_id` only.
#[tokio::test]
async fn seed_002s_code_flow_runs_as_the_seed_writes_it() {
    let env = Env::start().await;
    let b = Browser::start().await;
    // 1. Generate code verifier and challenge.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    // 2. Redirect user to authorize endpoint:
    //    GET /oauth2/v2/authorize?response_type=code&client_id={id}
    //        &code_challenge={challenge}&code_challenge_method=S256
    let url = format!(
        "{}?response_type=code&client_id=seed&code_challenge={}&code_challenge_method=S256",
        env.url("/oauth2/v2/authorize"),
        challenge.as_str()
    );
    b.goto(&url).await;
    sign_in(&b, "alice", PASSWORD).await;
    wait_heading(&b, "Allow access?").await;
    b.click_submit("Allow").await;
    let back = arrival(&b, &env).await;
    let code = param(&back, "code").unwrap();
    assert_eq!(param(&back, "state"), None);
    assert_eq!(param(&back, "iss").as_deref(), Some(env.gw.base.as_str()));

    // 3. Exchange code for token: POST /{api}/oauth2/v2/token. At an API the client may
    //    not call first: refused, and the code is not spent.
    let exchange = |api: &str| {
        env.http()
            .post(env.url(&format!("/{api}/oauth2/v2/token")))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("code_verifier", verifier.secret().as_str()),
                ("client_id", "seed"),
            ])
            .send()
    };
    let r = exchange("billing").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client", "{body}");
    let r = exchange("orders").await.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let access = t["access_token"].as_str().unwrap();
    let c = claims_of(access);
    assert_eq!(c["aud"], "orders");
    assert_eq!(c["scope"], "orders:read");
    assert_eq!(c["sub"], "alice");
    assert_eq!(env.api(access).await, 200);
    // Once only.
    let r = exchange("orders").await.unwrap();
    assert_eq!(r.status(), 400);

    // A code of an API's own authorization endpoint stays pinned to it: refused at the
    // family's token endpoint without being spent, then redeemed where it belongs.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = format!(
        "{}?response_type=code&client_id=seed&code_challenge={}&code_challenge_method=S256",
        env.url("/orders/oauth2/v2/authorize"),
        challenge.as_str()
    );
    b.goto(&url).await;
    let back = arrival(&b, &env).await;
    let code = param(&back, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.secret().as_str()),
        ("client_id", "seed"),
    ];
    let r = env
        .http()
        .post(env.url("/credential/jwt"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = env
        .http()
        .post(env.url("/orders/oauth2/v2/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // An OpenID Connect request must name its redirect URI.
    let (here, html) = page_of(
        &b,
        &format!(
            "{}?response_type=code&client_id=seed&scope=openid&code_challenge={}&code_challenge_method=S256",
            env.url("/oauth2/v2/authorize"),
            challenge.as_str()
        ),
    )
    .await;
    assert_eq!(here.host_str(), Some("localhost"));
    assert!(html.contains("Unknown return address"), "{html}");
    env.assert_log_free_of(&[PASSWORD, &code, access, verifier.secret()]);
    b.quit().await;
}

#[tokio::test]
async fn signing_out_ends_the_session_and_returns_only_to_registered_addresses() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let req = env.request("spa", &[]);
    first_code(&env, &b, &req).await;
    let port = env.app.addr.port();
    let mut logout = Url::parse(&env.url("/oauth2/v2/logout")).unwrap();
    logout.query_pairs_mut().extend_pairs([
        ("client_id", "spa"),
        (
            "post_logout_redirect_uri",
            &format!("http://127.0.0.1:{port}/bye"),
        ),
        ("state", "bye-1"),
    ]);
    b.goto(logout.as_str()).await;
    let at = b
        .wait_for_url(|u| u.path() == "/bye", Duration::from_secs(20))
        .await;
    assert_eq!(param(&at, "state").as_deref(), Some("bye-1"));
    // Signed out: the next authorization asks for the password again.
    let again = env.request("spa", &[]);
    b.goto(&again.url).await;
    wait_heading(&b, "Sign in").await;
    assert!(
        b.cookies()
            .await
            .iter()
            .all(|c| c.name != "__Host-tollgate-session")
    );
    // An address not registered for the client: the signed-out page, no redirect.
    let mut elsewhere = Url::parse(&env.url("/oauth2/v2/logout")).unwrap();
    elsewhere.query_pairs_mut().extend_pairs([
        ("client_id", "spa"),
        ("post_logout_redirect_uri", "https://evil.example/"),
    ]);
    b.goto(elsewhere.as_str()).await;
    wait_heading(&b, "Signed out").await;
    assert_eq!(b.current_url().await.host_str(), Some("localhost"));
    b.quit().await;
}

#[tokio::test]
async fn a_browser_app_exchanges_its_code_from_its_own_origin_only() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let req = env.request("spa", &[]);
    let code = first_code(&env, &b, &req).await;
    // The browser is on the app's page (origin http://127.0.0.1:<app port>, which `spa`
    // allows): the app's script exchanges the code with fetch, through CORS.
    let exchange = "const [url, body, done] = [arguments[0], arguments[1], arguments[2]];
        fetch(url, { method: 'POST', body: new URLSearchParams(body) })
            .then(r => r.json().then(j => done({ status: r.status, body: j })))
            .catch(e => done({ failed: String(e) }));";
    let token_url = env.url("/credential/jwt");
    let body = serde_json::json!({
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": env.callback(),
        "client_id": "spa",
        "code_verifier": req.verifier,
    });
    let answer = b
        .client()
        .execute_async(exchange, vec![token_url.clone().into(), body.clone()])
        .await
        .unwrap();
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(answer["body"]["access_token"].is_string());

    // The same script on a page of another origin: the browser withholds the answer.
    let stranger = start_upstream().await;
    b.goto(&format!("http://127.0.0.1:{}/page", stranger.addr.port()))
        .await;
    let answer = b
        .client()
        .execute_async(exchange, vec![token_url.into(), body])
        .await
        .unwrap();
    assert!(answer["failed"].is_string(), "{answer}");

    // The preflight is answered from the clients' origin lists.
    let preflight = |origin: String| {
        env.http()
            .request(reqwest::Method::OPTIONS, env.url("/credential/jwt"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight(format!("http://127.0.0.1:{}", env.app.addr.port()))
        .await
        .unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        format!("http://127.0.0.1:{}", env.app.addr.port()).as_str()
    );
    let no = preflight(format!("http://127.0.0.1:{}", stranger.addr.port()))
        .await
        .unwrap();
    assert!(no.headers().get("access-control-allow-origin").is_none());
    // None on the authorization endpoint.
    let authorize = env
        .http()
        .get(&req.url)
        .header(
            "origin",
            format!("http://127.0.0.1:{}", env.app.addr.port()),
        )
        .send()
        .await
        .unwrap();
    assert!(
        authorize
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    b.quit().await;
}

#[tokio::test]
async fn discovery_documents_the_flow() {
    let env = Env::start().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let doc: Value = env
            .http()
            .get(env.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["issuer"], env.gw.base.as_str());
        assert_eq!(
            doc["authorization_endpoint"],
            env.url("/oauth2/v2/authorize")
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        let methods = doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        assert!(methods.contains(&"none".into()), "{methods:?}");
        assert_eq!(doc["userinfo_endpoint"], env.url("/userinfo"));
        assert_eq!(doc["end_session_endpoint"], env.url("/oauth2/v2/logout"));
        let grants = doc["grant_types_supported"].as_array().unwrap();
        assert!(grants.contains(&"authorization_code".into()));
    }
    let oidc: Value = env
        .http()
        .get(env.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        oidc["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(
        oidc["subject_types_supported"],
        serde_json::json!(["public"])
    );
}
