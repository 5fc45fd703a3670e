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
