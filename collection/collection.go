// Package collection runs, inside the server, the collectors each tenant
// configures as sources: today the Microsoft 365 Management Activity API
// collector (package m365). A configured source is kept in one file in the
// data directory with its credential sealed (package sealed); one
// collector per source pulls continuously and writes through the server's
// ingest service, so its records are validated, deduplicated and
// acknowledged exactly like pushed ones. Checkpoints live under the data
// directory per source, so a restart resumes where the last one stopped.
package collection

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-audit/custos/durable"
	"github.com/custos-audit/custos/ingest"
	"github.com/custos-audit/custos/m365"
	"github.com/custos-audit/custos/sealed"
)

// Ingester is the part of the ingest service collectors write through. It
// must return only once the records are durable: the collector
// checkpoints past them as soon as it returns.
type Ingester interface {
	Ingest(ctx context.Context, b ingest.Batch) (ingest.Result, error)
}

// Tracker hears how each source is doing; the source-health registry
// implements it.
type Tracker interface {
	// Heartbeat: a collection pass of the source ended at at (whether or
	// not it collected everything; its failures are in the logs).
	Heartbeat(tenant, source, kind string, at time.Time)
	// UpstreamWindow: the upstream span [start, end) was collected with
	// records records, or expired before it could be (expired).
	UpstreamWindow(tenant, source string, start, end time.Time, records int, expired bool)
}

// Keys gives the box that seals credentials; *sealed.KeyFile is one.
type Keys interface {
	Box() (*sealed.Box, error)
}

// Options configure a Manager.
type Options struct {
	// Path is the file of configured sources.
	Path string
	// StateDir holds each source's checkpoints, in <tenant>/<name>.
	StateDir string
	Keys     Keys
	Ingest   Ingester
	// Tracker may be nil.
	Tracker Tracker
	// Interval between the passes of one collector. Default 1 minute:
	// each pass is a heartbeat, and content appears upstream within
	// minutes to hours.
	Interval time.Duration
	// Registerer receives the collectors' metrics; nil for none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the collectors' clock. Default time.Now.
	Now func() time.Time
	// Adjust, if set, edits each collector's configuration before it
	// starts: tests and benchmarks point it at a fake API and lift its
	// rate limits.
	Adjust func(*m365.Config)
}

type key struct{ tenant, name string }

// entry is one source as stored: its configuration and sealed credential.
type entry struct {
	Config
	Sealed string `json:"sealed"`
}

// runner is a running collector.
type runner struct {
	cancel     context.CancelFunc
	done       chan struct{}
	unregister func()
}

// Manager keeps the configured sources and runs their collectors.
type Manager struct {
	opts     Options
	log      *slog.Logger
	rejected *prometheus.CounterVec
	passes   *prometheus.CounterVec

	mu      sync.Mutex
	entries map[key]*entry
	running map[key]*runner
	runCtx  context.Context // set while Run runs
	wg      sync.WaitGroup
}

// Open loads the sources kept at opts.Path. Collectors start with Run.
func Open(opts Options) (*Manager, error) {
	if opts.Path == "" || opts.StateDir == "" || opts.Keys == nil || opts.Ingest == nil {
		return nil, errors.New("collection: Path, StateDir, Keys and Ingest are required")
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Tracker == nil {
		opts.Tracker = noTracker{}
	}
	m := &Manager{opts: opts, log: opts.Logger, entries: map[key]*entry{}, running: map[key]*runner{}}
	b, err := os.ReadFile(opts.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("collection: %w", err)
	default:
		var list []*entry
		if err := json.Unmarshal(b, &list); err != nil {
			return nil, fmt.Errorf("collection: %s: %w", opts.Path, err)
		}
		for _, e := range list {
			m.entries[key{e.Tenant, e.Name}] = e
		}
	}
	labels := []string{"custos_tenant", "source"}
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_collector_rejected_records_total",
		Help: "Collected records ingest rejected as invalid (logged; the collector goes on)."}, labels)
	m.passes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_collector_passes_total",
		Help: "Collection passes of configured sources, by result (ok, incomplete)."}, append(labels, "result"))
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{m.rejected, m.passes} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("collection: metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Run runs every configured collector until ctx ends, and those added
// meanwhile; then it waits for them to stop.
func (m *Manager) Run(ctx context.Context) {
	m.mu.Lock()
	m.runCtx = ctx
	for k := range m.entries {
		m.start(k)
	}
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	m.runCtx = nil
	m.mu.Unlock()
	m.wg.Wait()
}

// Add stores a new source of tenant and starts its collector.
func (m *Manager) Add(tenant string, c Config, sec Secret, by string) (Config, error) {
	c.Tenant, c.CreatedBy = tenant, by
	if _, err := prepare(&c, sec); err != nil {
		return Config{}, err
	}
	box, err := m.opts.Keys.Box()
	if err != nil {
		return Config{}, fmt.Errorf("collection: %w", err)
	}
	pt, err := json.Marshal(sec)
	if err != nil {
		return Config{}, err
	}
	sealedText, err := box.Seal(pt, additional(tenant, c.Name))
	if err != nil {
		return Config{}, fmt.Errorf("collection: %w", err)
	}
	c.Created = time.Now().UTC()
	k := key{tenant, c.Name}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[k]; ok {
		return Config{}, fmt.Errorf("%w: %q", ErrExists, c.Name)
	}
	m.entries[k] = &entry{Config: c, Sealed: sealedText}
	if err := m.saveLocked(); err != nil {
		delete(m.entries, k)
		return Config{}, err
	}
	// A source of the same name removed earlier left no checkpoints (see
	// Remove), so this one starts with the full 7-day backfill.
	m.start(k)
	return c, nil
}

// additional is the data a source's credential is sealed with: a sealed
// credential copied onto another source does not open.
func additional(tenant, name string) []byte { return []byte("source\x00" + tenant + "\x00" + name) }

// Get returns a tenant's source.
func (m *Manager) Get(tenant, name string) (Config, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key{tenant, name}]
	if !ok {
		return Config{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return e.Config, nil
}

// List returns a tenant's sources by name.
func (m *Manager) List(tenant string) []Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Config
	for k, e := range m.entries {
		if k.tenant == tenant {
			out = append(out, e.Config)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Remove deletes a tenant's source, stops its collector, waits for it to
// stop and deletes its checkpoints. Records it collected stay.
func (m *Manager) Remove(tenant, name string) (Config, error) {
	k := key{tenant, name}
	m.mu.Lock()
	e, ok := m.entries[k]
	if !ok {
		m.mu.Unlock()
		return Config{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	delete(m.entries, k)
	if err := m.saveLocked(); err != nil {
		m.entries[k] = e
		m.mu.Unlock()
		return Config{}, err
	}
	r := m.running[k]
	delete(m.running, k)
	m.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
	if err := os.RemoveAll(m.stateDir(k)); err != nil {
		m.log.Warn("checkpoints of a removed source were not deleted", "tenant", tenant, "source", name, "err", err)
	}
	return e.Config, nil
}

func (m *Manager) stateDir(k key) string { return filepath.Join(m.opts.StateDir, k.tenant, k.name) }

// saveLocked writes every source; callers hold m.mu.
func (m *Manager) saveLocked() error {
	list := make([]*entry, 0, len(m.entries))
	for _, e := range m.entries {
		list = append(list, e)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Tenant != list[j].Tenant {
			return list[i].Tenant < list[j].Tenant
		}
		return list[i].Name < list[j].Name
	})
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return fmt.Errorf("collection: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(m.opts.Path), 0o700); err != nil {
		return fmt.Errorf("collection: %w", err)
	}
	return durable.WriteFile(m.opts.Path, b, 0o600)
}

// start runs the collector of source k if Run is running; callers hold
// m.mu. A source whose credential cannot be opened (another key file) is
// logged and left stopped: the server goes on, and the source's silence
// shows in source health.
func (m *Manager) start(k key) {
	if m.runCtx == nil || m.running[k] != nil {
		return
	}
	e := m.entries[k]
	log := m.log.With("tenant", k.tenant, "source", k.name)
	col, err := m.collector(e)
	if err != nil {
		log.Error("source not started", "err", err)
		return
	}
	var unregister func()
	if m.opts.Registerer != nil {
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"custos_tenant": k.tenant, "source": k.name}, m.opts.Registerer)
		if err := reg.Register(col); err != nil {
			log.Warn("collector metrics not registered", "err", err)
		} else {
			unregister = func() { reg.Unregister(col) }
		}
	}
	ctx, cancel := context.WithCancel(m.runCtx)
	r := &runner{cancel: cancel, done: make(chan struct{}), unregister: unregister}
	m.running[k] = r
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(r.done)
		defer cancel()
		if r.unregister != nil {
			defer r.unregister()
		}
		m.loop(ctx, k, col, log)
		m.mu.Lock()
		if m.running[k] == r {
			delete(m.running, k)
		}
		m.mu.Unlock()
	}()
	log.Info("collector started", "kind", e.Kind)
}

// collector builds the collector of e, opening its credential.
func (m *Manager) collector(e *entry) (*m365.Collector, error) {
	box, err := m.opts.Keys.Box()
	if err != nil {
		return nil, err
	}
	pt, err := box.Open(e.Sealed, additional(e.Tenant, e.Name))
	if err != nil {
		return nil, fmt.Errorf("its credential cannot be opened (was the secret key file replaced?): %w", err)
	}
	var sec Secret
	if err := json.Unmarshal(pt, &sec); err != nil {
		return nil, fmt.Errorf("its credential: %w", err)
	}
	t, err := credential(e.M365, sec)
	if err != nil {
		return nil, err
	}
	k := key{e.Tenant, e.Name}
	cfg := m365.Config{
		Tenants:             []m365.Tenant{t},
		PublisherIdentifier: e.M365.PublisherID,
		ContentTypes:        e.M365.ContentTypes,
		APIRoot:             e.M365.APIRoot,
		Authority:           e.M365.Authority,
		StateDir:            m.stateDir(k),
		Rate:                e.M365.Rate,
		Now:                 m.opts.Now,
		Logger:              m.log.With("tenant", e.Tenant, "source", e.Name),
		OnEvent: func(ev m365.Event) {
			switch ev.Kind {
			case m365.EventWindow:
				m.opts.Tracker.UpstreamWindow(k.tenant, k.name, ev.Start, ev.End, ev.Records, false)
			case m365.EventGap:
				m.opts.Tracker.UpstreamWindow(k.tenant, k.name, ev.Start, ev.End, 0, true)
			}
		},
	}
	if m.opts.Adjust != nil {
		m.opts.Adjust(&cfg)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return m365.New(cfg, &sink{in: m.opts.Ingest, tenant: k.tenant, source: k.name, log: cfg.Logger,
		rejected: m.rejected.WithLabelValues(k.tenant, k.name)})
}

// loop runs passes until ctx ends: each pass resumes from the checkpoints,
// and is followed by a heartbeat.
func (m *Manager) loop(ctx context.Context, k key, col *m365.Collector, log *slog.Logger) {
	for {
		err := col.Pass(ctx, time.Time{}, time.Time{})
		if ctx.Err() != nil {
			return
		}
		result := "ok"
		if err != nil {
			result = "incomplete"
			log.Warn("collection pass incomplete; the next pass resumes from the checkpoints", "err", err)
		}
		m.passes.WithLabelValues(k.tenant, k.name, result).Inc()
		m.opts.Tracker.Heartbeat(k.tenant, k.name, KindM365, m.opts.Now())
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.opts.Interval):
		}
	}
}

// flushBytes is how much a sink buffers before it commits without waiting
// for the window's end. A blob holds a handful of records, and one
// durable commit per blob made fsync the bottleneck.
const flushBytes = 8 << 20

// sink writes a collector's records through ingest. It buffers the
// records of many blobs into one batch: the collector calls Sync before
// every checkpoint, and Sync returns only once everything written before
// it is durable (ingest acknowledges only durable records).
type sink struct {
	in             Ingester
	tenant, source string
	log            *slog.Logger
	rejected       prometheus.Counter

	mu  sync.Mutex // guards buf
	buf []byte
	// flushing serializes commits, so a Sync waits for a commit already
	// under way, and a failed commit's records go back into buf before
	// anyone can think them durable.
	flushing sync.Mutex
}

// Write adds one content blob's records as NDJSON lines.
func (s *sink) Write(ctx context.Context, _ string, recs []json.RawMessage) error {
	size := 0
	for _, r := range recs {
		size += len(r) + 1
	}
	lines := make([]byte, 0, size)
	for _, r := range recs {
		// A record split over lines would not be one NDJSON line; JSON
		// allows line breaks only as whitespace, which Compact drops.
		if bytes.ContainsAny(r, "\r\n") {
			var c bytes.Buffer
			if err := json.Compact(&c, r); err != nil {
				return fmt.Errorf("record is not JSON: %w", err)
			}
			lines = append(lines, c.Bytes()...)
		} else {
			lines = append(lines, r...)
		}
		lines = append(lines, '\n')
	}
	s.mu.Lock()
	s.buf = append(s.buf, lines...)
	full := len(s.buf) >= flushBytes
	s.mu.Unlock()
	if full {
		return s.flush(ctx)
	}
	return nil
}

// Sync commits everything written so far.
func (s *sink) Sync(ctx context.Context) error { return s.flush(ctx) }

func (s *sink) flush(ctx context.Context) error {
	s.flushing.Lock()
	defer s.flushing.Unlock()
	s.mu.Lock()
	body := s.buf
	s.buf = nil
	s.mu.Unlock()
	if len(body) == 0 {
		return nil
	}
	if err := s.commit(ctx, body); err != nil {
		s.mu.Lock()
		s.buf = append(body, s.buf...)
		s.mu.Unlock()
		return err
	}
	return nil
}

// commit ingests one NDJSON batch, retrying briefly.
func (s *sink) commit(ctx context.Context, body []byte) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		res, err := s.in.Ingest(ctx, ingest.Batch{Tenant: s.tenant, Source: s.source, Body: bytes.NewReader(body), NDJSON: true, SizeHint: int64(len(body))})
		if err == nil {
			if res.Rejected > 0 {
				// Not an error of the batch: retrying would reject the same
				// records again and hold the rest back. Say so and go on.
				s.rejected.Add(float64(res.Rejected))
				first := ""
				if len(res.Errors) > 0 {
					first = res.Errors[0].Error
				}
				s.log.Warn("ingest rejected collected records", "rejected", res.Rejected, "accepted", res.Accepted, "first_error", first)
			}
			return nil
		}
		// A full write queue or a moment of disk trouble passes; after a
		// few tries the window fails and the next pass repeats it.
		if ctx.Err() != nil || attempt == 5 {
			return fmt.Errorf("ingest: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// discard is the sink of the collectors built only to check a
// configuration.
type discard struct{}

func (discard) Write(context.Context, string, []json.RawMessage) error { return nil }

type noTracker struct{}

func (noTracker) Heartbeat(string, string, string, time.Time)                    {}
func (noTracker) UpstreamWindow(string, string, time.Time, time.Time, int, bool) {}
