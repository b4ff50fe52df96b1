package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func openQ(t *testing.T, dir string, max int64) *Queue {
	t.Helper()
	q, err := OpenQueue(dir, QueueOptions{MaxBytes: max, SegmentBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func lines(from, n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"Id":"r%d"}`+"\n", from+i)
	}
	return b.Bytes()
}

// readAll returns the batches from sequence from up to the last queued.
func readAll(t *testing.T, q *Queue, from uint64) []Batch {
	t.Helper()
	last := q.Stats().Sequence
	var out []Batch
	if from > last {
		return nil
	}
	stop := errors.New("stop")
	err := q.Read(context.Background(), from, func(b Batch) error {
		out = append(out, b)
		if b.Seq == last {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatal(err)
	}
	return out
}

func TestQueueAppendAckReopen(t *testing.T) {
	dir := t.TempDir()
	q := openQ(t, dir, 1<<20)
	pos := Position{Dev: 1, Ino: 2, Offset: 10, Path: "a.log"}
	for i := range 5 {
		seq, err := q.Append(10, lines(i*10, 10), []Position{pos})
		if err != nil || seq != uint64(i+1) {
			t.Fatalf("append %d: seq %d, %v", i, seq, err)
		}
		pos.Offset += 10
	}
	// Batches done out of order: acked advances only over the run.
	for _, s := range []uint64{2, 1, 4} {
		if err := q.Ack(s, Outcome{Records: 10, Rejected: 1}); err != nil {
			t.Fatal(err)
		}
	}
	st := q.Stats()
	if st.Acked != 2 || st.Sequence != 5 || st.Records != 30 || st.Counters.Sent != 18 || st.Counters.Rejected != 2 || st.Counters.Queued != 50 {
		t.Fatalf("stats %+v", st)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q = openQ(t, dir, 1<<20)
	defer q.Close()
	st = q.Stats()
	// Batch 4 was done but above the acked run: it is sent again.
	if st.Acked != 2 || st.Sequence != 5 || st.Records != 30 || st.Counters.Queued != 50 || st.Counters.Sent != 18 {
		t.Fatalf("after reopen: %+v", st)
	}
	bs := readAll(t, q, st.Acked+1)
	if len(bs) != 3 || bs[0].Seq != 3 || !bytes.Equal(bs[0].NDJSON, lines(20, 10)) || bs[2].Records != 10 {
		t.Fatalf("batches after reopen: %+v", bs)
	}
	if ps := q.Positions(); len(ps) != 1 || ps[0].Offset != 50 {
		t.Fatalf("positions %+v", ps)
	}
	// Sequence numbers go on after the reopen.
	if seq, err := q.Append(1, lines(99, 1), nil); err != nil || seq != 6 {
		t.Fatalf("append after reopen: %d %v", seq, err)
	}
}

func TestQueueSequencePersistsWhenEmpty(t *testing.T) {
	dir := t.TempDir()
	// Tiny segments so that acked segments are deleted.
	q := openQ(t, dir, 64<<10)
	for i := range 40 {
		seq, err := q.Append(100, lines(i*100, 100), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Ack(seq, Outcome{Records: 100}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.wal")); len(segs) != 1 {
		t.Fatalf("%d segment files after everything was delivered, want 1 (the active one)", len(segs))
	}
	q = openQ(t, dir, 64<<10)
	defer q.Close()
	st := q.Stats()
	if st.Sequence != 40 || st.Acked != 40 || st.Records != 0 || st.Bytes != 0 || st.Counters.Sent != 4000 || st.Counters.Queued != 4000 {
		t.Fatalf("after reopen: %+v", st)
	}
	if seq, err := q.Append(1, lines(0, 1), nil); err != nil || seq != 41 {
		t.Fatalf("next seq %d %v", seq, err)
	}
}

func TestQueueTornTail(t *testing.T) {
	dir := t.TempDir()
	q := openQ(t, dir, 1<<20)
	for i := range 3 {
		if _, err := q.Append(5, lines(i*5, 5), []Position{{Dev: 1, Ino: 1, Offset: int64(i + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	// A crash in the middle of writing batch 4: half a frame at the end.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("CWAL\x01\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00garbage"))
	f.Close()

	q = openQ(t, dir, 1<<20)
	defer q.Close()
	st := q.Stats()
	if st.Sequence != 3 || st.Records != 15 || st.Counters.Queued != 15 {
		t.Fatalf("after torn tail: %+v", st)
	}
	if ps := q.Positions(); len(ps) != 1 || ps[0].Offset != 3 {
		t.Fatalf("positions %+v", ps)
	}
	if seq, err := q.Append(1, lines(0, 1), nil); err != nil || seq != 4 {
		t.Fatalf("append after repair: %d %v", seq, err)
	}
	if bs := readAll(t, q, 1); len(bs) != 4 {
		t.Fatalf("%d batches", len(bs))
	}
}

func TestQueueFull(t *testing.T) {
	dir := t.TempDir()
	q := openQ(t, dir, 4096)
	big := lines(0, 40) // ~600 bytes
	var seqs []uint64
	for {
		seq, err := q.Append(40, big, nil)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
		if len(seqs) > 100 {
			t.Fatal("the bound is not enforced")
		}
	}
	st := q.Stats()
	if st.Bytes > 4096 || st.Sequence != uint64(len(seqs)) {
		t.Fatalf("full queue: %+v", st)
	}
	if _, err := q.Append(400, lines(0, 400), nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized batch: %v", err)
	}
	// A failed append uses no sequence number.
	if err := q.Ack(seqs[0], Outcome{Records: 40}); err != nil {
		t.Fatal(err)
	}
	seq, err := q.Append(40, big, nil)
	if err != nil || seq != uint64(len(seqs)+1) {
		t.Fatalf("append after ack: %d %v", seq, err)
	}
	q.Close()
}

func TestQueueRefusedBatchCounts(t *testing.T) {
	q := openQ(t, t.TempDir(), 1<<20)
	defer q.Close()
	q.Append(3, lines(0, 3), nil)
	q.Ack(1, Outcome{Records: 3, Refused: true})
	c := q.Stats().Counters
	if c.Refused != 3 || c.RefusedBatches != 1 || c.Sent != 0 || c.Batches != 0 {
		t.Fatalf("%+v", c)
	}
	if err := q.Ack(1, Outcome{Records: 3}); err == nil {
		t.Fatal("a second ack of the same batch is accepted")
	}
}
