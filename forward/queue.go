package forward

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/custos-audit/custos/durable"
	"github.com/custos-audit/custos/wal"
)

// The disk queue is a write-ahead log (package wal: CRC-32C framed
// segments, fsync, torn-tail repair on open) holding one frame per batch,
// plus a small state file. The frame's seq is the batch's sequence
// number: wal seqs are dense, start at 1 and survive restarts because
// segment files are named by their first seq and the active segment is
// never deleted. Only synced frames are ever read back, so a seq that a
// torn-tail repair hands out again was never sent to the server.
//
// A frame also carries the file positions the batch moved to. A file's
// offset therefore becomes durable in the same fsync as its lines: after
// a crash the forwarder neither re-reads lines already queued nor skips
// lines that were not.
//
// Frame payload, version 1:
//
//	byte     version (1)
//	uvarint  records in the batch
//	uvarint  records queued in total through this batch (for exact counters)
//	uvarint  length of the positions JSON, then that JSON ([]Position)
//	rest     the records, NDJSON, each line ending in '\n'

const frameVersion = 1

// ErrFull is returned by Append when the batch does not fit under the
// queue's bound. Nothing was written.
var ErrFull = errors.New("forward: disk queue is full")

// ErrTooLarge is returned by Append for a batch larger than the whole
// queue bound: it could never be queued.
var ErrTooLarge = errors.New("forward: batch is larger than the queue bound")

// Position is where a file input has read to, identified so that a
// renamed file is recognised and a new file under an old name (or an old
// inode number reused) is not.
type Position struct {
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	FPLen  int    `json:"fp_len"` // bytes the fingerprint covers (the file's first ones)
	FP     uint64 `json:"fp"`     // FNV-1a of those bytes
	Offset int64  `json:"offset"` // bytes consumed; -1 in an update means "forget this file"
	Path   string `json:"path"`   // where it was last seen, for logs
	// Size is the file's size when it was last looked at: if the file
	// disappears while the forwarder is stopped, Offset < Size tells that
	// unread lines went with it.
	Size int64 `json:"size,omitempty"`
}

func (p Position) key() string { return fmt.Sprintf("%d:%d", p.Dev, p.Ino) }

// Batch is one queued batch as the sender sees it.
type Batch struct {
	Seq     uint64
	Records int
	NDJSON  []byte
}

// Outcome is what became of a batch the sender is done with.
type Outcome struct {
	Records  int  // records in the batch
	Rejected int  // records the server rejected one by one
	Refused  bool // the server refused the whole batch for good (4xx)
}

// Counters are the queue's durable totals. They survive restarts so that
// a forwarder's numbers add up across kill -9: Queued counts every record
// that entered the queue, the others every record of a batch at or below
// the acknowledged sequence.
type Counters struct {
	Queued         uint64 `json:"queued"`          // records that entered the queue
	Batches        uint64 `json:"batches"`         // batches the server answered 2xx
	Sent           uint64 `json:"sent"`            // records the server took (accepted or duplicate)
	Rejected       uint64 `json:"rejected"`        // records the server rejected individually
	RefusedBatches uint64 `json:"refused_batches"` // batches refused as a whole (permanent 4xx)
	Refused        uint64 `json:"refused"`         // records in those batches
}

// QueueStats is a snapshot of the queue.
type QueueStats struct {
	Sequence uint64 // last sequence assigned; 0 before the first batch
	Acked    uint64 // every batch at or below it is done
	Bytes    int64  // payload bytes of batches not yet done
	Records  int64  // records in batches not yet done
	Counters Counters
	LastAck  time.Time // when Acked last advanced in this process; zero if never
}

// queueState is the state file.
type queueState struct {
	Acked            uint64     `json:"acked"`
	PositionsThrough uint64     `json:"positions_through"` // Positions include every frame up to it
	Positions        []Position `json:"positions"`
	Counters         Counters   `json:"counters"` // of batches ≤ Acked, and Queued as of PositionsThrough
}

// QueueOptions configures a Queue.
type QueueOptions struct {
	MaxBytes int64 // bound on the payload bytes of batches not yet done (default 1 GiB)
	// SaveEvery bounds how often acks rewrite the state file (default 1s).
	// Acks not yet saved when the process dies are sent again: at least
	// once, and the server drops the duplicates.
	SaveEvery time.Duration
	// SegmentBytes is the size of the queue's files (default an eighth of
	// MaxBytes, between 1 and 64 MiB); delivered batches are freed a
	// whole file at a time.
	SegmentBytes int64
	Logger       *slog.Logger
}

// Queue is the forwarder's persistent queue of batches.
type Queue struct {
	dir       string
	log       *wal.Log
	maxBytes  int64
	saveEvery time.Duration
	logger    *slog.Logger

	appendMu sync.Mutex // one Append at a time: seqs and totals go in order
	saveMu   sync.Mutex // one state file write at a time

	mu        sync.Mutex
	last      uint64 // last durable seq
	acked     uint64
	pending   []pendingBatch // seqs acked+1 … last, in order
	done      map[uint64]Outcome
	bytes     int64
	records   int64
	counters  Counters
	positions map[string]Position
	posDirty  bool
	saved     time.Time
	savedAck  uint64
	lastAck   time.Time
	changed   chan struct{} // closed when a frame becomes durable or the queue closes
	closed    bool
}

type pendingBatch struct {
	records int
	bytes   int64
}

// OpenQueue opens (creating if needed) the queue in dir, repairing a torn
// tail left by a crash.
func OpenQueue(dir string, opts QueueOptions) (*Queue, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 30
	}
	if opts.SaveEvery <= 0 {
		opts.SaveEvery = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Small enough segments that acknowledged batches free disk soon
	// after, large enough that a busy queue is not a heap of files.
	seg := opts.SegmentBytes
	if seg <= 0 {
		seg = min(max(opts.MaxBytes/8, 1<<20), 64<<20)
	}
	l, err := wal.Open(dir, wal.Options{SegmentSize: seg, Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("open disk queue %s: %w", dir, err)
	}
	q := &Queue{
		dir: dir, log: l, maxBytes: opts.MaxBytes, saveEvery: opts.SaveEvery, logger: opts.Logger,
		done: map[uint64]Outcome{}, positions: map[string]Position{}, changed: make(chan struct{}),
	}
	if err := q.load(); err != nil {
		l.Close()
		return nil, fmt.Errorf("open disk queue %s: %w", dir, err)
	}
	return q, nil
}

func (q *Queue) statePath() string { return filepath.Join(q.dir, "state.json") }

// load reads the state file and the frames it does not cover.
func (q *Queue) load() error {
	var st queueState
	b, err := os.ReadFile(q.statePath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("read %s: %w", q.statePath(), err)
		}
	}
	q.last = q.log.NextSeq() - 1
	if st.Acked > q.last || st.PositionsThrough > q.last {
		// The segments were lost or replaced while the state survived:
		// carrying on would hand out sequence numbers the server has
		// already seen.
		return fmt.Errorf("state file says batch %d was queued but the queue ends at %d; the queue directory was damaged (remove it to start over with sequence 1)",
			max(st.Acked, st.PositionsThrough), q.last)
	}
	q.acked, q.savedAck = st.Acked, st.Acked
	q.counters = st.Counters
	for _, p := range st.Positions {
		q.positions[p.key()] = p
	}
	from := min(st.Acked, st.PositionsThrough) + 1
	if from > q.last && q.last > 0 {
		from = q.last // read the last frame anyway, for the queued total
	}
	next := from
	err = q.log.Replay(from, func(seq uint64, payload []byte) error {
		if seq != next {
			return fmt.Errorf("frame %d follows %d", seq, next-1)
		}
		next++
		f, err := decodeFrame(payload)
		if err != nil {
			return fmt.Errorf("batch %d: %w", seq, err)
		}
		if seq > st.PositionsThrough {
			q.mergePositions(f.positions)
		}
		if seq > st.Acked {
			q.pending = append(q.pending, pendingBatch{records: f.records, bytes: int64(len(payload))})
			q.bytes += int64(len(payload))
			q.records += int64(f.records)
		}
		q.counters.Queued = f.total
		return nil
	})
	if err != nil {
		return err
	}
	if next != q.last+1 {
		return fmt.Errorf("read batches up to %d, want %d", next-1, q.last)
	}
	return nil
}

type frame struct {
	records   int
	total     uint64
	positions []Position
	ndjson    []byte
}

func encodeFrame(records int, total uint64, positions []Position, ndjson []byte) ([]byte, error) {
	var pj []byte
	if len(positions) > 0 {
		var err error
		if pj, err = json.Marshal(positions); err != nil {
			return nil, fmt.Errorf("encode positions: %w", err)
		}
	}
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(pj)+len(ndjson))
	b = append(b, frameVersion)
	b = binary.AppendUvarint(b, uint64(records))
	b = binary.AppendUvarint(b, total)
	b = binary.AppendUvarint(b, uint64(len(pj)))
	b = append(b, pj...)
	return append(b, ndjson...), nil
}

func decodeFrame(b []byte) (frame, error) {
	var f frame
	if len(b) == 0 || b[0] != frameVersion {
		return f, errors.New("unknown batch format (written by a newer custos?)")
	}
	b = b[1:]
	var vals [3]uint64
	for i := range vals {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return f, errors.New("bad batch header")
		}
		vals[i], b = v, b[n:]
	}
	if vals[2] > uint64(len(b)) {
		return f, errors.New("bad batch header")
	}
	if vals[2] > 0 {
		if err := json.Unmarshal(b[:vals[2]], &f.positions); err != nil {
			return f, fmt.Errorf("bad positions: %w", err)
		}
	}
	f.records, f.total, f.ndjson = int(vals[0]), vals[1], b[vals[2]:]
	return f, nil
}

func (q *Queue) mergePositions(ps []Position) {
	for _, p := range ps {
		if p.Offset < 0 {
			delete(q.positions, p.key())
		} else {
			q.positions[p.key()] = p
		}
		q.posDirty = true
	}
}

// Fits tells whether a batch of n payload bytes would fit now.
func (q *Queue) Fits(n int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes+int64(n) <= q.maxBytes
}

// MaxBytes is the queue's bound.
func (q *Queue) MaxBytes() int64 { return q.maxBytes }

// Append queues a batch of records (NDJSON, each line ending in '\n') with
// the file positions it moves to, and returns its sequence number once it
// is durable. It fails with ErrFull, writing nothing, when the batch does
// not fit under the bound. A batch without records only saves positions.
func (q *Queue) Append(records int, ndjson []byte, positions []Position) (uint64, error) {
	q.appendMu.Lock()
	defer q.appendMu.Unlock()
	if records == 0 {
		return 0, q.savePositions(positions)
	}
	q.mu.Lock()
	total := q.counters.Queued + uint64(records)
	used := q.bytes
	q.mu.Unlock()
	payload, err := encodeFrame(records, total, positions, ndjson)
	if err != nil {
		return 0, err
	}
	if int64(len(payload)) > q.maxBytes {
		return 0, ErrTooLarge
	}
	// Only acks change q.bytes meanwhile, and they shrink it.
	if used+int64(len(payload)) > q.maxBytes {
		return 0, ErrFull
	}
	seq, err := q.log.Append(payload)
	if err != nil {
		return 0, fmt.Errorf("queue batch: %w", err)
	}
	if err := q.log.Sync(); err != nil {
		return 0, fmt.Errorf("queue batch: %w", err)
	}
	q.mu.Lock()
	q.last = seq
	q.pending = append(q.pending, pendingBatch{records: records, bytes: int64(len(payload))})
	q.bytes += int64(len(payload))
	q.records += int64(records)
	q.counters.Queued = total
	q.mergePositions(positions)
	close(q.changed)
	q.changed = make(chan struct{})
	q.mu.Unlock()
	return seq, nil
}

// savePositions makes position updates that come with no records durable
// (lines that were all blank or too long, a file to forget).
func (q *Queue) savePositions(positions []Position) error {
	if len(positions) == 0 {
		return nil
	}
	q.mu.Lock()
	q.mergePositions(positions)
	q.mu.Unlock()
	return q.save()
}

// Positions returns the file positions of everything queued.
func (q *Queue) Positions() []Position {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Position, 0, len(q.positions))
	for _, p := range q.positions {
		out = append(out, p)
	}
	return out
}

// Ack records what became of batch seq. Acked advances only over a
// contiguous run of done batches, so a restart resends every batch that
// was not done, whatever order concurrent sends finished in.
func (q *Queue) Ack(seq uint64, o Outcome) error {
	q.mu.Lock()
	if seq <= q.acked || seq > q.last {
		q.mu.Unlock()
		return fmt.Errorf("ack of batch %d outside the queue (%d, %d]", seq, q.acked, q.last)
	}
	q.done[seq] = o
	advanced := false
	for {
		o, ok := q.done[q.acked+1]
		if !ok {
			break
		}
		delete(q.done, q.acked+1)
		q.acked++
		p := q.pending[0]
		q.pending = q.pending[1:]
		q.bytes -= p.bytes
		q.records -= int64(p.records)
		if o.Refused {
			q.counters.RefusedBatches++
			q.counters.Refused += uint64(o.Records)
		} else {
			q.counters.Batches++
			q.counters.Rejected += uint64(o.Rejected)
			q.counters.Sent += uint64(o.Records - o.Rejected)
		}
		advanced = true
	}
	if advanced {
		q.lastAck = time.Now()
	}
	due := advanced && time.Since(q.saved) >= q.saveEvery
	q.mu.Unlock()
	if due {
		return q.save()
	}
	return nil
}

// Flush writes the state file if acks or positions are not saved yet.
// The forwarder calls it periodically and on shutdown.
func (q *Queue) Flush() error {
	q.mu.Lock()
	dirty := q.acked != q.savedAck || q.posDirty
	q.mu.Unlock()
	if !dirty {
		return nil
	}
	return q.save()
}

// save writes the state file and then drops the segments it makes
// unnecessary.
func (q *Queue) save() error {
	q.saveMu.Lock()
	defer q.saveMu.Unlock()
	q.mu.Lock()
	st := queueState{Acked: q.acked, PositionsThrough: q.last, Counters: q.counters}
	st.Positions = make([]Position, 0, len(q.positions))
	for _, p := range q.positions {
		st.Positions = append(st.Positions, p)
	}
	q.posDirty = false
	q.mu.Unlock()
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode queue state: %w", err)
	}
	if err := durable.WriteFile(q.statePath(), b, 0o640); err != nil {
		q.mu.Lock()
		q.posDirty = true
		q.mu.Unlock()
		return fmt.Errorf("save queue state: %w", err)
	}
	q.mu.Lock()
	q.saved, q.savedAck = time.Now(), st.Acked
	q.mu.Unlock()
	// Frames above Acked are still to send; frames above
	// PositionsThrough would be needed to rebuild positions.
	if err := q.log.TruncateBefore(min(st.Acked, st.PositionsThrough) + 1); err != nil {
		return fmt.Errorf("drop delivered segments: %w", err)
	}
	return nil
}

// Stats returns a snapshot of the queue.
func (q *Queue) Stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return QueueStats{Sequence: q.last, Acked: q.acked, Bytes: q.bytes, Records: q.records, Counters: q.counters, LastAck: q.lastAck}
}

// Read calls fn with every batch from sequence from on, in order, waiting
// for new batches until ctx ends or fn fails. fn may block (that is how
// the sender bounds what it has in flight) and may keep the batch.
func (q *Queue) Read(ctx context.Context, from uint64, fn func(Batch) error) error {
	from = max(from, 1)
	for {
		q.mu.Lock()
		changed, last, closed := q.changed, q.last, q.closed
		q.mu.Unlock()
		if closed {
			return wal.ErrClosed
		}
		if from <= last {
			err := q.log.Replay(from, func(seq uint64, payload []byte) error {
				f, err := decodeFrame(payload)
				if err != nil {
					return fmt.Errorf("batch %d: %w", seq, err)
				}
				if err := fn(Batch{Seq: seq, Records: f.records, NDJSON: f.ndjson}); err != nil {
					return err
				}
				from = seq + 1
				return nil
			})
			if err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Acked returns the acknowledged sequence; the sender starts after it.
func (q *Queue) Acked() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.acked
}

// Close saves the state and closes the queue.
func (q *Queue) Close() error {
	err := q.Flush()
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.changed)
		q.changed = make(chan struct{})
	}
	q.mu.Unlock()
	if cerr := q.log.Close(); err == nil {
		err = cerr
	}
	return err
}
