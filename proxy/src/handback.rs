//! Hand-back: the control plane's own labels and annotations of an adoptable
//! secret, kept while a cluster owns it and restored when it returns.
//!
//! An adoption replaces the whole hub copy with the cluster's Secret, so the
//! control plane's metadata would be lost for good. Before the relay forwards an
//! adoption, it records that metadata in the Secret
//! [`HANDBACK_SECRET`](secret_relay_policy::document::HANDBACK_SECRET) of the
//! control-plane namespace, one key per adoptable name, with the uid of the copy
//! it belongs to. That Secret is a built-in blocked name: no cluster sees or
//! writes it, and it is a Secret because an annotation (such as kubectl's
//! last-applied configuration) may hold a value. When the copy returns, the relay
//! restores exactly what it recorded and forgets the entry. A copy adopted before any record (or by break-glass) returns
//! with no labels or annotations: nothing of the cluster's metadata stays.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use kube::Api;
use kube::api::PostParams;
use secret_relay_policy::document::HANDBACK_SECRET;
use secret_relay_policy::{Secret, keys, meta};
use serde::{Deserialize, Serialize};

use crate::server::Relay;

/// How many times a record is written again after a concurrent change of the
/// hand-back Secret (409).
const RETRIES: usize = 5;

/// The metadata of one adoptable secret, from before its adoption.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Kept {
    /// The uid of the hub copy it was taken from: a record of another object of
    /// the same name is not restored.
    pub(crate) uid: Option<String>,
    /// Its labels.
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    /// Its annotations, without secret-relay's own stamps.
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
}

impl Kept {
    /// What `hub`, still the control plane's, carries of its own.
    pub(crate) fn of(hub: &Secret) -> Kept {
        let mut annotations = hub.metadata.annotations.clone().unwrap_or_default();
        // An old version's digest of the values is not kept (nor restored).
        annotations.remove(keys::DIGEST_ANNOTATION);
        annotations.remove(keys::ADOPTED_ANNOTATION);
        let mut labels = meta::labels(&hub.metadata).clone();
        labels.remove(keys::OWNER_LABEL);
        Kept {
            uid: hub.metadata.uid.clone(),
            labels,
            annotations,
        }
    }
}

/// Why the hand-back Secret could not be read or written (no value is in it).
#[derive(Debug, thiserror::Error)]
#[error("the hand-back record {cp}/{HANDBACK_SECRET} could not be {what}: {source}")]
pub(crate) struct HandbackError {
    cp: String,
    what: &'static str,
    source: kube::Error,
}

fn api(relay: &Relay, cp: &str) -> Api<Secret> {
    Api::namespaced(relay.inner.upstream.clone(), cp)
}

/// Records `hub`'s own metadata before a cluster adopts it. An error refuses the
/// adoption: without the record, the return could not give the metadata back.
pub(crate) async fn record(relay: &Relay, cp: &str, hub: &Secret) -> Result<(), HandbackError> {
    let name = meta::name(&hub.metadata);
    let kept = serde_json::to_vec(&Kept::of(hub)).expect("metadata always serializes");
    change(relay, cp, |data| {
        data.insert(name.to_owned(), ByteString(kept.clone()));
        true
    })
    .await
}

/// What to restore on `hub` when it returns: its record if it was taken from this
/// very object, else nothing.
pub(crate) async fn recorded(relay: &Relay, cp: &str, hub: &Secret) -> Result<Kept, HandbackError> {
    let name = meta::name(&hub.metadata);
    let found = api(relay, cp)
        .get_opt(HANDBACK_SECRET)
        .await
        .map_err(|source| HandbackError {
            cp: cp.to_owned(),
            what: "read",
            source,
        })?;
    let kept = found
        .and_then(|s| s.data)
        .and_then(|d| d.get(name).cloned())
        .and_then(|b| serde_json::from_slice::<Kept>(&b.0).ok())
        .filter(|k| k.uid.is_some() && k.uid == hub.metadata.uid);
    Ok(kept.unwrap_or_default())
}

/// Drops the record of `name` once it is restored (best effort: a stale record
/// is never restored onto another object, see [`recorded`]).
pub(crate) async fn forget(relay: &Relay, cp: &str, name: &str) {
    if let Err(err) = change(relay, cp, |data| data.remove(name).is_some()).await {
        tracing::debug!(%name, error = %err, "a hand-back record was left behind");
    }
}

/// Reads, changes and writes the hand-back Secret under its resourceVersion,
/// creating it when absent; `edit` says whether it changed anything.
async fn change(
    relay: &Relay,
    cp: &str,
    edit: impl Fn(&mut BTreeMap<String, ByteString>) -> bool,
) -> Result<(), HandbackError> {
    let api = api(relay, cp);
    let fail = |what, source| HandbackError {
        cp: cp.to_owned(),
        what,
        source,
    };
    let mut last = None;
    for _ in 0..RETRIES {
        let current = api
            .get_opt(HANDBACK_SECRET)
            .await
            .map_err(|e| fail("read", e))?;
        let written = match current {
            Some(mut s) => {
                let mut data = s.data.take().unwrap_or_default();
                if !edit(&mut data) {
                    return Ok(());
                }
                s.data = Some(data);
                s.metadata.managed_fields = None;
                api.replace(HANDBACK_SECRET, &PostParams::default(), &s)
                    .await
            }
            None => {
                let mut data = BTreeMap::new();
                if !edit(&mut data) {
                    return Ok(());
                }
                let mut s = Secret::default();
                s.metadata.name = Some(HANDBACK_SECRET.to_owned());
                s.metadata.namespace = Some(cp.to_owned());
                s.data = Some(data);
                api.create(&PostParams::default(), &s).await
            }
        };
        match written {
            Ok(_) => return Ok(()),
            // Changed or created meanwhile (another relay replica): read again.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                last = Some(kube::Error::Api(status));
            }
            Err(err) => return Err(fail("written", err)),
        }
    }
    Err(fail(
        "written",
        last.unwrap_or_else(|| kube::Error::Service("kept changing".into())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_the_control_planes_own_metadata_without_secret_relays_stamps() {
        let hub: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "argocd-notifications-secret", "namespace": "argocd", "uid": "u1",
                "labels": {"app.kubernetes.io/part-of": "argocd", "secret-relay.io/owner": "control-plane"},
                "annotations": {"secret-relay.io/digest": "sha256:00", "note": "cp"}},
            "data": {"token": "Y3A="},
        }))
        .unwrap();
        let kept = Kept::of(&hub);
        assert_eq!(kept.uid.as_deref(), Some("u1"));
        assert_eq!(
            kept.labels.keys().collect::<Vec<_>>(),
            ["app.kubernetes.io/part-of"]
        );
        assert_eq!(kept.annotations.keys().collect::<Vec<_>>(), ["note"]);
        // Metadata only: no value of the Secret is in the record.
        let json = serde_json::to_string(&kept).unwrap();
        assert!(!json.contains("Y3A="), "{json}");
    }
}
