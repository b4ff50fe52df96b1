package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRulesTestCommand runs the bundled rules over a simulator file and
// over the same records stored in a server: both find exactly the records
// an independent scan of the file says they should.
func TestRulesTestCommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sim.ndjson")
	runCLI(t, nil, "simulate", "--tenant", "contoso", "--users", "30", "--days", "3", "--start", "2026-03-02",
		"--seed", "4", "--scenario", "inbox-rule-forwarding", "--out", file, "--quiet")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// The reference, by plain text: inbox rules that forward or redirect.
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if strings.Contains(l, `"Operation":"New-InboxRule"`) && strings.Contains(l, `"Name":"ForwardTo"`) ||
			strings.Contains(l, `"Operation":"Set-InboxRule"`) && strings.Contains(l, `"Name":"RedirectTo"`) {
			var v struct{ Id string }
			json.Unmarshal([]byte(l), &v)
			want = append(want, v.Id)
		}
	}
	if len(want) == 0 {
		t.Fatal("the scenario wrote no forwarding inbox rule")
	}
	slices.Sort(want)
	matched := func(out string) []string {
		var ids []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var m struct {
				Source string
				Record struct{ ID string }
			}
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("not a JSON match line: %q", l)
			}
			if m.Source == "bundled/inbox_rule_forwarding.yml" {
				ids = append(ids, m.Record.ID)
			}
		}
		slices.Sort(ids)
		return ids
	}
	if got := matched(runCLI(t, nil, "rules", "test", "--format", "ndjson", file)); !slices.Equal(got, want) {
		t.Fatalf("rules test on the file matched %v, want %v", got, want)
	}
	text := runCLI(t, nil, "rules", "test", file)
	if !strings.Contains(text, "Mail forwarded or redirected by an inbox rule") || !strings.Contains(text, "records read") {
		t.Errorf("text output: %q", text)
	}

	s := startServer(t, t.TempDir())
	ingestTok, readTok := setupTenant(s, "contoso")
	s.mustCall("POST", "/api/v1/tenants/contoso/records", ingestTok, raw, 200)
	env := []string{"CUSTOS_SERVER=" + s.url, "CUSTOS_TOKEN=" + readTok}
	if got := matched(runCLI(t, env, "rules", "test", "--tenant", "contoso", "--from", "2026-03-01", "--to", "2026-03-06", "--format", "ndjson")); !slices.Equal(got, want) {
		t.Fatalf("rules test on stored records matched %v, want %v", got, want)
	}
	if msg := failCLI(t, nil, "rules", "test", "--rules", filepath.Join(t.TempDir(), "none"), file); !strings.Contains(msg, "no such file") {
		t.Errorf("missing rules path: %q", msg)
	}
}

// TestTenantRuleThroughTheCLI: a rule added to one tenant with `rules
// add` raises alerts on that tenant's records only, is listed beside the
// server's rules, and stops when removed.
func TestTenantRuleThroughTheCLI(t *testing.T) {
	s := startServer(t, t.TempDir(), "--learning-days", "0")
	admin := []string{"CUSTOS_SERVER=" + s.url, "CUSTOS_TOKEN=" + s.adminToken()}
	runCLI(t, admin, "tenant", "create", "--id", "contoso")
	runCLI(t, admin, "tenant", "create", "--id", "fabrikam")
	const id = "7f1e9d10-2b8a-4c55-9e61-5c0ffee00001"
	file := filepath.Join(t.TempDir(), "vip.yml")
	os.WriteFile(file, []byte(`title: Someone read the CEO's mailbox
id: `+id+`
level: critical
logsource:
  product: m365
detection:
  sel:
    Operation: MailItemsAccessed
    MailboxOwnerUPN: ceo@contoso.com
  condition: sel
`), 0o644)
	if out := runCLI(t, admin, "rules", "add", "--tenant", "contoso", file); !strings.Contains(out, id) {
		t.Fatalf("rules add: %s", out)
	}
	if out := runCLI(t, admin, "rules", "list", "--tenant", "contoso"); !strings.Contains(out, "tenant") || !strings.Contains(out, "CEO") {
		t.Fatalf("rules list:\n%s", out)
	}
	if out := runCLI(t, admin, "rules", "list", "--tenant", "fabrikam"); strings.Contains(out, "CEO") {
		t.Fatalf("fabrikam lists contoso's rule:\n%s", out)
	}
	rec := func(tenant, rid string) []byte {
		return []byte(`{"Id":"` + rid + `","CreationTime":"2026-03-02T10:00:00","RecordType":50,"Operation":"MailItemsAccessed","Workload":"Exchange",` +
			`"UserId":"eve@` + tenant + `.com","MailboxOwnerUPN":"ceo@contoso.com","OrganizationId":"o"}`)
	}
	// fabrikam's record first: detection reads in commit order, so once
	// contoso's alert is there, fabrikam's record has been evaluated.
	for _, tenant := range []string{"fabrikam", "contoso"} {
		s.mustCall("POST", "/api/v1/tenants/"+tenant+"/records", s.adminToken(), rec(tenant, tenant+"-1"), 200)
	}
	a := waitForAlert(t, admin, func(a alertLine) bool { return a.Detector == "sigma:"+id })
	if a.Severity != "critical" || !slices.Equal(a.Evidence, []string{"contoso-1"}) {
		t.Fatalf("alert %+v", a)
	}
	runCLI(t, admin, "rules", "remove", "--tenant", "contoso", "--id", id)
	if msg := failCLI(t, admin, "rules", "remove", "--tenant", "contoso", "--id", id); !strings.Contains(msg, "no such rule") {
		t.Errorf("removing twice: %q", msg)
	}
	if out := runCLI(t, admin, "alerts", "list", "--tenant", "fabrikam", "--format", "ndjson"); strings.Contains(out, id) {
		t.Errorf("contoso's rule alerted in fabrikam: %s", out)
	}
}
