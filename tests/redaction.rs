//! Redaction: no secret value reaches the logs (at debug), the metrics or the Events,
//! nor a digest of one (the old `secret-relay.io/digest` annotation, or the digest
//! of a canary Secret's data in any form).
//!
//! Two runs: `secret-relay demo --scenario` as a user runs it, with
//! `SECRET_RELAY_LOG=debug`, its output scanned for every value the scenario writes;
//! and the same behaviours in process (a control plane with the webhook and the
//! relay, two managed clusters with agents, on sandboxes and real kube-apiservers)
//! with a debug subscriber capturing every crate's logs, the relay's, webhook's and
//! agents' `/metrics`, and the Events in the managed clusters, scanned for canary
//! values in every form they could leak in: raw, base64 (as `data` holds them) and
//! JSON-escaped.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use secret_relay_testkit::{
    Flavor, OPT_IN, Options, REPO_CREDS, RelayHandle, Stack, StackOptions, TO_ALL, TestCluster,
    on_both, password, secret, within,
};

// ---- scanning ---------------------------------------------------------------

fn b64(value: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(value)
}

/// Drops ANSI colour sequences (the demo's live view draws in colour).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every place `value` shows up in `text`, in any of the forms a leak would take.
/// Distinctive values are looked for anywhere, raw and base64; short or common ones
/// (one letter, English words) only where they would be a Secret's value: under the
/// key `value` the demo's Secrets use, raw or base64.
fn leaks(text: &str, value: &str) -> Vec<String> {
    let distinctive = value.len() >= 8 || value.contains(['-', ':', '/']);
    let encoded = b64(value);
    let mut forms = Vec::new();
    for v in [value, encoded.as_str()] {
        forms.push(format!("\"value\":\"{v}\""));
        forms.push(format!("\"value\": \"{v}\""));
        forms.push(format!("value: {v}"));
    }
    if distinctive {
        forms.push(value.to_owned());
        forms.push(encoded.trim_end_matches('=').to_owned());
    }
    let mut found = Vec::new();
    for line in text.lines() {
        if let Some(form) = forms.iter().find(|f| line.contains(f.as_str())) {
            let at = line.find(form.as_str()).unwrap();
            let from = line.floor_char_boundary(at.saturating_sub(160));
            let to = line.ceil_char_boundary((at + form.len() + 80).min(line.len()));
            found.push(format!("{form:?} in: ...{}...", &line[from..to]));
        }
    }
    found
}

fn assert_no_leak(what: &str, text: &str, values: &[&str]) {
    let text = strip_ansi(text);
    let found: Vec<String> = values.iter().flat_map(|v| leaks(&text, v)).collect();
    assert!(
        found.is_empty(),
        "{} secret value(s) in {what}:\n{}",
        found.len(),
        found.join("\n")
    );
    assert!(
        !text.contains("secret-relay.io/digest"),
        "the old digest annotation in {what}"
    );
}

/// No digest of a Secret holding one of `values` as its `password` (as the
/// canaries' Secrets do), hex or base64, shows up in `text`.
fn assert_no_fingerprint(what: &str, text: &str, values: &[&str]) {
    for value in values {
        let hex = secret_relay_policy::digest(&secret("x", &[], &[], value));
        let hex = &hex["sha256:".len()..];
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        let encoded = encoded.trim_end_matches('=');
        assert!(
            !text.contains(hex) && !text.contains(encoded),
            "a digest of the Secret holding {value:?} in {what}"
        );
    }
}

// ---- the demo, as a user runs it --------------------------------------------

/// Every value `secret-relay demo --scenario` writes (src/demo/scenario.rs).
const DEMO_VALUES: &[&str] = &[
    "https://example.invalid/repo.git",
    "edited",
    "x",
    "from-control-plane",
    "from-cluster1",
    "for-everyone",
    "p",
    "m",
    "c2c",
    "s",
    "hub-value",
    "local",
    "hub",
];

fn demo_with_debug_logs(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_secret-relay"))
        .args(["demo", "--scenario", "--dir"])
        .arg(dir.path())
        .args(extra)
        .env("SECRET_RELAY_LOG", "debug")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("12/12 passed"),
        "demo --scenario failed:\n{stdout}\n{}",
        &stderr[stderr.len().saturating_sub(4000)..]
    );
    // Debug logging was on: the scan is not of an empty output.
    assert!(stderr.contains("DEBUG"), "no debug lines");
    // A log that is not a terminal (a pipe here, `kubectl logs` in a cluster) is
    // plain text, without colour codes.
    assert!(!stderr.contains('\u{1b}'), "colour codes in a piped log");
    assert!(
        stderr.lines().count() > 500,
        "{} lines",
        stderr.lines().count()
    );
    assert_no_leak("the demo's stdout", &stdout, DEMO_VALUES);
    assert_no_leak("the demo's debug log", &stderr, DEMO_VALUES);
    // Its log file, when it writes one (the live view does).
    if let Ok(log) = std::fs::read_to_string(dir.path().join("demo.log")) {
        assert_no_leak("demo.log", &log, DEMO_VALUES);
    }
}

#[test]
fn the_demo_scenario_logs_no_secret_value_at_debug_on_sandboxes() {
    demo_with_debug_logs(&[]);
}

#[test]
fn the_demo_scenario_logs_no_secret_value_at_debug_on_real_kube_apiservers() {
    if Flavor::Real.skipped("demo redaction on real kube-apiservers") {
        return;
    }
    demo_with_debug_logs(&["--control-plane", "real"]);
}

// ---- in process: logs of every crate, metrics, Events -----------------------

/// The binary's one subscriber: every crate at debug.
fn capture_debug_logs() {
    secret_relay_testkit::capture_logs("debug");
}

const POLICY: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
  - name: cluster2
    labels: { env: staging }
secretSources:
  - clusterSelector: env in (prod, staging)
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
  - clusterSelector: env in (prod, staging)
    labelSelector: app.kubernetes.io/component=notifications-controller
";

/// The canaries of the in-process run, one per behaviour.
const UP: &str = "redact-up-synced-5e1f";
const UP_ROTATED: &str = "redact-up-rotated-77aa";
const CP_EDIT: &str = "redact-cp-edit-denied-09b2";
const BLOCKED: &str = "redact-blocked-3c4d";
const NO_SOURCE: &str = "redact-no-source-81e0";
const ADOPT_CP: &str = "redact-adoptable-cp-6d2a";
const ADOPT_C1: &str = "redact-adopted-by-c1-f00d";
const ALL: &str = "redact-managed-all-4b1c";
const C2C: &str = "redact-cluster-to-cluster-9a9a";
const DRIFT: &str = "redact-drift-local-edit-2e2e";
const CONFLICT_LOCAL: &str = "redact-conflict-local-7c7c";
const CONFLICT_HUB: &str = "redact-conflict-hub-1d1d";
const FORGED: &str = "redact-forged-owner-5a5a";

const VALUES: &[&str] = &[
    UP,
    UP_ROTATED,
    CP_EDIT,
    BLOCKED,
    NO_SOURCE,
    ADOPT_CP,
    ADOPT_C1,
    ALL,
    C2C,
    DRIFT,
    CONFLICT_LOCAL,
    CONFLICT_HUB,
    FORGED,
];

struct Managed {
    name: String,
    cluster: TestCluster,
    agent: Arc<secret_relay_agent::Agent>,
    admin: secret_relay_runtime::Admin,
    client: Client,
}

impl Managed {
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), "akuity")
    }

    /// Waits until the agent reports `state` for `name` in `direction`.
    async fn reports(&self, name: &str, direction: &'static str, state: &str) {
        let agent = self.agent.clone();
        within(
            &format!("{} to report {direction} {state} for {name}", self.name),
            async {
                let mut rx = agent.subscribe();
                while agent
                    .status(name, direction)
                    .is_none_or(|(s, _)| s != state)
                {
                    rx.changed().await.unwrap();
                }
            },
        )
        .await;
    }
}

async fn start_managed(stack: &Stack, relay: &RelayHandle, name: &str, flavor: Flavor) -> Managed {
    let cluster = TestCluster::start(flavor, Options::default()).await;
    let started = stack
        .start_agent_started(
            name,
            &cluster,
            relay.started.addr,
            Duration::from_secs(30),
            relay.shutdown.child_token(),
        )
        .await;
    let agent = started.agent.clone();
    let client = cluster.client().await;
    Managed {
        name: name.to_owned(),
        cluster,
        agent,
        admin: started.admin,
        client,
    }
}

async fn appears(api: &Api<Secret>, name: &str, pred: impl Fn(&Secret) -> bool + Send + 'static) {
    within(
        &format!("{name} to appear"),
        await_condition(api.clone(), name, move |s: Option<&Secret>| {
            s.is_some_and(&pred)
        }),
    )
    .await
    .unwrap();
}

async fn webhook_metrics(stack: &Stack) -> String {
    let req = http::Request::get("/metrics")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = secret_relay_webhook::handle(stack.webhook.as_ref().unwrap(), req).await;
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

/// Every Event of a cluster (events.k8s.io/v1, all namespaces), as JSON; `None` where
/// the API server does not serve Events (the sandbox).
async fn events(cluster: &TestCluster) -> Option<Vec<serde_json::Value>> {
    use k8s_openapi::api::events::v1::Event;
    let api: Api<Event> = Api::all(cluster.client().await);
    match api.list(&ListParams::default()).await {
        Ok(list) => Some(
            list.items
                .iter()
                .map(|e| serde_json::to_value(e).unwrap())
                .collect(),
        ),
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => panic!("failed to list Events: {e}"),
    }
}

on_both!(no_secret_value_reaches_logs_metrics_or_events);

/// The demo's behaviours in process, each with its own canary value, then every
/// log line (debug, every crate), every metrics endpoint and every Event is scanned.
async fn no_secret_value_reaches_logs_metrics_or_events(flavor: Flavor) {
    capture_debug_logs();
    let stack = Stack::start(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let relay = stack.start_relay().await;
    let c1 = start_managed(&stack, &relay, "cluster1", flavor).await;
    let c2 = start_managed(&stack, &relay, "cluster2", flavor).await;
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    let pp = PostParams::default();
    let merge = |value: &str| Patch::Merge(serde_json::json!({"stringData": {"password": value}}));

    // Up-sync, then a rotation.
    c1.secrets()
        .create(&pp, &secret("redact-repo", &[OPT_IN, REPO_CREDS], &[], UP))
        .await
        .unwrap();
    appears(&hub, "redact-repo", |s| password(s) == UP.as_bytes()).await;
    c1.secrets()
        .patch("redact-repo", &PatchParams::default(), &merge(UP_ROTATED))
        .await
        .unwrap();
    appears(&hub, "redact-repo", |s| {
        password(s) == UP_ROTATED.as_bytes()
    })
    .await;
    // The control plane's edit of a cluster's copy is denied by the webhook.
    hub.patch("redact-repo", &PatchParams::default(), &merge(CP_EDIT))
        .await
        .unwrap_err();
    // A blocked secret and one no Secret Source allows: denied, reported.
    c1.secrets()
        .create(
            &pp,
            &secret("argocd-secret", &[OPT_IN, REPO_CREDS], &[], BLOCKED),
        )
        .await
        .unwrap();
    c1.reports("argocd-secret", "up", "denied").await;
    c1.secrets()
        .create(&pp, &secret("redact-no-source", &[OPT_IN], &[], NO_SOURCE))
        .await
        .unwrap();
    c1.reports("redact-no-source", "up", "denied").await;
    // Adoption and its release.
    hub.create(
        &pp,
        &secret("argocd-notifications-secret", &[], &[], ADOPT_CP),
    )
    .await
    .unwrap();
    c1.secrets()
        .create(
            &pp,
            &secret(
                "argocd-notifications-secret",
                &[
                    OPT_IN,
                    ("app.kubernetes.io/component", "notifications-controller"),
                ],
                &[],
                ADOPT_C1,
            ),
        )
        .await
        .unwrap();
    appears(&hub, "argocd-notifications-secret", |s| {
        password(s) == ADOPT_C1.as_bytes()
    })
    .await;
    c1.secrets()
        .delete("argocd-notifications-secret", &DeleteParams::default())
        .await
        .unwrap();
    appears(&hub, "argocd-notifications-secret", |s| {
        s.metadata
            .labels
            .as_ref()
            .is_none_or(|l| !l.contains_key("secret-relay.io/owner"))
    })
    .await;
    // Down-sync to all, cluster to cluster, drift and a conflict.
    hub.create(&pp, &secret("redact-all", &[], &[TO_ALL], ALL))
        .await
        .unwrap();
    c1.secrets()
        .create(
            &pp,
            &secret(
                "redact-c2c",
                &[OPT_IN, REPO_CREDS],
                &[("akuity.io/managed-secret-allowed-clusters", "cluster2")],
                C2C,
            ),
        )
        .await
        .unwrap();
    appears(&c2.secrets(), "redact-all", |_| true).await;
    appears(&c2.secrets(), "redact-c2c", |s| {
        password(s) == C2C.as_bytes()
    })
    .await;
    c2.secrets()
        .patch("redact-all", &PatchParams::default(), &merge(DRIFT))
        .await
        .unwrap();
    appears(&c2.secrets(), "redact-all", |s| {
        password(s) == ALL.as_bytes()
    })
    .await;
    c2.secrets()
        .create(&pp, &secret("redact-taken", &[], &[], CONFLICT_LOCAL))
        .await
        .unwrap();
    hub.create(&pp, &secret("redact-taken", &[], &[TO_ALL], CONFLICT_HUB))
        .await
        .unwrap();
    c2.reports("redact-taken", "down", "conflict").await;
    // A forged owner label through the relay, refused with the body in hand.
    let forged = secret(
        "redact-forged",
        &[
            OPT_IN,
            REPO_CREDS,
            ("secret-relay.io/owner", "cluster.cluster2"),
        ],
        &[],
        FORGED,
    );
    Api::<Secret>::namespaced(stack.relay_client(&relay, "cluster1").await, "argocd")
        .create(&pp, &forged)
        .await
        .unwrap_err();

    // Events are written by the agents (the real API server serves them): wait for
    // the ones these behaviours cause, so the scan is not of nothing.
    if flavor == Flavor::Real {
        within("the agents' Events", async {
            loop {
                let reasons: Vec<String> = [&c1, &c2]
                    .iter()
                    .map(|m| events(&m.cluster))
                    .collect::<futures::future::JoinAll<_>>()
                    .await
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e["reason"].as_str().map(str::to_owned))
                    .collect();
                if ["UpSynced", "DownSyncConflict"]
                    .iter()
                    .all(|r| reasons.iter().any(|x| x == r))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
    }

    // The scan.
    let mut events_seen = 0;
    for cluster in [&stack.cluster, &c1.cluster, &c2.cluster] {
        if let Some(events) = events(cluster).await {
            events_seen += events.len();
            let text = events
                .iter()
                .map(serde_json::Value::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            assert_no_leak("the Events", &text, VALUES);
            assert_no_fingerprint("the Events", &text, VALUES);
        }
    }
    if flavor == Flavor::Real {
        assert!(events_seen >= 3, "{events_seen} Events");
    }
    let mut scanned = vec![
        (
            "the relay's metrics".to_owned(),
            relay.started.admin.encode_metrics(),
        ),
        (
            "the webhook's metrics".to_owned(),
            webhook_metrics(&stack).await,
        ),
    ];
    for m in [&c1, &c2] {
        scanned.push((
            format!("{}'s agent metrics", m.name),
            m.admin.encode_metrics(),
        ));
    }
    let logs = secret_relay_testkit::captured_logs();
    assert!(logs.contains(" DEBUG "), "debug logging is on");
    scanned.push(("the debug logs".to_owned(), logs));
    for (what, text) in &scanned {
        assert_no_leak(what, text, VALUES);
        assert_no_fingerprint(what, text, VALUES);
    }
    relay.stop().await;
}
