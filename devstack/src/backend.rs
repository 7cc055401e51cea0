//! The API servers a stack runs on: an in-process sandbox, a real control plane
//! (etcd, kube-apiserver and kube-controller-manager built from their Go modules and
//! started by `scripts/control-plane.sh`), or a cluster made elsewhere, named by a
//! kubeconfig. The demo, the testkit and the benches start them all here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use secret_relay_sandbox::{Sandbox, SandboxConfig, UserConfig};

/// Which API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// In-process sandboxes: no Go, no Docker, no cluster.
    Sandbox,
    /// etcd, kube-apiserver and kube-controller-manager built from their Go modules.
    Real,
    /// A cluster made elsewhere, named by a kubeconfig (tests only).
    #[value(skip)]
    Outside,
}

/// How to start an [`ApiServer`].
#[derive(Clone, Debug, Default)]
pub struct ApiServerOptions {
    /// Webhook services the API server must reach: `name.namespace.svc` -> where it
    /// listens. The sandbox maps them in its config; elsewhere each becomes an
    /// `ExternalName` Service pointing at the address (or at `outside_webhook_host`),
    /// which kube-apiserver's service resolver dials with the service's name as SNI.
    pub services: Vec<(String, SocketAddr)>,
    /// Service accounts (namespace, name) the stack acts as: the sandbox gets a user
    /// with a token for each (allowed to impersonate: the sandbox has no RBAC); a
    /// real server issues tokens through the TokenRequest API for the accounts the
    /// manifests create.
    pub service_accounts: Vec<(String, String)>,
    /// Sandbox only: events kept for watch resume (0: the sandbox default).
    pub history_limit: usize,
    /// Real only: run kube-controller-manager as the single identity
    /// `system:kube-controller-manager` instead of one service account per controller.
    pub kcm_single_identity: bool,
    /// Outside only: the cluster's admin kubeconfig.
    pub outside_kubeconfig: Option<PathBuf>,
    /// Outside only: the address the cluster reaches this machine at.
    pub outside_webhook_host: Option<String>,
}

/// A running API server with an admin kubeconfig.
pub struct ApiServer {
    backend: Backend,
    kubeconfig: PathBuf,
    dir: PathBuf,
    outside_webhook_host: Option<String>,
    inner: Inner,
}

enum Inner {
    Sandbox(Sandbox),
    Real(RealControlPlane),
    Outside { url: String },
}

/// A control plane started by `scripts/control-plane.sh up DIR`; dropping it runs
/// `down DIR`.
pub struct RealControlPlane {
    dir: PathBuf,
    env: BTreeMap<String, String>,
}

impl ApiServer {
    /// Starts an API server of `backend` whose state lives in `dir` (an outside
    /// cluster keeps only scratch files there), and routes `options.services`.
    pub async fn start(
        backend: Backend,
        dir: &Path,
        options: &ApiServerOptions,
    ) -> anyhow::Result<ApiServer> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let (kubeconfig, inner) = match backend {
            Backend::Sandbox => {
                let sandbox = start_sandbox(options).await?;
                sandbox.write_kubeconfigs(dir)?;
                (dir.join("admin.kubeconfig"), Inner::Sandbox(sandbox))
            }
            Backend::Real => {
                let real = RealControlPlane::start(dir, options.kcm_single_identity).await?;
                (dir.join("admin.kubeconfig"), Inner::Real(real))
            }
            Backend::Outside => {
                let kubeconfig = options
                    .outside_kubeconfig
                    .clone()
                    .context("an outside API server needs its kubeconfig")?;
                let url = server_url(&kubeconfig).await?;
                (kubeconfig, Inner::Outside { url })
            }
        };
        let server = ApiServer {
            backend,
            kubeconfig,
            dir: dir.to_path_buf(),
            outside_webhook_host: options.outside_webhook_host.clone(),
            inner,
        };
        if backend != Backend::Sandbox {
            server.route_services(&options.services).await?;
        }
        Ok(server)
    }

    /// Which API server this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The admin kubeconfig (cluster-admin: group `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory it was started with.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `https://HOST:PORT`.
    pub fn url(&self) -> String {
        match &self.inner {
            Inner::Sandbox(s) => s.url(),
            Inner::Real(r) => r.env("SERVER").unwrap_or_default().to_owned(),
            Inner::Outside { url } => url.clone(),
        }
    }

    /// The sandbox, when this is one.
    pub fn sandbox(&self) -> Option<&Sandbox> {
        match &self.inner {
            Inner::Sandbox(s) => Some(s),
            Inner::Real(_) | Inner::Outside { .. } => None,
        }
    }

    /// The real control plane, when this is one.
    pub fn real(&self) -> Option<&RealControlPlane> {
        match &self.inner {
            Inner::Real(r) => Some(r),
            Inner::Sandbox(_) | Inner::Outside { .. } => None,
        }
    }

    /// An admin client.
    pub async fn client(&self) -> anyhow::Result<Client> {
        client_from_kubeconfig(&self.kubeconfig, None).await
    }

    /// Routes webhook services to where they listen: an `ExternalName` Service per
    /// `name.namespace.svc`, applied (an outside cluster keeps an earlier one).
    pub async fn route_services(&self, services: &[(String, SocketAddr)]) -> anyhow::Result<()> {
        let client = self.client().await?;
        for (host, addr) in services {
            let mut parts = host.split('.');
            let (Some(name), Some(namespace)) = (parts.next(), parts.next()) else {
                anyhow::bail!("service host {host} is not name.namespace.svc");
            };
            create_namespace(&client, namespace).await?;
            // An outside cluster reaches this process at the address it is told.
            let target = match (&self.backend, &self.outside_webhook_host) {
                (Backend::Outside, Some(host)) => host.clone(),
                _ => addr.ip().to_string(),
            };
            let svc = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "type": "ExternalName",
                    "externalName": target,
                    "ports": [{"name": "https", "port": addr.port()}],
                },
            });
            Api::<Service>::namespaced(client.clone(), namespace)
                .patch(
                    name,
                    &PatchParams::apply("secret-relay-devstack").force(),
                    &Patch::Apply(svc),
                )
                .await
                .with_context(|| format!("failed to route service {host}"))?;
        }
        Ok(())
    }

    /// A kubeconfig acting as service account `namespace/name` by bearer token,
    /// written to `path`.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        path: &Path,
    ) -> anyhow::Result<PathBuf> {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let text = match &self.inner {
            Inner::Sandbox(s) => s
                .kubeconfig(&user)
                .with_context(|| format!("the sandbox was not started with user {user}"))?,
            Inner::Real(_) | Inner::Outside { .. } => {
                let token = self.token(namespace, name).await?;
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    {trust}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: sa\n  context: {{cluster: c, user: sa}}\ncurrent-context: sa\n",
                    server = self.url(),
                    trust = self.server_trust()?,
                )
            }
        };
        std::fs::write(path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
        Ok(path.to_path_buf())
    }

    /// A token for service account `namespace/name`, from the TokenRequest API.
    async fn token(&self, namespace: &str, name: &str) -> anyhow::Result<String> {
        let client = self.client().await?;
        let body = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 86400},
        });
        let req = http::Request::post(format!(
            "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
        ))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body)?)?;
        let answer: serde_json::Value = client.request(req).await.with_context(|| {
            format!(
                "failed to get a token for {namespace}/{name} (does the service account exist?)"
            )
        })?;
        answer["status"]["token"]
            .as_str()
            .map(str::to_owned)
            .context("a TokenRequest answer without a token")
    }

    /// How a kubeconfig trusts this API server: the kubeconfig line, from the admin
    /// kubeconfig's cluster (real control planes: the CA `up` wrote).
    fn server_trust(&self) -> anyhow::Result<String> {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        if let Some(ca) = self.real().and_then(|r| r.env("CA_CRT")) {
            return Ok(format!(
                "certificate-authority-data: {}",
                b64(&std::fs::read(ca)?)
            ));
        }
        let kc = Kubeconfig::read_from(&self.kubeconfig)?;
        let context = kc
            .current_context
            .as_ref()
            .and_then(|c| kc.contexts.iter().find(|n| &n.name == c))
            .and_then(|n| n.context.as_ref())
            .context("the kubeconfig has no current context")?;
        let cluster = kc
            .clusters
            .iter()
            .find(|n| n.name == context.cluster)
            .and_then(|n| n.cluster.as_ref())
            .context("the current context names no cluster of the kubeconfig")?;
        if let Some(data) = &cluster.certificate_authority_data {
            Ok(format!("certificate-authority-data: {data}"))
        } else if let Some(file) = &cluster.certificate_authority {
            let file = self
                .kubeconfig
                .parent()
                .map_or_else(|| PathBuf::from(file), |dir| dir.join(file));
            Ok(format!(
                "certificate-authority-data: {}",
                b64(&std::fs::read(&file)?)
            ))
        } else {
            anyhow::ensure!(
                cluster.insecure_skip_tls_verify == Some(true),
                "the kubeconfig says neither how to trust its server nor to skip the check"
            );
            Ok("insecure-skip-tls-verify: true".to_owned())
        }
    }

    /// Stops the API server (an outside cluster is left running).
    pub async fn stop(self) {
        match self.inner {
            Inner::Sandbox(sandbox) => sandbox.shutdown().await,
            Inner::Real(real) => tokio::task::spawn_blocking(move || drop(real))
                .await
                .unwrap_or_default(),
            Inner::Outside { .. } => {}
        }
    }
}

async fn start_sandbox(options: &ApiServerOptions) -> anyhow::Result<Sandbox> {
    let mut config = SandboxConfig {
        addr: "127.0.0.1:0".parse()?,
        services: options
            .services
            .iter()
            .map(|(host, addr)| (format!("{host}:{}", addr.port()), *addr))
            .collect(),
        ..SandboxConfig::default()
    };
    if options.history_limit > 0 {
        config.history_limit = options.history_limit;
    }
    for (ns, name) in &options.service_accounts {
        config.users.push(UserConfig {
            name: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".to_owned(),
            ],
            token: Some(random_token()?),
            impersonate: true,
        });
    }
    secret_relay_sandbox::start(config)
        .await
        .context("failed to start the sandbox")
}

/// The server URL of a kubeconfig's current context.
async fn server_url(kubeconfig: &Path) -> anyhow::Result<String> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("cannot read the kubeconfig {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", kubeconfig.display()))?;
    Ok(config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_owned())
}

fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for a sandbox token"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A kube client from a kubeconfig file, optionally impersonating a user and groups.
pub async fn client_from_kubeconfig(
    path: &Path,
    impersonate: Option<(&str, &[&str])>,
) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    if let Some((user, groups)) = impersonate {
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups =
            Some(groups.iter().map(|g| (*g).to_owned()).collect());
    }
    Ok(Client::try_from(config)?)
}

/// Creates a namespace; an existing one is fine.
pub async fn create_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
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

/// The repository root (the stack's scripts live there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn script() -> PathBuf {
    repo_root().join("scripts/control-plane.sh")
}

impl RealControlPlane {
    /// Runs `scripts/control-plane.sh up DIR` (building the binaries on a machine's
    /// first run) with a watchdog tied to this process, and reads `DIR/env`. A
    /// control plane an earlier run left in `DIR` is stopped first.
    ///
    /// A component that dies while the control plane starts (a free port taken by
    /// another process between its choice and the bind, on a machine starting many
    /// at once) gets one more try on fresh ports, after the failure is printed.
    pub async fn start(dir: &Path, kcm_single_identity: bool) -> anyhow::Result<RealControlPlane> {
        if dir.join("pids").exists() {
            let _ = tokio::process::Command::new(script())
                .arg("down")
                .arg(dir)
                .status()
                .await;
            clear(dir);
        }
        match RealControlPlane::start_once(dir, kcm_single_identity).await {
            Err(first)
                if first
                    .to_string()
                    .lines()
                    .any(|l| l.starts_with("control-plane: ") && l.ends_with(" exited")) =>
            {
                eprintln!(
                    "!!! the control plane in {} did not start; trying once more:\n{first}",
                    dir.display()
                );
                // `up` stopped what it had started; its files are left for `up` to redo.
                clear(dir);
                RealControlPlane::start_once(dir, kcm_single_identity).await
            }
            other => other,
        }
    }

    async fn start_once(dir: &Path, kcm_single_identity: bool) -> anyhow::Result<RealControlPlane> {
        let out = tokio::process::Command::new(script())
            .arg("up")
            .arg(dir)
            .env("CONTROL_PLANE_OWNER_PID", std::process::id().to_string())
            .env(
                "KCM_SA_CREDENTIALS",
                if kcm_single_identity { "false" } else { "true" },
            )
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("failed to run scripts/control-plane.sh")?;
        // From here on the script may have started processes: `down` on drop.
        let mut cp = RealControlPlane {
            dir: dir.to_path_buf(),
            env: BTreeMap::new(),
        };
        anyhow::ensure!(
            out.status.success(),
            "scripts/control-plane.sh up {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.join("env"))?;
        cp.env = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(cp)
    }

    /// A value of `DIR/env`: `SERVER`, `API_PORT`, `ETCD_PORT`, `CA_CRT`, `BIN_DIR`.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }

    /// The directory with the logs and PKI.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tail of one component's log, for failure messages.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{component}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops one component (`etcd`, `kube-apiserver`, `kube-controller-manager`) with
    /// SIGTERM, as a rolling restart does. Panics when the script fails (tests).
    pub async fn stop_component(&self, component: &str) {
        self.must("stop", component).await;
    }

    /// Stops one component with SIGKILL, as a crash does. Panics when the script fails.
    pub async fn kill_component(&self, component: &str) {
        self.must("kill", component).await;
    }

    /// Starts a stopped component again with exactly the flags and ports `up` gave
    /// it, and waits until it is ready (for kube-apiserver: `/readyz` answers ok).
    /// Panics when the script fails.
    pub async fn start_component(&self, component: &str) {
        self.must("start", component).await;
    }

    /// [`RealControlPlane::stop_component`], then [`RealControlPlane::start_component`].
    pub async fn restart(&self, component: &str) {
        self.must("restart", component).await;
    }

    async fn must(&self, verb: &str, component: &str) {
        if let Err(e) = self.component(verb, component).await {
            panic!("{e:#}");
        }
    }

    /// Runs `scripts/control-plane.sh VERB DIR COMPONENT`: `stop` (SIGTERM, as a
    /// rolling restart does), `kill` (SIGKILL, as a crash does), `start` (again, with
    /// the flags and ports `up` gave it, once ready) or `restart`.
    pub async fn component(&self, verb: &str, component: &str) -> anyhow::Result<()> {
        let out = tokio::process::Command::new(script())
            .arg(verb)
            .arg(&self.dir)
            .arg(component)
            .stdin(std::process::Stdio::null())
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "scripts/control-plane.sh {verb} {} {component} failed:\n{}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

/// Removes everything `up` left in `dir`.
fn clear(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

impl Drop for RealControlPlane {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("down").arg(&self.dir).status();
    }
}
