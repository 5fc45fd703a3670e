//! The admin API against the real gateway: its OpenAPI document is served and every
//! operation it documents answers as documented; the refusals (keys, scopes, paths,
//! methods, bodies, versions, file entries, guessing); it is absent from the public
//! listener; and the audit log has a line per call and never a secret.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::admin::{KEY, READER, section};
use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{up}"] }}
    auth: [jwt, api_key]
    rules: [{{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}]
products: [{{ name: shop, apis: [orders] }}]
credentials:
  - {{ client_id: file-svc, client_secret_hash: "{hash}", acl: [orders], roles: [orders:read] }}
"#,
        up = up.addr,
        hash = cheap_hash("file-secret"),
    )
}

/// One call: who, from which address, what.
struct Call<'a> {
    key: Option<&'a str>,
    from: [u8; 4],
    method: &'a str,
    path: &'a str,
    body: Option<Vec<u8>>,
    if_match: Option<u64>,
}

fn call<'a>(key: Option<&'a str>, method: &'a str, path: &'a str) -> Call<'a> {
    Call {
        key,
        from: [127, 0, 0, 1],
        method,
        path,
        body: None,
        if_match: None,
    }
}

/// A call with the key that has every scope.
fn ops<'a>(method: &'a str, path: &'a str) -> Call<'a> {
    call(Some(KEY), method, path)
}

impl Call<'_> {
    fn json(self, v: &Value) -> Self {
        self.raw(v.to_string().into_bytes())
    }

    fn raw(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    fn if_match(mut self, version: Option<u64>) -> Self {
        self.if_match = version;
        self
    }
}

/// An answer: status, headers, body (`Null` when empty).
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn etag(&self) -> Option<u64> {
        self.header("etag")?.trim_matches('"').parse().ok()
    }
}

/// What the audit log says of a call: key name, client, method, path, status.
fn audited(line: &Value) -> String {
    let fields = ["key", "client", "method", "path", "status"];
    fields.map(|k| line[k].to_string()).join(" ")
}

/// A gateway with the admin API, and a client that remembers every call it made.
struct Env {
    gw: Gateway,
    _up: Upstream,
    base: String,
    calls: Vec<String>,
    /// Every secret an answer carried: none may reach the audit log.
    secrets: Vec<String>,
}

impl Env {
    async fn start() -> Env {
        let up = start_upstream().await;
        let port = free_port();
        let mut spec = GatewaySpec::new(catalog(&up));
        spec.extra = section(port);
        let gw = Gateway::start(spec, &TestKey::generate()).await;
        let env = Env {
            gw,
            _up: up,
            base: format!("http://127.0.0.1:{port}"),
            calls: Vec::new(),
            secrets: Vec::new(),
        };
        // The admin listener starts with the others: poll until it takes connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        let admin = ("127.0.0.1", port);
        while tokio::net::TcpStream::connect(admin).await.is_err() {
            assert!(Instant::now() < deadline, "no admin API:\n{}", env.gw.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        env
    }

    /// Make the call, and remember it for the audit log.
    async fn send(&mut self, c: Call<'_>) -> Reply {
        let from = std::net::IpAddr::from(c.from);
        let http = reqwest::Client::builder().local_address(from).build();
        let http = http.unwrap();
        let url = format!("{}{}", self.base, c.path);
        let mut req = http.request(c.method.parse().unwrap(), url);
        if let Some(k) = c.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = c.body {
            req = req.header("content-type", "application/json").body(b);
        }
        if let Some(v) = c.if_match {
            req = req.header("if-match", format!("\"{v}\""));
        }
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let text = resp.text().await.unwrap();
        let body = match text.as_str() {
            "" => Value::Null,
            t => serde_json::from_str(t).unwrap_or_else(|_| panic!("not JSON: {t}")),
        };
        for name in ["client_secret", "api_key", "initial_access_token"] {
            for v in [&body[name], &body["credentials"][name]] {
                self.secrets.extend(v.as_str().map(str::to_string));
            }
        }
        // A limited address is refused before its key is looked at.
        let key = match c.key {
            _ if status == 429 => None,
            Some(KEY) => Some("ops"),
            Some(READER) => Some("auditor"),
            _ => None,
        };
        let path = c.path.split('?').next().unwrap_or_default();
        let line = json!({ "key": key, "client": from.to_string(), "method": c.method, "path": path,
            "status": status });
        self.calls.push(audited(&line));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The audit log holds exactly the calls made, in order, and none of the secrets.
    fn check_audit_log(&self) {
        let text = std::fs::read_to_string(self.gw.state_dir().join("admin-audit.log")).unwrap();
        let seen: Vec<String> = text
            .lines()
            .map(|l| {
                let l: Value = serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
                assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
                audited(&l)
            })
            .collect();
        assert_eq!(seen, self.calls, "audit log:\n{text}");
        assert!(!self.secrets.is_empty(), "no secrets seen");
        for s in self.secrets.iter().map(String::as_str).chain([KEY, READER]) {
            assert!(!text.contains(s), "the audit log holds {s}");
        }
    }
}

/// Follow a `$ref` of the document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => resolve(doc, doc.pointer(r.trim_start_matches('#')).expect(r)),
        None => v,
    }
}

fn type_fits(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "null" => v.is_null(),
        other => panic!("unknown type {other}"),
    }
}

/// Check `v` against a schema: `$ref`, `allOf`, `oneOf`, `type`, `const`, `enum`,
/// `required`, and the same for each property and item.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = resolve(doc, schema);
    for sub in s["allOf"].as_array().into_iter().flatten() {
        check(doc, sub, v, at)?;
    }
    if let Some(any) = s["oneOf"].as_array() {
        let fits = any.iter().filter(|s| check(doc, s, v, at).is_ok()).count();
        if fits != 1 {
            return Err(format!("{at}: fits {fits} of the oneOf schemas: {v}"));
        }
    }
    let types = s["type"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![s["type"].clone()]);
    let fits = |t: &Value| t.as_str().is_some_and(|t| type_fits(t, v));
    if !s["type"].is_null() && !types.iter().any(fits) {
        return Err(format!("{at}: {v} is not of type {types:?}"));
    }
    let one_of = s["enum"]
        .as_array()
        .cloned()
        .or_else(|| Some(vec![s.get("const")?.clone()]));
    if one_of.as_ref().is_some_and(|e| !e.contains(v)) {
        return Err(format!("{at}: {v} is not one of {one_of:?}"));
    }
    for r in s["required"].as_array().into_iter().flatten() {
        if v.get(r.as_str().unwrap()).is_none() {
            return Err(format!("{at}: {r} is missing: {v}"));
        }
    }
    for (name, sub) in s["properties"].as_object().into_iter().flatten() {
        if let Some(x) = v.get(name) {
            check(doc, sub, x, &format!("{at}.{name}"))?;
        }
    }
    if let (Some(items), Some(list)) = (s.get("items"), v.as_array()) {
        for (i, x) in list.iter().enumerate() {
            check(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Every operation the document describes: operationId → (method, path template).
fn documented(doc: &Value) -> HashMap<String, (String, String)> {
    let mut ops = HashMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().expect("an operationId");
            let old = ops.insert(id.to_string(), (method.to_uppercase(), path.clone()));
            assert!(old.is_none(), "operationId {id} twice");
        }
    }
    ops
}

/// Whether a concrete path is an instance of a template such as `/v1/credentials/{client_id}`.
fn instance_of(path: &str, template: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let (p, t): (Vec<_>, Vec<_>) = (path.split('/').collect(), template.split('/').collect());
    let fits = |(p, t): (&&str, &&str)| p == t || (t.starts_with('{') && !p.is_empty());
    p.len() == t.len() && p.iter().zip(&t).all(fits)
}

/// Check an answer against the operation's documented response for its status.
fn conforms(doc: &Value, op: &Value, name: &str, r: &Reply) {
    let status = r.status.to_string();
    let documented = op["responses"]
        .get(&status)
        .unwrap_or_else(|| panic!("{name}: {status} is not documented: {}", r.body));
    let documented = resolve(doc, documented);
    match documented["content"]["application/json"].get("schema") {
        Some(schema) => {
            let ok = check(doc, schema, &r.body, name);
            assert!(ok.is_ok(), "{name}: {}", ok.unwrap_err());
        }
        None => assert_eq!(r.body, Value::Null, "{name}: an undocumented body"),
    }
    for (header, h) in documented["headers"].as_object().into_iter().flatten() {
        if resolve(doc, h)["required"] == json!(true) {
            assert!(r.header(header).is_some(), "{name}: no {header}");
        }
    }
    if let (Some(etag), Some(v)) = (r.etag(), r.body["version"].as_u64()) {
        assert_eq!(etag, v, "{name}: the ETag is not the version");
    }
}

/// Every operation: its operationId (`*`: send the credential's last ETag as `If-Match`),
/// the call, and the status it must get; in an order in which each finds what it acts on.
const TABLE: &str = "
    getOpenApi GET /openapi.json 200
    getCatalog GET /v1/catalog 200
    createCredential POST /v1/credentials 201
    listCredentials GET /v1/credentials?limit=10 200
    getCredential GET /v1/credentials/adm-svc 200
    replaceCredential* PUT /v1/credentials/adm-svc 200
    rotateCredentialSecret* POST /v1/credentials/adm-svc/secret 200
    createApiKey* POST /v1/credentials/adm-svc/api-keys 201
    listApiKeys GET /v1/credentials/adm-svc/api-keys 200
    deleteApiKey* DELETE /v1/credentials/adm-svc/api-keys/k1 204
    disableCredential* POST /v1/credentials/adm-svc/disable 200
    enableCredential* POST /v1/credentials/adm-svc/enable 200
    createSubscription POST /v1/subscriptions 201
    listSubscriptions GET /v1/subscriptions 200
    getSubscription GET /v1/subscriptions/sub-1 200
    getSubscriptionCredentials GET /v1/subscriptions/sub-1/credentials 200
    deleteSubscription DELETE /v1/subscriptions/sub-1 204
    createInitialAccessToken POST /v1/initial-access-tokens 201
    deleteCredential* DELETE /v1/credentials/adm-svc 204
";

/// The body each operation of the table sends.
fn body_of(op: &str) -> Option<Value> {
    Some(match op {
        "createCredential" => json!({
            "client_id": "adm-svc", "acl": ["orders"], "roles": ["orders:read"],
            "grant_types": ["client_credentials"],
        }),
        "replaceCredential" => json!({
            "products": ["shop"], "roles": ["orders:read"], "grant_types": ["client_credentials"],
            "token": { "access_token_lifetime": "5m", "format": "jwt" },
        }),
        "rotateCredentialSecret" => json!({ "overlap": "1h" }),
        "createApiKey" => json!({ "name": "k1" }),
        "createSubscription" => json!({ "id": "sub-1", "consumer": "acme", "api": "orders" }),
        "createInitialAccessToken" => json!({ "products": ["shop"], "expires_in": "1h" }),
        _ => return None,
    })
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let mut env = Env::start().await;
    let doc = env.send(call(None, "GET", "/openapi.json")).await;
    assert_eq!(doc.status, 200);
    let doc = doc.body;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi: {version}");

    let operations = documented(&doc);
    let words = |l: &'static str| l.split_whitespace().collect::<Vec<_>>();
    let table: Vec<_> = TABLE.lines().map(words).filter(|l| !l.is_empty()).collect();
    let name = |l: &[&'static str]| l[0].trim_end_matches('*');
    let called: BTreeSet<&str> = table.iter().map(|l| name(l)).collect();
    assert_eq!(called.len(), table.len(), "an operation is called twice");
    let listed: BTreeSet<&str> = operations.keys().map(String::as_str).collect();
    let missing: Vec<_> = listed.difference(&called).collect();
    assert!(missing.is_empty(), "documented, never called: {missing:?}");
    let extra: Vec<_> = called.difference(&listed).collect();
    assert!(extra.is_empty(), "called, not documented: {extra:?}");

    let mut answers: HashMap<&str, Reply> = HashMap::new();
    let mut etag = None;
    for line in &table {
        let (name, matched) = (name(line), line[0].ends_with('*'));
        let [_, method, path, expect] = line[..] else {
            panic!("a table line: {line:?}")
        };
        let (documented_method, template) = &operations[name];
        assert_eq!(documented_method, method, "{name}");
        assert!(instance_of(path, template), "{name}: {path}");
        let op = &doc["paths"][template][method.to_lowercase()];
        let key = (op["security"] != json!([])).then_some(KEY);
        let if_match = etag.filter(|_| matched);
        let mut c = call(key, method, path).if_match(if_match);
        assert!(!matched || c.if_match.is_some(), "{name}: no ETag to send");
        if let Some(body) = body_of(name) {
            c = c.json(&body);
        }
        let r = env.send(c).await;
        assert_eq!(r.status.to_string(), expect, "{name}: {}", r.body);
        conforms(&doc, op, name, &r);
        if path.starts_with("/v1/credentials") {
            etag = r.etag().or(etag);
        }
        answers.insert(name, r);
    }

    // What the answers say, beyond their shape (`null`: absent).
    let endpoint = format!("{}/orders/oauth2/v2/token", env.gw.base);
    let want = json!({
        "createCredential": { "/client_id": "adm-svc", "/source": "store" },
        "listCredentials": { "/items/0/client_id": "adm-svc" },
        "replaceCredential": { "/settings/products": ["shop"], "/settings/client_id": null },
        "rotateCredentialSecret": { "/secrets/0/id": "s2", "/secrets/0/expires_at": null,
            "/secrets/1/id": "s1" },
        "listApiKeys": { "/items": [{ "name": "k1" }] },
        "disableCredential": { "/disabled": true, "/served": false },
        "enableCredential": { "/disabled": false, "/served": true },
        "createSubscription": { "/credential": "sub-1-client",
            "/credentials/client_id": "sub-1-client" },
        "getSubscriptionCredentials": { "/token_endpoints": [endpoint], "/client_secret": null },
        "getCatalog": { "/credentials/file": ["file-svc"], "/apis/0/name": "orders" },
    });
    for (op, fields) in want.as_object().unwrap() {
        for (at, v) in fields.as_object().unwrap() {
            let got = answers[op.as_str()].body.pointer(at);
            assert_eq!(got.unwrap_or(&Value::Null), v, "{op} {at}");
        }
    }
    let overlap = &answers["rotateCredentialSecret"].body["secrets"][1]["expires_at"];
    assert!(overlap.is_string(), "the old secret's end: {overlap}");
    // The secrets: the first, the rotated, the API key, the subscription's, the token.
    let secrets: BTreeSet<&String> = env.secrets.iter().collect();
    assert_eq!(secrets.len(), 5, "{secrets:?}");
    assert!(secrets.iter().all(|s| s.len() > 16), "{secrets:?}");

    // Deleted means gone: the credential and the subscription's credential.
    for path in ["/v1/credentials/adm-svc", "/v1/credentials/sub-1-client"] {
        let r = env.send(ops("GET", path)).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        let get = &doc["paths"]["/v1/credentials/{client_id}"]["get"];
        conforms(&doc, get, "getCredential", &r);
    }
    env.check_audit_log();
}

/// A credential body of `n` bytes that names an API no one defined.
fn padded(n: usize) -> Vec<u8> {
    let mut b = br#"{"acl":["nope"],"client_name":""#.to_vec();
    b.resize(n - 2, b'x');
    b.extend_from_slice(b"\"}");
    b
}

/// The key paths a 400 names.
fn error_paths(r: &Reply) -> Vec<&str> {
    let errors = r.body["errors"].as_array();
    let errors = errors.unwrap_or_else(|| panic!("no errors: {}", r.body));
    errors.iter().filter_map(|e| e["path"].as_str()).collect()
}

/// Assert the status and the `error` of a refusal.
fn refused(r: &Reply, status: u16, error: &str) {
    let got = (r.status, r.body["error"].as_str());
    assert_eq!(got, (status, Some(error)), "{}", r.body);
}

/// A guess at the admin key from an address of its own.
fn guess(key: &str) -> Call<'_> {
    let mut c = call(Some(key), "GET", "/v1/catalog");
    c.from = [127, 0, 0, 2];
    c
}

const CREDS: &str = "/v1/credentials";

#[tokio::test]
async fn refusals_public_listener_and_guessing() {
    let mut env = Env::start().await;
    let good = json!({ "client_id": "c1", "acl": ["orders"], "roles": ["orders:read"] });

    // Keys.
    for key in [None, Some("not-a-key")] {
        let r = env.send(call(key, "GET", CREDS)).await;
        refused(&r, 401, "invalid_token");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    // Scopes: the reader reads, and may not write.
    let r = env.send(call(Some(READER), "GET", "/v1/catalog")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let write = call(Some(READER), "POST", CREDS).json(&good);
    refused(&env.send(write).await, 403, "insufficient_scope");
    // Paths and methods.
    for path in ["/v1/nothing", "/v1/credentials/c1/x", "/v2/credentials"] {
        refused(&env.send(ops("GET", path)).await, 404, "not_found");
    }
    for (method, path, allow) in [
        ("PATCH", CREDS, "GET, POST"),
        ("DELETE", "/v1/catalog", "GET"),
        ("GET", "/v1/credentials/c1/secret", "POST"),
    ] {
        let r = env.send(ops(method, path)).await;
        refused(&r, 405, "method_not_allowed");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    // Bodies: too large; under the limit, read and checked; not JSON; not valid.
    let big = ops("POST", CREDS).raw(padded(70 * 1024));
    refused(&env.send(big).await, 413, "invalid_request");
    let r = env.send(ops("POST", CREDS).raw(padded(60 * 1024))).await;
    refused(&r, 400, "invalid_request");
    assert_eq!(error_paths(&r), ["acl[0]"], "{}", r.body);
    let broken = ops("POST", CREDS).raw(b"{\"acl\": [".to_vec());
    refused(&env.send(broken).await, 400, "invalid_request");
    for (field, value, path) in [
        ("acl", json!(["nope"]), "acl[0]"),
        ("roles", json!(["orders:read", "bad scope!"]), "roles[1]"),
        ("token", json!({ "format": "paper" }), "token.format"),
    ] {
        let mut bad = good.clone();
        bad[field] = value;
        let r = env.send(ops("POST", CREDS).json(&bad)).await;
        refused(&r, 400, "invalid_request");
        assert_eq!(error_paths(&r), [path], "{field}: {}", r.body);
    }
    // File entries are read-only here.
    let mut file = good.clone();
    file["client_id"] = json!("file-svc");
    let at = "/v1/credentials/file-svc";
    let r = env.send(ops("POST", CREDS).json(&file)).await;
    refused(&r, 409, "file_entry");
    let r = env.send(ops("PUT", at).json(&file)).await;
    refused(&r, 409, "file_entry");
    let r = env.send(ops("GET", at)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["source"], "file");
    assert_eq!(r.body["read_only"], true);

    // A subscription's credential goes with its subscription only.
    let sub = json!({ "id": "s1", "consumer": "acme", "api": "orders" });
    let r = env.send(ops("POST", "/v1/subscriptions").json(&sub)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = env.send(ops("DELETE", "/v1/credentials/s1-client")).await;
    refused(&r, 409, "conflict");

    // Versions: a change names the version it was meant for.
    let r = env.send(ops("POST", CREDS).json(&good)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v1 = r.etag();
    let mut renamed = good.clone();
    renamed["client_name"] = json!("first");
    let at = "/v1/credentials/c1";
    let r = env.send(ops("PUT", at).json(&renamed).if_match(v1)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v2 = r.etag();
    assert!(v2 > v1, "{v2:?} after {v1:?}");
    renamed["client_name"] = json!("second");
    let r = env.send(ops("PUT", at).json(&renamed).if_match(v1)).await;
    refused(&r, 409, "conflict");
    let r = env.send(ops("GET", at)).await;
    assert_eq!(r.etag(), v2);
    assert_eq!(r.body["settings"]["client_name"], "first");

    // The public listener has no admin API, and creates nothing.
    let mut sneaky = good.clone();
    sneaky["client_id"] = json!("via-public");
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let req = reqwest::Client::new().request(method.clone(), env.gw.url(CREDS));
        let r = req.bearer_auth(KEY).json(&sneaky).send().await.unwrap();
        let status = r.status().as_u16();
        assert!(![200, 201].contains(&status), "{method}: {status}");
        let text = r.text().await.unwrap();
        assert!(!text.contains("client_secret"), "{text}");
    }
    let r = env.send(ops("GET", CREDS)).await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(r.body["items"][0]["client_id"], "c1");
    assert_eq!(r.body["items"][1]["client_id"], "s1-client");

    // Guessing: ten wrong keys from one address, then that address waits; others do not.
    for i in 0..10 {
        let r = env.send(guess(&format!("guess-{i}"))).await;
        refused(&r, 401, "invalid_token");
    }
    for key in ["guess-10", KEY] {
        let r = env.send(guess(key)).await;
        refused(&r, 429, "too_many_requests");
        let wait = r.header("retry-after").and_then(|w| w.parse::<u64>().ok());
        assert!(wait.is_some_and(|w| w > 0), "Retry-After: {wait:?}");
    }
    let r = env.send(ops("GET", "/v1/catalog")).await;
    assert_eq!(r.status, 200, "another address is not limited: {}", r.body);
    env.check_audit_log();
}
