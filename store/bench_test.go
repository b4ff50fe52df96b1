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
	sim, err := simulate.New(simulate.Config{Tenant: "acme", Users: users, Days: 30, Seed: 1,
		Start: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		tb.Fatal(err)
	}
	var p audit.Parser
	out := make([]audit.Record, 0, n)
	for len(out) < n {
		raw, ok := sim.Next()
		if !ok {
			tb.Fatalf("simulator ran out after %d records", len(out))
		}
		r, err := p.Parse(bytes.Clone(raw))
		if err != nil {
			tb.Fatal(err)
		}
		r.Tenant = "acme"
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
