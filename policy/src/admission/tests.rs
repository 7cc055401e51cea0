use k8s_openapi::api::core::v1::Secret;
use proptest::prelude::*;

use super::*;
use crate::decision::{ADOPTABLE_NAMES, Owner, Rule, digest, is_adopted, owner, up_sync};
use crate::document::Policy;
use crate::keys;
use crate::testutil::{SecretBuilder, cluster_secret, hub, policy, secret};

/// (case, user, namespace, new object, old object, rule, allowed)
type Case = (
    &'static str,
    UserInfo,
    &'static str,
    Option<Secret>,
    Option<Secret>,
    Rule,
    bool,
);

const AGENT: &str = "system:serviceaccount:akuity:secret-relay-agent";
const NAMESPACE_CONTROLLER: &str = "system:serviceaccount:kube-system:namespace-controller";
const GARBAGE_COLLECTOR: &str = "system:serviceaccount:kube-system:generic-garbage-collector";
const KCM: &str = "system:kube-controller-manager";

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        username: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn cluster_user(c: &str) -> UserInfo {
    user(
        &format!("secret-relay:cluster:{c}"),
        &["secret-relay:clusters", "system:authenticated"],
    )
}

fn admin() -> UserInfo {
    user(
        "kubernetes-admin",
        &["system:masters", "system:authenticated"],
    )
}

fn relay_user() -> UserInfo {
    user(
        keys::DEFAULT_RELAY_SERVICE_ACCOUNT,
        &["system:serviceaccounts"],
    )
}

/// A hub copy as a cluster writes it: opted in, with the `team=my-team` label
/// the first Secret Source (clusters with `env=prod`) admits.
fn opted_in(b: SecretBuilder) -> SecretBuilder {
    b.label(keys::SECRET_SYNC_LABEL, "true")
        .label("team", "my-team")
}

fn apply(secret: &Secret, ops: &[PatchOp]) -> Secret {
    let mut doc = serde_json::to_value(secret).unwrap();
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::to_value(ops).unwrap()).unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    serde_json::from_value(doc).unwrap()
}

fn op_of(new: Option<&Secret>, old: Option<&Secret>) -> Operation {
    match (new, old) {
        (Some(_), None) => Operation::Create,
        (Some(_), Some(_)) => Operation::Update,
        _ => Operation::Delete,
    }
}

/// Runs a request the way the API server does: mutate, apply the patch, validate.
fn admit(
    mode: &Mode,
    u: &UserInfo,
    ns: &str,
    new: Option<Secret>,
    old: Option<Secret>,
) -> AdmissionVerdict {
    let p = policy();
    let relay = RelayIdentity::default();
    let name = new
        .as_ref()
        .or(old.as_ref())
        .and_then(|s| s.metadata.name.clone())
        .unwrap_or_default();
    let operation = op_of(new.as_ref(), old.as_ref());
    let input = AdmissionInput {
        operation,
        namespace: ns,
        name: &name,
        object: new.as_ref(),
        old_object: old.as_ref(),
        user: u,
        dry_run: false,
    };
    let ops = mutate(&p, &relay, mode, &input);
    let patched = new.as_ref().map(|s| apply(s, &ops));
    let input = AdmissionInput {
        object: patched.as_ref(),
        ..input
    };
    validate(&p, &relay, mode, &input)
}

#[test]
fn pointers_escape_tilde_and_slash() {
    assert_eq!(
        pointer(&["metadata", "labels", "secret-relay.io/owner"]),
        "/metadata/labels/secret-relay.io~1owner"
    );
    assert_eq!(pointer(&["a~b", "c/~d"]), "/a~0b/c~1~0d");
    assert_eq!(pointer(&[]), "");
}

#[test]
fn identities_are_recognised() {
    let p = policy();
    let relay = RelayIdentity::default();
    let cases = [
        (
            cluster_user("cluster1"),
            Identity::Cluster("cluster1".into()),
        ),
        // The cluster user name without the group is not the relay's impersonation.
        (
            user("secret-relay:cluster:cluster1", &[]),
            Identity::Other("secret-relay:cluster:cluster1".into()),
        ),
        (relay_user(), Identity::Relay),
        (user("alice", &[]), Identity::BreakGlass("alice".into())),
        (user("bob", &["sre"]), Identity::BreakGlass("bob".into())),
        (admin(), Identity::Other("kubernetes-admin".into())),
        (
            user(NAMESPACE_CONTROLLER, &["system:serviceaccounts"]),
            Identity::KubernetesSystem(NAMESPACE_CONTROLLER.into()),
        ),
        (
            user(GARBAGE_COLLECTOR, &[]),
            Identity::KubernetesSystem(GARBAGE_COLLECTOR.into()),
        ),
        // kube-controller-manager without --use-service-account-credentials.
        (user(KCM, &[]), Identity::KubernetesSystem(KCM.into())),
        // Another kube-system service account is nobody special.
        (
            user(
                "system:serviceaccount:kube-system:replicaset-controller",
                &[],
            ),
            Identity::Other("system:serviceaccount:kube-system:replicaset-controller".into()),
        ),
    ];
    for (u, want) in cases {
        assert_eq!(identify(&p, &relay, &u), want, "{u:?}");
    }
    // A break-glass group never exempts a cluster identity.
    let open = Policy::from_yaml("breakGlass: { groups: [secret-relay:clusters] }").unwrap();
    assert_eq!(
        identify(&open, &relay, &cluster_user("c")),
        Identity::Cluster("c".into())
    );
}

#[test]
fn the_user_and_group_the_relay_impersonates_are_the_cluster_the_webhook_identifies() {
    let p = Policy::from_yaml("clusters: [{ name: cluster1 }]").unwrap();
    let relay = RelayIdentity::default();
    // What the relay sends as Impersonate-User and Impersonate-Group.
    let impersonated = UserInfo {
        username: keys::cluster_user("cluster1"),
        groups: vec![keys::CLUSTERS_GROUP.to_owned()],
    };
    // The wire names, written out.
    assert_eq!(impersonated.username, "secret-relay:cluster:cluster1");
    assert_eq!(impersonated.groups, ["secret-relay:clusters"]);
    assert_eq!(
        identify(&p, &relay, &impersonated),
        Identity::Cluster("cluster1".into())
    );
}

#[test]
fn a_cluster_setting_an_owner_or_adoption_it_does_not_have_is_forged() {
    let owner = keys::OWNER_LABEL;
    let adopted = keys::ADOPTED_ANNOTATION;
    let forged =
        |w: &Secret, hub: Option<&Secret>| forged_stamp("c1", w, hub).map(|d| d.rule.to_string());
    let written = || secret("argocd", "x");
    let theirs = written().label(owner, "cluster.c2").build();
    assert_eq!(forged(&theirs, None).as_deref(), Some("owner-label-forged"));
    assert_eq!(
        forged(&written().label(owner, "control-plane").build(), None).as_deref(),
        Some("owner-label-forged")
    );
    assert_eq!(
        forged(&written().annotation(adopted, "true").build(), None).as_deref(),
        Some("owner-label-forged")
    );
    // Absent stamps, its own owner, and what the hub copy already carries are not.
    assert_eq!(forged(&written().build(), None), None);
    assert_eq!(
        forged(&written().label(owner, "cluster.c1").build(), None),
        None
    );
    assert_eq!(forged(&theirs, Some(&theirs)), None);
    let adopted_hub = written()
        .label(owner, "cluster.c1")
        .annotation(adopted, "true")
        .build();
    assert_eq!(forged(&adopted_hub, Some(&adopted_hub)), None);
}

#[test]
fn a_forged_stamp_denial_never_quotes_the_value_written() {
    let secret_value = "VE9QLVNFQ1JFVC1KV1QtS0VZ";
    let w = secret("argocd", "x")
        .label(keys::OWNER_LABEL, secret_value)
        .build();
    let d = forged_stamp("c1", &w, None).unwrap();
    assert!(!d.reason.contains(secret_value), "{}", d.reason);
    let w = secret("argocd", "x")
        .annotation(keys::ADOPTED_ANNOTATION, secret_value)
        .build();
    let d = forged_stamp("c1", &w, None).unwrap();
    assert!(!d.reason.contains(secret_value), "{}", d.reason);
}

// Long by design: a table, one row per case.
#[test]
fn control_plane_admission_follows_every_rule() {
    let cp = Mode::ControlPlane;
    let c1 = cluster_user("cluster1");
    let repo = || hub("repo");
    let own = || hub("repo").owner("cluster1");
    // What a cluster writes: its Secret opts in and a Secret Source admits it.
    let up = opted_in;
    // (case, user, namespace, new, old, rule, allowed)
    let cases: Vec<Case> = vec![
        // A cluster writing hub copies.
        (
            "cluster creates a hub copy",
            c1.clone(),
            "argocd",
            Some(up(repo()).build()),
            None,
            Rule::UpSyncNew,
            true,
        ),
        (
            "unregistered cluster",
            cluster_user("cluster9"),
            "argocd",
            Some(up(repo()).build()),
            None,
            Rule::UnknownCluster,
            false,
        ),
        (
            "cluster outside the control-plane namespace",
            c1.clone(),
            "default",
            Some(up(repo()).build()),
            None,
            Rule::WrongNamespace,
            false,
        ),
        (
            "create blocked name",
            c1.clone(),
            "argocd",
            Some(up(hub("argocd-secret")).build()),
            None,
            Rule::BlockedName,
            false,
        ),
        (
            "create blocked initial admin",
            c1.clone(),
            "argocd",
            Some(up(hub("argocd-initial-admin-secret")).build()),
            None,
            Rule::BlockedName,
            false,
        ),
        (
            "create blocked type",
            c1.clone(),
            "argocd",
            Some(up(repo().ty("kubernetes.io/service-account-token")).build()),
            None,
            Rule::BlockedType,
            false,
        ),
        (
            "create blocked label",
            c1.clone(),
            "argocd",
            Some(up(repo().label(keys::SECRET_TYPE_LABEL, "cluster")).build()),
            None,
            Rule::BlockedLabel,
            false,
        ),
        (
            "create extra-blocked name",
            c1.clone(),
            "argocd",
            Some(up(hub("vault-token")).build()),
            None,
            Rule::BlockedName,
            false,
        ),
        (
            "update blocked name",
            c1.clone(),
            "argocd",
            Some(up(hub("argocd-secret")).build()),
            Some(hub("argocd-secret").build()),
            Rule::BlockedName,
            false,
        ),
        (
            "update becomes blocked through a label",
            c1.clone(),
            "argocd",
            Some(up(own().label(keys::SECRET_TYPE_LABEL, "cluster")).build()),
            Some(own().build()),
            Rule::BlockedLabel,
            false,
        ),
        (
            "update becomes blocked through the type",
            c1.clone(),
            "argocd",
            Some(up(own().ty("kubernetes.io/service-account-token")).build()),
            Some(own().build()),
            Rule::BlockedType,
            false,
        ),
        (
            "update stops being blocked through a label",
            c1.clone(),
            "argocd",
            Some(up(repo()).build()),
            Some(repo().label(keys::SECRET_TYPE_LABEL, "cluster").build()),
            Rule::BlockedLabel,
            false,
        ),
        (
            "update stops being blocked through the type",
            c1.clone(),
            "argocd",
            Some(up(repo().ty("Opaque")).build()),
            Some(repo().ty("kubernetes.io/service-account-token").build()),
            Rule::BlockedType,
            false,
        ),
        (
            "cluster updates its own copy",
            c1.clone(),
            "argocd",
            Some(up(own()).build()),
            Some(own().build()),
            Rule::UpSyncOwner,
            true,
        ),
        (
            "cluster updates another cluster's copy",
            c1.clone(),
            "argocd",
            Some(up(repo()).build()),
            Some(repo().owner("cluster2").build()),
            Rule::OwnedByOtherCluster,
            false,
        ),
        (
            "cluster takes a control-plane secret",
            c1.clone(),
            "argocd",
            Some(up(repo()).build()),
            Some(repo().build()),
            Rule::OwnedByControlPlane,
            false,
        ),
        (
            "cluster forges another owner on create (stamped over)",
            c1.clone(),
            "argocd",
            Some(up(repo().owner("cluster2")).build()),
            None,
            Rule::UpSyncNew,
            true,
        ),
        (
            "cluster sets adopted on a new copy (stripped)",
            c1.clone(),
            "argocd",
            Some(up(repo().adopted()).build()),
            None,
            Rule::UpSyncNew,
            true,
        ),
        (
            "cluster deletes its own copy",
            c1.clone(),
            "argocd",
            None,
            Some(own().build()),
            Rule::ReleaseDelete,
            true,
        ),
        (
            "cluster deletes another's copy",
            c1.clone(),
            "argocd",
            None,
            Some(repo().owner("cluster2").build()),
            Rule::ReleaseNotOwner,
            false,
        ),
        (
            "cluster deletes a control-plane secret",
            c1.clone(),
            "argocd",
            None,
            Some(repo().build()),
            Rule::ReleaseNotOwner,
            false,
        ),
        (
            "cluster deletes an adopted secret",
            c1.clone(),
            "argocd",
            None,
            Some(
                hub("application-set-secret")
                    .owner("cluster1")
                    .adopted()
                    .build(),
            ),
            Rule::AdoptedMustReturn,
            false,
        ),
        (
            "cluster deletes its copy with an adopted annotation on a name that is not adoptable",
            c1.clone(),
            "argocd",
            None,
            Some(own().adopted().build()),
            Rule::ReleaseDelete,
            true,
        ),
        (
            "cluster deletes its copy that became blocked (extraBlocked grew)",
            c1.clone(),
            "argocd",
            None,
            Some(hub("vault-token").owner("cluster1").build()),
            Rule::ReleaseDelete,
            true,
        ),
        (
            "cluster updates its copy that became blocked",
            c1.clone(),
            "argocd",
            Some(up(hub("vault-token").owner("cluster1")).build()),
            Some(hub("vault-token").owner("cluster1").build()),
            Rule::BlockedName,
            false,
        ),
        (
            "cluster deletes another cluster's blocked copy",
            c1.clone(),
            "argocd",
            None,
            Some(hub("vault-token").owner("cluster2").build()),
            Rule::BlockedName,
            false,
        ),
        (
            "cluster deletes a copy whose owner label is not cluster.<name>",
            c1.clone(),
            "argocd",
            None,
            Some(repo().label(keys::OWNER_LABEL, "cluster1").build()),
            Rule::InvalidOwner,
            false,
        ),
        (
            "cluster updates a copy whose owner label is not cluster.<name>",
            c1.clone(),
            "argocd",
            Some(up(repo()).build()),
            Some(repo().label(keys::OWNER_LABEL, "cluster1").build()),
            Rule::InvalidOwner,
            false,
        ),
        (
            "cluster deletes a copy whose owner label is cluster.",
            c1.clone(),
            "argocd",
            None,
            Some(repo().label(keys::OWNER_LABEL, "cluster.").build()),
            Rule::InvalidOwner,
            false,
        ),
        (
            "cluster deletes a blocked secret",
            c1.clone(),
            "argocd",
            None,
            Some(hub("argocd-secret").build()),
            Rule::BlockedName,
            false,
        ),
        // The whole up-sync rule, on the object as it will be stored.
        (
            "cluster creates a hub copy without the opt-in label",
            c1.clone(),
            "argocd",
            Some(repo().label("team", "my-team").build()),
            None,
            Rule::NotOptedIn,
            false,
        ),
        (
            "cluster creates a hub copy whose opt-in label is not true",
            c1.clone(),
            "argocd",
            Some(up(repo()).label(keys::SECRET_SYNC_LABEL, "false").build()),
            None,
            Rule::NotOptedIn,
            false,
        ),
        (
            "cluster update would store its copy without the opt-in label",
            c1.clone(),
            "argocd",
            Some(up(own()).without_label(keys::SECRET_SYNC_LABEL).build()),
            Some(up(own()).build()),
            Rule::NotOptedIn,
            false,
        ),
        (
            "cluster creates a hub copy no Secret Source admits",
            c1.clone(),
            "argocd",
            Some(up(repo()).label("team", "other").build()),
            None,
            Rule::NoMatchingSource,
            false,
        ),
        (
            "cluster update would store its copy without the label its Secret Source needs",
            c1.clone(),
            "argocd",
            Some(up(own()).without_label("team").build()),
            Some(up(own()).build()),
            Rule::NoMatchingSource,
            false,
        ),
        (
            "a label-selector-only Secret Source admits any cluster",
            cluster_user("cluster2"),
            "argocd",
            Some(
                repo()
                    .label(keys::SECRET_SYNC_LABEL, "true")
                    .label(keys::SECRET_TYPE_LABEL, "repository")
                    .build(),
            ),
            None,
            Rule::UpSyncNew,
            true,
        ),
        (
            "a cluster-selector-only Secret Source admits its cluster's Secret",
            cluster_user("cluster3"),
            "argocd",
            Some(repo().label(keys::SECRET_SYNC_LABEL, "true").build()),
            None,
            Rule::UpSyncNew,
            true,
        ),
        (
            "the same Secret from a cluster no Secret Source selects",
            cluster_user("cluster2"),
            "argocd",
            Some(repo().label(keys::SECRET_SYNC_LABEL, "true").build()),
            None,
            Rule::NoMatchingSource,
            false,
        ),
        (
            "the Secret Source is judged before ownership",
            c1.clone(),
            "argocd",
            Some(up(repo()).without_label("team").build()),
            Some(repo().owner("cluster2").build()),
            Rule::NoMatchingSource,
            false,
        ),
        // Anybody else, cluster admins included.
        (
            "admin creates a managed secret",
            admin(),
            "argocd",
            Some(repo().build()),
            None,
            Rule::ControlPlaneWrite,
            true,
        ),
        (
            "admin writes a blocked secret",
            admin(),
            "argocd",
            Some(hub("argocd-secret").build()),
            Some(hub("argocd-secret").build()),
            Rule::ControlPlaneWrite,
            true,
        ),
        (
            "admin sets the owner label on create",
            admin(),
            "argocd",
            Some(own().build()),
            None,
            Rule::OwnerLabelForged,
            false,
        ),
        (
            "admin adds the owner label on update",
            admin(),
            "argocd",
            Some(own().build()),
            Some(repo().build()),
            Rule::OwnerLabelForged,
            false,
        ),
        (
            "admin sets owner control-plane by hand",
            admin(),
            "argocd",
            Some(repo().label(keys::OWNER_LABEL, "control-plane").build()),
            None,
            Rule::OwnerLabelForged,
            false,
        ),
        (
            "admin keeps an explicit control-plane owner label",
            admin(),
            "argocd",
            Some(
                repo()
                    .label(keys::OWNER_LABEL, "control-plane")
                    .data("k", b"new")
                    .build(),
            ),
            Some(repo().label(keys::OWNER_LABEL, "control-plane").build()),
            Rule::ControlPlaneWrite,
            true,
        ),
        (
            "admin edits a cluster's copy",
            admin(),
            "argocd",
            Some(own().build()),
            Some(own().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "admin strips the owner label",
            admin(),
            "argocd",
            Some(repo().build()),
            Some(own().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "admin deletes a cluster's copy",
            admin(),
            "argocd",
            None,
            Some(up(own()).build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "admin deletes a cluster's copy the policy no longer admits",
            admin(),
            "argocd",
            None,
            Some(own().label("team", "other").build()),
            Rule::Revoked,
            true,
        ),
        (
            "admin edits a cluster's copy the policy no longer admits",
            admin(),
            "argocd",
            Some(own().label("team", "other").data("token", b"x").build()),
            Some(own().label("team", "other").build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "admin deletes a managed secret",
            admin(),
            "argocd",
            None,
            Some(repo().build()),
            Rule::ControlPlaneWrite,
            true,
        ),
        (
            "admin outside the namespace",
            admin(),
            "default",
            Some(secret("default", "x").owner("cluster1").build()),
            None,
            Rule::OutOfScope,
            true,
        ),
        (
            "cluster user name without the group is anybody",
            user("secret-relay:cluster:cluster1", &[]),
            "argocd",
            Some(own().build()),
            Some(own().build()),
            Rule::OwnershipLock,
            false,
        ),
        // The relay's own account releases.
        (
            "relay returns an adopted secret",
            relay_user(),
            "argocd",
            Some(hub("application-set-secret").build()),
            Some(
                hub("application-set-secret")
                    .owner("cluster1")
                    .adopted()
                    .build(),
            ),
            Rule::ReleaseReturn,
            true,
        ),
        (
            "relay changes data while returning",
            relay_user(),
            "argocd",
            Some(
                hub("application-set-secret")
                    .data("token", b"other")
                    .build(),
            ),
            Some(
                hub("application-set-secret")
                    .owner("cluster1")
                    .adopted()
                    .build(),
            ),
            Rule::OwnershipLock,
            false,
        ),
        (
            "relay returns a copy the cluster created",
            relay_user(),
            "argocd",
            Some(repo().build()),
            Some(own().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "relay deletes a cluster's copy",
            relay_user(),
            "argocd",
            None,
            Some(own().build()),
            Rule::ReleaseDelete,
            true,
        ),
        (
            "relay deletes an adopted secret",
            relay_user(),
            "argocd",
            None,
            Some(
                hub("argocd-notifications-secret")
                    .owner("cluster1")
                    .adopted()
                    .build(),
            ),
            Rule::AdoptedMustReturn,
            false,
        ),
        (
            "relay deletes a cluster's copy that became blocked",
            relay_user(),
            "argocd",
            None,
            Some(hub("vault-token").owner("cluster1").build()),
            Rule::ReleaseDelete,
            true,
        ),
        (
            "relay returns an adopted secret that became blocked",
            relay_user(),
            "argocd",
            Some(hub("application-set-secret").label("vault", "x").build()),
            Some(
                hub("application-set-secret")
                    .label("vault", "x")
                    .owner("cluster1")
                    .adopted()
                    .build(),
            ),
            Rule::ReleaseReturn,
            true,
        ),
        // Beyond returns, the relay's own account writes only its hand-back record.
        (
            "relay deletes the copy of an unregistered cluster",
            relay_user(),
            "argocd",
            None,
            Some(repo().owner("cluster9").build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "relay sets the owner label itself",
            relay_user(),
            "argocd",
            Some(own().build()),
            None,
            Rule::OwnershipLock,
            false,
        ),
        (
            "relay edits a managed secret",
            relay_user(),
            "argocd",
            Some(repo().build()),
            Some(repo().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "relay creates a managed secret",
            relay_user(),
            "argocd",
            Some(repo().build()),
            None,
            Rule::OwnershipLock,
            false,
        ),
        (
            "relay creates its hand-back record",
            relay_user(),
            "argocd",
            Some(
                secret("argocd", "secret-relay-handback")
                    .data("argocd-notifications-secret", b"{}")
                    .build(),
            ),
            None,
            Rule::ControlPlaneWrite,
            true,
        ),
        (
            "relay updates its hand-back record",
            relay_user(),
            "argocd",
            Some(
                secret("argocd", "secret-relay-handback")
                    .data("argocd-notifications-secret", b"{}")
                    .build(),
            ),
            Some(secret("argocd", "secret-relay-handback").build()),
            Rule::ControlPlaneWrite,
            true,
        ),
        // Exempt identities.
        (
            "break-glass user",
            user("alice", &[]),
            "argocd",
            Some(repo().build()),
            Some(own().build()),
            Rule::BreakGlass,
            true,
        ),
        (
            "break-glass group",
            user("bob", &["sre"]),
            "argocd",
            None,
            Some(own().build()),
            Rule::BreakGlass,
            true,
        ),
        (
            "namespace deletion",
            user(
                "system:serviceaccount:kube-system:namespace-controller",
                &[],
            ),
            "argocd",
            None,
            Some(own().build()),
            Rule::SystemExempt,
            true,
        ),
        (
            "garbage collection",
            user(
                "system:serviceaccount:kube-system:generic-garbage-collector",
                &[],
            ),
            "argocd",
            None,
            Some(hub("argocd-secret").owner("cluster1").build()),
            Rule::SystemExempt,
            true,
        ),
        (
            "kube-controller-manager as one identity deletes",
            user(KCM, &[]),
            "argocd",
            None,
            Some(own().build()),
            Rule::SystemExempt,
            true,
        ),
        (
            "garbage collector removes an owner reference",
            user(GARBAGE_COLLECTOR, &[]),
            "argocd",
            Some(own().resource_version("2").build()),
            Some(own().owner_reference("ConfigMap", "parent").build()),
            Rule::SystemExempt,
            true,
        ),
        (
            "garbage collector removes a finalizer",
            user(KCM, &[]),
            "argocd",
            Some(own().owner_reference("ConfigMap", "parent").build()),
            Some(
                own()
                    .owner_reference("ConfigMap", "parent")
                    .finalizer("foregroundDeletion")
                    .build(),
            ),
            Rule::SystemExempt,
            true,
        ),
        (
            "a system identity changes a cluster's copy's data",
            user(GARBAGE_COLLECTOR, &[]),
            "argocd",
            Some(own().data("token", b"forged").build()),
            Some(own().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "a system identity changes a label along with a finalizer",
            user(KCM, &[]),
            "argocd",
            Some(own().label("x", "y").build()),
            Some(own().finalizer("f").build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "a system identity creates a secret with a forged owner label",
            user(NAMESPACE_CONTROLLER, &[]),
            "argocd",
            Some(own().build()),
            None,
            Rule::OwnerLabelForged,
            false,
        ),
        (
            "a system identity creates a control-plane secret",
            user(KCM, &[]),
            "argocd",
            Some(repo().build()),
            None,
            Rule::ControlPlaneWrite,
            true,
        ),
        // The way out of a lock whose owner is gone.
        (
            "admin deletes the copy of an unregistered cluster",
            admin(),
            "argocd",
            None,
            Some(repo().owner("cluster9").build()),
            Rule::OrphanedOwner,
            true,
        ),
        (
            "admin takes over the copy of an unregistered cluster",
            admin(),
            "argocd",
            Some(repo().data("token", b"mine").build()),
            Some(repo().owner("cluster9").build()),
            Rule::OrphanedOwner,
            true,
        ),
        (
            "admin takes over an adopted secret of an unregistered cluster",
            admin(),
            "argocd",
            Some(hub("application-set-secret").build()),
            Some(
                hub("application-set-secret")
                    .owner("cluster9")
                    .adopted()
                    .build(),
            ),
            Rule::OrphanedOwner,
            true,
        ),
        (
            "admin takes over but keeps the adopted annotation",
            admin(),
            "argocd",
            Some(hub("application-set-secret").adopted().build()),
            Some(
                hub("application-set-secret")
                    .owner("cluster9")
                    .adopted()
                    .build(),
            ),
            Rule::OwnerLabelForged,
            false,
        ),
        (
            "admin edits the copy of an unregistered cluster keeping its owner",
            admin(),
            "argocd",
            Some(repo().owner("cluster9").data("k", b"x").build()),
            Some(repo().owner("cluster9").build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "admin hands the copy of an unregistered cluster to another",
            admin(),
            "argocd",
            Some(repo().owner("cluster1").build()),
            Some(repo().owner("cluster9").build()),
            Rule::OwnerLabelForged,
            false,
        ),
        (
            "admin deletes a copy with an invalid owner label",
            admin(),
            "argocd",
            None,
            Some(repo().label(keys::OWNER_LABEL, "cluster1").build()),
            Rule::OrphanedOwner,
            true,
        ),
        (
            "admin takes over a copy with an invalid owner label",
            admin(),
            "argocd",
            Some(repo().build()),
            Some(repo().label(keys::OWNER_LABEL, "cluster1").build()),
            Rule::OrphanedOwner,
            true,
        ),
        (
            "admin edits a copy with an invalid owner label keeping it",
            admin(),
            "argocd",
            Some(repo().label(keys::OWNER_LABEL, "cluster1").build()),
            Some(repo().label(keys::OWNER_LABEL, "cluster1").build()),
            Rule::InvalidOwner,
            false,
        ),
        (
            "admin sets the adopted annotation on a control-plane secret",
            admin(),
            "argocd",
            Some(hub("application-set-secret").adopted().build()),
            Some(hub("application-set-secret").build()),
            Rule::OwnerLabelForged,
            false,
        ),
        (
            "admin drops a stray adopted annotation",
            admin(),
            "argocd",
            Some(hub("application-set-secret").build()),
            Some(hub("application-set-secret").adopted().build()),
            Rule::ControlPlaneWrite,
            true,
        ),
        (
            "break-glass outside the namespace bypasses nothing",
            user("alice", &[]),
            "default",
            Some(secret("default", "x").build()),
            None,
            Rule::OutOfScope,
            true,
        ),
    ];
    for (case, u, ns, new, old, rule, allowed) in cases {
        let v = admit(&cp, &u, ns, new, old);
        assert_eq!(
            (v.decision.rule, v.decision.allowed),
            (rule, allowed),
            "{case}: {}",
            v.decision.reason
        );
        assert_eq!(v.break_glass_used, rule == Rule::BreakGlass, "{case}");
        assert!(!v.decision.reason.contains("s3cr3t"), "{case}");
    }
}

#[test]
fn each_adoptable_name_is_adopted_through_admission() {
    let p = policy();
    let relay = RelayIdentity::default();
    let u = cluster_user("cluster1");
    for name in ADOPTABLE_NAMES {
        let old = hub(name).build();
        let new = cluster_secret(name).build();
        let mut new = new;
        new.metadata.namespace = Some("argocd".into());
        let input = AdmissionInput {
            operation: Operation::Update,
            namespace: "argocd",
            name,
            object: Some(&new),
            old_object: Some(&old),
            user: &u,
            dry_run: false,
        };
        let patched = apply(&new, &mutate(&p, &relay, &Mode::ControlPlane, &input));
        assert_eq!(owner(&patched), Owner::Cluster("cluster1".into()));
        assert!(is_adopted(&patched), "{name}");
        let v = validate(
            &p,
            &relay,
            &Mode::ControlPlane,
            &AdmissionInput {
                object: Some(&patched),
                ..input
            },
        );
        assert_eq!(
            (v.decision.rule, v.decision.allowed),
            (Rule::Adopt, true),
            "{name}"
        );
        assert_eq!(v.audit["owner"], "cluster.cluster1");

        // Later updates keep the adopted annotation.
        let again = AdmissionInput {
            old_object: Some(&patched),
            object: Some(&new),
            ..input
        };
        let kept = apply(&new, &mutate(&p, &relay, &Mode::ControlPlane, &again));
        assert!(is_adopted(&kept));
        let v = validate(
            &p,
            &relay,
            &Mode::ControlPlane,
            &AdmissionInput {
                object: Some(&kept),
                ..again
            },
        );
        assert_eq!(v.decision.rule, Rule::UpSyncOwner);
    }
}

#[test]
fn hand_set_ownership_is_denied_when_not_stamped() {
    // Without the mutating webhook's stamp, validation refuses what the cluster sent.
    let p = policy();
    let relay = RelayIdentity::default();
    let u = cluster_user("cluster1");
    let cases = [
        opted_in(hub("repo")).owner("cluster2").build(),
        opted_in(hub("repo")).build(),
        opted_in(hub("repo")).owner("cluster1").adopted().build(),
    ];
    for new in cases {
        let input = AdmissionInput {
            operation: Operation::Create,
            namespace: "argocd",
            name: "repo",
            object: Some(&new),
            old_object: None,
            user: &u,
            dry_run: false,
        };
        let v = validate(&p, &relay, &Mode::ControlPlane, &input);
        assert_eq!(
            (v.decision.rule, v.decision.allowed),
            (Rule::OwnerLabelForged, false)
        );
    }
}

#[test]
fn the_ownership_lock_reason_says_where_to_change_it() {
    let v = admit(
        &Mode::ControlPlane,
        &admin(),
        "argocd",
        Some(hub("foo").owner("cluster1").build()),
        Some(hub("foo").owner("cluster1").build()),
    );
    assert_eq!(
        v.decision.reason,
        "secret argocd/foo is owned by cluster cluster1: change it on cluster cluster1, or remove the akuity.io/secret-sync label there to release it"
    );
    assert_eq!(v.audit["identity"], "other:kubernetes-admin");
    assert_eq!(v.audit["rule"], "ownership-lock");
    assert_eq!(v.audit["owner"], "cluster.cluster1");
}

#[test]
fn break_glass_use_is_flagged_and_warned() {
    let v = admit(
        &Mode::ControlPlane,
        &user("alice", &[]),
        "argocd",
        None,
        Some(hub("foo").owner("cluster1").build()),
    );
    assert!(v.break_glass_used);
    assert_eq!(v.audit["identity"], "break-glass:alice");
    assert!(
        v.warnings.iter().any(|w| w.starts_with("break-glass")),
        "{:?}",
        v.warnings
    );
}

#[test]
fn down_sync_annotation_problems_are_warned_about() {
    let cases = [
        (
            hub("m").annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "env in ("),
            "does not parse",
        ),
        (
            hub("m").annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "  "),
            "allowed-cluster-selector is blank",
        ),
        (
            hub("m").annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, " , "),
            "allowed-clusters is blank",
        ),
    ];
    for (new, needle) in cases {
        let v = admit(
            &Mode::ControlPlane,
            &admin(),
            "argocd",
            Some(new.build()),
            None,
        );
        assert_eq!(v.decision.rule, Rule::ControlPlaneWrite);
        assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
        assert!(v.warnings[0].contains(needle), "{needle}: {:?}", v.warnings);
        assert!(
            v.warnings[0].contains("selects no cluster")
                || v.warnings[0].contains("names no cluster")
        );
    }
    // A valid annotation, or none, warns about nothing.
    let fine = hub("m")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "cluster1")
        .annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "env=prod")
        .build();
    let v = admit(&Mode::ControlPlane, &admin(), "argocd", Some(fine), None);
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
}

// Long by design: a table, one row per case.
#[test]
fn an_unregistered_name_in_allowed_clusters_is_warned_about_with_the_nearest_name() {
    let typo = |b: SecretBuilder| {
        b.annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "cluster1,clsuter2")
            .build()
    };
    let expected = "down-sync: the annotation akuity.io/managed-secret-allowed-clusters names clsuter2 (did you mean cluster2?), which is not a registered cluster, so nothing goes there: fix the name or register the cluster";
    // CREATE and UPDATE by a person, and a cluster's own hub copy through the
    // relay: allowed, with the warning (a warning, never a denial).
    let cases = [
        (
            "create",
            admin(),
            Some(typo(hub("m"))),
            None,
            Rule::ControlPlaneWrite,
        ),
        (
            "update",
            admin(),
            Some(typo(hub("m"))),
            Some(hub("m").build()),
            Rule::ControlPlaneWrite,
        ),
        (
            "cluster's hub copy",
            cluster_user("cluster1"),
            Some(typo(opted_in(hub("repo")))),
            None,
            Rule::UpSyncNew,
        ),
    ];
    for (case, u, new, old, rule) in cases {
        let v = admit(&Mode::ControlPlane, &u, "argocd", new, old);
        assert!(v.decision.allowed, "{case}: {}", v.decision.reason);
        assert_eq!(v.decision.rule, rule, "{case}: {}", v.decision.reason);
        assert_eq!(v.warnings, [expected], "{case}");
    }
    // A bad selector and a typo: one warning each.
    let both = hub("m")
        .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, "clsuter2")
        .annotation(keys::ALLOWED_CLUSTER_SELECTOR_ANNOTATION, "env in (")
        .build();
    let v = admit(&Mode::ControlPlane, &admin(), "argocd", Some(both), None);
    assert_eq!(v.warnings.len(), 2, "{:?}", v.warnings);
    assert!(v.warnings[0].contains("names clsuter2"), "{:?}", v.warnings);
    assert!(v.warnings[1].contains("does not parse"), "{:?}", v.warnings);

    // No warning on a DELETE, on a denial, outside the control-plane
    // namespace, or on a managed cluster.
    let quiet = [
        (
            "delete",
            Mode::ControlPlane,
            admin(),
            "argocd",
            None,
            Some(typo(hub("m"))),
        ),
        (
            "denied",
            Mode::ControlPlane,
            admin(),
            "argocd",
            Some(typo(hub("m").owner("cluster1"))),
            Some(hub("m").owner("cluster1").build()),
        ),
        (
            "other namespace",
            Mode::ControlPlane,
            admin(),
            "default",
            Some(typo(secret("default", "m"))),
            None,
        ),
        (
            "managed cluster",
            Mode::ManagedCluster {
                agent: AGENT.to_owned(),
            },
            admin(),
            "akuity",
            Some(typo(cluster_secret("m"))),
            None,
        ),
    ];
    for (case, mode, u, ns, new, old) in quiet {
        let v = admit(&mode, &u, ns, new, old);
        assert!(v.warnings.is_empty(), "{case}: {:?}", v.warnings);
    }
}

#[test]
fn all_and_registered_names_in_allowed_clusters_warn_about_nothing() {
    for value in [
        "ALL",
        "cluster2",
        "cluster1, cluster2, cluster3",
        "clsuter2,ALL",
    ] {
        let new = hub("m")
            .annotation(keys::ALLOWED_CLUSTERS_ANNOTATION, value)
            .build();
        let v = admit(&Mode::ControlPlane, &admin(), "argocd", Some(new), None);
        assert!(v.decision.allowed, "{value}");
        assert!(v.warnings.is_empty(), "{value}: {:?}", v.warnings);
    }
}

#[test]
fn an_update_or_delete_without_old_object_is_denied_whoever_sends_it() {
    let p = policy();
    let relay = RelayIdentity::default();
    let own = hub("repo").owner("cluster1").build();
    let users = [
        ("cluster", cluster_user("cluster1")),
        ("admin", admin()),
        ("relay", relay_user()),
        ("break-glass", user("alice", &[])),
        ("system", user(GARBAGE_COLLECTOR, &[])),
    ];
    let modes = [
        (Mode::ControlPlane, "argocd"),
        (
            Mode::ManagedCluster {
                agent: AGENT.to_owned(),
            },
            "akuity",
        ),
    ];
    for (mode, ns) in &modes {
        for (who, u) in &users {
            for (operation, object) in [
                (Operation::Update, Some(&own)),
                (Operation::Delete, None),
                (Operation::Create, None),
            ] {
                // A delete by Kubernetes' own cleanup passes without oldObject.
                if *who == "system" && operation == Operation::Delete {
                    continue;
                }
                let input = AdmissionInput {
                    operation,
                    namespace: ns,
                    name: "repo",
                    object,
                    old_object: None,
                    user: u,
                    dry_run: false,
                };
                let v = validate(&p, &relay, mode, &input);
                assert_eq!(
                    (v.decision.rule, v.decision.allowed),
                    (Rule::MissingObject, false),
                    "{mode:?} {who} {operation:?}: {}",
                    v.decision.reason
                );
                assert_eq!(v.audit["rule"], "missing-object");
                assert!(!v.break_glass_used);
            }
        }
        let input = AdmissionInput {
            operation: Operation::Delete,
            namespace: ns,
            name: "repo",
            object: None,
            old_object: None,
            user: &user(NAMESPACE_CONTROLLER, &[]),
            dry_run: false,
        };
        let v = validate(&p, &relay, mode, &input);
        assert_eq!(
            (v.decision.rule, v.decision.allowed),
            (Rule::SystemExempt, true)
        );
    }
}

// Long by design: a table, one row per case.
#[test]
fn kubernetes_cleanup_is_recognised_without_a_policy() {
    let own = hub("repo").owner("cluster1").build();
    let with_ref = hub("repo")
        .owner("cluster1")
        .owner_reference("ConfigMap", "p")
        .finalizer("orphan")
        .resource_version("7")
        .build();
    let changed = hub("repo")
        .owner("cluster1")
        .data("token", b"other")
        .build();
    // (user, operation, new, old, cleanup)
    let cases = [
        (
            NAMESPACE_CONTROLLER,
            Operation::Delete,
            None,
            Some(&own),
            true,
        ),
        (KCM, Operation::Delete, None, None, true),
        (
            GARBAGE_COLLECTOR,
            Operation::Update,
            Some(&own),
            Some(&with_ref),
            true,
        ),
        (
            GARBAGE_COLLECTOR,
            Operation::Update,
            Some(&with_ref),
            Some(&own),
            true,
        ),
        (
            GARBAGE_COLLECTOR,
            Operation::Update,
            Some(&changed),
            Some(&with_ref),
            false,
        ),
        (
            GARBAGE_COLLECTOR,
            Operation::Update,
            Some(&own),
            None,
            false,
        ),
        (KCM, Operation::Create, Some(&own), None, false),
        (
            "kubernetes-admin",
            Operation::Delete,
            None,
            Some(&own),
            false,
        ),
    ];
    for (name, operation, object, old_object, cleanup) in cases {
        let u = user(name, &[]);
        let input = AdmissionInput {
            operation,
            namespace: "argocd",
            name: "repo",
            object,
            old_object,
            user: &u,
            dry_run: false,
        };
        assert_eq!(
            is_kubernetes_cleanup(&input),
            cleanup,
            "{name} {operation:?}"
        );
        match validate_without_policy(&input) {
            Some(v) => {
                assert!(cleanup, "{name} {operation:?}");
                assert_eq!(
                    (v.decision.rule, v.decision.allowed),
                    (Rule::SystemExempt, true)
                );
                assert_eq!(v.audit["identity"], format!("kubernetes-system:{name}"));
                assert_eq!(v.audit["rule"], "system-exempt");
            }
            None => assert!(!cleanup, "{name} {operation:?}"),
        }
        // With a policy, the same request is exempt exactly when it is cleanup.
        let v = validate(
            &policy(),
            &RelayIdentity::default(),
            &Mode::ControlPlane,
            &input,
        );
        assert_eq!(
            v.decision.rule == Rule::SystemExempt,
            cleanup,
            "{name} {operation:?}"
        );
        // And the mutating webhook leaves cleanup alone.
        if cleanup {
            assert!(
                mutate(
                    &policy(),
                    &RelayIdentity::default(),
                    &Mode::ControlPlane,
                    &input
                )
                .is_empty()
            );
        }
    }
}

#[test]
fn out_of_scope_is_decided_without_the_objects() {
    let p = Policy::from_yaml("controlPlaneNamespace: hub\nagentNamespace: agents\n").unwrap();
    let relay = RelayIdentity::default();
    let managed = Mode::ManagedCluster {
        agent: AGENT.to_owned(),
    };
    assert!(in_scope(&p, &Mode::ControlPlane, "hub"));
    assert!(!in_scope(&p, &Mode::ControlPlane, "argocd"));
    assert!(in_scope(&p, &managed, "agents"));
    assert!(!in_scope(&p, &managed, "akuity"));
    let forged = secret("argocd", "x").owner("cluster1").build();
    for (mode, ns) in [(Mode::ControlPlane, "argocd"), (managed, "akuity")] {
        for operation in [Operation::Create, Operation::Update, Operation::Delete] {
            for object in [None, Some(&forged)] {
                let input = AdmissionInput {
                    operation,
                    namespace: ns,
                    name: "x",
                    object,
                    old_object: None,
                    user: &admin(),
                    dry_run: false,
                };
                let v = validate(&p, &relay, &mode, &input);
                assert_eq!(
                    (v.decision.rule, v.decision.allowed),
                    (Rule::OutOfScope, true),
                    "{mode:?} {operation:?}"
                );
                assert!(mutate(&p, &relay, &mode, &input).is_empty());
            }
        }
    }
    // A cluster identity outside the control-plane namespace is refused.
    let c1 = cluster_user("cluster1");
    let input = AdmissionInput {
        operation: Operation::Create,
        namespace: "argocd",
        name: "x",
        object: None,
        old_object: None,
        user: &c1,
        dry_run: false,
    };
    assert_eq!(
        validate(&p, &relay, &Mode::ControlPlane, &input)
            .decision
            .rule,
        Rule::WrongNamespace
    );
}

// Long by design: a table, one row per case.
#[test]
fn managed_cluster_admission_guards_down_copies() {
    let mode = Mode::ManagedCluster {
        agent: AGENT.to_owned(),
    };
    let agent = user(AGENT, &["system:serviceaccounts"]);
    let down = || {
        secret("akuity", "repo")
            .label(keys::OWNER_LABEL, "control-plane")
            .data("k", b"v")
    };
    let local = || secret("akuity", "repo").data("k", b"v");
    // (case, user, ns, new, old, rule, allowed)
    let cases: Vec<Case> = vec![
        (
            "agent creates a down copy",
            agent.clone(),
            "akuity",
            Some(down().build()),
            None,
            Rule::DownCopyAgent,
            true,
        ),
        (
            "agent updates a down copy",
            agent.clone(),
            "akuity",
            Some(down().build()),
            Some(down().build()),
            Rule::DownCopyAgent,
            true,
        ),
        (
            "agent deletes a down copy",
            agent.clone(),
            "akuity",
            None,
            Some(down().build()),
            Rule::DownCopyAgent,
            true,
        ),
        (
            "agent takes over a local Secret",
            agent.clone(),
            "akuity",
            Some(down().build()),
            Some(local().build()),
            Rule::DownSyncConflict,
            false,
        ),
        (
            "agent writes the opt-in label on a down copy",
            agent.clone(),
            "akuity",
            Some(down().label(keys::SECRET_SYNC_LABEL, "true").build()),
            None,
            Rule::DownCopyOptIn,
            false,
        ),
        (
            "agent writes a blocked down copy",
            agent.clone(),
            "akuity",
            Some(
                secret("akuity", "argocd-secret")
                    .label(keys::OWNER_LABEL, "control-plane")
                    .build(),
            ),
            None,
            Rule::BlockedName,
            false,
        ),
        (
            "someone edits a down copy",
            admin(),
            "akuity",
            Some(down().data("k", b"x").build()),
            Some(down().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "someone confirms a held deletion",
            admin(),
            "akuity",
            Some(
                down()
                    .annotation(keys::CONFIRM_DELETION_ANNOTATION, "true")
                    .build(),
            ),
            Some(down().build()),
            Rule::DeletionConfirmed,
            true,
        ),
        (
            "agent marks a down copy's deletion held",
            agent.clone(),
            "akuity",
            Some(
                down()
                    .annotation(keys::DELETION_HELD_ANNOTATION, "true")
                    .build(),
            ),
            Some(down().build()),
            Rule::DownCopyAgent,
            true,
        ),
        (
            "agent marks the held deletion of a copy that is blocked now",
            agent.clone(),
            "akuity",
            Some(
                secret("akuity", "argocd-secret")
                    .label(keys::OWNER_LABEL, "control-plane")
                    .annotation(keys::DELETION_HELD_ANNOTATION, "true")
                    .build(),
            ),
            Some(
                secret("akuity", "argocd-secret")
                    .label(keys::OWNER_LABEL, "control-plane")
                    .build(),
            ),
            Rule::DownCopyAgent,
            true,
        ),
        (
            "agent writes a blocked copy otherwise",
            agent.clone(),
            "akuity",
            Some(
                secret("akuity", "argocd-secret")
                    .label(keys::OWNER_LABEL, "control-plane")
                    .data("k", b"x")
                    .build(),
            ),
            Some(
                secret("akuity", "argocd-secret")
                    .label(keys::OWNER_LABEL, "control-plane")
                    .build(),
            ),
            Rule::BlockedName,
            false,
        ),
        (
            "someone confirms a deletion the agent marked held",
            admin(),
            "akuity",
            Some(
                down()
                    .annotation(keys::DELETION_HELD_ANNOTATION, "true")
                    .annotation(keys::CONFIRM_DELETION_ANNOTATION, "true")
                    .build(),
            ),
            Some(
                down()
                    .annotation(keys::DELETION_HELD_ANNOTATION, "true")
                    .build(),
            ),
            Rule::DeletionConfirmed,
            true,
        ),
        (
            "someone confirms a held deletion and removes the held marker",
            admin(),
            "akuity",
            Some(
                down()
                    .annotation(keys::CONFIRM_DELETION_ANNOTATION, "true")
                    .build(),
            ),
            Some(
                down()
                    .annotation(keys::DELETION_HELD_ANNOTATION, "true")
                    .build(),
            ),
            Rule::OwnershipLock,
            false,
        ),
        (
            "someone marks a down copy held",
            admin(),
            "akuity",
            Some(
                down()
                    .annotation(keys::DELETION_HELD_ANNOTATION, "true")
                    .build(),
            ),
            Some(down().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "someone confirms a deletion and edits the data",
            admin(),
            "akuity",
            Some(
                down()
                    .annotation(keys::CONFIRM_DELETION_ANNOTATION, "true")
                    .data("k", b"x")
                    .build(),
            ),
            Some(down().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "someone sets the confirmation to another value",
            admin(),
            "akuity",
            Some(
                down()
                    .annotation(keys::CONFIRM_DELETION_ANNOTATION, "yes")
                    .build(),
            ),
            Some(down().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "someone strips the marker",
            admin(),
            "akuity",
            Some(local().build()),
            Some(down().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "someone deletes a down copy",
            admin(),
            "akuity",
            None,
            Some(down().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "someone creates a fake down copy",
            admin(),
            "akuity",
            Some(down().build()),
            None,
            Rule::OwnerLabelForged,
            false,
        ),
        (
            "someone marks a local Secret",
            admin(),
            "akuity",
            Some(down().build()),
            Some(local().build()),
            Rule::OwnerLabelForged,
            false,
        ),
        (
            "someone edits a local Secret",
            admin(),
            "akuity",
            Some(local().build()),
            Some(local().build()),
            Rule::OutOfScope,
            true,
        ),
        (
            "someone deletes a local Secret",
            admin(),
            "akuity",
            None,
            Some(local().build()),
            Rule::OutOfScope,
            true,
        ),
        (
            "other namespaces are out of scope",
            admin(),
            "default",
            Some(
                secret("default", "x")
                    .label(keys::OWNER_LABEL, "control-plane")
                    .build(),
            ),
            None,
            Rule::OutOfScope,
            true,
        ),
        (
            "namespace deletion",
            user(
                "system:serviceaccount:kube-system:namespace-controller",
                &[],
            ),
            "akuity",
            None,
            Some(down().build()),
            Rule::SystemExempt,
            true,
        ),
        (
            "garbage collector removes a finalizer from a down copy",
            user(GARBAGE_COLLECTOR, &[]),
            "akuity",
            Some(down().build()),
            Some(down().finalizer("f").build()),
            Rule::SystemExempt,
            true,
        ),
        (
            "a system identity edits a down copy",
            user(KCM, &[]),
            "akuity",
            Some(down().data("k", b"x").build()),
            Some(down().build()),
            Rule::OwnershipLock,
            false,
        ),
        (
            "break-glass",
            user("alice", &[]),
            "akuity",
            Some(local().build()),
            Some(down().build()),
            Rule::BreakGlass,
            true,
        ),
    ];
    for (case, u, ns, new, old, rule, allowed) in cases {
        let v = admit(&mode, &u, ns, new, old);
        assert_eq!(
            (v.decision.rule, v.decision.allowed),
            (rule, allowed),
            "{case}: {}",
            v.decision.reason
        );
    }
}

// Long by design: one scenario after another over shared fixtures.
#[test]
fn mutation_stamps_the_owner_removes_an_old_digest_and_nothing_else() {
    let p = policy();
    let relay = RelayIdentity::default();
    let c1 = cluster_user("cluster1");
    let new = hub("repo").build();
    let input = AdmissionInput {
        operation: Operation::Create,
        namespace: "argocd",
        name: "repo",
        object: Some(&new),
        old_object: None,
        user: &c1,
        dry_run: false,
    };
    let ops = mutate(&p, &relay, &Mode::ControlPlane, &input);
    let json = serde_json::to_value(&ops).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"op": "add", "path": "/metadata/labels", "value": {"secret-relay.io/owner": "cluster.cluster1"}},
        ])
    );

    let labelled = hub("repo")
        .label("team", "a")
        .annotation("note", "x")
        .build();
    let ops = mutate(
        &p,
        &relay,
        &Mode::ControlPlane,
        &AdmissionInput {
            object: Some(&labelled),
            ..input
        },
    );
    assert_eq!(
        serde_json::to_value(&ops).unwrap(),
        serde_json::json!([
            {"op": "add", "path": "/metadata/labels/secret-relay.io~1owner", "value": "cluster.cluster1"},
        ])
    );

    // Anybody else gets nothing; an old version's digest goes, from anybody's write.
    let admin = admin();
    let plain = hub("repo").annotation("note", "x").build();
    assert!(
        mutate(
            &p,
            &relay,
            &Mode::ControlPlane,
            &AdmissionInput {
                object: Some(&plain),
                user: &admin,
                ..input
            },
        )
        .is_empty()
    );
    let stale = hub("repo")
        .annotation(keys::DIGEST_ANNOTATION, "sha256:00")
        .build();
    for user in [&admin, &c1] {
        let ops = mutate(
            &p,
            &relay,
            &Mode::ControlPlane,
            &AdmissionInput {
                object: Some(&stale),
                user,
                ..input
            },
        );
        assert!(
            ops.contains(&PatchOp::Remove {
                path: "/metadata/annotations/secret-relay.io~1digest".into(),
            }),
            "{ops:?}"
        );
    }

    // Nothing on DELETE, CONNECT or outside the namespace.
    for operation in [Operation::Delete, Operation::Connect] {
        assert!(
            mutate(
                &p,
                &relay,
                &Mode::ControlPlane,
                &AdmissionInput { operation, ..input }
            )
            .is_empty()
        );
    }
    let elsewhere = secret("default", "repo").build();
    assert!(
        mutate(
            &p,
            &relay,
            &Mode::ControlPlane,
            &AdmissionInput {
                namespace: "default",
                object: Some(&elsewhere),
                ..input
            }
        )
        .is_empty()
    );

    // On a managed cluster only down copies are patched: an old digest goes.
    let mode = Mode::ManagedCluster {
        agent: AGENT.to_owned(),
    };
    let local = secret("akuity", "x").build();
    let agent = user(AGENT, &[]);
    let managed = AdmissionInput {
        namespace: "akuity",
        object: Some(&local),
        user: &agent,
        ..input
    };
    assert!(mutate(&p, &relay, &mode, &managed).is_empty());
    let down = secret("akuity", "x")
        .label(keys::OWNER_LABEL, "control-plane")
        .annotation(keys::SOURCE_ANNOTATION, "u-1/7")
        .build();
    assert!(
        mutate(
            &p,
            &relay,
            &mode,
            &AdmissionInput {
                object: Some(&down),
                ..managed
            },
        )
        .is_empty()
    );
    let old_down = secret("akuity", "x")
        .label(keys::OWNER_LABEL, "control-plane")
        .annotation(keys::DIGEST_ANNOTATION, "sha256:00")
        .build();
    let ops = mutate(
        &p,
        &relay,
        &mode,
        &AdmissionInput {
            object: Some(&old_down),
            ..managed
        },
    );
    assert_eq!(
        ops,
        vec![PatchOp::Remove {
            path: "/metadata/annotations/secret-relay.io~1digest".into(),
        }]
    );
}

#[test]
fn mutation_stores_no_function_of_the_values() {
    // Two Secrets with the same metadata and different values get the same patch,
    // from every identity, on both sides.
    let p = policy();
    let relay = RelayIdentity::default();
    let identities = [cluster_user("cluster1"), admin(), relay_user()];
    let cases = [
        (
            Mode::ControlPlane,
            "argocd",
            hub("repo").label("team", "a").annotation("note", "x"),
        ),
        (
            Mode::ManagedCluster {
                agent: AGENT.to_owned(),
            },
            "akuity",
            secret("akuity", "repo")
                .label(keys::OWNER_LABEL, "control-plane")
                .annotation(keys::SOURCE_ANNOTATION, "u-1/7"),
        ),
    ];
    for (mode, ns, base) in cases {
        let a = base.clone().data("password", b"hunter2").build();
        let b = base.data("password", b"correct horse").build();
        assert_ne!(digest(&a), digest(&b));
        for u in &identities {
            let input = |object| AdmissionInput {
                operation: Operation::Create,
                namespace: ns,
                name: "repo",
                object: Some(object),
                old_object: None,
                user: u,
                dry_run: false,
            };
            let (pa, pb) = (
                mutate(&p, &relay, &mode, &input(&a)),
                mutate(&p, &relay, &mode, &input(&b)),
            );
            assert_eq!(pa, pb, "{ns} as {}", u.username);
            let (a, b) = (apply(&a, &pa), apply(&b, &pb));
            assert_eq!(a.metadata.annotations, b.metadata.annotations);
            assert_eq!(a.metadata.labels, b.metadata.labels);
        }
    }
}

#[test]
fn debug_output_never_shows_secret_data() {
    let s = hub("repo")
        .data("token", b"s3cr3t-value")
        .string_data("pw", "hunter2")
        .build();
    let u = admin();
    let input = AdmissionInput {
        operation: Operation::Update,
        namespace: "argocd",
        name: "repo",
        object: Some(&s),
        old_object: Some(&s),
        user: &u,
        dry_run: true,
    };
    let shown = format!("{input:?}");
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("hunter2"),
        "{shown}"
    );
    let v = validate(
        &policy(),
        &RelayIdentity::default(),
        &Mode::ControlPlane,
        &input,
    );
    let shown = format!("{v:?}");
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("hunter2"),
        "{shown}"
    );
}

fn identity_strategy() -> impl Strategy<Value = UserInfo> {
    prop_oneof![
        (0u8..4).prop_map(|i| cluster_user(&format!("cluster{i}"))),
        Just(admin()),
        Just(relay_user()),
        Just(user("alice", &[])),
        Just(user(NAMESPACE_CONTROLLER, &[])),
        Just(user(KCM, &[])),
    ]
}

fn secret_strategy() -> impl Strategy<Value = Option<Secret>> {
    let name = prop_oneof![
        Just("repo"),
        Just("application-set-secret"),
        Just("argocd-notifications-secret"),
        Just("argocd-secret"),
    ];
    let owner = prop_oneof![
        Just(None),
        (0u8..4).prop_map(|i| Some(format!("cluster{i}")))
    ];
    let extra = prop::collection::btree_map("[a-z]{1,3}", "[a-z]{0,3}", 0..3);
    prop::option::of(
        (
            name,
            owner,
            any::<bool>(),
            any::<bool>(),
            extra,
            "[a-z]{0,4}",
        )
            .prop_map(|(name, owner, adopted, stale_digest, extra, value)| {
                let mut b = hub(name).data("k", value.as_bytes());
                if let Some(o) = owner {
                    b = b.owner(&o);
                }
                if adopted {
                    b = b.adopted();
                }
                if stale_digest {
                    b = b.annotation(keys::DIGEST_ANNOTATION, "sha256:stale");
                }
                for (k, v) in extra {
                    b = b.label(&k, &v);
                }
                b.build()
            }),
    )
}

proptest! {
    #[test]
    fn mutation_is_idempotent_and_mutated_secrets_pass_validation(
        u in identity_strategy(),
        new in secret_strategy(),
        old in secret_strategy(),
        managed in any::<bool>(),
    ) {
        let p = policy();
        let relay = RelayIdentity::default();
        let mode = if managed { Mode::ManagedCluster { agent: AGENT.to_owned() } } else { Mode::ControlPlane };
        let ns = if managed { "akuity" } else { "argocd" };
        let fix_ns = |s: Secret| { let mut s = s; s.metadata.namespace = Some(ns.to_owned()); s };
        let new = new.map(fix_ns);
        let old = old.map(fix_ns);
        let operation = op_of(new.as_ref(), old.as_ref());
        let name = new.as_ref().or(old.as_ref()).and_then(|s| s.metadata.name.clone()).unwrap_or_default();
        let input = AdmissionInput {
            operation,
            namespace: ns,
            name: &name,
            object: new.as_ref(),
            old_object: old.as_ref(),
            user: &u,
            dry_run: false,
        };
        let ops = mutate(&p, &relay, &mode, &input);
        if let Some(new) = &new {
            let patched = apply(new, &ops);
            let again = AdmissionInput { object: Some(&patched), ..input };
            prop_assert!(mutate(&p, &relay, &mode, &again).is_empty());
            if !managed && matches!(identify(&p, &relay, &u), Identity::Cluster(_)) {
                // A cluster's write is never refused for its own stamp.
                let v = validate(&p, &relay, &mode, &again);
                prop_assert_ne!(v.decision.rule, Rule::OwnerLabelForged, "{}", v.decision.reason);
            }
        } else {
            prop_assert!(ops.is_empty());
        }
    }

    #[test]
    fn a_system_identity_outside_cleanup_is_judged_like_anybody(
        new in secret_strategy(),
        old in secret_strategy(),
        finalizer in any::<bool>(),
        system in prop_oneof![Just(NAMESPACE_CONTROLLER), Just(GARBAGE_COLLECTOR), Just(KCM)],
    ) {
        let p = policy();
        let relay = RelayIdentity::default();
        let old = old.map(|s| if finalizer { let mut s = s; s.metadata.finalizers = Some(vec!["f".into()]); s } else { s });
        let operation = op_of(new.as_ref(), old.as_ref());
        let name = new.as_ref().or(old.as_ref()).and_then(|s| s.metadata.name.clone()).unwrap_or_default();
        let sys = user(system, &[]);
        let nobody = user("nobody", &[]);
        let input = AdmissionInput {
            operation,
            namespace: "argocd",
            name: &name,
            object: new.as_ref(),
            old_object: old.as_ref(),
            user: &sys,
            dry_run: false,
        };
        let as_system = validate(&p, &relay, &Mode::ControlPlane, &input);
        if is_kubernetes_cleanup(&input) {
            prop_assert_eq!(as_system.decision.rule, Rule::SystemExempt);
            prop_assert!(operation == Operation::Delete || operation == Operation::Update);
        } else {
            let as_nobody = validate(&p, &relay, &Mode::ControlPlane, &AdmissionInput { user: &nobody, ..input });
            prop_assert_eq!(
                (as_system.decision.rule, as_system.decision.allowed),
                (as_nobody.decision.rule, as_nobody.decision.allowed)
            );
        }
    }

    #[test]
    fn every_decision_names_a_rule_with_its_outcome(
        u in identity_strategy(),
        new in secret_strategy(),
        old in secret_strategy(),
        managed in any::<bool>(),
    ) {
        let mode = if managed { Mode::ManagedCluster { agent: AGENT.to_owned() } } else { Mode::ControlPlane };
        let ns = if managed { "akuity" } else { "argocd" };
        let v = admit(&mode, &u, ns, new, old);
        prop_assert_eq!(v.decision.allowed, v.decision.rule.allows(), "{}", v.decision.reason);
        prop_assert_eq!(v.audit["rule"].as_str(), v.decision.rule.as_str());
    }
}

/// A cluster's write as the API server would store it: `extra` labels on a
/// hub copy with or without the opt-in label (or with another value), with or
/// without the `team` label the first Secret Source needs.
fn cluster_write_strategy() -> impl Strategy<Value = Secret> {
    let name = prop_oneof![
        Just("repo"),
        Just("application-set-secret"),
        Just("argocd-secret"),
        Just("vault-token"),
    ];
    let opt_in = prop_oneof![Just(None), Just(Some("true")), Just(Some("false"))];
    let team = prop_oneof![Just(None), Just(Some("my-team")), Just(Some("other"))];
    let secret_type = prop_oneof![
        Just(None),
        Just(Some("repository")),
        Just(Some("cluster")),
        Just(Some("helm"))
    ];
    let forged_owner = prop_oneof![
        Just(None),
        (0u8..4).prop_map(|i| Some(format!("cluster{i}")))
    ];
    (
        name,
        opt_in,
        team,
        secret_type,
        forged_owner,
        any::<bool>(),
        "[a-z]{0,4}",
    )
        .prop_map(
            |(name, opt_in, team, secret_type, forged_owner, blocked_label, value)| {
                let mut b = hub(name).data("k", value.as_bytes());
                if let Some(v) = opt_in {
                    b = b.label(keys::SECRET_SYNC_LABEL, v);
                }
                if let Some(v) = team {
                    b = b.label("team", v);
                }
                if let Some(v) = secret_type {
                    b = b.label(keys::SECRET_TYPE_LABEL, v);
                }
                if let Some(o) = forged_owner {
                    b = b.owner(&o);
                }
                if blocked_label {
                    b = b.label("vault", "x");
                }
                b.build()
            },
        )
}

proptest! {
    /// The webhook judges a cluster's CREATE and UPDATE with `up_sync` itself: on
    /// the stored object (mutated), taken as the cluster's Secret, against the old
    /// one, the relay's decision and the webhook's are the same, rule and reason.
    #[test]
    fn a_clusters_write_is_judged_by_up_sync_on_the_stored_object(
        cluster in (0u8..4).prop_map(|i| format!("cluster{i}")),
        new in cluster_write_strategy(),
        old in secret_strategy(),
    ) {
        let p = policy();
        let relay = RelayIdentity::default();
        let u = cluster_user(&cluster);
        let name = new.metadata.name.clone().unwrap();
        let old = old.map(|mut o| { o.metadata.name = Some(name.clone()); o });
        let input = AdmissionInput {
            operation: if old.is_some() { Operation::Update } else { Operation::Create },
            namespace: "argocd",
            name: &name,
            object: Some(&new),
            old_object: old.as_ref(),
            user: &u,
            dry_run: false,
        };
        let stored = apply(&new, &mutate(&p, &relay, &Mode::ControlPlane, &input));
        let v = validate(&p, &relay, &Mode::ControlPlane, &AdmissionInput { object: Some(&stored), ..input });
        let mut as_cluster_secret = stored.clone();
        as_cluster_secret.metadata.namespace = Some("akuity".into());
        let d = up_sync(&p, &cluster, &as_cluster_secret, old.as_ref());
        prop_assert_eq!((v.decision.allowed, v.decision.rule), (d.allowed, d.rule), "{} / {}", v.decision.reason, d.reason);
    }
}

#[test]
fn the_stored_object_not_the_request_is_judged() {
    // What a patch, server-side apply or a body read two ways leaves: the stored
    // object lacks what the request (or the relay's view of it) had.
    let own = || opted_in(hub("repo")).owner("cluster1");
    let cases = [
        // `$patch: replace` on labels, or SSA taking the label over: only opt-in left.
        (
            own()
                .without_label("team")
                .label(keys::SECRET_TYPE_LABEL, "helm")
                .build(),
            Rule::NoMatchingSource,
        ),
        // `$patch: delete` on labels: none left (the owner label is stamped again).
        (hub("repo").owner("cluster1").build(), Rule::NotOptedIn),
        // A merge patch setting the opt-in label to null.
        (
            own().without_label(keys::SECRET_SYNC_LABEL).build(),
            Rule::NotOptedIn,
        ),
        // The opt-in label taken over by another value.
        (
            own().label(keys::SECRET_SYNC_LABEL, "false").build(),
            Rule::NotOptedIn,
        ),
    ];
    for (stored, rule) in cases {
        let v = admit(
            &Mode::ControlPlane,
            &cluster_user("cluster1"),
            "argocd",
            Some(stored),
            Some(own().build()),
        );
        assert_eq!(
            (v.decision.rule, v.decision.allowed),
            (rule, false),
            "{}",
            v.decision.reason
        );
        assert_eq!(v.audit["rule"], rule.as_str());
    }
    // The compliant write still passes.
    let v = admit(
        &Mode::ControlPlane,
        &cluster_user("cluster1"),
        "argocd",
        Some(own().data("token", b"new").build()),
        Some(own().build()),
    );
    assert_eq!(
        (v.decision.rule, v.decision.allowed),
        (Rule::UpSyncOwner, true)
    );
    assert!(
        v.decision.reason.contains("secretSources[0]"),
        "{}",
        v.decision.reason
    );
}

#[test]
fn a_hub_copy_that_stops_being_admitted_blocks_the_clusters_writes_but_not_its_release() {
    // The cluster's own copy, no longer admitted (a Secret Source narrowed): the
    // cluster may not update it, and may still release it.
    let narrowed = Policy::from_yaml(
        "clusters: [{ name: cluster1, labels: { env: prod } }]\nsecretSources: [{ clusterSelector: env=staging }]",
    )
    .unwrap();
    let relay = RelayIdentity::default();
    let u = cluster_user("cluster1");
    let own = opted_in(hub("repo")).owner("cluster1").build();
    let input = AdmissionInput {
        operation: Operation::Update,
        namespace: "argocd",
        name: "repo",
        object: Some(&own),
        old_object: Some(&own),
        user: &u,
        dry_run: false,
    };
    let v = validate(&narrowed, &relay, &Mode::ControlPlane, &input);
    assert_eq!(
        (v.decision.rule, v.decision.allowed),
        (Rule::NoMatchingSource, false)
    );
    let v = validate(
        &narrowed,
        &relay,
        &Mode::ControlPlane,
        &AdmissionInput {
            operation: Operation::Delete,
            object: None,
            ..input
        },
    );
    assert_eq!(
        (v.decision.rule, v.decision.allowed),
        (Rule::ReleaseDelete, true)
    );
}

// Long by design: a table, one row per case.
#[test]
fn denials_a_cluster_gets_name_no_other_cluster_and_quote_no_value() {
    // Values a cluster must never read back: in its request, in a hub copy it does
    // not own, and another cluster's name.
    const REQUEST: &str = "request-canary";
    const HIDDEN: &str = "hidden-canary";
    let c1 = cluster_user("cluster1");
    let theirs = || {
        hub("repo")
            .owner("cluster2")
            .label("team", HIDDEN)
            .label(keys::SECRET_TYPE_LABEL, HIDDEN)
    };
    let up = || opted_in(hub("repo"));
    // (case, new, old, rule)
    let cases = [
        (
            "update of another cluster's copy",
            Some(up().build()),
            Some(theirs().build()),
            Rule::OwnedByOtherCluster,
        ),
        (
            "delete of another cluster's copy",
            None,
            Some(theirs().build()),
            Rule::ReleaseNotOwner,
        ),
        (
            "update of a copy with an invalid owner",
            Some(up().build()),
            Some(hub("repo").label(keys::OWNER_LABEL, HIDDEN).build()),
            Rule::InvalidOwner,
        ),
        (
            "delete of a copy with an invalid owner",
            None,
            Some(hub("repo").label(keys::OWNER_LABEL, HIDDEN).build()),
            Rule::InvalidOwner,
        ),
        (
            "a label that blocks any value, in the request",
            Some(up().label("vault", REQUEST).build()),
            None,
            Rule::BlockedLabel,
        ),
        (
            "a blocked copy of another cluster, merged into the stored object",
            Some(
                theirs()
                    .label("vault", HIDDEN)
                    .label(keys::SECRET_SYNC_LABEL, "true")
                    .build(),
            ),
            Some(theirs().label("vault", HIDDEN).build()),
            Rule::BlockedLabel,
        ),
        (
            "a delete of another cluster's blocked copy",
            None,
            Some(theirs().label("vault", HIDDEN).build()),
            Rule::BlockedLabel,
        ),
        (
            "no Secret Source for the request's labels",
            Some(up().label("team", REQUEST).build()),
            None,
            Rule::NoMatchingSource,
        ),
        (
            "no Secret Source for what a patch left of another cluster's copy",
            Some(theirs().label(keys::SECRET_SYNC_LABEL, "true").build()),
            Some(theirs().build()),
            Rule::NoMatchingSource,
        ),
    ];
    for (case, new, old, rule) in cases {
        let v = admit(&Mode::ControlPlane, &c1, "argocd", new, old);
        assert_eq!(
            (v.decision.rule, v.decision.allowed),
            (rule, false),
            "{case}: {}",
            v.decision.reason
        );
        for leak in ["cluster2", REQUEST, HIDDEN] {
            assert!(
                !v.decision.reason.contains(leak),
                "{case}: the reason names {leak}: {}",
                v.decision.reason
            );
        }
    }
    // A label the policy blocks with its value is named with it.
    let v = admit(
        &Mode::ControlPlane,
        &c1,
        "argocd",
        Some(up().label(keys::SECRET_TYPE_LABEL, "cluster").build()),
        None,
    );
    assert!(
        v.decision
            .reason
            .contains("blocked by its label argocd.argoproj.io/secret-type=cluster"),
        "{}",
        v.decision.reason
    );
    // The owned-by-other-cluster reason says what to do.
    let v = admit(
        &Mode::ControlPlane,
        &c1,
        "argocd",
        Some(up().build()),
        Some(theirs().build()),
    );
    assert_eq!(
        v.decision.reason,
        "the hub copy argocd/repo is owned by another cluster; rename it here, or ask the control-plane admin, who sees the owner with `secret-relay explain`"
    );
}
