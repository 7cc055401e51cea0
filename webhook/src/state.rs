//! The webhook's long-lived state: the policy store, readiness and metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;
use secret_relay_policy::{Mode, Policy, PolicyError, PolicyStore, RelayIdentity};
use tokio::sync::watch;

use crate::metrics::{Metrics, ReloadLabels};

/// Cloneable handle to everything a request or the reload task needs.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: PolicyStore,
    ready: AtomicBool,
    last_error: ArcSwapOption<String>,
    metrics: Metrics,
    relay: RelayIdentity,
    mode: Mode,
    reloads: watch::Sender<u64>,
    bench_baseline: bool,
}

/// The outcome of offering a policy document to the store.
#[derive(Debug)]
pub enum LoadOutcome {
    /// The document was valid and is now served as this generation.
    Loaded(u64),
    /// The document is the one already served; nothing changed.
    Unchanged,
    /// The document was invalid; the last good policy stays.
    Rejected(String),
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
        let (reloads, _) = watch::channel(0);
        AppState {
            inner: Arc::new(Inner {
                store: PolicyStore::default(),
                ready: AtomicBool::new(false),
                last_error: ArcSwapOption::empty(),
                metrics: Metrics::new(),
                relay,
                mode,
                reloads,
                bench_baseline,
            }),
        }
    }

    /// The policy snapshot to decide one request with.
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.store.load()
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

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether a valid policy has been loaded.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// The generation served: 0 until the first valid policy, then one more per load.
    pub fn generation(&self) -> u64 {
        if self.is_ready() {
            self.inner.store.generation() - 1
        } else {
            0
        }
    }

    /// The last reload error, if the newest document offered was invalid.
    pub fn last_error(&self) -> Option<Arc<String>> {
        self.inner.last_error.load_full()
    }

    /// A receiver that changes on every reload attempt (tests await it).
    pub fn subscribe_reloads(&self) -> watch::Receiver<u64> {
        self.inner.reloads.subscribe()
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
        let outcome = match parsed {
            Ok(policy) => {
                // Swap first, then flip readiness, so a ready state always has a real policy.
                self.inner.store.store(policy);
                self.inner.ready.store(true, Ordering::Release);
                self.inner.last_error.store(None);
                let generation = self.generation();
                self.inner
                    .metrics
                    .reloads
                    .get_or_create(&ReloadLabels { result: "success" })
                    .inc();
                self.inner
                    .metrics
                    .policy_generation
                    .set(i64::try_from(generation).unwrap_or(i64::MAX));
                tracing::info!(source, revision, generation, "policy loaded");
                LoadOutcome::Loaded(generation)
            }
            Err(error) => {
                self.inner
                    .metrics
                    .reloads
                    .get_or_create(&ReloadLabels { result: "failure" })
                    .inc();
                self.inner.metrics.reload_failures.inc();
                tracing::warn!(
                    source,
                    revision,
                    %error,
                    generation = self.generation(),
                    "policy rejected; keeping the last good policy"
                );
                self.inner
                    .last_error
                    .store(Some(Arc::new(format!("{source} at {revision}: {error}"))));
                LoadOutcome::Rejected(error)
            }
        };
        self.inner.reloads.send_modify(|n| *n += 1);
        outcome
    }

    /// Records a problem with the policy source itself (unreadable file, missing key),
    /// without touching the policy being served.
    pub fn source_problem(&self, source: &str, problem: String) {
        self.offer_policy(source, "-", Err(problem));
    }

    /// The `/readyz` answer: ready or not, with a human-readable detail.
    pub fn readiness(&self) -> (bool, String) {
        let ready = self.is_ready();
        let mut detail = if ready {
            format!("ok: serving policy generation {}\n", self.generation())
        } else {
            "not ready: no valid policy loaded yet\n".to_owned()
        };
        if let Some(err) = self.last_error() {
            detail.push_str(&format!("last policy reload failed: {err}\n"));
        }
        (ready, detail)
    }
}

/// Parses a policy document, flattening every located problem into one message.
pub fn parse_policy(text: &str) -> Result<Policy, String> {
    Policy::from_yaml(text).map_err(|e: PolicyError| e.to_string())
}

/// Parses the policy out of ConfigMap data under `key`.
pub fn parse_policy_data(data: &BTreeMap<String, String>, key: &str) -> Result<Policy, String> {
    Policy::from_configmap_data(data, key).map_err(|e| e.to_string())
}
