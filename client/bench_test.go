package client_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/custos-audit/custos/client"
)

// benchmarkReader measures splitting an input into records, the work
// `custos ingest` does per record before batching.
func benchmarkReader(b *testing.B, in []byte, n int) {
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		rr, err := client.NewRecordReader(bytes.NewReader(in))
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for {
			rec, err := rr.Next()
			if err == io.EOF {
				break
			}
			if err != nil || rec.Problem != "" {
				b.Fatal(err, rec.Problem)
			}
			got++
		}
		rr.Close()
		if got != n {
			b.Fatalf("read %d records, want %d", got, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/time.Since(start).Seconds(), "records/s")
}

const benchRecords = 20000

func BenchmarkReadNDJSON(b *testing.B) {
	benchmarkReader(b, toNDJSON(fixtureRecords(b, benchRecords)), benchRecords)
}

func BenchmarkReadNDJSONZstd(b *testing.B) {
	benchmarkReader(b, compress(b, "zstd", toNDJSON(fixtureRecords(b, benchRecords))), benchRecords)
}

func BenchmarkReadJSONArray(b *testing.B) {
	benchmarkReader(b, toArray(b, fixtureRecords(b, benchRecords)), benchRecords)
}

func BenchmarkReadPurviewCSV(b *testing.B) {
	benchmarkReader(b, toCSV(b, fixtureRecords(b, benchRecords), false), benchRecords)
}

func BenchmarkReadPurviewCSVGzip(b *testing.B) {
	benchmarkReader(b, compress(b, "gzip", toCSV(b, fixtureRecords(b, benchRecords), false)), benchRecords)
}

// BenchmarkUpload measures the client end to end over loopback: reading
// NDJSON, batching, zstd, four requests in flight, against a server that
// only decompresses and counts lines, so the figure is the client's
// ceiling on this machine (both share its two cores).
func BenchmarkUpload(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := zstd.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
			return
		}
		defer zr.Close()
		body, err := io.ReadAll(zr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
			return
		}
		fmt.Fprintf(w, `{"accepted":%d}`, bytes.Count(body, []byte{'\n'}))
	}))
	defer srv.Close()
	in := toNDJSON(fixtureRecords(b, benchRecords))
	c := client.New(srv.URL, "t")
	b.SetBytes(int64(len(in)))
	start := time.Now()
	for b.Loop() {
		up := c.NewUploader("acme", client.UploadOptions{})
		if err := up.Upload(context.Background(), "in", bytes.NewReader(in)); err != nil {
			b.Fatal(err)
		}
		sum, err := up.Close(context.Background())
		if err != nil || sum.Accepted != benchRecords {
			b.Fatal(sum.Stats, err)
		}
	}
	b.ReportMetric(float64(benchRecords)*float64(b.N)/time.Since(start).Seconds(), "records/s")
}
