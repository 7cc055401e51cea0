//! `secret-relay webhook`: the AdmissionReview v1 server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use secret_relay_policy::{Mode, RelayIdentity};
use secret_relay_webhook::{AppState, Config, PolicySource};

/// Flags of `secret-relay webhook`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("policy-source").required(true).args(["policy_file", "policy_configmap"])))]
pub(crate) struct Args {
    /// Listen address.
    #[arg(
        long,
        env = "SECRET_RELAY_WEBHOOK_ADDR",
        default_value = "0.0.0.0:8443"
    )]
    addr: SocketAddr,
    /// Serving certificate (PEM); re-read when it changes.
    #[arg(long, env = "SECRET_RELAY_TLS_CERT")]
    tls_cert: PathBuf,
    /// Serving key (PEM); re-read when it changes.
    #[arg(long, env = "SECRET_RELAY_TLS_KEY")]
    tls_key: PathBuf,
    /// Policy document file, re-read when it changes.
    #[arg(long, env = "SECRET_RELAY_POLICY_FILE")]
    policy_file: Option<PathBuf>,
    /// Policy ConfigMap as NAMESPACE/NAME (key policy.yaml), watched through the API server.
    #[arg(long, env = "SECRET_RELAY_POLICY_CONFIGMAP")]
    policy_configmap: Option<String>,
    /// Kubeconfig for the ConfigMap watch (default: in-cluster or $KUBECONFIG).
    #[arg(long, env = "SECRET_RELAY_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Where the webhook runs: the control plane or a managed cluster.
    #[arg(long, env = "SECRET_RELAY_MODE", value_enum, default_value_t = ModeArg::ControlPlane)]
    mode: ModeArg,
    /// The agent's service account user name (managed-cluster mode).
    #[arg(
        long,
        env = "SECRET_RELAY_AGENT_SERVICE_ACCOUNT",
        default_value = "system:serviceaccount:akuity:secret-relay-agent"
    )]
    agent_service_account: String,
    /// The relay's service account user name.
    #[arg(
        long,
        env = "SECRET_RELAY_RELAY_SERVICE_ACCOUNT",
        default_value = "system:serviceaccount:secret-relay-system:secret-relay"
    )]
    relay_service_account: String,
    /// How often the policy file and TLS files are checked for changes, in milliseconds.
    #[arg(long, env = "SECRET_RELAY_POLL_MS", default_value_t = 1000)]
    poll_ms: u64,
    /// Log as JSON lines.
    #[arg(long, env = "SECRET_RELAY_LOG_JSON")]
    log_json: bool,
    /// Also serve POST /baseline (a fixed answer, no admission work) for benchmarks.
    #[arg(long, hide = true)]
    bench_baseline: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    ControlPlane,
    ManagedCluster,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::init_tracing(args.log_json);
    let runtime = tokio::runtime::Runtime::new().context("failed to start the tokio runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let interval = Duration::from_millis(args.poll_ms.max(50));
    let mode = match args.mode {
        ModeArg::ControlPlane => Mode::ControlPlane,
        ModeArg::ManagedCluster => Mode::ManagedCluster {
            agent: args.agent_service_account.clone(),
        },
    };
    let relay = RelayIdentity {
        service_account: args.relay_service_account.clone(),
    };
    let (policy, client) = match (&args.policy_file, &args.policy_configmap) {
        (Some(path), _) => (
            PolicySource::File {
                path: path.clone(),
                interval,
            },
            None,
        ),
        (None, Some(spec)) => {
            let (namespace, name) = spec
                .split_once('/')
                .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
                .with_context(|| {
                    format!("--policy-configmap must be NAMESPACE/NAME, got {spec:?}")
                })?;
            let client = kube_client(args.kubeconfig.as_deref()).await?;
            (
                PolicySource::ConfigMap {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                },
                Some(client),
            )
        }
        (None, None) => anyhow::bail!("one of --policy-file or --policy-configmap is required"),
    };
    let tls = secret_relay_certs::ReloadingServerTls::webhook(secret_relay_certs::TlsFiles {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        client_ca: None,
    })
    .with_context(|| {
        format!(
            "failed to load TLS material from {}",
            args.tls_cert.display()
        )
    })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tls_watch = std::sync::Arc::clone(&tls).spawn_watch(interval, async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stop| *stop).await;
    });
    let state = if args.bench_baseline {
        AppState::with_bench_baseline(relay, mode)
    } else {
        AppState::new(relay, mode)
    };
    let config = Config {
        addr: args.addr,
        policy,
    };
    let result =
        secret_relay_webhook::run(config, state, tls.config(), client, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    let _ = tls_watch.await;
    result.context("webhook failed")
}

async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("failed to read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("failed to load kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("failed to find a kubeconfig")?,
    };
    kube::Client::try_from(config).context("failed to build the Kubernetes client")
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
