//! DPoP (RFC 9449): proofs of possession of a client's key, checked at the token endpoints
//! (the issued tokens are bound to the key's thumbprint, `cnf.jkt`) and at the proxy (a
//! bound token passes only with a fresh proof of its key for this very request).
//!
//! A proof's header is parsed once per distinct header (a client repeats it with every
//! proof): the verifying key and its thumbprint are cached by it, so a proof costs one
//! signature verification, a small JSON parse and the replay check. Proof ids are
//! remembered per node in memory, or in the store for the whole cluster (one write per
//! proof), for as long as the proof could be accepted.

pub mod client;
pub mod nonce;
pub mod proof;
pub mod replay;

use crate::config::{DpopSettings, ReplayScope};
use crate::domain::jose::JwsAlg;
use crate::store::{Ephemeral, Store, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use nonce::Nonces;
use prometheus::{IntCounter, IntCounterVec};
use proof::{Origin, ProofKey, split_htu};
use replay::{ReplayWindow, Seen};
use std::hash::BuildHasher;
use std::sync::Arc;

/// The `DPoP` header of a request: `Ok(None)` when there is none, `Err` when it is sent
/// more than once or is not text (RFC 9449 §4.3 check 1: exactly one).
pub fn single_proof(headers: &http::HeaderMap) -> Result<Option<&str>, NotOneProof> {
    let mut values = headers.get_all(&PROOF_HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => std::str::from_utf8(v.as_bytes())
            .map(Some)
            .map_err(|_| NotOneProof),
        (Some(_), Some(_)) => Err(NotOneProof),
    }
}

/// A request with several `DPoP` headers, or one that is not text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOneProof;

/// `DPoP`: the request header that carries the proof.
pub static PROOF_HEADER: http::HeaderName = http::HeaderName::from_static("dpop");

/// The `result` label of `tollgate_dpop_proofs_total`.
pub const RESULTS: [&str; 5] = ["ok", "invalid", "nonce", "replayed", "unavailable"];

/// Distinct proof headers (client keys) whose parsed key is kept.
const KEY_CACHE: u64 = 10_000;

/// The request a proof must be for.
pub struct Expect<'a> {
    /// The request method, as sent.
    pub method: &'a str,
    /// `http` or `https`: how the request reached the gateway.
    pub scheme: &'a str,
    /// The `Host` (or `:authority`) of the request.
    pub host: Option<&'a str>,
    /// The request path, without the query.
    pub path: &'a str,
    /// At a protected API: the `ath` the proof must carry, the base64url SHA-256 of the
    /// access token (computed once per token and cached with its validation).
    pub ath: Option<&'a str>,
    /// The proof must carry the server's current nonce.
    pub nonce: bool,
}

/// Where a proof is checked: the `at` label of `tollgate_dpop_proofs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    TokenEndpoint,
    Api,
}

/// Why a proof is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Malformed, wrongly signed, for another request or token, or too old or new:
    /// `invalid_dpop_proof`, with the check that failed.
    Invalid(&'static str),
    /// Its nonce is missing or no longer current: `use_dpop_nonce`, with a new one.
    Nonce,
    /// Its `jti` was used before (or cannot be remembered: the replay window is full).
    Replayed,
    /// The store (cluster replay) could not be reached: 503.
    Unavailable,
}

impl Refused {
    /// The `error_description`.
    pub fn description(self) -> &'static str {
        match self {
            Refused::Invalid(why) => why,
            Refused::Nonce => "the DPoP proof must carry the nonce the server provides",
            Refused::Replayed => "the DPoP proof was used before",
            Refused::Unavailable => "the proof store is unavailable; try again",
        }
    }

    /// Its place in [`RESULTS`].
    fn index(self) -> usize {
        match self {
            Refused::Invalid(_) => 1,
            Refused::Nonce => 2,
            Refused::Replayed => 3,
            Refused::Unavailable => 4,
        }
    }
}

/// Checks DPoP proofs for the token service and the proxy alike.
pub struct Dpop {
    settings: DpopSettings,
    /// Seconds a proof's `iat` may lie in the future (`tokens.leeway`).
    leeway: i64,
    keys: moka::sync::Cache<u64, Arc<ProofKey>>,
    /// Hashes a proof header to its key-cache slot; a hit is compared in full, so this
    /// needs speed, not collision resistance.
    hasher: foldhash::fast::RandomState,
    replay: ReplayWindow,
    nonces: Nonces,
    store: Arc<dyn Store>,
    /// The issuer's scheme and authority: the public URL clients build `htu` from behind
    /// a front proxy.
    issuer_origin: Option<(String, String)>,
    /// `algs` of the DPoP challenge: the accepted algorithms, space-separated.
    algs: String,
    /// `tollgate_dpop_proofs_total{at, result}`, resolved once: `[token, api]` × results.
    counters: [[IntCounter; RESULTS.len()]; 2],
}

impl Dpop {
    pub fn new(
        settings: DpopSettings,
        leeway: std::time::Duration,
        issuer: &str,
        nonce_secret: Option<&[u8; 32]>,
        store: Arc<dyn Store>,
        counter: IntCounterVec,
    ) -> Result<Self, nonce::NoRandomness> {
        let window = settings.proof_max_age.as_secs() as i64 + leeway.as_secs() as i64;
        Ok(Self {
            replay: ReplayWindow::new(window, settings.replay_cache_entries),
            nonces: Nonces::new(nonce_secret, settings.nonce_lifetime)?,
            algs: settings
                .algorithms
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            issuer_origin: split_htu(issuer)
                .map(|(o, _)| (o.scheme().to_string(), o.authority().to_string())),
            settings,
            leeway: leeway.as_secs() as i64,
            keys: moka::sync::Cache::new(KEY_CACHE),
            hasher: foldhash::fast::RandomState::default(),
            store,
            counters: ["token", "api"]
                .map(|at| RESULTS.map(|result| counter.with_label_values(&[at, result]))),
        })
    }

    pub fn settings(&self) -> &DpopSettings {
        &self.settings
    }

    /// The accepted algorithms, space-separated (the challenge's `algs`).
    pub fn algs(&self) -> &str {
        &self.algs
    }

    pub fn algorithms(&self) -> &[JwsAlg] {
        &self.settings.algorithms
    }

    /// The nonce to hand out now (`DPoP-Nonce`).
    pub fn nonce(&self, now: i64) -> String {
        self.nonces.current(now)
    }

    /// Proof ids remembered on this node.
    pub fn remembered(&self) -> usize {
        self.replay.len()
    }

    /// Check `proof` for the request `e` at `now`, counting the result under `at`; the
    /// thumbprint of its key when it is accepted.
    pub async fn check(
        &self,
        proof: &str,
        e: &Expect<'_>,
        now: i64,
        at: At,
    ) -> Result<[u8; 32], Refused> {
        let result = self.verify(proof, e, now).await;
        let i = match result {
            Ok(_) => 0,
            Err(r) => r.index(),
        };
        self.counters[at as usize][i].inc();
        result
    }

    async fn verify(&self, proof: &str, e: &Expect<'_>, now: i64) -> Result<[u8; 32], Refused> {
        let parts = proof::split(proof).map_err(Refused::Invalid)?;
        let key = self.key(parts.header)?;
        if !key.verify(parts.signing_input, &parts.signature) {
            return Err(Refused::Invalid("the DPoP proof's signature is invalid"));
        }
        let json = proof::decode_claims(parts.claims).map_err(Refused::Invalid)?;
        let claims = proof::parse_claims(&json).map_err(Refused::Invalid)?;
        if claims.htm != e.method {
            return Err(Refused::Invalid("the DPoP proof is for another method"));
        }
        if !self.htu_matches(&claims.htu, e) {
            return Err(Refused::Invalid("the DPoP proof is for another URL"));
        }
        let iat = claims
            .iat
            .as_i64()
            .or_else(|| claims.iat.as_f64().map(|f| f as i64))
            .ok_or(Refused::Invalid("the DPoP proof's iat is not a number"))?;
        if iat < now.saturating_sub(self.settings.proof_max_age.as_secs() as i64) {
            return Err(Refused::Invalid("the DPoP proof is too old"));
        }
        if iat > now.saturating_add(self.leeway) {
            return Err(Refused::Invalid("the DPoP proof's iat is in the future"));
        }
        if let Some(ath) = e.ath
            && claims.ath.as_deref() != Some(ath)
        {
            return Err(Refused::Invalid(
                "the DPoP proof's ath is not the hash of this access token",
            ));
        }
        if e.nonce
            && !claims
                .nonce
                .as_deref()
                .is_some_and(|n| self.nonces.valid(n, now))
        {
            return Err(Refused::Nonce);
        }
        self.first_use(&key.jkt, &claims.jti, now).await?;
        Ok(key.jkt)
    }

    /// The parsed key of a proof header: cached by the header's text.
    fn key(&self, header: &str) -> Result<Arc<ProofKey>, Refused> {
        let h = self.hasher.hash_one(header);
        if let Some(k) = self.keys.get(&h)
            && &*k.header == header
        {
            return Ok(k);
        }
        let parsed = Arc::new(
            proof::parse_header(header, &self.settings.algorithms).map_err(Refused::Invalid)?,
        );
        self.keys.insert(h, parsed.clone());
        Ok(parsed)
    }

    /// `htu` names this request: its path, and the origin the request came to or the
    /// issuer's (the public URL, when a front proxy passes the request on).
    fn htu_matches(&self, htu: &str, e: &Expect<'_>) -> bool {
        let Some((proof_origin, proof_path)) = split_htu(htu) else {
            return false;
        };
        if proof_path != e.path {
            return false;
        }
        e.host
            .is_some_and(|h| Origin::new(e.scheme, h).same(&proof_origin))
            || self
                .issuer_origin
                .as_ref()
                .is_some_and(|(s, a)| Origin::new(s, a).same(&proof_origin))
    }

    /// Remember the proof id until the proof could no longer be accepted (its `iat` is at
    /// most `leeway` ahead of `now`, and it is accepted `proof_max_age` after that);
    /// `Replayed` if it was seen before.
    async fn first_use(&self, jkt: &[u8; 32], jti: &str, now: i64) -> Result<(), Refused> {
        match self.settings.replay {
            ReplayScope::PerNode => match self.replay.remember(jkt, jti, now) {
                Seen::First => Ok(()),
                Seen::Again | Seen::Full => Err(Refused::Replayed),
            },
            ReplayScope::Cluster => {
                let mut id = String::with_capacity(64 + jti.len());
                id.push_str(&B64.encode(jkt));
                id.push('.');
                id.push_str(jti);
                let until = now
                    .saturating_add(self.settings.proof_max_age.as_secs() as i64)
                    .saturating_add(self.leeway);
                match self
                    .store
                    .remember_once(Ephemeral::DpopProof, digest(&id), until)
                    .await
                {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(Refused::Replayed),
                    Err(err) => {
                        log::debug!("DPoP replay check: store unavailable: {err}");
                        Err(Refused::Unavailable)
                    }
                }
            }
        }
    }
}
