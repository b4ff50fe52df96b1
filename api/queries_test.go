package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-audit/custos/selfaudit"
)

// TestQueryJobsGraphShape: a query created with Graph's body runs in the
// background; its records, paged by @odata.nextLink, are exactly those the
// synchronous search finds, in Graph's auditLogRecord shape.
func TestQueryJobsGraphShape(t *testing.T) {
	e := newEnv(t)
	at := time.Date(2026, 6, 2, 10, 0, 0, 0, time.UTC)
	var body strings.Builder
	for i, x := range []struct{ id, extra string }{
		{"q1", `,"ClientIP":"203.0.113.7:443"`},
		{"q2", `,"ClientIP":"10.1.2.3"`},
		{"q3", `,"ClientIP":"203.0.113.9","UserType":2`},
		{"q4", `,"ClientIP":"203.0.113.10","RecordType":2`},
		{"q5", `,"ClientIP":"203.0.113.11"`},
	} {
		body.WriteString(strings.Replace(rec(x.id, at.Add(time.Duration(i)*time.Minute), x.extra), `"RecordType":50,`, "", strings.Count(x.extra, "RecordType")) + "\n")
	}
	if _, res := e.ingest("alpha", e.tokens["alpha/ingest"], body.String()); res.Accepted != 5 {
		t.Fatalf("ingest: %+v", res)
	}
	tok := e.tokens["alpha/read"]
	base := "/api/v1/tenants/alpha/queries"
	create := `{"@odata.type":"#microsoft.graph.security.auditLogQuery","displayName":"storm","filterStartDateTime":"2026-06-01T00:00:00Z",
		"filterEndDateTime":"2026-06-03T00:00:00Z","recordTypeFilters":["exchangeItemAggregated"],"operationFilters":["MailItemsAccessed"],
		"ipAddressFilters":["203.0.113.0/24"],"userPrincipalNameFilters":["U@X.EXAMPLE"],"serviceFilter":"Exchange"}`
	r := e.do("POST", base, tok, []byte(create))
	var q auditLogQuery
	if json.Unmarshal(r.body, &q); r.status != http.StatusCreated || q.ID == "" || (q.Status != "notStarted" && q.Status != "running" && q.Status != "succeeded") {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for q.Status != "succeeded" {
		if time.Now().After(deadline) {
			t.Fatalf("query still %s", q.Status)
		}
		time.Sleep(20 * time.Millisecond)
		json.Unmarshal(e.do("GET", base+"/"+q.ID, tok, nil).body, &q)
	}
	want := idsIn(e.do("GET", "/api/v1/tenants/alpha/records?from=2026-06-01&to=2026-06-03&recordType=50&operation=MailItemsAccessed&ip=203.0.113.0/24&user=u@x.example&workload=Exchange", tok, nil).body)
	if len(want) != 3 {
		t.Fatalf("reference has %v", want)
	}
	var got []string
	next := base + "/" + q.ID + "/records?$top=2"
	for pages := 0; next != ""; pages++ {
		u, _ := url.Parse(next)
		r := e.do("GET", u.RequestURI(), tok, nil)
		var page struct {
			Value    []auditLogRecord `json:"value"`
			NextLink string           `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil || r.status != 200 || pages > 5 {
			t.Fatalf("page: %d %s", r.status, r.body)
		}
		for _, x := range page.Value {
			got = append(got, x.ID)
			if x.AuditLogRecordType != "exchangeItemAggregated" || x.Service != "Exchange" || x.UserPrincipalName != "u@x.example" ||
				!bytes.HasPrefix(x.AuditData, []byte(`{"Id":"`+x.ID)) || x.CreatedDateTime.IsZero() || !strings.HasPrefix(x.ClientIP, "203.0.113.") {
				t.Errorf("record shape: %+v", x)
			}
			if x.ID == "q3" && x.UserType != "admin" {
				t.Errorf("userType of q3: %q", x.UserType)
			}
		}
		next = page.NextLink
	}
	if !slices.Equal(got, want) {
		t.Fatalf("query records %v, search %v", got, want)
	}
	if r := e.do("GET", base, tok, nil); r.status != 200 || !bytes.Contains(r.body, []byte(`"displayName":"storm"`)) {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	if ops := auditOps(t, e, "alpha"); ops[selfaudit.AuditQueryCreated] != 1 || ops[selfaudit.AuditQueryRecordsRead] != 2 {
		t.Errorf("self-audit: %v", ops)
	}

	for _, bad := range []struct{ body, msg string }{
		{`{"displayName":"x"}`, "filterStartDateTime is required"},
		{`{"filterStartDateTime":"2026-06-03T00:00:00Z","filterEndDateTime":"2026-06-01T00:00:00Z"}`, "must be after"},
		{`{"filterStartDateTime":"2026-06-01T00:00:00Z","administrativeUnitIdFilters":["a"]}`, "administrative units"},
		{`{"filterStartDateTime":"2026-06-01T00:00:00Z","recordTypeFilters":["nope"]}`, "not a record type"},
		{`{"filterStartDateTime":"2026-06-01T00:00:00Z","ipAddressFilters":["1.2.3"]}`, "not an address"},
		{`{"filterStartDateTime":"2026-06-01T00:00:00Z","surprise":1}`, "unknown field"},
		{`{"filterStartDateTime":"yesterday"}`, "filterStartDateTime"},
	} {
		if r := e.do("POST", base, tok, []byte(bad.body)); r.status != 400 || !strings.Contains(string(r.body), bad.msg) {
			t.Errorf("create %s: %d %s", bad.body, r.status, r.body)
		}
	}
	for _, bad := range []string{"$skiptoken=-5", "$skiptoken=99999", "$skiptoken=abc", "$top=0", "$top=10001"} {
		if r := e.do("GET", base+"/"+q.ID+"/records?"+bad, tok, nil); r.status != 400 {
			t.Errorf("records?%s: %d %s", bad, r.status, r.body)
		}
	}
	if r := e.do("POST", base+"/"+q.ID+"/cancel", tok, nil); r.status != http.StatusConflict {
		t.Errorf("cancelling a finished query: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", base+"/"+q.ID, tok, nil); r.status != http.StatusNoContent {
		t.Errorf("delete: %d %s", r.status, r.body)
	}
	if r := e.do("GET", base+"/"+q.ID, tok, nil); r.status != http.StatusNotFound {
		t.Errorf("after delete: %d %s", r.status, r.body)
	}
}
