use super::*;

#[test]
fn default_policy_uses_the_default_namespaces() {
    let p = Policy::default();
    assert_eq!(p.control_plane_namespace(), "argocd");
    assert_eq!(p.agent_namespace(), "akuity");
}
