package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/retention"
	"github.com/custos-audit/custos/selfaudit"
	"github.com/custos-audit/custos/store"
)

func TestRetentionAPI(t *testing.T) {
	e := newEnv(t)
	e.clock = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	admin, read := e.tokens["alpha/admin"], e.tokens["alpha/read"]
	base := "/api/v1/tenants/alpha/retention"

	r := e.do("POST", base+"/policies", admin, []byte(`{"name":"items","recordTypes":["ExchangeItem"],"retentionDuration":"SevenDays","priority":5}`))
	if r.status != http.StatusCreated || !bytes.Contains(r.body, []byte(`"retentionDuration":"SevenDays"`)) {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	for _, bad := range []struct {
		body   string
		status int
		msg    string
	}{
		{`{"name":"items","recordTypes":["ExchangeItem"],"retentionDuration":"7d","priority":6}`, 409, "already exists"},
		{`{"name":"other","recordTypes":["ExchangeItem"],"retentionDuration":"7d","priority":5}`, 409, "priority 5 is taken"},
		{`{"name":"x","recordTypes":["ExchangeItem"],"retentionDuration":"180d","priority":7}`, 400, "retention duration"},
		{`{"name":"x","recordTypes":["A","B"],"operations":["Send"],"retentionDuration":"7d","priority":7}`, 400, "exactly one record type"},
		{`{"name":"x","userIds":["u"],"retentionDuration":"7d","priority":7,"extra":1}`, 400, "unknown field"},
	} {
		r := e.do("POST", base+"/policies", admin, []byte(bad.body))
		if r.status != bad.status || !strings.Contains(string(r.body), bad.msg) {
			t.Errorf("create %s: %d %s; want %d with %q", bad.body, r.status, r.body, bad.status, bad.msg)
		}
	}
	// A read token cannot change retention; it is refused and the attempt audited.
	for _, c := range []struct{ method, path, body string }{
		{"POST", base + "/policies", `{"name":"sneaky","userIds":["u"],"retentionDuration":"7d","priority":9}`},
		{"PATCH", base + "/policies/items", `{"retentionDuration":"10y"}`},
		{"DELETE", base + "/policies/items", ``},
		{"PUT", base + "/hold", `{"all":true}`},
		{"POST", base + "/enforce", `{}`},
	} {
		if r := e.do(c.method, c.path, read, []byte(c.body)); r.status != http.StatusForbidden {
			t.Errorf("%s %s with a read token: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	if denied := auditOps(t, e, "alpha")[selfaudit.AccessDenied]; denied != 5 {
		t.Errorf("%d AccessDenied records, want 5", denied)
	}
	if r := e.do("PATCH", base+"/policies/ITEMS", admin, []byte(`{"priority":3}`)); r.status != 200 || !bytes.Contains(r.body, []byte(`"priority":3`)) {
		t.Errorf("patch: %d %s", r.status, r.body)
	}
	if r := e.do("GET", base+"/policies", read, nil); r.status != 200 || !bytes.Contains(r.body, []byte(`"defaultDays":180`)) || !bytes.Contains(r.body, []byte(`"name":"items"`)) {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	if r := e.do("GET", base+"/report", read, nil); r.status != http.StatusNotFound {
		t.Errorf("report before any run: %d", r.status)
	}

	// Records: an item 8 days old (items policy: gone), one 6 days old
	// (kept), a mail access 181 days old (default: gone), one 179 (kept).
	day := 24 * time.Hour
	var body strings.Builder
	for _, x := range []struct {
		id  string
		age time.Duration
		typ int
	}{{"item-8d", 8 * day, 2}, {"item-6d", 6 * day, 2}, {"mia-181d", 181 * day, 50}, {"mia-179d", 179 * day, 50}} {
		fmt.Fprintf(&body, `{"Id":%q,"CreationTime":%q,"RecordType":%d,"Operation":"Op","UserId":"u@x.example","Workload":"Exchange"}`+"\n",
			x.id, e.clock.Add(-x.age).Format("2006-01-02T15:04:05"), x.typ)
	}
	if _, res := e.ingest("alpha", e.tokens["alpha/ingest"], body.String()); res.Accepted != 4 {
		t.Fatalf("ingest: %+v", res)
	}
	if err := e.db.Seal(t.Context()); err != nil {
		t.Fatal(err)
	}
	var rep retention.Report
	r = e.do("POST", base+"/enforce", read, []byte(`{"dryRun":true}`))
	if json.Unmarshal(r.body, &rep); r.status != 200 || !rep.DryRun || rep.Records != 2 {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	if got := e.idsOf("alpha"); len(got) != 4 {
		t.Fatalf("a dry run removed records: %v", got)
	}
	// A hold on the whole tenant suspends deletion.
	if r := e.do("PUT", base+"/hold", admin, []byte(`{"all":true,"reason":"case 7"}`)); r.status != 200 {
		t.Fatalf("hold: %d %s", r.status, r.body)
	}
	r = e.do("POST", base+"/enforce", admin, nil)
	if json.Unmarshal(r.body, &rep); r.status != 200 || !rep.Held || rep.Records != 0 || len(e.idsOf("alpha")) != 4 {
		t.Fatalf("enforce under hold: %d %s", r.status, r.body)
	}
	if r := e.do("PUT", base+"/hold", admin, []byte(`{}`)); r.status != 200 {
		t.Fatalf("lift hold: %d %s", r.status, r.body)
	}
	r = e.do("POST", base+"/enforce", admin, []byte(`{"dryRun":false}`))
	if json.Unmarshal(r.body, &rep); r.status != 200 || rep.Records != 2 {
		t.Fatalf("enforce: %d %s", r.status, r.body)
	}
	if got := e.idsOf("alpha"); !slices.Equal(got, []string{"item-6d", "mia-179d"}) {
		t.Fatalf("after enforcement: %v", got)
	}
	if r := e.do("GET", base+"/report", read, nil); r.status != 200 || !bytes.Contains(r.body, []byte(`"records":2`)) {
		t.Errorf("report: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", base+"/policies/items", admin, nil); r.status != http.StatusNoContent {
		t.Errorf("delete: %d %s", r.status, r.body)
	}
	if r := e.do("GET", base+"/policies/items", read, nil); r.status != http.StatusNotFound {
		t.Errorf("get deleted: %d %s", r.status, r.body)
	}
}

// auditRecords returns the tenant's self-audit records, oldest first.
func auditRecords(t *testing.T, e *env, tenant string) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	err := e.db.Records(t.Context(), tenant, store.Query{Filter: store.Filter{Workloads: []string{selfaudit.Workload}}},
		func(r *audit.Record) error {
			out = append(out, r)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(out)
	return out
}

func auditOps(t *testing.T, e *env, tenant string) map[string]int {
	ops := map[string]int{}
	for _, r := range auditRecords(t, e, tenant) {
		ops[r.Operation]++
	}
	return ops
}

// TestSelfAudit: every audited action leaves a record in the acting
// tenant's log, with who, from where and what, searchable like any other.
func TestSelfAudit(t *testing.T) {
	e := newEnv(t)
	read, admin := e.tokens["alpha/read"], e.tokens["alpha/admin"]
	recs := "/api/v1/tenants/alpha/records"
	type step struct {
		method, path, token, body string
		tenant, op, object        string
	}
	steps := []step{
		{"GET", recs + "?from=30d&keyword=needle-42&limit=10", read, "", "alpha", selfaudit.SearchQueryInitiated, ""},
		{"GET", recs + "?from=30d&user=ann@x.example&format=csv", read, "", "alpha", selfaudit.SearchExported, ""},
		{"GET", recs + "?from=30d&count=true", read, "", "alpha", selfaudit.SearchQueryInitiated, ""},
		{"GET", recs + "?from=30d&histogram=1h", read, "", "alpha", selfaudit.SearchQueryInitiated, ""},
		{"POST", recs + "/search", read, `{"from":"7d","ips":["203.0.113.0/24"]}`, "alpha", selfaudit.SearchExported, ""},
		{"POST", "/api/v1/tenants/alpha/retention/policies", admin, `{"name":"p","userIds":["u"],"retentionDuration":"7d","priority":1}`, "alpha", selfaudit.RetentionPolicyCreated, "p"},
		{"PATCH", "/api/v1/tenants/alpha/retention/policies/p", admin, `{"retentionDuration":"1mo"}`, "alpha", selfaudit.RetentionPolicyChanged, "p"},
		{"PUT", "/api/v1/tenants/alpha/retention/hold", admin, `{"users":["ann@x.example"]}`, "alpha", selfaudit.LegalHoldChanged, ""},
		{"POST", "/api/v1/tenants/alpha/retention/enforce", read, `{"dryRun":true}`, "alpha", selfaudit.RetentionEnforced, ""},
		{"DELETE", "/api/v1/tenants/alpha/retention/policies/p", admin, ``, "alpha", selfaudit.RetentionPolicyDeleted, "p"},
		{"POST", "/api/v1/tokens", admin, `{"tenant":"alpha","role":"read","name":"analyst"}`, "alpha", selfaudit.TokenCreated, ""},
		{"DELETE", "/api/v1/tokens/" + e.ids["alpha/ingest"], admin, ``, "alpha", selfaudit.TokenRevoked, e.ids["alpha/ingest"]},
		{"POST", "/api/v1/tokens", e.tokens["global/admin"], `{"role":"read","name":"scraper"}`, selfaudit.SystemTenant, selfaudit.TokenCreated, ""},
		{"POST", "/api/v1/tenants", e.tokens["global/admin"], `{"id":"gamma"}`, selfaudit.SystemTenant, selfaudit.TenantCreated, "gamma"},
		{"POST", "/api/v1/tenants/alpha/retention/policies", read, `{"name":"q","userIds":["u"],"retentionDuration":"7d","priority":2}`, "alpha", selfaudit.AccessDenied, "/api/v1/tenants/alpha/retention/policies"},
	}
	for _, s := range steps {
		if r := e.do(s.method, s.path, s.token, []byte(s.body)); r.status >= 400 && s.op != selfaudit.AccessDenied {
			t.Fatalf("%s %s: %d %s", s.method, s.path, r.status, r.body)
		}
	}
	got := map[string][]*audit.Record{"alpha": auditRecords(t, e, "alpha"), selfaudit.SystemTenant: auditRecords(t, e, selfaudit.SystemTenant)}
	next := map[string]int{}
	for _, s := range steps {
		i := next[s.tenant]
		next[s.tenant]++
		if i >= len(got[s.tenant]) {
			t.Fatalf("%s %s: no audit record in %s", s.method, s.path, s.tenant)
		}
		r := got[s.tenant][i]
		if r.Operation != s.op || r.Workload != selfaudit.Workload || r.RecordType != int32(audit.CustosAudit) ||
			r.ClientIP != "127.0.0.1" || r.UserKey == "" || (s.object != "" && r.ObjectID != s.object) {
			t.Errorf("%s %s: record %s op=%s workload=%s type=%d ip=%q userKey=%q object=%q; want op %s object %q",
				s.method, s.path, r.ID, r.Operation, r.Workload, r.RecordType, r.ClientIP, r.UserKey, r.ObjectID, s.op, s.object)
		}
		wantResult := "Succeeded"
		if s.op == selfaudit.AccessDenied {
			wantResult = "Failed"
		}
		if r.ResultStatus != wantResult {
			t.Errorf("%s: result %s, want %s", s.op, r.ResultStatus, wantResult)
		}
	}
	for tenant, rs := range got {
		if len(rs) != next[tenant] {
			t.Errorf("%s has %d audit records, want %d", tenant, len(rs), next[tenant])
		}
	}
	// Who and what: the search's filter and the token are in the record.
	first := got["alpha"][0]
	if first.UserKey != e.ids["alpha/read"] || !bytes.Contains(first.Raw, []byte(`"keyword":"needle-42"`)) ||
		!bytes.Contains(first.Raw, []byte(`"UserId":"alpha-read"`)) {
		t.Errorf("search record lacks who or what: %s", first.Raw)
	}
	if changed := got["alpha"][6]; !bytes.Contains(changed.Raw, []byte(`"before"`)) || !bytes.Contains(changed.Raw, []byte(`"OneMonth"`)) {
		t.Errorf("policy change record lacks before/after: %s", changed.Raw)
	}
	// Searchable like any other record, by the tenant's own read token.
	r := e.do("GET", recs+"?from=1h&workload=Custos&operation=RetentionPolicyChanged", read, nil)
	if ids := idsIn(r.body); r.status != 200 || len(ids) != 1 || ids[0] != got["alpha"][6].ID {
		t.Errorf("searching self-audit records: %d %s", r.status, r.body)
	}
}
