//! Release, reclaim and revocation.

use super::*;

// Long by design: a table, one row per case.
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
