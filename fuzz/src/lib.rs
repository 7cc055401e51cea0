//! The bodies of the fuzz targets: plain functions over bytes that panic when an
//! invariant breaks. The libFuzzer targets in `fuzz_targets/` call them (nightly,
//! `cargo +nightly fuzz run <target>`); the workspace's stable harness
//! (`tests/fuzz_targets.rs`) includes this file with `#[path]` and runs the same
//! functions over the checked-in seeds, any local libFuzzer corpus, the Go oracle's
//! selector corpus and proptest inputs. So this file uses only crates both builds
//! have: ours, `http` and `serde_json`.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use http::Method;
use secret_relay_policy::{
    AdmissionInput, Mode, Operation, Policy, RelayIdentity, Secret, Selector, UserInfo, mutate,
    release, up_sync,
};
use secret_relay_proxy::{PatchError, PatchKind, Route, Verb, apply_patch, route};
use secret_relay_webhook::{Endpoint, review};

/// The policy the admission and relay bodies decide with: the admission fixtures'
/// policy (two clusters, a Secret Source, a break-glass user), so decisions go past
/// "unknown cluster".
const FIXTURE_POLICY: &str = include_str!("../../tests/fixtures/admission/policy.yaml");

/// The Go oracle's verdicts (`labels.Parse` and `Selector.Matches` from
/// k8s.io/apimachinery) on its corpus; see `policy/tests/selector_oracle.rs`.
const ORACLE: &str = include_str!("../../policy/tests/fixtures/selector-oracle/expected.json");

/// The control-plane namespace of [`FIXTURE_POLICY`].
const NAMESPACE: &str = "argocd";

/// The query parameters the relay forwards on writes (`Query::forwarded`).
const WRITE_PARAMS: &[&str] = &[
    "dryRun",
    "fieldManager",
    "fieldValidation",
    "force",
    "pretty",
    "gracePeriodSeconds",
    "propagationPolicy",
];

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    Policy::from_yaml(FIXTURE_POLICY).unwrap_or_else(|e| panic!("fixture policy: {e:?}"))
});

/// The Go oracle's judgement of the selectors in its corpus.
pub struct Oracle {
    /// The label sets every accepted selector was matched against.
    pub label_sets: Vec<BTreeMap<String, String>>,
    /// Selector -> (accepted, one match per label set when accepted).
    pub verdicts: HashMap<String, (bool, Vec<bool>)>,
}

/// The oracle, parsed once.
pub static ORACLE_VERDICTS: LazyLock<Oracle> = LazyLock::new(|| {
    let v: serde_json::Value = serde_json::from_str(ORACLE).unwrap_or_default();
    let label_sets = v["labelSets"]
        .as_array()
        .map(|sets| {
            sets.iter()
                .map(|set| {
                    set.as_object()
                        .map(|o| {
                            o.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let verdicts = v["cases"]
        .as_array()
        .map(|cases| {
            cases
                .iter()
                .map(|c| {
                    let matches = c["matches"]
                        .as_array()
                        .map(|m| m.iter().map(|b| b.as_bool() == Some(true)).collect())
                        .unwrap_or_default();
                    (
                        c["selector"].as_str().unwrap_or("").to_owned(),
                        (c["accepted"].as_bool() == Some(true), matches),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Oracle {
        label_sets,
        verdicts,
    }
});

/// `admission_review`: any request body is either answered or refused as a bad
/// review, never a panic; a validating answer never carries a patch, a mutating one
/// is always allowed, and every answer is an AdmissionReview echoing the uid.
pub fn admission_review(body: &[u8]) {
    let relay = RelayIdentity::default();
    let modes = [
        Mode::ControlPlane,
        Mode::ManagedCluster {
            agent: "system:serviceaccount:akuity:secret-relay-agent".to_owned(),
        },
    ];
    let default = Policy::default();
    for policy in [&default, &*POLICY] {
        for mode in &modes {
            for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
                let Ok(reviewed) = review(policy, &relay, mode, endpoint, body) else {
                    continue;
                };
                match endpoint {
                    Endpoint::Validate => assert_eq!(reviewed.patch_ops, 0, "a patch on validate"),
                    Endpoint::Mutate => assert!(reviewed.allowed, "mutate denied"),
                }
                let answer: serde_json::Value = serde_json::from_slice(&reviewed.body)
                    .unwrap_or_else(|e| panic!("the answer is not JSON: {e}"));
                // `/mutate` decodes only what `mutate` reads: its patch is the one
                // `mutate` builds from the whole decoded objects.
                if endpoint == Endpoint::Mutate
                    && let Some(want) = mutate_on_whole_objects(policy, &relay, mode, body)
                {
                    assert_eq!(patch_of(&answer), want, "/mutate against the whole decode");
                }
                assert_eq!(answer["kind"], "AdmissionReview");
                assert_eq!(
                    answer["response"]["uid"].as_str(),
                    Some(reviewed.uid.as_str())
                );
                assert_eq!(
                    answer["response"]["allowed"].as_bool(),
                    Some(reviewed.allowed)
                );
            }
        }
    }
}

/// What `mutate` patches on a review's whole decoded objects, when the review is a
/// Secret's with objects that decode whole; else `None`.
fn mutate_on_whole_objects(
    policy: &Policy,
    relay: &RelayIdentity,
    mode: &Mode,
    body: &[u8],
) -> Option<serde_json::Value> {
    let review: serde_json::Value = serde_json::from_slice(body).ok()?;
    let req = review.get("request")?;
    let kind = req.get("kind")?;
    if (
        str_of(kind, "group"),
        str_of(kind, "version"),
        str_of(kind, "kind"),
    ) != ("", "v1", "Secret")
        || !str_of(req, "subResource").is_empty()
    {
        return None;
    }
    let operation = match req.get("operation")?.as_str()? {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        _ => return None,
    };
    let secret = |k: &str| -> Option<Option<Secret>> {
        match req.get(k) {
            None | Some(serde_json::Value::Null) => Some(None),
            Some(v) => serde_json::from_value(v.clone()).ok().map(Some),
        }
    };
    let (object, old_object) = (secret("object")?, secret("oldObject")?);
    let user = req.get("userInfo");
    let user = UserInfo {
        username: user.map_or("", |u| str_of(u, "username")).to_owned(),
        groups: user
            .and_then(|u| u.get("groups"))
            .and_then(|g| g.as_array())
            .map(|g| {
                g.iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let input = AdmissionInput {
        operation,
        namespace: str_of(req, "namespace"),
        name: str_of(req, "name"),
        object: object.as_ref(),
        old_object: old_object.as_ref(),
        user: &user,
        dry_run: false,
    };
    serde_json::to_value(mutate(policy, relay, mode, &input)).ok()
}

/// The string at `key` of `v`, or `""`.
fn str_of<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

/// The JSON patch of a `/mutate` answer (an empty list for none).
fn patch_of(answer: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    match answer["response"]["patch"].as_str() {
        Some(patch) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(patch)
                .unwrap_or_else(|e| panic!("the patch is not base64: {e}"));
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("the patch is not JSON: {e}"))
        }
        None => serde_json::json!([]),
    }
}

/// `policy_document`: any text either parses into a valid policy or yields located
/// problems; never a panic. A parsed policy answers its lookups.
pub fn policy_document(text: &str) {
    match Policy::from_yaml(text) {
        Ok(policy) => {
            assert!(!policy.control_plane_namespace().is_empty());
            assert!(!policy.agent_namespace().is_empty());
            for c in policy.clusters() {
                assert!(policy.cluster(&c.name).is_some(), "{} not found", c.name);
            }
        }
        Err(err) => assert!(!err.problems.is_empty(), "an error without problems"),
    }
}

/// `selector`: a selector that parses displays to a string that parses back to the
/// same selector, matching every oracle label set the same way; and wherever the Go
/// oracle judged the same string, we agree with it on acceptance and on every match.
pub fn selector(text: &str) {
    let oracle = &*ORACLE_VERDICTS;
    let parsed = Selector::parse(text);
    if let Some((accepted, matches)) = oracle.verdicts.get(text) {
        assert_eq!(
            parsed.is_ok(),
            *accepted,
            "{text:?}: Go accepted={accepted}, we {parsed:?}"
        );
        if let Ok(s) = &parsed {
            for (labels, want) in oracle.label_sets.iter().zip(matches) {
                assert_eq!(
                    s.matches(labels),
                    *want,
                    "{text:?} on {labels:?}: Go matches={want}"
                );
            }
        }
    }
    if let Ok(s) = parsed {
        let shown = s.to_string();
        let again = Selector::parse(&shown)
            .unwrap_or_else(|e| panic!("{text:?} displays as {shown:?}, which fails: {e}"));
        assert_eq!(again, s, "{text:?} -> {shown:?}");
        for labels in &oracle.label_sets {
            assert_eq!(again.matches(labels), s.matches(labels), "{text:?}");
        }
    }
}

/// A relay request as the fuzzers write it: `METHOD\nTARGET\nCONTENT-TYPE\nBODY`
/// (TARGET is the request-target, path and query; missing lines are empty).
pub struct RelayInput<'a> {
    /// The method line.
    pub method: &'a [u8],
    /// The request-target line.
    pub target: &'a [u8],
    /// The Content-Type line.
    pub content_type: &'a [u8],
    /// The rest.
    pub body: &'a [u8],
}

impl<'a> RelayInput<'a> {
    /// Splits `data` at its first three newlines.
    pub fn split(data: &'a [u8]) -> RelayInput<'a> {
        let mut parts = data.splitn(4, |b| *b == b'\n');
        RelayInput {
            method: parts.next().unwrap_or_default(),
            target: parts.next().unwrap_or_default(),
            content_type: parts.next().unwrap_or_default(),
            body: parts.next().unwrap_or_default(),
        }
    }

    /// The bytes [`RelayInput::split`] reads back as these parts (for generators).
    pub fn join(method: &str, target: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!("{method}\n{target}\n{content_type}\n").into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// A hub copy owned by cluster1, for patches and releases to work on.
fn hub_copy() -> Secret {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "repo",
            "namespace": NAMESPACE,
            "resourceVersion": "7",
            "labels": {
                "akuity.io/secret-sync": "true",
                "argocd.argoproj.io/secret-type": "repo-creds",
                "secret-relay.io/owner": "cluster.cluster1",
            },
            "annotations": {"secret-relay.io/digest": "sha256:00"},
        },
        "data": {"password": "aHVudGVyMg=="},
    }))
    .unwrap_or_default()
}

/// `relay_request`: the relay's request parsing (path, query, content type, patch
/// bodies, watch and list parameters) never panics, and whatever reaches the Secrets
/// surface is a Secret in the control-plane namespace, named by one clean path
/// segment, with a verb that fits the path.
pub fn relay_request(data: &[u8]) {
    let input = RelayInput::split(data);
    let Ok(method) = Method::from_bytes(input.method) else {
        return;
    };
    let Ok(target) = std::str::from_utf8(input.target) else {
        return;
    };
    let content_type = std::str::from_utf8(input.content_type).ok();
    // The same split hyper hands the relay: a request-target it cannot parse is 400
    // before the relay sees it.
    let Ok(pq) = http::uri::PathAndQuery::try_from(target) else {
        return;
    };
    let (path, query) = (pq.path(), pq.query());
    let routed = route(&method, path, query, content_type, NAMESPACE);
    let sr = match routed {
        Err(err) => {
            assert!(!err.to_string().is_empty(), "a refusal without a message");
            return;
        }
        Ok(Route::Secrets(sr)) => sr,
        Ok(other) => {
            let known = [
                "/version",
                "/api",
                "/api/v1",
                "/apis",
                "/apis/secret-relay.io/v1/generation",
                "/openapi/v2",
                "/openapi/v3",
                "/openapi/v3/api/v1",
            ];
            assert!(known.contains(&path), "{other:?} for {path}");
            assert!(
                method == Method::GET || method == Method::HEAD,
                "{method} {path}"
            );
            return;
        }
    };
    // The Secrets surface: the collection or one clean name in it.
    let collection = format!("/api/v1/namespaces/{NAMESPACE}/secrets");
    let rest = path
        .strip_prefix(&collection)
        .unwrap_or_else(|| panic!("{path} reached the Secrets surface"));
    match &sr.name {
        None => assert_eq!(rest, "", "{path}"),
        Some(name) => {
            // One segment, which the relay decides on as kube-apiserver reads it:
            // percent-decoded.
            let segment = rest
                .strip_prefix('/')
                .unwrap_or_else(|| panic!("{path}: no name segment"));
            assert!(!segment.contains('/'), "{path}: more than one segment");
            let decoded = percent_encoding::percent_decode_str(segment).decode_utf8();
            assert_eq!(decoded.as_deref(), Ok(name.as_str()), "{path}");
            assert!(!name.is_empty() && name != "." && name != "..", "{path}");
            let lower = name.to_ascii_lowercase();
            for bad in ["/", "\\", "%2f", "%2e", "%5c", "%00"] {
                assert!(!lower.contains(bad), "{bad} in the name {name:?}");
            }
            assert!(!name.bytes().any(|b| b.is_ascii_control()), "{name:?}");
        }
    }
    let named = matches!(
        sr.verb,
        Verb::Get | Verb::Update | Verb::Patch(_) | Verb::Delete
    );
    assert_eq!(named, sr.name.is_some(), "{:?} on {path}", sr.verb);
    let watch = sr
        .query
        .other
        .get("watch")
        .is_some_and(|v| v == "true" || v == "1");
    let read = method == Method::GET || method == Method::HEAD;
    assert_eq!(sr.verb == Verb::Watch, read && watch && sr.name.is_none());

    // What a write forwards is only write parameters, and reads back the same.
    let forwarded = sr.query.forwarded();
    match route(
        &Method::POST,
        &collection,
        Some(&forwarded),
        None,
        NAMESPACE,
    ) {
        Ok(Route::Secrets(again)) => {
            for (k, v) in &again.query.other {
                assert!(WRITE_PARAMS.contains(&k.as_str()), "{k} forwarded");
                assert_eq!(sr.query.other.get(k), Some(v), "{k} changed");
            }
        }
        other => panic!("the forwarded query {forwarded:?} does not read back: {other:?}"),
    }

    match sr.verb {
        Verb::List | Verb::Watch => {
            if let Ok(view) = sr.query.view("cluster1", NAMESPACE)
                && let Some(labels) = &view.labels
            {
                selector(&labels.to_string());
            }
            let max = Duration::from_secs(1800);
            let params = sr.query.watch_params(max, Duration::from_secs(10));
            assert!(params.timeout <= max);
        }
        Verb::Patch(kind) => {
            let name = sr.name.as_deref().unwrap_or_default();
            let hub = hub_copy();
            for base in [Some(&hub), None] {
                match apply_patch(base, name, NAMESPACE, kind, input.body) {
                    Ok(result) => {
                        assert_eq!(result.metadata.name.as_deref(), Some(name));
                        decide(&result, base);
                    }
                    Err(PatchError::NotFound(n)) => {
                        assert!(base.is_none() && kind != PatchKind::Apply);
                        assert_eq!(n, name);
                    }
                    Err(PatchError::BadRequest(m) | PatchError::Invalid(m)) => {
                        assert!(!m.is_empty());
                    }
                }
            }
        }
        Verb::Create | Verb::Update => {
            if let Ok(secret) = serde_json::from_slice::<Secret>(input.body) {
                decide(&secret, Some(&hub_copy()));
                decide(&secret, None);
            }
        }
        Verb::Delete => {
            let released = release(&POLICY, "cluster1", &hub_copy());
            assert!(released.decision.allowed, "the owner may release its copy");
        }
        Verb::Get => {}
    }
}

/// The relay's up-sync decision on a written object, as the cluster's own Secret.
fn decide(written: &Secret, hub: Option<&Secret>) {
    let mut s = written.clone();
    s.metadata.namespace = Some(POLICY.agent_namespace().to_owned());
    for cluster in ["cluster1", "cluster2", "unknown"] {
        let d = up_sync(&POLICY, cluster, &s, hub);
        assert!(!d.reason.is_empty(), "a decision without a reason");
    }
}
