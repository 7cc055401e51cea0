//! Revocation: the relay releases the hub copies the live policy no longer admits.
//!
//! A Secret Source removed or narrowed, a cluster relabelled, a name added to
//! `extraBlocked`: a registered cluster's hub copy that the policy would no longer
//! let it write ([`secret_relay_policy::revocation`]) is released the way its
//! cluster's own release does it, once it has stayed so for the revocation grace
//! ([`Limits::revocation_grace`](crate::Limits)): a copy the cluster created is
//! deleted (as the owning cluster, under the version judged), an adopted one returns
//! to the control plane with its data and its own metadata. A policy fixed within
//! the grace revokes nothing.
//!
//! Unknown state never revokes: nothing is judged before a valid policy has loaded
//! and the cache holds a complete list, and each copy is judged on the policy the
//! cache computed its targets with, only while that is the policy served. Replicas
//! revoke side by side: the preconditions let one of them act, and the others'
//! writes fail harmlessly.

use std::collections::HashMap;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method};
use secret_relay_policy::{ClusterId, Owner, ReleaseAction, Secret, meta, owner, revocation};
use secret_relay_runtime::CancellationToken;
use tokio::time::Instant;

use crate::server::{Relay, forward};

/// How often the copies are judged again while nothing changes.
const MAX_TICK: Duration = Duration::from_secs(5);

/// Runs until `shutdown`.
pub(crate) async fn run(relay: Relay, shutdown: CancellationToken) {
    let grace = relay.inner.limits.revocation_grace;
    let tick = (grace / 2).clamp(Duration::from_millis(100), MAX_TICK);
    let mut generations = relay.inner.policy.subscribe();
    // Per name: since when it has been revoked.
    let mut pending: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
            changed = generations.changed() => if changed.is_err() { return },
        }
        let cache = &relay.inner.cache;
        if !relay.inner.policy.is_ready() || !relay.inner.policy.is_current() || !cache.is_synced()
        {
            pending.clear();
            set_pending(&relay, 0);
            continue;
        }
        let snapshot = cache.snapshot();
        if snapshot.generation != relay.inner.policy.generation() {
            // A policy change is on its way into the cache: judge on it next time.
            continue;
        }
        let now = Instant::now();
        let mut revoked: HashMap<String, Instant> = HashMap::new();
        for entry in &snapshot.entries {
            let Some(r) = revocation(&snapshot.policy, &entry.secret) else {
                continue;
            };
            let since = pending.get(&entry.name).copied().unwrap_or(now);
            // Released only under a policy confirmed current since the grace ended:
            // a fix of the policy within the grace that this replica has not seen
            // yet revokes nothing.
            if now.duration_since(since) < grace
                || !relay
                    .inner
                    .policy
                    .confirmed_since((since + grace).into_std())
            {
                if !pending.contains_key(&entry.name) {
                    tracing::info!(name = %entry.name, rule = %r.decision.rule, reason = %r.decision.reason, ?grace, "a hub copy is revoked; it is released after the grace");
                }
                revoked.insert(entry.name.clone(), since);
                continue;
            }
            release(&relay, &snapshot.policy, &entry.secret, r.action).await;
            // Judged again next time: gone if released, tried again if it failed.
            revoked.insert(entry.name.clone(), since);
        }
        pending = revoked;
        set_pending(&relay, pending.len());
    }
}

fn set_pending(relay: &Relay, n: usize) {
    relay
        .inner
        .metrics
        .revocations_pending
        .set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// Releases revoked `hub` as its owner's release would: deleted as the owning
/// cluster under its uid and resourceVersion, or returned by the relay's own account.
async fn release(
    relay: &Relay,
    policy: &secret_relay_policy::Policy,
    hub: &Secret,
    action: Option<ReleaseAction>,
) {
    let name = meta::name(&hub.metadata);
    let cp = policy.control_plane_namespace();
    let Owner::Cluster(owner_name) = owner(hub) else {
        return;
    };
    // owner() names a cluster only by a valid cluster name: the id is always made.
    let Some(cluster) = ClusterId::new(&owner_name) else {
        return;
    };
    let (what, answer) = match action {
        Some(ReleaseAction::ReturnToControlPlane) => (
            "return",
            crate::write::return_to_control_plane(relay, cp, hub).await,
        ),
        _ => {
            let options = serde_json::json!({
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "preconditions": {
                    "uid": hub.metadata.uid,
                    "resourceVersion": hub.metadata.resource_version,
                },
            });
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let Ok(uri) = crate::write::object_path(cp, name).parse() else {
                return;
            };
            let body = bytes::Bytes::from(options.to_string());
            (
                "delete",
                forward(relay, &Method::DELETE, &uri, &headers, body, Some(&cluster)).await,
            )
        }
    };
    let code = answer.status();
    let result = if code.is_success() {
        tracing::info!(%name, %cluster, action = what, "released a revoked hub copy");
        "ok"
    } else if code.as_u16() == 404 || code.as_u16() == 409 {
        // Released or changed meanwhile (its cluster, another replica): judged again.
        tracing::debug!(%name, %cluster, status = code.as_u16(), "a revoked hub copy changed before its release");
        "changed"
    } else {
        tracing::warn!(%name, %cluster, status = code.as_u16(), "failed to release a revoked hub copy; will retry");
        "error"
    };
    relay
        .inner
        .metrics
        .revocations
        .get_or_create(&crate::metrics::RevocationLabels {
            action: what,
            result,
        })
        .inc();
}
