//! Faults during sync: each peer of an agent stops and comes back (the relay, the
//! control plane's kube-apiserver, the managed cluster's own API server), and watches
//! get 410 Expired. In each, Secrets change while the peer is away, on every side that
//! is still up, and the test proves that
//!
//! - no update is lost: every create, update and delete arrives once the peer is back;
//! - nothing is deleted spuriously: while the peer is away, down copies and hub copies
//!   stay (shown after the agent has observably handled a later change, not after a
//!   sleep), and afterwards the untouched ones are the very same objects (same uid:
//!   never deleted and written again).
//!
//! The agents here resync only once an hour, so convergence comes from their retries,
//! watches and relists, never from the periodic safety net.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use secret_relay_agent::Agent;
use secret_relay_proxy::Limits;
use secret_relay_runtime::{CancellationToken, Currency};
use secret_relay_testkit::{
    Cutter, Flavor, OPT_IN, Options, REPO_CREDS, RelayHandle, RelayOptions, Stack, StackOptions,
    TO_ALL, TestCluster, appears, disappears, label, on_both, password, secret, within,
};

const POLICY: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
secretSources:
  - clusterSelector: env=prod
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
";

const OWNER: &str = "secret-relay.io/owner";

/// Managed secrets on the hub, with down copies on cluster1 before the fault.
const HUB_SEEDED: [&str; 3] = ["keep", "change", "drop"];
/// Opted-in Secrets on cluster1, with hub copies before the fault.
const LOCAL_SEEDED: [&str; 3] = ["up-keep", "up-change", "up-drop"];

/// A control plane with the webhook and one relay, and cluster1 with its agent.
struct Fixture {
    // First: the agent stops before the servers it talks to.
    _agent_stop: StopOnDrop,
    agent: Arc<Agent>,
    relay: Option<RelayHandle>,
    relay_addr: SocketAddr,
    /// Between the relay and the control plane's API server, when asked for.
    upstream: Option<Cutter>,
    /// Between the agent and its own API server, when asked for.
    local_link: Option<Cutter>,
    local: TestCluster,
    stack: Stack,
}

/// Where the fixture puts a [`Cutter`].
#[derive(Clone, Copy, Default)]
struct Links {
    /// The relay reaches the control plane through one.
    upstream: bool,
    /// The agent reaches its own API server through one.
    local: bool,
}

/// The uids of the seeded objects, to prove they were never deleted and re-created.
struct Seeded {
    down_copies: BTreeMap<String, String>,
    hub_copies: BTreeMap<String, String>,
}

/// Cancels its token when dropped.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// FAULTS_LOG=secret_relay_agent=debug,... shows what the agent and the relay did.
fn log_as_asked() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FAULTS_LOG"))
        .with_test_writer()
        .try_init();
}

async fn fixture(flavor: Flavor, links: Links) -> Fixture {
    log_as_asked();
    let stack = stack_of(flavor).await;
    let upstream = if links.upstream {
        Some(Cutter::start(addr_of(&stack.cluster.url())).await)
    } else {
        None
    };
    // These scenarios prove the cache and the agent lose nothing while the link is
    // cut, whatever the machine's load makes the cut last; a relay that goes stale
    // meanwhile has a scenario of its own.
    let currency = Currency {
        confirm_every: Duration::from_secs(5),
        stale_after: Duration::from_secs(3600),
    };
    let relay = stack
        .start_relay_with_options(through(upstream.as_ref(), currency))
        .await;
    let relay_addr = relay.started.addr;
    let local = TestCluster::start(flavor, Options::default()).await;
    local.create_namespace("akuity").await;
    let local_link = if links.local {
        Some(Cutter::start(addr_of(&local.url())).await)
    } else {
        None
    };
    let kubeconfig = match &local_link {
        Some(c) => local.kubeconfig_via(&c.url()),
        None => local.kubeconfig().to_path_buf(),
    };
    let stop = CancellationToken::new();
    let agent = start_agent(&stack, relay_addr, kubeconfig, stop.clone()).await;
    Fixture {
        _agent_stop: StopOnDrop(stop),
        agent,
        relay: Some(relay),
        relay_addr,
        upstream,
        local_link,
        local,
        stack,
    }
}

/// A relay reaching the control plane through `link` (directly without one) whose
/// policy is confirmed current as `currency` says.
fn through(link: Option<&Cutter>, currency: Currency) -> RelayOptions {
    RelayOptions {
        api_server: link.map(Cutter::url),
        limits: Limits {
            policy_currency: currency,
            ..Limits::default()
        },
        ..RelayOptions::default()
    }
}

/// A control plane of `flavor` with the webhook and [`POLICY`].
async fn stack_of(flavor: Flavor) -> Stack {
    Stack::start(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
    )
    .await
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("https://").parse().unwrap()
}

/// Starts cluster1's agent against the relay at `relay_addr`, with its own shutdown
/// (the relay's would stop it with the relay), and waits until it is ready.
async fn start_agent(
    stack: &Stack,
    relay_addr: SocketAddr,
    kubeconfig: PathBuf,
    shutdown: CancellationToken,
) -> Arc<Agent> {
    // Never a resync within a test: what converges, converges by retries and relists.
    let config = stack.agent_config(
        "cluster1",
        kubeconfig,
        relay_addr,
        Duration::from_secs(3600),
    );
    let (started, _task) = secret_relay_agent::start(config, shutdown).await.unwrap();
    let agent = started.agent;
    within("cluster1's agent to be ready", async {
        let mut rx = agent.subscribe();
        while !agent.readiness().0 {
            rx.changed().await.unwrap();
        }
    })
    .await;
    agent
}

impl Fixture {
    async fn hub(&self) -> Api<Secret> {
        Api::namespaced(self.stack.cluster.client().await, "argocd")
    }

    /// cluster1's namespace, straight to its API server (never through a cutter).
    async fn local(&self) -> Api<Secret> {
        Api::namespaced(self.local.client().await, "akuity")
    }

    /// Waits until the agent reports `state` for `name` in `direction`.
    async fn status(&self, name: &str, direction: &'static str, state: &str) {
        let agent = self.agent.clone();
        within(
            &format!("cluster1 to report {direction} {state} for {name}"),
            async {
                let mut rx = agent.subscribe();
                loop {
                    if agent
                        .status(name, direction)
                        .is_some_and(|(s, _)| s == state)
                    {
                        return;
                    }
                    rx.changed().await.unwrap();
                }
            },
        )
        .await;
    }

    /// Managed secrets `keep`, `change`, `drop` on the hub and opted-in `up-keep`,
    /// `up-change`, `up-drop` on cluster1, all synced; their uids.
    async fn seed(&self) -> Seeded {
        let hub = self.hub().await;
        let local = self.local().await;
        for name in HUB_SEEDED {
            hub.create(&PostParams::default(), &secret(name, &[], &[TO_ALL], "v1"))
                .await
                .unwrap();
        }
        for name in LOCAL_SEEDED {
            local
                .create(
                    &PostParams::default(),
                    &secret(name, &[OPT_IN, REPO_CREDS], &[], "v1"),
                )
                .await
                .unwrap();
        }
        let mut seeded = Seeded {
            down_copies: BTreeMap::new(),
            hub_copies: BTreeMap::new(),
        };
        for name in HUB_SEEDED {
            let copy = appears(&local, name, "a seeded down copy", |s| {
                label(s, OWNER) == Some("control-plane")
            })
            .await;
            seeded.down_copies.insert(name.to_owned(), uid(&copy));
        }
        for name in LOCAL_SEEDED {
            let copy = appears(&hub, name, "a seeded hub copy", |s| {
                label(s, OWNER) == Some("cluster.cluster1")
            })
            .await;
            seeded.hub_copies.insert(name.to_owned(), uid(&copy));
            self.status(name, "up", "synced").await;
        }
        seeded
    }

    /// On cluster1: `up-new` created, `up-change` updated, `up-drop` deleted.
    async fn change_locally(&self) {
        let local = self.local().await;
        local
            .create(
                &PostParams::default(),
                &secret("up-new", &[OPT_IN, REPO_CREDS], &[], "v1"),
            )
            .await
            .unwrap();
        set_password(&local, "up-change", "v2").await;
        local
            .delete("up-drop", &DeleteParams::default())
            .await
            .unwrap();
    }

    /// On the hub: `new` created, `change` updated, `drop` deleted.
    async fn change_on_the_hub(&self) {
        let hub = self.hub().await;
        hub.create(&PostParams::default(), &secret("new", &[], &[TO_ALL], "v1"))
            .await
            .unwrap();
        set_password(&hub, "change", "v2").await;
        hub.delete("drop", &DeleteParams::default()).await.unwrap();
    }

    /// What [`Fixture::change_locally`] did has reached the hub.
    async fn local_changes_arrived(&self) {
        let hub = self.hub().await;
        appears(&hub, "up-new", "the hub copy of up-new", |s| {
            label(s, OWNER) == Some("cluster.cluster1") && password(s) == b"v1"
        })
        .await;
        appears(&hub, "up-change", "the update of up-change", |s| {
            password(s) == b"v2"
        })
        .await;
        disappears(&hub, "up-drop", "the release of up-drop").await;
        self.status("up-new", "up", "synced").await;
    }

    /// What [`Fixture::change_on_the_hub`] did has reached cluster1.
    async fn hub_changes_arrived(&self) {
        let local = self.local().await;
        appears(&local, "new", "the down copy of new", |s| {
            label(s, OWNER) == Some("control-plane") && password(s) == b"v1"
        })
        .await;
        appears(&local, "change", "the update of change", |s| {
            password(s) == b"v2"
        })
        .await;
        disappears(&local, "drop", "the deletion of the down copy of drop").await;
        self.status("new", "down", "synced").await;
    }

    /// The seeded objects named are the very same objects: never deleted (and never
    /// deleted and written again).
    async fn still_there(&self, seeded: &Seeded, down_copies: &[&str], hub_copies: &[&str]) {
        let local = self.local().await;
        for name in down_copies {
            let copy = local.get_opt(name).await.unwrap();
            let copy = copy.unwrap_or_else(|| panic!("the down copy {name} was deleted"));
            assert_eq!(
                uid(&copy),
                seeded.down_copies[*name],
                "the down copy {name} was deleted and written again"
            );
        }
        if hub_copies.is_empty() {
            return;
        }
        let hub = self.hub().await;
        for name in hub_copies {
            let copy = hub.get_opt(name).await.unwrap();
            let copy = copy.unwrap_or_else(|| panic!("the hub copy {name} was released"));
            assert_eq!(
                uid(&copy),
                seeded.hub_copies[*name],
                "the hub copy {name} was released and pushed again"
            );
            assert_eq!(label(&copy, OWNER), Some("cluster.cluster1"));
        }
    }

    /// Edits the down copy `keep` on cluster1 and waits until the agent has put the
    /// hub's value back: proof that the agent is working and still holds `keep`'s hub
    /// copy in its view.
    async fn drift_is_reverted(&self) {
        let local = self.local().await;
        set_password(&local, "keep", "drifted").await;
        appears(&local, "keep", "the drift of keep to be reverted", |s| {
            password(s) == b"v1"
        })
        .await;
    }
}

async fn set_password(api: &Api<Secret>, name: &str, value: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"stringData": {"password": value}})),
    )
    .await
    .unwrap();
}

fn uid(s: &Secret) -> String {
    s.metadata.uid.clone().unwrap()
}

/// Asserts that a watch of `api` from `rv` now gets 410 Expired.
async fn watch_from_is_expired(api: &Api<Secret>, rv: &str) {
    let mut events = api
        .watch(&WatchParams::default().timeout(10), rv)
        .await
        .unwrap()
        .boxed();
    match within("the 410", events.next()).await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected a 410 ERROR event from {rv}, got {other:?}"),
    }
}

fn real_skipped(test: &str) -> bool {
    Flavor::Real.skipped(test)
}

on_both!(the_relay_going_down_loses_no_update_and_deletes_nothing);

/// The relay replica stops; Secrets change on both sides and the policy changes; a
/// replica starts again at the same address (the agent knows the relay by its URL).
async fn the_relay_going_down_loses_no_update_and_deletes_nothing(flavor: Flavor) {
    let mut fx = fixture(flavor, Links::default()).await;
    let seeded = fx.seed().await;
    // Denied until the policy changes, which it does while the relay is away: the
    // replica that comes back serves the new policy as its generation 1, the number
    // the agent saw the old policy under.
    let local = fx.local().await;
    local
        .create(
            &PostParams::default(),
            &secret("early", &[OPT_IN, ("team", "platform")], &[], "e"),
        )
        .await
        .unwrap();
    fx.status("early", "up", "denied").await;
    fx.relay.take().unwrap().stop().await;

    fx.change_locally().await;
    fx.change_on_the_hub().await;
    fx.stack
        .set_policy(&format!(
            "{POLICY}  - clusterSelector: env=prod\n    labelSelector: team=platform\n"
        ))
        .await;
    // The agent tried to push up-new and could not; it reverts drift from what it last
    // saw of the hub. Both are later than every change above, so by now a spurious
    // delete would have happened.
    fx.status("up-new", "up", "error").await;
    fx.drift_is_reverted().await;
    fx.still_there(&seeded, &HUB_SEEDED, &LOCAL_SEEDED).await;

    fx.relay = Some(fx.stack.start_relay_at(fx.relay_addr).await);
    fx.local_changes_arrived().await;
    fx.hub_changes_arrived().await;
    appears(
        &fx.hub().await,
        "early",
        "the hub copy allowed by the new policy",
        |s| label(s, OWNER) == Some("cluster.cluster1"),
    )
    .await;
    fx.still_there(&seeded, &["keep", "change"], &["up-keep", "up-change"])
        .await;
}

/// The control plane's kube-apiserver crashes (SIGKILL) while cluster1 changes its
/// Secrets, and starts again with the same flags and port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_api_server_going_down_loses_no_update_and_deletes_nothing() {
    if real_skipped("the_control_plane_api_server_going_down") {
        return;
    }
    let fx = fixture(Flavor::Real, Links::default()).await;
    let seeded = fx.seed().await;
    let control_plane = fx.stack.cluster.real().unwrap();
    control_plane.kill_component("kube-apiserver").await;

    fx.change_locally().await;
    // The relay could not forward the push; the agent still reverts drift from the
    // relay's cache, which outlives the API server.
    fx.status("up-new", "up", "error").await;
    fx.drift_is_reverted().await;
    fx.still_there(&seeded, &HUB_SEEDED, &[]).await;

    control_plane.start_component("kube-apiserver").await;
    fx.local_changes_arrived().await;
    fx.still_there(&seeded, &HUB_SEEDED, &["up-keep", "up-change"])
        .await;
    // The relay follows the hub again.
    fx.change_on_the_hub().await;
    fx.hub_changes_arrived().await;
    fx.still_there(&seeded, &["keep"], &["up-keep", "up-change"])
        .await;
}

/// cluster1's own kube-apiserver stops (SIGTERM, as a rolling restart does) while the
/// hub changes, and starts again with the same flags and port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_api_server_restarting_loses_no_update_and_deletes_nothing() {
    if real_skipped("the_local_api_server_restarting") {
        return;
    }
    let fx = fixture(Flavor::Real, Links::default()).await;
    let seeded = fx.seed().await;
    let local = fx.local.real().unwrap();
    local.stop_component("kube-apiserver").await;

    fx.change_on_the_hub().await;
    // The agent saw the new hub copy and could not write its down copy: it has
    // handled the hub's changes, and released nothing meanwhile.
    fx.status("new", "down", "error").await;
    fx.still_there(&seeded, &[], &LOCAL_SEEDED).await;

    local.start_component("kube-apiserver").await;
    fx.hub_changes_arrived().await;
    fx.still_there(&seeded, &["keep", "change"], &LOCAL_SEEDED)
        .await;
    // The agent follows its namespace again.
    fx.change_locally().await;
    fx.local_changes_arrived().await;
    fx.still_there(&seeded, &["keep", "change"], &["up-keep", "up-change"])
        .await;
}

/// The agent's watch of its own namespace breaks; meanwhile Secrets change and the
/// history is compacted, so the watch resumes into 410 Expired and the agent lists
/// again. The deletions are visible only through that list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_on_the_agents_local_watch_relists_and_loses_nothing() {
    let fx = fixture(
        Flavor::Sandbox,
        Links {
            local: true,
            ..Links::default()
        },
    )
    .await;
    let seeded = fx.seed().await;
    let local = fx.local().await;
    let sandbox = fx.local.sandbox().unwrap();
    let link = fx.local_link.as_ref().unwrap();
    let before = sandbox.resource_version().to_string();
    link.cut();

    fx.change_locally().await;
    // A down copy deleted by hand is drift the agent repairs.
    local
        .delete("change", &DeleteParams::default())
        .await
        .unwrap();
    sandbox.compact_history();
    watch_from_is_expired(&local, &before).await;

    let forwarded = link.forwarded();
    link.restore();
    within("the agent to reconnect", link.forwarded_past(forwarded)).await;
    fx.local_changes_arrived().await;
    appears(
        &local,
        "change",
        "the deleted down copy written again",
        |s| label(s, OWNER) == Some("control-plane"),
    )
    .await;
    fx.still_there(&seeded, &["keep", "drop"], &["up-keep", "up-change"])
        .await;
}

/// The relay's watch of the hub breaks; meanwhile hub copies change and the history
/// is compacted, so the relay's watch resumes into 410 Expired and the relay lists
/// again. The agent's view follows, deletions included, and nothing else moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_on_the_relays_watch_reaches_the_agent_and_loses_nothing() {
    let fx = fixture(
        Flavor::Sandbox,
        Links {
            upstream: true,
            ..Links::default()
        },
    )
    .await;
    let seeded = fx.seed().await;
    let hub = fx.hub().await;
    let sandbox = fx.stack.cluster.sandbox().unwrap();
    let link = fx.upstream.as_ref().unwrap();
    let before = sandbox.resource_version().to_string();
    link.cut();

    fx.change_on_the_hub().await;
    sandbox.compact_history();
    watch_from_is_expired(&hub, &before).await;
    // The agent still works from the relay's cache.
    fx.drift_is_reverted().await;
    fx.still_there(&seeded, &HUB_SEEDED, &LOCAL_SEEDED).await;

    link.restore();
    fx.hub_changes_arrived().await;
    fx.still_there(&seeded, &["keep"], &LOCAL_SEEDED).await;
    // Up-sync goes through the relay's restored link too.
    fx.change_locally().await;
    fx.local_changes_arrived().await;
}

/// A relay cut off from the control plane cannot confirm its policy. It goes stale
/// and then judges nothing: every request is a 503, its open watches end (their
/// clients resume on a replica that is current) and its readiness says why. Above
/// all, it never answers a cluster registered meanwhile as unknown: held long
/// enough, that answer is what makes the cluster's agent delete its down copies.
/// Once the link is back, the relay catches up and serves that cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_confirm_its_policy_judges_nothing() {
    log_as_asked();
    let stack = stack_of(Flavor::Sandbox).await;
    let link = Cutter::start(addr_of(&stack.cluster.url())).await;
    let currency = Currency {
        confirm_every: Duration::from_millis(200),
        stale_after: Duration::from_secs(2),
    };
    let relay = stack
        .start_relay_with_options(through(Some(&link), currency))
        .await;
    // Clients that take a 503 as the answer, as agents' do (kube's would retry it
    // for minutes).
    let client_of = async |cluster| {
        let path = stack.relay_kubeconfig(&relay, cluster);
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        config.default_retry = false;
        Api::<Secret>::namespaced(kube::Client::try_from(config).unwrap(), "argocd")
    };
    let cluster1 = client_of("cluster1").await;
    let cluster2 = client_of("cluster2").await;
    let unknown = cluster2.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(&unknown, kube::Error::Api(s) if s.code == 403 && s.message.contains("rule unknown-cluster")),
        "{unknown:?}"
    );
    let mut watch = cluster1
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();

    link.cut();
    // cluster2 is registered where the relay cannot see it.
    stack
        .set_policy(&POLICY.replace(
            "clusters:\n",
            "clusters:\n  - name: cluster2\n    labels: { env: prod }\n",
        ))
        .await;
    let mut currency = relay.started.policy.subscribe_currency();
    within("the relay to go stale", currency.wait_for(|c| !*c))
        .await
        .unwrap();
    within("cluster1's open watch to end", async {
        while let Some(event) = watch.next().await {
            event.unwrap();
        }
    })
    .await;
    for (who, api) in [("cluster2", &cluster2), ("cluster1", &cluster1)] {
        let err = api.list(&Default::default()).await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 503 && s.message.contains("cannot confirm that its policy is current")),
            "{who}: {err:?}"
        );
    }
    // A client that follows Retry-After comes back in a second.
    let raw = cluster2
        .clone()
        .into_client()
        .send(
            http::Request::get("/api/v1/namespaces/argocd/secrets")
                .body(kube::client::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(raw.status(), 503);
    assert_eq!(raw.headers()["retry-after"], "1");
    let (ready, detail) = relay.started.admin.readiness();
    assert!(!ready, "{detail}");
    assert!(detail.contains("policy-current: stale"), "{detail}");
    // What is not stale is said too: the served certificate, and its expiry as a metric.
    assert!(
        detail.contains("[+] tls: serving certificate valid until "),
        "{detail}"
    );
    let metrics = relay.started.admin.encode_metrics();
    let expiry: i64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("secret_relay_relay_tls_certificate_expiry_timestamp_seconds ")
        })
        .unwrap_or_else(|| panic!("{metrics}"))
        .parse()
        .unwrap();
    assert!(expiry > relay_cert_floor(), "{expiry}");
    assert!(
        metrics.contains("secret_relay_relay_tls_material_refused 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("secret_relay_relay_policy_current 0"),
        "{metrics}"
    );

    link.restore();
    within("the relay to be current again", currency.wait_for(|c| *c))
        .await
        .unwrap();
    // Current again means current: the policy that registers cluster2 is served.
    let listed = cluster2.list(&Default::default()).await.unwrap();
    assert!(listed.items.is_empty());
    cluster1.list(&Default::default()).await.unwrap();
}

/// Replicas count their policy loads apart, so one policy has another generation on
/// each; its revision is the same on all, and tells a cluster nothing of the
/// ConfigMap's versions. A poll held with a revision ends when the policy changes,
/// on a replica that counts differently too. An agent whose requests reach several
/// replicas thus sees one policy as one, instead of a new one at every replica
/// it reaches (each a full pass, and a poll answered at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_name_one_policy_by_one_revision() {
    let stack = stack_of(Flavor::Sandbox).await;
    let first = stack.start_relay().await;
    let next = format!("{POLICY}  - clusterSelector: env=prod\n    labelSelector: team=platform\n");
    stack.set_policy(&next).await;
    Stack::relay_generation(&first, 2).await;
    let second = stack.start_relay().await;
    let ask = async |relay: &RelayHandle, query: &str| -> serde_json::Value {
        let client = stack.relay_client(relay, "cluster1").await;
        let req = http::Request::get(format!("/apis/secret-relay.io/v1/generation{query}"))
            .body(Vec::new())
            .unwrap();
        client.request(req).await.unwrap()
    };
    let (a, b) = (ask(&first, "").await, ask(&second, "").await);
    assert_eq!(
        (a["generation"].as_u64(), b["generation"].as_u64()),
        (Some(2), Some(1))
    );
    let revision = a["revision"].as_str().unwrap().to_owned();
    assert_eq!(b["revision"].as_str(), Some(revision.as_str()));
    assert_eq!(revision.len(), 32, "{revision}");
    assert!(revision.bytes().all(|c| c.is_ascii_hexdigit()));

    // Held with the revision, the poll ends with the next policy, whichever replica.
    let query = format!("?revision={revision}");
    let (answered, ()) = tokio::join!(ask(&second, &query), async {
        stack
            .set_policy(&format!(
                "{next}  - clusterSelector: env=prod\n    labelSelector: team=web\n"
            ))
            .await;
    });
    let changed = answered["revision"].as_str().unwrap();
    assert_ne!(changed, revision);
    Stack::relay_generation(&first, 3).await;
    assert_eq!(ask(&first, "").await["revision"].as_str(), Some(changed));
}

/// A down copy goes only once the relay confirms that its hub copy left the view:
/// the agent's store may be stale (here its link to the relay is cut after the hub
/// copy left, and the hub copy comes back meanwhile). Unconfirmed, the copy stays
/// and says so; confirmed back, it is the same object, never deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_copy_goes_only_once_the_relay_confirms_its_hub_copy_left() {
    log_as_asked();
    let stack = stack_of(Flavor::Sandbox).await;
    let relay = stack.start_relay().await;
    let front = Cutter::start(relay.started.addr).await;
    let local = TestCluster::start(Flavor::Sandbox, Options::default()).await;
    local.create_namespace("akuity").await;
    let stop = CancellationToken::new();
    let _stop = StopOnDrop(stop.clone());
    let mut config = stack.agent_config(
        "cluster1",
        local.kubeconfig().to_path_buf(),
        front.addr(),
        Duration::from_secs(3600),
    );
    // Long enough for the test to cut the link once the copy starts leaving.
    config.deletion.grace = Duration::from_secs(10);
    let (started, _task) = secret_relay_agent::start(config, stop).await.unwrap();
    let agent = started.agent;
    let status = async |state: &str, rule: &str| {
        within(&format!("flip to be {state} ({rule})"), async {
            let mut rx = agent.subscribe();
            while agent
                .status("flip", "down")
                .is_none_or(|(s, r)| s != state || r != rule)
            {
                rx.changed().await.unwrap();
            }
        })
        .await;
    };
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    let copies: Api<Secret> = Api::namespaced(local.client().await, "akuity");
    hub.create(
        &PostParams::default(),
        &secret("flip", &[], &[TO_ALL], "v1"),
    )
    .await
    .unwrap();
    let copy = appears(&copies, "flip", "the down copy", |s| {
        label(s, OWNER) == Some("control-plane")
    })
    .await;
    let retarget = async |to: &str| {
        let patch = serde_json::json!({"metadata": {"annotations": {TO_ALL.0: to}}});
        hub.patch("flip", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    };

    retarget("cluster2").await;
    status("leaving", "").await;
    front.cut();
    retarget("ALL").await;
    status("leaving", "unconfirmed").await;
    assert_eq!(uid(&copies.get("flip").await.unwrap()), uid(&copy));

    front.restore();
    status("synced", "").await;
    assert_eq!(uid(&copies.get("flip").await.unwrap()), uid(&copy));
}

/// Seconds since the Unix epoch a day from now: a served certificate expires later.
fn relay_cert_floor() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(now).unwrap() + 86_400
}
