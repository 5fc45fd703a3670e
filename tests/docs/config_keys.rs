//! The config keys that exist, read from the serde structs of `src/config/` (the files'
//! schema: `GatewayFile` for tollgate.yaml, `UpstreamsFile` for the upstreams file), so a
//! key the docs name can be checked against the code.

use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A deserialized struct: its fields' YAML names and the struct each one holds, if any.
#[derive(Debug, Default)]
struct Shape {
    fields: Vec<(String, String)>,
    /// `#[serde(flatten)]` fields: their structs' keys are this struct's.
    flattened: Vec<String>,
}

pub struct Keys {
    /// Every key path, a map's keys as `*`.
    pub paths: Vec<Vec<String>>,
    /// How many of `paths` are tollgate.yaml's (the rest are the upstreams file's).
    pub gateway_paths: usize,
    top: HashSet<String>,
    names: HashSet<String>,
}

fn sources(dir: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&p).unwrap());
            out.push('\n');
        }
    }
}

/// The identifiers of a type, e.g. `Option<Lenient<Vec<ListenFile>>>` → its words.
fn words(ty: &str) -> Vec<&str> {
    ty.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

fn shapes(src: &str) -> HashMap<String, Shape> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let (rest, is_enum) = match (t.strip_prefix("struct "), t.strip_prefix("enum ")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => continue,
        };
        let Some(name) = rest.strip_suffix(" {") else {
            continue;
        };
        let derives = lines[i.saturating_sub(4)..i]
            .iter()
            .any(|l| l.contains("derive(") && l.contains("Deserialize"));
        if !derives || name.contains('<') {
            continue;
        }
        let mut shape = Shape::default();
        if is_enum {
            // A variant holding a struct (`Redis(RedisStoreFile),`) adds its keys; an
            // internally tagged enum has its tag key too.
            let attrs = lines[i.saturating_sub(4)..i].join(" ");
            if let Some(tag) = attrs
                .split("tag = \"")
                .nth(1)
                .and_then(|t| t.split('"').next())
            {
                shape.fields.push((tag.to_string(), String::new()));
            }
            for l in &lines[i + 1..] {
                let l = l.trim();
                if l == "}" {
                    break;
                }
                if let Some((_, inner)) = l.split_once('(') {
                    shape
                        .flattened
                        .push(inner.trim_end_matches([')', ',']).to_string());
                }
            }
            out.insert(name.to_string(), shape);
            continue;
        }
        let (mut rename, mut flatten) = (None, false);
        for l in &lines[i + 1..] {
            let l = l.trim();
            if l == "}" {
                break;
            }
            if l.starts_with("#[serde(") {
                if let Some(r) = l.split("rename = \"").nth(1) {
                    rename = r.split('"').next().map(str::to_string);
                }
                flatten |= l.contains("flatten");
                continue;
            }
            if l.starts_with("//") || l.starts_with("#[") {
                continue;
            }
            let field = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            let Some((fname, ty)) = field.split_once(':') else {
                continue;
            };
            let key = rename.take().unwrap_or_else(|| fname.trim().to_string());
            let map = ty.contains("HashMap<") || ty.contains("BTreeMap<");
            let ty = ty.trim().trim_end_matches(',').to_string();
            if std::mem::take(&mut flatten) {
                shape.flattened.push(ty);
            } else {
                shape
                    .fields
                    .push((key, if map { format!("*{ty}") } else { ty }));
            }
        }
        out.insert(name.to_string(), shape);
    }
    out
}

fn walk(
    shapes: &HashMap<String, Shape>,
    name: &str,
    prefix: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    let Some(shape) = shapes.get(name) else {
        return;
    };
    if prefix.len() > 8 {
        return;
    }
    for ty in &shape.flattened {
        if let Some(inner) = words(ty)
            .into_iter()
            .rev()
            .find(|w| shapes.contains_key(*w))
        {
            walk(shapes, inner, prefix, out);
        }
    }
    for (key, ty) in &shape.fields {
        prefix.push(key.clone());
        out.push(prefix.clone());
        let inner = words(ty)
            .into_iter()
            .rev()
            .find(|w| shapes.contains_key(*w))
            .map(str::to_string);
        if let Some(inner) = inner {
            if ty.starts_with('*') {
                prefix.push("*".into());
                walk(shapes, &inner, prefix, out);
                prefix.pop();
            } else {
                walk(shapes, &inner, prefix, out);
            }
        }
        prefix.pop();
    }
}

pub fn known() -> Keys {
    let mut src = String::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config"),
        &mut src,
    );
    let shapes = shapes(&src);
    let mut paths = Vec::new();
    let mut gateway_paths = 0;
    for root in ["GatewayFile", "UpstreamsFile"] {
        assert!(shapes.contains_key(root), "no struct {root} in src/config");
        walk(&shapes, root, &mut Vec::new(), &mut paths);
        if root == "GatewayFile" {
            gateway_paths = paths.len();
        }
    }
    let top = paths
        .iter()
        .filter(|p| p.len() == 1)
        .map(|p| p[0].clone())
        .collect();
    let names = paths.iter().flatten().cloned().collect();
    Keys {
        paths,
        gateway_paths,
        top,
        names,
    }
}

fn matches(path: &[String], segs: &[&str]) -> bool {
    path.len() == segs.len() && path.iter().zip(segs).all(|(p, s)| p == "*" || p == s)
}

impl Keys {
    /// `None`: the span is not a key path (`a.b`, lower-case words). Else whether it names
    /// a key: from the top of a file when it starts with a top-level key, else as the end
    /// of some key's path (`upstream.retries` within an API).
    pub fn check(&self, span: &str) -> Option<Result<(), String>> {
        let plain: String = span
            .split('[')
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part
                } else {
                    part.split_once(']').map_or(part, |(_, rest)| rest)
                }
            })
            .collect();
        let segs: Vec<&str> = plain.split('.').collect();
        let word = |s: &&str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && s.as_bytes()[0].is_ascii_lowercase()
        };
        let file = [
            "rs", "yaml", "yml", "md", "json", "toml", "sh", "py", "pem", "db", "lua",
        ];
        let is_file = segs.last().is_some_and(|s| file.contains(s));
        if segs.len() < 2 || is_file || !segs.iter().all(word) || !self.names.contains(segs[0]) {
            return None;
        }
        let found = if self.top.contains(segs[0]) {
            self.paths.iter().any(|p| matches(p, &segs))
        } else {
            self.paths
                .iter()
                .any(|p| p.len() >= segs.len() && matches(&p[p.len() - segs.len()..], &segs))
        };
        Some(if found {
            Ok(())
        } else {
            Err("no such config key".into())
        })
    }
}

impl Keys {
    /// The leaf keys a configuration reference has no table row for. A row names a key by
    /// its whole path, or by its path within the `### \`section\`` it is under; a row
    /// `| \`a\`, \`b\` | {x, y} | …` names a, b and their keys a.x, a.y, b.x, b.y.
    pub fn undocumented(&self, text: &str) -> Vec<String> {
        // (part: 0 tollgate.yaml, 1 the upstreams file; section; key) of each table row.
        let mut rows = Vec::new();
        let (mut part, mut sections) = (None, Vec::<String>::new());
        for line in text.lines() {
            if let Some(h) = line.strip_prefix("## ") {
                part = if h.contains("tollgate.yaml") {
                    Some(0)
                } else if h.contains("upstreams file") {
                    Some(1)
                } else {
                    None
                };
                sections.clear();
            } else if let Some(h) = line.strip_prefix("### ") {
                // Every name in backticks: `policies` and `credentials`.
                sections = h
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect();
            } else if let (Some(p), true) = (part, line.starts_with("| `")) {
                // `| `a`, `b` | {x, y} | …`: keys a and b, and with a `{x, y}` type their
                // keys a.x, a.y, b.x, b.y.
                let cells: Vec<&str> = line.split('|').collect();
                let names: Vec<String> = cells[1]
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|k| k.replace("[]", ""))
                    .collect();
                let inner: Vec<String> = cells
                    .get(2)
                    .and_then(|t| t.split_once('{'))
                    .and_then(|(_, t)| t.split_once('}'))
                    .map(|(t, _)| t.split(',').map(|k| k.trim().to_string()).collect())
                    .unwrap_or_default();
                let mut keys = names.clone();
                for n in &names {
                    keys.extend(inner.iter().map(|k| format!("{n}.{k}")));
                }
                for s in sections.iter().cloned().chain([String::new()]) {
                    for k in &keys {
                        rows.push((p, s.clone(), k.clone()));
                    }
                }
            }
        }
        let mut missing = Vec::new();
        for (i, path) in self.paths.iter().enumerate() {
            // A map of keys is documented by its keys' rows.
            let parent = self
                .paths
                .iter()
                .any(|p| p.len() > path.len() && p.starts_with(path));
            if parent {
                continue;
            }
            let part = usize::from(i >= self.gateway_paths);
            let full = path.join(".").replace(".*", "");
            let documented = rows.iter().any(|(p, section, key)| {
                *p == part
                    && (full == *key
                        || (!section.is_empty()
                            && full.starts_with(&format!("{section}."))
                            && (full.ends_with(&format!(".{key}"))
                                || full == format!("{section}.{key}")))
                        || (key.contains('.') && full.ends_with(&format!(".{key}"))))
            });
            if !documented {
                missing.push(format!("{} {full}", ["tollgate.yaml", "upstreams"][part]));
            }
        }
        missing
    }
}
