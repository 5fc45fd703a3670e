//! The API route table: longest path prefix (on `/` boundaries), host-specific routes
//! before host-less ones. A lookup costs one hash probe per path segment, whatever the
//! number of routes.

use crate::auth::identity::{ClaimPlan, SpoofGuard};
use crate::auth::ratelimit::Limiter;
use crate::config::{ApiConfig, AuthMode, CredentialMode, IdentityConfig, IssuerRef};
use crate::domain::scope::Rule;
use crate::metrics::ApiSeries;
use crate::upstream::{Pool, PoolError};
use std::collections::HashMap;
use std::sync::Arc;

/// One proxied API, as the request path needs it.
pub struct Api {
    pub name: Box<str>,
    pub prefix: Box<str>,
    pub strip_prefix: bool,
    pub auth: AuthMode,
    /// Whether the gateway's own tokens open it.
    pub own_tokens: bool,
    /// The external issuers whose tokens open it, by name.
    pub issuers: Box<[Box<str>]>,
    pub api_key_header: http::HeaderName,
    pub audience: Box<str>,
    pub rules: Box<[Rule]>,
    /// Only DPoP-bound tokens pass (`dpop: required`).
    pub dpop_required: bool,
    /// Each rule's own `auth`, when one of them has one (else empty: the API's applies).
    pub rule_auth: Box<[Option<AuthMode>]>,
    /// What its upstream receives about the caller.
    pub identity: ApiIdentity,
    /// The headers no client may send upstream (the catalog's).
    pub guard: Arc<SpoofGuard>,
    /// Per consumer: the API's limit, and each rule's.
    pub limit: Option<Arc<Limiter>>,
    pub rule_limits: Box<[Option<Arc<Limiter>>]>,
    pub pool: Pool,
    /// Its request metrics, resolved once.
    pub series: ApiSeries,
}

/// What an API's upstream receives, ready for the request path.
pub struct ApiIdentity {
    /// The identity headers it sends, in a fixed order, each with what it carries.
    pub headers: Box<[IdentityHeader]>,
    pub credential: CredentialMode,
}

/// What an identity header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Subject,
    ClientId,
    Scope,
    Method,
    Issuer,
    Credential,
    /// The claim at this position of the catalog's plan.
    Claim(usize),
}

/// One identity header: its name, as parsed and as written on the wire (made once: the
/// request path does not title-case or copy it per request), and what it carries.
pub struct IdentityHeader {
    pub name: http::HeaderName,
    pub wire: bytes::Bytes,
    pub field: Field,
}

impl ApiIdentity {
    fn new(c: &IdentityConfig, plan: &ClaimPlan) -> Self {
        let h = &c.headers;
        let fields = [
            (&h.subject, Field::Subject),
            (&h.client_id, Field::ClientId),
            (&h.scope, Field::Scope),
            (&h.method, Field::Method),
            (&h.issuer, Field::Issuer),
            (&h.credential, Field::Credential),
        ]
        .into_iter()
        .filter_map(|(name, field)| Some((name.clone()?, field)));
        let claims = c
            .claims
            .iter()
            .filter_map(|(name, path)| Some((name.clone(), Field::Claim(plan.index_of(path)?))));
        Self {
            headers: fields
                .chain(claims)
                .map(|(name, field)| IdentityHeader {
                    wire: bytes::Bytes::copy_from_slice(name.as_str().as_bytes()),
                    name,
                    field,
                })
                .collect(),
            credential: c.credential,
        }
    }
}

impl Api {
    /// How an operation authenticates: the `auth` of the first rule that covers it and
    /// says one, else the API's.
    pub fn auth_for(&self, method: &http::Method, path: &str) -> AuthMode {
        if self.rule_auth.is_empty() {
            return self.auth;
        }
        self.rules
            .iter()
            .zip(self.rule_auth.iter())
            .find(|(r, _)| r.applies_to(method, path))
            .and_then(|(_, a)| *a)
            .unwrap_or(self.auth)
    }

    /// Whether a limit of the API or of one of its rules counts requests per consumer.
    pub fn rate_limited(&self) -> bool {
        self.limit.is_some() || self.rule_limits.iter().any(Option::is_some)
    }

    /// The path to send upstream: the prefix removed when the API says so.
    pub fn upstream_path<'a>(&self, path: &'a str) -> &'a str {
        if !self.strip_prefix || &*self.prefix == "/" {
            return path;
        }
        match path.get(self.prefix.len()..) {
            Some("") | None => "/",
            Some(rest) => rest,
        }
    }
}

#[derive(Default)]
struct Candidates {
    any_host: Option<Arc<Api>>,
    by_host: Vec<(Box<str>, Arc<Api>)>,
}

impl Candidates {
    fn pick(&self, host: Option<&str>) -> Option<&Arc<Api>> {
        host.and_then(|h| {
            self.by_host
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(h))
                .map(|(_, api)| api)
        })
        .or(self.any_host.as_ref())
    }
}

/// Keyed by prefix. foldhash rather than std's SipHash: a lookup hashes one prefix of the
/// request path per segment, on every request; the keys come from the config, and
/// foldhash's per-process random seed still keeps their buckets unpredictable.
#[derive(Default)]
pub struct RouteTable {
    by_prefix: HashMap<Box<str>, Candidates, foldhash::fast::RandomState>,
}

/// Why an API's route cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("API `{api}`: {source}")]
pub struct RouteError {
    pub api: String,
    pub source: PoolError,
}

impl RouteTable {
    /// Build the table and each API's upstream pool. Rate limiters of `previous` APIs with
    /// the same name and limit are kept (their counts go on across a reload).
    pub fn build(
        apis: &[ApiConfig],
        previous: &[Arc<Api>],
        plan: &ClaimPlan,
        guard: &Arc<SpoofGuard>,
        lowercase_header_names: bool,
    ) -> Result<(Self, Vec<Arc<Api>>), RouteError> {
        let mut table = RouteTable::default();
        let mut all = Vec::with_capacity(apis.len());
        for (id, cfg) in (1u64..).zip(apis) {
            let pool = Pool::new(&cfg.upstream, id, lowercase_header_names).map_err(|source| {
                RouteError {
                    api: cfg.name.clone(),
                    source,
                }
            })?;
            let before = previous.iter().find(|a| *a.name == *cfg.name);
            let reuse = |old: Option<&Option<Arc<Limiter>>>,
                         limit: &Option<crate::config::RateLimit>| {
                limit.map(|l| match old {
                    Some(Some(o)) if o.limit() == l => o.clone(),
                    _ => Arc::new(Limiter::new(l)),
                })
            };
            let limit = reuse(before.map(|b| &b.limit), &cfg.rate_limit);
            let rule_limits = cfg
                .rule_limits
                .iter()
                .enumerate()
                .map(|(i, l)| reuse(before.and_then(|b| b.rule_limits.get(i)), l))
                .collect();
            let api = Arc::new(Api {
                name: cfg.name.as_str().into(),
                prefix: cfg.prefix.as_str().into(),
                strip_prefix: cfg.strip_prefix,
                auth: cfg.auth,
                own_tokens: cfg.issuers.contains(&IssuerRef::Tollgate),
                issuers: cfg
                    .issuers
                    .iter()
                    .filter_map(|i| match i {
                        IssuerRef::External(n) => Some(n.as_str().into()),
                        IssuerRef::Tollgate => None,
                    })
                    .collect(),
                api_key_header: cfg.api_key_header.clone(),
                audience: cfg.audience.as_str().into(),
                rules: cfg.rules.clone().into(),
                dpop_required: cfg.dpop_required,
                rule_auth: if cfg.rule_auth.iter().any(Option::is_some) {
                    cfg.rule_auth.clone().into()
                } else {
                    Box::default()
                },
                identity: ApiIdentity::new(&cfg.identity, plan),
                guard: guard.clone(),
                limit,
                rule_limits,
                pool,
                series: ApiSeries::default(),
            });
            let entry = table
                .by_prefix
                .entry(cfg.prefix.as_str().into())
                .or_default();
            match &cfg.host {
                Some(h) => entry.by_host.push((h.as_str().into(), api.clone())),
                None => entry.any_host = Some(api.clone()),
            }
            all.push(api);
        }
        Ok((table, all))
    }

    #[cfg(test)]
    fn build_fresh(apis: &[ApiConfig]) -> Result<(Self, Vec<Arc<Api>>), RouteError> {
        Self::build(apis, &[], &ClaimPlan::none(), &Arc::default(), false)
    }

    /// The API for a request to `host` (no port) and a normalized `path` (no query).
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<&Arc<Api>> {
        let mut end = path.len();
        loop {
            let candidate = if end == 0 { "/" } else { &path[..end] };
            if let Some(api) = self.by_prefix.get(candidate).and_then(|c| c.pick(host)) {
                return Some(api);
            }
            if end <= 1 {
                return None;
            }
            end = match path[..end].rfind('/') {
                Some(0) => 1,
                Some(i) => i,
                None => return None,
            };
        }
    }
}

/// The host part of a `Host` header or URI authority: port removed, IPv6 brackets kept.
pub fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(i) => &authority[..=i],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostHeader, UpstreamConfig, UpstreamServer};
    use std::time::Duration;

    fn api(name: &str, prefix: &str, host: Option<&str>, strip: bool) -> ApiConfig {
        ApiConfig {
            name: name.into(),
            prefix: prefix.into(),
            host: host.map(Into::into),
            strip_prefix: strip,
            upstream: UpstreamConfig {
                servers: vec![UpstreamServer {
                    addr: "127.0.0.1:1".parse().unwrap(),
                    authority: "127.0.0.1:1".into(),
                }],
                tls: None,
                host_header: HostHeader::Pass,
                connect_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
                write_timeout: Duration::from_secs(1),
                health_check: None,
                retries: 0,
                protocol: Default::default(),
            },
            auth: AuthMode::NONE,
            issuers: vec![IssuerRef::Tollgate],
            api_key_header: http::HeaderName::from_static("x-api-key"),
            audience: name.into(),
            rules: vec![],
            dpop_required: false,
            rule_auth: vec![],
            identity: crate::config::IdentitySettings::default().defaults,
            rule_limits: vec![],
            rate_limit: None,
            scopes: vec![],
        }
    }

    fn name<'a>(t: &'a RouteTable, host: Option<&str>, path: &str) -> Option<&'a str> {
        t.lookup(host, path).map(|a| &*a.name)
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let (t, _) = RouteTable::build_fresh(&[
            api("root", "/", None, false),
            api("orders", "/orders", None, false),
            api("items", "/orders/items", None, false),
        ])
        .unwrap();
        assert_eq!(name(&t, None, "/orders"), Some("orders"));
        assert_eq!(name(&t, None, "/orders/"), Some("orders"));
        assert_eq!(name(&t, None, "/orders/1"), Some("orders"));
        assert_eq!(name(&t, None, "/orders/items/3"), Some("items"));
        assert_eq!(name(&t, None, "/ordersX"), Some("root"));
        assert_eq!(name(&t, None, "/"), Some("root"));
    }

    #[test]
    fn unknown_paths_have_no_route() {
        let (t, _) = RouteTable::build_fresh(&[api("orders", "/orders", None, false)]).unwrap();
        assert_eq!(name(&t, None, "/"), None);
        assert_eq!(name(&t, None, "/order"), None);
        assert_eq!(name(&t, None, "/other/orders"), None);
    }

    #[test]
    fn host_routes_win_over_hostless() {
        let (t, _) = RouteTable::build_fresh(&[
            api("any", "/v1", None, false),
            api("a", "/v1", Some("a.example"), false),
        ])
        .unwrap();
        assert_eq!(name(&t, Some("A.Example"), "/v1/x"), Some("a"));
        assert_eq!(name(&t, Some("b.example"), "/v1/x"), Some("any"));
        assert_eq!(name(&t, None, "/v1/x"), Some("any"));
    }

    #[test]
    fn prefix_stripping() {
        let (_, apis) =
            RouteTable::build_fresh(&[api("o", "/orders", None, true), api("r", "/", None, true)])
                .unwrap();
        assert_eq!(apis[0].upstream_path("/orders"), "/");
        assert_eq!(apis[0].upstream_path("/orders/1"), "/1");
        assert_eq!(apis[1].upstream_path("/x"), "/x");
    }

    #[test]
    fn ports_are_removed_from_hosts() {
        assert_eq!(host_without_port("a.example:8080"), "a.example");
        assert_eq!(host_without_port("a.example"), "a.example");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
    }
}
