//! The policy on the page: the clusters and Secret Sources edited, checked by the
//! same parser as the ConfigMap (with the same messages), planned over the live hub
//! copies before saving, and saved as the user under the resourceVersion read.
//!
//! Only `clusters` and `secretSources` change; every other field of the live
//! document (namespaces, `extraBlocked`, `breakGlass`, `stripMetadata`) is kept as
//! it is. Saving rewrites the document as YAML: its comments are not kept.

use std::collections::BTreeMap;

use secret_relay_policy::{Plan, PlanSettings, Policy, PolicyError, Secret, plan};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

/// The clusters and Secret Sources as the page edits them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PolicyChange {
    /// The clusters, in order.
    #[serde(default)]
    pub(crate) clusters: Vec<ClusterEdit>,
    /// The Secret Sources, in order (the first that matches admits).
    #[serde(default)]
    pub(crate) sources: Vec<SourceEdit>,
    /// The resourceVersion of the ConfigMap the page read: a save under another
    /// one is a conflict, never an overwrite.
    #[serde(default)]
    pub(crate) resource_version: Option<String>,
}

/// One cluster: its name and labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterEdit {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
}

/// One Secret Source: its two selectors in Kubernetes' string syntax.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SourceEdit {
    #[serde(default)]
    pub(crate) cluster_selector: String,
    #[serde(default)]
    pub(crate) label_selector: String,
}

/// What the page gets back for a change: the problems the parser finds (each
/// with its field path, as for the ConfigMap), or the plan and the document that
/// would be saved.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Checked {
    pub(crate) problems: Vec<ProblemView>,
    pub(crate) plan: Option<Plan>,
    pub(crate) document: Option<String>,
}

/// One problem of a document, with its path.
#[derive(Debug, Serialize)]
pub(crate) struct ProblemView {
    pub(crate) path: String,
    pub(crate) message: String,
}

/// The live document with `change`'s clusters and Secret Sources.
pub(crate) fn document(live: &str, change: &PolicyChange) -> Result<String, String> {
    let mut doc = match serde_yaml::from_str::<Value>(live) {
        Ok(Value::Mapping(m)) => m,
        Ok(Value::Null) => Mapping::new(),
        Ok(_) | Err(_) => {
            return Err(
                "the live policy document is not a YAML mapping: fix the ConfigMap first"
                    .to_owned(),
            );
        }
    };
    let clusters: Vec<Value> = change
        .clusters
        .iter()
        .map(|c| {
            let mut m = Mapping::new();
            m.insert("name".into(), c.name.trim().into());
            if !c.labels.is_empty() {
                let labels: Mapping = c
                    .labels
                    .iter()
                    .map(|(k, v)| (Value::from(k.trim()), Value::from(v.trim())))
                    .collect();
                m.insert("labels".into(), Value::Mapping(labels));
            }
            Value::Mapping(m)
        })
        .collect();
    let sources: Vec<Value> = change
        .sources
        .iter()
        .map(|s| {
            let mut m = Mapping::new();
            for (key, value) in [
                ("clusterSelector", &s.cluster_selector),
                ("labelSelector", &s.label_selector),
            ] {
                if !value.trim().is_empty() {
                    m.insert(key.into(), value.trim().into());
                }
            }
            Value::Mapping(m)
        })
        .collect();
    doc.insert("clusters".into(), Value::Sequence(clusters));
    doc.insert("secretSources".into(), Value::Sequence(sources));
    serde_yaml::to_string(&Value::Mapping(doc)).map_err(|e| format!("{e}"))
}

/// Checks `change` over the live document `live` and plans it over the hub copies
/// `hub` from the live policy `old`.
pub(crate) fn check(old: &Policy, live: &str, change: &PolicyChange, hub: &[Secret]) -> Checked {
    let text = match document(live, change) {
        Ok(t) => t,
        Err(message) => {
            return Checked {
                problems: vec![ProblemView {
                    path: String::new(),
                    message,
                }],
                plan: None,
                document: None,
            };
        }
    };
    match Policy::from_yaml(&text) {
        Ok(new) => Checked {
            problems: Vec::new(),
            plan: Some(plan(old, &new, hub, PlanSettings::default())),
            document: Some(text),
        },
        Err(PolicyError { problems }) => Checked {
            problems: problems
                .into_iter()
                .map(|p| ProblemView {
                    path: p.path,
                    message: p.message,
                })
                .collect(),
            plan: None,
            document: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "\
# the operators' policy
controlPlaneNamespace: argocd
clusters:
  - name: cluster1
    labels: { env: prod }
secretSources:
  - clusterSelector: env=prod
    labelSelector: team=a
extraBlocked: { names: [vault-token] }
breakGlass: { users: [oncall] }
";

    fn change(clusters: &[(&str, &[(&str, &str)])], sources: &[(&str, &str)]) -> PolicyChange {
        PolicyChange {
            clusters: clusters
                .iter()
                .map(|(n, l)| ClusterEdit {
                    name: (*n).to_owned(),
                    labels: l
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                })
                .collect(),
            sources: sources
                .iter()
                .map(|(c, l)| SourceEdit {
                    cluster_selector: (*c).to_owned(),
                    label_selector: (*l).to_owned(),
                })
                .collect(),
            resource_version: None,
        }
    }

    #[test]
    fn only_clusters_and_sources_change_and_the_rest_is_kept() {
        let c = change(
            &[
                ("cluster1", &[("env", "prod")]),
                ("cluster2", &[("env", "dev")]),
            ],
            &[("env=dev", "team=b"), ("", "team=a")],
        );
        let text = document(LIVE, &c).unwrap();
        let p = Policy::from_yaml(&text).unwrap();
        assert_eq!(p.clusters().count(), 2);
        assert_eq!(p.sources().len(), 2);
        assert!(p.extra_blocked().names.contains("vault-token"));
        assert!(p.break_glass().users.contains("oncall"));
        // Reordered sources keep their order.
        assert_eq!(p.sources()[0].label_selector.to_string(), "team=b");
    }

    #[test]
    fn problems_come_with_the_configmaps_paths_and_words() {
        let old = Policy::from_yaml(LIVE).unwrap();
        let c = change(
            &[("cluster1", &[]), ("cluster1", &[])],
            &[("env in (", "team=a"), ("", "")],
        );
        let checked = check(&old, LIVE, &c, &[]);
        let paths: Vec<&str> = checked.problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"clusters[1].name"), "{paths:?}");
        assert!(
            paths.contains(&"secretSources[0].clusterSelector"),
            "{paths:?}"
        );
        assert!(paths.contains(&"secretSources[1]"), "{paths:?}");
        assert!(checked.plan.is_none());
        // The words are the parser's own, as the ConfigMap gets them.
        let direct = Policy::from_yaml(&document(LIVE, &c).unwrap()).unwrap_err();
        assert_eq!(checked.problems.len(), direct.problems.len());
        assert_eq!(checked.problems[0].message, direct.problems[0].message);
    }

    #[test]
    fn a_valid_change_is_planned_over_the_hub_copies() {
        let old = Policy::from_yaml(LIVE).unwrap();
        let mut hub: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "repo", "namespace": "argocd",
                "labels": {"secret-relay.io/owner": "cluster.cluster1", "team": "a"}},
        }))
        .unwrap();
        hub.data = None;
        // team=a no longer admitted from cluster1.
        let c = change(
            &[("cluster1", &[("env", "prod")])],
            &[("env=prod", "team=b")],
        );
        let checked = check(&old, LIVE, &c, &[hub]);
        assert!(checked.problems.is_empty());
        let plan = checked.plan.unwrap();
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(plan.rows[0].secret, "repo");
        assert_eq!(plan.rows[0].rule, secret_relay_policy::Rule::Revoked);
    }
}
