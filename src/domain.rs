//! The shared words of the gateway: scopes and scope rules, claim paths, JOSE algorithm
//! names and key ids, the OAuth enums, identifiers, the clock, secrets and their hashes,
//! and the outcome of a credential check, and the paths of the contract with clients. A leaf: it imports nothing else from the crate,
//! so every other module may use it (`tests/layers.rs` checks that the layers point one
//! way).

pub mod certificate;
pub mod claim;
pub mod clock;
pub mod cnf;
pub mod endpoint;
pub mod ids;
pub mod jose;
pub mod jwk;
pub mod net;
pub mod oauth;
pub mod outcome;
pub mod scope;
pub mod secret;

/// Bytes as lower-case hex (digests in configs, stored documents and store keys).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}
