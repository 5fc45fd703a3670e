//! The validator the JWT targets run against: a freshly generated EdDSA key (the fastest to
//! sign and verify, so more inputs per second), the issuer below, a minute of leeway, and
//! identity headers that read two claims by path (so their extraction is fuzzed too).

use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tollgate::auth::Validator;
use tollgate::auth::identity::ClaimPlan;
use tollgate::config::{SigningKeySource, TokenSettings};
use tollgate::domain::claim::ClaimPath;
use tollgate::domain::jose::Algorithm;
use tollgate::keys::{KeyRing, KeySet};

pub const ISSUER: &str = "https://gw.example";
pub const NOW: i64 = 1_900_000_000;
pub const LEEWAY: i64 = 60;

pub struct Fixture {
    pub keys: Arc<KeyRing>,
    pub validator: Validator,
    pub plan: ClaimPlan,
}

pub static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let settings = TokenSettings {
        signing_key: SigningKeySource::Generated {
            algorithm: Algorithm::EdDSA,
            kid: None,
        },
        verification_keys: vec![],
        leeway: Duration::from_secs(LEEWAY as u64),
        access_token_lifetime: Duration::from_secs(900),
        refresh_grace_period: Duration::from_secs(10),
        rotation: tollgate::config::RotationSettings {
            every: None,
            publish_ahead: Duration::from_secs(600),
        },
        jwks_max_age: Duration::from_secs(300),
        session_lifetime: Duration::from_secs(3600),
    };
    let der = tollgate::keys::generate_pkcs8(Algorithm::EdDSA).expect("key generation");
    let keys = Arc::new(KeyRing::from(
        KeySet::load(&settings, Some(&der)).expect("key set"),
    ));
    let validator = Validator::new(keys.clone(), ISSUER, Duration::from_secs(LEEWAY as u64));
    let paths = ["email", "realm_access.roles"]
        .iter()
        .map(|p| ClaimPath::parse(p).expect("claim path"))
        .collect();
    let plan = ClaimPlan::new(paths, ",");
    Fixture {
        keys,
        validator,
        plan,
    }
});
