//! kube-rs against the sandbox: `Api<Secret>` semantics and `kube::runtime::watcher`.

// Helpers outside #[test] functions panic on a failed setup step, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use rustls_pki_types::pem::PemObject as _;
use secret_relay_sandbox::{Sandbox, SandboxConfig, UserConfig};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

async fn sandbox() -> Sandbox {
    secret_relay_sandbox::start(SandboxConfig::default())
        .await
        .expect("sandbox starts")
}

async fn client(sandbox: &Sandbox, user: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&sandbox.kubeconfig(user).expect("user exists"))
        .expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config loads");
    Client::try_from(config).expect("client builds")
}

fn secret(name: &str, labels: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.to_owned());
    s.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    s.data = Some(BTreeMap::from([(
        "k".to_owned(),
        ByteString(b"v1".to_vec()),
    )]));
    s
}

fn api_error(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Next watcher event that is not an init marker, skipping errors the watcher recovers from.
async fn next_change<S>(stream: &mut S) -> Event<Secret>
where
    S: Stream<Item = Result<Event<Secret>, watcher::Error>> + Unpin,
{
    loop {
        match stream.next().await.expect("watch stream ended") {
            Ok(Event::Init | Event::InitDone) => continue,
            Ok(event) => return event,
            Err(_) => continue,
        }
    }
}

fn name_of(event: &Event<Secret>) -> (&'static str, String) {
    match event {
        Event::Apply(s) => ("apply", s.metadata.name.clone().unwrap_or_default()),
        Event::Delete(s) => ("delete", s.metadata.name.clone().unwrap_or_default()),
        Event::InitApply(s) => ("init-apply", s.metadata.name.clone().unwrap_or_default()),
        Event::Init => ("init", String::new()),
        Event::InitDone => ("init-done", String::new()),
    }
}

#[tokio::test]
async fn secret_crud_matches_kube_apiserver() {
    let sb = sandbox().await;
    let api: Api<Secret> = Api::namespaced(client(&sb, "admin").await, "default");

    let created = api
        .create(&PostParams::default(), &secret("s1", &[("app", "x")]))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().expect("uid set");
    let rv = created
        .metadata
        .resource_version
        .clone()
        .expect("resourceVersion set");
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.type_.as_deref(), Some("Opaque"));

    let dup = api_error(
        api.create(&PostParams::default(), &secret("s1", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, r#"secrets "s1" already exists"#);

    let mut fresh = created.clone();
    fresh.data = Some(BTreeMap::from([(
        "k".to_owned(),
        ByteString(b"v2".to_vec()),
    )]));
    let replaced = api
        .replace("s1", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_ne!(
        replaced.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );

    // `created` still carries the old resourceVersion
    let stale = api_error(
        api.replace("s1", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.message,
        r#"Operation cannot be fulfilled on secrets "s1": the object has been modified; please apply your changes to the latest version and try again"#
    );

    let patched = api
        .patch(
            "s1",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"extra": "plain"}})),
        )
        .await
        .unwrap();
    let data = patched.data.expect("data");
    assert_eq!(data["extra"].0, b"plain");
    assert_eq!(data["k"].0, b"v2");
    assert!(patched.string_data.is_none(), "stringData is never stored");

    let missing = api_error(
        api.patch("nope", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (missing.code, missing.message.as_str()),
        (404, r#"secrets "nope" not found"#)
    );

    api.delete("s1", &DeleteParams::default()).await.unwrap();
    let gone = api_error(api.get("s1").await.unwrap_err());
    assert_eq!(gone.code, 404);
    sb.shutdown().await;
}

#[tokio::test]
async fn invalid_names_and_keys_are_422_with_causes() {
    let sb = sandbox().await;
    let api: Api<Secret> = Api::namespaced(client(&sb, "admin").await, "default");
    let err = api_error(
        api.create(&PostParams::default(), &secret("Bad_Name", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(err.message.starts_with(r#"Secret "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#), "{}", err.message);
    let causes = err.details.expect("details").causes;
    assert_eq!(causes[0].field, "metadata.name");
    assert_eq!(causes[0].reason, "FieldValueInvalid");

    let mut bad_key = secret("ok", &[]);
    bad_key.data = Some(BTreeMap::from([(
        "a/b".to_owned(),
        ByteString(b"x".to_vec()),
    )]));
    let err = api_error(
        api.create(&PostParams::default(), &bad_key)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("data[a/b]: Invalid value: \"a/b\": a valid config key"),
        "{}",
        err.message
    );
    // nothing was stored
    assert!(api.get_opt("ok").await.unwrap().is_none());
    sb.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_conflicts_and_force() {
    let sb = sandbox().await;
    let api: Api<Secret> = Api::namespaced(client(&sb, "admin").await, "default");
    let body = |v: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ssa"}, "stringData": {}, "data": {"k": v}});
    api.patch(
        "ssa",
        &PatchParams::apply("first"),
        &Patch::Apply(body("MQ==")),
    )
    .await
    .unwrap();
    let err = api_error(
        api.patch(
            "ssa",
            &PatchParams::apply("second"),
            &Patch::Apply(body("Mg==")),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(
        err.message,
        r#"Apply failed with 1 conflict: conflict with "first": .data.k"#
    );
    assert_eq!(
        err.details.unwrap().causes[0].reason,
        "FieldManagerConflict"
    );
    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("second").force(),
            &Patch::Apply(body("Mg==")),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["k"].0, b"2");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, vec!["second"]);
    sb.shutdown().await;
}

#[tokio::test]
async fn namespace_deletion_removes_its_contents() {
    let sb = sandbox().await;
    let client = client(&sb, "admin").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("team".into());
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(
        created.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
        "team"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("c".into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let answer = namespaces
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = answer
        .left()
        .expect("a namespace DELETE answers with the namespace");
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    assert!(namespaces.get_opt("team").await.unwrap().is_none());
    assert!(
        cms.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let err = api_error(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, r#"namespaces "team" not found"#)
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn list_pages_with_limit_and_continue() {
    let sb = sandbox().await;
    let api: Api<Secret> = Api::namespaced(client(&sb, "admin").await, "default");
    for i in 0..5 {
        api.create(
            &PostParams::default(),
            &secret(&format!("p{i}"), &[("page", "yes")]),
        )
        .await
        .unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("continue token");
    let second = api
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    let names: Vec<String> = first
        .items
        .iter()
        .chain(&second.items)
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["p0", "p1", "p2", "p3", "p4"]);
    // a write after the token's snapshot, then compaction past it
    api.create(&PostParams::default(), &secret("later", &[]))
        .await
        .unwrap();
    sb.compact_history();
    let expired = api_error(
        api.list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((expired.code, expired.reason.as_str()), (410, "Expired"));
    sb.shutdown().await;
}

#[tokio::test]
async fn token_users_and_impersonation() {
    let config = SandboxConfig {
        users: vec![
            UserConfig {
                name: "admin".into(),
                groups: vec!["system:masters".into()],
                token: None,
                impersonate: true,
            },
            UserConfig {
                name: "viewer".into(),
                groups: vec![],
                token: Some("t0ken".into()),
                impersonate: false,
            },
        ],
        ..SandboxConfig::default()
    };
    let sb = secret_relay_sandbox::start(config).await.unwrap();
    assert!(sb.kubeconfig("viewer").unwrap().contains("token: t0ken"));
    let viewer: Api<Secret> = Api::namespaced(client(&sb, "viewer").await, "default");
    viewer.list(&ListParams::default()).await.unwrap();

    let mut cfg = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&sb.kubeconfig("viewer").unwrap()).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    cfg.auth_info.impersonate = Some("someone".into());
    let impersonating: Api<Secret> = Api::namespaced(Client::try_from(cfg).unwrap(), "default");
    let err = api_error(
        impersonating
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        r#"users "someone" is forbidden: User "viewer" cannot impersonate resource "users" in API group "" at the cluster scope"#
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn watcher_follows_selector_entry_and_exit() {
    let sb = sandbox().await;
    let api: Api<Secret> = Api::namespaced(client(&sb, "admin").await, "default");
    let mut stream =
        watcher::watcher(api.clone(), watcher::Config::default().labels("sync=true")).boxed();
    within("initial list", async {
        while !matches!(stream.next().await, Some(Ok(Event::InitDone))) {}
    })
    .await;

    api.create(&PostParams::default(), &secret("w", &[]))
        .await
        .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sync": "true"}}})),
    )
    .await
    .unwrap();
    let entered = within("label added", next_change(&mut stream)).await;
    assert_eq!(name_of(&entered), ("apply", "w".to_owned()));

    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sync": null}}})),
    )
    .await
    .unwrap();
    let left = within("label removed", next_change(&mut stream)).await;
    assert_eq!(name_of(&left), ("delete", "w".to_owned()));
    sb.shutdown().await;
}

#[tokio::test]
async fn watcher_reconnects_after_the_server_ends_the_watch() {
    let sb = sandbox().await;
    let api: Api<Secret> = Api::namespaced(client(&sb, "admin").await, "default");
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default().timeout(1)).boxed();
    within("initial list", async {
        while !matches!(stream.next().await, Some(Ok(Event::InitDone))) {}
    })
    .await;
    // The watch request follows the initial list; make sure it is open.
    within("first watch", async {
        while sb.watches_started() < 1 {
            let _ = tokio::time::timeout(Duration::from_millis(20), stream.next()).await;
        }
    })
    .await;
    api.create(&PostParams::default(), &secret("before", &[]))
        .await
        .unwrap();
    assert_eq!(
        name_of(&within("first event", next_change(&mut stream)).await),
        ("apply", "before".to_owned())
    );

    // The server closes each watch after timeoutSeconds; wait for the watcher's next watch.
    within("reconnect", async {
        while sb.watches_started() < 2 {
            let _ = tokio::time::timeout(Duration::from_millis(20), stream.next()).await;
        }
    })
    .await;
    api.create(&PostParams::default(), &secret("after", &[]))
        .await
        .unwrap();
    assert_eq!(
        name_of(&within("event after reconnect", next_change(&mut stream)).await),
        ("apply", "after".to_owned())
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn watcher_relists_after_a_forced_410() {
    let sb = sandbox().await;
    let client = client(&sb, "admin").await;
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &secret("old", &[]))
        .await
        .unwrap();
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default().timeout(1)).boxed();
    within("initial list", async {
        while !matches!(stream.next().await, Some(Ok(Event::InitDone))) {}
    })
    .await;
    within("first watch", async {
        while sb.watches_started() < 1 {
            let _ = tokio::time::timeout(Duration::from_millis(20), stream.next()).await;
        }
    })
    .await;

    // Move the global resourceVersion past what the secret watch has seen, then drop history:
    // its next watch resumes from a compacted resourceVersion and gets an ERROR 410 event.
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("bump".into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    sb.compact_history();

    let relisted = within("relist after 410", async {
        let mut seen = Vec::new();
        loop {
            match stream.next().await.expect("stream continues") {
                Ok(Event::Init) => seen.clear(),
                Ok(Event::InitApply(s)) => seen.push(s.metadata.name.unwrap_or_default()),
                Ok(Event::InitDone) => return seen,
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(relisted, vec!["old"]);
    sb.shutdown().await;
}

/// Sends a raw request; returns the status code and the body text.
async fn raw(
    client: &Client,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body))
        .expect("request builds");
    let response = client.send(request).await.expect("request is answered");
    let code = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body reads")
        .to_bytes();
    (code, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn unsupported_bodies_get_kube_statuses() {
    let sb = sandbox().await;
    let client = client(&sb, "admin").await;
    let uri = "/api/v1/namespaces/default/secrets";

    let (code, body) = raw(
        &client,
        "POST",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        "application/vnd.kubernetes.protobuf",
        b"k8s\0".to_vec(),
    )
    .await;
    assert_eq!(code, 415);
    assert!(
        body.contains(r#""reason":"UnsupportedMediaType""#),
        "{body}"
    );

    let unknown = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "u"}, "spec": {"foo": 1}});
    let strict = format!("{uri}?fieldValidation=Strict");
    let (code, body) = raw(
        &client,
        "POST",
        &strict,
        "application/json",
        unknown.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 400);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status["message"],
        r#"Secret in version "v1" cannot be handled as a Secret: strict decoding error: unknown field "spec""#
    );
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    assert!(
        api.get_opt("u").await.unwrap().is_none(),
        "a refused request stores nothing"
    );

    let huge = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "big"}, "stringData": {"k": "x".repeat(4 * 1024 * 1024)}});
    let (code, body) = raw(
        &client,
        "POST",
        uri,
        "application/json",
        huge.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 413, "{body}");
    assert!(
        body.contains("Request entity too large: limit is 3145728"),
        "{body}"
    );

    let over = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "big"}, "stringData": {"k": "x".repeat(1024 * 1024 + 1)}});
    let (code, body) = raw(
        &client,
        "POST",
        uri,
        "application/json",
        over.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    sb.shutdown().await;
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_an_error_event() {
    let sb = sandbox().await;
    let client = client(&sb, "admin").await;
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s = api
        .create(&PostParams::default(), &secret("a", &[]))
        .await
        .unwrap();
    let rv = s.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &secret("b", &[]))
        .await
        .unwrap();
    sb.compact_history();
    let request = http::Request::builder()
        .uri(format!(
            "/api/v1/namespaces/default/secrets?watch=true&resourceVersion={rv}"
        ))
        .body(kube::client::Body::empty())
        .unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "an expired watch is still a 200"
    );
    let bytes = within(
        "error event",
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .unwrap()
    .to_bytes();
    let event: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
    sb.shutdown().await;
}

#[tokio::test]
async fn streaming_list_ends_with_an_initial_events_bookmark() {
    let sb = sandbox().await;
    let client = client(&sb, "admin").await;
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &secret("a", &[]))
        .await
        .unwrap();
    let request = http::Request::builder()
        .uri("/api/v1/namespaces/default/secrets?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1")
        .body(kube::client::Body::empty())
        .unwrap();
    let response = client.send(request).await.unwrap();
    let bytes = within(
        "watch ends",
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .unwrap()
    .to_bytes();
    let events: Vec<serde_json::Value> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "a");
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(events[1]["object"]["kind"], "Secret");
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn requests_without_credentials_are_401() {
    let sb = sandbox().await;
    let ca = rustls_pki_types::CertificateDer::from_pem_slice(sb.ca_pem().as_bytes()).unwrap();
    let mut config = kube::Config::new(sb.url().parse().unwrap());
    config.root_cert = Some(vec![ca.to_vec()]);
    let anonymous: Api<Secret> = Api::namespaced(Client::try_from(config).unwrap(), "default");
    let err = api_error(anonymous.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (401, "Unauthorized"));
    sb.shutdown().await;
}

#[tokio::test]
async fn watches_get_periodic_bookmarks_with_kind_and_version() {
    let sb = secret_relay_sandbox::start(SandboxConfig {
        bookmark_interval_seconds: 1,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let client = client(&sb, "admin").await;
    let request = http::Request::builder()
        .uri("/api/v1/namespaces/default/secrets?watch=1&allowWatchBookmarks=true&timeoutSeconds=2")
        .body(kube::client::Body::empty())
        .unwrap();
    let response = client.send(request).await.unwrap();
    let bytes = within(
        "watch ends",
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .unwrap()
    .to_bytes();
    let bookmark: serde_json::Value = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap())
        .find(|e| e["type"] == "BOOKMARK")
        .expect("a bookmark within the watch");
    assert_eq!(bookmark["object"]["kind"], "Secret");
    assert_eq!(bookmark["object"]["apiVersion"], "v1");
    assert_eq!(
        bookmark["object"]["metadata"]["resourceVersion"],
        sb.resource_version().to_string()
    );
    sb.shutdown().await;
}

/// An HTTPS admission webhook for `hook.webhooks.svc` that allows everything and reports
/// (operation, resource, username) of each review.
async fn recording_webhook() -> (
    std::net::SocketAddr,
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String, String)>,
) {
    use secret_relay_certs::{Ca, ClientAuth, Validity, server_config};
    let ca = Ca::generate("hook-ca", Validity::ca_default()).unwrap();
    let cert = ca
        .issue_server(
            "hook",
            &["hook.webhooks.svc".to_owned()],
            &[],
            Validity::days(1),
        )
        .unwrap();
    let config = server_config(
        &cert.cert_pem,
        &cert.key_pem,
        None,
        ClientAuth::None,
        &[b"http/1.1"],
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let body = http_body_util::BodyExt::collect(req.into_body())
                                .await?
                                .to_bytes();
                            let review: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            let request = &review["request"];
                            let _ = tx.send((
                                request["operation"].as_str().unwrap_or_default().to_owned(),
                                request["resource"]["resource"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                                request["userInfo"]["username"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                            ));
                            let answer = json!({
                                "apiVersion": "admission.k8s.io/v1",
                                "kind": "AdmissionReview",
                                "response": {"uid": request["uid"], "allowed": true},
                            });
                            Ok::<_, hyper::Error>(http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(answer.to_string()),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    use base64::Engine as _;
    (
        addr,
        base64::engine::general_purpose::STANDARD.encode(ca.cert_pem()),
        rx,
    )
}

#[tokio::test]
async fn namespace_contents_are_deleted_through_admission_as_the_namespace_controller() {
    let (hook_addr, ca_bundle, mut seen) = recording_webhook().await;
    let config = SandboxConfig {
        services: BTreeMap::from([("hook.webhooks.svc:443".to_owned(), hook_addr)]),
        ..SandboxConfig::default()
    };
    let sb = secret_relay_sandbox::start(config).await.unwrap();
    let client = client(&sb, "admin").await;
    let hooks: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        Api::all(client.clone());
    let hook_config = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "record"},
        "webhooks": [{
            "name": "record.webhooks.svc",
            "clientConfig": {"service": {"name": "hook", "namespace": "webhooks", "path": "/validate"}, "caBundle": ca_bundle},
            "rules": [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["secrets"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }],
    }))
    .unwrap();
    let stored = hooks
        .create(&PostParams::default(), &hook_config)
        .await
        .unwrap();
    assert_eq!(stored.metadata.generation, Some(1));

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("doomed".into());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client, "doomed");
    secrets
        .create(&PostParams::default(), &secret("inside", &[]))
        .await
        .unwrap();
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();

    let (operation, resource, user) = within("the content delete's review", seen.recv())
        .await
        .unwrap();
    assert_eq!(
        (operation.as_str(), resource.as_str()),
        ("DELETE", "secrets")
    );
    assert_eq!(
        user,
        "system:serviceaccount:kube-system:namespace-controller"
    );
    assert!(
        secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn repeating_an_apply_changes_nothing() {
    let sb = sandbox().await;
    let api: Api<Secret> = Api::namespaced(client(&sb, "admin").await, "default");
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "same", "labels": {"a": "1"}}, "data": {"k": "MQ=="}});
    let first = api
        .patch("same", &PatchParams::apply("m"), &Patch::Apply(&body))
        .await
        .unwrap();
    let again = api
        .patch("same", &PatchParams::apply("m"), &Patch::Apply(&body))
        .await
        .unwrap();
    assert_eq!(
        first.metadata.resource_version,
        again.metadata.resource_version
    );
    let replaced = api
        .replace("same", &PostParams::default(), &again)
        .await
        .unwrap();
    assert_eq!(
        replaced.metadata.resource_version, again.metadata.resource_version,
        "a no-op PUT is not a write"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn generate_name_dry_run_selectors_and_delete_collection() {
    let sb = sandbox().await;
    let api: Api<Secret> = Api::namespaced(client(&sb, "admin").await, "default");

    let mut generated = secret("", &[("batch", "x")]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let made = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = made.metadata.name.unwrap();
    assert!(
        name.starts_with("gen-") && name.len() == "gen-".len() + 5,
        "{name}"
    );

    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let rv_before = sb.resource_version();
    let not_stored = api
        .create(&dry, &secret("dry", &[("batch", "x")]))
        .await
        .unwrap();
    assert_eq!(not_stored.metadata.name.as_deref(), Some("dry"));
    assert!(api.get_opt("dry").await.unwrap().is_none());
    assert_eq!(sb.resource_version(), rv_before, "a dry run writes nothing");

    let mut elsewhere = secret("wrong-ns", &[]);
    elsewhere.metadata.namespace = Some("kube-system".into());
    let err = api_error(
        api.create(&PostParams::default(), &elsewhere)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "the namespace of the provided object does not match the namespace sent on the request"
    );

    api.create(&PostParams::default(), &secret("keep", &[("batch", "y")]))
        .await
        .unwrap();
    let by_field = api
        .list(&ListParams::default().fields("metadata.name=keep"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);
    let by_set = api
        .list(&ListParams::default().labels("batch in (x,y)"))
        .await
        .unwrap();
    assert_eq!(by_set.items.len(), 2);

    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=x"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert_eq!(left, vec!["keep"]);
    sb.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    let sb = sandbox().await;
    let client = client(&sb, "admin").await;
    let request = http::Request::builder()
        .uri("/api/v1/namespaces/default/secrets?watch=1")
        .body(kube::client::Body::empty())
        .unwrap();
    let response = client.send(request).await.unwrap();
    sb.shutdown().await;
    // Without shutdown this watch would run for 30 minutes.
    within(
        "the watch to end",
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .ok();
}

#[tokio::test]
async fn metadata_requests_carry_no_secret_data() {
    let sb = sandbox().await;
    let api: Api<Secret> = Api::namespaced(client(&sb, "admin").await, "default");
    api.create(&PostParams::default(), &secret("meta", &[("app", "x")]))
        .await
        .unwrap();
    let one = api.get_metadata("meta").await.unwrap();
    assert_eq!(one.metadata.labels.unwrap()["app"], "x");
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("meta"));
    let (code, body) = raw(
        &api.clone().into_client(),
        "GET",
        "/api/v1/namespaces/default/secrets",
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("\"data\""), "a plain list has data");
    let request = http::Request::builder()
        .uri("/api/v1/namespaces/default/secrets")
        .header(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
        .body(kube::client::Body::empty())
        .unwrap();
    let client = client(&sb, "admin").await;
    let response = client.send(request).await.unwrap();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("PartialObjectMetadataList") && !text.contains("\"data\""),
        "{text}"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn delete_preconditions_and_immutable_type() {
    let sb = sandbox().await;
    let api: Api<Secret> = Api::namespaced(client(&sb, "admin").await, "default");
    let created = api
        .create(&PostParams::default(), &secret("pre", &[]))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();

    let wrong = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("other".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let err = api_error(api.delete("pre", &wrong).await.unwrap_err());
    assert_eq!(err.code, 409);
    assert_eq!(
        err.message,
        format!(
            r#"Operation cannot be fulfilled on Secret "pre": the UID in the precondition (other) does not match the UID in record ({uid}). The object might have been deleted and then recreated"#
        )
    );

    let mut retyped = created.clone();
    retyped.type_ = Some("kubernetes.io/basic-auth".into());
    retyped.data = Some(BTreeMap::from([(
        "username".to_owned(),
        ByteString(b"u".to_vec()),
    )]));
    let err = api_error(
        api.replace("pre", &PostParams::default(), &retyped)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        r#"Secret "pre" is invalid: type: Invalid value: "kubernetes.io/basic-auth": field is immutable"#
    );

    let right = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let status = api
        .delete("pre", &right)
        .await
        .unwrap()
        .right()
        .expect("a Secret DELETE answers with a Status");
    let details = status.details.unwrap();
    assert_eq!(
        (
            details.name.as_str(),
            details.kind.as_str(),
            details.uid.as_str()
        ),
        ("pre", "secrets", uid.as_str())
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn events_are_recorded_in_series_listed_and_validated() {
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::events::v1::Event as KubeEvent;
    use kube::runtime::events::{Event as Recorded, EventType, Recorder, Reporter};
    let sb = sandbox().await;
    let client = client(&sb, "admin").await;
    let regarding = ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Secret".to_owned()),
        namespace: Some("default".to_owned()),
        name: Some("repo".to_owned()),
        ..ObjectReference::default()
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "secret-relay-agent".to_owned(),
            instance: Some("agent-0".to_owned()),
        },
    );
    let denied = Recorded {
        type_: EventType::Warning,
        reason: "UpSyncDenied".to_owned(),
        note: Some("no Secret Source admits it".to_owned()),
        action: "Sync".to_owned(),
        secondary: None,
    };
    // The same Event twice: created, then its series patched, as kube-apiserver keeps it.
    recorder.publish(&denied, &regarding).await.unwrap();
    recorder.publish(&denied, &regarding).await.unwrap();
    let events: Api<KubeEvent> = Api::namespaced(client, "default");
    let list = events.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 1, "{list:?}");
    let e = &list[0];
    assert_eq!(e.reason.as_deref(), Some("UpSyncDenied"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(
        e.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("repo")
    );
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(2));
    // What every v1 Event needs (the words may differ from kube-apiserver's).
    let mut bad = e.clone();
    bad.metadata = kube::api::ObjectMeta {
        name: Some("bad".to_owned()),
        ..kube::api::ObjectMeta::default()
    };
    bad.reason = None;
    bad.type_ = Some("Info".to_owned());
    let status = api_error(
        events
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 422, "{status:?}");
    assert!(status.message.contains("reason"), "{}", status.message);
    assert!(status.message.contains("type"), "{}", status.message);
}
