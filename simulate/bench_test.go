package simulate

import (
	"testing"
	"time"
)

// BenchmarkGenerate measures generation alone (no I/O): records per second
// on one core, bytes per record overall and for MailItemsAccessed.
func BenchmarkGenerate(b *testing.B) {
	cfg := Config{Tenant: "bench", Users: 2000, Days: 30, Seed: 1, Scenarios: []string{ScenarioStorm0558}}
	g, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var n, bytesAll, nMIA, bytesMIA int64
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		rec, ok := g.Next()
		if !ok {
			b.StopTimer()
			if g, err = New(cfg); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			rec, _ = g.Next()
		}
		n++
		bytesAll += int64(len(rec))
		if g.last == kBind || g.last == kSync {
			nMIA++
			bytesMIA += int64(len(rec))
		}
	}
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(n)/el, "records/s")
	b.ReportMetric(float64(bytesAll)/float64(n), "B/record")
	if nMIA > 0 {
		b.ReportMetric(float64(bytesMIA)/float64(nMIA), "B/MailItemsAccessed")
		b.ReportMetric(100*float64(nMIA)/float64(n), "%MailItemsAccessed")
	}
}
