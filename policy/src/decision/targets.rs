//! The target annotations of a hub copy (`allowed-clusters`,
//! `allowed-cluster-selector`): how they read, and what is wrong with them,
//! down to the registered name an unregistered one was probably meant to be.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::document::Policy;
use crate::keys;
use crate::meta;
use crate::selector::Selector;

/// What is wrong with hub copy `hub`'s down-sync annotations, one sentence
/// each: a blank `allowed-clusters` or `allowed-cluster-selector`, a
/// selector that does not parse, or names in `allowed-clusters` that are not
/// registered in `policy` (a typo such as `clsuter2`, with the registered
/// names nearest to it). Each such annotation or name adds no cluster; the
/// rest of the annotations still count. The webhook returns these as
/// warnings; [`down_sync`](super::down_sync) names them in its reason.
pub fn down_sync_problems(policy: &Policy, hub: &Secret) -> Vec<String> {
    annotation_problems(policy, &list_annotation(hub), &selector_annotation(hub))
}

/// The parsed `allowed-cluster-selector` annotation: `Ok(None)` when absent
/// or blank (see [`down_sync_problems`] to tell them apart).
pub fn allowed_selector(hub: &Secret) -> Result<Option<Selector>, crate::SelectorParseError> {
    match meta::annotation(&hub.metadata, keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION) {
        Some(s) if !s.trim().is_empty() => Selector::parse(s).map(Some),
        _ => Ok(None),
    }
}

/// The `allowed-clusters` annotation.
pub(super) enum ListAnnotation {
    Absent,
    /// Present, but empty or only commas and spaces.
    Blank,
    All,
    Names(Vec<String>),
}

/// The `allowed-cluster-selector` annotation.
pub(super) enum SelectorAnnotation {
    Absent,
    /// Present, but empty or only spaces.
    Blank,
    Invalid(crate::SelectorParseError),
    Valid(Selector),
}

impl ListAnnotation {
    pub(super) fn includes(&self, name: &str) -> bool {
        match self {
            ListAnnotation::All => true,
            ListAnnotation::Names(n) => n.iter().any(|x| x == name),
            ListAnnotation::Absent | ListAnnotation::Blank => false,
        }
    }

    pub(super) fn names_something(&self) -> bool {
        matches!(self, ListAnnotation::All | ListAnnotation::Names(_))
    }
}

impl SelectorAnnotation {
    pub(super) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            SelectorAnnotation::Valid(s) => s.matches(labels),
            _ => false,
        }
    }
}

pub(super) fn list_annotation(hub: &Secret) -> ListAnnotation {
    let Some(raw) = meta::annotation(&hub.metadata, keys::ALLOWED_CLUSTERS_ANNOTATION) else {
        return ListAnnotation::Absent;
    };
    let names: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        ListAnnotation::Blank
    } else if names.iter().any(|n| n == "ALL") {
        ListAnnotation::All
    } else {
        ListAnnotation::Names(names)
    }
}

pub(super) fn selector_annotation(hub: &Secret) -> SelectorAnnotation {
    match meta::annotation(&hub.metadata, keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION) {
        None => SelectorAnnotation::Absent,
        Some(s) if s.trim().is_empty() => SelectorAnnotation::Blank,
        Some(s) => match Selector::parse(s) {
            Ok(sel) => SelectorAnnotation::Valid(sel),
            Err(e) => SelectorAnnotation::Invalid(e),
        },
    }
}

pub(super) fn annotation_problems(
    policy: &Policy,
    list: &ListAnnotation,
    selector: &SelectorAnnotation,
) -> Vec<String> {
    let mut out = Vec::new();
    match list {
        ListAnnotation::Blank => out.push(format!(
            "the annotation {} is blank, so it names no cluster: list cluster names (comma-separated) or ALL, or remove it",
            keys::ALLOWED_CLUSTERS_ANNOTATION
        )),
        ListAnnotation::Names(names) => out.extend(unregistered_names_problem(policy, names)),
        ListAnnotation::Absent | ListAnnotation::All => {}
    }
    match selector {
        SelectorAnnotation::Blank => out.push(format!(
            "the annotation {} is blank, so it selects no cluster: write a selector such as env=prod, or remove it",
            keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
        )),
        SelectorAnnotation::Invalid(e) => out.push(format!(
            "the annotation {} does not parse ({e}), so it selects no cluster: fix it",
            keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
        )),
        SelectorAnnotation::Absent | SelectorAnnotation::Valid(_) => {}
    }
    out
}

/// How many unregistered names one problem quotes; kube-apiserver may
/// truncate a warning past 256 characters.
const MAX_UNREGISTERED_SHOWN: usize = 3;

/// One sentence for the names in `allowed-clusters` that are not registered
/// clusters, each with the registered names nearest to it; `None` when every
/// name is registered.
fn unregistered_names_problem(policy: &Policy, names: &[String]) -> Option<String> {
    let mut unknown: Vec<&str> = Vec::new();
    for n in names {
        if policy.cluster(n).is_none() && !unknown.contains(&n.as_str()) {
            unknown.push(n);
        }
    }
    if unknown.is_empty() {
        return None;
    }
    let mut shown: Vec<String> = unknown
        .iter()
        .take(MAX_UNREGISTERED_SHOWN)
        .map(|n| {
            let near = nearest_clusters(policy, n);
            if near.is_empty() {
                printable(n)
            } else {
                format!("{} (did you mean {}?)", printable(n), near.join(" or "))
            }
        })
        .collect();
    if unknown.len() > MAX_UNREGISTERED_SHOWN {
        shown.push(format!("{} more", unknown.len() - MAX_UNREGISTERED_SHOWN));
    }
    let (list, what) = match shown.as_slice() {
        [one] => (one.clone(), "which is not a registered cluster"),
        [init @ .., last] => (
            format!("{} and {last}", init.join(", ")),
            "which are not registered clusters",
        ),
        [] => return None,
    };
    Some(format!(
        "the annotation {} names {list}, {what}, so nothing goes there: fix the name or register the cluster",
        keys::ALLOWED_CLUSTERS_ANNOTATION
    ))
}

/// The registered cluster names (or `ALL`) nearest to `name` by edit
/// distance, ignoring case, when near enough to be a typo of it; at most
/// three, sorted.
fn nearest_clusters(policy: &Policy, name: &str) -> Vec<String> {
    if name.eq_ignore_ascii_case("ALL") {
        return vec!["ALL".to_owned()];
    }
    let wanted: Vec<char> = name.to_lowercase().chars().collect();
    // A typo changes a few characters; a name three edits away or more than
    // a third changed is another name.
    let limit = (wanted.len() / 3).clamp(1, 2);
    let mut best: Option<usize> = None;
    let mut near: Vec<String> = Vec::new();
    for c in policy.clusters() {
        let candidate: Vec<char> = c.name.to_lowercase().chars().collect();
        let d = edit_distance(&wanted, &candidate);
        if d > limit || best.is_some_and(|b| d > b) {
            continue;
        }
        if best.is_none_or(|b| d < b) {
            best = Some(d);
            near.clear();
        }
        near.push(c.name.clone());
    }
    near.sort();
    near.truncate(3);
    near
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and swaps of two neighbours (`clsuter2` is one edit from `cluster2`).
pub(super) fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// `name` as written when it is plain text, otherwise quoted with escapes,
/// so a problem (and the warning made of it) stays one printable line.
fn printable(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_graphic()) {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}
