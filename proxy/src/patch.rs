//! The object a patch would produce: a pure function over the current hub copy and
//! the patch body, for the relay's decision (the API server applies the real patch;
//! the webhook judges its result).

use secret_relay_policy::Secret;

use crate::route::PatchKind;

/// Why a patch body gives no Secret to decide on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// Nothing to patch: no hub copy of that name (only an apply creates one).
    #[error("secrets \"{0}\" not found")]
    NotFound(String),
    /// The body is not a patch of its kind, or the result is not a Secret (400).
    #[error("{0}")]
    BadRequest(String),
    /// A JSON patch whose operations do not apply (422).
    #[error("{0}")]
    Invalid(String),
}

/// Applies `body`, a patch of `kind`, to `hub` (the current copy of `name` in
/// `namespace`, if any) and returns the result. A merge, strategic-merge or apply
/// patch is applied as a JSON merge (strategic directives dropped: a Secret has no
/// merge keys); a JSON patch op by op. A result that renames the object is refused.
pub fn apply_patch(
    hub: Option<&Secret>,
    name: &str,
    namespace: &str,
    kind: PatchKind,
    body: &[u8],
) -> Result<Secret, PatchError> {
    let mut base = match (hub, kind) {
        (Some(h), _) => serde_json::to_value(h).unwrap_or_default(),
        (None, PatchKind::Apply) => {
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}})
        }
        (None, _) => return Err(PatchError::NotFound(name.to_owned())),
    };
    match kind {
        PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
            let mut patch: serde_json::Value = if kind == PatchKind::Apply {
                serde_yaml::from_slice(body).map_err(|e| {
                    PatchError::BadRequest(format!("failed to decode the apply patch: {e}"))
                })?
            } else {
                serde_json::from_slice(body).map_err(|e| {
                    PatchError::BadRequest(format!("failed to decode the patch: {e}"))
                })?
            };
            strip_directives(&mut patch);
            json_patch::merge(&mut base, &patch);
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body).map_err(|e| {
                PatchError::BadRequest(format!("failed to decode the JSON patch: {e}"))
            })?;
            json_patch::patch(&mut base, &ops)
                .map_err(|e| PatchError::Invalid(format!("the JSON patch does not apply: {e}")))?;
        }
    }
    let secret: Secret = serde_json::from_value(base)
        .map_err(|e| PatchError::BadRequest(format!("the patched object is not a Secret: {e}")))?;
    if secret.metadata.name.as_deref() != Some(name) {
        return Err(PatchError::BadRequest(
            "a patch may not change metadata.name".to_owned(),
        ));
    }
    Ok(secret)
}

/// Drops strategic-merge directives (`$patch`, `$setElementOrder/...`, `$retainKeys`).
fn strip_directives(value: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = value {
        map.retain(|k, _| !k.starts_with('$'));
        for v in map.values_mut() {
            strip_directives(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "namespace": "argocd", "labels": {"x": "1"}},
            "data": {"k": "dg=="},
        }))
        .unwrap()
    }

    #[test]
    fn each_patch_kind_gives_the_patched_secret() {
        let merged = apply_patch(
            Some(&hub()),
            "a",
            "argocd",
            PatchKind::Strategic,
            br#"{"metadata":{"labels":{"y":"2","$patch":"replace"}}}"#,
        )
        .unwrap();
        let labels = merged.metadata.labels.unwrap();
        assert_eq!(labels.get("y").map(String::as_str), Some("2"));
        assert!(!labels.contains_key("$patch"));
        let json = apply_patch(
            Some(&hub()),
            "a",
            "argocd",
            PatchKind::Json,
            br#"[{"op":"remove","path":"/metadata/labels/x"}]"#,
        )
        .unwrap();
        assert!(json.metadata.labels.unwrap().is_empty());
        let applied = apply_patch(
            None,
            "b",
            "argocd",
            PatchKind::Apply,
            b"metadata:\n  name: b\n  labels: {z: '3'}\n",
        )
        .unwrap();
        assert_eq!(applied.metadata.name.as_deref(), Some("b"));
    }

    #[test]
    fn bad_patches_are_refused_with_their_kind_of_error() {
        assert_eq!(
            apply_patch(None, "a", "argocd", PatchKind::Merge, b"{}"),
            Err(PatchError::NotFound("a".to_owned()))
        );
        assert!(matches!(
            apply_patch(Some(&hub()), "a", "argocd", PatchKind::Merge, b"{"),
            Err(PatchError::BadRequest(_))
        ));
        assert!(matches!(
            apply_patch(
                Some(&hub()),
                "a",
                "argocd",
                PatchKind::Json,
                br#"[{"op":"test","path":"/metadata/name","value":"b"}]"#
            ),
            Err(PatchError::Invalid(_))
        ));
        assert!(matches!(
            apply_patch(
                Some(&hub()),
                "a",
                "argocd",
                PatchKind::Merge,
                br#"{"metadata":{"name":"b"}}"#
            ),
            Err(PatchError::BadRequest(_))
        ));
    }
}
