//! The kube client: a kubeconfig file, or in-cluster config (then `$KUBECONFIG`).

use std::path::{Path, PathBuf};

/// Failed to build a kube client.
#[derive(Debug, thiserror::Error)]
pub enum BuildClientError {
    /// The kubeconfig could not be read or parsed.
    #[error("failed to read kubeconfig {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No configuration was found (not in a cluster, no kubeconfig).
    #[error("failed to find a kubeconfig or in-cluster config")]
    Infer(#[source] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("failed to build the Kubernetes client")]
    Build(#[source] kube::Error),
}

/// A client from `kubeconfig`, or else in-cluster config or `$KUBECONFIG`.
pub async fn kube_client(kubeconfig: Option<&Path>) -> Result<kube::Client, BuildClientError> {
    kube::Client::try_from(kube_config(kubeconfig).await?).map_err(BuildClientError::Build)
}

/// The configuration [`kube_client`] builds from.
pub async fn kube_config(kubeconfig: Option<&Path>) -> Result<kube::Config, BuildClientError> {
    match kubeconfig {
        Some(path) => {
            let read = |source| BuildClientError::Read {
                path: path.to_path_buf(),
                source,
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(read)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(read)
        }
        None => kube::Config::infer().await.map_err(BuildClientError::Infer),
    }
}
