package detect

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/audit"
)

const vipRule = `title: Mail read in the CEO's mailbox
id: 0a6c2a55-0000-4000-8000-00000000c0de
level: high
logsource:
  product: m365
detection:
  sel:
    Operation: MailItemsAccessed
    MailboxOwnerUPN: ceo@acme.example
  condition: sel
`

func ceoRead(tenant, id string) audit.Record {
	r := mailRead(id, "outlook", day0)
	r.Tenant, r.MailboxOwnerUPN = tenant, "ceo@acme.example"
	r.Raw = []byte(`{"Operation":"MailItemsAccessed","MailboxOwnerUPN":"ceo@acme.example"}`)
	return r
}

// A tenant's own rule runs on that tenant's records only, survives a
// reopen, and stops when removed.
func TestTenantRules(t *testing.T) {
	dir := t.TempDir()
	as, err := alert.Open(filepath.Join(dir, "alerts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	open := func() *Engine {
		e, err := Open(filepath.Join(dir, "detect"), nil, as, nil, Options{Learning: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := open()
	never := func(string) bool { return false }
	const id = "0a6c2a55-0000-4000-8000-00000000c0de"
	for name, c := range map[string]struct {
		id, src string
		taken   func(string) bool
		want    error
	}{
		"id differs from path": {"other-id", vipRule, never, ErrInvalidRule},
		"not yaml":             {id, "title: [", never, ErrInvalidRule},
		"windows rule":         {id, "title: x\nid: " + id + "\nlogsource:\n  product: windows\ndetection:\n  s:\n    EventID: 1\n  condition: s\n", never, ErrInvalidRule},
		"server has the id":    {id, vipRule, func(string) bool { return true }, ErrRuleConflict},
	} {
		if _, _, err := e.TenantRules().Put("acme", c.id, []byte(c.src), "", c.taken); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	tr, replaced, err := e.TenantRules().Put("acme", id, []byte(vipRule), "alice", never)
	if err != nil || replaced || tr.Title != "Mail read in the CEO's mailbox" || tr.Level != "high" {
		t.Fatalf("put: %+v %v %v", tr, replaced, err)
	}
	if _, replaced, err := e.TenantRules().Put("acme", id, []byte(vipRule), "alice", never); err != nil || !replaced {
		t.Fatalf("put again: replaced=%v %v", replaced, err)
	}

	e = open() // the rule is kept
	e.apply(1, []audit.Record{ceoRead("acme", "a1"), ceoRead("globex", "g1")})
	if got := as.List("acme", alert.Filter{Detector: RulePrefix + id}); len(got) != 1 || got[0].Evidence[0] != "a1" || got[0].Severity != "high" {
		t.Fatalf("acme's alerts: %+v", got)
	}
	if got := as.List("globex", alert.Filter{}); len(got) != 0 {
		t.Fatalf("acme's rule ran on globex: %+v", got)
	}
	if _, err := e.TenantRules().Remove("globex", id); !errors.Is(err, ErrRuleNotFound) {
		t.Fatalf("globex removed acme's rule: %v", err)
	}
	if _, err := e.TenantRules().Remove("acme", id); err != nil {
		t.Fatal(err)
	}
	e.apply(2, []audit.Record{ceoRead("acme", "a2")})
	if got := as.List("acme", alert.Filter{Detector: RulePrefix + id}); got[0].Count != 1 {
		t.Fatalf("a removed rule still matched: %+v", got)
	}
}
