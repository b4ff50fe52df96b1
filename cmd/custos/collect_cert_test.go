package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-audit/custos/m365/m365test"
)

// TestCollectM365Certificate: --certificate (one file, or with
// --certificate-key) authenticates with a client assertion; an unregistered
// certificate fails with exit status 1 and Entra's reason.
func TestCollectM365Certificate(t *testing.T) {
	reg, err := m365test.NewCredential("custos cli")
	if err != nil {
		t.Fatal(err)
	}
	other, err := m365test.NewCredential("custos cli")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	fake, err := m365test.New(m365test.Options{
		Tenants: []m365test.TenantOptions{{ID: collTenant, ClientID: collClient, Certificate: reg.Cert,
			Users: 3, Days: 2, Start: now.Add(-2 * 24 * time.Hour).Truncate(24 * time.Hour), Rate: 20,
			Subscribed: []string{"Audit.Exchange"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(fake)
	defer ts.Close()
	dir := t.TempDir()
	write := func(name string, b ...[]byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Join(b, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(out string, cred ...string) (int, string) {
		args := append([]string{"collect", "m365", "--tenant-id", collTenant, "--client-id", collClient,
			"--api-root", ts.URL, "--authority", ts.URL, "--content-types", "Audit.Exchange",
			"--from", now.Add(-36 * time.Hour).Format(time.RFC3339), "--out", filepath.Join(dir, out), "--window", "12h", "--rate", "400"}, cred...)
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "CUSTOS_TEST_MAIN=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Run()
		return cmd.ProcessState.ExitCode(), stderr.String()
	}
	if code, errs := run("a.ndjson", "--certificate", write("app.pem", reg.KeyPKCS8, reg.CertPEM)); code != 0 {
		t.Fatalf("one file: exit %d\n%s", code, errs)
	}
	if code, errs := run("b.ndjson", "--certificate", write("app.crt", reg.CertPEM), "--certificate-key", write("app.key", reg.KeyPKCS1)); code != 0 {
		t.Fatalf("two files: exit %d\n%s", code, errs)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "a.ndjson"))
	if bytes.Count(a, []byte("\n")) == 0 {
		t.Fatal("nothing collected")
	}
	code, errs := run("c.ndjson", "--certificate", write("other.pem", other.CertPEM, other.KeyPKCS1))
	if code != 1 || !strings.Contains(errs, "AADSTS700027") {
		t.Fatalf("unregistered certificate: exit %d\n%s", code, errs)
	}
	if strings.Contains(errs, "PRIVATE KEY") {
		t.Fatal("stderr shows the key")
	}
	code, errs = run("d.ndjson", "--certificate", write("app2.pem", reg.CertPEM, reg.KeyPKCS1), "--client-secret-file", write("s", []byte("x")))
	if code != 2 {
		t.Fatalf("certificate and secret: exit %d, want 2\n%s", code, errs)
	}
}
