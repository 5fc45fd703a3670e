//! Operator commands that act on the store a running gateway (or a cluster) shares:
//! `tollgate keys rotate|list` and `tollgate revoke --client|--user`. Running gateways
//! pick the change up by themselves (key set within seconds, revocations at once).

use crate::catalog::registry::Registry;
use crate::config::Config;
use crate::domain::clock::{rfc3339, unix_now};
use crate::domain::ids::ClientId;
use crate::keys::ring::{self, RingError, Rotated};
use crate::metrics::StoreMetrics;
use crate::server::{StartError, open_store, sealer, store_location};
use crate::store::{Revoke, Store, StoreError};
use std::fmt::Write as _;
use std::sync::Arc;

/// What to revoke from the command line.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    Client(String),
    User(String),
}

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn connect(config: &Config) -> Result<(tokio::runtime::Runtime, Arc<dyn Store>), StartError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let metrics = StoreMetrics::unregistered()?;
    let store = open_store(config, metrics)?;
    let location = store_location(config);
    rt.block_on(store.ping())
        .map_err(|source| StartError::Unreachable { location, source })?;
    Ok((rt, store))
}

/// `t` as an RFC 3339 time and how far from now.
fn time(t: i64) -> String {
    let now = unix_now();
    let at = rfc3339(t);
    match t - now {
        d if d > 0 => format!("{at} (in {})", span(d)),
        d if d < 0 => format!("{at} ({} ago)", span(-d)),
        _ => format!("{at} (now)"),
    }
}

fn span(secs: i64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, (s % 86_400) / 3_600),
        s if s >= 3_600 => format!("{}h{}m", s / 3_600, (s % 3_600) / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Publish the next signing key; it signs once every verifier can have fetched it.
pub fn rotate_keys(config: &Config) -> Result<String, AdminError> {
    let (rt, store) = connect(config)?;
    let registry = Registry::from_config(config);
    let now = unix_now();
    let outcome = rt.block_on(ring::rotate(
        &*store,
        &config.tokens,
        &sealer(config).map_err(StartError::from)?,
        registry.longest_token_lifetime(),
        now,
    ))?;
    Ok(match outcome {
        Rotated::Published {
            kid,
            activate_at,
            retiring,
        } => {
            let mut out = format!(
                "published key `{kid}` in JWKS; it signs from {}\n",
                time(activate_at)
            );
            for (old, at) in retiring {
                let _ = match at {
                    Some(at) => writeln!(out, "key `{old}` stays published until {}", time(at)),
                    None => writeln!(
                        out,
                        "key `{old}` stays published for ever: some clients' tokens never expire (immortal)"
                    ),
                };
            }
            out
        }
        Rotated::AlreadyPending { kid, activate_at } => format!(
            "key `{kid}` is already published and signs from {}: nothing to do\n",
            time(activate_at)
        ),
    })
}

/// The stored key set, one line per key.
pub fn list_keys(config: &Config) -> Result<String, AdminError> {
    let (rt, store) = connect(config)?;
    let now = unix_now();
    let sealer = sealer(config).map_err(StartError::from)?;
    let Some(keys) = rt.block_on(ring::list(&*store, &config.tokens, &sealer))? else {
        return Ok(
            "the store holds no signing key set yet: a gateway creates one when it starts, and writes its own back if the store lost it\n"
                .to_string(),
        );
    };
    let signing = keys
        .iter()
        .filter(|k| k.activate_at <= now && k.retire_at.is_none_or(|r| r > now))
        .max_by_key(|k| k.activate_at)
        .map(|k| k.kid.clone());
    let mut out = String::new();
    for k in keys {
        let state = if Some(&k.kid) == signing.as_ref() {
            "signing"
        } else if k.activate_at > now {
            "published, not signing yet"
        } else if k.retire_at.is_some_and(|r| r <= now) {
            "retired"
        } else {
            "published, verifying only"
        };
        // A key that signs from the start of the set says so, not "from 1970".
        let signs = if k.activate_at <= k.created_at {
            format!("signs since it was created, {}", time(k.created_at))
        } else {
            format!("signs from {}", time(k.activate_at))
        };
        let _ = writeln!(
            out,
            "{}  {}  {state}; {signs}; retires {}",
            k.kid,
            k.alg.as_str(),
            k.retire_at.map_or_else(|| "never".to_string(), time)
        );
    }
    Ok(out)
}

/// Revoke every token of a client or a user issued until now.
pub fn revoke(config: &Config, target: RevokeTarget) -> Result<String, AdminError> {
    let (rt, store) = connect(config)?;
    let registry = Registry::from_config(config);
    let now = unix_now();
    // Remembered until the last token issued before now has expired.
    let until = registry.longest_token_lifetime().map(|l| {
        now.saturating_add(l.as_secs() as i64)
            .saturating_add(config.tokens.leeway.as_secs() as i64)
    });
    let (what, said) = match target {
        RevokeTarget::Client(client_id) => (
            Revoke::Client {
                client_id: ClientId::new(client_id.as_str()),
                issued_before: now.saturating_add(1),
                until,
            },
            format!("client `{client_id}`"),
        ),
        RevokeTarget::User(username) => (
            Revoke::User {
                username: username.clone(),
                issued_before: now.saturating_add(1),
                until,
            },
            format!("user `{username}`"),
        ),
    };
    rt.block_on(store.revoke(what))?;
    Ok(format!(
        "revoked every token of {said} issued until now (access and refresh tokens); gateways refuse them from their next request\n"
    ))
}
