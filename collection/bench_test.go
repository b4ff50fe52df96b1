package collection_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-audit/custos/collection"
	"github.com/custos-audit/custos/ingest"
	"github.com/custos-audit/custos/m365"
	"github.com/custos-audit/custos/m365/m365test"
	"github.com/custos-audit/custos/sealed"
	"github.com/custos-audit/custos/store"
)

// BenchmarkCollectIntoStore measures records per second from the fake API
// on loopback through a configured source into the server's ingest and
// store (each content blob one durable group commit), with the same fake
// tenant and collector settings as m365's BenchmarkCollectToFileSink. The
// fake runs in the same process and shares the CPU. Each iteration starts
// from an empty store, so no record is a duplicate.
func BenchmarkCollectIntoStore(b *testing.B) {
	clock := m365test.NewClock(simStart.Add(7*24*time.Hour + 12*time.Hour))
	fake, err := m365test.New(m365test.Options{Now: clock.Now, Seed: 7, TokenLifetime: 12 * time.Hour,
		Tenants: []m365test.TenantOptions{{ID: entraA, ClientID: clientID, ClientSecret: secret, Users: 40, Days: 7,
			Start: simStart, Rate: 120, Subscribed: m365.DefaultContentTypes()}}})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	var records int
	var elapsed time.Duration
	for b.Loop() {
		dir := b.TempDir()
		db, err := store.Open(filepath.Join(dir, "store"), store.Options{MemoryLimit: "1GB", Threads: 2, MinFreeBytes: -1})
		if err != nil {
			b.Fatal(err)
		}
		tr := newTracker()
		m, err := collection.Open(collection.Options{
			Path: filepath.Join(dir, "sources.json"), StateDir: filepath.Join(dir, "collectors"),
			Keys: &sealed.KeyFile{Path: filepath.Join(dir, "secret.key"), Create: true}, Ingest: ingest.New(db, ingest.Config{}),
			Tracker: tr, Interval: time.Hour, Now: clock.Now,
			Adjust: func(c *m365.Config) { c.Rate, c.Burst, c.Concurrency, c.Window = 1e6, 64, 8, 24*time.Hour },
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { m.Run(ctx); close(done) }()
		start := time.Now()
		if _, err := m.Add("contoso", collection.Config{Name: "m365-prod", Kind: "m365",
			M365: &collection.M365Config{TenantID: entraA, ClientID: clientID, APIRoot: srv.URL, Authority: srv.URL}},
			collection.Secret{ClientSecret: secret}, ""); err != nil {
			b.Fatal(err)
		}
		tr.waitBeat(b, "contoso/m365-prod")
		elapsed += time.Since(start)
		cancel()
		<-done
		n, err := db.Count(context.Background(), "contoso", store.Query{})
		if err != nil {
			b.Fatal(err)
		}
		records += int(n)
		db.Close()
	}
	b.ReportMetric(float64(records)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(records)/float64(b.N), "records/op")
}
