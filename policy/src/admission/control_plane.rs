//! Writes to the control-plane namespace, by who writes them: a cluster (its
//! up-sync or release), the relay's own account (returns and its hand-back
//! record), and anybody else (the control plane's own Secrets, and its way
//! out of a lock on an orphaned or revoked copy).

use crate::decision::{
    Decision, Owner, ReleaseAction, Rule, digest, invalid_owner, owner, reclaim_owned,
    release_owned, revocation, uncarried_metadata, unknown_cluster, up_sync_stored,
};
use crate::document::{HANDBACK_SECRET, Policy};
use crate::keys;
use crate::meta;

use super::stamp::stored_stamp_forged;
use super::verdict::Change;

/// A cluster's write to the control-plane namespace. A DELETE is its release
/// ([`release_owned`]); a CREATE or UPDATE is judged by the whole up-sync rule
/// ([`up_sync_stored`], the steps of `up_sync`) on the object as it will be
/// stored: registration, the opt-in label, blocked (new and old), a Secret
/// Source, then the stamps only secret-relay sets, then ownership. Whatever
/// way the write got here (a patch, server-side apply, a body the relay read
/// differently), what is stored is what is judged.
pub(super) fn validate_cluster_write(
    policy: &Policy,
    c: &str,
    name: &str,
    change: Change,
) -> Decision {
    let cp = policy.control_plane_namespace();
    if policy.cluster(c).is_none() {
        return unknown_cluster(c);
    }
    let what = format!("{cp}/{name}");
    match change {
        // A cluster's delete is its release: the same decision as `release`.
        Change::Delete(old) => {
            let r = release_owned(policy, c, name, old);
            match r.action {
                Some(ReleaseAction::ReturnToControlPlane) => adopted_must_return(&what, c),
                _ => r.decision,
            }
        }
        Change::Create(new) | Change::Update { new, .. } => {
            up_sync_stored(policy, c, name, new, change.old(), || {
                stored_stamp_forged(c, name, new, change.old())
                    .or_else(|| uncarried_metadata(policy, c, name, new, change.old()))
            })
        }
    }
}

fn adopted_must_return(what: &str, c: &str) -> Decision {
    Decision::deny(
        Rule::AdoptedMustReturn,
        format!(
            "{what} was adopted by cluster {c}: release returns it to the control plane with its data kept (the relay removes {} and {}); it is never deleted",
            keys::OWNER_LABEL,
            keys::ADOPTED_ANNOTATION
        ),
    )
}

/// The relay's own account does two things, and nothing else: it returns
/// adopted copies of registered clusters to the control plane (the same
/// [`release_owned`] decision the relay asks before it acts), and it keeps its
/// hand-back record ([`HANDBACK_SECRET`], judged like any control-plane
/// write). Its other writes go as the clusters it impersonates.
pub(super) fn validate_relay(policy: &Policy, name: &str, change: Change) -> Decision {
    let cp = policy.control_plane_namespace();
    let what = format!("{cp}/{name}");
    let Some((old, o)) = change.old().and_then(|old| match owner(old) {
        Owner::Cluster(o) if policy.cluster(&o).is_some() => Some((old, o)),
        _ => None,
    }) else {
        if name == HANDBACK_SECRET {
            return validate_other(policy, "the relay", name, change);
        }
        return Decision::deny(
            Rule::OwnershipLock,
            format!(
                "the relay's own account writes only its hand-back record {cp}/{HANDBACK_SECRET} and returns adopted secrets; it may not write {what} (its other writes go as the cluster it acts for)"
            ),
        );
    };
    let release = release_owned(policy, &o, name, old);
    match (change, release.action) {
        (Change::Delete(_), Some(ReleaseAction::ReturnToControlPlane)) => {
            adopted_must_return(&what, &o)
        }
        (Change::Delete(_), _) => Decision::allow(
            Rule::ReleaseDelete,
            format!("the relay releases {what} for cluster {o} by deleting it"),
        ),
        (Change::Update { new, .. }, Some(ReleaseAction::ReturnToControlPlane))
            if meta::label(&new.metadata, keys::OWNER_LABEL).is_none()
                && meta::annotation(&new.metadata, keys::ADOPTED_ANNOTATION).is_none()
                && digest(old) == digest(new) =>
        {
            Decision::allow(
                Rule::ReleaseReturn,
                format!(
                    "the relay returns {what} from cluster {o} to the control plane with its data kept"
                ),
            )
        }
        _ => Decision::deny(
            Rule::OwnershipLock,
            format!(
                "{what} is owned by cluster {o}: the relay's own account may only release it (return an adopted secret with its data kept, or delete a copy the cluster created)"
            ),
        ),
    }
}

pub(super) fn validate_other(policy: &Policy, who: &str, name: &str, change: Change) -> Decision {
    let cp = policy.control_plane_namespace();
    let what = format!("{cp}/{name}");
    let old = change.old();
    match old.map(owner) {
        Some(Owner::Cluster(o)) if policy.cluster(&o).is_some() => {
            // The control plane's way out of a copy the policy no longer admits.
            if let Change::Delete(old) = change
                && let Some(r) = revocation(policy, old)
            {
                return r.decision;
            }
            return Decision::deny(
                Rule::OwnershipLock,
                format!(
                    "secret {what} is owned by cluster {o}: change it on cluster {o}, or remove the {} label there to release it",
                    keys::SECRET_SYNC_LABEL
                ),
            );
        }
        Some(Owner::Cluster(_) | Owner::Invalid(_)) => {
            return validate_orphan(policy, who, name, change);
        }
        Some(Owner::ControlPlane) | None => {}
    }
    // The owner label must be absent on CREATE and unchanged on UPDATE; so
    // must the adopted annotation (it may be dropped).
    if let Some(new) = change.written() {
        let old_label = old.and_then(|s| meta::label(&s.metadata, keys::OWNER_LABEL));
        if let Some(v) = meta::label(&new.metadata, keys::OWNER_LABEL)
            && old_label != Some(v)
        {
            return Decision::deny(
                Rule::OwnerLabelForged,
                format!(
                    "{who} may not set {}: {v} on {what}; only secret-relay stamps ownership, remove the label",
                    keys::OWNER_LABEL
                ),
            );
        }
        let old_adopted = old.and_then(|s| meta::annotation(&s.metadata, keys::ADOPTED_ANNOTATION));
        if let Some(v) = meta::annotation(&new.metadata, keys::ADOPTED_ANNOTATION)
            && old_adopted != Some(v)
        {
            return Decision::deny(
                Rule::OwnerLabelForged,
                format!(
                    "{who} may not set {}: {v} on {what}; only secret-relay marks adoption, remove the annotation",
                    keys::ADOPTED_ANNOTATION
                ),
            );
        }
    }
    let verb = if matches!(change, Change::Delete(_)) {
        "delete"
    } else {
        "change"
    };
    Decision::allow(
        Rule::ControlPlaneWrite,
        format!("{what} is owned by the control plane; {who} may {verb} it"),
    )
}

/// A copy whose owner is not a registered cluster (or is invalid): the
/// control plane's way out of the lock, decided by [`reclaim_owned`] for a
/// delete; an update takes it over when it drops the owner label and the
/// adopted annotation.
fn validate_orphan(policy: &Policy, who: &str, name: &str, change: Change) -> Decision {
    let cp = policy.control_plane_namespace();
    let what = format!("{cp}/{name}");
    let (old, new) = match change {
        Change::Delete(old) => return reclaim_owned(policy, name, old).decision,
        Change::Update { old, new } => (old, new),
        // A create has no old object, so it never reaches here.
        Change::Create(_) => return validate_other(policy, who, name, change),
    };
    let old_label = meta::label(&old.metadata, keys::OWNER_LABEL);
    let new_label = meta::label(&new.metadata, keys::OWNER_LABEL);
    let new_adopted = meta::annotation(&new.metadata, keys::ADOPTED_ANNOTATION);
    let reclaimed = reclaim_owned(policy, name, old).decision;
    match (new_label, new_adopted) {
        (None, None) => Decision::allow(
            Rule::OrphanedOwner,
            format!("{who} takes over {what}: {}", reclaimed.reason),
        ),
        (Some(v), _) if Some(v) != old_label => Decision::deny(
            Rule::OwnerLabelForged,
            format!(
                "{who} may not set {}: {v} on {what}; only secret-relay stamps ownership. {}",
                keys::OWNER_LABEL,
                reclaimed.reason
            ),
        ),
        (None, Some(_)) => Decision::deny(
            Rule::OwnerLabelForged,
            format!(
                "{who} takes over {what} but keeps {}: remove it too, only secret-relay marks adoption",
                keys::ADOPTED_ANNOTATION
            ),
        ),
        (Some(_), _) => match owner(old) {
            Owner::Invalid(v) => invalid_owner(cp, name, &v),
            o => Decision::deny(
                Rule::OwnershipLock,
                format!(
                    "secret {what} is owned by {o}, which is not registered: {who} may not change it as it is. {}",
                    reclaimed.reason
                ),
            ),
        },
    }
}
