//! A control plane and one managed cluster per cluster of the policy, every server
//! running in this process: the control plane's webhook and a relay, and on each
//! managed cluster its own webhook in managed-cluster mode and its agent, acting as
//! the service account that webhook lets write down copies.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secret_relay_policy::{Mode, Policy};
use secret_relay_runtime::CancellationToken;

use crate::backend::{ApiServer, ApiServerOptions, Backend};
use crate::manifests::{Install, Side};
use crate::pki::Pki;
use crate::stack::{self, RelaySpec, SYSTEM_NAMESPACE, WEBHOOK_SERVICE, WebhookSpec};

/// How to start a [`Fleet`].
pub struct FleetConfig {
    /// Where its state goes: one directory per API server, `pki/`, kubeconfigs.
    pub dir: PathBuf,
    /// The API servers.
    pub backend: Backend,
    /// The policy document, stored on every cluster.
    pub policy: String,
    /// How the agents delete down copies.
    pub deletion: secret_relay_agent::Deletion,
    /// How often servers re-read their certificates and policy.
    pub poll_interval: Duration,
}

/// Everything a [`Fleet`] started.
pub struct Fleet {
    /// Its directory.
    pub dir: PathBuf,
    /// The policy it started with.
    pub policy: Policy,
    /// The PKI.
    pub pki: Pki,
    /// The control plane.
    pub control_plane: ApiServer,
    /// The control plane's webhook.
    pub webhook: secret_relay_webhook::AppState,
    /// The relay.
    pub relay: secret_relay_proxy::Started,
    /// The managed clusters, in the policy's order.
    pub clusters: Vec<ManagedCluster>,
    /// Stops every server.
    pub shutdown: CancellationToken,
}

/// One managed cluster, its webhook and its agent.
pub struct ManagedCluster {
    /// Its name in the policy.
    pub name: String,
    /// Its API server.
    pub api: ApiServer,
    /// Its webhook in managed-cluster mode.
    pub webhook: secret_relay_webhook::AppState,
    /// Its agent.
    pub agent: Arc<secret_relay_agent::Agent>,
}

impl Fleet {
    /// Starts the whole fleet; every server is ready when it returns.
    pub async fn start(config: FleetConfig, shutdown: CancellationToken) -> anyhow::Result<Fleet> {
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("failed to create {}", config.dir.display()))?;
        let policy = Policy::from_yaml(&config.policy).context("the policy is not valid")?;
        let names: Vec<String> = policy.clusters().map(|c| c.name.clone()).collect();
        let pki = Pki::generate(&config.dir.join("pki"), "secret-relay dev CA")?;
        pki.issue_clusters(&names)?;

        let (control_plane, webhook) =
            start_control_plane(&config, &policy, &names, &pki, &shutdown).await?;
        let relay_kubeconfig = control_plane
            .service_account_kubeconfig(
                SYSTEM_NAMESPACE,
                stack::RELAY_ACCOUNT,
                &config.dir.join("relay-account.kubeconfig"),
            )
            .await?;
        let (relay, _task) = stack::start_relay(
            RelaySpec {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                kubeconfig: relay_kubeconfig,
                tls: pki.issue_relay()?,
                admin_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                poll_interval: config.poll_interval,
                limits: secret_relay_proxy::Limits::default(),
            },
            shutdown.clone(),
        )
        .await?;
        let mut clusters = Vec::new();
        for name in &names {
            let cluster = start_managed(&config, &policy, name, &pki, relay.addr, &shutdown)
                .await
                .with_context(|| format!("failed to start managed cluster {name}"))?;
            clusters.push(cluster);
        }
        Ok(Fleet {
            dir: config.dir,
            policy,
            pki,
            control_plane,
            webhook,
            relay,
            clusters,
            shutdown,
        })
    }

    /// Stops every server and API server.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for c in self.clusters {
            c.api.stop().await;
        }
        self.control_plane.stop().await;
    }
}

async fn webhook_listener() -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// The control plane with the manifests installed, and its webhook.
async fn start_control_plane(
    config: &FleetConfig,
    policy: &Policy,
    names: &[String],
    pki: &Pki,
    shutdown: &CancellationToken,
) -> anyhow::Result<(ApiServer, secret_relay_webhook::AppState)> {
    let (listener, addr) = webhook_listener().await?;
    let api = ApiServer::start(
        config.backend,
        &config.dir.join("control-plane"),
        &ApiServerOptions {
            services: vec![(WEBHOOK_SERVICE.to_owned(), addr)],
            service_accounts: stack::control_plane_accounts(),
            ..ApiServerOptions::default()
        },
    )
    .await
    .context("failed to start the control plane")?;
    stack::install(
        &api,
        &Install {
            side: Side::ControlPlane,
            namespace: policy.control_plane_namespace(),
            clusters: Some(names),
            ca_pem: pki.ca.cert_pem(),
            webhook_port: addr.port(),
            sandbox: config.backend == Backend::Sandbox,
        },
        &config.policy,
    )
    .await?;
    let webhook = stack::start_webhook(
        WebhookSpec {
            api: &api,
            listener,
            tls: pki.issue_webhook("webhook")?,
            mode: Mode::ControlPlane,
            poll_interval: config.poll_interval,
        },
        shutdown,
    )
    .await?;
    Ok((api, webhook))
}

/// Managed cluster `name` with its manifests installed, its webhook and its agent.
async fn start_managed(
    config: &FleetConfig,
    policy: &Policy,
    name: &str,
    pki: &Pki,
    relay: SocketAddr,
    shutdown: &CancellationToken,
) -> anyhow::Result<ManagedCluster> {
    let agent_ns = policy.agent_namespace();
    let (listener, addr) = webhook_listener().await?;
    let dir = config.dir.join(name);
    let api = ApiServer::start(
        config.backend,
        &dir,
        &ApiServerOptions {
            services: vec![(WEBHOOK_SERVICE.to_owned(), addr)],
            service_accounts: stack::managed_accounts(agent_ns),
            ..ApiServerOptions::default()
        },
    )
    .await?;
    stack::install(
        &api,
        &Install {
            side: Side::ManagedCluster,
            namespace: agent_ns,
            clusters: None,
            ca_pem: pki.ca.cert_pem(),
            webhook_port: addr.port(),
            sandbox: config.backend == Backend::Sandbox,
        },
        &config.policy,
    )
    .await?;
    let agent_user = format!("system:serviceaccount:{agent_ns}:{}", stack::AGENT_ACCOUNT);
    let webhook = stack::start_webhook(
        WebhookSpec {
            api: &api,
            listener,
            tls: pki.issue_webhook(&format!("webhook-{name}"))?,
            mode: Mode::ManagedCluster { agent: agent_user },
            poll_interval: config.poll_interval,
        },
        shutdown,
    )
    .await?;
    let kubeconfig = api
        .service_account_kubeconfig(agent_ns, stack::AGENT_ACCOUNT, &agent_kubeconfig(&dir))
        .await?;
    let mut agent_config = stack::agent_config(pki, name, kubeconfig, relay, agent_ns);
    agent_config.deletion = config.deletion.clone();
    let started = stack::start_agent(agent_config, shutdown.clone()).await?;
    Ok(ManagedCluster {
        name: name.to_owned(),
        api,
        webhook,
        agent: started.agent,
    })
}

fn agent_kubeconfig(dir: &Path) -> PathBuf {
    dir.join("agent-account.kubeconfig")
}
