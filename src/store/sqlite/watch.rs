//! Whether anything was committed to the file since a feed last found nothing there.
//!
//! The revocation and record feeds poll the file for what other processes write (the
//! graceful-upgrade arrangement: two processes on one file). Most polls find nothing, and
//! each used to run the feed's statements all the same. A connection kept for this alone
//! asks SQLite's `PRAGMA data_version` instead, which changes whenever another connection
//! (this process's writer included) has committed since the last time it was asked
//! (sqlite.org/pragma.html#pragma_data_version): an idle poll reads one number.

use super::BUSY_TIMEOUT_MS;
use crate::store::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::Mutex;

/// The feeds that poll.
#[derive(Clone, Copy)]
pub(super) enum Feed {
    Records = 0,
    Revocations = 1,
}

pub(super) struct Watch {
    inner: Mutex<Inner>,
}

struct Inner {
    /// The process that opened `conn` (a connection never crosses a fork).
    pid: u32,
    conn: Option<Connection>,
    /// Per feed, the cursor and data version of its last read that found nothing.
    idle: [Option<(u64, i64)>; 2],
}

impl Watch {
    pub(super) fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                pid: std::process::id(),
                conn: None,
                idle: [None; 2],
            }),
        }
    }

    /// `Some(version)`: read the feed after `cursor`, and if it finds nothing, report it
    /// with [`Watch::found_nothing`] and this version. `None`: the last read after the
    /// same cursor found nothing, and nothing was committed since, so neither would this.
    pub(super) fn changed(
        &self,
        path: &Path,
        feed: Feed,
        cursor: u64,
    ) -> Result<Option<i64>, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if inner.pid != pid {
            // The parent's connection: never used or closed here.
            std::mem::forget(inner.conn.take());
            inner.pid = pid;
            inner.idle = [None; 2];
        }
        let conn = match &mut inner.conn {
            Some(c) => c,
            slot => slot.insert(open(path)?),
        };
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        let idle = inner.idle.get(feed as usize).copied().flatten();
        Ok((idle != Some((cursor, version))).then_some(version))
    }

    /// The read that [`Watch::changed`] allowed with `version` found nothing after `cursor`.
    pub(super) fn found_nothing(&self, feed: Feed, cursor: u64, version: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.pid == std::process::id()
            && let Some(slot) = inner.idle.get_mut(feed as usize)
        {
            *slot = Some((cursor, version));
        }
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_reads_again_only_after_a_commit_or_at_another_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let other = Connection::open(&path).unwrap();
        other.execute_batch("CREATE TABLE t (x)").unwrap();
        let watch = Watch::new();
        let v = watch.changed(&path, Feed::Records, 7).unwrap().unwrap();
        watch.found_nothing(Feed::Records, 7, v);
        assert_eq!(watch.changed(&path, Feed::Records, 7).unwrap(), None);
        // Another cursor, or the other feed, has read nothing yet.
        assert!(watch.changed(&path, Feed::Records, 8).unwrap().is_some());
        assert!(
            watch
                .changed(&path, Feed::Revocations, 7)
                .unwrap()
                .is_some()
        );
        other.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let after = watch.changed(&path, Feed::Records, 7).unwrap().unwrap();
        assert_ne!(after, v);
        watch.found_nothing(Feed::Records, 7, after);
        assert_eq!(watch.changed(&path, Feed::Records, 7).unwrap(), None);
    }
}
