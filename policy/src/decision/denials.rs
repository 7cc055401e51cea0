//! The denials every direction shares: an unregistered cluster, and a
//! blocked Secret or hub copy.

use k8s_openapi::api::core::v1::Secret;

use crate::document::{BUILTIN_BLOCKED_LABELS, BlockedBy, Policy};

use super::rule::{Decision, Rule};

pub(crate) fn unknown_cluster(cluster: &str) -> Decision {
    Decision::deny(
        Rule::UnknownCluster,
        format!(
            "cluster {cluster} is not registered: add it to clusters in the secret-relay-policy ConfigMap"
        ),
    )
}

/// A denial if `secret` is blocked; `what` names it in the reason.
pub fn blocked_decision(policy: &Policy, secret: &Secret, what: &str) -> Option<Decision> {
    let by = policy.blocked(secret)?;
    Some(Decision::deny(
        Rule::for_blocked(&by),
        format!(
            "{what} is blocked by {by}: blocked secrets are never synced or changed by a cluster; use another name, type or labels"
        ),
    ))
}

/// A denial if `secret`, written by a cluster, is blocked; `what` names it.
/// Unlike [`blocked_decision`] it quotes no value of the request: for a label
/// it gives the policy's `key=value`, or only the key when the policy blocks
/// the key with any value.
pub(super) fn blocked_for_cluster(
    policy: &Policy,
    secret: &Secret,
    what: &str,
) -> Option<Decision> {
    let by = policy.blocked(secret)?;
    let which = match &by {
        BlockedBy::Name(n) => format!("name {n}"),
        BlockedBy::Type(t) => format!("type {t}"),
        BlockedBy::Label { key, value } => {
            let pinned = BUILTIN_BLOCKED_LABELS
                .iter()
                .any(|(k, v)| k == key && v == value)
                || policy
                    .extra_blocked()
                    .labels
                    .iter()
                    .any(|b| b.key == *key && b.value.as_ref() == Some(value));
            if pinned {
                format!("label {key}={value}")
            } else {
                format!("label {key}")
            }
        }
    };
    Some(Decision::deny(
        Rule::for_blocked(&by),
        format!(
            "{what} is blocked by its {which}: blocked secrets are never synced or changed by a cluster; use another name, type or labels"
        ),
    ))
}

/// A denial if the existing hub copy `hub` is blocked, for a cluster that
/// writes or releases it: it says only that the copy is blocked (the rule
/// says by what), nothing of a copy the cluster may not see.
pub(super) fn hub_copy_blocked(
    policy: &Policy,
    hub: &Secret,
    cp: &str,
    name: &str,
) -> Option<Decision> {
    let by = policy.blocked(hub)?;
    Some(Decision::deny(
        Rule::for_blocked(&by),
        format!(
            "the hub copy {cp}/{name} is blocked: blocked secrets are never synced or changed by a cluster; rename the Secret here"
        ),
    ))
}
