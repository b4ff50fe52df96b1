package m365_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-audit/custos/m365"
	"github.com/custos-audit/custos/m365/m365test"
)

// BenchmarkCollectToFileSink measures records per second from the fake API
// on loopback into the NDJSON file sink (fsync per window). The fake server
// runs in the same process and shares the CPU.
func BenchmarkCollectToFileSink(b *testing.B) {
	clock := m365test.NewClock(simStart.Add(7*24*time.Hour + 12*time.Hour))
	_, url := fakeServer(b, clock.Now, m365test.TenantOptions{Users: 40, Days: 7, Rate: 120,
		Subscribed: m365.DefaultContentTypes()}, m365test.Faults{})
	var records int64
	var elapsed time.Duration
	for b.Loop() {
		dir := b.TempDir()
		sink, err := m365.OpenFileSink(filepath.Join(dir, "out.ndjson"))
		if err != nil {
			b.Fatal(err)
		}
		cfg := baseConfig(url, filepath.Join(dir, "state"), clock.Now, &events{})
		cfg.OnEvent = nil
		cfg.Rate = 1e6
		cfg.Burst = 64
		cfg.Concurrency = 8
		cfg.Window = 24 * time.Hour
		c, err := m365.New(cfg, sink)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := c.Pass(context.Background(), time.Time{}, time.Time{}); err != nil {
			b.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		records += sink.Stats().Written
	}
	b.ReportMetric(float64(records)/elapsed.Seconds(), "records/s")
}
