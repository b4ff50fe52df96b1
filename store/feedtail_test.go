package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
)

// feedFrame is one call of a feed's fn.
type feedFrame struct {
	seq  uint64
	recs []audit.Record
}

// firstFrame reads the one frame after `after`.
func firstFrame(t *testing.T, f *Feed, after uint64) feedFrame {
	t.Helper()
	var got feedFrame
	stop := errors.New("one is enough")
	last, err := f.Read(context.Background(), after, func(seq uint64, recs []audit.Record) error {
		got = feedFrame{seq, recs}
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("read after %d: %v", after, err)
	}
	if last != after {
		t.Fatalf("read after %d stopped by fn returned %d, want %d (the frame fn refused is not delivered)", after, last, after)
	}
	return got
}

// readAll reads every committed frame after `after` with as many Read calls
// as it takes.
func readAll(t *testing.T, db *DB, f *Feed, after uint64) []feedFrame {
	t.Helper()
	var out []feedFrame
	for after < db.committed.Load() {
		last, err := f.Read(context.Background(), after, func(seq uint64, recs []audit.Record) error {
			out = append(out, feedFrame{seq, recs})
			return nil
		})
		if err != nil {
			t.Fatalf("read after %d: %v", after, err)
		}
		if last <= after {
			t.Fatalf("read after %d made no progress", after)
		}
		after = last
	}
	return out
}

// TestFeedTailMatchesTheLog proves that a feed served from the in-memory
// tail of recent commits gets exactly what it gets from the write-ahead
// log: the same frames, numbered alike, with equal records, whichever
// frame it starts from, on both sides of the tail's oldest frame.
func TestFeedTailMatchesTheLog(t *testing.T) {
	opts := testOptions()
	opts.FeedTailBytes = 8 << 10 // a few frames
	db := openTest(t, t.TempDir(), opts)
	defer db.Close()
	f, err := db.Feed("detect")
	if err != nil {
		t.Fatal(err)
	}
	start := f.Position()

	// Records as callers hand them over, with what the log cannot keep
	// as it is: times in other zones, with a monotonic reading or below
	// the nanosecond; empty slices that are not nil; a zero time and the
	// epoch; raw bytes inside a larger buffer.
	cet := time.FixedZone("CET", 3600)
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 123456789, cet)
	body := []byte{}
	var frames [][]audit.Record
	for i := range 40 {
		var batch []audit.Record
		for j := range 1 + i%4 {
			r := mkrec("t1", fmt.Sprintf("r%02d-%d", i, j), t0.Add(time.Duration(i)*time.Minute), fmt.Sprintf("User%d@T1.example", j))
			switch (i + j) % 5 {
			case 0:
				r.Received = time.Now() // monotonic reading, local zone
				r.InternetMessageIDs = []string{}
			case 1:
				r.IssuedAtTime = time.Unix(0, 0)
				r.CreationTime = r.CreationTime.In(cet)
			case 2:
				r.IssuedAtTime = t0.Add(-time.Hour)
				r.InternetMessageIDs = nil
				r.ClientAppName, r.CorrelationID, r.ClientInfoString = "Graph Explorer", "c-1", "Client=OWA;Mozilla/5.0"
			case 3:
				r.Received = time.Time{}
			}
			start := len(body)
			body = append(body, r.Raw...)
			body = append(body, '\n')
			r.Raw = body[start : start+len(r.Raw)]
			batch = append(batch, r)
		}
		if i%7 == 3 {
			// A record already stored is not part of the frame.
			batch = append(batch, frames[len(frames)-1][0])
		}
		frames = append(frames, batch)
		mustAppend(t, db, batch)
		body = make([]byte, 0, 256) // the store keeps the last one's bytes
	}
	end := db.committed.Load()
	if st := db.Stats(); st.FeedTailFrames != 0 || st.FeedLogFrames != 0 {
		t.Fatalf("counters before any read: %+v", st)
	}

	// From every position: the first frame from memory where the tail has
	// it, from the log where not.
	var fromTail, fromLog []feedFrame
	for after := start; after < end; after++ {
		fromTail = append(fromTail, firstFrame(t, f, after))
	}
	served := db.Stats().FeedTailFrames
	if served == 0 || db.Stats().FeedLogFrames == 0 {
		t.Fatalf("tail served %d frames, log %d: want both used (a tail of a few frames, %d frames)",
			served, db.Stats().FeedLogFrames, end-start)
	}
	// A consumer appending to a record's raw bytes gets a copy; it does
	// not write over the next record's bytes, which follow in the body.
	last := firstFrame(t, f, end-1)
	if len(last.recs) < 2 || db.Stats().FeedTailFrames != served+1 {
		t.Fatalf("the last frame has %d records, served from memory: %v", len(last.recs), db.Stats().FeedTailFrames == served+1)
	}
	next := string(last.recs[1].Raw)
	_ = append(last.recs[0].Raw, "garbage"...)
	if string(last.recs[1].Raw) != next {
		t.Fatalf("appending to a delivered record's raw bytes overwrote the next record's: %s", last.recs[1].Raw)
	}
	all := readAll(t, db, f, start) // starts before the tail, reads on into it
	served = db.Stats().FeedTailFrames
	db.tail.reset()
	for after := start; after < end; after++ {
		fromLog = append(fromLog, firstFrame(t, f, after))
	}
	if db.Stats().FeedTailFrames != served {
		t.Fatalf("the emptied tail served frames")
	}
	allLog := readAll(t, db, f, start)

	if len(fromTail) != int(end-start) || len(fromLog) != len(fromTail) {
		t.Fatalf("got %d and %d frames, want %d", len(fromTail), len(fromLog), end-start)
	}
	for i := range fromTail {
		a, b := fromTail[i], fromLog[i]
		if a.seq != start+uint64(i)+1 || a.seq != b.seq {
			t.Fatalf("frame %d: numbered %d from memory, %d from the log, want %d", i, a.seq, b.seq, start+uint64(i)+1)
		}
		if !reflect.DeepEqual(a.recs, b.recs) {
			for j := range min(len(a.recs), len(b.recs)) {
				if !reflect.DeepEqual(a.recs[j], b.recs[j]) {
					t.Fatalf("frame %d record %d differs:\nmemory %+v\nlog    %+v", a.seq, j, a.recs[j], b.recs[j])
				}
			}
			t.Fatalf("frame %d: %d records from memory, %d from the log", a.seq, len(a.recs), len(b.recs))
		}
	}
	if !reflect.DeepEqual(all, fromTail) || !reflect.DeepEqual(allLog, fromLog) {
		t.Fatal("reading on from the first frame gave other frames than reading each frame alone")
	}
	// And the records are the ones appended, less the duplicates.
	for i, fr := range fromTail {
		want := frames[i]
		if i%7 == 3 {
			want = want[:len(want)-1]
		}
		if len(fr.recs) != len(want) {
			t.Fatalf("frame %d has %d records, want %d", fr.seq, len(fr.recs), len(want))
		}
		for j, r := range fr.recs {
			if r.ID != want[j].ID || string(r.Raw) != string(want[j].Raw) || !r.CreationTime.Equal(want[j].CreationTime) {
				t.Fatalf("frame %d record %d is %s, want %s", fr.seq, j, r.ID, want[j].ID)
			}
		}
	}
}

// TestFeedTailAfterRestart: a restarted store has no tail; the feed reads
// the log, then serves new commits from memory, with no frame skipped or
// repeated.
func TestFeedTailAfterRestart(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	db := openTest(t, dir, opts)
	db.skipCloseSeal = true // like a crash: the frames stay in the log
	f, err := db.Feed("detect")
	if err != nil {
		t.Fatal(err)
	}
	start := f.Position()
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for i := range 5 {
		mustAppend(t, db, []audit.Record{mkrec("t1", fmt.Sprintf("a%d", i), t0.Add(time.Duration(i)*time.Second), "u")})
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTest(t, dir, opts)
	defer db.Close()
	if f, err = db.Feed("detect"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		mustAppend(t, db, []audit.Record{mkrec("t1", fmt.Sprintf("b%d", i), t0.Add(time.Minute+time.Duration(i)*time.Second), "u")})
	}
	var ids []string
	for _, fr := range readAll(t, db, f, start) {
		for _, r := range fr.recs {
			ids = append(ids, fmt.Sprintf("%d:%s", fr.seq, r.ID))
		}
	}
	want := fmt.Sprintf("[%d:a0 %d:a1 %d:a2 %d:a3 %d:a4 %d:b0 %d:b1 %d:b2 %d:b3 %d:b4]",
		start+1, start+2, start+3, start+4, start+5, start+6, start+7, start+8, start+9, start+10)
	if fmt.Sprint(ids) != want {
		t.Fatalf("after a restart the feed delivered %v, want %s", ids, want)
	}
	if st := db.Stats(); st.FeedLogFrames == 0 {
		t.Fatalf("after a restart nothing was read from the log: %+v", st)
	}
	// Caught up, the next frame comes from memory.
	mustAppend(t, db, []audit.Record{mkrec("t1", "c0", t0.Add(time.Hour), "u")})
	before := db.Stats().FeedTailFrames
	if got := readAll(t, db, f, start+10); len(got) != 1 || got[0].recs[0].ID != "c0" || got[0].seq != start+11 {
		t.Fatalf("caught up, the feed delivered %+v", got)
	}
	if db.Stats().FeedTailFrames != before+1 {
		t.Fatal("a caught-up feed's next frame was not served from memory")
	}
}

func TestFeedTailBudget(t *testing.T) {
	rec := func(n int) *audit.Record { return &audit.Record{Raw: make([]byte, n)} }
	tl := feedTail{max: 3 * 1000}
	seqs := func(after uint64) []uint64 {
		frames, ok := tl.from(after)
		if !ok {
			return nil
		}
		var out []uint64
		for _, f := range frames {
			out = append(out, f.seq)
		}
		return out
	}
	for seq := uint64(1); seq <= 5; seq++ {
		tl.push(seq, []*audit.Record{rec(1000 - 256)}) // 1000 bytes each
	}
	if got := seqs(2); fmt.Sprint(got) != "[3 4 5]" || tl.bytes != 3000 {
		t.Fatalf("a 3-frame budget holds %v (%d bytes), want [3 4 5]", got, tl.bytes)
	}
	if seqs(1) != nil || seqs(5) != nil || seqs(0) != nil {
		t.Fatal("the tail answered for a frame it does not hold")
	}
	// A frame over the whole budget is still held, alone.
	tl.push(6, []*audit.Record{rec(5000)})
	if got := seqs(5); fmt.Sprint(got) != "[6]" {
		t.Fatalf("after an oversized frame the tail holds %v, want [6]", got)
	}
	// A frame that does not follow starts the tail afresh.
	tl.push(7, []*audit.Record{rec(10)})
	tl.push(9, []*audit.Record{rec(10)})
	if seqs(5) != nil || seqs(6) != nil || fmt.Sprint(seqs(8)) != "[9]" {
		t.Fatalf("after a gap the tail holds %v from 5, %v from 6, %v from 8", seqs(5), seqs(6), seqs(8))
	}
	tl.reset()
	if seqs(8) != nil || tl.bytes != 0 {
		t.Fatal("reset left frames")
	}
	off := feedTail{max: -1}
	off.push(1, []*audit.Record{rec(1)})
	if _, ok := off.from(0); ok {
		t.Fatal("a disabled tail held a frame")
	}
}
