//! Decode time of the worst request bodies the relay accepts at its 3 MiB body limit,
//! beside a plain 3 MiB JSON Secret decoded the way the relay did before
//! `secret_relay_proxy::body` (`serde_json::from_slice::<Secret>`), measured in the same
//! run.
//!
//! `cargo bench -p secret-relay-proxy --bench body_decode` (`BODY_BENCH_ROUNDS`, 21 by
//! default; `BODY_BENCH_CORE`, 1 by default: the process pins itself to that core with
//! `taskset` when it can; `BODY_BENCH_ONLY`: only the cases whose label holds it, beside
//! the baseline). Each round decodes every body once, in turn, so drift on a shared
//! machine touches every case alike; the table gives each case's median and its ratio
//! to the baseline's median. Beside it: the same body through serde_json alone (what
//! the relay did before: `from_slice` to a Secret, or to a `Value` for a patch), and
//! the peak memory of one decode, measured in a child process that builds only that
//! body (the rise of VmHWM over VmRSS after resetting it through
//! `/proc/self/clear_refs`; memory the allocator kept from building the body hides
//! figures of a few MiB). Bodies refused by the rules are timed too: a refusal must
//! cost no more than an acceptance.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark main, not library code

use std::collections::BTreeMap;
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::Instant;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_pb::api::core::v1 as pb_core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pb_meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message as _;
use secret_relay_proxy::PatchKind;
use secret_relay_proxy::body::{
    MAX_CONTAINERS, MAX_DEPTH, MAX_JSON_PATCH_OPERATIONS, PROTOBUF_MEDIA_TYPE, PROTOBUF_PREFIX,
    decode_patch_value, decode_secret,
};

/// The relay's body limit (kube-apiserver's).
const LIMIT: usize = 3 * 1024 * 1024;

/// What a case decodes its body as.
#[derive(Clone, Copy)]
enum Decode {
    /// `serde_json::from_slice::<Secret>`: the relay before this module.
    Baseline,
    Secret(&'static str),
    Patch(PatchKind),
}

const JSON: &str = "application/json";

struct Case {
    label: String,
    body: Vec<u8>,
    decode: Decode,
    accepted: bool,
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// How often `pattern` occurs in `body`.
fn count(body: &[u8], pattern: &str) -> usize {
    body.windows(pattern.len())
        .filter(|w| *w == pattern.as_bytes())
        .count()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A JSON Secret named `big` around `fields` (already JSON members, comma-led or empty).
fn secret_json(metadata_extra: &str, rest: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"big","namespace":"argocd"{metadata_extra}}},"type":"Opaque"{rest}}}"#
    )
}

/// Members `"<prefix><i>":<value(i)>` joined by commas, as many as fit in `budget` bytes.
fn members(prefix: &str, budget: usize, value: impl Fn(usize) -> String) -> String {
    let mut out = String::new();
    let mut i = 0;
    loop {
        let member = format!(r#""{prefix}{i}":{}"#, value(i));
        if out.len() + member.len() + 1 > budget {
            return out;
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(&member);
        i += 1;
    }
}

/// The largest `n` for which `make(n)` fits the limit (a binary search; `make` grows with `n`).
fn fill(make: impl Fn(usize) -> String) -> Vec<u8> {
    let (mut lo, mut hi) = (0, LIMIT);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if make(mid).len() <= LIMIT {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let body = make(lo).into_bytes();
    assert!(
        body.len() <= LIMIT && body.len() > LIMIT - 64 * 1024,
        "{}",
        body.len()
    );
    body
}

/// A plain Secret: 24 values of about 128 KiB each.
fn plain_secret() -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some("big".into());
    s.metadata.namespace = Some("argocd".into());
    s.type_ = Some("Opaque".into());
    let size = (LIMIT - 4096) / 24 * 3 / 4;
    s.data = Some(
        (0..24)
            .map(|i| {
                let bytes = (0..size).map(|j| (i * 31 + j * 7) as u8).collect();
                (format!("value-{i}"), ByteString(bytes))
            })
            .collect(),
    );
    s
}

/// `secret` as client-go sends it: the prefix, a `runtime.Unknown` envelope, the Secret.
fn protobuf(secret: &Secret) -> Vec<u8> {
    let m = &secret.metadata;
    let pb = pb_core::Secret {
        metadata: Some(pb_meta::ObjectMeta {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            labels: m.labels.clone().unwrap_or_default(),
            annotations: m.annotations.clone().unwrap_or_default(),
            ..Default::default()
        }),
        data: secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        r#type: secret.type_.clone(),
        ..Default::default()
    };
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
        }),
        raw: Some(pb.encode_to_vec()),
        ..Default::default()
    };
    let mut body = PROTOBUF_PREFIX.to_vec();
    body.extend(unknown.encode_to_vec());
    assert!(body.len() <= LIMIT);
    body
}

/// The cases, each built only when called (a memory measure builds one alone).
fn cases() -> Vec<fn() -> Case> {
    vec![
        || Case {
            label: "baseline: plain JSON Secret (24 values of 128 KiB), serde_json::from_slice"
                .to_owned(),
            body: plain_json(),
            decode: Decode::Baseline,
            accepted: true,
        },
        || Case {
            label: "plain JSON Secret, decode_secret".to_owned(),
            body: plain_json(),
            decode: Decode::Secret(JSON),
            accepted: true,
        },
        || {
            let body = fill(|n| {
                let data = members("key-", n, |_| r#""QUFBQQ==""#.to_owned());
                secret_json("", &format!(r#","data":{{{data}}}"#))
            });
            Case {
                label: format!("JSON Secret, data of {} keys", count(&body, "\"key-")),
                body,
                decode: Decode::Secret(JSON),
                accepted: true,
            }
        },
        || {
            let body = fill(|n| {
                let labels = members("example.com/label-", n / 2, |i| format!(r#""v{i}""#));
                let annotations = members("example.com/note-", n / 2, |_| {
                    r#""\u00e9\u00e9""#.to_owned()
                });
                secret_json(
                    &format!(r#","labels":{{{labels}}},"annotations":{{{annotations}}}"#),
                    "",
                )
            });
            Case {
                label: format!(
                    "JSON Secret, {} labels and annotations (values with escapes)",
                    count(&body, "\"example.com/")
                ),
                body,
                decode: Decode::Secret(JSON),
                accepted: true,
            }
        },
        || Case {
            label: "JSON Secret, one annotation of \\u00e9 escapes".to_owned(),
            body: fill(|n| {
                secret_json(
                    &format!(r#","annotations":{{"note":"{}"}}"#, r"\u00e9".repeat(n / 6)),
                    "",
                )
            }),
            decode: Decode::Secret(JSON),
            accepted: true,
        },
        || {
            let body = fill(|n| {
                let list = vec![r#""a""#; n / 4].join(",");
                secret_json(&format!(r#","finalizers":[{list}]"#), "")
            });
            Case {
                label: format!("JSON Secret, {} finalizers", count(&body, "\"a\"")),
                body,
                decode: Decode::Secret(JSON),
                accepted: true,
            }
        },
        || {
            // Levels: the top object, metadata, managedFields, the entry, fieldsV1's
            // object (5th); each chain opens at the 6th and its innermost `{}` sits at
            // the limit. As many chains as the budget of non-empty objects allows, then
            // empty objects up to the limit.
            let depth = MAX_DEPTH - 6;
            let chain = format!("{}{{}}{}", r#"{"f:a":"#.repeat(depth), "}".repeat(depth));
            let chains = (0..(MAX_CONTAINERS - 5) / depth)
                .map(|i| format!(r#""f:k{i}":{chain}"#))
                .collect::<Vec<_>>()
                .join(",");
            let body = fill(|n| {
                let empty = members("f:e", n, |_| "{}".to_owned());
                managed(&format!("{{{chains},{empty}}}"))
            });
            Case {
                label: format!(
                    "JSON Secret, fieldsV1 of {} chains nested to the depth limit ({} objects), then {} empty objects",
                    count(&body, "\"f:k"),
                    count(&body, "\"f:a\"") + 5,
                    count(&body, "\"f:e")
                ),
                body,
                decode: Decode::Secret(JSON),
                accepted: true,
            }
        },
        || {
            let depth = MAX_DEPTH - 6;
            let chain = format!("{}{{}}{}", r#"{"f:a":"#.repeat(depth), "}".repeat(depth));
            Case {
                label: "refused: JSON Secret, 3 MiB of such chains (past the budget)".to_owned(),
                body: fill(|n| managed(&format!("{{{}}}", members("f:k", n, |_| chain.clone())))),
                decode: Decode::Secret(JSON),
                accepted: false,
            }
        },
        || {
            let body = fill(|n| managed(&format!("{{{}}}", members("f:", n, |_| "{}".to_owned()))));
            Case {
                label: format!(
                    "JSON Secret, fieldsV1 of {} empty objects",
                    count(&body, "{}")
                ),
                body,
                decode: Decode::Secret(JSON),
                accepted: true,
            }
        },
        || Case {
            label: "JSON Secret, fieldsV1 holding one 3 MiB number".to_owned(),
            body: fill(|n| managed(&format!(r#"{{"f:n":1.{}}}"#, "1".repeat(n)))),
            decode: Decode::Secret(JSON),
            accepted: true,
        },
        || Case {
            label: "protobuf Secret, same 24 values".to_owned(),
            body: protobuf(&plain_secret()),
            decode: Decode::Secret(PROTOBUF_MEDIA_TYPE),
            accepted: true,
        },
        || {
            let mut secret = plain_secret();
            secret.data = Some(
                (0..100_000)
                    .map(|i| (format!("key-{i}"), ByteString(b"AAAA".to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            );
            Case {
                label: "protobuf Secret, data of 100000 keys".to_owned(),
                body: protobuf(&secret),
                decode: Decode::Secret(PROTOBUF_MEDIA_TYPE),
                accepted: true,
            }
        },
        || {
            let body = fill(|n| {
                format!(
                    r#"{{"metadata":{{"annotations":{{{}}}}}}}"#,
                    members("example.com/note-", n, |i| format!(r#""v{i}""#))
                )
            });
            Case {
                label: format!(
                    "merge patch, {} annotations",
                    count(&body, "\"example.com/")
                ),
                body,
                decode: Decode::Patch(PatchKind::Merge),
                accepted: true,
            }
        },
        || {
            // As many arrays nested to the depth limit as the budget allows, then
            // small numbers up to the limit.
            let depth = MAX_DEPTH - 2;
            let chain = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let chains = vec![chain; (MAX_CONTAINERS - 2) / depth].join(",");
            let body = fill(|n| format!(r#"{{"a":[{chains},{}]}}"#, vec!["1"; n / 2].join(",")));
            Case {
                label: format!(
                    "merge patch, {} nested arrays, then {} numbers",
                    count(&body, "["),
                    count(&body, "1") - count(&body, "[1")
                ),
                body,
                decode: Decode::Patch(PatchKind::Merge),
                accepted: true,
            }
        },
        || Case {
            label: format!("JSON patch, {MAX_JSON_PATCH_OPERATIONS} add operations"),
            body: fill(|n| {
                let value = "QUFB".repeat(n / MAX_JSON_PATCH_OPERATIONS / 4);
                let ops: Vec<String> = (0..MAX_JSON_PATCH_OPERATIONS)
                    .map(|i| format!(r#"{{"op":"add","path":"/data/k{i}","value":"{value}"}}"#))
                    .collect();
                format!("[{}]", ops.join(","))
            }),
            decode: Decode::Patch(PatchKind::Json),
            accepted: true,
        },
        || {
            let body = fill(|n| {
                let data = members("key-", n, |_| r#""QUFBQQ==""#.to_owned());
                format!(
                    r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"big"}},"data":{{{data}}}}}"#
                )
            });
            Case {
                label: format!(
                    "apply patch (JSON), data of {} keys",
                    count(&body, "\"key-")
                ),
                body,
                decode: Decode::Patch(PatchKind::Apply),
                accepted: true,
            }
        },
        || {
            let body = fill(|n| {
                let data = members("key-", n, |_| r#""QUFBQQ==""#.to_owned());
                secret_json("", &format!(r#","data":{{{data},"key-0":"QUFBQQ=="}}"#))
            });
            Case {
                label: format!(
                    "refused: a duplicate key after {} keys",
                    count(&body, "\"key-") - 1
                ),
                body,
                decode: Decode::Secret(JSON),
                accepted: false,
            }
        },
        || Case {
            label: "refused: 3 MiB of [ (apply patch)".to_owned(),
            body: vec![b'['; LIMIT],
            decode: Decode::Patch(PatchKind::Apply),
            accepted: false,
        },
    ]
}

fn plain_json() -> Vec<u8> {
    let body = serde_json::to_vec(&plain_secret()).unwrap();
    assert!(body.len() <= LIMIT);
    body
}

/// A Secret whose one managedFields entry has `fields` as its fieldsV1.
fn managed(fields: &str) -> String {
    secret_json(
        &format!(
            r#","managedFields":[{{"manager":"m","operation":"Update","fieldsType":"FieldsV1","fieldsV1":{fields}}}]"#
        ),
        "",
    )
}

/// Decodes `case`'s body once, as the relay does; returns the seconds it took.
fn run(case: &Case) -> f64 {
    let start = Instant::now();
    let accepted = match case.decode {
        Decode::Baseline => black_box(serde_json::from_slice::<Secret>(&case.body)).is_ok(),
        Decode::Secret(content_type) => {
            black_box(decode_secret(Some(content_type), &case.body)).is_ok()
        }
        Decode::Patch(kind) => black_box(decode_patch_value(kind, &case.body)).is_ok(),
    };
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(accepted, case.accepted, "{}", case.label);
    settle();
    seconds
}

/// Outside the clock: a mid-sized allocation makes glibc consolidate the small chunks
/// the last decode freed, a cost that would otherwise land on the next case timed.
fn settle() {
    drop(black_box(vec![0u8; 64 * 1024]));
}

/// Decodes `case`'s JSON body with serde_json alone, as the relay did before (a
/// Secret, or a patch to a `Value`); returns the seconds it took. `None` for protobuf.
fn run_serde_alone(case: &Case) -> Option<f64> {
    let start = Instant::now();
    match case.decode {
        Decode::Baseline | Decode::Secret(JSON) => {
            let _ = black_box(serde_json::from_slice::<Secret>(&case.body));
        }
        Decode::Secret(_) => return None,
        Decode::Patch(_) => {
            let _ = black_box(serde_json::from_slice::<serde_json::Value>(&case.body));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    settle();
    Some(seconds)
}

/// A line of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// In a child process: builds case `index` alone, resets the peak RSS, decodes the body
/// once and prints how far the peak rose above the RSS before the decode, in KiB.
fn measure_memory(index: usize) {
    let case = cases()[index]();
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmRSS:");
    let decoded = match case.decode {
        Decode::Baseline => serde_json::from_slice::<Secret>(&case.body).is_ok(),
        Decode::Secret(content_type) => decode_secret(Some(content_type), &case.body).is_ok(),
        Decode::Patch(kind) => decode_patch_value(kind, &case.body).is_ok(),
    };
    assert_eq!(decoded, case.accepted);
    println!("{}", status_kib("VmHWM:").saturating_sub(before));
}

/// Runs `measure_memory(index)` in a child process; the peak rise in MiB, if measured.
fn memory_mib(index: usize) -> Option<f64> {
    let out = Command::new(std::env::current_exe().ok()?)
        .env("BODY_BENCH_MEMORY_CASE", index.to_string())
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let kib: f64 = String::from_utf8(out.stdout).ok()?.trim().parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    if let Ok(index) = std::env::var("BODY_BENCH_MEMORY_CASE") {
        measure_memory(index.parse().unwrap());
        return;
    }
    let rounds: usize = env("BODY_BENCH_ROUNDS", "21").parse().unwrap();
    let core = env("BODY_BENCH_CORE", "1");
    let pinned = Command::new("taskset")
        .args(["-p", "-c", &core, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let only = std::env::var("BODY_BENCH_ONLY").ok();
    // Each case with its index among all cases (a memory measure builds it by index).
    let cases: Vec<(usize, Case)> = cases()
        .into_iter()
        .map(|build| build())
        .enumerate()
        .filter(|(i, c)| *i == 0 || only.as_ref().is_none_or(|o| c.label.contains(o.as_str())))
        .collect();
    for (_, case) in &cases {
        run(case); // warm-up, and a check that each body is accepted or refused as labelled
    }
    let mut times = vec![Vec::with_capacity(rounds); cases.len()];
    let mut serde_times = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (i, (_, case)) in cases.iter().enumerate() {
            times[i].push(run(case));
            if let Some(t) = run_serde_alone(case) {
                serde_times[i].push(t);
            }
        }
    }
    let medians: Vec<f64> = times.into_iter().map(median).collect();
    let serde_medians: Vec<Option<f64>> = serde_times
        .into_iter()
        .map(|t| (!t.is_empty()).then(|| median(t)))
        .collect();
    let baseline = medians[0];
    println!(
        "body decode, median of {rounds} rounds, {} (limit {LIMIT} bytes):",
        if pinned {
            format!("pinned to core {core}")
        } else {
            "not pinned".to_owned()
        }
    );
    println!(
        "| body | bytes | median | MiB/s | vs baseline | serde_json alone, same body | peak memory |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, ((index, case), m)) in cases.iter().zip(&medians).enumerate() {
        let alone = serde_medians[i]
            .map(|s| format!("{:.2} ms", s * 1e3))
            .unwrap_or_else(|| "-".to_owned());
        let memory = memory_mib(*index)
            .map(|m| format!("{m:.0} MiB"))
            .unwrap_or_else(|| "-".to_owned());
        println!(
            "| {} | {} | {:.2} ms | {:.0} | {:.2} | {alone} | {memory} |",
            case.label,
            case.body.len(),
            m * 1e3,
            case.body.len() as f64 / m / (1024.0 * 1024.0),
            m / baseline
        );
    }
}
