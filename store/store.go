// Package store keeps audit records durably and lets DuckDB query them.
//
// The embedded store is shaped like Prometheus's TSDB:
//
//   - a write-ahead log of our own (package wal) is the acknowledgement
//     point: Append returns once the group commit holding the records has
//     been fsync'd;
//   - the head, committed records kept in Go memory and read by DuckDB
//     through a table function, makes recent records queryable at once and
//     is rebuilt from the WAL on start;
//   - sealing writes the head out as zstd Parquet, one file per tenant and
//     UTC day, sorted by user then time; a catalog lists those files with
//     their row counts, time ranges and hashes; compaction merges a day's
//     files into one.
//
// DuckDB is the query engine and the Parquet writer, never the durable store:
// its checkpoints stall commits for seconds, and its constraints cannot
// deduplicate at ingest speed, so deduplication is an in-memory index here.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/wal"
)

// Store is what the rest of custos needs from storage. It is deliberately
// small so that other engines (ClickHouse) can implement it.
type Store interface {
	// Append makes records durable. dup[i] reports that recs[i] was already
	// stored (same tenant and Id) and nothing was written for it. When
	// Append returns nil, every non-duplicate record survives a crash.
	Append(ctx context.Context, recs []audit.Record) (dup []bool, err error)
	// Records calls fn for the tenant's records matching q, newest first.
	Records(ctx context.Context, tenant string, q Query, fn func(*audit.Record) error) error
	// Count returns how many of the tenant's records match q.
	Count(ctx context.Context, tenant string, q Query) (int64, error)
	Close() error
}

var (
	// ErrBusy means the write queue is full; retry later (HTTP 429).
	ErrBusy = errors.New("store: write queue is full")
	// ErrNoSpace means free disk space is below the configured headroom (HTTP 503).
	ErrNoSpace = errors.New("store: disk headroom exhausted")
	// ErrClosed means the store is shutting down.
	ErrClosed = errors.New("store: closed")
)

// Options tune the embedded store. Zero values take the defaults.
type Options struct {
	MemoryLimit   string        // DuckDB memory_limit (default "4GB")
	Threads       int           // DuckDB threads (default: CPUs)
	SealBytes     int64         // seal the head once it holds this many raw bytes (default 256 MiB)
	SealInterval  time.Duration // ... or once its oldest record is this old (default 5m)
	CompactAfter  time.Duration // merge a past day's parts once the newest is this old (default 10m)
	MaxDayParts   int           // ... or as soon as a day has this many parts (default 16)
	DedupWindow   time.Duration // dedup partitions younger than this stay in memory (default 8 days)
	MaxQueueBytes int64         // raw bytes waiting for the committer before Append says ErrBusy (default 256 MiB)
	MaxHeadBytes  int64         // raw bytes in unsealed head generations before Append says ErrBusy (default 3 × SealBytes)
	MinFreeBytes  int64         // Append says ErrNoSpace below this much free disk (default 1 GiB)
	WALSegment    int64         // WAL segment size (default: the wal package's)
	MaxFeedBytes  int64         // write-ahead log a lagging Feed may hold back from truncation (default 8 GiB)
	FeedTailBytes int64         // newest committed records kept in memory for feeds to read (default 64 MiB; negative: none)
	Tick          time.Duration // how often the seal loop looks for work (default 1s)
	Logger        *slog.Logger
}

func (o *Options) setDefaults() {
	if o.MemoryLimit == "" {
		o.MemoryLimit = "4GB"
	}
	if o.Threads <= 0 {
		o.Threads = runtime.NumCPU()
	}
	if o.SealBytes <= 0 {
		o.SealBytes = 256 << 20
	}
	if o.SealInterval <= 0 {
		o.SealInterval = 5 * time.Minute
	}
	if o.CompactAfter <= 0 {
		o.CompactAfter = 10 * time.Minute
	}
	if o.MaxDayParts <= 0 {
		o.MaxDayParts = 16
	}
	if o.DedupWindow <= 0 {
		o.DedupWindow = 8 * 24 * time.Hour
	}
	if o.MaxHeadBytes <= 0 {
		o.MaxHeadBytes = 3 * o.SealBytes
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = 256 << 20
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = 1 << 30
	}
	if o.MaxFeedBytes <= 0 {
		o.MaxFeedBytes = 8 << 30
	}
	if o.FeedTailBytes == 0 {
		o.FeedTailBytes = 64 << 20
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// DB is the embedded store.
type DB struct {
	dir  string
	opts Options
	log  *slog.Logger

	connector *duckdb.Connector
	sql       *sql.DB
	wal       *wal.Log
	dedup     *dedupIndex

	sendMu  sync.RWMutex // held shared while sending to queue, exclusively to close it
	closed  bool
	queue   chan *appendReq
	queued  atomic.Int64 // raw bytes accepted by Append and not yet committed
	sealq   chan sealRequest
	stop    chan struct{}
	wg      sync.WaitGroup
	failure atomic.Pointer[error] // set when a WAL write failed; writes are refused until restart
	diskOK  atomic.Bool

	committed atomic.Uint64 // last WAL frame made durable
	feeds     *feeds
	notifyMu  sync.Mutex
	notify    chan struct{} // closed and replaced at every commit, for feeds
	tail      feedTail      // the newest committed frames, for feeds

	heads     headRegistry
	headMu    sync.Mutex   // held to add to the active generation and to replace it
	headBytes atomic.Int64 // raw bytes in unsealed generations
	freedMu   sync.Mutex
	freed     chan struct{} // closed and replaced whenever a seal frees head memory

	viewMu  sync.Mutex
	cur     *view
	retired []*view // superseded views, oldest first, awaiting their readers

	genSeq int
	minRun int // fewest records worth sealing as a separate, parallel part

	skipCloseSeal bool       // tests: close like a crash, leaving the head to WAL replay
	sealing       []*headGen // rotated out of the loader, not yet sealed (sealer only)
	sealErrs      atomic.Int64
}

// Open opens or creates the store in dir, recovering from the WAL.
func Open(dir string, opts Options) (*DB, error) {
	opts.setDefaults()
	db := &DB{
		dir:    dir,
		opts:   opts,
		log:    opts.Logger,
		queue:  make(chan *appendReq, 4096),
		sealq:  make(chan sealRequest),
		stop:   make(chan struct{}),
		freed:  make(chan struct{}),
		notify: make(chan struct{}),
		minRun: 50_000,
	}
	db.diskOK.Store(true)
	db.tail.max = opts.FeedTailBytes
	for _, d := range []string{dir, db.path("blocks"), db.path("tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	cat, err := loadCatalog(db.path("catalog.json"))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := db.removeOrphans(cat); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if db.feeds, err = loadFeeds(db.path("feeds.json")); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := db.openDuckDB(); err != nil {
		return nil, err
	}
	db.dedup = newDedupIndex(db.loadIDs)
	db.heads.gens = map[int]*headGen{}
	db.heads.runs = map[int64][]*audit.Record{}
	if err := db.registerHead(context.Background()); err != nil {
		db.sql.Close()
		return nil, err
	}
	if err := db.registerIPIn(context.Background()); err != nil {
		db.sql.Close()
		return nil, err
	}
	active := db.newGen()
	db.cur = &view{cat: cat, gens: []*headGen{active}}
	db.cur.refs.Store(1)

	db.wal, err = wal.Open(db.path("wal"), wal.Options{SegmentSize: opts.WALSegment, Logger: db.log})
	if err != nil {
		db.sql.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := db.replay(cat.SealedThrough); err != nil {
		db.wal.Close()
		db.sql.Close()
		return nil, fmt.Errorf("store: replay wal: %w", err)
	}
	db.committed.Store(db.wal.NextSeq() - 1)
	db.checkDisk()
	db.wg.Add(2)
	go db.commitLoop()
	go db.sealLoop()
	return db, nil
}

func (db *DB) path(elem ...string) string {
	return filepath.Join(append([]string{db.dir}, elem...)...)
}

func (db *DB) openDuckDB() error {
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return fmt.Errorf("store: open duckdb: %w", err)
	}
	db.connector = c
	db.sql = sql.OpenDB(c)
	settings := []string{
		fmt.Sprintf("SET memory_limit = %s", sqlString(db.opts.MemoryLimit)),
		fmt.Sprintf("SET threads = %d", db.opts.Threads),
		fmt.Sprintf("SET temp_directory = %s", sqlString(db.path("tmp"))),
		"SET parquet_metadata_cache = true",
	}
	for _, s := range settings {
		if _, err := db.sql.Exec(s); err != nil {
			db.sql.Close()
			return fmt.Errorf("store: duckdb %q: %w", s, err)
		}
	}
	return nil
}

// removeOrphans deletes files under blocks/ that the catalog does not list:
// the leftovers of a seal or compaction that crashed before its catalog
// update (their records are still in the WAL or in the parts they merged).
func (db *DB) removeOrphans(cat *catalog) error {
	known := make(map[string]bool, len(cat.Parts))
	for _, p := range cat.Parts {
		known[p.Path] = true
	}
	for _, p := range cat.Parts {
		if _, err := os.Stat(db.path(p.Path)); err != nil {
			return fmt.Errorf("catalog lists %s but it is unreadable: %w", p.Path, err)
		}
	}
	os.RemoveAll(db.path("tmp"))
	os.MkdirAll(db.path("tmp"), 0o755)
	return filepath.WalkDir(db.path("blocks"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(db.dir, path)
		if !known[rel] {
			db.log.Warn("removing file not in the catalog", "path", rel)
			return os.Remove(path)
		}
		return nil
	})
}

// checkDisk refreshes whether free space is above the headroom.
func (db *DB) checkDisk() {
	var st syscall.Statfs_t
	if err := syscall.Statfs(db.dir, &st); err != nil {
		return
	}
	free := int64(st.Bavail) * st.Bsize
	ok := free >= db.opts.MinFreeBytes
	if db.diskOK.Swap(ok) != ok {
		if ok {
			db.log.Info("disk headroom restored; accepting writes", "free_bytes", free)
		} else {
			db.log.Error("disk headroom exhausted; refusing writes", "free_bytes", free, "min_free_bytes", db.opts.MinFreeBytes)
		}
	}
}

// Ready reports why the store cannot accept writes, or nil.
func (db *DB) Ready() error {
	if f := db.failure.Load(); f != nil {
		return *f
	}
	if !db.diskOK.Load() {
		return ErrNoSpace
	}
	return nil
}

// ---- append: validate nothing, dedup, group commit ----

type appendReq struct {
	recs  []audit.Record
	keys  []partKey
	dup   []bool
	bytes int64
	done  chan error
}

// Append implements Store. The head keeps pointers into recs: the caller
// must not change or reuse recs' elements afterwards.
func (db *DB) Append(ctx context.Context, recs []audit.Record) ([]bool, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	if err := db.Ready(); err != nil {
		return nil, err
	}
	var size int64
	seen := map[partKey]bool{}
	var keys []partKey
	for i := range recs {
		r := &recs[i]
		size += int64(len(r.Raw)) + 256
		k := partKey{r.Tenant, dayNumber(r.CreationTime)}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if err := db.waitHeadRoom(ctx); err != nil {
		return nil, err
	}
	// A single batch larger than the queue is still let through when the
	// queue is empty, so no batch is refused forever.
	if n := db.queued.Add(size); n > db.opts.MaxQueueBytes && n != size {
		db.queued.Add(-size)
		return nil, ErrBusy
	}
	if err := db.dedup.pin(ctx, keys); err != nil {
		db.queued.Add(-size)
		return nil, err
	}
	req := &appendReq{recs: recs, keys: keys, bytes: size, done: make(chan error, 1)}
	db.sendMu.RLock()
	if db.closed {
		db.sendMu.RUnlock()
		db.dedup.unpin(keys)
		db.queued.Add(-size)
		return nil, ErrClosed
	}
	db.queue <- req
	db.sendMu.RUnlock()
	// Wait even if ctx ends: the batch may already be on its way to disk,
	// and the answer must say truthfully whether it is.
	err := <-req.done
	return req.dup, err
}

const maxGroupBytes = 64 << 20

func (db *DB) commitLoop() {
	defer db.wg.Done()
	var buf []byte
	for req := range db.queue {
		group := []*appendReq{req}
		size := req.bytes
	drain:
		for size < maxGroupBytes {
			select {
			case r, ok := <-db.queue:
				if !ok {
					break drain
				}
				group = append(group, r)
				size += r.bytes
			default:
				break drain
			}
		}
		buf = db.commit(group, buf[:0])
		if cap(buf) > 2*maxGroupBytes {
			buf = nil
		}
	}
}

type undoEntry struct {
	k  partKey
	id idKey
}

func (db *DB) commit(group []*appendReq, buf []byte) []byte {
	seq := db.wal.NextSeq()
	var batch []*audit.Record
	var undo []undoEntry
	for _, req := range group {
		req.dup = make([]bool, len(req.recs))
		for i := range req.recs {
			r := &req.recs[i]
			k, id := partKey{r.Tenant, dayNumber(r.CreationTime)}, hashID(r.ID)
			if db.dedup.insert(k, id, seq) {
				batch = append(batch, r)
				undo = append(undo, undoEntry{k, id})
			} else {
				req.dup[i] = true
			}
		}
	}
	var err error
	if f := db.failure.Load(); f != nil {
		err = *f
	} else if len(batch) > 0 {
		buf = encodeRecords(buf, batch)
		var got uint64
		if got, err = db.wal.Append(buf); err == nil {
			if got != seq {
				err = fmt.Errorf("wal assigned frame %d, expected %d", got, seq)
			} else {
				err = db.wal.Sync()
			}
		}
		if err != nil {
			err = fmt.Errorf("store: write wal: %w", err)
			// After a failed write or fsync the log's state on disk is
			// unknown; keep refusing writes rather than guess.
			db.failure.Store(&err)
			db.log.Error("wal write failed; refusing further writes until restart", "err", err)
		}
	}
	if err != nil {
		for _, u := range undo {
			db.dedup.remove(u.k, u.id)
		}
	}
	for _, req := range group {
		db.dedup.unpin(req.keys)
		db.queued.Add(-req.bytes)
	}
	if err == nil && len(batch) > 0 {
		// In the head before the answer, so a client reads its own writes.
		db.addToHead(seq, batch)
		if db.feeds.any() {
			db.tail.push(seq, batch)
		}
		db.committed.Store(seq)
		db.signalCommit()
	}
	for _, req := range group {
		req.done <- err
	}
	return buf
}

// replay rebuilds the head and the dedup index from WAL frames after the
// sealed position.
func (db *DB) replay(sealedThrough uint64) error {
	var frames, records int
	start := time.Now()
	err := db.wal.Replay(sealedThrough+1, func(seq uint64, payload []byte) error {
		recs, err := decodeRecords(payload)
		if err != nil {
			return fmt.Errorf("frame %d: %w", seq, err)
		}
		seen := map[partKey]bool{}
		var keys []partKey
		batch := make([]*audit.Record, len(recs))
		for i := range recs {
			r := &recs[i]
			batch[i] = r
			if k := (partKey{r.Tenant, dayNumber(r.CreationTime)}); !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		if err := db.dedup.pin(context.Background(), keys); err != nil {
			return err
		}
		for _, r := range batch {
			db.dedup.insert(partKey{r.Tenant, dayNumber(r.CreationTime)}, hashID(r.ID), seq)
		}
		db.dedup.unpin(keys)
		db.addToHead(seq, batch)
		frames++
		records += len(recs)
		db.committed.Store(seq)
		return nil
	})
	if err != nil {
		return err
	}
	if frames > 0 {
		db.log.Info("replayed write-ahead log", "frames", frames, "records", records, "elapsed", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// Close stops accepting writes, commits what was queued, seals the head so
// the next start needs no replay, and releases everything.
func (db *DB) Close() error {
	db.sendMu.Lock()
	if db.closed {
		db.sendMu.Unlock()
		return nil
	}
	db.closed = true
	close(db.queue)
	db.sendMu.Unlock()
	close(db.stop)
	db.wg.Wait()

	var errs []error
	if db.failure.Load() == nil && !db.skipCloseSeal {
		// The loader has exited; rotate the active generation directly.
		v := db.acquire()
		active := v.gens[len(v.gens)-1]
		db.release(v)
		if active.rows.Load() > 0 {
			db.rotateHead()
		}
		if err := db.sealPending(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("seal on close: %w", err))
		}
	}
	errs = append(errs, db.wal.Close())
	db.viewMu.Lock()
	db.cur.refs.Add(-1)
	db.viewMu.Unlock()
	db.reclaim()
	errs = append(errs, db.sql.Close(), db.connector.Close())
	return errors.Join(errs...)
}

// ---- views: consistent snapshots of head generations and sealed parts ----

// view is what one reader sees: the head generations and the catalog at one
// moment. Views are immutable; a change publishes a new one. Resources that
// a change drops (sealed head generations, compacted files) are released only
// after every older view's readers are done.
type view struct {
	refs    atomic.Int64
	cat     *catalog
	gens    []*headGen // oldest first; the last is the one being loaded
	cleanup []func()   // run when this view and all older ones are released
}

func (db *DB) acquire() *view {
	db.viewMu.Lock()
	defer db.viewMu.Unlock()
	v := db.cur
	v.refs.Add(1)
	return v
}

func (db *DB) release(v *view) {
	if v.refs.Add(-1) == 0 {
		db.reclaim()
	}
}

// publish replaces the current view with next(current); cleanup runs once
// no reader can see the old view any more. Deriving the next view under the
// lock means concurrent changes (a rotation, a seal) never undo each other.
func (db *DB) publish(next func(cur *view) *view, cleanup ...func()) {
	db.viewMu.Lock()
	old := db.cur
	n := next(old)
	n.refs.Store(1)
	old.cleanup = cleanup
	db.retired = append(db.retired, old)
	db.cur = n
	db.viewMu.Unlock()
	db.release(old)
}

func (db *DB) reclaim() {
	db.viewMu.Lock()
	var run []func()
	for len(db.retired) > 0 && db.retired[0].refs.Load() == 0 {
		run = append(run, db.retired[0].cleanup...)
		db.retired = db.retired[1:]
	}
	db.viewMu.Unlock()
	for _, f := range run {
		f()
	}
}

// ---- head generations ----

// maxHeadWait is how long Append waits for a seal to free head memory
// before it answers ErrBusy. Waiting a little costs the client less than a
// retry, which sends and parses the whole batch again.
const maxHeadWait = 2 * time.Second

// waitHeadRoom returns once the head is below MaxHeadBytes. The head lives
// in memory until sealed, so when sealing falls behind writes must slow
// down rather than grow it without bound.
func (db *DB) waitHeadRoom(ctx context.Context) error {
	var timeout <-chan time.Time
	for db.headBytes.Load() > db.opts.MaxHeadBytes {
		if timeout == nil {
			t := time.NewTimer(maxHeadWait)
			defer t.Stop()
			timeout = t.C
		}
		db.freedMu.Lock()
		ch := db.freed
		db.freedMu.Unlock()
		if db.headBytes.Load() <= db.opts.MaxHeadBytes {
			break
		}
		select {
		case <-ch:
		case <-timeout:
			return ErrBusy
		case <-ctx.Done():
			return ctx.Err()
		case <-db.stop:
			return ErrClosed
		}
	}
	return nil
}

// releaseHead accounts for a sealed generation's memory and wakes writers
// waiting for room.
func (db *DB) releaseHead(g *headGen) {
	db.headBytes.Add(-g.bytes.Load())
	db.freedMu.Lock()
	close(db.freed)
	db.freed = make(chan struct{})
	db.freedMu.Unlock()
}

func (db *DB) newGen() *headGen {
	db.genSeq++
	g := newHeadGen(db.genSeq)
	db.heads.put(g)
	return g
}

// addToHead adds a committed frame's records to the active generation.
func (db *DB) addToHead(seq uint64, recs []*audit.Record) {
	db.headMu.Lock()
	defer db.headMu.Unlock()
	v := db.acquire()
	active := v.gens[len(v.gens)-1]
	db.release(v)
	before := active.bytes.Load()
	active.add(seq, recs)
	db.headBytes.Add(active.bytes.Load() - before)
}

// rotateHead freezes the active generation, if it holds anything, and
// queues it for sealing. Only the seal loop (or Close, after it) calls it.
func (db *DB) rotateHead() {
	db.headMu.Lock()
	defer db.headMu.Unlock()
	v := db.acquire()
	active := v.gens[len(v.gens)-1]
	db.release(v)
	if active.rows.Load() == 0 {
		return
	}
	next := db.newGen()
	db.publish(func(cur *view) *view {
		return &view{cat: cur.cat, gens: append(append([]*headGen(nil), cur.gens...), next)}
	})
	db.sealing = append(db.sealing, active)
}

func (db *DB) fail(err error) {
	db.failure.CompareAndSwap(nil, &err)
	db.log.Error("store failed; refusing writes until restart", "err", err)
}
