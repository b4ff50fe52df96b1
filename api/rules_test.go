package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/custos-audit/custos/rules"
	"github.com/custos-audit/custos/selfaudit"
)

// TestTenantRulesAPI: an admin adds a rule as YAML; it is listed beside
// the server's rules, matches the tenant's records, can be replaced and
// removed; bad rules get clear errors. (That it then matches the tenant's
// records is tested in detect and end to end in cmd/custos.)
func TestTenantRulesAPI(t *testing.T) {
	e := newEnv(t)
	bundled, err := rules.Bundled()
	if err != nil {
		t.Fatal(err)
	}
	e.engine.SetRules(bundled)
	admin, read := e.tokens["alpha/admin"], e.tokens["alpha/read"]
	base := "/api/v1/tenants/alpha/rules/"
	const id = "b7d6c2a1-5f3e-4c1d-9a8b-000000000042"
	rule := strings.ReplaceAll(ruleYAML(id), "Set-Mailbox", "New-TransportRule")

	for name, c := range map[string]struct {
		path, body string
		want       int
	}{
		"id differs":       {base + "other", rule, http.StatusBadRequest},
		"not a rule":       {base + id, "title: x\ndetection: [", http.StatusBadRequest},
		"too large":        {base + id, rule + "#" + strings.Repeat("x", 70<<10) + "\n", http.StatusRequestEntityTooLarge},
		"bundled id taken": {base + bundled[0].ID, ruleYAML(bundled[0].ID), http.StatusConflict},
	} {
		if r := e.do("PUT", c.path, admin, []byte(c.body)); r.status != c.want {
			t.Errorf("%s: %d %s, want %d", name, r.status, r.body, c.want)
		}
	}
	if r := e.do("PUT", base+id, admin, []byte(rule)); r.status != http.StatusCreated {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	if r := e.do("PUT", base+id, admin, []byte(rule)); r.status != http.StatusOK {
		t.Fatalf("replace: %d %s", r.status, r.body)
	}
	r := e.do("GET", "/api/v1/tenants/alpha/rules", read, nil)
	var list struct {
		Rules []struct{ ID, Scope string }
	}
	json.Unmarshal(r.body, &list)
	scopes := map[string]int{}
	for _, x := range list.Rules {
		scopes[x.Scope]++
	}
	if scopes["server"] != len(bundled) || scopes["tenant"] != 2 { // alpha-rule and the new one
		t.Fatalf("list: %v %s", scopes, r.body)
	}
	if r := e.do("GET", base+id, read, nil); r.status != 200 || !strings.Contains(string(r.body), "New-TransportRule") {
		t.Errorf("get: %d %s", r.status, r.body)
	}

	if r := e.do("DELETE", base+id, admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := e.do("GET", base+id, read, nil); r.status != http.StatusNotFound {
		t.Errorf("get deleted: %d", r.status)
	}
	if ops := auditOps(t, e, "alpha"); ops[selfaudit.RuleChanged] != 3 {
		t.Errorf("self-audit: %v", ops)
	}
}
