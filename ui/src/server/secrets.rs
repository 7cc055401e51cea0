//! The Secrets' handlers, each a request made as the user: create, update, delete,
//! take over an orphan, and reveal one value.

use base64::Engine as _;
use http::{Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::Body;
use super::wire::{api_error, invalid, json_response, refused};
use crate::edit::{self, CreateRequest, EditRequest};
use crate::state::Shared;

/// The field manager of the page's writes: "last change by secret-relay-ui".
const FIELD_MANAGER: &str = "secret-relay-ui";

/// The body of `POST /api/secrets/{name}/reveal`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevealRequest {
    pub(super) key: String,
}

/// `POST /api/secrets`: a new control-plane Secret, unless the page can tell the
/// policy refuses it.
pub(super) async fn create(shared: &Shared, req: CreateRequest) -> Response<Body> {
    let policy = shared.policy.policy();
    let secret = match edit::new_secret(&policy, &req) {
        Ok(s) => s,
        Err(message) => return invalid(&message),
    };
    if let Some(refusal) = edit::refusal(&policy, &secret) {
        return refused(refusal);
    }
    match secrets_api(shared)
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            },
            &secret,
        )
        .await
    {
        Ok(s) => json_response(
            StatusCode::CREATED,
            &json!({"created": s.metadata.name, "resourceVersion": s.metadata.resource_version}),
        ),
        Err(err) => api_error(&err),
    }
}

/// `PUT /api/secrets/{name}`: an edit as a merge patch, unless the page can tell
/// the policy refuses the result.
pub(super) async fn update(shared: &Shared, name: &str, req: EditRequest) -> Response<Body> {
    let policy = shared.policy.policy();
    // The page's copy (values dropped) is enough to judge blocking; the API
    // server and the webhook judge the write itself.
    let Some(current) = shared.secret(name) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": 404, "message": format!("secret {name} is not in the page's view of {}", policy.control_plane_namespace())}}),
        );
    };
    let (patch, after) = match edit::edit_patch(&req, &current) {
        Ok(p) => p,
        Err(message) => return invalid(&message),
    };
    if let Some(refusal) = edit::refusal(&policy, &after) {
        return refused(refusal);
    }
    match secrets_api(shared)
        .patch(name, &patch_params(), &Patch::Merge(patch))
        .await
    {
        Ok(s) => json_response(
            StatusCode::OK,
            &json!({"updated": s.metadata.name, "resourceVersion": s.metadata.resource_version}),
        ),
        Err(err) => api_error(&err),
    }
}

/// `DELETE /api/secrets/{name}`.
pub(super) async fn delete(shared: &Shared, name: &str) -> Response<Body> {
    let api = secrets_api(shared);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => json_response(StatusCode::OK, &json!({"deleted": name})),
        Err(err) => api_error(&err),
    }
}

/// `POST /api/secrets/{name}/take-over`: the control plane takes an orphan back.
pub(super) async fn take_over(shared: &Shared, name: &str) -> Response<Body> {
    let api = secrets_api(shared);
    match api
        .patch(
            name,
            &patch_params(),
            &Patch::Merge(edit::take_over_patch()),
        )
        .await
    {
        Ok(_) => json_response(StatusCode::OK, &json!({"tookOver": name})),
        Err(err) => api_error(&err),
    }
}

/// One value, read as the user at the moment they ask.
pub(super) async fn reveal(shared: &Shared, name: &str, key: &str) -> Response<Body> {
    let secret = match secrets_api(shared).get(name).await {
        Ok(s) => s,
        Err(err) => return api_error(&err),
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.clone().into_bytes())
        });
    let Some(bytes) = value else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": 404, "message": format!("secret {name} has no key {key}")}}),
        );
    };
    tracing::info!(%name, %key, "revealed one key to the page's user");
    let answer = match String::from_utf8(bytes) {
        Ok(text) => json!({"key": key, "value": text, "encoding": "utf-8"}),
        Err(e) => json!({
            "key": key,
            "value": base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            "encoding": "base64",
        }),
    };
    json_response(StatusCode::OK, &answer)
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

fn secrets_api(shared: &Shared) -> Api<Secret> {
    let policy = shared.policy.policy();
    Api::namespaced(shared.client.clone(), policy.control_plane_namespace())
}
