//! Who owns a hub copy ([`owner`]), which control-plane secrets a cluster
//! may adopt, and the denials for a copy whose owner label is invalid.

use std::fmt;

use k8s_openapi::api::core::v1::Secret;

use crate::document::is_valid_cluster_name;
use crate::keys;
use crate::meta;

use super::rule::{Decision, Rule};

/// Names of control-plane secrets a cluster may adopt (take ownership of).
pub const ADOPTABLE_NAMES: [&str; 3] = [
    "argocd-notifications-secret",
    "argocd-image-updater-secret",
    "application-set-secret",
];

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
        && is_adoptable(meta::name(&hub.metadata))
}

/// The denial for a cluster's write or release of a hub copy whose owner
/// label is invalid: [`invalid_owner`] without the label's value, which the
/// cluster may not see.
pub(super) fn invalid_owner_for_cluster(cp: &str, name: &str) -> Decision {
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
