//! The reconciler of one managed cluster: [`Agent`], the public handle, holds a
//! [`Context`] (both stores, the relay's policy as last seen, and what each concern
//! remembers between passes) and starts the scheduler over it once.
//!
//! One room per concern:
//!
//! - `scheduler`: the loop: the first policy generation, the tasks beside it, the
//!   work queue (`queue`) that hands each triggered name to `reconcile`;
//! - `reconcile`: what one name needs, handed to `up`, `release`, `down` or
//!   `deletion`;
//! - `watch`: the two reflectors and their stores; `generation`: the relay's policy
//!   generation and its long poll; `unregistered`: the relay's refusal of the
//!   cluster;
//! - `copy`: building and comparing copies; `answer`: reading the relay's refusals;
//! - `status`, `events`, `retry`: how outcomes are reported and retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::DeleteParams;
use secret_relay_runtime::CancellationToken;

use crate::metrics::{Metrics, StatusLabels};

mod answer;
mod copy;
mod deletion;
mod down;
mod events;
mod generation;
mod queue;
mod reconcile;
mod release;
mod retry;
mod scheduler;
mod status;
mod unregistered;
mod up;
mod watch;

pub use copy::{Fingerprint, down_copy, hub_copy_body, needs_replacing};
pub use deletion::Deletion;
pub use scheduler::CONCURRENCY;

/// The agent of one managed cluster.
pub struct Agent {
    ctx: Arc<Context>,
    /// What the scheduler takes when it runs (once).
    launch: Mutex<Option<scheduler::Launch>>,
}

/// What a reconcile reads and writes: the clients, both stores, the relay's policy
/// as last seen, and each concern's memory, every part owned by the module of its
/// concern.
struct Context {
    cluster: String,
    namespace: String,
    deletion: Deletion,
    local: Client,
    relay: Client,
    metrics: Arc<Metrics>,
    /// The stores of both sides and whether each has been listed completely.
    sides: watch::Sides,
    /// The relay's policy generation, epoch, control-plane namespace and strip rule.
    policy: generation::PolicyView,
    /// What up-sync pushed, synced and saw denied.
    up: Mutex<up::UpMemo>,
    /// Conflicts already reported, by name and local resourceVersion.
    conflicts: Mutex<HashMap<String, Option<String>>>,
    /// Down copies leaving, deleted within the budget window, held beyond it.
    deletions: Mutex<deletion::DeletionMemo>,
    /// Since when the relay has refused this cluster as unregistered, without any
    /// other answer in between; and whether its down copies are gone for it.
    unregistered: Mutex<Option<(Instant, bool)>>,
    /// Per name and direction: the status series currently set.
    statuses: Mutex<HashMap<(String, &'static str), StatusLabels>>,
    /// Bumped whenever a status changes (tests and the demo wait on it).
    changes: tokio::sync::watch::Sender<u64>,
    /// Full passes done: every name of both stores reconciled since the pass began
    /// (tests wait on it).
    passes: tokio::sync::watch::Sender<u64>,
    /// The backoff per name, and where delayed retries send their trigger.
    retries: retry::Retries,
    /// Events to record, published beside the reconciler.
    events: events::Events,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("cluster", &self.ctx.cluster)
            .field("namespace", &self.ctx.namespace)
            .finish_non_exhaustive()
    }
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
        let (sides, writers) = watch::Sides::new();
        let (events, lanes) = events::Events::new(&local);
        let ctx = Context {
            cluster,
            namespace,
            deletion,
            local,
            relay,
            metrics,
            sides,
            policy: generation::PolicyView::default(),
            up: Mutex::default(),
            conflicts: Mutex::default(),
            deletions: Mutex::default(),
            unregistered: Mutex::default(),
            statuses: Mutex::default(),
            changes: tokio::sync::watch::channel(0).0,
            passes: tokio::sync::watch::channel(0).0,
            retries: retry::Retries::default(),
            events,
        };
        Agent {
            ctx: Arc::new(ctx),
            launch: Mutex::new(Some(scheduler::Launch { writers, lanes })),
        }
    }

    /// The cluster this agent is.
    pub fn cluster(&self) -> &str {
        &self.ctx.cluster
    }

    /// The relay's policy generation last seen.
    pub fn generation(&self) -> u64 {
        self.ctx.policy.generation()
    }

    /// Ready once both sides have been listed completely.
    pub fn readiness(&self) -> (bool, String) {
        let ctx = &self.ctx;
        let local = ctx.sides.local_listed();
        let view = ctx.sides.view_listed();
        let ready = local && view;
        let mut detail = format!(
            "local namespace {} listed: {local}; relay view listed: {view}; policy generation {}",
            ctx.namespace,
            self.generation()
        );
        deletion::describe(ctx, &mut detail);
        unregistered::describe(ctx, &mut detail);
        (ready, detail)
    }

    /// The control-plane namespace the relay named, once known.
    pub fn control_plane_namespace(&self) -> Option<String> {
        self.ctx.policy.control_plane_namespace()
    }

    /// Runs until `shutdown`: the two reflectors, the generation long poll and the
    /// reconciler.
    pub async fn run(self: Arc<Self>, resync: Duration, shutdown: CancellationToken) {
        let Some(launch) = lock(&self.launch).take() else {
            tracing::error!("the agent is already running");
            return;
        };
        scheduler::run(self.ctx.clone(), launch, resync, shutdown).await;
    }

    /// A receiver that changes whenever a status or readiness changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ctx.changes.subscribe()
    }

    /// A receiver of the number of full passes done (at each resync, each complete
    /// list of a side and each new policy generation): each counts once every name
    /// of both stores has been reconciled since it began; passes that overlap count
    /// once.
    pub fn passes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ctx.passes.subscribe()
    }

    /// The current status of a Secret in one direction: (state, rule).
    pub fn status(&self, name: &str, direction: &'static str) -> Option<(&'static str, String)> {
        self.ctx.status(name, direction)
    }
}

/// Locks `m`, using a poisoned lock as it stands (as the agent always has: each
/// lock guards memory of past passes, which the next pass corrects).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn name_of(s: &Secret) -> String {
    s.metadata.name.clone().unwrap_or_default()
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
