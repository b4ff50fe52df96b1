package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custos-audit/custos/api"
	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/client"
	"github.com/custos-audit/custos/detect"
	"github.com/custos-audit/custos/forward"
	"github.com/custos-audit/custos/ingest"
	"github.com/custos-audit/custos/simulate"
	"github.com/custos-audit/custos/store"
)

func runBench(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "search" {
		return runBenchSearch(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "forward" {
		return runBenchForward(ctx, args[1:])
	}
	if len(args) == 0 || args[0] != "ingest" {
		return usagef("usage: custos bench ingest|search|forward [flags]  (see custos bench ingest -h, custos bench search -h, custos bench forward -h)")
	}
	fs := flag.NewFlagSet("bench ingest", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: custos bench ingest [flags]\n\nMeasures end-to-end durable HTTP ingest: an in-process server on loopback,\nsimulator records posted by concurrent clients, then a seal to report bytes\nper record on disk and memory use.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var (
		records  = fs.Int("records", 1_000_000, "records to ingest")
		clients  = fs.Int("clients", 4, "concurrent HTTP clients")
		batch    = fs.Int("batch", 2000, "records per request")
		users    = fs.Int("users", 5000, "simulated users")
		seed     = fs.Int64("seed", 1, "simulator seed")
		dataDir  = fs.String("data", "", "data directory (default: a temporary one, removed afterwards)")
		memLimit = fs.String("memory-limit", "4GB", "DuckDB memory limit")
		asJSON   = fs.Bool("json", false, "print the result as one JSON object")
		cpuProf  = fs.String("cpuprofile", "", "write a CPU profile of the ingest phase to this file")
		detectOn = fs.Bool("detect", false, "run detection (bundled rules, baselines) on the records while they are ingested")
	)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	dir := *dataDir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	} else {
		d, err := os.MkdirTemp("", "custos-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}

	// Generate the input first so its cost is not measured.
	input := filepath.Join(dir, "bench-input.ndjson")
	rawBytes, err := benchInput(input, *records, *users, *seed)
	if err != nil {
		return err
	}

	db, err := store.Open(filepath.Join(dir, "store"), store.Options{MemoryLimit: *memLimit, MinFreeBytes: -1})
	if err != nil {
		return err
	}
	var engine *detect.Engine
	detectDone := make(chan struct{})
	if *detectOn {
		det, err := openDetection(db, dir, "", "", 14, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			db.Close()
			return err
		}
		defer det.alerts.Close()
		engine = det.engine
		dctx, stopDetect := context.WithCancel(ctx)
		defer func() { stopDetect(); <-detectDone }()
		go func() { det.run(dctx); close(detectDone) }()
	} else {
		close(detectDone)
	}
	base, token, stop, err := benchServer(dir, db, auth.RoleIngest)
	if err != nil {
		db.Close()
		return err
	}
	defer stop()
	url := base + "/api/v1/tenants/bench/records"

	f, err := os.Open(input)
	if err != nil {
		return err
	}
	defer f.Close()
	var (
		mu        sync.Mutex
		sc        = bufio.NewScanner(f)
		lats      []time.Duration
		sent      atomic.Int64
		accepted  atomic.Int64
		retries   atomic.Int64
		firstErr  error
		errOnce   sync.Once
		wg        sync.WaitGroup
		httpc     = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients}}
		progressT = time.NewTicker(2 * time.Second)
	)
	sc.Buffer(make([]byte, 1<<20), 2<<20)
	next := func(b []byte) []byte { // the next batch as an NDJSON body, in b's storage
		mu.Lock()
		defer mu.Unlock()
		b = b[:0]
		for n := 0; n < *batch && sc.Scan(); n++ {
			b = append(b, sc.Bytes()...)
			b = append(b, '\n')
		}
		return b
	}
	if *cpuProf != "" {
		pf, err := os.Create(*cpuProf)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	go func() {
		for range progressT.C {
			n := sent.Load()
			fmt.Fprintf(os.Stderr, "\r%d/%d records, %.0f rec/s   ", n, *records, float64(n)/time.Since(start).Seconds())
		}
	}()
	for range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := next(nil); len(body) > 0 && ctx.Err() == nil; body = next(body) {
				n := int64(bytes.Count(body, []byte("\n")))
				for {
					t0 := time.Now()
					req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+token)
					req.Header.Set("Content-Type", "application/x-ndjson")
					resp, err := httpc.Do(req)
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						return
					}
					var res ingest.Result
					json.NewDecoder(resp.Body).Decode(&res)
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
						retries.Add(1)
						time.Sleep(50 * time.Millisecond)
						continue
					}
					if resp.StatusCode != 200 {
						errOnce.Do(func() { firstErr = fmt.Errorf("ingest answered %d", resp.StatusCode) })
						return
					}
					d := time.Since(t0)
					mu.Lock()
					lats = append(lats, d)
					mu.Unlock()
					accepted.Add(int64(res.Accepted))
					sent.Add(n)
					break
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if *cpuProf != "" {
		pprof.StopCPUProfile()
	}
	progressT.Stop()
	fmt.Fprintln(os.Stderr)
	if firstErr != nil {
		db.Close()
		return fmt.Errorf("benchmark client: %w", firstErr)
	}
	rssIngest := vmHWM()

	// With detection: how long until it has evaluated everything acknowledged.
	var caughtUp time.Duration
	if engine != nil {
		t0 := time.Now()
		for engine.Evaluated() < accepted.Load() && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		caughtUp = time.Since(t0)
	}

	// Time until everything acknowledged is queryable and then sealed.
	t0 := time.Now()
	if _, err := db.Count(ctx, "bench", store.Query{}); err != nil {
		return err
	}
	queryable := time.Since(t0)
	t0 = time.Now()
	if err := db.Seal(ctx); err != nil {
		return err
	}
	sealTime := time.Since(t0)
	st := db.Stats()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if err := db.Close(); err != nil {
		return err
	}

	slices.Sort(lats)
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[int(float64(len(lats)-1)*p)]
	}
	res := map[string]any{
		"records":              sent.Load(),
		"accepted":             accepted.Load(),
		"clients":              *clients,
		"batch":                *batch,
		"raw_bytes_per_record": rawBytes / max(int64(*records), 1),
		"elapsed_s":            round2(elapsed.Seconds()),
		"records_per_s":        int64(float64(sent.Load()) / elapsed.Seconds()),
		"mb_per_s":             round2(float64(rawBytes) / elapsed.Seconds() / 1e6),
		"ack_p50_ms":           round2(pct(0.5).Seconds() * 1000),
		"ack_p99_ms":           round2(pct(0.99).Seconds() * 1000),
		"retries_429_503":      retries.Load(),
		"queryable_after_ms":   queryable.Milliseconds(),
		"seal_s":               round2(sealTime.Seconds()),
		"sealed_parts":         st.SealedParts,
		"sealed_bytes":         st.SealedBytes,
		"sealed_bytes_per_rec": round2(float64(st.SealedBytes) / float64(max(st.SealedRecords, 1))),
		"peak_rss_mb":          rssIngest >> 20,
		"go_heap_mb":           ms.HeapInuse >> 20,
		"dedup_ids":            st.DedupIDs,
		"gomaxprocs":           runtime.GOMAXPROCS(0),
		"detect":               *detectOn,
	}
	if engine != nil {
		res["detect_caught_up_ms"] = caughtUp.Milliseconds()
		res["detect_records"] = engine.Evaluated()
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	keys := make([]string, 0, len(res))
	for k := range res {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Printf("%-22s %v\n", k, res[k])
	}
	return nil
}

// benchServer serves the API over db on a loopback port, with a token of
// role for the tenant "bench", and returns the base URL, the token and a
// function that stops the server.
func benchServer(dir string, db *store.DB, role auth.Role) (base, token string, stop func(), err error) {
	reg, err := auth.Open(filepath.Join(dir, "auth.json"))
	if err != nil {
		return "", "", nil, err
	}
	if _, ok := reg.Tenant("bench"); !ok {
		if _, err := reg.CreateTenant("bench", "benchmark"); err != nil {
			return "", "", nil, err
		}
	}
	if _, token, err = reg.CreateToken("bench", role, "bench-"+string(role), nil); err != nil {
		return "", "", nil, err
	}
	promReg := prometheus.NewRegistry()
	srv := &http.Server{Handler: api.New(api.Config{
		Registry: reg, Reader: db, Ready: db.Ready,
		Ingest:  ingest.New(db, ingest.Config{Registerer: promReg}),
		Metrics: promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}),
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, err
	}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), token, func() { srv.Close() }, nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// benchInput writes n simulator records to path unless it already holds
// them, and returns the raw byte count.
func benchInput(path string, n, users int, seed int64) (int64, error) {
	if fi, err := os.Stat(path + ".done"); err == nil && fi.Size() > 0 {
		b, _ := os.ReadFile(path + ".done")
		if parts := strings.Fields(string(b)); len(parts) == 2 && parts[0] == strconv.Itoa(n) {
			size, _ := strconv.ParseInt(parts[1], 10, 64)
			return size, nil
		}
	}
	// Enough days that users*rate*days covers n records.
	days := max(1, n/(users*simulate.DefaultRate)+1)
	g, err := simulate.New(simulate.Config{Tenant: "bench", Users: users, Days: days, Seed: seed})
	if err != nil {
		return 0, err
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var size int64
	for i := 0; i < n; i++ {
		rec, ok := g.Next()
		if !ok {
			break
		}
		w.Write(rec)
		w.WriteByte('\n')
		size += int64(len(rec))
		if i%500000 == 0 && i > 0 {
			fmt.Fprintf(os.Stderr, "\rgenerating input: %d/%d", i, n)
		}
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	fmt.Fprintf(os.Stderr, "\rgenerated %d records (%d MB) in %s\n", n, size>>20, path)
	return size, os.WriteFile(path+".done", []byte(fmt.Sprintf("%d %d", n, size)), 0o644)
}

// vmHWM is the process's peak resident memory in bytes (Linux).
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// runBenchForward measures custos forward end to end: simulator records in
// a file, followed by a forwarder (disk queue, fsync per batch) into an
// in-process server on loopback that stores them durably.
func runBenchForward(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench forward", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: custos bench forward [flags]\n\nMeasures custos forward: a file of simulator records followed by a forwarder\n(disk queue, fsync per batch) into an in-process server on loopback, from\nstart until the server has acknowledged every record.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var (
		records     = fs.Int("records", 500_000, "records to forward")
		users       = fs.Int("users", 5000, "simulated users")
		seed        = fs.Int64("seed", 1, "simulator seed")
		concurrency = fs.Int("concurrency", 2, "batches in flight")
		batch       = fs.Int("batch-records", 5000, "records per batch")
		dataDir     = fs.String("data", "", "directory for input, queue and store (default: a temporary one, removed afterwards)")
		memLimit    = fs.String("memory-limit", "2GB", "DuckDB memory limit")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir := *dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "custos-bench-forward-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	input := filepath.Join(dir, "bench-input.ndjson")
	rawBytes, err := benchInput(input, *records, *users, *seed)
	if err != nil {
		return err
	}
	queue := filepath.Join(dir, "forward-queue")
	os.RemoveAll(queue)
	db, err := store.Open(filepath.Join(dir, "store"), store.Options{MemoryLimit: *memLimit, MinFreeBytes: -1})
	if err != nil {
		return err
	}
	defer db.Close()
	base, token, stop, err := benchServer(dir, db, auth.RoleIngest)
	if err != nil {
		return err
	}
	defer stop()
	f, err := forward.New(forward.Config{
		Client: client.New(base, token), Tenant: "bench", Source: "bench-forward",
		QueueDir: queue, Files: []string{input}, Poll: 100 * time.Millisecond,
		BatchRecords: *batch, Concurrency: *concurrency, Heartbeat: time.Hour,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f.Run(fctx) }()
	want := uint64(*records)
	for {
		st := f.Stats()
		if st.Counters.Sent+st.Counters.Rejected >= want && st.Acked == st.Sequence {
			break
		}
		select {
		case err := <-done:
			cancel()
			return fmt.Errorf("forwarder stopped: %v", err)
		case <-ctx.Done():
			cancel()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		return err
	}
	st := f.Stats()
	res := map[string]any{
		"records":              st.Counters.Sent + st.Counters.Rejected,
		"rejected":             st.Counters.Rejected,
		"batches":              st.Sequence,
		"elapsed_s":            round2(elapsed.Seconds()),
		"records_per_s":        int64(float64(want) / elapsed.Seconds()),
		"mb_per_s":             round2(float64(rawBytes) / elapsed.Seconds() / 1e6),
		"raw_bytes_per_record": rawBytes / max(int64(*records), 1),
		"peak_rss_mb":          vmHWM() >> 20,
		"gomaxprocs":           runtime.GOMAXPROCS(0),
	}
	keys := make([]string, 0, len(res))
	for k := range res {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Printf("%-22s %v\n", k, res[k])
	}
	return nil
}
