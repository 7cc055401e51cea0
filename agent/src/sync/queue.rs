//! The work queue, as controllers keep: each name is reconciled by one task at a
//! time, a name triggered while it runs goes again after.

use std::collections::{HashSet, VecDeque};

/// The names waiting for a reconcile, in trigger order, each once; the names running;
/// and the names triggered again while running.
#[derive(Default)]
pub(super) struct WorkQueue {
    pending: VecDeque<String>,
    queued: HashSet<String>,
    running: HashSet<String>,
    again: HashSet<String>,
}

impl WorkQueue {
    /// Triggers `name`: queued once, or again after it when it is running.
    pub(super) fn add(&mut self, name: String) {
        if self.running.contains(&name) {
            self.again.insert(name);
        } else if self.queued.insert(name.clone()) {
            self.pending.push_back(name);
        }
    }

    /// The next name to run, now running.
    pub(super) fn next(&mut self) -> Option<String> {
        let name = self.pending.pop_front()?;
        self.queued.remove(&name);
        self.running.insert(name.clone());
        Some(name)
    }

    /// `name` ran; queued again when it was triggered meanwhile.
    pub(super) fn done(&mut self, name: &str) {
        self.running.remove(name);
        if self.again.remove(name) {
            self.add(name.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_queue_runs_a_name_once_at_a_time_and_again_when_triggered_while_running() {
        let mut q = WorkQueue::default();
        for n in ["a", "b", "a", "c"] {
            q.add(n.to_owned());
        }
        // Trigger order, each name once.
        assert_eq!(q.next().as_deref(), Some("a"));
        // Triggered while running: not handed out twice at once...
        q.add("a".to_owned());
        assert_eq!(q.next().as_deref(), Some("b"));
        assert_eq!(q.next().as_deref(), Some("c"));
        assert_eq!(q.next(), None);
        // ...but again once it is done; a name done without a new trigger is not.
        q.done("b");
        q.done("a");
        assert_eq!(q.next().as_deref(), Some("a"));
        assert_eq!(q.next(), None);
        q.done("a");
        q.done("c");
        assert_eq!(q.next(), None);
    }
}
