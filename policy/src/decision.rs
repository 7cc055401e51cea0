//! Sync decisions (up-sync, release, down-sync) with stable rule ids and
//! reasons a person can act on.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use serde::{Serialize, Serializer};

use crate::document::{BUILTIN_BLOCKED_LABELS, BlockedBy, Policy, is_valid_cluster_name};
use crate::keys;
use crate::meta;
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
/// Each id names one outcome: [`Rule::allows`] says whether a decision with it
/// is allowed, and no id is used both ways.
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
    /// The relay refused a cluster's create: the name is held on the control plane
    /// by a Secret outside the cluster's view (nothing more of it is said).
    NameTaken,
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
    /// Deleting an adopted secret is refused: release returns it to the
    /// control plane with its data kept.
    AdoptedMustReturn,
    /// The hub copy's owner label is neither `control-plane` nor
    /// `cluster.<valid name>`: no cluster may change or release it.
    InvalidOwner,
    /// The control plane deletes or takes over a hub copy whose owner is not
    /// a registered cluster (or whose owner label is invalid).
    OrphanedOwner,
    /// The live policy no longer admits a registered cluster's hub copy: the
    /// relay releases it after the revocation grace, and the control plane may
    /// delete it meanwhile.
    Revoked,
    /// Down-sync does not send a hub copy whose owner cluster is not
    /// registered: a removed cluster's copies stop going down.
    OrphanedCopy,
    /// A cluster admin confirms a held deletion of a down copy by annotating it.
    DeletionConfirmed,
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
    /// No owner label (or `control-plane`): the control plane owns it.
    ControlPlane,
    /// `secret-relay.io/owner: cluster.<name>` with a valid cluster name
    /// (registered or not).
    Cluster(String),
    /// Any other owner label value, kept whole: an owner no cluster matches.
    Invalid(String),
}

impl Rule {
    /// Every rule, in declaration order.
    pub const ALL: [Rule; 37] = [
        Rule::BlockedName,
        Rule::BlockedType,
        Rule::BlockedLabel,
        Rule::UnknownCluster,
        Rule::WrongNamespace,
        Rule::NotOptedIn,
        Rule::NoMatchingSource,
        Rule::OwnedByOtherCluster,
        Rule::OwnedByControlPlane,
        Rule::NameTaken,
        Rule::UpSyncNew,
        Rule::UpSyncOwner,
        Rule::Adopt,
        Rule::ReleaseDelete,
        Rule::ReleaseReturn,
        Rule::ReleaseNotOwner,
        Rule::AdoptedMustReturn,
        Rule::InvalidOwner,
        Rule::OrphanedOwner,
        Rule::Revoked,
        Rule::OrphanedCopy,
        Rule::DeletionConfirmed,
        Rule::DownSync,
        Rule::DownSyncNotTarget,
        Rule::NoTargets,
        Rule::InvalidSelector,
        Rule::OwnerLabelForged,
        Rule::OwnershipLock,
        Rule::BreakGlass,
        Rule::SystemExempt,
        Rule::OutOfScope,
        Rule::ControlPlaneWrite,
        Rule::DownCopyAgent,
        Rule::DownSyncConflict,
        Rule::DownCopyOptIn,
        Rule::MissingObject,
        Rule::NotApplicable,
    ];

    /// The one outcome this id names: `true` for the rules that allow,
    /// `false` for the rules that deny.
    pub fn allows(self) -> bool {
        match self {
            Rule::UpSyncNew
            | Rule::UpSyncOwner
            | Rule::Adopt
            | Rule::ReleaseDelete
            | Rule::ReleaseReturn
            | Rule::OrphanedOwner
            | Rule::Revoked
            | Rule::DeletionConfirmed
            | Rule::DownSync
            | Rule::BreakGlass
            | Rule::SystemExempt
            | Rule::OutOfScope
            | Rule::ControlPlaneWrite
            | Rule::DownCopyAgent
            | Rule::NotApplicable => true,
            Rule::BlockedName
            | Rule::BlockedType
            | Rule::BlockedLabel
            | Rule::UnknownCluster
            | Rule::WrongNamespace
            | Rule::NotOptedIn
            | Rule::NoMatchingSource
            | Rule::OwnedByOtherCluster
            | Rule::OwnedByControlPlane
            | Rule::NameTaken
            | Rule::ReleaseNotOwner
            | Rule::AdoptedMustReturn
            | Rule::InvalidOwner
            | Rule::DownSyncNotTarget
            | Rule::NoTargets
            | Rule::OrphanedCopy
            | Rule::InvalidSelector
            | Rule::OwnerLabelForged
            | Rule::OwnershipLock
            | Rule::DownSyncConflict
            | Rule::DownCopyOptIn
            | Rule::MissingObject => false,
        }
    }

    /// The rule with the kebab-case id `id`, if there is one.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str() == id)
    }

    /// Whether a denial with this rule depends on the hub copy, not on the
    /// cluster's Secret or the policy: its owner (another cluster's, the
    /// control plane's, an invalid one) or a name held outside the view. Such a
    /// denial can turn around when that copy changes or goes away, so it is
    /// tried again then and at every resync, where other denials wait for a
    /// change of the Secret or of the policy.
    pub fn depends_on_hub(self) -> bool {
        matches!(
            self,
            Rule::OwnedByOtherCluster
                | Rule::OwnedByControlPlane
                | Rule::InvalidOwner
                | Rule::NameTaken
        )
    }

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
            Rule::NameTaken => "name-taken",
            Rule::UpSyncNew => "up-sync-new",
            Rule::UpSyncOwner => "up-sync-owner",
            Rule::Adopt => "adopt",
            Rule::ReleaseDelete => "release-delete",
            Rule::ReleaseReturn => "release-return",
            Rule::ReleaseNotOwner => "release-not-owner",
            Rule::AdoptedMustReturn => "adopted-must-return",
            Rule::InvalidOwner => "invalid-owner",
            Rule::OrphanedOwner => "orphaned-owner",
            Rule::Revoked => "revoked",
            Rule::OrphanedCopy => "orphaned-copy",
            Rule::DeletionConfirmed => "deletion-confirmed",
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
    /// An allowing decision; `rule` must be one that allows ([`Rule::allows`]).
    pub fn allow(rule: Rule, reason: impl Into<String>) -> Decision {
        debug_assert!(rule.allows(), "rule {rule} names a denial");
        Decision {
            allowed: true,
            rule,
            reason: reason.into(),
        }
    }

    /// A denying decision; `rule` must be one that denies ([`Rule::allows`]).
    pub fn deny(rule: Rule, reason: impl Into<String>) -> Decision {
        debug_assert!(!rule.allows(), "rule {rule} names an allowed outcome");
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
    /// The owner label value: `cluster.<name>`, `control-plane`, or the
    /// invalid value as it is.
    pub fn label_value(&self) -> String {
        match self {
            Owner::ControlPlane => "control-plane".to_owned(),
            Owner::Cluster(c) => format!("{}{c}", keys::OWNER_CLUSTER_PREFIX),
            Owner::Invalid(v) => v.clone(),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::ControlPlane => f.write_str("the control plane"),
            Owner::Cluster(c) => write!(f, "cluster {c}"),
            Owner::Invalid(v) => write!(f, "the invalid owner '{v}'"),
        }
    }
}

/// The owner of a hub copy, from its `secret-relay.io/owner` label: absent or
/// exactly `control-plane` means the control plane; exactly `cluster.<name>`
/// with a valid cluster name means that cluster. Any other value (`cluster1`,
/// `cluster.`, `Cluster.x`) is [`Owner::Invalid`], an owner no cluster
/// matches, so a malformed label locks rather than opens.
pub fn owner(hub: &Secret) -> Owner {
    match meta::label(&hub.metadata, keys::OWNER_LABEL) {
        None | Some("control-plane") => Owner::ControlPlane,
        Some(v) => match v.strip_prefix(keys::OWNER_CLUSTER_PREFIX) {
            Some(name) if is_valid_cluster_name(name) => Owner::Cluster(name.to_owned()),
            _ => Owner::Invalid(v.to_owned()),
        },
    }
}

/// Whether a control-plane secret with this name may be adopted by a cluster.
pub fn is_adoptable(name: &str) -> bool {
    ADOPTABLE_NAMES.contains(&name)
}

/// Whether hub copy `hub` is an adopted secret: an adoptable control-plane
/// secret a cluster took over, which release returns to the control plane
/// with its data kept instead of deleting it. True iff its owner is a cluster
/// (a valid `cluster.<name>` label), it carries `secret-relay.io/adopted:
/// "true"` and its name is adoptable. This is the one definition `explain`,
/// the webhook and the relay use.
pub fn is_adopted(hub: &Secret) -> bool {
    matches!(owner(hub), Owner::Cluster(_))
        && meta::annotation(&hub.metadata, keys::ADOPTED_ANNOTATION) == Some("true")
        && is_adoptable(hub.metadata.name.as_deref().unwrap_or(""))
}

/// `sha256:<hex>` over the canonical data: `data` with `stringData` merged
/// over it (as the API server does), keys sorted, each key and value
/// length-prefixed. An in-memory comparison for whoever holds both values (the
/// agent's fingerprint, the webhook's check that a return keeps the data): it is
/// unkeyed, so anyone who saw it could confirm a guessed value offline, and it is
/// never stored, logged or shown.
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

/// What a down copy records of the hub copy it was written from:
/// `<uid>/<resourceVersion>`, metadata any reader of the hub copy already sees and
/// no function of its values. `None` for a Secret without both (never one the API
/// server serves). The agent writes it on down copies
/// ([`keys::SOURCE_ANNOTATION`]); the Secrets page, which reads managed clusters'
/// metadata only, compares it with the hub copy it lists.
pub fn source_marker(hub: &Secret) -> Option<String> {
    let uid = hub.metadata.uid.as_deref().filter(|u| !u.is_empty())?;
    let rv = hub
        .metadata
        .resource_version
        .as_deref()
        .filter(|v| !v.is_empty())?;
    Some(format!("{uid}/{rv}"))
}

/// Up-sync of `secret` (in cluster `cluster`'s agent namespace) to the hub,
/// given the existing hub copy of the same name, if any.
///
/// The steps, in order: the cluster is registered; the Secret is in the agent
/// namespace; it opts in; neither it nor the hub copy is blocked; a Secret
/// Source admits it; the hub copy's [`ownership`] allows the write. The
/// validating webhook judges a cluster's CREATE and UPDATE with the same steps
/// on the object as the API server will store it ([`up_sync_stored`]), so the
/// relay's early answer and the webhook's final one cannot disagree.
pub fn up_sync(policy: &Policy, cluster: &str, secret: &Secret, hub: Option<&Secret>) -> Decision {
    let name = secret.metadata.name.as_deref().unwrap_or("");
    up_sync_with(
        policy,
        cluster,
        Judged::ClusterSecret,
        name,
        secret,
        hub,
        Policy::matching_source,
        || None,
    )
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
    let name = secret.metadata.name.as_deref().unwrap_or("");
    up_sync_with(
        policy,
        cluster,
        Judged::ClusterSecret,
        name,
        secret,
        hub,
        Policy::matching_source_full_scan,
        || None,
    )
}

/// The validating webhook's check of a CREATE or UPDATE by cluster `cluster`:
/// [`up_sync`]'s steps on `stored`, the hub copy `name` as the API server will
/// store it (`request.object`, after the mutating webhooks and the patch), in
/// the control-plane namespace, against `old` (`request.oldObject`). `stamps`
/// runs after the Secret Source and before ownership: the owner label and
/// adopted annotation only secret-relay sets.
pub(crate) fn up_sync_stored(
    policy: &Policy,
    cluster: &str,
    name: &str,
    stored: &Secret,
    old: Option<&Secret>,
    stamps: impl FnOnce() -> Option<Decision>,
) -> Decision {
    up_sync_with(
        policy,
        cluster,
        Judged::StoredHubCopy,
        name,
        stored,
        old,
        Policy::matching_source,
        stamps,
    )
}

/// What an up-sync decision judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Judged {
    /// The cluster's own Secret, in its agent namespace (the relay, `explain`,
    /// the UI).
    ClusterSecret,
    /// The hub copy as the API server will store it, in the control-plane
    /// namespace (the webhook).
    StoredHubCopy,
}

type SourceLookup = fn(&Policy, &str, &BTreeMap<String, String>) -> Option<usize>;

// One function for every caller, so the relay, `explain`, the UI and the
// webhook take the same steps in the same order. Every denial here can reach
// the cluster: none names another cluster or quotes a value of the request
// or of the hub copy (which the cluster may not see).
#[allow(clippy::too_many_arguments)]
fn up_sync_with(
    policy: &Policy,
    cluster: &str,
    judged: Judged,
    name: &str,
    secret: &Secret,
    hub: Option<&Secret>,
    lookup: SourceLookup,
    stamps: impl FnOnce() -> Option<Decision>,
) -> Decision {
    let ns = secret.metadata.namespace.as_deref().unwrap_or("");
    let cp = policy.control_plane_namespace();
    let agent = policy.agent_namespace();
    let Some(c) = policy.cluster(cluster) else {
        return unknown_cluster(cluster);
    };
    let what = match judged {
        Judged::ClusterSecret => {
            if ns != agent {
                return Decision::deny(
                    Rule::WrongNamespace,
                    format!(
                        "secret {ns}/{name} is not in the agent namespace {agent}: only Secrets in namespace {agent} of cluster {cluster} sync up; move it there"
                    ),
                );
            }
            format!("secret {ns}/{name}")
        }
        Judged::StoredHubCopy => {
            if ns != cp {
                return hub_copy_elsewhere(policy, cluster, ns, name);
            }
            format!("the hub copy {ns}/{name}")
        }
    };
    if !meta::is_opted_in(&secret.metadata) {
        let reason = match judged {
            Judged::ClusterSecret => format!(
                "{what} on cluster {cluster} does not opt in: add the label {}: \"true\" to sync it",
                keys::SECRET_SYNC_LABEL
            ),
            Judged::StoredHubCopy => format!(
                "{what} as cluster {cluster} would store it lacks the label {}: \"true\": a cluster writes only the hub copies of Secrets that opt in; keep the label (to stop syncing, remove it from the Secret on the cluster, which releases the copy)",
                keys::SECRET_SYNC_LABEL
            ),
        };
        return Decision::deny(Rule::NotOptedIn, reason);
    }
    if let Some(d) = blocked_for_cluster(policy, secret, &what) {
        return d;
    }
    if let Some(h) = hub
        && let Some(d) = hub_copy_blocked(policy, h, cp, name)
    {
        return d;
    }
    let labels = source_labels(secret);
    let Some(source) = lookup(policy, cluster, &labels) else {
        return Decision::deny(
            Rule::NoMatchingSource,
            format!(
                "no Secret Source allows {what} from cluster {cluster}: its labels match the labelSelector of no secretSources entry whose clusterSelector matches the cluster's labels {{{}}}; label the Secret to match one, or ask the control-plane admin to add a secretSources entry to the secret-relay-policy ConfigMap",
                format_labels(&c.labels),
            ),
        );
    };
    if let Some(d) = stamps() {
        return d;
    }
    let d = ownership(policy, cluster, name, hub);
    if d.allowed {
        Decision::allow(
            d.rule,
            format!(
                "{what} from cluster {cluster} is allowed by secretSources[{source}]: {}",
                d.reason
            ),
        )
    } else {
        d
    }
}

/// The labels a Secret Source's label selector judges: the Secret's own,
/// without the owner label the mutating webhook stamps on a hub copy (a
/// cluster's Secret never carries it), so the cluster's Secret, the relay's
/// view of a write and the stored hub copy are judged alike.
fn source_labels(secret: &Secret) -> Cow<'_, BTreeMap<String, String>> {
    match secret.metadata.labels.as_ref() {
        Some(l) if l.contains_key(keys::OWNER_LABEL) => {
            let mut l = l.clone();
            l.remove(keys::OWNER_LABEL);
            Cow::Owned(l)
        }
        Some(l) => Cow::Borrowed(l),
        None => Cow::Owned(BTreeMap::new()),
    }
}

/// The denial for a cluster's write of a Secret outside the control-plane
/// namespace.
pub(crate) fn hub_copy_elsewhere(policy: &Policy, cluster: &str, ns: &str, name: &str) -> Decision {
    Decision::deny(
        Rule::WrongNamespace,
        format!(
            "cluster {cluster} may only write hub copies in namespace {cp}, not {ns}/{name}",
            cp = policy.control_plane_namespace()
        ),
    )
}

/// The ownership step of a write by cluster `cluster` to the hub copy `name`,
/// given the existing copy: create it, update its own, adopt an adoptable
/// control-plane secret, or a denial. Shared by [`up_sync`] and the webhook's
/// check of the same write, so they always agree. A denial never names the
/// owner: the cluster may not see the copy, and another cluster's name is not
/// its business; the control-plane admin sees the owner with
/// `secret-relay explain`.
pub(crate) fn ownership(
    policy: &Policy,
    cluster: &str,
    name: &str,
    hub: Option<&Secret>,
) -> Decision {
    let cp = policy.control_plane_namespace();
    let Some(h) = hub else {
        return Decision::allow(
            Rule::UpSyncNew,
            format!("it creates the hub copy {cp}/{name}, owned by cluster {cluster}"),
        );
    };
    match owner(h) {
        Owner::Cluster(o) if o == cluster => Decision::allow(
            Rule::UpSyncOwner,
            format!("it updates the hub copy {cp}/{name}, which cluster {cluster} owns"),
        ),
        Owner::Cluster(_) => Decision::deny(
            Rule::OwnedByOtherCluster,
            format!(
                "the hub copy {cp}/{name} is owned by another cluster; rename it here, or ask the control-plane admin, who sees the owner with `secret-relay explain`"
            ),
        ),
        Owner::Invalid(_) => invalid_owner_for_cluster(cp, name),
        Owner::ControlPlane if is_adoptable(name) => Decision::allow(
            Rule::Adopt,
            format!(
                "cluster {cluster} adopts the control-plane secret {cp}/{name}, which returns to the control plane with its data when released"
            ),
        ),
        Owner::ControlPlane => Decision::deny(
            Rule::OwnedByControlPlane,
            format!(
                "{cp}/{name} is a control-plane secret and only {} can be adopted: rename the Secret on cluster {cluster}, or ask the control-plane admin to delete {cp}/{name}",
                ADOPTABLE_NAMES.join(", ")
            ),
        ),
    }
}

/// Release of hub copy `hub` by cluster `cluster` (its Secret was deleted or
/// lost the opt-in label): an adopted secret ([`is_adopted`]) returns to the
/// control plane, one the cluster created is deleted, and a copy it does not
/// own is refused. A copy that became blocked after it synced (the policy's
/// `extraBlocked` grew) is still released by its owner.
pub fn release(policy: &Policy, cluster: &str, hub: &Secret) -> ReleaseDecision {
    let name = hub.metadata.name.as_deref().unwrap_or("");
    let ns = hub.metadata.namespace.as_deref().unwrap_or("");
    let cp = policy.control_plane_namespace();
    if policy.cluster(cluster).is_none() {
        let mut d = unknown_cluster(cluster);
        if owner(hub) == Owner::Cluster(cluster.to_owned()) {
            d.reason.push_str(&format!(
                "; while it is not, its copy {cp}/{name} is orphaned and the control plane may delete it or take it over (rule {})",
                Rule::OrphanedOwner
            ));
        }
        return refused(d);
    }
    if ns != cp {
        return refused(Decision::deny(
            Rule::WrongNamespace,
            format!("{ns}/{name} is not a hub copy: hub copies live in namespace {cp}"),
        ));
    }
    release_owned(policy, cluster, name, hub)
}

/// [`release`] once the cluster is known to be registered and `hub` to be in
/// the control-plane namespace; the webhook decides a cluster's DELETE and the
/// relay's release with it.
pub(crate) fn release_owned(
    policy: &Policy,
    cluster: &str,
    name: &str,
    hub: &Secret,
) -> ReleaseDecision {
    let cp = policy.control_plane_namespace();
    match owner(hub) {
        Owner::Cluster(o) if o == cluster && is_adopted(hub) => ReleaseDecision {
            decision: Decision::allow(
                Rule::ReleaseReturn,
                format!(
                    "{cp}/{name} was adopted by cluster {cluster}: it returns to the control plane with its data kept"
                ),
            ),
            action: Some(ReleaseAction::ReturnToControlPlane),
        },
        Owner::Cluster(o) if o == cluster => ReleaseDecision {
            decision: Decision::allow(
                Rule::ReleaseDelete,
                format!(
                    "{cp}/{name} was created by cluster {cluster}: releasing it deletes the hub copy"
                ),
            ),
            action: Some(ReleaseAction::Delete),
        },
        // Refusals name no owner: the copy is not the cluster's.
        o => {
            if let Some(d) = hub_copy_blocked(policy, hub, cp, name) {
                return refused(d);
            }
            refused(match o {
                Owner::Invalid(_) => invalid_owner_for_cluster(cp, name),
                _ => Decision::deny(
                    Rule::ReleaseNotOwner,
                    format!(
                        "cluster {cluster} does not own {cp}/{name}, so it cannot release it; the hub copy is left as it is (the control-plane admin sees its owner with `secret-relay explain`)"
                    ),
                ),
            })
        }
    }
}

/// The control plane's way out of a lock: whether anybody who may write
/// Secrets in the control-plane namespace (no break-glass needed) may delete
/// or take over hub copy `hub`. A copy whose owner is not a registered
/// cluster, or whose owner label is invalid, is orphaned: allowed
/// (`orphaned-owner`), with the suggested action. A copy of a registered
/// cluster stays locked (`ownership-lock`); one the control plane owns is
/// its own (`control-plane-write`, no action).
pub fn reclaim(policy: &Policy, hub: &Secret) -> ReleaseDecision {
    let name = hub.metadata.name.as_deref().unwrap_or("");
    let ns = hub.metadata.namespace.as_deref().unwrap_or("");
    let cp = policy.control_plane_namespace();
    if ns != cp {
        return refused(Decision::deny(
            Rule::WrongNamespace,
            format!("{ns}/{name} is not a hub copy: hub copies live in namespace {cp}"),
        ));
    }
    reclaim_owned(policy, name, hub)
}

/// [`reclaim`] once `hub` is known to be in the control-plane namespace.
pub(crate) fn reclaim_owned(policy: &Policy, name: &str, hub: &Secret) -> ReleaseDecision {
    let cp = policy.control_plane_namespace();
    let take_over = format!(
        "take it over by removing the {} label and the {} annotation",
        keys::OWNER_LABEL,
        keys::ADOPTED_ANNOTATION
    );
    let orphaned = |why: String| ReleaseDecision {
        decision: Decision::allow(
            Rule::OrphanedOwner,
            format!(
                "{why}: the copy {cp}/{name} is orphaned, so the control plane may delete it or {take_over}"
            ),
        ),
        action: Some(if is_adopted(hub) {
            ReleaseAction::ReturnToControlPlane
        } else {
            ReleaseAction::Delete
        }),
    };
    match owner(hub) {
        Owner::ControlPlane => ReleaseDecision {
            decision: Decision::allow(
                Rule::ControlPlaneWrite,
                format!(
                    "{cp}/{name} is owned by the control plane: whoever may write Secrets in {cp} may change or delete it"
                ),
            ),
            action: None,
        },
        Owner::Cluster(o) if policy.cluster(&o).is_some() => revocation(policy, hub)
            .unwrap_or_else(|| refused(Decision::deny(
            Rule::OwnershipLock,
            format!(
                "{cp}/{name} is owned by cluster {o}, which is registered: it is released on cluster {o} (delete the Secret there or remove its {} label); remove cluster {o} from the policy to orphan its copies",
                keys::SECRET_SYNC_LABEL
            ),
        ))),
        Owner::Cluster(o) => orphaned(format!("its owner, cluster {o}, is not registered")),
        Owner::Invalid(v) => orphaned(format!(
            "its owner label {}: {v} names no cluster",
            keys::OWNER_LABEL
        )),
    }
}

/// Revocation: `Some` when hub copy `hub` is owned by a registered cluster and
/// the live policy no longer admits it (no Secret Source matches it any more,
/// or it became blocked), judged with [`up_sync`]'s own steps on the copy as
/// stored. The decision is `revoked`, with the release's action: an adopted
/// copy returns to the control plane, any other is deleted. `None` when the
/// copy is admitted, or is not a registered cluster's (the control plane's
/// own, or orphaned: see [`reclaim`]).
pub fn revocation(policy: &Policy, hub: &Secret) -> Option<ReleaseDecision> {
    let Owner::Cluster(c) = owner(hub) else {
        return None;
    };
    let cluster = policy.cluster(&c)?;
    let name = hub.metadata.name.as_deref().unwrap_or("");
    let cp = policy.control_plane_namespace();
    // What the policy can take back: a Secret Source, or the blocked list. (The
    // opt-in label and the stamps are the cluster's and the webhook's, judged on
    // every write.)
    let what = format!("the hub copy {cp}/{name}");
    let admitted = blocked_for_cluster(policy, hub, &what).or_else(|| {
        policy
            .matching_source(&c, &source_labels(hub))
            .is_none()
            .then(|| {
                Decision::deny(
                    Rule::NoMatchingSource,
                    format!(
                        "no Secret Source admits {what} from cluster {c}: its labels match the labelSelector of no secretSources entry whose clusterSelector matches the cluster's labels {{{}}}",
                        format_labels(&cluster.labels)
                    ),
                )
            })
    })?;
    let adopted = is_adopted(hub);
    let what = if adopted {
        "returned to the control plane with its data kept"
    } else {
        "deleted"
    };
    Some(ReleaseDecision {
        decision: Decision::allow(
            Rule::Revoked,
            format!(
                "the policy no longer admits {cp}/{name} from its owner, cluster {c} (rule {}: {}): the relay releases it after its revocation grace ({what}), and the control plane may delete it now; to keep it, admit it again",
                admitted.rule, admitted.reason
            ),
        ),
        action: Some(if adopted {
            ReleaseAction::ReturnToControlPlane
        } else {
            ReleaseAction::Delete
        }),
    })
}

fn refused(decision: Decision) -> ReleaseDecision {
    ReleaseDecision {
        decision,
        action: None,
    }
}

/// The denial for a cluster's write or release of a hub copy whose owner
/// label is invalid: [`invalid_owner`] without the label's value, which the
/// cluster may not see.
pub(crate) fn invalid_owner_for_cluster(cp: &str, name: &str) -> Decision {
    Decision::deny(
        Rule::InvalidOwner,
        format!(
            "{cp}/{name} has an owner label {} that is neither control-plane nor cluster.<name>: no cluster may change or release it; rename the Secret here, or ask the control-plane admin, who may delete it or take it over (rule {})",
            keys::OWNER_LABEL,
            Rule::OrphanedOwner
        ),
    )
}

/// The denial for a hub copy whose owner label is invalid, for the control
/// plane's own writers (it quotes the value).
pub(crate) fn invalid_owner(cp: &str, name: &str, value: &str) -> Decision {
    Decision::deny(
        Rule::InvalidOwner,
        format!(
            "{cp}/{name} has the owner label {}: {value}, which is neither control-plane nor cluster.<name>: no cluster may change or release it; the control plane may delete it or take it over by removing the label (rule {})",
            keys::OWNER_LABEL,
            Rule::OrphanedOwner
        ),
    )
}

/// Down-sync targets of hub copy `hub`: clusters named in
/// `allowed-clusters` (trimmed, empty entries ignored; `ALL` for every
/// cluster) united with clusters whose labels match
/// `allowed-cluster-selector`, never the owner, never for a blocked Secret.
/// Only registered clusters are targets. The annotations are an OR: a blank
/// or unparsable one adds no cluster and does not cancel the other; its
/// problem is named in the reason (see [`down_sync_problems`]).
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
    let owner = owner(hub);
    if let Owner::Cluster(o) = &owner
        && policy.cluster(o).is_none()
    {
        return none(Decision::deny(
            Rule::OrphanedCopy,
            format!(
                "{cp}/{name} is owned by cluster {o}, which is not registered: a removed cluster's copies stop going down; register it again, or take the copy over (rule {}) to send it on",
                Rule::OrphanedOwner
            ),
        ));
    }
    let list = list_annotation(hub);
    let selector = selector_annotation(hub);
    let problems = annotation_problems(policy, &list, &selector);
    let mut targets: Vec<String> = policy
        .clusters()
        .filter(|c| owner != Owner::Cluster(c.name.clone()))
        .filter(|c| list.includes(&c.name) || selector.matches(&c.labels))
        .map(|c| c.name.clone())
        .collect();
    targets.sort();
    if targets.is_empty() {
        let rule = if matches!(selector, SelectorAnnotation::Invalid(_)) {
            Rule::InvalidSelector
        } else {
            Rule::NoTargets
        };
        let why = if matches!(list, ListAnnotation::Absent)
            && matches!(selector, SelectorAnnotation::Absent)
        {
            format!(
                "{cp}/{name} has neither the {} nor the {} annotation: add one to send it to clusters",
                keys::ALLOWED_CLUSTERS_ANNOTATION,
                keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
            )
        } else {
            let mut parts = problems;
            if list.names_something() || matches!(selector, SelectorAnnotation::Valid(_)) {
                parts.push(format!(
                    "no registered cluster other than the owner is named in {} or matches {}: name a registered cluster or fix the selector",
                    keys::ALLOWED_CLUSTERS_ANNOTATION,
                    keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
                ));
            }
            format!("{cp}/{name} goes to no cluster: {}", parts.join("; "))
        };
        return none(Decision::deny(rule, why));
    }
    let mut reason = format!(
        "{cp}/{name} goes to {} cluster{}: {}",
        targets.len(),
        if targets.len() == 1 { "" } else { "s" },
        targets.join(", ")
    );
    if !problems.is_empty() {
        reason.push_str(&format!("; but {}", problems.join("; ")));
    }
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
        (
            Rule::WrongNamespace
            | Rule::BlockedName
            | Rule::BlockedType
            | Rule::BlockedLabel
            | Rule::InvalidSelector
            | Rule::OrphanedCopy,
            _,
        ) => all.decision.clone(),
        (_, None) => unknown_cluster(cluster),
        _ if owner(hub) == Owner::Cluster(cluster.to_owned()) => Decision::deny(
            Rule::DownSyncNotTarget,
            format!("cluster {cluster} owns {cp}/{name}: a secret never goes back to its owner"),
        ),
        _ => {
            let mut reason = format!(
                "cluster {cluster} is not named in {} and its labels do not match {} on {cp}/{name}: add it to one of them",
                keys::ALLOWED_CLUSTERS_ANNOTATION,
                keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION
            );
            for p in down_sync_problems(policy, hub) {
                reason.push_str("; ");
                reason.push_str(&p);
            }
            Decision::deny(Rule::DownSyncNotTarget, reason)
        }
    };
    DownSync {
        targets: all.targets,
        decision,
    }
}

/// What is wrong with hub copy `hub`'s down-sync annotations, one sentence
/// each: a blank `allowed-clusters` or `allowed-cluster-selector`, a
/// selector that does not parse, or names in `allowed-clusters` that are not
/// registered in `policy` (a typo such as `clsuter2`, with the registered
/// names nearest to it). Each such annotation or name adds no cluster; the
/// rest of the annotations still count. The webhook returns these as
/// warnings; [`down_sync`] names them in its reason.
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
enum ListAnnotation {
    Absent,
    /// Present, but empty or only commas and spaces.
    Blank,
    All,
    Names(Vec<String>),
}

/// The `allowed-cluster-selector` annotation.
enum SelectorAnnotation {
    Absent,
    /// Present, but empty or only spaces.
    Blank,
    Invalid(crate::SelectorParseError),
    Valid(Selector),
}

impl ListAnnotation {
    fn includes(&self, name: &str) -> bool {
        match self {
            ListAnnotation::All => true,
            ListAnnotation::Names(n) => n.iter().any(|x| x == name),
            ListAnnotation::Absent | ListAnnotation::Blank => false,
        }
    }

    fn names_something(&self) -> bool {
        matches!(self, ListAnnotation::All | ListAnnotation::Names(_))
    }
}

impl SelectorAnnotation {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            SelectorAnnotation::Valid(s) => s.matches(labels),
            _ => false,
        }
    }
}

fn list_annotation(hub: &Secret) -> ListAnnotation {
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

fn selector_annotation(hub: &Secret) -> SelectorAnnotation {
    match meta::annotation(&hub.metadata, keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION) {
        None => SelectorAnnotation::Absent,
        Some(s) if s.trim().is_empty() => SelectorAnnotation::Blank,
        Some(s) => match Selector::parse(s) {
            Ok(sel) => SelectorAnnotation::Valid(sel),
            Err(e) => SelectorAnnotation::Invalid(e),
        },
    }
}

fn annotation_problems(
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
fn edit_distance(a: &[char], b: &[char]) -> usize {
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

pub(crate) fn unknown_cluster(cluster: &str) -> Decision {
    Decision::deny(
        Rule::UnknownCluster,
        format!(
            "cluster {cluster} is not registered: add it to clusters in the secret-relay-policy ConfigMap"
        ),
    )
}

/// A denial if `secret` is blocked; `what` names it in the reason.
pub fn blocked_decision(policy: &Policy, secret: &Secret, what: &str) -> Option<Decision> {
    let by = policy.blocked(secret)?;
    Some(Decision::deny(
        Rule::for_blocked(&by),
        format!(
            "{what} is blocked by {by}: blocked secrets are never synced or changed by a cluster; use another name, type or labels"
        ),
    ))
}

/// A denial if `secret`, written by a cluster, is blocked; `what` names it.
/// Unlike [`blocked_decision`] it quotes no value of the request: for a label
/// it gives the policy's `key=value`, or only the key when the policy blocks
/// the key with any value.
pub(crate) fn blocked_for_cluster(
    policy: &Policy,
    secret: &Secret,
    what: &str,
) -> Option<Decision> {
    let by = policy.blocked(secret)?;
    let which = match &by {
        BlockedBy::Name(n) => format!("name {n}"),
        BlockedBy::Type(t) => format!("type {t}"),
        BlockedBy::Label { key, value } => {
            let pinned = BUILTIN_BLOCKED_LABELS
                .iter()
                .any(|(k, v)| k == key && v == value)
                || policy
                    .extra_blocked()
                    .labels
                    .iter()
                    .any(|b| b.key == *key && b.value.as_ref() == Some(value));
            if pinned {
                format!("label {key}={value}")
            } else {
                format!("label {key}")
            }
        }
    };
    Some(Decision::deny(
        Rule::for_blocked(&by),
        format!(
            "{what} is blocked by its {which}: blocked secrets are never synced or changed by a cluster; use another name, type or labels"
        ),
    ))
}

/// A denial if the existing hub copy `hub` is blocked, for a cluster that
/// writes or releases it: it says only that the copy is blocked (the rule
/// says by what), nothing of a copy the cluster may not see.
pub(crate) fn hub_copy_blocked(
    policy: &Policy,
    hub: &Secret,
    cp: &str,
    name: &str,
) -> Option<Decision> {
    let by = policy.blocked(hub)?;
    Some(Decision::deny(
        Rule::for_blocked(&by),
        format!(
            "the hub copy {cp}/{name} is blocked: blocked secrets are never synced or changed by a cluster; rename the Secret here"
        ),
    ))
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
