//! The policy as the page shows it: the registered clusters, each Secret Source with
//! the clusters it selects and the Secrets it admits, what is blocked, and who may
//! break glass.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use secret_relay_policy::document::{
    BUILTIN_BLOCKED_LABELS, BUILTIN_BLOCKED_NAMES, BUILTIN_BLOCKED_TYPES,
};
use secret_relay_policy::meta::{is_opted_in, labels, name};
use secret_relay_policy::{Owner, Policy, SecretSource, owner};
use serde::Serialize;

use super::sync::is_down_copy;
use crate::state::{ClusterReport, Snapshot};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PolicyView {
    pub(crate) source: String,
    pub(crate) ready: bool,
    pub(crate) generation: u64,
    pub(crate) error: Option<String>,
    pub(crate) control_plane_namespace: String,
    pub(crate) agent_namespace: String,
    pub(crate) clusters: Vec<ClusterView>,
    pub(crate) sources: Vec<SourceView>,
    pub(crate) blocked: BlockedView,
    pub(crate) break_glass: BreakGlassView,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterView {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    /// Whether the page reads this cluster's agent reports.
    pub(crate) reporting: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceView {
    pub(crate) index: usize,
    pub(crate) cluster_selector: String,
    pub(crate) label_selector: String,
    /// Registered clusters its cluster selector matches.
    pub(crate) clusters: Vec<String>,
    /// Secrets this source (as the first that matches) admits.
    pub(crate) admits: Vec<AdmittedView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdmittedView {
    pub(crate) cluster: String,
    pub(crate) name: String,
    /// Whether the cluster holds it (opted in); `None` when the page does not read the cluster.
    pub(crate) on_cluster: Option<bool>,
    /// Whether its hub copy (owned by the cluster) exists.
    pub(crate) in_hub: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BlockedView {
    pub(crate) names: Vec<String>,
    pub(crate) types: Vec<String>,
    pub(crate) labels: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BreakGlassView {
    pub(crate) users: Vec<String>,
    pub(crate) groups: Vec<String>,
}

/// The policy part of the page's data.
pub(super) fn policy_view(snap: &Snapshot) -> PolicyView {
    let policy = &snap.policy;
    let reports = &snap.inner.clusters;
    let hub = &snap.inner.secrets.items;
    let sources = policy
        .sources()
        .iter()
        .enumerate()
        .map(|(index, source)| source_view(policy, index, source, hub, reports))
        .collect();
    PolicyView {
        source: snap.policy_source.clone(),
        ready: snap.policy_ready,
        generation: snap.policy_generation,
        error: snap.policy_error.clone(),
        control_plane_namespace: policy.control_plane_namespace().to_owned(),
        agent_namespace: policy.agent_namespace().to_owned(),
        clusters: policy
            .clusters()
            .map(|c| ClusterView {
                name: c.name.clone(),
                labels: c.labels.clone(),
                reporting: reports.contains_key(&c.name),
            })
            .collect(),
        sources,
        blocked: blocked_view(policy),
        break_glass: BreakGlassView {
            users: policy.break_glass().users.iter().cloned().collect(),
            groups: policy.break_glass().groups.iter().cloned().collect(),
        },
    }
}

/// Secret Source number `index`: the registered clusters it selects and the
/// Secrets it admits.
fn source_view(
    policy: &Policy,
    index: usize,
    source: &SecretSource,
    hub: &BTreeMap<String, Secret>,
    reports: &BTreeMap<String, ClusterReport>,
) -> SourceView {
    let clusters: Vec<String> = policy
        .clusters()
        .filter(|c| source.cluster_selector.matches(&c.labels))
        .map(|c| c.name.clone())
        .collect();
    SourceView {
        index,
        cluster_selector: source.cluster_selector.to_string(),
        label_selector: source.label_selector.to_string(),
        clusters,
        admits: admitted(policy, index, hub, reports),
    }
}

/// The Secrets Source `index` is the first to admit: hub copies owned by a cluster
/// (and whether that cluster still holds them), then opted-in Secrets on the
/// clusters the page reads that have no hub copy yet.
fn admitted(
    policy: &Policy,
    index: usize,
    hub: &BTreeMap<String, Secret>,
    reports: &BTreeMap<String, ClusterReport>,
) -> Vec<AdmittedView> {
    // (cluster, name) -> (on the cluster, in the hub)
    let mut seen: BTreeMap<(String, String), (Option<bool>, bool)> = BTreeMap::new();
    for s in hub.values() {
        if let Owner::Cluster(c) = owner(s)
            && policy.matching_source(&c, labels(&s.metadata)) == Some(index)
        {
            let on_cluster = reports.get(&c).filter(|r| r.secrets_synced).map(|r| {
                r.secrets
                    .get(name(&s.metadata))
                    .is_some_and(|l| is_opted_in(&l.metadata) && !is_down_copy(l))
            });
            seen.insert((c, name(&s.metadata).to_owned()), (on_cluster, true));
        }
    }
    for (cluster, report) in reports {
        for local in report.secrets.values() {
            if is_opted_in(&local.metadata)
                && !is_down_copy(local)
                && policy.matching_source(cluster, labels(&local.metadata)) == Some(index)
            {
                seen.entry((cluster.clone(), name(&local.metadata).to_owned()))
                    .or_insert((Some(true), false));
            }
        }
    }
    seen.into_iter()
        .map(|((cluster, name), (on_cluster, in_hub))| AdmittedView {
            cluster,
            name,
            on_cluster,
            in_hub,
        })
        .collect()
}

/// The built-in blocked names, types and labels, then the policy's own.
fn blocked_view(policy: &Policy) -> BlockedView {
    let extra = policy.extra_blocked();
    let mut names: Vec<String> = BUILTIN_BLOCKED_NAMES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    names.extend(extra.names.iter().cloned());
    let mut types: Vec<String> = BUILTIN_BLOCKED_TYPES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    types.extend(extra.types.iter().cloned());
    let mut blocked_labels: Vec<String> = BUILTIN_BLOCKED_LABELS
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    blocked_labels.extend(extra.labels.iter().map(|l| match &l.value {
        Some(v) => format!("{}={v}", l.key),
        None => l.key.clone(),
    }));
    BlockedView {
        names,
        types,
        labels: blocked_labels,
    }
}
