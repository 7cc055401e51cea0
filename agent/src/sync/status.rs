//! Each Secret's sync status per direction (one metric series each), the counter that
//! tells watchers something changed, and how an error is reported.

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::EventType;

use super::{Context, lock};
use crate::metrics::StatusLabels;

impl Context {
    /// Tells watchers ([`super::Agent::subscribe`]) that a status or readiness changed.
    pub(super) fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Sets the status of `name` in `direction`; true when it changed.
    pub(super) fn set_status(
        &self,
        name: &str,
        direction: &'static str,
        state: &'static str,
        rule: &str,
    ) -> bool {
        let labels = StatusLabels {
            name: name.to_owned(),
            direction,
            state,
            rule: rule.to_owned(),
        };
        let mut statuses = lock(&self.statuses);
        let old = statuses.insert((name.to_owned(), direction), labels.clone());
        let changed = old.as_ref() != Some(&labels);
        if let Some(old) = old
            && changed
        {
            self.metrics.status.remove(&old);
        }
        self.metrics.status.get_or_create(&labels).set(1);
        drop(statuses);
        self.changed();
        changed
    }

    /// Removes the status of `name` in `direction`.
    pub(super) fn clear_status(&self, name: &str, direction: &'static str) {
        if let Some(old) = lock(&self.statuses).remove(&(name.to_owned(), direction)) {
            self.metrics.status.remove(&old);
        }
        self.changed();
    }

    /// The current status of a Secret in one direction: (state, rule).
    pub(super) fn status(
        &self,
        name: &str,
        direction: &'static str,
    ) -> Option<(&'static str, String)> {
        lock(&self.statuses)
            .get(&(name.to_owned(), direction))
            .map(|l| (l.state, l.rule.clone()))
    }

    /// An error (not a decision of the rules): reported as the `error` state, with
    /// an Event when the state changes to it, and retried with backoff.
    pub(super) async fn failed(
        &self,
        on: &Secret,
        direction: &'static str,
        name: &str,
        action: &'static str,
        note: String,
    ) {
        self.metrics.action(action, "error");
        tracing::warn!(%name, direction, error = %note, "sync failed; will retry");
        if self.set_status(name, direction, "error", "") {
            let reason = if direction == "up" {
                "UpSyncFailed"
            } else {
                "DownSyncFailed"
            };
            self.events
                .record(on, EventType::Warning, reason, note)
                .await;
        }
        self.retries.later(name);
    }
}
