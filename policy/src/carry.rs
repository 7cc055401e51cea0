//! Which labels and annotations cross between clusters: one rule for both
//! directions, so a copy never carries what makes a tool on the other side
//! take it for one of its own resources.
//!
//! Never carried, either way:
//! - tool ownership: Helm's (`meta.helm.sh/*` and `helm.sh/*` annotations,
//!   `helm.sh/chart` and `app.kubernetes.io/managed-by` labels), Argo CD's
//!   tracking (`app.kubernetes.io/instance` label, `argocd.argoproj.io/*`
//!   annotations such as `tracking-id`, `sync-wave` and `hook`, and its labels
//!   but `argocd.argoproj.io/secret-type`, such as a configured instance label),
//!   Flux's (`kustomize.toolkit.fluxcd.io/*`, `helm.toolkit.fluxcd.io/*`), kapp's
//!   (`kapp.k14s.io/*`), kubectl's apply set (`applyset.kubernetes.io/part-of`) and
//!   `kubectl.kubernetes.io/last-applied-configuration`;
//! - what makes a replicator on the other side copy the Secret on, or copy another
//!   Secret into it (`replicator.v1.mittwald.de/*`,
//!   `reflector.v1.k8s.emberstack.com/*` annotations);
//! - secret-relay's own stamps (`secret-relay.io/*`): each side stamps its own.
//!
//! Down copies also drop the opt-in label (a down copy never syncs back up)
//! and the target annotations (`allowed-clusters`, `allowed-cluster-selector`:
//! they say where the hub copy goes, not the copy). Up, both stay: the relay
//! judges the opt-in label, and the target annotations send a cluster's
//! Secret on to other clusters.
//!
//! The policy's `stripMetadata` adds keys or `prefix/` entries to strip; it
//! never removes one of these.

use std::collections::BTreeMap;

use crate::keys;

/// Which way a copy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A cluster's Secret to its hub copy.
    Up,
    /// A hub copy to a cluster's down copy.
    Down,
}

/// Labels never carried: exact keys.
pub const STRIPPED_LABELS: [&str; 3] = [
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "applyset.kubernetes.io/part-of",
];

/// Label key prefixes never carried (`argocd.argoproj.io/secret-type` is
/// Argo CD's meaning of the Secret, not its tracking: it crosses).
pub const STRIPPED_LABEL_PREFIXES: [&str; 6] = [
    "helm.sh/",
    "argocd.argoproj.io/",
    "kustomize.toolkit.fluxcd.io/",
    "helm.toolkit.fluxcd.io/",
    "kapp.k14s.io/",
    "secret-relay.io/",
];

/// Annotation key prefixes never carried.
pub const STRIPPED_ANNOTATION_PREFIXES: [&str; 9] = [
    "meta.helm.sh/",
    "helm.sh/",
    "argocd.argoproj.io/",
    "kustomize.toolkit.fluxcd.io/",
    "helm.toolkit.fluxcd.io/",
    "kapp.k14s.io/",
    "replicator.v1.mittwald.de/",
    "reflector.v1.k8s.emberstack.com/",
    "secret-relay.io/",
];

/// Annotations never carried: exact keys.
pub const STRIPPED_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

/// Labels a down copy drops beside the built-in ones.
pub const DOWN_ONLY_LABELS: [&str; 1] = [keys::SECRET_SYNC_LABEL];

/// Annotations a down copy drops beside the built-in ones.
pub const DOWN_ONLY_ANNOTATIONS: [&str; 2] = [
    keys::ALLOWED_CLUSTERS_ANNOTATION,
    keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION,
];

/// What the policy strips beside the built-in rule: exact keys, or prefixes
/// ending in `/` (every key under that prefix).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StripMetadata {
    /// Label keys or `prefix/` entries.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Annotation keys or `prefix/` entries.
    #[serde(default)]
    pub annotations: Vec<String>,
}

impl StripMetadata {
    /// Whether nothing is stripped beside the built-in rule.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

fn listed(entries: &[String], key: &str) -> bool {
    entries.iter().any(|e| {
        if e.ends_with('/') {
            key.starts_with(e.as_str())
        } else {
            e == key
        }
    })
}

fn prefixed(prefixes: &[&str], key: &str) -> bool {
    prefixes.iter().any(|p| key.starts_with(p))
}

/// Whether label `key` crosses in `direction`.
pub fn carries_label(key: &str, direction: Direction, extra: &StripMetadata) -> bool {
    // The opt-in label is secret-relay's own key but the relay judges it on the way up.
    if key == keys::SECRET_SYNC_LABEL {
        return direction == Direction::Up;
    }
    // Argo CD's meaning of the Secret (a repository, its credentials), not its
    // tracking: it crosses, and a Secret Source may select by it.
    if key == keys::SECRET_TYPE_LABEL {
        return !listed(&extra.labels, key);
    }
    !(STRIPPED_LABELS.contains(&key)
        || prefixed(&STRIPPED_LABEL_PREFIXES, key)
        || (direction == Direction::Down && DOWN_ONLY_LABELS.contains(&key))
        || listed(&extra.labels, key))
}

/// Whether annotation `key` crosses in `direction`.
pub fn carries_annotation(key: &str, direction: Direction, extra: &StripMetadata) -> bool {
    !(STRIPPED_ANNOTATIONS.contains(&key)
        || prefixed(&STRIPPED_ANNOTATION_PREFIXES, key)
        || (direction == Direction::Down && DOWN_ONLY_ANNOTATIONS.contains(&key))
        || listed(&extra.annotations, key))
}

/// The labels of `from` that cross in `direction`.
pub fn carried_labels(
    from: Option<&BTreeMap<String, String>>,
    direction: Direction,
    extra: &StripMetadata,
) -> BTreeMap<String, String> {
    kept(from, |k| carries_label(k, direction, extra))
}

/// The annotations of `from` that cross in `direction`.
pub fn carried_annotations(
    from: Option<&BTreeMap<String, String>>,
    direction: Direction,
    extra: &StripMetadata,
) -> BTreeMap<String, String> {
    kept(from, |k| carries_annotation(k, direction, extra))
}

/// The entries of `from` whose key `keep` keeps.
fn kept(
    from: Option<&BTreeMap<String, String>>,
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, String> {
    from.into_iter()
        .flatten()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Labels and annotations as `helm install` and an Argo CD Application leave
    /// them on a Secret.
    fn installed() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        (
            map(&[
                ("akuity.io/secret-sync", "true"),
                ("argocd.argoproj.io/secret-type", "repository"),
                ("app.kubernetes.io/managed-by", "Helm"),
                ("app.kubernetes.io/instance", "my-release"),
                ("helm.sh/chart", "repo-creds-1.2.3"),
                ("app.kubernetes.io/part-of", "platform"),
                ("team", "a"),
            ]),
            map(&[
                ("meta.helm.sh/release-name", "my-release"),
                ("meta.helm.sh/release-namespace", "akuity"),
                ("helm.sh/resource-policy", "keep"),
                ("argocd.argoproj.io/tracking-id", "app:/Secret:akuity/repo"),
                ("argocd.argoproj.io/sync-wave", "1"),
                ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
                ("secret-relay.io/digest", "sha256:00"),
                ("secret-relay.io/source", "u-1/7"),
                ("akuity.io/managed-secret-allowed-clusters", "cluster2"),
                ("note", "kept"),
            ]),
        )
    }

    #[test]
    fn tool_ownership_never_crosses_and_the_rest_does() {
        let (labels, annotations) = installed();
        let none = StripMetadata::default();
        assert_eq!(
            carried_labels(Some(&labels), Direction::Up, &none),
            map(&[
                ("akuity.io/secret-sync", "true"),
                ("argocd.argoproj.io/secret-type", "repository"),
                ("app.kubernetes.io/part-of", "platform"),
                ("team", "a"),
            ])
        );
        assert_eq!(
            carried_annotations(Some(&annotations), Direction::Up, &none),
            map(&[
                ("akuity.io/managed-secret-allowed-clusters", "cluster2"),
                ("note", "kept"),
            ])
        );
    }

    #[test]
    fn other_tools_tracking_and_replicators_never_cross() {
        let none = StripMetadata::default();
        for label in [
            "argocd.argoproj.io/instance",
            "applyset.kubernetes.io/part-of",
            "kustomize.toolkit.fluxcd.io/name",
            "helm.toolkit.fluxcd.io/namespace",
            "kapp.k14s.io/app",
        ] {
            for direction in [Direction::Up, Direction::Down] {
                assert!(!carries_label(label, direction, &none), "{label}");
            }
        }
        for annotation in [
            "replicator.v1.mittwald.de/replicate-to",
            "replicator.v1.mittwald.de/replicate-from",
            "reflector.v1.k8s.emberstack.com/reflects",
            "kapp.k14s.io/identity",
        ] {
            assert!(
                !carries_annotation(annotation, Direction::Down, &none),
                "{annotation}"
            );
        }
        // Argo CD's meaning of the Secret crosses; the policy may still strip it.
        assert!(carries_label(
            keys::SECRET_TYPE_LABEL,
            Direction::Down,
            &none
        ));
        let extra = StripMetadata {
            labels: vec![keys::SECRET_TYPE_LABEL.to_owned()],
            annotations: Vec::new(),
        };
        assert!(!carries_label(
            keys::SECRET_TYPE_LABEL,
            Direction::Up,
            &extra
        ));
    }

    #[test]
    fn a_down_copy_drops_the_opt_in_label_and_the_target_annotations() {
        let (labels, annotations) = installed();
        let none = StripMetadata::default();
        let down = carried_labels(Some(&labels), Direction::Down, &none);
        assert!(!down.contains_key("akuity.io/secret-sync"));
        assert!(down.contains_key("argocd.argoproj.io/secret-type"));
        assert_eq!(
            carried_annotations(Some(&annotations), Direction::Down, &none),
            map(&[("note", "kept")])
        );
    }

    #[test]
    fn the_policy_strips_more_by_key_or_prefix_never_less() {
        let (labels, annotations) = installed();
        let extra = StripMetadata {
            labels: vec!["team".to_owned(), "app.kubernetes.io/".to_owned()],
            annotations: vec!["note".to_owned()],
        };
        assert_eq!(
            carried_labels(Some(&labels), Direction::Up, &extra),
            map(&[
                ("akuity.io/secret-sync", "true"),
                ("argocd.argoproj.io/secret-type", "repository"),
            ])
        );
        assert_eq!(
            carried_annotations(Some(&annotations), Direction::Up, &extra),
            map(&[("akuity.io/managed-secret-allowed-clusters", "cluster2")])
        );
        // A prefix matches whole key prefixes only.
        assert!(carries_label("teams", Direction::Up, &extra));
    }
}
