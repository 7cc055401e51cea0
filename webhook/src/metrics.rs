//! Prometheus metrics of the webhook (text exposition via prometheus-client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a reviewed request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `validate` or `mutate`.
    pub endpoint: &'static str,
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT`, or `invalid` for a 4xx body.
    pub operation: String,
    /// `allowed`, `denied`, `patched`, `unchanged` or `bad-request`.
    pub decision: &'static str,
}

/// Labels of a policy reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Every metric the webhook exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reviews by endpoint, operation and decision.
    pub requests: Family<RequestLabels, Counter>,
    /// Review latency in seconds, body read to response encoded.
    pub latency: Histogram,
    /// Policy reloads by result.
    pub reloads: Family<ReloadLabels, Counter>,
    /// Policy reloads that failed (the last good policy stays).
    pub reload_failures: Counter,
    /// Generation of the policy being served (0 until the first valid one).
    pub policy_generation: Gauge,
    /// Requests by break-glass identities.
    pub break_glass: Counter,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("secret_relay_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "AdmissionReview requests by endpoint, operation and decision",
            requests.clone(),
        );
        let latency = Histogram::new([
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05,
        ]);
        registry.register(
            "review_duration_seconds",
            "Time to decode, decide and encode one review",
            latency.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy reloads by result",
            reloads.clone(),
        );
        let reload_failures = Counter::default();
        registry.register(
            "policy_reload_failures",
            "Policy documents that failed to parse or validate; the last good policy stays",
            reload_failures.clone(),
        );
        let policy_generation = Gauge::default();
        registry.register(
            "policy_generation",
            "Generation of the policy being served, 0 until the first valid one",
            policy_generation.clone(),
        );
        let break_glass = Counter::default();
        registry.register(
            "break_glass_uses",
            "Writes by break-glass users or groups, which bypass the rules",
            break_glass.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            reloads,
            reload_failures,
            policy_generation,
            break_glass,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
