//! TLS handshakes per second with the relay's server config (client certificate
//! required and verified, rotating resolver and verifier) beside a plain rustls server
//! config (static certificate, no client auth), measured in the same run.
//!
//! `cargo bench --bench handshake` (`HANDSHAKE_BENCH_ROUNDS`, `HANDSHAKE_BENCH_COUNT`).
//! Server and client share one process and a 2-worker tokio runtime over loopback, so
//! each figure includes both sides' CPU; the ratio is what compares the configs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark main, not library code

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rustls::client::Resumption;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use secret_relay_certs::{
    Ca, ClientAuth, ReloadingServerTls, TlsFiles, Validity, client_config, server_config,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

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
/// a TLS 1.3 client certificate is part of the round. Returns handshakes per second.
async fn handshakes(addr: SocketAddr, client: Arc<ClientConfig>, count: usize) -> f64 {
    let connector = TlsConnector::from(client);
    let name = ServerName::try_from("relay.test").unwrap();
    let start = Instant::now();
    for _ in 0..count {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut s = connector.connect(name.clone(), tcp).await.unwrap();
        s.write_all(b"x").await.unwrap();
        s.flush().await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
    }
    count as f64 / start.elapsed().as_secs_f64()
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
    let count = env("HANDSHAKE_BENCH_COUNT", 400);
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
        let relay = ReloadingServerTls::relay(TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            client_ca: Some(dir.path().join("ca.crt")),
        })
        .unwrap();
        let plain = server_config(
            &server.cert_pem,
            &server.key_pem,
            None,
            ClientAuth::None,
            &[b"h2", b"http/1.1"],
        )
        .unwrap();
        let relay_addr = serve(relay.config()).await;
        let plain_addr = serve(plain).await;

        let client = |with_cert: bool, resume: bool| {
            let base = client_config(
                ca.cert_pem(),
                with_cert.then_some((cluster.cert_pem.as_str(), cluster.key_pem.as_str())),
                &[b"h2"],
            )
            .unwrap();
            let mut config = (*base).clone();
            if !resume {
                config.resumption = Resumption::disabled();
            }
            Arc::new(config)
        };

        let cases: [(&str, SocketAddr, bool, bool); 4] = [
            (
                "plain rustls, full handshake (baseline)",
                plain_addr,
                false,
                false,
            ),
            ("relay mTLS, full handshake", relay_addr, true, false),
            ("plain rustls, resumed (baseline)", plain_addr, false, true),
            ("relay mTLS, resumed", relay_addr, true, true),
        ];
        let mut figures = Vec::new();
        for (label, addr, cert, resume) in cases {
            let config = client(cert, resume);
            // Warm up (and, for resumption, seed the client's session cache).
            handshakes(addr, config.clone(), 20).await;
            let mut runs = Vec::new();
            for _ in 0..rounds {
                runs.push(handshakes(addr, config.clone(), count).await);
            }
            figures.push((label, median(runs)));
        }
        println!("handshakes per second, median of {rounds} rounds x {count}:");
        println!("| case | handshakes/s | vs its baseline |");
        println!("|---|---:|---:|");
        for (i, (label, hs)) in figures.iter().enumerate() {
            let baseline = figures[i - i % 2].1;
            println!("| {label} | {hs:.0} | {:.2} |", hs / baseline);
        }
    });
}
