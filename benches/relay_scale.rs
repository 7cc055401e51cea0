//! The relay at fleet scale (issue 24 item 5): 10,000 registered clusters, each with
//! its own client certificate and one watch over its own mTLS connection, and 100,000
//! hub copies. Measures the relay's RSS per hub copy and per open watch, the time to
//! open every watch (each streaming exactly its view), the fan-out of one change to
//! every watch, and the relay's CPU per delivered event.
//!
//! Run: `cargo bench --bench relay_scale`. Sizes: `SCALE_CLUSTERS` (10000),
//! `SCALE_COPIES` (100000), `SCALE_TARGETS` (3: clusters each copy goes down to),
//! `SCALE_ROUNDS` (5), `SCALE_IN_FLIGHT` (64: watches starting at once), `SCALE_NARROW`
//! (200: changes of copies that reach a few clusters). `RELAY_BIN` names the
//! `secret-relay` binary (default: the one Cargo builds for this bench). The bench
//! process holds one socket per cluster and raises its own soft open-file limit with
//! `prlimit` when it is too low; the relay inherits it. Past the hard limit that needs
//! CAP_SYS_RESOURCE, so without it run the bench from a shell with a higher hard limit
//! (`ulimit -n 30000`).
//!
//! The hub copies (a sandbox API server in this process): copy `i` sits in slot
//! `i mod clusters`; nine in ten are owned by the slot's cluster (up-synced), one in ten
//! by the control plane (a managed secret), and each goes down to the `SCALE_TARGETS`
//! clusters after the slot by `akuity.io/managed-secret-allowed-clusters`. With the
//! defaults a cluster's view holds 40 copies: its 9, the 30 of the three clusters
//! before it, and one copy annotated `ALL`, the one every round changes.
//!
//! The relay runs as its own process (the release binary, `secret-relay relay`) on
//! core 0, and every figure of RSS and CPU is that process's (`/proc/PID/status`
//! VmRSS, `/proc/PID/stat` utime+stime of the whole thread group); this process
//! (sandbox and clients) moves itself to core 1. RSS per hub copy compares the relay
//! synced on the empty namespace with a relay started on the 100,000 copies (the same
//! policy, a restart's path); RSS per watch compares that relay before and after the
//! watches opened. Each watch is a streaming list (`sendInitialEvents=true`, as
//! kube-rs' watcher with streaming lists), ready at the bookmark that ends its initial
//! events, every one of which is checked against the cluster's view, and their count
//! against the view's size. Each round patches the `ALL` copy and times, for every
//! watch, from just before the PATCH to the arrival of its MODIFIED line; the relay's
//! CPU is read before the PATCH and after the last arrival. Then `SCALE_NARROW` copies
//! that reach only their owner and targets change one after another (the relay's CPU
//! per such change), and the relay idles 10 s with every watch open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The scale bench uses a part of what the relay benches share.
#[allow(dead_code)]
mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use secret_relay_testkit::{Flavor, Options, TestCluster};

use support::{
    InView, NAMESPACE, ROUND_KEY, RelayProcess, Rounds, Start, bench_main, change_and_time,
    cluster_tls, cpu_seconds, env_usize, hub_copy, median, open_watches, percentile,
    print_p99_goal, rss_kib, worst, write_policy,
};

const BROADCAST: &str = "broadcast-all";
const ALLOWED: &str = "akuity.io/managed-secret-allowed-clusters";

/// Where hub copy `i` goes: its slot (a cluster index from 0), whether the control
/// plane owns it, and how many clusters after the slot receive it.
#[derive(Clone, Copy)]
struct Layout {
    clusters: usize,
    targets: usize,
}

impl Layout {
    fn slot(self, i: usize) -> usize {
        i % self.clusters
    }

    /// One copy in ten of every slot is a managed secret of the control plane.
    fn control_plane_owned(self, i: usize) -> bool {
        (i / self.clusters) % 10 == 9
    }

    /// Whether cluster index `c` sees copy `i`: its owner or one of its targets.
    fn visible(self, i: usize, c: usize) -> bool {
        let slot = self.slot(i);
        let ahead = (c + self.clusters - slot) % self.clusters;
        (ahead == 0 && !self.control_plane_owned(i)) || (1..=self.targets).contains(&ahead)
    }

    fn copy(self, i: usize) -> Secret {
        let slot = self.slot(i);
        let to: Vec<String> = (1..=self.targets)
            .map(|k| format!("cluster{}", (slot + k) % self.clusters + 1))
            .collect();
        let to = to.join(",");
        let owner = format!("cluster.cluster{}", slot + 1);
        let labels: &[(&str, &str)] = if self.control_plane_owned(i) {
            &[("team", "platform")]
        } else {
            &[
                ("team", "platform"),
                ("akuity.io/secret-sync", "true"),
                ("secret-relay.io/owner", &owner),
            ]
        };
        hub_copy(&format!("repo-{i}"), labels, &[(ALLOWED, &to)])
    }
}

/// `/proc/self/limits`' open-file limit: (soft, hard).
fn nofile() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default();
    let mut v = line.split_whitespace().filter_map(|w| {
        w.parse::<u64>()
            .ok()
            .or((w == "unlimited").then_some(u64::MAX))
    });
    (v.next().unwrap_or(0), v.next().unwrap_or(0))
}

/// Raises this process's open-file limit to `need` if it is lower (`prlimit`, from
/// util-linux: the workspace forbids the unsafe `setrlimit` call and has no rlimit
/// crate). The relay, started later, inherits it.
fn raise_nofile(need: u64) {
    let (soft, hard) = nofile();
    if soft >= need {
        return;
    }
    let limit = format!("--nofile={need}:{}", hard.max(need));
    let _ = Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string(), &limit])
        .status();
    let (soft, _) = nofile();
    assert!(
        soft >= need,
        "the open-file limit is {soft}, {need} needed: run under `ulimit -n {need}`"
    );
    eprintln!("raised the open-file limit to {soft}");
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn run() {
    let clusters = env_usize("SCALE_CLUSTERS", 10_000).max(4);
    let copies = env_usize("SCALE_COPIES", 100_000).max(2);
    let targets = env_usize("SCALE_TARGETS", 3).clamp(1, clusters - 1);
    let rounds = env_usize("SCALE_ROUNDS", 5).max(1);
    let in_flight = env_usize("SCALE_IN_FLIGHT", 64).max(1);
    let narrow = env_usize("SCALE_NARROW", 200).max(1);
    let layout = Layout { clusters, targets };
    raise_nofile(clusters as u64 + 4096);
    let load_start = loadavg();
    eprintln!("load average at the start: {load_start}");

    let cluster = TestCluster::start(Flavor::Sandbox, Options::default()).await;
    let admin = cluster.client().await;
    cluster.create_namespace(NAMESPACE).await;
    let dir = cluster.dir().to_owned();

    // PKI: the dev stack's (a CA, the relay's serving certificate as `relay.crt`),
    // and one client certificate per cluster.
    let started = Instant::now();
    let pki = secret_relay_devstack::Pki::generate(&dir, "relay scale bench CA").unwrap();
    pki.issue_relay().unwrap();
    let tls: Vec<Arc<rustls::ClientConfig>> = cluster_tls(&pki.ca, clusters);
    write_policy(&dir.join("policy.yaml"), clusters);
    eprintln!(
        "issued {clusters} client certificates in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // The relay on the empty namespace: the baseline of RSS per hub copy.
    let rss_empty = {
        let mut relay = RelayProcess::spawn(&dir, cluster.kubeconfig(), "relay-empty.log");
        relay.wait_ready().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_kib(relay.pid(), "VmRSS:")
    };

    // The hub copies; the last is the one sent to ALL.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NAMESPACE);
    let started = Instant::now();
    futures::stream::iter(0..copies)
        .map(|i| {
            let secrets = secrets.clone();
            let copy = if i + 1 == copies {
                hub_copy(
                    BROADCAST,
                    &[("team", "platform")],
                    &[(ALLOWED, "ALL"), (ROUND_KEY, "0")],
                )
            } else {
                layout.copy(i)
            };
            async move {
                secrets.create(&PostParams::default(), &copy).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!(
        "created {copies} hub copies in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // The size of each cluster's view.
    let mut expected = vec![1usize; clusters];
    for i in 0..copies - 1 {
        expected[layout.slot(i)] += usize::from(!layout.control_plane_owned(i));
        for k in 1..=targets {
            expected[(layout.slot(i) + k) % clusters] += 1;
        }
    }

    // The relay on the hub copies, as after a restart.
    let mut relay = RelayProcess::spawn(&dir, cluster.kubeconfig(), "relay.log");
    let pid = relay.pid();
    let started = Instant::now();
    relay.wait_ready().await;
    let ready_secs = started.elapsed().as_secs_f64();
    let ready_cpu = cpu_seconds(pid);
    eprintln!("relay ready (cache synced) in {ready_secs:.1}s");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_synced = rss_kib(pid, "VmRSS:");
    let hub_watches_before = cluster.sandbox().map(|s| s.watches_started());

    // One watch per cluster, each a streaming list of its view.
    let started = Instant::now();
    let cpu0 = cpu_seconds(pid);
    let in_view = |c: usize| -> Option<InView> {
        Some(Box::new(move |name: &str| {
            name == BROADCAST
                || name
                    .strip_prefix("repo-")
                    .and_then(|i| i.parse().ok())
                    .is_some_and(|i| layout.visible(i, c))
        }))
    };
    let mut watches =
        open_watches(relay.addr(), &tls, Start::StreamingList, in_view, in_flight).await;
    let open_secs = started.elapsed().as_secs_f64();
    let open_cpu = cpu_seconds(pid) - cpu0;
    let wrong: Vec<usize> = (0..clusters)
        .filter(|&c| watches.initial[c] != expected[c])
        .collect();
    assert!(
        wrong.is_empty(),
        "{} watches streamed a view of the wrong size, e.g. cluster{}: {} events, {} expected",
        wrong.len(),
        wrong[0] + 1,
        watches.initial[wrong[0]],
        expected[wrong[0]]
    );
    let view_events: usize = watches.initial.iter().sum();
    eprintln!("{clusters} watches open in {open_secs:.1}s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    while watches.arrivals.try_recv().is_ok() {}
    let rss_watches = rss_kib(pid, "VmRSS:");
    let fds = open_fds(pid);
    let hub_watches_after = cluster.sandbox().map(|s| s.watches_started());

    // Rounds: one change of the ALL copy each, timed to every watch.
    let load_rounds = loadavg();
    let mut figures = Rounds::default();
    let mut fanout_cpu = 0.0;
    for round in 1..=rounds as u64 {
        let cpu0 = cpu_seconds(pid);
        let delays =
            change_and_time(&secrets, BROADCAST, round, clusters, &mut watches.arrivals).await;
        fanout_cpu += cpu_seconds(pid) - cpu0;
        figures.record(round, clusters, &delays);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Narrow changes: copies that reach their owner and targets only; every watch of
    // the relay still hears of each one (one broadcast channel) and drops it.
    let step = ((copies - 1) / narrow).max(1);
    let cpu0 = cpu_seconds(pid);
    let started = Instant::now();
    let mut narrow_max = Vec::new();
    for k in 0..narrow.min(copies - 1) {
        let i = k * step;
        let receivers = targets + usize::from(!layout.control_plane_owned(i));
        let delays = change_and_time(
            &secrets,
            &format!("repo-{i}"),
            1_000_000 + k as u64,
            receivers,
            &mut watches.arrivals,
        )
        .await;
        narrow_max.push(percentile(&delays, 100.0));
    }
    let narrow_secs = started.elapsed().as_secs_f64();
    let narrow_cpu = cpu_seconds(pid) - cpu0;
    // Idle: the watches open, nothing changes.
    let cpu0 = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = (cpu_seconds(pid) - cpu0) / 10.0;
    let rss_end = rss_kib(pid, "VmRSS:");
    let hwm = rss_kib(pid, "VmHWM:");
    let load_end = loadavg();

    println!();
    println!(
        "relay scale bench: {clusters} clusters (own client certificate, one streaming-list watch over its own TLS connection, HTTP/1.1), {copies} hub copies (~2 KB, each sent to {targets} clusters, one to ALL), views of {} to {} copies; relay on core 0, sandbox and clients on core 1; {rounds} rounds",
        expected.iter().min().unwrap(),
        expected.iter().max().unwrap()
    );
    println!(
        "load average (1, 5, 15 min): start {load_start}; before the rounds {load_rounds}; end {load_end}"
    );
    println!();
    println!("| relay process (RSS from /proc/PID/status) | figure |");
    println!("|---|---:|");
    println!(
        "| RSS, cache synced on the empty namespace, {clusters} clusters in the policy | {:.0} MiB |",
        mib(rss_empty)
    );
    println!(
        "| RSS, cache synced on {copies} hub copies (ready {ready_secs:.1} s after start, {ready_cpu:.1} s of CPU) | {:.0} MiB |",
        mib(rss_synced)
    );
    println!(
        "| RSS per hub copy | {:.2} KiB |",
        rss_synced.saturating_sub(rss_empty) as f64 / copies as f64
    );
    println!(
        "| RSS with {clusters} watches open | {:.0} MiB |",
        mib(rss_watches)
    );
    println!(
        "| RSS per open watch (its TLS connection included) | {:.1} KiB |",
        rss_watches.saturating_sub(rss_synced) as f64 / clusters as f64
    );
    println!(
        "| RSS after the rounds; peak (VmHWM) | {:.0} MiB; {:.0} MiB |",
        mib(rss_end),
        mib(hwm)
    );
    println!("| open file descriptors with the watches open | {fds} |");
    if let (Some(before), Some(after)) = (hub_watches_before, hub_watches_after) {
        println!(
            "| watches the hub API server started while {clusters} cluster watches opened | {} |",
            after - before
        );
    }
    println!();
    println!(
        "{clusters} watches opened in {open_secs:.1} s ({in_flight} starting at once; {view_events} initial events, every one in its cluster's view), {:.0} µs of relay CPU each",
        open_cpu / clusters as f64 * 1e6
    );
    println!();
    println!("| fan-out of one change to {clusters} watches | median of rounds | worst round |");
    println!("|---|---:|---:|");
    figures.print_rows();
    println!();
    println!(
        "relay CPU per change, PATCH to last arrival: {:.1} ms ({:.1} µs per delivered event)",
        fanout_cpu / rounds as f64 * 1e3,
        fanout_cpu / (rounds * clusters) as f64 * 1e6
    );
    narrow_max.sort_by(f64::total_cmp);
    println!(
        "{} narrow changes (each to its {targets} targets and its owner) one after another in {narrow_secs:.1} s: relay CPU {:.2} ms per change; slowest delivery: median {:.1} ms, max {:.1} ms",
        narrow_max.len(),
        narrow_cpu / narrow_max.len() as f64 * 1e3,
        median(narrow_max.clone()),
        worst(&narrow_max)
    );
    println!(
        "relay CPU idle with {clusters} watches open: {:.1} ms per second",
        idle_cpu * 1e3
    );
    println!(
        "bench process (sandbox and clients): RSS {:.0} MiB, peak {:.0} MiB",
        mib(rss_kib(std::process::id(), "VmRSS:")),
        mib(rss_kib(std::process::id(), "VmHWM:"))
    );
    print_p99_goal(figures.worst_p99());
    drop(relay);
}

fn main() {
    bench_main(run());
}
