//! Revoked token ids, grants, clients and users, checked on every authenticated request.
//! Reads are lock-free (`ArcSwap`); a revocation made here, or one read from the store's
//! feed (another process, another node), replaces the set. Entries are kept until the
//! revoked tokens expire.
//!
//! [`StateSync`] is the background service that follows the feed (Redis: a blocking
//! stream read, so another node's revocation arrives within milliseconds; SQLite: a short
//! poll), and does the store's housekeeping: purging, key-set changes and rotation, and
//! the health probe behind `tollgate_store_up`.

use crate::domain::clock::unix_now;
use crate::keys::KeyRing;
use crate::store::{Cursor, Revocation, RevocationSubject, RevocationTarget, Store};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default, Clone)]
struct RevokedSet {
    /// Token id → remembered until (`None`: forever).
    jtis: HashMap<Box<str>, Option<i64>>,
    grants: HashMap<Box<str>, Option<i64>>,
    /// Client id → (tokens issued before this are revoked, remembered until).
    clients: HashMap<Box<str>, (i64, Option<i64>)>,
    users: HashMap<Box<str>, (i64, Option<i64>)>,
    /// No entry's time runs out before this (`None`: none ever does): a prune with nothing
    /// to forget leaves the set alone instead of copying it.
    earliest: Option<i64>,
}

impl RevokedSet {
    fn is_empty(&self) -> bool {
        self.jtis.is_empty()
            && self.grants.is_empty()
            && self.clients.is_empty()
            && self.users.is_empty()
    }

    /// The earliest time an entry runs out, computed again.
    fn earliest_end(&self) -> Option<i64> {
        let untils = self
            .jtis
            .values()
            .chain(self.grants.values())
            .chain(self.clients.values().map(|(_, u)| u))
            .chain(self.users.values().map(|(_, u)| u));
        untils.filter_map(|u| *u).min()
    }

    fn add(&mut self, r: &Revocation) {
        if let Some(u) = r.until {
            self.earliest = Some(self.earliest.map_or(u, |e| e.min(u)));
        }
        // The later of two expiries wins; `None` (forever) beats any time.
        let merge = |old: Option<Option<i64>>, new: Option<i64>| match (old, new) {
            (Some(None), _) | (_, None) => None,
            (Some(Some(a)), Some(b)) => Some(a.max(b)),
            (None, Some(b)) => Some(b),
        };
        match &r.target {
            RevocationTarget::Jti(j) => {
                let old = self.jtis.get(j.as_str()).copied();
                self.jtis.insert(j.as_str().into(), merge(old, r.until));
            }
            RevocationTarget::Grant(g) => {
                let old = self.grants.get(g.as_str()).copied();
                self.grants.insert(g.as_str().into(), merge(old, r.until));
            }
            RevocationTarget::Client {
                client_id,
                issued_before,
            } => {
                let old = self.clients.get(client_id.as_str()).copied();
                let before = old.map_or(*issued_before, |(b, _)| b.max(*issued_before));
                let until = merge(old.map(|(_, u)| u), r.until);
                self.clients
                    .insert(client_id.as_str().into(), (before, until));
            }
            RevocationTarget::User {
                username,
                issued_before,
            } => {
                let old = self.users.get(username.as_str()).copied();
                let before = old.map_or(*issued_before, |(b, _)| b.max(*issued_before));
                let until = merge(old.map(|(_, u)| u), r.until);
                self.users.insert(username.as_str().into(), (before, until));
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Revocations {
    set: ArcSwap<RevokedSet>,
}

impl Revocations {
    pub fn is_revoked(&self, s: RevocationSubject<'_>) -> bool {
        let set = self.set.load();
        if set.is_empty() {
            return false;
        }
        let before = |entry: Option<&(i64, Option<i64>)>| {
            entry.is_some_and(|(b, _)| s.iat.is_none_or(|iat| iat < *b))
        };
        s.jti.is_some_and(|j| set.jtis.contains_key(j))
            || s.grant.is_some_and(|g| set.grants.contains_key(g))
            || s.client_id.is_some_and(|c| before(set.clients.get(c)))
            || s.username.is_some_and(|u| before(set.users.get(u)))
    }

    /// Add revocations (from this process or from the store).
    pub fn add(&self, list: &[Revocation]) {
        if list.is_empty() {
            return;
        }
        self.set.rcu(|current| {
            let mut next = RevokedSet::clone(current);
            for r in list {
                next.add(r);
            }
            next
        });
    }

    /// Forget revocations whose tokens have all expired. With nothing to forget the set
    /// is left as it is: copying a million entries every purge interval for nothing was
    /// the largest cost a big set had (benches/load/scaling.py).
    pub fn prune(&self, now: i64) {
        if self.set.load().earliest.is_none_or(|e| e >= now) {
            return;
        }
        self.set.rcu(|current| {
            let mut next = RevokedSet::clone(current);
            let live = |until: &Option<i64>| until.is_none_or(|u| u >= now);
            next.jtis.retain(|_, until| live(until));
            next.grants.retain(|_, until| live(until));
            next.clients.retain(|_, (_, until)| live(until));
            next.users.retain(|_, (_, until)| live(until));
            next.earliest = next.earliest_end();
            next
        });
    }

    pub fn len(&self) -> usize {
        let s = self.set.load();
        s.jtis.len() + s.grants.len() + s.clients.len() + s.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long one feed read waits for a revocation before it asks again.
const FEED_WAIT: Duration = Duration::from_secs(2);

/// Keeps a process's revocations and keys in step with the store, and purges expired
/// state.
pub struct StateSync {
    pub store: Arc<dyn Store>,
    pub revocations: Arc<Revocations>,
    pub keys: Arc<KeyRing>,
    /// The longest a signed token lives (`None`: some never expire); for key retirement.
    pub max_token_lifetime: Option<Duration>,
    pub purge_interval: Duration,
    /// How often key-set changes are looked for, and the store probed.
    pub maintenance_interval: Duration,
    /// Where this process is in the feed.
    pub cursor: tokio::sync::Mutex<Cursor>,
}

impl StateSync {
    /// Load every live revocation now (at startup, before serving).
    pub async fn catch_up(&self) -> Result<(), crate::store::StoreError> {
        let mut cursor = self.cursor.lock().await;
        let feed = self
            .store
            .revocations(&cursor, Duration::ZERO, unix_now())
            .await?;
        self.revocations.add(&feed.revocations);
        *cursor = feed.next;
        Ok(())
    }

    async fn follow_feed(&self) {
        let mut failures = 0u32;
        loop {
            let mut cursor = self.cursor.lock().await;
            match self.store.revocations(&cursor, FEED_WAIT, unix_now()).await {
                Ok(feed) => {
                    failures = 0;
                    if !feed.revocations.is_empty() {
                        log::debug!(
                            "{} revocation(s) from the store{}",
                            feed.revocations.len(),
                            if feed.full { " (the whole set)" } else { "" }
                        );
                    }
                    self.revocations.add(&feed.revocations);
                    *cursor = feed.next;
                }
                Err(_) => {
                    // The instrumented store has logged it; come back with a growing pause,
                    // and read from the last point seen once the store answers again.
                    drop(cursor);
                    failures = failures.saturating_add(1);
                    let pause = Duration::from_millis(100 * u64::from(failures.min(10)));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    async fn maintain(&self) {
        let mut purge = tokio::time::interval(self.purge_interval);
        let mut tick = tokio::time::interval(self.maintenance_interval);
        purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // A failing probe flips tollgate_store_up (and logs) even with no traffic.
                    if self.store.ping().await.is_ok()
                        && let Err(e) = self
                            .keys
                            .maintain(&*self.store, self.max_token_lifetime, unix_now())
                            .await
                    {
                        log::warn!("cannot follow the signing key set: {e}");
                    }
                }
                _ = purge.tick() => {
                    let now = unix_now();
                    match self.store.purge(now).await {
                        Ok(n) if n > 0 => log::debug!("purged {n} expired tokens and revocations"),
                        Ok(_) | Err(_) => {}
                    }
                    self.revocations.prune(now);
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for StateSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = self.follow_feed() => {}
            _ = self.maintain() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(target: RevocationTarget, until: Option<i64>) -> Revocation {
        Revocation { target, until }
    }

    fn token<'a>(jti: &'a str, grant: &'a str) -> RevocationSubject<'a> {
        RevocationSubject {
            jti: Some(jti),
            grant: Some(grant),
            client_id: Some("app"),
            username: Some("alice"),
            iat: Some(100),
        }
    }

    #[test]
    fn a_prune_with_nothing_expired_leaves_the_set_alone() {
        let r = Revocations::default();
        r.add(&[
            rev(RevocationTarget::Jti("j1".into()), Some(100)),
            rev(RevocationTarget::Jti("j2".into()), Some(200)),
            rev(RevocationTarget::Grant("g".into()), None),
        ]);
        let before = r.set.load_full();
        r.prune(100);
        assert!(
            Arc::ptr_eq(&before, &r.set.load_full()),
            "nothing expired: not copied"
        );
        r.prune(101);
        assert!(!r.is_revoked(token("j1", "x")));
        assert!(r.is_revoked(token("j2", "x")));
        assert_eq!(r.set.load().earliest, Some(200), "computed again");
        let after = r.set.load_full();
        r.prune(150);
        assert!(Arc::ptr_eq(&after, &r.set.load_full()));
        r.prune(201);
        assert_eq!(r.len(), 1, "the grant revoked forever stays");
        assert_eq!(r.set.load().earliest, None);
    }

    #[test]
    fn revoked_ids_and_grants_are_found_until_pruned() {
        let r = Revocations::default();
        assert!(!r.is_revoked(token("j", "g")));
        r.add(&[
            rev(RevocationTarget::Jti("j1".into()), Some(100)),
            rev(RevocationTarget::Grant("g1".into()), None),
        ]);
        assert!(r.is_revoked(token("j1", "x")));
        assert!(r.is_revoked(token("other", "g1")));
        assert!(!r.is_revoked(token("other", "g2")));
        assert!(!r.is_revoked(RevocationSubject::default()));
        r.prune(101);
        assert!(!r.is_revoked(token("j1", "x")));
        assert!(r.is_revoked(token("x", "g1")), "kept forever");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn client_and_user_revocations_cover_older_tokens_only() {
        let r = Revocations::default();
        r.add(&[rev(
            RevocationTarget::Client {
                client_id: "app".into(),
                issued_before: 100,
            },
            Some(1_000),
        )]);
        let mut t = token("j", "g");
        t.iat = Some(99);
        assert!(r.is_revoked(t));
        t.iat = Some(100);
        assert!(!r.is_revoked(t), "issued at the revocation time or later");
        t.iat = None;
        assert!(r.is_revoked(t), "no iat: counts as old");
        t.client_id = Some("other");
        assert!(!r.is_revoked(t));

        r.add(&[rev(
            RevocationTarget::User {
                username: "alice".into(),
                issued_before: 200,
            },
            None,
        )]);
        t.iat = Some(150);
        assert!(r.is_revoked(t));
        // A later revocation of the same client moves the time forward, never back.
        r.add(&[rev(
            RevocationTarget::Client {
                client_id: "app".into(),
                issued_before: 50,
            },
            Some(2_000),
        )]);
        let mut u = token("j", "g");
        u.username = None;
        u.iat = Some(99);
        assert!(r.is_revoked(u));
        r.prune(1_500);
        assert!(r.is_revoked(u), "the later expiry is kept");
        r.prune(2_001);
        assert!(!r.is_revoked(u));
    }
}
