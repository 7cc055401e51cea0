//! A control plane with secret-relay installed through the dev wing
//! ([`secret_relay_devstack`]): the repository's manifests rendered and applied,
//! the webhook and any number of relay replicas running in process as their own
//! service accounts, and a PKI with a certificate per cluster. Agents it
//! starts on a [`TestCluster::managed`] cluster run beside that cluster's own webhook
//! in managed-cluster mode (see [`crate::managed`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use kube::Client;
use secret_relay_certs::Ca;
use secret_relay_devstack::Pki;
use secret_relay_devstack::manifests::{Install, Side};
use secret_relay_devstack::stack::{self as dev, RelaySpec, WebhookSpec};
use secret_relay_policy::Mode;
use secret_relay_proxy::{Limits, Started};
use secret_relay_runtime::CancellationToken;
use secret_relay_webhook::AppState;

use crate::deployed::Deployed;
use crate::{Flavor, OUTSIDE_WEBHOOK_HOST_ENV, Options, TestCluster, repo_root, within};

/// The name of both webhook configurations in the control plane's manifests.
const WEBHOOK_CONFIGURATION: &str = "secret-relay";
/// The policy ConfigMap in [`SYSTEM_NAMESPACE`], on the control plane and on every
/// managed cluster (`manifests/base/policy.yaml`).
pub(crate) const POLICY_CONFIGMAP: &str = dev::POLICY_CONFIGMAP;

/// The webhook's service name, as the manifests register it.
pub const WEBHOOK_SERVICE: &str = dev::WEBHOOK_SERVICE;
/// The namespace of secret-relay's own objects.
pub const SYSTEM_NAMESPACE: &str = dev::SYSTEM_NAMESPACE;
/// The webhook's service account user.
pub const WEBHOOK_USER: &str = "system:serviceaccount:secret-relay-system:secret-relay-webhook";
/// The relay's service account user.
pub const RELAY_USER: &str = "system:serviceaccount:secret-relay-system:secret-relay";

/// Poll intervals of the servers a test stack runs: a test can rotate a
/// certificate or store a policy and see it taken up quickly.
const POLL: Duration = Duration::from_millis(100);

/// How to build a [`Stack`].
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// The policy document stored in the policy ConfigMap.
    pub policy: String,
    /// Clusters to issue client certificates for (registered or not).
    pub certificates: Vec<String>,
    /// Run the webhook (the authoritative guard); off only to show what it guards.
    /// Its configurations are registered either way: with nothing answering them,
    /// failurePolicy Fail refuses every Secret write in the namespace they select.
    pub webhook: bool,
    /// The policy's `controlPlaneNamespace` when it is not `argocd`: the manifests are
    /// then installed through the README's overlay for it (the webhooks select it, the
    /// RBAC of `argocd` moves there), and the namespace is created.
    pub control_plane_namespace: Option<String>,
    /// How the agents delete down copies. The stack's default keeps a short grace
    /// (exercised by every deletion) and no budget; scenarios of the grace and the
    /// budget set their own.
    pub deletion: secret_relay_agent::Deletion,
}

/// The agents' deletion settings of a test stack by default.
pub fn test_deletion() -> secret_relay_agent::Deletion {
    secret_relay_agent::Deletion {
        grace: Duration::from_millis(500),
        budget_percent: 100,
        budget_window: Duration::from_secs(60),
        unregistered_grace: Duration::from_secs(2),
    }
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            policy: String::new(),
            certificates: vec!["cluster1".into(), "cluster2".into(), "cluster3".into()],
            webhook: true,
            control_plane_namespace: None,
            deletion: test_deletion(),
        }
    }
}

/// How to start one relay replica.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// Where it listens: `127.0.0.1:0` by default; a stopped replica's address to
    /// start another in its place (agents are configured with the relay's URL).
    pub addr: SocketAddr,
    /// Limits.
    pub limits: Limits,
    /// The control plane's API server as the relay reaches it, when not directly
    /// (through a [`crate::Cutter`], say).
    pub api_server: Option<String>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            limits: Limits::default(),
            api_server: None,
        }
    }
}

/// A control plane with secret-relay installed.
pub struct Stack {
    /// Outside clusters: unregisters the webhooks when the stack goes. First, so it
    /// runs kubectl (HOME in the cluster's scratch directory) before that is removed.
    _registration: Option<Registration>,
    /// The API server.
    pub cluster: TestCluster,
    /// The webhook's state (policy generation, readiness).
    pub webhook: Option<AppState>,
    /// Where the in-process webhook listens (none on a deployed control plane).
    webhook_addr: Option<SocketAddr>,
    /// The control plane's relay and webhook as pods (see [`crate::deployed`]).
    deployed: Option<Deployed>,
    pki: Pki,
    relay_kubeconfig: PathBuf,
    shutdown: CancellationToken,
    /// How the agents delete down copies.
    deletion: secret_relay_agent::Deletion,
    /// The policy document last stored, which managed clusters' webhooks get too.
    policy: Mutex<String>,
    /// The managed clusters whose webhook this stack installed: [`Stack::set_policy`]
    /// stores the policy in each that is still there.
    managed: Mutex<Vec<ManagedPolicy>>,
}

/// Where a managed cluster's webhook reads its policy.
struct ManagedPolicy {
    /// The managed cluster's admin kubeconfig.
    kubeconfig: PathBuf,
    /// Cancelled when the managed cluster is dropped.
    gone: CancellationToken,
}

/// The webhooks registered on an outside cluster: unregistered on drop, also when
/// the stack or managed cluster fails to start, so no webhook that nothing answers is
/// left behind (failurePolicy Fail would refuse every Secret write in the namespaces
/// it selects).
pub(crate) struct Registration {
    kubectl: String,
    kubeconfig: PathBuf,
    home: PathBuf,
    /// The name of both webhook configurations.
    configuration: &'static str,
    /// Unregister on drop.
    on_drop: bool,
}

/// One relay replica running in process.
pub struct RelayHandle {
    /// What the relay reports: its address, admin endpoints, policy and cache.
    pub started: Started,
    /// Stops this replica.
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Stack {
    /// Starts an API server of `flavor`, installs the control plane's manifests
    /// (through the dev stack, as kustomize renders them), stores `options.policy` and
    /// starts the webhook.
    ///
    /// On outside clusters whose control plane runs secret-relay as pods
    /// ([`crate::DEPLOYED_RELAY_ENV`]), it starts nothing: see [`Stack::on_deployed`].
    pub async fn start(flavor: Flavor, options: StackOptions) -> Stack {
        if let Some(deployed) = Deployed::from_env(flavor) {
            return Stack::on_deployed(deployed, options).await;
        }
        let listener = webhook_listener(flavor).await;
        let webhook_addr = listener.local_addr().unwrap();
        let cluster = TestCluster::start(
            flavor,
            Options {
                services: vec![(WEBHOOK_SERVICE.to_owned(), webhook_addr)],
                service_accounts: dev::control_plane_accounts(),
                ..Options::default()
            },
        )
        .await;
        let registration = (flavor == Flavor::Outside).then(|| {
            let kubectl = crate::kubectl()
                .expect("kubectl is needed to unregister the webhooks of an outside cluster");
            Registration::new(&cluster, &kubectl, WEBHOOK_CONFIGURATION)
        });
        if let Some(registration) = &registration {
            // The last scenario's webhook is gone: unregister it before emptying `argocd`
            // (it would refuse every write there), then start empty.
            registration.unregister().unwrap_or_else(|e| panic!("{e}"));
            cluster.empty_namespace("argocd").await;
            if let Some(namespace) = &options.control_plane_namespace {
                cluster.empty_namespace(namespace).await;
            }
        }
        cluster.create_namespace("argocd").await;
        // Not `pki`: the real control plane keeps its own PKI there.
        let pki = Pki::generate(
            &cluster.dir().join("secret-relay-pki"),
            "secret-relay test CA",
        )
        .unwrap();
        pki.issue_clusters(&options.certificates).unwrap();
        dev::install(
            cluster.api(),
            &Install {
                side: Side::ControlPlane,
                namespace: options
                    .control_plane_namespace
                    .as_deref()
                    .unwrap_or("argocd"),
                clusters: None,
                ca_pem: pki.ca.cert_pem(),
                webhook_port: webhook_addr.port(),
                sandbox: flavor == Flavor::Sandbox,
            },
            &options.policy,
        )
        .await
        .unwrap_or_else(|e| panic!("failed to install the control plane's manifests: {e:#}"));
        let relay_kubeconfig = cluster
            .service_account_kubeconfig(SYSTEM_NAMESPACE, "secret-relay")
            .await;

        let shutdown = CancellationToken::new();
        let webhook = if options.webhook {
            Some(
                start_webhook(
                    &cluster,
                    &pki,
                    "webhook",
                    listener,
                    Mode::ControlPlane,
                    &shutdown,
                )
                .await,
            )
        } else {
            None
        };
        Stack {
            cluster,
            webhook,
            webhook_addr: Some(webhook_addr),
            deployed: None,
            pki,
            relay_kubeconfig,
            shutdown,
            deletion: options.deletion,
            policy: Mutex::new(options.policy),
            managed: Mutex::new(Vec::new()),
            _registration: registration,
        }
    }

    /// The control plane whose relay and webhook run as pods: the outside control
    /// plane emptied of the last scenario's hub copies (with the webhooks unregistered
    /// meanwhile, as they refuse the admin's deletes of cluster-owned copies), its
    /// webhooks registered again, `options.policy` stored and loaded by every pod, and
    /// cluster certificates from the deployed CA.
    async fn on_deployed(deployed: Deployed, options: StackOptions) -> Stack {
        assert!(
            options.webhook && options.control_plane_namespace.is_none(),
            "a deployed control plane runs its webhook, for argocd, as its manifests say"
        );
        let cluster = TestCluster::start(Flavor::Outside, Options::default()).await;
        let kubectl = crate::kubectl()
            .expect("kubectl is needed to register the webhooks of a deployed control plane");
        Registration::new(&cluster, &kubectl, WEBHOOK_CONFIGURATION)
            .unregister_now()
            .unwrap_or_else(|e| panic!("{e}"));
        cluster.empty_namespace("argocd").await;
        let pki = deployed.pki(&cluster.dir().join("secret-relay-pki"));
        pki.issue_clusters(&options.certificates).unwrap();
        let admin = cluster.client().await;
        let revision = set_policy(&admin, &options.policy).await;
        deployed.register_webhooks(&cluster, &kubectl).await;
        deployed.wait_policy_loaded(&admin, &revision).await;
        Stack {
            cluster,
            webhook: None,
            webhook_addr: None,
            deployed: Some(deployed),
            pki,
            relay_kubeconfig: PathBuf::new(),
            shutdown: CancellationToken::new(),
            deletion: options.deletion,
            policy: Mutex::new(options.policy),
            managed: Mutex::new(Vec::new()),
            _registration: None,
        }
    }

    /// Where the webhook listens (its service routes there); its serving certificate
    /// is `webhook.crt` and `webhook.key` in [`Stack::pki`], re-read every 100 ms.
    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook_addr
            .expect("the webhook of a deployed control plane runs as pods, not in process")
    }

    /// The deployed relay's Service, when the control plane runs secret-relay as pods.
    pub fn deployed_relay(&self) -> Option<SocketAddr> {
        self.deployed.as_ref().map(|d| d.relay)
    }

    /// A token cancelled when the stack goes (or with [`Stack::stop`]).
    pub fn child_token(&self) -> CancellationToken {
        self.shutdown.child_token()
    }

    /// Starts one relay replica as the relay's service account, and waits until it is
    /// ready (policy loaded, cache synced).
    pub async fn start_relay(&self) -> RelayHandle {
        self.start_relay_with(Limits::default()).await
    }

    /// [`Stack::start_relay`] with limits.
    pub async fn start_relay_with(&self, limits: Limits) -> RelayHandle {
        self.start_relay_with_options(RelayOptions {
            limits,
            ..RelayOptions::default()
        })
        .await
    }

    /// [`Stack::start_relay`] on `addr`: in place of a stopped replica, at the URL its
    /// agents know.
    pub async fn start_relay_at(&self, addr: SocketAddr) -> RelayHandle {
        self.start_relay_with_options(RelayOptions {
            addr,
            ..RelayOptions::default()
        })
        .await
    }

    /// [`Stack::start_relay`] with options.
    pub async fn start_relay_with_options(&self, options: RelayOptions) -> RelayHandle {
        assert!(
            self.deployed.is_none(),
            "this scenario starts relays in process; the deployed relay runs as pods with the manifests' settings"
        );
        let RelayOptions {
            addr,
            limits,
            api_server,
        } = options;
        let kubeconfig = match api_server {
            None => self.relay_kubeconfig.clone(),
            Some(url) => {
                let text = std::fs::read_to_string(&self.relay_kubeconfig).unwrap();
                let path = self.cluster.dir().join(format!(
                    "sa-relay-via-{}.kubeconfig",
                    url.replace([':', '/'], "_")
                ));
                std::fs::write(&path, text.replace(&self.cluster.url(), &url)).unwrap();
                path
            }
        };
        let shutdown = self.shutdown.child_token();
        let spec = RelaySpec {
            addr,
            kubeconfig,
            tls: self.pki.issue_relay().unwrap(),
            admin_addr: None,
            poll_interval: POLL,
            limits,
        };
        let (started, task) = dev::start_relay(spec, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        RelayHandle {
            started,
            shutdown,
            task,
        }
    }

    /// A kubeconfig that reaches `relay` as cluster `cluster` (its client certificate).
    pub fn relay_kubeconfig(&self, relay: &RelayHandle, cluster: &str) -> PathBuf {
        self.relay_kubeconfig_at(relay.started.addr, cluster)
    }

    /// A kubeconfig that reaches the relay at `addr` as cluster `cluster`.
    pub fn relay_kubeconfig_at(&self, addr: SocketAddr, cluster: &str) -> PathBuf {
        let path = self.cluster.dir().join(format!(
            "relay-{}-{}-{cluster}.kubeconfig",
            addr.ip(),
            addr.port()
        ));
        self.pki
            .relay_kubeconfig(addr, cluster, "argocd", &path)
            .unwrap()
    }

    /// A kube client reaching `relay` as cluster `cluster`.
    pub async fn relay_client(&self, relay: &RelayHandle, cluster: &str) -> Client {
        self.relay_client_at(relay.started.addr, cluster).await
    }

    /// A kube client reaching the relay at `addr` as cluster `cluster`.
    pub async fn relay_client_at(&self, addr: SocketAddr, cluster: &str) -> Client {
        crate::client_from_kubeconfig(&self.relay_kubeconfig_at(addr, cluster), None).await
    }

    /// The PKI's CA: it signs the webhook's and relays' serving certificates and the
    /// cluster certificates.
    pub fn ca(&self) -> &Ca {
        &self.pki.ca
    }

    /// The PKI directory: `ca.crt`, `<cluster>.crt`/`.key`, `relay.crt`/`.key`,
    /// `webhook.crt`/`.key`.
    pub fn pki(&self) -> &Path {
        self.pki.dir()
    }

    /// Stores a new policy document in the ConfigMap, and in the policy ConfigMap of
    /// every managed cluster whose webhook this stack installed (one policy everywhere,
    /// as an operator keeps it).
    pub async fn set_policy(&self, text: &str) {
        text.clone_into(&mut self.policy.lock().unwrap());
        let admin = self.cluster.client().await;
        let revision = set_policy(&admin, text).await;
        if let Some(deployed) = &self.deployed {
            deployed.wait_policy_loaded(&admin, &revision).await;
        }
        let managed: Vec<PathBuf> = self
            .managed
            .lock()
            .unwrap()
            .iter()
            .filter(|m| !m.gone.is_cancelled())
            .map(|m| m.kubeconfig.clone())
            .collect();
        for kubeconfig in managed {
            set_policy(
                &crate::client_from_kubeconfig(&kubeconfig, None).await,
                text,
            )
            .await;
        }
    }

    /// Waits until `relay` serves policy generation `generation` or newer.
    pub async fn relay_generation(relay: &RelayHandle, generation: u64) {
        let mut rx = relay.started.policy.subscribe();
        within(
            "the relay's policy generation",
            rx.wait_for(|g| *g >= generation),
        )
        .await
        .unwrap();
    }
}

impl Stack {
    /// The configuration of cluster `name`'s agent: its certificate from this stack's
    /// PKI, the managed cluster's `kubeconfig`, the relay at `relay_addr`, namespace
    /// `akuity`.
    pub fn agent_config(
        &self,
        name: &str,
        kubeconfig: PathBuf,
        relay_addr: SocketAddr,
        resync: Duration,
    ) -> secret_relay_agent::Config {
        let mut config = dev::agent_config(&self.pki, name, kubeconfig, relay_addr, "akuity");
        config.resync = resync;
        config.deletion = self.deletion.clone();
        config
    }

    /// Starts cluster `name`'s agent on `managed` against `relay_addr` until `shutdown`,
    /// and waits until it is ready (both sides listed).
    ///
    /// On a cluster from [`TestCluster::managed`] the first agent also installs that
    /// cluster's webhook in managed-cluster mode (see [`crate::managed`]), which runs as
    /// long as the cluster; the agent then acts as its own service account, the
    /// identity that webhook lets maintain down copies. Elsewhere the agent acts as
    /// the cluster's admin and nothing guards its down copies.
    pub async fn start_agent(
        &self,
        name: &str,
        managed: &TestCluster,
        relay_addr: SocketAddr,
        resync: Duration,
        shutdown: CancellationToken,
    ) -> std::sync::Arc<secret_relay_agent::Agent> {
        self.start_agent_started(name, managed, relay_addr, resync, shutdown)
            .await
            .agent
    }

    /// [`Stack::start_agent`], returning all the agent reports (its admin endpoints too).
    pub async fn start_agent_started(
        &self,
        name: &str,
        managed: &TestCluster,
        relay_addr: SocketAddr,
        resync: Duration,
        shutdown: CancellationToken,
    ) -> secret_relay_agent::Started {
        managed.create_namespace("akuity").await;
        let kubeconfig = match managed.managed_slot() {
            Some(webhook) => {
                if !webhook.is_installed() {
                    // Listed first: a policy stored meanwhile reaches this cluster too.
                    self.managed.lock().unwrap().push(ManagedPolicy {
                        kubeconfig: managed.kubeconfig().to_path_buf(),
                        gone: webhook.gone(),
                    });
                }
                let policy = self.policy.lock().unwrap().clone();
                webhook.install(managed, &self.pki, &policy).await
            }
            None => managed.kubeconfig().to_path_buf(),
        };
        let config = self.agent_config(name, kubeconfig, relay_addr, resync);
        dev::start_agent(config, shutdown)
            .await
            .unwrap_or_else(|e| panic!("{name}'s agent: {e:#}"))
    }
}

impl RelayHandle {
    /// Waits until this replica's cache holds `name` (its decisions read the cache).
    pub async fn wait_cached(&self, name: &str) {
        wait_cached(&self.started.cache, name).await;
    }

    /// Stops the replica and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Registration {
    /// The webhook configurations named `configuration` on outside cluster `cluster`.
    pub(crate) fn new(
        cluster: &TestCluster,
        kubectl: &str,
        configuration: &'static str,
    ) -> Registration {
        Registration {
            kubectl: kubectl.to_owned(),
            kubeconfig: cluster.kubeconfig().to_path_buf(),
            home: cluster.dir().to_path_buf(),
            configuration,
            on_drop: true,
        }
    }

    /// Deletes both webhook configurations, if present, and keeps them unregistered
    /// (no unregistering on drop: they are registered again meanwhile).
    pub(crate) fn unregister_now(mut self) -> Result<(), String> {
        self.on_drop = false;
        self.unregister()
    }

    /// Deletes both webhook configurations, if present.
    pub(crate) fn unregister(&self) -> Result<(), String> {
        let out = std::process::Command::new(&self.kubectl)
            .env("HOME", &self.home)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "delete",
                "--ignore-not-found",
                "--wait=false",
                &format!("mutatingwebhookconfiguration/{}", self.configuration),
                &format!("validatingwebhookconfiguration/{}", self.configuration),
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "failed to unregister secret-relay's webhooks {} from {}: {}",
                self.configuration,
                self.kubeconfig.display(),
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => Err(format!(
                "failed to run kubectl to unregister the webhooks: {e}"
            )),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.on_drop {
            return;
        }
        if let Err(e) = self.unregister() {
            eprintln!("!!! {e}");
        }
    }
}

/// Waits until `cache` holds `name`.
pub async fn wait_cached(cache: &secret_relay_proxy::HubCache, name: &str) {
    within(&format!("the relay's cache to hold {name}"), async {
        let mut events = cache.subscribe();
        while cache.get(name).is_none() {
            // A lagged receiver only means many events; look again.
            let _ = events.recv().await;
        }
    })
    .await;
}

/// Stores `text` in the policy ConfigMap the manifests created; returns the stored
/// resourceVersion.
pub(crate) async fn set_policy(admin: &Client, text: &str) -> String {
    dev::store_policy(admin, text)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Where an in-process webhook listens: loopback, or every interface when an outside
/// API server elsewhere reaches it (through [`OUTSIDE_WEBHOOK_HOST_ENV`]).
pub(crate) async fn webhook_listener(flavor: Flavor) -> tokio::net::TcpListener {
    let bind = if flavor == Flavor::Outside && std::env::var_os(OUTSIDE_WEBHOOK_HOST_ENV).is_some()
    {
        "0.0.0.0:0"
    } else {
        "127.0.0.1:0"
    };
    tokio::net::TcpListener::bind(bind).await.unwrap()
}

/// Runs the webhook on `listener` for `cluster` in `mode` through the dev stack, as
/// the manifests run `secret-relay webhook` there: serving a certificate from `pki`
/// written to `PKI/STEM.crt` and `.key` and re-read every 100 ms (a test can rotate
/// it without a restart), reading the policy ConfigMap as its own service account
/// (on the real server this proves the repository's RBAC is enough), until
/// `shutdown`. Returns once the first policy is loaded.
pub(crate) async fn start_webhook(
    cluster: &TestCluster,
    pki: &Pki,
    stem: &str,
    listener: tokio::net::TcpListener,
    mode: Mode,
    shutdown: &CancellationToken,
) -> AppState {
    let spec = WebhookSpec {
        api: cluster.api(),
        listener,
        tls: pki.issue_webhook(stem).unwrap(),
        mode,
        poll_interval: POLL,
    };
    dev::start_webhook(spec, shutdown)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The README's overlay ("Another namespace") of `manifests/BASE` (`control-plane` or
/// `managed-cluster`) for namespace `namespace`, exactly as documented but for the
/// path to the base and the example namespace: written to `DIR/overlay-BASE`, whose
/// path is returned for `kubectl kustomize`.
pub fn namespace_overlay(dir: &Path, base: &str, namespace: &str) -> PathBuf {
    let example = match base {
        "control-plane" => "hub",
        "managed-cluster" => "agents",
        other => panic!("no overlay documented for {other}"),
    };
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let marker = format!("<!-- overlay: {base} ");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker:?}"));
    let block = &readme[start..];
    let body = block
        .find("```yaml\n")
        .map(|i| &block[i + "```yaml\n".len()..])
        .unwrap_or_else(|| panic!("README.md: no yaml block after {marker:?}"));
    let text = &body[..body.find("```").unwrap()];

    let overlay = dir.join(format!("overlay-{base}"));
    std::fs::create_dir_all(&overlay).unwrap();
    // kustomize takes only relative paths to a base: up to / from the overlay.
    let up = "../".repeat(overlay.components().count() - 1);
    let target = repo_root().join("manifests").join(base);
    let relative = format!("{up}{}", target.to_str().unwrap().trim_start_matches('/'));
    let documented = format!("../secret-relay/manifests/{base}");
    assert!(text.contains(&documented), "README.md's overlay of {base}");
    let mut text = text.replace(&documented, &relative);
    for (from, to) in [
        (format!("[{example}]"), format!("[{namespace}]")),
        (
            format!("value: {example}\n"),
            format!("value: {namespace}\n"),
        ),
    ] {
        text = text.replace(&from, &to);
    }
    assert!(
        !text.contains(example) || namespace.contains(example),
        "README.md's overlay of {base} names {example} elsewhere:\n{text}"
    );
    std::fs::write(overlay.join("kustomization.yaml"), text).unwrap();
    overlay
}
