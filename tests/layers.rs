//! The layers point one way: no module imports a module that imports it back, the shared
//! words (`domain`) import nothing from the crate, and `config` imports only them.
//!
//! Read from the source itself: every `crate::…` and `super::…` path outside test code
//! (grouped `use` lists included) is an edge from the module whose file it is in to the
//! module it names. Checked between the crate's top-level modules, and between the
//! sibling submodules of every folder (a module and its own submodules may use each other:
//! that is how a parent re-exports and a child reaches its parent's types).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every source file of the library and its module path (`src/a/b.rs` → `[a, b]`).
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // Test-only folders (`idp/tests/`) are test code.
                if path.file_name().is_some_and(|n| n != "tests") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let module: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let last = module.last().map(String::as_str);
            if matches!(last, Some("tests" | "mod")) || module == ["lib"] || module == ["main"] {
                continue;
            }
            out.insert(module, path);
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Path,
    Open,
    Close,
    Comma,
    Hash,
    OpenBracket,
    CloseBracket,
    Semi,
    Other,
}

/// The tokens of Rust source that matter for paths: comments, strings and characters
/// are skipped, so `"https://…"` or a `crate::` in a doc comment counts for nothing.
fn tokens(text: &str) -> Vec<Token> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !is_ident(b[i - 1])) =>
            {
                // A raw string: r"…", r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push(Token::Ident("r".into()));
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'\'' => {
                // A character literal ('a', '\n', '\u{1f}') or a lifetime ('a).
                if b.get(i + 1) == Some(&b'\\') {
                    i += 2;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                    i += 1;
                } else if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                out.push(Token::Path);
                i += 2;
            }
            b'{' => {
                out.push(Token::Open);
                i += 1;
            }
            b'}' => {
                out.push(Token::Close);
                i += 1;
            }
            b',' => {
                out.push(Token::Comma);
                i += 1;
            }
            b'#' => {
                out.push(Token::Hash);
                i += 1;
            }
            b';' => {
                out.push(Token::Semi);
                i += 1;
            }
            b'[' => {
                out.push(Token::OpenBracket);
                i += 1;
            }
            b']' => {
                out.push(Token::CloseBracket);
                i += 1;
            }
            c if is_ident(c) => {
                let start = i;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                out.push(Token::Ident(text[start..i].to_string()));
            }
            _ => {
                if !c.is_ascii_whitespace() {
                    out.push(Token::Other);
                }
                i += 1;
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The tokens without `#[cfg(test)]` items (a test module, a test-only function).
fn without_test_code(t: Vec<Token>) -> Vec<Token> {
    let cfg_test = [
        Token::Hash,
        Token::OpenBracket,
        Token::Ident("cfg".into()),
        Token::Other,
        Token::Ident("test".into()),
        Token::Other,
        Token::CloseBracket,
    ];
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if t[i..].starts_with(&cfg_test) {
            // Skip to the end of the item: its `;` (`mod tests;`) or its braced body.
            i += cfg_test.len();
            while i < t.len() && t[i] != Token::Open && t[i] != Token::Semi {
                i += 1;
            }
            if t.get(i) == Some(&Token::Open) {
                let mut depth = 0;
                while i < t.len() {
                    match t[i] {
                        Token::Open => depth += 1,
                        Token::Close => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        out.push(t[i].clone());
        i += 1;
    }
    out
}

/// The paths named from position `i` on, after `crate::` or `super::` (`{a::b, c}`
/// groups expanded), each as its segments.
fn paths_at(t: &[Token], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        match t.get(i) {
            Some(Token::Ident(name)) => {
                path.push(name.clone());
                i += 1;
                if t.get(i) != Some(&Token::Path) {
                    break;
                }
                i += 1;
            }
            Some(Token::Open) => {
                // A group: each comma-separated item continues `path`.
                i += 1;
                let mut depth = 0;
                let mut item_start = i;
                while i < t.len() {
                    match t[i] {
                        Token::Open => depth += 1,
                        Token::Close if depth == 0 => {
                            paths_at(t, item_start, path.clone(), out);
                            return;
                        }
                        Token::Close => depth -= 1,
                        Token::Comma if depth == 0 => {
                            paths_at(t, item_start, path.clone(), out);
                            item_start = i + 1;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                return;
            }
            _ => break,
        }
    }
    out.push(path);
}

/// The modules `module`'s file names, resolved against the known modules.
fn references(module: &Module, text: &str, known: &BTreeMap<Module, PathBuf>) -> BTreeSet<Module> {
    let t = without_test_code(tokens(text));
    let mut found = BTreeSet::new();
    for i in 0..t.len() {
        let Token::Ident(head) = &t[i] else { continue };
        if t.get(i + 1) != Some(&Token::Path) || (i > 0 && t[i - 1] == Token::Path) {
            continue;
        }
        let mut base: Module = match head.as_str() {
            "crate" => Vec::new(),
            "super" => module[..module.len() - 1].to_vec(),
            _ => continue,
        };
        let mut j = i + 2;
        while t.get(j) == Some(&Token::Ident("super".into())) && t.get(j + 1) == Some(&Token::Path)
        {
            base.pop();
            j += 2;
        }
        let mut paths = Vec::new();
        paths_at(&t, j, base, &mut paths);
        for p in paths {
            if let Some(target) = (1..=p.len())
                .rev()
                .map(|n| p[..n].to_vec())
                .find(|m| known.contains_key(m))
                && target != *module
            {
                found.insert(target);
            }
        }
    }
    found
}

/// Strongly connected components of more than one node (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on_stack: BTreeSet<Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit(s: &mut State<'_>, v: &Module) {
        s.index.insert(v.clone(), s.next);
        s.low.insert(v.clone(), s.next);
        s.next += 1;
        s.stack.push(v.clone());
        s.on_stack.insert(v.clone());
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v.clone(), low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v.clone(), low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                let done = w == *v;
                component.push(w);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: BTreeSet<Module> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.clone()).chain(bs.iter().cloned()))
        .collect();
    for v in &nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

struct Graph {
    /// Top-level module → the top-level modules it imports, with the files that do.
    top: BTreeMap<Module, BTreeSet<Module>>,
    /// Sibling → sibling, within each folder.
    siblings: BTreeMap<Module, BTreeSet<Module>>,
    why: BTreeMap<(Module, Module), BTreeSet<String>>,
}

fn graph(src: &Path) -> Graph {
    let known = modules(src);
    let mut g = Graph {
        top: BTreeMap::new(),
        siblings: BTreeMap::new(),
        why: BTreeMap::new(),
    };
    for (module, path) in &known {
        let text = std::fs::read_to_string(path).unwrap();
        let file = path.strip_prefix(src).unwrap().display().to_string();
        for target in references(module, &text, &known) {
            // The two modules' children of their closest common ancestor.
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // one contains the other
            }
            let (a, b) = (module[..=common].to_vec(), target[..=common].to_vec());
            let map = if common == 0 {
                &mut g.top
            } else {
                &mut g.siblings
            };
            map.entry(a.clone()).or_default().insert(b.clone());
            g.why.entry((a, b)).or_default().insert(file.clone());
        }
    }
    g
}

fn describe(g: &Graph, component: &[Module]) -> String {
    let mut lines = Vec::new();
    for a in component {
        for b in component {
            if let Some(files) = g.why.get(&(a.clone(), b.clone())) {
                lines.push(format!(
                    "  {} -> {} (in {})",
                    a.join("::"),
                    b.join("::"),
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    lines.join("\n")
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let g = graph(&src());
    assert!(
        g.top.contains_key(&vec!["proxy".to_string()]),
        "the reader found no imports at all: {:?}",
        g.top.keys().collect::<Vec<_>>()
    );
    let mut found: Vec<String> = Vec::new();
    for c in cycles(&g.top).iter().chain(cycles(&g.siblings).iter()) {
        found.push(format!("import circle:\n{}", describe(&g, c)));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_shared_words_import_nothing_and_config_only_them() {
    let g = graph(&src());
    let domain = vec!["domain".to_string()];
    let config = vec!["config".to_string()];
    let out_of = |m: &Module| g.top.get(m).cloned().unwrap_or_default();
    assert!(
        out_of(&domain).is_empty(),
        "domain imports {:?}",
        out_of(&domain)
    );
    let beyond: Vec<_> = out_of(&config)
        .into_iter()
        .filter(|m| *m != domain)
        .collect();
    assert!(beyond.is_empty(), "config imports {beyond:?}");
    // The reader sees what it must: config does use domain.
    assert!(out_of(&config).contains(&domain));
}

#[test]
fn the_reader_finds_grouped_and_relative_paths_and_skips_strings_and_tests() {
    let known: BTreeMap<Module, PathBuf> = [
        vec!["a"],
        vec!["b"],
        vec!["c"],
        vec!["d"],
        vec!["e"],
        vec!["f"],
        vec!["x"],
        vec!["x", "y"],
        vec!["x", "z"],
    ]
    .into_iter()
    .map(|m| (m.into_iter().map(String::from).collect(), PathBuf::new()))
    .collect();
    let text = r##"
        use crate::{a::Thing, b, c::{self, deep::More}};
        use super::z::Other;
        const URL: &str = "https://crate::e::nothing";
        const RAW: &str = r#"crate::e::nothing"#;
        const C: char = '"'; fn f<'a>(x: &'a str) -> &'a str { x }
        /* crate::e::nothing */ // crate::e::nothing
        fn g() { crate::d::call(); }
        #[cfg(test)]
        mod tests { use crate::f::Helper; }
    "##;
    let module = vec!["x".to_string(), "y".to_string()];
    let found = references(&module, text, &known);
    let names: Vec<String> = found.iter().map(|m| m.join("::")).collect();
    assert_eq!(names, ["a", "b", "c", "d", "x::z"]);
}
