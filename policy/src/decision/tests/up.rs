//! Up-sync: every rule in order, adoption, and what a denial may say.

use super::*;

// Long by design: a table, one row per case.
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

// Long by design: a table, one row per case.
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

#[test]
fn a_hub_copy_never_gets_what_never_crosses_from_a_cluster() {
    let p = policy();
    let copy = || hub("repo").owner("cluster1");
    let judged = |written: Secret, old: Option<Secret>| {
        uncarried_metadata(&p, "cluster1", "repo", &written, old.as_ref())
    };
    // What an agent pushes: carried keys and secret-relay's own stamps.
    assert_eq!(
        judged(
            copy()
                .label(keys::SECRET_TYPE_LABEL, "repository")
                .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "ALL")
                .annotation(keys::ADOPTED_ANNOTATION, "true")
                .build(),
            None
        ),
        None
    );
    for (what, written) in [
        (
            "tracking label",
            copy().label("app.kubernetes.io/instance", "argocd"),
        ),
        (
            "managed-by label",
            copy().label("app.kubernetes.io/managed-by", "Helm"),
        ),
        ("helm label", copy().label("helm.sh/chart", "x-1.0")),
        (
            "tracking annotation",
            copy().annotation("argocd.argoproj.io/tracking-id", "a"),
        ),
        (
            "helm annotation",
            copy().annotation("meta.helm.sh/release-name", "x"),
        ),
        ("finalizer", copy().finalizer("example.com/keep")),
        ("owner reference", copy().owner_reference("ConfigMap", "cm")),
    ] {
        let d = judged(written.build(), Some(copy().build()))
            .unwrap_or_else(|| panic!("{what} passed"));
        assert_eq!(d.rule, Rule::UncarriedMetadata, "{what}");
        assert!(!d.allowed, "{what}");
        // The reason names the key, never the value.
        for value in ["argocd", "Helm", "x-1.0", "{}"] {
            assert!(
                !d.reason.contains(&format!(": {value}")),
                "{what}: {}",
                d.reason
            );
        }
    }
    // kubectl's client-side apply through the relay keeps its record.
    let applied = copy()
        .annotation("kubectl.kubernetes.io/last-applied-configuration", "{}")
        .build();
    assert_eq!(judged(applied, None), None);
    // What the copy already had may stay (the API server's own, the GC's).
    let had = copy()
        .finalizer("foregroundDeletion")
        .owner_reference("ConfigMap", "cm")
        .build();
    assert_eq!(judged(had.clone(), Some(had.clone())), None);
    // The policy's stripMetadata counts as well.
    let strips = Policy::from_yaml(
        "clusters:\n  - name: cluster1\nstripMetadata:\n  annotations: [\"example.com/\"]\n",
    )
    .unwrap();
    let d = uncarried_metadata(
        &strips,
        "cluster1",
        "repo",
        &copy().annotation("example.com/team", "a").build(),
        None,
    );
    assert_eq!(d.map(|d| d.rule), Some(Rule::UncarriedMetadata));
}

#[test]
fn the_agents_own_certificate_secret_never_crosses() {
    use crate::document::AGENT_TLS_SECRET;
    let p = policy();
    // Opted in by mistake: its key never goes up.
    let up = up_sync(
        &p,
        "cluster1",
        &cluster_secret(AGENT_TLS_SECRET).build(),
        None,
    );
    assert_eq!((up.allowed, up.rule), (false, Rule::BlockedName));
    // A hub Secret of that name sent everywhere never becomes a down copy.
    let sent = hub(AGENT_TLS_SECRET)
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "ALL")
        .build();
    let down = down_sync_to(&p, &sent, "cluster2");
    assert!(!down.decision.allowed, "{}", down.decision.reason);
    assert_eq!(down.decision.rule, Rule::BlockedName);
}
