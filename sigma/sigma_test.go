package sigma

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// jsonEvent is an event decoded from JSON; fields are top-level keys or
// dotted paths into objects.
type jsonEvent struct {
	m   map[string]any
	raw string
}

func event(t testing.TB, raw string) jsonEvent {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	return jsonEvent{m, raw}
}

func (e jsonEvent) Field(name string) (any, bool) {
	var cur any = e.m
	for _, part := range strings.Split(name, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func (e jsonEvent) Text() string { return e.raw }

func mustRule(t *testing.T, detection string) *Rule {
	t.Helper()
	r, err := ParseRule([]byte("title: test\nlevel: high\ndetection:\n" + detection))
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", detection, err)
	}
	return r
}

const sample = `{"Operation":"New-InboxRule","Workload":"Exchange","ResultStatus":"True","UserId":"Ann@Contoso.com",
"ClientIP":"203.0.113.7","OperationCount":12,"IsThrottled":false,"Empty":null,
"Parameters":[{"Name":"ForwardTo","Value":"evil@attacker.example"},{"Name":"Name","Value":"x"}],
"Tags":["a","Blue"],"AppAccessContext":{"ClientAppId":"6b7f0558-3c2d","IssuedAtTime":"2026-01-01"},
"CommandLine":"powershell -enc SQBFAFgA","Blob":"aGVsbG8gL2Jpbi9iYXNoIHdvcmxk","Path":"C:\\Windows\\evil?.exe"}`

func TestDetectionSemantics(t *testing.T) {
	ev := event(t, sample)
	for _, tc := range []struct {
		name, detection string
		want            bool
	}{
		{"exact, any case", "  sel:\n    Operation: new-inboxrule\n  condition: sel", true},
		{"exact is whole", "  sel:\n    Operation: New-Inbox\n  condition: sel", false},
		{"list is or", "  sel:\n    Operation:\n      - Set-InboxRule\n      - New-InboxRule\n  condition: sel", true},
		{"map is and", "  sel:\n    Operation: New-InboxRule\n    Workload: SharePoint\n  condition: sel", false},
		{"list of maps is or", "  sel:\n    - Workload: SharePoint\n    - UserId: ann@contoso.com\n  condition: sel", true},
		{"contains", "  sel:\n    UserId|contains: '@CONTOSO'\n  condition: sel", true},
		{"startswith", "  sel:\n    UserId|startswith: ann@\n  condition: sel", true},
		{"endswith", "  sel:\n    UserId|endswith: ann@\n  condition: sel", false},
		{"contains all", "  sel:\n    UserId|contains|all: [ann, contoso]\n  condition: sel", true},
		{"contains all, one missing", "  sel:\n    UserId|contains|all: [ann, fabrikam]\n  condition: sel", false},
		{"wildcards", "  sel:\n    UserId: 'a?n@*.com'\n  condition: sel", true},
		{"escaped wildcard is literal", `  sel:
    Path: 'C:\Windows\evil\?.exe'
  condition: sel`, true},
		{"escaped wildcard does not match other chars", `  sel:
    Path: 'C:\Windows\evil\*.exe'
  condition: sel`, false},
		{"cased", "  sel:\n    UserId|cased: ann@contoso.com\n  condition: sel", false},
		{"re", "  sel:\n    ClientIP|re: '^203\\.0\\.113\\.\\d+$'\n  condition: sel", true},
		{"re is cased without i", "  sel:\n    Operation|re: '^new-'\n  condition: sel", false},
		{"re with i", "  sel:\n    Operation|re|i: '^new-'\n  condition: sel", true},
		{"cidr", "  sel:\n    ClientIP|cidr: 203.0.113.0/24\n  condition: sel", true},
		{"cidr miss", "  sel:\n    ClientIP|cidr:\n      - 10.0.0.0/8\n      - 2001:db8::/32\n  condition: sel", false},
		{"exists", "  sel:\n    AppAccessContext.ClientAppId|exists: true\n  condition: sel", true},
		{"not exists", "  sel:\n    Nope|exists: false\n  condition: sel", true},
		{"null matches absent", "  sel:\n    Nope: null\n  condition: sel", true},
		{"null matches null", "  sel:\n    Empty: null\n  condition: sel", true},
		{"null does not match a value", "  sel:\n    Operation: null\n  condition: sel", false},
		{"number", "  sel:\n    OperationCount: 12\n  condition: sel", true},
		{"gt", "  sel:\n    OperationCount|gt: 10\n  condition: sel", true},
		{"lte", "  sel:\n    OperationCount|lte: 11\n  condition: sel", false},
		{"bool as text", "  sel:\n    IsThrottled: 'false'\n  condition: sel", true},
		{"list field: any element", "  sel:\n    Tags: blue\n  condition: sel", true},
		{"list of objects as JSON text", "  sel:\n    Parameters|contains: 'evil@attacker'\n  condition: sel", true},
		{"dotted path", "  sel:\n    AppAccessContext.ClientAppId|startswith: 6b7f0558\n  condition: sel", true},
		{"keywords", "  kw:\n    - 'no such thing'\n    - 'ATTACKER.example'\n  condition: kw", true},
		{"keywords miss", "  kw:\n    - 'no such thing'\n  condition: kw", false},
		{"base64", "  sel:\n    Blob|base64: 'hello /bin/bash world'\n  condition: sel", true},
		{"base64offset", "  sel:\n    Blob|base64offset|contains: '/bin/bash'\n  condition: sel", true},
		{"windash", "  sel:\n    CommandLine|windash|contains: ' -enc '\n  condition: sel", true},
		{"fieldref", "  sel:\n    UserId|fieldref: UserId\n  condition: sel", true},
		{"fieldref differs", "  sel:\n    UserId|fieldref: Operation\n  condition: sel", false},
		{"and not", "  sel:\n    Workload: Exchange\n  filter:\n    UserId|endswith: '@contoso.com'\n  condition: sel and not filter", false},
		{"or with parentheses", "  a:\n    Workload: SharePoint\n  b:\n    Operation: New-InboxRule\n  c:\n    ClientIP: 1.2.3.4\n  condition: (a or b) and not c", true},
		{"precedence: and binds tighter", "  a:\n    Workload: SharePoint\n  b:\n    Operation: New-InboxRule\n  c:\n    ClientIP: 1.2.3.4\n  condition: a and b or c", false},
		{"1 of pattern", "  sel_a:\n    Workload: SharePoint\n  sel_b:\n    Operation: New-InboxRule\n  condition: 1 of sel_*", true},
		{"all of pattern", "  sel_a:\n    Workload: SharePoint\n  sel_b:\n    Operation: New-InboxRule\n  condition: all of sel_*", false},
		{"all of them skips _", "  a:\n    Workload: Exchange\n  _b:\n    Workload: SharePoint\n  condition: all of them", true},
		{"condition list is or", "  a:\n    Workload: SharePoint\n  b:\n    Workload: Exchange\n  condition:\n    - a\n    - b", true},
		{"not not", "  a:\n    Workload: Exchange\n  condition: not not a", true},
	} {
		if got := mustRule(t, tc.detection).Match(ev); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ rule, want string }{
		{"title: x\ndetection:\n  sel:\n    A|wide: x\n  condition: sel", `modifier "wide" is not supported`},
		{"title: x\ndetection:\n  sel:\n    A: x\n  condition: sel | count() > 5", "aggregations"},
		{"title: x\ndetection:\n  sel:\n    A: x\n  condition: sel and other", `no search identifier "other"`},
		{"title: x\ndetection:\n  sel:\n    A|re: '('\n  condition: sel", "regular expression"},
		{"title: x\ndetection:\n  sel:\n    A|cidr: 10.0.0.0/33\n  condition: sel", "cidr"},
		{"title: x\ndetection:\n  sel:\n    A|gt: many\n  condition: sel", "needs a number"},
		{"title: x\ndetection:\n  sel:\n    A: x", "no condition"},
		{"title: x\ndetection:\n  sel:\n    A: x\n  condition: (sel", "missing )"},
		{"title: x\ndetection:\n  sel:\n    A: x\n  condition: sel or", "ends too early"},
		{"title: x\ndetection:\n  sel:\n    A: x\n  condition: 1 of nothing*", "matches no search identifier"},
		{"title: x\nlevel: severe\ndetection:\n  sel:\n    A: x\n  condition: sel", "level"},
		{"detection:\n  sel:\n    A: x\n  condition: sel", "no title"},
		{"title: x\ntype: event_count\ncorrelation:\n  rules: [a]", "correlation rules"},
		{"title: x\ndetection:\n  sel:\n    A: x\n  condition: sel\n---\ntitle: y\n", "several YAML documents"},
		{"title: x\ndetection:\n  condition: " + strings.Repeat("not ", 100) + "sel\n  sel:\n    A: x", "nested too deeply"},
		{"title: [unclosed", "sigma:"},
	} {
		_, err := ParseRule([]byte(tc.rule))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("rule:\n%s\nerror %v, want it to mention %q", tc.rule, err, tc.want)
		}
	}
}

func TestRuleMetadataAndFields(t *testing.T) {
	r, err := ParseRule([]byte(`title: Inbox rule forwarding externally
id: 0a1b2c3d-0000-4000-8000-000000000001
status: test
description: A rule that forwards mail.
author: custos
level: High
tags: [attack.collection, attack.t1114.003]
logsource:
  product: m365
  service: exchange
detection:
  selection:
    eventName: New-InboxRule
    Parameters.ForwardTo|exists: true
  filter:
    Parameters.ForwardTo|endswith: '@contoso.com'
  condition: selection and not filter
falsepositives:
  - Users forwarding to their own other mailbox
`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Level != "high" || r.LogSource.Product != "m365" || r.LogSource.Service != "exchange" || len(r.Tags) != 2 || len(r.FalsePositives) != 1 {
		t.Errorf("metadata: %+v", r)
	}
	if got := r.Fields(); !slices.Equal(got, []string{"Parameters.ForwardTo", "eventName"}) {
		t.Errorf("fields: %v", got)
	}
}

func TestBase64Offsets(t *testing.T) {
	// The three encodings that appear inside longer base64 text, as the
	// Sigma specification gives them for "/bin/bash".
	if got := base64Offsets("/bin/bash"); !slices.Equal(got, []string{"L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"}) {
		t.Errorf("base64Offsets = %v", got)
	}
}

func FuzzParseRule(f *testing.F) {
	f.Add([]byte("title: x\ndetection:\n  sel:\n    A|contains|all: [a, b]\n  condition: 1 of sel*"))
	f.Add([]byte("title: x\ndetection:\n  a:\n    - x\n    - 'y*z'\n  b:\n    - F|re: '^a'\n  condition: (a or not b) and all of them"))
	f.Add([]byte("title: x\ndetection:\n  a:\n    F|cidr: 10.0.0.0/8\n    G|gt: 3\n  condition: a"))
	ev := event(f, sample)
	f.Fuzz(func(t *testing.T, src []byte) {
		r, err := ParseRule(src)
		if err != nil {
			return
		}
		r.Match(ev) // must not panic on any parsed rule
		r.Fields()
	})
}

// FuzzPatternFolding: the byte-folding fast path of case-insensitive
// matching agrees with lower-casing the value, for every pattern shape.
func FuzzPatternFolding(f *testing.F) {
	for _, seed := range [][2]string{
		{"New-InboxRule", "new-inboxrule"}, {"Set-AdminAuditLogConfig", "*auditlog*"}, {"ForwardTo", "forward*"},
		{"x@CONTOSO.com", "*@contoso.com"}, {"ÄÖÜ straße", "STRASSE"}, {"K", "k"}, {"", "*"}, {"abc", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, value, lit string) {
		for _, shape := range []struct{ contains, startswith, endswith bool }{{}, {true, false, false}, {false, true, false}, {false, false, true}} {
			p := compilePattern(lit, shape.contains, shape.startswith, shape.endswith, false)
			if p.kind == glob {
				continue
			}
			if got, want := p.match(value), p.test(strings.ToLower(value)); got != want {
				t.Fatalf("pattern %q %+v on %q: %v, lower-casing says %v", lit, shape, value, got, want)
			}
		}
	})
}

func TestGate(t *testing.T) {
	for _, tc := range []struct {
		name, detection string
		want            string // the gate's values, or "none"
	}{
		{"one value", "  sel:\n    Operation: New-InboxRule\n  condition: sel", "[new-inboxrule]"},
		{"list and alias", "  a:\n    eventName: [Set-Mailbox, 'SET-mailbox', Add-MailboxPermission]\n  b:\n    Operation: X\n  condition: a or b", "[add-mailboxpermission set-mailbox x]"},
		{"and takes a gated operand", "  a:\n    Workload: Exchange\n  b:\n    Operation: New-InboxRule\n  condition: a and b", "[new-inboxrule]"},
		{"or with an ungated operand", "  a:\n    Workload: Exchange\n  b:\n    Operation: New-InboxRule\n  condition: a or b", "none"},
		{"not", "  b:\n    Operation: New-InboxRule\n  condition: not b", "none"},
		{"1 of", "  org_a:\n    Operation: A\n  org_b:\n    Operation: B\n    Parameters.X: 'True'\n  condition: 1 of org_*", "[a b]"},
		{"all of", "  a:\n    Operation: A\n  b:\n    Workload: W\n  condition: all of them", "[a]"},
		{"alternatives all gated", "  a:\n    - Operation: A\n    - Operation: B\n      Workload: W\n  condition: a", "[a b]"},
		{"an alternative ungated", "  a:\n    - Operation: A\n    - Workload: W\n  condition: a", "none"},
		{"keyword", "  a:\n    - New-InboxRule\n  condition: a", "none"},
		{"wildcard", "  a:\n    Operation: New-*\n  condition: a", "none"},
		{"modifier", "  a:\n    Operation|contains: Inbox\n  condition: a", "none"},
		{"cased", "  a:\n    Operation|cased: New-InboxRule\n  condition: a", "none"},
		{"number", "  a:\n    Operation: 42\n  condition: a", "none"},
		{"null", "  a:\n    Operation: null\n  condition: a", "none"},
		{"other field", "  a:\n    Workload: Exchange\n  condition: a", "none"},
		{"list of conditions", "  a:\n    Operation: A\n  b:\n    Operation: B\n  condition:\n    - a\n    - b", "[a b]"},
		{"escaped wildcard", "  a:\n    Operation: 'What\\?'\n  condition: a", "[what?]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, ok := mustRule(t, tc.detection).Gate("Operation", "eventName")
			got := "none"
			if ok {
				got = fmt.Sprint(g.values)
			}
			if got != tc.want {
				t.Fatalf("gate %s, want %s", got, tc.want)
			}
		})
	}
	// On a rule that tests nothing else, the gate says what the rule does.
	r := mustRule(t, "  a:\n    Operation: [Kelvin, 'İx', 'straße']\n  condition: a")
	g, _ := r.Gate("Operation")
	for s, want := range map[string]bool{
		"kelvin": true, "KELVIN": true, "\u212Aelvin": true, "Kelvin ": false, "kelvi": false, "": false,
		"İx": true, "ix": true, "iX": true, "STRAßE": true, "strasse": false,
	} {
		if g.Allows(s) != want || r.Match(jsonEvent{m: map[string]any{"Operation": s}}) != want {
			t.Errorf("gate %v allows %q: %v, the rule matches it: %v, want %v", g.values, s, g.Allows(s),
				r.Match(jsonEvent{m: map[string]any{"Operation": s}}), want)
		}
	}
}

// FuzzGate: a rule never matches an event whose operation its gate rules
// out.
func FuzzGate(f *testing.F) {
	f.Add([]byte("title: x\ndetection:\n  a:\n    Operation: [New-InboxRule, Set-Mailbox]\n  b:\n    Workload: Exchange\n  condition: a and b"), "new-INBOXRULE")
	f.Add([]byte("title: x\ndetection:\n  a:\n    Operation: \u212Aelvin\n  condition: a"), "kelvin")
	f.Add([]byte("title: x\ndetection:\n  a:\n    - Operation: A\n    - Operation: B\n      Workload: Exchange\n  c:\n    Operation: 'C'\n  condition: 1 of them"), "b")
	f.Add([]byte("title: x\ndetection:\n  a:\n    Operation: ''\n  condition: a"), "")
	f.Fuzz(func(t *testing.T, src []byte, op string) {
		r, err := ParseRule(src)
		if err != nil {
			return
		}
		g, ok := r.Gate("Operation", "eventName")
		if !ok {
			return
		}
		ev := event(t, sample)
		ev.m["Operation"] = op
		ev.m["eventName"] = op
		if r.Match(ev) && !g.Allows(op) {
			t.Fatalf("the rule matches operation %q, which its gate %v rules out", op, g.values)
		}
		delete(ev.m, "Operation")
		delete(ev.m, "eventName")
		if r.Match(ev) {
			t.Fatalf("the rule with gate %v matches an event without an operation", g.values)
		}
	})
}
