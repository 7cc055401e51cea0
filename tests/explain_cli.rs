//! `secret-relay explain` run as a user runs it: the built binary, fixture
//! manifests, stdout JSON, one stderr line and the exit code.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", self.stdout))
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/explain")
        .join(name)
}

fn explain(args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_secret-relay"));
    cmd.arg("explain");
    for a in args {
        if let Some(file) = a.strip_prefix('@') {
            cmd.arg(fixture(file));
        } else {
            cmd.arg(a);
        }
    }
    for var in ["POLICY", "SECRET", "DIRECTION", "CLUSTER", "HUB"] {
        cmd.env_remove(format!("SECRET_RELAY_EXPLAIN_{var}"));
    }
    let out = cmd.output().expect("failed to run secret-relay");
    let run = Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    };
    assert!(
        !run.stdout.contains("s3cr3t") && !run.stderr.contains("s3cr3t"),
        "a Secret value leaked: {} {}",
        run.stdout,
        run.stderr
    );
    run
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

/// Exactly one JSON object on stdout and one line on stderr.
fn assert_answer(run: &Run, code: i32, allowed: bool, rule: &str) -> Value {
    assert_eq!(
        run.code, code,
        "stdout: {} stderr: {}",
        run.stdout, run.stderr
    );
    assert_eq!(run.stdout.trim().lines().count(), 1, "{}", run.stdout);
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v["allowed"], allowed);
    assert_eq!(v["rule"], rule);
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()));
    let verdict = if allowed { "allowed" } else { "denied" };
    assert!(
        run.stderr.starts_with(&format!("{verdict} ({rule}): ")),
        "{}",
        run.stderr
    );
    v
}

#[test]
fn up_sync_of_a_new_secret_is_allowed() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster1",
    ]);
    let v = assert_answer(&run, 0, true, "up-sync-new");
    assert_eq!(keys(&v), ["allowed", "reason", "rule"]);
    assert!(v["reason"].as_str().unwrap().contains("secretSources[0]"));
}

#[test]
fn up_sync_over_another_clusters_copy_is_denied_with_how_to_fix() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster1",
        "--hub",
        "@hub-repo-cluster2.yaml",
    ]);
    let v = assert_answer(&run, 1, false, "owned-by-other-cluster");
    let reason = v["reason"].as_str().unwrap();
    // The reason reaches cluster1 too: it names no other cluster.
    assert!(reason.contains("owned by another cluster"), "{reason}");
    assert!(!reason.contains("cluster2"), "{reason}");
    assert!(reason.contains("rename"), "{reason}");
}

#[test]
fn up_sync_of_the_clusters_own_copy_is_allowed() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster1",
        "--hub",
        "@hub-repo-cluster1.yaml",
    ]);
    assert_answer(&run, 0, true, "up-sync-owner");
}

#[test]
fn json_manifests_with_string_data_and_no_namespace_are_read() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo-creds.json",
        "--direction",
        "up",
        "--cluster",
        "cluster3",
    ]);
    assert_answer(&run, 0, true, "up-sync-new");
}

#[test]
fn up_sync_without_a_matching_source_says_which_labels_to_match() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo-no-team.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster1",
    ]);
    let v = assert_answer(&run, 1, false, "no-matching-source");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("env=prod,my-label=cluster1")
    );
}

#[test]
fn blocked_and_unknown_are_denied() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@sa-token.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster1",
    ]);
    assert_answer(&run, 1, false, "blocked-type");
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster9",
    ]);
    assert_answer(&run, 1, false, "unknown-cluster");
}

#[test]
fn down_sync_lists_the_targets_without_the_owner() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@managed.yaml",
        "--direction",
        "down",
    ]);
    let v = assert_answer(&run, 0, true, "down-sync");
    assert_eq!(keys(&v), ["allowed", "reason", "rule", "targets"]);
    assert_eq!(v["targets"], json!(["cluster2", "cluster3"]));
}

#[test]
fn down_sync_to_one_cluster_is_allowed_only_for_a_target() {
    let args = |c: &'static str| {
        [
            "--policy",
            "@policy.yaml",
            "--secret",
            "@managed.yaml",
            "--direction",
            "down",
            "--cluster",
            c,
        ]
    };
    let v = assert_answer(&explain(&args("cluster2")), 0, true, "down-sync");
    assert_eq!(v["targets"], json!(["cluster2", "cluster3"]));
    let v = assert_answer(
        &explain(&args("cluster1")),
        1,
        false,
        "down-sync-not-target",
    );
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("never goes back to its owner")
    );
    assert_eq!(v["targets"], json!(["cluster2", "cluster3"]));
}

#[test]
fn an_unparsable_selector_does_not_cancel_the_list_and_is_named_in_the_reason() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@bad-selector.yaml",
        "--direction",
        "down",
    ]);
    let v = assert_answer(&run, 0, true, "down-sync");
    assert_eq!(v["targets"], json!(["cluster1", "cluster2", "cluster3"]));
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("does not parse"), "{reason}");
    assert!(
        reason.contains("akuity.io/managed-secret-allowed-cluster-selector"),
        "{reason}"
    );
}

#[test]
fn down_sync_with_only_an_unparsable_selector_has_no_targets() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@only-bad-selector.yaml",
        "--direction",
        "down",
    ]);
    let v = assert_answer(&run, 1, false, "invalid-selector");
    assert_eq!(v["targets"], json!([]));
    assert!(v["reason"].as_str().unwrap().contains("does not parse"));
}

#[test]
fn a_blank_selector_is_reported_as_blank_not_as_absent() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@blank-selector.yaml",
        "--direction",
        "down",
    ]);
    let v = assert_answer(&run, 1, false, "no-targets");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("allowed-cluster-selector is blank"),
        "{reason}"
    );
    assert!(!reason.contains("neither"), "{reason}");
}

#[test]
fn an_unregistered_name_in_allowed_clusters_is_named_with_the_nearest_registered_one() {
    let typo = "the annotation akuity.io/managed-secret-allowed-clusters names clsuter2 (did you mean cluster2?), which is not a registered cluster, so nothing goes there: fix the name or register the cluster";
    // The registered name still gets its copy; the typo is the reason's "but".
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@typo-clusters.yaml",
        "--direction",
        "down",
    ]);
    let v = assert_answer(&run, 0, true, "down-sync");
    assert_eq!(v["targets"], json!(["cluster1"]));
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("; but {typo}")), "{reason}");
    assert!(run.stderr.contains(typo), "{}", run.stderr);

    // Asking about the cluster the typo meant says why it gets nothing.
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@typo-clusters.yaml",
        "--direction",
        "down",
        "--cluster",
        "cluster2",
    ]);
    let v = assert_answer(&run, 1, false, "down-sync-not-target");
    assert!(v["reason"].as_str().unwrap().contains(typo), "{v}");

    // Only the typo: no target, under the same rule as before.
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@only-typo-clusters.yaml",
        "--direction",
        "down",
    ]);
    let v = assert_answer(&run, 1, false, "no-targets");
    assert_eq!(v["targets"], json!([]));
    assert!(v["reason"].as_str().unwrap().contains(typo), "{v}");
}

#[test]
fn registered_names_and_all_have_no_typo_reason() {
    for fixture in ["@managed.yaml", "@bad-selector.yaml"] {
        let run = explain(&[
            "--policy",
            "@policy.yaml",
            "--secret",
            fixture,
            "--direction",
            "down",
        ]);
        assert!(
            !run.stdout.contains("not a registered cluster"),
            "{fixture}: {}",
            run.stdout
        );
    }
}

#[test]
fn release_of_an_adopted_secret_returns_it() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@hub-adopted.yaml",
        "--direction",
        "release",
        "--cluster",
        "cluster1",
    ]);
    let v = assert_answer(&run, 0, true, "release-return");
    assert_eq!(keys(&v), ["action", "allowed", "reason", "rule"]);
    assert_eq!(v["action"], "return-to-control-plane");
}

#[test]
fn release_of_a_created_copy_deletes_it_and_of_anothers_is_refused() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo.yaml",
        "--hub",
        "@hub-repo-cluster1.yaml",
        "--direction",
        "release",
        "--cluster",
        "cluster1",
    ]);
    let v = assert_answer(&run, 0, true, "release-delete");
    assert_eq!(v["action"], "delete");
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@hub-repo-cluster2.yaml",
        "--direction",
        "release",
        "--cluster",
        "cluster1",
    ]);
    let v = assert_answer(&run, 1, false, "release-not-owner");
    assert_eq!(keys(&v), ["allowed", "reason", "rule"]);
}

#[test]
fn a_copy_that_became_blocked_is_still_released_by_its_cluster() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@hub-vault-token-cluster1.yaml",
        "--direction",
        "release",
        "--cluster",
        "cluster1",
    ]);
    let v = assert_answer(&run, 0, true, "release-delete");
    assert_eq!(v["action"], "delete");
    // The cluster can no longer sync it up.
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@hub-vault-token-cluster1.yaml",
        "--direction",
        "down",
    ]);
    assert_answer(&run, 1, false, "blocked-name");
}

#[test]
fn release_without_a_cluster_shows_the_control_planes_way_out() {
    let release = |file: &'static str| {
        explain(&[
            "--policy",
            "@policy.yaml",
            "--secret",
            file,
            "--direction",
            "release",
        ])
    };
    // A copy of a cluster removed from the policy is orphaned: the control plane may
    // delete it or take it over.
    let v = assert_answer(
        &release("@hub-repo-removed-cluster.yaml"),
        0,
        true,
        "orphaned-owner",
    );
    assert_eq!(v["action"], "delete");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("cluster9"), "{reason}");
    assert!(reason.contains("take it over"), "{reason}");
    // So is one whose owner label is invalid.
    let v = assert_answer(
        &release("@hub-repo-bare-owner.yaml"),
        0,
        true,
        "orphaned-owner",
    );
    assert_eq!(v["action"], "delete");
    // A copy of a registered cluster stays locked to it.
    let v = assert_answer(
        &release("@hub-repo-cluster1.yaml"),
        1,
        false,
        "ownership-lock",
    );
    assert_eq!(keys(&v), ["allowed", "reason", "rule"]);
    // One the policy no longer admits (no Secret Source matches team=another-team) is
    // revoked: the relay releases it after its grace, and the control plane may
    // delete it now.
    let v = assert_answer(&release("@hub-repo-revoked.yaml"), 0, true, "revoked");
    assert_eq!(v["action"], "delete");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("no-matching-source"), "{reason}");
    assert!(reason.contains("may delete it now"), "{reason}");
    // The control plane's own secret needs no way out.
    let v = assert_answer(&release("@managed-cp.yaml"), 0, true, "control-plane-write");
    assert_eq!(keys(&v), ["allowed", "reason", "rule"]);
}

#[test]
fn a_bare_owner_label_is_an_owner_no_cluster_matches() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@hub-repo-bare-owner.yaml",
        "--direction",
        "release",
        "--cluster",
        "cluster1",
    ]);
    assert_answer(&run, 1, false, "invalid-owner");
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo.yaml",
        "--hub",
        "@hub-repo-bare-owner.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster1",
    ]);
    assert_answer(&run, 1, false, "invalid-owner");
}

#[test]
fn a_hub_outside_the_control_plane_namespace_is_bad_input() {
    for direction in ["up", "down", "release"] {
        let run = explain(&[
            "--policy",
            "@policy.yaml",
            "--secret",
            "@repo.yaml",
            "--hub",
            "@repo-in-default.yaml",
            "--direction",
            direction,
            "--cluster",
            "cluster1",
        ]);
        assert_bad_input(&run, "--hub");
        assert!(
            run.stderr.contains("namespace 'default'") && run.stderr.contains("'argocd'"),
            "{direction}: {}",
            run.stderr
        );
    }
    // Judged alone with --secret, the same manifest is an answer, not an error.
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo-in-default.yaml",
        "--direction",
        "down",
    ]);
    assert_answer(&run, 1, false, "wrong-namespace");
}

#[test]
fn a_policy_configmap_manifest_is_accepted() {
    let run = explain(&[
        "--policy",
        "@policy-configmap.yaml",
        "--secret",
        "@repo.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster1",
    ]);
    assert_answer(&run, 0, true, "up-sync-new");
}

fn assert_bad_input(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(
        run.stderr.contains(needle),
        "{needle} not in {}",
        run.stderr
    );
}

#[test]
fn an_invalid_policy_is_bad_input_listing_every_problem() {
    let run = explain(&[
        "--policy",
        "@bad-policy.yaml",
        "--secret",
        "@repo.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster1",
    ]);
    assert_bad_input(&run, "3 problems");
    for path in [
        "clusters[1].name",
        "secretSources[0]",
        "extraBlocked.names[0]",
    ] {
        assert!(run.stderr.contains(path), "{path} not in {}", run.stderr);
    }
}

#[test]
fn unreadable_or_wrong_files_are_bad_input() {
    let run = explain(&[
        "--policy",
        "@missing.yaml",
        "--secret",
        "@repo.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster1",
    ]);
    assert_bad_input(&run, "failed to read the policy");
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@not-a-secret.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster1",
    ]);
    assert_bad_input(&run, "failed to parse the Secret manifest");
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@bad-data.yaml",
        "--direction",
        "up",
        "--cluster",
        "cluster1",
    ]);
    assert_bad_input(&run, "data values must be base64");
}

#[test]
fn missing_cluster_and_mismatched_names_are_bad_input() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo.yaml",
        "--direction",
        "up",
    ]);
    assert_bad_input(&run, "--cluster NAME is required for --direction up");
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo.yaml",
        "--direction",
        "release",
        "--hub",
        "@hub-adopted.yaml",
        "--cluster",
        "cluster1",
    ]);
    assert_bad_input(&run, "--hub is named 'argocd-notifications-secret'");
}

#[test]
fn an_unknown_direction_is_rejected_by_the_parser() {
    let run = explain(&[
        "--policy",
        "@policy.yaml",
        "--secret",
        "@repo.yaml",
        "--direction",
        "sideways",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
}
