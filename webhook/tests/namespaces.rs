//! The guard follows the policy's namespaces: the webhook configurations select every
//! namespace but Kubernetes' own, and the webhook decides by `controlPlaneNamespace`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
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
            ..StackOptions::default()
        },
    )
    .await;
    stack.cluster.create_namespace("hub").await;
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
    // argocd is no longer the control-plane namespace: out of the guard's scope.
    Api::<Secret>::namespaced(admin.clone(), "argocd")
        .create(&PostParams::default(), &forged("elsewhere"))
        .await
        .unwrap();
    // A cluster's write into hub is stamped. On the real server the cluster identity
    // needs RBAC in hub: what manifests/control-plane/cluster-access.yaml grants in
    // argocd, moved to the policy's namespace.
    if flavor == Flavor::Real {
        let kubectl = secret_relay_testkit::kubectl().unwrap();
        for args in [
            &[
                "create",
                "role",
                "secret-relay-clusters",
                "-n",
                "hub",
                "--verb=get,list,watch,create,update,patch,delete",
                "--resource=secrets",
            ][..],
            &[
                "create",
                "rolebinding",
                "secret-relay-clusters",
                "-n",
                "hub",
                "--role=secret-relay-clusters",
                "--group=secret-relay:clusters",
            ][..],
        ] {
            let out = stack.cluster.kubectl(&kubectl, args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
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
