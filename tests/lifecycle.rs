//! The lifecycle at the edges, end to end on every flavor: revocation when the policy
//! takes back what it allowed, a removed cluster, and deletions that wait for a
//! grace and stay within a budget.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::time::{Duration, Instant};

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use secret_relay_proxy::Limits;
use secret_relay_testkit::{
    Flavor, OPT_IN, REPO_CREDS, StackOptions, TO_ALL, appears, disappears, label, on_all, password,
    secret, test_deletion, within,
};
use support::{
    Managed, NOTIFICATIONS, POLICY, assert_event, quick_revocation, world, world_with,
    world_with_resync,
};

on_all!(
    a_policy_that_no_longer_admits_a_copy_revokes_it_and_the_agent_says_so,
    the_control_plane_may_delete_a_revoked_copy_before_the_relay_does,
    a_removed_clusters_copies_stop_going_down_and_its_agent_clears_its_own,
    a_wrong_policy_edit_fixed_within_the_grace_deletes_nothing,
    deletions_beyond_the_budget_are_held_until_confirmed,
    held_deletions_stay_held_as_the_window_slides_and_across_a_restart,
    a_down_copy_that_comes_from_another_party_now_is_written_over_and_said_loudly,
);

/// The same clusters with no Secret Source for prod clusters (cluster1).
const POLICY_WITHOUT_PROD: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
  - name: cluster2
    labels: { env: staging }
secretSources:
  - clusterSelector: env=staging
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
";

async fn a_policy_that_no_longer_admits_a_copy_revokes_it_and_the_agent_says_so(flavor: Flavor) {
    let w = world_with(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
        quick_revocation(),
    )
    .await;
    let c1 = w.cluster("cluster1");
    let c2 = w.cluster("cluster2");
    let hub = w.hub().await;
    c1.secrets()
        .create(
            &PostParams::default(),
            &secret(
                "repo",
                &[OPT_IN, REPO_CREDS],
                &[("akuity.io/managed-secret-allowed-clusters", "cluster2")],
                "v1",
            ),
        )
        .await
        .unwrap();
    // An adopted secret goes back the way a release returns it.
    hub.create(
        &PostParams::default(),
        &secret(
            "argocd-notifications-secret",
            &[("app.kubernetes.io/part-of", "argocd")],
            &[],
            "cp",
        ),
    )
    .await
    .unwrap();
    c1.secrets()
        .create(
            &PostParams::default(),
            &secret(
                "argocd-notifications-secret",
                &[OPT_IN, NOTIFICATIONS],
                &[],
                "c1",
            ),
        )
        .await
        .unwrap();
    appears(&hub, "repo", "the hub copy", |_| true).await;
    appears(&hub, "argocd-notifications-secret", "the adoption", |s| {
        label(s, "secret-relay.io/owner") == Some("cluster.cluster1")
    })
    .await;
    appears(&c2.secrets(), "repo", "cluster2's down copy", |_| true).await;
    c1.status("repo", "up", "synced", None).await;
    // The control plane takes back what it allowed cluster1.
    w.stack.set_policy(POLICY_WITHOUT_PROD).await;
    disappears(&hub, "repo", "the revoked hub copy").await;
    let back = appears(
        &hub,
        "argocd-notifications-secret",
        "the revoked adoption's return",
        |s| label(s, "secret-relay.io/owner").is_none(),
    )
    .await;
    assert_eq!(password(&back), b"c1");
    assert_eq!(label(&back, "app.kubernetes.io/part-of"), Some("argocd"));
    disappears(
        &c2.secrets(),
        "repo",
        "cluster2's down copy of the revoked copy",
    )
    .await;
    c1.status("repo", "up", "revoked", Some("no-matching-source"))
        .await;
    assert_event(&c1.cluster, "repo", "UpSyncRevoked").await;
    // A rotation on the cluster while it is revoked; admitting it again syncs the
    // current value, with no reapply.
    c1.secrets()
        .patch(
            "repo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"password": "v2"}})),
        )
        .await
        .unwrap();
    w.stack.set_policy(POLICY).await;
    let copy = appears(&hub, "repo", "the hub copy admitted again", |s| {
        label(s, "secret-relay.io/owner") == Some("cluster.cluster1")
    })
    .await;
    assert_eq!(password(&copy), b"v2");
}

async fn the_control_plane_may_delete_a_revoked_copy_before_the_relay_does(flavor: Flavor) {
    // The relay would wait an hour.
    let w = world_with(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
        Limits {
            revocation_grace: Duration::from_secs(3600),
            ..Limits::default()
        },
    )
    .await;
    let c1 = w.cluster("cluster1");
    let hub = w.hub().await;
    c1.secrets()
        .create(
            &PostParams::default(),
            &secret("repo", &[OPT_IN, REPO_CREDS], &[], "v1"),
        )
        .await
        .unwrap();
    appears(&hub, "repo", "the hub copy", |_| true).await;
    // Locked while admitted.
    let err = hub
        .delete("repo", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ownership-lock"), "{err}");
    w.stack.set_policy(POLICY_WITHOUT_PROD).await;
    // Once the webhook serves the new policy, the control plane's admin may delete it.
    within("the control plane's delete of the revoked copy", async {
        loop {
            match hub.delete("repo", &DeleteParams::default()).await {
                Ok(_) => return,
                Err(err) if err.to_string().contains("ownership-lock") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("{err}"),
            }
        }
    })
    .await;
    disappears(&hub, "repo", "the deleted revoked copy").await;
    c1.status("repo", "up", "revoked", Some("no-matching-source"))
        .await;
}

async fn a_removed_clusters_copies_stop_going_down_and_its_agent_clears_its_own(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let c1 = w.cluster("cluster1");
    let c2 = w.cluster("cluster2");
    let hub = w.hub().await;
    c2.secrets()
        .create(
            &PostParams::default(),
            &secret(
                "from-c2",
                &[OPT_IN, REPO_CREDS],
                &[("akuity.io/managed-secret-allowed-clusters", "cluster1")],
                "c2",
            ),
        )
        .await
        .unwrap();
    hub.create(
        &PostParams::default(),
        &secret("managed", &[], &[TO_ALL], "m"),
    )
    .await
    .unwrap();
    appears(
        &c1.secrets(),
        "from-c2",
        "cluster1's copy of cluster2's secret",
        |_| true,
    )
    .await;
    appears(&c2.secrets(), "managed", "cluster2's managed copy", |_| {
        true
    })
    .await;
    // cluster2 leaves the registry.
    w.stack
        .set_policy(
            "\
clusters:
  - name: cluster1
    labels: { env: prod }
secretSources:
  - clusterSelector: env=prod
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
",
        )
        .await;
    // Its copies stop going down, and leave the clusters that had them.
    disappears(
        &c1.secrets(),
        "from-c2",
        "the removed cluster's copy on cluster1",
    )
    .await;
    c1.status("managed", "down", "synced", None).await;
    // Its hub copy stays, orphaned, for the control plane to delete or take over.
    let orphan = hub.get("from-c2").await.unwrap();
    assert_eq!(
        label(&orphan, "secret-relay.io/owner"),
        Some("cluster.cluster2")
    );
    // Its agent, refused as unregistered for its whole grace, deletes its down copies;
    // its own Secret stays.
    disappears(&c2.secrets(), "managed", "the removed cluster's down copy").await;
    assert_eq!(password(&c2.secrets().get("from-c2").await.unwrap()), b"c2");
    // Visible in its readiness detail.
    within(
        "cluster2's agent to say it is refused as unregistered",
        async {
            let mut rx = c2.agent.subscribe();
            while !c2
                .agent
                .readiness()
                .1
                .contains("refused this cluster as unregistered")
            {
                rx.changed().await.unwrap();
            }
        },
    )
    .await;
}

/// cluster1 relabelled by mistake (`env: prd`), so the selector no longer matches it.
const POLICY_TYPO: &str = "\
clusters:
  - name: cluster1
    labels: { env: prd }
  - name: cluster2
    labels: { env: staging }
secretSources:
  - clusterSelector: env in (prod, staging)
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
";

/// The managed secrets the grace and budget scenarios send to prod clusters.
async fn send_to_prod(w: &support::World, names: &[&str]) {
    let hub = w.hub().await;
    for name in names {
        hub.create(
            &PostParams::default(),
            &secret(
                name,
                &[],
                &[(
                    "akuity.io/managed-secret-allowed-cluster-selector",
                    "env=prod",
                )],
                name,
            ),
        )
        .await
        .unwrap();
    }
    let c1 = w.cluster("cluster1");
    for name in names {
        c1.status(name, "down", "synced", None).await;
    }
}

async fn a_wrong_policy_edit_fixed_within_the_grace_deletes_nothing(flavor: Flavor) {
    let w = world_with(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            deletion: secret_relay_agent::Deletion {
                grace: Duration::from_secs(600),
                ..test_deletion()
            },
            ..StackOptions::default()
        },
        Limits::default(),
    )
    .await;
    send_to_prod(&w, &["prod-a", "prod-b"]).await;
    let c1 = w.cluster("cluster1");
    let before = c1.secrets().get("prod-a").await.unwrap().metadata.uid;
    w.stack.set_policy(POLICY_TYPO).await;
    c1.status("prod-a", "down", "leaving", None).await;
    c1.status("prod-b", "down", "leaving", None).await;
    // Fixed within the grace: the same copies are kept.
    w.stack.set_policy(POLICY).await;
    c1.status("prod-a", "down", "synced", None).await;
    c1.status("prod-b", "down", "synced", None).await;
    assert_eq!(
        c1.secrets().get("prod-a").await.unwrap().metadata.uid,
        before
    );
    assert!(c1.secrets().get_opt("prod-b").await.unwrap().is_some());
}

async fn deletions_beyond_the_budget_are_held_until_confirmed(flavor: Flavor) {
    let w = world_with(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            deletion: secret_relay_agent::Deletion {
                grace: Duration::ZERO,
                budget_percent: 20,
                budget_window: Duration::from_secs(600),
                ..test_deletion()
            },
            ..StackOptions::default()
        },
        Limits::default(),
    )
    .await;
    let names = ["b0", "b1", "b2", "b3", "b4"];
    send_to_prod(&w, &names).await;
    let c1 = w.cluster("cluster1");
    // One wrong edit takes all five away: a fifth of them (one) goes, the rest wait.
    w.stack.set_policy(POLICY_TYPO).await;
    let (deleted, held) = deleted_or_held(c1, &names).await;
    assert_eq!((deleted.len(), held.len()), (1, 4), "{deleted:?} {held:?}");
    assert!(c1.secrets().get_opt(deleted[0]).await.unwrap().is_none());
    let (_, detail) = c1.agent.readiness();
    assert!(detail.contains("4 down-copy deletions held"), "{detail}");
    assert_event(&c1.cluster, held[0], "DownCopyDeletionHeld").await;
    // A cluster admin confirms one: it goes, the others stay held.
    confirm(c1, held[0]).await;
    disappears(&c1.secrets(), held[0], "the confirmed deletion").await;
    for name in &held[1..] {
        assert!(c1.secrets().get_opt(name).await.unwrap().is_some());
        assert_eq!(c1.agent.status(name, "down").map(|s| s.0), Some("held"));
    }
}

async fn held_deletions_stay_held_as_the_window_slides_and_across_a_restart(flavor: Flavor) {
    // Long enough that the five copies surely leave within one window on a busy
    // machine (then exactly one is deleted), short enough to slide thrice.
    let window = Duration::from_secs(3);
    let mut w = world_with_resync(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            deletion: secret_relay_agent::Deletion {
                grace: Duration::ZERO,
                budget_percent: 20,
                budget_window: window,
                ..test_deletion()
            },
            ..StackOptions::default()
        },
        Limits::default(),
        // A full pass (each held copy's deletion weighed again) five times a second.
        Duration::from_millis(200),
    )
    .await;
    let names = ["h0", "h1", "h2", "h3", "h4"];
    send_to_prod(&w, &names).await;
    w.stack.set_policy(POLICY_TYPO).await;
    let (deleted, held) = deleted_or_held(w.cluster("cluster1"), &names).await;
    // Seen after the one deletion: from here, each window frees budget again.
    let seen = Instant::now();
    assert_eq!((deleted.len(), held.len()), (1, 4), "{deleted:?} {held:?}");
    let c1 = w.cluster("cluster1");
    for name in &held {
        appears(&c1.secrets(), name, "the held marker", |s| {
            held_marker(s) == Some("true")
        })
        .await;
    }
    // The window slides three times over, and the agent weighs each held copy pass
    // after pass: never deleted for it.
    passes_after(c1, seen + 3 * window, 3).await;
    assert!(c1.secrets().get_opt(deleted[0]).await.unwrap().is_none());
    assert_held(c1, &held).await;
    // A new agent knows only what it reads: the marker holds them.
    let c1 = w.restart_agent("cluster1").await;
    for name in &held {
        c1.status(name, "down", "held", None).await;
    }
    passes_after(c1, Instant::now() + 2 * window, 3).await;
    assert_held(c1, &held).await;
    let (_, detail) = c1.agent.readiness();
    assert!(detail.contains("4 down-copy deletions held"), "{detail}");
    // A cluster admin confirms one: it goes, the others stay held.
    confirm(c1, held[0]).await;
    disappears(&c1.secrets(), held[0], "the confirmed deletion").await;
    assert_held(c1, &held[1..]).await;
}

/// Waits until each of `names` is deleted or held by `c`'s agent: (deleted, held).
async fn deleted_or_held<'a>(c: &Managed, names: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    within("every copy deleted or held", async {
        let mut rx = c.agent.subscribe();
        loop {
            let mut deleted = Vec::new();
            let mut held = Vec::new();
            for name in names {
                match c.agent.status(name, "down") {
                    None => deleted.push(*name),
                    Some(("held", _)) => held.push(*name),
                    _ => {}
                }
            }
            if deleted.len() + held.len() == names.len() {
                return (deleted, held);
            }
            rx.changed().await.unwrap();
        }
    })
    .await
}

/// Waits until `c`'s agent has done `n` full passes, each ended after `after`: all
/// but the first also began after it.
async fn passes_after(c: &Managed, after: Instant, n: u32) {
    within(&format!("{n} full passes of {}'s agent", c.name), async {
        let mut passes = c.agent.passes();
        let mut counted = 0;
        while counted < n {
            passes.changed().await.unwrap();
            if Instant::now() >= after {
                counted += 1;
            }
        }
    })
    .await;
}

/// Asserts each of `names` is still there, marked held, and reported held.
async fn assert_held(c: &Managed, names: &[&str]) {
    for name in names {
        let copy = c.secrets().get_opt(name).await.unwrap();
        let copy = copy.unwrap_or_else(|| panic!("{name} was deleted while held"));
        assert_eq!(held_marker(&copy), Some("true"), "{name}");
        assert_eq!(
            c.agent.status(name, "down").map(|s| s.0),
            Some("held"),
            "{name}"
        );
    }
}

fn held_marker(s: &k8s_openapi::api::core::v1::Secret) -> Option<&str> {
    s.metadata
        .annotations
        .as_ref()?
        .get("secret-relay.io/deletion-held")
        .map(String::as_str)
}

/// A cluster admin's confirmation of a held deletion: the one annotation.
async fn confirm(c: &Managed, name: &str) {
    c.secrets()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"secret-relay.io/confirm-deletion": "true"}}
            })),
        )
        .await
        .unwrap();
}

/// The control plane's Secret `shared` goes to cluster2 and leaves (deleted); within
/// the grace, cluster1 sends a Secret of the same name to cluster2. cluster2's copy
/// is written over with cluster1's, and a Warning Event says whose data it now is.
async fn a_down_copy_that_comes_from_another_party_now_is_written_over_and_said_loudly(
    flavor: Flavor,
) {
    let w = world_with(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            deletion: secret_relay_agent::Deletion {
                grace: Duration::from_secs(600),
                ..test_deletion()
            },
            ..StackOptions::default()
        },
        Limits::default(),
    )
    .await;
    let to_cluster2 = ("akuity.io/managed-secret-allowed-clusters", "cluster2");
    let hub = w.hub().await;
    hub.create(
        &PostParams::default(),
        &secret("shared", &[], &[to_cluster2], "from-the-control-plane"),
    )
    .await
    .unwrap();
    let c2 = w.cluster("cluster2");
    appears(&c2.secrets(), "shared", "the control plane's copy", |s| {
        label(s, "secret-relay.io/owner") == Some("control-plane")
    })
    .await;
    hub.delete("shared", &DeleteParams::default())
        .await
        .unwrap();
    c2.status("shared", "down", "leaving", None).await;
    w.cluster("cluster1")
        .secrets()
        .create(
            &PostParams::default(),
            &secret(
                "shared",
                &[OPT_IN, REPO_CREDS],
                &[to_cluster2],
                "from-cluster1",
            ),
        )
        .await
        .unwrap();
    let now = appears(&c2.secrets(), "shared", "cluster1's copy", |s| {
        label(s, "secret-relay.io/owner") == Some("cluster.cluster1")
    })
    .await;
    assert_eq!(password(&now), b"from-cluster1");
    assert_event(&c2.cluster, "shared", "DownCopyOriginChanged").await;
}
