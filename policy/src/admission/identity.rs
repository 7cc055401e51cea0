//! Who is writing: the request's user, the relay's own account, and the
//! [`Identity`] the rules see ([`identify`]).

use crate::document::Policy;
use crate::keys;

/// The authenticated user of an admission request (`request.userInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// `userInfo.username`.
    pub username: String,
    /// `userInfo.groups`.
    pub groups: Vec<String>,
}

/// The relay's own service account user name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayIdentity {
    /// e.g. `system:serviceaccount:secret-relay-system:secret-relay`.
    pub service_account: String,
}

/// Who is writing, as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The relay impersonating a cluster: user `secret-relay:cluster:<name>`
    /// in group `secret-relay:clusters`.
    Cluster(String),
    /// The relay's own service account.
    Relay,
    /// A break-glass user (or member of a break-glass group); exempt, logged.
    BreakGlass(String),
    /// Kubernetes' namespace controller, garbage collector or
    /// kube-controller-manager ([`keys::KUBERNETES_SYSTEM_USERS`]): its
    /// cleanup is never blocked ([`is_kubernetes_cleanup`](super::is_kubernetes_cleanup)), anything else
    /// it writes is judged like anybody's.
    KubernetesSystem(String),
    /// Anybody else (people, Argo CD, kubectl, `system:masters` included).
    Other(String),
}

impl Default for RelayIdentity {
    fn default() -> Self {
        RelayIdentity {
            service_account: keys::DEFAULT_RELAY_SERVICE_ACCOUNT.to_owned(),
        }
    }
}

impl Identity {
    /// A short label for logs and audit: `cluster:<name>`, `relay`,
    /// `break-glass:<user>`, `kubernetes-system:<user>`, `other:<user>`.
    pub fn audit_value(&self) -> String {
        match self {
            Identity::Cluster(c) => format!("cluster:{c}"),
            Identity::Relay => "relay".to_owned(),
            Identity::BreakGlass(u) => format!("break-glass:{u}"),
            Identity::KubernetesSystem(u) => format!("kubernetes-system:{u}"),
            Identity::Other(u) => format!("other:{u}"),
        }
    }
}

/// The cluster `user` is, when it is one: the impersonated user name
/// `secret-relay:cluster:<name>` in the clusters group (only the relay may
/// impersonate both).
pub fn impersonated_cluster(user: &UserInfo) -> Option<&str> {
    user.username
        .strip_prefix(keys::CLUSTER_USER_PREFIX)
        .filter(|name| !name.is_empty())
        .filter(|_| user.groups.iter().any(|g| g == keys::CLUSTERS_GROUP))
}

/// Who wrote: a cluster identity needs both the impersonated user name and
/// the clusters group (only the relay may impersonate); cluster identities
/// are checked first so no break-glass entry can exempt a cluster. A
/// break-glass entry wins over a Kubernetes system identity, so an operator
/// who lists one gets what they asked for.
pub fn identify(policy: &Policy, relay: &RelayIdentity, user: &UserInfo) -> Identity {
    if let Some(name) = impersonated_cluster(user) {
        return Identity::Cluster(name.to_owned());
    }
    if user.username == relay.service_account {
        return Identity::Relay;
    }
    let bg = policy.break_glass();
    if bg.users.contains(&user.username) || user.groups.iter().any(|g| bg.groups.contains(g)) {
        return Identity::BreakGlass(user.username.clone());
    }
    if keys::KUBERNETES_SYSTEM_USERS.contains(&user.username.as_str()) {
        return Identity::KubernetesSystem(user.username.clone());
    }
    Identity::Other(user.username.clone())
}
