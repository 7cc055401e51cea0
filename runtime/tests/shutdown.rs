//! The stop signal with a shutdown delay: on SIGTERM the process reports itself not
//! ready at once, still answers (each HTTP/1.1 answer closing its connection), and
//! keeps its token until the delay ends; a second signal stops it at once. Its own
//! test binary, since the signal and the flag are process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use prometheus_client::registry::Registry;
use secret_relay_runtime::{
    Admin, CancellationToken, Readiness, ServeOptions, is_stopping, serve_http,
    shutdown_signal_after,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One HTTP/1.1 request on a fresh keep-alive connection; the answer's head.
async fn head_of_answer(addr: std::net::SocketAddr) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).to_ascii_lowercase()
}

fn sigterm_self() {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_makes_the_process_unready_then_a_second_one_stops_it() {
    let admin = Admin::new(
        Registry::default(),
        vec![Readiness::new("policy", || (true, "loaded".to_owned()))],
    );
    // A delay far longer than the test: only the second signal can end it.
    let token = shutdown_signal_after(Duration::from_secs(600));
    // A server on the runtime's accept loop, serving until its own token.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_stop = CancellationToken::new();
    tokio::spawn(serve_http(
        listener,
        ServeOptions::default(),
        |_req, _conn| async { http::Response::new(Full::new(Bytes::from_static(b"ok"))) },
        server_stop.clone(),
    ));
    let head = head_of_answer(addr).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert!(admin.readiness().0, "ready before any signal");
    assert!(!is_stopping());

    sigterm_self();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !is_stopping() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("SIGTERM was not seen");
    let (ready, detail) = admin.readiness();
    assert!(!ready, "still ready after SIGTERM:\n{detail}");
    assert!(detail.contains("[-] shutdown:"), "{detail}");
    assert!(detail.contains("[+] policy: loaded"), "{detail}");
    assert!(
        !token.is_cancelled(),
        "the token was cancelled before the shutdown delay ended"
    );
    // In the delay the server still answers, and tells HTTP/1.1 clients to go.
    let head = head_of_answer(addr).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");

    sigterm_self();
    tokio::time::timeout(Duration::from_secs(10), token.cancelled())
        .await
        .expect("a second SIGTERM did not stop the process at once");
}
