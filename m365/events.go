package m365

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// EventKind says what an Event reports.
type EventKind int

const (
	// EventWindow: a window [Start, End) of one content type is complete and
	// checkpointed; Blobs and Records count what it delivered.
	EventWindow EventKind = iota + 1
	// EventGap: content that can no longer be retrieved. ContentID is set
	// for an expired blob (AF20051); otherwise [Start, End) is a span that
	// fell out of the API's 7-day retention before it was collected.
	EventGap
	// EventRetry: a request is retried after Err (throttling, server error,
	// network, expired token).
	EventRetry
	// EventSubscriptionStarted: the collector started the subscription of
	// ContentType.
	EventSubscriptionStarted
	// EventTypeFailed: collection of ContentType stopped with Err (e.g. its
	// subscription is disabled, AF20023); other content types go on.
	EventTypeFailed
)

func (k EventKind) String() string {
	switch k {
	case EventWindow:
		return "window"
	case EventGap:
		return "gap"
	case EventRetry:
		return "retry"
	case EventSubscriptionStarted:
		return "subscription-started"
	case EventTypeFailed:
		return "type-failed"
	}
	return "unknown"
}

// Event is progress or trouble reported through Config.OnEvent.
type Event struct {
	Kind        EventKind
	Tenant      string
	ContentType string
	Start, End  time.Time
	ContentID   string
	Blobs       int
	Records     int
	Attempt     int
	Err         error
}

// Stats are the collector's counters since it was created.
type Stats struct {
	Windows      int64 // windows completed and checkpointed
	Blobs        int64 // content blobs fetched and accepted by the sink
	Records      int64 // records handed to the sink
	SkippedBlobs int64 // blobs listed again (overlap, duplicate listing) and not fetched again
	Retries      int64 // requests retried
	Gaps         int64 // expired blobs and spans lost to retention
	Subscribed   int64 // subscriptions started
}

type counters struct {
	windows, blobs, records, skipped, retries, gaps, subscribed atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Windows: c.windows.Load(), Blobs: c.blobs.Load(), Records: c.records.Load(),
		SkippedBlobs: c.skipped.Load(), Retries: c.retries.Load(), Gaps: c.gaps.Load(),
		Subscribed: c.subscribed.Load(),
	}
}

// metrics are the Prometheus view of the same counts, per tenant and
// content type. They are owned by the Collector, which is itself a
// prometheus.Collector, so nothing is registered globally.
type metrics struct {
	windows, blobs, records, gaps *prometheus.CounterVec
	retries                       *prometheus.CounterVec
	checkpoint                    *prometheus.GaugeVec
}

func newMetrics() *metrics {
	tc := []string{"tenant", "content_type"}
	return &metrics{
		windows:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_m365_windows_total", Help: "Content listing windows completed and checkpointed."}, tc),
		blobs:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_m365_blobs_total", Help: "Content blobs fetched and accepted by the sink."}, tc),
		records:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_m365_records_total", Help: "Records handed to the sink."}, tc),
		gaps:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_m365_gaps_total", Help: "Content that expired before it was collected (blobs and retention spans)."}, tc),
		retries:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_m365_retries_total", Help: "API requests retried, by reason (throttled, server, network, token)."}, []string{"tenant", "reason"}),
		checkpoint: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "custos_m365_checkpoint_timestamp_seconds", Help: "End of the last completed window (Unix time); now minus this is the collection lag."}, tc),
	}
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.windows, m.blobs, m.records, m.gaps, m.retries, m.checkpoint}
}
