//! Network faults for tests: a TCP forwarder that can cut every connection it carries.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP forwarder from a loopback port to `target` that a test can cut: every
/// connection it carries ends at once, and new ones are closed as soon as they are
/// accepted, until [`Cutter::restore`]. TLS passes through untouched, so a client
/// pointed at [`Cutter::url`] verifies the target's own certificate (valid for
/// `127.0.0.1`).
pub struct Cutter {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    forwarded: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Cutter {
    /// Starts forwarding `127.0.0.1:0` to `target`.
    pub async fn start(target: SocketAddr) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = watch::channel(true).0;
        let forwarded = watch::channel(0).0;
        let task = tokio::spawn(accept(listener, target, up.clone(), forwarded.clone()));
        Cutter {
            addr,
            up,
            forwarded,
            task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Ends every connection and closes new ones until [`Cutter::restore`].
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }

    /// How many connections have been forwarded so far.
    pub fn forwarded(&self) -> u64 {
        *self.forwarded.borrow()
    }

    /// Waits until more than `n` connections have been forwarded (a client came back).
    pub async fn forwarded_past(&self, n: u64) {
        let mut rx = self.forwarded.subscribe();
        let _ = rx.wait_for(|f| *f > n).await;
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.task.abort();
        self.up.send_replace(false);
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    up: watch::Sender<bool>,
    forwarded: watch::Sender<u64>,
) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            // Out of file descriptors and the like: give the system a moment.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        if !*up.borrow() {
            drop(client);
            continue;
        }
        let mut down = up.subscribe();
        let forwarded = forwarded.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            forwarded.send_modify(|n| *n += 1);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = down.wait_for(|up| !*up) => {}
            }
        });
    }
}
