//! The admission webhook's decisions, pure: who is writing ([`identify`]),
//! whether the write is allowed ([`validate`]) and what the mutating webhook
//! stamps on it ([`mutate`]).
//!
//! The mutating webhook runs before the validating one, so [`validate`] sees
//! the owner label and adopted annotation that [`mutate`] stamped.
//!
//! `identity` says who writes and `request` what is asked; `verdict` orders
//! the checks, `control_plane` and `managed` decide the writes in each place,
//! `stamp` holds the stamps only secret-relay sets and `patch` the patch that
//! sets them.

mod control_plane;
mod identity;
mod managed;
mod patch;
mod request;
mod stamp;
mod verdict;

pub use identity::{Identity, RelayIdentity, UserInfo, identify, impersonated_cluster};
pub use managed::is_down_copy;
pub use patch::{PatchOp, mutate, mutate_reads_whole_objects, pointer};
pub use request::{AdmissionInput, Mode, Operation, in_scope, is_kubernetes_cleanup};
pub use stamp::{forged_stamp, stamp_cluster_write};
pub use verdict::{AdmissionVerdict, validate, validate_without_policy};

#[cfg(test)]
mod tests;
