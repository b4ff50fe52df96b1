package api

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func idsIn(body []byte) []string {
	var ids []string
	for _, l := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var r struct{ Id string }
		json.Unmarshal(l, &r)
		ids = append(ids, r.Id)
	}
	return ids
}

func TestSearchFiltersAndPaging(t *testing.T) {
	e := newEnv(t)
	at := time.Date(2026, 6, 2, 10, 0, 0, 0, time.UTC)
	var body strings.Builder
	for i, x := range []struct{ id, extra string }{
		{"a1", `,"ClientIP":"203.0.113.7:443","AppId":"6b7f0558-3c2d-4e91-a8f0-2d5c0de05580"`},
		{"a2", `,"ClientIP":"10.1.2.3"`},
		{"a3", `,"ClientIP":"[2001:db8::5]:80","ObjectId":"https://x.sharepoint.com/sites/fin/Q1.xlsx"`},
		{"a4", `,"ClientIP":"203.0.113.200","ResultStatus":"Failed"`},
		{"a5", `,"Operation2":"x","ObjectId":"https://x.sharepoint.com/sites/hr/pay.xlsx"`},
	} {
		body.WriteString(rec(x.id, at.Add(time.Duration(i)*time.Minute), x.extra) + "\n")
	}
	if r, res := e.ingest("alpha", e.tokens["alpha/ingest"], body.String()); res.Accepted != 5 {
		t.Fatalf("ingest: %d %s", r.status, r.body)
	}
	tok := e.tokens["alpha/read"]
	get := func(params string) reply {
		return e.do("GET", "/api/v1/tenants/alpha/records?from=2026-06-01&to=2026-06-03&"+params, tok, nil)
	}
	for _, tc := range []struct {
		params string
		want   []string
	}{
		{"", []string{"a5", "a4", "a3", "a2", "a1"}},
		{"ip=203.0.113.0/24", []string{"a4", "a1"}},
		{"ip=10.1.2.3&ip=2001:db8::/32", []string{"a3", "a2"}},
		{"ip=203.0.113.7,10.1.2.3", []string{"a2", "a1"}},
		{"appId=6B7F0558-3C2D-4E91-A8F0-2D5C0DE05580", []string{"a1"}},
		{"objectId=" + url.QueryEscape("https://x.sharepoint.com/sites/*.xlsx"), []string{"a5", "a3"}},
		{"resultStatus=failed", []string{"a4"}},
		{"keyword=operation2", []string{"a5"}},
		{"recordType=ExchangeItemAggregated", []string{"a5", "a4", "a3", "a2", "a1"}},
		{"recordType=1", nil},
		{"operation=mailitemsaccessed&user=U@X.EXAMPLE&workload=exchange", []string{"a5", "a4", "a3", "a2", "a1"}},
	} {
		r := get(tc.params)
		if r.status != 200 || !slices.Equal(idsIn(r.body), tc.want) {
			t.Errorf("%s: %d %v, want %v (%s)", tc.params, r.status, idsIn(r.body), tc.want, r.body)
		}
	}
	if r := get("ip=203.0.113.0/24&count=true"); r.status != 200 || strings.TrimSpace(string(r.body)) != `{"count":2}` {
		t.Errorf("count: %d %s", r.status, r.body)
	}
	// Paging: pages of 2 follow the cursor to the end, each record once.
	var all []string
	params := "limit=2"
	for pages := 0; ; pages++ {
		r := get(params)
		if r.status != 200 || pages > 5 {
			t.Fatalf("page %d: %d %s", pages, r.status, r.body)
		}
		all = append(all, idsIn(r.body)...)
		next := r.header.Get("Custos-Next-Cursor")
		if next == "" {
			break
		}
		params = "limit=2&cursor=" + url.QueryEscape(next)
	}
	if !slices.Equal(all, []string{"a5", "a4", "a3", "a2", "a1"}) {
		t.Errorf("paged: %v", all)
	}
	// A histogram for the timeline: per-minute counts of the same search.
	var h struct {
		Count    int64
		Interval string
		Buckets  []struct {
			Start time.Time
			Count int64
		}
	}
	hr := get("ip=203.0.113.0/24&histogram=1m")
	if err := json.Unmarshal(hr.body, &h); err != nil || hr.status != 200 || h.Count != 2 || len(h.Buckets) != 2 ||
		!h.Buckets[0].Start.Equal(at) || !h.Buckets[1].Start.Equal(at.Add(3*time.Minute)) || h.Buckets[1].Count != 1 {
		t.Errorf("histogram: %d %s", hr.status, hr.body)
	}
	if r := get("histogram=1s"); r.status != 400 || !strings.Contains(string(r.body), "intervals") {
		t.Errorf("a 2-day histogram by the second: %d %s", r.status, r.body)
	}
	// CSV export in the Purview layout carries the raw records unchanged.
	raws := strings.Split(strings.TrimSpace(body.String()), "\n")
	r := get("format=csv&ip=203.0.113.0/24")
	rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil || r.status != 200 || len(rows) != 3 {
		t.Fatalf("csv: %d %v %q", r.status, err, r.body)
	}
	if !slices.Equal(rows[0], []string{"CreationDate", "UserId", "Operation", "AuditData", "RecordType", "Id"}) ||
		rows[1][3] != raws[3] || rows[2][3] != raws[0] || rows[1][5] != "a4" || rows[1][4] != "50" ||
		rows[1][0] != "2026-06-02T10:03:00.0000000Z" || rows[1][1] != "u@x.example" {
		t.Errorf("csv rows: %q", rows)
	}
	if r := get("format=csv&user=nobody"); strings.TrimSpace(string(r.body)) != "CreationDate,UserId,Operation,AuditData,RecordType,Id" {
		t.Errorf("empty csv: %q", r.body)
	}
	if r := get("format=xml"); r.status != 400 {
		t.Errorf("format=xml: %d", r.status)
	}
	// The same search as a JSON body.
	r = e.do("POST", "/api/v1/tenants/alpha/records/search", tok,
		[]byte(`{"from":"2026-06-01","to":"2026-06-03","ips":["203.0.113.0/24"],"operations":["MailItemsAccessed"]}`))
	if r.status != 200 || !slices.Equal(idsIn(r.body), []string{"a4", "a1"}) {
		t.Errorf("POST search: %d %s", r.status, r.body)
	}
	// Bad searches are refused with a reason.
	for params, want := range map[string]string{
		"from=":                           "from is required",
		"from=yesterday":                  "from",
		"from=2026-06-03&to=2026-06-01":   "before",
		"from=2026-06-01&ip=300.1.1.1":    "not an address",
		"from=2026-06-01&recordType=Nope": "record type",
		"from=2026-06-01&limit=1000000":   "limit",
		"from=2026-06-01&cursor=xyz":      "cursor",
	} {
		r := e.do("GET", "/api/v1/tenants/alpha/records?"+params, tok, nil)
		if r.status != 400 || !strings.Contains(string(r.body), want) {
			t.Errorf("%s: %d %s, want 400 mentioning %q", params, r.status, r.body, want)
		}
	}
	if r := e.do("POST", "/api/v1/tenants/alpha/records/search", tok, []byte(`{"from":"30d","bogus":1}`)); r.status != 400 {
		t.Errorf("unknown JSON field: %d %s", r.status, r.body)
	}
}

// TestCSVFieldQuotes compares appendCSVField with the plain definition on
// fields with quotes at every position around its eight-byte words,
// appended after existing bytes.
func TestCSVFieldQuotes(t *testing.T) {
	want := func(s string) string {
		if s == "" || (!strings.ContainsAny(s, "\",\r\n") && s[0] != ' ' && s[0] != '\t') {
			return s
		}
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{`"`, `"`, "a", "b", ",", "\n", " ", "\u00e9", "#", "!"}
	for n := range 40 {
		for range 200 {
			var sb strings.Builder
			for range n {
				sb.WriteString(alphabet[rnd.IntN(len(alphabet))])
			}
			s := sb.String()
			got := appendCSVField([]byte("prefix,"), []byte(s))
			if string(got) != "prefix,"+want(s) {
				t.Fatalf("field %q: wrote %q, want %q", s, got, "prefix,"+want(s))
			}
		}
	}
	for _, s := range []string{strings.Repeat(`"`, 33), `12345678"`, `1234567"`, `"12345678`, "\"#\"#\"#\"#\"#\"#\"#\"#"} {
		if got := string(appendCSVField(nil, []byte(s))); got != want(s) {
			t.Errorf("field %q: wrote %q, want %q", s, got, want(s))
		}
	}
}

// FuzzCSVField: whatever a field holds, encoding/csv reads back exactly
// the field appendCSVField wrote (but for CR LF, which its reader turns
// into LF inside quotes).
func FuzzCSVField(f *testing.F) {
	for _, s := range []string{"", "plain", `{"a":"b,c"}`, " lead", "\tx", "line\nbreak", `""`, "a\r\nb", `\.`, `{"Id":"x","A":"1234567","B":""}`} {
		f.Add(s, "second")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		line := appendCSVField(nil, []byte(a))
		line = appendCSVField(append(line, ','), []byte(b))
		rec, err := csv.NewReader(bytes.NewReader(append(line, '\n'))).Read()
		norm := func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
		if err != nil || len(rec) != 2 || rec[0] != norm(a) || rec[1] != norm(b) {
			if strings.ContainsRune(a+b, '\r') && err == nil && len(rec) == 2 {
				return // a lone CR is read back as whatever encoding/csv makes of it
			}
			t.Fatalf("fields %q %q wrote %q, read back %q, %v", a, b, line, rec, err)
		}
	})
}
