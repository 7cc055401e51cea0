//! `secret-relay ui`: a local web page of every Secret in the control-plane
//! namespace, its owner, where it goes under the live policy, and why.
//!
//! The page talks to the control plane with the user's own kubeconfig, so every
//! read and write is made as that user and the admission webhook judges every
//! write; its denials are shown verbatim. Values never reach the browser unless
//! the user asks to reveal one key, in a separate request made as the user.
//!
//! Every asset is compiled into the binary. Responses carry a strict
//! Content-Security-Policy; the page needs the access token printed at start
//! (kept in an `HttpOnly`, `SameSite=Strict` cookie), and every `/api/` request
//! the session token the page gets in the fragment of the address it is sent on
//! to (kept in the tab's `sessionStorage`, which no other port's page can read).
//! The server binds to loopback unless told otherwise, and then warns.

mod edit;
mod explain;
mod policy_edit;
mod server;
mod state;
mod view;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use secret_relay_runtime::{BuildClientError, CancellationToken};
use tokio::task::JoinHandle;

/// Where the page gets its data and how it is served.
#[derive(Clone, Debug)]
pub struct Config {
    /// The address to listen on; loopback unless the user says otherwise.
    pub addr: SocketAddr,
    /// The user's kubeconfig (default: `$KUBECONFIG`, `~/.kube/config` or in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    pub context: Option<String>,
    /// Namespace of the policy ConfigMap.
    pub policy_namespace: String,
    /// Name of the policy ConfigMap (key `policy.yaml`).
    pub policy_name: String,
    /// Managed clusters whose agents' reports (Events, down copies) the page reads.
    pub clusters: Vec<ClusterKubeconfig>,
    /// The relay's admin `/metrics` URL (`http://`), read for its write counters.
    pub relay_metrics: Option<String>,
    /// How often the relay's metrics are read.
    pub relay_metrics_interval: Duration,
    /// The access token the page's URL carries; random when `None`.
    pub token: Option<String>,
}

/// `NAME=FILE`: the kubeconfig of managed cluster `NAME` (as registered in the policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterKubeconfig {
    /// The cluster's name in the policy.
    pub name: String,
    /// A kubeconfig that may read Secrets' metadata and Events in its agent namespace.
    pub kubeconfig: PathBuf,
}

/// The running page.
#[derive(Clone, Debug)]
pub struct Started {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The address to open, with the access token.
    pub url: String,
    /// Whether it listens on loopback only.
    pub loopback: bool,
}

/// Failed to start the page.
#[derive(Debug, thiserror::Error)]
pub enum StartUiError {
    /// The user's kube client could not be built.
    #[error("failed to build the Kubernetes client from the kubeconfig")]
    Client(#[source] BuildClientError),
    /// The kubeconfig could not be read for `--context`.
    #[error("failed to read the kubeconfig for context {context}")]
    Context {
        /// The context asked for.
        context: String,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A managed cluster's kube client could not be built.
    #[error("failed to build the Kubernetes client of cluster {name} from {}", path.display())]
    ClusterClient {
        /// The cluster.
        name: String,
        /// Its kubeconfig.
        path: PathBuf,
        /// The cause.
        #[source]
        source: BuildClientError,
    },
    /// The relay metrics URL is not a plain `http://` URL.
    #[error(
        "failed to use --relay-metrics {0}: it must be an http:// URL of the relay's admin /metrics"
    )]
    RelayMetricsUrl(String),
    /// The address could not be bound.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No random token could be made.
    #[error("failed to generate a random access token")]
    Random,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8090)),
            kubeconfig: None,
            context: None,
            policy_namespace: "secret-relay-system".to_owned(),
            policy_name: "secret-relay-policy".to_owned(),
            clusters: Vec::new(),
            relay_metrics: None,
            relay_metrics_interval: Duration::from_secs(5),
            token: None,
        }
    }
}

impl FromStr for ClusterKubeconfig {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((name, path))
                if secret_relay_policy::is_valid_cluster_name(name) && !path.is_empty() =>
            {
                Ok(ClusterKubeconfig {
                    name: name.to_owned(),
                    kubeconfig: PathBuf::from(path),
                })
            }
            _ => Err(format!(
                "expected NAME=FILE with NAME a cluster name of the policy, got {s:?}"
            )),
        }
    }
}

/// Starts the page: the watches (as the user) and the server. Returns once it
/// listens; the task ends after `shutdown` is cancelled.
pub async fn start(
    config: Config,
    shutdown: CancellationToken,
) -> Result<(Started, JoinHandle<()>), StartUiError> {
    let client = user_client(config.kubeconfig.as_deref(), config.context.as_deref()).await?;
    let mut clusters = Vec::new();
    for c in &config.clusters {
        let cluster_client = secret_relay_runtime::kube_client(Some(&c.kubeconfig))
            .await
            .map_err(|source| StartUiError::ClusterClient {
                name: c.name.clone(),
                path: c.kubeconfig.clone(),
                source,
            })?;
        clusters.push((c.name.clone(), cluster_client));
    }
    if let Some(url) = &config.relay_metrics
        && !url.starts_with("http://")
    {
        return Err(StartUiError::RelayMetricsUrl(url.clone()));
    }
    let token = match config.token.clone() {
        Some(t) => t,
        None => server::random_token().ok_or(StartUiError::Random)?,
    };
    let csrf = server::random_token().ok_or(StartUiError::Random)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| StartUiError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartUiError::Bind {
        addr: config.addr,
        source,
    })?;
    let loopback = addr.ip().is_loopback();

    let shared = Arc::new(state::Shared::new(
        client,
        format!("{}/{}", config.policy_namespace, config.policy_name),
    ));
    state::spawn_watches(
        &shared,
        &config,
        clusters,
        config.relay_metrics.clone(),
        shutdown.clone(),
    );
    let guard = server::Guard::new(addr, token.clone(), csrf);
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let url = format!("http://{host}:{}/?token={token}", addr.port());
    let task = tokio::spawn(server::serve(listener, shared, guard, shutdown));
    Ok((
        Started {
            addr,
            url,
            loopback,
        },
        task,
    ))
}

async fn user_client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, StartUiError> {
    let Some(context) = context else {
        return secret_relay_runtime::kube_client(kubeconfig)
            .await
            .map_err(StartUiError::Client);
    };
    let failed = |source| StartUiError::Context {
        context: context.to_owned(),
        source,
    };
    let kc = match kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(failed)?;
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(failed)?;
    kube::Client::try_from(config).map_err(|e| StartUiError::Client(BuildClientError::Build(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_kubeconfig_flag_is_name_equals_file() {
        let c: ClusterKubeconfig = "cluster1=/tmp/c1.kubeconfig".parse().unwrap();
        assert_eq!(c.name, "cluster1");
        assert_eq!(c.kubeconfig, PathBuf::from("/tmp/c1.kubeconfig"));
        assert!("cluster1".parse::<ClusterKubeconfig>().is_err());
        assert!("Not_A_Name=/x".parse::<ClusterKubeconfig>().is_err());
        assert!("cluster1=".parse::<ClusterKubeconfig>().is_err());
    }
}
