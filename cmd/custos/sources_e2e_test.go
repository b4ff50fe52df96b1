package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-audit/custos/m365/m365test"
	"github.com/custos-audit/custos/source"
)

// TestSourcesEndToEnd: custos sources add configures a certificate-based
// Microsoft 365 source in a running server, which pulls the fake API into
// the tenant's log, each record once; after kill -9 and a restart it
// resumes from its checkpoints (no blob fetched twice); custos sources
// remove stops it. The key never appears in the logs or the data files.
func TestSourcesEndToEnd(t *testing.T) {
	cred, err := m365test.NewCredential("custos e2e")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	fake, err := m365test.New(m365test.Options{Seed: 11, Faults: m365test.Faults{DuplicateListRate: 0.1, DuplicateRecordRate: 0.05},
		Tenants: []m365test.TenantOptions{{ID: collTenant, ClientID: collClient, Certificate: cred.Cert,
			Users: 8, Days: 3, Start: now.Add(-3 * 24 * time.Hour).Truncate(24 * time.Hour), Rate: 40}}})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(fake)
	defer api.Close()

	data := t.TempDir()
	s := startServer(t, data, "--collect-interval", "1s", "--detect=false")
	_, read := setupTenant(s, "contoso")
	certFile := filepath.Join(t.TempDir(), "app.pem")
	os.WriteFile(certFile, append(append([]byte(nil), cred.CertPEM...), cred.KeyPKCS1...), 0o600)
	env := []string{"CUSTOS_SERVER=" + s.url, "CUSTOS_TOKEN=" + s.adminToken()}
	out := runCLI(t, env, "sources", "add", "m365", "--tenant", "contoso", "--name", "m365-prod", "--m365-tenant", collTenant,
		"--client-id", collClient, "--certificate", certFile, "--api-root", api.URL, "--authority", api.URL,
		"--content-types", "Audit.Exchange,Audit.AzureActiveDirectory", "--rate", "2000")
	if !strings.Contains(out, "source m365-prod added") || !strings.Contains(out, "certificate") {
		t.Fatalf("add said %q", out)
	}
	want := fake.Expected(collTenant, time.Time{}, time.Now(), "Audit.Exchange", "Audit.AzureActiveDirectory").Records
	if len(want) == 0 {
		t.Fatal("the fake offers nothing")
	}
	waitStored := func() map[string]int {
		deadline := time.Now().Add(90 * time.Second)
		for {
			got := storedIDs(s, "contoso", read)
			if len(got) >= len(want) || time.Now().After(deadline) {
				return got
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	got := waitStored()
	check := func(what string, got map[string]int) {
		t.Helper()
		for id, n := range got {
			if n != 1 || !want[id] {
				t.Errorf("%s: %s stored %d times, expected %v", what, id, n, want[id])
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d records stored, want %d", what, len(got), len(want))
		}
	}
	check("collected", got)
	cfg := runCLI(t, env, "sources", "config", "--tenant", "contoso", "m365-prod")
	if !strings.Contains(cfg, `"secretSet": true`) || strings.Contains(cfg, "PRIVATE KEY") {
		t.Fatalf("config: %s", cfg)
	}

	s.kill()
	logs := s.logs.String()
	fetched := len(fake.Fetches())
	s = startServer(t, data, "--collect-interval", "1s", "--detect=false")
	listings := fake.Stats().Listings
	deadline := time.Now().Add(60 * time.Second)
	for fake.Stats().Listings < listings+20 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for id, n := range fake.Fetches() {
		if n != 1 {
			t.Errorf("blob %s fetched %d times: the restart did not resume from the checkpoint", id, n)
		}
	}
	if len(fake.Fetches()) != fetched {
		t.Errorf("%d blobs fetched before the restart, %d after", fetched, len(fake.Fetches()))
	}
	check("after the restart", storedIDs(s, "contoso", read))

	env[0] = "CUSTOS_SERVER=" + s.url
	// The collector reports to source tracking: heartbeats after its
	// passes, and the windows it completed.
	var st source.Status
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := json.Unmarshal([]byte(runCLI(t, env, "sources", "show", "--tenant", "contoso", "m365-prod")), &st); err != nil {
			t.Fatal(err)
		}
		if !st.LastHeartbeat.IsZero() || time.Now().After(deadline) {
			break
		}
	}
	if st.Kind != source.KindM365 || st.LastHeartbeat.IsZero() || len(st.Windows) == 0 || st.Health == source.HealthSilent {
		t.Errorf("source status of the collector: %+v", st)
	}
	// Nothing expired in the fake; a restart must not report what predates
	// the first start as lost.
	for _, w := range st.Windows {
		if w.Expired {
			t.Errorf("an expired window was reported: %+v", w)
		}
	}
	out = runCLI(t, env, "sources", "remove", "--tenant", "contoso", "m365-prod")
	if !strings.Contains(out, "removed") {
		t.Fatalf("remove said %q", out)
	}
	time.Sleep(1500 * time.Millisecond)
	before := fake.Stats().Requests
	time.Sleep(1500 * time.Millisecond)
	if after := fake.Stats().Requests; after != before {
		t.Errorf("%d API requests after the source was removed", after-before)
	}

	key := bytes.TrimSpace(cred.KeyPKCS1[40:120])
	files, _ := filepath.Glob(filepath.Join(data, "*.json"))
	more, _ := filepath.Glob(filepath.Join(data, "collectors", "*.json"))
	files = append(files, more...)
	if len(more) == 0 {
		t.Error("no configured sources file under collectors/")
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("PRIVATE KEY")) || bytes.Contains(b, key) {
			t.Errorf("%s holds the private key in the clear", f)
		}
	}
	if fi, err := os.Stat(filepath.Join(data, "secret.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret.key: %v %v", fi, err)
	}
	logs += s.logs.String()
	if strings.Contains(logs, "PRIVATE KEY") || strings.Contains(logs, string(key)) {
		t.Error("the server logged the key")
	}
}
