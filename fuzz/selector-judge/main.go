// Command selector-judge judges label selectors with Kubernetes' own parser,
// k8s.io/apimachinery/pkg/labels.Parse, for the differential selector check of
// tests/fuzz_targets.rs on inputs the fixed oracle corpus
// (policy/tests/fixtures/selector-oracle) never saw: libFuzzer's corpus and
// generated selectors.
//
// It reads {"labelSets": [...], "selectors": [...]} on stdin and writes
// {"cases": [{"selector", "accepted", "error", "matches"}]} on stdout, matches
// holding one bool per label set when accepted.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/labels"
)

type input struct {
	LabelSets []map[string]string `json:"labelSets"`
	Selectors []string            `json:"selectors"`
}

type verdict struct {
	Selector string `json:"selector"`
	Accepted bool   `json:"accepted"`
	Error    string `json:"error,omitempty"`
	Matches  []bool `json:"matches"`
}

func judge(s string, sets []map[string]string) (v verdict) {
	v = verdict{Selector: s, Matches: []bool{}}
	defer func() {
		if r := recover(); r != nil {
			v.Error = fmt.Sprintf("panic: %v", r)
		}
	}()
	sel, err := labels.Parse(s)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	v.Accepted = true
	for _, set := range sets {
		v.Matches = append(v.Matches, sel.Matches(labels.Set(set)))
	}
	return v
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "selector-judge:", err)
		os.Exit(2)
	}
	out := struct {
		Cases []verdict `json:"cases"`
	}{Cases: []verdict{}}
	for _, s := range in.Selectors {
		out.Cases = append(out.Cases, judge(s, in.LabelSets))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "selector-judge:", err)
		os.Exit(2)
	}
}
