//! One shared watch cache of the control-plane namespace's Secrets, fanned out to
//! every connected cluster.
//!
//! A single writer task follows the API server with kube-runtime's watcher and keeps,
//! per hub copy, its JSON (serialized once for every watch) and the sorted list of
//! clusters that may see it: the down-sync targets plus its owner. Changes and policy
//! generations go to watches through one broadcast channel in one order, and into a
//! bounded history so a client can resume from a resourceVersion (the API server's own)
//! on this replica or another.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use secret_relay_policy::{Owner, Policy, down_sync, meta, owner};
use secret_relay_runtime::{CancellationToken, PolicyState};
use tokio::sync::broadcast;

/// How many events a lagging watch may fall behind before it is ended (it resumes
/// from its last resourceVersion, out of the history).
const BROADCAST_CAPACITY: usize = 16 * 1024;

/// One hub copy as the cache holds it.
#[derive(Debug)]
pub struct Entry {
    /// The Secret's name.
    pub name: String,
    /// Its resourceVersion, as a number (etcd revisions are).
    pub rv: u64,
    /// The object.
    pub secret: Arc<Secret>,
    /// The object as JSON, serialized once for every watch and list.
    pub json: Bytes,
    /// The clusters that may see it, sorted: down-sync targets and its owner.
    pub targets: Arc<[String]>,
}

/// One change, in the order every watch sees them.
#[derive(Debug)]
pub enum CacheEvent {
    /// A hub copy was added, modified or deleted.
    Change {
        /// Position in the broadcast order.
        seq: u64,
        /// The resourceVersion of the change.
        rv: u64,
        /// The entry before, if it existed: for a watch that could see it, the last
        /// state it was allowed to see, which its DELETED event carries when the
        /// change takes the entry out of its view.
        before: Option<Arc<Entry>>,
        /// The entry after; for a deletion, the final object.
        after: Arc<Entry>,
        /// Whether this is a deletion.
        deleted: bool,
        /// When the cache received it (for the fan-out lag metric).
        received: Instant,
    },
    /// A new policy generation: the entries whose target lists changed.
    Policy {
        /// Position in the broadcast order.
        seq: u64,
        /// The cache's resourceVersion when the policy arrived.
        rv: u64,
        /// The new generation.
        generation: u64,
        /// The new policy.
        policy: Arc<Policy>,
        /// Each entry whose targets changed, with the targets it had before.
        changes: Vec<(Arc<Entry>, Arc<[String]>)>,
        /// When the cache received it.
        received: Instant,
    },
    /// The upstream watch restarted from a new list and the namespace may have
    /// changed: every watch ends, and clients list again.
    Reset {
        /// Position in the broadcast order.
        seq: u64,
    },
}

/// The shared cache handle.
#[derive(Clone, Debug)]
pub struct HubCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: RwLock<State>,
    tx: broadcast::Sender<Arc<CacheEvent>>,
    history_limit: usize,
    /// Set once nothing follows the API server any more (see [`HubCache::close`]).
    closed: tokio::sync::watch::Sender<bool>,
    /// Whether the cache is served: false while the policy it is judged by is stale.
    serving: tokio::sync::watch::Sender<bool>,
    /// The resourceVersion the cache has reached, for [`HubCache::reached`]; raised
    /// after the state it describes is in place.
    reached: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug)]
struct State {
    namespace: String,
    objects: BTreeMap<String, Arc<Entry>>,
    /// Per cluster, the entries it may see (each entry's targets), in name order, so a
    /// list or a watch's first events read the cluster's view, not the namespace.
    /// Holds the same `Arc`s as `objects`: no copy of an entry or its name.
    views: HashMap<String, BTreeSet<ByName>>,
    /// Per owning cluster: how many hub copies it owns and their size as JSON.
    owned: HashMap<String, (usize, usize)>,
    rv: u64,
    seq: u64,
    history: VecDeque<Arc<CacheEvent>>,
    /// Resumes from a resourceVersion at or after this one are served from history.
    history_base_rv: u64,
    /// Resumes from this resourceVersion or before are expired, even at the current
    /// version: the history no longer holds a policy event of it (a resume would miss
    /// the DELETED events of what it took out of views), or a change arrived with a
    /// version at or below the cache's (after a relist, whose version is read after
    /// the list, a change made in between comes later on the watch: a client that
    /// listed at the newer version would never get it).
    expired_through: Option<u64>,
    synced: bool,
    policy: Arc<Policy>,
    generation: u64,
}

impl State {
    /// A change at version `rv` arrives: at or below the cache's version (and after
    /// the first list), clients may already stand past it, so their positions expire.
    fn late(&mut self, rv: u64) {
        if self.synced && rv != 0 && rv <= self.rv {
            self.expired_through = self.expired_through.max(Some(self.rv));
        }
    }
}

/// An entry in the per-cluster index, ordered by name.
#[derive(Debug, Clone)]
struct ByName(Arc<Entry>);

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ByName {}

impl PartialOrd for ByName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.name.cmp(&other.0.name)
    }
}

impl std::borrow::Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}

impl State {
    /// Adds `entry` to the views of its targets (replacing an entry of the same name)
    /// and to its owner's count.
    fn index(&mut self, entry: &Arc<Entry>) {
        if let Owner::Cluster(c) = owner(&entry.secret) {
            let owned = self.owned.entry(c).or_default();
            owned.0 += 1;
            owned.1 += entry.json.len();
        }
        for cluster in entry.targets.iter() {
            let key = ByName(entry.clone());
            // Look up before inserting: a key is allocated once per cluster, not per entry.
            if let Some(view) = self.views.get_mut(cluster.as_str()) {
                view.replace(key);
            } else {
                self.views.insert(cluster.clone(), BTreeSet::from([key]));
            }
        }
    }

    /// Removes `entry` (by name) from the views of its targets and its owner's count.
    fn unindex(&mut self, entry: &Entry) {
        if let Owner::Cluster(c) = owner(&entry.secret)
            && let Some(owned) = self.owned.get_mut(&c)
        {
            owned.0 = owned.0.saturating_sub(1);
            owned.1 = owned.1.saturating_sub(entry.json.len());
            if owned.0 == 0 {
                self.owned.remove(&c);
            }
        }
        for cluster in entry.targets.iter() {
            if let Some(view) = self.views.get_mut(cluster.as_str()) {
                view.remove(entry.name.as_str());
                if view.is_empty() {
                    self.views.remove(cluster.as_str());
                }
            }
        }
    }
}

/// A consistent view of the cache for starting a list or a watch.
#[derive(Debug)]
pub struct Snapshot {
    /// The namespace the cache follows.
    pub namespace: String,
    /// Every entry, sorted by name.
    pub entries: Vec<Arc<Entry>>,
    /// The cache's resourceVersion.
    pub rv: u64,
    /// The broadcast position this snapshot includes.
    pub seq: u64,
    /// The policy the entries' targets were computed with, and its generation.
    pub policy: Arc<Policy>,
    /// The policy generation.
    pub generation: u64,
}

/// What a watch from a resourceVersion gets.
#[derive(Debug)]
pub enum Resume {
    /// The events after it, from the history.
    Replay(Vec<Arc<CacheEvent>>),
    /// It is older than the history: 410 Expired.
    Expired,
}

impl CacheEvent {
    /// Position in the broadcast order.
    pub fn seq(&self) -> u64 {
        match self {
            CacheEvent::Change { seq, .. }
            | CacheEvent::Policy { seq, .. }
            | CacheEvent::Reset { seq } => *seq,
        }
    }
}

impl Entry {
    /// Builds an entry: serializes the object once and computes its targets.
    pub fn new(policy: &Policy, secret: Secret) -> Entry {
        let name = meta::name(&secret.metadata).to_owned();
        let rv = parse_rv(secret.metadata.resource_version.as_deref());
        let targets = targets(policy, &secret);
        let mut secret = secret;
        // The cache never needs managedFields; dropping them keeps memory and every
        // response smaller (kube-apiserver keeps them, a client can ask it directly).
        secret.metadata.managed_fields = None;
        // k8s-openapi writes apiVersion and kind, as the API server does. Its
        // Serialize of a Secret has no failure case (string maps, byte strings and
        // plain fields): an empty entry would serve an empty 200.
        let json =
            Bytes::from(serde_json::to_vec(&secret).expect("a Secret always serializes to JSON"));
        Entry {
            name,
            rv,
            secret: Arc::new(secret),
            json,
            targets,
        }
    }

    /// Whether cluster `cluster` may see this entry.
    pub fn visible_to(&self, cluster: &str) -> bool {
        self.targets
            .binary_search_by(|t| t.as_str().cmp(cluster))
            .is_ok()
    }

    fn with_targets(&self, targets: Arc<[String]>) -> Entry {
        Entry {
            name: self.name.clone(),
            rv: self.rv,
            secret: self.secret.clone(),
            json: self.json.clone(),
            targets,
        }
    }
}

/// The clusters that may see hub copy `hub` under `policy`, sorted.
pub fn targets(policy: &Policy, hub: &Secret) -> Arc<[String]> {
    let mut targets = down_sync(policy, hub).targets;
    if let Owner::Cluster(c) = owner(hub)
        && policy.cluster(&c).is_some()
        && !targets.contains(&c)
    {
        targets.push(c);
        targets.sort();
    }
    targets.into()
}

/// A resourceVersion as a number; an unparsable one is 0 (never newer than anything).
pub fn parse_rv(rv: Option<&str>) -> u64 {
    rv.and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl HubCache {
    /// An empty, unsynced cache keeping `history_limit` events for resumes.
    pub fn new(history_limit: usize) -> HubCache {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        HubCache {
            inner: Arc::new(Inner {
                state: RwLock::new(State {
                    namespace: String::new(),
                    objects: BTreeMap::new(),
                    views: HashMap::new(),
                    owned: HashMap::new(),
                    rv: 0,
                    seq: 0,
                    history: VecDeque::new(),
                    history_base_rv: u64::MAX,
                    expired_through: None,
                    synced: false,
                    policy: Arc::new(Policy::default()),
                    generation: 0,
                }),
                tx,
                history_limit: history_limit.max(1),
                closed: tokio::sync::watch::channel(false).0,
                serving: tokio::sync::watch::channel(true).0,
                reached: tokio::sync::watch::channel(0).0,
            }),
        }
    }

    /// Whether the first list from the API server has completed, the cache is
    /// still followed (not [closed](HubCache::close)) and it is served (see
    /// [`HubCache::set_serving`]).
    pub fn is_synced(&self) -> bool {
        self.read().synced && !self.is_closed() && *self.inner.serving.borrow()
    }

    /// Serves the cache, or stops serving it while the policy its views are judged
    /// by is stale: every watch ends (its client resumes elsewhere, or here once the
    /// policy is current again) and reads are refused, as once closed. Changes keep
    /// arriving meanwhile.
    pub fn set_serving(&self, serving: bool) {
        self.inner.serving.send_replace(serving);
    }

    /// How many hub copies `cluster` owns, and their size as the API server
    /// answers them (JSON): what [`crate::Limits`]' per-cluster quota counts.
    pub fn owned_by(&self, cluster: &str) -> (usize, usize) {
        self.read().owned.get(cluster).copied().unwrap_or_default()
    }

    /// Whether the cache is served (see [`HubCache::set_serving`]).
    pub fn is_serving(&self) -> bool {
        *self.inner.serving.borrow()
    }

    /// Whether the cache was [closed](HubCache::close).
    pub fn is_closed(&self) -> bool {
        *self.inner.closed.borrow()
    }

    /// Says that nothing updates this cache any more (the relay is stopping): every
    /// watch served from it ends, cleanly, so that its client resumes from its
    /// resourceVersion on another replica (or on the one that takes this address)
    /// instead of waiting on a cache that has stopped; reads are refused from now on,
    /// as before the first list. A stopping relay's drain is then not held up by
    /// watches either.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// Resolves once the cache is [closed](HubCache::close), or no longer served
    /// (see [`HubCache::set_serving`]).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closed = self.inner.closed.subscribe();
        let mut serving = self.inner.serving.subscribe();
        async move {
            // An error means every handle of the cache is gone: closed as well.
            tokio::select! {
                _ = closed.wait_for(|closed| *closed) => {}
                _ = serving.wait_for(|serving| !*serving) => {}
            }
        }
    }

    /// The resourceVersion the cache has reached.
    pub fn resource_version(&self) -> u64 {
        self.read().rv
    }

    /// Resolves once the cache has reached resourceVersion `rv` (at once if it has):
    /// a snapshot taken then is at `rv` or newer. It waits as long as it takes; bound
    /// it with a timeout.
    pub fn reached(&self, rv: u64) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.reached.subscribe();
        async move {
            // An error means every handle of the cache is gone: nothing will come.
            if rx.wait_for(|at| *at >= rv).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Tells [`HubCache::reached`] waiters that the cache is at `rv`.
    fn advanced(&self, rv: u64) {
        self.inner.reached.send_if_modified(|at| {
            let newer = rv > *at;
            if newer {
                *at = rv;
            }
            newer
        });
    }

    /// How many hub copies the cache holds.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// Whether the cache holds no hub copy.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policy generation the targets were computed with.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// One entry by name.
    pub fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.read().objects.get(name).cloned()
    }

    /// One entry by name, and whether its targets are those of `policy`: true when
    /// they were computed under that very snapshot (the cache recomputes every
    /// entry's targets for each new one).
    pub fn get_under(&self, name: &str, policy: &Policy) -> Option<(Arc<Entry>, bool)> {
        let state = self.read();
        let entry = state.objects.get(name)?.clone();
        Some((entry, std::ptr::eq(Arc::as_ptr(&state.policy), policy)))
    }

    /// Subscribes to changes. Subscribe before taking the snapshot or resume that the
    /// subscription continues, and skip events whose `seq` the snapshot includes.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CacheEvent>> {
        self.inner.tx.subscribe()
    }

    /// The current contents, consistent with `seq`.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.read();
        Snapshot {
            namespace: state.namespace.clone(),
            entries: state.objects.values().cloned().collect(),
            rv: state.rv,
            seq: state.seq,
            policy: state.policy.clone(),
            generation: state.generation,
        }
    }

    /// [`HubCache::snapshot`] with only the entries cluster `cluster` may see (its
    /// view, before any label or field selector), read from the per-cluster index.
    pub fn snapshot_for(&self, cluster: &str) -> Snapshot {
        let state = self.read();
        let entries = state
            .views
            .get(cluster)
            .map_or_else(Vec::new, |view| view.iter().map(|e| e.0.clone()).collect());
        Snapshot {
            namespace: state.namespace.clone(),
            entries,
            rv: state.rv,
            seq: state.seq,
            policy: state.policy.clone(),
            generation: state.generation,
        }
    }

    /// The events after resourceVersion `rv` (policy events at `rv` included, so a
    /// client that may have missed one sees it again; re-applying one is harmless),
    /// with the snapshot position they lead to.
    pub fn resume(&self, rv: u64) -> (Resume, Snapshot) {
        let state = self.read();
        let snapshot = Snapshot {
            namespace: state.namespace.clone(),
            entries: Vec::new(),
            rv: state.rv,
            seq: state.seq,
            policy: state.policy.clone(),
            generation: state.generation,
        };
        let missed = state.expired_through.is_some_and(|through| rv <= through);
        if missed || (rv < state.history_base_rv && rv != state.rv) {
            return (Resume::Expired, snapshot);
        }
        let events = state
            .history
            .iter()
            .filter(|e| match e.as_ref() {
                CacheEvent::Change { rv: at, .. } => *at > rv,
                CacheEvent::Policy { rv: at, .. } => *at >= rv,
                CacheEvent::Reset { .. } => false,
            })
            .cloned()
            .collect();
        (Resume::Replay(events), snapshot)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A poisoned lock means a writer panicked mid-update; the state is still the
        // last complete one (updates are built before they are swapped in).
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies one upstream object (added or modified).
    pub fn apply(&self, secret: Secret) {
        let received = Instant::now();
        let (event, rv) = {
            let mut state = self.write();
            let entry = Arc::new(Entry::new(&state.policy, secret));
            if let Some(old) = state.objects.get(&entry.name)
                && old.rv == entry.rv
                && entry.rv != 0
            {
                return;
            }
            state.seq += 1;
            state.late(entry.rv);
            state.rv = state.rv.max(entry.rv);
            let before = state.objects.insert(entry.name.clone(), entry.clone());
            if let Some(before) = &before {
                state.unindex(before);
            }
            state.index(&entry);
            let event = Arc::new(CacheEvent::Change {
                seq: state.seq,
                rv: entry.rv,
                before,
                after: entry,
                deleted: false,
                received,
            });
            self.record(&mut state, &event);
            (event, state.rv)
        };
        self.advanced(rv);
        let _ = self.inner.tx.send(event);
    }

    /// Applies one upstream deletion (the final object).
    pub fn delete(&self, secret: Secret) {
        let received = Instant::now();
        let (event, rv) = {
            let mut state = self.write();
            let Some(before) = state.objects.remove(meta::name(&secret.metadata)) else {
                return;
            };
            state.unindex(&before);
            let mut entry = Entry::new(&state.policy, secret);
            state.late(entry.rv);
            // The final object's labels may differ; who saw it is who saw it before.
            entry.targets = before.targets.clone();
            if entry.rv <= before.rv {
                entry.rv = state.rv.max(before.rv);
            }
            state.seq += 1;
            state.rv = state.rv.max(entry.rv);
            let event = Arc::new(CacheEvent::Change {
                seq: state.seq,
                rv: entry.rv,
                before: Some(before),
                after: Arc::new(entry),
                deleted: true,
                received,
            });
            self.record(&mut state, &event);
            (event, state.rv)
        };
        self.advanced(rv);
        let _ = self.inner.tx.send(event);
    }

    /// Replaces the contents with a complete list, emitting the differences as changes.
    /// `list_rv` is a resourceVersion read from the API server after the list: the
    /// history covers resumes from it on. After a relist (the upstream watch lost its
    /// place), the history restarts there too, so a client that may have missed a
    /// change gets 410 Expired and lists again.
    pub fn replace(&self, secrets: Vec<Secret>, list_rv: Option<u64>) {
        let listed: BTreeMap<String, Secret> = secrets
            .into_iter()
            .map(|s| (meta::name(&s.metadata).to_owned(), s))
            .collect();
        let gone: Vec<Arc<Entry>> = {
            let state = self.read();
            state
                .objects
                .values()
                .filter(|e| !listed.contains_key(&e.name))
                .cloned()
                .collect()
        };
        for entry in gone {
            self.delete((*entry.secret).clone());
        }
        for (_, secret) in listed {
            self.apply(secret);
        }
        let rv = {
            let mut state = self.write();
            state.rv = state.rv.max(list_rv.unwrap_or(0));
            state.history.clear();
            state.history_base_rv = state.rv;
            state.expired_through = None;
            state.synced = true;
            state.rv
        };
        self.advanced(rv);
    }

    /// Recomputes every entry's targets under a new policy generation and tells every
    /// watch which entries entered or left which views.
    pub fn set_policy(&self, policy: Arc<Policy>, generation: u64) {
        let received = Instant::now();
        let event = {
            let mut state = self.write();
            if generation <= state.generation && state.generation != 0 {
                return;
            }
            let mut changes = Vec::new();
            let mut updated = Vec::new();
            for entry in state.objects.values() {
                let targets = targets(&policy, &entry.secret);
                if targets != entry.targets {
                    let next = Arc::new(entry.with_targets(targets));
                    changes.push((next.clone(), entry.targets.clone()));
                    updated.push(next);
                }
            }
            for next in updated {
                if let Some(before) = state.objects.insert(next.name.clone(), next.clone()) {
                    state.unindex(&before);
                }
                state.index(&next);
            }
            state.policy = policy.clone();
            state.generation = generation;
            state.seq += 1;
            let event = Arc::new(CacheEvent::Policy {
                seq: state.seq,
                rv: state.rv,
                generation,
                policy,
                changes,
                received,
            });
            self.record(&mut state, &event);
            event
        };
        let _ = self.inner.tx.send(event);
    }

    /// Empties the cache for namespace `namespace` (a new upstream watch), ending every
    /// watch; clients list again.
    pub fn reset(&self, namespace: &str) {
        let event = {
            let mut state = self.write();
            state.namespace = namespace.to_owned();
            state.objects.clear();
            state.views.clear();
            state.owned.clear();
            state.history.clear();
            state.history_base_rv = u64::MAX;
            state.expired_through = None;
            state.synced = false;
            state.seq += 1;
            Arc::new(CacheEvent::Reset { seq: state.seq })
        };
        let _ = self.inner.tx.send(event);
    }

    fn record(&self, state: &mut State, event: &Arc<CacheEvent>) {
        if !state.synced {
            // Before the first complete list, clients cannot resume anyway.
            return;
        }
        state.history.push_back(event.clone());
        while state.history.len() > self.inner.history_limit {
            match state.history.pop_front().as_deref() {
                Some(CacheEvent::Change { rv, .. }) => {
                    state.history_base_rv = state.history_base_rv.max(*rv);
                }
                Some(CacheEvent::Policy { rv, .. }) => {
                    state.expired_through = state.expired_through.max(Some(*rv));
                }
                Some(CacheEvent::Reset { .. }) | None => {}
            }
        }
    }
}

/// Follows the control-plane namespace's Secrets as the relay's own identity until
/// `shutdown`, feeding the cache; restarts the watch when the policy names another
/// namespace. Errors are retried with kube-runtime's backoff. When it returns, the
/// cache is [closed](HubCache::close): nothing follows the API server any more.
pub async fn run_upstream(
    cache: HubCache,
    client: Client,
    policy: PolicyState,
    shutdown: CancellationToken,
) {
    follow_upstream(&cache, client, policy, shutdown).await;
    cache.close();
}

async fn follow_upstream(
    cache: &HubCache,
    client: Client,
    policy: PolicyState,
    shutdown: CancellationToken,
) {
    let mut generations = policy.subscribe();
    // Wait for a valid policy: it names the namespace to follow.
    while !policy.is_ready() {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = generations.changed() => if changed.is_err() { return },
        }
    }
    loop {
        let (current, generation) = policy.snapshot();
        let namespace = current.control_plane_namespace().to_owned();
        cache.reset(&namespace);
        cache.set_policy(current, generation);
        tracing::info!(%namespace, "following hub copies");
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let stream = watcher::watcher(api.clone(), watcher::Config::default()).default_backoff();
        tokio::pin!(stream);
        let mut listing: Option<Vec<Secret>> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = generations.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let (next, generation) = policy.snapshot();
                    if next.control_plane_namespace() != namespace {
                        break;
                    }
                    cache.set_policy(next, generation);
                }
                event = stream.next() => match event {
                    None => return,
                    Some(Ok(Event::Init)) => listing = Some(Vec::new()),
                    Some(Ok(Event::InitApply(s))) => {
                        if let Some(list) = listing.as_mut() {
                            list.push(s);
                        }
                    }
                    Some(Ok(Event::InitDone)) => {
                        if let Some(list) = listing.take() {
                            // The watcher does not say at which resourceVersion it listed:
                            // read one now. Changes in between arrive on the watch.
                            let list_rv = api
                                .list_metadata(&kube::api::ListParams::default().limit(1))
                                .await
                                .ok()
                                .and_then(|l| l.metadata.resource_version)
                                .map(|rv| parse_rv(Some(&rv)));
                            cache.replace(list, list_rv);
                        }
                    }
                    Some(Ok(Event::Apply(s))) => cache.apply(s),
                    Some(Ok(Event::Delete(s))) => cache.delete(s),
                    Some(Err(err)) => {
                        tracing::warn!(%namespace, error = %err, "hub copy watch failed; retrying with backoff");
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests;
