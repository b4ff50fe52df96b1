package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/zeebo/xxh3"
)

// The dedup index answers "is (tenant, Id) already stored?" from memory.
//
// Ids are kept per partition — one tenant and one UTC day of CreationTime,
// the same unit as the sealed files — as 128-bit hashes (collisions are
// out of reach at any realistic volume). A partition is loaded from its
// sealed files the first time a record of that day arrives, so duplicates
// are caught for any CreationTime, not only recent ones; partitions older
// than the window are evicted once idle and fully sealed, which bounds
// memory to roughly the window's records.
//
// A record re-delivered with the same Id but a CreationTime on another day
// is not recognised; Microsoft's Id and CreationTime are fixed per event.

type idKey [2]uint64

func hashID(id string) idKey {
	h := xxh3.HashString128(id)
	return idKey{h.Hi, h.Lo}
}

type partKey struct {
	tenant string
	day    int32 // days since the Unix epoch, UTC
}

func dayNumber(t time.Time) int32 {
	return int32(t.UTC().Unix() / 86400)
}

func dayString(day int32) string {
	return time.Unix(int64(day)*86400, 0).UTC().Format(dayLayout)
}

type partition struct {
	ready   chan struct{} // closed once ids are loaded (or err set)
	err     error
	ids     map[idKey]struct{}
	pins    int    // batches between ensure and commit; a pinned partition is never evicted
	maxSeq  uint64 // highest WAL frame that added ids here; unsealed while > catalog.SealedThrough
	lastUse time.Time
}

// idLoader reads the stored ids of one tenant-day from sealed files.
type idLoader func(ctx context.Context, tenant string, day int32, add func(id string)) error

type dedupIndex struct {
	load idLoader

	mu    sync.Mutex
	parts map[partKey]*partition
}

func newDedupIndex(load idLoader) *dedupIndex {
	return &dedupIndex{load: load, parts: map[partKey]*partition{}}
}

// pin makes sure the partitions of keys are loaded and pins them until
// unpin. Loading happens in the caller's goroutine so that a cold day does
// not stall the committer.
func (x *dedupIndex) pin(ctx context.Context, keys []partKey) error {
	ps := make([]*partition, len(keys))
	var toLoad []int
	x.mu.Lock()
	for i, k := range keys {
		p, ok := x.parts[k]
		if !ok {
			p = &partition{ready: make(chan struct{})}
			x.parts[k] = p
			toLoad = append(toLoad, i)
		}
		p.pins++
		ps[i] = p
	}
	x.mu.Unlock()

	for _, i := range toLoad {
		k, p := keys[i], ps[i]
		ids := map[idKey]struct{}{}
		err := x.load(ctx, k.tenant, k.day, func(id string) { ids[hashID(id)] = struct{}{} })
		x.mu.Lock()
		if err != nil {
			p.err = fmt.Errorf("load ids of %s/%s: %w", k.tenant, dayString(k.day), err)
			delete(x.parts, k) // the next batch retries the load
		} else {
			p.ids = ids
		}
		x.mu.Unlock()
		close(p.ready)
	}
	var firstErr error
	for _, p := range ps {
		select {
		case <-p.ready:
			if p.err != nil && firstErr == nil {
				firstErr = p.err
			}
		case <-ctx.Done():
			if firstErr == nil {
				firstErr = ctx.Err()
			}
		}
	}
	if firstErr != nil {
		x.unpin(keys)
	}
	return firstErr
}

func (x *dedupIndex) unpin(keys []partKey) {
	x.mu.Lock()
	defer x.mu.Unlock()
	now := time.Now()
	for _, k := range keys {
		if p, ok := x.parts[k]; ok && p.pins > 0 {
			p.pins--
			p.lastUse = now
		}
	}
}

// insert adds id to its (pinned, loaded) partition and reports whether it
// was new. Only the committer calls it.
func (x *dedupIndex) insert(k partKey, id idKey, seq uint64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	p := x.parts[k]
	if p == nil || p.ids == nil {
		panic("store: dedup insert into a partition that was not pinned")
	}
	if _, dup := p.ids[id]; dup {
		return false
	}
	p.ids[id] = struct{}{}
	p.maxSeq = max(p.maxSeq, seq)
	return true
}

// remove undoes insert after a failed write.
func (x *dedupIndex) remove(k partKey, id idKey) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if p := x.parts[k]; p != nil {
		delete(p.ids, id)
	}
}

// evict drops idle partitions older than the window whose ids are all in
// sealed files, so a later load sees them again.
func (x *dedupIndex) evict(now time.Time, window, idle time.Duration, sealedThrough uint64) {
	oldest := dayNumber(now.Add(-window))
	x.mu.Lock()
	defer x.mu.Unlock()
	for k, p := range x.parts {
		if k.day < oldest && p.pins == 0 && p.maxSeq <= sealedThrough && now.Sub(p.lastUse) > idle {
			select {
			case <-p.ready:
				delete(x.parts, k)
			default:
			}
		}
	}
}

// size returns the number of partitions and ids held.
func (x *dedupIndex) size() (parts, ids int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range x.parts {
		ids += len(p.ids)
	}
	return len(x.parts), ids
}
