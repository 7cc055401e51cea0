//! Sync decisions (up-sync, release, down-sync) with stable rule ids and
//! reasons a person can act on.
//!
//! Each concern has its own module: the rule vocabulary ([`Rule`],
//! [`Decision`]), who owns a hub copy, up-sync, release and reclaim,
//! down-sync and its target annotations, the denials they share and the
//! fingerprints a copy records of another.

mod denials;
mod down;
mod fingerprint;
mod owner;
mod release;
mod rule;
mod targets;
mod up;

pub use denials::blocked_decision;
pub(crate) use denials::unknown_cluster;
pub use down::{DownSync, down_sync, down_sync_to};
pub use fingerprint::{digest, source_marker};
pub(crate) use owner::invalid_owner;
pub use owner::{ADOPTABLE_NAMES, Owner, is_adoptable, is_adopted, owner};
pub use release::{ReleaseAction, ReleaseDecision, reclaim, release, revocation};
pub(crate) use release::{reclaim_owned, release_owned};
pub use rule::{Decision, Rule};
pub use targets::{allowed_selector, down_sync_problems};
pub(crate) use up::{hub_copy_elsewhere, up_sync_stored};
pub use up::{uncarried_metadata, up_sync, up_sync_full_scan};

#[cfg(test)]
mod tests;
