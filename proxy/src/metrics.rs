//! The relay's metrics, registered into the process registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use secret_relay_runtime::ConnCounters;

/// Labels of a write or release through the relay.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `allowed` or `denied` (by the relay's policy check), or `upstream-<code>`.
    pub decision: String,
    /// The rule id.
    pub rule: String,
}

/// Labels of a refused request (before any policy decision).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Why: `unregistered-cluster`, `no-identity`, `impersonation-header`, `route`,
    /// `rate-limited`, `too-many-watches`, `body-too-large`.
    pub reason: &'static str,
}

/// Labels of a release of a revoked hub copy.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevocationLabels {
    /// `delete` or `return`.
    pub action: &'static str,
    /// `ok`, `changed` (released or changed meanwhile: judged again) or `error`.
    pub result: &'static str,
}

/// Every metric the relay exports.
#[derive(Debug)]
pub struct Metrics {
    /// Writes by decision and rule.
    pub writes: Family<WriteLabels, Counter>,
    /// Requests refused before policy.
    pub refusals: Family<RefusalLabels, Counter>,
    /// Open watches.
    pub watches: Gauge,
    /// Watches ended because they fell too far behind.
    pub watch_lagged: Counter,
    /// Clusters with at least one open connection.
    pub connected_clusters: Gauge,
    /// Time from the cache receiving a change to a watch writing it, in seconds.
    pub fanout_lag: Histogram,
    /// Time of a forwarded request to the API server, in seconds.
    pub upstream_latency: Histogram,
    /// Releases of revoked hub copies, by action and result.
    pub revocations: Family<RevocationLabels, Counter>,
    /// Hub copies the policy no longer admits, waiting for the revocation grace.
    pub revocations_pending: Gauge,
    /// Connections ended before a request: failed TLS handshakes (a certificate from
    /// another CA, an expired one, none) and slow request heads, by reason.
    pub conn: ConnCounters,
}

impl Metrics {
    /// Registers every metric into `registry`.
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            writes: Family::default(),
            refusals: Family::default(),
            watches: Gauge::default(),
            watch_lagged: Counter::default(),
            connected_clusters: Gauge::default(),
            fanout_lag: Histogram::new([
                0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            ]),
            upstream_latency: Histogram::new([
                0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            conn: ConnCounters::register(registry),
            revocations: Family::default(),
            revocations_pending: Gauge::default(),
        };
        registry.register(
            "revocations",
            "Releases of hub copies the policy no longer admits, by action and result",
            m.revocations.clone(),
        );
        registry.register(
            "revocations_pending",
            "Hub copies the policy no longer admits, waiting for the revocation grace",
            m.revocations_pending.clone(),
        );
        registry.register(
            "writes",
            "Writes and releases by decision and rule",
            m.writes.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused before any policy decision, by reason",
            m.refusals.clone(),
        );
        registry.register("watches", "Open watches", m.watches.clone());
        registry.register(
            "watch_lagged",
            "Watches ended because they fell behind the cache",
            m.watch_lagged.clone(),
        );
        registry.register(
            "connected_clusters",
            "Clusters with at least one open connection",
            m.connected_clusters.clone(),
        );
        registry.register(
            "fanout_lag_seconds",
            "Time from the cache receiving a change to a watch writing it",
            m.fanout_lag.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time of a request forwarded to the API server",
            m.upstream_latency.clone(),
        );
        m
    }

    /// Counts a refusal.
    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&RefusalLabels { reason }).inc();
    }
}
