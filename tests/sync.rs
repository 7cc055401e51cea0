//! The three sync directions end to end, one test per statement of DESIGN.md: a
//! control plane with the webhook and the relay, managed clusters with agents, on
//! sandboxes, on real kube-apiservers, and on outside clusters when `E2E_KUBECONFIG`,
//! `E2E_CLUSTER1_KUBECONFIG` and `E2E_CLUSTER2_KUBECONFIG` name them (see the
//! testkit's documentation: they must be clusters made for testing).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use secret_relay_testkit::{
    Flavor, OPT_IN, REPO_CREDS, TO_ALL, appears, disappears, label, on_all, password, secret,
    secret_with_data,
};
use support::{NOTIFICATIONS, POLICY, assert_event, world};

on_all!(
    repo_credentials_from_a_cluster_appear_in_argocd,
    blocked_secrets_never_move,
    adopting_an_adoptable_secret_locks_control_plane_edits_and_a_release_returns_control,
    a_managed_secret_reaches_all_clusters_or_only_those_a_selector_picks,
    cluster_to_cluster_works_through_both_annotations,
    a_secret_created_before_its_source_syncs_after_the_policy_change,
    deletes_propagate_up_and_down,
    drift_is_reverted_and_conflicts_are_kept,
    a_denial_that_waits_on_the_hub_lands_once_the_other_cluster_releases,
    a_new_type_or_an_immutable_change_replaces_the_copies_both_ways,
    tool_ownership_metadata_never_crosses,
    large_binary_and_docker_config_secrets_sync_whole,
    copies_carry_no_function_of_their_values,
);

async fn repo_credentials_from_a_cluster_appear_in_argocd(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let c1 = w.cluster("cluster1");
    c1.secrets()
        .create(
            &PostParams::default(),
            &secret("repo", &[OPT_IN, REPO_CREDS], &[], "hunter2"),
        )
        .await
        .unwrap();
    let hub = w.hub().await;
    let copy = appears(&hub, "repo", "the hub copy", |s| {
        label(s, "secret-relay.io/owner") == Some("cluster.cluster1")
    })
    .await;
    assert_eq!(password(&copy), b"hunter2");
    c1.status("repo", "up", "synced", None).await;
    // An update is pushed (its data changed: the agent compares values in memory).
    c1.secrets()
        .patch(
            "repo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"password": "rotated"}})),
        )
        .await
        .unwrap();
    appears(&hub, "repo", "the rotated hub copy", |s| {
        password(s) == b"rotated"
    })
    .await;
    assert_event(&c1.cluster, "repo", "UpSynced").await;
}

async fn blocked_secrets_never_move(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let c1 = w.cluster("cluster1");
    let c2 = w.cluster("cluster2");
    c1.secrets()
        .create(
            &PostParams::default(),
            &secret("argocd-secret", &[OPT_IN, REPO_CREDS], &[], "x"),
        )
        .await
        .unwrap();
    c1.status("argocd-secret", "up", "denied", Some("blocked-name"))
        .await;
    let cluster_type = secret(
        "a-cluster",
        &[OPT_IN, ("argocd.argoproj.io/secret-type", "cluster")],
        &[],
        "x",
    );
    c1.secrets()
        .create(&PostParams::default(), &cluster_type)
        .await
        .unwrap();
    c1.status("a-cluster", "up", "denied", Some("blocked-label"))
        .await;
    let hub = w.hub().await;
    assert!(hub.get_opt("argocd-secret").await.unwrap().is_none());
    assert!(hub.get_opt("a-cluster").await.unwrap().is_none());
    // A blocked hub secret targeted at every cluster goes nowhere; a sibling does.
    hub.create(
        &PostParams::default(),
        &secret(
            "argocd-initial-admin-secret",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            "x",
        ),
    )
    .await
    .unwrap();
    hub.create(
        &PostParams::default(),
        &secret(
            "marker",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            "x",
        ),
    )
    .await
    .unwrap();
    appears(&c2.secrets(), "marker", "the marker down copy", |_| true).await;
    assert!(
        c2.secrets()
            .get_opt("argocd-initial-admin-secret")
            .await
            .unwrap()
            .is_none()
    );
}

async fn adopting_an_adoptable_secret_locks_control_plane_edits_and_a_release_returns_control(
    flavor: Flavor,
) {
    let w = world(flavor, POLICY).await;
    let c1 = w.cluster("cluster1");
    let c2 = w.cluster("cluster2");
    let hub = w.hub().await;
    // As Argo CD installs it: its own labels, and an annotation of the control plane's.
    let own_labels = [("app.kubernetes.io/part-of", "argocd"), NOTIFICATIONS];
    hub.create(
        &PostParams::default(),
        &secret(
            "argocd-notifications-secret",
            &own_labels,
            &[("note", "the control plane's")],
            "from-cp",
        ),
    )
    .await
    .unwrap();
    let before = hub.get("argocd-notifications-secret").await.unwrap();
    let adopt = |value: &str| {
        secret(
            "argocd-notifications-secret",
            &[OPT_IN, NOTIFICATIONS, ("team", "cluster1")],
            &[TO_ALL],
            value,
        )
    };
    c1.secrets()
        .create(&PostParams::default(), &adopt("from-cluster1"))
        .await
        .unwrap();
    let adopted = appears(&hub, "argocd-notifications-secret", "the adoption", |s| {
        label(s, "secret-relay.io/owner") == Some("cluster.cluster1")
    })
    .await;
    assert_eq!(password(&adopted), b"from-cluster1");
    // While cluster1 owns it, its ALL sends it to cluster2.
    appears(
        &c2.secrets(),
        "argocd-notifications-secret",
        "the adopted secret's down copy",
        |_| true,
    )
    .await;
    let err = hub
        .patch(
            "argocd-notifications-secret",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"password": "cp-edit"}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cluster1"), "{err}");
    // The cluster deletes its Secret: the hub secret returns to the control plane with
    // its data, and with exactly the labels and annotations it had before.
    c1.secrets()
        .delete("argocd-notifications-secret", &DeleteParams::default())
        .await
        .unwrap();
    let back = appears(&hub, "argocd-notifications-secret", "the return", |s| {
        label(s, "secret-relay.io/owner").is_none()
    })
    .await;
    assert_eq!(password(&back), b"from-cluster1");
    assert_eq!(back.metadata.labels, before.metadata.labels);
    assert_eq!(
        back.metadata
            .annotations
            .as_ref()
            .map(|a| a.keys().collect::<Vec<_>>()),
        before
            .metadata
            .annotations
            .as_ref()
            .map(|a| a.keys().collect::<Vec<_>>())
    );
    assert_eq!(
        back.metadata.annotations.as_ref().unwrap()["note"],
        "the control plane's"
    );
    // The returned secret goes nowhere, as before the adoption: cluster2's copy goes,
    // and the former owner gets none.
    disappears(
        &c2.secrets(),
        "argocd-notifications-secret",
        "the down copy after the return",
    )
    .await;
    assert!(
        c1.secrets()
            .get_opt("argocd-notifications-secret")
            .await
            .unwrap()
            .is_none()
    );
    // The hand-back record is no cluster's to see.
    for c in [c1, c2] {
        let view: Api<Secret> = Api::namespaced(w.relay_client(&c.name).await, "argocd");
        let err = view.get("secret-relay-handback").await.unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }
    hub.patch(
        "argocd-notifications-secret",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"stringData": {"password": "cp-edit"}})),
    )
    .await
    .unwrap();
    // Adopted again, then released by removing the opt-in label: the same return.
    c1.secrets()
        .create(&PostParams::default(), &adopt("again"))
        .await
        .unwrap();
    appears(
        &hub,
        "argocd-notifications-secret",
        "the second adoption",
        |s| label(s, "secret-relay.io/owner") == Some("cluster.cluster1"),
    )
    .await;
    c1.secrets()
        .patch(
            "argocd-notifications-secret",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"labels": {"akuity.io/secret-sync": null}}}),
            ),
        )
        .await
        .unwrap();
    let back = appears(
        &hub,
        "argocd-notifications-secret",
        "the return after the label went",
        |s| label(s, "secret-relay.io/owner").is_none(),
    )
    .await;
    assert_eq!(password(&back), b"again");
    assert_eq!(back.metadata.labels, before.metadata.labels);
}

async fn a_managed_secret_reaches_all_clusters_or_only_those_a_selector_picks(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let hub = w.hub().await;
    hub.create(
        &PostParams::default(),
        &secret(
            "to-all",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            "all",
        ),
    )
    .await
    .unwrap();
    hub.create(
        &PostParams::default(),
        &secret(
            "to-prod",
            &[],
            &[(
                "akuity.io/managed-secret-allowed-cluster-selector",
                "env in (prod)",
            )],
            "prod",
        ),
    )
    .await
    .unwrap();
    for m in &w.managed {
        let copy = appears(&m.secrets(), "to-all", "the down copy of to-all", |_| true).await;
        assert_eq!(label(&copy, "secret-relay.io/owner"), Some("control-plane"));
        assert_eq!(
            label(&copy, "akuity.io/secret-sync"),
            None,
            "a down copy never opts in"
        );
        assert_eq!(password(&copy), b"all");
    }
    appears(
        &w.cluster("cluster1").secrets(),
        "to-prod",
        "to-prod on cluster1",
        |_| true,
    )
    .await;
    w.cluster("cluster2")
        .status("to-all", "down", "synced", None)
        .await;
    assert!(
        w.cluster("cluster2")
            .secrets()
            .get_opt("to-prod")
            .await
            .unwrap()
            .is_none()
    );
}

async fn cluster_to_cluster_works_through_both_annotations(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let c1 = w.cluster("cluster1");
    let c2 = w.cluster("cluster2");
    c1.secrets()
        .create(
            &PostParams::default(),
            &secret(
                "by-name",
                &[OPT_IN, REPO_CREDS],
                &[("akuity.io/managed-secret-allowed-clusters", "cluster2")],
                "n",
            ),
        )
        .await
        .unwrap();
    c1.secrets()
        .create(
            &PostParams::default(),
            &secret(
                "by-selector",
                &[OPT_IN, REPO_CREDS],
                &[(
                    "akuity.io/managed-secret-allowed-cluster-selector",
                    "env=staging",
                )],
                "s",
            ),
        )
        .await
        .unwrap();
    for name in ["by-name", "by-selector"] {
        let copy = appears(&c2.secrets(), name, "the cluster-to-cluster copy", |_| true).await;
        assert_eq!(
            label(&copy, "secret-relay.io/owner"),
            Some("cluster.cluster1")
        );
    }
    // The origin keeps its own Secret and gets no down copy of its own hub copy.
    let own = c1.secrets().get("by-name").await.unwrap();
    assert_eq!(label(&own, "akuity.io/secret-sync"), Some("true"));
    assert_eq!(label(&own, "secret-relay.io/owner"), None);
}

async fn a_secret_created_before_its_source_syncs_after_the_policy_change(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let c2 = w.cluster("cluster2");
    c2.secrets()
        .create(
            &PostParams::default(),
            &secret("early", &[OPT_IN, ("team", "platform")], &[], "e"),
        )
        .await
        .unwrap();
    c2.status("early", "up", "denied", Some("no-matching-source"))
        .await;
    let hub = w.hub().await;
    assert!(hub.get_opt("early").await.unwrap().is_none());
    // A Secret Source for staging clusters and team=platform: no reapply needed.
    let policy =
        format!("{POLICY}  - clusterSelector: env=staging\n    labelSelector: team=platform\n");
    w.stack.set_policy(&policy).await;
    appears(&hub, "early", "the hub copy after the policy change", |s| {
        label(s, "secret-relay.io/owner") == Some("cluster.cluster2")
    })
    .await;
}

async fn deletes_propagate_up_and_down(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let c1 = w.cluster("cluster1");
    let c2 = w.cluster("cluster2");
    c1.secrets()
        .create(
            &PostParams::default(),
            &secret(
                "shared",
                &[OPT_IN, REPO_CREDS],
                &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
                "v",
            ),
        )
        .await
        .unwrap();
    let hub = w.hub().await;
    appears(&hub, "shared", "the hub copy", |_| true).await;
    appears(&c2.secrets(), "shared", "the down copy", |_| true).await;
    c1.secrets()
        .delete("shared", &DeleteParams::default())
        .await
        .unwrap();
    disappears(&hub, "shared", "the hub copy's release").await;
    disappears(&c2.secrets(), "shared", "the down copy's deletion").await;
    // Removing the opt-in label releases too; a managed secret's deletion goes down.
    hub.create(
        &PostParams::default(),
        &secret(
            "managed",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            "m",
        ),
    )
    .await
    .unwrap();
    appears(&c1.secrets(), "managed", "the managed down copy", |_| true).await;
    c1.secrets()
        .create(
            &PostParams::default(),
            &secret("labelled", &[OPT_IN, REPO_CREDS], &[], "l"),
        )
        .await
        .unwrap();
    appears(&hub, "labelled", "the hub copy", |_| true).await;
    c1.secrets()
        .patch(
            "labelled",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"labels": {"akuity.io/secret-sync": null}}}),
            ),
        )
        .await
        .unwrap();
    disappears(&hub, "labelled", "the release after the label went").await;
    hub.delete("managed", &DeleteParams::default())
        .await
        .unwrap();
    disappears(&c1.secrets(), "managed", "the managed down copy's deletion").await;
}

async fn drift_is_reverted_and_conflicts_are_kept(flavor: Flavor) {
    // The managed-cluster webhook locks down copies: drift comes from break-glass.
    let w = world(
        flavor,
        &format!("{POLICY}breakGlass: {{ users: [oncall] }}\n"),
    )
    .await;
    let c2 = w.cluster("cluster2");
    let hub = w.hub().await;
    // A local Secret the agent did not write, with the name of a managed secret.
    c2.secrets()
        .create(&PostParams::default(), &secret("taken", &[], &[], "local"))
        .await
        .unwrap();
    hub.create(
        &PostParams::default(),
        &secret(
            "taken",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            "hub",
        ),
    )
    .await
    .unwrap();
    hub.create(
        &PostParams::default(),
        &secret(
            "drifty",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            "hub",
        ),
    )
    .await
    .unwrap();
    c2.status("taken", "down", "conflict", Some("down-sync-conflict"))
        .await;
    assert_eq!(
        password(&c2.secrets().get("taken").await.unwrap()),
        b"local"
    );
    appears(&c2.secrets(), "drifty", "the down copy", |_| true).await;
    let oncall: Api<Secret> = Api::namespaced(
        c2.cluster.client_as("oncall", &["system:masters"]).await,
        "akuity",
    );
    oncall
        .patch(
            "drifty",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"password": "edited"}})),
        )
        .await
        .unwrap();
    appears(&c2.secrets(), "drifty", "the reverted down copy", |s| {
        password(s) == b"hub"
    })
    .await;
    assert_event(&c2.cluster, "taken", "DownSyncConflict").await;
}

async fn a_denial_that_waits_on_the_hub_lands_once_the_other_cluster_releases(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let c1 = w.cluster("cluster1");
    let c2 = w.cluster("cluster2");
    let hub = w.hub().await;
    c1.secrets()
        .create(
            &PostParams::default(),
            &secret("dup", &[OPT_IN, REPO_CREDS], &[], "one"),
        )
        .await
        .unwrap();
    appears(&hub, "dup", "cluster1's hub copy", |s| {
        label(s, "secret-relay.io/owner") == Some("cluster.cluster1")
    })
    .await;
    c1.status("dup", "up", "synced", None).await;
    // cluster1's copy is outside cluster2's view: its name is taken, nothing more.
    c2.secrets()
        .create(
            &PostParams::default(),
            &secret("dup", &[OPT_IN, REPO_CREDS], &[], "two"),
        )
        .await
        .unwrap();
    c2.status("dup", "up", "denied", Some("name-taken")).await;
    assert_event(&c2.cluster, "dup", "UpSyncDenied").await;
    // The cause goes away: cluster1 releases. Nothing about cluster2's Secret or the
    // policy changes, and its waiting copy lands.
    c1.secrets()
        .delete("dup", &DeleteParams::default())
        .await
        .unwrap();
    let copy = appears(&hub, "dup", "cluster2's hub copy after the release", |s| {
        label(s, "secret-relay.io/owner") == Some("cluster.cluster2")
    })
    .await;
    assert_eq!(password(&copy), b"two");
    c2.status("dup", "up", "synced", None).await;
}

/// A Secret of `type_`, `immutable`, with `data` (as `stringData`).
fn typed(
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    type_: &str,
    immutable: bool,
    data: &[(&str, &str)],
) -> Secret {
    let mut s = secret_with_data(name, labels, annotations, data);
    s.type_ = Some(type_.to_owned());
    s.immutable = immutable.then_some(true);
    s
}

async fn a_new_type_or_an_immutable_change_replaces_the_copies_both_ways(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let c1 = w.cluster("cluster1");
    let c2 = w.cluster("cluster2");
    let hub = w.hub().await;
    let labels = [OPT_IN, ("team", "platform")];
    let to_c2 = [("akuity.io/managed-secret-allowed-clusters", "cluster2")];
    let docker = |auth: &str| format!(r#"{{"auths":{{"registry.example":{{"auth":"{auth}"}}}}}}"#);
    c1.secrets()
        .create(
            &PostParams::default(),
            &typed(
                "pull",
                &labels,
                &to_c2,
                "kubernetes.io/dockerconfigjson",
                true,
                &[(".dockerconfigjson", &docker("b25l"))],
            ),
        )
        .await
        .unwrap();
    let is = |ty: &'static str, auth: String| {
        move |s: &Secret| {
            s.type_.as_deref() == Some(ty)
                && s.immutable == Some(true)
                && s.data
                    .as_ref()
                    .and_then(|d| d.get(".dockerconfigjson"))
                    .map(|b| b.0.clone())
                    == Some(auth.clone().into_bytes())
        }
    };
    appears(
        &hub,
        "pull",
        "the immutable hub copy",
        is("kubernetes.io/dockerconfigjson", docker("b25l")),
    )
    .await;
    appears(
        &c2.secrets(),
        "pull",
        "the immutable down copy",
        is("kubernetes.io/dockerconfigjson", docker("b25l")),
    )
    .await;
    // The Secret is replaced on cluster1 with new data, still immutable, then with
    // another type: an immutable copy cannot be updated, and a type never can.
    c1.secrets()
        .delete("pull", &DeleteParams::default())
        .await
        .unwrap();
    c1.secrets()
        .create(
            &PostParams::default(),
            &typed(
                "pull",
                &labels,
                &to_c2,
                "kubernetes.io/dockerconfigjson",
                true,
                &[(".dockerconfigjson", &docker("dHdv"))],
            ),
        )
        .await
        .unwrap();
    appears(
        &c2.secrets(),
        "pull",
        "the replaced down copy",
        is("kubernetes.io/dockerconfigjson", docker("dHdv")),
    )
    .await;
    c1.secrets()
        .delete("pull", &DeleteParams::default())
        .await
        .unwrap();
    c1.secrets()
        .create(
            &PostParams::default(),
            &typed(
                "pull",
                &labels,
                &to_c2,
                "Opaque",
                true,
                &[(".dockerconfigjson", &docker("dGhyZWU="))],
            ),
        )
        .await
        .unwrap();
    appears(
        &hub,
        "pull",
        "the retyped hub copy",
        is("Opaque", docker("dGhyZWU=")),
    )
    .await;
    appears(
        &c2.secrets(),
        "pull",
        "the retyped down copy",
        is("Opaque", docker("dGhyZWU=")),
    )
    .await;
    c1.status("pull", "up", "synced", None).await;
    // Down from the control plane: a managed secret's type change reaches the copy.
    hub.create(
        &PostParams::default(),
        &typed(
            "cp-auth",
            &[],
            &[TO_ALL],
            "kubernetes.io/basic-auth",
            true,
            &[("username", "u"), ("password", "p")],
        ),
    )
    .await
    .unwrap();
    appears(
        &c1.secrets(),
        "cp-auth",
        "the managed immutable down copy",
        |s| s.type_.as_deref() == Some("kubernetes.io/basic-auth") && s.immutable == Some(true),
    )
    .await;
    hub.delete("cp-auth", &DeleteParams::default())
        .await
        .unwrap();
    hub.create(
        &PostParams::default(),
        &typed(
            "cp-auth",
            &[],
            &[TO_ALL],
            "Opaque",
            false,
            &[("password", "p2")],
        ),
    )
    .await
    .unwrap();
    appears(
        &c1.secrets(),
        "cp-auth",
        "the retyped managed down copy",
        |s| s.type_.as_deref() == Some("Opaque") && s.immutable.is_none() && password(s) == b"p2",
    )
    .await;
    c1.status("cp-auth", "down", "synced", None).await;
}

async fn tool_ownership_metadata_never_crosses(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let c1 = w.cluster("cluster1");
    let c2 = w.cluster("cluster2");
    let hub = w.hub().await;
    // As `helm install` and an Argo CD Application leave a Secret.
    let installed_labels = [
        ("app.kubernetes.io/managed-by", "Helm"),
        ("app.kubernetes.io/instance", "creds"),
        ("helm.sh/chart", "creds-1.0.0"),
        ("app.kubernetes.io/part-of", "platform"),
    ];
    let installed_annotations = [
        ("meta.helm.sh/release-name", "creds"),
        ("meta.helm.sh/release-namespace", "akuity"),
        (
            "argocd.argoproj.io/tracking-id",
            "creds:/Secret:akuity/creds",
        ),
        ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
        ("note", "kept"),
    ];
    let mut labels = vec![OPT_IN, REPO_CREDS];
    labels.extend(installed_labels);
    let mut annotations = vec![("akuity.io/managed-secret-allowed-clusters", "cluster2")];
    annotations.extend(installed_annotations);
    c1.secrets()
        .create(
            &PostParams::default(),
            &secret("creds", &labels, &annotations, "v"),
        )
        .await
        .unwrap();
    let copy = appears(&hub, "creds", "the hub copy", |_| true).await;
    let keys = |m: &Option<std::collections::BTreeMap<String, String>>| {
        m.clone()
            .unwrap_or_default()
            .into_keys()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&copy.metadata.labels),
        [
            "akuity.io/secret-sync",
            "app.kubernetes.io/part-of",
            "argocd.argoproj.io/secret-type",
            "secret-relay.io/owner"
        ]
    );
    assert_eq!(
        keys(&copy.metadata.annotations),
        ["akuity.io/managed-secret-allowed-clusters", "note"]
    );
    let down = appears(&c2.secrets(), "creds", "the down copy", |_| true).await;
    assert_eq!(
        keys(&down.metadata.labels),
        [
            "app.kubernetes.io/part-of",
            "argocd.argoproj.io/secret-type",
            "secret-relay.io/owner"
        ]
    );
    // No target annotations on a down copy: they say where the hub copy goes. It
    // names the hub version it was written from.
    assert_eq!(
        keys(&down.metadata.annotations),
        ["note", "secret-relay.io/source"]
    );
    // A managed secret an Argo CD Application deploys on the control plane: its
    // tracking stays there; the policy strips more.
    w.stack
        .set_policy(&format!("{POLICY}stripMetadata:\n  annotations: [note]\n"))
        .await;
    let mut managed_annotations = vec![TO_ALL];
    managed_annotations.extend(installed_annotations);
    hub.create(
        &PostParams::default(),
        &secret("from-git", &installed_labels, &managed_annotations, "g"),
    )
    .await
    .unwrap();
    let down = appears(&c1.secrets(), "from-git", "the managed down copy", |_| true).await;
    assert_eq!(
        keys(&down.metadata.labels),
        ["app.kubernetes.io/part-of", "secret-relay.io/owner"]
    );
    assert_eq!(keys(&down.metadata.annotations), ["secret-relay.io/source"]);
    appears(
        &c2.secrets(),
        "creds",
        "the down copy without the stripped note",
        |s| {
            s.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| !a.contains_key("note"))
        },
    )
    .await;
}

async fn large_binary_and_docker_config_secrets_sync_whole(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let c1 = w.cluster("cluster1");
    let c2 = w.cluster("cluster2");
    let hub = w.hub().await;
    // Near the API server's 1 MiB object limit, and bytes that are not UTF-8.
    let large: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let mut s = secret("bulky", &[OPT_IN, REPO_CREDS], &[TO_ALL], "");
    s.string_data = None;
    s.data = Some(
        [
            ("large".to_owned(), k8s_openapi::ByteString(large.clone())),
            ("binary".to_owned(), k8s_openapi::ByteString(binary.clone())),
        ]
        .into(),
    );
    c1.secrets()
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    let whole = move |s: &Secret| {
        let d = s.data.clone().unwrap_or_default();
        d.get("large").map(|b| &b.0) == Some(&large)
            && d.get("binary").map(|b| &b.0) == Some(&binary)
    };
    appears(&hub, "bulky", "the large hub copy", whole.clone()).await;
    appears(&c2.secrets(), "bulky", "the large down copy", whole).await;
    c1.status("bulky", "up", "synced", None).await;
}

/// Two Secrets with the same metadata and different values: their hub copies carry
/// the same labels and annotations, and so do their down copies but for
/// `secret-relay.io/source`, which is the hub copy's uid and resourceVersion.
/// Nothing stored is a function of the values, so nobody who sees metadata only
/// (an Argo CD UI user, the Secrets page) can test a guessed value against it.
async fn copies_carry_no_function_of_their_values(flavor: Flavor) {
    let w = world(flavor, POLICY).await;
    let c1 = w.cluster("cluster1");
    let c2 = w.cluster("cluster2");
    let hub = w.hub().await;
    let values = [
        ("same-meta-a", "hunter2"),
        ("same-meta-b", "correct horse battery staple"),
    ];
    let annotations = [
        ("akuity.io/managed-secret-allowed-clusters", "cluster2"),
        ("note", "kept"),
    ];
    for (name, value) in values {
        c1.secrets()
            .create(
                &PostParams::default(),
                &secret(name, &[OPT_IN, REPO_CREDS], &annotations, value),
            )
            .await
            .unwrap();
    }
    let mut copies = Vec::new();
    for (name, value) in values {
        let up = appears(&hub, name, "the hub copy", move |s| {
            password(s) == value.as_bytes()
                && label(s, "secret-relay.io/owner") == Some("cluster.cluster1")
        })
        .await;
        let marker = secret_relay_policy::source_marker(&up).unwrap();
        let want = marker.clone();
        let down = appears(
            &c2.secrets(),
            name,
            "the down copy of the current hub copy",
            move |s| {
                s.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("secret-relay.io/source"))
                    == Some(&want)
            },
        )
        .await;
        assert_eq!(password(&down), value.as_bytes());
        copies.push((up, down, marker));
    }
    let [(hub_a, down_a, marker_a), (hub_b, down_b, marker_b)] = &copies[..] else {
        unreachable!()
    };
    assert_eq!(hub_a.metadata.labels, hub_b.metadata.labels);
    assert_eq!(hub_a.metadata.annotations, hub_b.metadata.annotations);
    assert_eq!(down_a.metadata.labels, down_b.metadata.labels);
    let without_source = |s: &Secret| {
        let mut a = s.metadata.annotations.clone().unwrap_or_default();
        a.remove("secret-relay.io/source");
        a
    };
    assert_eq!(without_source(down_a), without_source(down_b));
    assert_eq!(
        *marker_a,
        format!(
            "{}/{}",
            hub_a.metadata.uid.as_deref().unwrap(),
            hub_a.metadata.resource_version.as_deref().unwrap()
        )
    );
    assert_ne!(marker_a, marker_b);
    // No label or annotation value is a digest of the data, old or new form.
    for s in [hub_a, hub_b, down_a, down_b] {
        let digest = secret_relay_policy::digest(s);
        let metadata = [&s.metadata.labels, &s.metadata.annotations];
        for (k, v) in metadata.into_iter().flatten().flatten() {
            assert!(
                k != "secret-relay.io/digest"
                    && !v.contains("sha256:")
                    && !v.contains(&digest[7..]),
                "{}: {k}={v}",
                s.metadata.name.as_deref().unwrap_or("")
            );
        }
    }
}
