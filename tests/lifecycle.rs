//! What happens to tokens over time: refresh rotation and reuse detection, concurrent
//! refreshes, revocation, configuration changes, and a `kill -9` of the gateway.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::oauth::*;
use oauth2::{
    AccessToken, RefreshToken, ResourceOwnerPassword, ResourceOwnerUsername,
    StandardRevocableToken, TokenIntrospectionResponse, TokenResponse,
};

fn alice() -> (ResourceOwnerUsername, ResourceOwnerPassword) {
    (
        ResourceOwnerUsername::new("alice".into()),
        ResourceOwnerPassword::new("alice-pw".into()),
    )
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_whole_grant() {
    let (_up, gw) = start("0s").await;
    let http = gw.client();
    let c = discovered_client(&gw, "reporting", "reporting-secret").await;
    let (u, p) = alice();
    let t0 = c
        .exchange_password(&u, &p)
        .request_async(&http)
        .await
        .unwrap();
    let t1 = c
        .exchange_refresh_token(t0.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        call(&gw, "/orders/1", t1.access_token().secret()).await,
        200
    );

    // The spent refresh token comes back: theft is assumed, the grant is revoked.
    let reuse = c
        .exchange_refresh_token(t0.refresh_token().unwrap())
        .request_async(&http)
        .await;
    assert!(format!("{reuse:?}").contains("invalid_grant"), "{reuse:?}");
    let next = c
        .exchange_refresh_token(t1.refresh_token().unwrap())
        .request_async(&http)
        .await;
    assert!(format!("{next:?}").contains("invalid_grant"), "{next:?}");
    for t in [&t0, &t1] {
        assert_eq!(call(&gw, "/orders/1", t.access_token().secret()).await, 401);
    }
    assert!(
        gw.wait_for_log("refresh token reused").await,
        "{}",
        gw.log()
    );
}

#[tokio::test]
async fn concurrent_refreshes_within_the_grace_period_both_succeed() {
    let (_up, gw) = start("30s").await;
    let http = gw.client();
    let c = discovered_client(&gw, "reporting", "reporting-secret").await;
    let (u, p) = alice();
    let t0 = c
        .exchange_password(&u, &p)
        .request_async(&http)
        .await
        .unwrap();
    let r0 = t0.refresh_token().unwrap();
    let (a, b) = tokio::join!(
        c.exchange_refresh_token(r0).request_async(&http),
        c.exchange_refresh_token(r0).request_async(&http)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(
        a.refresh_token().unwrap().secret(),
        b.refresh_token().unwrap().secret()
    );
    for t in [&a, &b] {
        assert_eq!(call(&gw, "/orders/1", t.access_token().secret()).await, 200);
        // Each successor is a working refresh token.
        c.exchange_refresh_token(t.refresh_token().unwrap())
            .request_async(&http)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn revocation_is_limited_to_the_clients_own_tokens() {
    let (_up, gw) = start("10s").await;
    let http = gw.client();
    let reporting = discovered_client(&gw, "reporting", "reporting-secret").await;
    let auditor = discovered_client(&gw, "auditor", "auditor-secret").await;
    let t = reporting
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();

    // Another client may not revoke it; an unknown token is fine (RFC 7009 §2.2).
    let e = auditor
        .revoke_token(StandardRevocableToken::AccessToken(
            t.access_token().clone(),
        ))
        .unwrap()
        .request_async(&http)
        .await;
    assert!(format!("{e:?}").contains("unauthorized_client"), "{e:?}");
    assert_eq!(call(&gw, "/orders/1", t.access_token().secret()).await, 200);
    auditor
        .revoke_token(StandardRevocableToken::AccessToken(AccessToken::new(
            "no-such-token".into(),
        )))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();

    // Introspection shows a token only to its client and to clients of its APIs.
    let pinned = family_client(
        &gw,
        "credential",
        "/orders/oauth2/v2/token",
        "reporting",
        "reporting-secret",
    )
    .exchange_client_credentials()
    .request_async(&http)
    .await
    .unwrap();
    let seen = auditor
        .introspect(pinned.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(!seen.active(), "the auditor calls billing only");
    let own = reporting
        .introspect(pinned.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(own.active());

    // Revoking a refresh token revokes its grant's access tokens too (RFC 7009 §2.1).
    let (u, p) = alice();
    let pw = reporting
        .exchange_password(&u, &p)
        .request_async(&http)
        .await
        .unwrap();
    reporting
        .revoke_token(StandardRevocableToken::RefreshToken(
            pw.refresh_token().unwrap().clone(),
        ))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        call(&gw, "/orders/1", pw.access_token().secret()).await,
        401
    );

    // An opaque access token, revoked.
    let legacy = family_client(&gw, "auth", "/auth/token", "legacy-key", "legacy-secret");
    let o = legacy
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(call(&gw, "/orders/1", o.access_token().secret()).await, 200);
    legacy
        .revoke_token(StandardRevocableToken::AccessToken(
            o.access_token().clone(),
        ))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(call(&gw, "/orders/1", o.access_token().secret()).await, 401);
}

#[tokio::test]
async fn removing_an_acl_entry_or_a_user_takes_effect_at_once() {
    let (_up, mut gw) = start("10s").await;
    let http = gw.client();
    let c = discovered_client(&gw, "reporting", "reporting-secret").await;
    let cc = c
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    let (u, p) = alice();
    let user = c
        .exchange_password(&u, &p)
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        call(&gw, "/billing/1", cc.access_token().secret()).await,
        200
    );
    assert_eq!(
        call(&gw, "/orders/1", user.access_token().secret()).await,
        200
    );

    // New configuration: billing leaves the credential's ACL, alice leaves the pool.
    let path = gw.dir.path().join("upstreams.yaml");
    let catalog = std::fs::read_to_string(&path).unwrap();
    let catalog = catalog.replace(
        "    products: [platform]\n    roles: [orders:read, billing:read]",
        "    acl: [orders]\n    roles: [orders:read, billing:read]",
    );
    let catalog: String = catalog
        .lines()
        .filter(|l| !l.contains("username: alice"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, catalog).unwrap();
    gw.kill();
    gw.spawn().await;

    // The tokens have not expired, but the configuration no longer permits them.
    assert_eq!(
        call(&gw, "/billing/1", cc.access_token().secret()).await,
        401
    );
    assert_eq!(
        call(&gw, "/orders/1", cc.access_token().secret()).await,
        200
    );
    assert_eq!(
        call(&gw, "/orders/1", user.access_token().secret()).await,
        401
    );
    assert!(
        gw.metric("tollgate_token_validations_total{outcome=\"not_permitted\"}")
            .await
            >= 2.0
    );
    let refresh = c
        .exchange_refresh_token(user.refresh_token().unwrap())
        .request_async(&http)
        .await;
    assert!(
        format!("{refresh:?}").contains("invalid_grant"),
        "{refresh:?}"
    );
}

#[tokio::test]
async fn issued_and_revoked_tokens_survive_kill_9() {
    let (_up, mut gw) = start("10s").await;
    let http = gw.client();
    let legacy = family_client(&gw, "auth", "/auth/token", "legacy-key", "legacy-secret");
    let opaque = legacy
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    let reporting = discovered_client(&gw, "reporting", "reporting-secret").await;
    let (u, p) = alice();
    let jwt = reporting
        .exchange_password(&u, &p)
        .request_async(&http)
        .await
        .unwrap();
    let revoked = reporting
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    reporting
        .revoke_token(StandardRevocableToken::AccessToken(
            revoked.access_token().clone(),
        ))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();

    gw.kill(); // SIGKILL: nothing is flushed on the way out
    gw.spawn().await;

    assert_eq!(
        call(&gw, "/orders/1", opaque.access_token().secret()).await,
        200
    );
    assert_eq!(
        call(&gw, "/orders/1", revoked.access_token().secret()).await,
        401
    );
    let o2 = legacy
        .exchange_refresh_token(opaque.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        call(&gw, "/orders/1", o2.access_token().secret()).await,
        200
    );
    let j2 = reporting
        .exchange_refresh_token(jwt.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        call(&gw, "/billing/1", j2.access_token().secret()).await,
        200
    );
    let live = reporting
        .introspect(&AccessToken::new(
            j2.refresh_token()
                .map(RefreshToken::secret)
                .unwrap()
                .clone(),
        ))
        .request_async(&http)
        .await
        .unwrap();
    assert!(live.active());
}
