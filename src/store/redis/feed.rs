//! The revocation feed of the cluster store: a node follows the stream after its cursor,
//! and reads the whole live set when it cannot (first start, a gap, a flushed Redis).

use super::super::{Cursor, Feed, Revocation, RevocationTarget};
use super::wire::{self, StreamId};
use ::redis::Value;
use ::redis::aio::MultiplexedConnection;
use std::time::Duration;

/// Read the feed after `cursor` on `conn` (fresh: just connected, so continuity is
/// checked first).
pub(super) async fn read_feed(
    conn: &mut MultiplexedConnection,
    fresh: bool,
    prefix: &str,
    cursor: &Cursor,
    wait: Duration,
    now: i64,
) -> ::redis::RedisResult<Feed> {
    let stream = format!("{prefix}feed");
    let from = cursor.0.as_deref().and_then(StreamId::parse);
    let gap = match (&from, fresh) {
        (None, _) => true,
        (Some(_), false) => false,
        (Some(at), true) => {
            let info = feed_position(conn, &stream).await?;
            if info.last_generated < *at {
                log::warn!(
                    "the Redis store has fewer revocations than this node saw (restarted without persistence, or flushed); \
                     revocations only this node remembers are kept, and written nowhere"
                );
                true
            } else if info.lost_after(*at) {
                log::info!(
                    "revocations were trimmed from the feed while this node was away; reading the whole set"
                );
                true
            } else {
                false
            }
        }
    };
    if gap {
        // Position first, then the set: what is revoked in between is read again next time.
        let info = feed_position(conn, &stream).await?;
        let revocations = full_set(conn, prefix, now).await?;
        return Ok(Feed {
            revocations,
            next: Cursor(Some(info.last_generated.to_string())),
            full: true,
        });
    }
    let Some(at) = from else {
        return Ok(Feed::default());
    };
    let reply: Value = ::redis::cmd("XREAD")
        .arg("COUNT")
        .arg(1000)
        .arg("BLOCK")
        .arg(wait.as_millis().max(1) as u64)
        .arg("STREAMS")
        .arg(&stream)
        .arg(at.to_string())
        .query_async(conn)
        .await?;
    let (entries, last) = wire::stream_entries(&reply);
    Ok(Feed {
        revocations: entries
            .into_iter()
            .filter(|r| r.until.is_none_or(|u| u >= now))
            .collect(),
        next: Cursor(Some(last.map_or(at, |l| l.max(at)).to_string())),
        full: false,
    })
}

/// The stream's state, to tell whether a cursor can be followed.
async fn feed_position(
    conn: &mut MultiplexedConnection,
    stream: &str,
) -> ::redis::RedisResult<wire::StreamInfo> {
    let info: ::redis::RedisResult<Value> = ::redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async(conn)
        .await;
    match info {
        Ok(v) => Ok(wire::StreamInfo::from_value(&v)),
        // No stream yet: nothing was ever revoked.
        Err(e) if e.to_string().contains("no such key") => Ok(wire::StreamInfo::default()),
        Err(e) => Err(e),
    }
}

async fn full_set(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    now: i64,
) -> ::redis::RedisResult<Vec<Revocation>> {
    let v: Value = ::redis::cmd("ZRANGE")
        .arg(format!("{prefix}revoked"))
        .arg(now)
        .arg("+inf")
        .arg("BYSCORE")
        .arg("WITHSCORES")
        .query_async(conn)
        .await?;
    Ok(wire::scored_members(&v)
        .into_iter()
        .filter_map(|(member, score)| {
            Some(Revocation {
                target: RevocationTarget::decode(&member)?,
                until: score.filter(|s| s.is_finite()).map(|s| s as i64),
            })
        })
        .collect())
}
