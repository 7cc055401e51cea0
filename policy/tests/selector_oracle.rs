//! `Selector::parse` held to Kubernetes' own parser. The fixtures hold a corpus
//! of selector strings and label sets judged by `labels.Parse` and
//! `Selector.Matches` from k8s.io/apimachinery (see
//! `tests/kube/cmd/selector-oracle`); we must accept exactly what it accepts,
//! reject the rest with an error, and match every label set the same way.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use secret_relay_policy::Selector;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `expected.json`: the label sets and one verdict per selector.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Expected {
    apimachinery: String,
    label_sets: Vec<BTreeMap<String, String>>,
    cases: Vec<Verdict>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Verdict {
    selector: String,
    accepted: bool,
    /// Go's error message, for the report only.
    #[serde(default)]
    error: String,
    /// One entry per label set when accepted, empty otherwise.
    matches: Vec<bool>,
}

/// `corpus.json`: the input the verdicts were made from.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Corpus {
    label_sets: Vec<BTreeMap<String, String>>,
    selectors: Vec<String>,
}

/// Run from the repository root after changing the Go program.
const REGENERATE: &str = "(cd tests/kube && go run ./cmd/selector-oracle -out ../../policy/tests/fixtures/selector-oracle)";

fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/selector-oracle")
        .join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn fixtures_are_the_verdicts_on_the_corpus() {
    let corpus: Corpus = fixture("corpus.json");
    let expected: Expected = fixture("expected.json");
    assert_eq!(
        corpus.label_sets, expected.label_sets,
        "label sets differ; regenerate with {REGENERATE}"
    );
    let judged: Vec<&String> = expected.cases.iter().map(|c| &c.selector).collect();
    assert_eq!(
        corpus.selectors.iter().collect::<Vec<_>>(),
        judged,
        "selectors differ; regenerate with {REGENERATE}"
    );
    // The corpus must exercise both sides, the NUL handling and Gt/Lt.
    assert!(expected.cases.len() >= 500, "{}", expected.cases.len());
    assert!(expected.cases.iter().filter(|c| c.accepted).count() >= 200);
    assert!(expected.cases.iter().filter(|c| !c.accepted).count() >= 200);
    assert!(expected.cases.iter().any(|c| c.selector.contains('\0')));
    assert!(
        expected
            .cases
            .iter()
            .any(|c| c.accepted && c.selector.contains('>'))
    );
    assert!(expected.label_sets.iter().any(BTreeMap::is_empty));
}

#[test]
fn parse_and_matches_agree_with_kubernetes_labels_parse() {
    let expected: Expected = fixture("expected.json");
    let sets = &expected.label_sets;
    let mut mismatches = Vec::new();
    for case in &expected.cases {
        let sel = &case.selector;
        match (case.accepted, Selector::parse(sel)) {
            (true, Ok(parsed)) => {
                assert_eq!(
                    case.matches.len(),
                    sets.len(),
                    "{sel:?}: matches per label set"
                );
                for (i, (labels, want)) in sets.iter().zip(&case.matches).enumerate() {
                    let got = parsed.matches(labels);
                    if got != *want {
                        mismatches.push(format!(
                            "{sel:?} on label set {i} {labels:?}: Go matches={want}, we matches={got}"
                        ));
                    }
                }
                // What we accept must print to a form we read back the same.
                let shown = parsed.to_string();
                match Selector::parse(&shown) {
                    Ok(again) if again == parsed => {}
                    other => mismatches.push(format!(
                        "{sel:?}: Display {shown:?} does not parse back: {other:?}"
                    )),
                }
            }
            (true, Err(e)) => {
                mismatches.push(format!("{sel:?}: Go accepts, we reject: {e}"));
            }
            (false, Ok(parsed)) => mismatches.push(format!(
                "{sel:?}: Go rejects ({}), we accept as {:?}",
                case.error,
                parsed.to_string()
            )),
            (false, Err(_)) => {}
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches against {} ({} selectors x {} label sets):\n{}",
        mismatches.len(),
        expected.apimachinery,
        expected.cases.len(),
        sets.len(),
        mismatches.join("\n")
    );
}
