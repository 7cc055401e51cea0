//! Events on Secrets: recorded beside the reconciler, in lanes (one object's Events
//! always take the same lane, in the order of its decisions), by recorders sharded
//! by object so kube-runtime's series cache stays small.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Client, Resource as _};
use tokio::sync::mpsc;

/// Events waiting to be recorded in each lane; a reconcile waits only when its
/// object's lane holds this many.
const EVENT_QUEUE: usize = 256;

/// Lanes of Events recorded at once; one object's Events all take the same lane, in
/// the order of its decisions.
const EVENT_LANES: usize = 4;

/// Shards of [`Recorders`].
const RECORDER_SHARDS: usize = 64;

/// One lane's Events, as its publisher receives them.
pub(super) type Lane = mpsc::Receiver<(ObjectReference, KubeEvent)>;

/// Where reconciles send Events: published beside the reconciler, so a reconcile
/// slot is free for the next write as soon as its own is done.
pub(super) struct Events {
    recorders: Recorders,
    lanes: Vec<mpsc::Sender<(ObjectReference, KubeEvent)>>,
}

/// Event recorders, one per shard of object names. kube-runtime's [`Recorder`] keeps
/// the Events of the last six minutes to count repeats into a series, and scans that
/// whole cache on every publish under one lock: a catch-up of 10,000 Secrets made that
/// quadratic (a third of the agent's CPU in a profile). Each object's Events always go
/// to the same shard, so repeats still become a series, and each scan is 1/64 as long.
#[derive(Clone)]
struct Recorders(Arc<[Recorder]>);

impl Events {
    /// Events recorded through `client`, and the lanes their publishers read.
    pub(super) fn new(client: &Client) -> (Events, Vec<Lane>) {
        let (lanes, receivers) = (0..EVENT_LANES).map(|_| mpsc::channel(EVENT_QUEUE)).unzip();
        let recorders = Recorders::new(
            client,
            &Reporter {
                controller: "secret-relay-agent".to_owned(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        (Events { recorders, lanes }, receivers)
    }

    /// Queues an Event on `on`; waits only when its lane is full.
    pub(super) async fn record(&self, on: &Secret, type_: EventType, reason: &str, note: String) {
        let reference = on.object_ref(&());
        let event = KubeEvent {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Sync".to_owned(),
            secondary: None,
        };
        // Waits only when the queue is full; fails only once the agent stops.
        let lane = self.recorders.shard(&reference) % EVENT_LANES;
        if self.lanes[lane].send((reference, event)).await.is_err() {
            tracing::debug!("the agent is stopping: an event was not recorded");
        }
    }

    /// Records `lane`'s Events, one after another, until the agent stops.
    pub(super) fn publish(&self, lane: Lane) -> impl Future<Output = ()> + Send + 'static {
        publish_events(self.recorders.clone(), lane)
    }
}

impl Recorders {
    fn new(client: &Client, reporter: &Reporter) -> Recorders {
        Recorders(
            (0..RECORDER_SHARDS)
                .map(|_| Recorder::new(client.clone(), reporter.clone()))
                .collect(),
        )
    }

    fn shard(&self, reference: &ObjectReference) -> usize {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        reference.namespace.hash(&mut h);
        reference.name.hash(&mut h);
        usize::try_from(h.finish() % RECORDER_SHARDS as u64).unwrap_or(0)
    }

    fn for_object(&self, reference: &ObjectReference) -> &Recorder {
        &self.0[self.shard(reference)]
    }
}

/// Records one lane's Events, one after another, until the agent stops.
async fn publish_events(recorders: Recorders, mut lane: Lane) {
    while let Some((reference, event)) = lane.recv().await {
        let recorder = recorders.for_object(&reference);
        if let Err(err) = recorder.publish(&event, &reference).await {
            tracing::debug!(error = %err, "failed to record an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[tokio::test]
    async fn an_objects_events_always_go_to_the_same_recorder_and_names_spread_over_all() {
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let recorders = Recorders::new(
            &client,
            &Reporter {
                controller: "test".to_owned(),
                instance: None,
            },
        );
        let reference = |name: String| ObjectReference {
            namespace: Some("akuity".to_owned()),
            name: Some(name),
            ..ObjectReference::default()
        };
        let shard = |name: &str| {
            let r = recorders.for_object(&reference(name.to_owned()));
            recorders.0.iter().position(|x| std::ptr::eq(x, r)).unwrap()
        };
        // Repeats of one object's Event meet in one cache and become a series.
        assert_eq!(shard("repo"), shard("repo"));
        let used: HashSet<usize> = (0..2000).map(|i| shard(&format!("s-{i}"))).collect();
        assert_eq!(used.len(), RECORDER_SHARDS);
    }
}
