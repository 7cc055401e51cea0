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
    ADOPTABLE_NAMES, Decision, Owner, ReleaseAction, Rule, blocked_decision, digest,
    down_sync_problems, hub_copy_elsewhere, invalid_owner, is_adoptable, is_adopted, owner,
    reclaim_owned, release_owned, revocation, unknown_cluster, up_sync_stored,
};
use crate::document::{HANDBACK_SECRET, Policy};
use crate::keys;
use crate::meta;

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
    /// Kubernetes' namespace controller, garbage collector or
    /// kube-controller-manager ([`keys::KUBERNETES_SYSTEM_USERS`]): its
    /// cleanup is never blocked ([`is_kubernetes_cleanup`]), anything else
    /// it writes is judged like anybody's.
    KubernetesSystem(String),
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

/// A write with the objects its operation needs (see [`Change::of`]).
#[derive(Clone, Copy)]
enum Change<'a> {
    Create(&'a Secret),
    Update { old: &'a Secret, new: &'a Secret },
    Delete(&'a Secret),
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
    /// `break-glass:<user>`, `kubernetes-system:<user>`, `other:<user>`.
    pub fn audit_value(&self) -> String {
        match self {
            Identity::Cluster(c) => format!("cluster:{c}"),
            Identity::Relay => "relay".to_owned(),
            Identity::BreakGlass(u) => format!("break-glass:{u}"),
            Identity::KubernetesSystem(u) => format!("kubernetes-system:{u}"),
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
/// are checked first so no break-glass entry can exempt a cluster. A
/// break-glass entry wins over a Kubernetes system identity, so an operator
/// who lists one gets what they asked for.
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
    let bg = policy.break_glass();
    if bg.users.contains(&user.username) || user.groups.iter().any(|g| bg.groups.contains(g)) {
        return Identity::BreakGlass(user.username.clone());
    }
    if keys::KUBERNETES_SYSTEM_USERS.contains(&user.username.as_str()) {
        return Identity::KubernetesSystem(user.username.clone());
    }
    Identity::Other(user.username.clone())
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
    if !keys::KUBERNETES_SYSTEM_USERS.contains(&input.user.username.as_str()) {
        return false;
    }
    match (input.operation, input.old_object, input.object) {
        (Operation::Delete, _, _) => true,
        (Operation::Update, Some(old), Some(new)) => only_cleanup_metadata_changed(old, new),
        _ => false,
    }
}

/// The validating answer before a valid policy has loaded: Kubernetes' own
/// cleanup is allowed (`system-exempt`); for anything else `None`, and the
/// webhook refuses the request as not ready.
pub fn validate_without_policy(input: &AdmissionInput) -> Option<AdmissionVerdict> {
    if !is_kubernetes_cleanup(input) {
        return None;
    }
    let identity = Identity::KubernetesSystem(input.user.username.clone()).audit_value();
    Some(verdict(input, identity, cleanup_exempt(), Vec::new()))
}

/// The validating webhook's decision for a write to a Secret.
pub fn validate(
    policy: &Policy,
    relay: &RelayIdentity,
    mode: &Mode,
    input: &AdmissionInput,
) -> AdmissionVerdict {
    let is_agent = matches!(mode, Mode::ManagedCluster { agent } if input.user.username == *agent);
    let identity = identify(policy, relay, input.user);
    let decision = decide(policy, mode, is_agent, &identity, input);
    let warnings = warnings(policy, mode, input, &decision);
    let identity_value = if is_agent {
        "agent".to_owned()
    } else {
        identity.audit_value()
    };
    verdict(input, identity_value, decision, warnings)
}

fn verdict(
    input: &AdmissionInput,
    identity: String,
    decision: Decision,
    warnings: Vec<String>,
) -> AdmissionVerdict {
    let mut audit = BTreeMap::new();
    audit.insert("identity".to_owned(), identity);
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

fn not_applicable() -> Decision {
    Decision::allow(Rule::NotApplicable, "CONNECT is not a write to a Secret")
}

fn cleanup_exempt() -> Decision {
    Decision::allow(
        Rule::SystemExempt,
        "Kubernetes namespace deletion and garbage collection (a delete, or an update of only ownerReferences and finalizers) are never blocked",
    )
}

/// The order matters: out of scope before anything that reads the objects;
/// Kubernetes' cleanup before the missing-object check (a delete without
/// oldObject still passes); a missing object before break-glass (it is
/// denied whoever sends it).
fn decide(
    policy: &Policy,
    mode: &Mode,
    is_agent: bool,
    identity: &Identity,
    input: &AdmissionInput,
) -> Decision {
    let ns = input.namespace;
    let name = input.secret_name();
    if input.operation == Operation::Connect {
        return not_applicable();
    }
    if !in_scope(policy, mode, ns) {
        return match (mode, identity) {
            (Mode::ControlPlane, Identity::Cluster(c)) => hub_copy_elsewhere(policy, c, ns, name),
            (Mode::ControlPlane, _) => Decision::allow(
                Rule::OutOfScope,
                format!(
                    "{ns}/{name} is outside the control-plane namespace {}",
                    policy.control_plane_namespace()
                ),
            ),
            (Mode::ManagedCluster { .. }, _) => Decision::allow(
                Rule::OutOfScope,
                format!(
                    "{ns}/{name} is outside the agent namespace {}",
                    policy.agent_namespace()
                ),
            ),
        };
    }
    if is_kubernetes_cleanup(input) {
        return cleanup_exempt();
    }
    let change = match Change::of(input) {
        Ok(change) => change,
        Err(d) => return d,
    };
    if !is_agent && let Identity::BreakGlass(u) = identity {
        return Decision::allow(
            Rule::BreakGlass,
            format!("break-glass user {u} bypasses secret-relay rules; this use is logged"),
        );
    }
    match mode {
        Mode::ControlPlane => match identity {
            Identity::Cluster(c) => validate_cluster_write(policy, c, name, change),
            Identity::Relay => validate_relay(policy, name, change),
            // A system identity outside cleanup, and break-glass (decided
            // above), are judged like anybody else.
            Identity::Other(u) | Identity::KubernetesSystem(u) | Identity::BreakGlass(u) => {
                validate_other(policy, u, name, change)
            }
        },
        Mode::ManagedCluster { .. } => validate_managed(policy, is_agent, ns, name, change),
    }
}

impl<'a> Change<'a> {
    /// The write, or `missing-object` when the request lacks the object or
    /// oldObject its operation needs (kube-apiserver always sends them; a
    /// request without them cannot be checked, so it never passes).
    fn of(input: &AdmissionInput<'a>) -> Result<Change<'a>, Decision> {
        let what = format!("{}/{}", input.namespace, input.secret_name());
        let missing = |op: &str, field: &str| {
            Decision::deny(
                Rule::MissingObject,
                format!(
                    "the {op} of {what} has no {field}, so secret-relay cannot check who owns it: it is denied whoever sends it"
                ),
            )
        };
        match (input.operation, input.old_object, input.object) {
            (Operation::Create, _, Some(new)) => Ok(Change::Create(new)),
            (Operation::Create, _, None) => Err(missing("CREATE", "object")),
            (Operation::Update, Some(old), Some(new)) => Ok(Change::Update { old, new }),
            (Operation::Update, None, _) => Err(missing("UPDATE", "oldObject")),
            (Operation::Update, Some(_), None) => Err(missing("UPDATE", "object")),
            (Operation::Delete, Some(old), _) => Ok(Change::Delete(old)),
            (Operation::Delete, None, _) => Err(missing("DELETE", "oldObject")),
            (Operation::Connect, _, _) => Err(not_applicable()),
        }
    }

    fn old(self) -> Option<&'a Secret> {
        match self {
            Change::Create(_) => None,
            Change::Update { old, .. } | Change::Delete(old) => Some(old),
        }
    }

    fn written(self) -> Option<&'a Secret> {
        match self {
            Change::Create(new) | Change::Update { new, .. } => Some(new),
            Change::Delete(_) => None,
        }
    }
}

/// A cluster's write to the control-plane namespace. A DELETE is its release
/// ([`release_owned`]); a CREATE or UPDATE is judged by the whole up-sync rule
/// ([`up_sync_stored`], the steps of `up_sync`) on the object as it will be
/// stored: registration, the opt-in label, blocked (new and old), a Secret
/// Source, then the stamps only secret-relay sets, then ownership. Whatever
/// way the write got here (a patch, server-side apply, a body the relay read
/// differently), what is stored is what is judged.
fn validate_cluster_write(policy: &Policy, c: &str, name: &str, change: Change) -> Decision {
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
            })
        }
    }
}

/// A denial when a cluster's write, as the cluster sent it (before the
/// mutating webhook), sets a stamp only secret-relay sets: an owner label
/// other than its own, or an adopted annotation, that the hub copy `hub` does
/// not already carry. Absent stamps are fine (the mutating webhook sets them),
/// and so are the hub copy's own (a patch keeps them; another cluster's copy
/// is then refused by the ownership rule). The relay's early answer; the
/// webhook judges the stored object ([`validate`]). The reason names the
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
fn stored_stamp_forged(
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

/// Whether a hub copy written by cluster `c` should carry the adopted
/// annotation: it adopts a control-plane secret now, or already had.
fn expected_adopted(c: &str, name: &str, old: Option<&Secret>) -> bool {
    let Some(old) = old else {
        return false;
    };
    match owner(old) {
        Owner::ControlPlane => is_adoptable(name),
        Owner::Cluster(o) => o == c && is_adopted(old),
        Owner::Invalid(_) => false,
    }
}

/// The relay's own account does two things, and nothing else: it returns
/// adopted copies of registered clusters to the control plane (the same
/// [`release_owned`] decision the relay asks before it acts), and it keeps its
/// hand-back record ([`HANDBACK_SECRET`], judged like any control-plane
/// write). Its other writes go as the clusters it impersonates.
fn validate_relay(policy: &Policy, name: &str, change: Change) -> Decision {
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

fn validate_other(policy: &Policy, who: &str, name: &str, change: Change) -> Decision {
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

fn validate_managed(
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
        && matches!(input.operation, Operation::Create | Operation::Update)
        && let Some(new) = input.object
    {
        out.extend(
            down_sync_problems(policy, new)
                .into_iter()
                .map(|p| format!("down-sync: {p}")),
        );
    }
    out
}

/// Whether `new` is `old` with only [`keys::CONFIRM_DELETION_ANNOTATION`] set
/// to `"true"` (besides what the API server maintains and an old version's
/// digest annotation, which the mutating webhook removes): a cluster admin's
/// confirmation of a held deletion, which changes nothing else of a down copy.
fn only_confirmation_added(old: &Secret, new: &Secret) -> bool {
    if meta::annotation(&new.metadata, keys::CONFIRM_DELETION_ANNOTATION) != Some("true") {
        return false;
    }
    let strip = |s: &Secret| {
        let mut s = s.clone();
        if let Some(a) = s.metadata.annotations.as_mut() {
            a.remove(keys::CONFIRM_DELETION_ANNOTATION);
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

/// The mutating webhook's JSON patch: for a cluster identity on the control
/// plane the owner label and the adopted annotation; on every CREATE/UPDATE in
/// the control-plane namespace (and of a down copy on a managed cluster) the
/// removal of the digest annotation older versions stamped
/// ([`keys::DIGEST_ANNOTATION`]): nothing stored carries a function of the
/// values. Empty on DELETE, outside the guarded namespace and for Kubernetes'
/// cleanup; applying the patch and mutating again gives an empty patch.
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
    meta::label(&secret.metadata, keys::OWNER_LABEL).is_some()
}

#[cfg(test)]
mod tests;
