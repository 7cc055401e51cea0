use serde_json::json;

use super::*;
use crate::resource::SECRETS;

/// Decodes `body` as kube-apiserver decodes a Secret for create and update.
fn secret(body: &str) -> (Value, Vec<String>) {
    decode(parse(body.as_bytes()).unwrap(), SECRETS.schema())
}

#[test]
fn repeated_labels_maps_merge_with_the_later_winning_a_key() {
    let (value, errors) = secret(
        r#"{"metadata": {"name": "s", "labels": {"a": "1", "b": "1"}, "labels": {"b": "2", "c": "2"}},
            "data": {"x": "MQ=="}, "data": {"y": "Mg=="}}"#,
    );
    assert_eq!(
        value,
        json!({"metadata": {"name": "s", "labels": {"a": "1", "b": "2", "c": "2"}},
               "data": {"x": "MQ==", "y": "Mg=="}})
    );
    assert_eq!(
        errors,
        [
            r#"duplicate field "metadata.labels""#,
            r#"duplicate field "data""#
        ]
    );
}

#[test]
fn strict_errors_are_in_document_order_each_once() {
    // As kube-apiserver 1.37 warned for this body, header by header.
    let (value, errors) = secret(
        r#"{"metadata": {"name": "d4", "labels": {"a": "1", "a": "3"}, "bogus": 1, "labels": {"b": "2"}},
            "foo": 1, "foo": 2, "data": {"x": "MQ==", "x": "Mg=="}, "metadata": {"annotations": {"n": "1"}}}"#,
    );
    assert_eq!(
        errors,
        [
            r#"duplicate field "metadata.labels.a""#,
            r#"unknown field "metadata.bogus""#,
            r#"duplicate field "metadata.labels""#,
            r#"unknown field "foo""#,
            r#"duplicate field "data.x""#,
            r#"duplicate field "metadata""#,
        ]
    );
    assert_eq!(
        value,
        json!({"metadata": {"name": "d4", "labels": {"a": "3", "b": "2"}, "annotations": {"n": "1"}},
               "data": {"x": "Mg=="}})
    );
}

#[test]
fn a_repeated_struct_keeps_the_fields_the_later_one_does_not_set() {
    let (value, errors) = secret(
        r#"{"metadata": {"name": "s", "labels": {"a": "1"}}, "metadata": {"labels": {"b": "2"}}}"#,
    );
    assert_eq!(
        value,
        json!({"metadata": {"name": "s", "labels": {"a": "1", "b": "2"}}})
    );
    // Each object is checked on its own: only `metadata` repeats.
    assert_eq!(errors, [r#"duplicate field "metadata""#]);
}

#[test]
fn null_clears_maps_and_pointers_but_leaves_strings_and_structs() {
    let (value, _) = secret(
        r#"{"metadata": {"name": "n1", "labels": {"a": "1"}, "labels": null, "annotations": null, "annotations": {"b": "2"}},
            "type": "foo", "type": null, "immutable": true, "immutable": null, "metadata": null}"#,
    );
    assert_eq!(
        value,
        json!({"metadata": {"name": "n1", "annotations": {"b": "2"}}, "type": "foo"})
    );
}

#[test]
fn a_null_map_value_is_the_empty_string() {
    let (value, errors) = secret(r#"{"metadata": {"labels": {"a": null}}, "data": {"k": null}}"#);
    assert_eq!(
        value,
        json!({"metadata": {"labels": {"a": ""}}, "data": {"k": ""}})
    );
    assert!(errors.is_empty());
}

#[test]
fn a_later_list_decodes_into_the_elements_of_the_earlier_ones() {
    // kube-apiserver stored (and then refused for two controllers) exactly this.
    let (value, errors) = secret(
        r#"{"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": true},
                                             {"apiVersion": "v1", "kind": "A", "name": "b", "uid": "2", "controller": true}],
                         "ownerReferences": [{"apiVersion": "v1", "kind": "A", "name": "c", "uid": "3"}],
                         "ownerReferences": [{"name": "d"}, {"name": "e"}, {"apiVersion": "v1", "kind": "A", "name": "f", "uid": "6"}],
                         "finalizers": ["a/1", "a/2"], "finalizers": ["b/1"]}}"#,
    );
    assert_eq!(
        value["metadata"],
        json!({
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "A", "name": "d", "uid": "3", "controller": true},
                {"apiVersion": "v1", "kind": "A", "name": "e", "uid": "2", "controller": true},
                {"apiVersion": "v1", "kind": "A", "name": "f", "uid": "6"},
            ],
            "finalizers": ["b/1"],
        })
    );
    assert_eq!(
        errors,
        [
            r#"duplicate field "metadata.ownerReferences""#,
            r#"duplicate field "metadata.finalizers""#
        ]
    );
}

#[test]
fn an_empty_or_null_list_forgets_the_elements_it_held() {
    for reset in ["[]", "null"] {
        let (value, _) = secret(&format!(
            r#"{{"metadata": {{"ownerReferences": [{{"name": "a", "uid": "1"}}, {{"name": "b", "uid": "2"}}],
                              "ownerReferences": [{{"name": "c"}}],
                              "ownerReferences": {reset},
                              "ownerReferences": [{{"name": "d"}}, {{"name": "e"}}]}}}}"#
        ));
        assert_eq!(
            value["metadata"]["ownerReferences"],
            json!([{"name": "d"}, {"name": "e"}]),
            "after {reset}"
        );
    }
}

#[test]
fn a_patch_map_reports_repeats_at_every_depth_and_keeps_the_later_value() {
    let node = parse(
        br#"{"metadata": {"labels": {"a": "1"}, "labels": {"z": "1", "z": "2"}}, "data": [{"k": 1, "k": 2}]}"#,
    )
    .unwrap();
    let (value, errors) = decode(node, Schema::Any);
    assert_eq!(
        value,
        json!({"metadata": {"labels": {"z": "2"}}, "data": [{"k": 2}]})
    );
    assert_eq!(
        errors,
        [
            r#"duplicate field "metadata.labels""#,
            r#"duplicate field "metadata.labels.z""#,
            r#"duplicate field "data[0].k""#,
        ]
    );
}

#[test]
fn parse_keeps_repeated_keys_and_refuses_what_serde_json_refuses() {
    let node = parse(b" {\"a\": 1,\n \"a\": [true, null, \"x\\\"y\"]} ").unwrap();
    assert!(node.has_repeated_keys());
    assert_eq!(
        node,
        Node::Object(vec![
            Member {
                key: "a".into(),
                line: 1,
                value: Node::Number(1.into()),
            },
            Member {
                key: "a".into(),
                line: 2,
                value: Node::Array(vec![
                    Node::Bool(true),
                    Node::Null,
                    Node::String("x\"y".into())
                ]),
            },
        ])
    );
    assert_eq!(node.into_value(), json!({"a": [true, null, "x\"y"]}));
    for bad in ["{", "{\"a\": 1e400}", "[1,]", "", "{} x"] {
        assert_eq!(
            parse(bad.as_bytes()).unwrap_err().to_string(),
            serde_json::from_str::<Value>(bad).unwrap_err().to_string(),
            "{bad:?}"
        );
    }
}

#[test]
fn goyaml_names_the_line_of_the_repeated_keys_value_after_its_contents() {
    let node = parse(
        b"{\"metadata\": {\"labels\": {\"a\": \"1\"},\n  \"labels\":\n {\"b\": \"2\", \"b\": \"3\"}}}",
    )
    .unwrap();
    assert_eq!(
        yaml_repeated_keys(&node),
        [
            r#"line 3: key "b" already set in map"#,
            r#"line 3: key "labels" already set in map"#,
        ]
    );
}

#[test]
fn values_print_as_go_prints_them() {
    let v = json!({"b": ["x", 1, null, true, {}], "a": null, "f": [1.5, 1e6, 100000.0, 1.5e-5, 0.0001, 1.0, 18446744073709551615u64]});
    assert_eq!(
        sprint(&v),
        "map[a:<nil> b:[x 1 <nil> true map[]] f:[1.5 1e+06 100000 1.5e-05 0.0001 1 1.8446744073709552e+19]]"
    );
    assert_eq!(sprint_s(&json!("frob")), "frob");
    assert_eq!(sprint_s(&json!(1)), "%!s(int64=1)");
    assert_eq!(sprint_s(&json!(null)), "%!s(<nil>)");
    assert_eq!(
        sprint_s(&json!(["x", 1, null, true, 1.5, {"k": 2}])),
        "[x %!s(int64=1) <nil> %!s(bool=true) %!s(float64=1.5) map[k:%!s(int64=2)]]"
    );
    assert_eq!(
        quote("a\u{1}b\u{a0}c\u{200b}d\u{1F600}e\u{85}\"\\\n"),
        r#""a\x01b\u00a0c\u200bd😀e\u0085\"\\\n""#
    );
    assert_eq!(
        marshal(&json!({"b": "<&>\u{2028}", "a": 1})),
        r#"{"a":1,"b":"\u003c\u0026\u003e\u2028"}"#
    );
}

#[test]
fn nulls_are_normalized_as_a_typed_round_trip_leaves_them() {
    let mut v = json!({"metadata": {"name": "s", "labels": {"a": null}, "finalizers": null},
                       "data": {"k": null}, "immutable": null, "type": null});
    normalize_nulls(&mut v, SECRETS.schema());
    assert_eq!(
        v,
        json!({"metadata": {"name": "s", "labels": {"a": ""}}, "data": {"k": ""}})
    );
}
