//! Admission end to end: webhook configurations created through the sandbox's API, a tiny
//! HTTPS webhook on 127.0.0.1, and kube-rs as the client that sees the outcome.

// Helpers outside #[test] functions panic on a failed setup step, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secret_relay_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The service name every test webhook is registered under.
const SERVICE: &str = "hook.webhooks.svc:443";

/// A webhook server with its own CA, presenting a certificate for `hook.webhooks.svc`.
struct TestHook {
    addr: SocketAddr,
    ca_bundle: String,
    seen: mpsc::UnboundedReceiver<Value>,
}

impl TestHook {
    /// Answers each review with `reply`; `None` never answers.
    async fn start(reply: impl Fn(&Value) -> Option<Value> + Send + Sync + 'static) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "admission test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["hook.webhooks.svc".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let provider = secret_relay_certs::provider();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = Arc::new(reply);
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, reply, tx) = (acceptor.clone(), reply.clone(), tx.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (reply, tx) = (reply.clone(), tx.clone());
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let review: Value =
                                serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let answer = reply(&review);
                            let _ = tx.send(review);
                            let Some(answer) = answer else {
                                return std::future::pending().await;
                            };
                            let body = Full::new(Bytes::from(serde_json::to_vec(&answer).unwrap()));
                            Ok::<_, hyper::Error>(http::Response::new(body))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            ca_bundle: BASE64.encode(ca.pem()),
            seen,
        }
    }

    /// The webhook entry of a configuration, matching Secret writes.
    fn webhook(&self, name: &str, extra: Value) -> Value {
        let mut hook = json!({
            "name": name,
            "clientConfig": {
                "service": { "name": "hook", "namespace": "webhooks", "path": "/review" },
                "caBundle": self.ca_bundle,
            },
            "rules": [{
                "operations": ["CREATE", "UPDATE", "DELETE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["secrets"],
            }],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        });
        if let (Some(hook), Some(extra)) = (hook.as_object_mut(), extra.as_object()) {
            hook.extend(extra.clone());
        }
        hook
    }

    fn next(&mut self) -> Value {
        self.seen.try_recv().expect("the webhook was called")
    }
}

fn answer(review: &Value, fields: Value) -> Value {
    let mut response = json!({ "uid": review["request"]["uid"], "allowed": true });
    if let (Some(response), Some(fields)) = (response.as_object_mut(), fields.as_object()) {
        response.extend(fields.clone());
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
}

async fn sandbox_with(hook_addr: SocketAddr) -> (Sandbox, Client) {
    let config = SandboxConfig {
        services: BTreeMap::from([(SERVICE.to_owned(), hook_addr)]),
        ..SandboxConfig::default()
    };
    let sandbox = secret_relay_sandbox::start(config).await.unwrap();
    let client = client(&sandbox, None).await;
    (sandbox, client)
}

/// A kube-rs client as the admin user, optionally impersonating `user` in `groups`.
async fn client(sandbox: &Sandbox, impersonate: Option<(&str, &[&str])>) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&sandbox.kubeconfig("admin").unwrap()).unwrap();
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
    if let Some((user, groups)) = impersonate {
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups =
            Some(groups.iter().map(|g| (*g).to_owned()).collect());
    }
    Client::try_from(config).unwrap()
}

async fn register_validating(client: &Client, name: &str, webhooks: Vec<Value>) {
    let config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": { "name": name },
        "webhooks": webhooks,
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
}

async fn register_mutating(client: &Client, name: &str, webhooks: Vec<Value>) {
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": { "name": name },
        "webhooks": webhooks,
    }))
    .unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
}

fn secret(name: &str, string_data: &[(&str, &str)]) -> Secret {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "stringData": string_data.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap()
}

fn api_error(err: kube::Error) -> (u16, String, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason.clone(), status.message.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn mutating_webhook_patches_what_is_stored_and_sees_merged_data() {
    let mut hook = TestHook::start(|review| {
        let ops =
            json!([{ "op": "add", "path": "/metadata/labels", "value": { "stamped": "yes" } }]);
        let patch = BASE64.encode(serde_json::to_vec(&ops).unwrap());
        Some(answer(
            review,
            json!({ "patchType": "JSONPatch", "patch": patch }),
        ))
    })
    .await;
    let (sandbox, client) = sandbox_with(hook.addr).await;
    register_mutating(
        &client,
        "stamp",
        vec![hook.webhook("stamp.example.com", json!({}))],
    )
    .await;
    let secrets = Api::<Secret>::namespaced(client.clone(), "default");

    let created = secrets
        .create(
            &PostParams::default(),
            &secret("s1", &[("password", "s3cr3t")]),
        )
        .await
        .unwrap();

    let labels = created.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("stamped").map(String::as_str), Some("yes"));
    let stored = secrets.get("s1").await.unwrap();
    assert_eq!(stored.metadata.labels, created.metadata.labels);
    let request = hook.next()["request"].clone();
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(request["namespace"], "default");
    assert_eq!(request["name"], "s1");
    assert_eq!(
        request["object"]["data"]["password"],
        BASE64.encode("s3cr3t")
    );
    assert!(request["object"].get("stringData").is_none());
    assert_eq!(request["userInfo"]["username"], "admin");
    let groups = request["userInfo"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(groups.contains(&json!("system:masters")), "{groups:?}");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn validating_denial_reaches_the_client_and_nothing_is_stored() {
    let hook = TestHook::start(|review| {
        Some(answer(review, json!({ "allowed": false, "status": { "code": 403, "reason": "Forbidden", "message": "owned by cluster c1" } })))
    })
    .await;
    let (sandbox, client) = sandbox_with(hook.addr).await;
    register_validating(
        &client,
        "guard",
        vec![hook.webhook("guard.example.com", json!({}))],
    )
    .await;
    let secrets = Api::<Secret>::namespaced(client.clone(), "default");

    let err = secrets
        .create(&PostParams::default(), &secret("s1", &[("k", "v")]))
        .await
        .unwrap_err();

    assert_eq!(
        api_error(err),
        (
            403,
            "Forbidden".to_owned(),
            "admission webhook \"guard.example.com\" denied the request: owned by cluster c1"
                .to_owned()
        )
    );
    let (code, reason, message) = api_error(secrets.get("s1").await.unwrap_err());
    assert_eq!(
        (code, reason.as_str(), message.as_str()),
        (404, "NotFound", "secrets \"s1\" not found")
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn delete_is_admitted_with_the_old_object() {
    let mut hook = TestHook::start(|review| {
        let allowed = review["request"]["operation"] != "DELETE";
        Some(answer(
            review,
            json!({ "allowed": allowed, "status": { "message": "kept" } }),
        ))
    })
    .await;
    let (sandbox, client) = sandbox_with(hook.addr).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), "default");
    secrets
        .create(&PostParams::default(), &secret("keep", &[("k", "v")]))
        .await
        .unwrap();
    register_validating(
        &client,
        "keeper",
        vec![hook.webhook("keeper.example.com", json!({}))],
    )
    .await;

    let err = secrets
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap_err();

    let (code, _, message) = api_error(err);
    assert_eq!(code, 400);
    assert_eq!(
        message,
        "admission webhook \"keeper.example.com\" denied the request: kept"
    );
    let request = hook.next()["request"].clone();
    assert_eq!(request["operation"], "DELETE");
    assert_eq!(request["object"], Value::Null);
    assert_eq!(request["oldObject"]["metadata"]["name"], "keep");
    assert_eq!(request["options"]["kind"], "DeleteOptions");
    assert!(secrets.get("keep").await.is_ok());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn dry_run_is_admitted_but_not_stored() {
    let mut hook = TestHook::start(|review| Some(answer(review, json!({})))).await;
    let (sandbox, client) = sandbox_with(hook.addr).await;
    register_validating(&client, "v", vec![hook.webhook("v.example.com", json!({}))]).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), "default");
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };

    secrets
        .create(&params, &secret("dry", &[("k", "v")]))
        .await
        .unwrap();

    assert_eq!(hook.next()["request"]["dryRun"], true);
    assert_eq!(api_error(secrets.get("dry").await.unwrap_err()).0, 404);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn unreachable_webhook_fails_closed_unless_ignored() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let hook = TestHook::start(|review| Some(answer(review, json!({})))).await;
    let (sandbox, client) = sandbox_with(dead).await;
    register_validating(
        &client,
        "down",
        vec![hook.webhook("down.example.com", json!({ "timeoutSeconds": 5 }))],
    )
    .await;
    let secrets = Api::<Secret>::namespaced(client.clone(), "default");

    let (code, reason, message) = api_error(
        secrets
            .create(&PostParams::default(), &secret("s1", &[]))
            .await
            .unwrap_err(),
    );

    assert_eq!((code, reason.as_str()), (500, "InternalError"));
    assert_eq!(
        message,
        format!(
            "Internal error occurred: failed calling webhook \"down.example.com\": failed to call webhook: \
             Post \"https://hook.webhooks.svc:443/review?timeout=5s\": dial tcp {dead}: connect: connection refused"
        )
    );

    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete("down", &DeleteParams::default())
        .await
        .unwrap();
    register_validating(
        &client,
        "down-ignored",
        vec![hook.webhook("down.example.com", json!({ "failurePolicy": "Ignore" }))],
    )
    .await;
    secrets
        .create(&PostParams::default(), &secret("s1", &[]))
        .await
        .unwrap();
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_webhook_that_never_answers_times_out() {
    let hook = TestHook::start(|_| None).await;
    let (sandbox, client) = sandbox_with(hook.addr).await;
    register_validating(
        &client,
        "slow",
        vec![hook.webhook("slow.example.com", json!({ "timeoutSeconds": 1 }))],
    )
    .await;
    let secrets = Api::<Secret>::namespaced(client.clone(), "default");

    let (code, _, message) = api_error(
        secrets
            .create(&PostParams::default(), &secret("s1", &[]))
            .await
            .unwrap_err(),
    );

    assert_eq!(code, 500);
    assert_eq!(
        message,
        "Internal error occurred: failed calling webhook \"slow.example.com\": failed to call webhook: \
         Post \"https://hook.webhooks.svc:443/review?timeout=1s\": context deadline exceeded"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn namespace_selector_sees_the_metadata_name_label() {
    let mut hook = TestHook::start(|review| {
        Some(answer(
            review,
            json!({ "allowed": false, "status": { "message": "guarded namespace" } }),
        ))
    })
    .await;
    let (sandbox, client) = sandbox_with(hook.addr).await;
    let namespace: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": "guarded" } })).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let selector = json!({ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "guarded" } } });
    register_validating(
        &client,
        "ns-guard",
        vec![hook.webhook("ns.example.com", selector)],
    )
    .await;

    Api::<Secret>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &secret("free", &[]))
        .await
        .unwrap();
    assert!(
        hook.seen.try_recv().is_err(),
        "the webhook must not be called for namespace default"
    );
    let err = Api::<Secret>::namespaced(client.clone(), "guarded")
        .create(&PostParams::default(), &secret("blocked", &[]))
        .await
        .unwrap_err();

    assert_eq!(
        api_error(err).2,
        "admission webhook \"ns.example.com\" denied the request: guarded namespace"
    );
    assert_eq!(hook.next()["request"]["namespace"], "guarded");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn impersonated_identity_is_what_the_webhook_sees() {
    let mut hook = TestHook::start(|review| Some(answer(review, json!({})))).await;
    let (sandbox, admin) = sandbox_with(hook.addr).await;
    register_validating(
        &admin,
        "who",
        vec![hook.webhook("who.example.com", json!({}))],
    )
    .await;
    let relay = client(
        &sandbox,
        Some(("secret-relay:cluster:c1", &["secret-relay:clusters"])),
    )
    .await;

    Api::<Secret>::namespaced(relay, "default")
        .create(&PostParams::default(), &secret("from-c1", &[]))
        .await
        .unwrap();

    let user = hook.next()["request"]["userInfo"].clone();
    assert_eq!(user["username"], "secret-relay:cluster:c1");
    let groups = user["groups"].as_array().cloned().unwrap_or_default();
    assert!(
        groups.contains(&json!("secret-relay:clusters")),
        "{groups:?}"
    );
    assert!(!groups.contains(&json!("system:masters")), "{groups:?}");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn webhook_configurations_are_stored_with_kube_apiserver_defaults() {
    let hook = TestHook::start(|review| Some(answer(review, json!({})))).await;
    let (sandbox, client) = sandbox_with(hook.addr).await;
    register_validating(
        &client,
        "defaults",
        vec![hook.webhook("d.example.com", json!({}))],
    )
    .await;

    let stored = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get("defaults")
        .await
        .unwrap();

    let webhook = &stored.webhooks.unwrap_or_default()[0];
    assert_eq!(webhook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(webhook.match_policy.as_deref(), Some("Equivalent"));
    assert_eq!(webhook.timeout_seconds, Some(10));
    assert_eq!(
        webhook.client_config.service.as_ref().and_then(|s| s.port),
        Some(443)
    );
    let rules = webhook.rules.clone().unwrap_or_default();
    assert_eq!(rules[0].scope.as_deref(), Some("*"));
    assert!(webhook.namespace_selector.is_some());
    assert!(webhook.object_selector.is_some());
    let pem = BASE64.decode(&hook.ca_bundle).unwrap();
    assert_eq!(webhook.client_config.ca_bundle, Some(ByteString(pem)));
    sandbox.shutdown().await;
}
