//! Rule ids: stable, distinct, documented, each with one outcome.

use super::*;

#[test]
fn rule_ids_are_stable_kebab_case_and_serialize_as_strings() {
    let d = Decision::deny(Rule::OwnershipLock, "why");
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"allowed": false, "rule": "ownership-lock", "reason": "why"})
    );
    assert_eq!(
        serde_json::to_value(ReleaseAction::ReturnToControlPlane).unwrap(),
        "return-to-control-plane"
    );
    assert_eq!(
        serde_json::to_value(ReleaseAction::Delete).unwrap(),
        "delete"
    );
    assert_eq!(d.to_string(), "denied (ownership-lock): why");
    for r in [
        Rule::BlockedName,
        Rule::UpSyncNew,
        Rule::DownSyncNotTarget,
        Rule::OwnerLabelForged,
    ] {
        assert!(
            r.as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-')
        );
    }
    assert!(BLOCKED_RULES.contains(&Rule::for_blocked(&BlockedBy::Name("x".into()))));
}

#[test]
fn every_rule_id_is_distinct_and_documented_with_its_one_outcome() {
    let mut seen = std::collections::BTreeSet::new();
    for r in Rule::ALL {
        assert!(seen.insert(r.as_str()), "duplicate id {r}");
    }
    // The README's rule table lists every id once, with the outcome `allows` gives.
    let readme = include_str!("../../../README.md");
    let table = readme
        .split("## Rule ids")
        .nth(1)
        .expect("a Rule ids section")
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2);
    let mut documented = std::collections::BTreeMap::new();
    for row in table {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let allowed = match cells[2] {
            "yes" => true,
            "no" => false,
            other => panic!("allowed column {other:?} in {row}"),
        };
        for id in cells[1].split('`').skip(1).step_by(2) {
            assert!(
                documented.insert(id.to_owned(), allowed).is_none(),
                "{id} listed twice"
            );
        }
    }
    let ids: std::collections::BTreeMap<String, bool> = Rule::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), r.allows()))
        .collect();
    assert_eq!(documented, ids);
}

#[test]
fn a_rule_reads_back_from_its_id_and_only_hub_dependent_denials_wait_on_the_hub() {
    for r in Rule::ALL {
        assert_eq!(Rule::from_id(r.as_str()), Some(r));
        // Only a denial can be waiting for its cause to go away.
        assert!(!(r.depends_on_hub() && r.allows()), "{r}");
    }
    assert_eq!(Rule::from_id("no-such-rule"), None);
    assert!(Rule::OwnedByOtherCluster.depends_on_hub());
    assert!(Rule::NameTaken.depends_on_hub());
    // A change of the Secret or the policy turns these around, not the hub.
    assert!(!Rule::NoMatchingSource.depends_on_hub());
    assert!(!Rule::BlockedName.depends_on_hub());
}
