//! Replays the AdmissionReview bodies in `tests/fixtures/admission/` (shaped as
//! kube-apiserver sends them) through the webhook's HTTP handler and checks each answer
//! against the fixture's `expect`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use secret_relay_policy::{Mode, RelayIdentity};
use secret_relay_webhook::{AppState, handle, parse_policy};
use serde_json::Value;

const AGENT: &str = "system:serviceaccount:akuity:secret-relay-agent";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/admission")
}

/// The webhook in `mode`, with the fixtures' policy loaded unless `policy_loaded` is
/// false (a webhook that has not loaded a valid policy yet).
fn state(mode: &str, policy_loaded: bool) -> AppState {
    let mode = match mode {
        "control-plane" => Mode::ControlPlane,
        "managed-cluster" => Mode::ManagedCluster {
            agent: AGENT.to_owned(),
        },
        other => panic!("unknown fixture mode {other:?}"),
    };
    let state = AppState::new(RelayIdentity::default(), mode);
    if policy_loaded {
        let policy = std::fs::read_to_string(fixtures_dir().join("policy.yaml")).unwrap();
        state
            .policy_state()
            .offer_policy("fixtures", "1", parse_policy(&policy));
        assert!(
            state.policy_state().is_ready(),
            "{:?}",
            state.policy_state().last_error()
        );
    }
    state
}

fn fixture_state(fixture: &Value) -> AppState {
    state(
        fixture["mode"].as_str().unwrap(),
        fixture["policyLoaded"].as_bool().unwrap_or(true),
    )
}

async fn post(state: &AppState, path: &str, review: &Value) -> Value {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(review).unwrap())))
        .unwrap();
    let resp = handle(state, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

fn decoded_patch(response: &Value) -> Option<json_patch::Patch> {
    let patch = response["patch"].as_str()?;
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// Checks one fixture; returns a description of every mismatch.
async fn replay(file: &Path) -> Vec<String> {
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let state = fixture_state(&fixture);
    let path = fixture["path"].as_str().unwrap();
    let expect = &fixture["expect"];
    let review = &fixture["review"];
    let out = post(&state, path, review).await;
    let response = &out["response"];
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    check(
        out["apiVersion"] == review["apiVersion"] && out["kind"] == review["kind"],
        "envelope not echoed".to_owned(),
    );
    check(
        response["uid"] == review["request"]["uid"],
        "uid not echoed".to_owned(),
    );
    check(
        response["allowed"] == expect["allowed"],
        format!("allowed {} != {}", response["allowed"], expect["allowed"]),
    );
    let message = response["status"]["message"].as_str().unwrap_or("");
    // Every validating answer names its rule, allowed ones included; a denial also
    // ends its message with it.
    if path.starts_with("/validate") {
        match expect["rule"].as_str() {
            None => check(
                false,
                "a /validate fixture must say which rule decides (expect.rule)".to_owned(),
            ),
            Some(rule) => {
                check(
                    response["auditAnnotations"]["rule"] == rule,
                    format!(
                        "audit annotation rule = {} != {rule}",
                        response["auditAnnotations"]["rule"]
                    ),
                );
                if expect["allowed"] == false {
                    check(
                        message.ends_with(&format!("(rule {rule})")),
                        format!("rule {rule} not named in {message:?}"),
                    );
                }
            }
        }
    }
    let warnings: Vec<&str> = response["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w.as_str().unwrap())
        .collect();
    for needle in expect["warningsContain"].as_array().into_iter().flatten() {
        let needle = needle.as_str().unwrap();
        check(
            warnings.iter().any(|w| w.contains(needle)),
            format!("no warning contains {needle:?}: {warnings:?}"),
        );
    }
    if expect.get("warningsContain").is_none() {
        check(
            warnings.is_empty(),
            format!("unexpected warnings {warnings:?}"),
        );
    }
    for needle in expect["messageContains"].as_array().into_iter().flatten() {
        let needle = needle.as_str().unwrap();
        check(
            message.contains(needle),
            format!("{needle:?} missing from {message:?}"),
        );
    }
    for (key, value) in expect["auditAnnotations"].as_object().into_iter().flatten() {
        check(
            &response["auditAnnotations"][key] == value,
            format!(
                "audit annotation {key} = {}",
                response["auditAnnotations"][key]
            ),
        );
    }
    if path.starts_with("/validate") {
        check(
            response.get("patch").is_none(),
            "a validating answer carries a patch".to_owned(),
        );
    }
    let patch = decoded_patch(response);
    if expect["noPatch"] == true {
        check(patch.is_none(), "unexpected patch".to_owned());
    }
    let wants_patch = ["patched", "patchedPrefix", "absent"]
        .iter()
        .any(|k| expect.get(k).is_some());
    if path.starts_with("/mutate") {
        check(
            wants_patch != (expect["noPatch"] == true),
            "a /mutate fixture must expect either noPatch or patched/patchedPrefix/absent"
                .to_owned(),
        );
    }
    if wants_patch {
        let Some(patch) = patch else {
            problems.push("expected a patch".to_owned());
            return problems;
        };
        let mut patched_review = review.clone();
        json_patch::patch(&mut patched_review["request"]["object"], &patch).unwrap();
        let object = &patched_review["request"]["object"];
        for (pointer, value) in expect["patched"].as_object().into_iter().flatten() {
            check(
                object.pointer(pointer) == Some(value),
                format!("{pointer} = {:?} after the patch", object.pointer(pointer)),
            );
        }
        for (pointer, prefix) in expect["patchedPrefix"].as_object().into_iter().flatten() {
            let got = object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            check(
                got.starts_with(prefix.as_str().unwrap()),
                format!("{pointer} = {got:?} after the patch"),
            );
        }
        for pointer in expect["absent"].as_array().into_iter().flatten() {
            let pointer = pointer.as_str().unwrap();
            check(
                object.pointer(pointer).is_none(),
                format!(
                    "{pointer} = {:?} after the patch, expected absent",
                    object.pointer(pointer)
                ),
            );
        }
        // Idempotent: the patched object gets no further patch.
        let again = post(&state, path, &patched_review).await;
        check(
            decoded_patch(&again["response"]).is_none(),
            "mutating the patched object patched again".to_owned(),
        );
    }
    problems
}

#[tokio::test]
async fn every_fixture_gets_the_expected_answer() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 25, "fixtures missing: {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        for problem in replay(file).await {
            failures.push(format!(
                "{}: {problem}",
                file.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn fixture_secret_values_never_reach_an_answer() {
    // The fixtures' data carries this password (base64); no answer may repeat it.
    let needle = base64::engine::general_purpose::STANDARD.encode("hunter2-not-in-logs");
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let state = fixture_state(&fixture);
        let out = post(
            &state,
            fixture["path"].as_str().unwrap(),
            &fixture["review"],
        )
        .await;
        let text = out.to_string();
        assert!(!text.contains(&needle), "{}: {text}", file.display());
        assert!(!text.contains("hunter2"), "{}: {text}", file.display());
    }
}
