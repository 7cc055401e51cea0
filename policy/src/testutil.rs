//! Builders shared by the unit tests.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::document::Policy;
use crate::keys;

/// Three clusters, sources by selector, an extra blocked name and label, and break-glass users.
pub(crate) const POLICY: &str = r#"
clusters:
  - { name: cluster1, labels: { env: prod, my-label: cluster1 } }
  - { name: cluster2, labels: { env: prod, my-label: cluster2 } }
  - { name: cluster3, labels: { env: dev, my-label: cluster3 } }
secretSources:
  - clusterSelector: "env=prod"
    labelSelector: "team in (my-team)"
  - clusterSelector: { matchLabels: { my-label: cluster3 } }
  - labelSelector: "argocd.argoproj.io/secret-type in (repository, repo-creds)"
extraBlocked: { names: [vault-token], labels: [vault] }
breakGlass: { users: [alice], groups: [sre] }
"#;

pub(crate) fn policy() -> Policy {
    Policy::from_yaml(POLICY).unwrap()
}

#[derive(Clone)]
pub(crate) struct SecretBuilder(Secret);

pub(crate) fn secret(ns: &str, name: &str) -> SecretBuilder {
    SecretBuilder(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    })
}

/// A cluster Secret in `akuity` that opts in, with `team=my-team`.
pub(crate) fn cluster_secret(name: &str) -> SecretBuilder {
    secret("akuity", name)
        .label(keys::SECRET_SYNC_LABEL, "true")
        .label("team", "my-team")
        .data("token", b"s3cr3t-value")
}

/// A hub copy in `argocd`.
pub(crate) fn hub(name: &str) -> SecretBuilder {
    secret("argocd", name).data("token", b"s3cr3t-value")
}

impl SecretBuilder {
    pub(crate) fn label(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(k.to_owned(), v.to_owned());
        self
    }

    pub(crate) fn without_label(mut self, k: &str) -> Self {
        if let Some(l) = self.0.metadata.labels.as_mut() {
            l.remove(k);
        }
        self
    }

    pub(crate) fn annotation(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(k.to_owned(), v.to_owned());
        self
    }

    pub(crate) fn ty(mut self, t: &str) -> Self {
        self.0.type_ = Some(t.to_owned());
        self
    }

    pub(crate) fn data(mut self, k: &str, v: &[u8]) -> Self {
        self.0
            .data
            .get_or_insert_with(BTreeMap::new)
            .insert(k.to_owned(), ByteString(v.to_vec()));
        self
    }

    pub(crate) fn string_data(mut self, k: &str, v: &str) -> Self {
        self.0
            .string_data
            .get_or_insert_with(BTreeMap::new)
            .insert(k.to_owned(), v.to_owned());
        self
    }

    pub(crate) fn finalizer(mut self, f: &str) -> Self {
        self.0
            .metadata
            .finalizers
            .get_or_insert_with(Vec::new)
            .push(f.to_owned());
        self
    }

    pub(crate) fn owner_reference(mut self, kind: &str, name: &str) -> Self {
        self.0
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(OwnerReference {
                api_version: "v1".to_owned(),
                kind: kind.to_owned(),
                name: name.to_owned(),
                uid: format!("uid-of-{name}"),
                ..OwnerReference::default()
            });
        self
    }

    pub(crate) fn resource_version(mut self, rv: &str) -> Self {
        self.0.metadata.resource_version = Some(rv.to_owned());
        self
    }

    pub(crate) fn owner(self, cluster: &str) -> Self {
        self.label(keys::OWNER_LABEL, &format!("cluster.{cluster}"))
    }

    pub(crate) fn adopted(self) -> Self {
        self.annotation(keys::ADOPTED_ANNOTATION, "true")
    }

    pub(crate) fn build(self) -> Secret {
        self.0
    }
}
