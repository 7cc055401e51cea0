//! `secret-relay explain`: why a Secret does (or does not) sync.
//!
//! Prints exactly one JSON object on stdout (`allowed`, `rule`, `reason`,
//! plus `targets` for down and `action` for an allowed release that acts on
//! the copy), one readable line on stderr, and exits 0 when allowed, 1 when
//! denied and 2 on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use secret_relay_policy::{
    Decision, POLICY_KEY, Policy, ReleaseAction, Rule, Secret, down_sync, down_sync_to, reclaim,
    release, up_sync,
};
use serde::Serialize;

/// Explain a sync decision. Manifests are YAML or JSON; `stringData` counts
/// like `data`. A Secret without `metadata.namespace` is taken to be in the
/// agent namespace (the cluster's Secret) or the control-plane namespace (a
/// hub copy).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The policy document (policy.yaml), or the whole ConfigMap manifest holding it.
    #[arg(long, value_name = "FILE", env = "SECRET_RELAY_EXPLAIN_POLICY")]
    policy: PathBuf,
    /// A Secret manifest: for `up` the cluster's Secret; for `down` and
    /// `release` the hub copy, unless `--hub` gives it.
    #[arg(long, value_name = "FILE", env = "SECRET_RELAY_EXPLAIN_SECRET")]
    secret: PathBuf,
    /// Which decision: `up` (cluster to control plane), `down` (control plane
    /// to clusters) or `release` (the cluster's Secret was deleted or lost the
    /// opt-in label; without `--cluster`, whether the control plane may delete
    /// or take over the copy, e.g. of a cluster removed from the policy).
    #[arg(long, value_enum, env = "SECRET_RELAY_EXPLAIN_DIRECTION")]
    direction: Direction,
    /// The cluster: required for `up`; for `release`, the releasing cluster
    /// (omit it to ask about the control plane's way out); for `down`, asks
    /// whether this cluster is a target.
    #[arg(long, value_name = "NAME", env = "SECRET_RELAY_EXPLAIN_CLUSTER")]
    cluster: Option<String>,
    /// The existing hub copy in the control-plane namespace, if any (a
    /// manifest in another namespace is an error). For `down` and `release` it
    /// is the Secret judged (then `--secret` must have the same name).
    #[arg(long, value_name = "FILE", env = "SECRET_RELAY_EXPLAIN_HUB")]
    hub: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Direction {
    Up,
    Down,
    Release,
}

#[derive(Serialize)]
struct Output<'a> {
    allowed: bool,
    rule: Rule,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    targets: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<ReleaseAction>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = load_policy(&args.policy)?;
    let secret = load_secret(&args.secret)?;
    let agent_ns = policy.agent_namespace().to_owned();
    let cp_ns = policy.control_plane_namespace().to_owned();
    let hub = match &args.hub {
        Some(path) => Some(load_hub(path, &cp_ns)?),
        None => None,
    };

    let (decision, targets, action) = match args.direction {
        Direction::Up => {
            let cluster = required_cluster(&args)?;
            let secret = with_namespace(secret, &agent_ns);
            if let Some(h) = &hub {
                same_name(&secret, h)?;
            }
            (up_sync(&policy, cluster, &secret, hub.as_ref()), None, None)
        }
        Direction::Down => {
            let judged = hub_copy(secret, hub, &cp_ns)?;
            let down = match &args.cluster {
                Some(c) => down_sync_to(&policy, &judged, c),
                None => down_sync(&policy, &judged),
            };
            (down.decision, Some(down.targets), None)
        }
        Direction::Release => {
            let judged = hub_copy(secret, hub, &cp_ns)?;
            let r = match &args.cluster {
                Some(cluster) => release(&policy, cluster, &judged),
                None => reclaim(&policy, &judged),
            };
            (r.decision, None, r.action)
        }
    };
    print(&decision, targets.as_deref(), action)?;
    Ok(if decision.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print(
    decision: &Decision,
    targets: Option<&[String]>,
    action: Option<ReleaseAction>,
) -> anyhow::Result<()> {
    let out = Output {
        allowed: decision.allowed,
        rule: decision.rule,
        reason: &decision.reason,
        targets,
        action: action.filter(|_| decision.allowed),
    };
    println!(
        "{}",
        serde_json::to_string(&out).context("failed to encode the answer")?
    );
    eprintln!("{decision}");
    Ok(())
}

fn required_cluster(args: &Args) -> anyhow::Result<&str> {
    match &args.cluster {
        Some(c) => Ok(c),
        None => bail!("--cluster NAME is required for --direction up"),
    }
}

/// The hub copy judged by `down` and `release`: `--hub` when given (then
/// `--secret` must name the same Secret), otherwise `--secret`.
fn hub_copy(secret: Secret, hub: Option<Secret>, cp_ns: &str) -> anyhow::Result<Secret> {
    match hub {
        Some(h) => {
            same_name(&secret, &h)?;
            Ok(h)
        }
        None => Ok(with_namespace(secret, cp_ns)),
    }
}

/// The `--hub` manifest: a hub copy lives in the control-plane namespace, so one
/// that names another namespace is bad input, not something to judge.
fn load_hub(path: &Path, cp_ns: &str) -> anyhow::Result<Secret> {
    let hub = with_namespace(load_secret(path)?, cp_ns);
    let ns = hub.metadata.namespace.as_deref().unwrap_or("");
    if ns != cp_ns {
        bail!(
            "--hub {} is in namespace '{ns}', not in the control-plane namespace '{cp_ns}' where hub copies live",
            path.display()
        );
    }
    Ok(hub)
}

fn same_name(secret: &Secret, hub: &Secret) -> anyhow::Result<()> {
    let (a, b) = (name(secret), name(hub));
    if a != b {
        bail!("--secret is named '{a}' but --hub is named '{b}': a hub copy has its Secret's name");
    }
    Ok(())
}

fn name(s: &Secret) -> &str {
    s.metadata.name.as_deref().unwrap_or("")
}

fn with_namespace(mut s: Secret, ns: &str) -> Secret {
    if s.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        s.metadata.namespace = Some(ns.to_owned());
    }
    s
}

pub(crate) fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read the policy {}", path.display()))?;
    // A ConfigMap manifest holds the document under data["policy.yaml"].
    let value: serde_yaml::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("failed to parse the policy {}", path.display()))?;
    let policy = if value.get("kind").and_then(serde_yaml::Value::as_str) == Some("ConfigMap") {
        let data: std::collections::BTreeMap<String, String> = value
            .get("data")
            .map(|d| serde_yaml::from_value(d.clone()))
            .transpose()
            .with_context(|| format!("failed to read data of the ConfigMap {}", path.display()))?
            .unwrap_or_default();
        Policy::from_configmap_data(&data, POLICY_KEY)
    } else {
        Policy::from_yaml(&text)
    };
    policy.with_context(|| format!("invalid policy {}", path.display()))
}

fn load_secret(path: &Path) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read the Secret {}", path.display()))?;
    // serde_yaml reads JSON too.
    let value: serde_yaml::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("failed to parse the Secret manifest {}", path.display()))?;
    let secret: Secret = match serde_yaml::from_value(value.clone()) {
        Ok(s) => s,
        Err(e) => {
            // Decoding errors can quote a value; when the fault is in data or
            // stringData, say so without repeating the decoder's words.
            let mut without_data = value;
            if let Some(m) = without_data.as_mapping_mut() {
                m.remove("data");
                m.remove("stringData");
            }
            if serde_yaml::from_value::<Secret>(without_data).is_ok() {
                bail!(
                    "failed to parse the Secret manifest {}: data values must be base64 strings and stringData values strings",
                    path.display()
                );
            }
            return Err(e).with_context(|| {
                format!("failed to parse the Secret manifest {}", path.display())
            });
        }
    };
    if secret.metadata.name.as_deref().is_none_or(str::is_empty) {
        bail!(
            "the Secret manifest {} has no metadata.name",
            path.display()
        );
    }
    Ok(secret)
}
