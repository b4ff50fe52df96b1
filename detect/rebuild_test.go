package detect

import (
	"bytes"
	"context"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/simulate"
	"github.com/custos-audit/custos/store"
)

// TestRebuildLearnsWhatLiveDetectionLearns: a tenant's simulated history
// goes both through a live engine, record by record, and into a real
// store (partly sealed to Parquet, partly in the head). An engine that
// rebuilds from the store learns the same values as the live one, raises
// no alert while doing so, and afterwards treats known and new values as
// the live one does.
func TestRebuildLearnsWhatLiveDetectionLearns(t *testing.T) {
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	const days = 16
	sim, err := simulate.New(simulate.Config{Tenant: "contoso", Users: 40, Days: days, Seed: 11, Start: start})
	if err != nil {
		t.Fatal(err)
	}
	geo := testGeo(t)
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "store"), store.Options{MemoryLimit: "1GB", Threads: 2, SealInterval: time.Hour, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	openEngine := func(name string) (*Engine, *alert.Store) {
		as, err := alert.Open(filepath.Join(dir, name+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { as.Close() })
		e, err := Open(filepath.Join(dir, name), nil, as, geo, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return e, as
	}
	live, _ := openEngine("live")
	ctx := context.Background()
	var p audit.Parser
	var frame []audit.Record
	seq, n := uint64(0), 0
	flush := func() {
		if len(frame) == 0 {
			return
		}
		seq++
		live.apply(seq, frame)
		if _, err := db.Append(ctx, frame); err != nil {
			t.Fatal(err)
		}
		frame = nil
	}
	for {
		raw, ok := sim.Next()
		if !ok {
			break
		}
		r, err := p.Parse(bytes.Clone(raw))
		if err != nil {
			t.Fatal(err)
		}
		r.Tenant, r.Received, r.Source = "contoso", time.Now().UTC(), "test"
		frame = append(frame, r)
		if n++; len(frame) == 1000 {
			flush()
		}
		if n == 20000 {
			flush()
			if err := db.Seal(ctx); err != nil { // history spans Parquet and the head
				t.Fatal(err)
			}
		}
	}
	flush()
	if n < 20000 {
		t.Fatalf("the simulator made only %d records", n)
	}

	rebuilt, ras := openEngine("rebuilt")
	rep, err := rebuilt.Rebuild(ctx, db, "contoso", 30, start.AddDate(0, 0, days), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != int64(n) {
		t.Errorf("rebuild read %d records, want %d", rep.Records, n)
	}
	if got := ras.List("contoso", alert.Filter{}); len(got) != 0 {
		t.Errorf("rebuilding raised %d alerts", len(got))
	}
	lb, rb := live.tenants["contoso"], rebuilt.tenants["contoso"]
	if lb.First != rb.First || lb.Latest != rb.Latest {
		t.Errorf("clock: live %d–%d, rebuilt %d–%d", lb.First, lb.Latest, rb.First, rb.Latest)
	}
	lk, rk := slices.Sorted(maps.Keys(lb.Seen)), slices.Sorted(maps.Keys(rb.Seen))
	if !slices.Equal(lk, rk) {
		missing, extra := 0, 0
		for _, k := range lk {
			if _, ok := rb.Seen[k]; !ok {
				missing++
				if missing <= 5 {
					t.Logf("rebuilt lacks %s", k)
				}
			}
		}
		for _, k := range rk {
			if _, ok := lb.Seen[k]; !ok {
				extra++
			}
		}
		t.Fatalf("live learned %d values, rebuilt %d: %d missing, %d extra", len(lk), len(rk), missing, extra)
	}
	if len(lb.Volume) != len(rb.Volume) {
		t.Errorf("mailbox volumes: live %d, rebuilt %d", len(lb.Volume), len(rb.Volume))
	}

	// After the rebuild, a known application is not news and a new one is.
	var known audit.Record
	for _, k := range lk {
		if app, ok := strings.CutPrefix(k, "app|"); ok {
			known = mailRead("k1", app, start.AddDate(0, 0, days+1))
			break
		}
	}
	if known.ID == "" {
		t.Fatal("no application learned")
	}
	known.Tenant = "contoso"
	fresh := known
	fresh.ID, fresh.AppID = "f1", "a0a0a0a0-dead-4bad-8bad-000000000001"
	rebuilt.apply(1, []audit.Record{known, fresh})
	got := ras.List("contoso", alert.Filter{Detector: MailAppNew})
	if len(got) != 1 || got[0].Evidence[0] != "f1" {
		t.Fatalf("after the rebuild: %+v", got)
	}
}
