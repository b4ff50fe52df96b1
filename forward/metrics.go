package forward

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the forwarder's own health. The totals that must add up
// across restarts (read, sent, rejected, refused) come from the queue's
// durable counters rather than from process counters, so a kill -9 does
// not reset or double them.
type metrics struct {
	sendErrors  prometheus.Counter
	tooLong     atomic.Uint64 // lines skipped in files for their length
	lostFiles   prometheus.Counter
	heartbeats  *prometheus.CounterVec // result: ok, error, not_found
	queueFull   *prometheus.CounterVec // input: file, http
	httpAnswers *prometheus.CounterVec // code
}

func newMetrics(reg prometheus.Registerer, q *Queue) *metrics {
	m := &metrics{
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "custos_forward_send_errors_total",
			Help: "Failed attempts to send a batch (each retry counts)."}),
		lostFiles: prometheus.NewCounter(prometheus.CounterOpts{Name: "custos_forward_lost_files_total",
			Help: "Files that went away before they were read to their end."}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_forward_heartbeats_total",
			Help: "Heartbeats sent, by result."}, []string{"result"}),
		queueFull: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_forward_queue_full_total",
			Help: "Times input found the disk queue full: a paused file batch, an HTTP request answered 503."}, []string{"input"}),
		httpAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_forward_http_requests_total",
			Help: "Requests to the local /records endpoint, by answer status."}, []string{"code"}),
	}
	reg.MustRegister(m.sendErrors, m.lostFiles, m.heartbeats, m.queueFull, m.httpAnswers)
	for _, r := range []string{"ok", "error", "not_found"} {
		m.heartbeats.WithLabelValues(r)
	}
	reg.MustRegister(queueCollector{q, m})
	return m
}

// queueCollector reports the queue's state and durable counters.
type queueCollector struct {
	q *Queue
	m *metrics
}

var (
	descRead     = prometheus.NewDesc("custos_forward_records_read_total", "Records read from inputs into the disk queue (kept across restarts).", nil, nil)
	descSent     = prometheus.NewDesc("custos_forward_records_sent_total", "Records the server took, accepted or duplicate (kept across restarts).", nil, nil)
	descRejected = prometheus.NewDesc("custos_forward_records_rejected_total", "Records the server rejected one by one (kept across restarts).", nil, nil)
	descBatches  = prometheus.NewDesc("custos_forward_batches_sent_total", "Batches the server answered 2xx (kept across restarts).", nil, nil)
	descRefused  = prometheus.NewDesc("custos_forward_refused_batches_total", "Batches the server refused as a whole with a permanent 4xx (kept across restarts).", nil, nil)
	descQBytes   = prometheus.NewDesc("custos_forward_queue_bytes", "Bytes of queued batches not yet delivered.", nil, nil)
	descQRecords = prometheus.NewDesc("custos_forward_queue_records", "Records in queued batches not yet delivered.", nil, nil)
	descQMax     = prometheus.NewDesc("custos_forward_queue_max_bytes", "The disk queue's bound.", nil, nil)
	descSeq      = prometheus.NewDesc("custos_forward_sequence", "Sequence number of the last batch queued.", nil, nil)
	descAcked    = prometheus.NewDesc("custos_forward_acked_sequence", "Every batch up to this sequence number is delivered (or refused).", nil, nil)
	descLastAck  = prometheus.NewDesc("custos_forward_last_ack_timestamp_seconds", "When the acknowledged sequence last advanced; 0 if not since start.", nil, nil)
	descLost     = prometheus.NewDesc("custos_forward_lost_records_total", "Records that will not reach the server: too_long lines skipped in files (since start), refused batches (4xx, kept across restarts).", []string{"reason"}, nil)
)

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRead, descSent, descRejected, descBatches, descRefused, descQBytes, descQRecords, descQMax, descSeq, descAcked, descLastAck, descLost} {
		ch <- d
	}
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.q.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(descRead, st.Counters.Queued)
	counter(descSent, st.Counters.Sent)
	counter(descRejected, st.Counters.Rejected)
	counter(descBatches, st.Counters.Batches)
	counter(descRefused, st.Counters.RefusedBatches)
	gauge(descQBytes, float64(st.Bytes))
	gauge(descQRecords, float64(st.Records))
	gauge(descQMax, float64(c.q.MaxBytes()))
	gauge(descSeq, float64(st.Sequence))
	gauge(descAcked, float64(st.Acked))
	var last float64
	if !st.LastAck.IsZero() {
		last = float64(st.LastAck.UnixNano()) / 1e9
	}
	gauge(descLastAck, last)
	ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(c.m.tooLong.Load()), "too_long")
	ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(st.Counters.Refused), "refused")
}
