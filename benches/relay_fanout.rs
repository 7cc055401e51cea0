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

// The fan-out bench uses a part of what the relay benches share.
#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use secret_relay_testkit::{Flavor, Options, TestCluster};

use support::{
    NAMESPACE, ROUND_KEY, RelayProcess, Rounds, Start, bench_main, change_and_time, cluster_tls,
    cpu_seconds, env_usize, hub_copy, open_watches, print_p99_goal, rss_kib, write_policy,
};

const BROADCAST: &str = "broadcast-repo";

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
    let tls: Vec<Arc<rustls::ClientConfig>> = cluster_tls(ca, clusters);
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
    let mut relay = RelayProcess::spawn(&dir, cluster.kubeconfig(), "relay.log");
    let pid = relay.pid();
    let ready_at = Instant::now();
    relay.wait_ready().await;
    eprintln!(
        "relay ready (cache synced) in {:.1}s",
        ready_at.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_cache = rss_kib(pid, "VmRSS:");

    // One watch per cluster.
    let connect_started = Instant::now();
    let cpu_before_connect = cpu_seconds(pid);
    // At most 64 handshakes in flight.
    let mut watches = open_watches(relay.addr(), &tls, Start::Plain, |_| None, 64).await;
    let arr_rx = &mut watches.arrivals;
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let connect_cpu = cpu_seconds(pid) - cpu_before_connect;
    eprintln!("{clusters} watches open in {connect_secs:.1}s");
    // Let the initial ADDED events drain.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while arr_rx.try_recv().is_ok() {}
    let rss_watches = rss_kib(pid, "VmRSS:");

    // Rounds: one change of the broadcast copy each, timed to every watch.
    let mut figures = Rounds::default();
    let rounds_cpu0 = cpu_seconds(pid);
    for round in 1..=rounds as u64 {
        let delays = change_and_time(&secrets, BROADCAST, round, clusters, arr_rx).await;
        figures.record(round, clusters, &delays);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The relay's CPU over all rounds (the pauses between them included: bookmarks).
    let rounds_cpu = cpu_seconds(pid) - rounds_cpu0;
    let rss_end = rss_kib(pid, "VmRSS:");
    let hwm = rss_kib(pid, "VmHWM:");
    let worst_p99 = figures.worst_p99();

    println!();
    println!(
        "relay fan-out bench: {clusters} clusters with one watch each (own client certificate and TLS connection, HTTP/1.1), {total} hub copies (~2 KB); relay on core 0, sandbox and clients on core 1; {rounds} rounds"
    );
    println!();
    println!("| measure | median of rounds | worst round |");
    println!("|---|---:|---:|");
    figures.print_rows();
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
    print_p99_goal(worst_p99);
    drop(relay);
}

fn main() {
    bench_main(run());
}
