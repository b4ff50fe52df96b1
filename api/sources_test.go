package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custos-audit/custos/source"
)

func TestSourcesAPI(t *testing.T) {
	e := newEnv(t)
	ing, read := e.tokens["alpha/ingest"], e.tokens["alpha/read"]
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	for i, seq := range []string{"1", "2", "4"} {
		body := rec("s-"+seq+"a", hour.Add(time.Duration(i)*time.Minute), "") + "\n" + rec("s-"+seq+"b", hour, "")
		if r, res := e.ingest("alpha", ing, body, "X-Custos-Source", "host-1", "X-Custos-Sequence", seq); r.status != 200 || res.Accepted != 2 {
			t.Fatalf("batch %s: %d %s", seq, r.status, r.body)
		}
	}
	// Without the header, the token's name is the source.
	if r, _ := e.ingest("alpha", ing, rec("plain", hour, "")); r.status != 200 {
		t.Fatalf("plain batch: %d %s", r.status, r.body)
	}
	for _, bad := range [][]string{{"X-Custos-Source", "../etc"}, {"X-Custos-Sequence", "0"}, {"X-Custos-Sequence", "-3"}, {"X-Custos-Sequence", "x"}} {
		if r, _ := e.ingest("alpha", ing, rec("bad", hour, ""), bad...); r.status != 400 {
			t.Errorf("header %v: %d %s, want 400", bad, r.status, r.body)
		}
	}
	if r := e.do("POST", "/api/v1/tenants/alpha/sources/host-1/heartbeat", ing,
		[]byte(`{"kind":"forwarder","interval_s":30,"sequence":4,"acked":4,"records_sent":6,"future_counter":1}`)); r.status != 204 {
		t.Fatalf("heartbeat: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/v1/tenants/alpha/sources/host-1/heartbeat", ing, []byte(`{"kind":"toaster"}`)); r.status != 400 {
		t.Errorf("heartbeat of an unknown kind: %d", r.status)
	}

	var list struct{ Sources []source.Status }
	r := e.do("GET", "/api/v1/tenants/alpha/sources", read, nil)
	if r.status != 200 || json.Unmarshal(r.body, &list) != nil {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	names := []string{}
	for _, s := range list.Sources {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "alpha-fwd,alpha-ingest,host-1" {
		t.Fatalf("sources %v", names)
	}
	var st source.Status
	r = e.do("GET", "/api/v1/tenants/alpha/sources/host-1", read, nil)
	if r.status != 200 || json.Unmarshal(r.body, &st) != nil {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	if st.Kind != source.KindForwarder || st.Sequence != 4 || st.Records != 6 || len(st.Gaps) != 1 || st.Gaps[0].From != 3 || st.Gaps[0].To != 3 ||
		st.Heartbeat == nil || st.Heartbeat.RecordsSent != 6 {
		t.Fatalf("host-1: %+v", st)
	}
	if r := e.do("GET", "/api/v1/tenants/alpha/sources/nobody", read, nil); r.status != 404 {
		t.Errorf("unknown source: %d", r.status)
	}

	var cov source.Coverage
	r = e.do("GET", "/api/v1/tenants/alpha/sources/host-1/coverage?from="+hour.Add(-time.Hour).Format(time.RFC3339)+"&to="+hour.Add(2*time.Hour).Format(time.RFC3339), read, nil)
	if r.status != 200 || json.Unmarshal(r.body, &cov) != nil {
		t.Fatalf("coverage: %d %s", r.status, r.body)
	}
	if len(cov.Hours) != 3 || cov.Hours[1].Observed != 6 || cov.Hours[0].Observed != 0 || cov.Hours[1].Status != source.Complete {
		t.Fatalf("coverage %+v", cov.Hours)
	}
	r = e.do("GET", "/api/v1/tenants/alpha/sources/host-1/coverage?format=ndjson&from=3h", read, nil)
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	lines := 0
	for sc.Scan() {
		var h source.Hour
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Hour.IsZero() || h.Status == "" {
			t.Fatalf("ndjson line %q: %v", sc.Text(), err)
		}
		lines++
	}
	if r.status != 200 || lines < 3 || lines > 4 {
		t.Errorf("ndjson coverage: %d, %d lines", r.status, lines)
	}
	for _, q := range []string{"?from=yesterday", "?from=2026-01-02&to=2026-01-01", "?from=2020-01-01&to=2026-01-01"} {
		if r := e.do("GET", "/api/v1/tenants/alpha/sources/host-1/coverage"+q, read, nil); r.status != 400 {
			t.Errorf("coverage%s: %d %s, want 400", q, r.status, r.body)
		}
	}
}
