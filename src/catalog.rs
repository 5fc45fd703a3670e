//! The catalog: everything the upstreams file defines, as the gateway runs it (routes and
//! upstream pools, clients and their API keys, tenants, external issuers, the discovery
//! document), read by every request lock-free and replaced whole on `SIGHUP`.
//!
//! [`Reloader`] is the background service that owns what runs beside a catalog: the
//! health checks of its pools, the key refresh of its external issuers, the pruning of its
//! rate limiters, and the reload itself.

pub mod discovery;
mod issuer_metrics;
pub mod registry;

pub use issuer_metrics::IssuerMetrics;

use crate::auth::identity::{ClaimPlan, SpoofGuard};
use crate::config::{self, Config, Declared};
use crate::idp::{ExternalIssuer, Issuers, IssuersError};
use crate::routes::{Api, RouteError, RouteTable};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use registry::Registry;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::AbortHandle;

/// Why a catalog cannot be built from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Issuers(#[from] IssuersError),
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] config::ConfigErrors),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Empties(String),
}

pub struct Catalog {
    pub routes: RouteTable,
    pub apis: Vec<Arc<Api>>,
    pub registry: Arc<Registry>,
    pub issuers: Arc<Issuers>,
    /// The RFC 8414 document (it lists the clients' grants and scopes).
    pub discovery: Bytes,
    /// The OpenID Connect Discovery document.
    pub oidc_discovery: Bytes,
    /// The claims any API's identity headers name.
    pub plan: Arc<ClaimPlan>,
    /// The headers no client may send upstream.
    pub guard: Arc<SpoofGuard>,
    /// What the upstreams file declared (a reload that empties it is refused).
    pub declared: Declared,
    /// What a provisioned credential is checked against.
    pub provision: config::ProvisionRefs,
    /// Dynamic client registration as configured.
    pub registration: config::RegistrationSettings,
}

/// The claim paths of every API's identity headers, in the order APIs name them.
fn claim_plan(config: &Config) -> ClaimPlan {
    let mut paths = Vec::new();
    for (_, p) in config.apis.iter().flat_map(|a| a.identity.claims.iter()) {
        if !paths.contains(p) {
            paths.push(p.clone());
        }
    }
    ClaimPlan::new(paths, &config.identity.separator)
}

impl Catalog {
    /// Build the catalog of `config`, keeping from `previous` what has not changed (the
    /// external issuers' fetched keys, the rate limiters' counts, the provisioned
    /// credentials).
    pub fn build(config: &Config, previous: Option<&Catalog>) -> Result<Self, CatalogError> {
        let plan = Arc::new(claim_plan(config));
        let guard = Arc::new(SpoofGuard::new(
            &config.identity,
            config.apis.iter().map(|a| &a.identity),
        ));
        let (routes, apis) = RouteTable::build(
            &config.apis,
            previous.map_or(&[][..], |p| &p.apis[..]),
            &plan,
            &guard,
            config.server.lowercase_header_names,
        )?;
        let overlay = previous
            .map(|p| p.registry.overlay().clone())
            .unwrap_or_default();
        let registry = Arc::new(Registry::with_overlay(config, overlay));
        let settings = config.issuers.iter().map(|i| i.settings.clone()).collect();
        let issuers = Arc::new(match previous {
            Some(p) => Issuers::rebuild(settings, &p.issuers)?,
            None => Issuers::new(settings)?,
        });
        Ok(Self {
            discovery: discovery::discovery_document(config, &registry),
            oidc_discovery: discovery::oidc_document(config, &registry),
            routes,
            apis,
            registry,
            issuers,
            plan,
            guard,
            declared: config.declared(),
            provision: config::ProvisionRefs::of(config),
            registration: config.registration.clone(),
        })
    }
}

/// The current catalog.
pub struct Live(ArcSwap<Catalog>);

impl Live {
    pub fn new(c: Catalog) -> Self {
        Self(ArcSwap::from_pointee(c))
    }

    pub fn load(&self) -> arc_swap::Guard<Arc<Catalog>> {
        self.0.load()
    }

    pub fn current(&self) -> Arc<Catalog> {
        self.0.load_full()
    }

    fn store(&self, c: Arc<Catalog>) {
        self.0.store(c);
    }
}

/// How often idle consumers are dropped from the rate limiters.
const LIMITER_PRUNE: Duration = Duration::from_secs(60);

pub struct Reloader {
    pub live: Arc<Live>,
    /// The gateway file the running configuration came from.
    pub config_path: PathBuf,
    /// The upstreams file it names, as running.
    pub upstreams_file: Option<PathBuf>,
}

/// Tasks that run beside one catalog.
#[derive(Default)]
struct Running {
    health: Vec<AbortHandle>,
    /// By issuer name: the issuer whose loop runs, and the loop.
    issuers: HashMap<String, (Arc<ExternalIssuer>, AbortHandle)>,
}

impl Running {
    /// Start what `catalog` needs and stop what it no longer does.
    fn follow(&mut self, catalog: &Catalog, shutdown: &ShutdownWatch) {
        for h in self.health.drain(..) {
            h.abort();
        }
        for api in &catalog.apis {
            if let Some(lb) = api.pool.health_checked_lb() {
                let shutdown = shutdown.clone();
                self.health
                    .push(tokio::spawn(async move { lb.run(shutdown, None).await }).abort_handle());
            }
        }
        let mut next = HashMap::new();
        for issuer in catalog.issuers.iter() {
            let name = issuer.name().to_string();
            match self.issuers.remove(&name) {
                Some((running, handle)) if Arc::ptr_eq(&running, issuer) => {
                    next.insert(name, (running, handle));
                }
                old => {
                    if let Some((_, handle)) = old {
                        handle.abort();
                    }
                    let i = issuer.clone();
                    let shutdown = shutdown.clone();
                    let handle = tokio::spawn(async move { i.run(shutdown).await }).abort_handle();
                    next.insert(name, (issuer.clone(), handle));
                }
            }
        }
        for (_, (_, handle)) in self.issuers.drain() {
            handle.abort();
        }
        self.issuers = next;
    }
}

impl Reloader {
    /// Load the configuration again and, when it is valid, run on its catalog. Only the
    /// upstreams file is reloaded; changes to the gateway file (listeners, store, keys)
    /// take effect on a restart or graceful upgrade, and are named in the log.
    fn reload(&self) -> Result<Arc<Catalog>, ReloadError> {
        let config = config::load(&self.config_path)?;
        if config.upstreams_file_path() != self.upstreams_file.as_deref() {
            log::warn!(
                "reload: upstreams_file changed in {}; the new path takes effect on a restart",
                self.config_path.display()
            );
        }
        let current = self.live.current();
        if let Some(why) = config.empties(current.declared) {
            return Err(ReloadError::Empties(why));
        }
        let next = Arc::new(Catalog::build(&config, Some(&current))?);
        self.live.store(next.clone());
        Ok(next)
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut running = Running::default();
        running.follow(&self.live.current(), &shutdown);
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("cannot handle SIGHUP, configuration reload is off: {e}");
                None
            }
        };
        let mut prune = tokio::time::interval(LIMITER_PRUNE);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match self.reload() {
                        Ok(catalog) => {
                            running.follow(&catalog, &shutdown);
                            log::info!(
                                "reloaded the upstreams file: {} APIs, {} external issuers",
                                catalog.apis.len(),
                                catalog.issuers.iter().count()
                            );
                        }
                        Err(e) => log::error!(
                            "reload refused, still running the previous configuration:\n{e}"
                        ),
                    }
                }
                _ = prune.tick() => {
                    for api in &self.live.load().apis {
                        for l in api.limit.iter().chain(api.rule_limits.iter().flatten()) {
                            l.forget_idle();
                        }
                    }
                }
            }
        }
        for h in running.health {
            h.abort();
        }
        for (_, (_, h)) in running.issuers {
            h.abort();
        }
    }
}
