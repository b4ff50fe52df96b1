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

// BenchmarkFeedRead measures what a feed costs per record (ns/op is per
// record): served from the in-memory tail of recent commits, and read back
// from the write-ahead log (a feed that lags or restarted).
//
//	go test ./store -run '^$' -bench FeedRead -count 6
func BenchmarkFeedRead(b *testing.B) {
	recs := simRecords(b, 50_000, 2000)
	opts := testOptions()
	opts.FeedTailBytes = 1 << 30 // holds every frame here
	db, err := Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	f, err := db.Feed("bench")
	if err != nil {
		b.Fatal(err)
	}
	start := f.Position()
	for i := 0; i < len(recs); i += 2000 {
		if _, err := db.Append(ctx, recs[i:min(i+2000, len(recs))]); err != nil {
			b.Fatal(err)
		}
	}
	read := func(b *testing.B) {
		n := 0
		for n < b.N {
			after := start
			for after < db.committed.Load() && n < b.N {
				last, err := f.Read(ctx, after, func(_ uint64, rs []audit.Record) error {
					n += len(rs)
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				after = last
			}
		}
	}
	b.Run("memory", func(b *testing.B) {
		before := db.Stats().FeedLogFrames
		read(b)
		if db.Stats().FeedLogFrames != before {
			b.Fatal("frames were read from the log")
		}
	})
	db.tail.reset()
	b.Run("log", read)
}
