//! Lists and watches of one cluster's view, served from the shared cache.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut as _, Bytes, BytesMut};
use secret_relay_policy::{Selector, meta};
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};
use tokio::time::Sleep;

use crate::cache::{CacheEvent, Entry, HubCache, Resume};
use crate::metrics::Metrics;

/// The annotation on BOOKMARK objects that carries the relay's policy generation.
pub const POLICY_GENERATION_ANNOTATION: &str = "secret-relay.io/policy-generation";

/// How long a streaming list at a resourceVersion the cache has not reached waits for
/// it before answering "Too large resource version" (kube-apiserver's watch cache
/// `blockTimeout`).
const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// The `retryAfterSeconds` of that answer (kube-apiserver's
/// `resourceVersionTooHighRetrySeconds`).
const TOO_LARGE_RETRY_SECONDS: u32 = 1;

/// What one list or watch asks for, after routing.
#[derive(Clone, Debug)]
pub struct ViewRequest {
    /// The cluster whose view this is.
    pub cluster: String,
    /// `labelSelector`, parsed.
    pub labels: Option<Selector>,
    /// `fieldSelector=metadata.name=X`.
    pub name: Option<String>,
}

/// Watch parameters.
#[derive(Clone, Debug)]
pub struct WatchParams {
    /// `resourceVersion`, `None` when absent or empty: where to start (see [`watch`]).
    pub resource_version: Option<u64>,
    /// Send BOOKMARKs.
    pub bookmarks: bool,
    /// End the watch after this long.
    pub timeout: Duration,
    /// How often to send a BOOKMARK when nothing else happens.
    pub bookmark_interval: Duration,
    /// `sendInitialEvents=true` (a streaming list): start from the current view,
    /// whatever the resourceVersion, and end the initial events with a BOOKMARK
    /// marked `k8s.io/initial-events-end` (see [`watch`]).
    pub send_initial_events: bool,
}

impl ViewRequest {
    /// Whether `entry` is in this view.
    pub fn sees(&self, entry: &Entry) -> bool {
        entry.visible_to(&self.cluster) && self.matches(entry)
    }

    fn matches(&self, entry: &Entry) -> bool {
        if let Some(name) = &self.name
            && *name != entry.name
        {
            return false;
        }
        match &self.labels {
            None => true,
            Some(selector) => selector.matches(meta::labels(&entry.secret.metadata)),
        }
    }
}

/// The list body: `SecretList` of the cluster's view at the cache's resourceVersion.
pub fn list(cache: &HubCache, view: &ViewRequest) -> Bytes {
    let snapshot = cache.snapshot_for(&view.cluster);
    let items: Vec<&Arc<Entry>> = snapshot.entries.iter().filter(|e| view.sees(e)).collect();
    let size = items.iter().map(|e| e.json.len() + 1).sum::<usize>();
    let mut out = BytesMut::with_capacity(size + 128);
    out.put_slice(br#"{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":""#);
    out.put_slice(snapshot.rv.to_string().as_bytes());
    out.put_slice(br#""},"items":["#);
    for (i, entry) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&entry.json);
    }
    out.put_slice(b"]}");
    out.freeze()
}

/// One watch event line.
fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(object.len() + 32);
    out.put_slice(br#"{"type":""#);
    out.put_slice(kind.as_bytes());
    out.put_slice(br#"","object":"#);
    out.put_slice(object);
    out.put_slice(b"}\n");
    out.freeze()
}

fn bookmark_line(rv: u64, generation: u64, initial_events_end: bool) -> Bytes {
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        POLICY_GENERATION_ANNOTATION.to_owned(),
        generation.to_string().into(),
    );
    if initial_events_end {
        annotations.insert("k8s.io/initial-events-end".to_owned(), "true".into());
    }
    let object = serde_json::json!({
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rv.to_string(), "annotations": annotations},
    });
    event_line("BOOKMARK", object.to_string().as_bytes())
}

/// An ERROR event carrying a Status.
pub fn error_line(code: u16, reason: &str, message: &str) -> Bytes {
    let object = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    event_line("ERROR", object.to_string().as_bytes())
}

/// kube-apiserver's answer to a streaming list at a resourceVersion its cache did not
/// reach in time (`storage.NewTooLargeResourceVersionError`): 504 Timeout, cause
/// `ResourceVersionTooLarge`; client-go retries, then falls back to a list.
fn too_large_line(asked: u64, current: u64) -> Bytes {
    let object = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("Timeout: Too large resource version: {asked}, current: {current}"),
        "reason": "Timeout",
        "details": {
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": TOO_LARGE_RETRY_SECONDS,
        },
        "code": 504,
    });
    event_line("ERROR", object.to_string().as_bytes())
}

/// A DELETED event for an entry leaving a view: `last_seen` is the last state of the
/// Secret the cluster was allowed to see, sent with the event's resourceVersion `rv`
/// so that the client's resume point advances. kube-apiserver does the same for an
/// object leaving a filtered watch; here it also means that nothing of the state
/// that took the Secret out of the view (a rotated value, new labels) reaches the
/// cluster. Re-serialized: only these events pay for it.
fn deleted_line(last_seen: &Entry, rv: u64) -> Bytes {
    let mut secret = (*last_seen.secret).clone();
    secret.metadata.resource_version = Some(rv.to_string());
    match serde_json::to_vec(&secret) {
        Ok(json) => event_line("DELETED", &json),
        // Serializing a Secret does not fail (the cache serialized this one already);
        // should it, the same last state at its own resourceVersion is still right.
        Err(_) => event_line("DELETED", &last_seen.json),
    }
}

/// Starts a watch of `view`: the returned channel yields the lines of the response
/// body and closes when the watch ends (timeout, a lagging client, a reset, the
/// cluster's removal from the policy, the cache's closing, or the client going away).
/// Nothing follows an ERROR line.
///
/// Where it starts, as kube-apiserver's watch cache (k8s.io/apiserver
/// `pkg/storage/cacher`) answers the same parameters:
///
/// - `sendInitialEvents=true`, a streaming list (client-go's reflectors ask for one
///   by default, with a known resourceVersion whenever they restart): the current
///   view as ADDED events, then, with `allowWatchBookmarks` (which kube-apiserver
///   requires beside it), a BOOKMARK at the cache's resourceVersion annotated
///   `k8s.io/initial-events-end: "true"`, then live events. For any
///   resourceVersion: the cacher serves initial events from its current store, never
///   from its history, so a replay or 410 Expired is never the answer here.
///   - Empty or `0`: the cache's current state. For an empty one kube-apiserver first
///     reads etcd's current revision and waits for its cache to reach it; the relay
///     serves lists from its cache, so a streaming list starts where a list would.
///   - `N` the cache has reached: the current state, at `N` or newer.
///   - `N` newer than the cache: it waits up to 3 s (the cacher's `blockTimeout`)
///     for the cache to reach `N`, then sends kube-apiserver's one ERROR event
///     (504 Timeout "Too large resource version: N, current: M", cause
///     `ResourceVersionTooLarge`, `retryAfterSeconds` 1) and ends.
/// - Otherwise, empty or `0`: the current view as ADDED events, then live events.
/// - Otherwise `N`: the events after `N` out of the cache's history, then live events;
///   one 410 Expired ERROR when the history no longer reaches back to `N`. A replay
///   judges every event as the live watch did, with one exception: a cluster that
///   the current policy registers is not ended by a past removal of its own (it came
///   back since; that removal's DELETED and the return's ADDED events are still
///   sent). A removal seen live ends the watch with a 403 ERROR.
///
/// A DELETED event, whatever took the Secret out of the view (a change, a deletion,
/// a policy), carries the last state of it that the cluster was allowed to see, at
/// the event's resourceVersion, live and replayed alike.
pub fn watch(
    cache: &HubCache,
    view: ViewRequest,
    params: WatchParams,
    metrics: Arc<Metrics>,
    permit: OwnedSemaphorePermit,
) -> mpsc::Receiver<Bytes> {
    watch_waiting(cache, view, params, metrics, permit, FRESHNESS_WAIT)
}

/// [`watch`], with a streaming list waiting at most `freshness_wait` for the cache
/// to reach its resourceVersion (tests shorten it: the crate's tokio has no paused
/// clock).
pub(crate) fn watch_waiting(
    cache: &HubCache,
    view: ViewRequest,
    params: WatchParams,
    metrics: Arc<Metrics>,
    permit: OwnedSemaphorePermit,
    freshness_wait: Duration,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    // Subscribe before the snapshot or the resume, so nothing falls between them.
    let events = cache.subscribe();
    let begin = begin(cache, &view, &params);
    // An answer that is only an ERROR (410 Expired, a replayed removal) is no open
    // watch.
    let open = !matches!(&begin, Begin::Ready(start) if start.ended);
    if open {
        metrics.watches.inc();
    }
    tokio::spawn(run_watch(
        cache.clone(),
        tx,
        events,
        view,
        params,
        begin,
        freshness_wait,
        metrics,
        open,
        permit,
    ));
    rx
}

/// How a watch starts.
enum Begin {
    /// Its first lines are known.
    Ready(Start),
    /// A streaming list at a resourceVersion the cache has not reached: it waits.
    Fresh(u64),
}

/// A watch's first lines and where its live events continue.
struct Start {
    lines: Vec<Bytes>,
    /// The broadcast position the first lines include.
    seq: u64,
    rv: u64,
    generation: u64,
    /// The last line is an ERROR: nothing follows.
    ended: bool,
}

impl Start {
    fn error(line: Bytes) -> Start {
        Start {
            lines: vec![line],
            seq: 0,
            rv: 0,
            generation: 0,
            ended: true,
        }
    }
}

fn begin(cache: &HubCache, view: &ViewRequest, params: &WatchParams) -> Begin {
    match (params.send_initial_events, params.resource_version) {
        (true, Some(at)) if at > cache.resource_version() => Begin::Fresh(at),
        (true, _) | (false, None | Some(0)) => Begin::Ready(initial(cache, view, params)),
        (false, Some(from)) => Begin::Ready(resume(cache, view, from)),
    }
}

/// The current view as ADDED events, then the initial-events-end BOOKMARK of a
/// streaming list.
fn initial(cache: &HubCache, view: &ViewRequest, params: &WatchParams) -> Start {
    let snapshot = cache.snapshot_for(&view.cluster);
    let mut lines: Vec<Bytes> = snapshot
        .entries
        .iter()
        .filter(|e| view.sees(e))
        .map(|e| event_line("ADDED", &e.json))
        .collect();
    if params.send_initial_events && params.bookmarks {
        lines.push(bookmark_line(snapshot.rv, snapshot.generation, true));
    }
    Start {
        lines,
        seq: snapshot.seq,
        rv: snapshot.rv,
        generation: snapshot.generation,
        ended: false,
    }
}

/// The events after `from` out of the history, or 410 Expired.
fn resume(cache: &HubCache, view: &ViewRequest, from: u64) -> Start {
    match cache.resume(from) {
        (Resume::Expired, snapshot) => Start::error(error_line(
            410,
            "Expired",
            &format!("too old resource version: {from} ({})", snapshot.rv),
        )),
        (Resume::Replay(replay), snapshot) => {
            let mut state = WatchState {
                view,
                rv: from,
                generation: snapshot.generation,
                ended: false,
                registered_now: snapshot.policy.cluster(&view.cluster).is_some(),
            };
            let mut lines = Vec::new();
            for event in &replay {
                state.lines(event, &mut lines);
                if state.ended {
                    break;
                }
            }
            Start {
                lines,
                seq: snapshot.seq,
                rv: snapshot.rv.max(from),
                generation: snapshot.generation,
                ended: state.ended,
            }
        }
    }
}

struct WatchState<'a> {
    view: &'a ViewRequest,
    rv: u64,
    generation: u64,
    ended: bool,
    /// Set only while replaying history, when the current policy registers the
    /// cluster: a past removal from the policy then does not end the watch.
    registered_now: bool,
}

impl WatchState<'_> {
    /// The lines one cache event gives this view.
    fn lines(&mut self, event: &CacheEvent, out: &mut Vec<Bytes>) {
        match event {
            CacheEvent::Change {
                rv,
                before,
                after,
                deleted,
                ..
            } => {
                let last_seen = before.as_ref().filter(|b| self.view.sees(b));
                let is = !deleted && self.view.sees(after);
                match (last_seen, is) {
                    (None, true) => out.push(event_line("ADDED", &after.json)),
                    (Some(_), true) => out.push(event_line("MODIFIED", &after.json)),
                    // Never `after`: it is the state that took the Secret away.
                    (Some(before), false) => out.push(deleted_line(before, *rv)),
                    (None, false) => {}
                }
                self.rv = self.rv.max(*rv);
            }
            CacheEvent::Policy {
                rv,
                generation,
                policy,
                changes,
                ..
            } => {
                if policy.cluster(&self.view.cluster).is_none() && !self.registered_now {
                    out.push(error_line(
                        403,
                        "Forbidden",
                        &format!(
                            "cluster {} was removed from the secret-relay policy",
                            self.view.cluster
                        ),
                    ));
                    self.ended = true;
                    return;
                }
                for (entry, before) in changes {
                    let was = before
                        .binary_search_by(|t| t.as_str().cmp(&self.view.cluster))
                        .is_ok()
                        && self.view.matches(entry);
                    let is = self.view.sees(entry);
                    match (was, is) {
                        (false, true) => out.push(event_line("ADDED", &entry.json)),
                        // A policy changes only who sees an entry, not its content:
                        // the entry is what the cluster last saw.
                        (true, false) => out.push(deleted_line(entry, *rv)),
                        _ => {}
                    }
                }
                self.rv = self.rv.max(*rv);
                self.generation = *generation;
            }
            CacheEvent::Reset { .. } => {
                out.push(error_line(
                    410,
                    "Expired",
                    "the relay's cache restarted; list again",
                ));
                self.ended = true;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)] // the pieces of one watch, moved into its task
async fn run_watch(
    cache: HubCache,
    tx: mpsc::Sender<Bytes>,
    mut events: broadcast::Receiver<Arc<CacheEvent>>,
    view: ViewRequest,
    params: WatchParams,
    begin: Begin,
    freshness_wait: Duration,
    metrics: Arc<Metrics>,
    open: bool,
    _permit: OwnedSemaphorePermit,
) {
    let deadline = tokio::time::sleep(params.timeout);
    tokio::pin!(deadline);
    let closed = cache.closed();
    tokio::pin!(closed);
    'watch: {
        let start = match begin {
            Begin::Ready(start) => start,
            Begin::Fresh(at) => {
                let fresh = tokio::time::timeout(freshness_wait, cache.reached(at));
                tokio::select! {
                    () = tx.closed() => break 'watch,
                    () = &mut deadline => break 'watch,
                    () = &mut closed => break 'watch,
                    fresh = fresh => match fresh {
                        Ok(()) => initial(&cache, &view, &params),
                        Err(_) => Start::error(too_large_line(at, cache.resource_version())),
                    },
                }
            }
        };
        for line in start.lines {
            if tx.send(line).await.is_err() {
                break 'watch;
            }
        }
        if start.ended {
            break 'watch;
        }
        let state = WatchState {
            view: &view,
            rv: start.rv,
            generation: start.generation,
            ended: false,
            registered_now: false,
        };
        let live = Live {
            tx: &tx,
            params: &params,
            metrics: &metrics,
            seq: start.seq,
        };
        live.run(state, &mut events, deadline, closed).await;
    }
    if open {
        metrics.watches.dec();
    }
}

/// A watch past its first lines: where its live events go, and from where on.
struct Live<'a> {
    tx: &'a mpsc::Sender<Bytes>,
    params: &'a WatchParams,
    metrics: &'a Metrics,
    /// The broadcast position the first lines include: earlier events are skipped.
    seq: u64,
}

impl Live<'_> {
    /// Sends live events and BOOKMARKs until the watch ends: the client goes away,
    /// the deadline passes, the cache closes or falls behind, or an ERROR is sent.
    async fn run<C: Future<Output = ()>>(
        &self,
        mut state: WatchState<'_>,
        events: &mut broadcast::Receiver<Arc<CacheEvent>>,
        mut deadline: Pin<&mut Sleep>,
        mut closed: Pin<&mut C>,
    ) {
        let params = self.params;
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + params.bookmark_interval,
            params.bookmark_interval,
        );
        let mut out = Vec::new();
        loop {
            tokio::select! {
                () = self.tx.closed() => break,
                () = &mut deadline => break,
                // Nothing updates the cache any more: end cleanly, the client resumes
                // from its resourceVersion elsewhere.
                () = &mut closed => break,
                _ = ticker.tick(), if params.bookmarks => {
                    if self.tx.send(bookmark_line(state.rv, state.generation, false)).await.is_err() {
                        break;
                    }
                }
                event = events.recv() => {
                    let event = match event {
                        Ok(event) => event,
                        // Too far behind: end; the client resumes from its last version.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            self.metrics.watch_lagged.inc();
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    };
                    if event.seq() <= self.seq {
                        continue;
                    }
                    if !self.deliver(&mut state, &event, &mut out).await {
                        break;
                    }
                }
            }
        }
    }

    /// Sends the lines `event` gives the view (and, for a policy event, a BOOKMARK
    /// with the new generation); `false` when the watch ends.
    async fn deliver(
        &self,
        state: &mut WatchState<'_>,
        event: &CacheEvent,
        out: &mut Vec<Bytes>,
    ) -> bool {
        let received = match event {
            CacheEvent::Change { received, .. } | CacheEvent::Policy { received, .. } => {
                Some(*received)
            }
            CacheEvent::Reset { .. } => None,
        };
        state.lines(event, out);
        let policy_event = matches!(event, CacheEvent::Policy { .. });
        let delivered = !out.is_empty();
        for line in out.drain(..) {
            if self.tx.send(line).await.is_err() {
                return false;
            }
        }
        if let (true, Some(received)) = (delivered, received) {
            self.metrics.fanout_lag.observe(elapsed(received));
        }
        // The last line was an ERROR: nothing follows it.
        if state.ended {
            return false;
        }
        // A new generation reaches the agent at once, so it retries what the old
        // policy denied.
        !(policy_event
            && self.params.bookmarks
            && self
                .tx
                .send(bookmark_line(state.rv, state.generation, false))
                .await
                .is_err())
    }
}

fn elapsed(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}
