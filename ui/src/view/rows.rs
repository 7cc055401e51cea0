//! The rows of the page's tables: one per Secret of the control-plane namespace
//! (its owner, lock, targets and each cluster's decision and sync state), and one
//! per opted-in Secret on a managed cluster that has no hub copy of its own.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use secret_relay_policy::keys::{
    ADOPTED_ANNOTATION, ALLOWED_CLUSTER_SELECTOR_ANNOTATION, ALLOWED_CLUSTERS_ANNOTATION,
    OWNER_LABEL, SECRET_SYNC_LABEL, SECRET_TYPE_LABEL,
};
use secret_relay_policy::meta::{annotation, is_opted_in, label, name};
use secret_relay_policy::{
    Owner, Policy, Rule, down_sync, down_sync_problems, down_sync_to, is_adoptable, is_adopted,
    owner, reclaim, release, revocation, source_marker, up_sync,
};
use serde::Serialize;

use super::sync::{SyncView, is_down_copy, sync_view};
use super::{DecisionView, EventView};
use crate::state::ClusterReport;

/// One Secret of the control-plane namespace.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretRow {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) type_: String,
    pub(crate) argo_type: Option<String>,
    pub(crate) owner: OwnerView,
    pub(crate) adopted: bool,
    pub(crate) adoptable: bool,
    /// Whether the page offers editing (a control-plane secret that is not blocked).
    pub(crate) editable: bool,
    pub(crate) lock: Option<LockView>,
    pub(crate) blocked: Option<DecisionView>,
    pub(crate) down: DecisionView,
    pub(crate) targets: Vec<String>,
    pub(crate) clusters: Vec<ClusterRow>,
    pub(crate) target_mode: TargetMode,
    pub(crate) problems: Vec<String>,
    pub(crate) keys: Vec<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) resource_version: String,
    pub(crate) created: Option<String>,
    pub(crate) last_change: Option<ChangeView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OwnerView {
    /// `control-plane`, `cluster` or `invalid`.
    pub(crate) kind: &'static str,
    pub(crate) cluster: Option<String>,
    /// The owner label value (`control-plane` when absent).
    pub(crate) label: String,
    /// For a cluster owner: whether it is registered in the policy.
    pub(crate) registered: bool,
    /// Readable: "the control plane", "cluster cluster1".
    pub(crate) text: String,
}

/// The banner of a Secret the page may not edit, and the way out.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LockView {
    pub(crate) title: String,
    pub(crate) detail: String,
    /// How to release it (or, for an orphan, how the control plane takes it back).
    pub(crate) release: DecisionView,
    /// Whether the control plane may take it over now (an orphan).
    pub(crate) can_take_over: bool,
}

/// One registered cluster for one Secret.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterRow {
    pub(crate) cluster: String,
    pub(crate) target: bool,
    pub(crate) is_owner: bool,
    pub(crate) decision: DecisionView,
    /// What the cluster reports, when the page reads it.
    pub(crate) sync: Option<SyncView>,
}

/// The targets as the editor shows them.
#[derive(Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TargetMode {
    /// `none`, `all`, `list`, `selector`, or `both` (a list and a selector).
    pub(crate) mode: String,
    #[serde(default)]
    pub(crate) clusters: Vec<String>,
    #[serde(default)]
    pub(crate) selector: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChangeView {
    pub(crate) time: String,
    pub(crate) manager: String,
    pub(crate) operation: String,
}

/// An opted-in Secret on a managed cluster with no hub copy of its own.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LocalOnlyRow {
    pub(crate) cluster: String,
    pub(crate) name: String,
    /// The page's own judgement from the Secret's metadata (its type is not read).
    pub(crate) decision: DecisionView,
    pub(crate) event: Option<EventView>,
}

/// One Secret's row.
pub(crate) fn secret_row(
    policy: &Policy,
    s: &Secret,
    reports: &BTreeMap<String, ClusterReport>,
) -> SecretRow {
    let secret_name = name(&s.metadata).to_owned();
    let own = owner(s);
    let adopted = is_adopted(s);
    let down = down_sync(policy, s);
    let blocked = policy
        .blocked(s)
        .map(|_| DecisionView::from(&down.decision));
    let editable = own == Owner::ControlPlane && blocked.is_none();
    SecretRow {
        type_: s.type_.clone().unwrap_or_else(|| "Opaque".to_owned()),
        argo_type: label(&s.metadata, SECRET_TYPE_LABEL).map(str::to_owned),
        owner: owner_view(policy, &own),
        adopted,
        adoptable: is_adoptable(&secret_name),
        editable,
        lock: lock_view(policy, s, &own, adopted),
        blocked,
        down: DecisionView::from(&down.decision),
        targets: down.targets,
        clusters: cluster_rows(policy, s, &own, &secret_name, reports),
        target_mode: target_mode(s),
        problems: down_sync_problems(policy, s),
        keys: s
            .data
            .iter()
            .flat_map(|d| d.keys().cloned())
            .chain(s.string_data.iter().flat_map(|d| d.keys().cloned()))
            .collect(),
        labels: s.metadata.labels.clone().unwrap_or_default(),
        annotations: s
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !crate::state::NEVER_KEPT.contains(&k.as_str()))
            .collect(),
        resource_version: s.metadata.resource_version.clone().unwrap_or_default(),
        created: s
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        last_change: last_change(s),
        name: secret_name,
    }
}

fn owner_view(policy: &Policy, own: &Owner) -> OwnerView {
    match own {
        Owner::ControlPlane => OwnerView {
            kind: "control-plane",
            cluster: None,
            label: own.label_value(),
            registered: true,
            text: own.to_string(),
        },
        Owner::Cluster(c) => OwnerView {
            kind: "cluster",
            cluster: Some(c.clone()),
            label: own.label_value(),
            registered: policy.cluster(c).is_some(),
            text: own.to_string(),
        },
        Owner::Invalid(v) => OwnerView {
            kind: "invalid",
            cluster: None,
            label: v.clone(),
            registered: false,
            text: own.to_string(),
        },
    }
}

/// Every registered cluster for hub copy `s`: whether it is a target, its owner,
/// the down-sync decision, and what the cluster reports when the page reads it.
fn cluster_rows(
    policy: &Policy,
    s: &Secret,
    own: &Owner,
    secret_name: &str,
    reports: &BTreeMap<String, ClusterReport>,
) -> Vec<ClusterRow> {
    let hub_version = source_marker(s);
    policy
        .clusters()
        .map(|c| {
            let to = down_sync_to(policy, s, &c.name);
            let target = to.decision.allowed;
            let is_owner = *own == Owner::Cluster(c.name.clone());
            let sync = reports
                .get(&c.name)
                .and_then(|r| sync_view(r, secret_name, is_owner, target, hub_version.as_deref()));
            ClusterRow {
                cluster: c.name.clone(),
                target,
                is_owner,
                decision: DecisionView::from(&to.decision),
                sync,
            }
        })
        .collect()
}

fn lock_view(policy: &Policy, s: &Secret, own: &Owner, adopted: bool) -> Option<LockView> {
    let cp = policy.control_plane_namespace();
    let agent_ns = policy.agent_namespace();
    let secret_name = name(&s.metadata);
    match own {
        Owner::ControlPlane => None,
        Owner::Cluster(c)
            if policy.cluster(c).is_some()
                && let Some(r) = revocation(policy, s) =>
        {
            let mut view = DecisionView::from(&r.decision);
            view.action = r.action;
            Some(LockView {
                title: format!("Revoked: the policy no longer admits it from cluster {c}"),
                detail: format!(
                    "{} You may delete {cp}/{secret_name} now; to keep it, change the Secret Sources (or the cluster's labels) so that they admit it again.",
                    r.decision.reason
                ),
                release: view,
                can_take_over: false,
            })
        }
        Owner::Cluster(c) if policy.cluster(c).is_some() => {
            let r = release(policy, c, s);
            let mut view = DecisionView::from(&r.decision);
            view.action = r.action;
            let (title, after) = if adopted {
                (
                    format!("Adopted by cluster {c}"),
                    "it returns to the control plane with its data kept",
                )
            } else {
                (
                    format!("Owned by cluster {c}"),
                    "its hub copy is then deleted",
                )
            };
            Some(LockView {
                title,
                detail: format!(
                    "Only cluster {c} can change {cp}/{secret_name}, through the relay; the admission webhook refuses edits from here (rule {}). To release it, delete the Secret {agent_ns}/{secret_name} on cluster {c} or remove its {SECRET_SYNC_LABEL} label there: {after}.",
                    Rule::OwnershipLock
                ),
                release: view,
                can_take_over: false,
            })
        }
        Owner::Cluster(_) | Owner::Invalid(_) => {
            let r = reclaim(policy, s);
            let mut view = DecisionView::from(&r.decision);
            view.action = r.action;
            let title = match own {
                Owner::Cluster(c) => format!("Owned by cluster {c}, which is not registered"),
                _ => format!(
                    "Owner label {OWNER_LABEL}: {} names no cluster",
                    own.label_value()
                ),
            };
            Some(LockView {
                title,
                detail: format!(
                    "This copy is orphaned: nobody may change it as it is. The control plane may delete it, or take it over (removing the {OWNER_LABEL} label and the {ADOPTED_ANNOTATION} annotation) and then edit it."
                ),
                can_take_over: r.decision.allowed,
                release: view,
            })
        }
    }
}

pub(super) fn local_only(
    policy: &Policy,
    hub: &BTreeMap<String, Secret>,
    reports: &BTreeMap<String, ClusterReport>,
) -> Vec<LocalOnlyRow> {
    let mut rows = Vec::new();
    for (cluster, r) in reports {
        for local in r.secrets.values() {
            let local_name = name(&local.metadata);
            let hub_copy = hub.get(local_name);
            if !is_opted_in(&local.metadata)
                || is_down_copy(local)
                || hub_copy.is_some_and(|h| owner(h) == Owner::Cluster(cluster.clone()))
            {
                continue;
            }
            let mut as_secret = Secret {
                metadata: local.metadata.clone(),
                ..Secret::default()
            };
            as_secret.metadata.namespace = Some(policy.agent_namespace().to_owned());
            let decision = up_sync(policy, cluster, &as_secret, hub_copy);
            rows.push(LocalOnlyRow {
                cluster: cluster.clone(),
                name: local_name.to_owned(),
                decision: DecisionView::from(&decision),
                event: r
                    .events
                    .get(&(local_name.to_owned(), "up"))
                    .map(EventView::from),
            });
        }
    }
    rows
}

/// The targets of `s` as the editor shows them.
pub(crate) fn target_mode(s: &Secret) -> TargetMode {
    let list = annotation(&s.metadata, ALLOWED_CLUSTERS_ANNOTATION).map(str::trim);
    let selector = annotation(&s.metadata, ALLOWED_CLUSTER_SELECTOR_ANNOTATION)
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let names: Vec<String> = list
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    let mode = match (names.as_slice(), selector) {
        ([], None) => "none",
        ([all], None) if all == "ALL" => "all",
        (_, None) => "list",
        ([], Some(_)) => "selector",
        (_, Some(_)) => "both",
    };
    TargetMode {
        mode: mode.to_owned(),
        clusters: names,
        selector: selector.unwrap_or("").to_owned(),
    }
}

fn last_change(s: &Secret) -> Option<ChangeView> {
    s.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| Some((f.time.as_ref()?.0, f)))
        .max_by_key(|(t, _)| *t)
        .map(|(t, f)| ChangeView {
            time: t.to_string(),
            manager: f.manager.clone().unwrap_or_default(),
            operation: f.operation.clone().unwrap_or_default(),
        })
        .or_else(|| {
            s.metadata.creation_timestamp.as_ref().map(|t| ChangeView {
                time: t.0.to_string(),
                manager: String::new(),
                operation: "Create".to_owned(),
            })
        })
}
