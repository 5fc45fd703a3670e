// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! Idle upstream connections kept for reuse, without a task per connection.
//!
//! A released connection goes into a list under its key with the time its idle timeout
//! runs out. Nothing watches it while it waits: taking it out checks the deadline, and the
//! caller checks that the peer has not closed it or sent data (`test_reusable_stream`). A
//! sweep every [`SWEEP_INTERVAL`], by one task per pool, closes the connections whose
//! timeout has run out or whose peer has closed them, so an idle timeout is kept to within
//! that interval and a connection the peer closed is closed here within it too.
//!
//! The pool holds at most `size` connections; releasing one more closes the least recently
//! released.

use crate::protocols::Stream;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the idle connections are checked for timeouts and closes by their peers.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

struct Idle {
    stream: Stream,
    /// Release order, to find the least recently released connection.
    seq: u64,
    since: Instant,
    deadline: Option<Instant>,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d <= now)
    }
}

#[derive(Default)]
struct Inner {
    /// Idle connections by key, the most recently released last; a list emptied by `get`
    /// stays until the next sweep.
    by_key: HashMap<u64, Vec<Idle>>,
    /// (key, seq) in release order. Entries of connections taken out are left here and
    /// skipped when evicting; the queue is rebuilt when they outnumber the live ones.
    order: VecDeque<(u64, u64)>,
    count: usize,
    next_seq: u64,
    /// Whether a sweeper task is running for this pool.
    sweeping: bool,
}

impl Inner {
    /// Remove the least recently released connection.
    fn evict_oldest(&mut self) -> Option<Idle> {
        while let Some((key, seq)) = self.order.pop_front() {
            let Some(list) = self.by_key.get_mut(&key) else {
                continue;
            };
            let Some(at) = list.iter().position(|i| i.seq == seq) else {
                continue;
            };
            let idle = list.remove(at);
            if list.is_empty() {
                self.by_key.remove(&key);
            }
            self.count -= 1;
            return Some(idle);
        }
        None
    }

    /// Rebuild `order` from the live connections once stale entries dominate it.
    fn compact_order(&mut self) {
        if self.order.len() <= 2 * self.count + 64 {
            return;
        }
        let mut live: Vec<(u64, u64)> = self
            .by_key
            .iter()
            .flat_map(|(key, list)| list.iter().map(move |i| (i.seq, *key)))
            .collect();
        live.sort_unstable();
        self.order = live.into_iter().map(|(seq, key)| (key, seq)).collect();
    }
}

/// Idle connections by key (usually `peer.reuse_hash()`).
pub(crate) struct IdlePool {
    size: usize,
    inner: Mutex<Inner>,
    /// Counts idle connections closed because their peer sent data.
    unexpected_data: Arc<AtomicU64>,
}

impl IdlePool {
    pub fn new(size: usize, unexpected_data: Arc<AtomicU64>) -> Self {
        IdlePool {
            size,
            inner: Mutex::new(Inner::default()),
            unexpected_data,
        }
    }

    /// Keep `stream` for reuse under `key` until `idle_timeout` runs out. Returns the
    /// connections this pushed out of a full pool, with how long each was idle; they are
    /// closed when the caller drops them.
    pub fn put(
        self: &Arc<Self>,
        key: u64,
        stream: Stream,
        idle_timeout: Option<Duration>,
    ) -> Vec<(Stream, Duration)> {
        let now = Instant::now();
        let mut evicted = Vec::new();
        let start_sweeper;
        {
            let mut inner = self.inner.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.by_key.entry(key).or_default().push(Idle {
                stream,
                seq,
                since: now,
                deadline: idle_timeout.and_then(|t| now.checked_add(t)),
            });
            inner.order.push_back((key, seq));
            inner.count += 1;
            while inner.count > self.size {
                match inner.evict_oldest() {
                    Some(idle) => evicted.push((idle.stream, now - idle.since)),
                    None => break,
                }
            }
            inner.compact_order();
            start_sweeper = !inner.sweeping;
            inner.sweeping = true;
        }
        if start_sweeper {
            self.start_sweeper();
        }
        evicted
    }

    /// Take the most recently released connection under `key` whose idle timeout has not
    /// run out. Whether its peer still has it open is for the caller to check.
    pub fn get(&self, key: u64) -> Option<Stream> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let found = {
            let mut inner = self.inner.lock();
            let mut found = None;
            if let Some(list) = inner.by_key.get_mut(&key) {
                while let Some(idle) = list.pop() {
                    if idle.expired(now) {
                        expired.push(idle);
                    } else {
                        found = Some(idle.stream);
                        break;
                    }
                }
                // An emptied list stays: behind a keep-alive client the connection comes
                // back moments later, and removing and re-creating the list would cost an
                // allocation and two map operations per request. The sweep drops empty
                // lists, so the map holds at most the keys of the last second.
            }
            inner.count -= expired.len() + usize::from(found.is_some());
            found
        };
        drop(expired); // closed outside the lock
        found
    }

    /// Close the connections whose idle timeout has run out, or whose peer closed them or
    /// sent data. Returns how many were closed.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut closed = Vec::new();
        {
            let mut inner = self.inner.lock();
            for list in inner.by_key.values_mut() {
                let mut i = 0;
                while i < list.len() {
                    if list[i].expired(now)
                        || !super::test_reusable_stream(&mut list[i].stream, &self.unexpected_data)
                    {
                        closed.push(list.remove(i));
                    } else {
                        i += 1;
                    }
                }
            }
            inner.by_key.retain(|_, list| !list.is_empty());
            inner.count -= closed.len();
            inner.compact_order();
        }
        closed.len()
    }

    /// The number of idle connections.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().count
    }

    /// One task per pool sweeps it every [`SWEEP_INTERVAL`]; it ends with the pool, and
    /// a pool whose task ended with its runtime starts another on the next release.
    fn start_sweeper(self: &Arc<Self>) {
        /// Marks the pool as without a sweeper when the task ends, however it ends.
        struct Running(Weak<IdlePool>);
        impl Drop for Running {
            fn drop(&mut self) {
                if let Some(pool) = self.0.upgrade() {
                    pool.inner.lock().sweeping = false;
                }
            }
        }
        let running = Running(Arc::downgrade(self));
        pingora_runtime::current_handle().spawn(async move {
            let running = running;
            loop {
                tokio::time::sleep(SWEEP_INTERVAL).await;
                let Some(pool) = running.0.upgrade() else {
                    break;
                };
                pool.sweep();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::l4::stream::Stream as L4Stream;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: (the pool's side as a `Stream`, the peer's side).
    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Box::new(L4Stream::from(ours.unwrap())), theirs.unwrap().0)
    }

    fn id(s: &Stream) -> i32 {
        s.id()
    }

    fn new_pool(size: usize) -> Arc<IdlePool> {
        Arc::new(IdlePool::new(size, Arc::new(AtomicU64::new(0))))
    }

    #[tokio::test]
    async fn reuse_takes_the_most_recently_released_of_its_key() {
        let pool = new_pool(8);
        let (a, _pa) = pair().await;
        let (b, _pb) = pair().await;
        let (c, _pc) = pair().await;
        let (ida, idb, idc) = (id(&a), id(&b), id(&c));
        assert!(pool.put(1, a, None).is_empty());
        assert!(pool.put(1, b, None).is_empty());
        assert!(pool.put(2, c, None).is_empty());
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.get(1).map(|s| id(&s)), Some(idb));
        assert_eq!(pool.get(1).map(|s| id(&s)), Some(ida));
        assert!(pool.get(1).is_none());
        assert_eq!(pool.get(2).map(|s| id(&s)), Some(idc));
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn a_list_emptied_by_reuse_stays_until_the_sweep() {
        let pool = new_pool(8);
        let (a, _pa) = pair().await;
        pool.put(1, a, None);
        let a = pool.get(1).unwrap();
        assert!(
            pool.inner.lock().by_key.contains_key(&1),
            "kept for the release"
        );
        pool.put(1, a, None);
        assert_eq!(pool.inner.lock().by_key[&1].len(), 1);
        assert!(pool.get(1).is_some());
        assert_eq!(pool.sweep(), 0);
        assert!(
            pool.inner.lock().by_key.is_empty(),
            "the sweep drops empty lists"
        );
    }

    #[tokio::test]
    async fn a_full_pool_pushes_out_the_least_recently_released() {
        let pool = new_pool(2);
        let (a, _pa) = pair().await;
        let (b, _pb) = pair().await;
        let (c, _pc) = pair().await;
        let (ida, idb, idc) = (id(&a), id(&b), id(&c));
        pool.put(1, a, None);
        pool.put(2, b, None);
        let evicted = pool.put(1, c, None);
        assert_eq!(
            evicted.iter().map(|(s, _)| id(s)).collect::<Vec<_>>(),
            [ida]
        );
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.get(1).map(|s| id(&s)), Some(idc));
        assert_eq!(pool.get(2).map(|s| id(&s)), Some(idb));
    }

    #[tokio::test]
    async fn eviction_skips_connections_already_taken_and_the_queue_stays_bounded() {
        let pool = new_pool(4);
        let mut peers = Vec::new();
        // Keep-alive traffic: one connection taken and released 10,000 times.
        let (s, p) = pair().await;
        peers.push(p);
        let mut s = Some(s);
        for _ in 0..10_000 {
            pool.put(7, s.take().unwrap(), None);
            s = pool.get(7);
            assert!(s.is_some());
        }
        assert!(
            pool.inner.lock().order.len() <= 64 + 2,
            "stale entries are dropped"
        );
        // It is not pushed out by a stale entry of itself.
        let id7 = id(s.as_ref().unwrap());
        pool.put(7, s.take().unwrap(), None);
        for key in 0..4 {
            let (s, p) = pair().await;
            peers.push(p);
            let evicted = pool.put(100 + key, s, None);
            if key < 3 {
                assert!(evicted.is_empty());
            } else {
                assert_eq!(
                    evicted.iter().map(|(s, _)| id(s)).collect::<Vec<_>>(),
                    [id7]
                );
            }
        }
        assert_eq!(pool.len(), 4);
    }

    #[tokio::test]
    async fn an_expired_connection_is_not_handed_out() {
        let pool = new_pool(8);
        let (a, _pa) = pair().await;
        let (b, _pb) = pair().await;
        let idb = id(&b);
        pool.put(1, b, Some(Duration::from_secs(60)));
        pool.put(1, a, Some(Duration::ZERO));
        assert_eq!(
            pool.get(1).map(|s| id(&s)),
            Some(idb),
            "the expired one is closed"
        );
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn the_sweep_closes_expired_connections_and_those_the_peer_closed() {
        let pool = new_pool(8);
        let (kept, _pk) = pair().await;
        let (expired, _pe) = pair().await;
        let (closed_by_peer, mut peer) = pair().await;
        let idk = id(&kept);
        pool.put(1, kept, Some(Duration::from_secs(60)));
        pool.put(1, expired, Some(Duration::ZERO));
        pool.put(2, closed_by_peer, None);
        peer.shutdown().await.unwrap();
        drop(peer);
        // The reactor sees the FIN once this task yields to it.
        let mut closed = 0;
        for _ in 0..100 {
            closed += pool.sweep();
            if closed == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(closed, 2);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.get(1).map(|s| id(&s)), Some(idk));
        assert!(pool.get(2).is_none());
    }

    #[tokio::test]
    async fn the_sweeper_task_keeps_the_idle_timeout_without_any_request() {
        let pool = new_pool(8);
        let (a, _pa) = pair().await;
        pool.put(1, a, Some(Duration::from_millis(100)));
        assert_eq!(pool.len(), 1);
        let deadline = Instant::now() + SWEEP_INTERVAL * 5;
        while pool.len() > 0 {
            assert!(Instant::now() < deadline, "never swept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            pool.inner.lock().sweeping,
            "the task goes on for later releases"
        );
    }

    #[tokio::test]
    async fn the_sweeper_ends_with_its_pool() {
        let pool = new_pool(8);
        let (a, _pa) = pair().await;
        pool.put(1, a, None);
        let weak = Arc::downgrade(&pool);
        drop(pool);
        assert!(
            weak.upgrade().is_none(),
            "the task holds no strong reference"
        );
    }
}
