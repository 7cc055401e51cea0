//! Up-sync: whether a cluster's Secret may become (or update, or adopt) its
//! hub copy, with the same steps for the relay, `explain`, the UI and the
//! webhook.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::carry::{Direction, carries_annotation, carries_label};
use crate::document::{Cluster, Policy};
use crate::keys;
use crate::meta;

use super::denials::{blocked_for_cluster, hub_copy_blocked, unknown_cluster};
use super::owner::{ADOPTABLE_NAMES, Owner, invalid_owner_for_cluster, is_adoptable, owner};
use super::rule::{Decision, Rule};

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
    let name = meta::name(&secret.metadata);
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
    let name = meta::name(&secret.metadata);
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

/// What cluster `cluster`'s write of hub copy `name` may not put there, judged on
/// `written` (the copy as it will be stored) against `old` (the copy before it), or
/// `None` when it carries nothing of it:
///
/// - a label or annotation the carry rule never lets cross ([`crate::carry`]: Helm's
///   and Argo CD's tracking, the policy's `stripMetadata`), which an agent strips
///   before it pushes: on the hub it would make a tool there take the copy for one
///   of its own. secret-relay's own keys are judged by the stamp rules instead, and
///   kubectl's last-applied record is the writer's own (down copies drop it);
/// - a finalizer or owner reference the copy did not have: a finalizer would keep
///   the copy from ever being deleted when the policy revokes it or the cluster is
///   removed, and an owner reference would hand it to a hub object's garbage
///   collection. What the API server and Kubernetes' garbage collector put there
///   themselves came with the old copy.
///
/// The reason names the key (the cluster's own), never a value.
pub fn uncarried_metadata(
    policy: &Policy,
    cluster: &str,
    name: &str,
    written: &Secret,
    old: Option<&Secret>,
) -> Option<Decision> {
    let strip = policy.strip_metadata();
    // secret-relay's own keys are the stamp rules' to judge. kubectl's record of its
    // last client-side apply is the writer's own (a cluster may write through the
    // relay with `kubectl apply`), means nothing to a tool on the hub, and never goes
    // further: down copies drop it.
    let own = |k: &str| k.starts_with("secret-relay.io/") || k == LAST_APPLIED;
    let label = meta::labels(&written.metadata)
        .keys()
        .find(|k| !own(k) && !carries_label(k, Direction::Up, strip))
        .map(|k| format!("the label {k}"));
    let annotation = || {
        written
            .metadata
            .annotations
            .iter()
            .flat_map(BTreeMap::keys)
            .find(|k| !own(k) && !carries_annotation(k, Direction::Up, strip))
            .map(|k| format!("the annotation {k}"))
    };
    let what = format!("the hub copy {}/{name}", policy.control_plane_namespace());
    if let Some(key) = label.or_else(annotation) {
        return Some(Decision::deny(
            Rule::UncarriedMetadata,
            format!(
                "{what} as cluster {cluster} would store it carries {key}, which never crosses between clusters (tool ownership, or the policy's stripMetadata): the secret-relay agent strips it before it pushes; write the Secret on the cluster and let the agent push it"
            ),
        ));
    }
    let had = |pick: fn(&Secret) -> Vec<String>| old.map(pick).unwrap_or_default();
    let finalizers = |s: &Secret| s.metadata.finalizers.clone().unwrap_or_default();
    let owners = |s: &Secret| {
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .map(|r| r.uid.clone())
            .collect()
    };
    let old_finalizers = had(finalizers);
    let added_finalizer = finalizers(written)
        .into_iter()
        .find(|f| !old_finalizers.contains(f))
        .map(|f| format!("the finalizer {f}"));
    let old_owners = had(owners);
    let added_owner = owners(written)
        .into_iter()
        .find(|uid| !old_owners.contains(uid))
        .map(|_| "an owner reference".to_owned());
    added_finalizer.or(added_owner).map(|added| {
        Decision::deny(
            Rule::UncarriedMetadata,
            format!(
                "{what} as cluster {cluster} would store it gains {added}: a cluster never adds finalizers or owner references to a hub copy (they would keep it from being deleted when revoked, or tie it to a hub object); remove it"
            ),
        )
    })
}

/// kubectl's client-side apply record.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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

impl Judged {
    /// How the reasons name the Secret judged (`secret <ns>/<name>` or `the
    /// hub copy <ns>/<name>`), or the denial when it is not in the namespace
    /// this side judges.
    fn subject(
        self,
        policy: &Policy,
        cluster: &str,
        name: &str,
        secret: &Secret,
    ) -> Result<String, Decision> {
        let ns = secret.metadata.namespace.as_deref().unwrap_or("");
        match self {
            Judged::ClusterSecret => {
                let agent = policy.agent_namespace();
                if ns != agent {
                    return Err(Decision::deny(
                        Rule::WrongNamespace,
                        format!(
                            "secret {ns}/{name} is not in the agent namespace {agent}: only Secrets in namespace {agent} of cluster {cluster} sync up; move it there"
                        ),
                    ));
                }
                Ok(format!("secret {ns}/{name}"))
            }
            Judged::StoredHubCopy => {
                if ns != policy.control_plane_namespace() {
                    return Err(hub_copy_elsewhere(policy, cluster, ns, name));
                }
                Ok(format!("the hub copy {ns}/{name}"))
            }
        }
    }

    /// The denial for a Secret without the opt-in label; `what` is its
    /// [`Judged::subject`].
    fn not_opted_in(self, what: &str, cluster: &str) -> Decision {
        let reason = match self {
            Judged::ClusterSecret => format!(
                "{what} on cluster {cluster} does not opt in: add the label {}: \"true\" to sync it",
                keys::SECRET_SYNC_LABEL
            ),
            Judged::StoredHubCopy => format!(
                "{what} as cluster {cluster} would store it lacks the label {}: \"true\": a cluster writes only the hub copies of Secrets that opt in; keep the label (to stop syncing, remove it from the Secret on the cluster, which releases the copy)",
                keys::SECRET_SYNC_LABEL
            ),
        };
        Decision::deny(Rule::NotOptedIn, reason)
    }
}

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
    let Some(c) = policy.cluster(cluster) else {
        return unknown_cluster(cluster);
    };
    let what = match judged.subject(policy, cluster, name, secret) {
        Ok(what) => what,
        Err(d) => return d,
    };
    if !meta::is_opted_in(&secret.metadata) {
        return judged.not_opted_in(&what, cluster);
    }
    if let Some(d) = blocked_for_cluster(policy, secret, &what) {
        return d;
    }
    if let Some(h) = hub
        && let Some(d) = hub_copy_blocked(policy, h, policy.control_plane_namespace(), name)
    {
        return d;
    }
    let source = match admitting_source(policy, cluster, c, &what, secret, lookup) {
        Ok(source) => source,
        Err(d) => return d,
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

/// The index of the Secret Source that admits `secret` (`what` in the
/// reasons) from registered cluster `c` (named `cluster`), or the denial
/// when none does.
fn admitting_source(
    policy: &Policy,
    cluster: &str,
    c: &Cluster,
    what: &str,
    secret: &Secret,
    lookup: SourceLookup,
) -> Result<usize, Decision> {
    lookup(policy, cluster, &source_labels(secret)).ok_or_else(|| {
        Decision::deny(
            Rule::NoMatchingSource,
            format!(
                "no Secret Source allows {what} from cluster {cluster}: its labels match the labelSelector of no secretSources entry whose clusterSelector matches the cluster's labels {{{}}}; label the Secret to match one, or ask the control-plane admin to add a secretSources entry to the secret-relay-policy ConfigMap",
                format_labels(&c.labels),
            ),
        )
    })
}

/// The labels a Secret Source's label selector judges: the Secret's own,
/// without the owner label the mutating webhook stamps on a hub copy (a
/// cluster's Secret never carries it), so the cluster's Secret, the relay's
/// view of a write and the stored hub copy are judged alike.
pub(super) fn source_labels(secret: &Secret) -> Cow<'_, BTreeMap<String, String>> {
    let labels = meta::labels(&secret.metadata);
    if labels.contains_key(keys::OWNER_LABEL) {
        let mut l = labels.clone();
        l.remove(keys::OWNER_LABEL);
        Cow::Owned(l)
    } else {
        Cow::Borrowed(labels)
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
fn ownership(policy: &Policy, cluster: &str, name: &str, hub: Option<&Secret>) -> Decision {
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

pub(super) fn format_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
