package source_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/ingest"
	"github.com/custos-audit/custos/source"
	"github.com/custos-audit/custos/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// rig is a real store, ingest service, alert store and registry, all on
// one fake clock.
type rig struct {
	t      *testing.T
	dir    string
	clock  *clock
	db     *store.DB
	alerts *alert.Store
	reg    *source.Registry
	svc    *ingest.Service
	n      int
}

const tenant = "acme"

func newRig(t *testing.T, start time.Time) *rig {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "store"), store.Options{MemoryLimit: "1GB", Threads: 2, SealInterval: time.Hour, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	alerts, err := alert.Open(filepath.Join(dir, "alerts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alerts.Close() })
	r := &rig{t: t, dir: dir, clock: &clock{t: start}, db: db, alerts: alerts}
	r.open()
	return r
}

// open (re)opens the registry and an ingest service reporting to it.
func (r *rig) open() {
	r.t.Helper()
	reg, err := source.Open(source.Config{Dir: filepath.Join(r.dir, "sources"), Arrivals: r.db, Alerts: r.alerts,
		Tenants: func() []string { return []string{tenant} }, Now: r.clock.Now})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := reg.Recount(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.reg = reg
	r.svc = ingest.New(r.db, ingest.Config{Observer: reg, Now: r.clock.Now})
}

// deliver ingests n records of src dated within the hour at, numbered seq.
func (r *rig) deliver(src string, seq uint64, at time.Time, n int) {
	r.t.Helper()
	var b strings.Builder
	for range n {
		r.n++
		ts := at.Truncate(time.Hour).Add(time.Duration(r.n%3600) * time.Second)
		fmt.Fprintf(&b, `{"Id":"%s-%d","CreationTime":%q,"RecordType":1,"Operation":"Op","UserId":"u%d@acme.example","Workload":"Test"}`+"\n",
			src, r.n, ts.Format("2006-01-02T15:04:05"), r.n%50)
	}
	res, err := r.svc.Ingest(context.Background(), ingest.Batch{Tenant: tenant, Source: src, Sequence: seq, Body: strings.NewReader(b.String()), NDJSON: true})
	if err != nil || res.Accepted != n {
		r.t.Fatalf("deliver %s seq %d: %+v %v", src, seq, res, err)
	}
}

func (r *rig) alertsOf(detector string) []alert.Alert {
	return r.alerts.List(tenant, alert.Filter{Detector: detector})
}

// TestStoppedSourcesAreCaughtAndCoverageShowsIt is the proof the issue
// asks for: a source that stops, and one that heartbeats with no records,
// are both alerted within the silence threshold plus a minute; coverage
// marks the lost hours missing, then late-filled after a backfill.
func TestStoppedSourcesAreCaughtAndCoverageShowsIt(t *testing.T) {
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	r := newRig(t, start)
	// Two days of normal delivery: 10 records every 10 minutes from each,
	// heartbeats alongside. Health is checked every 10 minutes throughout.
	var seqA, seqB uint64
	for r.clock.Now().Before(start.Add(48 * time.Hour)) {
		now := r.clock.Now()
		seqA++
		seqB++
		r.deliver("fwd-a", seqA, now, 10)
		r.deliver("fwd-b", seqB, now, 10)
		for _, s := range []string{"fwd-a", "fwd-b"} {
			if err := r.reg.Report(tenant, s, source.Heartbeat{Kind: source.KindForwarder, Interval: 60}); err != nil {
				t.Fatal(err)
			}
		}
		r.reg.Check()
		r.clock.Add(10 * time.Minute)
	}
	if all := r.alerts.List(tenant, alert.Filter{}); len(all) != 0 {
		t.Fatalf("%d alerts during normal delivery, first %+v", len(all), all[0])
	}
	for _, st := range r.reg.List(tenant) {
		if st.Health != source.HealthOK || st.Expected != 60 {
			t.Fatalf("%s after two normal days: health %s (%s), expected %v/h", st.Name, st.Health, st.Reason, st.Expected)
		}
	}

	// fwd-a goes dark entirely; fwd-b keeps heartbeating but sends nothing.
	stop := r.clock.Now().Add(-10 * time.Minute) // both last delivered then
	raised := map[string]time.Time{}
	for r.clock.Now().Before(stop.Add(40 * time.Minute)) {
		if err := r.reg.Report(tenant, "fwd-b", source.Heartbeat{Kind: source.KindForwarder, Interval: 60}); err != nil {
			t.Fatal(err)
		}
		r.reg.Check()
		for _, d := range []string{source.DetectorSilent, source.DetectorNoRecords} {
			for _, a := range r.alertsOf(d) {
				if _, ok := raised[a.Entity+" "+d]; !ok {
					raised[a.Entity+" "+d] = r.clock.Now()
				}
			}
		}
		r.clock.Add(time.Minute)
	}
	limit := stop.Add(15*time.Minute + time.Minute)
	for _, want := range []string{"fwd-a " + source.DetectorSilent, "fwd-b " + source.DetectorNoRecords} {
		at, ok := raised[want]
		if !ok {
			t.Fatalf("no %s alert; raised: %v", want, raised)
		}
		if at.After(limit) || at.Before(stop.Add(15*time.Minute)) {
			t.Errorf("%s raised at %s; want within [%s, %s]", want, at, stop.Add(15*time.Minute), limit)
		}
	}
	if len(raised) != 2 {
		t.Errorf("raised %v; want exactly fwd-a silent and fwd-b no-records", raised)
	}
	if n := len(r.alertsOf(source.DetectorSilent)); n != 1 {
		t.Errorf("%d silent alerts; an ongoing silence must be one alert", n)
	}
	health := map[string]string{}
	for _, st := range r.reg.List(tenant) {
		health[st.Name] = st.Health
	}
	if health["fwd-a"] != source.HealthSilent || health["fwd-b"] != source.HealthNoRecords {
		t.Errorf("health %v", health)
	}

	// Three hours on, the hours after the stop are missing; the one
	// before is complete.
	r.clock.Set(stop.Truncate(time.Hour).Add(4*time.Hour + 20*time.Minute))
	lost := stop.Truncate(time.Hour).Add(time.Hour)
	cov := r.coverage("fwd-a", stop.Truncate(time.Hour).Add(-time.Hour), lost.Add(3*time.Hour))
	want := []string{source.Complete, source.Complete, source.Missing, source.Missing, source.Missing}
	if got := statuses(cov); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("coverage before backfill %v; want %v\n%+v", got, want, cov.Hours)
	}
	if cov.Hours[2].Expected != 60 || cov.Hours[2].Observed != 0 {
		t.Errorf("missing hour: %+v", cov.Hours[2])
	}
	r.reg.Check()
	if n := len(r.alertsOf(source.DetectorLowVolume)); n != 2 {
		t.Errorf("%d low-volume alerts (one per source, counting hours); want 2", n)
	}

	// The sender backfills the lost hours: late, but complete.
	for h := range 3 {
		seqA++
		r.deliver("fwd-a", seqA, lost.Add(time.Duration(h)*time.Hour), 60)
	}
	cov = r.coverage("fwd-a", stop.Truncate(time.Hour).Add(-time.Hour), lost.Add(3*time.Hour))
	want = []string{source.Complete, source.Complete, source.LateFilled, source.LateFilled, source.LateFilled}
	if got := statuses(cov); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("coverage after backfill %v; want %v\n%+v", got, want, cov.Hours)
	}
	if h := cov.Hours[2]; h.Observed != 60 || h.Late != 60 {
		t.Errorf("late-filled hour: %+v", h)
	}
}

func (r *rig) coverage(src string, from, to time.Time) source.Coverage {
	r.t.Helper()
	c, err := r.reg.Coverage(context.Background(), tenant, src, from, to)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

func statuses(c source.Coverage) []string {
	var s []string
	for _, h := range c.Hours {
		s = append(s, h.Status)
	}
	return s
}

// TestSequenceGaps: batches that overtake each other are no gap; one that
// never comes is, after the grace; a restart without a clean shutdown
// forgets no batch received before it.
func TestSequenceGaps(t *testing.T) {
	start := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	r := newRig(t, start)
	for _, seq := range []uint64{1, 2, 3, 5, 4} {
		r.deliver("fwd", seq, start, 5)
	}
	if err := r.reg.Save(); err != nil {
		t.Fatal(err)
	}
	r.deliver("fwd", 6, start, 5)
	r.deliver("fwd", 8, start, 5)
	// A crash: the registry is never closed nor saved; a new one opens
	// on the same directory.
	r.open()
	r.deliver("fwd", 9, start, 5)
	r.clock.Add(4 * time.Minute)
	r.reg.Check()
	if n := len(r.alertsOf(source.DetectorGap)); n != 0 {
		t.Fatalf("gap alert within the grace")
	}
	r.clock.Add(2 * time.Minute)
	r.reg.Check()
	gaps := r.alertsOf(source.DetectorGap)
	if len(gaps) != 1 || len(gaps[0].Evidence) != 1 || gaps[0].Evidence[0] != "batches 7-7" {
		t.Fatalf("gap alerts %+v; want one for batch 7 alone", gaps)
	}
	st, err := r.reg.Get(tenant, "fwd")
	if err != nil {
		t.Fatal(err)
	}
	if st.Health != source.HealthGap || st.Sequence != 9 || len(st.Gaps) != 1 || st.Gaps[0].Filled {
		t.Fatalf("status %+v", st)
	}
	r.deliver("fwd", 7, start, 5)
	st, _ = r.reg.Get(tenant, "fwd")
	if len(st.Gaps) != 1 || !st.Gaps[0].Filled || st.Health == source.HealthGap {
		t.Fatalf("after the late batch: %+v", st)
	}
	r.clock.Set(start.Add(2 * time.Hour))
	r.reg.Check()
	if n := len(r.alertsOf(source.DetectorGap)); n != 1 {
		t.Errorf("%d gap alerts; want still 1", n)
	}
	// The live count of the hour was recounted from the store on reopening
	// (35 records), then counted on (10).
	if st, _ = r.reg.Get(tenant, "fwd"); st.LastHour != 45 {
		t.Errorf("live count of the hour %d; want 45", st.LastHour)
	}
	cov := r.coverage("fwd", start, start.Add(time.Hour))
	if len(cov.Hours) != 1 || cov.Hours[0].Observed != 45 {
		t.Errorf("coverage %+v; want 45 records in the hour", cov.Hours)
	}
}

func TestExpiredUpstreamContentIsAlertedAtOnce(t *testing.T) {
	start := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	r := newRig(t, start)
	r.reg.Heartbeat(tenant, "m365-prod", "m365", start)
	r.reg.UpstreamWindow(tenant, "m365-prod", start.Add(-2*time.Hour), start.Add(-time.Hour), 120, false)
	if n := len(r.alerts.List(tenant, alert.Filter{})); n != 0 {
		t.Fatalf("%d alerts for a completed window", n)
	}
	r.reg.UpstreamWindow(tenant, "m365-prod", start.Add(-time.Hour), start, 0, true)
	got := r.alertsOf(source.DetectorExpired)
	if len(got) != 1 || got[0].Entity != "m365-prod" || !strings.Contains(got[0].Explanation, "expired") {
		t.Fatalf("expired alerts %+v", got)
	}
	st, err := r.reg.Get(tenant, "m365-prod")
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind != source.KindM365 || len(st.Windows) != 2 || !st.Windows[1].Expired {
		t.Errorf("status %+v", st)
	}
}

func TestReportValidation(t *testing.T) {
	r := newRig(t, time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC))
	for _, c := range []struct {
		name string
		hb   source.Heartbeat
	}{
		{"bad name/../x", source.Heartbeat{}},
		{"", source.Heartbeat{}},
		{"ok", source.Heartbeat{Kind: "printer"}},
	} {
		if err := r.reg.Report(tenant, c.name, c.hb); !errors.Is(err, source.ErrInvalid) {
			t.Errorf("Report(%q, %+v) = %v; want ErrInvalid", c.name, c.hb, err)
		}
	}
	if _, err := r.reg.Get(tenant, "never-seen"); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("Get of an unknown source: %v", err)
	}
	if _, err := r.reg.Coverage(context.Background(), "other", "never-seen", time.Now().Add(-time.Hour), time.Now()); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("Coverage of an unknown source: %v", err)
	}
}
