//! Provisioning at run time: credentials (with their secrets, API keys and registration)
//! and subscriptions kept in the store as a layer over the upstreams file. Every write is
//! a compare-and-set on the record's version; every process follows the store's record
//! feed ([`follow`]) into its mirror and the catalog's overlay, so a change made through
//! any node is in force on all of them at once. The admin API and dynamic client
//! registration both act through [`Provisioner`].

pub mod credentials;
pub mod docs;
pub mod follow;
pub mod registration;
pub mod subscriptions;

pub use docs::{CredentialDoc, Origin, RegistrationDoc, SecretDoc, SubscriptionDoc};

use crate::catalog::Live;
use crate::catalog::registry::Entry;
use crate::config::ConfigError;
use crate::domain::clock::unix_now;
use crate::store::{Record, RecordKind, Store, StoreError, Written};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Why a provisioning call did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The document fails the checks a file entry would fail, each with its key path.
    #[error("invalid: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigError>),
    #[error("no {0} is named `{1}`")]
    NotFound(&'static str, String),
    /// The upstreams file defines it: read-only through the API.
    #[error("`{0}` is defined in the upstreams file; file entries are changed in the file")]
    FileEntry(String),
    #[error("a {0} named `{1}` exists already")]
    Exists(&'static str, String),
    /// The record changed since the version the caller named.
    #[error("the {0} changed meanwhile (now version {1}); read it again and retry")]
    Conflict(&'static str, String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no randomness available for a new secret")]
    NoRandomness,
    #[error("cannot hash the new secret: {0}")]
    Hash(String),
    #[error("a stored {0} record cannot be read: {1}")]
    Corrupt(&'static str, String),
}

impl ProvisionError {
    fn invalid(path: &str, message: impl Into<String>) -> Self {
        ProvisionError::Invalid(vec![ConfigError {
            file: "request body".into(),
            path: path.into(),
            message: message.into(),
        }])
    }
}

/// A record as this process last saw it.
#[derive(Debug, Clone)]
pub struct Mirrored {
    pub version: u64,
    pub doc: Arc<[u8]>,
    /// Why a credential is stored but not served (disabled, or no longer valid against
    /// the running configuration).
    pub unserved: Option<String>,
}

#[derive(Default)]
struct Mirror {
    credentials: BTreeMap<String, Mirrored>,
    subscriptions: BTreeMap<String, Mirrored>,
    /// When a credential's overlapping old secret ends: (time, client id).
    expiries: BTreeSet<(i64, String)>,
    /// The feed position: every record up to this version is applied.
    cursor: u64,
}

impl Mirror {
    fn of(&mut self, kind: RecordKind) -> &mut BTreeMap<String, Mirrored> {
        match kind {
            RecordKind::Credential => &mut self.credentials,
            RecordKind::Subscription => &mut self.subscriptions,
        }
    }
}

/// Provisioned state: the store's records, this process's mirror of them, and the
/// catalog whose overlay serves the credentials.
pub struct Provisioner {
    store: Arc<dyn Store>,
    live: Arc<Live>,
    mirror: Mutex<Mirror>,
    /// Tokens stay valid this long after their credential is deleted, at most: the
    /// revocation that deletion writes is remembered this long.
    leeway: i64,
}

impl Provisioner {
    pub fn new(store: Arc<dyn Store>, live: Arc<Live>, leeway: std::time::Duration) -> Self {
        Self {
            store,
            live,
            mirror: Mutex::default(),
            leeway: leeway.as_secs() as i64,
        }
    }

    fn mirror(&self) -> MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Read the whole record set (a start, or a store that lost the position), then
    /// serve what it holds. Returns how many credentials are served.
    pub async fn catch_up(&self) -> Result<usize, StoreError> {
        loop {
            let cursor = self.mirror().cursor;
            let feed = self
                .store
                .records_after(cursor, follow::PAGE, std::time::Duration::ZERO)
                .await?;
            let n = feed.records.len();
            self.apply_feed(feed);
            if n < follow::PAGE {
                return Ok(self.live.load().registry.overlay().len());
            }
        }
    }

    /// Apply a step of the feed.
    pub fn apply_feed(&self, feed: crate::store::RecordFeed) {
        if feed.full {
            log::warn!(
                "the store's provisioned records restarted below this node's position (flushed or restored); serving what it holds now"
            );
            {
                let mut m = self.mirror();
                *m = Mirror::default();
            }
            self.live.load().registry.overlay().replace_all(Vec::new());
        }
        for r in feed.records {
            self.apply(r, true);
        }
    }

    /// Apply one record, from the feed or a write of this process: newer versions only.
    /// Only the feed moves the cursor (a write of this process may overtake another
    /// node's that the feed has yet to bring).
    fn apply(&self, r: Record, from_feed: bool) {
        let catalog = self.live.load();
        let mut m = self.mirror();
        if from_feed {
            m.cursor = m.cursor.max(r.version);
        }
        let name = r.name.clone();
        let newer = m
            .of(r.kind)
            .get(&name)
            .is_none_or(|old| old.version < r.version);
        if !newer {
            return;
        }
        match r.doc {
            None => {
                m.of(r.kind).remove(&name);
                if r.kind == RecordKind::Credential {
                    catalog.registry.overlay().set(&name, None);
                }
            }
            Some(doc) => {
                let doc: Arc<[u8]> = doc.into();
                let unserved = match r.kind {
                    RecordKind::Credential => {
                        let (entry, unserved, expiry) = self.entry(&catalog, &name, &doc);
                        catalog.registry.overlay().set(&name, entry);
                        m.expiries.retain(|(_, id)| id != &name);
                        if let Some(t) = expiry {
                            m.expiries.insert((t, name.clone()));
                        }
                        unserved
                    }
                    RecordKind::Subscription => None,
                };
                m.of(r.kind).insert(
                    name,
                    Mirrored {
                        version: r.version,
                        doc,
                        unserved,
                    },
                );
            }
        }
    }

    /// The served entry of a stored credential (or why there is none) and when its next
    /// secret expires.
    fn entry(
        &self,
        catalog: &crate::catalog::Catalog,
        name: &str,
        doc: &[u8],
    ) -> (Option<Entry>, Option<String>, Option<i64>) {
        let doc: CredentialDoc = match serde_json::from_slice(doc) {
            Ok(d) => d,
            Err(e) => {
                log::error!("stored credential `{name}` cannot be read: {e}");
                return (None, Some(format!("unreadable: {e}")), None);
            }
        };
        let now = unix_now();
        let expiry = doc.next_expiry(now);
        if catalog.registry.is_file_client(name) {
            return (
                None,
                Some("shadowed: the upstreams file defines this client id".into()),
                expiry,
            );
        }
        if doc.disabled {
            return (None, Some("disabled".into()), expiry);
        }
        match doc.config(&catalog.provision, now) {
            Ok(cfg) => (Some(catalog.registry.provisioned(&cfg)), None, expiry),
            Err(errs) => {
                let why = errs
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                log::warn!(
                    "stored credential `{name}` is not served: it no longer fits the configuration ({why})"
                );
                (None, Some(format!("invalid: {why}")), expiry)
            }
        }
    }

    /// Serve every mirrored credential again under the running catalog (after a reload).
    pub fn relink(&self) {
        let catalog = self.live.load();
        let mut m = self.mirror();
        let mut entries = Vec::new();
        let names: Vec<String> = m.credentials.keys().cloned().collect();
        for name in names {
            let Some(doc) = m.credentials.get(&name).map(|r| r.doc.clone()) else {
                continue;
            };
            let (entry, unserved, _) = self.entry(&catalog, &name, &doc);
            if let Some(r) = m.credentials.get_mut(&name) {
                r.unserved = unserved;
            }
            if let Some(e) = entry {
                entries.push((name, e));
            }
        }
        catalog.registry.overlay().replace_all(entries);
    }

    /// Stop serving secrets whose overlap ended.
    pub fn expire_secrets(&self, now: i64) {
        let due: Vec<String> = {
            let mut m = self.mirror();
            let mut due = Vec::new();
            while let Some((t, _)) = m.expiries.first() {
                if *t > now {
                    break;
                }
                if let Some((_, id)) = m.expiries.pop_first() {
                    due.push(id);
                }
            }
            due
        };
        for name in due {
            let catalog = self.live.load();
            let mut m = self.mirror();
            let Some(doc) = m.credentials.get(&name).map(|r| r.doc.clone()) else {
                continue;
            };
            let (entry, unserved, expiry) = self.entry(&catalog, &name, &doc);
            catalog.registry.overlay().set(&name, entry);
            if let Some(r) = m.credentials.get_mut(&name) {
                r.unserved = unserved;
            }
            if let Some(t) = expiry {
                m.expiries.insert((t, name));
            }
        }
    }

    /// A record as mirrored here.
    pub fn mirrored(&self, kind: RecordKind, name: &str) -> Option<Mirrored> {
        self.mirror().of(kind).get(name).cloned()
    }

    /// Up to `limit` mirrored records of `kind` after the name `after`, in name order.
    pub fn list(&self, kind: RecordKind, after: &str, limit: usize) -> Vec<(String, Mirrored)> {
        use std::ops::Bound;
        self.mirror()
            .of(kind)
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// How many records of `kind` are mirrored.
    pub fn count(&self, kind: RecordKind) -> usize {
        self.mirror().of(kind).len()
    }

    /// Write a record under the version `expected` and apply it here at once.
    async fn put(
        &self,
        kind: RecordKind,
        name: &str,
        expected: Option<u64>,
        doc: Vec<u8>,
    ) -> Result<u64, ProvisionError> {
        match self
            .store
            .put_record(kind, name, expected, doc.clone())
            .await?
        {
            Written::Done { version } => {
                self.apply(
                    Record {
                        kind,
                        name: name.to_string(),
                        version,
                        doc: Some(doc),
                    },
                    false,
                );
                Ok(version)
            }
            Written::Conflict { current } => Err(conflict(kind, name, current)),
        }
    }

    async fn delete(
        &self,
        kind: RecordKind,
        name: &str,
        expected: u64,
    ) -> Result<(), ProvisionError> {
        match self.store.delete_record(kind, name, expected).await? {
            Written::Done { version } => {
                self.apply(
                    Record {
                        kind,
                        name: name.to_string(),
                        version,
                        doc: None,
                    },
                    false,
                );
                Ok(())
            }
            Written::Conflict { current } => Err(conflict(kind, name, current)),
        }
    }

    /// The live record from the store (not the mirror: a write must start from the
    /// latest version).
    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        kind: RecordKind,
        name: &str,
    ) -> Result<(u64, T), ProvisionError> {
        let Some(r) = self.store.get_record(kind, name).await? else {
            return Err(ProvisionError::NotFound(kind.label(), name.to_string()));
        };
        let doc = r
            .doc
            .ok_or_else(|| ProvisionError::NotFound(kind.label(), name.to_string()))?;
        let parsed = serde_json::from_slice(&doc)
            .map_err(|e| ProvisionError::Corrupt(kind.label(), e.to_string()))?;
        Ok((r.version, parsed))
    }
}

fn conflict(kind: RecordKind, name: &str, current: Option<u64>) -> ProvisionError {
    match current {
        None => ProvisionError::NotFound(kind.label(), name.to_string()),
        Some(v) => ProvisionError::Conflict(kind.label(), v.to_string()),
    }
}

/// JSON of a document the store keeps.
fn encode<T: serde::Serialize>(doc: &T) -> Result<Vec<u8>, ProvisionError> {
    serde_json::to_vec(doc).map_err(|e| ProvisionError::Corrupt("document", e.to_string()))
}
