//! The policy editor's handlers: read the live policy as the editor starts from it,
//! plan a change over the hub copies, and save it as the user under the
//! resourceVersion the page read.

use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use secret_relay_policy::{POLICY_KEY, Policy};
use serde_json::json;

use super::Body;
use super::wire::{api_error, invalid, json_response};
use crate::policy_edit::{self, PolicyChange};
use crate::state::Shared;

/// `GET /api/policy`: the clusters and Secret Sources as the editor starts from
/// them, and the resourceVersion a save must carry.
pub(super) async fn read(shared: &Shared) -> Response<Body> {
    let (text, resource_version) = match live_policy(shared).await {
        Ok(live) => live,
        Err(resp) => return resp,
    };
    let policy = match Policy::from_yaml(&text) {
        Ok(p) => p,
        Err(err) => return invalid(&format!("the live policy is not valid: {err}")),
    };
    let change = PolicyChange {
        clusters: policy
            .clusters()
            .map(|c| policy_edit::ClusterEdit {
                name: c.name.clone(),
                labels: c.labels.clone(),
            })
            .collect(),
        sources: policy
            .sources()
            .iter()
            .map(|s| policy_edit::SourceEdit {
                cluster_selector: s.cluster_selector.to_string(),
                label_selector: s.label_selector.to_string(),
            })
            .collect(),
        resource_version,
    };
    json_response(StatusCode::OK, &change)
}

/// `POST /api/policy/plan`: the problems of a change, or its plan over the live
/// hub copies.
pub(super) async fn plan(shared: &Shared, change: &PolicyChange) -> Response<Body> {
    let (text, _) = match live_policy(shared).await {
        Ok(live) => live,
        Err(resp) => return resp,
    };
    // The change is planned against the document it is made over; a live document
    // that does not parse plans against the policy in force (the last valid one).
    let old = Policy::from_yaml(&text).map_or_else(|_| shared.policy.policy(), Arc::new);
    let Some(hub) = shared
        .listed_secrets(old.control_plane_namespace(), LISTING_WAIT)
        .await
    else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": {"code": 503, "reason": "ServiceUnavailable", "message": format!(
                "the page has not yet listed the Secrets of {}, so it cannot say what the change does to them: plan again in a moment (a banner on the page says why if it cannot read them)",
                old.control_plane_namespace()
            )}}),
        );
    };
    json_response(
        StatusCode::OK,
        &policy_edit::check(&old, &text, change, &hub),
    )
}

/// How long a plan waits for the page's first listing of the hub copies.
const LISTING_WAIT: Duration = Duration::from_secs(10);

/// `PUT /api/policy`: saves a valid change as the user, under the resourceVersion
/// the page read: a policy changed meanwhile is a conflict, never overwritten.
pub(super) async fn save(shared: &Shared, change: &PolicyChange) -> Response<Body> {
    let Some(read) = change.resource_version.clone() else {
        return invalid("a policy save carries the resourceVersion the page read");
    };
    let (api, name) = policy_configmap(shared);
    let mut cm = match api.get(&name).await {
        Ok(cm) => cm,
        Err(err) => return api_error(&err),
    };
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(POLICY_KEY).cloned())
        .unwrap_or_default();
    let document = match policy_edit::document(&text, change) {
        Ok(d) => d,
        Err(message) => return invalid(&message),
    };
    if let Err(err) = Policy::from_yaml(&document) {
        return invalid(&format!("the policy is not valid: {err}"));
    }
    cm.metadata.resource_version = Some(read);
    cm.metadata.managed_fields = None;
    cm.data
        .get_or_insert_with(Default::default)
        .insert(POLICY_KEY.to_owned(), document);
    match api.replace(&name, &PostParams::default(), &cm).await {
        Ok(saved) => json_response(
            StatusCode::OK,
            &json!({"resourceVersion": saved.metadata.resource_version}),
        ),
        Err(kube::Error::Api(status)) if status.code == 409 => json_response(
            StatusCode::CONFLICT,
            &json!({"error": {"code": 409, "reason": "Conflict", "message": "the policy was changed by someone else since you opened it: reload it and make your change again (nothing was overwritten)"}}),
        ),
        Err(err) => api_error(&err),
    }
}

/// The policy ConfigMap, read as the user: `(namespace, name)`.
fn policy_configmap(shared: &Shared) -> (Api<ConfigMap>, String) {
    let (ns, name) = shared
        .policy_source
        .split_once('/')
        .unwrap_or(("secret-relay-system", "secret-relay-policy"));
    (Api::namespaced(shared.client.clone(), ns), name.to_owned())
}

/// The live document's text and resourceVersion, read as the user.
async fn live_policy(shared: &Shared) -> Result<(String, Option<String>), Response<Body>> {
    let (api, name) = policy_configmap(shared);
    match api.get(&name).await {
        Ok(cm) => Ok((
            cm.data
                .and_then(|d| d.get(POLICY_KEY).cloned())
                .unwrap_or_default(),
            cm.metadata.resource_version,
        )),
        Err(err) => Err(api_error(&err)),
    }
}
