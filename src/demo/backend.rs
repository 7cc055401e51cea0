//! The API servers of the demo: in-process sandboxes, or real kube-apiservers from
//! `scripts/control-plane.sh`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};

/// Which API servers the demo runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Backend {
    /// In-process sandboxes: no Go, no Docker, no cluster.
    Sandbox,
    /// etcd, kube-apiserver and kube-controller-manager built from their Go modules.
    Real,
}

/// Service accounts the demo acts as on the control plane.
pub(crate) const CONTROL_PLANE_ACCOUNTS: [(&str, &str); 2] = [
    ("secret-relay-system", "secret-relay"),
    ("secret-relay-system", "secret-relay-webhook"),
];

/// The managed cluster's agent: its service account, Role and RoleBinding are taken
/// from here (the Namespace, Deployment and NetworkPolicy are not: the agent runs in
/// this process).
const AGENT_MANIFEST: &str = include_str!("../../manifests/managed-cluster/agent.yaml");
/// The webhook's service account and the Role that reads its policy ConfigMap.
const WEBHOOK_RBAC_MANIFEST: &str = include_str!("../../manifests/base/rbac.yaml");

/// One running API server.
pub(crate) enum ApiServer {
    Sandbox {
        sandbox: secret_relay_sandbox::Sandbox,
        dir: PathBuf,
    },
    Real {
        dir: PathBuf,
    },
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/control-plane.sh")
}

impl ApiServer {
    /// Starts an API server whose state lives in `dir`; `services` are webhook
    /// services (`name.namespace.svc`) and where they listen; `accounts` are the
    /// service accounts (namespace, name) the demo acts as (on a sandbox they are
    /// users with a token; a real server issues tokens for the service accounts the
    /// demo creates).
    pub(crate) async fn start(
        backend: Backend,
        dir: &Path,
        services: &[(&str, SocketAddr)],
        accounts: &[(&str, &str)],
    ) -> anyhow::Result<ApiServer> {
        std::fs::create_dir_all(dir)?;
        match backend {
            Backend::Sandbox => {
                let mut config = secret_relay_sandbox::SandboxConfig {
                    addr: "127.0.0.1:0".parse()?,
                    services: services
                        .iter()
                        .map(|(host, addr)| (format!("{host}:{}", addr.port()), *addr))
                        .collect(),
                    ..secret_relay_sandbox::SandboxConfig::default()
                };
                for (ns, name) in accounts {
                    config.users.push(secret_relay_sandbox::UserConfig {
                        name: format!("system:serviceaccount:{ns}:{name}"),
                        groups: vec![
                            "system:serviceaccounts".to_owned(),
                            format!("system:serviceaccounts:{ns}"),
                            "system:authenticated".to_owned(),
                        ],
                        token: Some(random_token()),
                        impersonate: true,
                    });
                }
                let sandbox = secret_relay_sandbox::start(config).await?;
                sandbox.write_kubeconfigs(dir)?;
                Ok(ApiServer::Sandbox {
                    sandbox,
                    dir: dir.to_path_buf(),
                })
            }
            Backend::Real => {
                // A previous run may have left one behind.
                let _ = tokio::process::Command::new(script())
                    .arg("down")
                    .arg(dir)
                    .status()
                    .await;
                for stale in ["pids", "env", "etcd-data"] {
                    let path = dir.join(stale);
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_dir_all(&path);
                }
                let out = tokio::process::Command::new(script())
                    .arg("up")
                    .arg(dir)
                    .env("CONTROL_PLANE_OWNER_PID", std::process::id().to_string())
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .context("failed to run scripts/control-plane.sh")?;
                if !out.status.success() {
                    anyhow::bail!(
                        "scripts/control-plane.sh up {} failed:\n{}",
                        dir.display(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let server = ApiServer::Real {
                    dir: dir.to_path_buf(),
                };
                let client = server.client().await?;
                for (host, addr) in services {
                    let mut parts = host.split('.');
                    let (Some(name), Some(namespace)) = (parts.next(), parts.next()) else {
                        anyhow::bail!("service {host} is not name.namespace.svc");
                    };
                    create_namespace(&client, namespace).await?;
                    apply(
                        &client,
                        serde_json::json!({
                            "apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": name, "namespace": namespace},
                            "spec": {"type": "ExternalName", "externalName": addr.ip().to_string(),
                                     "ports": [{"name": "https", "port": addr.port()}]},
                        }),
                    )
                    .await?;
                }
                Ok(server)
            }
        }
    }

    /// The admin kubeconfig.
    pub(crate) fn kubeconfig(&self) -> PathBuf {
        match self {
            ApiServer::Sandbox { dir, .. } | ApiServer::Real { dir } => {
                dir.join("admin.kubeconfig")
            }
        }
    }

    /// An admin client.
    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        secret_relay_runtime::kube_client(Some(&self.kubeconfig()))
            .await
            .context("failed to build a client for the demo")
    }

    /// The least-privilege RBAC of the repository's manifests, for this policy's
    /// clusters and control-plane namespace (the sandbox has no RBAC: nothing to do).
    pub(crate) async fn install_rbac(
        &self,
        clusters: &[String],
        cp_ns: &str,
    ) -> anyhow::Result<()> {
        let ApiServer::Real { .. } = self else {
            return Ok(());
        };
        let client = self.client().await?;
        let sa = |name: &str| serde_json::json!({"kind": "ServiceAccount", "name": name, "namespace": "secret-relay-system"});
        let users: Vec<String> = clusters
            .iter()
            .map(|c| format!("secret-relay:cluster:{c}"))
            .collect();
        let objects = [
            serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "secret-relay", "namespace": "secret-relay-system"}}),
            serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "secret-relay-webhook", "namespace": "secret-relay-system"}}),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "secret-relay-policy-reader", "namespace": "secret-relay-system"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["secret-relay-policy"], "verbs": ["get", "list", "watch"]}]}),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "secret-relay-policy-reader", "namespace": "secret-relay-system"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-relay-policy-reader"},
                "subjects": [sa("secret-relay"), sa("secret-relay-webhook")]}),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "secret-relay-hub", "namespace": cp_ns},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "update"]}]}),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "secret-relay-hub", "namespace": cp_ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-relay-hub"},
                "subjects": [sa("secret-relay")]}),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "secret-relay-impersonate-clusters"},
            "rules": [
                {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": users},
                {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"], "resourceNames": ["secret-relay:clusters", "secret-relay:relay-stamped"]},
            ]}),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "secret-relay-impersonate-clusters"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-relay-impersonate-clusters"},
                "subjects": [sa("secret-relay")]}),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "secret-relay-clusters", "namespace": cp_ns},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "secret-relay-clusters", "namespace": cp_ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-relay-clusters"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "secret-relay:clusters"}]}),
        ];
        for obj in objects {
            apply(&client, obj).await?;
        }
        Ok(())
    }

    /// The least-privilege RBAC of `manifests/managed-cluster` on a managed cluster:
    /// the webhook reads its policy ConfigMap, the agent (service account
    /// `secret-relay-agent`, in `agent_ns` as the README's overlay moves it) writes
    /// the Secrets of its namespace (the sandbox has no RBAC: nothing to do).
    pub(crate) async fn install_managed_rbac(&self, agent_ns: &str) -> anyhow::Result<()> {
        let ApiServer::Real { .. } = self else {
            return Ok(());
        };
        let client = self.client().await?;
        // The base's objects get their namespace from kustomize.
        for doc in WEBHOOK_RBAC_MANIFEST.split("\n---\n") {
            let mut value: serde_json::Value = serde_yaml::from_str(doc)?;
            value["metadata"]["namespace"] = "secret-relay-system".into();
            apply(&client, value).await?;
        }
        let agent = AGENT_MANIFEST.replace("namespace: akuity", &format!("namespace: {agent_ns}"));
        for doc in agent.split("\n---\n") {
            let value: serde_json::Value = serde_yaml::from_str(doc)?;
            if matches!(
                value["kind"].as_str(),
                Some("ServiceAccount" | "Role" | "RoleBinding")
            ) {
                apply(&client, value).await?;
            }
        }
        Ok(())
    }

    /// A kubeconfig acting as service account `namespace/name`, written to `path`.
    pub(crate) async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        path: &Path,
    ) -> anyhow::Result<PathBuf> {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        match self {
            ApiServer::Sandbox { sandbox, .. } => {
                let text = sandbox
                    .kubeconfig(&user)
                    .with_context(|| format!("the sandbox has no user {user}"))?;
                std::fs::write(path, text)?;
            }
            ApiServer::Real { dir } => {
                let client = self.client().await?;
                let req = http::Request::post(format!(
                    "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
                ))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&serde_json::json!({
                    "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"expirationSeconds": 86400},
                }))?)?;
                let answer: serde_json::Value = client
                    .request(req)
                    .await
                    .with_context(|| format!("failed to get a token for {user}"))?;
                let token = answer["status"]["token"].as_str().unwrap_or_default();
                let admin = std::fs::read_to_string(dir.join("admin.kubeconfig"))?;
                let kc: serde_yaml::Value = serde_yaml::from_str(&admin)?;
                let server = kc["clusters"][0]["cluster"]["server"]
                    .as_str()
                    .unwrap_or_default();
                let ca = kc["clusters"][0]["cluster"]["certificate-authority-data"]
                    .as_str()
                    .unwrap_or_default();
                std::fs::write(
                    path,
                    format!(
                        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: sa\n  context: {{cluster: c, user: sa}}\ncurrent-context: sa\n"
                    ),
                )?;
            }
        }
        Ok(path.to_path_buf())
    }

    /// A kubeconfig acting as service account `namespace/name`, written to this
    /// server's directory as `NAME.kubeconfig`.
    pub(crate) async fn own_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<PathBuf> {
        self.service_account_kubeconfig(
            namespace,
            name,
            &self.dir().join(format!("{name}.kubeconfig")),
        )
        .await
    }

    fn dir(&self) -> &Path {
        match self {
            ApiServer::Sandbox { dir, .. } | ApiServer::Real { dir } => dir,
        }
    }

    /// Stops the API server.
    pub(crate) async fn stop(self) {
        match self {
            ApiServer::Sandbox { sandbox, .. } => sandbox.shutdown().await,
            ApiServer::Real { dir } => {
                let _ = tokio::process::Command::new(script())
                    .arg("down")
                    .arg(&dir)
                    .status()
                    .await;
            }
        }
    }
}

/// Creates a namespace; an existing one is fine.
pub(crate) async fn create_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to create namespace {name}")),
    }
}

/// Server-side applies one object.
async fn apply(client: &Client, value: serde_json::Value) -> anyhow::Result<()> {
    let obj: DynamicObject = serde_json::from_value(value)?;
    let types = obj
        .types
        .clone()
        .context("an object without apiVersion/kind")?;
    let (group, version) = types
        .api_version
        .split_once('/')
        .unwrap_or(("", types.api_version.as_str()));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &types.kind);
    let mut resource = ApiResource::from_gvk(&gvk);
    resource.plural = match types.kind.as_str() {
        "ClusterRole" => "clusterroles".to_owned(),
        "ClusterRoleBinding" => "clusterrolebindings".to_owned(),
        other => format!("{}s", other.to_ascii_lowercase()),
    };
    let name = obj.metadata.name.clone().unwrap_or_default();
    let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &name,
        &PatchParams::apply("secret-relay-demo").force(),
        &Patch::Apply(&obj),
    )
    .await
    .with_context(|| format!("failed to apply {} {name}", types.kind))?;
    Ok(())
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    // The sandbox is local to this process; the token only has to be unguessable.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
