//! Admission from the handlers' side: the webhook configurations and namespace labels of
//! one request, the mutating phase, the registry's work, then the validating phase.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Shared;
use super::objects::meta_str;
use super::request::Req;
use crate::admission::{AdmissionAttributes, Operation, WebhookConfigs};
use crate::auth::UserInfo;
use crate::resource::{MUTATING, NAMESPACES, ResourceKind, VALIDATING};
use crate::status::Status;

/// The Create or UpdateOptions (`kind`) that admission sees for a write request.
pub(super) fn options(kind: &str, req: &Req, dry_run: bool) -> Value {
    let mut o = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if let Some(m) = req.query.get("fieldManager") {
        o["fieldManager"] = json!(m);
    }
    if dry_run {
        o["dryRun"] = json!(["All"]);
    }
    if let Some(v) = req.query.get("fieldValidation").filter(|v| !v.is_empty()) {
        o["fieldValidation"] = json!(v);
    }
    o
}

/// Runs admission on one write; `between` is the registry's work between the two phases.
// The AdmissionAttributes of one request, spelled out: a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub(super) async fn admit(
    shared: &Shared,
    user: &UserInfo,
    operation: Operation,
    kind: &ResourceKind,
    ns: &str,
    name: &str,
    object: Option<Value>,
    old_object: Option<Value>,
    dry_run: bool,
    options: Value,
    warnings: Option<&mut Vec<String>>,
    between: impl FnOnce(Option<Value>) -> Result<Option<Value>, Status>,
) -> Result<Option<Value>, Status> {
    let (configs, namespace_labels) = snapshot(shared, ns);
    let mut attrs = AdmissionAttributes {
        operation,
        group: kind.group.to_owned(),
        version: kind.version.to_owned(),
        kind: kind.kind.to_owned(),
        resource: kind.resource.to_owned(),
        subresource: String::new(),
        namespace: ns.to_owned(),
        name: name.to_owned(),
        object,
        old_object,
        user: user.clone(),
        dry_run,
        options,
        namespace_labels,
    };
    let mut scratch = Vec::new();
    let warnings = warnings.unwrap_or(&mut scratch);
    // kube-apiserver runs the mutating webhooks in the handler, then the registry's
    // Before{Create,Update} (system fields, defaults, validation: `between`), then the
    // validating webhooks on that object.
    let mutated = shared
        .admission
        .mutate(&configs, attrs.clone(), warnings)
        .await?;
    attrs.object = between(mutated)?;
    if operation == Operation::Create {
        // The validating phase names the object as created (a generated name included).
        if let Some(name) = attrs.object.as_ref().map(|o| meta_str(o, "name")) {
            attrs.name = name.to_owned();
        }
    }
    shared
        .admission
        .validate(&configs, &attrs, warnings)
        .await?;
    Ok(attrs.object)
}

/// The stored webhook configurations and the labels of namespace `ns`, read under one lock.
fn snapshot(shared: &Shared, ns: &str) -> (WebhookConfigs, BTreeMap<String, String>) {
    let db = shared.db();
    let configs = WebhookConfigs {
        mutating: db.objects(&MUTATING),
        validating: db.objects(&VALIDATING),
    };
    let labels: BTreeMap<String, String> = db
        .get(&NAMESPACES, "", ns)
        .and_then(|n| n["metadata"]["labels"].as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    (configs, labels)
}
