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
use secret_relay_policy::keys::{
    ALLOWED_CLUSTER_SELECTOR_ANNOTATION, ALLOWED_CLUSTERS_ANNOTATION, OWNER_LABEL,
    SECRET_SYNC_LABEL,
};
use secret_relay_policy::meta;
use secret_relay_policy::{
    Cluster, Decision, Owner, Policy, Rule, down_sync, down_sync_to, owner, reclaim, release,
    up_sync,
};
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
    /// The answer to the question that matters for this cluster, in one
    /// sentence: up when the cluster owns the copy, down otherwise.
    pub(crate) sentence: String,
    /// Who can change the answer, and where.
    pub(crate) fix: String,
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
    let notes = if pasted {
        pasted_notes(secret, hub, &name, &cp, &agent_ns)
    } else {
        Vec::new()
    };
    let mut judged_hub = secret.clone();
    judged_hub.metadata.namespace = Some(cp);
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
                cluster_side(secret, locals.get(&c.name), &c.name, &agent_ns, &name)
            };
            cluster_answers(policy, c, &cluster_secret, up_from, hub, &judged_hub)
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

/// What a pasted manifest is judged as: a namespace of its own is not used, and up
/// compares it with the live hub copy when there is one.
fn pasted_notes(
    secret: &Secret,
    hub: Option<&Secret>,
    name: &str,
    cp: &str,
    agent_ns: &str,
) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(ns) = secret.metadata.namespace.as_deref()
        && !ns.is_empty()
        && ns != cp
        && ns != agent_ns
    {
        notes.push(format!(
            "the manifest's namespace {ns} is not used: up judges it as a cluster's Secret in {agent_ns}, down and release as a hub copy in {cp}"
        ));
    }
    notes.push(match hub {
        Some(_) => format!(
            "up judges the manifest as each cluster's Secret against the live hub copy {cp}/{name}; down and release judge the manifest as the hub copy"
        ),
        None => format!(
            "there is no hub copy {cp}/{name}: up judges the manifest as each cluster's Secret; down and release judge it as the hub copy it would become"
        ),
    });
    notes
}

/// For hub copy `hub`: the Secret of cluster `cluster` that up-sync judges, and
/// where it comes from. `local` is what the page reads there: `Some(None)` when the
/// cluster has no such Secret, `None` when the page does not read the cluster.
fn cluster_side(
    hub: &Secret,
    local: Option<&Option<PartialObjectMeta<Secret>>>,
    cluster: &str,
    agent_ns: &str,
    name: &str,
) -> (Secret, String) {
    match local {
        Some(Some(local)) => {
            let mut s = Secret {
                metadata: local.metadata.clone(),
                ..Secret::default()
            };
            s.metadata.namespace = Some(agent_ns.to_owned());
            (
                s,
                format!(
                    "cluster {cluster}'s Secret {agent_ns}/{name} (its labels; its type is not read)"
                ),
            )
        }
        Some(None) => (
            stand_in(hub, agent_ns),
            format!(
                "cluster {cluster} has no Secret {agent_ns}/{name}: as if it had one with the hub copy's labels and the opt-in label"
            ),
        ),
        None => (
            stand_in(hub, agent_ns),
            "as if the cluster had a Secret with the hub copy's labels and the opt-in label"
                .to_owned(),
        ),
    }
}

/// The three answers for cluster `c`: up of `cluster_secret` against the live hub
/// copy `hub`, down and release of `judged_hub`, and the sentence that matters.
fn cluster_answers(
    policy: &Policy,
    c: &Cluster,
    cluster_secret: &Secret,
    up_from: String,
    hub: Option<&Secret>,
    judged_hub: &Secret,
) -> ClusterAnswers {
    let up = up_sync(policy, &c.name, cluster_secret, hub);
    let down = down_sync_to(policy, judged_hub, &c.name);
    let rel = release(policy, &c.name, judged_hub);
    let mut release_view = DecisionView::from(&rel.decision);
    release_view.action = rel.action.filter(|_| rel.decision.allowed);
    let (sentence, fix) = one_sentence(policy, judged_hub, c, &up, &down.decision);
    ClusterAnswers {
        cluster: c.name.clone(),
        labels: c.labels.clone(),
        up: DecisionView::from(&up),
        up_from,
        down: DecisionView::from(&down.decision),
        release: release_view,
        sentence,
        fix,
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "no labels".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The one sentence for cluster `c` and the hub copy `hub`, and who can change
/// it where: the up answer when `c` owns the copy, the down answer otherwise.
/// It names the selector, the list or the labels that decided.
fn one_sentence(
    policy: &Policy,
    hub: &Secret,
    c: &Cluster,
    up: &Decision,
    down: &Decision,
) -> (String, String) {
    let name = meta::name(&hub.metadata);
    let owner = owner(hub);
    if owner == Owner::Cluster(c.name.clone()) {
        return up_sentence(policy, name, c, up);
    }
    let agent = policy.agent_namespace();
    let cp = policy.control_plane_namespace();
    let where_targets = match &owner {
        Owner::Cluster(o) => format!(
            "on cluster {o}: the annotations of its Secret {agent}/{name} say where it goes"
        ),
        _ => format!(
            "on the control plane: whoever may edit {cp}/{name} changes its targets (Edit on its page)"
        ),
    };
    if down.allowed {
        let cl = &c.name;
        let why = why_it_goes(hub, c, down);
        return (format!("{name} goes to {cl}: {why}."), where_targets);
    }
    down_sentence(hub, name, c, down, where_targets)
}

/// [`one_sentence`] on the cluster that owns the copy: the up answer.
fn up_sentence(policy: &Policy, name: &str, c: &Cluster, up: &Decision) -> (String, String) {
    let agent = policy.agent_namespace();
    let cl = &c.name;
    let (fix, s) = match up.rule {
        _ if up.allowed => (
            format!(
                "on cluster {cl}: delete the Secret or remove its {SECRET_SYNC_LABEL} label to release it"
            ),
            format!(
                "{name} syncs up from {cl} to the control plane ({}).",
                up.rule
            ),
        ),
        Rule::NoMatchingSource => (
            format!(
                "the control-plane admin adds or widens a Secret Source (Policy page), or someone on cluster {cl} labels the Secret to match one"
            ),
            format!(
                "{name} is not admitted from {cl}: no Secret Source's cluster selector and label selector match {cl} ({}) and the Secret's labels.",
                labels_text(&c.labels)
            ),
        ),
        Rule::NotOptedIn => (
            format!("on cluster {cl}: add the label {SECRET_SYNC_LABEL}=true to {agent}/{name}"),
            format!("{name} does not sync up from {cl}: its Secret lacks the opt-in label."),
        ),
        Rule::BlockedName | Rule::BlockedType | Rule::BlockedLabel => (
            "nobody: blocked secrets never sync; use another name, type or labels".to_owned(),
            format!("{name} never syncs: it is blocked ({}).", up.rule),
        ),
        _ => (
            "see the reason below".to_owned(),
            format!(
                "{name} does not sync up from {cl} ({}): {}",
                up.rule, up.reason
            ),
        ),
    };
    (s, fix)
}

/// Why hub copy `hub` goes to cluster `c`: ALL, the list that names it, or the
/// selector its labels match.
fn why_it_goes(hub: &Secret, c: &Cluster, down: &Decision) -> String {
    let cl = &c.name;
    match (
        meta::annotation(&hub.metadata, ALLOWED_CLUSTERS_ANNOTATION),
        meta::annotation(&hub.metadata, ALLOWED_CLUSTER_SELECTOR_ANNOTATION),
    ) {
        (Some(list), _) if list.split(',').any(|n| n.trim() == "ALL") => {
            "it goes to every cluster (ALL)".to_owned()
        }
        (Some(list), _) if list.split(',').any(|n| n.trim() == cl) => {
            format!("{cl} is named in its allowed clusters ({list})")
        }
        (_, Some(sel)) => format!(
            "{cl}'s labels ({}) match its selector {sel}",
            labels_text(&c.labels)
        ),
        _ => down.reason.clone(),
    }
}

/// [`one_sentence`] when hub copy `hub` does not go to cluster `c`.
fn down_sentence(
    hub: &Secret,
    name: &str,
    c: &Cluster,
    down: &Decision,
    where_targets: String,
) -> (String, String) {
    let cl = &c.name;
    match down.rule {
        Rule::DownSyncNotTarget | Rule::NoTargets | Rule::InvalidSelector => {
            let list = meta::annotation(&hub.metadata, ALLOWED_CLUSTERS_ANNOTATION)
                .map_or("none".to_owned(), |l| l.to_owned());
            let sel = meta::annotation(&hub.metadata, ALLOWED_CLUSTER_SELECTOR_ANNOTATION)
                .map_or("none".to_owned(), |l| l.to_owned());
            (
                format!(
                    "{name} does not go to {cl}: {cl} is not in its allowed clusters ({list}) and its labels ({}) do not match its selector ({sel}).",
                    labels_text(&c.labels)
                ),
                where_targets,
            )
        }
        Rule::OrphanedCopy => (
            format!("{name} goes nowhere: its owner is not a registered cluster any more."),
            "the control-plane admin registers that cluster again, or takes the copy over (Take over on its page)".to_owned(),
        ),
        Rule::BlockedName | Rule::BlockedType | Rule::BlockedLabel => (
            format!("{name} never goes to a cluster: it is blocked ({}).", down.rule),
            "nobody: blocked secrets never sync".to_owned(),
        ),
        Rule::UnknownCluster => (
            format!("{cl} is not a registered cluster."),
            "the control-plane admin registers it in the policy (Policy page)".to_owned(),
        ),
        _ => (
            format!("{name} does not go to {cl} ({}): {}", down.rule, down.reason),
            where_targets,
        ),
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
    fn one_sentence_answers_the_question_of_each_cluster_and_says_who_fixes_it() {
        let policy = Policy::from_yaml(POLICY).unwrap();
        let managed = parse_manifest(
            "metadata:\n  name: db\n  annotations: {akuity.io/managed-secret-allowed-cluster-selector: env=prod}\n",
        )
        .unwrap();
        let e = explain(&policy, &managed, true, None, &BTreeMap::new());
        // cluster1 is prod: it gets it, because of the selector.
        assert_eq!(
            e.clusters[0].sentence,
            "db goes to cluster1: cluster1's labels (env=prod) match its selector env=prod."
        );
        // cluster2 is not: the sentence names the list, the selector and the labels.
        assert_eq!(
            e.clusters[1].sentence,
            "db does not go to cluster2: cluster2 is not in its allowed clusters (none) and its labels (env=staging) do not match its selector (env=prod)."
        );
        assert!(
            e.clusters[1].fix.starts_with("on the control plane"),
            "{}",
            e.clusters[1].fix
        );
        // A cluster's own copy: the question is up, fixed in the policy or on the cluster.
        let own = parse_manifest(
            "metadata:\n  name: db\n  labels: {secret-relay.io/owner: cluster.cluster1, team: b, akuity.io/secret-sync: \"true\"}\n",
        )
        .unwrap();
        let e = explain(&policy, &own, true, None, &BTreeMap::new());
        assert!(
            e.clusters[0]
                .sentence
                .starts_with("db is not admitted from cluster1"),
            "{}",
            e.clusters[0].sentence
        );
        assert!(
            e.clusters[0].fix.contains("Secret Source"),
            "{}",
            e.clusters[0].fix
        );
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
