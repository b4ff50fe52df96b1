package store

import (
	"bytes"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/simulate"
)

// simRecords parses the first n records the simulator makes for tenant
// acme and a number of users (fewer users: more days).
func simRecords(tb testing.TB, n, users int) []audit.Record {
	tb.Helper()
	out := simulated(tb, simulate.Config{Tenant: "acme", Users: users, Days: 30, Seed: 1,
		Start: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}, n)
	if len(out) < n {
		tb.Fatalf("simulator ran out after %d records", len(out))
	}
	return out
}

// simulated parses the simulator's records for cfg, at most n of them
// (all when n is 0), as belonging to tenant cfg.Tenant.
func simulated(tb testing.TB, cfg simulate.Config, n int) []audit.Record {
	tb.Helper()
	sim, err := simulate.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	var p audit.Parser
	var out []audit.Record
	for n == 0 || len(out) < n {
		raw, ok := sim.Next()
		if !ok {
			break
		}
		r, err := p.Parse(bytes.Clone(raw))
		if err != nil {
			tb.Fatal(err)
		}
		r.Tenant = cfg.Tenant
		out = append(out, r)
	}
	return out
}

// BenchmarkSeal measures sealing a head of simulator records to Parquet
// (read from the head, sort by user and time, zstd, fsync, read back).
func BenchmarkSeal(b *testing.B) {
	recs := simRecords(b, 100_000, 2000)
	opts := testOptions()
	for b.Loop() {
		b.StopTimer()
		db, err := Open(b.TempDir(), opts)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < len(recs); i += 2000 {
			if _, err := db.Append(ctx, recs[i:min(i+2000, len(recs))]); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := db.Seal(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/rec")
}
