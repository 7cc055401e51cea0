//! Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), as
//! kube-apiserver's table convertors print these kinds for `kubectl get`.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::resource::ResourceKind;

/// What a row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// Whether the Accept header asks for a meta.k8s.io Table.
pub(crate) fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',')
            .next()
            .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
    })
}

/// Whether the Accept header asks for `PartialObjectMetadata` (metadata-only get, list, watch).
pub(crate) fn wants_metadata(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').next().is_some_and(|first| {
            first.contains("as=PartialObjectMetadata") && first.contains("g=meta.k8s.io")
        })
    })
}

/// An object reduced to its metadata, as `PartialObjectMetadata`.
pub(crate) fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    })
}

impl IncludeObject {
    pub(crate) fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

fn column(name: &str, kind: &str, format: &str, description: &str) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": 0})
}

fn columns(kind: &ResourceKind) -> Vec<Value> {
    let name = column(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated.",
    );
    let age = column(
        "Age",
        "string",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    match kind.kind {
        "Secret" => vec![
            name,
            column(
                "Type",
                "string",
                "",
                "Used to facilitate programmatic handling of secret data.",
            ),
            column("Data", "string", "", "Data contains the secret data."),
            age,
        ],
        "ConfigMap" => vec![
            name,
            column(
                "Data",
                "string",
                "",
                "Data contains the configuration data.",
            ),
            age,
        ],
        "Namespace" => vec![
            name,
            column("Status", "string", "", "The status of the namespace"),
            age,
        ],
        _ => vec![
            name,
            column(
                "Webhooks",
                "integer",
                "",
                "Webhooks indicates the number of webhooks.",
            ),
            age,
        ],
    }
}

/// `duration.HumanDuration` of apimachinery.
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(obj: &Value) -> String {
    let Some(created) = obj["metadata"]["creationTimestamp"].as_str() else {
        return "<unknown>".to_owned();
    };
    match OffsetDateTime::parse(created, &Rfc3339) {
        Ok(t) => human_duration((OffsetDateTime::now_utc() - t).whole_seconds()),
        Err(_) => "<unknown>".to_owned(),
    }
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, serde_json::Map::len)
}

fn cells(kind: &ResourceKind, obj: &Value) -> Vec<Value> {
    let name = json!(obj["metadata"]["name"].as_str().unwrap_or_default());
    match kind.kind {
        "Secret" => vec![
            name,
            json!(obj["type"].as_str().unwrap_or_default()),
            json!(count(&obj["data"])),
            json!(age(obj)),
        ],
        "ConfigMap" => vec![
            name,
            json!(count(&obj["data"]) + count(&obj["binaryData"])),
            json!(age(obj)),
        ],
        "Namespace" => vec![
            name,
            json!(obj["status"]["phase"].as_str().unwrap_or_default()),
            json!(age(obj)),
        ],
        _ => vec![
            name,
            json!(obj["webhooks"].as_array().map_or(0, Vec::len)),
            json!(age(obj)),
        ],
    }
}

fn row(kind: &ResourceKind, obj: &Value, include: IncludeObject) -> Value {
    let mut row = json!({"cells": cells(kind, obj)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            });
        }
        IncludeObject::Object => {
            let mut full = obj.clone();
            full["kind"] = json!(kind.kind);
            full["apiVersion"] = json!(kind.api_version());
            row["object"] = full;
        }
    }
    row
}

/// A Table of `objects`; `list_meta` is the list's metadata (resourceVersion, continue).
pub(crate) fn table(
    kind: &ResourceKind,
    objects: &[&Value],
    list_meta: Value,
    include: IncludeObject,
    with_columns: bool,
) -> Value {
    let rows: Vec<Value> = objects.iter().map(|o| row(kind, o, include)).collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": rows,
    });
    if with_columns {
        t["columnDefinitions"] = Value::Array(columns(kind));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::SECRETS;

    #[test]
    fn durations_print_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
    }

    #[test]
    fn secret_rows_have_type_and_data_count() {
        let s = json!({"metadata": {"name": "s", "creationTimestamp": "2020-01-01T00:00:00Z"}, "type": "Opaque", "data": {"a": "", "b": ""}});
        let t = table(
            &SECRETS,
            &[&s],
            json!({"resourceVersion": "1"}),
            IncludeObject::Metadata,
            true,
        );
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 4);
        assert_eq!(t["rows"][0]["cells"][0], "s");
        assert_eq!(t["rows"][0]["cells"][1], "Opaque");
        assert_eq!(t["rows"][0]["cells"][2], 2);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn metadata_only_requests_never_carry_data() {
        assert!(wants_metadata(Some(
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
        )));
        assert!(!wants_metadata(Some("application/json")));
        let s = json!({"metadata": {"name": "s"}, "data": {"a": "c2VjcmV0"}});
        let p = partial(&s);
        assert_eq!(p["metadata"]["name"], "s");
        assert!(p.get("data").is_none());
    }

    #[test]
    fn table_accept_header_is_recognised() {
        assert!(wants_table(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        )));
        assert!(!wants_table(Some("application/json")));
        assert!(!wants_table(None));
    }
}
