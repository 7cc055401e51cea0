//! Whether the policy a process serves is current. A watch can break, or hang,
//! and a process that kept serving its last policy then would judge by rules that
//! no longer stand: a relay replica would answer a cluster registered since as
//! unknown, long enough for its agent to delete every down copy. So a ConfigMap
//! source confirms what it serves: each complete list of its watch does, and so
//! does a consistent read of the ConfigMap every [`Currency::confirm_every`] that
//! finds the version the watch reached. Without a confirmation for
//! [`Currency::stale_after`], the policy is stale until the next one. A file
//! source is always current: it is read where it lies.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// When the tracker began: the base of `confirmed_ms`.
    began: Instant,
    /// Whether the source confirms itself at all (a file does not need to).
    confirming: AtomicBool,
    /// The last confirmation, in milliseconds since `began`: read on every
    /// request, so without a lock.
    confirmed_ms: AtomicU64,
    /// Tells subscribers when the policy goes stale or current again (see
    /// [`Tracker::recheck`], which a timer of the source calls too).
    current: watch::Sender<bool>,
    gauge: Gauge,
}

/// Reads the watch has not reached yet, kept at most this many (the newest).
const AWAITING: usize = 16;

#[derive(Debug, Default)]
struct Track {
    /// The version the watch last reached: `Some(Some(rv))`, `Some(None)` when the
    /// ConfigMap is absent, `None` before the watch's first list.
    seen: Option<Option<String>>,
    /// Reads that found a version the watch had not reached yet, oldest first, and
    /// when each was made: each confirms once the watch reaches its version.
    awaiting: VecDeque<(Option<String>, Instant)>,
    /// Why the last read did not confirm anything.
    problem: Option<String>,
}

/// Whether the watch, at `seen`, has reached the version `read` found: the same
/// version, or (resourceVersions being etcd's revisions) a later one.
fn reached(seen: Option<&str>, read: Option<&str>) -> bool {
    if seen == read {
        return true;
    }
    match (seen.map(str::parse::<u64>), read.map(str::parse::<u64>)) {
        (Some(Ok(seen)), Some(Ok(read))) => seen >= read,
        _ => false,
    }
}

impl Tracker {
    pub(crate) fn new(gauge: Gauge) -> Tracker {
        Tracker::began_at(gauge, Instant::now())
    }

    fn began_at(gauge: Gauge, began: Instant) -> Tracker {
        gauge.set(1);
        Tracker {
            settings: Mutex::new(Currency::default()),
            track: Mutex::new(Track::default()),
            began,
            confirming: AtomicBool::new(false),
            confirmed_ms: AtomicU64::new(0),
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

    fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.began).as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a confirmation made at `at` (never moving the last one back).
    fn confirm(&self, at: Instant) {
        self.confirmed_ms
            .fetch_max(self.ms_at(at), Ordering::AcqRel);
    }

    /// A source that must confirm itself starts: the grace of `stale_after` begins.
    pub(crate) fn start_confirming(&self) {
        self.confirm(Instant::now());
        self.confirming.store(true, Ordering::Release);
    }

    /// The watch reached `revision` (`None`: the ConfigMap is absent).
    pub(crate) fn seen(&self, revision: Option<&str>) {
        let mut t = self.track();
        t.seen = Some(revision.map(str::to_owned));
        // The newest read the watch has now reached confirms, as of when it was made.
        let mut confirmed = None;
        t.awaiting.retain(|(read, at)| {
            if reached(revision, read.as_deref()) {
                confirmed = confirmed.max(Some(*at));
                false
            } else {
                true
            }
        });
        if let Some(at) = confirmed {
            t.problem = None;
            drop(t);
            self.confirm(at);
        } else {
            drop(t);
        }
        self.recheck();
    }

    /// The watch completed a list: a consistent read, made just now.
    pub(crate) fn listed(&self) {
        let mut t = self.track();
        t.awaiting.clear();
        t.problem = None;
        drop(t);
        self.confirm(Instant::now());
        self.recheck();
    }

    /// A consistent read made at `at` found `revision` (`None`: no ConfigMap).
    pub(crate) fn read(&self, revision: Option<&str>, at: Instant) {
        let mut t = self.track();
        let reached_it = t
            .seen
            .as_ref()
            .is_some_and(|seen| reached(seen.as_deref(), revision));
        if reached_it {
            t.problem = None;
            drop(t);
            self.confirm(at);
        } else {
            // The watch has not reached it yet: only the watch reaching it confirms.
            t.awaiting.push_back((revision.map(str::to_owned), at));
            while t.awaiting.len() > AWAITING {
                t.awaiting.pop_front();
            }
            drop(t);
        }
        self.recheck();
    }

    /// A read failed: nothing is confirmed, and the readiness detail says why.
    pub(crate) fn read_failed(&self, problem: String) {
        self.track().problem = Some(problem);
        self.recheck();
    }

    /// How long since the last confirmation.
    fn age(&self) -> Duration {
        let now = self.ms_at(Instant::now());
        Duration::from_millis(now.saturating_sub(self.confirmed_ms.load(Ordering::Acquire)))
    }

    /// Whether the policy is current now: worked out when asked, so a source that
    /// stops confirming (its task gone or stuck) goes stale all the same.
    pub(crate) fn is_current(&self) -> bool {
        !self.confirming.load(Ordering::Acquire) || self.age() <= self.settings().stale_after
    }

    /// Whether the policy was confirmed current at `at` or later.
    pub(crate) fn confirmed_since(&self, at: Instant) -> bool {
        !self.confirming.load(Ordering::Acquire)
            || self.confirmed_ms.load(Ordering::Acquire) >= self.ms_at(at)
    }

    /// Tells subscribers and the gauge whether the policy is current now.
    pub(crate) fn recheck(&self) {
        let current = self.is_current();
        self.gauge.set(i64::from(current));
        self.current.send_if_modified(|c| {
            let changed = *c != current;
            *c = current;
            changed
        });
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.current.subscribe()
    }

    /// Current or not, and since when it was confirmed, in words.
    pub(crate) fn readiness(&self) -> (bool, String) {
        if !self.confirming.load(Ordering::Acquire) {
            return (true, "the policy source needs no confirming".to_owned());
        }
        let current = self.is_current();
        let age = self.age().as_secs();
        let mut detail = if current {
            format!("the policy ConfigMap confirmed the policy served {age}s ago")
        } else {
            format!(
                "stale: the policy ConfigMap has not confirmed the policy served for {age}s (more than {:?}); nothing is judged until it does",
                self.settings().stale_after
            )
        };
        if let Some(problem) = &self.track().problem {
            detail.push_str(&format!("; {problem}"));
        }
        (current, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes the last confirmation `secs` older than now.
    fn backdate(t: &Tracker, secs: u64) {
        let now = t.ms_at(Instant::now());
        t.confirmed_ms
            .store(now.saturating_sub(secs * 1000), Ordering::Release);
    }

    fn tracker(stale_after: Duration) -> Tracker {
        // Begun an hour ago, so that confirmations can be made older.
        let began = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap();
        let t = Tracker::began_at(Gauge::default(), began);
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
        backdate(&t, 31);
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
        backdate(&t, 900);
        let at = Instant::now();
        t.read(Some("8"), at);
        assert!(!t.is_current(), "a watch behind the read confirms nothing");
        // The watch reaching it confirms, as of the read.
        t.seen(Some("8"));
        assert!(t.is_current());
        // A read of the version the watch has: confirmed at once.
        backdate(&t, 900);
        t.recheck();
        assert!(!t.is_current());
        t.read(Some("8"), Instant::now());
        assert!(t.is_current());
        // A watch already past the version read (a later write arrived first).
        backdate(&t, 900);
        t.read(Some("5"), Instant::now());
        assert!(t.is_current());
        // Writes faster than reads: every read the watch has not reached waits, and
        // the watch passing them confirms.
        backdate(&t, 900);
        t.read(Some("9"), Instant::now());
        t.read(Some("10"), Instant::now());
        assert!(!t.is_current());
        t.seen(Some("12"));
        assert!(t.is_current());
        assert!(t.track().awaiting.is_empty());
        // An absent ConfigMap the watch saw go confirms as well.
        t.seen(None);
        backdate(&t, 900);
        t.read(None, Instant::now());
        assert!(t.is_current());
    }
}
