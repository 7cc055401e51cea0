//! The webhook's long-lived state: the served policy (the runtime's [`PolicyState`]),
//! one metrics registry behind the admin endpoints, and who the webhook serves.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use secret_relay_certs::ReloadingServerTls;
use secret_relay_policy::{Mode, RelayIdentity};
use secret_relay_runtime::{Admin, BodyBudget, PolicyState, Readiness};

use crate::metrics::Metrics;

/// The prefix of every metric the webhook exports.
const METRICS_PREFIX: &str = "secret_relay_webhook";

/// Cloneable handle to everything a request or the policy source needs.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    policy: PolicyState,
    admin: Admin,
    metrics: Metrics,
    relay: RelayIdentity,
    mode: Mode,
    bench_baseline: bool,
    /// The review bodies in flight ([`BODY_BUDGET_BYTES`]).
    bodies: BodyBudget,
}

/// The bytes of review bodies the webhook reads at once: with the copies a review
/// makes of its body, what bounds its memory whatever is sent to its port (about
/// five worst-case reviews of 10 MiB, or hundreds of usual ones).
pub(crate) const BODY_BUDGET_BYTES: usize = 48 * 1024 * 1024;

impl AppState {
    /// A state that is not ready until a valid policy is loaded.
    pub fn new(relay: RelayIdentity, mode: Mode) -> AppState {
        AppState::build(relay, mode, false, None)
    }

    /// Like [`AppState::new`], and also serves `POST /baseline`: the same body handling
    /// and TLS, answering a fixed AdmissionReview without admission work. Benchmarks
    /// measure it beside `/validate` to show what admission costs.
    pub fn with_bench_baseline(relay: RelayIdentity, mode: Mode) -> AppState {
        AppState::build(relay, mode, true, None)
    }

    /// The state of a serving webhook: [`AppState::new`] (or, with
    /// `bench_baseline`, [`AppState::with_bench_baseline`]) that also reports the
    /// served TLS material `tls` in its readiness and metrics.
    pub fn serving(
        relay: RelayIdentity,
        mode: Mode,
        bench_baseline: bool,
        tls: &Arc<ReloadingServerTls>,
    ) -> AppState {
        AppState::build(relay, mode, bench_baseline, Some(tls))
    }

    fn build(
        relay: RelayIdentity,
        mode: Mode,
        bench_baseline: bool,
        tls: Option<&Arc<ReloadingServerTls>>,
    ) -> AppState {
        let mut registry = Registry::with_prefix(METRICS_PREFIX);
        let policy = PolicyState::new(&mut registry);
        let metrics = Metrics::new(&mut registry);
        let part = policy.clone();
        let current = policy.clone();
        let mut parts = vec![
            Readiness::new("policy", move || part.readiness()),
            // Said, never unready: a stale webhook still judges by the last policy
            // it read (as kube-apiserver's own informers do), and unready it would
            // fail every Secret write it guards.
            Readiness::new("policy-current", move || {
                (true, current.currency_readiness().1)
            }),
        ];
        if let Some(tls) = tls {
            secret_relay_runtime::register_tls_metrics(&mut registry, tls);
            parts.push(secret_relay_runtime::tls_readiness(tls));
        }
        let admin = Admin::new(registry, parts);
        AppState {
            inner: Arc::new(Inner {
                policy,
                admin,
                metrics,
                relay,
                mode,
                bench_baseline,
                bodies: BodyBudget::new(BODY_BUDGET_BYTES),
            }),
        }
    }

    /// The served policy: snapshots, generations, readiness and the policy sources' target.
    pub fn policy_state(&self) -> &PolicyState {
        &self.inner.policy
    }

    /// The budget of review bodies in flight.
    pub(crate) fn bodies(&self) -> &BodyBudget {
        &self.inner.bodies
    }

    /// The admin endpoints: `/healthz`, `/readyz` and `/metrics` of the one registry.
    pub fn admin(&self) -> &Admin {
        &self.inner.admin
    }

    /// The relay's service account identity.
    pub fn relay(&self) -> &RelayIdentity {
        &self.inner.relay
    }

    /// Control plane or managed cluster.
    pub fn mode(&self) -> &Mode {
        &self.inner.mode
    }

    /// Whether `POST /baseline` is served.
    pub fn bench_baseline(&self) -> bool {
        self.inner.bench_baseline
    }

    /// The review metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}
