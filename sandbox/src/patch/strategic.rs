//! Strategic merge patch as kube-apiserver applies it: `StrategicMergeMapPatch`
//! (k8s.io/apimachinery/pkg/util/strategicpatch/patch.go) with the server's options
//! (`MergeParallelList`, `IgnoreUnmatchedNulls`), ported function by function.
//!
//! What the patch's Go type says (`patchStrategy:"merge"`, `patchMergeKey`) comes from
//! [`Schema`]. The directives: `$patch: replace` in a map replaces the whole map with the
//! patch's (without the directive), `$patch: delete` removes the map, and any other
//! `$patch` value is an error; a patch map with a directive for a field the object does not
//! have is dropped. `$retainKeys` keeps only the listed keys of the map it is in (every key
//! the patch sets must be listed). `$setElementOrder/<list>` orders a merging list and
//! `$deleteFromPrimitiveList/<list>` removes values from a list of scalars. In a merging
//! list of maps, `{"<key>": ..., "$patch": "delete"}` removes the entry with that key and
//! `{"$patch": "replace"}` makes the patch's entries the whole list. Other keys starting with
//! `$` are plain keys.
//!
//! Go walks a map in random order; here keys are taken in sorted order. The patch is
//! changed as Go changes it (directives removed, nulls dropped), because kube-apiserver
//! prints it (`%+v`) in the error when the patched object does not decode.

use serde_json::{Map, Value};

use crate::gojson::{go_type, quote, sprint, sprint_s};
use crate::resource::Schema;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Why a strategic merge patch could not be applied (k8s.io/apimachinery/pkg/util/mergepatch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MergeError {
    /// One of the errors kube-apiserver answers with 400 BadRequest.
    BadRequest(&'static str),
    /// `ErrNoListOfLists`, a generic 422.
    NoListOfLists,
    /// Any other error: kube-apiserver answers 500 with this message and no reason.
    Other(String),
}

const ERR_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";

type Result<T> = std::result::Result<T, MergeError>;

/// Applies `patch` to `original` (an object of type `schema`), changing `patch` as Go does.
pub(crate) fn merge(
    original: Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema,
) -> Result<Map<String, Value>> {
    merge_map(original, patch, schema)
}

/// `mergepatch.ErrBadArgType`: `expected a []interface {}, but received a string`.
fn bad_arg_type(expected: &str, actual: &Value) -> MergeError {
    MergeError::Other(format!(
        "expected a {expected}, but received a {}",
        go_type(actual)
    ))
}

/// `mergepatch.ErrNoMergeKey`.
fn no_merge_key(map: &Map<String, Value>, key: &str) -> MergeError {
    MergeError::Other(format!(
        "map: {} does not contain declared merge key: {key}",
        sprint(&Value::Object(map.clone()))
    ))
}

/// `mergepatch.ErrBadPatchType`.
fn bad_patch_type(directive: &Value, map: &Map<String, Value>) -> MergeError {
    MergeError::Other(format!(
        "unknown patch type: {} in map: {}",
        sprint_s(directive),
        sprint(&Value::Object(map.clone()))
    ))
}

/// `LookupPatchMetadataForStruct`: the field `key` of a struct, its type and merge key.
fn struct_field(schema: Schema, key: &str) -> Result<(Schema, Option<&'static str>)> {
    match schema {
        Schema::Struct(s) | Schema::Ptr(s) => s
            .fields
            .iter()
            .find(|f| f.name == key)
            .map(|f| (f.schema, f.merge_key))
            .ok_or_else(|| {
                MergeError::Other(format!(
                    "unable to find api field in struct {} for the json field {}",
                    s.name,
                    quote(key)
                ))
            }),
        other => Err(MergeError::Other(format!(
            "merging an object in json but data type is not struct, instead is: {}",
            other.go_kind()
        ))),
    }
}

/// `LookupPatchMetadataForSlice`: the element type of list field `key`, and its merge key.
fn slice_field(schema: Schema, key: &str) -> Result<(Schema, Option<&'static str>)> {
    match struct_field(schema, key)? {
        (Schema::List(item), merge_key) => Ok((*item, merge_key)),
        _ => Err(MergeError::Other(format!(
            "expected slice or array type, but got: {}",
            schema.go_kind()
        ))),
    }
}

/// `extractKey`: the list a `$deleteFromPrimitiveList/` or `$setElementOrder/` key names.
fn extract_key(key: &str, prefix: &'static str) -> Result<String> {
    match key.split_once('/') {
        Some((p, rest)) if p == prefix => Ok(rest.to_owned()),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST => {
            Err(MergeError::BadRequest(ERR_PRIMITIVE_LIST))
        }
        _ => Err(MergeError::BadRequest(ERR_SET_ELEMENT_ORDER)),
    }
}

/// Whether two values have the same Go type (`reflect.TypeOf`).
fn same_type(a: &Value, b: &Value) -> bool {
    go_type(a) == go_type(b)
}

/// `mergeMap`.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        // handleDirectiveInMergeMap
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                Ok(patch.clone())
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(directive, patch)),
        };
    }
    apply_retain_keys(&mut original, patch)?;
    merge_patch_into_original(&mut original, patch, schema)?;

    let keys: Vec<String> = patch.keys().cloned().collect();
    for key in keys {
        let Some(patch_v) = patch.get_mut(&key) else {
            continue;
        };
        // preprocessDeletionListForMerging
        let (k, delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (extract_key(&key, DELETE_FROM_PRIMITIVE_LIST)?, true)
        } else {
            (key.clone(), false)
        };
        if patch_v.is_null() {
            original.remove(&k);
            continue;
        }
        let replaced = match original.get(&k) {
            None => true,
            Some(o) => !same_type(o, patch_v),
        };
        if replaced {
            if !delete_list {
                discard_null_values(patch_v);
                match remove_directives(patch_v) {
                    Some(v) => original.insert(k, v),
                    None => original.remove(&k),
                };
            }
            continue;
        }
        match (original.get_mut(&k), patch_v) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                let (sub, _) = struct_field(schema, &k)?;
                *o = merge_map(std::mem::take(o), p, sub)?;
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                let (item, merge_key) = slice_field(schema, &k)?;
                *o = merge_slice_handler(std::mem::take(o), p, item, merge_key, delete_list)?;
            }
            (_, patch_v) => match remove_directives(patch_v) {
                Some(v) => {
                    original.insert(k, v);
                }
                None => {
                    original.remove(&k);
                }
            },
        }
    }
    Ok(original)
}

/// `discardNullValuesFromPatch`: drops null entries from the maps in `v`.
fn discard_null_values(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_null_values);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_null_values),
        _ => {}
    }
}

/// `removeDirectives`: the value without maps carrying `$patch` (`None` when `v` is one).
/// Maps are changed in place; a list is copied without such maps (the patch keeps its own).
fn remove_directives(v: &mut Value) -> Option<Value> {
    match v {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if let Some(child) = map.get_mut(&k) {
                    match remove_directives(child) {
                        Some(new) => *child = new,
                        None => {
                            map.remove(&k);
                        }
                    }
                }
            }
            Some(Value::Object(map.clone()))
        }
        Value::Array(items) => Some(Value::Array(
            items.iter_mut().filter_map(remove_directives).collect(),
        )),
        other => Some(other.clone()),
    }
}

/// `applyRetainKeysDirective`.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(MergeError::BadRequest(ERR_RETAIN_KEYS));
    };
    let kept = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !kept(k) {
            return Err(MergeError::BadRequest(ERR_RETAIN_KEYS));
        }
    }
    original.retain(|k, _| kept(k));
    Ok(())
}

/// `mergePatchIntoOriginal`: merges each list that has a `$setElementOrder/` directive and
/// orders it as the directive says.
fn merge_patch_into_original(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema,
) -> Result<()> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let Some(order) = patch.remove(&key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg_type("[]interface {}", &order));
        };
        let list_key = extract_key(&key, SET_ELEMENT_ORDER)?;
        let original_list = match original.get(&list_key) {
            None => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => return Err(bad_arg_type("[]interface {}", other)),
        };
        let found_patch = match patch.get(&list_key) {
            None => false,
            Some(Value::Array(_)) => true,
            Some(other) => return Err(bad_arg_type("[]interface {}", other)),
        };
        let (item, merge_key) = slice_field(schema, &list_key)?;
        let merge_key_name = merge_key.unwrap_or_default();
        let patch_list = |patch: &Map<String, Value>| match patch.get(&list_key) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        validate_patch_with_set_order_list(&patch_list(patch), &order, merge_key_name)?;
        let merged = match (&original_list, found_patch) {
            (Some(o), false) => o.clone(),
            (None, true) => match patch.get_mut(&list_key).and_then(remove_directives) {
                Some(Value::Array(items)) => items,
                _ => continue,
            },
            (Some(o), true) => {
                let Some(Value::Array(p)) = patch.get_mut(&list_key) else {
                    continue;
                };
                merge_slice_handler(o.clone(), p, item, merge_key, false)?
            }
            (None, false) => continue,
        };
        let (patch_items, server_only) = if merge_key_name.is_empty() {
            partition_primitives(&merged, &order)
        } else {
            partition_maps(&merged, &order, merge_key_name)?
        };
        let original_list = original_list.unwrap_or_default();
        let kind = slice_element_type(&[&original_list, &patch_list(patch)])?;
        let both = normalize_element_order(
            patch_items,
            server_only,
            &order,
            &original_list,
            merge_key_name,
            kind,
        )?;
        original.insert(list_key.clone(), Value::Array(both));
        patch.remove(&list_key);
    }
    Ok(())
}

/// `validatePatchWithSetOrderList`: the patch's entries must appear in the directive's
/// list in the same order.
fn validate_patch_with_set_order_list(
    patch: &[Value],
    order: &[Value],
    merge_key: &str,
) -> Result<()> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<Value> = if merge_key.is_empty() {
        patch.to_vec()
    } else {
        extract_to_delete_items(patch.to_vec())?.0
    };
    let (mut p, mut s) = (0, 0);
    while p < non_delete.len() && s < order.len() {
        if non_delete[p]
            .as_object()
            .is_some_and(|m| m.contains_key(DIRECTIVE))
        {
            p += 1;
            continue;
        }
        if merge_key_value_equal(&non_delete[p], &order[s], merge_key)? {
            p += 1;
        }
        s += 1;
    }
    if p < non_delete.len() && s >= order.len() {
        return Err(MergeError::Other(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            sprint(&Value::Array(patch.to_vec())),
            sprint(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

/// `mergeKeyValueEqual`.
fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let l = left
        .as_object()
        .ok_or_else(|| bad_arg_type("map[string]interface {}", left))?;
    let r = right
        .as_object()
        .ok_or_else(|| bad_arg_type("map[string]interface {}", right))?;
    let lv = l.get(merge_key).ok_or_else(|| no_merge_key(l, merge_key))?;
    let rv = r.get(merge_key).ok_or_else(|| no_merge_key(r, merge_key))?;
    Ok(lv == rv)
}

/// `mergeSliceHandler`: a list merges when its field says so (or for a
/// `$deleteFromPrimitiveList`); otherwise the patch's list replaces it.
fn merge_slice_handler(
    original: Vec<Value>,
    patch: &mut [Value],
    item: Schema,
    merge_key: Option<&str>,
    delete_list: bool,
) -> Result<Vec<Value>> {
    if merge_key.is_some() || delete_list {
        merge_slice(
            original,
            patch,
            item,
            merge_key.unwrap_or_default(),
            delete_list,
        )
    } else {
        Ok(patch.to_vec())
    }
}

/// `sliceElementType`: the one Go type of the elements of `lists`.
fn slice_element_type(lists: &[&[Value]]) -> Result<&'static str> {
    let mut prev: Option<&'static str> = None;
    for list in lists {
        for v in *list {
            let current = go_type(v);
            match prev {
                None => {
                    if current == "[]interface {}" {
                        return Err(MergeError::NoListOfLists);
                    }
                    prev = Some(current);
                }
                Some(p) if p != current => {
                    let all: Vec<Value> = lists.iter().map(|l| Value::Array(l.to_vec())).collect();
                    return Err(MergeError::Other(format!(
                        "list element types are not identical: {}",
                        sprint(&Value::Array(all))
                    )));
                }
                Some(_) => {}
            }
        }
    }
    prev.ok_or_else(|| MergeError::Other("no elements in any of the given slices".to_owned()))
}

const MAP_TYPE: &str = "map[string]interface {}";

/// `mergeSlice`.
fn merge_slice(
    original: Vec<Value>,
    patch: &mut [Value],
    item: Schema,
    merge_key: &str,
    delete_list: bool,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = slice_element_type(&[&original, patch])?;
    if kind != MAP_TYPE {
        return merge_primitive_slice(original, patch, delete_list, kind);
    }
    if merge_key.is_empty() {
        return Err(MergeError::Other(format!(
            "cannot merge lists without merge key for {}",
            item.go_kind()
        )));
    }
    let mut original = original;
    let (mut entries, replace) = special_elements(&mut original, patch, merge_key)?;
    if replace {
        original = entries.iter().map(|&i| patch[i].clone()).collect();
        entries.clear();
    }
    let merged = merge_entries(original.clone(), patch, &entries, item, merge_key)?;
    let patch_entries: Vec<Value> = entries.iter().map(|&i| patch[i].clone()).collect();
    let (patch_items, server_only) = partition_maps(&merged, &patch_entries, merge_key)?;
    normalize_element_order(
        patch_items,
        server_only,
        &patch_entries,
        &original,
        merge_key,
        kind,
    )
}

/// `mergeSlice` of scalars: a `$deleteFromPrimitiveList` removes the patch's values,
/// otherwise the union without duplicates, in the patch's order.
fn merge_primitive_slice(
    original: Vec<Value>,
    patch: &[Value],
    delete_list: bool,
    kind: &'static str,
) -> Result<Vec<Value>> {
    if delete_list {
        return Ok(original
            .into_iter()
            .filter(|v| !patch.contains(v))
            .collect());
    }
    let mut both = original.clone();
    both.extend(patch.iter().cloned());
    let merged = deduplicate_scalars(both);
    let (patch_items, server_only) = partition_primitives(&merged, patch);
    normalize_element_order(patch_items, server_only, patch, &original, "", kind)
}

/// `mergeSliceWithSpecialElements`: applies the `$patch: delete` entries to `original` and
/// returns the indices of the patch entries without a directive, and whether one was
/// `$patch: replace`.
fn special_elements(
    original: &mut Vec<Value>,
    patch: &[Value],
    merge_key: &str,
) -> Result<(Vec<usize>, bool)> {
    let mut entries = Vec::new();
    let mut replace = false;
    for (i, v) in patch.iter().enumerate() {
        let Some(map) = v.as_object() else {
            continue;
        };
        match map.get(DIRECTIVE) {
            None => entries.push(i),
            Some(d) if d.as_str() == Some("delete") => {
                let value = map
                    .get(merge_key)
                    .ok_or_else(|| no_merge_key(map, merge_key))?;
                // deleteMatchingEntries
                while let Some(at) = find_map(original, merge_key, value)? {
                    original.remove(at);
                }
            }
            Some(d) if d.as_str() == Some("replace") => replace = true,
            Some(d) if d.as_str() == Some("merge") => {
                return Err(MergeError::Other(
                    "merging lists cannot yet be specified in the patch".to_owned(),
                ));
            }
            Some(d) => return Err(bad_patch_type(d, map)),
        }
    }
    Ok((entries, replace))
}

/// `mergeSliceWithoutSpecialElements`: each patch entry merges into the element with its
/// merge key's value, or is appended.
fn merge_entries(
    mut merged: Vec<Value>,
    patch: &mut [Value],
    entries: &[usize],
    item: Schema,
    merge_key: &str,
) -> Result<Vec<Value>> {
    for &i in entries {
        let Some(entry) = patch[i].as_object_mut() else {
            continue;
        };
        let value = entry
            .get(merge_key)
            .cloned()
            .ok_or_else(|| no_merge_key(entry, merge_key))?;
        match find_map(&merged, merge_key, &value)? {
            Some(at) => {
                let current = match std::mem::take(&mut merged[at]) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                merged[at] = Value::Object(merge_map(current, entry, item)?);
            }
            None => merged.push(Value::Object(entry.clone())),
        }
    }
    Ok(merged)
}

/// `findMapInSliceBasedOnKeyValue`: the index of the map whose `key` is `value`.
fn find_map(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>> {
    for (i, v) in list.iter().enumerate() {
        let map = v
            .as_object()
            .ok_or_else(|| MergeError::Other(format!("value for key {i} is not a map")))?;
        if map.get(key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// `deduplicateScalars`, which moves the last element into each duplicate's place.
fn deduplicate_scalars(mut s: Vec<Value>) -> Vec<Value> {
    let mut i = 0;
    while i + 1 < s.len() {
        let mut j = i + 1;
        while j < s.len() {
            if s[i] == s[j] {
                let last = s.len() - 1;
                s.swap(j, last);
                s.truncate(last);
            } else {
                j += 1;
            }
        }
        i += 1;
    }
    s
}

/// `partitionPrimitivesByPresentInList`: (in `by`, not in `by`).
fn partition_primitives(list: &[Value], by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    list.iter().cloned().partition(|v| by.contains(v))
}

/// `partitionMapsByPresentInList`: (with a merge key value in `by`, without).
fn partition_maps(
    list: &[Value],
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let (mut present, mut absent) = (Vec::new(), Vec::new());
    for v in list {
        let map = v.as_object().ok_or_else(|| bad_arg_type(MAP_TYPE, v))?;
        let value = map
            .get(merge_key)
            .ok_or_else(|| no_merge_key(map, merge_key))?;
        if find_map(by, merge_key, value)?.is_some() {
            present.push(v.clone());
        } else {
            absent.push(v.clone());
        }
    }
    Ok((present, absent))
}

/// `normalizeElementOrder`: the patch's items in the patch's order and the server's
/// in the server's, interleaved by the server's order.
fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: &str,
) -> Result<Vec<Value>> {
    let patch = normalize_slice_order(patch, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted_slice(
        server_only,
        patch,
        server_order,
        merge_key,
        kind,
    ))
}

/// `normalizeSliceOrder`: sorts `to_sort` by `order` (entries to delete last).
fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: &str,
) -> Result<Vec<Value>> {
    let (to_sort, to_delete) = if kind == MAP_TYPE {
        // validateMergeKeyInLists
        for v in to_sort.iter().chain(order) {
            let map = v.as_object().ok_or_else(|| bad_arg_type(MAP_TYPE, v))?;
            if !map.contains_key(merge_key) {
                return Err(no_merge_key(map, merge_key));
            }
        }
        extract_to_delete_items(to_sort)?
    } else {
        (to_sort, Vec::new())
    };
    // sort.SliceStable with Go's less, which puts an item missing from `order` first (for
    // up to 20 items Go sorts by insertion, as here).
    let less = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) => a < b,
        _ => true,
    };
    let mut keyed: Vec<(Option<usize>, Value)> = to_sort
        .into_iter()
        .map(|v| (index(order, &v, merge_key, kind), v))
        .collect();
    for i in 1..keyed.len() {
        let mut j = i;
        while j > 0 && less(keyed[j].0, keyed[j - 1].0) {
            keyed.swap(j, j - 1);
            j -= 1;
        }
    }
    let mut sorted: Vec<Value> = keyed.into_iter().map(|(_, v)| v).collect();
    sorted.extend(to_delete);
    Ok(sorted)
}

/// `extractToDeleteItems`: (entries to keep, entries with `$patch: delete`).
fn extract_to_delete_items(list: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>)> {
    let (mut keep, mut delete) = (Vec::new(), Vec::new());
    for v in list {
        let map = v.as_object().ok_or_else(|| bad_arg_type(MAP_TYPE, &v))?;
        if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
            delete.push(v);
        } else {
            keep.push(v);
        }
    }
    Ok((keep, delete))
}

/// `index`: where `v` is in `list` (by merge key for maps), or `None`.
fn index(list: &[Value], v: &Value, merge_key: &str, kind: &str) -> Option<usize> {
    let key_of = |item: &Value| {
        if kind == MAP_TYPE {
            item.as_object().and_then(|m| m.get(merge_key)).cloned()
        } else {
            Some(item.clone())
        }
    };
    let wanted = key_of(v);
    list.iter().position(|item| key_of(item) == wanted)
}

/// `mergeSortedSlice`: inserts the server-only items (`left`) among the patch's (`right`),
/// each before the first patch item the server's order puts after it.
fn merge_sorted_slice(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    kind: &str,
) -> Vec<Value> {
    let less = |l: &Value, r: &Value| match (
        index(server_order, l, merge_key, kind),
        index(server_order, r, merge_key, kind),
    ) {
        (Some(li), Some(ri)) => li < ri,
        _ => false,
    };
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() || j < right.len() {
        if i >= left.len() {
            out.push(right[j].clone());
            j += 1;
        } else if j >= right.len() || less(&left[i], &right[j]) {
            out.push(left[i].clone());
            i += 1;
        } else {
            out.push(right[j].clone());
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests;
