//! The sync state of one hub copy on one cluster, as the page reads it from the
//! cluster's Secrets (metadata only) and its agent's Events.

use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use secret_relay_policy::Rule;
use secret_relay_policy::keys::{OWNER_LABEL, SECRET_SYNC_LABEL, SOURCE_ANNOTATION};
use secret_relay_policy::meta::{annotation, is_opted_in, label};
use serde::Serialize;

use crate::state::ClusterReport;

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

/// What cluster `r` reports for hub copy `name`: up-sync on its owner, down-sync on
/// a target, and on any other cluster only news (see [`not_a_target`]).
pub(super) fn sync_view(
    r: &ClusterReport,
    name: &str,
    is_owner: bool,
    target: bool,
    hub_version: Option<&str>,
) -> Option<SyncView> {
    if is_owner {
        Some(up_state(r, name))
    } else if target {
        Some(down_state(r, name, hub_version))
    } else {
        not_a_target(r, name)
    }
}

/// Not a target: a down copy still there that is leaving or held, or a denied push
/// of a same-named local Secret, is news.
fn not_a_target(r: &ClusterReport, name: &str) -> Option<SyncView> {
    leaving_state(r, name).or_else(|| {
        r.events
            .get(&(name.to_owned(), "up"))
            .filter(|e| e.reason == "UpSyncDenied")
            .map(|e| SyncView {
                direction: "up",
                state: "denied",
                detail: e.note.clone(),
                time: e.time.map(|t| t.to_string()),
            })
    })
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

/// A Secret the agent wrote (it carries the owner label on a managed cluster).
pub(super) fn is_down_copy(m: &PartialObjectMeta<Secret>) -> bool {
    label(&m.metadata, OWNER_LABEL).is_some()
}
