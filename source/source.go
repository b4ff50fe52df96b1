// Package source keeps track of everything that delivers records to a
// tenant (forwarders, Microsoft 365 collectors, direct ingest tokens) and
// notices when one stops: the September 2024 failure mode, where agents
// went on running while no logs reached anyone, is what it is built for.
//
// A source is known by its tenant and name. The registry learns of it from
// the batches ingest stores (ingest.Observer), from heartbeats, and from
// a collector's upstream windows. Its health is judged against what the
// source itself delivered before: records per hour of the week. Sequence
// numbers that forwarders put on their batches reveal a batch that never
// arrived. Trouble is raised as an alert, through the same store and
// notifications as detection's alerts.
//
// Hourly counts are never trusted from memory alone: on open they are
// recounted from the stored records, and the coverage report is computed
// from the store, so both stay true across crashes.
package source

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"
)

// Kind says what sort of sender a source is.
type Kind string

const (
	KindIngest    Kind = "ingest"    // records posted with a token, no heartbeats
	KindForwarder Kind = "forwarder" // custos forward
	KindM365      Kind = "m365"      // the Management Activity API collector
)

// Errors.
var (
	ErrNotFound = errors.New("no such source")
	ErrInvalid  = errors.New("invalid source request")
)

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// ValidName reports whether s can name a source.
func ValidName(s string) bool { return namePattern.MatchString(s) }

// Heartbeat is what a sender reports about itself, besides its records.
type Heartbeat struct {
	Kind     Kind   `json:"kind,omitempty"`
	Interval int    `json:"interval_s,omitempty"` // seconds between heartbeats
	Version  string `json:"version,omitempty"`
	// Sequence is the last batch number the sender assigned; Acked the
	// highest the server acknowledged, all below it included.
	Sequence        uint64 `json:"sequence,omitempty"`
	Acked           uint64 `json:"acked,omitempty"`
	RecordsRead     int64  `json:"records_read,omitempty"`
	RecordsSent     int64  `json:"records_sent,omitempty"`
	RecordsRejected int64  `json:"records_rejected,omitempty"`
	QueueRecords    int64  `json:"queue_records,omitempty"`
	QueueBytes      int64  `json:"queue_bytes,omitempty"`
	Dropped         int64  `json:"dropped,omitempty"`
}

// Window is a span of upstream content a collector finished or lost.
type Window struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Records int       `json:"records"`
	Expired bool      `json:"expired,omitempty"` // the content expired upstream before it was fetched
	At      time.Time `json:"at"`                // when custos learned of it
}

// Gap is a run of batch numbers a sender assigned that never arrived.
type Gap struct {
	From  uint64    `json:"from"`
	To    uint64    `json:"to"`
	Since time.Time `json:"since"` // when the server first missed them
	// Filled is set when the batches arrived after all, late.
	Filled bool `json:"filled,omitempty"`
}

// Status is a source as listed.
type Status struct {
	Tenant        string    `json:"tenant"`
	Name          string    `json:"name"`
	Kind          Kind      `json:"kind"`
	Health        string    `json:"health"` // ok, silent, no-records, gap, learning
	Reason        string    `json:"reason,omitempty"`
	FirstSeen     time.Time `json:"firstSeen"`
	LastRecord    time.Time `json:"lastRecord,omitzero"`    // when its latest new record was received
	LastDelivery  time.Time `json:"lastDelivery,omitzero"`  // when its latest batch was received
	LastHeartbeat time.Time `json:"lastHeartbeat,omitzero"` // ... and heartbeat
	Records       int64     `json:"records"`                // new records stored since custos first saw it
	// LastHour and Expected compare the records of the last complete hour
	// of the week with what the source delivered in the same hour of past
	// weeks (or the past day, while it has less history); Expected is -1
	// while nothing is learned.
	LastHour  int64      `json:"lastHour"`
	Expected  float64    `json:"expected"`
	Sequence  uint64     `json:"sequence,omitempty"` // highest batch number received
	Gaps      []Gap      `json:"gaps,omitempty"`
	Windows   []Window   `json:"windows,omitempty"` // latest upstream windows, expired ones kept longer
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
}

// Hour is one hour of a source's coverage.
type Hour struct {
	Hour     time.Time `json:"hour"`
	Expected float64   `json:"expected"` // -1: nothing learned yet
	Observed int64     `json:"observed"`
	Late     int64     `json:"late"` // of Observed, received after the hour was due
	Status   string    `json:"status"`
}

// Coverage statuses.
const (
	Complete   = "complete"    // what was expected arrived in time
	Partial    = "partial"     // some arrived, too little
	Missing    = "missing"     // nothing arrived though records were expected
	LateFilled = "late-filled" // complete now, but only thanks to records that came late
	NotYetDue  = "pending"     // the hour is not due yet
	Unknown    = "unknown"     // nothing arrived and nothing is learned to expect
)

// Coverage is the completeness log of one source over a span.
type Coverage struct {
	Tenant string    `json:"tenant"`
	Source string    `json:"source"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Hours  []Hour    `json:"hours"`
}

// week is the period whose hours are compared: the same hour of the week.
const week = 7 * 24 * time.Hour

// historyWeeks is how many past weeks the expected volume of an hour is
// learned from.
const historyWeeks = 4

// expected learns what an hour should bring from counts, keyed by Unix hour:
// the median of the same hour in the past weeks the source existed in, when
// it has at least two; else the mean hour of the day before, when it
// existed then; else -1. first is the Unix hour the source was first seen.
func expected(counts map[int64]int64, h, first int64) float64 {
	var past []int64
	for k := int64(1); k <= historyWeeks; k++ {
		p := h - k*int64(week/time.Hour)
		if p < first {
			break
		}
		past = append(past, counts[p])
	}
	if len(past) >= 2 {
		sort.Slice(past, func(i, j int) bool { return past[i] < past[j] })
		n := len(past)
		if n%2 == 1 {
			return float64(past[n/2])
		}
		return float64(past[n/2-1]+past[n/2]) / 2
	}
	if h-24 < first {
		return -1
	}
	var sum int64
	for p := h - 24; p < h; p++ {
		sum += counts[p]
	}
	return float64(sum) / 24
}

// Thresholds of judgement. An hour is short when it brought less than
// lowFraction of what was expected, and only when enough was expected for
// a shortfall to mean something: a source of three records an hour that
// sends none in one hour is within chance.
const (
	minExpectedForPartial = 10
	minExpectedForMissing = 1
)

// judge gives an hour's status.
func judge(exp float64, observed, late int64, lowFraction float64) string {
	short := func(n int64) string {
		switch {
		case exp < 0:
			if n > 0 {
				return Complete
			}
			return Unknown
		case n == 0 && exp >= minExpectedForMissing:
			return Missing
		case exp >= minExpectedForPartial && float64(n) < lowFraction*exp:
			return Partial
		}
		return Complete
	}
	now := short(observed)
	if now == Complete && late > 0 {
		if before := short(observed - late); before == Missing || before == Partial {
			return LateFilled
		}
	}
	return now
}

func unixHour(t time.Time) int64 { return t.Unix() / 3600 }

func hourTime(h int64) time.Time { return time.Unix(h*3600, 0).UTC() }

func key(tenant, name string) string { return tenant + "\x00" + name }

func checkName(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("%w: source name %q (want letters, digits and . _ : @ -, at most 128)", ErrInvalid, name)
	}
	return nil
}
