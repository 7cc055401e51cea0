//! A cluster's identity as the relay carries it: a name that follows the
//! cluster-name rule, checked once.

use std::fmt;

use crate::document::is_valid_cluster_name;
use crate::keys;

/// A cluster name that follows [`is_valid_cluster_name`]. Made once, where a
/// cluster is authenticated (the relay's TLS accept names it from its client
/// certificate), and carried as it is to where the relay acts as that cluster
/// (`Impersonate-User`, [`ClusterId::impersonated_user`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(String);

impl ClusterId {
    /// `name` as a cluster id; `None` when it is not a valid cluster name.
    pub fn new(name: &str) -> Option<ClusterId> {
        is_valid_cluster_name(name).then(|| ClusterId(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The user the relay impersonates for this cluster ([`keys::cluster_user`]).
    pub fn impersonated_user(&self) -> String {
        keys::cluster_user(&self.0)
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ClusterId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ClusterId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ClusterId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_id_is_made_only_from_a_valid_cluster_name() {
        let id = ClusterId::new("cluster1").unwrap();
        assert_eq!(id, "cluster1");
        assert_eq!(id.to_string(), "cluster1");
        assert_eq!(id.impersonated_user(), "secret-relay:cluster:cluster1");
        for bad in ["", "Cluster1", "a.b", "-a", &"a".repeat(56)] {
            assert_eq!(ClusterId::new(bad), None, "{bad:?}");
        }
    }
}
