//! The fuzz targets on stable Rust, for CI: every target's body (`fuzz/src/lib.rs`,
//! the same functions the libFuzzer targets in `fuzz/fuzz_targets/` call) over the
//! checked-in seeds (`fuzz/seeds/<target>/`), a local libFuzzer corpus
//! (`fuzz/corpus/<target>/`, when a nightly run left one), the Go oracle's selector
//! corpus, and proptest inputs: structured generators for each input language plus
//! byte-level mutations of the seeds. `PROPTEST_CASES` sets the cases per property
//! (256 by default); fuzz/README.md documents a longer run.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

#[allow(unreachable_pub, dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod bodies;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::select;

const TARGETS: [&str; 4] = [
    "admission_review",
    "policy_document",
    "selector",
    "relay_request",
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/seeds/<target>` and, when present, `fuzz/corpus/<target>`.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["seeds", "corpus"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    inputs(target).into_iter().map(|(_, bytes)| bytes).collect()
}

/// Runs one target's body as its libFuzzer target does (text targets skip non-UTF-8).
fn run(target: &str, data: &[u8]) {
    match target {
        "admission_review" => bodies::admission_review(data),
        "relay_request" => bodies::relay_request(data),
        "policy_document" => {
            if let Ok(text) = std::str::from_utf8(data) {
                bodies::policy_document(text);
            }
        }
        "selector" => {
            if let Ok(text) = std::str::from_utf8(data) {
                bodies::selector(text);
            }
        }
        other => panic!("no target {other}"),
    }
}

#[test]
fn every_target_passes_on_its_seeds_and_local_corpus() {
    for target in TARGETS {
        let files = inputs(target);
        assert!(
            files.len() >= 10,
            "{target}: only {} seeds in fuzz/seeds/{target}",
            files.len()
        );
        for (path, data) in files {
            let result = std::panic::catch_unwind(|| run(target, &data));
            assert!(result.is_ok(), "{target} failed on {}", path.display());
        }
    }
}

#[test]
fn the_fuzz_targets_are_the_ones_tested_here() {
    let mut found: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    let mut want: Vec<String> = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    want.sort();
    assert_eq!(found, want, "a fuzz target without a stable harness");
}

/// The selector body is differential: on every selector the Go oracle judged it
/// asserts the same acceptance and the same match on every label set.
#[test]
fn the_selector_target_agrees_with_the_go_oracle_on_its_whole_corpus() {
    let oracle = &*bodies::ORACLE_VERDICTS;
    assert!(oracle.verdicts.len() >= 500, "{}", oracle.verdicts.len());
    assert!(oracle.label_sets.len() >= 10);
    let mut accepted = 0;
    for (text, (ok, _)) in &oracle.verdicts {
        bodies::selector(text);
        accepted += usize::from(*ok);
    }
    assert!(accepted >= 200 && oracle.verdicts.len() - accepted >= 200);
}

/// The selector parser against Kubernetes' on inputs the fixed oracle corpus never
/// judged: the local libFuzzer corpus (`fuzz/corpus/selector/`) and generated and
/// mutated selectors (`PROPTEST_CASES` of each, 2000 by default), judged by
/// `fuzz/selector-judge` (Go's `labels.Parse` and `Matches`; needs Go and
/// k8s.io/apimachinery in the module cache, as `tests/kube` does). Acceptance and
/// every match on the oracle's label sets must agree. Go is needed as for the real
/// control plane, and skipped (loudly) only when `SECRET_RELAY_SKIP_REAL_CONTROL_PLANE`
/// asks for that.
#[test]
fn the_selector_parser_agrees_with_go_on_generated_and_fuzzed_selectors() {
    if secret_relay_testkit::Flavor::Real.skipped("the selector parser against Go") {
        return;
    }
    use proptest::strategy::ValueTree as _;
    use proptest::test_runner::TestRunner;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let cases: usize = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut selectors: Vec<String> = inputs("selector")
        .into_iter()
        .filter_map(|(_, bytes)| String::from_utf8(bytes).ok())
        .collect();
    let mut runner = TestRunner::deterministic();
    let generated = selector_text();
    let oracle: Vec<String> = bodies::ORACLE_VERDICTS.verdicts.keys().cloned().collect();
    let mutated = (select(oracle), prop::collection::vec(edit(), 1..4))
        .prop_filter_map("UTF-8", |(seed, edits)| {
            String::from_utf8(mutate(seed.into_bytes(), &edits)).ok()
        });
    for _ in 0..cases {
        selectors.push(generated.new_tree(&mut runner).unwrap().current());
        selectors.push(mutated.new_tree(&mut runner).unwrap().current());
    }
    selectors.sort();
    selectors.dedup();
    let sets = &bodies::ORACLE_VERDICTS.label_sets;
    let input = serde_json::json!({"labelSets": sets, "selectors": selectors});
    let mut judge = Command::new("go")
        .args(["run", "."])
        .current_dir(fuzz_dir().join("selector-judge"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect(
            "go is needed for this check (set SECRET_RELAY_SKIP_REAL_CONTROL_PLANE=1 to skip it)",
        );
    judge
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = judge.wait_with_output().unwrap();
    assert!(out.status.success(), "selector-judge failed");
    let verdicts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdicts = verdicts["cases"].as_array().unwrap();
    assert_eq!(verdicts.len(), selectors.len());
    let mut mismatches = Vec::new();
    let mut accepted = 0;
    for v in verdicts {
        let text = v["selector"].as_str().unwrap();
        let go_ok = v["accepted"].as_bool().unwrap();
        accepted += usize::from(go_ok);
        match secret_relay_policy::Selector::parse(text) {
            Ok(_) if !go_ok => {
                mismatches.push(format!("{text:?}: Go rejects ({}), we accept", v["error"]))
            }
            Err(e) if go_ok => mismatches.push(format!("{text:?}: Go accepts, we reject: {e}")),
            Ok(parsed) => {
                for (labels, want) in sets.iter().zip(v["matches"].as_array().unwrap()) {
                    if parsed.matches(labels) != want.as_bool().unwrap() {
                        mismatches.push(format!("{text:?} on {labels:?}: Go matches={want}"));
                    }
                }
            }
            Err(_) => {}
        }
    }
    eprintln!(
        "{} selectors judged by Go ({accepted} accepted), {} mismatches",
        verdicts.len(),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(40)].join("\n")
    );
}

// ---- generators -------------------------------------------------------------

/// Byte-level edits of a seed: what libFuzzer's mutators do, in small.
#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, u8),
    Delete(usize, usize),
    Replace(usize, u8),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting = prop_oneof![
        any::<u8>(),
        select(b"{}[]\",:\n\t \\/%.0-=!()<>$~".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), interesting.clone()).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<usize>(), interesting).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), 1usize..32).prop_map(|(i, n)| Edit::Duplicate(i, n)),
    ]
}

fn mutate(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = data.len();
        match *e {
            Edit::Insert(i, b) => data.insert(i % (len + 1), b),
            Edit::Delete(i, n) if len > 0 => {
                let at = i % len;
                data.drain(at..(at + n).min(len));
            }
            Edit::Replace(i, b) if len > 0 => data[i % len] = b,
            Edit::Duplicate(i, n) if len > 0 => {
                let at = i % len;
                let piece = data[at..(at + n).min(len)].to_vec();
                data.splice(at..at, piece);
            }
            _ => {}
        }
    }
    data
}

fn mutated_seed(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    (select(seeds(target)), prop::collection::vec(edit(), 0..6))
        .prop_map(|(seed, edits)| mutate(seed, &edits))
}

/// A short string from a list of meaningful ones or a pattern.
fn word(list: &'static [&'static str], pattern: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(list).prop_map(str::to_owned),
        1 => proptest::string::string_regex(pattern).unwrap(),
    ]
    .boxed()
}

const LABEL_KEYS: &[&str] = &[
    "akuity.io/secret-sync",
    "argocd.argoproj.io/secret-type",
    "secret-relay.io/owner",
    "env",
    "team",
    "a",
];
const LABEL_VALUES: &[&str] = &[
    "true",
    "repo-creds",
    "repository",
    "cluster",
    "cluster.cluster1",
    "cluster.cluster2",
    "cluster.",
    "control-plane",
    "prod",
    "",
];
const ANNOTATION_KEYS: &[&str] = &[
    "secret-relay.io/adopted",
    "secret-relay.io/digest",
    "akuity.io/managed-secret-allowed-clusters",
    "akuity.io/managed-secret-allowed-cluster-selector",
];
const ANNOTATION_VALUES: &[&str] = &[
    "true",
    "ALL",
    "cluster1,cluster2",
    "env=prod",
    "env in (",
    "",
];
const NAMES: &[&str] = &[
    "repo",
    "argocd-secret",
    "argocd-initial-admin-secret",
    "argocd-notifications-secret",
    "application-set-secret",
    "new",
    "",
];

fn string_map(
    keys: &'static [&'static str],
    values: &'static [&'static str],
) -> impl Strategy<Value = serde_json::Map<String, serde_json::Value>> {
    prop::collection::vec(
        (word(keys, "[a-z./-]{1,12}"), word(values, "[ -~]{0,8}")),
        0..4,
    )
    .prop_map(|kv| kv.into_iter().map(|(k, v)| (k, v.into())).collect())
}

/// A Secret-shaped JSON object, sometimes with odd types in odd places.
fn secret_json() -> impl Strategy<Value = serde_json::Value> {
    (
        word(NAMES, "[a-z0-9.-]{1,10}"),
        string_map(LABEL_KEYS, LABEL_VALUES),
        string_map(ANNOTATION_KEYS, ANNOTATION_VALUES),
        select(&["Opaque", "kubernetes.io/service-account-token", "x"][..]),
        prop::option::of(select(&["dg==", "not base64", ""][..])),
        any::<bool>(),
    )
        .prop_map(|(name, labels, annotations, type_, data, null_labels)| {
            let mut v = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": "argocd", "labels": labels, "annotations": annotations},
                "type": type_,
            });
            if let Some(d) = data {
                v["data"] = serde_json::json!({"k": d});
            }
            if null_labels {
                v["metadata"]["labels"] = serde_json::Value::Null;
            }
            v
        })
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        word(LABEL_VALUES, "[ -~]{0,10}").prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::vec(
                (
                    word(
                        &[
                            "metadata",
                            "labels",
                            "annotations",
                            "name",
                            "namespace",
                            "data",
                            "stringData",
                            "type",
                            "$patch",
                            "$retainKeys",
                            "secret-relay.io/owner",
                            "akuity.io/secret-sync",
                        ],
                        "[a-z$/.-]{1,8}"
                    ),
                    inner
                ),
                0..4
            )
            .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn json_patch() -> impl Strategy<Value = serde_json::Value> {
    let pointer = word(
        &[
            "",
            "/",
            "/metadata/name",
            "/metadata/labels",
            "/metadata/labels/secret-relay.io~1owner",
            "/metadata/labels/argocd.argoproj.io~1secret-type",
            "/metadata/annotations/secret-relay.io~1adopted",
            "/data/k",
            "/data/-",
            "/a~2b",
            "/metadata/labels/0",
        ],
        "(/[a-z~01]{0,6}){0,3}",
    );
    prop::collection::vec(
        (
            select(&["add", "remove", "replace", "move", "copy", "test", "nope"][..]),
            pointer.clone(),
            pointer,
            json_value(),
        )
            .prop_map(|(op, path, from, value)| {
                serde_json::json!({"op": op, "path": path, "from": from, "value": value})
            }),
        0..4,
    )
    .prop_map(serde_json::Value::from)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn relay_input() -> impl Strategy<Value = Vec<u8>> {
    let method = word(
        &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        "[A-Z]{1,7}",
    );
    let segment = word(
        &[
            "api",
            "v1",
            "apis",
            "namespaces",
            "argocd",
            "kube-system",
            "secrets",
            "configmaps",
            "status",
            "repo",
            "..",
            ".",
            "",
            "%2F",
            "%2e%2e",
            "a%2fb",
            "%00",
            "%5C",
            "secret-relay.io",
            "generation",
        ],
        "[a-zA-Z0-9._~%-]{1,10}",
    );
    let path = prop_oneof![
        prop::collection::vec(segment.clone(), 0..4).prop_map(|s| format!(
            "/api/v1/namespaces/argocd/secrets{}",
            s.iter().map(|x| format!("/{x}")).collect::<String>()
        )),
        prop::collection::vec(segment, 0..7).prop_map(|s| format!("/{}", s.join("/"))),
    ];
    let param = (
        word(
            &[
                "watch",
                "resourceVersion",
                "labelSelector",
                "fieldSelector",
                "timeoutSeconds",
                "allowWatchBookmarks",
                "sendInitialEvents",
                "dryRun",
                "fieldManager",
                "force",
                "propagationPolicy",
                "after",
            ],
            "[a-zA-Z]{1,6}",
        ),
        word(
            &[
                "true",
                "1",
                "0",
                "false",
                "",
                "All",
                "5",
                "18446744073709551616",
                "-1",
                "a=b",
                "env in (prod)",
                "metadata.name=repo",
                "metadata.namespace=argocd",
                "metadata.namespace==kube-system",
                "spec.x=y",
            ],
            "[ -~]{0,12}",
        ),
    );
    let query = prop::collection::vec(param, 0..5).prop_map(|params| {
        params
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    });
    let content_type = word(
        &[
            "application/json",
            "application/merge-patch+json",
            "application/json-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
            "application/apply-patch+yaml; charset=utf-8",
            "text/plain",
            "",
        ],
        "[a-z/+;= -]{0,20}",
    );
    let body = prop_oneof![
        secret_json().prop_map(|v| v.to_string().into_bytes()),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        json_patch().prop_map(|v| v.to_string().into_bytes()),
        secret_json().prop_map(|v| serde_yaml::to_string(&v).unwrap().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    (method, path, query, content_type, body).prop_map(|(m, p, q, c, b)| {
        let target = if q.is_empty() { p } else { format!("{p}?{q}") };
        bodies::RelayInput::join(&m, &target, &c, &b)
    })
}

fn selector_text() -> impl Strategy<Value = String> {
    let key = word(
        &[
            "a",
            "env",
            "tier",
            "example.com/app",
            "app.kubernetes.io/name",
            "in",
            "notin",
            "A",
            "a/b/c",
            "-a",
            "a-",
        ],
        "[a-zA-Z0-9]([a-zA-Z0-9._-]{0,6}[a-zA-Z0-9])?(/[a-z0-9]{1,4})?",
    );
    let value = word(
        &["b", "prod", "", "5", "-3", "web", "x y"],
        "[a-zA-Z0-9._-]{0,6}",
    );
    let requirement = (
        select(&["", "!", " ", "  "][..]),
        key,
        select(
            &[
                "=", "==", "!=", " in ", " notin ", ">", "<", "", " = ", "in", " in", "=!",
            ][..],
        ),
        prop_oneof![
            value.clone(),
            prop::collection::vec(value, 0..4).prop_map(|v| format!("({})", v.join(","))),
            prop::collection::vec(word(&["b", "c", ""], "[a-z]{0,3}"), 0..3)
                .prop_map(|v| format!("( {} )", v.join(" , "))),
        ],
    )
        .prop_map(|(bang, k, op, v)| {
            if op.is_empty() {
                format!("{bang}{k}")
            } else {
                format!("{bang}{k}{op}{v}")
            }
        });
    prop_oneof![
        4 => prop::collection::vec(requirement, 0..4).prop_map(|r| r.join(",")),
        1 => "\\PC{0,24}",
        1 => "[a-z=!(), <>.-]{0,24}",
    ]
}

fn policy_text() -> impl Strategy<Value = String> {
    let cluster = (
        word(
            &["cluster1", "cluster2", "a", "Bad_Name", ""],
            "[a-z0-9-]{1,10}",
        ),
        string_map(
            &["env", "tier", "my-label"],
            &["prod", "staging", "cluster1", ""],
        ),
    )
        .prop_map(|(name, labels)| serde_json::json!({"name": name, "labels": labels}));
    let source = (
        prop::option::of(selector_text()),
        prop::option::of(selector_text()),
        any::<bool>(),
    )
        .prop_map(|(c, l, structured)| {
            let mut v = serde_json::Map::new();
            if let Some(c) = c {
                v.insert("clusterSelector".into(), c.into());
            }
            if let Some(l) = l {
                if structured {
                    v.insert(
                        "labelSelector".into(),
                        serde_json::json!({"matchLabels": {"team": l}, "matchExpressions": [{"key": "a", "operator": "In", "values": [l]}]}),
                    );
                } else {
                    v.insert("labelSelector".into(), l.into());
                }
            }
            serde_json::Value::Object(v)
        });
    (
        prop::option::of(word(&["argocd", "", "Argo"], "[a-z-]{0,8}")),
        prop::option::of(word(&["akuity", "argocd"], "[a-z-]{0,8}")),
        prop::collection::vec(cluster, 0..4),
        prop::collection::vec(source, 0..3),
        prop::option::of(string_map(&["names", "types", "labels"], &["x", "a=b"])),
        prop::option::of(word(&["surprise", "breakGlass"], "[a-zA-Z]{1,8}")),
    )
        .prop_map(|(cp, agent, clusters, sources, blocked, extra)| {
            let mut doc = serde_json::Map::new();
            if let Some(cp) = cp {
                doc.insert("controlPlaneNamespace".into(), cp.into());
            }
            if let Some(agent) = agent {
                doc.insert("agentNamespace".into(), agent.into());
            }
            doc.insert("clusters".into(), clusters.into());
            doc.insert("secretSources".into(), sources.into());
            if let Some(b) = blocked {
                let lists: serde_json::Map<_, _> = b
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::from(vec![v])))
                    .collect();
                doc.insert("extraBlocked".into(), lists.into());
            }
            if let Some(k) = extra {
                doc.insert(k, serde_json::json!({"users": ["oncall"]}));
            }
            serde_yaml::to_string(&serde_json::Value::Object(doc)).unwrap()
        })
}

fn admission_body() -> impl Strategy<Value = Vec<u8>> {
    let user = word(
        &[
            "secret-relay:cluster:cluster1",
            "secret-relay:cluster:cluster3",
            "system:serviceaccount:secret-relay-system:secret-relay",
            "system:serviceaccount:akuity:secret-relay-agent",
            "system:serviceaccount:kube-system:generic-garbage-collector",
            "system:serviceaccount:kube-system:namespace-controller",
            "kubernetes-admin",
            "oncall",
        ],
        "[a-z:-]{1,20}",
    );
    let groups = prop::collection::vec(
        select(
            &[
                "secret-relay:clusters",
                "system:masters",
                "system:authenticated",
                "system:serviceaccounts",
            ][..],
        ),
        0..3,
    );
    (
        select(&["CREATE", "UPDATE", "DELETE", "CONNECT", "x"][..]),
        select(&["Secret", "ConfigMap"][..]),
        word(&["argocd", "akuity", "default"], "[a-z]{0,6}"),
        user,
        groups,
        prop::option::of(secret_json()),
        prop::option::of(secret_json()),
        any::<bool>(),
    )
        .prop_map(|(op, kind, ns, user, groups, object, old, dry_run)| {
            let name = object
                .as_ref()
                .or(old.as_ref())
                .map(|o| o["metadata"]["name"].clone())
                .unwrap_or_default();
            let resource = if kind == "Secret" {
                "secrets"
            } else {
                "configmaps"
            };
            let mut request = serde_json::json!({
                "uid": "00000000-0000-4000-8000-000000000000",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": resource},
                "name": name,
                "namespace": ns,
                "operation": op,
                "userInfo": {"username": user, "groups": groups},
                "dryRun": dry_run,
            });
            if let Some(o) = object {
                request["object"] = o;
            }
            if let Some(o) = old {
                request["oldObject"] = o;
            }
            serde_json::json!({
                "kind": "AdmissionReview",
                "apiVersion": "admission.k8s.io/v1",
                "request": request,
            })
            .to_string()
            .into_bytes()
        })
}

proptest! {
    #[test]
    fn relay_request_holds_on_generated_requests(data in relay_input()) {
        bodies::relay_request(&data);
    }

    #[test]
    fn relay_request_holds_on_mutated_seeds(data in mutated_seed("relay_request")) {
        bodies::relay_request(&data);
    }

    #[test]
    fn selector_holds_on_generated_selectors(text in selector_text()) {
        bodies::selector(&text);
    }

    #[test]
    fn selector_holds_on_mutated_oracle_selectors(
        seed in select(bodies::ORACLE_VERDICTS.verdicts.keys().cloned().collect::<Vec<_>>()),
        edits in prop::collection::vec(edit(), 0..4),
    ) {
        if let Ok(text) = String::from_utf8(mutate(seed.into_bytes(), &edits)) {
            bodies::selector(&text);
        }
    }

    #[test]
    fn policy_document_holds_on_generated_documents(text in policy_text()) {
        bodies::policy_document(&text);
    }

    #[test]
    fn policy_document_holds_on_mutated_seeds(data in mutated_seed("policy_document")) {
        if let Ok(text) = std::str::from_utf8(&data) {
            bodies::policy_document(text);
        }
    }

    #[test]
    fn admission_review_holds_on_generated_reviews(body in admission_body()) {
        bodies::admission_review(&body);
    }

    #[test]
    fn admission_review_holds_on_mutated_seeds(data in mutated_seed("admission_review")) {
        bodies::admission_review(&data);
    }
}
