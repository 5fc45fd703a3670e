//! `application/x-www-form-urlencoded` token requests: each parameter at most once
//! (RFC 6749 §3.2), empty values treated as absent (§3.1).

use super::error::OAuthError;

/// Largest token request body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// Most parameters accepted in one request. A token request has fewer than ten; the cap
/// keeps the repeated-name check (quadratic, and cheaper than hashing at this size) small.
pub const MAX_PARAMS: usize = 64;

/// The parameters of one token request.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn parse(bytes: &[u8]) -> Result<Self, OAuthError> {
        if std::str::from_utf8(bytes).is_err() {
            return Err(OAuthError::invalid_request("the request body is not UTF-8"));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(bytes) {
            if pairs.len() == MAX_PARAMS {
                return Err(OAuthError::invalid_request(format!(
                    "more than {MAX_PARAMS} parameters"
                )));
            }
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{}` is repeated",
                    printable(&k)
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self { pairs })
    }

    /// The value of `name`; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("`{name}` is required")))
    }
}

/// A parameter name as it may appear in an error description: short and printable.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}

/// True for `application/x-www-form-urlencoded`, with or without parameters.
pub fn is_form_content_type(value: &[u8]) -> bool {
    let Ok(v) = std::str::from_utf8(value) else {
        return false;
    };
    v.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        let f = Form::parse(b"grant_type=client_credentials&scope=a+b%20c&empty=").unwrap();
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.get("scope"), Some("a b c"));
        assert_eq!(f.get("empty"), None);
        assert_eq!(f.get("missing"), None);
        assert!(
            f.require("missing")
                .unwrap_err()
                .description
                .contains("`missing`")
        );
    }

    #[test]
    fn repeated_parameters_are_rejected() {
        let e = Form::parse(b"scope=a&scope=b").unwrap_err();
        assert!(e.description.contains("`scope` is repeated"));
        // Same name once encoded, once plain.
        assert!(Form::parse(b"scope=a&sc%6Fpe=b").is_err());
    }

    #[test]
    fn too_many_parameters_are_rejected() {
        let body = |n: usize| {
            (0..n)
                .map(|i| format!("p{i}=v"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert!(Form::parse(body(MAX_PARAMS).as_bytes()).is_ok());
        let e = Form::parse(body(MAX_PARAMS + 1).as_bytes()).unwrap_err();
        assert!(e.description.contains("more than 64 parameters"), "{e:?}");
    }

    #[test]
    fn rejects_non_utf8() {
        assert!(Form::parse(b"a=\xff").is_err());
    }

    #[test]
    fn content_type_check() {
        assert!(is_form_content_type(b"application/x-www-form-urlencoded"));
        assert!(is_form_content_type(
            b"Application/X-WWW-Form-Urlencoded; charset=UTF-8"
        ));
        assert!(!is_form_content_type(b"application/json"));
        assert!(!is_form_content_type(b"multipart/form-data"));
    }
}
