//! The authorization code flow in a real browser (Debian's chromium through chromedriver),
//! over TLS with a test certificate so the `__Host-` cookies are real: authorize → login →
//! consent → the app's callback on a `127.0.0.1:0` listener, then the code exchange with
//! the `oauth2` crate or reqwest, and the tokens (ID token, userinfo, refresh) against the
//! proxied API; a session, `prompt=login` and `max_age`; wrong passwords and the lockout;
//! forms refused without their CSRF token, cookie or origin; bad authorization requests.
//! What the code is then good for is tested in tests/authorize_exchange.rs.
//!
//! Each test starts its own gateway (the lockout test must not lock the others out) and
//! browser. The gateway logs at debug level, and every test that signs in ends by reading
//! the whole log for the password, the codes, the verifiers and the cookies.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "authorize/support.rs"]
#[allow(dead_code)]
mod support;

use common::browser::Browser;
use common::*;
use oauth2::{AuthorizationCode, CsrfToken, PkceCodeChallenge, Scope, TokenResponse as _};
use reqwest::Url;
use serde_json::Value;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn the_code_flow_runs_in_a_browser_from_login_to_the_api() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let client = env.oauth2_client();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(["openid", "profile", "email", "orders:read"].map(|s| Scope::new(s.into())))
        .add_extra_param("nonce", "n-8f2e1c")
        .set_pkce_challenge(challenge)
        .url();
    b.goto(url.as_str()).await;
    sign_in(&b, "alice", PASSWORD).await;
    let flow = cookie(&b.cookies().await, "__Host-tollgate-flow").clone();
    assert!(flow.secure && flow.http_only, "{flow:?}");
    assert_eq!(flow.same_site.as_deref(), Some("Lax"));
    assert_eq!(flow.path.as_deref(), Some("/"));
    // `__Host-`: no Domain attribute, so the browser keeps it for this host only.
    assert_eq!(flow.domain.as_deref(), Some("localhost"));

    wait_heading(&b, "Allow access?").await;
    let consent = b.source().await;
    assert!(consent.contains("Orders app") && consent.contains("orders:read"));
    assert!(consent.contains("Your email address"));
    let session = cookie(&b.cookies().await, "__Host-tollgate-session").clone();
    assert!(session.secure && session.http_only, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Lax"));
    assert_eq!(session.expires, None, "a browser-session cookie");
    // One read of the network log, after the consent page: a read drains it, and the
    // login POST and consent page may already be in it by the time the form is sent.
    let pages = b.responses().await;
    assert_page_headers(response(&pages, &env.url("/oauth2/v2/authorize")));
    assert_page_headers(response(&pages, &env.url("/oauth2/v2/consent")));
    // The login POST answered 303 (RFC 9700 §4.11) and the browser followed it.
    assert!(
        pages
            .iter()
            .all(|r| !r.url.contains("/oauth2/v2/login") || r.status == 303),
        "{pages:?}"
    );

    b.click_submit("Allow").await;
    let back = arrival(&b, &env).await;
    assert_eq!(
        param(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );
    assert_eq!(param(&back, "iss").as_deref(), Some(env.gw.base.as_str()));
    let code = param(&back, "code").expect("a code");
    assert!(code.len() >= 43, "at least 256 bits: {code}");
    // The app's listener got the request: its echo is the page the browser shows.
    let echoed = b.source().await;
    assert!(
        echoed.contains("/callback") && echoed.contains(&code),
        "{echoed}"
    );

    let http = env.http().clone();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code exchanges");
    let access = tokens.access_token().secret().clone();
    let refresh = tokens
        .refresh_token()
        .expect("a refresh token")
        .secret()
        .clone();
    assert_eq!(env.api(&access).await, 200);

    // The ID token: signed with the gateway's key, typ JWT, with the OpenID claims.
    let id_token = tokens.extra_fields().id_token.clone().expect("an id_token");
    let (header, id) = env
        .key
        .verify(&id_token)
        .expect("signed by the gateway's key");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(id["iss"], env.gw.base.as_str());
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["aud"], "spa");
    assert_eq!(id["nonce"], "n-8f2e1c");
    assert_eq!(id["email"], "alice@example.test");
    assert_eq!(id["name"], "Alice Example");
    let now = unix_now();
    assert!(id["exp"].as_i64().unwrap() > now);
    assert!(id["auth_time"].as_i64().unwrap() <= id["iat"].as_i64().unwrap());
    {
        use base64::Engine as _;
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
        let half = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d.as_ref()[..16]);
        assert_eq!(id["at_hash"], half.as_str(), "OIDC Core §3.1.3.6");
    }
    // The proxy refuses the ID token as an access token (RFC 9068 typ).
    assert_eq!(env.api(&id_token).await, 401);
    let (_, at) = env.key.verify(&access).unwrap();
    assert_eq!(at["aud"], "orders");
    assert_eq!(at["sub"], "alice");

    let info: Value = env
        .http()
        .get(env.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["email"], "alice@example.test");
    assert_eq!(info["name"], "Alice Example");

    // The public client refreshes without a secret, and the token rotates.
    let r = env
        .http()
        .post(env.url("/credential/jwt"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", "spa"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let refreshed: Value = r.json().await.unwrap();
    assert_ne!(refreshed["refresh_token"].as_str(), Some(refresh.as_str()));

    // A second client, first-party (consent: skip): the session signs Alice in, no form.
    let second = env.request("reports", &[]);
    b.goto(&second.url).await;
    let back = arrival(&b, &env).await;
    assert_eq!(param(&back, "state"), Some(second.state.clone()));
    let seen = b.responses().await;
    assert!(
        !seen
            .iter()
            .any(|r| r.status == 200 && r.url.contains("/oauth2/v2/authorize")),
        "no login page this time: {seen:?}"
    );
    let code2 = param(&back, "code").unwrap();
    // A confidential client must authenticate at the token endpoint.
    let (status, body) = env
        .exchange(&[
            ("code", &code2),
            ("redirect_uri", &env.callback()),
            ("client_id", "reports"),
            ("code_verifier", &second.verifier),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // A refused client authentication does not spend the code: with the secret it works,
    // and the ID token tells the sign-in it came from (the session's, not a new one).
    let reports = |code: String, verifier: String| {
        let http = env.http().clone();
        let url = env.url("/credential/jwt");
        let cb = env.callback();
        async move {
            let r = http
                .post(url)
                .basic_auth("reports", Some(REPORTS_SECRET))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", cb.as_str()),
                    ("code_verifier", verifier.as_str()),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let t = reports(code2.clone(), second.verifier.clone()).await;
    let (_, id2) = env.key.verify(t["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(id2["aud"], "reports");
    assert_eq!(id2["auth_time"], id["auth_time"]);
    let first_auth_time = id["auth_time"].as_i64().unwrap();

    // prompt=login forces the password despite the session.
    let forced = env.request("reports", &[("prompt", "login")]);
    b.goto(&forced.url).await;
    sign_in(&b, "alice", PASSWORD).await;
    let back = arrival(&b, &env).await;
    let code3 = param(&back, "code").unwrap();
    let t = reports(code3.clone(), forced.verifier.clone()).await;
    let (_, id3) = env.key.verify(t["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(id3["aud"], "reports");
    assert!(id3["auth_time"].as_i64().unwrap() >= first_auth_time);

    // max_age: a session older than it asks for the password again; a younger one does not.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let young_enough = env.request("reports", &[("max_age", "3600")]);
    b.goto(&young_enough.url).await;
    arrival(&b, &env).await;
    let too_old = env.request("reports", &[("max_age", "1")]);
    b.goto(&too_old.url).await;
    wait_heading(&b, "Sign in").await;

    let cookies = b.cookies().await;
    let mut secrets: Vec<&str> = vec![
        PASSWORD,
        REPORTS_SECRET,
        &code,
        &code2,
        &code3,
        &second.verifier,
        &forced.verifier,
        &access,
        &refresh,
    ];
    secrets.extend(cookies.iter().map(|c| c.value.as_str()));
    env.assert_log_free_of(&secrets);
    b.quit().await;
}

#[tokio::test]
async fn wrong_passwords_get_one_message_and_lock_the_account() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let req = env.request("spa", &[]);
    b.goto(&req.url).await;
    sign_in(&b, "alice", WRONG).await;
    wait_heading(&b, "Sign in").await;
    assert_eq!(b.text_of("[role=alert]").await, FAILED);
    // The username is kept, the password is not.
    let fields = b
        .execute(
            "return [document.querySelector('[name=username]').value, document.querySelector('[name=password]').value]",
            vec![],
        )
        .await;
    assert_eq!(fields, serde_json::json!(["alice", ""]));
    // An unknown user: the same words (and a dummy hash, so the same time). Its name is
    // markup, echoed escaped into the form.
    let hostile = "\"><b id=injected>x</b>";
    sign_in(&b, hostile, WRONG).await;
    wait_heading(&b, "Sign in").await;
    assert_eq!(b.text_of("[role=alert]").await, FAILED);
    let echoed = b
        .execute(
            "return [document.querySelector('[name=username]').value, !!document.getElementById('injected')]",
            vec![],
        )
        .await;
    assert_eq!(echoed, serde_json::json!([hostile, false]));
    // Two more wrong passwords reach the limit of 3 per account.
    for _ in 0..2 {
        sign_in(&b, "alice", WRONG).await;
        wait_heading(&b, "Sign in").await;
    }
    // Locked: the right password now gets the same message, and no session.
    sign_in(&b, "alice", PASSWORD).await;
    wait_heading(&b, "Sign in").await;
    assert_eq!(b.text_of("[role=alert]").await, FAILED);
    assert!(
        b.cookies()
            .await
            .iter()
            .all(|c| c.name != "__Host-tollgate-session")
    );
    assert!(
        env.gw
            .metric("tollgate_auth_throttled_total{subject=\"user\"}")
            .await
            >= 1.0
    );
    env.assert_log_free_of(&[PASSWORD, WRONG]);
    b.quit().await;
}

#[tokio::test]
async fn forms_without_their_csrf_token_cookie_or_origin_are_refused() {
    let env = Env::start().await;
    let b = Browser::start().await;
    let req = env.request("spa", &[]);
    b.goto(&req.url).await;
    wait_heading(&b, "Sign in").await;
    // The form without its CSRF token: 403, and no sign-in.
    b.execute(
        "document.querySelector('input[name=csrf]').remove()",
        vec![],
    )
    .await;
    sign_in(&b, "alice", PASSWORD).await;
    wait_heading(&b, "Cannot continue").await;
    let seen = b.responses().await;
    assert_eq!(response(&seen, &env.url("/oauth2/v2/login")).status, 403);
    assert_page_headers(response(&seen, &env.url("/oauth2/v2/login")));

    // A CSRF token of another value: 403.
    b.goto(&req.url).await;
    wait_heading(&b, "Sign in").await;
    b.execute(
        "document.querySelector('input[name=csrf]').value = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'",
        vec![],
    )
    .await;
    sign_in(&b, "alice", PASSWORD).await;
    wait_heading(&b, "Cannot continue").await;

    // The right token but without the flow cookie (another browser): 403.
    b.goto(&req.url).await;
    wait_heading(&b, "Sign in").await;
    b.client().delete_all_cookies().await.unwrap();
    sign_in(&b, "alice", PASSWORD).await;
    wait_heading(&b, "Cannot continue").await;
    assert!(b.cookies().await.is_empty(), "no session was set");

    // Cookie and token right, but posted from another origin: 403.
    b.goto(&req.url).await;
    wait_heading(&b, "Sign in").await;
    let flow_cookie = cookie(&b.cookies().await, "__Host-tollgate-flow")
        .value
        .clone();
    let fields = b
        .execute(
            "return ['flow','csrf'].map(n => document.querySelector(`[name=${n}]`).value)",
            vec![],
        )
        .await;
    let post = |headers: &[(&'static str, String)]| {
        let mut r = env
            .http()
            .post(env.url("/oauth2/v2/login"))
            .header("cookie", format!("__Host-tollgate-flow={flow_cookie}"));
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r.form(&[
            ("flow", fields[0].as_str().unwrap()),
            ("csrf", fields[1].as_str().unwrap()),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
    };
    let null = || ("origin", "null".to_string());
    let site = |s: &str| ("sec-fetch-site", s.to_string());
    for refused in [
        vec![("origin", "https://evil.example".to_string())],
        vec![null(), site("cross-site")],
        vec![null(), site("same-site")],
        // An opaque origin (a sandboxed frame) and no fetch metadata.
        vec![null()],
    ] {
        let r = post(&refused).await.unwrap();
        assert_eq!(r.status(), 403, "{refused:?}");
    }
    // The same request from the gateway's own origin signs in (so each 403 was the
    // origin): as the browser sends it (`Origin: null` under no-referrer, and fetch
    // metadata), and with a real Origin.
    let ok = post(&[null(), site("same-origin")]).await.unwrap();
    assert_eq!(ok.status(), 303);
    assert!(
        ok.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/oauth2/v2/consent?flow=")
    );
    let own = Url::parse(&env.gw.base)
        .unwrap()
        .origin()
        .ascii_serialization();
    let ok = post(&[("origin", own)]).await.unwrap();
    assert_eq!(ok.status(), 303);
    env.assert_log_free_of(&[PASSWORD, &flow_cookie]);
    b.quit().await;
}

#[tokio::test]
async fn bad_authorization_requests_get_an_error_page_or_an_error_redirect() {
    let env = Env::start().await;
    let b = Browser::start().await;
    // An unregistered redirect URI, or an unknown client: a page, never a redirect.
    for (url, title) in [
        (
            env.authorize_url(
                "spa",
                &[
                    ("response_type", "code"),
                    ("redirect_uri", "https://evil.example/callback"),
                    ("state", "s"),
                ],
            ),
            "Unknown return address",
        ),
        (
            env.authorize_url(
                "spa",
                &[
                    ("response_type", "code"),
                    ("redirect_uri", &format!("{}/../x", env.callback())),
                ],
            ),
            "Unknown return address",
        ),
        (
            env.authorize_url(
                "nobody",
                &[("response_type", "code"), ("redirect_uri", &env.callback())],
            ),
            "Unknown application",
        ),
    ] {
        let (here, html) = page_of(&b, &url).await;
        assert_eq!(here.host_str(), Some("localhost"), "stayed at the gateway");
        assert!(html.contains(title), "{html}");
        let seen = b.responses().await;
        let r = response(&seen, &env.url("/oauth2/v2/authorize"));
        assert_eq!(r.status, 400);
        assert_page_headers(r);
    }
    // Once client and redirect URI are trusted, errors go back with state and iss.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let cb = env.callback();
    let base = [("redirect_uri", cb.as_str()), ("state", "st-1")];
    let cases: [(&[(&str, &str)], &str); 6] = [
        // The implicit grant is not offered (RFC 9700 §2.1.2).
        (&[("response_type", "token")], "unsupported_response_type"),
        // Nor request objects.
        (
            &[
                ("response_type", "code"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("request", "eyJhbGciOiJub25lIn0.e30."),
            ],
            "request_not_supported",
        ),
        // No PKCE: refused (RFC 9700 §2.1.1).
        (&[("response_type", "code")], "invalid_request"),
        (
            &[
                ("response_type", "code"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (
            &[
                ("response_type", "code"),
                ("code_challenge", "short"),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
        ),
        (
            &[
                ("response_type", "code"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("prompt", "none"),
            ],
            "login_required",
        ),
    ];
    for (params, error) in cases {
        let mut all = base.to_vec();
        all.extend_from_slice(params);
        let url = env.authorize_url("spa", &all);
        b.goto(&url).await;
        let back = arrival(&b, &env).await;
        assert_eq!(param(&back, "error").as_deref(), Some(error), "{params:?}");
        assert_eq!(param(&back, "state").as_deref(), Some("st-1"));
        assert_eq!(param(&back, "iss").as_deref(), Some(env.gw.base.as_str()));
        assert_eq!(param(&back, "code"), None);
    }
    // A repeated parameter (RFC 6749 §3.1): refused on a page, as nothing can be trusted.
    let twice = format!(
        "{}&redirect_uri={}",
        env.request("spa", &[]).url,
        "http%3A%2F%2F127.0.0.1%3A1%2Fcallback"
    );
    let (here, html) = page_of(&b, &twice).await;
    assert_eq!(here.host_str(), Some("localhost"));
    assert!(html.contains("is repeated"), "{html}");
    b.quit().await;
}
