//! `secret-relay demo`: a control plane and one managed cluster per cluster of the
//! policy, with the webhook, the relay, the agents and each managed cluster's own
//! webhook in managed-cluster mode, all in this process. By
//! default the API servers are sandboxes (no Go, no Docker, no cluster); with
//! `--control-plane real` they are real kube-apiservers from
//! `scripts/control-plane.sh`.

mod backend;
mod scenario;
mod view;

use std::io::IsTerminal as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use secret_relay_certs::{Ca, IssuedCert, TlsFiles, Validity};
use secret_relay_policy::{Mode, Policy, RelayIdentity};
use secret_relay_runtime::{CancellationToken, PolicySource};

use backend::{ApiServer, Backend, CONTROL_PLANE_ACCOUNTS};

/// The example policy: two clusters; repository credentials, and the adoption of
/// `argocd-notifications-secret`, from prod clusters.
pub(crate) const EXAMPLE_POLICY: &str = "\
controlPlaneNamespace: argocd
agentNamespace: akuity
clusters:
  - name: cluster1
    labels: { env: prod, my-label: cluster1 }
  - name: cluster2
    labels: { env: staging, my-label: cluster2 }
secretSources:
  - clusterSelector: env=prod
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
  # Argo CD's own label on argocd-notifications-secret: what lets a cluster adopt it.
  - clusterSelector: env=prod
    labelSelector: app.kubernetes.io/component=notifications-controller
";

const WEBHOOK_SERVICE: &str = "secret-relay-webhook.secret-relay-system.svc";
const SYSTEM_NAMESPACE: &str = "secret-relay-system";
const POLICY_CONFIGMAP: &str = "secret-relay-policy";
/// The repository's webhook registrations, applied through the API as kubectl would:
/// the control plane's, and each managed cluster's (the webhook in managed-cluster
/// mode), with the namespace each selects.
const WEBHOOKS_MANIFEST: Webhooks = Webhooks {
    text: include_str!("../../manifests/control-plane/webhooks.yaml"),
    selects: "argocd",
};
const MANAGED_WEBHOOKS_MANIFEST: Webhooks = Webhooks {
    text: include_str!("../../manifests/managed-cluster/webhooks.yaml"),
    selects: "akuity",
};
/// The agent's service account on a managed cluster (`manifests/managed-cluster`), in
/// the agent namespace: the identity its webhook lets write down copies.
const AGENT_SERVICE_ACCOUNT: &str = "secret-relay-agent";

/// Webhook configurations of the manifests, and the namespace they select there.
struct Webhooks {
    text: &'static str,
    selects: &'static str,
}

/// Flags of `secret-relay demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the demo writes its state: kubeconfigs, the PKI, logs and `ready`.
    #[arg(long, env = "SECRET_RELAY_DEMO_DIR")]
    dir: Option<PathBuf>,
    /// A policy document to use instead of the built-in example.
    #[arg(long, env = "SECRET_RELAY_DEMO_POLICY")]
    policy: Option<PathBuf>,
    /// The API servers: in-process sandboxes, or real kube-apiservers from
    /// scripts/control-plane.sh (needs Go; the first run builds them).
    #[arg(long, value_enum, default_value_t = Backend::Sandbox)]
    control_plane: Backend,
    /// Run the whole behaviour of DESIGN.md through the Kubernetes API, print a
    /// pass/fail table and exit 0 only if every check passed.
    #[arg(long)]
    scenario: bool,
    /// Log as JSON lines.
    #[arg(long, env = "SECRET_RELAY_LOG_JSON")]
    log_json: bool,
}

/// Everything the demo started.
pub(crate) struct Demo {
    pub(crate) dir: PathBuf,
    pub(crate) policy: Policy,
    pub(crate) control_plane: ApiServer,
    pub(crate) clusters: Vec<ManagedCluster>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) relay: secret_relay_proxy::Started,
    /// The Secrets page, as the control plane's admin.
    pub(crate) ui: Option<secret_relay_ui::Started>,
}

/// One managed cluster, its webhook and its agent.
pub(crate) struct ManagedCluster {
    pub(crate) name: String,
    pub(crate) api: ApiServer,
    pub(crate) agent: Arc<secret_relay_agent::Agent>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let interactive = std::io::stdout().is_terminal() && !args.scenario;
    if args.scenario && std::env::var_os("SECRET_RELAY_LOG").is_none() {
        // The table is the output; only problems are logged.
        let filter = tracing_subscriber::EnvFilter::new("warn");
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else if !interactive || args.log_json {
        crate::init_tracing(args.log_json);
    } else {
        // The live view owns the terminal; logs go to D/demo.log.
        let dir = demo_dir(args.dir.as_deref());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let log =
            std::fs::File::create(dir.join("demo.log")).context("failed to create demo.log")?;
        let filter = tracing_subscriber::EnvFilter::try_from_env("SECRET_RELAY_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::sync::Mutex::new(log))
            .with_ansi(false)
            .init();
    }
    let runtime = tokio::runtime::Runtime::new().context("failed to start the tokio runtime")?;
    runtime.block_on(async move {
        let shutdown = secret_relay_runtime::shutdown_signal();
        let demo = start(&args, shutdown.clone()).await?;
        let code = if args.scenario {
            let passed = scenario::run(&demo).await;
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        } else {
            print_tour(&demo);
            if interactive {
                view::live(&demo, shutdown.clone()).await;
            } else {
                view::plain(&demo, shutdown.clone()).await;
            }
            ExitCode::SUCCESS
        };
        demo.shutdown.cancel();
        demo.stop().await;
        Ok(code)
    })
}

fn demo_dir(dir: Option<&Path>) -> PathBuf {
    dir.map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::temp_dir().join("secret-relay-demo"))
}

/// Starts the whole demo and writes `D/ready` last.
pub(crate) async fn start(args: &Args, shutdown: CancellationToken) -> anyhow::Result<Demo> {
    let dir = demo_dir(args.dir.as_deref());
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join("ready"));
    let policy_text = match &args.policy {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the policy {}", path.display()))?,
        None => EXAMPLE_POLICY.to_owned(),
    };
    let policy = Policy::from_yaml(&policy_text).context("the policy is not valid")?;
    let cp_ns = policy.control_plane_namespace().to_owned();
    let agent_ns = policy.agent_namespace().to_owned();

    // The PKI: one CA signs the webhook's and the relay's serving certificates and
    // every cluster's client certificate.
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki)?;
    let ca = Ca::generate("secret-relay demo CA", Validity::ca_default())?;
    write_secret_file(&pki.join("ca.key"), ca.key_pem())?;
    std::fs::write(pki.join("ca.crt"), ca.cert_pem())?;
    let localhost = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let webhook_cert = ca.issue_server(
        WEBHOOK_SERVICE,
        &[WEBHOOK_SERVICE.to_owned()],
        &localhost,
        Validity::default(),
    )?;
    let relay_cert = ca.issue_server(
        "secret-relay",
        &["localhost".to_owned()],
        &localhost,
        Validity::default(),
    )?;
    std::fs::write(pki.join("relay.crt"), &relay_cert.cert_pem)?;
    write_secret_file(&pki.join("relay.key"), &relay_cert.key_pem)?;
    let cluster_names: Vec<String> = policy.clusters().map(|c| c.name.clone()).collect();
    for name in &cluster_names {
        let cert = ca.issue_cluster(name, Validity::default())?;
        std::fs::write(pki.join(format!("{name}.crt")), &cert.cert_pem)?;
        write_secret_file(&pki.join(format!("{name}.key")), &cert.key_pem)?;
    }

    // The control plane, with the webhook's service routed to the in-process webhook.
    let webhook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let webhook_addr = webhook_listener.local_addr()?;
    let control_plane = ApiServer::start(
        args.control_plane,
        &dir.join("control-plane"),
        &[(WEBHOOK_SERVICE, webhook_addr)],
        &CONTROL_PLANE_ACCOUNTS,
    )
    .await
    .context("failed to start the control plane")?;
    std::fs::copy(
        control_plane.kubeconfig(),
        dir.join("control-plane.kubeconfig"),
    )?;
    let admin = control_plane.client().await?;
    for ns in [SYSTEM_NAMESPACE, cp_ns.as_str()] {
        backend::create_namespace(&admin, ns).await?;
    }
    control_plane.install_rbac(&cluster_names, &cp_ns).await?;
    // The policy ConfigMap: editing it with kubectl hot-reloads every component.
    store_policy(&admin, &policy_text).await?;
    register_webhooks(
        &admin,
        &WEBHOOKS_MANIFEST,
        ca.cert_pem(),
        webhook_addr.port(),
        &cp_ns,
    )
    .await?;
    start_webhook(
        "the webhook",
        &control_plane,
        webhook_listener,
        &pki,
        "webhook",
        &webhook_cert,
        Mode::ControlPlane,
        &shutdown,
    )
    .await?;

    // The relay, as its own service account.
    let relay_kubeconfig = control_plane
        .service_account_kubeconfig(
            SYSTEM_NAMESPACE,
            "secret-relay",
            &dir.join("relay-account.kubeconfig"),
        )
        .await?;
    let (relay, _relay_task) = secret_relay_proxy::start(
        secret_relay_proxy::Config {
            addr: "127.0.0.1:0".parse()?,
            tls: TlsFiles {
                cert: pki.join("relay.crt"),
                key: pki.join("relay.key"),
                client_ca: Some(pki.join("ca.crt")),
            },
            kubeconfig: Some(relay_kubeconfig),
            policy: PolicySource::ConfigMap {
                namespace: SYSTEM_NAMESPACE.to_owned(),
                name: POLICY_CONFIGMAP.to_owned(),
            },
            admin_addr: Some("127.0.0.1:0".parse()?),
            poll_interval: Duration::from_secs(1),
            limits: secret_relay_proxy::Limits::default(),
        },
        shutdown.clone(),
    )
    .await
    .context("failed to start the relay")?;
    wait_ready(
        "the relay",
        || relay.admin.readiness().0,
        relay.policy.subscribe(),
    )
    .await?;

    // One managed cluster per cluster of the policy, each with its own webhook in
    // managed-cluster mode (the same policy in its own ConfigMap, its own serving
    // certificate) and its agent acting as the service account that webhook lets
    // write down copies; anyone else, cluster admins too, is refused.
    let agent_user = format!("system:serviceaccount:{agent_ns}:{AGENT_SERVICE_ACCOUNT}");
    let mut clusters = Vec::new();
    for name in &cluster_names {
        let webhook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let webhook_addr = webhook_listener.local_addr()?;
        let api = ApiServer::start(
            args.control_plane,
            &dir.join(name),
            &[(WEBHOOK_SERVICE, webhook_addr)],
            &[
                (SYSTEM_NAMESPACE, "secret-relay-webhook"),
                (&agent_ns, AGENT_SERVICE_ACCOUNT),
            ],
        )
        .await
        .with_context(|| format!("failed to start managed cluster {name}"))?;
        std::fs::copy(api.kubeconfig(), dir.join(format!("{name}.kubeconfig")))?;
        let cluster_admin = api.client().await?;
        for ns in [SYSTEM_NAMESPACE, agent_ns.as_str()] {
            backend::create_namespace(&cluster_admin, ns).await?;
        }
        api.install_managed_rbac(&agent_ns).await?;
        store_policy(&cluster_admin, &policy_text).await?;
        register_webhooks(
            &cluster_admin,
            &MANAGED_WEBHOOKS_MANIFEST,
            ca.cert_pem(),
            webhook_addr.port(),
            &agent_ns,
        )
        .await?;
        let cert = ca.issue_server(
            WEBHOOK_SERVICE,
            &[WEBHOOK_SERVICE.to_owned()],
            &localhost,
            Validity::default(),
        )?;
        start_webhook(
            &format!("the webhook of {name}"),
            &api,
            webhook_listener,
            &pki,
            &format!("webhook-{name}"),
            &cert,
            Mode::ManagedCluster {
                agent: agent_user.clone(),
            },
            &shutdown,
        )
        .await?;
        let agent_kubeconfig = api
            .service_account_kubeconfig(
                &agent_ns,
                AGENT_SERVICE_ACCOUNT,
                &dir.join(name).join("agent-account.kubeconfig"),
            )
            .await?;
        write_relay_kubeconfig(&dir, &pki, relay.addr, name, &cp_ns)?;
        let (started, _task) = secret_relay_agent::start(
            secret_relay_agent::Config {
                kubeconfig: Some(agent_kubeconfig),
                namespace: agent_ns.clone(),
                relay: format!("https://{}", relay.addr),
                tls_cert: pki.join(format!("{name}.crt")),
                tls_key: pki.join(format!("{name}.key")),
                relay_ca: pki.join("ca.crt"),
                admin_addr: None,
                resync: Duration::from_secs(60),
                // The product's budget, and a grace short enough to watch a
                // deletion reach the clusters in a demo.
                deletion: secret_relay_agent::Deletion {
                    grace: Duration::from_secs(10),
                    ..secret_relay_agent::Deletion::default()
                },
            },
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("failed to start the agent of {name}"))?;
        let agent = started.agent;
        let probe = agent.clone();
        wait_ready(
            &format!("the agent of {name}"),
            move || probe.readiness().0,
            agent.subscribe(),
        )
        .await?;
        clusters.push(ManagedCluster {
            name: name.clone(),
            api,
            agent,
        });
    }
    // The Secrets page, as the control plane's admin, reading each cluster's reports.
    let ui = match secret_relay_ui::start(
        secret_relay_ui::Config {
            addr: "127.0.0.1:0".parse()?,
            kubeconfig: Some(dir.join("control-plane.kubeconfig")),
            context: None,
            policy_namespace: SYSTEM_NAMESPACE.to_owned(),
            policy_name: POLICY_CONFIGMAP.to_owned(),
            clusters: clusters
                .iter()
                .map(|c| secret_relay_ui::ClusterKubeconfig {
                    name: c.name.clone(),
                    kubeconfig: c.api.kubeconfig(),
                })
                .collect(),
            relay_metrics: relay.admin_addr.map(|a| format!("http://{a}/metrics")),
            relay_metrics_interval: Duration::from_secs(5),
            token: None,
        },
        shutdown.clone(),
    )
    .await
    {
        Ok((started, _task)) => Some(started),
        Err(err) => {
            tracing::warn!(error = %err, "the Secrets page did not start; the demo goes on without it");
            None
        }
    };
    std::fs::write(dir.join("ready"), format!("relay https://{}\n", relay.addr))?;
    Ok(Demo {
        dir,
        policy,
        control_plane,
        clusters,
        shutdown,
        relay,
        ui,
    })
}

impl Demo {
    /// Stops every component and API server.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        for c in self.clusters {
            c.api.stop().await;
        }
        self.control_plane.stop().await;
    }

    /// The admin client of the control plane.
    pub(crate) async fn control_plane_client(&self) -> anyhow::Result<Client> {
        self.control_plane.client().await
    }
}

async fn wait_ready(
    what: &str,
    ready: impl Fn() -> bool,
    mut changes: tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !ready() {
            // Readiness has parts that do not all bump the channel (a cache's first
            // list): re-check on a change or after a short tick.
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
    .await
    .with_context(|| format!("{what} was not ready within 60 s"))
}

fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// `D/relay-<cluster>.kubeconfig`: that cluster's identity against the relay.
fn write_relay_kubeconfig(
    dir: &Path,
    pki: &Path,
    addr: std::net::SocketAddr,
    cluster: &str,
    namespace: &str,
) -> anyhow::Result<()> {
    let b64 = |p: PathBuf| -> anyhow::Result<String> {
        Ok(base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(&p).with_context(|| format!("failed to read {}", p.display()))?))
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: relay\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {}\nusers:\n- name: {cluster}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: {cluster}\n  context: {{cluster: relay, user: {cluster}, namespace: {namespace}}}\ncurrent-context: {cluster}\n",
        b64(pki.join("ca.crt"))?,
        b64(pki.join(format!("{cluster}.crt")))?,
        b64(pki.join(format!("{cluster}.key")))?,
    );
    write_secret_file(&dir.join(format!("relay-{cluster}.kubeconfig")), &text)?;
    Ok(())
}

/// Stores the policy document in ConfigMap `secret-relay-system/secret-relay-policy`
/// of a cluster, where its components read it.
async fn store_policy(admin: &Client, text: &str) -> anyhow::Result<()> {
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": POLICY_CONFIGMAP, "namespace": SYSTEM_NAMESPACE},
        "data": {"policy.yaml": text},
    }))?;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), SYSTEM_NAMESPACE);
    match cms.create(&PostParams::default(), &cm).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            cms.patch(
                POLICY_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {"policy.yaml": text}})),
            )
            .await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Runs the webhook in `mode` on `listener` for the cluster `api`, as `secret-relay
/// webhook` runs from the manifests there: serving `cert` (written to `PKI/STEM.crt`
/// and `.key`), reading the cluster's policy ConfigMap as its own service account;
/// returns once the policy is loaded.
#[expect(
    clippy::too_many_arguments,
    reason = "one call per cluster, each named"
)]
async fn start_webhook(
    what: &str,
    api: &ApiServer,
    listener: tokio::net::TcpListener,
    pki: &Path,
    stem: &str,
    cert: &IssuedCert,
    mode: Mode,
    shutdown: &CancellationToken,
) -> anyhow::Result<secret_relay_webhook::AppState> {
    let kubeconfig = api
        .own_kubeconfig(SYSTEM_NAMESPACE, "secret-relay-webhook")
        .await?;
    let tls = TlsFiles {
        cert: pki.join(format!("{stem}.crt")),
        key: pki.join(format!("{stem}.key")),
        client_ca: None,
    };
    std::fs::write(&tls.cert, &cert.cert_pem)?;
    write_secret_file(&tls.key, &cert.key_pem)?;
    let config = secret_relay_webhook::Config {
        addr: listener.local_addr()?,
        tls,
        kubeconfig: Some(kubeconfig),
        policy: PolicySource::ConfigMap {
            namespace: SYSTEM_NAMESPACE.to_owned(),
            name: POLICY_CONFIGMAP.to_owned(),
        },
        mode,
        relay: RelayIdentity::default(),
        poll_interval: Duration::from_secs(1),
        bench_baseline: false,
    };
    let (started, _stopped) = secret_relay_webhook::start_on(listener, config, shutdown.clone())
        .await
        .with_context(|| format!("failed to start {what}"))?;
    let policy = started.state.policy_state().clone();
    let probe = policy.clone();
    wait_ready(what, move || probe.is_ready(), policy.subscribe_reloads()).await?;
    Ok(started.state)
}

/// Registers the repository's webhook configurations `webhooks` (with this PKI's CA,
/// the webhook's real port, and `namespace` as the one they select, as the README's
/// overlay does) through the API, as `kubectl apply` would.
async fn register_webhooks(
    admin: &Client,
    webhooks: &Webhooks,
    ca_pem: &str,
    port: u16,
    namespace: &str,
) -> anyhow::Result<()> {
    use kube::api::DynamicObject;
    use kube::discovery::ApiResource;
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let selected = format!("values: [{:?}]", webhooks.selects);
    anyhow::ensure!(
        webhooks.text.contains(&selected),
        "the webhook manifest no longer selects {selected}"
    );
    let text = webhooks
        .text
        .replace("caBundle: Cg==", &format!("caBundle: {bundle}"))
        .replace("port: 443", &format!("port: {port}"))
        .replace(&selected, &format!("values: [{namespace:?}]"));
    for doc in text.split("\n---\n") {
        let value: serde_yaml::Value = serde_yaml::from_str(doc)?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_yaml::from_value(value)?;
        let kind = obj
            .types
            .as_ref()
            .map(|t| t.kind.clone())
            .unwrap_or_default();
        let gvk = kube::api::GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", &kind);
        let api: Api<DynamicObject> = Api::all_with(admin.clone(), &ApiResource::from_gvk(&gvk));
        let name = obj.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("secret-relay-demo").force(),
            &Patch::Apply(&obj),
        )
        .await
        .with_context(|| format!("failed to register {kind} {name}"))?;
    }
    Ok(())
}

fn print_tour(demo: &Demo) {
    let text = tour(demo);
    // The live view redraws the screen: the commands stay in D/try.txt.
    let _ = std::fs::write(demo.dir.join("try.txt"), &text);
    println!("{text}");
}

fn tour(demo: &Demo) -> String {
    let d = demo.dir.display();
    let first = demo
        .clusters
        .first()
        .map_or("cluster1", |c| c.name.as_str());
    let agent_ns = demo.policy.agent_namespace();
    let cp_ns = demo.policy.control_plane_namespace();
    let mut out = String::new();
    out.push_str(&format!(
        "\nsecret-relay demo is running. State in {d}\n\n  control plane:   kubectl --kubeconfig {d}/control-plane.kubeconfig get secrets -n {cp_ns}\n"
    ));
    for c in &demo.clusters {
        out.push_str(&format!(
            "  {:<16} kubectl --kubeconfig {d}/{}.kubeconfig get secrets -n {agent_ns}\n",
            format!("{}:", c.name),
            c.name
        ));
    }
    out.push_str(&format!(
        "  relay metrics:   curl http://{}/metrics\n  Secrets page:    {}\n\nTry:\n\
  # repository credentials made in {first} appear in {cp_ns}, owned by {first}\n\
  kubectl --kubeconfig {d}/{first}.kubeconfig -n {agent_ns} create secret generic repo-creds \\\n\
      --from-literal=url=https://github.com/example/repo.git --from-literal=password=example\n\
  kubectl --kubeconfig {d}/{first}.kubeconfig -n {agent_ns} label secret repo-creds \\\n\
      akuity.io/secret-sync=true argocd.argoproj.io/secret-type=repo-creds\n\n\
  # an adoptable secret: {first} takes over argocd-notifications-secret; the control plane can no longer edit it\n\
  kubectl --kubeconfig {d}/control-plane.kubeconfig -n {cp_ns} create secret generic argocd-notifications-secret --from-literal=token=cp\n\
  kubectl --kubeconfig {d}/{first}.kubeconfig -n {agent_ns} create secret generic argocd-notifications-secret --from-literal=token={first}\n\
  kubectl --kubeconfig {d}/{first}.kubeconfig -n {agent_ns} label secret argocd-notifications-secret \\\n\
      akuity.io/secret-sync=true app.kubernetes.io/component=notifications-controller\n\n\
  # a blocked secret never moves (the view shows the rule)\n\
  kubectl --kubeconfig {d}/{first}.kubeconfig -n {agent_ns} create secret generic argocd-secret --from-literal=x=y\n\
  kubectl --kubeconfig {d}/{first}.kubeconfig -n {agent_ns} label secret argocd-secret akuity.io/secret-sync=true argocd.argoproj.io/secret-type=repo-creds\n\n\
  # a managed secret for every cluster\n\
  kubectl --kubeconfig {d}/control-plane.kubeconfig -n {cp_ns} create secret generic shared --from-literal=k=v\n\
  kubectl --kubeconfig {d}/control-plane.kubeconfig -n {cp_ns} annotate secret shared akuity.io/managed-secret-allowed-clusters=ALL\n\n\
  # its down copy is locked by {first}'s own webhook: not even a cluster admin edits it there\n\
  kubectl --kubeconfig {d}/{first}.kubeconfig -n {agent_ns} label secret shared x=y\n\n\
  # why? ask explain, or edit the policy live:\n\
  kubectl --kubeconfig {d}/control-plane.kubeconfig -n {SYSTEM_NAMESPACE} edit configmap {POLICY_CONFIGMAP}\n\n\
Ctrl-C stops everything.\n",
        demo.relay.admin_addr.map(|a| a.to_string()).unwrap_or_default(),
        demo.ui.as_ref().map_or("(not started)", |u| u.url.as_str())
    ));
    out
}
