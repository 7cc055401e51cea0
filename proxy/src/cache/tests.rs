use super::*;

fn policy(text: &str) -> Arc<Policy> {
    Arc::new(Policy::from_yaml(text).unwrap())
}

const TWO: &str =
    "clusters:\n  - name: c1\n    labels: {env: prod}\n  - name: c2\n    labels: {env: dev}\n";

fn hub(name: &str, rv: u64, annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> Secret {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "namespace": "argocd",
            "resourceVersion": rv.to_string(),
            "annotations": annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
            "labels": labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
        },
        "data": {"k": "dmFsdWU="},
    }))
    .unwrap()
}

fn synced(p: &Arc<Policy>) -> HubCache {
    let cache = HubCache::new(100);
    cache.reset("argocd");
    cache.set_policy(p.clone(), 1);
    cache.replace(vec![], None);
    cache
}

#[test]
fn a_hub_copy_is_visible_to_its_targets_and_its_owner_only() {
    let p = policy(TWO);
    let all = Entry::new(
        &p,
        hub(
            "all",
            5,
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            &[],
        ),
    );
    assert!(all.visible_to("c1") && all.visible_to("c2"));
    assert!(
        !all.visible_to("c3"),
        "an unregistered cluster sees nothing"
    );
    let owned = Entry::new(
        &p,
        hub(
            "repo",
            6,
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            &[("secret-relay.io/owner", "cluster.c1")],
        ),
    );
    assert!(owned.visible_to("c1"), "the owner sees its own copy");
    assert!(owned.visible_to("c2"));
    let private = Entry::new(
        &p,
        hub(
            "private",
            7,
            &[],
            &[("secret-relay.io/owner", "cluster.c1")],
        ),
    );
    assert_eq!(&*private.targets, &["c1".to_owned()]);
    let blocked = Entry::new(
        &p,
        hub(
            "argocd-secret",
            8,
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            &[],
        ),
    );
    assert!(blocked.targets.is_empty(), "a blocked secret goes nowhere");
    let json: serde_json::Value = serde_json::from_slice(&all.json).unwrap();
    assert_eq!(json["kind"], "Secret");
    assert_eq!(json["apiVersion"], "v1");
}

#[test]
fn a_policy_change_reports_the_entries_whose_views_changed() {
    let p = policy(TWO);
    let cache = synced(&p);
    cache.apply(hub(
        "sel",
        10,
        &[(
            "akuity.io/managed-secret-allowed-cluster-selector",
            "env=prod",
        )],
        &[],
    ));
    cache.apply(hub(
        "fixed",
        11,
        &[("akuity.io/managed-secret-allowed-clusters", "c2")],
        &[],
    ));
    let mut rx = cache.subscribe();
    let swapped = policy(
        "clusters:\n  - name: c1\n    labels: {env: dev}\n  - name: c2\n    labels: {env: prod}\n",
    );
    cache.set_policy(swapped, 2);
    let event = rx.try_recv().unwrap();
    let CacheEvent::Policy {
        changes,
        generation,
        rv,
        ..
    } = event.as_ref()
    else {
        panic!("{event:?}");
    };
    assert_eq!(*generation, 2);
    assert_eq!(*rv, 11);
    assert_eq!(changes.len(), 1, "only the selector-targeted copy changed");
    let (entry, before) = &changes[0];
    assert_eq!(entry.name, "sel");
    assert_eq!(&**before, &["c1".to_owned()]);
    assert_eq!(&*entry.targets, &["c2".to_owned()]);
    assert_eq!(&*cache.get("sel").unwrap().targets, &["c2".to_owned()]);
    // An older generation never replaces a newer one.
    cache.set_policy(p, 1);
    assert_eq!(cache.generation(), 2);
}

#[test]
fn an_entrys_targets_are_current_only_under_the_snapshot_they_were_computed_with() {
    let p = policy(TWO);
    let cache = synced(&p);
    cache.apply(hub(
        "fixed",
        11,
        &[("akuity.io/managed-secret-allowed-clusters", "c2")],
        &[],
    ));
    let (entry, current) = cache.get_under("fixed", &p).unwrap();
    assert!(current);
    assert_eq!(&*entry.targets, &["c2".to_owned()]);
    // An equal policy loaded again is another snapshot: its targets must be computed.
    let again = policy(TWO);
    assert!(!cache.get_under("fixed", &again).unwrap().1);
    cache.set_policy(again.clone(), 2);
    assert!(cache.get_under("fixed", &again).unwrap().1);
    assert!(!cache.get_under("fixed", &p).unwrap().1);
    assert!(cache.get_under("absent", &again).is_none());
}

#[test]
fn a_resume_replays_what_followed_and_an_old_version_is_expired() {
    let p = policy(TWO);
    let cache = HubCache::new(3);
    cache.reset("argocd");
    cache.set_policy(p.clone(), 1);
    cache.replace(vec![hub("a", 10, &[], &[])], Some(10));
    assert_eq!(cache.resource_version(), 10);
    cache.apply(hub("b", 11, &[], &[]));
    cache.apply(hub("a", 12, &[], &[]));
    let (Resume::Replay(events), snap) = cache.resume(11) else {
        panic!("expired");
    };
    assert_eq!(events.len(), 1);
    assert_eq!(snap.rv, 12);
    // The same object at the same version is no change.
    cache.apply(hub("a", 12, &[], &[]));
    assert_eq!(cache.resource_version(), 12);
    // Two more changes push the history past its limit of 3: version 10 is gone.
    cache.apply(hub("c", 13, &[], &[]));
    cache.delete(hub("b", 14, &[], &[]));
    assert!(matches!(cache.resume(10).0, Resume::Expired));
    let (Resume::Replay(events), _) = cache.resume(12) else {
        panic!("expired");
    };
    assert_eq!(events.len(), 2);
    assert!(matches!(
        events[1].as_ref(),
        CacheEvent::Change {
            deleted: true,
            rv: 14,
            ..
        }
    ));
    // Resuming at the current version is always possible.
    assert!(matches!(cache.resume(14).0, Resume::Replay(ref e) if e.is_empty()));
}

#[test]
fn a_resume_that_would_miss_a_policy_event_the_history_dropped_is_expired() {
    let p = policy(TWO);
    let cache = HubCache::new(2);
    cache.reset("argocd");
    cache.set_policy(p.clone(), 1);
    cache.replace(vec![hub("a", 10, &[], &[])], Some(10));
    // A policy event at version 10, then two changes push it out of the history.
    cache.set_policy(policy(TWO), 2);
    cache.apply(hub("b", 11, &[], &[]));
    cache.apply(hub("c", 12, &[], &[]));
    // A watch that stopped at 10 would get b and c, but not the policy's DELETEDs.
    assert!(matches!(cache.resume(10).0, Resume::Expired));
    let (Resume::Replay(events), _) = cache.resume(11) else {
        panic!("expired");
    };
    assert_eq!(events.len(), 1);
    // Policy events alone overflow the history at the current version.
    let only = HubCache::new(1);
    only.reset("argocd");
    only.set_policy(p.clone(), 1);
    only.replace(vec![hub("a", 20, &[], &[])], Some(20));
    only.set_policy(policy(TWO), 2);
    only.set_policy(policy(TWO), 3);
    assert!(matches!(only.resume(20).0, Resume::Expired));
    // A relist starts the history again.
    only.replace(vec![hub("a", 20, &[], &[])], Some(21));
    assert!(matches!(only.resume(21).0, Resume::Replay(_)));
}

#[test]
fn a_change_that_arrives_below_the_caches_version_expires_the_positions_past_it() {
    let p = policy(TWO);
    let cache = HubCache::new(10);
    cache.reset("argocd");
    cache.set_policy(p.clone(), 1);
    // Listed, then a version read after the list: 20.
    cache.replace(vec![hub("a", 10, &[], &[])], Some(20));
    // A change made between the list and that read comes later on the watch.
    cache.apply(hub("late", 15, &[], &[]));
    // A client that listed at 20 would never get it: it lists again.
    assert!(matches!(cache.resume(20).0, Resume::Expired));
    // Changes in order expire nothing.
    cache.apply(hub("next", 21, &[], &[]));
    assert!(matches!(cache.resume(21).0, Resume::Replay(ref e) if e.is_empty()));
}

#[test]
fn a_relist_emits_what_changed_while_the_watch_was_away() {
    let p = policy(TWO);
    let cache = synced(&p);
    cache.apply(hub("stays", 10, &[], &[]));
    cache.apply(hub("goes", 11, &[], &[]));
    let mut rx = cache.subscribe();
    cache.replace(
        vec![hub("stays", 10, &[], &[]), hub("new", 15, &[], &[])],
        Some(20),
    );
    let mut seen = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let CacheEvent::Change { after, deleted, .. } = event.as_ref() {
            seen.push((after.name.clone(), *deleted));
        }
    }
    assert_eq!(
        seen,
        vec![("goes".to_owned(), true), ("new".to_owned(), false)]
    );
    assert_eq!(cache.len(), 2);
    // After a relist the history starts again at the list's version.
    assert_eq!(cache.resource_version(), 20);
    assert!(matches!(cache.resume(15).0, Resume::Expired));
    assert!(matches!(cache.resume(20).0, Resume::Replay(ref e) if e.is_empty()));
}

#[test]
fn an_empty_namespace_still_knows_where_its_history_starts() {
    let cache = HubCache::new(10);
    cache.reset("argocd");
    cache.set_policy(policy(TWO), 1);
    cache.replace(vec![], Some(500));
    assert!(matches!(cache.resume(1).0, Resume::Expired));
    assert!(matches!(cache.resume(500).0, Resume::Replay(_)));
}

#[tokio::test]
async fn a_closed_cache_ends_every_watch_cleanly_and_refuses_reads() {
    let cache = synced(&policy(TWO));
    a_watch_ends_cleanly_and_reads_are_refused(&cache, || cache.close()).await;
    cache.closed().await;
}

#[tokio::test]
async fn a_cache_not_served_ends_every_watch_cleanly_and_refuses_reads_until_served_again() {
    let cache = synced(&policy(TWO));
    a_watch_ends_cleanly_and_reads_are_refused(&cache, || cache.set_serving(false)).await;
    cache.closed().await;
    cache.set_serving(true);
    assert!(cache.is_synced(), "served again");
}

/// Opens a watch of `cache`, then calls `stop`: the watch ends without an ERROR
/// line (its client resumes elsewhere, no relist) and reads are refused.
async fn a_watch_ends_cleanly_and_reads_are_refused(cache: &HubCache, stop: impl FnOnce()) {
    use std::time::Duration;

    use crate::watch::{ViewRequest, WatchParams, watch};

    cache.apply(hub(
        "s",
        10,
        &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
        &[],
    ));
    let metrics = Arc::new(crate::metrics::Metrics::new(
        &mut prometheus_client::registry::Registry::default(),
    ));
    let permit = Arc::new(tokio::sync::Semaphore::new(1))
        .try_acquire_owned()
        .unwrap();
    let view = ViewRequest {
        cluster: "c1".to_owned(),
        labels: None,
        name: None,
    };
    let params = WatchParams {
        resource_version: Some(10),
        bookmarks: false,
        timeout: Duration::from_secs(3600),
        bookmark_interval: Duration::from_secs(3600),
        send_initial_events: false,
    };
    let mut lines = watch(cache, view, params, metrics, permit);
    assert!(cache.is_synced());
    stop();
    assert!(!cache.is_synced(), "reads are refused");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(line) = lines.recv().await {
            assert!(!line.starts_with(br#"{"type":"ERROR""#), "{line:?}");
        }
    })
    .await;
    assert!(ended.is_ok(), "the watch outlived the cache");
}

/// The per-cluster index always agrees with a scan of every entry's targets.
fn assert_views_agree(cache: &HubCache) {
    let all = cache.snapshot().entries;
    for cluster in ["c1", "c2", "c3"] {
        let scanned: Vec<&str> = all
            .iter()
            .filter(|e| e.visible_to(cluster))
            .map(|e| e.name.as_str())
            .collect();
        let indexed = cache.snapshot_for(cluster);
        let indexed: Vec<&str> = indexed.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(indexed, scanned, "the view of {cluster}");
    }
}

#[test]
fn the_view_index_follows_changes_deletions_policies_and_resets() {
    let p = policy(TWO);
    let cache = synced(&p);
    let to = |c: &'static str| [("akuity.io/managed-secret-allowed-clusters", c)];
    cache.apply(hub("b", 10, &to("c1,c2"), &[]));
    cache.apply(hub("a", 11, &to("c2"), &[]));
    cache.apply(hub(
        "own",
        12,
        &[],
        &[("secret-relay.io/owner", "cluster.c1")],
    ));
    cache.apply(hub(
        "sel",
        13,
        &[(
            "akuity.io/managed-secret-allowed-cluster-selector",
            "env=prod",
        )],
        &[],
    ));
    assert_views_agree(&cache);
    let c1 = cache.snapshot_for("c1");
    let names: Vec<&str> = c1.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["b", "own", "sel"], "in name order");
    cache.apply(hub("b", 14, &to("c2"), &[]));
    assert_views_agree(&cache);
    cache.delete(hub("a", 15, &to("c2"), &[]));
    assert_views_agree(&cache);
    cache.set_policy(
        policy("clusters:\n  - name: c1\n    labels: {env: dev}\n  - name: c2\n    labels: {env: prod}\n  - name: c3\n    labels: {env: prod}\n"),
        2,
    );
    assert_views_agree(&cache);
    assert_eq!(cache.snapshot_for("c3").entries.len(), 1);
    cache.replace(vec![hub("z", 20, &to("ALL"), &[])], Some(20));
    assert_views_agree(&cache);
    assert_eq!(cache.snapshot_for("c1").entries.len(), 1);
    cache.reset("argocd");
    assert!(cache.snapshot_for("c1").entries.is_empty());
}

// ---- watches of a view ------------------------------------------------------

mod watches {
    use std::time::Duration;

    use bytes::Bytes;
    use k8s_openapi::ByteString;
    use tokio::sync::mpsc;

    use super::*;
    use crate::watch::{ViewRequest, WatchParams, watch_waiting};

    const TO: &str = "akuity.io/managed-secret-allowed-clusters";

    /// `hub` with `value` as its one data key `k`.
    fn valued(name: &str, rv: u64, to: &str, value: &str) -> Secret {
        let mut s = hub(name, rv, &[(TO, to)], &[]);
        s.data = Some([("k".to_owned(), ByteString(value.as_bytes().to_vec()))].into());
        s
    }

    fn params(resource_version: Option<u64>, streaming: bool) -> WatchParams {
        WatchParams {
            resource_version,
            bookmarks: streaming,
            timeout: Duration::from_secs(3600),
            // Never while a test runs: only the BOOKMARKs a test causes.
            bookmark_interval: Duration::from_secs(3600),
            send_initial_events: streaming,
        }
    }

    /// A watch of `cluster`'s whole view; a streaming list waits `wait` at most.
    fn open_waiting(
        cache: &HubCache,
        cluster: &str,
        params: WatchParams,
        wait: Duration,
    ) -> mpsc::Receiver<Bytes> {
        let metrics = Arc::new(crate::metrics::Metrics::new(
            &mut prometheus_client::registry::Registry::default(),
        ));
        let permit = Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .unwrap();
        let view = ViewRequest {
            cluster: cluster.to_owned(),
            labels: None,
            name: None,
        };
        watch_waiting(cache, view, params, metrics, permit, wait)
    }

    fn open(cache: &HubCache, cluster: &str, params: WatchParams) -> mpsc::Receiver<Bytes> {
        open_waiting(cache, cluster, params, Duration::from_secs(30))
    }

    /// One watch event, parsed.
    #[derive(Debug, PartialEq)]
    struct Line {
        kind: String,
        name: String,
        rv: String,
        /// Data key `k`, for Secrets.
        value: Option<String>,
        object: serde_json::Value,
    }

    fn parse(line: &[u8]) -> Line {
        assert!(line.ends_with(b"\n"), "{line:?}");
        let event: serde_json::Value = serde_json::from_slice(line).unwrap();
        let object = event["object"].clone();
        let value = (event["type"] != "ERROR" && event["type"] != "BOOKMARK").then(|| {
            let secret: Secret = serde_json::from_value(object.clone()).unwrap();
            String::from_utf8(secret.data.unwrap()["k"].0.clone()).unwrap()
        });
        Line {
            kind: event["type"].as_str().unwrap().to_owned(),
            name: object["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            rv: object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            value,
            object,
        }
    }

    /// The next line; fails when the watch ends or nothing comes (a hang guard).
    async fn next(rx: &mut mpsc::Receiver<Bytes>) -> Line {
        let line = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no watch event within 10 s")
            .expect("the watch ended");
        parse(&line)
    }

    /// Lines up to and including the first one about `name`.
    async fn until(rx: &mut mpsc::Receiver<Bytes>, name: &str) -> Vec<Line> {
        let mut lines = Vec::new();
        loop {
            let line = next(rx).await;
            let done = line.name == name;
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Every line until the watch ends.
    async fn to_the_end(rx: &mut mpsc::Receiver<Bytes>) -> Vec<Line> {
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut lines = Vec::new();
            while let Some(line) = rx.recv().await {
                lines.push(parse(&line));
            }
            lines
        })
        .await
        .expect("the watch did not end")
    }

    fn kinds(lines: &[Line]) -> Vec<(&str, &str)> {
        lines
            .iter()
            .map(|l| (l.kind.as_str(), l.name.as_str()))
            .collect()
    }

    #[tokio::test]
    async fn a_deleted_event_carries_the_last_state_the_cluster_saw_live_and_replayed() {
        let p = policy(TWO);
        let cache = synced(&p);
        cache.apply(valued("rotated", 10, "c1,c2", "old-value"));
        cache.apply(valued("deleted", 11, "c1", "last-seen"));
        cache.apply(hub(
            "by-policy",
            12,
            &[(
                "akuity.io/managed-secret-allowed-cluster-selector",
                "env=prod",
            )],
            &[],
        ));
        let mut c1 = open(&cache, "c1", params(Some(12), false));
        let mut c2 = open(&cache, "c2", params(Some(12), false));

        // Un-targeted from c1 and rotated in one update: c1 gets the old value, at the
        // update's resourceVersion; c2, still a target, gets the new one.
        cache.apply(valued("rotated", 13, "c2", "new-value"));
        // Deleted, with a final object that differs from what c1 last saw.
        cache.delete(valued("deleted", 14, "c1", "final-state"));
        // A policy takes by-policy out of c1's view (c1 is no longer prod).
        cache.set_policy(
            policy(
                "clusters:\n  - name: c1\n    labels: {env: dev}\n  - name: c2\n    labels: {env: dev}\n",
            ),
            2,
        );
        cache.apply(valued("marker", 15, "c1,c2", "marker"));

        let live = until(&mut c1, "marker").await;
        assert_eq!(
            kinds(&live),
            [
                ("DELETED", "rotated"),
                ("DELETED", "deleted"),
                ("DELETED", "by-policy"),
                ("ADDED", "marker")
            ]
        );
        assert_eq!(live[0].value.as_deref(), Some("old-value"));
        assert_eq!(live[0].rv, "13", "the resume point advances");
        assert_eq!(live[1].value.as_deref(), Some("last-seen"));
        assert_eq!(live[1].rv, "14");
        assert_eq!(live[2].value.as_deref(), Some("value"));
        assert_eq!(live[2].rv, "14", "the policy event's resourceVersion");
        // The rest of the object is the last state too.
        assert_eq!(
            live[0].object["metadata"]["annotations"][TO], "c1,c2",
            "{:?}",
            live[0].object
        );
        let modified = until(&mut c2, "marker").await;
        assert_eq!(
            kinds(&modified),
            [("MODIFIED", "rotated"), ("ADDED", "marker")]
        );
        assert_eq!(modified[0].value.as_deref(), Some("new-value"));

        // A watch resumed from before gets exactly the same lines, out of the history.
        let mut replayed = open(&cache, "c1", params(Some(12), false));
        assert_eq!(until(&mut replayed, "marker").await, live);
    }

    /// Two clusters; c2 is taken out of the policy and put back.
    const WITHOUT_C2: &str = "clusters:\n  - name: c1\n    labels: {env: prod}\n";

    #[tokio::test]
    async fn a_resumed_watch_replays_a_past_removal_of_a_cluster_that_came_back() {
        let cache = synced(&policy(TWO));
        cache.apply(valued("mine", 10, "c2", "v"));
        cache.apply(valued("shared", 11, "ALL", "v"));
        cache.set_policy(policy(WITHOUT_C2), 2);
        cache.set_policy(policy(TWO), 3);
        // The list c2 makes once it is back is at 11, as was the removal: a resume
        // from it replays the removal and the return (policy events at 11 included).
        let mut lines = open(&cache, "c2", params(Some(11), false));
        cache.apply(valued("later", 12, "c2", "v"));
        let replayed = until(&mut lines, "later").await;
        assert_eq!(
            kinds(&replayed),
            [
                ("DELETED", "mine"),
                ("DELETED", "shared"),
                ("ADDED", "mine"),
                ("ADDED", "shared"),
                ("ADDED", "later")
            ],
            "no 403: the watch goes on"
        );
        // So does one from before the removal.
        let mut older = open(&cache, "c2", params(Some(10), false));
        let lines = until(&mut older, "later").await;
        assert_eq!(
            kinds(&lines),
            [
                ("ADDED", "shared"),
                ("DELETED", "mine"),
                ("DELETED", "shared"),
                ("ADDED", "mine"),
                ("ADDED", "shared"),
                ("ADDED", "later")
            ]
        );
    }

    #[tokio::test]
    async fn nothing_follows_the_error_of_a_removal_live_or_replayed() {
        let cache = synced(&policy(TWO));
        cache.apply(valued("mine", 10, "c2", "v"));
        let mut live = open(&cache, "c2", params(None, false));
        cache.set_policy(policy(WITHOUT_C2), 2);
        // Back, a change c2 could see, and out again: c2 is not registered now.
        cache.set_policy(policy(TWO), 3);
        cache.apply(valued("later", 11, "c2", "v"));
        cache.set_policy(policy(WITHOUT_C2), 4);

        let lines = to_the_end(&mut live).await;
        assert_eq!(kinds(&lines), [("ADDED", "mine"), ("ERROR", "")]);
        assert_eq!(lines[1].object["code"], 403);

        // A replay for a cluster that is not registered now ends at the first
        // removal, as the live watch did.
        let mut replayed = open(&cache, "c2", params(Some(10), false));
        let lines = to_the_end(&mut replayed).await;
        assert_eq!(kinds(&lines), [("ERROR", "")], "{lines:?}");
        assert_eq!(lines[0].object["code"], 403);
        // And a 410 is the whole answer too.
        let small = HubCache::new(1);
        small.reset("argocd");
        small.set_policy(policy(TWO), 1);
        small.replace(vec![], Some(10));
        let mut expired = open(&small, "c2", params(Some(1), false));
        let lines = to_the_end(&mut expired).await;
        assert_eq!(kinds(&lines), [("ERROR", "")]);
        assert_eq!(lines[0].object["code"], 410);
    }

    #[tokio::test]
    async fn a_streaming_list_starts_from_the_current_view_at_any_resource_version() {
        let cache = HubCache::new(3);
        cache.reset("argocd");
        cache.set_policy(policy(TWO), 1);
        cache.replace(vec![valued("a", 10, "c1", "first")], Some(10));
        cache.apply(valued("b", 11, "c1", "v"));
        cache.apply(valued("hidden", 12, "c2", "v"));
        cache.apply(valued("a", 13, "c1", "second"));
        cache.apply(valued("c", 14, "c2", "v"));
        cache.apply(valued("c", 15, "c2", "v2"));
        // History holds 13..15: 10 and 11 would be 410 Expired for a plain watch.
        assert!(matches!(cache.resume(10).0, Resume::Expired));
        for from in [None, Some(0), Some(10), Some(11), Some(13), Some(15)] {
            let at = cache.resource_version();
            let mut lines = open(&cache, "c1", params(from, true));
            let first = [next(&mut lines).await, next(&mut lines).await];
            assert_eq!(kinds(&first), [("ADDED", "a"), ("ADDED", "b")], "{from:?}");
            assert_eq!(first[0].value.as_deref(), Some("second"), "{from:?}");
            let end = next(&mut lines).await;
            assert_eq!(end.kind, "BOOKMARK", "{from:?}");
            assert_eq!(
                end.rv,
                at.to_string(),
                "{from:?}: at the cache's resourceVersion"
            );
            assert_eq!(
                end.object["metadata"]["annotations"]["k8s.io/initial-events-end"], "true",
                "{from:?}"
            );
            // Then live events.
            let name = format!("live-{}", from.unwrap_or(u64::MAX));
            cache.apply(valued(&name, at + 1, "c1", "v"));
            assert_eq!(kinds(&[next(&mut lines).await]), [("ADDED", name.as_str())]);
            cache.delete(valued(&name, at + 2, "c1", "v"));
            assert_eq!(
                kinds(&[next(&mut lines).await]),
                [("DELETED", name.as_str())]
            );
        }
    }

    #[tokio::test]
    async fn a_streaming_list_waits_for_the_cache_to_reach_its_resource_version() {
        let cache = synced(&policy(TWO));
        cache.apply(valued("a", 10, "c1", "v"));
        let mut lines = open(&cache, "c1", params(Some(12), true));
        cache.apply(valued("b", 11, "c1", "v"));
        cache.apply(valued("c", 12, "c1", "v"));
        // Served at 12: everything up to it is in the initial events.
        let initial = until(&mut lines, "").await;
        assert_eq!(
            kinds(&initial),
            [
                ("ADDED", "a"),
                ("ADDED", "b"),
                ("ADDED", "c"),
                ("BOOKMARK", "")
            ]
        );
        assert_eq!(initial[3].rv, "12");
    }

    #[tokio::test]
    async fn a_streaming_list_newer_than_the_cache_gets_too_large_resource_version() {
        let cache = synced(&policy(TWO));
        cache.apply(valued("a", 10, "c1", "v"));
        let mut lines = open_waiting(
            &cache,
            "c1",
            params(Some(100), true),
            Duration::from_millis(50),
        );
        let lines = to_the_end(&mut lines).await;
        assert_eq!(kinds(&lines), [("ERROR", "")], "{lines:?}");
        let status = &lines[0].object;
        assert_eq!(status["code"], 504);
        assert_eq!(status["reason"], "Timeout");
        assert_eq!(
            status["message"],
            "Timeout: Too large resource version: 100, current: 10"
        );
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "ResourceVersionTooLarge"
        );
        assert_eq!(status["details"]["retryAfterSeconds"], 1);
    }
}

/// What the per-cluster quota counts: the copies each cluster owns and their size,
/// kept as copies come, change owner, go, and under another policy.
#[test]
fn the_cache_counts_what_each_cluster_owns() {
    let p = policy(TWO);
    let cache = synced(&p);
    let owned_by = |c| ("secret-relay.io/owner", c);
    cache.apply(hub("a", 10, &[], &[owned_by("cluster.c1")]));
    cache.apply(hub("b", 11, &[], &[owned_by("cluster.c1")]));
    cache.apply(hub("c", 12, &[], &[owned_by("cluster.c2")]));
    cache.apply(hub("d", 13, &[], &[owned_by("control-plane")]));
    let (n, bytes) = cache.owned_by("c1");
    assert_eq!(n, 2);
    assert_eq!(bytes, cache.get("a").unwrap().json.len() * 2);
    assert_eq!(cache.owned_by("c2").0, 1);
    // Another owner, a deletion, and a policy that no longer registers c1.
    cache.apply(hub("b", 14, &[], &[owned_by("cluster.c2")]));
    assert_eq!((cache.owned_by("c1").0, cache.owned_by("c2").0), (1, 2));
    cache.delete(hub("c", 15, &[], &[owned_by("cluster.c2")]));
    assert_eq!(cache.owned_by("c2").0, 1);
    cache.set_policy(
        policy("clusters:\n  - name: c2\n    labels: {env: dev}\n"),
        2,
    );
    assert_eq!((cache.owned_by("c1").0, cache.owned_by("c2").0), (1, 1));
    cache.reset("argocd");
    assert_eq!(cache.owned_by("c2"), (0, 0));
}
