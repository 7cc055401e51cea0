use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use proptest::prelude::*;

use super::*;

/// (selector, labels, matches)
type MatchCase = (&'static str, &'static [(&'static str, &'static str)], bool);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn err(s: &str) -> SelectorParseError {
    Selector::parse(s).expect_err(s)
}

#[test]
fn set_based_selector_matches_like_kubernetes() {
    let s = Selector::parse("env in (prod, staging), !legacy, tier != web").unwrap();
    assert!(s.matches(&labels(&[("env", "prod")])));
    assert!(!s.matches(&labels(&[("env", "dev")])));
    assert!(!s.matches(&labels(&[("env", "prod"), ("legacy", "")])));
    assert!(!s.matches(&labels(&[("env", "prod"), ("tier", "web")])));
}

#[test]
fn each_operator_has_kubernetes_semantics() {
    // (selector, labels, expected)
    let cases: &[MatchCase] = &[
        ("a=b", &[("a", "b")], true),
        ("a=b", &[("a", "c")], false),
        ("a=b", &[], false),
        ("a==b", &[("a", "b")], true),
        ("a==b", &[("a", "c")], false),
        ("a!=b", &[("a", "c")], true),
        ("a!=b", &[("a", "b")], false),
        ("a!=b", &[], true),
        ("a in (x,y)", &[("a", "y")], true),
        ("a in (x,y)", &[("a", "z")], false),
        ("a in (x,y)", &[], false),
        ("a notin (x)", &[("a", "y")], true),
        ("a notin (x)", &[("a", "x")], false),
        ("a notin (x)", &[], true),
        ("a", &[("a", "")], true),
        ("a", &[("b", "a")], false),
        ("!a", &[], true),
        ("!a", &[("a", "x")], false),
        ("a=", &[("a", "")], true),
        ("a=", &[("a", "x")], false),
        ("a in ()", &[("a", "")], true),
        ("a in ()", &[("a", "x")], false),
        ("a in (,x)", &[("a", "")], true),
        ("a in (x,)", &[("a", "")], true),
        ("a=b,c", &[("a", "b")], false),
        ("a=b,c", &[("a", "b"), ("c", "1")], true),
        ("", &[], true),
        ("", &[("anything", "x")], true),
        ("   ", &[("anything", "x")], true),
        ("example.com/app=web", &[("example.com/app", "web")], true),
        ("a>5", &[("a", "6")], true),
        ("a>5", &[("a", "5")], false),
        ("a>5", &[("a", "x")], false),
        ("a>5", &[], false),
        ("a<5", &[("a", "-3")], true),
        ("a<5", &[("a", "+4")], true),
    ];
    for (sel, l, want) in cases {
        let s = Selector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
        assert_eq!(s.matches(&labels(l)), *want, "{sel} on {l:?}");
    }
}

#[test]
fn whitespace_is_free_and_double_equals_is_equals() {
    let a = Selector::parse("a==b,c in (x , y),!d").unwrap();
    let b = Selector::parse("  a = b ,\tc in(y,x) ,\n! d ").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_string(), "a=b,c in (x,y),!d");
}

#[test]
fn keywords_are_ordinary_words_where_a_key_or_value_is_expected() {
    let s = Selector::parse("in in (notin), notin=in").unwrap();
    assert!(s.matches(&labels(&[("in", "notin"), ("notin", "in")])));
    assert_eq!(s.to_string(), "in in (notin),notin=in");
}

#[test]
fn display_is_canonical_sorted_by_key() {
    let s = Selector::parse("z notin (b,a), a!=1, m").unwrap();
    assert_eq!(s.to_string(), "a!=1,m,z notin (a,b)");
    assert!(Selector::default().to_string().is_empty());
    assert!(Selector::default().is_empty());
}

#[test]
fn parse_errors_name_position_and_token() {
    let cases: &[(&str, usize, &str)] = &[
        ("a in (x", 7, ""),
        ("a b", 2, "b"),
        (",a", 0, ","),
        ("a,", 2, ""),
        ("a=b c", 4, "c"),
        ("a>x", 2, "x"),
        ("a<", 2, ""),
        ("!a=b", 2, "="),
        ("a in x", 5, "x"),
        ("a=(", 2, "("),
        ("a in (x y)", 8, "y"),
        ("-a=b", 0, "-a"),
        ("a=-x", 2, "-x"),
        ("a/b/c", 0, "a/b/c"),
        ("Upper.Case/x=y", 0, "Upper.Case/x"),
        ("a in ((x)", 6, "("),
    ];
    for (sel, pos, token) in cases {
        let e = err(sel);
        assert_eq!((e.position, e.token.as_str()), (*pos, *token), "{sel}: {e}");
        assert!(
            e.to_string()
                .starts_with("failed to parse selector at position")
        );
    }
}

#[test]
fn keys_and_values_are_validated_as_kubernetes_labels() {
    let long = "a".repeat(64);
    assert!(Selector::parse(&format!("{long}=x")).is_err());
    assert!(Selector::parse(&format!("x={long}")).is_err());
    assert!(Selector::parse(&format!("{}=x", "a".repeat(63))).is_ok());
    let long_prefix = format!("{}/x=y", "a".repeat(254));
    assert!(Selector::parse(&long_prefix).is_err());
    assert!(Selector::parse("/x=y").is_err());
    assert!(Selector::parse("x/=y").is_err());
    assert!(Selector::parse("a_b.c-d=E_f.G-h").is_ok());
    assert!(Selector::parse("a=b_").is_err());
    assert!(Selector::parse("a=b=c").is_err());
}

#[test]
fn label_selector_objects_convert_with_every_operator() {
    let req = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
        key: key.to_owned(),
        operator: op.to_owned(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
    };
    let ls = LabelSelector {
        match_labels: Some(labels(&[("env", "prod")])),
        match_expressions: Some(vec![
            req("tier", "In", &["web", "api"]),
            req("zone", "NotIn", &["eu"]),
            req("team", "Exists", &[]),
            req("legacy", "DoesNotExist", &[]),
        ]),
    };
    let s = Selector::from_label_selector(&ls).unwrap();
    assert_eq!(
        s,
        Selector::parse("env=prod,tier in (web,api),zone notin (eu),team,!legacy").unwrap()
    );
    assert!(s.matches(&labels(&[("env", "prod"), ("tier", "api"), ("team", "a")])));
    assert!(!s.matches(&labels(&[("env", "prod"), ("tier", "api")])));
    assert!(
        Selector::from_label_selector(&LabelSelector::default())
            .unwrap()
            .is_empty()
    );

    let bad = |r| LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![r]),
    };
    let e = Selector::from_label_selector(&bad(req("a", "Gt", &["1"]))).unwrap_err();
    assert_eq!(e.token, "Gt");
    assert!(Selector::from_label_selector(&bad(req("a", "In", &[]))).is_err());
    assert!(Selector::from_label_selector(&bad(req("a", "Exists", &["x"]))).is_err());
    assert!(Selector::from_label_selector(&bad(req("-a", "Exists", &[]))).is_err());
    let bad_value = LabelSelector {
        match_labels: Some(labels(&[("a", "not valid")])),
        match_expressions: None,
    };
    assert!(Selector::from_label_selector(&bad_value).is_err());
}

// A model of the requirement semantics, independent of `Requirement::matches`.
#[derive(Clone, Debug)]
struct ModelReq {
    key: String,
    op: u8,
    values: Vec<String>,
}

impl ModelReq {
    fn render(&self, spaced: bool, double: bool) -> String {
        let sp = if spaced { " " } else { "" };
        let v0 = self.values.first().cloned().unwrap_or_default();
        match self.op {
            0 => format!(
                "{}{sp}{}{sp}{v0}",
                self.key,
                if double { "==" } else { "=" }
            ),
            1 => format!("{}{sp}!={sp}{v0}", self.key),
            2 => format!("{} in{sp}({})", self.key, self.values.join(",")),
            3 => format!(
                "{} notin ({sp}{}{sp})",
                self.key,
                self.values.join(&format!(",{sp}"))
            ),
            4 => format!("{sp}{}", self.key),
            _ => format!("!{sp}{}", self.key),
        }
    }

    fn holds(&self, l: &BTreeMap<String, String>) -> bool {
        let v = l.get(&self.key);
        match self.op {
            0 => v == self.values.first(),
            1 => v != self.values.first(),
            2 => v.is_some_and(|v| self.values.contains(v)),
            3 => !v.is_some_and(|v| self.values.contains(v)),
            4 => v.is_some(),
            _ => v.is_none(),
        }
    }
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("env".to_owned()),
        Just("in".to_owned()),
        Just("example.com/team".to_owned()),
        "[a-z][a-z0-9._-]{0,6}[a-z0-9]",
        "[a-z0-9]{1,4}(\\.[a-z0-9]{1,4}){0,2}/[A-Za-z0-9]([A-Za-z0-9_.-]{0,4}[A-Za-z0-9])?",
    ]
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("x".to_owned()),
        Just("notin".to_owned()),
        "[A-Za-z0-9]([A-Za-z0-9_.-]{0,6}[A-Za-z0-9])?",
    ]
}

fn req_strategy() -> impl Strategy<Value = ModelReq> {
    (
        key_strategy(),
        0u8..6,
        prop::collection::vec(value_strategy(), 1..4),
    )
        .prop_map(|(key, op, mut values)| {
            match op {
                0 | 1 => values.truncate(1),
                4 | 5 => values.clear(),
                _ => {}
            }
            ModelReq { key, op, values }
        })
}

proptest! {
    #[test]
    fn parse_display_parse_round_trips(
        reqs in prop::collection::vec(req_strategy(), 0..5),
        spaced in any::<bool>(),
        double in any::<bool>(),
    ) {
        let text = reqs
            .iter()
            .map(|r| r.render(spaced, double))
            .collect::<Vec<_>>()
            .join(if spaced { " , " } else { "," });
        let first = Selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let shown = first.to_string();
        let second = Selector::parse(&shown).map_err(|e| TestCaseError::fail(format!("{shown}: {e}")))?;
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(shown, second.to_string());
    }

    #[test]
    fn matching_agrees_with_the_model(
        reqs in prop::collection::vec(req_strategy(), 0..5),
        present in prop::collection::btree_map(key_strategy(), value_strategy(), 0..6),
    ) {
        let text = reqs.iter().map(|r| r.render(false, false)).collect::<Vec<_>>().join(",");
        let sel = Selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let want = reqs.iter().all(|r| r.holds(&present));
        prop_assert_eq!(sel.matches(&present), want, "{} on {:?}", text, present);
    }

    #[test]
    fn arbitrary_input_never_panics_and_what_parses_round_trips(s in "[a-z=!(), in\\t.x/-]{0,24}") {
        if let Ok(sel) = Selector::parse(&s) {
            let again = Selector::parse(&sel.to_string());
            prop_assert_eq!(Some(&sel), again.as_ref().ok(), "{}", s);
        }
    }
}
