//! The policy model: [`Policy`] and the parts it is made of, the built-in
//! blocked lists, and the per-cluster index of Secret Sources that up-sync
//! decisions read. A `Policy` is built only by `validate`, from a document
//! without a problem, or as [`Policy::default`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use k8s_openapi::api::core::v1::Secret;

use crate::carry::StripMetadata;
use crate::keys;
use crate::meta;
use crate::selector::{Operator, Selector, is_dns_label};

/// The Secret in the control-plane namespace where the relay keeps an adopted
/// secret's own labels and annotations until it returns (see the relay's
/// `handback`): blocked, so no cluster sees or writes it.
pub const HANDBACK_SECRET: &str = "secret-relay-handback";
/// The Secret in the agent namespace the agent's own certificate, key and relay CA
/// are mounted from (`manifests/managed-cluster/agent.yaml`): blocked, so the agent
/// never pushes its own key up, and no hub copy ever becomes a down copy of that
/// name (in the gap of a rotation by delete and create it would hand the agent
/// another cluster's identity and another CA to trust).
pub const AGENT_TLS_SECRET: &str = "secret-relay-agent-tls";
/// Names that are always blocked.
pub const BUILTIN_BLOCKED_NAMES: [&str; 4] = [
    "argocd-secret",
    "argocd-initial-admin-secret",
    HANDBACK_SECRET,
    AGENT_TLS_SECRET,
];
/// Secret types that are always blocked.
pub const BUILTIN_BLOCKED_TYPES: [&str; 1] = ["kubernetes.io/service-account-token"];
/// Labels (key, value) that always block a Secret.
pub const BUILTIN_BLOCKED_LABELS: [(&str, &str); 1] = [(keys::SECRET_TYPE_LABEL, "cluster")];
/// Default control-plane namespace.
pub const DEFAULT_CONTROL_PLANE_NAMESPACE: &str = "argocd";
/// Default agent namespace on managed clusters.
pub const DEFAULT_AGENT_NAMESPACE: &str = "akuity";
/// The ConfigMap key that holds the policy document.
pub const POLICY_KEY: &str = "policy.yaml";
/// Longest cluster name: `cluster.<name>` must fit a 63-character label value.
pub const MAX_CLUSTER_NAME_LEN: usize = 55;

/// A validated policy. Cheap to share behind an `Arc`; build it with
/// [`Policy::from_yaml`] or [`Policy::from_configmap_data`].
///
/// Secret Sources are indexed per cluster at build time, so an up-sync
/// decision only looks at the sources whose cluster selector matches the
/// cluster.
#[derive(Clone, Debug)]
pub struct Policy {
    control_plane_namespace: String,
    agent_namespace: String,
    clusters: Vec<Cluster>,
    cluster_index: HashMap<String, usize>,
    sources: Vec<SecretSource>,
    /// Per cluster (same order as `clusters`), the sources whose cluster
    /// selector matches it, in document order.
    candidates: Vec<Vec<u32>>,
    extra_blocked: ExtraBlocked,
    break_glass: BreakGlass,
    strip_metadata: StripMetadata,
}

/// A registered cluster: its name and the labels cluster selectors match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster name (a DNS label of at most 55 characters).
    pub name: String,
    /// Labels matched by cluster selectors.
    pub labels: BTreeMap<String, String>,
}

/// An allow rule for up-sync. An empty selector matches everything, but
/// never both at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSource {
    /// Which clusters (by their registry labels) this source covers.
    pub cluster_selector: Selector,
    /// Which Secrets (by their labels) this source covers.
    pub label_selector: Selector,
}

/// Users and groups exempt from every secret-relay rule (every use is logged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BreakGlass {
    /// Exempt user names.
    pub users: BTreeSet<String>,
    /// Exempt groups.
    pub groups: BTreeSet<String>,
}

/// Additions to the built-in blocked list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtraBlocked {
    /// Blocked Secret names.
    pub names: BTreeSet<String>,
    /// Blocked Secret types.
    pub types: BTreeSet<String>,
    /// Blocked labels: `key=value`, or `key` for any value.
    pub labels: Vec<BlockedLabel>,
}

/// A blocked label: the key with a value, or the key with any value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedLabel {
    /// The label key.
    pub key: String,
    /// The value, or `None` for any value.
    pub value: Option<String>,
}

/// Why a Secret is blocked. `Display` gives e.g. `name argocd-secret`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockedBy {
    /// Its name is blocked.
    Name(String),
    /// Its type is blocked.
    Type(String),
    /// One of its labels is blocked.
    Label {
        /// The label key.
        key: String,
        /// The label value it carries.
        value: String,
    },
}

impl Policy {
    /// A policy of parts already validated; it sorts the clusters and indexes
    /// the Secret Sources.
    pub(super) fn build(
        control_plane_namespace: String,
        agent_namespace: String,
        mut clusters: Vec<Cluster>,
        sources: Vec<SecretSource>,
        extra_blocked: ExtraBlocked,
        break_glass: BreakGlass,
        strip_metadata: StripMetadata,
    ) -> Policy {
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        let cluster_index = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let candidates = index_sources(&clusters, &sources);
        Policy {
            control_plane_namespace,
            agent_namespace,
            clusters,
            cluster_index,
            sources,
            candidates,
            extra_blocked,
            break_glass,
            strip_metadata,
        }
    }

    /// The control-plane namespace (default `argocd`).
    pub fn control_plane_namespace(&self) -> &str {
        &self.control_plane_namespace
    }

    /// The agent namespace on managed clusters (default `akuity`).
    pub fn agent_namespace(&self) -> &str {
        &self.agent_namespace
    }

    /// The registered cluster with this name.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.cluster_index.get(name).map(|&i| &self.clusters[i])
    }

    /// Every registered cluster, sorted by name.
    pub fn clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters.iter()
    }

    /// Every Secret Source, in document order.
    pub fn sources(&self) -> &[SecretSource] {
        &self.sources
    }

    /// The break-glass users and groups.
    pub fn break_glass(&self) -> &BreakGlass {
        &self.break_glass
    }

    /// What the policy strips from copies beside the built-in rule
    /// ([`crate::carry`]).
    pub fn strip_metadata(&self) -> &StripMetadata {
        &self.strip_metadata
    }

    /// Additions to the built-in blocked list.
    pub fn extra_blocked(&self) -> &ExtraBlocked {
        &self.extra_blocked
    }

    /// Why `secret` is blocked (built-ins first, then `extraBlocked`), if it is.
    pub fn blocked(&self, secret: &Secret) -> Option<BlockedBy> {
        let name = meta::name(&secret.metadata);
        if BUILTIN_BLOCKED_NAMES.contains(&name) || self.extra_blocked.names.contains(name) {
            return Some(BlockedBy::Name(name.to_owned()));
        }
        if let Some(ty) = secret.type_.as_deref()
            && (BUILTIN_BLOCKED_TYPES.contains(&ty) || self.extra_blocked.types.contains(ty))
        {
            return Some(BlockedBy::Type(ty.to_owned()));
        }
        let labels = secret.metadata.labels.as_ref()?;
        for (key, value) in BUILTIN_BLOCKED_LABELS {
            if labels.get(key).is_some_and(|v| v == value) {
                return Some(BlockedBy::Label {
                    key: key.to_owned(),
                    value: value.to_owned(),
                });
            }
        }
        for b in &self.extra_blocked.labels {
            if let Some(v) = labels.get(&b.key)
                && b.value.as_ref().is_none_or(|want| want == v)
            {
                return Some(BlockedBy::Label {
                    key: b.key.clone(),
                    value: v.clone(),
                });
            }
        }
        None
    }

    /// The index of the first Secret Source that allows a Secret with
    /// `labels` from `cluster`, looking only at the sources indexed for that
    /// cluster. `None` if the cluster is unknown or no source matches.
    pub fn matching_source(
        &self,
        cluster: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<usize> {
        let &ci = self.cluster_index.get(cluster)?;
        self.candidates[ci]
            .iter()
            .map(|&i| i as usize)
            .find(|&i| self.sources[i].label_selector.matches(labels))
    }

    /// The same answer as [`Policy::matching_source`] by scanning every
    /// source; the baseline the index is measured and tested against.
    pub fn matching_source_full_scan(
        &self,
        cluster: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<usize> {
        let c = self.cluster(cluster)?;
        self.sources
            .iter()
            .position(|s| s.cluster_selector.matches(&c.labels) && s.label_selector.matches(labels))
    }

    /// How many sources are indexed as candidates for `cluster`.
    pub fn candidate_count(&self, cluster: &str) -> usize {
        self.cluster_index
            .get(cluster)
            .map_or(0, |&i| self.candidates[i].len())
    }
}

impl Default for Policy {
    /// Default namespaces, no clusters, no sources, nothing extra blocked,
    /// no break-glass users.
    fn default() -> Self {
        Policy::build(
            DEFAULT_CONTROL_PLANE_NAMESPACE.to_owned(),
            DEFAULT_AGENT_NAMESPACE.to_owned(),
            Vec::new(),
            Vec::new(),
            ExtraBlocked::default(),
            BreakGlass::default(),
            StripMetadata::default(),
        )
    }
}

impl fmt::Display for BlockedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockedBy::Name(n) => write!(f, "name {n}"),
            BlockedBy::Type(t) => write!(f, "type {t}"),
            BlockedBy::Label { key, value } => write!(f, "label {key}={value}"),
        }
    }
}

/// Whether `name` is a valid cluster name: a DNS label of at most
/// [`MAX_CLUSTER_NAME_LEN`] characters (so `cluster.<name>` fits a label value).
pub fn is_valid_cluster_name(name: &str) -> bool {
    name.len() <= MAX_CLUSTER_NAME_LEN && is_dns_label(name)
}

/// Per cluster, the sources whose cluster selector matches it. Sources whose
/// cluster selector has an `=` or `in` requirement are found through an
/// inverted index on that requirement's (key, value) pairs, so building costs
/// about clusters x labels x bucket size, not clusters x sources.
fn index_sources(clusters: &[Cluster], sources: &[SecretSource]) -> Vec<Vec<u32>> {
    let mut by_label: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
    let mut unanchored: Vec<u32> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        let anchor = s
            .cluster_selector
            .requirements()
            .iter()
            .find(|r| matches!(r.operator(), Operator::Equals | Operator::In));
        match anchor {
            Some(r) => {
                for v in r.values() {
                    by_label.entry((r.key(), v.as_str())).or_default().push(i);
                }
            }
            None => unanchored.push(i),
        }
    }
    clusters
        .iter()
        .map(|c| {
            let mut found: Vec<u32> = unanchored.clone();
            for (k, v) in &c.labels {
                if let Some(bucket) = by_label.get(&(k.as_str(), v.as_str())) {
                    found.extend_from_slice(bucket);
                }
            }
            found.sort_unstable();
            found.dedup();
            found.retain(|&i| sources[i as usize].cluster_selector.matches(&c.labels));
            found
        })
        .collect()
}
