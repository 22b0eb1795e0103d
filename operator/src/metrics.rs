//! Reconcile metrics: a count, a duration and errors by kind, per controller, rendered
//! for Prometheus at `/metrics`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::error::Error;

/// Reconciles started, by `controller`.
pub const RECONCILES: &str = "synco_operator_reconciles_total";
/// Reconcile duration in seconds, by `controller`.
pub const RECONCILE_SECONDS: &str = "synco_operator_reconcile_duration_seconds";
/// Failed reconciles, by `controller` and `error` ([`Error::metric_label`]).
pub const RECONCILE_ERRORS: &str = "synco_operator_reconcile_errors_total";
/// 1 while this replica holds the leader lease, else 0.
pub const LEADER: &str = "synco_operator_leader";

/// Installs the Prometheus recorder once per process and returns its handle (`None` if
/// another recorder was installed first).
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => {
                keep_up(handle.clone());
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .clone()
}

/// How often the recorder's histograms are drained.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Drains the histograms' samples into their buckets every few seconds. The recorder
/// keeps every sample until then, and a scrape is not guaranteed: with nobody reading
/// `/metrics`, the samples of every request piled up (about a megabyte a minute at
/// 1,000 req/s in `gateway/bench/soak.sh`).
fn keep_up(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "metrics upkeep not started: histograms grow until scraped");
    }
}

/// Counts kept per operator instance as well as in the global recorder, so that a test
/// running two operators in one process can tell which one did the work.
#[derive(Debug, Default)]
pub struct Stats {
    reconciles: AtomicU64,
    errors: AtomicU64,
}

impl Stats {
    /// Reconciles this instance has run.
    #[must_use]
    pub fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    /// Reconciles of this instance that failed.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// Measures one reconcile; call [`Measure::done`] with its result.
#[derive(Debug)]
pub struct Measure<'a> {
    controller: &'static str,
    started: Instant,
    stats: &'a Stats,
}

impl<'a> Measure<'a> {
    /// Starts measuring a reconcile of `controller`.
    pub fn start(controller: &'static str, stats: &'a Stats) -> Measure<'a> {
        stats.reconciles.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(RECONCILES, "controller" => controller).increment(1);
        Measure {
            controller,
            started: Instant::now(),
            stats,
        }
    }

    /// Records the duration and, for an error, its kind.
    pub fn done<T>(self, result: &Result<T, Error>) {
        metrics::histogram!(RECONCILE_SECONDS, "controller" => self.controller)
            .record(self.started.elapsed().as_secs_f64());
        if let Err(e) = result {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(RECONCILE_ERRORS, "controller" => self.controller, "error" => e.metric_label())
                .increment(1);
        }
    }
}
