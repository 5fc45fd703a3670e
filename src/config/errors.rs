//! Config error collection: every problem is kept with the key path it belongs to,
//! so one run of `tollgate -t` reports all of them.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;

/// One problem in a config file, located by file and key path (`apis[2].upstream.servers[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

/// Every error found while loading the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors for one file while validation walks it.
pub(crate) struct Errors {
    file: String,
    list: Vec<ConfigError>,
}

impl Errors {
    pub(crate) fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            list: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, path: impl fmt::Display, message: impl fmt::Display) {
        self.list.push(ConfigError {
            file: self.file.clone(),
            path: path.to_string(),
            message: message.to_string(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn count(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn into_vec(self) -> Vec<ConfigError> {
        self.list
    }
}

/// Join a key path and a child key: `join("apis[0]", "name")` is `apis[0].name`.
pub(crate) fn join(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (_, true) => parent.to_string(),
        _ if child.starts_with('[') => format!("{parent}{child}"),
        _ => format!("{parent}.{child}"),
    }
}

/// A section or list item parsed on its own, so that an error in one item does not
/// hide the errors in its siblings, nor (as far as the shape allows) in itself: a key that
/// fails to parse is reported and left out, and the item parsed again without it, so one
/// bad value does not hide the next (a bad `auth` and a bad `prefix` in one API are both
/// reported). `K` may fill in what the text leaves out before it is parsed (the default
/// `kind` of a section of several kinds).
#[derive(Debug)]
pub(crate) struct Lenient<T, K = AsWritten> {
    /// The item, with its bad keys left out; `None` when it could not be parsed at all.
    value: Option<T>,
    /// Each problem: its key path within the item, and what is wrong.
    errors: Vec<(String, String)>,
    written: PhantomData<K>,
}

/// How many of one item's errors are reported before the rest are left unsaid.
const MAX_ITEM_ERRORS: usize = 32;

/// What a section's text says, before it is parsed as its type.
pub(crate) trait Prepare {
    fn prepare(_value: &mut serde_yaml::Value) {}
}

/// The text as written.
#[derive(Debug)]
pub(crate) struct AsWritten;

impl Prepare for AsWritten {}

/// A mapping without `kind` takes the kind `K::KIND`.
#[derive(Debug)]
pub(crate) struct DefaultKind<K>(PhantomData<K>);

/// Names a default kind.
pub(crate) trait KindName {
    const KIND: &'static str;
}

impl<K: KindName> Prepare for DefaultKind<K> {
    fn prepare(value: &mut serde_yaml::Value) {
        if let serde_yaml::Value::Mapping(m) = value
            && !m.contains_key("kind")
        {
            m.insert("kind".into(), K::KIND.into());
        }
    }
}

impl<'de, T: DeserializeOwned, K: Prepare> Deserialize<'de> for Lenient<T, K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut value = serde_yaml::Value::deserialize(d)?;
        K::prepare(&mut value);
        let mut errors = Vec::new();
        let mut removed: Vec<Vec<String>> = Vec::new();
        while errors.len() < MAX_ITEM_ERRORS {
            let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) => {
                    return Ok(Self {
                        value: Some(v),
                        errors,
                        written: PhantomData,
                    });
                }
                Err(e) => e,
            };
            let keys = key_path(e.path());
            let message = e.into_inner().to_string();
            // A required key this loop left out was reported already, as written.
            let left_out = missing_field(&message).is_some_and(|field| {
                keys.as_ref().is_some_and(|k| {
                    let mut full = k.clone();
                    full.push(field.to_string());
                    removed.contains(&full)
                })
            });
            if left_out {
                break;
            }
            let path = keys.as_deref().map(render).unwrap_or_default();
            errors.push((path, message));
            // Leave the bad key out (a bad list item: its whole list) and parse again.
            let Some(mut keys) = keys else { break };
            while keys.last().is_some_and(|k| k.starts_with('[')) {
                keys.pop();
            }
            if keys.is_empty() || !remove(&mut value, &keys) {
                break;
            }
            removed.push(keys);
        }
        Ok(Self {
            value: None,
            errors,
            written: PhantomData,
        })
    }
}

/// The keys of an error's path (`[2]` for a list index), or `None` where it is not
/// known. The item itself is the empty path.
fn key_path(path: &serde_path_to_error::Path) -> Option<Vec<String>> {
    use serde_path_to_error::Segment;
    path.iter()
        .map(|s| match s {
            Segment::Seq { index } => Some(format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => Some(key.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// `["upstream", "servers", "[1]"]` as `upstream.servers[1]`.
fn render(keys: &[String]) -> String {
    keys.iter().fold(String::new(), |path, k| join(&path, k))
}

/// The field serde's `missing field` message names.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Take the key at `keys` out of `value`; whether it was there.
fn remove(value: &mut serde_yaml::Value, keys: &[String]) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut at = value;
    for k in parents {
        let next = match (k.strip_prefix('[').and_then(|i| i.strip_suffix(']')), at) {
            (Some(i), serde_yaml::Value::Sequence(items)) => {
                i.parse::<usize>().ok().and_then(|i| items.get_mut(i))
            }
            (None, serde_yaml::Value::Mapping(m)) => m.get_mut(k.as_str()),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    match at {
        serde_yaml::Value::Mapping(m) => m.remove(last.as_str()).is_some(),
        _ => false,
    }
}

impl<T, K> Lenient<T, K> {
    /// The parsed value (its bad keys left out), after recording every problem under
    /// `path`; `None` when it could not be parsed at all.
    pub(crate) fn take(self, path: &str, errs: &mut Errors) -> Option<T> {
        for (inner, message) in self.errors {
            errs.push(join(path, &inner), message);
        }
        self.value
    }
}

/// Parse YAML text into `T`, recording a syntax or shape error.
pub(super) fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    errs: &mut Errors,
) -> Option<T> {
    if text.trim().is_empty() {
        // An empty file is an empty mapping: every setting takes its default.
        return parse_yaml("{}", errs);
    }
    let de = serde_yaml::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            errs.push(
                if path == "." { String::new() } else { path },
                e.into_inner(),
            );
            None
        }
    }
}

/// A duration read from the file, or `default` when absent; a bad one is
/// recorded under `path` and the default stands in.
pub(super) fn duration(
    value: Option<&str>,
    path: String,
    default: std::time::Duration,
    errs: &mut Errors,
) -> std::time::Duration {
    match value {
        None => default,
        Some(v) => super::duration::parse_duration(v).unwrap_or_else(|e| {
            errs.push(path, e);
            default
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_builds_dotted_and_indexed_paths() {
        assert_eq!(join("", "apis"), "apis");
        assert_eq!(join("apis", "[2]"), "apis[2]");
        assert_eq!(join("apis[2]", "upstream"), "apis[2].upstream");
        assert_eq!(join("apis[2]", ""), "apis[2]");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        #[allow(dead_code)]
        port: u16,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Safe,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Api {
        name: String,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        limit: Option<u32>,
    }

    fn one_api(text: &str) -> (Option<Api>, Vec<(String, String)>) {
        let item: Lenient<Api> = serde_yaml::from_str(text).unwrap();
        let mut errs = Errors::new("f.yaml");
        let api = item.take("apis[0]", &mut errs);
        let list = errs
            .into_vec()
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect();
        (api, list)
    }

    #[test]
    fn one_bad_key_does_not_hide_the_next() {
        let (api, errs) =
            one_api("{ name: a, mode: slow, tags: [x, [y]], colour: red, limit: -1 }");
        let said = |path: &str| {
            errs.iter()
                .find(|(p, _)| p == path)
                .map(|(_, m)| m.as_str())
                .unwrap_or_default()
        };
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(
            said("apis[0].mode").contains("unknown variant `slow`"),
            "{errs:?}"
        );
        assert!(
            said("apis[0].tags[1]").contains("expected a string"),
            "{errs:?}"
        );
        assert!(
            said("apis[0].colour").contains("unknown field `colour`"),
            "{errs:?}"
        );
        assert!(said("apis[0].limit").contains("expected u32"), "{errs:?}");
        // What is left parses, so the checks after parsing still see the item.
        let api = api.unwrap();
        assert_eq!((api.name.as_str(), api.mode, api.limit), ("a", None, None));
        assert!(api.tags.is_empty());
    }

    #[test]
    fn a_bad_required_key_is_reported_once() {
        let (api, errs) = one_api("{ name: [a], mode: slow }");
        assert!(api.is_none());
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["apis[0].name", "apis[0].mode"], "{errs:?}");
        // A required key written nowhere is one error, at the item.
        let (api, errs) = one_api("{ mode: fast }");
        assert!(api.is_none());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].1.contains("missing field `name`"), "{errs:?}");
    }

    #[test]
    fn lenient_items_keep_their_own_errors() {
        let items: Vec<Lenient<Item>> =
            serde_yaml::from_str("- port: 1\n- port: nope\n- prt: 3\n").unwrap();
        let mut errs = Errors::new("f.yaml");
        let parsed: Vec<_> = items
            .into_iter()
            .enumerate()
            .filter_map(|(i, it)| it.take(&format!("items[{i}]"), &mut errs))
            .collect();
        assert_eq!(parsed.len(), 1);
        let list = errs.into_vec();
        // A misspelt key is unknown, and the key it meant is missing: both are said.
        assert_eq!(list.len(), 3, "{list:?}");
        assert_eq!(list[2].path, "items[2]");
        assert!(list[2].message.contains("missing field `port`"));
        assert_eq!(list[0].path, "items[1].port");
        assert_eq!(list[1].path, "items[2].prt");
        assert!(
            list[1].message.contains("unknown field `prt`"),
            "{}",
            list[1].message
        );
    }
}
