use k8s_openapi::api::core::v1::Secret;

use super::targets::edit_distance;
use super::*;
use crate::document::{BlockedBy, Policy};
use crate::keys;
use crate::testutil::{SecretBuilder, cluster_secret, hub, policy, secret};

/// (case, cluster, secret, hub copy, rule, allowed)
type UpCase = (
    &'static str,
    &'static str,
    Secret,
    Option<Secret>,
    Rule,
    bool,
);

const BLOCKED_RULES: [Rule; 3] = [Rule::BlockedName, Rule::BlockedType, Rule::BlockedLabel];

fn sa_token(b: SecretBuilder) -> SecretBuilder {
    b.ty("kubernetes.io/service-account-token")
}

fn cluster_type(b: SecretBuilder) -> SecretBuilder {
    b.label(keys::SECRET_TYPE_LABEL, "cluster")
}

#[test]
fn up_sync_follows_every_rule() {
    let p = policy();
    let s = |name: &str| cluster_secret(name).build();
    let cp_owned = |name: &str| hub(name).build();
    // (case, cluster, secret, hub, expected rule, allowed)
    let cases: Vec<UpCase> = vec![
        (
            "new hub copy",
            "cluster1",
            s("repo"),
            None,
            Rule::UpSyncNew,
            true,
        ),
        (
            "unregistered cluster",
            "cluster9",
            s("repo"),
            None,
            Rule::UnknownCluster,
            false,
        ),
        (
            "outside the agent namespace",
            "cluster1",
            cluster_secret("repo").build().tap_ns("default"),
            None,
            Rule::WrongNamespace,
            false,
        ),
        (
            "without the opt-in label",
            "cluster1",
            cluster_secret("repo")
                .without_label(keys::SECRET_SYNC_LABEL)
                .build(),
            None,
            Rule::NotOptedIn,
            false,
        ),
        (
            "opt-in label not true",
            "cluster1",
            cluster_secret("repo")
                .label(keys::SECRET_SYNC_LABEL, "false")
                .build(),
            None,
            Rule::NotOptedIn,
            false,
        ),
        (
            "blocked name argocd-secret",
            "cluster1",
            s("argocd-secret"),
            None,
            Rule::BlockedName,
            false,
        ),
        (
            "blocked name argocd-initial-admin-secret",
            "cluster1",
            s("argocd-initial-admin-secret"),
            None,
            Rule::BlockedName,
            false,
        ),
        (
            "extra blocked name",
            "cluster1",
            s("vault-token"),
            None,
            Rule::BlockedName,
            false,
        ),
        (
            "blocked type",
            "cluster1",
            sa_token(cluster_secret("tok")).build(),
            None,
            Rule::BlockedType,
            false,
        ),
        (
            "blocked label",
            "cluster1",
            cluster_type(cluster_secret("cl")).build(),
            None,
            Rule::BlockedLabel,
            false,
        ),
        (
            "existing hub copy blocked by type",
            "cluster1",
            s("repo"),
            Some(sa_token(hub("repo").owner("cluster1")).build()),
            Rule::BlockedType,
            false,
        ),
        (
            "existing hub copy blocked by label",
            "cluster1",
            s("repo"),
            Some(cluster_type(hub("repo")).build()),
            Rule::BlockedLabel,
            false,
        ),
        (
            "no source for these labels",
            "cluster1",
            cluster_secret("repo").label("team", "other").build(),
            None,
            Rule::NoMatchingSource,
            false,
        ),
        (
            "label-selector-only source from any cluster",
            "cluster2",
            cluster_secret("repo")
                .without_label("team")
                .label(keys::SECRET_TYPE_LABEL, "repository")
                .build(),
            None,
            Rule::UpSyncNew,
            true,
        ),
        (
            "cluster-selector-only source takes any labels",
            "cluster3",
            cluster_secret("anything").without_label("team").build(),
            None,
            Rule::UpSyncNew,
            true,
        ),
        (
            "own hub copy",
            "cluster1",
            s("repo"),
            Some(hub("repo").owner("cluster1").build()),
            Rule::UpSyncOwner,
            true,
        ),
        (
            "own adopted hub copy",
            "cluster1",
            s("argocd-notifications-secret"),
            Some(
                hub("argocd-notifications-secret")
                    .owner("cluster1")
                    .adopted()
                    .build(),
            ),
            Rule::UpSyncOwner,
            true,
        ),
        (
            "hub copy of another cluster",
            "cluster1",
            s("repo"),
            Some(hub("repo").owner("cluster2").build()),
            Rule::OwnedByOtherCluster,
            false,
        ),
        (
            "control-plane secret not adoptable",
            "cluster1",
            s("repo"),
            Some(cp_owned("repo")),
            Rule::OwnedByControlPlane,
            false,
        ),
        (
            "hub copy whose owner label is the bare cluster name",
            "cluster1",
            s("repo"),
            Some(hub("repo").label(keys::OWNER_LABEL, "cluster1").build()),
            Rule::InvalidOwner,
            false,
        ),
        (
            "hub copy of an unregistered cluster",
            "cluster1",
            s("repo"),
            Some(hub("repo").owner("cluster9").build()),
            Rule::OwnedByOtherCluster,
            false,
        ),
    ];
    for (case, cluster, secret, hub, rule, allowed) in cases {
        let d = up_sync(&p, cluster, &secret, hub.as_ref());
        assert_eq!(
            d,
            up_sync_full_scan(&p, cluster, &secret, hub.as_ref()),
            "{case}"
        );
        assert_eq!((d.rule, d.allowed), (rule, allowed), "{case}: {}", d.reason);
        assert!(!d.reason.contains("s3cr3t"), "{case}: reason leaks data");
    }
}

trait TapNs {
    fn tap_ns(self, ns: &str) -> Self;
}

impl TapNs for Secret {
    fn tap_ns(mut self, ns: &str) -> Self {
        self.metadata.namespace = Some(ns.to_owned());
        self
    }
}

#[test]
fn each_adoptable_name_is_adopted_and_returned_on_release() {
    let p = policy();
    for name in ADOPTABLE_NAMES {
        let s = cluster_secret(name).build();
        let cp_owned = hub(name).build();
        let d = up_sync(&p, "cluster1", &s, Some(&cp_owned));
        assert_eq!(
            (d.rule, d.allowed),
            (Rule::Adopt, true),
            "{name}: {}",
            d.reason
        );

        let adopted = hub(name).owner("cluster1").adopted().build();
        let r = release(&p, "cluster1", &adopted);
        assert_eq!(r.decision.rule, Rule::ReleaseReturn, "{name}");
        assert!(r.decision.allowed);
        assert_eq!(r.action, Some(ReleaseAction::ReturnToControlPlane));

        // Another cluster can neither adopt it nor release it meanwhile.
        let d = up_sync(&p, "cluster2", &s, Some(&adopted));
        assert_eq!(d.rule, Rule::OwnedByOtherCluster, "{name}");
        let r = release(&p, "cluster2", &adopted);
        assert_eq!((r.decision.rule, r.action), (Rule::ReleaseNotOwner, None));
    }
    assert!(!is_adoptable("argocd-secret"));
    assert!(!is_adoptable("repo"));
}

#[test]
fn release_follows_every_rule() {
    let p = policy();
    // (case, cluster, hub, rule, action)
    let cases: Vec<(&str, &str, Secret, Rule, Option<ReleaseAction>)> = vec![
        (
            "copy the cluster created",
            "cluster1",
            hub("repo").owner("cluster1").build(),
            Rule::ReleaseDelete,
            Some(ReleaseAction::Delete),
        ),
        (
            "adopted annotation on a name that is not adoptable",
            "cluster1",
            hub("repo").owner("cluster1").adopted().build(),
            Rule::ReleaseDelete,
            Some(ReleaseAction::Delete),
        ),
        (
            "adoptable name the cluster created itself",
            "cluster1",
            hub("application-set-secret").owner("cluster1").build(),
            Rule::ReleaseDelete,
            Some(ReleaseAction::Delete),
        ),
        (
            "copy of another cluster",
            "cluster1",
            hub("repo").owner("cluster2").build(),
            Rule::ReleaseNotOwner,
            None,
        ),
        (
            "control-plane secret",
            "cluster1",
            hub("application-set-secret").build(),
            Rule::ReleaseNotOwner,
            None,
        ),
        (
            "unregistered cluster",
            "cluster9",
            hub("repo").owner("cluster9").build(),
            Rule::UnknownCluster,
            None,
        ),
        (
            "its copy became blocked (extraBlocked grew)",
            "cluster1",
            hub("vault-token").owner("cluster1").build(),
            Rule::ReleaseDelete,
            Some(ReleaseAction::Delete),
        ),
        (
            "its adopted secret became blocked",
            "cluster1",
            hub("argocd-image-updater-secret")
                .label("vault", "1")
                .owner("cluster1")
                .adopted()
                .build(),
            Rule::ReleaseReturn,
            Some(ReleaseAction::ReturnToControlPlane),
        ),
        (
            "blocked copy of another cluster",
            "cluster1",
            cluster_type(hub("repo").owner("cluster2")).build(),
            Rule::BlockedLabel,
            None,
        ),
        (
            "owner label without the cluster. prefix",
            "cluster1",
            hub("repo").label(keys::OWNER_LABEL, "cluster1").build(),
            Rule::InvalidOwner,
            None,
        ),
        (
            "adopted annotation with an invalid owner",
            "cluster1",
            hub("application-set-secret")
                .label(keys::OWNER_LABEL, "cluster1")
                .adopted()
                .build(),
            Rule::InvalidOwner,
            None,
        ),
        (
            "not in the control-plane namespace",
            "cluster1",
            secret("default", "repo").owner("cluster1").build(),
            Rule::WrongNamespace,
            None,
        ),
    ];
    for (case, cluster, h, rule, action) in cases {
        let r = release(&p, cluster, &h);
        assert_eq!(
            (r.decision.rule, r.action),
            (rule, action),
            "{case}: {}",
            r.decision.reason
        );
        assert_eq!(r.decision.allowed, action.is_some(), "{case}");
    }
}

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
fn annotation_problems_are_named_and_blank_is_not_absent() {
    let p = policy();
    let both_bad = hub("m")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "cluster2")
        .annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "env in (")
        .build();
    let d = down_sync(&p, &both_bad);
    assert_eq!(d.targets, ["cluster2"]);
    assert!(
        d.decision.reason.contains("does not parse"),
        "{}",
        d.decision.reason
    );
    assert_eq!(down_sync_problems(&p, &both_bad).len(), 1);
    // The invalid selector is named when asking about a cluster it would not add.
    let r = down_sync_to(&p, &both_bad, "cluster1").decision;
    assert_eq!(r.rule, Rule::DownSyncNotTarget);
    assert!(r.reason.contains("does not parse"), "{}", r.reason);

    let blank_sel = hub("m")
        .annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "")
        .build();
    let d = down_sync(&p, &blank_sel).decision;
    assert!(d.reason.contains("is blank"), "{}", d.reason);
    assert!(!d.reason.contains("neither"), "{}", d.reason);
    let blank_list = hub("m")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "  ")
        .build();
    let d = down_sync(&p, &blank_list).decision;
    assert!(
        d.reason.contains("allowed-clusters is blank"),
        "{}",
        d.reason
    );
    let absent = down_sync(&p, &hub("m").build()).decision;
    assert!(absent.reason.contains("neither"), "{}", absent.reason);
    assert!(down_sync_problems(&p, &hub("m").build()).is_empty());
}

#[test]
fn an_unregistered_name_in_allowed_clusters_is_a_problem_with_the_nearest_registered_name() {
    let p = policy();
    let typo = hub("m")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "cluster1, clsuter2")
        .build();
    let problems = down_sync_problems(&p, &typo);
    assert_eq!(
        problems,
        [
            "the annotation akuity.io/managed-secret-allowed-clusters names clsuter2 (did you mean cluster2?), which is not a registered cluster, so nothing goes there: fix the name or register the cluster"
        ]
    );
    // A warning, not a denial: the registered name still gets its copy.
    let d = down_sync(&p, &typo);
    assert_eq!(d.targets, ["cluster1"]);
    assert_eq!(d.decision.rule, Rule::DownSync);
    assert!(d.decision.allowed);
    assert!(
        d.decision.reason.contains("; but the annotation akuity.io/managed-secret-allowed-clusters names clsuter2 (did you mean cluster2?)"),
        "{}",
        d.decision.reason
    );
    // Asking about the cluster the typo meant names the typo.
    let to = down_sync_to(&p, &typo, "cluster2").decision;
    assert_eq!(to.rule, Rule::DownSyncNotTarget);
    assert!(
        to.reason.contains("did you mean cluster2?"),
        "{}",
        to.reason
    );
}

#[test]
fn only_unregistered_names_go_nowhere_and_keep_the_no_targets_rule() {
    let p = policy();
    let h = hub("m")
        .annotation(
            keys::ALLOWED_CLUSTERS_ANNOTATION,
            "clsuter2,prod-eu,CLUSTER3,all",
        )
        .build();
    let d = down_sync(&p, &h);
    assert!(d.targets.is_empty());
    assert_eq!(d.decision.rule, Rule::NoTargets);
    let problems = down_sync_problems(&p, &h);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0],
        "the annotation akuity.io/managed-secret-allowed-clusters names clsuter2 (did you mean cluster2?), prod-eu, CLUSTER3 (did you mean cluster3?) and 1 more, which are not registered clusters, so nothing goes there: fix the name or register the cluster"
    );
    assert!(
        d.decision.reason.contains(&problems[0]),
        "{}",
        d.decision.reason
    );

    // Lowercase all is a name, not ALL; the hint says so.
    let all = hub("m")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "all")
        .build();
    assert!(
        down_sync_problems(&p, &all)[0].contains("names all (did you mean ALL?)"),
        "{:?}",
        down_sync_problems(&p, &all)
    );
    // A name far from every registered one gets no guess, and a repeated
    // typo is named once.
    let far = hub("m")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "staging, staging")
        .build();
    assert_eq!(
        down_sync_problems(&p, &far),
        [
            "the annotation akuity.io/managed-secret-allowed-clusters names staging, which is not a registered cluster, so nothing goes there: fix the name or register the cluster"
        ]
    );
    // A name that is not plain text is quoted, so the problem stays one line.
    let odd = hub("m")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "a\nb")
        .build();
    assert!(
        down_sync_problems(&p, &odd)[0].contains(r#"names "a\nb""#),
        "{:?}",
        down_sync_problems(&p, &odd)
    );
}

#[test]
fn all_and_registered_names_are_no_problem() {
    let p = policy();
    for value in [
        "ALL",
        "cluster1",
        " cluster1 , cluster2,cluster3 ",
        "cluster2,ALL",
    ] {
        let h = hub("m")
            .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, value)
            .build();
        assert!(down_sync_problems(&p, &h).is_empty(), "{value}");
        assert!(
            !down_sync(&p, &h).decision.reason.contains("but"),
            "{value}"
        );
    }
    // ALL among typos sends everywhere; the list is ALL, not names.
    let h = hub("m")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "clsuter2,ALL")
        .build();
    assert!(down_sync_problems(&p, &h).is_empty());
}

#[test]
fn edit_distance_counts_a_swap_as_one_edit() {
    let d = |a: &str, b: &str| {
        edit_distance(
            &a.chars().collect::<Vec<_>>(),
            &b.chars().collect::<Vec<_>>(),
        )
    };
    assert_eq!(d("clsuter2", "cluster2"), 1);
    assert_eq!(d("cluster", "cluster2"), 1);
    assert_eq!(d("cluster2", "cluster2"), 0);
    assert_eq!(d("", "abc"), 3);
    assert_eq!(d("kitten", "sitting"), 3);
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
fn owner_comes_from_the_owner_label() {
    assert_eq!(owner(&hub("x").build()), Owner::ControlPlane);
    assert_eq!(
        owner(&hub("x").owner("c1").build()),
        Owner::Cluster("c1".into())
    );
    assert_eq!(
        owner(&hub("x").label(keys::OWNER_LABEL, "control-plane").build()),
        Owner::ControlPlane
    );
    // Any other value is an owner no cluster matches: it locks rather than opens.
    let long = format!("cluster.{}", "a".repeat(56));
    for v in [
        "cluster.",
        "cluster1",
        "cluster.Bad_Name",
        "Cluster.c1",
        "cluster.c1 ",
        "control-plane ",
        "",
        long.as_str(),
    ] {
        assert_eq!(
            owner(&hub("x").label(keys::OWNER_LABEL, v).build()),
            Owner::Invalid(v.into()),
            "{v:?}"
        );
    }
    assert_eq!(
        owner(&hub("x").owner(&"a".repeat(55)).build()),
        Owner::Cluster("a".repeat(55))
    );
    assert_eq!(Owner::Cluster("c1".into()).label_value(), "cluster.c1");
    assert_eq!(Owner::Invalid("cluster1".into()).label_value(), "cluster1");
}

#[test]
fn adopted_means_a_cluster_owned_adoptable_secret_marked_adopted() {
    let name = "argocd-notifications-secret";
    let cases = [
        (hub(name).owner("cluster1").adopted(), true),
        (hub(name).owner("cluster9").adopted(), true),
        (hub(name).owner("cluster1"), false),
        (hub(name).adopted(), false),
        (
            hub(name)
                .label(keys::OWNER_LABEL, "control-plane")
                .adopted(),
            false,
        ),
        (
            hub(name).label(keys::OWNER_LABEL, "cluster1").adopted(),
            false,
        ),
        (hub("repo").owner("cluster1").adopted(), false),
        (
            hub(name)
                .owner("cluster1")
                .annotation(keys::ADOPTED_ANNOTATION, "True"),
            false,
        ),
    ];
    for (i, (b, want)) in cases.into_iter().enumerate() {
        assert_eq!(is_adopted(&b.build()), want, "case {i}");
    }
}

#[test]
fn reclaim_is_the_control_planes_way_out() {
    let p = policy();
    // (case, hub, rule, action)
    let cases: Vec<(&str, Secret, Rule, Option<ReleaseAction>)> = vec![
        (
            "copy of an unregistered cluster",
            hub("repo").owner("cluster9").build(),
            Rule::OrphanedOwner,
            Some(ReleaseAction::Delete),
        ),
        (
            "adopted secret of an unregistered cluster",
            hub("application-set-secret")
                .owner("cluster9")
                .adopted()
                .build(),
            Rule::OrphanedOwner,
            Some(ReleaseAction::ReturnToControlPlane),
        ),
        (
            "invalid owner label",
            hub("repo").label(keys::OWNER_LABEL, "cluster1").build(),
            Rule::OrphanedOwner,
            Some(ReleaseAction::Delete),
        ),
        (
            "copy of a registered cluster",
            hub("repo")
                .owner("cluster1")
                .label("team", "my-team")
                .build(),
            Rule::OwnershipLock,
            None,
        ),
        (
            "copy of a registered cluster the policy no longer admits",
            hub("repo").owner("cluster1").label("team", "other").build(),
            Rule::Revoked,
            Some(ReleaseAction::Delete),
        ),
        (
            "control-plane secret",
            hub("repo").build(),
            Rule::ControlPlaneWrite,
            None,
        ),
        (
            "not in the control-plane namespace",
            secret("default", "repo").owner("cluster9").build(),
            Rule::WrongNamespace,
            None,
        ),
    ];
    for (case, h, rule, action) in cases {
        let r = reclaim(&p, &h);
        assert_eq!(
            (r.decision.rule, r.action),
            (rule, action),
            "{case}: {}",
            r.decision.reason
        );
        assert_eq!(r.decision.allowed, rule.allows(), "{case}");
    }
    // A release by the removed cluster points at the way out.
    let r = release(&p, "cluster9", &hub("repo").owner("cluster9").build());
    assert_eq!(r.decision.rule, Rule::UnknownCluster);
    assert!(
        r.decision.reason.contains("orphaned-owner"),
        "{}",
        r.decision.reason
    );
}

#[test]
fn digest_counts_string_data_like_data_and_never_shows_values() {
    let d = digest(&secret("a", "s").data("k", b"v1").build());
    assert!(d.starts_with("sha256:") && d.len() == 7 + 64, "{d}");
    assert_eq!(d, digest(&secret("a", "s").string_data("k", "v1").build()));
    // stringData overwrites data, like the API server merges it.
    assert_eq!(
        d,
        digest(
            &secret("a", "s")
                .data("k", b"old")
                .string_data("k", "v1")
                .build()
        )
    );
    assert_ne!(d, digest(&secret("a", "s").data("k", b"v2").build()));
    assert_ne!(d, digest(&secret("a", "s").data("k2", b"v1").build()));
    // Length prefixes keep key/value boundaries apart.
    assert_ne!(
        digest(&secret("a", "s").data("ab", b"c").build()),
        digest(&secret("a", "s").data("a", b"bc").build())
    );
    // Metadata does not count.
    assert_eq!(
        d,
        digest(&secret("b", "t").label("x", "y").data("k", b"v1").build())
    );
    assert_ne!(digest(&secret("a", "s").build()), d);
}

#[test]
fn a_source_marker_names_the_hub_version_and_nothing_of_its_values() {
    let with = |uid: Option<&str>, rv: Option<&str>, value: &[u8]| {
        let mut s = hub("repo").data("k", value).build();
        s.metadata.uid = uid.map(str::to_owned);
        s.metadata.resource_version = rv.map(str::to_owned);
        s
    };
    let a = with(Some("u-1"), Some("7"), b"hunter2");
    assert_eq!(source_marker(&a).as_deref(), Some("u-1/7"));
    // The values do not count; the version does.
    assert_eq!(
        source_marker(&a),
        source_marker(&with(Some("u-1"), Some("7"), b"other"))
    );
    assert_ne!(
        source_marker(&a),
        source_marker(&with(Some("u-1"), Some("8"), b"hunter2"))
    );
    assert_ne!(
        source_marker(&a),
        source_marker(&with(Some("u-2"), Some("7"), b"hunter2"))
    );
    assert_eq!(source_marker(&with(None, Some("7"), b"x")), None);
    assert_eq!(source_marker(&with(Some("u-1"), Some(""), b"x")), None);
}

#[test]
fn rule_ids_are_stable_kebab_case_and_serialize_as_strings() {
    let d = Decision::deny(Rule::OwnershipLock, "why");
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"allowed": false, "rule": "ownership-lock", "reason": "why"})
    );
    assert_eq!(
        serde_json::to_value(ReleaseAction::ReturnToControlPlane).unwrap(),
        "return-to-control-plane"
    );
    assert_eq!(
        serde_json::to_value(ReleaseAction::Delete).unwrap(),
        "delete"
    );
    assert_eq!(d.to_string(), "denied (ownership-lock): why");
    for r in [
        Rule::BlockedName,
        Rule::UpSyncNew,
        Rule::DownSyncNotTarget,
        Rule::OwnerLabelForged,
    ] {
        assert!(
            r.as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-')
        );
    }
    assert!(BLOCKED_RULES.contains(&Rule::for_blocked(&BlockedBy::Name("x".into()))));
}

#[test]
fn every_rule_id_is_distinct_and_documented_with_its_one_outcome() {
    let mut seen = std::collections::BTreeSet::new();
    for r in Rule::ALL {
        assert!(seen.insert(r.as_str()), "duplicate id {r}");
    }
    // The README's rule table lists every id once, with the outcome `allows` gives.
    let readme = include_str!("../../README.md");
    let table = readme
        .split("## Rule ids")
        .nth(1)
        .expect("a Rule ids section")
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2);
    let mut documented = std::collections::BTreeMap::new();
    for row in table {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let allowed = match cells[2] {
            "yes" => true,
            "no" => false,
            other => panic!("allowed column {other:?} in {row}"),
        };
        for id in cells[1].split('`').skip(1).step_by(2) {
            assert!(
                documented.insert(id.to_owned(), allowed).is_none(),
                "{id} listed twice"
            );
        }
    }
    let ids: std::collections::BTreeMap<String, bool> = Rule::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), r.allows()))
        .collect();
    assert_eq!(documented, ids);
}

#[test]
fn a_rule_reads_back_from_its_id_and_only_hub_dependent_denials_wait_on_the_hub() {
    for r in Rule::ALL {
        assert_eq!(Rule::from_id(r.as_str()), Some(r));
        // Only a denial can be waiting for its cause to go away.
        assert!(!(r.depends_on_hub() && r.allows()), "{r}");
    }
    assert_eq!(Rule::from_id("no-such-rule"), None);
    assert!(Rule::OwnedByOtherCluster.depends_on_hub());
    assert!(Rule::NameTaken.depends_on_hub());
    // A change of the Secret or the policy turns these around, not the hub.
    assert!(!Rule::NoMatchingSource.depends_on_hub());
    assert!(!Rule::BlockedName.depends_on_hub());
}

#[test]
fn a_copy_the_policy_no_longer_admits_is_revoked_and_the_control_plane_may_delete_it() {
    let p = policy();
    let mine = || {
        hub("repo")
            .owner("cluster1")
            .label(keys::SECRET_SYNC_LABEL, "true")
    };
    // Admitted by the first Secret Source (env=prod, team in (my-team)).
    assert_eq!(
        revocation(&p, &mine().label("team", "my-team").build()),
        None
    );
    // No Secret Source admits it any more: released, deleted.
    let r = revocation(&p, &mine().label("team", "other").build()).unwrap();
    assert_eq!(r.decision.rule, Rule::Revoked);
    assert!(r.decision.allowed);
    assert!(
        r.decision.reason.contains("no-matching-source"),
        "{}",
        r.decision.reason
    );
    assert_eq!(r.action, Some(ReleaseAction::Delete));
    // Blocked since (extraBlocked grew): revoked too.
    let blocked = mine().label("team", "my-team").label("vault", "x").build();
    assert_eq!(
        revocation(&p, &blocked).map(|r| r.decision.rule),
        Some(Rule::Revoked)
    );
    // An adopted one returns.
    let adopted = hub("argocd-notifications-secret")
        .owner("cluster1")
        .adopted()
        .label(keys::SECRET_SYNC_LABEL, "true")
        .build();
    assert_eq!(
        revocation(&p, &adopted).and_then(|r| r.action),
        Some(ReleaseAction::ReturnToControlPlane)
    );
    // The control plane's own copies and orphans are not revoked: they are reclaimed.
    assert_eq!(revocation(&p, &hub("repo").build()), None);
    assert_eq!(revocation(&p, &hub("repo").owner("gone").build()), None);
    // The control plane's way out, shown by reclaim (and `explain`).
    let r = reclaim(&p, &mine().label("team", "other").build());
    assert_eq!(r.decision.rule, Rule::Revoked);
    assert_eq!(
        reclaim(&p, &mine().label("team", "my-team").build())
            .decision
            .rule,
        Rule::OwnershipLock
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

#[test]
fn up_sync_and_release_denials_name_no_other_cluster_and_quote_no_value() {
    // The relay returns these reasons to the cluster: none names another cluster,
    // quotes a value of the cluster's request, or anything of a hub copy it does
    // not own.
    const REQUEST: &str = "request-canary";
    const HIDDEN: &str = "hidden-canary";
    let p = policy();
    let theirs = || {
        hub("repo")
            .owner("cluster2")
            .label("team", HIDDEN)
            .annotation("note", HIDDEN)
    };
    let invalid = || hub("repo").label(keys::OWNER_LABEL, HIDDEN);
    let s = |b: SecretBuilder| b.build();
    // (case, decision, rule)
    let cases = [
        (
            "up-sync over another cluster's copy",
            up_sync(
                &p,
                "cluster1",
                &s(cluster_secret("repo")),
                Some(&s(theirs())),
            ),
            Rule::OwnedByOtherCluster,
        ),
        (
            "up-sync over a copy with an invalid owner",
            up_sync(
                &p,
                "cluster1",
                &s(cluster_secret("repo")),
                Some(&s(invalid())),
            ),
            Rule::InvalidOwner,
        ),
        (
            "up-sync over another cluster's blocked copy",
            up_sync(
                &p,
                "cluster1",
                &s(cluster_secret("repo")),
                Some(&s(theirs().label("vault", HIDDEN))),
            ),
            Rule::BlockedLabel,
        ),
        (
            "up-sync of a Secret with a label blocked whatever its value",
            up_sync(
                &p,
                "cluster1",
                &s(cluster_secret("repo").label("vault", REQUEST)),
                None,
            ),
            Rule::BlockedLabel,
        ),
        (
            "up-sync no Secret Source admits",
            up_sync(
                &p,
                "cluster1",
                &s(cluster_secret("repo").label("team", REQUEST)),
                None,
            ),
            Rule::NoMatchingSource,
        ),
        (
            "release of another cluster's copy",
            release(&p, "cluster1", &s(theirs())).decision,
            Rule::ReleaseNotOwner,
        ),
        (
            "release of a copy with an invalid owner",
            release(&p, "cluster1", &s(invalid())).decision,
            Rule::InvalidOwner,
        ),
        (
            "release of another cluster's blocked copy",
            release(&p, "cluster1", &s(theirs().label("vault", HIDDEN))).decision,
            Rule::BlockedLabel,
        ),
    ];
    for (case, d, rule) in cases {
        assert_eq!((d.rule, d.allowed), (rule, false), "{case}: {}", d.reason);
        for leak in ["cluster2", REQUEST, HIDDEN] {
            assert!(
                !d.reason.contains(leak),
                "{case}: the reason names {leak}: {}",
                d.reason
            );
        }
    }
    // The way forward is still there.
    let d = up_sync(
        &p,
        "cluster1",
        &s(cluster_secret("repo")),
        Some(&s(theirs())),
    );
    assert!(d.reason.contains("rename it here"), "{}", d.reason);
    assert!(d.reason.contains("secret-relay explain"), "{}", d.reason);
    let d = up_sync(
        &p,
        "cluster1",
        &s(cluster_secret("repo").label("team", REQUEST)),
        None,
    );
    assert!(
        d.reason.contains("{env=prod,my-label=cluster1}"),
        "{}",
        d.reason
    );
}

#[test]
fn the_owner_stamp_is_not_a_label_a_secret_source_judges() {
    // The relay judges a create without the owner label, a patch of its own copy
    // with it, and the webhook the stored copy with it: a Secret Source answers
    // them alike, whatever its label selector says of the stamp.
    let p = Policy::from_yaml(
        "clusters: [{ name: cluster1, labels: { env: prod } }]\nsecretSources: [{ clusterSelector: env=prod, labelSelector: \"!secret-relay.io/owner\" }]",
    )
    .unwrap();
    let plain = cluster_secret("repo").build();
    let stamped = cluster_secret("repo").owner("cluster1").build();
    let own = hub("repo").owner("cluster1").build();
    for (case, s, h) in [
        ("a create", &plain, None),
        ("an update", &plain, Some(&own)),
        ("a stamped update", &stamped, Some(&own)),
    ] {
        let d = up_sync(&p, "cluster1", s, h);
        assert!(d.allowed, "{case}: {d}");
        assert_eq!(d, up_sync_full_scan(&p, "cluster1", s, h), "{case}");
    }
}
