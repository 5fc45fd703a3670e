//! The outcome of checking one request's credential: what the proxy answers, what the
//! access log and `tollgate_token_validations_total{outcome}` say.

/// The result of checking one request's credential, as counted in
/// `tollgate_token_validations_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Missing,
    Malformed,
    BadSignature,
    UnknownKey,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    InsufficientScope,
    /// The token, or its grant, was revoked.
    Revoked,
    /// An opaque token the store does not know.
    UnknownToken,
    /// Its client, user or ACL entry is gone from the configuration.
    NotPermitted,
    /// The store could not be read: the answer is 503, not a refusal.
    StoreUnavailable,
    /// An API key no credential has.
    UnknownApiKey,
    /// A token of the wrong type: an ID token, or an external token without the `typ`
    /// its issuer requires (RFC 9068, RFC 8725 §3.11).
    WrongType,
    /// A DPoP proof that is missing where the token is DPoP-bound, malformed, signed by
    /// another key, for another request or token, too old, or replayed (RFC 9449 §7.1).
    DpopProof,
    /// The proof lacks the server's current nonce (RFC 9449 §9): the answer carries one.
    DpopNonce,
    /// A sender-constrained token presented without its constraint: a DPoP-bound token
    /// as `Bearer` (RFC 9449 §7.2), a certificate-bound one over a connection without
    /// that certificate (RFC 8705 §3), or a bearer token where the API requires DPoP.
    NotSenderConstrained,
    /// A certificate-bound token (RFC 8705 §3) as `Bearer` over a connection that did not
    /// present its certificate: refused with a Bearer `invalid_token` challenge.
    CertificateMismatch,
}

impl Outcome {
    pub const ALL: [Outcome; 20] = [
        Outcome::Ok,
        Outcome::Missing,
        Outcome::Malformed,
        Outcome::BadSignature,
        Outcome::UnknownKey,
        Outcome::Expired,
        Outcome::NotYetValid,
        Outcome::WrongIssuer,
        Outcome::WrongAudience,
        Outcome::InsufficientScope,
        Outcome::Revoked,
        Outcome::UnknownToken,
        Outcome::NotPermitted,
        Outcome::StoreUnavailable,
        Outcome::UnknownApiKey,
        Outcome::WrongType,
        Outcome::DpopProof,
        Outcome::DpopNonce,
        Outcome::NotSenderConstrained,
        Outcome::CertificateMismatch,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Missing => "missing",
            Outcome::Malformed => "malformed",
            Outcome::BadSignature => "bad_signature",
            Outcome::UnknownKey => "unknown_key",
            Outcome::Expired => "expired",
            Outcome::NotYetValid => "not_yet_valid",
            Outcome::WrongIssuer => "wrong_issuer",
            Outcome::WrongAudience => "wrong_audience",
            Outcome::InsufficientScope => "insufficient_scope",
            Outcome::Revoked => "revoked",
            Outcome::UnknownToken => "unknown_token",
            Outcome::NotPermitted => "not_permitted",
            Outcome::StoreUnavailable => "store_unavailable",
            Outcome::UnknownApiKey => "unknown_api_key",
            Outcome::WrongType => "wrong_type",
            Outcome::DpopProof => "dpop_proof",
            Outcome::DpopNonce => "dpop_nonce",
            Outcome::NotSenderConstrained => "not_sender_constrained",
            Outcome::CertificateMismatch => "certificate_mismatch",
        }
    }

    /// `error_description` of the challenge; never echoes anything from the token.
    pub fn description(self) -> &'static str {
        match self {
            Outcome::Ok | Outcome::Missing => "",
            Outcome::Malformed => "The access token is malformed",
            Outcome::BadSignature => "The access token signature is invalid",
            Outcome::UnknownKey => "The access token was signed by an unknown key",
            Outcome::Expired => "The access token expired",
            Outcome::NotYetValid => "The access token is not valid yet",
            Outcome::WrongIssuer => "The access token was issued by another issuer",
            Outcome::WrongAudience => "The access token is not valid for this API",
            Outcome::InsufficientScope => "The access token lacks the scope this operation needs",
            Outcome::Revoked => "The access token was revoked",
            Outcome::UnknownToken => "The access token is not known",
            Outcome::NotPermitted => "The access token's client may no longer call this API",
            Outcome::StoreUnavailable => "The token store is unavailable",
            Outcome::UnknownApiKey => "The API key is not known",
            Outcome::WrongType => "The token is not an access token",
            Outcome::DpopProof => "The DPoP proof is missing or invalid for this request",
            Outcome::DpopNonce => "The DPoP proof must carry the nonce the server provides",
            Outcome::NotSenderConstrained => {
                "The access token is not presented with the key or certificate it is bound to"
            }
            Outcome::CertificateMismatch => {
                "The access token is bound to a client certificate this connection did not present"
            }
        }
    }
}
