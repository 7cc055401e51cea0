//! Faults under load, on the real control plane only (etcd, kube-apiserver and
//! kube-controller-manager from `scripts/control-plane.sh`):
//!
//! 1. the webhook and the relay under sustained load while the policy reloads (valid
//!    documents that decide the tested requests the same way, and invalid ones that
//!    must be refused and leave the last good policy in place) and the relay's
//!    serving certificate, its client CA bundle and the webhook's serving certificate
//!    rotate: every request is counted, none fails, none is decided wrongly, and the
//!    relay's and the webhook's own metrics agree with the count;
//! 2. the relay killed (every connection cut mid-flight, a replica started again at
//!    the same address) and the agent killed and started again, during a sync of
//!    secrets in both directions: everything converges with the right data (updates
//!    made during the fault included), and nothing is deleted: no DELETED event, no
//!    object missing from a relist, every object keeps the uid it was first seen with;
//! 3. the control plane's etcd restarted, then its kube-apiserver killed and started
//!    again, during the same sync: the same.
//!
//! Counts scale with environment variables (defaults in brackets):
//! `FAULTS_LOAD_OPS` [3000] requests in test 1, a third of them by the admin straight
//! to the API server (through the webhook) and two thirds by cluster1 and cluster2
//! through the relay; `FAULTS_LOAD_RELOADS` [100] valid policy reloads, with one
//! invalid document after every fifth (20); `FAULTS_LOAD_ROTATIONS` [10] rotations of
//! each certificate; `FAULTS_SYNC_SECRETS` [1000] secrets per direction in tests 2 and
//! 3 (1,000 opted in on cluster1, 1,000 managed on the hub, a tenth of each updated
//! during the first fault); `FAULTS_CONVERGE_SECS` [240] how long convergence may
//! take. `FAULTS_LOG` is a tracing filter. With the defaults the file takes 70 to
//! 120 s on a loaded 2-core machine (test 1 moves its 3,000 requests in 6 to 17 s;
//! each sync converges 12 to 45 s after it began). A longer run,
//! `FAULTS_LOAD_OPS=12000 FAULTS_LOAD_RELOADS=300 FAULTS_LOAD_ROTATIONS=30
//! FAULTS_SYNC_SECRETS=3000 FAULTS_CONVERGE_SECS=600`, passed in 172 s: 12,000
//! requests in 20 s with 360 documents and 30 rotations, 3,000 secrets each way
//! converged 44 s (relay and agent) and 76 s (etcd and kube-apiserver) after the
//! sync began.
//!
//! The tests of this file run one at a time: each is load enough for the machine.
//! Every wait is an awaited condition except three kinds of loop: the pacing of the
//! load, retries of the test's own writes while an API server is away, and handshakes
//! that look for a rotated certificate (what a server serves is seen only by
//! connecting to it).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use secret_relay_agent::Agent;
use secret_relay_certs::{Ca, IssuedCert, Validity, client_config, parse_certs_pem};
use secret_relay_proxy::{HubCache, Limits};
use secret_relay_runtime::CancellationToken;
use secret_relay_testkit::{
    Cutter, Flavor, OPT_IN, Options, REPO_CREDS, RelayHandle, RelayOptions, Stack, StackOptions,
    TO_ALL, TestCluster, WEBHOOK_SERVICE, client_from_kubeconfig, label, password, secret, within,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

/// One test at a time: each is load enough for the machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const OWNER: &str = "secret-relay.io/owner";

/// Two policies that decide every request of the load test the same way, in other
/// words: cluster labels, selector forms, source order and an extra source differ.
const POLICY_A: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod, revision: a }
  - name: cluster2
    labels: { env: staging, revision: a }
secretSources:
  - clusterSelector: env in (prod, staging)
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
";

const POLICY_B: &str = "\
clusters:
  - name: cluster2
    labels: { env: staging, revision: b }
  - name: cluster1
    labels: { env: prod, revision: b }
secretSources:
  - clusterSelector: env=dev
    labelSelector: team=platform
  - clusterSelector:
      matchExpressions:
        - { key: env, operator: In, values: [prod, staging] }
    labelSelector:
      matchLabels: { argocd.argoproj.io/secret-type: repo-creds }
";

/// Documents that must be refused. Each would decide the load test's requests
/// differently if it were taken (cluster2 gone, everything denied, another namespace).
const INVALID_POLICIES: [&str; 5] = [
    // A selector that does not parse, in a policy without cluster2.
    "clusters:\n  - name: cluster1\n    labels: { env: prod }\nsecretSources:\n  - clusterSelector: env in (prod\n    labelSelector: team=x\n",
    // A cluster name that is no DNS label.
    "clusters:\n  - name: Cluster_1\n",
    // Not YAML.
    "clusters: [\n  - name: cluster1\n",
    // A source with neither selector.
    "clusters:\n  - name: cluster1\n  - name: cluster2\nsecretSources:\n  - {}\n",
    // A control-plane namespace that is no namespace name.
    "controlPlaneNamespace: Not A Namespace\nclusters:\n  - name: cluster1\n  - name: cluster2\n",
];

/// The sync tests' policy: cluster1 pushes repo credentials.
const SYNC_POLICY: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
secretSources:
  - clusterSelector: env=prod
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
";

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FAULTS_LOG"))
        .with_test_writer()
        .try_init();
}

/// [`within`] with a longer bound, for what scales with the number of secrets.
async fn within_secs<T>(what: &str, secs: u64, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs} s waiting for {what}"))
}

fn uid(s: &Secret) -> String {
    s.metadata.uid.clone().unwrap_or_default()
}

/// Writes `path` whole or not at all (a reader never sees half a PEM).
fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------
// 1. Load while the policy reloads and the certificates rotate.
// ---------------------------------------------------------------------------------

/// What a request should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Success.
    Allowed,
    /// 403 naming this rule.
    Denied(&'static str),
    /// 404: the object is outside the cluster's view, answered as GET answers it.
    Hidden,
}

/// What a request got.
#[derive(Debug)]
enum Outcome {
    Allowed(Option<Box<Secret>>),
    Denied(String),
    Hidden,
    Failed(#[allow(dead_code)] String), // shown through Debug
}

fn outcome<T: Into<Option<Secret>>>(result: Result<T, kube::Error>) -> Outcome {
    match result {
        Ok(s) => Outcome::Allowed(s.into().map(Box::new)),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            // The relay names the rule as the Status cause; the webhook, through the
            // API server, at the end of the message.
            let rule = status
                .details
                .as_ref()
                .and_then(|d| d.causes.first())
                .map(|c| c.reason.clone())
                .filter(|r| !r.is_empty())
                .or_else(|| {
                    status
                        .message
                        .rsplit_once("(rule ")
                        .map(|(_, r)| r.trim_end_matches(')').to_owned())
                });
            match rule {
                Some(rule) => Outcome::Denied(rule),
                None => Outcome::Failed(format!("403 without a rule: {}", status.message)),
            }
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Outcome::Hidden,
        Err(kube::Error::Api(status)) => Outcome::Failed(format!(
            "{} {}: {}",
            status.code, status.reason, status.message
        )),
        Err(err) => Outcome::Failed(err.to_string()),
    }
}

/// Every request of the load test, judged.
#[derive(Default)]
struct Tally {
    /// (who, operation) -> requests decided as expected.
    right: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// What went wrong, one line each.
    wrong: Mutex<Vec<String>>,
}

impl Tally {
    /// Judges one request; `check` looks at an allowed answer's object. Returns the
    /// object when the request was allowed as expected.
    fn judge(
        &self,
        who: &str,
        op: &'static str,
        name: &str,
        expect: Expect,
        got: Outcome,
        check: impl FnOnce(&Secret) -> Result<(), String>,
    ) -> Option<Secret> {
        let verdict = match (expect, got) {
            (Expect::Allowed, Outcome::Allowed(s)) => {
                match s.as_deref().map(check).unwrap_or(Ok(())) {
                    Ok(()) => Ok(s.map(|s| *s)),
                    Err(why) => Err(format!("allowed, but {why}")),
                }
            }
            (Expect::Denied(want), Outcome::Denied(rule)) if rule == want => Ok(None),
            (Expect::Hidden, Outcome::Hidden) => Ok(None),
            (expect, got) => Err(format!("expected {expect:?}, got {got:?}")),
        };
        match verdict {
            Ok(s) => {
                *self
                    .right
                    .lock()
                    .unwrap()
                    .entry((who.to_owned(), op))
                    .or_default() += 1;
                s.or_else(|| Some(Secret::default()))
            }
            Err(why) => {
                self.wrong
                    .lock()
                    .unwrap()
                    .push(format!("{who} {op} {name}: {why}"));
                None
            }
        }
    }

    fn total_right(&self) -> u64 {
        self.right.lock().unwrap().values().sum()
    }

    /// Requests decided right with `Expect::Denied`, by rule, for `who` starting with
    /// `prefix`.
    fn right_where(&self, prefix: &str, ops: &[&str]) -> u64 {
        self.right
            .lock()
            .unwrap()
            .iter()
            .filter(|((who, op), _)| who.starts_with(prefix) && ops.contains(op))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Lock-step pacing of the requests and the policy documents, so that every reload
/// and rotation happens with requests before and after it: request slot `g` waits
/// until document `g * (docs + 1) / total - 1` is in, and document `k` waits until
/// `k * total / (docs + 1)` requests are done.
struct Pace {
    total: usize,
    docs: usize,
    claimed: AtomicUsize,
    done: watch::Sender<usize>,
    docs_in: watch::Sender<usize>,
}

impl Pace {
    fn new(total: usize, docs: usize) -> Pace {
        assert!(
            total >= 2 * (docs + 1),
            "too few requests for {docs} documents"
        );
        Pace {
            total,
            docs,
            claimed: AtomicUsize::new(0),
            done: watch::channel(0).0,
            docs_in: watch::channel(0).0,
        }
    }

    async fn before_request(&self) {
        let slot = self.claimed.fetch_add(1, Ordering::AcqRel);
        let need = (slot * (self.docs + 1) / self.total).saturating_sub(1);
        let mut rx = self.docs_in.subscribe();
        within("the policy reloads to keep up", rx.wait_for(|d| *d >= need))
            .await
            .unwrap();
    }

    fn after_request(&self) {
        self.done.send_modify(|n| *n += 1);
    }

    async fn before_document(&self, k: usize) {
        let need = k * self.total / (self.docs + 1);
        let mut rx = self.done.subscribe();
        within_secs("the requests to keep up", 120, rx.wait_for(|d| *d >= need))
            .await
            .unwrap();
    }

    fn document_in(&self, k: usize) {
        self.docs_in.send_replace(k);
    }
}

/// What the load workers share.
struct Load {
    pace: Pace,
    tally: Tally,
    /// Kubeconfigs reaching the relay as cluster1 and cluster2.
    relay_kubeconfigs: BTreeMap<&'static str, PathBuf>,
    admin_kubeconfig: PathBuf,
    /// The relay's cache: a release is sent, as an agent sends it, for a hub copy the
    /// relay's view shows.
    cache: HubCache,
}

/// A new client (new connections, new handshakes) every this many requests.
const REQUESTS_PER_CLIENT: usize = 25;

/// Whether an allowed write's answer carries `owner` (or no owner) and `value`.
fn stamped(s: &Secret, owner: Option<&str>, value: &str) -> Result<(), String> {
    if label(s, OWNER) != owner {
        return Err(format!("owner label {:?}", label(s, OWNER)));
    }
    if password(s) != value.as_bytes() {
        return Err("other data".to_owned());
    }
    Ok(())
}

/// cluster `cluster` through the relay, in cycles of eight requests: its own hub copy
/// created, updated and released, and five writes the relay must deny, each by its
/// rule.
async fn relay_worker(load: Arc<Load>, cluster: &str, other: &str, id: usize, n: usize) {
    let who = format!("relay {cluster}");
    let kubeconfig = load.relay_kubeconfigs[cluster].clone();
    let client =
        || async { Api::namespaced(client_from_kubeconfig(&kubeconfig, None).await, "argocd") };
    let mut api: Api<Secret> = client().await;
    let own_stamp = format!("cluster.{cluster}");
    let theirs = format!("owned-by-{other}");
    let (pp, dp) = (PostParams::default(), DeleteParams::default());
    let mut rv = None;
    for i in 0..n {
        if i > 0 && i % REQUESTS_PER_CLIENT == 0 {
            api = client().await;
        }
        let cycle = i / 8;
        let own = format!("ld-{cluster}-{id}-{cycle}");
        if i % 8 == 7 {
            // Outside the pace: waiting for the cache is no request.
            secret_relay_testkit::wait_cached(&load.cache, &own).await;
        }
        load.pace.before_request().await;
        let deleted = |r: Result<_, kube::Error>| outcome(r.map(|_| None::<Secret>));
        let (op, name, expect, got) = match i % 8 {
            0 => {
                let body = secret(&own, &[OPT_IN, REPO_CREDS], &[], "v1");
                let got = outcome(api.create(&pp, &body).await);
                ("create own", own.clone(), Expect::Allowed, got)
            }
            1 => {
                let mut body = secret(&own, &[OPT_IN, REPO_CREDS], &[], "v2");
                body.metadata.resource_version = rv.take();
                let got = outcome(api.replace(&own, &pp, &body).await);
                ("update own", own.clone(), Expect::Allowed, got)
            }
            2 => {
                let name = format!("nosource-{cluster}-{id}-{cycle}");
                let body = secret(&name, &[OPT_IN, ("team", "nobody")], &[], "x");
                let got = outcome(api.create(&pp, &body).await);
                (
                    "create unsourced",
                    name,
                    Expect::Denied("no-matching-source"),
                    got,
                )
            }
            3 => {
                let name = format!("notoptedin-{cluster}-{id}-{cycle}");
                let got = outcome(
                    api.create(&pp, &secret(&name, &[REPO_CREDS], &[], "x"))
                        .await,
                );
                (
                    "create not opted in",
                    name,
                    Expect::Denied("not-opted-in"),
                    got,
                )
            }
            4 => {
                let body = secret(&theirs, &[OPT_IN, REPO_CREDS], &[], "stolen");
                let got = outcome(api.replace(&theirs, &pp, &body).await);
                ("update other's", theirs.clone(), Expect::Hidden, got)
            }
            5 => {
                let name = "argocd-initial-admin-secret".to_owned();
                let got = outcome(
                    api.create(&pp, &secret(&name, &[OPT_IN, REPO_CREDS], &[], "x"))
                        .await,
                );
                ("create blocked", name, Expect::Denied("blocked-name"), got)
            }
            6 => {
                let got = deleted(api.delete(&theirs, &dp).await);
                ("release other's", theirs.clone(), Expect::Hidden, got)
            }
            _ => {
                let got = deleted(api.delete(&own, &dp).await);
                ("release own", own.clone(), Expect::Allowed, got)
            }
        };
        let value = if i % 8 == 0 { "v1" } else { "v2" };
        let judged = load.tally.judge(&who, op, &name, expect, got, |s| {
            stamped(s, Some(&own_stamp), value)
        });
        if i % 8 == 0 {
            rv = judged.and_then(|s| s.metadata.resource_version);
        }
        load.pace.after_request();
    }
}

/// The admin (`system:masters`) straight to the API server, in cycles of six
/// requests: a managed secret created, updated and deleted, which the webhook allows,
/// and three writes it must deny.
async fn admin_worker(load: Arc<Load>, id: usize, n: usize) {
    let kubeconfig = load.admin_kubeconfig.clone();
    let client =
        || async { Api::namespaced(client_from_kubeconfig(&kubeconfig, None).await, "argocd") };
    let mut api: Api<Secret> = client().await;
    let (pp, dp) = (PostParams::default(), DeleteParams::default());
    let set = |value: &str| Patch::Merge(serde_json::json!({"stringData": {"password": value}}));
    for i in 0..n {
        if i > 0 && i % REQUESTS_PER_CLIENT == 0 {
            api = client().await;
        }
        let cycle = i / 6;
        let own = format!("managed-{id}-{cycle}");
        load.pace.before_request().await;
        let deleted = |r: Result<_, kube::Error>| outcome(r.map(|_| None::<Secret>));
        let (op, name, expect, got) = match i % 6 {
            0 => {
                let got = outcome(api.create(&pp, &secret(&own, &[], &[], "v1")).await);
                ("create managed", own.clone(), Expect::Allowed, got)
            }
            1 => {
                let got = outcome(api.patch(&own, &PatchParams::default(), &set("v2")).await);
                ("update managed", own.clone(), Expect::Allowed, got)
            }
            2 => {
                let name = format!("forged-{id}-{cycle}");
                let body = secret(&name, &[(OWNER, "cluster.cluster1")], &[], "x");
                let got = outcome(api.create(&pp, &body).await);
                (
                    "create with an owner",
                    name,
                    Expect::Denied("owner-label-forged"),
                    got,
                )
            }
            3 => {
                let name = "owned-by-cluster1".to_owned();
                let got = outcome(
                    api.patch(&name, &PatchParams::default(), &set("admin"))
                        .await,
                );
                (
                    "update cluster1's",
                    name,
                    Expect::Denied("ownership-lock"),
                    got,
                )
            }
            4 => {
                let name = "owned-by-cluster2".to_owned();
                let got = deleted(api.delete(&name, &dp).await);
                (
                    "delete cluster2's",
                    name,
                    Expect::Denied("ownership-lock"),
                    got,
                )
            }
            _ => {
                let got = deleted(api.delete(&own, &dp).await);
                ("delete managed", own.clone(), Expect::Allowed, got)
            }
        };
        let value = if i % 6 == 0 { "v1" } else { "v2" };
        load.tally
            .judge("admin", op, &name, expect, got, |s| stamped(s, None, value));
        load.pace.after_request();
    }
}

/// The leaf certificate `addr` serves, and whether it then answered an HTTP request
/// (with a client certificate the server does not trust, TLS 1.3 completes the
/// handshake and the server refuses afterwards).
async fn served(
    addr: SocketAddr,
    ca_pem: &str,
    server_name: &str,
    client: Option<&IssuedCert>,
) -> (Option<Vec<u8>>, bool) {
    let config = client_config(
        ca_pem,
        client.map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())),
        &[b"http/1.1"],
    )
    .unwrap();
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return (None, false);
    };
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    else {
        return (None, false);
    };
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    let request = b"GET /api HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let mut head = [0u8; 9];
    let answered = tls.write_all(request).await.is_ok()
        && tls.read_exact(&mut head).await.is_ok()
        && &head == b"HTTP/1.1 ";
    (leaf, answered)
}

fn der(pem: &str) -> Vec<u8> {
    parse_certs_pem(pem).unwrap()[0].to_vec()
}

/// Polls handshakes until `pred` holds for what `addr` serves (the servers re-read
/// their files every 100 ms; a handshake is the only way to see what they serve).
async fn until_served(
    what: &str,
    addr: SocketAddr,
    ca_pem: &str,
    server_name: &str,
    client: Option<&IssuedCert>,
    pred: impl Fn(&(Option<Vec<u8>>, bool)) -> bool,
) {
    within(what, async {
        loop {
            let seen = served(addr, ca_pem, server_name, client).await;
            if pred(&seen) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The certificates the load test rotates, and how it checks each rotation.
struct Rotation {
    pki: PathBuf,
    ca: Ca,
    relay_addr: SocketAddr,
    webhook_addr: SocketAddr,
    /// Another CA, added to and removed from the relay's client CA bundle.
    other_ca: Ca,
    /// A cluster1 certificate from the other CA.
    other_client: IssuedCert,
    /// cluster1's certificate from the stack's CA.
    client: IssuedCert,
    done: usize,
}

/// Rotates `rotation.count` times, spread over the policy documents: rotation `r`
/// starts once document `r * docs / (count + 1)` is in, while the reloads and the
/// load go on. Returns, per rotation, how many requests were done when its files
/// were written and when the servers were seen serving them.
async fn rotate_during(
    mut rotation: Rotation,
    count: usize,
    load: Arc<Load>,
    rotated: watch::Sender<usize>,
) -> Vec<(usize, usize)> {
    let mut overlaps = Vec::new();
    let mut docs_in = load.pace.docs_in.subscribe();
    let done = || *load.pace.done.borrow();
    for r in 1..=count {
        let trigger = rotation_trigger(r, count, load.pace.docs);
        docs_in.wait_for(|d| *d >= trigger).await.unwrap();
        let before = done();
        rotation.rotate().await;
        overlaps.push((before, done()));
        rotated.send_replace(r);
    }
    overlaps
}

/// The document after which rotation `r` of `count` starts.
fn rotation_trigger(r: usize, count: usize, docs: usize) -> usize {
    r * docs / (count + 1)
}

impl Rotation {
    /// New serving certificates for the relay and the webhook, and the relay's client
    /// CA bundle with the other CA added (odd rotations) or removed (even ones); each
    /// proven by a handshake that sees it.
    async fn rotate(&mut self) {
        self.done += 1;
        let ip = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let relay = self
            .ca
            .issue_server(
                "secret-relay",
                &["localhost".to_owned()],
                &ip,
                Validity::default(),
            )
            .unwrap();
        write_atomically(&self.pki.join("relay.key"), &relay.key_pem);
        write_atomically(&self.pki.join("relay.crt"), &relay.cert_pem);
        let webhook = self
            .ca
            .issue_server(
                WEBHOOK_SERVICE,
                &[WEBHOOK_SERVICE.to_owned()],
                &ip,
                Validity::default(),
            )
            .unwrap();
        write_atomically(&self.pki.join("webhook.key"), &webhook.key_pem);
        write_atomically(&self.pki.join("webhook.crt"), &webhook.cert_pem);
        let ca_pem = self.ca.cert_pem().to_owned();
        let trust_other = self.done % 2 == 1;
        let bundle = if trust_other {
            format!("{ca_pem}{}", self.other_ca.cert_pem())
        } else {
            ca_pem.clone()
        };
        write_atomically(&self.pki.join("ca.crt"), &bundle);

        let want = der(&relay.cert_pem);
        until_served(
            "the relay to serve its new certificate",
            self.relay_addr,
            &ca_pem,
            "127.0.0.1",
            Some(&self.client),
            |(leaf, answered)| leaf.as_ref() == Some(&want) && *answered,
        )
        .await;
        let want = der(&webhook.cert_pem);
        until_served(
            "the webhook to serve its new certificate",
            self.webhook_addr,
            &ca_pem,
            WEBHOOK_SERVICE,
            None,
            |(leaf, answered)| leaf.as_ref() == Some(&want) && *answered,
        )
        .await;
        until_served(
            "the relay to follow its client CA bundle",
            self.relay_addr,
            &ca_pem,
            "127.0.0.1",
            Some(&self.other_client),
            |(_, answered)| *answered == trust_other,
        )
        .await;
    }
}

/// Reads `name` of a Prometheus text exposition, summing the series whose labels
/// contain every one of `labels` (`key="value"`).
fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_every_request_is_decided_right_while_the_policy_reloads_and_certificates_rotate()
 {
    if Flavor::Real.skipped("under_load_every_request_is_decided_right") {
        return;
    }
    let _serial = SERIAL.lock().await;
    init_tracing();
    let total = count("FAULTS_LOAD_OPS", 3000);
    let reloads = count("FAULTS_LOAD_RELOADS", 100);
    let rotations = count("FAULTS_LOAD_ROTATIONS", 10);

    // The documents: valid ones alternating B and A (A is in at the start), with an
    // invalid one after every fifth; the last is valid, so no error is left over.
    let mut documents: Vec<(&str, bool)> = Vec::new();
    for j in 0..reloads {
        if j % 5 == 1 {
            documents.push((INVALID_POLICIES[(j / 5) % INVALID_POLICIES.len()], false));
        }
        documents.push((if j % 2 == 0 { POLICY_B } else { POLICY_A }, true));
    }
    for (doc, valid) in &documents {
        assert_eq!(
            secret_relay_runtime::parse_policy(doc).is_ok(),
            *valid,
            "the test's premise about {doc:?}"
        );
    }
    let invalid = documents.iter().filter(|(_, v)| !v).count();

    let stack = Stack::start(
        Flavor::Real,
        StackOptions {
            policy: POLICY_A.to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    // The rate limit is not under test here: a 429 would count as a failure.
    let relay = stack
        .start_relay_with_options(RelayOptions {
            limits: Limits {
                rate_per_second: 1e6,
                burst: 1e6,
                ..Limits::default()
            },
            ..RelayOptions::default()
        })
        .await;
    let webhook = stack.webhook.clone().unwrap();
    let relay_policy = relay.started.policy.clone();

    // A hub copy of each cluster for the other to be denied on.
    for (cluster, name) in [
        ("cluster1", "owned-by-cluster1"),
        ("cluster2", "owned-by-cluster2"),
    ] {
        let api: Api<Secret> = Api::namespaced(stack.relay_client(&relay, cluster).await, "argocd");
        api.create(
            &PostParams::default(),
            &secret(name, &[OPT_IN, REPO_CREDS], &[], "seed"),
        )
        .await
        .unwrap();
        relay.wait_cached(name).await;
    }

    let relay_kubeconfigs = ["cluster1", "cluster2"]
        .into_iter()
        .map(|c| (c, stack.relay_kubeconfig(&relay, c)))
        .collect();
    let load = Arc::new(Load {
        pace: Pace::new(total, documents.len()),
        tally: Tally::default(),
        relay_kubeconfigs,
        admin_kubeconfig: stack.cluster.kubeconfig().to_path_buf(),
        cache: relay.started.cache.clone(),
    });
    // Two thirds through the relay (two workers per cluster), a third by the admin
    // (two workers).
    let per_relay_worker = total / 6;
    let per_admin_worker = (total - 4 * per_relay_worker) / 2;
    let quotas = [per_relay_worker; 4].iter().sum::<usize>() + 2 * per_admin_worker;
    let mut workers = tokio::task::JoinSet::new();
    for id in 0..2 {
        workers.spawn(relay_worker(
            load.clone(),
            "cluster1",
            "cluster2",
            id,
            per_relay_worker,
        ));
        workers.spawn(relay_worker(
            load.clone(),
            "cluster2",
            "cluster1",
            id,
            per_relay_worker,
        ));
        workers.spawn(admin_worker(load.clone(), id, per_admin_worker));
    }
    assert!(quotas <= total);
    // The remainder (total not divisible) is paced as if done.
    for _ in quotas..total {
        load.pace.claimed.fetch_add(1, Ordering::AcqRel);
        load.pace.after_request();
    }

    let rotation = {
        let other_ca = Ca::generate("another CA", Validity::ca_default()).unwrap();
        let other_client = other_ca
            .issue_cluster("cluster1", Validity::default())
            .unwrap();
        let pki = stack.pki().to_path_buf();
        let client = IssuedCert {
            cert_pem: std::fs::read_to_string(pki.join("cluster1.crt")).unwrap(),
            key_pem: std::fs::read_to_string(pki.join("cluster1.key")).unwrap(),
        };
        Rotation {
            pki,
            ca: Ca::from_pem(stack.ca().cert_pem(), stack.ca().key_pem()).unwrap(),
            relay_addr: relay.started.addr,
            webhook_addr: stack.webhook_addr(),
            other_ca,
            other_client,
            client,
            done: 0,
        }
    };
    let (rotated, rotations_done) = watch::channel(0);
    let rotating = tokio::spawn(rotate_during(rotation, rotations, load.clone(), rotated));
    // A rotation has this many documents' worth of load to happen in before the
    // reloads wait for it.
    let slack = (documents.len() / (rotations + 1) / 2).max(1);
    let started = Instant::now();
    let (webhook_gen0, relay_gen0) = (
        webhook.policy_state().generation(),
        relay_policy.generation(),
    );
    let mut loaded = 0;
    for (k, (doc, valid)) in documents.iter().enumerate() {
        let k = k + 1;
        load.pace.before_document(k).await;
        let due = (1..=rotations)
            .filter(|r| k > rotation_trigger(*r, rotations, documents.len()) + slack)
            .count();
        within(
            "a certificate rotation",
            rotations_done.clone().wait_for(|r| *r >= due),
        )
        .await
        .unwrap();
        stack.set_policy(doc).await;
        if *valid {
            loaded += 1;
            let (w, r) = (webhook_gen0 + loaded, relay_gen0 + loaded);
            within(
                "the webhook to load the policy",
                webhook.policy_state().subscribe().wait_for(|g| *g >= w),
            )
            .await
            .unwrap();
            within(
                "the relay to load the policy",
                relay_policy.subscribe().wait_for(|g| *g >= r),
            )
            .await
            .unwrap();
            assert_eq!(
                (
                    webhook.policy_state().generation(),
                    relay_policy.generation()
                ),
                (w, r)
            );
        } else {
            // The valid document before cleared the error; an invalid one sets it
            // before it counts as an attempt.
            within(
                "the webhook to refuse the policy",
                webhook
                    .policy_state()
                    .subscribe_reloads()
                    .wait_for(|_| webhook.policy_state().last_error().is_some()),
            )
            .await
            .unwrap();
            within(
                "the relay to refuse the policy",
                relay_policy
                    .subscribe_reloads()
                    .wait_for(|_| relay_policy.last_error().is_some()),
            )
            .await
            .unwrap();
            assert_eq!(
                (
                    webhook.policy_state().generation(),
                    relay_policy.generation()
                ),
                (webhook_gen0 + loaded, relay_gen0 + loaded),
                "an invalid document replaced the policy"
            );
        }
        load.pace.document_in(k);
    }
    let overlaps = within("the last rotation", rotating).await.unwrap();
    let reloads_took = started.elapsed();
    within_secs("the load to finish", 240, async {
        while let Some(joined) = workers.join_next().await {
            joined.unwrap();
        }
    })
    .await;
    let load_took = started.elapsed();

    let wrong = load.tally.wrong.lock().unwrap().clone();
    let right = load.tally.right.lock().unwrap().clone();
    eprintln!(
        "{quotas} requests in {load_took:?} ({:.0}/s); {} documents ({loaded} loaded, {invalid} refused) and {} rotations in {reloads_took:?}",
        quotas as f64 / load_took.as_secs_f64(),
        documents.len(),
        overlaps.len()
    );
    eprintln!("  requests done when each rotation began and was served: {overlaps:?}");
    for ((who, op), n) in &right {
        eprintln!("  {who:>14} {op:<22} {n:>5} right");
    }
    assert!(
        wrong.is_empty(),
        "{} of {quotas} requests failed or were decided wrongly, first ones:\n{}",
        wrong.len(),
        wrong
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(load.tally.total_right(), quotas as u64);
    assert_eq!(loaded, reloads as u64);
    assert_eq!(overlaps.len(), rotations);
    // Each rotation happened under load: requests completed while the servers took
    // up the new files, and more came after.
    for (before, after) in &overlaps {
        assert!(before < after && *after < total, "{overlaps:?}");
    }
    assert!(webhook.policy_state().last_error().is_none() && relay_policy.last_error().is_none());

    // What the servers counted agrees.
    let relay_metrics = relay.started.admin.encode_metrics();
    let relay_denied = load.tally.right_where(
        "relay",
        // "update other's" and "release other's" meet a copy outside the view:
        // answered as GET answers, before anything is decided or counted.
        &["create unsourced", "create not opted in", "create blocked"],
    );
    let relay_allowed = load
        .tally
        .right_where("relay", &["create own", "update own", "release own"]);
    assert_eq!(
        metric(
            &relay_metrics,
            "secret_relay_relay_writes_total",
            &["decision=\"denied\""]
        ),
        relay_denied,
        "{relay_metrics}"
    );
    // The two seeded copies were writes too.
    assert_eq!(
        metric(
            &relay_metrics,
            "secret_relay_relay_writes_total",
            &["decision=\"allowed\""]
        ),
        relay_allowed + 2,
        "{relay_metrics}"
    );
    assert_eq!(
        metric(&relay_metrics, "secret_relay_relay_refusals_total", &[]),
        0,
        "{relay_metrics}"
    );
    let webhook_metrics = webhook.admin().encode_metrics();
    let admin_denied = load.tally.right_where(
        "admin",
        &[
            "create with an owner",
            "update cluster1's",
            "delete cluster2's",
        ],
    );
    assert_eq!(
        metric(
            &webhook_metrics,
            "secret_relay_webhook_requests_total",
            &["endpoint=\"validate\"", "decision=\"denied\""]
        ),
        admin_denied,
        "{webhook_metrics}"
    );
    for (text, name) in [
        (
            &relay_metrics,
            "secret_relay_relay_policy_reload_failures_total",
        ),
        (
            &webhook_metrics,
            "secret_relay_webhook_policy_reload_failures_total",
        ),
    ] {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("policy_")).collect();
        assert_eq!(metric(text, name, &[]), invalid as u64, "{lines:#?}");
    }
}

// ---------------------------------------------------------------------------------
// 2 and 3. Faults during a sync of many secrets.
// ---------------------------------------------------------------------------------

/// Every Secret of one namespace as a watch sees it, and every sign of a deletion:
/// a DELETED event, an object missing from a relist (after the watch broke), or an
/// object that came back under another uid.
struct Recorder {
    state: Arc<Mutex<Recorded>>,
    changes: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Recorded {
    objects: BTreeMap<String, Secret>,
    first_uid: BTreeMap<String, String>,
    deletions: Vec<String>,
    relists: usize,
}

impl Recorded {
    fn seen(&mut self, s: &Secret, how: &str) {
        let name = s.metadata.name.clone().unwrap_or_default();
        let first = self.first_uid.entry(name.clone()).or_insert_with(|| uid(s));
        if *first != uid(s) {
            self.deletions
                .push(format!("{name} came back as another object ({how})"));
            *first = uid(s);
        }
    }
}

impl Recorder {
    async fn start(api: Api<Secret>) -> Recorder {
        let state = Arc::new(Mutex::new(Recorded::default()));
        let (tx, changes) = watch::channel(0u64);
        let recorded = state.clone();
        let task = tokio::spawn(async move {
            let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            let mut relist: Option<BTreeMap<String, Secret>> = None;
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                let mut r = recorded.lock().unwrap();
                match event {
                    Event::Apply(s) => {
                        r.seen(&s, "watch");
                        r.objects
                            .insert(s.metadata.name.clone().unwrap_or_default(), s);
                    }
                    Event::Delete(s) => {
                        let name = s.metadata.name.clone().unwrap_or_default();
                        r.deletions.push(format!("{name} DELETED"));
                        r.objects.remove(&name);
                    }
                    Event::Init => relist = Some(BTreeMap::new()),
                    Event::InitApply(s) => {
                        r.seen(&s, "relist");
                        if let Some(l) = relist.as_mut() {
                            l.insert(s.metadata.name.clone().unwrap_or_default(), s);
                        }
                    }
                    Event::InitDone => {
                        let listed = relist.take().unwrap_or_default();
                        let gone: Vec<String> = r
                            .objects
                            .keys()
                            .filter(|n| !listed.contains_key(*n))
                            .map(|n| format!("{n} missing from a relist"))
                            .collect();
                        r.deletions.extend(gone);
                        r.objects = listed;
                        r.relists += 1;
                    }
                }
                drop(r);
                tx.send_modify(|n| *n += 1);
            }
        });
        let recorder = Recorder {
            state,
            changes,
            task,
        };
        recorder
            .wait_until("the first list", 30, |r| r.relists > 0)
            .await;
        recorder
    }

    async fn wait_until(&self, what: &str, secs: u64, pred: impl Fn(&Recorded) -> bool) {
        let mut rx = self.changes.clone();
        within_secs(what, secs, async {
            loop {
                if pred(&self.state.lock().unwrap()) {
                    return;
                }
                rx.changed().await.unwrap();
            }
        })
        .await;
    }

    fn with<T>(&self, f: impl FnOnce(&Recorded) -> T) -> T {
        f(&self.state.lock().unwrap())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The secrets of the sync: `up-<i>` opted in on cluster1 and `down-<i>` managed on
/// the hub for every cluster; every tenth of each is updated during the faults.
#[derive(Clone, Copy)]
struct Shape {
    n: usize,
}

impl Shape {
    fn up(i: usize) -> String {
        format!("up-{i:04}")
    }

    fn down(i: usize) -> String {
        format!("down-{i:04}")
    }

    fn updated(i: usize) -> bool {
        i % 10 == 3
    }

    fn up_value(i: usize, updated: bool) -> String {
        if updated && Shape::updated(i) {
            format!("u{i}-v2")
        } else {
            format!("u{i}")
        }
    }

    fn down_value(i: usize, updated: bool) -> String {
        if updated && Shape::updated(i) {
            format!("d{i}-v2")
        } else {
            format!("d{i}")
        }
    }

    /// How many hub copies of cluster1's secrets exist.
    fn hub_copies(self, r: &Recorded) -> usize {
        (0..self.n)
            .filter(|i| {
                r.objects
                    .get(&Shape::up(*i))
                    .is_some_and(|s| label(s, OWNER) == Some("cluster.cluster1"))
            })
            .count()
    }

    /// The names of `prefix`'s objects whose copy is not there with the right data.
    fn missing(
        self,
        r: &Recorded,
        name: fn(usize) -> String,
        owner: &str,
        value: impl Fn(usize) -> String,
    ) -> Vec<String> {
        (0..self.n)
            .filter(|i| {
                !r.objects.get(&name(*i)).is_some_and(|s| {
                    label(s, OWNER) == Some(owner) && password(s) == value(*i).as_bytes()
                })
            })
            .map(name)
            .collect()
    }
}

/// Creates `objects` in `api`, 16 at a time, each retried until it is there (an API
/// server that is down or restarting fails some; a retried create that had gone
/// through meets 409).
async fn create_all(api: Api<Secret>, objects: Vec<Secret>) {
    futures::stream::iter(objects)
        .for_each_concurrent(16, |s| {
            let api = api.clone();
            async move {
                loop {
                    match api.create(&PostParams::default(), &s).await {
                        Ok(_) => return,
                        Err(kube::Error::Api(e)) if e.code == 409 => return,
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        })
        .await;
}

/// Sets the password of each of `names` to its value, retried until it is done
/// (the object may not exist yet, or its API server may be away).
async fn update_all(api: Api<Secret>, updates: Vec<(String, String)>) {
    futures::stream::iter(updates)
        .for_each_concurrent(16, |(name, value)| {
            let api = api.clone();
            async move {
                let patch = Patch::Merge(serde_json::json!({"stringData": {"password": value}}));
                while api
                    .patch(&name, &PatchParams::default(), &patch)
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
        .await;
}

/// A control plane with the webhook and one relay behind a [`Cutter`] (the agent's
/// URL is the cutter's: cutting it drops every connection at once, as a crash does),
/// and cluster1 with its agent; a recorder on each side.
struct SyncFixture {
    // First: the agent stops before the servers it talks to.
    agent: AgentHandle,
    relay: Option<RelayHandle>,
    relay_addr: SocketAddr,
    front: Cutter,
    hub_seen: Recorder,
    local_seen: Recorder,
    local: TestCluster,
    stack: Stack,
    shape: Shape,
    converge_secs: u64,
}

struct AgentHandle {
    agent: Arc<Agent>,
    admin: secret_relay_runtime::Admin,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl AgentHandle {
    /// Stops the agent at once: its tasks are dropped wherever they are, mid-write
    /// included, as a crash does.
    async fn kill(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn start_agent(stack: &Stack, relay_url: &str, kubeconfig: &Path) -> AgentHandle {
    let pki = stack.pki();
    let config = secret_relay_agent::Config {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        namespace: "akuity".to_owned(),
        relay: relay_url.to_owned(),
        tls_cert: pki.join("cluster1.crt"),
        tls_key: pki.join("cluster1.key"),
        relay_ca: pki.join("ca.crt"),
        admin_addr: None,
        // Never within a test: what converges, converges by retries and relists.
        resync: Duration::from_secs(3600),
        deletion: secret_relay_agent::Deletion::default(),
    };
    let stop = CancellationToken::new();
    let (started, task) = secret_relay_agent::start(config, stop.clone())
        .await
        .unwrap();
    let (agent, admin) = (started.agent, started.admin);
    within_secs("cluster1's agent to be ready", 120, async {
        let mut rx = agent.subscribe();
        while !agent.readiness().0 {
            rx.changed().await.unwrap();
        }
    })
    .await;
    AgentHandle {
        agent,
        admin,
        stop,
        task: Some(task),
    }
}

/// A relay replica at `addr` that gives up on the API server after 10 s (writes and
/// the reads that decide them), so an API server without etcd fails requests soon.
async fn start_sync_relay(stack: &Stack, addr: SocketAddr) -> RelayHandle {
    stack
        .start_relay_with_options(RelayOptions {
            addr,
            limits: Limits {
                upstream_timeout: Duration::from_secs(10),
                // FAULTS_SYNC_SECRETS copies from one cluster, 1,000 and more.
                max_copies_per_cluster: usize::MAX,
                max_bytes_per_cluster: usize::MAX,
                ..Limits::default()
            },
            ..RelayOptions::default()
        })
        .await
}

async fn sync_fixture() -> SyncFixture {
    init_tracing();
    let stack = Stack::start(
        Flavor::Real,
        StackOptions {
            policy: SYNC_POLICY.to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let relay = start_sync_relay(&stack, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await;
    let relay_addr = relay.started.addr;
    let front = Cutter::start(relay_addr).await;
    let local = TestCluster::start(Flavor::Real, Options::default()).await;
    local.create_namespace("akuity").await;
    let hub_seen = Recorder::start(Api::namespaced(stack.cluster.client().await, "argocd")).await;
    let local_seen = Recorder::start(Api::namespaced(local.client().await, "akuity")).await;
    let agent = start_agent(&stack, &front.url(), local.kubeconfig()).await;
    SyncFixture {
        agent,
        relay: Some(relay),
        relay_addr,
        front,
        hub_seen,
        local_seen,
        local,
        stack,
        shape: Shape {
            n: count("FAULTS_SYNC_SECRETS", 1000),
        },
        converge_secs: count("FAULTS_CONVERGE_SECS", 240) as u64,
    }
}

/// What a fault must leave alone: the uid of every copy there when it struck.
struct Before {
    what: String,
    hub_copies: BTreeMap<String, String>,
    down_copies: BTreeMap<String, String>,
}

impl SyncFixture {
    async fn hub(&self) -> Api<Secret> {
        Api::namespaced(self.stack.cluster.client().await, "argocd")
    }

    async fn local_api(&self) -> Api<Secret> {
        Api::namespaced(self.local.client().await, "akuity")
    }

    /// Starts creating the secrets of both directions, in the background.
    async fn start_sync(&self) -> tokio::task::JoinHandle<()> {
        let n = self.shape.n;
        let ups = (0..n)
            .map(|i| {
                secret(
                    &Shape::up(i),
                    &[OPT_IN, REPO_CREDS],
                    &[],
                    &Shape::up_value(i, false),
                )
            })
            .collect();
        let downs = (0..n)
            .map(|i| {
                secret(
                    &Shape::down(i),
                    &[],
                    &[TO_ALL],
                    &Shape::down_value(i, false),
                )
            })
            .collect();
        let (local, hub) = (self.local_api().await, self.hub().await);
        tokio::spawn(async move {
            tokio::join!(create_all(local, ups), create_all(hub, downs));
        })
    }

    /// Starts updating every tenth secret of both directions, in the background.
    async fn start_updates(&self) -> tokio::task::JoinHandle<()> {
        let n = self.shape.n;
        let ups = (0..n)
            .filter(|i| Shape::updated(*i))
            .map(|i| (Shape::up(i), Shape::up_value(i, true)))
            .collect();
        let downs = (0..n)
            .filter(|i| Shape::updated(*i))
            .map(|i| (Shape::down(i), Shape::down_value(i, true)))
            .collect();
        let (local, hub) = (self.local_api().await, self.hub().await);
        tokio::spawn(async move {
            tokio::join!(update_all(local, ups), update_all(hub, downs));
        })
    }

    /// Waits until `share` of the hub copies exist, and returns what a fault striking
    /// now must leave alone. The sync is still under way: not every copy is there.
    async fn strike_at(&self, share: f64, what: &str) -> Before {
        let shape = self.shape;
        let want = ((shape.n as f64) * share) as usize;
        self.hub_seen
            .wait_until(
                &format!("{want} hub copies before {what}"),
                self.converge_secs,
                |r| shape.hub_copies(r) >= want,
            )
            .await;
        let uids = |r: &Recorded, name: fn(usize) -> String| {
            (0..shape.n)
                .map(name)
                .filter_map(|n| r.objects.get(&n).map(|s| (n, uid(s))))
                .collect::<BTreeMap<_, _>>()
        };
        let hub_copies = self.hub_seen.with(|r| uids(r, Shape::up));
        let down_copies = self.local_seen.with(|r| uids(r, Shape::down));
        eprintln!(
            "{what}: {} hub copies and {} down copies of {} each",
            hub_copies.len(),
            down_copies.len(),
            shape.n
        );
        assert!(
            hub_copies.len() < shape.n || down_copies.len() < shape.n,
            "the sync was over before {what}"
        );
        Before {
            what: what.to_owned(),
            hub_copies,
            down_copies,
        }
    }

    /// Failed actions of the agent so far.
    fn agent_errors(&self) -> u64 {
        let text = self.agent.admin.encode_metrics();
        metric(
            &text,
            "secret_relay_agent_actions_total",
            &["result=\"error\""],
        )
    }

    /// Waits until cluster1's agent has failed an action since it had failed `before`:
    /// it has met the fault.
    async fn agent_meets_the_fault(&self, what: &str, before: u64) {
        let agent = self.agent.agent.clone();
        within_secs(&format!("cluster1's agent to meet {what}"), 60, async {
            let mut rx = agent.subscribe();
            while self.agent_errors() <= before {
                rx.changed().await.unwrap();
            }
        })
        .await;
    }

    /// Every secret arrived with its latest data, and nothing was deleted.
    async fn converged(&self, before: &[Before], started: Instant) {
        let shape = self.shape;
        let up = |i| Shape::up_value(i, true);
        let down = |i| Shape::down_value(i, true);
        self.hub_seen
            .wait_until("every hub copy", self.converge_secs, |r| {
                shape
                    .missing(r, Shape::up, "cluster.cluster1", up)
                    .is_empty()
            })
            .await;
        self.local_seen
            .wait_until("every down copy", self.converge_secs, |r| {
                shape
                    .missing(r, Shape::down, "control-plane", down)
                    .is_empty()
            })
            .await;
        eprintln!(
            "{} secrets each way converged {:?} after the sync began (the test's watches listed the hub {} and cluster1 {} times)",
            shape.n,
            started.elapsed(),
            self.hub_seen.with(|r| r.relists),
            self.local_seen.with(|r| r.relists),
        );
        let (hub_deleted, hub_names) = self.hub_seen.with(|r| {
            (
                r.deletions.clone(),
                r.objects.keys().cloned().collect::<BTreeSet<_>>(),
            )
        });
        let (local_deleted, local_names) = self.local_seen.with(|r| {
            (
                r.deletions.clone(),
                r.objects.keys().cloned().collect::<BTreeSet<_>>(),
            )
        });
        assert!(hub_deleted.is_empty(), "on the hub: {hub_deleted:?}");
        assert!(local_deleted.is_empty(), "on cluster1: {local_deleted:?}");
        // Nothing else appeared either: each side holds exactly both sets.
        let want: BTreeSet<String> = (0..shape.n)
            .flat_map(|i| [Shape::up(i), Shape::down(i)])
            .collect();
        assert_eq!(hub_names, want);
        assert_eq!(local_names, want);
        // And, read straight from each API server now, every copy a fault found is the
        // very object it found.
        let hub = self.hub().await;
        let local = self.local_api().await;
        let now = |list: Vec<Secret>| {
            list.into_iter()
                .map(|s| (s.metadata.name.clone().unwrap_or_default(), uid(&s)))
                .collect::<BTreeMap<_, _>>()
        };
        let hub_now = now(hub.list(&Default::default()).await.unwrap().items);
        let local_now = now(local.list(&Default::default()).await.unwrap().items);
        for b in before {
            for (name, uid) in &b.hub_copies {
                assert_eq!(
                    hub_now.get(name),
                    Some(uid),
                    "hub copy {name}, there at {}",
                    b.what
                );
            }
            for (name, uid) in &b.down_copies {
                assert_eq!(
                    local_now.get(name),
                    Some(uid),
                    "down copy {name}, there at {}",
                    b.what
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_and_the_agent_killed_during_a_sync_lose_nothing_and_delete_nothing() {
    if Flavor::Real.skipped("the_relay_and_the_agent_killed_during_a_sync") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut fx = sync_fixture().await;
    let started = Instant::now();
    let sync = fx.start_sync().await;

    // The relay crashes: every connection ends at once, mid-request; a replica starts
    // at the same address. Meanwhile every tenth secret changes on both sides.
    let first = fx.strike_at(1.0 / 3.0, "the relay's crash").await;
    let errors = fx.agent_errors();
    fx.front.cut();
    fx.relay.take().unwrap().stop().await;
    let updates = fx.start_updates().await;
    fx.agent_meets_the_fault("the relay's crash", errors).await;
    fx.relay = Some(start_sync_relay(&fx.stack, fx.relay_addr).await);
    fx.front.restore();

    // The agent crashes mid-sync and starts again.
    let second = fx.strike_at(2.0 / 3.0, "the agent's crash").await;
    fx.agent.kill().await;
    fx.agent = start_agent(&fx.stack, &fx.front.url(), fx.local.kubeconfig()).await;

    within_secs("the secrets to be created", fx.converge_secs, sync)
        .await
        .unwrap();
    within_secs("the updates", fx.converge_secs, updates)
        .await
        .unwrap();
    fx.converged(&[first, second], started).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_and_the_api_server_restarted_during_a_sync_lose_nothing_and_delete_nothing() {
    if Flavor::Real.skipped("etcd_and_the_api_server_restarted_during_a_sync") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let fx = sync_fixture().await;
    let control_plane = fx.stack.cluster.real().unwrap();
    let started = Instant::now();
    let sync = fx.start_sync().await;

    // The control plane's etcd stops (SIGTERM) and starts again; meanwhile every
    // tenth secret changes on both sides.
    let first = fx.strike_at(1.0 / 3.0, "etcd's restart").await;
    let errors = fx.agent_errors();
    control_plane.stop_component("etcd").await;
    let updates = fx.start_updates().await;
    fx.agent_meets_the_fault("etcd's restart", errors).await;
    control_plane.start_component("etcd").await;

    // The control plane's kube-apiserver crashes (SIGKILL) and starts again.
    let second = fx.strike_at(2.0 / 3.0, "kube-apiserver's crash").await;
    let errors = fx.agent_errors();
    control_plane.kill_component("kube-apiserver").await;
    fx.agent_meets_the_fault("kube-apiserver's crash", errors)
        .await;
    control_plane.start_component("kube-apiserver").await;

    within_secs("the secrets to be created", fx.converge_secs, sync)
        .await
        .unwrap();
    within_secs("the updates", fx.converge_secs, updates)
        .await
        .unwrap();
    fx.converged(&[first, second], started).await;
}
