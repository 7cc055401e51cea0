//! `secret-relay policy plan` held to what really happens: the plan of a policy
//! change over a live control plane, then the change applied, row by row, on every
//! flavor.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::collections::BTreeSet;

use kube::api::PostParams;
use secret_relay_testkit::{
    Flavor, OPT_IN, REPO_CREDS, StackOptions, TO_ALL, appears, disappears, on_all, secret,
};
use support::{POLICY, quick_revocation, world_with};

on_all!(the_plan_of_a_policy_change_is_what_the_change_does);

/// cluster2 becomes a prod cluster, and only `team=platform` from prod clusters is
/// admitted any more.
const NEW_POLICY: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
  - name: cluster2
    labels: { env: prod }
secretSources:
  - clusterSelector: env=prod
    labelSelector: team=platform
";

async fn the_plan_of_a_policy_change_is_what_the_change_does(flavor: Flavor) {
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
    let pp = PostParams::default();
    c1.secrets()
        .create(
            &pp,
            &secret(
                "repo",
                &[OPT_IN, REPO_CREDS],
                &[("akuity.io/managed-secret-allowed-clusters", "cluster2")],
                "r",
            ),
        )
        .await
        .unwrap();
    c2.secrets()
        .create(
            &pp,
            &secret("c2-creds", &[OPT_IN, REPO_CREDS], &[TO_ALL], "c"),
        )
        .await
        .unwrap();
    hub.create(
        &pp,
        &secret(
            "prod-only",
            &[],
            &[(
                "akuity.io/managed-secret-allowed-cluster-selector",
                "env=prod",
            )],
            "p",
        ),
    )
    .await
    .unwrap();
    hub.create(&pp, &secret("to-all", &[], &[TO_ALL], "a"))
        .await
        .unwrap();
    for (c, names) in [
        (c1, &["c2-creds", "prod-only", "to-all"][..]),
        (c2, &["repo", "to-all"][..]),
    ] {
        for name in names {
            c.status(name, "down", "synced", None).await;
        }
    }

    // The plan, from the CLI, as an operator runs it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("new.yaml");
    std::fs::write(&file, NEW_POLICY).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_secret-relay"))
        .args([
            "policy",
            "plan",
            "--output",
            "json",
            "--budget-percent",
            "100",
        ])
        .arg("--policy")
        .arg(&file)
        .arg("--kubeconfig")
        .arg(w.stack.cluster.kubeconfig())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let planned: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: BTreeSet<(String, String, String, String)> = planned["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("change"), s("secret"), s("cluster"), s("rule"))
        })
        .collect();
    let want: BTreeSet<(String, String, String, String)> = [
        ("down-copy-created", "prod-only", "cluster2", "down-sync"),
        ("down-copy-deleted", "c2-creds", "cluster1", "revoked"),
        ("down-copy-deleted", "repo", "cluster2", "revoked"),
        ("revoked", "c2-creds", "cluster2", "revoked"),
        ("revoked", "repo", "cluster1", "revoked"),
    ]
    .iter()
    .map(|(a, b, c, d)| ((*a).into(), (*b).into(), (*c).into(), (*d).into()))
    .collect();
    assert_eq!(rows, want, "{planned:#}");
    // The plan is only a plan: nothing changed.
    assert!(hub.get_opt("repo").await.unwrap().is_some());

    // The change, applied: every row happens.
    w.stack.set_policy(NEW_POLICY).await;
    disappears(&hub, "repo", "repo revoked").await;
    disappears(&hub, "c2-creds", "c2-creds revoked").await;
    disappears(&c2.secrets(), "repo", "repo's down copy on cluster2").await;
    disappears(&c1.secrets(), "c2-creds", "c2-creds' down copy on cluster1").await;
    appears(&c2.secrets(), "prod-only", "prod-only on cluster2", |_| {
        true
    })
    .await;
    // And nothing else: what the plan leaves alone stays.
    for (c, names) in [(c1, &["prod-only", "to-all"][..]), (c2, &["to-all"][..])] {
        for name in names {
            c.status(name, "down", "synced", None).await;
        }
    }
    for name in ["prod-only", "to-all"] {
        assert!(hub.get_opt(name).await.unwrap().is_some());
    }
}
