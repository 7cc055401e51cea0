//! `secret-relay demo`: a control plane and one managed cluster per cluster of the
//! policy, with the webhook, the relay, the agents and each managed cluster's own
//! webhook in managed-cluster mode, all in this process. By
//! default the API servers are sandboxes (no Go, no Docker, no cluster); with
//! `--control-plane real` they are real kube-apiservers from
//! `scripts/control-plane.sh`.

mod scenario;
mod view;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use secret_relay_devstack::stack::{POLICY_CONFIGMAP, SYSTEM_NAMESPACE};
use secret_relay_devstack::{Backend, Fleet, FleetConfig};
use secret_relay_runtime::CancellationToken;

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

/// Everything the demo started: the fleet, and the Secrets page.
pub(crate) struct Demo {
    pub(crate) fleet: Fleet,
    /// The Secrets page, as the control plane's admin.
    pub(crate) ui: Option<secret_relay_ui::Started>,
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
        secret_relay_runtime::init_tracing(args.log_json);
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
    let policy = match &args.policy {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the policy {}", path.display()))?,
        None => EXAMPLE_POLICY.to_owned(),
    };
    let fleet = Fleet::start(
        FleetConfig {
            dir: dir.clone(),
            backend: args.control_plane,
            policy,
            // The product's budget, and a grace short enough to watch a deletion
            // reach the clusters in a demo.
            deletion: secret_relay_agent::Deletion {
                grace: Duration::from_secs(10),
                ..secret_relay_agent::Deletion::default()
            },
            poll_interval: Duration::from_secs(1),
        },
        shutdown,
    )
    .await?;
    write_kubeconfigs(&fleet)?;
    let ui = start_ui(&fleet).await;
    std::fs::write(
        dir.join("ready"),
        format!("relay https://{}\n", fleet.relay.addr),
    )?;
    Ok(Demo { fleet, ui })
}

/// `D/control-plane.kubeconfig`, `D/<cluster>.kubeconfig` (admins) and
/// `D/relay-<cluster>.kubeconfig` (each cluster's identity against the relay).
fn write_kubeconfigs(fleet: &Fleet) -> anyhow::Result<()> {
    let dir = &fleet.dir;
    std::fs::copy(
        fleet.control_plane.kubeconfig(),
        dir.join("control-plane.kubeconfig"),
    )?;
    let cp_ns = fleet.policy.control_plane_namespace();
    for c in &fleet.clusters {
        std::fs::copy(
            c.api.kubeconfig(),
            dir.join(format!("{}.kubeconfig", c.name)),
        )?;
        fleet.pki.relay_kubeconfig(
            fleet.relay.addr,
            &c.name,
            cp_ns,
            &dir.join(format!("relay-{}.kubeconfig", c.name)),
        )?;
    }
    Ok(())
}

/// The Secrets page, as the control plane's admin, reading each cluster's reports;
/// the demo goes on without it when it cannot start.
async fn start_ui(fleet: &Fleet) -> Option<secret_relay_ui::Started> {
    let config = secret_relay_ui::Config {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        kubeconfig: Some(fleet.dir.join("control-plane.kubeconfig")),
        context: None,
        policy_namespace: SYSTEM_NAMESPACE.to_owned(),
        policy_name: POLICY_CONFIGMAP.to_owned(),
        clusters: fleet
            .clusters
            .iter()
            .map(|c| secret_relay_ui::ClusterKubeconfig {
                name: c.name.clone(),
                kubeconfig: c.api.kubeconfig().to_path_buf(),
            })
            .collect(),
        relay_metrics: fleet
            .relay
            .admin_addr
            .map(|a| format!("http://{a}/metrics")),
        relay_metrics_interval: Duration::from_secs(5),
        token: None,
    };
    match secret_relay_ui::start(config, fleet.shutdown.clone()).await {
        Ok((started, _task)) => Some(started),
        Err(err) => {
            tracing::warn!(error = %err, "the Secrets page did not start; the demo goes on without it");
            None
        }
    }
}

impl Demo {
    /// Stops every component and API server.
    pub(crate) async fn stop(self) {
        self.fleet.stop().await;
    }

    /// The admin client of the control plane.
    pub(crate) async fn control_plane_client(&self) -> anyhow::Result<Client> {
        self.fleet.control_plane.client().await
    }
}

fn print_tour(demo: &Demo) {
    let text = tour(demo);
    // The live view redraws the screen: the commands stay in D/try.txt.
    let _ = std::fs::write(demo.fleet.dir.join("try.txt"), &text);
    println!("{text}");
}

fn tour(demo: &Demo) -> String {
    let fleet = &demo.fleet;
    let d = fleet.dir.display();
    let first = fleet
        .clusters
        .first()
        .map_or("cluster1", |c| c.name.as_str());
    let agent_ns = fleet.policy.agent_namespace();
    let cp_ns = fleet.policy.control_plane_namespace();
    let mut out = String::new();
    out.push_str(&format!(
        "\nsecret-relay demo is running. State in {d}\n\n  control plane:   kubectl --kubeconfig {d}/control-plane.kubeconfig get secrets -n {cp_ns}\n"
    ));
    for c in &fleet.clusters {
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
        fleet.relay.admin_addr.map(|a| a.to_string()).unwrap_or_default(),
        demo.ui.as_ref().map_or("(not started)", |u| u.url.as_str())
    ));
    out
}
