//! One shutdown signal for a process, handed to tasks as a [`CancellationToken`],
//! with an optional delay in which the process still serves but reports itself not
//! ready: the time a Service needs to stop sending it new connections.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

/// Set once this process has its stop signal: every [`crate::Admin`]'s `/readyz`
/// then answers 503. Process-wide, as the signal is.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether the process received SIGINT or SIGTERM. Its servers may still serve
/// (during the shutdown delay), but it is not ready for new work.
pub fn is_stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

/// A token cancelled on SIGINT or SIGTERM. Tasks take a child token or a clone
/// and stop when it is cancelled.
pub fn shutdown_signal() -> CancellationToken {
    shutdown_signal_after(Duration::ZERO)
}

/// Like [`shutdown_signal`], but on the signal the process first reports itself not
/// ready (`/readyz` answers 503) and keeps serving for `delay`; only then is the token
/// cancelled and the servers drain. Behind a Service this is what lets a rolling
/// update pass without a refused connection: the endpoint leaves the Service (kube-proxy,
/// or kube-apiserver's own routing to a webhook) before the listener closes. A
/// second signal during the delay cancels at once.
pub fn shutdown_signal_after(delay: Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    // Listening starts here, before the task runs, so a signal sent as soon as
    // this returns is not missed.
    let mut signals = StopSignals::new();
    tokio::spawn(async move {
        if !signals.next(&cancel).await {
            return;
        }
        STOPPING.store(true, Ordering::Relaxed);
        if !delay.is_zero() {
            tracing::info!(
                delay_seconds = delay.as_secs_f64(),
                "stop signal: not ready, still serving until the shutdown delay ends"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = signals.next(&cancel) => {}
            }
        }
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

/// SIGINT and SIGTERM, listened to from creation on.
struct StopSignals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    fn new() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            // Failing to listen (no signal driver) leaves only cancellation.
            let streams = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .ok();
            StopSignals { streams }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Waits for the next SIGINT or SIGTERM: true when one came, false when
    /// `token` was cancelled first.
    async fn next(&mut self, token: &CancellationToken) -> bool {
        #[cfg(unix)]
        let signal = async {
            match &mut self.streams {
                Some((int, term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signal = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        tokio::select! {
            () = signal => true,
            () = token.cancelled() => false,
        }
    }
}
