// Package store keeps audit records durably and lets DuckDB query them.
//
// The embedded store is shaped like Prometheus's TSDB:
//
//   - a write-ahead log of our own (package wal) is the acknowledgement
//     point: Append returns once the group commit holding the records has
//     been fsync'd;
//   - the head, in-memory DuckDB tables fed from committed batches, makes
//     recent records queryable at once and is rebuilt from the WAL on start;
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
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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
	MinFreeBytes  int64         // Append says ErrNoSpace below this much free disk (default 1 GiB)
	WALSegment    int64         // WAL segment size (default: the wal package's)
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
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = 256 << 20
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = 1 << 30
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
	loadq   chan loadJob
	rotateq chan chan *headGen
	sealq   chan sealRequest
	stop    chan struct{}
	wg      sync.WaitGroup
	failure atomic.Pointer[error] // set when a WAL write failed; writes are refused until restart
	diskOK  atomic.Bool

	committed atomic.Uint64 // last WAL frame made durable
	loadedMu  sync.Mutex
	loaded    uint64        // last WAL frame applied to the head
	loadedCh  chan struct{} // closed and replaced whenever loaded advances

	viewMu  sync.Mutex
	cur     *view
	retired []*view // superseded views, oldest first, awaiting their readers

	genSeq   int
	sealing  []*headGen // rotated out of the loader, not yet sealed (sealer only)
	sealErrs atomic.Int64
}

// Open opens or creates the store in dir, recovering from the WAL.
func Open(dir string, opts Options) (*DB, error) {
	opts.setDefaults()
	db := &DB{
		dir:      dir,
		opts:     opts,
		log:      opts.Logger,
		queue:    make(chan *appendReq, 4096),
		loadq:    make(chan loadJob, 64),
		rotateq:  make(chan chan *headGen),
		sealq:    make(chan sealRequest),
		stop:     make(chan struct{}),
		loadedCh: make(chan struct{}),
	}
	db.diskOK.Store(true)
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
	if err := db.openDuckDB(); err != nil {
		return nil, err
	}
	db.dedup = newDedupIndex(db.loadIDs)
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
	db.checkDisk()
	db.wg.Add(3)
	go db.commitLoop()
	go db.loadLoop()
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

// Append implements Store.
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
	defer close(db.loadq)
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
		db.committed.Store(seq)
	}
	for _, req := range group {
		req.done <- err
	}
	if err == nil && len(batch) > 0 {
		// Blocks when the loader lags; the queue then fills and Append
		// answers ErrBusy, which is the backpressure we want.
		db.loadq <- loadJob{seq: seq, recs: batch}
	}
	return buf
}

// replay rebuilds the head and the dedup index from WAL frames after the
// sealed position.
func (db *DB) replay(sealedThrough uint64) error {
	ld, err := db.newLoader()
	if err != nil {
		return err
	}
	defer ld.close()
	var frames, records int
	start := time.Now()
	err = db.wal.Replay(sealedThrough+1, func(seq uint64, payload []byte) error {
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
		if err := ld.load(loadJob{seq: seq, recs: batch}); err != nil {
			return err
		}
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
	if db.failure.Load() == nil {
		// The loader has exited; rotate the active generation directly.
		v := db.acquire()
		active := v.gens[len(v.gens)-1]
		db.release(v)
		if active.rows.Load() > 0 {
			db.sealing = append(db.sealing, db.rotateTo(db.newGen()))
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
// a change drops (sealed head tables, compacted files) are released only
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

// ---- head: DuckDB tables per tenant and generation ----

type headGen struct {
	id     int
	mu     sync.Mutex
	tables map[string]string // tenant → table name
	maxSeq atomic.Uint64
	rows   atomic.Int64
	bytes  atomic.Int64
	first  atomic.Int64 // unix nanos when the first record was loaded
}

func (db *DB) newGen() *headGen {
	db.genSeq++
	return &headGen{id: db.genSeq, tables: map[string]string{}}
}

func (g *headGen) table(tenant string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.tables[tenant]
	return t, ok
}

type loadJob struct {
	seq  uint64
	recs []*audit.Record
}

// loader appends committed records to the active generation's tables.
type loader struct {
	db        *DB
	conn      driver.Conn
	gen       *headGen
	appenders map[string]*duckdb.Appender
}

func (db *DB) newLoader() (*loader, error) {
	conn, err := db.connector.Connect(context.Background())
	if err != nil {
		return nil, fmt.Errorf("store: loader connection: %w", err)
	}
	v := db.acquire()
	defer db.release(v)
	return &loader{db: db, conn: conn, gen: v.gens[len(v.gens)-1], appenders: map[string]*duckdb.Appender{}}, nil
}

func (l *loader) appender(tenant string) (*duckdb.Appender, error) {
	if a, ok := l.appenders[tenant]; ok {
		return a, nil
	}
	name, exists := l.gen.table(tenant)
	if !exists {
		// Tenant ids are validated as [a-z0-9-] before they reach the
		// store; the quoting is belt and braces.
		name = fmt.Sprintf(`"head_%d_%s"`, l.gen.id, strings.ReplaceAll(tenant, `"`, `""`))
		if _, err := l.db.sql.Exec(headDDL(name)); err != nil {
			return nil, fmt.Errorf("store: create head table: %w", err)
		}
	}
	a, err := duckdb.NewAppenderFromConn(l.conn, "", strings.Trim(name, `"`))
	if err != nil {
		return nil, fmt.Errorf("store: head appender: %w", err)
	}
	if !exists {
		l.gen.mu.Lock()
		l.gen.tables[tenant] = name
		l.gen.mu.Unlock()
	}
	l.appenders[tenant] = a
	return a, nil
}

func (l *loader) load(job loadJob) error {
	row := make([]driver.Value, len(columns)+1)
	touched := map[string]*duckdb.Appender{}
	var bytes int64
	for _, r := range job.recs {
		a, err := l.appender(r.Tenant)
		if err != nil {
			return err
		}
		row[0] = job.seq
		for i, c := range columns {
			row[i+1] = c.get(r)
		}
		if err := a.AppendRow(row...); err != nil {
			return fmt.Errorf("store: append record %s to head: %w", r.ID, err)
		}
		touched[r.Tenant] = a
		bytes += int64(len(r.Raw))
	}
	for _, a := range touched {
		if err := a.Flush(); err != nil {
			return fmt.Errorf("store: flush head: %w", err)
		}
	}
	g := l.gen
	g.first.CompareAndSwap(0, time.Now().UnixNano())
	g.rows.Add(int64(len(job.recs)))
	g.bytes.Add(bytes)
	g.maxSeq.Store(job.seq)
	l.db.setLoaded(job.seq)
	return nil
}

// switchTo closes the current generation's appenders and starts loading
// into gen.
func (l *loader) switchTo(gen *headGen) error {
	var errs []error
	for _, a := range l.appenders {
		errs = append(errs, a.Close())
	}
	l.appenders = map[string]*duckdb.Appender{}
	l.gen = gen
	return errors.Join(errs...)
}

func (l *loader) close() {
	l.switchTo(nil)
	l.conn.Close()
}

func (db *DB) loadLoop() {
	defer db.wg.Done()
	ld, err := db.newLoader()
	if err != nil {
		db.fail(err)
		return
	}
	defer ld.close()
	for {
		select {
		case job, ok := <-db.loadq:
			if !ok {
				return
			}
			if err := ld.load(job); err != nil {
				// The records are durable in the WAL; a restart replays them.
				db.fail(fmt.Errorf("load head: %w", err))
			}
		case reply := <-db.rotateq:
			if ld.gen.rows.Load() == 0 {
				reply <- nil
				continue
			}
			next := db.newGen()
			if err := ld.switchTo(next); err != nil {
				db.log.Error("closing head appenders", "err", err)
			}
			reply <- db.rotateTo(next)
		}
	}
}

// rotateTo publishes a view whose active generation is next and returns the
// generation it replaced, now frozen and ready to seal.
func (db *DB) rotateTo(next *headGen) *headGen {
	var old *headGen
	db.publish(func(cur *view) *view {
		old = cur.gens[len(cur.gens)-1]
		return &view{cat: cur.cat, gens: append(append([]*headGen(nil), cur.gens...), next)}
	})
	return old
}

func (db *DB) fail(err error) {
	db.failure.CompareAndSwap(nil, &err)
	db.log.Error("store failed; refusing writes until restart", "err", err)
}

func (db *DB) setLoaded(seq uint64) {
	db.loadedMu.Lock()
	db.loaded = seq
	close(db.loadedCh)
	db.loadedCh = make(chan struct{})
	db.loadedMu.Unlock()
}

// waitLoaded waits until every record acknowledged before the call is in
// the head, so a reader always sees its own acknowledged writes.
func (db *DB) waitLoaded(ctx context.Context) error {
	want := db.committed.Load()
	for {
		db.loadedMu.Lock()
		loaded, ch := db.loaded, db.loadedCh
		db.loadedMu.Unlock()
		if loaded >= want || db.failure.Load() != nil {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-db.stop:
			return nil
		}
	}
}
