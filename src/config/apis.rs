//! Validation of the upstreams file: APIs (routes, upstream pools, auth and scope rules),
//! auth policies and consumer credentials.

use super::errors::{ConfigError, Errors, Lenient};
use super::file::{
    ApiFile, CredentialFile, DurationText, HealthCheckFile, HostHeaderFile, PolicyFile,
    UpstreamFile, UpstreamsFile,
};
use super::gateway::parse_yaml;
use super::{
    ApiConfig, AuthMode, ClientConfig, CredentialConfig, GrantType, HealthCheck, HealthCheckKind,
    HostHeader, PolicyConfig, UpstreamConfig, UpstreamServer, UpstreamTls, parse_duration,
};
use crate::auth::scope::{Rule, is_valid_scope_token};
use crate::redact::Secret;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// Paths the gateway answers itself; no API may claim them.
const RESERVED_PREFIXES: [&str; 3] = ["/auth", "/credential", "/.well-known"];

#[derive(Debug, Default)]
pub(super) struct Catalog {
    pub apis: Vec<ApiConfig>,
    pub policies: Vec<PolicyConfig>,
    pub credentials: Vec<CredentialConfig>,
}

pub(super) fn load(path: &Path) -> Result<Catalog, Vec<ConfigError>> {
    let mut errs = Errors::new(path.display().to_string());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errs.push("", format!("cannot read the upstreams file: {e}"));
            return Err(errs.into_vec());
        }
    };
    let Some(file) = parse_yaml::<UpstreamsFile>(&text, &mut errs) else {
        return Err(errs.into_vec());
    };
    for key in file.unknown.keys() {
        errs.push(
            key,
            "unknown key (expected one of apis, policies, credentials)",
        );
    }
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let parsed = list(file.apis, "apis", &mut errs);
    // References are checked against every API the file declares, valid or not, so an
    // error in an API is reported once, at the API.
    let declared: Vec<(String, AuthMode)> = parsed
        .iter()
        .map(|(_, a)| (a.name.clone(), a.auth))
        .collect();
    let apis = parsed
        .into_iter()
        .filter_map(|(path, a)| api(a, &path, base_dir, &mut errs))
        .collect::<Vec<_>>();
    check_api_uniqueness(&apis, &mut errs);

    let mut client_ids = HashSet::new();
    let mut policy_names = HashSet::new();
    let policies = list(file.policies, "policies", &mut errs)
        .into_iter()
        .map(|(path, p)| {
            if !policy_names.insert(p.name.clone()) {
                errs.push(
                    format!("{path}.name"),
                    format!("policy `{}` is defined twice", p.name),
                );
            }
            policy(p, &path, &declared, &mut client_ids, &mut errs)
        })
        .collect();
    let credentials = list(file.credentials, "credentials", &mut errs)
        .into_iter()
        .map(|(path, c)| credential(c, &path, &declared, &mut client_ids, &mut errs))
        .collect();
    if errs.is_empty() {
        Ok(Catalog {
            apis,
            policies,
            credentials,
        })
    } else {
        Err(errs.into_vec())
    }
}

/// The parsed items of a list section, each with its key path.
fn list<T>(
    section: Option<Lenient<Vec<Lenient<T>>>>,
    key: &str,
    errs: &mut Errors,
) -> Vec<(String, T)> {
    section
        .and_then(|s| s.take(key, errs))
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let path = format!("{key}[{i}]");
            item.take(&path, errs).map(|v| (path, v))
        })
        .collect()
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn duration(value: Option<&str>, path: String, default: Duration, errs: &mut Errors) -> Duration {
    match value {
        None => default,
        Some(v) => parse_duration(v).unwrap_or_else(|e| {
            errs.push(path, e);
            default
        }),
    }
}

fn api(a: ApiFile, path: &str, base_dir: &Path, errs: &mut Errors) -> Option<ApiConfig> {
    let before = errs.count();
    if !is_valid_name(&a.name) {
        errs.push(
            format!("{path}.name"),
            "a name is 1-64 characters of A-Z a-z 0-9 - _ .",
        );
    }
    if let Err(e) = check_prefix(&a.prefix) {
        errs.push(format!("{path}.prefix"), e);
    }
    let host = a.host.map(|h| h.to_ascii_lowercase());
    if let Some(h) = &host {
        let ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        if !ok {
            errs.push(
                format!("{path}.host"),
                format!("`{h}` is not a host name (no port, no scheme)"),
            );
        }
    }
    let upstream = upstream(a.upstream, &format!("{path}.upstream"), base_dir, errs);
    let audience = a.audience.unwrap_or_else(|| a.name.clone());
    if audience.is_empty() {
        errs.push(format!("{path}.audience"), "must not be empty");
    }
    if a.auth == AuthMode::None && !a.rules.is_empty() {
        errs.push(format!("{path}.rules"), "scope rules need `auth: jwt`");
    }
    let mut rules = Vec::new();
    for (j, r) in a.rules.iter().enumerate() {
        match Rule::new(&r.methods, &r.path, &r.all_of, &r.any_of) {
            Ok(rule) => rules.push(rule),
            Err(list) => {
                for (key, msg) in list {
                    errs.push(format!("{path}.rules[{j}].{key}"), msg);
                }
            }
        }
    }
    if errs.count() > before {
        return None;
    }
    Some(ApiConfig {
        name: a.name,
        prefix: a.prefix,
        host,
        strip_prefix: a.strip_prefix,
        upstream: upstream?,
        auth: a.auth,
        audience,
        rules,
    })
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err(format!("`{prefix}` must start with `/`"));
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err(format!("`{prefix}` must not end with `/`"));
    }
    if prefix.contains("//") || prefix.contains(['?', '#', '%', '*', '\\', ' ']) {
        return Err(format!(
            "`{prefix}` must be a plain path (no `//`, `?`, `#`, `%`, `*`, spaces)"
        ));
    }
    if prefix.split('/').any(|s| s == "." || s == "..") {
        return Err(format!("`{prefix}` must not contain `.` or `..` segments"));
    }
    for reserved in RESERVED_PREFIXES {
        if prefix == reserved || prefix.starts_with(&format!("{reserved}/")) {
            return Err(format!(
                "`{prefix}` is answered by the token service ({reserved}/...)"
            ));
        }
    }
    Ok(())
}

fn upstream(
    u: UpstreamFile,
    path: &str,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<UpstreamConfig> {
    let mut ok = true;
    if u.servers.is_empty() {
        errs.push(format!("{path}.servers"), "at least one server is needed");
        ok = false;
    }
    let mut servers = Vec::new();
    for (i, s) in u.servers.iter().enumerate() {
        match resolve_server(s) {
            Ok(addrs) => servers.extend(addrs.into_iter().map(|addr| UpstreamServer {
                addr,
                authority: s.trim().to_string(),
            })),
            Err(e) => {
                errs.push(format!("{path}.servers[{i}]"), e);
                ok = false;
            }
        }
    }
    let tls = match u.tls {
        None => None,
        Some(t) => {
            let verify = t.verify.unwrap_or(true);
            let ca_file = t.ca_file.map(|f| super::resolve_path(base_dir, &f));
            if let Some(f) = &ca_file
                && let Err(e) = std::fs::metadata(f)
            {
                errs.push(
                    format!("{path}.tls.ca_file"),
                    format!("cannot read {}: {e}", f.display()),
                );
                ok = false;
            }
            let sni = t.sni.or_else(|| {
                u.servers
                    .first()
                    .and_then(|s| s.rsplit_once(':'))
                    .map(|(host, _)| host.trim_matches(['[', ']']).to_string())
                    .filter(|h| h.parse::<IpAddr>().is_err())
            });
            match sni {
                Some(sni) => Some(UpstreamTls {
                    sni,
                    verify,
                    ca_file,
                }),
                None if !verify => Some(UpstreamTls {
                    sni: String::new(),
                    verify,
                    ca_file,
                }),
                None => {
                    errs.push(
                        format!("{path}.tls.sni"),
                        "needed to verify the certificate when servers are IP addresses (or set verify: false)",
                    );
                    ok = false;
                    None
                }
            }
        }
    };
    let host_header = match u.host_header {
        None | Some(HostHeaderFile::Pass) => HostHeader::Pass,
        Some(HostHeaderFile::Upstream) => HostHeader::Upstream,
        Some(HostHeaderFile::Set(v)) => {
            if v.is_empty() || http::HeaderValue::from_str(&v).is_err() {
                errs.push(
                    format!("{path}.host_header.set"),
                    format!("`{v}` is not a valid Host value"),
                );
                ok = false;
            }
            HostHeader::Set(v)
        }
    };
    let connect_timeout = duration(
        u.connect_timeout.as_ref().map(DurationText::as_str),
        format!("{path}.connect_timeout"),
        Duration::from_secs(5),
        errs,
    );
    let read_timeout = duration(
        u.read_timeout.as_ref().map(DurationText::as_str),
        format!("{path}.read_timeout"),
        Duration::from_secs(60),
        errs,
    );
    let write_timeout = duration(
        u.write_timeout.as_ref().map(DurationText::as_str),
        format!("{path}.write_timeout"),
        Duration::from_secs(60),
        errs,
    );
    let health_check = u
        .health_check
        .and_then(|h| health_check(h, &format!("{path}.health_check"), errs));
    ok.then_some(UpstreamConfig {
        servers,
        tls,
        host_header,
        connect_timeout,
        read_timeout,
        write_timeout,
        health_check,
    })
}

fn resolve_server(s: &str) -> Result<Vec<SocketAddr>, String> {
    let s = s.trim();
    if s.contains("://") || s.contains('/') {
        return Err(format!("`{s}` must be host:port (no scheme or path)"));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    if s.rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .is_none()
    {
        return Err(format!("`{s}` must be host:port"));
    }
    match s.to_socket_addrs() {
        Ok(it) => {
            let addrs: Vec<_> = it.collect();
            if addrs.is_empty() {
                Err(format!("`{s}` resolved to no address"))
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(format!("cannot resolve `{s}`: {e}")),
    }
}

fn health_check(h: HealthCheckFile, path: &str, errs: &mut Errors) -> Option<HealthCheck> {
    let (kind, interval, timeout, unhealthy_after, healthy_after) = match h {
        HealthCheckFile::Tcp {
            interval,
            timeout,
            unhealthy_after,
            healthy_after,
        } => (
            HealthCheckKind::Tcp,
            interval,
            timeout,
            unhealthy_after,
            healthy_after,
        ),
        HealthCheckFile::Http {
            path: check_path,
            interval,
            timeout,
            unhealthy_after,
            healthy_after,
        } => {
            let p = check_path.unwrap_or_else(|| "/".into());
            if !p.starts_with('/') || http::uri::PathAndQuery::try_from(p.as_str()).is_err() {
                errs.push(
                    format!("{path}.path"),
                    format!("`{p}` is not a request path"),
                );
                return None;
            }
            (
                HealthCheckKind::Http { path: p },
                interval,
                timeout,
                unhealthy_after,
                healthy_after,
            )
        }
    };
    let interval = duration(
        interval.as_ref().map(DurationText::as_str),
        format!("{path}.interval"),
        Duration::from_secs(5),
        errs,
    );
    let timeout = duration(
        timeout.as_ref().map(DurationText::as_str),
        format!("{path}.timeout"),
        Duration::from_secs(1),
        errs,
    );
    if interval < Duration::from_millis(10) {
        errs.push(format!("{path}.interval"), "must be at least 10ms");
    }
    for (key, v) in [
        ("unhealthy_after", unhealthy_after),
        ("healthy_after", healthy_after),
    ] {
        if v == Some(0) {
            errs.push(format!("{path}.{key}"), "must be at least 1");
        }
    }
    Some(HealthCheck {
        kind,
        interval,
        timeout,
        unhealthy_after: unhealthy_after.unwrap_or(3).max(1),
        healthy_after: healthy_after.unwrap_or(2).max(1),
    })
}

fn check_api_uniqueness(apis: &[ApiConfig], errs: &mut Errors) {
    let mut names = HashSet::new();
    let mut routes = HashSet::new();
    for (i, a) in apis.iter().enumerate() {
        if !names.insert(a.name.as_str()) {
            errs.push(
                format!("apis[{i}].name"),
                format!("API `{}` is defined twice", a.name),
            );
        }
        if !routes.insert((a.host.as_deref(), a.prefix.as_str())) {
            errs.push(
                format!("apis[{i}].prefix"),
                format!(
                    "another API already routes {} {}",
                    a.host.as_deref().unwrap_or("(any host)"),
                    a.prefix
                ),
            );
        }
    }
}

fn is_valid_client_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| (0x21..=0x7E).contains(&b) && b != b'"' && b != b'\\')
}

#[allow(clippy::too_many_arguments)]
fn client(
    client_id: String,
    hash: String,
    grant_types: Vec<GrantType>,
    scopes: Vec<String>,
    lifetime: Option<DurationText>,
    path: &str,
    client_ids: &mut HashSet<String>,
    errs: &mut Errors,
) -> ClientConfig {
    if !is_valid_client_id(&client_id) {
        errs.push(
            format!("{path}.client_id"),
            "a client_id is 1-128 printable ASCII characters without spaces, quotes or backslashes",
        );
    } else if !client_ids.insert(client_id.clone()) {
        errs.push(
            format!("{path}.client_id"),
            format!("client_id `{client_id}` is used twice"),
        );
    }
    if let Err(e) = crate::token::secret::check_hash(&hash) {
        errs.push(format!("{path}.client_secret_hash"), e);
    }
    for (i, s) in scopes.iter().enumerate() {
        if !is_valid_scope_token(s) {
            errs.push(
                format!("{path}.scopes[{i}]"),
                format!("`{s}` is not a valid scope"),
            );
        }
    }
    let access_token_lifetime = lifetime.map(|l| {
        let d = duration(
            Some(l.as_str()),
            format!("{path}.access_token_lifetime"),
            Duration::from_secs(900),
            errs,
        );
        if d < Duration::from_secs(1) {
            errs.push(
                format!("{path}.access_token_lifetime"),
                "must be at least 1s",
            );
        }
        d
    });
    ClientConfig {
        client_id,
        secret_hash: Secret::new(hash),
        grant_types: if grant_types.is_empty() {
            vec![GrantType::ClientCredentials]
        } else {
            grant_types
        },
        scopes,
        access_token_lifetime,
    }
}

fn check_api_refs(
    names: &[String],
    key: &str,
    path: &str,
    declared: &[(String, AuthMode)],
    errs: &mut Errors,
) {
    if names.is_empty() {
        errs.push(format!("{path}.{key}"), "name at least one API");
    }
    for (i, n) in names.iter().enumerate() {
        match declared.iter().find(|(name, _)| name == n) {
            None => errs.push(
                format!("{path}.{key}[{i}]"),
                format!("no API is named `{n}`"),
            ),
            Some((_, AuthMode::None)) => errs.push(
                format!("{path}.{key}[{i}]"),
                format!("API `{n}` has `auth: none`, so its tokens would never be checked"),
            ),
            Some(_) => {}
        }
    }
}

fn policy(
    p: PolicyFile,
    path: &str,
    declared: &[(String, AuthMode)],
    client_ids: &mut HashSet<String>,
    errs: &mut Errors,
) -> PolicyConfig {
    if !is_valid_name(&p.name) {
        errs.push(
            format!("{path}.name"),
            "a name is 1-64 characters of A-Z a-z 0-9 - _ .",
        );
    }
    check_api_refs(&p.apis, "apis", path, declared, errs);
    let client = client(
        p.client_id,
        p.client_secret_hash,
        p.grant_types,
        p.scopes,
        p.access_token_lifetime,
        path,
        client_ids,
        errs,
    );
    PolicyConfig {
        name: p.name,
        apis: p.apis,
        client,
    }
}

fn credential(
    c: CredentialFile,
    path: &str,
    declared: &[(String, AuthMode)],
    client_ids: &mut HashSet<String>,
    errs: &mut Errors,
) -> CredentialConfig {
    check_api_refs(&c.acl, "acl", path, declared, errs);
    let client = client(
        c.client_id,
        c.client_secret_hash,
        c.grant_types,
        c.scopes,
        c.access_token_lifetime,
        path,
        client_ids,
        errs,
    );
    CredentialConfig { acl: c.acl, client }
}
