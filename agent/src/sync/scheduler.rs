//! The scheduler: it waits for the relay's first policy generation, starts the tasks
//! beside the reconciler (both reflectors, the generation long poll, the Event
//! lanes), then hands each triggered name to [`reconcile`] through the work queue,
//! up to [`CONCURRENCY`] at once, with a full pass at every resync (counted once
//! every name of it has been reconciled).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use secret_relay_runtime::CancellationToken;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::events::Lane;
use super::generation::poll_generations;
use super::queue::WorkQueue;
use super::reconcile::reconcile;
use super::watch::{Side, Writers, follow};
use super::{Context, lock, name_of};

/// Up to this many names are reconciled at once (each holds at most one write).
pub const CONCURRENCY: usize = 32;

/// Why to reconcile: one name, or every name in both stores.
pub(super) enum Trigger {
    Name(String),
    Full,
}

/// What the scheduler takes when it starts: the writers of both stores and the
/// Event lanes.
pub(super) struct Launch {
    pub(super) writers: Writers,
    pub(super) lanes: Vec<Lane>,
}

/// Runs until `shutdown`: the first generation, then the tasks and the work queue.
pub(super) async fn run(
    ctx: Arc<Context>,
    launch: Launch,
    resync: Duration,
    shutdown: CancellationToken,
) {
    // The relay says which namespace holds the hub copies, and its generation.
    let first = tokio::select! {
        () = shutdown.cancelled() => return,
        first = ctx.first_generation() => first,
    };
    let cp = first.control_plane_namespace.clone();
    ctx.set_first_generation(first);

    let (tx, rx) = mpsc::unbounded_channel::<Trigger>();
    ctx.retries.arm(tx.clone());
    let mut tasks = start_tasks(&ctx, launch, &cp, &tx, &shutdown);
    work(&ctx, &cp, rx, resync, &shutdown).await;
    tasks.abort_all();
}

/// Spawns both reflectors, the generation long poll and one publisher per Event lane.
fn start_tasks(
    ctx: &Arc<Context>,
    launch: Launch,
    cp: &str,
    tx: &mpsc::UnboundedSender<Trigger>,
    shutdown: &CancellationToken,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let local_api: Api<Secret> = Api::namespaced(ctx.local.clone(), &ctx.namespace);
    tasks.spawn(follow(
        "local namespace",
        local_api,
        launch.writers.local,
        tx.clone(),
        ctx.clone(),
        Side::Local,
        shutdown.clone(),
    ));
    let view_api: Api<Secret> = Api::namespaced(ctx.relay.clone(), cp);
    tasks.spawn(follow(
        "relay view",
        view_api,
        launch.writers.view,
        tx.clone(),
        ctx.clone(),
        Side::View,
        shutdown.clone(),
    ));
    tasks.spawn(poll_generations(ctx.clone(), tx.clone(), shutdown.clone()));
    for lane in launch.lanes {
        tasks.spawn(ctx.events.publish(lane));
    }
    tasks
}

/// The work queue, as controllers keep: each name is reconciled by one task at a
/// time, a name triggered while it runs goes again after, and a free slot takes the
/// next name at once (no pass waits for its slowest write).
async fn work(
    ctx: &Arc<Context>,
    cp: &str,
    mut rx: mpsc::UnboundedReceiver<Trigger>,
    resync: Duration,
    shutdown: &CancellationToken,
) {
    let mut queue = WorkQueue::default();
    let mut running = futures::stream::FuturesUnordered::new();
    let mut ticker = tokio::time::interval(resync);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while running.len() < CONCURRENCY
            && let Some(name) = queue.next()
        {
            let ctx = ctx.clone();
            let cp = cp.to_owned();
            let epoch = ctx.policy.epoch();
            running.push(async move {
                reconcile(&ctx, &cp, &name, epoch).await;
                name
            });
        }
        let trigger = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(name) = running.next(), if !running.is_empty() => {
                queue.done(&name);
                count_pass(ctx, &mut queue);
                continue;
            }
            _ = ticker.tick() => Trigger::Full,
            t = rx.recv() => match t { Some(t) => t, None => break },
        };
        match trigger {
            Trigger::Name(name) => queue.add(name),
            Trigger::Full => {
                lock(&ctx.up).forget_young_denials();
                let local = ctx.sides.local.state().into_iter();
                let view = ctx.sides.view.state().into_iter();
                queue.add_pass(local.chain(view).map(|s| name_of(&s)));
                count_pass(ctx, &mut queue);
            }
        }
    }
}

/// Counts the full pass under way once every name of it has run (an empty one at once).
fn count_pass(ctx: &Context, queue: &mut WorkQueue) {
    if queue.pass_done() {
        ctx.passes.send_modify(|n| *n += 1);
    }
}
