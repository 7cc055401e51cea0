//! Unit tests of the sync decisions, one file per concern of the code; the
//! helpers they share are here.

use k8s_openapi::api::core::v1::Secret;

use super::targets::edit_distance;
use super::*;
use crate::document::{BlockedBy, Policy};
use crate::keys;
use crate::testutil::{SecretBuilder, cluster_secret, hub, policy, secret};

mod down;
mod fingerprint;
mod owner;
mod release;
mod rule;
mod targets;
mod up;

/// (case, cluster, secret, hub copy, rule, allowed)
type UpCase = (
    &'static str,
    &'static str,
    Secret,
    Option<Secret>,
    Rule,
    bool,
);

const BLOCKED_RULES: [Rule; 3] = [Rule::BlockedName, Rule::BlockedType, Rule::BlockedLabel];

fn sa_token(b: SecretBuilder) -> SecretBuilder {
    b.ty("kubernetes.io/service-account-token")
}

fn cluster_type(b: SecretBuilder) -> SecretBuilder {
    b.label(keys::SECRET_TYPE_LABEL, "cluster")
}

trait TapNs {
    fn tap_ns(self, ns: &str) -> Self;
}

impl TapNs for Secret {
    fn tap_ns(mut self, ns: &str) -> Self {
        self.metadata.namespace = Some(ns.to_owned());
        self
    }
}
