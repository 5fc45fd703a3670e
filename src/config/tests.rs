//! Validation of whole config files, through `load`.

use super::*;

const HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHQ$0cS9Js2fVp3YdtNR1u9GJA";

pub(super) fn load_pair(
    gateway: &str,
    upstreams: &str,
) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tollgate.yaml"), gateway).unwrap();
    std::fs::write(dir.path().join("apis.yaml"), upstreams).unwrap();
    let r = load(&dir.path().join("tollgate.yaml"));
    (dir, r)
}

pub(super) fn errors(gateway: &str, upstreams: &str) -> Vec<(String, String)> {
    let (_d, r) = load_pair(gateway, upstreams);
    r.unwrap_err()
        .0
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect()
}

pub(super) fn has(errs: &[(String, String)], path: &str, fragment: &str) -> bool {
    errs.iter().any(|(p, m)| p == path && m.contains(fragment))
}

#[test]
fn an_empty_file_takes_every_default() {
    let (_d, r) = load_pair("", "");
    let c = r.unwrap();
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].addr.to_string(), "0.0.0.0:8080");
    assert_eq!(
        c.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9090")
    );
    assert_eq!(c.issuer, "http://127.0.0.1:8080");
    assert_eq!(c.tokens.leeway, Duration::from_secs(60));
    assert_eq!(c.tokens.access_token_lifetime, Duration::from_secs(900));
    assert!(matches!(
        c.tokens.signing_key,
        SigningKeySource::Generated {
            algorithm: Algorithm::ES256,
            ..
        }
    ));
    assert_eq!(c.validation_cache.max_entries, 100_000);
    assert_eq!(c.discovery_family, Family::Credential);
    assert_eq!(c.log.access_log, AccessLog::Text);
    assert!(c.log.request_id && !c.log.start_traces);
    assert!(c.apis.is_empty());
}

#[test]
fn relative_paths_follow_the_config_file() {
    let (dir, r) = load_pair(
        "upstreams_file: apis.yaml\nstate_dir: st\nissuer: https://gw.example/\n",
        "allow_empty: true\n",
    );
    let c = r.unwrap();
    assert_eq!(c.state_dir, dir.path().join("st"));
    if std::env::var_os("RUNTIME_DIRECTORY").is_none() {
        assert_eq!(c.server.pid_file, dir.path().join("st/tollgate.pid"));
        assert_eq!(c.server.upgrade_sock, dir.path().join("st/upgrade.sock"));
    }
    assert_eq!(c.issuer, "https://gw.example", "trailing slash dropped");
}

#[test]
fn apis_policies_and_credentials_are_cross_checked() {
    let errs = errors(
        "upstreams_file: apis.yaml\n",
        &format!(
            r#"
apis:
  - {{ name: a, prefix: /a, upstream: {{ servers: ["127.0.0.1:1"] }}, auth: jwt }}
  - {{ name: a, prefix: /a, upstream: {{ servers: ["127.0.0.1:1"] }}, auth: jwt }}
  - {{ name: open, prefix: /open, upstream: {{ servers: ["127.0.0.1:1"] }}, auth: none,
       rules: [{{ path: /open }}] }}
  - {{ name: wk, prefix: /.well-known/x, upstream: {{ servers: ["127.0.0.1:1"] }}, auth: none }}
  - {{ name: tls, prefix: /tls, upstream: {{ servers: ["127.0.0.1:1"], tls: {{}} }}, auth: none }}
policies:
  - {{ name: p, apis: [a, open], client_id: same, client_secret_hash: "{HASH}" }}
credentials:
  - {{ client_id: same, client_secret_hash: "{HASH}", acl: [], roles: ["has space"] }}
"#
        ),
    );
    assert!(has(&errs, "apis[1].name", "defined twice"), "{errs:?}");
    assert!(has(&errs, "apis[1].prefix", "already routes"), "{errs:?}");
    assert!(has(&errs, "apis[2].rules", "need `auth: jwt`"), "{errs:?}");
    assert!(has(&errs, "apis[3].prefix", "token service"), "{errs:?}");
    assert!(has(&errs, "apis[4].upstream.tls.sni", "needed"), "{errs:?}");
    assert!(has(&errs, "policies[0].apis[1]", "auth: none"), "{errs:?}");
    assert!(
        has(&errs, "credentials[0].client_id", "used twice"),
        "{errs:?}"
    );
    assert!(has(&errs, "credentials[0].acl", "at least one"), "{errs:?}");
    assert!(
        has(&errs, "credentials[0].roles[0]", "not a valid scope"),
        "{errs:?}"
    );
}

#[test]
fn upstream_settings_are_typed() {
    let (_d, r) = load_pair(
        "upstreams_file: apis.yaml\n",
        r#"
apis:
  - name: a
    prefix: /a
    host: API.Example
    upstream:
      servers: ["127.0.0.1:1", "localhost:2"]
      tls: { verify: false }
      host_header: { set: a.internal }
      read_timeout: 1m30s
      health_check: { kind: http, path: /healthz, interval: 2s }
    auth: jwt
    audience: orders-api
"#,
    );
    let c = r.unwrap();
    let a = &c.apis[0];
    assert_eq!(a.host.as_deref(), Some("api.example"));
    assert_eq!(a.audience, "orders-api");
    assert!(
        a.upstream.servers.len() >= 2,
        "localhost resolves to at least one address"
    );
    assert_eq!(a.upstream.host_header, HostHeader::Set("a.internal".into()));
    assert_eq!(a.upstream.read_timeout, Duration::from_secs(90));
    let hc = a.upstream.health_check.as_ref().unwrap();
    assert_eq!(
        hc.kind,
        HealthCheckKind::Http {
            path: "/healthz".into()
        }
    );
    assert_eq!(
        (hc.interval, hc.unhealthy_after, hc.healthy_after),
        (Duration::from_secs(2), 3, 2)
    );
    let tls = a.upstream.tls.as_ref().unwrap();
    assert!(!tls.verify);
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let (_d, r) = load_pair(
        "upstreams_file: apis.yaml\n",
        &format!(
            r#"
apis:
  - {{ name: a, prefix: /a, upstream: {{ servers: ["127.0.0.1:1"] }}, auth: jwt }}
credentials:
  - {{ client_id: c, client_secret_hash: "{HASH}", acl: [a] }}
"#
        ),
    );
    let c = r.unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("argon2id"), "{debug}");
    assert!(debug.contains("[redacted]"));
    assert_eq!(
        c.credentials[0].client.grant_types,
        vec![GrantType::ClientCredentials]
    );
}

#[test]
fn client_settings_are_checked_and_resolved() {
    let apis = r#"
apis:
  - { name: orders, prefix: /orders, upstream: { servers: ["127.0.0.1:1"] }, auth: jwt }
  - { name: billing, prefix: /billing, upstream: { servers: ["127.0.0.1:1"] }, auth: jwt }
"#;
    let good = format!(
        r#"{apis}
products:
  - {{ name: platform, apis: [orders, billing] }}
user_pools:
  - name: staff
    users:
      - {{ username: alice, password_hash: "{HASH}", roles: [orders:read], acl: [orders] }}
policies:
  - name: p
    kind: oauth2
    apis: [orders]
    client_id: pk
    client_secret_hash: "{HASH}"
    public: true
    grant_types: [password]
    user_pool: staff
    token: {{ refresh: true, refresh_token_lifetime: 7d, allow_url_parameters: true }}
credentials:
  - client_id: c
    client_secret_hash: "{HASH}"
    products: [platform]
    roles: [orders:read]
    token: {{ immortal: true, format: jwt }}
"#
    );
    let (_d, r) = load_pair("upstreams_file: apis.yaml\n", &good);
    let c = r.unwrap();
    let p = &c.policies[0];
    assert_eq!(p.kind, PolicyKind::Oauth2);
    assert!(p.client.public);
    assert!(p.client.token.opaque && !p.client.token.jwt);
    assert_eq!(
        p.client.token.refresh,
        Some(Duration::from_secs(7 * 86_400))
    );
    assert!(p.client.token.allow_url_parameters);
    assert!(
        p.client.grant_types.contains(&GrantType::RefreshToken),
        "refresh: true enables the grant"
    );
    let cred = &c.credentials[0];
    assert_eq!(
        cred.acl,
        ["orders", "billing"],
        "products expand into the ACL"
    );
    assert!(cred.client.token.immortal && cred.client.token.jwt && !cred.client.token.opaque);
    assert_eq!(
        c.user_pools[0].users[0].acl.as_deref(),
        Some(&["orders".to_string()][..])
    );

    let bad = format!(
        r#"{apis}
user_pools:
  - {{ name: staff, users: [{{ username: bob, password_hash: nope }}, {{ username: bob, password_hash: "{HASH}" }}] }}
policies:
  - {{ name: p, apis: [orders], client_id: pk, client_secret_hash: "{HASH}", grant_types: [password],
       token: {{ format: opaque }} }}
credentials:
  - {{ client_id: c, client_secret_hash: "{HASH}", products: [nope],
       user_pool: missing, token: {{ immortal: true, refresh: true }} }}
  - {{ client_id: d, client_secret_hash: "{HASH}", acl: [orders], grant_types: [refresh_token] }}
"#
    );
    let errs = errors("upstreams_file: apis.yaml\n", &bad);
    assert!(
        has(&errs, "user_pools[0].users[0].password_hash", "PHC"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "user_pools[0].users[1].username", "twice"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "policies[0].user_pool", "needs a user pool"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "policies[0].token.format", "comes from its `kind`"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "credentials[0].products[0]", "no product"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "credentials[1].grant_types", "refresh: true"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "credentials[0].user_pool", "no user pool"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "credentials[0].token.refresh", "never refreshed"),
        "{errs:?}"
    );
}

#[test]
fn text_is_validated_like_the_files_it_stands_for() {
    let gateway = "upstreams_file: apis.yaml\nissuer: https://gw.example\n";
    let upstreams = |second_prefix: &str| {
        format!(
            r#"
apis:
  - {{ name: a, prefix: /a, upstream: {{ servers: ["127.0.0.1:1"] }}, auth: jwt }}
  - {{ name: b, prefix: {second_prefix}, upstream: {{ servers: ["127.0.0.1:1"] }}, auth: jwt }}
"#
        )
    };
    let from_files = errors(gateway, &upstreams("/a"));
    // Nothing is read: the directory holds no file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.yaml");
    let from_text: Vec<(String, String)> = parse(&path, gateway, &upstreams("/a"))
        .unwrap_err()
        .0
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect();
    assert!(
        has(&from_text, "apis[1].prefix", "already routes"),
        "{from_text:?}"
    );
    assert_eq!(from_text, from_files);
    let c = parse(&path, gateway, &upstreams("/b")).unwrap();
    assert_eq!(c.apis.len(), 2);
    assert_eq!(c.issuer, "https://gw.example");
}

#[test]
fn the_store_section_takes_only_the_keys_of_its_kind() {
    // No kind: the embedded store.
    let (_d, r) = load_pair("store: { file: t.db, sync: normal }\n", "");
    match r.unwrap().store.backend {
        StoreBackend::Sqlite { file, sync } => {
            assert!(file.ends_with("t.db"));
            assert_eq!(sync, StoreSync::Normal);
        }
        StoreBackend::Redis(_) => panic!("the default kind is sqlite"),
    }
    let (_d, r) = load_pair(
        "store: { kind: redis, url: redis://127.0.0.1:6379/0, timeout: 1s }\ntokens: { signing_key: { algorithm: ES256 } }\n",
        "",
    );
    // A generated key in a shared store needs the encryption key: refused, at its key.
    let errs: Vec<_> = r.unwrap_err().0.into_iter().map(|e| e.path).collect();
    assert_eq!(errs, ["store.encryption_key_file"]);
    // A Redis key on the embedded store, and a Redis store without its URL, are refused
    // by the file format itself.
    let errs = errors("store: { kind: sqlite, url: redis://x:1/0 }\n", "");
    assert!(has(&errs, "store", "unknown field `url`"), "{errs:?}");
    let errs = errors("store: { kind: redis }\n", "");
    assert!(has(&errs, "store", "missing field `url`"), "{errs:?}");
    let errs = errors("store: { kind: memcached }\n", "");
    assert!(
        has(&errs, "store.kind", "unknown variant `memcached`"),
        "{errs:?}"
    );
}

#[test]
fn operations_and_identity_are_checked_at_their_key_paths() {
    let errs = errors(
        "upstreams_file: apis.yaml\nidentity: { headers: { subject: host, scope: off }, remove_prefixes: [x-], phantom_lifetime: 2s }\n",
        r#"
apis:
  - name: a
    prefix: /a
    upstream: { servers: ["127.0.0.1:1"] }
    auth: jwt
    rules:
      - { path: /a/docs, auth: none, all_of: [read] }
      - { path: /a/open, auth: none }
    identity: { claims: { x-roles: "realm..roles", x-api-key: sub }, headers: { client_id: x-roles } }
  - name: b
    prefix: /b
    upstream: { servers: ["127.0.0.1:1"] }
    auth: none
    rules: [{ path: /b/w, auth: api_key, all_of: [write] }]
"#,
    );
    assert!(
        has(&errs, "identity.headers.subject", "gateway sets"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "identity.remove_prefixes[0]", "at least 3"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "identity.phantom_lifetime", "between"),
        "{errs:?}"
    );
    assert!(has(&errs, "apis[0].rules[0]", "auth: none"), "{errs:?}");
    assert!(
        !errs.iter().any(|(p, _)| p.starts_with("apis[0].rules[1]")),
        "a public operation without scopes is fine: {errs:?}"
    );
    assert!(
        has(&errs, "apis[0].identity.claims.x-roles", "empty segment"),
        "{errs:?}"
    );
    assert!(has(&errs, "apis[0].identity", "API-key header"), "{errs:?}");
    // A protected operation under a public API is fine, and its scopes are checked.
    assert!(
        !errs.iter().any(|(p, _)| p.starts_with("apis[1]")),
        "{errs:?}"
    );
    // Every API gets the gateway's identity unless it says otherwise.
    let (_d, r) = load_pair(
        "upstreams_file: apis.yaml\nidentity: { headers: { method: off }, credential: strip }\n",
        "apis: [{ name: a, prefix: /a, upstream: { servers: [\"127.0.0.1:1\"] }, auth: jwt, identity: { credential: phantom } }, { name: b, prefix: /b, upstream: { servers: [\"127.0.0.1:1\"] }, auth: jwt }]\n",
    );
    let c = r.unwrap();
    assert_eq!(c.apis[0].identity.credential, CredentialMode::Phantom);
    assert_eq!(c.apis[1].identity.credential, CredentialMode::Strip);
    assert!(c.apis[1].identity.headers.method.is_none());
    assert_eq!(
        c.apis[1]
            .identity
            .headers
            .subject
            .as_ref()
            .map(|h| h.as_str()),
        Some("x-auth-subject")
    );
}

#[test]
fn issuer_key_lifetimes_must_nest_and_say_which_key_to_set() {
    let issuer = |keys: &str| {
        format!(
            r#"
issuers:
  - {{ name: corp, issuer: "https://login.example.com", audiences: [t], keys: {keys} }}
"#
        )
    };
    let errs = errors(
        "upstreams_file: apis.yaml\n",
        &issuer("{ min_lifetime: 30m }"),
    );
    assert!(
        has(
            &errs,
            "issuers[0].keys.default_lifetime",
            "10m (the lifetime of a key set whose response has no max-age) must lie between keys.min_lifetime (30m) and keys.max_lifetime (1d): set keys.default_lifetime too"
        ),
        "{errs:?}"
    );
    assert_eq!(errs.len(), 1, "reported once: {errs:?}");
    let errs = errors(
        "upstreams_file: apis.yaml\n",
        &issuer("{ min_lifetime: 2d, fetch_timeout: 0s }"),
    );
    assert!(
        has(
            &errs,
            "issuers[0].keys.min_lifetime",
            "2d is longer than keys.max_lifetime (1d)"
        ),
        "{errs:?}"
    );
    assert!(
        has(&errs, "issuers[0].keys.fetch_timeout", "more than 0"),
        "{errs:?}"
    );
    let (_d, r) = load_pair(
        "upstreams_file: apis.yaml\n",
        &issuer("{ min_lifetime: 30m, default_lifetime: 1h }"),
    );
    assert!(r.is_ok(), "{:?}", r.err());
}
