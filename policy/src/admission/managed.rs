//! Writes on a managed cluster: only the agent writes its down copies, and a
//! cluster admin may only confirm a held deletion.

use k8s_openapi::api::core::v1::Secret;

use crate::decision::{Decision, Rule, blocked_decision};
use crate::document::Policy;
use crate::keys;
use crate::meta;

use super::verdict::Change;

pub(super) fn validate_managed(
    policy: &Policy,
    is_agent: bool,
    ns: &str,
    name: &str,
    change: Change,
) -> Decision {
    let what = format!("{ns}/{name}");
    let old_origin = change
        .old()
        .and_then(|s| meta::label(&s.metadata, keys::OWNER_LABEL));
    let new_origin = change
        .written()
        .and_then(|s| meta::label(&s.metadata, keys::OWNER_LABEL));
    if old_origin.is_none() && new_origin.is_none() {
        return Decision::allow(Rule::OutOfScope, format!("{what} is not a down copy"));
    }
    if !is_agent {
        if let Change::Update { old, new } = change
            && old_origin.is_some()
            && only_confirmation_added(old, new)
        {
            return Decision::allow(
                Rule::DeletionConfirmed,
                format!(
                    "{what} is a down copy whose deletion the agent holds: {} confirms it, and the agent deletes the copy",
                    keys::CONFIRM_DELETION_ANNOTATION
                ),
            );
        }
        if let Some(origin) = old_origin {
            return Decision::deny(
                Rule::OwnershipLock,
                format!(
                    "{what} is a down copy the secret-relay agent wrote from {origin}: change it on the control plane, not here"
                ),
            );
        }
        return Decision::deny(
            Rule::OwnerLabelForged,
            format!(
                "only the secret-relay agent may set {} on {what}; remove the label",
                keys::OWNER_LABEL
            ),
        );
    }
    if matches!(change, Change::Update { .. }) && old_origin.is_none() {
        return Decision::deny(
            Rule::DownSyncConflict,
            format!(
                "{what} is a local Secret the agent did not create: the agent never overwrites it; rename or delete the local Secret"
            ),
        );
    }
    // Marking a deletion it holds changes nothing else of the copy: allowed even
    // when the copy left the view because it is now blocked (the hold must outlive
    // the agent's restart then too).
    if let Change::Update { old, new } = change
        && only_annotation_set(old, new, keys::DELETION_HELD_ANNOTATION)
    {
        return Decision::allow(
            Rule::DownCopyAgent,
            format!(
                "the secret-relay agent marks the deletion of the down copy {what} held ({})",
                keys::DELETION_HELD_ANNOTATION
            ),
        );
    }
    if let Some(new) = change.written() {
        if let Some(d) = blocked_decision(policy, new, &format!("secret {what}")) {
            return d;
        }
        if meta::label(&new.metadata, keys::SECRET_SYNC_LABEL).is_some() {
            return Decision::deny(
                Rule::DownCopyOptIn,
                format!(
                    "a down copy never carries {}: it would sync back up; drop the label from {what}",
                    keys::SECRET_SYNC_LABEL
                ),
            );
        }
    }
    Decision::allow(
        Rule::DownCopyAgent,
        format!("the secret-relay agent maintains the down copy {what}"),
    )
}

/// Whether `new` is `old` with only [`keys::CONFIRM_DELETION_ANNOTATION`] set
/// to `"true"` (besides what the API server maintains and an old version's
/// digest annotation, which the mutating webhook removes): a cluster admin's
/// confirmation of a held deletion, which changes nothing else of a down copy.
fn only_confirmation_added(old: &Secret, new: &Secret) -> bool {
    only_annotation_set(old, new, keys::CONFIRM_DELETION_ANNOTATION)
}

/// Whether `new` is `old` with only annotation `key` set to `"true"` (besides what
/// the API server maintains and an old version's digest annotation).
fn only_annotation_set(old: &Secret, new: &Secret, key: &str) -> bool {
    if meta::annotation(&new.metadata, key) != Some("true") {
        return false;
    }
    let strip = |s: &Secret| {
        let mut s = s.clone();
        if let Some(a) = s.metadata.annotations.as_mut() {
            a.remove(key);
            // An old version's stamp, which the mutating webhook removes.
            a.remove(keys::DIGEST_ANNOTATION);
            if a.is_empty() {
                s.metadata.annotations = None;
            }
        }
        s.metadata.managed_fields = None;
        s.metadata.resource_version = None;
        s.metadata.generation = None;
        serde_json::to_value(s).ok()
    };
    matches!((strip(old), strip(new)), (Some(a), Some(b)) if a == b)
}

/// Whether the Secret carries the managed-cluster down-copy marker.
pub fn is_down_copy(secret: &Secret) -> bool {
    meta::label(&secret.metadata, keys::OWNER_LABEL).is_some()
}
