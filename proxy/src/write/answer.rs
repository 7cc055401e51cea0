//! The write path's own answers: the Status a refused, failed or denied write gets.
//! A denial quotes only what the cluster sent; a denied patch quotes nothing of the
//! patched object.

use http::{Response, StatusCode};
use secret_relay_policy::{ClusterId, Decision, Rule};

use super::count_write;
use crate::body::BodyError;
use crate::patch::PatchError;
use crate::server::Relay;
use crate::status::{RelayBody, status};

pub(super) fn unavailable() -> Response<RelayBody> {
    status(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "the relay could not read the control plane's copy to decide the write; retry",
        None,
    )
}

pub(super) fn body_error(err: &BodyError) -> Response<RelayBody> {
    match err {
        BodyError::BadRequest(m) => status(StatusCode::BAD_REQUEST, "BadRequest", m, None),
        BodyError::UnsupportedMediaType(m) => status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            m,
            None,
        ),
    }
}

pub(super) fn bad(message: &str) -> Response<RelayBody> {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

/// A denial as the cluster gets it. A patch's result mixes the request with the hub
/// copy, so its denial names the rule and what to do, never a value or label of the
/// patched object (`patched`); a create or update quotes only the cluster's own
/// object back.
pub(super) fn denied(
    cluster: &ClusterId,
    name: &str,
    what: &str,
    decision: &Decision,
    patched: bool,
) -> Response<RelayBody> {
    tracing::info!(%cluster, %name, rule = %decision.rule, "{what} denied");
    let rule = decision.rule.to_string();
    let reason = if patched {
        patch_advice(decision.rule).to_owned()
    } else {
        decision.reason.clone()
    };
    let message = format!("secret-relay denied the request: {reason} (rule {rule})");
    status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &message,
        Some((name, &[(rule.as_str(), reason.as_str())])),
    )
}

/// What a denied patch's answer says, per rule: the rule's meaning and the way
/// forward, with nothing of the patched object.
fn patch_advice(rule: Rule) -> &'static str {
    match rule {
        Rule::BlockedName | Rule::BlockedType | Rule::BlockedLabel => {
            "the patched Secret would be a blocked secret, which is never synced or changed by a cluster"
        }
        Rule::NotOptedIn => {
            "the patched Secret would lose the opt-in label akuity.io/secret-sync: \"true\"; keep it, or delete the Secret on the cluster to release it"
        }
        Rule::NoMatchingSource => {
            "no Secret Source would allow the patched Secret from this cluster; keep the labels a Secret Source selects, or ask the control-plane admin for a Secret Source"
        }
        Rule::OwnerLabelForged => {
            "the patch sets an ownership stamp only secret-relay sets (secret-relay.io/owner, secret-relay.io/adopted); remove it from the patch"
        }
        Rule::OwnedByControlPlane | Rule::OwnedByOtherCluster | Rule::InvalidOwner => {
            "the hub copy is not this cluster's; only its owner changes it"
        }
        Rule::UncarriedMetadata => {
            "the patched Secret would carry what never crosses between clusters (tool ownership, the policy's stripMetadata) or a finalizer or owner reference of its own; remove it from the patch"
        }
        Rule::UnknownCluster => "this cluster is not registered in the secret-relay policy",
        Rule::ClusterQuota => {
            "this cluster owns as many hub copies, or bytes of them, as the relay allows one cluster"
        }
        _ => {
            "the patched Secret breaks a secret-relay rule; see `secret-relay explain` on the control plane"
        }
    }
}

/// The answer for a create whose name a hub copy outside the view holds: nothing of
/// that copy is said, not even who owns it.
pub(super) fn name_taken(relay: &Relay, cluster: &ClusterId, name: &str) -> Response<RelayBody> {
    let decision = Decision::deny(
        Rule::NameTaken,
        format!(
            "the name {name} is taken on the control plane by a Secret outside cluster {cluster}'s view: rename the Secret on this cluster, or ask the control-plane admin (`secret-relay explain` shows who holds it)"
        ),
    );
    count_write(relay, &decision);
    denied(cluster, name, "up-sync", &decision, false)
}

/// The answer for a write by a cluster at its quota: its own counts, and the
/// limits, nothing else.
pub(super) fn over_quota(
    relay: &Relay,
    cluster: &ClusterId,
    name: &str,
    (copies, bytes): (usize, usize),
) -> Response<RelayBody> {
    let limits = &relay.inner.limits;
    let decision = Decision::deny(
        Rule::ClusterQuota,
        format!(
            "cluster {cluster} owns {copies} hub copies of {bytes} bytes, and the relay allows one cluster {} copies of {} bytes: delete (opt out) Secrets this cluster syncs up, or ask the control-plane admin to raise --cluster-max-copies or --cluster-max-bytes",
            limits.max_copies_per_cluster, limits.max_bytes_per_cluster
        ),
    );
    count_write(relay, &decision);
    denied(cluster, name, "up-sync", &decision, false)
}

pub(crate) fn not_found(name: &str) -> Response<RelayBody> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("secrets \"{name}\" not found"),
        Some((name, &[])),
    )
}

pub(super) fn conflict(name: &str) -> Response<RelayBody> {
    status(
        StatusCode::CONFLICT,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on secrets \"{name}\": the object kept changing while the relay judged the write; try again"
        ),
        Some((name, &[])),
    )
}

/// The answer to a patch that does not apply to the gated copy.
pub(super) fn patch_error(err: PatchError) -> Response<RelayBody> {
    match err {
        PatchError::NotFound(name) => not_found(&name),
        PatchError::BadRequest(message) => bad(&message),
        PatchError::Invalid(message) => {
            status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &message, None)
        }
    }
}
