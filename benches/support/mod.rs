//! What the relay benches share (`relay_fanout`, `relay_scale`): the hub copies, the
//! relay as its own process, one watch per cluster over its own mTLS connection, a
//! change timed to every watch, and the /proc readings of a process (which
//! `benches/sync.rs` takes too).
//!
//! Each bench includes this module with `mod support;`; Cargo does not take a directory
//! without a `main.rs` for a bench of its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use rustls_pki_types::ServerName;
use secret_relay_certs::{Ca, Validity, client_config};
use tokio::sync::mpsc;

pub(crate) const NAMESPACE: &str = "argocd";
pub(crate) const ROUND_KEY: &str = "bench.secret-relay.io/round";

pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Pins every thread of `pid` to `core` (a `taskset` list); false without taskset.
pub(crate) fn pin(pid: u32, core: &str) -> bool {
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

/// A repository-credentials Secret of about 2 KB in [`NAMESPACE`].
pub(crate) fn hub_copy(
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> Secret {
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

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`); 0 when unreadable.
pub(crate) fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU of the whole thread group `pid`, in seconds (10 ms ticks).
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
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

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The policy file: `cluster1` .. `clusterN`, all `env=prod`, and one Secret Source
/// admitting every Secret labelled `team` from them.
pub(crate) fn write_policy(path: &Path, clusters: usize) {
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

/// One client configuration per cluster (`cluster1` ..), each with its own certificate
/// issued by `ca`, offering HTTP/1.1 as kube-rs' watcher does.
pub(crate) fn cluster_tls(ca: &Ca, clusters: usize) -> Vec<Arc<rustls::ClientConfig>> {
    (1..=clusters)
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
        .collect()
}

/// `secret-relay relay` as its own process, killed on drop.
pub(crate) struct RelayProcess {
    child: Child,
    port: u16,
    admin_port: u16,
}

impl RelayProcess {
    /// Starts the relay on core 0 (when `taskset` exists) with the dev stack's files in
    /// `dir` (`relay.crt`, `relay.key`, `ca.crt`, `policy.yaml`) and `kubeconfig`; its
    /// log goes to `dir/<log>`.
    pub(crate) fn spawn(dir: &Path, kubeconfig: &Path, log: &str) -> RelayProcess {
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
            .arg(kubeconfig)
            .arg("--policy-file")
            .arg(dir.join("policy.yaml"))
            .args(["--cluster-watches", "8"])
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join(log))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            );
        RelayProcess {
            child: command.spawn().expect("failed to start the relay"),
            port,
            admin_port,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Waits until `/readyz` answers: the policy loaded and the hub cache synced.
    pub(crate) async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin_port);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
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
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `secret-relay.io/round` from a MODIFIED line of the changed copy.
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

/// Which hub copies (by name) one cluster may see.
pub(crate) type InView = Box<dyn Fn(&str) -> bool + Send>;

/// How the watches start.
#[derive(Clone, Copy)]
pub(crate) enum Start {
    /// A plain watch (`?watch=true`): ready at its `200 OK`.
    Plain,
    /// A streaming list (`sendInitialEvents=true`, as kube-rs' watcher with streaming
    /// lists): ready at the bookmark that ends the initial events, each of which must be
    /// in the cluster's view.
    StreamingList,
}

/// One cluster's watch: reports `(index, Ok(initial ADDED events))` once ready (or
/// the error), then `(round, arrival)` for every line that carries a round marker.
async fn watch(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    index: usize,
    start: Start,
    in_view: Option<InView>,
    ready: mpsc::UnboundedSender<(usize, Result<usize, String>)>,
    arrivals: mpsc::UnboundedSender<(u64, Instant)>,
) {
    let fail = |e: String| {
        let _ = ready.send((index, Err(e)));
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
    let query = match start {
        Start::Plain => "watch=true&allowWatchBookmarks=true",
        Start::StreamingList => {
            "watch=true&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        }
    };
    let req = http::Request::get(format!("/api/v1/namespaces/{NAMESPACE}/secrets?{query}"))
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
    let mut initial = match start {
        Start::Plain => {
            let _ = ready.send((index, Ok(0)));
            None
        }
        Start::StreamingList => Some((0usize, Vec::<String>::new())),
    };
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
            if let Some((added, outside)) = initial.as_mut() {
                let Ok(event) = serde_json::from_slice::<serde_json::Value>(&line) else {
                    return fail("an undecodable initial event".to_owned());
                };
                let meta = &event["object"]["metadata"];
                match event["type"].as_str() {
                    Some("ADDED") => {
                        let name = meta["name"].as_str().unwrap_or_default();
                        *added += 1;
                        if in_view.as_ref().is_some_and(|f| !f(name)) {
                            outside.push(name.to_owned());
                        }
                    }
                    Some("BOOKMARK")
                        if meta["annotations"]["k8s.io/initial-events-end"] == "true" =>
                    {
                        let report = if outside.is_empty() {
                            Ok(*added)
                        } else {
                            Err(format!(
                                "{} initial events outside the view, e.g. {}",
                                outside.len(),
                                outside[0]
                            ))
                        };
                        let _ = ready.send((index, report));
                        initial = None;
                    }
                    _ => {}
                }
            } else if let Some(round) = round_of(&line) {
                let _ = arrivals.send((round, now));
            }
        }
        if buf.len() > 1 << 20 {
            return;
        }
    }
}

/// The open watches: every watch's initial event count by cluster index, and the
/// arrivals of marked changes.
pub(crate) struct Watches {
    pub(crate) initial: Vec<usize>,
    pub(crate) arrivals: mpsc::UnboundedReceiver<(u64, Instant)>,
}

/// Opens one watch per client configuration (cluster `i + 1` for `tls[i]`), at most
/// `in_flight` starting at once, and waits until all are ready. Panics on the first
/// watch that fails.
pub(crate) async fn open_watches(
    addr: SocketAddr,
    tls: &[Arc<rustls::ClientConfig>],
    start: Start,
    mut in_view: impl FnMut(usize) -> Option<InView>,
    in_flight: usize,
) -> Watches {
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (arr_tx, arrivals) = mpsc::unbounded_channel();
    let mut initial = vec![0; tls.len()];
    let mut take = |r: Option<(usize, Result<usize, String>)>| {
        let (i, r) = r.unwrap();
        match r {
            Ok(n) => initial[i] = n,
            Err(e) => panic!("the watch of cluster{} failed to start: {e}", i + 1),
        }
    };
    let mut waiting = 0;
    for (i, config) in tls.iter().enumerate() {
        tokio::spawn(watch(
            addr,
            config.clone(),
            i,
            start,
            in_view(i),
            ready_tx.clone(),
            arr_tx.clone(),
        ));
        waiting += 1;
        if waiting == in_flight {
            take(ready_rx.recv().await);
            waiting -= 1;
        }
    }
    for _ in 0..waiting {
        take(ready_rx.recv().await);
    }
    Watches { initial, arrivals }
}

/// Sets the round marker of hub copy `name` to `round` and returns, in ms, how long
/// each of `watches` watches took from just before the PATCH to its MODIFIED line,
/// sorted. Panics if any watch misses it for 60 s.
pub(crate) async fn change_and_time(
    secrets: &Api<Secret>,
    name: &str,
    round: u64,
    watches: usize,
    arrivals: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
) -> Vec<f64> {
    let patch = serde_json::json!({"metadata": {"annotations": {ROUND_KEY: round.to_string()}}});
    let t0 = Instant::now();
    secrets
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let mut delays = Vec::with_capacity(watches);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while delays.len() < watches {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some((r, at))) if r == round => {
                delays.push(at.duration_since(t0).as_secs_f64() * 1000.0);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(
        delays.len(),
        watches,
        "round {round}: only {} of {watches} watches got the change",
        delays.len()
    );
    delays.sort_by(f64::total_cmp);
    delays
}

/// The delivery figures of a fan-out bench's rounds: p50, p99 and max of each.
#[derive(Default)]
pub(crate) struct Rounds {
    p50s: Vec<f64>,
    p99s: Vec<f64>,
    maxes: Vec<f64>,
}

impl Rounds {
    /// Records one round's `delays` (sorted, ms, one per watch) and prints them.
    pub(crate) fn record(&mut self, round: u64, clusters: usize, delays: &[f64]) {
        let (p50, p99, max) = (
            percentile(delays, 50.0),
            percentile(delays, 99.0),
            percentile(delays, 100.0),
        );
        eprintln!(
            "round {round}: delivered to {clusters} watches: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
        );
        self.p50s.push(p50);
        self.p99s.push(p99);
        self.maxes.push(max);
    }

    /// The worst round's p99, ms.
    pub(crate) fn worst_p99(&self) -> f64 {
        worst(&self.p99s)
    }

    /// The table rows: p50, p99 and max, the median of the rounds and the worst.
    pub(crate) fn print_rows(&self) {
        for (what, v) in [
            (
                "delivery p50 (ms), PATCH sent -> MODIFIED line read",
                &self.p50s,
            ),
            ("delivery p99 (ms)", &self.p99s),
            ("delivery max (ms)", &self.maxes),
        ] {
            println!("| {what} | {:.1} | {:.1} |", median(v.clone()), worst(v));
        }
    }
}

/// The largest of `v` (0 when empty).
pub(crate) fn worst(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// The fan-out goal's line: p99 delivery under 1 s in every round (`worst_p99_ms`
/// is the worst round's p99).
pub(crate) fn print_p99_goal(worst_p99_ms: f64) {
    println!(
        "goal: p99 delivery under 1 s: {}",
        if worst_p99_ms < 1000.0 {
            "met in every round"
        } else {
            "NOT met"
        }
    );
}

/// A relay bench's `main`: the bench process on core 1 (the relay takes core 0),
/// `run` on a tokio runtime. `cargo bench` passes `--bench`; the benches take no
/// arguments.
pub(crate) fn bench_main(run: impl std::future::Future<Output = ()>) {
    if !pin(std::process::id(), "1") {
        eprintln!("taskset is not available: running unpinned");
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run);
}
