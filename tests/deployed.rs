//! Deployed as it ships (issue 21): the image built here and the control plane's
//! kustomization running as real pods on a real node.
//!
//! `scripts/test.sh` runs it last. Alone, the test skips, loudly, unless
//! `SECRET_RELAY_REAL_NODE=1`, and the sync scenarios need the built tests/sync.rs
//! binary in `SECRET_RELAY_SYNC_TESTS` (the script sets both). It needs root and changes host-global state while it runs (a bridge, iptables
//! chains, sysctls, kubelet's port 10250), all undone by `scripts/node.sh down`.
//! One node per machine: the tests of this file share one node, one after the
//! other (a mutex), and no other `node.sh up` may run meanwhile.
//!
//! Run it with:
//!
//! ```text
//! SECRET_RELAY_REAL_NODE=1 SECRET_RELAY_SYNC_TESTS=target/debug/deps/sync-HASH \
//!     cargo test -p secret-relay --test deployed -- --nocapture
//! ```
//!
//! What it does:
//! 1. `scripts/node.sh up DIR`: a control plane (scripts/control-plane.sh with its
//!    node opt-in), kube-scheduler, containerd, the bridge CNI, kubelet and
//!    kube-proxy (Debian packages installed if missing, binaries built once per
//!    machine);
//! 2. `scripts/image.sh secret-relay test` and `scripts/image.sh pause` (no
//!    registry, no base image), imported into the node's containerd;
//! 3. the PKI from `secret-relay certs`, the two certificate Secrets and the
//!    webhooks' caBundle the kustomization's header asks for (the relay's once its
//!    Service has an address: see [`relay_pki`]);
//! 4. `kubectl apply` of `tests/deployed/control-plane` (the control-plane
//!    kustomization, only the image name and `imagePullPolicy: Never` changed),
//!    then waits for the webhook and relay Deployments to be 2/2 Ready, and proves
//!    that the API server reaches the webhook through its Service and that
//!    `kubectl logs` works;
//! 5. registers cluster1 in the policy and applies the agent's objects of the
//!    managed-cluster kustomization (`tests/deployed/agent` says why only those):
//!    the agent goes Ready through the relay's Service, an opted-in Secret syncs up
//!    to its hub copy in argocd, and every component logs JSON lines;
//! 6. a user's operations on that stack: the sync's line in every log, a policy
//!    edit reaching every replica, a rolling update and killed pods during a sync,
//!    the webhook's budget during a drain;
//! 7. tests/sync.rs' scenarios against the relay and webhook pods, with two more
//!    control planes on this machine as managed clusters
//!    ([`sync_scenarios_pass_against_the_pods`]).
//!
//! `scripts/node.sh down DIR` runs when the test ends, and from a watchdog should
//! the test process die.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The node and its control plane, torn down on drop.
struct Node {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let out = Command::new(root().join("scripts/node.sh"))
            .arg("down")
            .arg(&self.dir)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            Ok(o) => eprintln!(
                "!!! node.sh down {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("!!! node.sh down {} failed to run: {e}", self.dir.display()),
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

/// Whether the real-node tests run here; says so loudly when they do not.
fn skipped(test: &str) -> bool {
    if std::env::var("SECRET_RELAY_REAL_NODE").as_deref() != Ok("1") {
        eprintln!(
            "!!! {test} skipped because SECRET_RELAY_REAL_NODE is not 1 \
             (the real-node suite: see the top of tests/deployed.rs)"
        );
        return true;
    }
    false
}

/// Runs a command, fails the test with its stderr if it fails; returns stdout.
fn run(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// [`run`] with `input` on the command's stdin.
fn run_with_input(cmd: &mut Command, input: &str) -> String {
    String::from_utf8(run_with_input_output(cmd, input).stdout).unwrap()
}

/// [`run_with_input`], returning stdout and stderr.
fn run_with_input_output(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write as _;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to run {what}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a script, its stderr going to the test's (progress and timings).
fn script(name: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(root().join("scripts").join(name));
    cmd.args(args)
        .env("CARGO_TARGET_DIR", target_dir())
        .stderr(Stdio::inherit());
    let what = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{what} failed ({})", out.status);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Node {
    fn up() -> Node {
        let dir = std::env::temp_dir().join(format!("secret-relay-node-{}", std::process::id()));
        let start = Instant::now();
        let status = Command::new(root().join("scripts/node.sh"))
            .arg("up")
            .arg(&dir)
            .env("CONTROL_PLANE_OWNER_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .status()
            .unwrap();
        // From here on, `down` runs whatever happens.
        let node = Node {
            kubeconfig: dir.join("admin.kubeconfig"),
            dir,
        };
        assert!(status.success(), "scripts/node.sh up failed");
        eprintln!("node up in {:.1}s", start.elapsed().as_secs_f64());
        node
    }

    fn kubectl(&self, args: &[&str]) -> String {
        run(Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args))
    }

    fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a)).unwrap()
    }

    /// `kubectl apply -f -` of a manifest held in memory.
    fn apply(&self, manifest: &str) -> String {
        run_with_input(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["apply", "-f", "-"]),
            manifest,
        )
    }

    /// Applies `edit` to the policy ConfigMap's `policy.yaml`; returns the stored
    /// ConfigMap's resourceVersion (what a replica's `policy loaded` line names).
    fn edit_policy(&self, edit: impl FnOnce(&str) -> String) -> String {
        let mut cm = self.kubectl_json(&[
            "-n",
            "secret-relay-system",
            "get",
            "configmap",
            "secret-relay-policy",
        ]);
        let edited = edit(cm["data"]["policy.yaml"].as_str().unwrap());
        cm["data"]["policy.yaml"] = Value::String(edited);
        run_with_input(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args([
                    "apply",
                    "-f",
                    "-",
                    "-o",
                    "jsonpath={.metadata.resourceVersion}",
                ]),
            &cm.to_string(),
        )
        .trim()
        .to_owned()
    }

    /// The API server and the kubelet run the Kubernetes the tests pin:
    /// tests/kube's, or tests/kube-oldest's under `SECRET_RELAY_KUBE=oldest`.
    fn runs_the_pinned_kubernetes(&self) {
        let module = match std::env::var("SECRET_RELAY_KUBE").as_deref() {
            Ok("oldest") => "tests/kube-oldest",
            _ => "tests/kube",
        };
        let go_mod = std::fs::read_to_string(root().join(module).join("go.mod")).unwrap();
        let pinned = go_mod
            .lines()
            .find_map(|l| {
                let l = l.trim().trim_start_matches("require ");
                l.strip_prefix("k8s.io/kubernetes ")
            })
            .unwrap()
            .trim();
        let version = self.kubectl_json(&["version"]);
        let nodes = self.kubectl_json(&["get", "nodes"]);
        assert_eq!(version["serverVersion"]["gitVersion"], pinned, "{module}");
        assert_eq!(
            nodes["items"][0]["status"]["nodeInfo"]["kubeletVersion"], pinned,
            "{module}"
        );
        eprintln!("Kubernetes {pinned} ({module}): the API server and the kubelet");
    }

    /// [`Node::apply`] of the control plane's manifests: Pod Security Admission (the
    /// namespace warns and enforces `restricted`) has nothing to say of them.
    fn apply_restricted(&self, manifest: &str) {
        let out = run_with_input_output(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["apply", "-f", "-"]),
            manifest,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("PodSecurity"),
            "kubectl apply printed Pod Security warnings:\n{stderr}"
        );
    }

    /// Waits until the webhook and the relay are each 2/2 Ready.
    fn wait_control_plane(&self, timeout: Duration) {
        for deploy in ["secret-relay-webhook", "secret-relay"] {
            self.wait_rollout("secret-relay-system", deploy, 2, timeout);
        }
    }

    /// Waits until the Deployment has `replicas` updated, ready and available pods.
    fn wait_rollout(&self, namespace: &str, name: &str, replicas: u64, timeout: Duration) {
        let start = Instant::now();
        loop {
            let d = self.kubectl_json(&["-n", namespace, "get", "deployment", name]);
            let s = &d["status"];
            let n = |k: &str| s[k].as_u64().unwrap_or(0);
            // The status is of the current spec only once observedGeneration caught up.
            if n("observedGeneration") >= d["metadata"]["generation"].as_u64().unwrap_or(0)
                && n("updatedReplicas") == replicas
                && n("readyReplicas") == replicas
                && n("availableReplicas") == replicas
                && n("replicas") == replicas
            {
                eprintln!(
                    "{namespace}/{name}: {replicas}/{replicas} Ready after {:.1}s",
                    start.elapsed().as_secs_f64()
                );
                return;
            }
            if start.elapsed() > timeout {
                let pods = self.kubectl(&["-n", namespace, "get", "pods", "-o", "wide"]);
                let events = self.kubectl(&["-n", namespace, "get", "events"]);
                panic!(
                    "{namespace}/{name} not {replicas}/{replicas} Ready within {timeout:?}: status {s}\n{pods}\n{events}"
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The release binary the image holds (scripts/image.sh built it).
fn release_bin() -> PathBuf {
    target_dir().join("release/secret-relay")
}

/// Issues the PKI and the Secrets the control-plane kustomization expects (its
/// header says which), returns the webhooks' caBundle.
fn control_plane_pki(node: &Node, pki: &Path) -> String {
    let bin = release_bin();
    let d = pki.to_str().unwrap();
    run(Command::new(&bin).args(["certs", "init", "--dir", d]));
    issue_server(
        pki,
        "secret-relay-webhook",
        &[("--dns", "secret-relay-webhook.secret-relay-system.svc")],
    );
    let f = |n: &str| pki.join(n).to_str().unwrap().to_owned();
    node.kubectl(&[
        "-n",
        "secret-relay-system",
        "create",
        "secret",
        "tls",
        "secret-relay-webhook-tls",
        &format!("--cert={}", f("secret-relay-webhook.crt")),
        &format!("--key={}", f("secret-relay-webhook.key")),
    ]);
    run(Command::new(&bin).args(["certs", "ca-bundle", "--dir", d]))
        .trim()
        .to_owned()
}

/// Issues the relay's serving certificate and its Secret, once the relay's Service
/// has its address (its pods wait for the Secret). Agents in pods reach the relay by
/// the Service's name; the sync scenarios' agents run on this machine, outside the
/// node's cluster, where no cluster DNS resolves that name, so they dial the
/// Service's ClusterIP, which the certificate names too. Across clusters a user
/// names the relay's LoadBalancer or Ingress host instead.
fn relay_pki(node: &Node, pki: &Path) {
    let ip = relay_service(node).ip().to_string();
    issue_server(
        pki,
        "secret-relay",
        &[
            ("--dns", "secret-relay.secret-relay-system.svc"),
            (
                "--dns",
                "secret-relay.secret-relay-system.svc.cluster.local",
            ),
            ("--ip", &ip),
        ],
    );
    let f = |n: &str| pki.join(n).to_str().unwrap().to_owned();
    node.kubectl(&[
        "-n",
        "secret-relay-system",
        "create",
        "secret",
        "generic",
        "secret-relay-tls",
        &format!("--from-file=tls.crt={}", f("secret-relay.crt")),
        &format!("--from-file=tls.key={}", f("secret-relay.key")),
        &format!("--from-file=ca.crt={}", f("ca.crt")),
    ]);
}

/// `secret-relay certs server` in `pki`: `NAME.crt` and `NAME.key` for `sans`
/// (`--dns` or `--ip`, and the name or address).
fn issue_server(pki: &Path, name: &str, sans: &[(&str, &str)]) {
    let mut cmd = Command::new(release_bin());
    cmd.args(["certs", "server", "--dir"])
        .arg(pki)
        .args(["--name", name]);
    for (flag, value) in sans {
        cmd.args([flag, value]);
    }
    run(&mut cmd);
}

/// The relay's Service: its ClusterIP and port.
fn relay_service(node: &Node) -> std::net::SocketAddr {
    let svc = node.kubectl_json(&[
        "-n",
        "secret-relay-system",
        "get",
        "service",
        "secret-relay",
    ]);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    let port = svc["spec"]["ports"][0]["port"].as_u64().unwrap();
    format!("{ip}:{port}").parse().unwrap()
}

#[test]
fn the_control_plane_kustomization_rolls_out_on_a_real_node() {
    if skipped("the_control_plane_kustomization_rolls_out_on_a_real_node") {
        return;
    }
    let t0 = Instant::now();
    let node = Node::up();
    node.runs_the_pinned_kubernetes();

    let t = Instant::now();
    let image = script("image.sh", &["secret-relay", "test"]);
    eprintln!("image built in {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    script("node.sh", &["load", node.dir.to_str().unwrap(), &image]);
    eprintln!("image imported in {:.1}s", t.elapsed().as_secs_f64());

    // The namespaces first (Secrets go in them), then the PKI, then everything.
    let rendered = run(Command::new("kubectl")
        .args(["kustomize"])
        .arg(root().join("tests/deployed/control-plane")));
    node.kubectl(&["create", "namespace", "argocd"]);
    node.kubectl(&["create", "namespace", "secret-relay-system"]);
    let pki = node.dir.join("relay-pki");
    std::fs::create_dir_all(&pki).unwrap();
    let ca_bundle = control_plane_pki(&node, &pki);
    assert_eq!(
        rendered.matches("caBundle: Cg==").count(),
        2,
        "the webhooks' caBundle placeholder moved"
    );
    let manifest = rendered.replace("caBundle: Cg==", &format!("caBundle: {ca_bundle}"));

    let t = Instant::now();
    node.apply_restricted(&manifest);
    relay_pki(&node, &pki);
    node.wait_control_plane(Duration::from_secs(120));
    eprintln!(
        "webhook and relay 2/2 Ready {:.1}s after apply",
        t.elapsed().as_secs_f64()
    );

    // The namespace enforces Pod Security's restricted profile, so every pod below
    // passed it at admission.
    let ns = node.kubectl_json(&["get", "namespace", "secret-relay-system"]);
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    // The pods run as the manifests say: non-root, read-only root, on this node.
    let pods = node.kubectl_json(&["-n", "secret-relay-system", "get", "pods"]);
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "two webhook and two relay pods");
    for p in items {
        assert_eq!(p["spec"]["nodeName"], "secret-relay-node");
        assert_eq!(p["spec"]["securityContext"]["runAsNonRoot"], true);
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["image"], "localhost/secret-relay:test");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        let restarts = p["status"]["containerStatuses"][0]["restartCount"]
            .as_u64()
            .unwrap();
        assert_eq!(restarts, 0, "{} restarted", p["metadata"]["name"]);
    }
    // Every Service has both pods as endpoints.
    for svc in ["secret-relay-webhook", "secret-relay"] {
        let slices = node.kubectl_json(&[
            "-n",
            "secret-relay-system",
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
        ]);
        let ready: usize = slices["items"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .count();
        assert_eq!(ready, 2, "{svc} has {ready} ready endpoints");
    }

    // The API server reaches the webhook through its Service: with failurePolicy
    // Fail, a Secret write in argocd succeeds only if the webhook answered. The
    // Secret's value is not secret and never printed.
    node.kubectl(&[
        "-n",
        "argocd",
        "create",
        "secret",
        "generic",
        "deployed-probe",
        "--from-literal=probe=not-a-secret",
    ]);
    // kubectl logs goes through the kubelet (API server to kubelet, client
    // certificate, webhook authorization).
    let logs = node.kubectl(&[
        "-n",
        "secret-relay-system",
        "logs",
        "deployment/secret-relay-webhook",
        "--tail=20",
    ]);
    assert!(!logs.trim().is_empty(), "the webhook logged nothing");

    // The agent, from its own manifests, reaches the relay through its Service.
    let t = Instant::now();
    deploy_agent(&node, &pki);
    node.wait_rollout("akuity", "secret-relay-agent", 1, Duration::from_secs(120));
    eprintln!(
        "agent 1/1 Ready (relay view listed through the Service) {:.1}s after apply",
        t.elapsed().as_secs_f64()
    );

    // A sync through the deployed stack: an opted-in Secret of cluster1 gets its
    // hub copy in argocd (agent, relay Service, relay, API server, webhook).
    let t = Instant::now();
    node.kubectl(&[
        "-n",
        "akuity",
        "create",
        "secret",
        "generic",
        "deployed-up",
        "--from-literal=password=not-a-secret",
    ]);
    node.kubectl(&[
        "-n",
        "akuity",
        "label",
        "secret",
        "deployed-up",
        "akuity.io/secret-sync=true",
        "argocd.argoproj.io/secret-type=repo-creds",
    ]);
    let hub_copy = loop {
        let hub = node.kubectl_json(&["-n", "argocd", "get", "secrets"]);
        let copy = hub["items"].as_array().unwrap().iter().find_map(|s| {
            let owner = s["metadata"]["labels"]["secret-relay.io/owner"].as_str()?;
            owner
                .contains("cluster1")
                .then(|| s["metadata"]["name"].as_str().unwrap().to_owned())
        });
        if let Some(name) = copy {
            break name;
        }
        if t.elapsed() > Duration::from_secs(60) {
            let logs = node.kubectl(&[
                "-n",
                "akuity",
                "logs",
                "deployment/secret-relay-agent",
                "--tail=30",
            ]);
            panic!("no hub copy of deployed-up in argocd within 60s; the agent logged:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "hub copy argocd/{hub_copy} synced up through the deployed stack in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    // Every component logs JSON lines (--log-json), read through the kubelet.
    for (ns, deploy) in [
        ("akuity", "secret-relay-agent"),
        ("secret-relay-system", "secret-relay"),
        ("secret-relay-system", "secret-relay-webhook"),
    ] {
        let logs = node.kubectl(&["-n", ns, "logs", &format!("deployment/{deploy}")]);
        let first = logs.lines().next().unwrap_or_default();
        assert!(
            serde_json::from_str::<Value>(first).is_ok(),
            "{deploy} does not log JSON lines"
        );
        // The synced value never reaches a log line.
        assert!(
            !logs.contains("not-a-secret"),
            "{deploy} logged a Secret value"
        );
    }

    // Operations a user does, one after the other on the same stack.
    let t = Instant::now();
    every_component_logs_the_sync(&node, "deployed-up", "cluster1");
    policy_edit_reaches_every_replica(&node);
    let image2 = script("image.sh", &["secret-relay", "test2"]);
    script("node.sh", &["load", node.dir.to_str().unwrap(), &image2]);
    let before = failed_pushes(&node);
    let rolled = sync_while(&node, "roll", ROLLING_SECRETS, rolling_update);
    assert_no_failed_write(&node, "roll", &rolled, before);
    sync_while(&node, "kill", KILLED_SECRETS, kill_one_pod_of_each);
    webhook_budget_holds_during_a_drain(&node);
    sync_scenarios_pass_against_the_pods(&node, &pki);
    eprintln!(
        "operations {:.1}s; total {:.1}s",
        t.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// Secrets synced while the relay and the webhook roll to a new image tag.
const ROLLING_SECRETS: usize = 1000;
/// Secrets synced while one pod of each component is killed.
const KILLED_SECRETS: usize = 300;

/// The JSON log lines of `target` (`pod/NAME` or `deployment/NAME`), read through
/// the kubelet.
fn json_log(node: &Node, namespace: &str, target: &str) -> Vec<Value> {
    node.kubectl(&["-n", namespace, "logs", target])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// The JSON log lines of `target` whose message is `message`, as `fields` objects.
fn log_lines(node: &Node, namespace: &str, target: &str, message: &str) -> Vec<Value> {
    json_log(node, namespace, target)
        .into_iter()
        .filter(|l| l["fields"]["message"] == message)
        .map(|l| l["fields"].clone())
        .collect()
}

/// One sync has its structured line in each component's log, read through the
/// kubelet: the agent's push, the relay's write and the webhook's review, each
/// naming the Secret and the cluster.
fn every_component_logs_the_sync(node: &Node, name: &str, cluster: &str) {
    let agent = log_lines(
        node,
        "akuity",
        "deployment/secret-relay-agent",
        "pushed to the control plane",
    );
    assert!(
        agent.iter().any(|f| f["name"] == name),
        "the agent logged no push of {name}: {agent:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    for (deploy, message) in [
        ("secret-relay", "up-sync write"),
        ("secret-relay-webhook", "reviewed"),
    ] {
        // Either replica may have served it.
        let pods = pod_names(node, deploy);
        let found = || {
            pods.iter().any(|p| {
                log_lines(node, "secret-relay-system", &format!("pod/{p}"), message)
                    .iter()
                    .any(|f| f["name"] == name && f["cluster"] == cluster)
            })
        };
        while !found() {
            assert!(
                Instant::now() < deadline,
                "no {deploy} replica logged {message:?} for {name} of {cluster}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Where a component runs: the agent in akuity, the relay and the webhook in
/// secret-relay-system.
fn namespace_of(app: &str) -> &'static str {
    if app == "secret-relay-agent" {
        "akuity"
    } else {
        "secret-relay-system"
    }
}

/// The names of a Deployment's running pods, by its app.kubernetes.io/name label.
fn pod_names(node: &Node, app: &str) -> Vec<String> {
    let ns = namespace_of(app);
    let pods = node.kubectl_json(&[
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        &format!("app.kubernetes.io/name={app}"),
        "--field-selector=status.phase=Running",
    ]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A policy ConfigMap edit reaches every relay and webhook replica: each logs the
/// load of the ConfigMap's new resourceVersion.
fn policy_edit_reaches_every_replica(node: &Node) {
    let t = Instant::now();
    let revision = node.edit_policy(|policy| {
        // A second cluster joins the registry; cluster1 keeps what it had.
        let edited = policy.replace(
            "clusters: [{ name: cluster1, labels: { env: test } }]",
            "clusters: [{ name: cluster1, labels: { env: test } }, { name: cluster2, labels: { env: test } }]",
        );
        assert_ne!(edited, policy, "the test's policy changed shape");
        edited
    });
    for deploy in ["secret-relay", "secret-relay-webhook"] {
        let pods = pod_names(node, deploy);
        assert_eq!(pods.len(), 2, "{deploy} runs {pods:?}");
        for pod in pods {
            let loaded = || {
                log_lines(
                    node,
                    "secret-relay-system",
                    &format!("pod/{pod}"),
                    "policy loaded",
                )
                .iter()
                .any(|f| f["revision"].as_str() == Some(&revision))
            };
            while !loaded() {
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "{pod} did not load policy revision {revision} within 60s"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    eprintln!(
        "policy revision {revision} loaded by every relay and webhook replica in {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

/// A List of `n` opted-in Secrets `{prefix}-{i}` of cluster1 with value `value`.
fn secrets(prefix: &str, n: usize, value: &str) -> String {
    use base64::Engine as _;
    let items: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": format!("{prefix}-{i}"),
                    "namespace": "akuity",
                    "labels": {
                        "akuity.io/secret-sync": "true",
                        "argocd.argoproj.io/secret-type": "repo-creds",
                        "test-batch": prefix,
                    },
                },
                "data": { "url": base64::engine::general_purpose::STANDARD.encode(format!("{value}-{i}")) },
            })
        })
        .collect();
    serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items }).to_string()
}

/// Syncs `n` new Secrets up, then an update of each, while `disturb` runs beside the
/// writes; returns once every hub copy holds the update (no lost update). Returns
/// the names.
fn sync_while(node: &Node, prefix: &str, n: usize, disturb: fn(&Node)) -> Vec<String> {
    let t = Instant::now();
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            run_with_input(
                Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&node.kubeconfig)
                    .args(["create", "-f", "-", "-o", "name"]),
                &secrets(prefix, n, "v1"),
            );
            run_with_input(
                Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&node.kubeconfig)
                    .args(["replace", "-f", "-", "-o", "name"]),
                &secrets(prefix, n, "v2"),
            );
        });
        disturb(node);
        writer.join().unwrap();
    });
    eprintln!(
        "{prefix}: {n} Secrets created and updated, disturbance over, {:.1}s",
        t.elapsed().as_secs_f64()
    );
    use base64::Engine as _;
    let want = |i: usize| base64::engine::general_purpose::STANDARD.encode(format!("v2-{i}"));
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let hub = node.kubectl_json(&[
            "-n",
            "argocd",
            "get",
            "secrets",
            "-l",
            &format!("test-batch={prefix},secret-relay.io/owner=cluster.cluster1"),
        ]);
        let copies: std::collections::BTreeMap<String, String> = hub["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["metadata"]["name"].as_str().unwrap().to_owned(),
                    s["data"]["url"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let missing: Vec<String> = (0..n)
            .map(|i| (format!("{prefix}-{i}"), want(i)))
            .filter(|(name, v)| copies.get(name) != Some(v))
            .map(|(name, _)| name)
            .collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let logs = node.kubectl(&[
                "-n",
                "akuity",
                "logs",
                "deployment/secret-relay-agent",
                "--tail=40",
            ]);
            panic!(
                "{prefix}: {} of {n} hub copies missing or stale after 300s, e.g. {:?}; the agent logged:\n{logs}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "{prefix}: every hub copy holds the update {:.1}s after the first write",
        t.elapsed().as_secs_f64()
    );
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The relay and then the webhook roll to image tag test2, as a release does.
fn rolling_update(node: &Node) {
    for (deploy, container) in [
        ("secret-relay", "relay"),
        ("secret-relay-webhook", "webhook"),
    ] {
        let t = Instant::now();
        node.kubectl(&[
            "-n",
            "secret-relay-system",
            "set",
            "image",
            &format!("deployment/{deploy}"),
            &format!("{container}=localhost/secret-relay:test2"),
        ]);
        node.wait_rollout("secret-relay-system", deploy, 2, Duration::from_secs(180));
        let d = node.kubectl_json(&["-n", "secret-relay-system", "get", "deployment", deploy]);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "localhost/secret-relay:test2"
        );
        eprintln!(
            "{deploy} rolled to test2 in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
}

/// One pod of each component killed at once (`kubectl delete pod --force`), as a
/// node failure or an OOM kill does, then the Deployments back to full strength.
fn kill_one_pod_of_each(node: &Node) {
    let t = Instant::now();
    for app in ["secret-relay", "secret-relay-webhook", "secret-relay-agent"] {
        let pods = pod_names(node, app);
        // "At random": the pod whose name sorts first, which the hash suffix makes random.
        let pod = pods.iter().min().unwrap();
        let ns = namespace_of(app);
        node.kubectl(&[
            "-n",
            ns,
            "delete",
            "pod",
            pod,
            "--force",
            "--grace-period=0",
        ]);
        eprintln!("killed {ns}/{pod}");
    }
    node.wait_control_plane(Duration::from_secs(180));
    node.wait_rollout("akuity", "secret-relay-agent", 1, Duration::from_secs(180));
    eprintln!(
        "every component back to full strength {:.1}s after the kills",
        t.elapsed().as_secs_f64()
    );
}

/// The agent's count of pushes that failed or were denied, from its metrics
/// (through the API server's pod proxy).
fn failed_pushes(node: &Node) -> u64 {
    let agent = pod_names(node, "secret-relay-agent");
    let metrics = node.kubectl(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/akuity/pods/{}:9090/proxy/metrics",
            agent[0]
        ),
    ]);
    metrics
        .lines()
        .filter(|l| l.contains("action=\"push\""))
        .filter(|l| l.contains("result=\"error\"") || l.contains("result=\"denied\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A rolling update is invisible to the sync: no Secret of the batch got a Warning
/// Event (UpSyncFailed, UpSyncDenied, ...) from the agent, and the agent counted
/// no failed or denied push beyond the `before` it had.
fn assert_no_failed_write(node: &Node, prefix: &str, names: &[String], before: u64) {
    let events = node.kubectl_json(&[
        "-n",
        "akuity",
        "get",
        "events",
        "--field-selector=type=Warning",
    ]);
    let warnings: Vec<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["involvedObject"]["name"]
                .as_str()
                .is_some_and(|n| names.iter().any(|x| x == n))
        })
        .map(|e| {
            format!(
                "{} {}: {}",
                e["involvedObject"]["name"], e["reason"], e["message"]
            )
        })
        .collect();
    let after = failed_pushes(node);
    if !warnings.is_empty() || after != before {
        let agent = log_lines_at(node, "akuity", "deployment/secret-relay-agent", "WARN");
        panic!(
            "{prefix}: the disturbance showed in the sync: {} failed or denied pushes, Warning Events {warnings:#?}; the agent's warnings: {agent:#?}",
            after - before
        );
    }
}

/// The JSON log lines of `target` at `level`, whole.
fn log_lines_at(node: &Node, namespace: &str, target: &str, level: &str) -> Vec<Value> {
    json_log(node, namespace, target)
        .into_iter()
        .filter(|l| l["level"] == level)
        .collect()
}

/// The webhook's PodDisruptionBudget (minAvailable 1) holds during a drain of the
/// node: one replica is evicted, the second eviction is refused, the webhook keeps
/// answering (a write in argocd succeeds), and after uncordon both replicas return.
fn webhook_budget_holds_during_a_drain(node: &Node) {
    let t = Instant::now();
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&node.kubeconfig)
        .args([
            "drain",
            "secret-relay-node",
            "--pod-selector=app.kubernetes.io/name=secret-relay-webhook",
            "--ignore-daemonsets",
            "--timeout=20s",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "the drain evicted both webhook replicas past the budget"
    );
    assert!(
        stderr.contains("disruption budget"),
        "the drain failed for another reason than the budget:\n{stderr}"
    );
    let left = pod_names(node, "secret-relay-webhook");
    assert_eq!(left.len(), 1, "the budget kept {left:?}");
    // The one replica left still answers the API server (failurePolicy: Fail).
    node.kubectl(&[
        "-n",
        "argocd",
        "create",
        "secret",
        "generic",
        "during-drain",
        "--from-literal=probe=not-a-secret",
    ]);
    node.kubectl(&["uncordon", "secret-relay-node"]);
    node.wait_rollout(
        "secret-relay-system",
        "secret-relay-webhook",
        2,
        Duration::from_secs(120),
    );
    eprintln!(
        "the webhook's budget held a drain; both replicas back {:.1}s after it began",
        t.elapsed().as_secs_f64()
    );
}

/// The environment variable naming the built test binary of tests/sync.rs
/// (`scripts/test.sh` sets it: a test cannot run cargo while cargo runs it).
const SYNC_TESTS_ENV: &str = "SECRET_RELAY_SYNC_TESTS";

/// A control plane of its own (scripts/control-plane.sh) on this machine: a managed
/// cluster of the sync scenarios. Stopped on drop.
struct ManagedPlane {
    dir: PathBuf,
}

impl ManagedPlane {
    fn up(dir: PathBuf) -> ManagedPlane {
        let plane = ManagedPlane { dir };
        script("control-plane.sh", &["up", plane.dir.to_str().unwrap()]);
        plane
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }
}

impl Drop for ManagedPlane {
    fn drop(&mut self) {
        let out = Command::new(root().join("scripts/control-plane.sh"))
            .arg("down")
            .arg(&self.dir)
            .output();
        if !out.is_ok_and(|o| o.status.success()) {
            eprintln!("!!! control-plane.sh down {} failed", self.dir.display());
        }
    }
}

/// tests/sync.rs' scenarios, one at a time, against the relay and the webhook
/// running here as pods: the node's cluster is the control plane; cluster1 and
/// cluster2 are two more control planes on this machine, with agents (and their
/// managed-cluster webhooks) in the test process, as the scenarios' outside mode
/// runs them. The agents reach the relay through its Service's ClusterIP.
fn sync_scenarios_pass_against_the_pods(node: &Node, pki: &Path) {
    let t = Instant::now();
    let bin = std::env::var_os(SYNC_TESTS_ENV).unwrap_or_else(|| {
        panic!(
            "{SYNC_TESTS_ENV} must name the test binary of tests/sync.rs \
             (scripts/test.sh sets it; see its real-node step)"
        )
    });
    // The deployed agent goes: the scenarios' cluster1 is another API server.
    node.kubectl(&[
        "-n",
        "akuity",
        "delete",
        "deployment",
        "secret-relay-agent",
        "--cascade=foreground",
    ]);
    let clusters: Vec<ManagedPlane> = ["cluster1", "cluster2"]
        .iter()
        .map(|name| ManagedPlane::up(node.dir.join(format!("managed-{name}"))))
        .collect();
    // Both webhook configurations as deployed, for the scenarios to register again
    // after they empty argocd.
    let deployed = node.kubectl_json(&[
        "get",
        "mutatingwebhookconfiguration/secret-relay",
        "validatingwebhookconfiguration/secret-relay",
    ]);
    let items: Vec<Value> = deployed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut c = c.clone();
            let name = c["metadata"]["name"].clone();
            c["metadata"] = serde_json::json!({ "name": name });
            c
        })
        .collect();
    assert_eq!(items.len(), 2, "both webhook configurations are deployed");
    let webhooks = node.dir.join("webhooks.json");
    std::fs::write(
        &webhooks,
        serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items }).to_string(),
    )
    .unwrap();

    let scenarios = |extra: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.args(["outside_clusters", "--test-threads=1"])
            .args(extra)
            .env("E2E_KUBECONFIG", &node.kubeconfig)
            .env("E2E_CLUSTER1_KUBECONFIG", clusters[0].kubeconfig())
            .env("E2E_CLUSTER2_KUBECONFIG", clusters[1].kubeconfig())
            .env("E2E_DEPLOYED_RELAY", relay_service(node).to_string())
            .env("E2E_DEPLOYED_PKI", pki)
            .env("E2E_DEPLOYED_WEBHOOKS", &webhooks)
            .current_dir(root());
        cmd
    };
    let listed = run(&mut scenarios(&["--list"]));
    let count = listed
        .lines()
        .filter(|l| l.ends_with("outside_clusters: test"))
        .count();
    assert!(count >= 13, "tests/sync.rs lists {count} outside scenarios");
    let out = scenarios(&["--nocapture"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "the sync scenarios failed against the pods:\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("test result: ok. {count} passed"))
            && !stderr.contains("skipped because"),
        "not every sync scenario ran against the pods:\n{stderr}"
    );
    // The pods served them: only the scenarios' agents write as cluster2.
    for (deploy, message) in [
        ("secret-relay", "up-sync write"),
        ("secret-relay-webhook", "reviewed"),
    ] {
        let served = pod_names(node, deploy).iter().any(|p| {
            log_lines(node, "secret-relay-system", &format!("pod/{p}"), message)
                .iter()
                .any(|f| f["cluster"] == "cluster2")
        });
        assert!(served, "no {deploy} pod logged {message:?} for cluster2");
    }
    eprintln!(
        "{count} sync scenarios passed against the deployed relay and webhook in {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

/// Registers cluster1 in the policy, issues its certificate Secret and applies
/// the agent's objects of the managed-cluster kustomization (tests/deployed/agent
/// says why only those).
fn deploy_agent(node: &Node, pki: &Path) {
    let bin = release_bin();
    // The relay answers only registered clusters.
    node.edit_policy(|policy| {
        assert!(
            policy.contains("clusters: []") && policy.contains("secretSources: []"),
            "the shipped policy changed"
        );
        // cluster1 may sync up repository credentials, as in the README's example.
        policy
            .replace(
                "clusters: []",
                "clusters: [{ name: cluster1, labels: { env: test } }]",
            )
            .replace(
                "secretSources: []",
                "secretSources: [{ clusterSelector: \"env=test\", labelSelector: \"argocd.argoproj.io/secret-type in (repo-creds, repository)\" }]",
            )
    });

    node.kubectl(&["create", "namespace", "akuity"]);
    run(Command::new(&bin).args([
        "certs",
        "cluster",
        "--dir",
        pki.to_str().unwrap(),
        "--name",
        "cluster1",
    ]));
    let secret = std::fs::read_to_string(pki.join("cluster1-agent-secret.yaml")).unwrap();
    node.apply(&secret);

    let ip = node.kubectl(&[
        "-n",
        "secret-relay-system",
        "get",
        "service",
        "secret-relay",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let rendered = run(Command::new("kubectl")
        .args(["kustomize"])
        .arg(root().join("tests/deployed/agent")))
    .replace("RELAY_CLUSTER_IP", ip.trim());
    // As JSON, to keep only agent.yaml's objects.
    // One JSON document per object.
    let objects: Vec<Value> = {
        let json = run_with_input(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&node.kubeconfig)
                .args(["create", "--dry-run=client", "-o", "json", "-f", "-"]),
            &rendered,
        );
        serde_json::Deserializer::from_str(&json)
            .into_iter::<Value>()
            .map(Result::unwrap)
            .collect()
    };
    let items: Vec<Value> = objects
        .iter()
        .filter(|o| o["metadata"]["namespace"] == "akuity" && o["kind"] != "Secret")
        .cloned()
        .collect();
    let kinds: Vec<&str> = items.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"Deployment"),
        "no agent Deployment in {kinds:?}"
    );
    let agent = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items });
    node.apply(&agent.to_string());
}

/// The archive `scripts/image.sh` builds and the Dockerfile describe the same
/// image: the same build of the binary (release, locked, without the sandbox),
/// at the same path, the same user, entrypoint and ports, a CA bundle and the
/// non-root user in /etc/passwd, as the distroless base has them.
#[test]
fn the_image_holds_what_the_dockerfile_describes() {
    if skipped("the_image_holds_what_the_dockerfile_describes") {
        return;
    }
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let image_sh = std::fs::read_to_string(root().join("scripts/image.sh")).unwrap();
    let build = "cargo build --release --locked -p secret-relay --no-default-features";
    assert!(
        dockerfile.contains(build),
        "the Dockerfile no longer runs `{build}`"
    );
    assert!(
        image_sh.contains(build),
        "scripts/image.sh no longer runs `{build}`"
    );

    let archive = script("image.sh", &["secret-relay", "test"]);
    let dir = std::env::temp_dir().join(format!("secret-relay-image-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir));
    let blob = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").unwrap();
        dir.join("blobs/sha256").join(hex)
    };
    let json =
        |path: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    let index = json(dir.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let config = json(blob(manifest["config"]["digest"].as_str().unwrap()));
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(dir.join("rootfs")));
    let rootfs = dir.join("rootfs");

    // USER, ENTRYPOINT, EXPOSE.
    let line = |word: &str| {
        dockerfile
            .lines()
            .find_map(|l| l.strip_prefix(word))
            .unwrap_or_else(|| panic!("no {word} in the Dockerfile"))
            .trim()
            .to_owned()
    };
    assert_eq!(config["config"]["User"], line("USER "));
    let entrypoint: Value = serde_json::from_str(&line("ENTRYPOINT ")).unwrap();
    assert_eq!(config["config"]["Entrypoint"], entrypoint);
    let mut exposed: Vec<String> = config["config"]["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    exposed.sort();
    let mut declared: Vec<String> = line("EXPOSE ")
        .split_whitespace()
        .map(|p| format!("{p}/tcp"))
        .collect();
    declared.sort();
    assert_eq!(exposed, declared);

    // The binary where the Dockerfile copies it, and nothing of the sandbox.
    let copy = line("COPY --from=builder ");
    let dest = copy.split_whitespace().last().unwrap();
    let bin = rootfs.join(dest.trim_start_matches('/'));
    assert!(bin.is_file(), "no {dest} in the image");
    let help = run(Command::new(&bin).arg("--help"));
    for sandboxed in ["demo", "sandbox"] {
        assert!(
            !help.lines().any(|l| l.trim_start().starts_with(sandboxed)),
            "the image's binary has the `{sandboxed}` subcommand"
        );
    }
    // What distroless cc gives the binary: the non-root user and a CA bundle.
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:"))
    );
    let ca = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"));
    let _ = std::fs::remove_dir_all(&dir);
}
