//! Validation of the gateway file (`tollgate.yaml`): listeners, process settings, keys,
//! caches, logging. Hands the upstreams file to `apis`.

mod listeners;
mod store;
mod tokens;

use super::AccessLog;
use super::errors::{Errors, Lenient, parse_yaml};
use super::file::AccessLogFile;
use super::file::{CacheFile, DurationText, GatewayFile, HeaderCaseFile, ServerFile};
use super::{
    CacheSettings, ClientCertSupport, Config, ConfigErrors, Family, IdentitySettings,
    LimitSettings, Listener, LogSettings, ServerSettings, SigningKeySource, SlowClientLimits,
    StoreSettings, TokenSettings, parse_duration, resolve_path, upstreams,
};
use listeners::{certificate_clients, listeners};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use store::store;
use tokens::tokens;

const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
const DEFAULT_METRICS: &str = "127.0.0.1:9090";
const DEFAULT_STATE_DIR: &str = "/var/lib/tollgate";

pub(super) fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text, upstreams::load),
        Err(e) => {
            let mut errs = Errors::new(path.display().to_string());
            errs.push("", format!("cannot read the file: {e}"));
            Err(ConfigErrors(errs.into_vec()))
        }
    }
}

/// Validate the text of the gateway file at `path`; `upstreams` loads the upstreams file
/// it names.
pub(super) fn parse(
    path: &Path,
    text: &str,
    upstreams: impl FnOnce(
        &Path,
        &IdentitySettings,
    ) -> Result<upstreams::Catalog, Vec<super::errors::ConfigError>>,
) -> Result<Config, ConfigErrors> {
    let mut errs = Errors::new(path.display().to_string());
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let file: GatewayFile = match parse_yaml(text, &mut errs) {
        Some(f) => f,
        None => return Err(ConfigErrors(errs.into_vec())),
    };
    let parts = validate(file, &base_dir, &mut errs);
    let mut all = errs.into_vec();

    let catalog = match &parts.upstreams_file {
        Some(p) => upstreams(p, &parts.identity).unwrap_or_else(|mut e| {
            all.append(&mut e);
            upstreams::Catalog::default()
        }),
        None => upstreams::Catalog::default(),
    };
    if let Some(p) = &parts.upstreams_file {
        all.extend(certificate_clients(
            &catalog,
            ClientCertSupport::of(&parts.listeners),
            p,
        ));
    }
    if !all.is_empty() {
        return Err(ConfigErrors(all));
    }
    let config = Config {
        listeners: parts.listeners,
        metrics_listen: parts.metrics_listen,
        forward_auth_listen: parts.forward_auth_listen,
        identity: parts.identity,
        issuer: parts.issuer,
        state_dir: parts.state_dir,
        server: parts.server,
        tokens: parts.tokens,
        validation_cache: parts.validation_cache,
        client_auth_cache: parts.client_auth_cache,
        log: parts.log,
        discovery_family: parts.discovery_family,
        mtls_endpoint_base: parts.mtls_endpoint_base,
        store: parts.store,
        limits: parts.limits,
        dpop: parts.dpop,
        admin: parts.admin,
        registration: parts.registration,
        apis: catalog.apis,
        products: catalog.products,
        policies: catalog.policies,
        credentials: catalog.credentials,
        user_pools: catalog.user_pools,
        issuers: catalog.issuers,
        tenants: catalog.tenants,
        upstreams_file: parts.upstreams_file,
        allow_empty: catalog.allow_empty,
    };
    if let Some(open) = &config.registration.open {
        let refs = super::ProvisionRefs::of(&config);
        let errs = super::admin::check_open_grant(&refs, open, &path.display().to_string());
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
    }
    Ok(config)
}

struct Parts {
    listeners: Vec<Listener>,
    metrics_listen: Option<SocketAddr>,
    forward_auth_listen: Option<SocketAddr>,
    identity: IdentitySettings,
    issuer: String,
    state_dir: PathBuf,
    upstreams_file: Option<PathBuf>,
    server: ServerSettings,
    tokens: TokenSettings,
    validation_cache: CacheSettings,
    client_auth_cache: CacheSettings,
    log: LogSettings,
    discovery_family: Family,
    mtls_endpoint_base: Option<String>,
    store: StoreSettings,
    limits: LimitSettings,
    dpop: super::DpopSettings,
    admin: Option<super::AdminSettings>,
    registration: super::RegistrationSettings,
}

fn take<T: Default, K>(section: Option<Lenient<T, K>>, path: &str, errs: &mut Errors) -> T {
    section.and_then(|s| s.take(path, errs)).unwrap_or_default()
}

fn validate(file: GatewayFile, base_dir: &Path, errs: &mut Errors) -> Parts {
    for key in file.unknown.keys() {
        errs.push(
            key,
            "unknown key (expected one of listen, metrics, issuer, upstreams_file, state_dir, server, tokens, validation_cache, client_auth_cache, log, discovery, store, limits, identity, forward_auth, dpop, admin, registration)",
        );
    }

    let listeners = listeners(file.listen, base_dir, errs);

    let metrics_listen = match file.metrics {
        None => parse_addr(DEFAULT_METRICS, "metrics.listen", errs),
        Some(m) => m
            .take("metrics", errs)
            .and_then(|m| parse_addr(&m.listen, "metrics.listen", errs)),
    };
    if let Some(m) = metrics_listen
        && listeners.iter().any(|l| l.addr == m)
    {
        errs.push("metrics.listen", format!("{m} is also a client listener"));
    }
    let forward_auth_listen = file
        .forward_auth
        .and_then(|f| f.take("forward_auth", errs))
        .and_then(|f| parse_addr(&f.listen, "forward_auth.listen", errs));
    if let Some(a) = forward_auth_listen
        && (listeners.iter().any(|l| l.addr == a) || metrics_listen == Some(a))
    {
        errs.push(
            "forward_auth.listen",
            format!("{a} is already a client or metrics listener: decisions get their own"),
        );
    }
    let identity = super::identity::gateway(take(file.identity, "identity", errs), errs);

    let issuer = match file.issuer.and_then(|i| i.take("issuer", errs)) {
        Some(i) => validate_issuer(&i, errs),
        None => default_issuer(&listeners),
    };

    let state_dir = match file.state_dir.and_then(|s| s.take("state_dir", errs)) {
        Some(s) if s.trim().is_empty() => {
            errs.push("state_dir", "must not be empty");
            PathBuf::new()
        }
        Some(s) => resolve_path(base_dir, &s),
        None => std::env::var_os("STATE_DIRECTORY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
    };

    let upstreams_file = file
        .upstreams_file
        .and_then(|u| u.take("upstreams_file", errs))
        .map(|u| resolve_path(base_dir, &u));

    let server = server(
        take(file.server, "server", errs),
        base_dir,
        &state_dir,
        errs,
    );
    let tokens = tokens(take(file.tokens, "tokens", errs), base_dir, errs);
    let validation_cache = cache(
        take(file.validation_cache, "validation_cache", errs),
        "validation_cache",
        CacheSettings {
            max_entries: 100_000,
            ttl: Duration::from_secs(300),
        },
        errs,
    );
    let client_auth_cache = cache(
        take(file.client_auth_cache, "client_auth_cache", errs),
        "client_auth_cache",
        CacheSettings {
            max_entries: 10_000,
            ttl: Duration::from_secs(300),
        },
        errs,
    );

    let log_file = take(file.log, "log", errs);
    let level = match log_file.level.as_deref().unwrap_or("info") {
        "off" => log::LevelFilter::Off,
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        other => {
            errs.push(
                "log.level",
                format!("`{other}` is not a level (off, error, warn, info, debug, trace)"),
            );
            log::LevelFilter::Info
        }
    };
    let access_log = match &log_file.access_log {
        None | Some(AccessLogFile::On(true)) => AccessLog::Text,
        Some(AccessLogFile::On(false)) => AccessLog::Off,
        Some(AccessLogFile::Format(f)) => match f.as_str() {
            "text" => AccessLog::Text,
            "json" => AccessLog::Json,
            "off" => AccessLog::Off,
            other => {
                errs.push(
                    "log.access_log",
                    format!("`{other}` is not an access log format (text, json, off)"),
                );
                AccessLog::Text
            }
        },
    };
    let log = LogSettings {
        level,
        access_log,
        request_id: log_file.request_id.unwrap_or(true),
        start_traces: log_file.start_traces.unwrap_or(false),
    };

    let discovery = take(file.discovery, "discovery", errs);
    let discovery_family = discovery.family.unwrap_or(Family::Credential);
    let mtls_endpoint_base = listeners::mtls_endpoint_base(
        discovery.mtls_endpoint_base,
        ClientCertSupport::of(&listeners),
        errs,
    );

    let store = store(
        take(file.store, "store", errs),
        base_dir,
        &state_dir,
        matches!(tokens.signing_key, SigningKeySource::Generated { .. }),
        errs,
    );

    let limits_file = take(file.limits, "limits", errs);
    let limits = LimitSettings {
        window: duration_or(
            limits_file
                .failed_auth_window
                .as_ref()
                .map(DurationText::as_str),
            "limits.failed_auth_window",
            Duration::from_secs(60),
            errs,
        ),
        per_account: limits_file.failed_auth_per_account.unwrap_or(10),
        per_ip: limits_file.failed_auth_per_ip.unwrap_or(100),
        hash_concurrency: limits_file.hash_concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
        }),
        hash_queue: limits_file.hash_queue.unwrap_or(64),
        hash_cpu_share: limits_file.hash_cpu_share.unwrap_or_else(|| {
            match std::thread::available_parallelism().map_or(1, |n| n.get()) {
                1 => 0.25,
                _ => 1.0,
            }
        }),
    };
    if !(0.05..=1.0).contains(&limits.hash_cpu_share) {
        errs.push("limits.hash_cpu_share", "must lie between 0.05 and 1");
    }
    if limits_file.hash_concurrency == Some(0) {
        errs.push("limits.hash_concurrency", "must be at least 1");
    }
    for (key, v) in [
        (
            "failed_auth_per_account",
            limits_file.failed_auth_per_account,
        ),
        ("failed_auth_per_ip", limits_file.failed_auth_per_ip),
    ] {
        if v == Some(0) {
            errs.push(format!("limits.{key}"), "must be at least 1");
        }
    }
    if limits.window < Duration::from_secs(1) {
        errs.push("limits.failed_auth_window", "must be at least 1s");
    }

    let dpop = super::dpop::settings(take(file.dpop, "dpop", errs), duration_or, errs);
    let admin = file
        .admin
        .and_then(|a| a.take("admin", errs))
        .and_then(|mut a| {
            let listen = parse_addr(&a.listen, "admin.listen", errs);
            if let Some(addr) = listen
                && (listeners.iter().any(|l| l.addr == addr)
                    || metrics_listen == Some(addr)
                    || forward_auth_listen == Some(addr))
            {
                errs.push(
                    "admin.listen",
                    format!("{addr} is already another listener: the admin API gets its own"),
                );
            }
            let tls = a
                .tls
                .take()
                .map(|t| listeners::tls_listener(t, "admin", base_dir, errs));
            super::admin::admin(a, listen, tls, &state_dir, base_dir, errs)
        });
    let registration = super::admin::registration(take(file.registration, "registration", errs));
    Parts {
        listeners,
        metrics_listen,
        forward_auth_listen,
        identity,
        issuer,
        state_dir,
        upstreams_file,
        server,
        tokens,
        validation_cache,
        client_auth_cache,
        log,
        discovery_family,
        mtls_endpoint_base,
        store,
        limits,
        dpop,
        admin,
        registration,
    }
}

fn parse_addr(text: &str, path: &str, errs: &mut Errors) -> Option<SocketAddr> {
    match text.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(
                path,
                format!("`{text}` is not an ip:port address (e.g. 0.0.0.0:8080)"),
            );
            None
        }
    }
}

fn validate_issuer(text: &str, errs: &mut Errors) -> String {
    let trimmed = text.trim().trim_end_matches('/');
    let ok = match trimmed.split_once("://") {
        Some(("https" | "http", rest)) => {
            !rest.is_empty() && !rest.starts_with('/') && !rest.contains(['?', '#', ' '])
        }
        _ => false,
    };
    if !ok {
        errs.push(
            "issuer",
            format!("`{text}` is not an http(s) URL without query or fragment (e.g. https://gateway.example.com)"),
        );
    }
    trimmed.to_string()
}

/// `http://<first plain listener>`, with a wildcard address shown as loopback.
fn default_issuer(listeners: &[Listener]) -> String {
    let pick = listeners
        .iter()
        .find(|l| l.tls.is_none())
        .or_else(|| listeners.first());
    match pick {
        Some(l) => {
            let scheme = if l.tls.is_some() { "https" } else { "http" };
            let ip = match l.addr.ip() {
                ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                ip => ip,
            };
            format!("{scheme}://{}", SocketAddr::new(ip, l.addr.port()))
        }
        None => "http://127.0.0.1:8080".to_string(),
    }
}

fn duration_or(value: Option<&str>, path: &str, default: Duration, errs: &mut Errors) -> Duration {
    match value {
        None => default,
        Some(v) => parse_duration(v).unwrap_or_else(|e| {
            errs.push(path, e);
            default
        }),
    }
}

fn server(s: ServerFile, base_dir: &Path, state_dir: &Path, errs: &mut Errors) -> ServerSettings {
    let threads = match s.threads {
        Some(0) => {
            errs.push("server.threads", "must be at least 1");
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let grace_period = s
        .grace_period
        .as_ref()
        .map(DurationText::as_str)
        .map(|v| duration_or(Some(v), "server.grace_period", Duration::ZERO, errs));
    let graceful_shutdown_timeout = s
        .graceful_shutdown_timeout
        .as_ref()
        .map(DurationText::as_str)
        .map(|v| {
            duration_or(
                Some(v),
                "server.graceful_shutdown_timeout",
                Duration::ZERO,
                errs,
            )
        });
    let upgrade_timeout = duration_or(
        s.upgrade_timeout.as_ref().map(DurationText::as_str),
        "server.upgrade_timeout",
        Duration::from_secs(30),
        errs,
    );
    if upgrade_timeout < Duration::from_secs(1) {
        errs.push("server.upgrade_timeout", "must be at least 1s");
    }
    let drain_time = duration_or(
        s.drain_time.as_ref().map(DurationText::as_str),
        "server.drain_time",
        Duration::from_secs(1),
        errs,
    );
    // Below these, ordinary clients (a browser's cookies, a JWT) would be refused.
    if s.max_request_headers.is_some_and(|n| n < 16) {
        errs.push("server.max_request_headers", "must be at least 16");
    }
    if s.max_request_header_bytes.is_some_and(|n| n < 16 * 1024) {
        errs.push("server.max_request_header_bytes", "must be at least 16384");
    }
    let slow_clients = SlowClientLimits {
        header: duration_or(
            s.client_header_timeout.as_ref().map(DurationText::as_str),
            "server.client_header_timeout",
            Duration::from_secs(20),
            errs,
        ),
        body: duration_or(
            s.client_body_timeout.as_ref().map(DurationText::as_str),
            "server.client_body_timeout",
            Duration::from_secs(20),
            errs,
        ),
        body_min_rate: s.client_body_min_rate.unwrap_or(500),
        keepalive: duration_or(
            s.keepalive_timeout.as_ref().map(DurationText::as_str),
            "server.keepalive_timeout",
            Duration::from_secs(75),
            errs,
        ),
    };
    for (key, d) in [
        ("server.client_header_timeout", slow_clients.header),
        ("server.client_body_timeout", slow_clients.body),
        ("server.keepalive_timeout", slow_clients.keepalive),
    ] {
        if d < Duration::from_secs(1) {
            errs.push(key, "must be at least 1s");
        }
    }
    // systemd's RuntimeDirectory= (e.g. /run/tollgate) when set, else the state directory.
    let runtime_dir = std::env::var_os("RUNTIME_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.to_path_buf());
    ServerSettings {
        threads,
        work_stealing: s.work_stealing.unwrap_or(true),
        pid_file: s
            .pid_file
            .map(|p| resolve_path(base_dir, &p))
            .unwrap_or_else(|| runtime_dir.join("tollgate.pid")),
        upgrade_sock: s
            .upgrade_sock
            .map(|p| resolve_path(base_dir, &p))
            .unwrap_or_else(|| runtime_dir.join("upgrade.sock")),
        upgrade_timeout,
        user: s.user,
        group: s.group,
        drain_time,
        max_request_headers: s.max_request_headers.unwrap_or(100),
        max_request_header_bytes: s.max_request_header_bytes.unwrap_or(60 * 1024),
        slow_clients,
        grace_period,
        graceful_shutdown_timeout,
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size.unwrap_or(128),
        lowercase_header_names: s.header_case == Some(HeaderCaseFile::Lowercase),
    }
}

fn cache(c: CacheFile, path: &str, default: CacheSettings, errs: &mut Errors) -> CacheSettings {
    if c.max_entries == Some(0) {
        errs.push(format!("{path}.max_entries"), "must be at least 1");
    }
    CacheSettings {
        max_entries: c.max_entries.unwrap_or(default.max_entries).max(1),
        ttl: duration_or(
            c.ttl.as_ref().map(DurationText::as_str),
            &format!("{path}.ttl"),
            default.ttl,
            errs,
        ),
    }
}
