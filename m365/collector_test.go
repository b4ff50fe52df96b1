package m365_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-audit/custos/m365"
	"github.com/custos-audit/custos/m365/m365test"
)

const (
	tenantID  = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
	clientID  = "11111111-2222-4333-8444-555555555555"
	secret    = "s3cr3t-never-logged~value"
	publisher = "99999999-8888-4777-8666-555555555555"
)

// memSink keeps each record once by Id and counts what came twice.
type memSink struct {
	mu     sync.Mutex
	ids    map[string]bool
	dups   int
	writes int
	failAt int // if > 0, the failAt-th Write fails
}

func newMemSink() *memSink { return &memSink{ids: map[string]bool{}} }

func (s *memSink) Write(ctx context.Context, tenant string, recs []json.RawMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.failAt > 0 && s.writes == s.failAt {
		return errors.New("sink refused (test)")
	}
	for _, r := range recs {
		var v struct{ Id string }
		if err := json.Unmarshal(r, &v); err != nil || v.Id == "" {
			return fmt.Errorf("bad record %s: %v", r, err)
		}
		if s.ids[v.Id] {
			s.dups++
		}
		s.ids[v.Id] = true
	}
	return nil
}

// events records the collector's events.
type events struct {
	mu  sync.Mutex
	all []m365.Event
}

func (e *events) add(ev m365.Event) { e.mu.Lock(); e.all = append(e.all, ev); e.mu.Unlock() }

func (e *events) of(k m365.EventKind) []m365.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []m365.Event
	for _, ev := range e.all {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}

var simStart = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func fakeServer(t testing.TB, clock func() time.Time, to m365test.TenantOptions, f m365test.Faults) (*m365test.Server, string) {
	t.Helper()
	to.ID, to.ClientID, to.ClientSecret = tenantID, clientID, secret
	if to.Start.IsZero() {
		to.Start = simStart
	}
	fake, err := m365test.New(m365test.Options{Tenants: []m365test.TenantOptions{to}, Now: clock, Seed: 7, Faults: f,
		// Longer than a pass step, so that revoked tokens are still cached.
		TokenLifetime: 12 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)
	return fake, ts.URL
}

func baseConfig(url, state string, clock func() time.Time, ev *events) m365.Config {
	return m365.Config{
		Tenants:             []m365.Tenant{{ID: tenantID, ClientID: clientID, ClientSecret: secret}},
		PublisherIdentifier: publisher,
		APIRoot:             url,
		Authority:           url,
		StateDir:            state,
		Now:                 clock,
		Rate:                5000, // the loopback fake has no quota to protect
		BaseDelay:           time.Millisecond,
		MaxDelay:            20 * time.Millisecond,
		OnEvent:             ev.add,
	}
}

// TestCollectWeekWithFaults runs a collector over nine simulated days of
// eight days of activity, a pass every three hours, against an API that
// throttles, fails, lists blobs twice and late, duplicates records, expires
// some content and revokes tokens; the collector is restarted midway. Every
// retrievable record must reach the sink, and expired blobs must be reported.
func TestCollectWeekWithFaults(t *testing.T) {
	clock := m365test.NewClock(simStart.Add(24 * time.Hour))
	faults := m365test.Faults{
		ThrottleRate: 0.05, ServerErrorRate: 0.05,
		DuplicateListRate: 0.1, DuplicateRecordRate: 0.02,
		LateRate: 0.1, LateBy: 3 * time.Hour, ExpiredRate: 0.02,
	}
	fake, url := fakeServer(t, clock.Now, m365test.TenantOptions{Users: 15, Days: 8, Rate: 60,
		Subscribed: []string{m365.AuditExchange, m365.AuditSharePoint}}, faults)
	sink := newMemSink()
	ev := &events{}
	state := t.TempDir()
	cfg := baseConfig(url, state, clock.Now, ev)
	newCollector := func() *m365.Collector {
		c, err := m365.New(cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := newCollector()
	ctx := context.Background()
	failedPasses := 0
	var stats m365.Stats
	begin := time.Now()
	end := simStart.Add(9 * 24 * time.Hour)
	for step := 0; clock.Now().Before(end); step++ {
		if err := c.Pass(ctx, time.Time{}, time.Time{}); err != nil {
			failedPasses++
			t.Logf("pass at %s: %v", clock.Now().Format(time.RFC3339), err)
		}
		switch step {
		case 10:
			fake.RevokeTokens()
		case 20:
			// A restart: a new collector resumes from the checkpoints.
			s := c.Stats()
			stats.Records += s.Records
			stats.Retries += s.Retries
			stats.SkippedBlobs += s.SkippedBlobs
			c = newCollector()
		}
		clock.Advance(3 * time.Hour)
	}
	// A last pass once late blobs have all become visible.
	clock.Advance(-3 * time.Hour)
	fake.SetFaults(m365test.Faults{})
	if err := c.Pass(ctx, time.Time{}, time.Time{}); err != nil {
		t.Fatalf("final pass: %v", err)
	}
	s := c.Stats()
	stats.Records += s.Records
	stats.Retries += s.Retries
	stats.SkippedBlobs += s.SkippedBlobs

	want := fake.Expected(tenantID, time.Time{}, clock.Now().Add(-time.Hour))
	fs := fake.Stats()
	t.Logf("%d records (%d duplicates dropped at the sink), %d blobs expired, %d retries, %d blobs skipped on re-listing, %d failed passes, in %v; server: %+v",
		len(sink.ids), sink.dups, len(want.Expired), stats.Retries, stats.SkippedBlobs, failedPasses, time.Since(begin).Round(time.Millisecond), fs)
	missing, extra := 0, 0
	for id := range want.Records {
		if !sink.ids[id] {
			missing++
		}
	}
	for id := range sink.ids {
		if !want.Records[id] {
			extra++
		}
	}
	// Records created in the last hour may or may not be listed yet; the
	// collector may have them, but must not lack any older one.
	if missing > 0 {
		t.Errorf("%d of %d retrievable records never reached the sink", missing, len(want.Records))
	}
	tail := fake.Expected(tenantID, clock.Now().Add(-time.Hour), clock.Now().Add(time.Hour))
	for id := range sink.ids {
		if !want.Records[id] && !tail.Records[id] {
			t.Errorf("record %s in the sink is not one the server had", id)
			break
		}
	}
	_ = extra
	if len(want.Records) < 5000 {
		t.Fatalf("only %d records simulated; the test is too small to mean much", len(want.Records))
	}
	if fs.Throttled == 0 || fs.ServerErrors == 0 || fs.TokenRefused == 0 || stats.Retries == 0 {
		t.Errorf("faults were not exercised: %+v, retries %d", fs, stats.Retries)
	}
	if fs.MissingPublisher != 0 {
		t.Errorf("%d requests without PublisherIdentifier", fs.MissingPublisher)
	}
	if fs.BadWindows != 0 {
		t.Errorf("%d content listings refused for their window", fs.BadWindows)
	}
	if fs.Started != 3 {
		t.Errorf("started %d subscriptions, want the 3 missing ones", fs.Started)
	}
	var gaps []string
	for _, g := range ev.of(m365.EventGap) {
		if g.ContentID == "" {
			t.Errorf("unexpected retention gap %s..%s for %s", g.Start, g.End, g.ContentType)
			continue
		}
		gaps = append(gaps, g.ContentID)
	}
	slices.Sort(gaps)
	gaps = slices.Compact(gaps)
	wantGaps := slices.Clone(want.Expired)
	slices.Sort(wantGaps)
	if len(wantGaps) == 0 || !slices.Equal(gaps, wantGaps) {
		t.Errorf("gaps reported for %d blobs, want the %d expired ones", len(gaps), len(wantGaps))
	}
	if sink.dups == 0 {
		t.Errorf("no duplicate record reached the sink: the duplicate faults were not exercised")
	}
	refetched := 0
	for _, n := range fake.Fetches() {
		if n > 1 {
			refetched++
		}
	}
	// Blobs completed within the overlap are remembered in the checkpoint;
	// only a failed window's blobs are fetched again.
	if failedPasses == 0 && refetched > 0 {
		t.Errorf("%d blobs fetched more than once although no pass failed", refetched)
	}
	t.Logf("%d blobs fetched more than once", refetched)
}

// TestCollectThrottleHonoursRetryAfter: one request at a time, so nothing is
// in flight when a 429 arrives; no request may come back before the
// Retry-After has passed.
func TestCollectThrottleHonoursRetryAfter(t *testing.T) {
	clock := m365test.NewClock(simStart.Add(36 * time.Hour))
	fake, url := fakeServer(t, clock.Now, m365test.TenantOptions{Users: 5, Days: 1, Rate: 100,
		Subscribed: []string{m365.AuditExchange}}, m365test.Faults{ThrottleRate: 0.05, RetryAfter: 1})
	sink := newMemSink()
	ev := &events{}
	cfg := baseConfig(url, t.TempDir(), clock.Now, ev)
	cfg.ContentTypes = []string{m365.AuditExchange}
	cfg.Concurrency = 1
	c, err := m365.New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := c.Pass(context.Background(), time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	fs := fake.Stats()
	t.Logf("%d throttled, %d retries, %v", fs.Throttled, c.Stats().Retries, time.Since(begin).Round(time.Millisecond))
	if fs.Throttled == 0 || c.Stats().Retries < int64(fs.Throttled) {
		t.Errorf("throttled %d times, retried %d", fs.Throttled, c.Stats().Retries)
	}
	if fs.EarlyRetries != 0 {
		t.Errorf("%d requests arrived before Retry-After had passed", fs.EarlyRetries)
	}
	want := fake.Expected(tenantID, time.Time{}, clock.Now(), m365.AuditExchange)
	if len(sink.ids) != len(want.Records) {
		t.Errorf("%d records, want %d", len(sink.ids), len(want.Records))
	}
}

// TestCollectSubscriptionStates: a missing subscription is started; a
// disabled one fails its content type with a clear error while the others
// are collected.
func TestCollectSubscriptionStates(t *testing.T) {
	clock := m365test.NewClock(simStart.Add(36 * time.Hour))
	fake, url := fakeServer(t, clock.Now, m365test.TenantOptions{Users: 5, Days: 1, Rate: 100,
		Subscribed: []string{m365.AuditAzureActiveDirectory}, Disabled: []string{m365.AuditSharePoint}}, m365test.Faults{})
	sink := newMemSink()
	ev := &events{}
	cfg := baseConfig(url, t.TempDir(), clock.Now, ev)
	cfg.ContentTypes = []string{m365.AuditAzureActiveDirectory, m365.AuditExchange, m365.AuditSharePoint}
	c, err := m365.New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Pass(context.Background(), time.Time{}, time.Time{})
	if err == nil || !strings.Contains(err.Error(), m365.AuditSharePoint) || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("err = %v, want the SharePoint subscription reported disabled", err)
	}
	if strings.Contains(err.Error(), m365.AuditExchange) {
		t.Errorf("err = %v: Exchange should have been started and collected", err)
	}
	if started := ev.of(m365.EventSubscriptionStarted); len(started) != 1 || started[0].ContentType != m365.AuditExchange {
		t.Errorf("subscriptions started: %+v, want Audit.Exchange", started)
	}
	if failed := ev.of(m365.EventTypeFailed); len(failed) != 1 || failed[0].ContentType != m365.AuditSharePoint {
		t.Errorf("failed types: %+v", failed)
	}
	want := fake.Expected(tenantID, time.Time{}, clock.Now(), m365.AuditAzureActiveDirectory, m365.AuditExchange)
	if len(sink.ids) != len(want.Records) || len(want.Records) == 0 {
		t.Errorf("%d records, want %d", len(sink.ids), len(want.Records))
	}
}

// TestCollectSinkFailureRepeatsWindow: a sink that refuses a write stops
// the window before its checkpoint; the next collector repeats it.
func TestCollectSinkFailureRepeatsWindow(t *testing.T) {
	clock := m365test.NewClock(simStart.Add(36 * time.Hour))
	fake, url := fakeServer(t, clock.Now, m365test.TenantOptions{Users: 5, Days: 1, Rate: 100,
		Subscribed: []string{m365.AuditExchange}}, m365test.Faults{})
	state := t.TempDir()
	ev := &events{}
	cfg := baseConfig(url, state, clock.Now, ev)
	cfg.ContentTypes = []string{m365.AuditExchange}
	sink := newMemSink()
	sink.failAt = 40
	c, _ := m365.New(cfg, sink)
	if err := c.Pass(context.Background(), time.Time{}, time.Time{}); err == nil || !strings.Contains(err.Error(), "sink refused") {
		t.Fatalf("err = %v, want the sink's refusal", err)
	}
	sink.failAt = 0
	c, _ = m365.New(cfg, sink)
	if err := c.Pass(context.Background(), time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	want := fake.Expected(tenantID, time.Time{}, clock.Now(), m365.AuditExchange)
	if len(sink.ids) != len(want.Records) {
		t.Errorf("%d records, want %d", len(sink.ids), len(want.Records))
	}
}

// TestCollectOutageBeyondRetention: a collector down for more than 7 days
// reports the span it can no longer get.
func TestCollectOutageBeyondRetention(t *testing.T) {
	clock := m365test.NewClock(simStart.Add(24 * time.Hour))
	_, url := fakeServer(t, clock.Now, m365test.TenantOptions{Users: 3, Days: 10, Rate: 50,
		Subscribed: []string{m365.AuditExchange}}, m365test.Faults{})
	ev := &events{}
	cfg := baseConfig(url, t.TempDir(), clock.Now, ev)
	cfg.ContentTypes = []string{m365.AuditExchange}
	c, _ := m365.New(cfg, newMemSink())
	if err := c.Pass(context.Background(), time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if g := ev.of(m365.EventGap); len(g) != 0 {
		t.Fatalf("first pass reported gaps: %+v", g)
	}
	// A pass soon after (a restart): what predates the first pass's start
	// was never wanted, so nothing is lost.
	clock.Advance(time.Minute)
	if err := c.Pass(context.Background(), time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if g := ev.of(m365.EventGap); len(g) != 0 {
		t.Fatalf("a pass a minute after the first reported gaps: %+v", g)
	}
	stopped := clock.Now()
	clock.Advance(9 * 24 * time.Hour)
	if err := c.Pass(context.Background(), time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	g := ev.of(m365.EventGap)
	if len(g) != 1 || !g[0].Start.Equal(stopped) || g[0].End.Before(stopped.Add(2*24*time.Hour)) {
		t.Fatalf("gaps %+v, want one from %s to about 2 days later", g, stopped)
	}
}

// TestCollectBadCredentials: a wrong secret fails with the authority's
// reason, and the secret appears in no error.
func TestCollectBadCredentials(t *testing.T) {
	clock := m365test.NewClock(simStart.Add(36 * time.Hour))
	_, url := fakeServer(t, clock.Now, m365test.TenantOptions{Users: 3, Days: 1}, m365test.Faults{})
	ev := &events{}
	cfg := baseConfig(url, t.TempDir(), clock.Now, ev)
	cfg.Tenants[0].ClientSecret = "wrong-" + secret
	c, _ := m365.New(cfg, newMemSink())
	err := c.Pass(context.Background(), time.Time{}, time.Time{})
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("err = %v, want the invalid-secret refusal", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error reveals the secret: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	ok := m365.Config{
		Tenants:             []m365.Tenant{{ID: tenantID, ClientID: clientID, ClientSecret: secret}},
		PublisherIdentifier: publisher, StateDir: t.TempDir(),
	}
	for _, tc := range []struct {
		name string
		edit func(*m365.Config)
		want string
	}{
		{"ok", func(*m365.Config) {}, ""},
		{"no tenants", func(c *m365.Config) { c.Tenants = nil }, "no tenant"},
		{"domain as tenant", func(c *m365.Config) { c.Tenants[0].ID = "contoso.onmicrosoft.com" }, "not a GUID"},
		{"no secret", func(c *m365.Config) { c.Tenants[0].ClientSecret = "" }, "no client secret and no certificate"},
		{"secret and certificate", func(c *m365.Config) { c.Tenants[0].Certificate = &m365.Certificate{} }, "both a client secret and a certificate"},
		{"publisher", func(c *m365.Config) { c.PublisherIdentifier = "acme" }, "publisher identifier"},
		{"content type", func(c *m365.Config) { c.ContentTypes = []string{"Audit.Teams"} }, "unknown content type"},
		{"window", func(c *m365.Config) { c.Window = 25 * time.Hour }, "window"},
		{"api root", func(c *m365.Config) { c.APIRoot = "manage.office.com" }, "api root"},
		{"state", func(c *m365.Config) { c.StateDir = "" }, "state directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			cfg.Tenants = slices.Clone(ok.Tenants)
			tc.edit(&cfg)
			_, err := m365.New(cfg, newMemSink())
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error reveals the secret: %v", err)
			}
		})
	}
}

func TestCloudPresets(t *testing.T) {
	for name, want := range map[string][2]string{
		"commercial": {"https://manage.office.com", "https://login.microsoftonline.com"},
		"GCC":        {"https://manage-gcc.office.com", "https://login.microsoftonline.com"},
		"gcchigh":    {"https://manage.office365.us", "https://login.microsoftonline.us"},
		"dod":        {"https://manage.protection.apps.mil", "https://login.microsoftonline.us"},
	} {
		c, err := m365.LookupCloud(name)
		if err != nil || c.APIRoot != want[0] || c.Authority != want[1] {
			t.Errorf("%s: %+v %v", name, c, err)
		}
	}
	if _, err := m365.LookupCloud("moon"); err == nil {
		t.Error("unknown cloud accepted")
	}
	tn := m365.Tenant{ID: tenantID, ClientID: clientID, ClientSecret: secret}
	if s := fmt.Sprintf("%v %+v %#v %s", tn, tn, tn, tn); strings.Contains(s, secret) {
		t.Errorf("formatting a Tenant reveals the secret: %s", s)
	}
}
