//! One cluster's worst requests against another cluster's List: how much the
//! heaviest bodies the relay accepts, sent as fast as one cluster may, delay the
//! List of a cluster that does nothing wrong.
//!
//! Run: `cargo bench --bench relay_worst_request`. `WORST_SECONDS` (10) is the length
//! of each phase, `WORST_SENDERS` (4) the attacker's concurrent requests.
//!
//! A sandbox control plane and the webhook run on one runtime (1 worker), the relay
//! on its own (2 workers), as separate processes would be. The victim, cluster1, runs on a runtime of its own on its
//! own thread: it lists its view (20 hub copies sent down to it) 50 times a second,
//! half its rate limit, and times each List. The attacker, cluster2, runs on a third runtime: `WORST_SENDERS`
//! loops that each PUT its own hub copy with the worst body the body decoder
//! accepts (3 MiB of `managedFields[].fieldsV1` holding ~230,000 empty objects: the
//! costliest accepted body of `proxy/benches/body_decode.rs`) and, between those,
//! a 3 MiB body nested past the depth limit (refused). Phase one is the List alone
//! (the baseline), phase two the List under attack, in the same run. The figure is
//! the List's p50, p99 and max in each phase and their ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use secret_relay_testkit::{Flavor, OPT_IN, REPO_CREDS, Stack, StackOptions};

const POLICY: &str = "clusters:\n  - name: cluster1\n    labels: { env: prod }\n  - name: cluster2\n    labels: { env: prod }\nsecretSources:\n  - clusterSelector: env=prod\n    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)\n";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn client_from(path: &std::path::Path) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}

/// The heaviest Secret body the relay's decoder accepts, about 3 MiB.
fn worst_body(name: &str, rv: &str) -> Vec<u8> {
    let mut fields = String::with_capacity(3 * 1024 * 1024);
    fields.push('{');
    let mut i = 0u64;
    while fields.len() < 3 * 1024 * 1024 - 4096 {
        if i > 0 {
            fields.push(',');
        }
        fields.push_str(&format!("\"f:{i:x}\":{{}}"));
        i += 1;
    }
    fields.push('}');
    format!(
        r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"{name}","namespace":"argocd","resourceVersion":"{rv}","labels":{{"akuity.io/secret-sync":"true","argocd.argoproj.io/secret-type":"repo-creds"}},"managedFields":[{{"manager":"m","operation":"Update","apiVersion":"v1","fieldsType":"FieldsV1","fieldsV1":{fields}}}]}},"data":{{"v":"eA=="}}}}"#
    )
    .into_bytes()
}

/// A 3 MiB body nested far past the depth limit: refused.
fn deep_body() -> Vec<u8> {
    let depth = 3 * 1024 * 1024 / 2;
    let mut out = Vec::with_capacity(depth * 2);
    out.extend(std::iter::repeat_n(b'[', depth));
    out.extend(std::iter::repeat_n(b']', depth));
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Lists cluster1's view back to back for `length`, on its own runtime.
fn victim(kubeconfig: std::path::PathBuf, length: Duration) -> Vec<Duration> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let api: Api<Secret> = Api::namespaced(client_from(&kubeconfig).await, "argocd");
            let mut times = Vec::new();
            let end = Instant::now() + length;
            // 50 Lists a second, half the cluster's rate limit: the victim never
            // waits on its own limit.
            let mut pace = tokio::time::interval(Duration::from_millis(20));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < end {
                pace.tick().await;
                let started = Instant::now();
                let list = api.list(&ListParams::default()).await.unwrap();
                assert_eq!(list.items.len(), 20);
                times.push(started.elapsed());
            }
            times
        })
    })
    .join()
    .unwrap()
}

fn main() {
    let seconds = env_u64("WORST_SECONDS", 10);
    let senders = env_u64("WORST_SENDERS", 4);
    let length = Duration::from_secs(seconds);
    // The control plane (sandbox and webhook) on one runtime, the relay on its own
    // two workers, as separate processes would be.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let relay_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stack = rt.block_on(async {
        Stack::start(
            Flavor::Sandbox,
            StackOptions {
                policy: POLICY.to_owned(),
                ..StackOptions::default()
            },
        )
        .await
    });
    let relay = relay_rt.block_on(stack.start_relay());
    rt.block_on(async {
        let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
        for i in 0..20 {
            let mut s = secret_relay_testkit::secret(
                &format!("to-cluster1-{i}"),
                &[],
                &[("akuity.io/managed-secret-allowed-clusters", "cluster1")],
                "value",
            );
            s.metadata.namespace = Some("argocd".to_owned());
            hub.create(&PostParams::default(), &s).await.unwrap();
        }
        let own = secret_relay_testkit::secret("attacker-own", &[OPT_IN, REPO_CREDS], &[], "x");
        stack
            .relay_client(&relay, "cluster2")
            .await
            .pipe(|c| Api::<Secret>::namespaced(c, "argocd"))
            .create(&PostParams::default(), &own)
            .await
            .unwrap();
        for i in 0..20 {
            relay.wait_cached(&format!("to-cluster1-{i}")).await;
        }
    });
    let victim_config = stack.relay_kubeconfig(&relay, "cluster1");
    let attacker_config = stack.relay_kubeconfig(&relay, "cluster2");

    let baseline = victim(victim_config.clone(), length);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = client_from(&attacker_config).await;
                let deep = bytes::Bytes::from(deep_body());
                let mut loops = Vec::new();
                for _ in 0..senders {
                    let client = client.clone();
                    let stop = stop.clone();
                    let deep = deep.clone();
                    loops.push(tokio::spawn(async move {
                        let api: Api<Secret> = Api::namespaced(client.clone(), "argocd");
                        let (mut sent, mut refused) = (0u64, 0u64);
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let rv = api
                                .get("attacker-own")
                                .await
                                .ok()
                                .and_then(|s| s.metadata.resource_version)
                                .unwrap_or_default();
                            for body in [
                                bytes::Bytes::from(worst_body("attacker-own", &rv)),
                                deep.clone(),
                            ] {
                                let req = http::Request::put(
                                    "/api/v1/namespaces/argocd/secrets/attacker-own",
                                )
                                .header("content-type", "application/json")
                                .body(body.to_vec())
                                .unwrap();
                                match client.request_text(req).await {
                                    Ok(_) => sent += 1,
                                    Err(_) => refused += 1,
                                }
                            }
                        }
                        (sent, refused)
                    }));
                }
                let mut total = (0, 0);
                for l in loops {
                    let (s, r) = l.await.unwrap();
                    total.0 += s;
                    total.1 += r;
                }
                total
            })
        })
    };
    // Let the attack reach its pace before timing the victim.
    std::thread::sleep(Duration::from_secs(1));
    let attacked = victim(victim_config, length);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (accepted, refused) = attacker.join().unwrap();

    let summary = |mut times: Vec<Duration>| {
        times.sort();
        (
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or_default(),
        )
    };
    let (n0, p50_0, p99_0, max0) = summary(baseline);
    let (n1, p50_1, p99_1, max1) = summary(attacked);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("relay_worst_request: {seconds} s per phase, {senders} attacker loops");
    println!(
        "  baseline List (cluster1 alone):   n={n0:6}  p50 {:8.2} ms  p99 {:8.2} ms  max {:8.2} ms",
        ms(p50_0),
        ms(p99_0),
        ms(max0)
    );
    println!(
        "  List under cluster2's attack:     n={n1:6}  p50 {:8.2} ms  p99 {:8.2} ms  max {:8.2} ms",
        ms(p50_1),
        ms(p99_1),
        ms(max1)
    );
    println!(
        "  ratio (attack / baseline):        p50 {:.2}x  p99 {:.2}x  max {:.2}x",
        ms(p50_1) / ms(p50_0),
        ms(p99_1) / ms(p99_0),
        ms(max1) / ms(max0)
    );
    println!(
        "  attacker: {accepted} requests answered 2xx, {refused} refused or failed (rate limit 100/s per cluster)"
    );
    relay_rt.block_on(relay.stop());
    rt.block_on(async { drop(stack) });
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}
