//! What one name needs: from the local Secret and the hub copy of that name, as the
//! stores hold them now, up-sync, release, down-sync or a down copy's deletion.

use kube::runtime::reflector::ObjectRef;
use secret_relay_policy::{Owner, is_down_copy, meta, owner};

use super::deletion::{forget, leave};
use super::down::down;
use super::release::release;
use super::up::up;
use super::{Context, unregistered};

/// Reconciles `name`, whose hub copy lives in `cp`, under policy epoch `epoch`.
pub(super) async fn reconcile(ctx: &Context, cp: &str, name: &str, epoch: u64) {
    if unregistered::purged(ctx) {
        // The relay no longer serves this cluster: its view is stale, and its
        // down copies are gone on purpose.
        return;
    }
    let local = ctx
        .sides
        .local
        .get(&ObjectRef::new(name).within(&ctx.namespace));
    let hub = ctx.sides.view.get(&ObjectRef::new(name).within(cp));
    let both_listed = ctx.sides.both_listed();
    let mine = hub
        .as_ref()
        .is_some_and(|h| owner(h) == Owner::Cluster(ctx.cluster.clone()));
    let opted = local
        .as_ref()
        .filter(|s| meta::is_opted_in(&s.metadata) && !is_down_copy(s));
    match (opted, &hub) {
        (Some(s), _) => up(ctx, cp, s, hub.as_deref(), mine, epoch).await,
        (None, Some(h)) if mine && both_listed => release(ctx, name, h).await,
        _ => {}
    }
    if opted.is_some() || mine {
        return;
    }
    match (&hub, &local) {
        (Some(h), _) => down(ctx, h, local.as_deref()).await,
        (None, Some(d)) if is_down_copy(d) && both_listed => leave(ctx, d).await,
        (None, None) => forget(ctx, name),
        _ => {}
    }
}
