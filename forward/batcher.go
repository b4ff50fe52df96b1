package forward

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// chunk is a piece of input on its way into the queue: complete records,
// NDJSON, and the file positions reading them moved to.
type chunk struct {
	ndjson    []byte
	records   int
	positions []Position
	done      chan error // for HTTP input: told once the records are durable (or why not)
}

// batcher gathers chunks into batches and appends them to the queue.
//
// File input and HTTP input are batched apart because they differ when
// the queue is full: a file's batch is kept and retried (the file is its
// own buffer, and the reader stops meanwhile), an HTTP request is answered
// 503 at once so its client keeps the records.
type batcher struct {
	q          *Queue
	maxRecords int
	maxBytes   int
	wait       time.Duration
	logger     *slog.Logger
	m          *metrics

	files chan *chunk // blocking: a full queue stops the file readers here
	http  chan *chunk
}

// run batches until ctx ends. It fails only when the queue cannot be
// written, which leaves it unusable (a failed fsync may have lost pages).
func (b *batcher) run(ctx context.Context) error {
	var (
		cur     chunk
		posIdx  = map[string]int{}
		timer   = time.NewTimer(time.Hour)
		timerOn bool
		blocked bool // cur did not fit; wait for acks before reading more
		full    bool // logged as full, to log when it is not
	)
	timer.Stop()
	add := func(c *chunk) {
		cur.ndjson = append(cur.ndjson, c.ndjson...)
		cur.records += c.records
		for _, p := range c.positions {
			if i, ok := posIdx[p.key()]; ok {
				cur.positions[i] = p
			} else {
				posIdx[p.key()] = len(cur.positions)
				cur.positions = append(cur.positions, p)
			}
		}
	}
	flush := func() error {
		if cur.records == 0 && len(cur.positions) == 0 {
			return nil
		}
		_, err := b.q.Append(cur.records, cur.ndjson, cur.positions)
		switch {
		case errors.Is(err, ErrFull):
			if !full {
				b.logger.Warn("disk queue full: file inputs pause until the server takes batches",
					"queue_max_bytes", b.q.MaxBytes())
				full = true
			}
			b.m.queueFull.WithLabelValues("file").Inc()
			blocked = true
			return nil
		case err != nil:
			// Nothing of cur was saved, positions included, so a
			// restart reads these lines again.
			return err
		}
		if full {
			b.logger.Info("disk queue has room again: file inputs resume")
			full = false
		}
		blocked = false
		cur = chunk{ndjson: cur.ndjson[:0]}
		clear(posIdx)
		if timerOn {
			timer.Stop()
			timerOn = false
		}
		return nil
	}
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	for {
		files := b.files
		if blocked {
			files = nil // stop taking file input until cur is queued
		}
		select {
		case <-ctx.Done():
			if !blocked {
				return flush() // what was read is saved with its positions
			}
			return nil
		case c := <-b.http:
			if err := b.flushHTTP(c); err != nil {
				return err
			}
		case c := <-files:
			if cur.records > 0 && (cur.records+c.records > b.maxRecords || len(cur.ndjson)+len(c.ndjson) > b.maxBytes) {
				if err := flush(); err != nil {
					return err
				}
				if blocked {
					// c is read but does not fit behind cur: keep it in
					// cur anyway; the batch grows by one chunk at most.
					add(c)
					continue
				}
			}
			add(c)
			if cur.records >= b.maxRecords || len(cur.ndjson) >= b.maxBytes {
				if err := flush(); err != nil {
					return err
				}
			} else if !timerOn {
				timer.Reset(b.wait)
				timerOn = true
			}
		case <-timer.C:
			timerOn = false
			if err := flush(); err != nil {
				return err
			}
		case <-retry.C:
			if blocked && b.q.Fits(len(cur.ndjson)) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
}

// flushHTTP queues c together with whatever other requests are waiting,
// and answers them all. The error is a queue failure.
func (b *batcher) flushHTTP(c *chunk) error {
	group := []*chunk{c}
	body := append([]byte(nil), c.ndjson...)
	records := c.records
	for len(body) < b.maxBytes && records < b.maxRecords {
		select {
		case more := <-b.http:
			group = append(group, more)
			body = append(body, more.ndjson...)
			records += more.records
			continue
		default:
		}
		break
	}
	_, err := b.q.Append(records, body, nil)
	if errors.Is(err, ErrFull) {
		b.m.queueFull.WithLabelValues("http").Inc()
	}
	if errors.Is(err, ErrTooLarge) && len(group) > 1 {
		// Together too big; each on its own may fit.
		var fatal error
		for _, c := range group {
			_, err := b.q.Append(c.records, c.ndjson, nil)
			if errors.Is(err, ErrFull) {
				b.m.queueFull.WithLabelValues("http").Inc()
			}
			c.done <- err
			if err != nil && !errors.Is(err, ErrFull) && !errors.Is(err, ErrTooLarge) {
				fatal = err
			}
		}
		return fatal
	}
	for _, c := range group {
		c.done <- err
	}
	if err != nil && !errors.Is(err, ErrFull) && !errors.Is(err, ErrTooLarge) {
		return err
	}
	return nil
}
