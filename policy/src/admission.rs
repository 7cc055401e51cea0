//! The admission webhook's decisions, pure: who is writing ([`identify`]),
//! whether the write is allowed ([`validate`]) and what the mutating webhook
//! stamps on it ([`mutate`]).
//!
//! The mutating webhook runs before the validating one, so [`validate`] sees
//! the owner label and adopted annotation that [`mutate`] stamped.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;
use serde_json::Value;

use crate::decision::{
    ADOPTABLE_NAMES, Decision, Owner, Rule, allowed_selector, blocked_decision, digest,
    is_adoptable, is_adopted, label, owner, unknown_cluster,
};
use crate::document::Policy;
use crate::keys;

/// The authenticated user of an admission request (`request.userInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// `userInfo.username`.
    pub username: String,
    /// `userInfo.groups`.
    pub groups: Vec<String>,
}

/// The relay's own service account user name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayIdentity {
    /// e.g. `system:serviceaccount:secret-relay-system:secret-relay`.
    pub service_account: String,
}

/// Who is writing, as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The relay impersonating a cluster: user `secret-relay:cluster:<name>`
    /// in group `secret-relay:clusters`.
    Cluster(String),
    /// The relay's own service account.
    Relay,
    /// A break-glass user (or member of a break-glass group); exempt, logged.
    BreakGlass(String),
    /// Kubernetes' namespace controller or garbage collector; never blocked.
    KubernetesSystem,
    /// Anybody else (people, Argo CD, kubectl, `system:masters` included).
    Other(String),
}

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

/// The validating webhook's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionVerdict {
    /// Allowed or denied, with rule and reason.
    pub decision: Decision,
    /// Warnings for the client (`response.warnings`).
    pub warnings: Vec<String>,
    /// Audit annotations (`response.auditAnnotations`): `identity`, `rule`, `owner`.
    pub audit: BTreeMap<String, String>,
    /// A break-glass identity bypassed the rules; the webhook logs it.
    pub break_glass_used: bool,
}

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

impl Default for RelayIdentity {
    fn default() -> Self {
        RelayIdentity {
            service_account: keys::DEFAULT_RELAY_SERVICE_ACCOUNT.to_owned(),
        }
    }
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

impl Identity {
    /// A short label for logs and audit: `cluster:<name>`, `relay`,
    /// `break-glass:<user>`, `kubernetes-system`, `other:<user>`.
    pub fn audit_value(&self) -> String {
        match self {
            Identity::Cluster(c) => format!("cluster:{c}"),
            Identity::Relay => "relay".to_owned(),
            Identity::BreakGlass(u) => format!("break-glass:{u}"),
            Identity::KubernetesSystem => "kubernetes-system".to_owned(),
            Identity::Other(u) => format!("other:{u}"),
        }
    }
}

impl AdmissionInput<'_> {
    fn secret_name(&self) -> &str {
        if !self.name.is_empty() {
            return self.name;
        }
        self.object
            .or(self.old_object)
            .and_then(|s| s.metadata.name.as_deref())
            .unwrap_or("")
    }
}

/// Builds a JSON pointer from unescaped segments (`~` becomes `~0`, `/` `~1`).
pub fn pointer(segments: &[&str]) -> String {
    let mut out = String::new();
    for s in segments {
        out.push('/');
        out.push_str(&s.replace('~', "~0").replace('/', "~1"));
    }
    out
}

/// Who wrote: a cluster identity needs both the impersonated user name and
/// the clusters group (only the relay may impersonate); cluster identities
/// are checked first so no break-glass entry can exempt a cluster.
pub fn identify(policy: &Policy, relay: &RelayIdentity, user: &UserInfo) -> Identity {
    if let Some(name) = user.username.strip_prefix(keys::CLUSTER_USER_PREFIX)
        && !name.is_empty()
        && user.groups.iter().any(|g| g == keys::CLUSTERS_GROUP)
    {
        return Identity::Cluster(name.to_owned());
    }
    if user.username == relay.service_account {
        return Identity::Relay;
    }
    if keys::KUBERNETES_SYSTEM_USERS.contains(&user.username.as_str()) {
        return Identity::KubernetesSystem;
    }
    let bg = policy.break_glass();
    if bg.users.contains(&user.username) || user.groups.iter().any(|g| bg.groups.contains(g)) {
        return Identity::BreakGlass(user.username.clone());
    }
    Identity::Other(user.username.clone())
}

/// The validating webhook's decision for a write to a Secret.
pub fn validate(
    policy: &Policy,
    relay: &RelayIdentity,
    mode: &Mode,
    input: &AdmissionInput,
) -> AdmissionVerdict {
    let identity = match mode {
        Mode::ManagedCluster { agent } if input.user.username == *agent => None,
        _ => Some(identify(policy, relay, input.user)),
    };
    let decision = match (&identity, mode) {
        (_, _) if input.operation == Operation::Connect => {
            Decision::allow(Rule::NotApplicable, "CONNECT is not a write to a Secret")
        }
        (Some(Identity::BreakGlass(u)), _) => Decision::allow(
            Rule::BreakGlass,
            format!("break-glass user {u} bypasses secret-relay rules; this use is logged"),
        ),
        (Some(Identity::KubernetesSystem), _) => Decision::allow(
            Rule::SystemExempt,
            "Kubernetes namespace deletion and garbage collection are never blocked",
        ),
        (_, Mode::ControlPlane) => {
            let identity = identity.clone().unwrap_or(Identity::Relay);
            validate_control_plane(policy, &identity, input)
        }
        (_, Mode::ManagedCluster { .. }) => validate_managed(policy, identity.is_none(), input),
    };
    let warnings = warnings(policy, mode, input, &decision);
    let mut audit = BTreeMap::new();
    let identity_value = identity
        .as_ref()
        .map_or_else(|| "agent".to_owned(), Identity::audit_value);
    audit.insert("identity".to_owned(), identity_value);
    audit.insert("rule".to_owned(), decision.rule.as_str().to_owned());
    if let Some(s) = input.object.or(input.old_object) {
        audit.insert("owner".to_owned(), owner(s).label_value());
    }
    let break_glass_used = decision.rule == Rule::BreakGlass;
    AdmissionVerdict {
        decision,
        warnings,
        audit,
        break_glass_used,
    }
}

fn validate_control_plane(
    policy: &Policy,
    identity: &Identity,
    input: &AdmissionInput,
) -> Decision {
    let cp = policy.control_plane_namespace();
    let name = input.secret_name();
    let ns = input.namespace;
    if ns != cp {
        return match identity {
            Identity::Cluster(c) => Decision::deny(
                Rule::WrongNamespace,
                format!("cluster {c} may only write hub copies in namespace {cp}, not {ns}/{name}"),
            ),
            _ => Decision::allow(
                Rule::OutOfScope,
                format!("{ns}/{name} is outside the control-plane namespace {cp}"),
            ),
        };
    }
    let old_owner = input.old_object.map(owner);
    match identity {
        Identity::Cluster(c) => validate_cluster_write(policy, c, input),
        Identity::Relay => validate_relay(policy, input, old_owner),
        Identity::Other(u) => validate_other(policy, u, input, old_owner),
        // Exempt identities are decided before this point.
        Identity::BreakGlass(_) | Identity::KubernetesSystem => {
            Decision::allow(Rule::SystemExempt, "exempt identity")
        }
    }
}

fn validate_cluster_write(policy: &Policy, c: &str, input: &AdmissionInput) -> Decision {
    let cp = policy.control_plane_namespace();
    let name = input.secret_name();
    if policy.cluster(c).is_none() {
        return unknown_cluster(c);
    }
    let what = format!("{cp}/{name}");
    for s in [input.object, input.old_object].into_iter().flatten() {
        if let Some(d) = blocked_decision(policy, s, &format!("secret {what}")) {
            return d;
        }
    }
    let old_owner = input.old_object.map(owner);
    if input.operation == Operation::Delete {
        let Some(old) = input.old_object else {
            return Decision::deny(
                Rule::MissingObject,
                format!("cannot check who owns {what}: the request has no oldObject"),
            );
        };
        return match owner(old) {
            Owner::Cluster(o) if o == c => {
                if is_adopted(old) {
                    Decision::deny(
                        Rule::ReleaseReturn,
                        format!(
                            "{what} was adopted by cluster {c}: it returns to the control plane on release and is not deleted"
                        ),
                    )
                } else {
                    Decision::allow(
                        Rule::ReleaseDelete,
                        format!("cluster {c} deletes its own hub copy {what}"),
                    )
                }
            }
            o => Decision::deny(
                Rule::ReleaseNotOwner,
                format!("cluster {c} may delete only its own hub copies; {what} is owned by {o}"),
            ),
        };
    }
    let Some(new) = input.object else {
        return Decision::deny(
            Rule::MissingObject,
            format!("the request to write {what} has no object"),
        );
    };
    let want_owner = Owner::Cluster(c.to_owned()).label_value();
    if label(new, keys::OWNER_LABEL) != Some(want_owner.as_str()) {
        return Decision::deny(
            Rule::OwnerLabelForged,
            format!(
                "a hub copy written by cluster {c} must carry {}: {want_owner}, stamped by the mutating webhook; do not set it by hand",
                keys::OWNER_LABEL
            ),
        );
    }
    if is_adopted(new) != expected_adopted(c, name, input.old_object) {
        return Decision::deny(
            Rule::OwnerLabelForged,
            format!(
                "{} is set only by secret-relay when cluster {c} adopts one of {}",
                keys::ADOPTED_ANNOTATION,
                ADOPTABLE_NAMES.join(", ")
            ),
        );
    }
    match old_owner {
        None => Decision::allow(
            Rule::UpSyncNew,
            format!("cluster {c} creates the hub copy {what}"),
        ),
        Some(Owner::Cluster(o)) if o == c => Decision::allow(
            Rule::UpSyncOwner,
            format!("cluster {c} updates its own hub copy {what}"),
        ),
        Some(Owner::Cluster(o)) => Decision::deny(
            Rule::OwnedByOtherCluster,
            format!(
                "{what} is owned by cluster {o}: rename the Secret on cluster {c}, or release it on cluster {o} first (remove its {} label there)",
                keys::SECRET_SYNC_LABEL
            ),
        ),
        Some(Owner::ControlPlane) if is_adoptable(name) => Decision::allow(
            Rule::Adopt,
            format!("cluster {c} adopts the control-plane secret {what}"),
        ),
        Some(Owner::ControlPlane) => Decision::deny(
            Rule::OwnedByControlPlane,
            format!(
                "{what} is a control-plane secret and only {} can be adopted: rename the Secret on cluster {c}, or delete {what} on the control plane",
                ADOPTABLE_NAMES.join(", ")
            ),
        ),
    }
}

/// Whether a hub copy written by cluster `c` should carry the adopted
/// annotation: it adopts a control-plane secret now, or already had.
fn expected_adopted(c: &str, name: &str, old: Option<&Secret>) -> bool {
    let Some(old) = old else {
        return false;
    };
    match owner(old) {
        Owner::ControlPlane => is_adoptable(name),
        Owner::Cluster(o) => o == c && is_adopted(old) && is_adoptable(name),
    }
}

fn validate_relay(policy: &Policy, input: &AdmissionInput, old_owner: Option<Owner>) -> Decision {
    let cp = policy.control_plane_namespace();
    let what = format!("{cp}/{}", input.secret_name());
    let Some(Owner::Cluster(o)) = old_owner else {
        // Not a cluster-owned copy: the relay's own account is bound like anybody else.
        return validate_other(policy, "the relay", input, old_owner);
    };
    let old = input.old_object;
    let adopted = old.is_some_and(|s| is_adopted(s) && is_adoptable(input.secret_name()));
    match (input.operation, input.object) {
        (Operation::Delete, _) if adopted => Decision::deny(
            Rule::ReleaseReturn,
            format!(
                "{what} was adopted by cluster {o}: release returns it to the control plane, it is not deleted"
            ),
        ),
        (Operation::Delete, _) => Decision::allow(
            Rule::ReleaseDelete,
            format!("the relay releases {what} for cluster {o} by deleting it"),
        ),
        (_, Some(new))
            if adopted
                && label(new, keys::OWNER_LABEL).is_none()
                && !is_adopted(new)
                && old.is_some_and(|old| digest(old) == digest(new)) =>
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

fn validate_other(
    policy: &Policy,
    who: &str,
    input: &AdmissionInput,
    old_owner: Option<Owner>,
) -> Decision {
    let cp = policy.control_plane_namespace();
    let what = format!("{cp}/{}", input.secret_name());
    if let Some(Owner::Cluster(o)) = &old_owner {
        return Decision::deny(
            Rule::OwnershipLock,
            format!(
                "secret {what} is owned by cluster {o}: change it on cluster {o}, or remove the {} label there to release it",
                keys::SECRET_SYNC_LABEL
            ),
        );
    }
    // The owner label must be absent on CREATE and unchanged on UPDATE.
    let old_label = input.old_object.and_then(|s| label(s, keys::OWNER_LABEL));
    if input.operation != Operation::Delete
        && let Some(new) = input.object
        && let Some(v) = label(new, keys::OWNER_LABEL)
        && (input.operation == Operation::Create || old_label != Some(v))
    {
        return Decision::deny(
            Rule::OwnerLabelForged,
            format!(
                "{who} may not set {}: {v} on {what}; only secret-relay stamps ownership, remove the label",
                keys::OWNER_LABEL
            ),
        );
    }
    Decision::allow(
        Rule::ControlPlaneWrite,
        format!("{what} is owned by the control plane; {who} may change it"),
    )
}

fn validate_managed(policy: &Policy, is_agent: bool, input: &AdmissionInput) -> Decision {
    let agent_ns = policy.agent_namespace();
    let name = input.secret_name();
    let what = format!("{}/{name}", input.namespace);
    if input.namespace != agent_ns {
        return Decision::allow(
            Rule::OutOfScope,
            format!("{what} is outside the agent namespace {agent_ns}"),
        );
    }
    let old_origin = input.old_object.and_then(|s| label(s, keys::OWNER_LABEL));
    let new_origin = input.object.and_then(|s| label(s, keys::OWNER_LABEL));
    let writes = input.operation != Operation::Delete;
    if old_origin.is_none() && !(writes && new_origin.is_some()) {
        return Decision::allow(Rule::OutOfScope, format!("{what} is not a down copy"));
    }
    if !is_agent {
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
    if input.operation == Operation::Update && old_origin.is_none() {
        return Decision::deny(
            Rule::DownSyncConflict,
            format!(
                "{what} is a local Secret the agent did not create: the agent never overwrites it; rename or delete the local Secret"
            ),
        );
    }
    if writes && let Some(new) = input.object {
        if let Some(d) = blocked_decision(policy, new, &format!("secret {what}")) {
            return d;
        }
        if label(new, keys::SECRET_SYNC_LABEL).is_some() {
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

fn warnings(
    policy: &Policy,
    mode: &Mode,
    input: &AdmissionInput,
    decision: &Decision,
) -> Vec<String> {
    let mut out = Vec::new();
    if decision.rule == Rule::BreakGlass {
        out.push(format!(
            "break-glass: secret-relay rules were bypassed for {}/{}; this use is logged",
            input.namespace,
            input.secret_name()
        ));
    }
    if *mode == Mode::ControlPlane
        && decision.allowed
        && input.namespace == policy.control_plane_namespace()
        && input.operation != Operation::Delete
        && let Some(new) = input.object
        && let Err(e) = allowed_selector(new)
    {
        out.push(format!(
            "{} does not parse ({e}): this secret goes to no cluster by selector",
            keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
        ));
    }
    out
}

/// The mutating webhook's JSON patch: the digest annotation on every
/// CREATE/UPDATE in the control-plane namespace (and on down copies on a
/// managed cluster); for a cluster identity also the owner label and the
/// adopted annotation. Empty on DELETE and outside the guarded namespace;
/// applying the patch and mutating again gives an empty patch.
pub fn mutate(
    policy: &Policy,
    relay: &RelayIdentity,
    mode: &Mode,
    input: &AdmissionInput,
) -> Vec<PatchOp> {
    if !matches!(input.operation, Operation::Create | Operation::Update) {
        return Vec::new();
    }
    let Some(obj) = input.object else {
        return Vec::new();
    };
    let mut stamp = Stamp {
        labels: Vec::new(),
        annotations: vec![(keys::DIGEST_ANNOTATION, Some(digest(obj)))],
    };
    match mode {
        Mode::ControlPlane => {
            if input.namespace != policy.control_plane_namespace() {
                return Vec::new();
            }
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
            if input.namespace != policy.agent_namespace()
                || label(obj, keys::OWNER_LABEL).is_none()
            {
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
        let path = pointer(&["metadata", field, k]);
        match (current.get(*k), v) {
            (Some(have), Some(v)) if have == v => {}
            (Some(_), Some(v)) => ops.push(PatchOp::Replace {
                path,
                value: Value::String(v.clone()),
            }),
            (None, Some(v)) => ops.push(PatchOp::Add {
                path,
                value: Value::String(v.clone()),
            }),
            (Some(_), None) => ops.push(PatchOp::Remove { path }),
            (None, None) => {}
        }
    }
}

/// Whether the Secret carries the managed-cluster down-copy marker.
pub fn is_down_copy(secret: &Secret) -> bool {
    label(secret, keys::OWNER_LABEL).is_some()
}

#[cfg(test)]
mod tests;
