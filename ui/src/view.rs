//! The page's data: every Secret of the control-plane namespace with its owner,
//! its targets and the rule for each cluster it does not go to, its sync state
//! as the agents report it, and the policy. Pure: built from a [`Snapshot`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use secret_relay_policy::keys::{
    ADOPTED_ANNOTATION, ALLOWED_CLUSTER_SELECTOR_ANNOTATION, ALLOWED_CLUSTERS_ANNOTATION,
    OWNER_LABEL, SECRET_SYNC_LABEL, SECRET_TYPE_LABEL, SOURCE_ANNOTATION,
};
use secret_relay_policy::meta::{annotation, is_opted_in, label, labels, name};
use secret_relay_policy::{
    Decision, Owner, Policy, ReleaseAction, Rule, down_sync, down_sync_problems, down_sync_to,
    is_adoptable, is_adopted, owner, reclaim, release, revocation, source_marker, up_sync,
};
use serde::Serialize;

use crate::state::{AgentEvent, ClusterReport, Snapshot};

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

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DecisionView {
    pub(crate) allowed: bool,
    pub(crate) rule: Rule,
    pub(crate) reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) action: Option<ReleaseAction>,
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

/// The sync state of one Secret on one cluster, as the agent reports it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SyncView {
    /// `up` or `down`.
    pub(crate) direction: &'static str,
    /// `synced`, `outdated`, `pending`, `conflict`, `denied`, `releasing`, `unknown`.
    pub(crate) state: &'static str,
    pub(crate) detail: String,
    pub(crate) time: Option<String>,
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
        policy: policy_view(snap),
        namespace: inner.secrets.namespace.clone(),
        secrets_synced: inner.secrets.synced,
        secrets_error: inner.secrets.error.clone(),
        secrets,
        local_only: local_only(policy, &inner.secrets.items, &inner.clusters),
        reporters: inner
            .clusters
            .iter()
            .map(|(name, r)| ReporterView {
                cluster: name.clone(),
                namespace: r.namespace.clone(),
                synced: r.secrets_synced,
                registered: policy.cluster(name).is_some(),
                error: r.error.clone(),
                events_error: r.events_error.clone(),
            })
            .collect(),
        relay: inner.relay.as_ref().map(|r| RelayView {
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
        }),
        argo_types: &ARGO_TYPES,
        secret_types: &SECRET_TYPES,
    }
}

fn policy_view(snap: &Snapshot) -> PolicyView {
    let policy = &snap.policy;
    let reports = &snap.inner.clusters;
    let hub = &snap.inner.secrets.items;
    let sources = policy
        .sources()
        .iter()
        .enumerate()
        .map(|(index, source)| {
            let clusters: Vec<String> = policy
                .clusters()
                .filter(|c| source.cluster_selector.matches(&c.labels))
                .map(|c| c.name.clone())
                .collect();
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
            let admits = seen
                .into_iter()
                .map(|((cluster, name), (on_cluster, in_hub))| AdmittedView {
                    cluster,
                    name,
                    on_cluster,
                    in_hub,
                })
                .collect();
            SourceView {
                index,
                cluster_selector: source.cluster_selector.to_string(),
                label_selector: source.label_selector.to_string(),
                clusters,
                admits,
            }
        })
        .collect();
    let extra = policy.extra_blocked();
    let mut names: Vec<String> = secret_relay_policy::document::BUILTIN_BLOCKED_NAMES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    names.extend(extra.names.iter().cloned());
    let mut types: Vec<String> = secret_relay_policy::document::BUILTIN_BLOCKED_TYPES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    types.extend(extra.types.iter().cloned());
    let mut blocked_labels: Vec<String> = secret_relay_policy::document::BUILTIN_BLOCKED_LABELS
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    blocked_labels.extend(extra.labels.iter().map(|l| match &l.value {
        Some(v) => format!("{}={v}", l.key),
        None => l.key.clone(),
    }));
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
        blocked: BlockedView {
            names,
            types,
            labels: blocked_labels,
        },
        break_glass: BreakGlassView {
            users: policy.break_glass().users.iter().cloned().collect(),
            groups: policy.break_glass().groups.iter().cloned().collect(),
        },
    }
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
    let owner_view = match &own {
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
    };
    let lock = lock_view(policy, s, &own, adopted);
    let hub_version = source_marker(s);
    let clusters = policy
        .clusters()
        .map(|c| {
            let to = down_sync_to(policy, s, &c.name);
            let target = to.decision.allowed;
            let is_owner = own == Owner::Cluster(c.name.clone());
            let sync = reports.get(&c.name).and_then(|r| {
                if is_owner {
                    Some(up_state(r, &secret_name))
                } else if target {
                    Some(down_state(r, &secret_name, hub_version.as_deref()))
                } else {
                    // Not a target: a down copy still there that is leaving or held, or
                    // a denied push of a same-named local Secret, is news.
                    leaving_state(r, &secret_name).or_else(|| {
                        r.events
                            .get(&(secret_name.clone(), "up"))
                            .filter(|e| e.reason == "UpSyncDenied")
                            .map(|e| SyncView {
                                direction: "up",
                                state: "denied",
                                detail: e.note.clone(),
                                time: e.time.map(|t| t.to_string()),
                            })
                    })
                }
            });
            ClusterRow {
                cluster: c.name.clone(),
                target,
                is_owner,
                decision: DecisionView::from(&to.decision),
                sync,
            }
        })
        .collect();
    let editable = own == Owner::ControlPlane && blocked.is_none();
    SecretRow {
        type_: s.type_.clone().unwrap_or_else(|| "Opaque".to_owned()),
        argo_type: label(&s.metadata, SECRET_TYPE_LABEL).map(str::to_owned),
        owner: owner_view,
        adopted,
        adoptable: is_adoptable(&secret_name),
        editable,
        lock,
        blocked,
        down: DecisionView::from(&down.decision),
        targets: down.targets,
        clusters,
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

/// The state of a down copy still on a cluster the hub copy no longer goes to:
/// `leaving` within the agent's grace, `held` beyond its deletion budget (with
/// the way to confirm), from the agent's Events.
fn leaving_state(r: &ClusterReport, name: &str) -> Option<SyncView> {
    let local = r.secrets.get(name)?;
    if !is_down_copy(local) {
        return None;
    }
    let e = r.events.get(&(name.to_owned(), "down"))?;
    let state = match e.reason.as_str() {
        "DownCopyLeaving" => "leaving",
        "DownCopyDeletionHeld" => "held",
        _ => return None,
    };
    Some(SyncView {
        direction: "down",
        state,
        detail: e.note.clone(),
        time: e.time.map(|t| t.to_string()),
    })
}

/// The up-sync state of a hub copy on its owner cluster, from the agent's Events.
fn up_state(r: &ClusterReport, name: &str) -> SyncView {
    if let Some(e) = r.events.get(&(name.to_owned(), "up")) {
        let state = match e.reason.as_str() {
            "UpSynced" => "synced",
            "UpSyncRevoked" => "revoked",
            "UpSyncFailed" => "error",
            _ => "denied",
        };
        return SyncView {
            direction: "up",
            state,
            detail: e.note.clone(),
            time: e.time.map(|t| t.to_string()),
        };
    }
    match r.secrets.get(name) {
        None if r.secrets_synced => SyncView {
            direction: "up",
            state: "releasing",
            detail:
                "the cluster has no Secret of this name any more: its agent releases the hub copy"
                    .to_owned(),
            time: None,
        },
        Some(local) if r.secrets_synced && !is_opted_in(&local.metadata) => SyncView {
            direction: "up",
            state: "releasing",
            detail: format!(
                "the cluster's Secret lost its {SECRET_SYNC_LABEL} label: its agent releases the hub copy"
            ),
            time: None,
        },
        _ => SyncView {
            direction: "up",
            state: "unknown",
            detail: "the agent has recorded no Event for this Secret yet".to_owned(),
            time: None,
        },
    }
}

/// The down-sync state of a hub copy on a target cluster: the version of the hub
/// copy its down copy was written from ([`SOURCE_ANNOTATION`]) against the hub
/// copy's own, or the agent's conflict Event. Metadata only: the page never reads
/// a managed cluster's values, and nothing it compares is a function of them (the
/// agent, which holds the values, reverts a down copy whose data drifted).
fn down_state(r: &ClusterReport, name: &str, hub_version: Option<&str>) -> SyncView {
    let state = |state, detail: String| SyncView {
        direction: "down",
        state,
        detail,
        time: None,
    };
    if !r.secrets_synced {
        return state(
            "unknown",
            r.error
                .clone()
                .unwrap_or_else(|| "reading the cluster's Secrets".to_owned()),
        );
    }
    let ns = &r.namespace;
    match r.secrets.get(name) {
        None => state(
            "pending",
            format!("no down copy in {ns} yet: the agent writes it"),
        ),
        Some(local) if !is_down_copy(local) => {
            let mut v = state(
                "conflict",
                format!(
                    "{ns}/{name} on the cluster was not written by secret-relay, so the agent leaves it (rule {})",
                    Rule::DownSyncConflict
                ),
            );
            if let Some(e) = r.events.get(&(name.to_owned(), "down")) {
                v.detail = e.note.clone();
                v.time = e.time.map(|t| t.to_string());
            }
            v
        }
        Some(local) => {
            let written_from = annotation(&local.metadata, SOURCE_ANNOTATION);
            if hub_version.is_some() && written_from == hub_version {
                state(
                    "synced",
                    format!("{ns}/{name} was written from the current hub copy"),
                )
            } else {
                state(
                    "outdated",
                    format!(
                        "{ns}/{name} was written from an earlier version of the hub copy: the agent updates it"
                    ),
                )
            }
        }
    }
}

fn local_only(
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

/// A Secret the agent wrote (it carries the owner label on a managed cluster).
fn is_down_copy(m: &PartialObjectMeta<Secret>) -> bool {
    label(&m.metadata, OWNER_LABEL).is_some()
}

#[cfg(test)]
mod tests;
