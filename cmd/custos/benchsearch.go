package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/simulate"
	"github.com/custos-audit/custos/store"
)

// benchDataset describes a built search dataset, and the values the
// queries look for, chosen while it was built.
type benchDataset struct {
	Asked    int64     `json:"asked"`   // --records
	Records  int64     `json:"records"` // records the simulator gave (a few fewer)
	Users    int       `json:"users"`
	Days     int       `json:"days"`
	Seed     int64     `json:"seed"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	User     string    `json:"user"`     // a user of typical volume
	Keyword  string    `json:"keyword"`  // a rare value in one day's records
	KeyDay   time.Time `json:"keyDay"`   // that day
	BuildSec float64   `json:"buildSec"` // how long the build took
}

func runBenchSearch(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench search", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: custos bench search [flags]\n\nMeasures search on a tenant holding months of simulator records: one user's\nMailItemsAccessed over the whole range, a keyword over one day and over the\nwhole range, the first page of the last 24 hours, and a CSV export, each\nthrough the HTTP API on loopback (and directly on the store), with medians\nof several runs. The dataset is built once in --data and reused.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var (
		dataDir  = fs.String("data", "custos-bench-search", "dataset directory; built on first use, reused after")
		records  = fs.Int64("records", 10_000_000, "records in the dataset")
		users    = fs.Int("users", 5000, "simulated users")
		days     = fs.Int("days", 180, "days the records span, ending today")
		seed     = fs.Int64("seed", 1, "simulator seed")
		runs     = fs.Int("runs", 7, "runs of each query (the first is reported apart, as cold)")
		memLimit = fs.String("memory-limit", "4GB", "DuckDB memory limit")
		asJSON   = fs.Bool("json", false, "print the results as one JSON object")
		exportD  = fs.Int("export-days", 30, "days of records the CSV export covers")
		cpuProf  = fs.String("cpuprofile", "", "write a CPU profile of the query phase to this file")
		only     = fs.String("only", "", "run only the queries whose name contains this")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return err
	}
	opts := store.Options{MemoryLimit: *memLimit, MinFreeBytes: -1, CompactAfter: time.Millisecond}
	ds, err := benchBuild(ctx, *dataDir, opts, benchDataset{Asked: *records, Records: *records, Users: *users, Days: *days, Seed: *seed})
	if err != nil {
		return err
	}

	db, err := store.Open(filepath.Join(*dataDir, "store"), opts)
	if err != nil {
		return err
	}
	defer db.Close()
	server, token, stop, err := benchServer(*dataDir, db, auth.RoleRead)
	if err != nil {
		return err
	}
	defer stop()
	base := server + "/api/v1/tenants/bench/records?"

	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	exportFrom := ds.End.AddDate(0, 0, -*exportD)
	type query struct {
		name   string
		params url.Values
		q      store.Query
	}
	queries := []query{
		{"user MailItemsAccessed, whole range",
			url.Values{"from": {rfc(ds.Start)}, "to": {rfc(ds.End)}, "user": {ds.User}, "operation": {"MailItemsAccessed"}},
			store.Query{From: ds.Start, To: ds.End, Filter: store.Filter{UserIDs: []string{ds.User}, Operations: []string{"MailItemsAccessed"}}}},
		{"keyword, one day",
			url.Values{"from": {rfc(ds.KeyDay)}, "to": {rfc(ds.KeyDay.AddDate(0, 0, 1))}, "keyword": {ds.Keyword}},
			store.Query{From: ds.KeyDay, To: ds.KeyDay.AddDate(0, 0, 1), Filter: store.Filter{Keyword: ds.Keyword}}},
		{"first page, last 24h",
			url.Values{"from": {rfc(ds.End.Add(-24 * time.Hour))}, "to": {rfc(ds.End)}, "limit": {"100"}},
			store.Query{From: ds.End.Add(-24 * time.Hour), To: ds.End, Limit: 100}},
		{fmt.Sprintf("CSV export, %d days", *exportD),
			url.Values{"from": {rfc(exportFrom)}, "to": {rfc(ds.End)}, "format": {"csv"}},
			store.Query{From: exportFrom, To: ds.End}},
		{"keyword, whole range",
			url.Values{"from": {rfc(ds.Start)}, "to": {rfc(ds.End)}, "keyword": {ds.Keyword}},
			store.Query{From: ds.Start, To: ds.End, Filter: store.Filter{Keyword: ds.Keyword}}},
	}
	httpc := &http.Client{}
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
	type result struct {
		Name        string  `json:"name"`
		Rows        int64   `json:"rows"`
		Bytes       int64   `json:"bytes"`
		ColdMS      float64 `json:"coldMs"`
		MedianMS    float64 `json:"medianMs"`
		MinMS       float64 `json:"minMs"`
		MaxMS       float64 `json:"maxMs"`
		StoreMS     float64 `json:"storeMedianMs"` // store.Records alone, no HTTP or encoding
		RecordsPerS float64 `json:"recordsPerS"`
	}
	var results []result
	for _, q := range queries {
		if !strings.Contains(q.name, *only) {
			continue
		}
		var times []time.Duration
		var rows, size int64
		for i := range *runs {
			req, _ := http.NewRequestWithContext(ctx, "GET", base+q.params.Encode(), nil)
			req.Header.Set("Authorization", "Bearer "+token)
			t0 := time.Now()
			resp, err := httpc.Do(req)
			if err != nil {
				return err
			}
			n, lines, err := countLines(resp.Body)
			resp.Body.Close()
			d := time.Since(t0)
			if err != nil || resp.StatusCode != 200 {
				return fmt.Errorf("%s: status %d, %v", q.name, resp.StatusCode, err)
			}
			if i == 0 {
				rows, size = lines, n
				if q.params.Get("format") == "csv" {
					rows-- // the header
				}
			}
			times = append(times, d)
			fmt.Fprintf(os.Stderr, "\r%-40s run %d/%d: %v   ", q.name, i+1, *runs, d.Round(time.Millisecond))
		}
		var storeTimes []time.Duration
		for range max(*runs-1, 1) {
			t0 := time.Now()
			sq := q.q
			sq.Slim = true // as the API reads
			err := db.Records(ctx, "bench", sq, func(*audit.Record) error { return nil })
			if err != nil {
				return err
			}
			storeTimes = append(storeTimes, time.Since(t0))
		}
		warm := slices.Clone(times[1:])
		if len(warm) == 0 {
			warm = times
		}
		slices.Sort(warm)
		slices.Sort(storeTimes)
		ms := func(d time.Duration) float64 { return round2(d.Seconds() * 1000) }
		med := warm[len(warm)/2]
		results = append(results, result{Name: q.name, Rows: rows, Bytes: size, ColdMS: ms(times[0]), MedianMS: ms(med),
			MinMS: ms(warm[0]), MaxMS: ms(warm[len(warm)-1]), StoreMS: ms(storeTimes[len(storeTimes)/2]),
			RecordsPerS: round2(float64(rows) / med.Seconds())})
	}
	fmt.Fprintln(os.Stderr)
	st := db.Stats()
	out := map[string]any{"dataset": ds, "sealed_parts": st.SealedParts, "sealed_bytes": st.SealedBytes, "results": results}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	fmt.Printf("dataset: %d records, %d users, %s to %s, %d parts, %d MB; user %s, keyword %q on %s\n",
		ds.Records, ds.Users, ds.Start.Format("2006-01-02"), ds.End.Format("2006-01-02"), st.SealedParts, st.SealedBytes>>20,
		ds.User, ds.Keyword, ds.KeyDay.Format("2006-01-02"))
	fmt.Printf("%-36s %9s %9s %9s %9s %9s %12s\n", "query", "rows", "cold ms", "median ms", "min ms", "store ms", "records/s")
	for _, r := range results {
		fmt.Printf("%-36s %9d %9.1f %9.1f %9.1f %9.1f %12.0f\n", r.Name, r.Rows, r.ColdMS, r.MedianMS, r.MinMS, r.StoreMS, r.RecordsPerS)
	}
	return nil
}

// countLines reads r to the end and counts its bytes and lines.
func countLines(r io.Reader) (n, lines int64, err error) {
	buf := make([]byte, 256<<10)
	for {
		k, err := r.Read(buf)
		n += int64(k)
		lines += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if errors.Is(err, io.EOF) {
			return n, lines, nil
		}
		if err != nil {
			return n, lines, err
		}
	}
}

// benchBuild loads the dataset into dir/store unless dir already holds the
// one asked for, then seals and compacts it as a long-running server would
// have.
func benchBuild(ctx context.Context, dir string, opts store.Options, want benchDataset) (benchDataset, error) {
	marker := filepath.Join(dir, "dataset.json")
	if b, err := os.ReadFile(marker); err == nil {
		var have benchDataset
		if json.Unmarshal(b, &have) == nil && have.Asked == want.Asked && have.Users == want.Users &&
			have.Days == want.Days && have.Seed == want.Seed {
			return have, nil
		}
		return benchDataset{}, fmt.Errorf("%s holds another dataset (%s); remove it or pick another --data", dir, b)
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); err == nil {
		return benchDataset{}, fmt.Errorf("%s holds an incomplete build (no dataset.json); remove it and run again", dir)
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	want.Start = today.AddDate(0, 0, -want.Days)
	want.End = today
	rate := float64(want.Records) / float64(want.Users*want.Days)
	g, err := simulate.New(simulate.Config{Tenant: "bench", Users: want.Users, Days: want.Days, Start: want.Start, Rate: rate, Seed: want.Seed})
	if err != nil {
		return want, err
	}
	db, err := store.Open(filepath.Join(dir, "store"), opts)
	if err != nil {
		return want, err
	}
	defer db.Close()
	start := time.Now()
	var p audit.Parser
	batch := make([]audit.Record, 0, 10_000)
	userCount := map[string]int{}
	keyDay := want.Start.AddDate(0, 0, want.Days/2)
	flush := func() error {
		for {
			_, err := db.Append(ctx, batch)
			if errors.Is(err, store.ErrBusy) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			batch = make([]audit.Record, 0, cap(batch)) // the store keeps the old one
			return err
		}
	}
	var n int64
	for n < want.Records {
		raw, ok := g.Next()
		if !ok {
			break
		}
		r, err := p.Parse(bytes.Clone(raw))
		if err != nil {
			return want, fmt.Errorf("simulator record: %w", err)
		}
		r.Tenant, r.Source, r.Received = "bench", "bench", time.Now().UTC()
		if n%97 == 0 && r.Operation == "MailItemsAccessed" {
			userCount[r.UserID]++
		}
		// The keyword: a client address seen on the key day, rare enough.
		if want.Keyword == "" && !r.CreationTime.Before(keyDay) && r.ClientIP != "" && r.Operation == "UserLoggedIn" {
			want.Keyword, want.KeyDay = r.ClientIP, keyDay
		}
		batch = append(batch, r)
		n++
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return want, err
			}
		}
		if n%200_000 == 0 {
			fmt.Fprintf(os.Stderr, "\rbuilding: %d/%d records, %.0f rec/s   ", n, want.Records, float64(n)/time.Since(start).Seconds())
		}
		if ctx.Err() != nil {
			return want, ctx.Err()
		}
	}
	if err := flush(); err != nil {
		return want, err
	}
	want.Records = n
	fmt.Fprintf(os.Stderr, "\rbuilding: %d records appended in %s; sealing and compacting\n", n, time.Since(start).Round(time.Second))
	// Seal, then let compaction merge every past day's parts.
	for range 3 {
		if err := db.Seal(ctx); err != nil {
			return want, err
		}
	}
	want.BuildSec = round2(time.Since(start).Seconds())
	// The user of median MailItemsAccessed volume.
	type uc struct {
		u string
		c int
	}
	var us []uc
	for u, c := range userCount {
		us = append(us, uc{u, c})
	}
	slices.SortFunc(us, func(a, b uc) int { return a.c - b.c })
	if len(us) > 0 {
		want.User = us[len(us)/2].u
	}
	b, _ := json.MarshalIndent(want, "", "  ")
	return want, os.WriteFile(marker, b, 0o644)
}
