//! AdmissionReview bodies through the in-process handler: the kube-apiserver contract
//! and every rule, as `/validate` and `/mutate` see them.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use secret_relay_policy::{Mode, RelayIdentity};
use secret_relay_webhook::{AppState, MAX_BODY_BYTES, handle, parse_policy};
use serde_json::{Value, json};

const POLICY: &str = r#"
controlPlaneNamespace: argocd
agentNamespace: akuity
clusters:
  - name: cluster1
    labels: { env: prod }
  - name: cluster2
    labels: { env: dev }
secretSources:
  - clusterSelector: "env in (prod,dev)"
breakGlass: { users: [oncall], groups: [] }
"#;

const RELAY: &str = "system:serviceaccount:secret-relay-system:secret-relay";

fn state() -> AppState {
    let state = AppState::new(RelayIdentity::default(), Mode::ControlPlane);
    state.offer_policy("test", "1", parse_policy(POLICY));
    state
}

fn secret(name: &str, labels: Value, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": "argocd", "labels": labels },
        "type": "Opaque",
        "data": data,
    })
}

fn cluster_user(c: &str) -> Value {
    json!({ "username": format!("secret-relay:cluster:{c}"), "groups": ["secret-relay:clusters", "system:authenticated"] })
}

fn admin() -> Value {
    json!({ "username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"] })
}

fn review(op: &str, user: Value, object: Value, old: Value) -> Value {
    let name = object["metadata"]["name"]
        .as_str()
        .or(old["metadata"]["name"].as_str())
        .unwrap_or("")
        .to_owned();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": { "group": "", "version": "v1", "kind": "Secret" },
            "resource": { "group": "", "version": "v1", "resource": "secrets" },
            "requestKind": { "group": "", "version": "v1", "kind": "Secret" },
            "requestResource": { "group": "", "version": "v1", "resource": "secrets" },
            "name": name,
            "namespace": "argocd",
            "operation": op,
            "userInfo": user,
            "object": object,
            "oldObject": old,
            "dryRun": false,
            "options": null,
        }
    })
}

async fn post(
    state: &AppState,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Bytes) {
    let req = Request::post(path)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = handle(state, req).await;
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

async fn get(state: &AppState, path: &str) -> http::Response<Full<Bytes>> {
    handle(
        state,
        Request::get(path).body(Full::new(Bytes::new())).unwrap(),
    )
    .await
}

async fn call(state: &AppState, path: &str, review: &Value) -> Value {
    let (status, body) = post(
        state,
        path,
        "application/json",
        serde_json::to_vec(review).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Runs a write as kube-apiserver would: `/mutate`, apply its patch, then `/validate`.
async fn admit(state: &AppState, review_in: &Value) -> (Value, Value) {
    let mutated = call(state, "/mutate", review_in).await;
    let mut review_in = review_in.clone();
    if let Some(patch) = mutated["response"]["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut review_in["request"]["object"], &patch).unwrap();
    }
    let validated = call(state, "/validate", &review_in).await;
    (review_in["request"]["object"].clone(), validated)
}

#[tokio::test]
async fn response_echoes_uid_and_envelope_and_never_patches_on_validate() {
    let state = state();
    let r = review(
        "CREATE",
        admin(),
        secret("repo", json!({}), json!({"k": "dg=="})),
        Value::Null,
    );
    let out = call(&state, "/validate", &r).await;
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    assert_eq!(
        out["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(out["response"]["allowed"], true);
    assert!(out["response"].get("patch").is_none());
    assert!(out["response"].get("patchType").is_none());
}

#[tokio::test]
async fn routing_ignores_the_timeout_query() {
    let state = state();
    let r = review(
        "CREATE",
        admin(),
        secret("repo", json!({}), json!({})),
        Value::Null,
    );
    let out = call(&state, "/validate?timeout=10s", &r).await;
    assert_eq!(out["response"]["allowed"], true);
}

#[tokio::test]
async fn malformed_json_missing_request_and_wrong_content_type_are_400() {
    let state = state();
    let (code, body) = post(
        &state,
        "/validate",
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("failed to decode AdmissionReview"));

    let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let (code, body) = post(
        &state,
        "/validate",
        "application/json",
        serde_json::to_vec(&no_request).unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("no request"));

    let wrong_version =
        json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}});
    let (code, _) = post(
        &state,
        "/mutate",
        "application/json",
        serde_json::to_vec(&wrong_version).unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    let r = review(
        "CREATE",
        admin(),
        secret("repo", json!({}), json!({})),
        Value::Null,
    );
    let (code, body) = post(
        &state,
        "/validate",
        "text/plain",
        serde_json::to_vec(&r).unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("Content-Type: application/json"));
}

#[tokio::test]
async fn a_secret_object_that_is_not_a_secret_is_400_without_echoing_values() {
    let state = state();
    let mut r = review(
        "CREATE",
        admin(),
        secret("repo", json!({}), json!({})),
        Value::Null,
    );
    r["request"]["object"]["data"] = json!("s3cr3t-value-not-a-map");
    let (code, body) = post(
        &state,
        "/validate",
        "application/json",
        serde_json::to_vec(&r).unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(!String::from_utf8_lossy(&body).contains("s3cr3t"));
}

#[tokio::test]
async fn bodies_above_the_limit_are_413_and_a_worst_case_update_passes() {
    let state = state();
    let oversized = vec![b' '; MAX_BODY_BYTES + 1];
    let (code, _) = post(&state, "/validate", "application/json", oversized).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);

    // 1 MiB of Secret data in object and oldObject, base64: about 2.7 MiB of review,
    // plus kubectl's last-applied annotation copy makes the ~3.5 MiB worst case.
    let value = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 1024 * 1024 - 64]);
    let big = secret("big", json!({}), json!({ "blob": value }));
    let mut object = big.clone();
    object["metadata"]["annotations"] =
        json!({ "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(900 * 1024) });
    let r = review("UPDATE", admin(), object, big);
    let body = serde_json::to_vec(&r).unwrap();
    assert!(body.len() > 3 * 1024 * 1024);
    let (code, out) = post(&state, "/validate", "application/json", body).await;
    assert_eq!(code, StatusCode::OK);
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["response"]["allowed"], true);
}

#[tokio::test]
async fn non_secret_kinds_and_subresources_are_allowed_untouched() {
    let state = state();
    let mut r = review(
        "CREATE",
        cluster_user("cluster1"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-secret"}}),
        Value::Null,
    );
    r["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    for path in ["/validate", "/mutate"] {
        let out = call(&state, path, &r).await;
        assert_eq!(out["response"]["allowed"], true);
        assert!(out["response"].get("patch").is_none());
    }
    let mut r = review(
        "UPDATE",
        admin(),
        secret("argocd-secret", json!({}), json!({})),
        secret("argocd-secret", json!({}), json!({})),
    );
    r["request"]["subResource"] = json!("status");
    let out = call(&state, "/mutate", &r).await;
    assert!(out["response"].get("patch").is_none());
}

#[tokio::test]
async fn delete_with_null_object_is_decided_on_the_old_object_and_never_mutated() {
    let state = state();
    let owned = secret(
        "repo",
        json!({"secret-relay.io/owner": "cluster.cluster1"}),
        json!({}),
    );
    let r = review("DELETE", admin(), Value::Null, owned.clone());
    let out = call(&state, "/mutate", &r).await;
    assert!(out["response"].get("patch").is_none());
    let out = call(&state, "/validate", &r).await;
    assert_eq!(out["response"]["allowed"], false);
    let r = review("DELETE", cluster_user("cluster1"), Value::Null, owned);
    let out = call(&state, "/validate", &r).await;
    assert_eq!(out["response"]["allowed"], true, "{out}");
}

#[tokio::test]
async fn dry_run_gets_the_same_decision() {
    let state = state();
    let owned = secret(
        "repo",
        json!({"secret-relay.io/owner": "cluster.cluster1"}),
        json!({}),
    );
    let mut r = review("UPDATE", admin(), owned.clone(), owned);
    r["request"]["dryRun"] = json!(true);
    let out = call(&state, "/validate", &r).await;
    assert_eq!(out["response"]["allowed"], false);
}

#[tokio::test]
async fn not_ready_until_a_valid_policy_loads() {
    let state = AppState::new(RelayIdentity::default(), Mode::ControlPlane);
    let r = review(
        "CREATE",
        admin(),
        secret("repo", json!({}), json!({})),
        Value::Null,
    );
    let (code, _) = post(
        &state,
        "/validate",
        "application/json",
        serde_json::to_vec(&r).unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    let readyz = get(&state, "/readyz").await;
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);

    state.offer_policy("test", "1", parse_policy("clusters: [{name: Bad_Name}]"));
    assert!(!state.is_ready());
    let readyz = get(&state, "/readyz").await;
    let detail = readyz.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&detail).contains("clusters[0].name"),
        "{detail:?}"
    );

    state.offer_policy("test", "2", parse_policy(POLICY));
    assert!(state.is_ready());
    assert_eq!(state.generation(), 1);
    let readyz = get(&state, "/readyz").await;
    assert_eq!(readyz.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bad_policy_never_replaces_the_last_good_one() {
    let state = state();
    state.offer_policy("test", "2", parse_policy("secretSources: [{}]"));
    assert_eq!(state.generation(), 1);
    // cluster1 still registered: its write is still decided by the good policy.
    let r = review(
        "CREATE",
        cluster_user("cluster1"),
        secret("repo", json!({}), json!({})),
        Value::Null,
    );
    let (_, out) = admit(&state, &r).await;
    assert_eq!(out["response"]["allowed"], true, "{out}");
    let metrics = get(&state, "/metrics").await;
    let text = String::from_utf8(
        metrics
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("secret_relay_webhook_policy_reload_failures_total 1"),
        "{text}"
    );
    assert!(
        text.contains("secret_relay_webhook_policy_generation 1"),
        "{text}"
    );
    assert!(text.contains("secret_relay_webhook_requests_total{endpoint=\"validate\",operation=\"CREATE\",decision=\"allowed\"} 1"), "{text}");
    assert!(
        text.contains("secret_relay_webhook_review_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn a_cluster_write_is_stamped_with_owner_and_digest_and_mutating_twice_is_empty() {
    let state = state();
    let r = review(
        "CREATE",
        cluster_user("cluster1"),
        secret(
            "repo-creds",
            json!({"team": "a"}),
            json!({"url": "aHR0cHM6Ly9leGFtcGxl"}),
        ),
        Value::Null,
    );
    let (object, out) = admit(&state, &r).await;
    assert_eq!(out["response"]["allowed"], true, "{out}");
    assert_eq!(
        object["metadata"]["labels"]["secret-relay.io/owner"],
        "cluster.cluster1"
    );
    assert!(
        object["metadata"]["annotations"]["secret-relay.io/digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(
        out["response"]["auditAnnotations"]["owner"],
        "cluster.cluster1"
    );
    let mut again = r.clone();
    again["request"]["object"] = object;
    let out = call(&state, "/mutate", &again).await;
    assert!(out["response"].get("patch").is_none(), "{out}");
}

#[tokio::test]
async fn adopting_an_adoptable_control_plane_secret_stamps_adopted() {
    let state = state();
    let cp = secret(
        "argocd-notifications-secret",
        json!({}),
        json!({"a": "Yg=="}),
    );
    let r = review("UPDATE", cluster_user("cluster1"), cp.clone(), cp);
    let (object, out) = admit(&state, &r).await;
    assert_eq!(out["response"]["allowed"], true, "{out}");
    assert_eq!(
        object["metadata"]["annotations"]["secret-relay.io/adopted"],
        "true"
    );
}

/// Every rule as a write through mutate then validate: (what, operation, user, object,
/// oldObject, allowed, rule id in the message).
#[tokio::test]
async fn every_rule_through_the_endpoints() {
    let state = state();
    let owned1 = secret(
        "repo",
        json!({"secret-relay.io/owner": "cluster.cluster1"}),
        json!({"k": "dg=="}),
    );
    let cp_plain = secret("plain", json!({}), json!({}));
    let blocked_label = json!({"argocd.argoproj.io/secret-type": "cluster"});
    let mut sa_token = secret("tok", json!({}), json!({}));
    sa_token["type"] = json!("kubernetes.io/service-account-token");
    let mut relay_return = owned1.clone();
    relay_return["metadata"]["labels"] = json!({});
    let cases: Vec<(&str, &str, Value, Value, Value, bool, &str)> = vec![
        (
            "cluster creates a new hub copy",
            "CREATE",
            cluster_user("cluster1"),
            secret("new", json!({}), json!({})),
            Value::Null,
            true,
            "",
        ),
        (
            "unknown cluster",
            "CREATE",
            cluster_user("ghost"),
            secret("new", json!({}), json!({})),
            Value::Null,
            false,
            "unknown-cluster",
        ),
        (
            "cluster creates argocd-secret",
            "CREATE",
            cluster_user("cluster1"),
            secret("argocd-secret", json!({}), json!({})),
            Value::Null,
            false,
            "blocked-name",
        ),
        (
            "cluster creates argocd-initial-admin-secret",
            "CREATE",
            cluster_user("cluster1"),
            secret("argocd-initial-admin-secret", json!({}), json!({})),
            Value::Null,
            false,
            "blocked-name",
        ),
        (
            "cluster creates a service-account token",
            "CREATE",
            cluster_user("cluster1"),
            sa_token.clone(),
            Value::Null,
            false,
            "blocked-type",
        ),
        (
            "cluster creates an Argo CD cluster secret",
            "CREATE",
            cluster_user("cluster1"),
            secret("c", blocked_label.clone(), json!({})),
            Value::Null,
            false,
            "blocked-label",
        ),
        (
            "cluster makes its copy blocked by label",
            "UPDATE",
            cluster_user("cluster1"),
            secret("repo", blocked_label.clone(), json!({})),
            owned1.clone(),
            false,
            "blocked-label",
        ),
        (
            "cluster unblocks by removing the label",
            "UPDATE",
            cluster_user("cluster1"),
            secret("c", json!({}), json!({})),
            secret(
                "c",
                json!({"argocd.argoproj.io/secret-type": "cluster", "secret-relay.io/owner": "cluster.cluster1"}),
                json!({}),
            ),
            false,
            "blocked-label",
        ),
        (
            "cluster updates its own copy",
            "UPDATE",
            cluster_user("cluster1"),
            owned1.clone(),
            owned1.clone(),
            true,
            "",
        ),
        (
            "other cluster updates it",
            "UPDATE",
            cluster_user("cluster2"),
            owned1.clone(),
            owned1.clone(),
            false,
            "owned-by-other-cluster",
        ),
        (
            "other cluster deletes it",
            "DELETE",
            cluster_user("cluster2"),
            Value::Null,
            owned1.clone(),
            false,
            "release-not-owner",
        ),
        (
            "cluster takes a non-adoptable CP secret",
            "UPDATE",
            cluster_user("cluster1"),
            cp_plain.clone(),
            cp_plain.clone(),
            false,
            "owned-by-control-plane",
        ),
        (
            "admin edits a cluster-owned copy",
            "UPDATE",
            admin(),
            owned1.clone(),
            owned1.clone(),
            false,
            "ownership-lock",
        ),
        (
            "admin deletes a cluster-owned copy",
            "DELETE",
            admin(),
            Value::Null,
            owned1.clone(),
            false,
            "ownership-lock",
        ),
        (
            "admin sets an owner label by hand",
            "CREATE",
            admin(),
            secret(
                "x",
                json!({"secret-relay.io/owner": "cluster.cluster1"}),
                json!({}),
            ),
            Value::Null,
            false,
            "owner-label-forged",
        ),
        (
            "admin edits a managed secret",
            "UPDATE",
            admin(),
            cp_plain.clone(),
            cp_plain.clone(),
            true,
            "",
        ),
        (
            "relay deletes a cluster-owned copy",
            "DELETE",
            json!({"username": RELAY, "groups": []}),
            Value::Null,
            owned1.clone(),
            true,
            "",
        ),
        (
            "break-glass user edits a cluster-owned copy",
            "UPDATE",
            json!({"username": "oncall", "groups": []}),
            owned1.clone(),
            owned1.clone(),
            true,
            "",
        ),
        (
            "namespace controller deletes a cluster-owned copy",
            "DELETE",
            json!({"username": "system:serviceaccount:kube-system:namespace-controller", "groups": []}),
            Value::Null,
            owned1.clone(),
            true,
            "",
        ),
        (
            "garbage collector deletes a cluster-owned copy",
            "DELETE",
            json!({"username": "system:serviceaccount:kube-system:generic-garbage-collector", "groups": []}),
            Value::Null,
            owned1.clone(),
            true,
            "",
        ),
    ];
    let mut failures = Vec::new();
    for (what, op, user, object, old, allowed, rule) in cases {
        let r = review(op, user, object, old);
        let (_, out) = admit(&state, &r).await;
        let got = out["response"]["allowed"].as_bool().unwrap();
        let message = out["response"]["status"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if got != allowed || (!allowed && !message.contains(&format!("(rule {rule})"))) {
            failures.push(format!("{what}: allowed={got} message={message:?}"));
        }
        if !allowed {
            assert_eq!(out["response"]["status"]["code"], 403, "{what}");
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn a_denial_names_the_owner_and_the_fix() {
    let state = state();
    let owned1 = secret(
        "repo",
        json!({"secret-relay.io/owner": "cluster.cluster1"}),
        json!({}),
    );
    let (_, out) = admit(&state, &review("UPDATE", admin(), owned1.clone(), owned1)).await;
    let message = out["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("cluster1"), "{message}");
    assert!(message.contains("akuity.io/secret-sync"), "{message}");
}

#[tokio::test]
async fn managed_cluster_mode_locks_down_copies_against_all_but_the_agent() {
    let agent = "system:serviceaccount:akuity:secret-relay-agent";
    let state = AppState::new(
        RelayIdentity::default(),
        Mode::ManagedCluster {
            agent: agent.to_owned(),
        },
    );
    state.offer_policy("test", "1", parse_policy(POLICY));
    let mut down = secret(
        "repo",
        json!({"secret-relay.io/owner": "control-plane"}),
        json!({}),
    );
    down["metadata"]["namespace"] = json!("akuity");
    let mut r = review("UPDATE", admin(), down.clone(), down.clone());
    r["request"]["namespace"] = json!("akuity");
    let (_, out) = admit(&state, &r).await;
    assert_eq!(out["response"]["allowed"], false, "{out}");
    r["request"]["userInfo"] = json!({"username": agent, "groups": []});
    let (_, out) = admit(&state, &r).await;
    assert_eq!(out["response"]["allowed"], true, "{out}");
}

#[tokio::test]
async fn health_and_unknown_paths() {
    let state = state();
    let ok = get(&state, "/healthz").await;
    assert_eq!(ok.status(), StatusCode::OK);
    let missing = get(&state, "/nope").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let get = get(&state, "/validate").await;
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_bench_baseline_route_is_served_only_when_enabled() {
    let r = review(
        "CREATE",
        admin(),
        secret("repo", json!({}), json!({})),
        Value::Null,
    );
    let body = serde_json::to_vec(&r).unwrap();
    let (code, _) = post(&state(), "/baseline", "application/json", body.clone()).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let bench = AppState::with_bench_baseline(RelayIdentity::default(), Mode::ControlPlane);
    bench.offer_policy("test", "1", parse_policy(POLICY));
    let (code, out) = post(&bench, "/baseline", "application/json", body).await;
    assert_eq!(code, StatusCode::OK);
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["response"]["allowed"], true);
}
