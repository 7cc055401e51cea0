//! What one copy records of another, never a value in it: the data
//! [`digest`] and the [`source_marker`] of a down copy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

/// `sha256:<hex>` over the canonical data: `data` with `stringData` merged
/// over it (as the API server does), keys sorted, each key and value
/// length-prefixed. An in-memory comparison for whoever holds both values (the
/// agent's fingerprint, the webhook's check that a return keeps the data): it is
/// unkeyed, so anyone who saw it could confirm a guessed value offline, and it is
/// never stored, logged or shown.
pub fn digest(secret: &Secret) -> String {
    let mut merged: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        merged.insert(k, &v.0);
    }
    for (k, v) in secret.string_data.iter().flatten() {
        merged.insert(k, v.as_bytes());
    }
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (k, v) in merged {
        ctx.update(&(k.len() as u64).to_be_bytes());
        ctx.update(k.as_bytes());
        ctx.update(&(v.len() as u64).to_be_bytes());
        ctx.update(v);
    }
    let hash = ctx.finish();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What a down copy records of the hub copy it was written from:
/// `<uid>/<resourceVersion>`, metadata any reader of the hub copy already sees and
/// no function of its values. `None` for a Secret without both (never one the API
/// server serves). The agent writes it on down copies
/// ([`keys::SOURCE_ANNOTATION`]); the Secrets page, which reads managed clusters'
/// metadata only, compares it with the hub copy it lists.
pub fn source_marker(hub: &Secret) -> Option<String> {
    let uid = hub.metadata.uid.as_deref().filter(|u| !u.is_empty())?;
    let rv = hub
        .metadata
        .resource_version
        .as_deref()
        .filter(|v| !v.is_empty())?;
    Some(format!("{uid}/{rv}"))
}
