//! Any string presented as a DPoP proof, and any bytes as its header or claims JSON:
//! reading never panics, a header is accepted only with a public key of an allowed
//! algorithm, and `htu` splitting always yields an origin and an absolute path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::domain::jose::JwsAlg;
use tollgate::dpop::proof;

const ALLOWED: &[JwsAlg] = &[JwsAlg::ES256, JwsAlg::EdDSA, JwsAlg::RS256];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parts) = proof::split(text) {
        if let Ok(key) = proof::parse_header(parts.header, ALLOWED) {
            assert!(ALLOWED.contains(&key.alg));
            // Nothing made up verifies under the key it carries.
            assert!(!key.verify(parts.signing_input, &[0u8; 64]));
        }
        if let Ok(json) = proof::decode_claims(parts.claims)
            && let Ok(c) = proof::parse_claims(&json)
        {
            assert!(!c.jti.is_empty() && c.jti.len() <= 256);
        }
    }
    if let Some((origin, path)) = proof::split_htu(text) {
        assert!(path.starts_with('/'), "{path:?}");
        assert!(!path.contains(['?', '#']), "{path:?}");
        assert!(!origin.scheme().is_empty() && !origin.authority().is_empty());
        assert!(origin.same(&origin));
    }
});
