//! DPoP at the token endpoints (RFC 9449 §5): the proof a token request carries, whose key
//! the issued tokens are bound to; clients registered with `dpop_bound_access_tokens`
//! must send one. Refusals are RFC 9449 §5 / §8 errors: `invalid_dpop_proof`, and
//! `use_dpop_nonce` with a fresh `DPoP-Nonce`.

use super::error::{ErrorCode, OAuthError};
use super::{Reply, TokenRequest, TokenService};
use crate::domain::cnf::Confirmation;
use crate::dpop::{At, Expect, Refused};

pub(super) fn invalid_proof(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidDpopProof, description)
}

impl TokenService {
    /// Check the request's DPoP proof, if it sent one: the thumbprint of its key.
    pub(super) async fn proven_key(
        &self,
        req: &TokenRequest<'_>,
        now: i64,
    ) -> Result<Option<Confirmation>, OAuthError> {
        let proof = req
            .dpop
            .map_err(|_| invalid_proof("send exactly one DPoP header"))?;
        let Some(proof) = proof else {
            return Ok(None);
        };
        let expect = Expect {
            method: req.method.as_str(),
            scheme: if req.tls { "https" } else { "http" },
            host: req.host,
            path: req.path,
            ath: None,
            nonce: self.dpop.settings().nonce_at_token_endpoints,
        };
        match self
            .dpop
            .check(proof, &expect, now, At::TokenEndpoint)
            .await
        {
            Ok(jkt) => Ok(Some(Confirmation::Jkt(jkt))),
            Err(Refused::Nonce) => {
                let mut e = OAuthError::new(ErrorCode::UseDpopNonce, Refused::Nonce.description());
                e.dpop_nonce = Some(self.dpop.nonce(now));
                Err(e)
            }
            Err(Refused::Unavailable) => Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                Refused::Unavailable.description(),
            )),
            Err(r) => Err(invalid_proof(r.description())),
        }
    }

    /// RFC 9728 metadata of a protected API, with the DPoP members of RFC 9449 §5.1.
    pub(super) fn resource_metadata(&self, method: &http::Method, api: &str) -> Reply {
        let registry = self.registry();
        let Some(info) = registry.api(api) else {
            return Reply::not_found();
        };
        let issuer = self.auth.validator().issuer();
        let doc = serde_json::json!({
            "resource": format!("{issuer}{}", info.prefix),
            "authorization_servers": [issuer],
            "bearer_methods_supported": ["header"],
            "scopes_supported": info.scopes,
            "dpop_signing_alg_values_supported": self.dpop.algs().split(' ').collect::<Vec<_>>(),
            "dpop_bound_access_tokens_required": info.dpop_required,
        });
        self.document(method, &bytes::Bytes::from(doc.to_string()))
    }

    /// The `DPoP-Nonce` to send with an answer, when proofs at the token endpoints must
    /// carry one (RFC 9449 §8: the server may hand out the next nonce at any time).
    pub(super) fn fresh_nonce(&self, now: i64) -> Option<String> {
        self.dpop
            .settings()
            .nonce_at_token_endpoints
            .then(|| self.dpop.nonce(now))
    }
}
