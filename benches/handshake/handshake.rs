//! TLS handshakes per second, and CPU per handshake, for each crypto provider side by
//! side in one run: ring (what secret-relay used before issue 24, with X25519) against
//! aws-lc-rs (what it uses), the latter both with a classical-only client (X25519, the
//! same key exchange as ring, so the provider alone differs) and with its own client
//! (the hybrid post-quantum X25519MLKEM768). Each provider serves the relay's server
//! config (client certificate required and verified, rotating resolver and verifier)
//! and a plain rustls server config (static certificate, no client auth), full and
//! resumed.
//!
//! `cargo bench --manifest-path benches/handshake/Cargo.toml` (`HANDSHAKE_BENCH_ROUNDS`,
//! `HANDSHAKE_BENCH_COUNT`). Server and client share one process and a 2-worker tokio
//! runtime over loopback, so each figure includes both sides' CPU; the ratio to ring in
//! the same round order is what compares the providers. Rounds go through every case in
//! turn, so a change of the machine's load hits each case alike.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark main, not library code

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, NamedGroup, ServerConfig};
use rustls_pki_types::ServerName;
use secret_relay_certs::{
    Ca, ClientAuth, ReloadingServerTls, TlsFiles, Validity, client_config_with_provider,
    server_config_with_provider,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// One provider setup: what the servers run on, what the client runs on, and the key
/// exchange group they must agree on.
struct Setup {
    name: &'static str,
    server: Arc<CryptoProvider>,
    client: Arc<CryptoProvider>,
    group: NamedGroup,
}

async fn serve(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_ok() {
                        let _ = s.write_all(&b).await;
                        let _ = s.flush().await;
                    }
                }
            });
        }
    });
    addr
}

/// `count` sequential handshakes, each with one byte echoed so the server's verdict on
/// a TLS 1.3 client certificate is part of the round. Returns handshakes per second,
/// the process CPU (both sides) per handshake in µs, and the last connection's key
/// exchange group and whether it resumed.
async fn handshakes(
    addr: SocketAddr,
    client: Arc<ClientConfig>,
    count: usize,
) -> (f64, f64, Option<NamedGroup>, bool) {
    let connector = TlsConnector::from(client);
    let name = ServerName::try_from("relay.test").unwrap();
    let (mut group, mut resumed) = (None, false);
    let cpu = cpu_seconds();
    let start = Instant::now();
    for _ in 0..count {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut s = connector.connect(name.clone(), tcp).await.unwrap();
        s.write_all(b"x").await.unwrap();
        s.flush().await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        let conn = s.get_ref().1;
        group = conn.negotiated_key_exchange_group().map(|g| g.name());
        resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    (
        count as f64 / wall,
        cpu * 1e6 / count as f64,
        group,
        resumed,
    )
}

/// The process's user + system CPU time so far, from `/proc/self/stat` (clock ticks of
/// 1/100 s on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ")".
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; any filter argument is ignored.
    let rounds = env("HANDSHAKE_BENCH_ROUNDS", 5);
    let count = env("HANDSHAKE_BENCH_COUNT", 1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let ca = Ca::generate("bench CA", Validity::ca_default()).unwrap();
        let server = ca
            .issue_server(
                "relay",
                &["relay.test".to_owned()],
                &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
                Validity::default(),
            )
            .unwrap();
        let cluster = ca.issue_cluster("cluster1", Validity::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), &server.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &server.key_pem).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            client_ca: Some(dir.path().join("ca.crt")),
        };

        let ring = Arc::new(rustls::crypto::ring::default_provider());
        let aws_classical = Arc::new(CryptoProvider {
            kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519],
            ..rustls::crypto::aws_lc_rs::default_provider()
        });
        let setups = [
            Setup {
                name: "ring, X25519 (baseline)",
                server: ring.clone(),
                client: ring,
                group: NamedGroup::X25519,
            },
            Setup {
                name: "aws-lc-rs, X25519 client",
                server: secret_relay_certs::provider(),
                client: aws_classical,
                group: NamedGroup::X25519,
            },
            Setup {
                name: "aws-lc-rs, X25519MLKEM768",
                server: secret_relay_certs::provider(),
                client: secret_relay_certs::provider(),
                group: NamedGroup::X25519MLKEM768,
            },
        ];

        // (config, resumed) for each column; (setup, column) for each case.
        let columns = [
            ("plain rustls, full handshake", false, false),
            ("relay mTLS, full handshake", true, false),
            ("plain rustls, resumed", false, true),
            ("relay mTLS, resumed", true, true),
        ];
        let mut cases = Vec::new();
        for (s, setup) in setups.iter().enumerate() {
            let relay = ReloadingServerTls::with_provider(
                files.clone(),
                ClientAuth::Required,
                &[b"h2", b"http/1.1"],
                setup.server.clone(),
            )
            .unwrap();
            let plain = server_config_with_provider(
                setup.server.clone(),
                &server.cert_pem,
                &server.key_pem,
                None,
                ClientAuth::None,
                &[b"h2", b"http/1.1"],
            )
            .unwrap();
            let relay_addr = serve(relay.config()).await;
            let plain_addr = serve(plain).await;
            for (c, (_, mtls, resume)) in columns.iter().enumerate() {
                let base = client_config_with_provider(
                    setup.client.clone(),
                    ca.cert_pem(),
                    mtls.then_some((cluster.cert_pem.as_str(), cluster.key_pem.as_str())),
                    &[b"h2"],
                )
                .unwrap();
                let mut config = (*base).clone();
                if !resume {
                    config.resumption = Resumption::disabled();
                }
                let config = Arc::new(config);
                let addr = if *mtls { relay_addr } else { plain_addr };
                // Warm up (and, for resumption, seed the client's session cache); check
                // the group and the kind of handshake the case is meant to measure.
                let (_, _, group, resumed) = handshakes(addr, config.clone(), 20).await;
                assert_eq!(group, Some(setup.group), "{} {}", setup.name, columns[c].0);
                assert_eq!(resumed, *resume, "{} {}", setup.name, columns[c].0);
                cases.push((s, c, addr, config, Vec::new(), Vec::new()));
            }
        }
        for _ in 0..rounds {
            for (_, _, addr, config, rates, cpus) in cases.iter_mut() {
                let (rate, cpu, _, _) = handshakes(*addr, config.clone(), count).await;
                rates.push(rate);
                cpus.push(cpu);
            }
        }

        let figure = |s: usize, c: usize| {
            let (.., rates, cpus) = cases.iter().find(|k| k.0 == s && k.1 == c).unwrap();
            (median(rates.clone()), median(cpus.clone()))
        };
        println!(
            "medians of {rounds} rounds x {count} handshakes; CPU is the whole process's \
             (server and client) per handshake"
        );
        println!(
            "| case | provider, key exchange | handshakes/s | vs ring | CPU µs/handshake | vs ring |"
        );
        println!("|---|---|---:|---:|---:|---:|");
        for (c, (column, _, _)) in columns.iter().enumerate() {
            let (base_rate, base_cpu) = figure(0, c);
            for (s, setup) in setups.iter().enumerate() {
                let (rate, cpu) = figure(s, c);
                println!(
                    "| {column} | {} | {rate:.0} | {:.2} | {cpu:.0} | {:.2} |",
                    setup.name,
                    rate / base_rate,
                    cpu / base_cpu
                );
            }
        }
    });
}
