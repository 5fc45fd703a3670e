//! `dpop:` of the gateway file: the settings of DPoP proof checks (RFC 9449).

use super::errors::Errors;
pub use super::file::ReplayScope;
use super::file::{DpopFile, DurationText};
use crate::domain::jose::JwsAlg;
use std::time::Duration;

/// How DPoP proofs are checked.
#[derive(Debug, Clone)]
pub struct DpopSettings {
    /// The algorithms a proof may be signed with; what discovery advertises.
    pub algorithms: Vec<JwsAlg>,
    /// How old a proof's `iat` may be.
    pub proof_max_age: Duration,
    pub replay: ReplayScope,
    /// Proof ids one node remembers at most.
    pub replay_cache_entries: usize,
    /// Proofs at the token endpoints must carry the server's nonce.
    pub nonce_at_token_endpoints: bool,
    /// Proofs at protected APIs must carry the server's nonce.
    pub nonce_at_resources: bool,
    pub nonce_lifetime: Duration,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self {
            algorithms: vec![JwsAlg::ES256, JwsAlg::EdDSA],
            proof_max_age: Duration::from_secs(60),
            replay: ReplayScope::PerNode,
            replay_cache_entries: 1_000_000,
            nonce_at_token_endpoints: false,
            nonce_at_resources: false,
            nonce_lifetime: Duration::from_secs(300),
        }
    }
}

/// Validate `dpop:`; every problem names its key path.
pub(super) fn settings(
    f: DpopFile,
    duration: impl Fn(Option<&str>, &str, Duration, &mut Errors) -> Duration,
    errs: &mut Errors,
) -> DpopSettings {
    let d = DpopSettings::default();
    let algorithms = match f.algorithms {
        None => d.algorithms,
        Some(list) => {
            if list.is_empty() {
                errs.push("dpop.algorithms", "must name at least one algorithm");
            }
            list.iter()
                .enumerate()
                .filter_map(|(i, name)| {
                    let alg = JwsAlg::from_jws(name);
                    if alg.is_none() {
                        errs.push(
                            format!("dpop.algorithms[{i}]"),
                            format!(
                                "`{name}` is not an asymmetric JWS algorithm (one of ES256, ES384, EdDSA, RS256, RS384, RS512, PS256, PS384, PS512)"
                            ),
                        );
                    }
                    alg
                })
                .collect()
        }
    };
    let proof_max_age = duration(
        f.proof_max_age.as_ref().map(DurationText::as_str),
        "dpop.proof_max_age",
        d.proof_max_age,
        errs,
    );
    if proof_max_age < Duration::from_secs(1) || proof_max_age > Duration::from_secs(3600) {
        errs.push("dpop.proof_max_age", "must be between 1s and 1h");
    }
    let replay_cache_entries = f.replay_cache_entries.unwrap_or(d.replay_cache_entries);
    if replay_cache_entries == 0 {
        errs.push("dpop.replay_cache_entries", "must be at least 1");
    }
    let nonce = f.nonce.unwrap_or_default();
    let nonce_lifetime = duration(
        nonce.lifetime.as_ref().map(DurationText::as_str),
        "dpop.nonce.lifetime",
        d.nonce_lifetime,
        errs,
    );
    if nonce_lifetime < Duration::from_secs(2) {
        errs.push("dpop.nonce.lifetime", "must be at least 2s");
    }
    DpopSettings {
        algorithms,
        proof_max_age,
        replay: f.replay.unwrap_or(d.replay),
        replay_cache_entries,
        nonce_at_token_endpoints: nonce.token_endpoints.unwrap_or(false),
        nonce_at_resources: nonce.resources.unwrap_or(false),
        nonce_lifetime,
    }
}
