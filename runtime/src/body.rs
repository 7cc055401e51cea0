//! The bytes of request bodies a server holds at once: a budget each body takes its
//! declared size from before it is read, so what is sent to a port never outgrows
//! the process's memory together. The webhook keeps one; the relay one per cluster
//! and one for all.

use std::sync::Arc;

use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A budget of body bytes, counted in KiB.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
}

impl BodyBudget {
    /// A budget of `bytes` (rounded up to a KiB).
    pub fn new(bytes: usize) -> BodyBudget {
        BodyBudget {
            kib: Arc::new(Semaphore::new(kib(bytes) as usize)),
        }
    }

    /// A budget of `bodies` bodies of `largest` bytes each: each one taken at that
    /// size fits, whatever the rounding.
    pub fn of_bodies(bodies: usize, largest: usize) -> BodyBudget {
        BodyBudget::new(largest.next_multiple_of(1024).saturating_mul(bodies))
    }

    /// Takes `bytes` (rounded up to a KiB, at least one) until the permit drops, or
    /// `None` at once when the budget has not that much left: never queued, so a
    /// small body never waits behind a large one.
    pub fn try_take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        self.kib.clone().try_acquire_many_owned(kib(bytes)).ok()
    }
}

/// `bytes` in KiB, rounded up, at least one.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX)
}

/// The request's Content-Length, when it declares one that reads.
pub fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_holds_its_bodies_and_refuses_more_at_once() {
        let budget = BodyBudget::of_bodies(2, 3000);
        let one = budget.try_take(3000).unwrap();
        let _two = budget.try_take(3000).unwrap();
        assert!(budget.try_take(1).is_none());
        drop(one);
        assert!(budget.try_take(2048).is_some());
        let mut headers = HeaderMap::new();
        assert_eq!(declared_length(&headers), None);
        headers.insert(CONTENT_LENGTH, "65536".parse().unwrap());
        assert_eq!(declared_length(&headers), Some(65536));
    }
}
