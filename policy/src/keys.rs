//! The label and annotation keys and identity names the rules use.

/// Label that opts a cluster Secret in to up-sync (value `"true"`).
pub const SECRET_SYNC_LABEL: &str = "akuity.io/secret-sync";
/// Argo CD's own secret-type label.
pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
/// Annotation: comma list of cluster names, or `ALL`.
pub const ALLOWED_CLUSTERS_ANNOTATION: &str = "akuity.io/managed-secret-allowed-clusters";
/// Annotation: set-based selector over cluster labels.
pub const ALLOWED_CLUSTER_SELECTOR_ANNOTATION: &str =
    "akuity.io/managed-secret-allowed-cluster-selector";
/// Label naming the owner of a hub copy (`cluster.<name>`) or the origin of a down copy.
pub const OWNER_LABEL: &str = "secret-relay.io/owner";
/// Prefix of a cluster owner label value.
pub const OWNER_CLUSTER_PREFIX: &str = "cluster.";
/// Annotation `"true"` while a cluster owns an adopted control-plane secret.
pub const ADOPTED_ANNOTATION: &str = "secret-relay.io/adopted";
/// Annotation `"true"` a cluster admin sets on a down copy to confirm its held
/// deletion (the agent holds deletions beyond its budget).
pub const CONFIRM_DELETION_ANNOTATION: &str = "secret-relay.io/confirm-deletion";
/// Annotation `"true"` the agent sets on a down copy whose deletion it holds
/// beyond its budget: the copy stays held, across agent restarts, until a
/// cluster admin confirms it or the hub copy comes back (down-sync writes the
/// copy again without it).
pub const DELETION_HELD_ANNOTATION: &str = "secret-relay.io/deletion-held";
/// Annotation that older versions stamped with an unkeyed `sha256:` digest of the
/// data: a fingerprint anyone who sees metadata could test a guessed value
/// against. Nothing writes it any more: the mutating webhook removes it from what
/// it guards on the next write, and the agent removes it from down copies as drift.
pub const DIGEST_ANNOTATION: &str = "secret-relay.io/digest";
/// Annotation on a down copy naming the version of the hub copy it was written
/// from, `<hub uid>/<hub resourceVersion>` ([`crate::source_marker`]): no function
/// of the values, so a reader of metadata only (the Secrets page) tells an
/// up-to-date copy from an outdated one.
pub const SOURCE_ANNOTATION: &str = "secret-relay.io/source";
/// User name prefix the relay impersonates for a cluster.
pub const CLUSTER_USER_PREFIX: &str = "secret-relay:cluster:";
/// Group the relay adds to every write it forwards, which it has stamped (owner,
/// adopted) as the mutating webhook would: the API server does not call the
/// mutating webhook for it (matchConditions). Granting it opens nothing: the
/// validating webhook checks every stamp on what is stored.
pub const RELAY_STAMPED_GROUP: &str = "secret-relay:relay-stamped";
/// Group the relay impersonates for every cluster.
pub const CLUSTERS_GROUP: &str = "secret-relay:clusters";
/// The relay's service account user name by default.
pub const DEFAULT_RELAY_SERVICE_ACCOUNT: &str =
    "system:serviceaccount:secret-relay-system:secret-relay";
/// Kubernetes' namespace deletion and garbage collection identities:
/// kube-controller-manager's per-controller service accounts (with
/// `--use-service-account-credentials`, as kubeadm runs it) and its single
/// identity otherwise. Their DELETEs and their metadata-only UPDATEs (of
/// `ownerReferences` and `finalizers`) are never blocked; anything else they
/// write is judged like anybody's. The webhook configurations' `matchConditions`
/// list the same names.
pub const KUBERNETES_SYSTEM_USERS: [&str; 3] = [
    "system:serviceaccount:kube-system:namespace-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:kube-controller-manager",
];

/// The user the relay impersonates for cluster `name` (`Impersonate-User`), which
/// the webhook reads back with [`CLUSTER_USER_PREFIX`].
pub fn cluster_user(name: &str) -> String {
    format!("{CLUSTER_USER_PREFIX}{name}")
}
