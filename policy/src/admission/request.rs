//! One admission request about a Secret: its operation, where the webhook
//! runs, whether the namespace is the one it guards ([`in_scope`]), and
//! whether it is Kubernetes' own cleanup ([`is_kubernetes_cleanup`]).

use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use crate::document::Policy;
use crate::keys;
use crate::meta;

use super::identity::UserInfo;

/// The admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// CREATE.
    Create,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// CONNECT.
    Connect,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 4] = [
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Connect,
    ];

    /// The name kube-apiserver gives it in an AdmissionReview.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }

    /// The operation named `name` in an AdmissionReview, if it is one.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

/// Where the webhook runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// On the control plane: guards hub copies and managed secrets.
    ControlPlane,
    /// On a managed cluster: guards down copies in the agent namespace.
    ManagedCluster {
        /// The agent's service account user name.
        agent: String,
    },
}

/// One admission request about a Secret. `Debug` never shows Secret data.
#[derive(Clone, Copy)]
pub struct AdmissionInput<'a> {
    /// The operation.
    pub operation: Operation,
    /// `request.namespace`.
    pub namespace: &'a str,
    /// `request.name` (for CREATE it may be empty; the object's name is used then).
    pub name: &'a str,
    /// `request.object` (absent on DELETE).
    pub object: Option<&'a Secret>,
    /// `request.oldObject` (absent on CREATE).
    pub old_object: Option<&'a Secret>,
    /// `request.userInfo`.
    pub user: &'a UserInfo,
    /// `request.dryRun`.
    pub dry_run: bool,
}

impl fmt::Debug for AdmissionInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only names: Secret data never reaches Debug output.
        f.debug_struct("AdmissionInput")
            .field("operation", &self.operation)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("object", &self.object.map(|_| "<secret>"))
            .field("old_object", &self.old_object.map(|_| "<secret>"))
            .field("user", &self.user)
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

impl AdmissionInput<'_> {
    pub(super) fn secret_name(&self) -> &str {
        if !self.name.is_empty() {
            return self.name;
        }
        self.object
            .or(self.old_object)
            .map_or("", |s| meta::name(&s.metadata))
    }
}

/// Whether `namespace` is the one the webhook guards in `mode`: the
/// control-plane namespace, or the agent namespace on a managed cluster.
/// A request elsewhere is decided without reading its objects:
/// `out-of-scope`, or `wrong-namespace` for a cluster identity on the
/// control plane.
pub fn in_scope(policy: &Policy, mode: &Mode, namespace: &str) -> bool {
    match mode {
        Mode::ControlPlane => namespace == policy.control_plane_namespace(),
        Mode::ManagedCluster { .. } => namespace == policy.agent_namespace(),
    }
}

/// Whether the request is Kubernetes' own cleanup, which is never blocked: a
/// [`keys::KUBERNETES_SYSTEM_USERS`] identity that DELETEs (with or without
/// `oldObject`: a delete carries nothing to forge), or UPDATEs only
/// `metadata.ownerReferences` and/or `metadata.finalizers` (old and new
/// compared with those, `managedFields`, `resourceVersion` and `generation`
/// ignored). Needs no policy, so the webhook answers it before one loads.
pub fn is_kubernetes_cleanup(input: &AdmissionInput) -> bool {
    if !is_kubernetes_system_user(input.user) {
        return false;
    }
    match (input.operation, input.old_object, input.object) {
        (Operation::Delete, _, _) => true,
        (Operation::Update, Some(old), Some(new)) => only_cleanup_metadata_changed(old, new),
        _ => false,
    }
}

/// Whether `user` is one of Kubernetes' own controllers whose cleanup
/// [`is_kubernetes_cleanup`] may pass.
pub(super) fn is_kubernetes_system_user(user: &UserInfo) -> bool {
    keys::KUBERNETES_SYSTEM_USERS.contains(&user.username.as_str())
}

/// Whether old and new differ in nothing but what Kubernetes' cleanup
/// changes (ownerReferences, finalizers) and what the API server maintains
/// (managedFields, resourceVersion, generation). Fails closed: a Secret that
/// does not serialize is not a cleanup.
fn only_cleanup_metadata_changed(old: &Secret, new: &Secret) -> bool {
    let strip = |s: &Secret| {
        let mut v = serde_json::to_value(s).ok()?;
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "ownerReferences",
                "finalizers",
                "managedFields",
                "resourceVersion",
                "generation",
            ] {
                meta.remove(field);
            }
        }
        Some(v)
    };
    match (strip(old), strip(new)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}
