//! Down-sync: which registered clusters receive a hub copy, and why a given
//! cluster does or does not.

use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;

use crate::document::Policy;
use crate::keys;
use crate::meta;

use super::denials::{blocked_decision, unknown_cluster};
use super::owner::{Owner, owner};
use super::rule::{Decision, Rule};
use super::targets::{
    ListAnnotation, SelectorAnnotation, annotation_problems, down_sync_problems, list_annotation,
    selector_annotation,
};

/// Down-sync targets of a hub copy, sorted, and the decision explaining them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DownSync {
    /// Registered clusters that receive the hub copy, sorted by name.
    pub targets: Vec<String>,
    /// Allowed when there is at least one target.
    pub decision: Decision,
}

impl DownSync {
    /// No target, and the denial saying why.
    fn nowhere(decision: Decision) -> DownSync {
        DownSync {
            targets: Vec::new(),
            decision,
        }
    }
}

/// Down-sync targets of hub copy `hub`: clusters named in
/// `allowed-clusters` (trimmed, empty entries ignored; `ALL` for every
/// cluster) united with clusters whose labels match
/// `allowed-cluster-selector`, never the owner, never for a blocked Secret.
/// Only registered clusters are targets. The annotations are an OR: a blank
/// or unparsable one adds no cluster and does not cancel the other; its
/// problem is named in the reason (see [`down_sync_problems`]).
pub fn down_sync(policy: &Policy, hub: &Secret) -> DownSync {
    let name = meta::name(&hub.metadata);
    let cp = policy.control_plane_namespace();
    let owner = match sendable_owner(policy, hub, name) {
        Ok(owner) => owner,
        Err(d) => return DownSync::nowhere(d),
    };
    let list = list_annotation(hub);
    let selector = selector_annotation(hub);
    let problems = annotation_problems(policy, &list, &selector);
    let mut targets: Vec<String> = policy
        .clusters()
        .filter(|c| !matches!(&owner, Owner::Cluster(o) if *o == c.name))
        .filter(|c| list.includes(&c.name) || selector.matches(&c.labels))
        .map(|c| c.name.clone())
        .collect();
    targets.sort();
    if targets.is_empty() {
        return DownSync::nowhere(no_targets(cp, name, &list, &selector, problems));
    }
    let mut reason = format!(
        "{cp}/{name} goes to {} cluster{}: {}",
        targets.len(),
        if targets.len() == 1 { "" } else { "s" },
        targets.join(", ")
    );
    if !problems.is_empty() {
        reason.push_str(&format!("; but {}", problems.join("; ")));
    }
    DownSync {
        targets,
        decision: Decision::allow(Rule::DownSync, reason),
    }
}

/// Down-sync of hub copy `hub` to one cluster: allowed iff `cluster` is a
/// target of [`down_sync`]; a denial says why this cluster is not one.
pub fn down_sync_to(policy: &Policy, hub: &Secret, cluster: &str) -> DownSync {
    let all = down_sync(policy, hub);
    if all.targets.iter().any(|t| t == cluster) {
        return DownSync {
            decision: Decision::allow(
                Rule::DownSync,
                format!("cluster {cluster} is a target: {}", all.decision.reason),
            ),
            targets: all.targets,
        };
    }
    let name = meta::name(&hub.metadata);
    let cp = policy.control_plane_namespace();
    let decision = match (&all.decision.rule, policy.cluster(cluster)) {
        (
            Rule::WrongNamespace
            | Rule::BlockedName
            | Rule::BlockedType
            | Rule::BlockedLabel
            | Rule::InvalidSelector
            | Rule::OrphanedCopy,
            _,
        ) => all.decision.clone(),
        (_, None) => unknown_cluster(cluster),
        _ if owner(hub) == Owner::Cluster(cluster.to_owned()) => Decision::deny(
            Rule::DownSyncNotTarget,
            format!("cluster {cluster} owns {cp}/{name}: a secret never goes back to its owner"),
        ),
        _ => {
            let mut reason = format!(
                "cluster {cluster} is not named in {} and its labels do not match {} on {cp}/{name}: add it to one of them",
                keys::ALLOWED_CLUSTERS_ANNOTATION,
                keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
            );
            for p in down_sync_problems(policy, hub) {
                reason.push_str("; ");
                reason.push_str(&p);
            }
            Decision::deny(Rule::DownSyncNotTarget, reason)
        }
    };
    DownSync {
        targets: all.targets,
        decision,
    }
}

/// The owner of hub copy `hub` (named `name`) when it may go down at all:
/// it is in the control-plane namespace, not blocked, and not the copy of a
/// cluster that is no longer registered. Otherwise the denial.
fn sendable_owner(policy: &Policy, hub: &Secret, name: &str) -> Result<Owner, Decision> {
    let ns = hub.metadata.namespace.as_deref().unwrap_or("");
    let cp = policy.control_plane_namespace();
    if ns != cp {
        return Err(Decision::deny(
            Rule::WrongNamespace,
            format!(
                "{ns}/{name} is not in the control-plane namespace {cp}: only Secrets there sync down"
            ),
        ));
    }
    if let Some(d) = blocked_decision(policy, hub, &format!("secret {cp}/{name}")) {
        return Err(d);
    }
    let owner = owner(hub);
    if let Owner::Cluster(o) = &owner
        && policy.cluster(o).is_none()
    {
        return Err(Decision::deny(
            Rule::OrphanedCopy,
            format!(
                "{cp}/{name} is owned by cluster {o}, which is not registered: a removed cluster's copies stop going down; register it again, or take the copy over (rule {}) to send it on",
                Rule::OrphanedOwner
            ),
        ));
    }
    Ok(owner)
}

/// The denial for hub copy `cp/name` when its annotations name no
/// registered cluster but its owner; `problems` are theirs.
fn no_targets(
    cp: &str,
    name: &str,
    list: &ListAnnotation,
    selector: &SelectorAnnotation,
    problems: Vec<String>,
) -> Decision {
    let rule = if matches!(selector, SelectorAnnotation::Invalid(_)) {
        Rule::InvalidSelector
    } else {
        Rule::NoTargets
    };
    let why = if matches!(list, ListAnnotation::Absent)
        && matches!(selector, SelectorAnnotation::Absent)
    {
        format!(
            "{cp}/{name} has neither the {} nor the {} annotation: add one to send it to clusters",
            keys::ALLOWED_CLUSTERS_ANNOTATION,
            keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
        )
    } else {
        let mut parts = problems;
        if list.names_something() || matches!(selector, SelectorAnnotation::Valid(_)) {
            parts.push(format!(
                "no registered cluster other than the owner is named in {} or matches {}: name a registered cluster or fix the selector",
                keys::ALLOWED_CLUSTERS_ANNOTATION,
                keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
            ));
        }
        format!("{cp}/{name} goes to no cluster: {}", parts.join("; "))
    };
    Decision::deny(rule, why)
}
