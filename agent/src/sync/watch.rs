//! Both sides, followed: the stores of the local namespace and of the relay's view of
//! the hub copies, whether each has been listed completely, and the reflector that
//! keeps each store and triggers the names that change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use secret_relay_runtime::CancellationToken;
use tokio::sync::mpsc;

use super::scheduler::Trigger;
use super::{Context, lock, name_of};

/// The stores of both sides and whether each has been listed completely.
pub(super) struct Sides {
    /// The Secrets of the agent namespace.
    pub(super) local: Store<Secret>,
    /// The relay's view of the hub copies.
    pub(super) view: Store<Secret>,
    local_ready: AtomicBool,
    view_ready: AtomicBool,
}

/// The writers of both stores, taken by their reflectors.
pub(super) struct Writers {
    pub(super) local: reflector::store::Writer<Secret>,
    pub(super) view: reflector::store::Writer<Secret>,
}

/// Which side a reflector follows.
#[derive(Clone, Copy)]
pub(super) enum Side {
    Local,
    View,
}

impl Sides {
    /// Empty stores, neither listed, and their writers.
    pub(super) fn new() -> (Sides, Writers) {
        let (local, local_writer) = reflector::store();
        let (view, view_writer) = reflector::store();
        let sides = Sides {
            local,
            view,
            local_ready: AtomicBool::new(false),
            view_ready: AtomicBool::new(false),
        };
        let writers = Writers {
            local: local_writer,
            view: view_writer,
        };
        (sides, writers)
    }

    /// Whether the local namespace has been listed completely.
    pub(super) fn local_listed(&self) -> bool {
        self.local_ready.load(Ordering::Acquire)
    }

    /// Whether the relay view has been listed completely.
    pub(super) fn view_listed(&self) -> bool {
        self.view_ready.load(Ordering::Acquire)
    }

    /// Whether both sides have been listed completely.
    pub(super) fn both_listed(&self) -> bool {
        self.local_listed() && self.view_listed()
    }

    fn mark_listed(&self, side: Side) {
        let flag = match side {
            Side::Local => &self.local_ready,
            Side::View => &self.view_ready,
        };
        flag.store(true, Ordering::Release);
    }
}

/// Follows one side into its store (kube-runtime's watcher backs off and resumes),
/// triggering the names that change and a full pass after each complete list. The
/// relay's view is listed again whenever the relay serves another policy (see
/// `PolicyView::relists`): once the list under way, if any, is complete, so that
/// policies changing faster than a list takes never keep the view from being listed.
pub(super) async fn follow(
    what: &'static str,
    api: Api<Secret>,
    mut writer: reflector::store::Writer<Secret>,
    tx: mpsc::UnboundedSender<Trigger>,
    ctx: Arc<Context>,
    side: Side,
    shutdown: CancellationToken,
) {
    let mut relists = ctx.policy.subscribe_relists();
    let store = match side {
        Side::Local => ctx.sides.local.clone(),
        Side::View => ctx.sides.view.clone(),
    };
    loop {
        let stream = watcher::watcher(api.clone(), watcher::Config::default()).default_backoff();
        tokio::pin!(stream);
        // Listing until the first InitDone (and during the watcher's own relists).
        let mut listing = true;
        let mut relist_after = false;
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                changed = relists.changed(), if matches!(side, Side::View) && !relist_after => {
                    if changed.is_err() {
                        return;
                    }
                    if listing {
                        relist_after = true;
                        continue;
                    }
                    // A new watcher lists first; the store keeps what it has until
                    // that list is complete.
                    break;
                }
                e = stream.next() => e,
            };
            let Some(event) = event else { return };
            // The names a complete list drops leave without a Delete event: said here.
            let before: Vec<String> = if matches!(event, Ok(Event::InitDone)) {
                store.state().iter().map(|s| name_of(s)).collect()
            } else {
                Vec::new()
            };
            if let Ok(event) = &event {
                writer.apply_watcher_event(event);
            }
            match event {
                Ok(Event::Apply(s)) => {
                    let _ = tx.send(Trigger::Name(name_of(&s)));
                }
                Ok(Event::Delete(s)) => gone(&ctx, &tx, side, name_of(&s)),
                Ok(Event::InitDone) => {
                    for name in before {
                        if store
                            .get(&ObjectRef::new(&name).within(api_namespace(&api)))
                            .is_none()
                        {
                            gone(&ctx, &tx, side, name);
                        }
                    }
                    listing = false;
                    ctx.sides.mark_listed(side);
                    ctx.changed();
                    let _ = tx.send(Trigger::Full);
                    if relist_after {
                        break;
                    }
                }
                Ok(Event::Init) => listing = true,
                Ok(Event::InitApply(_)) => {}
                Err(err) => {
                    tracing::warn!(side = what, error = %err, "watch failed; retrying with backoff");
                }
            }
        }
    }
}

/// `name` left `side`'s store (a Delete event, or missing from a complete list).
fn gone(ctx: &Context, tx: &mpsc::UnboundedSender<Trigger>, side: Side, name: String) {
    if matches!(side, Side::View) {
        // A hub copy that went (released, revoked, deleted by the control plane):
        // what was pushed before no longer stands for it.
        lock(&ctx.up).pushed.remove(&name);
    }
    let _ = tx.send(Trigger::Name(name));
}

/// The namespace `api` reads.
fn api_namespace(api: &Api<Secret>) -> &str {
    api.namespace().unwrap_or_default()
}
