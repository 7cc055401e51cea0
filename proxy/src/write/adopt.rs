//! The adoption's two ends on the write path: before a cluster adopts a
//! control-plane secret, the relay records its own metadata; when it returns, the
//! relay restores it ([`crate::handback`] keeps the record).

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use secret_relay_policy::{Decision, Rule, Secret, meta};

use super::answer::{not_found, unavailable};
use super::gate::Target;
use super::upstream::{encode, object_path, settle};
use crate::server::{Relay, forward};
use crate::status::{RelayBody, status, success};

/// Before an adoption: records the control plane's own metadata of the copy, to be
/// restored when it returns ([`crate::handback`]). Without the record there is no
/// adoption (503, retried by the agent).
pub(super) async fn keep_for_handback(
    relay: &Relay,
    cp: &str,
    decision: &Decision,
    target: &Target,
) -> Result<(), Response<RelayBody>> {
    let Some(hub) = target.hub().filter(|_| decision.rule == Rule::Adopt) else {
        return Ok(());
    };
    crate::handback::record(relay, cp, hub).await.map_err(|err| {
        tracing::warn!(error = %err, "an adoption waits for its hand-back record");
        status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the relay could not record the control plane's metadata of the secret before its adoption; retry",
            None,
        )
    })
}

/// Returns an adopted secret to the control plane with its data kept, as the relay's
/// own account: its labels and annotations become the control plane's own from
/// before the adoption ([`crate::handback`]), so nothing of the cluster's (its
/// opt-in label, its target annotations, the owner and adopted stamps) stays; the
/// data stays. The PUT carries the judged copy's resourceVersion.
pub(crate) async fn return_to_control_plane(
    relay: &Relay,
    cp: &str,
    hub: &Secret,
) -> Response<RelayBody> {
    let name = meta::name(&hub.metadata);
    let kept = match crate::handback::recorded(relay, cp, hub).await {
        Ok(kept) => kept,
        Err(err) => {
            tracing::warn!(%name, error = %err, "a return waits for its hand-back record");
            return unavailable();
        }
    };
    let mut returned = hub.clone();
    returned.metadata.labels = Some(kept.labels);
    returned.metadata.annotations = Some(kept.annotations);
    returned.metadata.managed_fields = None;
    let Ok(uri) = object_path(cp, name).parse::<http::Uri>() else {
        return not_found(name);
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let resp = forward(
        relay,
        &Method::PUT,
        &uri,
        &headers,
        Bytes::from(encode(&returned)),
        None,
    )
    .await;
    let resp = settle(relay, resp, None).await;
    if resp.status().is_success() {
        crate::handback::forget(relay, cp, name).await;
        success(
            name,
            &format!("secret {cp}/{name} was returned to the control plane with its data kept"),
        )
    } else {
        // The answer is to the relay's own write of the control plane's metadata,
        // which the cluster does not see once the secret is back: only its code
        // goes back, with the relay's words.
        let code = resp.status();
        tracing::warn!(%name, %code, "the API server refused the return of an adopted secret");
        let reason = match code {
            StatusCode::CONFLICT => "Conflict",
            StatusCode::NOT_FOUND => "NotFound",
            StatusCode::GATEWAY_TIMEOUT => "Timeout",
            c if c.is_server_error() => "ServiceUnavailable",
            _ => "Forbidden",
        };
        status(
            code,
            reason,
            &format!(
                "the relay could not return {cp}/{name} to the control plane (the API server answered {}); retry",
                code.as_u16()
            ),
            Some((name, &[])),
        )
    }
}
