//! The policy sources of the runtime, fed into an [`AppState`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;
use secret_relay_runtime::{CancellationToken, LoadOutcome};

use crate::state::AppState;

/// Reads the policy file once and offers it if its contents changed since `last`.
pub async fn reload_file_once(
    state: &AppState,
    path: &Path,
    last: &mut Option<Vec<u8>>,
) -> Option<LoadOutcome> {
    secret_relay_runtime::reload_file_once(state.policy_state(), path, last).await
}

/// Polls the policy file until `shutdown` is cancelled.
pub async fn watch_file(
    state: AppState,
    path: PathBuf,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let policy = state.policy_state().clone();
    secret_relay_runtime::watch_file(policy, path, interval, shutdown).await;
}

/// Watches the policy ConfigMap until `shutdown` is cancelled. The watcher resumes
/// from its last resourceVersion and backs off on errors; a deleted ConfigMap keeps
/// the last good policy.
pub async fn watch_configmap(
    state: AppState,
    client: Client,
    namespace: String,
    name: String,
    shutdown: CancellationToken,
) {
    let policy = state.policy_state().clone();
    secret_relay_runtime::watch_configmap(policy, client, namespace, name, shutdown).await;
}
