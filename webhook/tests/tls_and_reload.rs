//! The webhook over real TLS sockets (ALPN, keep-alive, certificate rotation) and
//! policy reload from a file.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use secret_relay_certs::{Ca, ReloadingServerTls, TlsFiles, Validity, client_config};
use secret_relay_policy::{Mode, RelayIdentity};
use secret_relay_runtime::CancellationToken;
use secret_relay_webhook::{AppState, LoadOutcome, parse_policy, serve};
use serde_json::{Value, json};
use tokio::net::TcpStream;

const POLICY: &str =
    "clusters: [{name: cluster1}]\nsecretSources: [{clusterSelector: \"\", labelSelector: team}]\n";

fn review() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b1f0c2a4-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "name": "argocd-secret",
            "namespace": "argocd",
            "operation": "CREATE",
            "userInfo": {"username": "secret-relay:cluster:cluster1", "groups": ["secret-relay:clusters"]},
            "object": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argocd-secret", "namespace": "argocd"}},
            "oldObject": null,
        }
    })
}

struct Server {
    addr: SocketAddr,
    ca: Ca,
    tls: Arc<ReloadingServerTls>,
    dir: tempfile::TempDir,
    stop: CancellationToken,
    state: AppState,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn write_cert(dir: &std::path::Path, ca: &Ca, cn: &str) {
    let cert = ca
        .issue_server(
            cn,
            &["localhost".to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Validity::default(),
        )
        .unwrap();
    std::fs::write(dir.join("tls.crt"), cert.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), cert.key_pem).unwrap();
}

async fn server() -> Server {
    let ca = Ca::generate("webhook test CA", Validity::ca_default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), &ca, "webhook");
    let tls = ReloadingServerTls::webhook(TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
        client_ca: None,
    })
    .unwrap();
    let state = AppState::new(RelayIdentity::default(), Mode::ControlPlane);
    state
        .policy_state()
        .offer_policy("test", "1", parse_policy(POLICY));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, tls.config(), state.clone(), stop.clone()));
    Server {
        addr,
        ca,
        tls,
        dir,
        stop,
        state,
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Connects offering h2 and http/1.1, as a generic client would; returns the
/// negotiated ALPN, the server's certificate and an HTTP/1.1 sender.
async fn connect(s: &Server) -> (Option<Vec<u8>>, Vec<u8>, Sender) {
    let config = client_config(s.ca.cert_pem(), None, &[b"h2", b"http/1.1"]).unwrap();
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    (alpn, cert, sender)
}

async fn validate(sender: &mut Sender) -> Value {
    let req = Request::post("/validate?timeout=2s")
        .header("content-type", "application/json")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&review()).unwrap(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_speaks_http1_over_tls_and_rotates_its_certificate_without_a_restart() {
    let s = server().await;
    let (alpn, first_cert, mut sender) = connect(&s).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let out = validate(&mut sender).await;
    assert_eq!(
        out["response"]["uid"],
        "b1f0c2a4-0000-4000-8000-000000000001"
    );
    assert_eq!(out["response"]["allowed"], false);
    assert!(
        out["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("argocd-secret")
    );

    write_cert(s.dir.path(), &s.ca, "webhook-rotated");
    s.tls.reload().unwrap();
    let (_, second_cert, mut fresh) = connect(&s).await;
    assert_ne!(
        first_cert, second_cert,
        "a new handshake must see the new certificate"
    );
    validate(&mut fresh).await;
    // The keep-alive connection opened before the rotation goes on.
    validate(&mut sender).await;
}

#[tokio::test]
async fn a_policy_file_reload_keeps_the_last_good_policy_on_a_bad_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let state = AppState::new(RelayIdentity::default(), Mode::ControlPlane);
    let mut last = None;

    // Missing file: not ready, reported once.
    assert!(matches!(
        secret_relay_runtime::reload_file_once(state.policy_state(), &path, &mut last).await,
        Some(LoadOutcome::Rejected(_))
    ));
    assert!(
        secret_relay_runtime::reload_file_once(state.policy_state(), &path, &mut last)
            .await
            .is_none()
    );
    assert!(!state.policy_state().is_ready());

    std::fs::write(&path, POLICY).unwrap();
    assert!(matches!(
        secret_relay_runtime::reload_file_once(state.policy_state(), &path, &mut last).await,
        Some(LoadOutcome::Loaded(1))
    ));
    assert!(
        secret_relay_runtime::reload_file_once(state.policy_state(), &path, &mut last)
            .await
            .is_none(),
        "unchanged file, no reload"
    );

    std::fs::write(&path, "clusters: [{name: cluster1}, {name: cluster1}]\n").unwrap();
    assert!(matches!(
        secret_relay_runtime::reload_file_once(state.policy_state(), &path, &mut last).await,
        Some(LoadOutcome::Rejected(_))
    ));
    assert_eq!(state.policy_state().generation(), 1);
    assert!(state.policy_state().policy().cluster("cluster1").is_some());
    let err = state.policy_state().last_error().unwrap().to_string();
    assert!(err.contains("clusters[1].name"), "{err}");
    let (ready, detail) = state.admin().readiness();
    assert!(ready);
    assert!(detail.contains("last policy reload failed"), "{detail}");
}

#[tokio::test]
async fn the_file_watch_picks_up_a_new_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, POLICY).unwrap();
    let state = AppState::new(RelayIdentity::default(), Mode::ControlPlane);
    let mut reloads = state.policy_state().subscribe_reloads();
    let stop = CancellationToken::new();
    let task = tokio::spawn(secret_relay_runtime::watch_file(
        state.policy_state().clone(),
        path.clone(),
        Duration::from_millis(20),
        stop.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(10), reloads.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.policy_state().generation(), 1);
    std::fs::write(&path, "clusters: [{name: cluster1}, {name: cluster2}]\nsecretSources: [{clusterSelector: \"\", labelSelector: team}]\n").unwrap();
    tokio::time::timeout(Duration::from_secs(10), reloads.wait_for(|n| *n >= 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.policy_state().generation(), 2);
    assert!(state.policy_state().policy().cluster("cluster2").is_some());
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_connection_that_is_not_tls_is_refused_and_counted_as_a_failed_handshake() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = server().await;
    let metric = r#"tls_handshake_failures_total{reason="protocol"} 1"#;
    assert!(!s.state.admin().encode_metrics().contains(metric));
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: webhook\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "a plain-text request must get no HTTP answer"
    );
    // The accept loop counts the failure as it drops the connection: the count may
    // land just after the close is seen.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !s.state.admin().encode_metrics().contains(metric) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {metric} in:\n{}", s.state.admin().encode_metrics()));
}
