//! Sandbox API server throughput over real HTTPS with a kube::Client: creates/s, updates/s,
//! GETs/s and watch fan-out events/s, each beside a baseline measured in the same run: a bare
//! hyper + rustls server answering a fixed Secret JSON on the same client path.
//!
//! Run: `cargo bench --bench sandbox` (SANDBOX_BENCH_ROUNDS, default 5).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use secret_relay_certs::{Ca, ClientAuth, Validity, server_config};
use secret_relay_sandbox::SandboxConfig;

const CONCURRENCY: usize = 16;
const OPS: usize = 400;
const WATCHERS: usize = 10;
const WATCH_EVENTS: usize = 200;

fn secret(name: &str, value: &str) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.to_owned());
    s.data = Some([("k".to_owned(), ByteString(value.as_bytes().to_vec()))].into());
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn rate<F, Fut>(ops: usize, f: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    futures::stream::iter(0..ops)
        .map(&f)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    ops as f64 / start.elapsed().as_secs_f64()
}

/// A bare HTTPS server answering every request with one fixed Secret JSON.
async fn baseline_server() -> (String, String) {
    let ca = Ca::generate("bench-ca", Validity::ca_default()).expect("ca");
    let cert = ca
        .issue_server(
            "bench",
            &["localhost".to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Validity::days(1),
        )
        .expect("server cert");
    let config = server_config(
        &cert.cert_pem,
        &cert.key_pem,
        None,
        ClientAuth::None,
        &[b"h2", b"http/1.1"],
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "fixed", "namespace": "default", "resourceVersion": "1", "uid": "0"},
            "data": {"k": "dg=="}, "type": "Opaque"
        }))
        .expect("json"),
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        let mut r = hyper::Response::new(Full::new(body));
                        r.headers_mut()
                            .insert("content-type", "application/json".parse().expect("header"));
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (format!("https://{addr}"), ca.cert_pem().to_owned())
}

async fn run_round(round: usize, sandbox_client: &Client, baseline: &Client) -> [f64; 5] {
    let ns = "default";
    let api: Api<Secret> = Api::namespaced(sandbox_client.clone(), ns);
    let base: Api<Secret> = Api::namespaced(baseline.clone(), ns);

    let baseline_gets = rate(OPS, |_| {
        let base = base.clone();
        async move {
            base.get("fixed").await.expect("baseline get");
        }
    })
    .await;
    let creates = rate(OPS, |i| {
        let api = api.clone();
        async move {
            api.create(
                &PostParams::default(),
                &secret(&format!("r{round}-{i}"), "v"),
            )
            .await
            .expect("create");
        }
    })
    .await;
    let updates = rate(OPS, |i| {
        let api = api.clone();
        async move {
            let patch = Patch::Merge(serde_json::json!({"data": {"k": "dXBkYXRlZA=="}}));
            api.patch(&format!("r{round}-{i}"), &PatchParams::default(), &patch)
                .await
                .expect("update");
        }
    })
    .await;
    let gets = rate(OPS, |i| {
        let api = api.clone();
        async move {
            api.get(&format!("r{round}-{i}")).await.expect("get");
        }
    })
    .await;

    // Watch fan-out: WATCHERS watch streams, then WATCH_EVENTS writes; time until every
    // watcher has seen every event.
    let start_rv = api
        .list_metadata(&Default::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut tasks = Vec::new();
    for _ in 0..WATCHERS {
        let stream = api
            .watch(&WatchParams::default().timeout(290), &start_rv)
            .await
            .expect("watch")
            .boxed();
        tasks.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut seen = 0;
            while seen < WATCH_EVENTS {
                match stream.try_next().await.expect("watch event") {
                    Some(WatchEvent::Added(_)) => seen += 1,
                    Some(_) => {}
                    None => panic!("watch ended early"),
                }
            }
        }));
    }
    let start = Instant::now();
    futures::stream::iter(0..WATCH_EVENTS)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &secret(&format!("w{round}-{i}"), "v"),
                )
                .await
                .expect("create");
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("watchers finish")
            .expect("watcher task");
    }
    let fanout = (WATCHERS * WATCH_EVENTS) as f64 / start.elapsed().as_secs_f64();
    [baseline_gets, creates, updates, gets, fanout]
}

fn main() {
    let rounds: usize = std::env::var("SANDBOX_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let sandbox = secret_relay_sandbox::start(SandboxConfig { history_limit: 100_000, ..SandboxConfig::default() })
            .await
            .expect("sandbox");
        let kubeconfig = Kubeconfig::from_yaml(&sandbox.kubeconfig("admin").expect("admin")).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
        let sandbox_client = Client::try_from(config).expect("client");

        let (url, ca_pem) = baseline_server().await;
        let ca = secret_relay_certs::parse_certs_pem(&ca_pem).expect("ca pem");
        let mut config = kube::Config::new(url.parse().expect("url"));
        config.root_cert = Some(ca.iter().map(|c| c.to_vec()).collect());
        let baseline = Client::try_from(config).expect("baseline client");

        let mut results: Vec<[f64; 5]> = Vec::new();
        for round in 0..rounds {
            results.push(run_round(round, &sandbox_client, &baseline).await);
        }
        let col = |i: usize| median(results.iter().map(|r| r[i]).collect());
        let (baseline_gets, creates, updates, gets, fanout) = (col(0), col(1), col(2), col(3), col(4));
        println!("sandbox bench: {rounds} rounds, {OPS} ops per measure, concurrency {CONCURRENCY}, medians");
        println!("{:<44} {:>12} {:>10}", "measure", "per second", "vs base");
        println!("{:<44} {:>12.0} {:>10}", "baseline: bare hyper+rustls GET (fixed JSON)", baseline_gets, "1.00");
        println!("{:<44} {:>12.0} {:>10.2}", "sandbox GET secret", gets, gets / baseline_gets);
        println!("{:<44} {:>12.0} {:>10.2}", "sandbox create secret", creates, creates / baseline_gets);
        println!("{:<44} {:>12.0} {:>10.2}", "sandbox update secret (merge patch)", updates, updates / baseline_gets);
        println!(
            "{:<44} {:>12.0} {:>10}",
            format!("sandbox watch fan-out events ({WATCHERS} watchers)"),
            fanout,
            "-"
        );
        sandbox.shutdown().await;
    });
}
