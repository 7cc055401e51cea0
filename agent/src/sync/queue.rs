//! The work queue, as controllers keep: each name is reconciled by one task at a
//! time, a name triggered while it runs goes again after; and when a full pass
//! is done.

use std::collections::{HashSet, VecDeque};

/// The names waiting for a reconcile, in trigger order, each once; the names running;
/// and the names triggered again while running. Beside them, the full pass under
/// way: the names it triggered that have not run since.
#[derive(Default)]
pub(super) struct WorkQueue {
    pending: VecDeque<String>,
    queued: HashSet<String>,
    running: HashSet<String>,
    again: HashSet<String>,
    /// Whether a full pass is under way.
    in_pass: bool,
    /// The names of the full pass under way that have not run since it began.
    pass: HashSet<String>,
    /// Names of the pass that were running when it began: that run does not count.
    began_running: HashSet<String>,
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
        if !self.began_running.remove(name) {
            self.pass.remove(name);
        }
    }

    /// Triggers every name of a full pass (one under way takes them in too: the
    /// two end together).
    pub(super) fn add_pass(&mut self, names: impl IntoIterator<Item = String>) {
        self.in_pass = true;
        for name in names {
            if self.running.contains(&name) {
                self.began_running.insert(name.clone());
            }
            self.pass.insert(name.clone());
            self.add(name);
        }
    }

    /// True once, when every name of the full pass under way has run since it began.
    pub(super) fn pass_done(&mut self) -> bool {
        let done = self.in_pass && self.pass.is_empty();
        if done {
            self.in_pass = false;
        }
        done
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

    #[test]
    fn a_full_pass_is_done_once_each_of_its_names_has_run_since_it_began() {
        let mut q = WorkQueue::default();
        assert!(!q.pass_done());
        q.add_pass(Vec::new());
        assert!(q.pass_done());
        assert!(!q.pass_done());
        q.add("a".to_owned());
        assert_eq!(q.next().as_deref(), Some("a"));
        // "a" was running when the pass began: that run does not count.
        q.add_pass(["a".to_owned(), "b".to_owned()]);
        assert_eq!(q.next().as_deref(), Some("b"));
        q.done("b");
        q.done("a");
        assert!(!q.pass_done());
        assert_eq!(q.next().as_deref(), Some("a"));
        assert!(!q.pass_done());
        q.done("a");
        assert!(q.pass_done());
        assert!(!q.pass_done());
    }
}
