package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/custos-audit/custos/source"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// forwarderProc is a custos forward process started by a test.
type forwarderProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string // its /metrics listener
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
}

var forwardListenRE = regexp.MustCompile(`msg="custos forward listening" addr=(\S+)`)

func startForwardProc(t *testing.T, args ...string) *forwarderProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"forward"}, args...)...)
	cmd.Env = append(os.Environ(), "CUSTOS_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &forwarderProc{t: t, cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := forwardListenRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	go func() { cmd.Wait(); close(p.done) }()
	select {
	case a := <-addr:
		p.addr = "http://" + a
	case <-p.done:
		t.Fatalf("forwarder exited before listening:\n%s", p.logText())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("forwarder did not start:\n%s", p.logText())
	}
	t.Cleanup(p.kill)
	return p
}

func (p *forwarderProc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *forwarderProc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// metrics scrapes the forwarder's /metrics into name{labels} → value.
func (p *forwarderProc) metrics() map[string]float64 {
	resp, err := http.Get(p.addr + "/metrics")
	if err != nil {
		p.t.Fatalf("scrape: %v\n%s", err, p.logText())
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "custos_forward_") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			p.t.Fatalf("metric line %q", l)
		}
		out[l[:i]] = v
	}
	return out
}

// waitMetrics polls the metrics until cond holds. The deadline only keeps
// a broken build from hanging; the test's checks come after.
func (p *forwarderProc) waitMetrics(what string, cond func(m map[string]float64) bool) map[string]float64 {
	p.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		m := p.metrics()
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s; metrics %v\n%s", what, m, p.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeRecords appends records with Ids prefix-from … prefix-(to-1).
func writeRecords(t *testing.T, path, prefix string, from, to int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	at := time.Now().Add(-time.Hour)
	for i := from; i < to; i++ {
		fmt.Fprintln(w, e2eRecord(fmt.Sprintf("%s-%05d", prefix, i), at))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func checkStored(t *testing.T, s *server, readTok string, want map[string]bool) {
	t.Helper()
	got := storedIDs(s, "contoso", readTok)
	missing, dup := 0, 0
	for id := range want {
		switch got[id] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	if missing > 0 || dup > 0 || len(got) != len(want) {
		t.Fatalf("server holds %d records, want %d: %d missing, %d more than once", len(got), len(want), missing, dup)
	}
}

// TestForwardOutageKillRestart: the forwarder follows a rotated file while
// the server is down, is killed with SIGKILL and restarted, and the server
// comes back: the server ends up with every record, once, and the
// forwarder's counters account for exactly those records.
func TestForwardOutageKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server and a forwarder, kills both")
	}
	dir := t.TempDir()
	data, logs, queue := filepath.Join(dir, "data"), filepath.Join(dir, "logs"), filepath.Join(dir, "queue")
	os.Mkdir(logs, 0o755)
	addr := freePort(t)
	s := startServer(t, data, "--listen", addr)
	ingestTok, readTok := setupTenant(s, "contoso")
	log := filepath.Join(logs, "app.log")
	args := []string{"--server", s.url, "--token", ingestTok, "--tenant", "contoso", "--name", "app-host-1",
		"--file", log, "--queue", queue, "--listen", "127.0.0.1:0", "--poll", "50ms", "--batch-wait", "50ms",
		"--batch-records", "300", "--heartbeat", "200ms", "--max-backoff", "300ms"}
	want := map[string]bool{}
	write := func(from, to int) {
		writeRecords(t, log, "fw", from, to)
		for i := from; i < to; i++ {
			want[fmt.Sprintf("fw-%05d", i)] = true
		}
	}

	write(0, 1000)
	fw := startForwardProc(t, args...)
	fw.waitMetrics("the first records delivered", func(m map[string]float64) bool {
		return m["custos_forward_records_sent_total"] == 1000
	})

	// The server goes away; records keep coming, with a rotation.
	s.kill()
	write(1000, 1800)
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	write(1800, 2500)
	m := fw.waitMetrics("records queued during the outage", func(m map[string]float64) bool {
		return m["custos_forward_records_read_total"] == 2500 && m[`custos_forward_heartbeats_total{result="error"}`] > 0
	})
	if m["custos_forward_acked_sequence"] >= m["custos_forward_sequence"] || m["custos_forward_queue_records"] != 1500 {
		t.Fatalf("with the server down, batches should wait in the queue: %v", m)
	}

	// kill -9 of the forwarder; more records and another rotation while
	// it is down.
	fw.kill()
	write(2500, 3000)
	os.Rename(log, log+".1")
	write(3000, 3200)
	fw = startForwardProc(t, args...)
	fw.waitMetrics("the restarted forwarder to queue the rest", func(m map[string]float64) bool {
		return m["custos_forward_records_read_total"] == 3200
	})

	// The server comes back at the same address.
	s = startServer(t, data, "--listen", addr)
	m = fw.waitMetrics("everything delivered", func(m map[string]float64) bool {
		return m["custos_forward_queue_records"] == 0 && m["custos_forward_acked_sequence"] == m["custos_forward_sequence"] &&
			m[`custos_forward_heartbeats_total{result="ok"}`]+m[`custos_forward_heartbeats_total{result="not_found"}`] > 0
	})
	checkStored(t, s, readTok, want)
	for name, v := range map[string]float64{
		"custos_forward_records_read_total":                    3200,
		"custos_forward_records_sent_total":                    3200,
		"custos_forward_records_rejected_total":                0,
		`custos_forward_lost_records_total{reason="too_long"}`: 0,
		`custos_forward_lost_records_total{reason="refused"}`:  0,
		"custos_forward_lost_files_total":                      0,
		"custos_forward_queue_bytes":                           0,
		"custos_forward_refused_batches_total":                 0,
		"custos_forward_batches_sent_total":                    m["custos_forward_sequence"],
	} {
		if m[name] != v {
			t.Errorf("%s = %v, want %v", name, m[name], v)
		}
	}
	if m["custos_forward_last_ack_timestamp_seconds"] == 0 {
		t.Error("no last ack time")
	}
	if m[`custos_forward_heartbeats_total{result="not_found"}`] != 0 {
		t.Error("the server did not take the forwarder's heartbeats")
	}

	// The server, killed with SIGKILL once itself, knows the forwarder:
	// every batch number arrived, no gap; its heartbeat counts what it sent.
	var st source.Status
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		json.Unmarshal(s.mustCall("GET", "/api/v1/tenants/contoso/sources/app-host-1", readTok, nil, 200), &st)
		if st.Heartbeat != nil && st.Heartbeat.RecordsSent == 3200 || time.Now().After(deadline) {
			break
		}
	}
	if st.Kind != source.KindForwarder || st.Sequence != uint64(m["custos_forward_sequence"]) || len(st.Gaps) != 0 ||
		st.Heartbeat == nil || st.Heartbeat.RecordsSent != 3200 || st.Heartbeat.Acked != st.Sequence {
		t.Errorf("the server's view of the forwarder: %+v (heartbeat %+v)", st, st.Heartbeat)
	}
}

// TestForwardQueueFull: with the server down and a tiny queue, the HTTP
// endpoint answers 503 once the queue is full and file input pauses; it is
// counted, and once the server is back nothing is missing.
func TestForwardQueueFull(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server and a forwarder")
	}
	dir := t.TempDir()
	data, logs, queue := filepath.Join(dir, "data"), filepath.Join(dir, "logs"), filepath.Join(dir, "queue")
	os.Mkdir(logs, 0o755)
	addr := freePort(t)
	s := startServer(t, data, "--listen", addr)
	ingestTok, readTok := setupTenant(s, "contoso")
	s.kill()

	log := filepath.Join(logs, "app.log")
	want := map[string]bool{}
	writeRecords(t, log, "file", 0, 600) // ~450 KB: far more than the queue holds
	for i := range 600 {
		want[fmt.Sprintf("file-%05d", i)] = true
	}
	fw := startForwardProc(t, "--server", "http://"+addr, "--token", ingestTok, "--tenant", "contoso",
		"--file", log, "--queue", queue, "--listen", "127.0.0.1:0", "--queue-max-bytes", "64KiB",
		"--poll", "50ms", "--batch-wait", "50ms", "--heartbeat", "1s", "--max-backoff", "300ms")

	post := func(ids []string) int {
		var body bytes.Buffer
		for _, id := range ids {
			body.WriteString(e2eRecord(id, time.Now().Add(-time.Hour)) + "\n")
		}
		resp, err := http.Post(fw.addr+"/records", "application/x-ndjson", &body)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		return resp.StatusCode
	}
	// Post until the queue is full (the file input fills it too).
	var refused [][]string
	accepted := 0
	for n := 0; len(refused) == 0; n++ {
		if n > 200 {
			t.Fatalf("the queue never filled:\n%s", fw.logText())
		}
		ids := make([]string, 10)
		for i := range ids {
			ids[i] = fmt.Sprintf("http-%03d-%d", n, i)
		}
		switch code := post(ids); code {
		case http.StatusOK:
			accepted += len(ids)
			for _, id := range ids {
				want[id] = true
			}
		case http.StatusServiceUnavailable:
			refused = append(refused, ids)
		default:
			t.Fatalf("POST /records answered %d", code)
		}
	}
	m := fw.metrics()
	if m[`custos_forward_queue_full_total{input="http"}`] < 1 || m[`custos_forward_http_requests_total{code="503"}`] < 1 {
		t.Fatalf("a full queue is not counted: %v", m)
	}
	if m["custos_forward_queue_bytes"] > 64<<10 || m["custos_forward_records_read_total"] >= float64(600+accepted) {
		t.Fatalf("the queue went past its bound or read everything: %v", m)
	}

	// The server is back: everything queued drains, the file is read to
	// its end, and the refused requests, sent again, are taken.
	s = startServer(t, data, "--listen", addr)
	for _, ids := range refused {
		for post(ids) != http.StatusOK {
			time.Sleep(100 * time.Millisecond)
		}
		accepted += len(ids)
		for _, id := range ids {
			want[id] = true
		}
	}
	total := float64(600 + accepted)
	m = fw.waitMetrics("everything delivered", func(m map[string]float64) bool {
		return m["custos_forward_records_read_total"] == total && m["custos_forward_acked_sequence"] == m["custos_forward_sequence"]
	})
	checkStored(t, s, readTok, want)
	if m["custos_forward_records_sent_total"] != total || m[`custos_forward_queue_full_total{input="file"}`] < 1 {
		t.Fatalf("counters do not add up: %v", m)
	}
}
