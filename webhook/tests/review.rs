//! AdmissionReview bodies through the in-process handler: the kube-apiserver contract
//! and every rule, as `/validate` and `/mutate` see them.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use secret_relay_policy::{
    AdmissionInput, Mode, Operation, Policy, RelayIdentity, Rule, Secret, UserInfo, mutate,
    reclaim, release, up_sync, validate,
};
use secret_relay_webhook::{AppState, MAX_BODY_BYTES, handle, parse_policy};
use serde_json::{Value, json};
use std::time::Duration;

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
extraBlocked: { names: [vault-token] }
breakGlass: { users: [oncall], groups: [] }
"#;

const RELAY: &str = "system:serviceaccount:secret-relay-system:secret-relay";

fn state() -> AppState {
    let state = AppState::new(RelayIdentity::default(), Mode::ControlPlane);
    state
        .policy_state()
        .offer_policy("test", "1", parse_policy(POLICY));
    state
}

/// A Secret in `argocd` with `labels` and the opt-in label: what a cluster writes
/// (the webhook judges a cluster's write by the whole up-sync rule); other writers'
/// decisions do not look at it.
fn secret(name: &str, mut labels: Value, data: Value) -> Value {
    labels["akuity.io/secret-sync"] = json!("true");
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

/// The webhook's `/metrics` as text.
async fn metrics_text(state: &AppState) -> String {
    let metrics = get(state, "/metrics").await;
    let body = metrics.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
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

/// Checks a `/validate` answer: allowed or not, the rule in `auditAnnotations` (allowed
/// answers too), and for a denial a 403 whose message ends with the rule.
#[track_caller]
fn assert_decision(out: &Value, allowed: bool, rule: &str) {
    let response = &out["response"];
    assert_eq!(response["allowed"], allowed, "{out}");
    assert_eq!(response["auditAnnotations"]["rule"], rule, "{out}");
    if allowed {
        assert!(response.get("status").is_none(), "{out}");
    } else {
        assert_eq!(response["status"]["code"], 403, "{out}");
        let message = response["status"]["message"].as_str().unwrap();
        assert!(message.ends_with(&format!("(rule {rule})")), "{message}");
    }
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
    assert_decision(&out, true, "control-plane-write");
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
    assert_decision(&out, true, "control-plane-write");
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
    let mut not_strings = r.clone();
    not_strings["request"]["object"]["data"] = json!({"k": ["s3cr3t"]});
    // `/mutate` reads no value, but a body it cannot read as a Secret takes the whole
    // decode, which refuses it in the same words.
    for path in ["/validate", "/mutate"] {
        for r in [&r, &not_strings] {
            let (code, body) = post(
                &state,
                path,
                "application/json",
                serde_json::to_vec(r).unwrap(),
            )
            .await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{path}");
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains("as a core/v1 Secret"), "{path}: {body}");
            assert!(!body.contains("s3cr3t"), "{path}: {body}");
        }
    }
}

/// `/mutate` decodes only the metadata `mutate` reads, in one pass: escaped strings,
/// the API server's own metadata and an update's old object give the patch `mutate`
/// builds from the whole objects.
#[tokio::test]
async fn mutate_patches_as_the_whole_decode_would() {
    let state = state();
    let policy = parse_policy(POLICY).unwrap();
    let mut object = secret(
        "application-set-secret",
        json!({"a/b~c": "x\"y\u{1}\n", "secret-relay.io/owner": "cluster.cluster2"}),
        json!({"k\"ey": "dg==", "other": ""}),
    );
    object["metadata"]["annotations"] = json!({"secret-relay.io/digest": "old", "n\\te": "v"});
    object["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Update",
        "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {".": {}}}}]);
    object["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "p", "uid": "u"}]);
    object["metadata"]["creationTimestamp"] = json!("2026-12-07T00:00:00Z");
    object["stringData"] = json!({"s": "plain text"});
    let old = secret("application-set-secret", json!({}), json!({"k": "dg=="}));
    let users = [
        cluster_user("cluster1"),
        admin(),
        user_named("system:kube-controller-manager"),
    ];
    for user in users {
        for (op, old) in [("CREATE", &Value::Null), ("UPDATE", &old)] {
            let r = review(op, user.clone(), object.clone(), old.clone());
            let endpoint = patch_of(&call(&state, "/mutate", &r).await);
            let case = Case {
                what: "escapes",
                namespace: "argocd",
                op,
                user: user.clone(),
                object: object.clone(),
                old: old.clone(),
                allowed: true,
                rule: "",
                sync: Sync::None,
            };
            let (_, api) = through_the_policy_api(&policy, &case);
            assert_eq!(endpoint, api, "{op} by {user}");
        }
    }
    // The cluster's create is stamped with its owner, and the old digest goes.
    let r = review(
        "CREATE",
        cluster_user("cluster1"),
        object.clone(),
        Value::Null,
    );
    let patch = patch_of(&call(&state, "/mutate", &r).await).to_string();
    assert!(patch.contains("cluster.cluster1"), "{patch}");
    assert!(
        patch.contains("/metadata/annotations/secret-relay.io~1digest"),
        "{patch}"
    );
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
    assert_decision(&out, true, "control-plane-write");
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
    assert_decision(&call(&state, "/validate", &r).await, true, "not-a-secret");
    // A subresource write of a blocked Secret by a cluster passes untouched too.
    let mut r = review(
        "UPDATE",
        cluster_user("cluster1"),
        secret("argocd-secret", json!({}), json!({})),
        secret("argocd-secret", json!({}), json!({})),
    );
    r["request"]["subResource"] = json!("status");
    let out = call(&state, "/mutate", &r).await;
    assert!(out["response"].get("patch").is_none());
    assert_decision(&call(&state, "/validate", &r).await, true, "not-a-secret");
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
    assert_decision(&out, false, "ownership-lock");
    let r = review("DELETE", cluster_user("cluster1"), Value::Null, owned);
    let out = call(&state, "/validate", &r).await;
    assert_decision(&out, true, "release-delete");
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
    let wet = call(&state, "/validate", &r).await;
    r["request"]["dryRun"] = json!(true);
    let out = call(&state, "/validate", &r).await;
    assert_decision(&out, false, "ownership-lock");
    assert_eq!(out, wet);
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

    state
        .policy_state()
        .offer_policy("test", "1", parse_policy("clusters: [{name: Bad_Name}]"));
    assert!(!state.policy_state().is_ready());
    let readyz = get(&state, "/readyz").await;
    let detail = readyz.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&detail).contains("clusters[0].name"),
        "{detail:?}"
    );

    state
        .policy_state()
        .offer_policy("test", "2", parse_policy(POLICY));
    assert!(state.policy_state().is_ready());
    assert_eq!(state.policy_state().generation(), 1);
    let readyz = get(&state, "/readyz").await;
    assert_eq!(readyz.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bad_policy_never_replaces_the_last_good_one() {
    let state = state();
    state
        .policy_state()
        .offer_policy("test", "2", parse_policy("secretSources: [{}]"));
    assert_eq!(state.policy_state().generation(), 1);
    // cluster1 still registered: its write is still decided by the good policy.
    let r = review(
        "CREATE",
        cluster_user("cluster1"),
        secret("repo", json!({}), json!({})),
        Value::Null,
    );
    let (_, out) = admit(&state, &r).await;
    assert_decision(&out, true, "up-sync-new");
    let text = metrics_text(&state).await;
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
async fn a_cluster_write_is_stamped_with_its_owner_and_no_digest_and_mutating_twice_is_empty() {
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
    assert_decision(&out, true, "up-sync-new");
    assert_eq!(
        object["metadata"]["labels"]["secret-relay.io/owner"],
        "cluster.cluster1"
    );
    // Nothing of the values is stamped: no annotation at all on this one.
    assert!(
        object["metadata"]
            .get("annotations")
            .is_none_or(|a| a.get("secret-relay.io/digest").is_none()),
        "{object}"
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
    assert_decision(&out, true, "adopt");
    assert_eq!(
        object["metadata"]["annotations"]["secret-relay.io/adopted"],
        "true"
    );
}

/// The sync decision a case is the admission side of, when there is one.
#[derive(Clone, Copy, Debug)]
enum Sync {
    /// No sync decision corresponds.
    None,
    /// `up_sync(cluster, <the object as the cluster's Secret>, oldObject)`.
    Up(&'static str),
    /// `release(cluster, oldObject)`.
    Release(&'static str),
    /// `reclaim(oldObject)`: the control plane's way out.
    Reclaim,
}

/// One row of the agreement table.
struct Case {
    what: &'static str,
    namespace: &'static str,
    op: &'static str,
    user: Value,
    object: Value,
    old: Value,
    allowed: bool,
    rule: &'static str,
    sync: Sync,
}

fn user_named(name: &str) -> Value {
    json!({ "username": name, "groups": ["system:authenticated"] })
}

fn relay() -> Value {
    json!({ "username": RELAY, "groups": ["system:serviceaccounts"] })
}

const NAMESPACE_CONTROLLER: &str = "system:serviceaccount:kube-system:namespace-controller";
const GARBAGE_COLLECTOR: &str = "system:serviceaccount:kube-system:generic-garbage-collector";
const KCM: &str = "system:kube-controller-manager";

/// `v` with the field at `pointer` set (its parent must exist).
fn with(mut v: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent).unwrap()[key] = value;
    v
}

fn secret_of(v: &Value) -> Option<Secret> {
    (!v.is_null()).then(|| serde_json::from_value(v.clone()).unwrap())
}

/// The policy API's answer to a case, the way kube-apiserver composes the webhooks:
/// `mutate` on the whole decoded objects, apply the patch, `validate`; and that patch.
fn through_the_policy_api(policy: &Policy, case: &Case) -> ((bool, String), Value) {
    let relay = RelayIdentity::default();
    let object = secret_of(&case.object);
    let old = secret_of(&case.old);
    let user = UserInfo {
        username: case.user["username"].as_str().unwrap().to_owned(),
        groups: case.user["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_owned())
            .collect(),
    };
    let name = object
        .as_ref()
        .or(old.as_ref())
        .and_then(|s| s.metadata.name.clone())
        .unwrap_or_default();
    let operation = match case.op {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        _ => Operation::Delete,
    };
    let input = AdmissionInput {
        operation,
        namespace: case.namespace,
        name: &name,
        object: object.as_ref(),
        old_object: old.as_ref(),
        user: &user,
        dry_run: false,
    };
    let ops = mutate(policy, &relay, &Mode::ControlPlane, &input);
    let patched = object.as_ref().map(|o| {
        let mut doc = serde_json::to_value(o).unwrap();
        let patch: json_patch::Patch =
            serde_json::from_value(serde_json::to_value(&ops).unwrap()).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        serde_json::from_value::<Secret>(doc).unwrap()
    });
    let v = validate(
        policy,
        &relay,
        &Mode::ControlPlane,
        &AdmissionInput {
            object: patched.as_ref(),
            ..input
        },
    );
    (
        (v.decision.allowed, v.decision.rule.as_str().to_owned()),
        serde_json::to_value(&ops).unwrap(),
    )
}

/// The JSON patch of a `/mutate` answer (an empty list for none).
fn patch_of(mutated: &Value) -> Value {
    match mutated["response"]["patch"].as_str() {
        Some(patch) => serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(patch)
                .unwrap(),
        )
        .unwrap(),
        None => json!([]),
    }
}

/// The sync decision of a case, if it has one.
fn through_the_sync_decision(policy: &Policy, case: &Case) -> Option<(bool, String)> {
    let old = secret_of(&case.old);
    let decision = match case.sync {
        Sync::None => return None,
        Sync::Up(cluster) => {
            // The cluster's own Secret: the object in the agent namespace, opted in,
            // without what the webhook stamps.
            let mut local = case.object.clone();
            local["metadata"]["namespace"] = json!("akuity");
            let labels = local["metadata"]["labels"].as_object_mut().unwrap();
            labels.remove("secret-relay.io/owner");
            labels.insert("akuity.io/secret-sync".into(), json!("true"));
            up_sync(policy, cluster, &secret_of(&local).unwrap(), old.as_ref())
        }
        Sync::Release(cluster) => release(policy, cluster, old.as_ref().unwrap()).decision,
        Sync::Reclaim => reclaim(policy, old.as_ref().unwrap()).decision,
    };
    Some((decision.allowed, decision.rule.as_str().to_owned()))
}

/// Every case through the policy API, the HTTP endpoints and (where the write is one)
/// the sync decision `explain` and the relay use: the same allowed and the same rule
/// everywhere, allowed answers included.
#[tokio::test]
async fn the_policy_api_the_endpoints_and_the_sync_decisions_agree_on_every_case() {
    let state = state();
    let policy = parse_policy(POLICY).unwrap();
    let owned = |name: &str, owner: &str| {
        secret(
            name,
            json!({"secret-relay.io/owner": owner}),
            json!({"k": "dg=="}),
        )
    };
    let owned1 = owned("repo", "cluster.cluster1");
    let adopted1 = with(
        owned("argocd-notifications-secret", "cluster.cluster1"),
        "/metadata/annotations",
        json!({"secret-relay.io/adopted": "true"}),
    );
    let returned = with(adopted1.clone(), "/metadata/labels", json!({}));
    let returned = with(returned, "/metadata/annotations", json!({}));
    let adopted_not_adoptable = with(
        owned1.clone(),
        "/metadata/annotations",
        json!({"secret-relay.io/adopted": "true"}),
    );
    let cp_plain = secret("plain", json!({}), json!({}));
    let cp_adoptable = secret("application-set-secret", json!({}), json!({"a": "Yg=="}));
    let blocked_later = owned("vault-token", "cluster.cluster1");
    let invalid_owner = owned("repo", "cluster1");
    let orphan = owned("repo", "cluster.gone");
    let taken_over = with(orphan.clone(), "/metadata/labels", json!({}));
    let with_ref = with(
        owned1.clone(),
        "/metadata/ownerReferences",
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": "u-1"}]),
    );
    let with_finalizer = with(
        owned1.clone(),
        "/metadata/finalizers",
        json!(["example.com/keep"]),
    );
    let relabelled = with(
        with_finalizer.clone(),
        "/metadata/labels",
        json!({"secret-relay.io/owner": "cluster.cluster1", "x": "y"}),
    );
    let mut sa_token = secret("tok", json!({}), json!({}));
    sa_token["type"] = json!("kubernetes.io/service-account-token");
    let c1 = || cluster_user("cluster1");
    let case = |what, op, user, object: &Value, old: &Value, allowed, rule, sync| Case {
        what,
        namespace: "argocd",
        op,
        user,
        object: object.clone(),
        old: old.clone(),
        allowed,
        rule,
        sync,
    };
    let null = Value::Null;
    let new_repo = secret("new", json!({}), json!({}));
    let cases = vec![
        // A cluster's writes, and the up-sync decision they are.
        case(
            "cluster creates a new hub copy",
            "CREATE",
            c1(),
            &new_repo,
            &null,
            true,
            "up-sync-new",
            Sync::Up("cluster1"),
        ),
        case(
            "unknown cluster",
            "CREATE",
            cluster_user("ghost"),
            &new_repo,
            &null,
            false,
            "unknown-cluster",
            Sync::Up("ghost"),
        ),
        case(
            "cluster creates argocd-secret",
            "CREATE",
            c1(),
            &secret("argocd-secret", json!({}), json!({})),
            &null,
            false,
            "blocked-name",
            Sync::Up("cluster1"),
        ),
        case(
            "cluster creates argocd-initial-admin-secret",
            "CREATE",
            c1(),
            &secret("argocd-initial-admin-secret", json!({}), json!({})),
            &null,
            false,
            "blocked-name",
            Sync::Up("cluster1"),
        ),
        case(
            "cluster creates a service-account token",
            "CREATE",
            c1(),
            &sa_token,
            &null,
            false,
            "blocked-type",
            Sync::Up("cluster1"),
        ),
        case(
            "cluster creates an Argo CD cluster secret",
            "CREATE",
            c1(),
            &secret(
                "c",
                json!({"argocd.argoproj.io/secret-type": "cluster"}),
                json!({}),
            ),
            &null,
            false,
            "blocked-label",
            Sync::Up("cluster1"),
        ),
        case(
            "cluster makes its copy blocked by label",
            "UPDATE",
            c1(),
            &secret(
                "repo",
                json!({"argocd.argoproj.io/secret-type": "cluster"}),
                json!({}),
            ),
            &owned1,
            false,
            "blocked-label",
            Sync::Up("cluster1"),
        ),
        case(
            "cluster updates its copy that became blocked",
            "UPDATE",
            c1(),
            &blocked_later,
            &blocked_later,
            false,
            "blocked-name",
            Sync::Up("cluster1"),
        ),
        case(
            "cluster updates its own copy",
            "UPDATE",
            c1(),
            &owned1,
            &owned1,
            true,
            "up-sync-owner",
            Sync::Up("cluster1"),
        ),
        case(
            "cluster updates its adopted secret",
            "UPDATE",
            c1(),
            &adopted1,
            &adopted1,
            true,
            "up-sync-owner",
            Sync::Up("cluster1"),
        ),
        case(
            "other cluster updates it",
            "UPDATE",
            cluster_user("cluster2"),
            &owned1,
            &owned1,
            false,
            "owned-by-other-cluster",
            Sync::Up("cluster2"),
        ),
        case(
            "cluster takes a non-adoptable CP secret",
            "UPDATE",
            c1(),
            &cp_plain,
            &cp_plain,
            false,
            "owned-by-control-plane",
            Sync::Up("cluster1"),
        ),
        case(
            "cluster adopts an adoptable CP secret",
            "UPDATE",
            c1(),
            &cp_adoptable,
            &cp_adoptable,
            true,
            "adopt",
            Sync::Up("cluster1"),
        ),
        case(
            "cluster writes a copy whose owner label is the bare name",
            "UPDATE",
            c1(),
            &invalid_owner,
            &invalid_owner,
            false,
            "invalid-owner",
            Sync::Up("cluster1"),
        ),
        case(
            "cluster writes the copy of an unregistered cluster",
            "UPDATE",
            c1(),
            &orphan,
            &orphan,
            false,
            "owned-by-other-cluster",
            Sync::Up("cluster1"),
        ),
        // Release, as the cluster and as the relay's own account.
        case(
            "cluster deletes its own copy",
            "DELETE",
            c1(),
            &null,
            &owned1,
            true,
            "release-delete",
            Sync::Release("cluster1"),
        ),
        case(
            "relay deletes a cluster's copy",
            "DELETE",
            relay(),
            &null,
            &owned1,
            true,
            "release-delete",
            Sync::Release("cluster1"),
        ),
        case(
            "relay returns an adopted secret",
            "UPDATE",
            relay(),
            &returned,
            &adopted1,
            true,
            "release-return",
            Sync::Release("cluster1"),
        ),
        case(
            "cluster deletes its adopted secret",
            "DELETE",
            c1(),
            &null,
            &adopted1,
            false,
            "adopted-must-return",
            Sync::None,
        ),
        case(
            "relay deletes an adopted secret",
            "DELETE",
            relay(),
            &null,
            &adopted1,
            false,
            "adopted-must-return",
            Sync::None,
        ),
        case(
            "cluster deletes its copy marked adopted under a name that is not adoptable",
            "DELETE",
            c1(),
            &null,
            &adopted_not_adoptable,
            true,
            "release-delete",
            Sync::Release("cluster1"),
        ),
        case(
            "relay deletes that copy",
            "DELETE",
            relay(),
            &null,
            &adopted_not_adoptable,
            true,
            "release-delete",
            Sync::Release("cluster1"),
        ),
        case(
            "cluster deletes its copy that became blocked",
            "DELETE",
            c1(),
            &null,
            &blocked_later,
            true,
            "release-delete",
            Sync::Release("cluster1"),
        ),
        case(
            "relay deletes a copy that became blocked",
            "DELETE",
            relay(),
            &null,
            &blocked_later,
            true,
            "release-delete",
            Sync::Release("cluster1"),
        ),
        case(
            "other cluster deletes it",
            "DELETE",
            cluster_user("cluster2"),
            &null,
            &owned1,
            false,
            "release-not-owner",
            Sync::Release("cluster2"),
        ),
        case(
            "cluster deletes a control-plane secret",
            "DELETE",
            c1(),
            &null,
            &cp_plain,
            false,
            "release-not-owner",
            Sync::Release("cluster1"),
        ),
        case(
            "cluster deletes a copy whose owner label is the bare name",
            "DELETE",
            c1(),
            &null,
            &invalid_owner,
            false,
            "invalid-owner",
            Sync::Release("cluster1"),
        ),
        // People and tools, and the control plane's way out.
        case(
            "admin edits a cluster's copy",
            "UPDATE",
            admin(),
            &owned1,
            &owned1,
            false,
            "ownership-lock",
            Sync::Reclaim,
        ),
        case(
            "admin deletes a cluster's copy",
            "DELETE",
            admin(),
            &null,
            &owned1,
            false,
            "ownership-lock",
            Sync::Reclaim,
        ),
        case(
            "admin deletes a cluster's copy the policy no longer admits (it became blocked)",
            "DELETE",
            admin(),
            &null,
            &owned("vault-token", "cluster.cluster1"),
            true,
            "revoked",
            Sync::Reclaim,
        ),
        case(
            "admin deletes a managed secret",
            "DELETE",
            admin(),
            &null,
            &cp_plain,
            true,
            "control-plane-write",
            Sync::Reclaim,
        ),
        case(
            "admin edits a managed secret",
            "UPDATE",
            admin(),
            &cp_plain,
            &cp_plain,
            true,
            "control-plane-write",
            Sync::None,
        ),
        case(
            "cluster adds a finalizer to its copy",
            "UPDATE",
            c1(),
            &with_finalizer,
            &owned1,
            false,
            "uncarried-metadata",
            Sync::None,
        ),
        case(
            "cluster writes Argo CD's tracking label on a copy",
            "CREATE",
            c1(),
            &secret(
                "tracked",
                json!({"app.kubernetes.io/instance": "argocd"}),
                json!({}),
            ),
            &null,
            false,
            "uncarried-metadata",
            Sync::None,
        ),
        case(
            "cluster keeps a finalizer its copy had",
            "UPDATE",
            c1(),
            &with_finalizer,
            &with_finalizer,
            true,
            "up-sync-owner",
            Sync::None,
        ),
        case(
            "admin sets an owner label by hand",
            "CREATE",
            admin(),
            &owned("x", "cluster.cluster1"),
            &null,
            false,
            "owner-label-forged",
            Sync::None,
        ),
        case(
            "admin deletes the copy of an unregistered cluster",
            "DELETE",
            admin(),
            &null,
            &orphan,
            true,
            "orphaned-owner",
            Sync::Reclaim,
        ),
        case(
            "admin takes over the copy of an unregistered cluster",
            "UPDATE",
            admin(),
            &taken_over,
            &orphan,
            true,
            "orphaned-owner",
            Sync::Reclaim,
        ),
        case(
            "admin deletes a copy whose owner label is invalid",
            "DELETE",
            admin(),
            &null,
            &invalid_owner,
            true,
            "orphaned-owner",
            Sync::Reclaim,
        ),
        case(
            "admin edits a copy whose owner label is invalid, keeping it",
            "UPDATE",
            admin(),
            &invalid_owner,
            &invalid_owner,
            false,
            "invalid-owner",
            Sync::None,
        ),
        case(
            "relay edits a managed secret",
            "UPDATE",
            relay(),
            &cp_plain,
            &cp_plain,
            false,
            "ownership-lock",
            Sync::None,
        ),
        case(
            "break-glass user edits a cluster's copy",
            "UPDATE",
            user_named("oncall"),
            &owned1,
            &owned1,
            true,
            "break-glass",
            Sync::None,
        ),
        // Kubernetes' own cleanup, and nothing more.
        case(
            "namespace controller deletes a cluster's copy",
            "DELETE",
            user_named(NAMESPACE_CONTROLLER),
            &null,
            &owned1,
            true,
            "system-exempt",
            Sync::None,
        ),
        case(
            "garbage collector deletes a blocked copy",
            "DELETE",
            user_named(GARBAGE_COLLECTOR),
            &null,
            &blocked_later,
            true,
            "system-exempt",
            Sync::None,
        ),
        case(
            "kube-controller-manager as one identity deletes",
            "DELETE",
            user_named(KCM),
            &null,
            &owned1,
            true,
            "system-exempt",
            Sync::None,
        ),
        case(
            "garbage collector removes an owner reference",
            "UPDATE",
            user_named(GARBAGE_COLLECTOR),
            &owned1,
            &with_ref,
            true,
            "system-exempt",
            Sync::None,
        ),
        case(
            "kube-controller-manager removes a finalizer",
            "UPDATE",
            user_named(KCM),
            &owned1,
            &with_finalizer,
            true,
            "system-exempt",
            Sync::None,
        ),
        case(
            "garbage collector changes a cluster's copy's data",
            "UPDATE",
            user_named(GARBAGE_COLLECTOR),
            &with(owned1.clone(), "/data", json!({"k": "Zm9yZ2Vk"})),
            &owned1,
            false,
            "ownership-lock",
            Sync::None,
        ),
        case(
            "kube-controller-manager changes a label with a finalizer",
            "UPDATE",
            user_named(KCM),
            &relabelled,
            &with_finalizer,
            false,
            "ownership-lock",
            Sync::None,
        ),
        case(
            "namespace controller creates a forged owner label",
            "CREATE",
            user_named(NAMESPACE_CONTROLLER),
            &owned("x", "cluster.cluster1"),
            &null,
            false,
            "owner-label-forged",
            Sync::None,
        ),
        // Missing input locks, whoever sends it; cleanup's delete still passes.
        case(
            "admin updates without oldObject",
            "UPDATE",
            admin(),
            &cp_plain,
            &null,
            false,
            "missing-object",
            Sync::None,
        ),
        case(
            "cluster updates without oldObject",
            "UPDATE",
            c1(),
            &owned1,
            &null,
            false,
            "missing-object",
            Sync::None,
        ),
        case(
            "break-glass deletes without oldObject",
            "DELETE",
            user_named("oncall"),
            &null,
            &null,
            false,
            "missing-object",
            Sync::None,
        ),
        case(
            "relay deletes without oldObject",
            "DELETE",
            relay(),
            &null,
            &null,
            false,
            "missing-object",
            Sync::None,
        ),
        case(
            "namespace controller deletes without oldObject",
            "DELETE",
            user_named(NAMESPACE_CONTROLLER),
            &null,
            &null,
            true,
            "system-exempt",
            Sync::None,
        ),
    ];
    let elsewhere = |mut c: Case| {
        c.namespace = "default";
        c.object["metadata"]["namespace"] = json!("default");
        c
    };
    let mut cases = cases;
    cases.push(elsewhere(case(
        "admin forges an owner label outside the namespace",
        "CREATE",
        admin(),
        &owned1,
        &null,
        true,
        "out-of-scope",
        Sync::None,
    )));
    cases.push(elsewhere(case(
        "cluster writes outside the namespace",
        "CREATE",
        c1(),
        &new_repo,
        &null,
        false,
        "wrong-namespace",
        Sync::None,
    )));

    let mut failures = Vec::new();
    for c in &cases {
        let mut r = review(c.op, c.user.clone(), c.object.clone(), c.old.clone());
        r["request"]["namespace"] = json!(c.namespace);
        let (_, out) = admit(&state, &r).await;
        let endpoint = (
            out["response"]["allowed"].as_bool().unwrap(),
            out["response"]["auditAnnotations"]["rule"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
        let want = (c.allowed, c.rule.to_owned());
        if endpoint != want {
            failures.push(format!(
                "{}: endpoint {endpoint:?}, want {want:?}: {out}",
                c.what
            ));
        }
        if !c.allowed {
            let message = out["response"]["status"]["message"].as_str().unwrap_or("");
            if !message.ends_with(&format!("(rule {})", c.rule)) {
                failures.push(format!("{}: message {message:?}", c.what));
            }
        }
        let (api, api_patch) = through_the_policy_api(&policy, c);
        if api != want {
            failures.push(format!("{}: policy API {api:?}, want {want:?}", c.what));
        }
        // `/mutate` decodes only what `mutate` reads: its patch is the one `mutate`
        // builds from the whole objects.
        let endpoint_patch = patch_of(&call(&state, "/mutate", &r).await);
        if endpoint_patch != api_patch {
            failures.push(format!(
                "{}: /mutate patched {endpoint_patch}, the policy API {api_patch}",
                c.what
            ));
        }
        if let Some(sync) = through_the_sync_decision(&policy, c)
            && sync != want
        {
            failures.push(format!("{}: {:?} {sync:?}, want {want:?}", c.what, c.sync));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Every rule the control plane decides by is in the table.
    let seen: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.rule).collect();
    for rule in Rule::ALL {
        let managed_only = matches!(
            rule,
            Rule::DownCopyAgent
                | Rule::DownSyncConflict
                | Rule::DownCopyOptIn
                | Rule::DeletionConfirmed
        );
        let sync_only = matches!(
            rule,
            Rule::WrongNamespace
                | Rule::NotOptedIn
                | Rule::NoMatchingSource
                | Rule::DownSync
                | Rule::DownSyncNotTarget
                | Rule::NoTargets
                | Rule::InvalidSelector
                | Rule::OrphanedCopy
                | Rule::NotApplicable
        );
        // The relay's answer to a create of a name outside the cluster's view, and to
        // a cluster at its quota: the relay alone sees views and counts copies
        // (proxy/src/write.rs, tests/attacks.rs).
        let relay_only = matches!(rule, Rule::NameTaken | Rule::ClusterQuota);
        assert!(
            managed_only || sync_only || relay_only || seen.contains(rule.as_str()),
            "no case for {rule}"
        );
    }
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
    state
        .policy_state()
        .offer_policy("test", "1", parse_policy(POLICY));
    let mut down = secret(
        "repo",
        json!({"secret-relay.io/owner": "control-plane"}),
        json!({}),
    );
    down["metadata"]["namespace"] = json!("akuity");
    // A down copy never carries the opt-in label.
    down["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("akuity.io/secret-sync");
    let mut r = review("UPDATE", admin(), down.clone(), down.clone());
    r["request"]["namespace"] = json!("akuity");
    let (_, out) = admit(&state, &r).await;
    assert_decision(&out, false, "ownership-lock");
    r["request"]["userInfo"] = json!({"username": agent, "groups": []});
    let (_, out) = admit(&state, &r).await;
    assert_decision(&out, true, "down-copy-agent");
    assert_eq!(out["response"]["auditAnnotations"]["identity"], "agent");
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
    bench
        .policy_state()
        .offer_policy("test", "1", parse_policy(POLICY));
    let (code, out) = post(&bench, "/baseline", "application/json", body).await;
    assert_eq!(code, StatusCode::OK);
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["response"]["allowed"], true);
    // The fixed answer names no rule: no admission work was done.
    assert!(out["response"].get("auditAnnotations").is_none(), "{out}");
}

#[tokio::test]
async fn kubernetes_cleanup_passes_before_a_policy_loads_and_nothing_else_does() {
    let state = AppState::new(RelayIdentity::default(), Mode::ControlPlane);
    assert!(!state.policy_state().is_ready());
    let owned1 = secret(
        "repo",
        json!({"secret-relay.io/owner": "cluster.cluster1"}),
        json!({"k": "dg=="}),
    );
    let with_ref = with(
        owned1.clone(),
        "/metadata/ownerReferences",
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": "u-1"}]),
    );
    let with_finalizer = with(owned1.clone(), "/metadata/finalizers", json!(["f"]));
    let changed = with(owned1.clone(), "/data", json!({"k": "eA=="}));
    // (what, operation, user, object, oldObject, answered)
    let cases = [
        (
            "namespace deletion",
            "DELETE",
            NAMESPACE_CONTROLLER,
            Value::Null,
            owned1.clone(),
            true,
        ),
        (
            "garbage collection",
            "DELETE",
            GARBAGE_COLLECTOR,
            Value::Null,
            owned1.clone(),
            true,
        ),
        (
            "kube-controller-manager as one identity",
            "DELETE",
            KCM,
            Value::Null,
            owned1.clone(),
            true,
        ),
        (
            "a delete without oldObject",
            "DELETE",
            NAMESPACE_CONTROLLER,
            Value::Null,
            Value::Null,
            true,
        ),
        (
            "an owner reference removed",
            "UPDATE",
            GARBAGE_COLLECTOR,
            owned1.clone(),
            with_ref.clone(),
            true,
        ),
        (
            "a finalizer removed",
            "UPDATE",
            KCM,
            owned1.clone(),
            with_finalizer.clone(),
            true,
        ),
        (
            "data changed by a system identity",
            "UPDATE",
            GARBAGE_COLLECTOR,
            changed.clone(),
            owned1.clone(),
            false,
        ),
        (
            "a create by a system identity",
            "CREATE",
            KCM,
            owned1.clone(),
            Value::Null,
            false,
        ),
        (
            "an admin's delete",
            "DELETE",
            "kubernetes-admin",
            Value::Null,
            owned1.clone(),
            false,
        ),
    ];
    for (what, op, user, object, old, answered) in cases {
        let r = review(op, user_named(user), object, old);
        for path in ["/validate", "/mutate"] {
            let (code, body) = post(
                &state,
                path,
                "application/json",
                serde_json::to_vec(&r).unwrap(),
            )
            .await;
            // (The mutating webhook is registered for CREATE and UPDATE only; a DELETE
            // sent to /mutate anyway gets the same answer, without a patch.)
            if !answered {
                assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{what} {path}");
                continue;
            }
            assert_eq!(
                code,
                StatusCode::OK,
                "{what} {path}: {}",
                String::from_utf8_lossy(&body)
            );
            let out: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(out["response"]["uid"], r["request"]["uid"]);
            assert!(
                out["response"].get("patch").is_none(),
                "{what} {path}: {out}"
            );
            if path == "/validate" {
                assert_decision(&out, true, "system-exempt");
                assert_eq!(
                    out["response"]["auditAnnotations"]["identity"],
                    format!("kubernetes-system:{user}")
                );
            }
        }
    }
    // Other kinds pass untouched before a policy loads, as after.
    let mut r = review(
        "CREATE",
        admin(),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        Value::Null,
    );
    r["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    assert_decision(&call(&state, "/validate", &r).await, true, "not-a-secret");
}

#[tokio::test]
async fn the_policys_namespace_is_guarded_and_others_are_out_of_scope_without_a_patch() {
    let state = AppState::new(RelayIdentity::default(), Mode::ControlPlane);
    state.policy_state().offer_policy(
        "test",
        "1",
        parse_policy(&POLICY.replace(
            "controlPlaneNamespace: argocd",
            "controlPlaneNamespace: hub",
        )),
    );
    assert!(state.policy_state().is_ready());
    let forged = |ns: &str| {
        let mut s = secret(
            "repo",
            json!({"secret-relay.io/owner": "cluster.cluster1"}),
            json!({}),
        );
        s["metadata"]["namespace"] = json!(ns);
        s
    };
    // argocd is an ordinary namespace now: out of scope, nothing stamped.
    let mut r = review("CREATE", admin(), forged("argocd"), Value::Null);
    r["request"]["namespace"] = json!("argocd");
    assert!(
        call(&state, "/mutate", &r).await["response"]
            .get("patch")
            .is_none()
    );
    assert_decision(&call(&state, "/validate", &r).await, true, "out-of-scope");
    // Out of scope is decided without decoding the objects: a body that is no Secret
    // is not even read.
    r["request"]["object"]["data"] = json!("not-a-map");
    assert_decision(&call(&state, "/validate", &r).await, true, "out-of-scope");
    let mut c = review(
        "CREATE",
        cluster_user("cluster1"),
        forged("argocd"),
        Value::Null,
    );
    c["request"]["namespace"] = json!("argocd");
    assert!(
        call(&state, "/mutate", &c).await["response"]
            .get("patch")
            .is_none()
    );
    assert_decision(
        &call(&state, "/validate", &c).await,
        false,
        "wrong-namespace",
    );
    // hub is guarded.
    let mut r = review("CREATE", admin(), forged("hub"), Value::Null);
    r["request"]["namespace"] = json!("hub");
    assert_decision(
        &call(&state, "/validate", &r).await,
        false,
        "owner-label-forged",
    );
    let mut c = review(
        "CREATE",
        cluster_user("cluster1"),
        secret("repo", json!({}), json!({})),
        Value::Null,
    );
    c["request"]["namespace"] = json!("hub");
    c["request"]["object"]["metadata"]["namespace"] = json!("hub");
    let (object, out) = admit(&state, &c).await;
    assert_decision(&out, true, "up-sync-new");
    assert_eq!(
        object["metadata"]["labels"]["secret-relay.io/owner"],
        "cluster.cluster1"
    );
}

#[tokio::test]
async fn down_sync_annotation_problems_come_back_as_warnings() {
    let state = state();
    let annotated = |annotations: Value| {
        with(
            secret("shared", json!({}), json!({})),
            "/metadata/annotations",
            annotations,
        )
    };
    let cases = [
        (
            json!({"akuity.io/managed-secret-allowed-clusters": "cluster2", "akuity.io/managed-secret-allowed-cluster-selector": "env in (prod"}),
            "does not parse",
        ),
        (
            json!({"akuity.io/managed-secret-allowed-cluster-selector": " "}),
            "allowed-cluster-selector is blank",
        ),
        (
            json!({"akuity.io/managed-secret-allowed-clusters": ""}),
            "allowed-clusters is blank",
        ),
        (
            json!({"akuity.io/managed-secret-allowed-clusters": "cluster1, clsuter2"}),
            "down-sync: the annotation akuity.io/managed-secret-allowed-clusters names clsuter2 (did you mean cluster2?), which is not a registered cluster",
        ),
    ];
    for (annotations, needle) in cases {
        let r = review("CREATE", admin(), annotated(annotations), Value::Null);
        let out = call(&state, "/validate", &r).await;
        assert_decision(&out, true, "control-plane-write");
        let warnings = out["response"]["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{out}");
        assert!(
            warnings[0].as_str().unwrap().contains(needle),
            "{needle}: {out}"
        );
    }
    for list in ["ALL", "cluster1, cluster2"] {
        let r = review(
            "CREATE",
            admin(),
            annotated(json!({"akuity.io/managed-secret-allowed-clusters": list})),
            Value::Null,
        );
        assert!(
            call(&state, "/validate", &r).await["response"]
                .get("warnings")
                .is_none(),
            "{list}"
        );
    }
}

/// The webhook configurations select only the namespace they guard (the policy's
/// default namespaces, which the code decides by too) and spare the API server the
/// calls for Kubernetes' cleanup deletes, with exactly the identities the code exempts.
#[test]
fn the_webhook_configurations_select_their_namespace_and_skip_kubernetes_cleanup_deletes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let defaults = Policy::default();
    for (base, guarded) in [
        ("control-plane", defaults.control_plane_namespace()),
        ("managed-cluster", defaults.agent_namespace()),
    ] {
        let text =
            std::fs::read_to_string(root.join(format!("manifests/{base}/webhooks.yaml"))).unwrap();
        let mut hooks = 0;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc: Value = serde_yaml::with::singleton_map_recursive::deserialize(doc).unwrap();
            let kind = doc["kind"].as_str().unwrap();
            for hook in doc["webhooks"].as_array().unwrap() {
                hooks += 1;
                let exprs = hook["namespaceSelector"]["matchExpressions"]
                    .as_array()
                    .unwrap();
                assert_eq!(
                    exprs,
                    &vec![json!({
                        "key": "kubernetes.io/metadata.name",
                        "operator": "In",
                        "values": [guarded],
                    })],
                    "{base} {kind}"
                );
                let conditions = hook["matchConditions"].as_array().unwrap();
                // The hub's mutating webhook is not called for the clusters' writes:
                // the relay stamps them (the validating webhook checks the stamps).
                let relayed = base == "control-plane" && kind == "MutatingWebhookConfiguration";
                assert_eq!(
                    conditions.len(),
                    if relayed { 2 } else { 1 },
                    "{base} {kind}"
                );
                if relayed {
                    assert_eq!(
                        conditions[1]["expression"].as_str().unwrap().trim(),
                        format!(
                            "!('{}' in request.userInfo.groups)",
                            secret_relay_policy::keys::RELAY_STAMPED_GROUP
                        )
                    );
                }
                let expression = conditions[0]["expression"].as_str().unwrap();
                // The CEL lists the exempt identities as single-quoted strings.
                let named: std::collections::BTreeSet<&str> =
                    expression.split('\'').skip(1).step_by(2).collect();
                let mut want: std::collections::BTreeSet<&str> =
                    secret_relay_policy::keys::KUBERNETES_SYSTEM_USERS
                        .into_iter()
                        .collect();
                want.insert("DELETE");
                assert_eq!(named, want, "{base} {kind}: {expression}");
                let compact: String = expression.split_whitespace().collect();
                assert!(
                    compact
                        .starts_with("!(request.operation=='DELETE'&&request.userInfo.usernamein["),
                    "{expression}"
                );
            }
        }
        assert_eq!(hooks, 2, "{base}");
    }
}

/// Anybody who reaches the webhook's port may send any operation for a kind it
/// passes through: counted as `invalid`, one series, never the string sent (a label
/// value from a request would grow the metrics without bound, or forge lines).
#[tokio::test]
async fn an_operation_from_a_request_never_becomes_a_metric_label() {
    let state = state();
    for i in 0..50 {
        let mut r = review(
            &format!("FORGED{i}\"}} 1\n# EOF\n"),
            cluster_user("cluster1"),
            json!({"metadata": {"name": "cm"}}),
            Value::Null,
        );
        r["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
        let _ = post(
            &state,
            "/validate",
            "application/json",
            r.to_string().into_bytes(),
        )
        .await;
    }
    let text = metrics_text(&state).await;
    assert!(!text.contains("FORGED"), "{text}");
    let series = text
        .lines()
        .filter(|l| l.starts_with("secret_relay_webhook_requests_total{"))
        .count();
    assert_eq!(series, 1, "{text}");
    assert!(
        text.contains("operation=\"invalid\",decision=\"allowed\"} 50"),
        "{text}"
    );
}

/// Review bodies in flight are bounded: held bodies (declared large, never sent) take
/// their share, a small review still passes, and one more large one is refused at
/// once (a 503, never queued) instead of growing the webhook's memory.
#[tokio::test]
async fn review_bodies_in_flight_are_bounded_and_a_small_review_still_passes() {
    let state = state();
    let stalled = || {
        let body = Stalled;
        Request::post("/validate")
            .header("content-type", "application/json")
            .header("content-length", MAX_BODY_BYTES.to_string())
            .body(body)
            .unwrap()
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        let state = state.clone();
        let req = stalled();
        held.push(tokio::spawn(async move { handle(&state, req).await }));
    }
    // Each runs until it waits for its body, its share taken (one thread here).
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    // A small review still passes.
    let r = review(
        "CREATE",
        cluster_user("cluster1"),
        secret("repo", json!({}), json!({})),
        Value::Null,
    );
    let (_, out) = admit(&state, &r).await;
    assert_decision(&out, true, "up-sync-new");
    let fifth = tokio::time::timeout(Duration::from_secs(5), handle(&state, stalled()))
        .await
        .expect("refused at once, not queued");
    assert_eq!(fifth.status(), StatusCode::SERVICE_UNAVAILABLE);
    for h in held {
        h.abort();
    }
}

/// A body that never comes.
struct Stalled;

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Pending
    }
}
