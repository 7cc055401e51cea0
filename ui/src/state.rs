//! What the page shows, kept current by watches made as the user: the policy
//! ConfigMap, the Secrets of the control-plane namespace (values dropped as they
//! arrive), and, where configured, the managed clusters' agent reports and the
//! relay's write counters. Every change bumps one counter the live stream follows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::jiff::Timestamp;
use kube::api::{PartialObjectMeta, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use secret_relay_policy::Policy;
use secret_relay_policy::keys::DIGEST_ANNOTATION;
use secret_relay_policy::meta::name;
use secret_relay_runtime::{CancellationToken, PolicyState};
use tokio::sync::watch;

use crate::Config;

/// The annotation `kubectl apply` leaves, which holds the values: never kept.
pub(crate) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Annotations that hold the values or a function of them, dropped as they arrive
/// from any cluster: kubectl's last-applied configuration, and the unkeyed digest
/// of the values older versions of secret-relay stamped (an object not written
/// since may still carry it).
pub(crate) const NEVER_KEPT: [&str; 2] = [LAST_APPLIED, DIGEST_ANNOTATION];

/// Everything the server shares.
pub(crate) struct Shared {
    /// The policy, watched as the user.
    pub(crate) policy: PolicyState,
    /// `namespace/name` of the policy ConfigMap.
    pub(crate) policy_source: String,
    /// The user's client: every read and write of the page is made with it.
    pub(crate) client: Client,
    inner: Mutex<Inner>,
    changes: watch::Sender<u64>,
}

/// The watched state besides the policy.
#[derive(Clone, Debug, Default)]
pub(crate) struct Inner {
    pub(crate) secrets: SecretsCache,
    pub(crate) clusters: BTreeMap<String, ClusterReport>,
    pub(crate) relay: Option<RelayReport>,
    pub(crate) identity: Option<UserIdentity>,
}

/// The Secrets of the control-plane namespace, values dropped.
#[derive(Clone, Debug, Default)]
pub(crate) struct SecretsCache {
    pub(crate) namespace: String,
    pub(crate) items: BTreeMap<String, Secret>,
    pub(crate) synced: bool,
    pub(crate) error: Option<String>,
}

/// What one managed cluster's agent namespace tells: its Secrets' metadata and
/// the agent's Events.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClusterReport {
    pub(crate) namespace: String,
    pub(crate) secrets: BTreeMap<String, PartialObjectMeta<Secret>>,
    pub(crate) secrets_synced: bool,
    /// The latest agent Event per (Secret name, direction `up`/`down`).
    pub(crate) events: BTreeMap<(String, &'static str), AgentEvent>,
    pub(crate) error: Option<String>,
    /// Why the agent's Events cannot be read (the sync state then comes from down copies only).
    pub(crate) events_error: Option<String>,
}

/// One Event the agent recorded on a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AgentEvent {
    pub(crate) reason: String,
    pub(crate) note: String,
    pub(crate) warning: bool,
    pub(crate) time: Option<Timestamp>,
}

/// The relay's write counters, from its admin `/metrics`.
#[derive(Clone, Debug, Default)]
pub(crate) struct RelayReport {
    pub(crate) url: String,
    /// (decision, rule, count)
    pub(crate) writes: Vec<(String, String, f64)>,
    /// (reason, count)
    pub(crate) refusals: Vec<(String, f64)>,
    pub(crate) connected_clusters: Option<f64>,
    pub(crate) error: Option<String>,
    pub(crate) read_at: Option<Timestamp>,
}

/// Who the API server says the user is.
#[derive(Clone, Debug, Default)]
pub(crate) struct UserIdentity {
    pub(crate) username: String,
    pub(crate) groups: Vec<String>,
}

/// A consistent view to render: the policy snapshot and the watched state.
pub(crate) struct Snapshot {
    pub(crate) version: u64,
    pub(crate) policy: Arc<Policy>,
    pub(crate) policy_ready: bool,
    pub(crate) policy_generation: u64,
    pub(crate) policy_error: Option<String>,
    pub(crate) policy_source: String,
    pub(crate) inner: Inner,
}

impl Shared {
    pub(crate) fn new(client: Client, policy_source: String) -> Shared {
        Shared {
            policy: PolicyState::new(&mut Registry::default()),
            policy_source,
            client,
            inner: Mutex::new(Inner::default()),
            changes: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `f` to the state and tells the live streams.
    pub(crate) fn update(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.lock());
        self.bump();
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// A receiver that changes whenever anything the page shows changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The hub copies (values dropped) of `namespace` once the watch has listed
    /// them, waiting up to `within` for that first listing: `None` if it is not in
    /// by then. A plan over a listing not yet in would plan over nothing.
    pub(crate) async fn listed_secrets(
        &self,
        namespace: &str,
        within: Duration,
    ) -> Option<Vec<Secret>> {
        let mut changes = self.subscribe();
        let listed = async {
            loop {
                {
                    let inner = self.lock();
                    if inner.secrets.synced && inner.secrets.namespace == namespace {
                        return inner.secrets.items.values().cloned().collect();
                    }
                }
                if changes.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        };
        tokio::time::timeout(within, listed).await.ok()
    }

    /// The current hub copy (values dropped) named `name`, if the watch has it.
    pub(crate) fn secret(&self, name: &str) -> Option<Secret> {
        self.lock().secrets.items.get(name).cloned()
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let version = *self.changes.borrow();
        let (policy, generation) = self.policy.snapshot();
        Snapshot {
            version,
            policy,
            policy_ready: self.policy.is_ready(),
            policy_generation: generation,
            policy_error: self.policy.last_error().map(|e| e.to_string()),
            policy_source: self.policy_source.clone(),
            inner: self.lock().clone(),
        }
    }
}

/// Drops what must never be kept or sent: every value (`data` keeps its keys
/// with empty values, `stringData` goes), the annotations that repeat the values
/// or a digest of them ([`NEVER_KEPT`]) and the managed fields' field sets.
pub(crate) fn strip(mut secret: Secret) -> Secret {
    if let Some(data) = secret.data.as_mut() {
        for value in data.values_mut() {
            value.0.clear();
        }
    }
    secret.string_data = None;
    strip_metadata(&mut secret.metadata);
    secret
}

/// [`strip`] for metadata: the [`NEVER_KEPT`] annotations and the managed fields'
/// field sets go (a managed cluster's Secrets are read as metadata only).
pub(crate) fn strip_metadata(meta: &mut kube::api::ObjectMeta) {
    if let Some(a) = meta.annotations.as_mut() {
        for key in NEVER_KEPT {
            a.remove(key);
        }
    }
    if let Some(fields) = meta.managed_fields.as_mut() {
        for f in fields {
            f.fields_v1 = None;
        }
    }
}

/// Starts every watch: the policy ConfigMap, the control-plane Secrets, each
/// managed cluster's report, the relay's metrics and the user's identity.
pub(crate) fn spawn_watches(
    shared: &Arc<Shared>,
    config: &Config,
    clusters: Vec<(String, Client)>,
    relay_metrics: Option<String>,
    shutdown: CancellationToken,
) {
    tokio::spawn(secret_relay_runtime::watch_configmap(
        shared.policy.clone(),
        shared.client.clone(),
        config.policy_namespace.clone(),
        config.policy_name.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(forward_policy_changes(shared.clone(), shutdown.clone()));
    tokio::spawn(check_policy_access(
        shared.clone(),
        config.policy_namespace.clone(),
        config.policy_name.clone(),
    ));
    tokio::spawn(follow_namespace(
        shared.clone(),
        Side::ControlPlane,
        shutdown.clone(),
    ));
    for (name, client) in clusters {
        shared.update(|i| {
            i.clusters.insert(name.clone(), ClusterReport::default());
        });
        tokio::spawn(follow_namespace(
            shared.clone(),
            Side::Cluster { name, client },
            shutdown.clone(),
        ));
    }
    if let Some(url) = relay_metrics {
        tokio::spawn(poll_relay(
            shared.clone(),
            url,
            config.relay_metrics_interval,
            shutdown.clone(),
        ));
    }
    tokio::spawn(identify(shared.clone()));
}

/// The ConfigMap watch retries quietly; one read up front tells the page why
/// there is no policy when the user may not read it (or it does not exist).
async fn check_policy_access(shared: Arc<Shared>, namespace: String, name: String) {
    let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &namespace);
    if let Err(err) = api.get(&name).await
        && !shared.policy.is_ready()
    {
        shared.policy.source_problem(
            &format!("configmap {namespace}/{name}"),
            format!("failed to read the policy ConfigMap as you: {err}"),
        );
    }
}

/// Every policy reload attempt (good or bad) changes what the page shows.
async fn forward_policy_changes(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut attempts = shared.policy.subscribe_reloads();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = attempts.changed() => {
                if changed.is_err() {
                    return;
                }
                shared.bump();
            }
        }
    }
}

#[derive(Clone)]
enum Side {
    ControlPlane,
    Cluster { name: String, client: Client },
}

impl Side {
    fn namespace(&self, policy: &Policy) -> String {
        match self {
            Side::ControlPlane => policy.control_plane_namespace().to_owned(),
            Side::Cluster { .. } => policy.agent_namespace().to_owned(),
        }
    }
}

/// Follows one side's namespace, restarting the watches when the policy moves it.
async fn follow_namespace(shared: Arc<Shared>, side: Side, shutdown: CancellationToken) {
    let mut generations = shared.policy.subscribe();
    loop {
        let namespace = side.namespace(&shared.policy.policy());
        let token = shutdown.child_token();
        let task = match &side {
            Side::ControlPlane => {
                shared.update(|i| {
                    i.secrets = SecretsCache {
                        namespace: namespace.clone(),
                        ..SecretsCache::default()
                    };
                });
                tokio::spawn(follow_secrets(
                    shared.clone(),
                    namespace.clone(),
                    token.clone(),
                ))
            }
            Side::Cluster { name, client } => {
                shared.update(|i| {
                    i.clusters.insert(
                        name.clone(),
                        ClusterReport {
                            namespace: namespace.clone(),
                            ..ClusterReport::default()
                        },
                    );
                });
                tokio::spawn(follow_cluster(
                    shared.clone(),
                    name.clone(),
                    client.clone(),
                    namespace.clone(),
                    token.clone(),
                ))
            }
        };
        let stop = loop {
            tokio::select! {
                () = shutdown.cancelled() => break true,
                changed = generations.changed() => {
                    if changed.is_err() {
                        break true;
                    }
                    if side.namespace(&shared.policy.policy()) != namespace {
                        break false;
                    }
                }
            }
        };
        token.cancel();
        let _ = task.await;
        if stop {
            return;
        }
    }
}

async fn follow_secrets(shared: Arc<Shared>, namespace: String, shutdown: CancellationToken) {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &namespace);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    tokio::pin!(stream);
    let mut initial = BTreeMap::new();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        match event {
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(s)) => {
                initial.insert(name(&s.metadata).to_owned(), strip(s));
            }
            Ok(Event::InitDone) => {
                let items = std::mem::take(&mut initial);
                shared.update(|i| {
                    i.secrets.items = items;
                    i.secrets.synced = true;
                    i.secrets.error = None;
                });
            }
            Ok(Event::Apply(s)) => shared.update(|i| {
                i.secrets.error = None;
                i.secrets
                    .items
                    .insert(name(&s.metadata).to_owned(), strip(s));
            }),
            Ok(Event::Delete(s)) => shared.update(|i| {
                i.secrets.error = None;
                i.secrets.items.remove(name(&s.metadata));
            }),
            Err(err) => {
                tracing::warn!(%namespace, error = %err, "the Secrets watch failed; retrying");
                let message = format!("failed to watch Secrets in {namespace}: {err}");
                shared.update(|i| i.secrets.error = Some(message));
            }
        }
    }
}

async fn follow_cluster(
    shared: Arc<Shared>,
    cluster: String,
    client: Client,
    namespace: String,
    shutdown: CancellationToken,
) {
    // Metadata only: the page never reads a managed cluster's values.
    let secrets = watcher::watcher(
        Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), &namespace),
        watcher::Config::default(),
    )
    .default_backoff();
    let events = watcher::watcher(
        Api::<KubeEvent>::namespaced(client, &namespace),
        watcher::Config::default(),
    )
    .default_backoff();
    tokio::pin!(secrets, events);
    let feed = ClusterFeed {
        shared: &shared,
        cluster: &cluster,
        namespace: &namespace,
    };
    let mut initial = BTreeMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(event) = secrets.next() => feed.on_secret(event, &mut initial),
            Some(event) = events.next() => feed.on_event(event),
        }
    }
}

/// One managed cluster's report, as its two watches (Secrets' metadata and the
/// agent's Events in `namespace`) change it.
struct ClusterFeed<'a> {
    shared: &'a Shared,
    cluster: &'a str,
    namespace: &'a str,
}

impl ClusterFeed<'_> {
    /// Applies `f` to the cluster's report, if the page still follows the cluster.
    fn report(&self, f: impl FnOnce(&mut ClusterReport)) {
        self.shared.update(|i| {
            if let Some(r) = i.clusters.get_mut(self.cluster) {
                f(r);
            }
        });
    }

    /// One event of the Secrets watch; `initial` gathers a (re)list until it is done.
    fn on_secret(
        &self,
        event: Result<Event<PartialObjectMeta<Secret>>, watcher::Error>,
        initial: &mut BTreeMap<String, PartialObjectMeta<Secret>>,
    ) {
        match event {
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(mut m)) => {
                strip_metadata(&mut m.metadata);
                initial.insert(name(&m.metadata).to_owned(), m);
            }
            Ok(Event::InitDone) => {
                let items = std::mem::take(initial);
                self.report(|r| {
                    r.secrets = items;
                    r.secrets_synced = true;
                    r.error = None;
                });
            }
            Ok(Event::Apply(mut m)) => {
                strip_metadata(&mut m.metadata);
                self.report(|r| {
                    r.error = None;
                    r.secrets.insert(name(&m.metadata).to_owned(), m);
                });
            }
            Ok(Event::Delete(m)) => self.report(|r| {
                r.secrets.remove(name(&m.metadata));
            }),
            Err(err) => {
                let message = format!(
                    "failed to watch Secrets in {} on cluster {}: {err}",
                    self.namespace, self.cluster
                );
                self.report(|r| r.error = Some(message));
            }
        }
    }

    /// One event of the Events watch: the newest agent Event per Secret and direction.
    fn on_event(&self, event: Result<Event<KubeEvent>, watcher::Error>) {
        match event {
            Ok(Event::Apply(e) | Event::InitApply(e)) => {
                if let Some((key, ev)) = agent_event(&e) {
                    self.report(|r| {
                        r.events_error = None;
                        let newer = r.events.get(&key).is_none_or(|old| old.time <= ev.time);
                        if newer {
                            r.events.insert(key, ev);
                        }
                    });
                }
            }
            Ok(Event::InitDone) => self.report(|r| r.events_error = None),
            Ok(_) => {}
            Err(err) => {
                let message = if err.to_string().contains("404")
                    || err.to_string().contains("NotFound")
                {
                    "this API server serves no events.k8s.io/v1 Events: the sync state comes from down copies only".to_owned()
                } else {
                    format!("failed to watch Events in {}: {err}", self.namespace)
                };
                self.report(|r| r.events_error = Some(message));
            }
        }
    }
}

/// The (Secret name, direction) and content of one of the agent's Events, when
/// it is one (`UpSynced`, `UpSyncDenied`, `UpSyncRevoked`, `UpSyncFailed`,
/// `DownSyncConflict`, `DownCopyLeaving`, `DownCopyDeletionHeld`,
/// `DownSyncFailed` about a Secret).
fn agent_event(e: &KubeEvent) -> Option<((String, &'static str), AgentEvent)> {
    let regarding = e.regarding.as_ref()?;
    if regarding.kind.as_deref() != Some("Secret") {
        return None;
    }
    let reason = e.reason.as_deref()?;
    let direction = match reason {
        "UpSynced" | "UpSyncDenied" | "UpSyncRevoked" | "UpSyncFailed" => "up",
        "DownSyncConflict" | "DownCopyLeaving" | "DownCopyDeletionHeld" | "DownSyncFailed" => {
            "down"
        }
        _ => return None,
    };
    let time = e
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
    Some((
        (regarding.name.clone()?, direction),
        AgentEvent {
            reason: reason.to_owned(),
            note: e.note.clone().unwrap_or_default(),
            warning: e.type_.as_deref() == Some("Warning"),
            time,
        },
    ))
}

/// Reads the relay's admin `/metrics` every `interval`.
async fn poll_relay(
    shared: Arc<Shared>,
    url: String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = read_metrics(&client, &url).await;
        let report = match result {
            Ok(text) => {
                let mut r = parse_relay_metrics(&text);
                r.read_at = Some(Timestamp::now());
                r
            }
            Err(error) => RelayReport {
                error: Some(format!("failed to read the relay's metrics: {error}")),
                ..RelayReport::default()
            },
        };
        let report = RelayReport {
            url: url.clone(),
            ..report
        };
        shared.update(|i| i.relay = Some(report));
    }
}

async fn read_metrics(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
    url: &str,
) -> Result<String, String> {
    use http_body_util::BodyExt as _;
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "the metrics are not UTF-8".to_owned())
}

/// The relay's write, refusal and connection series out of a Prometheus or
/// OpenMetrics text exposition (whatever its metric name prefix).
pub(crate) fn parse_relay_metrics(text: &str) -> RelayReport {
    let mut report = RelayReport::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some((s, v)) => (s.trim(), v.trim()),
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
            None => (series, BTreeMap::new()),
        };
        if name.ends_with("relay_writes_total") {
            report.writes.push((
                labels.get("decision").cloned().unwrap_or_default(),
                labels.get("rule").cloned().unwrap_or_default(),
                value,
            ));
        } else if name.ends_with("relay_refusals_total") {
            report
                .refusals
                .push((labels.get("reason").cloned().unwrap_or_default(), value));
        } else if name.ends_with("relay_connected_clusters") {
            report.connected_clusters = Some(value);
        }
    }
    report
        .writes
        .sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    report.refusals.sort_by(|a, b| a.0.cmp(&b.0));
    report
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    out
}

/// Asks the API server who the user is (SelfSubjectReview); best effort.
async fn identify(shared: Arc<Shared>) {
    let api: Api<SelfSubjectReview> = Api::all(shared.client.clone());
    match api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(review) => {
            let info = review.status.and_then(|s| s.user_info).unwrap_or_default();
            let identity = UserIdentity {
                username: info.username.unwrap_or_default(),
                groups: info.groups.unwrap_or_default(),
            };
            shared.update(|i| i.identity = Some(identity));
        }
        Err(err) => tracing::debug!(error = %err, "failed to ask who the user is"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripping_a_secret_keeps_its_keys_and_drops_every_value() {
        let s: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "db",
                "annotations": {
                    LAST_APPLIED: "{\"data\":{\"password\":\"c2VjcmV0\"}}",
                    DIGEST_ANNOTATION: "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
                    "a": "b",
                },
            },
            "data": {"password": "c2VjcmV0"},
            "stringData": {"token": "secret"},
        }))
        .unwrap();
        let s = strip(s);
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            !text.contains("c2VjcmV0") && !text.contains("secret\""),
            "{text}"
        );
        assert_eq!(s.data.unwrap().keys().collect::<Vec<_>>(), vec!["password"]);
        // Neither kubectl's copy of the values nor an old version's digest of them.
        assert_eq!(
            s.metadata.annotations.unwrap().keys().collect::<Vec<_>>(),
            vec!["a"]
        );
        let mut meta: kube::api::ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "db",
            "annotations": {DIGEST_ANNOTATION: "sha256:00", "secret-relay.io/source": "u-1/7"},
        }))
        .unwrap();
        strip_metadata(&mut meta);
        assert_eq!(
            meta.annotations.unwrap().keys().collect::<Vec<_>>(),
            vec!["secret-relay.io/source"]
        );
    }

    fn unconnected_shared() -> Arc<Shared> {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        Arc::new(Shared::new(client, "secret-relay-system/policy".into()))
    }

    #[tokio::test]
    async fn a_plan_waits_for_the_first_listing_of_the_namespace_it_plans_over() {
        let shared = unconnected_shared();
        shared.update(|i| i.secrets.namespace = "argocd".into());
        // Not listed yet: nothing within the wait, rather than an empty listing.
        assert!(
            shared
                .listed_secrets("argocd", Duration::ZERO)
                .await
                .is_none()
        );
        // Listed, but another namespace's (the policy moved it): still nothing.
        shared.update(|i| {
            i.secrets.namespace = "old".into();
            i.secrets.synced = true;
        });
        assert!(
            shared
                .listed_secrets("argocd", Duration::ZERO)
                .await
                .is_none()
        );
        // A listing that arrives while the plan waits is the one it plans over.
        let lister = shared.clone();
        let waiting = tokio::spawn(async move {
            lister
                .listed_secrets("argocd", Duration::from_secs(600))
                .await
        });
        shared.update(|i| {
            let mut s = Secret::default();
            s.metadata.name = Some("repo".into());
            i.secrets = SecretsCache {
                namespace: "argocd".into(),
                items: BTreeMap::from([("repo".into(), s)]),
                synced: true,
                error: None,
            };
        });
        let listed = waiting.await.unwrap().expect("the listing that arrived");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].metadata.name.as_deref(), Some("repo"));
    }

    #[test]
    fn relay_metrics_give_writes_by_decision_and_rule() {
        let text = "# HELP secret_relay_relay_writes Writes\n\
            # TYPE secret_relay_relay_writes counter\n\
            secret_relay_relay_writes_total{decision=\"denied\",rule=\"no-matching-source\"} 2\n\
            secret_relay_relay_writes_total{decision=\"allowed\",rule=\"up-sync-new\"} 5\n\
            secret_relay_relay_refusals_total{reason=\"unregistered-cluster\"} 1\n\
            secret_relay_relay_connected_clusters 2\n\
            # EOF\n";
        let r = parse_relay_metrics(text);
        assert_eq!(
            r.writes,
            vec![
                ("allowed".into(), "up-sync-new".into(), 5.0),
                ("denied".into(), "no-matching-source".into(), 2.0),
            ]
        );
        assert_eq!(r.refusals, vec![("unregistered-cluster".into(), 1.0)]);
        assert_eq!(r.connected_clusters, Some(2.0));
    }
}
