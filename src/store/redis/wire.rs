//! How records are laid out in Redis and read back: token hashes, stream ids, and the
//! shapes of replies (which differ between RESP2 and RESP3).

use crate::domain::ids::{ClientId, GrantId, Jti};
use crate::domain::oauth::TokenKind;
use crate::domain::oauth::{Family, Format};
use crate::store::{Digest, Ephemeral, Revocation, RevocationTarget, StoreError, TokenRecord};
use ::redis::Value;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The arguments of the insert script: the key prefix, the stream's length bound, then each
/// token's digest and fields.
pub(super) fn token_args(
    prefix: &str,
    maxlen: u64,
    tokens: &[(Digest, TokenRecord)],
) -> Vec<Vec<u8>> {
    let mut args: Vec<Vec<u8>> = vec![prefix.into(), maxlen.to_string().into()];
    for (d, t) in tokens {
        push_token(&mut args, d, t);
    }
    args
}

pub(super) use crate::domain::hex;

pub(super) fn ephemeral_key(prefix: &str, kind: Ephemeral, key: &Digest) -> String {
    format!("{prefix}e:{}:{}", kind.code(), hex(key))
}

/// The immutable part of a token record (the hash's `rec` field).
#[derive(Serialize, Deserialize)]
struct Wire {
    jti: Jti,
    grant_id: GrantId,
    client_id: ClientId,
    /// 1 auth, 2 credential.
    family: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    scope: String,
    aud: Vec<String>,
    /// 1 JWT, 2 opaque.
    format: u8,
    iat: i64,
    /// `jkt:<b64>` or `x5t#S256:<b64>` for a sender-constrained token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cnf: Option<String>,
}

/// Append one token's six script arguments: hex, kind, record, grant, expiry, used at.
pub(super) fn push_token(args: &mut Vec<Vec<u8>>, d: &Digest, t: &TokenRecord) {
    let wire = Wire {
        jti: t.jti.clone(),
        grant_id: t.grant_id.clone(),
        client_id: t.client_id.clone(),
        family: match t.family {
            Family::Auth => 1,
            Family::Credential => 2,
        },
        username: t.username.clone(),
        scope: t.scope.clone(),
        aud: t.audiences.clone(),
        format: match t.format {
            Format::Jwt => 1,
            Format::Opaque => 2,
        },
        iat: t.issued_at,
        cnf: t.cnf.map(|c| c.to_stored()),
    };
    args.push(hex(d).into_bytes());
    args.push(match t.kind {
        TokenKind::Access => b"a".to_vec(),
        TokenKind::Refresh => b"r".to_vec(),
    });
    // Serializing plain strings and numbers cannot fail.
    args.push(serde_json::to_vec(&wire).unwrap_or_default());
    args.push(t.grant_id.as_str().as_bytes().to_vec());
    args.push(
        t.expires_at
            .map(|e| e.to_string())
            .unwrap_or_default()
            .into_bytes(),
    );
    args.push(
        t.used_at
            .map(|u| u.to_string())
            .unwrap_or_default()
            .into_bytes(),
    );
}

fn text(v: &Option<Vec<u8>>) -> Option<&str> {
    v.as_deref().and_then(|b| std::str::from_utf8(b).ok())
}

/// A record from the fields `k, rec, e, u, x` of a token hash (all `None`: no such token).
pub(super) fn record_from_fields(f: &[Option<Vec<u8>>]) -> Result<Option<TokenRecord>, StoreError> {
    let [kind, rec, exp, used, revoked] = f else {
        return Err(StoreError::RedisReply {
            op: "get",
            what: "unexpected reply",
        });
    };
    let Some(rec) = rec else {
        return Ok(None);
    };
    let wire: Wire =
        serde_json::from_slice(rec).map_err(|e| StoreError::Corrupt(std::sync::Arc::new(e)))?;
    let number = |v: &Option<Vec<u8>>| {
        text(v)
            .filter(|s| !s.is_empty())
            .and_then(|s| s.parse().ok())
    };
    Ok(Some(TokenRecord {
        kind: if text(kind) == Some("r") {
            TokenKind::Refresh
        } else {
            TokenKind::Access
        },
        jti: wire.jti,
        grant_id: wire.grant_id,
        client_id: wire.client_id,
        family: if wire.family == 1 {
            Family::Auth
        } else {
            Family::Credential
        },
        username: wire.username,
        scope: wire.scope,
        audiences: wire.aud,
        format: if wire.format == 1 {
            Format::Jwt
        } else {
            Format::Opaque
        },
        issued_at: wire.iat,
        expires_at: number(exp),
        used_at: number(used),
        revoked: text(revoked) == Some("1"),
        cnf: wire
            .cnf
            .as_deref()
            .and_then(crate::domain::cnf::Confirmation::from_stored),
    }))
}

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct StreamId(u64, u64);

impl StreamId {
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-')?;
        Some(StreamId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

/// Key-value pairs of a reply that is a map (RESP3) or a flat array (RESP2).
fn pairs(v: &Value) -> Vec<(&Value, &Value)> {
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(a) => a.chunks_exact(2).map(|c| (&c[0], &c[1])).collect(),
        _ => Vec::new(),
    }
}

/// What XINFO STREAM says about where the stream is.
#[derive(Debug, Default)]
pub(super) struct StreamInfo {
    pub last_generated: StreamId,
    /// Entries in the stream now, and ever added (Redis 7.0+): fewer now means some were
    /// trimmed.
    pub length: u64,
    pub entries_added: u64,
    /// The oldest entry still in the stream (zero when it is empty).
    pub first: StreamId,
}

impl StreamInfo {
    /// Whether entries after `cursor` may have been trimmed before they were read. Errs
    /// on the safe side: the price of a false alarm is one read of the live set.
    pub fn lost_after(&self, cursor: StreamId) -> bool {
        if self.entries_added <= self.length {
            return false;
        }
        if self.length == 0 {
            self.last_generated > cursor
        } else {
            self.first > cursor
        }
    }
}

impl StreamInfo {
    pub fn from_value(v: &Value) -> Self {
        let mut info = StreamInfo::default();
        for (k, val) in pairs(v) {
            let id = as_text(val).as_deref().and_then(StreamId::parse);
            match as_text(k).as_deref() {
                Some("last-generated-id") => info.last_generated = id.unwrap_or_default(),
                Some("recorded-first-entry-id") => info.first = id.unwrap_or_default(),
                Some("length") => {
                    info.length = as_text(val).and_then(|t| t.parse().ok()).unwrap_or(0)
                }
                Some("entries-added") => {
                    info.entries_added = as_text(val).and_then(|t| t.parse().ok()).unwrap_or(0)
                }
                _ => {}
            }
        }
        info
    }
}

/// Members and scores of a ZRANGE … WITHSCORES reply; `None` for `+inf`.
pub(super) fn scored_members(v: &Value) -> Vec<(String, Option<f64>)> {
    let score = |s: &Value| match s {
        Value::Double(d) => Some(*d),
        other => as_text(other).and_then(|t| match t.as_str() {
            "inf" | "+inf" => Some(f64::INFINITY),
            t => t.parse().ok(),
        }),
    };
    let mut out = Vec::new();
    match v {
        // RESP3: an array of [member, score] pairs.
        Value::Array(items) if items.iter().all(|i| matches!(i, Value::Array(_))) => {
            for item in items {
                if let Value::Array(p) = item
                    && let [m, s] = p.as_slice()
                    && let Some(m) = as_text(m)
                {
                    out.push((m, score(s).filter(|s| s.is_finite())));
                }
            }
        }
        Value::Array(items) => {
            for c in items.chunks_exact(2) {
                if let Some(m) = as_text(&c[0]) {
                    out.push((m, score(&c[1]).filter(|s| s.is_finite())));
                }
            }
        }
        _ => {}
    }
    out
}

/// The revocations of an XREAD reply for one stream, and the last id read.
pub(super) fn stream_entries(v: &Value) -> (Vec<Revocation>, Option<StreamId>) {
    let mut out = Vec::new();
    let mut last = None;
    // [[stream, [[id, [field, value, …]], …]]] (RESP2) or {stream: […]} (RESP3); nil on timeout.
    let streams: Vec<&Value> = match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|s| match s {
                Value::Array(p) if p.len() == 2 => Some(&p[1]),
                _ => None,
            })
            .collect(),
        Value::Map(m) => m.iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    for entries in streams {
        let Value::Array(entries) = entries else {
            continue;
        };
        for e in entries {
            let Value::Array(parts) = e else { continue };
            let [id, fields] = parts.as_slice() else {
                continue;
            };
            if let Some(id) = as_text(id).as_deref().and_then(StreamId::parse) {
                last = last.max(Some(id));
            }
            let mut member = None;
            let mut until = None;
            for (k, val) in pairs(fields) {
                match as_text(k).as_deref() {
                    Some("r") => member = as_text(val),
                    Some("until") => until = as_text(val).and_then(|t| t.parse::<i64>().ok()),
                    _ => {}
                }
            }
            if let Some(target) = member.as_deref().and_then(RevocationTarget::decode) {
                out.push(Revocation { target, until });
            }
        }
    }
    (out, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_numerically() {
        let a = StreamId::parse("1700000000000-9").unwrap();
        let b = StreamId::parse("1700000000000-10").unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "1700000000000-10");
        assert!(StreamId::parse("x-1").is_none());
        assert!(StreamId::default() < a);
    }

    #[test]
    fn replies_parse_in_both_protocols() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = Value::Array(vec![
            bulk("5-1"),
            Value::Array(vec![
                bulk("r"),
                bulk("j\u{1f}abc"),
                bulk("until"),
                bulk("99"),
            ]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("p:feed"),
            Value::Array(vec![entry.clone()]),
        ])]);
        let resp3 = Value::Map(vec![(bulk("p:feed"), Value::Array(vec![entry]))]);
        for v in [resp2, resp3] {
            let (list, last) = stream_entries(&v);
            assert_eq!(last, StreamId::parse("5-1"));
            assert_eq!(
                list,
                vec![Revocation {
                    target: RevocationTarget::Jti(Jti::new("abc")),
                    until: Some(99)
                }]
            );
        }
        assert_eq!(stream_entries(&Value::Nil), (vec![], None));
        let flat = Value::Array(vec![
            bulk("g\u{1f}x"),
            bulk("inf"),
            bulk("j\u{1f}y"),
            bulk("12"),
        ]);
        assert_eq!(
            scored_members(&flat),
            vec![
                ("g\u{1f}x".to_string(), None),
                ("j\u{1f}y".to_string(), Some(12.0))
            ]
        );
        let info = Value::Array(vec![
            bulk("length"),
            Value::Int(3),
            bulk("last-generated-id"),
            bulk("9-0"),
            bulk("entries-added"),
            Value::Int(7),
            bulk("recorded-first-entry-id"),
            bulk("4-2"),
        ]);
        let i = StreamInfo::from_value(&info);
        assert_eq!(i.last_generated, StreamId(9, 0));
        assert_eq!((i.length, i.entries_added, i.first), (3, 7, StreamId(4, 2)));
        // Four were trimmed: a node that read up to 4-1 may have missed some; one past 4-2
        // has missed none.
        assert!(i.lost_after(StreamId(4, 1)));
        assert!(!i.lost_after(StreamId(4, 2)));
        let emptied = StreamInfo {
            last_generated: StreamId(9, 0),
            length: 0,
            entries_added: 7,
            first: StreamId::default(),
        };
        assert!(emptied.lost_after(StreamId(8, 0)));
        assert!(!emptied.lost_after(StreamId(9, 0)));
    }
}
