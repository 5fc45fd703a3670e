//! Strict JSON for JOSE headers and claims: UTF-8, every member read in full (unused ones
//! too), and no name twice in one object (RFC 7515 §5.2, RFC 8725 §3.8) — so what tollgate
//! reads is what every other JWT library reads.

use super::Malformed;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::fmt;

/// Decode a JOSE header or claims set: UTF-8 JSON (RFC 7519 §7.2), all of it, including the
/// values of members we do not read (`from_slice` skips those without checking them).
pub(super) fn from_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Malformed> {
    let text = std::str::from_utf8(bytes).map_err(|_| Malformed::Json)?;
    serde_json::from_str(text).map_err(json_error)
}

fn json_error(e: serde_json::Error) -> Malformed {
    if e.to_string().starts_with(DUPLICATE) {
        Malformed::DuplicateKey
    } else {
        Malformed::Json
    }
}

const DUPLICATE: &str = "duplicate key";

/// A JSON object key, borrowed from the input when it has no escapes.
pub(super) struct Key<'de>(pub(super) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Remembers the keys of one object and fails on the second sighting of any of them.
#[derive(Default)]
pub(super) struct SeenKeys<'de>(Vec<Cow<'de, str>>);

impl<'de> SeenKeys<'de> {
    pub(super) fn check<E: de::Error>(&mut self, key: Cow<'de, str>) -> Result<(), E> {
        if self.0.contains(&key) {
            return Err(E::custom(format_args!("{DUPLICATE} `{key}`")));
        }
        self.0.push(key);
        Ok(())
    }
}

/// A member we do not use, read in full all the same: strings are decoded (a lone surrogate
/// escape is refused) and nested objects checked for repeated names, so the whole document
/// is JSON that every reader sees alike. Skipping it unread would accept what serde_json,
/// and other JWT libraries, refuse.
pub(super) struct Unread;

impl<'de> Deserialize<'de> for Unread {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Unread;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Unread, E> {
                Ok(Unread)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Unread, E> {
                Ok(Unread)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Unread, E> {
                Ok(Unread)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Unread, E> {
                Ok(Unread)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Unread, E> {
                Ok(Unread)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Unread, E> {
                Ok(Unread)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unread, A::Error> {
                while seq.next_element::<Unread>()?.is_some() {}
                Ok(Unread)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unread, A::Error> {
                let mut seen = SeenKeys::default();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    seen.check(key)?;
                    map.next_value::<Unread>()?;
                }
                Ok(Unread)
            }
        }
        d.deserialize_any(V)
    }
}
