//! secret-relay sandbox: an in-memory Kubernetes API server for the demo and tests.
//!
//! It serves core/v1 Namespaces, Secrets and ConfigMaps, admissionregistration.k8s.io/v1
//! webhook configurations and events.k8s.io/v1 Events (what the agent records and the
//! Secrets page reads) over HTTPS, calls admission webhooks as kube-apiserver does, and
//! behaves closely enough to kube-apiserver that kubectl, kube-rs and the Python client work
//! against it. It is never for production: nothing is persisted and there is no RBAC.
//!
//! Several sandboxes can run in one process: there is no global state.
//!
//! # Where it knowingly differs from kube-apiserver
//!
//! The fidelity suite (tests/fidelity) runs every check against this sandbox and against
//! kube-apiserver; a check the sandbox knowingly fails is marked `sandbox_differs` there and
//! listed here, with the upstream source (paths in kubernetes/kubernetes).
//!
//! - Namespace deletion is immediate: the DELETE answers with the namespace in phase
//!   `Terminating`, after its contents were deleted through admission as the namespace
//!   controller (`system:serviceaccount:kube-system:namespace-controller`). If admission
//!   refuses one of those deletes, the namespace DELETE fails with that Status (a real cluster
//!   would leave the namespace stuck in `Terminating`). So a create in a namespace just
//!   deleted is 404 NotFound here, where kube-apiserver answers 403 Forbidden with cause
//!   `NamespaceTerminating` until the namespace controller has emptied it
//!   (plugin/pkg/admission/namespace/lifecycle/admission.go).
//! - Watch history is a count: the last `historyLimit` events per kind, and a watch from an
//!   older resourceVersion gets the 410 Expired ERROR event. kube-apiserver's watch cache
//!   keeps every event younger than 75 s (`eventFreshDuration`), growing its buffer (100 up
//!   to 102400 events) rather than dropping one, and drops the oldest only once they are older
//!   and the buffer is full (staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache_history.go:
//!   `resizeCacheLocked`, `GetIntervalLocked`; the message is the same,
//!   `too old resource version: RV (OLDEST)`). Compacting etcd does not expire a watch's
//!   resourceVersion there: the watch cache still serves it.
//! - Events are the events.k8s.io/v1 subset an event recorder and a reader use: create,
//!   get, list, watch, patch (the recorder's series) and delete, validated for the fields
//!   every v1 Event needs, its type and a note of at most 1 KiB
//!   (pkg/apis/events/validation). There are no core/v1 Events, no Event TTL (they go with
//!   their namespace), and not the rest of `ValidateEventCreate` (reportingController's
//!   and action's formats, the deprecated fields, `regarding`'s rules).
//! - Protobuf request bodies are decoded for Namespaces, Secrets and ConfigMaps (what
//!   `kubectl create` sends); other kinds answer 415. Responses are always JSON.
//! - Field ownership (managedFields, server-side apply) is tracked per key of
//!   `metadata.labels`, `metadata.annotations` and map fields (`data`, `stringData`,
//!   `binaryData`), for those maps themselves (`".": {}`), for `metadata.generateName`, and
//!   per top-level field otherwise: a webhook configuration's `webhooks` list is one field
//!   where kube-apiserver tracks each webhook by name, and `metadata.finalizers` and
//!   `metadata.ownerReferences` are owned by no one
//!   (staging/src/k8s.io/apimachinery/pkg/util/managedfields).
//! - A `continue` token lists the current objects after its key (not a snapshot) and expires
//!   with compaction; its encoding differs from kube-apiserver's, so a token that does not
//!   decode is a 400 BadRequest on both but with other words
//!   (staging/src/k8s.io/apiserver/pkg/storage/continue.go). A list with
//!   `resourceVersionMatch=Exact` is validated as there but answered with the current objects,
//!   not those at that resourceVersion (staging/src/k8s.io/apiserver/pkg/storage/cacher/
//!   delegator.go). There is no RBAC: every authenticated user may do everything.
//! - A patch body is decoded with the Strict/Warn field validation's error wording also under
//!   `fieldValidation=Ignore`, where kube-apiserver words some decoding errors differently
//!   (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go, `applyJSPatch`).
//! - JSON bodies are read as kube-apiserver's Go decoders read them, a repeated key included
//!   (see `gojson`), also under a YAML content type; a YAML body that is not JSON and repeats
//!   a key is a 400 (serde_yaml refuses it), where goyaml keeps the later value and
//!   kube-apiserver warns `line N: key "k" already set in map` (a 400 under Strict).
//! - With `fieldValidation=Strict`, the 422 for a merge or JSON patch shows the patched object
//!   with every object's keys sorted; kube-apiserver shows the parts the patch did not touch
//!   in the Go struct's field order (evanphx/json-patch re-encodes only what it touches).
//! - A strategic merge patch walks a map's keys in sorted order, Go in random order: when a
//!   patch has several faults, which one the error names can differ.
//! - A value of the wrong JSON type (a label value that is a number or an object, `labels`
//!   that is a string) is stored as sent, where kube-apiserver refuses it (400
//!   `json: cannot unmarshal ... into Go struct field ...` for a create or update, 422
//!   `patch: Invalid value: ...` for a patch). Owner references (at most one controller) and
//!   webhook rules (apiGroups, apiVersions and resources required) are not validated.

// Every handler fails with a `Status` mirroring metav1.Status; its size is irrelevant next to a
// TLS round trip, and boxing it everywhere would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod admission;
mod auth;
mod discovery;
mod fields;
mod gojson;
mod meta;
mod patch;
mod protobuf;
mod resource;
mod selector;
mod server;
mod status;
mod store;
mod table;
mod tls;
mod validate;

pub use auth::UserInfo;
pub use status::{FieldError, Resource, Status, StatusCause};

/// How to run one sandbox API server.
#[derive(Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxConfig {
    /// Listen address; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Users; each gets a kubeconfig. Default: `admin` in group `system:masters`, allowed to impersonate.
    pub users: Vec<UserConfig>,
    /// Where admission dials webhook services: `"name.namespace.svc:port"` -> address.
    pub services: BTreeMap<String, SocketAddr>,
    /// Events kept per kind for watch resume; older resourceVersions get 410 Expired.
    pub history_limit: usize,
    /// Largest accepted request body, in bytes (kube-apiserver: 3 MiB).
    pub max_body_bytes: usize,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK, in seconds.
    pub bookmark_interval_seconds: u64,
}

/// One user of the sandbox.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserConfig {
    /// The user name (client certificate CN).
    pub name: String,
    /// Groups (client certificate O).
    #[serde(default)]
    pub groups: Vec<String>,
    /// A bearer token; without one a client certificate is issued.
    #[serde(default)]
    pub token: Option<String>,
    /// Whether this user may send `Impersonate-*` headers.
    #[serde(default)]
    pub impersonate: bool,
}

/// Why a sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the listen address failed.
    #[error("failed to bind {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Issuing the CA, serving or client certificates failed.
    #[error("failed to issue sandbox certificates: {0}")]
    Certs(String),
    /// The configuration is inconsistent.
    #[error("failed to validate sandbox config: {0}")]
    Config(String),
}

/// A running sandbox API server. Dropping it stops the server too (connections and watches
/// end in the background); [`Sandbox::shutdown`] also waits for the listener to close.
pub struct Sandbox {
    addr: SocketAddr,
    ca_pem: String,
    kubeconfigs: BTreeMap<String, String>,
    shared: Arc<server::Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            users: vec![UserConfig {
                name: "admin".to_owned(),
                groups: vec!["system:masters".to_owned()],
                token: None,
                impersonate: true,
            }],
            services: BTreeMap::new(),
            history_limit: 1000,
            max_body_bytes: 3 * 1024 * 1024,
            bookmark_interval_seconds: 60,
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("addr", &self.addr)
            .field("users", &self.users)
            .field("services", &self.services)
            .field("history_limit", &self.history_limit)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("bookmark_interval_seconds", &self.bookmark_interval_seconds)
            .finish()
    }
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("impersonate", &self.impersonate)
            .finish()
    }
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Starts a sandbox API server; it is serving when this returns.
pub async fn start(config: SandboxConfig) -> Result<Sandbox, StartError> {
    let mut names = std::collections::BTreeSet::new();
    for user in &config.users {
        if user.name.is_empty() || !names.insert(user.name.clone()) {
            return Err(StartError::Config(format!(
                "user names must be unique and non-empty: {:?}",
                user.name
            )));
        }
    }
    let pki = tls::Pki::issue(&config.users)?;
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.addr,
        source,
    })?;

    let mut authenticator = auth::Authenticator::default();
    for user in &config.users {
        authenticator
            .users
            .insert(user.name.clone(), user.impersonate);
        if let Some(token) = &user.token {
            authenticator.tokens.insert(
                token.clone(),
                UserInfo {
                    username: user.name.clone(),
                    groups: user.groups.clone(),
                    ..UserInfo::default()
                },
            );
        }
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(server::Shared {
        db: Mutex::new(store::Db::new(config.history_limit, &meta::now())),
        auth: authenticator,
        admission: admission::AdmissionWebhooks::new(config.services.clone()),
        max_body: config.max_body_bytes,
        bookmark_interval: Duration::from_secs(config.bookmark_interval_seconds.max(1)),
        shutdown: shutdown_rx,
        watches_started: std::sync::atomic::AtomicU64::new(0),
    });
    let url = format!("https://{addr}");
    let kubeconfigs = config
        .users
        .iter()
        .map(|u| {
            (
                u.name.clone(),
                kubeconfig(&url, &pki.ca_pem, u, pki.client_certs.get(&u.name)),
            )
        })
        .collect();
    let task = tokio::spawn(server::serve(listener, pki.acceptor, shared.clone()));
    tracing::info!(%url, "sandbox API server serving");
    Ok(Sandbox {
        addr,
        ca_pem: pki.ca_pem,
        kubeconfigs,
        shared,
        shutdown: shutdown_tx,
        task,
    })
}

fn kubeconfig(
    url: &str,
    ca_pem: &str,
    user: &UserConfig,
    cert: Option<&secret_relay_certs::IssuedCert>,
) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut credentials = serde_json::Map::new();
    if let Some(token) = &user.token {
        credentials.insert("token".into(), json!(token));
    } else if let Some(cert) = cert {
        credentials.insert("client-certificate-data".into(), json!(b64(&cert.cert_pem)));
        credentials.insert("client-key-data".into(), json!(b64(&cert.key_pem)));
    }
    let context = format!("{}@sandbox", user.name);
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": url, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user.name, "user": credentials}],
        "contexts": [{"name": context, "context": {"cluster": "sandbox", "user": user.name, "namespace": "default"}}],
        "current-context": context,
        "preferences": {},
    });
    // A JSON value of strings, arrays and maps (string keys) has no failure case
    // in YAML; an empty kubeconfig would fail later, far from here.
    serde_yaml::to_string(&doc).expect("a JSON document always serializes to YAML")
}

impl Sandbox {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA (PEM) that signed the serving certificate and the users' client certificates.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The kubeconfig (YAML) of a configured user.
    pub fn kubeconfig(&self, user: &str) -> Option<String> {
        self.kubeconfigs.get(user).cloned()
    }

    /// Writes `<user>.kubeconfig` for each user into `dir` (created if missing).
    pub fn write_kubeconfigs(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (user, config) in &self.kubeconfigs {
            let path = dir.join(format!("{user}.kubeconfig"));
            let tmp = dir.join(format!(".{user}.kubeconfig.tmp"));
            std::fs::write(&tmp, config)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(())
    }

    /// Test hook: drops the watch history, so a watch or `continue` from an older
    /// resourceVersion gets 410 Expired.
    pub fn compact_history(&self) {
        self.shared.db().compact();
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.db().rv()
    }

    /// Test hook: how many watch requests have been served so far (to await a reconnect).
    pub fn watches_started(&self) -> u64 {
        self.shared
            .watches_started
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops accepting, ends open watches and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_from_yaml_with_defaults() {
        let yaml = r#"
users:
  - name: relay
    groups: [relayers]
    token: abc
    impersonate: true
services:
  "secret-relay-webhook.secret-relay.svc:443": "127.0.0.1:9443"
historyLimit: 50
"#;
        let config: SandboxConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(config.users[0].name, "relay");
        assert!(config.users[0].impersonate);
        assert_eq!(config.history_limit, 50);
        assert_eq!(config.max_body_bytes, 3 * 1024 * 1024);
        assert_eq!(
            config.services["secret-relay-webhook.secret-relay.svc:443"],
            "127.0.0.1:9443".parse().unwrap()
        );
        assert!(
            !format!("{config:?}").contains("abc"),
            "tokens are redacted"
        );
    }

    #[test]
    fn unknown_config_keys_are_rejected() {
        assert!(serde_yaml::from_str::<SandboxConfig>("histroyLimit: 5").is_err());
    }

    #[tokio::test]
    async fn duplicate_users_are_refused() {
        let mut config = SandboxConfig::default();
        config.users.push(config.users[0].clone());
        assert!(matches!(start(config).await, Err(StartError::Config(_))));
    }

    #[tokio::test]
    async fn kubeconfigs_are_written_per_user() {
        let sandbox = start(SandboxConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        sandbox.write_kubeconfigs(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("admin.kubeconfig")).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"].as_str(),
            Some(sandbox.url().as_str())
        );
        assert!(doc["users"][0]["user"]["client-certificate-data"].is_string());
        assert!(sandbox.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        sandbox.shutdown().await;
    }
}
