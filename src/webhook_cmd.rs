//! `secret-relay webhook`: the AdmissionReview v1 server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use secret_relay_policy::{Mode, RelayIdentity};
use secret_relay_runtime::{LogArgs, PolicyArgs, ShutdownArgs, TlsArgs};
use secret_relay_webhook::Config;

/// Flags of `secret-relay webhook`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Listen address.
    #[arg(
        long,
        env = "SECRET_RELAY_WEBHOOK_ADDR",
        default_value = "0.0.0.0:8443"
    )]
    addr: SocketAddr,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    policy: PolicyArgs,
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
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    shutdown: ShutdownArgs,
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
    secret_relay_runtime::init_tracing(args.log.log_json);
    let runtime =
        secret_relay_runtime::server_runtime().context("failed to start the tokio runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let poll_interval = Duration::from_millis(args.poll_ms.max(50));
    let mode = match args.mode {
        ModeArg::ControlPlane => Mode::ControlPlane,
        ModeArg::ManagedCluster => Mode::ManagedCluster {
            agent: args.agent_service_account,
        },
    };
    let config = Config {
        addr: args.addr,
        tls: secret_relay_certs::TlsFiles {
            cert: args.tls.tls_cert,
            key: args.tls.tls_key,
            client_ca: None,
        },
        kubeconfig: args.kubeconfig,
        policy: args
            .policy
            .source(poll_interval)
            .map_err(anyhow::Error::msg)?,
        mode,
        relay: RelayIdentity {
            service_account: args.relay_service_account,
        },
        poll_interval,
        bench_baseline: args.bench_baseline,
    };
    let shutdown = args.shutdown.signal();
    let (_started, stopped) = secret_relay_webhook::start(config, shutdown)
        .await
        .context("failed to start the webhook")?;
    let _ = stopped.await;
    Ok(())
}
