//! Matching: which webhooks a request reaches, as kube-apiserver's predicates decide
//! (rules, namespace and object selectors; the admission configuration resources are
//! exempt). `matchConditions` (CEL) are not evaluated.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{AdmissionAttributes, Hook, Operation, str_at};

/// Admission never runs on the admission configuration resources themselves
/// (`rules.IsExemptAdmissionConfigurationResource`), so a bad webhook cannot lock itself in.
pub(super) fn is_exempt_configuration_resource(attrs: &AdmissionAttributes) -> bool {
    attrs.group == "admissionregistration.k8s.io"
        && matches!(
            attrs.resource.as_str(),
            "validatingwebhookconfigurations"
                | "mutatingwebhookconfigurations"
                | "validatingadmissionpolicies"
                | "validatingadmissionpolicybindings"
                | "mutatingadmissionpolicies"
                | "mutatingadmissionpolicybindings"
        )
}

/// `ShouldCallHook`: a rule matches, then the namespace selector, then the object selector.
/// A selector that cannot be parsed is an error (a 500, as kube-apiserver reports it).
pub(super) fn should_call(hook: &Hook<'_>, attrs: &AdmissionAttributes) -> Result<bool, String> {
    let rules = hook.spec.get("rules").and_then(Value::as_array);
    if !rules.is_some_and(|rules| rules.iter().any(|rule| rule_matches(rule, attrs))) {
        return Ok(false);
    }
    let namespace_match = namespace_selector_matches(hook.spec.get("namespaceSelector"), attrs);
    if matches!(namespace_match, Ok(false)) {
        return Ok(false);
    }
    let object_match = object_selector_matches(hook.spec.get("objectSelector"), attrs);
    if matches!(object_match, Ok(false)) {
        return Ok(false);
    }
    namespace_match?;
    object_match?;
    Ok(true)
}

/// `rules.Matcher.Matches`: scope, operation, group, version, resource/subresource.
fn rule_matches(rule: &Value, attrs: &AdmissionAttributes) -> bool {
    let list = |key: &str| -> Vec<&str> {
        rule.get(key)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let scope = match str_at(rule, "scope").unwrap_or("*") {
        "Namespaced" => !attrs.namespace.is_empty(),
        "Cluster" => attrs.namespace.is_empty(),
        _ => true,
    };
    let exact_or_wildcard =
        |items: &[&str], requested: &str| items.iter().any(|i| *i == "*" || *i == requested);
    let operation = list("operations")
        .iter()
        .any(|op| *op == "*" || *op == attrs.operation.as_str());
    let resource = list("resources").iter().any(|entry| {
        let (res, sub) = entry.split_once('/').unwrap_or((entry, ""));
        (res == "*" || res == attrs.resource) && (sub == "*" || sub == attrs.subresource)
    });
    scope
        && operation
        && exact_or_wildcard(&list("apiGroups"), &attrs.group)
        && exact_or_wildcard(&list("apiVersions"), &attrs.version)
        && resource
}

/// The namespace selector: cluster-scoped requests other than Namespaces always match;
/// a Namespace being created or updated is judged by its own labels.
fn namespace_selector_matches(
    selector: Option<&Value>,
    attrs: &AdmissionAttributes,
) -> Result<bool, String> {
    let is_namespace = attrs.resource == "namespaces" && attrs.subresource.is_empty();
    if attrs.namespace.is_empty() && !is_namespace {
        return Ok(true);
    }
    let Some(selector) = selector.filter(|s| !is_empty_selector(s)) else {
        return Ok(true);
    };
    let labels = if is_namespace {
        match attrs.operation {
            Operation::Create | Operation::Update => labels_of(attrs.object.as_ref()),
            Operation::Delete if attrs.namespace_labels.is_empty() => {
                labels_of(attrs.old_object.as_ref())
            }
            Operation::Delete => attrs.namespace_labels.clone(),
        }
    } else {
        attrs.namespace_labels.clone()
    };
    selector_matches(selector, &labels)
}

/// The object selector matches the new object or the old one; an absent object never matches
/// a non-empty selector.
fn object_selector_matches(
    selector: Option<&Value>,
    attrs: &AdmissionAttributes,
) -> Result<bool, String> {
    let Some(selector) = selector.filter(|s| !is_empty_selector(s)) else {
        return Ok(true);
    };
    for object in [attrs.object.as_ref(), attrs.old_object.as_ref()]
        .into_iter()
        .flatten()
    {
        if selector_matches(selector, &labels_of(Some(object)))? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn is_empty_selector(selector: &Value) -> bool {
    let empty = |key: &str| match selector.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    empty("matchLabels") && empty("matchExpressions")
}

fn labels_of(object: Option<&Value>) -> BTreeMap<String, String> {
    object
        .and_then(|o| o.get("metadata"))
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A `metav1.LabelSelector` (matchLabels and matchExpressions) against a label set.
pub(super) fn selector_matches(
    selector: &Value,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    if let Some(match_labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in match_labels {
            let value = value.as_str().ok_or_else(|| {
                format!("invalid label selector: matchLabels[{key:?}] is not a string")
            })?;
            if labels.get(key).map(String::as_str) != Some(value) {
                return Ok(false);
            }
        }
    }
    let expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for expression in expressions {
        let key = str_at(expression, "key").unwrap_or("");
        let operator = str_at(expression, "operator").unwrap_or("");
        let values: Vec<&str> = expression
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let current = labels.get(key).map(String::as_str);
        let matched = match operator {
            "In" if !values.is_empty() => current.is_some_and(|c| values.contains(&c)),
            "NotIn" if !values.is_empty() => !current.is_some_and(|c| values.contains(&c)),
            "Exists" if values.is_empty() => current.is_some(),
            "DoesNotExist" if values.is_empty() => current.is_none(),
            "In" | "NotIn" => {
                return Err(
                    "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
                        .to_owned(),
                );
            }
            "Exists" | "DoesNotExist" => {
                return Err(format!(
                    "values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
                ));
            }
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        };
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}
