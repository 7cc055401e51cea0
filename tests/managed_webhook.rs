//! The managed-cluster webhook end to end: a managed cluster of the testkit runs the
//! webhook in managed-cluster mode beside its agent, registered from
//! `manifests/managed-cluster`, on sandboxes, on real kube-apiservers, and on outside
//! clusters when `E2E_KUBECONFIG` and `E2E_CLUSTER1_KUBECONFIG` name them.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use secret_relay_testkit::{
    AGENT_NAMESPACE, Flavor, Stack, StackOptions, TO_ALL, TestCluster, appears, disappears, label,
    on_all, password, secret, within,
};

const POLICY: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
";

on_all!(a_cluster_admin_cannot_change_a_down_copy_while_the_agent_keeps_it);

async fn a_cluster_admin_cannot_change_a_down_copy_while_the_agent_keeps_it(flavor: Flavor) {
    let stack = Stack::start(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let relay = stack.start_relay().await;
    let c1 = TestCluster::managed(flavor, "cluster1", &[AGENT_NAMESPACE]).await;
    let agent = stack
        .start_agent(
            "cluster1",
            &c1,
            relay.started.addr,
            Duration::from_secs(30),
            relay.shutdown.child_token(),
        )
        .await;
    let webhook = c1
        .managed_webhook()
        .expect("the agent's start installed the managed cluster's webhook");
    let admin = c1.client().await;

    // Outside the agent namespace nothing is judged: a Secret in `default`, even one
    // carrying the owner label (forged, in the agent namespace), is written and
    // deleted, and the webhook is not even called.
    let judged = reviews(webhook);
    let default: Api<Secret> = Api::namespaced(admin.clone(), "default");
    // An outside cluster may keep an earlier scenario's.
    let _ = default.delete("not-judged", &DeleteParams::default()).await;
    let local = secret(
        "not-judged",
        &[("secret-relay.io/owner", "control-plane")],
        &[],
        "local",
    );
    default
        .create(&PostParams::default(), &local)
        .await
        .unwrap();
    merge(&default, "not-judged", "edited").await.unwrap();
    assert_eq!(
        password(&default.get("not-judged").await.unwrap()),
        b"edited"
    );
    default
        .delete("not-judged", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(reviews(webhook), judged, "a write in default was judged");

    // The control plane sends a managed secret to every cluster: the agent writes the
    // down copy through the webhook.
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    hub.create(
        &PostParams::default(),
        &secret("shared", &[], &[TO_ALL], "v1"),
    )
    .await
    .unwrap();
    let copies: Api<Secret> = Api::namespaced(admin.clone(), AGENT_NAMESPACE);
    let copy = appears(&copies, "shared", "the down copy", |s| password(s) == b"v1").await;
    assert_eq!(label(&copy, "secret-relay.io/owner"), Some("control-plane"));
    assert!(
        reviews(webhook) > judged,
        "the agent's write was not judged by the managed cluster's webhook"
    );

    // While the agent runs, the cluster admin can neither edit nor delete it.
    let err = merge(&copies, "shared", "edited").await.unwrap_err();
    assert!(denied_by_ownership_lock(&err), "{err}");
    let err = copies
        .delete("shared", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(denied_by_ownership_lock(&err), "{err}");
    let kept = copies.get("shared").await.unwrap();
    assert_eq!(password(&kept), b"v1");
    assert_eq!(kept.metadata.uid, copy.metadata.uid);

    // The agent's own writes keep passing: the control plane rotates the value and
    // the down copy follows.
    hub.patch(
        "shared",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"stringData": {"password": "v2"}})),
    )
    .await
    .unwrap();
    appears(&copies, "shared", "the rotated down copy", |s| {
        password(s) == b"v2"
    })
    .await;
    assert!(agent.readiness().0, "{}", agent.readiness().1);

    // One policy everywhere: a break-glass user added on the control plane reaches the
    // managed cluster's webhook, which lets that user edit the copy (a use it logs);
    // the agent reverts the drift.
    let generation = webhook.policy_state().generation();
    stack
        .set_policy(&format!("{POLICY}breakGlass: {{ users: [oncall] }}\n"))
        .await;
    within(
        "the managed cluster's webhook to load the new policy",
        async {
            let mut rx = webhook.policy_state().subscribe_reloads();
            while webhook.policy_state().generation() == generation {
                rx.changed().await.unwrap();
            }
        },
    )
    .await;
    let oncall: Api<Secret> = Api::namespaced(
        c1.client_as("oncall", &["system:masters"]).await,
        AGENT_NAMESPACE,
    );
    merge(&oncall, "shared", "break-glass").await.unwrap();
    appears(&copies, "shared", "the reverted down copy", |s| {
        password(s) == b"v2"
    })
    .await;

    // Nor can the admin forge a down copy of their own.
    let err = copies
        .create(
            &PostParams::default(),
            &secret(
                "forged",
                &[("secret-relay.io/owner", "control-plane")],
                &[],
                "x",
            ),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("owner-label-forged"), "{err}");

    // When the control plane stops sending it, the agent deletes its copy.
    hub.delete("shared", &DeleteParams::default())
        .await
        .unwrap();
    disappears(&copies, "shared", "the down copy's deletion").await;
}

/// A merge patch of `name`'s `password` as `stringData`.
async fn merge(api: &Api<Secret>, name: &str, value: &str) -> Result<Secret, kube::Error> {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"stringData": {"password": value}})),
    )
    .await
}

/// Whether `err` is the webhook's denial with rule `ownership-lock`.
fn denied_by_ownership_lock(err: &kube::Error) -> bool {
    let text = err.to_string();
    text.contains("validate.secret-relay.io") && text.contains("rule ownership-lock")
}

/// How many AdmissionReviews `webhook` answered so far.
fn reviews(webhook: &secret_relay_webhook::AppState) -> u64 {
    webhook
        .admin()
        .encode_metrics()
        .lines()
        .filter(|l| l.starts_with("secret_relay_webhook_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}
