//! Which key exchange group each side negotiates, on real handshakes over 127.0.0.1:
//! our servers (the relay's and the webhook's configs) give the hybrid post-quantum
//! X25519MLKEM768 to a client that offers it first (ours, kube's, Go 1.24 and later)
//! and still serve a classical-only client, with the classical group it asked for.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::{ClientConfig, NamedGroup, RootCertStore, ServerConfig};
use rustls_pki_types::ServerName;
use secret_relay_certs::{
    Ca, IssuedCert, ReloadingServerTls, TlsFiles, Validity, client_config,
    client_config_with_provider, parse_certs_pem,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct Pki {
    ca: Ca,
    cluster: IssuedCert,
    _dir: tempfile::TempDir,
    files: TlsFiles,
}

fn pki() -> Pki {
    let ca = Ca::generate("relay CA", Validity::ca_default()).unwrap();
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
    Pki {
        ca,
        cluster,
        _dir: dir,
        files,
    }
}

/// One handshake of `client` against `server`, with a byte echoed so a TLS 1.3 client
/// certificate is judged; returns the group the server and the client negotiated.
async fn negotiated(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (Option<NamedGroup>, Option<NamedGroup>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut stream = TlsAcceptor::from(server).accept(tcp).await.unwrap();
        let group = stream
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .map(|g| g.name());
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.unwrap();
        stream.write_all(&b).await.unwrap();
        stream.flush().await.unwrap();
        let _ = tx.send(group);
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = TlsConnector::from(client)
        .connect(ServerName::try_from("relay.test").unwrap(), tcp)
        .await
        .unwrap();
    stream.write_all(b"x").await.unwrap();
    stream.flush().await.unwrap();
    let mut b = [0u8; 1];
    stream.read_exact(&mut b).await.unwrap();
    let client_group = stream
        .get_ref()
        .1
        .negotiated_key_exchange_group()
        .map(|g| g.name());
    let server_group = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
        .await
        .expect("the server saw no handshake")
        .unwrap();
    (server_group, client_group)
}

/// A client of aws-lc-rs offering only `groups`, with the cluster certificate (the
/// webhook asks for none and ignores it).
fn client_offering(pki: &Pki, groups: &[&'static dyn SupportedKxGroup]) -> Arc<ClientConfig> {
    let provider = Arc::new(CryptoProvider {
        kx_groups: groups.to_vec(),
        ..aws_lc_rs::default_provider()
    });
    client_config_with_provider(
        provider,
        pki.ca.cert_pem(),
        Some((&pki.cluster.cert_pem, &pki.cluster.key_pem)),
        &[b"h2", b"http/1.1"],
    )
    .unwrap()
}

fn relay(pki: &Pki) -> Arc<ServerConfig> {
    ReloadingServerTls::relay(pki.files.clone())
        .unwrap()
        .config()
}

fn webhook(pki: &Pki) -> Arc<ServerConfig> {
    ReloadingServerTls::webhook(pki.files.clone())
        .unwrap()
        .config()
}

#[test]
fn our_provider_prefers_the_hybrid_then_the_classical_groups() {
    let groups: Vec<NamedGroup> = secret_relay_certs::provider()
        .kx_groups
        .iter()
        .map(|g| g.name())
        .collect();
    assert_eq!(
        groups,
        [
            NamedGroup::X25519MLKEM768,
            NamedGroup::X25519,
            NamedGroup::secp256r1,
            NamedGroup::secp384r1,
        ]
    );
}

#[tokio::test]
async fn the_agent_client_gets_the_hybrid_from_the_relay() {
    let pki = pki();
    let agent = client_config(
        pki.ca.cert_pem(),
        Some((&pki.cluster.cert_pem, &pki.cluster.key_pem)),
        &[b"h2", b"http/1.1"],
    )
    .unwrap();
    let groups = negotiated(relay(&pki), agent).await;
    assert_eq!(
        groups,
        (
            Some(NamedGroup::X25519MLKEM768),
            Some(NamedGroup::X25519MLKEM768)
        )
    );
}

#[tokio::test]
async fn a_client_on_rustls_defaults_as_kube_builds_it_gets_the_hybrid() {
    // kube's client calls `ClientConfig::builder()`, the process default provider from
    // rustls' crate features: the workspace enables aws-lc-rs with `prefer-post-quantum`.
    let pki = pki();
    let mut roots = RootCertStore::empty();
    for cert in parse_certs_pem(pki.ca.cert_pem()).unwrap() {
        roots.add(cert).unwrap();
    }
    let kube_like = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let groups = negotiated(webhook(&pki), Arc::new(kube_like)).await;
    assert_eq!(groups.0, Some(NamedGroup::X25519MLKEM768));
    assert_eq!(groups.1, Some(NamedGroup::X25519MLKEM768));
}

#[tokio::test]
async fn a_classical_only_client_still_connects_with_x25519() {
    let pki = pki();
    for server in [relay(&pki), webhook(&pki)] {
        let groups = negotiated(server, client_offering(&pki, &[kx_group::X25519])).await;
        assert_eq!(groups, (Some(NamedGroup::X25519), Some(NamedGroup::X25519)));
    }
}

#[tokio::test]
async fn a_client_offering_only_secp256r1_gets_secp256r1() {
    let pki = pki();
    let groups = negotiated(relay(&pki), client_offering(&pki, &[kx_group::SECP256R1])).await;
    assert_eq!(
        groups,
        (Some(NamedGroup::secp256r1), Some(NamedGroup::secp256r1))
    );
}

#[tokio::test]
async fn a_client_listing_x25519_before_the_hybrid_gets_x25519() {
    // rustls' server takes the first group of the client's list that it supports: the
    // hybrid is negotiated when the client lists it first, as ours, kube's and Go's do.
    let pki = pki();
    let client = client_offering(&pki, &[kx_group::X25519, kx_group::X25519MLKEM768]);
    let groups = negotiated(relay(&pki), client).await;
    assert_eq!(groups, (Some(NamedGroup::X25519), Some(NamedGroup::X25519)));
}
