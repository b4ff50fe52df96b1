// Package forward ships audit records from local files and a local HTTP
// endpoint to a custos server, through a bounded persistent disk queue.
//
// Inputs (files matching glob patterns, followed across rotation; POST
// /records) put records into batches; a batch gets the next sequence
// number of the source when it enters the queue, and is acknowledged to
// its input only once it is fsync'd there. A sender delivers queued
// batches at least once, retrying until the server answers; heartbeats
// report the forwarder's counters to the server. The forwarder does not
// parse records: it splits lines (and JSON array elements) and leaves
// validation to the server.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-audit/custos/client"
)

// SourceNameRE is what a source name must look like (the server's rule).
var SourceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// Config configures a Forwarder.
type Config struct {
	Client *client.Client // talks to the server
	Tenant string
	Source string // the source name: X-Custos-Source and the heartbeat's path

	QueueDir      string
	QueueMaxBytes int64

	Files        []string      // glob patterns of NDJSON files to follow
	Poll         time.Duration // how often files are checked (default 1s)
	MaxLineBytes int           // longer lines are skipped and counted (default 4 MiB)

	// Listener, when not nil, serves /metrics and /healthz, and POST
	// /records when Records is true.
	Listener net.Listener
	Records  bool

	BatchRecords int           // default 5000
	BatchBytes   int           // default 4 MiB
	BatchWait    time.Duration // default 1s
	Concurrency  int           // batches in flight (default 2)

	Heartbeat time.Duration // default 30s
	AuthRetry time.Duration // wait after 401/403 (default 1m)
	Version   string
	Logger    *slog.Logger
}

// Forwarder is a running forwarder; see Run.
type Forwarder struct {
	cfg     Config
	q       *Queue
	reg     *prometheus.Registry
	m       *metrics
	logger  *slog.Logger
	batcher *batcher
}

// New checks cfg and opens the disk queue.
func New(cfg Config) (*Forwarder, error) {
	if cfg.Client == nil || cfg.Tenant == "" {
		return nil, errors.New("forward: a client and a tenant are required")
	}
	if !SourceNameRE.MatchString(cfg.Source) {
		return nil, fmt.Errorf("forward: source name %q: want letters, digits and . _ : @ - (at most 128, starting with a letter or digit)", cfg.Source)
	}
	if len(cfg.Files) == 0 && (cfg.Listener == nil || !cfg.Records) {
		return nil, errors.New("forward: no input: give file patterns or a listener for /records")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.BatchRecords, 5000)
	def(&cfg.BatchBytes, 4<<20)
	def(&cfg.Concurrency, 2)
	def(&cfg.MaxLineBytes, 4<<20)
	defD(&cfg.BatchWait, time.Second)
	defD(&cfg.Poll, time.Second)
	defD(&cfg.Heartbeat, 30*time.Second)
	defD(&cfg.AuthRetry, time.Minute)
	if cfg.QueueMaxBytes <= 0 {
		cfg.QueueMaxBytes = 1 << 30
	}
	// A batch must fit in the queue with room to spare, or a full queue
	// could never take the next one.
	cfg.BatchBytes = int(min(int64(cfg.BatchBytes), cfg.QueueMaxBytes/4))
	if cfg.BatchBytes < 1024 {
		return nil, fmt.Errorf("forward: a queue bound of %d bytes is too small", cfg.QueueMaxBytes)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	q, err := OpenQueue(cfg.QueueDir, QueueOptions{MaxBytes: cfg.QueueMaxBytes, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	f := &Forwarder{cfg: cfg, q: q, reg: prometheus.NewRegistry(), logger: cfg.Logger}
	f.m = newMetrics(f.reg, q)
	f.reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	f.batcher = &batcher{q: q, maxRecords: cfg.BatchRecords, maxBytes: cfg.BatchBytes, wait: cfg.BatchWait,
		logger: cfg.Logger, m: f.m, files: make(chan *chunk), http: make(chan *chunk)}
	return f, nil
}

// Stats returns a snapshot of the queue.
func (f *Forwarder) Stats() QueueStats { return f.q.Stats() }

// Run forwards until ctx ends, then saves the queue state and closes the
// queue. It fails when the queue cannot be written or a pattern is bad.
func (f *Forwarder) Run(ctx context.Context) error {
	st := f.q.Stats()
	f.logger.Info("custos forward starting", "source", f.cfg.Source, "tenant", f.cfg.Tenant, "server", f.cfg.Client.Server(),
		"queue", f.cfg.QueueDir, "queued_records", st.Records, "sequence", st.Sequence, "acked", st.Acked)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	goRun := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		}()
	}
	// The batcher outlives the inputs so they can hand over what they
	// read on shutdown; it stops once they have.
	bctx, stopBatcher := context.WithCancel(context.WithoutCancel(ctx))
	batchDone := make(chan error, 1)
	go func() {
		err := f.batcher.run(bctx)
		if err != nil {
			cancel(fmt.Errorf("queue: %w", err))
		}
		batchDone <- err
	}()
	var inputs sync.WaitGroup
	if len(f.cfg.Files) > 0 {
		t := newTailer(f.cfg.Files, f.q.Positions())
		t.poll, t.maxLine, t.logger, t.m = f.cfg.Poll, f.cfg.MaxLineBytes, f.logger, f.m
		t.chunkRecords, t.chunkBytes = f.cfg.BatchRecords, f.cfg.BatchBytes
		t.submit = func(ctx context.Context, c *chunk) error {
			select {
			case f.batcher.files <- c:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		inputs.Add(1)
		go func() {
			defer inputs.Done()
			if err := t.run(ctx); err != nil {
				cancel(fmt.Errorf("files: %w", err))
			}
		}()
	}
	var srv *http.Server
	if f.cfg.Listener != nil {
		srv = &http.Server{Handler: f.Handler(ctx), ReadHeaderTimeout: 10 * time.Second}
		f.logger.Info("custos forward listening", "addr", f.cfg.Listener.Addr().String(), "records", f.cfg.Records)
		go srv.Serve(f.cfg.Listener)
	}
	s := &sender{q: f.q, c: f.cfg.Client, tenant: f.cfg.Tenant, source: f.cfg.Source, concurrency: f.cfg.Concurrency,
		authRetry: f.cfg.AuthRetry, logger: f.logger, m: f.m}
	goRun("sender", s.run)
	goRun("heartbeat", f.heartbeats)
	goRun("state", f.saveState)

	<-ctx.Done()
	if srv != nil {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		c()
	}
	inputs.Wait()
	stopBatcher()
	berr := <-batchDone
	wg.Wait()
	err := context.Cause(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if err == nil {
		err = berr
	}
	if cerr := f.q.Close(); err == nil && cerr != nil {
		err = cerr
	}
	st = f.q.Stats()
	f.logger.Info("custos forward stopped", "queued_records", st.Records, "sequence", st.Sequence, "acked", st.Acked)
	return err
}

// saveState writes the queue's state file every second when acks or file
// positions changed, so that delivered segments are freed and a restart
// resends little.
func (f *Forwarder) saveState(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := f.q.Flush(); err != nil {
				f.logger.Error("cannot save the queue state", "err", err)
			}
		}
	}
}
