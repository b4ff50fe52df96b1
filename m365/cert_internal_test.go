package m365

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/custos-audit/custos/m365/m365test"
)

// TestAssertionRefusals: the fake token endpoint checks client assertions
// as Entra does, and the collector's error names Entra's reason.
func TestAssertionRefusals(t *testing.T) {
	const (
		tid = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
		cid = "11111111-2222-4333-8444-555555555555"
	)
	good, err := m365test.NewCredential("custos test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := m365test.NewCredential("custos test") // same name, another key
	if err != nil {
		t.Fatal(err)
	}
	fake, err := m365test.New(m365test.Options{Tenants: []m365test.TenantOptions{{ID: tid, ClientID: cid, Certificate: good.Cert,
		Users: 2, Days: 1, Start: time.Now().Add(-24 * time.Hour), Rate: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	parse := func(c *m365test.Credential, key []byte) *Certificate {
		t.Helper()
		pc, err := ParseCertificate(append(append([]byte(nil), c.CertPEM...), key...))
		if err != nil {
			t.Fatal(err)
		}
		return pc
	}
	ts := func(cert *Certificate) *tokenSource {
		cfg, err := Config{Tenants: []Tenant{{ID: tid, ClientID: cid, Certificate: cert}}, PublisherIdentifier: tid,
			APIRoot: srv.URL, Authority: srv.URL, StateDir: t.TempDir()}.normalize()
		if err != nil {
			t.Fatal(err)
		}
		return newTokenSource(cfg, cfg.Tenants[0])
	}
	for _, c := range []struct {
		name   string
		adjust func(*tokenSource)
		want   string // "" for success
	}{
		{"good PKCS#1", func(*tokenSource) {}, ""},
		{"good PKCS#8", func(s *tokenSource) { s.cert = parse(good, good.KeyPKCS8) }, ""},
		{"wrong certificate", func(s *tokenSource) { s.cert = parse(other, other.KeyPKCS1) }, "AADSTS700027"},
		{"key of another certificate under the registered thumbprint", func(s *tokenSource) {
			s.cert = &Certificate{Cert: good.Cert, Key: parse(other, other.KeyPKCS1).Key}
		}, "failed signature validation"},
		{"expired assertion (our clock an hour slow)", func(s *tokenSource) { s.now = func() time.Time { return time.Now().Add(-time.Hour) } }, "AADSTS700024"},
		{"not yet valid (our clock an hour fast)", func(s *tokenSource) { s.now = func() time.Time { return time.Now().Add(time.Hour) } }, "AADSTS700024"},
		{"wrong audience", func(s *tokenSource) {
			s.audience = srv.URL + "/ffffffff-4f50-4a6b-8c7d-9e0f1a2b3c4d/oauth2/token"
		}, "AADSTS700023"},
		{"wrong issuer", func(s *tokenSource) { s.clientID = "22222222-2222-4333-8444-555555555555" }, "AADSTS700021"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := ts(parse(good, good.KeyPKCS1))
			c.adjust(s)
			tok, err := s.get(context.Background())
			if c.want == "" {
				if err != nil || tok == "" {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			te, ok := err.(*tokenError)
			if !ok || te.retryable || te.status != 401 || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v (%T), want a final 401 naming %s", err, err, c.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatal("the error shows the key")
			}
		})
	}
}

func TestParseCertificate(t *testing.T) {
	c, err := m365test.NewCredential("x")
	if err != nil {
		t.Fatal(err)
	}
	o, _ := m365test.NewCredential("y")
	join := func(b ...[]byte) []byte {
		var out []byte
		for _, x := range b {
			out = append(out, x...)
		}
		return out
	}
	for name, in := range map[string][]byte{
		"key first":        join(c.KeyPKCS8, c.CertPEM),
		"chain with other": join(o.CertPEM, c.CertPEM, c.KeyPKCS1),
	} {
		pc, err := ParseCertificate(in)
		if err != nil || pc.Cert.SerialNumber.Cmp(c.Cert.SerialNumber) != 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, in := range map[string][]byte{
		"no key":         c.CertPEM,
		"no cert":        c.KeyPKCS1,
		"mismatched":     join(c.CertPEM, o.KeyPKCS1),
		"encrypted":      join(c.CertPEM, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")),
		"not PEM at all": []byte("hello"),
		"two keys":       join(c.CertPEM, c.KeyPKCS1, c.KeyPKCS8),
	} {
		if _, err := ParseCertificate(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if pc, _ := ParseCertificate(join(c.CertPEM, c.KeyPKCS1)); strings.Contains(pc.String(), "PRIVATE") || len(pc.Thumbprint()) != 40 {
		t.Errorf("String %q, thumbprint %q", pc.String(), pc.Thumbprint())
	}
}
