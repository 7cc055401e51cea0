//! End to end, on the sandbox and on a real kube-apiserver (with etcd and
//! kube-controller-manager): the repository's own manifests applied with kubectl, the
//! policy read from its ConfigMap through the webhook's own RBAC, the API server
//! calling the webhook over TLS, and writes made the way the relay and a person with
//! kubectl make them. Each scenario runs on both servers; a difference is a sandbox bug.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use secret_relay_certs::{Ca, ClientAuth, Validity, server_config};
use secret_relay_policy::{Mode, RelayIdentity};
use secret_relay_runtime::CancellationToken;
use secret_relay_testkit::{Flavor, Options, TestCluster, within};
use secret_relay_webhook::{AppState, serve};
use tokio::task::JoinHandle;

const SERVICE: &str = "secret-relay-webhook.secret-relay-system.svc";
const SYSTEM_NS: &str = "secret-relay-system";
const WEBHOOK_SA: &str = "system:serviceaccount:secret-relay-system:secret-relay-webhook";

const POLICY: &str = "clusters:\n  - name: cluster1\n    labels: { env: prod }\nsecretSources:\n  - clusterSelector: env=prod\n";
const POLICY_WITH_CLUSTER2: &str = "clusters:\n  - name: cluster1\n    labels: { env: prod }\n  - name: cluster2\n    labels: { env: prod }\nsecretSources:\n  - clusterSelector: env=prod\n";

struct World {
    cluster: TestCluster,
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
    addr: SocketAddr,
    stop: CancellationToken,
    server: Option<JoinHandle<()>>,
}

/// Waits until the state has seen one more reload attempt than `seen`.
async fn next_reload(state: &AppState, seen: u64) -> u64 {
    let mut rx = state.policy_state().subscribe_reloads();
    within("a policy reload", rx.wait_for(|n| *n > seen))
        .await
        .map(|n| *n)
        .unwrap()
}

async fn world(flavor: Flavor) -> World {
    world_with(flavor, POLICY).await
}

async fn world_with(flavor: Flavor, policy: &str) -> World {
    let ca = Ca::generate("secret-relay test CA", Validity::ca_default()).unwrap();
    let cert = ca
        .issue_server(
            SERVICE,
            &[SERVICE.to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Validity::default(),
        )
        .unwrap();
    let tls = server_config(
        &cert.cert_pem,
        &cert.key_pem,
        None,
        ClientAuth::None,
        &[b"http/1.1"],
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cluster = TestCluster::start(
        flavor,
        Options {
            services: vec![(SERVICE.to_owned(), addr)],
            ..Options::default()
        },
    )
    .await;
    cluster.create_namespace("argocd").await;

    // The repository's manifests as the dev stack installs them (namespace, RBAC,
    // policy ConfigMap, NetworkPolicy and both webhook configurations), then the
    // test's policy.
    secret_relay_devstack::stack::install(
        cluster.api(),
        &secret_relay_devstack::manifests::Install {
            side: secret_relay_devstack::manifests::Side::ControlPlane,
            namespace: "argocd",
            clusters: None,
            ca_pem: ca.cert_pem(),
            webhook_port: addr.port(),
            sandbox: flavor == Flavor::Sandbox,
        },
        policy,
    )
    .await
    .unwrap();

    // The webhook reads its policy as its own service account: on the real server this
    // proves the repository's RBAC is enough.
    let webhook_client = cluster
        .client_as(
            WEBHOOK_SA,
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:secret-relay-system",
                "system:authenticated",
            ],
        )
        .await;
    let state = AppState::new(RelayIdentity::default(), Mode::ControlPlane);
    let stop = CancellationToken::new();
    let seen = *state.policy_state().subscribe_reloads().borrow();
    tokio::spawn(secret_relay_runtime::watch_configmap(
        state.policy_state().clone(),
        webhook_client,
        SYSTEM_NS.to_owned(),
        "secret-relay-policy".to_owned(),
        stop.clone(),
    ));
    next_reload(&state, seen).await;
    if !state.policy_state().is_ready() {
        // The manifests' own (empty) policy may come first; wait for the test's.
        within("the test policy", async {
            let mut rx = state.policy_state().subscribe_reloads();
            while state.policy_state().generation() == 0 {
                rx.changed().await.unwrap();
            }
        })
        .await;
    }
    let server = tokio::spawn(serve(listener, tls.clone(), state.clone(), stop.clone()));
    World {
        cluster,
        state,
        tls,
        addr,
        stop,
        server: Some(server),
    }
}

async fn set_policy(admin: &Client, text: &str) {
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), SYSTEM_NS);
    let patch = serde_json::json!({"data": {"policy.yaml": text}});
    cms.patch(
        "secret-relay-policy",
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .unwrap();
}

impl World {
    /// Replaces the serving webhook with one that has never loaded a valid policy
    /// (not ready), on the same address.
    async fn replace_with_unready_webhook(&mut self) -> AppState {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let state = AppState::new(RelayIdentity::default(), Mode::ControlPlane);
        assert!(!state.policy_state().is_ready());
        self.stop = CancellationToken::new();
        self.server = Some(tokio::spawn(serve(
            listener,
            self.tls.clone(),
            state.clone(),
            self.stop.clone(),
        )));
        state
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn repo_secret(name: &str, namespace: &str) -> Secret {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "a", "akuity.io/secret-sync": "true"}},
        "stringData": {"url": "https://example.invalid/repo.git"},
    }))
    .unwrap()
}

fn owner(secret: &Secret) -> Option<String> {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("secret-relay.io/owner").cloned())
}

async fn cluster_client(w: &World, name: &str) -> Client {
    w.cluster
        .client_as(
            &format!("secret-relay:cluster:{name}"),
            &["secret-relay:clusters"],
        )
        .await
}

/// Declares one test per flavor for a scenario `async fn(Flavor)`.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sandbox() {
                    super::$scenario(secret_relay_testkit::Flavor::Sandbox).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn real_control_plane() {
                    let flavor = secret_relay_testkit::Flavor::Real;
                    if !flavor.skipped(stringify!($scenario)) {
                        super::$scenario(flavor).await;
                    }
                }
            }
        )*
    };
}

on_both!(
    a_relay_write_is_stamped_and_a_kubectl_edit_of_it_is_refused,
    the_policy_configmap_is_hot_reloaded_and_a_bad_one_keeps_the_last_good,
    namespace_deletion_removes_cluster_owned_copies_with_the_webhook_healthy,
    namespace_deletion_removes_cluster_owned_copies_with_the_webhook_unready,
);

async fn a_relay_write_is_stamped_and_a_kubectl_edit_of_it_is_refused(flavor: Flavor) {
    let w = world(flavor).await;
    let secrets: Api<Secret> = Api::namespaced(cluster_client(&w, "cluster1").await, "argocd");
    // A write as the relay sends it, saying it stamped it, but without the stamps or
    // with another cluster's: a real API server does not call the mutating webhook
    // for it (matchConditions), so the validating webhook refuses it. The sandbox
    // does not evaluate matchConditions: its mutating webhook stamps them and they
    // pass.
    let stamped_by_relay: Api<Secret> = Api::namespaced(
        w.cluster
            .client_as(
                "secret-relay:cluster:cluster1",
                &["secret-relay:clusters", "secret-relay:relay-stamped"],
            )
            .await,
        "argocd",
    );
    let mut wrong = repo_secret("wrongly-stamped", "argocd");
    wrong.metadata.labels.get_or_insert_default().insert(
        "secret-relay.io/owner".to_owned(),
        "cluster.cluster2".to_owned(),
    );
    for (what, s) in [
        ("unstamped", repo_secret("unstamped", "argocd")),
        ("wrongly stamped", wrong),
    ] {
        let answer = stamped_by_relay.create(&PostParams::default(), &s).await;
        if flavor == Flavor::Sandbox {
            assert_eq!(
                owner(&answer.unwrap()).as_deref(),
                Some("cluster.cluster1"),
                "{what}"
            );
        } else {
            let err = answer.unwrap_err().to_string();
            assert!(err.contains("owner-label-forged"), "{what}: {err}");
        }
    }
    // Stamped as the relay stamps what it forwards: stored as it is.
    let mut stamped = repo_secret("repo-creds", "argocd");
    secret_relay_policy::stamp_cluster_write("cluster1", "repo-creds", &mut stamped, None);
    let created = stamped_by_relay
        .create(&PostParams::default(), &stamped)
        .await
        .unwrap();
    assert_eq!(owner(&created).as_deref(), Some("cluster.cluster1"));
    // Without the group (any other writer as the cluster), the mutating webhook stamps.
    let created = secrets
        .create(&PostParams::default(), &repo_secret("mutated", "argocd"))
        .await
        .unwrap();
    assert_eq!(owner(&created).as_deref(), Some("cluster.cluster1"));
    // The stored copy carries no function of its values.
    let annotations = created.metadata.annotations.clone().unwrap_or_default();
    assert!(
        !annotations.contains_key("secret-relay.io/digest"),
        "{annotations:?}"
    );

    // A person (system:masters) edits the cluster-owned copy: refused with the webhook's message.
    let admin = w.cluster.client().await;
    let admin_secrets: Api<Secret> = Api::namespaced(admin.clone(), "argocd");
    let err = admin_secrets
        .patch(
            "repo-creds",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("admission webhook \"validate.secret-relay.io\" denied the request"),
        "{msg}"
    );
    assert!(msg.contains("cluster1"), "{msg}");

    // A control-plane-owned Secret that exists, so that a refusal below is the webhook's
    // and not a 404.
    admin_secrets
        .create(&PostParams::default(), &repo_secret("other", "argocd"))
        .await
        .unwrap();
    let kubectl = secret_relay_testkit::kubectl().unwrap();
    let out = w.cluster.kubectl(
        &kubectl,
        &[
            "label",
            "secret",
            "repo-creds",
            "-n",
            "argocd",
            "edited=true",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admission webhook \"validate.secret-relay.io\" denied the request")
            && stderr.contains("owned by cluster cluster1"),
        "{stderr}"
    );
    let out = w.cluster.kubectl(
        &kubectl,
        &["delete", "secret", "repo-creds", "-n", "argocd"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("denied the request"), "{stderr}");
    // Nobody sets the owner label by hand, not even an admin.
    let out = w.cluster.kubectl(
        &kubectl,
        &[
            "label",
            "secret",
            "other",
            "-n",
            "argocd",
            "secret-relay.io/owner=cluster.cluster1",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("denied the request"), "{stderr}");
    assert_eq!(owner(&admin_secrets.get("other").await.unwrap()), None);

    let still = admin_secrets.get("repo-creds").await.unwrap();
    assert_eq!(still.metadata.labels.unwrap().get("x"), None);
    assert!(admin_secrets.get_opt("repo-creds").await.unwrap().is_some());
}

async fn the_policy_configmap_is_hot_reloaded_and_a_bad_one_keeps_the_last_good(flavor: Flavor) {
    let w = world(flavor).await;
    let admin = w.cluster.client().await;
    let secrets: Api<Secret> = Api::namespaced(cluster_client(&w, "cluster2").await, "argocd");

    let err = secrets
        .create(&PostParams::default(), &repo_secret("from-2", "argocd"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown-cluster"), "{err}");
    let generation = w.state.policy_state().generation();

    let seen = *w.state.policy_state().subscribe_reloads().borrow();
    set_policy(&admin, "clusters: [{name: NOT_VALID}]\n").await;
    let seen = next_reload(&w.state, seen).await;
    assert_eq!(
        w.state.policy_state().generation(),
        generation,
        "a bad policy must not replace the last good one"
    );
    assert!(
        w.state
            .policy_state()
            .last_error()
            .unwrap()
            .to_string()
            .contains("clusters[0].name")
    );
    assert!(w.state.policy_state().is_ready());

    set_policy(&admin, POLICY_WITH_CLUSTER2).await;
    next_reload(&w.state, seen).await;
    assert_eq!(w.state.policy_state().generation(), generation + 1);
    assert!(w.state.policy_state().last_error().is_none());
    let created = secrets
        .create(&PostParams::default(), &repo_secret("from-2", "argocd"))
        .await
        .unwrap();
    assert_eq!(owner(&created).as_deref(), Some("cluster.cluster2"));
}

/// Fills a namespace with cluster-owned copies (through the webhook, as the relay
/// would), then deletes the namespace as an admin and waits for it to be gone. On the
/// real server the namespace controller of kube-controller-manager does the deleting.
async fn fill_with_cluster_owned_copies(w: &World, namespace: &str, count: usize) {
    let secrets: Api<Secret> = Api::namespaced(cluster_client(w, "cluster1").await, namespace);
    for i in 0..count {
        let created = secrets
            .create(
                &PostParams::default(),
                &repo_secret(&format!("copy-{i}"), namespace),
            )
            .await
            .unwrap();
        assert_eq!(owner(&created).as_deref(), Some("cluster.cluster1"));
    }
}

async fn delete_namespace_and_wait(w: &World, namespace: &str) {
    let admin = w.cluster.client().await;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let uid = namespaces.get(namespace).await.unwrap().metadata.uid;
    namespaces
        .delete(namespace, &DeleteParams::default())
        .await
        .unwrap();
    let gone = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        kube::runtime::wait::await_condition(
            namespaces.clone(),
            namespace,
            kube::runtime::conditions::is_deleted(&uid.unwrap_or_default()),
        ),
    )
    .await;
    if gone.is_err() {
        let ns = namespaces.get_opt(namespace).await.unwrap();
        let conditions = ns
            .and_then(|n| n.status)
            .and_then(|s| s.conditions)
            .map(|c| {
                c.iter()
                    .map(|c| {
                        format!(
                            "{}={}: {}",
                            c.type_,
                            c.status,
                            c.message.clone().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let log = w
            .cluster
            .real()
            .map(|r| r.log_tail("kube-controller-manager", 20))
            .unwrap_or_default();
        panic!("namespace {namespace} was not deleted within 60 s:\n{conditions}\n{log}");
    }
    let secrets: Api<Secret> = Api::namespaced(admin, namespace);
    assert!(
        secrets
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn namespace_deletion_removes_cluster_owned_copies_with_the_webhook_healthy(flavor: Flavor) {
    let w = world(flavor).await;
    fill_with_cluster_owned_copies(&w, "argocd", 5).await;
    delete_namespace_and_wait(&w, "argocd").await;
}

async fn namespace_deletion_removes_cluster_owned_copies_with_the_webhook_unready(flavor: Flavor) {
    let mut w = world(flavor).await;
    fill_with_cluster_owned_copies(&w, "argocd", 5).await;
    let unready = w.replace_with_unready_webhook().await;
    // The unready webhook refuses ordinary writes (failurePolicy Fail keeps the namespace
    // closed) ...
    let admin = w.cluster.client().await;
    let err = Api::<Secret>::namespaced(admin, "argocd")
        .create(
            &PostParams::default(),
            &repo_secret("while-unready", "argocd"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("secret-relay.io"), "{err}");
    assert!(!unready.policy_state().is_ready());
    // ... but never Kubernetes' own cleanup.
    delete_namespace_and_wait(&w, "argocd").await;
}
