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
/// hide the errors in its siblings. `K` may fill in what the text leaves out before it is
/// parsed (the default `kind` of a section of several kinds).
#[derive(Debug)]
pub(crate) enum Lenient<T, K = AsWritten> {
    Parsed(T),
    Failed {
        path: String,
        message: String,
        written: PhantomData<K>,
    },
}

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
        Ok(match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Lenient::Parsed(v),
            Err(e) => {
                let path = e.path().to_string();
                Lenient::Failed {
                    path: if path == "." { String::new() } else { path },
                    message: e.into_inner().to_string(),
                    written: PhantomData,
                }
            }
        })
    }
}

impl<T, K> Lenient<T, K> {
    /// The parsed value, or `None` after recording the parse error under `path`.
    pub(crate) fn take(self, path: &str, errs: &mut Errors) -> Option<T> {
        match self {
            Lenient::Parsed(v) => Some(v),
            Lenient::Failed {
                path: inner,
                message,
                ..
            } => {
                errs.push(join(path, &inner), message);
                None
            }
        }
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
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].path, "items[1].port");
        assert_eq!(list[1].path, "items[2].prt");
        assert!(
            list[1].message.contains("unknown field `prt`"),
            "{}",
            list[1].message
        );
    }
}
