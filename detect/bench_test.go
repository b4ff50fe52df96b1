package detect

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/rules"
	"github.com/custos-audit/custos/simulate"
)

// BenchmarkBaselineMemory measures what a tenant's baselines hold after it
// learned DETECT_BENCH_DAYS days (default 14) of DETECT_BENCH_USERS users
// (default 10,000): the live heap they take, their values, the checkpoint
// size, and detection's CPU per record (baselines and the bundled rules). Run it once:
//
//	go test ./detect -run '^$' -bench BaselineMemory -benchtime 1x
func BenchmarkBaselineMemory(b *testing.B) {
	users, days := envInt("DETECT_BENCH_USERS", 10000), envInt("DETECT_BENCH_DAYS", 14)
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	geo := testGeo(b)
	bundled, err := rules.Bundled()
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		b.StopTimer()
		before := liveHeap()
		sim, err := simulate.New(simulate.Config{Tenant: "contoso", Users: users, Days: days, Seed: 5, Start: start})
		if err != nil {
			b.Fatal(err)
		}
		dir := b.TempDir()
		as, err := alert.Open(filepath.Join(dir, "alerts.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		e, err := Open(filepath.Join(dir, "detect"), nil, as, geo, Options{})
		if err != nil {
			b.Fatal(err)
		}
		e.SetRules(bundled)
		// Records are made and parsed a frame at a time (millions do not fit
		// in memory); only apply is timed.
		var p audit.Parser
		var elapsed time.Duration
		frame := make([]audit.Record, 0, 1000)
		for seq := uint64(1); ; seq++ {
			frame = frame[:0]
			for len(frame) < cap(frame) {
				raw, ok := sim.Next()
				if !ok {
					break
				}
				r, err := p.Parse(bytes.Clone(raw))
				if err != nil {
					b.Fatal(err)
				}
				r.Tenant = "contoso"
				frame = append(frame, r)
			}
			if len(frame) == 0 {
				break
			}
			b.StartTimer()
			t0 := time.Now()
			e.apply(seq, frame)
			elapsed += time.Since(t0)
			b.StopTimer()
		}
		// With the records gone, what stays is the baselines (and anything
		// they wrongly pin of the records).
		frame = nil
		after := liveHeap()
		if err := e.saveOnly(); err != nil {
			b.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, "detect", "state.gob.zst"))
		if err != nil {
			b.Fatal(err)
		}
		st := e.Status("contoso")
		per10k := float64(10000) / float64(users)
		b.ReportMetric(float64(after-before)/(1<<20)*per10k, "MiB-heap/10k-users")
		b.ReportMetric(float64(fi.Size())/(1<<20)*per10k, "MiB-checkpoint/10k-users")
		b.ReportMetric(float64(st.Values), "values")
		b.ReportMetric(float64(elapsed.Nanoseconds())/float64(e.Evaluated()), "ns/record")
		b.ReportMetric(float64(e.Evaluated()), "records")
		runtime.KeepAlive(e)
		as.Close()
	}
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkDetect measures detection's CPU per record (one op = one record)
// on simulator activity after the learning period: 200 users learn for 14
// days (not timed), then b.N records of the following days are evaluated
// with every baseline detector, the bundled rules and a test .mmdb. Which
// records are timed depends on b.N, so compare runs with the same count:
//
//	go test ./detect -run '^$' -bench 'Detect$' -benchtime 200000x -count 6
func BenchmarkDetect(b *testing.B) {
	const users, learnDays = 200, 14
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	bundled, err := rules.Bundled()
	if err != nil {
		b.Fatal(err)
	}
	rate := 120.0
	days := learnDays + int(float64(b.N)/(users*rate)) + 2
	sim, err := simulate.New(simulate.Config{Tenant: "contoso", Users: users, Days: days, Seed: 7, Start: start, Rate: rate})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	as, err := alert.Open(filepath.Join(dir, "alerts.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer as.Close()
	e, err := Open(filepath.Join(dir, "detect"), nil, as, testGeo(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	e.SetRules(bundled)
	var p audit.Parser
	learnEnd := start.AddDate(0, 0, learnDays)
	// next parses up to n records; learning says whether the last one is
	// still inside the learning period.
	frame := make([]audit.Record, 0, 1000)
	next := func(n int) bool {
		frame = frame[:0]
		for len(frame) < n {
			raw, ok := sim.Next()
			if !ok {
				b.Fatalf("the simulator ran out after %d timed records", e.Evaluated())
			}
			r, err := p.Parse(bytes.Clone(raw))
			if err != nil {
				b.Fatal(err)
			}
			r.Tenant = "contoso"
			frame = append(frame, r)
		}
		return frame[len(frame)-1].CreationTime.Before(learnEnd)
	}
	seq := uint64(0)
	for next(cap(frame)) {
		seq++
		e.apply(seq, frame)
	}
	seq++
	e.apply(seq, frame)
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		next(min(cap(frame), b.N-done))
		b.StartTimer()
		seq++
		e.apply(seq, frame)
		done += len(frame)
	}
}
