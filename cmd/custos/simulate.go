package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custos-audit/custos/client"
	"github.com/custos-audit/custos/simulate"
)

func runSimulate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: custos simulate --tenant ID [flags]

Generates deterministic, realistic Microsoft 365 unified audit log activity
for one tenant as NDJSON, in CreationTime order, optionally with attack
scenarios injected (known: %s).
The same flags and seed always produce the same bytes. See docs/simulator.md.
Every flag can also be set by CUSTOS_<FLAG> in the environment.

flags:
`, strings.Join(simulate.ScenarioNames(), ", "))
		fs.PrintDefaults()
	}
	var (
		tenant    = fs.String("tenant", "", "tenant id (required); determines OrganizationId and host names")
		domain    = fs.String("domain", "", "UPN domain of the users (default: <tenant>.onmicrosoft.com)")
		users     = fs.Int("users", 100, "number of users")
		days      = fs.Int("days", 7, "number of days")
		startS    = fs.String("start", "", "first instant, RFC 3339 or YYYY-MM-DD (default: --days before today, 00:00 UTC)")
		rate      = fs.Float64("rate", simulate.DefaultRate, "average records per user per day")
		seed      = fs.Int64("seed", 1, "random seed")
		scenarios = fs.String("scenario", "", "comma-separated attack scenarios to inject")
		scenStart = fs.String("scenario-start", "", "when scenarios begin, RFC 3339 or YYYY-MM-DD (default: start + 2/3 of --days)")
		offset    = fs.Duration("utc-offset", 0, "tenant time zone as an offset from UTC, e.g. 1h or -5h; working hours are local")
		out       = fs.String("out", "-", "output file, '-' for stdout")
		labels    = fs.String("labels", "", "write one JSON line per injected record to this file: {\"id\",\"scenario\",\"entity\"}")
		server    = fs.String("server", "", "post the records to this custos server instead of writing them (token: --token or $CUSTOS_TOKEN)")
		token     = fs.String("token", "", "API token for --server (default $CUSTOS_TOKEN)")
		quiet     = fs.Bool("quiet", false, "no progress or summary on stderr")
	)
	// No environment fallback here: a CUSTOS_SERVER exported for other
	// commands must not turn a file-writing simulation into a posting one.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *server != "" && *out != "-" {
		return usagef("--server and --out exclude each other")
	}
	if *tenant == "" {
		return usagef("--tenant is required")
	}
	cfg := simulate.Config{
		Tenant:    *tenant,
		Domain:    *domain,
		Users:     *users,
		Days:      *days,
		Rate:      *rate,
		Seed:      *seed,
		UTCOffset: *offset,
	}
	if *startS != "" {
		t, err := simulate.ParseStart(*startS)
		if err != nil {
			return usagef("--start %v", err)
		}
		cfg.Start = t
	} else {
		today := time.Now().UTC().Truncate(24 * time.Hour)
		cfg.Start = today.AddDate(0, 0, -*days)
	}
	if *scenStart != "" {
		t, err := simulate.ParseStart(*scenStart)
		if err != nil {
			return usagef("--scenario-start %v", err)
		}
		cfg.ScenarioStart = t
	}
	if *scenarios != "" {
		cfg.Scenarios = strings.Split(*scenarios, ",")
	}
	gen, err := simulate.New(cfg)
	if err != nil {
		return usagef("%v", err)
	}

	var w io.Writer = os.Stdout
	var outFile *os.File
	var posted chan error
	var up *client.Uploader
	var pw *io.PipeWriter
	if *server != "" {
		cf := clientFlags{server: *server, token: *token}
		c, err := cf.client(osEnv())
		if err != nil {
			return err
		}
		up = c.NewUploader(*tenant, client.UploadOptions{})
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		w = pw
		posted = make(chan error, 1)
		go func() {
			err := up.Upload(ctx, "simulate", pr)
			pr.CloseWithError(err) // unblocks the generator if the upload stopped
			posted <- err
		}()
	} else if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		outFile, w = f, f
	}
	// Writing to a file costs as much kernel time as generating the
	// records; a second goroutine does the writing so the two overlap.
	bw := newSimBlockWriter(w, 4<<20)
	var lw *bufio.Writer
	var labelFile *os.File
	if *labels != "" {
		f, err := os.Create(*labels)
		if err != nil {
			return err
		}
		defer f.Close()
		labelFile, lw = f, bufio.NewWriter(f)
	}

	prog := newSimProgress(os.Stderr, *quiet)
	for n := 0; ; n++ {
		if n&4095 == 0 {
			if err := ctx.Err(); err != nil {
				bw.Close()
				return err
			}
			if n&65535 == 0 {
				prog.update(gen.Stats())
			}
		}
		rec, ok := gen.Next()
		if !ok {
			break
		}
		if err := bw.WriteLine(rec); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
		if lw != nil {
			if l, bad := gen.Injected(); bad {
				line, _ := json.Marshal(l)
				lw.Write(line)
				lw.WriteByte('\n')
			}
		}
	}
	if err := bw.Close(); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	if up != nil {
		pw.Close()
		uerr := <-posted
		sum, cerr := up.Close(ctx)
		if !*quiet {
			fmt.Fprintf(os.Stderr, "posted to %s: %d accepted, %d duplicate, %d rejected\n", *server, sum.Accepted, sum.Duplicate, sum.Rejected)
		}
		if err := errors.Join(uerr, cerr); err != nil {
			return fmt.Errorf("posting to %s: %w", *server, err)
		}
	}
	if outFile != nil {
		if err := outFile.Close(); err != nil {
			return err
		}
	}
	if lw != nil {
		if err := lw.Flush(); err != nil {
			return fmt.Errorf("write %s: %w", *labels, err)
		}
		if err := labelFile.Close(); err != nil {
			return err
		}
	}
	prog.done(gen.Stats(), gen.Scenarios())
	return nil
}

// simBlockWriter batches lines into large blocks and writes them from a
// goroutine, so that generation and write system calls run in parallel.
// Large blocks matter: each write costs a system call and a page-cache walk.
type simBlockWriter struct {
	buf  []byte
	size int
	full chan []byte
	free chan []byte
	done chan error
	err  atomic.Pointer[error]
}

func newSimBlockWriter(w io.Writer, size int) *simBlockWriter {
	// Three buffers: one filling, up to two queued or being written; free
	// can hold all three so the writer never blocks returning one.
	bw := &simBlockWriter{size: size, full: make(chan []byte, 2), free: make(chan []byte, 3), done: make(chan error, 1)}
	bw.buf = make([]byte, 0, size+64<<10)
	for i := 0; i < 2; i++ {
		bw.free <- make([]byte, 0, size+64<<10)
	}
	go func() {
		var err error
		for b := range bw.full {
			if err == nil {
				if _, err = w.Write(b); err != nil {
					bw.err.Store(&err)
				}
			}
			bw.free <- b[:0]
		}
		bw.done <- err
	}()
	return bw
}

// WriteLine appends rec and a newline; it reports a write error of an
// earlier block as soon as it is known.
func (bw *simBlockWriter) WriteLine(rec []byte) error {
	bw.buf = append(bw.buf, rec...)
	bw.buf = append(bw.buf, '\n')
	if len(bw.buf) >= bw.size {
		bw.full <- bw.buf
		bw.buf = <-bw.free
	}
	if e := bw.err.Load(); e != nil {
		return *e
	}
	return nil
}

// Close writes what is buffered and waits for the writer.
func (bw *simBlockWriter) Close() error {
	if bw.full == nil {
		return nil
	}
	if len(bw.buf) > 0 {
		bw.full <- bw.buf
	}
	close(bw.full)
	bw.full = nil
	return <-bw.done
}

// simProgress reports on stderr: a one-line counter rewritten in place when
// stderr is a terminal, otherwise a line every few seconds (logs stay
// readable), and always a final summary.
type simProgress struct {
	w     io.Writer
	quiet bool
	tty   bool
	start time.Time
	last  time.Time
}

func newSimProgress(w *os.File, quiet bool) *simProgress {
	tty := false
	if fi, err := w.Stat(); err == nil {
		tty = fi.Mode()&os.ModeCharDevice != 0
	}
	now := time.Now()
	return &simProgress{w: w, quiet: quiet, tty: tty, start: now, last: now}
}

func (p *simProgress) update(st simulate.Stats) {
	if p.quiet || st.Records == 0 {
		return
	}
	now := time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	el := now.Sub(p.start).Seconds()
	msg := fmt.Sprintf("simulate: %d records, %s, %.0f rec/s, at %s",
		st.Records, sizeString(st.Bytes), float64(st.Records)/el, st.Last.Format("2006-01-02T15:04"))
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", msg)
	} else {
		fmt.Fprintln(p.w, msg)
	}
}

func (p *simProgress) done(st simulate.Stats, scen []simulate.ScenarioInfo) {
	if p.quiet {
		return
	}
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	el := time.Since(p.start)
	var b strings.Builder
	fmt.Fprintf(&b, "custos simulate: %d records, %s, in %s (%.0f rec/s)",
		st.Records, sizeString(st.Bytes), el.Round(time.Millisecond), float64(st.Records)/el.Seconds())
	if st.Records > 0 {
		fmt.Fprintf(&b, ", %s to %s", st.First.Format("2006-01-02T15:04:05"), st.Last.Format("2006-01-02T15:04:05"))
	}
	if st.Throttled > 0 {
		fmt.Fprintf(&b, ", %d mailbox throttlings (%d binds not logged)", st.Throttled, st.Suppressed)
	}
	if len(scen) > 0 {
		names := make([]string, 0, len(scen))
		for _, s := range scen {
			names = append(names, fmt.Sprintf("%s %d", s.Name, st.Injected[s.Name]))
		}
		sort.Strings(names)
		fmt.Fprintf(&b, "; injected: %s", strings.Join(names, ", "))
	}
	fmt.Fprintln(p.w, b.String())
}
