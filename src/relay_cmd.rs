//! `secret-relay relay`: the mTLS Kubernetes-API relay for managed clusters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use secret_relay_proxy::{Config, Limits};
use secret_relay_runtime::{LogArgs, PolicyArgs, ShutdownArgs, TlsArgs};

/// Flags of `secret-relay relay`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Listen address of the mTLS API surface agents talk to.
    #[arg(long, env = "SECRET_RELAY_RELAY_ADDR", default_value = "0.0.0.0:9443")]
    addr: SocketAddr,
    #[command(flatten)]
    tls: TlsArgs,
    /// CA bundle (PEM) that cluster client certificates must chain to; re-read when it changes.
    #[arg(long, env = "SECRET_RELAY_CLIENT_CA")]
    client_ca: PathBuf,
    /// Kubeconfig of the control plane (default: in-cluster or $KUBECONFIG).
    #[arg(long, env = "SECRET_RELAY_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Plain-HTTP address of /healthz, /readyz and /metrics.
    #[arg(long, env = "SECRET_RELAY_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
    /// How often the policy file and TLS files are checked for changes, in milliseconds.
    #[arg(long, env = "SECRET_RELAY_POLL_MS", default_value_t = 1000)]
    poll_ms: u64,
    /// Requests per second each cluster may make (token bucket).
    #[arg(long, env = "SECRET_RELAY_CLUSTER_RATE", default_value_t = 100.0)]
    cluster_rate: f64,
    /// Burst of each cluster's token bucket.
    #[arg(long, env = "SECRET_RELAY_CLUSTER_BURST", default_value_t = 200.0)]
    cluster_burst: f64,
    /// Open watches each cluster may hold.
    #[arg(long, env = "SECRET_RELAY_CLUSTER_WATCHES", default_value_t = 8)]
    cluster_watches: usize,
    /// Seconds a connection may take to send a complete request head (slowloris guard).
    #[arg(long, env = "SECRET_RELAY_HEADER_READ_TIMEOUT", default_value_t = 30)]
    header_read_timeout: u64,
    /// Seconds a hub copy the policy no longer admits waits before the relay releases
    /// it (a policy fixed within it revokes nothing).
    #[arg(long, env = "SECRET_RELAY_REVOCATION_GRACE", default_value_t = 60)]
    revocation_grace: u64,
    /// Seconds without a read of the policy ConfigMap that confirms the policy
    /// served, after which the relay judges nothing (503s, open watches end) until
    /// one does; the ConfigMap is read every sixth of it. Keep it well below the
    /// agents' deletion grace.
    #[arg(long, env = "SECRET_RELAY_POLICY_STALE_AFTER", default_value_t = 30, value_parser = clap::value_parser!(u64).range(6..))]
    policy_stale_after: u64,
    /// The most hub copies one cluster may own; a create beyond is refused (rule
    /// cluster-quota).
    #[arg(
        long,
        env = "SECRET_RELAY_CLUSTER_MAX_COPIES",
        default_value_t = 10_000
    )]
    cluster_max_copies: usize,
    /// The most bytes of hub copies (as JSON) one cluster may own; once reached, its
    /// creates and changes are refused until it deletes some.
    #[arg(long, env = "SECRET_RELAY_CLUSTER_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    cluster_max_bytes: usize,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    shutdown: ShutdownArgs,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    secret_relay_runtime::init_tracing(args.log.log_json);
    let runtime =
        secret_relay_runtime::server_runtime().context("failed to start the tokio runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let interval = Duration::from_millis(args.poll_ms.max(50));
    let policy = args.policy.source(interval).map_err(anyhow::Error::msg)?;
    let config = Config {
        addr: args.addr,
        tls: secret_relay_certs::TlsFiles {
            cert: args.tls.tls_cert,
            key: args.tls.tls_key,
            client_ca: Some(args.client_ca),
        },
        kubeconfig: args.kubeconfig,
        policy,
        admin_addr: Some(args.admin_addr),
        poll_interval: interval,
        limits: Limits {
            rate_per_second: args.cluster_rate,
            burst: args.cluster_burst,
            watches_per_cluster: args.cluster_watches.max(1),
            header_read_timeout: Duration::from_secs(args.header_read_timeout.max(1)),
            revocation_grace: Duration::from_secs(args.revocation_grace),
            policy_currency: secret_relay_runtime::Currency {
                confirm_every: Duration::from_secs(args.policy_stale_after / 6),
                stale_after: Duration::from_secs(args.policy_stale_after),
            },
            max_copies_per_cluster: args.cluster_max_copies,
            max_bytes_per_cluster: args.cluster_max_bytes,
            ..Limits::default()
        },
    };
    let shutdown = args.shutdown.signal();
    let (_, done) = secret_relay_proxy::start(config, shutdown)
        .await
        .context("failed to start the relay")?;
    done.await.context("the relay stopped unexpectedly")?;
    Ok(())
}
