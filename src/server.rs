//! Wiring: build the gateway from a validated config and run it as Pingora services
//! (the proxy with its listeners, the metrics listener, the health checks).

use self::connections::{ConnectionMetrics, Guarded};
use crate::auth::cache::TokenCache;
use crate::auth::phantom::Phantoms;
use crate::auth::ratelimit::ConsumerKeys;
use crate::auth::revocations::{Revocations, StateSync};
use crate::auth::{Authenticator, Validator};
use crate::catalog::registry::Registry;
use crate::catalog::{Catalog, CatalogError, IssuerMetrics, Live, Reloader};
use crate::config::{Config, StoreBackend};
use crate::control::Control;
use crate::domain::clock::unix_now;
use crate::keys::ring::RingError;
use crate::keys::seal::{SealError, Sealer};
use crate::keys::{KeyError, KeyRing};
use crate::metrics::{ApiSeries, CacheSizes, Metrics, MetricsApp, SizeReader, StoreMetrics};
use crate::provision::Provisioner;
use crate::provision::follow::Follower;
use crate::proxy::forward_auth::ForwardAuth;
use crate::proxy::{Gatekeeper, Gateway};
use crate::store::instrumented::Instrumented;
use crate::store::redis::RedisStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::token::{SetupError, TokenService};
use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod connections;
pub mod daemon;
mod handover;
pub mod listening;
pub mod tls;

/// Command-line switches that reach Pingora, and the config file (reloaded on SIGHUP).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config_path: std::path::PathBuf,
    /// Take the listening sockets over from a running instance (graceful upgrade).
    pub upgrade: bool,
}

/// Why the gateway cannot start (or `tollgate -t` fails beyond the config itself).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Randomness(#[from] crate::dpop::nonce::NoRandomness),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("state_dir {}: {problem}", path.display())]
    StateDirAccess { path: PathBuf, problem: String },
    #[error("server.user / server.group: {0}")]
    Privileges(String),
    #[error("cannot create state_dir {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the store {}: {source}", path.display())]
    StoreFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot reach the store at {location}: {source}")]
    Unreachable {
        location: String,
        source: StoreError,
    },
    #[error("cannot read revocations from {location}: {source}")]
    Revocations {
        location: String,
        source: StoreError,
    },
    #[error("cannot read provisioned credentials from {location}: {source}")]
    Provisioned {
        location: String,
        source: StoreError,
    },
    #[error(transparent)]
    Audit(#[from] crate::control::AuditError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("signing keys: {0}")]
    Ring(#[from] RingError),
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
    #[error("cannot handle {signal}: {source}")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    TokenService(#[from] SetupError),
}

/// Checks `tollgate -t` runs beyond the config itself, for what a start would fail on: key
/// files and TLS certificates load, the state directory (and the SQLite store file) can be
/// written, and every listen address can be bound, except those the running instance (the
/// pid file's) holds, which an upgrade takes over.
pub fn check(config: &Config) -> Result<(), StartError> {
    crate::keys::check_files(&config.tokens)?;
    for t in config
        .listeners
        .iter()
        .filter_map(|l| l.tls.as_ref())
        .chain(config.admin.as_ref().and_then(|a| a.tls.as_ref()))
    {
        tls_settings(t)?;
    }
    check_state_dir(config)?;
    let held = listening::held_by_running(&config.server.pid_file);
    check_bindable(config, &held)
}

/// The state directory exists and is writable, or its nearest existing parent is (it is
/// created at start); an existing store file is readable and writable.
fn check_state_dir(config: &Config) -> Result<(), StartError> {
    use nix::unistd::{AccessFlags, access};
    let problem = |problem: String| StartError::StateDirAccess {
        path: config.state_dir.clone(),
        problem,
    };
    let rwx = AccessFlags::R_OK | AccessFlags::W_OK | AccessFlags::X_OK;
    let existing = config.state_dir.ancestors().find(|p| p.exists());
    match existing {
        Some(dir) if dir == config.state_dir => {
            access(dir, rwx).map_err(|e| problem(format!("not writable: {e}")))?;
        }
        Some(parent) => access(parent, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
            problem(format!(
                "does not exist and cannot be created in {}: {e}",
                parent.display()
            ))
        })?,
        None => return Err(problem("no parent directory exists".into())),
    }
    if let StoreBackend::Sqlite { file, .. } = &config.store.backend
        && file.exists()
    {
        access(file.as_path(), AccessFlags::R_OK | AccessFlags::W_OK)
            .map_err(|e| problem(format!("store file {} not writable: {e}", file.display())))?;
    }
    Ok(())
}

fn tls_settings(t: &crate::config::TlsListener) -> Result<TlsSettings, StartError> {
    Ok(tls::settings(t)?)
}

fn server_conf(config: &Config) -> ServerConf {
    let s = &config.server;
    ServerConf {
        threads: s.threads,
        work_stealing: s.work_stealing,
        pid_file: s.pid_file.to_string_lossy().into_owned(),
        upgrade_sock: s.upgrade_sock.to_string_lossy().into_owned(),
        // A new process waits this long (one try a second) for the old one's sockets.
        upgrade_sock_connect_accept_max_retries: Some(
            usize::try_from(s.upgrade_timeout.as_secs()).unwrap_or(usize::MAX),
        ),
        grace_period_seconds: s.grace_period.map(|d| d.as_secs()),
        graceful_shutdown_timeout_seconds: s.graceful_shutdown_timeout.map(|d| d.as_secs()),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        // `tollgate -d` starts a child and waits for it to serve (server::daemon); user and
        // group are switched at start (drop_privileges).
        daemon: false,
        ..ServerConf::default()
    }
}

/// Every address the gateway listens on.
fn listen_addrs(config: &Config) -> Vec<SocketAddr> {
    config
        .listeners
        .iter()
        .map(|l| l.addr)
        .chain(config.metrics_listen)
        .chain(config.forward_auth_listen)
        .chain(config.admin.as_ref().map(|a| a.listen))
        .collect()
}

/// Fail early, with a clear message, when a listen address cannot be bound (Pingora would
/// otherwise fail inside a service thread); addresses in `held` (the running instance's,
/// handed over in an upgrade) are not tried. An address in use is tried again shortly, in
/// case another check bound it for an instant.
fn check_bindable(config: &Config, held: &HashSet<SocketAddr>) -> Result<(), StartError> {
    let mut failing = listening::unbindable(listen_addrs(config), held);
    if failing
        .iter()
        .any(|(_, e)| e.kind() == std::io::ErrorKind::AddrInUse)
    {
        std::thread::sleep(Duration::from_millis(100));
        failing = listening::unbindable(failing.into_iter().map(|(a, _)| a), held);
    }
    match failing.into_iter().next() {
        Some((addr, source)) => Err(StartError::Bind { addr, source }),
        None => Ok(()),
    }
}

/// Switch to `server.user` / `server.group` (both optional) before anything is created or
/// bound, so the state the process writes is the user's. Needs starting as root.
fn drop_privileges(user: Option<&str>, group: Option<&str>) -> Result<(), StartError> {
    use nix::unistd::{Group, Uid, User, initgroups, setgid, setgroups, setuid};
    if user.is_none() && group.is_none() {
        return Ok(());
    }
    let fail = |what: String| StartError::Privileges(what);
    if !Uid::effective().is_root() {
        return Err(fail(
            "switching user needs tollgate to start as root".into(),
        ));
    }
    let user = match user {
        None => None,
        Some(name) => Some(
            User::from_name(name)
                .map_err(|e| fail(format!("cannot look up user {name}: {e}")))?
                .ok_or_else(|| fail(format!("no user {name}")))?,
        ),
    };
    let gid = match (group, &user) {
        (Some(name), _) => {
            Group::from_name(name)
                .map_err(|e| fail(format!("cannot look up group {name}: {e}")))?
                .ok_or_else(|| fail(format!("no group {name}")))?
                .gid
        }
        (None, Some(u)) => u.gid,
        (None, None) => return Ok(()),
    };
    match &user {
        Some(u) => {
            let name = std::ffi::CString::new(u.name.as_str())
                .map_err(|_| fail("the user name holds a NUL".into()))?;
            initgroups(&name, gid).map_err(|e| fail(format!("initgroups: {e}")))?;
        }
        None => setgroups(&[gid]).map_err(|e| fail(format!("setgroups: {e}")))?,
    }
    setgid(gid).map_err(|e| fail(format!("setgid: {e}")))?;
    if let Some(u) = user {
        setuid(u.uid).map_err(|e| fail(format!("setuid: {e}")))?;
    }
    Ok(())
}

fn create_state_dir(config: &Config) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.state_dir)
        .map_err(|source| StartError::StateDir {
            path: config.state_dir.clone(),
            source,
        })
}

/// The configured store with its metrics: the embedded SQLite file (created private: it
/// may hold the generated signing key), or the cluster's Redis.
pub fn open_store(config: &Config, metrics: StoreMetrics) -> Result<Arc<dyn Store>, StartError> {
    match &config.store.backend {
        StoreBackend::Sqlite { file, sync } => {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(file)
                .map_err(|source| StartError::StoreFile {
                    path: file.clone(),
                    source,
                })?;
            let store = SqliteStore::open(file, *sync)?;
            Ok(Arc::new(Instrumented::new(store, metrics)))
        }
        StoreBackend::Redis(r) => {
            let store = RedisStore::open(r)?;
            Ok(Arc::new(Instrumented::new(store, metrics)))
        }
    }
}

/// Where the store is, for messages (never with a password).
pub fn store_location(config: &Config) -> String {
    match &config.store.backend {
        StoreBackend::Sqlite { file, .. } => file.display().to_string(),
        StoreBackend::Redis(r) => r.url_for_logs.clone(),
    }
}

/// The sealer for generated keys at rest.
pub fn sealer(config: &Config) -> Result<Sealer, SealError> {
    Sealer::new(config.store.key_encryption.as_ref().map(|k| k.expose()))
}

/// Build every part of the gateway and run until it has shut down.
///
/// Everything that can fail is done before a listening socket is taken: in an upgrade, a
/// new process that cannot start leaves the old one serving.
pub fn run(config: Config, opts: RunOptions) -> Result<(), StartError> {
    drop_privileges(
        config.server.user.as_deref(),
        config.server.group.as_deref(),
    )?;
    create_state_dir(&config)?;
    let metrics = Arc::new(Metrics::new(prometheus::default_registry())?);
    let store = open_store(&config, metrics.store.clone())?;
    let revocations = Arc::new(Revocations::default());
    let registry = Arc::new(Registry::from_config(&config));
    // Startup work that needs the store, done before anything is served.
    let startup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    // A file-size limit (RLIMIT_FSIZE) must make store writes fail, not kill the process:
    // handling SIGXFSZ (the handler stays installed, and is inherited by a daemon) turns it
    // into an error the token endpoints answer with 503.
    let xfsz = startup
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ))
        })
        .map_err(|source| StartError::Signal {
            signal: "SIGXFSZ",
            source,
        })?;
    // Tokio leaves the handler installed when the stream goes. SIGHUP too: it must reload,
    // never kill the process (its default), even before the reloader listens.
    drop(xfsz);
    let hup = startup
        .block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) })
        .map_err(|source| StartError::Signal {
            signal: "SIGHUP",
            source,
        })?;
    drop(hup);
    let location = store_location(&config);
    startup
        .block_on(store.ping())
        .map_err(|source| StartError::Unreachable {
            location: location.clone(),
            source,
        })?;
    let keys = Arc::new(startup.block_on(KeyRing::open(
        &*store,
        &config.tokens,
        sealer(&config)?,
        unix_now(),
    ))?);
    let state_sync = StateSync {
        store: store.clone(),
        revocations: revocations.clone(),
        keys: keys.clone(),
        max_token_lifetime: registry.longest_token_lifetime(),
        purge_interval: config.store.purge_interval,
        maintenance_interval: Duration::from_secs(2),
        cursor: Default::default(),
    };
    startup
        .block_on(state_sync.catch_up())
        .map_err(|source| StartError::Revocations {
            location: location.clone(),
            source,
        })?;
    let catalog = Arc::new(Live::new(Catalog::build(&config, None)?));
    // Provisioned credentials are served from the first request: read before listening.
    let provisioner = Arc::new(Provisioner::new(
        store.clone(),
        catalog.clone(),
        config.tokens.leeway,
    ));
    let provisioned = startup
        .block_on(provisioner.catch_up())
        .map_err(|source| StartError::Provisioned { location, source })?;
    if provisioned > 0 {
        log::info!("{provisioned} provisioned credential(s) from the store");
    }
    drop(startup);
    prometheus::default_registry().register(Box::new(IssuerMetrics::new(catalog.clone())?))?;
    let auth = Arc::new(Authenticator::new(
        Validator::new(keys.clone(), &config.issuer, config.tokens.leeway),
        TokenCache::new(config.validation_cache),
        store.clone(),
        revocations.clone(),
    ));
    let dpop = Arc::new(crate::dpop::Dpop::new(
        config.dpop.clone(),
        config.tokens.leeway,
        &config.issuer,
        config.store.key_encryption.as_ref().map(|k| k.expose()),
        store.clone(),
        metrics.dpop_proofs.clone(),
    )?);
    let gate = Arc::new(Gatekeeper {
        catalog: catalog.clone(),
        auth: auth.clone(),
        consumers: ConsumerKeys::default(),
        metrics: metrics.clone(),
        dpop: dpop.clone(),
        phantoms: Phantoms::new(
            keys.clone(),
            &config.issuer,
            config.identity.phantom_lifetime,
        ),
    });
    let mut cache_readers: Vec<(&'static str, SizeReader)> = vec![
        ("dpop_replay", {
            let dpop = dpop.clone();
            Box::new(move || dpop.remembered() as u64)
        }),
        ("validation", {
            let auth = auth.clone();
            Box::new(move || auth.cached_tokens())
        }),
        ("revocations", {
            let revocations = revocations.clone();
            Box::new(move || revocations.len() as u64)
        }),
    ];
    let gateway = Gateway {
        tokens: TokenService::new(
            &config,
            keys,
            provisioner.clone(),
            auth.clone(),
            metrics.clone(),
            dpop,
        )?,
        gate: gate.clone(),
        metrics,
        access_log: config.log.access_log,
        request_ids: config.log.request_id,
        header_limits: crate::proxy::HeaderLimits {
            count: config.server.max_request_headers,
            bytes: config.server.max_request_header_bytes,
        },
        start_traces: config.log.start_traces,
        token_service_series: ApiSeries::default(),
        unmatched_series: ApiSeries::default(),
    };
    cache_readers.push(("secrets", Box::new(gateway.tokens.secret_cache_size())));
    cache_readers.push(("provisioned", {
        let catalog = catalog.clone();
        Box::new(move || catalog.load().registry.overlay().len() as u64)
    }));
    prometheus::default_registry().register(Box::new(CacheSizes::new(cache_readers)?))?;
    // In an upgrade the old process (the pid file's) hands its addresses over; any other
    // address must be free now, or the old one would be told to go for nothing.
    let held = if opts.upgrade {
        listening::held_by_running(&config.server.pid_file)
    } else {
        HashSet::new()
    };
    check_bindable(&config, &held)?;

    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&config));
    // Bootstrap (taking the sockets over on upgrade) runs as a service, after
    // daemonizing; the listeners wait for it.
    let bootstrap = server.bootstrap_as_a_service();

    let mut app = pingora::proxy::http_proxy(&server.configuration, gateway);
    let h2c = config.listeners.iter().any(|l| l.h2c);
    if h2c || config.server.lowercase_header_names {
        // h2c: plain connections that open with the HTTP/2 preface are served as h2c;
        // others stay HTTP/1.1. (Non-exhaustive in Pingora: built from its default.)
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h2c = h2c;
        options.h1_lowercase_header_names = config.server.lowercase_header_names;
        app.server_options = Some(options);
    }
    let guarded = Guarded::new(
        app,
        &config.listeners,
        config.server.slow_clients,
        &ConnectionMetrics::new(prometheus::default_registry())?,
    );
    let mut proxy = Service::new("tollgate".into(), guarded);
    for l in &config.listeners {
        let addr = l.addr.to_string();
        match &l.tls {
            None => proxy.add_tcp(&addr),
            Some(t) => proxy.add_tls_with_settings(&addr, None, tls_settings(t)?),
        }
    }
    server.add_service(proxy).add_dependency(&bootstrap);

    if let Some(addr) = config.metrics_listen {
        let mut metrics_service =
            Service::new("tollgate metrics".into(), HttpServer::new_app(MetricsApp));
        metrics_service.threads = Some(1);
        metrics_service.add_tcp(&addr.to_string());
        server
            .add_service(metrics_service)
            .add_dependency(&bootstrap);
    }
    if let Some(addr) = config.forward_auth_listen {
        let mut decisions = Service::new(
            "tollgate forward-auth".into(),
            HttpServer::new_app(ForwardAuth { gate }),
        );
        decisions.add_tcp(&addr.to_string());
        server.add_service(decisions).add_dependency(&bootstrap);
    }
    server.add_service(background_service(
        "tollgate catalog",
        Reloader {
            live: catalog,
            config_path: opts.config_path.clone(),
            upstreams_file: config.upstreams_file.clone(),
        },
    ));
    if let Some(admin) = &config.admin {
        let control = Control::new(admin, provisioner.clone(), &config.limits, &config.issuer)?;
        let mut service = Service::new("tollgate admin".into(), HttpServer::new_app(control));
        service.threads = Some(1);
        let addr = admin.listen.to_string();
        match &admin.tls {
            None => service.add_tcp(&addr),
            Some(t) => service.add_tls_with_settings(&addr, None, tls_settings(t)?),
        }
        server.add_service(service).add_dependency(&bootstrap);
    }
    server.add_service(background_service(
        "tollgate provisioning",
        Follower { provisioner },
    ));
    server.add_service(background_service("tollgate state sync", state_sync));
    server.add_service(background_service(
        "tollgate ready",
        handover::Ready {
            addrs: listen_addrs(&config),
            pid_file: config.server.pid_file.clone(),
            timeout: config.server.upgrade_timeout,
        },
    ));
    log::info!(
        "tollgate listening on {}; issuer {}",
        config
            .listeners
            .iter()
            .map(|l| format!("{}{}", l.addr, if l.tls.is_some() { " (tls)" } else { "" }))
            .collect::<Vec<_>>()
            .join(", "),
        config.issuer
    );
    let handover = handover::Handover {
        listeners: listen_addrs(&config)
            .into_iter()
            .map(|a| (a, a.to_string()))
            .collect(),
        upgrade_sock: config.server.upgrade_sock.clone(),
        pid_file: config.server.pid_file.clone(),
        timeout: config.server.upgrade_timeout,
        drain_time: config.server.drain_time,
    };
    server.run(RunArgs {
        shutdown_signal: Box::new(handover),
    });
    Ok(())
}
