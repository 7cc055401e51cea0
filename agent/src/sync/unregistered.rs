//! The relay's refusal of this cluster as unregistered: a run of such refusals, and
//! nothing else, for [`super::Deletion::unregistered_grace`] deletes every down
//! copy; any other answer (or error) ends the run.

use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::events::EventType;
use secret_relay_policy::{is_down_copy, keys};

use super::answer::is_unregistered;
use super::deletion::delete_down_copy;
use super::{Context, lock};

/// The relay answered: this cluster is registered (again).
pub(super) fn answered(ctx: &Context) {
    if lock(&ctx.unregistered).take().is_some() {
        tracing::info!("the relay serves this cluster again");
        ctx.metrics.unregistered.set(0);
        ctx.changed();
    }
}

/// The relay did not answer with a generation: `err` is its authenticated
/// refusal of this cluster as unregistered (rule `unknown-cluster`), or anything
/// else, which ends a run of refusals (a network error never deletes anything).
/// After refusals alone for [`super::Deletion::unregistered_grace`], every down copy
/// goes: the control plane no longer sends this cluster anything.
pub(super) async fn refused(ctx: &Context, err: &kube::Error) {
    let unregistered = is_unregistered(err);
    let now = Instant::now();
    let purge = {
        let mut run = lock(&ctx.unregistered);
        if !unregistered {
            *run = None;
            false
        } else {
            let (since, done) = run.get_or_insert((now, false));
            let due = !*done && now.duration_since(*since) >= ctx.deletion.unregistered_grace;
            if due {
                *done = true;
            }
            due
        }
    };
    ctx.metrics.unregistered.set(i64::from(unregistered));
    ctx.changed();
    if purge {
        tracing::warn!(grace = ?ctx.deletion.unregistered_grace, "the relay has refused this cluster as unregistered for the whole grace: deleting its down copies");
        purge_down_copies(ctx).await;
    }
}

/// Whether the relay no longer serves this cluster and its down copies are gone.
pub(super) fn purged(ctx: &Context) -> bool {
    lock(&ctx.unregistered).is_some_and(|(_, purged)| purged)
}

/// Adds the run of refusals, if any, to the readiness detail.
pub(super) fn describe(ctx: &Context, detail: &mut String) {
    if let Some((since, done)) = *lock(&ctx.unregistered) {
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
}

/// Deletes every down copy of the agent namespace, read from the API server
/// (the view may be stale), each under the version read.
async fn purge_down_copies(ctx: &Context) {
    let api: Api<Secret> = Api::namespaced(ctx.local.clone(), &ctx.namespace);
    let params = kube::api::ListParams::default().labels(keys::OWNER_LABEL);
    let copies = match api.list(&params).await {
        Ok(list) => list.items,
        Err(err) => {
            tracing::warn!(error = %err, "failed to list the down copies; tried again at the next refusal");
            if let Some((_, done)) = lock(&ctx.unregistered).as_mut() {
                *done = false;
            }
            return;
        }
    };
    for d in copies.iter().filter(|d| is_down_copy(d)) {
        if delete_down_copy(ctx, d).await {
            ctx.events
                .record(
                    d,
                    EventType::Warning,
                    "DownCopyDeleted",
                    format!(
                        "the relay has refused cluster {} as unregistered for {:?}: its down copies are deleted (registering the cluster again brings them back)",
                        ctx.cluster, ctx.deletion.unregistered_grace
                    ),
                )
                .await;
        }
    }
}
