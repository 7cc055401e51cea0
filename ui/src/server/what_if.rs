//! The answers that write nothing: a write's preview and a Secret's explanation,
//! judged by the policy on the page's copies (values dropped) or a pasted manifest.

use http::{Response, StatusCode};

use super::Body;
use super::wire::{invalid, json_response};
use crate::edit::{self, PreviewRequest};
use crate::explain::{self, ExplainRequest};
use crate::state::Shared;

/// `POST /api/preview`: where a create or an edit would go, and what refuses it.
pub(super) fn preview(shared: &Shared, p: &PreviewRequest) -> Response<Body> {
    let existing = p.existing.as_deref().and_then(|n| shared.secret(n));
    let policy = shared.policy.policy();
    json_response(
        StatusCode::OK,
        &edit::preview(&policy, p, existing.as_ref()),
    )
}

/// `POST /api/explain`: every answer for a pasted manifest or a hub copy.
pub(super) fn explain(shared: &Shared, req: ExplainRequest) -> Response<Body> {
    let snap = shared.snapshot();
    let policy = &snap.policy;
    let (secret, pasted) = match (&req.manifest, &req.name) {
        (Some(text), _) if !text.trim().is_empty() => match explain::parse_manifest(text) {
            Ok(s) => (s, true),
            Err(message) => return invalid(&message),
        },
        (_, Some(name)) => match snap.inner.secrets.items.get(name) {
            Some(s) => (s.clone(), false),
            None => {
                return invalid(&format!(
                    "there is no Secret {name} in {}",
                    policy.control_plane_namespace()
                ));
            }
        },
        _ => return invalid("paste a Secret manifest or pick a Secret"),
    };
    let name = secret.metadata.name.clone().unwrap_or_default();
    let hub = snap.inner.secrets.items.get(&name);
    let locals = snap
        .inner
        .clusters
        .iter()
        .filter(|(_, r)| r.secrets_synced)
        .map(|(c, r)| (c.clone(), r.secrets.get(&name).cloned()))
        .collect();
    json_response(
        StatusCode::OK,
        &explain::explain(policy, &secret, pasted, hub, &locals),
    )
}
