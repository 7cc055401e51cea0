//! `secret-relay sandbox`: runs one in-memory Kubernetes API server (never for production).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Flags of `secret-relay sandbox`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Listen address; port 0 picks a free port.
    #[arg(long, env = "SECRET_RELAY_SANDBOX_ADDR", default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Directory for the kubeconfigs (`admin.kubeconfig` and one per configured user).
    #[arg(long, env = "SECRET_RELAY_SANDBOX_DIR")]
    dir: PathBuf,
    /// YAML config: users (name, groups, token, impersonate), services, historyLimit, ...
    #[arg(long, env = "SECRET_RELAY_SANDBOX_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, env = "SECRET_RELAY_LOG_JSON")]
    log_json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    secret_relay_runtime::init_tracing(args.log_json);
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read {}", path.display()))?;
            serde_yaml::from_str::<secret_relay_sandbox::SandboxConfig>(&text)
                .with_context(|| format!("failed to parse {}", path.display()))?
        }
        None => secret_relay_sandbox::SandboxConfig::default(),
    };
    config.addr = args.addr;
    if !config.users.iter().any(|u| u.name == "admin") {
        config.users.insert(
            0,
            secret_relay_sandbox::SandboxConfig::default()
                .users
                .remove(0),
        );
    }
    let runtime =
        secret_relay_runtime::server_runtime().context("failed to start the tokio runtime")?;
    runtime.block_on(async move {
        let sandbox = secret_relay_sandbox::start(config).await.context("failed to start the sandbox")?;
        sandbox
            .write_kubeconfigs(&args.dir)
            .with_context(|| format!("failed to write kubeconfigs to {}", args.dir.display()))?;
        tracing::info!(url = %sandbox.url(), dir = %args.dir.display(), "sandbox ready; kubeconfigs written");
        shutdown_signal().await?;
        tracing::info!("shutting down");
        sandbox.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("failed to install the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("failed to listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
