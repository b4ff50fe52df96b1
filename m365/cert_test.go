package m365_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-audit/custos/m365"
	"github.com/custos-audit/custos/m365/m365test"
)

// TestCollectWithCertificate: a collector holding the registered
// certificate collects everything; one holding another certificate is
// refused with Entra's reason and collects nothing.
func TestCollectWithCertificate(t *testing.T) {
	registered, err := m365test.NewCredential("custos collector")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := m365test.NewCredential("custos collector")
	if err != nil {
		t.Fatal(err)
	}
	clock := m365test.NewClock(simStart.Add(36 * time.Hour))
	fake, url := fakeServer(t, clock.Now, m365test.TenantOptions{Users: 5, Days: 1, Certificate: registered.Cert,
		Subscribed: m365.DefaultContentTypes()}, m365test.Faults{})

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "app.crt"), filepath.Join(dir, "app.key")
	os.WriteFile(certFile, registered.CertPEM, 0o600)
	os.WriteFile(keyFile, registered.KeyPKCS8, 0o600)
	cert, err := m365.LoadCertificate(certFile, keyFile) // two files
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	cfg := baseConfig(url, filepath.Join(dir, "state"), clock.Now, ev)
	cfg.Tenants[0].ClientSecret, cfg.Tenants[0].Certificate = "", cert
	sink := newMemSink()
	c, err := m365.New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Pass(context.Background(), time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	want := fake.Expected(tenantID, time.Time{}, clock.Now())
	if len(want.Records) == 0 || len(sink.ids) != len(want.Records) {
		t.Fatalf("collected %d records, want %d", len(sink.ids), len(want.Records))
	}

	both := filepath.Join(dir, "stranger.pem") // one file
	os.WriteFile(both, append(append([]byte(nil), stranger.CertPEM...), stranger.KeyPKCS1...), 0o600)
	wrong, err := m365.LoadCertificate(both, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg = baseConfig(url, filepath.Join(dir, "state2"), clock.Now, &events{})
	cfg.Tenants[0].ClientSecret, cfg.Tenants[0].Certificate = "", wrong
	sink = newMemSink()
	c, _ = m365.New(cfg, sink)
	err = c.Pass(context.Background(), time.Time{}, time.Time{})
	if err == nil || !strings.Contains(err.Error(), "AADSTS700027") || len(sink.ids) != 0 {
		t.Fatalf("err = %v with %d records, want the unregistered-certificate refusal and nothing", err, len(sink.ids))
	}
	if fake.Stats().AssertionRefused == 0 {
		t.Fatal("the fake refused no assertion")
	}
}
