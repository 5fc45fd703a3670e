//! Claim mapping: where in a token's claims a value is ([`ClaimPath`], e.g. `roles` or
//! `realm_access.roles`), and how the values are read.

use serde_json::Value;
use std::fmt;

/// The longest claim path accepted.
const MAX_PATH_LEN: usize = 256;

/// A claim, named by its path through nested objects: `roles`, `realm_access.roles`,
/// `resource_access.orders.roles`.
///
/// A claim whose name itself contains dots, like Auth0's namespaced
/// `https://example.com/roles`, is found too: the whole path is first looked up as one
/// top-level name, then segment by segment.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimPath {
    text: Box<str>,
    segments: Box<[Box<str>]>,
}

/// Why a claim path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimPathError {
    #[error("a claim path is empty")]
    Empty,
    #[error("claim path `{0}` is longer than {MAX_PATH_LEN} bytes")]
    TooLong(String),
    #[error("claim path `{0}` has whitespace or control characters")]
    Whitespace(String),
    #[error("claim path `{0}` has an empty segment (write names joined by single dots)")]
    EmptySegment(String),
}

impl ClaimPath {
    pub fn parse(path: &str) -> Result<Self, ClaimPathError> {
        if path.is_empty() {
            return Err(ClaimPathError::Empty);
        }
        if path.len() > MAX_PATH_LEN {
            return Err(ClaimPathError::TooLong(path.to_string()));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ClaimPathError::Whitespace(path.to_string()));
        }
        let segments: Vec<Box<str>> = path.split('.').map(Box::from).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(ClaimPathError::EmptySegment(path.to_string()));
        }
        Ok(Self {
            text: path.into(),
            segments: segments.into(),
        })
    }

    /// `sub`, the default subject claim.
    pub fn sub() -> Self {
        Self {
            text: "sub".into(),
            segments: Box::new(["sub".into()]),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The names along the path.
    pub fn segments(&self) -> &[Box<str>] {
        &self.segments
    }

    /// The value at this path in `claims`, if there is one.
    pub fn lookup<'v>(&self, claims: &'v Value) -> Option<&'v Value> {
        if self.segments.len() > 1
            && let Some(v) = claims.get(&*self.text)
        {
            return Some(v);
        }
        self.segments
            .iter()
            .try_fold(claims, |value, segment| value.get(&**segment))
    }

    /// The strings at this path: a string is split on spaces, an array's strings are taken
    /// as they are (other elements are skipped). `None` when the claim is absent or of
    /// another type.
    pub fn strings<'v>(&self, claims: &'v Value) -> Option<Vec<&'v str>> {
        match self.lookup(claims)? {
            Value::String(s) => Some(s.split(' ').filter(|p| !p.is_empty()).collect()),
            Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect()),
            _ => None,
        }
    }

    /// The non-empty string at this path.
    pub fn string<'v>(&self, claims: &'v Value) -> Option<&'v str> {
        self.lookup(claims)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

impl fmt::Debug for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClaimPath({})", self.text)
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `email_verified` as providers send it: a boolean, or (Amazon Cognito) the string
/// `"true"` or `"false"`.
pub fn email_verified(claims: &Value) -> Option<bool> {
    match claims.get("email_verified")? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// A top-level string claim.
pub fn string_claim(claims: &Value, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::to_string)
}
