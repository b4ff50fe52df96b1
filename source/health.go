package source

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Pipeline alert detectors.
const (
	DetectorSilent    = "source-silent"          // no record, and no heartbeat if it sends them
	DetectorNoRecords = "source-no-records"      // heartbeats go on, records stopped
	DetectorLowVolume = "source-low-volume"      // an hour brought far less than learned
	DetectorGap       = "source-sequence-gap"    // numbered batches never arrived
	DetectorExpired   = "source-content-expired" // upstream content expired unfetched
)

// Health values of a Status.
const (
	HealthOK        = "ok"
	HealthLearning  = "learning" // nothing wrong, and too little history to expect anything
	HealthSilent    = "silent"
	HealthNoRecords = "no-records"
	HealthLowVolume = "low-volume"
	HealthGap       = "gap"
)

func (r *Registry) lateness(e *entry) time.Duration {
	if e.Kind == KindM365 {
		return r.cfg.M365Lateness
	}
	return r.cfg.Lateness
}

// recordSilence is how long a source may go without a record. Microsoft
// publishes audit content in blobs some tens of minutes apart, so a
// collector's records come in bursts; a quarter-hour without any is normal.
func (r *Registry) recordSilence(e *entry) time.Duration {
	if e.Kind == KindM365 {
		return max(r.cfg.Silence, time.Hour)
	}
	return r.cfg.Silence
}

// finding is a pipeline alert to raise once the registry's lock is let go.
type finding struct {
	tenant, name, detector, severity, title, episode, why string
	at                                                    time.Time
}

// live judges a source now: its health, why, and what to alert.
func (r *Registry) live(e *entry, now time.Time) (health, reason string, fs []finding) {
	silence, quiet := r.cfg.Silence, r.recordSilence(e)
	exp := expected(e.hours, unixHour(now), e.firstHour)
	// A silence means something only when the source was expected to send
	// at least one record in it; a source of one record a day is not
	// alerted on for a quiet quarter of an hour.
	expectsRecords := exp*quiet.Hours() >= 1
	lastRecord := e.LastRecord
	if lastRecord.IsZero() {
		lastRecord = e.FirstSeen
	}
	add := func(detector, severity, title, episode, why string, at time.Time) {
		if e.Raised[detector] == episode {
			return
		}
		fs = append(fs, finding{e.Tenant, e.Name, detector, severity, title, episode, why, at})
	}
	switch {
	case !e.LastHeartbeat.IsZero() && now.Sub(later(lastRecord, e.LastHeartbeat)) > silence:
		since := later(lastRecord, e.LastHeartbeat)
		health, reason = HealthSilent, fmt.Sprintf("no record and no heartbeat since %s", since.Format(time.RFC3339))
		add(DetectorSilent, "high", "Source stopped delivering", "silent since "+since.Format(time.RFC3339),
			fmt.Sprintf("Source %s (%s) sent neither records nor heartbeats for %s, since %s", e.Name, e.Kind,
				now.Sub(since).Round(time.Second), since.Format(time.RFC3339)), since)
	case !e.LastHeartbeat.IsZero() && now.Sub(lastRecord) > quiet && expectsRecords:
		health, reason = HealthNoRecords, fmt.Sprintf("heartbeats go on, but no record since %s", lastRecord.Format(time.RFC3339))
		add(DetectorNoRecords, "high", "Source is alive but sends no records", "no records since "+lastRecord.Format(time.RFC3339),
			fmt.Sprintf("Source %s (%s) keeps sending heartbeats (latest %s) but no record arrived for %s, since %s; about %.0f records an hour are normal now",
				e.Name, e.Kind, e.LastHeartbeat.Format(time.RFC3339), now.Sub(lastRecord).Round(time.Second), lastRecord.Format(time.RFC3339), exp), lastRecord)
	case e.LastHeartbeat.IsZero() && now.Sub(lastRecord) > quiet && expectsRecords:
		health, reason = HealthSilent, fmt.Sprintf("no record since %s", lastRecord.Format(time.RFC3339))
		add(DetectorSilent, "high", "Source stopped delivering", "silent since "+lastRecord.Format(time.RFC3339),
			fmt.Sprintf("Source %s (%s) sent no record for %s, since %s; about %.0f records an hour are normal now",
				e.Name, e.Kind, now.Sub(lastRecord).Round(time.Second), lastRecord.Format(time.RFC3339), exp), lastRecord)
	}

	// Hours judged for volume: those whose records are all due, not yet
	// judged, and at most a day back.
	due := unixHour(now.Add(-r.lateness(e))) - 1
	for h := max(e.Checked+1, due-23); h <= due; h++ {
		o, x := e.hours[h], expected(e.hours, h, e.firstHour)
		if st := judge(x, o, 0, r.cfg.LowFraction); st == Partial || st == Missing {
			hour := hourTime(h)
			fs = append(fs, finding{e.Tenant, e.Name, DetectorLowVolume, "medium", "Source delivered far fewer records than usual",
				"hour " + hour.Format(time.RFC3339),
				fmt.Sprintf("Source %s delivered %d records for the hour from %s; %.0f were expected from its history", e.Name, o, hour.Format(time.RFC3339), x), hour})
		}
	}
	if health == "" && due >= e.firstHour {
		if o, x := e.hours[due], expected(e.hours, due, e.firstHour); judge(x, o, 0, r.cfg.LowFraction) != Complete && x >= 0 {
			health, reason = HealthLowVolume, fmt.Sprintf("%d records in the hour from %s, %.0f expected", o, hourTime(due).Format(time.RFC3339), x)
		}
	}

	for _, g := range e.Pending {
		if now.Sub(g.Since) >= r.cfg.GapGrace {
			fs = append(fs, finding{e.Tenant, e.Name, DetectorGap, "high", "Numbered batches never arrived",
				fmt.Sprintf("batches %d-%d", g.From, g.To),
				fmt.Sprintf("Source %s: batches %d to %d were never received (missing since %s); their records may be lost",
					e.Name, g.From, g.To, g.Since.Format(time.RFC3339)), g.Since})
		}
	}
	if health == "" {
		for _, g := range e.Gaps {
			if !g.Filled {
				health, reason = HealthGap, fmt.Sprintf("batches %d to %d never arrived", g.From, g.To)
				break
			}
		}
	}
	if health == "" {
		health = HealthOK
		if exp < 0 {
			health = HealthLearning
		}
	}
	return health, reason, fs
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Check judges every source now and raises what is wrong.
func (r *Registry) Check() {
	now := r.cfg.Now().UTC()
	var all []finding
	r.mu.Lock()
	for _, e := range r.sources {
		_, _, fs := r.live(e, now)
		// What is about to be raised is marked first, so a failed raise
		// is logged once rather than retried every check forever.
		for _, f := range fs {
			switch f.detector {
			case DetectorSilent, DetectorNoRecords:
				if e.Raised == nil {
					e.Raised = map[string]string{}
				}
				e.Raised[f.detector] = f.episode
			case DetectorGap:
				e.Pending = moveGap(e, f.episode)
			}
		}
		e.Checked = max(e.Checked, unixHour(now.Add(-r.lateness(e)))-1)
		e.prune(unixHour(now) - keptHours)
		if len(fs) > 0 {
			r.dirty = true
		}
		all = append(all, fs...)
	}
	r.mu.Unlock()
	for _, f := range all {
		r.raise(f.tenant, f.name, f.detector, f.severity, f.title, f.episode, f.at, f.why)
	}
}

// moveGap moves the pending gap named by episode to the reported gaps.
func moveGap(e *entry, episode string) []Gap {
	for i, g := range e.Pending {
		if fmt.Sprintf("batches %d-%d", g.From, g.To) == episode {
			e.Gaps = append(e.Gaps, g)
			if len(e.Gaps) > maxGaps {
				e.Gaps = e.Gaps[len(e.Gaps)-maxGaps:]
			}
			return append(e.Pending[:i], e.Pending[i+1:]...)
		}
	}
	return e.Pending
}

func (e *entry) prune(oldest int64) {
	for h := range e.hours {
		if h < oldest {
			delete(e.hours, h)
		}
	}
}

func (r *Registry) status(e *entry, now time.Time) Status {
	health, reason, _ := r.live(e, now)
	due := unixHour(now.Add(-r.lateness(e))) - 1
	s := Status{Tenant: e.Tenant, Name: e.Name, Kind: e.Kind, Health: health, Reason: reason, FirstSeen: e.FirstSeen,
		LastRecord: e.LastRecord, LastDelivery: e.LastDelivery, LastHeartbeat: e.LastHeartbeat, Records: e.Records,
		LastHour: e.hours[due], Expected: expected(e.hours, due, e.firstHour), Sequence: e.High,
		Gaps: append(append([]Gap(nil), e.Gaps...), e.Pending...), Windows: append([]Window(nil), e.Windows...)}
	if e.Heartbeat != nil {
		hb := *e.Heartbeat
		s.Heartbeat = &hb
	}
	return s
}

// List returns the tenant's sources, by name.
func (r *Registry) List(tenant string) []Status {
	now := r.cfg.Now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Status
	for _, e := range r.sources {
		if e.Tenant == tenant {
			out = append(out, r.status(e, now))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns one source.
func (r *Registry) Get(tenant, name string) (Status, error) {
	now := r.cfg.Now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.sources[key(tenant, name)]
	if e == nil {
		return Status{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return r.status(e, now), nil
}

// MaxCoverageHours bounds one coverage report.
const MaxCoverageHours = 24 * 400

// Coverage reports, for each hour of [from, to), what the source was
// expected to deliver, what is stored, and the hour's status. It counts
// from the store, so it is as true after a crash as before.
func (r *Registry) Coverage(ctx context.Context, tenant, name string, from, to time.Time) (Coverage, error) {
	from, to = from.UTC().Truncate(time.Hour), to.UTC()
	if !to.After(from) {
		return Coverage{}, fmt.Errorf("%w: from %s is not before to %s", ErrInvalid, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if to.Sub(from) > MaxCoverageHours*time.Hour {
		return Coverage{}, fmt.Errorf("%w: at most %d days per report", ErrInvalid, MaxCoverageHours/24)
	}
	now := r.cfg.Now().UTC()
	r.mu.Lock()
	e := r.sources[key(tenant, name)]
	var late time.Duration
	var firstSeen time.Time
	if e != nil {
		late, firstSeen = r.lateness(e), e.FirstSeen
	}
	r.mu.Unlock()
	if e == nil {
		return Coverage{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	histFrom := from.Add(-historyWeeks * week)
	arr, err := r.cfg.Arrivals.Arrivals(ctx, tenant, histFrom, to, map[string]time.Duration{name: late}, late)
	if err != nil {
		return Coverage{}, fmt.Errorf("coverage of %s: %w", name, err)
	}
	counts, lates := map[int64]int64{}, map[int64]int64{}
	first := unixHour(firstSeen)
	for _, a := range arr {
		if a.Source != name {
			continue
		}
		h := unixHour(a.Hour)
		counts[h], lates[h] = a.Records, a.Late
		first = min(first, h)
	}
	c := Coverage{Tenant: tenant, Source: name, From: from, To: to, Hours: []Hour{}}
	for h := unixHour(from); hourTime(h).Before(to); h++ {
		x := expected(counts, h, first)
		hr := Hour{Hour: hourTime(h), Expected: x, Observed: counts[h], Late: lates[h]}
		switch {
		case hourTime(h + 1).Add(late).After(now):
			hr.Status = NotYetDue
		default:
			hr.Status = judge(x, hr.Observed, hr.Late, r.cfg.LowFraction)
		}
		c.Hours = append(c.Hours, hr)
	}
	return c, nil
}
