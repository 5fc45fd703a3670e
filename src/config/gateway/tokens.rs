//! `tokens:` of the gateway file: the signing key (generated or a file), verification
//! keys, lifetimes, rotation and the JWKS cache lifetime.

use super::super::errors::Errors;
use super::super::file::{DurationText, KeyFileRef, TokensFile};
use super::super::{KeyFile, RotationSettings, SigningKeySource, TokenSettings, resolve_path};
use super::{duration_or, take};
use crate::domain::jose::Algorithm;
use std::path::Path;
use std::time::Duration;

pub(super) fn tokens(t: TokensFile, base_dir: &Path, errs: &mut Errors) -> TokenSettings {
    let signing = take(t.signing_key, "tokens.signing_key", errs);
    check_kid(signing.kid.as_deref(), "tokens.signing_key.kid", errs);
    let algorithm = signing.algorithm.unwrap_or(Algorithm::ES256);
    let signing_key = match signing.file {
        Some(file) => SigningKeySource::File(key_file(
            KeyFileRef {
                file,
                algorithm,
                kid: signing.kid,
            },
            "tokens.signing_key",
            base_dir,
            errs,
        )),
        None => SigningKeySource::Generated {
            algorithm,
            kid: signing.kid,
        },
    };
    let verification_keys = t
        .verification_keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| key_file(k, &format!("tokens.verification_keys[{i}]"), base_dir, errs))
        .collect();
    let leeway = duration_or(
        t.leeway.as_ref().map(DurationText::as_str),
        "tokens.leeway",
        Duration::from_secs(60),
        errs,
    );
    let access_token_lifetime = duration_or(
        t.access_token_lifetime.as_ref().map(DurationText::as_str),
        "tokens.access_token_lifetime",
        Duration::from_secs(900),
        errs,
    );
    if access_token_lifetime < Duration::from_secs(1) {
        errs.push("tokens.access_token_lifetime", "must be at least 1s");
    }
    let refresh_grace_period = duration_or(
        t.refresh_grace_period.as_ref().map(DurationText::as_str),
        "tokens.refresh_grace_period",
        Duration::from_secs(10),
        errs,
    );
    let jwks_max_age = duration_or(
        t.jwks_max_age.as_ref().map(DurationText::as_str),
        "tokens.jwks_max_age",
        Duration::from_secs(300),
        errs,
    );
    let rotation_file = t.rotation.unwrap_or_default();
    let rotation = RotationSettings {
        every: rotation_file.every.as_ref().map(|d| {
            duration_or(
                Some(d.as_str()),
                "tokens.rotation.every",
                Duration::ZERO,
                errs,
            )
        }),
        publish_ahead: duration_or(
            rotation_file
                .publish_ahead
                .as_ref()
                .map(DurationText::as_str),
            "tokens.rotation.publish_ahead",
            jwks_max_age * 2,
            errs,
        ),
    };
    if rotation.publish_ahead < jwks_max_age {
        errs.push(
            "tokens.rotation.publish_ahead",
            "must be at least tokens.jwks_max_age: verifiers that cached JWKS may not see a new key sooner",
        );
    }
    if let Some(every) = rotation.every {
        if every < rotation.publish_ahead * 2 {
            errs.push(
                "tokens.rotation.every",
                "must be at least twice publish_ahead",
            );
        }
        if matches!(signing_key, SigningKeySource::File(_)) {
            errs.push(
                "tokens.rotation.every",
                "rotates generated keys only; a key from a file is rotated by replacing the file (keep the old one in verification_keys)",
            );
        }
    }
    TokenSettings {
        signing_key,
        verification_keys,
        leeway,
        access_token_lifetime,
        refresh_grace_period,
        rotation,
        jwks_max_age,
        session_lifetime: duration_or(
            t.session_lifetime.as_ref().map(DurationText::as_str),
            "tokens.session_lifetime",
            Duration::from_secs(8 * 3600),
            errs,
        ),
    }
}

fn key_file(k: KeyFileRef, path: &str, base_dir: &Path, errs: &mut Errors) -> KeyFile {
    let resolved = resolve_path(base_dir, &k.file);
    if let Err(e) = std::fs::metadata(&resolved) {
        errs.push(
            format!("{path}.file"),
            format!("cannot read {}: {e}", resolved.display()),
        );
    }
    check_kid(k.kid.as_deref(), &format!("{path}.kid"), errs);
    KeyFile {
        path: resolved,
        algorithm: k.algorithm,
        kid: k.kid,
    }
}

fn check_kid(kid: Option<&str>, path: &str, errs: &mut Errors) {
    if let Some(kid) = kid
        && !crate::domain::jose::is_valid_kid(kid)
    {
        errs.push(path, "a kid is 1-64 characters of A-Z a-z 0-9 - _ .");
    }
}
