//! Discovery documents and the minimal OpenAPI v3 that `kubectl apply` needs.

use serde_json::{Value, json};

use crate::resource::{KINDS, ResourceKind};

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// The API groups served besides the core group, in discovery order.
pub(crate) const GROUPS: [&str; 2] = ["admissionregistration.k8s.io", "events.k8s.io"];

/// `GET /version`.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-secret-relay-sandbox",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`.
pub(crate) fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

fn group_json(group: &str) -> Value {
    json!({
        "name": group,
        "versions": [{"groupVersion": format!("{group}/v1"), "version": "v1"}],
        "preferredVersion": {"groupVersion": format!("{group}/v1"), "version": "v1"},
    })
}

/// `GET /apis`.
pub(crate) fn groups() -> Value {
    let groups: Vec<Value> = GROUPS.iter().map(|g| group_json(g)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`.
pub(crate) fn api_group(group: &str) -> Value {
    let mut g = group_json(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

/// `GET /api/v1` or `/apis/<group>/v1`.
pub(crate) fn resource_list(group: &str) -> Value {
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.group == group)
        .map(|k| {
            let mut r = json!({
                "name": k.resource,
                "singularName": k.singular,
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": VERBS,
            });
            if !k.short_names.is_empty() {
                r["shortNames"] = json!(k.short_names);
            }
            r
        })
        .collect();
    let gv = if group.is_empty() {
        "v1".to_owned()
    } else {
        format!("{group}/v1")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// `GET /openapi/v3`.
pub(crate) fn openapi_index() -> Value {
    json!({
        "paths": {
            "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=SANDBOX1"},
            "apis/admissionregistration.k8s.io/v1": {
                "serverRelativeURL": "/openapi/v3/apis/admissionregistration.k8s.io/v1?hash=SANDBOX1"
            },
            "apis/events.k8s.io/v1": {
                "serverRelativeURL": "/openapi/v3/apis/events.k8s.io/v1?hash=SANDBOX1"
            },
        }
    })
}

fn schema_name(k: &ResourceKind) -> String {
    let package = match k.group {
        "" => "core",
        "events.k8s.io" => "events",
        _ => "admissionregistration",
    };
    format!("io.k8s.api.{package}.v1.{}", k.kind)
}

fn gvk(k: &ResourceKind) -> Value {
    json!({"group": k.group, "version": k.version, "kind": k.kind})
}

fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}})
}

fn kind_schema(k: &ResourceKind) -> Value {
    let meta = json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}], "default": {}});
    let mut props = json!({
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": meta,
    });
    match k.kind {
        "Secret" => {
            props["data"] = json!({"type": "object", "additionalProperties": {"type": "string", "format": "byte"}});
            props["stringData"] = string_map();
            props["type"] = json!({"type": "string"});
            props["immutable"] = json!({"type": "boolean"});
        }
        "ConfigMap" => {
            props["data"] = string_map();
            props["binaryData"] = json!({"type": "object", "additionalProperties": {"type": "string", "format": "byte"}});
            props["immutable"] = json!({"type": "boolean"});
        }
        "Namespace" => {
            props["spec"] = json!({"type": "object", "properties": {"finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "atomic"}}});
            props["status"] =
                json!({"type": "object", "properties": {"phase": {"type": "string"}}});
        }
        _ => {
            props["webhooks"] = json!({
                "type": "array",
                "items": webhook_schema(),
                "x-kubernetes-list-map-keys": ["name"],
                "x-kubernetes-list-type": "map",
                "x-kubernetes-patch-merge-key": "name",
                "x-kubernetes-patch-strategy": "merge",
            });
        }
    }
    json!({"type": "object", "properties": props, "x-kubernetes-group-version-kind": [gvk(k)]})
}

/// `admissionregistration.k8s.io/v1` MutatingWebhook / ValidatingWebhook: kubectl computes
/// client-side apply patches from these field types and list strategies.
fn webhook_schema() -> Value {
    let atomic_strings = json!({"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "atomic"});
    let selector = json!({
        "type": "object",
        "properties": {
            "matchLabels": string_map(),
            "matchExpressions": {
                "type": "array",
                "items": {"type": "object", "properties": {
                    "key": {"type": "string", "default": ""},
                    "operator": {"type": "string", "default": ""},
                    "values": atomic_strings,
                }, "required": ["key", "operator"]},
                "x-kubernetes-list-type": "atomic",
            },
        },
        "x-kubernetes-map-type": "atomic",
    });
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "default": ""},
            "admissionReviewVersions": atomic_strings,
            "clientConfig": {"type": "object", "properties": {
                "caBundle": {"type": "string", "format": "byte"},
                "service": {"type": "object", "properties": {
                    "name": {"type": "string", "default": ""},
                    "namespace": {"type": "string", "default": ""},
                    "path": {"type": "string"},
                    "port": {"type": "integer", "format": "int32"},
                }, "required": ["namespace", "name"]},
                "url": {"type": "string"},
            }},
            "failurePolicy": {"type": "string"},
            "matchPolicy": {"type": "string"},
            "namespaceSelector": selector,
            "objectSelector": selector,
            "reinvocationPolicy": {"type": "string"},
            "rules": {
                "type": "array",
                "items": {"type": "object", "properties": {
                    "apiGroups": atomic_strings,
                    "apiVersions": atomic_strings,
                    "operations": atomic_strings,
                    "resources": atomic_strings,
                    "scope": {"type": "string"},
                }},
                "x-kubernetes-list-type": "atomic",
            },
            "sideEffects": {"type": "string"},
            "timeoutSeconds": {"type": "integer", "format": "int32"},
            "matchConditions": {
                "type": "array",
                "items": {"type": "object", "properties": {
                    "name": {"type": "string", "default": ""},
                    "expression": {"type": "string", "default": ""},
                }, "required": ["name", "expression"]},
                "x-kubernetes-list-map-keys": ["name"],
                "x-kubernetes-list-type": "map",
                "x-kubernetes-patch-merge-key": "name",
                "x-kubernetes-patch-strategy": "merge",
            },
        },
        "required": ["name", "clientConfig", "sideEffects", "admissionReviewVersions"],
    })
}

fn query_param(name: &str, kind: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": kind, "uniqueItems": true}})
}

fn item_path(k: &ResourceKind) -> String {
    let base = if k.group.is_empty() {
        "/api/v1".to_owned()
    } else {
        format!("/apis/{}/v1", k.group)
    };
    if k.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", k.resource)
    } else {
        format!("{base}/{}/{{name}}", k.resource)
    }
}

fn body_ref(k: &ResourceKind) -> Value {
    json!({"schema": {"$ref": format!("#/components/schemas/{}", schema_name(k))}})
}

/// The OpenAPI v3 document of one group version (`api/v1` or `apis/<group>/v1`).
pub(crate) fn openapi_document(group: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for k in KINDS.iter().filter(|k| k.group == group) {
        let patch_body = json!({
            "content": {
                "application/apply-patch+yaml": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
                "application/json-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
                "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
                "application/strategic-merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
            },
            "required": true,
        });
        let ok =
            json!({"200": {"description": "OK", "content": {"application/json": body_ref(k)}}});
        let mut params = vec![
            json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}),
        ];
        if k.namespaced {
            params.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
        }
        let write_params = json!([
            query_param("dryRun", "string"),
            query_param("fieldManager", "string"),
            query_param("fieldValidation", "string"),
        ]);
        let mut patch_params = write_params.clone();
        if let Some(list) = patch_params.as_array_mut() {
            list.push(query_param("force", "boolean"));
        }
        paths.insert(
            item_path(k),
            json!({
                "get": {"operationId": format!("read{}", k.kind), "responses": ok, "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk(k)},
                "put": {"operationId": format!("replace{}", k.kind), "parameters": write_params, "requestBody": {"content": {"application/json": body_ref(k)}, "required": true}, "responses": ok, "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk(k)},
                "patch": {"operationId": format!("patch{}", k.kind), "parameters": patch_params, "requestBody": patch_body, "responses": ok, "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk(k)},
                "delete": {"operationId": format!("delete{}", k.kind), "responses": ok, "x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk(k)},
                "parameters": params,
            }),
        );
        schemas.insert(schema_name(k), kind_schema(k));
    }
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into(),
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "generateName": {"type": "string"},
                "namespace": {"type": "string"},
                "uid": {"type": "string"},
                "resourceVersion": {"type": "string"},
                "generation": {"type": "integer", "format": "int64"},
                "creationTimestamp": {"type": "string", "format": "date-time"},
                "labels": string_map(),
                "annotations": string_map(),
                "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"},
                "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "x-kubernetes-list-type": "atomic"},
                "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"},
            },
        }),
    );
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({"type": "object"}),
    );
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resource_list_has_the_three_kinds() {
        let list = resource_list("");
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["namespaces", "secrets", "configmaps"]);
    }

    #[test]
    fn secret_patch_path_advertises_field_validation() {
        let doc = openapi_document("");
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Secret");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
    }
}
