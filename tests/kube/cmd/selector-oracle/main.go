// Command selector-oracle judges a corpus of label selector strings with
// Kubernetes' own parser, k8s.io/apimachinery/pkg/labels.Parse (which also
// validates label keys and values), and writes the verdicts as fixtures for
// secret-relay-policy's selector_oracle test.
//
// The corpus is built here: hand-written edge cases plus strings from a
// deterministic generator (a fixed-seed splitmix64, so every run writes the
// same bytes). It writes two files into -out:
//
//   - corpus.json: the input, {"labelSets": [...], "selectors": [...]}
//   - expected.json: the verdicts, {"labelSets": [...], "cases": [{"selector",
//     "accepted", "error", "matches"}]}, matches holding one bool per label set
//     (empty when the selector is rejected)
//
// From the repository root:
//
//	(cd tests/kube && go run ./cmd/selector-oracle -out ../../policy/tests/fixtures/selector-oracle)
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/labels"
)

// generated is how many generated selectors join the hand-written ones
// (before duplicates are dropped).
const generated = 600

// seed fixes the generator; change it only together with the fixtures.
const seed = 0x5e1ec7042ac1e

type verdict struct {
	Selector string `json:"selector"`
	Accepted bool   `json:"accepted"`
	Error    string `json:"error,omitempty"`
	Matches  []bool `json:"matches"`
}

func main() {
	out := flag.String("out", "", "directory to write corpus.json and expected.json into")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: selector-oracle -out DIR")
		os.Exit(2)
	}

	sets := labelSets()
	selectors := dedup(append(handWritten(), generate(generated)...))
	var cases []verdict
	accepted := 0
	for _, s := range selectors {
		// Rust reads these as &str; invalid UTF-8 would not survive JSON.
		if !utf8.ValidString(s) {
			fatal(fmt.Errorf("selector %q is not valid UTF-8", s))
		}
		v := judge(s, sets)
		if v.Accepted {
			accepted++
		}
		cases = append(cases, v)
	}

	if err := os.MkdirAll(*out, 0o755); err != nil {
		fatal(err)
	}
	write(filepath.Join(*out, "corpus.json"), [][2]any{
		{"labelSets", anys(sets)},
		{"selectors", anys(selectors)},
	})
	write(filepath.Join(*out, "expected.json"), [][2]any{
		{"apimachinery", apimachinery()},
		{"labelSets", anys(sets)},
		{"cases", anys(cases)},
	})
	fmt.Printf("%d selectors (%d accepted, %d rejected) x %d label sets\n",
		len(cases), accepted, len(cases)-accepted, len(sets))
}

// apimachinery names the module version that judged the corpus.
func apimachinery() string {
	const path = "k8s.io/apimachinery"
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fatal(fmt.Errorf("no build info"))
	}
	for _, m := range info.Deps {
		if m.Path == path {
			if m.Replace != nil {
				m = m.Replace
			}
			return path + " " + m.Version
		}
	}
	fatal(fmt.Errorf("%s is not in the build list", path))
	return ""
}

func judge(s string, sets []map[string]string) (v verdict) {
	v = verdict{Selector: s, Matches: []bool{}}
	defer func() {
		// A panic in the parser is a finding in itself; never record a verdict for it.
		if r := recover(); r != nil {
			fatal(fmt.Errorf("labels.Parse(%q) panicked: %v", s, r))
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

// write writes an object whose fields are written one per line, and whose
// array fields one element per line, so that fixture diffs stay readable.
func write(path string, fields [][2]any) {
	var buf bytes.Buffer
	buf.WriteString("{\n")
	for i, f := range fields {
		fmt.Fprintf(&buf, "  %s: ", compact(f[0]))
		if items, ok := f[1].([]any); ok {
			buf.WriteString("[\n")
			for j, item := range items {
				fmt.Fprintf(&buf, "    %s", compact(item))
				if j < len(items)-1 {
					buf.WriteByte(',')
				}
				buf.WriteByte('\n')
			}
			buf.WriteString("  ]")
		} else {
			buf.WriteString(compact(f[1]))
		}
		if i < len(fields)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("}\n")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		fatal(err)
	}
}

// compact is one-line JSON. '<', '>' and '&' stay readable; NUL and the other
// control characters still come out as \u0000-style escapes.
func compact(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fatal(err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func anys[T any](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "selector-oracle:", err)
	os.Exit(1)
}

func dedup(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// subdomain returns a DNS subdomain of exactly n characters whose labels are
// at most 63 characters long.
func subdomain(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		l := min(63, n-b.Len())
		b.WriteString(strings.Repeat(string(rune('a'+b.Len()%26)), l))
	}
	s := b.String()
	// A trailing '.' (when n lands just after a label) is not a subdomain; end on a letter.
	if strings.HasSuffix(s, ".") {
		s = s[:len(s)-1] + "z"
	}
	return s
}

var (
	prefix253 = subdomain(253)
	prefix254 = subdomain(254)
	name63    = strings.Repeat("n", 63)
	name64    = strings.Repeat("n", 64)
	value63   = strings.Repeat("v", 63)
	value64   = strings.Repeat("v", 64)
	label64   = strings.Repeat("l", 64)
)

func labelSets() []map[string]string {
	return []map[string]string{
		{},
		{"a": "b"},
		{"a": ""},
		{"env": "prod", "tier": "web"},
		{"env": "staging", "tier": "api", "in": "notin", "notin": "in", "b": "x"},
		{"num": "5", "n": "0", "a": "10"},
		{"num": "-3", "n": "9223372036854775807", "a": "007", "c": "1"},
		// Not valid label values, but Matches does not validate labels: Gt and
		// Lt read them with strconv.ParseInt.
		{"num": "+4", "n": "x", "a": "1.5", "b": "-0"},
		{"num": "9223372036854775808", "n": "-9223372036854775808", "a": " 1", "b": "0x10"},
		{"example.com/app": "web", "x.y/z": "1", "app.kubernetes.io/name": "relay", "A": "B", "Upper": "Case"},
		{"b": "x", "c": "1", "x": "y"},
		{"a": "b", "b": "", "c": "in", "env": "prod", "num": "42", "x": "y", "in": "in"},
		{prefix253 + "/" + name63: value63, label64 + "/x": "1", name63: "v"},
	}
}

func handWritten() []string {
	long := []string{
		name63 + "=x", name64 + "=x", "x=" + value63, "x=" + value64,
		prefix253 + "/x=y", prefix254 + "/x=y", prefix253 + "/" + name63,
		prefix253 + "/" + name64, prefix253 + "/" + name63 + "=" + value63,
		prefix253 + "/" + name63 + " in (" + value63 + ",x)",
		label64 + "/x", label64 + "/x=1", label64 + "/x>0",
		strings.Repeat("q", 100) + "/x", strings.Repeat("q", 253) + "/x", strings.Repeat("q", 254) + "/x",
		"x in (" + value64 + ")", "x notin (" + value63 + ")", "!" + name63, "!" + name64,
		"x>" + strings.Repeat("1", 19), "x>" + strings.Repeat("1", 20),
		"x>" + strings.Repeat("0", 62) + "1", "x>" + strings.Repeat("0", 63) + "1",
		"x=" + strings.Repeat("ab,", 30) + "c",
	}
	cases := []string{
		// Empty, whitespace, commas.
		"", " ", "\t", "\n", "\r\n", " \t\r\n ", "\v", "\f", "\u00a0", "\u2003",
		",", ",,", " , ", "a,,b", "a,", ",a", "a, ,b", "a,b,", "a , b", "a ,b", "a,\tb", "a\n,\nb",
		"a=b,,c=d", "a=b, ,c=d", "a=b,", ",a=b",
		// Exists and DoesNotExist.
		"a", "!a", "! a", "!\ta", "!!a", "!a=b", "!a,b", "!a, !b", "a!", "a!b", "!", "!,a", "a,!",
		"!a!", "!a in (b)", "!a notin (b)", "!a>1", "! !a", "!(a)",
		// Equality.
		"a=b", "a==b", "a===b", "a====b", "a=b=c", "a =b", "a= b", "a = b", "a  ==  b", "=b", "==", "=",
		"a=", "a==", "a=,b", "a==,b", "a= ,b", "a=b c", "a=b,c=d", "a=b,c==d", "a= =b",
		"a!=b", "a!=", "a!=,b", "a! =b", "a!==b", "a=!b", "a!=!b", "!=", "!=a", "a ! = b", "a!= b", "a !=b",
		// Gt and Lt.
		"a>1", "a<1", "a>0", "a<0", "a>-1", "a<-1", "a>+1", "a>007", "a<007", "a>1.5", "a>x", "a>",
		"a<", "a>,b", "a<,b", "a>>1", "a<<1", "a<>1", "a><1", "a>=1", "a<=1", "a=>1", "a=<1", "a!>1",
		"a>9223372036854775807", "a>9223372036854775808", "a<9223372036854775807",
		"a<-9223372036854775808", "a>99999999999999999999", "a>1e3", "a>0x10", "a>1_000", "a>0b1",
		"a> 1", "a >1", "a > 1", "a\t>\t1", "a\n<\n1", ">1", "<1", ">", "<", "<>", "a>b", "a<b",
		"num>4", "num<6", "num>5", "num<5", "num>-4", "num<-2", "num>0", "num<43", "num>41",
		"n>0", "n<1", "n>-1", "n<9223372036854775807", "n>9223372036854775806",
		"num>1,num<10", "num>1,a", "a>1,a<1", "!num,num>1", "num>1,!b", "a in (1),num>3",
		"c>0", "c<2", "b>-1", "b<1", "a>9", "a<11", "a>6", "a<8",
		"in>1", "notin<1", "in>in", "a>in", "a in (1) > 2", "a>1 in (2)", "a>(1)", "a<()",
		// Set-based.
		"a in ()", "a notin ()", "a in (,)", "a notin (,)", "a in (x,)", "a in (,x)", "a in (x,,y)",
		"a in (,,)", "a in (,,x,,)", "a in ( )", "a in(x)", "a in (x", "a in x", "a in", "a notin",
		"a in (", "a in ((x))", "a in (x)(y)", "a in (x y)", "a in (x,y", "a in (!x)", "a in (=)",
		"a in (x=)", "a in (in)", "a in (notin)", "a in (in,notin)", "in in (in)",
		"notin notin (notin)", "in", "notin", "!in", "!notin", "in=in", "notin=notin", "in notin (x)",
		"in,notin", "in in in", "a in (x) b", "a in(x),b notin(y)", "a notin (b)", "a in (b,c,d)",
		"a  in  (  b  ,  c  )", "a\tin\t(b)", "a\nnotin\n(b)", "a\r\nin\r\n(\r\nb\r\n)", "a IN (b)",
		"a Notin (b)", "a innotin (b)", "ain (b)", "a in(b)", "a notin(,)", "a in (x,y,)", "a in)",
		"a in (x))", "a in (x),", "a in (x),,", "a in (x)(", "a notin (x)y", "a in (-x)", "a in (x-)",
		"a in (x_y.z-1)", "a in (X)", "a in (x,-)", "a in (x, y ,z)", "a in (x,\ty)", "a in (1,2,3)",
		"a in ()", "b in ()", "b notin ()", "b in (,)", "c in (1,in)", "in in (notin, in)",
		"notin in (notin)", "a in (b),a notin (b)", "a in (b),a",
		// Mixed.
		"env in (prod, staging), !legacy, tier != web", "env=prod,tier in (web,api)",
		"x.y/z=1,example.com/app in (web)", "env notin (prod),tier", "!env,!tier", "env,tier,a",
		"env==prod, tier!=api", "env in (prod),env in (staging)", "a=b,a=c", "a,!a", "a=b,a!=b",
		"example.com/app=web,A=B,Upper=Case", "app.kubernetes.io/name in (relay)",
		"app.kubernetes.io/name=relay,num>41,!x", "a=b,b=,c in (in)",
		// Trailing and misplaced operators.
		"a=b=", "a=b!", "a=b(", "a=b)", "a=(b)", "(a)", ")", "(", "a)", "a(", "a(b)", "a,=b", "=a",
		"a=b,=", "a=b,!", "a=b,in", "a=b,(", "!=b", "==b", "a)=b", "a b", "a b c", "a=b c=d",
		// NUL bytes: labels.Lexer reads a NUL as the end of input.
		"\x00", "\x00a", "a\x00", "a\x00b", "a\x00\x00b", "a=b\x00", "a=b\x00,c", "a=b\x00c",
		"a=b \x00junk", "a=b \x00,(", "a=\x00b", "a=\x00", "a= \x00b", "a\x00=b", "a\x00 =b", "a,\x00b",
		"a, \x00b", "a in (\x00x)", "a in (x\x00)", "a in (x)\x00garbage((", "a in (x) \x00 garbage",
		"!\x00a", "! \x00a", "a \x00 b", "a=b,\x00", "a>\x001", "a> \x001", "a!\x00=b", "a=\x00=b",
		"a\x00in (b)", "a in\x00(b)", "a in \x00(b)", "\x00\x00", " \x00 ", "a=b\x00\x00c",
		// Whitespace that labels.Parse does not skip.
		"a\v", "a=b\vc", "a\f=b", "a=\u00a0b", "\u00a0a=b", "a=b\u200b", "a\u2028=b", "\ta\t=\tb\t",
		"\r\na\r\n", "a\u0085",
		// Unicode.
		"ä=b", "a=ü", "a=b,ñ", "é", "a in (ü)", "日本=語", "ａ=b", "a=ｂ", "ä/a=b", "a/ä=b", "a=b🙂",
		"🙂", "!ä", "a>١",
		// Uppercase and case.
		"A=B", "Upper=Case", "Example.com/a=b", "example.COM/a=b", "example.com/A=b", "EXAMPLE=x",
		"A", "!A", "upper=case", "a=B", "a in (B,b)",
		// Key structure.
		"example.com/app=web", "x.y/z", "/a", "a/", "/", "a//b", "a/b/c", "-a", "a-", "_a", "a_", ".a",
		"a.", "a..b", "a--b=c", "a__b", "1=2", "0", "a.b-c_d=x", "example.com./a", ".example.com/a",
		"ex_ample.com/a", "-example.com/a", "example-.com/a", "example..com/a", "example.com/-a",
		"example.com/a-", "example.com/a.b_c-d", "e/a", "1.2.3/a", "a-b.c-d/e", "a.b/c/d", "a\\b",
		"a:b", "a@b", "a*", "a=*", "a=b*", "a'=b", "a\"=b", "a;b", "a=b;c=d", "a#b", "a%b", "a+b",
		"a=b+c", "a=-b", "a=b-", "a=_b", "a=b_", "a=.b", "a=b.", "a=b.c", "a=b..c", "a=b/c", "a=/",
		"a=1", "a=-1", "a in (a/b)", "a=b&c", "a=b|c", "a|b", "a&&b", "a~b", "a^b", "a$b", "a?",
		"a=é",
	}
	return append(cases, long...)
}

// rng is splitmix64: tiny, and its output never depends on the Go version.
type rng struct{ state uint64 }

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

func (r *rng) pick(xs []string) string { return xs[r.intn(len(xs))] }

// Each generator vocabulary has good pieces and, picked one time in 25,
// bad ones, so that about half the generated strings parse.
type vocab struct{ good, bad []string }

func (r *rng) word(v vocab) string {
	if len(v.bad) > 0 && r.intn(25) == 0 {
		return r.pick(v.bad)
	}
	return r.pick(v.good)
}

var (
	genKeys = vocab{
		good: []string{
			"a", "a", "b", "c", "n", "num", "num", "env", "tier", "x", "in", "notin", "example.com/app",
			"x.y/z", "app.kubernetes.io/name", "A", "Upper", "a.b", "a_b", "a-b", "1", "k8s.io/x",
			name63, prefix253 + "/" + name63, label64 + "/x",
		},
		bad: []string{"-a", "a-", "a/b/c", "/a", "a/", "ä", "Example.com/x", name64, "a\vb", "_a"},
	}
	genValues = vocab{
		good: []string{
			"", "", "b", "x", "y", "prod", "web", "api", "1", "5", "10", "007", "0", "42", "in", "notin",
			"X_y", "B", "relay", "9223372036854775807", "1.5", value63,
		},
		bad: []string{"-1", "+4", "9223372036854775808", "-x", "x-", "ü", value64, "in in", "a=b", "a\u00a0"},
	}
	genOps = vocab{
		good: []string{"=", "==", "!=", ">", "<", "=", "!=", ">", "<"},
		bad:  []string{" in ", " notin ", "in", "notin", "===", "!==", ">=", "<=", "=!", "<>", " ", "!"},
	}
	genSpaces = vocab{
		good: []string{"", "", "", "", " ", " ", "  ", "\t", "\n", "\r\n"},
		bad:  []string{"\v", "\x00", "\u00a0", "\f"},
	}
	genSeps = vocab{
		good: []string{",", ",", ",", ", ", " ,", " , ", ",\n", ",\t"},
		bad:  []string{",,", ", ,", "", " ", ",\x00"},
	}
	genNoise = []string{
		",", "!", "=", "(", ")", ">", "<", " ", "\t", "\x00", "in", "notin", "a", "1", "-", "/", ".",
		"_", "ä", "\n",
	}
)

func generate(n int) []string {
	r := &rng{state: seed}
	out := make([]string, 0, n)
	for range n {
		var b strings.Builder
		reqs := 1 + r.intn(3)
		b.WriteString(r.word(genSpaces))
		for i := range reqs {
			if i > 0 {
				b.WriteString(r.word(genSeps))
				b.WriteString(r.word(genSpaces))
			}
			b.WriteString(requirement(r))
		}
		b.WriteString(r.word(genSpaces))
		s := b.String()
		// A fifth of the strings get one random edit: an inserted symbol or a
		// deleted character (whole runes only, so the result stays UTF-8).
		if r.intn(5) == 0 {
			s = mutate(r, s)
		}
		out = append(out, s)
	}
	return out
}

func requirement(r *rng) string {
	key := r.word(genKeys)
	sp := func() string { return r.word(genSpaces) }
	switch r.intn(10) {
	case 0:
		return key
	case 1:
		return "!" + sp() + key
	case 2, 3:
		var vals []string
		for range r.intn(4) {
			vals = append(vals, r.word(genValues))
		}
		op := " in "
		if r.intn(2) == 0 {
			op = " notin "
		}
		if r.intn(6) == 0 {
			op = strings.TrimSpace(op) + sp()
		}
		return key + op + "(" + sp() + strings.Join(vals, sp()+","+sp()) + sp() + ")"
	case 4, 5:
		// Gt and Lt, mostly with integers.
		op := ">"
		if r.intn(2) == 0 {
			op = "<"
		}
		v := fmt.Sprint(int64(r.next()>>uint(r.intn(64))) - int64(r.intn(3)))
		switch r.intn(4) {
		case 0:
			v = r.word(genValues)
		case 1, 2:
			v = fmt.Sprint(r.intn(50) - 2)
		}
		return key + sp() + op + sp() + v
	default:
		return key + sp() + r.word(genOps) + sp() + r.word(genValues)
	}
}

func mutate(r *rng, s string) string {
	runes := []rune(s)
	at := r.intn(len(runes) + 1)
	if r.intn(2) == 0 && len(runes) > 0 {
		at = min(at, len(runes)-1)
		return string(runes[:at]) + string(runes[at+1:])
	}
	return string(runes[:at]) + r.pick(genNoise) + string(runes[at:])
}
