//! `store:` of the gateway file: the embedded SQLite file or a cluster's Redis, and the
//! key that seals generated signing keys at rest.

use super::super::errors::Errors;
use super::super::file::{DurationText, StoreFile};
use super::super::{RedisSettings, StoreBackend, StoreSettings, StoreSync, resolve_path};
use super::duration_or;
use crate::domain::secret::Secret;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) fn store(
    f: StoreFile,
    base_dir: &Path,
    state_dir: &Path,
    generated_key: bool,
    errs: &mut Errors,
) -> StoreSettings {
    let (purge_interval, encryption_key_file) = match &f {
        StoreFile::Sqlite(s) => (&s.purge_interval, &s.encryption_key_file),
        StoreFile::Redis(r) => (&r.purge_interval, &r.encryption_key_file),
    };
    let purge_interval = duration_or(
        purge_interval.as_ref().map(DurationText::as_str),
        "store.purge_interval",
        Duration::from_secs(60),
        errs,
    );
    let key_encryption = encryption_key_file.as_deref().and_then(|p| {
        match read_encryption_key(&resolve_path(base_dir, p)) {
            Ok(k) => Some(Secret::new(k)),
            Err(e) => {
                errs.push("store.encryption_key_file", e);
                None
            }
        }
    });
    let backend = match f {
        StoreFile::Sqlite(s) => StoreBackend::Sqlite {
            file: state_dir.join(s.file.as_deref().unwrap_or("tollgate.db")),
            sync: s.sync.unwrap_or(StoreSync::Full),
        },
        StoreFile::Redis(r) => {
            let url = r.url;
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                errs.push(
                    "store.url",
                    "`kind: redis` needs `url: redis://host:port/db` (or rediss:// for TLS)",
                );
            } else if let Err(e) = ::redis::Client::open(url.as_str()) {
                errs.push("store.url", format!("not a Redis URL: {e}"));
            }
            if generated_key && key_encryption.is_none() && r.encryption_key_file.is_none() {
                errs.push(
                    "store.encryption_key_file",
                    "needed with `kind: redis` and a generated signing key: private keys are never stored in clear",
                );
            }
            let prefix = r.key_prefix.unwrap_or_else(|| "tollgate:".to_string());
            if prefix.is_empty() || prefix.contains(char::is_whitespace) {
                errs.push("store.key_prefix", "must be non-empty, without spaces");
            }
            let timeout = duration_or(
                r.timeout.as_ref().map(DurationText::as_str),
                "store.timeout",
                Duration::from_millis(500),
                errs,
            );
            if timeout < Duration::from_millis(10) {
                errs.push("store.timeout", "must be at least 10ms");
            }
            StoreBackend::Redis(RedisSettings {
                url_for_logs: url_for_logs(&url),
                url: Secret::new(url),
                prefix,
                timeout,
                feed_max_len: 100_000,
            })
        }
    };
    StoreSettings {
        backend,
        purge_interval,
        key_encryption,
    }
}

/// `redis://user:secret@host` without the secret.
fn url_for_logs(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(at)) if at > scheme.len() + 3 => {
            let host = &url[at + 1..];
            let user = rest.split(['@', ':']).next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// The 32-byte key in `path`: raw, or base64 (standard or URL-safe) on one line.
/// Why the store encryption key file cannot be used.
#[derive(Debug, thiserror::Error)]
enum EncryptionKeyError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: neither 32 raw bytes nor base64", .0.display())]
    Encoding(PathBuf),
    #[error(
        "{}: the key must be 32 bytes (e.g. `head -c 32 /dev/urandom | base64`), not {length}",
        path.display()
    )]
    Length { path: PathBuf, length: usize },
}

fn read_encryption_key(path: &Path) -> Result<[u8; 32], EncryptionKeyError> {
    use base64::Engine as _;
    let bytes = std::fs::read(path).map_err(|source| EncryptionKeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return Ok(raw);
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
        .map_err(|_| EncryptionKeyError::Encoding(path.to_path_buf()))?;
    <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| EncryptionKeyError::Length {
        path: path.to_path_buf(),
        length: decoded.len(),
    })
}
