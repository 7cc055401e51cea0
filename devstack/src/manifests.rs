//! The repository's `manifests/`, as a stack installs them: rendered here the way
//! `kubectl kustomize` renders them (for the kustomize features those files use),
//! then made fit for components that run in this process, and applied through the
//! API server with server-side apply, as `kubectl apply --server-side` would.
//!
//! The files are compiled in, so `secret-relay demo` needs neither kubectl nor the
//! repository. `tests/manifests.rs` renders both bases (and the README's namespace
//! overlays) here and with kubectl, and compares them object for object.
//!
//! What the stack changes, and nothing else:
//! - every webhook configuration trusts the stack's CA and names the port its
//!   in-process webhook listens on (the manifests' `caBundle: Cg==` placeholder and
//!   Service port 443);
//! - the relay may impersonate exactly the policy's clusters, the two lines an
//!   operator adds per cluster (`secret-relay certs cluster` prints them);
//! - another control-plane or agent namespace goes through the README's overlay
//!   ("Another namespace"), read from the README itself;
//! - what only a node runs stays out: Deployments, and the webhook's Service (the
//!   API server's route to the webhook goes to this process instead). The sandbox
//!   keeps only the kinds it serves.

use anyhow::Context as _;
use base64::Engine as _;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use serde_json::Value;

/// Every file of `manifests/`, by its path there; a test keeps the list complete.
pub const FILES: &[(&str, &str)] = &[
    (
        "base/kustomization.yaml",
        include_str!("../../manifests/base/kustomization.yaml"),
    ),
    (
        "base/namespace.yaml",
        include_str!("../../manifests/base/namespace.yaml"),
    ),
    (
        "base/networkpolicy.yaml",
        include_str!("../../manifests/base/networkpolicy.yaml"),
    ),
    (
        "base/policy.yaml",
        include_str!("../../manifests/base/policy.yaml"),
    ),
    (
        "base/rbac.yaml",
        include_str!("../../manifests/base/rbac.yaml"),
    ),
    (
        "base/webhook-deployment.yaml",
        include_str!("../../manifests/base/webhook-deployment.yaml"),
    ),
    (
        "control-plane/cluster-access.yaml",
        include_str!("../../manifests/control-plane/cluster-access.yaml"),
    ),
    (
        "control-plane/kustomization.yaml",
        include_str!("../../manifests/control-plane/kustomization.yaml"),
    ),
    (
        "control-plane/relay-rbac.yaml",
        include_str!("../../manifests/control-plane/relay-rbac.yaml"),
    ),
    (
        "control-plane/relay.yaml",
        include_str!("../../manifests/control-plane/relay.yaml"),
    ),
    (
        "control-plane/webhooks.yaml",
        include_str!("../../manifests/control-plane/webhooks.yaml"),
    ),
    (
        "managed-cluster/agent.yaml",
        include_str!("../../manifests/managed-cluster/agent.yaml"),
    ),
    (
        "managed-cluster/kustomization.yaml",
        include_str!("../../manifests/managed-cluster/kustomization.yaml"),
    ),
    (
        "managed-cluster/webhooks.yaml",
        include_str!("../../manifests/managed-cluster/webhooks.yaml"),
    ),
];

/// The README, for its namespace overlays.
const README: &str = include_str!("../../README.md");

/// The namespaces the manifests are written for.
pub const DEFAULT_CONTROL_PLANE_NAMESPACE: &str = "argocd";
/// See [`DEFAULT_CONTROL_PLANE_NAMESPACE`].
pub const DEFAULT_AGENT_NAMESPACE: &str = "akuity";

/// The kinds the sandbox serves; a real API server gets every kind the stack keeps.
const SANDBOX_KINDS: &[&str] = &[
    "Namespace",
    "ConfigMap",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// The cluster-scoped kinds of the manifests: kustomize's `namespace` leaves them be.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Which of the two installations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `manifests/control-plane`.
    ControlPlane,
    /// `manifests/managed-cluster`.
    ManagedCluster,
}

impl Side {
    fn dir(self) -> &'static str {
        match self {
            Side::ControlPlane => "control-plane",
            Side::ManagedCluster => "managed-cluster",
        }
    }
}

/// How a stack installs the manifests of one side.
#[derive(Clone, Debug)]
pub struct Install<'a> {
    /// Which side.
    pub side: Side,
    /// The policy's `controlPlaneNamespace` (control plane) or `agentNamespace`
    /// (managed cluster).
    pub namespace: &'a str,
    /// The clusters the relay may impersonate (control plane); `None` keeps the
    /// manifests' own list.
    pub clusters: Option<&'a [String]>,
    /// The CA that signed the webhook's serving certificate, PEM.
    pub ca_pem: &'a str,
    /// The port the in-process webhook listens on.
    pub webhook_port: u16,
    /// Keep only the kinds the sandbox serves.
    pub sandbox: bool,
}

/// `kubectl kustomize manifests/<side>`, through the README's overlay when
/// `namespace` is not the one the manifests are written for.
pub fn render(side: Side, namespace: &str) -> anyhow::Result<Vec<Value>> {
    let base = format!("{}/kustomization.yaml", side.dir());
    let default = match side {
        Side::ControlPlane => DEFAULT_CONTROL_PLANE_NAMESPACE,
        Side::ManagedCluster => DEFAULT_AGENT_NAMESPACE,
    };
    let mut objects = build(&base)?;
    if namespace != default {
        let overlay = readme_overlay(side, namespace)?;
        apply_patches(&overlay, &mut objects)?;
        if side == Side::ManagedCluster {
            // The README asks for agent.yaml's namespace to change with it.
            move_namespace(&mut objects, default, namespace);
        }
    }
    Ok(sorted(objects))
}

/// The objects a stack applies for `install`: [`render`], fit for in-process
/// components (see the module's documentation).
pub fn for_stack(install: &Install<'_>) -> anyhow::Result<Vec<Value>> {
    let bundle = base64::engine::general_purpose::STANDARD.encode(install.ca_pem);
    let mut kept = Vec::new();
    for mut obj in render(install.side, install.namespace)? {
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let node_only =
            kind == "Deployment" || (kind == "Service" && name == "secret-relay-webhook");
        if node_only || (install.sandbox && !SANDBOX_KINDS.contains(&kind.as_str())) {
            continue;
        }
        if kind.ends_with("WebhookConfiguration") {
            for webhook in obj["webhooks"].as_array_mut().into_iter().flatten() {
                webhook["clientConfig"]["caBundle"] = bundle.clone().into();
                webhook["clientConfig"]["service"]["port"] = install.webhook_port.into();
            }
        }
        if let Some(clusters) = install.clusters
            && kind == "ClusterRole"
            && name == "secret-relay-impersonate-clusters"
        {
            impersonate_only(&mut obj, clusters)?;
        }
        kept.push(obj);
    }
    Ok(kept)
}

/// Applies `objects` in order with server-side apply, as field manager
/// `secret-relay-devstack`.
pub async fn apply(client: &Client, objects: &[Value]) -> anyhow::Result<()> {
    for value in objects {
        let obj: DynamicObject = serde_json::from_value(value.clone())?;
        let types = obj
            .types
            .clone()
            .context("an object without apiVersion and kind")?;
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", types.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &types.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, &plural(&types.kind));
        let name = obj.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply("secret-relay-devstack").force(),
            &Patch::Apply(&obj),
        )
        .await
        .with_context(|| format!("failed to apply {} {name}", types.kind))?;
    }
    Ok(())
}

/// `kind`'s resource name, for the kinds of the manifests.
fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    match lower.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{lower}s"),
    }
}

/// The ClusterRole's user rule names exactly `clusters`' users.
fn impersonate_only(role: &mut Value, clusters: &[String]) -> anyhow::Result<()> {
    let users: Vec<Value> = clusters
        .iter()
        .map(|c| secret_relay_policy::keys::cluster_user(c).into())
        .collect();
    let rule = role["rules"]
        .as_array_mut()
        .and_then(|rules| {
            rules.iter_mut().find(|r| {
                r["resources"]
                    .as_array()
                    .is_some_and(|v| v.contains(&Value::from("users")))
            })
        })
        .context("the relay's ClusterRole has no rule for users")?;
    rule["resourceNames"] = Value::Array(users);
    Ok(())
}

fn file(path: &str) -> anyhow::Result<&'static str> {
    FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| *text)
        .with_context(|| format!("manifests/{path} is not compiled in"))
}

/// One kustomization, built: its resources (files, and directories' own
/// kustomizations), then its patches, then its namespace and labels.
fn build(kustomization: &str) -> anyhow::Result<Vec<Value>> {
    let dir = kustomization
        .rsplit_once('/')
        .map_or("", |(dir, _)| dir)
        .to_owned();
    let k: Value = serde_yaml::from_str(file(kustomization)?)
        .with_context(|| format!("manifests/{kustomization}"))?;
    let mut objects = Vec::new();
    for resource in k["resources"].as_array().into_iter().flatten() {
        let resource = resource.as_str().context("a resource that is not a path")?;
        let path = join(&dir, resource);
        if path.ends_with(".yaml") {
            objects.extend(documents(file(&path)?)?);
        } else {
            objects.extend(build(&format!("{path}/kustomization.yaml"))?);
        }
    }
    apply_patches(&k, &mut objects)?;
    if let Some(ns) = k["namespace"].as_str() {
        for obj in &mut objects {
            if !CLUSTER_SCOPED.contains(&obj["kind"].as_str().unwrap_or_default()) {
                obj["metadata"]["namespace"] = ns.into();
            }
        }
    }
    for entry in k["labels"].as_array().into_iter().flatten() {
        anyhow::ensure!(
            entry["includeSelectors"].as_bool() != Some(true)
                && entry["includeTemplates"].as_bool() != Some(true),
            "manifests/{kustomization}: labels into selectors or templates are not rendered here"
        );
        for obj in &mut objects {
            for (key, value) in entry["pairs"].as_object().into_iter().flatten() {
                obj["metadata"]["labels"][key] = value.clone();
            }
        }
    }
    Ok(objects)
}

/// `dir/relative`, with `..` resolved.
fn join(dir: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in relative.split('/') {
        match part {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// The YAML documents of one file, comments and empty documents left out.
fn documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(doc)?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// A kustomization's JSON 6902 `patches`, each on the objects its target selects.
fn apply_patches(kustomization: &Value, objects: &mut [Value]) -> anyhow::Result<()> {
    for entry in kustomization["patches"].as_array().into_iter().flatten() {
        let target = &entry["target"];
        let text = entry["patch"].as_str().context("a patch without a body")?;
        let patch: json_patch::Patch = serde_yaml::from_str(text).context("a patch body")?;
        for obj in objects.iter_mut().filter(|o| selects(target, o)) {
            json_patch::patch(obj, &patch).with_context(|| {
                format!(
                    "a patch does not apply to {} {}",
                    obj["kind"].as_str().unwrap_or_default(),
                    obj["metadata"]["name"].as_str().unwrap_or_default()
                )
            })?;
        }
    }
    Ok(())
}

/// Whether a patch's `target` selects `obj` (group, version, kind, name, namespace).
fn selects(target: &Value, obj: &Value) -> bool {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let field = |key: &str, actual: &str| target[key].as_str().is_none_or(|want| want == actual);
    field("group", group)
        && field("version", version)
        && field("kind", obj["kind"].as_str().unwrap_or_default())
        && field("name", obj["metadata"]["name"].as_str().unwrap_or_default())
        && field(
            "namespace",
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
        )
}

fn move_namespace(objects: &mut [Value], from: &str, to: &str) {
    for obj in objects {
        if obj["metadata"]["namespace"].as_str() == Some(from) {
            obj["metadata"]["namespace"] = to.into();
        }
    }
}

/// The README's overlay of `side` ("Another namespace") for `namespace`, as
/// documented but for the example namespace.
fn readme_overlay(side: Side, namespace: &str) -> anyhow::Result<Value> {
    let example = match side {
        Side::ControlPlane => "hub",
        Side::ManagedCluster => "agents",
    };
    let marker = format!("<!-- overlay: {} ", side.dir());
    let block = README
        .split_once(&marker)
        .map(|(_, rest)| rest)
        .with_context(|| format!("README.md has no {marker:?}"))?;
    let body = block
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(yaml, _)| yaml)
        .with_context(|| format!("README.md has no yaml block after {marker:?}"))?;
    let text = body
        .replace(&format!("[{example}]"), &format!("[{namespace}]"))
        .replace(
            &format!("value: {example}\n"),
            &format!("value: {namespace}\n"),
        );
    serde_yaml::from_str(&text).with_context(|| format!("README.md's overlay of {}", side.dir()))
}

/// kustomize's order where it matters to an apply: Namespaces first, webhook
/// configurations last (from then on they guard writes), the rest as written.
fn sorted(mut objects: Vec<Value>) -> Vec<Value> {
    // A stable sort keeps the written order within each rank.
    objects.sort_by_key(|o| match o["kind"].as_str() {
        Some("Namespace") => 0,
        Some("MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => 2,
        _ => 1,
    });
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    #[test]
    fn every_file_of_the_manifests_is_compiled_in() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
        let mut on_disk = Vec::new();
        for dir in std::fs::read_dir(&root).expect("manifests/") {
            let dir = dir.expect("an entry").path();
            for f in std::fs::read_dir(&dir).expect("a directory") {
                let f = f.expect("an entry").path();
                let rel = f.strip_prefix(&root).expect("under manifests/");
                on_disk.push(rel.to_string_lossy().into_owned());
            }
        }
        on_disk.sort();
        let listed: Vec<String> = FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        assert_eq!(listed, on_disk);
    }

    #[test]
    fn the_control_plane_renders_with_its_namespaces_and_labels() {
        let objects = render(Side::ControlPlane, "argocd").expect("renders");
        assert_eq!(objects[0]["kind"], "Namespace");
        assert_eq!(
            objects.last().expect("some")["kind"],
            "ValidatingWebhookConfiguration"
        );
        let role = find(&objects, "Role", "secret-relay-webhook-policy-reader");
        assert_eq!(role["metadata"]["namespace"], "secret-relay-system");
        assert_eq!(
            role["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "secret-relay"
        );
        assert_eq!(
            find(&objects, "Role", "secret-relay-hub")["metadata"]["namespace"],
            "argocd"
        );
    }

    #[test]
    fn another_namespace_goes_through_the_readme_overlay() {
        let objects = render(Side::ControlPlane, "hub2").expect("renders");
        assert_eq!(
            find(&objects, "Role", "secret-relay-hub")["metadata"]["namespace"],
            "hub2"
        );
        let webhook = find(&objects, "ValidatingWebhookConfiguration", "secret-relay");
        assert_eq!(
            webhook["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"],
            serde_json::json!(["hub2"])
        );
        let managed = render(Side::ManagedCluster, "team-a").expect("renders");
        assert_eq!(
            find(&managed, "ServiceAccount", "secret-relay-agent")["metadata"]["namespace"],
            "team-a"
        );
    }

    #[test]
    fn a_stack_trusts_its_ca_and_impersonates_only_its_clusters() {
        let clusters = vec!["east".to_owned()];
        let real = Install {
            side: Side::ControlPlane,
            namespace: "argocd",
            clusters: Some(&clusters),
            ca_pem: "PEM",
            webhook_port: 8443,
            sandbox: false,
        };
        let objects = for_stack(&real).expect("renders");
        assert!(!objects.iter().any(|o| o["kind"] == "Deployment"));
        let webhook = find(&objects, "MutatingWebhookConfiguration", "secret-relay");
        assert_eq!(
            webhook["webhooks"][0]["clientConfig"]["service"]["port"],
            8443
        );
        assert_eq!(webhook["webhooks"][0]["clientConfig"]["caBundle"], "UEVN");
        let role = find(&objects, "ClusterRole", "secret-relay-impersonate-clusters");
        assert_eq!(
            role["rules"][0]["resourceNames"],
            serde_json::json!(["secret-relay:cluster:east"])
        );
        let sandbox = for_stack(&Install {
            sandbox: true,
            ..real
        })
        .expect("renders");
        assert!(
            sandbox
                .iter()
                .all(|o| SANDBOX_KINDS.contains(&o["kind"].as_str().unwrap_or_default()))
        );
    }
}
