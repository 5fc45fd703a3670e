//! Credentials provisioned at run time (the admin API, dynamic client registration), as
//! the registry consults them after the files' own: one map of clients and one of API
//! keys, changed one credential at a time as the store's record feed reports changes, and
//! kept across reloads of the upstreams file. A file entry always wins: the admin API
//! refuses a name the files use, and a reload that adds one shadows the stored entry.

use super::{ApiKey, Client, FastMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A provisioned credential as the gateway serves it: the client and its API keys.
pub struct Entry {
    pub client: Arc<Client>,
    pub keys: Vec<([u8; 32], Arc<ApiKey>)>,
}

#[derive(Default)]
struct Layer {
    clients: FastMap<String, Arc<Client>>,
    keys: FastMap<[u8; 32], Arc<ApiKey>>,
    /// Each client's key digests, to drop them with it.
    keys_of: FastMap<String, Vec<[u8; 32]>>,
}

impl Layer {
    fn remove(&mut self, id: &str) {
        self.clients.remove(id);
        for d in self.keys_of.remove(id).unwrap_or_default() {
            self.keys.remove(&d);
        }
    }

    fn insert(&mut self, id: &str, e: Entry) {
        self.keys_of
            .insert(id.to_string(), e.keys.iter().map(|(d, _)| *d).collect());
        for (d, k) in e.keys {
            self.keys.insert(d, k);
        }
        self.clients.insert(id.to_string(), e.client);
    }
}

/// The provisioned layer, shared by every catalog a process runs.
#[derive(Default)]
pub struct Overlay {
    layer: RwLock<Layer>,
}

impl Overlay {
    // A panic while the lock was held cannot leave a map half-changed in a way a
    // reader could misuse (each change is one insert or remove), so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Layer> {
        self.layer.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Layer> {
        self.layer.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.read().clients.get(id).cloned()
    }

    pub fn api_key(&self, digest: &[u8; 32]) -> Option<Arc<ApiKey>> {
        self.read().keys.get(digest).cloned()
    }

    /// Serve `entry` under `id` (replacing what was), or nothing (`None`: deleted,
    /// disabled, or no longer valid).
    pub fn set(&self, id: &str, entry: Option<Entry>) {
        let mut layer = self.write();
        layer.remove(id);
        if let Some(e) = entry {
            layer.insert(id, e);
        }
    }

    /// Serve exactly `entries` (a full read of the store, or a reload).
    pub fn replace_all(&self, entries: Vec<(String, Entry)>) {
        let mut next = Layer::default();
        for (id, e) in entries {
            next.insert(&id, e);
        }
        *self.write() = next;
    }

    /// Credentials served.
    pub fn len(&self) -> usize {
        self.read().clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Visit every client served (discovery and key-retention questions).
    pub fn any(&self, f: impl Fn(&Client) -> bool) -> bool {
        self.read().clients.values().any(|c| f(c))
    }
}
