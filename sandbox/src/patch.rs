//! Patch types: JSON merge patch, strategic merge patch (as merge for these kinds) and JSON patch.

use serde_json::Value;

use crate::status::Status;

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
                merge_webhooks_by_name(target, &mut patch);
                strip_directives(&mut patch);
            }
            json_patch::merge(target, &patch);
            Ok(())
        }
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
            // kube-apiserver answers a failed operation with
            // NewGenericServerResponse(422, ..., isUnexpectedResponse=false): the generic
            // message and no cause, so the operation's error is not shown to the client
            // (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go).
            json_patch::patch(target, &patch).map_err(|_| {
                Status::new(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                )
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

/// Strategic merge of a webhook configuration's `webhooks`, a list merged by `name`
/// (`patchMergeKey: name`): each patch entry is merged into the entry of the same name
/// (or appended, or removed with `$patch: delete`), in `$setElementOrder/webhooks` order
/// when given. The merged list replaces the patch's, so the plain merge that follows keeps it.
fn merge_webhooks_by_name(target: &Value, patch: &mut Value) {
    let Some(patch_map) = patch.as_object_mut() else {
        return;
    };
    let order = patch_map.remove("$setElementOrder/webhooks");
    let Some(Value::Array(entries)) = patch_map.get("webhooks") else {
        return;
    };
    let name_of = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_owned);
    if !entries.iter().all(|e| name_of(e).is_some()) {
        return;
    }
    let mut merged: Vec<Value> = target
        .get("webhooks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for entry in entries {
        let name = name_of(entry);
        let position = merged.iter().position(|m| name_of(m) == name);
        if entry.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = position {
                merged.remove(i);
            }
            continue;
        }
        let mut entry = entry.clone();
        strip_directives(&mut entry);
        match position {
            Some(i) => json_patch::merge(&mut merged[i], &entry),
            None => merged.push(entry),
        }
    }
    if let Some(Value::Array(order)) = order {
        let rank = |v: &Value| {
            order
                .iter()
                .position(|o| name_of(o) == name_of(v))
                .unwrap_or(usize::MAX)
        };
        merged.sort_by_key(rank);
    }
    patch_map.insert("webhooks".to_owned(), Value::Array(merged));
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
    fn strategic_patch_merges_webhooks_by_name() {
        let mut t = json!({"webhooks": [
            {"name": "a", "sideEffects": "None", "rules": [{"scope": "*", "resources": ["secrets"]}]},
            {"name": "b", "sideEffects": "None"},
        ]});
        apply_patch(
            PatchType::Strategic,
            &mut t,
            br#"{"$setElementOrder/webhooks": [{"name": "c"}, {"name": "a"}],
                "webhooks": [{"name": "a", "rules": [{"resources": ["configmaps"]}]},
                             {"name": "b", "$patch": "delete"},
                             {"name": "c", "sideEffects": "None"}]}"#,
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"webhooks": [
                {"name": "c", "sideEffects": "None"},
                {"name": "a", "sideEffects": "None", "rules": [{"resources": ["configmaps"]}]},
            ]})
        );
    }

    #[test]
    fn failed_json_patch_test_is_422_and_changes_nothing() {
        let mut t = json!({"data": {"a": "MQ=="}});
        let err = apply_patch(PatchType::Json, &mut t, br#"[{"op": "add", "path": "/data/b", "value": "x"}, {"op": "test", "path": "/data/a", "value": "no"}]"#).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(err.reason, "Invalid");
        assert_eq!(
            err.message,
            "the server rejected our request due to an error in our request"
        );
        assert!(err.causes.is_empty(), "kube-apiserver sends no cause");
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
