//! Sender-constrained tokens at the proxy: a DPoP-bound token passes only under the `DPoP`
//! scheme with a proof of its key for this very request (RFC 9449 §7), a
//! certificate-bound one only over a connection that presented its certificate (RFC 8705
//! §3), and an API with `dpop: required` takes nothing else.

use crate::auth::Principal;
use crate::domain::cnf::Confirmation;
use crate::domain::outcome::Outcome;
use crate::dpop::{At, Dpop, Expect, Refused, single_proof};
use crate::routes::Api;
use pingora::http::RequestHeader;

/// How the request reached the gateway.
#[derive(Debug, Clone, Copy)]
pub struct Channel {
    /// `https` over TLS, else `http` (the scheme a proof's `htu` names).
    pub scheme: &'static str,
    /// SHA-256 of the client certificate the TLS connection presented.
    pub client_cert: Option<[u8; 32]>,
}

impl Channel {
    /// A plain connection without a certificate.
    pub const PLAIN: Channel = Channel {
        scheme: "http",
        client_cert: None,
    };

    /// What Pingora's TLS digest of the connection says.
    pub fn of(digest: Option<&pingora::protocols::Digest>) -> Self {
        match digest.and_then(|d| d.ssl_digest.as_ref()) {
            None => Self::PLAIN,
            Some(tls) => Channel {
                scheme: "https",
                client_cert: <[u8; 32]>::try_from(tls.cert_digest.as_slice()).ok(),
            },
        }
    }
}

/// Whether `principal`'s token may be used this way; the outcome to refuse with if not.
pub async fn check(
    dpop: &Dpop,
    principal: &Principal,
    dpop_scheme: bool,
    req: &RequestHeader,
    api: &Api,
    channel: Channel,
    now: i64,
) -> Result<(), Outcome> {
    match principal.cnf {
        None if dpop_scheme || api.dpop_required => Err(Outcome::NotSenderConstrained),
        None => Ok(()),
        Some(Confirmation::X5tS256(cert)) => {
            if dpop_scheme {
                return Err(Outcome::NotSenderConstrained);
            }
            if channel.client_cert != Some(cert) {
                return Err(Outcome::CertificateMismatch);
            }
            Ok(())
        }
        Some(Confirmation::Jkt(jkt)) => {
            // RFC 9449 §7.2: a bound token as Bearer is refused, proof or not.
            if !dpop_scheme {
                return Err(Outcome::NotSenderConstrained);
            }
            let proof = match single_proof(&req.headers) {
                Ok(Some(p)) => p,
                Ok(None) | Err(_) => return Err(Outcome::DpopProof),
            };
            let expect = Expect {
                method: req.method.as_str(),
                scheme: channel.scheme,
                host: crate::proxy::request_host(req),
                path: req.uri.path(),
                ath: Some(principal.ath.as_deref().unwrap_or_default()),
                nonce: dpop.settings().nonce_at_resources,
            };
            match dpop.check(proof, &expect, now, At::Api).await {
                Ok(proven) if proven == jkt => Ok(()),
                Ok(_) => Err(Outcome::DpopProof),
                Err(Refused::Nonce) => Err(Outcome::DpopNonce),
                Err(Refused::Unavailable) => Err(Outcome::StoreUnavailable),
                Err(Refused::Invalid(_) | Refused::Replayed) => Err(Outcome::DpopProof),
            }
        }
    }
}
