//! `secret-relay ui`: the Secrets page, served locally with the user's own kubeconfig.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use secret_relay_runtime::LogArgs;
use secret_relay_ui::{ClusterKubeconfig, Config};

/// Flags of `secret-relay ui`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to serve the page on. Loopback by default; any other address
    /// lets whoever reaches it and holds the printed token act as you (a warning is printed).
    #[arg(long, env = "SECRET_RELAY_UI_ADDR", default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
    /// Your kubeconfig: every read and write of the page is made as its user
    /// (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "SECRET_RELAY_UI_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, env = "SECRET_RELAY_UI_CONTEXT")]
    context: Option<String>,
    /// The policy ConfigMap as NAMESPACE/NAME (key policy.yaml).
    #[arg(
        long,
        env = "SECRET_RELAY_UI_POLICY_CONFIGMAP",
        default_value = "secret-relay-system/secret-relay-policy"
    )]
    policy_configmap: String,
    /// NAME=FILE: a managed cluster's kubeconfig; the page reads its agent's
    /// Events and its Secrets' metadata (never values) for the sync state. Repeat per cluster.
    #[arg(
        long = "cluster-kubeconfig",
        value_name = "NAME=FILE",
        env = "SECRET_RELAY_UI_CLUSTER_KUBECONFIGS",
        value_delimiter = ','
    )]
    clusters: Vec<ClusterKubeconfig>,
    /// The relay's admin metrics URL (http://HOST:9090/metrics), for its write counters by rule.
    #[arg(long, env = "SECRET_RELAY_UI_RELAY_METRICS")]
    relay_metrics: Option<String>,
    #[command(flatten)]
    log: LogArgs,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    secret_relay_runtime::init_tracing(args.log.log_json);
    let runtime =
        secret_relay_runtime::server_runtime().context("failed to start the tokio runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let (policy_namespace, policy_name) = args
        .policy_configmap
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .map(|(ns, name)| (ns.to_owned(), name.to_owned()))
        .with_context(|| {
            format!(
                "--policy-configmap must be NAMESPACE/NAME, got {:?}",
                args.policy_configmap
            )
        })?;
    let config = Config {
        addr: args.addr,
        kubeconfig: args.kubeconfig,
        context: args.context,
        policy_namespace,
        policy_name,
        clusters: args.clusters,
        relay_metrics: args.relay_metrics,
        relay_metrics_interval: Duration::from_secs(5),
        token: None,
    };
    let shutdown = secret_relay_runtime::shutdown_signal();
    let (started, done) = secret_relay_ui::start(config, shutdown)
        .await
        .context("failed to start the Secrets page")?;
    if !started.loopback {
        eprintln!(
            "warning: serving on {}, which is not a loopback address: anyone who can reach it and holds the token acts as your kubeconfig's user, over plain HTTP",
            started.addr
        );
    }
    println!("secret-relay ui: open {}", started.url);
    println!("(every read and write is made as your kubeconfig's user; Ctrl-C stops)");
    done.await.context("the page's server failed")?;
    Ok(())
}
