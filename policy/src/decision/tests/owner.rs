//! The owner label and adoption.

use super::*;

#[test]
fn owner_comes_from_the_owner_label() {
    assert_eq!(owner(&hub("x").build()), Owner::ControlPlane);
    assert_eq!(
        owner(&hub("x").owner("c1").build()),
        Owner::Cluster("c1".into())
    );
    assert_eq!(
        owner(&hub("x").label(keys::OWNER_LABEL, "control-plane").build()),
        Owner::ControlPlane
    );
    // Any other value is an owner no cluster matches: it locks rather than opens.
    let long = format!("cluster.{}", "a".repeat(56));
    for v in [
        "cluster.",
        "cluster1",
        "cluster.Bad_Name",
        "Cluster.c1",
        "cluster.c1 ",
        "control-plane ",
        "",
        long.as_str(),
    ] {
        assert_eq!(
            owner(&hub("x").label(keys::OWNER_LABEL, v).build()),
            Owner::Invalid(v.into()),
            "{v:?}"
        );
    }
    assert_eq!(
        owner(&hub("x").owner(&"a".repeat(55)).build()),
        Owner::Cluster("a".repeat(55))
    );
    assert_eq!(Owner::Cluster("c1".into()).label_value(), "cluster.c1");
    assert_eq!(Owner::Invalid("cluster1".into()).label_value(), "cluster1");
}

#[test]
fn adopted_means_a_cluster_owned_adoptable_secret_marked_adopted() {
    let name = "argocd-notifications-secret";
    let cases = [
        (hub(name).owner("cluster1").adopted(), true),
        (hub(name).owner("cluster9").adopted(), true),
        (hub(name).owner("cluster1"), false),
        (hub(name).adopted(), false),
        (
            hub(name)
                .label(keys::OWNER_LABEL, "control-plane")
                .adopted(),
            false,
        ),
        (
            hub(name).label(keys::OWNER_LABEL, "cluster1").adopted(),
            false,
        ),
        (hub("repo").owner("cluster1").adopted(), false),
        (
            hub(name)
                .owner("cluster1")
                .annotation(keys::ADOPTED_ANNOTATION, "True"),
            false,
        ),
    ];
    for (i, (b, want)) in cases.into_iter().enumerate() {
        assert_eq!(is_adopted(&b.build()), want, "case {i}");
    }
}
