//! The agent's metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of one Secret's sync status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// The Secret's name.
    pub name: String,
    /// `up` or `down`.
    pub direction: &'static str,
    /// `synced`, `denied`, `revoked`, `conflict`, `leaving`, `held` or `error`.
    pub state: &'static str,
    /// The rule id of the last decision (empty when there was none).
    pub rule: String,
}

/// Labels of an action.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `push`, `release`, `write-down-copy`, `revert-drift`, `delete-down-copy`,
    /// `mark-deletion-held`, `conflict`.
    pub action: &'static str,
    /// `ok`, `denied` or `error`.
    pub result: &'static str,
}

/// Every metric the agent exports.
#[derive(Debug)]
pub struct Metrics {
    /// One series per Secret: 1 for its current status.
    pub status: Family<StatusLabels, Gauge>,
    /// Actions by result.
    pub actions: Family<ActionLabels, Counter>,
    /// The relay's policy generation the agent last saw.
    pub policy_generation: Gauge,
    /// Down copies whose deletion is held beyond the deletion budget.
    pub deletions_held: Gauge,
    /// 1 while the relay refuses this cluster as unregistered.
    pub unregistered: Gauge,
}

impl Metrics {
    /// Registers every metric into `registry`.
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            status: Family::default(),
            actions: Family::default(),
            policy_generation: Gauge::default(),
            deletions_held: Gauge::default(),
            unregistered: Gauge::default(),
        };
        registry.register(
            "down_deletions_held",
            "Down copies whose deletion is held beyond the deletion budget, until confirmed",
            m.deletions_held.clone(),
        );
        registry.register(
            "unregistered",
            "1 while the relay refuses this cluster as unregistered",
            m.unregistered.clone(),
        );
        registry.register(
            "secret_status",
            "Sync status of each Secret (1 for the current state) with the rule of the last decision",
            m.status.clone(),
        );
        registry.register("actions", "Sync actions by result", m.actions.clone());
        registry.register(
            "relay_policy_generation",
            "The relay's policy generation the agent last saw",
            m.policy_generation.clone(),
        );
        m
    }

    /// Counts an action.
    pub fn action(&self, action: &'static str, result: &'static str) {
        self.actions
            .get_or_create(&ActionLabels { action, result })
            .inc();
    }
}
