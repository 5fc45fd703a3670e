//! The documentation cannot drift: every shell block of README.md and docs/ is marked as
//! run or not run (with its reason), every marked one runs against the shipped default
//! config as the page says and gives the statuses and JSON its comments claim, marked YAML
//! snippets pass `tollgate -t`, internal links resolve, and every metric and config key the
//! prose names exists.
//!
//! Markers (the line before a fence): `<!-- run -->`, `<!-- not run: REASON -->`,
//! `<!-- check: tollgate.yaml -->`, `<!-- check: upstreams -->`. Expectations: a trailing
//! `# NNN` on a command line (status from `curl -i` or a last line `%{http_code}`) or
//! `# {"key":value,…}` (pairs found in the JSON output).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "docs/config_keys.rs"]
mod config_keys;
#[path = "docs/markdown.rs"]
mod markdown;

use common::{binary, free_port};
use markdown::{Block, Expect, Marker};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, SECURITY.md and every page under docs/, with their text.
fn pages() -> Vec<(PathBuf, String)> {
    let mut paths = vec![root().join("README.md"), root().join("SECURITY.md")];
    if let Ok(dir) = std::fs::read_dir(root().join("docs")) {
        let mut docs: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        docs.sort();
        paths.extend(docs);
    }
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(root()).unwrap().to_path_buf(), text)
        })
        .collect()
}

fn all_blocks() -> Vec<Block> {
    pages()
        .iter()
        .flat_map(|(p, t)| markdown::blocks(p, t))
        .collect()
}

#[test]
fn every_shell_block_is_marked_and_every_link_resolves() {
    let mut errors = Vec::new();
    for b in all_blocks() {
        match (&b.marker, b.is_shell()) {
            (Marker::None, true) => errors.push(format!(
                "{}: a shell block needs <!-- run --> or <!-- not run: REASON -->",
                b.at()
            )),
            (Marker::NotRun(reason), _) if reason.is_empty() => {
                errors.push(format!("{}: `not run` needs its reason", b.at()))
            }
            (Marker::Run, false) => errors.push(format!("{}: only sh blocks run", b.at())),
            (Marker::None, false) if b.lang == "yaml" => errors.push(format!(
                "{}: a YAML block needs <!-- check: tollgate.yaml|upstreams --> or <!-- not checked: REASON -->",
                b.at()
            )),
            (Marker::NotChecked(reason), _) if reason.is_empty() || b.lang != "yaml" => errors
                .push(format!("{}: `not checked` goes on a YAML block, with its reason", b.at())),
            (Marker::Check(what), _)
                if b.lang != "yaml" || !["tollgate.yaml", "upstreams"].contains(&what.as_str()) =>
            {
                errors.push(format!(
                    "{}: check: tollgate.yaml or upstreams, on a yaml block",
                    b.at()
                ))
            }
            _ => {}
        }
    }
    for (page, text) in pages() {
        let dir = root().join(&page).parent().unwrap().to_path_buf();
        for (line, target) in markdown::links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                root().join(&page)
            } else {
                dir.join(path)
            };
            if !file.exists() {
                errors.push(format!("{}:{line}: {target}: no such file", page.display()));
                continue;
            }
            if !anchor.is_empty() && file.extension().is_some_and(|e| e == "md") {
                let t = std::fs::read_to_string(&file).unwrap();
                if !markdown::anchors(&t).iter().any(|a| a == anchor) {
                    errors.push(format!(
                        "{}:{line}: {target}: no such heading",
                        page.display()
                    ));
                }
            }
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

/// Every source file's text, for the names it exports.
fn source_text() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = String::new();
    walk(&root().join("src"), &mut out);
    out
}

#[test]
fn metrics_and_config_keys_named_in_the_docs_exist() {
    let src = source_text();
    let keys = config_keys::known();
    let mut errors = Vec::new();
    for (page, text) in pages() {
        for (line, span) in markdown::code_spans(&text) {
            let name = span.split(['{', ' ']).next().unwrap_or("");
            if name.starts_with("tollgate_") {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                if !src.contains(&format!("\"{base}\"")) && !src.contains(&format!("\"{name}\"")) {
                    errors.push(format!(
                        "{}:{line}: metric `{name}` is not exported",
                        page.display()
                    ));
                }
                continue;
            }
            if let Some(Err(why)) = keys.check(&span) {
                errors.push(format!("{}:{line}: `{span}`: {why}", page.display()));
            }
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

/// docs/configuration.md lists every key of both files: a key added to the config structs
/// without its row fails here.
#[test]
fn the_configuration_reference_lists_every_key() {
    let text = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let missing = config_keys::known().undocumented(&text);
    assert!(
        missing.is_empty(),
        "docs/configuration.md has no row for:\n{}",
        missing.join("\n")
    );
}

/// The shipped default config, on this test's ports and in its own directory, with the
/// quick start's demo upstream (`python3 -m http.server`).
struct Shipped {
    dir: tempfile::TempDir,
    port: u16,
    metrics: u16,
    demo: u16,
    admin: u16,
    children: Vec<Child>,
}

impl Drop for Shipped {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Shipped {
    fn write() -> Shipped {
        let dir = tempfile::tempdir().unwrap();
        let (port, metrics, demo, admin) = (free_port(), free_port(), free_port(), free_port());
        let conf = std::fs::read_to_string(root().join("conf/tollgate.yaml"))
            .unwrap()
            .replace("0.0.0.0:8080", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:9090", &format!("127.0.0.1:{metrics}"))
            .replace("127.0.0.1:9191", &format!("127.0.0.1:{admin}"))
            .replace("../upstreams.example.yaml", "upstreams.yaml")
            .replace("../state", "state");
        std::fs::write(dir.path().join("tollgate.yaml"), conf).unwrap();
        let upstreams = std::fs::read_to_string(root().join("upstreams.example.yaml"))
            .unwrap()
            .replace("127.0.0.1:9000", &format!("127.0.0.1:{demo}"));
        std::fs::write(dir.path().join("upstreams.yaml"), upstreams).unwrap();
        Shipped {
            dir,
            port,
            metrics,
            demo,
            admin,
            children: Vec::new(),
        }
    }

    fn start() -> Shipped {
        let mut s = Self::write();
        let log = std::fs::File::create(s.dir.path().join("gateway.log")).unwrap();
        s.children.push(
            Command::new("python3")
                .args([
                    "-m",
                    "http.server",
                    &s.demo.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .current_dir(s.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        s.children.push(
            Command::new(binary())
                .arg("-c")
                .arg(s.dir.path().join("tollgate.yaml"))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let started = Instant::now();
        let ready = |port: u16, path: &str| {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut c| {
                use std::io::{Read, Write};
                let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut got = String::new();
                c.write_all(req.as_bytes()).is_ok()
                    && c.read_to_string(&mut got).is_ok()
                    && (got.starts_with("HTTP/1.1 200") || got.starts_with("HTTP/1.0 200"))
            })
        };
        // Serving once the pid file is written (`tollgate -t` then knows the listeners
        // are this instance's).
        let pid_file = s.dir.path().join("state/tollgate.pid");
        while !(pid_file.exists() && ready(s.port, "/.well-known/jwks.json") && ready(s.demo, "/"))
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the shipped config did not start:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// A page's text with the shipped ports replaced by this instance's.
    fn localize(&self, text: &str) -> String {
        text.replace("127.0.0.1:8080", &format!("127.0.0.1:{}", self.port))
            .replace("localhost:8080", &format!("localhost:{}", self.port))
            .replace("127.0.0.1:9090", &format!("127.0.0.1:{}", self.metrics))
            .replace("127.0.0.1:9191", &format!("127.0.0.1:{}", self.admin))
            .replace("127.0.0.1:9000", &format!("127.0.0.1:{}", self.demo))
            .replace("/etc/tollgate/tollgate.yaml", &self.config())
            .replace("conf/tollgate.yaml", &self.config())
    }

    fn config(&self) -> String {
        self.dir.path().join("tollgate.yaml").display().to_string()
    }
}

/// One page's run blocks as a bash script: commands with an expectation have their output
/// captured between markers, so it can be checked here.
fn script(blocks: &[&Block], shipped: &Shipped) -> (String, Vec<(String, String, Expect)>) {
    // (What a command prints on stderr is part of what the page shows.)
    let mut out = String::from("set -e -o pipefail\nexec 2>&1\ncd \"$TOLLGATE_ROOT\"\n");
    let mut expects = Vec::new();
    for b in blocks {
        let text = shipped.localize(&b.text);
        // A block whose output the page shows: all it prints is captured.
        let whole = b.output.as_ref().map(|want| {
            let id = expects.len();
            out.push_str(&format!("printf '@@begin {id}@@\\n'\n"));
            expects.push((
                b.at(),
                "(the block)".to_string(),
                Expect::Output(want.clone()),
            ));
            id
        });
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let first = i;
            let mut command = String::new();
            while i < lines.len() && lines[i].trim_end().ends_with('\\') {
                command.push_str(lines[i].trim_end().trim_end_matches('\\'));
                command.push(' ');
                i += 1;
            }
            let Some(last) = lines.get(i) else { break };
            i += 1;
            let (code, comment) = markdown::split_comment(last);
            command.push_str(code);
            let expect = comment.and_then(markdown::expectation);
            match expect {
                Some(e) if !command.trim().is_empty() => {
                    let id = expects.len();
                    let at = format!("{}:{}", b.page.display(), b.line + 1 + first);
                    out.push_str(&format!(
                        "__out=$({command})\nprintf '@@begin {id}@@\\n%s\\n@@end {id}@@\\n' \"$__out\"\n"
                    ));
                    expects.push((at, command.trim().to_string(), e));
                }
                _ => {
                    out.push_str(&command);
                    out.push('\n');
                }
            }
        }
        if let Some(id) = whole {
            out.push_str(&format!("printf '\\n@@end {id}@@\\n'\n"));
        }
    }
    (out, expects)
}

#[test]
fn every_marked_example_runs_on_the_shipped_config() {
    let blocks = all_blocks();
    let mut pages: Vec<PathBuf> = blocks
        .iter()
        .filter(|b| b.marker == Marker::Run)
        .map(|b| b.page.clone())
        .collect();
    pages.dedup();
    assert!(!pages.is_empty(), "no example is marked <!-- run -->");
    let mut failures = Vec::new();
    let mut ran = 0;
    for page in pages {
        let runs: Vec<&Block> = blocks
            .iter()
            .filter(|b| b.page == page && b.marker == Marker::Run)
            .collect();
        let shipped = Shipped::start();
        let (text, expects) = script(&runs, &shipped);
        let output = run_bash(&text);
        ran += runs.len();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let transcript = || {
            format!(
                "--- script\n{text}\n--- stdout\n{stdout}\n--- stderr\n{}\n--- gateway log (tail)\n{}",
                String::from_utf8_lossy(&output.stderr),
                tail(&shipped.log(), 30)
            )
        };
        if !output.status.success() {
            failures.push(format!(
                "{}: the examples stopped ({})\n{}",
                page.display(),
                output.status,
                transcript()
            ));
            continue;
        }
        for (id, (at, command, expect)) in expects.iter().enumerate() {
            let got = captured(&stdout, id);
            if let Err(why) = got
                .ok_or("no output captured".to_string())
                .and_then(|g| markdown::check(expect, g))
            {
                failures.push(format!("{at}: `{command}`: {why}\n{}", transcript()));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    eprintln!("{ran} marked blocks ran");
}

fn run_bash(script: &str) -> std::process::Output {
    let child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("TOLLGATE_ROOT", root())
        // `tollgate` as the pages call it: the binary under test.
        .env("PATH", path_with_binary())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A hang guard, not a timing assertion: the examples take seconds.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let guard = std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(300)).is_err() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let output = child.wait_with_output().unwrap();
    let _ = tx.send(());
    guard.join().unwrap();
    output
}

fn path_with_binary() -> String {
    let dir = Path::new(binary()).parent().unwrap().display().to_string();
    format!("{dir}:{}", std::env::var("PATH").unwrap_or_default())
}

fn captured(stdout: &str, id: usize) -> Option<&str> {
    let begin = format!("@@begin {id}@@\n");
    let start = stdout.find(&begin)? + begin.len();
    let end = stdout[start..].find(&format!("\n@@end {id}@@"))? + start;
    Some(&stdout[start..end])
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn marked_yaml_snippets_pass_the_config_check() {
    let mut errors = Vec::new();
    let mut checked = 0;
    for b in all_blocks() {
        let Marker::Check(what) = &b.marker else {
            continue;
        };
        let shipped = Shipped::write();
        let snippet: serde_yaml::Value = match serde_yaml::from_str(&b.text) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{}: not YAML: {e}", b.at()));
                continue;
            }
        };
        let file = if what == "upstreams" {
            "upstreams.yaml"
        } else {
            "tollgate.yaml"
        };
        let path = shipped.dir.path().join(file);
        let mut base: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        merge(&mut base, snippet, what == "upstreams");
        std::fs::write(&path, serde_yaml::to_string(&base).unwrap()).unwrap();
        let out = Command::new(binary())
            .arg("-t")
            .arg("-c")
            .arg(shipped.dir.path().join("tollgate.yaml"))
            .output()
            .unwrap();
        checked += 1;
        if !out.status.success() {
            errors.push(format!(
                "{}: tollgate -t refuses it:\n{}{}",
                b.at(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
    eprintln!("{checked} YAML snippets checked");
}

/// The snippet's top-level keys replace the shipped file's; in the upstreams file, its
/// lists of APIs, policies and credentials are added to the shipped ones.
fn merge(base: &mut serde_yaml::Value, snippet: serde_yaml::Value, append_lists: bool) {
    let (Some(base), serde_yaml::Value::Mapping(snippet)) = (base.as_mapping_mut(), snippet) else {
        return;
    };
    for (k, v) in snippet {
        match (base.get_mut(&k), v) {
            (Some(serde_yaml::Value::Sequence(have)), serde_yaml::Value::Sequence(add))
                if append_lists =>
            {
                have.extend(add)
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[test]
fn the_checks_themselves_tell_right_from_wrong() {
    let keys = config_keys::known();
    for good in [
        "server.client_header_timeout",
        "listen[].max_connections",
        "store.purge_interval",
        "store.kind",
        "upstream.retries",
        "tokens.signing_key.algorithm",
    ] {
        assert_eq!(keys.check(good), Some(Ok(())), "{good}");
    }
    for bad in ["server.no_such_key", "store.nope", "upstream.retry"] {
        assert!(matches!(keys.check(bad), Some(Err(_))), "{bad}");
    }
    for other in ["file.rs", "tollgate.yaml", "example.com", "Bearer"] {
        assert_eq!(keys.check(other), None, "{other}");
    }

    let (code, comment) = markdown::split_comment(
        r#"curl -s -o /dev/null -w '%{http_code}\n' -H "X: #1" $GW/demo/   # 401 refused"#,
    );
    assert!(code.ends_with("$GW/demo/   "));
    let expect = markdown::expectation(comment.unwrap()).unwrap();
    assert_eq!(expect, Expect::Status(401));
    assert!(markdown::check(&expect, "401\n").is_ok());
    assert!(markdown::check(&expect, "HTTP/1.1 401 Unauthorized\r\nx: y\r\n").is_ok());
    assert!(markdown::check(&expect, "200\n").is_err());
    assert!(markdown::check(&expect, r#"{"error":"invalid_token"}"#).is_err());

    let expect = markdown::expectation(r#"{"active":true,"scope":"demo:read",...}"#).unwrap();
    assert!(markdown::check(&expect, r#"{"active": true, "scope": "demo:read", "x": 1}"#).is_ok());
    assert!(markdown::check(&expect, r#"{"active":false}"#).is_err());
    assert_eq!(markdown::expectation("a token with every scope"), None);

    // Output as a page shows it: volatile values masked, the words kept.
    let page = Expect::Output(
        "published key `fyzkXMJFoMGm5iRNCK7ELr3JzJKAfrCI0aJSdUstDzc` in JWKS; it signs from \
         2026-12-06T13:54:45Z (in 10m0s)\n"
            .into(),
    );
    let now = "published key `Qq3kYyFz0Ws9oYgS8lLwq1bA4mJ3c2r9xHq0pZ7vN1E` in JWKS; it signs from \
               2027-01-31T02:05:00Z (in 3s)";
    assert!(markdown::check(&page, now).is_ok());
    assert!(markdown::check(&page, &now.replace("published", "added")).is_err());
    assert!(markdown::check(&page, &format!("{now}\nand one more line")).is_err());
}
