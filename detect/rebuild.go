package detect

import (
	"context"
	"fmt"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/store"
)

// History is the stored record history a rebuild learns from (store.DB).
type History interface {
	Records(ctx context.Context, tenant string, q store.Query, fn func(*audit.Record) error) error
}

// RebuildReport says what a rebuild learned.
type RebuildReport struct {
	Tenant  string        `json:"tenant"`
	From    time.Time     `json:"from"`
	To      time.Time     `json:"to"`
	Records int64         `json:"records"`
	Values  int           `json:"values"` // values the tenant's baselines hold afterwards
	Elapsed time.Duration `json:"elapsed"`
}

// Rebuild learns the tenant's baselines from its stored records of the
// given days before now and merges them into the live ones, so a new
// install learns from imported history instead of waiting out the
// learning period. It raises no alerts. progress, if set, is called after
// each day with the records read so far.
func (e *Engine) Rebuild(ctx context.Context, h History, tenant string, days int, now time.Time, progress func(day time.Time, records int64)) (RebuildReport, error) {
	if days < 1 || days > 3660 {
		return RebuildReport{}, fmt.Errorf("%w: days must be 1 to 3660", ErrInvalid)
	}
	start := time.Now()
	to := now.UTC()
	from := to.Truncate(24*time.Hour).AddDate(0, 0, -days)
	rep := RebuildReport{Tenant: tenant, From: from, To: to}
	b := newBaseline()
	// Day by day, oldest first: mailbox volumes are counted per day in
	// order, and what is first seen is learned as it was.
	for day := from; day.Before(to); day = day.Add(24 * time.Hour) {
		end := day.Add(24 * time.Hour)
		if end.After(to) {
			end = to
		}
		err := h.Records(ctx, tenant, store.Query{From: day, To: end}, func(r *audit.Record) error {
			if ownRecord(r) {
				return nil
			}
			e.detect(b, r, 0, now)
			rep.Records++
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("detect: rebuild %s: read %s: %w", tenant, day.Format(time.DateOnly), err)
		}
		if progress != nil {
			progress(day, rep.Records)
		}
	}
	e.mu.Lock()
	live := e.tenants[tenant]
	if live == nil {
		live = newBaseline()
		e.tenants[tenant] = live
	}
	live.merge(b)
	rep.Values = len(live.Seen)
	e.mu.Unlock()
	rep.Elapsed = time.Since(start)
	e.log.Info("rebuilt baselines from stored history", "tenant", tenant, "days", days, "records", rep.Records,
		"values", rep.Values, "elapsed", rep.Elapsed.Round(time.Millisecond))
	return rep, e.Save()
}
