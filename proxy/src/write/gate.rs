//! The gate: the one door to a hub copy for a write. It looks the copy up (in the
//! cache, or on the API server) and answers for a copy outside the cluster's view.

use std::sync::Arc;

use http::Response;
use secret_relay_policy::{ClusterId, Owner, Policy, Secret, is_adoptable, owner};

use super::answer::{name_taken, not_found, over_quota, unavailable};
use crate::cache::targets;
use crate::route::{PatchKind, Verb};
use crate::server::Relay;
use crate::status::RelayBody;

/// A hub copy a write may be judged against: only [`gate`] makes one.
pub(super) enum Target {
    /// No hub copy of that name.
    Absent,
    /// A hub copy in the cluster's view: its own, or one the control plane sends it.
    Visible(Arc<Secret>),
    /// A control-plane secret of an adoptable name, outside the cluster's view: only
    /// its name, that the control plane owns it, that it is not blocked and its
    /// resourceVersion (the adoption's precondition) are used.
    Adoptable(Arc<Secret>),
}

impl Target {
    pub(super) fn hub(&self) -> Option<&Arc<Secret>> {
        match self {
            Target::Absent => None,
            Target::Visible(h) | Target::Adoptable(h) => Some(h),
        }
    }
}

/// Where the gate reads the hub copy from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The shared cache (falls back to the API server for a name it does not hold).
    Cache,
    /// The API server: the cache may lag behind a change the API server reported.
    Upstream,
}

/// The one door to a hub copy for a write: looks it up and answers for a copy
/// outside the cluster's view. `Err` is the whole answer to the client.
pub(super) async fn gate(
    relay: &Relay,
    policy: &Policy,
    cluster: &ClusterId,
    name: &str,
    verb: Verb,
    source: Source,
) -> Result<Target, Response<RelayBody>> {
    let cached = match source {
        Source::Cache => relay.inner.cache.get_under(name, policy),
        Source::Upstream => None,
    };
    // With the cache's copy come its targets, when the cache computed them under
    // this very policy snapshot.
    let (hub, known_targets) = match cached {
        Some((entry, current)) => (
            Some(entry.secret.clone()),
            current.then(|| entry.targets.clone()),
        ),
        // Most creates are of names the hub does not hold: decided as new, and the
        // API server answers 409 without any change when the cache lagged (see
        // [`write_object`](super::object::write_object)).
        None if source == Source::Cache && verb == Verb::Create => (None, None),
        None => (read_upstream(relay, policy, name).await?, None),
    };
    let Some(hub) = hub else {
        return match verb {
            Verb::Create | Verb::Patch(PatchKind::Apply) => match at_quota(relay, cluster, true) {
                Some(counts) => Err(over_quota(relay, cluster, name, counts)),
                None => Ok(Target::Absent),
            },
            _ => Err(not_found(name)),
        };
    };
    let targets = known_targets.unwrap_or_else(|| targets(policy, &hub));
    if targets.iter().any(|t| t == cluster.as_str()) {
        if verb != Verb::Delete
            && owner(&hub) == Owner::Cluster(cluster.as_str().to_owned())
            && let Some(counts) = at_quota(relay, cluster, false)
        {
            return Err(over_quota(relay, cluster, name, counts));
        }
        return Ok(Target::Visible(hub));
    }
    if matches!(verb, Verb::Create | Verb::Update)
        && owner(&hub) == Owner::ControlPlane
        && is_adoptable(name)
        && policy.blocked(&hub).is_none()
    {
        if let Some(counts) = at_quota(relay, cluster, true) {
            return Err(over_quota(relay, cluster, name, counts));
        }
        return Ok(Target::Adoptable(hub));
    }
    if verb == Verb::Create {
        return Err(name_taken(relay, cluster, name));
    }
    Err(not_found(name))
}

/// A write by a cluster at its quota (see [`crate::Limits`]): a new copy (`adds`)
/// when it owns the most copies or bytes allowed, any other change when it owns
/// the most bytes; `Some` of its counts when refused. Deletions are never asked.
/// Writes the cache has not seen yet may pass the quota by a few.
fn at_quota(relay: &Relay, cluster: &ClusterId, adds: bool) -> Option<(usize, usize)> {
    let limits = &relay.inner.limits;
    let (copies, bytes) = relay.inner.cache.owned_by(cluster.as_str());
    let over_count = adds && copies >= limits.max_copies_per_cluster;
    let over_bytes = bytes >= limits.max_bytes_per_cluster;
    (over_count || over_bytes).then_some((copies, bytes))
}

/// The API server's copy of hub copy `name`, read as the relay's own account. The
/// read is bounded like a forwarded request. An error is an error (503), never a
/// decision on a guess.
async fn read_upstream(
    relay: &Relay,
    policy: &Policy,
    name: &str,
) -> Result<Option<Arc<Secret>>, Response<RelayBody>> {
    let api: kube::Api<Secret> = kube::Api::namespaced(
        relay.inner.upstream.clone(),
        policy.control_plane_namespace(),
    );
    // kube puts the name into the path as it is: encoded here, as for every path.
    let segment = super::upstream::path_segment(name);
    let read =
        tokio::time::timeout(relay.inner.limits.upstream_timeout, api.get_opt(&segment)).await;
    match read {
        Ok(Ok(found)) => Ok(found.map(|mut s| {
            s.metadata.managed_fields = None;
            Arc::new(s)
        })),
        Ok(Err(err)) => {
            tracing::warn!(%name, error = %err, "failed to read the hub copy");
            Err(unavailable())
        }
        Err(_) => {
            tracing::warn!(%name, timeout = ?relay.inner.limits.upstream_timeout, "timed out reading the hub copy");
            Err(unavailable())
        }
    }
}
