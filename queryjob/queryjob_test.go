package queryjob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/store"
)

var ctx = context.Background()

func testStore(t *testing.T, n int) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "data"), store.Options{MemoryLimit: "1GB", Threads: 2, SealInterval: time.Hour, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var p audit.Parser
	var recs []audit.Record
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		// Long records now and then, longer than the page reader's buffer.
		pad := ""
		if i%700 == 0 {
			pad = `,"Pad":"` + string(bytes.Repeat([]byte("x"), 300<<10)) + `"`
		}
		raw := fmt.Sprintf(`{"Id":"r%05d","CreationTime":%q,"RecordType":%d,"Operation":"Op%d","UserId":"u%d@x.example","Workload":"Exchange"%s}`,
			i, at.Add(time.Duration(i)*time.Minute).Format("2006-01-02T15:04:05"), 2+48*(i%2), i%3, i%5, pad)
		r, err := p.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		r.Tenant = "acme"
		recs = append(recs, r)
	}
	if _, err := db.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

// gate is a Reader that waits for a signal before reading, so a test can
// hold a job in Running.
type gate struct {
	Reader
	open chan struct{}
}

func (g gate) Records(ctx context.Context, tenant string, q store.Query, fn func(*audit.Record) error) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Reader.Records(ctx, tenant, q, fn)
}

func wait(t *testing.T, m *Manager, tenant, id string, want Status) Job {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j, err := m.Get(tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == want {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s, want %s", id, j.Status, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func allPages(t *testing.T, m *Manager, tenant, id string, top int) []string {
	t.Helper()
	var out []string
	for skip := int64(0); skip >= 0; {
		page, next, err := m.Page(tenant, id, skip, top)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range page {
			out = append(out, string(raw))
		}
		if next >= 0 && next != skip+int64(len(page)) {
			t.Fatalf("next %d after %d records from %d", next, len(page), skip)
		}
		skip = next
	}
	return out
}

func TestJobResultsPagesAndRestart(t *testing.T) {
	db := testStore(t, 2600)
	dir := filepath.Join(t.TempDir(), "queries")
	m, err := Open(Config{Dir: dir, Reader: db})
	if err != nil {
		t.Fatal(err)
	}
	q := store.Query{From: time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC), Filter: store.Filter{RecordTypes: []int32{50}}}
	j, err := m.Create("acme", "half", Filters{}, q, "tok")
	if err != nil {
		t.Fatal(err)
	}
	j = wait(t, m, "acme", j.ID, Succeeded)
	var want []string
	db.Records(ctx, "acme", q, func(r *audit.Record) error { want = append(want, string(r.Raw)); return nil })
	if j.Records != int64(len(want)) || len(want) < 1000 {
		t.Fatalf("job has %d records, reference %d", j.Records, len(want))
	}
	for _, top := range []int{1, 7, 1000, 5000} {
		if got := allPages(t, m, "acme", j.ID, top); !slices.Equal(got, want) {
			t.Fatalf("pages of %d: %d records, want %d in the same order", top, len(got), len(want))
		}
	}
	// A page from the middle, across an index slot boundary.
	page, next, err := m.Page("acme", j.ID, 998, 5)
	if err != nil || next != 1003 || string(page[0]) != want[998] || string(page[4]) != want[1002] {
		t.Fatalf("middle page: next %d, %v", next, err)
	}
	for _, bad := range []int64{-1, j.Records + 1, 1 << 50} {
		if _, _, err := m.Page("acme", j.ID, bad, 10); !errors.Is(err, ErrBadToken) {
			t.Errorf("skip %d: %v", bad, err)
		}
	}
	if _, err := m.Get("other", j.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant sees the job: %v", err)
	}
	if _, _, err := m.Page("other", j.ID, 0, 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant reads the job: %v", err)
	}

	// A job interrupted by a restart runs again; a finished one stays.
	g := gate{Reader: db, open: make(chan struct{})}
	m.Close()
	m, err = Open(Config{Dir: dir, Reader: g})
	if err != nil {
		t.Fatal(err)
	}
	held, _ := m.Create("acme", "held", Filters{}, store.Query{}, "tok")
	wait(t, m, "acme", held.ID, Running)
	if _, _, err := m.Page("acme", held.ID, 0, 10); !errors.Is(err, ErrNotReady) {
		t.Errorf("paging a running job: %v", err)
	}
	m.Close()
	m, err = Open(Config{Dir: dir, Reader: db})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := allPages(t, m, "acme", j.ID, 500); !slices.Equal(got, want) {
		t.Fatal("a finished job's results changed across a restart")
	}
	done := wait(t, m, "acme", held.ID, Succeeded)
	if done.Records != 2600 {
		t.Fatalf("the interrupted job found %d records after the restart, want 2600", done.Records)
	}
}

func TestCancelLimitsAndExpiry(t *testing.T) {
	db := testStore(t, 50)
	dir := filepath.Join(t.TempDir(), "queries")
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	g := gate{Reader: db, open: make(chan struct{})}
	m, err := Open(Config{Dir: dir, Reader: g, Workers: 1, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var ids []string
	for i := range MaxPending {
		j, err := m.Create("acme", fmt.Sprint(i), Filters{}, store.Query{}, "tok")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	if _, err := m.Create("acme", "one more", Filters{}, store.Query{}, "tok"); !errors.Is(err, ErrBusy) {
		t.Fatalf("job %d: %v, want ErrBusy", MaxPending+1, err)
	}
	other, err := m.Create("other", "x", Filters{}, store.Query{}, "tok")
	if err != nil {
		t.Fatalf("another tenant's allowance: %v", err)
	}
	wait(t, m, "acme", ids[0], Running)
	for _, id := range ids[:2] { // one running, one queued
		j, err := m.Cancel("acme", id)
		if err != nil || j.Status != Cancelled {
			t.Fatalf("cancel: %+v %v", j, err)
		}
	}
	if _, err := m.Cancel("acme", ids[0]); !errors.Is(err, ErrFinished) {
		t.Errorf("second cancel: %v", err)
	}
	close(g.open)
	wait(t, m, "acme", ids[2], Succeeded)
	if j, _ := m.Get("acme", ids[0]); j.Status != Cancelled {
		t.Errorf("a cancelled job came back as %s", j.Status)
	}
	if _, err := os.Stat(m.resultPath("acme", ids[0])); !os.IsNotExist(err) {
		t.Errorf("a cancelled job's partial results remain: %v", err)
	}
	for _, id := range ids[2:] {
		wait(t, m, "acme", id, Succeeded)
	}
	if err := m.Delete("acme", ids[3]); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get("acme", ids[3]); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted job still there: %v", err)
	}
	// Expiry of a job still writing its results is not what this tests.
	wait(t, m, "other", other.ID, Succeeded)
	// Thirty days on, everything goes, files included.
	now = now.Add(Keep + time.Minute)
	if n := m.Expire(); n != len(ids) { // all of acme's but the deleted one, plus other's
		t.Errorf("expired %d jobs, want %d", n, len(ids))
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	if len(files) != 0 || len(m.List("acme")) != 0 {
		t.Errorf("after expiry: %v files, %d jobs", files, len(m.List("acme")))
	}
}
