//! Retries: the backoff per name after a failure (100 ms to 30 s), the wait a
//! throttled cluster is asked for, and the jitter that keeps agents apart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

use super::lock;
use super::scheduler::Trigger;

/// Failed attempts in a row per name, and where delayed retries send their trigger.
#[derive(Default)]
pub(super) struct Retries {
    /// Failed attempts in a row, by name, for the retry backoff.
    attempts: Mutex<HashMap<String, u32>>,
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

    /// Reconciles `name` again after about `delay` (with jitter).
    pub(super) fn after(&self, name: &str, delay: Duration) {
        let Some(tx) = lock(&self.triggers).clone() else {
            return;
        };
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(jitter(delay)).await;
            let _ = tx.send(Trigger::Name(name));
        });
    }

    /// `name` succeeded: its backoff starts over.
    pub(super) fn succeeded(&self, name: &str) {
        lock(&self.attempts).remove(name);
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
