//! Validation of the external identity providers (`issuers:` in the upstreams file) into
//! the settings the `idp` module runs on.

use super::apis::is_valid_name;
use super::duration::format_duration;
use super::errors::Errors;
use super::errors::duration;
use super::issuer::{IssuerSettings, KeySource, RefreshSettings, load_ca_file};
use super::upstreams_file::IssuerFile;
use super::{IssuerConfig, resolve_path};
use crate::domain::claim::ClaimPath;
use crate::domain::jose::JwsAlg;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

fn claim(value: Option<&str>, path: String, errs: &mut Errors) -> Option<ClaimPath> {
    value.and_then(|v| match ClaimPath::parse(v) {
        Ok(c) => Some(c),
        Err(e) => {
            errs.push(path, e);
            None
        }
    })
}

/// The key-set lifetimes must nest: 0 < `min_lifetime` <= `default_lifetime` <=
/// `max_lifetime`. Raising one bound alone is the usual slip, so the message says which
/// other key to set.
fn lifetimes(r: &RefreshSettings, path: &str, errs: &mut Errors) {
    let (min, max, default) = (
        format_duration(r.min_lifetime),
        format_duration(r.max_lifetime),
        format_duration(r.default_lifetime),
    );
    if r.fetch_timeout.is_zero() {
        errs.push(format!("{path}.keys.fetch_timeout"), "must be more than 0");
    }
    if r.min_lifetime.is_zero() {
        errs.push(format!("{path}.keys.min_lifetime"), "must be more than 0");
    } else if r.min_lifetime > r.max_lifetime {
        errs.push(
            format!("{path}.keys.min_lifetime"),
            format!("{min} is longer than keys.max_lifetime ({max})"),
        );
    } else if r.default_lifetime < r.min_lifetime || r.default_lifetime > r.max_lifetime {
        errs.push(
            format!("{path}.keys.default_lifetime"),
            format!(
                "{default} (the lifetime of a key set whose response has no max-age) must lie \
                 between keys.min_lifetime ({min}) and keys.max_lifetime ({max}): set \
                 keys.default_lifetime too"
            ),
        );
    }
}

pub(super) fn issuers(
    items: Vec<(String, IssuerFile)>,
    base_dir: &Path,
    errs: &mut Errors,
) -> Vec<IssuerConfig> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (path, f) in items {
        if !is_valid_name(&f.name) || f.name == super::apis::TOLLGATE_ISSUER {
            errs.push(
                format!("{path}.name"),
                "a name is 1-64 characters of A-Z a-z 0-9 - _ . (and not `tollgate`)",
            );
        }
        if !names.insert(f.name.clone()) {
            errs.push(
                format!("{path}.name"),
                format!("issuer `{}` is defined twice", f.name),
            );
        }
        let algorithms = match &f.algorithms {
            None => vec![JwsAlg::RS256, JwsAlg::ES256],
            Some(list) => {
                if list.is_empty() {
                    errs.push(format!("{path}.algorithms"), "allow at least one algorithm");
                }
                list.iter()
                    .enumerate()
                    .filter_map(|(i, a)| {
                        let alg = JwsAlg::from_jws(a);
                        if alg.is_none() {
                            errs.push(
                                format!("{path}.algorithms[{i}]"),
                                format!(
                                    "`{a}` is not one of ES256 ES384 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA (HMAC and none are never accepted)"
                                ),
                            );
                        }
                        alg
                    })
                    .collect()
            }
        };
        let k = f.keys.unwrap_or_default();
        let d = |v: &Option<super::file::DurationText>,
                 key: &str,
                 default: Duration,
                 errs: &mut Errors| {
            duration(
                v.as_ref().map(|t| t.as_str()),
                format!("{path}.keys.{key}"),
                default,
                errs,
            )
        };
        let defaults = RefreshSettings::default();
        let refresh = RefreshSettings {
            min_lifetime: d(&k.min_lifetime, "min_lifetime", defaults.min_lifetime, errs),
            max_lifetime: d(&k.max_lifetime, "max_lifetime", defaults.max_lifetime, errs),
            default_lifetime: d(
                &k.default_lifetime,
                "default_lifetime",
                defaults.default_lifetime,
                errs,
            ),
            kid_miss_cooldown: d(
                &k.kid_miss_cooldown,
                "kid_miss_cooldown",
                defaults.kid_miss_cooldown,
                errs,
            ),
            fetch_timeout: d(
                &k.fetch_timeout,
                "fetch_timeout",
                defaults.fetch_timeout,
                errs,
            ),
            ..defaults
        };
        // A cooldown much below a second would let a flood of unknown kids refetch often.
        if refresh.kid_miss_cooldown < Duration::from_secs(1) {
            errs.push(
                format!("{path}.keys.kid_miss_cooldown"),
                "must be at least 1s",
            );
        }
        lifetimes(&refresh, &path, errs);
        let ca_file = f.ca_file.as_deref().map(|c| resolve_path(base_dir, c));
        if let Some(c) = &ca_file
            && let Err(e) = load_ca_file(c)
        {
            errs.push(format!("{path}.ca_file"), e.to_string());
        }
        let settings = IssuerSettings {
            name: f.name.clone(),
            issuer: f.issuer.clone(),
            keys: match f.jwks_uri {
                Some(u) => KeySource::JwksUri(u),
                None => KeySource::Discovery,
            },
            audiences: f.audiences,
            algorithms,
            typ: f.typ,
            scope_claim: claim(
                f.scope_claim.as_deref(),
                format!("{path}.scope_claim"),
                errs,
            ),
            subject_claim: claim(
                f.subject_claim.as_deref(),
                format!("{path}.subject_claim"),
                errs,
            )
            .unwrap_or_else(ClaimPath::sub),
            leeway: duration(
                f.leeway.as_ref().map(|t| t.as_str()),
                format!("{path}.leeway"),
                Duration::from_secs(60),
                errs,
            ),
            refresh,
            ca_file,
        };
        // What makes the settings safe to run, under this issuer's key path (the refresh
        // settings' are reported above, each under its own key).
        let refresh_problems = settings.refresh.problems();
        for p in settings
            .problems()
            .into_iter()
            .filter(|p| !refresh_problems.contains(p))
        {
            errs.push(&path, format!("issuer `{}`: {p}", settings.name));
        }
        out.push(IssuerConfig {
            user_claim: claim(f.user_claim.as_deref(), format!("{path}.user_claim"), errs),
            settings,
        });
    }
    out
}
