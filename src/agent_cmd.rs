//! `secret-relay agent`: the managed-cluster side.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use secret_relay_agent::{Config, Deletion};
use secret_relay_runtime::LogArgs;

/// Flags of `secret-relay agent`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Kubeconfig of the managed cluster (default: in-cluster or $KUBECONFIG).
    #[arg(long, env = "SECRET_RELAY_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The agent namespace: Secrets sync up from it and down copies land in it.
    #[arg(long, env = "SECRET_RELAY_NAMESPACE", default_value = "akuity")]
    namespace: String,
    /// The relay's URL.
    #[arg(long, env = "SECRET_RELAY_RELAY")]
    relay: String,
    /// The cluster's client certificate (PEM): it names the cluster.
    #[arg(long, env = "SECRET_RELAY_TLS_CERT")]
    tls_cert: PathBuf,
    /// The cluster's client key (PEM).
    #[arg(long, env = "SECRET_RELAY_TLS_KEY")]
    tls_key: PathBuf,
    /// The CA of the relay's serving certificate (PEM).
    #[arg(long, env = "SECRET_RELAY_RELAY_CA")]
    relay_ca: PathBuf,
    /// Plain-HTTP address of /healthz, /readyz and /metrics.
    #[arg(long, env = "SECRET_RELAY_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
    /// A full reconcile runs at least this often, in seconds.
    #[arg(long, env = "SECRET_RELAY_RESYNC_SECONDS", default_value_t = 300)]
    resync_seconds: u64,
    /// Seconds a down copy whose hub copy left the view is kept before it is deleted
    /// (kept for good if it comes back within them).
    #[arg(
        long,
        env = "SECRET_RELAY_DELETION_GRACE_SECONDS",
        default_value_t = 60
    )]
    deletion_grace_seconds: u64,
    /// Percent of this cluster's down copies (at least one) that may be deleted within
    /// the budget window; further deletions are held until a cluster admin confirms.
    #[arg(
        long,
        env = "SECRET_RELAY_DELETION_BUDGET_PERCENT",
        default_value_t = 20
    )]
    deletion_budget_percent: u32,
    /// The deletion budget's window, in seconds.
    #[arg(
        long,
        env = "SECRET_RELAY_DELETION_BUDGET_WINDOW_SECONDS",
        default_value_t = 60
    )]
    deletion_budget_window_seconds: u64,
    /// Seconds the relay must refuse this cluster as unregistered, with no other
    /// answer in between, before the agent deletes its down copies.
    #[arg(
        long,
        env = "SECRET_RELAY_UNREGISTERED_GRACE_SECONDS",
        default_value_t = 600
    )]
    unregistered_grace_seconds: u64,
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
    let config = Config {
        kubeconfig: args.kubeconfig,
        namespace: args.namespace,
        relay: args.relay,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        relay_ca: args.relay_ca,
        admin_addr: Some(args.admin_addr),
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        deletion: Deletion {
            grace: Duration::from_secs(args.deletion_grace_seconds),
            budget_percent: args.deletion_budget_percent.min(100),
            budget_window: Duration::from_secs(args.deletion_budget_window_seconds),
            unregistered_grace: Duration::from_secs(args.unregistered_grace_seconds),
        },
    };
    let shutdown = secret_relay_runtime::shutdown_signal();
    let (_, done) = secret_relay_agent::start(config, shutdown)
        .await
        .context("failed to start the agent")?;
    done.await.context("the agent stopped unexpectedly")?;
    Ok(())
}
