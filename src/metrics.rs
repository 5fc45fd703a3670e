//! Prometheus metrics: the registry's handles, their bounded label values, and the
//! `/metrics` app served on its own listener.

use crate::domain::outcome::Outcome;
use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora_prometheus::PrometheusHttpApp;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::sync::OnceLock;
use std::time::Duration;

/// `api` label of requests the token service answers.
pub const TOKEN_SERVICE: &str = "(token_service)";
/// `api` label of requests no API matched.
pub const UNMATCHED: &str = "(unmatched)";

const DURATION_BUCKETS: &[f64] = &[
    0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The store operations, as the `op` metric label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Ping,
    Insert,
    Get,
    Rotate,
    Revoke,
    Feed,
    Purge,
    KeySet,
    Ephemeral,
    /// Provisioned records: writes and lookups.
    Record,
    /// The provisioned records' feed (blocks while it waits: errors only, no duration).
    RecordFeed,
}

impl StoreOp {
    pub const ALL: [StoreOp; 11] = [
        StoreOp::Ping,
        StoreOp::Insert,
        StoreOp::Get,
        StoreOp::Rotate,
        StoreOp::Revoke,
        StoreOp::Feed,
        StoreOp::Purge,
        StoreOp::KeySet,
        StoreOp::Ephemeral,
        StoreOp::Record,
        StoreOp::RecordFeed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            StoreOp::Ping => "ping",
            StoreOp::Insert => "insert",
            StoreOp::Get => "get",
            StoreOp::Rotate => "rotate",
            StoreOp::Revoke => "revoke",
            StoreOp::Feed => "feed",
            StoreOp::Purge => "purge",
            StoreOp::KeySet => "key_set",
            StoreOp::Ephemeral => "ephemeral",
            StoreOp::Record => "record",
            StoreOp::RecordFeed => "record_feed",
        }
    }
}

/// Every metric tollgate exports.
pub struct Metrics {
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub validations: IntCounterVec,
    /// `validations` resolved once per outcome, indexed by `Outcome as usize`.
    by_outcome: Vec<IntCounter>,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub tokens_issued: IntCounterVec,
    pub token_errors: IntCounterVec,
    pub auth_throttled: IntCounterVec,
    pub rate_limited: IntCounterVec,
    /// argon2 runs: client secrets and user passwords the cache could not answer.
    pub secret_verifications: IntCounter,
    /// DPoP proofs checked, by where (`token`, `api`) and result.
    pub dpop_proofs: IntCounterVec,
    pub store: StoreMetrics,
}

/// The store's metrics, each operation's series resolved once.
#[derive(Clone)]
pub struct StoreMetrics {
    /// 1 while the store answers, 0 from its first failure until it answers again.
    pub up: IntGauge,
    durations: Vec<Histogram>,
    errors: Vec<IntCounter>,
}

impl StoreMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let up = IntGauge::new(
            "tollgate_store_up",
            "1 while the token store answers, 0 while it fails.",
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_store_operation_duration_seconds",
                "Time of token store operations, by operation.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["op"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "tollgate_store_errors_total",
                "Token store operations that failed (unreachable, timed out, refused), by operation.",
            ),
            &["op"],
        )?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(Self {
            up,
            durations: StoreOp::ALL
                .iter()
                .map(|op| durations.with_label_values(&[op.label()]))
                .collect(),
            errors: StoreOp::ALL
                .iter()
                .map(|op| errors.with_label_values(&[op.label()]))
                .collect(),
        })
    }

    /// A set of store metrics registered nowhere (tests, command-line tools).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        Self::new(&Registry::new())
    }

    pub fn duration(&self, op: StoreOp) -> &Histogram {
        &self.durations[op as usize]
    }

    pub fn errors(&self, op: StoreOp) -> &IntCounter {
        &self.errors[op as usize]
    }
}

impl Metrics {
    /// Create the metrics and register them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let validations = IntCounterVec::new(
            Opts::new(
                "tollgate_token_validations_total",
                "Access-token checks by outcome.",
            ),
            &["outcome"],
        )?;
        // Every outcome exported from the start, so rates work from the first scrape.
        let by_outcome = Outcome::ALL
            .iter()
            .map(|o| validations.with_label_values(&[o.label()]))
            .collect();
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "tollgate_requests_total",
                    "Requests by API, method and status class.",
                ),
                &["api", "method", "status"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "tollgate_request_duration_seconds",
                    "Time from request start to the end of the response, by API.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["api"],
            )?,
            upstream_duration: HistogramVec::new(
                HistogramOpts::new(
                    "tollgate_upstream_duration_seconds",
                    "Time from sending a request upstream to its response header, by API.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["api"],
            )?,
            validations,
            by_outcome,
            cache_hits: IntCounter::new(
                "tollgate_validation_cache_hits_total",
                "Token checks answered by the validation cache.",
            )?,
            cache_misses: IntCounter::new(
                "tollgate_validation_cache_misses_total",
                "Token checks that had to verify the signature.",
            )?,
            tokens_issued: IntCounterVec::new(
                Opts::new(
                    "tollgate_tokens_issued_total",
                    "Tokens issued by endpoint and grant.",
                ),
                &["endpoint", "grant"],
            )?,
            dpop_proofs: IntCounterVec::new(
                Opts::new(
                    "tollgate_dpop_proofs_total",
                    "DPoP proofs checked, by where (token endpoint or API) and result (ok, invalid, nonce, replayed, unavailable).",
                ),
                &["at", "result"],
            )?,
            token_errors: IntCounterVec::new(
                Opts::new(
                    "tollgate_token_endpoint_errors_total",
                    "Token-endpoint error responses by endpoint and RFC 6749 error code.",
                ),
                &["endpoint", "error"],
            )?,
            auth_throttled: IntCounterVec::new(
                Opts::new(
                    "tollgate_auth_throttled_total",
                    "Authentication attempts refused by a brute-force limit, by subject (client, user, ip).",
                ),
                &["subject"],
            )?,
            rate_limited: IntCounterVec::new(
                Opts::new(
                    "tollgate_rate_limited_total",
                    "Requests refused (429) by a per-consumer rate limit, by API.",
                ),
                &["api"],
            )?,
            secret_verifications: IntCounter::new(
                "tollgate_secret_verifications_total",
                "argon2 verifications of client secrets and user passwords (cache misses, \
                 refreshes ahead of expiry, unknown ids); concurrent checks of one secret share one.",
            )?,
            store: StoreMetrics::new(registry)?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.request_duration.clone()))?;
        registry.register(Box::new(m.upstream_duration.clone()))?;
        registry.register(Box::new(m.validations.clone()))?;
        registry.register(Box::new(m.cache_hits.clone()))?;
        registry.register(Box::new(m.cache_misses.clone()))?;
        registry.register(Box::new(m.tokens_issued.clone()))?;
        registry.register(Box::new(m.token_errors.clone()))?;
        registry.register(Box::new(m.auth_throttled.clone()))?;
        registry.register(Box::new(m.rate_limited.clone()))?;
        registry.register(Box::new(m.secret_verifications.clone()))?;
        registry.register(Box::new(m.dpop_proofs.clone()))?;
        // Every series from zero, so that a rate over the first proofs is not lost.
        for at in ["token", "api"] {
            for result in ["ok", "invalid", "nonce", "replayed", "unavailable"] {
                m.dpop_proofs.with_label_values(&[at, result]);
            }
        }
        Ok(m)
    }

    pub fn record_validation(&self, outcome: Outcome) {
        if let Some(c) = self.by_outcome.get(outcome as usize) {
            c.inc();
        }
    }
}

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];
const STATUSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

fn status_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

/// The bounded `method` label.
pub fn method_label(m: &Method) -> &'static str {
    METHODS[method_index(m)]
}

/// The bounded `status` label: `2xx` … `5xx`, or `none` when no response was sent.
pub fn status_label(status: u16) -> &'static str {
    STATUSES[status_index(status)]
}

/// One `api` label's series, each looked up in its vector the first time it is used and
/// kept: recording a request is then a few atomic adds, with no label hashing or lock.
/// Series appear only once used, so 10,000 APIs do not export 480,000 zeros.
#[derive(Default)]
pub struct ApiSeries {
    requests: [[OnceLock<IntCounter>; STATUSES.len()]; METHODS.len()],
    duration: OnceLock<Histogram>,
    upstream_duration: OnceLock<Histogram>,
    rate_limited: OnceLock<IntCounter>,
}

impl ApiSeries {
    /// Count a request refused by a rate limit.
    pub fn count_rate_limited(&self, metrics: &Metrics, api: &str) {
        self.rate_limited
            .get_or_init(|| metrics.rate_limited.with_label_values(&[api]))
            .inc();
    }

    /// Count one finished request of API `api` (its label, the same on every call).
    pub fn record(
        &self,
        metrics: &Metrics,
        api: &str,
        method: &Method,
        status: u16,
        elapsed: Duration,
        upstream: Option<Duration>,
    ) {
        let (m, s) = (method_index(method), status_index(status));
        self.requests[m][s]
            .get_or_init(|| {
                metrics
                    .requests
                    .with_label_values(&[api, METHODS[m], STATUSES[s]])
            })
            .inc();
        self.duration
            .get_or_init(|| metrics.request_duration.with_label_values(&[api]))
            .observe(elapsed.as_secs_f64());
        if let Some(t) = upstream {
            self.upstream_duration
                .get_or_init(|| metrics.upstream_duration.with_label_values(&[api]))
                .observe(t.as_secs_f64());
        }
    }
}

/// Serves the default registry at `/metrics` (Prometheus text format); 404 elsewhere.
pub struct MetricsApp;

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path_ok = req.uri.path() == "/metrics";
        let method_ok = req.method == Method::GET || req.method == Method::HEAD;
        if path_ok && method_ok {
            return PrometheusHttpApp.response(session).await;
        }
        let (status, body) = if path_ok {
            (StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
        } else {
            (StatusCode::NOT_FOUND, "metrics are served at /metrics\n")
        };
        let mut resp = Response::new(body.as_bytes().to_vec());
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        );
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

/// A reader of one in-memory cache's size.
pub type SizeReader = Box<dyn Fn() -> u64 + Send + Sync>;

/// `tollgate_cache_entries{cache}`: the entries each in-memory cache holds, read at scrape
/// time (each is bounded by its configured capacity).
pub struct CacheSizes {
    gauge: IntGaugeVec,
    readers: Vec<(&'static str, SizeReader)>,
}

impl CacheSizes {
    pub fn new(readers: Vec<(&'static str, SizeReader)>) -> Result<Self, prometheus::Error> {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "tollgate_cache_entries",
                "Entries held by each in-memory cache (validation: validated tokens; secrets: \
                 verified client secrets and passwords; revocations: the revocation set; \
                 dpop_replay: DPoP proof ids remembered).",
            ),
            &["cache"],
        )?;
        Ok(Self { gauge, readers })
    }
}

impl Collector for CacheSizes {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for (name, read) in &self.readers {
            let n = i64::try_from(read()).unwrap_or(i64::MAX);
            self.gauge.with_label_values(&[name]).set(n);
        }
        self.gauge.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder as _;

    #[test]
    fn registers_and_encodes() {
        let r = Registry::new();
        let m = Metrics::new(&r).unwrap();
        m.record_validation(Outcome::Expired);
        m.requests
            .with_label_values(&["orders", "GET", "2xx"])
            .inc();
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&r.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("tollgate_token_validations_total{outcome=\"expired\"} 1"));
        assert!(text.contains("tollgate_token_validations_total{outcome=\"ok\"} 0"));
        assert!(
            text.contains(
                "tollgate_requests_total{api=\"orders\",method=\"GET\",status=\"2xx\"} 1"
            )
        );
        // Registering twice in one registry is an error, not a panic.
        assert!(Metrics::new(&r).is_err());
    }

    #[test]
    fn api_series_record_under_their_labels() {
        let r = Registry::new();
        let m = Metrics::new(&r).unwrap();
        let series = ApiSeries::default();
        let ms = Duration::from_millis(1);
        series.record(&m, "orders", &Method::GET, 200, ms, Some(ms));
        series.record(&m, "orders", &Method::GET, 204, ms, None);
        series.record(&m, "orders", &Method::POST, 503, ms, None);
        let get = |labels: &[&str]| m.requests.with_label_values(labels).get();
        assert_eq!(get(&["orders", "GET", "2xx"]), 2);
        assert_eq!(get(&["orders", "POST", "5xx"]), 1);
        let duration = m.request_duration.with_label_values(&["orders"]);
        assert_eq!(duration.get_sample_count(), 3);
        let upstream = m.upstream_duration.with_label_values(&["orders"]);
        assert_eq!(upstream.get_sample_count(), 1);
    }

    #[test]
    fn outcome_counters_are_indexed_by_discriminant() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{o:?}");
        }
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            method_label(&Method::from_bytes(b"PROPFIND").unwrap()),
            "OTHER"
        );
        assert_eq!(status_label(204), "2xx");
        assert_eq!(status_label(0), "none");
    }
}
