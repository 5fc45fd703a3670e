//! Reading the documentation as the docs tests need it: fenced blocks with the marker line
//! before them, headings (for anchors), links, and the expectations written as trailing
//! comments on command lines.

use std::path::{Path, PathBuf};

/// What the line before a fence says about the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// `<!-- run -->`: executed against the shipped default config.
    Run,
    /// `<!-- not run: REASON -->`.
    NotRun(String),
    /// `<!-- check: tollgate.yaml -->` or `<!-- check: upstreams -->`.
    Check(String),
    /// `<!-- not checked: REASON -->`: YAML that is not tollgate's, or not on its own.
    NotChecked(String),
    None,
}

#[derive(Debug, Clone)]
pub struct Block {
    pub page: PathBuf,
    /// 1-based line of the opening fence.
    pub line: usize,
    pub lang: String,
    pub marker: Marker,
    pub text: String,
    /// 1-based line of the closing fence.
    pub end: usize,
    /// A ```text block right after this one (within two lines): what it prints.
    pub output: Option<String>,
}

impl Block {
    pub fn is_shell(&self) -> bool {
        matches!(self.lang.as_str(), "sh" | "bash" | "console" | "shell")
    }

    pub fn at(&self) -> String {
        format!("{}:{}", self.page.display(), self.line)
    }
}

fn marker(line: &str) -> Marker {
    let Some(inner) = line
        .trim()
        .strip_prefix("<!--")
        .and_then(|l| l.strip_suffix("-->"))
    else {
        return Marker::None;
    };
    let inner = inner.trim();
    if inner == "run" {
        Marker::Run
    } else if let Some(reason) = inner.strip_prefix("not run:") {
        Marker::NotRun(reason.trim().to_string())
    } else if let Some(reason) = inner.strip_prefix("not checked:") {
        Marker::NotChecked(reason.trim().to_string())
    } else if let Some(what) = inner.strip_prefix("check:") {
        Marker::Check(what.trim().to_string())
    } else {
        Marker::None
    }
}

/// Every fenced block of a page, with its marker.
pub fn blocks(page: &Path, text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let lang = info.trim().to_string();
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && lines[i].trim_start() != "```" {
            body.push(lines[i]);
            i += 1;
        }
        out.push(Block {
            page: page.to_path_buf(),
            line: start + 1,
            lang,
            marker: start
                .checked_sub(1)
                .map_or(Marker::None, |p| marker(lines[p])),
            text: body.join("\n"),
            end: i + 1,
            output: None,
        });
        i += 1;
    }
    for k in 1..out.len() {
        if out[k].lang == "text" && out[k].line <= out[k - 1].end + 2 {
            out[k - 1].output = Some(out[k].text.clone());
        }
    }
    out
}

/// Output with its volatile parts masked, line by line: base64url ids and anything with a
/// `/` in it (paths, hashes) become `<id>`, durations (`2m22s`, `10ms`) `<dur>`, other
/// digit runs `#`, so timestamps and counts compare by shape. An age under a second, which
/// `keys list` prints as `(now)`, reads as `(0s ago)`.
pub fn mask(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            line.replace("(now)", "(0s ago)")
                .split(' ')
                .map(mask_word)
                .collect::<Vec<_>>()
                .join(" ")
                .trim_end()
                .to_string()
        })
        .collect()
}

fn mask_word(word: &str) -> String {
    let id =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '$' | '=' | ',' | '.');
    let core = word.trim_matches(|c: char| !id(c) && c != '/');
    if core.contains('/') || (core.len() >= 20 && core.chars().all(id)) {
        return word.replacen(core, "<id>", 1);
    }
    let mut out = String::new();
    let chars: Vec<char> = word.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // A duration: digits and units, repeated (2m22s, 10ms, 1h30m).
        let mut j = i;
        let mut units = 0;
        loop {
            let d = j;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let u = j;
            while j < chars.len() && matches!(chars[j], 'd' | 'h' | 'm' | 's') {
                j += 1;
            }
            if j == u || j == d {
                j = u;
                break;
            }
            units += 1;
            if j >= chars.len() || !chars[j].is_ascii_digit() {
                break;
            }
        }
        if units > 0 {
            out.push_str("<dur>");
        } else {
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            out.push('#');
        }
        i = j;
    }
    out
}

/// Lines outside fenced blocks (prose), with their 1-based numbers.
pub fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut inside = false;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            continue;
        }
        if !inside {
            out.push((n + 1, line));
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings (a repeated heading gets `-1`, `-2`, … as on GitHub).
pub fn anchors(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, line) in prose(text) {
        let t = line.trim_start();
        if t.starts_with('#') {
            let heading = t.trim_start_matches('#').replace('`', "");
            let base = slug(&heading);
            let n = out
                .iter()
                .filter(|a| *a == &base || a.starts_with(&format!("{base}-")))
                .count();
            out.push(if n == 0 { base } else { format!("{base}-{n}") });
        }
    }
    out
}

/// Targets of Markdown links `[text](target)` in prose lines.
pub fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text) {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else {
                break;
            };
            out.push((n, after[..end].trim().to_string()));
            rest = &after[end..];
        }
    }
    out
}

/// Backticked spans in prose lines.
pub fn code_spans(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text) {
        let mut parts = line.split('`');
        parts.next();
        while let Some(span) = parts.next() {
            out.push((n, span.to_string()));
            // The text between this span and the next.
            if parts.next().is_none() {
                break;
            }
        }
    }
    out
}

/// A shell line split at its trailing comment (a `#` after whitespace, outside quotes).
pub fn split_comment(line: &str) -> (&str, Option<&str>) {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && prev != '\\' => double = !double,
            '#' if !single && !double && prev.is_whitespace() => {
                return (&line[..i], Some(line[i + 1..].trim()));
            }
            _ => {}
        }
        prev = c;
    }
    (line, None)
}

/// What a trailing comment asks of a command's output.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Status(u16),
    /// `"key":value` pairs, each to be found in the (space-free) output.
    Json(Vec<String>),
    /// A whole block's output, as the ```text block after it shows it (masked).
    Output(String),
}

pub fn expectation(comment: &str) -> Option<Expect> {
    let code = comment
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
    if let Some(code) = code
        && comment[3..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_digit())
    {
        return code.parse().ok().map(Expect::Status);
    }
    if comment.starts_with('{') {
        return Some(Expect::Json(json_pairs(comment)));
    }
    None
}

/// The `"key":value` pairs written in a comment, without spaces (`...` and `…` skipped).
fn json_pairs(comment: &str) -> Vec<String> {
    let compact: String = comment.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    let mut rest = compact.as_str();
    while let Some(start) = rest.find('"') {
        let tail = &rest[start + 1..];
        let Some(end) = tail.find('"') else { break };
        let key = &tail[..end];
        let after = &tail[end + 1..];
        let Some(value) = after.strip_prefix(':') else {
            rest = after;
            continue;
        };
        let len = if let Some(v) = value.strip_prefix('"') {
            v.find('"').map_or(value.len(), |e| e + 2)
        } else {
            value.find([',', '}', ']']).unwrap_or(value.len())
        };
        let v = &value[..len];
        if !v.contains("...") && !v.contains('…') && !v.is_empty() {
            out.push(format!("\"{key}\":{v}"));
        }
        rest = &value[len..];
    }
    out
}

/// Check one command's output against what its comment says; `Err` says why not.
pub fn check(expect: &Expect, output: &str) -> Result<(), String> {
    match expect {
        Expect::Status(want) => {
            let first = output.lines().next().unwrap_or("");
            let got = if first.starts_with("HTTP/") {
                first.split_whitespace().nth(1).map(str::to_string)
            } else {
                output
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(|l| l.trim().to_string())
                    .filter(|l| l.len() == 3 && l.bytes().all(|b| b.is_ascii_digit()))
            };
            match got {
                Some(g) if g == want.to_string() => Ok(()),
                Some(g) => Err(format!("status {g}, the page says {want}")),
                None => Err(format!(
                    "no status in the output (use curl -i, or -w '%{{http_code}}\\n'); the page says {want}"
                )),
            }
        }
        Expect::Output(want) => {
            let got: Vec<&str> = output.lines().filter(|l| !l.starts_with("@@")).collect();
            let got = mask(got.join("\n").trim_matches('\n'));
            let want = mask(want.trim_matches('\n'));
            if got == want {
                Ok(())
            } else {
                Err(format!(
                    "the output differs from the page (masked)\n--- page\n{}\n--- command\n{}",
                    want.join("\n"),
                    got.join("\n")
                ))
            }
        }
        Expect::Json(pairs) => {
            let compact: String = output.chars().filter(|c| !c.is_whitespace()).collect();
            match pairs.iter().find(|p| !compact.contains(p.as_str())) {
                None => Ok(()),
                Some(p) => Err(format!("{p} is not in the output")),
            }
        }
    }
}
