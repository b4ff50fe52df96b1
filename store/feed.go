package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/durable"
)

// A Feed delivers committed records to one named consumer (detection, say)
// in commit order, from memory while it keeps up with commits and from the
// write-ahead log otherwise, and holds back the log's truncation until the
// consumer has acknowledged them. A consumer
// that restarts resumes after its last acknowledged frame, so it sees every
// record at least once; one that keeps its own checkpoint with the frame
// number sees every record exactly once.
//
// A feed that falls further behind than Options.MaxFeedBytes of log stops
// holding it back: the store must not fill the disk for a stalled
// consumer. The feed then reports a *FeedGapError once and goes on.
type Feed struct {
	db   *DB
	name string
}

// FeedGapError says frames a feed had not acknowledged were truncated.
type FeedGapError struct {
	Feed      string
	From, To  uint64 // the frames lost, inclusive
	Truncated bool
}

func (e *FeedGapError) Error() string {
	return fmt.Sprintf("store: feed %s fell too far behind: write-ahead log frames %d–%d were removed before it read them", e.Feed, e.From, e.To)
}

// feeds is the persisted acknowledged position of every feed.
type feeds struct {
	mu    sync.Mutex
	path  string
	pos   map[string]uint64
	count atomic.Int32 // len(pos), read without the lock (which Ack holds across an fsync)
}

// any reports whether some feed exists.
func (f *feeds) any() bool { return f.count.Load() > 0 }

var feedName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}$`)

func loadFeeds(path string) (*feeds, error) {
	f := &feeds{path: path, pos: map[string]uint64{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read feeds: %w", err)
	}
	if err := json.Unmarshal(b, &f.pos); err != nil {
		return nil, fmt.Errorf("parse feeds %s: %w", path, err)
	}
	f.count.Store(int32(len(f.pos)))
	return f, nil
}

// saveLocked writes the positions; f.mu is held.
func (f *feeds) saveLocked() error {
	b, err := json.Marshal(f.pos)
	if err != nil {
		return err
	}
	return durable.WriteFile(f.path, b, 0o644)
}

// hold returns the first frame some feed still needs, or 0 if none does.
func (f *feeds) hold() (seq uint64, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.pos))
	for n := range f.pos {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if p := f.pos[n] + 1; seq == 0 || p < seq {
			seq, name = p, n
		}
	}
	return seq, name
}

// Feed opens the named feed, creating it at the current end of the log if
// it does not exist: a new consumer starts with the records committed from
// now on (history is for a rebuild from the sealed store).
func (db *DB) Feed(name string) (*Feed, error) {
	if !feedName.MatchString(name) {
		return nil, fmt.Errorf("store: feed name %q: want lower-case letters, digits and dashes", name)
	}
	db.feeds.mu.Lock()
	defer db.feeds.mu.Unlock()
	if _, ok := db.feeds.pos[name]; !ok {
		db.feeds.pos[name] = db.committed.Load()
		if err := db.feeds.saveLocked(); err != nil {
			delete(db.feeds.pos, name)
			return nil, fmt.Errorf("store: create feed %s: %w", name, err)
		}
		db.feeds.count.Store(int32(len(db.feeds.pos)))
	}
	return &Feed{db: db, name: name}, nil
}

// DropFeed removes a feed, releasing the log it held.
func (db *DB) DropFeed(name string) error {
	db.feeds.mu.Lock()
	defer db.feeds.mu.Unlock()
	if _, ok := db.feeds.pos[name]; !ok {
		return nil
	}
	delete(db.feeds.pos, name)
	db.feeds.count.Store(int32(len(db.feeds.pos)))
	if len(db.feeds.pos) == 0 {
		db.tail.reset()
	}
	return db.feeds.saveLocked()
}

// Position returns the last frame the feed acknowledged.
func (f *Feed) Position() uint64 {
	f.db.feeds.mu.Lock()
	defer f.db.feeds.mu.Unlock()
	return f.db.feeds.pos[f.name]
}

// Ack records durably that the consumer is done with every frame up to and
// including seq; the log may then drop them. Positions only move forward.
func (f *Feed) Ack(seq uint64) error {
	fs := f.db.feeds
	fs.mu.Lock()
	defer fs.mu.Unlock()
	cur, ok := fs.pos[f.name]
	if !ok {
		return fmt.Errorf("store: feed %s was dropped", f.name)
	}
	if seq <= cur {
		return nil
	}
	fs.pos[f.name] = seq
	if err := fs.saveLocked(); err != nil {
		fs.pos[f.name] = cur
		return fmt.Errorf("store: ack feed %s: %w", f.name, err)
	}
	return nil
}

// Read calls fn with every committed frame after the frame numbered after,
// in order, waiting until at least one exists or ctx ends. It returns the
// number of the last frame it delivered (after, if none). Each call of fn
// gets a slice of its own, which it may keep; the records' strings, raw
// bytes and message ids are shared with the store and must not be changed.
//
// Frames still in the store's in-memory tail of recent commits are served
// from it, the rest from the write-ahead log; both give the same records,
// and frame numbers mean the same either way.
//
// If frames after `after` were already truncated, Read returns a
// *FeedGapError naming them; reading on from its To delivers what follows.
func (f *Feed) Read(ctx context.Context, after uint64, fn func(seq uint64, recs []audit.Record) error) (uint64, error) {
	db := f.db
	for db.committed.Load() <= after {
		db.notifyMu.Lock()
		ch := db.notify
		db.notifyMu.Unlock()
		if db.committed.Load() > after {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return after, ctx.Err()
		case <-db.stop:
			return after, ErrClosed
		}
	}
	if first := db.wal.FirstSeq(); after+1 < first {
		return after, &FeedGapError{Feed: f.name, From: after + 1, To: first - 1, Truncated: true}
	}
	last := after
	var err error
	if frames, ok := db.tail.from(after); ok {
		for _, fr := range frames {
			db.tail.served.Add(1)
			if err = fn(fr.seq, feedRecords(fr.recs)); err != nil {
				break
			}
			last = fr.seq
			if err = ctx.Err(); err != nil {
				break
			}
		}
	} else {
		err = db.wal.Replay(after+1, func(seq uint64, payload []byte) error {
			recs, err := decodeRecords(payload)
			if err != nil {
				return fmt.Errorf("frame %d: %w", seq, err)
			}
			db.tail.replayed.Add(1)
			if err := fn(seq, recs); err != nil {
				return err
			}
			last = seq
			return ctx.Err()
		})
	}
	if err != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("store: read feed %s: %w", f.name, err)
	}
	return last, err
}

// signalCommit wakes feeds waiting for frames.
func (db *DB) signalCommit() {
	db.notifyMu.Lock()
	close(db.notify)
	db.notify = make(chan struct{})
	db.notifyMu.Unlock()
}

// truncateWAL removes log segments that neither the sealed store nor any
// feed needs. A feed holding more than MaxFeedBytes of log is let go, with
// an error logged: it will see a FeedGapError.
func (db *DB) truncateWAL(sealedThrough uint64) {
	keep := sealedThrough + 1
	if hold, name := db.feeds.hold(); hold != 0 && hold < keep {
		if size := db.wal.Size(); size > db.opts.MaxFeedBytes {
			db.log.Error("feed fell too far behind; releasing the write-ahead log it held",
				"feed", name, "first_unread", hold, "wal_bytes", size, "limit", db.opts.MaxFeedBytes)
		} else {
			keep = hold
		}
	}
	if err := db.wal.TruncateBefore(keep); err != nil {
		db.log.Warn("truncating wal after seal", "err", err)
	}
}
