package source

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/durable"
	"github.com/custos-audit/custos/ingest"
	"github.com/custos-audit/custos/selfaudit"
	"github.com/custos-audit/custos/store"
)

// Arrivals counts stored records per source and hour; the store does.
type Arrivals interface {
	Arrivals(ctx context.Context, tenant string, from, to time.Time, lateness map[string]time.Duration, def time.Duration) ([]store.Arrival, error)
}

// Alerter raises pipeline alerts; the alert store does.
type Alerter interface {
	Raise(alert.Finding) (alert.Alert, bool, error)
}

// Config configures a Registry.
type Config struct {
	Dir      string   // where its state is kept
	Arrivals Arrivals // the store, to recount and to report coverage
	Alerts   Alerter  // nil: trouble is only shown, not alerted
	Tenants  func() []string
	// Silence is how long a source may go without a record (or, for one
	// that heartbeats, without a sign of life) before it is alerted on.
	Silence time.Duration
	// LowFraction: an hour that brought less than this fraction of its
	// expected records is short.
	LowFraction float64
	// Lateness is how long after an hour ends its records still count as
	// on time; Microsoft 365 sources get M365Lateness, as the upstream API
	// itself publishes content up to many hours after the fact.
	Lateness     time.Duration
	M365Lateness time.Duration
	// GapGrace is how long a missing batch number may stay missing (the
	// sender retries, batches overtake each other) before it is a gap.
	GapGrace time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
}

func (c *Config) defaults() {
	if c.Silence <= 0 {
		c.Silence = 15 * time.Minute
	}
	if c.LowFraction <= 0 {
		c.LowFraction = 0.25
	}
	if c.Lateness <= 0 {
		c.Lateness = 15 * time.Minute
	}
	if c.M365Lateness <= 0 {
		c.M365Lateness = 12 * time.Hour
	}
	if c.GapGrace <= 0 {
		c.GapGrace = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Tenants == nil {
		c.Tenants = func() []string { return nil }
	}
}

// keptHours is how far back live hourly counts go: enough for the
// hour-of-week history, and a day more.
const keptHours = historyWeeks*7*24 + 48

// maxGaps bounds the gaps kept per source.
const maxGaps = 100

// maxWindows bounds the upstream windows kept per source.
const maxWindows = 50

// entry is one source's state. Exported fields are persisted.
type entry struct {
	Tenant        string     `json:"tenant"`
	Name          string     `json:"name"`
	Kind          Kind       `json:"kind"`
	FirstSeen     time.Time  `json:"firstSeen"`
	LastRecord    time.Time  `json:"lastRecord,omitzero"`
	LastDelivery  time.Time  `json:"lastDelivery,omitzero"`
	LastHeartbeat time.Time  `json:"lastHeartbeat,omitzero"`
	Records       int64      `json:"records"`
	High          uint64     `json:"high,omitempty"`    // highest batch number received
	Pending       []Gap      `json:"pending,omitempty"` // missing batch numbers, within grace
	Gaps          []Gap      `json:"gaps,omitempty"`    // missing beyond grace: alerted
	Windows       []Window   `json:"windows,omitempty"`
	Heartbeat     *Heartbeat `json:"heartbeat,omitempty"`
	// Raised remembers, per detector, the episode last alerted, so an
	// ongoing silence is one alert, not one per check.
	Raised map[string]string `json:"raised,omitempty"`
	// Checked is the latest hour judged for low volume.
	Checked int64 `json:"checked,omitempty"`

	hours     map[int64]int64 // records per Unix hour of CreationTime
	firstHour int64           // earliest hour with records, or of FirstSeen
}

// Registry tracks the sources of every tenant.
type Registry struct {
	cfg Config

	mu      sync.Mutex
	sources map[string]*entry
	journal *os.File // batch numbers received since the last snapshot
	dirty   bool
}

func (r *Registry) statePath() string   { return filepath.Join(r.cfg.Dir, "sources.json") }
func (r *Registry) journalPath() string { return filepath.Join(r.cfg.Dir, "sources.journal") }

// Open loads the registry kept in cfg.Dir. Call Recount before ingest
// starts so live counts begin from the stored truth.
func Open(cfg Config) (*Registry, error) {
	cfg.defaults()
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("source registry: %w", err)
	}
	r := &Registry{cfg: cfg, sources: map[string]*entry{}}
	var snap struct {
		Sources []*entry `json:"sources"`
	}
	switch b, err := os.ReadFile(r.statePath()); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("source registry: %w", err)
	default:
		if err := json.Unmarshal(b, &snap); err != nil {
			return nil, fmt.Errorf("source registry: %s: %w", r.statePath(), err)
		}
	}
	for _, e := range snap.Sources {
		e.hours = map[int64]int64{}
		e.firstHour = unixHour(e.FirstSeen)
		r.sources[key(e.Tenant, e.Name)] = e
	}
	if err := r.replay(); err != nil {
		return nil, err
	}
	j, err := os.OpenFile(r.journalPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("source registry: %w", err)
	}
	r.journal = j
	return r, nil
}

// journalLine records one numbered batch. Lines are written without fsync:
// they survive the process being killed, which is what a restart must not
// forget (else batches received just before it would later look missing).
type journalLine struct {
	Tenant   string    `json:"t"`
	Source   string    `json:"s"`
	Sequence uint64    `json:"q"`
	At       time.Time `json:"at"`
}

func (r *Registry) replay() error {
	f, err := os.Open(r.journalPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("source registry: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var l journalLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue // a line torn by a crash
		}
		e := r.get(l.Tenant, l.Source, KindForwarder, l.At)
		e.sequence(l.Sequence, l.At)
		n++
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("source registry: journal: %w", err)
	}
	if n > 0 {
		r.dirty = true
	}
	return nil
}

// get returns the entry of a source, creating it.
func (r *Registry) get(tenant, name string, kind Kind, at time.Time) *entry {
	k := key(tenant, name)
	e := r.sources[k]
	if e == nil {
		e = &entry{Tenant: tenant, Name: name, Kind: kind, FirstSeen: at.UTC(), hours: map[int64]int64{}, firstHour: unixHour(at)}
		r.sources[k] = e
		r.dirty = true
	}
	return e
}

// Recount sets the live hourly counts from the stored records of the
// last weeks, and registers sources that delivered before the registry
// knew them.
func (r *Registry) Recount(ctx context.Context) error {
	now := r.cfg.Now()
	from := now.Add(-keptHours * time.Hour).Truncate(time.Hour)
	for _, t := range r.cfg.Tenants() {
		arr, err := r.cfg.Arrivals.Arrivals(ctx, t, from, now.Add(48*time.Hour), nil, 0)
		if err != nil {
			return fmt.Errorf("source registry: recount %s: %w", t, err)
		}
		r.mu.Lock()
		for _, e := range r.sources {
			if e.Tenant == t {
				e.hours = map[int64]int64{}
			}
		}
		for _, a := range arr {
			// custos's own audit records come when admins act, not on
			// any schedule: they are no source to watch.
			if a.Source == "" || a.Source == selfaudit.Source {
				continue
			}
			e := r.get(t, a.Source, KindIngest, now)
			h := unixHour(a.Hour)
			e.hours[h] += a.Records
			e.firstHour = min(e.firstHour, h)
		}
		r.mu.Unlock()
	}
	return nil
}

// Delivered implements ingest.Observer.
func (r *Registry) Delivered(d ingest.Delivery) {
	if d.Source == "" || d.Source == selfaudit.Source {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.get(d.Tenant, d.Source, KindIngest, d.At)
	e.LastDelivery = d.At.UTC()
	if d.Accepted > 0 {
		e.LastRecord = d.At.UTC()
		e.Records += int64(d.Accepted)
	}
	oldest := unixHour(d.At) - keptHours
	for h, n := range d.Hours {
		if h < oldest {
			continue
		}
		e.hours[h] += int64(n)
		e.firstHour = min(e.firstHour, h)
	}
	if d.Sequence > 0 {
		e.sequence(d.Sequence, d.At)
		if r.journal != nil {
			b, _ := json.Marshal(journalLine{d.Tenant, d.Source, d.Sequence, d.At.UTC()})
			if _, err := r.journal.Write(append(b, '\n')); err != nil {
				r.cfg.Logger.Error("source registry: journal write failed", "err", err)
			}
		}
	}
	r.dirty = true
}

// sequence notes that batch n arrived.
func (e *entry) sequence(n uint64, at time.Time) {
	switch {
	case n > e.High:
		if n > e.High+1 {
			e.Pending = append(e.Pending, Gap{From: e.High + 1, To: n - 1, Since: at.UTC()})
		}
		e.High = n
	default:
		// A late batch: it fills a missing number, or is a repeat.
		e.Pending = fill(e.Pending, n, false)
		e.Gaps = fill(e.Gaps, n, true)
	}
}

// fill takes n out of the gaps. In reported gaps (keep) a gap that has no
// number left missing stays, marked Filled; a pending one just goes.
func fill(gaps []Gap, n uint64, keep bool) []Gap {
	for i, g := range gaps {
		if g.Filled || n < g.From || n > g.To {
			continue
		}
		var repl []Gap
		if g.From < n {
			repl = append(repl, Gap{From: g.From, To: n - 1, Since: g.Since})
		}
		if n < g.To {
			repl = append(repl, Gap{From: n + 1, To: g.To, Since: g.Since})
		}
		if len(repl) == 0 && keep {
			gaps[i].Filled = true
			return gaps
		}
		return append(gaps[:i], append(repl, gaps[i+1:]...)...)
	}
	return gaps
}

// Report records a heartbeat a sender posted.
func (r *Registry) Report(tenant, name string, hb Heartbeat) error {
	if err := checkName(name); err != nil {
		return err
	}
	switch hb.Kind {
	case "":
		hb.Kind = KindForwarder
	case KindForwarder, KindM365, KindIngest:
	default:
		return fmt.Errorf("%w: kind %q (want forwarder, m365 or ingest)", ErrInvalid, hb.Kind)
	}
	now := r.cfg.Now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.get(tenant, name, hb.Kind, now)
	e.Kind = hb.Kind
	if hb.Sequence > 0 && hb.Sequence < e.High {
		// The sender numbers from scratch again: its queue was wiped or
		// replaced. What it had queued is unknowable; say so and restart.
		r.cfg.Logger.Warn("source restarted its batch numbers", "tenant", tenant, "source", name, "was", e.High, "now", hb.Sequence)
		e.High, e.Pending = hb.Sequence, nil
	}
	e.LastHeartbeat = now
	e.Heartbeat = &hb
	r.dirty = true
	return nil
}

// Heartbeat notes that an in-server collector is alive.
func (r *Registry) Heartbeat(tenant, name, kind string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.get(tenant, name, Kind(kind), at)
	e.Kind = Kind(kind)
	e.LastHeartbeat = at.UTC()
	r.dirty = true
}

// UpstreamWindow notes a span of upstream content a collector finished,
// or lost because it expired before it was fetched: that is raised at once.
func (r *Registry) UpstreamWindow(tenant, name string, start, end time.Time, records int, expired bool) {
	now := r.cfg.Now().UTC()
	w := Window{Start: start.UTC(), End: end.UTC(), Records: records, Expired: expired, At: now}
	r.mu.Lock()
	e := r.get(tenant, name, KindM365, now)
	e.Kind = KindM365
	e.Windows = append(e.Windows, w)
	if len(e.Windows) > maxWindows {
		// Completed windows go first; expired ones are what an operator
		// needs to see.
		for i, x := range e.Windows {
			if !x.Expired {
				e.Windows = append(e.Windows[:i], e.Windows[i+1:]...)
				break
			}
		}
		if len(e.Windows) > maxWindows {
			e.Windows = e.Windows[1:]
		}
	}
	r.dirty = true
	r.mu.Unlock()
	if expired {
		episode := fmt.Sprintf("expired %s/%s", w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
		r.raise(tenant, name, "source-content-expired", "high", "Upstream content expired before it was collected", episode, start,
			fmt.Sprintf("Source %s: content for %s to %s expired upstream before custos fetched it; those records are lost to the API",
				name, w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339)))
	}
}

// raise opens or joins a pipeline alert. The episode stands in for a
// record id: the same episode is counted once.
func (r *Registry) raise(tenant, name, detector, severity, title, episode string, at time.Time, why string) {
	if r.cfg.Alerts == nil {
		return
	}
	_, fresh, err := r.cfg.Alerts.Raise(alert.Finding{Tenant: tenant, Detector: detector, Title: title, Severity: severity,
		Entity: name, RecordID: episode, At: at, Explanation: why})
	if err != nil {
		r.cfg.Logger.Error("pipeline alert lost", "tenant", tenant, "source", name, "detector", detector, "err", err)
		return
	}
	if fresh {
		r.cfg.Logger.Warn("pipeline alert", "tenant", tenant, "source", name, "detector", detector, "why", why)
	}
}

// Save writes the registry's state if it changed, and empties the journal
// it now holds.
func (r *Registry) Save() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.dirty {
		return nil
	}
	snap := struct {
		Sources []*entry `json:"sources"`
	}{}
	for _, e := range r.sources {
		snap.Sources = append(snap.Sources, e)
	}
	sort.Slice(snap.Sources, func(i, j int) bool {
		a, b := snap.Sources[i], snap.Sources[j]
		return a.Tenant < b.Tenant || a.Tenant == b.Tenant && a.Name < b.Name
	})
	b, err := json.MarshalIndent(snap, "", " ")
	if err != nil {
		return fmt.Errorf("source registry: %w", err)
	}
	if err := durable.WriteFile(r.statePath(), b, 0o640); err != nil {
		return fmt.Errorf("source registry: %w", err)
	}
	if r.journal != nil {
		if err := r.journal.Truncate(0); err != nil {
			return fmt.Errorf("source registry: journal: %w", err)
		}
	}
	r.dirty = false
	return nil
}

// Close saves the state.
func (r *Registry) Close() error {
	err := r.Save()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.journal != nil {
		err = errors.Join(err, r.journal.Close())
		r.journal = nil
	}
	return err
}

// Run checks every source's health every interval, and saves the state,
// until ctx ends.
func (r *Registry) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.Check()
		if err := r.Save(); err != nil {
			r.cfg.Logger.Error("saving source state", "err", err)
		}
	}
}
