//! Release and reclaim: what becomes of a hub copy when its cluster lets go
//! of it, when the control plane takes an orphaned one back, and when the
//! live policy no longer admits it ([`revocation`]).

use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;

use crate::document::Policy;
use crate::keys;
use crate::meta;

use super::denials::{blocked_for_cluster, hub_copy_blocked, unknown_cluster};
use super::owner::{Owner, invalid_owner_for_cluster, is_adopted, owner};
use super::rule::{Decision, Rule};
use super::up::{format_labels, source_labels};

/// What a release does to the hub copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseAction {
    /// Delete the hub copy (the cluster created it).
    Delete,
    /// Remove the owner label and adopted annotation, keep the data.
    ReturnToControlPlane,
}

/// A release decision; `action` is set when allowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReleaseDecision {
    /// The decision.
    pub decision: Decision,
    /// What to do with the hub copy when allowed.
    pub action: Option<ReleaseAction>,
}

/// Release of hub copy `hub` by cluster `cluster` (its Secret was deleted or
/// lost the opt-in label): an adopted secret ([`is_adopted`]) returns to the
/// control plane, one the cluster created is deleted, and a copy it does not
/// own is refused. A copy that became blocked after it synced (the policy's
/// `extraBlocked` grew) is still released by its owner.
pub fn release(policy: &Policy, cluster: &str, hub: &Secret) -> ReleaseDecision {
    let name = meta::name(&hub.metadata);
    let ns = hub.metadata.namespace.as_deref().unwrap_or("");
    let cp = policy.control_plane_namespace();
    if policy.cluster(cluster).is_none() {
        let mut d = unknown_cluster(cluster);
        if owner(hub) == Owner::Cluster(cluster.to_owned()) {
            d.reason.push_str(&format!(
                "; while it is not, its copy {cp}/{name} is orphaned and the control plane may delete it or take it over (rule {})",
                Rule::OrphanedOwner
            ));
        }
        return refused(d);
    }
    if ns != cp {
        return refused(Decision::deny(
            Rule::WrongNamespace,
            format!("{ns}/{name} is not a hub copy: hub copies live in namespace {cp}"),
        ));
    }
    release_owned(policy, cluster, name, hub)
}

/// [`release`] once the cluster is known to be registered and `hub` to be in
/// the control-plane namespace; the webhook decides a cluster's DELETE and the
/// relay's release with it.
pub(crate) fn release_owned(
    policy: &Policy,
    cluster: &str,
    name: &str,
    hub: &Secret,
) -> ReleaseDecision {
    let cp = policy.control_plane_namespace();
    match owner(hub) {
        Owner::Cluster(o) if o == cluster && is_adopted(hub) => ReleaseDecision {
            decision: Decision::allow(
                Rule::ReleaseReturn,
                format!(
                    "{cp}/{name} was adopted by cluster {cluster}: it returns to the control plane with its data kept"
                ),
            ),
            action: Some(ReleaseAction::ReturnToControlPlane),
        },
        Owner::Cluster(o) if o == cluster => ReleaseDecision {
            decision: Decision::allow(
                Rule::ReleaseDelete,
                format!(
                    "{cp}/{name} was created by cluster {cluster}: releasing it deletes the hub copy"
                ),
            ),
            action: Some(ReleaseAction::Delete),
        },
        // Refusals name no owner: the copy is not the cluster's.
        o => {
            if let Some(d) = hub_copy_blocked(policy, hub, cp, name) {
                return refused(d);
            }
            refused(match o {
                Owner::Invalid(_) => invalid_owner_for_cluster(cp, name),
                _ => Decision::deny(
                    Rule::ReleaseNotOwner,
                    format!(
                        "cluster {cluster} does not own {cp}/{name}, so it cannot release it; the hub copy is left as it is (the control-plane admin sees its owner with `secret-relay explain`)"
                    ),
                ),
            })
        }
    }
}

/// The control plane's way out of a lock: whether anybody who may write
/// Secrets in the control-plane namespace (no break-glass needed) may delete
/// or take over hub copy `hub`. A copy whose owner is not a registered
/// cluster, or whose owner label is invalid, is orphaned: allowed
/// (`orphaned-owner`), with the suggested action. A copy of a registered
/// cluster stays locked (`ownership-lock`); one the control plane owns is
/// its own (`control-plane-write`, no action).
pub fn reclaim(policy: &Policy, hub: &Secret) -> ReleaseDecision {
    let name = meta::name(&hub.metadata);
    let ns = hub.metadata.namespace.as_deref().unwrap_or("");
    let cp = policy.control_plane_namespace();
    if ns != cp {
        return refused(Decision::deny(
            Rule::WrongNamespace,
            format!("{ns}/{name} is not a hub copy: hub copies live in namespace {cp}"),
        ));
    }
    reclaim_owned(policy, name, hub)
}

/// [`reclaim`] once `hub` is known to be in the control-plane namespace.
pub(crate) fn reclaim_owned(policy: &Policy, name: &str, hub: &Secret) -> ReleaseDecision {
    let cp = policy.control_plane_namespace();
    let take_over = format!(
        "take it over by removing the {} label and the {} annotation",
        keys::OWNER_LABEL,
        keys::ADOPTED_ANNOTATION
    );
    let orphaned = |why: String| ReleaseDecision {
        decision: Decision::allow(
            Rule::OrphanedOwner,
            format!(
                "{why}: the copy {cp}/{name} is orphaned, so the control plane may delete it or {take_over}"
            ),
        ),
        action: Some(if is_adopted(hub) {
            ReleaseAction::ReturnToControlPlane
        } else {
            ReleaseAction::Delete
        }),
    };
    match owner(hub) {
        Owner::ControlPlane => ReleaseDecision {
            decision: Decision::allow(
                Rule::ControlPlaneWrite,
                format!(
                    "{cp}/{name} is owned by the control plane: whoever may write Secrets in {cp} may change or delete it"
                ),
            ),
            action: None,
        },
        Owner::Cluster(o) if policy.cluster(&o).is_some() => revocation(policy, hub)
            .unwrap_or_else(|| refused(Decision::deny(
            Rule::OwnershipLock,
            format!(
                "{cp}/{name} is owned by cluster {o}, which is registered: it is released on cluster {o} (delete the Secret there or remove its {} label); remove cluster {o} from the policy to orphan its copies",
                keys::SECRET_SYNC_LABEL
            ),
        ))),
        Owner::Cluster(o) => orphaned(format!("its owner, cluster {o}, is not registered")),
        Owner::Invalid(v) => orphaned(format!(
            "its owner label {}: {v} names no cluster",
            keys::OWNER_LABEL
        )),
    }
}

/// Revocation: `Some` when hub copy `hub` is owned by a registered cluster and
/// the live policy no longer admits it (no Secret Source matches it any more,
/// or it became blocked), judged with [`up_sync`](super::up_sync)'s own steps on the copy as
/// stored. The decision is `revoked`, with the release's action: an adopted
/// copy returns to the control plane, any other is deleted. `None` when the
/// copy is admitted, or is not a registered cluster's (the control plane's
/// own, or orphaned: see [`reclaim`]).
pub fn revocation(policy: &Policy, hub: &Secret) -> Option<ReleaseDecision> {
    let Owner::Cluster(c) = owner(hub) else {
        return None;
    };
    let cluster = policy.cluster(&c)?;
    let name = meta::name(&hub.metadata);
    let cp = policy.control_plane_namespace();
    // What the policy can take back: a Secret Source, or the blocked list. (The
    // opt-in label and the stamps are the cluster's and the webhook's, judged on
    // every write.)
    let what = format!("the hub copy {cp}/{name}");
    let admitted = blocked_for_cluster(policy, hub, &what).or_else(|| {
        policy
            .matching_source(&c, &source_labels(hub))
            .is_none()
            .then(|| {
                Decision::deny(
                    Rule::NoMatchingSource,
                    format!(
                        "no Secret Source admits {what} from cluster {c}: its labels match the labelSelector of no secretSources entry whose clusterSelector matches the cluster's labels {{{}}}",
                        format_labels(&cluster.labels)
                    ),
                )
            })
    })?;
    let adopted = is_adopted(hub);
    let what = if adopted {
        "returned to the control plane with its data kept"
    } else {
        "deleted"
    };
    Some(ReleaseDecision {
        decision: Decision::allow(
            Rule::Revoked,
            format!(
                "the policy no longer admits {cp}/{name} from its owner, cluster {c} (rule {}: {}): the relay releases it after its revocation grace ({what}), and the control plane may delete it now; to keep it, admit it again",
                admitted.rule, admitted.reason
            ),
        ),
        action: Some(if adopted {
            ReleaseAction::ReturnToControlPlane
        } else {
            ReleaseAction::Delete
        }),
    })
}

fn refused(decision: Decision) -> ReleaseDecision {
    ReleaseDecision {
        decision,
        action: None,
    }
}
