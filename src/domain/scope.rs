//! Per-operation scope rules: method + path pattern → required scopes (all of / any of),
//! and the scope set a token carries.

use http::Method;

/// The scopes a token carries, in the order the token listed them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes(Box<[Box<str>]>);

impl Scopes {
    /// Build from a space-separated `scope` string (RFC 6749 §3.3).
    pub fn from_space_separated(s: &str) -> Self {
        Self(
            s.split(' ')
                .filter(|p| !p.is_empty())
                .map(Box::from)
                .collect(),
        )
    }

    pub fn from_list<I, S>(items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self(
            items
                .into_iter()
                .flat_map(|s| {
                    s.as_ref()
                        .split(' ')
                        .filter(|p| !p.is_empty())
                        .map(Box::from)
                        .collect::<Vec<_>>()
                })
                .collect(),
        )
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| &**s == scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| &**s)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The space-separated form used in the `scope` claim and token responses.
    pub fn to_space_separated(&self) -> String {
        self.0.join(" ")
    }
}

/// True when `s` is a valid scope token (RFC 6749 §3.3: printable ASCII except space,
/// `"` and `\`).
pub fn is_valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// `*` or `{name}`: exactly one non-empty segment.
    One,
}

/// Why a path pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("path pattern `{0}` must start with `/`")]
    NoSlash(String),
    #[error("`**` may only end the pattern `{0}`")]
    InnerRest(String),
    #[error("empty segment in path pattern `{0}`")]
    EmptySegment(String),
    #[error(
        "segment `{segment}` of `{pattern}`: wildcards must be a whole segment (`*`, `{{name}}` or a final `**`)"
    )]
    PartialWildcard { segment: String, pattern: String },
}

/// A path pattern: literal segments, single-segment wildcards and an optional final `**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Box<[Segment]>,
    /// Ends in `**`: matches zero or more further segments.
    rest: bool,
}

impl PathPattern {
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(PatternError::NoSlash(pattern.to_string()));
        };
        let mut segments = Vec::new();
        let mut rest = false;
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            match *part {
                "**" if last => rest = true,
                "**" => return Err(PatternError::InnerRest(pattern.to_string())),
                "*" => segments.push(Segment::One),
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => {
                    segments.push(Segment::One)
                }
                "" if !last => return Err(PatternError::EmptySegment(pattern.to_string())),
                p if p.contains(['*', '{', '}', '?', '#']) => {
                    return Err(PatternError::PartialWildcard {
                        segment: p.to_string(),
                        pattern: pattern.to_string(),
                    });
                }
                p => segments.push(Segment::Literal(p.into())),
            }
        }
        Ok(Self {
            segments: segments.into(),
            rest,
        })
    }

    /// Match a normalized request path (no query string). One trailing slash is
    /// ignored, so `/orders/` cannot slip past a rule written for `/orders`.
    pub fn matches(&self, path: &str) -> bool {
        let body = path.strip_prefix('/').unwrap_or(path);
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut parts = if body.is_empty() {
            None
        } else {
            Some(body.split('/'))
        };
        for seg in self.segments.iter() {
            let Some(part) = parts.as_mut().and_then(Iterator::next) else {
                return false;
            };
            match seg {
                Segment::Literal(lit) if **lit == *part => {}
                Segment::One if !part.is_empty() => {}
                _ => return false,
            }
        }
        match parts.as_mut().map(|p| p.next()) {
            None | Some(None) => true,
            Some(Some(_)) => self.rest,
        }
    }
}

/// One scope rule of an API.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Empty means every method.
    methods: Box<[Method]>,
    pattern: PathPattern,
    all_of: Box<[Box<str>]>,
    any_of: Box<[Box<str>]>,
    /// The `scope` attribute of the 403 challenge (RFC 6750 §3).
    hint: Box<str>,
}

impl Rule {
    pub fn new(
        methods: &[String],
        path: &str,
        all_of: &[String],
        any_of: &[String],
    ) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut parsed_methods = Vec::new();
        for (i, m) in methods.iter().enumerate() {
            let upper = m.to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(method) if !upper.is_empty() => parsed_methods.push(method),
                _ => errors.push((
                    format!("methods[{i}]"),
                    format!("`{m}` is not an HTTP method"),
                )),
            }
        }
        let pattern = match PathPattern::parse(path) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(("path".into(), e.to_string()));
                None
            }
        };
        for (key, list) in [("all_of", all_of), ("any_of", any_of)] {
            for (i, s) in list.iter().enumerate() {
                if !is_valid_scope_token(s) {
                    errors.push((
                        format!("{key}[{i}]"),
                        format!("`{s}` is not a valid scope (printable ASCII, no spaces, quotes or backslashes)"),
                    ));
                }
            }
        }
        match pattern {
            Some(pattern) if errors.is_empty() => {
                let hint = all_of
                    .iter()
                    .chain(any_of.iter())
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(" ");
                Ok(Self {
                    methods: parsed_methods.into(),
                    pattern,
                    all_of: all_of.iter().map(|s| s.as_str().into()).collect(),
                    any_of: any_of.iter().map(|s| s.as_str().into()).collect(),
                    hint: hint.into(),
                })
            }
            _ => Err(errors),
        }
    }

    pub fn applies_to(&self, method: &Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method)) && self.pattern.matches(path)
    }

    pub fn allows(&self, scopes: &Scopes) -> bool {
        self.all_of.iter().all(|s| scopes.contains(s))
            && (self.any_of.is_empty() || self.any_of.iter().any(|s| scopes.contains(s)))
    }

    /// The scopes to name in an `insufficient_scope` challenge.
    pub fn hint(&self) -> &str {
        &self.hint
    }
}

/// What the rules say about one request.
#[derive(Debug, PartialEq, Eq)]
pub enum ScopeDecision<'a> {
    /// No rule covers the operation, or the covering rule (its index) is satisfied.
    Allowed { rule: Option<usize> },
    /// The first covering rule is not satisfied; carries the scopes to name.
    Insufficient { required: &'a str },
}

/// Apply the first rule that covers `method` + `path`.
pub fn decide<'a>(
    rules: &'a [Rule],
    method: &Method,
    path: &str,
    scopes: &Scopes,
) -> ScopeDecision<'a> {
    match rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.applies_to(method, path))
    {
        Some((_, rule)) if !rule.allows(scopes) => ScopeDecision::Insufficient {
            required: rule.hint(),
        },
        Some((i, _)) => ScopeDecision::Allowed { rule: Some(i) },
        None => ScopeDecision::Allowed { rule: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: &[&str], path: &str, all_of: &[&str], any_of: &[&str]) -> Rule {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Rule::new(&s(methods), path, &s(all_of), &s(any_of)).unwrap()
    }

    #[test]
    fn scopes_parse_from_strings_and_lists() {
        let s = Scopes::from_space_separated("a  b c");
        assert!(s.contains("a") && s.contains("b") && s.contains("c"));
        assert!(!s.contains("d"));
        assert_eq!(s.to_space_separated(), "a b c");
        let l = Scopes::from_list(["x", "y z"]);
        assert_eq!(l.iter().collect::<Vec<_>>(), ["x", "y", "z"]);
        assert!(Scopes::from_space_separated("").is_empty());
    }

    #[test]
    fn scope_tokens_follow_rfc6749() {
        assert!(is_valid_scope_token("orders:read"));
        assert!(is_valid_scope_token("https://api.example.com/read"));
        assert!(!is_valid_scope_token("a b"));
        assert!(!is_valid_scope_token("a\"b"));
        assert!(!is_valid_scope_token("a\\b"));
        assert!(!is_valid_scope_token(""));
    }

    #[test]
    fn patterns_match_segments() {
        let p = PathPattern::parse("/orders/{id}/items").unwrap();
        assert!(p.matches("/orders/42/items"));
        assert!(!p.matches("/orders/42/items/1"));
        assert!(!p.matches("/orders//items"));
        assert!(!p.matches("/orders/42"));

        let p = PathPattern::parse("/orders/**").unwrap();
        assert!(p.matches("/orders"));
        assert!(p.matches("/orders/"));
        assert!(p.matches("/orders/1/2/3"));
        assert!(!p.matches("/ordersX"));
        assert!(!p.matches("/other"));

        let p = PathPattern::parse("/orders/*").unwrap();
        assert!(p.matches("/orders/1"));
        assert!(p.matches("/orders/1/"));
        assert!(!p.matches("/orders/"));
        assert!(!p.matches("/orders"));

        let p = PathPattern::parse("/orders").unwrap();
        assert!(p.matches("/orders"));
        assert!(p.matches("/orders/"));
        assert!(!p.matches("/orders/1"));

        let p = PathPattern::parse("/").unwrap();
        assert!(p.matches("/"));
        assert!(!p.matches("/x"));
        assert!(
            PathPattern::parse("/**")
                .unwrap()
                .matches("/anything/at/all")
        );
    }

    #[test]
    fn bad_patterns_are_rejected_with_a_reason() {
        assert!(
            PathPattern::parse("orders")
                .unwrap_err()
                .to_string()
                .contains("start with")
        );
        assert!(
            PathPattern::parse("/a/**/b")
                .unwrap_err()
                .to_string()
                .contains("may only end")
        );
        assert!(
            PathPattern::parse("/a/x*")
                .unwrap_err()
                .to_string()
                .contains("whole segment")
        );
        assert!(
            PathPattern::parse("/a//b")
                .unwrap_err()
                .to_string()
                .contains("empty segment")
        );
    }

    #[test]
    fn rule_errors_name_their_keys() {
        let errs = Rule::new(
            &["GET".into(), "BAD METHOD".into()],
            "nope",
            &["ok".into(), "bad scope".into()],
            &[],
        )
        .unwrap_err();
        let keys: Vec<_> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["methods[1]", "path", "all_of[1]"]);
    }

    #[test]
    fn all_of_and_any_of() {
        let r = rule(&[], "/**", &["a", "b"], &[]);
        assert!(r.allows(&Scopes::from_space_separated("a b c")));
        assert!(!r.allows(&Scopes::from_space_separated("a")));

        let r = rule(&[], "/**", &[], &["x", "y"]);
        assert!(r.allows(&Scopes::from_space_separated("y")));
        assert!(!r.allows(&Scopes::from_space_separated("z")));

        let r = rule(&[], "/**", &["a"], &["x", "y"]);
        assert!(r.allows(&Scopes::from_space_separated("a x")));
        assert!(!r.allows(&Scopes::from_space_separated("a")));
        assert!(!r.allows(&Scopes::from_space_separated("x")));
        assert_eq!(r.hint(), "a x y");
    }

    #[test]
    fn first_covering_rule_decides() {
        let rules = vec![
            rule(&["GET", "head"], "/orders/**", &["orders:read"], &[]),
            rule(&["POST"], "/orders", &["orders:write"], &[]),
            rule(&[], "/orders/admin/**", &["admin"], &[]),
        ];
        let read = Scopes::from_space_separated("orders:read");
        assert_eq!(
            decide(&rules, &Method::GET, "/orders/1", &read),
            ScopeDecision::Allowed { rule: Some(0) }
        );
        assert_eq!(
            decide(&rules, &Method::HEAD, "/orders", &read),
            ScopeDecision::Allowed { rule: Some(0) }
        );
        assert_eq!(
            decide(&rules, &Method::POST, "/orders", &read),
            ScopeDecision::Insufficient {
                required: "orders:write"
            }
        );
        // GET /orders/admin is covered by the first rule, which read satisfies.
        assert_eq!(
            decide(&rules, &Method::GET, "/orders/admin/x", &read),
            ScopeDecision::Allowed { rule: Some(0) }
        );
        assert_eq!(
            decide(&rules, &Method::DELETE, "/orders/admin/x", &read),
            ScopeDecision::Insufficient { required: "admin" }
        );
        // No rule covers PUT /orders/1: a valid token is enough.
        assert_eq!(
            decide(&rules, &Method::PUT, "/orders/1", &Scopes::default()),
            ScopeDecision::Allowed { rule: None }
        );
    }
}
