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
/// `namespace`, if any) and returns the result. See [`apply_patch_value`].
pub fn apply_patch(
    hub: Option<&Secret>,
    name: &str,
    namespace: &str,
    kind: PatchKind,
    body: &[u8],
) -> Result<Secret, PatchError> {
    let patch = crate::body::decode_patch_value(kind, body)
        .map_err(|e| PatchError::BadRequest(e.to_string()))?;
    apply_patch_value(hub, name, namespace, kind, &patch)
}

/// Applies `patch` (a decoded patch of `kind`) to `hub` and returns the result,
/// which the relay then writes whole: a merge patch as RFC 7386; a strategic-merge
/// patch the same way with its `$patch: replace` and `$patch: delete` directives on
/// maps carried out (a Secret's fields are maps and scalars), and any other
/// directive, or a list with a merge strategy (`metadata.finalizers`,
/// `metadata.ownerReferences`), refused; an apply patch as a merge (the relay's
/// early answer: field ownership is the API server's, and the webhook judges what
/// it stores); a JSON patch op by op. A result that renames the object is refused.
pub fn apply_patch_value(
    hub: Option<&Secret>,
    name: &str,
    namespace: &str,
    kind: PatchKind,
    patch: &serde_json::Value,
) -> Result<Secret, PatchError> {
    let mut base = match (hub, kind) {
        (Some(h), _) => serde_json::to_value(h)
            .map_err(|_| PatchError::BadRequest("the hub copy is not a Secret".to_owned()))?,
        (None, PatchKind::Apply) => {
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}})
        }
        (None, _) => return Err(PatchError::NotFound(name.to_owned())),
    };
    match kind {
        PatchKind::Merge | PatchKind::Apply => {
            if !patch.is_object() {
                return Err(PatchError::BadRequest(
                    "a merge or apply patch must be a JSON object".to_owned(),
                ));
            }
            json_patch::merge(&mut base, patch);
        }
        PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(PatchError::BadRequest(
                    "a strategic-merge patch must be a JSON object".to_owned(),
                ));
            }
            refuse_merge_lists(patch)?;
            strategic_merge(&mut base, patch, "")?;
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
                PatchError::BadRequest(format!("failed to decode the JSON patch: {e}"))
            })?;
            let mut copied = 0usize;
            for (i, op) in ops.iter().enumerate() {
                if let json_patch::PatchOperation::Copy(copy) = op {
                    // Each copy may double the document: bounded as kube-apiserver
                    // bounds it (jsonpatch.AccumulatedCopySizeLimit).
                    copied += base.pointer(copy.from.as_str()).map_or(0, serialized_len);
                    if copied > MAX_COPIED_BYTES {
                        return Err(PatchError::Invalid(format!(
                            "the JSON patch copies more than {MAX_COPIED_BYTES} bytes in all (operation {i})"
                        )));
                    }
                }
                json_patch::patch(&mut base, std::slice::from_ref(op))
                    .map_err(|e| PatchError::Invalid(json_patch_error(i, &e)))?;
            }
        }
    }
    let secret: Secret = serde_json::from_value(base).map_err(|_| {
        PatchError::BadRequest("the patched object is not a valid Secret".to_owned())
    })?;
    if secret.metadata.name.as_deref() != Some(name) {
        return Err(PatchError::BadRequest(
            "a patch may not change metadata.name".to_owned(),
        ));
    }
    Ok(secret)
}

/// A JSON patch failure, naming the operation and its path, never a value (a `test`
/// op's outcome on a copy is the same answer whatever its value was compared with:
/// the gate lets only the cluster's own or visible copies this far).
fn json_patch_error(index: usize, err: &json_patch::PatchError) -> String {
    format!(
        "the JSON patch does not apply: operation {index} at {} failed",
        err.path
    )
}

/// The most a JSON patch's `copy` operations may copy in all: the request body limit.
const MAX_COPIED_BYTES: usize = 3 * 1024 * 1024;

/// The length of `value` as compact JSON, counted without building it.
fn serialized_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a Value to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The lists a strategic-merge patch would merge rather than replace.
fn refuse_merge_lists(patch: &serde_json::Value) -> Result<(), PatchError> {
    let meta = patch.get("metadata").and_then(|m| m.as_object());
    for field in ["finalizers", "ownerReferences"] {
        if meta.is_some_and(|m| {
            m.keys()
                .any(|k| k == field || k.ends_with(&format!("/{field}")))
        }) {
            return Err(PatchError::BadRequest(format!(
                "the relay does not take strategic-merge patches of metadata.{field}; send a merge patch"
            )));
        }
    }
    Ok(())
}

/// A strategic merge over maps: RFC 7386, with `$patch: replace` (the map becomes
/// the patch's map) and `$patch: delete` (the map goes). Other directives are
/// refused by name.
fn strategic_merge(
    target: &mut serde_json::Value,
    patch: &serde_json::Value,
    at: &str,
) -> Result<(), PatchError> {
    let serde_json::Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if let Some(directive) = patch_map.get("$patch") {
        return match directive.as_str() {
            Some("replace") => {
                let mut replaced = patch_map.clone();
                replaced.remove("$patch");
                if let Some(k) = replaced.keys().find(|k| k.starts_with('$')) {
                    return Err(unsupported_directive(k, at));
                }
                *target = serde_json::Value::Object(replaced);
                Ok(())
            }
            Some("delete") => {
                *target = serde_json::Value::Null;
                Ok(())
            }
            _ => Err(PatchError::BadRequest(format!(
                "unknown $patch directive at {}",
                if at.is_empty() { "/" } else { at }
            ))),
        };
    }
    if let Some(k) = patch_map.keys().find(|k| k.starts_with('$')) {
        return Err(unsupported_directive(k, at));
    }
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    let serde_json::Value::Object(target_map) = target else {
        return Ok(());
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        let slot = target_map
            .entry(key.clone())
            .or_insert(serde_json::Value::Null);
        strategic_merge(slot, value, &format!("{at}/{key}"))?;
        if slot.is_null() {
            // `$patch: delete` on this map.
            target_map.remove(key);
        }
    }
    Ok(())
}

fn unsupported_directive(key: &str, at: &str) -> PatchError {
    let directive = key.split('/').next().unwrap_or(key);
    PatchError::BadRequest(format!(
        "the strategic-merge directive {directive} (at {}) is not supported by the relay; send a merge patch",
        if at.is_empty() { "/" } else { at }
    ))
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
        // `$patch: replace` replaces the whole map.
        let labels = merged.metadata.labels.unwrap();
        assert_eq!(labels.get("y").map(String::as_str), Some("2"));
        assert!(!labels.contains_key("$patch"));
        assert!(!labels.contains_key("x"));
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
            br#"{"metadata":{"name":"b","labels":{"z":"3"}}}"#,
        )
        .unwrap();
        assert_eq!(applied.metadata.name.as_deref(), Some("b"));
    }

    #[test]
    fn strategic_directives_are_carried_out_or_refused_never_dropped() {
        let strategic =
            |body: &[u8]| apply_patch(Some(&hub()), "a", "argocd", PatchKind::Strategic, body);
        let deleted = strategic(br#"{"metadata":{"labels":{"$patch":"delete"}}}"#).unwrap();
        assert_eq!(deleted.metadata.labels, None);
        // A plain strategic merge keeps what it does not name.
        let merged = strategic(br#"{"metadata":{"labels":{"y":"2"}}}"#).unwrap();
        assert_eq!(merged.metadata.labels.unwrap().len(), 2);
        for body in [
            br#"{"metadata":{"labels":{"$retainKeys":["x"]}}}"#.as_slice(),
            br#"{"metadata":{"$setElementOrder/finalizers":["a"]}}"#,
            br#"{"metadata":{"finalizers":["a"]}}"#,
            br#"{"metadata":{"labels":{"$patch":"merge"}}}"#,
        ] {
            assert!(
                matches!(strategic(body), Err(PatchError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn copies_that_would_blow_the_document_up_are_refused() {
        let doubling: Vec<serde_json::Value> = (0..40)
            .map(|_| serde_json::json!({"op": "copy", "from": "/data", "path": "/metadata/annotations"}))
            .chain((0..40).map(|_| {
                serde_json::json!({"op": "copy", "from": "/metadata", "path": "/data/x"})
            }))
            .collect();
        let mut big = hub();
        big.data = Some([("k".to_owned(), k8s_openapi::ByteString(vec![b'a'; 200_000]))].into());
        let err = apply_patch(
            Some(&big),
            "a",
            "argocd",
            PatchKind::Json,
            &serde_json::to_vec(&doubling).unwrap(),
        )
        .unwrap_err();
        assert!(
            matches!(err, PatchError::Invalid(ref m) if m.contains("copies more than")),
            "{err:?}"
        );
    }

    #[test]
    fn a_failed_json_patch_names_the_operation_never_a_value() {
        let err = apply_patch(
            Some(&hub()),
            "a",
            "argocd",
            PatchKind::Json,
            br#"[{"op":"test","path":"/data/k","value":"c2VjcmV0LWd1ZXNz"}]"#,
        )
        .unwrap_err();
        let PatchError::Invalid(message) = err else {
            panic!("{err:?}")
        };
        assert!(
            !message.contains("c2VjcmV0LWd1ZXNz") && !message.contains("dg=="),
            "{message}"
        );
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
