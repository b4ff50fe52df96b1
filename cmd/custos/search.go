package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custos-audit/custos/audit"
)

func runSearch(ctx context.Context, args []string) error {
	return searchCmd(ctx, args, osEnv())
}

// listFlag is a flag that may be repeated and takes comma-separated values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

const searchSynopsis = "custos search --tenant ID [--from 1d] [--to T] [filters] [--format table|csv|ndjson] [--count] [--limit N]"

func searchCmd(ctx context.Context, args []string, env cliEnv) error {
	fs := newFlagSet(env, "search", searchSynopsis,
		"Searches a tenant's audit records, newest first, with no cap on the number of\n"+
			"results. Filters of one kind are alternatives; different kinds must all match.\n"+
			"--format ndjson writes exactly the matching raw records, one per line; csv\n"+
			"writes the Purview export layout. Times: RFC 3339, YYYY-MM-DD, or back from\n"+
			"now (30d, 12h).\n")
	var cf clientFlags
	cf.register(fs)
	var ops, users, ips, apps, types, workloads, objects, sessions, messages, statuses listFlag
	tenant := fs.String("tenant", "", "tenant id (required)")
	from := fs.String("from", "1d", "oldest CreationTime")
	to := fs.String("to", "", "newest CreationTime, exclusive (default now)")
	fs.Var(&ops, "operation", "operation (repeatable, or comma-separated)")
	fs.Var(&users, "user", "user id")
	fs.Var(&ips, "ip", "client address or CIDR range")
	fs.Var(&apps, "app-id", "AppId or ClientAppId")
	fs.Var(&types, "record-type", "record type number or name")
	fs.Var(&workloads, "workload", "workload (Exchange, SharePoint, AzureActiveDirectory, ...)")
	fs.Var(&objects, "object-id", "ObjectId; * is a wildcard")
	fs.Var(&sessions, "session-id", "session id")
	fs.Var(&messages, "message-id", "InternetMessageId")
	fs.Var(&statuses, "result-status", "result status")
	keyword := fs.String("keyword", "", "text anywhere in the record, any case")
	format := fs.String("format", "table", "output: table, csv or ndjson")
	count := fs.Bool("count", false, "print only the number of matches")
	limit := fs.Int("limit", 0, "stop after this many records (default: all)")
	quiet := fs.Bool("quiet", false, "no progress output")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *tenant == "" {
		return usagef("--tenant is required")
	}
	if err := checkFormat(*format, "table", "csv", "ndjson"); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("--limit: want a positive number")
	}
	c, err := cf.client(env)
	if err != nil {
		return err
	}
	p := url.Values{"from": {*from}}
	set := func(name string, vals []string) {
		if len(vals) > 0 {
			p[name] = vals
		}
	}
	set("to", nonEmpty(*to))
	set("operation", ops)
	set("user", users)
	set("ip", ips)
	set("appId", apps)
	set("recordType", types)
	set("workload", workloads)
	set("objectId", objects)
	set("sessionId", sessions)
	set("messageId", messages)
	set("resultStatus", statuses)
	set("keyword", nonEmpty(*keyword))
	if *count {
		p.Set("count", "true")
	} else if *format == "csv" {
		p.Set("format", "csv")
	}
	page, err := c.Search(ctx, *tenant, p)
	if err != nil {
		return explain(err)
	}
	defer page.Body.Close()
	if *count {
		var v struct{ Count int64 }
		if err := json.NewDecoder(page.Body).Decode(&v); err != nil {
			return fmt.Errorf("count: %w", err)
		}
		fmt.Fprintln(env.stdout, v.Count)
		return nil
	}
	out := bufio.NewWriterSize(env.stdout, 64<<10)
	prog := newProgress(env, *quiet)
	var n int
	switch *format {
	case "ndjson":
		n, err = copyLines(page.Body, out, *limit, prog, func(w *bufio.Writer, line []byte) error {
			_, err := w.Write(append(line, '\n'))
			return err
		})
	case "table":
		fmt.Fprintf(out, "%-20s  %-32s  %-26s  %-15s  %s\n", "TIME (UTC)", "USER", "OPERATION", "CLIENT IP", "OBJECT OR MAILBOX")
		var parser audit.Parser
		n, err = copyLines(page.Body, out, *limit, prog, func(w *bufio.Writer, line []byte) error {
			r, err := parser.ParseShared(line)
			if err != nil { // the server only returns records it parsed; be lenient anyway
				_, err = fmt.Fprintf(w, "(unreadable record: %v)\n", err)
				return err
			}
			_, err = fmt.Fprintf(w, "%-20s  %-32s  %-26s  %-15s  %s\n", r.CreationTime.UTC().Format("2006-01-02 15:04:05"),
				clip(r.UserID, 32), clip(r.Operation, 26), clip(r.ClientIP, 15), clip(firstNonEmpty(r.ObjectID, r.MailboxOwnerUPN), 60))
			return err
		})
	case "csv":
		n, err = copyCSV(page.Body, out, *limit, prog)
	}
	prog.done(n)
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("search: %w (after %d records)", err, n)
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// clip shortens s to at most n runes for the table.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// copyLines hands each NDJSON line of r to emit, up to limit lines (0: all).
func copyLines(r io.Reader, w *bufio.Writer, limit int, prog *progress, emit func(*bufio.Writer, []byte) error) (int, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	n := 0
	for limit == 0 || n < limit {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		} else if len(line) > 0 && err == io.EOF {
			return n, errors.New("the answer ended in the middle of a record")
		}
		if len(line) > 0 {
			if err := emit(w, line); err != nil {
				return n, err
			}
			n++
			prog.tick(n)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// copyCSV copies the server's CSV export, header included, up to limit
// records. Go's CSV writer re-encodes what its reader parsed identically.
func copyCSV(r io.Reader, w *bufio.Writer, limit int, prog *progress) (int, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<20))
	cr.FieldsPerRecord = -1
	cw := csv.NewWriter(w)
	defer cw.Flush()
	n := -1 // the header is not a record
	for limit == 0 || n < limit {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return max(n, 0), err
		}
		if err := cw.Write(rec); err != nil {
			return max(n, 0), err
		}
		n++
		prog.tick(n)
	}
	cw.Flush()
	return max(n, 0), cw.Error()
}

// progress draws a record count on a terminal's stderr while a search runs.
type progress struct {
	env   cliEnv
	on    bool
	start time.Time
	last  time.Time
}

func newProgress(env cliEnv, quiet bool) *progress {
	now := time.Now()
	return &progress{env: env, on: env.stderrTTY && !quiet, start: now, last: now}
}

func (p *progress) tick(n int) {
	if !p.on || n%1000 != 0 {
		return
	}
	if now := time.Now(); now.Sub(p.last) >= time.Second {
		p.last = now
		fmt.Fprintf(p.env.stderr, "\r%d records, %.0f/s   ", n, float64(n)/now.Sub(p.start).Seconds())
	}
}

func (p *progress) done(n int) {
	if p.on && time.Since(p.start) >= time.Second {
		fmt.Fprintf(p.env.stderr, "\r%d records in %s   \n", n, time.Since(p.start).Round(time.Millisecond))
	}
}
