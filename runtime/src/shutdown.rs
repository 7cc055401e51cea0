//! One shutdown signal for a process, handed to tasks as a [`CancellationToken`].

pub use tokio_util::sync::CancellationToken;

/// A token cancelled on SIGINT or SIGTERM. Tasks take a child token or a clone
/// and stop when it is cancelled.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
            () = cancel.cancelled() => return,
        }
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}
