//! A small PromQL reader for tests/monitoring.rs: enough of a tokenizer to find the metric
//! names, label matchers and grouping labels an expression uses, a reader of a `/metrics`
//! scrape, and the check of one against the other.

use std::collections::{BTreeMap, BTreeSet};

/// A PromQL token, as far as naming metrics and labels goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Ident(String),
    Str(String),
    Punct(char),
    /// Comparison and matcher operators (`=`, `!=`, `=~`, `!~`, `==`, `>`, …).
    Op(String),
    Number,
}

pub fn tokens(expr: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Number);
        } else if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    s.push(ch);
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(format!("unterminated string in {expr}"));
            }
            i += 1;
            out.push(Token::Str(s));
        } else if c == '[' {
            // A range or subquery duration: no names inside.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if "=!<>~".contains(c) {
            let start = i;
            while i < chars.len() && "=!<>~".contains(chars[i]) {
                i += 1;
            }
            out.push(Token::Op(chars[start..i].iter().collect()));
        } else if "(){},+-*/%^".contains(c) {
            out.push(Token::Punct(c));
            i += 1;
        } else {
            return Err(format!("unexpected {c:?} in {expr}"));
        }
    }
    Ok(out)
}

/// A label matcher: the label, its operator and value.
#[derive(Debug, Clone)]
pub struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// The names one expression uses: its selectors and its grouping labels.
#[derive(Debug, Default)]
pub struct Names {
    pub selectors: Vec<(String, Vec<Matcher>)>,
    pub grouping: Vec<String>,
}

/// Words that are never a metric name: operators, and aggregations (which may be followed
/// by `by (…)` rather than by their parenthesis).
pub const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "Inf",
    "NaN",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
];
pub const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

pub fn names(expr: &str) -> Result<Names, String> {
    let t = tokens(expr)?;
    let mut n = Names::default();
    let mut i = 0;
    while i < t.len() {
        let next = t.get(i + 1);
        match &t[i] {
            Token::Ident(id) if GROUPING.contains(&id.as_str()) => {
                i += 1;
                if next == Some(&Token::Punct('(')) {
                    i += 1;
                    while i < t.len() && t[i] != Token::Punct(')') {
                        if let Token::Ident(label) = &t[i] {
                            n.grouping.push(label.clone());
                        }
                        i += 1;
                    }
                    i += 1;
                }
            }
            Token::Ident(_) if next == Some(&Token::Punct('(')) => i += 1, // a function
            Token::Ident(id) if KEYWORDS.contains(&id.as_str()) => i += 1,
            Token::Ident(metric) => {
                let metric = metric.clone();
                i += 1;
                let mut matchers = Vec::new();
                if t.get(i) == Some(&Token::Punct('{')) {
                    i += 1;
                    loop {
                        match (t.get(i), t.get(i + 1), t.get(i + 2)) {
                            (Some(Token::Punct('}')), _, _) => break,
                            (Some(Token::Ident(l)), Some(Token::Op(op)), Some(Token::Str(v))) => {
                                matchers.push(Matcher {
                                    label: l.clone(),
                                    op: op.clone(),
                                    value: v.clone(),
                                });
                                i += 3;
                                if t.get(i) == Some(&Token::Punct(',')) {
                                    i += 1;
                                }
                            }
                            _ => {
                                return Err(format!(
                                    "cannot read the matchers of {metric} in {expr}"
                                ));
                            }
                        }
                    }
                    i += 1;
                }
                n.selectors.push((metric, matchers));
            }
            Token::Punct('{') => return Err(format!("a selector without a metric name in {expr}")),
            _ => i += 1,
        }
    }
    Ok(n)
}

/// What a scrape exports: each sample name's labels and the values each label takes.
pub type Exported = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

pub fn exported(text: &str) -> Exported {
    let mut out: Exported = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = match line.find(['{', ' ']) {
            Some(at) => line.split_at(at),
            None => continue,
        };
        let labels = out.entry(name.to_string()).or_default();
        if let Some(body) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
            for pair in body.0.split("\",").filter(|p| !p.is_empty()) {
                let (label, value) = pair.split_once('=').unwrap();
                let value = value.trim_matches('"');
                labels
                    .entry(label.to_string())
                    .or_default()
                    .insert(value.to_string());
            }
        }
    }
    out
}

/// Labels Prometheus itself adds to every series it scrapes.
pub const TARGET_LABELS: &[&str] = &["job", "instance"];
/// Labels whose every value the gateway exports from the start (or the test drives):
/// a matcher naming another value matches nothing.
pub const CLOSED_LABELS: &[&str] = &["outcome", "op", "result", "decision", "status", "subject"];

/// Problems of one expression against what the gateway exports.
pub fn problems(place: &str, expr: &str, exported: &Exported) -> Vec<String> {
    let n = match names(expr) {
        Ok(n) => n,
        Err(e) => return vec![format!("{place}: {e}")],
    };
    let mut out = Vec::new();
    let mut labels_here: BTreeSet<String> = TARGET_LABELS.iter().map(|s| s.to_string()).collect();
    for (metric, matchers) in &n.selectors {
        // `up` is Prometheus's own series for each target.
        let labels = match (metric.as_str(), exported.get(metric)) {
            ("up", _) => BTreeMap::new(),
            (_, Some(l)) => l.clone(),
            (_, None) => {
                out.push(format!("{place}: the gateway exports no metric {metric}"));
                continue;
            }
        };
        labels_here.extend(labels.keys().cloned());
        for m in matchers {
            if TARGET_LABELS.contains(&m.label.as_str()) {
                continue;
            }
            let Some(values) = labels.get(&m.label) else {
                out.push(format!("{place}: {metric} has no label {}", m.label));
                continue;
            };
            let literal = !m.value.contains('$')
                && m.value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_|".contains(c));
            if CLOSED_LABELS.contains(&m.label.as_str()) && literal {
                let alternatives: Vec<&str> = if m.op.contains('~') {
                    m.value.split('|').collect()
                } else {
                    vec![m.value.as_str()]
                };
                for v in alternatives {
                    if !values.contains(v) {
                        out.push(format!(
                            "{place}: {metric}{{{}{}\"{v}\"}}: the gateway exports no such value (it has {values:?})",
                            m.label, m.op
                        ));
                    }
                }
            }
        }
    }
    for g in &n.grouping {
        if !labels_here.contains(g) {
            out.push(format!(
                "{place}: no metric of the expression has the label {g}"
            ));
        }
    }
    out
}
