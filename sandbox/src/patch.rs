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

/// The Go `encoding/json` name of a JSON value's type, as in "cannot unmarshal string".
fn go_json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A patch body that is not JSON: kube-apiserver's handler refuses it before anything else,
/// even for a missing object (`validateAndTranscodePatch` in
/// staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go).
pub(crate) fn check_json(kind: PatchType, body: &[u8]) -> Result<(), Status> {
    if kind != PatchType::Apply && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        return Err(Status::bad_request("invalid JSON patch"));
    }
    Ok(())
}

/// kube-apiserver's answer to a JSON patch operation that cannot be applied:
/// NewGenericServerResponse(422, ..., isUnexpectedResponse=false), the generic message with
/// empty details and no cause, so the operation's error is not shown to the client.
fn unprocessable() -> Status {
    let mut status = Status::new(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
    );
    status.empty_details = true;
    status
}

/// Applies a merge, strategic-merge or JSON patch to `target`, decoding the body as
/// kube-apiserver does with the Strict or Warn field validation (the default): Go's
/// `encoding/json` type errors, `Invalid JSON Patch` for a null merge patch, and a null
/// strategic or JSON patch that changes nothing.
pub(crate) fn apply_patch(kind: PatchType, target: &mut Value, body: &[u8]) -> Result<(), Status> {
    check_json(kind, body)?;
    let patch: Value =
        serde_json::from_slice(body).map_err(|_| Status::bad_request("invalid JSON patch"))?;
    match kind {
        PatchType::Merge | PatchType::Strategic => {
            let mut patch = match patch {
                Value::Object(_) => patch,
                // A merge patch decodes to a nil map, which jsonpatch.MergePatch refuses; a
                // strategic one is a patch without changes.
                Value::Null if kind == PatchType::Merge => {
                    return Err(Status::bad_request("Invalid JSON Patch"));
                }
                Value::Null => return Ok(()),
                other => {
                    // The merge patcher prefixes its decoding error; strategicPatchObject
                    // does not.
                    let prefix = if kind == PatchType::Merge {
                        "error decoding patch: "
                    } else {
                        ""
                    };
                    return Err(Status::bad_request(format!(
                        "{prefix}json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                        go_json_type(&other)
                    )));
                }
            };
            if kind == PatchType::Strategic {
                merge_webhooks_by_name(target, &mut patch);
                strip_directives(&mut patch);
            }
            json_patch::merge(target, &patch);
            Ok(())
        }
        PatchType::Json => {
            let ops = match patch {
                Value::Array(ops) => ops,
                Value::Null => return Ok(()),
                other => {
                    return Err(Status::bad_request(format!(
                        "error decoding patch: json: cannot unmarshal {} into Go value of type []handlers.jsonPatchOp",
                        go_json_type(&other)
                    )));
                }
            };
            for op in &ops {
                match op {
                    Value::Object(fields) => {
                        for field in ["op", "path", "from"] {
                            if let Some(v) =
                                fields.get(field).filter(|v| !v.is_string() && !v.is_null())
                            {
                                return Err(Status::bad_request(format!(
                                    "error decoding patch: json: cannot unmarshal {} into Go struct field jsonPatchOp.{field} of type string",
                                    go_json_type(v)
                                )));
                            }
                        }
                    }
                    Value::Null => {}
                    other => {
                        return Err(Status::bad_request(format!(
                            "error decoding patch: json: cannot unmarshal {} into Go value of type handlers.jsonPatchOp",
                            go_json_type(other)
                        )));
                    }
                }
            }
            // What decodes but cannot be applied (an unknown op, a missing path, a failed
            // test) is a 422 from the patch's Apply.
            let patch: json_patch::Patch =
                serde_json::from_value(Value::Array(ops)).map_err(|_| unprocessable())?;
            json_patch::patch(target, &patch).map_err(|_| unprocessable())
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
        assert_eq!(err.to_json()["details"], json!({}));
        assert_eq!(t, json!({"data": {"a": "MQ=="}}));
    }

    #[test]
    fn patch_bodies_that_do_not_decode_are_worded_as_go_words_them() {
        let message = |kind, body: &str| {
            let mut t = json!({"data": {}});
            let result = apply_patch(kind, &mut t, body.as_bytes());
            result.map(|()| t).map_err(|e| (e.code, e.message))
        };
        assert_eq!(
            message(PatchType::Merge, "{").unwrap_err(),
            (400, "invalid JSON patch".to_owned())
        );
        assert_eq!(
            message(PatchType::Json, "").unwrap_err(),
            (400, "invalid JSON patch".to_owned())
        );
        assert_eq!(
            message(PatchType::Merge, "[1]").unwrap_err().1,
            "error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}"
        );
        assert_eq!(
            message(PatchType::Strategic, "true").unwrap_err().1,
            "json: cannot unmarshal bool into Go value of type map[string]interface {}"
        );
        assert_eq!(
            message(PatchType::Merge, "null").unwrap_err(),
            (400, "Invalid JSON Patch".to_owned())
        );
        assert_eq!(
            message(PatchType::Strategic, "null").unwrap(),
            json!({"data": {}})
        );
        assert_eq!(
            message(PatchType::Json, "null").unwrap(),
            json!({"data": {}})
        );
        assert_eq!(
            message(PatchType::Json, r#"{"op": "add"}"#).unwrap_err().1,
            "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp"
        );
        assert_eq!(
            message(PatchType::Json, r#"[{"op": "add", "path": 1}]"#)
                .unwrap_err()
                .1,
            "error decoding patch: json: cannot unmarshal number into Go struct field jsonPatchOp.path of type string"
        );
        assert_eq!(
            message(PatchType::Json, "[1]").unwrap_err().1,
            "error decoding patch: json: cannot unmarshal number into Go value of type handlers.jsonPatchOp"
        );
        assert_eq!(
            message(PatchType::Json, r#"[{"op": "frob", "path": "/data"}]"#)
                .unwrap_err()
                .0,
            422
        );
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
