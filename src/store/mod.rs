//! Durable state behind one trait: refresh tokens and opaque access tokens (kept only as
//! SHA-256 digests), revocations, and generated signing keys. The embedded default is
//! SQLite (`sqlite`); a clustered backend implements the same trait.

pub mod sqlite;

use crate::config::{Family, Format};
use async_trait::async_trait;
use std::fmt;

/// SHA-256 of a token: the only form in which a token is stored.
pub type Digest = [u8; 32];

pub fn digest(token: &str) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

/// What a stored token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub kind: TokenKind,
    /// This token's own id: what a revocation names.
    pub jti: String,
    /// The grant the token belongs to: every token issued from one password or
    /// client_credentials grant and its refreshes shares it.
    pub grant_id: String,
    pub client_id: String,
    pub family: Family,
    pub username: Option<String>,
    /// Space-separated.
    pub scope: String,
    pub audiences: Vec<String>,
    /// Access tokens: their own format. Refresh tokens: the format they were issued with.
    pub format: Format,
    pub issued_at: i64,
    /// `None`: never expires (immortal access tokens).
    pub expires_at: Option<i64>,
    /// Refresh tokens: when they were exchanged.
    pub used_at: Option<i64>,
    pub revoked: bool,
}

impl TokenRecord {
    /// Not revoked and not expired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| now < e)
    }
}

/// What using a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// First use: the token is now used and its successors are stored.
    Rotated,
    /// A second use within the grace period (concurrent refreshes): successors stored.
    WithinGrace,
    /// Used again after the grace period: the whole grant has been revoked.
    Reused { grant_id: String },
    /// Unknown, expired, revoked, or not a refresh token: nothing stored.
    Inactive,
}

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    /// One token, by id; `digest` when the token itself is stored (opaque access tokens).
    Token {
        jti: String,
        digest: Option<Digest>,
        until: Option<i64>,
    },
    /// Every token of a grant.
    Grant {
        grant_id: String,
        until: Option<i64>,
    },
}

/// A revocation as the store keeps it, for nodes and processes to learn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub seq: i64,
    pub target: RevocationTarget,
    /// Remembered until then (the revoked tokens' expiry); `None`: forever.
    pub until: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationTarget {
    Jti(String),
    Grant(String),
}

/// The store could not do what was asked; callers answer 503 `temporarily_unavailable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Durable token state. Every write returns once it is durable: a token a client has
/// received survives a crash of the gateway.
#[async_trait]
pub trait Store: Send + Sync {
    /// Store new tokens, all or none.
    async fn insert(&self, tokens: Vec<(Digest, TokenRecord)>) -> Result<(), StoreError>;

    async fn get(&self, digest: &Digest) -> Result<Option<TokenRecord>, StoreError>;

    /// Use the refresh token `used` and store its `successors`, in one step. A reuse
    /// `grace` or more seconds after the first use revokes the grant, remembered until
    /// `reuse_until`.
    async fn rotate(
        &self,
        used: Digest,
        successors: Vec<(Digest, TokenRecord)>,
        now: i64,
        grace: i64,
        reuse_until: Option<i64>,
    ) -> Result<Rotation, StoreError>;

    async fn revoke(&self, what: Revoke) -> Result<(), StoreError>;

    /// Revocations after `seq` that still matter at `now`, oldest first.
    async fn revocations_since(&self, seq: i64, now: i64) -> Result<Vec<Revocation>, StoreError>;

    /// Delete tokens and revocations that expired before `now`; returns how many.
    async fn purge(&self, now: i64) -> Result<u64, StoreError>;

    /// The key stored under `name`, storing `candidate` first if there is none (so every
    /// process and node ends up with the same key).
    async fn key_or_insert(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError>;

    async fn key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

#[cfg(test)]
mod tests;
