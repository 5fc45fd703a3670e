//! The shipped Grafana dashboard and Prometheus alert rules (monitoring/) against reality:
//! promtool checks and unit-tests the rules and parses every dashboard query, and a running
//! gateway's `/metrics` must export every metric and label they name (read with the small
//! PromQL reader of tests/monitoring/promql.rs).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "monitoring/promql.rs"]
mod promql;

use common::*;
use promql::{TARGET_LABELS, exported, names, problems};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

const RULES: &str = "monitoring/prometheus/tollgate.rules.yml";
const RULE_TESTS: &str = "monitoring/prometheus/tollgate.rules.test.yml";
const DASHBOARD: &str = "monitoring/grafana/tollgate.json";

/// Run promtool (Debian's `prometheus` package; scripts/install-deps.sh --test installs it).
fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("promtool not found ({e}): run scripts/install-deps.sh --test"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).unwrap()).unwrap()
}

/// Every alert rule of the rules file: (name, rule).
fn alerts() -> Vec<(String, Value)> {
    let rules = yaml(RULES);
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| (r["alert"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

#[test]
fn alert_rules_pass_promtool_and_each_alert_is_unit_tested() {
    let dir = repo("monitoring/prometheus");
    let check = promtool(&["check", "rules", "tollgate.rules.yml"], &dir);
    assert!(check.contains("SUCCESS"), "{check}");
    let tests = promtool(&["test", "rules", "tollgate.rules.test.yml"], &dir);
    assert!(tests.contains("SUCCESS"), "{tests}");

    // promtool only runs the cases written: every alert must have one where it fires and
    // one where an input it sees leaves it quiet (a case expecting no alert, or a series
    // the firing case does not name).
    let cases = yaml(RULE_TESTS);
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in cases["tests"].as_array().unwrap() {
        let series = case["input_series"].as_array().unwrap().len();
        for t in case["alert_rule_test"].as_array().unwrap() {
            let name = t["alertname"].as_str().unwrap().to_string();
            let expected = t["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 {
                fires.insert(name.clone());
            }
            // Each expected alert comes from at least one series (histograms from several):
            // a case with more series than its alerts' groups holds a quiet one.
            if expected == 0 || series > expected {
                quiet.insert(name);
            }
        }
    }
    for (name, rule) in alerts() {
        assert!(fires.contains(&name), "no unit test where {name} fires");
        assert!(
            quiet.contains(&name),
            "no unit test where {name} stays quiet"
        );
        let severity = rule["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for a in ["summary", "description"] {
            assert!(
                rule["annotations"][a]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name} has no {a}"
            );
        }
    }
}

/// The dashboard's queries, with where they are: (place, PromQL as Grafana sends it).
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("panel {} ({}) {}", p["id"], p["title"], t["refId"]),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// The selector of each `label_values(selector, label)` variable query.
fn variable_queries(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"].as_str().unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: not label_values: {q}", v["name"]));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        out.push((
            format!("variable {}", v["name"]),
            selector.trim().to_string(),
            label.trim().to_string(),
        ));
    }
    out
}

/// What Grafana substitutes before sending a query, as a value PromQL accepts.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$job", ".*")
        .replace("$instance", ".*")
        .replace("$api", ".*")
}

#[test]
fn the_dashboard_is_a_grafana_10_dashboard_of_valid_queries() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().unwrap() >= 38,
        "Grafana 10 writes schemaVersion 38 or later"
    );
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let by_variable = |v: &Value| v["uid"] == "${datasource}" && v["type"] == "prometheus";
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert!(by_variable(&v["datasource"]), "variable {}", v["name"]);
    }

    // Panels: unique ids, inside the 24-column grid, not overlapping, every query through
    // the datasource variable.
    let mut ids = BTreeSet::new();
    let mut cells: Vec<(u64, u64, u64, u64, String)> = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap().to_string();
        assert!(ids.insert(p["id"].as_u64().unwrap()), "id of {title} twice");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24 && w > 0 && h > 0, "{title}: {g}");
        for (ox, oy, ow, oh, other) in &cells {
            let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
            assert!(apart, "{title} overlaps {other}");
        }
        cells.push((x, y, w, h, title.clone()));
        if p["type"] == "row" {
            continue;
        }
        assert!(by_variable(&p["datasource"]), "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(by_variable(&t["datasource"]), "{title}");
            assert!(
                refs.insert(t["refId"].as_str().unwrap()),
                "{title}: refId twice"
            );
        }
    }

    // promtool parses every query as a recording rule's expression.
    let mut rules = Vec::new();
    for (i, (place, expr)) in dashboard_queries(&d).iter().enumerate() {
        rules.push(serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": substitute(expr), "labels": {"place": place}}));
    }
    for (i, (place, selector, _)) in variable_queries(&d).iter().enumerate() {
        rules.push(serde_json::json!({"record": format!("dashboard:variable_{i}"), "expr": substitute(selector), "labels": {"place": place}}));
    }
    let count = rules.len();
    let doc = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("queries.yml"),
        serde_yaml::to_string(&doc).unwrap(),
    )
    .unwrap();
    let out = promtool(&["check", "rules", "queries.yml"], dir.path());
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}"
    );
}

#[test]
fn the_name_check_finds_what_is_not_exported() {
    let text = "# HELP x x\n\
                tollgate_requests_total{api=\"orders\",method=\"GET\",status=\"2xx\"} 1\n\
                tollgate_token_validations_total{outcome=\"ok\"} 3\n\
                tollgate_store_up 1\n";
    let e = exported(text);
    let ok = r#"sum by (api, job) (rate(tollgate_requests_total{status="2xx", api=~"$api"}[5m])) / on (job) group_left tollgate_store_up"#;
    assert_eq!(problems("ok", ok, &e), Vec::<String>::new());
    for (bad, why) in [
        (
            "rate(tollgate_request_total[5m])",
            "no metric tollgate_request_total",
        ),
        ("tollgate_requests_total{route=\"x\"}", "has no label route"),
        (
            "sum by (route) (tollgate_requests_total)",
            "has the label route",
        ),
        (
            "tollgate_token_validations_total{outcome=\"okay\"}",
            "no such value",
        ),
        (
            "tollgate_token_validations_total{outcome=~\"ok|gone\"}",
            "no such value",
        ),
        ("{outcome=\"ok\"}", "without a metric name"),
    ] {
        let found = problems("bad", bad, &e);
        assert!(found.iter().any(|p| p.contains(why)), "{bad}: {found:?}");
    }
}

fn catalog(up: &Upstream, dead: u16) -> String {
    format!(
        r#"
issuers:
  - name: corp
    issuer: "http://127.0.0.1:{dead}"
    jwks_uri: "http://127.0.0.1:{dead}/jwks"
    audiences: [tollgate]
    algorithms: [ES256]
    keys: {{ fetch_timeout: 1s }}
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{up}"] }}
    auth: jwt
    issuers: [tollgate, corp]
  - name: limited
    prefix: /limited
    upstream: {{ servers: ["{up}"] }}
    auth: jwt
    rate_limit: {{ requests: 1, per: 1m, burst: 1 }}
  - name: failing
    prefix: /__status
    upstream: {{ servers: ["{up}"] }}
    auth: none
credentials:
  - client_id: reader
    client_secret_hash: "{h}"
    acl: [orders, limited]
"#,
        up = up.addr,
        h = cheap_hash("reader-secret"),
    )
}

/// Drive the traffic that makes every labelled series appear: proxied answers of each
/// status class, a rate limit, token issuance and refusals, a brute-force throttle.
async fn drive(gw: &Gateway) {
    let token = access_token(gw, "/credential/jwt", "reader", "reader-secret").await;
    let client = reqwest::Client::new();
    let get = |path: &str, bearer: Option<&str>| {
        let mut r = client.get(gw.url(path));
        if let Some(t) = bearer {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(get("/orders/1", Some(&token)).await.unwrap().status(), 200);
    assert_eq!(get("/orders/1", Some(&token)).await.unwrap().status(), 200);
    assert_eq!(get("/orders/1", None).await.unwrap().status(), 401);
    assert_eq!(get("/__status/503", None).await.unwrap().status(), 503);
    assert_eq!(get("/nowhere", None).await.unwrap().status(), 404);
    assert_eq!(get("/limited/a", Some(&token)).await.unwrap().status(), 200);
    assert_eq!(get("/limited/a", Some(&token)).await.unwrap().status(), 429);
    for _ in 0..3 {
        let r = get_token(gw, "/credential/jwt", "reader", "guess", None).await;
        assert_eq!(r.status(), 401);
    }
    let r = get_token(gw, "/credential/jwt", "reader", "reader-secret", None).await;
    assert_eq!(r.status(), 429, "the account is throttled after 3 failures");
}

#[tokio::test]
async fn dashboard_and_rules_name_only_what_the_gateway_exports() {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(catalog(&up, free_port()));
    spec.extra =
        "limits: { failed_auth_window: 1m, failed_auth_per_account: 3, failed_auth_per_ip: 50 }\n"
            .into();
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    drive(&gw).await;
    // The issuer's JWKS is unreachable: its fetch errors are counted, and it holds no key.
    let errors = "tollgate_issuer_key_fetches_total{issuer=\"corp\",result=\"error\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while gw.metric(errors).await < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no fetch error counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = gw.metrics().await;
    assert!(
        text.contains("tollgate_issuer_keys{issuer=\"corp\"} 0"),
        "{text}"
    );
    assert!(text.contains("tollgate_issuer_key_fetches_total{issuer=\"corp\",result=\"ok\"} 0"));
    let e = exported(&text);

    let mut found = Vec::new();
    let d = dashboard();
    for (place, expr) in dashboard_queries(&d) {
        found.extend(problems(&place, &expr, &e));
    }
    for (place, selector, label) in variable_queries(&d) {
        found.extend(problems(&place, &selector, &e));
        let n = names(&selector).unwrap();
        let metric = &n.selectors[0].0;
        let known = TARGET_LABELS.contains(&label.as_str())
            || e.get(metric).is_some_and(|l| l.contains_key(&label));
        if !known {
            found.push(format!("{place}: {metric} has no label {label}"));
        }
    }
    for (name, rule) in alerts() {
        found.extend(problems(
            &format!("alert {name}"),
            rule["expr"].as_str().unwrap(),
            &e,
        ));
    }
    assert!(
        found.is_empty(),
        "{}\n\nexported:\n{text}",
        found.join("\n")
    );

    // Every metric the gateway exports is on the dashboard.
    let shown: BTreeSet<String> = dashboard_queries(&d)
        .iter()
        .flat_map(|(_, q)| names(q).unwrap().selectors.into_iter().map(|(m, _)| m))
        .collect();
    for name in e.keys() {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| e.contains_key(&format!("{f}_bucket")))
            })
            .unwrap_or(name);
        let on_dashboard = shown.iter().any(|m| m == name || m.starts_with(family));
        if name.starts_with("tollgate_") {
            assert!(on_dashboard, "{name} is on no dashboard panel");
        }
    }
}
