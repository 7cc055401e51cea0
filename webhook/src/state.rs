//! The webhook's long-lived state: the served policy (the runtime's [`PolicyState`]),
//! one metrics registry behind the admin endpoints, and who the webhook serves.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use secret_relay_policy::{Mode, Policy, RelayIdentity};
use secret_relay_runtime::{Admin, LoadOutcome, PolicyState, Readiness};
use tokio::sync::watch;

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
}

impl AppState {
    /// A state that is not ready until a valid policy is loaded.
    pub fn new(relay: RelayIdentity, mode: Mode) -> AppState {
        AppState::build(relay, mode, false)
    }

    /// Like [`AppState::new`], and also serves `POST /baseline`: the same body handling
    /// and TLS, answering a fixed AdmissionReview without admission work. Benchmarks
    /// measure it beside `/validate` to show what admission costs.
    pub fn with_bench_baseline(relay: RelayIdentity, mode: Mode) -> AppState {
        AppState::build(relay, mode, true)
    }

    fn build(relay: RelayIdentity, mode: Mode, bench_baseline: bool) -> AppState {
        let mut registry = Registry::with_prefix(METRICS_PREFIX);
        let policy = PolicyState::new(&mut registry);
        let metrics = Metrics::new(&mut registry);
        let part = policy.clone();
        let admin = Admin::new(
            registry,
            vec![Readiness::new("policy", move || policy_readiness(&part))],
        );
        AppState {
            inner: Arc::new(Inner {
                policy,
                admin,
                metrics,
                relay,
                mode,
                bench_baseline,
            }),
        }
    }

    /// The served policy: snapshots, generations, readiness and the policy sources' target.
    pub fn policy_state(&self) -> &PolicyState {
        &self.inner.policy
    }

    /// The admin endpoints: `/healthz`, `/readyz` and `/metrics` of the one registry.
    pub fn admin(&self) -> &Admin {
        &self.inner.admin
    }

    /// The policy snapshot to decide one request with.
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy.policy()
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

    /// Whether a valid policy has been loaded.
    pub fn is_ready(&self) -> bool {
        self.inner.policy.is_ready()
    }

    /// The generation served: 0 until the first valid policy, then one more per load.
    pub fn generation(&self) -> u64 {
        self.inner.policy.generation()
    }

    /// The last reload error, if the newest document offered was invalid.
    pub fn last_error(&self) -> Option<Arc<String>> {
        self.inner.policy.last_error()
    }

    /// A receiver that changes on every reload attempt (tests await it).
    pub fn subscribe_reloads(&self) -> watch::Receiver<u64> {
        self.inner.policy.subscribe_reloads()
    }

    /// Offers a policy document from `source` at `revision` (a resourceVersion or a
    /// file digest). A valid one replaces the policy; an invalid one is logged,
    /// counted and shown by `/readyz`, and the last good policy stays.
    pub fn offer_policy(
        &self,
        source: &str,
        revision: &str,
        parsed: Result<Policy, String>,
    ) -> LoadOutcome {
        self.inner.policy.offer_policy(source, revision, parsed)
    }

    /// Records a problem with the policy source itself (unreadable file, missing key),
    /// without touching the policy being served.
    pub fn source_problem(&self, source: &str, problem: String) {
        self.inner.policy.source_problem(source, problem);
    }

    /// The `/readyz` answer: ready or not, with a line per part.
    pub fn readiness(&self) -> (bool, String) {
        self.inner.admin.readiness()
    }
}

/// The policy part of `/readyz`, in the words the webhook has always used.
fn policy_readiness(policy: &PolicyState) -> (bool, String) {
    let ready = policy.is_ready();
    let mut detail = if ready {
        format!("serving policy generation {}", policy.generation())
    } else {
        "no valid policy loaded yet".to_owned()
    };
    if let Some(err) = policy.last_error() {
        detail.push_str(&format!("; last policy reload failed: {err}"));
    }
    (ready, detail)
}
