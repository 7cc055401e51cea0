//! Prometheus metrics of the webhook's reviews. The policy reload metrics are the
//! runtime's [`PolicyState`](secret_relay_runtime::PolicyState)'s, in the same registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a reviewed request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `validate` or `mutate`.
    pub endpoint: &'static str,
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT`, or `invalid` for a 4xx body.
    pub operation: &'static str,
    /// `allowed`, `denied`, `patched`, `unchanged` or `bad-request`.
    pub decision: &'static str,
}

/// The metrics of the review handler.
#[derive(Debug)]
pub struct Metrics {
    /// Reviews by endpoint, operation and decision.
    pub requests: Family<RequestLabels, Counter>,
    /// Review latency in seconds, body read to response encoded.
    pub latency: Histogram,
    /// Requests by break-glass identities.
    pub break_glass: Counter,
    /// Connections ended before a review: failed TLS handshakes, slow request heads.
    pub conn: secret_relay_runtime::ConnCounters,
}

impl Metrics {
    /// Registers every review metric into `registry`.
    pub fn new(registry: &mut Registry) -> Metrics {
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
        let break_glass = Counter::default();
        registry.register(
            "break_glass_uses",
            "Writes by break-glass users or groups, which bypass the rules",
            break_glass.clone(),
        );
        Metrics {
            requests,
            latency,
            break_glass,
            conn: secret_relay_runtime::ConnCounters::register(registry),
        }
    }
}
