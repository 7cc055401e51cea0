//! secret-relay policy: label selectors, the policy document and every
//! sync and admission decision of the rules, as pure functions that return a
//! decision with a stable rule id and a reason a person can act on. No I/O.

pub mod admission;
pub mod carry;
pub mod cluster_id;
pub mod decision;
pub mod document;
pub mod keys;
pub mod meta;
pub mod plan;
pub mod selector;
pub mod store;

pub use admission::{
    AdmissionInput, AdmissionVerdict, Identity, Mode, Operation, PatchOp, RelayIdentity, UserInfo,
    forged_stamp, identify, impersonated_cluster, in_scope, is_down_copy, is_kubernetes_cleanup,
    mutate, mutate_reads_whole_objects, pointer, stamp_cluster_write, validate,
    validate_without_policy,
};
pub use carry::{Direction, StripMetadata, carried_annotations, carried_labels};
pub use cluster_id::ClusterId;
pub use decision::{
    ADOPTABLE_NAMES, Decision, DownSync, Owner, ReleaseAction, ReleaseDecision, Rule,
    allowed_selector, blocked_decision, digest, down_sync, down_sync_problems, down_sync_to,
    is_adoptable, is_adopted, owner, reclaim, release, revocation, source_marker,
    uncarried_metadata, up_sync, up_sync_full_scan,
};
pub use document::{
    BlockedBy, BlockedLabel, BreakGlass, Cluster, ExtraBlocked, POLICY_KEY, Policy, PolicyError,
    Problem, SecretSource, is_valid_cluster_name,
};
pub use k8s_openapi::api::core::v1::Secret;
pub use plan::{Change, Plan, PlanRow, PlanSettings, When, plan};
pub use selector::{Operator, Requirement, Selector, SelectorParseError};
pub use store::PolicyStore;

#[cfg(test)]
mod testutil;
