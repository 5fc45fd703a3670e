//! Every grant on both families and on the per-API endpoint, driven by the `oauth2` crate
//! (reqwest only where the crate cannot express a case), against the running gateway.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::oauth::*;
use oauth2::{
    AccessToken, AuthType, RefreshToken, ResourceOwnerPassword, ResourceOwnerUsername, Scope,
    StandardRevocableToken, TokenIntrospectionResponse, TokenResponse,
};
use serde_json::Value;

fn scope_of(t: &oauth2::basic::BasicTokenResponse) -> Vec<String> {
    t.scopes()
        .map(|s| s.iter().map(|x| x.to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn discovery_alone_runs_every_flow() {
    let (_up, gw) = start("10s").await;
    let http = gw.client();
    let client = discovered_client(&gw, "reporting", "reporting-secret").await;

    // client_credentials, narrowed to one scope.
    let cc = client
        .exchange_client_credentials()
        .add_scope(Scope::new("orders:read".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(scope_of(&cc), ["orders:read"]);
    assert!(cc.refresh_token().is_some());
    assert_eq!(
        call(&gw, "/orders/1", cc.access_token().secret()).await,
        200
    );
    assert_eq!(
        claims(cc.access_token().secret())["aud"],
        serde_json::json!(["orders", "billing"])
    );

    // password: the user's roles become the scopes.
    let pw = client
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new("alice-pw".into()),
        )
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(scope_of(&pw), ["orders:read", "billing:read"]);
    let c = claims(pw.access_token().secret());
    assert_eq!(
        (c["sub"].as_str(), c["username"].as_str()),
        (Some("alice"), Some("alice"))
    );
    assert_eq!(
        call(&gw, "/billing/1", pw.access_token().secret()).await,
        200
    );

    // refresh: a new pair, the old refresh token spent.
    let r1 = client
        .exchange_refresh_token(pw.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    assert_ne!(
        r1.refresh_token().unwrap().secret(),
        pw.refresh_token().unwrap().secret()
    );
    assert_eq!(
        claims(r1.access_token().secret())["gid"],
        c["gid"],
        "same grant"
    );

    // introspection: live access token, live refresh token, spent refresh token.
    let intro = client
        .introspect(r1.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(intro.active());
    assert_eq!(intro.username(), Some("alice"));
    assert_eq!(intro.client_id().map(|c| c.as_str()), Some("reporting"));
    assert!(intro.exp().is_some() && intro.iat().is_some());
    let as_access = |r: &RefreshToken| AccessToken::new(r.secret().clone());
    let live = client
        .introspect(&as_access(r1.refresh_token().unwrap()))
        .request_async(&http)
        .await
        .unwrap();
    assert!(live.active());
    let spent = client
        .introspect(&as_access(pw.refresh_token().unwrap()))
        .request_async(&http)
        .await
        .unwrap();
    assert!(!spent.active());

    // revocation: the proxy refuses the token on the next request.
    client
        .revoke_token(StandardRevocableToken::AccessToken(
            r1.access_token().clone(),
        ))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        call(&gw, "/billing/1", r1.access_token().secret()).await,
        401
    );
    let after = client
        .introspect(r1.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(!after.active());
    assert!(
        gw.metric("tollgate_token_validations_total{outcome=\"revoked\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_public_jwt_policy_runs_password_and_regenerate_with_a_dash_secret() {
    let (_up, gw) = start("10s").await;
    let http = gw.client();
    let web = family_client(&gw, "auth", "/auth/jwt", "web-app", "-")
        .set_auth_type(AuthType::RequestBody);
    let t = web
        .exchange_password(
            &ResourceOwnerUsername::new("bob".into()),
            &ResourceOwnerPassword::new("bob-pw".into()),
        )
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(claims(t.access_token().secret())["aud"], "orders");
    assert_eq!(call(&gw, "/orders/1", t.access_token().secret()).await, 200);
    // /auth/jwt/regenerate refreshes a JWT.
    let regen = family_client(&gw, "auth", "/auth/jwt/regenerate", "web-app", "-")
        .set_auth_type(AuthType::RequestBody);
    let r = regen
        .exchange_refresh_token(t.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(call(&gw, "/orders/1", r.access_token().secret()).await, 200);
    // The dash is not a secret for the client_credentials grant, nor a password.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "web-app"),
        ("client_secret", "-"),
    ];
    let res = http
        .post(format!("{}/auth/jwt", gw.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let wrong = web
        .exchange_password(
            &ResourceOwnerUsername::new("bob".into()),
            &ResourceOwnerPassword::new("nope".into()),
        )
        .request_async(&http)
        .await;
    let body = format!("{wrong:?}");
    assert!(body.contains("invalid_grant"), "{body}");
    // regenerate takes only refresh tokens.
    let res = http
        .post(format!("{}/auth/jwt/regenerate", gw.base))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "web-app"),
            ("client_secret", "-"),
            ("username", "bob"),
            ("password", "bob-pw"),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn an_oauth2_policy_issues_opaque_tokens_also_by_url_parameters() {
    let (_up, gw) = start("10s").await;
    let http = gw.client();
    let legacy = family_client(&gw, "auth", "/auth/token", "legacy-key", "legacy-secret");
    let t = legacy
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    let token = t.access_token().secret();
    assert!(
        token.starts_with("tga_") && !token.contains('.'),
        "opaque: {token}"
    );
    assert!(t.refresh_token().unwrap().secret().starts_with("tgr_"));
    assert_eq!(call(&gw, "/orders/1", token).await, 200);
    assert_eq!(call(&gw, "/billing/1", token).await, 200);
    // The refresh token is not an access token.
    assert_eq!(
        call(&gw, "/orders/1", t.refresh_token().unwrap().secret()).await,
        401
    );
    let intro = legacy
        .introspect(t.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(intro.active());
    assert_eq!(intro.client_id().map(|c| c.as_str()), Some("legacy-key"));
    // Opaque refresh gives opaque tokens.
    let r = legacy
        .exchange_refresh_token(t.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    assert!(r.access_token().secret().starts_with("tga_"));
    // This policy's kind is oauth2: no JWTs for it.
    let jwt = family_client(&gw, "auth", "/auth/jwt", "legacy-key", "legacy-secret")
        .exchange_client_credentials()
        .request_async(&http)
        .await;
    assert!(
        format!("{jwt:?}").contains("unauthorized_client"),
        "{jwt:?}"
    );

    // URL parameters: allowed for this policy, 405 with error JSON for others.
    let get = http
        .get(format!(
            "{}/auth/token?grant_type=client_credentials&client_id=legacy-key&client_secret=legacy-secret",
            gw.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["cache-control"], "no-store");
    let get = http
        .get(format!(
            "{}/credential/token?grant_type=client_credentials&client_id=reporting&client_secret=reporting-secret",
            gw.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let v: Value = get.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
    // The secret in a query string never reaches the log.
    assert!(!gw.log().contains("legacy-secret"), "{}", gw.log());
}

#[tokio::test]
async fn the_per_api_endpoint_pins_audience_and_intersects_scopes() {
    let (_up, gw) = start("10s").await;
    let http = gw.client();
    let url = "/orders/oauth2/v2/token";
    let reporting = family_client(&gw, "credential", url, "reporting", "reporting-secret");
    // Granted [orders:read, billing:read] ∩ declared by orders [orders:read, orders:write].
    let t = reporting
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(scope_of(&t), ["orders:read"]);
    assert!(t.refresh_token().is_none());
    let c = claims(t.access_token().secret());
    assert_eq!(c["aud"], "orders");
    assert_eq!(call(&gw, "/orders/1", t.access_token().secret()).await, 200);
    assert_eq!(
        call(&gw, "/billing/1", t.access_token().secret()).await,
        401
    );
    // A scope the API does not declare cannot be had here.
    let e = reporting
        .exchange_client_credentials()
        .add_scope(Scope::new("billing:read".into()))
        .request_async(&http)
        .await;
    assert!(format!("{e:?}").contains("invalid_scope"), "{e:?}");
    // A credential without the API in its ACL.
    let e = family_client(&gw, "credential", url, "auditor", "auditor-secret")
        .exchange_client_credentials()
        .request_async(&http)
        .await;
    assert!(format!("{e:?}").contains("unauthorized_client"), "{e:?}");
    // Policy keys do not get tokens here.
    let e = family_client(&gw, "credential", url, "legacy-key", "legacy-secret")
        .exchange_client_credentials()
        .request_async(&http)
        .await;
    assert!(format!("{e:?}").contains("invalid_client"), "{e:?}");
}

#[tokio::test]
async fn immortal_tokens_carry_no_expiry() {
    let (_up, gw) = start("10s").await;
    let http = gw.client();
    let forever = family_client(
        &gw,
        "credential",
        "/credential/jwt",
        "forever",
        "forever-secret",
    );
    let t = forever
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    assert!(t.expires_in().is_none());
    assert!(claims(t.access_token().secret()).get("exp").is_none());
    assert_eq!(call(&gw, "/orders/1", t.access_token().secret()).await, 200);
    let intro = forever
        .introspect(t.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(intro.active() && intro.exp().is_none());
    let opaque = family_client(
        &gw,
        "credential",
        "/credential/token",
        "forever",
        "forever-secret",
    )
    .exchange_client_credentials()
    .request_async(&http)
    .await
    .unwrap();
    assert!(opaque.expires_in().is_none());
    assert_eq!(
        call(&gw, "/orders/1", opaque.access_token().secret()).await,
        200
    );
}

#[tokio::test]
async fn the_credential_family_refreshes_at_regenerate_and_issues_opaque_user_tokens() {
    let (_up, gw) = start("10s").await;
    let http = gw.client();
    let opaque = family_client(
        &gw,
        "credential",
        "/credential/token",
        "reporting",
        "reporting-secret",
    );
    let t = opaque
        .exchange_password(
            &ResourceOwnerUsername::new("bob".into()),
            &ResourceOwnerPassword::new("bob-pw".into()),
        )
        .request_async(&http)
        .await
        .unwrap();
    assert!(t.access_token().secret().starts_with("tga_"));
    // Bob's ACL keeps his token to orders.
    assert_eq!(call(&gw, "/orders/1", t.access_token().secret()).await, 200);
    assert_eq!(
        call(&gw, "/billing/1", t.access_token().secret()).await,
        401
    );
    let intro = opaque
        .introspect(t.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(intro.username(), Some("bob"));
    // The same grant continues as JWTs at /credential/jwt/regenerate.
    let regen = family_client(
        &gw,
        "credential",
        "/credential/jwt/regenerate",
        "reporting",
        "reporting-secret",
    );
    let j = regen
        .exchange_refresh_token(t.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(claims(j.access_token().secret())["username"], "bob");
    assert_eq!(call(&gw, "/orders/1", j.access_token().secret()).await, 200);
    let issued = gw
        .metric("tollgate_tokens_issued_total{endpoint=\"/credential/jwt/regenerate\",grant=\"refresh_token\"}")
        .await;
    assert_eq!(issued, 1.0);
}
