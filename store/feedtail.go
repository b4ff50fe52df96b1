package store

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-audit/custos/audit"
)

// feedTail keeps the most recently committed frames' records in memory, so
// a feed that keeps up with commits gets them without reading the
// write-ahead log back and decoding it again (that was over a third of
// detection's CPU). It holds consecutive frames, oldest first, up to a
// budget of bytes; a feed whose next frame is older than the tail reads the
// log, as after a restart.
//
// The records are the ones Append was given: the head keeps them too, and
// neither the store nor its callers change a record after it is committed
// (Append's contract), so sharing them is safe.
type feedTail struct {
	mu     sync.Mutex
	max    int64
	bytes  int64
	frames []tailFrame // consecutive frame numbers, oldest first

	served, replayed atomic.Uint64 // frames feeds read from here, and from the log
}

type tailFrame struct {
	seq   uint64
	recs  []*audit.Record
	bytes int64
}

// recordBytes is what one record counts against the tail's budget: its raw
// bytes plus an allowance for the columns.
func recordBytes(r *audit.Record) int64 { return int64(len(r.Raw)) + 256 }

// push adds a committed frame. Frames must come in order, without gaps;
// one that does not follow the newest held one starts the tail afresh.
func (t *feedTail) push(seq uint64, recs []*audit.Record) {
	if t.max <= 0 || len(recs) == 0 {
		return
	}
	var n int64
	for _, r := range recs {
		n += recordBytes(r)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if k := len(t.frames); k > 0 && t.frames[k-1].seq+1 != seq {
		t.dropLocked(k)
	}
	t.frames = append(t.frames, tailFrame{seq: seq, recs: recs, bytes: n})
	t.bytes += n
	// Keep the newest frame even when it alone is over the budget.
	over := 0
	for b := t.bytes; b > t.max && over < len(t.frames)-1; over++ {
		b -= t.frames[over].bytes
	}
	t.dropLocked(over)
}

// reset forgets every frame.
func (t *feedTail) reset() {
	t.mu.Lock()
	t.dropLocked(len(t.frames))
	t.mu.Unlock()
}

// dropLocked forgets the oldest n frames.
func (t *feedTail) dropLocked(n int) {
	for i := range n {
		t.bytes -= t.frames[i].bytes
		t.frames[i] = tailFrame{} // let the records go
	}
	t.frames = t.frames[n:]
	if len(t.frames) == 0 {
		t.frames = nil
	}
}

// from returns the held frames after frame `after`, oldest first, or
// ok=false if the tail does not hold frame after+1 (it is older than the
// tail, or not committed yet).
func (t *feedTail) from(after uint64) (frames []tailFrame, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.frames) == 0 {
		return nil, false
	}
	first := t.frames[0].seq
	if after+1 < first || after+1 > t.frames[len(t.frames)-1].seq {
		return nil, false
	}
	return append([]tailFrame(nil), t.frames[after+1-first:]...), true
}

// feedRecords copies a frame's records for a feed consumer exactly as
// decodeRecords would give them back from the log, so a consumer cannot
// tell the two paths apart: times in UTC at the log's nanosecond
// precision, empty slices as nil. The strings and byte slices are shared
// with the head; consumers must not change them.
func feedRecords(recs []*audit.Record) []audit.Record {
	out := make([]audit.Record, len(recs))
	for i, r := range recs {
		c := &out[i]
		*c = *r
		c.Received = walTime(r.Received)
		c.CreationTime = walTime(r.CreationTime)
		c.IssuedAtTime = walTime(r.IssuedAtTime)
		// Capacity cut to the length, so a consumer's append copies
		// instead of writing over the request body the raw bytes sit in.
		if n := len(c.InternetMessageIDs); n == 0 {
			c.InternetMessageIDs = nil
		} else {
			c.InternetMessageIDs = c.InternetMessageIDs[:n:n]
		}
		if n := len(c.Raw); n == 0 {
			c.Raw = nil
		} else {
			c.Raw = c.Raw[:n:n]
		}
	}
	return out
}

// walTime is t as it comes back from the log (see appendTime).
func walTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	ns := t.UnixNano()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
