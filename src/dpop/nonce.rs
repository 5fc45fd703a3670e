//! Server nonces (RFC 9449 §8, §9): stateless, an HMAC over the time step they were made
//! in. A nonce is accepted in its own step and the next, so each lives between one and two
//! steps (a step is half of `dpop.nonce.lifetime`). Nodes that share
//! `store.encryption_key_file` derive the same key and accept each other's nonces;
//! without one, each process has its own (a client is then asked again by another node).

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// The system gave no randomness for a per-process nonce key.
#[derive(Debug, thiserror::Error)]
#[error("no randomness available for the DPoP nonce key")]
pub struct NoRandomness;

pub struct Nonces {
    key: hmac::Key,
    step: i64,
}

impl Nonces {
    pub fn new(
        secret: Option<&[u8; 32]>,
        lifetime: std::time::Duration,
    ) -> Result<Self, NoRandomness> {
        let key = match secret {
            Some(s) => {
                // A key of its own, derived from the shared one (key separation).
                let tag = hmac::sign(
                    &hmac::Key::new(hmac::HMAC_SHA256, s),
                    b"tollgate dpop nonce v1",
                );
                hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
            }
            None => {
                let mut bytes = [0u8; 32];
                aws_lc_rs::rand::fill(&mut bytes).map_err(|_| NoRandomness)?;
                hmac::Key::new(hmac::HMAC_SHA256, &bytes)
            }
        };
        Ok(Self {
            key,
            step: (lifetime.as_secs() as i64 / 2).max(1),
        })
    }

    fn make(&self, step: i64) -> String {
        let tag = hmac::sign(&self.key, &step.to_be_bytes());
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&step.to_be_bytes());
        raw[8..].copy_from_slice(&tag.as_ref()[..16]);
        B64.encode(raw)
    }

    /// The nonce of the current step.
    pub fn current(&self, now: i64) -> String {
        self.make(now.div_euclid(self.step))
    }

    /// Made by this key in the current step or the one before.
    pub fn valid(&self, nonce: &str, now: i64) -> bool {
        let Ok(raw) = B64.decode(nonce) else {
            return false;
        };
        let Ok(raw) = <[u8; 24]>::try_from(raw.as_slice()) else {
            return false;
        };
        let mut step = [0u8; 8];
        step.copy_from_slice(&raw[..8]);
        let step = i64::from_be_bytes(step);
        let current = now.div_euclid(self.step);
        let expected = hmac::sign(&self.key, &step.to_be_bytes());
        (step == current || step == current - 1)
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                &expected.as_ref()[..16],
                &raw[8..],
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_nonce_lives_one_to_two_steps_and_only_for_its_key() {
        let n = Nonces::new(Some(&[1; 32]), Duration::from_secs(300)).unwrap();
        let made = n.current(1_000_000);
        assert!(n.valid(&made, 1_000_000));
        assert!(n.valid(&made, 1_000_000 + 150));
        assert!(!n.valid(&made, 1_000_000 + 300));
        // A node with the same shared key accepts it; one with another does not.
        assert!(
            Nonces::new(Some(&[1; 32]), Duration::from_secs(300))
                .unwrap()
                .valid(&made, 1_000_000)
        );
        assert!(
            !Nonces::new(Some(&[2; 32]), Duration::from_secs(300))
                .unwrap()
                .valid(&made, 1_000_000)
        );
        assert!(
            !Nonces::new(None, Duration::from_secs(300))
                .unwrap()
                .valid(&made, 1_000_000)
        );
        assert!(!n.valid("", 1_000_000));
        assert!(!n.valid(&made[1..], 1_000_000));
        let mut forged = made.into_bytes();
        forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
        assert!(!n.valid(std::str::from_utf8(&forged).unwrap(), 1_000_000));
    }
}
