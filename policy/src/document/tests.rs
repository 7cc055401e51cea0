use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;

use super::*;

const DESIGN_EXAMPLE: &str = r#"
controlPlaneNamespace: argocd     # default
agentNamespace: akuity            # default
clusters:
  - name: cluster1
    labels: { env: prod, my-label: cluster1 }
secretSources:
  - clusterSelector: "env=prod"          # string form, or matchLabels/matchExpressions
    labelSelector: "team in (my-team)"
extraBlocked: { names: [], types: [], labels: [] }
breakGlass: { users: [], groups: [] }
"#;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn secret(name: &str, ty: Option<&str>, l: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("argocd".to_owned()),
            labels: Some(labels(l)),
            ..ObjectMeta::default()
        },
        type_: ty.map(str::to_owned),
        ..Secret::default()
    }
}

fn problems(text: &str) -> Vec<(String, String)> {
    Policy::from_yaml(text)
        .expect_err("the document should be rejected")
        .problems
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

fn paths(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|(p, _)| p).collect()
}

#[test]
fn the_design_example_parses() {
    let p = Policy::from_yaml(DESIGN_EXAMPLE).unwrap();
    assert_eq!(p.control_plane_namespace(), "argocd");
    assert_eq!(p.agent_namespace(), "akuity");
    let c = p.cluster("cluster1").unwrap();
    assert_eq!(
        c.labels,
        labels(&[("env", "prod"), ("my-label", "cluster1")])
    );
    assert_eq!(p.sources().len(), 1);
    assert_eq!(
        p.sources()[0].label_selector.to_string(),
        "team in (my-team)"
    );
    assert!(p.break_glass().users.is_empty());
    assert!(p.cluster("cluster2").is_none());
}

#[test]
fn json_documents_and_selector_objects_are_read() {
    let text = r#"{
      "controlPlaneNamespace": "hub",
      "agentNamespace": "relay",
      "clusters": [{"name": "b"}, {"name": "a", "labels": {"env": "dev"}}],
      "secretSources": [{"clusterSelector": {"matchLabels": {"env": "dev"},
                         "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}}],
      "breakGlass": {"users": ["alice"], "groups": ["sre"]},
      "extraBlocked": {"names": ["vault-token"], "types": ["example.com/hsm"], "labels": ["secret-class=restricted", "no-sync"]}
    }"#;
    let p = Policy::from_yaml(text).unwrap();
    assert_eq!(p.control_plane_namespace(), "hub");
    assert_eq!(p.agent_namespace(), "relay");
    let names: Vec<&str> = p.clusters().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(p.sources()[0].cluster_selector.to_string(), "env=dev,!tier");
    assert!(p.sources()[0].label_selector.is_empty());
    assert!(p.break_glass().users.contains("alice"));
    assert!(p.break_glass().groups.contains("sre"));
    assert_eq!(p.extra_blocked().labels.len(), 2);
}

#[test]
fn missing_fields_take_the_defaults() {
    let p = Policy::from_yaml("clusters: []").unwrap();
    assert_eq!(p.control_plane_namespace(), "argocd");
    assert_eq!(p.agent_namespace(), "akuity");
    assert_eq!(p.clusters().count(), 0);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = r#"
controlPlaneNamespace: Argo_CD
colour: blue
clusters:
  - name: cluster1
    labels: { env: prod }
  - name: cluster1
  - name: Bad_Name
  - labels: { "-bad": x, ok: "not valid", n: 3 }
    region: eu
secretSources:
  - {}
  - clusterSelector: "env in (prod"
  - labelSelector: { matchExpressions: [{ key: a, operator: Gt, values: ["1"] }] }
  - clusterSelector: { matchLabel: { a: b } }
extraBlocked:
  names: ["!argocd-secret", "my-secret", "!other"]
  types: ["!kubernetes.io/service-account-token"]
  labels: ["argocd.argoproj.io/secret-type!=cluster", "!argocd.argoproj.io/secret-type"]
breakGlass: { users: [""], teams: [] }
"#;
    let got = paths(text);
    let want = [
        "colour",
        "controlPlaneNamespace",
        "clusters[1].name",
        "clusters[2].name",
        "clusters[3].region",
        "clusters[3].labels[\"-bad\"]",
        "clusters[3].labels[\"ok\"]",
        "clusters[3].labels[\"n\"]",
        "clusters[3].name",
        "secretSources[0]",
        "secretSources[1].clusterSelector",
        "secretSources[2].labelSelector",
        "secretSources[3].clusterSelector.matchLabel",
        "secretSources[3]",
        "extraBlocked.names[0]",
        "extraBlocked.names[2]",
        "extraBlocked.types[0]",
        "extraBlocked.labels[0]",
        "extraBlocked.labels[1]",
        "breakGlass.teams",
        "breakGlass.users[0]",
    ];
    assert_eq!(got, want);
    let all = problems(text);
    let msg = |path: &str| {
        all.iter()
            .find(|(p, _)| p == path)
            .map(|(_, m)| m.clone())
            .unwrap()
    };
    assert!(
        msg("clusters[1].name")
            .contains("duplicate cluster name 'cluster1' (first at clusters[0])")
    );
    assert!(msg("colour").contains("unknown field"));
    assert!(
        msg("extraBlocked.names[0]")
            .contains("cannot unblock the built-in blocked name 'argocd-secret'")
    );
    assert!(msg("extraBlocked.types[0]").contains("built-in"));
    assert!(msg("extraBlocked.labels[0]").contains("built-in"));
    assert!(!msg("extraBlocked.names[2]").contains("built-in"));
    assert!(msg("secretSources[0]").contains("needs a clusterSelector or a labelSelector"));
    assert!(msg("secretSources[1].clusterSelector").contains("position 12"));
    let shown = Policy::from_yaml(text).unwrap_err().to_string();
    assert!(shown.starts_with("failed to load policy: 21 problems: colour:"));
}

#[test]
fn a_source_with_both_selectors_empty_is_rejected_in_every_spelling() {
    for src in [
        "{}",
        "{ clusterSelector: \"\", labelSelector: \"\" }",
        "{ clusterSelector: {}, labelSelector: { matchLabels: {} } }",
        "{ clusterSelector: null }",
    ] {
        let got = paths(&format!("secretSources: [{src}]"));
        assert_eq!(got, ["secretSources[0]"], "{src}");
    }
}

#[test]
fn cluster_names_must_fit_the_owner_label() {
    let ok = "a".repeat(MAX_CLUSTER_NAME_LEN);
    assert!(Policy::from_yaml(&format!("clusters: [{{name: {ok}}}]")).is_ok());
    let long = "a".repeat(MAX_CLUSTER_NAME_LEN + 1);
    assert_eq!(
        paths(&format!("clusters: [{{name: {long}}}]")),
        ["clusters[0].name"]
    );
    assert_eq!(paths("clusters: [{name: 7}]"), ["clusters[0].name"]);
}

include!("../../tests/fixtures/cluster_names.rs");

#[test]
fn the_cluster_name_table_is_the_rule_of_the_registry() {
    for &(name, valid) in CLUSTER_NAMES {
        assert_eq!(is_valid_cluster_name(name), valid, "{name:?}");
        assert_eq!(crate::ClusterId::new(name).is_some(), valid, "{name:?}");
        let doc = serde_json::json!({ "clusters": [{ "name": name }] }).to_string();
        assert_eq!(Policy::from_yaml(&doc).is_ok(), valid, "{doc}");
    }
}

#[test]
fn unreadable_documents_get_one_clear_problem() {
    let (path, msg) = problems("clusters: [").remove(0);
    assert_eq!(path, "");
    assert!(msg.starts_with("failed to parse YAML/JSON"));
    assert_eq!(paths(""), [""]);
    assert_eq!(paths("- a\n- b\n"), [""]);
    assert_eq!(paths("clusters: {a: 1}"), ["clusters"]);
    let (_, msg) = problems("clusters:\n  - name: a\n    name: b\n").remove(0);
    assert!(msg.contains("duplicate entry"), "{msg}");
}

#[test]
fn configmap_data_is_read_from_its_key() {
    let mut data = BTreeMap::new();
    data.insert(POLICY_KEY.to_owned(), DESIGN_EXAMPLE.to_owned());
    assert!(Policy::from_configmap_data(&data, POLICY_KEY).is_ok());
    let e = Policy::from_configmap_data(&data, "other.yaml").unwrap_err();
    assert_eq!(e.problems[0].path, "data[\"other.yaml\"]");
}

#[test]
fn strip_metadata_takes_keys_and_prefixes_and_reports_bad_ones() {
    let p = Policy::from_yaml(
        "stripMetadata: { labels: [team, example.com/], annotations: [notes.example.com/owner] }",
    )
    .unwrap();
    assert_eq!(p.strip_metadata().labels, ["team", "example.com/"]);
    assert_eq!(p.strip_metadata().annotations, ["notes.example.com/owner"]);
    assert!(Policy::default().strip_metadata().is_empty());
    assert_eq!(
        paths("stripMetadata: { labels: ['bad key', 'Bad_/'], annotations: [7], other: [] }"),
        [
            "stripMetadata.other",
            "stripMetadata.labels[0]",
            "stripMetadata.labels[1]",
            "stripMetadata.annotations[0]",
        ]
    );
}

#[test]
fn built_in_and_extra_blocked_secrets_are_found() {
    let p = Policy::from_yaml(
        "extraBlocked: { names: [vault-token], types: [example.com/hsm], labels: [class=restricted, no-sync] }",
    )
    .unwrap();
    let cases: &[(Secret, Option<&str>)] = &[
        (
            secret("argocd-secret", None, &[]),
            Some("name argocd-secret"),
        ),
        (
            secret("argocd-initial-admin-secret", None, &[]),
            Some("name argocd-initial-admin-secret"),
        ),
        (
            secret("x", Some("kubernetes.io/service-account-token"), &[]),
            Some("type kubernetes.io/service-account-token"),
        ),
        (
            secret("x", None, &[("argocd.argoproj.io/secret-type", "cluster")]),
            Some("label argocd.argoproj.io/secret-type=cluster"),
        ),
        (
            secret(
                "x",
                None,
                &[("argocd.argoproj.io/secret-type", "repository")],
            ),
            None,
        ),
        (secret("vault-token", None, &[]), Some("name vault-token")),
        (
            secret("x", Some("example.com/hsm"), &[]),
            Some("type example.com/hsm"),
        ),
        (
            secret("x", None, &[("class", "restricted")]),
            Some("label class=restricted"),
        ),
        (secret("x", None, &[("class", "open")]), None),
        (
            secret("x", None, &[("no-sync", "yes")]),
            Some("label no-sync=yes"),
        ),
        (secret("x", Some("Opaque"), &[("team", "a")]), None),
    ];
    for (s, want) in cases {
        assert_eq!(
            p.blocked(s).map(|b| b.to_string()).as_deref(),
            *want,
            "{:?}",
            s.metadata
        );
    }
    // The default policy blocks the built-ins too.
    assert!(
        Policy::default()
            .blocked(&secret("argocd-secret", None, &[]))
            .is_some()
    );
}

#[test]
fn sources_are_indexed_per_cluster() {
    let mut text = String::from("clusters:\n");
    for i in 0..20 {
        text.push_str(&format!(
            "  - {{ name: c{i}, labels: {{ id: c{i}, env: {} }} }}\n",
            if i % 2 == 0 { "prod" } else { "dev" }
        ));
    }
    text.push_str("secretSources:\n");
    for i in 0..20 {
        text.push_str(&format!(
            "  - {{ clusterSelector: \"id=c{i}\", labelSelector: \"team=t{i}\" }}\n"
        ));
    }
    text.push_str("  - { clusterSelector: \"env in (prod)\", labelSelector: \"shared\" }\n");
    text.push_str("  - { labelSelector: \"global=true\" }\n");
    let p = Policy::from_yaml(&text).unwrap();
    assert_eq!(p.candidate_count("c0"), 3);
    assert_eq!(p.candidate_count("c1"), 2);
    assert_eq!(p.candidate_count("nope"), 0);
    assert_eq!(p.matching_source("c3", &labels(&[("team", "t3")])), Some(3));
    assert_eq!(p.matching_source("c3", &labels(&[("team", "t4")])), None);
    assert_eq!(
        p.matching_source("c4", &labels(&[("shared", "")])),
        Some(20)
    );
    assert_eq!(p.matching_source("c5", &labels(&[("shared", "")])), None);
    assert_eq!(
        p.matching_source("c5", &labels(&[("global", "true")])),
        Some(21)
    );
}

fn selector_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (0u8..4).prop_map(|i| format!("k{i}=v{}", i % 2)),
        (0u8..4).prop_map(|i| format!("k{i} in (v0,v1)")),
        (0u8..4).prop_map(|i| format!("k{i}!=v0")),
        (0u8..4).prop_map(|i| format!("k{i} notin (v1)")),
        (0u8..4).prop_map(|i| format!("!k{i}")),
        (0u8..4, 0u8..4).prop_map(|(i, j)| format!("k{i}=v0,k{j}")),
        (0u8..4, 0u8..4).prop_map(|(i, j)| format!("k{i} in (v1),k{j}=v0")),
    ]
}

fn labels_strategy() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        (0u8..4).prop_map(|i| format!("k{i}")),
        (0u8..2).prop_map(|i| format!("v{i}")),
        0..4,
    )
}

proptest! {
    #[test]
    fn the_index_gives_the_same_answer_as_a_full_scan(
        clusters in prop::collection::vec(labels_strategy(), 1..6),
        sources in prop::collection::vec((selector_strategy(), selector_strategy()), 0..12),
        secret_labels in labels_strategy(),
    ) {
        let mut doc = serde_json::json!({ "clusters": [], "secretSources": [] });
        for (i, l) in clusters.iter().enumerate() {
            doc["clusters"].as_array_mut().unwrap().push(serde_json::json!({ "name": format!("c{i}"), "labels": l }));
        }
        for (c, l) in &sources {
            if c.is_empty() && l.is_empty() {
                continue;
            }
            doc["secretSources"].as_array_mut().unwrap().push(serde_json::json!({ "clusterSelector": c, "labelSelector": l }));
        }
        let p = Policy::from_yaml(&doc.to_string()).unwrap();
        for i in 0..clusters.len() {
            let name = format!("c{i}");
            prop_assert_eq!(
                p.matching_source(&name, &secret_labels),
                p.matching_source_full_scan(&name, &secret_labels)
            );
        }
    }
}

fn json_strategy() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("controlPlaneNamespace"),
        Just("agentNamespace"),
        Just("clusters"),
        Just("name"),
        Just("labels"),
        Just("secretSources"),
        Just("clusterSelector"),
        Just("labelSelector"),
        Just("matchLabels"),
        Just("matchExpressions"),
        Just("key"),
        Just("operator"),
        Just("values"),
        Just("extraBlocked"),
        Just("names"),
        Just("types"),
        Just("breakGlass"),
        Just("users"),
        Just("groups"),
        Just("x"),
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i32>().prop_map(serde_json::Value::from),
        "[a-z=!(),/ .-]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("In")),
        Just(serde_json::Value::from("!argocd-secret")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..5).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #[test]
    fn any_document_gives_a_policy_or_located_problems(doc in json_strategy()) {
        match Policy::from_yaml(&doc.to_string()) {
            Ok(p) => {
                // Valid by construction: every source selects something narrower than all.
                for s in p.sources() {
                    prop_assert!(!(s.cluster_selector.is_empty() && s.label_selector.is_empty()));
                }
            }
            Err(e) => {
                prop_assert!(!e.problems.is_empty());
                prop_assert!(e.to_string().starts_with("failed to load policy: "));
            }
        }
    }
}
