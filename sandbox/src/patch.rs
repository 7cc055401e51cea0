//! Patch types: JSON merge patch, strategic merge patch (as merge for these kinds) and JSON patch.

use serde_json::Value;

use crate::status::{Status, StatusCause};

/// The patch types kube-apiserver accepts, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchType {
    /// The patch type of a Content-Type, or 415.
    pub(crate) fn from_content_type(ct: &str) -> Result<Self, Status> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/json-patch+json" => Ok(Self::Json),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            other => Err(Status::new(
                415,
                "UnsupportedMediaType",
                format!("the server does not support the media type {other:?} for a patch"),
            )),
        }
    }
}

/// Applies a merge, strategic-merge or JSON patch to `target`.
pub(crate) fn apply_patch(kind: PatchType, target: &mut Value, body: &[u8]) -> Result<(), Status> {
    match kind {
        PatchType::Merge | PatchType::Strategic => {
            let mut patch: Value = serde_json::from_slice(body)
                .map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
            if !patch.is_object() {
                return Err(Status::bad_request(
                    "error decoding patch: the patch is not a JSON object",
                ));
            }
            if kind == PatchType::Strategic {
                strip_directives(&mut patch);
            }
            json_patch::merge(target, &patch);
            Ok(())
        }
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(target, &patch).map_err(|e| {
                let mut status = Status::new(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                );
                status.causes = vec![StatusCause {
                    reason: "UnexpectedServerResponse".into(),
                    message: e.to_string(),
                    field: String::new(),
                }];
                status
            })
        }
        PatchType::Apply => Err(Status::internal_error(
            "apply patches are handled by server-side apply",
        )),
    }
}

/// Drops strategic-merge directives (`$setElementOrder/...`, `$patch`, `$retainKeys`,
/// `$deleteFromPrimitiveList/...`), which are meaningless for maps of strings.
fn strip_directives(v: &mut Value) {
    if let Value::Object(map) = v {
        map.retain(|k, _| !k.starts_with('$'));
        for child in map.values_mut() {
            strip_directives(child);
        }
    } else if let Value::Array(items) = v {
        for item in items {
            strip_directives(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_sets_and_removes_keys() {
        let mut t = json!({"data": {"a": "MQ==", "b": "Mg=="}});
        apply_patch(
            PatchType::Merge,
            &mut t,
            br#"{"data": {"a": null, "c": "Mw=="}}"#,
        )
        .unwrap();
        assert_eq!(t, json!({"data": {"b": "Mg==", "c": "Mw=="}}));
    }

    #[test]
    fn strategic_directives_are_dropped() {
        let mut t = json!({"metadata": {"labels": {"a": "1"}}});
        apply_patch(
            PatchType::Strategic,
            &mut t,
            br#"{"$setElementOrder/x": [], "metadata": {"labels": {"b": "2", "$patch": "merge"}}}"#,
        )
        .unwrap();
        assert_eq!(t, json!({"metadata": {"labels": {"a": "1", "b": "2"}}}));
    }

    #[test]
    fn failed_json_patch_test_is_422_and_changes_nothing() {
        let mut t = json!({"data": {"a": "MQ=="}});
        let err = apply_patch(PatchType::Json, &mut t, br#"[{"op": "add", "path": "/data/b", "value": "x"}, {"op": "test", "path": "/data/a", "value": "no"}]"#).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(t, json!({"data": {"a": "MQ=="}}));
    }

    #[test]
    fn unknown_patch_type_is_415() {
        assert_eq!(
            PatchType::from_content_type("application/vnd.kubernetes.protobuf")
                .unwrap_err()
                .code,
            415
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchType::Merge
        );
    }
}
