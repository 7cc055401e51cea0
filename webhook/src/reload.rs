//! Policy hot reload from a file (polled) or from a ConfigMap (watched).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use secret_relay_policy::POLICY_KEY;

use crate::state::{AppState, LoadOutcome, parse_policy, parse_policy_data};

/// Where the policy comes from.
#[derive(Clone, Debug)]
pub enum PolicySource {
    /// A file, re-read when its contents change (robust to Kubernetes' symlink-swapped mounts).
    File {
        /// The policy document.
        path: PathBuf,
        /// How often to look at it.
        interval: Duration,
    },
    /// The `policy.yaml` key of a ConfigMap, watched through the API server.
    ConfigMap {
        /// Namespace of the ConfigMap.
        namespace: String,
        /// Name of the ConfigMap.
        name: String,
    },
}

/// Reads the policy file once and offers it if its contents changed since `last`.
pub async fn reload_file_once(
    state: &AppState,
    path: &Path,
    last: &mut Option<Vec<u8>>,
) -> Option<LoadOutcome> {
    let source = path.display().to_string();
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(err) => {
            let problem = format!("failed to read policy file: {err}");
            // Report an unreadable file once per change of state, not on every poll.
            if last.as_deref() != Some(problem.as_bytes()) {
                *last = Some(problem.clone().into_bytes());
                state.source_problem(&source, problem.clone());
                return Some(LoadOutcome::Rejected(problem));
            }
            return None;
        }
    };
    if last.as_deref() == Some(bytes.as_slice()) {
        return None;
    }
    let revision = format!("sha256:{}", short_digest(&bytes));
    let parsed = match std::str::from_utf8(&bytes) {
        Ok(text) => parse_policy(text),
        Err(_) => Err("failed to read policy file: not UTF-8".to_owned()),
    };
    *last = Some(bytes);
    Some(state.offer_policy(&source, &revision, parsed))
}

/// Polls the policy file until `shutdown` resolves.
pub async fn watch_file(
    state: AppState,
    path: PathBuf,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut last = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {
                reload_file_once(&state, &path, &mut last).await;
            }
        }
    }
}

/// Watches the policy ConfigMap until `shutdown` resolves. The watcher resumes from
/// its last resourceVersion and backs off on errors; a deleted ConfigMap keeps the
/// last good policy.
pub async fn watch_configmap(
    state: AppState,
    client: Client,
    namespace: String,
    name: String,
    shutdown: impl Future<Output = ()>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher::watcher(api, config).default_backoff();
    tokio::pin!(stream);
    tokio::pin!(shutdown);
    let source = format!("configmap {namespace}/{name}");
    let mut seen_in_init = false;
    let mut last_revision: Option<String> = None;
    loop {
        let event = tokio::select! {
            () = &mut shutdown => return,
            event = stream.next() => event,
        };
        let Some(event) = event else { return };
        match event {
            Ok(Event::Apply(cm) | Event::InitApply(cm)) => {
                seen_in_init = true;
                let revision = cm.metadata.resource_version.clone().unwrap_or_default();
                if last_revision.as_deref() == Some(revision.as_str()) {
                    continue;
                }
                last_revision = Some(revision.clone());
                let data = cm.data.unwrap_or_default();
                state.offer_policy(&source, &revision, parse_policy_data(&data, POLICY_KEY));
            }
            Ok(Event::Delete(_)) => {
                last_revision = None;
                state.source_problem(
                    &source,
                    "the policy ConfigMap was deleted; keeping the last good policy".to_owned(),
                );
            }
            Ok(Event::Init) => seen_in_init = false,
            Ok(Event::InitDone) => {
                if !seen_in_init {
                    state.source_problem(&source, "the policy ConfigMap does not exist".to_owned());
                }
            }
            Err(err) => {
                tracing::warn!(%source, error = %err, "policy ConfigMap watch failed; retrying with backoff");
            }
        }
    }
}

fn short_digest(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
