//! A patch (merge, strategic merge, JSON patch or server-side apply): judged on the
//! patched gated copy and forwarded as what was judged, judged again when the copy
//! changed underneath.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Response};
use secret_relay_policy::{Policy, Secret, keys, meta, stamp_cluster_write};

use super::adopt::keep_for_handback;
use super::answer::{body_error, conflict, denied, patch_error};
use super::gate::{Source, gate};
use super::offload::{encode_off_worker, off_worker};
use super::upstream::{
    forward_to, object_path, send_json, unless_stale, with_query, without_force,
};
use super::{CONFLICT_RETRIES, WriteRequest, blocked_request, count_write, judge};
use crate::body::decode_patch_value;
use crate::patch::apply_patch_value;
use crate::route::PatchKind;
use crate::server::Relay;
use crate::status::RelayBody;

/// A patch: judged on the patched gated copy, forwarded as what was judged.
pub(super) async fn write_patch(
    relay: &Relay,
    policy: &Policy,
    request: &WriteRequest<'_>,
    kind: PatchKind,
) -> Response<RelayBody> {
    let WriteRequest {
        cluster, sr, body, ..
    } = request;
    let cp = policy.control_plane_namespace();
    let name = sr.name.as_deref().unwrap_or_default();
    let patch = match off_worker(body, move |b| decode_patch_value(kind, b)).await {
        Ok(p) => p,
        Err(e) => return body_error(&e),
    };
    if let Some(d) = blocked_request(policy, name, None) {
        count_write(relay, &d);
        return denied(cluster, name, "up-sync", &d, false);
    }
    let mut source = Source::Cache;
    for _ in 0..=CONFLICT_RETRIES {
        let target = match gate(relay, policy, cluster, name, sr.verb, source).await {
            Ok(t) => t,
            Err(answer) => return answer,
        };
        let hub = target.hub().map(AsRef::as_ref);
        let mut patched = match apply_patch_value(hub, name, cp, kind, &patch) {
            Ok(s) => s,
            Err(err) => return patch_error(err),
        };
        let decision = judge(policy, cluster, &mut patched, &target);
        count_write(relay, &decision);
        if !decision.allowed {
            return denied(cluster, name, "up-sync", &decision, true);
        }
        tracing::debug!(%cluster, %name, rule = %decision.rule, "up-sync patch");
        if let Err(answer) = keep_for_handback(relay, cp, &decision, &target).await {
            return answer;
        }
        let answer = if kind == PatchKind::Apply {
            forward_apply(relay, request, cp, name, &patch, patched, hub).await
        } else {
            forward_put(relay, request, cp, name, patched, hub).await
        };
        if hub.is_some() {
            match unless_stale(relay, answer).await {
                // The copy changed after it was judged: judge the patch again on
                // the API server's copy.
                None => source = Source::Upstream,
                Some(answer) => return answer,
            }
            continue;
        }
        return answer;
    }
    conflict(name)
}

/// A server-side apply goes as an apply: field ownership is the API server's. It
/// applies on the copy judged (its resourceVersion as the precondition).
async fn forward_apply(
    relay: &Relay,
    request: &WriteRequest<'_>,
    cp: &str,
    name: &str,
    patch: &serde_json::Value,
    patched: Secret,
    hub: Option<&Secret>,
) -> Response<RelayBody> {
    let WriteRequest { cluster, sr, .. } = request;
    let mut apply = patch.clone();
    // The stamps go in the applied configuration, as the cluster's fields.
    let mut stamped = patched;
    stamp_cluster_write(cluster.as_str(), name, &mut stamped, hub);
    let judged_rv = hub.and_then(|h| h.metadata.resource_version.clone());
    set_applied_metadata(&mut apply, &stamped, judged_rv);
    let json = serde_json::to_vec(&apply).expect("a serde_json::Value always serializes to JSON");
    let mut headers = request.headers.clone();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/apply-patch+yaml"),
    );
    let path = with_query(&object_path(cp, name), sr);
    forward_to(relay, &Method::PATCH, &path, &headers, json, cluster, None).await
}

/// Sets the judged resourceVersion and the relay's stamps of `stamped` in the
/// applied configuration's metadata (an apply without metadata gets neither).
fn set_applied_metadata(
    apply: &mut serde_json::Value,
    stamped: &Secret,
    judged_rv: Option<String>,
) {
    let Some(metadata) = apply
        .as_object_mut()
        .and_then(|o| o.get_mut("metadata"))
        .and_then(|m| m.as_object_mut())
    else {
        return;
    };
    if let Some(rv) = judged_rv {
        metadata.insert("resourceVersion".to_owned(), rv.into());
    }
    let stamps = [
        (
            "labels",
            meta::label(&stamped.metadata, keys::OWNER_LABEL),
            keys::OWNER_LABEL,
        ),
        (
            "annotations",
            meta::annotation(&stamped.metadata, keys::ADOPTED_ANNOTATION),
            keys::ADOPTED_ANNOTATION,
        ),
    ];
    for (field, value, key) in stamps {
        if let Some(value) = value
            && let Some(applied) = metadata
                .entry(field)
                .or_insert_with(|| serde_json::json!({}))
                .as_object_mut()
        {
            applied.insert(key.to_owned(), value.into());
        }
    }
}

/// A merge, strategic-merge or JSON patch goes as a full-object PUT of the patched
/// copy, stamped, with the judged resourceVersion as the precondition.
async fn forward_put(
    relay: &Relay,
    request: &WriteRequest<'_>,
    cp: &str,
    name: &str,
    patched: Secret,
    hub: Option<&Secret>,
) -> Response<RelayBody> {
    let WriteRequest {
        cluster, sr, body, ..
    } = request;
    let mut stored = patched;
    stamp_cluster_write(cluster.as_str(), name, &mut stored, hub);
    stored.metadata.resource_version = hub.and_then(|h| h.metadata.resource_version.clone());
    let json = encode_off_worker(stored, body.len()).await;
    let query = without_force(sr);
    send_json(
        relay,
        &Method::PUT,
        &object_path(cp, name),
        &query,
        json,
        cluster,
    )
    .await
}
