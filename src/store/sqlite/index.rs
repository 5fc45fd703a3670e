//! The in-memory digest index of the token table: the first 8 bytes of a token's digest →
//! the row id that holds it.
//!
//! Why in memory: the table used to be keyed by the digest, so every stored token landed
//! on a random page of a B-tree that outgrows the page cache (some 500 MB at 2,000,000
//! tokens), and issuance slowed as the store grew. Rows are now appended in issue order
//! (`id INTEGER PRIMARY KEY AUTOINCREMENT`): a commit writes the few pages at the table's
//! end. The index is rebuilt from the table at start (one sequential scan) and kept up to
//! date by the writer; it is never the authority. A row is found through it and then
//! checked against the full 32-byte digest stored in the row, so a shared prefix or a
//! stale entry can only cost a lookup, never return the wrong token.
//!
//! The other candidate, a SQLite index on the 8-byte prefix (some 40 MB at 2 M tokens), would
//! fit in the page cache, but its inserts still land on random pages: a commit of 50 tokens
//! would write about 50 index pages to the log, and again at the checkpoint, where the
//! appended table writes a few. Measured with `scripts/bench.sh --store-growth` (README,
//! Performance).
//!
//! Other processes on the same file (the old and the new process of a graceful upgrade)
//! append rows this index has not seen. `AUTOINCREMENT` never reuses an id, and SQLite
//! commits one writer at a time, so "every row up to `seen` is indexed" stays true when
//! the rows after `seen` are read: the writer does so at the start of each batch (it then
//! holds the write lock, so its view is complete), a reader when a digest is missing.
//!
//! Memory: a `HashMap<u64, i64>` bucket is 16 bytes plus one control byte, and buckets are
//! a power of two at most 7/8 full: 2,000,000 tokens take 4,194,304 buckets, 71 MB, or
//! 36 bytes per token (19 bytes just before the table doubles at 3.67 M). The prefix is
//! SHA-256 output, uniform already, so it is its own hash.

use super::super::Digest;
use rusqlite::{Connection, params};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{PoisonError, RwLock};

/// The first 8 bytes of a digest, the index's key.
fn prefix(d: &Digest) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// A hasher that passes the key through: keys are already uniform (SHA-256 output), and
/// only this process's own tokens are inserted, so there is nothing to flood.
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the key is a u64); fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

#[derive(Default)]
struct Inner {
    /// Prefix → the row id of the first token seen with it.
    first: Map<i64>,
    /// Further rows sharing a prefix (about one pair in 10^7 at 2 M tokens): row ids.
    more: Map<Vec<i64>>,
    /// Every row with an id up to this one is in the index.
    seen: i64,
}

impl Inner {
    fn add(&mut self, key: u64, id: i64) {
        match self.first.get(&key) {
            None => {
                self.first.insert(key, id);
            }
            Some(&f) if f == id => {}
            Some(_) => {
                let more = self.more.entry(key).or_default();
                if !more.contains(&id) {
                    more.push(id);
                }
            }
        }
    }

    fn remove(&mut self, key: u64, id: i64) {
        let promoted = match self.more.get_mut(&key) {
            Some(more) => {
                more.retain(|&m| m != id);
                let next = if self.first.get(&key) == Some(&id) {
                    more.pop()
                } else {
                    None
                };
                if more.is_empty() {
                    self.more.remove(&key);
                }
                next
            }
            None => None,
        };
        if self.first.get(&key) == Some(&id) {
            match promoted {
                Some(p) => {
                    self.first.insert(key, p);
                }
                None => {
                    self.first.remove(&key);
                }
            }
        }
    }
}

/// Row ids by digest prefix; see the module comment.
#[derive(Default)]
pub(super) struct DigestIndex {
    inner: RwLock<Inner>,
}

/// Where to look for a digest: row ids, most likely first.
pub(super) struct Candidates {
    first: Option<i64>,
    more: Vec<i64>,
}

impl Candidates {
    pub(super) fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.first.into_iter().chain(self.more.iter().copied())
    }
}

impl DigestIndex {
    /// The index of every row in the table, read in one scan.
    pub(super) fn build(conn: &Connection) -> rusqlite::Result<Self> {
        let count: i64 = conn.query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))?;
        let mut inner = Inner {
            first: Map::with_capacity_and_hasher(
                usize::try_from(count).unwrap_or(0),
                Default::default(),
            ),
            ..Inner::default()
        };
        scan_after(conn, 0, |key, id| inner.add(key, id))
            .map(|max| inner.seen = max.unwrap_or(0))?;
        Ok(Self {
            inner: RwLock::new(inner),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn candidates(&self, d: &Digest) -> Candidates {
        let key = prefix(d);
        let inner = self.read();
        Candidates {
            first: inner.first.get(&key).copied(),
            more: inner.more.get(&key).cloned().unwrap_or_default(),
        }
    }

    /// Index the rows appended after the last one known (by this or another process);
    /// whether there were any.
    pub(super) fn catch_up(&self, conn: &Connection) -> rusqlite::Result<bool> {
        let after = self.read().seen;
        let mut rows = Vec::new();
        let max = scan_after(conn, after, |key, id| rows.push((key, id)))?;
        let Some(max) = max else {
            return Ok(false);
        };
        let mut inner = self.write();
        for (key, id) in rows {
            inner.add(key, id);
        }
        inner.seen = inner.seen.max(max);
        Ok(true)
    }

    /// A row the writer has just inserted, not yet committed. Should it never commit, its
    /// entry may stay: it points at an id that holds another digest or nothing, which the
    /// full-digest check turns away.
    pub(super) fn add(&self, d: &Digest, id: i64) {
        self.write().add(prefix(d), id);
    }

    /// The writer's transaction committed with `top` as the table's id sequence (read in
    /// that transaction, under the write lock): every row up to it is indexed, and no id up
    /// to it will be given out again.
    pub(super) fn committed(&self, top: i64) {
        let mut inner = self.write();
        inner.seen = inner.seen.max(top);
    }

    /// Rows that have been deleted (committed).
    pub(super) fn remove(&self, rows: &[(Digest, i64)]) {
        let mut inner = self.write();
        for (d, id) in rows {
            inner.remove(prefix(d), *id);
        }
    }

    /// How many rows are indexed.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        let inner = self.read();
        inner.first.len() + inner.more.values().map(Vec::len).sum::<usize>()
    }
}

/// Calls `f` with every row after `after`, in id order; the last id seen.
fn scan_after(
    conn: &Connection,
    after: i64,
    mut f: impl FnMut(u64, i64),
) -> rusqlite::Result<Option<i64>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, digest FROM tokens WHERE id > ?1 ORDER BY id")?;
    let mut rows = stmt.query(params![after])?;
    let mut max = None;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let digest = row.get_ref(1)?.as_blob()?;
        let mut key = [0u8; 8];
        if let Some(p) = digest.get(..8) {
            key.copy_from_slice(p);
        }
        f(u64::from_le_bytes(key), id);
        max = Some(id);
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_with_prefix(p: u8, rest: u8) -> Digest {
        let mut d = [rest; 32];
        d[..8].copy_from_slice(&[p; 8]);
        d
    }

    #[test]
    fn shared_prefixes_keep_every_row_and_removal_promotes() {
        let index = DigestIndex::default();
        let a = digest_with_prefix(1, 10);
        let b = digest_with_prefix(1, 11);
        index.add(&a, 5);
        index.add(&b, 9);
        index.add(&b, 9);
        assert_eq!(index.candidates(&a).ids().collect::<Vec<_>>(), vec![5, 9]);
        assert_eq!(index.len(), 2);
        index.remove(&[(a, 5)]);
        assert_eq!(index.candidates(&b).ids().collect::<Vec<_>>(), vec![9]);
        index.remove(&[(b, 9)]);
        assert_eq!(index.len(), 0);
        assert_eq!(index.candidates(&b).ids().count(), 0);
    }

    #[test]
    fn removing_a_row_that_is_not_indexed_changes_nothing() {
        let index = DigestIndex::default();
        let a = digest_with_prefix(2, 0);
        index.add(&a, 3);
        index.remove(&[(a, 4)]);
        assert_eq!(index.candidates(&a).ids().collect::<Vec<_>>(), vec![3]);
    }
}
