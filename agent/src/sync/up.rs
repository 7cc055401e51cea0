//! Up-sync: an opted-in Secret is pushed to the relay when it differs from its hub
//! copy, and the relay's decision is reported: synced, denied (retried at the next
//! policy epoch; a denial in the first 30 s of an epoch is asked again once, since
//! the relay replica that answered may not have loaded that policy yet, and once
//! more at the next full pass if it stood then), waiting on
//! the hub (retried with backoff), revoked, or an error.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use secret_relay_policy::{Rule, is_adopted, keys};

use super::answer::{denied_rule, is_denial};
use super::copy::{Fingerprint, hub_copy_body, needs_replacing};
use super::{Context, lock, name_of, preconditions};

/// What up-sync remembers between passes.
#[derive(Default)]
pub(super) struct UpMemo {
    /// Per name: the fingerprint pushed and the hub copy's resourceVersion at the push,
    /// so an unchanged Secret is not pushed again while the hub copy catches up.
    pub(super) pushed: HashMap<String, (Fingerprint, Option<String>)>,
    /// Names whose hub copy this agent synced and has not released: a denial of
    /// one of them is a revocation (the policy took back what it allowed).
    pub(super) synced: HashSet<String>,
    /// Per name: the fingerprint denied, the policy epoch of the denial, and whether
    /// that epoch was young then (such a denial is asked once more at the next full
    /// pass: [`UpMemo::forget_young_denials`]).
    pub(super) denied: HashMap<String, (Fingerprint, u64, bool)>,
    /// Per name: the policy epoch in which a denial was asked again once
    /// ([`RECHECK_AFTER`]).
    pub(super) rechecked: HashMap<String, u64>,
}

impl UpMemo {
    /// A full pass: denials that stood in a young epoch (asked twice within its first
    /// seconds) are asked once more, now that every relay replica has surely loaded
    /// the policy; one a replica slower than that gave does not stand for good. Asked
    /// again in an old epoch, a denial stands until the policy or the Secret changes.
    pub(super) fn forget_young_denials(&mut self) {
        self.denied.retain(|_, (_, _, young)| !*young);
    }
}

/// How long after a policy epoch begins a denial may come from a relay replica that
/// has not loaded that policy yet: the replicas behind the relay's Service each load
/// it from their own watch, and the agent's long poll hears the first of them.
const YOUNG_EPOCH: std::time::Duration = std::time::Duration::from_secs(30);

/// How long after such a denial the push is asked again, once per name and epoch,
/// before the denial stands until the next epoch.
const RECHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(3);

/// Pushes opted-in Secret `s` as its hub copy in `cp` unless `hub`, the copy in
/// the view (this cluster's own when `mine`), already matches it, or the same push
/// was done or denied (in this policy `epoch`) before.
pub(super) async fn up(
    ctx: &Context,
    cp: &str,
    s: &Secret,
    hub: Option<&Secret>,
    mine: bool,
    epoch: u64,
) {
    let name = name_of(s);
    let body = hub_copy_body(s, cp, &ctx.policy.strip());
    let want = Fingerprint::of(&body, &[]);
    let hub_rv = hub.and_then(|h| h.metadata.resource_version.clone());
    if nothing_to_push(ctx, &name, hub.filter(|_| mine), &want, &hub_rv, epoch) {
        return;
    }
    let api: Api<Secret> = Api::namespaced(ctx.relay.clone(), cp);
    // A new type, or any change of an immutable copy, cannot be an update: the
    // cluster's own copy is deleted (under its version) and created anew.
    let hub = match hub {
        Some(h) if mine && needs_replacing(h, &body) => {
            if !clear_for_replacement(ctx, &api, cp, s, h).await {
                return;
            }
            None
        }
        other => other,
    };
    let result = match hub {
        None => api.create(&PostParams::default(), &body).await,
        Some(h) => {
            let mut body = body;
            body.metadata.resource_version = h.metadata.resource_version.clone();
            api.replace(&name, &PostParams::default(), &body).await
        }
    };
    match result {
        Ok(_) => pushed(ctx, cp, s, &name, want, hub_rv).await,
        Err(kube::Error::Api(status)) if is_denial(&status) => {
            denied(ctx, s, &name, &status, mine, (want, epoch)).await;
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::debug!(%name, "the hub copy changed during the push; will retry");
            ctx.retries.later(&name);
        }
        Err(kube::Error::Api(status)) if status.code == 429 => {
            tracing::debug!(%name, "the relay is over this cluster's rate; will retry");
            ctx.retries.throttled(&name);
        }
        Err(err) => {
            ctx.failed(
                s,
                "up",
                &name,
                "push",
                format!("failed to push to the control plane as {cp}/{name}: {err}"),
            )
            .await;
        }
    }
}

/// Whether `want` needs no push: `own_hub`, this cluster's hub copy, already matches
/// it (then it is synced), or the same push was done against this hub version, or
/// denied in this policy `epoch`.
fn nothing_to_push(
    ctx: &Context,
    name: &str,
    own_hub: Option<&Secret>,
    want: &Fingerprint,
    hub_rv: &Option<String>,
    epoch: u64,
) -> bool {
    // The data is compared in memory (the agent holds both). An old version's
    // digest on the hub copy is no reason to push: the webhook removes it at
    // the copy's next write.
    if let Some(h) = own_hub
        && Fingerprint::without(h, &[keys::OWNER_LABEL], &[keys::DIGEST_ANNOTATION]) == *want
    {
        lock(&ctx.up).synced.insert(name.to_owned());
        ctx.set_status(name, "up", "synced", "");
        return true;
    }
    let memo = lock(&ctx.up);
    memo.pushed.get(name) == Some(&(want.clone(), hub_rv.clone()))
        || memo
            .denied
            .get(name)
            .is_some_and(|(fingerprint, at, _)| fingerprint == want && *at == epoch)
}

/// Deletes this cluster's hub copy `h` (under its version) so that it can be
/// created anew; false, reported as an error, when it cannot be.
async fn clear_for_replacement(
    ctx: &Context,
    api: &Api<Secret>,
    cp: &str,
    s: &Secret,
    h: &Secret,
) -> bool {
    let name = name_of(s);
    if is_adopted(h) {
        // Deleting would be a release, which returns an adopted secret.
        ctx.failed(
            s,
            "up",
            &name,
            "push",
            format!(
                "the adopted hub copy {cp}/{name} cannot take this change as an update (its type differs, or it is immutable), and an adopted secret is never deleted: keep its type and make it mutable, or release it first (remove the {} label), then sync it again",
                keys::SECRET_SYNC_LABEL
            ),
        )
        .await;
        return false;
    }
    match api.delete(&name, &preconditions(h)).await {
        Ok(_) => {
            tracing::info!(%name, "replacing the hub copy: its type or immutable data changed");
            true
        }
        Err(kube::Error::Api(status)) if status.code == 404 => true,
        Err(err) => {
            ctx.failed(
                s,
                "up",
                &name,
                "push",
                format!("failed to replace the hub copy {cp}/{name}: {err}"),
            )
            .await;
            false
        }
    }
}

/// The relay wrote the hub copy: remembered as pushed and synced.
async fn pushed(
    ctx: &Context,
    cp: &str,
    s: &Secret,
    name: &str,
    want: Fingerprint,
    hub_rv: Option<String>,
) {
    {
        let mut memo = lock(&ctx.up);
        memo.pushed.insert(name.to_owned(), (want, hub_rv));
        memo.denied.remove(name);
        memo.rechecked.remove(name);
        memo.synced.insert(name.to_owned());
    }
    ctx.retries.succeeded(name);
    ctx.metrics.action("push", "ok");
    ctx.set_status(name, "up", "synced", "");
    tracing::info!(%name, "pushed to the control plane");
    ctx.events
        .record(
            s,
            EventType::Normal,
            "UpSynced",
            format!("synced to the control plane as {cp}/{name}"),
        )
        .await;
}

/// The rules denied the push of `want` in policy epoch `epoch`: a denial, a
/// revocation of what was synced before, or a wait on another party's hub copy.
async fn denied(
    ctx: &Context,
    s: &Secret,
    name: &str,
    status: &kube::core::Status,
    mine: bool,
    (want, epoch): (Fingerprint, u64),
) {
    let rule = denied_rule(status);
    let waits_on_hub = Rule::from_id(&rule).is_some_and(Rule::depends_on_hub);
    // Synced before and no longer admitted: the policy (or the Secret)
    // took back what it allowed.
    let revoked = !waits_on_hub && (mine || lock(&ctx.up).synced.contains(name));
    let young = ctx.policy.epoch_is_younger_than(YOUNG_EPOCH);
    let rechecked_in = lock(&ctx.up).rechecked.get(name).copied();
    match after_denial(waits_on_hub, young, rechecked_in, epoch) {
        // The hub copy in the way may change or go away unseen (it can
        // be outside this cluster's view): try again with backoff.
        AfterDenial::Backoff => ctx.retries.later(name),
        // The replica that answered may not have loaded this epoch's policy yet:
        // asked again once, a little later, before the denial stands.
        AfterDenial::Recheck => {
            lock(&ctx.up).rechecked.insert(name.to_owned(), epoch);
            ctx.retries.not_before(name, RECHECK_AFTER);
        }
        AfterDenial::Stands => {
            lock(&ctx.up)
                .denied
                .insert(name.to_owned(), (want, epoch, young));
        }
    }
    let (state, reason) = if revoked {
        ("revoked", "UpSyncRevoked")
    } else {
        ("denied", "UpSyncDenied")
    };
    ctx.metrics.action("push", "denied");
    let changed = ctx.set_status(name, "up", state, &rule);
    tracing::info!(%name, %rule, reason = %status.message, "up-sync {state}");
    if changed {
        ctx.events
            .record(s, EventType::Warning, reason, status.message.clone())
            .await;
    }
}

/// What follows a denial.
#[derive(Debug, PartialEq, Eq)]
enum AfterDenial {
    /// Asked again with backoff: it waits on a hub copy that may change unseen.
    Backoff,
    /// Asked again once, [`RECHECK_AFTER`] later: it came in a young epoch, maybe
    /// from a replica still on the policy before it.
    Recheck,
    /// It stands until the next policy epoch (or a change of the Secret).
    Stands,
}

/// What follows a denial in `epoch`: `young` when the epoch began less than
/// [`YOUNG_EPOCH`] ago, `rechecked_in` the epoch of the name's last recheck.
fn after_denial(
    waits_on_hub: bool,
    young: bool,
    rechecked_in: Option<u64>,
    epoch: u64,
) -> AfterDenial {
    if waits_on_hub {
        AfterDenial::Backoff
    } else if young && rechecked_in != Some(epoch) {
        AfterDenial::Recheck
    } else {
        AfterDenial::Stands
    }
}

#[cfg(test)]
mod tests {
    use super::{AfterDenial, after_denial};

    #[test]
    fn a_denial_that_stood_in_a_young_epoch_is_asked_once_more_at_a_full_pass() {
        use super::{Fingerprint, UpMemo};
        let s = k8s_openapi::api::core::v1::Secret::default();
        let want = Fingerprint::of(&s, &[]);
        let mut memo = UpMemo::default();
        memo.denied.insert("young".into(), (want.clone(), 7, true));
        memo.denied.insert("old".into(), (want, 7, false));
        memo.forget_young_denials();
        assert!(!memo.denied.contains_key("young"));
        assert!(memo.denied.contains_key("old"));
    }

    #[test]
    fn a_denial_in_a_young_epoch_is_asked_again_once_then_stands() {
        // A policy change the agent heard from one relay replica: the push landed on
        // another that had not loaded it yet.
        assert_eq!(after_denial(false, true, None, 7), AfterDenial::Recheck);
        assert_eq!(after_denial(false, true, Some(6), 7), AfterDenial::Recheck);
        // Asked again in this epoch and denied again: the policy denies it.
        assert_eq!(after_denial(false, true, Some(7), 7), AfterDenial::Stands);
        // An old epoch: every replica has long loaded its policy.
        assert_eq!(after_denial(false, false, None, 7), AfterDenial::Stands);
        // Waiting on another party's hub copy is retried with backoff, always.
        assert_eq!(after_denial(true, true, None, 7), AfterDenial::Backoff);
        assert_eq!(after_denial(true, false, Some(7), 7), AfterDenial::Backoff);
    }
}
