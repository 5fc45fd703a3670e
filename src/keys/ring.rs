//! The key ring: the key set every request reads (lock-free), built from the store's key
//! set document so that every node of a cluster signs with the same keys, and rotated
//! without a token ever failing: a new key is published in JWKS `publish_ahead` before it
//! signs anything, and the key it replaces stays published until the longest-lived token
//! it signed has expired.

use super::seal::{SealError, SealedKey, Sealer};
use super::{GeneratedKey, KeyError, KeySet, generate_pkcs8, generated_key_name, thumbprint_kid};
use crate::config::{SigningKeySource, TokenSettings};
use crate::domain::jose::Algorithm;
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// Why the key ring cannot be opened, maintained or rotated.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("the store's signing key set is unreadable: {0}")]
    Unreadable(serde_json::Error),
    #[error("cannot encode the key set: {0}")]
    Encode(serde_json::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the signing key comes from {}: rotate it by replacing the file and keeping the old key in tokens.verification_keys",
        .0.display()
    )]
    FromFile(PathBuf),
    #[error("the store's key set keeps changing; try again")]
    Contended,
    #[error(
        "the store holds no signing key set (a new store, or one that lost its data): a running gateway writes its own back within seconds; try again then"
    )]
    NoKeySet,
}

/// The key set document (JSON) as the store keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Doc {
    keys: Vec<DocKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DocKey {
    kid: String,
    alg: Algorithm,
    created_at: i64,
    activate_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retire_at: Option<i64>,
    private: SealedKey,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotated {
    /// A new key was published; it signs from `activate_at`.
    Published {
        kid: String,
        activate_at: i64,
        /// Keys that will leave the set, and when.
        retiring: Vec<(String, Option<i64>)>,
    },
    /// A published key is still waiting to sign: rotating again would skip it.
    AlreadyPending { kid: String, activate_at: i64 },
}

/// A key as `tollgate keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub kid: String,
    pub alg: Algorithm,
    pub created_at: i64,
    pub activate_at: i64,
    pub retire_at: Option<i64>,
}

/// Generated keys, their store version and the sealer for writing them back.
struct Generated {
    sealer: Sealer,
    /// The document version the current set was built from, and its keys.
    state: Mutex<(u64, Vec<GeneratedKey>)>,
}

pub struct KeyRing {
    current: ArcSwap<KeySet>,
    settings: TokenSettings,
    generated: Option<Generated>,
}

impl From<KeySet> for KeyRing {
    /// A ring that never changes (keys from files only, tests, benches).
    fn from(set: KeySet) -> Self {
        Self {
            current: ArcSwap::from_pointee(set),
            settings: TokenSettings {
                signing_key: SigningKeySource::File(super::KeyFile {
                    path: Default::default(),
                    algorithm: Algorithm::ES256,
                    kid: None,
                }),
                verification_keys: Vec::new(),
                leeway: Duration::ZERO,
                access_token_lifetime: Duration::ZERO,
                refresh_grace_period: Duration::ZERO,
                rotation: crate::config::RotationSettings {
                    every: None,
                    publish_ahead: Duration::ZERO,
                },
                jwks_max_age: Duration::ZERO,
                session_lifetime: Duration::ZERO,
            },
            generated: None,
        }
    }
}

fn decode(doc: &[u8], sealer: &Sealer) -> Result<(Doc, Vec<GeneratedKey>), RingError> {
    let doc: Doc = serde_json::from_slice(doc).map_err(RingError::Unreadable)?;
    let keys = doc
        .keys
        .iter()
        .map(|k| {
            Ok(GeneratedKey {
                kid: Some(k.kid.clone()),
                alg: k.alg,
                der: sealer.open(&k.kid, &k.private)?,
                activate_at: k.activate_at,
                retire_at: k.retire_at,
            })
        })
        .collect::<Result<Vec<_>, SealError>>()?;
    Ok((doc, keys))
}

fn encode(doc: &Doc) -> Result<Vec<u8>, RingError> {
    serde_json::to_vec(doc).map_err(RingError::Encode)
}

fn new_key(
    alg: Algorithm,
    sealer: &Sealer,
    now: i64,
    activate_at: i64,
) -> Result<DocKey, RingError> {
    let der = generate_pkcs8(alg)?;
    let kid = thumbprint_kid(alg, &der)?;
    Ok(DocKey {
        private: sealer.seal(&kid, &der)?,
        kid,
        alg,
        created_at: now,
        activate_at,
        retire_at: None,
    })
}

/// The generated algorithm and configured kid, or an error for keys from files.
fn generated_source(settings: &TokenSettings) -> Result<(Algorithm, Option<String>), RingError> {
    match &settings.signing_key {
        SigningKeySource::Generated { algorithm, kid } => Ok((*algorithm, kid.clone())),
        SigningKeySource::File(f) => Err(RingError::FromFile(f.path.clone())),
    }
}

/// The stored document, created on first start: from the key an earlier tollgate kept
/// (same kid, so its tokens stay valid), or a new key that signs at once.
async fn ensure_doc(
    store: &dyn Store,
    settings: &TokenSettings,
    sealer: &Sealer,
    now: i64,
) -> Result<(u64, Doc, Vec<GeneratedKey>), RingError> {
    let (alg, kid) = generated_source(settings)?;
    for _ in 0..3 {
        if let Some(stored) = store.key_set().await? {
            let (doc, keys) = decode(&stored.doc, sealer)?;
            return Ok((stored.version, doc, keys));
        }
        let first = match store.legacy_key(&generated_key_name(alg)).await? {
            Some(der) => {
                let kid = match kid.clone() {
                    Some(k) => k,
                    None => thumbprint_kid(alg, &der)?,
                };
                log::info!(
                    "moved the stored {} signing key `{kid}` into a key set",
                    alg.as_str()
                );
                DocKey {
                    private: sealer.seal(&kid, &der)?,
                    kid,
                    alg,
                    created_at: now,
                    activate_at: 0,
                    retire_at: None,
                }
            }
            None => {
                let mut k = new_key(alg, sealer, now, 0)?;
                if let Some(kid) = kid.clone() {
                    let der = sealer.open(&k.kid, &k.private)?;
                    k.private = sealer.seal(&kid, &der)?;
                    k.kid = kid;
                }
                log::info!(
                    "generated a new {} signing key `{}` in the store",
                    alg.as_str(),
                    k.kid
                );
                k
            }
        };
        let doc = Doc { keys: vec![first] };
        // Another node may create the set at the same moment: the first one wins and
        // everyone reads it back.
        store.replace_key_set(None, encode(&doc)?).await?;
    }
    Err(RingError::Contended)
}

/// Add the next key to the stored set (published now, signing after `publish_ahead`) and
/// give the keys it replaces a retirement time. `max_lifetime`: the longest a token signed
/// now can live (`None`: some never expire, so replaced keys are kept).
pub async fn rotate(
    store: &dyn Store,
    settings: &TokenSettings,
    sealer: &Sealer,
    max_lifetime: Option<Duration>,
    now: i64,
) -> Result<Rotated, RingError> {
    let (alg, _) = generated_source(settings)?;
    for _ in 0..5 {
        // Never from nothing: a set generated here while the nodes are about to write
        // theirs back would be one they do not hold.
        let stored = store.key_set().await?.ok_or(RingError::NoKeySet)?;
        let version = stored.version;
        let (mut doc, _) = decode(&stored.doc, sealer)?;
        if let Some(pending) = doc.keys.iter().find(|k| k.activate_at > now) {
            return Ok(Rotated::AlreadyPending {
                kid: pending.kid.clone(),
                activate_at: pending.activate_at,
            });
        }
        let activate_at = now.saturating_add(settings.rotation.publish_ahead.as_secs() as i64);
        let retire_at = max_lifetime.map(|l| {
            activate_at
                .saturating_add(l.as_secs() as i64)
                .saturating_add(settings.leeway.as_secs() as i64)
        });
        doc.keys.retain(|k| k.retire_at.is_none_or(|r| r > now));
        let mut retiring = Vec::new();
        for k in doc.keys.iter_mut().filter(|k| k.retire_at.is_none()) {
            k.retire_at = retire_at;
            retiring.push((k.kid.clone(), retire_at));
        }
        // Re-seal keys stored in clear before an encryption key was configured.
        if sealer.seals() {
            for k in doc.keys.iter_mut() {
                if matches!(k.private, SealedKey::Plain { .. }) {
                    let der = sealer.open(&k.kid, &k.private)?;
                    k.private = sealer.seal(&k.kid, &der)?;
                }
            }
        }
        let next = new_key(alg, sealer, now, activate_at)?;
        let kid = next.kid.clone();
        doc.keys.push(next);
        if store.replace_key_set(Some(version), encode(&doc)?).await? {
            return Ok(Rotated::Published {
                kid,
                activate_at,
                retiring,
            });
        }
    }
    Err(RingError::Contended)
}

/// Every key of the stored set; `None` when the store holds none. Reads only: listing
/// never creates a set.
pub async fn list(
    store: &dyn Store,
    settings: &TokenSettings,
    sealer: &Sealer,
) -> Result<Option<Vec<KeyStatus>>, RingError> {
    generated_source(settings)?;
    let Some(stored) = store.key_set().await? else {
        return Ok(None);
    };
    let (doc, _) = decode(&stored.doc, sealer)?;
    Ok(Some(
        doc.keys
            .into_iter()
            .map(|k| KeyStatus {
                kid: k.kid,
                alg: k.alg,
                created_at: k.created_at,
                activate_at: k.activate_at,
                retire_at: k.retire_at,
            })
            .collect(),
    ))
}

/// What a key is, for comparing sets by content: its id, algorithm, times and a digest of
/// the key itself (a configured kid may name two different keys).
type KeyPrint = (Option<String>, &'static str, i64, Option<i64>, [u8; 32]);

fn print_of(k: &GeneratedKey) -> KeyPrint {
    (
        k.kid.clone(),
        k.alg.as_str(),
        k.activate_at,
        k.retire_at,
        crate::store::digest_bytes(&k.der),
    )
}

/// The set as content, in a fixed order.
fn fingerprint(keys: &[GeneratedKey]) -> Vec<KeyPrint> {
    let mut prints: Vec<KeyPrint> = keys.iter().map(print_of).collect();
    prints.sort();
    prints
}

/// The keys of `held` that may still have live tokens (not retired) and that `stored`
/// lacks (no key of the same id and material).
fn missing_from<'a>(
    held: &'a [GeneratedKey],
    stored: &[GeneratedKey],
    now: i64,
) -> Vec<&'a GeneratedKey> {
    held.iter()
        .filter(|k| k.retire_at.is_none_or(|r| r > now))
        .filter(|k| !stored.iter().any(|s| s.kid == k.kid && s.der == k.der))
        .collect()
}

impl KeyRing {
    /// The ring the settings describe: keys from files, or the store's generated key set
    /// (created on first start).
    pub async fn open(
        store: &dyn Store,
        settings: &TokenSettings,
        sealer: Sealer,
        now: i64,
    ) -> Result<Self, RingError> {
        if matches!(settings.signing_key, SigningKeySource::File(_)) {
            let set = KeySet::build(settings, &[], now)?;
            return Ok(Self {
                current: ArcSwap::from_pointee(set),
                settings: settings.clone(),
                generated: None,
            });
        }
        let (version, _, keys) = ensure_doc(store, settings, &sealer, now).await?;
        let set = KeySet::build(settings, &keys, now)?;
        if let (Some(alg), Ok((want, _))) = (
            keys.iter().find(|k| k.activate_at <= now).map(|k| k.alg),
            generated_source(settings),
        ) && alg != want
        {
            log::warn!(
                "tokens.signing_key.algorithm is {} but the stored key set signs with {}: run `tollgate keys rotate` to switch",
                want.as_str(),
                alg.as_str()
            );
        }
        Ok(Self {
            current: ArcSwap::from_pointee(set),
            settings: settings.clone(),
            generated: Some(Generated {
                sealer,
                state: Mutex::new((version, keys)),
            }),
        })
    }

    /// The key set now.
    pub fn get(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// Follow the store: pick up a changed key set (another node rotated), switch when a
    /// published key starts signing or a retired one leaves, rotate on schedule, and put
    /// the set back if the store lost it. Called every few seconds.
    pub async fn maintain(
        &self,
        store: &dyn Store,
        max_lifetime: Option<Duration>,
        now: i64,
    ) -> Result<(), RingError> {
        let Some(generated) = &self.generated else {
            return Ok(());
        };
        let stored = store.key_set().await?;
        let (version, keys) = {
            let state = generated.state.lock().unwrap_or_else(|p| p.into_inner());
            (state.0, state.1.clone())
        };
        match stored {
            None => {
                log::warn!(
                    "the store has lost the signing key set; writing back the one this node holds"
                );
                let doc = Doc {
                    keys: keys
                        .iter()
                        .map(|k| {
                            let kid = k.kid.clone().unwrap_or_default();
                            Ok(DocKey {
                                private: generated.sealer.seal(&kid, &k.der)?,
                                kid,
                                alg: k.alg,
                                created_at: now,
                                activate_at: k.activate_at,
                                retire_at: k.retire_at,
                            })
                        })
                        .collect::<Result<Vec<_>, SealError>>()?,
                };
                store.replace_key_set(None, encode(&doc)?).await?;
                return Ok(());
            }
            Some(s) => {
                let (mut doc, stored) = decode(&s.doc, &generated.sealer)?;
                // Never drop a key that may have signed live tokens: if the store's set
                // lacks one this node holds (the store lost its data and someone made a
                // new set meanwhile), merge it back for every node.
                let missing = missing_from(&keys, &stored, now);
                if !missing.is_empty() {
                    log::warn!(
                        "the store's signing key set lacks {} key(s) this node holds, whose tokens may still be live: merging them back",
                        missing.len()
                    );
                    for k in &missing {
                        let kid = k.kid.clone().unwrap_or_default();
                        doc.keys.push(DocKey {
                            private: generated.sealer.seal(&kid, &k.der)?,
                            kid,
                            alg: k.alg,
                            created_at: now,
                            activate_at: k.activate_at,
                            retire_at: k.retire_at,
                        });
                    }
                    // Compared on the version read: another writer meanwhile makes this a
                    // no-op, and the next round merges again.
                    if store
                        .replace_key_set(Some(s.version), encode(&doc)?)
                        .await?
                    {
                        let (_, merged) = decode(&encode(&doc)?, &generated.sealer)?;
                        self.install(&merged, s.version + 1, now)?;
                    }
                } else if fingerprint(&stored) != fingerprint(&keys) {
                    // Compared by content, not version: a store that lost its data counts
                    // versions from 1 again.
                    self.install(&stored, s.version, now)?;
                } else if s.version != version || self.get().next_change().is_some_and(|t| t <= now)
                {
                    self.install(&keys, s.version, now)?;
                }
            }
        }
        if let Some(every) = self.settings.rotation.every {
            let newest = {
                let state = generated.state.lock().unwrap_or_else(|p| p.into_inner());
                state.1.iter().map(|k| k.activate_at).max().unwrap_or(0)
            };
            if newest.saturating_add(every.as_secs() as i64) <= now {
                match rotate(store, &self.settings, &generated.sealer, max_lifetime, now).await? {
                    Rotated::Published {
                        kid, activate_at, ..
                    } => log::info!(
                        "rotated the signing key on schedule: `{kid}` is published and signs from {activate_at}"
                    ),
                    Rotated::AlreadyPending { .. } => {}
                }
            }
        }
        Ok(())
    }

    fn install(&self, keys: &[GeneratedKey], version: u64, now: i64) -> Result<(), RingError> {
        let set = KeySet::build(&self.settings, keys, now)?;
        let before = self.get().signing().kid().to_string();
        if set.signing().kid() != before {
            log::info!(
                "signing key is now `{}` (was `{before}`)",
                set.signing().kid()
            );
        }
        self.current.store(Arc::new(set));
        if let Some(g) = &self.generated {
            *g.state.lock().unwrap_or_else(|p| p.into_inner()) = (version, keys.to_vec());
        }
        Ok(())
    }
}
