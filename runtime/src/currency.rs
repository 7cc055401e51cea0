//! Whether the policy a process serves is current. A watch can break, or hang,
//! and a process that kept serving its last policy then would judge by rules that
//! no longer stand: a relay replica would answer a cluster registered since as
//! unknown, long enough for its agent to delete every down copy. So a ConfigMap
//! source confirms what it serves: each complete list of its watch does, and so
//! does a consistent read of the ConfigMap every [`Currency::confirm_every`] that
//! finds the version the watch reached. Without a confirmation for
//! [`Currency::stale_after`], the policy is stale until the next one. A file
//! source is always current: it is read where it lies.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

/// How a ConfigMap policy source proves that the policy served is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Currency {
    /// How often the ConfigMap is read to confirm the watch.
    pub confirm_every: Duration,
    /// How long the policy stays current without a confirmation.
    pub stale_after: Duration,
}

impl Default for Currency {
    /// A read every 5 s, stale after 30 s: well inside an agent's 60 s grace before
    /// a down copy goes, and a few reads lost to a busy API server are no outage.
    fn default() -> Currency {
        Currency {
            confirm_every: Duration::from_secs(5),
            stale_after: Duration::from_secs(30),
        }
    }
}

/// What the source has confirmed, and whether that is recent enough.
#[derive(Debug)]
pub(crate) struct Tracker {
    settings: Mutex<Currency>,
    track: Mutex<Track>,
    current: watch::Sender<bool>,
    gauge: Gauge,
}

#[derive(Debug)]
struct Track {
    /// Whether the source confirms itself at all (a file does not need to).
    confirming: bool,
    /// The version the watch last reached: `Some(Some(rv))`, `Some(None)` when the
    /// ConfigMap is absent, `None` before the watch's first list.
    seen: Option<Option<String>>,
    /// A read that found a version the watch had not reached yet, and when it was
    /// made: it confirms once the watch reaches that version.
    awaiting: Option<(Option<String>, Instant)>,
    /// The last confirmation (the tracker's start before any).
    confirmed: Instant,
    /// Why the last read did not confirm anything.
    problem: Option<String>,
}

impl Tracker {
    pub(crate) fn new(gauge: Gauge) -> Tracker {
        gauge.set(1);
        Tracker {
            settings: Mutex::new(Currency::default()),
            track: Mutex::new(Track {
                confirming: false,
                seen: None,
                awaiting: None,
                confirmed: Instant::now(),
                problem: None,
            }),
            current: watch::channel(true).0,
            gauge,
        }
    }

    fn track(&self) -> std::sync::MutexGuard<'_, Track> {
        self.track
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn settings(&self) -> Currency {
        *self
            .settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_settings(&self, settings: Currency) {
        *self
            .settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = settings;
    }

    /// A source that must confirm itself starts: the grace of `stale_after` begins.
    pub(crate) fn start_confirming(&self) {
        let mut t = self.track();
        t.confirming = true;
        t.confirmed = Instant::now();
    }

    /// The watch reached `revision` (`None`: the ConfigMap is absent).
    pub(crate) fn seen(&self, revision: Option<&str>) {
        let mut t = self.track();
        t.seen = Some(revision.map(str::to_owned));
        if let Some((awaited, at)) = t.awaiting.take() {
            if awaited.as_deref() == revision {
                t.confirmed = t.confirmed.max(at);
                t.problem = None;
            } else {
                t.awaiting = Some((awaited, at));
            }
        }
        drop(t);
        self.recheck();
    }

    /// The watch completed a list: a consistent read, made just now.
    pub(crate) fn listed(&self) {
        let mut t = self.track();
        t.confirmed = Instant::now();
        t.awaiting = None;
        t.problem = None;
        drop(t);
        self.recheck();
    }

    /// A consistent read made at `at` found `revision` (`None`: no ConfigMap).
    pub(crate) fn read(&self, revision: Option<&str>, at: Instant) {
        let mut t = self.track();
        if t.seen.as_ref().is_some_and(|s| s.as_deref() == revision) {
            t.confirmed = t.confirmed.max(at);
            t.awaiting = None;
            t.problem = None;
        } else {
            // The watch has not reached it yet, or never will: only the watch
            // reaching it confirms.
            t.awaiting = Some((revision.map(str::to_owned), at));
        }
        drop(t);
        self.recheck();
    }

    /// A read failed: nothing is confirmed, and the readiness detail says why.
    pub(crate) fn read_failed(&self, problem: String) {
        self.track().problem = Some(problem);
        self.recheck();
    }

    /// Publishes whether the last confirmation is recent enough.
    pub(crate) fn recheck(&self) {
        let stale_after = self.settings().stale_after;
        let t = self.track();
        let current = !t.confirming || t.confirmed.elapsed() <= stale_after;
        drop(t);
        self.gauge.set(i64::from(current));
        self.current.send_if_modified(|c| {
            let changed = *c != current;
            *c = current;
            changed
        });
    }

    pub(crate) fn is_current(&self) -> bool {
        *self.current.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.current.subscribe()
    }

    /// Current or not, and since when it was confirmed, in words.
    pub(crate) fn readiness(&self) -> (bool, String) {
        let current = self.is_current();
        let t = self.track();
        if !t.confirming {
            return (true, "the policy source needs no confirming".to_owned());
        }
        let age = t.confirmed.elapsed().as_secs();
        let mut detail = if current {
            format!("the policy ConfigMap confirmed the policy served {age}s ago")
        } else {
            format!(
                "stale: the policy ConfigMap has not confirmed the policy served for {age}s (more than {:?}); nothing is judged until it does",
                self.settings().stale_after
            )
        };
        if let Some(problem) = &t.problem {
            detail.push_str(&format!("; {problem}"));
        }
        (current, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(stale_after: Duration) -> Tracker {
        let t = Tracker::new(Gauge::default());
        t.set_settings(Currency {
            confirm_every: Duration::from_secs(5),
            stale_after,
        });
        t
    }

    #[test]
    fn a_source_that_needs_no_confirming_is_always_current() {
        let t = tracker(Duration::ZERO);
        t.recheck();
        assert!(t.is_current());
        assert!(t.readiness().0);
    }

    #[test]
    fn without_a_confirmation_the_policy_goes_stale_and_a_list_brings_it_back() {
        let t = tracker(Duration::from_secs(30));
        t.start_confirming();
        t.seen(Some("7"));
        assert!(t.is_current(), "the grace of a source that starts");
        t.track().confirmed = Instant::now() - Duration::from_secs(31);
        t.recheck();
        assert!(!t.is_current());
        let (ready, detail) = t.readiness();
        assert!(!ready);
        assert!(detail.starts_with("stale:"), "{detail}");
        t.read_failed("failed to read the policy ConfigMap: connection refused".into());
        assert!(t.readiness().1.contains("connection refused"));
        t.listed();
        assert!(t.is_current());
        assert!(!t.readiness().1.contains("connection refused"));
    }

    #[test]
    fn a_read_confirms_only_the_version_the_watch_reached() {
        let t = tracker(Duration::from_secs(600));
        t.start_confirming();
        t.seen(Some("7"));
        // Back-date the last confirmation, then read a newer version than the watch's.
        t.track().confirmed = Instant::now() - Duration::from_secs(900);
        let at = Instant::now();
        t.read(Some("8"), at);
        assert!(!t.is_current(), "a watch behind the read confirms nothing");
        // The watch reaching it confirms, as of the read.
        t.seen(Some("8"));
        assert!(t.is_current());
        // A read of the version the watch has: confirmed at once.
        t.track().confirmed = Instant::now() - Duration::from_secs(900);
        t.recheck();
        assert!(!t.is_current());
        t.read(Some("8"), Instant::now());
        assert!(t.is_current());
        // An absent ConfigMap the watch saw go confirms as well.
        t.seen(None);
        t.track().confirmed = Instant::now() - Duration::from_secs(900);
        t.read(None, Instant::now());
        assert!(t.is_current());
    }
}
