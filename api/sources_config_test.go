package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/collection"
	"github.com/custos-audit/custos/m365"
	"github.com/custos-audit/custos/m365/m365test"
	"github.com/custos-audit/custos/sealed"
	"github.com/custos-audit/custos/selfaudit"
	"github.com/custos-audit/custos/store"
)

// The source configuration routes join the isolation test: another
// tenant's token gets 404 on them, a read token 403.
func init() {
	cfgPath := func(e *env, t string) string { return "/api/v1/tenants/" + t + "/sources/m365-prod/config" }
	isolationCases["POST /api/v1/tenants/{tenant}/sources"] = isolationCase{
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/sources" },
		body: func(t string) []byte {
			return []byte(`{"name":"x","kind":"m365","m365":{"tenantId":"0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d","clientId":"11111111-2222-4333-8444-555555555555","clientSecret":"x"}}`)
		},
		need: auth.RoleAdmin,
	}
	isolationCases["GET /api/v1/tenants/{tenant}/sources/{name}/config"] = isolationCase{path: cfgPath, need: auth.RoleAdmin}
	isolationCases["DELETE /api/v1/tenants/{tenant}/sources/{name}"] = isolationCase{
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/sources/m365-prod" },
		need: auth.RoleAdmin,
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type beats chan string

func (b beats) Heartbeat(tenant, source, kind string, at time.Time)            { b <- tenant + "/" + source }
func (b beats) UpstreamWindow(string, string, time.Time, time.Time, int, bool) {}

// TestSourceConfigLifecycle: an admin adds a Microsoft 365 source, which
// starts collecting into the tenant's log; the answers, the logs and the
// self-audit never show its credential; another tenant cannot see or
// remove it; removing it stops it.
func TestSourceConfigLifecycle(t *testing.T) {
	e := newEnv(t)
	const (
		entra    = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
		clientID = "11111111-2222-4333-8444-555555555555"
		secret   = "api-s3cr3t~value.never-shown"
	)
	now := time.Now().UTC()
	fake, err := m365test.New(m365test.Options{Seed: 9, Tenants: []m365test.TenantOptions{{ID: entra, ClientID: clientID, ClientSecret: secret,
		Users: 4, Days: 2, Start: now.Add(-2 * 24 * time.Hour).Truncate(24 * time.Hour), Rate: 20, Subscribed: []string{m365.AuditExchange}}}})
	if err != nil {
		t.Fatal(err)
	}
	fs := httptest.NewServer(fake)
	defer fs.Close()

	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	hb := make(beats, 10)
	mgr, err := collection.Open(collection.Options{
		Path: filepath.Join(dir, "sources.json"), StateDir: filepath.Join(dir, "collectors"),
		Keys: &sealed.KeyFile{Path: filepath.Join(dir, "secret.key"), Create: true}, Ingest: e.api.cfg.Ingest,
		Tracker: hb, Interval: time.Hour, Logger: log,
		Adjust: func(c *m365.Config) { c.Rate, c.Window = 1e4, 24*time.Hour },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { mgr.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	e.api.cfg.Collectors = mgr
	e.api.log = log

	base, admin := "/api/v1/tenants/alpha/sources", e.tokens["alpha/admin"]
	body := `{"name":"m365-prod","kind":"m365","m365":{"tenantId":"` + entra + `","clientId":"` + clientID + `","clientSecret":"` + secret +
		`","apiRoot":"` + fs.URL + `","authority":"` + fs.URL + `","contentTypes":["Audit.Exchange"]}}`
	for _, bad := range []string{
		`{"name":"bad name!","kind":"m365","m365":{"tenantId":"` + entra + `","clientId":"` + clientID + `","clientSecret":"` + secret + `"}}`,
		`{"name":"x","kind":"m365","m365":{"tenantId":"contoso.com","clientId":"` + clientID + `","clientSecret":"` + secret + `"}}`,
		`{"name":"x","kind":"m365","m365":{"tenantId":"` + entra + `","clientId":"` + clientID + `","certificate":"not pem"}}`,
		`{"name":"x","kind":"syslog"}`,
		`{"name":"x","kind":"m365","m365":{"password":"` + secret + `"}}`,
	} {
		r := e.do("POST", base, admin, []byte(bad))
		if r.status != http.StatusBadRequest || bytes.Contains(r.body, []byte(secret)) {
			t.Errorf("%s: %d %s, want 400 without the secret", bad, r.status, r.body)
		}
	}
	r := e.do("POST", base, admin, []byte(body))
	if r.status != http.StatusCreated {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	var cfg collection.Config
	json.Unmarshal(r.body, &cfg)
	if bytes.Contains(r.body, []byte(secret)) || !cfg.M365.SecretSet || cfg.Tenant != "alpha" || cfg.Name != "m365-prod" || cfg.CreatedBy != "alpha-admin" {
		t.Fatalf("add answered %s", r.body)
	}
	if r := e.do("POST", base, admin, []byte(body)); r.status != http.StatusConflict {
		t.Errorf("add again: %d %s, want 409", r.status, r.body)
	}
	r = e.do("GET", base+"/m365-prod/config", admin, nil)
	if r.status != 200 || bytes.Contains(r.body, []byte(secret)) || !bytes.Contains(r.body, []byte(`"secretSet":true`)) {
		t.Fatalf("get config: %d %s", r.status, r.body)
	}
	// Another tenant's admin, even naming the same source: 404, nothing changed.
	for _, m := range []string{"GET /api/v1/tenants/alpha/sources/m365-prod/config", "DELETE /api/v1/tenants/alpha/sources/m365-prod"} {
		method, path, _ := strings.Cut(m, " ")
		if r := e.do(method, path, e.tokens["beta/admin"], nil); r.status != http.StatusNotFound {
			t.Errorf("%s with beta's admin: %d %s", m, r.status, r.body)
		}
	}
	if r := e.do("GET", "/api/v1/tenants/beta/sources/m365-prod/config", e.tokens["beta/admin"], nil); r.status != http.StatusNotFound {
		t.Errorf("beta sees a source of its own name: %d %s", r.status, r.body)
	}
	if r := e.do("GET", base+"/m365-prod/config", e.tokens["alpha/read"], nil); r.status != http.StatusForbidden {
		t.Errorf("config with a read token: %d", r.status)
	}

	select {
	case <-hb:
	case <-time.After(time.Minute):
		t.Fatal("the source made no pass within a minute")
	}
	want := fake.Expected(entra, time.Time{}, time.Now(), m365.AuditExchange).Records
	got := map[string]int{}
	var audits [][]byte
	err = e.db.Records(context.Background(), "alpha", store.Query{}, func(rec *audit.Record) error {
		if rec.Workload == selfaudit.Workload {
			if rec.Operation == selfaudit.SourceChanged {
				audits = append(audits, append([]byte(nil), rec.Raw...))
			}
			return nil
		}
		got[rec.ID]++
		if rec.Source != "m365-prod" {
			t.Errorf("record %s from source %q", rec.ID, rec.Source)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("%d records collected, want %d", len(got), len(want))
	}
	if r := e.do("DELETE", base+"/m365-prod", admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := e.do("GET", base+"/m365-prod/config", admin, nil); r.status != http.StatusNotFound {
		t.Fatalf("config after delete: %d", r.status)
	}
	if r := e.do("DELETE", base+"/m365-prod", admin, nil); r.status != http.StatusNotFound {
		t.Fatalf("delete again: %d", r.status)
	}
	e.db.Records(context.Background(), "alpha", store.Query{}, func(rec *audit.Record) error {
		if rec.Operation == selfaudit.SourceChanged && len(audits) < 2 {
			audits = append(audits, append([]byte(nil), rec.Raw...))
		}
		return nil
	})
	if len(audits) < 2 || !bytes.Contains(audits[0], []byte("m365-prod")) {
		t.Fatalf("self-audit of the changes: %s", audits)
	}
	for _, a := range audits {
		if bytes.Contains(a, []byte(secret)) {
			t.Fatalf("self-audit record shows the secret: %s", a)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatal("the logs show the secret")
	}
	if !strings.Contains(logs.String(), "source added") {
		t.Fatalf("nothing logged: %s", logs.String())
	}
}
