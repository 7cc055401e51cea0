//! The mutating webhook's JSON patch ([`mutate`]), built from pointer
//! segments ([`pointer`]) so that keys with `/` or `~` escape correctly.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::decision::Owner;
use crate::document::Policy;
use crate::keys;
use crate::meta;

use super::identity::{Identity, RelayIdentity, UserInfo, identify};
use super::request::{
    AdmissionInput, Mode, Operation, in_scope, is_kubernetes_cleanup, is_kubernetes_system_user,
};
use super::stamp::expected_adopted;

/// One RFC 6902 JSON-patch operation; paths come from [`pointer()`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOp {
    /// `add`.
    Add {
        /// JSON pointer.
        path: String,
        /// Value to add.
        value: Value,
    },
    /// `replace`.
    Replace {
        /// JSON pointer.
        path: String,
        /// New value.
        value: Value,
    },
    /// `remove`.
    Remove {
        /// JSON pointer.
        path: String,
    },
}

/// The object's metadata key we stamp, and the value it should end with
/// (`None` for absent).
struct Stamp {
    labels: Vec<(&'static str, Option<String>)>,
    annotations: Vec<(&'static str, Option<String>)>,
}

/// Builds a JSON pointer from unescaped segments (`~` becomes `~0`, `/` `~1`).
pub fn pointer(segments: &[&str]) -> String {
    let mut out = String::new();
    for s in segments {
        out.push('/');
        for c in s.chars() {
            match c {
                '~' => out.push_str("~0"),
                '/' => out.push_str("~1"),
                c => out.push(c),
            }
        }
    }
    out
}

/// The mutating webhook's JSON patch: for a cluster identity on the control
/// plane the owner label and the adopted annotation; on every CREATE/UPDATE in
/// the control-plane namespace (and of a down copy on a managed cluster) the
/// removal of the digest annotation older versions stamped
/// ([`keys::DIGEST_ANNOTATION`]): nothing stored carries a function of the
/// values. Empty on DELETE, outside the guarded namespace and for Kubernetes'
/// cleanup; applying the patch and mutating again gives an empty patch.
///
/// Of the objects it reads only the name, labels and annotations, unless
/// [`mutate_reads_whole_objects`] holds for the user: so a caller may hand it
/// objects with nothing else decoded.
pub fn mutate(
    policy: &Policy,
    relay: &RelayIdentity,
    mode: &Mode,
    input: &AdmissionInput,
) -> Vec<PatchOp> {
    if !matches!(input.operation, Operation::Create | Operation::Update)
        || !in_scope(policy, mode, input.namespace)
        || is_kubernetes_cleanup(input)
    {
        return Vec::new();
    }
    let Some(obj) = input.object else {
        return Vec::new();
    };
    let mut stamp = Stamp {
        labels: Vec::new(),
        annotations: vec![(keys::DIGEST_ANNOTATION, None)],
    };
    match mode {
        Mode::ControlPlane => {
            if let Identity::Cluster(c) = identify(policy, relay, input.user) {
                stamp.labels.push((
                    keys::OWNER_LABEL,
                    Some(Owner::Cluster(c.clone()).label_value()),
                ));
                let adopted = expected_adopted(&c, input.secret_name(), input.old_object);
                stamp
                    .annotations
                    .push((keys::ADOPTED_ANNOTATION, adopted.then(|| "true".to_owned())));
            }
        }
        Mode::ManagedCluster { .. } => {
            if meta::label(&obj.metadata, keys::OWNER_LABEL).is_none() {
                return Vec::new();
            }
        }
    }
    let mut ops = Vec::new();
    patch_map(
        &mut ops,
        "labels",
        obj.metadata.labels.as_ref(),
        &stamp.labels,
    );
    patch_map(
        &mut ops,
        "annotations",
        obj.metadata.annotations.as_ref(),
        &stamp.annotations,
    );
    ops
}

/// Whether [`mutate`] reads more of the objects than their name, labels and
/// annotations for a request by `user`: only for Kubernetes' own cleanup, which is
/// told by comparing the whole old and new objects ([`is_kubernetes_cleanup`]).
pub fn mutate_reads_whole_objects(user: &UserInfo) -> bool {
    is_kubernetes_system_user(user)
}

fn patch_map(
    ops: &mut Vec<PatchOp>,
    field: &str,
    current: Option<&BTreeMap<String, String>>,
    want: &[(&str, Option<String>)],
) {
    let Some(current) = current else {
        let added: serde_json::Map<String, Value> = want
            .iter()
            .filter_map(|(k, v)| {
                v.as_ref()
                    .map(|v| ((*k).to_owned(), Value::String(v.clone())))
            })
            .collect();
        if !added.is_empty() {
            ops.push(PatchOp::Add {
                path: pointer(&["metadata", field]),
                value: Value::Object(added),
            });
        }
        return;
    };
    for (k, v) in want {
        // The path is built only for a key that changes: most keys already hold
        // what they should.
        let path = || pointer(&["metadata", field, k]);
        match (current.get(*k), v) {
            (Some(have), Some(v)) if have == v => {}
            (Some(_), Some(v)) => ops.push(PatchOp::Replace {
                path: path(),
                value: Value::String(v.clone()),
            }),
            (None, Some(v)) => ops.push(PatchOp::Add {
                path: path(),
                value: Value::String(v.clone()),
            }),
            (Some(_), None) => ops.push(PatchOp::Remove { path: path() }),
            (None, None) => {}
        }
    }
}
