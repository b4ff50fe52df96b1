package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestQueryJobCLI: a query job created and read through the CLI returns
// exactly what the synchronous search returns, and survives a restart.
func TestQueryJobCLI(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	ingestTok, readTok := setupTenant(s, "contoso")
	file := filepath.Join(t.TempDir(), "sim.ndjson")
	runCLI(t, nil, "simulate", "--tenant", "contoso", "--users", "30", "--days", "3", "--start", "2026-03-02",
		"--seed", "9", "--scenario", "storm-0558", "--out", file, "--quiet")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s.mustCall("POST", "/api/v1/tenants/contoso/records", ingestTok, raw, 200)
	env := []string{"CUSTOS_SERVER=" + s.url, "CUSTOS_TOKEN=" + readTok}
	filters := []string{"--operation", "MailItemsAccessed", "--ip", "203.0.113.0/24", "--from", "2026-03-01", "--to", "2026-03-06"}

	out := runCLI(t, env, append([]string{"query", "create", "--tenant", "contoso", "--name", "storm", "--wait", "--format", "ndjson"}, filters...)...)
	var q struct {
		ID, Status  string
		RecordCount int64
	}
	if err := json.Unmarshal([]byte(out), &q); err != nil || q.Status != "succeeded" {
		t.Fatalf("create --wait: %q %v", out, err)
	}
	want := runCLI(t, env, append([]string{"search", "--tenant", "contoso", "--format", "ndjson"}, filters...)...)
	if strings.Count(want, "\n") == 0 || int64(strings.Count(want, "\n")) != q.RecordCount {
		t.Fatalf("search found %d records, the query %d", strings.Count(want, "\n"), q.RecordCount)
	}
	got := runCLI(t, env, "query", "records", "--tenant", "contoso", "--page-size", "7", q.ID)
	if got != want {
		t.Fatalf("query records differ from the search:\n%.300s\nwant\n%.300s", got, want)
	}
	if list := runCLI(t, env, "query", "list", "--tenant", "contoso"); !strings.Contains(list, q.ID) || !strings.Contains(list, "succeeded") {
		t.Errorf("list: %q", list)
	}

	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatal("server did not stop")
	}
	s = startServer(t, data)
	env[0] = "CUSTOS_SERVER=" + s.url
	if got := runCLI(t, env, "query", "records", "--tenant", "contoso", q.ID); got != want {
		t.Fatal("query results changed across a restart")
	}
	if out := runCLI(t, env, "query", "delete", "--tenant", "contoso", q.ID); !strings.Contains(out, "deleted query") {
		t.Errorf("delete: %q", out)
	}
	if msg := failCLI(t, env, "query", "show", "--tenant", "contoso", q.ID); !strings.Contains(msg, "404") {
		t.Errorf("show after delete: %q", msg)
	}
}
