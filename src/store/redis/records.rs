//! Provisioned records in the cluster store: conditional writes by script (`scripts`), and
//! the feed, read from the version index. A node waiting for a change blocks on a short
//! wake-up stream, on a connection of its own (`Live::records`).
//!
//! No wake-up is lost: the reader takes the stream's last entry id before it reads the
//! index, then blocks for entries after that id. A write made after the index read adds a
//! later entry, which the blocking read returns at once.

use super::super::{Record, RecordFeed, RecordKind, StoreError, Written};
use super::RedisStore;
use super::scripts::Scripts;
use ::redis::aio::ConnectionLike;
use ::redis::{ErrorKind, RedisError, RedisResult, Value};
use std::time::Duration;

/// Approximate length of the wake-up stream: its entries carry nothing a reader needs.
const WAKE_LEN: u64 = 100;

fn member(kind: RecordKind, name: &str) -> String {
    format!("{}:{name}", kind.code())
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::UnexpectedReturnType, what))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The records of a RECORDS_AFTER reply.
fn parse_feed(reply: &Value) -> RedisResult<(RecordFeed, String)> {
    let Value::Array(items) = reply else {
        return Err(unexpected("the record feed is not an array"));
    };
    let [mode, epoch, rest @ ..] = items.as_slice() else {
        return Err(unexpected("the record feed is short"));
    };
    let full = text(mode).as_deref() == Some("full");
    let epoch = text(epoch).ok_or_else(|| unexpected("the record epoch is not text"))?;
    let mut records = Vec::with_capacity(rest.len() / 3);
    for chunk in rest.chunks_exact(3) {
        let [member, version, doc] = chunk else {
            continue;
        };
        let member = text(member).ok_or_else(|| unexpected("a record name is not text"))?;
        let version = text(version)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| unexpected("a record version is not a number"))?;
        let doc = match doc {
            Value::BulkString(b) => Some(b.clone()),
            Value::Nil | Value::Boolean(false) => None,
            _ => return Err(unexpected("a record document is not a string")),
        };
        // The script passes over kinds this tollgate does not know.
        let Some((kind, name)) = member
            .split_once(':')
            .and_then(|(code, name)| Some((RecordKind::from_code(code.parse().ok()?)?, name)))
        else {
            continue;
        };
        records.push(Record {
            kind,
            name: name.to_string(),
            version,
            doc,
        });
    }
    Ok((RecordFeed { records, full }, epoch))
}

/// One look at the records after `after`, for a reader that saw `epoch` last; with the
/// epoch now.
async fn read_after<C: ConnectionLike>(
    conn: &mut C,
    scripts: &Scripts,
    prefix: &str,
    (after, epoch): (u64, &str),
    limit: usize,
) -> RedisResult<(RecordFeed, String)> {
    let known: Vec<String> = RecordKind::ALL
        .iter()
        .map(|k| k.code().to_string())
        .collect();
    let reply: Value = scripts
        .records_after
        .prepare_invoke()
        .arg(prefix)
        .arg(epoch)
        .arg(after)
        // Exact as a Lua number, and more than any store holds: "no limit".
        .arg(limit.clamp(1, 1 << 50))
        .arg(known.join(" "))
        .invoke_async(conn)
        .await?;
    parse_feed(&reply)
}

/// Read after `after`, and when there is nothing yet, block on the wake-up stream for up
/// to `wait` and read once more.
async fn follow<C: ConnectionLike>(
    conn: &mut C,
    scripts: &Scripts,
    prefix: &str,
    at: (u64, &str),
    limit: usize,
    wait: Duration,
) -> RedisResult<(RecordFeed, String)> {
    let stream = format!("{prefix}records:feed");
    let last: Value = ::redis::cmd("XREVRANGE")
        .arg(&stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    // [[id, [field, value]]]; no entry yet: any entry will do.
    let from = match &last {
        Value::Array(entries) => entries.first().and_then(|e| match e {
            Value::Array(parts) => parts.first().and_then(text),
            _ => None,
        }),
        _ => None,
    }
    .unwrap_or_else(|| "0-0".to_string());
    let (feed, epoch) = read_after(conn, scripts, prefix, at, limit).await?;
    if feed.full || !feed.records.is_empty() {
        return Ok((feed, epoch));
    }
    let woken: Value = ::redis::cmd("XREAD")
        .arg("COUNT")
        .arg(1)
        .arg("BLOCK")
        .arg(wait.as_millis().max(1) as u64)
        .arg("STREAMS")
        .arg(&stream)
        .arg(&from)
        .query_async(conn)
        .await?;
    match woken {
        Value::Nil => Ok((feed, epoch)),
        Value::Array(ref a) if a.is_empty() => Ok((feed, epoch)),
        Value::Map(ref m) if m.is_empty() => Ok((feed, epoch)),
        _ => read_after(conn, scripts, prefix, at, limit).await,
    }
}

impl RedisStore {
    /// Write `doc` (`None`: delete) if the live version is `expected`.
    pub(super) async fn write_record(
        &self,
        kind: RecordKind,
        name: &str,
        expected: Option<u64>,
        doc: Option<Vec<u8>>,
    ) -> Result<Written, StoreError> {
        let member = member(kind, name);
        let (written, version) = self
            .run("put_record", move |mut c, s, prefix| async move {
                let mut inv = s.put_record.prepare_invoke();
                inv.arg(&prefix)
                    .arg(WAKE_LEN)
                    .arg(&member)
                    .arg(expected.map(|v| v.to_string()).unwrap_or_default());
                match &doc {
                    Some(doc) => inv.arg("put").arg(doc.as_slice()),
                    None => inv.arg("delete"),
                };
                inv.invoke_async::<(i64, String)>(&mut c).await
            })
            .await?;
        let version = match version.as_str() {
            "" => None,
            v => Some(v.parse::<u64>().map_err(|_| StoreError::RedisReply {
                op: "put_record",
                what: "a record version is not a number",
            })?),
        };
        match (written, version) {
            (1, Some(version)) => Ok(Written::Done { version }),
            (0, current) => Ok(Written::Conflict { current }),
            _ => Err(StoreError::RedisReply {
                op: "put_record",
                what: "an answer the script never gives",
            }),
        }
    }

    pub(super) async fn read_record(
        &self,
        kind: RecordKind,
        name: &str,
    ) -> Result<Option<Record>, StoreError> {
        let member = member(kind, name);
        let (version, doc) = self
            .run("get_record", move |mut c, _, prefix| async move {
                ::redis::cmd("HMGET")
                    .arg(format!("{prefix}record:{member}"))
                    .arg(&["v", "doc"])
                    .query_async::<(Option<u64>, Option<Vec<u8>>)>(&mut c)
                    .await
            })
            .await?;
        Ok(version.zip(doc).map(|(version, doc)| Record {
            kind,
            name: name.to_string(),
            version,
            doc: Some(doc),
        }))
    }

    /// Without a wait on the shared connection; with one, on the feed's own connection.
    pub(super) async fn read_records_after(
        &self,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<RecordFeed, StoreError> {
        let seen = self.record_epoch();
        let (feed, epoch) = if wait.is_zero() {
            self.run("records_after", move |mut c, s, prefix| async move {
                read_after(&mut c, &s, &prefix, (after, &seen), limit).await
            })
            .await?
        } else {
            self.run_dedicated(
                "records_after",
                |live| &live.records,
                wait,
                move |mut c, _, s, prefix| async move {
                    follow(&mut c, &s, &prefix, (after, &seen), limit, wait).await
                },
            )
            .await?
        };
        self.set_record_epoch(epoch);
        Ok(feed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_replies_parse_in_both_protocols() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        for tombstone in [Value::Nil, Value::Boolean(false)] {
            let reply = Value::Array(vec![
                bulk("after"),
                bulk("1765000000.123"),
                bulk("1:alice"),
                bulk("3"),
                bulk("{}"),
                bulk("2:a:b"),
                bulk("4"),
                tombstone,
                bulk("9:newer"),
                bulk("5"),
                bulk("x"),
            ]);
            let (feed, epoch) = parse_feed(&reply).unwrap();
            assert_eq!(epoch, "1765000000.123");
            assert!(!feed.full);
            assert_eq!(
                feed.records,
                vec![
                    Record {
                        kind: RecordKind::Credential,
                        name: "alice".into(),
                        version: 3,
                        doc: Some(b"{}".to_vec()),
                    },
                    Record {
                        kind: RecordKind::Subscription,
                        name: "a:b".into(),
                        version: 4,
                        doc: None,
                    },
                ]
            );
        }
        let (full, _) = parse_feed(&Value::Array(vec![bulk("full"), bulk("")])).unwrap();
        assert!(full.full && full.records.is_empty());
        assert!(parse_feed(&Value::Array(vec![bulk("full")])).is_err());
        assert!(parse_feed(&Value::Nil).is_err());
        assert!(
            parse_feed(&Value::Array(vec![
                bulk("after"),
                bulk(""),
                bulk("1:x"),
                bulk("v"),
                Value::Nil
            ]))
            .is_err()
        );
    }
}
