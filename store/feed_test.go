package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
)

// readFeed drains what the feed has after `after`, returning the record ids
// in delivery order and the last frame.
func readFeed(t *testing.T, f *Feed, after uint64) ([]string, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var ids []string
	last, err := f.Read(ctx, after, func(seq uint64, recs []audit.Record) error {
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read feed: %v", err)
	}
	return ids, last
}

func TestFeedDeliversEveryCommittedRecordOnceAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.WALSegment = 4 << 10 // many segments, so truncation really removes some
	db := openTest(t, dir, opts)
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	before := mkrecs("t1", 20, t0, time.Second)
	mustAppend(t, db, before)

	f, err := db.Feed("detect")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Feed("Bad Name"); err == nil {
		t.Fatal("a feed name with spaces was accepted")
	}
	start := f.Position()

	// A reader waiting for frames wakes when they are committed.
	got := make(chan []string, 1)
	go func() {
		var ids []string
		_, err := f.Read(context.Background(), start, func(seq uint64, recs []audit.Record) error {
			for _, r := range recs {
				ids = append(ids, r.ID)
			}
			return nil
		})
		if err != nil {
			ids = append(ids, "error: "+err.Error())
		}
		got <- ids
	}()
	var want []string
	for i := range 30 {
		batch := []audit.Record{mkrec("t1", fmt.Sprintf("a%02d", i), t0.Add(time.Hour+time.Duration(i)*time.Second), "u")}
		mustAppend(t, db, batch)
		want = append(want, batch[0].ID)
	}
	first := <-got
	if len(first) == 0 || first[0] != "a00" {
		t.Fatalf("waiting reader got %v, want it to start at a00 (records from before the feed existed are not delivered)", first)
	}
	ids, last := readFeed(t, f, start)
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("feed delivered %v, want %v", ids, want)
	}
	// Acknowledge half; seal (which truncates the log); the rest survives.
	half, _ := readFeedUntil(t, f, start, 15)
	if err := f.Ack(half); err != nil {
		t.Fatal(err)
	}
	if err := db.Seal(context.Background()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = openTest(t, dir, opts)
	defer db.Close()
	f, err = db.Feed("detect")
	if err != nil {
		t.Fatal(err)
	}
	if f.Position() != half {
		t.Fatalf("position after restart %d, want %d", f.Position(), half)
	}
	rest, last2 := readFeed(t, f, f.Position())
	if fmt.Sprint(rest) != fmt.Sprint(want[15:]) || last2 != last {
		t.Fatalf("after restart the feed delivered %v through %d, want %v through %d", rest, last2, want[15:], last)
	}
	// Once everything is acknowledged a seal frees the log.
	if err := f.Ack(last); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, []audit.Record{mkrec("t1", "late", t0.Add(2*time.Hour), "u")})
	if err := db.Seal(context.Background()); err != nil {
		t.Fatal(err)
	}
	// (The active segment always stays, so only older segments go.)
	if first := db.wal.FirstSeq(); first <= half {
		t.Fatalf("log still starts at frame %d after everything through %d was acknowledged and sealed", first, last)
	}
}

// readFeedUntil reads frames one call at a time until n records came, and
// returns the frame holding the n-th.
func readFeedUntil(t *testing.T, f *Feed, after uint64, n int) (uint64, []string) {
	t.Helper()
	var ids []string
	var at uint64
	stop := errors.New("enough")
	_, err := f.Read(context.Background(), after, func(seq uint64, recs []audit.Record) error {
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		at = seq
		if len(ids) >= n {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("read until %d records: %v", n, err)
	}
	return at, ids
}

func TestFeedHoldsTheLogUntilItsLimit(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.WALSegment = 4 << 10
	db := openTest(t, dir, opts)
	defer db.Close()
	f, err := db.Feed("detect")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for i := range 40 {
		mustAppend(t, db, []audit.Record{mkrec("t1", fmt.Sprintf("b%02d", i), t0.Add(time.Duration(i)*time.Second), "u")})
	}
	if err := db.Seal(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Within the limit, nothing unread is removed.
	ids, _ := readFeed(t, f, f.Position())
	if len(ids) != 40 {
		t.Fatalf("feed delivered %d records after a seal, want all 40", len(ids))
	}

	// A feed that lags past the limit is let go, and says so.
	db.opts.MaxFeedBytes = 1
	for i := range 40 {
		mustAppend(t, db, []audit.Record{mkrec("t1", fmt.Sprintf("c%02d", i), t0.Add(time.Hour+time.Duration(i)*time.Second), "u")})
	}
	if err := db.Seal(context.Background()); err != nil {
		t.Fatal(err)
	}
	var gap *FeedGapError
	_, err = f.Read(context.Background(), f.Position(), func(uint64, []audit.Record) error { return nil })
	if !errors.As(err, &gap) || gap.From != f.Position()+1 || gap.To < gap.From {
		t.Fatalf("lagging feed got %v, want a gap starting at %d", err, f.Position()+1)
	}
	// Reading on from the gap delivers what is left, the newest record last.
	ids, _ = readFeed(t, f, gap.To)
	if len(ids) == 0 || ids[len(ids)-1] != "c39" {
		t.Fatalf("after the gap the feed delivered %v, want it to end with c39", ids)
	}
	if err := db.DropFeed("detect"); err != nil {
		t.Fatal(err)
	}
	if err := f.Ack(1 << 40); err == nil {
		t.Fatal("ack on a dropped feed succeeded")
	}
}
