package collection

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-audit/custos/ingest"
)

// flakyIngester fails while fail is set and keeps the bodies it accepted.
type flakyIngester struct {
	fail     bool
	accepted [][]byte
}

func (f *flakyIngester) Ingest(ctx context.Context, b ingest.Batch) (ingest.Result, error) {
	if f.fail {
		return ingest.Result{}, errors.New("disk trouble (test)")
	}
	body, _ := io.ReadAll(b.Body)
	f.accepted = append(f.accepted, body)
	return ingest.Result{Accepted: bytes.Count(body, []byte("\n"))}, nil
}

// TestSinkKeepsWhatFailed: records of a failed commit are not dropped; the
// next Sync commits them, so no checkpoint can pass a lost record. Records
// spread over lines become one NDJSON line each.
func TestSinkKeepsWhatFailed(t *testing.T) {
	in := &flakyIngester{fail: true}
	s := &sink{in: in, tenant: "t", source: "s", log: slog.New(slog.DiscardHandler), rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no retry waits
	if err := s.Write(ctx, "", []json.RawMessage{json.RawMessage(`{"Id":"a"}`), json.RawMessage("{\n  \"Id\": \"b\"\n}")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err == nil {
		t.Fatal("Sync succeeded though ingest failed")
	}
	in.fail = false
	s.Write(context.Background(), "", []json.RawMessage{json.RawMessage(`{"Id":"c"}`)})
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(in.accepted) != 1 || string(in.accepted[0]) != "{\"Id\":\"a\"}\n{\"Id\":\"b\"}\n{\"Id\":\"c\"}\n" {
		t.Fatalf("committed %q", in.accepted)
	}
	if err := s.Sync(context.Background()); err != nil || len(in.accepted) != 1 {
		t.Fatalf("an empty Sync committed again: %v %d", err, len(in.accepted))
	}
}
