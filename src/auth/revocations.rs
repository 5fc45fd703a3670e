//! Revoked token ids and grants, checked on every authenticated request. Reads are
//! lock-free (`ArcSwap`); a revocation here, or one found in the store (another process,
//! another node), replaces the set. Entries are kept until the revoked tokens expire.

use crate::auth::cache::unix_now;
use crate::store::{Revocation, RevocationTarget, Store};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

#[derive(Debug, Default, Clone)]
struct RevokedSet {
    /// Token id → remembered until (`None`: forever).
    jtis: HashMap<Box<str>, Option<i64>>,
    grants: HashMap<Box<str>, Option<i64>>,
}

#[derive(Debug, Default)]
pub struct Revocations {
    set: ArcSwap<RevokedSet>,
    /// The store sequence number seen last.
    seq: AtomicI64,
}

impl Revocations {
    pub fn is_revoked(&self, jti: Option<&str>, grant: Option<&str>) -> bool {
        let set = self.set.load();
        if set.jtis.is_empty() && set.grants.is_empty() {
            return false;
        }
        jti.is_some_and(|j| set.jtis.contains_key(j))
            || grant.is_some_and(|g| set.grants.contains_key(g))
    }

    /// Add revocations (from this process or from the store).
    pub fn add(&self, list: &[Revocation]) {
        if list.is_empty() {
            return;
        }
        self.set.rcu(|current| {
            let mut next = RevokedSet::clone(current);
            for r in list {
                match &r.target {
                    RevocationTarget::Jti(j) => next.jtis.insert(j.as_str().into(), r.until),
                    RevocationTarget::Grant(g) => next.grants.insert(g.as_str().into(), r.until),
                };
            }
            next
        });
        if let Some(max) = list.iter().map(|r| r.seq).max() {
            self.seq.fetch_max(max, Ordering::Relaxed);
        }
    }

    /// Forget revocations whose tokens have all expired.
    pub fn prune(&self, now: i64) {
        self.set.rcu(|current| {
            let mut next = RevokedSet::clone(current);
            next.jtis.retain(|_, until| until.is_none_or(|u| u >= now));
            next.grants
                .retain(|_, until| until.is_none_or(|u| u >= now));
            next
        });
    }

    pub fn last_seq(&self) -> i64 {
        self.seq.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        let s = self.set.load();
        s.jtis.len() + s.grants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keeps a process's revocations in step with the store, and purges expired state.
pub struct StateSync {
    pub store: Arc<dyn Store>,
    pub revocations: Arc<Revocations>,
    /// How often to look for revocations made elsewhere.
    pub poll: Duration,
    pub purge_interval: Duration,
}

impl StateSync {
    /// Load what the store knows now (at startup, before serving).
    pub async fn catch_up(&self) -> Result<(), crate::store::StoreError> {
        let list = self
            .store
            .revocations_since(self.revocations.last_seq(), unix_now())
            .await?;
        self.revocations.add(&list);
        Ok(())
    }
}

#[async_trait]
impl BackgroundService for StateSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut poll = tokio::time::interval(self.poll);
        let mut purge = tokio::time::interval(self.purge_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = poll.tick() => {
                    if let Err(e) = self.catch_up().await {
                        log::warn!("cannot read revocations: {e}");
                    }
                }
                _ = purge.tick() => {
                    let now = unix_now();
                    match self.store.purge(now).await {
                        Ok(n) if n > 0 => log::debug!("purged {n} expired tokens and revocations"),
                        Ok(_) => {}
                        Err(e) => log::warn!("cannot purge expired state: {e}"),
                    }
                    self.revocations.prune(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(seq: i64, target: RevocationTarget, until: Option<i64>) -> Revocation {
        Revocation { seq, target, until }
    }

    #[test]
    fn revoked_ids_and_grants_are_found_until_pruned() {
        let r = Revocations::default();
        assert!(!r.is_revoked(Some("j"), Some("g")));
        r.add(&[
            rev(3, RevocationTarget::Jti("j1".into()), Some(100)),
            rev(5, RevocationTarget::Grant("g1".into()), None),
        ]);
        assert_eq!(r.last_seq(), 5);
        assert!(r.is_revoked(Some("j1"), None));
        assert!(r.is_revoked(Some("other"), Some("g1")));
        assert!(!r.is_revoked(Some("other"), Some("g2")));
        assert!(!r.is_revoked(None, None));
        r.prune(101);
        assert!(!r.is_revoked(Some("j1"), None));
        assert!(r.is_revoked(None, Some("g1")), "kept forever");
        assert_eq!(r.len(), 1);
    }
}
