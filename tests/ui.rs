//! `secret-relay ui`, the Secrets page, end to end.
//!
//! - Its guards over HTTP on the sandbox: the access token, the Host check, the
//!   session token on every `/api/` request (the cookie alone reads nothing), the
//!   checks on writes, the Content-Security-Policy, values only on request.
//! - The page itself in Debian's headless Chromium, driven by playwright-core
//!   (`tests/ui-browser/ui.mjs`), against a real control plane with the webhook,
//!   the relay and a managed cluster with its agent. The test fails when node,
//!   Chromium or playwright-core is missing, unless `SECRET_RELAY_SKIP_BROWSER=1`
//!   asks for the skip; `SECRET_RELAY_SKIP_REAL_CONTROL_PLANE=1` skips it like
//!   every real-control-plane test. `SECRET_RELAY_UI_SCREENSHOTS=DIR` keeps the
//!   screenshots (`DIR=docs` refreshes the README's).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::wait::await_condition;
use secret_relay_runtime::CancellationToken;
use secret_relay_testkit::{
    Flavor, Options, RelayHandle, Stack, StackOptions, TestCluster, repo_root, within,
};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

const POLICY: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod, region: eu }
  - name: cluster2
    labels: { env: staging, region: eu }
  - name: cluster3
    labels: { env: prod, region: us }
secretSources:
  - clusterSelector: env in (prod, staging)
    labelSelector: argocd.argoproj.io/secret-type in (repository, repo-creds)
  - clusterSelector: env in (prod, staging)
    labelSelector: app.kubernetes.io/component=notifications-controller
";

const TOKEN: &str = "test-token-0123456789";

/// The env var that asks for the browser test to be skipped when its tools are missing.
const SKIP_BROWSER_ENV: &str = "SECRET_RELAY_SKIP_BROWSER";

use secret_relay_testkit::secret_with_data as secret;

async fn start_ui(
    kubeconfig: &Path,
    clusters: Vec<secret_relay_ui::ClusterKubeconfig>,
    relay_metrics: Option<String>,
    shutdown: CancellationToken,
) -> secret_relay_ui::Started {
    let config = secret_relay_ui::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        kubeconfig: Some(kubeconfig.to_path_buf()),
        clusters,
        relay_metrics,
        relay_metrics_interval: Duration::from_millis(500),
        token: Some(TOKEN.to_owned()),
        ..secret_relay_ui::Config::default()
    };
    let (started, _task) = secret_relay_ui::start(config, shutdown).await.unwrap();
    started
}

// ---- the guards, over HTTP ------------------------------------------------------

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_needs_its_token_refuses_cross_site_writes_and_never_lists_values() {
    let stack = Stack::start(
        Flavor::Sandbox,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    hub.create(
        &PostParams::default(),
        &secret(
            "db",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "cluster1")],
            &[("password", "hunter2-value")],
        ),
    )
    .await
    .unwrap();
    // A typo in allowed-clusters: the write is allowed, the page names it.
    hub.create(
        &PostParams::default(),
        &secret(
            "typo",
            &[],
            &[(
                "akuity.io/managed-secret-allowed-clusters",
                "cluster1, clsuter2",
            )],
            &[("password", "hunter2-value")],
        ),
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let ui = start_ui(
        stack.cluster.kubeconfig(),
        Vec::new(),
        None,
        shutdown.clone(),
    )
    .await;
    assert!(ui.loopback);
    assert_eq!(
        ui.url,
        format!("http://127.0.0.1:{}/?token={TOKEN}", ui.addr.port())
    );
    let addr = ui.addr;

    // No cookie, a wrong token: no page.
    assert_eq!(send(addr, "GET", "/", &[], None).await.status, 401);
    assert_eq!(send(addr, "GET", "/api/state", &[], None).await.status, 401);
    assert_eq!(
        send(addr, "GET", "/?token=wrong", &[], None).await.status,
        403
    );
    // The printed address trades the token for a strict cookie, and sends the page
    // on with its session token in the fragment.
    let login = send(addr, "GET", &format!("/?token={TOKEN}"), &[], None).await;
    assert_eq!(login.status, 303);
    let cookie = login.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = [("cookie", cookie.as_str())];
    let csrf = session_of(&login);
    assert_eq!(csrf.len(), 43);
    let session = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    // The cookie alone reads nothing: a page on another port of 127.0.0.1 could have
    // its browser send it there (cookies ignore ports); the session token stays in
    // the tab's own origin.
    let cookie_only = send(addr, "GET", "/api/state", &with_cookie, None).await;
    assert_eq!(cookie_only.status, 403, "{}", cookie_only.body);
    let stream_cookie_only = send(addr, "GET", "/api/events", &with_cookie, None).await;
    assert_eq!(stream_cookie_only.status, 403);

    // The page: a strict CSP, nothing of the user's, no inline script, nothing from
    // elsewhere.
    let page = send(addr, "GET", "/", &with_cookie, None).await;
    assert_eq!(page.status, 200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'self'"),
        "{csp}"
    );
    assert!(csp.contains("require-trusted-types-for 'script'"), "{csp}");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(
        page.body
            .contains("<script src=\"/assets/app.js\" defer></script>")
    );
    assert!(!page.body.contains("<script>") && !page.body.contains("style="));
    assert!(!page.body.contains("http://") && !page.body.contains("https://"));
    assert!(!page.body.contains(&csrf) && !page.body.contains(TOKEN));
    let script = send(addr, "GET", "/assets/app.js", &with_cookie, None).await;
    assert_eq!(script.status, 200);
    assert!(!script.body.contains("innerHTML") && !script.body.contains("http"));

    // Another Host (DNS rebinding) gets nothing, even with the cookie.
    let rebound = send(
        addr,
        "GET",
        "/api/state",
        &[
            ("cookie", cookie.as_str()),
            ("host", &format!("evil.example:{}", addr.port())),
        ],
        None,
    )
    .await;
    assert_eq!(rebound.status, 421);

    // The list names the key, never the value.
    let state = within("the page to see db", async {
        loop {
            let s = send(addr, "GET", "/api/state", &session, None).await;
            if s.body.contains("\"name\":\"db\"") && s.body.contains("\"name\":\"typo\"") {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        state.body.contains("\"keys\":[\"password\"]"),
        "{}",
        state.body
    );
    assert!(!state.body.contains("hunter2") && !state.body.contains("aHVudGVyMi"));
    assert_eq!(state.headers["cache-control"], "no-store");
    let view: serde_json::Value = serde_json::from_str(&state.body).unwrap();
    let row = |name: &str| {
        view["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        row("typo")["problems"],
        serde_json::json!([
            "the annotation akuity.io/managed-secret-allowed-clusters names clsuter2 (did you mean cluster2?), which is not a registered cluster, so nothing goes there: fix the name or register the cluster"
        ])
    );
    assert_eq!(row("typo")["targets"], serde_json::json!(["cluster1"]));
    assert_eq!(row("db")["problems"], serde_json::json!([]));

    // Writes need the session token, a same-origin request and JSON.
    let create = r#"{"name":"new-one","target":{"mode":"all"},"data":{"k":"v"}}"#;
    let json = ("content-type", "application/json");
    let no_token = send(
        addr,
        "POST",
        "/api/secrets",
        &[with_cookie[0], json],
        Some(create),
    )
    .await;
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let token = ("x-csrf-token", csrf.as_str());
    let cross = send(
        addr,
        "POST",
        "/api/secrets",
        &[
            with_cookie[0],
            json,
            token,
            ("origin", "http://evil.example"),
        ],
        Some(create),
    )
    .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    let cross_site = send(
        addr,
        "POST",
        "/api/secrets",
        &[
            with_cookie[0],
            json,
            token,
            ("sec-fetch-site", "cross-site"),
        ],
        Some(create),
    )
    .await;
    assert_eq!(cross_site.status, 403, "{}", cross_site.body);
    let form = send(
        addr,
        "POST",
        "/api/secrets",
        &[with_cookie[0], token, ("content-type", "text/plain")],
        Some(create),
    )
    .await;
    assert_eq!(form.status, 403, "{}", form.body);
    let origin = format!("http://127.0.0.1:{}", addr.port());
    let ok = send(
        addr,
        "POST",
        "/api/secrets",
        &[
            with_cookie[0],
            json,
            token,
            ("origin", origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        Some(create),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let made = hub.get("new-one").await.unwrap();
    assert_eq!(
        made.metadata.annotations.unwrap()["akuity.io/managed-secret-allowed-clusters"],
        "ALL"
    );

    // A blocked name is refused by the page, before the API server.
    let blocked = send(
        addr,
        "POST",
        "/api/secrets",
        &[with_cookie[0], json, token],
        Some(r#"{"name":"argocd-secret","target":{"mode":"all"}}"#),
    )
    .await;
    assert_eq!(blocked.status, 422);
    assert!(
        blocked.body.contains("\"rule\":\"blocked-name\""),
        "{}",
        blocked.body
    );
    assert!(hub.get_opt("argocd-secret").await.unwrap().is_none());

    // Revealing is its own request, for one key.
    let revealed = send(
        addr,
        "POST",
        "/api/secrets/db/reveal",
        &[with_cookie[0], json, token],
        Some(r#"{"key":"password"}"#),
    )
    .await;
    assert_eq!(revealed.status, 200);
    assert!(
        revealed.body.contains("\"value\":\"hunter2-value\""),
        "{}",
        revealed.body
    );
    let missing = send(
        addr,
        "POST",
        "/api/secrets/db/reveal",
        &[with_cookie[0], json, token],
        Some(r#"{"key":"nope"}"#),
    )
    .await;
    assert_eq!(missing.status, 404);
    shutdown.cancel();
}

// ---- sync state, with nothing of the values ---------------------------------------

secret_relay_testkit::on_both!(the_page_tells_synced_from_outdated_and_carries_no_digest);

/// The session token in the fragment of the address the printed one leads to.
fn session_of(login: &Answer) -> String {
    let to = login.headers["location"].to_str().unwrap();
    to.strip_prefix("/#csrf=")
        .unwrap_or_else(|| panic!("the login leads to {to}"))
        .to_owned()
}

/// The state the page shows for Secret `name` on `cluster` in a view (`/api/state`'s
/// body, or one message of its stream).
fn sync_state(view: &serde_json::Value, name: &str, cluster: &str) -> Option<String> {
    view["secrets"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)?["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["cluster"] == cluster)?["sync"]["state"]
        .as_str()
        .map(str::to_owned)
}

/// Reads the page's stream (`/api/events`) until a message's view gives `state` for
/// `name` on `cluster`; every message read goes through `check`.
async fn stream_until(
    addr: std::net::SocketAddr,
    session: &(String, String),
    name: &str,
    cluster: &str,
    state: &str,
    check: &(dyn Fn(&str) + Sync),
) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let (cookie, csrf) = session;
    let req = http::Request::get(format!("http://{addr}/api/events?csrf={csrf}"))
        .header("cookie", cookie)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut text = String::new();
    within(
        &format!("the page's stream to show {name} {state} on {cluster}"),
        async {
            loop {
                let frame = body.frame().await.unwrap().unwrap();
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                text.push_str(&String::from_utf8_lossy(&data));
                while let Some(end) = text.find("\n\n") {
                    let message: String = text.drain(..end + 2).collect();
                    check(&message);
                    let Some(json) = message.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let view: serde_json::Value = serde_json::from_str(json).unwrap();
                    if sync_state(&view, name, cluster).as_deref() == Some(state) {
                        return;
                    }
                }
            }
        },
    )
    .await;
}

/// The page tells a down copy written from the current hub copy (`synced`) from one
/// written from an earlier version (`outdated`) by the copy's
/// `secret-relay.io/source`, reading the managed cluster's metadata only; its API
/// and its stream never carry a digest of the values.
async fn the_page_tells_synced_from_outdated_and_carries_no_digest(
    flavor: secret_relay_testkit::Flavor,
) {
    let stack = Stack::start(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let relay = stack.start_relay().await;
    let c1 = TestCluster::managed(flavor, "cluster1", &["akuity"]).await;
    let start_agent = |stop: CancellationToken| {
        stack.start_agent(
            "cluster1",
            &c1,
            relay.started.addr,
            Duration::from_secs(30),
            stop,
        )
    };
    let agent_stop = relay.shutdown.child_token();
    start_agent(agent_stop.clone()).await;
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    hub.create(
        &PostParams::default(),
        &secret(
            "db",
            &[],
            &[("akuity.io/managed-secret-allowed-clusters", "cluster1")],
            &[("password", "hunter2-value")],
        ),
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let ui = start_ui(
        stack.cluster.kubeconfig(),
        vec![secret_relay_ui::ClusterKubeconfig {
            name: "cluster1".to_owned(),
            kubeconfig: c1.kubeconfig().to_path_buf(),
        }],
        None,
        shutdown.clone(),
    )
    .await;
    let addr = ui.addr;
    let session = login(addr).await;
    // Every answer and message: no digest key, no digest of any value the hub copy
    // has held (the page never sees them; this holds it to that).
    let digests: Vec<String> = ["hunter2-value", "rotated-value"]
        .iter()
        .map(|v| {
            // stringData counts as data does.
            let s = secret("db", &[], &[], &[("password", v)]);
            secret_relay_policy::digest(&s)[7..].to_owned()
        })
        .collect();
    let check = |text: &str| {
        assert!(!text.contains("secret-relay.io/digest"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("rotated-value"),
            "{text}"
        );
        for d in &digests {
            assert!(!text.contains(d.as_str()), "a digest of a value in: {text}");
        }
    };
    let state_now = || async {
        let s = send(
            addr,
            "GET",
            "/api/state",
            &[
                ("cookie", session.0.as_str()),
                ("x-csrf-token", session.1.as_str()),
            ],
            None,
        )
        .await;
        assert_eq!(s.status, 200);
        check(&s.body);
        let view: serde_json::Value = serde_json::from_str(&s.body).unwrap();
        sync_state(&view, "db", "cluster1")
    };
    let page_says = |state: &'static str| {
        let state_now = &state_now;
        async move {
            within(&format!("the page to show db {state} on cluster1"), async {
                while state_now().await.as_deref() != Some(state) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await;
        }
    };

    // The agent wrote the down copy from the current hub copy: synced, in the API
    // and in the stream.
    page_says("synced").await;
    stream_until(addr, &session, "db", "cluster1", "synced", &check).await;
    let local: Api<Secret> = Api::namespaced(c1.client().await, "akuity");
    let down = local.get("db").await.unwrap();
    let current = hub.get("db").await.unwrap();
    assert_eq!(
        down.metadata.annotations.as_ref().unwrap()["secret-relay.io/source"],
        secret_relay_policy::source_marker(&current).unwrap()
    );

    // The agent stops; the hub copy changes: the down copy is outdated.
    agent_stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.patch(
        "db",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"stringData": {"password": "rotated-value"}})),
    )
    .await
    .unwrap();
    page_says("outdated").await;
    stream_until(addr, &session, "db", "cluster1", "outdated", &check).await;
    assert_eq!(
        local.get("db").await.unwrap().data.unwrap()["password"].0,
        b"hunter2-value"
    );

    // The agent is back and writes the new version: synced again.
    start_agent(relay.shutdown.child_token()).await;
    page_says("synced").await;
    stream_until(addr, &session, "db", "cluster1", "synced", &check).await;
    assert_eq!(
        local.get("db").await.unwrap().data.unwrap()["password"].0,
        b"rotated-value"
    );
    shutdown.cancel();
    relay.shutdown.cancel();
}

// ---- the page in Chromium ---------------------------------------------------------

/// node, Chromium and the test's playwright-core; `None` when they are missing and
/// the skip was asked for. Missing without the skip fails the test.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let dir = repo_root().join("tests/ui-browser");
    let chromium = std::env::var_os("SECRET_RELAY_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut missing = Vec::new();
    if !node_ok {
        missing.push("node (apt-get install -y nodejs npm)".to_owned());
    }
    if !chromium.exists() {
        missing.push(format!(
            "{} (apt-get install -y chromium, or set SECRET_RELAY_CHROMIUM)",
            chromium.display()
        ));
    }
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("playwright-core (cd tests/ui-browser && npm ci)".to_owned());
    }
    if missing.is_empty() {
        return Some((dir, chromium));
    }
    let skip = std::env::var(SKIP_BROWSER_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(
        skip,
        "the browser test needs {}; set {SKIP_BROWSER_ENV}=1 to skip it",
        missing.join(", ")
    );
    eprintln!(
        "!!! the Secrets page browser test is SKIPPED ({SKIP_BROWSER_ENV} is set): missing {}",
        missing.join(", ")
    );
    None
}

/// A real managed cluster with its agent running.
async fn start_managed(stack: &Stack, relay: &RelayHandle, name: &str) -> TestCluster {
    let cluster = TestCluster::start(Flavor::Real, Options::default()).await;
    stack
        .start_agent(
            name,
            &cluster,
            relay.started.addr,
            Duration::from_secs(30),
            relay.shutdown.child_token(),
        )
        .await;
    cluster
}

/// Waits until the hub copy `name` is owned by `owner` (`cluster.<name>`).
async fn owned_by(hub: &Api<Secret>, name: &str, owner: &'static str) {
    within(
        &format!("{name} to be owned by {owner}"),
        await_condition(hub.clone(), name, move |s: Option<&Secret>| {
            s.and_then(|s| s.metadata.labels.as_ref())
                .and_then(|l| l.get("secret-relay.io/owner"))
                .is_some_and(|o| o == owner)
        }),
    )
    .await
    .unwrap();
}

const OPT_IN: (&str, &str) = ("akuity.io/secret-sync", "true");
const REPOSITORY: (&str, &str) = ("argocd.argoproj.io/secret-type", "repository");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secrets_page_in_headless_chromium_against_a_real_control_plane() {
    let Some((browser_dir, chromium)) = browser_tools() else {
        return;
    };
    let flavor = Flavor::Real;
    if flavor.skipped("the_secrets_page_in_headless_chromium") {
        return;
    }
    let started_at = std::time::Instant::now();
    let stack = Stack::start(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let relay = stack.start_relay().await;
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_url = format!("http://{}/metrics", metrics_listener.local_addr().unwrap());
    tokio::spawn(secret_relay_runtime::serve_admin(
        metrics_listener,
        relay.started.admin.clone(),
        relay.shutdown.child_token(),
    ));
    let c1 = start_managed(&stack, &relay, "cluster1").await;
    let admin = stack.cluster.client().await;
    let hub: Api<Secret> = Api::namespaced(admin.clone(), "argocd");
    let local: Api<Secret> = Api::namespaced(c1.client().await, "akuity");

    // A managed secret for every cluster, two adoptable control-plane secrets, and
    // cluster1's own repository credentials.
    let pp = PostParams::default();
    hub.create(
        &pp,
        &secret(
            "shared-git-creds",
            &[("argocd.argoproj.io/secret-type", "repo-creds")],
            &[("akuity.io/managed-secret-allowed-clusters", "ALL")],
            &[
                ("url", "https://git.example/org"),
                ("password", "cp-password"),
            ],
        ),
    )
    .await
    .unwrap();
    for name in ["argocd-notifications-secret", "argocd-image-updater-secret"] {
        hub.create(
            &pp,
            &secret(name, &[], &[], &[("webhook.token", "from-cp")]),
        )
        .await
        .unwrap();
    }
    local
        .create(
            &pp,
            &secret(
                "argocd-notifications-secret",
                &[
                    OPT_IN,
                    ("app.kubernetes.io/component", "notifications-controller"),
                ],
                &[],
                &[("webhook.token", "from-cluster1")],
            ),
        )
        .await
        .unwrap();
    local
        .create(
            &pp,
            &secret(
                "team-repo",
                &[OPT_IN, REPOSITORY],
                &[],
                &[("password", "team")],
            ),
        )
        .await
        .unwrap();
    owned_by(&hub, "argocd-notifications-secret", "cluster.cluster1").await;
    owned_by(&hub, "team-repo", "cluster.cluster1").await;

    let shutdown = CancellationToken::new();
    let c1_kubeconfig = c1.kubeconfig().to_path_buf();
    let ui = start_ui(
        stack.cluster.kubeconfig(),
        vec![secret_relay_ui::ClusterKubeconfig {
            name: "cluster1".to_owned(),
            kubeconfig: c1_kubeconfig,
        }],
        Some(metrics_url),
        shutdown.clone(),
    )
    .await;
    eprintln!(
        "the page: {} (set up in {:?})",
        ui.url,
        started_at.elapsed()
    );

    let shots = match std::env::var("SECRET_RELAY_UI_SCREENSHOTS") {
        Ok(dir) if !dir.is_empty() => {
            let p = PathBuf::from(dir);
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        }
        _ => stack.cluster.dir().join("screenshots"),
    };
    let mut child = tokio::process::Command::new("node")
        .arg("ui.mjs")
        .current_dir(&browser_dir)
        .env("UI_URL", &ui.url)
        .env("CHROMIUM", &chromium)
        .env("UI_SCREENSHOTS", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("failed to run node");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });

    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let run = async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            eprintln!("browser: {line}");
            if let Some(check) = line.strip_prefix("PASS ") {
                passed.push(check.to_owned());
            } else if let Some(why) = line.strip_prefix("FAIL ") {
                failed.push(why.to_owned());
            } else if let Some(action) = line.strip_prefix("ACT ") {
                act(action, &hub, &local, &stack).await;
                stdin
                    .write_all(format!("DONE {action}\n").as_bytes())
                    .await
                    .unwrap();
                stdin.flush().await.unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser script ran for more than 5 minutes");
    let status = child.wait().await.unwrap();
    let stderr = stderr_task.await.unwrap();
    eprintln!(
        "browser checks: {} passed, {} failed in {:?} (screenshots in {})",
        passed.len(),
        failed.len(),
        started_at.elapsed(),
        shots.display()
    );
    assert!(
        failed.is_empty() && status.success(),
        "the browser checks failed ({status}):\n{}\nstderr:\n{stderr}",
        failed.join("\n")
    );
    assert_eq!(passed.len(), 16, "every check ran: {passed:?}");

    // The policy saved on the page is what the ConfigMap holds, the rest kept.
    let saved = secret_relay_policy::Policy::from_configmap_data(
        &Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
            stack.cluster.client().await,
            "secret-relay-system",
        )
        .get("secret-relay-policy")
        .await
        .unwrap()
        .data
        .unwrap(),
        "policy.yaml",
    )
    .unwrap();
    assert_eq!(saved.cluster("cluster4").unwrap().labels["tier"], "gold");
    assert_eq!(saved.sources().len(), 2);

    // What the page created is what the API server holds: targets, type, data.
    let made = hub.get("payments-db").await.unwrap();
    let annotations = made.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations["akuity.io/managed-secret-allowed-clusters"],
        "cluster1,cluster3"
    );
    assert!(!annotations.contains_key("akuity.io/managed-secret-allowed-cluster-selector"));
    assert_eq!(
        made.metadata.labels.unwrap()["argocd.argoproj.io/secret-type"],
        "repository"
    );
    assert_eq!(made.data.unwrap()["password"].0, b"s3cret-value");
    // The stale tab's write was refused: the adopted copy kept the cluster's data.
    let kept = hub.get("argocd-image-updater-secret").await.unwrap();
    assert_eq!(kept.data.unwrap()["webhook.token"].0, b"from-cluster1");
    shutdown.cancel();
}

/// The changes the browser script asks for.
async fn act(action: &str, hub: &Api<Secret>, local: &Api<Secret>, stack: &Stack) {
    let pp = PostParams::default();
    match action {
        "adopt-image-updater" => {
            local
                .create(
                    &pp,
                    &secret(
                        "argocd-image-updater-secret",
                        &[OPT_IN, REPOSITORY],
                        &[],
                        &[("webhook.token", "from-cluster1")],
                    ),
                )
                .await
                .unwrap();
            owned_by(hub, "argocd-image-updater-secret", "cluster.cluster1").await;
        }
        "create-live" => {
            hub.create(&pp, &secret("arrived-live", &[], &[], &[("k", "v")]))
                .await
                .unwrap();
        }
        "add-cluster4" => {
            let policy = format!("{POLICY}\n");
            let policy = policy.replacen(
                "secretSources:",
                "  - name: cluster4\n    labels: { env: dev }\nsecretSources:",
                1,
            );
            stack.set_policy(&policy).await;
        }
        other => panic!("the browser script asked for an unknown action {other}"),
    }
}

// ---- the policy, edited on the page ---------------------------------------------

secret_relay_testkit::on_all!(the_policy_is_planned_and_saved_from_the_page_under_the_version_read);

/// Logs in to the page at `addr` from the printed token: its cookie and session token.
async fn login(addr: std::net::SocketAddr) -> (String, String) {
    let login = send(addr, "GET", &format!("/?token={TOKEN}"), &[], None).await;
    let cookie = login.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    (cookie, session_of(&login))
}

async fn the_policy_is_planned_and_saved_from_the_page_under_the_version_read(
    flavor: secret_relay_testkit::Flavor,
) {
    let stack = Stack::start(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    hub.create(
        &PostParams::default(),
        &secret(
            "prod-only",
            &[],
            &[(
                "akuity.io/managed-secret-allowed-cluster-selector",
                "env=prod",
            )],
            &[("password", "p")],
        ),
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let ui = start_ui(
        stack.cluster.kubeconfig(),
        Vec::new(),
        None,
        shutdown.clone(),
    )
    .await;
    let (cookie, csrf) = login(ui.addr).await;
    let headers = [
        ("cookie", cookie.as_str()),
        ("x-csrf-token", csrf.as_str()),
        ("content-type", "application/json"),
    ];
    // The editor starts from the live clusters and Secret Sources, and their version.
    let read = send(ui.addr, "GET", "/api/policy", &headers[..2], None).await;
    assert_eq!(read.status, 200, "{}", read.body);
    let mut change: serde_json::Value = serde_json::from_str(&read.body).unwrap();
    assert_eq!(change["clusters"].as_array().unwrap().len(), 3);
    assert_eq!(change["sources"].as_array().unwrap().len(), 2);
    let version = change["resourceVersion"].as_str().unwrap().to_owned();

    // An invalid change: the ConfigMap's own problems, with their paths, and no plan.
    let mut bad = change.clone();
    bad["sources"][0]["clusterSelector"] = "env in (".into();
    let planned = send(
        ui.addr,
        "POST",
        "/api/policy/plan",
        &headers,
        Some(&bad.to_string()),
    )
    .await;
    assert_eq!(planned.status, 200, "{}", planned.body);
    let planned: serde_json::Value = serde_json::from_str(&planned.body).unwrap();
    assert_eq!(
        planned["problems"][0]["path"],
        "secretSources[0].clusterSelector"
    );
    assert!(planned["plan"].is_null());

    // cluster2 relabelled to prod: the plan says prod-only starts going there.
    change["clusters"][1]["labels"]["env"] = "prod".into();
    let planned = send(
        ui.addr,
        "POST",
        "/api/policy/plan",
        &headers,
        Some(&change.to_string()),
    )
    .await;
    let planned: serde_json::Value = serde_json::from_str(&planned.body).unwrap();
    assert_eq!(planned["problems"], serde_json::json!([]), "{planned}");
    let rows = planned["plan"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{planned}");
    assert_eq!(
        (&rows[0]["change"], &rows[0]["secret"], &rows[0]["cluster"]),
        (
            &serde_json::json!("down-copy-created"),
            &serde_json::json!("prod-only"),
            &serde_json::json!("cluster2")
        )
    );

    // Someone else saves first: the page's save under the version it read is a
    // conflict, and nothing is overwritten.
    stack
        .set_policy(&POLICY.replace("region: us", "region: ap"))
        .await;
    let saved = send(
        ui.addr,
        "PUT",
        "/api/policy",
        &headers,
        Some(&change.to_string()),
    )
    .await;
    assert_eq!(saved.status, 409, "{}", saved.body);
    assert!(
        saved.body.contains("nothing was overwritten"),
        "{}",
        saved.body
    );
    let cm = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
        stack.cluster.client().await,
        "secret-relay-system",
    )
    .get("secret-relay-policy")
    .await
    .unwrap();
    let live = &cm.data.as_ref().unwrap()["policy.yaml"];
    assert!(live.contains("region: ap"), "{live}");
    assert_ne!(
        cm.metadata.resource_version.as_deref(),
        Some(version.as_str())
    );

    // Read again, change again, save: the ConfigMap holds the change (and what the
    // page does not edit, kept), and the page serves it.
    let read = send(ui.addr, "GET", "/api/policy", &headers[..2], None).await;
    let mut change: serde_json::Value = serde_json::from_str(&read.body).unwrap();
    change["clusters"][1]["labels"]["env"] = "prod".into();
    let saved = send(
        ui.addr,
        "PUT",
        "/api/policy",
        &headers,
        Some(&change.to_string()),
    )
    .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let policy = secret_relay_policy::Policy::from_configmap_data(
        &kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
            stack.cluster.client().await,
            "secret-relay-system",
        )
        .get("secret-relay-policy")
        .await
        .unwrap()
        .data
        .unwrap(),
        "policy.yaml",
    )
    .unwrap();
    assert_eq!(policy.cluster("cluster2").unwrap().labels["env"], "prod");
    assert_eq!(policy.cluster("cluster3").unwrap().labels["region"], "ap");
    assert_eq!(policy.sources().len(), 2);
    shutdown.cancel();
}
