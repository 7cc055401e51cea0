//! The `secret-relay` binary: parses flags and hands off to the member crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent_cmd;
mod certs_cmd;
#[cfg(feature = "sandbox")]
mod demo;
mod explain;
mod plan_cmd;
mod relay_cmd;
#[cfg(feature = "sandbox")]
mod sandbox_cmd;
mod ui_cmd;
mod webhook_cmd;

/// Sync Kubernetes Secrets between an Argo CD control plane and its managed clusters.
#[derive(Debug, Parser)]
#[command(name = "secret-relay", version, about)]
#[cfg_attr(
    not(feature = "sandbox"),
    command(
        after_help = "This build has no `demo` and no `sandbox` (built without the `sandbox` feature, as the image is)."
    )
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Explain a sync decision: why a Secret does (not) sync.
    Explain(explain::Args),
    /// Plan a policy change over the live control plane before saving it.
    Policy(plan_cmd::Args),
    /// Issue and inspect the PKI (CA, server and cluster certificates).
    Certs(certs_cmd::Args),
    /// Run the in-memory Kubernetes API server (for the demo and tests; never for production).
    #[cfg(feature = "sandbox")]
    Sandbox(sandbox_cmd::Args),
    /// Run the AdmissionReview v1 webhook server.
    Webhook(webhook_cmd::Args),
    /// Run the mTLS relay that serves managed clusters' agents.
    Relay(relay_cmd::Args),
    /// Run the agent of a managed cluster.
    Agent(agent_cmd::Args),
    /// Run a control plane and managed clusters with every component, in this process.
    #[cfg(feature = "sandbox")]
    Demo(demo::Args),
    /// Serve the Secrets page locally: every synced secret, its owner, its targets and why.
    Ui(ui_cmd::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Policy(args) => plan_cmd::run(args),
        Command::Certs(args) => certs_cmd::run(args),
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => sandbox_cmd::run(args),
        Command::Webhook(args) => webhook_cmd::run(args),
        Command::Relay(args) => relay_cmd::run(args),
        Command::Agent(args) => agent_cmd::run(args),
        #[cfg(feature = "sandbox")]
        Command::Demo(args) => demo::run(args),
        Command::Ui(args) => ui_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
