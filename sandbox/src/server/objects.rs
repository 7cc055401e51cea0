//! Server-side object handling: server-set metadata, kind defaults, validation.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::meta;
use crate::resource::ResourceKind;
use crate::status::{FieldError, Status};
use crate::validate;

pub(super) fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

pub(super) fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        // metadata was made an object just above
        _ => unreachable!("metadata is an object"),
    }
}

/// Fills server-set metadata and kind defaults; merges Secret stringData into data.
pub(super) fn prepare(
    kind: &ResourceKind,
    obj: &mut Value,
    old: Option<&Value>,
    keep_managed_fields: bool,
) -> Result<(), Status> {
    obj["apiVersion"] = json!(kind.api_version());
    obj["kind"] = json!(kind.kind);
    let name = meta_str(obj, "name").to_owned();
    let meta = meta_mut(obj);
    for k in [
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        meta.remove(k);
    }
    if !keep_managed_fields {
        meta.remove("managedFields");
    }
    match old {
        Some(old) => {
            for k in ["uid", "creationTimestamp"] {
                match old["metadata"].get(k) {
                    Some(v) => meta.insert(k.into(), v.clone()),
                    None => meta.remove(k),
                };
            }
            if !keep_managed_fields && let Some(mf) = old["metadata"].get("managedFields") {
                meta.insert("managedFields".into(), mf.clone());
            }
        }
        None => {
            // uid and creationTimestamp come after mutating admission (before_create).
            for k in ["uid", "creationTimestamp", "resourceVersion"] {
                meta.remove(k);
            }
        }
    }
    if meta
        .get("labels")
        .is_some_and(|l| l.as_object().is_some_and(serde_json::Map::is_empty) || l.is_null())
    {
        meta.remove("labels");
    }
    if meta
        .get("annotations")
        .is_some_and(|l| l.as_object().is_some_and(serde_json::Map::is_empty) || l.is_null())
    {
        meta.remove("annotations");
    }
    match kind.index {
        0 => {
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = json!(name);
            // A new namespace's finalizers and phase come from PrepareForCreate, after the
            // field manager (before_create); an update keeps the old ones.
            if let Some(old) = old {
                if obj["spec"]["finalizers"].is_null() {
                    obj["spec"] = json!({"finalizers": old["spec"]["finalizers"].clone()});
                }
                obj["status"] = old["status"].clone();
            }
        }
        1 => prepare_secret(obj)?,
        3 | 4 => {
            default_webhooks(obj, kind.index == 3);
            // admissionregistration objects count spec changes in metadata.generation
            let generation = match old {
                None => 1,
                Some(old) => {
                    let before = old["metadata"]["generation"].as_i64().unwrap_or(1);
                    if old["webhooks"] == obj["webhooks"] {
                        before
                    } else {
                        before + 1
                    }
                }
            };
            meta_mut(obj).insert("generation".into(), json!(generation));
        }
        _ => {}
    }
    Ok(())
}

fn prepare_secret(obj: &mut Value) -> Result<(), Status> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(data) = obj.get("data").and_then(Value::as_object) {
        for v in data.values() {
            let s = v.as_str().ok_or_else(|| {
                Status::bad_request("Secret in version \"v1\" cannot be handled as a Secret: data values must be base64 strings")
            })?;
            if let Err(e) = b64.decode(s) {
                return Err(Status::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte {}",
                    match e {
                        base64::DecodeError::InvalidByte(i, _)
                        | base64::DecodeError::InvalidLastSymbol(i, _) => i,
                        _ => s.len(),
                    }
                )));
            }
        }
    }
    if let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
        && let Some(map) = string_data.as_object()
    {
        if !obj["data"].is_object() {
            obj["data"] = json!({});
        }
        for (k, v) in map {
            let s = v.as_str().unwrap_or_default();
            obj["data"][k] = json!(b64.encode(s.as_bytes()));
        }
    }
    if obj
        .get("data")
        .is_some_and(|d| d.is_null() || d.as_object().is_some_and(serde_json::Map::is_empty))
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("data");
    }
    if obj["type"].as_str().is_none_or(str::is_empty) {
        obj["type"] = json!("Opaque");
    }
    Ok(())
}

fn default_webhooks(obj: &mut Value, mutating: bool) {
    let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for hook in hooks {
        let Some(h) = hook.as_object_mut() else {
            continue;
        };
        h.entry("failurePolicy").or_insert(json!("Fail"));
        h.entry("matchPolicy").or_insert(json!("Equivalent"));
        h.entry("namespaceSelector").or_insert(json!({}));
        h.entry("objectSelector").or_insert(json!({}));
        h.entry("timeoutSeconds").or_insert(json!(10));
        if mutating {
            h.entry("reinvocationPolicy").or_insert(json!("Never"));
        }
        if let Some(service) = h
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            service.entry("port").or_insert(json!(443));
        }
        if let Some(rules) = h.get_mut("rules").and_then(Value::as_array_mut) {
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                rule.entry("scope").or_insert(json!("*"));
            }
        }
    }
}

/// kube's validation of a kind; `old` for updates.
/// `rest.BeforeCreate` after mutating admission: the name from `generateName`, a new uid
/// and the creation time (staging/src/k8s.io/apiserver/pkg/registry/rest/create.go).
pub(super) fn before_create(kind: &ResourceKind, obj: &mut Value) -> Result<(), Status> {
    if !obj.is_object() {
        return Err(Status::internal_error("admission returned no object"));
    }
    let meta = meta_mut(obj);
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    let generate = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() && !generate.is_empty() {
        meta.insert(
            "name".into(),
            json!(format!("{generate}{}", meta::random_suffix())),
        );
    }
    meta.insert("uid".into(), json!(meta::new_uid()));
    meta.insert("creationTimestamp".into(), json!(meta::now()));
    meta.remove("resourceVersion");
    if kind.index == 0 {
        // A namespace's name label follows the generated name; PrepareForCreate sets its
        // finalizers and phase (pkg/registry/core/namespace/strategy.go).
        let name = meta_str(obj, "name").to_owned();
        let meta = meta_mut(obj);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        labels["kubernetes.io/metadata.name"] = json!(name);
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        obj["status"] = json!({"phase": "Active"});
    }
    Ok(())
}

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
        1 => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let total = validate::data_keys(
                "data",
                obj.get("data"),
                |v| {
                    v.as_str()
                        .and_then(|s| b64.decode(s).ok())
                        .map_or(0, |b| b.len())
                },
                &mut errs,
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
                immutable_checks(old, obj, &["data"], &mut errs);
            }
        }
        2 => {
            let total = validate::data_keys(
                "data",
                obj.get("data"),
                |v| v.as_str().map_or(0, str::len),
                &mut errs,
            ) + validate::data_keys(
                "binaryData",
                obj.get("binaryData"),
                |v| v.as_str().map_or(0, str::len),
                &mut errs,
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
                immutable_checks(old, obj, &["data", "binaryData"], &mut errs);
            }
        }
        3 | 4 => {
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

/// Equal apart from resourceVersion and managedFields: kube skips such writes.
pub(super) fn same_object(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

/// Same managedFields apart from timestamps: an apply that changes nothing is a no-op.
pub(super) fn same_ownership(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut entries = v["metadata"]["managedFields"].clone();
        if let Some(list) = entries.as_array_mut() {
            for e in list.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
        }
        entries
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::SECRETS;

    #[test]
    fn secret_string_data_is_merged_and_type_defaulted() {
        let mut obj = json!({"metadata": {"name": "s", "namespace": "d"}, "data": {"a": "MQ=="}, "stringData": {"b": "two"}});
        prepare(&SECRETS, &mut obj, None, false).unwrap();
        assert!(obj.get("stringData").is_none());
        assert_eq!(obj["data"]["b"], "dHdv");
        assert_eq!(obj["type"], "Opaque");
        // System fields come after mutating admission.
        assert!(obj["metadata"].get("uid").is_none());
        before_create(&SECRETS, &mut obj).unwrap();
        assert!(obj["metadata"]["uid"].is_string());
        assert!(obj["metadata"]["creationTimestamp"].is_string());
    }

    #[test]
    fn bad_base64_is_rejected_without_echoing_the_value() {
        let mut obj = json!({"metadata": {"name": "s"}, "data": {"a": "not base64 s3cret!"}});
        let err = prepare(&SECRETS, &mut obj, None, false).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(!err.message.contains("s3cret"));
    }

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
