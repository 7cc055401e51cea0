//! The validating webhook's answer ([`validate`]): the order of the checks
//! every write goes through, the write itself ([`Change`]), and the verdict
//! with its warnings and audit annotations. Who may write what is decided in
//! `control_plane` and `managed`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::decision::{Decision, Rule, down_sync_problems, hub_copy_elsewhere, owner};
use crate::document::Policy;

use super::control_plane::{validate_cluster_write, validate_other, validate_relay};
use super::identity::{Identity, RelayIdentity, identify};
use super::managed::validate_managed;
use super::request::{AdmissionInput, Mode, Operation, in_scope, is_kubernetes_cleanup};

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

/// A write with the objects its operation needs (see [`Change::of`]).
#[derive(Clone, Copy)]
pub(super) enum Change<'a> {
    Create(&'a Secret),
    Update { old: &'a Secret, new: &'a Secret },
    Delete(&'a Secret),
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

    pub(super) fn old(self) -> Option<&'a Secret> {
        match self {
            Change::Create(_) => None,
            Change::Update { old, .. } | Change::Delete(old) => Some(old),
        }
    }

    pub(super) fn written(self) -> Option<&'a Secret> {
        match self {
            Change::Create(new) | Change::Update { new, .. } => Some(new),
            Change::Delete(_) => None,
        }
    }
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
