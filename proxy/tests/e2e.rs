//! The relay end to end, on the sandbox and on a real kube-apiserver with the webhook
//! registered through the repository's manifests: every up-sync, release and
//! down-sync rule through kube-rs and kubectl as a cluster, policy hot reload
//! changing the views, resume on another replica, and the relay's least privilege.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use secret_relay_testkit::{Flavor, RelayHandle, Stack, StackOptions, on_both, within};

const POLICY: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
  - name: cluster2
    labels: { env: staging }
secretSources:
  - clusterSelector: env=prod
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
";

const POLICY_BOTH_PROD: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
  - name: cluster2
    labels: { env: prod }
secretSources:
  - clusterSelector: env=prod
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
";

const POLICY_WITHOUT_CLUSTER2: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
secretSources:
  - clusterSelector: env=prod
";

on_both!(
    up_sync_writes_are_decided_by_policy_and_stamped_by_the_webhook,
    adoption_locks_control_plane_edits_and_a_release_returns_the_data,
    each_cluster_sees_its_view_and_a_policy_reload_changes_it_live,
    a_watch_resumes_on_another_relay_replica,
    a_streaming_list_with_a_known_version_starts_from_the_current_view,
    a_cluster_back_in_the_policy_resumes_its_watch_from_before,
    kubectl_works_as_a_cluster_through_the_relay,
);
// Refusals (unregistered clusters, impersonation headers, other namespaces and
// resources, path tricks, limits) are attacks in tests/attacks.rs, each checked for
// its status, log line and metric.

async fn stack(flavor: Flavor) -> Stack {
    Stack::start(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
    )
    .await
}

fn secret(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Secret {
    secret_relay_testkit::secret_with_data(
        name,
        labels,
        annotations,
        &[
            ("url", "https://example.invalid/repo.git"),
            ("password", "s3cr3t-value"),
        ],
    )
}

fn opted_in(name: &str) -> Secret {
    secret(
        name,
        &[
            ("akuity.io/secret-sync", "true"),
            ("argocd.argoproj.io/secret-type", "repo-creds"),
        ],
        &[],
    )
}

fn label<'a>(s: &'a Secret, key: &str) -> Option<&'a str> {
    s.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'a>(s: &'a Secret, key: &str) -> Option<&'a str> {
    s.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn denied_with(err: kube::Error, code: u16, needle: &str) {
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, code, "{status:?}");
            assert!(
                status.message.contains(needle),
                "{} should mention {needle}",
                status.message
            );
        }
        other => panic!("expected an API error, got {other}"),
    }
}

async fn relay_api(stack: &Stack, relay: &RelayHandle, cluster: &str) -> Api<Secret> {
    Api::namespaced(stack.relay_client(relay, cluster).await, "argocd")
}

async fn up_sync_writes_are_decided_by_policy_and_stamped_by_the_webhook(flavor: Flavor) {
    let stack = stack(flavor).await;
    let relay = stack.start_relay().await;
    let c1 = relay_api(&stack, &relay, "cluster1").await;
    let c2 = relay_api(&stack, &relay, "cluster2").await;
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");

    // Allowed: a repo-creds Secret from a prod cluster becomes a hub copy it owns.
    let created = c1
        .create(&PostParams::default(), &opted_in("repo-creds"))
        .await
        .unwrap();
    assert_eq!(
        label(&created, "secret-relay.io/owner"),
        Some("cluster.cluster1")
    );
    // Nothing of its values is stamped on it.
    assert_eq!(annotation(&created, "secret-relay.io/digest"), None);
    let stored = hub.get("repo-creds").await.unwrap();
    assert_eq!(
        label(&stored, "secret-relay.io/owner"),
        Some("cluster.cluster1")
    );
    // Its owner updates it.
    let mut update = opted_in("repo-creds");
    update.string_data = Some([("password".to_owned(), "rotated".to_owned())].into());
    let updated = c1
        .patch(
            "repo-creds",
            &PatchParams::default(),
            &Patch::Merge(&update),
        )
        .await
        .unwrap();
    assert_eq!(
        updated.data.as_ref().unwrap()["password"].0,
        b"rotated".to_vec()
    );
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );

    // Denied by the relay's policy check, with the rule, before reaching the API server.
    let not_opted = secret(
        "plain",
        &[("argocd.argoproj.io/secret-type", "repo-creds")],
        &[],
    );
    denied_with(
        c1.create(&PostParams::default(), &not_opted)
            .await
            .unwrap_err(),
        403,
        "not-opted-in",
    );
    let other_type = secret("other", &[("akuity.io/secret-sync", "true")], &[]);
    denied_with(
        c1.create(&PostParams::default(), &other_type)
            .await
            .unwrap_err(),
        403,
        "no-matching-source",
    );
    denied_with(
        c2.create(&PostParams::default(), &opted_in("from-staging"))
            .await
            .unwrap_err(),
        403,
        "no-matching-source",
    );
    let blocked = opted_in("argocd-secret");
    denied_with(
        c1.create(&PostParams::default(), &blocked)
            .await
            .unwrap_err(),
        403,
        "blocked-name",
    );
    let cluster_secret = secret(
        "a-cluster",
        &[
            ("akuity.io/secret-sync", "true"),
            ("argocd.argoproj.io/secret-type", "cluster"),
        ],
        &[],
    );
    denied_with(
        c1.create(&PostParams::default(), &cluster_secret)
            .await
            .unwrap_err(),
        403,
        "blocked-label",
    );
    assert!(hub.get_opt("plain").await.unwrap().is_none());
    assert!(hub.get_opt("argocd-secret").await.unwrap().is_none());

    // Another cluster may not write or delete cluster1's copy: it is not even in its view.
    stack.set_policy(POLICY_BOTH_PROD).await;
    Stack::relay_generation(&relay, 2).await;
    denied_with(
        c2.patch(
            "repo-creds",
            &PatchParams::default(),
            &Patch::Merge(&opted_in("repo-creds")),
        )
        .await
        .unwrap_err(),
        404,
        "not found",
    );
    denied_with(
        c2.delete("repo-creds", &DeleteParams::default())
            .await
            .unwrap_err(),
        404,
        "not found",
    );

    // The owner's release deletes the copy it created.
    c1.delete("repo-creds", &DeleteParams::default())
        .await
        .unwrap();
    assert!(hub.get_opt("repo-creds").await.unwrap().is_none());
    relay.stop().await;
}

async fn adoption_locks_control_plane_edits_and_a_release_returns_the_data(flavor: Flavor) {
    let stack = stack(flavor).await;
    let relay = stack.start_relay().await;
    let admin = stack.cluster.client().await;
    let hub: Api<Secret> = Api::namespaced(admin, "argocd");
    let c1 = relay_api(&stack, &relay, "cluster1").await;
    for name in [
        "argocd-notifications-secret",
        "argocd-image-updater-secret",
        "application-set-secret",
    ] {
        hub.create(&PostParams::default(), &secret(name, &[], &[]))
            .await
            .unwrap();
        relay.wait_cached(name).await;
        let adopt = secret(
            name,
            &[
                ("akuity.io/secret-sync", "true"),
                ("argocd.argoproj.io/secret-type", "repository"),
            ],
            &[],
        );
        let adopted = c1
            .replace(
                name,
                &PostParams::default(),
                &with_rv(adopt, &hub.get(name).await.unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(
            label(&adopted, "secret-relay.io/owner"),
            Some("cluster.cluster1"),
            "{name}"
        );
        assert_eq!(
            annotation(&adopted, "secret-relay.io/adopted"),
            Some("true"),
            "{name}"
        );
        // The control plane can no longer edit it.
        let err = hub
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await
            .unwrap_err();
        denied_with(err, 403, "cluster1");
        wait_cached_rv(&relay, name, &adopted).await;
        // Release returns it with its data.
        c1.delete(name, &DeleteParams::default()).await.unwrap();
        let back = hub.get(name).await.unwrap();
        assert_eq!(label(&back, "secret-relay.io/owner"), None, "{name}");
        assert_eq!(annotation(&back, "secret-relay.io/adopted"), None, "{name}");
        assert_eq!(back.data, adopted.data, "{name}: the data is kept");
        // The control plane owns it again.
        hub.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    }
    relay.stop().await;
}

fn with_rv(mut s: Secret, current: &Secret) -> Secret {
    s.metadata.resource_version = current.metadata.resource_version.clone();
    s
}

async fn wait_cached_rv(relay: &RelayHandle, name: &str, at: &Secret) {
    let want = secret_relay_proxy::parse_rv(at.metadata.resource_version.as_deref());
    let cache = relay.started.cache.clone();
    within(&format!("{name} at {want} in the relay's cache"), async {
        let mut events = cache.subscribe();
        while cache.get(name).is_none_or(|e| e.rv < want) {
            let _ = events.recv().await;
        }
    })
    .await;
}

async fn names(api: &Api<Secret>) -> Vec<String> {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect()
}

/// Reads watch events until one satisfies `pred`.
async fn until_event<S>(stream: &mut S, what: &str, pred: impl Fn(&WatchEvent<Secret>) -> bool)
where
    S: futures::Stream<Item = kube::Result<WatchEvent<Secret>>> + Unpin,
{
    within(what, async {
        while let Some(event) = stream.try_next().await.unwrap() {
            if pred(&event) {
                return;
            }
        }
        panic!("the watch ended before {what}");
    })
    .await;
}

fn is(kind: &str, name: &str) -> impl Fn(&WatchEvent<Secret>) -> bool {
    let kind = kind.to_owned();
    let name = name.to_owned();
    move |e| match (kind.as_str(), e) {
        ("ADDED", WatchEvent::Added(s))
        | ("MODIFIED", WatchEvent::Modified(s))
        | ("DELETED", WatchEvent::Deleted(s)) => s.metadata.name.as_deref() == Some(name.as_str()),
        _ => false,
    }
}

async fn each_cluster_sees_its_view_and_a_policy_reload_changes_it_live(flavor: Flavor) {
    let stack = stack(flavor).await;
    let relay = stack.start_relay().await;
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    let c1 = relay_api(&stack, &relay, "cluster1").await;
    let c2 = relay_api(&stack, &relay, "cluster2").await;

    let mut w2 = c2
        .watch(&WatchParams::default().timeout(290), "0")
        .await
        .unwrap()
        .boxed();
    hub.create(
        &PostParams::default(),
        &secret(
            "to-all",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
        ),
    )
    .await
    .unwrap();
    hub.create(
        &PostParams::default(),
        &secret(
            "to-prod",
            &[],
            &[(
                "akuity.io/managed-secret-allowed-cluster-selector",
                "env=prod",
            )],
        ),
    )
    .await
    .unwrap();
    hub.create(
        &PostParams::default(),
        &secret(
            "to-c2",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "cluster2")],
        ),
    )
    .await
    .unwrap();
    hub.create(&PostParams::default(), &secret("nowhere", &[], &[]))
        .await
        .unwrap();
    until_event(&mut w2, "cluster2 sees to-c2", is("ADDED", "to-c2")).await;
    relay.wait_cached("nowhere").await;

    assert_eq!(names(&c1).await, vec!["to-all", "to-prod"]);
    assert_eq!(names(&c2).await, vec!["to-all", "to-c2"]);
    assert!(
        c1.get_opt("to-c2").await.unwrap().is_none(),
        "out of view is not found"
    );
    assert!(c2.get_opt("nowhere").await.unwrap().is_none());
    assert_eq!(
        c1.get("to-prod").await.unwrap().data.unwrap()["password"].0,
        b"s3cr3t-value"
    );
    // Label selectors apply within the view.
    let selected = c1
        .list(&ListParams::default().labels("nothing=here"))
        .await
        .unwrap();
    assert!(selected.items.is_empty());

    // cluster2 becomes prod: to-prod enters its view without a reapply.
    stack.set_policy(POLICY_BOTH_PROD).await;
    until_event(
        &mut w2,
        "to-prod entering cluster2's view",
        is("ADDED", "to-prod"),
    )
    .await;
    // The managed secret stops targeting cluster2: DELETED in its view.
    hub.patch("to-c2", &PatchParams::default(), &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"akuity.io/managed-secret-allowed-clusters": "cluster1"}}})))
        .await
        .unwrap();
    until_event(
        &mut w2,
        "to-c2 leaving cluster2's view",
        is("DELETED", "to-c2"),
    )
    .await;

    // cluster2 is removed from the policy: its open watch ends and it is refused.
    stack.set_policy(POLICY_WITHOUT_CLUSTER2).await;
    within("cluster2's watch to end", async {
        loop {
            match w2.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(WatchEvent::Error(e))) => {
                    assert_eq!(e.code, 403, "{e:?}");
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    denied_with(
        c2.list(&ListParams::default()).await.unwrap_err(),
        403,
        "not registered",
    );
    relay.stop().await;
}

async fn a_watch_resumes_on_another_relay_replica(flavor: Flavor) {
    let stack = stack(flavor).await;
    let a = stack.start_relay().await;
    let b = stack.start_relay().await;
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    let on_a = relay_api(&stack, &a, "cluster1").await;
    let on_b = relay_api(&stack, &b, "cluster1").await;
    hub.create(
        &PostParams::default(),
        &secret(
            "first",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
        ),
    )
    .await
    .unwrap();
    // Both replicas: the list is A's, the resume B's.
    a.wait_cached("first").await;
    b.wait_cached("first").await;
    let list = on_a.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.clone().unwrap();
    assert!(
        list.items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some("first"))
    );
    a.stop().await;
    // A change while the client is away, then a resume from A's resourceVersion on B.
    hub.create(
        &PostParams::default(),
        &secret(
            "second",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
        ),
    )
    .await
    .unwrap();
    let mut w = on_b
        .watch(&WatchParams::default().timeout(290), &rv)
        .await
        .unwrap()
        .boxed();
    until_event(&mut w, "second after the resume", is("ADDED", "second")).await;
    // A resourceVersion the relay's history no longer covers is 410 Expired.
    let mut old = on_b
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match within("the 410", old.next()).await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    b.stop().await;
}

/// Reads watch events until one satisfies `pred`, failing on an ERROR event.
async fn until_event_no_error<S>(
    stream: &mut S,
    what: &str,
    pred: impl Fn(&WatchEvent<Secret>) -> bool,
) where
    S: futures::Stream<Item = kube::Result<WatchEvent<Secret>>> + Unpin,
{
    until_event(stream, what, |e| {
        if let WatchEvent::Error(status) = e {
            panic!("an ERROR before {what}: {status:?}");
        }
        pred(e)
    })
    .await;
}

/// Waits until `relay`'s cache holds policy generation `generation` (the relay's
/// policy source may have it a moment before).
async fn cache_generation(relay: &RelayHandle, generation: u64) {
    let cache = relay.started.cache.clone();
    within(
        &format!("policy generation {generation} in the cache"),
        async {
            let mut events = cache.subscribe();
            while cache.generation() < generation {
                let _ = events.recv().await;
            }
        },
    )
    .await;
}

/// client-go's reflectors ask for a streaming list (`sendInitialEvents=true`) with the
/// resourceVersion they know whenever they restart: they get the current view as
/// ADDED events and the initial-events-end BOOKMARK, as from kube-apiserver, not a
/// replay of what changed since.
async fn a_streaming_list_with_a_known_version_starts_from_the_current_view(flavor: Flavor) {
    let stack = stack(flavor).await;
    let relay = stack.start_relay().await;
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    let c1 = relay_api(&stack, &relay, "cluster1").await;
    let to_all = [("akuity.io/managed-secret-allowed-clusters", "ALL")];
    hub.create(&PostParams::default(), &secret("stream-one", &[], &to_all))
        .await
        .unwrap();
    relay.wait_cached("stream-one").await;
    let known = c1
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    // Changes after the version the client knows.
    hub.create(&PostParams::default(), &secret("stream-two", &[], &to_all))
        .await
        .unwrap();
    let changed = hub
        .patch(
            "stream-one",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"changed": "yes"}}})),
        )
        .await
        .unwrap();
    wait_cached_rv(&relay, "stream-one", &changed).await;

    let mut w = c1
        .watch(&WatchParams::streaming_lists().timeout(290), &known)
        .await
        .unwrap()
        .boxed();
    let mut added = Vec::new();
    let end = within("the initial events", async {
        loop {
            match w.try_next().await.unwrap() {
                Some(WatchEvent::Added(s)) => added.push(s),
                Some(WatchEvent::Bookmark(b)) => return b,
                other => panic!("expected ADDED events then a BOOKMARK, got {other:?}"),
            }
        }
    })
    .await;
    let names: Vec<&str> = added
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["stream-one", "stream-two"]);
    assert_eq!(
        label(&added[0], "changed"),
        Some("yes"),
        "the current state"
    );
    assert_eq!(
        end.metadata
            .annotations
            .get("k8s.io/initial-events-end")
            .map(String::as_str),
        Some("true")
    );
    assert!(
        secret_relay_proxy::parse_rv(Some(&end.metadata.resource_version))
            >= secret_relay_proxy::parse_rv(changed.metadata.resource_version.as_deref()),
        "the bookmark is at the state sent"
    );
    // Then live events.
    hub.delete("stream-two", &DeleteParams::default())
        .await
        .unwrap();
    until_event_no_error(&mut w, "stream-two's deletion", is("DELETED", "stream-two")).await;
    relay.stop().await;
}

/// A cluster removed from the policy and added back (the agent's watch broke on the
/// removal) resumes a watch from a resourceVersion from before its removal, or from
/// a list made after it came back: the replayed removal does not end the watch.
async fn a_cluster_back_in_the_policy_resumes_its_watch_from_before(flavor: Flavor) {
    let stack = stack(flavor).await;
    let relay = stack.start_relay().await;
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    let c2 = relay_api(&stack, &relay, "cluster2").await;
    hub.create(
        &PostParams::default(),
        &secret(
            "back-shared",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
        ),
    )
    .await
    .unwrap();
    relay.wait_cached("back-shared").await;
    let before = c2
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    stack.set_policy(POLICY_WITHOUT_CLUSTER2).await;
    cache_generation(&relay, 2).await;
    denied_with(
        c2.list(&ListParams::default()).await.unwrap_err(),
        403,
        "not registered",
    );
    stack.set_policy(POLICY).await;
    cache_generation(&relay, 3).await;
    let after = c2.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        after
            .items
            .iter()
            .filter_map(|s| s.metadata.name.as_deref())
            .collect::<Vec<_>>(),
        ["back-shared"]
    );
    let after = after.metadata.resource_version.unwrap();

    let params = WatchParams::default().timeout(290);
    let mut from_before = c2.watch(&params, &before).await.unwrap().boxed();
    let mut from_after = c2.watch(&params, &after).await.unwrap().boxed();
    hub.create(
        &PostParams::default(),
        &secret(
            "back-later",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "cluster2")],
        ),
    )
    .await
    .unwrap();
    until_event_no_error(
        &mut from_before,
        "back-later, resumed from before",
        is("ADDED", "back-later"),
    )
    .await;
    until_event_no_error(
        &mut from_after,
        "back-later, resumed from the list after",
        is("ADDED", "back-later"),
    )
    .await;
    relay.stop().await;
}

async fn kubectl_works_as_a_cluster_through_the_relay(flavor: Flavor) {
    let stack = stack(flavor).await;
    let relay = stack.start_relay().await;
    let Some(kubectl) = secret_relay_testkit::kubectl() else {
        panic!("no kubectl found: set KUBECTL_BINARIES or put kubectl on PATH");
    };
    let kubeconfig = stack.relay_kubeconfig(&relay, "cluster1");
    let run = |args: &[&str]| {
        std::process::Command::new(&kubectl)
            .env("HOME", stack.cluster.dir())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap()
    };
    let manifest = stack.cluster.dir().join("repo.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: from-kubectl\n  namespace: argocd\n  labels:\n    akuity.io/secret-sync: \"true\"\n    argocd.argoproj.io/secret-type: repository\nstringData:\n  url: https://example.invalid/x.git\n",
    )
    .unwrap();
    let out = run(&["apply", "-f", manifest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    let stored = hub.get("from-kubectl").await.unwrap();
    assert_eq!(
        label(&stored, "secret-relay.io/owner"),
        Some("cluster.cluster1")
    );
    relay.wait_cached("from-kubectl").await;
    let out = run(&["get", "secrets", "-o", "name"]);
    assert!(
        out.status.success(),
        "get: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("secret/from-kubectl"));
    // An update by apply with kubectl's OpenAPI v3 patch path turned off: it finds no
    // schema of the kind in what the relay describes and patches by its built-in
    // types. (The media type of the relay's OpenAPI v2, which Go's parser must read
    // when kubectl falls back to it, is held in tests/attacks.rs.)
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: from-kubectl\n  namespace: argocd\n  labels:\n    akuity.io/secret-sync: \"true\"\n    argocd.argoproj.io/secret-type: repository\nstringData:\n  url: https://example.invalid/y.git\n",
    )
    .unwrap();
    let out = std::process::Command::new(&kubectl)
        .env("HOME", stack.cluster.dir())
        .env("KUBECTL_OPENAPIV3_PATCH", "false")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["apply", "-f", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apply with OpenAPI v2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "apply",
        "--server-side",
        "--field-manager=agent",
        "-f",
        manifest.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "apply --server-side: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A watch sees the object, then kubectl's own timeout ends it.
    let out = run(&["get", "secrets", "-w", "--request-timeout=3s", "-o", "name"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("secret/from-kubectl"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Denials come back as the relay wrote them.
    let out = run(&["get", "secrets", "-n", "kube-system"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["delete", "secret", "from-kubectl"]);
    assert!(
        out.status.success(),
        "delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(hub.get_opt("from-kubectl").await.unwrap().is_none());
    relay.stop().await;
}

/// The repository's RBAC for the relay, applied to a real kube-apiserver: it may
/// impersonate exactly the registered cluster users in their group, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_account_can_impersonate_only_cluster_users_on_a_real_control_plane() {
    if Flavor::Real.skipped("relay RBAC") {
        return;
    }
    let stack = stack(Flavor::Real).await;
    let kubeconfig = stack
        .cluster
        .service_account_kubeconfig(secret_relay_testkit::SYSTEM_NAMESPACE, "secret-relay")
        .await;
    let as_user = |user: &'static str, groups: &'static [&'static str]| {
        let kubeconfig = kubeconfig.clone();
        async move {
            let client =
                secret_relay_testkit::client_from_kubeconfig(&kubeconfig, Some((user, groups)))
                    .await;
            Api::<Secret>::namespaced(client, "argocd")
                .list(&ListParams::default())
                .await
        }
    };
    as_user("secret-relay:cluster:cluster1", &["secret-relay:clusters"])
        .await
        .expect("the relay impersonates a registered cluster");
    for (user, groups) in [
        ("system:admin", &["secret-relay:clusters"][..]),
        ("secret-relay:cluster:cluster1", &["system:masters"][..]),
        (
            "secret-relay:cluster:not-listed",
            &["secret-relay:clusters"][..],
        ),
        ("alice", &[][..]),
        (
            "system:serviceaccount:kube-system:namespace-controller",
            &[][..],
        ),
    ] {
        let err = as_user(user, groups).await.unwrap_err();
        match err {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 403, "{user} {groups:?}: {s:?}");
                assert!(s.message.contains("impersonate"), "{user}: {}", s.message);
            }
            other => panic!("{user}: {other}"),
        }
    }
    // As itself: reads hub copies, cannot create them (its RBAC lets it create its
    // hand-back record; the webhook refuses every other Secret it writes as itself,
    // with the rule), cannot read other namespaces.
    let own = secret_relay_testkit::client_from_kubeconfig(&kubeconfig, None).await;
    Api::<Secret>::namespaced(own.clone(), "argocd")
        .list(&ListParams::default())
        .await
        .unwrap();
    let err = Api::<Secret>::namespaced(own.clone(), "argocd")
        .create(&PostParams::default(), &opted_in("by-the-relay"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403 && s.message.contains("ownership-lock")),
        "{err}"
    );
    let err = Api::<Secret>::namespaced(own, "kube-system")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err}"
    );
}
