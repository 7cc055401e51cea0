//! The relay's policy as the agent knows it: its generation, the epoch that counts
//! every possible change of it, the control-plane namespace and what it strips from
//! copies; the first request for it and the long poll that follows it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secret_relay_policy::StripMetadata;
use secret_relay_runtime::CancellationToken;
use tokio::sync::mpsc;

use super::retry::jitter;
use super::scheduler::Trigger;
use super::{Context, lock, unregistered};

/// The relay's policy as last seen.
#[derive(Default)]
pub(super) struct PolicyView {
    generation: AtomicU64,
    /// The relay's keyed revision of its policy, when it names one: the same on
    /// every replica serving the same policy, unlike the generation.
    revision: Mutex<Option<String>>,
    /// Bumped when the relay serves another policy than the view was listed
    /// under: the view is listed again, since a watch resumed on another replica
    /// replays changes of hub copies, not the views an older policy gave.
    relists: tokio::sync::watch::Sender<u64>,
    /// Bumped whenever the relay's policy may have changed: a new generation, or the
    /// relay answering again after it could not be reached (a replica started since
    /// counts its generations from 1, so the number alone may not change). Denials
    /// are remembered per epoch, so each such change retries them.
    epoch: AtomicU64,
    /// When the current epoch began.
    epoch_began: Mutex<Option<Instant>>,
    control_plane_namespace: Mutex<Option<String>>,
    /// What the policy strips from copies beside the built-in rule, as the relay
    /// last said with its generation.
    strip: Mutex<Arc<StripMetadata>>,
}

/// The relay's answer to a policy generation request.
pub(super) struct GenerationAnswer {
    pub(super) control_plane_namespace: String,
    pub(super) generation: u64,
    /// `None` from a relay older than revisions.
    pub(super) revision: Option<String>,
    pub(super) strip: StripMetadata,
}

impl GenerationAnswer {
    /// Reads the relay's answer. One without a generation, or whose `stripMetadata`
    /// does not read, is an error (asked again with backoff, the last good policy
    /// kept): taken as "strip nothing", it would have sent up what the policy strips
    /// (and the hub refuses). A relay that names no strip rule strips only the
    /// built-in ones.
    fn read(mut answer: serde_json::Value) -> Result<GenerationAnswer, serde_json::Error> {
        use serde::de::Error as _;
        let generation = answer["generation"]
            .as_u64()
            .ok_or_else(|| serde_json::Error::custom("the relay's answer names no generation"))?;
        let strip = match answer.get_mut("stripMetadata").map(serde_json::Value::take) {
            None | Some(serde_json::Value::Null) => StripMetadata::default(),
            Some(rules) => serde_json::from_value(rules)?,
        };
        let control_plane_namespace = answer["controlPlaneNamespace"]
            .as_str()
            .unwrap_or("argocd")
            .to_owned();
        let revision = answer["revision"]
            .as_str()
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        Ok(GenerationAnswer {
            control_plane_namespace,
            generation,
            revision,
            strip,
        })
    }
}

impl PolicyView {
    /// The relay's policy generation last seen.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The relay's policy revision last seen, if it names them.
    fn revision(&self) -> Option<String> {
        lock(&self.revision).clone()
    }

    /// Lists the relay's view again: its store may be stale.
    pub(super) fn relist_view(&self) {
        self.relists.send_modify(|n| *n += 1);
    }

    /// A receiver that changes whenever the view must be listed again.
    pub(super) fn subscribe_relists(&self) -> tokio::sync::watch::Receiver<u64> {
        self.relists.subscribe()
    }

    /// The current policy epoch.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether the current epoch began less than `window` ago: while it is young,
    /// another relay replica may still judge by the policy before it (each replica
    /// loads the policy from its own watch).
    pub(super) fn epoch_is_younger_than(&self, window: Duration) -> bool {
        lock(&self.epoch_began).is_some_and(|began| began.elapsed() < window)
    }

    /// The control-plane namespace the relay named, once known.
    pub(super) fn control_plane_namespace(&self) -> Option<String> {
        lock(&self.control_plane_namespace).clone()
    }

    /// What the policy strips from copies beside the built-in rule.
    pub(super) fn strip(&self) -> Arc<StripMetadata> {
        lock(&self.strip).clone()
    }
}

impl Context {
    /// Takes the relay's first answer: the control-plane namespace and the policy.
    pub(super) fn set_first_generation(&self, answer: GenerationAnswer) {
        *lock(&self.policy.control_plane_namespace) = Some(answer.control_plane_namespace.clone());
        self.set_generation(answer);
    }

    /// Takes a policy generation the relay answered with: a new epoch.
    fn set_generation(&self, answer: GenerationAnswer) {
        let generation = answer.generation;
        *lock(&self.policy.strip) = Arc::new(answer.strip);
        *lock(&self.policy.revision) = answer.revision;
        self.policy.generation.store(generation, Ordering::Release);
        *lock(&self.policy.epoch_began) = Some(Instant::now());
        self.policy.epoch.fetch_add(1, Ordering::AcqRel);
        self.changed();
        self.metrics
            .policy_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Asks the relay for its policy: at once (`wait` false), or held until it
    /// serves another than the one last seen.
    async fn generation_request(&self, wait: bool) -> Result<GenerationAnswer, kube::Error> {
        let base = "/apis/secret-relay.io/v1/generation";
        // Both: a relay older than revisions holds the poll by the generation.
        let path = match (wait, self.policy.revision()) {
            (false, _) => base.to_owned(),
            (true, Some(r)) => format!("{base}?revision={r}&after={}", self.policy.generation()),
            (true, None) => format!("{base}?after={}", self.policy.generation()),
        };
        let req = http::Request::get(path)
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        let answer: serde_json::Value = self.relay.request(req).await?;
        GenerationAnswer::read(answer).map_err(kube::Error::SerdeError)
    }

    /// Asks the relay until it answers, with backoff.
    pub(super) async fn first_generation(&self) -> GenerationAnswer {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.generation_request(false).await {
                Ok(answer) => {
                    unregistered::answered(self);
                    return answer;
                }
                Err(err) => {
                    unregistered::refused(self, &err).await;
                    tracing::warn!(error = %err, "failed to reach the relay; retrying");
                    tokio::time::sleep(jitter(delay)).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// The least time between two polls that found nothing new.
const MIN_POLL: Duration = Duration::from_secs(1);

/// Long-polls the relay's policy generation; a new one reconciles everything, so
/// a Secret an older policy denied is tried again.
pub(super) async fn poll_generations(
    ctx: Arc<Context>,
    tx: mpsc::UnboundedSender<Trigger>,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    // Whether the relay could not be reached since its last answer: the replica
    // that answers next may serve another policy, so ask it at once (no long poll).
    let mut lost = false;
    loop {
        let after = ctx.policy.generation();
        let revision = ctx.policy.revision();
        let asked = Instant::now();
        let answer = tokio::select! {
            () = shutdown.cancelled() => return,
            a = ctx.generation_request(!lost) => a,
        };
        match answer {
            Ok(answer) => {
                unregistered::answered(&ctx);
                delay = Duration::from_millis(100);
                let another = another_policy(&answer, after, revision.as_deref(), lost);
                if !another && !lost && asked.elapsed() < MIN_POLL {
                    // Answered at once with nothing new (a relay stopping, or one that
                    // does not hold polls): never ask again at once.
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(jitter(MIN_POLL)) => {}
                    }
                }
                if another {
                    tracing::info!(
                        generation = answer.generation,
                        relay_was_unreachable = lost,
                        "the relay serves another policy, or may: listing its view again"
                    );
                    ctx.set_generation(answer);
                    ctx.policy.relist_view();
                    let _ = tx.send(Trigger::Full);
                }
                lost = false;
            }
            Err(err) => {
                lost = true;
                unregistered::refused(&ctx, &err).await;
                tracing::debug!(error = %err, "policy generation poll failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(jitter(delay)) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Whether `answer` may be another policy than the one last seen (generation
/// `after`, revision `revision`). A revision names one policy on every replica,
/// so only another revision is another policy. Without one (a relay older than
/// revisions), another generation is, and so is any answer after the relay was
/// unreachable (`lost`): a replica started since counts its generations from 1.
fn another_policy(
    answer: &GenerationAnswer,
    after: u64,
    revision: Option<&str>,
    lost: bool,
) -> bool {
    match (answer.revision.as_deref(), revision) {
        (Some(new), Some(old)) => new != old,
        (Some(_), None) => true,
        (None, _) => answer.generation != after || lost,
    }
}

#[cfg(test)]
mod tests {
    use super::{GenerationAnswer, another_policy};
    use serde_json::json;

    #[test]
    fn an_answer_whose_strip_rules_do_not_read_is_an_error_not_strip_nothing() {
        let read = GenerationAnswer::read(json!({
            "generation": 4,
            "controlPlaneNamespace": "argocd",
            "stripMetadata": {"labels": ["example.com/team"]},
        }))
        .unwrap();
        assert_eq!(read.generation, 4);
        assert_eq!(read.strip.labels, ["example.com/team"]);
        // A relay that names no strip rule strips only the built-in ones.
        let none = GenerationAnswer::read(json!({"generation": 1})).unwrap();
        assert!(none.strip.is_empty());
        assert_eq!(none.control_plane_namespace, "argocd");
        // Skew or damage: kept as an error, never read as "strip nothing".
        assert!(
            GenerationAnswer::read(json!({"generation": 5, "stripMetadata": {"labels": "x"}}))
                .is_err()
        );
        assert!(GenerationAnswer::read(json!({"stripMetadata": {}})).is_err());
    }

    #[test]
    fn only_another_revision_is_another_policy_whatever_replica_answers() {
        let answer = |generation, revision: Option<&str>| GenerationAnswer {
            control_plane_namespace: "argocd".into(),
            generation,
            revision: revision.map(str::to_owned),
            strip: Default::default(),
        };
        // Replicas count generations apart: the same revision under another
        // number, or after the relay was unreachable, is the same policy.
        assert!(!another_policy(
            &answer(1, Some("ab")),
            7,
            Some("ab"),
            false
        ));
        assert!(!another_policy(&answer(1, Some("ab")), 7, Some("ab"), true));
        assert!(another_policy(&answer(7, Some("cd")), 7, Some("ab"), false));
        // The first revision seen, or a relay older than revisions.
        assert!(another_policy(&answer(7, Some("ab")), 7, None, false));
        assert!(!another_policy(&answer(7, None), 7, None, false));
        assert!(another_policy(&answer(7, None), 7, None, true));
        assert!(another_policy(&answer(1, None), 7, None, false));
    }
}
