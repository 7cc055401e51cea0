//! The policy handle shared by request handlers: an `ArcSwap` with a
//! generation counter, written by one reload task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::document::Policy;

/// The current policy. Readers take a snapshot with [`PolicyStore::load`]
/// once per request; the reload task replaces it with [`PolicyStore::store`]
/// only after a new document validated.
#[derive(Debug)]
pub struct PolicyStore {
    current: ArcSwap<Policy>,
    generation: AtomicU64,
}

impl PolicyStore {
    /// A store holding `policy` as generation 1.
    pub fn new(policy: Policy) -> PolicyStore {
        PolicyStore {
            current: ArcSwap::from_pointee(policy),
            generation: AtomicU64::new(1),
        }
    }

    /// A snapshot of the current policy.
    pub fn load(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Replaces the policy and returns the new generation.
    pub fn store(&self, policy: Policy) -> u64 {
        self.current.store(Arc::new(policy));
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The generation of the current policy (1 for the initial one).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl Default for PolicyStore {
    fn default() -> Self {
        PolicyStore::new(Policy::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storing_a_policy_bumps_the_generation_and_swaps_the_snapshot() {
        let store = PolicyStore::default();
        let before = store.load();
        assert_eq!(store.generation(), 1);
        let next = Policy::from_yaml("controlPlaneNamespace: hub\n").unwrap();
        assert_eq!(store.store(next), 2);
        assert_eq!(store.generation(), 2);
        assert_eq!(store.load().control_plane_namespace(), "hub");
        // A snapshot taken before the swap keeps the old policy.
        assert_eq!(before.control_plane_namespace(), "argocd");
    }
}
