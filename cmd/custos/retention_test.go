package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-audit/custos/retention"
)

// TestRetentionCLI drives retention end to end through the CLI against a
// real server: policies, a read token refused, a legal hold on one user, a
// dry run, enforcement, the report, and the self-audit trail of it all.
func TestRetentionCLI(t *testing.T) {
	s := startServer(t, t.TempDir(), "--seal-interval", "1s")
	admin := []string{"CUSTOS_SERVER=" + s.url, "CUSTOS_TOKEN=" + s.adminToken()}
	ingestTok, readTok := setupTenant(s, "contoso")
	read := []string{"CUSTOS_SERVER=" + s.url, "CUSTOS_TOKEN=" + readTok}

	now := time.Now().UTC()
	day := 24 * time.Hour
	var body strings.Builder
	for _, r := range []struct {
		id   string
		age  time.Duration
		typ  int
		user string
	}{
		{"old-mail", 400 * day, 50, "ann@contoso.example"},    // default 180 days: gone
		{"recent-mail", 100 * day, 50, "ann@contoso.example"}, // kept
		{"old-item", 40 * day, 2, "ann@contoso.example"},      // items policy, one month: gone
		{"new-item", 20 * day, 2, "ann@contoso.example"},      // kept
		{"held-mail", 400 * day, 50, "held@contoso.example"},  // legal hold: kept
		{"held-item", 40 * day, 2, "HELD@contoso.example"},    // legal hold: kept
		{"other-mail", 200 * day, 50, "bob@contoso.example"},  // default: gone
	} {
		fmt.Fprintf(&body, `{"Id":%q,"CreationTime":%q,"RecordType":%d,"Operation":"Op","UserId":%q,"Workload":"Exchange"}`+"\n",
			r.id, now.Add(-r.age).Format("2006-01-02T15:04:05"), r.typ, r.user)
	}
	s.mustCall("POST", "/api/v1/tenants/contoso/records", ingestTok, []byte(body.String()), 200)

	out := runCLI(t, admin, "retention", "create", "--tenant", "contoso", "--name", "items", "--record-type", "ExchangeItem",
		"--duration", "1mo", "--priority", "5", "--description", "Exchange items a month")
	if !strings.Contains(out, `created policy "items": priority 5, keep OneMonth; record types ExchangeItem`) {
		t.Errorf("create: %q", out)
	}
	if out := runCLI(t, read, "retention", "list", "--tenant", "contoso"); !strings.Contains(out, "items") || !strings.Contains(out, "kept 180 days") {
		t.Errorf("list: %q", out)
	}
	if msg := failCLI(t, read, "retention", "update", "--tenant", "contoso", "--name", "items", "--duration", "10y"); !strings.Contains(msg, "403") {
		t.Errorf("read token updating a policy: %q", msg)
	}
	if msg := failCLI(t, admin, "retention", "create", "--tenant", "contoso", "--name", "x", "--duration", "180d", "--priority", "9", "--user", "u"); !strings.Contains(msg, "retention duration") {
		t.Errorf("bad duration: %q", msg)
	}
	if out := runCLI(t, admin, "retention", "hold", "--tenant", "contoso", "--user", "held@contoso.example", "--reason", "case 7"); !strings.Contains(out, "legal hold on the records of held@contoso.example (case 7)") {
		t.Errorf("hold: %q", out)
	}

	// Only sealed records are enforced on; the server seals every second.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out = runCLI(t, read, "retention", "enforce", "--tenant", "contoso", "--dry-run")
		if strings.Contains(out, "would remove 3 records") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dry run never found the 3 expired records: %q", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !strings.Contains(out, "(default)") || !strings.Contains(out, "items") || !strings.Contains(out, "kept by legal hold: held@contoso.example") {
		t.Errorf("dry run report: %q", out)
	}
	if msg := failCLI(t, read, "retention", "enforce", "--tenant", "contoso"); !strings.Contains(msg, "403") {
		t.Errorf("read token enforcing: %q", msg)
	}
	if out := runCLI(t, admin, "retention", "enforce", "--tenant", "contoso"); !strings.Contains(out, "removed 3 records") {
		t.Errorf("enforce: %q", out)
	}
	var rep retention.Report
	if err := json.Unmarshal([]byte(runCLI(t, read, "retention", "report", "--tenant", "contoso", "--format", "json")), &rep); err != nil || rep.Records != 3 || rep.DryRun {
		t.Errorf("report: %+v, %v", rep, err)
	}
	var ids []string
	for id := range storedIDs(s, "contoso", readTok) {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if want := []string{"held-item", "held-mail", "new-item", "recent-mail"}; !slices.Equal(ids, want) {
		t.Errorf("after enforcement: %v, want %v", ids, want)
	}

	// All of it is in the tenant's own audit log.
	trail := runCLI(t, read, "search", "--tenant", "contoso", "--from", "1h", "--workload", "Custos", "--format", "ndjson")
	for _, op := range []string{"RetentionPolicyCreated", "LegalHoldChanged", "RetentionEnforced", "AccessDenied", "TokenCreated"} {
		if !strings.Contains(trail, `"Operation":"`+op+`"`) {
			t.Errorf("no %s in the audit trail:\n%s", op, trail)
		}
	}
}

// failCLI runs custos expecting it to fail and returns its stderr.
func failCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "CUSTOS_TEST_MAIN=1"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("custos %s succeeded; want a failure", strings.Join(args, " "))
	}
	return stderr.String()
}
