//! Each server of a stack started through its own `start`, as the manifests run it
//! on a node: the webhook and the relay as their service accounts, reading the
//! policy ConfigMap; agents with their cluster's certificate. Each returns once the
//! server is ready. [`crate::Fleet`] puts them together for the demo; the testkit
//! starts them one by one for its scenarios.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt as _};
use secret_relay_policy::{Mode, RelayIdentity};
use secret_relay_runtime::{CancellationToken, PolicySource};

use crate::backend::{ApiServer, create_namespace};
use crate::manifests::{self, Install};
use crate::pki::Pki;

/// The namespace of secret-relay's own objects (`manifests/base`).
pub const SYSTEM_NAMESPACE: &str = "secret-relay-system";
/// The policy ConfigMap in [`SYSTEM_NAMESPACE`] (`manifests/base/policy.yaml`).
pub const POLICY_CONFIGMAP: &str = "secret-relay-policy";
/// The webhook's Service, as the webhook configurations name it.
pub const WEBHOOK_SERVICE: &str = "secret-relay-webhook.secret-relay-system.svc";
/// The webhook's service account, in [`SYSTEM_NAMESPACE`].
pub const WEBHOOK_ACCOUNT: &str = "secret-relay-webhook";
/// The relay's service account, in [`SYSTEM_NAMESPACE`].
pub const RELAY_ACCOUNT: &str = "secret-relay";
/// The agent's service account, in the agent namespace
/// (`manifests/managed-cluster/agent.yaml`).
pub const AGENT_ACCOUNT: &str = "secret-relay-agent";

/// The service accounts a control plane's stack acts as.
pub fn control_plane_accounts() -> Vec<(String, String)> {
    vec![
        (SYSTEM_NAMESPACE.to_owned(), RELAY_ACCOUNT.to_owned()),
        (SYSTEM_NAMESPACE.to_owned(), WEBHOOK_ACCOUNT.to_owned()),
    ]
}

/// The service accounts a managed cluster's stack acts as.
pub fn managed_accounts(agent_namespace: &str) -> Vec<(String, String)> {
    vec![
        (SYSTEM_NAMESPACE.to_owned(), WEBHOOK_ACCOUNT.to_owned()),
        (agent_namespace.to_owned(), AGENT_ACCOUNT.to_owned()),
    ]
}

/// Installs `install`'s manifests on `api` (its namespace created first, as an
/// operator's is) and stores `policy` in the policy ConfigMap.
pub async fn install(api: &ApiServer, install: &Install<'_>, policy: &str) -> anyhow::Result<()> {
    let admin = api.client().await?;
    create_namespace(&admin, install.namespace).await?;
    let objects = manifests::for_stack(install)?;
    manifests::apply(&admin, &objects).await?;
    store_policy(&admin, policy).await.map(drop)
}

/// Stores `text` in the policy ConfigMap, which every component there hot-reloads;
/// returns the stored ConfigMap's resourceVersion (the revision a component logs when
/// it loads it).
pub async fn store_policy(admin: &Client, text: &str) -> anyhow::Result<String> {
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), SYSTEM_NAMESPACE);
    let data = serde_json::json!({"data": {"policy.yaml": text}});
    match cms
        .patch(
            POLICY_CONFIGMAP,
            &PatchParams::default(),
            &Patch::Merge(&data),
        )
        .await
    {
        Ok(stored) => Ok(stored.resource_version().unwrap_or_default()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {"name": POLICY_CONFIGMAP, "namespace": SYSTEM_NAMESPACE},
                "data": {"policy.yaml": text},
            }))?;
            let stored = cms.create(&PostParams::default(), &cm).await?;
            Ok(stored.resource_version().unwrap_or_default())
        }
        Err(e) => Err(e).context("failed to store the policy"),
    }
}

/// The policy ConfigMap, as the servers read it.
fn policy_source() -> PolicySource {
    PolicySource::ConfigMap {
        namespace: SYSTEM_NAMESPACE.to_owned(),
        name: POLICY_CONFIGMAP.to_owned(),
    }
}

/// How to run one webhook.
pub struct WebhookSpec<'a> {
    /// The API server it guards.
    pub api: &'a ApiServer,
    /// Where it listens (the API server's route to its Service points here).
    pub listener: tokio::net::TcpListener,
    /// Its serving certificate's files.
    pub tls: secret_relay_certs::TlsFiles,
    /// Control plane or managed cluster.
    pub mode: Mode,
    /// How often it re-reads its certificate and policy.
    pub poll_interval: Duration,
}

/// Runs the webhook as `secret-relay webhook` runs from the manifests: serving its
/// certificate, reading the policy ConfigMap as its own service account (on a real
/// server this proves the manifests' RBAC is enough), until `shutdown`. Returns once
/// the first policy is loaded.
pub async fn start_webhook(
    spec: WebhookSpec<'_>,
    shutdown: &CancellationToken,
) -> anyhow::Result<secret_relay_webhook::AppState> {
    let kubeconfig = spec
        .api
        .service_account_kubeconfig(
            SYSTEM_NAMESPACE,
            WEBHOOK_ACCOUNT,
            &spec.api.dir().join(format!("{WEBHOOK_ACCOUNT}.kubeconfig")),
        )
        .await?;
    let config = secret_relay_webhook::Config {
        addr: spec.listener.local_addr()?,
        tls: spec.tls,
        kubeconfig: Some(kubeconfig),
        policy: policy_source(),
        mode: spec.mode,
        relay: RelayIdentity::default(),
        poll_interval: spec.poll_interval,
        bench_baseline: false,
    };
    let (started, _stopped) =
        secret_relay_webhook::start_on(spec.listener, config, shutdown.clone())
            .await
            .context("failed to start the webhook")?;
    let policy = started.state.policy_state().clone();
    let probe = policy.clone();
    wait_ready(
        "the webhook",
        move || probe.is_ready(),
        policy.subscribe_reloads(),
    )
    .await?;
    Ok(started.state)
}

/// How to run one relay replica.
pub struct RelaySpec {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The relay's service account's kubeconfig on the control plane.
    pub kubeconfig: PathBuf,
    /// Its serving certificate's files, with the CA clients must chain to.
    pub tls: secret_relay_certs::TlsFiles,
    /// Its admin endpoints, if any.
    pub admin_addr: Option<SocketAddr>,
    /// How often it re-reads its certificate and policy.
    pub poll_interval: Duration,
    /// Its limits.
    pub limits: secret_relay_proxy::Limits,
}

/// Starts one relay replica until `shutdown`; returns once it is ready (policy
/// loaded, cache synced).
pub async fn start_relay(
    spec: RelaySpec,
    shutdown: CancellationToken,
) -> anyhow::Result<(secret_relay_proxy::Started, tokio::task::JoinHandle<()>)> {
    let config = secret_relay_proxy::Config {
        addr: spec.addr,
        tls: spec.tls,
        kubeconfig: Some(spec.kubeconfig),
        policy: policy_source(),
        admin_addr: spec.admin_addr,
        poll_interval: spec.poll_interval,
        limits: spec.limits,
    };
    let (started, task) = secret_relay_proxy::start(config, shutdown)
        .await
        .context("failed to start the relay")?;
    let admin = started.admin.clone();
    wait_ready(
        "the relay",
        move || admin.readiness().0,
        started.policy.subscribe(),
    )
    .await?;
    Ok((started, task))
}

/// The configuration of cluster `cluster`'s agent: its certificate from `pki`, the
/// managed cluster's `kubeconfig`, the relay at `relay`.
pub fn agent_config(
    pki: &Pki,
    cluster: &str,
    kubeconfig: PathBuf,
    relay: SocketAddr,
    namespace: &str,
) -> secret_relay_agent::Config {
    secret_relay_agent::Config {
        kubeconfig: Some(kubeconfig),
        namespace: namespace.to_owned(),
        relay: format!("https://{relay}"),
        tls_cert: pki.dir().join(format!("{cluster}.crt")),
        tls_key: pki.dir().join(format!("{cluster}.key")),
        relay_ca: pki.ca_file(),
        admin_addr: None,
        resync: Duration::from_secs(60),
        deletion: secret_relay_agent::Deletion::default(),
    }
}

/// Starts an agent until `shutdown`; returns once it is ready (both sides listed).
pub async fn start_agent(
    config: secret_relay_agent::Config,
    shutdown: CancellationToken,
) -> anyhow::Result<secret_relay_agent::Started> {
    let (started, _task) = secret_relay_agent::start(config, shutdown)
        .await
        .context("failed to start the agent")?;
    let agent = started.agent.clone();
    wait_ready(
        "the agent",
        move || agent.readiness().0,
        started.agent.subscribe(),
    )
    .await?;
    Ok(started)
}

/// Waits until `ready`, re-checking on each change and on a short tick (readiness
/// has parts that do not all bump the channel, a cache's first list).
pub async fn wait_ready(
    what: &str,
    ready: impl Fn() -> bool,
    mut changes: tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !ready() {
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await
    .with_context(|| format!("{what} was not ready within 60 s"))
}
