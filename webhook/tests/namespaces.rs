//! The guard covers the namespace it judges and no other: the webhook configurations
//! select the control-plane namespace only (`argocd`, or another through the README's
//! overlay), so an outage of the webhook blocks Secret writes there and nowhere else.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use secret_relay_testkit::{Flavor, Stack, StackOptions, on_both};

const POLICY: &str = "\
controlPlaneNamespace: hub
clusters:
  - name: cluster1
    labels: { env: prod }
secretSources:
  - clusterSelector: env=prod
";

on_both!(a_non_default_control_plane_namespace_is_guarded);
on_both!(a_stopped_webhook_closes_the_control_plane_namespace_only);

fn forged(name: &str) -> Secret {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"secret-relay.io/owner": "cluster.cluster1"}},
        "stringData": {"k": "v"},
    }))
    .unwrap()
}

async fn a_non_default_control_plane_namespace_is_guarded(flavor: Flavor) {
    let stack = Stack::start(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            control_plane_namespace: Some("hub".to_owned()),
            ..StackOptions::default()
        },
    )
    .await;
    let admin = stack.cluster.client().await;
    // A hand-set owner label in the policy's control-plane namespace: refused.
    let err = Api::<Secret>::namespaced(admin.clone(), "hub")
        .create(&PostParams::default(), &forged("forged"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("denied the request") && msg.contains("owner-label-forged"),
        "{msg}"
    );
    // argocd is no longer the control-plane namespace: the webhooks do not select it.
    Api::<Secret>::namespaced(admin.clone(), "argocd")
        .create(&PostParams::default(), &forged("elsewhere"))
        .await
        .unwrap();
    // A cluster's write into hub is stamped (the overlay moved the clusters' RBAC
    // there).
    let cluster1 = stack
        .cluster
        .client_as("secret-relay:cluster:cluster1", &["secret-relay:clusters"])
        .await;
    let mut copy = forged("repo");
    copy.metadata.labels = Some([("akuity.io/secret-sync".to_owned(), "true".to_owned())].into());
    let created = Api::<Secret>::namespaced(cluster1, "hub")
        .create(&PostParams::default(), &copy)
        .await
        .unwrap();
    assert_eq!(
        created
            .metadata
            .labels
            .unwrap()
            .get("secret-relay.io/owner")
            .map(String::as_str),
        Some("cluster.cluster1")
    );
}

/// With the webhook stopped and its configurations registered (failurePolicy Fail),
/// Secret writes outside the control-plane namespace go on, and those in it are refused.
async fn a_stopped_webhook_closes_the_control_plane_namespace_only(flavor: Flavor) {
    let stack = Stack::start(
        flavor,
        StackOptions {
            policy: POLICY.replace("controlPlaneNamespace: hub\n", ""),
            webhook: false,
            ..StackOptions::default()
        },
    )
    .await;
    let admin = stack.cluster.client().await;
    let plain = |name: &str| -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "stringData": {"k": "v"},
        }))
        .unwrap()
    };

    // default, as Helm or cert-manager would write there: create, update, delete.
    let default = Api::<Secret>::namespaced(admin.clone(), "default");
    let mut created = default
        .create(&PostParams::default(), &plain("release"))
        .await
        .unwrap();
    created.data = None;
    created.string_data = Some([("k".to_owned(), "w".to_owned())].into());
    default
        .replace("release", &PostParams::default(), &created)
        .await
        .unwrap();
    default
        .delete("release", &DeleteParams::default())
        .await
        .unwrap();

    // argocd: closed, and nothing is stored.
    let argocd = Api::<Secret>::namespaced(admin, "argocd");
    let err = argocd
        .create(&PostParams::default(), &plain("managed"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("failed calling webhook") && msg.contains("secret-relay.io"),
        "{msg}"
    );
    assert!(argocd.get_opt("managed").await.unwrap().is_none());
}
