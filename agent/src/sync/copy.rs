//! Building and comparing copies: the hub copy a local Secret is pushed as, the down
//! copy a hub copy is written as, the [`Fingerprint`] that tells whether two Secrets
//! are the same for sync, and whether a copy must be replaced rather than updated.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use secret_relay_policy::{
    Direction, Owner, StripMetadata, carried_annotations, carried_labels, digest, keys, owner,
    source_marker,
};

/// Annotations that describe a write, not the Secret: never copied between clusters.
/// (An old version's [`keys::DIGEST_ANNOTATION`] is not one of them: on a down copy
/// it is drift, and the copy is written again without it.)
const WRITE_ANNOTATIONS: &[&str] = &[
    keys::ADOPTED_ANNOTATION,
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// What makes two Secrets the same for sync: labels, annotations (without the
/// write-only ones), type, `immutable` and the digest of the data, which the agent
/// computes from the values it holds on both sides. It stays in memory: nothing
/// the agent writes, logs or reports carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    type_: String,
    immutable: bool,
    digest: String,
}

impl Fingerprint {
    /// The fingerprint of `secret`, ignoring `skip_labels`.
    pub fn of(secret: &Secret, skip_labels: &[&str]) -> Fingerprint {
        Fingerprint::without(secret, skip_labels, &[])
    }

    /// The fingerprint of `secret`, ignoring `skip_labels` and `skip_annotations`.
    pub(super) fn without(
        secret: &Secret,
        skip_labels: &[&str],
        skip_annotations: &[&str],
    ) -> Fingerprint {
        Fingerprint {
            labels: secret
                .metadata
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| !skip_labels.contains(&k.as_str()))
                .collect(),
            annotations: secret
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| {
                    !WRITE_ANNOTATIONS.contains(&k.as_str())
                        && !skip_annotations.contains(&k.as_str())
                })
                .collect(),
            type_: secret.type_.clone().unwrap_or_else(|| "Opaque".to_owned()),
            immutable: secret.immutable == Some(true),
            digest: digest(secret),
        }
    }
}

/// Whether `current` cannot become `want` by an update: its type differs (the type
/// is immutable), or it is immutable and its data or the flag would change. Such a
/// copy is replaced: deleted, then created.
pub fn needs_replacing(current: &Secret, want: &Secret) -> bool {
    let ty = |s: &Secret| s.type_.clone().unwrap_or_else(|| "Opaque".to_owned());
    let immutable = |s: &Secret| s.immutable == Some(true);
    ty(current) != ty(want)
        || (immutable(current) && (!immutable(want) || digest(current) != digest(want)))
}

/// The hub copy the agent asks the relay to write for local Secret `local`: the
/// labels and annotations that go up ([`secret_relay_policy::carry`]: the opt-in
/// label and the target annotations included, tool ownership and secret-relay's
/// stamps not), its type, `immutable` and data. The owner label and the adopted
/// annotation are the webhook's to stamp.
pub fn hub_copy_body(
    local: &Secret,
    control_plane_namespace: &str,
    strip: &StripMetadata,
) -> Secret {
    let mut body = Secret::default();
    body.metadata.name = local.metadata.name.clone();
    body.metadata.namespace = Some(control_plane_namespace.to_owned());
    body.metadata.labels = Some(carried_labels(
        local.metadata.labels.as_ref(),
        Direction::Up,
        strip,
    ));
    body.metadata.annotations = Some(carried_annotations(
        local.metadata.annotations.as_ref(),
        Direction::Up,
        strip,
    ));
    body.type_ = local.type_.clone();
    body.immutable = local.immutable.filter(|i| *i);
    body.data = local.data.clone();
    body
}

/// The down copy of hub copy `hub` in namespace `namespace`: the labels and
/// annotations that go down ([`secret_relay_policy::carry`]: no opt-in label, no
/// target annotations, no tool ownership), the owner label naming its origin
/// (`control-plane` or `cluster.<name>`), the version of the hub copy it is
/// written from ([`keys::SOURCE_ANNOTATION`]: `<uid>/<resourceVersion>`, nothing
/// of the values), its type, `immutable` and data.
pub fn down_copy(hub: &Secret, namespace: &str, strip: &StripMetadata) -> Secret {
    let mut labels = carried_labels(hub.metadata.labels.as_ref(), Direction::Down, strip);
    let origin = match owner(hub) {
        Owner::Cluster(c) => format!("{}{c}", keys::OWNER_CLUSTER_PREFIX),
        _ => "control-plane".to_owned(),
    };
    labels.insert(keys::OWNER_LABEL.to_owned(), origin);
    let mut annotations =
        carried_annotations(hub.metadata.annotations.as_ref(), Direction::Down, strip);
    if let Some(source) = source_marker(hub) {
        annotations.insert(keys::SOURCE_ANNOTATION.to_owned(), source);
    }
    let mut copy = Secret::default();
    copy.metadata.name = hub.metadata.name.clone();
    copy.metadata.namespace = Some(namespace.to_owned());
    copy.metadata.labels = Some(labels);
    copy.metadata.annotations = Some(annotations);
    copy.type_ = hub.type_.clone();
    copy.immutable = hub.immutable.filter(|i| *i);
    copy.data = hub.data.clone();
    copy
}

#[cfg(test)]
mod tests;
