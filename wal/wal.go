// Package wal is custos's write-ahead log, the point of acknowledgement: an
// ingested batch is acknowledged only after the frame holding it has been
// made durable by Sync. Everything downstream (the queryable head, sealed
// Parquet blocks) is rebuilt from or checked against the log after a crash.
//
// # Files
//
// A log is a directory of segment files, each named by the seq of its first
// frame as 20 zero-padded decimal digits plus ".wal", for example
// 00000000000000000001.wal. Appends go to the last (active) segment; once it
// holds SegmentSize bytes the next frame starts a new segment. Old segments
// are removed whole by TruncateBefore. A LOCK file guards the directory
// against a second process opening the same log.
//
// # Frame format
//
// A segment is a sequence of frames, one per Append, with no padding and no
// file header. Each frame is a 24-byte header followed by the payload; all
// integers are little-endian:
//
//	offset size field
//	0      4    magic "CWAL"
//	4      1    format version, 1
//	5      3    reserved, must be zero
//	8      8    seq of this frame
//	16     4    payload length in bytes (at most MaxPayloadSize)
//	20     4    CRC-32C (Castagnoli) of bytes 0..19 of the header, then the payload
//	24     n    payload
//
// Seqs are per frame, dense and increasing from 1 across all segments, and
// the frames of a segment carry consecutive seqs starting at the one in its
// name, so seqs need no separate index and survive restarts. A whole batch
// is one frame: a torn write can lose the batch but never half-apply it.
//
// # Durability and recovery
//
// Append only buffers a frame; Sync writes the buffer and fsyncs the active
// segment (and the directory after a new segment was created). fdatasync
// measured no faster here: every append changes the file size, which both
// must commit. A segment is fsynced in full before the next one is created,
// so only the last segment can ever hold unsynced frames.
//
// After a crash the last segment may end in a partial frame, zeros or
// garbage. Open verifies every frame of every segment; it cuts the last
// segment back to just after its last intact frame, makes the cut durable,
// logs it and reports the dropped byte count through Repaired. Those bytes
// were never acknowledged, since Sync had not returned for them. A bad
// frame anywhere else (in an older segment, or one followed by an intact
// frame) means acknowledged data is damaged: Open then fails with a
// *CorruptionError naming the file and offset rather than drop it silently.
// (Damage to the very last frame looks exactly like a torn write and is
// repaired; once Sync has returned only the disk itself can do that.)
//
// The seqs of frames a repair drops are handed out again by later appends.
// That is why Replay shows only durable frames: no consumer can act on a
// frame whose seq may come back with different contents.
//
// # Concurrency
//
// A Log is safe for concurrent use. Appends are serialized; an Append may
// proceed while an earlier Sync waits for the disk, and a Sync makes durable
// every frame whose Append returned before the Sync was called.
package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

const (
	// DefaultSegmentSize is the segment size used when Options.SegmentSize is 0.
	DefaultSegmentSize = 64 << 20
	// MaxPayloadSize is the largest payload Append accepts.
	MaxPayloadSize = 256 << 20
)

// ErrClosed is returned by operations on a closed Log.
var ErrClosed = errors.New("wal: log is closed")

// Options configures a Log. The zero value is usable.
type Options struct {
	// SegmentSize is the size after which appends move to a new segment
	// file (default DefaultSegmentSize). A segment exceeds it only when a
	// single frame does.
	SegmentSize int64

	// Logger receives a record of every repair Open makes. Nil discards.
	Logger *slog.Logger

	// DropCorruptTail makes Open treat a bad frame in the last segment
	// like a torn tail even when intact frames follow it, truncating them
	// away. Leave it off: such damage normally means acknowledged data was
	// lost, which Open reports as a *CorruptionError. It exists for an
	// operator who has examined that error and chooses to recover, for
	// instance after a power loss on a disk that wrote back unsynced
	// pages out of order.
	DropCorruptTail bool
}

// CorruptionError reports a damaged frame that Open will not repair because
// it may hold acknowledged data.
type CorruptionError struct {
	Segment string // path of the segment file
	Offset  int64  // byte offset of the damaged frame or gap within it
	Reason  string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: corrupt segment %s at offset %d: %s", e.Segment, e.Offset, e.Reason)
}

// segment is one file of the log.
type segment struct {
	base uint64 // seq of its first frame, from its name
	size int64  // bytes written to it, including those still buffered
}

// Log is an open write-ahead log. Create it with Open.
type Log struct {
	dir     string
	segSize int64
	lock    io.Closer

	// syncMu serializes Sync and Close so that a Sync cannot report
	// frames durable while an earlier Sync's directory fsync is pending.
	// Lock order: syncMu, then mu.
	syncMu sync.Mutex

	mu       sync.Mutex
	segs     []segment // ordered by base; the last is active
	f        *os.File  // active segment
	w        *bufio.Writer
	next     uint64 // seq of the next frame
	synced   uint64 // highest seq known durable; 0 if none
	dirDirty bool   // a segment was created since the directory was last synced
	err      error  // sticky write or sync failure
	closed   bool
	repaired int64
}

// Open opens the log in dir, creating dir if needed. It verifies every
// existing frame, repairs a torn tail of the last segment, and fails with a
// *CorruptionError if damage is found anywhere else.
func Open(dir string, opts Options) (*Log, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: create directory: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("wal: lock %s: %w", dir, err)
	}
	l := &Log{dir: dir, segSize: opts.SegmentSize, lock: lock}
	if err := l.recover(opts, logger); err != nil {
		if l.f != nil {
			l.f.Close()
		}
		lock.Close()
		return nil, err
	}
	return l, nil
}

// recover loads the segments of l.dir, verifies them, repairs the tail and
// leaves the last segment open for appending.
func (l *Log) recover(opts Options, logger *slog.Logger) error {
	segs, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		// A fresh log: create its first segment now so that there is
		// always an active one.
		l.segs = []segment{{base: 1}}
		l.next = 1
		f, err := os.OpenFile(l.path(1), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
		if err != nil {
			return fmt.Errorf("wal: create segment: %w", err)
		}
		l.f, l.w = f, bufio.NewWriterSize(f, 256<<10)
		if err := syncDir(l.dir); err != nil {
			return fmt.Errorf("wal: sync directory %s: %w", l.dir, err)
		}
		return nil
	}

	for i := range segs {
		last := i == len(segs)-1
		if i > 0 && segs[i].base != l.next {
			return &CorruptionError{
				Segment: l.path(segs[i-1].base), Offset: segs[i-1].size,
				Reason: fmt.Sprintf("segment ends before seq %d but the next segment starts at seq %d", l.next, segs[i].base),
			}
		}
		next, err := l.check(&segs[i], last, opts.DropCorruptTail, logger)
		if err != nil {
			return err
		}
		l.next = next
	}
	l.segs = segs

	act := segs[len(segs)-1]
	f, err := os.OpenFile(l.path(act.base), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("wal: open segment %s: %w", segName(act.base), err)
	}
	l.f = f
	if _, err := f.Seek(act.size, io.SeekStart); err != nil {
		return fmt.Errorf("wal: open segment %s: %w", segName(act.base), err)
	}
	l.w = bufio.NewWriterSize(f, 256<<10)

	// What Open found may so far live only in the page cache (the previous
	// process was killed, not the machine). Make it durable before handing
	// out seqs after it, or a later power loss could drop frames that the
	// store has already built on and reuse their seqs.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("wal: sync segment %s: %w", segName(act.base), err)
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("wal: sync directory %s: %w", l.dir, err)
	}
	l.synced = l.next - 1
	return nil
}

// check verifies every frame of seg, truncates a torn tail if seg is the
// last segment, and returns the seq that follows its last frame. It sets
// seg.size to the verified length.
func (l *Log) check(seg *segment, last, dropCorrupt bool, logger *slog.Logger) (uint64, error) {
	name := segName(seg.base)
	path := l.path(seg.base)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("wal: open segment %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("wal: open segment %s: %w", name, err)
	}
	size := fi.Size()

	fr := newFrameReader(f, size)
	seq := seg.base
	var bad *frameError
	for {
		h, err := fr.next()
		if err == nil {
			err = fr.verify(h)
		}
		if err == io.EOF {
			break
		}
		if errors.As(err, &bad) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("wal: read segment %s: %w", name, err)
		}
		if h.seq != seq {
			// An intact frame in the wrong place is not a torn write.
			if !last || !dropCorrupt {
				return 0, &CorruptionError{Segment: path, Offset: fr.off - headerSize - int64(h.length),
					Reason: fmt.Sprintf("frame has seq %d, want %d", h.seq, seq)}
			}
			bad = &frameError{off: fr.off - headerSize - int64(h.length), reason: fmt.Sprintf("frame has seq %d, want %d", h.seq, seq)}
			break
		}
		seq++
	}
	if bad == nil {
		seg.size = fr.off
		return seq, nil
	}
	if bad.newer {
		return 0, &CorruptionError{Segment: path, Offset: bad.off,
			Reason: bad.reason + ", written by a newer custos; run that version"}
	}

	if !last {
		return 0, &CorruptionError{Segment: path, Offset: bad.off, Reason: bad.reason + " (not the last segment)"}
	}
	if !dropCorrupt {
		at, err := intactFrameAfter(f, bad.off+1, size, seq)
		if err != nil {
			return 0, fmt.Errorf("wal: read segment %s: %w", name, err)
		}
		if at >= 0 {
			return 0, &CorruptionError{Segment: path, Offset: bad.off,
				Reason: fmt.Sprintf("%s, but an intact frame follows at offset %d", bad.reason, at)}
		}
	}

	// A torn tail: the frames after the last intact one were never
	// acknowledged. Cut them off so appends resume on a clean boundary.
	dropped := size - bad.off
	if err := f.Truncate(bad.off); err != nil {
		return 0, fmt.Errorf("wal: truncate segment %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("wal: sync segment %s: %w", name, err)
	}
	seg.size = bad.off
	l.repaired += dropped
	logger.Warn("write-ahead log: truncated torn tail of last segment",
		"segment", path, "offset", bad.off, "dropped_bytes", dropped, "reason", bad.reason, "next_seq", seq)
	return seq, nil
}

// Append writes one frame holding payload and returns its seq. The frame is
// buffered, not durable, until Sync returns. After an error the Log is
// unusable; Close it and Open it again to recover.
func (l *Log) Append(payload []byte) (uint64, error) {
	if len(payload) > MaxPayloadSize {
		return 0, fmt.Errorf("wal: payload of %d bytes exceeds the limit of %d", len(payload), MaxPayloadSize)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	n := int64(headerSize + len(payload))
	if act := l.segs[len(l.segs)-1]; act.size > 0 && act.size+n > l.segSize {
		if err := l.roll(); err != nil {
			l.err = err
			return 0, err
		}
	}

	seq := l.next
	var hdr [headerSize]byte
	encodeHeader(&hdr, seq, payload)
	if _, err := l.w.Write(hdr[:]); err != nil {
		return 0, l.fail("write", err)
	}
	if _, err := l.w.Write(payload); err != nil {
		return 0, l.fail("write", err)
	}
	l.segs[len(l.segs)-1].size += n
	l.next++
	return seq, nil
}

// roll makes the active segment durable and starts a new one. Syncing the
// old segment first keeps the invariant that only the last segment can have
// a torn tail, whatever order the disk writes pages back in.
func (l *Log) roll() error {
	old := segName(l.segs[len(l.segs)-1].base)
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("wal: write segment %s: %w", old, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("wal: sync segment %s: %w", old, err)
	}
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("wal: close segment %s: %w", old, err)
	}
	// l.synced stays put: the old segment's own directory entry may not be
	// durable yet. The next Sync covers it.

	f, err := os.OpenFile(l.path(l.next), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("wal: create segment: %w", err)
	}
	l.f = f
	l.w.Reset(f)
	l.segs = append(l.segs, segment{base: l.next})
	l.dirDirty = true
	return nil
}

// Sync makes every frame appended before the call durable. After an error
// the Log is unusable, because a failed fsync may already have discarded
// the dirty pages it could not write; Close it and Open it again.
func (l *Log) Sync() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()

	l.mu.Lock()
	if err := l.usable(); err != nil {
		l.mu.Unlock()
		return err
	}
	target := l.next - 1
	if target == l.synced && !l.dirDirty {
		l.mu.Unlock()
		return nil
	}
	if err := l.w.Flush(); err != nil {
		l.mu.Unlock()
		return l.fail("write", err)
	}
	f, name, dirDirty := l.f, segName(l.segs[len(l.segs)-1].base), l.dirDirty
	l.dirDirty = false
	l.mu.Unlock()

	// Wait for the disk without holding mu so that the committer can
	// append the next batch meanwhile.
	err := f.Sync()
	switch {
	case errors.Is(err, os.ErrClosed):
		// A roll synced and closed this segment first; it set l.err
		// if that sync failed.
		err = nil
	case err != nil:
		err = fmt.Errorf("wal: sync segment %s: %w", name, err)
	}
	if err == nil && dirDirty {
		if derr := syncDir(l.dir); derr != nil {
			err = fmt.Errorf("wal: sync directory %s: %w", l.dir, derr)
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if l.err == nil {
			l.err = err
		}
		return l.err
	}
	if l.err != nil {
		return l.err
	}
	l.synced = max(l.synced, target)
	return nil
}

// Replay calls fn for every durable frame with seq >= from, in seq order,
// and stops at the first error fn returns, returning it. fn may keep the
// payload. Frames appended but not yet synced are not replayed: their seqs
// could be reused after a crash. Replay does not block Append, and frames
// whose segments TruncateBefore removes during a Replay are still replayed.
func (l *Log) Replay(from uint64, fn func(seq uint64, payload []byte) error) error {
	type source struct {
		seg  segment
		f    *os.File
		size int64
	}
	var srcs []source
	defer func() {
		for _, s := range srcs {
			s.f.Close()
		}
	}()

	// Take a snapshot: open the segments under the lock so that
	// TruncateBefore cannot remove one between listing and opening it.
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	hi := l.synced
	from = max(from, 1)
	if from > hi {
		l.mu.Unlock()
		return nil
	}
	for i, seg := range l.segs {
		if seg.base > hi || (i+1 < len(l.segs) && l.segs[i+1].base <= from) {
			continue
		}
		f, err := os.Open(l.path(seg.base))
		if err == nil {
			var fi os.FileInfo
			if fi, err = f.Stat(); err == nil {
				srcs = append(srcs, source{seg, f, fi.Size()})
				continue
			}
			f.Close()
		}
		l.mu.Unlock()
		return fmt.Errorf("wal: replay segment %s: %w", segName(seg.base), err)
	}
	l.mu.Unlock()

	seq := uint64(0)
	for i, s := range srcs {
		name, path := segName(s.seg.base), l.path(s.seg.base)
		if seq != 0 && s.seg.base != seq {
			return &CorruptionError{Segment: path, Reason: fmt.Sprintf("segment starts at seq %d, want %d", s.seg.base, seq)}
		}
		seq = s.seg.base
		fr := newFrameReader(s.f, s.size)
		for seq <= hi {
			h, err := fr.next()
			if err == io.EOF {
				if i == len(srcs)-1 {
					return &CorruptionError{Segment: path, Offset: fr.off,
						Reason: fmt.Sprintf("segment ends before durable seq %d", hi)}
				}
				break
			}
			var payload []byte
			if err == nil && h.seq != seq {
				err = &frameError{off: fr.off, reason: fmt.Sprintf("frame has seq %d, want %d", h.seq, seq)}
			}
			if err == nil {
				if seq < from {
					err = fr.skip(h)
				} else {
					payload, err = fr.read(h)
				}
			}
			var bad *frameError
			if errors.As(err, &bad) {
				// Open verified or Append wrote this frame: the
				// file has been damaged since.
				return &CorruptionError{Segment: path, Offset: bad.off, Reason: bad.reason}
			}
			if err != nil {
				return fmt.Errorf("wal: replay segment %s: %w", name, err)
			}
			if seq >= from {
				if err := fn(seq, payload); err != nil {
					return err
				}
			}
			seq++
		}
	}
	return nil
}

// TruncateBefore removes the segment files whose frames all have seqs below
// seq, oldest first. The active segment is never removed, so frames below
// seq may remain.
func (l *Log) TruncateBefore(seq uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	n := 0
	for n+1 < len(l.segs) && l.segs[n+1].base <= seq {
		n++
	}
	if n == 0 {
		return nil
	}
	// Oldest first, so that a crash part way leaves a contiguous log.
	var err error
	removed := 0
	for _, seg := range l.segs[:n] {
		if err = os.Remove(l.path(seg.base)); err != nil && !errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("wal: remove segment %s: %w", segName(seg.base), err)
			break
		}
		err = nil
		removed++
	}
	l.segs = slices.Delete(l.segs, 0, removed)
	if removed > 0 {
		// Not needed for safety (a resurrected old segment only holds
		// old frames) but it keeps disk usage honest after a crash.
		if serr := syncDir(l.dir); serr != nil && err == nil {
			err = fmt.Errorf("wal: sync directory %s: %w", l.dir, serr)
		}
	}
	return err
}

// NextSeq returns the seq the next Append will get.
func (l *Log) NextSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// FirstSeq returns the seq of the oldest frame still in the log, or NextSeq
// if the log holds none.
func (l *Log) FirstSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return min(l.segs[0].base, l.next)
}

// Size returns the bytes held in segment files, counting appended frames
// not yet written out by Sync.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, s := range l.segs {
		n += s.size
	}
	return n
}

// Repaired returns how many bytes Open cut off the tail of the last segment.
func (l *Log) Repaired() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.repaired
}

// Close syncs outstanding frames, if the Log is still healthy, and closes
// its files. It returns the error that made the Log unhealthy if one did,
// and ErrClosed if the Log was already closed.
func (l *Log) Close() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.closed = true
	err := l.err
	if err == nil {
		err = l.w.Flush()
		if err == nil {
			err = l.f.Sync()
		}
		if err == nil && l.dirDirty {
			err = syncDir(l.dir)
		}
		if err != nil {
			err = fmt.Errorf("wal: close: %w", err)
			l.err = err
		}
	}
	if cerr := l.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("wal: close segment: %w", cerr)
	}
	if cerr := l.lock.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("wal: unlock: %w", cerr)
	}
	return err
}

// usable returns why the Log cannot take writes, if it cannot.
func (l *Log) usable() error {
	if l.closed {
		return ErrClosed
	}
	return l.err
}

// fail records a write error as sticky: the buffer may hold a partial frame,
// so nothing more may be written after it.
func (l *Log) fail(op string, err error) error {
	l.err = fmt.Errorf("wal: %s segment %s: %w", op, segName(l.segs[len(l.segs)-1].base), err)
	return l.err
}

func (l *Log) path(base uint64) string { return filepath.Join(l.dir, segName(base)) }

const segExt = ".wal"

func segName(base uint64) string { return fmt.Sprintf("%020d%s", base, segExt) }

// listSegments returns the segments in dir ordered by base, with sizes
// unset. Files that do not look like segments are ignored.
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: read directory: %w", err)
	}
	var segs []segment
	for _, e := range ents {
		digits, ok := strings.CutSuffix(e.Name(), segExt)
		if !ok || len(digits) != 20 || strings.Trim(digits, "0123456789") != "" || !e.Type().IsRegular() {
			continue
		}
		base, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || base == 0 {
			return nil, fmt.Errorf("wal: invalid segment name %s", e.Name())
		}
		segs = append(segs, segment{base: base})
	}
	// ReadDir sorts by name, and zero padding makes that seq order.
	return segs, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
