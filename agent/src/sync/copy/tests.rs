//! Tests of building and comparing copies.

use secret_relay_policy::is_down_copy;

use super::*;

fn secret(value: serde_json::Value) -> Secret {
    serde_json::from_value(value).unwrap()
}

#[test]
fn a_hub_copy_body_keeps_labels_and_data_and_leaves_stamps_to_the_webhook() {
    let local = secret(serde_json::json!({
        "metadata": {"name": "repo", "namespace": "akuity",
            "labels": {"akuity.io/secret-sync": "true", "secret-relay.io/owner": "cluster.x"},
            "annotations": {"akuity.io/managed-secret-allowed-clusters": "cluster2", "secret-relay.io/digest": "sha256:0"}},
        "data": {"k": "dg=="},
    }));
    let body = hub_copy_body(&local, "argocd", &StripMetadata::default());
    assert_eq!(body.metadata.namespace.as_deref(), Some("argocd"));
    let labels = body.metadata.labels.clone().unwrap();
    assert_eq!(
        labels.get("akuity.io/secret-sync").map(String::as_str),
        Some("true")
    );
    assert!(!labels.contains_key("secret-relay.io/owner"));
    let annotations = body.metadata.annotations.clone().unwrap();
    assert!(annotations.contains_key("akuity.io/managed-secret-allowed-clusters"));
    assert!(!annotations.contains_key("secret-relay.io/digest"));
    assert_eq!(digest(&body), digest(&local));
}

#[test]
fn a_down_copy_never_opts_in_and_names_its_origin() {
    let hub = secret(serde_json::json!({
        "metadata": {"name": "repo", "namespace": "argocd", "uid": "u-1", "resourceVersion": "7",
            "labels": {"akuity.io/secret-sync": "true", "secret-relay.io/owner": "cluster.cluster1"},
            "annotations": {"secret-relay.io/adopted": "true", "secret-relay.io/digest": "sha256:00"}},
        "data": {"k": "dg=="},
    }));
    let copy = down_copy(&hub, "akuity", &StripMetadata::default());
    let labels = copy.metadata.labels.clone().unwrap();
    assert!(!labels.contains_key("akuity.io/secret-sync"));
    assert_eq!(labels["secret-relay.io/owner"], "cluster.cluster1");
    assert!(is_down_copy(&copy));
    let annotations = copy.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["secret-relay.io/source"], "u-1/7");
    assert!(!annotations.contains_key("secret-relay.io/digest"));
    assert!(!annotations.contains_key("secret-relay.io/adopted"));
    let managed = secret(serde_json::json!({"metadata": {"name": "m"}, "data": {}}));
    assert_eq!(
        down_copy(&managed, "akuity", &StripMetadata::default())
            .metadata
            .labels
            .unwrap()["secret-relay.io/owner"],
        "control-plane"
    );
}

#[test]
fn a_down_copy_carries_no_function_of_its_values_and_the_agent_still_tells_them_apart() {
    let hub = |value: &str| {
        secret(serde_json::json!({
            "metadata": {"name": "repo", "namespace": "argocd", "uid": "u-1", "resourceVersion": "7",
                "labels": {"secret-relay.io/owner": "cluster.cluster1", "team": "a"},
                "annotations": {"note": "x", "akuity.io/managed-secret-allowed-clusters": "ALL"}},
            "data": {"password": value},
        }))
    };
    let (a, b) = (hub("aHVudGVyMg=="), hub("b3RoZXI="));
    let strip = StripMetadata::default();
    let (ca, cb) = (
        down_copy(&a, "akuity", &strip),
        down_copy(&b, "akuity", &strip),
    );
    assert_eq!(ca.metadata, cb.metadata);
    // The agent holds the values: its fingerprint tells the two apart.
    assert_ne!(Fingerprint::of(&ca, &[]), Fingerprint::of(&cb, &[]));
    // A copy written from an older hub version, or carrying an old version's
    // digest, is drift.
    let mut older = ca.clone();
    older
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("secret-relay.io/source".to_owned(), "u-1/6".to_owned());
    assert_ne!(Fingerprint::of(&older, &[]), Fingerprint::of(&ca, &[]));
    let mut old_digest = ca.clone();
    old_digest
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("secret-relay.io/digest".to_owned(), digest(&a));
    assert_ne!(Fingerprint::of(&old_digest, &[]), Fingerprint::of(&ca, &[]));
}

#[test]
fn a_new_type_or_a_change_of_an_immutable_secret_is_a_replacement() {
    let s = |ty: &str, immutable: Option<bool>, value: &str| {
        secret(serde_json::json!({
            "metadata": {"name": "repo"}, "type": ty, "immutable": immutable,
            "data": {"k": value},
        }))
    };
    // An update does it.
    assert!(!needs_replacing(
        &s("Opaque", None, "dg=="),
        &s("Opaque", None, "eA==")
    ));
    assert!(!needs_replacing(
        &s("Opaque", None, "dg=="),
        &s("Opaque", Some(true), "eA==")
    ));
    assert!(!needs_replacing(
        &s("Opaque", Some(true), "dg=="),
        &s("Opaque", Some(true), "dg==")
    ));
    // The API server refuses these as updates.
    assert!(needs_replacing(
        &s("Opaque", None, "dg=="),
        &s("kubernetes.io/basic-auth", None, "dg==")
    ));
    assert!(needs_replacing(
        &s("Opaque", Some(true), "dg=="),
        &s("Opaque", Some(true), "eA==")
    ));
    assert!(needs_replacing(
        &s("Opaque", Some(true), "dg=="),
        &s("Opaque", None, "dg==")
    ));
}

#[test]
fn copies_carry_immutable_and_type_and_never_tool_ownership() {
    let local = secret(serde_json::json!({
        "metadata": {"name": "repo", "namespace": "akuity",
            "labels": {"akuity.io/secret-sync": "true", "app.kubernetes.io/managed-by": "Helm", "team": "a"},
            "annotations": {"meta.helm.sh/release-name": "r", "argocd.argoproj.io/tracking-id": "app:/Secret:akuity/repo",
                "akuity.io/managed-secret-allowed-clusters": "cluster2"}},
        "type": "kubernetes.io/dockerconfigjson", "immutable": true,
        "data": {".dockerconfigjson": "e30="},
    }));
    let body = hub_copy_body(&local, "argocd", &StripMetadata::default());
    assert_eq!(body.immutable, Some(true));
    assert_eq!(
        body.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert_eq!(
        body.metadata
            .labels
            .as_ref()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["akuity.io/secret-sync", "team"]
    );
    assert_eq!(
        body.metadata
            .annotations
            .as_ref()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["akuity.io/managed-secret-allowed-clusters"]
    );
    let copy = down_copy(&body, "akuity", &StripMetadata::default());
    assert_eq!(copy.immutable, Some(true));
    assert_eq!(
        copy.metadata
            .annotations
            .as_ref()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        Vec::<&String>::new()
    );
    let strip = StripMetadata {
        labels: vec!["team".to_owned()],
        annotations: Vec::new(),
    };
    assert!(
        !hub_copy_body(&local, "argocd", &strip)
            .metadata
            .labels
            .unwrap()
            .contains_key("team")
    );
}
