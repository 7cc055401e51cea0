//! Sync decisions (up-sync, release, down-sync) with stable rule ids and
//! reasons a person can act on.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use serde::{Serialize, Serializer};

use crate::document::{BlockedBy, Policy};
use crate::keys;
use crate::selector::Selector;

/// Names of control-plane secrets a cluster may adopt (take ownership of).
pub const ADOPTABLE_NAMES: [&str; 3] = [
    "argocd-notifications-secret",
    "argocd-image-updater-secret",
    "application-set-secret",
];

/// An allow/deny answer with the rule that decided it and a reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the action is allowed.
    pub allowed: bool,
    /// The rule that decided.
    pub rule: Rule,
    /// What happened and, for a denial, what to change and where.
    pub reason: String,
}

/// Stable machine-readable rule ids; `as_str` and `Serialize` give the kebab-case id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// The Secret's name is blocked.
    BlockedName,
    /// The Secret's type is blocked.
    BlockedType,
    /// One of the Secret's labels is blocked.
    BlockedLabel,
    /// The cluster is not in the policy's registry.
    UnknownCluster,
    /// The Secret is not in the namespace this direction works on.
    WrongNamespace,
    /// The Secret lacks the opt-in label.
    NotOptedIn,
    /// No Secret Source allows the Secret from the cluster.
    NoMatchingSource,
    /// The hub copy belongs to another cluster.
    OwnedByOtherCluster,
    /// The hub copy belongs to the control plane and cannot be adopted.
    OwnedByControlPlane,
    /// Up-sync creates a new hub copy.
    UpSyncNew,
    /// Up-sync updates the cluster's own hub copy.
    UpSyncOwner,
    /// Up-sync adopts an adoptable control-plane secret.
    Adopt,
    /// Release deletes the hub copy the cluster created.
    ReleaseDelete,
    /// Release returns an adopted secret to the control plane.
    ReleaseReturn,
    /// Release refused: the cluster does not own the hub copy.
    ReleaseNotOwner,
    /// Down-sync sends the hub copy to one or more clusters.
    DownSync,
    /// Down-sync does not send the hub copy to this cluster.
    DownSyncNotTarget,
    /// Down-sync has no target at all.
    NoTargets,
    /// An annotation's cluster selector does not parse.
    InvalidSelector,
    /// Someone other than the webhook set or changed the owner label.
    OwnerLabelForged,
    /// The hub copy (or down copy) is locked to its owner.
    OwnershipLock,
    /// A break-glass user or group bypassed the rules.
    BreakGlass,
    /// Kubernetes' namespace deletion or garbage collection.
    SystemExempt,
    /// The object is outside the namespace secret-relay guards.
    OutOfScope,
    /// A write to a control-plane-owned Secret by a person or tool.
    ControlPlaneWrite,
    /// The agent writing its down copy.
    DownCopyAgent,
    /// The agent would take over a local Secret it did not create.
    DownSyncConflict,
    /// A down copy must not carry the opt-in label.
    DownCopyOptIn,
    /// The admission request lacks the object the rule needs.
    MissingObject,
    /// An operation the rules do not concern (e.g. CONNECT).
    NotApplicable,
}

/// What a release does to the hub copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseAction {
    /// Delete the hub copy (the cluster created it).
    Delete,
    /// Remove the owner label and adopted annotation, keep the data.
    ReturnToControlPlane,
}

/// A release decision; `action` is set when allowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReleaseDecision {
    /// The decision.
    pub decision: Decision,
    /// What to do with the hub copy when allowed.
    pub action: Option<ReleaseAction>,
}

/// Down-sync targets of a hub copy, sorted, and the decision explaining them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DownSync {
    /// Registered clusters that receive the hub copy, sorted by name.
    pub targets: Vec<String>,
    /// Allowed when there is at least one target.
    pub decision: Decision,
}

/// Who owns a hub copy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// No owner label: the control plane owns it.
    ControlPlane,
    /// `secret-relay.io/owner: cluster.<name>`.
    Cluster(String),
}

impl Rule {
    /// The stable kebab-case id.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::BlockedName => "blocked-name",
            Rule::BlockedType => "blocked-type",
            Rule::BlockedLabel => "blocked-label",
            Rule::UnknownCluster => "unknown-cluster",
            Rule::WrongNamespace => "wrong-namespace",
            Rule::NotOptedIn => "not-opted-in",
            Rule::NoMatchingSource => "no-matching-source",
            Rule::OwnedByOtherCluster => "owned-by-other-cluster",
            Rule::OwnedByControlPlane => "owned-by-control-plane",
            Rule::UpSyncNew => "up-sync-new",
            Rule::UpSyncOwner => "up-sync-owner",
            Rule::Adopt => "adopt",
            Rule::ReleaseDelete => "release-delete",
            Rule::ReleaseReturn => "release-return",
            Rule::ReleaseNotOwner => "release-not-owner",
            Rule::DownSync => "down-sync",
            Rule::DownSyncNotTarget => "down-sync-not-target",
            Rule::NoTargets => "no-targets",
            Rule::InvalidSelector => "invalid-selector",
            Rule::OwnerLabelForged => "owner-label-forged",
            Rule::OwnershipLock => "ownership-lock",
            Rule::BreakGlass => "break-glass",
            Rule::SystemExempt => "system-exempt",
            Rule::OutOfScope => "out-of-scope",
            Rule::ControlPlaneWrite => "control-plane-write",
            Rule::DownCopyAgent => "down-copy-agent",
            Rule::DownSyncConflict => "down-sync-conflict",
            Rule::DownCopyOptIn => "down-copy-opt-in",
            Rule::MissingObject => "missing-object",
            Rule::NotApplicable => "not-applicable",
        }
    }

    /// The rule for a blocked Secret.
    pub fn for_blocked(by: &BlockedBy) -> Rule {
        match by {
            BlockedBy::Name(_) => Rule::BlockedName,
            BlockedBy::Type(_) => Rule::BlockedType,
            BlockedBy::Label { .. } => Rule::BlockedLabel,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Decision {
    /// An allowing decision.
    pub fn allow(rule: Rule, reason: impl Into<String>) -> Decision {
        Decision {
            allowed: true,
            rule,
            reason: reason.into(),
        }
    }

    /// A denying decision.
    pub fn deny(rule: Rule, reason: impl Into<String>) -> Decision {
        Decision {
            allowed: false,
            rule,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allowed" } else { "denied" };
        write!(f, "{verdict} ({}): {}", self.rule, self.reason)
    }
}

impl Owner {
    /// The owner label value: `cluster.<name>`, or `control-plane`.
    pub fn label_value(&self) -> String {
        match self {
            Owner::ControlPlane => "control-plane".to_owned(),
            Owner::Cluster(c) => format!("{}{c}", keys::OWNER_CLUSTER_PREFIX),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::ControlPlane => f.write_str("the control plane"),
            Owner::Cluster(c) => write!(f, "cluster {c}"),
        }
    }
}

/// The owner of a hub copy, from its `secret-relay.io/owner` label: absent or
/// `control-plane` means the control plane; `cluster.<name>` that cluster.
/// Any other value is kept whole as a cluster name no registered cluster
/// has, so a malformed label locks rather than opens.
pub fn owner(hub: &Secret) -> Owner {
    match label(hub, keys::OWNER_LABEL) {
        None | Some("control-plane") => Owner::ControlPlane,
        Some(v) => match v.strip_prefix(keys::OWNER_CLUSTER_PREFIX) {
            Some(name) if !name.is_empty() => Owner::Cluster(name.to_owned()),
            _ => Owner::Cluster(v.to_owned()),
        },
    }
}

/// Whether a control-plane secret with this name may be adopted by a cluster.
pub fn is_adoptable(name: &str) -> bool {
    ADOPTABLE_NAMES.contains(&name)
}

/// Whether the hub copy carries `secret-relay.io/adopted: "true"`.
pub fn is_adopted(hub: &Secret) -> bool {
    annotation(hub, keys::ADOPTED_ANNOTATION) == Some("true")
}

/// `sha256:<hex>` over the canonical data: `data` with `stringData` merged
/// over it (as the API server does), keys sorted, each key and value
/// length-prefixed. Only the digest leaves this function, never the values.
pub fn digest(secret: &Secret) -> String {
    let mut merged: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        merged.insert(k, &v.0);
    }
    for (k, v) in secret.string_data.iter().flatten() {
        merged.insert(k, v.as_bytes());
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (k, v) in merged {
        ctx.update(&(k.len() as u64).to_be_bytes());
        ctx.update(k.as_bytes());
        ctx.update(&(v.len() as u64).to_be_bytes());
        ctx.update(v);
    }
    let hash = ctx.finish();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Up-sync of `secret` (in cluster `cluster`'s agent namespace) to the hub,
/// given the existing hub copy of the same name, if any.
pub fn up_sync(policy: &Policy, cluster: &str, secret: &Secret, hub: Option<&Secret>) -> Decision {
    up_sync_with(policy, cluster, secret, hub, Policy::matching_source)
}

/// [`up_sync`] finding the Secret Source by scanning every source instead of
/// the per-cluster index: the baseline the benchmarks measure it against.
#[doc(hidden)]
pub fn up_sync_full_scan(
    policy: &Policy,
    cluster: &str,
    secret: &Secret,
    hub: Option<&Secret>,
) -> Decision {
    up_sync_with(
        policy,
        cluster,
        secret,
        hub,
        Policy::matching_source_full_scan,
    )
}

type SourceLookup = fn(&Policy, &str, &BTreeMap<String, String>) -> Option<usize>;

fn up_sync_with(
    policy: &Policy,
    cluster: &str,
    secret: &Secret,
    hub: Option<&Secret>,
    lookup: SourceLookup,
) -> Decision {
    let name = secret.metadata.name.as_deref().unwrap_or("");
    let ns = secret.metadata.namespace.as_deref().unwrap_or("");
    let cp = policy.control_plane_namespace();
    let Some(c) = policy.cluster(cluster) else {
        return unknown_cluster(cluster);
    };
    if ns != policy.agent_namespace() {
        return Decision::deny(
            Rule::WrongNamespace,
            format!(
                "secret {ns}/{name} is not in the agent namespace {agent}: only Secrets in namespace {agent} of cluster {cluster} sync up; move it there",
                agent = policy.agent_namespace()
            ),
        );
    }
    if label(secret, keys::SECRET_SYNC_LABEL) != Some("true") {
        return Decision::deny(
            Rule::NotOptedIn,
            format!(
                "secret {ns}/{name} on cluster {cluster} does not opt in: add the label {}: \"true\" to sync it",
                keys::SECRET_SYNC_LABEL
            ),
        );
    }
    if let Some(d) = blocked_decision(policy, secret, &format!("secret {ns}/{name}")) {
        return d;
    }
    if let Some(h) = hub
        && let Some(d) = blocked_decision(policy, h, &format!("the hub copy {cp}/{name}"))
    {
        return d;
    }
    let empty = BTreeMap::new();
    let labels = secret.metadata.labels.as_ref().unwrap_or(&empty);
    let Some(source) = lookup(policy, cluster, labels) else {
        return Decision::deny(
            Rule::NoMatchingSource,
            format!(
                "no Secret Source allows secret {ns}/{name} from cluster {cluster}: add a secretSources entry to the secret-relay-policy ConfigMap whose clusterSelector matches the cluster's labels {{{}}} and whose labelSelector matches the Secret's labels {{{}}}",
                format_labels(&c.labels),
                format_labels(labels),
            ),
        );
    };
    let Some(h) = hub else {
        return Decision::allow(
            Rule::UpSyncNew,
            format!(
                "secret {ns}/{name} from cluster {cluster} is allowed by secretSources[{source}]; it creates the hub copy {cp}/{name}, owned by cluster {cluster}"
            ),
        );
    };
    match owner(h) {
        Owner::Cluster(o) if o == cluster => Decision::allow(
            Rule::UpSyncOwner,
            format!(
                "secret {ns}/{name} from cluster {cluster} is allowed by secretSources[{source}]; it updates the hub copy {cp}/{name}, which cluster {cluster} owns"
            ),
        ),
        Owner::Cluster(o) => Decision::deny(
            Rule::OwnedByOtherCluster,
            format!(
                "the hub copy {cp}/{name} is owned by cluster {o}: rename the Secret on cluster {cluster}, or release it on cluster {o} first (remove its {} label there)",
                keys::SECRET_SYNC_LABEL
            ),
        ),
        Owner::ControlPlane if is_adoptable(name) => Decision::allow(
            Rule::Adopt,
            format!(
                "secret {ns}/{name} from cluster {cluster} is allowed by secretSources[{source}]; cluster {cluster} adopts the control-plane secret {cp}/{name}, which returns to the control plane with its data when released"
            ),
        ),
        Owner::ControlPlane => Decision::deny(
            Rule::OwnedByControlPlane,
            format!(
                "{cp}/{name} is a control-plane secret and only {} can be adopted: rename the Secret on cluster {cluster}, or delete {cp}/{name} on the control plane",
                ADOPTABLE_NAMES.join(", ")
            ),
        ),
    }
}

/// Release of hub copy `hub` by cluster `cluster` (its Secret was deleted or
/// lost the opt-in label): an adopted secret returns to the control plane,
/// one the cluster created is deleted, and a copy it does not own is refused.
pub fn release(policy: &Policy, cluster: &str, hub: &Secret) -> ReleaseDecision {
    let refuse = |decision| ReleaseDecision {
        decision,
        action: None,
    };
    let name = hub.metadata.name.as_deref().unwrap_or("");
    let ns = hub.metadata.namespace.as_deref().unwrap_or("");
    let cp = policy.control_plane_namespace();
    if policy.cluster(cluster).is_none() {
        return refuse(unknown_cluster(cluster));
    }
    if ns != cp {
        return refuse(Decision::deny(
            Rule::WrongNamespace,
            format!("{ns}/{name} is not a hub copy: hub copies live in namespace {cp}"),
        ));
    }
    if let Some(d) = blocked_decision(policy, hub, &format!("the hub copy {cp}/{name}")) {
        return refuse(d);
    }
    match owner(hub) {
        Owner::Cluster(o) if o == cluster => {
            if is_adopted(hub) && is_adoptable(name) {
                ReleaseDecision {
                    decision: Decision::allow(
                        Rule::ReleaseReturn,
                        format!(
                            "{cp}/{name} was adopted by cluster {cluster}: it returns to the control plane with its data kept"
                        ),
                    ),
                    action: Some(ReleaseAction::ReturnToControlPlane),
                }
            } else {
                ReleaseDecision {
                    decision: Decision::allow(
                        Rule::ReleaseDelete,
                        format!(
                            "{cp}/{name} was created by cluster {cluster}: releasing it deletes the hub copy"
                        ),
                    ),
                    action: Some(ReleaseAction::Delete),
                }
            }
        }
        o => refuse(Decision::deny(
            Rule::ReleaseNotOwner,
            format!(
                "cluster {cluster} does not own {cp}/{name} ({o} does), so it cannot release it; the hub copy is left as it is"
            ),
        )),
    }
}

/// Down-sync targets of hub copy `hub`: clusters named in
/// `allowed-clusters` (trimmed, empty entries ignored; `ALL` for every
/// cluster) united with clusters whose labels match
/// `allowed-cluster-selector`, never the owner, never for a blocked Secret.
/// Only registered clusters are targets. An empty selector annotation selects
/// nothing; an unparsable one gives no targets at all.
pub fn down_sync(policy: &Policy, hub: &Secret) -> DownSync {
    let none = |decision| DownSync {
        targets: Vec::new(),
        decision,
    };
    let name = hub.metadata.name.as_deref().unwrap_or("");
    let ns = hub.metadata.namespace.as_deref().unwrap_or("");
    let cp = policy.control_plane_namespace();
    if ns != cp {
        return none(Decision::deny(
            Rule::WrongNamespace,
            format!(
                "{ns}/{name} is not in the control-plane namespace {cp}: only Secrets there sync down"
            ),
        ));
    }
    if let Some(d) = blocked_decision(policy, hub, &format!("secret {cp}/{name}")) {
        return none(d);
    }
    let selector = match allowed_selector(hub) {
        Ok(s) => s,
        Err(e) => {
            return none(Decision::deny(
                Rule::InvalidSelector,
                format!(
                    "the annotation {} on {cp}/{name} does not parse ({e}), so the secret goes to no cluster: fix the annotation",
                    keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
                ),
            ));
        }
    };
    let list = allowed_list(hub);
    let owner = owner(hub);
    let mut targets: Vec<String> = policy
        .clusters()
        .filter(|c| owner != Owner::Cluster(c.name.clone()))
        .filter(|c| {
            list.as_ref().is_some_and(|l| l.includes(&c.name))
                || selector.as_ref().is_some_and(|s| s.matches(&c.labels))
        })
        .map(|c| c.name.clone())
        .collect();
    targets.sort();
    if targets.is_empty() {
        let why = if list.is_none() && selector.is_none() {
            format!(
                "{cp}/{name} has neither the {} nor the {} annotation: add one to send it to clusters",
                keys::ALLOWED_CLUSTERS_ANNOTATION,
                keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
            )
        } else {
            format!(
                "no registered cluster other than the owner is named in {} or matches {} on {cp}/{name}: name a registered cluster or fix the selector",
                keys::ALLOWED_CLUSTERS_ANNOTATION,
                keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
            )
        };
        return none(Decision::deny(Rule::NoTargets, why));
    }
    let reason = format!(
        "{cp}/{name} goes to {} cluster{}: {}",
        targets.len(),
        if targets.len() == 1 { "" } else { "s" },
        targets.join(", ")
    );
    DownSync {
        targets,
        decision: Decision::allow(Rule::DownSync, reason),
    }
}

/// Down-sync of hub copy `hub` to one cluster: allowed iff `cluster` is a
/// target of [`down_sync`]; a denial says why this cluster is not one.
pub fn down_sync_to(policy: &Policy, hub: &Secret, cluster: &str) -> DownSync {
    let all = down_sync(policy, hub);
    if all.targets.iter().any(|t| t == cluster) {
        return DownSync {
            decision: Decision::allow(
                Rule::DownSync,
                format!("cluster {cluster} is a target: {}", all.decision.reason),
            ),
            targets: all.targets,
        };
    }
    let name = hub.metadata.name.as_deref().unwrap_or("");
    let cp = policy.control_plane_namespace();
    let decision = match (&all.decision.rule, policy.cluster(cluster)) {
        (Rule::WrongNamespace | Rule::BlockedName | Rule::BlockedType | Rule::BlockedLabel, _)
        | (Rule::InvalidSelector, _) => all.decision.clone(),
        (_, None) => unknown_cluster(cluster),
        _ if owner(hub) == Owner::Cluster(cluster.to_owned()) => Decision::deny(
            Rule::DownSyncNotTarget,
            format!("cluster {cluster} owns {cp}/{name}: a secret never goes back to its owner"),
        ),
        _ => Decision::deny(
            Rule::DownSyncNotTarget,
            format!(
                "cluster {cluster} is not named in {} and its labels do not match {} on {cp}/{name}: add it to one of them",
                keys::ALLOWED_CLUSTERS_ANNOTATION,
                keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
            ),
        ),
    };
    DownSync {
        targets: all.targets,
        decision,
    }
}

/// The parsed `allowed-cluster-selector` annotation: `Ok(None)` when absent
/// or blank.
pub fn allowed_selector(hub: &Secret) -> Result<Option<Selector>, crate::SelectorParseError> {
    match annotation(hub, keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION) {
        Some(s) if !s.trim().is_empty() => Selector::parse(s).map(Some),
        _ => Ok(None),
    }
}

enum AllowedList {
    All,
    Names(Vec<String>),
}

impl AllowedList {
    fn includes(&self, name: &str) -> bool {
        match self {
            AllowedList::All => true,
            AllowedList::Names(n) => n.iter().any(|x| x == name),
        }
    }
}

fn allowed_list(hub: &Secret) -> Option<AllowedList> {
    let raw = annotation(hub, keys::ALLOWED_CLUSTERS_ANNOTATION)?;
    let names: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if names.iter().any(|n| n == "ALL") {
        Some(AllowedList::All)
    } else {
        Some(AllowedList::Names(names))
    }
}

pub(crate) fn unknown_cluster(cluster: &str) -> Decision {
    Decision::deny(
        Rule::UnknownCluster,
        format!(
            "cluster {cluster} is not registered: add it to clusters in the secret-relay-policy ConfigMap"
        ),
    )
}

/// A denial if `secret` is blocked; `what` names it in the reason.
pub(crate) fn blocked_decision(policy: &Policy, secret: &Secret, what: &str) -> Option<Decision> {
    let by = policy.blocked(secret)?;
    Some(Decision::deny(
        Rule::for_blocked(&by),
        format!(
            "{what} is blocked by {by}: blocked secrets are never synced or changed by a cluster; use another name, type or labels"
        ),
    ))
}

pub(crate) fn label<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .metadata
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

pub(crate) fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn format_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;
