//! Reloads that cannot empty the gateway: an upstreams file that would take every API or
//! every credential away is refused on SIGHUP (and a file that declares nothing by `-t`)
//! unless it says `allow_empty: true`; the running configuration serves on meanwhile.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::process::Command;

fn apis(up: &Upstream) -> String {
    format!(
        "apis:\n  - {{ name: open, prefix: /open, upstream: {{ servers: [\"{}\"] }}, auth: jwt }}\n",
        up.addr
    )
}

/// A client of the API.
fn credentials() -> String {
    format!(
        "credentials:\n  - {{ client_id: app, client_secret_hash: \"{}\", acl: [open] }}\n",
        cheap_hash("app-secret")
    )
}

/// Write `text` as the upstreams file, SIGHUP, and wait for the gateway's verdict: whether
/// it reloaded, and its log.
async fn reload(gw: &Gateway, text: &str) -> (bool, String) {
    let before = gw.log();
    std::fs::write(gw.dir.path().join("upstreams.yaml"), text).unwrap();
    gw.signal("HUP");
    for _ in 0..500 {
        let log = gw.log();
        let new = log.get(before.len()..).unwrap_or_default().to_string();
        if new.contains("reloaded the upstreams file") {
            return (true, new);
        }
        if new.contains("reload refused") {
            return (false, new);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no reload verdict:\n{}", gw.log());
}

/// The API's answer to a request without a token: 401 while it is configured, 404 once not.
async fn status(gw: &Gateway) -> u16 {
    reqwest::get(gw.url("/open/x"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn token_status(gw: &Gateway) -> u16 {
    gw.client()
        .post(gw.url("/credential/jwt"))
        .basic_auth("app", Some("app-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_that_would_empty_the_gateway_is_refused_unless_meant() {
    let up = start_upstream().await;
    let gw = Gateway::start(
        GatewaySpec::new(apis(&up) + &credentials()),
        &TestKey::generate(),
    )
    .await;
    assert_eq!((status(&gw).await, token_status(&gw).await), (401, 200));

    // An emptied file, a file cut before its credentials, one cut before its APIs.
    for (text, lost) in [
        (String::new(), "declares nothing"),
        (
            "\n# nothing but a comment\n".to_string(),
            "declares nothing",
        ),
        (apis(&up), "every credential (1 running, 0 in the file)"),
        (
            "products: []\n".to_string(),
            "every API (1 running, 0 in the file) and every credential",
        ),
    ] {
        let (reloaded, log) = reload(&gw, &text).await;
        assert!(!reloaded, "{text:?} was accepted:\n{log}");
        assert!(log.contains(lost), "{text:?}:\n{log}");
        assert!(log.contains("allow_empty: true"), "{log}");
        // The running configuration still serves, APIs and credentials alike.
        assert_eq!((status(&gw).await, token_status(&gw).await), (401, 200));
    }

    // Said to be meant: the API (404) and the client (401) go.
    let (reloaded, log) = reload(&gw, "allow_empty: true\n").await;
    assert!(reloaded, "{log}");
    assert_eq!((status(&gw).await, token_status(&gw).await), (404, 401));
    // From an empty catalog, a file with APIs again is a plain reload.
    let (reloaded, log) = reload(&gw, &(apis(&up) + &credentials())).await;
    assert!(reloaded, "{log}");
    assert_eq!(status(&gw).await, 401);
}

#[test]
fn the_check_refuses_a_file_that_declares_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_file(
        dir.path(),
        "tollgate.yaml",
        "listen: [{ addr: 127.0.0.1:0 }]\nstate_dir: state\nupstreams_file: upstreams.yaml\n",
    );
    let check = || {
        let out = Command::new(binary())
            .args(["-t", "-c"])
            .arg(&conf)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for text in ["", "# apis: moved elsewhere\n"] {
        write_file(dir.path(), "upstreams.yaml", text);
        let (ok, said) = check();
        assert!(!ok, "{text:?}");
        assert!(
            said.contains("upstreams.yaml: the file declares nothing"),
            "{said}"
        );
        assert!(said.contains("allow_empty: true"), "{said}");
    }
    write_file(dir.path(), "upstreams.yaml", "allow_empty: true\n");
    let (ok, said) = check();
    assert!(ok, "{said}");
    write_file(dir.path(), "upstreams.yaml", "allow_empty: sure\n");
    let (ok, said) = check();
    assert!(!ok);
    assert!(said.contains("upstreams.yaml: allow_empty: "), "{said}");
}
