//! Sync latency on real control planes: from a Secret written in a managed cluster
//! to its hub copy in the control plane, and from there to the down copy on another
//! cluster, beside the API servers' own write-to-watch latency measured in the same
//! run; and the catch-up time after a policy change admits many Secrets at once,
//! with the CPU each process spent on it (from `/proc`), beside the floor: as many
//! plain creates into the hub's kube-apiserver, in a namespace no webhook judges.
//!
//! `cargo bench --bench sync` (env: `SYNC_BENCH_SECRETS`, default 1000;
//! `SYNC_BENCH_CATCHUP`, default 10000; `SYNC_BENCH_FLAVOR=sandbox` for sandboxes;
//! `SYNC_BENCH_PPROF=DIR` also takes Go CPU profiles, `SYNC_BENCH_PPROF_SECONDS` long
//! (default 5), for `go tool pprof`: of the hub's kube-apiserver during the catch-up
//! and during the floor (`DIR/catchup.pb.gz`, `DIR/floor.pb.gz`), and of cluster1's,
//! which records the agent's Events, during the catch-up
//! (`DIR/catchup-cluster1.pb.gz`)).

#![allow(clippy::unwrap_used)] // a bench binary: a failure is a panic with its cause

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use secret_relay_testkit::{Flavor, Options, RelayHandle, Stack, StackOptions, TestCluster};

// The relay benches' helpers; this bench takes the /proc reading and env_usize.
#[allow(dead_code)]
mod support;

use support::{cpu_seconds, env_usize};

const POLICY: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
  - name: cluster2
    labels: { env: staging }
secretSources:
  - clusterSelector: env=prod
    labelSelector: bench=up
";

fn secret(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Secret {
    secret_relay_testkit::secret(name, labels, annotations, name)
}

/// Records when each name is first seen by a watch on `api`.
fn arrivals(api: Api<Secret>) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Some(Ok(s)) = stream.next().await {
            let name = s.metadata.name.clone().unwrap_or_default();
            record
                .lock()
                .unwrap()
                .entry(name)
                .or_insert_with(Instant::now);
        }
    });
    seen
}

/// Starts a Go CPU profile of `cluster`'s kube-apiserver (its `/debug/pprof/profile`,
/// as the admin), written to `DIR/{name}.pb.gz` when `SYNC_BENCH_PPROF=DIR` is set.
async fn profile(cluster: &TestCluster, name: &'static str) -> Option<tokio::task::JoinHandle<()>> {
    let dir = std::path::PathBuf::from(std::env::var_os("SYNC_BENCH_PPROF")?);
    let seconds = env_usize("SYNC_BENCH_PPROF_SECONDS", 5);
    let client = cluster.client().await;
    Some(tokio::spawn(async move {
        use http_body_util::BodyExt as _;
        let request = http::Request::get(format!("/debug/pprof/profile?seconds={seconds}"))
            .body(kube::client::Body::empty())
            .unwrap();
        let answer = client.send(request).await.unwrap();
        assert!(answer.status().is_success(), "pprof: {}", answer.status());
        let bytes = answer.into_body().collect().await.unwrap().to_bytes();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.pb.gz"));
        std::fs::write(&path, &bytes).unwrap();
        eprintln!(
            "profile of a kube-apiserver ({seconds} s): {}",
            path.display()
        );
    }))
}

async fn wait_all(seen: &Arc<Mutex<HashMap<String, Instant>>>, names: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if names.iter().all(|n| seen.lock().unwrap().contains_key(n)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every secret arrived within 10 minutes"
        );
        // A bench's poll of its own recorder: the watch tasks fill it.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The pid of a real control plane's `component` (its `pids` file).
fn pid_of(cluster: &TestCluster, component: &str) -> u32 {
    let pids = std::fs::read_to_string(cluster.dir().join("pids")).unwrap();
    pids.lines()
        .find_map(|l| {
            let (pid, name) = l.split_once(' ')?;
            (name.trim() == component).then(|| pid.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {component} in {}", cluster.dir().display()))
}

/// CPU meters of the processes a catch-up runs in: the hub's and cluster1's
/// kube-apiservers, and this process (the relay, the webhook and both agents).
struct Meters {
    pids: Vec<(&'static str, u32)>,
}

impl Meters {
    fn of(w: &World) -> Meters {
        Meters {
            pids: vec![
                (
                    "hub kube-apiserver",
                    pid_of(&w.stack.cluster, "kube-apiserver"),
                ),
                ("cluster1 kube-apiserver", pid_of(&w.c1, "kube-apiserver")),
                ("hub etcd", pid_of(&w.stack.cluster, "etcd")),
                (
                    "relay, webhook and agents (this process)",
                    std::process::id(),
                ),
            ],
        }
    }

    /// Each process's CPU so far, in seconds.
    fn read(&self) -> Vec<f64> {
        self.pids.iter().map(|(_, pid)| cpu_seconds(*pid)).collect()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

struct World {
    stack: Stack,
    _relay: RelayHandle,
    c1: TestCluster,
    c2: TestCluster,
    agent1: Arc<secret_relay_agent::Agent>,
}

async fn agent(
    stack: &Stack,
    relay: &RelayHandle,
    cluster: &TestCluster,
    name: &str,
) -> Arc<secret_relay_agent::Agent> {
    stack
        .start_agent(
            name,
            cluster,
            relay.started.addr,
            Duration::from_secs(300),
            relay.shutdown.child_token(),
        )
        .await
}

async fn world(flavor: Flavor) -> World {
    let stack = Stack::start(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let relay = stack
        .start_relay_with(secret_relay_proxy::Limits {
            rate_per_second: 1.0e6,
            burst: 1.0e6,
            // A catch-up of SYNC_BENCH_CATCHUP copies from one cluster.
            max_copies_per_cluster: usize::MAX,
            max_bytes_per_cluster: usize::MAX,
            ..secret_relay_proxy::Limits::default()
        })
        .await;
    let c1 = TestCluster::start(flavor, Options::default()).await;
    let c2 = TestCluster::start(flavor, Options::default()).await;
    let agent1 = agent(&stack, &relay, &c1, "cluster1").await;
    agent(&stack, &relay, &c2, "cluster2").await;
    World {
        stack,
        _relay: relay,
        c1,
        c2,
        agent1,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("SYNC_BENCH_SECRETS", 1000);
    let catchup = env_usize("SYNC_BENCH_CATCHUP", 10_000);
    let flavor = match std::env::var("SYNC_BENCH_FLAVOR").as_deref() {
        Ok("sandbox") => Flavor::Sandbox,
        _ => Flavor::Real,
    };
    println!(
        "command: cargo bench --bench sync (SYNC_BENCH_SECRETS={n}, SYNC_BENCH_CATCHUP={catchup}, {flavor:?})"
    );
    let w = world(flavor).await;
    let c1: Api<Secret> = Api::namespaced(w.c1.client().await, "akuity");
    let hub: Api<Secret> = Api::namespaced(w.stack.cluster.client().await, "argocd");
    let c2: Api<Secret> = Api::namespaced(w.c2.client().await, "akuity");

    // Baseline: the API servers' own write-to-watch latency, on the same servers.
    let local_seen = arrivals(c1.clone());
    let mut baseline = Vec::new();
    let mut baseline_names = Vec::new();
    for i in 0..n.min(500) {
        let name = format!("baseline-{i}");
        let t0 = Instant::now();
        c1.create(&PostParams::default(), &secret(&name, &[], &[]))
            .await
            .unwrap();
        baseline_names.push((name, t0));
    }
    wait_all(
        &local_seen,
        &baseline_names
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>(),
    )
    .await;
    for (name, t0) in &baseline_names {
        let at = local_seen.lock().unwrap()[name];
        baseline.push(at.duration_since(*t0).as_secs_f64() * 1000.0);
    }

    // Up and down: cluster1 -> hub -> cluster2, paced so this measures latency.
    let hub_seen = arrivals(hub.clone());
    let c2_seen = arrivals(c2.clone());
    let mut sent = Vec::new();
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    for i in 0..n {
        pace.tick().await;
        let name = format!("sync-{i}");
        let s = secret(
            &name,
            &[("akuity.io/secret-sync", "true"), ("bench", "up")],
            &[("akuity.io/managed-secret-allowed-clusters", "cluster2")],
        );
        let t0 = Instant::now();
        c1.create(&PostParams::default(), &s).await.unwrap();
        sent.push((name, t0));
    }
    let names: Vec<String> = sent.iter().map(|(n, _)| n.clone()).collect();
    wait_all(&hub_seen, &names).await;
    wait_all(&c2_seen, &names).await;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for (name, t0) in &sent {
        let at_hub = hub_seen.lock().unwrap()[name];
        let at_c2 = c2_seen.lock().unwrap()[name];
        up.push(at_hub.duration_since(*t0).as_secs_f64() * 1000.0);
        down.push(at_c2.duration_since(at_hub).as_secs_f64() * 1000.0);
    }
    let (b50, b99) = summary(baseline);
    let (u50, u99) = summary(up);
    let (d50, d99) = summary(down);
    println!("\n| path | p50 ms | p99 ms |\n|---|---:|---:|");
    println!(
        "| API server write -> its own watch (baseline, {} secrets) | {b50:.2} | {b99:.2} |",
        n.min(500)
    );
    println!("| cluster1 write -> hub copy in argocd ({n}) | {u50:.2} | {u99:.2} |");
    println!("| hub copy -> down copy on cluster2 ({n}) | {d50:.2} | {d99:.2} |");
    println!(
        "| up, on top of the baseline | {:.2} | {:.2} |",
        u50 - b50,
        u99 - b99
    );
    println!(
        "| down, on top of the baseline | {:.2} | {:.2} |",
        d50 - b50,
        d99 - b99
    );

    // Catch-up: Secrets no source admits yet, then one policy change admits them all.
    let mut late = Vec::new();
    for i in 0..catchup {
        let name = format!("late-{i}");
        c1.create(
            &PostParams::default(),
            &secret(
                &name,
                &[("akuity.io/secret-sync", "true"), ("bench", "late")],
                &[],
            ),
        )
        .await
        .unwrap();
        late.push(name);
    }
    let policy = format!("{POLICY}  - clusterSelector: env=prod\n    labelSelector: bench=late\n");
    // The agent has taken its denials first, so the change is what syncs them.
    if let Some(last) = late.last() {
        let mut rx = w.agent1.subscribe();
        while w.agent1.status(last, "up").map(|(s, _)| s) != Some("denied") {
            rx.changed().await.unwrap();
        }
    }
    let real = flavor == Flavor::Real;
    let meters = real.then(|| Meters::of(&w));
    // The profiles' clients are made before the clock and the meters start.
    let profiling = [
        profile(&w.stack.cluster, "catchup").await,
        profile(&w.c1, "catchup-cluster1").await,
    ];
    let before = meters.as_ref().map(Meters::read);
    let t0 = Instant::now();
    w.stack.set_policy(&policy).await;
    wait_all(&hub_seen, &late).await;
    let took = t0.elapsed();
    let spent = meters.as_ref().map(Meters::read);
    for p in profiling.into_iter().flatten() {
        p.await.unwrap();
    }
    println!(
        "\ncatch-up: {catchup} Secrets admitted by one policy change were all hub copies after {:.2} s",
        took.as_secs_f64()
    );

    // The floor, on the same machine in the same run: as many creates of the same
    // Secrets straight into the hub's kube-apiserver, in a namespace no webhook
    // judges and no relay watches, as many in flight as the agent keeps, timed to
    // their arrival on a watch like the catch-up (which this bench's watch of
    // argocd also costs the hub).
    w.stack.cluster.create_namespace("floor").await;
    let floor: Api<Secret> = Api::namespaced(w.stack.cluster.client().await, "floor");
    let floor_seen = arrivals(floor.clone());
    let floor_names: Vec<String> = (0..catchup).map(|i| format!("late-{i}")).collect();
    let profiling = profile(&w.stack.cluster, "floor").await;
    let floor_before = meters.as_ref().map(Meters::read);
    let t0 = Instant::now();
    futures::stream::iter(0..catchup)
        .for_each_concurrent(secret_relay_agent::CONCURRENCY, |i| {
            let floor = floor.clone();
            async move {
                let s = secret(&format!("late-{i}"), &[("bench", "late")], &[]);
                floor.create(&PostParams::default(), &s).await.unwrap();
            }
        })
        .await;
    wait_all(&floor_seen, &floor_names).await;
    let floor_took = t0.elapsed();
    let floor_spent = meters.as_ref().map(Meters::read);
    if let Some(p) = profiling {
        p.await.unwrap();
    }
    println!(
        "floor: {catchup} creates straight into the hub's kube-apiserver without webhooks, {} in flight: {:.2} s (catch-up / floor = {:.2})",
        secret_relay_agent::CONCURRENCY,
        floor_took.as_secs_f64(),
        took.as_secs_f64() / floor_took.as_secs_f64()
    );
    let (Some(meters), Some(before), Some(spent), Some(floor_before), Some(floor_spent)) =
        (meters, before, spent, floor_before, floor_spent)
    else {
        return;
    };
    let per = |a: f64, b: f64| (a - b) * 1e6 / catchup as f64;
    println!(
        "\n| CPU per Secret, µs | catch-up | floor (plain create) | catch-up / floor |\n|---|---:|---:|---:|"
    );
    for (i, (name, _)) in meters.pids.iter().enumerate() {
        let (c, f) = (
            per(spent[i], before[i]),
            per(floor_spent[i], floor_before[i]),
        );
        let ratio = if f >= 1.0 {
            format!("{:.2}", c / f)
        } else {
            "-".to_owned()
        };
        println!("| {name} | {c:.0} | {f:.0} | {ratio} |");
    }
}
