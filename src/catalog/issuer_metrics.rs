//! The external issuers' key-fetch counters as Prometheus metrics, read from the current
//! catalog at each scrape (a reload that adds or removes an issuer changes the series at
//! the next scrape; an issuer kept across a reload keeps its counts).

use super::Live;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use std::sync::Arc;

const FETCHES: &str = "tollgate_issuer_key_fetches_total";
const KEYS: &str = "tollgate_issuer_keys";
const MISSES: &str = "tollgate_issuer_kid_misses_total";

/// The metric families, made afresh for each scrape from the issuers' atomic counters.
struct Families {
    fetches: IntCounterVec,
    keys: IntGaugeVec,
    misses: IntCounterVec,
}

impl Families {
    fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            fetches: IntCounterVec::new(
                Opts::new(
                    FETCHES,
                    "Key set fetches of an external issuer, by result (ok, error); after an \
                     error the keys held before stay in use.",
                ),
                &["issuer", "result"],
            )?,
            keys: IntGaugeVec::new(
                Opts::new(
                    KEYS,
                    "Usable keys an external issuer's current key set holds (0: none fetched \
                     yet, every token of that issuer is refused).",
                ),
                &["issuer"],
            )?,
            misses: IntCounterVec::new(
                Opts::new(
                    MISSES,
                    "Tokens naming a key an external issuer's set lacks, by what was done: \
                     refetch (asked for one), joined (waited on one already asked for), \
                     suppressed (refused at once, the last fetch being too recent).",
                ),
                &["issuer", "decision"],
            )?,
        })
    }
}

/// Collects the key-fetch metrics of the issuers of the live catalog.
pub struct IssuerMetrics {
    catalog: Arc<Live>,
    /// Kept for [`Collector::desc`]; never holds a series.
    descs: Families,
}

impl IssuerMetrics {
    pub fn new(catalog: Arc<Live>) -> Result<Self, prometheus::Error> {
        Ok(Self {
            catalog,
            descs: Families::new()?,
        })
    }

    fn families(&self) -> Result<Families, prometheus::Error> {
        let f = Families::new()?;
        let catalog = self.catalog.load();
        for issuer in catalog.issuers.iter() {
            let name = issuer.name();
            let s = issuer.stats().snapshot();
            f.fetches
                .get_metric_with_label_values(&[name, "ok"])?
                .inc_by(s.fetches_ok);
            f.fetches
                .get_metric_with_label_values(&[name, "error"])?
                .inc_by(s.fetches_failed);
            f.keys
                .get_metric_with_label_values(&[name])?
                .set(i64::try_from(s.keys).unwrap_or(i64::MAX));
            for (decision, count) in [
                ("refetch", s.kid_miss_refetches),
                ("joined", s.kid_miss_joined),
                ("suppressed", s.refetches_suppressed),
            ] {
                f.misses
                    .get_metric_with_label_values(&[name, decision])?
                    .inc_by(count);
            }
        }
        Ok(f)
    }
}

impl Collector for IssuerMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let d = &self.descs;
        let mut all = d.fetches.desc();
        all.extend(d.keys.desc());
        all.extend(d.misses.desc());
        all
    }

    fn collect(&self) -> Vec<MetricFamily> {
        match self.families() {
            Ok(f) => {
                let mut all = f.fetches.collect();
                all.extend(f.keys.collect());
                all.extend(f.misses.collect());
                all
            }
            Err(e) => {
                log::warn!("issuer metrics not collected: {e}");
                Vec::new()
            }
        }
    }
}
