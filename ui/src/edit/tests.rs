use super::*;

const POLICY: &str = "clusters:\n  - {name: cluster1, labels: {env: prod}}\n  - {name: cluster2, labels: {env: staging}}\n  - {name: cluster3, labels: {env: prod}}\n";

fn target(mode: &str, clusters: &[&str], selector: &str) -> TargetMode {
    TargetMode {
        mode: mode.to_owned(),
        clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
        selector: selector.to_owned(),
    }
}

fn preview_of(name: &str, t: TargetMode) -> Preview {
    let policy = Policy::from_yaml(POLICY).unwrap();
    preview(
        &policy,
        &PreviewRequest {
            name: name.to_owned(),
            type_: None,
            argo_type: Some("repository".to_owned()),
            target: t,
            existing: None,
        },
        None,
    )
}

#[test]
fn a_selector_target_goes_to_the_clusters_it_matches() {
    let p = preview_of("db", target("selector", &[], "env=prod"));
    assert_eq!(p.targets, vec!["cluster1", "cluster3"]);
    assert!(p.blocked.is_none() && p.target_error.is_none());
    let c2 = p.clusters.iter().find(|c| c.cluster == "cluster2").unwrap();
    assert!(!c2.target);
    assert_eq!(c2.decision.rule.as_str(), "down-sync-not-target");
}

#[test]
fn a_blocked_name_is_refused_with_its_rule() {
    let p = preview_of("argocd-secret", target("all", &[], ""));
    assert_eq!(p.blocked.unwrap().rule.as_str(), "blocked-name");
}

#[test]
fn an_unparsable_selector_is_a_target_error() {
    let p = preview_of("db", target("selector", &[], "env in (prod"));
    assert!(p.target_error.unwrap().contains("does not parse"));
    assert!(p.targets.is_empty());
}

#[test]
fn an_unregistered_listed_cluster_is_a_problem_with_the_nearest_name() {
    let p = preview_of("db", target("list", &["cluster1", "clsuter2"], ""));
    assert!(p.target_error.is_none());
    assert_eq!(p.targets, vec!["cluster1"]);
    assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
    assert!(
        p.problems[0]
            .contains("names clsuter2 (did you mean cluster2?), which is not a registered cluster"),
        "{:?}",
        p.problems
    );
    let fine = preview_of("db", target("list", &["cluster1", "cluster2"], ""));
    assert!(fine.problems.is_empty(), "{:?}", fine.problems);
}

#[test]
fn a_new_secret_carries_the_target_annotations_and_the_argo_type() {
    let policy = Policy::from_yaml(POLICY).unwrap();
    let s = new_secret(
        &policy,
        &CreateRequest {
            name: "db".into(),
            type_: None,
            argo_type: Some("repo-creds".into()),
            target: target("list", &["cluster1", "cluster3"], ""),
            data: BTreeMap::from([("password".into(), "pw".into())]),
        },
    )
    .unwrap();
    let a = s.metadata.annotations.as_ref().unwrap();
    assert_eq!(a[ALLOWED_CLUSTERS_ANNOTATION], "cluster1,cluster3");
    assert!(!a.contains_key(ALLOWED_CLUSTER_SELECTOR_ANNOTATION));
    assert_eq!(s.metadata.labels.unwrap()[SECRET_TYPE_LABEL], "repo-creds");
    assert_eq!(s.data.unwrap()["password"].0, b"pw");
    assert_eq!(s.metadata.namespace.as_deref(), Some("argocd"));
}

#[test]
fn an_edit_patch_removes_the_other_target_annotation_and_only_touches_named_keys() {
    let current = Secret::default();
    let (patch, after) = edit_patch(
        &EditRequest {
            argo_type: None,
            target: target("all", &[], ""),
            set: BTreeMap::from([("a".into(), "1".into())]),
            remove: vec!["b".into()],
        },
        &current,
    )
    .unwrap();
    assert_eq!(patch["data"], json!({"a": "MQ==", "b": null}));
    assert_eq!(
        patch["metadata"]["annotations"],
        json!({ALLOWED_CLUSTERS_ANNOTATION: "ALL", ALLOWED_CLUSTER_SELECTOR_ANNOTATION: null})
    );
    assert_eq!(
        patch["metadata"]["labels"],
        json!({SECRET_TYPE_LABEL: null})
    );
    assert_eq!(
        after.metadata.annotations.unwrap()[ALLOWED_CLUSTERS_ANNOTATION],
        "ALL"
    );
}

#[test]
fn an_empty_list_is_refused() {
    assert!(target_annotations(&target("list", &[], "")).is_err());
    assert!(target_annotations(&target("selector", &[], " ")).is_err());
    assert_eq!(
        target_annotations(&target("none", &["x"], "y")).unwrap(),
        (None, None)
    );
}
