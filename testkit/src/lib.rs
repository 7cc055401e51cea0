//! Dev only: the API servers tests run against, and the helpers tests share.
//!
//! A [`TestCluster`] is either a sandbox (in process, [`secret_relay_sandbox`]) or a
//! real control plane: etcd, kube-apiserver and kube-controller-manager built from
//! their Go modules and started by `scripts/control-plane.sh`. Tests that must hold
//! on both write the scenario once and run it on each [`Flavor`]; a difference is a
//! bug in the sandbox.
//!
//! When the real control plane cannot start (no Go, a failed build), tests fail with
//! the script's message. Setting `SECRET_RELAY_SKIP_REAL_CONTROL_PLANE=1` asks for
//! the real-server variants to be skipped; each skip is printed.
//!
//! Suites written with [`on_all!`] also run against clusters made elsewhere
//! ([`Flavor::Outside`]) when `E2E_KUBECONFIG` names the control plane's kubeconfig
//! and `E2E_CLUSTER1_KUBECONFIG`, `E2E_CLUSTER2_KUBECONFIG`, ... name the managed
//! clusters'. Those clusters are reused from scenario to scenario: before each one
//! the testkit deletes secret-relay's webhook configurations and every Secret and
//! Event in the namespaces the scenario uses (`argocd`, `akuity`), so point them only
//! at clusters made for testing. The webhook runs in the test process; the control
//! plane's API server reaches it through an `ExternalName` Service at
//! `E2E_WEBHOOK_HOST` (default `127.0.0.1`: an API server on this machine).
//!
//! When `E2E_DEPLOYED_RELAY` also names the relay's Service, the control plane runs
//! secret-relay as pods (tests/deployed.rs does this on a real node): a [`Stack`]
//! then starts neither relay nor webhook, and agents reach the deployed relay (see
//! [`deployed`]).
//!
//! A managed cluster from [`TestCluster::managed`] gets the webhook in managed-cluster
//! mode, registered from `manifests/managed-cluster`, once the stack starts its agent
//! ([`Stack::start_agent`]): a cluster admin cannot change a down copy there, the agent
//! (as its own service account) can.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // test helpers panic by design

mod deployed;
mod faults;
mod logs;
mod managed;
mod secrets;
mod stack;

pub use deployed::{DEPLOYED_PKI_ENV, DEPLOYED_RELAY_ENV, DEPLOYED_WEBHOOKS_ENV};
pub use faults::Cutter;
pub use logs::{capture_logs, captured_logs};
pub use managed::{
    AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT, AGENT_USER, MANAGED_WEBHOOK_CONFIGURATION,
};
pub use secrets::{OPT_IN, REPO_CREDS, TO_ALL, label, password, secret, secret_with_data};
pub use stack::{
    RELAY_USER, RelayHandle, RelayOptions, SYSTEM_NAMESPACE, Stack, StackOptions, WEBHOOK_SERVICE,
    WEBHOOK_USER, namespace_overlay, test_deletion, wait_cached,
};

pub use secret_relay_devstack::{RealControlPlane, repo_root};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use kube::Client;
use kube::api::Api;
use secret_relay_devstack::{ApiServer, ApiServerOptions, Backend};
use secret_relay_sandbox::Sandbox;

/// The environment variable that asks for the real-control-plane variants to be skipped.
pub const SKIP_REAL_ENV: &str = "SECRET_RELAY_SKIP_REAL_CONTROL_PLANE";

/// The control plane's kubeconfig for [`Flavor::Outside`]; unset, those variants skip.
pub const OUTSIDE_ENV: &str = "E2E_KUBECONFIG";

/// The address the outside control plane's API server reaches this machine at.
pub const OUTSIDE_WEBHOOK_HOST_ENV: &str = "E2E_WEBHOOK_HOST";

/// The environment variable that names managed cluster `name`'s kubeconfig for
/// [`Flavor::Outside`]: `E2E_CLUSTER1_KUBECONFIG` for `cluster1`.
pub fn outside_cluster_env(name: &str) -> String {
    format!(
        "E2E_{}_KUBECONFIG",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// Which API server a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// The in-process sandbox.
    Sandbox,
    /// etcd, kube-apiserver and kube-controller-manager from `scripts/control-plane.sh`.
    Real,
    /// Clusters made elsewhere, named by [`OUTSIDE_ENV`] and [`outside_cluster_env`].
    Outside,
}

/// How to start a [`TestCluster`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Webhook services the API server must reach: `name.namespace.svc` -> where it
    /// listens. The webhook configuration must name the same port (see
    /// [`webhook_manifest`]). The sandbox maps them in its config; on the real server
    /// each becomes an `ExternalName` Service pointing at the address, which
    /// kube-apiserver's service resolver dials with the service's name as SNI.
    pub services: Vec<(String, SocketAddr)>,
    /// Sandbox only: events kept for watch resume (0: the sandbox default).
    pub history_limit: usize,
    /// Service accounts (namespace, name) that tests act as with
    /// [`TestCluster::service_account_kubeconfig`]: the sandbox is configured with a
    /// token for each (allowed to impersonate, as the sandbox has no RBAC); the real
    /// server issues tokens through the TokenRequest API.
    pub service_accounts: Vec<(String, String)>,
    /// Real only: run kube-controller-manager as the single identity
    /// `system:kube-controller-manager` instead of one service account per controller.
    pub kcm_single_identity: bool,
}

/// A running API server with an admin kubeconfig.
pub struct TestCluster {
    flavor: Flavor,
    kubeconfig: PathBuf,
    /// [`TestCluster::managed`] only. Before `inner`: the webhook stops (and on an
    /// outside cluster is unregistered) while the API server still runs.
    managed_webhook: Option<managed::ManagedWebhook>,
    api: ApiServer,
    // Last: removed after the servers stop.
    dir: tempfile::TempDir,
}

/// Runs one scenario on outside clusters: one at a time in a process, each on its own
/// runtime, dropped (every relay, agent and webhook task with it) before the next
/// scenario may start, so none of its writes lands in the next one.
pub fn run_outside_scenario(scenario: impl Future<Output = ()>) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(scenario);
    drop(runtime);
}

impl Flavor {
    /// The dev stack's backend of this flavor.
    pub fn backend(self) -> Backend {
        match self {
            Flavor::Sandbox => Backend::Sandbox,
            Flavor::Real => Backend::Real,
            Flavor::Outside => Backend::Outside,
        }
    }

    /// Whether this flavor's variant is to be skipped, printing why: the real control
    /// plane when [`SKIP_REAL_ENV`] asks for it, outside clusters when [`OUTSIDE_ENV`]
    /// names none.
    pub fn skipped(self, test: &str) -> bool {
        match self {
            Flavor::Sandbox => false,
            Flavor::Real => {
                let skip = std::env::var(SKIP_REAL_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
                if skip {
                    eprintln!(
                        "!!! {test}: real control plane skipped because {SKIP_REAL_ENV} is set"
                    );
                }
                skip
            }
            Flavor::Outside => {
                let skip = std::env::var_os(OUTSIDE_ENV).is_none_or(|v| v.is_empty());
                if skip {
                    eprintln!(
                        "!!! {test}: outside clusters skipped because {OUTSIDE_ENV} is not set"
                    );
                }
                skip
            }
        }
    }
}

impl TestCluster {
    /// Starts an API server of the given flavor. Panics with the cause when it cannot.
    pub async fn start(flavor: Flavor, options: Options) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("secret-relay-test-")
            .tempdir()
            .unwrap();
        let outside_kubeconfig = (flavor == Flavor::Outside).then(|| {
            PathBuf::from(std::env::var(OUTSIDE_ENV).unwrap_or_else(|_| {
                panic!("{OUTSIDE_ENV} names no kubeconfig for the outside control plane")
            }))
        });
        TestCluster::on(flavor, dir, options, outside_kubeconfig).await
    }

    /// The API server of `flavor` in `dir`, through the dev stack's backends.
    async fn on(
        flavor: Flavor,
        dir: tempfile::TempDir,
        options: Options,
        outside_kubeconfig: Option<PathBuf>,
    ) -> TestCluster {
        let api = ApiServer::start(
            flavor.backend(),
            dir.path(),
            &ApiServerOptions {
                services: options.services,
                service_accounts: options.service_accounts,
                history_limit: options.history_limit,
                kcm_single_identity: options.kcm_single_identity,
                outside_kubeconfig,
                outside_webhook_host: std::env::var(OUTSIDE_WEBHOOK_HOST_ENV).ok(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("failed to start the {flavor:?} API server: {e:#}"));
        TestCluster {
            flavor,
            kubeconfig: api.kubeconfig().to_path_buf(),
            managed_webhook: None,
            api,
            dir,
        }
    }

    /// Managed cluster `name`: a new API server of `flavor`, or for [`Flavor::Outside`]
    /// the cluster [`outside_cluster_env`] names, with its `namespaces` emptied of
    /// Secrets and Events (an earlier scenario's are gone).
    ///
    /// Its webhook in managed-cluster mode is reserved here (the API server routes the
    /// webhook's service to it; an outside cluster's earlier registration is removed
    /// first) and installed by the first [`Stack::start_agent`] on it, with the stack's
    /// PKI and policy: from then on only the agent changes its down copies.
    pub async fn managed(flavor: Flavor, name: &str, namespaces: &[&str]) -> TestCluster {
        let listener = stack::webhook_listener(flavor).await;
        if flavor != Flavor::Outside {
            let webhook = managed::ManagedWebhook::new(name, listener, None);
            let mut cluster = TestCluster::start(
                flavor,
                Options {
                    services: vec![webhook.service()],
                    service_accounts: managed::service_accounts(),
                    ..Options::default()
                },
            )
            .await;
            cluster.managed_webhook = Some(webhook);
            return cluster;
        }
        let var = outside_cluster_env(name);
        let path = std::env::var(&var).unwrap_or_else(|_| {
            panic!("{OUTSIDE_ENV} is set, so {var} must name managed cluster {name}'s kubeconfig")
        });
        let dir = tempfile::Builder::new()
            .prefix("secret-relay-test-")
            .tempdir()
            .unwrap();
        let mut cluster =
            TestCluster::on(flavor, dir, Options::default(), Some(PathBuf::from(path))).await;
        let kubectl =
            kubectl().expect("kubectl is needed to apply the repository's manifests (kustomize)");
        let registration =
            stack::Registration::new(&cluster, &kubectl, managed::MANAGED_WEBHOOK_CONFIGURATION);
        // The last scenario's webhook is gone: unregister it before emptying the
        // namespaces (it would refuse every write in the agent namespace).
        registration.unregister().unwrap_or_else(|e| panic!("{e}"));
        let webhook = managed::ManagedWebhook::new(name, listener, Some(registration));
        for ns in namespaces {
            cluster.empty_namespace(ns).await;
        }
        cluster
            .api
            .route_services(&[webhook.service()])
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        cluster.managed_webhook = Some(webhook);
        cluster
    }

    /// The managed-cluster webhook's state (policy generation, metrics), once
    /// [`Stack::start_agent`] installed it on a cluster from [`TestCluster::managed`].
    pub fn managed_webhook(&self) -> Option<&secret_relay_webhook::AppState> {
        self.managed_webhook
            .as_ref()
            .and_then(managed::ManagedWebhook::state)
    }

    /// The managed-cluster webhook reserved by [`TestCluster::managed`].
    pub(crate) fn managed_slot(&self) -> Option<&managed::ManagedWebhook> {
        self.managed_webhook.as_ref()
    }

    /// Deletes every Secret and Event in `namespace` (creating it when missing) and
    /// waits until none is left: outside clusters start each scenario empty.
    pub async fn empty_namespace(&self, namespace: &str) {
        use k8s_openapi::api::core::v1::{Event, Secret};
        use kube::api::{DeleteParams, ListParams};
        let client = self.client().await;
        create_namespace(&client, namespace).await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let events: Api<Event> = Api::namespaced(client, namespace);
        within(
            &format!("the Secrets and Events in {namespace} to go"),
            async {
                loop {
                    let emptied = async {
                        secrets
                            .delete_collection(&DeleteParams::default(), &ListParams::default())
                            .await?;
                        events
                            .delete_collection(&DeleteParams::default(), &ListParams::default())
                            .await?;
                        secrets.list_metadata(&ListParams::default()).await
                    };
                    match emptied.await {
                        Ok(left) if left.items.is_empty() => return,
                        // A writer still stopping may have added one since: go again.
                        Ok(_) => {}
                        // An API server may call a webhook just unregistered for a moment
                        // (its informer catches up): try again shortly.
                        Err(err) => {
                            eprintln!("emptying {namespace}: {err}; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            },
        )
        .await;
    }

    /// Which API server this is.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The admin kubeconfig (cluster-admin: group `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A scratch directory that lives as long as the cluster (for kubectl's HOME, files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.api.url()
    }

    /// The sandbox, when this is one.
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.api.sandbox()
    }

    /// The real control plane, when this is one.
    pub fn real(&self) -> Option<&RealControlPlane> {
        self.api.real()
    }

    /// The dev stack's API server under this cluster.
    pub fn api(&self) -> &ApiServer {
        &self.api
    }

    /// A copy of the admin kubeconfig that reaches this API server at `url` instead
    /// (through a [`Cutter`], say); the serving certificate must be valid for it.
    pub fn kubeconfig_via(&self, url: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let ours = self.url();
        assert!(
            text.contains(&ours),
            "the admin kubeconfig names no server {ours}"
        );
        let path = self.dir().join(format!(
            "admin-via-{}.kubeconfig",
            url.replace([':', '/'], "_")
        ));
        std::fs::write(&path, text.replace(&ours, url)).unwrap();
        path
    }

    /// A kube client as the admin.
    pub async fn client(&self) -> Client {
        client_from_kubeconfig(&self.kubeconfig, None).await
    }

    /// A kube client as the admin impersonating `user` in `groups`.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Client {
        client_from_kubeconfig(&self.kubeconfig, Some((user, groups))).await
    }

    /// Creates a namespace (no error if it exists).
    pub async fn create_namespace(&self, name: &str) {
        create_namespace(&self.client().await, name).await;
    }

    /// A kubeconfig acting as service account `namespace/name` by bearer token.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let path = self.dir().join(format!("sa-{namespace}-{name}.kubeconfig"));
        self.api
            .service_account_kubeconfig(namespace, name, &path)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// A kube client from a kubeconfig file, optionally impersonating a user and groups
/// (the dev wing's, panicking on failure).
pub async fn client_from_kubeconfig(path: &Path, impersonate: Option<(&str, &[&str])>) -> Client {
    secret_relay_devstack::client_from_kubeconfig(path, impersonate)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Creates a namespace; an existing one is fine (the dev wing's, panicking on failure).
pub async fn create_namespace(client: &Client, name: &str) {
    secret_relay_devstack::create_namespace(client, name)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Waits until Secret `name` exists in `api` and satisfies `pred`; fails the test
/// with `what` after 30 s.
pub async fn appears(
    api: &kube::Api<k8s_openapi::api::core::v1::Secret>,
    name: &str,
    what: &str,
    pred: impl Fn(&k8s_openapi::api::core::v1::Secret) -> bool + Send + 'static,
) -> k8s_openapi::api::core::v1::Secret {
    within(
        what,
        kube::runtime::wait::await_condition(
            api.clone(),
            name,
            move |s: Option<&k8s_openapi::api::core::v1::Secret>| s.is_some_and(&pred),
        ),
    )
    .await
    .unwrap()
    .unwrap()
}

/// Waits until Secret `name` is gone from `api`; fails the test with `what` after 30 s.
pub async fn disappears(
    api: &kube::Api<k8s_openapi::api::core::v1::Secret>,
    name: &str,
    what: &str,
) {
    within(
        what,
        kube::runtime::wait::await_condition(
            api.clone(),
            name,
            kube::runtime::conditions::is_deleted(""),
        ),
    )
    .await
    .unwrap();
}

/// Awaits `fut`, failing the test with `what` after 30 s (real control planes on a
/// loaded 2-core machine are slower than the sandbox; this is a hang guard, not a
/// performance bound).
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Manifests with the test's CA as every `caBundle` and the port the webhook's service
/// really listens on as every `port: 443`.
pub fn with_ca_bundle_and_port(text: &str, ca_pem: &str, port: u16) -> String {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    assert!(
        text.contains("caBundle: Cg=="),
        "the manifests have no caBundle placeholder"
    );
    text.replace("caBundle: Cg==", &format!("caBundle: {bundle}"))
        .replace("port: 443", &format!("port: {port}"))
}

/// The kubectl to judge with: the first of `KUBECTL_BINARIES` when the test script set it
/// (it lists only versions the checks support, and may be empty), else `kubectl` on PATH.
pub fn kubectl() -> Option<String> {
    if let Ok(list) = std::env::var("KUBECTL_BINARIES") {
        return list.split(':').find(|s| !s.is_empty()).map(str::to_owned);
    }
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "kubectl".to_owned())
}

impl TestCluster {
    /// Runs kubectl against this cluster as the admin, with HOME in the cluster's dir
    /// (kubectl caches discovery there).
    pub fn kubectl(&self, kubectl: &str, args: &[&str]) -> std::process::Output {
        Command::new(kubectl)
            .env("HOME", self.dir())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap()
    }
}

/// One test named `$test` running `super::$scenario` on [`Flavor`]`::$flavor`, unless
/// [`Flavor::skipped`] says otherwise (for [`on_both!`] and [`on_all!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_test {
    ($test:ident, $flavor:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let flavor = $crate::Flavor::$flavor;
            if !flavor.skipped(stringify!($scenario)) {
                super::$scenario(flavor).await;
            }
        }
    };
}

/// Declares one test per [`Flavor`] for each scenario `async fn(Flavor)`: a module named
/// after the scenario with tests `sandbox` and `real_control_plane` (skipped only when
/// [`SKIP_REAL_ENV`] asks for it).
#[macro_export]
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                $crate::__scenario_test!(sandbox, Sandbox, $scenario);
                $crate::__scenario_test!(real_control_plane, Real, $scenario);
            }
        )*
    };
}

/// [`on_both!`] and a third test per scenario, `outside_clusters`, on the clusters
/// [`OUTSIDE_ENV`] and [`outside_cluster_env`] name (skipped, and printed, when
/// [`OUTSIDE_ENV`] is not set), one at a time ([`run_outside_scenario`]).
#[macro_export]
macro_rules! on_all {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                $crate::__scenario_test!(sandbox, Sandbox, $scenario);
                $crate::__scenario_test!(real_control_plane, Real, $scenario);
                #[test]
                fn outside_clusters() {
                    let flavor = $crate::Flavor::Outside;
                    if !flavor.skipped(stringify!($scenario)) {
                        $crate::run_outside_scenario(super::$scenario(flavor));
                    }
                }
            }
        )*
    };
}
