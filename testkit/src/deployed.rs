//! Outside scenarios against a deployed control plane: the relay and the webhook
//! running as pods (tests/deployed.rs starts them on a real node from the
//! manifests), not in the test process.
//!
//! [`DEPLOYED_RELAY_ENV`] turns it on, beside [`crate::OUTSIDE_ENV`]. A [`crate::Stack`]
//! then starts nothing of its own on the control plane: it empties `argocd` with the
//! webhooks unregistered, registers them again from [`DEPLOYED_WEBHOOKS_ENV`], stores
//! the scenario's policy and waits until every relay and webhook pod has loaded it.
//! Agents (in process, on the managed clusters) reach the relay's Service at the
//! address [`DEPLOYED_RELAY_ENV`] gives, with certificates of the deployed CA
//! ([`DEPLOYED_PKI_ENV`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, LogParams, PostParams};
use kube::{Client, ResourceExt as _};
use secret_relay_devstack::Pki;

use crate::stack::SYSTEM_NAMESPACE;
use crate::{Flavor, TestCluster, within};

/// `IP:PORT` of the deployed relay's Service, as agents outside the node reach it.
pub const DEPLOYED_RELAY_ENV: &str = "E2E_DEPLOYED_RELAY";
/// The deployed stack's PKI directory: `ca.crt` and `ca.key` sign the clusters'
/// certificates the relay pods trust.
pub const DEPLOYED_PKI_ENV: &str = "E2E_DEPLOYED_PKI";
/// A file with both webhook configurations as deployed (a JSON `List`), registered
/// again after `argocd` is emptied.
pub const DEPLOYED_WEBHOOKS_ENV: &str = "E2E_DEPLOYED_WEBHOOKS";

/// The deployed components' app names (`app.kubernetes.io/name`) that load the policy.
const POLICY_READERS: [&str; 2] = ["secret-relay", "secret-relay-webhook"];

/// Where the deployed control plane's components are.
#[derive(Clone, Debug)]
pub(crate) struct Deployed {
    /// The relay's Service.
    pub(crate) relay: SocketAddr,
    pki: PathBuf,
    webhooks: PathBuf,
}

impl Deployed {
    /// The deployed control plane the environment names, for outside scenarios.
    pub(crate) fn from_env(flavor: Flavor) -> Option<Deployed> {
        if flavor != Flavor::Outside {
            return None;
        }
        let relay = std::env::var(DEPLOYED_RELAY_ENV).ok()?;
        let var =
            |name: &str| {
                PathBuf::from(std::env::var(name).unwrap_or_else(|_| {
                    panic!("{DEPLOYED_RELAY_ENV} is set, so {name} must be too")
                }))
            };
        Some(Deployed {
            relay: relay
                .parse()
                .unwrap_or_else(|e| panic!("{DEPLOYED_RELAY_ENV}={relay}: {e}")),
            pki: var(DEPLOYED_PKI_ENV),
            webhooks: var(DEPLOYED_WEBHOOKS_ENV),
        })
    }

    /// The deployed CA, copied into `dir` (the scenario's certificates go there).
    pub(crate) fn pki(&self, dir: &Path) -> Pki {
        let read = |name: &str| {
            std::fs::read_to_string(self.pki.join(name))
                .unwrap_or_else(|e| panic!("{}: {e}", self.pki.join(name).display()))
        };
        Pki::open(dir, &read("ca.crt"), &read("ca.key")).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Registers both webhook configurations again, and waits until the API server
    /// calls both: a Secret in `argocd` stamped as a cluster's is refused to the admin
    /// (validating), and a digest annotation the admin writes is removed (mutating).
    pub(crate) async fn register_webhooks(&self, cluster: &TestCluster, kubectl: &str) {
        let out = std::process::Command::new(kubectl)
            .env("HOME", cluster.dir())
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(["create", "-f"])
            .arg(&self.webhooks)
            .output()
            .unwrap_or_else(|e| panic!("failed to run {kubectl}: {e}"));
        assert!(
            out.status.success(),
            "failed to register the deployed webhooks: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secrets: Api<Secret> = Api::namespaced(cluster.client().await, "argocd");
        let probe = |labels: serde_json::Value, annotations: serde_json::Value| -> Secret {
            serde_json::from_value(serde_json::json!({
                "metadata": {
                    "name": "secret-relay-webhook-probe",
                    "labels": labels,
                    "annotations": annotations,
                },
            }))
            .unwrap()
        };
        let forged = probe(
            serde_json::json!({"secret-relay.io/owner": "cluster.probe"}),
            serde_json::json!({}),
        );
        let digested = probe(
            serde_json::json!({}),
            serde_json::json!({"secret-relay.io/digest": "probe"}),
        );
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        within("the API server to call the deployed webhooks", async {
            loop {
                let validated = secrets.create(&dry_run, &forged).await.is_err();
                let mutated = secrets.create(&dry_run, &digested).await.is_ok_and(|s| {
                    s.annotations()
                        .get("secret-relay.io/digest")
                        .map(String::as_str)
                        != Some("probe")
                });
                if validated && mutated {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }

    /// Waits until every relay and webhook pod has loaded the policy ConfigMap at
    /// `revision` (its resourceVersion): each logs `policy loaded` with it.
    pub(crate) async fn wait_policy_loaded(&self, admin: &Client, revision: &str) {
        let pods: Api<Pod> = Api::namespaced(admin.clone(), SYSTEM_NAMESPACE);
        let selector = format!("app.kubernetes.io/name in ({})", POLICY_READERS.join(","));
        within(
            &format!("every relay and webhook pod to load policy revision {revision}"),
            async {
                loop {
                    if every_pod_loaded(&pods, &selector, revision).await {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        )
        .await;
    }
}

/// Whether every running pod `selector` picks logged the load of `revision`.
async fn every_pod_loaded(pods: &Api<Pod>, selector: &str, revision: &str) -> bool {
    let running = pods
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap();
    for pod in running
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        // A container still starting has no log yet.
        let Ok(log) = pods.logs(&pod.name_any(), &LogParams::default()).await else {
            return false;
        };
        let loaded = log.lines().any(|line| {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
                return false;
            };
            entry["fields"]["message"] == "policy loaded"
                && entry["fields"]["revision"].as_str() == Some(revision)
        });
        if !loaded {
            return false;
        }
    }
    !running.items.is_empty()
}
