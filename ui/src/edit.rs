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
use secret_relay_policy::{
    Policy, Selector, down_sync, down_sync_problems, down_sync_to, is_adoptable,
};
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
    /// The name is one a cluster may adopt (take over from the control plane).
    pub(crate) adoptable: bool,
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
        problems: down_sync_problems(policy, &s),
        target_error,
        adoptable: is_adoptable(s.metadata.name.as_deref().unwrap_or("")),
    }
}

#[cfg(test)]
mod tests;
