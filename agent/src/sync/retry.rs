//! Retries: the backoff per name after a failure (100 ms to 30 s), the wait a
//! throttled cluster is asked for, and the jitter that keeps agents apart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::lock;
use super::scheduler::Trigger;

/// Failed attempts in a row per name, and where delayed retries send their trigger.
#[derive(Default)]
pub(super) struct Retries {
    /// Failed attempts in a row, by name, for the retry backoff.
    attempts: Mutex<HashMap<String, u32>>,
    /// The one delayed retry each name has waiting, by when it is due: a name
    /// failing again and again (every resync, every watch event) keeps one retry,
    /// not one more chain each time.
    pending: Arc<Mutex<HashMap<String, Instant>>>,
    /// Where delayed retries send their trigger (set when running).
    triggers: Mutex<Option<mpsc::UnboundedSender<Trigger>>>,
}

impl Retries {
    /// Retries go to `tx` from now on (none went anywhere before).
    pub(super) fn arm(&self, tx: mpsc::UnboundedSender<Trigger>) {
        *lock(&self.triggers) = Some(tx);
    }

    /// Reconciles `name` again after a backoff that doubles with each failure in a
    /// row (100 ms to 30 s, with jitter): a write that failed or raced is retried even
    /// when no watch event will bring the name back.
    pub(super) fn later(&self, name: &str) {
        let attempt = {
            let mut attempts = lock(&self.attempts);
            let n = attempts.entry(name.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let delay = Duration::from_millis(100)
            .saturating_mul(1u32 << attempt.min(9))
            .min(Duration::from_secs(30));
        self.after(name, delay);
    }

    /// Reconciles `name` again after the second the relay asks a cluster over its
    /// rate to wait (its `Retry-After`): being throttled is no failure, so neither the
    /// status nor the backoff changes.
    pub(super) fn throttled(&self, name: &str) {
        self.after(name, Duration::from_secs(1));
    }

    /// Reconciles `name` again after about `delay` (with jitter), unless a retry of
    /// it is already due sooner: that reconcile asks again for whatever it still
    /// needs. A sooner one replaces a later one.
    pub(super) fn after(&self, name: &str, delay: Duration) {
        self.schedule(name, delay, |waiting, due| waiting <= due);
    }

    /// Reconciles `name` again, and not before about `delay` (with jitter): a retry
    /// of it due sooner is put off to then (a denial asked again must give a relay
    /// replica the time to load its policy); one due later stays.
    pub(super) fn not_before(&self, name: &str, delay: Duration) {
        self.schedule(name, delay, |waiting, due| waiting >= due);
    }

    /// One retry per name: the new one at `due` unless `keeps(waiting, due)` says
    /// the one waiting stays.
    fn schedule(&self, name: &str, delay: Duration, keeps: fn(Instant, Instant) -> bool) {
        let Some(tx) = lock(&self.triggers).clone() else {
            return;
        };
        let due = Instant::now() + jitter(delay);
        {
            let mut pending = lock(&self.pending);
            if pending
                .get(name)
                .is_some_and(|waiting| keeps(*waiting, due))
            {
                return;
            }
            pending.insert(name.to_owned(), due);
        }
        let name = name.to_owned();
        let pending = Arc::downgrade(&self.pending);
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let Some(pending) = pending.upgrade() else {
                return;
            };
            // Still the retry waiting for it (not replaced, not cancelled)?
            let current = {
                let mut pending = lock(&pending);
                let current = pending.get(&name) == Some(&due);
                if current {
                    pending.remove(&name);
                }
                current
            };
            if current {
                let _ = tx.send(Trigger::Name(name));
            }
        });
    }

    /// `name` succeeded: its backoff starts over, and no retry of it waits.
    pub(super) fn succeeded(&self, name: &str) {
        lock(&self.attempts).remove(name);
        lock(&self.pending).remove(name);
    }
}

/// Up to ±25 % of `d`, so agents that lost the relay together do not return together.
pub(super) fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_has_one_retry_waiting_however_often_it_fails() {
        let retries = Retries::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        retries.arm(tx);
        // Fails again and again (every pass, every event) while its error lasts.
        for _ in 0..100 {
            retries.after("stuck", Duration::from_millis(50));
        }
        // A sooner retry replaces a later one.
        retries.after("soon", Duration::from_secs(3600));
        retries.after("soon", Duration::from_millis(40));
        // A denial asked again later puts off a sooner retry.
        retries.after("recheck", Duration::from_millis(20));
        retries.not_before("recheck", Duration::from_millis(400));
        let asked = Instant::now();
        // A success cancels the retry waiting.
        retries.after("done", Duration::from_millis(30));
        retries.succeeded("done");
        let mut got = Vec::new();
        while got.len() < 3 {
            let trigger = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("the retries came")
                .unwrap();
            if let Trigger::Name(name) = trigger {
                if name == "recheck" {
                    // Not before 400 ms, less a quarter of jitter.
                    assert!(asked.elapsed() >= Duration::from_millis(300));
                }
                got.push(name);
            }
        }
        got.sort();
        assert_eq!(got, ["recheck", "soon", "stuck"]);
        // Nothing more follows: every other request was a duplicate or cancelled
        // (without the one retry per name, 99 more "stuck" came within ms).
        let more = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
        assert!(more.is_err(), "another retry came");
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let d = Duration::from_secs(4);
        let j = jitter(d);
        assert!(
            j >= Duration::from_secs(3) && j <= Duration::from_secs(5),
            "{j:?}"
        );
    }
}
