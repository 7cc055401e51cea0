//! Deleting down copies whose hub copy left the view: never at once ([`Deletion`]'s
//! grace), never many at once (its budget, beyond which a deletion is held until a
//! cluster admin confirms it), and always under the version judged. A held copy is
//! marked ([`keys::DELETION_HELD_ANNOTATION`]), so it stays held when the budget
//! window slides and when the agent restarts.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use secret_relay_policy::{is_down_copy, keys, meta};

use super::{Context, lock, name_of, preconditions};

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

/// What the agent remembers of down copies on their way out.
#[derive(Default)]
pub(super) struct DeletionMemo {
    /// Down copies whose hub copy left the view, since when.
    leaving: HashMap<String, Instant>,
    /// Which down copies were deleted when, within the budget window.
    deleted: VecDeque<(Instant, String)>,
    /// Down copies whose deletion is held beyond the budget.
    held: BTreeSet<String>,
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

/// A down copy whose hub copy left the view: deleted after the grace, within
/// the budget, or once a cluster admin confirms it. Once held, it stays held
/// until confirmed (or it comes back), whatever the budget says later.
pub(super) async fn leave(ctx: &Context, d: &Secret) {
    let name = name_of(d);
    let now = Instant::now();
    let confirmed =
        meta::annotation(&d.metadata, keys::CONFIRM_DELETION_ANNOTATION) == Some("true");
    // Held by this agent, or by one before it (the marker on the copy): the
    // window sliding frees budget, but never a held deletion.
    if !confirmed && (is_marked_held(d) || lock(&ctx.deletions).held.contains(&name)) {
        keep_held(ctx, d, &name).await;
        return;
    }
    let since = *lock(&ctx.deletions)
        .leaving
        .entry(name.clone())
        .or_insert(now);
    let left = ctx.deletion.grace.saturating_sub(now.duration_since(since));
    if !confirmed && !left.is_zero() {
        wait_for_grace(ctx, d, &name, left).await;
        return;
    }
    match relay_confirms_it_left(ctx, &name).await {
        Some(true) => {}
        Some(false) => {
            tracing::info!(%name, "the relay still serves the hub copy of a down copy that left the view: listing the view again instead of deleting the copy");
            stop_leaving(ctx, &name);
            ctx.policy.relist_view();
            return;
        }
        None => {
            ctx.set_status(&name, "down", "leaving", "unconfirmed");
            ctx.retries.later(&name);
            return;
        }
    }
    if !confirmed && let Err((deleted, budget)) = reserve_deletion(ctx, now, &name) {
        hold(ctx, d, &name, deleted, budget).await;
        return;
    }
    let gone = delete_down_copy(ctx, d).await;
    let mut memo = lock(&ctx.deletions);
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
    ctx.metrics.deletions_held.set(held_count(ctx));
}

/// Whether the relay confirms that hub copy `name` is out of this cluster's view,
/// asked just before its down copy goes (or is held): the store the decision was
/// made on may be stale, its watch failing, or resumed on a replica that gave the
/// view under another policy. `Some(true)`: out of the view (the relay's 404).
/// `Some(false)`: in it after all. `None`: no answer, so nothing is deleted now.
async fn relay_confirms_it_left(ctx: &Context, name: &str) -> Option<bool> {
    let cp = ctx.policy.control_plane_namespace()?;
    let api: Api<Secret> = Api::namespaced(ctx.relay.clone(), &cp);
    let asked = tokio::time::timeout(Duration::from_secs(30), api.get_opt(name));
    match asked.await {
        Ok(Ok(None)) => Some(true),
        Ok(Ok(Some(_))) => Some(false),
        Err(_) => {
            tracing::warn!(%name, "the relay did not answer within 30s whether a hub copy left the view; its down copy stays, asked again later");
            None
        }
        Ok(Err(err)) => {
            tracing::warn!(%name, error = %err, "the relay did not confirm that a hub copy left the view; its down copy stays, asked again later");
            None
        }
    }
}

/// Deletes down copy `d` under the version judged; true when it is gone.
pub(super) async fn delete_down_copy(ctx: &Context, d: &Secret) -> bool {
    let name = name_of(d);
    let api: Api<Secret> = Api::namespaced(ctx.local.clone(), &ctx.namespace);
    match api.delete(&name, &preconditions(d)).await {
        Ok(_) => {
            ctx.metrics.action("delete-down-copy", "ok");
            ctx.clear_status(&name, "down");
            tracing::info!(%name, "deleted a down copy that left the view");
            true
        }
        Err(kube::Error::Api(status)) if status.code == 404 => true,
        Err(kube::Error::Api(status)) if status.code == 409 => false,
        Err(err) => {
            ctx.metrics.action("delete-down-copy", "error");
            tracing::warn!(%name, error = %err, "failed to delete the down copy; will retry");
            ctx.retries.later(&name);
            false
        }
    }
}

/// `name` is no longer on its way out (its hub copy is back, or it is gone on both
/// sides); true when it was leaving or held.
pub(super) fn stop_leaving(ctx: &Context, name: &str) -> bool {
    let was = {
        let mut memo = lock(&ctx.deletions);
        memo.leaving.remove(name).is_some() | memo.held.remove(name)
    };
    if was {
        ctx.metrics.deletions_held.set(held_count(ctx));
    }
    was
}

/// Gone on both sides: nothing is leaving or held under `name` any more.
pub(super) fn forget(ctx: &Context, name: &str) {
    if stop_leaving(ctx, name) {
        ctx.clear_status(name, "down");
    }
}

/// Adds the held and leaving down copies, if any, to the readiness detail.
pub(super) fn describe(ctx: &Context, detail: &mut String) {
    let memo = lock(&ctx.deletions);
    if !memo.held.is_empty() {
        // A count, not names: whoever reaches the admin port reads this, and may have
        // no right to list the Secrets (their names are in the DownCopyDeletionHeld
        // Events).
        detail.push_str(&format!(
            "; {} down-copy deletions held beyond the budget (their DownCopyDeletionHeld Events name them): confirm each with `kubectl -n {} annotate secret <name> {}=true`",
            memo.held.len(),
            ctx.namespace,
            keys::CONFIRM_DELETION_ANNOTATION
        ));
    }
    if !memo.leaving.is_empty() {
        detail.push_str(&format!(
            "; {} down copies left the view and go after the {:?} grace",
            memo.leaving.len(),
            ctx.deletion.grace
        ));
    }
}

/// Within the grace: reported once as leaving, and tried again when `left` is up.
async fn wait_for_grace(ctx: &Context, d: &Secret, name: &str, left: Duration) {
    if ctx.set_status(name, "down", "leaving", "") {
        tracing::info!(%name, grace = ?ctx.deletion.grace, "a down copy left the view; it is deleted after the grace");
        ctx.events
            .record(
                d,
                EventType::Normal,
                "DownCopyLeaving",
                format!(
                    "the control plane no longer sends {name} to this cluster: the copy is deleted after {:?} unless it comes back",
                    ctx.deletion.grace
                ),
            )
            .await;
    }
    ctx.retries.after(name, left + Duration::from_millis(50));
}

/// Beyond the budget: held, marked on the copy, and reported once, until it comes
/// back or is confirmed.
async fn hold(ctx: &Context, d: &Secret, name: &str, deleted: usize, budget: usize) {
    let newly = !lock(&ctx.deletions).held.contains(name);
    keep_held(ctx, d, name).await;
    if newly {
        tracing::warn!(%name, deleted, budget, "a down-copy deletion is held beyond the budget");
        ctx.events
            .record(
                d,
                EventType::Warning,
                "DownCopyDeletionHeld",
                format!(
                    "the control plane no longer sends {name} to this cluster, but {deleted} down copies were deleted within {:?} (the budget is {budget}): the copy is kept until it comes back or a cluster admin confirms with `kubectl -n {} annotate secret {name} {}=true`",
                    ctx.deletion.budget_window,
                    ctx.namespace,
                    keys::CONFIRM_DELETION_ANNOTATION
                ),
            )
            .await;
    }
}

/// Held already, in memory or by the marker on the copy (an agent before this one
/// held it): held again, with no new Event, and marked when the marker is missing.
async fn keep_held(ctx: &Context, d: &Secret, name: &str) {
    lock(&ctx.deletions).held.insert(name.to_owned());
    ctx.metrics.deletions_held.set(held_count(ctx));
    if !is_marked_held(d) {
        mark_held(ctx, d, name).await;
    }
    ctx.set_status(name, "down", "held", "");
}

/// Marks down copy `d` held under the version judged: a copy changed meanwhile
/// (409) is tried again later, and a copy gone needs no marker.
async fn mark_held(ctx: &Context, d: &Secret, name: &str) {
    // An update, not a patch: the agent's Role has no patch on Secrets.
    let api: Api<Secret> = Api::namespaced(ctx.local.clone(), &ctx.namespace);
    match api
        .replace(name, &PostParams::default(), &marked_held(d))
        .await
    {
        Ok(_) => {
            ctx.metrics.action("mark-deletion-held", "ok");
            ctx.retries.succeeded(name);
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::debug!(%name, "the down copy changed before it was marked held; will retry");
            ctx.retries.later(name);
        }
        Err(kube::Error::Api(status)) if status.code == 403 => {
            // Refused by a rule: asked again at the next full pass, not in a loop; the
            // hold stands in memory meanwhile.
            ctx.metrics.action("mark-deletion-held", "denied");
            tracing::warn!(%name, reason = %status.message, "the down copy's held deletion could not be marked");
        }
        Err(err) => {
            ctx.metrics.action("mark-deletion-held", "error");
            tracing::warn!(%name, error = %err, "failed to mark the down copy's deletion held; will retry");
            ctx.retries.later(name);
        }
    }
}

/// Whether down copy `d` carries the held marker.
fn is_marked_held(d: &Secret) -> bool {
    meta::annotation(&d.metadata, keys::DELETION_HELD_ANNOTATION) == Some("true")
}

/// Down copy `d` with the held marker, at the version judged (its resourceVersion
/// stays, so writing it fails with 409 if the copy changed since).
fn marked_held(d: &Secret) -> Secret {
    let mut marked = d.clone();
    marked
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(keys::DELETION_HELD_ANNOTATION.to_owned(), "true".to_owned());
    marked
}

/// Takes one deletion of the budget at `now`; `Err((deleted, budget))` when it
/// would exceed it: `deleted` copies went within the window, of `budget`. Taken
/// before the delete, so concurrent reconciles never overrun it together.
fn reserve_deletion(ctx: &Context, now: Instant, name: &str) -> Result<(), (usize, usize)> {
    let copies = ctx
        .sides
        .local
        .state()
        .iter()
        .filter(|s| is_down_copy(s))
        .count();
    let mut memo = lock(&ctx.deletions);
    let window = ctx.deletion.budget_window;
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
            ctx.sides
                .local
                .get(&ObjectRef::new(n).within(&ctx.namespace))
                .is_none_or(|s| !is_down_copy(&s))
        })
        .count();
    let budget = ((copies + gone) * ctx.deletion.budget_percent as usize)
        .div_ceil(100)
        .max(1);
    if memo.deleted.len() >= budget {
        return Err((memo.deleted.len(), budget));
    }
    memo.deleted.push_back((now, name.to_owned()));
    Ok(())
}

fn held_count(ctx: &Context) -> i64 {
    i64::try_from(lock(&ctx.deletions).held.len()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use secret_relay_policy::{Direction, StripMetadata, carried_annotations};

    use super::super::copy::{Fingerprint, down_copy};
    use super::*;

    #[test]
    fn the_held_marker_keeps_the_version_judged_is_drift_to_down_sync_and_never_goes_up() {
        let hub: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "repo", "namespace": "argocd", "uid": "u-1", "resourceVersion": "7",
                "annotations": {"note": "x"}},
            "data": {"k": "dg=="},
        }))
        .unwrap();
        let strip = StripMetadata::default();
        let want = down_copy(&hub, "akuity", &strip);
        let mut copy = want.clone();
        copy.metadata.uid = Some("d-1".to_owned());
        copy.metadata.resource_version = Some("42".to_owned());
        assert!(!is_marked_held(&copy));
        let marked = marked_held(&copy);
        assert!(is_marked_held(&marked));
        // Only the marker is added, under the version judged: a copy changed since
        // refuses the write (409).
        let mut unmarked = marked.clone();
        unmarked
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(keys::DELETION_HELD_ANNOTATION);
        assert_eq!(unmarked, copy);
        assert_eq!(marked.metadata.resource_version.as_deref(), Some("42"));
        // The hub copy back: the marker is drift, and down-sync writes the copy
        // again without it.
        assert_eq!(Fingerprint::of(&copy, &[]), Fingerprint::of(&want, &[]));
        assert_ne!(Fingerprint::of(&marked, &[]), Fingerprint::of(&want, &[]));
        // Nothing carries it to another cluster.
        for direction in [Direction::Up, Direction::Down] {
            let carried =
                carried_annotations(marked.metadata.annotations.as_ref(), direction, &strip);
            assert!(!carried.contains_key(keys::DELETION_HELD_ANNOTATION));
            assert!(carried.contains_key("note"));
        }
        // Only "true" marks it.
        let mut other = copy.clone();
        other
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(keys::DELETION_HELD_ANNOTATION.to_owned(), "yes".to_owned());
        assert!(!is_marked_held(&other));
    }
}
