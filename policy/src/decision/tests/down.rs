//! Down-sync targets, and why a given cluster is or is not one.

use super::*;

// Long by design: a table, one row per case.
#[test]
fn down_sync_targets_follow_every_rule() {
    let p = policy();
    let list = |v: &str| hub("m").annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, v);
    let sel = |v: &str| hub("m").annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, v);
    // (case, hub, targets, rule)
    let cases: Vec<(&str, Secret, &[&str], Rule)> = vec![
        (
            "list",
            list("cluster1,cluster3").build(),
            &["cluster1", "cluster3"],
            Rule::DownSync,
        ),
        (
            "list with spaces and empty entries",
            list(" cluster2 ,, , cluster1 ").build(),
            &["cluster1", "cluster2"],
            Rule::DownSync,
        ),
        (
            "ALL",
            list("ALL").build(),
            &["cluster1", "cluster2", "cluster3"],
            Rule::DownSync,
        ),
        (
            "ALL among names",
            list("cluster1, ALL").build(),
            &["cluster1", "cluster2", "cluster3"],
            Rule::DownSync,
        ),
        (
            "ALL never to the owner",
            list("ALL").owner("cluster2").build(),
            &["cluster1", "cluster3"],
            Rule::DownSync,
        ),
        (
            "list naming the owner",
            list("cluster1,cluster2").owner("cluster1").build(),
            &["cluster2"],
            Rule::DownSync,
        ),
        (
            "unregistered names ignored",
            list("cluster9,cluster3").build(),
            &["cluster3"],
            Rule::DownSync,
        ),
        (
            "only unregistered names",
            list("cluster9").build(),
            &[],
            Rule::NoTargets,
        ),
        (
            "selector",
            sel("my-label in (cluster2)").build(),
            &["cluster2"],
            Rule::DownSync,
        ),
        (
            "selector never to the owner",
            sel("env=prod").owner("cluster1").build(),
            &["cluster2"],
            Rule::DownSync,
        ),
        (
            "list and selector unite",
            list("cluster3")
                .annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "env=prod")
                .build(),
            &["cluster1", "cluster2", "cluster3"],
            Rule::DownSync,
        ),
        (
            "unparsable selector does not cancel the list",
            list("cluster3")
                .annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "env in (")
                .build(),
            &["cluster3"],
            Rule::DownSync,
        ),
        (
            "unparsable selector alone",
            sel("env in (").build(),
            &[],
            Rule::InvalidSelector,
        ),
        (
            "unparsable selector and a list of unregistered names",
            list("cluster9")
                .annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "env in (")
                .build(),
            &[],
            Rule::InvalidSelector,
        ),
        (
            "blank selector selects nothing",
            sel("  ").build(),
            &[],
            Rule::NoTargets,
        ),
        (
            "blank list names nothing",
            list(" , ").build(),
            &[],
            Rule::NoTargets,
        ),
        (
            "blank list does not cancel the selector",
            list("")
                .annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "env=dev")
                .build(),
            &["cluster3"],
            Rule::DownSync,
        ),
        (
            "invalid owner label excludes no cluster",
            list("ALL").label(keys::OWNER_LABEL, "cluster1").build(),
            &["cluster1", "cluster2", "cluster3"],
            Rule::DownSync,
        ),
        ("no annotations", hub("m").build(), &[], Rule::NoTargets),
        (
            "blocked name",
            hub("argocd-secret")
                .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "ALL")
                .build(),
            &[],
            Rule::BlockedName,
        ),
        (
            "blocked type",
            sa_token(list("ALL")).build(),
            &[],
            Rule::BlockedType,
        ),
        (
            "blocked label",
            cluster_type(list("ALL")).build(),
            &[],
            Rule::BlockedLabel,
        ),
        (
            "outside the control-plane namespace",
            secret("default", "m")
                .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "ALL")
                .build(),
            &[],
            Rule::WrongNamespace,
        ),
    ];
    for (case, h, targets, rule) in cases {
        let d = down_sync(&p, &h);
        assert_eq!(d.targets, targets, "{case}: {}", d.decision.reason);
        assert_eq!(d.decision.rule, rule, "{case}: {}", d.decision.reason);
        assert_eq!(d.decision.allowed, !targets.is_empty(), "{case}");
    }
}

#[test]
fn down_sync_to_one_cluster_explains_why_not() {
    let p = policy();
    let h = hub("m")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "cluster2, cluster1")
        .owner("cluster1")
        .build();
    let cases = [
        ("cluster2", Rule::DownSync, true),
        ("cluster1", Rule::DownSyncNotTarget, false),
        ("cluster3", Rule::DownSyncNotTarget, false),
        ("cluster9", Rule::UnknownCluster, false),
    ];
    for (cluster, rule, allowed) in cases {
        let d = down_sync_to(&p, &h, cluster);
        assert_eq!(
            (d.decision.rule, d.decision.allowed),
            (rule, allowed),
            "{cluster}"
        );
        assert_eq!(d.targets, ["cluster2"]);
    }
    let owner_reason = down_sync_to(&p, &h, "cluster1").decision.reason;
    assert!(
        owner_reason.contains("never goes back to its owner"),
        "{owner_reason}"
    );
    let blocked = sa_token(hub("m").annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "ALL")).build();
    assert_eq!(
        down_sync_to(&p, &blocked, "cluster2").decision.rule,
        Rule::BlockedType
    );
}

#[test]
fn a_removed_clusters_copies_stop_going_down() {
    let p = policy();
    let orphan = hub("repo")
        .owner("gone")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "ALL")
        .build();
    let d = down_sync(&p, &orphan);
    assert!(d.targets.is_empty());
    assert_eq!(d.decision.rule, Rule::OrphanedCopy);
    assert!(
        d.decision.reason.contains("cluster gone"),
        "{}",
        d.decision.reason
    );
    assert_eq!(
        down_sync_to(&p, &orphan, "cluster1").decision.rule,
        Rule::OrphanedCopy
    );
    // Registered again: it goes down again.
    let own = hub("repo")
        .owner("cluster3")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "ALL")
        .build();
    assert_eq!(down_sync(&p, &own).targets, ["cluster1", "cluster2"]);
}
