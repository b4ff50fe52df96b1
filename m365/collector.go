package m365

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sink receives the records of each content blob, verbatim. It must be safe
// for concurrent calls. A nil error means the records are accepted: the
// collector may then checkpoint past them. Records can arrive more than once
// (the API duplicates them, and a restart repeats unfinished windows), so a
// sink deduplicates by record Id.
type Sink interface {
	Write(ctx context.Context, tenant string, records []json.RawMessage) error
}

// syncer is a Sink that buffers: Sync makes everything written so far
// durable, and the collector calls it before each checkpoint.
type syncer interface {
	Sync(ctx context.Context) error
}

// Collector pulls the Management Activity API into a Sink.
type Collector struct {
	cfg     Config
	sink    Sink
	clients []*client
	m       *metrics
	n       counters

	// subscribed remembers, per tenant, the content types known to have an
	// enabled subscription, so each pass does not list them again.
	subMu      sync.Mutex
	subscribed map[string]map[string]bool
}

// New checks cfg and returns a Collector writing to sink.
func New(cfg Config, sink Sink) (*Collector, error) {
	if sink == nil {
		return nil, errors.New("m365: no sink")
	}
	// Tenants is copied so normalize does not edit the caller's slice.
	cfg.Tenants = append([]Tenant(nil), cfg.Tenants...)
	cfg.ContentTypes = append([]string(nil), cfg.ContentTypes...)
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, fmt.Errorf("m365: %w", err)
	}
	c := &Collector{cfg: cfg, sink: sink, m: newMetrics(), subscribed: map[string]map[string]bool{}}
	for _, t := range cfg.Tenants {
		cl, err := newClient(&c.cfg, t, c.m, c.emit)
		if err != nil {
			return nil, fmt.Errorf("m365: tenant %s: %w", t.ID, err)
		}
		c.clients = append(c.clients, cl)
	}
	return c, nil
}

// Describe and Collect make the Collector a prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.m.all() {
		m.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.m.all() {
		m.Collect(ch)
	}
}

// Stats returns the counters so far.
func (c *Collector) Stats() Stats { return c.n.snapshot() }

func (c *Collector) emit(e Event) {
	switch e.Kind {
	case EventRetry:
		c.n.retries.Add(1)
	case EventGap:
		c.n.gaps.Add(1)
		c.m.gaps.WithLabelValues(e.Tenant, e.ContentType).Inc()
	case EventSubscriptionStarted:
		c.n.subscribed.Add(1)
	}
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(e)
	}
}

// Run collects continuously: a pass up to now every interval, until ctx
// ends. A failed pass is logged and retried at the next interval from its
// checkpoints.
func (c *Collector) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return errors.New("m365: run interval must be positive")
	}
	for {
		if err := c.Pass(ctx, time.Time{}, time.Time{}); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.cfg.Logger.Warn("m365: collection pass incomplete; resuming at the next pass", "err", err)
		}
		if err := sleep(ctx, interval); err != nil {
			return err
		}
	}
}

// Pass collects content created in [from, to) for every tenant and content
// type, resuming from the checkpoints. A zero from means "from the
// checkpoint, or as far back as the API keeps content"; a zero to means now.
// A content type that fails does not stop the others; the errors are
// returned joined once all have finished.
func (c *Collector) Pass(ctx context.Context, from, to time.Time) error {
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return fmt.Errorf("m365: from %s is not before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, cl := range c.clients {
		// One semaphore per tenant: Concurrency bounds the blobs in flight
		// for all of the tenant's content types together.
		sem := make(chan struct{}, c.cfg.Concurrency)
		for _, ct := range c.cfg.ContentTypes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.collectType(ctx, cl, sem, ct, from, to); err != nil {
					if ctx.Err() == nil {
						c.emit(Event{Kind: EventTypeFailed, Tenant: cl.tenant, ContentType: ct, Err: err})
						c.cfg.Logger.Error("m365: content type failed", "tenant", cl.tenant, "content_type", ct, "err", err)
					}
					mu.Lock()
					errs = append(errs, fmt.Errorf("tenant %s %s: %w", cl.tenant, ct, err))
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// retentionMargin keeps the first window's start safely inside the API's 7
// days despite clock skew and the time the backfill itself takes.
const retentionMargin = 10 * time.Minute

func (c *Collector) collectType(ctx context.Context, cl *client, sem chan struct{}, ct string, from, to time.Time) error {
	cp, err := loadCheckpoint(c.cfg.StateDir, cl.tenant, ct)
	if err != nil {
		return err
	}
	if err := c.ensureSubscription(ctx, cl, ct); err != nil {
		return err
	}
	now := c.cfg.Now().UTC()
	if to.IsZero() || to.After(now) {
		to = now
	}
	// The API takes times to the second: a window shorter than that would
	// be sent with start = end and refused (AF20055).
	to = to.Truncate(time.Second)
	// Where to begin: after what the checkpoint covers (minus the overlap,
	// to catch blobs listed late), unless asked for earlier content than it
	// covers; never before what the API still keeps.
	explicit := !from.IsZero()
	start := from
	if !explicit {
		start = now.Add(-Retention)
		if !cp.End.IsZero() && cp.End.Before(start) {
			// Down for longer than the retention: start at the checkpoint,
			// so that the loop below reports what was lost.
			start = cp.End
		}
	}
	if !cp.End.IsZero() && !start.Before(cp.Start) && start.Before(cp.End) {
		start = cp.End.Add(-c.cfg.Overlap)
		if start.Before(cp.Start) {
			start = cp.Start
		}
	}
	// The first pass of a continuous collector starts at the edge of the
	// retention on purpose; anything else that falls off that edge was
	// wanted and is lost.
	reportLoss := explicit || !cp.End.IsZero()
	start = start.Truncate(time.Second)
	for start.Before(to) {
		if err := ctx.Err(); err != nil {
			return err
		}
		oldest := c.cfg.Now().UTC().Add(-Retention + retentionMargin)
		if start.Before(oldest) {
			lost := start
			switch {
			case !explicit && !cp.End.IsZero() && lost.Before(cp.End):
				// Before the checkpoint's end, content was collected or
				// predates the collector's first start: neither is lost.
				lost = cp.End
			case !lost.Before(cp.Start) && lost.Before(cp.End):
				lost = cp.End // already collected: only the rest is lost
			}
			if reportLoss && lost.Before(oldest) && lost.Before(to) {
				c.emit(Event{Kind: EventGap, Tenant: cl.tenant, ContentType: ct, Start: lost, End: earliest(oldest, to)})
				c.cfg.Logger.Warn("m365: content older than the API keeps was never collected", "tenant", cl.tenant, "content_type", ct,
					"from", lost, "to", earliest(oldest, to))
			}
			start = oldest
			if !start.Before(to) {
				break
			}
		}
		reportLoss = true // once past the first clamp, any later one is the backfill falling behind
		end := start.Add(c.cfg.Window)
		if end.After(to) {
			end = to
		}
		if err := c.window(ctx, cl, sem, cp, ct, start, end); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// ensureSubscription starts the content type's subscription if it has none.
// A disabled subscription is an administrator's decision: report, not undo.
func (c *Collector) ensureSubscription(ctx context.Context, cl *client, ct string) error {
	c.subMu.Lock()
	if c.subscribed[cl.tenant][ct] {
		c.subMu.Unlock()
		return nil
	}
	c.subMu.Unlock()
	subs, err := cl.listSubscriptions(ctx)
	if err != nil {
		return err
	}
	status := ""
	for _, s := range subs {
		if s.ContentType == ct {
			status = s.Status
		}
	}
	switch status {
	case "enabled":
	case "":
		if err := cl.startSubscription(ctx, ct); err != nil {
			return err
		}
		c.emit(Event{Kind: EventSubscriptionStarted, Tenant: cl.tenant, ContentType: ct})
		c.cfg.Logger.Info("m365: subscription started", "tenant", cl.tenant, "content_type", ct)
	default:
		return fmt.Errorf("subscription is %q (an administrator disabled it; the API serves no content until it is started again)", status)
	}
	c.markSubscribed(cl.tenant, ct, true)
	return nil
}

func (c *Collector) markSubscribed(tenant, ct string, ok bool) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if c.subscribed[tenant] == nil {
		c.subscribed[tenant] = map[string]bool{}
	}
	c.subscribed[tenant][ct] = ok
}

// list lists a window, starting the subscription if the API says there is
// none (it can be stopped between passes).
func (c *Collector) list(ctx context.Context, cl *client, ct string, start, end time.Time) ([]blobRef, error) {
	refs, err := cl.listContent(ctx, ct, start, end)
	if IsCode(err, codeNoSubscription) {
		c.markSubscribed(cl.tenant, ct, false)
		if err := c.ensureSubscription(ctx, cl, ct); err != nil {
			return nil, err
		}
		refs, err = cl.listContent(ctx, ct, start, end)
	}
	if IsCode(err, codeDisabled) {
		c.markSubscribed(cl.tenant, ct, false)
	}
	return refs, err
}

// window collects one window and then advances the checkpoint. Every blob
// must be in the sink (or expired, and reported) before the checkpoint
// moves, so a crash at any point repeats the window instead of losing it.
func (c *Collector) window(ctx context.Context, cl *client, sem chan struct{}, cp *checkpoint, ct string, start, end time.Time) error {
	refs, err := c.list(ctx, cl, ct, start, end)
	if err != nil {
		return err
	}
	todo := make([]blobRef, 0, len(refs))
	seen := make(map[string]bool, len(refs))
	for _, r := range refs {
		if r.ContentID == "" || r.ContentURI == "" {
			return fmt.Errorf("list content %s: entry without contentId or contentUri", ct)
		}
		if _, done := cp.Done[r.ContentID]; done || seen[r.ContentID] {
			c.n.skipped.Add(1)
			continue
		}
		seen[r.ContentID] = true
		todo = append(todo, r)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		done     = make(map[string]time.Time, len(todo))
		records  int
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	for _, r := range todo {
		select {
		case sem <- struct{}{}:
		case <-wctx.Done():
		}
		if wctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			recs, err := cl.fetchBlob(wctx, r)
			if IsCode(err, codeExpired) {
				c.emit(Event{Kind: EventGap, Tenant: cl.tenant, ContentType: ct, ContentID: r.ContentID, Start: r.ContentCreated, End: r.ContentCreated})
				c.cfg.Logger.Warn("m365: content expired before it was fetched", "tenant", cl.tenant, "content_type", ct,
					"content_id", r.ContentID, "content_created", r.ContentCreated)
				mu.Lock()
				done[r.ContentID] = r.ContentCreated
				mu.Unlock()
				return
			}
			if err != nil {
				fail(err)
				return
			}
			if len(recs) > 0 {
				if err := c.sink.Write(wctx, cl.tenant, recs); err != nil {
					fail(fmt.Errorf("sink: %w", err))
					return
				}
			}
			c.n.blobs.Add(1)
			c.n.records.Add(int64(len(recs)))
			c.m.blobs.WithLabelValues(cl.tenant, ct).Inc()
			c.m.records.WithLabelValues(cl.tenant, ct).Add(float64(len(recs)))
			mu.Lock()
			done[r.ContentID] = r.ContentCreated
			records += len(recs)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("window %s..%s: %w", start.Format(time.RFC3339), end.Format(time.RFC3339), firstErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s, ok := c.sink.(syncer); ok {
		if err := s.Sync(ctx); err != nil {
			return fmt.Errorf("sink: %w", err)
		}
	}
	cp.advance(start, end, done, c.cfg.Overlap)
	if err := cp.save(c.cfg.StateDir); err != nil {
		return err
	}
	c.n.windows.Add(1)
	c.m.windows.WithLabelValues(cl.tenant, ct).Inc()
	c.m.checkpoint.WithLabelValues(cl.tenant, ct).Set(float64(cp.End.Unix()))
	c.emit(Event{Kind: EventWindow, Tenant: cl.tenant, ContentType: ct, Start: start, End: end, Blobs: len(done), Records: records})
	return nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
