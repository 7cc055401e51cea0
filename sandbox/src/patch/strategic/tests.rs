//! Each expectation is what kube-apiserver 1.37 answered to the same patch of the same
//! object.

use serde_json::json;

use super::*;
use crate::resource::{SECRETS, VALIDATING};

/// A stored Secret: labels, annotations, a finalizer, owner references and data.
fn stored() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": "p", "namespace": "c",
            "labels": {"a": "1", "b": "1"},
            "annotations": {"n": "1"},
            "finalizers": ["x.io/a", "x.io/b"],
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "n", "uid": "u1"},
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "m", "uid": "u2"},
            ],
        },
        "data": {"k": "MQ=="},
        "type": "Opaque",
    })
}

/// Applies `patch` to `original` as a Secret: the result, and the patch as the merge left it.
fn patch_secret(original: Value, patch: Value) -> (Result<Value>, Value) {
    let Value::Object(original) = original else {
        panic!("not an object");
    };
    let Value::Object(mut patch) = patch else {
        panic!("not an object");
    };
    let merged = merge(original, &mut patch, SECRETS.schema()).map(Value::Object);
    (merged, Value::Object(patch))
}

fn patched(patch: Value) -> Value {
    patch_secret(stored(), patch).0.unwrap()
}

fn refused(patch: Value) -> MergeError {
    patch_secret(stored(), patch).0.unwrap_err()
}

#[test]
fn patch_replace_makes_the_patch_the_whole_map() {
    let out = patched(json!({"metadata": {"labels": {"y": "2", "$patch": "replace"}}}));
    assert_eq!(out["metadata"]["labels"], json!({"y": "2"}));
    assert_eq!(out["metadata"]["annotations"], json!({"n": "1"}));
    let out = patched(json!({"data": {"$patch": "replace", "z": "MQ=="}}));
    assert_eq!(out["data"], json!({"z": "MQ=="}));
}

#[test]
fn patch_delete_removes_the_map_whatever_else_it_sets() {
    for labels in [
        json!({"$patch": "delete"}),
        json!({"$patch": "delete", "y": "2"}),
    ] {
        let out = patched(json!({"metadata": {"labels": labels}}));
        assert_eq!(out["metadata"].get("labels"), Some(&json!({})));
    }
    let out = patched(json!({"data": {"$patch": "delete"}}));
    assert_eq!(out["data"], json!({}));
}

#[test]
fn a_directive_map_for_a_field_the_object_lacks_is_dropped() {
    let mut original = stored();
    original["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("labels");
    for labels in [
        json!({"$patch": "replace", "y": "2"}),
        json!({"$patch": "delete"}),
    ] {
        let (out, _) = patch_secret(
            original.clone(),
            json!({"metadata": {"labels": labels}, "stringData": {"$patch": "replace", "s": "v"}}),
        );
        let out = out.unwrap();
        assert_eq!(out["metadata"].get("labels"), None);
        assert_eq!(out.get("stringData"), None);
    }
    // Only `$patch` makes a map a directive: `$retainKeys` there stays, as a label.
    let (out, _) = patch_secret(
        original,
        json!({"metadata": {"labels": {"$retainKeys": ["a"]}}}),
    );
    assert_eq!(
        out.unwrap()["metadata"]["labels"],
        json!({"$retainKeys": ["a"]})
    );
}

#[test]
fn the_whole_object_can_be_replaced_or_emptied() {
    let out =
        patched(json!({"$patch": "replace", "metadata": {"name": "p", "labels": {"q": "1"}}}));
    assert_eq!(
        out,
        json!({"metadata": {"name": "p", "labels": {"q": "1"}}})
    );
    assert_eq!(patched(json!({"$patch": "delete"})), json!({}));
    assert_eq!(
        patched(json!({"metadata": {"$patch": "delete"}}))["metadata"],
        json!({})
    );
}

#[test]
fn other_patch_values_are_errors_worded_as_go_prints_them() {
    let other = |patch| match refused(patch) {
        MergeError::Other(message) => message,
        e => panic!("{e:?}"),
    };
    assert_eq!(
        other(json!({"metadata": {"labels": {"$patch": "merge", "y": "2"}}})),
        "unknown patch type: merge in map: map[$patch:merge y:2]"
    );
    assert_eq!(
        other(json!({"metadata": {"labels": {"$patch": 1}}})),
        "unknown patch type: %!s(int64=1) in map: map[$patch:1]"
    );
    assert_eq!(
        other(json!({"metadata": {"labels": {"$patch": null, "y": "2"}}})),
        "unknown patch type: %!s(<nil>) in map: map[$patch:<nil> y:2]"
    );
}

#[test]
fn other_dollar_keys_are_plain_keys() {
    let out = patched(json!({"metadata": {"labels": {"$foo": "x"}}}));
    assert_eq!(
        out["metadata"]["labels"],
        json!({"$foo": "x", "a": "1", "b": "1"})
    );
}

#[test]
fn retain_keys_keeps_the_listed_keys_only() {
    assert_eq!(
        patched(json!({"metadata": {"labels": {"$retainKeys": ["a"]}}}))["metadata"]["labels"],
        json!({"a": "1"})
    );
    assert_eq!(
        patched(json!({"metadata": {"labels": {"$retainKeys": ["a", "y"], "y": "2", "b": null}}}))
            ["metadata"]["labels"],
        json!({"a": "1", "y": "2"})
    );
    let out = patched(json!({"$retainKeys": ["metadata"]}));
    assert_eq!(
        out.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["metadata"]
    );
    for patch in [
        json!({"metadata": {"labels": {"$retainKeys": ["a"], "y": "2"}}}),
        json!({"metadata": {"labels": {"$retainKeys": "a"}}}),
    ] {
        assert_eq!(
            refused(patch),
            MergeError::BadRequest("invalid patch format of retainKeys")
        );
    }
}

#[test]
fn finalizers_merge_as_a_set_in_the_patchs_order() {
    assert_eq!(
        patched(json!({"metadata": {"finalizers": ["x.io/c", "x.io/a"]}}))["metadata"]["finalizers"],
        json!(["x.io/c", "x.io/a", "x.io/b"])
    );
    assert_eq!(
        patched(
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x.io/a"], "finalizers": ["x.io/c"]}})
        )["metadata"]["finalizers"],
        json!(["x.io/c", "x.io/b"])
    );
    assert_eq!(
        patched(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": null}}))["metadata"]
            .get("finalizers"),
        None
    );
    // a delete list for a map, or for a field the object lacks, changes nothing
    assert_eq!(
        patched(
            json!({"metadata": {"$deleteFromPrimitiveList/labels": ["a"], "$deleteFromPrimitiveList/bogus": ["a"]}})
        ),
        stored()
    );
}

#[test]
fn set_element_order_orders_a_merging_list() {
    assert_eq!(
        patched(json!({"metadata": {"$setElementOrder/finalizers": ["x.io/b", "x.io/a"]}}))["metadata"]
            ["finalizers"],
        json!(["x.io/b", "x.io/a"])
    );
    assert_eq!(
        patched(
            json!({"metadata": {"$setElementOrder/finalizers": ["x.io/c", "x.io/b", "x.io/a"], "finalizers": ["x.io/c"]}})
        )["metadata"]["finalizers"],
        json!(["x.io/c", "x.io/b", "x.io/a"])
    );
    assert_eq!(
        patched(
            json!({"metadata": {"$setElementOrder/ownerReferences": [{"uid": "u2"}, {"uid": "u1"}]}})
        )["metadata"]["ownerReferences"],
        json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "m", "uid": "u2"},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "n", "uid": "u1"},
        ])
    );
}

#[test]
fn malformed_list_directives_are_worded_as_kube_apiserver_words_them() {
    let cases = [
        (
            json!({"metadata": {"$setElementOrder/finalizers": ["x.io/b"], "finalizers": ["x.io/c"]}}),
            MergeError::Other(
                "The order in patch list:\n[x.io/c]\n doesn't match $setElementOrder list:\n[x.io/b]\n"
                    .into(),
            ),
        ),
        (
            json!({"metadata": {"$setElementOrder/generateName": ["a"]}}),
            MergeError::Other("expected slice or array type, but got: struct".into()),
        ),
        (
            json!({"metadata": {"$setElementOrder/labels": ["a"]}}),
            MergeError::Other(
                "expected a []interface {}, but received a map[string]interface {}".into(),
            ),
        ),
        (
            json!({"metadata": {"$setElementOrder/bogus": ["a"]}}),
            MergeError::Other(
                r#"unable to find api field in struct ObjectMeta for the json field "bogus""#
                    .into(),
            ),
        ),
        (
            json!({"$setElementOrder/data": ["a"]}),
            MergeError::Other(
                "expected a []interface {}, but received a map[string]interface {}".into(),
            ),
        ),
        (
            json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
            MergeError::BadRequest("invalid patch format of primitive list"),
        ),
        (
            json!({"metadata": {"$setElementOrder": ["a"]}}),
            MergeError::BadRequest("invalid patch format of setElementOrder list"),
        ),
        (
            json!({"metadata": {"finalizers": [{"a": 1}]}}),
            MergeError::Other(
                "list element types are not identical: [[x.io/a x.io/b] [map[a:1]]]".into(),
            ),
        ),
        (
            json!({"metadata": {"ownerReferences": [{"name": "nouid"}]}}),
            MergeError::Other("map: map[name:nouid] does not contain declared merge key: uid".into()),
        ),
    ];
    for (patch, want) in cases {
        assert_eq!(refused(patch.clone()), want, "{patch}");
    }
}

#[test]
fn owner_references_merge_by_uid() {
    assert_eq!(
        patched(json!({"metadata": {"ownerReferences": [
            {"uid": "u1", "$patch": "delete"},
            {"uid": "u3", "apiVersion": "v1", "kind": "ConfigMap", "name": "o"},
        ]}}))["metadata"]["ownerReferences"],
        json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u3"},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "m", "uid": "u2"},
        ])
    );
    assert_eq!(
        patched(json!({"metadata": {"ownerReferences": [{"uid": "u2", "name": "renamed"}]}}))["metadata"]
            ["ownerReferences"][1],
        json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "renamed", "uid": "u2"})
    );
    assert_eq!(
        patched(json!({"metadata": {"ownerReferences": [
            {"$patch": "replace"},
            {"uid": "u3", "apiVersion": "v1", "kind": "ConfigMap", "name": "o"},
        ]}}))["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u3"}])
    );
}

#[test]
fn the_patch_is_left_as_go_leaves_it() {
    // kube-apiserver printed `map[metadata:map[labels:map[y:2]]]` for this patch.
    let (_, patch) = patch_secret(
        stored(),
        json!({"metadata": {"labels": {"$patch": "replace", "y": "2"}}}),
    );
    assert_eq!(sprint(&patch), "map[metadata:map[labels:map[y:2]]]");
    let (_, patch) = patch_secret(
        stored(),
        json!({"metadata": {"$setElementOrder/finalizers": ["x.io/b", "x.io/a"], "labels": {"$retainKeys": ["a"]}}}),
    );
    assert_eq!(sprint(&patch), "map[metadata:map[labels:map[]]]");
}

#[test]
fn webhooks_merge_by_name_in_the_directives_order() {
    let hook = |name: &str| json!({"name": name, "sideEffects": "None", "rules": [{"scope": "*", "resources": ["secrets"]}]});
    let Value::Object(original) = json!({"webhooks": [hook("a"), hook("b")]}) else {
        unreachable!()
    };
    let Value::Object(mut patch) = json!({
        "$setElementOrder/webhooks": [{"name": "c"}, {"name": "a"}],
        "webhooks": [{"name": "c", "sideEffects": "None"}, {"name": "a", "rules": [{"resources": ["configmaps"]}]}],
    }) else {
        unreachable!()
    };
    let out = merge(original.clone(), &mut patch, VALIDATING.schema()).unwrap();
    // b is not in the directive's list: it keeps its place after a, as the server had it.
    assert_eq!(
        Value::Object(out),
        json!({"webhooks": [
            {"name": "c", "sideEffects": "None"},
            {"name": "a", "sideEffects": "None", "rules": [{"resources": ["configmaps"]}]},
            hook("b"),
        ]})
    );
    let Value::Object(mut patch) = json!({"webhooks": [{"name": "b", "$patch": "delete"}]}) else {
        unreachable!()
    };
    let out = merge(original.clone(), &mut patch, VALIDATING.schema()).unwrap();
    assert_eq!(Value::Object(out), json!({"webhooks": [hook("a")]}));
    // The patch's list must follow the directive's order.
    let Value::Object(mut patch) = json!({
        "$setElementOrder/webhooks": [{"name": "c"}, {"name": "a"}],
        "webhooks": [{"name": "a"}, {"name": "c"}],
    }) else {
        unreachable!()
    };
    assert!(matches!(
        merge(original, &mut patch, VALIDATING.schema()),
        Err(MergeError::Other(m)) if m.starts_with("The order in patch list:")
    ));
}
