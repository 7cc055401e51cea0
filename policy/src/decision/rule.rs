//! The rule vocabulary: [`Rule`], the stable id of every outcome, and
//! [`Decision`], an allow or deny with its rule and reason.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::document::BlockedBy;

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
    /// A cluster's write would put on a hub copy what never crosses between
    /// clusters (tool ownership, the policy's `stripMetadata`), or finalizers or
    /// owner references the copy did not have.
    UncarriedMetadata,
    /// The cluster holds as many hub copies, or as many bytes of them, as the relay
    /// allows one cluster.
    ClusterQuota,
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

impl Rule {
    /// Every rule, in declaration order.
    pub const ALL: [Rule; 39] = [
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
        Rule::UncarriedMetadata,
        Rule::ClusterQuota,
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
            | Rule::UncarriedMetadata
            | Rule::ClusterQuota
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
            Rule::UncarriedMetadata => "uncarried-metadata",
            Rule::ClusterQuota => "cluster-quota",
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
