use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn set_based_selector_matches_like_kubernetes() {
    let s = Selector::parse("env in (prod, staging), !legacy, tier != web").unwrap();
    assert!(s.matches(&labels(&[("env", "prod")])));
    assert!(!s.matches(&labels(&[("env", "dev")])));
    assert!(!s.matches(&labels(&[("env", "prod"), ("legacy", "")])));
    assert!(!s.matches(&labels(&[("env", "prod"), ("tier", "web")])));
}
