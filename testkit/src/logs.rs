//! One tracing subscriber per test binary, writing plain text into a buffer that the
//! binary's tests read: to see a decision logged, or to scan for values that must
//! never be logged.

use std::sync::{Arc, Mutex, OnceLock};

static LOGS: OnceLock<(String, Arc<Mutex<Vec<u8>>>)> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the binary's one subscriber on first use: every crate at `filter` (an
/// `EnvFilter` directive such as `info` or `debug`), plain text, no colour. A later
/// call with another filter panics: one binary captures at one level.
pub fn capture_logs(filter: &str) {
    let (installed, _) = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        (filter.to_owned(), buf)
    });
    assert_eq!(
        installed, filter,
        "this test binary captures logs at {installed}, not {filter}"
    );
}

/// Everything logged since [`capture_logs`].
pub fn captured_logs() -> String {
    let (_, buf) = LOGS.get().expect("capture_logs() first");
    String::from_utf8_lossy(
        &buf.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned()
}
