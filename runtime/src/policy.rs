//! The policy a process serves: the last good document, a state of its own for
//! "no policy yet", and a notification on every new generation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use secret_relay_policy::{POLICY_KEY, Policy, PolicyError, PolicyStore};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::currency::{Currency, Tracker};

/// Where the policy comes from.
#[derive(Clone, Debug)]
pub enum PolicySource {
    /// A file, re-read when its contents change (robust to Kubernetes' symlink-swapped mounts).
    File {
        /// The policy document.
        path: PathBuf,
        /// How often to look at it.
        interval: Duration,
    },
    /// The `policy.yaml` key of a ConfigMap, watched through the API server.
    ConfigMap {
        /// Namespace of the ConfigMap.
        namespace: String,
        /// Name of the ConfigMap.
        name: String,
    },
}

/// The outcome of offering a policy document.
#[derive(Debug)]
pub enum LoadOutcome {
    /// The document was valid and is now served as this generation.
    Loaded(u64),
    /// The document was invalid; the last good policy stays.
    Rejected(Arc<Rejection>),
}

/// Why a policy was not loaded; the last good policy stays.
#[derive(Debug, thiserror::Error)]
pub enum LoadPolicyError {
    /// The document is not a valid policy: every problem, located.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// The source gave no document: an unreadable file, a missing key or ConfigMap.
    #[error("{0}")]
    Source(String),
}

/// A policy document that was not loaded: where it came from, and why.
#[derive(Debug, thiserror::Error)]
#[error("{source_name} at {revision}: {error}")]
pub struct Rejection {
    /// The policy source (`configmap NS/NAME`, `file PATH`).
    pub source_name: String,
    /// Its revision: a resourceVersion or a file digest, `-` when there is none.
    pub revision: String,
    /// Why.
    pub error: LoadPolicyError,
}

/// Cloneable handle to the served policy: snapshots for requests, generations for
/// subscribers, readiness and the last reload error for `/readyz`.
#[derive(Clone, Debug)]
pub struct PolicyState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: PolicyStore,
    ready: AtomicBool,
    last_error: ArcSwapOption<Rejection>,
    /// Bumped on every reload attempt, good or bad.
    attempts: watch::Sender<u64>,
    /// The generation served: 0 until the first valid policy.
    generations: watch::Sender<u64>,
    metrics: PolicyMetrics,
    /// Whether the policy served is known to be current.
    currency: Tracker,
    /// The key of [`PolicyState::revision`]: one the replicas of a source share and
    /// no cluster sees (a ConfigMap's uid), else this process's own.
    revision_key: std::sync::Mutex<Vec<u8>>,
    /// The served policy's revision, keyed: `""` until the first valid policy.
    revision: arc_swap::ArcSwap<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Debug, Default)]
struct PolicyMetrics {
    reloads: Family<ReloadLabels, Counter>,
    failures: Counter,
    generation: Gauge,
}

impl PolicyState {
    /// A state with no policy yet, registering its metrics (`policy_reloads`,
    /// `policy_reload_failures`, `policy_generation`) into `registry`.
    pub fn new(registry: &mut Registry) -> PolicyState {
        let metrics = PolicyMetrics::default();
        registry.register(
            "policy_reloads",
            "Policy reloads by result",
            metrics.reloads.clone(),
        );
        registry.register(
            "policy_reload_failures",
            "Policy documents that failed to parse or validate; the last good policy stays",
            metrics.failures.clone(),
        );
        registry.register(
            "policy_generation",
            "Generation of the policy being served, 0 until the first valid one",
            metrics.generation.clone(),
        );
        let current = Gauge::default();
        registry.register(
            "policy_current",
            "1 while the policy served is confirmed current by its source (a file always is), 0 when stale",
            current.clone(),
        );
        PolicyState {
            inner: Arc::new(Inner {
                store: PolicyStore::default(),
                ready: AtomicBool::new(false),
                last_error: ArcSwapOption::empty(),
                attempts: watch::channel(0).0,
                generations: watch::channel(0).0,
                metrics,
                currency: Tracker::new(current),
                revision_key: std::sync::Mutex::new(process_key()),
                revision: arc_swap::ArcSwap::from_pointee(String::new()),
            }),
        }
    }

    /// The policy snapshot to decide one request with. Before the first valid policy
    /// this is the default (empty) policy: check [`PolicyState::is_ready`] first.
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.store.load()
    }

    /// The snapshot and its generation, read together.
    pub fn snapshot(&self) -> (Arc<Policy>, u64) {
        // The generation is bumped after the store: read it first, so a racing swap
        // gives a newer policy with an older number, never the reverse.
        let generation = self.generation();
        (self.inner.store.load(), generation)
    }

    /// Whether a valid policy has been loaded.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// The served policy's revision as a keyed digest (32 hex digits): the same on
    /// every replica that serves the same document of a ConfigMap (keyed by its uid,
    /// see [`PolicyState::set_revision_key`]), and telling a cluster nothing of the
    /// source's versions. Unlike the generation, it does not count this process's
    /// loads, so an agent whose requests reach several replicas sees one policy as
    /// one revision. `""` before the first valid policy.
    pub fn revision(&self) -> Arc<String> {
        self.inner.revision.load_full()
    }

    /// Keys [`PolicyState::revision`] with `key`, which every replica reading the
    /// same source shares and no cluster sees; before the documents it applies to
    /// are offered. Without one, the key is this process's own.
    pub fn set_revision_key(&self, key: &[u8]) {
        let mut current = self
            .inner
            .revision_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_slice() != key {
            *current = key.to_vec();
        }
    }

    fn keyed_revision(&self, content: &[u8]) -> String {
        let key = self
            .inner
            .revision_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
        let tag = aws_lc_rs::hmac::sign(&key, content);
        tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The generation served: 0 until the first valid policy, then one more per load.
    pub fn generation(&self) -> u64 {
        *self.inner.generations.borrow()
    }

    /// The last reload error, if the newest document offered was invalid.
    pub fn last_error(&self) -> Option<Arc<Rejection>> {
        self.inner.last_error.load_full()
    }

    /// A receiver that changes on every reload attempt (tests await it).
    pub fn subscribe_reloads(&self) -> watch::Receiver<u64> {
        self.inner.attempts.subscribe()
    }

    /// A receiver that changes on every new generation.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generations.subscribe()
    }

    /// Offers a policy document from `source` at `revision` (a resourceVersion or a
    /// file digest). A valid one replaces the policy; an invalid one is logged,
    /// counted and shown by `/readyz`, and the last good policy stays.
    pub fn offer_policy(
        &self,
        source: &str,
        revision: &str,
        parsed: Result<Policy, LoadPolicyError>,
    ) -> LoadOutcome {
        self.offer_policy_of(source, revision, revision.as_bytes(), parsed)
    }

    /// [`PolicyState::offer_policy`] of a document whose [`PolicyState::revision`]
    /// is keyed over `content` (the document itself) rather than `revision`: a
    /// write of its source that leaves the document as it was keeps the revision.
    pub fn offer_policy_of(
        &self,
        source: &str,
        revision: &str,
        content: &[u8],
        parsed: Result<Policy, LoadPolicyError>,
    ) -> LoadOutcome {
        let metrics = &self.inner.metrics;
        let outcome = match parsed {
            Ok(policy) => {
                // Swap first, then flip readiness, so a ready state always has a real policy.
                self.inner.store.store(policy);
                // After the policy, like the generation: a racing reader may pair a
                // newer policy with the older revision, never the reverse.
                self.inner
                    .revision
                    .store(Arc::new(self.keyed_revision(content)));
                self.inner.ready.store(true, Ordering::Release);
                self.inner.last_error.store(None);
                let generation = self.inner.store.generation() - 1;
                metrics
                    .reloads
                    .get_or_create(&ReloadLabels { result: "success" })
                    .inc();
                metrics
                    .generation
                    .set(i64::try_from(generation).unwrap_or(i64::MAX));
                self.inner.generations.send_replace(generation);
                tracing::info!(source, revision, generation, "policy loaded");
                LoadOutcome::Loaded(generation)
            }
            Err(error) => {
                metrics
                    .reloads
                    .get_or_create(&ReloadLabels { result: "failure" })
                    .inc();
                metrics.failures.inc();
                tracing::warn!(
                    source,
                    revision,
                    %error,
                    generation = self.generation(),
                    "policy rejected; keeping the last good policy"
                );
                let rejection = Arc::new(Rejection {
                    source_name: source.to_owned(),
                    revision: revision.to_owned(),
                    error,
                });
                self.inner.last_error.store(Some(rejection.clone()));
                LoadOutcome::Rejected(rejection)
            }
        };
        self.inner.attempts.send_modify(|n| *n += 1);
        outcome
    }

    /// Records a problem with the policy source itself (unreadable file, missing key),
    /// without touching the policy being served.
    pub fn source_problem(&self, source: &str, problem: String) {
        self.offer_policy(source, "-", Err(LoadPolicyError::Source(problem)));
    }

    /// Sets how a ConfigMap source confirms that the policy is current; before the
    /// source starts.
    pub fn set_currency(&self, currency: Currency) {
        self.inner.currency.set_settings(currency);
    }

    /// Whether the policy served is confirmed current by its source (see
    /// [`Currency`]): a process that is not should judge nothing by it.
    pub fn is_current(&self) -> bool {
        self.inner.currency.is_current()
    }

    /// Whether the source confirmed the policy served at `at` or later (a source
    /// that needs no confirming always has): what acts only after a grace asks it
    /// of the grace's end.
    pub fn confirmed_since(&self, at: Instant) -> bool {
        self.inner.currency.confirmed_since(at)
    }

    /// A receiver that changes whenever the policy goes stale or current again.
    pub fn subscribe_currency(&self) -> watch::Receiver<bool> {
        self.inner.currency.subscribe()
    }

    /// Readiness of the policy's currency: current or stale, with when the source
    /// last confirmed it.
    pub fn currency_readiness(&self) -> (bool, String) {
        self.inner.currency.readiness()
    }

    /// Readiness of the policy part: ready or not, with a human-readable detail (the
    /// line [`crate::Admin`] shows after the part's name, `policy`).
    pub fn readiness(&self) -> (bool, String) {
        let ready = self.is_ready();
        let mut detail = if ready {
            format!("serving policy generation {}", self.generation())
        } else {
            "no valid policy loaded yet".to_owned()
        };
        if let Some(err) = self.last_error() {
            detail.push_str(&format!("; last policy reload failed: {err}"));
        }
        (ready, detail)
    }
}

/// Parses a policy document; its problems stay located and typed.
pub fn parse_policy(text: &str) -> Result<Policy, LoadPolicyError> {
    Ok(Policy::from_yaml(text)?)
}

/// Parses the policy out of ConfigMap data under `key`.
pub fn parse_policy_data(
    data: &BTreeMap<String, String>,
    key: &str,
) -> Result<Policy, LoadPolicyError> {
    Ok(Policy::from_configmap_data(data, key)?)
}

/// Runs the policy source until `shutdown` is cancelled. `client` is required for
/// [`PolicySource::ConfigMap`]; without one the problem is reported on the state.
pub async fn run_policy_source(
    state: PolicyState,
    source: PolicySource,
    client: Option<Client>,
    shutdown: CancellationToken,
) {
    match (source, client) {
        (PolicySource::File { path, interval }, _) => {
            watch_file(state, path, interval, shutdown).await;
        }
        (PolicySource::ConfigMap { namespace, name }, Some(client)) => {
            watch_configmap(state, client, namespace, name, shutdown).await;
        }
        (PolicySource::ConfigMap { namespace, name }, None) => state.source_problem(
            &format!("configmap {namespace}/{name}"),
            "no Kubernetes client to watch the policy ConfigMap with".to_owned(),
        ),
    }
}

/// Reads the policy file once and offers it if its contents changed since `last`.
pub async fn reload_file_once(
    state: &PolicyState,
    path: &Path,
    last: &mut Option<Vec<u8>>,
) -> Option<LoadOutcome> {
    let source = path.display().to_string();
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(err) => {
            let problem = format!("failed to read policy file: {err}");
            // Report an unreadable file once per change of state, not on every poll.
            if last.as_deref() != Some(problem.as_bytes()) {
                *last = Some(problem.clone().into_bytes());
                return Some(state.offer_policy(
                    &source,
                    "-",
                    Err(LoadPolicyError::Source(problem)),
                ));
            }
            return None;
        }
    };
    if last.as_deref() == Some(bytes.as_slice()) {
        return None;
    }
    let revision = format!("sha256:{}", short_digest(&bytes));
    let parsed = match std::str::from_utf8(&bytes) {
        Ok(text) => parse_policy(text),
        Err(_) => Err(LoadPolicyError::Source(
            "failed to read policy file: not UTF-8".to_owned(),
        )),
    };
    *last = Some(bytes);
    Some(state.offer_policy(&source, &revision, parsed))
}

/// Polls the policy file until `shutdown` is cancelled.
pub async fn watch_file(
    state: PolicyState,
    path: PathBuf,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut last = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                reload_file_once(&state, &path, &mut last).await;
            }
        }
    }
}

/// Watches the policy ConfigMap until `shutdown` is cancelled. The watcher resumes
/// from its last resourceVersion and backs off on errors; a deleted ConfigMap keeps
/// the last good policy.
pub async fn watch_configmap(
    state: PolicyState,
    client: Client,
    namespace: String,
    name: String,
    shutdown: CancellationToken,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher::watcher(api.clone(), config).default_backoff();
    tokio::pin!(stream);
    let source = format!("configmap {namespace}/{name}");
    let mut seen_in_init = false;
    let mut last_revision: Option<String> = None;
    let currency = &state.inner.currency;
    currency.start_confirming();
    // Beside the watch, never in its way: a slow read does not hold events back.
    let confirming = shutdown.child_token();
    let _stop_confirming = confirming.clone().drop_guard();
    tokio::spawn(confirm_configmap(
        state.clone(),
        api.clone(),
        name.clone(),
        confirming,
    ));
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        let Some(event) = event else { return };
        match event {
            Ok(Event::Apply(cm) | Event::InitApply(cm)) => {
                seen_in_init = true;
                let revision = cm.metadata.resource_version.clone().unwrap_or_default();
                if last_revision.as_deref() != Some(revision.as_str()) {
                    last_revision = Some(revision.clone());
                    if let Some(uid) = cm.metadata.uid.as_deref() {
                        state.set_revision_key(uid.as_bytes());
                    }
                    let data = cm.data.unwrap_or_default();
                    let document = data.get(POLICY_KEY).map_or(&[][..], |d| d.as_bytes());
                    state.offer_policy_of(
                        &source,
                        &revision,
                        document,
                        parse_policy_data(&data, POLICY_KEY),
                    );
                }
                // Only once offered: what this confirms is served.
                currency.seen(Some(&revision));
            }
            Ok(Event::Delete(_)) => {
                last_revision = None;
                currency.seen(None);
                state.source_problem(
                    &source,
                    "the policy ConfigMap was deleted; keeping the last good policy".to_owned(),
                );
            }
            Ok(Event::Init) => seen_in_init = false,
            Ok(Event::InitDone) => {
                if !seen_in_init {
                    currency.seen(None);
                    state.source_problem(&source, "the policy ConfigMap does not exist".to_owned());
                }
                currency.listed();
            }
            Err(err) => {
                tracing::warn!(%source, error = %err, "policy ConfigMap watch failed; retrying with backoff");
            }
        }
    }
}

/// Reads the policy ConfigMap (a consistent read: no resourceVersion) to confirm
/// the version the watch reached, within `within`.
/// Reads the policy ConfigMap every `confirm_every` (a consistent read: no
/// resourceVersion) to confirm the version the watch reached, each read within
/// half of `stale_after`, until `stop`; each round also tells subscribers whether
/// the policy went stale meanwhile.
async fn confirm_configmap(
    state: PolicyState,
    api: Api<ConfigMap>,
    name: String,
    stop: CancellationToken,
) {
    let currency = &state.inner.currency;
    let Currency {
        confirm_every,
        stale_after,
    } = currency.settings();
    let within = (stale_after / 2).max(confirm_every);
    let mut ticker = tokio::time::interval(confirm_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let at = Instant::now();
        let read = tokio::select! {
            () = stop.cancelled() => return,
            read = tokio::time::timeout(within, api.get_opt(&name)) => read,
        };
        match read {
            Ok(Ok(cm)) => currency.read(
                cm.as_ref()
                    .and_then(|cm| cm.metadata.resource_version.as_deref()),
                at,
            ),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "failed to read the policy ConfigMap to confirm the watch");
                currency.read_failed(format!(
                    "the last read of the policy ConfigMap failed: {err}"
                ));
            }
            Err(_) => currency.read_failed(format!(
                "the last read of the policy ConfigMap took more than {within:?}"
            )),
        }
    }
}

/// A random key of this process's own.
fn process_key() -> Vec<u8> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut key = vec![0; 32];
    // The system's randomness does not fail on the platforms served; should it,
    // the key stays zeros and the revision is a digest of the source's alone.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut key);
    key
}

fn short_digest(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_is_keyed_and_the_same_for_the_same_key_and_document() {
        let (one, two) = (
            PolicyState::new(&mut Registry::default()),
            PolicyState::new(&mut Registry::default()),
        );
        assert_eq!(*one.revision(), "");
        for state in [&one, &two] {
            state.set_revision_key(b"the-configmap-uid");
            state.offer_policy("test", "41", parse_policy("clusters: []\n"));
        }
        // Two replicas: one revision, whatever each counted.
        two.offer_policy("test", "41", parse_policy("clusters: []\n"));
        assert_ne!(one.generation(), two.generation());
        assert_eq!(one.revision(), two.revision());
        assert_eq!(one.revision().len(), 32);
        // Another version, or another key: another revision.
        two.offer_policy("test", "42", parse_policy("clusters: []\n"));
        assert_ne!(one.revision(), two.revision());
        let other = PolicyState::new(&mut Registry::default());
        other.offer_policy("test", "41", parse_policy("clusters: []\n"));
        assert_ne!(one.revision(), other.revision(), "a process's own key");
        // Keyed over the document: another version of the same document (a label
        // changed on the ConfigMap, say) keeps it.
        let text = "clusters: []\n";
        one.offer_policy_of("test", "43", text.as_bytes(), parse_policy(text));
        let kept = one.revision();
        one.offer_policy_of("test", "44", text.as_bytes(), parse_policy(text));
        assert_eq!(one.revision(), kept);
        one.offer_policy_of("test", "45", b"clusters: [] ", parse_policy(text));
        assert_ne!(one.revision(), kept);
    }

    #[tokio::test]
    async fn a_bad_document_keeps_the_last_good_policy_and_subscribers_see_each_generation() {
        let mut registry = Registry::default();
        let state = PolicyState::new(&mut registry);
        let mut generations = state.subscribe();
        assert!(!state.is_ready());
        assert_eq!(state.generation(), 0);

        let outcome = state.offer_policy("test", "1", parse_policy("controlPlaneNamespace: hub\n"));
        assert!(matches!(outcome, LoadOutcome::Loaded(1)));
        generations.changed().await.unwrap();
        assert_eq!(*generations.borrow_and_update(), 1);

        let outcome =
            state.offer_policy("test", "2", parse_policy("clusters: [{name: NOT_VALID}]\n"));
        assert!(matches!(outcome, LoadOutcome::Rejected(_)));
        assert_eq!(state.generation(), 1);
        assert_eq!(state.policy().control_plane_namespace(), "hub");
        let rejection = state.last_error().unwrap();
        assert!(rejection.to_string().contains("clusters[0].name"));
        let LoadPolicyError::Invalid(invalid) = &rejection.error else {
            panic!("a located problem: {rejection}");
        };
        assert_eq!(invalid.problems[0].path, "clusters[0].name");
        assert!(
            !generations.has_changed().unwrap(),
            "a rejected document is no new generation"
        );
        let (ready, detail) = state.readiness();
        assert!(ready);
        assert!(detail.contains("last policy reload failed"), "{detail}");

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("policy_reload_failures_total 1"), "{text}");
        assert!(text.contains("policy_generation 1"), "{text}");
    }

    #[tokio::test]
    async fn the_policy_file_is_reread_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        let state = PolicyState::new(&mut Registry::default());
        let mut last = None;
        std::fs::write(&path, "agentNamespace: a\n").unwrap();
        assert!(matches!(
            reload_file_once(&state, &path, &mut last).await,
            Some(LoadOutcome::Loaded(1))
        ));
        assert!(reload_file_once(&state, &path, &mut last).await.is_none());
        std::fs::write(&path, "agentNamespace: b\n").unwrap();
        assert!(matches!(
            reload_file_once(&state, &path, &mut last).await,
            Some(LoadOutcome::Loaded(2))
        ));
        assert_eq!(state.policy().agent_namespace(), "b");
    }
}
