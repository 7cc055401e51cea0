//! Real handshakes on 127.0.0.1 against the relay's server TLS: who is accepted, who
//! is refused and why, and rotation without a restart.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use rustls::{CertificateError, Error as TlsError};
use rustls_pki_types::ServerName;
use secret_relay_certs::{
    Ca, ClusterIdentity, IdentityError, IdentitySource, IssuedCert, ReloadOutcome,
    ReloadingServerTls, TlsConfigError, TlsFiles, Validity, agent_client_config, client_config,
    peer_identity,
};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the server saw of one connection.
type Seen = Result<ClusterIdentity, Refusal>;

#[derive(Debug)]
enum Refusal {
    Tls(TlsError),
    Identity(IdentityError),
}

struct Pki {
    ca: Ca,
    dir: tempfile::TempDir,
    files: TlsFiles,
}

fn write_server(dir: &Path, ca: &Ca, name: &str) -> IssuedCert {
    let server = ca
        .issue_server(
            name,
            &["relay.test".to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Validity::default(),
        )
        .unwrap();
    std::fs::write(dir.join("tls.crt"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &server.key_pem).unwrap();
    server
}

fn pki() -> Pki {
    let ca = Ca::generate("relay CA", Validity::ca_default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_server(dir.path(), &ca, "relay");
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    let files = TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
        client_ca: Some(dir.path().join("ca.crt")),
    };
    Pki { ca, dir, files }
}

/// Accepts connections forever; for each reports what it saw, then echoes bytes.
async fn server(tls: Arc<ReloadingServerTls>) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let acceptor = TlsAcceptor::from(tls.config());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut stream = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(err) => {
                        let tls = err
                            .get_ref()
                            .and_then(|e| e.downcast_ref::<TlsError>())
                            .cloned()
                            .unwrap_or(TlsError::General(err.to_string()));
                        let _ = tx.send(Err(Refusal::Tls(tls)));
                        return;
                    }
                };
                let (_, conn) = stream.get_ref();
                let peer = conn.peer_certificates().and_then(|c| c.first()).cloned();
                let seen = match peer {
                    Some(cert) => peer_identity(&cert).map_err(Refusal::Identity),
                    None => Err(Refusal::Tls(TlsError::NoCertificatesPresented)),
                };
                let ok = seen.is_ok();
                let _ = tx.send(seen);
                if ok {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let _ = stream.flush().await;
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn connect(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<&IssuedCert>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = client_config(
        ca_pem,
        client.map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())),
        &[b"h2"],
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).await?;
    let mut stream = TlsConnector::from(config)
        .connect(ServerName::try_from("relay.test").unwrap(), tcp)
        .await?;
    // In TLS 1.3 the server judges the client certificate after the client finished;
    // one round trip makes the client see the verdict.
    stream.write_all(b"ping").await?;
    stream.flush().await?;
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await?;
    Ok(stream)
}

async fn seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("the server saw no connection")
        .unwrap()
}

fn window(from_days: i64, to_days: i64) -> Validity {
    let now = OffsetDateTime::now_utc();
    Validity::between(
        now + Duration::days(from_days),
        now + Duration::days(to_days),
    )
}

#[tokio::test]
async fn the_agent_config_from_files_is_accepted_with_h2() {
    let pki = pki();
    let (addr, mut rx) = server(ReloadingServerTls::relay(pki.files.clone()).unwrap()).await;
    let cluster = pki.ca.issue_cluster("edge-2", Validity::default()).unwrap();
    let agent = tempfile::tempdir().unwrap();
    std::fs::write(agent.path().join("tls.crt"), &cluster.cert_pem).unwrap();
    std::fs::write(agent.path().join("tls.key"), &cluster.key_pem).unwrap();
    std::fs::write(agent.path().join("ca.crt"), pki.ca.cert_pem()).unwrap();
    let paths = (
        agent.path().join("ca.crt"),
        agent.path().join("tls.crt"),
        agent.path().join("tls.key"),
    );
    let config =
        tokio::task::spawn_blocking(move || agent_client_config(&paths.0, &paths.1, &paths.2))
            .await
            .unwrap()
            .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = TlsConnector::from(config)
        .connect(ServerName::try_from("relay.test").unwrap(), tcp)
        .await
        .unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(seen(&mut rx).await.unwrap().name, "edge-2");

    let missing = agent.path().join("missing.key");
    let err = agent_client_config(
        &agent.path().join("ca.crt"),
        &agent.path().join("tls.crt"),
        &missing,
    )
    .unwrap_err();
    assert!(matches!(err, TlsConfigError::Read { ref path, .. } if *path == missing));
}

#[tokio::test]
async fn a_valid_cluster_certificate_is_accepted_and_named() {
    let pki = pki();
    let (addr, mut rx) = server(ReloadingServerTls::relay(pki.files.clone()).unwrap()).await;
    let cluster = pki
        .ca
        .issue_cluster("cluster1", Validity::default())
        .unwrap();
    connect(addr, pki.ca.cert_pem(), Some(&cluster))
        .await
        .unwrap();
    let identity = seen(&mut rx).await.unwrap();
    assert_eq!(identity.name, "cluster1");
    assert_eq!(identity.source, IdentitySource::SpiffeUri);
}

#[tokio::test]
async fn each_bad_client_certificate_is_refused_with_its_own_error() {
    let pki = pki();
    let (addr, mut rx) = server(ReloadingServerTls::relay(pki.files.clone()).unwrap()).await;
    let ca_pem = pki.ca.cert_pem();

    let other_ca = Ca::generate("someone else", Validity::ca_default()).unwrap();
    let unknown = other_ca
        .issue_cluster("cluster1", Validity::default())
        .unwrap();
    assert!(connect(addr, ca_pem, Some(&unknown)).await.is_err());
    assert!(matches!(
        seen(&mut rx).await,
        Err(Refusal::Tls(TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer
        )))
    ));

    let expired = pki.ca.issue_cluster("cluster1", window(-30, -1)).unwrap();
    assert!(connect(addr, ca_pem, Some(&expired)).await.is_err());
    let got = seen(&mut rx).await;
    assert!(
        matches!(
            got,
            Err(Refusal::Tls(TlsError::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )))
        ),
        "{got:?}"
    );

    let future = pki.ca.issue_cluster("cluster1", window(1, 30)).unwrap();
    assert!(connect(addr, ca_pem, Some(&future)).await.is_err());
    let got = seen(&mut rx).await;
    assert!(
        matches!(
            got,
            Err(Refusal::Tls(TlsError::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
            )))
        ),
        "{got:?}"
    );

    assert!(connect(addr, ca_pem, None).await.is_err());
    assert!(matches!(
        seen(&mut rx).await,
        Err(Refusal::Tls(TlsError::NoCertificatesPresented))
    ));

    let server_cert = pki
        .ca
        .issue_server(
            "cluster1",
            &["cluster1".to_owned()],
            &[],
            Validity::default(),
        )
        .unwrap();
    assert!(connect(addr, ca_pem, Some(&server_cert)).await.is_err());
    let got = seen(&mut rx).await;
    assert!(
        matches!(
            got,
            Err(Refusal::Tls(TlsError::InvalidCertificate(
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
            )))
        ),
        "{got:?}"
    );

    let anonymous = pki.ca.issue_client("", &[], Validity::default()).unwrap();
    let _ = connect(addr, ca_pem, Some(&anonymous)).await;
    assert!(matches!(
        seen(&mut rx).await,
        Err(Refusal::Identity(IdentityError::NoIdentity))
    ));
}

#[tokio::test]
async fn a_user_certificate_is_named_by_its_common_name() {
    let pki = pki();
    let (addr, mut rx) = server(ReloadingServerTls::relay(pki.files.clone()).unwrap()).await;
    let user = pki
        .ca
        .issue_client("cluster2", &["ops".to_owned()], Validity::default())
        .unwrap();
    connect(addr, pki.ca.cert_pem(), Some(&user)).await.unwrap();
    let identity = seen(&mut rx).await.unwrap();
    assert_eq!(
        (identity.name.as_str(), identity.source),
        ("cluster2", IdentitySource::CommonName)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_server_certificate_during_handshakes_loses_none() {
    let pki = pki();
    let tls = ReloadingServerTls::relay(pki.files.clone()).unwrap();
    let (addr, mut rx) = server(tls.clone()).await;
    let cluster = pki
        .ca
        .issue_cluster("cluster1", Validity::default())
        .unwrap();
    let ca_pem = pki.ca.cert_pem().to_owned();

    // A connection opened before the rotation keeps working after it.
    let mut open = connect(addr, &ca_pem, Some(&cluster)).await.unwrap();
    seen(&mut rx).await.unwrap();
    let before = open.get_ref().1.peer_certificates().unwrap()[0].clone();

    let handshakes = {
        let ca_pem = ca_pem.clone();
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let mut certs = Vec::new();
            for _ in 0..60 {
                let s = connect(addr, &ca_pem, Some(&cluster)).await.unwrap();
                certs.push(s.get_ref().1.peer_certificates().unwrap()[0].clone());
            }
            certs
        })
    };
    let new = write_server(pki.dir.path(), &pki.ca, "relay-rotated");
    assert_eq!(tls.reload().unwrap(), ReloadOutcome::Rotated);
    let certs = handshakes.await.unwrap();
    assert_eq!(certs.len(), 60);
    for _ in 0..60 {
        seen(&mut rx).await.unwrap();
    }

    let after = connect(addr, &ca_pem, Some(&cluster)).await.unwrap();
    let after = after.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_ne!(after, before);
    assert_eq!(after, new.cert_der().unwrap());

    open.write_all(b"still").await.unwrap();
    let mut buf = [0u8; 5];
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still");
}

#[tokio::test]
async fn invalid_new_material_is_refused_and_the_old_one_stays() {
    let pki = pki();
    let tls = ReloadingServerTls::relay(pki.files.clone()).unwrap();
    let (addr, mut rx) = server(tls.clone()).await;
    let cluster = pki
        .ca
        .issue_cluster("cluster1", Validity::default())
        .unwrap();

    std::fs::write(&pki.files.cert, "not a certificate").unwrap();
    assert!(tls.reload().is_err());

    // A key that belongs to another certificate.
    let other = pki
        .ca
        .issue_server("other", &[], &[], Validity::default())
        .unwrap();
    write_server(pki.dir.path(), &pki.ca, "relay");
    std::fs::write(&pki.files.key, &other.key_pem).unwrap();
    assert!(tls.reload().is_err());

    // An expired certificate with its own key.
    let expired = pki
        .ca
        .issue_server("relay", &["relay.test".to_owned()], &[], window(-30, -1))
        .unwrap();
    std::fs::write(&pki.files.cert, &expired.cert_pem).unwrap();
    std::fs::write(&pki.files.key, &expired.key_pem).unwrap();
    let err = tls.reload().unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    connect(addr, pki.ca.cert_pem(), Some(&cluster))
        .await
        .unwrap();
    assert_eq!(seen(&mut rx).await.unwrap().name, "cluster1");
}

#[tokio::test]
async fn rotating_the_client_ca_bundle_changes_who_is_trusted() {
    let pki = pki();
    let tls = ReloadingServerTls::relay(pki.files.clone()).unwrap();
    let (addr, mut rx) = server(tls.clone()).await;
    let ca2 = Ca::generate("relay CA 2", Validity::ca_default()).unwrap();
    let old_cluster = pki
        .ca
        .issue_cluster("cluster1", Validity::default())
        .unwrap();
    let new_cluster = ca2.issue_cluster("cluster2", Validity::default()).unwrap();
    let server_ca = pki.ca.cert_pem();

    assert!(connect(addr, server_ca, Some(&new_cluster)).await.is_err());
    assert!(seen(&mut rx).await.is_err());

    // Both CAs during the overlap: both clusters are accepted.
    std::fs::write(
        pki.files.client_ca.as_ref().unwrap(),
        format!("{}{}", pki.ca.cert_pem(), ca2.cert_pem()),
    )
    .unwrap();
    assert_eq!(tls.reload().unwrap(), ReloadOutcome::Rotated);
    connect(addr, server_ca, Some(&old_cluster)).await.unwrap();
    assert_eq!(seen(&mut rx).await.unwrap().name, "cluster1");
    connect(addr, server_ca, Some(&new_cluster)).await.unwrap();
    assert_eq!(seen(&mut rx).await.unwrap().name, "cluster2");

    // Only the new CA: the old cluster certificate is refused.
    std::fs::write(pki.files.client_ca.as_ref().unwrap(), ca2.cert_pem()).unwrap();
    assert_eq!(tls.reload().unwrap(), ReloadOutcome::Rotated);
    assert!(connect(addr, server_ca, Some(&old_cluster)).await.is_err());
    assert!(matches!(
        seen(&mut rx).await,
        Err(Refusal::Tls(TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer
        )))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_file_watch_picks_up_a_rotation() {
    let pki = pki();
    let tls = ReloadingServerTls::relay(pki.files.clone()).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watch = tls
        .clone()
        .spawn_watch(std::time::Duration::from_millis(100), async {
            let _ = stop_rx.await;
        });
    write_server(pki.dir.path(), &pki.ca, "relay-rotated");
    // The paused clock jumps from tick to tick; the watch must rotate within a few.
    let mut ticks = 0;
    while tls.rotations() == 0 && ticks < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ticks += 1;
    }
    assert_eq!(
        tls.rotations(),
        1,
        "the watch did not pick up the new files"
    );
    let _ = stop_tx.send(());
    watch.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_watch_reports_refused_material_and_when_the_served_certificate_expires() {
    let pki = pki();
    let tls = ReloadingServerTls::relay(pki.files.clone()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let days_left = (tls.not_after() - now) / 86_400;
    assert!(days_left > 0, "{}", tls.not_after());
    let (ready, detail) = tls.readiness();
    assert!(ready, "{detail}");
    assert!(
        detail.starts_with("serving certificate valid until "),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("({days_left} days left)")),
        "{detail}"
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watch = tls
        .clone()
        .spawn_watch(std::time::Duration::from_millis(100), async {
            let _ = stop_rx.await;
        });
    std::fs::write(&pki.files.cert, "not a certificate").unwrap();
    // The paused clock jumps from tick to tick; the watch must refuse within a few.
    let mut ticks = 0;
    while tls.refused().is_none() && ticks < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ticks += 1;
    }
    let why = tls.refused().expect("the refusal is recorded");
    let (ready, detail) = tls.readiness();
    assert!(ready, "the current material is still served: {detail}");
    assert!(detail.contains(&why), "{detail}");

    write_server(pki.dir.path(), &pki.ca, "relay-rotated");
    while tls.refused().is_some() && ticks < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ticks += 1;
    }
    assert_eq!(tls.refused(), None);
    assert_eq!(tls.rotations(), 1);
    let _ = stop_tx.send(());
    watch.await.unwrap();
}
