// Package ingest turns request bodies into durable records: it decodes
// NDJSON or JSON arrays (optionally compressed), parses and validates each
// record on its own so one bad record never costs the others, and hands the
// valid ones to the store in one group commit.
package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-audit/custos/audit"
)

// Appender is the part of the store ingest needs.
type Appender interface {
	Append(ctx context.Context, recs []audit.Record) (dup []bool, err error)
}

// Errors that map to HTTP statuses.
var (
	ErrTooLarge    = errors.New("request body too large")
	ErrUnsupported = errors.New("unsupported content")
)

// MaxListedErrors bounds the per-record error list of one answer, so a
// hostile batch of a million bad lines gets a bounded reply.
const MaxListedErrors = 1000

// Result is the answer to one batch.
type Result struct {
	Accepted        int           `json:"accepted"`
	Duplicate       int           `json:"duplicate"`
	Rejected        int           `json:"rejected"`
	Errors          []RecordError `json:"errors,omitempty"`
	ErrorsTruncated bool          `json:"errors_truncated,omitempty"`
}

// RecordError explains why one record of a batch was rejected.
type RecordError struct {
	Index int    `json:"index"`          // 0-based position in the batch
	Line  int    `json:"line,omitempty"` // 1-based line, for NDJSON
	ID    string `json:"id,omitempty"`
	Field string `json:"field,omitempty"`
	Error string `json:"error"`
}

func (r *Result) reject(e RecordError) {
	r.Rejected++
	if len(r.Errors) < MaxListedErrors {
		r.Errors = append(r.Errors, e)
	} else {
		r.ErrorsTruncated = true
	}
}

// Batch is one request's worth of records to ingest.
type Batch struct {
	Tenant   string
	Source   string    // who sent it (the source's or token's name), kept with each record
	Sequence uint64    // the sender's batch number (X-Custos-Sequence); 0 when it numbers none
	Body     io.Reader // the request body, still encoded
	Encoding string    // Content-Encoding: "", "identity", "gzip" or "zstd"
	Mapping  string    // name of a configured mapping; "" for Microsoft 365 records
	NDJSON   bool      // the sender declared NDJSON: never read the body as one JSON array
	SizeHint int64     // expected encoded body size (Content-Length), to size the read buffer
}

// Service ingests batches into a store.
type Service struct {
	store    Appender
	maxBody  int64
	mappings map[string]*audit.Mapping
	parsers  sync.Pool
	metrics  *metrics
	observer Observer
	now      func() time.Time
}

// Observer learns of every batch ingest stored: source tracking counts
// what each source delivers from it. Delivered must be quick; it is called
// on the request's path.
type Observer interface {
	Delivered(Delivery)
}

// Delivery is what one batch brought.
type Delivery struct {
	Tenant, Source string
	Sequence       uint64
	At             time.Time // when it was received
	Accepted       int
	Duplicate      int
	Rejected       int
	// Hours counts the accepted records per hour of CreationTime, keyed by
	// Unix hour (seconds / 3600).
	Hours map[int64]int
}

// Config configures a Service.
type Config struct {
	MaxBodyBytes int64                     // decoded body limit (default 256 MiB)
	Mappings     map[string]*audit.Mapping // named mappings for non-Microsoft sources
	Registerer   prometheus.Registerer     // where metrics go; nil for none
	Observer     Observer                  // told of every stored batch; nil for none
	// Now stamps records' Received time; nil for the wall clock. Tests of
	// lateness set it.
	Now func() time.Time
}

// New returns a Service writing to store.
func New(store Appender, cfg Config) *Service {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 256 << 20
	}
	s := &Service{
		store:    store,
		maxBody:  cfg.MaxBodyBytes,
		mappings: cfg.Mappings,
		metrics:  newMetrics(cfg.Registerer),
		observer: cfg.Observer,
		now:      func() time.Time { return time.Now().UTC() },
	}
	if cfg.Now != nil {
		s.now = func() time.Time { return cfg.Now().UTC() }
	}
	s.parsers.New = func() any { return new(audit.Parser) }
	return s
}

// MaxBodyBytes is the decoded body limit.
func (s *Service) MaxBodyBytes() int64 { return s.maxBody }

// Ingest decodes, validates and stores one batch. Valid records are stored
// even when others are rejected. An error means nothing was stored.
func (s *Service) Ingest(ctx context.Context, b Batch) (Result, error) {
	start := time.Now()
	var parse func([]byte) (audit.Record, error)
	if b.Mapping == "" {
		p := s.parsers.Get().(*audit.Parser)
		defer s.parsers.Put(p)
		// Each body is read into its own buffer and never reused: records may
		// keep their bytes in it.
		parse = p.ParseShared
	} else {
		m, ok := s.mappings[b.Mapping]
		if !ok {
			return Result{}, fmt.Errorf("%w: no mapping named %q", ErrUnsupported, b.Mapping)
		}
		parse = m.Parse
	}
	body, err := s.readBody(b.Body, b.Encoding, b.SizeHint)
	if err != nil {
		return Result{}, err
	}
	var res Result
	// Records are large; growing the slice by doubling would copy each
	// several times. One per line is exact for NDJSON; a pretty-printed
	// array has many lines per record, so guess from the size instead.
	est := len(body)/1024 + 1
	if b.NDJSON || !isArray(body) {
		est = bytes.Count(body, []byte{'\n'}) + 1
	}
	recs := make([]audit.Record, 0, est)
	idx := make([]int, 0, est) // batch index of each record in recs
	now := s.now()
	add := func(i, line int, raw []byte) {
		if len(raw) > audit.MaxRecordSize {
			res.reject(RecordError{Index: i, Line: line, Error: fmt.Sprintf("record is %d bytes, over the %d byte limit", len(raw), audit.MaxRecordSize)})
			return
		}
		r, err := parse(raw)
		if err != nil {
			e := RecordError{Index: i, Line: line, ID: r.ID, Error: err.Error()}
			var fe *audit.FieldError
			if errors.As(err, &fe) {
				e.Field = fe.Field
			}
			res.reject(e)
			return
		}
		r.Tenant, r.Source, r.Received = b.Tenant, b.Source, now
		recs = append(recs, r)
		idx = append(idx, i)
	}
	if !b.NDJSON && isArray(body) {
		splitArray(body, add, &res)
	} else {
		splitLines(body, add)
	}
	var hours map[int64]int
	if len(recs) > 0 {
		dup, err := s.store.Append(ctx, recs)
		if err != nil {
			s.metrics.failed(b.Tenant, len(recs))
			return Result{}, err
		}
		if s.observer != nil {
			hours = make(map[int64]int, 4)
		}
		for i, d := range dup {
			if d {
				res.Duplicate++
				continue
			}
			res.Accepted++
			if hours != nil {
				hours[recs[i].CreationTime.Unix()/3600]++
			}
		}
	}
	s.metrics.observe(b.Tenant, res, time.Since(start))
	if s.observer != nil {
		s.observer.Delivered(Delivery{Tenant: b.Tenant, Source: b.Source, Sequence: b.Sequence, At: now,
			Accepted: res.Accepted, Duplicate: res.Duplicate, Rejected: res.Rejected, Hours: hours})
	}
	return res, nil
}

func (s *Service) readBody(body io.Reader, encoding string, hint int64) ([]byte, error) {
	var r io.Reader = body
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrUnsupported, err)
		}
		defer zr.Close()
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(s.maxBody)+1<<20))
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrUnsupported, err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fmt.Errorf("%w: Content-Encoding %q (use gzip, zstd or none)", ErrUnsupported, encoding)
	}
	// Read one byte past the limit to tell "exactly at" from "over", and
	// never more, so a compression bomb cannot exhaust memory.
	// Growing a buffer by doubling clears and copies it repeatedly; for an
	// uncompressed body the length is known up front.
	var buf bytes.Buffer
	if hint > 0 && hint <= s.maxBody && (encoding == "" || encoding == "identity") {
		buf.Grow(int(hint) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(r, s.maxBody+1))
	data := buf.Bytes()
	if err != nil {
		var mbe interface{ MaxBytes() int64 }
		if errors.As(err, &mbe) {
			return nil, ErrTooLarge
		}
		if encoding != "" && encoding != "identity" {
			return nil, fmt.Errorf("%w: decoding %s body: %v", ErrUnsupported, encoding, err)
		}
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(data)) > s.maxBody {
		return nil, ErrTooLarge
	}
	return data, nil
}

func isArray(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n\ufeff")
	return len(b) > 0 && b[0] == '['
}

// splitLines calls add for every non-blank line.
func splitLines(body []byte, add func(i, line int, raw []byte)) {
	i, line := 0, 0
	for len(body) > 0 {
		line++
		var l []byte
		if n := bytes.IndexByte(body, '\n'); n >= 0 {
			l, body = body[:n], body[n+1:]
		} else {
			l, body = body, nil
		}
		if line == 1 {
			l = bytes.TrimPrefix(l, []byte("\ufeff")) // a UTF-8 byte order mark from Windows tools
		}
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		add(i, line, l)
		i++
	}
}

// splitArray calls add for every element of a JSON array. A syntax error
// ends the array: elements before it are kept, and the rest of the body is
// rejected as one error that says where it broke.
func splitArray(body []byte, add func(i, line int, raw []byte), res *Result) {
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("\ufeff"))))
	if _, err := dec.Token(); err != nil { // the '['
		res.reject(RecordError{Index: 0, Error: "malformed JSON array: " + err.Error()})
		return
	}
	i := 0
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			res.reject(RecordError{Index: i, Error: fmt.Sprintf("malformed JSON array at byte %d: %v; the rest of the array was not read", dec.InputOffset(), err)})
			return
		}
		add(i, 0, raw)
		i++
	}
	if _, err := dec.Token(); err != nil { // the ']'
		res.reject(RecordError{Index: i, Error: fmt.Sprintf("malformed JSON array at byte %d: %v", dec.InputOffset(), err)})
	}
}

type metrics struct {
	records *prometheus.CounterVec
	latency prometheus.Histogram
	batches *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custos_ingest_records_total",
			Help: "Records received for ingest, by tenant and outcome (accepted, duplicate, rejected, failed).",
		}, []string{"tenant", "outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "custos_ingest_batch_seconds",
			Help:    "Time to decode, validate and durably store one ingest batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custos_ingest_batches_total",
			Help: "Ingest batches by tenant and result (ok, failed).",
		}, []string{"tenant", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.latency, m.batches)
	}
	return m
}

func (m *metrics) observe(tenant string, r Result, d time.Duration) {
	m.records.WithLabelValues(tenant, "accepted").Add(float64(r.Accepted))
	m.records.WithLabelValues(tenant, "duplicate").Add(float64(r.Duplicate))
	m.records.WithLabelValues(tenant, "rejected").Add(float64(r.Rejected))
	m.batches.WithLabelValues(tenant, "ok").Inc()
	m.latency.Observe(d.Seconds())
}

func (m *metrics) failed(tenant string, n int) {
	m.records.WithLabelValues(tenant, "failed").Add(float64(n))
	m.batches.WithLabelValues(tenant, "failed").Inc()
}
