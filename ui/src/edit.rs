//! Managed secrets as the editor sends them: the Secret to create, the merge
//! patch of an edit, the refusal of a blocked Secret before anything is sent,
//! and the live preview of where a Secret would go.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use secret_relay_policy::keys::{
    ADOPTED_ANNOTATION, ALLOWED_CLUSTER_SELECTOR_ANNOTATION, ALLOWED_CLUSTERS_ANNOTATION,
    OWNER_LABEL, SECRET_TYPE_LABEL,
};
use secret_relay_policy::{Policy, Selector, down_sync, down_sync_problems, down_sync_to};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::view::{DecisionView, TargetMode};

/// A new managed secret.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateRequest {
    pub(crate) name: String,
    #[serde(rename = "type", default)]
    pub(crate) type_: Option<String>,
    #[serde(default)]
    pub(crate) argo_type: Option<String>,
    pub(crate) target: TargetMode,
    #[serde(default)]
    pub(crate) data: BTreeMap<String, String>,
}

/// An edit of a managed secret: its Argo CD type, its targets, keys to set and
/// keys to remove (the others are left as they are).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct EditRequest {
    #[serde(default)]
    pub(crate) argo_type: Option<String>,
    pub(crate) target: TargetMode,
    #[serde(default)]
    pub(crate) set: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) remove: Vec<String>,
}

/// What the editor shows while the user types.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PreviewRequest {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(rename = "type", default)]
    pub(crate) type_: Option<String>,
    #[serde(default)]
    pub(crate) argo_type: Option<String>,
    pub(crate) target: TargetMode,
    /// The Secret being edited, if any (its owner and other labels count).
    #[serde(default)]
    pub(crate) existing: Option<String>,
}

/// Where a Secret would go, and whether it would be refused.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Preview {
    /// Set when the Secret is blocked: saving is refused with this rule.
    pub(crate) blocked: Option<DecisionView>,
    /// Set when the targets are not valid (an unparsable selector, an empty list).
    pub(crate) target_error: Option<String>,
    pub(crate) down: Option<DecisionView>,
    pub(crate) targets: Vec<String>,
    pub(crate) clusters: Vec<PreviewCluster>,
    pub(crate) problems: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreviewCluster {
    pub(crate) cluster: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) target: bool,
    pub(crate) decision: DecisionView,
}

/// The two down-sync annotations for `target`: (allowed-clusters, selector).
pub(crate) fn target_annotations(
    target: &TargetMode,
) -> Result<(Option<String>, Option<String>), String> {
    let list = || {
        let names: Vec<&str> = target
            .clusters
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .collect();
        if names.is_empty() {
            Err("choose at least one cluster, or \"Not synced\"".to_owned())
        } else {
            Ok(names.join(","))
        }
    };
    let selector = || {
        let s = target.selector.trim();
        if s.is_empty() {
            return Err("enter a label selector, e.g. env=prod".to_owned());
        }
        Selector::parse(s)
            .map(|_| s.to_owned())
            .map_err(|e| format!("the selector does not parse: {e}"))
    };
    match target.mode.as_str() {
        "none" => Ok((None, None)),
        "all" => Ok((Some("ALL".to_owned()), None)),
        "list" => Ok((Some(list()?), None)),
        "selector" => Ok((None, Some(selector()?))),
        "both" => Ok((Some(list()?), Some(selector()?))),
        other => Err(format!("unknown target mode {other:?}")),
    }
}

/// The Secret to create in the control-plane namespace.
pub(crate) fn new_secret(policy: &Policy, req: &CreateRequest) -> Result<Secret, String> {
    let name = req.name.trim();
    if name.is_empty() {
        return Err("the Secret needs a name".to_owned());
    }
    let (list, selector) = target_annotations(&req.target)?;
    let mut s = Secret::default();
    s.metadata.name = Some(name.to_owned());
    s.metadata.namespace = Some(policy.control_plane_namespace().to_owned());
    s.type_ = Some(
        req.type_
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("Opaque")
            .to_owned(),
    );
    if let Some(t) = req.argo_type.as_deref().filter(|t| !t.is_empty()) {
        s.metadata.labels = Some(BTreeMap::from([(
            SECRET_TYPE_LABEL.to_owned(),
            t.to_owned(),
        )]));
    }
    let mut annotations = BTreeMap::new();
    if let Some(l) = list {
        annotations.insert(ALLOWED_CLUSTERS_ANNOTATION.to_owned(), l);
    }
    if let Some(sel) = selector {
        annotations.insert(ALLOWED_CLUSTER_SELECTOR_ANNOTATION.to_owned(), sel);
    }
    if !annotations.is_empty() {
        s.metadata.annotations = Some(annotations);
    }
    s.data = Some(
        req.data
            .iter()
            .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
            .collect(),
    );
    Ok(s)
}

/// The JSON merge patch of an edit, and `current` as it will look (values
/// aside), for the blocked check.
pub(crate) fn edit_patch(req: &EditRequest, current: &Secret) -> Result<(Value, Secret), String> {
    use base64::Engine as _;
    let (list, selector) = target_annotations(&req.target)?;
    let argo = req
        .argo_type
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let mut data = serde_json::Map::new();
    for key in &req.remove {
        data.insert(key.clone(), Value::Null);
    }
    for (k, v) in &req.set {
        data.insert(
            k.clone(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
        );
    }
    let patch = json!({
        "metadata": {
            "labels": {SECRET_TYPE_LABEL: argo},
            "annotations": {
                ALLOWED_CLUSTERS_ANNOTATION: list,
                ALLOWED_CLUSTER_SELECTOR_ANNOTATION: selector,
            },
        },
        "data": data,
    });
    let mut after = current.clone();
    let labels = after.metadata.labels.get_or_insert_default();
    match &argo {
        Some(t) => labels.insert(SECRET_TYPE_LABEL.to_owned(), t.clone()),
        None => labels.remove(SECRET_TYPE_LABEL),
    };
    let annotations = after.metadata.annotations.get_or_insert_default();
    for (key, value) in [
        (ALLOWED_CLUSTERS_ANNOTATION, &list),
        (ALLOWED_CLUSTER_SELECTOR_ANNOTATION, &selector),
    ] {
        match value {
            Some(v) => annotations.insert(key.to_owned(), v.clone()),
            None => annotations.remove(key),
        };
    }
    Ok((patch, after))
}

/// The control plane's take-over of an orphaned copy: the owner label and the
/// adopted annotation go in one update.
pub(crate) fn take_over_patch() -> Value {
    json!({
        "metadata": {
            "labels": {OWNER_LABEL: null},
            "annotations": {ADOPTED_ANNOTATION: null},
        }
    })
}

/// The refusal of a blocked Secret, before anything is sent: the rule and the
/// reason down-sync gives.
pub(crate) fn refusal(policy: &Policy, secret: &Secret) -> Option<DecisionView> {
    policy.blocked(secret)?;
    let mut s = secret.clone();
    s.metadata.namespace = Some(policy.control_plane_namespace().to_owned());
    Some(DecisionView::from(&down_sync(policy, &s).decision))
}

/// Where a Secret with these fields would go.
pub(crate) fn preview(policy: &Policy, req: &PreviewRequest, existing: Option<&Secret>) -> Preview {
    let mut s = existing.cloned().unwrap_or_default();
    if existing.is_none() {
        s.metadata.name = Some(req.name.trim().to_owned());
        s.type_ = Some(
            req.type_
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .unwrap_or("Opaque")
                .to_owned(),
        );
    }
    s.metadata.namespace = Some(policy.control_plane_namespace().to_owned());
    let labels = s.metadata.labels.get_or_insert_default();
    match req.argo_type.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => labels.insert(SECRET_TYPE_LABEL.to_owned(), t.to_owned()),
        None => labels.remove(SECRET_TYPE_LABEL),
    };
    let blocked = refusal(policy, &s);
    let annotations = s.metadata.annotations.get_or_insert_default();
    annotations.remove(ALLOWED_CLUSTERS_ANNOTATION);
    annotations.remove(ALLOWED_CLUSTER_SELECTOR_ANNOTATION);
    let target_error = match target_annotations(&req.target) {
        Ok((list, selector)) => {
            if let Some(l) = list {
                annotations.insert(ALLOWED_CLUSTERS_ANNOTATION.to_owned(), l);
            }
            if let Some(sel) = selector {
                annotations.insert(ALLOWED_CLUSTER_SELECTOR_ANNOTATION.to_owned(), sel);
            }
            None
        }
        Err(e) => Some(e),
    };
    let down = down_sync(policy, &s);
    let clusters = policy
        .clusters()
        .map(|c| {
            let to = down_sync_to(policy, &s, &c.name);
            PreviewCluster {
                cluster: c.name.clone(),
                labels: c.labels.clone(),
                target: to.decision.allowed,
                decision: DecisionView::from(&to.decision),
            }
        })
        .collect();
    Preview {
        blocked,
        down: (target_error.is_none() && req.target.mode != "none")
            .then(|| DecisionView::from(&down.decision)),
        targets: down.targets,
        clusters,
        problems: down_sync_problems(&s),
        target_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "clusters:\n  - {name: cluster1, labels: {env: prod}}\n  - {name: cluster2, labels: {env: staging}}\n  - {name: cluster3, labels: {env: prod}}\n";

    fn target(mode: &str, clusters: &[&str], selector: &str) -> TargetMode {
        TargetMode {
            mode: mode.to_owned(),
            clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
            selector: selector.to_owned(),
        }
    }

    fn preview_of(name: &str, t: TargetMode) -> Preview {
        let policy = Policy::from_yaml(POLICY).unwrap();
        preview(
            &policy,
            &PreviewRequest {
                name: name.to_owned(),
                type_: None,
                argo_type: Some("repository".to_owned()),
                target: t,
                existing: None,
            },
            None,
        )
    }

    #[test]
    fn a_selector_target_goes_to_the_clusters_it_matches() {
        let p = preview_of("db", target("selector", &[], "env=prod"));
        assert_eq!(p.targets, vec!["cluster1", "cluster3"]);
        assert!(p.blocked.is_none() && p.target_error.is_none());
        let c2 = p.clusters.iter().find(|c| c.cluster == "cluster2").unwrap();
        assert!(!c2.target);
        assert_eq!(c2.decision.rule.as_str(), "down-sync-not-target");
    }

    #[test]
    fn a_blocked_name_is_refused_with_its_rule() {
        let p = preview_of("argocd-secret", target("all", &[], ""));
        assert_eq!(p.blocked.unwrap().rule.as_str(), "blocked-name");
    }

    #[test]
    fn an_unparsable_selector_is_a_target_error() {
        let p = preview_of("db", target("selector", &[], "env in (prod"));
        assert!(p.target_error.unwrap().contains("does not parse"));
        assert!(p.targets.is_empty());
    }

    #[test]
    fn a_new_secret_carries_the_target_annotations_and_the_argo_type() {
        let policy = Policy::from_yaml(POLICY).unwrap();
        let s = new_secret(
            &policy,
            &CreateRequest {
                name: "db".into(),
                type_: None,
                argo_type: Some("repo-creds".into()),
                target: target("list", &["cluster1", "cluster3"], ""),
                data: BTreeMap::from([("password".into(), "pw".into())]),
            },
        )
        .unwrap();
        let a = s.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[ALLOWED_CLUSTERS_ANNOTATION], "cluster1,cluster3");
        assert!(!a.contains_key(ALLOWED_CLUSTER_SELECTOR_ANNOTATION));
        assert_eq!(s.metadata.labels.unwrap()[SECRET_TYPE_LABEL], "repo-creds");
        assert_eq!(s.data.unwrap()["password"].0, b"pw");
        assert_eq!(s.metadata.namespace.as_deref(), Some("argocd"));
    }

    #[test]
    fn an_edit_patch_removes_the_other_target_annotation_and_only_touches_named_keys() {
        let current = Secret::default();
        let (patch, after) = edit_patch(
            &EditRequest {
                argo_type: None,
                target: target("all", &[], ""),
                set: BTreeMap::from([("a".into(), "1".into())]),
                remove: vec!["b".into()],
            },
            &current,
        )
        .unwrap();
        assert_eq!(patch["data"], json!({"a": "MQ==", "b": null}));
        assert_eq!(
            patch["metadata"]["annotations"],
            json!({ALLOWED_CLUSTERS_ANNOTATION: "ALL", ALLOWED_CLUSTER_SELECTOR_ANNOTATION: null})
        );
        assert_eq!(
            patch["metadata"]["labels"],
            json!({SECRET_TYPE_LABEL: null})
        );
        assert_eq!(
            after.metadata.annotations.unwrap()[ALLOWED_CLUSTERS_ANNOTATION],
            "ALL"
        );
    }

    #[test]
    fn an_empty_list_is_refused() {
        assert!(target_annotations(&target("list", &[], "")).is_err());
        assert!(target_annotations(&target("selector", &[], " ")).is_err());
        assert_eq!(
            target_annotations(&target("none", &["x"], "y")).unwrap(),
            (None, None)
        );
    }
}
