package retention

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-audit/custos/store"
)

// Expirer removes expired records; *store.DB is one.
type Expirer interface {
	Expire(ctx context.Context, tenant string, e store.Expiry, dryRun bool) (store.ExpiryReport, error)
}

// Removed counts the records of one UTC day removed under one policy.
type Removed struct {
	Day     string `json:"day"`
	Policy  string `json:"policy"` // a policy's name, or "(default)"
	Records int64  `json:"records"`
}

// DefaultPolicy names the server's default retention in reports.
const DefaultPolicy = "(default)"

// Report is the outcome of one enforcement run for a tenant.
type Report struct {
	Tenant         string    `json:"tenant"`
	DryRun         bool      `json:"dryRun"`
	Started        time.Time `json:"started"`
	Finished       time.Time `json:"finished"`
	Held           bool      `json:"held"`                // a tenant-wide legal hold: nothing removed
	HeldUsers      []string  `json:"heldUsers,omitempty"` // users whose records were kept by a hold
	DefaultDays    int       `json:"defaultDays"`         // 0: records no policy matches are kept forever
	Policies       int       `json:"policies"`
	PartsChecked   int       `json:"partsChecked"`
	PartsDropped   int       `json:"partsDropped"`
	PartsRewritten int       `json:"partsRewritten"`
	Records        int64     `json:"records"` // removed, or that a dry run would remove
	BytesFreed     int64     `json:"bytesFreed"`
	Removed        []Removed `json:"removed"`
	Error          string    `json:"error,omitempty"`
}

// EnforcerConfig wires an Enforcer.
type EnforcerConfig struct {
	Registry    *Registry
	Store       Expirer
	Tenants     func() []string // every tenant, for the periodic run
	DefaultDays int             // retention when no policy matches; 0 keeps forever
	Interval    time.Duration   // between periodic runs (default 1h)
	Now         func() time.Time
	Logger      *slog.Logger
	// FirstRun is how long after Loop starts the first periodic run
	// begins (default 1m, so a restart does not race the WAL replay's seals).
	FirstRun time.Duration
	// OnReport is told of every periodic run (self-audit records it; runs
	// asked for through the API are recorded there, with who asked).
	OnReport func(Report)
}

// Enforcer applies the retention policies to the store, periodically and
// on demand. Runs are serialised: two at once would only compete for the
// same parts.
type Enforcer struct {
	cfg EnforcerConfig
	mu  sync.Mutex

	runs, failures, removed atomic.Int64
	lastSuccess             atomic.Int64 // unix seconds
}

// NewEnforcer returns an enforcer; Loop runs it periodically.
func NewEnforcer(cfg EnforcerConfig) *Enforcer {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Hour
	}
	if cfg.FirstRun <= 0 {
		cfg.FirstRun = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Enforcer{cfg: cfg}
}

// Registry is where the enforcer reads policies and holds.
func (e *Enforcer) Registry() *Registry { return e.cfg.Registry }

// DefaultDays is the retention of records no policy matches; 0 is forever.
func (e *Enforcer) DefaultDays() int { return max(e.cfg.DefaultDays, 0) }

// Expiry compiles tenant's policies and hold at now into what the store
// understands, with the policies in rule order, and whether a tenant-wide
// hold suspends all deletion.
func (e *Enforcer) Expiry(tenant string, now time.Time) (store.Expiry, []Policy, bool) {
	ps := e.cfg.Registry.Policies(tenant)
	h := e.cfg.Registry.Hold(tenant)
	var x store.Expiry
	if e.cfg.DefaultDays > 0 {
		x.Default = now.AddDate(0, 0, -e.cfg.DefaultDays)
	}
	for _, p := range ps {
		x.Rules = append(x.Rules, store.ExpiryRule{
			RecordTypes: p.recordTypes(),
			Operations:  p.Operations,
			UserIDs:     p.UserIDs,
			Before:      p.Duration.Cutoff(now),
		})
	}
	x.Held = h.Users
	return x, ps, h.All
}

// Run enforces tenant's retention now, or with dryRun reports what it
// would remove. Partial progress is kept when it fails: every part is
// replaced atomically, and the next run picks up the rest.
func (e *Enforcer) Run(ctx context.Context, tenant string, dryRun bool) (Report, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Now().UTC()
	x, ps, held := e.Expiry(tenant, now)
	rep := Report{Tenant: tenant, DryRun: dryRun, Started: now, DefaultDays: max(e.cfg.DefaultDays, 0),
		Policies: len(ps), Held: held, HeldUsers: x.Held, Removed: []Removed{}}
	var err error
	if !held {
		var sr store.ExpiryReport
		sr, err = e.cfg.Store.Expire(ctx, tenant, x, dryRun)
		rep.PartsChecked, rep.PartsDropped, rep.PartsRewritten = sr.PartsChecked, sr.PartsDropped, sr.PartsRewritten
		rep.Records, rep.BytesFreed = sr.Records, sr.BytesFreed
		for _, g := range sr.Groups {
			name := DefaultPolicy
			if g.Rule >= 0 && g.Rule < len(ps) {
				name = ps[g.Rule].Name
			}
			rep.Removed = append(rep.Removed, Removed{Day: g.Day, Policy: name, Records: g.Records})
		}
	}
	rep.Finished = e.cfg.Now().UTC()
	if err != nil {
		rep.Error = err.Error()
	}
	if !dryRun {
		e.runs.Add(1)
		e.removed.Add(rep.Records)
		if err != nil {
			e.failures.Add(1)
		} else {
			e.lastSuccess.Store(rep.Finished.Unix())
		}
		if serr := e.cfg.Registry.setLastReport(rep); serr != nil {
			e.cfg.Logger.Warn("retention: keeping the run's report failed", "tenant", tenant, "err", serr)
		}
	}
	if err != nil {
		return rep, fmt.Errorf("retention: enforce tenant %s: %w", tenant, err)
	}
	return rep, nil
}

// Loop runs every tenant's enforcement once per interval, the first after
// FirstRun, until ctx ends.
func (e *Enforcer) Loop(ctx context.Context) {
	wait := e.cfg.FirstRun
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = e.cfg.Interval
		for _, t := range e.cfg.Tenants() {
			rep, err := e.Run(ctx, t, false)
			if e.cfg.OnReport != nil && ctx.Err() == nil {
				e.cfg.OnReport(rep)
			}
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				e.cfg.Logger.Error("retention enforcement failed; it resumes at the next run", "tenant", t, "err", err)
			case rep.Records > 0 || rep.Held:
				e.cfg.Logger.Info("retention enforced", "tenant", t, "records", rep.Records,
					"parts_dropped", rep.PartsDropped, "parts_rewritten", rep.PartsRewritten,
					"bytes_freed", rep.BytesFreed, "held", rep.Held, "default", KeepDays(rep.DefaultDays))
			}
		}
	}
}

var (
	descRuns     = prometheus.NewDesc("custos_retention_runs_total", "Retention enforcement runs (dry runs not counted).", nil, nil)
	descFailures = prometheus.NewDesc("custos_retention_failures_total", "Retention enforcement runs that failed.", nil, nil)
	descRemoved  = prometheus.NewDesc("custos_retention_removed_records_total", "Records removed by retention enforcement.", nil, nil)
	descLast     = prometheus.NewDesc("custos_retention_last_success_timestamp_seconds", "When a retention run last finished without error.", nil, nil)
)

// Collector exposes the enforcer's counters to Prometheus.
func (e *Enforcer) Collector() prometheus.Collector { return enforcerCollector{e} }

type enforcerCollector struct{ e *Enforcer }

func (c enforcerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRuns, descFailures, descRemoved, descLast} {
		ch <- d
	}
}

func (c enforcerCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descRuns, c.e.runs.Load())
	counter(descFailures, c.e.failures.Load())
	counter(descRemoved, c.e.removed.Load())
	ch <- prometheus.MustNewConstMetric(descLast, prometheus.GaugeValue, float64(c.e.lastSuccess.Load()))
}
