//! Patch types: JSON merge patch, strategic merge patch and JSON patch.

use serde_json::{Map, Value};

use crate::gojson;
use crate::resource::{Field, Schema, Struct};
use crate::status::Status;

mod strategic;

use strategic::MergeError;

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

/// What applying a patch found besides the patched object.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// The strict decoding errors of the patch body (kube-apiserver decodes it with
    /// `UnmarshalStrict` when field validation is Strict or Warn): repeated keys, and for a
    /// JSON patch also unknown fields of its operations, each prefixed `json patch `.
    pub(crate) strict: Vec<String>,
    /// For a strategic merge patch, the patch as the merge left it: kube-apiserver prints
    /// it (`%+v`) when the patched object does not decode.
    pub(crate) strategic: Option<Value>,
}

/// `handlers.jsonPatchOp`, into which kube-apiserver decodes a JSON patch to find its strict
/// decoding errors.
const JSON_PATCH_OP: Struct = Struct {
    name: "jsonPatchOp",
    fields: &[
        Field {
            name: "op",
            schema: Schema::Scalar,
            merge_key: None,
        },
        Field {
            name: "path",
            schema: Schema::Scalar,
            merge_key: None,
        },
        Field {
            name: "from",
            schema: Schema::Scalar,
            merge_key: None,
        },
        Field {
            name: "value",
            schema: Schema::Any,
            merge_key: None,
        },
    ],
};

/// Applies a merge, strategic-merge or JSON patch to `target`, an object of type `schema`,
/// decoding the body as kube-apiserver does with the Strict or Warn field validation (the
/// default): Go's `encoding/json` type errors, `Invalid JSON Patch` for a null merge patch,
/// and a null strategic or JSON patch that changes nothing. A key the body repeats is read
/// as Go reads it into a map: the later value replaces the earlier one.
pub(crate) fn apply_patch(
    kind: PatchType,
    target: &mut Value,
    body: &[u8],
    schema: Schema,
) -> Result<Applied, Status> {
    check_json(kind, body)?;
    let node = gojson::parse(body).map_err(|_| Status::bad_request("invalid JSON patch"))?;
    match kind {
        PatchType::Merge | PatchType::Strategic => apply_merge_patch(kind, target, node, schema),
        PatchType::Json => apply_json_patch(target, node),
        PatchType::Apply => Err(Status::internal_error(
            "apply patches are handled by server-side apply",
        )),
    }
}

/// A merge or strategic merge patch: the body must decode to a map (null is the empty
/// strategic patch, and refused as a merge patch).
fn apply_merge_patch(
    kind: PatchType,
    target: &mut Value,
    node: gojson::Node,
    schema: Schema,
) -> Result<Applied, Status> {
    let (patch, strict) = gojson::decode(node, Schema::Any);
    let mut patch = match patch {
        Value::Object(map) => map,
        // A merge patch decodes to a nil map, which jsonpatch.MergePatch refuses; a
        // strategic one is a patch without changes.
        Value::Null if kind == PatchType::Merge => {
            return Err(Status::bad_request("Invalid JSON Patch"));
        }
        Value::Null => {
            return Ok(Applied {
                strict,
                strategic: Some(Value::Object(Map::new())),
            });
        }
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
    if kind == PatchType::Merge {
        json_patch::merge(target, &Value::Object(patch));
        return Ok(Applied {
            strict,
            strategic: None,
        });
    }
    let original = match std::mem::take(target) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let merged = strategic::merge(original, &mut patch, schema).map_err(merge_status)?;
    *target = Value::Object(merged);
    Ok(Applied {
        strict,
        strategic: Some(Value::Object(patch)),
    })
}

/// A JSON patch: a list of operations (null changes nothing), each decoded as
/// `handlers.jsonPatchOp`, then applied in order.
fn apply_json_patch(target: &mut Value, node: gojson::Node) -> Result<Applied, Status> {
    let ops = match node.clone().into_value() {
        Value::Array(ops) => ops,
        Value::Null => return Ok(Applied::default()),
        other => {
            return Err(Status::bad_request(format!(
                "error decoding patch: json: cannot unmarshal {} into Go value of type []handlers.jsonPatchOp",
                go_json_type(&other)
            )));
        }
    };
    check_json_patch_ops(&ops)?;
    let (_, strict) = gojson::decode(node, Schema::List(&Schema::Struct(&JSON_PATCH_OP)));
    // What decodes but cannot be applied (an unknown op, a missing path, a failed
    // test) is a 422 from the patch's Apply.
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(|_| unprocessable())?;
    json_patch::patch(target, &patch).map_err(|_| unprocessable())?;
    Ok(Applied {
        strict: strict
            .into_iter()
            .map(|e| format!("json patch {e}"))
            .collect(),
        strategic: None,
    })
}

/// Go's decoding errors for operations that are not objects or whose `op`, `path` or `from`
/// is not a string.
fn check_json_patch_ops(ops: &[Value]) -> Result<(), Status> {
    for op in ops {
        match op {
            Value::Object(fields) => {
                for field in ["op", "path", "from"] {
                    if let Some(v) = fields.get(field).filter(|v| !v.is_string() && !v.is_null()) {
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
    Ok(())
}

/// kube-apiserver's answer to a strategic merge patch that cannot be applied
/// (`interpretStrategicMergePatchError` in
/// staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go): a 400 for a malformed
/// directive, a generic 422 for a list of lists, and otherwise a 500 with the error's text and
/// no reason (the error is not an API status).
fn merge_status(e: MergeError) -> Status {
    match e {
        MergeError::BadRequest(message) => Status::bad_request(message),
        MergeError::NoListOfLists => unprocessable(),
        MergeError::Other(message) => Status::new(500, "", message),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::SECRETS;

    fn apply(kind: PatchType, target: &mut Value, body: &[u8]) -> Result<Applied, Status> {
        apply_patch(kind, target, body, SECRETS.schema())
    }

    #[test]
    fn merge_patch_sets_and_removes_keys() {
        let mut t = json!({"data": {"a": "MQ==", "b": "Mg=="}});
        apply(
            PatchType::Merge,
            &mut t,
            br#"{"data": {"a": null, "c": "Mw=="}}"#,
        )
        .unwrap();
        assert_eq!(t, json!({"data": {"b": "Mg==", "c": "Mw=="}}));
    }

    #[test]
    fn a_key_a_patch_repeats_keeps_its_later_value_and_is_a_strict_error() {
        for kind in [PatchType::Merge, PatchType::Strategic] {
            let mut t = json!({"metadata": {"labels": {"a": "1"}}});
            let applied = apply(
                kind,
                &mut t,
                br#"{"metadata": {"labels": {"c": "3"}, "labels": {"z": "1"}}}"#,
            )
            .unwrap();
            assert_eq!(t, json!({"metadata": {"labels": {"a": "1", "z": "1"}}}));
            assert_eq!(applied.strict, [r#"duplicate field "metadata.labels""#]);
        }
        let mut t = json!({"metadata": {"labels": {"a": "1"}}});
        let applied = apply(
            PatchType::Json,
            &mut t,
            br#"[{"op": "add", "path": "/metadata/labels/c", "value": "1", "value": "2", "op": "add", "foo": 1}]"#,
        )
        .unwrap();
        assert_eq!(t, json!({"metadata": {"labels": {"a": "1", "c": "2"}}}));
        assert_eq!(
            applied.strict,
            [
                r#"json patch duplicate field "[0].value""#,
                r#"json patch duplicate field "[0].op""#,
                r#"json patch unknown field "[0].foo""#,
            ]
        );
    }

    #[test]
    fn a_strategic_patch_that_cannot_merge_is_answered_as_kube_apiserver_answers() {
        let status = |body: &str| {
            let mut t = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x.io/a"]}});
            let e = apply(PatchType::Strategic, &mut t, body.as_bytes()).unwrap_err();
            (e.code, e.reason, e.message)
        };
        assert_eq!(
            status(r#"{"metadata": {"labels": {"$patch": "frob"}}}"#),
            (
                500,
                String::new(),
                "unknown patch type: frob in map: map[$patch:frob]".to_owned()
            )
        );
        assert_eq!(
            status(r#"{"metadata": {"labels": {"$retainKeys": "a"}}}"#),
            (
                400,
                "BadRequest".to_owned(),
                "invalid patch format of retainKeys".to_owned()
            )
        );
    }

    #[test]
    fn failed_json_patch_test_is_422_and_changes_nothing() {
        let mut t = json!({"data": {"a": "MQ=="}});
        let err = apply(PatchType::Json, &mut t, br#"[{"op": "add", "path": "/data/b", "value": "x"}, {"op": "test", "path": "/data/a", "value": "no"}]"#).unwrap_err();
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
            let result = apply(kind, &mut t, body.as_bytes());
            result.map(|_| t).map_err(|e| (e.code, e.message))
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
