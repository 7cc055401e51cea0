//! Attacks on the relay and the webhook, as tests: each is refused, and the refusal
//! is visible three ways: the status the attacker gets (an HTTP status with a
//! Kubernetes `Status`, a TLS alert, or a closed connection), a log line, and a
//! metric. Everything runs against the sandbox; where the webhook and the API server
//! decide (forged owner labels, blocked secrets written straight to the API server)
//! also against a real kube-apiserver (`on_both!`).
//!
//! Log lines are captured by one tracing subscriber for this test binary, writing to
//! a shared buffer; tests run in parallel, so each uses its own cluster and secret
//! names and looks for lines naming them.
//!
//! The happy paths of the same surfaces (and kubectl through the relay) are in
//! `proxy/tests/e2e.rs`; an open watch ending when its cluster leaves the policy is
//! `each_cluster_sees_its_view_and_a_policy_reload_changes_it_live` there.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent};
use kube::{Api, Client};
use rustls_pki_types::ServerName;
use secret_relay_certs::{Ca, Validity};
use secret_relay_proxy::Limits;
use secret_relay_testkit::{
    Flavor, OPT_IN, REPO_CREDS, RelayHandle, Stack, StackOptions, on_both, within,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

// ---- log capture ------------------------------------------------------------

/// The binary's one subscriber: info and up, as the binaries log by default.
fn capture_logs() {
    secret_relay_testkit::capture_logs("info");
}

/// Waits for a captured log line containing every needle, and returns it.
async fn logged(needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = secret_relay_testkit::captured_logs()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return line.to_owned();
        }
        if Instant::now() > deadline {
            let near: Vec<String> = secret_relay_testkit::captured_logs()
                .lines()
                .filter(|l| l.contains(needles[0]))
                .map(str::to_owned)
                .collect();
            panic!(
                "no log line with {needles:?}; lines with {:?}:\n{}",
                needles[0],
                near.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- metrics ----------------------------------------------------------------

/// The value of `name{labels...}` in an OpenMetrics text; 0 when absent.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn relay_metric(relay: &RelayHandle, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(
        &relay.started.admin.encode_metrics(),
        &format!("secret_relay_relay_{name}"),
        labels,
    )
}

async fn webhook_metrics(stack: &Stack) -> String {
    let state = stack.webhook.as_ref().unwrap();
    let req = http::Request::get("/metrics")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = secret_relay_webhook::handle(state, req).await;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

async fn webhook_denials(stack: &Stack, operation: &str) -> f64 {
    metric(
        &webhook_metrics(stack).await,
        "secret_relay_webhook_requests_total",
        &[
            ("endpoint", "validate"),
            ("operation", operation),
            ("decision", "denied"),
        ],
    )
}

// ---- the world --------------------------------------------------------------

/// A policy registering `clusters`, all `env: prod`, with one Secret Source for
/// repository credentials.
fn policy(clusters: &[&str]) -> String {
    let mut text = String::from("clusters:\n");
    for c in clusters {
        text.push_str(&format!("  - name: {c}\n    labels: {{ env: prod }}\n"));
    }
    text.push_str(
        "secretSources:\n  - clusterSelector: env=prod\n    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)\n",
    );
    text
}

/// A control plane registering `clusters`, with certificates for them and `extra`.
async fn stack(flavor: Flavor, clusters: &[&str], extra: &[&str]) -> Stack {
    Stack::start(
        flavor,
        StackOptions {
            policy: policy(clusters),
            certificates: clusters
                .iter()
                .chain(extra)
                .map(|c| (*c).to_owned())
                .collect(),
            ..StackOptions::default()
        },
    )
    .await
}

/// The value every Secret here carries: it must never show up where it should not.
const CANARY: &str = "attack-canary-4c1d";

fn secret(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Secret {
    secret_relay_testkit::secret(name, labels, annotations, CANARY)
}

fn opted_in(name: &str) -> Secret {
    secret(name, &[OPT_IN, REPO_CREDS], &[])
}

fn label<'a>(s: &'a Secret, key: &str) -> Option<&'a str> {
    s.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

async fn relay_api(stack: &Stack, relay: &RelayHandle, cluster: &str) -> Api<Secret> {
    Api::namespaced(stack.relay_client(relay, cluster).await, "argocd")
}

async fn hub(stack: &Stack) -> Api<Secret> {
    Api::namespaced(stack.cluster.client().await, "argocd")
}

/// A client straight to the control plane's API server as `cluster`'s identity (what
/// the relay sends as, or what a relay that judged otherwise would send).
async fn cluster_client(stack: &Stack, cluster: &str) -> Client {
    stack
        .cluster
        .client_as(
            &format!("secret-relay:cluster:{cluster}"),
            &["secret-relay:clusters"],
        )
        .await
}

/// The control-plane namespace's Secrets through [`cluster_client`].
async fn as_cluster(stack: &Stack, cluster: &str) -> Api<Secret> {
    Api::namespaced(cluster_client(stack, cluster).await, "argocd")
}

/// Asserts an API error with `code` whose message mentions `needle`.
fn denied(result: kube::Result<impl std::fmt::Debug>, code: u16, needle: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, code, "{status:?}");
            assert!(
                status.message.contains(needle),
                "{} should mention {needle}",
                status.message
            );
        }
        other => panic!("expected a {code} mentioning {needle}, got {other:?}"),
    }
}

// ---- a raw HTTP/1.1 and TLS client ------------------------------------------

/// A TLS client of the relay with a chosen identity, for what kube clients would
/// not send (path tricks, raw headers, slow or huge requests, bad certificates).
struct Peer {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    code: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    /// The body as a Kubernetes `Status` (panics when it is not one).
    fn status(&self) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)));
        assert_eq!(v["kind"], "Status", "{v}");
        assert_eq!(v["code"], self.code, "{v}");
        v
    }
}

impl Peer {
    /// As `cluster`, with its certificate from the stack's PKI.
    fn cluster(stack: &Stack, relay: &RelayHandle, cluster: &str, alpn: &[&[u8]]) -> Peer {
        let read = |f: &str| std::fs::read_to_string(stack.pki().join(f)).unwrap();
        let (cert, key) = (
            read(&format!("{cluster}.crt")),
            read(&format!("{cluster}.key")),
        );
        Peer::with(stack, relay, Some((&cert, &key)), alpn)
    }

    /// With any client certificate, or none.
    fn with(
        stack: &Stack,
        relay: &RelayHandle,
        client: Option<(&str, &str)>,
        alpn: &[&[u8]],
    ) -> Peer {
        let ca = std::fs::read_to_string(stack.pki().join("ca.crt")).unwrap();
        Peer {
            addr: relay.started.addr,
            tls: secret_relay_certs::client_config(&ca, client, alpn).unwrap(),
        }
    }

    async fn connect(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// One HTTP/1.1 connection, kept open for several requests (see [`get`]).
    async fn open(&self) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>> {
        let tls = self.connect().await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender
    }

    /// Sends `request` on a new connection and reads the answer to the end.
    async fn send(&self, request: &[u8]) -> std::io::Result<Answer> {
        let mut tls = self.connect().await?;
        tls.write_all(request).await?;
        tls.flush().await?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match tls.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                // A peer that closes without close_notify after answering is fine.
                Err(_) if !raw.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(parse_answer(&raw))
    }
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    Answer { code, head, body }
}

/// An HTTP/1.1 request that closes the connection after its answer.
fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

const H1: &[&[u8]] = &[b"http/1.1"];

/// A GET of `target` for a connection [`Peer::open`] made.
fn get(target: &str) -> http::Request<http_body_util::Empty<Bytes>> {
    http::Request::get(target)
        .header("host", "relay")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap()
}

// ---- the attacks ------------------------------------------------------------

on_both!(
    a_forged_owner_label_is_refused_through_the_relay_and_from_an_admin,
    a_blocked_secret_is_refused_on_every_write_path,
);

/// Cluster B tries to update, patch, re-create and delete cluster A's hub copy,
/// which is outside its view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_cannot_write_into_another_clusters_hub_copy() {
    capture_logs();
    let stack = stack(Flavor::Sandbox, &["cross-a", "cross-b"], &[]).await;
    let relay = stack.start_relay().await;
    let a = relay_api(&stack, &relay, "cross-a").await;
    let b = relay_api(&stack, &relay, "cross-b").await;
    let hub = hub(&stack).await;
    a.create(&PostParams::default(), &opted_in("cross-repo"))
        .await
        .unwrap();
    relay.wait_cached("cross-repo").await;
    let before = hub.get("cross-repo").await.unwrap();

    // The copy is outside B's view: every verb on it answers as GET does, and a
    // create of its name says only that the name is taken, not by whom.
    let mut stolen = opted_in("cross-repo");
    stolen.metadata.resource_version = before.metadata.resource_version.clone();
    stolen.string_data = Some([("password".to_owned(), "stolen".to_owned())].into());
    denied(
        b.replace("cross-repo", &PostParams::default(), &stolen)
            .await,
        404,
        "not found",
    );
    denied(
        b.patch(
            "cross-repo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"password": "stolen"}})),
        )
        .await,
        404,
        "not found",
    );
    denied(
        b.delete("cross-repo", &DeleteParams::default()).await,
        404,
        "not found",
    );
    denied(b.get("cross-repo").await, 404, "not found");
    match b
        .create(&PostParams::default(), &opted_in("cross-repo"))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains("name-taken"), "{}", status.message);
            assert!(!status.message.contains("cross-a"), "{}", status.message);
        }
        other => panic!("expected name-taken, got {other:?}"),
    }

    logged(&[
        "up-sync denied",
        "cluster=cross-b",
        "name=cross-repo",
        "name-taken",
    ])
    .await;
    let denied_writes = |rule| {
        relay_metric(
            &relay,
            "writes_total",
            &[("decision", "denied"), ("rule", rule)],
        )
    };
    assert_eq!(denied_writes("name-taken"), 1.0);
    // Nothing was judged against the hidden copy.
    assert_eq!(denied_writes("owned-by-other-cluster"), 0.0);
    assert_eq!(denied_writes("release-not-owner"), 0.0);
    let after = hub.get("cross-repo").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(
        label(&after, "secret-relay.io/owner"),
        Some("cluster.cross-a")
    );
    relay.stop().await;
}

/// Nobody sets `secret-relay.io/owner` by hand: not a cluster through the relay (the
/// relay refuses it before the API server), not an admin with kubectl (the webhook
/// refuses it; `system:masters` is not exempt).
async fn a_forged_owner_label_is_refused_through_the_relay_and_from_an_admin(flavor: Flavor) {
    capture_logs();
    // The repository's RBAC lets the relay impersonate cluster1..3 only.
    let (a_name, b_name) = match flavor {
        Flavor::Sandbox => ("forge-a", "forge-b"),
        Flavor::Real | Flavor::Outside => ("cluster1", "cluster2"),
    };
    let stack = stack(flavor, &[a_name, b_name], &[]).await;
    let relay = stack.start_relay().await;
    let a = relay_api(&stack, &relay, a_name).await;
    let hub = hub(&stack).await;
    let b_owner = format!("cluster.{b_name}");
    // Names unique to this test and flavor: log lines are matched by them.
    let prefix = match flavor {
        Flavor::Sandbox => "forge",
        Flavor::Real | Flavor::Outside => "forge-real",
    };
    let new = format!("{prefix}-new");
    let own = format!("{prefix}-own");
    let adopted = format!("{prefix}-adopted");

    // Through the relay: a new hub copy claiming to be B's.
    denied(
        a.create(
            &PostParams::default(),
            &secret(
                &new,
                &[OPT_IN, REPO_CREDS, ("secret-relay.io/owner", &b_owner)],
                &[],
            ),
        )
        .await,
        403,
        "owner-label-forged",
    );
    // Its own copy, handed to B with a JSON patch.
    a.create(&PostParams::default(), &opted_in(&own))
        .await
        .unwrap();
    relay.wait_cached(&own).await;
    let relabel = Patch::<()>::Json(
        serde_json::from_value(serde_json::json!([
            {"op": "replace", "path": "/metadata/labels/secret-relay.io~1owner", "value": b_owner}
        ]))
        .unwrap(),
    );
    denied(
        a.patch(&own, &PatchParams::default(), &relabel).await,
        403,
        "owner-label-forged",
    );
    // Adoption claimed by hand.
    denied(
        a.create(
            &PostParams::default(),
            &secret(
                &adopted,
                &[OPT_IN, REPO_CREDS],
                &[("secret-relay.io/adopted", "true")],
            ),
        )
        .await,
        403,
        "owner-label-forged",
    );
    logged(&[
        "up-sync denied",
        &format!("cluster={a_name}"),
        &new,
        "owner-label-forged",
    ])
    .await;
    logged(&[
        "up-sync denied",
        &format!("cluster={a_name}"),
        &own,
        "owner-label-forged",
    ])
    .await;
    assert_eq!(
        relay_metric(
            &relay,
            "writes_total",
            &[("decision", "denied"), ("rule", "owner-label-forged")]
        ),
        3.0
    );
    assert!(hub.get_opt(&new).await.unwrap().is_none());
    assert!(hub.get_opt(&adopted).await.unwrap().is_none());
    let stored = hub.get(&own).await.unwrap();
    assert_eq!(
        label(&stored, "secret-relay.io/owner"),
        Some(format!("cluster.{a_name}").as_str())
    );

    // Directly, as a cluster admin with kubectl.
    let kubectl = secret_relay_testkit::kubectl().expect("kubectl (KUBECTL_BINARIES or PATH)");
    let cp = format!("{prefix}-cp");
    hub.create(&PostParams::default(), &secret(&cp, &[], &[]))
        .await
        .unwrap();
    let updates_before = webhook_denials(&stack, "UPDATE").await;
    let creates_before = webhook_denials(&stack, "CREATE").await;
    let owner_label = format!("secret-relay.io/owner=cluster.{a_name}");
    for (name, needle) in [(cp.as_str(), "owner-label-forged"), (own.as_str(), a_name)] {
        let out = stack.cluster.kubectl(
            &kubectl,
            &[
                "-n",
                "argocd",
                "label",
                "--overwrite",
                "secret",
                name,
                &owner_label,
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "kubectl label {name} succeeded");
        assert!(
            stderr.contains("denied the request") && stderr.contains(needle),
            "{name}: {stderr}"
        );
    }
    let manifest = stack.cluster.dir().join("forged.yaml");
    let forged_name = format!("{prefix}-kubectl");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {forged_name}\n  namespace: argocd\n  labels:\n    secret-relay.io/owner: cluster.{a_name}\nstringData:\n  password: {CANARY}\n"
        ),
    )
    .unwrap();
    let out = stack
        .cluster
        .kubectl(&kubectl, &["apply", "-f", manifest.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("owner-label-forged"),
        "{stderr}"
    );
    assert!(hub.get_opt(&forged_name).await.unwrap().is_none());
    assert_eq!(
        label(&hub.get(&cp).await.unwrap(), "secret-relay.io/owner"),
        None
    );
    // The webhook's log and metric.
    logged(&["reviewed", &cp, "denied", "owner-label-forged"]).await;
    logged(&["reviewed", &forged_name, "denied", "owner-label-forged"]).await;
    logged(&["reviewed", &own, "denied", "ownership-lock"]).await;
    assert!(webhook_denials(&stack, "UPDATE").await >= updates_before + 2.0);
    assert!(webhook_denials(&stack, "CREATE").await >= creates_before + 1.0);
    relay.stop().await;
}

/// An agent's request carrying impersonation headers is refused, whatever the header,
/// and never forwarded (the relay sets the identity itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_headers_from_an_agent_are_refused() {
    capture_logs();
    let stack = stack(Flavor::Sandbox, &["imp-a"], &[]).await;
    let relay = stack.start_relay().await;
    let peer = Peer::cluster(&stack, &relay, "imp-a", H1);
    let collection = "/api/v1/namespaces/argocd/secrets";
    let body = serde_json::to_vec(&opted_in("imp-sneaky")).unwrap();
    let attempts: [(&str, &[u8], (&str, &str)); 5] = [
        ("GET", b"", ("Impersonate-User", "system:admin")),
        ("GET", b"", ("Impersonate-Group", "system:masters")),
        ("GET", b"", ("Impersonate-Uid", "0")),
        ("GET", b"", ("Impersonate-Extra-Scopes", "all")),
        (
            "POST",
            &body,
            ("Impersonate-User", "secret-relay:cluster:other"),
        ),
    ];
    for (method, body, (header, value)) in attempts {
        let answer = peer
            .send(&request(
                method,
                collection,
                &[(header, value), ("Content-Type", "application/json")],
                body,
            ))
            .await
            .unwrap();
        assert_eq!(answer.code, 403, "{header}: {answer:?}");
        let status = answer.status();
        assert_eq!(status["reason"], "Forbidden");
        let lower = header.to_ascii_lowercase();
        assert!(
            status["message"].as_str().unwrap().contains(&lower),
            "{status}"
        );
        logged(&[
            "refused a request with an impersonation header",
            "cluster=imp-a",
            &format!("header={lower}"),
        ])
        .await;
    }
    // kube-rs' own impersonation settings, the way an agent's kubeconfig could carry them.
    let kc = kube::config::Kubeconfig::read_from(stack.relay_kubeconfig(&relay, "imp-a")).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    config.auth_info.impersonate = Some("system:admin".to_owned());
    let sneaky: Api<Secret> = Api::namespaced(Client::try_from(config).unwrap(), "argocd");
    denied(
        sneaky.list(&ListParams::default()).await,
        403,
        "impersonate-user",
    );
    assert_eq!(
        relay_metric(
            &relay,
            "refusals_total",
            &[("reason", "impersonation-header")]
        ),
        6.0
    );
    assert!(
        hub(&stack)
            .await
            .get_opt("imp-sneaky")
            .await
            .unwrap()
            .is_none()
    );
    relay.stop().await;
}

/// Other namespaces, other resources and path tricks never reach the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_namespaces_resources_and_path_tricks_are_refused() {
    capture_logs();
    let stack = stack(Flavor::Sandbox, &["path-a"], &[]).await;
    let relay = stack.start_relay().await;
    // Something worth stealing next door.
    stack.cluster.create_namespace("kube-system").await;
    Api::<Secret>::namespaced(stack.cluster.client().await, "kube-system")
        .create(&PostParams::default(), &secret("path-target", &[], &[]))
        .await
        .unwrap();
    let peer = Peer::cluster(&stack, &relay, "path-a", H1);
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "GET",
            "/api/v1/namespaces/kube-system/secrets",
            403,
            "Forbidden",
        ),
        (
            "GET",
            "/api/v1/namespaces/kube-system/secrets/path-target",
            403,
            "Forbidden",
        ),
        (
            "POST",
            "/api/v1/namespaces/kube-system/secrets",
            403,
            "Forbidden",
        ),
        ("GET", "/api/v1/secrets", 403, "Forbidden"),
        (
            "GET",
            "/api/v1/namespaces/kube-system/configmaps",
            403,
            "Forbidden",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd/configmaps",
            404,
            "NotFound",
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/argocd/deployments",
            404,
            "NotFound",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd/secrets/path-target/status",
            404,
            "NotFound",
        ),
        (
            "PUT",
            "/api/v1/namespaces/argocd/secrets/path-target/status",
            404,
            "NotFound",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd/secrets/../../kube-system/secrets/path-target",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd/secrets/%2e%2e/%2E%2E/kube-system/secrets",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd%2Fsecrets",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/kube-system%2fsecrets%2fpath-target",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd/secrets/a%2Fb",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "//api/v1/namespaces/argocd/secrets",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd//secrets",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd/secrets/./path-target",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd/secrets/path-target%00",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd/secrets/path-target?watch=true",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd/secrets/path-target?watch=1",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/argocd/secrets?fieldSelector=spec.x%3Dy",
            400,
            "BadRequest",
        ),
        (
            "DELETE",
            "/api/v1/namespaces/argocd/secrets",
            405,
            "MethodNotAllowed",
        ),
    ];
    for (method, target, code, reason) in cases {
        let answer = peer.send(&request(method, target, &[], b"")).await.unwrap();
        assert_eq!(answer.code, *code, "{method} {target}: {answer:?}");
        let status = answer.status();
        assert_eq!(status["reason"], *reason, "{method} {target}");
        assert!(
            !String::from_utf8_lossy(&answer.body).contains(CANARY),
            "{method} {target} leaked"
        );
        let path = target.split('?').next().unwrap();
        logged(&["refused", "cluster=path-a", &format!("path=\"{path}\"")]).await;
    }
    // The same through kube-rs, as an agent would misuse it.
    let client = stack.relay_client(&relay, "path-a").await;
    denied(
        Api::<Secret>::namespaced(client.clone(), "kube-system")
            .get("path-target")
            .await,
        403,
        "only",
    );
    denied(
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client, "argocd")
            .list(&ListParams::default())
            .await,
        404,
        "only Secrets",
    );
    let text = relay.started.admin.encode_metrics();
    assert_eq!(
        metric(
            &text,
            "secret_relay_relay_refusals_total",
            &[("reason", "route")]
        ),
        (cases.len() + 2) as f64
    );
    assert!(!text.contains(CANARY), "no secret value in metrics");
    relay.stop().await;
}

/// A blocked secret (by name, type or label) through every write path: create,
/// update, label change, merge, JSON and strategic-merge patch, server-side apply and
/// delete. Through the relay the relay refuses it; sent straight to the API server
/// as the cluster's identity (what a relay bug would do) the webhook refuses it.
async fn a_blocked_secret_is_refused_on_every_write_path(flavor: Flavor) {
    capture_logs();
    // The repository's RBAC lets the relay impersonate cluster1..3 only; the names
    // of this test's secrets are unique to it and the flavor (log lines are matched
    // by them).
    let (c, prefix) = match flavor {
        Flavor::Sandbox => ("blk-a", "blk"),
        Flavor::Real | Flavor::Outside => ("cluster1", "blk-real"),
    };
    let stack = stack(flavor, &[c], &[]).await;
    let relay = stack.start_relay().await;
    let hub = hub(&stack).await;
    let via_relay = relay_api(&stack, &relay, c).await;
    let direct = as_cluster(&stack, c).await;
    hub.create(&PostParams::default(), &secret("argocd-secret", &[], &[]))
        .await
        .unwrap();
    let repo = format!("{prefix}-repo");
    via_relay
        .create(&PostParams::default(), &opted_in(&repo))
        .await
        .unwrap();
    relay.wait_cached("argocd-secret").await;
    relay.wait_cached(&repo).await;
    let argocd_secret = hub.get("argocd-secret").await.unwrap();
    let denials_before = [
        webhook_denials(&stack, "CREATE").await,
        webhook_denials(&stack, "UPDATE").await,
        webhook_denials(&stack, "DELETE").await,
    ];

    let blocked_type: Secret = {
        let mut s = opted_in(&format!("{prefix}-token"));
        s.type_ = Some("kubernetes.io/service-account-token".to_owned());
        s.metadata.annotations = Some(
            [(
                "kubernetes.io/service-account.name".to_owned(),
                "default".to_owned(),
            )]
            .into(),
        );
        s
    };
    let blocked_label = secret(
        &format!("{prefix}-cluster"),
        &[OPT_IN, ("argocd.argoproj.io/secret-type", "cluster")],
        &[],
    );
    let mut update = opted_in("argocd-secret");
    update.metadata.resource_version = argocd_secret.metadata.resource_version.clone();
    let to_cluster_type =
        serde_json::json!({"metadata": {"labels": {"argocd.argoproj.io/secret-type": "cluster"}}});
    let merge = serde_json::json!({"metadata": {"labels": {"akuity.io/secret-sync": "true", "argocd.argoproj.io/secret-type": "repo-creds"}}, "stringData": {"password": "x"}});
    let json = Patch::<()>::Json(
        serde_json::from_value(serde_json::json!([
            {"op": "add", "path": "/metadata/labels", "value": {"akuity.io/secret-sync": "true", "argocd.argoproj.io/secret-type": "repo-creds"}}
        ]))
        .unwrap(),
    );
    let apply = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "argocd-secret", "labels": {"akuity.io/secret-sync": "true", "argocd.argoproj.io/secret-type": "repo-creds"}},
        "stringData": {"password": "x"},
    });
    let apply_new = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{prefix}-applied"), "labels": {"akuity.io/secret-sync": "true", "argocd.argoproj.io/secret-type": "cluster"}},
        "stringData": {"password": "x"},
    });
    let ssa = PatchParams::apply("attacker").force();

    for (who, api) in [("relay", &via_relay), ("webhook", &direct)] {
        let check = |r: kube::Result<Secret>, rule: &str| {
            // The relay words its refusal "secret-relay denied the request: ..."; the
            // API server wraps the webhook's in "admission webhook ... denied the request".
            let needle = if who == "relay" {
                "secret-relay denied the request"
            } else {
                "denied the request"
            };
            match r {
                Err(kube::Error::Api(s)) => {
                    assert_eq!(s.code, 403, "{who}: {s:?}");
                    assert!(
                        s.message.contains(needle) && s.message.contains(rule),
                        "{who}: {}",
                        s.message
                    );
                }
                other => panic!("{who}: expected a 403 naming {rule}, got {other:?}"),
            }
        };
        let pp = PostParams::default();
        check(
            api.create(&pp, &opted_in("argocd-secret")).await,
            "blocked-name",
        );
        check(api.create(&pp, &blocked_type).await, "blocked-type");
        check(api.create(&pp, &blocked_label).await, "blocked-label");
        check(
            api.replace("argocd-secret", &pp, &update).await,
            "blocked-name",
        );
        check(
            api.patch(
                &repo,
                &PatchParams::default(),
                &Patch::Merge(&to_cluster_type),
            )
            .await,
            "blocked-label",
        );
        check(
            api.patch(
                "argocd-secret",
                &PatchParams::default(),
                &Patch::Merge(&merge),
            )
            .await,
            "blocked-name",
        );
        check(
            api.patch("argocd-secret", &PatchParams::default(), &json)
                .await,
            "blocked-name",
        );
        check(
            api.patch(
                "argocd-secret",
                &PatchParams::default(),
                &Patch::Strategic(&merge),
            )
            .await,
            "blocked-name",
        );
        check(
            api.patch("argocd-secret", &ssa, &Patch::Apply(&apply))
                .await,
            "blocked-name",
        );
        check(
            api.patch(
                &format!("{prefix}-applied"),
                &ssa,
                &Patch::Apply(&apply_new),
            )
            .await,
            "blocked-label",
        );
        match api.delete("argocd-secret", &DeleteParams::default()).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 403, "{who}: {s:?}");
                assert!(s.message.contains("blocked-name"), "{who}: {}", s.message);
            }
            other => panic!("{who}: delete of argocd-secret: {other:?}"),
        }
    }

    // The relay's view: log lines and metrics.
    let cluster = format!("cluster={c}");
    for (name, rule) in [
        ("argocd-secret", "blocked-name"),
        (
            blocked_type.metadata.name.as_deref().unwrap(),
            "blocked-type",
        ),
        (
            blocked_label.metadata.name.as_deref().unwrap(),
            "blocked-label",
        ),
        (repo.as_str(), "blocked-label"),
    ] {
        logged(&["up-sync denied", &cluster, &format!("name={name}"), rule]).await;
    }
    logged(&[
        "release denied",
        &cluster,
        "name=argocd-secret",
        "blocked-name",
    ])
    .await;
    let denied_writes = |rule| {
        relay_metric(
            &relay,
            "writes_total",
            &[("decision", "denied"), ("rule", rule)],
        )
    };
    assert_eq!(denied_writes("blocked-name"), 7.0);
    assert_eq!(denied_writes("blocked-type"), 1.0);
    assert_eq!(denied_writes("blocked-label"), 3.0);
    // The webhook's: every direct attempt was reviewed and denied.
    logged(&["reviewed", "name=argocd-secret", "denied", "blocked-name"]).await;
    logged(&[
        "reviewed",
        &format!("name={repo}"),
        "denied",
        "blocked-label",
    ])
    .await;
    let denials_after = [
        webhook_denials(&stack, "CREATE").await,
        webhook_denials(&stack, "UPDATE").await,
        webhook_denials(&stack, "DELETE").await,
    ];
    // Creates: 3 plus a server-side apply of a new name; updates: replace, label
    // change, three patches and an apply; one delete.
    assert!(
        denials_after[0] >= denials_before[0] + 4.0,
        "{denials_after:?}"
    );
    assert!(
        denials_after[1] >= denials_before[1] + 6.0,
        "{denials_after:?}"
    );
    assert!(
        denials_after[2] >= denials_before[2] + 1.0,
        "{denials_after:?}"
    );

    // Nothing moved.
    let after = hub.get("argocd-secret").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        argocd_secret.metadata.resource_version
    );
    assert_eq!(
        label(
            &hub.get(&repo).await.unwrap(),
            "argocd.argoproj.io/secret-type"
        ),
        Some("repo-creds")
    );
    for name in [
        blocked_type.metadata.name.as_deref().unwrap(),
        blocked_label.metadata.name.as_deref().unwrap(),
        &format!("{prefix}-applied"),
    ] {
        assert!(
            hub.get_opt(name).await.unwrap().is_none(),
            "{name} was created"
        );
    }
    relay.stop().await;
}

/// A cluster taken out of the policy keeps a valid certificate; the relay refuses it
/// on every request (and one never registered, likewise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_removed_from_the_policy_is_refused_though_its_certificate_is_valid() {
    capture_logs();
    let stack = stack(Flavor::Sandbox, &["rm-a", "rm-b"], &["rm-never"]).await;
    let relay = stack.start_relay().await;
    let b = relay_api(&stack, &relay, "rm-b").await;
    b.list(&ListParams::default()).await.unwrap();
    b.create(&PostParams::default(), &opted_in("rm-b-repo"))
        .await
        .unwrap();
    stack.set_policy(&policy(&["rm-a"])).await;
    Stack::relay_generation(&relay, 2).await;

    denied(
        b.list(&ListParams::default()).await,
        403,
        "rm-b is not registered",
    );
    denied(
        b.create(&PostParams::default(), &opted_in("rm-b-more"))
            .await,
        403,
        "rm-b is not registered",
    );
    denied(
        b.delete("rm-b-repo", &DeleteParams::default()).await,
        403,
        "rm-b is not registered",
    );
    // The TLS handshake succeeds (the certificate is valid): the refusal is a Status.
    let answer = Peer::cluster(&stack, &relay, "rm-b", H1)
        .send(&request(
            "GET",
            "/api/v1/namespaces/argocd/secrets",
            &[],
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(answer.code, 403);
    assert_eq!(answer.status()["reason"], "Forbidden");
    let never = relay_api(&stack, &relay, "rm-never").await;
    denied(
        never.list(&ListParams::default()).await,
        403,
        "rm-never is not registered",
    );
    // rm-a is unaffected.
    relay_api(&stack, &relay, "rm-a")
        .await
        .list(&ListParams::default())
        .await
        .unwrap();

    logged(&[
        "refused a cluster that is not in the policy",
        "cluster=rm-b",
    ])
    .await;
    logged(&[
        "refused a cluster that is not in the policy",
        "cluster=rm-never",
    ])
    .await;
    assert_eq!(
        relay_metric(
            &relay,
            "refusals_total",
            &[("reason", "unregistered-cluster")]
        ),
        5.0
    );
    assert!(
        hub(&stack)
            .await
            .get_opt("rm-b-more")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        hub(&stack)
            .await
            .get_opt("rm-b-repo")
            .await
            .unwrap()
            .is_some()
    );
    relay.stop().await;
}

/// A compromised cluster cannot fill the control-plane namespace (and, through
/// copies sent to `ALL`, every agent's): it owns at most so many hub copies, and
/// so many bytes of them. At its quota a create, or any change once the bytes are
/// reached, is refused with rule `cluster-quota` and its own counts (nothing of
/// anyone else's); a deletion always passes and makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_owns_no_more_hub_copies_than_its_quota() {
    let stack = stack(Flavor::Sandbox, &["quota-a", "quota-b"], &[]).await;
    let relay = stack
        .start_relay_with(Limits {
            max_copies_per_cluster: 2,
            max_bytes_per_cluster: 64 * 1024,
            ..Limits::default()
        })
        .await;
    let a = relay_api(&stack, &relay, "quota-a").await;
    for name in ["quota-1", "quota-2"] {
        a.create(&PostParams::default(), &opted_in(name))
            .await
            .unwrap();
        relay.wait_cached(name).await;
    }
    let refused = a.create(&PostParams::default(), &opted_in("quota-3")).await;
    denied(refused, 403, "(rule cluster-quota)");
    let refused = a.create(&PostParams::default(), &opted_in("quota-3")).await;
    denied(refused, 403, "owns 2 hub copies");
    // Another cluster's quota is its own.
    let b = relay_api(&stack, &relay, "quota-b").await;
    b.create(&PostParams::default(), &opted_in("quota-b-1"))
        .await
        .unwrap();
    // A deletion passes, and makes room.
    a.delete("quota-1", &DeleteParams::default()).await.unwrap();
    within("the cache to drop quota-1", async {
        let mut events = relay.started.cache.subscribe();
        while relay.started.cache.get("quota-1").is_some() {
            let _ = events.recv().await;
        }
    })
    .await;
    a.create(&PostParams::default(), &opted_in("quota-3"))
        .await
        .unwrap();
    relay.wait_cached("quota-3").await;

    // Bytes: one large copy reaches them; then no change but a deletion passes.
    let large = secret_relay_testkit::secret_with_data(
        "quota-large",
        &[OPT_IN, REPO_CREDS],
        &[],
        &[("blob", &"x".repeat(70 * 1024))],
    );
    let b_large = b.create(&PostParams::default(), &large).await.unwrap();
    relay.wait_cached("quota-large").await;
    let mut changed = b_large.clone();
    changed
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("team".into(), "web".into());
    denied(
        b.replace("quota-large", &PostParams::default(), &changed)
            .await,
        403,
        "(rule cluster-quota)",
    );
    denied(
        b.create(&PostParams::default(), &opted_in("quota-b-2"))
            .await,
        403,
        "(rule cluster-quota)",
    );
    b.delete("quota-large", &DeleteParams::default())
        .await
        .unwrap();
    let metrics = relay.started.admin.encode_metrics();
    assert!(
        metrics.contains(
            r#"secret_relay_relay_writes_total{decision="denied",rule="cluster-quota"} 4"#
        ),
        "{metrics}"
    );
}

/// A connection may outlive its client certificate; its requests may not. As
/// kube-apiserver checks the certificate on every request, the relay does: a watch
/// ends when the certificate expires, and the next request on the same connection
/// is a 401 that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_outlives_its_certificate_is_refused_from_then_on() {
    let stack = stack(Flavor::Sandbox, &["tls-a"], &[]).await;
    let relay = stack.start_relay().await;
    // Valid from a minute ago for ten more seconds.
    let minute_ago = Validity::days(1).not_before;
    let short = stack
        .ca()
        .issue_cluster(
            "tls-a",
            Validity::between(minute_ago, minute_ago + Duration::from_secs(70)),
        )
        .unwrap();
    let peer = Peer::with(&stack, &relay, Some((&short.cert_pem, &short.key_pem)), H1);
    let mut sender = peer.open().await;
    let list = "/api/v1/namespaces/argocd/secrets";
    let listed = sender.send_request(get(list)).await.unwrap();
    assert_eq!(listed.status(), 200);
    listed.into_body().collect().await.unwrap();

    // Asked for ten minutes, the watch ends when the certificate does.
    sender.ready().await.unwrap();
    let watch = sender
        .send_request(get(&format!("{list}?watch=true&timeoutSeconds=600")))
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    within(
        "the watch to end at the certificate's expiry",
        watch.into_body().collect(),
    )
    .await
    .unwrap();
    sender.ready().await.unwrap();
    let refused = sender.send_request(get(list)).await.unwrap();
    assert_eq!(refused.status(), 401);
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("the client certificate has expired since this connection began"),
        "{body}"
    );
    let metrics = relay.started.admin.encode_metrics();
    assert!(
        metrics.contains(r#"secret_relay_relay_refusals_total{reason="certificate-expired"} 1"#),
        "{metrics}"
    );
}

/// A connection made under a client CA that has since been replaced is refused
/// from its next request on, and its watch ends with its next line, as
/// kube-apiserver judges every request by the client CA it holds now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_made_under_a_replaced_client_ca_is_refused_from_then_on() {
    let stack = stack(Flavor::Sandbox, &["tls-a"], &[]).await;
    let relay = stack.start_relay().await;
    let mut sender = Peer::cluster(&stack, &relay, "tls-a", H1).open().await;
    let list = "/api/v1/namespaces/argocd/secrets";
    let watch = sender
        .send_request(get(&format!("{list}?watch=true&timeoutSeconds=600")))
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);

    // The operator replaces the client CA (say its key leaked).
    let new_ca = Ca::generate("the new client CA", Validity::ca_default()).unwrap();
    let server_ca = std::fs::read_to_string(stack.pki().join("ca.crt")).unwrap();
    std::fs::write(stack.pki().join("ca.crt"), new_ca.cert_pem()).unwrap();
    let _ = relay.started.tls.reload().unwrap();
    assert!(relay.started.tls.rotations() >= 1);
    // The next line of the open watch is not sent: the watch ends.
    Api::<Secret>::namespaced(stack.cluster.client().await, "argocd")
        .create(
            &PostParams::default(),
            &secret(
                "after",
                &[],
                &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            ),
        )
        .await
        .unwrap();
    let lines = within("the open watch to end", watch.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert!(
        !String::from_utf8_lossy(&lines).contains("\"after\""),
        "{}",
        String::from_utf8_lossy(&lines)
    );
    sender.ready().await.unwrap();
    let refused = sender.send_request(get(list)).await.unwrap();
    assert_eq!(refused.status(), 401);
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("not trusted by the relay's client CA"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // A certificate of the new CA is served: it is the CA that changed.
    let renewed = new_ca.issue_cluster("tls-a", Validity::default()).unwrap();
    let renewed = Peer {
        addr: relay.started.addr,
        tls: secret_relay_certs::client_config(
            &server_ca,
            Some((&renewed.cert_pem, &renewed.key_pem)),
            H1,
        )
        .unwrap(),
    };
    let answer = renewed.send(&request("GET", list, &[], b"")).await.unwrap();
    assert_eq!(answer.code, 200, "{answer:?}");
}

/// A certificate from another CA, an expired one, one not valid yet, and none: the
/// handshake fails with a TLS alert; the relay logs and counts it by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_expired_or_missing_fail_the_handshake() {
    capture_logs();
    let stack = stack(Flavor::Sandbox, &["tls-a"], &[]).await;
    let relay = stack.start_relay().await;
    let day = Duration::from_secs(24 * 3600);
    let now = Validity::days(1).not_before;
    let other_ca = Ca::generate("an attacker's CA", Validity::ca_default()).unwrap();
    let foreign = other_ca
        .issue_cluster("tls-a", Validity::default())
        .unwrap();
    let expired = stack
        .ca()
        .issue_cluster("tls-a", Validity::between(now - 3 * day, now - day))
        .unwrap();
    let early = stack
        .ca()
        .issue_cluster("tls-a", Validity::between(now + day, now + 3 * day))
        .unwrap();
    // What is presented, the client certificate and key, the metric's reason, and the
    // TLS alert the client receives.
    type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: [Case<'_>; 4] = [
        (
            "another CA",
            Some((&foreign.cert_pem, &foreign.key_pem)),
            "unknown-ca",
            "UnknownCA",
        ),
        (
            "expired",
            Some((&expired.cert_pem, &expired.key_pem)),
            "expired",
            "CertificateExpired",
        ),
        (
            "not yet valid",
            Some((&early.cert_pem, &early.key_pem)),
            "not-yet-valid",
            "CertificateExpired",
        ),
        (
            "no certificate",
            None,
            "no-certificate",
            "CertificateRequired",
        ),
    ];
    for (what, client, reason, alert) in cases {
        let peer = Peer::with(&stack, &relay, client, H1);
        let result = peer
            .send(&request(
                "GET",
                "/api/v1/namespaces/argocd/secrets",
                &[],
                b"",
            ))
            .await;
        let err = result.expect_err(what).to_string();
        assert!(err.contains(alert), "{what}: {err}");
        let line = logged(&["TLS handshake failed", &format!("reason=\"{reason}\"")]).await;
        assert!(!line.contains("BEGIN"), "no key material in {line}");
        assert!(
            relay_metric(
                &relay,
                "tls_handshake_failures_total",
                &[("reason", reason)]
            ) >= 1.0,
            "{what}"
        );
    }
    // The same cluster's real certificate still works.
    relay_api(&stack, &relay, "tls-a")
        .await
        .list(&ListParams::default())
        .await
        .unwrap();
    relay.stop().await;
}

/// A certificate of the relay's own CA that names no valid cluster (a name the
/// cluster-name rule refuses, a DNS subdomain, no name at all): the handshake
/// succeeds, and the request is refused with a 403 that says why, quoting nothing of
/// the certificate; logged and counted as `no-identity`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_names_no_valid_cluster_is_refused_with_why() {
    capture_logs();
    let stack = stack(Flavor::Sandbox, &["tls-name"], &[]).await;
    let relay = stack.start_relay().await;
    let issue = |cn: &str| {
        stack
            .ca()
            .issue_client(cn, &[], Validity::default())
            .unwrap()
    };
    let invalid = "the name it carries is not a valid cluster name";
    let unnamed = "it has no spiffe://secret-relay/cluster/ URI SAN and no common name";
    let cases = [
        ("Bad_Name-7", invalid),
        ("tls-name.example.com", invalid),
        ("", unnamed),
    ];
    for (cn, why) in cases {
        let cert = issue(cn);
        let peer = Peer::with(&stack, &relay, Some((&cert.cert_pem, &cert.key_pem)), H1);
        let answer = peer
            .send(&request(
                "GET",
                "/api/v1/namespaces/argocd/secrets",
                &[],
                b"",
            ))
            .await
            .unwrap();
        assert_eq!(answer.code, 403, "{cn:?}: {answer:?}");
        let message = answer.status()["message"].as_str().unwrap().to_owned();
        assert!(
            message.starts_with(&format!(
                "the client certificate names no secret-relay cluster: {why}"
            )),
            "{cn:?}: {message}"
        );
        if !cn.is_empty() {
            assert!(!message.contains(cn), "the answer quotes {cn:?}: {message}");
        }
        let line = logged(&["refused a client certificate that names no cluster", why]).await;
        if !cn.is_empty() {
            assert!(!line.contains(cn), "the log quotes {cn:?}: {line}");
        }
    }
    assert_eq!(
        relay_metric(&relay, "refusals_total", &[("reason", "no-identity")]),
        3.0
    );
    // The cluster's own certificate still works.
    relay_api(&stack, &relay, "tls-name")
        .await
        .list(&ListParams::default())
        .await
        .unwrap();
    relay.stop().await;
}

/// Connections that never finish a request head are closed after the header read
/// timeout: trickled headers on HTTP/1.1, silence after the handshake, and an HTTP/2
/// connection that never sends its preface. Closing is the answer (as kube-apiserver
/// does); the relay logs and counts each, and keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    capture_logs();
    let stack = stack(Flavor::Sandbox, &["slow-a"], &[]).await;
    let relay = stack
        .start_relay_with(Limits {
            header_read_timeout: Duration::from_secs(1),
            ..Limits::default()
        })
        .await;
    let started = Instant::now();
    let trickle = async {
        let peer = Peer::cluster(&stack, &relay, "slow-a", H1);
        let mut tls = peer.connect().await.unwrap();
        tls.write_all(b"GET /api/v1/namespaces/argocd/secrets HTTP/1.1\r\nHost: relay\r\n")
            .await
            .unwrap();
        let opened = Instant::now();
        // One header line every 200 ms, never the blank line that ends the head.
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tls
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
                || tls.flush().await.is_err()
            {
                break;
            }
            let mut probe = [0u8; 1];
            if let Ok(r) =
                tokio::time::timeout(Duration::from_millis(1), tls.read(&mut probe)).await
            {
                assert!(
                    matches!(r, Ok(0) | Err(_)),
                    "the relay answered a partial head"
                );
                break;
            }
        }
        opened.elapsed()
    };
    let silent = |alpn: &'static [&'static [u8]]| {
        let peer = Peer::cluster(&stack, &relay, "slow-a", alpn);
        async move {
            let mut tls = peer.connect().await.unwrap();
            let opened = Instant::now();
            let mut buf = [0u8; 64];
            let read = within("the silent connection to close", tls.read(&mut buf)).await;
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
            opened.elapsed()
        }
    };
    let (trickled, silent_h1, silent_h2) = tokio::join!(trickle, silent(H1), silent(&[b"h2"]));
    for (what, took) in [
        ("trickle", trickled),
        ("silent h1", silent_h1),
        ("silent h2", silent_h2),
    ] {
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{what}: closed after {took:?}"
        );
    }
    logged(&[
        "closed a connection that sent no complete request head in time",
        "reason=\"first-request\"",
    ])
    .await;
    assert_eq!(
        relay_metric(
            &relay,
            "request_head_timeouts_total",
            &[("reason", "first-request")]
        ),
        3.0
    );
    // Everyone else is still served, and a prompt request on a fresh connection too.
    relay_api(&stack, &relay, "slow-a")
        .await
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    relay.stop().await;
}

/// A body over the limit is 413 with a `Status`, whether declared in Content-Length
/// (refused before reading) or streamed chunked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_with_a_status() {
    capture_logs();
    let stack = stack(Flavor::Sandbox, &["big-a"], &[]).await;
    let limit = 64 * 1024;
    let relay = stack
        .start_relay_with(Limits {
            max_body_bytes: limit,
            ..Limits::default()
        })
        .await;
    let peer = Peer::cluster(&stack, &relay, "big-a", H1);
    let collection = "/api/v1/namespaces/argocd/secrets";
    // Declared: only the head is sent, the answer comes without the body.
    let declared = format!(
        "POST {collection} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        100 * 1024 * 1024
    );
    let answer = peer.send(declared.as_bytes()).await.unwrap();
    assert_eq!(answer.code, 413, "{answer:?}");
    assert_eq!(answer.status()["reason"], "RequestEntityTooLarge");
    // Chunked, no length: cut off at the limit.
    let mut chunked = format!(
        "POST {collection} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let chunk = vec![b' '; 16 * 1024];
    for _ in 0..(limit / chunk.len() + 2) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = peer.send(&chunked).await.unwrap();
    assert_eq!(answer.code, 413, "{answer:?}");
    assert_eq!(answer.status()["reason"], "RequestEntityTooLarge");
    // And through kube-rs: a Secret bigger than the limit.
    let mut big = opted_in("big-secret");
    big.string_data = Some([("blob".to_owned(), "x".repeat(2 * limit))].into());
    match relay_api(&stack, &relay, "big-a")
        .await
        .create(&PostParams::default(), &big)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 413, "{status:?}");
            assert!(status.message.contains("larger than"), "{}", status.message);
        }
        // The relay answers a declared oversized body before reading it and closes the
        // connection: a client still writing the body may see the close before the 413.
        // The refusal itself is proven by the log line and the metric below.
        Err(kube::Error::Service(err)) if format!("{err:?}").contains("BodyWrite") => {}
        other => panic!("expected a 413 or the connection closed while writing, got {other:?}"),
    }
    logged(&["refused a request body over the limit", "cluster=big-a"]).await;
    assert_eq!(
        relay_metric(&relay, "refusals_total", &[("reason", "body-too-large")]),
        3.0
    );
    assert!(
        hub(&stack)
            .await
            .get_opt("big-secret")
            .await
            .unwrap()
            .is_none()
    );
    relay.stop().await;
}

/// One cluster opening watch after watch gets 429 past its limit, and a burst of
/// requests past its rate gets 429 too; another cluster's list and watch still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_flood_from_one_cluster_does_not_starve_the_others() {
    capture_logs();
    let stack = stack(Flavor::Sandbox, &["flood-a", "flood-b"], &[]).await;
    let relay = stack
        .start_relay_with(Limits {
            watches_per_cluster: 3,
            rate_per_second: 5.0,
            burst: 20.0,
            ..Limits::default()
        })
        .await;
    let watch_target = "/api/v1/namespaces/argocd/secrets?watch=true&timeoutSeconds=60";
    let flooder = Peer::cluster(&stack, &relay, "flood-a", H1);
    // Three watches held open.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut tls = flooder.connect().await.unwrap();
        tls.write_all(&request("GET", watch_target, &[], b""))
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(tls.read(&mut byte).await.unwrap(), 1, "the watch closed");
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        held.push(tls);
    }
    // The flood: every further watch is refused.
    for _ in 0..7 {
        let answer = flooder
            .send(&request("GET", watch_target, &[], b""))
            .await
            .unwrap();
        assert_eq!(answer.code, 429, "{answer:?}");
        let status = answer.status();
        assert_eq!(status["reason"], "TooManyRequests");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("3 open watches"),
            "{status}"
        );
    }
    // The other cluster lists and watches as usual, and sees a new secret.
    let b = relay_api(&stack, &relay, "flood-b").await;
    b.list(&ListParams::default()).await.unwrap();
    let mut watch = b
        .watch(&kube::api::WatchParams::default().timeout(60), "0")
        .await
        .unwrap()
        .boxed();
    hub(&stack)
        .await
        .create(
            &PostParams::default(),
            &secret(
                "flood-shared",
                &[],
                &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            ),
        )
        .await
        .unwrap();
    within("flood-b to see flood-shared", async {
        use futures::TryStreamExt as _;
        while let Some(event) = watch.try_next().await.unwrap() {
            if let WatchEvent::Added(s) = event
                && s.metadata.name.as_deref() == Some("flood-shared")
            {
                return;
            }
        }
        panic!("flood-b's watch ended");
    })
    .await;
    // A request flood past the rate limit: 429 for flood-a, flood-b unaffected.
    let mut limited = 0;
    for _ in 0..40 {
        let answer = flooder
            .send(&request(
                "GET",
                "/api/v1/namespaces/argocd/secrets",
                &[],
                b"",
            ))
            .await
            .unwrap();
        if answer.code == 429 {
            assert_eq!(answer.status()["reason"], "TooManyRequests");
            assert!(answer.head.to_ascii_lowercase().contains("retry-after"));
            limited += 1;
        }
    }
    assert!(limited > 0, "no request was rate limited");
    b.list(&ListParams::default()).await.unwrap();
    // A closed watch gives its slot back.
    drop(held.pop());
    within("a watch slot to come back", async {
        loop {
            let answer = flooder.connect().await.unwrap();
            let mut tls = answer;
            tls.write_all(&request("GET", watch_target, &[], b""))
                .await
                .unwrap();
            let mut first = [0u8; 12];
            tls.read_exact(&mut first).await.unwrap();
            if first.starts_with(b"HTTP/1.1 200") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;

    logged(&[
        "refused a watch over the cluster's limit",
        "cluster=flood-a",
    ])
    .await;
    logged(&[
        "refused a request over the cluster's rate",
        "cluster=flood-a",
    ])
    .await;
    assert!(
        !secret_relay_testkit::captured_logs()
            .contains("refused a watch over the cluster's limit cluster=flood-b")
    );
    assert!(relay_metric(&relay, "refusals_total", &[("reason", "too-many-watches")]) >= 7.0);
    assert!(
        relay_metric(&relay, "refusals_total", &[("reason", "rate-limited")]) >= f64::from(limited)
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_holding_request_bodies_waits_for_itself_and_leaves_the_rest_to_others() {
    let stack = stack(Flavor::Sandbox, &["hold-a", "hold-b"], &[]).await;
    let limit = 64 * 1024;
    let relay = stack
        .start_relay_with(Limits {
            max_body_bytes: limit,
            // Until the relay has both heads, each write is created: on a loaded
            // machine, more than a cluster's quota of copies.
            max_copies_per_cluster: usize::MAX,
            ..Limits::default()
        })
        .await;
    let collection = "/api/v1/namespaces/argocd/secrets";
    let a = Peer::cluster(&stack, &relay, "hold-a", H1);
    let small = |name: &str| {
        request(
            "POST",
            collection,
            &[("Content-Type", "application/json")],
            &serde_json::to_vec(&opted_in(name)).unwrap(),
        )
    };
    // The relay takes writes (before its policy and cache are ready it answers 503,
    // which would end the held writes below at once).
    until_created("the relay to take writes", &a, &small("a-first"), 503).await;
    // Two writes of the largest size whose bodies never come: the cluster's budget.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tls = a.connect().await.unwrap();
        let head = format!(
            "POST {collection} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: {limit}\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        held.push(tls);
    }
    // Its next write waits for itself: refused at once, the body not read.
    let refused = within("the relay to hold the two bodies' budget", async {
        for attempt in 0.. {
            let answer = a.send(&small(&format!("a-third-{attempt}"))).await.unwrap();
            if answer.code == 429 {
                return answer;
            }
            // Taken in before both heads were: the budget was not full yet.
            assert_eq!(answer.code, 201, "{answer:?}");
        }
        unreachable!()
    })
    .await;
    assert!(
        String::from_utf8_lossy(&refused.body).contains("too many request bodies in flight"),
        "{refused:?}"
    );
    assert!(refused.head.to_ascii_lowercase().contains("retry-after: 1"));
    // Another cluster writes as ever.
    let b = Peer::cluster(&stack, &relay, "hold-b", H1);
    let answer = b.send(&small("b-write")).await.unwrap();
    assert_eq!(answer.code, 201, "{answer:?}");
    // Once the held connections go, so does their budget.
    drop(held);
    until_created(
        "the held bodies' budget to come back",
        &a,
        &small("a-later"),
        429,
    )
    .await;
    relay.stop().await;
}

/// Sends `request` from `peer` until it creates (201); every answer before is
/// `meanwhile`.
async fn until_created(what: &str, peer: &Peer, request: &[u8], meanwhile: u16) {
    within(what, async {
        loop {
            let answer = peer.send(request).await.unwrap();
            if answer.code == 201 {
                return;
            }
            assert_eq!(answer.code, meanwhile, "{answer:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

// ---- nothing outside the view -----------------------------------------------

on_both!(every_verb_on_a_hidden_secret_answers_as_get_does_and_reads_nothing_of_it);

/// A registered cluster tries to read a control-plane secret, another cluster's copy
/// and `argocd-secret` through the write verbs: a JSON patch that copies a value
/// into a label the denial would quote, a `test` op as a guessing oracle, every
/// patch type, PUT, DELETE, an encoded name. A hidden copy answers each exactly as
/// GET does (404); a blocked name is refused by name, alike whether it exists or
/// not; and the value shows up nowhere: not in an answer, a log line or a metric.
async fn every_verb_on_a_hidden_secret_answers_as_get_does_and_reads_nothing_of_it(flavor: Flavor) {
    use base64::Engine as _;
    capture_logs();
    let stack = stack(flavor, &["cluster1", "cluster2"], &[]).await;
    let relay = stack.start_relay().await;
    let hub = hub(&stack).await;
    let key = base64::engine::general_purpose::STANDARD.encode(CANARY);
    let mut argocd_secret = secret("argocd-secret", &[], &[]);
    argocd_secret.data = Some(
        [(
            "server.secretkey".to_owned(),
            k8s_openapi::ByteString(CANARY.as_bytes().to_vec()),
        )]
        .into(),
    );
    argocd_secret.string_data = None;
    hub.create(&PostParams::default(), &argocd_secret)
        .await
        .unwrap();
    // A control-plane secret sent to nobody, with the same value.
    let mut cp_hidden = argocd_secret.clone();
    cp_hidden.metadata.name = Some("cp-hidden".to_owned());
    hub.create(&PostParams::default(), &cp_hidden)
        .await
        .unwrap();
    // cluster1's own copy is hidden from cluster2 too.
    let one = relay_api(&stack, &relay, "cluster1").await;
    one.create(&PostParams::default(), &opted_in("one-repo"))
        .await
        .unwrap();
    relay.wait_cached("argocd-secret").await;
    relay.wait_cached("cp-hidden").await;
    relay.wait_cached("one-repo").await;
    let before = hub.get("argocd-secret").await.unwrap();

    let peer = Peer::cluster(&stack, &relay, "cluster2", H1);
    let path = |name: &str| format!("/api/v1/namespaces/argocd/secrets/{name}");
    let get = peer
        .send(&request("GET", &path("cp-hidden"), &[], b""))
        .await
        .unwrap();
    assert_eq!(get.code, 404);
    let get_status = get.status();
    let exfiltrate = r#"[{"op":"add","path":"/metadata/labels","value":{}},{"op":"copy","from":"/data/server.secretkey","path":"/metadata/labels/secret-relay.io~1owner"}]"#.to_owned();
    let right_guess =
        format!(r#"[{{"op":"test","path":"/data/server.secretkey","value":"{key}"}}]"#);
    let wrong_guess = r#"[{"op":"test","path":"/data/server.secretkey","value":"d3Jvbmc="}]"#;
    let json_patch = ("Content-Type", "application/json-patch+json");
    let merge = ("Content-Type", "application/merge-patch+json");
    let strategic = ("Content-Type", "application/strategic-merge-patch+json");
    let apply = ("Content-Type", "application/apply-patch+yaml");
    let json = ("Content-Type", "application/json");
    // Every verb on `name` (its encoded form `encoded` too).
    // (method, path, content type, body)
    type Attempt<'a> = (&'a str, String, (&'a str, &'a str), Vec<u8>);
    let attempts = |name: &str, encoded: &str| -> Vec<Attempt> {
        vec![
            (
                "PATCH",
                path(name),
                json_patch,
                exfiltrate.clone().into_bytes(),
            ),
            (
                "PATCH",
                path(name),
                json_patch,
                right_guess.clone().into_bytes(),
            ),
            (
                "PATCH",
                path(name),
                json_patch,
                wrong_guess.as_bytes().to_vec(),
            ),
            (
                "PATCH",
                path(name),
                merge,
                br#"{"metadata":{"labels":{"x":"y"}}}"#.to_vec(),
            ),
            (
                "PATCH",
                path(name),
                strategic,
                br#"{"metadata":{"labels":{"$patch":"replace"}}}"#.to_vec(),
            ),
            (
                "PATCH",
                path(name),
                apply,
                format!(r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"{name}"}}}}"#)
                    .into_bytes(),
            ),
            (
                "PUT",
                path(name),
                json,
                serde_json::to_vec(&opted_in(name)).unwrap(),
            ),
            ("DELETE", path(name), json, Vec::new()),
            // The name as the API server reads it, percent-encoded.
            (
                "PATCH",
                path(encoded),
                json_patch,
                exfiltrate.clone().into_bytes(),
            ),
            ("DELETE", path(encoded), json, Vec::new()),
        ]
    };
    let answers = async |name: &str, encoded: &str| {
        let mut out = Vec::new();
        for (method, target, content_type, body) in attempts(name, encoded) {
            let answer = peer
                .send(&request(method, &target, &[content_type], &body))
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&answer.body).into_owned();
            for leak in [CANARY, key.as_str(), "cluster1", "cluster.cluster1"] {
                assert!(
                    !text.contains(leak),
                    "{method} {target} leaked {leak}: {text}"
                );
            }
            let status = answer.status();
            out.push((
                format!("{method} {target}"),
                answer.code,
                status["reason"].clone(),
            ));
        }
        out
    };
    // A hidden copy: exactly GET's answer for every verb.
    for (name, encoded) in [("cp-hidden", "cp%2Dhidden"), ("one-repo", "one%2drepo")] {
        for (what, code, reason) in answers(name, encoded).await {
            assert_eq!(code, 404, "{what}");
            assert_eq!(reason, get_status["reason"], "{what}");
        }
    }
    // A blocked name is refused by name, before any lookup: the same answer whether
    // the Secret exists (argocd-secret) or not (argocd-initial-admin-secret).
    let exists = answers("argocd-secret", "argocd%2Dsecret").await;
    let absent = answers(
        "argocd-initial-admin-secret",
        "argocd%2Dinitial-admin-secret",
    )
    .await;
    for ((what, code, reason), (_, absent_code, absent_reason)) in exists.iter().zip(&absent) {
        assert_eq!((code, reason), (absent_code, absent_reason), "{what}");
        assert!(*code == 403 || *code == 404, "{what}: {code}");
    }
    // A create of a hidden name says only that it is taken.
    let answer = peer
        .send(&request(
            "POST",
            "/api/v1/namespaces/argocd/secrets",
            &[json],
            &serde_json::to_vec(&opted_in("one-repo")).unwrap(),
        ))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert_eq!(answer.code, 403, "{text}");
    assert!(text.contains("name-taken"), "{text}");
    assert!(!text.contains("cluster1"), "{text}");

    // A name encoded twice is refused before any lookup, as kube-apiserver refuses
    // it (it never decodes a name again): alike whether `argocd-secret` exists or
    // not. A `?` or `#` decoded from the path is part of the name the relay judges
    // and the API server reads: no such Secret, for every verb, as for GET.
    let merge_body = br#"{"metadata":{"labels":{"x":"y"}}}"#.to_vec();
    for (encoded, code) in [
        ("%2561rgocd-secret", 400),
        ("%2561rgocd-initial-admin-secret", 400),
        ("cp-hidden%3FdryRun%3DAll", 404),
        ("one-repo%3Fx%3Dy", 404),
        ("cp-hidden%23x", 404),
    ] {
        for (method, content_type, body) in [
            ("GET", json, Vec::new()),
            ("PATCH", json_patch, exfiltrate.clone().into_bytes()),
            ("PATCH", merge, merge_body.clone()),
            ("DELETE", json, Vec::new()),
        ] {
            let answer = peer
                .send(&request(method, &path(encoded), &[content_type], &body))
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&answer.body).into_owned();
            assert_eq!(answer.code, code, "{method} {encoded}: {text}");
            for leak in [CANARY, key.as_str(), "cluster1", "cluster.cluster1"] {
                assert!(
                    !text.contains(leak),
                    "{method} {encoded} leaked {leak}: {text}"
                );
            }
        }
    }

    // Nothing changed on the hub, and the value is in no log line or metric.
    let after = hub.get("argocd-secret").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert!(hub.get("one-repo").await.is_ok());
    let logs = secret_relay_testkit::captured_logs();
    assert!(!logs.contains(CANARY) && !logs.contains(&key));
    let metrics = relay.started.admin.encode_metrics();
    assert!(!metrics.contains(CANARY) && !metrics.contains(&key));
    assert!(!metrics.contains("argocd-secret"));
    relay.stop().await;
}

// ---- the control plane's headers ---------------------------------------------

on_both!(an_answer_through_the_relay_carries_no_header_of_the_control_plane);

/// The API server's answer to a cluster's write reaches the cluster with only the
/// headers that say how to read it. An admission warning names the registered
/// clusters nearest to a misspelt target: the hub's own client sees it (the
/// witness), a cluster must not, nor the audit id or the hub's flow-control
/// identifiers.
async fn an_answer_through_the_relay_carries_no_header_of_the_control_plane(flavor: Flavor) {
    let stack = stack(flavor, &["cluster1", "cluster2"], &[]).await;
    let relay = stack.start_relay().await;
    let mut copy = opted_in("typo-target");
    copy.metadata.annotations = Some(
        [(
            "akuity.io/managed-secret-allowed-clusters".to_owned(),
            "clustr2".to_owned(),
        )]
        .into(),
    );
    let body = serde_json::to_vec(&copy).unwrap();
    // The witness: the hub's admin, in a dry run, is warned, with cluster2 named.
    let direct = stack
        .cluster
        .client()
        .await
        .send(
            http::Request::post("/api/v1/namespaces/argocd/secrets?dryRun=All")
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    let warnings: Vec<String> = direct
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("cluster2")),
        "{warnings:?}"
    );

    let peer = Peer::cluster(&stack, &relay, "cluster1", H1);
    let answer = peer
        .send(&request(
            "POST",
            "/api/v1/namespaces/argocd/secrets",
            &[("Content-Type", "application/json")],
            &body,
        ))
        .await
        .unwrap();
    let head = answer.head.to_ascii_lowercase();
    assert_eq!(answer.code, 201, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    for kept_back in ["warning:", "audit-id:", "x-kubernetes-pf-", "cluster2"] {
        assert!(!head.contains(kept_back), "{kept_back} in {head}");
    }
    relay.stop().await;
}

on_both!(the_openapi_a_cluster_reads_is_the_core_groups_alone);

/// The OpenAPI documents a cluster's kubectl reads through the relay describe the
/// core group alone: the hub's other API groups (and so its custom resources) are
/// not listed, and OpenAPI v2, one document of every group, describes no kind.
async fn the_openapi_a_cluster_reads_is_the_core_groups_alone(flavor: Flavor) {
    let stack = stack(flavor, &["cluster1"], &[]).await;
    let relay = stack.start_relay().await;
    // The witness: the hub itself lists more than the core group.
    let hub_index: serde_json::Value = stack
        .cluster
        .client()
        .await
        .request(http::Request::get("/openapi/v3").body(Vec::new()).unwrap())
        .await
        .unwrap();
    let hub_paths = hub_index["paths"].as_object().unwrap();
    assert!(hub_paths.len() > 1, "{hub_paths:?}");
    assert!(hub_paths.keys().any(|p| p.starts_with("apis/")));

    let peer = Peer::cluster(&stack, &relay, "cluster1", H1);
    let index = peer
        .send(&request(
            "GET",
            "/openapi/v3",
            &[("Accept", "application/json")],
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(index.code, 200, "{}", String::from_utf8_lossy(&index.body));
    let index: serde_json::Value = serde_json::from_slice(&index.body).unwrap();
    let paths: Vec<&String> = index["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths, ["api/v1"]);
    // The core group's own document is the API server's.
    let link = index["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    let core = peer
        .send(&request(
            "GET",
            link,
            &[("Accept", "application/json")],
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(core.code, 200);
    assert!(String::from_utf8_lossy(&core.body).contains("io.k8s.api.core.v1.Secret"));
    // OpenAPI v2 describes no kind, in either form.
    let v2 = peer
        .send(&request(
            "GET",
            "/openapi/v2",
            &[("Accept", "application/json")],
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(v2.code, 200);
    let v2: serde_json::Value = serde_json::from_slice(&v2.body).unwrap();
    assert_eq!(v2["definitions"], serde_json::json!({}));
    assert_eq!(v2["paths"], serde_json::json!({}));
    let v2_pb = peer
        .send(&request(
            "GET",
            "/openapi/v2",
            &[(
                "Accept",
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            )],
            b"",
        ))
        .await
        .unwrap();
    assert_eq!((v2_pb.code, v2_pb.body.len()), (200, 0));
    // The media type kube-apiserver answers with, which Go's mime parser reads.
    assert!(
        v2_pb
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
        "{}",
        v2_pb.head
    );
    relay.stop().await;
}

// ---- a watch's DELETED event ------------------------------------------------

on_both!(an_untargeted_and_rotated_secret_leaves_a_watch_with_its_old_value);

/// The value a rotation writes: it must never reach the cluster the same update
/// took the Secret away from.
const ROTATED: &str = "attack-rotated-7e2b";

/// Watch events up to and including the ADDED of `marker`, each checked never to
/// carry [`ROTATED`].
async fn leave_events<S>(stream: &mut S, marker: &str) -> Vec<WatchEvent<Secret>>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<Secret>>> + Unpin,
{
    within(&format!("the ADDED of {marker}"), async {
        let mut seen = Vec::new();
        while let Some(event) = stream.next().await {
            let event = event.unwrap();
            if let WatchEvent::Error(e) = &event {
                panic!("the watch ended with an error before {marker}: {e:?}");
            }
            let (WatchEvent::Added(s) | WatchEvent::Modified(s) | WatchEvent::Deleted(s)) = &event
            else {
                seen.push(event);
                continue;
            };
            assert!(
                s.data
                    .iter()
                    .flat_map(|d| d.values())
                    .all(|v| !String::from_utf8_lossy(&v.0).contains(ROTATED)),
                "the rotated value reached the cluster it was taken from: {:?}",
                s.metadata.name
            );
            let done = matches!(&event, WatchEvent::Added(_))
                && s.metadata.name.as_deref() == Some(marker);
            seen.push(event);
            if done {
                return seen;
            }
        }
        panic!("the watch ended before {marker}");
    })
    .await
}

/// An admin takes a managed secret away from one cluster and rotates its value in
/// the same update: that cluster's open watch gets a DELETED event with the value it
/// last saw (at the update's resourceVersion), never the new one, and a watch resumed
/// from before the update gets the same out of the relay's history. The cluster
/// still a target gets the new value.
async fn an_untargeted_and_rotated_secret_leaves_a_watch_with_its_old_value(flavor: Flavor) {
    const TO: &str = "akuity.io/managed-secret-allowed-clusters";
    let stack = stack(flavor, &["leave-a", "leave-b"], &[]).await;
    let relay = stack.start_relay().await;
    let hub = hub(&stack).await;
    let a = relay_api(&stack, &relay, "leave-a").await;
    let b = relay_api(&stack, &relay, "leave-b").await;
    hub.create(
        &PostParams::default(),
        &secret("leave-rotated", &[], &[(TO, "leave-a,leave-b")]),
    )
    .await
    .unwrap();
    relay.wait_cached("leave-rotated").await;
    let listed = a.list(&ListParams::default()).await.unwrap();
    let from = listed.metadata.resource_version.clone().unwrap();
    let mine = listed
        .items
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("leave-rotated"))
        .expect("leave-a lists leave-rotated");
    assert_eq!(secret_relay_testkit::password(mine), CANARY.as_bytes());
    let params = kube::api::WatchParams::default().timeout(290);
    let mut open = a.watch(&params, &from).await.unwrap().boxed();

    let updated = hub
        .patch(
            "leave-rotated",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {TO: "leave-b"}},
                "stringData": {"password": ROTATED},
            })),
        )
        .await
        .unwrap();
    assert_eq!(secret_relay_testkit::password(&updated), ROTATED.as_bytes());
    // Something after it, for the watches to read up to.
    hub.create(
        &PostParams::default(),
        &secret("leave-marker", &[], &[(TO, "leave-a")]),
    )
    .await
    .unwrap();

    let live = leave_events(&mut open, "leave-marker").await;
    let resumed = {
        let mut resumed = a.watch(&params, &from).await.unwrap().boxed();
        leave_events(&mut resumed, "leave-marker").await
    };
    for (how, events) in [("live", &live), ("resumed", &resumed)] {
        let about: Vec<&WatchEvent<Secret>> = events
            .iter()
            .filter(|e| match e {
                WatchEvent::Added(s) | WatchEvent::Modified(s) | WatchEvent::Deleted(s) => {
                    s.metadata.name.as_deref() == Some("leave-rotated")
                }
                _ => false,
            })
            .collect();
        let [WatchEvent::Deleted(gone)] = about[..] else {
            panic!("{how}: expected one DELETED of leave-rotated, got {about:?}");
        };
        assert_eq!(
            secret_relay_testkit::password(gone),
            CANARY.as_bytes(),
            "{how}: the last value leave-a saw"
        );
        assert_eq!(
            gone.metadata.annotations.as_ref().unwrap()[TO],
            "leave-a,leave-b",
            "{how}: the last state leave-a saw"
        );
        assert_eq!(
            gone.metadata.resource_version, updated.metadata.resource_version,
            "{how}: at the update's resourceVersion"
        );
    }
    // The cluster still a target gets the rotation.
    let theirs = b.get("leave-rotated").await.unwrap();
    assert_eq!(secret_relay_testkit::password(&theirs), ROTATED.as_bytes());
    relay.stop().await;
}

// ---- the webhook judges the object as the API server stores it --------------

on_both!(a_cluster_never_puts_uncarried_metadata_on_a_hub_copy);

/// What an agent strips before it pushes (tool ownership: Argo CD's tracking label
/// and annotation, Helm's, the policy's `stripMetadata`), and finalizers or owner
/// references a copy did not have, never reach a hub copy from a cluster: the relay
/// refuses them, and so does the webhook for a write straight to the API server as
/// the cluster (a relay that judged otherwise). A compliant copy passes both ways,
/// and a finalizer the copy already had may stay.
async fn a_cluster_never_puts_uncarried_metadata_on_a_hub_copy(flavor: Flavor) {
    let c = "cluster1";
    let prefix = match flavor {
        Flavor::Sandbox => "carry",
        Flavor::Real | Flavor::Outside => "carry-real",
    };
    let name = |n: &str| format!("{prefix}-{n}");
    let stack = Stack::start(
        flavor,
        StackOptions {
            policy: format!(
                "{}stripMetadata:\n  labels: [\"example.com/team\"]\n",
                policy(&[c])
            ),
            certificates: vec![c.to_owned()],
            ..StackOptions::default()
        },
    )
    .await;
    let relay = stack.start_relay().await;
    let through_relay = relay_api(&stack, &relay, c).await;
    let direct = as_cluster(&stack, c).await;
    let pp = PostParams::default();
    let with_meta = |n: &str, label: Option<(&str, &str)>, annotation: Option<(&str, &str)>| {
        let mut labels = vec![OPT_IN, REPO_CREDS];
        labels.extend(label);
        secret(
            &name(n),
            &labels,
            &annotation.into_iter().collect::<Vec<_>>(),
        )
    };
    let finalized = |n: &str| {
        let mut s = opted_in(&name(n));
        s.metadata.finalizers = Some(vec!["example.com/keep".to_owned()]);
        s
    };
    let owned = |n: &str| {
        let mut s = opted_in(&name(n));
        s.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "argoproj.io/v1alpha1".to_owned(),
                kind: "Application".to_owned(),
                name: "guestbook".to_owned(),
                uid: "0b7d7a52-0000-4000-8000-000000000001".to_owned(),
                ..Default::default()
            },
        ]);
        s
    };
    let writes = |way: &str| {
        vec![
            (
                "Argo CD's tracking label",
                with_meta(
                    &format!("{way}-instance"),
                    Some(("app.kubernetes.io/instance", "argocd")),
                    None,
                ),
            ),
            (
                "Argo CD's tracking annotation",
                with_meta(
                    &format!("{way}-tracking"),
                    None,
                    Some(("argocd.argoproj.io/tracking-id", "argocd:/Secret:argocd/x")),
                ),
            ),
            (
                "Helm's release annotation",
                with_meta(
                    &format!("{way}-helm"),
                    None,
                    Some(("meta.helm.sh/release-name", "x")),
                ),
            ),
            (
                "a label the policy strips",
                with_meta(
                    &format!("{way}-team"),
                    Some(("example.com/team", "a")),
                    None,
                ),
            ),
            ("a finalizer", finalized(&format!("{way}-finalizer"))),
            ("an owner reference", owned(&format!("{way}-owner"))),
        ]
    };
    for (what, s) in writes("relay") {
        denied(
            through_relay.create(&pp, &s).await,
            403,
            "uncarried-metadata",
        );
        assert!(
            hub(&stack)
                .await
                .get_opt(&s.metadata.name.unwrap())
                .await
                .unwrap()
                .is_none(),
            "{what} through the relay"
        );
    }
    for (what, s) in writes("direct") {
        refused_by_webhook(what, direct.create(&pp, &s).await, "uncarried-metadata");
    }
    // A compliant copy passes both ways; a finalizer the copy did not have is refused
    // on an update too.
    through_relay
        .create(&pp, &opted_in(&name("relay-ok")))
        .await
        .unwrap();
    let ok = name("direct-ok");
    direct.create(&pp, &opted_in(&ok)).await.unwrap();
    refused_by_webhook(
        "an update adding a finalizer",
        direct
            .patch(
                &ok,
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"metadata": {"finalizers": ["example.com/keep"]}}),
                ),
            )
            .await,
        "uncarried-metadata",
    );
    relay.stop().await;
}

on_both!(a_clusters_write_is_judged_on_the_object_the_api_server_stores);

/// Two Secret Sources for `cluster`: by secret type, or by team for a Secret without
/// any type. A copy with both labels is admitted; dropping either one leaves it
/// admitted by the other Source, dropping both by none.
fn two_source_policy(cluster: &str) -> String {
    format!(
        "clusters:\n  - name: {cluster}\n    labels: {{ env: prod }}\nsecretSources:\n  - clusterSelector: env=prod\n    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)\n  - clusterSelector: env=prod\n    labelSelector: team=platform,!argocd.argoproj.io/secret-type\n"
    )
}

/// Asserts the webhook refused a write with `rule`, as the API server wraps it.
fn refused_by_webhook<T>(what: &str, result: kube::Result<T>, rule: &str) {
    match result {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{what}: {s:?}");
            assert!(
                s.message.contains("denied the request") && s.message.contains(rule),
                "{what}: {}",
                s.message
            );
            assert!(!s.message.contains(CANARY), "{what}: {}", s.message);
        }
        Err(e) => panic!("{what}: expected the webhook to refuse it with {rule}, got {e}"),
        Ok(_) => panic!("{what}: expected the webhook to refuse it with {rule}, but it passed"),
    }
}

/// Straight to the API server as a cluster (what the relay forwards, or what a relay
/// that judged a request otherwise would send): every write whose stored result
/// differs from what a reader of the request sees. Server-side apply that drops a
/// label or takes one over with force, strategic `$patch: replace` and `$patch:
/// delete`, merge and JSON patches removing a label, two merge patches at once, and a
/// body with two `labels` keys. The webhook judges the object as it will be stored, so
/// each write that would store a copy without the opt-in label, or one no Secret
/// Source admits, is refused; compliant writes pass.
async fn a_clusters_write_is_judged_on_the_object_the_api_server_stores(flavor: Flavor) {
    capture_logs();
    let c = "cluster1";
    // Names unique to this test and flavor: log lines are matched by them.
    let prefix = match flavor {
        Flavor::Sandbox => "stored",
        Flavor::Real | Flavor::Outside => "stored-real",
    };
    let name = |n: &str| format!("{prefix}-{n}");
    let stack = Stack::start(
        flavor,
        StackOptions {
            policy: two_source_policy(c),
            ..StackOptions::default()
        },
    )
    .await;
    let hub = hub(&stack).await;
    let client = cluster_client(&stack, c).await;
    let direct: Api<Secret> = Api::namespaced(client.clone(), "argocd");
    let pp = PostParams::default();
    let patch = PatchParams::default();
    let (opt_in, secret_type) = (OPT_IN.0, REPO_CREDS.0);
    let unchanged = |before: Secret| {
        let hub = hub.clone();
        async move {
            let name = before.metadata.name.clone().unwrap();
            let now = hub.get(&name).await.unwrap();
            assert_eq!(
                now.metadata.resource_version, before.metadata.resource_version,
                "{name} changed"
            );
        }
    };

    // Compliant writes pass, stamped with the owner.
    let ok = name("ok");
    let created = direct.create(&pp, &opted_in(&ok)).await.unwrap();
    assert_eq!(
        label(&created, "secret-relay.io/owner"),
        Some("cluster.cluster1")
    );
    direct
        .patch(
            &ok,
            &patch,
            &Patch::Merge(serde_json::json!({"stringData": {"password": "rotated"}})),
        )
        .await
        .unwrap();
    direct
        .create(
            &pp,
            &secret(&name("team"), &[OPT_IN, ("team", "platform")], &[]),
        )
        .await
        .unwrap();
    // A new copy no Secret Source admits, or without the opt-in label.
    refused_by_webhook(
        "a create no Secret Source admits",
        direct
            .create(
                &pp,
                &secret(&name("helm"), &[OPT_IN, (secret_type, "helm")], &[]),
            )
            .await,
        "no-matching-source",
    );
    refused_by_webhook(
        "a create without the opt-in label",
        direct
            .create(&pp, &secret(&name("quiet"), &[REPO_CREDS], &[]))
            .await,
        "not-opted-in",
    );

    // Server-side apply: a field its manager no longer applies is removed, and a
    // field taken over with force gets the new manager's value.
    let ssa = name("ssa");
    let applied = |labels: serde_json::Value| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": ssa, "labels": labels},
            "stringData": {"password": CANARY},
        })
    };
    let agent = PatchParams::apply("secret-relay-agent");
    direct
        .patch(
            &ssa,
            &agent,
            &Patch::Apply(applied(
                serde_json::json!({opt_in: "true", secret_type: "repo-creds"}),
            )),
        )
        .await
        .unwrap();
    let before = hub.get(&ssa).await.unwrap();
    refused_by_webhook(
        "server-side apply that omits the label the Secret Source needs",
        direct
            .patch(
                &ssa,
                &agent,
                &Patch::Apply(applied(serde_json::json!({opt_in: "true"}))),
            )
            .await,
        "no-matching-source",
    );
    let force = PatchParams::apply("attacker").force();
    refused_by_webhook(
        "server-side apply that takes the type label over",
        direct
            .patch(
                &ssa,
                &force,
                &Patch::Apply(serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": ssa, "labels": {secret_type: "helm"}},
                })),
            )
            .await,
        "no-matching-source",
    );
    refused_by_webhook(
        "server-side apply that takes the opt-in label over",
        direct
            .patch(
                &ssa,
                &force,
                &Patch::Apply(serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": ssa, "labels": {opt_in: "false"}},
                })),
            )
            .await,
        "not-opted-in",
    );
    unchanged(before).await;
    logged(&["reviewed", &ssa, "denied", "no-matching-source"]).await;
    logged(&["reviewed", &ssa, "denied", "not-opted-in"]).await;

    // Strategic merge directives, merge and JSON patches.
    let patched = name("patched");
    direct.create(&pp, &opted_in(&patched)).await.unwrap();
    let before = hub.get(&patched).await.unwrap();
    refused_by_webhook(
        "a strategic merge patch replacing the labels",
        direct
            .patch(
                &patched,
                &patch,
                &Patch::Strategic(
                    serde_json::json!({"metadata": {"labels": {"$patch": "replace", opt_in: "true"}}}),
                ),
            )
            .await,
        "no-matching-source",
    );
    refused_by_webhook(
        "a strategic merge patch deleting the labels",
        direct
            .patch(
                &patched,
                &patch,
                &Patch::Strategic(
                    serde_json::json!({"metadata": {"labels": {"$patch": "delete"}}}),
                ),
            )
            .await,
        "not-opted-in",
    );
    refused_by_webhook(
        "a merge patch removing the type label",
        direct
            .patch(
                &patched,
                &patch,
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {secret_type: null}}})),
            )
            .await,
        "no-matching-source",
    );
    refused_by_webhook(
        "a merge patch removing the opt-in label",
        direct
            .patch(
                &patched,
                &patch,
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {opt_in: null}}})),
            )
            .await,
        "not-opted-in",
    );
    refused_by_webhook(
        "a JSON patch removing the type label",
        direct
            .patch(
                &patched,
                &patch,
                &Patch::<()>::Json(
                    serde_json::from_value(serde_json::json!([
                        {"op": "remove", "path": "/metadata/labels/argocd.argoproj.io~1secret-type"}
                    ]))
                    .unwrap(),
                ),
            )
            .await,
        "no-matching-source",
    );
    unchanged(before).await;

    // Two merge patches at once: each alone leaves a copy one Secret Source admits;
    // the one that lands second is judged on what the first left, and is refused.
    let both = name("both");
    direct
        .create(
            &pp,
            &secret(&both, &[OPT_IN, REPO_CREDS, ("team", "platform")], &[]),
        )
        .await
        .unwrap();
    let drop_team = Patch::Merge(serde_json::json!({"metadata": {"labels": {"team": null}}}));
    let drop_type = Patch::Merge(serde_json::json!({"metadata": {"labels": {secret_type: null}}}));
    let (a, b) = tokio::join!(
        direct.patch(&both, &patch, &drop_team),
        direct.patch(&both, &patch, &drop_type)
    );
    match (a, b) {
        (Ok(_), second @ Err(_)) | (second @ Err(_), Ok(_)) => refused_by_webhook(
            "the second of two concurrent merge patches",
            second,
            "no-matching-source",
        ),
        (a, b) => panic!(
            "expected exactly one of the two patches to pass, got {:?} and {:?}",
            a.map(|_| "passed"),
            b.map(|_| "passed")
        ),
    }
    let stored = hub.get(&both).await.unwrap();
    assert_eq!(label(&stored, opt_in), Some("true"));
    assert!(
        label(&stored, "team").is_some() != label(&stored, secret_type).is_some(),
        "one of the two labels is left: {:?}",
        stored.metadata.labels
    );

    // A body with two `labels` keys, sent as it is. kube-apiserver's Go decoder reads
    // the second object into the map of the first: the stored labels are both, the
    // later winning a key (and it warns "duplicate field"). What it stores is judged.
    let post = |body: String| {
        http::Request::post("/api/v1/namespaces/argocd/secrets")
            .header("content-type", "application/json")
            .body(body.into_bytes())
            .unwrap()
    };
    let twice = |name: &str, first: serde_json::Value, second: serde_json::Value| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"{name}","labels":{first},"labels":{second}}},"stringData":{{"password":"{CANARY}"}}}}"#
        )
    };
    // The later map alone is admitted (by team); with the earlier one's type it is not.
    let dup = name("dup-type-kept");
    refused_by_webhook(
        "two labels maps, the earlier adding a type",
        client
            .request_text(post(twice(
                &dup,
                serde_json::json!({secret_type: "helm"}),
                serde_json::json!({opt_in: "true", "team": "platform"}),
            )))
            .await,
        "no-matching-source",
    );
    assert!(hub.get_opt(&dup).await.unwrap().is_none());
    // The earlier map alone is admitted; the later one's type wins the key.
    let dup = name("dup-type-replaced");
    refused_by_webhook(
        "two labels maps, the later replacing the type",
        client
            .request_text(post(twice(
                &dup,
                serde_json::json!({opt_in: "true", secret_type: "repo-creds"}),
                serde_json::json!({secret_type: "helm"}),
            )))
            .await,
        "no-matching-source",
    );
    assert!(hub.get_opt(&dup).await.unwrap().is_none());
    // Neither map alone would be admitted, the two together are: stored and admitted.
    let dup = name("dup-merged");
    client
        .request_text(post(twice(
            &dup,
            serde_json::json!({secret_type: "repo-creds"}),
            serde_json::json!({opt_in: "true"}),
        )))
        .await
        .unwrap();
    let stored = hub.get(&dup).await.unwrap();
    assert_eq!(label(&stored, opt_in), Some("true"));
    assert_eq!(label(&stored, secret_type), Some("repo-creds"));
    assert_eq!(
        label(&stored, "secret-relay.io/owner"),
        Some("cluster.cluster1")
    );
}
