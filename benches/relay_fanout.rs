//! The relay's watch fan-out and memory: one hub change delivered to many connected
//! watches, and the relay's RSS with many clusters and hub copies.
//!
//! Run: `cargo bench --bench relay_fanout` (or through `benches/relay.sh`). Sizes:
//! `FANOUT_CLUSTERS` (1000), `FANOUT_HUB_COPIES` (10000), `FANOUT_ROUNDS` (20).
//! `RELAY_BIN` names the `secret-relay` binary to run (default: the one Cargo builds
//! for this bench).
//!
//! A sandbox API server runs in this process and holds the hub copies: every cluster
//! owns some, the control plane owns one per cluster sent down to that cluster, and one
//! "broadcast" copy goes to every cluster. The relay runs as its own process (the
//! release binary, `secret-relay relay`) on core 0 with the sandbox's admin kubeconfig;
//! this process (sandbox and clients) moves itself to core 1. Each cluster opens one
//! watch with its own client certificate over its own TLS connection (HTTP/1.1, as
//! kube-rs' watcher does). Each round patches the broadcast copy in the sandbox and
//! times, for every watch, from just before the PATCH is sent to the arrival of the
//! MODIFIED line that carries the round's marker: the API server's write, its watch
//! event to the relay, the relay's fan-out and each client's TLS read are all inside.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use rustls_pki_types::ServerName;
use secret_relay_certs::{Validity, client_config};
use secret_relay_testkit::{Flavor, Options, TestCluster};
use tokio::sync::mpsc;

const NAMESPACE: &str = "argocd";
const BROADCAST: &str = "broadcast-repo";
const ROUND_KEY: &str = "bench.secret-relay.io/round";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pin(pid: u32, core: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", core, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn relay_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("RELAY_BIN") {
        return bin.into();
    }
    PathBuf::from(env!("CARGO_BIN_EXE_secret-relay"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A repository-credentials Secret of about 2 KB.
fn hub_copy(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.to_owned());
    s.metadata.namespace = Some(NAMESPACE.to_owned());
    let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    s.metadata.labels = Some(map(labels));
    s.metadata.annotations = Some(map(annotations));
    let data = [
        (
            "url",
            format!("https://git.example.com/platform/deployments-{name}.git"),
        ),
        ("username", "deploy-bot".to_owned()),
        ("password", "x".repeat(40)),
        ("sshPrivateKey", "k".repeat(1100)),
    ];
    s.data = Some(
        data.into_iter()
            .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
            .collect(),
    );
    s.type_ = Some("Opaque".to_owned());
    s
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at index 2.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat: 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

struct RelayProcess {
    child: Child,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Reads `secret-relay.io/round` from a MODIFIED line of the broadcast copy.
fn round_of(line: &[u8]) -> Option<u64> {
    if !line.starts_with(br#"{"type":"MODIFIED""#) {
        return None;
    }
    let needle = format!("\"{ROUND_KEY}\":\"");
    let at = line
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?;
    let rest = &line[at + needle.len()..];
    let end = rest.iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// One cluster's watch: connects, then reports (round, arrival) for every marked line.
async fn watch(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    connected: mpsc::UnboundedSender<Result<(), String>>,
    arrivals: mpsc::UnboundedSender<(u64, Instant)>,
) {
    let fail = |e: String| {
        let _ = connected.send(Err(e));
    };
    let tcp = match tokio::net::TcpStream::connect(addr).await {
        Ok(t) => t,
        Err(e) => return fail(format!("connect: {e}")),
    };
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(tls);
    let name = ServerName::try_from("localhost").unwrap();
    let stream = match connector.connect(name, tcp).await {
        Ok(s) => s,
        Err(e) => return fail(format!("TLS: {e}")),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return fail(format!("HTTP: {e}")),
    };
    tokio::spawn(conn);
    let req = http::Request::get(format!(
        "/api/v1/namespaces/{NAMESPACE}/secrets?watch=true&allowWatchBookmarks=true"
    ))
    .header("host", "localhost")
    .body(Empty::<Bytes>::new())
    .unwrap();
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return fail(format!("request: {e}")),
    };
    if resp.status() != http::StatusCode::OK {
        return fail(format!("status {}", resp.status()));
    }
    let _ = connected.send(Ok(()));
    let mut body = resp.into_body();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(nl + 1);
            if let Some(round) = round_of(&line) {
                let _ = arrivals.send((round, now));
            }
        }
        if buf.len() > 1 << 20 {
            return;
        }
    }
}

async fn wait_ready(admin: u16, relay: &mut RelayProcess) {
    let url = format!("http://127.0.0.1:{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = relay.child.try_wait() {
            panic!("the relay exited: {status}");
        }
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "the relay was not ready in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_policy(path: &Path, clusters: usize) {
    let mut text = String::from("controlPlaneNamespace: argocd\nclusters:\n");
    for i in 1..=clusters {
        text.push_str(&format!(
            "  - name: cluster{i}\n    labels: {{ env: prod, region: r{} }}\n",
            i % 4
        ));
    }
    text.push_str("secretSources:\n  - clusterSelector: env=prod\n    labelSelector: team\n");
    std::fs::write(path, text).unwrap();
}

async fn run() {
    let clusters = env_usize("FANOUT_CLUSTERS", 1000);
    let copies = env_usize("FANOUT_HUB_COPIES", 10_000);
    let rounds = env_usize("FANOUT_ROUNDS", 20);
    let owned_per_cluster = copies.saturating_sub(clusters) / clusters;

    let cluster = TestCluster::start(Flavor::Sandbox, Options::default()).await;
    let admin = cluster.client().await;
    cluster.create_namespace(NAMESPACE).await;
    let dir = cluster.dir().to_owned();

    // PKI: the dev stack's (a CA, the relay's serving certificate as `relay.crt`),
    // and one client certificate per cluster.
    let pki = secret_relay_devstack::Pki::generate(&dir, "relay fan-out bench CA").unwrap();
    pki.issue_relay().unwrap();
    let ca = &pki.ca;
    let tls: Vec<Arc<rustls::ClientConfig>> = (1..=clusters)
        .map(|i| {
            let cert = ca
                .issue_cluster(&format!("cluster{i}"), Validity::default())
                .unwrap();
            client_config(
                ca.cert_pem(),
                Some((&cert.cert_pem, &cert.key_pem)),
                &[b"http/1.1"],
            )
            .unwrap()
        })
        .collect();
    write_policy(&dir.join("policy.yaml"), clusters);

    // The hub copies.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NAMESPACE);
    let started = Instant::now();
    let mut specs: Vec<Secret> = Vec::with_capacity(copies);
    for i in 1..=clusters {
        let owner = format!("cluster.cluster{i}");
        for j in 0..owned_per_cluster {
            specs.push(hub_copy(
                &format!("c{i}-repo-{j}"),
                &[
                    ("team", "platform"),
                    ("akuity.io/secret-sync", "true"),
                    ("secret-relay.io/owner", &owner),
                ],
                &[],
            ));
        }
        // Cluster 1 has the broadcast copy instead, so the total is `copies`.
        if i == 1 {
            continue;
        }
        let to = format!("cluster{i}");
        specs.push(hub_copy(
            &format!("cp-{i}"),
            &[("team", "platform")],
            &[("akuity.io/managed-secret-allowed-clusters", &to)],
        ));
    }
    while specs.len() + 1 < copies {
        let n = specs.len();
        specs.push(hub_copy(
            &format!("extra-{n}"),
            &[("team", "platform")],
            &[],
        ));
    }
    specs.push(hub_copy(
        BROADCAST,
        &[("team", "platform")],
        &[
            (
                "akuity.io/managed-secret-allowed-cluster-selector",
                "env=prod",
            ),
            (ROUND_KEY, "0"),
        ],
    ));
    let total = specs.len();
    futures::stream::iter(specs)
        .map(|s| {
            let secrets = secrets.clone();
            async move {
                secrets.create(&PostParams::default(), &s).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!(
        "created {total} hub copies in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // The relay, as its own process on core 0.
    let port = free_port();
    let admin_port = free_port();
    let bin = relay_bin();
    let mut command = if Command::new("taskset").arg("-V").output().is_ok() {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    command
        .arg("relay")
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
        .arg("--tls-cert")
        .arg(dir.join("relay.crt"))
        .arg("--tls-key")
        .arg(dir.join("relay.key"))
        .arg("--client-ca")
        .arg(dir.join("ca.crt"))
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .arg("--policy-file")
        .arg(dir.join("policy.yaml"))
        .args(["--cluster-watches", "8"])
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join("relay.log"))
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        );
    let mut relay = RelayProcess {
        child: command.spawn().expect("failed to start the relay"),
    };
    let pid = relay.child.id();
    let ready_at = Instant::now();
    wait_ready(admin_port, &mut relay).await;
    eprintln!(
        "relay ready (cache synced) in {:.1}s",
        ready_at.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_cache = rss_kib(pid, "VmRSS:");

    // One watch per cluster.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (conn_tx, mut conn_rx) = mpsc::unbounded_channel();
    let (arr_tx, mut arr_rx) = mpsc::unbounded_channel();
    let connect_started = Instant::now();
    let cpu_before_connect = cpu_seconds(pid);
    let mut waiting = 0;
    for config in &tls {
        tokio::spawn(watch(addr, config.clone(), conn_tx.clone(), arr_tx.clone()));
        waiting += 1;
        // At most 64 handshakes in flight.
        if waiting == 64 {
            conn_rx
                .recv()
                .await
                .unwrap()
                .expect("a watch failed to start");
            waiting -= 1;
        }
    }
    for _ in 0..waiting {
        conn_rx
            .recv()
            .await
            .unwrap()
            .expect("a watch failed to start");
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let connect_cpu = cpu_seconds(pid) - cpu_before_connect;
    eprintln!("{clusters} watches open in {connect_secs:.1}s");
    // Let the initial ADDED events drain.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while arr_rx.try_recv().is_ok() {}
    let rss_watches = rss_kib(pid, "VmRSS:");

    // Rounds: one change of the broadcast copy each, timed to every watch.
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut maxes = Vec::new();
    let rounds_cpu0 = cpu_seconds(pid);
    for round in 1..=rounds as u64 {
        let patch =
            serde_json::json!({"metadata": {"annotations": {ROUND_KEY: round.to_string()}}});
        let t0 = Instant::now();
        secrets
            .patch(BROADCAST, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let mut delays = Vec::with_capacity(clusters);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while delays.len() < clusters {
            match tokio::time::timeout_at(deadline, arr_rx.recv()).await {
                Ok(Some((r, at))) if r == round => {
                    delays.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        assert_eq!(
            delays.len(),
            clusters,
            "round {round}: only {} of {clusters} watches got the change",
            delays.len()
        );
        delays.sort_by(f64::total_cmp);
        let (p50, p99, max) = (
            percentile(&delays, 50.0),
            percentile(&delays, 99.0),
            percentile(&delays, 100.0),
        );
        eprintln!(
            "round {round}: delivered to {clusters} watches: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
        );
        p50s.push(p50);
        p99s.push(p99);
        maxes.push(max);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The relay's CPU over all rounds (the pauses between them included: bookmarks).
    let rounds_cpu = cpu_seconds(pid) - rounds_cpu0;
    let rss_end = rss_kib(pid, "VmRSS:");
    let hwm = rss_kib(pid, "VmHWM:");
    let worst_p99 = p99s.iter().copied().fold(0.0, f64::max);

    println!();
    println!(
        "relay fan-out bench: {clusters} clusters with one watch each (own client certificate and TLS connection, HTTP/1.1), {total} hub copies (~2 KB); relay on core 0, sandbox and clients on core 1; {rounds} rounds"
    );
    println!();
    println!("| measure | median of rounds | worst round |");
    println!("|---|---:|---:|");
    println!(
        "| delivery p50 (ms), PATCH sent -> MODIFIED line read | {:.1} | {:.1} |",
        median(p50s.clone()),
        p50s.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "| delivery p99 (ms) | {:.1} | {:.1} |",
        median(p99s.clone()),
        worst_p99
    );
    println!(
        "| delivery max (ms) | {:.1} | {:.1} |",
        median(maxes.clone()),
        maxes.iter().copied().fold(0.0, f64::max)
    );
    println!();
    println!(
        "relay CPU per change, mean over the rounds: {:.1} ms ({:.1} µs per delivered event)",
        rounds_cpu / rounds as f64 * 1e3,
        rounds_cpu / (rounds * clusters) as f64 * 1e6
    );
    println!(
        "{clusters} mTLS watches opened in {connect_secs:.1} s, {:.0} µs of relay CPU each",
        connect_cpu / clusters as f64 * 1e6
    );
    println!(
        "relay RSS: {} MiB with the cache synced ({total} hub copies, {clusters} clusters, no watch); {} MiB with {clusters} watches open; {} MiB after the rounds; peak {} MiB",
        rss_cache / 1024,
        rss_watches / 1024,
        rss_end / 1024,
        hwm / 1024
    );
    println!(
        "goal: p99 delivery under 1 s: {}",
        if worst_p99 < 1000.0 {
            "met in every round"
        } else {
            "NOT met"
        }
    );
    drop(relay);
}

fn main() {
    // `cargo bench` passes `--bench`; this bench takes no arguments.
    if !pin(std::process::id(), "1") {
        eprintln!("taskset is not available: running unpinned");
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}
