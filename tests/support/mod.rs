//! What the sync scenarios share: the policy, a world of a control plane with its
//! relay and managed clusters with their agents, and waits on what agents report.

#![allow(dead_code)] // each test binary uses its part

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use secret_relay_agent::Agent;
use secret_relay_proxy::Limits;
use secret_relay_runtime::CancellationToken;
use secret_relay_testkit::{Flavor, RelayHandle, Stack, StackOptions, TestCluster, within};

pub(crate) const POLICY: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
  - name: cluster2
    labels: { env: staging }
secretSources:
  - clusterSelector: env in (prod, staging)
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
  - clusterSelector: env=prod
    labelSelector: team=platform
  - clusterSelector: env=prod
    labelSelector: app.kubernetes.io/component=notifications-controller
";

/// The label Argo CD's own manifests give `argocd-notifications-secret`: what a
/// Secret Source admits an adoption of it by.
pub(crate) const NOTIFICATIONS: (&str, &str) =
    ("app.kubernetes.io/component", "notifications-controller");

/// How often the agents of a world run a full pass, unless a scenario says.
pub(crate) const AGENT_RESYNC: Duration = Duration::from_secs(30);

pub(crate) struct World {
    pub(crate) stack: Stack,
    /// The relay in process; `None` when the control plane's relay runs as pods.
    pub(crate) relay: Option<RelayHandle>,
    /// Where the agents reach the relay.
    pub(crate) relay_addr: SocketAddr,
    pub(crate) managed: Vec<Managed>,
}

pub(crate) struct Managed {
    pub(crate) name: String,
    pub(crate) cluster: TestCluster,
    pub(crate) agent: Arc<Agent>,
    pub(crate) client: Client,
    /// Stops the agent (only it).
    stop: CancellationToken,
    /// What the agent's token is a child of: a restarted agent's is too.
    stop_parent: CancellationToken,
    /// The agent's relay and resync, for a restart.
    relay: SocketAddr,
    resync: Duration,
}

/// A control plane with `policy`, one relay, and cluster1 and cluster2 with agents.
pub(crate) async fn world(flavor: Flavor, policy: &str) -> World {
    world_with(
        flavor,
        StackOptions {
            policy: policy.to_owned(),
            ..StackOptions::default()
        },
        Limits::default(),
    )
    .await
}

/// [`world`] with the stack's options and the relay's limits. On a control plane
/// whose relay is deployed (pods), the agents reach it and `limits` must be the
/// default: the pods run with the manifests' settings.
pub(crate) async fn world_with(flavor: Flavor, options: StackOptions, limits: Limits) -> World {
    world_with_resync(flavor, options, limits, AGENT_RESYNC).await
}

/// [`world_with`] with agents that run a full pass every `resync`.
pub(crate) async fn world_with_resync(
    flavor: Flavor,
    options: StackOptions,
    limits: Limits,
    resync: Duration,
) -> World {
    let stack = Stack::start(flavor, options).await;
    let (relay, relay_addr, agents_stop) = match stack.deployed_relay() {
        Some(addr) => {
            assert_eq!(
                format!("{limits:?}"),
                format!("{:?}", Limits::default()),
                "a deployed relay runs with the manifests' limits"
            );
            (None, addr, stack.child_token())
        }
        None => {
            let relay = stack.start_relay_with(limits).await;
            let (addr, stop) = (relay.started.addr, relay.shutdown.clone());
            (Some(relay), addr, stop)
        }
    };
    let mut managed = Vec::new();
    for name in ["cluster1", "cluster2"] {
        let m = start_managed_at(&stack, relay_addr, &agents_stop, name, flavor, resync).await;
        managed.push(m);
    }
    World {
        stack,
        relay,
        relay_addr,
        managed,
    }
}

/// Managed cluster `name` with its agent, against `relay`.
pub(crate) async fn start_managed(
    stack: &Stack,
    relay: &RelayHandle,
    name: &str,
    flavor: Flavor,
) -> Managed {
    start_managed_at(
        stack,
        relay.started.addr,
        &relay.shutdown,
        name,
        flavor,
        AGENT_RESYNC,
    )
    .await
}

/// Managed cluster `name` with its agent against the relay at `relay`, stopped with
/// `stop`, running a full pass every `resync`.
pub(crate) async fn start_managed_at(
    stack: &Stack,
    relay: SocketAddr,
    stop: &CancellationToken,
    name: &str,
    flavor: Flavor,
    resync: Duration,
) -> Managed {
    let cluster = TestCluster::managed(flavor, name, &["akuity"]).await;
    let agent_stop = stop.child_token();
    let agent = stack
        .start_agent(name, &cluster, relay, resync, agent_stop.clone())
        .await;
    let client = cluster.client().await;
    Managed {
        name: name.to_owned(),
        cluster,
        agent,
        client,
        stop: agent_stop,
        stop_parent: stop.clone(),
        relay,
        resync,
    }
}

impl World {
    pub(crate) fn cluster(&self, name: &str) -> &Managed {
        self.managed.iter().find(|m| m.name == name).unwrap()
    }

    /// Stops cluster `name`'s agent and starts a new one on the same cluster with the
    /// same settings: it knows only what it reads. Returns once the new one is ready.
    pub(crate) async fn restart_agent(&mut self, name: &str) -> &Managed {
        let m = self.managed.iter_mut().find(|m| m.name == name).unwrap();
        m.stop.cancel();
        m.stop = m.stop_parent.child_token();
        m.agent = self
            .stack
            .start_agent(name, &m.cluster, m.relay, m.resync, m.stop.clone())
            .await;
        m
    }

    pub(crate) async fn hub(&self) -> Api<Secret> {
        Api::namespaced(self.stack.cluster.client().await, "argocd")
    }

    /// A kube client reaching the relay as cluster `cluster`.
    pub(crate) async fn relay_client(&self, cluster: &str) -> Client {
        self.stack.relay_client_at(self.relay_addr, cluster).await
    }
}

impl Managed {
    pub(crate) fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), "akuity")
    }

    /// Waits until this cluster's agent reports `state` (and `rule`, when given) for
    /// `name` in `direction`.
    pub(crate) async fn status(
        &self,
        name: &str,
        direction: &'static str,
        state: &str,
        rule: Option<&str>,
    ) {
        let agent = self.agent.clone();
        within(
            &format!("{} to report {direction} {state} for {name}", self.name),
            async {
                let mut rx = agent.subscribe();
                loop {
                    if let Some((s, r)) = agent.status(name, direction)
                        && s == state
                        && rule.is_none_or(|want| want == r)
                    {
                        return;
                    }
                    rx.changed().await.unwrap();
                }
            },
        )
        .await;
    }
}

/// Waits for an Event `reason` on Secret `name` of the agent namespace.
pub(crate) async fn assert_event(cluster: &TestCluster, name: &str, reason: &str) {
    use futures::TryStreamExt as _;
    use k8s_openapi::api::events::v1::Event;
    use kube::runtime::WatchStreamExt as _;
    let client = cluster.client().await;
    // This Secret's, not an earlier one's of the same name (outside clusters are reused).
    let uid = Api::<Secret>::namespaced(client.clone(), "akuity")
        .get(name)
        .await
        .unwrap()
        .metadata
        .uid;
    let events: Api<Event> = Api::namespaced(client, "akuity");
    // Existing Events arrive first (the watcher lists), then new ones.
    let stream = kube::runtime::watcher(events, Default::default()).applied_objects();
    futures::pin_mut!(stream);
    within(&format!("a {reason} Event on {name}"), async {
        while let Some(e) = stream.try_next().await.unwrap() {
            let regarding = e.regarding.as_ref();
            if regarding.and_then(|r| r.name.as_deref()) == Some(name)
                && regarding.and_then(|r| r.uid.as_ref()) == uid.as_ref()
                && e.reason.as_deref() == Some(reason)
            {
                return;
            }
        }
    })
    .await;
}

/// A relay that revokes after one second.
pub(crate) fn quick_revocation() -> Limits {
    Limits {
        revocation_grace: Duration::from_secs(1),
        ..Limits::default()
    }
}
