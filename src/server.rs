//! Wiring: build the gateway from a validated config and run it as Pingora services
//! (the proxy with its listeners, the metrics listener, the health checks).

use crate::auth::cache::TokenCache;
use crate::auth::phantom::Phantoms;
use crate::auth::ratelimit::ConsumerKeys;
use crate::auth::revocations::{Revocations, StateSync};
use crate::auth::{Authenticator, Validator};
use crate::catalog::registry::Registry;
use crate::catalog::{Catalog, CatalogError, IssuerMetrics, Live, Reloader};
use crate::config::{Config, StoreBackend};
use crate::domain::clock::unix_now;
use crate::keys::ring::RingError;
use crate::keys::seal::{SealError, Sealer};
use crate::keys::{KeyError, KeyRing};
use crate::metrics::{ApiSeries, Metrics, MetricsApp, StoreMetrics};
use crate::proxy::forward_auth::ForwardAuth;
use crate::proxy::{Gatekeeper, Gateway};
use crate::store::instrumented::Instrumented;
use crate::store::redis::RedisStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::token::{SetupError, TokenService};
use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Command-line switches that reach Pingora, and the config file (reloaded on SIGHUP).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config_path: std::path::PathBuf,
    /// Take the listening sockets over from a running instance (graceful upgrade).
    pub upgrade: bool,
    /// Fork into the background.
    pub daemon: bool,
}

/// Why the gateway cannot start (or `tollgate -t` fails beyond the config itself).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("TLS certificate {} / key {}: {source}", cert.display(), key.display())]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        source: Box<pingora::Error>,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
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

/// Checks `tollgate -t` runs beyond the config itself: key files and TLS certificates load.
pub fn check(config: &Config) -> Result<(), StartError> {
    crate::keys::check_files(&config.tokens)?;
    for l in &config.listeners {
        if let Some(t) = &l.tls {
            tls_settings(t)?;
        }
    }
    Ok(())
}

fn tls_settings(t: &crate::config::TlsListener) -> Result<TlsSettings, StartError> {
    let mut settings =
        TlsSettings::intermediate(&t.cert.to_string_lossy(), &t.key.to_string_lossy()).map_err(
            |source| StartError::Tls {
                cert: t.cert.clone(),
                key: t.key.clone(),
                source,
            },
        )?;
    if t.http2 {
        settings.enable_h2();
    }
    Ok(settings)
}

fn server_conf(config: &Config, opts: &RunOptions) -> ServerConf {
    let s = &config.server;
    ServerConf {
        threads: s.threads,
        work_stealing: s.work_stealing,
        pid_file: s.pid_file.to_string_lossy().into_owned(),
        upgrade_sock: s.upgrade_sock.to_string_lossy().into_owned(),
        user: s.user.clone(),
        group: s.group.clone(),
        grace_period_seconds: s.grace_period.map(|d| d.as_secs()),
        graceful_shutdown_timeout_seconds: s.graceful_shutdown_timeout.map(|d| d.as_secs()),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        daemon: opts.daemon,
        // Pingora's parent/child readiness signal races (the parent can miss or die of the
        // child's SIGUSR1), so the parent returns right after forking, as nginx's does.
        daemon_wait_for_ready: false,
        ..ServerConf::default()
    }
}

/// Fail early, with a clear message, when a listen address cannot be bound (Pingora would
/// otherwise fail inside a service thread). Skipped on upgrade: the old process holds them.
fn check_bindable(config: &Config) -> Result<(), StartError> {
    let addrs = config
        .listeners
        .iter()
        .map(|l| l.addr)
        .chain(config.metrics_listen)
        .chain(config.forward_auth_listen);
    for addr in addrs {
        std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
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

/// Build every part of the gateway and run until a shutdown signal. Returns only on a
/// startup error.
pub fn run(config: Config, opts: RunOptions) -> Result<(), StartError> {
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
        .map_err(|source| StartError::Revocations { location, source })?;
    drop(startup);
    let catalog = Arc::new(Live::new(Catalog::build(&config, None)?));
    prometheus::default_registry().register(Box::new(IssuerMetrics::new(catalog.clone())?))?;
    let auth = Arc::new(Authenticator::new(
        Validator::new(keys.clone(), &config.issuer, config.tokens.leeway),
        TokenCache::new(config.validation_cache),
        store.clone(),
        revocations,
    ));
    let gate = Arc::new(Gatekeeper {
        catalog: catalog.clone(),
        auth: auth.clone(),
        consumers: ConsumerKeys::default(),
        metrics: metrics.clone(),
        phantoms: Phantoms::new(
            keys.clone(),
            &config.issuer,
            config.identity.phantom_lifetime,
        ),
    });
    let gateway = Gateway {
        tokens: TokenService::new(
            &config,
            keys,
            catalog.clone(),
            store,
            auth.clone(),
            metrics.clone(),
        )?,
        gate: gate.clone(),
        metrics,
        access_log: config.log.access_log,
        request_ids: config.log.request_id,
        start_traces: config.log.start_traces,
        token_service_series: ApiSeries::default(),
        unmatched_series: ApiSeries::default(),
    };
    if !opts.upgrade {
        check_bindable(&config)?;
    }

    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&config, &opts));
    // Bootstrap (taking the sockets over on upgrade) runs as a service, after
    // daemonizing; the listeners wait for it.
    let bootstrap = server.bootstrap_as_a_service();

    let mut proxy =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, gateway, "tollgate");
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
    server.add_service(background_service("tollgate state sync", state_sync));
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
    server.run_forever()
}
