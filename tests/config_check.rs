//! `tollgate -t`: exit 0 on a good config, exit 1 naming every error with its key path.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

fn run_check(conf: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(common::binary())
        .arg("-t")
        .arg("-c")
        .arg(conf)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_config_passes() {
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tollgate.yaml");
    let (ok, stdout, stderr) = run_check(&conf);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("is ok"), "{stdout}");
}

#[test]
fn a_broken_config_names_every_error() {
    let dir = tempfile::tempdir().unwrap();
    common::write_file(
        dir.path(),
        "tollgate.yaml",
        r#"
listen:
  - addr: "localhost:80"
  - addr: 127.0.0.1:8081
    tls: { cert: missing-cert.pem, key: missing-key.pem }
metrics: { listen: "nope" }
issuer: ftp://gateway
upstreams_file: upstreams.yaml
server: { threads: 0, grace_period: "10 seconds" }
tokens:
  leeway: 5
  signing_key: { algorithm: HS256 }
log: { level: loud }
unknown_section: true
"#,
    );
    common::write_file(
        dir.path(),
        "upstreams.yaml",
        r#"
apis:
  - name: orders
    prefix: orders
    upstream: { servers: ["no-port-here"], connect_timeout: 1x }
    auth: jwt
    rules:
      - { path: "/orders/**/x", all_of: ["bad scope"] }
  - name: shadow
    prefix: /auth/tokens
    upstream: { servers: ["127.0.0.1:9"] }
    auth: jwtt
  - name: open
    prefix: /open
    upstream: { servers: ["127.0.0.1:9"], host_header: maybe }
    auth: none
    rules:
      - { path: /open/** }
  - name: many
    prefix: many
    upstream: { servers: ["no-port-either"] }
    auth: bogus
    strip_prefix: maybe
    colour: red
policies:
  - name: p
    apis: [nope]
    client_id: dup
    client_secret_hash: "plain"
credentials:
  - client_id: dup
    client_secret_hash: "$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHQ$0cS9Js2fVp3YdtNR1u9GJA"
    acl: [open]
    scopez: [x]
"#,
    );
    let (ok, _, stderr) = run_check(&dir.path().join("tollgate.yaml"));
    assert!(!ok);
    let expected = [
        "listen[0].addr",
        "listen[1].tls.cert",
        "listen[1].tls.key",
        "metrics.listen",
        "issuer",
        "server.threads",
        "server.grace_period",
        "tokens.leeway",
        "tokens.signing_key.algorithm",
        "log.level",
        "unknown_section",
        "apis[0].prefix",
        "apis[0].upstream.servers[0]",
        "apis[0].upstream.connect_timeout",
        "apis[0].rules[0].path",
        "apis[0].rules[0].all_of[0]",
        "apis[1].auth",
        "apis[2].upstream.host_header",
        // One bad value does not hide the entry's other errors.
        "apis[3].auth",
        "apis[3].strip_prefix",
        "apis[3].colour",
        "apis[3].prefix",
        "apis[3].upstream.servers[0]",
        "policies[0].apis[0]",
        "policies[0].client_secret_hash",
        "credentials[0].scopez",
    ];
    for path in expected {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!(": {path}: ")) || l.contains(&format!(": {path}."))),
            "no error for `{path}` in:\n{stderr}"
        );
    }
    assert!(stderr.contains("error(s)"), "{stderr}");
}

#[test]
fn a_missing_config_file_is_reported() {
    let (ok, _, stderr) = run_check(std::path::Path::new("/nonexistent/tollgate.yaml"));
    assert!(!ok);
    assert!(stderr.contains("cannot read the file"), "{stderr}");
}

#[test]
fn yaml_syntax_errors_are_reported_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let conf = common::write_file(dir.path(), "tollgate.yaml", "listen: [\n  - addr: 1\n");
    let (ok, _, stderr) = run_check(&conf);
    assert!(!ok);
    assert!(stderr.contains("line"), "{stderr}");
}
