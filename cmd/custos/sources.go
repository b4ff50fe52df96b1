package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"
)

func runSources(ctx context.Context, args []string) error { return sourcesCmd(ctx, args, osEnv()) }

const sourcesUsage = "custos sources list|show|coverage|add|remove|config --tenant ID [flags]"

func sourcesCmd(ctx context.Context, args []string, env cliEnv) error {
	sub, args, err := subcommand(env, args, "sources", sourcesUsage)
	if err != nil {
		return err
	}
	if handled, err := sourcesConfigCmd(ctx, sub, args, env); handled {
		return err
	}
	var tf tenantFlags
	switch sub {
	case "list":
		fs := newFlagSet(env, "sources list", "custos sources list --tenant ID [--format table|ndjson]",
			"Lists everything that delivers records to the tenant (forwarders, collectors,\n"+
				"ingest tokens) with its health: ok, learning, silent, no-records (heartbeats\n"+
				"without records), low-volume or gap.\n")
		tf.register(fs)
		format := fs.String("format", "table", "output: table or ndjson")
		if err := parseNoArgs(fs, args); err != nil {
			return err
		}
		if err := checkFormat(*format, "table", "ndjson"); err != nil {
			return err
		}
		c, err := tf.connect(env)
		if err != nil {
			return err
		}
		list, err := c.Sources(ctx, tf.tenant)
		if err != nil {
			return explain(err)
		}
		if *format == "ndjson" {
			return printJSONLines(env, list)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKIND\tHEALTH\tLAST RECORD\tLAST HEARTBEAT\tLAST HOUR\tEXPECTED\tRECORDS\tREASON")
		for _, s := range list {
			exp := "-"
			if s.Expected >= 0 {
				exp = fmt.Sprintf("%.0f", s.Expected)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", s.Name, s.Kind, s.Health, ago(s.LastRecord), ago(s.LastHeartbeat),
				s.LastHour, exp, s.Records, s.Reason)
		}
		return tw.Flush()

	case "show":
		fs := newFlagSet(env, "sources show", "custos sources show --tenant ID NAME",
			"Shows one source as JSON: health, counters of its latest heartbeat, sequence\n"+
				"gaps and upstream windows.\n")
		tf.register(fs)
		if err := fs.Parse(args); err != nil {
			return usageError{err.Error()}
		}
		if fs.NArg() != 1 {
			return usagef("want one source name")
		}
		c, err := tf.connect(env)
		if err != nil {
			return err
		}
		st, err := c.Source(ctx, tf.tenant, fs.Arg(0))
		if err != nil {
			return explain(err)
		}
		return printJSONLines(env, []any{st})

	case "coverage":
		fs := newFlagSet(env, "sources coverage", "custos sources coverage --tenant ID --source NAME [--from 2d] [--to T] [--format table|ndjson]",
			"Reports, per hour, the records the source was expected to deliver (learned from\n"+
				"the same hour of past weeks, or the day before), the records stored, and a\n"+
				"status: complete, partial, missing, late-filled (complete only thanks to\n"+
				"records that came late), pending (not due yet) or unknown (nothing learned).\n")
		tf.register(fs)
		name := fs.String("source", "", "the source's name (required)")
		from := fs.String("from", "1d", "first hour: RFC 3339, a date, or back from now like 7d")
		to := fs.String("to", "", "end (default now)")
		format := fs.String("format", "table", "output: table or ndjson")
		if err := parseNoArgs(fs, args); err != nil {
			return err
		}
		if *name == "" {
			return usagef("--source is required")
		}
		if err := checkFormat(*format, "table", "ndjson"); err != nil {
			return err
		}
		c, err := tf.connect(env)
		if err != nil {
			return err
		}
		cov, err := c.Coverage(ctx, tf.tenant, *name, *from, *to)
		if err != nil {
			return explain(err)
		}
		if *format == "ndjson" {
			return printJSONLines(env, cov.Hours)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HOUR\tEXPECTED\tOBSERVED\tLATE\tSTATUS")
		short := map[string]int{}
		for _, h := range cov.Hours {
			exp := "-"
			if h.Expected >= 0 {
				exp = fmt.Sprintf("%.0f", h.Expected)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", h.Hour.Format("2006-01-02 15:04Z"), exp, h.Observed, h.Late, h.Status)
			short[h.Status]++
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "%d hours: %d complete, %d late-filled, %d partial, %d missing, %d pending, %d unknown\n",
			len(cov.Hours), short["complete"], short["late-filled"], short["partial"], short["missing"], short["pending"], short["unknown"])
		return nil
	}
	return usagef("unknown subcommand %q\nusage: %s", sub, sourcesUsage)
}

// ago says how long ago t was, for tables.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
