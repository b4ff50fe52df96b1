package collection_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/collection"
	"github.com/custos-audit/custos/ingest"
	"github.com/custos-audit/custos/m365"
	"github.com/custos-audit/custos/m365/m365test"
	"github.com/custos-audit/custos/sealed"
	"github.com/custos-audit/custos/store"
)

const (
	entraA   = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
	entraB   = "1b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
	clientID = "11111111-2222-4333-8444-555555555555"
	secret   = "srv-s3cr3t~never.logged-0123"
)

var simStart = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// tracker records what the manager reports.
type tracker struct {
	mu         sync.Mutex
	heartbeats map[string]int
	windows    map[string]int
	records    map[string]int
	beat       chan string
}

func newTracker() *tracker {
	return &tracker{heartbeats: map[string]int{}, windows: map[string]int{}, records: map[string]int{}, beat: make(chan string, 100)}
}

func (t *tracker) Heartbeat(tenant, source, kind string, at time.Time) {
	t.mu.Lock()
	t.heartbeats[tenant+"/"+source+"/"+kind]++
	t.mu.Unlock()
	t.beat <- tenant + "/" + source
}

func (t *tracker) UpstreamWindow(tenant, source string, start, end time.Time, records int, expired bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !expired {
		t.windows[tenant+"/"+source]++
		t.records[tenant+"/"+source] += records
	}
}

// waitBeat waits for a heartbeat of each source named.
func (t *tracker) waitBeat(tb testing.TB, sources ...string) {
	tb.Helper()
	want := map[string]bool{}
	for _, s := range sources {
		want[s] = true
	}
	deadline := time.After(60 * time.Second)
	for len(want) > 0 {
		select {
		case s := <-t.beat:
			delete(want, s)
		case <-deadline:
			tb.Fatalf("no heartbeat from %v within a minute", want)
		}
	}
}

// rig is a store, its ingest service, a fake API and what a manager needs.
type rig struct {
	dir   string
	db    *store.DB
	in    *ingest.Service
	fake  *m365test.Server
	url   string
	clock *m365test.Clock
	cred  *m365test.Credential
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newRig(t testing.TB, users int, faults m365test.Faults) *rig {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "store"), store.Options{MemoryLimit: "1GB", Threads: 2, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cred, err := m365test.NewCredential("custos source")
	if err != nil {
		t.Fatal(err)
	}
	clock := m365test.NewClock(simStart.Add(3 * 24 * time.Hour))
	fake, err := m365test.New(m365test.Options{Now: clock.Now, Seed: 5, Faults: faults, TokenLifetime: 12 * time.Hour,
		Tenants: []m365test.TenantOptions{
			{ID: entraA, ClientID: clientID, ClientSecret: secret, Users: users, Days: 4, Start: simStart, Rate: 40, Subscribed: m365.DefaultContentTypes()},
			{ID: entraB, ClientID: clientID, Certificate: cred.Cert, Users: users / 2, Days: 4, Start: simStart, Rate: 40},
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return &rig{dir: dir, db: db, in: ingest.New(db, ingest.Config{}), fake: fake, url: srv.URL, clock: clock, cred: cred, logs: &syncBuffer{}}
}

// manager opens a manager on the rig's files and runs it until the test
// ends or the returned stop is called.
func (r *rig) manager(t testing.TB, tr collection.Tracker, reg prometheus.Registerer) (*collection.Manager, func()) {
	t.Helper()
	m, err := collection.Open(collection.Options{
		Path:       filepath.Join(r.dir, "sources.json"),
		StateDir:   filepath.Join(r.dir, "collectors"),
		Keys:       &sealed.KeyFile{Path: filepath.Join(r.dir, "secret.key"), Create: true},
		Ingest:     r.in,
		Tracker:    tr,
		Interval:   time.Hour, // one pass per test step: the test moves the clock
		Registerer: reg,
		Logger:     slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:        r.clock.Now,
		Adjust: func(c *m365.Config) {
			c.Rate, c.Burst, c.Concurrency = 1e6, 64, 8
			c.BaseDelay, c.MaxDelay = time.Millisecond, 10*time.Millisecond
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return m, stop
}

func (r *rig) ids(t testing.TB, tenant string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	err := r.db.Records(context.Background(), tenant, store.Query{}, func(rec *audit.Record) error {
		ids[rec.ID]++
		if rec.Source != "m365-prod" && rec.Source != "m365-cert" {
			t.Errorf("record %s has source %q", rec.ID, rec.Source)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func sameIDs(t *testing.T, what string, got map[string]int, want map[string]bool) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: the fake offers no records; the test proves nothing", what)
	}
	t.Logf("%s: %d records", what, len(want))
	for id, n := range got {
		if n != 1 || !want[id] {
			t.Errorf("%s: record %s stored %d times (expected: %v)", what, id, n, want[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d records stored, want %d", what, len(got), len(want))
	}
}

// TestSourceCollectsOnceAndResumes: a configured source pulls the fake
// API into the store, each record once despite duplicated blobs and
// records; after a restart it resumes from its checkpoints (no blob is
// fetched twice); removing it stops it and deletes its checkpoints.
func TestSourceCollectsOnceAndResumes(t *testing.T) {
	r := newRig(t, 12, m365test.Faults{DuplicateListRate: 0.1, DuplicateRecordRate: 0.05, ThrottleRate: 0.02, ServerErrorRate: 0.02})
	tr := newTracker()
	m, stop := r.manager(t, tr, prometheus.NewRegistry())
	cfg, err := m.Add("contoso", collection.Config{Name: "m365-prod", Kind: "m365",
		M365: &collection.M365Config{TenantID: entraA, ClientID: clientID, APIRoot: r.url, Authority: r.url}},
		collection.Secret{ClientSecret: secret}, "admin-token")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.M365.SecretSet || cfg.M365.Credential != "secret" || cfg.M365.PublisherID != entraA || len(cfg.M365.ContentTypes) != 5 {
		t.Fatalf("config %+v", cfg.M365)
	}
	tr.waitBeat(t, "contoso/m365-prod")
	want := r.fake.Expected(entraA, time.Time{}, r.clock.Now())
	sameIDs(t, "first pass", r.ids(t, "contoso"), want.Records)

	// Restart later: new content has appeared upstream.
	stop()
	r.clock.Advance(18 * time.Hour)
	tr2 := newTracker()
	r.manager(t, tr2, prometheus.NewRegistry())
	tr2.waitBeat(t, "contoso/m365-prod")
	want = r.fake.Expected(entraA, time.Time{}, r.clock.Now())
	sameIDs(t, "after the restart", r.ids(t, "contoso"), want.Records)
	for id, n := range r.fake.Fetches() {
		if n != 1 {
			t.Errorf("blob %s fetched %d times: the restart did not resume from the checkpoint", id, n)
		}
	}
	if tr2.windows["contoso/m365-prod"] == 0 || tr2.heartbeats["contoso/m365-prod/m365"] != 1 {
		t.Errorf("tracker heard %v windows, %v heartbeats", tr2.windows, tr2.heartbeats)
	}

	// The secret is nowhere in the clear: not in the file of sources, not
	// in the logs.
	b, err := os.ReadFile(filepath.Join(r.dir, "sources.json"))
	if err != nil || !bytes.Contains(b, []byte("m365-prod")) {
		t.Fatalf("sources file: %v", err)
	}
	if bytes.Contains(b, []byte(secret)) || strings.Contains(r.logs.String(), secret) {
		t.Fatal("the client secret is stored or logged in the clear")
	}
}

// TestRemoveStopsCollector: after Remove returns, the collector makes no
// more requests and its checkpoints are gone.
func TestRemoveStopsCollector(t *testing.T) {
	r := newRig(t, 6, m365test.Faults{})
	tr := newTracker()
	m, _ := r.manager(t, tr, prometheus.NewRegistry())
	if _, err := m.Add("contoso", collection.Config{Name: "m365-prod", Kind: "m365",
		M365: &collection.M365Config{TenantID: entraA, ClientID: clientID, APIRoot: r.url, Authority: r.url}},
		collection.Secret{ClientSecret: secret}, ""); err != nil {
		t.Fatal(err)
	}
	tr.waitBeat(t, "contoso/m365-prod")
	if _, err := m.Remove("contoso", "m365-prod"); err != nil {
		t.Fatal(err)
	}
	before := r.fake.Stats().Requests
	if _, err := os.Stat(filepath.Join(r.dir, "collectors", "contoso", "m365-prod")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("checkpoints still there: %v", err)
	}
	if _, err := m.Get("contoso", "m365-prod"); !errors.Is(err, collection.ErrNotFound) {
		t.Fatalf("get after remove: %v", err)
	}
	if _, err := m.Remove("contoso", "m365-prod"); !errors.Is(err, collection.ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if after := r.fake.Stats().Requests; after != before {
		t.Fatalf("%d requests after removal", after-before)
	}
}

// TestCertificateSourceAndSealBinding: a certificate credential works; a
// sealed credential moved onto another source does not open, and that
// source stays stopped with a logged reason instead of taking the server
// down.
func TestCertificateSourceAndSealBinding(t *testing.T) {
	r := newRig(t, 6, m365test.Faults{})
	tr := newTracker()
	m, stop := r.manager(t, tr, prometheus.NewRegistry())
	pem := string(r.cred.CertPEM) + string(r.cred.KeyPKCS8)
	cfg, err := m.Add("fabrikam", collection.Config{Name: "m365-cert", Kind: "m365",
		M365: &collection.M365Config{TenantID: entraB, ClientID: clientID, APIRoot: r.url, Authority: r.url}},
		collection.Secret{Certificate: pem}, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.M365.Credential != "certificate" || len(cfg.M365.CertificateThumbprint) != 40 || cfg.M365.CertificateExpires == nil {
		t.Fatalf("config %+v", cfg.M365)
	}
	if _, err := m.Add("contoso", collection.Config{Name: "m365-prod", Kind: "m365",
		M365: &collection.M365Config{TenantID: entraA, ClientID: clientID, APIRoot: r.url, Authority: r.url}},
		collection.Secret{ClientSecret: secret}, ""); err != nil {
		t.Fatal(err)
	}
	tr.waitBeat(t, "fabrikam/m365-cert", "contoso/m365-prod")
	sameIDs(t, "certificate source", r.ids(t, "fabrikam"), r.fake.Expected(entraB, time.Time{}, r.clock.Now()).Records)
	stop()

	path := filepath.Join(r.dir, "sources.json")
	b, _ := os.ReadFile(path)
	if bytes.Contains(b, []byte("PRIVATE KEY")) || bytes.Contains(b, r.cred.KeyPKCS8[40:80]) {
		t.Fatal("the private key is stored in the clear")
	}
	var list []map[string]any
	if err := json.Unmarshal(b, &list); err != nil || len(list) != 2 {
		t.Fatalf("sources file: %v %s", err, b)
	}
	list[0]["sealed"], list[1]["sealed"] = list[1]["sealed"], list[0]["sealed"]
	b, _ = json.Marshal(list)
	os.WriteFile(path, b, 0o600)
	before := r.fake.Stats().Tokens
	r.manager(t, newTracker(), prometheus.NewRegistry())
	time.Sleep(300 * time.Millisecond)
	if n := strings.Count(r.logs.String(), "cannot be opened"); n != 2 {
		t.Fatalf("%d sources refused to start, want 2; logs:\n%s", n, r.logs.String())
	}
	if r.fake.Stats().Tokens != before {
		t.Fatal("a source ran with a credential sealed for another")
	}
}

func TestAddRefusesBadConfigs(t *testing.T) {
	r := newRig(t, 2, m365test.Faults{})
	m, _ := r.manager(t, newTracker(), nil)
	ok := func() collection.Config {
		return collection.Config{Name: "m365-prod", Kind: "m365", M365: &collection.M365Config{TenantID: entraA, ClientID: clientID, APIRoot: r.url, Authority: r.url}}
	}
	good := collection.Secret{ClientSecret: secret}
	if _, err := m.Add("contoso", ok(), good, ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*collection.Config, *collection.Secret)
		want error
		text string
	}{
		{"duplicate", func(*collection.Config, *collection.Secret) {}, collection.ErrExists, ""},
		{"bad name", func(c *collection.Config, _ *collection.Secret) { c.Name = "../etc" }, collection.ErrInvalid, "name"},
		{"long name", func(c *collection.Config, _ *collection.Secret) { c.Name = strings.Repeat("a", 129) }, collection.ErrInvalid, "name"},
		{"kind", func(c *collection.Config, _ *collection.Secret) { c.Kind = "gws" }, collection.ErrInvalid, "kind"},
		{"no m365", func(c *collection.Config, _ *collection.Secret) { c.M365 = nil }, collection.ErrInvalid, "m365"},
		{"domain", func(c *collection.Config, _ *collection.Secret) { c.M365.TenantID = "contoso.com" }, collection.ErrInvalid, "not a GUID"},
		{"cloud", func(c *collection.Config, _ *collection.Secret) { c.M365.Cloud = "moon" }, collection.ErrInvalid, "unknown cloud"},
		{"no credential", func(_ *collection.Config, s *collection.Secret) { *s = collection.Secret{} }, collection.ErrInvalid, "no credential"},
		{"both", func(_ *collection.Config, s *collection.Secret) { s.Certificate = "x" }, collection.ErrInvalid, "not both"},
		{"bad pem", func(_ *collection.Config, s *collection.Secret) { *s = collection.Secret{Certificate: "hello"} }, collection.ErrInvalid, "CERTIFICATE"},
		{"content type", func(c *collection.Config, _ *collection.Secret) { c.M365.ContentTypes = []string{"Audit.Teams"} }, collection.ErrInvalid, "content type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, sec := ok(), good
			c.edit(&cfg, &sec)
			if c.name != "duplicate" {
				cfg.Name += "-2"
				if c.name == "bad name" || c.name == "long name" {
					c.edit(&cfg, &sec)
				}
			}
			_, err := m.Add("contoso", cfg, sec, "")
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("err = %v, want %v mentioning %q", err, c.want, c.text)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatal("the error shows the secret")
			}
		})
	}
	if n := len(m.List("contoso")); n != 1 {
		t.Fatalf("%d sources after refusals, want 1", n)
	}
	// Same name in another tenant is another source.
	if _, err := m.Add("fabrikam", ok(), good, ""); err != nil {
		t.Fatal(err)
	}
}
