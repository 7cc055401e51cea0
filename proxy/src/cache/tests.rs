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
    use std::time::Duration;

    use crate::watch::{ViewRequest, WatchParams, watch};

    let cache = synced(&policy(TWO));
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
    let mut lines = watch(&cache, view, params, metrics, permit);
    assert!(cache.is_synced());
    cache.close();
    assert!(!cache.is_synced(), "reads are refused once closed");
    // The watch ends without an ERROR line: its client resumes elsewhere, no relist.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(line) = lines.recv().await {
            assert!(!line.starts_with(br#"{"type":"ERROR""#), "{line:?}");
        }
    })
    .await;
    assert!(ended.is_ok(), "the watch outlived the cache's closing");
    cache.closed().await;
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
