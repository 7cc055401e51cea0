//! Request bodies read as kube-apiserver 1.37 reads them: a key given twice, and the
//! directives of a strategic merge patch. Each expectation was answered by kube-apiserver
//! to the same request.

// Helpers outside #[test] functions panic on a failed setup step, like the tests themselves.
#![allow(clippy::unwrap_used)]

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use secret_relay_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

async fn sandbox() -> (Sandbox, Client) {
    let sb = secret_relay_sandbox::start(SandboxConfig::default())
        .await
        .unwrap();
    let kubeconfig = Kubeconfig::from_yaml(&sb.kubeconfig("admin").unwrap()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    (sb, client)
}

/// The answer to one request: code, `Warning` headers (their text) and JSON body.
#[derive(Debug)]
struct Answer {
    code: u16,
    warnings: Vec<String>,
    body: Value,
}

async fn send(client: &Client, method: &str, uri: &str, content_type: &str, body: &str) -> Answer {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body.as_bytes().to_vec()))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let code = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| {
            let text = v.to_str().unwrap().strip_prefix("299 - ").unwrap();
            serde_json::from_str::<String>(text).unwrap()
        })
        .collect();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    Answer {
        code,
        warnings,
        body: serde_json::from_slice(&bytes).unwrap(),
    }
}

/// Creates Secret `name` with labels a=1, b=1.
async fn create(client: &Client, name: &str) {
    let body =
        json!({"metadata": {"name": name, "labels": {"a": "1", "b": "1"}}, "data": {"k": "MQ=="}});
    let answer = send(
        client,
        "POST",
        SECRETS,
        "application/json",
        &body.to_string(),
    )
    .await;
    assert_eq!(answer.code, 201, "{answer:?}");
}

#[tokio::test]
async fn a_body_that_repeats_labels_stores_both_maps_and_warns() {
    let (sb, client) = sandbox().await;
    let body = r#"{"metadata": {"name": "dup", "labels": {"a": "1", "b": "1"}, "labels": {"b": "2", "c": "2"}},
                   "data": {"x": "MQ=="}, "data": {"y": "Mg=="}, "foo": 1}"#;
    let created = send(&client, "POST", SECRETS, "application/json", body).await;
    assert_eq!(created.code, 201, "{created:?}");
    assert_eq!(
        created.body["metadata"]["labels"],
        json!({"a": "1", "b": "2", "c": "2"})
    );
    assert_eq!(created.body["data"], json!({"x": "MQ==", "y": "Mg=="}));
    assert_eq!(
        created.warnings,
        [
            r#"duplicate field "metadata.labels""#,
            r#"duplicate field "data""#,
            r#"unknown field "foo""#,
        ]
    );

    let ignored = send(
        &client,
        "POST",
        &format!("{SECRETS}?fieldValidation=Ignore&dryRun=All"),
        "application/json",
        &body.replace("\"dup\"", "\"dup2\""),
    )
    .await;
    assert_eq!((ignored.code, ignored.warnings.len()), (201, 0));

    let strict = send(
        &client,
        "PUT",
        &format!("{SECRETS}/dup?fieldValidation=Strict"),
        "application/json",
        r#"{"metadata": {"name": "dup", "labels": {"a": "1"}, "labels": {"b": "2"}}}"#,
    )
    .await;
    assert_eq!(strict.code, 400);
    assert_eq!(
        strict.body["message"],
        r#"Secret in version "v1" cannot be handled as a Secret: strict decoding error: duplicate field "metadata.labels""#
    );

    let updated = send(
        &client,
        "PUT",
        &format!("{SECRETS}/dup"),
        "application/json",
        r#"{"metadata": {"name": "dup", "labels": {"a": "1"}, "labels": {"b": "2"}}, "type": "Opaque"}"#,
    )
    .await;
    assert_eq!(updated.code, 200, "{updated:?}");
    assert_eq!(
        updated.body["metadata"]["labels"],
        json!({"a": "1", "b": "2"})
    );
    assert_eq!(updated.warnings, [r#"duplicate field "metadata.labels""#]);
    sb.shutdown().await;
}

#[tokio::test]
async fn strategic_patch_directives_replace_or_delete_the_labels() {
    let (sb, client) = sandbox().await;
    create(&client, "s").await;
    let patch = |body: &'static str| {
        let client = client.clone();
        async move {
            send(
                &client,
                "PATCH",
                &format!("{SECRETS}/s?dryRun=All"),
                STRATEGIC,
                body,
            )
            .await
        }
    };

    let replaced = patch(r#"{"metadata": {"labels": {"y": "2", "$patch": "replace"}}}"#).await;
    assert_eq!(replaced.code, 200, "{replaced:?}");
    assert_eq!(replaced.body["metadata"]["labels"], json!({"y": "2"}));

    let deleted = patch(r#"{"metadata": {"labels": {"$patch": "delete"}}}"#).await;
    assert_eq!(deleted.code, 200, "{deleted:?}");
    assert_eq!(deleted.body["metadata"].get("labels"), None);

    let kept = patch(r#"{"metadata": {"labels": {"$retainKeys": ["a"]}}}"#).await;
    assert_eq!(kept.body["metadata"]["labels"], json!({"a": "1"}));

    let unknown = patch(r#"{"metadata": {"labels": {"$patch": "merge", "y": "2"}}}"#).await;
    assert_eq!(unknown.code, 500);
    assert_eq!(
        unknown.body["message"],
        "unknown patch type: merge in map: map[$patch:merge y:2]"
    );
    assert_eq!(unknown.body.get("reason"), None);

    // A `$` key that is no directive is a label key like any other.
    let plain = patch(r#"{"metadata": {"labels": {"$foo": "x"}}}"#).await;
    assert_eq!(plain.code, 422, "{plain:?}");
    sb.shutdown().await;
}

#[tokio::test]
async fn a_patch_that_repeats_a_key_keeps_the_later_value_and_warns() {
    let (sb, client) = sandbox().await;
    create(&client, "p").await;
    let uri = format!("{SECRETS}/p?dryRun=All");
    for content_type in [MERGE, STRATEGIC] {
        let answer = send(
            &client,
            "PATCH",
            &uri,
            content_type,
            r#"{"metadata": {"labels": {"c": "3"}, "labels": {"z": "1"}, "bogus": 1}}"#,
        )
        .await;
        assert_eq!(answer.code, 200, "{answer:?}");
        assert_eq!(
            answer.body["metadata"]["labels"],
            json!({"a": "1", "b": "1", "z": "1"})
        );
        assert_eq!(
            answer.warnings,
            [
                r#"duplicate field "metadata.labels""#,
                r#"unknown field "metadata.bogus""#
            ]
        );
    }
    let answer = send(
        &client,
        "PATCH",
        &uri,
        JSON_PATCH,
        r#"[{"op": "add", "path": "/metadata/labels/c", "value": "1", "value": "2"}]"#,
    )
    .await;
    assert_eq!(answer.body["metadata"]["labels"]["c"], "2");
    assert_eq!(
        answer.warnings,
        [r#"json patch duplicate field "[0].value""#]
    );

    // Strict: the patched object does not decode, a 422 naming the patch.
    let strict = send(
        &client,
        "PATCH",
        &format!("{uri}&fieldValidation=Strict"),
        STRATEGIC,
        r#"{"metadata": {"labels": {"c": "3"}, "labels": {"z": "1"}}}"#,
    )
    .await;
    assert_eq!(strict.code, 422);
    assert_eq!(
        strict.body["message"],
        r#" "" is invalid: patch: Invalid value: "map[metadata:map[labels:map[z:1]]]": strict decoding error: duplicate field "metadata.labels""#
    );
    assert_eq!(strict.body["details"]["causes"][0]["field"], "patch");
    sb.shutdown().await;
}

#[tokio::test]
async fn an_apply_patch_in_json_that_repeats_a_key_keeps_the_later_value() {
    let (sb, client) = sandbox().await;
    let body = r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ap", "labels": {"a": "1"}, "labels": {"b": "2"}}}"#;
    let applied = send(
        &client,
        "PATCH",
        &format!("{SECRETS}/ap?fieldManager=m"),
        APPLY,
        body,
    )
    .await;
    assert_eq!(applied.code, 201, "{applied:?}");
    assert_eq!(applied.body["metadata"]["labels"], json!({"b": "2"}));
    assert_eq!(
        applied.warnings,
        [r#"line 1: key "labels" already set in map"#]
    );
    let strict = send(
        &client,
        "PATCH",
        &format!("{SECRETS}/ap?fieldManager=m&fieldValidation=Strict"),
        APPLY,
        body,
    )
    .await;
    assert_eq!(strict.code, 400);
    assert_eq!(
        strict.body["message"],
        "error strict decoding patch: error converting YAML to JSON: yaml: unmarshal errors:\n  line 1: key \"labels\" already set in map"
    );
    sb.shutdown().await;
}
