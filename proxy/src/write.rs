//! The write path: every create, update, patch and delete a cluster sends.
//!
//! Two properties hold by construction here:
//!
//! - **Nothing outside the view.** A write reaches a hub copy only through
//!   [`gate`](gate::gate), the one place that looks it up. A copy outside the cluster's view
//!   answers exactly as GET does (404) for every verb on its name, and a create of
//!   its name is refused as `name-taken`, without anything of it evaluated or
//!   quoted. The one exception is adoption: a create or update of an adoptable name
//!   ([`ADOPTABLE_NAMES`](secret_relay_policy::ADOPTABLE_NAMES)) that the control
//!   plane owns and that is not blocked, which the rules allow by name.
//! - **What is judged is what is stored.** The relay forwards the object it judged,
//!   never the client's bytes as they came: a JSON create or update is the judged
//!   metadata re-encoded around the values the client sent (the same JSON values the
//!   relay decoded: [`splice`]), any other is re-encoded from the decoded Secret; a
//!   merge, strategic-merge or JSON patch becomes a full-object PUT of the
//!   patched copy with the judged resourceVersion as a precondition (a concurrent
//!   change gives 409 upstream, and the patch is judged again on the new copy, as
//!   kube-apiserver retries its own patches); a delete carries the judged
//!   resourceVersion and uid as preconditions. A server-side apply is forwarded as
//!   the re-encoded apply patch with the judged resourceVersion as precondition:
//!   field ownership is the API server's, so its result is judged by the hub's
//!   validating webhook, which judges every write on the stored object anyway.
//!
//! One concern per file: [`gate`] looks the hub copy up, [`object`] writes a
//! create or update, [`patch`] a patch, [`delete`] a delete, [`adopt`] records and
//! restores an adopted secret's own metadata, [`upstream`] forwards what was
//! judged, [`splice`] forwards a JSON create or update as its judged metadata with
//! the values as sent, [`offload`] decodes and encodes large bodies off the async
//! workers, and [`answer`] holds the Status answers. This file takes a write apart, sends it to
//! its verb, and holds the judgement all verbs share.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Response, StatusCode};
use secret_relay_policy::{
    ClusterId, Decision, Policy, Secret, blocked_decision, forged_stamp, uncarried_metadata,
    up_sync,
};

use self::gate::Target;
use crate::metrics::WriteLabels;
use crate::route::{SecretsRequest, Verb};
use crate::server::Relay;
use crate::status::{RelayBody, status};

mod adopt;
mod answer;
mod delete;
mod gate;
mod object;
mod offload;
mod patch;
mod splice;
mod upstream;

pub(crate) use adopt::return_to_control_plane;
pub(crate) use answer::not_found;
pub(crate) use upstream::{object_path, read_whole};

/// How many times a patch or delete is judged again after the API server says the
/// judged copy changed underneath (409).
const CONFLICT_RETRIES: usize = 3;

/// One write request, taken apart.
pub(crate) struct WriteRequest<'a> {
    /// The cluster, as the TLS accept named it from its certificate.
    pub(crate) cluster: &'a ClusterId,
    pub(crate) sr: SecretsRequest,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: Bytes,
}

/// One write: decoded, passed through the [`gate`](gate::gate), judged, forwarded.
pub(crate) async fn write(
    relay: &Relay,
    policy: &Policy,
    request: &WriteRequest<'_>,
) -> Response<RelayBody> {
    match request.sr.verb {
        Verb::Create | Verb::Update => object::write_object(relay, policy, request).await,
        Verb::Patch(kind) => patch::write_patch(relay, policy, request, kind).await,
        Verb::Delete => delete::delete(relay, policy, request).await,
        Verb::Get | Verb::List | Verb::Watch => {
            // `secrets` sends reads elsewhere; a read here is a bug, refused.
            status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "a read is not a write",
                None,
            )
        }
    }
}

/// The request's Content-Type; one that is not visible ASCII stays a (refused) media
/// type, never "none" (which reads as JSON).
fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not visible ASCII)").to_owned())
}

/// A write refused on the request alone, before any hub copy is looked up: a name
/// the policy blocks (`argocd-secret`, ...), or a create or update body blocked by
/// its type or labels. Blocked names are the policy's, not the hub's: the answer is
/// the same whether such a Secret exists or not.
fn blocked_request(policy: &Policy, name: &str, written: Option<&Secret>) -> Option<Decision> {
    let mut named = Secret::default();
    named.metadata.name = Some(name.to_owned());
    blocked_decision(policy, written.unwrap_or(&named), &format!("secret {name}"))
}

/// The up-sync decision of `written` (the object as it will be stored) against the
/// gated hub copy. `written` comes back as it went in.
fn judge(policy: &Policy, cluster: &ClusterId, written: &mut Secret, target: &Target) -> Decision {
    let hub = target.hub().map(AsRef::as_ref);
    if let Some(forged) = forged_stamp(cluster.as_str(), written, hub) {
        return forged;
    }
    // The relay trusts the agent for where it read the Secret (the agent namespace):
    // judged there, without a copy of the Secret, then put back.
    let sent = written
        .metadata
        .namespace
        .replace(policy.agent_namespace().to_owned());
    let decision = up_sync(policy, cluster.as_str(), written, hub);
    written.metadata.namespace = sent;
    // What the webhook refuses on the stored copy, refused here before it goes.
    if decision.allowed
        && let Some(uncarried) = uncarried_metadata(
            policy,
            cluster.as_str(),
            secret_relay_policy::meta::name(&written.metadata),
            written,
            hub,
        )
    {
        return uncarried;
    }
    decision
}

pub(crate) fn count_write(relay: &Relay, decision: &Decision) {
    relay
        .inner
        .metrics
        .writes
        .get_or_create(&WriteLabels {
            decision: if decision.allowed {
                "allowed"
            } else {
                "denied"
            }
            .to_owned(),
            rule: decision.rule.to_string(),
        })
        .inc();
}
