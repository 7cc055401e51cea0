//! The target annotations' problems and the nearest registered names.

use super::*;

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
