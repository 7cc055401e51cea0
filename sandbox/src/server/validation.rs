//! Validation: kube's validation of each kind on create and update (ObjectMeta, Secret and
//! ConfigMap data, webhook configurations, Events), as a 422 Invalid listing every fault.

use base64::Engine as _;
use serde_json::Value;

use super::objects::meta_str;
use crate::resource::ResourceKind;
use crate::status::{FieldError, Status};
use crate::validate;

/// kube's validation of a kind; `old` for updates.
pub(super) fn validate_object(
    kind: &ResourceKind,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), Status> {
    let mut errs: Vec<FieldError> = Vec::new();
    validate::object_meta(obj, kind.index == 0, &mut errs);
    if let Some(old) = old
        && old["metadata"]["name"] != obj["metadata"]["name"]
    {
        errs.push(FieldError::invalid(
            "metadata.name",
            meta_str(obj, "name"),
            "field is immutable",
        ));
    }
    match kind.index {
        1 => validate_secret(obj, old, &mut errs),
        2 => validate_config_map(obj, old, &mut errs),
        3 | 4 => validate_webhooks(obj, &mut errs),
        5 => validate_event(obj, &mut errs),
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Status::invalid(
            kind.kind,
            kind.group,
            meta_str(obj, "name"),
            &errs,
        ))
    }
}

/// A Secret: its data keys and size, the keys its type requires, and on update its type and
/// (when immutable) its data.
fn validate_secret(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let total = validate::data_keys(
        "data",
        obj.get("data"),
        |v| {
            v.as_str()
                .and_then(|s| b64.decode(s).ok())
                .map_or(0, |b| b.len())
        },
        errs,
    );
    if total > validate::MAX_DATA_BYTES {
        errs.push(FieldError::too_long("data", validate::MAX_DATA_BYTES));
    }
    let ty = obj["type"].as_str().unwrap_or_default();
    let has = |k: &str| obj["data"].get(k).is_some();
    match ty {
        "kubernetes.io/service-account-token"
            if obj["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                .as_str()
                .is_none_or(str::is_empty) =>
        {
            errs.push(FieldError::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            ));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(FieldError::required(format!("data[{k}]"), ""));
                }
            }
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(FieldError::required("data[.dockerconfigjson]", ""));
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required("data[username]", ""));
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => {
            errs.push(FieldError::required("data[ssh-privatekey]", ""));
        }
        _ => {}
    }
    if let Some(old) = old {
        if old["type"] != obj["type"] {
            errs.push(FieldError::invalid("type", ty, "field is immutable"));
        }
        immutable_checks(old, obj, &["data"], errs);
    }
}

/// A ConfigMap: its data and binaryData keys, no key in both, their size, and on update
/// (when immutable) its data.
fn validate_config_map(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let total = validate::data_keys(
        "data",
        obj.get("data"),
        |v| v.as_str().map_or(0, str::len),
        errs,
    ) + validate::data_keys(
        "binaryData",
        obj.get("binaryData"),
        |v| v.as_str().map_or(0, str::len),
        errs,
    );
    if let (Some(d), Some(b)) = (obj["data"].as_object(), obj["binaryData"].as_object()) {
        for k in d.keys().filter(|k| b.contains_key(*k)) {
            errs.push(FieldError::invalid(
                format!("data[{k}]"),
                k,
                "duplicate of key present in binaryData",
            ));
        }
    }
    if total > validate::MAX_DATA_BYTES {
        errs.push(FieldError::too_long("", validate::MAX_DATA_BYTES));
    }
    if let Some(old) = old {
        immutable_checks(old, obj, &["data", "binaryData"], errs);
    }
}

/// A webhook configuration: each webhook's unique name, sideEffects and
/// admissionReviewVersions.
fn validate_webhooks(obj: &Value, errs: &mut Vec<FieldError>) {
    let mut names = std::collections::BTreeSet::new();
    for (i, hook) in obj["webhooks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let name = hook["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            errs.push(FieldError::required(format!("webhooks[{i}].name"), ""));
        } else if !names.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(format!("webhooks[{i}].name"), name));
        }
        if hook["sideEffects"].is_null() {
            errs.push(FieldError::required(
                format!("webhooks[{i}].sideEffects"),
                "",
            ));
        }
        if hook["admissionReviewVersions"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            errs.push(FieldError::required(
                format!("webhooks[{i}].admissionReviewVersions"),
                "must specify one of v1, v1beta1",
            ));
        }
    }
}

/// The subset of `ValidateEventCreate`/`Update` (events.k8s.io/v1) that an event
/// recorder meets: the fields every v1 Event needs, its type, the length of its
/// note.
fn validate_event(obj: &Value, errs: &mut Vec<FieldError>) {
    for field in [
        "eventTime",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        if obj[field].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required(field, ""));
        }
    }
    match obj["type"].as_str() {
        Some("Normal" | "Warning") => {}
        other => errs.push(FieldError::not_supported(
            "type",
            other.unwrap_or_default(),
            &["Normal", "Warning"],
        )),
    }
    if obj["note"].as_str().is_some_and(|n| n.len() > 1024) {
        errs.push(FieldError::too_long("note", 1024));
    }
}

fn immutable_checks(old: &Value, obj: &Value, data_fields: &[&str], errs: &mut Vec<FieldError>) {
    if old["immutable"].as_bool() == Some(true) {
        if obj["immutable"].as_bool() != Some(true) {
            errs.push(FieldError::forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            ));
        }
        for f in data_fields {
            if old[*f] != obj[*f] {
                errs.push(FieldError::forbidden(
                    *f,
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::SECRETS;

    #[test]
    fn immutable_secret_data_cannot_change() {
        let old = json!({"metadata": {"name": "s"}, "type": "Opaque", "immutable": true, "data": {"a": "MQ=="}});
        let new = json!({"metadata": {"name": "s"}, "type": "Opaque", "immutable": true, "data": {"a": "Mg=="}});
        let err = validate_object(&SECRETS, &new, Some(&old)).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "Secret \"s\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
        );
        let retyped = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "immutable": true, "data": {"a": "MQ==", "username": "dQ=="}});
        let err = validate_object(&SECRETS, &retyped, Some(&old)).unwrap_err();
        assert!(
            err.message
                .contains("type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"),
            "{}",
            err.message
        );
    }
}
