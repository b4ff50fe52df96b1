package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-audit/custos/client"
)

func runIngest(ctx context.Context, args []string) error {
	return ingestCmd(ctx, args, osEnv())
}

// maxListedRejections is how many rejected records the summary names.
const maxListedRejections = 20

func ingestCmd(ctx context.Context, args []string, env cliEnv) error {
	fs := newFlagSet(env, "ingest", "custos ingest --tenant ID [flags] FILE...",
		`Sends audit records to a custos server. A FILE ('-' for standard input) is
NDJSON, a JSON array, or a Microsoft Purview audit search export (CSV with
an AuditData column), optionally gzip or zstd compressed; the layout and the
compression are recognised from the content.

Records are sent in batches, several at a time; answers that mean "try
again" (429, 503, other 5xx, broken connections) are retried with backoff.
Sending the same file again is safe: records already stored count as
duplicates. Records over 1 MiB are rejected without being sent, with the
server's message.

A summary goes to standard error, with every rejected record's FILE:LINE
(the first 20). The exit status is 1 when a batch could not be delivered,
a file could not be read to its end, or (with --strict) a record was
rejected.
`)
	var cf clientFlags
	cf.register(fs)
	tenant := fs.String("tenant", "", "tenant to ingest into (required)")
	jsonOut := fs.Bool("json", false, `print {"accepted":N,"duplicate":N,"rejected":N} as the last line of standard output`)
	strict := fs.Bool("strict", false, "fail when any record is rejected")
	batchRecords := fs.Int("batch-records", 5000, "records per request, at most")
	batchBytes := byteSize(4 << 20)
	fs.Var(&batchBytes, "batch-bytes", "record bytes per request before compression, at most (KiB, MiB suffixes accepted)")
	concurrency := fs.Int("concurrency", 4, "requests in flight")
	compress := fs.String("compress", "zstd", "request compression: zstd, gzip or none")
	attempts := fs.Int("attempts", 8, "tries per batch before giving up")
	quiet := fs.Bool("quiet", false, "no progress output (the summary is still printed)")
	files, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *tenant == "":
		return usagef("--tenant is required")
	case len(files) == 0:
		return usagef("no input: name one or more FILEs ('-' for standard input)")
	case *batchRecords <= 0 || *concurrency <= 0 || *attempts <= 0:
		return usagef("--batch-records, --concurrency and --attempts must be positive")
	}
	switch *compress {
	case "zstd", "gzip", "none":
	default:
		return usagef("--compress %q: want zstd, gzip or none", *compress)
	}
	c, err := cf.client(env)
	if err != nil {
		return err
	}
	c.Encoding, c.Attempts = *compress, *attempts

	// Check every input before sending anything, so a typo in the last
	// name does not leave a half-done run; the sizes give the progress.
	var total int64
	stdin := 0
	for _, f := range files {
		if f == "-" {
			if stdin++; stdin > 1 {
				return usagef("standard input ('-') given more than once")
			}
			total = -1
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory", f)
		}
		if total >= 0 {
			total += fi.Size()
		}
	}

	start := time.Now()
	prog := &ingestProgress{w: env.stderr, tty: env.stderrTTY, quiet: *quiet, total: total, start: start}
	up := c.NewUploader(*tenant, client.UploadOptions{
		BatchRecords:   *batchRecords,
		BatchBytes:     int(batchBytes),
		Concurrency:    *concurrency,
		ListRejections: maxListedRejections,
		OnRetry:        prog.retry,
	})
	prog.stats = up.Stats
	stopProgress := prog.run()

	var readErrs []error
	var notRead []string
	for i, f := range files {
		err := ingestFile(ctx, env, up, f, &prog.read)
		if errors.Is(err, client.ErrStopped) || ctx.Err() != nil {
			notRead = files[i+1:]
			break
		}
		if err != nil {
			readErrs = append(readErrs, err)
		}
	}
	sum, sendErr := up.Close(ctx)
	stopProgress()

	report(env.stderr, sum, time.Since(start), readErrs, notRead)
	if *jsonOut {
		fmt.Fprintf(env.stdout, "{\"accepted\":%d,\"duplicate\":%d,\"rejected\":%d}\n", sum.Accepted, sum.Duplicate, sum.Rejected)
	}
	var problems []string
	if sendErr != nil {
		problems = append(problems, explain(sendErr).Error())
	}
	if len(readErrs) > 0 {
		problems = append(problems, fmt.Sprintf("%d input(s) could not be read to the end", len(readErrs)))
	}
	if *strict && sum.Rejected > 0 {
		problems = append(problems, fmt.Sprintf("%d records rejected (--strict)", sum.Rejected))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// ingestFile uploads one input, counting the bytes read for the progress.
func ingestFile(ctx context.Context, env cliEnv, up *client.Uploader, name string, read *atomic.Int64) error {
	var r io.Reader = env.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	return up.Upload(ctx, name, &countingReader{r: r, n: read})
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// report writes the final summary.
func report(w io.Writer, sum client.Summary, elapsed time.Duration, readErrs []error, notRead []string) {
	handled := sum.Accepted + sum.Duplicate + sum.Rejected
	rate := float64(handled) / max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "custos ingest: %s, %s sent, in %s (%s rec/s): %s accepted, %s duplicate, %s rejected\n",
		records(handled), sizeString(sum.Bytes), elapsed.Round(time.Millisecond), group(int64(rate)),
		group(sum.Accepted), group(sum.Duplicate), group(sum.Rejected))
	if sum.Retries > 0 {
		fmt.Fprintf(w, "  %s requests were retried\n", group(sum.Retries))
	}
	if len(sum.Rejections) > 0 {
		fmt.Fprintln(w, "rejected records:")
		for _, r := range sum.Rejections {
			var extra []string
			if r.ID != "" {
				extra = append(extra, "Id "+r.ID)
			}
			if r.Client {
				extra = append(extra, "not sent")
			}
			line := fmt.Sprintf("  %s: %s", r.Location, r.Error)
			if len(extra) > 0 {
				line += " (" + strings.Join(extra, ", ") + ")"
			}
			fmt.Fprintln(w, line)
		}
		if more := sum.Rejected - int64(len(sum.Rejections)); more > 0 {
			fmt.Fprintf(w, "  … and %s more\n", group(more))
		}
	}
	if len(sum.Failures) > 0 {
		fmt.Fprintln(w, "not delivered:")
		for _, f := range sum.Failures {
			fmt.Fprintf(w, "  %s (%s): %v\n", client.FormatRanges(f.Ranges), records(int64(f.Records)), f.Err)
		}
	}
	for _, err := range readErrs {
		fmt.Fprintf(w, "could not read: %v; the rest of that input was not sent\n", err)
	}
	if sum.StoppedAt != nil || len(notRead) > 0 {
		var parts []string
		if sum.StoppedAt != nil {
			parts = append(parts, fmt.Sprintf("%s from line %d on", client.Location{File: sum.StoppedAt.File}, sum.StoppedAt.Line))
		}
		for _, f := range notRead {
			parts = append(parts, client.Location{File: f}.String())
		}
		fmt.Fprintf(w, "not read: %s\n", strings.Join(parts, "; "))
	}
	if sum.Records > 0 && (len(sum.Failures) > 0 || sum.StoppedAt != nil || len(readErrs) > 0) {
		fmt.Fprintln(w, "Sending the same inputs again is safe: records the server already has count as duplicates.")
	}
}

// ingestProgress shows how an upload is going on standard error: a bar
// redrawn in place on a terminal, otherwise a line every few seconds so
// logs stay readable.
type ingestProgress struct {
	w     io.Writer
	tty   bool
	quiet bool
	total int64 // bytes of all inputs; negative when unknown (stdin)
	start time.Time
	stats func() client.Stats
	read  atomic.Int64 // input bytes read so far (compressed, as in the files)

	mu        sync.Mutex
	lastRetry string
}

// retry notes a retried request (called from the sending goroutines).
func (p *ingestProgress) retry(err error, wait time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastRetry = fmt.Sprintf("retrying in %s: %v", wait.Round(time.Millisecond), err)
	if !p.tty && !p.quiet {
		fmt.Fprintf(p.w, "custos ingest: %s\n", p.lastRetry)
	}
}

// run starts drawing and returns the function that stops it.
func (p *ingestProgress) run() (stop func()) {
	if p.quiet {
		return func() {}
	}
	every := 5 * time.Second
	if p.tty {
		every = 250 * time.Millisecond
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		if p.tty {
			p.mu.Lock()
			fmt.Fprint(p.w, "\r\033[K")
			p.mu.Unlock()
		}
	}
}

func (p *ingestProgress) draw() {
	st := p.stats()
	el := time.Since(p.start).Seconds()
	line := fmt.Sprintf("%s records  %s  %s rec/s", group(st.Records), sizeString(st.Bytes), group(int64(float64(st.Records)/el)))
	if st.Retries > 0 {
		line += fmt.Sprintf("  %s retries", group(st.Retries))
	}
	if p.total > 0 {
		pct := min(100, float64(p.read.Load())*100/float64(p.total))
		if p.tty {
			const width = 24
			n := int(pct / 100 * width)
			line = fmt.Sprintf("[%s%s] %3.0f%%  %s", strings.Repeat("=", n), strings.Repeat(" ", width-n), pct, line)
		} else {
			line += fmt.Sprintf("  %.0f%% read", pct)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintf(p.w, "custos ingest: %s\n", line)
	}
}

func records(n int64) string {
	if n == 1 {
		return "1 record"
	}
	return group(n) + " records"
}

// group writes n with thousands separators: 1234567 → 1,234,567.
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
