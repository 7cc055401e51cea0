//! Field ownership (`metadata.managedFields`, FieldsV1) and server-side apply.
//!
//! Ownership is tracked at the granularity kube uses for these kinds: each key of
//! `metadata.labels`, `metadata.annotations` and of map fields such as `data`, and every other
//! leaf (`type`, `immutable`, `webhooks` as a whole list).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::status::{Status, StatusCause};

/// A set of owned field paths, e.g. `["data", "x"]`.
pub(crate) type FieldSet = BTreeSet<Vec<String>>;

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    fields: FieldSet,
    subresource: Option<String>,
}

/// The fields an object sets.
pub(crate) fn fields_of(obj: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    let Some(map) = obj.as_object() else {
        return set;
    };
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                if value
                    .get("generateName")
                    .is_some_and(|g| g.as_str().is_some_and(|g| !g.is_empty()))
                {
                    set.insert(vec!["metadata".into(), "generateName".into()]);
                }
                for sub in ["labels", "annotations"] {
                    if let Some(m) = value.get(sub).and_then(Value::as_object) {
                        for k in m.keys() {
                            set.insert(vec!["metadata".into(), sub.into(), k.clone()]);
                        }
                    }
                }
            }
            _ => collect(value, &mut vec![key.clone()], &mut set),
        }
    }
    set
}

/// The segment that marks a map itself (FieldsV1 `".": {}`), as in `["data", "."]`.
const NODE: &str = ".";

fn is_node(path: &[String]) -> bool {
    path.last().is_some_and(|s| s == NODE)
}

/// The maps an object holds (non-empty `metadata.labels` and `metadata.annotations`, a
/// Secret's or ConfigMap's `data`, `stringData`, `binaryData`), as node paths. A manager
/// whose update creates one owns the map itself, which FieldsV1 writes `".": {}`; apply
/// does not record them (structured-merge-diff's Update and Apply field sets).
fn map_nodes(obj: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    let non_empty = |v: Option<&Value>| v.and_then(Value::as_object).is_some_and(|m| !m.is_empty());
    for sub in ["labels", "annotations"] {
        if non_empty(obj["metadata"].get(sub)) {
            set.insert(vec!["metadata".into(), sub.into(), NODE.into()]);
        }
    }
    if matches!(obj["kind"].as_str(), Some("Secret" | "ConfigMap")) {
        for field in ["data", "stringData", "binaryData"] {
            if non_empty(obj.get(field)) {
                set.insert(vec![field.into(), NODE.into()]);
            }
        }
    }
    set
}

fn collect(value: &Value, path: &mut Vec<String>, set: &mut FieldSet) {
    match value {
        // an empty map sets no field of its own (and must not overwrite the live map)
        Value::Object(map) if map.is_empty() => {}
        Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                collect(v, path, set);
                path.pop();
            }
        }
        _ => {
            set.insert(path.clone());
        }
    }
}

fn get_path<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, seg| v.get(seg))
}

fn set_path(obj: &mut Value, path: &[String], value: Value) {
    let mut cur = obj;
    for seg in &path[..path.len() - 1] {
        if !cur.get(seg).is_some_and(Value::is_object)
            && let Some(m) = cur.as_object_mut()
        {
            m.insert(seg.clone(), Value::Object(Map::new()));
        }
        match cur.get_mut(seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let (Some(m), Some(last)) = (cur.as_object_mut(), path.last()) {
        m.insert(last.clone(), value);
    }
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = &mut *obj;
    for seg in parents {
        match cur.get_mut(seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
    // Drop maps emptied by the removal, as a typed object would not serialise them.
    if (parents.len() > 1 || (parents.len() == 1 && parents[0] != "metadata"))
        && get_path(obj, parents)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        remove_path(obj, parents);
    }
}

/// `.data.x` as structured-merge-diff prints a path.
fn path_string(path: &[String]) -> String {
    path.iter().map(|s| format!(".{s}")).collect()
}

/// Renders a field set as FieldsV1 (`{"f:data": {"f:x": {}}}`); a map owned with some of
/// its keys is `{".": {}, "f:x": {}}`, one owned without any is `{}`.
pub(crate) fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = to_fields_v1_raw(set);
    collapse_lone_nodes(&mut root);
    root
}

fn collapse_lone_nodes(v: &mut Value) {
    if let Some(map) = v.as_object_mut() {
        if map.len() == 1 && map.contains_key(NODE) {
            map.clear();
            return;
        }
        for child in map.values_mut() {
            collapse_lone_nodes(child);
        }
    }
}

fn to_fields_v1_raw(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            let key = if seg == NODE {
                NODE.to_owned()
            } else {
                format!("f:{seg}")
            };
            let Some(map) = cur.as_object_mut() else {
                break;
            };
            cur = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

/// Parses FieldsV1 back into a set; `.` entries are node paths, list keys are ignored.
pub(crate) fn from_fields_v1(value: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    walk_v1(value, &mut Vec::new(), &mut set);
    // A map written `{}` (owned without keys) is the map itself.
    set.into_iter()
        .map(|mut p| {
            let is_map = matches!(
                p.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
                ["data" | "stringData" | "binaryData"] | ["metadata", "labels" | "annotations"]
            );
            if is_map {
                p.push(NODE.into());
            }
            p
        })
        .collect()
}

fn walk_v1(value: &Value, path: &mut Vec<String>, set: &mut FieldSet) {
    let Some(map) = value.as_object() else {
        return;
    };
    let children: Vec<(&String, &Value)> =
        map.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    let node = map.contains_key(NODE);
    if node && !path.is_empty() {
        let mut p = path.clone();
        p.push(NODE.into());
        set.insert(p);
    }
    if children.is_empty() {
        if !path.is_empty() && !node {
            set.insert(path.clone());
        }
        return;
    }
    for (k, v) in children {
        path.push(k[2..].to_owned());
        walk_v1(v, path, set);
        path.pop();
    }
}

fn entries_of(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_owned(),
            operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
            time: e["time"].as_str().unwrap_or_default().to_owned(),
            fields: from_fields_v1(&e["fieldsV1"]),
            subresource: e["subresource"].as_str().map(str::to_owned),
        })
        .collect()
}

fn write_entries(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(s) = e.subresource {
                v["subresource"] = json!(s);
            }
            if let (true, Some(m)) = (e.manager.is_empty(), v.as_object_mut()) {
                // metav1.ManagedFieldsEntry.manager is omitempty
                m.remove("manager");
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Records a non-apply write (`operation: Update`) by `manager`: it takes the fields it changed,
/// and fields it removed leave every manager.
pub(crate) fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    let mut entries = old.map(entries_of).unwrap_or_default();
    let new_fields = fields_of(new);
    let old_fields = old.map(fields_of).unwrap_or_default();
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| old.is_none_or(|o| get_path(o, p) != get_path(new, p)))
        .cloned()
        .collect();
    let mut removed: FieldSet = old_fields.difference(&new_fields).cloned().collect();
    let new_nodes = map_nodes(new);
    let old_nodes = old.map(map_nodes).unwrap_or_default();
    // A map this write creates is its own; a map it removes is nobody's.
    let changed: FieldSet = changed
        .into_iter()
        .chain(new_nodes.difference(&old_nodes).cloned())
        .collect();
    removed.extend(old_nodes.difference(&new_nodes).cloned());
    for e in &mut entries {
        e.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update" && e.subresource.is_none())
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_owned();
                e.api_version = api_version.to_owned();
            }
            None => entries.push(Entry {
                manager: manager.to_owned(),
                operation: "Update".into(),
                api_version: api_version.to_owned(),
                time: now.to_owned(),
                fields: changed,
                subresource: None,
            }),
        }
    }
    write_entries(new, entries);
}

fn describe_manager(e: &Entry) -> String {
    if e.operation == "Update" {
        format!("{:?} using {}", e.manager, e.api_version)
    } else {
        format!("{:?}", e.manager)
    }
}

/// Server-side apply of `applied` by `manager` onto `live` (None: the object is created).
/// Returns the merged object with updated managedFields, or a 409 with FieldManagerConflict causes.
pub(crate) fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    now: &str,
) -> Result<Value, Status> {
    let applied_fields = fields_of(applied);
    let mut entries = live.map(entries_of).unwrap_or_default();
    let mine = |e: &Entry| e.manager == manager && e.operation == "Apply";

    if let Some(live) = live {
        let conflicts = conflicts(&entries, &applied_fields, applied, live, &mine);
        if !conflicts.is_empty() && !force {
            return Err(conflict_status(&conflicts));
        }
    }

    let previous: FieldSet = entries
        .iter()
        .filter(|e| mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut merged = apply_base(live, applied);
    for e in &mut entries {
        if force && !mine(e) {
            e.fields.retain(|p| !applied_fields.contains(p));
        }
    }
    // Fields this manager applied before and no longer applies go, unless someone else owns them.
    for p in previous.difference(&applied_fields) {
        let owned_elsewhere = entries.iter().any(|e| !mine(e) && e.fields.contains(p));
        if !owned_elsewhere {
            remove_path(&mut merged, p);
        }
    }
    for p in &applied_fields {
        if let Some(v) = get_path(applied, p) {
            set_path(&mut merged, p, v.clone());
        }
    }
    // Maps gone from the result are nobody's any more.
    let present = map_nodes(&merged);
    for e in &mut entries {
        e.fields.retain(|p| !is_node(p) || present.contains(p));
    }
    entries.retain(|e| !mine(e));
    entries.insert(
        0,
        Entry {
            manager: manager.to_owned(),
            operation: "Apply".into(),
            api_version: api_version.to_owned(),
            time: now.to_owned(),
            fields: applied_fields,
            subresource: None,
        },
    );
    write_entries(&mut merged, entries);
    Ok(merged)
}

/// The fields other managers own that `applied` sets to another value than `live` has:
/// (the manager as the conflict names it, the field).
fn conflicts(
    entries: &[Entry],
    applied_fields: &FieldSet,
    applied: &Value,
    live: &Value,
    mine: &dyn Fn(&Entry) -> bool,
) -> Vec<(String, Vec<String>)> {
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !mine(e)) {
        for p in e.fields.intersection(applied_fields) {
            if get_path(applied, p) != get_path(live, p) {
                conflicts.push((describe_manager(e), p.clone()));
            }
        }
    }
    conflicts
}

/// What an apply starts from: the live object (or the applied type and metadata for a
/// create), with the applied name, namespace and generateName; on create, labels and
/// annotations are left to the applied fields.
fn apply_base(live: Option<&Value>, applied: &Value) -> Value {
    let mut merged = live.cloned().unwrap_or_else(|| {
        json!({
            "apiVersion": applied["apiVersion"],
            "kind": applied["kind"],
            "metadata": applied["metadata"].clone(),
        })
    });
    if let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(applied_meta) = applied["metadata"].as_object() {
            for k in ["name", "namespace", "generateName"] {
                if let Some(v) = applied_meta.get(k) {
                    meta.insert(k.into(), v.clone());
                }
            }
        }
        if live.is_none() {
            meta.remove("labels");
            meta.remove("annotations");
        }
    }
    merged
}

fn conflict_status(conflicts: &[(String, Vec<String>)]) -> Status {
    let causes = conflicts
        .iter()
        .map(|(m, p)| StatusCause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {m}"),
            field: path_string(p),
        })
        .collect();
    let message = if let [(m, p)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {m}: {}",
            path_string(p)
        )
    } else {
        let mut lines = Vec::new();
        let mut managers: Vec<&String> = conflicts.iter().map(|(m, _)| m).collect();
        managers.sort();
        managers.dedup();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            for (_, p) in conflicts.iter().filter(|(x, _)| x == m) {
                lines.push(format!("- {}", path_string(p)));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    Status::apply_conflict(message, causes)
}

/// The field manager of a non-apply write: `fieldManager`, else the User-Agent's program
/// name (the part before the first '/', printable characters, at most 128 bytes), as
/// kube-apiserver derives it; empty without either.
pub(crate) fn manager_from(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_owned();
    }
    let prefix = user_agent
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default();
    let mut out = String::new();
    for c in prefix.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > 128 {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn secret(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"}, "data": data})
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj =
            json!({"metadata": {"labels": {"a": "1"}}, "data": {"x": "eA=="}, "type": "Opaque"});
        let set = fields_of(&obj);
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1,
            json!({"f:data": {"f:x": {}}, "f:metadata": {"f:labels": {"f:a": {}}}, "f:type": {}})
        );
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn apply_conflicts_with_another_manager_on_a_changed_value() {
        let mut live = secret(json!({"x": "MQ=="}));
        record_update(None, &mut live, "kubectl-client-side-apply", "v1", NOW);
        let err = apply(
            Some(&live),
            &secret(json!({"x": "Mg=="})),
            "kubectl",
            false,
            "v1",
            NOW,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.x"#
        );
        assert_eq!(err.causes[0].reason, "FieldManagerConflict");
        assert_eq!(err.causes[0].field, ".data.x");
        // same value: shared ownership, no conflict
        assert!(
            apply(
                Some(&live),
                &secret(json!({"x": "MQ=="})),
                "kubectl",
                false,
                "v1",
                NOW
            )
            .is_ok()
        );
        // force takes it over
        let forced = apply(
            Some(&live),
            &secret(json!({"x": "Mg=="})),
            "kubectl",
            true,
            "v1",
            NOW,
        )
        .unwrap();
        assert_eq!(forced["data"]["x"], "Mg==");
        let entries = entries_of(&forced);
        // The client-side applier keeps the data map it created.
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].manager, "kubectl");
        assert_eq!(
            forced["metadata"]["managedFields"][1]["fieldsV1"],
            json!({"f:data": {}})
        );
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_owned_elsewhere() {
        let first = apply(
            None,
            &secret(json!({"a": "MQ==", "b": "Mg=="})),
            "m1",
            false,
            "v1",
            NOW,
        )
        .unwrap();
        let shared = apply(
            Some(&first),
            &secret(json!({"b": "Mg=="})),
            "m2",
            false,
            "v1",
            NOW,
        )
        .unwrap();
        let second = apply(Some(&shared), &secret(json!({})), "m1", false, "v1", NOW).unwrap();
        assert!(second["data"].get("a").is_none());
        assert_eq!(second["data"]["b"], "Mg==");
    }

    #[test]
    fn update_moves_ownership_of_changed_fields() {
        let mut a = secret(json!({"x": "MQ=="}));
        record_update(None, &mut a, "m1", "v1", NOW);
        let mut b = secret(json!({"x": "Mg==", "y": "Mw=="}));
        b["metadata"]["managedFields"] = a["metadata"]["managedFields"].clone();
        record_update(Some(&a), &mut b, "m2", "v1", NOW);
        let entries = entries_of(&b);
        // m1 created the data map and keeps it, without the key it lost (as kube-apiserver
        // answers: m1 `{"f:data": {}}`, m2 `{"f:data": {"f:x": {}, "f:y": {}}}`).
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(entries[0].manager, "m1");
        assert_eq!(
            entries[0].fields,
            FieldSet::from([vec!["data".to_owned(), NODE.to_owned()]])
        );
        assert_eq!(
            b["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:data": {}})
        );
        assert_eq!(
            b["metadata"]["managedFields"][1]["fieldsV1"],
            json!({"f:data": {"f:x": {}, "f:y": {}}})
        );
        assert_eq!(
            a["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:data": {".": {}, "f:x": {}}})
        );
        // Removing the map removes it from its owner.
        let mut c = secret(json!(null));
        c.as_object_mut().unwrap().remove("data");
        c["metadata"]["managedFields"] = b["metadata"]["managedFields"].clone();
        record_update(Some(&b), &mut c, "m3", "v1", NOW);
        assert!(c["metadata"].get("managedFields").is_none(), "{c}");
    }

    #[test]
    fn manager_comes_from_user_agent() {
        assert_eq!(
            manager_from(None, Some("kubectl/v1.32.0 (linux/amd64)")),
            "kubectl"
        );
        assert_eq!(manager_from(Some("x"), Some("kubectl/v1")), "x");
        assert_eq!(manager_from(None, None), "");
    }
}
