package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-audit/custos/detect"
	"github.com/custos-audit/custos/notify"
	"github.com/custos-audit/custos/simulate"
)

// TestDetectionEndToEnd: a server learns a week of a tenant's normal
// activity, then a Storm-0558-style intrusion arrives over HTTP; an alert
// naming the attacker's application and the mailboxes it read appears. The server is then killed with SIGKILL mid-attack and
// restarted, part of the attack is sent twice, and at the end the alert
// counts every malicious record exactly once. A webhook that was down when
// the alert opened receives it, signed, after the restart.
func TestDetectionEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs and kills a server")
	}
	data := t.TempDir()
	flags := []string{"--learning-days", "7"}
	s := startServer(t, data, flags...)
	admin := []string{"CUSTOS_SERVER=" + s.url, "CUSTOS_TOKEN=" + s.adminToken()}
	runCLI(t, admin, "tenant", "create", "--id", "contoso")
	hook := newWebhook(t)
	hook.setDown(true)
	added := runCLI(t, admin, "notify", "add", "--tenant", "contoso", "--name", "soc", "--url", hook.URL+"/custos",
		"--generate-secret", "--min-severity", "high")
	hook.secret = strings.TrimSpace(added[strings.LastIndex(strings.TrimSpace(added), "\n")+1:])

	dir := t.TempDir()
	file, labels := filepath.Join(dir, "sim.ndjson"), filepath.Join(dir, "labels.ndjson")
	runCLI(t, nil, "simulate", "--tenant", "contoso", "--users", "150", "--days", "12", "--start", "2026-03-02",
		"--scenario-start", "2026-03-11", "--seed", "4", "--scenario", "storm-0558", "--out", file, "--labels", labels, "--quiet")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	first, storm := -1, 0
	for i, l := range lines {
		if strings.Contains(l, simulate.StormAppID) {
			storm++
			if first < 0 {
				first = i
			}
		}
	}
	if first < 0 {
		t.Fatal("the simulator injected no Storm-0558 records")
	}
	part := func(name string, ls []string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(ls, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mid := first + (len(lines)-first)/2
	normal, attack1, attack2 := part("a.ndjson", lines[:first]), part("b.ndjson", lines[first:mid]), part("c.ndjson", lines[mid:])
	runCLI(t, admin, "ingest", "--tenant", "contoso", "--quiet", normal)

	// The attack begins.
	sent := time.Now()
	runCLI(t, admin, "ingest", "--tenant", "contoso", "--quiet", attack1)
	a := waitForAlert(t, admin, func(a alertLine) bool { return a.Detector == detect.MailAppNew })
	// The latency is reported, not asserted (docs/benchmarks.md).
	t.Logf("Storm-0558 alert %s %.1f s after the first malicious records were sent", a.ID, time.Since(sent).Seconds())
	if a.Entity != strings.ToLower(simulate.StormAppID) || a.Severity != "high" || a.Status != "open" || len(a.Evidence) == 0 {
		t.Errorf("alert %+v", a)
	}

	// The webhook is down: the alert waits for it.
	for hook.attempts() == 0 {
		time.Sleep(100 * time.Millisecond)
	}
	if got := hook.alerts(t); len(got) != 0 {
		t.Fatalf("a down webhook received %v", got)
	}

	// Crash mid-attack, restart, resend the first half and send the rest.
	s.kill()
	s = startServer(t, data, flags...)
	admin[0] = "CUSTOS_SERVER=" + s.url
	hook.setDown(false)
	runCLI(t, admin, "ingest", "--tenant", "contoso", "--quiet", attack1)
	runCLI(t, admin, "ingest", "--tenant", "contoso", "--quiet", attack2)
	final := waitForAlert(t, admin, func(a alertLine) bool { return a.Detector == detect.MailAppNew && a.Count >= int64(storm) })
	if final.ID != a.ID || final.Count != int64(storm) {
		t.Fatalf("after the crash the alert is %s counting %d records, want %s counting the %d malicious records once",
			final.ID, final.Count, a.ID, storm)
	}
	var lbl struct{ Entity string }
	targets := map[string]bool{}
	lb, _ := os.ReadFile(labels)
	for _, l := range strings.Split(strings.TrimSpace(string(lb)), "\n") {
		json.Unmarshal([]byte(l), &lbl)
		targets[strings.ToLower(lbl.Entity)] = true
	}
	for m := range targets {
		if !strings.Contains(strings.Join(final.Related, ","), m) {
			t.Errorf("the alert does not name targeted mailbox %s: %v", m, final.Related)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !slices.Contains(hook.alerts(t), a.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("the webhook never received alert %s; it has %v", a.ID, hook.alerts(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if list := runCLI(t, admin, "notify", "list", "--tenant", "contoso"); !strings.Contains(list, "soc") || strings.Contains(list, "/custos") {
		t.Errorf("notify list:\n%s", list)
	}

	out := runCLI(t, admin, "alerts", "ack", "--tenant", "contoso", "--id", a.ID, "--note", "investigating")
	if !strings.Contains(out, "acknowledged") {
		t.Errorf("ack: %s", out)
	}
	show := runCLI(t, admin, "alerts", "show", "--tenant", "contoso", "--id", a.ID)
	if !strings.Contains(show, "never seen accessing mail in this tenant") || !strings.Contains(show, "investigating") {
		t.Errorf("show:\n%s", show)
	}
}

// webhook is a notification receiver on loopback that checks signatures.
type webhook struct {
	*httptest.Server
	secret string
	mu     sync.Mutex
	down   bool
	tries  int
	got    []notify.Message
}

func newWebhook(t *testing.T) *webhook {
	h := &webhook{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.tries++
		if h.down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if err := notify.Verify(h.secret, r.Header.Get("X-Custos-Signature"), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("webhook: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var m notify.Message
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		h.got = append(h.got, m)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *webhook) setDown(down bool) { h.mu.Lock(); h.down = down; h.mu.Unlock() }
func (h *webhook) attempts() int     { h.mu.Lock(); defer h.mu.Unlock(); return h.tries }

// alerts returns the ids of the alerts received.
func (h *webhook) alerts(t *testing.T) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []string
	for _, m := range h.got {
		ids = append(ids, m.Alert.ID)
	}
	return ids
}

// alertLine is what `custos alerts list --format ndjson` prints per alert.
type alertLine struct {
	ID, Detector, Severity, Entity, Status string
	Count                                  int64
	Evidence, Related                      []string
}

func waitForAlert(t *testing.T, env []string, ok func(alertLine) bool) alertLine {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out := runCLI(t, env, "alerts", "list", "--tenant", "contoso", "--format", "ndjson")
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var a alertLine
			if err := json.Unmarshal([]byte(l), &a); err != nil {
				t.Fatalf("alerts list printed %q: %v", l, err)
			}
			if ok(a) {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching alert after two minutes; alerts:\n%s", out)
		}
		time.Sleep(time.Second)
	}
}
