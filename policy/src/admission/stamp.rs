//! The stamps only secret-relay sets on a cluster's hub copy (its owner
//! label and the adopted annotation): setting them ([`stamp_cluster_write`])
//! and refusing a write that forges them ([`forged_stamp`]).

use k8s_openapi::api::core::v1::Secret;

use crate::decision::{ADOPTABLE_NAMES, Decision, Owner, Rule, is_adoptable, is_adopted, owner};
use crate::keys;
use crate::meta;

/// A denial when a cluster's write, as the cluster sent it (before the
/// mutating webhook), sets a stamp only secret-relay sets: an owner label
/// other than its own, or an adopted annotation, that the hub copy `hub` does
/// not already carry. Absent stamps are fine (the mutating webhook sets them),
/// and so are the hub copy's own (a patch keeps them; another cluster's copy
/// is then refused by the ownership rule). The relay's early answer; the
/// webhook judges the stored object ([`validate`](super::validate())). The reason names the
/// field, never the value written.
pub fn forged_stamp(cluster: &str, written: &Secret, hub: Option<&Secret>) -> Option<Decision> {
    let own = own_owner_label(cluster);
    if let Some(v) = meta::label(&written.metadata, keys::OWNER_LABEL)
        && v != own
        && hub.and_then(|h| meta::label(&h.metadata, keys::OWNER_LABEL)) != Some(v)
    {
        return Some(forged(format!(
            "cluster {cluster} may not set the label {}: secret-relay stamps ownership ({own} for this cluster); remove the label",
            keys::OWNER_LABEL
        )));
    }
    if let Some(v) = meta::annotation(&written.metadata, keys::ADOPTED_ANNOTATION)
        && hub.and_then(|h| meta::annotation(&h.metadata, keys::ADOPTED_ANNOTATION)) != Some(v)
    {
        return Some(forged(format!(
            "cluster {cluster} may not set the annotation {}: secret-relay marks adoption; remove the annotation",
            keys::ADOPTED_ANNOTATION
        )));
    }
    None
}

/// A denial when the stored object does not carry exactly the stamps the
/// mutating webhook sets for cluster `c`: its owner label, and the adopted
/// annotation iff it adopts (or had adopted) a control-plane secret. The
/// mutating webhook runs first, so this fails only when it did not run or
/// something changed its stamps after it. [`forged_stamp`] is the same
/// contract on the object before the mutating webhook.
pub(super) fn stored_stamp_forged(
    c: &str,
    name: &str,
    new: &Secret,
    old: Option<&Secret>,
) -> Option<Decision> {
    let want_owner = own_owner_label(c);
    if meta::label(&new.metadata, keys::OWNER_LABEL) != Some(want_owner.as_str()) {
        return Some(forged(format!(
            "a hub copy written by cluster {c} must carry {}: {want_owner}, stamped by the mutating webhook; do not set it by hand",
            keys::OWNER_LABEL
        )));
    }
    let want_adopted = expected_adopted(c, name, old).then_some("true");
    if meta::annotation(&new.metadata, keys::ADOPTED_ANNOTATION) != want_adopted {
        return Some(forged(format!(
            "{} is set only by secret-relay when cluster {c} adopts one of {}",
            keys::ADOPTED_ANNOTATION,
            ADOPTABLE_NAMES.join(", ")
        )));
    }
    None
}

/// Stamps cluster `c`'s write of hub copy `name` as the mutating webhook would:
/// its owner label, the adopted annotation iff it adopts (or had adopted) a
/// control-plane secret (`old` is the copy it replaces), and no digest of
/// values. The relay stamps what it forwards, so the API server need not call
/// the mutating webhook for the clusters' writes; the validating webhook still
/// checks every stamp on the stored object.
pub fn stamp_cluster_write(c: &str, name: &str, obj: &mut Secret, old: Option<&Secret>) {
    obj.metadata
        .labels
        .get_or_insert_default()
        .insert(keys::OWNER_LABEL.to_owned(), own_owner_label(c));
    let annotations = obj.metadata.annotations.get_or_insert_default();
    annotations.remove(keys::DIGEST_ANNOTATION);
    if expected_adopted(c, name, old) {
        annotations.insert(keys::ADOPTED_ANNOTATION.to_owned(), "true".to_owned());
    } else {
        annotations.remove(keys::ADOPTED_ANNOTATION);
    }
}

/// The owner label value secret-relay stamps on a hub copy of cluster `c`.
fn own_owner_label(c: &str) -> String {
    Owner::Cluster(c.to_owned()).label_value()
}

/// A denial of a stamp only secret-relay sets, whichever check found it.
fn forged(reason: String) -> Decision {
    Decision::deny(Rule::OwnerLabelForged, reason)
}

/// Whether a hub copy written by cluster `c` should carry the adopted
/// annotation: it adopts a control-plane secret now, or already had.
pub(super) fn expected_adopted(c: &str, name: &str, old: Option<&Secret>) -> bool {
    let Some(old) = old else {
        return false;
    };
    match owner(old) {
        Owner::ControlPlane => is_adoptable(name),
        Owner::Cluster(o) => o == c && is_adopted(old),
        Owner::Invalid(_) => false,
    }
}
