//! Durable state behind one trait: refresh tokens and opaque access tokens (kept only as
//! SHA-256 digests), revocations and the feed that tells every process about them, the
//! signing key set, short-lived records (authorization codes, login flows, sessions, used
//! token ids), and records provisioned at run time (credentials, subscriptions) with the
//! change feed every node mirrors them from. The embedded default is SQLite (`sqlite`); a
//! cluster shares Redis (`redis`). `instrumented` wraps either with metrics, timeouts'
//! logging and up/down state.

pub mod instrumented;
pub mod redis;
pub mod sqlite;

use crate::domain::ids::{ClientId, GrantId, Jti};
use crate::domain::oauth::{Family, Format, TokenKind};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// SHA-256 of a token: the only form in which a token is stored.
pub type Digest = [u8; 32];

pub fn digest(token: &str) -> Digest {
    digest_bytes(token.as_bytes())
}

pub fn digest_bytes(bytes: &[u8]) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// What a stored token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub kind: TokenKind,
    /// This token's own id: what a revocation names.
    pub jti: Jti,
    /// The grant the token belongs to: every token issued from one password or
    /// client_credentials grant and its refreshes shares it.
    pub grant_id: GrantId,
    pub client_id: ClientId,
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
    /// What the token is bound to (RFC 9449 `jkt`, RFC 8705 `x5t#S256`).
    pub cnf: Option<crate::domain::cnf::Confirmation>,
}

impl TokenRecord {
    /// What a revocation may name of this token.
    pub fn revocation_subject(&self) -> RevocationSubject<'_> {
        RevocationSubject {
            jti: Some(&self.jti),
            grant: Some(&self.grant_id),
            client_id: Some(&self.client_id),
            username: self.username.as_deref(),
            iat: Some(self.issued_at),
        }
    }

    /// Not revoked and not expired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| now < e)
    }
}

/// Who a token belongs to, as far as revocation is concerned.
#[derive(Debug, Clone, Copy, Default)]
pub struct RevocationSubject<'a> {
    pub jti: Option<&'a str>,
    pub grant: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub username: Option<&'a str>,
    /// Issued at; a token without `iat` counts as issued before any time.
    pub iat: Option<i64>,
}

/// What using a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// First use: the token is now used and its successors are stored.
    Rotated,
    /// A second use within the grace period (concurrent refreshes): successors stored.
    WithinGrace,
    /// Used again after the grace period: the whole grant has been revoked.
    Reused { grant_id: GrantId },
    /// Unknown, expired, revoked, or not a refresh token: nothing stored.
    Inactive,
}

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    /// One token, by id; `digest` when the token itself is stored (opaque access tokens).
    Token {
        jti: Jti,
        digest: Option<Digest>,
        until: Option<i64>,
    },
    /// Every token of a grant.
    Grant {
        grant_id: GrantId,
        until: Option<i64>,
    },
    /// Every token of a client issued before a time (a leaked secret, a compromised app).
    Client {
        client_id: ClientId,
        issued_before: i64,
        until: Option<i64>,
    },
    /// Every token of a user issued before a time (a stolen password, a departed user).
    User {
        username: String,
        issued_before: i64,
        until: Option<i64>,
    },
}

impl Revoke {
    /// The revocation as every process learns it.
    pub fn revocation(&self) -> Revocation {
        let (target, until) = match self {
            Revoke::Token { jti, until, .. } => (RevocationTarget::Jti(jti.clone()), *until),
            Revoke::Grant { grant_id, until } => {
                (RevocationTarget::Grant(grant_id.clone()), *until)
            }
            Revoke::Client {
                client_id,
                issued_before,
                until,
            } => (
                RevocationTarget::Client {
                    client_id: client_id.clone(),
                    issued_before: *issued_before,
                },
                *until,
            ),
            Revoke::User {
                username,
                issued_before,
                until,
            } => (
                RevocationTarget::User {
                    username: username.clone(),
                    issued_before: *issued_before,
                },
                *until,
            ),
        };
        Revocation { target, until }
    }
}

/// A revocation as the store keeps it, for nodes and processes to learn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub target: RevocationTarget,
    /// Remembered until then (the revoked tokens' expiry); `None`: forever.
    pub until: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationTarget {
    Jti(Jti),
    Grant(GrantId),
    /// Tokens of the client issued (`iat`) before the time.
    Client {
        client_id: ClientId,
        issued_before: i64,
    },
    /// Tokens of the user issued before the time.
    User {
        username: String,
        issued_before: i64,
    },
}

impl RevocationTarget {
    /// One line of text naming the target (the Redis member and stream field). Ids never
    /// contain the separator: client ids, usernames and token ids exclude control characters.
    pub fn encode(&self) -> String {
        match self {
            RevocationTarget::Jti(j) => format!("j\u{1f}{j}"),
            RevocationTarget::Grant(g) => format!("g\u{1f}{g}"),
            RevocationTarget::Client {
                client_id,
                issued_before,
            } => format!("c\u{1f}{issued_before}\u{1f}{client_id}"),
            RevocationTarget::User {
                username,
                issued_before,
            } => format!("u\u{1f}{issued_before}\u{1f}{username}"),
        }
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (kind, rest) = s.split_once('\u{1f}')?;
        let timed = |rest: &str| {
            let (before, id) = rest.split_once('\u{1f}')?;
            Some((before.parse::<i64>().ok()?, id.to_string()))
        };
        match kind {
            "j" => Some(RevocationTarget::Jti(Jti::new(rest))),
            "g" => Some(RevocationTarget::Grant(GrantId::new(rest))),
            "c" => timed(rest).map(|(issued_before, client_id)| RevocationTarget::Client {
                client_id: ClientId::new(client_id),
                issued_before,
            }),
            "u" => timed(rest).map(|(issued_before, username)| RevocationTarget::User {
                username,
                issued_before,
            }),
            _ => None,
        }
    }
}

/// Where a process is in the revocation feed: opaque to everyone but the store that made
/// it. `None` means "from the start" (the full set of live revocations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(pub Option<String>);

/// A step of the revocation feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Feed {
    pub revocations: Vec<Revocation>,
    /// Where to continue from.
    pub next: Cursor,
    /// `revocations` is the whole set of live revocations (a start, or a gap the process
    /// could not follow): everything the process caches must be checked against it again.
    pub full: bool,
}

/// The signing key set document and the version that guards changes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetDoc {
    pub version: u64,
    pub doc: Vec<u8>,
}

/// Kinds of short-lived record, each in its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ephemeral {
    /// Authorization codes (RFC 6749 §4.1.2), by digest.
    AuthCode,
    /// Login flows between `/authorize` and the redirect back, by digest of the flow id.
    LoginFlow,
    /// Browser sessions, by digest of the session cookie.
    Session,
    /// Subject-token ids already exchanged (RFC 8693 replay), by digest of `iss` + `jti`.
    UsedSubjectToken,
    /// DPoP proof ids already used (RFC 9449 §11.1), by digest of key thumbprint + `jti`.
    DpopProof,
    /// Initial access tokens of dynamic client registration (RFC 7591 §3), by digest.
    InitialAccessToken,
}

impl Ephemeral {
    pub fn code(self) -> u8 {
        match self {
            Ephemeral::AuthCode => 1,
            Ephemeral::LoginFlow => 2,
            Ephemeral::Session => 3,
            Ephemeral::UsedSubjectToken => 4,
            Ephemeral::DpopProof => 5,
            Ephemeral::InitialAccessToken => 6,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Ephemeral::AuthCode => "code",
            Ephemeral::LoginFlow => "flow",
            Ephemeral::Session => "session",
            Ephemeral::UsedSubjectToken => "subject",
            Ephemeral::DpopProof => "dpop",
            Ephemeral::InitialAccessToken => "registration",
        }
    }
}

/// What consuming a short-lived record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// The first use: the record is now marked used (and kept until it expires).
    First(Vec<u8>),
    /// Used before: a replay. The record is returned so the caller can act on it.
    Again(Vec<u8>),
    /// Unknown or expired.
    Missing,
}

/// Kinds of record provisioned at run time (the admin API), each its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Credential,
    Subscription,
}

impl RecordKind {
    pub const ALL: [RecordKind; 2] = [RecordKind::Credential, RecordKind::Subscription];

    /// Stable: written to the SQLite file and to Redis keys.
    pub fn code(self) -> u8 {
        match self {
            RecordKind::Credential => 1,
            RecordKind::Subscription => 2,
        }
    }

    /// `None`: a kind this tollgate does not know (written by a newer one).
    pub fn from_code(c: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == c)
    }

    pub fn label(self) -> &'static str {
        match self {
            RecordKind::Credential => "credential",
            RecordKind::Subscription => "subscription",
        }
    }
}

/// A provisioned record as stored. `doc: None` is a deletion (a tombstone) that the feed
/// reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: RecordKind,
    pub name: String,
    /// Its place in the store-wide sequence of record changes.
    pub version: u64,
    /// Opaque to the store (the admin API writes JSON).
    pub doc: Option<Vec<u8>>,
}

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written; the record's new version.
    Done { version: u64 },
    /// The record's version was not the expected one: nothing written. `current`: its live
    /// version, `None` when there is no live record.
    Conflict { current: Option<u64> },
}

/// A step of the record feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFeed {
    /// Records after the cursor in version order (tombstones included), or, when `full`,
    /// live records from the start (Redis: the first `limit` of them; SQLite: all).
    pub records: Vec<Record>,
    /// The store cannot continue from the cursor (its sequence is behind it, or Redis's
    /// epoch changed: flushed or restored, a file replaced): the follower empties its
    /// mirror, takes `records`, and continues from the greatest version in them (or 0),
    /// which reads the rest of the live set.
    pub full: bool,
}

/// The store could not do what was asked; callers answer 503 `temporarily_unavailable`.
/// Cloned to every caller of a failed batch, so its sources are shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A SQLite statement or transaction failed.
    #[error("store: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    /// The embedded store's file cannot be opened, set up or read at start.
    #[error("store: cannot {action} {}: {source}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        source: Arc<rusqlite::Error>,
    },
    #[error("store: cannot start the store writer: {0}")]
    WriterStart(Arc<std::io::Error>),
    /// The writer thread is gone, or lost a job.
    #[error("store: the store writer {0}")]
    Writer(&'static str),
    /// A Redis call failed.
    #[error("store: Redis {op}: {source}")]
    Redis {
        op: &'static str,
        source: Arc<::redis::RedisError>,
    },
    /// A Redis call did not answer within its bound (`store.timeout`).
    #[error("store: Redis {op}: no answer within {}ms", after.as_millis())]
    RedisTimeout { op: &'static str, after: Duration },
    /// The store's own Redis runtime failed.
    #[error("store: cannot start the Redis client: {0}")]
    RedisRuntime(Arc<std::io::Error>),
    /// A Redis call's task failed.
    #[error("store: Redis {op}: {source}")]
    RedisTask {
        op: &'static str,
        source: Arc<tokio::task::JoinError>,
    },
    /// Redis answered what the store never writes.
    #[error("store: Redis {op}: {what}")]
    RedisReply {
        op: &'static str,
        what: &'static str,
    },
    /// `store.url` cannot be used.
    #[error("store: store.url: {0}")]
    RedisUrl(Arc<::redis::RedisError>),
    /// A stored record cannot be read back.
    #[error("store: a stored token record is unreadable: {0}")]
    Corrupt(Arc<serde_json::Error>),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(Arc::new(e))
    }
}

/// Durable token state. Every write returns once it is durable (SQLite: committed with the
/// configured sync; Redis: acknowledged, durable as its persistence settings make it).
#[async_trait]
pub trait Store: Send + Sync {
    /// `sqlite` or `redis`.
    fn backend(&self) -> &'static str;

    /// A cheap round trip, to know whether the store is reachable.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Store new tokens, all or none.
    async fn insert(&self, tokens: Vec<(Digest, TokenRecord)>) -> Result<(), StoreError>;

    async fn get(&self, digest: &Digest) -> Result<Option<TokenRecord>, StoreError>;

    /// Use the refresh token `used` and store its `successors`, in one atomic step (also
    /// across nodes). A reuse `grace` or more seconds after the first use revokes the
    /// grant, remembered until `reuse_until`.
    async fn rotate(
        &self,
        used: Digest,
        successors: Vec<(Digest, TokenRecord)>,
        now: i64,
        grace: i64,
        reuse_until: Option<i64>,
    ) -> Result<Rotation, StoreError>;

    /// Record a revocation and tell every process about it.
    async fn revoke(&self, what: Revoke) -> Result<(), StoreError>;

    /// Revocations after `after` that still matter at `now`. Waits up to `wait` for one
    /// when there is none yet (Redis: a blocking stream read; SQLite: a short poll).
    async fn revocations(
        &self,
        after: &Cursor,
        wait: Duration,
        now: i64,
    ) -> Result<Feed, StoreError>;

    /// Delete tokens, revocations and short-lived records that expired before `now`;
    /// returns how many (Redis expires keys by itself and only trims its revocation set).
    async fn purge(&self, now: i64) -> Result<u64, StoreError>;

    /// The signing key set document, if one was stored.
    async fn key_set(&self) -> Result<Option<KeySetDoc>, StoreError>;

    /// Replace the key set document if its version is still `expected` (`None`: there is
    /// none yet). Returns whether it was replaced; the new version is `expected + 1`.
    async fn replace_key_set(
        &self,
        expected: Option<u64>,
        doc: Vec<u8>,
    ) -> Result<bool, StoreError>;

    /// A key stored by an earlier tollgate under `name` (before key sets existed).
    async fn legacy_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Store a short-lived record (replacing one under the same key).
    async fn put_ephemeral(
        &self,
        kind: Ephemeral,
        key: Digest,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// Store a short-lived record only if there is none under the key; whether it was.
    async fn claim_ephemeral(
        &self,
        kind: Ephemeral,
        key: Digest,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<bool, StoreError>;

    /// Remember `key` until `expires_at` unless it is remembered already; whether it was
    /// new. One write: Redis answers it with one `SET NX PXAT`.
    async fn remember_once(
        &self,
        kind: Ephemeral,
        key: Digest,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.claim_ephemeral(kind, key, Vec::new(), expires_at)
            .await
    }

    /// The record under the key, if it has not expired.
    async fn get_ephemeral(
        &self,
        kind: Ephemeral,
        key: &Digest,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Mark the record used, atomically: exactly one caller sees `First`.
    async fn consume_ephemeral(
        &self,
        kind: Ephemeral,
        key: &Digest,
        now: i64,
    ) -> Result<Consumed, StoreError>;

    async fn delete_ephemeral(&self, kind: Ephemeral, key: &Digest) -> Result<(), StoreError>;

    /// Write `doc` under (kind, name) if the record's live version is `expected` (`None`:
    /// no live record, i.e. absent or deleted). Every write, put or delete, takes the next
    /// number of one store-wide sequence as its version, so versions order all changes of
    /// all kinds.
    async fn put_record(
        &self,
        kind: RecordKind,
        name: &str,
        expected: Option<u64>,
        doc: Vec<u8>,
    ) -> Result<Written, StoreError>;

    /// Delete the live record if its version is `expected`, leaving a tombstone under a new
    /// version for the feed (`Conflict { current: None }` when there is no live record).
    async fn delete_record(
        &self,
        kind: RecordKind,
        name: &str,
        expected: u64,
    ) -> Result<Written, StoreError>;

    /// The live record, if any.
    async fn get_record(&self, kind: RecordKind, name: &str) -> Result<Option<Record>, StoreError>;

    /// Records whose version is greater than `after`, oldest first, at most `limit` (a
    /// `limit` of 0 counts as 1): the caller reads again until it gets fewer. When there is
    /// none yet, waits up to `wait` for one (Redis: a blocking read on its own connection,
    /// as the revocation feed does; SQLite: polling the file about every 50 ms, so writes
    /// by other processes on the same file are seen). Records of kinds this tollgate does
    /// not know are passed over.
    async fn records_after(
        &self,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<RecordFeed, StoreError>;
}

#[cfg(test)]
mod tests;
