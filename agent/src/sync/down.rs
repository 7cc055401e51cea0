//! Down-sync: a hub copy in the view that another party owns is written as a down
//! copy; drift is reverted, a copy that cannot be updated is replaced, and a local
//! Secret the agent did not write is never overwritten (a conflict instead).

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use secret_relay_policy::{is_down_copy, keys, meta};

use super::copy::{Fingerprint, down_copy, needs_replacing};
use super::deletion::stop_leaving;
use super::{Context, lock, name_of, preconditions};

/// Writes hub copy `hub` as the down copy, over `local`, the Secret of that name.
pub(super) async fn down(ctx: &Context, hub: &Secret, local: Option<&Secret>) {
    let name = name_of(hub);
    // Back in the view within the grace, or while held: kept.
    if stop_leaving(ctx, &name) {
        tracing::info!(%name, "a down copy that left the view came back; it is kept");
    }
    let want = down_copy(hub, &ctx.namespace, &ctx.policy.strip());
    let api: Api<Secret> = Api::namespaced(ctx.local.clone(), &ctx.namespace);
    let (action, result) = match local {
        None => (
            "write-down-copy",
            api.create(&PostParams::default(), &want).await.map(|_| ()),
        ),
        Some(d) if !is_down_copy(d) => {
            conflict(ctx, d, &name).await;
            return;
        }
        Some(d) => {
            // Data, metadata and the source marker: a break-glass edit, an old
            // version's digest or a newer hub copy is drift, written over.
            if Fingerprint::of(d, &[]) == Fingerprint::of(&want, &[]) {
                ctx.set_status(&name, "down", "synced", "");
                return;
            }
            origin_changed(ctx, d, &want, &name).await;
            rewrite(&api, &name, d, &want).await
        }
    };
    match result {
        Ok(()) => {
            ctx.retries.succeeded(&name);
            lock(&ctx.conflicts).remove(&name);
            ctx.metrics.action(action, "ok");
            ctx.set_status(&name, "down", "synced", "");
            tracing::info!(%name, action, "down copy written");
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::debug!(%name, "the local Secret changed during the write; will retry");
            ctx.retries.later(&name);
        }
        Err(err) => {
            let on = local.unwrap_or(&want);
            ctx.failed(
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

/// The hub copy a down copy is written from now comes from another party (the
/// control plane's went, and a cluster's of the same name came, or the other way):
/// written over like any change, and said loudly, since whoever reads the Secret by
/// its name now reads another party's data.
async fn origin_changed(ctx: &Context, d: &Secret, want: &Secret, name: &str) {
    let origin = |s: &Secret| meta::label(&s.metadata, keys::OWNER_LABEL).map(str::to_owned);
    let (was, now) = (origin(d), origin(want));
    if was == now {
        return;
    }
    let (was, now) = (was.unwrap_or_default(), now.unwrap_or_default());
    tracing::warn!(%name, %was, %now, "a down copy now comes from another party");
    ctx.events
        .record(
            d,
            EventType::Warning,
            "DownCopyOriginChanged",
            format!(
                "the control plane now sends {name} from {now}, not from {was}: the copy is written over with it; whoever reads this Secret now reads {now}'s data"
            ),
        )
        .await;
}

/// A local Secret `d` the agent did not write holds the name: kept, and reported
/// once per version.
async fn conflict(ctx: &Context, d: &Secret, name: &str) {
    let seen = d.metadata.resource_version.clone();
    let first = lock(&ctx.conflicts).insert(name.to_owned(), seen.clone()) != Some(seen);
    ctx.set_status(name, "down", "conflict", "down-sync-conflict");
    if first {
        ctx.metrics.action("conflict", "denied");
        tracing::warn!(%name, "a local Secret of the same name exists; the down copy is not written");
        ctx.events
            .record(
                d,
                EventType::Warning,
                "DownSyncConflict",
                format!(
                    "the control plane sends a Secret named {name} to this cluster, but this Secret was not written by secret-relay: it is kept as it is (rule down-sync-conflict); rename or delete it to receive the hub copy"
                ),
            )
            .await;
    }
}

/// Writes `want` over down copy `d`, which differs from it: replaced when an update
/// cannot do it, updated otherwise; the action and its result.
async fn rewrite(
    api: &Api<Secret>,
    name: &str,
    d: &Secret,
    want: &Secret,
) -> (&'static str, Result<(), kube::Error>) {
    if needs_replacing(d, want) {
        // A new type, or a change of an immutable copy: delete the copy
        // (under the version judged) and create it anew.
        let result = match api.delete(name, &preconditions(d)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(err) => Err(err),
        };
        let result = match result {
            Ok(()) => api.create(&PostParams::default(), want).await.map(|_| ()),
            Err(err) => Err(err),
        };
        ("replace-down-copy", result)
    } else {
        let mut next = want.clone();
        next.metadata.resource_version = d.metadata.resource_version.clone();
        (
            "revert-drift",
            api.replace(name, &PostParams::default(), &next)
                .await
                .map(|_| ()),
        )
    }
}
