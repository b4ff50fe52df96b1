package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custos-audit/custos/source"
)

// TestSourcesThroughTheCLI: numbered batches and a heartbeat reach a real
// server, which is killed with SIGKILL and restarted; the sources list
// still knows every batch (no false gap), and coverage counts the hour.
func TestSourcesThroughTheCLI(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	ingestTok, readTok := setupTenant(s, "acme")
	hour := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	post := func(srv *server, seq int) {
		t.Helper()
		var b strings.Builder
		for i := range 20 {
			fmt.Fprintf(&b, `{"Id":"b%d-%d","CreationTime":%q,"RecordType":1,"Operation":"Op","UserId":"u@acme.example","Workload":"Test"}`+"\n",
				seq, i, hour.Add(time.Duration(seq*20+i)*time.Second).Format("2006-01-02T15:04:05"))
		}
		req, _ := http.NewRequest("POST", srv.url+"/api/v1/tenants/acme/records", strings.NewReader(b.String()))
		req.Header.Set("Authorization", "Bearer "+ingestTok)
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("X-Custos-Source", "fwd-1")
		req.Header.Set("X-Custos-Sequence", fmt.Sprint(seq))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("batch %d: %v %v", seq, resp, err)
		}
		resp.Body.Close()
	}
	for seq := 1; seq <= 3; seq++ {
		post(s, seq)
	}
	s.mustCall("POST", "/api/v1/tenants/acme/sources/fwd-1/heartbeat", ingestTok, []byte(`{"kind":"forwarder","interval_s":30,"sequence":3,"acked":3}`), 204)
	s.kill()
	s = startServer(t, data)
	post(s, 4)

	env := []string{"CUSTOS_SERVER=" + s.url, "CUSTOS_TOKEN=" + readTok}
	var got []source.Status
	sc := bufio.NewScanner(strings.NewReader(runCLI(t, env, "sources", "list", "--tenant", "acme", "--format", "ndjson")))
	for sc.Scan() {
		var st source.Status
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		got = append(got, st)
	}
	if len(got) != 1 || got[0].Name != "fwd-1" || got[0].Sequence != 4 || len(got[0].Gaps) != 0 {
		t.Fatalf("sources after kill -9 and restart: %+v", got)
	}
	table := runCLI(t, env, "sources", "list", "--tenant", "acme")
	if !strings.Contains(table, "HEALTH") || !strings.Contains(table, "fwd-1") {
		t.Errorf("table:\n%s", table)
	}

	out := runCLI(t, env, "sources", "coverage", "--tenant", "acme", "--source", "fwd-1", "--from", hour.Format(time.RFC3339),
		"--to", hour.Add(time.Hour).Format(time.RFC3339), "--format", "ndjson")
	var h source.Hour
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &h); err != nil || h.Observed != 80 || !h.Hour.Equal(hour) {
		t.Fatalf("coverage %q: %+v %v", out, h, err)
	}
	if out := runCLI(t, env, "sources", "coverage", "--tenant", "acme", "--source", "fwd-1", "--from", "3h"); !strings.Contains(out, "OBSERVED") {
		t.Errorf("coverage table:\n%s", out)
	}
}
