//! Server-side object handling: server-set metadata, kind defaults, the fields set on
//! create, and the comparisons that make a write a no-op. Validation is in `validation`.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::meta;
use crate::resource::ResourceKind;
use crate::status::Status;

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
    system_metadata(meta, old, keep_managed_fields);
    for field in ["labels", "annotations"] {
        if meta
            .get(field)
            .is_some_and(|l| l.as_object().is_some_and(serde_json::Map::is_empty) || l.is_null())
        {
            meta.remove(field);
        }
    }
    match kind.index {
        0 => prepare_namespace(obj, old, &name),
        1 => prepare_secret(obj)?,
        3 | 4 => prepare_webhook_configuration(obj, old, kind.index == 3),
        _ => {}
    }
    Ok(())
}

/// The metadata only the server sets: dropped from the request, and on update kept from
/// `old` (uid, creationTimestamp and, unless an apply computed them, managedFields).
fn system_metadata(
    meta: &mut serde_json::Map<String, Value>,
    old: Option<&Value>,
    keep_managed_fields: bool,
) {
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
}

/// A namespace's name label; on update its old finalizers (unless set) and status.
fn prepare_namespace(obj: &mut Value, old: Option<&Value>, name: &str) {
    let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
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

/// A webhook configuration's defaults and its generation.
fn prepare_webhook_configuration(obj: &mut Value, old: Option<&Value>, mutating: bool) {
    default_webhooks(obj, mutating);
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
}
