//! A create or an update: the decoded Secret is judged against the gated hub copy
//! and forwarded re-encoded, stamped as the mutating webhook would stamp it.

use http::{Method, Response, StatusCode};
use secret_relay_policy::{Policy, Secret, meta, stamp_cluster_write};

use super::adopt::keep_for_handback;
use super::answer::{bad, body_error, conflict, denied};
use super::gate::{Source, Target, gate};
use super::offload::{INLINE_DECODE_BYTES, encode_off_worker, off_worker};
use super::splice::{Values, read, splice};
use super::upstream::{collection_path, object_path, send_json};
use super::{WriteRequest, blocked_request, content_type, count_write, judge};
use crate::body::{BodyError, check_json_secret, decode_secret, is_json};
use crate::route::{SecretsRequest, Verb};
use crate::server::Relay;
use crate::status::{RelayBody, status};

/// A create or an update: the decoded Secret is judged and forwarded re-encoded.
pub(super) async fn write_object(
    relay: &Relay,
    policy: &Policy,
    request: &WriteRequest<'_>,
) -> Response<RelayBody> {
    let WriteRequest { cluster, sr, .. } = request;
    let (mut secret, values) = match decode(request).await {
        Ok(decoded) => decoded,
        Err(e) => return body_error(&e),
    };
    let cp = policy.control_plane_namespace();
    if let Some(answer) = misplaced(&secret, sr, cp) {
        return answer;
    }
    // Owned: the judgement borrows the Secret mutably.
    let name = meta::name(&secret.metadata).to_owned();
    let name = name.as_str();
    if let Some(d) = blocked_request(policy, name, Some(&secret)) {
        count_write(relay, &d);
        return denied(cluster, name, "up-sync", &d, false);
    }
    for source in [Source::Cache, Source::Upstream] {
        let target = match gate(relay, policy, cluster, name, sr.verb, source).await {
            Ok(t) => t,
            Err(answer) => return answer,
        };
        let decision = judge(policy, cluster, &mut secret, &target);
        // A create decided on no copy at all: the API server tells whether the name
        // is free; it is counted once decided.
        let optimistic =
            sr.verb == Verb::Create && source == Source::Cache && matches!(target, Target::Absent);
        if !(optimistic && decision.allowed) {
            count_write(relay, &decision);
        }
        if !decision.allowed {
            return denied(cluster, name, "up-sync", &decision, false);
        }
        // Every sync has its line in every component's log: allowed writes too.
        tracing::info!(%cluster, %name, rule = %decision.rule, "up-sync write");
        if let Err(answer) = keep_for_handback(relay, cp, &decision, &target).await {
            return answer;
        }
        let judged = (&secret, values.as_ref());
        let answer = forward_object(relay, request, cp, judged, name, &target).await;
        if optimistic {
            if answer.status() == StatusCode::CONFLICT {
                tracing::debug!(%cluster, %name, "a create met a name the cache had not seen; deciding on the API server's copy");
                continue;
            }
            count_write(relay, &decision);
        }
        return answer;
    }
    conflict(name)
}

/// The Secret to judge, and its values as sent when it is forwarded spliced: a JSON
/// body up to the inline size that is plainly a v1 Secret ([`read`]). Any other body
/// is decoded whole, large ones off the async workers.
async fn decode<'a>(
    request: &'a WriteRequest<'_>,
) -> Result<(Secret, Option<Values<'a>>), BodyError> {
    let content_type = content_type(request.headers);
    let body = &request.body;
    if is_json(content_type.as_deref()) && body.len() <= INLINE_DECODE_BYTES {
        check_json_secret(body)?;
        if let Some((secret, values)) = read(body) {
            return Ok((secret, Some(values)));
        }
    }
    let secret = off_worker(body, move |b| decode_secret(content_type.as_deref(), b)).await?;
    Ok((secret, None))
}

/// The answer to an object that is not where the request puts it: in another
/// namespace, without a name, or named otherwise than on the URL.
fn misplaced(secret: &Secret, sr: &SecretsRequest, cp: &str) -> Option<Response<RelayBody>> {
    if secret
        .metadata
        .namespace
        .as_deref()
        .is_some_and(|ns| ns != cp)
    {
        return Some(bad(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let name = meta::name(&secret.metadata);
    if name.is_empty() {
        return Some(status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "a hub copy needs metadata.name (generateName is not used for hub copies)",
            None,
        ));
    }
    if sr.name.as_deref().is_some_and(|n| n != name) {
        return Some(bad(
            "the name of the object does not match the name on the URL",
        ));
    }
    None
}

/// Forwards the allowed object as it is to be stored: in the control-plane
/// namespace, stamped, and created or replaced on the copy it was judged against;
/// spliced around the values as sent when there are `values`, else re-encoded.
async fn forward_object(
    relay: &Relay,
    request: &WriteRequest<'_>,
    cp: &str,
    (secret, values): (&Secret, Option<&Values<'_>>),
    name: &str,
    target: &Target,
) -> Response<RelayBody> {
    let WriteRequest {
        cluster, sr, body, ..
    } = request;
    // The stamps and the precondition go on the metadata; the values are not copied.
    let mut stored = Secret {
        metadata: secret.metadata.clone(),
        immutable: secret.immutable,
        type_: secret.type_.clone(),
        ..Secret::default()
    };
    stored.metadata.namespace = Some(cp.to_owned());
    // Stamped here as the mutating webhook would: the API server does not call
    // it for the clusters' writes (matchConditions); the validating webhook
    // checks every stamp on what it stores.
    stamp_cluster_write(
        cluster.as_str(),
        name,
        &mut stored,
        target.hub().map(AsRef::as_ref),
    );
    let (method, path) = match (target, sr.verb) {
        // Adopting a control-plane secret the cluster cannot see arrives as a
        // create: the relay, which sees the hub, makes it the update it is, on
        // the copy it judged.
        (Target::Adoptable(hub) | Target::Visible(hub), Verb::Create) => {
            stored
                .metadata
                .resource_version
                .clone_from(&hub.metadata.resource_version);
            (Method::PUT, object_path(cp, name))
        }
        (_, Verb::Create) => (Method::POST, collection_path(cp)),
        _ => (Method::PUT, object_path(cp, name)),
    };
    let json = match values {
        Some(values) => splice(&stored, values),
        None => {
            let whole = Secret {
                data: secret.data.clone(),
                string_data: secret.string_data.clone(),
                ..stored
            };
            encode_off_worker(whole, body.len()).await
        }
    };
    send_json(relay, &method, &path, sr, json, cluster).await
}
