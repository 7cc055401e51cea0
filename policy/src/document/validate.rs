//! The policy document's validator: it walks the YAML tree itself, so that
//! every problem is reported, each with its field path, instead of stopping
//! at the first, and builds a [`Policy`] only when there is none.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde_yaml::Value;

use crate::carry::StripMetadata;
use crate::selector::{
    Selector, is_dns_label, validate_dns_subdomain, validate_label_key, validate_label_value,
};

use super::model::{
    BUILTIN_BLOCKED_LABELS, BUILTIN_BLOCKED_NAMES, BUILTIN_BLOCKED_TYPES, BlockedLabel, BreakGlass,
    Cluster, DEFAULT_AGENT_NAMESPACE, DEFAULT_CONTROL_PLANE_NAMESPACE, ExtraBlocked,
    MAX_CLUSTER_NAME_LEN, Policy, SecretSource, is_valid_cluster_name,
};

/// A policy document that failed to parse or validate; lists every problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// Every problem found, in document order (within a mapping, unknown
    /// fields come first).
    pub problems: Vec<Problem>,
}

/// One problem of a policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Field path such as `clusters[1].labels`; empty for the whole document.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

struct Walker {
    problems: Vec<Problem>,
}

impl Policy {
    /// Parses and validates a policy document in YAML or JSON.
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        let value: Value = serde_yaml::from_str(text).map_err(|e| PolicyError {
            problems: vec![Problem {
                path: String::new(),
                message: format!("failed to parse YAML/JSON: {e}"),
            }],
        })?;
        let mut walker = Walker {
            problems: Vec::new(),
        };
        let policy = walker.document(&value);
        if walker.problems.is_empty() {
            Ok(policy)
        } else {
            Err(PolicyError {
                problems: walker.problems,
            })
        }
    }

    /// Reads the document from ConfigMap data under `key` (usually [`POLICY_KEY`]).
    pub fn from_configmap_data(
        data: &BTreeMap<String, String>,
        key: &str,
    ) -> Result<Policy, PolicyError> {
        match data.get(key) {
            Some(text) => Policy::from_yaml(text),
            None => Err(PolicyError {
                problems: vec![Problem {
                    path: format!("data[{key:?}]"),
                    message: format!("the ConfigMap has no key '{key}'"),
                }],
            }),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "failed to load policy: {n} problem{}: ",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "document: {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn index_path(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn field_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn key_path(path: &str, key: &str) -> String {
    format!("{path}[{key:?}]")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl Walker {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// The string-keyed entries of a mapping; reports non-string keys and
    /// keys not in `known`.
    fn mapping<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
        known: &[&str],
    ) -> Option<Vec<(&'v str, &'v Value)>> {
        let Value::Mapping(m) = value else {
            self.problem(path, format!("expected a mapping, found {}", kind(value)));
            return None;
        };
        let mut out = Vec::with_capacity(m.len());
        for (k, v) in m {
            let Value::String(k) = k else {
                self.problem(path, format!("keys must be strings, found {}", kind(k)));
                continue;
            };
            if !known.is_empty() && !known.contains(&k.as_str()) {
                self.problem(
                    field_path(path, k),
                    format!("unknown field; expected one of: {}", known.join(", ")),
                );
                continue;
            }
            out.push((k.as_str(), v));
        }
        Some(out)
    }

    fn string(&mut self, path: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(path, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    fn sequence<'v>(&mut self, path: &str, value: &'v Value) -> &'v [Value] {
        match value {
            Value::Sequence(s) => s,
            Value::Null => &[],
            other => {
                self.problem(path, format!("expected a list, found {}", kind(other)));
                &[]
            }
        }
    }

    fn document(&mut self, value: &Value) -> Policy {
        let mut cp_ns = DEFAULT_CONTROL_PLANE_NAMESPACE.to_owned();
        let mut agent_ns = DEFAULT_AGENT_NAMESPACE.to_owned();
        let mut clusters = Vec::new();
        let mut sources = Vec::new();
        let mut extra = ExtraBlocked::default();
        let mut break_glass = BreakGlass::default();
        let mut strip = StripMetadata::default();
        let known = [
            "controlPlaneNamespace",
            "agentNamespace",
            "clusters",
            "secretSources",
            "extraBlocked",
            "breakGlass",
            "stripMetadata",
        ];
        let fields = if value.is_null() {
            self.problem("", "the document is empty; expected a mapping");
            Vec::new()
        } else {
            self.mapping("", value, &known).unwrap_or_default()
        };
        for (k, v) in fields {
            match k {
                "controlPlaneNamespace" => {
                    if let Some(ns) = self.namespace(k, v) {
                        cp_ns = ns;
                    }
                }
                "agentNamespace" => {
                    if let Some(ns) = self.namespace(k, v) {
                        agent_ns = ns;
                    }
                }
                "clusters" => clusters = self.clusters(k, v),
                "secretSources" => sources = self.sources(k, v),
                "extraBlocked" => extra = self.extra_blocked(k, v),
                "stripMetadata" => strip = self.strip_metadata(k, v),
                _ => break_glass = self.break_glass(k, v),
            }
        }
        Policy::build(
            cp_ns,
            agent_ns,
            clusters,
            sources,
            extra,
            break_glass,
            strip,
        )
    }

    /// `stripMetadata: {labels: [...], annotations: [...]}`: label or
    /// annotation keys, or prefixes ending in `/`.
    fn strip_metadata(&mut self, path: &str, value: &Value) -> StripMetadata {
        let mut out = StripMetadata::default();
        if value.is_null() {
            return out;
        }
        let Some(fields) = self.mapping(path, value, &["labels", "annotations"]) else {
            return out;
        };
        for (k, v) in fields {
            let p = field_path(path, k);
            for (i, item) in self.sequence(&p, v).iter().enumerate() {
                let ip = index_path(&p, i);
                let Some(entry) = self.string(&ip, item) else {
                    continue;
                };
                let checked = match entry.strip_suffix('/') {
                    Some(prefix) => validate_dns_subdomain(prefix).map_err(|m| {
                        format!("'{entry}' is not a key prefix: {m}; write a DNS subdomain followed by '/', or a whole key")
                    }),
                    None => validate_label_key(&entry),
                };
                match checked {
                    Err(m) => self.problem(&ip, m),
                    Ok(()) if k == "labels" => out.labels.push(entry),
                    Ok(()) => out.annotations.push(entry),
                }
            }
        }
        out
    }

    fn namespace(&mut self, path: &str, value: &Value) -> Option<String> {
        let ns = self.string(path, value)?;
        if is_dns_label(&ns) {
            Some(ns)
        } else {
            self.problem(
                path,
                format!(
                    "'{ns}' is not a valid namespace name: use 1 to 63 lowercase alphanumerics or '-', starting and ending alphanumeric"
                ),
            );
            None
        }
    }

    fn clusters(&mut self, path: &str, value: &Value) -> Vec<Cluster> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, item) in self.sequence(path, value).iter().enumerate() {
            let item_path = index_path(path, i);
            let Some(fields) = self.mapping(&item_path, item, &["name", "labels"]) else {
                continue;
            };
            let mut name = None;
            let mut labels = Some(BTreeMap::new());
            for (k, v) in fields {
                let p = field_path(&item_path, k);
                if k == "name" {
                    name = self.cluster_name(&p, v);
                } else {
                    labels = self.labels(&p, v);
                }
            }
            if !fields_has(item, "name") {
                self.problem(
                    field_path(&item_path, "name"),
                    "required: every cluster needs a name",
                );
            }
            let (Some(name), Some(labels)) = (name, labels) else {
                continue;
            };
            if let Some(first) = seen.get(&name) {
                self.problem(
                    field_path(&item_path, "name"),
                    format!("duplicate cluster name '{name}' (first at {path}[{first}]); cluster names must be unique"),
                );
                continue;
            }
            seen.insert(name.clone(), i);
            out.push(Cluster { name, labels });
        }
        out
    }

    fn cluster_name(&mut self, path: &str, value: &Value) -> Option<String> {
        let name = self.string(path, value)?;
        if is_valid_cluster_name(&name) {
            Some(name)
        } else {
            self.problem(
                path,
                format!(
                    "invalid cluster name '{name}': use 1 to {MAX_CLUSTER_NAME_LEN} lowercase alphanumerics or '-', starting and ending alphanumeric"
                ),
            );
            None
        }
    }

    /// A label map; reports each invalid key or value. `None` if any is invalid.
    fn labels(&mut self, path: &str, value: &Value) -> Option<BTreeMap<String, String>> {
        if value.is_null() {
            return Some(BTreeMap::new());
        }
        let fields = self.mapping(path, value, &[])?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in fields {
            let p = key_path(path, k);
            if let Err(m) = validate_label_key(k) {
                self.problem(&p, m);
                ok = false;
            }
            let Value::String(v) = v else {
                self.problem(
                    &p,
                    format!(
                        "label values must be strings (quote them), found {}",
                        kind(v)
                    ),
                );
                ok = false;
                continue;
            };
            if let Err(m) = validate_label_value(v) {
                self.problem(&p, m);
                ok = false;
            }
            out.insert(k.to_owned(), v.clone());
        }
        ok.then_some(out)
    }

    fn sources(&mut self, path: &str, value: &Value) -> Vec<SecretSource> {
        let mut out = Vec::new();
        for (i, item) in self.sequence(path, value).iter().enumerate() {
            let item_path = index_path(path, i);
            let Some(fields) =
                self.mapping(&item_path, item, &["clusterSelector", "labelSelector"])
            else {
                continue;
            };
            let mut cluster_selector = Some(Selector::default());
            let mut label_selector = Some(Selector::default());
            for (k, v) in fields {
                let p = field_path(&item_path, k);
                let sel = self.selector(&p, v);
                if k == "clusterSelector" {
                    cluster_selector = sel;
                } else {
                    label_selector = sel;
                }
            }
            let (Some(cluster_selector), Some(label_selector)) = (cluster_selector, label_selector)
            else {
                continue;
            };
            if cluster_selector.is_empty() && label_selector.is_empty() {
                self.problem(
                    &item_path,
                    "a Secret Source needs a clusterSelector or a labelSelector: with both empty it would allow every Secret of every cluster",
                );
                continue;
            }
            out.push(SecretSource {
                cluster_selector,
                label_selector,
            });
        }
        out
    }

    fn selector(&mut self, path: &str, value: &Value) -> Option<Selector> {
        match value {
            Value::Null => Some(Selector::default()),
            Value::String(s) => match Selector::parse(s) {
                Ok(sel) => Some(sel),
                Err(e) => {
                    self.problem(path, e.to_string());
                    None
                }
            },
            Value::Mapping(_) => {
                let ls = self.label_selector(path, value)?;
                match Selector::from_label_selector(&ls) {
                    Ok(sel) => Some(sel),
                    Err(e) => {
                        self.problem(
                            path,
                            format!("invalid selector: {}: {}", e.token, e.message),
                        );
                        None
                    }
                }
            }
            other => {
                self.problem(
                    path,
                    format!(
                        "expected a selector string or a mapping with matchLabels/matchExpressions, found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    fn label_selector(&mut self, path: &str, value: &Value) -> Option<LabelSelector> {
        let fields = self.mapping(path, value, &["matchLabels", "matchExpressions"])?;
        let before = self.problems.len();
        let mut ls = LabelSelector::default();
        for (k, v) in fields {
            let p = field_path(path, k);
            if k == "matchLabels" {
                ls.match_labels = self.labels(&p, v);
            } else {
                let mut exprs = Vec::new();
                for (i, e) in self.sequence(&p, v).iter().enumerate() {
                    let ep = index_path(&p, i);
                    let Some(ef) = self.mapping(&ep, e, &["key", "operator", "values"]) else {
                        continue;
                    };
                    let mut req = LabelSelectorRequirement::default();
                    for (ek, ev) in ef {
                        let fp = field_path(&ep, ek);
                        match ek {
                            "key" => req.key = self.string(&fp, ev).unwrap_or_default(),
                            "operator" => req.operator = self.string(&fp, ev).unwrap_or_default(),
                            _ => {
                                let vals: Vec<String> = self
                                    .sequence(&fp, ev)
                                    .iter()
                                    .enumerate()
                                    .filter_map(|(j, x)| self.string(&index_path(&fp, j), x))
                                    .collect();
                                req.values = Some(vals);
                            }
                        }
                    }
                    exprs.push(req);
                }
                ls.match_expressions = Some(exprs);
            }
        }
        (self.problems.len() == before).then_some(ls)
    }

    fn extra_blocked(&mut self, path: &str, value: &Value) -> ExtraBlocked {
        let mut out = ExtraBlocked::default();
        if value.is_null() {
            return out;
        }
        let Some(fields) = self.mapping(path, value, &["names", "types", "labels"]) else {
            return out;
        };
        for (k, v) in fields {
            let p = field_path(path, k);
            for (i, item) in self.sequence(&p, v).iter().enumerate() {
                let ip = index_path(&p, i);
                let Some(entry) = self.string(&ip, item) else {
                    continue;
                };
                match k {
                    "names" => {
                        if let Some(n) = self.blocked_name(&ip, &entry) {
                            out.names.insert(n);
                        }
                    }
                    "types" => {
                        if let Some(t) = self.blocked_type(&ip, &entry) {
                            out.types.insert(t);
                        }
                    }
                    _ => {
                        if let Some(l) = self.blocked_label(&ip, &entry) {
                            out.labels.push(l);
                        }
                    }
                }
            }
        }
        out
    }

    fn unblock_attempt(&mut self, path: &str, what: &str, target: &str, builtin: bool) {
        if builtin {
            self.problem(
                path,
                format!(
                    "cannot unblock the built-in blocked {what} '{target}': extraBlocked only adds to the built-in list"
                ),
            );
        } else {
            self.problem(
                path,
                format!(
                    "'{target}' would unblock a {what}; extraBlocked only adds entries, remove this one"
                ),
            );
        }
    }

    fn blocked_name(&mut self, path: &str, entry: &str) -> Option<String> {
        if let Some(target) = entry.strip_prefix('!') {
            let target = target.trim();
            self.unblock_attempt(
                path,
                "name",
                target,
                BUILTIN_BLOCKED_NAMES.contains(&target),
            );
            return None;
        }
        match validate_dns_subdomain(entry) {
            Ok(()) => Some(entry.to_owned()),
            Err(m) => {
                self.problem(path, format!("invalid Secret name: {m}"));
                None
            }
        }
    }

    fn blocked_type(&mut self, path: &str, entry: &str) -> Option<String> {
        if let Some(target) = entry.strip_prefix('!') {
            let target = target.trim();
            self.unblock_attempt(
                path,
                "type",
                target,
                BUILTIN_BLOCKED_TYPES.contains(&target),
            );
            return None;
        }
        if entry.trim().is_empty() {
            self.problem(path, "a blocked type must not be empty");
            return None;
        }
        Some(entry.to_owned())
    }

    fn blocked_label(&mut self, path: &str, entry: &str) -> Option<BlockedLabel> {
        let builtin = |key: &str, value: Option<&str>| {
            BUILTIN_BLOCKED_LABELS
                .iter()
                .any(|(k, v)| *k == key && value.is_none_or(|value| value == *v))
        };
        if let Some((key, value)) = entry.split_once("!=") {
            let (key, value) = (key.trim(), value.trim());
            self.unblock_attempt(
                path,
                "label",
                &format!("{key}={value}"),
                builtin(key, Some(value)),
            );
            return None;
        }
        if let Some(key) = entry.strip_prefix('!') {
            let key = key.trim();
            self.unblock_attempt(path, "label", key, builtin(key, None));
            return None;
        }
        let (key, value) = match entry.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_start_matches('='))),
            None => (entry.trim(), None),
        };
        let mut ok = true;
        if let Err(m) = validate_label_key(key) {
            self.problem(path, m);
            ok = false;
        }
        if let Some(v) = value
            && let Err(m) = validate_label_value(v)
        {
            self.problem(path, m);
            ok = false;
        }
        ok.then(|| BlockedLabel {
            key: key.to_owned(),
            value: value.map(str::to_owned),
        })
    }

    fn break_glass(&mut self, path: &str, value: &Value) -> BreakGlass {
        let mut out = BreakGlass::default();
        if value.is_null() {
            return out;
        }
        let Some(fields) = self.mapping(path, value, &["users", "groups"]) else {
            return out;
        };
        for (k, v) in fields {
            let p = field_path(path, k);
            for (i, item) in self.sequence(&p, v).iter().enumerate() {
                let ip = index_path(&p, i);
                let Some(entry) = self.string(&ip, item) else {
                    continue;
                };
                if entry.trim().is_empty() {
                    self.problem(&ip, "must not be empty");
                    continue;
                }
                if k == "users" {
                    out.users.insert(entry);
                } else {
                    out.groups.insert(entry);
                }
            }
        }
        out
    }
}

fn fields_has(value: &Value, key: &str) -> bool {
    value.as_mapping().is_some_and(|m| m.contains_key(key))
}
