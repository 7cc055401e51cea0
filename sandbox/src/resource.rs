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

/// All kinds, indexed by `ResourceKind::index`.
pub(crate) const KINDS: [ResourceKind; 5] = [NAMESPACES, SECRETS, CONFIGMAPS, MUTATING, VALIDATING];

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

    /// The fields an object of this kind may carry (others are unknown fields).
    fn schema(&self) -> Schema {
        match self.index {
            0 => Schema::Object(&[
                ("apiVersion", Schema::Leaf),
                ("kind", Schema::Leaf),
                ("metadata", Schema::Metadata),
                ("spec", Schema::Object(&[("finalizers", Schema::Leaf)])),
                (
                    "status",
                    Schema::Object(&[("phase", Schema::Leaf), ("conditions", Schema::Leaf)]),
                ),
            ]),
            1 => Schema::Object(&[
                ("apiVersion", Schema::Leaf),
                ("kind", Schema::Leaf),
                ("metadata", Schema::Metadata),
                ("data", Schema::Map),
                ("stringData", Schema::Map),
                ("type", Schema::Leaf),
                ("immutable", Schema::Leaf),
            ]),
            2 => Schema::Object(&[
                ("apiVersion", Schema::Leaf),
                ("kind", Schema::Leaf),
                ("metadata", Schema::Metadata),
                ("data", Schema::Map),
                ("binaryData", Schema::Map),
                ("immutable", Schema::Leaf),
            ]),
            3 => Schema::Object(&[
                ("apiVersion", Schema::Leaf),
                ("kind", Schema::Leaf),
                ("metadata", Schema::Metadata),
                ("webhooks", Schema::List(&MUTATING_WEBHOOK)),
            ]),
            _ => Schema::Object(&[
                ("apiVersion", Schema::Leaf),
                ("kind", Schema::Leaf),
                ("metadata", Schema::Metadata),
                ("webhooks", Schema::List(&VALIDATING_WEBHOOK)),
            ]),
        }
    }

    /// Removes unknown fields from `obj`, returning their paths (`spec.foo`) in document order.
    pub(crate) fn prune_unknown(&self, obj: &mut Value) -> Vec<String> {
        let mut unknown = Vec::new();
        prune(&self.schema(), obj, "", &mut unknown);
        unknown
    }
}

#[derive(Debug, Clone, Copy)]
enum Schema {
    Leaf,
    Map,
    Metadata,
    Object(&'static [(&'static str, Schema)]),
    List(&'static Schema),
}

const METADATA: Schema = Schema::Object(&[
    ("name", Schema::Leaf),
    ("generateName", Schema::Leaf),
    ("namespace", Schema::Leaf),
    ("selfLink", Schema::Leaf),
    ("uid", Schema::Leaf),
    ("resourceVersion", Schema::Leaf),
    ("generation", Schema::Leaf),
    ("creationTimestamp", Schema::Leaf),
    ("deletionTimestamp", Schema::Leaf),
    ("deletionGracePeriodSeconds", Schema::Leaf),
    ("labels", Schema::Map),
    ("annotations", Schema::Map),
    ("ownerReferences", Schema::Leaf),
    ("finalizers", Schema::Leaf),
    ("managedFields", Schema::Leaf),
]);

const CLIENT_CONFIG: Schema = Schema::Object(&[
    ("url", Schema::Leaf),
    (
        "service",
        Schema::Object(&[
            ("namespace", Schema::Leaf),
            ("name", Schema::Leaf),
            ("path", Schema::Leaf),
            ("port", Schema::Leaf),
        ]),
    ),
    ("caBundle", Schema::Leaf),
]);

const RULE: Schema = Schema::Object(&[
    ("operations", Schema::Leaf),
    ("apiGroups", Schema::Leaf),
    ("apiVersions", Schema::Leaf),
    ("resources", Schema::Leaf),
    ("scope", Schema::Leaf),
]);

const WEBHOOK_COMMON: [(&str, Schema); 11] = [
    ("name", Schema::Leaf),
    ("clientConfig", CLIENT_CONFIG),
    ("rules", Schema::List(&RULE)),
    ("failurePolicy", Schema::Leaf),
    ("matchPolicy", Schema::Leaf),
    ("namespaceSelector", Schema::Leaf),
    ("objectSelector", Schema::Leaf),
    ("sideEffects", Schema::Leaf),
    ("timeoutSeconds", Schema::Leaf),
    ("admissionReviewVersions", Schema::Leaf),
    ("matchConditions", Schema::Leaf),
];

const VALIDATING_WEBHOOK: Schema = Schema::Object(&WEBHOOK_COMMON);

const MUTATING_WEBHOOK: Schema = Schema::Object(&[
    WEBHOOK_COMMON[0],
    WEBHOOK_COMMON[1],
    WEBHOOK_COMMON[2],
    WEBHOOK_COMMON[3],
    WEBHOOK_COMMON[4],
    WEBHOOK_COMMON[5],
    WEBHOOK_COMMON[6],
    WEBHOOK_COMMON[7],
    WEBHOOK_COMMON[8],
    WEBHOOK_COMMON[9],
    WEBHOOK_COMMON[10],
    ("reinvocationPolicy", Schema::Leaf),
]);

fn prune(schema: &Schema, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    match schema {
        Schema::Leaf | Schema::Map => {}
        Schema::Metadata => prune(&METADATA, value, path, unknown),
        Schema::List(item) => {
            if let Value::Array(items) = value {
                for (i, v) in items.iter_mut().enumerate() {
                    prune(item, v, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        Schema::Object(fields) => {
            if let Value::Object(map) = value {
                let mut drop = Vec::new();
                for (key, v) in map.iter_mut() {
                    let sub = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match fields.iter().find(|(name, _)| name == key) {
                        Some((_, s)) => prune(s, v, &sub, unknown),
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
