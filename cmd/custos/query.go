package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-audit/custos/client"
)

func runQuery(ctx context.Context, args []string) error {
	return queryCmd(ctx, args, osEnv())
}

const queryUsage = "custos query create|list|show|records|cancel|delete --tenant ID [flags]"

func queryCmd(ctx context.Context, args []string, env cliEnv) error {
	sub, args, err := subcommand(env, args, "query", queryUsage)
	if err != nil {
		return err
	}
	var tf tenantFlags
	common := tf.register
	connect := func(fs *flag.FlagSet, args []string, wantID bool) (*client.Client, string, error) {
		pos, err := parseArgs(fs, args)
		if err != nil {
			return nil, "", err
		}
		if tf.tenant == "" {
			return nil, "", usagef("--tenant is required")
		}
		if wantID != (len(pos) == 1) || len(pos) > 1 {
			if wantID {
				return nil, "", usagef("want one query id\nusage: custos query %s --tenant ID QUERY-ID", sub)
			}
			return nil, "", usagef("unexpected arguments: %s", strings.Join(pos, " "))
		}
		c, err := tf.client(env)
		id := ""
		if wantID {
			id = pos[0]
		}
		return c, id, err
	}
	switch sub {
	case "create":
		fs := newFlagSet(env, "query create", "custos query create --tenant ID --from T [--to T] [filters] [--name N] [--wait]",
			"Starts an asynchronous query over a tenant's records, shaped like Microsoft\n"+
				"Graph's auditLogQuery. Its records are read with 'custos query records' once\n"+
				"it has succeeded; with --wait this command waits for that and prints its id.\n")
		common(fs)
		name := fs.String("name", "", "display name")
		from := fs.String("from", "", "filterStartDateTime: RFC 3339, a date, or back from now like 30d (required)")
		to := fs.String("to", "", "filterEndDateTime (default now)")
		keyword := fs.String("keyword", "", "keywordFilter")
		var types, services, ops, users, ips, objects listFlag
		fs.Var(&types, "record-type", "recordTypeFilters (repeatable, or comma-separated)")
		fs.Var(&services, "workload", "serviceFilters")
		fs.Var(&ops, "operation", "operationFilters")
		fs.Var(&users, "user", "userPrincipalNameFilters")
		fs.Var(&ips, "ip", "ipAddressFilters: addresses or CIDR ranges")
		fs.Var(&objects, "object-id", "objectIdFilters")
		wait := fs.Bool("wait", false, "wait until the query has finished")
		format := fs.String("format", "text", "output: text or ndjson")
		c, _, err := connect(fs, args, false)
		if err != nil {
			return err
		}
		if err := checkFormat(*format, "text", "ndjson"); err != nil {
			return err
		}
		if *from == "" {
			return usagef("--from is required")
		}
		q := client.Query{DisplayName: *name, Start: *from, End: *to, RecordTypes: types, Keyword: *keyword, Services: services,
			Operations: ops, Users: users, IPs: ips, ObjectIDs: objects}
		q, err = c.CreateQuery(ctx, tf.tenant, q)
		if err != nil {
			return explain(err)
		}
		for *wait && (q.Status == "notStarted" || q.Status == "running") {
			if env.stderrTTY {
				fmt.Fprintf(env.stderr, "\rquery %s: %s, %d records so far   ", q.ID, q.Status, q.Records)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
			if q, err = c.GetQuery(ctx, tf.tenant, q.ID); err != nil {
				return explain(err)
			}
		}
		if *wait && env.stderrTTY {
			fmt.Fprintln(env.stderr)
		}
		if *format == "ndjson" {
			return printJSONLine(env, q)
		}
		fmt.Fprintf(env.stdout, "%s\t%s\t%d records\n", q.ID, q.Status, q.Records)
		if q.Status == "failed" {
			return fmt.Errorf("query failed: %s", q.Error)
		}
		return nil

	case "list", "show":
		synopsis := "custos query list --tenant ID [--format table|ndjson]"
		if sub == "show" {
			synopsis = "custos query show --tenant ID QUERY-ID [--format table|ndjson]"
		}
		fs := newFlagSet(env, "query "+sub, synopsis, "Shows query jobs and their status.\n")
		common(fs)
		format := fs.String("format", "table", "output: table or ndjson")
		c, id, err := connect(fs, args, sub == "show")
		if err != nil {
			return err
		}
		if err := checkFormat(*format, "table", "ndjson"); err != nil {
			return err
		}
		var qs []client.Query
		if sub == "show" {
			q, err := c.GetQuery(ctx, tf.tenant, id)
			if err != nil {
				return explain(err)
			}
			qs = []client.Query{q}
		} else if qs, err = c.Queries(ctx, tf.tenant); err != nil {
			return explain(err)
		}
		if *format == "ndjson" {
			return printJSONLines(env, qs)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tRECORDS\tFROM\tTO\tCREATED")
		for _, q := range qs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", q.ID, firstNonEmpty(q.DisplayName, "-"), q.Status, q.Records,
				q.Start, firstNonEmpty(q.End, "-"), formatTime(q.Created))
		}
		return tw.Flush()

	case "records":
		fs := newFlagSet(env, "query records", "custos query records --tenant ID QUERY-ID [--format ndjson|graph]",
			"Writes a succeeded query's records: the raw records, one per line (ndjson),\n"+
				"or Graph's auditLogRecord objects, one per line (graph).\n")
		common(fs)
		format := fs.String("format", "ndjson", "output: ndjson or graph")
		page := fs.Int("page-size", 1000, "records per request (1 to 10000)")
		c, id, err := connect(fs, args, true)
		if err != nil {
			return err
		}
		if err := checkFormat(*format, "ndjson", "graph"); err != nil {
			return err
		}
		n := 0
		err = c.QueryRecords(ctx, tf.tenant, id, *page, func(recs []client.QueryRecord) error {
			for _, r := range recs {
				var err error
				if *format == "graph" {
					err = printJSONLine(env, r)
				} else {
					_, err = fmt.Fprintf(env.stdout, "%s\n", r.AuditData)
				}
				if err != nil {
					return err
				}
			}
			n += len(recs)
			if env.stderrTTY {
				fmt.Fprintf(env.stderr, "\r%d records", n)
			}
			return nil
		})
		if env.stderrTTY {
			fmt.Fprintln(env.stderr)
		}
		return explain(err)

	case "cancel", "delete":
		fs := newFlagSet(env, "query "+sub, "custos query "+sub+" --tenant ID QUERY-ID", "Cancels an unfinished query, or deletes a query and its results.\n")
		common(fs)
		c, id, err := connect(fs, args, true)
		if err != nil {
			return err
		}
		if sub == "cancel" {
			if _, err := c.CancelQuery(ctx, tf.tenant, id); err != nil {
				return explain(err)
			}
		} else if err := c.DeleteQuery(ctx, tf.tenant, id); err != nil {
			return explain(err)
		}
		fmt.Fprintf(env.stdout, "%s query %s\n", map[string]string{"cancel": "cancelled", "delete": "deleted"}[sub], id)
		return nil
	}
	return usagef("unknown subcommand %q\nusage: %s", sub, queryUsage)
}
