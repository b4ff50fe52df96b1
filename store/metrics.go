package store

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes the store's sizes to Prometheus, read at scrape time.
func (db *DB) Collector() prometheus.Collector { return storeCollector{db} }

type storeCollector struct{ db *DB }

var (
	descHeadRecords = prometheus.NewDesc("custos_head_records", "Records in the in-memory head (not yet sealed).", nil, nil)
	descHeadBytes   = prometheus.NewDesc("custos_head_bytes", "Raw record bytes in the in-memory head.", nil, nil)
	descSealedParts = prometheus.NewDesc("custos_sealed_parts", "Sealed Parquet files in the catalog.", nil, nil)
	descSealedRecs  = prometheus.NewDesc("custos_sealed_records", "Records in sealed Parquet files.", nil, nil)
	descSealedBytes = prometheus.NewDesc("custos_sealed_bytes", "Bytes of sealed Parquet files on disk.", nil, nil)
	descWALBytes    = prometheus.NewDesc("custos_wal_bytes", "Bytes of write-ahead log on disk.", nil, nil)
	descDedupIDs    = prometheus.NewDesc("custos_dedup_ids", "Record ids held in the in-memory dedup index.", nil, nil)
	descDedupParts  = prometheus.NewDesc("custos_dedup_partitions", "Tenant-days loaded in the dedup index.", nil, nil)
	descQueued      = prometheus.NewDesc("custos_write_queue_bytes", "Raw bytes accepted and waiting for the group commit.", nil, nil)
	descSealFails   = prometheus.NewDesc("custos_seal_failures_total", "Seals that failed and will be retried.", nil, nil)
	descFeedFrames  = prometheus.NewDesc("custos_feed_frames_total", "Committed frames delivered to feeds (detection), by where they were read: the in-memory tail of recent commits or the write-ahead log.", []string{"from"}, nil)
	descReady       = prometheus.NewDesc("custos_store_ready", "1 when the store accepts writes, 0 when it refuses them (failure or no disk headroom).", nil, nil)
)

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHeadRecords, descHeadBytes, descSealedParts, descSealedRecs, descSealedBytes,
		descWALBytes, descDedupIDs, descDedupParts, descQueued, descSealFails, descFeedFrames, descReady} {
		ch <- d
	}
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.db.Stats()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(descHeadRecords, float64(s.HeadRecords))
	g(descHeadBytes, float64(s.HeadBytes))
	g(descSealedParts, float64(s.SealedParts))
	g(descSealedRecs, float64(s.SealedRecords))
	g(descSealedBytes, float64(s.SealedBytes))
	g(descWALBytes, float64(s.WALBytes))
	g(descDedupIDs, float64(s.DedupIDs))
	g(descDedupParts, float64(s.DedupPartitions))
	g(descQueued, float64(s.QueuedBytes))
	ch <- prometheus.MustNewConstMetric(descSealFails, prometheus.CounterValue, float64(s.SealFailures))
	ch <- prometheus.MustNewConstMetric(descFeedFrames, prometheus.CounterValue, float64(s.FeedTailFrames), "memory")
	ch <- prometheus.MustNewConstMetric(descFeedFrames, prometheus.CounterValue, float64(s.FeedLogFrames), "log")
	ready := 1.0
	if c.db.Ready() != nil {
		ready = 0
	}
	g(descReady, ready)
}
