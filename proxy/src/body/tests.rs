use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    FieldsV1, ManagedFieldsEntry, ObjectMeta, OwnerReference, Time,
};
use k8s_pb::apimachinery::pkg::runtime::TypeMeta;

use super::*;

/// Request bodies recorded from client-go v0.37.2 by `tests/kube/cmd/client-go-bodies`.
const CLIENT_GO_CREATE_PB: &[u8] = include_bytes!("../../tests/fixtures/client-go/create.pb");
const CLIENT_GO_CREATE_JSON: &[u8] = include_bytes!("../../tests/fixtures/client-go/create.json");
const CLIENT_GO_APPLY: &[u8] = include_bytes!("../../tests/fixtures/client-go/apply.body");
const CLIENT_GO_INDEX: &str = include_str!("../../tests/fixtures/client-go/index.json");

/// A made-up value that must never show in an error.
const VALUE: &str = "hunter2-do-not-show";

fn bad(r: Result<impl std::fmt::Debug, BodyError>) -> String {
    match r {
        Err(BodyError::BadRequest(m)) => m,
        other => panic!("expected BadRequest, got {other:?}"),
    }
}

fn unsupported(r: Result<impl std::fmt::Debug, BodyError>) -> String {
    match r {
        Err(BodyError::UnsupportedMediaType(m)) => m,
        other => panic!("expected UnsupportedMediaType, got {other:?}"),
    }
}

fn json_secret(body: &str) -> Result<Secret, BodyError> {
    decode_secret(Some("application/json"), body.as_bytes())
}

/// `depth` nested arrays around `inner`.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Every field a write can carry, with Go's zero values left out.
fn full_secret() -> Secret {
    let at = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
    Secret {
        metadata: ObjectMeta {
            name: Some("repo-creds".into()),
            generate_name: Some("repo-".into()),
            namespace: Some("argocd".into()),
            self_link: None,
            uid: Some("0b8c9a52-5f3e-4c1d-9a0e-1d2c3b4a5f60".into()),
            resource_version: Some("12345".into()),
            generation: Some(7),
            creation_timestamp: Some(at.clone()),
            deletion_timestamp: None,
            deletion_grace_period_seconds: Some(0),
            labels: Some(BTreeMap::from([(
                "akuity.io/secret-sync".into(),
                "true".into(),
            )])),
            annotations: Some(BTreeMap::from([("note".into(), "héllo \"x\"".into())])),
            owner_references: Some(vec![OwnerReference {
                api_version: "argoproj.io/v1alpha1".into(),
                kind: "Application".into(),
                name: "guestbook".into(),
                uid: "5d1f0c2e".into(),
                controller: Some(true),
                block_owner_deletion: Some(false),
            }]),
            finalizers: Some(vec!["example.com/keep".into()]),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some("kubectl".into()),
                operation: Some("Update".into()),
                api_version: Some("v1".into()),
                time: Some(at),
                fields_type: Some("FieldsV1".into()),
                fields_v1: Some(FieldsV1(serde_json::json!({"f:data": {"f:password": {}}}))),
                subresource: None,
            }]),
        },
        immutable: Some(false),
        data: Some(BTreeMap::from([
            ("password".into(), ByteString(VALUE.as_bytes().to_vec())),
            ("binary".into(), ByteString(vec![0, 0xff, 0x80])),
            ("empty".into(), ByteString(Vec::new())),
        ])),
        string_data: Some(BTreeMap::from([("url".into(), VALUE.into())])),
        type_: Some("Opaque".into()),
    }
}

/// `secret` as client-go's protobuf serializer writes it: the prefix, then a
/// `runtime.Unknown` with the type and the Secret's bytes, every non-pointer field
/// of Go's written even when zero.
fn client_go_protobuf(secret: &Secret) -> Vec<u8> {
    let m = &secret.metadata;
    let time = |t: &Option<Time>| {
        Some(pb_meta::Time {
            seconds: t.as_ref().map(|t| t.0.as_second()),
            nanos: None,
        })
    };
    let pb = pb_core::Secret {
        metadata: Some(pb_meta::ObjectMeta {
            name: Some(m.name.clone().unwrap_or_default()),
            generate_name: Some(m.generate_name.clone().unwrap_or_default()),
            namespace: Some(m.namespace.clone().unwrap_or_default()),
            self_link: Some(String::new()),
            uid: Some(m.uid.clone().unwrap_or_default()),
            resource_version: Some(m.resource_version.clone().unwrap_or_default()),
            generation: Some(m.generation.unwrap_or_default()),
            creation_timestamp: time(&m.creation_timestamp),
            deletion_timestamp: None,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            labels: m.labels.clone().unwrap_or_default(),
            annotations: m.annotations.clone().unwrap_or_default(),
            owner_references: m
                .owner_references
                .iter()
                .flatten()
                .map(|r| pb_meta::OwnerReference {
                    api_version: Some(r.api_version.clone()),
                    kind: Some(r.kind.clone()),
                    name: Some(r.name.clone()),
                    uid: Some(r.uid.clone()),
                    controller: r.controller,
                    block_owner_deletion: r.block_owner_deletion,
                })
                .collect(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
            managed_fields: m
                .managed_fields
                .iter()
                .flatten()
                .map(|e| pb_meta::ManagedFieldsEntry {
                    manager: e.manager.clone(),
                    operation: e.operation.clone(),
                    api_version: e.api_version.clone(),
                    time: time(&e.time),
                    fields_type: e.fields_type.clone(),
                    fields_v1: e.fields_v1.as_ref().map(|f| pb_meta::FieldsV1 {
                        raw: Some(serde_json::to_vec(&f.0).unwrap()),
                    }),
                    subresource: Some(e.subresource.clone().unwrap_or_default()),
                })
                .collect(),
        }),
        immutable: secret.immutable,
        data: secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        string_data: secret.string_data.clone().unwrap_or_default(),
        r#type: Some(secret.type_.clone().unwrap_or_default()),
    };
    envelope("v1", "Secret", pb.encode_to_vec())
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = PROTOBUF_PREFIX.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[test]
fn a_json_secret_is_decoded_whatever_its_json_content_type_says() {
    let body = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a","labels":{"x":"1"}},"data":{"k":"dg=="}}"#;
    for content_type in [
        None,
        Some(""),
        Some("application/json"),
        Some("Application/JSON; charset=utf-8"),
    ] {
        let s = decode_secret(content_type, body).unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("a"));
        assert_eq!(s.data.unwrap()["k"].0, b"v");
    }
}

#[test]
fn cbor_yaml_and_other_media_types_are_refused_with_415() {
    let body = b"{}";
    for content_type in ["application/cbor", "application/apply-patch+cbor"] {
        let m = unsupported(decode_secret(Some(content_type), body));
        assert!(m.contains("CBOR"), "{m}");
    }
    for content_type in [
        "application/yaml",
        "text/plain",
        "application/apply-patch+yaml",
    ] {
        let m = unsupported(decode_secret(Some(content_type), body));
        assert!(m.contains(content_type), "{m}");
    }
}

#[test]
fn a_body_that_is_not_a_json_object_is_a_bad_request() {
    for body in [
        "",
        "   ",
        "[]",
        "\"a\"",
        "null",
        "{",
        "{\"a\":1}x",
        "\u{feff}{}",
    ] {
        bad(json_secret(body));
    }
}

#[test]
fn duplicate_keys_are_refused_at_any_depth_naming_the_field_path() {
    let cases = [
        (
            format!(r#"{{"metadata":{{"labels":{{"a":"1"}},"labels":{{"b":"{VALUE}"}}}}}}"#),
            "\"metadata.labels\"",
        ),
        (
            format!(r#"{{"data":{{"k":"{VALUE}","k":"dg=="}}}}"#),
            "\"data.k\"",
        ),
        // The same key once plain, once escaped.
        (
            format!(r#"{{"metadata":{{"name":"a","\u006eame":"{VALUE}"}}}}"#),
            "\"metadata.name\"",
        ),
        (
            r#"{"metadata":{"managedFields":[{},{"fieldsV1":{"f:data":{"f:a":{},"f:a":{}}}}]}}"#
                .to_owned(),
            "\"metadata.managedFields[1].fieldsV1.f:data.f:a\"",
        ),
        (
            r#"{"kind":"Secret","kind":"Secret"}"#.to_owned(),
            "\"kind\"",
        ),
    ];
    for (body, path) in cases {
        let m = bad(json_secret(&body));
        assert!(m.contains(&format!("duplicate field {path}")), "{m}");
        assert!(!m.contains(VALUE), "{m}");
    }
    // Past the short list of keys, in the hash set.
    let mut many: Vec<String> = (0..100).map(|i| format!(r#""k{i}":"dg==""#)).collect();
    many.push(r#""k57":"dg==""#.to_owned());
    let body = format!(r#"{{"data":{{{}}}}}"#, many.join(","));
    assert!(bad(json_secret(&body)).contains("duplicate field \"data.k57\""));
    // Patches too, built or not.
    let m = bad(decode_patch_value(
        PatchKind::Merge,
        br#"{"metadata":{"labels":{"a":"1","a":"2"}}}"#,
    ));
    assert!(m.contains("duplicate field \"metadata.labels.a\""), "{m}");
    let m = bad(decode_patch_value(
        PatchKind::Json,
        br#"[{"op":"add","path":"/a","value":1},{"op":"remove","path":"/b","path":"/c"}]"#,
    ));
    assert!(m.contains("duplicate field \"[1].path\""), "{m}");
    assert!(bad(decode_json(br#"{"a":1,"a":1}"#)).contains("duplicate field \"a\""));
}

#[test]
fn a_long_key_is_cut_short_in_a_message() {
    let key = "k".repeat(10_000);
    let m = bad(json_secret(&format!(
        r#"{{"data":{{"{key}":"","{key}":""}}}}"#
    )));
    assert!(m.contains("duplicate field \"data.kkkk"), "{m}");
    assert!(m.len() < 300, "{m}");
}

#[test]
fn deep_nesting_is_refused_quickly() {
    let start = Instant::now();
    for body in [
        nested(100_000, ""),
        format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000)),
    ] {
        let m = bad(decode_patch_value(PatchKind::Merge, body.as_bytes()));
        assert!(m.contains("deeper than 64 levels"), "{m}");
        let m = bad(decode_patch_value(PatchKind::Apply, body.as_bytes()));
        assert!(m.contains("deeper than 64 levels"), "{m}");
        bad(decode_secret(None, body.as_bytes()));
    }
    let fields = format!("{}{{}}{}", r#"{"f:a":"#.repeat(59), "}".repeat(59));
    let within = format!(r#"{{"metadata":{{"managedFields":[{{"fieldsV1":{fields}}}]}}}}"#);
    json_secret(&within).unwrap();
    let beyond = within
        .replacen(r#"{"f:a":"#, r#"{"f:a":{"f:a":"#, 1)
        .replacen('}', "}}", 1);
    let m = bad(json_secret(&beyond));
    assert!(
        m.contains("at \"metadata.managedFields[0].fieldsV1.f:a.f:a"),
        "{m}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_flat_3_mib_body_is_accepted() {
    const LIMIT: usize = 3 * 1024 * 1024;
    let value = "QUFB".repeat(20);
    let mut body =
        String::from(r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"big"},"data":{"#);
    let mut keys = 0;
    while body.len() + 120 < LIMIT {
        if keys > 0 {
            body.push(',');
        }
        body.push_str(&format!(r#""key-{keys}":"{value}""#));
        keys += 1;
    }
    body.push_str("}}");
    assert!(body.len() <= LIMIT && body.len() > LIMIT - 200);
    let s = json_secret(&body).unwrap();
    assert_eq!(s.data.unwrap().len(), keys);
    let patch = decode_patch_value(PatchKind::Merge, body.as_bytes()).unwrap();
    assert_eq!(patch["data"].as_object().unwrap().len(), keys);
}

#[test]
fn errors_never_quote_a_value_from_the_body() {
    let bodies = [
        format!(r#"{{"metadata":{{"name":"a"}},"immutable":"{VALUE}"}}"#),
        format!(r#"{{"metadata":{{"name":"a"}},"data":{{"k":"{VALUE}!"}}}}"#),
        format!(r#"{{"metadata":{{"name":"a","labels":{{"k":["{VALUE}"]}}}}}}"#),
        format!(r#"{{"apiVersion":"{VALUE}","metadata":{{"name":"a"}}}}"#),
        format!(r#"{{"metadata":{{"name":"a"}},"data":{{"k":"{VALUE}"#),
        format!(r#"{{"metadata":{{"name":"a"}},"data":{{"k":"{VALUE}\q"}}}}"#),
    ];
    for body in &bodies {
        let m = bad(json_secret(body));
        assert!(!m.contains(VALUE), "{m}");
    }
    let m = bad(json_secret(&bodies[1]));
    assert!(m.contains("\"data.k\""), "{m}");
    let m = bad(decode_patch_value(
        PatchKind::Json,
        format!(r#"[{{"op":"{VALUE}","path":"/a"}}]"#).as_bytes(),
    ));
    assert!(m.contains("\"[0]") && !m.contains(VALUE), "{m}");
}

#[test]
fn an_apply_patch_is_read_only_as_json() {
    let v = decode_patch_value(PatchKind::Apply, br#"{"metadata":{"name":"b"}}"#).unwrap();
    assert_eq!(v["metadata"]["name"], "b");
    for yaml in [
        "metadata:\n  name: b\n",
        "{metadata: {name: b}}",
        "---\n{\"metadata\":{}}",
        "",
    ] {
        let m = unsupported(decode_patch_value(PatchKind::Apply, yaml.as_bytes()));
        assert!(m.contains("only as JSON"), "{m}");
    }
    // JSON that breaks a rule is still a bad request.
    bad(decode_patch_value(PatchKind::Apply, br#"{"a":1,"a":2}"#));
    bad(decode_patch_value(PatchKind::Apply, b"[]"));
}

#[test]
fn merge_and_strategic_patches_must_be_objects() {
    for kind in [PatchKind::Merge, PatchKind::Strategic] {
        assert!(decode_patch_value(kind, br#"{"a":{"$patch":"replace"}}"#).is_ok());
        for body in ["null", "[]", "1", "", "{"] {
            bad(decode_patch_value(kind, body.as_bytes()));
        }
    }
}

#[test]
fn a_json_patch_is_a_bounded_list_of_valid_operations() {
    let ops = decode_patch_value(
        PatchKind::Json,
        br#"[{"op":"add","path":"/metadata/labels/a","value":"1"},{"op":"test","path":"/a","value":null},{"op":"move","from":"/a","path":"/b"}]"#,
    )
    .unwrap();
    assert_eq!(ops.as_array().unwrap().len(), 3);
    bad(decode_patch_value(PatchKind::Json, br#"{"op":"add"}"#));
    bad(decode_patch_value(PatchKind::Json, br#"[{"op":"add"}]"#));
    let limit = vec![r#"{"op":"remove","path":"/a"}"#; MAX_JSON_PATCH_OPERATIONS];
    let at_limit = format!("[{}]", limit.join(","));
    decode_patch_value(PatchKind::Json, at_limit.as_bytes()).unwrap();
    let over = at_limit.replacen('[', r#"[{"op":"remove","path":"/a"},"#, 1);
    let m = bad(decode_patch_value(PatchKind::Json, over.as_bytes()));
    assert!(m.contains("10000, got 10001"), "{m}");
}

#[test]
fn client_go_sends_protobuf_for_a_create_and_json_for_an_apply() {
    let index: Vec<serde_json::Value> = serde_json::from_str(CLIENT_GO_INDEX).unwrap();
    let content_type = |file: &str| {
        index
            .iter()
            .find(|r| r["file"] == file)
            .and_then(|r| r["contentType"].as_str())
            .unwrap()
            .to_owned()
    };
    assert_eq!(content_type("create.pb"), PROTOBUF_MEDIA_TYPE);
    assert_eq!(content_type("apply.body"), "application/apply-patch+yaml");
    let applied = decode_patch_value(PatchKind::Apply, CLIENT_GO_APPLY).unwrap();
    assert_eq!(applied["metadata"]["name"], "repo-creds");
    let from_pb = decode_secret(Some(&content_type("create.pb")), CLIENT_GO_CREATE_PB).unwrap();
    let from_json =
        decode_secret(Some(&content_type("create.json")), CLIENT_GO_CREATE_JSON).unwrap();
    assert_eq!(from_pb, from_json);
    let m = &from_pb.metadata;
    assert_eq!(m.name.as_deref(), Some("repo-creds"));
    assert_eq!(m.generate_name.as_deref(), Some("repo-"));
    assert_eq!(m.resource_version.as_deref(), Some("12345"));
    assert_eq!(m.self_link, None);
    assert_eq!(m.deletion_grace_period_seconds, Some(30));
    assert_eq!(
        m.owner_references.as_ref().unwrap()[0].controller,
        Some(true)
    );
    assert_eq!(
        m.finalizers.as_deref(),
        Some(&["example.com/keep".to_owned()][..])
    );
    assert!(m.managed_fields.as_ref().unwrap()[0].fields_v1.is_some());
    assert_eq!(from_pb.immutable, Some(true));
    assert_eq!(from_pb.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        from_pb.data.as_ref().unwrap()["binary"].0,
        [0, 0xff, 0xfe, 0x80, 0x7f]
    );
    assert!(from_pb.string_data.as_ref().unwrap().contains_key("url"));
}

#[test]
fn a_protobuf_body_decodes_to_the_same_secret_as_its_json() {
    let secret = full_secret();
    let json = serde_json::to_vec(&secret).unwrap();
    let from_json = decode_secret(Some("application/json"), &json).unwrap();
    assert_eq!(from_json, secret);
    let from_pb = decode_secret(Some(PROTOBUF_MEDIA_TYPE), &client_go_protobuf(&secret)).unwrap();
    assert_eq!(from_pb, secret);
    // Go's zero values read as absent.
    let empty = decode_secret(
        Some(PROTOBUF_MEDIA_TYPE),
        &client_go_protobuf(&Secret::default()),
    );
    assert_eq!(empty.unwrap(), Secret::default());
    // An envelope that leaves the type to the endpoint.
    let raw = pb_core::Secret::default().encode_to_vec();
    let mut untyped = PROTOBUF_PREFIX.to_vec();
    untyped.extend(
        Unknown {
            raw: Some(raw),
            ..Unknown::default()
        }
        .encode_to_vec(),
    );
    assert_eq!(
        decode_secret(Some(PROTOBUF_MEDIA_TYPE), &untyped).unwrap(),
        Secret::default()
    );
}

#[test]
fn a_malformed_protobuf_body_is_a_bad_request_that_names_no_value() {
    let good = client_go_protobuf(&full_secret());
    let decode = |body: &[u8]| decode_secret(Some(PROTOBUF_MEDIA_TYPE), body);
    assert!(bad(decode(b"")).contains("prefix"));
    assert!(bad(decode(b"k8s\0")).contains("empty"));
    assert!(bad(decode(br#"{"metadata":{}}"#)).contains("prefix"));
    let m = bad(decode(&good[..good.len() - 3]));
    assert!(!m.contains(VALUE), "{m}");
    let raw = pb_core::Secret::default().encode_to_vec();
    let m = bad(decode(&envelope("v1", "ConfigMap", raw.clone())));
    assert!(m.contains("\"ConfigMap\""), "{m}");
    bad(decode(&envelope("apps/v1", "Secret", raw)));
    // A label value that is not UTF-8 (Go would take it; the relay refuses).
    let secret = pb_core::Secret {
        metadata: Some(pb_meta::ObjectMeta {
            labels: BTreeMap::from([("k".to_owned(), VALUE.to_owned())]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut raw = secret.encode_to_vec();
    let at = raw
        .windows(VALUE.len())
        .position(|w| w == VALUE.as_bytes())
        .unwrap();
    raw[at] = 0xff;
    let m = bad(decode(&envelope("v1", "Secret", raw)));
    assert!(m.contains("UTF-8") && !m.contains("do-not-show"), "{m}");
    // managedFields' raw JSON obeys the JSON rules.
    let secret = pb_core::Secret {
        metadata: Some(pb_meta::ObjectMeta {
            managed_fields: vec![pb_meta::ManagedFieldsEntry {
                fields_v1: Some(pb_meta::FieldsV1 {
                    raw: Some(br#"{"f:a":{},"f:a":{}}"#.to_vec()),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = bad(decode(&envelope("v1", "Secret", secret.encode_to_vec())));
    assert!(m.contains("duplicate field \"f:a\""), "{m}");
}

#[test]
fn non_empty_arrays_and_objects_are_counted_against_one_budget() {
    // The top object, "a", then the inner arrays; empty ones are free.
    let body = |inner: usize| {
        let mut items = vec!["[1]"; inner];
        items.push("[]");
        items.push("{}");
        format!(r#"{{"a":[{}]}}"#, items.join(","))
    };
    decode_patch_value(PatchKind::Merge, body(MAX_CONTAINERS - 2).as_bytes()).unwrap();
    let m = bad(decode_patch_value(
        PatchKind::Merge,
        body(MAX_CONTAINERS - 1).as_bytes(),
    ));
    assert!(m.contains("non-empty arrays and objects"), "{m}");
    // A JSON Secret, in fieldsV1.
    let fields: Vec<String> = (0..MAX_CONTAINERS)
        .map(|i| format!(r#""f:k{i}":{{"a":{{}}}}"#))
        .collect();
    let secret = format!(
        r#"{{"metadata":{{"managedFields":[{{"fieldsV1":{{{}}}}}]}}}}"#,
        fields.join(",")
    );
    bad(json_secret(&secret));
    // Protobuf: every managedFields entry's fieldsV1 together.
    let half = format!("{{{}}}", fields[..MAX_CONTAINERS / 2 + 1].join(","));
    let entry = |raw: &str| pb_meta::ManagedFieldsEntry {
        fields_v1: Some(pb_meta::FieldsV1 {
            raw: Some(raw.as_bytes().to_vec()),
        }),
        ..Default::default()
    };
    let secret = |entries| pb_core::Secret {
        metadata: Some(pb_meta::ObjectMeta {
            managed_fields: entries,
            ..Default::default()
        }),
        ..Default::default()
    };
    let decode = |s: pb_core::Secret| {
        decode_secret(
            Some(PROTOBUF_MEDIA_TYPE),
            &envelope("v1", "Secret", s.encode_to_vec()),
        )
    };
    decode(secret(vec![entry(&half)])).unwrap();
    let m = bad(decode(secret(vec![entry(&half), entry(&half)])));
    assert!(m.contains("non-empty arrays and objects"), "{m}");
    // 3 MiB of short nested arrays is refused at the budget, quickly.
    let start = Instant::now();
    let chains = vec![nested(MAX_DEPTH - 1, "1"); 3 * 1024 * 1024 / 128].join(",");
    bad(decode_patch_value(
        PatchKind::Merge,
        format!(r#"{{"a":[{chains}]}}"#).as_bytes(),
    ));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
