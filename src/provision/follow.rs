//! Following the store's record feed: every process applies every provisioned change as
//! it is written (Redis: a blocking read, woken by the write; SQLite: a short poll of the
//! file), serves the mirrored credentials again after a reload of the upstreams file, and
//! stops serving a rotated-out secret when its overlap ends.

use super::Provisioner;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// Records read per step.
pub const PAGE: usize = 1000;
/// How long one read waits for a change; also how often secret expiries and reloads are
/// looked at when nothing changes.
const WAIT: Duration = Duration::from_millis(500);

pub struct Follower {
    pub provisioner: Arc<Provisioner>,
}

impl Follower {
    async fn follow(&self) {
        let p = &self.provisioner;
        let mut failures = 0u32;
        let mut catalog = p.live.current();
        loop {
            let now_catalog = p.live.current();
            if !Arc::ptr_eq(&now_catalog, &catalog) {
                // A reload: the provisioned credentials are checked and built again
                // against the new APIs, products and pools.
                catalog = now_catalog;
                p.relink();
            }
            p.expire_secrets(crate::domain::clock::unix_now());
            let cursor = p.mirror().cursor;
            match p.store.records_after(cursor, PAGE, WAIT).await {
                Ok(feed) => {
                    if failures > 0 {
                        log::info!("provisioned records: following the store again");
                    }
                    failures = 0;
                    if !feed.records.is_empty() {
                        log::debug!(
                            "{} provisioned record change(s) from the store",
                            feed.records.len()
                        );
                    }
                    p.apply_feed(feed);
                }
                Err(e) => {
                    if failures == 0 {
                        log::warn!("provisioned records: cannot follow the store: {e}");
                    }
                    // Read on from the last version applied once the store answers.
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(10))))
                        .await;
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Follower {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = self.follow() => {}
        }
    }
}
