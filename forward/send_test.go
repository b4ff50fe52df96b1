package forward

import (
	"bytes"
	"net"
	"net/http"
	"path/filepath"
	"testing"
)

// TestSenderRetriesAndRefusals: 5xx is retried until the server takes the
// batch with its sequence number unchanged; a permanent 4xx is counted as
// refused and the queue moves on.
func TestSenderRetriesAndRefusals(t *testing.T) {
	dir := t.TempDir()
	r := newReceiver(t)
	r.status = http.StatusServiceUnavailable
	log := filepath.Join(dir, "app.log")
	appendRecs(t, log, 0, 10)
	rf := startForwarder(t, r, filepath.Join(dir, "q"), []string{log}, nil)
	waitFor(t, "retries", func() bool { return rf.f.Stats().Counters.Queued == 10 && testCounter(rf.f.m.sendErrors) >= 3 })
	r.mu.Lock()
	r.status = 0
	r.mu.Unlock()
	delivered(t, rf, 10)
	checkExactlyOnce(t, r, 10)

	r.mu.Lock()
	r.status = http.StatusBadRequest
	r.mu.Unlock()
	appendRecs(t, log, 10, 15)
	waitFor(t, "the refusal", func() bool { return rf.f.Stats().Counters.RefusedBatches == 1 })
	r.mu.Lock()
	r.status = 0
	r.mu.Unlock()
	appendRecs(t, log, 15, 20)
	delivered(t, rf, 20)
	st := rf.f.Stats()
	if st.Counters.Refused != 5 || st.Counters.Sent != 15 || st.Sequence != 3 || st.Acked != 3 {
		t.Fatalf("counters %+v", st)
	}
	_, seqs := r.snapshot()
	if len(seqs) != 2 || seqs[0] != 1 || seqs[1] != 3 {
		t.Fatalf("sequences received %v, want [1 3]", seqs)
	}
}

// TestHTTPInput: NDJSON and JSON arrays are queued and answered 200 once
// durable; a full queue answers 503 and nothing answered 200 is lost.
func TestHTTPInput(t *testing.T) {
	dir := t.TempDir()
	r := newReceiver(t)
	r.status = http.StatusServiceUnavailable // the server is "down": the queue fills
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rf := startForwarder(t, r, filepath.Join(dir, "q"), nil, func(c *Config) {
		c.Listener, c.Records, c.QueueMaxBytes = ln, true, 8<<10
	})
	url := "http://" + ln.Addr().String() + "/records"
	post := func(body string) int {
		resp, err := http.Post(url, "application/x-ndjson", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post("[\n {\"Id\": \"r000000\",\n  \"Operation\":\"FileAccessed\"},\n" + `{"Id":"r000001","Operation":"FileAccessed"}]`); c != 200 {
		t.Fatalf("JSON array: %d", c)
	}
	ok := 2
	for i := 2; ; i++ {
		c := post(rec(i) + "\n\n")
		if c == http.StatusServiceUnavailable {
			break
		}
		if c != 200 || i > 1000 {
			t.Fatalf("POST %d: %d", i, c)
		}
		ok++
	}
	if n := testCounter(rf.f.m.queueFull.WithLabelValues("http")); n != 1 {
		t.Fatalf("queue full counted %v times", n)
	}
	r.mu.Lock()
	r.status = 0
	r.mu.Unlock()
	delivered(t, rf, uint64(ok))
	// The array's records arrive as compact NDJSON lines.
	got, _ := r.snapshot()
	if got[`{"Id":"r000000","Operation":"FileAccessed"}`] != 1 {
		t.Fatalf("array element not compacted: %v", got)
	}
	checkExactlyOnce(t, r, ok)
}
