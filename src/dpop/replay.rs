//! The proof ids one node has seen (RFC 9449 §11.1), remembered for as long as their
//! proofs could be accepted. Two generations per shard: an id lands in the current one
//! and is forgotten when the generation after next begins, so it is kept at least one
//! window and at most two. Bounded: when the bound is reached new proofs are refused
//! (never forgotten early, which would let a replay through) until old ids age out.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const SHARDS: usize = 16;

struct Generations {
    started: i64,
    current: HashSet<u128>,
    previous: HashSet<u128>,
}

/// What remembering a proof id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    First,
    Again,
    /// The bound is reached: the proof cannot be remembered, so it is refused.
    Full,
}

pub struct ReplayWindow {
    shards: Box<[Mutex<Generations>]>,
    window: i64,
    per_shard: usize,
    entries: AtomicUsize,
    /// Two independently seeded hashes make an id's 128 bits. A collision could only
    /// refuse a proof as replayed, never accept one.
    hashers: (foldhash::fast::RandomState, foldhash::fast::RandomState),
}

impl ReplayWindow {
    /// Ids are kept at least `window` seconds; at most `capacity` at once.
    pub fn new(window: i64, capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Generations {
                        started: 0,
                        current: HashSet::new(),
                        previous: HashSet::new(),
                    })
                })
                .collect(),
            window: window.max(1),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            entries: AtomicUsize::new(0),
            hashers: Default::default(),
        }
    }

    /// Remember the proof `jti` of the key `jkt` at `now`.
    pub fn remember(&self, jkt: &[u8; 32], jti: &str, now: i64) -> Seen {
        let id = (u128::from(self.hashers.0.hash_one((jkt, jti))) << 64)
            | u128::from(self.hashers.1.hash_one((jkt, jti)));
        let shard = &self.shards[(id as usize) % SHARDS];
        let mut g = shard.lock().unwrap_or_else(|e| e.into_inner());
        let age = now.saturating_sub(g.started);
        if age >= self.window {
            let mut dropped = std::mem::take(&mut g.previous).len();
            if age >= 2 * self.window {
                dropped += g.current.len();
                g.current.clear();
            } else {
                g.previous = std::mem::take(&mut g.current);
            }
            g.started = now;
            self.entries.fetch_sub(dropped, Ordering::Relaxed);
        }
        if g.current.contains(&id) || g.previous.contains(&id) {
            return Seen::Again;
        }
        if g.current.len() + g.previous.len() >= self.per_shard {
            return Seen::Full;
        }
        g.current.insert(id);
        self.entries.fetch_add(1, Ordering::Relaxed);
        Seen::First
    }

    /// Ids remembered now (for `tollgate_cache_entries{cache="dpop_replay"}`).
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_refused_again_within_the_window_and_forgotten_after_two() {
        let w = ReplayWindow::new(60, 1000);
        let k = [1u8; 32];
        assert_eq!(w.remember(&k, "a", 1000), Seen::First);
        assert_eq!(w.remember(&k, "a", 1059), Seen::Again);
        // The same id under another key is another proof.
        assert_eq!(w.remember(&[2u8; 32], "a", 1059), Seen::First);
        // One generation on, still remembered.
        assert_eq!(w.remember(&k, "a", 1070), Seen::Again);
        assert_eq!(w.len(), 2);
        // Two windows on, forgotten (its proof's iat is too old to be accepted by now).
        assert_eq!(w.remember(&k, "a", 1200), Seen::First);
    }

    #[test]
    fn a_full_window_refuses_instead_of_forgetting() {
        let w = ReplayWindow::new(60, SHARDS);
        let k = [3u8; 32];
        let mut full = 0;
        for i in 0..200 {
            match w.remember(&k, &i.to_string(), 10) {
                Seen::Full => full += 1,
                Seen::First => {}
                Seen::Again => panic!("never seen"),
            }
        }
        assert!(full > 0);
        assert!(w.len() <= SHARDS);
        // Every id that was taken is still refused.
        let again = (0..200)
            .filter(|i| w.remember(&k, &i.to_string(), 11) == Seen::Again)
            .count();
        assert_eq!(again, w.len());
        // Once the window has passed twice, there is room again.
        assert_eq!(w.remember(&k, "new", 200), Seen::First);
    }
}
