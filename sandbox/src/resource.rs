//! The resource kinds the sandbox serves and their schemas (for strict field validation).

use serde_json::Value;

use crate::status::Resource;

/// One served resource kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResourceKind {
    pub(crate) index: usize,
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) resource: &'static str,
    pub(crate) singular: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) namespaced: bool,
    pub(crate) short_names: &'static [&'static str],
}

pub(crate) const NAMESPACES: ResourceKind = ResourceKind {
    index: 0,
    group: "",
    version: "v1",
    resource: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    namespaced: false,
    short_names: &["ns"],
};
pub(crate) const SECRETS: ResourceKind = ResourceKind {
    index: 1,
    group: "",
    version: "v1",
    resource: "secrets",
    singular: "secret",
    kind: "Secret",
    namespaced: true,
    short_names: &[],
};
pub(crate) const CONFIGMAPS: ResourceKind = ResourceKind {
    index: 2,
    group: "",
    version: "v1",
    resource: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    namespaced: true,
    short_names: &["cm"],
};
pub(crate) const MUTATING: ResourceKind = ResourceKind {
    index: 3,
    group: "admissionregistration.k8s.io",
    version: "v1",
    resource: "mutatingwebhookconfigurations",
    singular: "mutatingwebhookconfiguration",
    kind: "MutatingWebhookConfiguration",
    namespaced: false,
    short_names: &[],
};
pub(crate) const VALIDATING: ResourceKind = ResourceKind {
    index: 4,
    group: "admissionregistration.k8s.io",
    version: "v1",
    resource: "validatingwebhookconfigurations",
    singular: "validatingwebhookconfiguration",
    kind: "ValidatingWebhookConfiguration",
    namespaced: false,
    short_names: &[],
};

/// `events.k8s.io/v1` Events: what the agent records and the Secrets page reads.
pub(crate) const EVENTS: ResourceKind = ResourceKind {
    index: 5,
    group: "events.k8s.io",
    version: "v1",
    resource: "events",
    singular: "event",
    kind: "Event",
    namespaced: true,
    short_names: &["ev"],
};

/// All kinds, indexed by `ResourceKind::index`.
pub(crate) const KINDS: [ResourceKind; 6] = [
    NAMESPACES, SECRETS, CONFIGMAPS, MUTATING, VALIDATING, EVENTS,
];

impl ResourceKind {
    pub(crate) fn res(&self) -> Resource<'static> {
        Resource {
            resource: self.resource,
            group: self.group,
        }
    }

    /// `apiVersion` of objects of this kind.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind served at `/api/v1/<resource>` or `/apis/<group>/v1/<resource>`.
    pub(crate) fn lookup(group: &str, resource: &str) -> Option<ResourceKind> {
        KINDS
            .iter()
            .copied()
            .find(|k| k.group == group && k.resource == resource)
    }

    /// The Go type of an object of this kind: its fields (others are unknown fields), how
    /// encoding/json decodes each and how a strategic merge patch merges each.
    pub(crate) fn schema(&self) -> Schema {
        match self.index {
            0 => Schema::Struct(&NAMESPACE),
            1 => Schema::Struct(&SECRET),
            2 => Schema::Struct(&CONFIG_MAP),
            3 => Schema::Struct(&MUTATING_WEBHOOK_CONFIGURATION),
            4 => Schema::Struct(&VALIDATING_WEBHOOK_CONFIGURATION),
            _ => Schema::Struct(&EVENT),
        }
    }

    /// Removes unknown fields from `obj`, returning their paths (`spec.foo`) in the order of
    /// the object's (sorted) keys.
    pub(crate) fn prune_unknown(&self, obj: &mut Value) -> Vec<String> {
        let mut unknown = Vec::new();
        prune(self.schema(), obj, "", &mut unknown);
        unknown
    }
}

/// A Go type as the API server decodes and patches it (the `json`, `patchStrategy` and
/// `patchMergeKey` tags of k8s.io/api), for the kinds the sandbox serves.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Schema {
    /// A string, number or bool held by value: a JSON `null` leaves it as it was.
    Scalar,
    /// A pointer to a scalar, bytes, a time or raw JSON (custom unmarshalers): replaced
    /// whole; `null` clears it.
    Leaf,
    /// `interface{}`: any JSON, objects decoded as maps.
    Any,
    /// A map of strings or bytes (`map[string]string`, `map[string][]byte`).
    Map,
    /// A struct held by value.
    Struct(&'static Struct),
    /// A pointer to a struct.
    Ptr(&'static Struct),
    /// A slice of the element type.
    List(&'static Schema),
}

/// A Go struct: its name (as Go errors name it) and fields.
#[derive(Debug)]
pub(crate) struct Struct {
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [Field],
}

/// One struct field: its JSON name, type and list merge strategy.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) schema: Schema,
    /// `patchStrategy:"merge"` with its `patchMergeKey` (empty for a list of scalars).
    pub(crate) merge_key: Option<&'static str>,
}

impl Schema {
    /// `reflect.Kind.String()` of the Go type, as strategic merge patch errors name it.
    pub(crate) fn go_kind(self) -> &'static str {
        match self {
            Schema::Scalar => "string",
            Schema::Leaf => "ptr",
            Schema::Any => "interface",
            Schema::Map => "map",
            Schema::Struct(_) => "struct",
            Schema::Ptr(_) => "ptr",
            Schema::List(_) => "slice",
        }
    }
}

const fn field(name: &'static str, schema: Schema) -> Field {
    Field {
        name,
        schema,
        merge_key: None,
    }
}

const fn merged(name: &'static str, schema: Schema, key: &'static str) -> Field {
    Field {
        name,
        schema,
        merge_key: Some(key),
    }
}

const API_VERSION: Field = field("apiVersion", Schema::Scalar);
const KIND: Field = field("kind", Schema::Scalar);
const METADATA: Field = field("metadata", Schema::Struct(&OBJECT_META));
const STRINGS: Schema = Schema::List(&Schema::Scalar);

const OBJECT_META: Struct = Struct {
    name: "ObjectMeta",
    fields: &[
        field("name", Schema::Scalar),
        field("generateName", Schema::Scalar),
        field("namespace", Schema::Scalar),
        field("selfLink", Schema::Scalar),
        field("uid", Schema::Scalar),
        field("resourceVersion", Schema::Scalar),
        field("generation", Schema::Scalar),
        field("creationTimestamp", Schema::Leaf),
        field("deletionTimestamp", Schema::Leaf),
        field("deletionGracePeriodSeconds", Schema::Leaf),
        field("labels", Schema::Map),
        field("annotations", Schema::Map),
        merged(
            "ownerReferences",
            Schema::List(&Schema::Struct(&OWNER_REFERENCE)),
            "uid",
        ),
        merged("finalizers", STRINGS, ""),
        field(
            "managedFields",
            Schema::List(&Schema::Struct(&MANAGED_FIELDS_ENTRY)),
        ),
    ],
};

const OWNER_REFERENCE: Struct = Struct {
    name: "OwnerReference",
    fields: &[
        API_VERSION,
        KIND,
        field("name", Schema::Scalar),
        field("uid", Schema::Scalar),
        field("controller", Schema::Leaf),
        field("blockOwnerDeletion", Schema::Leaf),
    ],
};

const MANAGED_FIELDS_ENTRY: Struct = Struct {
    name: "ManagedFieldsEntry",
    fields: &[
        field("manager", Schema::Scalar),
        field("operation", Schema::Scalar),
        API_VERSION,
        field("time", Schema::Leaf),
        field("fieldsType", Schema::Scalar),
        field("fieldsV1", Schema::Leaf),
        field("subresource", Schema::Scalar),
    ],
};

const NAMESPACE: Struct = Struct {
    name: "Namespace",
    fields: &[
        KIND,
        API_VERSION,
        METADATA,
        field(
            "spec",
            Schema::Struct(&Struct {
                name: "NamespaceSpec",
                fields: &[field("finalizers", STRINGS)],
            }),
        ),
        field(
            "status",
            Schema::Struct(&Struct {
                name: "NamespaceStatus",
                fields: &[
                    field("phase", Schema::Scalar),
                    merged(
                        "conditions",
                        Schema::List(&Schema::Struct(&NAMESPACE_CONDITION)),
                        "type",
                    ),
                ],
            }),
        ),
    ],
};

const NAMESPACE_CONDITION: Struct = Struct {
    name: "NamespaceCondition",
    fields: &[
        field("type", Schema::Scalar),
        field("status", Schema::Scalar),
        field("lastTransitionTime", Schema::Leaf),
        field("reason", Schema::Scalar),
        field("message", Schema::Scalar),
    ],
};

const OBJECT_REFERENCE: Struct = Struct {
    name: "ObjectReference",
    fields: &[
        field("kind", Schema::Scalar),
        field("namespace", Schema::Scalar),
        field("name", Schema::Scalar),
        field("uid", Schema::Scalar),
        field("apiVersion", Schema::Scalar),
        field("resourceVersion", Schema::Scalar),
        field("fieldPath", Schema::Scalar),
    ],
};

const EVENT_SERIES: Struct = Struct {
    name: "EventSeries",
    fields: &[
        field("count", Schema::Scalar),
        field("lastObservedTime", Schema::Leaf),
    ],
};

const EVENT_SOURCE: Struct = Struct {
    name: "EventSource",
    fields: &[
        field("component", Schema::Scalar),
        field("host", Schema::Scalar),
    ],
};

/// `k8s.io/api/events/v1.Event`.
const EVENT: Struct = Struct {
    name: "Event",
    fields: &[
        KIND,
        API_VERSION,
        METADATA,
        field("eventTime", Schema::Leaf),
        field("series", Schema::Ptr(&EVENT_SERIES)),
        field("reportingController", Schema::Scalar),
        field("reportingInstance", Schema::Scalar),
        field("action", Schema::Scalar),
        field("reason", Schema::Scalar),
        field("regarding", Schema::Struct(&OBJECT_REFERENCE)),
        field("related", Schema::Ptr(&OBJECT_REFERENCE)),
        field("note", Schema::Scalar),
        field("type", Schema::Scalar),
        field("deprecatedSource", Schema::Struct(&EVENT_SOURCE)),
        field("deprecatedFirstTimestamp", Schema::Leaf),
        field("deprecatedLastTimestamp", Schema::Leaf),
        field("deprecatedCount", Schema::Scalar),
    ],
};

const SECRET: Struct = Struct {
    name: "Secret",
    fields: &[
        KIND,
        API_VERSION,
        METADATA,
        field("immutable", Schema::Leaf),
        field("data", Schema::Map),
        field("stringData", Schema::Map),
        field("type", Schema::Scalar),
    ],
};

const CONFIG_MAP: Struct = Struct {
    name: "ConfigMap",
    fields: &[
        KIND,
        API_VERSION,
        METADATA,
        field("immutable", Schema::Leaf),
        field("data", Schema::Map),
        field("binaryData", Schema::Map),
    ],
};

const VALIDATING_WEBHOOK_CONFIGURATION: Struct = Struct {
    name: "ValidatingWebhookConfiguration",
    fields: &[
        KIND,
        API_VERSION,
        METADATA,
        merged(
            "webhooks",
            Schema::List(&Schema::Struct(&VALIDATING_WEBHOOK)),
            "name",
        ),
    ],
};

const MUTATING_WEBHOOK_CONFIGURATION: Struct = Struct {
    name: "MutatingWebhookConfiguration",
    fields: &[
        KIND,
        API_VERSION,
        METADATA,
        merged(
            "webhooks",
            Schema::List(&Schema::Struct(&MUTATING_WEBHOOK)),
            "name",
        ),
    ],
};

const LABEL_SELECTOR: Struct = Struct {
    name: "LabelSelector",
    fields: &[
        field("matchLabels", Schema::Map),
        field(
            "matchExpressions",
            Schema::List(&Schema::Struct(&Struct {
                name: "LabelSelectorRequirement",
                fields: &[
                    field("key", Schema::Scalar),
                    field("operator", Schema::Scalar),
                    field("values", STRINGS),
                ],
            })),
        ),
    ],
};

const WEBHOOK_CLIENT_CONFIG: Struct = Struct {
    name: "WebhookClientConfig",
    fields: &[
        field("url", Schema::Leaf),
        field(
            "service",
            Schema::Ptr(&Struct {
                name: "ServiceReference",
                fields: &[
                    field("namespace", Schema::Scalar),
                    field("name", Schema::Scalar),
                    field("path", Schema::Leaf),
                    field("port", Schema::Leaf),
                ],
            }),
        ),
        field("caBundle", Schema::Leaf),
    ],
};

// RuleWithOperations embeds Rule: its fields are promoted.
const RULE_WITH_OPERATIONS: Struct = Struct {
    name: "RuleWithOperations",
    fields: &[
        field("operations", STRINGS),
        field("apiGroups", STRINGS),
        field("apiVersions", STRINGS),
        field("resources", STRINGS),
        field("scope", Schema::Leaf),
    ],
};

const MATCH_CONDITION: Struct = Struct {
    name: "MatchCondition",
    fields: &[
        field("name", Schema::Scalar),
        field("expression", Schema::Scalar),
    ],
};

const VALIDATING_WEBHOOK: Struct = Struct {
    name: "ValidatingWebhook",
    fields: &[
        field("name", Schema::Scalar),
        field("clientConfig", Schema::Struct(&WEBHOOK_CLIENT_CONFIG)),
        field(
            "rules",
            Schema::List(&Schema::Struct(&RULE_WITH_OPERATIONS)),
        ),
        field("failurePolicy", Schema::Leaf),
        field("matchPolicy", Schema::Leaf),
        field("namespaceSelector", Schema::Ptr(&LABEL_SELECTOR)),
        field("objectSelector", Schema::Ptr(&LABEL_SELECTOR)),
        field("sideEffects", Schema::Leaf),
        field("timeoutSeconds", Schema::Leaf),
        field("admissionReviewVersions", STRINGS),
        merged(
            "matchConditions",
            Schema::List(&Schema::Struct(&MATCH_CONDITION)),
            "name",
        ),
    ],
};

const MUTATING_WEBHOOK: Struct = Struct {
    name: "MutatingWebhook",
    fields: &[
        field("name", Schema::Scalar),
        field("clientConfig", Schema::Struct(&WEBHOOK_CLIENT_CONFIG)),
        field(
            "rules",
            Schema::List(&Schema::Struct(&RULE_WITH_OPERATIONS)),
        ),
        field("failurePolicy", Schema::Leaf),
        field("matchPolicy", Schema::Leaf),
        field("namespaceSelector", Schema::Ptr(&LABEL_SELECTOR)),
        field("objectSelector", Schema::Ptr(&LABEL_SELECTOR)),
        field("sideEffects", Schema::Leaf),
        field("timeoutSeconds", Schema::Leaf),
        field("admissionReviewVersions", STRINGS),
        field("reinvocationPolicy", Schema::Leaf),
        merged(
            "matchConditions",
            Schema::List(&Schema::Struct(&MATCH_CONDITION)),
            "name",
        ),
    ],
};

fn prune(schema: Schema, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    match schema {
        Schema::Scalar | Schema::Leaf | Schema::Any | Schema::Map => {}
        Schema::List(item) => {
            if let Value::Array(items) = value {
                for (i, v) in items.iter_mut().enumerate() {
                    prune(*item, v, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        Schema::Struct(s) | Schema::Ptr(s) => {
            if let Value::Object(map) = value {
                let mut drop = Vec::new();
                for (key, v) in map.iter_mut() {
                    let sub = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match s.fields.iter().find(|f| f.name == key) {
                        Some(f) => prune(f.schema, v, &sub, unknown),
                        None => {
                            unknown.push(sub);
                            drop.push(key.clone());
                        }
                    }
                }
                for key in drop {
                    map.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_fields_are_reported_and_pruned() {
        let mut obj = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a", "bogus": 1}, "spec": {"foo": 1}, "data": {"k": "dg=="}});
        let unknown = SECRETS.prune_unknown(&mut obj);
        assert_eq!(unknown, vec!["metadata.bogus", "spec"]);
        assert!(obj.get("spec").is_none());
        assert_eq!(obj["data"]["k"], "dg==");
    }

    #[test]
    fn webhook_items_are_checked() {
        let mut obj = json!({"webhooks": [{"name": "a", "clientConfig": {"service": {"name": "s", "nope": 1}}, "reinvocationPolicy": "Never"}]});
        let unknown = VALIDATING.prune_unknown(&mut obj);
        assert_eq!(
            unknown,
            vec![
                "webhooks[0].clientConfig.service.nope",
                "webhooks[0].reinvocationPolicy"
            ]
        );
        let mut obj = json!({"webhooks": [{"name": "a", "reinvocationPolicy": "Never"}]});
        assert!(MUTATING.prune_unknown(&mut obj).is_empty());
    }
}
