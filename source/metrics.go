package source

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descLastRecord = prometheus.NewDesc("custos_source_last_record_timestamp_seconds",
		"When the source's latest new record was received.", []string{"tenant", "source", "kind"}, nil)
	descLastHeartbeat = prometheus.NewDesc("custos_source_last_heartbeat_timestamp_seconds",
		"When the source's latest heartbeat was received.", []string{"tenant", "source", "kind"}, nil)
	descRecords = prometheus.NewDesc("custos_source_records",
		"New records stored from the source since custos first saw it.", []string{"tenant", "source", "kind"}, nil)
	descHealthy = prometheus.NewDesc("custos_source_healthy",
		"1 while the source is ok or learning, 0 while it is silent, short, or has a gap.", []string{"tenant", "source", "kind", "health"}, nil)
	descGaps = prometheus.NewDesc("custos_source_sequence_gaps",
		"Runs of batch numbers missing beyond the grace and not filled since.", []string{"tenant", "source", "kind"}, nil)
)

// Collector exposes every source's state to Prometheus, so a silent
// source can be alerted on outside custos too.
func (r *Registry) Collector() prometheus.Collector { return registryCollector{r} }

type registryCollector struct{ r *Registry }

func (c registryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLastRecord, descLastHeartbeat, descRecords, descHealthy, descGaps} {
		ch <- d
	}
}

func (c registryCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	now := r.cfg.Now().UTC()
	r.mu.Lock()
	var all []Status
	for _, e := range r.sources {
		all = append(all, r.status(e, now))
	}
	r.mu.Unlock()
	for _, s := range all {
		l := []string{s.Tenant, s.Name, string(s.Kind)}
		if !s.LastRecord.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastRecord, prometheus.GaugeValue, float64(s.LastRecord.UnixMilli())/1e3, l...)
		}
		if !s.LastHeartbeat.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastHeartbeat, prometheus.GaugeValue, float64(s.LastHeartbeat.UnixMilli())/1e3, l...)
		}
		ch <- prometheus.MustNewConstMetric(descRecords, prometheus.GaugeValue, float64(s.Records), l...)
		ok := 0.0
		if s.Health == HealthOK || s.Health == HealthLearning {
			ok = 1
		}
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, ok, append(l, s.Health)...)
		gaps := 0
		for _, g := range s.Gaps {
			if !g.Filled && now.Sub(g.Since) >= r.cfg.GapGrace {
				gaps++
			}
		}
		ch <- prometheus.MustNewConstMetric(descGaps, prometheus.GaugeValue, float64(gaps), l...)
	}
}

// Len is the number of sources known.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sources)
}
