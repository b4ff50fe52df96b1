// Package detect finds attacks in audit records as they are committed: it
// learns, per tenant, what is normal (which applications read mail, from
// which networks users work, whose mailboxes they open, how much) and
// raises an alert for what is new, and it evaluates Sigma rules.
//
// The engine reads the store's feed of committed records, in commit order.
// Its state (the baselines and the feed position they include) is
// checkpointed to one file; after a restart it replays the records after
// the checkpoint, and the alert store counts each replayed finding once, so
// no alert is lost or duplicated.
package detect

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/durable"
	"github.com/custos-audit/custos/rules"
	"github.com/custos-audit/custos/store"
)

// Feed is the store's feed of committed records (store.Feed).
type Feed interface {
	Read(ctx context.Context, after uint64, fn func(seq uint64, recs []audit.Record) error) (uint64, error)
	Ack(seq uint64) error
}

// Alerts is where findings go (alert.Store).
type Alerts interface {
	Raise(f alert.Finding) (alert.Alert, bool, error)
}

// Geo names the network an address belongs to; see OpenGeo.
type Geo interface {
	Lookup(addr netip.Addr) (Network, bool)
}

// Network is what enrichment knows of an address.
type Network struct {
	ASN     uint32
	Org     string
	Country string // ISO 3166-1 alpha-2
}

// Options tune the engine. Zero values take the defaults.
type Options struct {
	Learning      time.Duration // a tenant's baselines learn this long before they alert (default 14 days)
	Follow        time.Duration // records with a newly flagged value join its alert for this long (default 7 days)
	Forget        time.Duration // values unseen this long are forgotten (default 90 days)
	VolumeFactor  float64       // a mailbox's day is a spike above this many times its peak day... (default 3)
	VolumeFloor   int64         // ... and at least this many items above it (default 500)
	MinVolumeDays int           // days of history a mailbox needs before spikes are judged (default 7)
	Checkpoint    time.Duration // how often state is saved (default 30s)
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

func (o *Options) setDefaults() {
	if o.Learning <= 0 {
		o.Learning = 14 * 24 * time.Hour
	}
	if o.Follow <= 0 {
		o.Follow = 7 * 24 * time.Hour
	}
	if o.Forget <= 0 {
		o.Forget = 90 * 24 * time.Hour
	}
	if o.VolumeFactor <= 0 {
		o.VolumeFactor = 3
	}
	if o.VolumeFloor <= 0 {
		o.VolumeFloor = 500
	}
	if o.MinVolumeDays <= 0 {
		o.MinVolumeDays = 7
	}
	if o.Checkpoint <= 0 {
		o.Checkpoint = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Engine is the detection engine.
type Engine struct {
	dir    string
	opts   Options
	feed   Feed
	alerts Alerts
	geo    Geo
	nets   struct { // networks of addresses (ClientIP) seen, so each is parsed and looked up once
		mu sync.Mutex
		m  map[string][]netKey
	}
	clients clientCache
	log     *slog.Logger
	met     *metrics

	mu        sync.Mutex // guards the state below against rebuilds and API readers
	seq       uint64     // last feed frame applied to the baselines
	tenants   map[string]*baseline
	allow     *Allowlist
	rules     atomic.Pointer[[]*rules.Rule] // the server's: bundled and --rules
	own       *TenantRules                  // each tenant's, from the API
	lastSaved time.Time
	evaluated atomic.Int64
}

// Evaluated returns how many records the engine has evaluated since it
// was opened.
func (e *Engine) Evaluated() int64 { return e.evaluated.Load() }

// Open loads the engine's state from dir (created if needed).
func Open(dir string, feed Feed, alerts Alerts, geo Geo, opts Options) (*Engine, error) {
	opts.setDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	e := &Engine{dir: dir, opts: opts, feed: feed, alerts: alerts, geo: geo, log: opts.Logger,
		tenants: map[string]*baseline{}, met: newMetrics(opts.Registerer)}
	if err := e.load(); err != nil {
		return nil, err
	}
	allow, err := loadAllowlist(filepath.Join(dir, "allowlist.json"))
	if err != nil {
		return nil, err
	}
	e.allow = allow
	if e.own, err = loadTenantRules(filepath.Join(dir, "tenant-rules.json")); err != nil {
		return nil, err
	}
	empty := []*rules.Rule{}
	e.rules.Store(&empty)
	return e, nil
}

// SetRules replaces the Sigma rules evaluated on every record.
func (e *Engine) SetRules(rs []*rules.Rule) {
	rs = append([]*rules.Rule(nil), rs...)
	e.rules.Store(&rs)
}

// Rules returns the server's Sigma rules.
func (e *Engine) Rules() []*rules.Rule { return *e.rules.Load() }

// TenantRules returns the rules tenants added for themselves.
func (e *Engine) TenantRules() *TenantRules { return e.own }

// ServerRule reports whether one of the server's rules has id.
func (e *Engine) ServerRule(id string) bool {
	return slices.ContainsFunc(e.Rules(), func(r *rules.Rule) bool { return r.ID == id })
}

// Allowlist returns the allowlists.
func (e *Engine) Allowlist() *Allowlist { return e.allow }

// Run evaluates committed records until ctx ends, then saves its state.
func (e *Engine) Run(ctx context.Context) error {
	defer func() {
		if err := e.Save(); err != nil {
			e.log.Error("saving detection state", "err", err)
		}
	}()
	for {
		e.mu.Lock()
		after := e.seq
		e.mu.Unlock()
		last, err := e.feed.Read(ctx, after, func(seq uint64, recs []audit.Record) error {
			e.apply(seq, recs)
			return nil
		})
		var gap *store.FeedGapError
		switch {
		case errors.As(err, &gap):
			// Detection missed these records for good: say so loudly.
			e.log.Error("detection skipped records the store no longer holds", "from", gap.From, "to", gap.To)
			e.met.skipped.Add(float64(gap.To - gap.From + 1))
			e.mu.Lock()
			e.seq = gap.To
			e.mu.Unlock()
			continue
		case ctx.Err() != nil:
			return nil
		case err != nil:
			e.log.Error("reading the record feed", "err", err, "after", last)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
		if time.Since(e.lastSaved) >= e.opts.Checkpoint {
			if err := e.Save(); err != nil {
				e.log.Error("saving detection state", "err", err)
			}
		}
	}
}

// apply evaluates one committed frame.
func (e *Engine) apply(seq uint64, recs []audit.Record) {
	start := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if seq <= e.seq {
		return
	}
	rs := *e.rules.Load()
	for i := range recs {
		r := &recs[i]
		b := e.tenants[r.Tenant]
		if b == nil {
			b = newBaseline()
			e.tenants[r.Tenant] = b
		}
		// Positions leave room for 2^24 records a frame.
		pos := seq<<24 | uint64(i+1)
		var findings []alert.Finding
		if !ownRecord(r) {
			findings = e.detect(b, r, pos, start)
		}
		if own := e.own.For(r.Tenant); len(rs)+len(own) > 0 {
			findings = append(findings, ruleFindings(r, pos, rs, own)...)
		}
		for _, f := range findings {
			e.raise(f)
		}
	}
	e.seq = seq
	e.evaluated.Add(int64(len(recs)))
	e.met.records.Add(float64(len(recs)))
	e.met.seconds.Add(time.Since(start).Seconds())
}

// ownRecord reports whether r is custos's own audit record (a search, a
// settings change): it says nothing of the tenant's normal activity, so
// baselines skip it; rules may still match it.
func ownRecord(r *audit.Record) bool { return r.RecordType == int32(audit.CustosAudit) }

func (e *Engine) raise(f alert.Finding) {
	if e.allow.allows(f) {
		e.met.allowed.WithLabelValues(f.Detector).Inc()
		return
	}
	_, _, err := e.alerts.Raise(f)
	if err != nil {
		// The alert store is local disk; if it fails, detection cannot
		// do its job and the operator must know.
		e.log.Error("raising an alert", "detector", f.Detector, "tenant", f.Tenant, "record", f.RecordID, "err", err)
		e.met.failed.Inc()
		return
	}
	e.met.findings.WithLabelValues(f.Detector).Inc()
}

// ruleFindings evaluates the server's and the tenant's Sigma rules on r in
// one pass, so the record is decoded once.
func ruleFindings(r *audit.Record, pos uint64, sets ...[]*rules.Rule) []alert.Finding {
	var out []alert.Finding
	for _, rule := range rules.Matching(r, sets...) {
		id := rule.ID
		if id == "" {
			id = rule.Title
		}
		entity := strings.ToLower(r.UserID)
		if entity == "" {
			entity = r.ObjectID
		}
		sev := strings.ToLower(rule.Level)
		if sev == "" {
			sev = "medium"
		}
		out = append(out, alert.Finding{Tenant: r.Tenant, Detector: RulePrefix + id, Title: rule.Title, Severity: sev,
			Entity: entity, RecordID: r.ID, At: r.CreationTime, Pos: pos, Related: r.ObjectID,
			Explanation: fmt.Sprintf("%s: %s by %s on %s", rule.Title, r.Operation, orNone(r.UserID), r.ObjectID)})
	}
	return out
}

// state is what a checkpoint holds.
type state struct {
	Version int
	Seq     uint64
	Tenants map[string]*baseline
}

func (e *Engine) statePath() string { return filepath.Join(e.dir, "state.gob.zst") }

func (e *Engine) load() error {
	b, err := os.ReadFile(e.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detect: read state: %w", err)
	}
	dec, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("detect: read state: %w", err)
	}
	defer dec.Close()
	var st state
	if err := gob.NewDecoder(dec).Decode(&st); err != nil {
		return fmt.Errorf("detect: decode state %s: %w", e.statePath(), err)
	}
	if st.Version != 1 {
		return fmt.Errorf("detect: state %s has unsupported version %d", e.statePath(), st.Version)
	}
	e.seq, e.tenants = st.Seq, st.Tenants
	if e.tenants == nil {
		e.tenants = map[string]*baseline{}
	}
	for _, b := range e.tenants {
		if b.Seen == nil {
			b.Seen = map[string]*value{}
		}
		if b.Volume == nil {
			b.Volume = map[string]*volume{}
		}
	}
	return nil
}

// Save checkpoints the baselines and acknowledges the feed up to them.
func (e *Engine) Save() error {
	seq, err := e.save()
	if err != nil || seq == 0 || e.feed == nil {
		return err
	}
	// Only now may the store drop the frames: the saved state covers them.
	if err := e.feed.Ack(seq); err != nil {
		return fmt.Errorf("detect: %w", err)
	}
	return nil
}

// saveOnly writes the checkpoint without acknowledging the feed (tests).
func (e *Engine) saveOnly() error { _, err := e.save(); return err }

// save writes the checkpoint and returns the feed position it covers.
func (e *Engine) save() (uint64, error) {
	e.mu.Lock()
	forgotten := 0
	for _, b := range e.tenants {
		forgotten += b.forget(&e.opts)
	}
	var buf bytes.Buffer
	enc, _ := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
	err := gob.NewEncoder(enc).Encode(state{Version: 1, Seq: e.seq, Tenants: e.tenants})
	seq := e.seq
	keys := 0
	for _, b := range e.tenants {
		keys += len(b.Seen)
	}
	e.mu.Unlock()
	if cerr := enc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("detect: encode state: %w", err)
	}
	if err := durable.WriteFile(e.statePath(), buf.Bytes(), 0o600); err != nil {
		return 0, fmt.Errorf("detect: %w", err)
	}
	e.lastSaved = time.Now()
	e.met.stateBytes.Set(float64(buf.Len()))
	e.met.values.Set(float64(keys))
	if forgotten > 0 {
		e.log.Info("baselines forgot values not seen for a while", "values", forgotten)
	}
	return seq, nil
}

// Position returns the last feed frame evaluated.
func (e *Engine) Position() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seq
}

// TenantStatus summarises one tenant's baselines.
type TenantStatus struct {
	Tenant        string    `json:"tenant"`
	First         time.Time `json:"first"`         // the earliest record learned from
	Latest        time.Time `json:"latest"`        // the latest
	LearningUntil time.Time `json:"learningUntil"` // alerts start from records after this
	Values        int       `json:"values"`        // values learned (applications, networks, clients, ...)
	Mailboxes     int       `json:"mailboxes"`     // mailboxes with a volume history
}

// Status returns a summary of the tenant's baselines.
func (e *Engine) Status(tenant string) TenantStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := TenantStatus{Tenant: tenant}
	b := e.tenants[tenant]
	if b == nil || b.First == 0 {
		return st
	}
	st.First, st.Latest = time.Unix(b.First, 0).UTC(), time.Unix(b.Latest, 0).UTC()
	st.LearningUntil = st.First.Add(e.opts.Learning)
	st.Values, st.Mailboxes = len(b.Seen), len(b.Volume)
	return st
}

type metrics struct {
	records, seconds, failed, skipped prometheus.Counter
	findings, allowed                 *prometheus.CounterVec
	stateBytes, values                prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		records:    prometheus.NewCounter(prometheus.CounterOpts{Name: "custos_detect_records_total", Help: "Records evaluated by detection."}),
		seconds:    prometheus.NewCounter(prometheus.CounterOpts{Name: "custos_detect_seconds_total", Help: "Time spent evaluating records."}),
		failed:     prometheus.NewCounter(prometheus.CounterOpts{Name: "custos_detect_raise_failures_total", Help: "Findings the alert store failed to record."}),
		skipped:    prometheus.NewCounter(prometheus.CounterOpts{Name: "custos_detect_skipped_frames_total", Help: "Write-ahead log frames detection never saw because it fell too far behind."}),
		findings:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_detect_findings_total", Help: "Findings raised, by detector."}, []string{"detector"}),
		allowed:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_detect_allowlisted_total", Help: "Findings suppressed by an allowlist, by detector."}, []string{"detector"}),
		stateBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "custos_detect_state_bytes", Help: "Size of the last baseline checkpoint, compressed."}),
		values:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "custos_detect_baseline_values", Help: "Values the baselines hold, all tenants."}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.seconds, m.failed, m.skipped, m.findings, m.allowed, m.stateBytes, m.values)
	}
	return m
}
