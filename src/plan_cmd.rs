//! `secret-relay policy plan`: what a policy change would do over the live hub
//! copies, before it is saved.
//!
//! Reads the live policy ConfigMap and the hub copies from the control plane of
//! the kubeconfig (as the user: it needs `get` on the ConfigMap and `list` on the
//! Secrets of the control-plane namespace; it never prints a value), plans the
//! change with the decisions the relay and the agents use, and prints a table or
//! (`-o json`) one JSON object. Exits 0 with a plan, 2 on bad input.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::ListParams;
use secret_relay_policy::{POLICY_KEY, Plan, PlanSettings, Policy, plan};

/// Plan and inspect policy changes.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// What saving a new policy would do over the live hub copies: which are
    /// revoked, which down copies are created or deleted on which clusters, and
    /// which deletions the grace or the budget would hold; each row with its rule.
    Plan(PlanArgs),
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// The new policy document (policy.yaml), or the whole ConfigMap manifest.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Kubeconfig of the control plane; default: in-cluster or `$KUBECONFIG`.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the live policy ConfigMap.
    #[arg(long, default_value = "secret-relay-system")]
    namespace: String,
    /// Name of the live policy ConfigMap.
    #[arg(long, default_value = "secret-relay-policy")]
    configmap: String,
    /// `text` or `json`.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// The relay's revocation grace, in seconds (its `--revocation-grace`).
    #[arg(long, default_value_t = PlanSettings::default().revocation_grace_seconds)]
    revocation_grace: u64,
    /// The agents' deletion grace, in seconds (their `--deletion-grace-seconds`).
    #[arg(long, default_value_t = PlanSettings::default().deletion_grace_seconds)]
    deletion_grace: u64,
    /// The agents' deletion budget, in percent (their `--deletion-budget-percent`).
    #[arg(long, default_value_t = PlanSettings::default().budget_percent)]
    budget_percent: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Command::Plan(args) = args.command;
    let runtime = tokio::runtime::Runtime::new().context("failed to start the tokio runtime")?;
    let planned = runtime.block_on(plan_change(&args))?;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&planned).expect("a plan always serializes")
        ),
        Output::Text => print!("{}", text(&planned)),
    }
    Ok(ExitCode::SUCCESS)
}

async fn plan_change(args: &PlanArgs) -> anyhow::Result<Plan> {
    let new = crate::explain::load_policy(&args.policy)?;
    let client = secret_relay_runtime::kube_client(args.kubeconfig.as_deref())
        .await
        .context("failed to build a client for the control plane")?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &args.namespace);
    let live = configmaps.get(&args.configmap).await.with_context(|| {
        format!(
            "failed to read the live policy ConfigMap {}/{}",
            args.namespace, args.configmap
        )
    })?;
    let old = Policy::from_configmap_data(&live.data.unwrap_or_default(), POLICY_KEY)
        .with_context(|| {
            format!(
                "the live policy {}/{} is not valid",
                args.namespace, args.configmap
            )
        })?;
    let hub: Api<Secret> = Api::namespaced(client, old.control_plane_namespace());
    let copies = hub
        .list(&ListParams::default())
        .await
        .with_context(|| {
            format!(
                "failed to list the Secrets of {}",
                old.control_plane_namespace()
            )
        })?
        .items;
    let settings = PlanSettings {
        revocation_grace_seconds: args.revocation_grace,
        deletion_grace_seconds: args.deletion_grace,
        budget_percent: args.budget_percent.min(100),
        ..PlanSettings::default()
    };
    Ok(plan(&old, &new, &copies, settings))
}

/// The plan as a table, one row per change with its reason beneath.
fn text(p: &Plan) -> String {
    let mut out = String::new();
    if p.rows.is_empty() {
        out.push_str("No hub copy or down copy changes.\n");
    } else {
        out.push_str(&format!(
            "{} change{}:\n",
            p.rows.len(),
            if p.rows.len() == 1 { "" } else { "s" }
        ));
        out.push_str(&format!(
            "{:<22} {:<32} {:<16} {:<36} {}\n",
            "CHANGE", "SECRET", "CLUSTER", "WHEN", "RULE"
        ));
        for r in &p.rows {
            out.push_str(&format!(
                "{:<22} {:<32} {:<16} {:<36} {}\n    {}\n",
                r.change.as_str(),
                r.secret,
                r.cluster,
                r.when.as_str(),
                r.rule,
                r.reason
            ));
        }
    }
    if !p.clusters_added.is_empty() {
        out.push_str(&format!(
            "Clusters added: {}\n",
            p.clusters_added.join(", ")
        ));
    }
    if !p.clusters_removed.is_empty() {
        out.push_str(&format!(
            "Clusters removed: {}\n",
            p.clusters_removed.join(", ")
        ));
    }
    for n in &p.notes {
        out.push_str(&format!("Note: {n}\n"));
    }
    out
}
