//! The "why" box: `secret-relay explain` for every direction and every
//! registered cluster at once, on a pasted manifest or a hub copy the page has.
//!
//! The answers come from the same policy functions as `explain`: up is
//! `up_sync` of the cluster's Secret against the live hub copy, down is
//! `down_sync_to`, release is `release`, and the control plane's way out is
//! `reclaim`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use secret_relay_policy::keys::{OWNER_LABEL, SECRET_SYNC_LABEL};
use secret_relay_policy::{Policy, down_sync, down_sync_to, reclaim, release, up_sync};
use serde::{Deserialize, Serialize};

use crate::view::DecisionView;

/// A pasted manifest (YAML or JSON), or the name of a hub copy.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ExplainRequest {
    #[serde(default)]
    pub(crate) manifest: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
}

/// The answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Explained {
    pub(crate) name: String,
    /// `pasted` or `hub`.
    pub(crate) judged: &'static str,
    pub(crate) hub_exists: bool,
    pub(crate) notes: Vec<String>,
    /// Down-sync as a whole, with its targets.
    pub(crate) down: DecisionView,
    pub(crate) targets: Vec<String>,
    /// Whether the control plane may delete or take over the copy.
    pub(crate) reclaim: DecisionView,
    pub(crate) clusters: Vec<ClusterAnswers>,
}

/// The three answers for one cluster.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterAnswers {
    pub(crate) cluster: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) up: DecisionView,
    pub(crate) up_from: String,
    pub(crate) down: DecisionView,
    pub(crate) release: DecisionView,
}

/// Reads a pasted Secret manifest. A decoding error that concerns the values
/// is reported without repeating them.
pub(crate) fn parse_manifest(text: &str) -> Result<Secret, String> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("failed to parse the manifest: {e}"))?;
    let secret: Secret = match serde_yaml::from_value(value.clone()) {
        Ok(s) => s,
        Err(e) => {
            let mut without_data = value;
            if let Some(m) = without_data.as_mapping_mut() {
                m.remove("data");
                m.remove("stringData");
            }
            if serde_yaml::from_value::<Secret>(without_data).is_ok() {
                return Err("failed to parse the manifest: data values must be base64 strings and stringData values strings".to_owned());
            }
            return Err(format!("failed to parse the manifest as a Secret: {e}"));
        }
    };
    if secret.metadata.name.as_deref().is_none_or(str::is_empty) {
        return Err("the manifest has no metadata.name".to_owned());
    }
    Ok(crate::state::strip(secret))
}

/// Every answer for `secret`. `pasted` tells whether it is a pasted manifest
/// (judged as both the cluster's Secret and the hub copy it would become) or a
/// hub copy (the cluster's side then comes from `locals`, the clusters' Secrets
/// the page reads, or stands in as the hub copy's labels with the opt-in label).
pub(crate) fn explain(
    policy: &Policy,
    secret: &Secret,
    pasted: bool,
    hub: Option<&Secret>,
    locals: &BTreeMap<String, Option<PartialObjectMeta<Secret>>>,
) -> Explained {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let cp = policy.control_plane_namespace().to_owned();
    let agent_ns = policy.agent_namespace().to_owned();
    let mut notes = Vec::new();
    let mut judged_hub = secret.clone();
    if pasted
        && let Some(ns) = secret.metadata.namespace.as_deref()
        && !ns.is_empty()
        && ns != cp
        && ns != agent_ns
    {
        notes.push(format!(
            "the manifest's namespace {ns} is not used: up judges it as a cluster's Secret in {agent_ns}, down and release as a hub copy in {cp}"
        ));
    }
    judged_hub.metadata.namespace = Some(cp.clone());
    if pasted {
        notes.push(match hub {
            Some(_) => format!(
                "up judges the manifest as each cluster's Secret against the live hub copy {cp}/{name}; down and release judge the manifest as the hub copy"
            ),
            None => format!(
                "there is no hub copy {cp}/{name}: up judges the manifest as each cluster's Secret; down and release judge it as the hub copy it would become"
            ),
        });
    }
    let down_all = down_sync(policy, &judged_hub);
    let r = reclaim(policy, &judged_hub);
    let mut reclaim_view = DecisionView::from(&r.decision);
    reclaim_view.action = r.action;
    let clusters = policy
        .clusters()
        .map(|c| {
            let (cluster_secret, up_from) = if pasted {
                let mut s = secret.clone();
                s.metadata.namespace = Some(agent_ns.clone());
                (s, "the pasted manifest".to_owned())
            } else {
                match locals.get(&c.name) {
                    Some(Some(local)) => {
                        let mut s = Secret {
                            metadata: local.metadata.clone(),
                            ..Secret::default()
                        };
                        s.metadata.namespace = Some(agent_ns.clone());
                        (
                            s,
                            format!(
                                "cluster {}'s Secret {agent_ns}/{name} (its labels; its type is not read)",
                                c.name
                            ),
                        )
                    }
                    Some(None) => (
                        stand_in(secret, &agent_ns),
                        format!(
                            "cluster {} has no Secret {agent_ns}/{name}: as if it had one with the hub copy's labels and the opt-in label",
                            c.name
                        ),
                    ),
                    None => (
                        stand_in(secret, &agent_ns),
                        "as if the cluster had a Secret with the hub copy's labels and the opt-in label".to_owned(),
                    ),
                }
            };
            let up = up_sync(policy, &c.name, &cluster_secret, hub);
            let down = down_sync_to(policy, &judged_hub, &c.name);
            let rel = release(policy, &c.name, &judged_hub);
            let mut release_view = DecisionView::from(&rel.decision);
            release_view.action = rel.action.filter(|_| rel.decision.allowed);
            ClusterAnswers {
                cluster: c.name.clone(),
                labels: c.labels.clone(),
                up: DecisionView::from(&up),
                up_from,
                down: DecisionView::from(&down.decision),
                release: release_view,
            }
        })
        .collect();
    Explained {
        name,
        judged: if pasted { "pasted" } else { "hub" },
        hub_exists: hub.is_some(),
        notes,
        down: DecisionView::from(&down_all.decision),
        targets: down_all.targets,
        reclaim: reclaim_view,
        clusters,
    }
}

/// A cluster's Secret like hub copy `hub`: its labels without the owner label,
/// plus the opt-in label, in the agent namespace.
fn stand_in(hub: &Secret, agent_ns: &str) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = hub.metadata.name.clone();
    s.metadata.namespace = Some(agent_ns.to_owned());
    s.type_ = hub.type_.clone();
    let mut labels = hub.metadata.labels.clone().unwrap_or_default();
    labels.remove(OWNER_LABEL);
    labels.insert(SECRET_SYNC_LABEL.to_owned(), "true".to_owned());
    s.metadata.labels = Some(labels);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "clusters:\n  - {name: cluster1, labels: {env: prod}}\n  - {name: cluster2, labels: {env: staging}}\nsecretSources:\n  - {clusterSelector: env=prod, labelSelector: team=a}\n";

    #[test]
    fn a_pasted_manifest_gets_an_answer_per_cluster_and_direction() {
        let policy = Policy::from_yaml(POLICY).unwrap();
        let s = parse_manifest(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  labels: {team: a, akuity.io/secret-sync: \"true\"}\n  annotations: {akuity.io/managed-secret-allowed-clusters: cluster2}\ndata: {password: cHc=}\n",
        )
        .unwrap();
        let e = explain(&policy, &s, true, None, &BTreeMap::new());
        assert_eq!(e.targets, vec!["cluster2"]);
        let c1 = &e.clusters[0];
        assert_eq!(c1.up.rule.as_str(), "up-sync-new");
        assert_eq!(c1.down.rule.as_str(), "down-sync-not-target");
        let c2 = &e.clusters[1];
        assert_eq!(c2.up.rule.as_str(), "no-matching-source");
        assert_eq!(c2.down.rule.as_str(), "down-sync");
        assert_eq!(e.reclaim.rule.as_str(), "control-plane-write");
        // The value never comes back.
        assert!(!serde_json::to_string(&e).unwrap().contains("cHc="));
    }

    #[test]
    fn a_bad_data_value_is_reported_without_repeating_it() {
        let err =
            parse_manifest("metadata: {name: x}\ndata: {k: [not-a-string-value]}\n").unwrap_err();
        assert!(err.contains("base64"), "{err}");
        assert!(!err.contains("not-a-string-value"), "{err}");
        assert!(parse_manifest("metadata: {}\n").is_err());
    }
}
