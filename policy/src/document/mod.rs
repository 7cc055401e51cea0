//! The policy document (ConfigMap `secret-relay-policy`, key `policy.yaml`),
//! parsed and validated into a [`Policy`] that is valid by construction.
//!
//! `model` holds the policy and what it is made of; `validate` walks the
//! YAML tree itself so that every problem is reported, each with its field
//! path, instead of stopping at the first.

mod model;
mod validate;

pub use model::{
    AGENT_TLS_SECRET, BUILTIN_BLOCKED_LABELS, BUILTIN_BLOCKED_NAMES, BUILTIN_BLOCKED_TYPES,
    BlockedBy, BlockedLabel, BreakGlass, Cluster, DEFAULT_AGENT_NAMESPACE,
    DEFAULT_CONTROL_PLANE_NAMESPACE, ExtraBlocked, HANDBACK_SECRET, MAX_CLUSTER_NAME_LEN,
    POLICY_KEY, Policy, SecretSource, is_valid_cluster_name,
};
pub use validate::{PolicyError, Problem};

#[cfg(test)]
mod tests;
