//! Lists and watches of one cluster's view, served from the shared cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut as _, Bytes, BytesMut};
use secret_relay_policy::Selector;
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};

use crate::cache::{CacheEvent, Entry, HubCache, Resume};
use crate::metrics::Metrics;

/// The annotation on BOOKMARK objects that carries the relay's policy generation.
pub const POLICY_GENERATION_ANNOTATION: &str = "secret-relay.io/policy-generation";

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
    /// Where to start: `None` (or "0") sends the current view as ADDED first.
    pub resource_version: Option<u64>,
    /// Send BOOKMARKs.
    pub bookmarks: bool,
    /// End the watch after this long.
    pub timeout: Duration,
    /// How often to send a BOOKMARK when nothing else happens.
    pub bookmark_interval: Duration,
    /// `sendInitialEvents=true`: end the initial events with a BOOKMARK marked
    /// `k8s.io/initial-events-end`.
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
            Some(selector) => {
                let empty = Default::default();
                selector.matches(entry.secret.metadata.labels.as_ref().unwrap_or(&empty))
            }
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

/// Starts a watch of `view`: the returned channel yields the lines of the response
/// body and closes when the watch ends (timeout, a lagging client, a reset, the
/// cluster's removal from the policy, the cache's closing, or the client going away).
pub fn watch(
    cache: &HubCache,
    view: ViewRequest,
    params: WatchParams,
    metrics: Arc<Metrics>,
    permit: OwnedSemaphorePermit,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    // Subscribe before the snapshot, so nothing falls between them.
    let events = cache.subscribe();
    let mut first: Vec<Bytes> = Vec::new();
    let (seq, rv, generation) = match params.resource_version {
        None | Some(0) => {
            let snapshot = cache.snapshot_for(&view.cluster);
            for entry in snapshot.entries.iter().filter(|e| view.sees(e)) {
                first.push(event_line("ADDED", &entry.json));
            }
            if params.send_initial_events && params.bookmarks {
                first.push(bookmark_line(snapshot.rv, snapshot.generation, true));
            }
            (snapshot.seq, snapshot.rv, snapshot.generation)
        }
        Some(from) => match cache.resume(from) {
            (Resume::Expired, snapshot) => {
                first.push(error_line(
                    410,
                    "Expired",
                    &format!("too old resource version: {from} ({})", snapshot.rv),
                ));
                let _ = tx.try_send(first.remove(0));
                return rx;
            }
            (Resume::Replay(replay), snapshot) => {
                let mut state = WatchState {
                    view: &view,
                    rv: from,
                    generation: snapshot.generation,
                    ended: false,
                };
                for event in &replay {
                    state.lines(event, &mut first);
                }
                (snapshot.seq, snapshot.rv.max(from), snapshot.generation)
            }
        },
    };
    metrics.watches.inc();
    let closed = cache.closed();
    tokio::spawn(run_watch(
        tx, events, view, params, first, seq, rv, generation, metrics, permit, closed,
    ));
    rx
}

struct WatchState<'a> {
    view: &'a ViewRequest,
    rv: u64,
    generation: u64,
    ended: bool,
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
                let was = before.as_ref().is_some_and(|b| self.view.sees(b));
                let is = !deleted && self.view.sees(after);
                let kind = match (was, is) {
                    (false, true) => "ADDED",
                    (true, true) => "MODIFIED",
                    (true, false) => "DELETED",
                    (false, false) => "",
                };
                if !kind.is_empty() {
                    out.push(event_line(kind, &after.json));
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
                if policy.cluster(&self.view.cluster).is_none() {
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
                        (true, false) => out.push(event_line("DELETED", &entry.json)),
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
    tx: mpsc::Sender<Bytes>,
    mut events: broadcast::Receiver<Arc<CacheEvent>>,
    view: ViewRequest,
    params: WatchParams,
    first: Vec<Bytes>,
    seq: u64,
    rv: u64,
    generation: u64,
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
    closed: impl Future<Output = ()>,
) {
    let deadline = tokio::time::sleep(params.timeout);
    tokio::pin!(deadline);
    tokio::pin!(closed);
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + params.bookmark_interval,
        params.bookmark_interval,
    );
    let mut state = WatchState {
        view: &view,
        rv,
        generation,
        ended: false,
    };
    'watch: {
        for line in first {
            if tx.send(line).await.is_err() {
                break 'watch;
            }
        }
        let mut out = Vec::new();
        loop {
            tokio::select! {
                () = tx.closed() => break,
                () = &mut deadline => break,
                // Nothing updates the cache any more: end cleanly, the client resumes
                // from its resourceVersion elsewhere.
                () = &mut closed => break,
                _ = ticker.tick(), if params.bookmarks => {
                    if tx.send(bookmark_line(state.rv, state.generation, false)).await.is_err() {
                        break;
                    }
                }
                event = events.recv() => {
                    let event = match event {
                        Ok(event) => event,
                        // Too far behind: end; the client resumes from its last version.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            metrics.watch_lagged.inc();
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    };
                    if event.seq() <= seq {
                        continue;
                    }
                    let received = match event.as_ref() {
                        CacheEvent::Change { received, .. } | CacheEvent::Policy { received, .. } => Some(*received),
                        CacheEvent::Reset { .. } => None,
                    };
                    state.lines(&event, &mut out);
                    let policy_event = matches!(event.as_ref(), CacheEvent::Policy { .. });
                    let delivered = !out.is_empty();
                    for line in out.drain(..) {
                        if tx.send(line).await.is_err() {
                            break 'watch;
                        }
                    }
                    if let (true, Some(received)) = (delivered, received) {
                        metrics.fanout_lag.observe(elapsed(received));
                    }
                    if state.ended {
                        break;
                    }
                    // A new generation reaches the agent at once, so it retries what
                    // the old policy denied.
                    if policy_event && params.bookmarks
                        && tx.send(bookmark_line(state.rv, state.generation, false)).await.is_err()
                    {
                        break;
                    }
                }
            }
        }
    }
    metrics.watches.dec();
}

fn elapsed(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}
