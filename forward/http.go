package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custos-audit/custos/client"
	"github.com/custos-audit/custos/source"
)

// Handler serves /metrics, /healthz and, if configured, POST /records.
// ctx bounds how long a request waits for the queue.
func (f *Forwarder) Handler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(f.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		st := f.q.Stats()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"status": "ok", "sequence": st.Sequence, "acked": st.Acked,
			"queue_records": st.Records, "queue_bytes": st.Bytes, "queue_max_bytes": f.q.MaxBytes(),
		})
	})
	if f.cfg.Records {
		mux.HandleFunc("POST /records", func(w http.ResponseWriter, r *http.Request) { f.postRecords(ctx, w, r) })
	}
	return mux
}

// postRecords queues the records of one request and answers 200 once they
// are fsync'd in the queue; 503 with Retry-After when the queue is full,
// so the client keeps them and tries again.
func (f *Forwarder) postRecords(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	answer := func(code int, v any) {
		f.m.httpAnswers.WithLabelValues(strconv.Itoa(code)).Inc()
		w.Header().Set("Content-Type", "application/json")
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	fail := func(code int, format string, args ...any) {
		answer(code, map[string]string{"error": fmt.Sprintf(format, args...)})
	}
	limit := f.q.MaxBytes()
	body, err := readBody(r, limit)
	if err != nil {
		var tl *tooLargeError
		if errors.As(err, &tl) {
			fail(http.StatusRequestEntityTooLarge, "body larger than the queue bound of %d bytes", limit)
			return
		}
		fail(http.StatusBadRequest, "%v", err)
		return
	}
	ndjson, n, err := splitRecords(body)
	if err != nil {
		fail(http.StatusBadRequest, "%v", err)
		return
	}
	if n == 0 {
		answer(http.StatusOK, map[string]int{"queued": 0})
		return
	}
	c := &chunk{ndjson: ndjson, records: n, done: make(chan error, 1)}
	select {
	case f.batcher.http <- c:
	case <-ctx.Done():
		fail(http.StatusServiceUnavailable, "forwarder is stopping")
		return
	case <-r.Context().Done():
		return
	}
	err = <-c.done
	switch {
	case err == nil:
		answer(http.StatusOK, map[string]int{"queued": n})
	case errors.Is(err, ErrFull):
		fail(http.StatusServiceUnavailable, "disk queue is full; try again later")
	case errors.Is(err, ErrTooLarge):
		fail(http.StatusRequestEntityTooLarge, "body larger than the queue bound of %d bytes", limit)
	default:
		fail(http.StatusInternalServerError, "cannot queue records: %v", err)
	}
}

type tooLargeError struct{}

func (*tooLargeError) Error() string { return "body too large" }

// readBody reads a request body, decoded per its Content-Encoding, up to
// limit bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	var rd io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		defer zr.Close()
		rd = zr
	case "zstd":
		zr, err := zstd.NewReader(r.Body, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd body: %w", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q (want gzip, zstd or none)", enc)
	}
	b, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, &tooLargeError{}
	}
	return b, nil
}

// splitRecords turns an NDJSON body or a JSON array into NDJSON, one
// record per line, and counts the records. Records are not parsed beyond
// that: the server validates them.
func splitRecords(body []byte) ([]byte, int, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		if _, err := dec.Token(); err != nil {
			return nil, 0, fmt.Errorf("JSON array: %w", err)
		}
		out := make([]byte, 0, len(trimmed))
		n := 0
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, 0, fmt.Errorf("JSON array element %d: %w", n, err)
			}
			// A pretty-printed element spans lines; NDJSON needs one.
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err != nil {
				return nil, 0, fmt.Errorf("JSON array element %d: %w", n, err)
			}
			out = append(out, buf.Bytes()...)
			out = append(out, '\n')
			n++
		}
		if _, err := dec.Token(); err != nil {
			return nil, 0, fmt.Errorf("JSON array: %w", err)
		}
		return out, n, nil
	}
	out := make([]byte, 0, len(body)+1)
	n := 0
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			out = append(out, line...)
			out = append(out, '\n')
			n++
		}
	}
	return out, n, nil
}

// heartbeats tells the server every interval that the forwarder is alive
// and what it has done, also while the server cannot be reached (so it
// can tell a dead forwarder from a quiet one once it hears again).
func (f *Forwarder) heartbeats(ctx context.Context) error {
	t := time.NewTicker(f.cfg.Heartbeat)
	defer t.Stop()
	notFoundLogged := false
	failing := false
	for {
		st := f.q.Stats()
		hb := source.Heartbeat{
			Kind: source.KindForwarder, Interval: int(f.cfg.Heartbeat.Round(time.Second) / time.Second),
			Sequence: st.Sequence, Acked: st.Acked,
			RecordsRead: int64(st.Counters.Queued), RecordsSent: int64(st.Counters.Sent), RecordsRejected: int64(st.Counters.Rejected),
			QueueRecords: st.Records, QueueBytes: st.Bytes,
			Dropped: int64(st.Counters.Refused + f.m.tooLong.Load()), Version: f.cfg.Version,
		}
		hctx, cancel := context.WithTimeout(ctx, max(f.cfg.Heartbeat, 10*time.Second))
		err := f.cfg.Client.Heartbeat(hctx, f.cfg.Tenant, f.cfg.Source, hb)
		cancel()
		var ae *client.APIError
		switch {
		case err == nil:
			f.m.heartbeats.WithLabelValues("ok").Inc()
			if failing {
				f.logger.Info("heartbeats reach the server again")
			}
			failing = false
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusMethodNotAllowed):
			// A server older than the heartbeat endpoint.
			f.m.heartbeats.WithLabelValues("not_found").Inc()
			if !notFoundLogged {
				f.logger.Warn("the server has no heartbeat endpoint (an older custos?); heartbeats are only counted", "err", err)
				notFoundLogged = true
			}
		default:
			f.m.heartbeats.WithLabelValues("error").Inc()
			if !failing {
				f.logger.Warn("heartbeat failed; will keep trying", "err", err)
			}
			failing = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
