package forward

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-audit/custos/client"
)

// maxListedRejections is how many rejected records per batch are logged;
// the rest are only counted.
const maxListedRejections = 3

// sender delivers queued batches, several at a time, each until the
// server takes it: at least once, since a batch is acknowledged in the
// queue only after a 2xx answer (or a permanent refusal).
type sender struct {
	q           *Queue
	c           *client.Client
	tenant      string
	source      string
	concurrency int
	// authRetry is the wait after 401/403: the token may be fixed, but
	// hammering the server with a bad token helps nobody.
	authRetry time.Duration
	logger    *slog.Logger
	m         *metrics

	authWarned atomic.Bool
}

func (s *sender) run(ctx context.Context) error {
	work := make(chan Batch)
	var wg sync.WaitGroup
	for range s.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if err := s.deliver(ctx, b); err != nil {
					return
				}
			}
		}()
	}
	err := s.q.Read(ctx, s.q.Acked()+1, func(b Batch) error {
		select {
		case work <- b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// deliver sends b until it is done; the error is ctx's or the queue's.
func (s *sender) deliver(ctx context.Context, b Batch) error {
	for attempt := 1; ; attempt++ {
		res, err := s.c.SendSequenced(ctx, client.SequencedBatch{Tenant: s.tenant, Source: s.source, Sequence: b.Seq, NDJSON: b.NDJSON})
		if err == nil {
			if s.authWarned.Swap(false) {
				s.logger.Info("the server accepts the token again")
			}
			if res.Rejected > 0 {
				args := []any{"sequence", b.Seq, "rejected", res.Rejected, "records", b.Records}
				for i, e := range res.Errors[:min(len(res.Errors), maxListedRejections)] {
					args = append(args, slog.Group("error"+strconv.Itoa(i+1), "index", e.Index, "line", e.Line, "id", e.ID, "field", e.Field, "error", e.Error))
				}
				s.logger.Warn("the server rejected records of a batch", args...)
			}
			return s.q.Ack(b.Seq, Outcome{Records: b.Records, Rejected: res.Rejected})
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.m.sendErrors.Inc()
		var wait time.Duration
		var ae *client.APIError
		switch {
		case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
			if !s.authWarned.Swap(true) {
				s.logger.Error("the server refuses the token; retrying slowly until it is fixed", "status", ae.Status, "err", err, "retry_every", s.authRetry)
			}
			wait = s.authRetry
		case errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 && ae.Status != http.StatusRequestTimeout && ae.Status != http.StatusTooManyRequests:
			// Sending it again would get the same answer: the batch
			// is lost, loudly, and the queue moves on.
			s.logger.Error("the server refused a batch; its records are lost", "sequence", b.Seq, "records", b.Records, "status", ae.Status, "err", err)
			return s.q.Ack(b.Seq, Outcome{Records: b.Records, Refused: true})
		default:
			wait = s.c.Backoff(attempt, err)
			if attempt == 1 || attempt%10 == 0 {
				s.logger.Warn("cannot deliver batch; retrying", "sequence", b.Seq, "attempt", attempt, "wait", wait.Round(time.Millisecond), "err", err)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
