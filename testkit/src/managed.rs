//! The managed-cluster webhook of a [`TestCluster::managed`] cluster: `secret-relay
//! webhook` in managed-cluster mode, in process, as `manifests/managed-cluster` runs
//! it, so a cluster admin's edit of a down copy is refused while the agent keeps
//! writing its copies.
//!
//! [`TestCluster::managed`] reserves the webhook's address before the API server
//! starts (the sandbox dials webhook services from its configuration, the real server
//! through an `ExternalName` Service) and names the service accounts the manifests
//! run as. The first [`crate::Stack::start_agent`] on the cluster installs the rest,
//! with the stack's PKI: it applies the managed-cluster manifests (the webhook
//! configurations trusting the stack's CA, the base's policy ConfigMap and RBAC, the
//! agent's namespace, service account and Role), stores the stack's policy in that
//! ConfigMap, and starts the webhook with its own serving certificate, reading the
//! policy as its service account. The agent then acts as its service account: the
//! identity the manifests pass to the webhook as `--agent-service-account`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use secret_relay_devstack::Pki;
use secret_relay_devstack::manifests::{Install, Side, render};
use secret_relay_policy::Mode;
use secret_relay_runtime::CancellationToken;
use secret_relay_webhook::AppState;

use crate::stack::{Registration, SYSTEM_NAMESPACE, WEBHOOK_SERVICE, start_webhook};
use crate::{Flavor, TestCluster};

/// The name of both webhook configurations in the managed cluster's manifests.
pub const MANAGED_WEBHOOK_CONFIGURATION: &str = "secret-relay-managed";
/// The agent's namespace in the managed cluster's manifests (`agent.yaml`).
pub const AGENT_NAMESPACE: &str = "akuity";
/// The agent's service account in the managed cluster's manifests (`agent.yaml`).
pub const AGENT_SERVICE_ACCOUNT: &str = "secret-relay-agent";
/// The agent's user, as the managed cluster's webhook is told to recognise it.
pub const AGENT_USER: &str = "system:serviceaccount:akuity:secret-relay-agent";

/// The service accounts a managed cluster's components act as: the webhook (in
/// [`SYSTEM_NAMESPACE`]) and the agent.
pub(crate) fn service_accounts() -> Vec<(String, String)> {
    vec![
        (
            SYSTEM_NAMESPACE.to_owned(),
            "secret-relay-webhook".to_owned(),
        ),
        (AGENT_NAMESPACE.to_owned(), AGENT_SERVICE_ACCOUNT.to_owned()),
    ]
}

/// A managed cluster's webhook: reserved when the cluster starts, installed by the
/// first agent, stopped (and on an outside cluster unregistered) when the cluster is
/// dropped.
pub(crate) struct ManagedWebhook {
    /// The cluster's name (its webhook certificate is `webhook-NAME` in the PKI).
    name: String,
    /// Taken by the install.
    listener: Mutex<Option<tokio::net::TcpListener>>,
    addr: SocketAddr,
    installed: OnceLock<Installed>,
    /// Stops the webhook; cancelled on drop.
    shutdown: CancellationToken,
    /// Outside clusters: unregisters the webhook configurations on drop, after the
    /// webhook stopped.
    _registration: Option<Registration>,
}

struct Installed {
    state: AppState,
    agent_kubeconfig: PathBuf,
}

impl ManagedWebhook {
    /// The webhook of managed cluster `name`, to listen on `listener`.
    pub(crate) fn new(
        name: &str,
        listener: tokio::net::TcpListener,
        registration: Option<Registration>,
    ) -> ManagedWebhook {
        let addr = listener.local_addr().unwrap();
        ManagedWebhook {
            name: name.to_owned(),
            listener: Mutex::new(Some(listener)),
            addr,
            installed: OnceLock::new(),
            shutdown: CancellationToken::new(),
            _registration: registration,
        }
    }

    /// The webhook service and where it listens, for the API server to reach it.
    pub(crate) fn service(&self) -> (String, SocketAddr) {
        (WEBHOOK_SERVICE.to_owned(), self.addr)
    }

    /// Whether [`ManagedWebhook::install`] has run.
    pub(crate) fn is_installed(&self) -> bool {
        self.installed.get().is_some()
    }

    /// Cancelled once the cluster is dropped.
    pub(crate) fn gone(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The running webhook's state, once installed.
    pub(crate) fn state(&self) -> Option<&AppState> {
        self.installed.get().map(|i| &i.state)
    }

    /// Installs the webhook on `cluster` (once; later calls only answer) with a
    /// serving certificate from `ca` written to `pki`, and `policy` in the cluster's
    /// policy ConfigMap; returns the agent's kubeconfig, as its service account.
    pub(crate) async fn install(&self, cluster: &TestCluster, pki: &Pki, policy: &str) -> PathBuf {
        if let Some(installed) = self.installed.get() {
            return installed.agent_kubeconfig.clone();
        }
        let listener = self
            .listener
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| panic!("{}'s webhook is being installed twice", self.name));
        check_webhook_args();
        secret_relay_devstack::stack::install(
            cluster.api(),
            &Install {
                side: Side::ManagedCluster,
                namespace: AGENT_NAMESPACE,
                clusters: None,
                ca_pem: pki.ca.cert_pem(),
                webhook_port: self.addr.port(),
                sandbox: cluster.flavor() == Flavor::Sandbox,
            },
            policy,
        )
        .await
        .unwrap_or_else(|e| panic!("failed to install {}'s manifests: {e:#}", self.name));
        let state = start_webhook(
            cluster,
            pki,
            &format!("webhook-{}", self.name),
            listener,
            Mode::ManagedCluster {
                agent: AGENT_USER.to_owned(),
            },
            &self.shutdown,
        )
        .await;
        let agent_kubeconfig = cluster
            .service_account_kubeconfig(AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT)
            .await;
        let installed = self.installed.get_or_init(|| Installed {
            state,
            agent_kubeconfig,
        });
        installed.agent_kubeconfig.clone()
    }
}

impl Drop for ManagedWebhook {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Checks that the managed cluster's manifests run the webhook as this module does:
/// in managed-cluster mode, recognising [`AGENT_USER`] as the agent, reading the
/// policy ConfigMap of [`SYSTEM_NAMESPACE`].
/// The webhook in process runs as `manifests/managed-cluster` runs it: the flags its
/// Deployment passes say so.
fn check_webhook_args() {
    let rendered = render(Side::ManagedCluster, AGENT_NAMESPACE).unwrap();
    let deployment = rendered
        .iter()
        .find(|v| v["kind"] == "Deployment" && v["metadata"]["name"] == "secret-relay-webhook")
        .expect("manifests/managed-cluster has the webhook's Deployment");
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the webhook's container has args")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    for want in [
        "--mode=managed-cluster".to_owned(),
        format!("--agent-service-account={AGENT_USER}"),
        format!(
            "--policy-configmap={SYSTEM_NAMESPACE}/{}",
            crate::stack::POLICY_CONFIGMAP
        ),
    ] {
        assert!(
            args.contains(&want.as_str()),
            "manifests/managed-cluster runs the webhook without {want}: {args:?}"
        );
    }
}
