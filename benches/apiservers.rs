//! The same kube-rs operations on the sandbox and on a real kube-apiserver with etcd,
//! measured in one run: latency of a Secret get, create, replace (PUT) and merge patch,
//! one request at a time, and watch fan-out: N watches on a namespace, then one create,
//! timed until the first and until every watch has seen it. Medians and p99 per op, and
//! the ratio real/sandbox. Context for the sync-latency figures, not a target.
//!
//! Run: `cargo bench --bench apiservers`. Settings (environment): APISERVERS_BENCH_ROUNDS
//! (default 5), APISERVERS_BENCH_OPS (sequential ops of each kind per round and server,
//! default 500), APISERVERS_BENCH_WATCHERS (default 100), APISERVERS_BENCH_WATCH_SAMPLES
//! (creates timed per round and server, default 100). The servers alternate which goes first
//! in each round, so drift on the shared machine falls on both. With
//! SECRET_RELAY_SKIP_REAL_CONTROL_PLANE=1 only the sandbox runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use secret_relay_testkit::{Flavor, Options, TestCluster};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const NAMESPACE: &str = "bench";
const WATCH_NAMESPACE: &str = "bench-watch";
/// Rows of the table, in order; the keys of [`Target::samples`].
const OPS: [&str; 6] = [
    "get",
    "create",
    "replace (PUT)",
    "merge patch",
    "watch: create -> first watcher",
    "watch: create -> all watchers",
];

#[derive(Clone, Copy)]
struct Settings {
    rounds: usize,
    ops: usize,
    watchers: usize,
    watch_samples: usize,
}

/// One API server under test, its clients, its running watches and the latencies seen.
struct Target {
    name: &'static str,
    // Kept alive for the run: dropping it stops the server.
    _cluster: TestCluster,
    api: Api<Secret>,
    watch_api: Api<Secret>,
    seen: mpsc::UnboundedReceiver<(String, Instant)>,
    watchers: Vec<JoinHandle<()>>,
    samples: BTreeMap<&'static str, Vec<Duration>>,
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn secret(name: &str, value: &str) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.to_owned());
    s.data = Some(
        [
            (
                "url".to_owned(),
                ByteString(b"https://git.example.com/repo".to_vec()),
            ),
            ("password".to_owned(), ByteString(value.as_bytes().to_vec())),
        ]
        .into(),
    );
    s
}

/// The value at quantile `q` (nearest rank) of unsorted samples, in milliseconds.
fn quantile_ms(samples: &[Duration], q: f64) -> f64 {
    let mut v: Vec<Duration> = samples.to_vec();
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1].as_secs_f64() * 1e3
}

impl Target {
    async fn start(flavor: Flavor, settings: &Settings) -> Target {
        let cluster = TestCluster::start(flavor, Options::default()).await;
        let client: Client = cluster.client().await;
        cluster.create_namespace(NAMESPACE).await;
        cluster.create_namespace(WATCH_NAMESPACE).await;
        let api = Api::namespaced(client.clone(), NAMESPACE);
        // The watches get their own client, so their connections are not in the pool
        // the timed requests draw from.
        let watch_api: Api<Secret> = Api::namespaced(cluster.client().await, WATCH_NAMESPACE);

        // Every watch starts at the same resourceVersion, so none misses a create made
        // while the others are still being opened.
        let rv = watch_api
            .list_metadata(&ListParams::default().limit(1))
            .await
            .expect("list for the watch resourceVersion")
            .metadata
            .resource_version
            .expect("list resourceVersion");
        let (tx, seen) = mpsc::unbounded_channel();
        let mut watchers = Vec::with_capacity(settings.watchers);
        for _ in 0..settings.watchers {
            let mut stream = watch_api
                .watch(&WatchParams::default().timeout(290), &rv)
                .await
                .expect("open watch")
                .boxed();
            let tx = tx.clone();
            watchers.push(tokio::spawn(async move {
                while let Some(event) = stream.try_next().await.expect("watch event") {
                    match event {
                        WatchEvent::Added(s) => {
                            let _ = tx.send((s.metadata.name.unwrap_or_default(), Instant::now()));
                        }
                        WatchEvent::Error(e) => panic!("watch error: {e:?}"),
                        _ => {}
                    }
                }
            }));
        }
        Target {
            name: match flavor {
                Flavor::Sandbox => "sandbox",
                Flavor::Real => "real",
                Flavor::Outside => "outside",
            },
            _cluster: cluster,
            api,
            watch_api,
            seen,
            watchers,
            samples: BTreeMap::new(),
        }
    }

    /// One round: `ops` of each single-request kind, then `watch_samples` fan-outs. A round
    /// with `record == false` only warms up connections and the servers' caches.
    async fn round(&mut self, tag: &str, settings: &Settings, record: bool) {
        let mut times: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
        let names: Vec<String> = (0..settings.ops).map(|i| format!("{tag}-{i}")).collect();

        let mut created = Vec::with_capacity(names.len());
        for name in &names {
            let start = Instant::now();
            let s = self
                .api
                .create(&PostParams::default(), &secret(name, "v1"))
                .await
                .expect("create");
            times.entry(OPS[1]).or_default().push(start.elapsed());
            created.push(s);
        }
        for name in &names {
            let start = Instant::now();
            self.api.get(name).await.expect("get");
            times.entry(OPS[0]).or_default().push(start.elapsed());
        }
        for mut s in created {
            // Carries the resourceVersion from the create: an optimistic-concurrency update.
            s.data = secret("", "v2").data;
            let name = s.metadata.name.clone().expect("created name");
            let start = Instant::now();
            self.api
                .replace(&name, &PostParams::default(), &s)
                .await
                .expect("replace");
            times.entry(OPS[2]).or_default().push(start.elapsed());
        }
        let patch = Patch::Merge(serde_json::json!({"data": {"password": "djM="}}));
        for name in &names {
            let start = Instant::now();
            self.api
                .patch(name, &PatchParams::default(), &patch)
                .await
                .expect("merge patch");
            times.entry(OPS[3]).or_default().push(start.elapsed());
        }

        for i in 0..settings.watch_samples {
            let name = format!("{tag}-w{i}");
            let start = Instant::now();
            self.watch_api
                .create(&PostParams::default(), &secret(&name, "v1"))
                .await
                .expect("create for watchers");
            let (first, last) = self.fan_out(&name, settings.watchers).await;
            times
                .entry(OPS[4])
                .or_default()
                .push(first.duration_since(start));
            times
                .entry(OPS[5])
                .or_default()
                .push(last.duration_since(start));
        }

        if record {
            for (op, v) in times {
                self.samples.entry(op).or_default().extend(v);
            }
        }
    }

    /// When the first and the last watcher saw the ADDED event of `name`.
    async fn fan_out(&mut self, name: &str, watchers: usize) -> (Instant, Instant) {
        let mut first = None;
        let mut count = 0;
        let deadline = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                got = self.seen.recv() => {
                    let (seen, at) = got.expect("every watcher ended");
                    // Events of an earlier create can only be late duplicates; skip them.
                    if seen != name {
                        continue;
                    }
                    count += 1;
                    let first = *first.get_or_insert(at);
                    if count == watchers {
                        return (first, at);
                    }
                }
                () = &mut deadline => {
                    panic!("{}: only {count} of {watchers} watchers saw {name} within 30 s", self.name)
                }
            }
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        for w in &self.watchers {
            w.abort();
        }
    }
}

fn main() {
    let settings = Settings {
        rounds: env_or("APISERVERS_BENCH_ROUNDS", 5),
        ops: env_or("APISERVERS_BENCH_OPS", 500),
        watchers: env_or("APISERVERS_BENCH_WATCHERS", 100),
        watch_samples: env_or("APISERVERS_BENCH_WATCH_SAMPLES", 100),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(settings));
}

/// The 1, 5 and 15 minute load averages: how busy the shared machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

async fn run(settings: Settings) {
    let started = Instant::now();
    let load_before = load_average();
    let mut targets = Vec::new();
    // The real control plane first: it takes seconds to start, and the sandbox's idle
    // tasks should not overlap its start.
    if !Flavor::Real.skipped("benches/apiservers") {
        let t = Instant::now();
        targets.push(Target::start(Flavor::Real, &settings).await);
        eprintln!(
            "real control plane up with {} watches in {:.1} s",
            settings.watchers,
            t.elapsed().as_secs_f64()
        );
    }
    targets.insert(0, Target::start(Flavor::Sandbox, &settings).await);
    let real_version = match targets.get(1) {
        Some(real) => {
            let v = real
                .api
                .clone()
                .into_client()
                .apiserver_version()
                .await
                .expect("/version");
            v.git_version
        }
        None => "skipped".to_owned(),
    };

    let warmup = Settings {
        ops: settings.ops.min(20),
        watch_samples: settings.watch_samples.min(5),
        ..settings
    };
    for t in &mut targets {
        t.round("warm", &warmup, false).await;
    }
    for round in 0..settings.rounds {
        // Alternate which server goes first.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for i in order {
            targets[i]
                .round(&format!("r{round}"), &settings, true)
                .await;
        }
        eprintln!(
            "round {}/{} done at {:.1} s",
            round + 1,
            settings.rounds,
            started.elapsed().as_secs_f64()
        );
    }

    let args: Vec<String> = std::env::args().collect();
    println!();
    println!("command: {}", args.join(" "));
    println!(
        "settings: {} rounds x {} sequential ops of each kind per server (+ a warm-up round); \
         {} watches, {} timed creates per round; real kube-apiserver {real_version}",
        settings.rounds, settings.ops, settings.watchers, settings.watch_samples
    );
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "op (ms)", "sbx p50", "sbx p99", "real p50", "real p99", "ratio p50", "ratio p99", "n"
    );
    for op in OPS {
        let sandbox = &targets[0].samples[op];
        let (s50, s99) = (quantile_ms(sandbox, 0.5), quantile_ms(sandbox, 0.99));
        match targets.get(1) {
            Some(real) => {
                let real = &real.samples[op];
                let (r50, r99) = (quantile_ms(real, 0.5), quantile_ms(real, 0.99));
                println!(
                    "{op:<32} {s50:>9.3} {s99:>9.3} {r50:>9.3} {r99:>9.3} {:>9.1} {:>9.1} {:>7}",
                    r50 / s50,
                    r99 / s99,
                    sandbox.len()
                );
            }
            None => println!(
                "{op:<32} {s50:>9.3} {s99:>9.3} {:>9} {:>9} {:>9} {:>9} {:>7}",
                "-",
                "-",
                "-",
                "-",
                sandbox.len()
            ),
        }
    }
    println!(
        "whole run: {:.1} s; load average before {load_before}, after {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}
