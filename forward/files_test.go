package forward

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	dto "github.com/prometheus/client_model/go"

	"github.com/custos-audit/custos/client"
)

// receiver is a stand-in for the custos ingest endpoint that remembers
// every line it got and the sequence numbers of the batches.
type receiver struct {
	*httptest.Server
	mu         sync.Mutex
	lines      map[string]int
	seqs       []uint64
	heartbeats int
	status     int // answer with this status instead, when not 0
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{lines: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/heartbeat") {
			r.mu.Lock()
			r.heartbeats++
			r.mu.Unlock()
			w.WriteHeader(http.StatusNotFound)
			return
		}
		var rd io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "zstd" {
			zr, err := zstd.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			defer zr.Close()
			rd = zr
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		seq, _ := strconv.ParseUint(req.Header.Get("X-Custos-Sequence"), 10, 64)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.status != 0 {
			http.Error(w, `{"error":"no"}`, r.status)
			return
		}
		r.seqs = append(r.seqs, seq)
		n := 0
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			r.lines[l]++
			n++
		}
		json.NewEncoder(w).Encode(map[string]int{"accepted": n})
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) snapshot() (map[string]int, []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]int, len(r.lines))
	for k, v := range r.lines {
		m[k] = v
	}
	return m, append([]uint64(nil), r.seqs...)
}

// running is a forwarder running in the test.
type running struct {
	f      *Forwarder
	cancel context.CancelFunc
	done   chan error
}

func startForwarder(t *testing.T, r *receiver, queue string, globs []string, mod func(*Config)) *running {
	t.Helper()
	c := client.New(r.URL, "tok")
	c.MinBackoff, c.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	cfg := Config{Client: c, Tenant: "t1", Source: "host1", QueueDir: queue, Files: globs,
		Poll: 20 * time.Millisecond, BatchWait: 10 * time.Millisecond, Heartbeat: time.Hour,
		Logger: testLogger(t)}
	if mod != nil {
		mod(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rf := &running{f: f, cancel: cancel, done: make(chan error, 1)}
	go func() { rf.done <- f.Run(ctx) }()
	t.Cleanup(func() { rf.stop(t) })
	return rf
}

func (rf *running) stop(t *testing.T) {
	if rf.cancel == nil {
		return
	}
	rf.cancel()
	rf.cancel = nil
	if err := <-rf.done; err != nil {
		t.Errorf("forwarder: %v", err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds; the deadline only keeps a broken
// build from hanging, it is not what the test checks.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// delivered waits until the forwarder queued want records and the
// receiver has all its batches.
func delivered(t *testing.T, rf *running, want uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d records delivered", want), func() bool {
		st := rf.f.Stats()
		return st.Counters.Queued == want && st.Acked == st.Sequence
	})
}

// checkExactlyOnce checks that the receiver got the records r0…r(n-1),
// each once, and that the sequence numbers were 1, 2, 3… without gaps.
func checkExactlyOnce(t *testing.T, r *receiver, n int) {
	t.Helper()
	got, seqs := r.snapshot()
	slices.Sort(seqs) // concurrent sends and retries arrive in any order
	for i := range n {
		if c := got[rec(i)]; c != 1 {
			t.Errorf("record %d received %d times", i, c)
		}
	}
	if len(got) != n {
		t.Errorf("received %d distinct lines, want %d", len(got), n)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("sequence numbers %v, want 1, 2, 3…", seqs)
		}
	}
}

func rec(i int) string { return fmt.Sprintf(`{"Id":"r%06d","Operation":"FileAccessed"}`, i) }

// appendRecs appends records from…to-1 to path, one write per line.
func appendRecs(t *testing.T, path string, from, to int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for i := from; i < to; i++ {
		w.WriteString(rec(i) + "\n")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestTailAppendsAndPartialLines(t *testing.T) {
	dir := t.TempDir()
	r := newReceiver(t)
	log := filepath.Join(dir, "app.log")
	appendRecs(t, log, 0, 100)
	rf := startForwarder(t, r, filepath.Join(dir, "q"), []string{filepath.Join(dir, "*.log")}, nil)
	delivered(t, rf, 100)

	// A writer caught mid-line: the half line waits for its newline.
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	half := rec(100)
	f.WriteString(half[:10])
	appendRecs(t, filepath.Join(dir, "other.log"), 101, 150) // a new file is picked up meanwhile
	delivered(t, rf, 149)
	f.WriteString(half[10:] + "\n\n   \n") // blank lines are not records
	f.Close()
	appendRecs(t, log, 150, 200)
	delivered(t, rf, 200)
	checkExactlyOnce(t, r, 200)
}

func TestTailRotationByRename(t *testing.T) {
	dir := t.TempDir()
	r := newReceiver(t)
	log := filepath.Join(dir, "app.log")
	appendRecs(t, log, 0, 50)
	rf := startForwarder(t, r, filepath.Join(dir, "q"), []string{log}, nil)
	delivered(t, rf, 50)

	// The writer keeps the old file open across the rename and writes a
	// little more to it before it reopens: those lines are read too.
	old, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	for i := 50; i < 80; i++ {
		old.WriteString(rec(i) + "\n")
	}
	old.Close()
	appendRecs(t, log, 80, 120)
	delivered(t, rf, 120)
	// Rotated again, and the oldest deleted after it was read.
	os.Rename(log+".1", log+".2")
	os.Rename(log, log+".1")
	appendRecs(t, log, 120, 130)
	delivered(t, rf, 130)
	os.Remove(log + ".2")
	appendRecs(t, log, 130, 140)
	delivered(t, rf, 140)
	checkExactlyOnce(t, r, 140)
}

func TestTailCopyTruncate(t *testing.T) {
	for _, glob := range []string{"app.log", "app.log*"} {
		t.Run(glob, func(t *testing.T) {
			dir := t.TempDir()
			r := newReceiver(t)
			log := filepath.Join(dir, "app.log")
			appendRecs(t, log, 0, 60)
			rf := startForwarder(t, r, filepath.Join(dir, "q"), []string{filepath.Join(dir, glob)}, nil)
			delivered(t, rf, 60)
			// logrotate's copytruncate: copy, then truncate in place;
			// the writer's O_APPEND descriptor goes on at offset 0.
			// The copy appears whole (written aside, then renamed):
			// a copy caught before its first 1 KiB is written cannot be
			// told from a new file and would be read again (see
			// docs/forwarding.md, Limits).
			b, _ := os.ReadFile(log)
			if err := os.WriteFile(filepath.Join(dir, "copy.tmp"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(dir, "copy.tmp"), log+".1"); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(log, 0); err != nil {
				t.Fatal(err)
			}
			appendRecs(t, log, 60, 200) // longer than before: only the fingerprint shows the change
			delivered(t, rf, 200)
			checkExactlyOnce(t, r, 200)
		})
	}
}

func TestTailRestartResumes(t *testing.T) {
	dir := t.TempDir()
	r := newReceiver(t)
	log := filepath.Join(dir, "app.log")
	q := filepath.Join(dir, "q")
	glob := []string{log}
	appendRecs(t, log, 0, 300)
	rf := startForwarder(t, r, q, glob, nil)
	delivered(t, rf, 300)
	rf.stop(t)

	// While it is stopped: more lines, a rotation by rename (the
	// pattern no longer matches the old file), a new file.
	appendRecs(t, log, 300, 350)
	os.Rename(log, log+".1")
	appendRecs(t, log, 350, 400)

	rf = startForwarder(t, r, q, glob, nil)
	delivered(t, rf, 400)
	rf.stop(t)
	appendRecs(t, log, 400, 410)
	rf = startForwarder(t, r, q, glob, nil)
	delivered(t, rf, 410)
	checkExactlyOnce(t, r, 410)
}

func TestTailLongLinesSkipped(t *testing.T) {
	dir := t.TempDir()
	r := newReceiver(t)
	log := filepath.Join(dir, "app.log")
	appendRecs(t, log, 0, 10)
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"Id":"big","x":"` + strings.Repeat("x", 5000) + "\"}\n")
	f.Close()
	appendRecs(t, log, 10, 20)
	rf := startForwarder(t, r, filepath.Join(dir, "q"), []string{log}, func(c *Config) { c.MaxLineBytes = 1000 })
	delivered(t, rf, 20)
	// One so long it is still unfinished when read.
	f, _ = os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"Id":"big2","x":"` + strings.Repeat("y", 3000))
	waitFor(t, "the long partial line skipped", func() bool {
		return rf.f.m.tooLong.Load() == 2
	})
	f.WriteString(strings.Repeat("y", 3000) + "\"}\n")
	f.Close()
	appendRecs(t, log, 20, 30)
	delivered(t, rf, 30)
	checkExactlyOnce(t, r, 30)
	if n := rf.f.m.tooLong.Load(); n != 2 {
		t.Fatalf("%d long lines counted, want 2", n)
	}
}

func testCounter(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

// TestTailFileGoneWhileStopped: a file deleted with unread lines while the
// forwarder was stopped is counted as lost; one read to its end is not.
func TestTailFileGoneWhileStopped(t *testing.T) {
	dir := t.TempDir()
	r := newReceiver(t)
	q := filepath.Join(dir, "q")
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	appendRecs(t, a, 0, 10)
	appendRecs(t, b, 10, 20)
	// A last line still without its newline: the forwarder has seen
	// bytes it has not read.
	f, _ := os.OpenFile(a, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"Id":"half`)
	f.Close()
	rf := startForwarder(t, r, q, []string{filepath.Join(dir, "*.log")}, nil)
	delivered(t, rf, 20)
	rf.stop(t)
	os.Remove(a)
	os.Remove(b) // read to its end
	rf = startForwarder(t, r, q, []string{filepath.Join(dir, "*.log")}, nil)
	waitFor(t, "the lost file counted", func() bool { return testCounter(rf.f.m.lostFiles) == 1 })
	rf.stop(t)
	if n := testCounter(rf.f.m.lostFiles); n != 1 {
		t.Fatalf("%v files counted lost, want 1", n)
	}
}
