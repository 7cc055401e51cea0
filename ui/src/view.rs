//! The page's data: every Secret of the control-plane namespace with its owner,
//! its targets and the rule for each cluster it does not go to, its sync state
//! as the agents report it, and the policy. Pure: built from a [`Snapshot`].
//!
//! This file holds the whole [`View`] and its parts shared by the others; the
//! policy's part is in `policy`, the Secrets' rows in `rows`, and each row's sync
//! state per cluster in `sync`.

mod policy;
mod rows;
mod sync;

use secret_relay_policy::{Decision, Policy, ReleaseAction, Rule};
use serde::Serialize;

use crate::state::{AgentEvent, ClusterReport, RelayReport, Snapshot};

use self::policy::PolicyView;
use self::rows::{LocalOnlyRow, SecretRow, secret_row};

pub(crate) use self::rows::TargetMode;

/// The Argo CD secret types (`argocd.argoproj.io/secret-type`) the editor offers.
pub(crate) const ARGO_TYPES: [&str; 5] = [
    "repository",
    "repo-creds",
    "repository-write",
    "repo-write-creds",
    "cluster",
];

/// Kubernetes Secret types the editor suggests.
pub(crate) const SECRET_TYPES: [&str; 7] = [
    "Opaque",
    "kubernetes.io/basic-auth",
    "kubernetes.io/ssh-auth",
    "kubernetes.io/tls",
    "kubernetes.io/dockerconfigjson",
    "kubernetes.io/service-account-token",
    "bootstrap.kubernetes.io/token",
];

/// Everything the page shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct View {
    pub(crate) version: u64,
    pub(crate) identity: Option<IdentityView>,
    pub(crate) policy: PolicyView,
    pub(crate) namespace: String,
    pub(crate) secrets_synced: bool,
    pub(crate) secrets_error: Option<String>,
    pub(crate) secrets: Vec<SecretRow>,
    pub(crate) local_only: Vec<LocalOnlyRow>,
    pub(crate) reporters: Vec<ReporterView>,
    pub(crate) relay: Option<RelayView>,
    pub(crate) argo_types: &'static [&'static str],
    pub(crate) secret_types: &'static [&'static str],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IdentityView {
    pub(crate) username: String,
    pub(crate) groups: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DecisionView {
    pub(crate) allowed: bool,
    pub(crate) rule: Rule,
    pub(crate) reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) action: Option<ReleaseAction>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventView {
    pub(crate) reason: String,
    pub(crate) note: String,
    pub(crate) warning: bool,
    pub(crate) time: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReporterView {
    pub(crate) cluster: String,
    pub(crate) namespace: String,
    pub(crate) synced: bool,
    pub(crate) registered: bool,
    pub(crate) error: Option<String>,
    pub(crate) events_error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RelayView {
    pub(crate) url: String,
    pub(crate) error: Option<String>,
    pub(crate) read_at: Option<String>,
    pub(crate) connected_clusters: Option<f64>,
    pub(crate) writes: Vec<RelayWrite>,
    pub(crate) refusals: Vec<RelayRefusal>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RelayWrite {
    pub(crate) decision: String,
    pub(crate) rule: String,
    pub(crate) count: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RelayRefusal {
    pub(crate) reason: String,
    pub(crate) count: f64,
}

impl From<&Decision> for DecisionView {
    fn from(d: &Decision) -> Self {
        DecisionView {
            allowed: d.allowed,
            rule: d.rule,
            reason: d.reason.clone(),
            action: None,
        }
    }
}

impl From<&AgentEvent> for EventView {
    fn from(e: &AgentEvent) -> Self {
        EventView {
            reason: e.reason.clone(),
            note: e.note.clone(),
            warning: e.warning,
            time: e.time.map(|t| t.to_string()),
        }
    }
}

/// Builds the page's data from a snapshot.
pub(crate) fn build(snap: &Snapshot) -> View {
    let policy = &snap.policy;
    let inner = &snap.inner;
    let secrets: Vec<SecretRow> = inner
        .secrets
        .items
        .values()
        .map(|s| secret_row(policy, s, &inner.clusters))
        .collect();
    View {
        version: snap.version,
        identity: inner.identity.as_ref().map(|i| IdentityView {
            username: i.username.clone(),
            groups: i.groups.clone(),
        }),
        policy: policy::policy_view(snap),
        namespace: inner.secrets.namespace.clone(),
        secrets_synced: inner.secrets.synced,
        secrets_error: inner.secrets.error.clone(),
        secrets,
        local_only: rows::local_only(policy, &inner.secrets.items, &inner.clusters),
        reporters: inner
            .clusters
            .iter()
            .map(|(name, r)| reporter_view(policy, name, r))
            .collect(),
        relay: inner.relay.as_ref().map(relay_view),
        argo_types: &ARGO_TYPES,
        secret_types: &SECRET_TYPES,
    }
}

fn reporter_view(policy: &Policy, name: &str, r: &ClusterReport) -> ReporterView {
    ReporterView {
        cluster: name.to_owned(),
        namespace: r.namespace.clone(),
        synced: r.secrets_synced,
        registered: policy.cluster(name).is_some(),
        error: r.error.clone(),
        events_error: r.events_error.clone(),
    }
}

fn relay_view(r: &RelayReport) -> RelayView {
    RelayView {
        url: r.url.clone(),
        error: r.error.clone(),
        read_at: r.read_at.map(|t| t.to_string()),
        connected_clusters: r.connected_clusters,
        writes: r
            .writes
            .iter()
            .map(|(decision, rule, count)| RelayWrite {
                decision: decision.clone(),
                rule: rule.clone(),
                count: *count,
            })
            .collect(),
        refusals: r
            .refusals
            .iter()
            .map(|(reason, count)| RelayRefusal {
                reason: reason.clone(),
                count: *count,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
