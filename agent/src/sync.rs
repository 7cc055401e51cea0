//! The reconciler: both stores, the triggers, and what one name needs.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource as _};
use secret_relay_policy::{
    Direction, Owner, Rule, StripMetadata, carried_annotations, carried_labels, digest, is_adopted,
    is_down_copy, keys, meta, owner, source_marker,
};
use secret_relay_runtime::CancellationToken;
use tokio::sync::mpsc;

use crate::metrics::{Metrics, StatusLabels};

/// Up to this many names are reconciled at once (each holds at most one write).
pub const CONCURRENCY: usize = 32;

/// Events waiting to be recorded in each lane; a reconcile waits only when its
/// object's lane holds this many.
const EVENT_QUEUE: usize = 256;

/// Lanes of Events recorded at once; one object's Events all take the same lane, in
/// the order of its decisions.
const EVENT_LANES: usize = 4;

/// Annotations that describe a write, not the Secret: never copied between clusters.
/// (An old version's [`keys::DIGEST_ANNOTATION`] is not one of them: on a down copy
/// it is drift, and the copy is written again without it.)
const WRITE_ANNOTATIONS: &[&str] = &[
    keys::ADOPTED_ANNOTATION,
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// How the agent deletes down copies: never at once, never many at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    /// A down copy whose hub copy left the view is deleted only after this long,
    /// and kept if it comes back within it.
    pub grace: Duration,
    /// At most this share of the cluster's down copies (and at least one) is
    /// deleted within [`Deletion::budget_window`]; further deletions are held until
    /// a cluster admin confirms them (or the copies come back).
    pub budget_percent: u32,
    /// The window of the deletion budget.
    pub budget_window: Duration,
    /// The agent deletes every down copy after the relay has refused this cluster
    /// as unregistered, and nothing else, for this long.
    pub unregistered_grace: Duration,
}

impl Default for Deletion {
    fn default() -> Deletion {
        Deletion {
            grace: Duration::from_secs(60),
            budget_percent: 20,
            budget_window: Duration::from_secs(60),
            unregistered_grace: Duration::from_secs(600),
        }
    }
}

/// The agent of one managed cluster.
pub struct Agent {
    cluster: String,
    namespace: String,
    deletion: Deletion,
    local: Client,
    relay: Client,
    metrics: Arc<Metrics>,
    recorder: Recorders,
    local_store: Store<Secret>,
    view_store: Store<Secret>,
    writers: Mutex<
        Option<(
            reflector::store::Writer<Secret>,
            reflector::store::Writer<Secret>,
        )>,
    >,
    local_ready: AtomicBool,
    view_ready: AtomicBool,
    generation: AtomicU64,
    /// Bumped whenever the relay's policy may have changed: a new generation, or the
    /// relay answering again after it could not be reached (a replica started since
    /// counts its generations from 1, so the number alone may not change). Denials
    /// are remembered per epoch, so each such change retries them.
    epoch: AtomicU64,
    control_plane_namespace: Mutex<Option<String>>,
    /// What the policy strips from copies beside the built-in rule, as the relay
    /// last said with its generation.
    strip: Mutex<Arc<StripMetadata>>,
    memo: Mutex<Memo>,
    /// Bumped whenever a status changes (tests and the demo wait on it).
    changes: tokio::sync::watch::Sender<u64>,
    /// Where delayed retries send their trigger (set when running).
    retries: Mutex<Option<mpsc::UnboundedSender<Trigger>>>,
    /// Events to record: published beside the reconciler, so a reconcile slot is
    /// free for the next write as soon as its own is done.
    events: Vec<mpsc::Sender<(ObjectReference, KubeEvent)>>,
    events_rx: Mutex<Vec<mpsc::Receiver<(ObjectReference, KubeEvent)>>>,
}

/// What the reconciler remembers between passes.
#[derive(Default)]
struct Memo {
    /// Per name: the fingerprint pushed and the hub copy's resourceVersion at the push,
    /// so an unchanged Secret is not pushed again while the hub copy catches up.
    pushed: HashMap<String, (Fingerprint, Option<String>)>,
    /// Names whose hub copy this agent synced and has not released: a denial of
    /// one of them is a revocation (the policy took back what it allowed).
    synced: HashSet<String>,
    /// Per name: the fingerprint denied and the policy epoch of the denial.
    denied: HashMap<String, (Fingerprint, u64)>,
    /// Per name and direction: the status series currently set.
    status: HashMap<(String, &'static str), StatusLabels>,
    /// Conflicts already reported, by name and local resourceVersion.
    conflicts: HashMap<String, Option<String>>,
    /// Failed attempts in a row, by name, for the retry backoff.
    attempts: HashMap<String, u32>,
    /// Down copies whose hub copy left the view, since when.
    leaving: HashMap<String, std::time::Instant>,
    /// Which down copies were deleted when, within the budget window.
    deleted: VecDeque<(std::time::Instant, String)>,
    /// Down copies whose deletion is held beyond the budget.
    held: std::collections::BTreeSet<String>,
    /// Since when the relay has refused this cluster as unregistered, without any
    /// other answer in between; and whether its down copies are gone for it.
    unregistered: Option<(std::time::Instant, bool)>,
}

/// What makes two Secrets the same for sync: labels, annotations (without the
/// write-only ones), type, `immutable` and the digest of the data, which the agent
/// computes from the values it holds on both sides. It stays in memory: nothing
/// the agent writes, logs or reports carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    type_: String,
    immutable: bool,
    digest: String,
}

/// The relay's answer to a policy generation request.
struct GenerationAnswer {
    control_plane_namespace: String,
    generation: u64,
    strip: StripMetadata,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("cluster", &self.cluster)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

enum Trigger {
    Name(String),
    Full,
}

impl Fingerprint {
    /// The fingerprint of `secret`, ignoring `skip_labels`.
    pub fn of(secret: &Secret, skip_labels: &[&str]) -> Fingerprint {
        Fingerprint::without(secret, skip_labels, &[])
    }

    /// The fingerprint of `secret`, ignoring `skip_labels` and `skip_annotations`.
    fn without(secret: &Secret, skip_labels: &[&str], skip_annotations: &[&str]) -> Fingerprint {
        Fingerprint {
            labels: secret
                .metadata
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| !skip_labels.contains(&k.as_str()))
                .collect(),
            annotations: secret
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| {
                    !WRITE_ANNOTATIONS.contains(&k.as_str())
                        && !skip_annotations.contains(&k.as_str())
                })
                .collect(),
            type_: secret.type_.clone().unwrap_or_else(|| "Opaque".to_owned()),
            immutable: secret.immutable == Some(true),
            digest: digest(secret),
        }
    }
}

/// Whether `current` cannot become `want` by an update: its type differs (the type
/// is immutable), or it is immutable and its data or the flag would change. Such a
/// copy is replaced: deleted, then created.
pub fn needs_replacing(current: &Secret, want: &Secret) -> bool {
    let ty = |s: &Secret| s.type_.clone().unwrap_or_else(|| "Opaque".to_owned());
    let immutable = |s: &Secret| s.immutable == Some(true);
    ty(current) != ty(want)
        || (immutable(current) && (!immutable(want) || digest(current) != digest(want)))
}

/// The hub copy the agent asks the relay to write for local Secret `local`: the
/// labels and annotations that go up ([`secret_relay_policy::carry`]: the opt-in
/// label and the target annotations included, tool ownership and secret-relay's
/// stamps not), its type, `immutable` and data. The owner label and the adopted
/// annotation are the webhook's to stamp.
pub fn hub_copy_body(
    local: &Secret,
    control_plane_namespace: &str,
    strip: &StripMetadata,
) -> Secret {
    let mut body = Secret::default();
    body.metadata.name = local.metadata.name.clone();
    body.metadata.namespace = Some(control_plane_namespace.to_owned());
    body.metadata.labels = Some(carried_labels(
        local.metadata.labels.as_ref(),
        Direction::Up,
        strip,
    ));
    body.metadata.annotations = Some(carried_annotations(
        local.metadata.annotations.as_ref(),
        Direction::Up,
        strip,
    ));
    body.type_ = local.type_.clone();
    body.immutable = local.immutable.filter(|i| *i);
    body.data = local.data.clone();
    body
}

/// The down copy of hub copy `hub` in namespace `namespace`: the labels and
/// annotations that go down ([`secret_relay_policy::carry`]: no opt-in label, no
/// target annotations, no tool ownership), the owner label naming its origin
/// (`control-plane` or `cluster.<name>`), the version of the hub copy it is
/// written from ([`keys::SOURCE_ANNOTATION`]: `<uid>/<resourceVersion>`, nothing
/// of the values), its type, `immutable` and data.
pub fn down_copy(hub: &Secret, namespace: &str, strip: &StripMetadata) -> Secret {
    let mut labels = carried_labels(hub.metadata.labels.as_ref(), Direction::Down, strip);
    let origin = match owner(hub) {
        Owner::Cluster(c) => format!("{}{c}", keys::OWNER_CLUSTER_PREFIX),
        _ => "control-plane".to_owned(),
    };
    labels.insert(keys::OWNER_LABEL.to_owned(), origin);
    let mut annotations =
        carried_annotations(hub.metadata.annotations.as_ref(), Direction::Down, strip);
    if let Some(source) = source_marker(hub) {
        annotations.insert(keys::SOURCE_ANNOTATION.to_owned(), source);
    }
    let mut copy = Secret::default();
    copy.metadata.name = hub.metadata.name.clone();
    copy.metadata.namespace = Some(namespace.to_owned());
    copy.metadata.labels = Some(labels);
    copy.metadata.annotations = Some(annotations);
    copy.type_ = hub.type_.clone();
    copy.immutable = hub.immutable.filter(|i| *i);
    copy.data = hub.data.clone();
    copy
}

fn name_of(s: &Secret) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

/// Whether an error answer is a decision of secret-relay's rules (the relay's or the
/// webhook's: both name the rule, `(rule <id>)`). The API server's own refusals
/// (400, 409, 422: validation, a conflict, a field that cannot change) are errors,
/// retried with backoff, and so is any other 403: the API server's authorization of
/// the relay's own identity, RBAC that is still loading after a restart (or missing).
fn is_denial(status: &kube::core::Status) -> bool {
    status.code == 403 && status.message.contains("(rule ")
}

/// Whether `err` is the relay's refusal of this cluster as unregistered: a 403 that
/// names rule `unknown-cluster`, which the relay gives only under a loaded policy
/// and over the cluster's authenticated connection. Nothing else counts: not a
/// network error, not another 403, not a 503 of a relay still loading its policy.
fn is_unregistered(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status)
        if status.code == 403 && denied_rule(status) == Rule::UnknownCluster.as_str())
}

/// The rule id a relay or webhook denial names: the Status cause's reason, else the
/// `(rule <id>)` at the end of the message.
fn denied_rule(status: &kube::core::Status) -> String {
    if let Some(cause) = status.details.as_ref().and_then(|d| d.causes.first())
        && !cause.reason.is_empty()
    {
        return cause.reason.clone();
    }
    status
        .message
        .rsplit_once("(rule ")
        .map(|(_, r)| r.trim_end_matches(')').to_owned())
        .unwrap_or_else(|| status.reason.clone())
}

impl Agent {
    /// An agent for `cluster` syncing namespace `namespace` through `relay`.
    pub fn new(
        cluster: String,
        namespace: String,
        deletion: Deletion,
        local: Client,
        relay: Client,
        metrics: Arc<Metrics>,
    ) -> Agent {
        let (local_store, local_writer) = reflector::store();
        let (view_store, view_writer) = reflector::store();
        let (events, events_rx) = (0..EVENT_LANES).map(|_| mpsc::channel(EVENT_QUEUE)).unzip();
        let recorder = Recorders::new(
            &local,
            &Reporter {
                controller: "secret-relay-agent".to_owned(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Agent {
            cluster,
            namespace,
            deletion,
            local,
            relay,
            metrics,
            recorder,
            local_store,
            view_store,
            writers: Mutex::new(Some((local_writer, view_writer))),
            local_ready: AtomicBool::new(false),
            view_ready: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            control_plane_namespace: Mutex::new(None),
            strip: Mutex::new(Arc::new(StripMetadata::default())),
            memo: Mutex::new(Memo::default()),
            changes: tokio::sync::watch::channel(0).0,
            retries: Mutex::new(None),
            events,
            events_rx: Mutex::new(events_rx),
        }
    }

    /// The cluster this agent is.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The relay's policy generation last seen.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Ready once both sides have been listed completely.
    pub fn readiness(&self) -> (bool, String) {
        let local = self.local_ready.load(Ordering::Acquire);
        let view = self.view_ready.load(Ordering::Acquire);
        let ready = local && view;
        let mut detail = format!(
            "local namespace {} listed: {local}; relay view listed: {view}; policy generation {}",
            self.namespace,
            self.generation()
        );
        let memo = self.memo();
        if !memo.held.is_empty() {
            detail.push_str(&format!(
                "; {} down-copy deletions held beyond the budget ({}): confirm each with `kubectl -n {} annotate secret <name> {}=true`",
                memo.held.len(),
                memo.held.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                self.namespace,
                keys::CONFIRM_DELETION_ANNOTATION
            ));
        }
        if !memo.leaving.is_empty() {
            detail.push_str(&format!(
                "; {} down copies left the view and go after the {:?} grace",
                memo.leaving.len(),
                self.deletion.grace
            ));
        }
        if let Some((since, done)) = memo.unregistered {
            detail.push_str(&format!(
                "; the relay has refused this cluster as unregistered for {:?}{}",
                since.elapsed(),
                if done {
                    ": its down copies are deleted"
                } else {
                    ""
                }
            ));
        }
        (ready, detail)
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The control-plane namespace the relay named, once known.
    pub fn control_plane_namespace(&self) -> Option<String> {
        self.control_plane_namespace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs until `shutdown`: the two reflectors, the generation long poll and the
    /// reconciler.
    pub async fn run(self: Arc<Self>, resync: Duration, shutdown: CancellationToken) {
        let Some((local_writer, view_writer)) = self
            .writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            tracing::error!("the agent is already running");
            return;
        };
        // The relay says which namespace holds the hub copies, and its generation.
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            first = self.first_generation() => first,
        };
        let cp = first.control_plane_namespace.clone();
        *self
            .control_plane_namespace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cp.clone());
        self.set_generation(first);

        let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
        *self
            .retries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx.clone());
        let mut tasks = tokio::task::JoinSet::new();
        let local_api: Api<Secret> = Api::namespaced(self.local.clone(), &self.namespace);
        tasks.spawn(follow(
            "local namespace",
            local_api,
            local_writer,
            tx.clone(),
            self.clone(),
            Side::Local,
            shutdown.clone(),
        ));
        let view_api: Api<Secret> = Api::namespaced(self.relay.clone(), &cp);
        tasks.spawn(follow(
            "relay view",
            view_api,
            view_writer,
            tx.clone(),
            self.clone(),
            Side::View,
            shutdown.clone(),
        ));
        tasks.spawn(self.clone().poll_generations(tx.clone(), shutdown.clone()));
        let lanes = std::mem::take(
            &mut *self
                .events_rx
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for lane in lanes {
            tasks.spawn(publish_events(self.recorder.clone(), lane));
        }

        // A work queue, as controllers keep: each name is reconciled by one task at a
        // time, a name triggered while it runs goes again after, and a free slot takes
        // the next name at once (no pass waits for its slowest write).
        let mut queue = WorkQueue::default();
        let mut running = futures::stream::FuturesUnordered::new();
        let mut ticker = tokio::time::interval(resync);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while running.len() < CONCURRENCY
                && let Some(name) = queue.next()
            {
                let this = self.clone();
                let cp = cp.clone();
                let epoch = self.epoch.load(Ordering::Acquire);
                running.push(async move {
                    this.reconcile(&cp, &name, epoch).await;
                    name
                });
            }
            let trigger = tokio::select! {
                () = shutdown.cancelled() => break,
                Some(name) = running.next(), if !running.is_empty() => {
                    queue.done(&name);
                    continue;
                }
                _ = ticker.tick() => Trigger::Full,
                t = rx.recv() => match t { Some(t) => t, None => break },
            };
            match trigger {
                Trigger::Name(name) => queue.add(name),
                Trigger::Full => {
                    for s in self.local_store.state() {
                        queue.add(name_of(&s));
                    }
                    for s in self.view_store.state() {
                        queue.add(name_of(&s));
                    }
                }
            }
        }
        tasks.abort_all();
    }

    fn set_generation(&self, answer: GenerationAnswer) {
        let generation = answer.generation;
        *self
            .strip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(answer.strip);
        self.generation.store(generation, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.changes.send_modify(|n| *n += 1);
        self.metrics
            .policy_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// What the policy strips from copies beside the built-in rule.
    fn strip(&self) -> Arc<StripMetadata> {
        self.strip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn generation_request(
        &self,
        after: Option<u64>,
    ) -> Result<GenerationAnswer, kube::Error> {
        let path = match after {
            Some(g) => format!("/apis/secret-relay.io/v1/generation?after={g}"),
            None => "/apis/secret-relay.io/v1/generation".to_owned(),
        };
        let req = http::Request::get(path)
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        let mut answer: serde_json::Value = self.relay.request(req).await?;
        let control_plane_namespace = answer["controlPlaneNamespace"]
            .as_str()
            .unwrap_or("argocd")
            .to_owned();
        let strip = serde_json::from_value(answer["stripMetadata"].take()).unwrap_or_default();
        Ok(GenerationAnswer {
            control_plane_namespace,
            generation: answer["generation"].as_u64().unwrap_or(0),
            strip,
        })
    }

    async fn first_generation(&self) -> GenerationAnswer {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.generation_request(None).await {
                Ok(answer) => {
                    self.answered();
                    return answer;
                }
                Err(err) => {
                    self.refused(&err).await;
                    tracing::warn!(error = %err, "failed to reach the relay; retrying");
                    tokio::time::sleep(jitter(delay)).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Long-polls the relay's policy generation; a new one reconciles everything, so
    /// a Secret an older policy denied is tried again.
    async fn poll_generations(
        self: Arc<Self>,
        tx: mpsc::UnboundedSender<Trigger>,
        shutdown: CancellationToken,
    ) {
        let mut delay = Duration::from_millis(100);
        // Whether the relay could not be reached since its last answer: the replica
        // that answers next may serve another policy under the same number, so ask
        // it at once (no long poll) and re-evaluate whatever it says.
        let mut lost = false;
        loop {
            let after = self.generation();
            let answer = tokio::select! {
                () = shutdown.cancelled() => return,
                a = self.generation_request((!lost).then_some(after)) => a,
            };
            match answer {
                Ok(answer) => {
                    self.answered();
                    delay = Duration::from_millis(100);
                    let generation = answer.generation;
                    if generation != after || lost {
                        tracing::info!(
                            generation,
                            relay_was_unreachable = lost,
                            "the relay serves a new policy generation, or may"
                        );
                        self.set_generation(answer);
                        let _ = tx.send(Trigger::Full);
                    }
                    lost = false;
                }
                Err(err) => {
                    lost = true;
                    self.refused(&err).await;
                    tracing::debug!(error = %err, "policy generation poll failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(jitter(delay)) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// The relay answered: this cluster is registered (again).
    fn answered(&self) {
        if self.memo().unregistered.take().is_some() {
            tracing::info!("the relay serves this cluster again");
            self.metrics.unregistered.set(0);
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// The relay did not answer with a generation: `err` is its authenticated
    /// refusal of this cluster as unregistered (rule `unknown-cluster`), or anything
    /// else, which ends a run of refusals (a network error never deletes anything).
    /// After refusals alone for [`Deletion::unregistered_grace`], every down copy
    /// goes: the control plane no longer sends this cluster anything.
    async fn refused(&self, err: &kube::Error) {
        let unregistered = is_unregistered(err);
        let now = std::time::Instant::now();
        let purge = {
            let mut memo = self.memo();
            if !unregistered {
                memo.unregistered = None;
                false
            } else {
                let (since, done) = memo.unregistered.get_or_insert((now, false));
                let due = !*done && now.duration_since(*since) >= self.deletion.unregistered_grace;
                if due {
                    *done = true;
                }
                due
            }
        };
        self.metrics.unregistered.set(i64::from(unregistered));
        self.changes.send_modify(|n| *n += 1);
        if purge {
            tracing::warn!(grace = ?self.deletion.unregistered_grace, "the relay has refused this cluster as unregistered for the whole grace: deleting its down copies");
            self.purge_down_copies().await;
        }
    }

    /// Deletes every down copy of the agent namespace, read from the API server
    /// (the view may be stale), each under the version read.
    async fn purge_down_copies(&self) {
        let api: Api<Secret> = Api::namespaced(self.local.clone(), &self.namespace);
        let params = kube::api::ListParams::default().labels(keys::OWNER_LABEL);
        let copies = match api.list(&params).await {
            Ok(list) => list.items,
            Err(err) => {
                tracing::warn!(error = %err, "failed to list the down copies; tried again at the next refusal");
                if let Some((_, done)) = self.memo().unregistered.as_mut() {
                    *done = false;
                }
                return;
            }
        };
        for d in copies.iter().filter(|d| is_down_copy(d)) {
            if self.delete_down_copy(d).await {
                self.event(
                    d,
                    EventType::Warning,
                    "DownCopyDeleted",
                    format!(
                        "the relay has refused cluster {} as unregistered for {:?}: its down copies are deleted (registering the cluster again brings them back)",
                        self.cluster, self.deletion.unregistered_grace
                    ),
                )
                .await;
            }
        }
    }

    async fn reconcile(&self, cp: &str, name: &str, epoch: u64) {
        if self.memo().unregistered.is_some_and(|(_, purged)| purged) {
            // The relay no longer serves this cluster: its view is stale, and its
            // down copies are gone on purpose.
            return;
        }
        let local = self
            .local_store
            .get(&ObjectRef::new(name).within(&self.namespace));
        let hub = self.view_store.get(&ObjectRef::new(name).within(cp));
        let both_listed =
            self.local_ready.load(Ordering::Acquire) && self.view_ready.load(Ordering::Acquire);
        let mine = hub
            .as_ref()
            .is_some_and(|h| owner(h) == Owner::Cluster(self.cluster.clone()));
        let opted = local
            .as_ref()
            .filter(|s| meta::is_opted_in(&s.metadata) && !is_down_copy(s));
        match (opted, &hub) {
            (Some(s), _) => self.up(cp, s, hub.as_deref(), mine, epoch).await,
            (None, Some(h)) if mine && both_listed => self.release(name, h).await,
            _ => {}
        }
        if opted.is_some() || mine {
            return;
        }
        match (&hub, &local) {
            (Some(h), _) => self.down(h, local.as_deref()).await,
            (None, Some(d)) if is_down_copy(d) && both_listed => self.leave(d).await,
            (None, None) => {
                // Gone on both sides: nothing is leaving or held under this name.
                let mut memo = self.memo();
                let was = memo.leaving.remove(name).is_some() | memo.held.remove(name);
                drop(memo);
                if was {
                    self.metrics.deletions_held.set(self.held_count());
                    self.clear_status(name, "down");
                }
            }
            _ => {}
        }
    }

    /// A down copy whose hub copy left the view: deleted after the grace, within
    /// the budget, or once a cluster admin confirms it.
    async fn leave(&self, d: &Secret) {
        let name = name_of(d);
        let now = std::time::Instant::now();
        let confirmed = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(keys::CONFIRM_DELETION_ANNOTATION))
            .is_some_and(|v| v == "true");
        let since = *self.memo().leaving.entry(name.clone()).or_insert(now);
        let left = self
            .deletion
            .grace
            .saturating_sub(now.duration_since(since));
        if !confirmed && !left.is_zero() {
            if self.set_status(&name, "down", "leaving", "") {
                tracing::info!(%name, grace = ?self.deletion.grace, "a down copy left the view; it is deleted after the grace");
                self.event(
                    d,
                    EventType::Normal,
                    "DownCopyLeaving",
                    format!(
                        "the control plane no longer sends {name} to this cluster: the copy is deleted after {:?} unless it comes back",
                        self.deletion.grace
                    ),
                )
                .await;
            }
            self.retry_in(&name, left + Duration::from_millis(50));
            return;
        }
        if !confirmed && let Err((deleted, budget)) = self.reserve_deletion(now, &name) {
            let newly = self.memo().held.insert(name.clone());
            self.metrics.deletions_held.set(self.held_count());
            self.set_status(&name, "down", "held", "");
            if newly {
                tracing::warn!(%name, deleted, budget, "a down-copy deletion is held beyond the budget");
                self.event(
                    d,
                    EventType::Warning,
                    "DownCopyDeletionHeld",
                    format!(
                        "the control plane no longer sends {name} to this cluster, but {deleted} down copies were deleted within {:?} (the budget is {budget}): the copy is kept until it comes back or a cluster admin confirms with `kubectl -n {} annotate secret {name} {}=true`",
                        self.deletion.budget_window,
                        self.namespace,
                        keys::CONFIRM_DELETION_ANNOTATION
                    ),
                )
                .await;
            }
            return;
        }
        let gone = self.delete_down_copy(d).await;
        let mut memo = self.memo();
        if gone {
            memo.leaving.remove(&name);
            memo.held.remove(&name);
        } else if !confirmed
            && let Some(i) = memo
                .deleted
                .iter()
                .rposition(|(t, n)| *t == now && *n == name)
        {
            // Not deleted: its place in the budget is given back.
            memo.deleted.remove(i);
        }
        drop(memo);
        self.metrics.deletions_held.set(self.held_count());
    }

    /// Takes one deletion of the budget at `now`; `Err((deleted, budget))` when it
    /// would exceed it: `deleted` copies went within the window, of `budget`. Taken
    /// before the delete, so concurrent reconciles never overrun it together.
    fn reserve_deletion(&self, now: std::time::Instant, name: &str) -> Result<(), (usize, usize)> {
        let copies = self
            .local_store
            .state()
            .iter()
            .filter(|s| is_down_copy(s))
            .count();
        let mut memo = self.memo();
        let window = self.deletion.budget_window;
        while memo
            .deleted
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= window)
        {
            memo.deleted.pop_front();
        }
        if memo.deleted.iter().any(|(_, n)| n == name) {
            // Deleted already; the store had not caught up.
            return Ok(());
        }
        // The down copies there are, and those deleted in the window that the store
        // no longer holds as down copies: each once.
        let gone = memo
            .deleted
            .iter()
            .filter(|(_, n)| {
                self.local_store
                    .get(&ObjectRef::new(n).within(&self.namespace))
                    .is_none_or(|s| !is_down_copy(&s))
            })
            .count();
        let budget = ((copies + gone) * self.deletion.budget_percent as usize)
            .div_ceil(100)
            .max(1);
        if memo.deleted.len() >= budget {
            return Err((memo.deleted.len(), budget));
        }
        memo.deleted.push_back((now, name.to_owned()));
        Ok(())
    }

    fn held_count(&self) -> i64 {
        i64::try_from(self.memo().held.len()).unwrap_or(i64::MAX)
    }

    async fn up(&self, cp: &str, s: &Secret, hub: Option<&Secret>, mine: bool, epoch: u64) {
        let name = name_of(s);
        let body = hub_copy_body(s, cp, &self.strip());
        let want = Fingerprint::of(&body, &[]);
        // The data is compared in memory (the agent holds both). An old version's
        // digest on the hub copy is no reason to push: the webhook removes it at
        // the copy's next write.
        if let Some(h) = hub
            && mine
            && Fingerprint::without(h, &[keys::OWNER_LABEL], &[keys::DIGEST_ANNOTATION]) == want
        {
            self.memo().synced.insert(name.clone());
            self.set_status(&name, "up", "synced", "");
            return;
        }
        let hub_rv = hub.and_then(|h| h.metadata.resource_version.clone());
        {
            let memo = self.memo();
            if memo.pushed.get(&name) == Some(&(want.clone(), hub_rv.clone())) {
                return;
            }
            if memo.denied.get(&name) == Some(&(want.clone(), epoch)) {
                return;
            }
        }
        let api: Api<Secret> = Api::namespaced(self.relay.clone(), cp);
        // A new type, or any change of an immutable copy, cannot be an update: the
        // cluster's own copy is deleted (under its version) and created anew.
        let hub = match hub {
            Some(h) if mine && needs_replacing(h, &body) => {
                if is_adopted(h) {
                    // Deleting would be a release, which returns an adopted secret.
                    self.failed(
                        s,
                        "up",
                        &name,
                        "push",
                        format!(
                            "the adopted hub copy {cp}/{name} cannot take this change as an update (its type differs, or it is immutable), and an adopted secret is never deleted: keep its type and make it mutable, or release it first (remove the {} label), then sync it again",
                            keys::SECRET_SYNC_LABEL
                        ),
                    )
                    .await;
                    return;
                }
                match api.delete(&name, &preconditions(h)).await {
                    Ok(_) => {
                        tracing::info!(%name, "replacing the hub copy: its type or immutable data changed");
                        None
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 => None,
                    Err(err) => {
                        self.failed(
                            s,
                            "up",
                            &name,
                            "push",
                            format!("failed to replace the hub copy {cp}/{name}: {err}"),
                        )
                        .await;
                        return;
                    }
                }
            }
            other => other,
        };
        let result = match hub {
            None => api.create(&PostParams::default(), &body).await,
            Some(h) => {
                let mut body = body;
                body.metadata.resource_version = h.metadata.resource_version.clone();
                api.replace(&name, &PostParams::default(), &body).await
            }
        };
        match result {
            Ok(_) => {
                {
                    let mut memo = self.memo();
                    memo.pushed.insert(name.clone(), (want, hub_rv));
                    memo.denied.remove(&name);
                    memo.synced.insert(name.clone());
                }
                self.succeeded(&name);
                self.metrics.action("push", "ok");
                self.set_status(&name, "up", "synced", "");
                tracing::info!(%name, "pushed to the control plane");
                self.event(
                    s,
                    EventType::Normal,
                    "UpSynced",
                    format!("synced to the control plane as {cp}/{name}"),
                )
                .await;
            }
            Err(kube::Error::Api(status)) if is_denial(&status) => {
                let rule = denied_rule(&status);
                let waits_on_hub = Rule::from_id(&rule).is_some_and(Rule::depends_on_hub);
                // Synced before and no longer admitted: the policy (or the Secret)
                // took back what it allowed.
                let revoked = !waits_on_hub && (mine || self.memo().synced.contains(&name));
                if waits_on_hub {
                    // The hub copy in the way may change or go away unseen (it can
                    // be outside this cluster's view): try again with backoff.
                    self.retry_later(&name);
                } else {
                    self.memo().denied.insert(name.clone(), (want, epoch));
                }
                let (state, reason) = if revoked {
                    ("revoked", "UpSyncRevoked")
                } else {
                    ("denied", "UpSyncDenied")
                };
                self.metrics.action("push", "denied");
                let changed = self.set_status(&name, "up", state, &rule);
                tracing::info!(%name, %rule, reason = %status.message, "up-sync {state}");
                if changed {
                    self.event(s, EventType::Warning, reason, status.message.clone())
                        .await;
                }
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(%name, "the hub copy changed during the push; will retry");
                self.retry_later(&name);
            }
            Err(kube::Error::Api(status)) if status.code == 429 => {
                tracing::debug!(%name, "the relay is over this cluster's rate; will retry");
                self.retry_throttled(&name);
            }
            Err(err) => {
                self.failed(
                    s,
                    "up",
                    &name,
                    "push",
                    format!("failed to push to the control plane as {cp}/{name}: {err}"),
                )
                .await;
            }
        }
    }

    /// An error (not a decision of the rules): reported as the `error` state, with
    /// an Event when the state changes to it, and retried with backoff.
    async fn failed(
        &self,
        on: &Secret,
        direction: &'static str,
        name: &str,
        action: &'static str,
        note: String,
    ) {
        self.metrics.action(action, "error");
        tracing::warn!(%name, direction, error = %note, "sync failed; will retry");
        if self.set_status(name, direction, "error", "") {
            let reason = if direction == "up" {
                "UpSyncFailed"
            } else {
                "DownSyncFailed"
            };
            self.event(on, EventType::Warning, reason, note).await;
        }
        self.retry_later(name);
    }

    async fn release(&self, name: &str, hub: &Secret) {
        let cp = hub.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.relay.clone(), &cp);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                self.metrics.action("release", "ok");
                self.clear_status(name, "up");
                let mut memo = self.memo();
                memo.pushed.remove(name);
                memo.synced.remove(name);
                tracing::info!(%name, "released the hub copy");
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(kube::Error::Api(status)) if status.code == 429 => {
                tracing::debug!(%name, "the relay is over this cluster's rate; will retry");
                self.retry_throttled(name);
            }
            Err(kube::Error::Api(status)) if is_denial(&status) => {
                self.metrics.action("release", "denied");
                tracing::info!(%name, rule = %denied_rule(&status), reason = %status.message, "release denied");
            }
            Err(err) => {
                self.metrics.action("release", "error");
                tracing::warn!(%name, error = %err, "failed to release; will retry");
                self.retry_later(name);
            }
        }
    }

    async fn down(&self, hub: &Secret, local: Option<&Secret>) {
        let name = name_of(hub);
        // Back in the view within the grace, or while held: kept.
        let back = {
            let mut memo = self.memo();
            memo.leaving.remove(&name).is_some() | memo.held.remove(&name)
        };
        if back {
            self.metrics.deletions_held.set(self.held_count());
            tracing::info!(%name, "a down copy that left the view came back; it is kept");
        }
        let want = down_copy(hub, &self.namespace, &self.strip());
        let api: Api<Secret> = Api::namespaced(self.local.clone(), &self.namespace);
        let (action, result) = match local {
            None => (
                "write-down-copy",
                api.create(&PostParams::default(), &want).await.map(|_| ()),
            ),
            Some(d) if !is_down_copy(d) => {
                let seen = d.metadata.resource_version.clone();
                let first = self.memo().conflicts.insert(name.clone(), seen.clone()) != Some(seen);
                self.set_status(&name, "down", "conflict", "down-sync-conflict");
                if first {
                    self.metrics.action("conflict", "denied");
                    tracing::warn!(%name, "a local Secret of the same name exists; the down copy is not written");
                    self.event(
                        d,
                        EventType::Warning,
                        "DownSyncConflict",
                        format!(
                            "the control plane sends a Secret named {name} to this cluster, but this Secret was not written by secret-relay: it is kept as it is (rule down-sync-conflict); rename or delete it to receive the hub copy"
                        ),
                    )
                    .await;
                }
                return;
            }
            Some(d) => {
                // Data, metadata and the source marker: a break-glass edit, an old
                // version's digest or a newer hub copy is drift, written over.
                if Fingerprint::of(d, &[]) == Fingerprint::of(&want, &[]) {
                    self.set_status(&name, "down", "synced", "");
                    return;
                }
                if needs_replacing(d, &want) {
                    // A new type, or a change of an immutable copy: delete the copy
                    // (under the version judged) and create it anew.
                    let result = match api.delete(&name, &preconditions(d)).await {
                        Ok(_) => Ok(()),
                        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                        Err(err) => Err(err),
                    };
                    let result = match result {
                        Ok(()) => api.create(&PostParams::default(), &want).await.map(|_| ()),
                        Err(err) => Err(err),
                    };
                    ("replace-down-copy", result)
                } else {
                    let mut next = want.clone();
                    next.metadata.resource_version = d.metadata.resource_version.clone();
                    (
                        "revert-drift",
                        api.replace(&name, &PostParams::default(), &next)
                            .await
                            .map(|_| ()),
                    )
                }
            }
        };
        match result {
            Ok(()) => {
                self.succeeded(&name);
                self.memo().conflicts.remove(&name);
                self.metrics.action(action, "ok");
                self.set_status(&name, "down", "synced", "");
                tracing::info!(%name, action, "down copy written");
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(%name, "the local Secret changed during the write; will retry");
                self.retry_later(&name);
            }
            Err(err) => {
                let on = local.unwrap_or(&want);
                self.failed(
                    on,
                    "down",
                    &name,
                    action,
                    format!("failed to write the down copy: {err}"),
                )
                .await;
            }
        }
    }

    /// Deletes down copy `d` under the version judged; true when it is gone.
    async fn delete_down_copy(&self, d: &Secret) -> bool {
        let name = name_of(d);
        let api: Api<Secret> = Api::namespaced(self.local.clone(), &self.namespace);
        match api.delete(&name, &preconditions(d)).await {
            Ok(_) => {
                self.metrics.action("delete-down-copy", "ok");
                self.clear_status(&name, "down");
                tracing::info!(%name, "deleted a down copy that left the view");
                true
            }
            Err(kube::Error::Api(status)) if status.code == 404 => true,
            Err(kube::Error::Api(status)) if status.code == 409 => false,
            Err(err) => {
                self.metrics.action("delete-down-copy", "error");
                tracing::warn!(%name, error = %err, "failed to delete the down copy; will retry");
                self.retry_later(&name);
                false
            }
        }
    }

    /// Reconciles `name` again after a backoff that doubles with each failure in a
    /// row (100 ms to 30 s, with jitter): a write that failed or raced is retried even
    /// when no watch event will bring the name back.
    fn retry_later(&self, name: &str) {
        let attempt = {
            let mut memo = self.memo();
            let n = memo.attempts.entry(name.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let delay = Duration::from_millis(100)
            .saturating_mul(1u32 << attempt.min(9))
            .min(Duration::from_secs(30));
        self.retry_in(name, delay);
    }

    /// Reconciles `name` again after the second the relay asks a cluster over its
    /// rate to wait (its `Retry-After`): being throttled is no failure, so neither the
    /// status nor the backoff changes.
    fn retry_throttled(&self, name: &str) {
        self.retry_in(name, Duration::from_secs(1));
    }

    fn retry_in(&self, name: &str, delay: Duration) {
        let Some(tx) = self
            .retries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(jitter(delay)).await;
            let _ = tx.send(Trigger::Name(name));
        });
    }

    fn succeeded(&self, name: &str) {
        self.memo().attempts.remove(name);
    }

    /// Sets the status of `name` in `direction`; true when it changed.
    fn set_status(
        &self,
        name: &str,
        direction: &'static str,
        state: &'static str,
        rule: &str,
    ) -> bool {
        let labels = StatusLabels {
            name: name.to_owned(),
            direction,
            state,
            rule: rule.to_owned(),
        };
        let mut memo = self.memo();
        let old = memo
            .status
            .insert((name.to_owned(), direction), labels.clone());
        let changed = old.as_ref() != Some(&labels);
        if let Some(old) = old
            && changed
        {
            self.metrics.status.remove(&old);
        }
        self.metrics.status.get_or_create(&labels).set(1);
        drop(memo);
        self.changes.send_modify(|n| *n += 1);
        changed
    }

    /// A receiver that changes whenever a status or readiness changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn clear_status(&self, name: &str, direction: &'static str) {
        if let Some(old) = self.memo().status.remove(&(name.to_owned(), direction)) {
            self.metrics.status.remove(&old);
        }
        self.changes.send_modify(|n| *n += 1);
    }

    /// The current status of a Secret in one direction: (state, rule).
    pub fn status(&self, name: &str, direction: &'static str) -> Option<(&'static str, String)> {
        self.memo()
            .status
            .get(&(name.to_owned(), direction))
            .map(|l| (l.state, l.rule.clone()))
    }

    async fn event(&self, on: &Secret, type_: EventType, reason: &str, note: String) {
        let reference = on.object_ref(&());
        let event = KubeEvent {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Sync".to_owned(),
            secondary: None,
        };
        // Waits only when the queue is full; fails only once the agent stops.
        let lane = self.recorder.shard(&reference) % EVENT_LANES;
        if self.events[lane].send((reference, event)).await.is_err() {
            tracing::debug!("the agent is stopping: an event was not recorded");
        }
    }
}

/// Event recorders, one per shard of object names. kube-runtime's [`Recorder`] keeps
/// the Events of the last six minutes to count repeats into a series, and scans that
/// whole cache on every publish under one lock: a catch-up of 10,000 Secrets made that
/// quadratic (a third of the agent's CPU in a profile). Each object's Events always go
/// to the same shard, so repeats still become a series, and each scan is 1/64 as long.
#[derive(Clone)]
struct Recorders(Arc<[Recorder]>);

/// Shards of [`Recorders`].
const RECORDER_SHARDS: usize = 64;

impl Recorders {
    fn new(client: &Client, reporter: &Reporter) -> Recorders {
        Recorders(
            (0..RECORDER_SHARDS)
                .map(|_| Recorder::new(client.clone(), reporter.clone()))
                .collect(),
        )
    }

    fn shard(&self, reference: &ObjectReference) -> usize {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        reference.namespace.hash(&mut h);
        reference.name.hash(&mut h);
        usize::try_from(h.finish() % RECORDER_SHARDS as u64).unwrap_or(0)
    }

    fn for_object(&self, reference: &ObjectReference) -> &Recorder {
        &self.0[self.shard(reference)]
    }
}

/// Records one lane's Events, one after another, until the agent stops.
async fn publish_events(
    recorders: Recorders,
    mut lane: mpsc::Receiver<(ObjectReference, KubeEvent)>,
) {
    while let Some((reference, event)) = lane.recv().await {
        let recorder = recorders.for_object(&reference);
        if let Err(err) = recorder.publish(&event, &reference).await {
            tracing::debug!(error = %err, "failed to record an event");
        }
    }
}

/// The names waiting for a reconcile, in trigger order, each once; the names running;
/// and the names triggered again while running.
#[derive(Default)]
struct WorkQueue {
    pending: VecDeque<String>,
    queued: HashSet<String>,
    running: HashSet<String>,
    again: HashSet<String>,
}

impl WorkQueue {
    fn add(&mut self, name: String) {
        if self.running.contains(&name) {
            self.again.insert(name);
        } else if self.queued.insert(name.clone()) {
            self.pending.push_back(name);
        }
    }

    fn next(&mut self) -> Option<String> {
        let name = self.pending.pop_front()?;
        self.queued.remove(&name);
        self.running.insert(name.clone());
        Some(name)
    }

    fn done(&mut self, name: &str) {
        self.running.remove(name);
        if self.again.remove(name) {
            self.add(name.to_owned());
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Local,
    View,
}

/// Follows one side with a reflector (kube-runtime's watcher backs off and resumes),
/// triggering the names that change and a full pass after each complete list.
async fn follow(
    what: &'static str,
    api: Api<Secret>,
    writer: reflector::store::Writer<Secret>,
    tx: mpsc::UnboundedSender<Trigger>,
    agent: Arc<Agent>,
    side: Side,
    shutdown: CancellationToken,
) {
    let stream = reflector::reflector(
        writer,
        watcher::watcher(api, watcher::Config::default()).default_backoff(),
    );
    tokio::pin!(stream);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        match event {
            Ok(Event::Apply(s)) => {
                let _ = tx.send(Trigger::Name(name_of(&s)));
            }
            Ok(Event::Delete(s)) => {
                let name = name_of(&s);
                if matches!(side, Side::View) {
                    // A hub copy that went (released, revoked, deleted by the control
                    // plane): what was pushed before no longer stands for it.
                    agent.memo().pushed.remove(&name);
                }
                let _ = tx.send(Trigger::Name(name));
            }
            Ok(Event::InitDone) => {
                let flag = match side {
                    Side::Local => &agent.local_ready,
                    Side::View => &agent.view_ready,
                };
                flag.store(true, Ordering::Release);
                agent.changes.send_modify(|n| *n += 1);
                let _ = tx.send(Trigger::Full);
            }
            Ok(Event::Init | Event::InitApply(_)) => {}
            Err(err) => {
                tracing::warn!(side = what, error = %err, "watch failed; retrying with backoff");
            }
        }
    }
}

/// Delete options that hold a delete to the version of `s` that was judged.
fn preconditions(s: &Secret) -> DeleteParams {
    DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: s.metadata.uid.clone(),
            resource_version: s.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    }
}

/// Up to ±25 % of `d`, so agents that lost the relay together do not return together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: serde_json::Value) -> Secret {
        serde_json::from_value(value).unwrap()
    }

    #[tokio::test]
    async fn an_objects_events_always_go_to_the_same_recorder_and_names_spread_over_all() {
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let recorders = Recorders::new(
            &client,
            &Reporter {
                controller: "test".to_owned(),
                instance: None,
            },
        );
        let reference = |name: String| ObjectReference {
            namespace: Some("akuity".to_owned()),
            name: Some(name),
            ..ObjectReference::default()
        };
        let shard = |name: &str| {
            let r = recorders.for_object(&reference(name.to_owned()));
            recorders.0.iter().position(|x| std::ptr::eq(x, r)).unwrap()
        };
        // Repeats of one object's Event meet in one cache and become a series.
        assert_eq!(shard("repo"), shard("repo"));
        let used: HashSet<usize> = (0..2000).map(|i| shard(&format!("s-{i}"))).collect();
        assert_eq!(used.len(), RECORDER_SHARDS);
    }

    #[test]
    fn the_work_queue_runs_a_name_once_at_a_time_and_again_when_triggered_while_running() {
        let mut q = WorkQueue::default();
        for n in ["a", "b", "a", "c"] {
            q.add(n.to_owned());
        }
        // Trigger order, each name once.
        assert_eq!(q.next().as_deref(), Some("a"));
        // Triggered while running: not handed out twice at once...
        q.add("a".to_owned());
        assert_eq!(q.next().as_deref(), Some("b"));
        assert_eq!(q.next().as_deref(), Some("c"));
        assert_eq!(q.next(), None);
        // ...but again once it is done; a name done without a new trigger is not.
        q.done("b");
        q.done("a");
        assert_eq!(q.next().as_deref(), Some("a"));
        assert_eq!(q.next(), None);
        q.done("a");
        q.done("c");
        assert_eq!(q.next(), None);
    }

    #[test]
    fn a_hub_copy_body_keeps_labels_and_data_and_leaves_stamps_to_the_webhook() {
        let local = secret(serde_json::json!({
            "metadata": {"name": "repo", "namespace": "akuity",
                "labels": {"akuity.io/secret-sync": "true", "secret-relay.io/owner": "cluster.x"},
                "annotations": {"akuity.io/managed-secret-allowed-clusters": "cluster2", "secret-relay.io/digest": "sha256:0"}},
            "data": {"k": "dg=="},
        }));
        let body = hub_copy_body(&local, "argocd", &StripMetadata::default());
        assert_eq!(body.metadata.namespace.as_deref(), Some("argocd"));
        let labels = body.metadata.labels.clone().unwrap();
        assert_eq!(
            labels.get("akuity.io/secret-sync").map(String::as_str),
            Some("true")
        );
        assert!(!labels.contains_key("secret-relay.io/owner"));
        let annotations = body.metadata.annotations.clone().unwrap();
        assert!(annotations.contains_key("akuity.io/managed-secret-allowed-clusters"));
        assert!(!annotations.contains_key("secret-relay.io/digest"));
        assert_eq!(digest(&body), digest(&local));
    }

    #[test]
    fn a_down_copy_never_opts_in_and_names_its_origin() {
        let hub = secret(serde_json::json!({
            "metadata": {"name": "repo", "namespace": "argocd", "uid": "u-1", "resourceVersion": "7",
                "labels": {"akuity.io/secret-sync": "true", "secret-relay.io/owner": "cluster.cluster1"},
                "annotations": {"secret-relay.io/adopted": "true", "secret-relay.io/digest": "sha256:00"}},
            "data": {"k": "dg=="},
        }));
        let copy = down_copy(&hub, "akuity", &StripMetadata::default());
        let labels = copy.metadata.labels.clone().unwrap();
        assert!(!labels.contains_key("akuity.io/secret-sync"));
        assert_eq!(labels["secret-relay.io/owner"], "cluster.cluster1");
        assert!(is_down_copy(&copy));
        let annotations = copy.metadata.annotations.clone().unwrap();
        assert_eq!(annotations["secret-relay.io/source"], "u-1/7");
        assert!(!annotations.contains_key("secret-relay.io/digest"));
        assert!(!annotations.contains_key("secret-relay.io/adopted"));
        let managed = secret(serde_json::json!({"metadata": {"name": "m"}, "data": {}}));
        assert_eq!(
            down_copy(&managed, "akuity", &StripMetadata::default())
                .metadata
                .labels
                .unwrap()["secret-relay.io/owner"],
            "control-plane"
        );
    }

    #[test]
    fn a_down_copy_carries_no_function_of_its_values_and_the_agent_still_tells_them_apart() {
        let hub = |value: &str| {
            secret(serde_json::json!({
                "metadata": {"name": "repo", "namespace": "argocd", "uid": "u-1", "resourceVersion": "7",
                    "labels": {"secret-relay.io/owner": "cluster.cluster1", "team": "a"},
                    "annotations": {"note": "x", "akuity.io/managed-secret-allowed-clusters": "ALL"}},
                "data": {"password": value},
            }))
        };
        let (a, b) = (hub("aHVudGVyMg=="), hub("b3RoZXI="));
        let strip = StripMetadata::default();
        let (ca, cb) = (
            down_copy(&a, "akuity", &strip),
            down_copy(&b, "akuity", &strip),
        );
        assert_eq!(ca.metadata, cb.metadata);
        // The agent holds the values: its fingerprint tells the two apart.
        assert_ne!(Fingerprint::of(&ca, &[]), Fingerprint::of(&cb, &[]));
        // A copy written from an older hub version, or carrying an old version's
        // digest, is drift.
        let mut older = ca.clone();
        older
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("secret-relay.io/source".to_owned(), "u-1/6".to_owned());
        assert_ne!(Fingerprint::of(&older, &[]), Fingerprint::of(&ca, &[]));
        let mut old_digest = ca.clone();
        old_digest
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("secret-relay.io/digest".to_owned(), digest(&a));
        assert_ne!(Fingerprint::of(&old_digest, &[]), Fingerprint::of(&ca, &[]));
    }

    #[test]
    fn a_denial_names_its_rule_from_the_cause_or_the_message() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "secret-relay denied the request: no (rule no-matching-source)",
            "details": {"causes": [{"reason": "no-matching-source", "message": "no"}]},
        }))
        .unwrap();
        assert_eq!(denied_rule(&status), "no-matching-source");
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "admission webhook \"validate.secret-relay.io\" denied the request: owned (rule owned-by-other-cluster)",
        }))
        .unwrap();
        assert_eq!(denied_rule(&status), "owned-by-other-cluster");
    }

    #[test]
    fn only_a_decision_that_names_its_rule_is_a_denial() {
        let status = |code: u16, message: &str| -> kube::core::Status {
            serde_json::from_value(serde_json::json!({
                "status": "Failure", "code": code, "reason": "Forbidden", "message": message,
            }))
            .unwrap()
        };
        assert!(is_denial(&status(
            403,
            "secret-relay denied the request: no (rule no-matching-source)"
        )));
        assert!(is_denial(&status(
            403,
            "admission webhook \"validate.secret-relay.io\" denied the request: owned (rule owned-by-other-cluster)"
        )));
        // The API server's validation is an error, retried, not a denial.
        assert!(!is_denial(&status(422, "Secret \"x\" is invalid")));
        assert!(!is_denial(&status(400, "the body is not a Secret")));
        // RBAC before the restarted API server has loaded it: retried, not remembered.
        assert!(!is_denial(&status(
            403,
            "secrets is forbidden: User \"secret-relay:cluster:cluster1\" cannot create resource \"secrets\" in API group \"\" in the namespace \"argocd\""
        )));
        assert!(!is_denial(&status(
            502,
            "failed to reach the control plane's API server"
        )));
    }

    #[test]
    fn a_new_type_or_a_change_of_an_immutable_secret_is_a_replacement() {
        let s = |ty: &str, immutable: Option<bool>, value: &str| {
            secret(serde_json::json!({
                "metadata": {"name": "repo"}, "type": ty, "immutable": immutable,
                "data": {"k": value},
            }))
        };
        // An update does it.
        assert!(!needs_replacing(
            &s("Opaque", None, "dg=="),
            &s("Opaque", None, "eA==")
        ));
        assert!(!needs_replacing(
            &s("Opaque", None, "dg=="),
            &s("Opaque", Some(true), "eA==")
        ));
        assert!(!needs_replacing(
            &s("Opaque", Some(true), "dg=="),
            &s("Opaque", Some(true), "dg==")
        ));
        // The API server refuses these as updates.
        assert!(needs_replacing(
            &s("Opaque", None, "dg=="),
            &s("kubernetes.io/basic-auth", None, "dg==")
        ));
        assert!(needs_replacing(
            &s("Opaque", Some(true), "dg=="),
            &s("Opaque", Some(true), "eA==")
        ));
        assert!(needs_replacing(
            &s("Opaque", Some(true), "dg=="),
            &s("Opaque", None, "dg==")
        ));
    }

    #[test]
    fn copies_carry_immutable_and_type_and_never_tool_ownership() {
        let local = secret(serde_json::json!({
            "metadata": {"name": "repo", "namespace": "akuity",
                "labels": {"akuity.io/secret-sync": "true", "app.kubernetes.io/managed-by": "Helm", "team": "a"},
                "annotations": {"meta.helm.sh/release-name": "r", "argocd.argoproj.io/tracking-id": "app:/Secret:akuity/repo",
                    "akuity.io/managed-secret-allowed-clusters": "cluster2"}},
            "type": "kubernetes.io/dockerconfigjson", "immutable": true,
            "data": {".dockerconfigjson": "e30="},
        }));
        let body = hub_copy_body(&local, "argocd", &StripMetadata::default());
        assert_eq!(body.immutable, Some(true));
        assert_eq!(
            body.type_.as_deref(),
            Some("kubernetes.io/dockerconfigjson")
        );
        assert_eq!(
            body.metadata
                .labels
                .as_ref()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["akuity.io/secret-sync", "team"]
        );
        assert_eq!(
            body.metadata
                .annotations
                .as_ref()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["akuity.io/managed-secret-allowed-clusters"]
        );
        let copy = down_copy(&body, "akuity", &StripMetadata::default());
        assert_eq!(copy.immutable, Some(true));
        assert_eq!(
            copy.metadata
                .annotations
                .as_ref()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            Vec::<&String>::new()
        );
        let strip = StripMetadata {
            labels: vec!["team".to_owned()],
            annotations: Vec::new(),
        };
        assert!(
            !hub_copy_body(&local, "argocd", &strip)
                .metadata
                .labels
                .unwrap()
                .contains_key("team")
        );
    }

    #[test]
    fn only_the_relays_refusal_as_unregistered_counts_toward_clearing_down_copies() {
        let api = |code: u16, message: &str| {
            kube::Error::Api(
                serde_json::from_value(serde_json::json!({
                    "status": "Failure", "code": code, "reason": "Forbidden", "message": message,
                }))
                .unwrap(),
            )
        };
        assert!(is_unregistered(&api(
            403,
            "cluster cluster2 is not registered: add it to clusters in the secret-relay-policy ConfigMap (rule unknown-cluster)"
        )));
        // Another refusal, a relay still loading its policy, a network error: never.
        assert!(!is_unregistered(&api(
            403,
            "secret-relay denied the request: no (rule no-matching-source)"
        )));
        assert!(!is_unregistered(&api(
            403,
            "cluster cluster2 is not registered"
        )));
        assert!(!is_unregistered(&api(
            503,
            "the relay has not loaded a valid policy yet; see its /readyz"
        )));
        assert!(!is_unregistered(&kube::Error::Service(
            "connection refused".into()
        )));
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let d = Duration::from_secs(4);
        let j = jitter(d);
        assert!(
            j >= Duration::from_secs(3) && j <= Duration::from_secs(5),
            "{j:?}"
        );
    }
}
