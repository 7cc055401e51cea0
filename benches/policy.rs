//! Policy decisions: selector matching and an up-sync decision at 1,000
//! clusters x 1,000 Secret Sources, each beside a baseline measured in the
//! same run (a hand-written match; the same decision scanning every source).
//!
//! `cargo bench --bench policy`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use secret_relay_policy::{Policy, Secret, Selector, up_sync, up_sync_full_scan};

const CLUSTERS: usize = 1_000;
const SOURCES: usize = 1_000;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// 1,000 clusters with id, env and region labels; 1,000 sources: most name
/// a pair of clusters by id, every 50th selects by env, every 100th has only
/// a label selector (so it applies to every cluster).
fn big_policy() -> String {
    let envs = ["prod", "staging", "dev"];
    let mut doc = String::from("clusters:\n");
    for i in 0..CLUSTERS {
        doc.push_str(&format!(
            "  - {{ name: cluster-{i}, labels: {{ id: cluster-{i}, env: {}, region: r{} }} }}\n",
            envs[i % 3],
            i % 10
        ));
    }
    doc.push_str("secretSources:\n");
    for j in 0..SOURCES {
        if j % 100 == 99 {
            doc.push_str(&format!(
                "  - {{ labelSelector: \"argocd.argoproj.io/secret-type in (repo-creds),shard=s{j}\" }}\n"
            ));
        } else if j % 50 == 49 {
            doc.push_str(&format!(
                "  - {{ clusterSelector: \"env in (prod,staging),region!=r{}\", labelSelector: \"app=app-{j}\" }}\n",
                j % 10
            ));
        } else {
            doc.push_str(&format!(
                "  - {{ clusterSelector: \"id in (cluster-{j},cluster-{})\", labelSelector: \"team=team-{j},tier notin (test)\" }}\n",
                (j + 1) % CLUSTERS
            ));
        }
    }
    doc
}

fn cluster_secret(extra: &[(&str, &str)]) -> Secret {
    let mut l = labels(&[("akuity.io/secret-sync", "true"), ("tier", "backend")]);
    l.extend(labels(extra));
    let mut s = Secret::default();
    s.metadata.name = Some("repo".to_owned());
    s.metadata.namespace = Some("akuity".to_owned());
    s.metadata.labels = Some(l);
    s
}

fn selector_matching(c: &mut Criterion) {
    let sel =
        Selector::parse("env in (prod,staging),tier!=web,team,!legacy").expect("valid selector");
    let l = labels(&[
        ("app", "billing"),
        ("env", "staging"),
        ("region", "eu-west-1"),
        ("team", "payments"),
        ("tier", "backend"),
        ("version", "v2"),
    ]);
    assert!(sel.matches(&l));
    let hand_written = |l: &BTreeMap<String, String>| {
        l.get("env").is_some_and(|v| v == "prod" || v == "staging")
            && l.get("tier").is_none_or(|v| v != "web")
            && l.contains_key("team")
            && !l.contains_key("legacy")
    };
    assert!(hand_written(&l));
    let mut g = c.benchmark_group("selector-match");
    g.bench_function("selector", |b| {
        b.iter(|| black_box(&sel).matches(black_box(&l)))
    });
    g.bench_function("baseline-hand-written", |b| {
        b.iter(|| hand_written(black_box(&l)))
    });
    g.bench_function("parse", |b| {
        b.iter(|| Selector::parse(black_box("env in (prod,staging),tier!=web,team,!legacy")))
    });
    g.finish();
}

fn up_sync_decision(c: &mut Criterion) {
    let policy = Policy::from_yaml(&big_policy()).expect("valid policy");
    // cluster-500 is selected by sources 499 and 500, by the env sources
    // (staging) and by the label-only sources.
    let cluster = "cluster-500";
    let hit = cluster_secret(&[("team", "team-500")]);
    let miss = cluster_secret(&[("team", "nobody")]);
    for (s, allowed) in [(&hit, true), (&miss, false)] {
        let d = up_sync(&policy, cluster, s, None);
        assert_eq!(d.allowed, allowed, "{}", d.reason);
        assert_eq!(d, up_sync_full_scan(&policy, cluster, s, None));
    }
    println!(
        "policy: {CLUSTERS} clusters x {SOURCES} sources; {} candidate sources indexed for {cluster}",
        policy.candidate_count(cluster)
    );

    let mut g = c.benchmark_group("up-sync-1000x1000");
    g.bench_function("indexed-allowed", |b| {
        b.iter(|| up_sync(black_box(&policy), cluster, black_box(&hit), None))
    });
    g.bench_function("baseline-full-scan-allowed", |b| {
        b.iter(|| up_sync_full_scan(black_box(&policy), cluster, black_box(&hit), None))
    });
    g.bench_function("indexed-denied", |b| {
        b.iter(|| up_sync(black_box(&policy), cluster, black_box(&miss), None))
    });
    g.bench_function("baseline-full-scan-denied", |b| {
        b.iter(|| up_sync_full_scan(black_box(&policy), cluster, black_box(&miss), None))
    });
    g.finish();

    let doc = big_policy();
    let mut g = c.benchmark_group("policy-build-1000x1000");
    g.sample_size(10);
    g.bench_function("from-yaml-with-index", |b| {
        b.iter(|| Policy::from_yaml(black_box(&doc)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = selector_matching, up_sync_decision
}
criterion_main!(benches);
