use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PartialObjectMeta};
use secret_relay_policy::keys::{
    ADOPTED_ANNOTATION, ALLOWED_CLUSTERS_ANNOTATION, OWNER_LABEL, SECRET_SYNC_LABEL,
    SOURCE_ANNOTATION,
};

use super::*;
use crate::state::{Inner, SecretsCache};

const POLICY: &str = "\
clusters:
  - {name: cluster1, labels: {env: prod}}
  - {name: cluster2, labels: {env: staging}}
secretSources:
  - {clusterSelector: env=prod, labelSelector: team=a}
";

fn secret(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Secret {
    let map = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>()
    };
    let mut s = Secret::default();
    s.metadata.name = Some(name.to_owned());
    s.metadata.namespace = Some("argocd".to_owned());
    s.metadata.labels = Some(map(labels));
    s.metadata.annotations = Some(map(annotations));
    s.data = Some(BTreeMap::from([(
        "password".to_owned(),
        k8s_openapi::ByteString(Vec::new()),
    )]));
    s
}

fn local(
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> PartialObjectMeta<Secret> {
    let map = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>()
    };
    PartialObjectMeta {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("akuity".to_owned()),
            labels: Some(map(labels)),
            annotations: Some(map(annotations)),
            ..ObjectMeta::default()
        },
        ..PartialObjectMeta::default()
    }
}

fn snapshot(secrets: Vec<Secret>, clusters: BTreeMap<String, ClusterReport>) -> Snapshot {
    Snapshot {
        version: 1,
        policy: Arc::new(Policy::from_yaml(POLICY).unwrap()),
        policy_ready: true,
        policy_generation: 1,
        policy_error: None,
        policy_source: "secret-relay-system/secret-relay-policy".to_owned(),
        inner: Inner {
            secrets: SecretsCache {
                namespace: "argocd".to_owned(),
                items: secrets
                    .into_iter()
                    .map(|s| (s.metadata.name.clone().unwrap(), s))
                    .collect(),
                synced: true,
                error: None,
            },
            clusters,
            relay: None,
            identity: None,
        },
    }
}

#[test]
fn a_managed_secret_lists_its_targets_and_the_rule_for_every_other_cluster() {
    let s = secret("db", &[], &[(ALLOWED_CLUSTERS_ANNOTATION, "cluster1")]);
    let v = build(&snapshot(vec![s], BTreeMap::new()));
    let row = &v.secrets[0];
    assert_eq!(row.targets, vec!["cluster1"]);
    assert_eq!(row.owner.kind, "control-plane");
    assert!(row.editable && row.lock.is_none());
    let c2 = row
        .clusters
        .iter()
        .find(|c| c.cluster == "cluster2")
        .unwrap();
    assert!(!c2.target);
    assert_eq!(c2.decision.rule, Rule::DownSyncNotTarget);
    assert_eq!(row.target_mode.mode, "list");
    assert_eq!(row.keys, vec!["password"]);
}

#[test]
fn an_unregistered_name_in_allowed_clusters_is_an_annotation_problem_of_its_row() {
    let typo = secret(
        "db",
        &[],
        &[(ALLOWED_CLUSTERS_ANNOTATION, "cluster1, clsuter2")],
    );
    let fine = secret("ok", &[], &[(ALLOWED_CLUSTERS_ANNOTATION, "ALL")]);
    let v = build(&snapshot(vec![typo, fine], BTreeMap::new()));
    let row = v.secrets.iter().find(|s| s.name == "db").unwrap();
    assert_eq!(row.targets, vec!["cluster1"]);
    assert_eq!(
        row.problems,
        vec![
            "the annotation akuity.io/managed-secret-allowed-clusters names clsuter2 (did you mean cluster2?), which is not a registered cluster, so nothing goes there: fix the name or register the cluster"
        ]
    );
    // The editor keeps the name, so the page can show it and saving keeps it.
    assert_eq!(row.target_mode.clusters, vec!["cluster1", "clsuter2"]);
    let ok = v.secrets.iter().find(|s| s.name == "ok").unwrap();
    assert!(ok.problems.is_empty(), "{:?}", ok.problems);
}

#[test]
fn an_adopted_secret_is_locked_with_the_way_to_release_it() {
    let s = secret(
        "argocd-notifications-secret",
        &[(OWNER_LABEL, "cluster.cluster1"), ("team", "a")],
        &[(ADOPTED_ANNOTATION, "true")],
    );
    let v = build(&snapshot(vec![s], BTreeMap::new()));
    let row = &v.secrets[0];
    assert!(row.adopted && !row.editable);
    let lock = row.lock.as_ref().unwrap();
    assert_eq!(lock.title, "Adopted by cluster cluster1");
    assert!(
        lock.detail.contains("akuity/argocd-notifications-secret"),
        "{}",
        lock.detail
    );
    assert_eq!(lock.release.rule, Rule::ReleaseReturn);
    assert!(!lock.can_take_over);
}

#[test]
fn an_orphaned_copy_may_be_taken_over() {
    let s = secret("x", &[(OWNER_LABEL, "cluster.gone")], &[]);
    let v = build(&snapshot(vec![s], BTreeMap::new()));
    let lock = v.secrets[0].lock.as_ref().unwrap();
    assert!(lock.can_take_over);
    assert_eq!(lock.release.rule, Rule::OrphanedOwner);
}

#[test]
fn a_blocked_secret_is_not_editable_and_goes_nowhere() {
    let s = secret(
        "argocd-secret",
        &[],
        &[(ALLOWED_CLUSTERS_ANNOTATION, "ALL")],
    );
    let v = build(&snapshot(vec![s], BTreeMap::new()));
    let row = &v.secrets[0];
    assert!(!row.editable);
    assert_eq!(row.blocked.as_ref().unwrap().rule, Rule::BlockedName);
    assert!(row.targets.is_empty());
}

#[test]
fn sync_state_comes_from_down_copies_and_agent_events() {
    let mut hub = secret("db", &[], &[(ALLOWED_CLUSTERS_ANNOTATION, "ALL")]);
    hub.metadata.uid = Some("u-db".to_owned());
    hub.metadata.resource_version = Some("12".to_owned());
    let owned = secret(
        "repo",
        &[(OWNER_LABEL, "cluster.cluster1"), ("team", "a")],
        &[],
    );
    let mut c1 = ClusterReport {
        namespace: "akuity".to_owned(),
        secrets_synced: true,
        ..ClusterReport::default()
    };
    c1.secrets.insert(
        "db".to_owned(),
        local(
            "db",
            &[(OWNER_LABEL, "control-plane")],
            &[(SOURCE_ANNOTATION, "u-db/12")],
        ),
    );
    c1.secrets.insert(
        "repo".to_owned(),
        local("repo", &[(SECRET_SYNC_LABEL, "true"), ("team", "a")], &[]),
    );
    c1.events.insert(
        ("repo".to_owned(), "up"),
        AgentEvent {
            reason: "UpSynced".to_owned(),
            note: "synced to the control plane as argocd/repo".to_owned(),
            warning: false,
            time: None,
        },
    );
    let mut c2 = ClusterReport {
        namespace: "akuity".to_owned(),
        secrets_synced: true,
        ..ClusterReport::default()
    };
    c2.secrets.insert("db".to_owned(), local("db", &[], &[]));
    let v = build(&snapshot(
        vec![hub, owned],
        BTreeMap::from([("cluster1".to_owned(), c1), ("cluster2".to_owned(), c2)]),
    ));
    let db = v.secrets.iter().find(|s| s.name == "db").unwrap();
    let state = |row: &SecretRow, c: &str| {
        row.clusters
            .iter()
            .find(|x| x.cluster == c)
            .and_then(|x| x.sync.as_ref())
            .map(|s| s.state)
    };
    assert_eq!(state(db, "cluster1"), Some("synced"));
    assert_eq!(state(db, "cluster2"), Some("conflict"));
    let repo = v.secrets.iter().find(|s| s.name == "repo").unwrap();
    assert_eq!(state(repo, "cluster1"), Some("synced"));
    // The source admits repo from cluster1, seen both on the hub and the cluster.
    let admits = &v.policy.sources[0].admits;
    assert_eq!(admits.len(), 1, "{admits:?}");
    assert_eq!(
        (admits[0].cluster.as_str(), admits[0].name.as_str()),
        ("cluster1", "repo")
    );
    assert_eq!((admits[0].on_cluster, admits[0].in_hub), (Some(true), true));
}

#[test]
fn an_opted_in_local_secret_without_a_hub_copy_is_listed_with_the_decision() {
    let mut c2 = ClusterReport {
        namespace: "akuity".to_owned(),
        secrets_synced: true,
        ..ClusterReport::default()
    };
    c2.secrets.insert(
        "mine".to_owned(),
        local("mine", &[(SECRET_SYNC_LABEL, "true"), ("team", "a")], &[]),
    );
    let v = build(&snapshot(
        Vec::new(),
        BTreeMap::from([("cluster2".to_owned(), c2)]),
    ));
    assert_eq!(v.local_only.len(), 1);
    assert_eq!(v.local_only[0].decision.rule, Rule::NoMatchingSource);
}

#[test]
fn the_view_never_carries_a_value() {
    let s = crate::state::strip(
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "argocd",
                "annotations": {crate::state::LAST_APPLIED: "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}},
            "data": {"password": "aHVudGVyMg=="},
        }))
        .unwrap(),
    );
    let v = build(&snapshot(vec![s], BTreeMap::new()));
    let text = serde_json::to_string(&v).unwrap();
    assert!(!text.contains("aHVudGVyMg"), "{text}");
    assert!(text.contains("\"keys\":[\"password\"]"), "{text}");
}

#[test]
fn a_revoked_copy_says_the_policy_took_it_back_and_that_it_may_be_deleted() {
    // No Secret Source admits team=b from cluster1 any more.
    let s = secret(
        "repo",
        &[(OWNER_LABEL, "cluster.cluster1"), ("team", "b")],
        &[],
    );
    let v = build(&snapshot(vec![s], BTreeMap::new()));
    let lock = v.secrets[0].lock.as_ref().unwrap();
    assert!(lock.title.starts_with("Revoked"), "{}", lock.title);
    assert!(
        lock.detail.contains("no-matching-source"),
        "{}",
        lock.detail
    );
    assert!(lock.detail.contains("may delete"), "{}", lock.detail);
    assert_eq!(lock.release.rule, Rule::Revoked);
    assert_eq!(lock.release.action, Some(ReleaseAction::Delete));
}

#[test]
fn a_down_copy_leaving_or_held_shows_on_the_cluster_it_no_longer_goes_to() {
    // Goes to cluster1 only; cluster2 still holds a copy from before.
    let hub = secret("db", &[], &[(ALLOWED_CLUSTERS_ANNOTATION, "cluster1")]);
    let report = |reason: &str| {
        let mut c = ClusterReport {
            namespace: "akuity".to_owned(),
            secrets_synced: true,
            ..ClusterReport::default()
        };
        c.secrets.insert(
            "db".to_owned(),
            local("db", &[(OWNER_LABEL, "control-plane")], &[]),
        );
        c.events.insert(
            ("db".to_owned(), "down"),
            AgentEvent {
                reason: reason.to_owned(),
                note: format!("{reason} note"),
                warning: true,
                time: None,
            },
        );
        c
    };
    for (reason, want) in [
        ("DownCopyLeaving", "leaving"),
        ("DownCopyDeletionHeld", "held"),
    ] {
        let v = build(&snapshot(
            vec![hub.clone()],
            BTreeMap::from([("cluster2".to_owned(), report(reason))]),
        ));
        let row = v.secrets[0]
            .clusters
            .iter()
            .find(|c| c.cluster == "cluster2")
            .unwrap();
        let sync = row.sync.as_ref().unwrap();
        assert_eq!((sync.direction, sync.state), ("down", want));
        assert_eq!(sync.detail, format!("{reason} note"));
    }
}

#[test]
fn a_down_copy_written_from_an_earlier_hub_version_is_outdated() {
    let mut hub = secret("db", &[], &[(ALLOWED_CLUSTERS_ANNOTATION, "ALL")]);
    hub.metadata.uid = Some("u-db".to_owned());
    hub.metadata.resource_version = Some("13".to_owned());
    let report = |annotations: &[(&str, &str)]| {
        let mut r = ClusterReport {
            namespace: "akuity".to_owned(),
            secrets_synced: true,
            ..ClusterReport::default()
        };
        r.secrets.insert(
            "db".to_owned(),
            local("db", &[(OWNER_LABEL, "control-plane")], annotations),
        );
        r
    };
    let v = build(&snapshot(
        vec![hub],
        BTreeMap::from([
            // The agent has not written the new version yet.
            (
                "cluster1".to_owned(),
                report(&[(SOURCE_ANNOTATION, "u-db/12")]),
            ),
            // Another Secret of the same name was here before (another uid).
            (
                "cluster2".to_owned(),
                report(&[(SOURCE_ANNOTATION, "u-old/13")]),
            ),
        ]),
    ));
    for row in &v.secrets[0].clusters {
        let sync = row.sync.as_ref().unwrap();
        assert_eq!(
            (sync.direction, sync.state),
            ("down", "outdated"),
            "{}",
            row.cluster
        );
    }
    // A down copy an older version of secret-relay wrote (no source; its digest is
    // dropped as it arrives) too.
    let mut hub = secret("db", &[], &[(ALLOWED_CLUSTERS_ANNOTATION, "ALL")]);
    hub.metadata.uid = Some("u-db".to_owned());
    hub.metadata.resource_version = Some("13".to_owned());
    let v = build(&snapshot(
        vec![hub],
        BTreeMap::from([("cluster1".to_owned(), report(&[]))]),
    ));
    let sync = v.secrets[0].clusters[0].sync.as_ref().unwrap();
    assert_eq!(sync.state, "outdated");
}

#[test]
fn the_view_carries_no_digest_of_values() {
    // A hub copy an older version stamped and nobody wrote since: the view (the
    // page's API and its stream) shows neither the key nor the digest.
    let digest = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    let hub = secret(
        "db",
        &[],
        &[
            (ALLOWED_CLUSTERS_ANNOTATION, "ALL"),
            (secret_relay_policy::keys::DIGEST_ANNOTATION, digest),
            ("note", "kept"),
        ],
    );
    let v = build(&snapshot(vec![hub], BTreeMap::new()));
    assert_eq!(
        v.secrets[0].annotations.keys().collect::<Vec<_>>(),
        [ALLOWED_CLUSTERS_ANNOTATION, "note"]
    );
    let json = serde_json::to_string(&v).unwrap();
    assert!(
        !json.contains("digest") && !json.contains("sha256"),
        "{json}"
    );
}
