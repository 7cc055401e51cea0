//! A delete: the cluster's release of its own hub copy, judged by the release rules
//! and forwarded with the judged resourceVersion and uid as preconditions (or, for
//! an adopted copy, its return to the control plane).

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Response, StatusCode};
use secret_relay_policy::{Policy, ReleaseAction, Secret, meta, release};

use super::adopt::return_to_control_plane;
use super::answer::{bad, body_error, conflict, denied, not_found};
use super::gate::{Source, Target, gate};
use super::upstream::{forward_to, object_path, unless_stale, with_query};
use super::{CONFLICT_RETRIES, WriteRequest, blocked_request, content_type, count_write};
use crate::server::Relay;
use crate::status::{RelayBody, status};

/// A delete is the cluster's release of its own hub copy.
pub(super) async fn delete(
    relay: &Relay,
    policy: &Policy,
    request: &WriteRequest<'_>,
) -> Response<RelayBody> {
    let WriteRequest {
        cluster, sr, body, ..
    } = request;
    let cp = policy.control_plane_namespace();
    let name = sr.name.clone().unwrap_or_default();
    let options = match delete_options(content_type(request.headers).as_deref(), body) {
        Ok(o) => o,
        Err(answer) => return *answer,
    };
    if let Some(d) = blocked_request(policy, &name, None) {
        count_write(relay, &d);
        return denied(cluster, &name, "release", &d, false);
    }
    let mut source = Source::Cache;
    for _ in 0..=CONFLICT_RETRIES {
        let hub = match gate(relay, policy, cluster, &name, sr.verb, source).await {
            Ok(Target::Visible(hub)) => hub,
            Ok(_) => return not_found(&name),
            Err(answer) => return answer,
        };
        let r = release(policy, cluster.as_str(), &hub);
        count_write(relay, &r.decision);
        if !r.decision.allowed {
            return denied(cluster, &name, "release", &r.decision, false);
        }
        tracing::info!(%cluster, %name, rule = %r.decision.rule, action = ?r.action, "release");
        let answer = match r.action {
            Some(ReleaseAction::ReturnToControlPlane) => {
                return_to_control_plane(relay, cp, &hub).await
            }
            _ => {
                let mut options = options.clone();
                if let Err(answer) = set_preconditions(&mut options, &hub) {
                    return *answer;
                }
                let json = serde_json::to_vec(&options)
                    .expect("a serde_json::Value always serializes to JSON");
                let mut headers = request.headers.clone();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                let path = with_query(&object_path(cp, &name), sr);
                let judged = (
                    name.as_str(),
                    crate::cache::parse_rv(hub.metadata.resource_version.as_deref()),
                );
                forward_to(
                    relay,
                    &Method::DELETE,
                    &path,
                    &headers,
                    json,
                    cluster,
                    Some(judged),
                )
                .await
            }
        };
        match unless_stale(relay, answer).await {
            None => source = Source::Upstream,
            Some(answer) => return answer,
        }
    }
    conflict(&name)
}

/// The client's DeleteOptions (an empty body is none), as a JSON object.
fn delete_options(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<serde_json::Value, Box<Response<RelayBody>>> {
    crate::body::decode_delete_options(content_type, body).map_err(|e| Box::new(body_error(&e)))
}

/// Sets the judged copy's resourceVersion and uid as the delete's preconditions. A
/// client's own precondition that names another version is answered as the API
/// server would (409).
fn set_preconditions(
    options: &mut serde_json::Value,
    hub: &Secret,
) -> Result<(), Box<Response<RelayBody>>> {
    let name = meta::name(&hub.metadata);
    let want = [
        ("resourceVersion", hub.metadata.resource_version.as_deref()),
        ("uid", hub.metadata.uid.as_deref()),
    ];
    let Some(object) = options.as_object_mut() else {
        return Err(Box::new(bad("the body of a DELETE must be DeleteOptions")));
    };
    let preconditions = object
        .entry("preconditions")
        .or_insert_with(|| serde_json::json!({}));
    let Some(preconditions) = preconditions.as_object_mut() else {
        return Err(Box::new(bad("preconditions must be an object")));
    };
    for (key, value) in want {
        let Some(value) = value else { continue };
        match preconditions.get(key) {
            Some(serde_json::Value::String(theirs)) if theirs != value => {
                return Err(Box::new(status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on secrets \"{name}\": the precondition on {key} does not hold"
                    ),
                    Some((name, &[])),
                )));
            }
            _ => {
                preconditions.insert(key.to_owned(), value.into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_precondition_on_another_version_is_a_conflict_and_ours_are_set() {
        let mut hub = Secret::default();
        hub.metadata.name = Some("a".to_owned());
        hub.metadata.resource_version = Some("7".to_owned());
        hub.metadata.uid = Some("u-1".to_owned());
        let mut options = serde_json::json!({"propagationPolicy": "Background"});
        set_preconditions(&mut options, &hub).unwrap();
        assert_eq!(
            options["preconditions"],
            serde_json::json!({"resourceVersion": "7", "uid": "u-1"})
        );
        assert_eq!(options["propagationPolicy"], "Background");
        let mut theirs = serde_json::json!({"preconditions": {"resourceVersion": "6"}});
        let answer = set_preconditions(&mut theirs, &hub).unwrap_err();
        assert_eq!(answer.status(), StatusCode::CONFLICT);
        assert!(delete_options(None, b"").unwrap().is_object());
        assert_eq!(
            delete_options(None, b"[1]").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
