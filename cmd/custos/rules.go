package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/client"
	"github.com/custos-audit/custos/rules"
)

func runRules(ctx context.Context, args []string) error {
	return rulesCmd(ctx, args, osEnv())
}

const rulesUsage = "custos rules list [--rules PATH | --tenant ID] | custos rules test [--rules PATH] (FILE... | --tenant ID [--from 1d] [--to T]) |\n       custos rules add --tenant ID FILE... | custos rules remove --tenant ID --id RULE"

func rulesCmd(ctx context.Context, args []string, env cliEnv) error {
	sub, args, err := subcommand(env, args, "rules", rulesUsage)
	if err != nil {
		return err
	}
	var paths listFlag
	const rulesHelp = "Sigma rule file or directory (repeatable; default: the bundled pack)"
	switch sub {
	case "list":
		fs := newFlagSet(env, "rules list", "custos rules list [--rules PATH | --tenant ID] [--format table|ndjson]",
			"Lists detection rules: the bundled pack, the rules at the paths given, or\n"+
				"(with --tenant) every rule a server evaluates on the tenant's records.\n")
		fs.Var(&paths, "rules", rulesHelp)
		var tf tenantFlags
		tf.register(fs)
		format := fs.String("format", "table", "output: table or ndjson")
		if err := parseNoArgs(fs, args); err != nil {
			return err
		}
		if err := checkFormat(*format, "table", "ndjson"); err != nil {
			return err
		}
		if tf.tenant != "" {
			if len(paths) > 0 {
				return usagef("give --rules or --tenant, not both")
			}
			return listServerRules(ctx, env, tf, *format)
		}
		rs, err := loadRules(paths)
		if err != nil {
			return err
		}
		if *format == "ndjson" {
			for _, r := range rs {
				if err := printJSONLine(env, ruleSummary(r)); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LEVEL\tTITLE\tSOURCE")
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Level, r.Title, r.Source)
		}
		return tw.Flush()

	case "test":
		fs := newFlagSet(env, "rules test", "custos rules test [--rules PATH] (FILE... | --tenant ID [--from 1d] [--to T]) [--format text|ndjson]",
			"Runs detection rules over records and shows what matches: records in files\n"+
				"(NDJSON, JSON arrays or Purview CSV exports, optionally compressed; - for\n"+
				"stdin), or a tenant's stored records read through the search API.\n")
		fs.Var(&paths, "rules", rulesHelp)
		var cf clientFlags
		cf.register(fs)
		tenant := fs.String("tenant", "", "read this tenant's stored records instead of files")
		from := fs.String("from", "1d", "with --tenant: oldest CreationTime (RFC 3339, date, or back from now like 30d)")
		to := fs.String("to", "", "with --tenant: newest CreationTime, exclusive (default now)")
		format := fs.String("format", "text", "output: text (a table and a summary) or ndjson (one match per line)")
		files, err := parseArgs(fs, args)
		if err != nil {
			return err
		}
		if err := checkFormat(*format, "text", "ndjson"); err != nil {
			return err
		}
		if (*tenant == "") == (len(files) == 0) {
			return usagef("give record files or --tenant (one of them)\nusage: %s", rulesUsage)
		}
		rs, err := loadRules(paths)
		if err != nil {
			return err
		}
		t := &ruleTester{env: env, rules: rs, ndjson: *format == "ndjson", counts: map[*rules.Rule]int{}}
		if t.table = tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0); !t.ndjson {
			fmt.Fprintln(t.table, "LEVEL\tRULE\tCREATED\tUSER\tOPERATION\tID")
		}
		if *tenant != "" {
			c, err := cf.client(env)
			if err != nil {
				return err
			}
			params := url.Values{"from": {*from}}
			if *to != "" {
				params.Set("to", *to)
			}
			page, err := c.Search(ctx, *tenant, params)
			if err != nil {
				return explain(err)
			}
			err = t.read(page.Body, "tenant "+*tenant)
			page.Body.Close()
			if err != nil {
				return err
			}
		}
		for _, f := range files {
			if err := t.readFile(f); err != nil {
				return err
			}
		}
		return t.finish()

	case "add":
		fs := newFlagSet(env, "rules add", "custos rules add --tenant ID FILE...",
			"Adds Sigma rules (YAML files, one rule each) to a tenant, or replaces the\n"+
				"tenant's rules with the same id. They run on the tenant's records from the\n"+
				"next one committed. Try them first with custos rules test.\n")
		var tf tenantFlags
		tf.register(fs)
		files, err := parseArgs(fs, args)
		if err != nil {
			return err
		}
		if len(files) == 0 {
			return usagef("give one or more rule files")
		}
		c, err := tf.connect(env)
		if err != nil {
			return err
		}
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			// Parsed here first, so a mistake is reported with its file name.
			r, err := rules.Parse(src, f)
			if err != nil {
				return err
			}
			if r.ID == "" {
				return fmt.Errorf("%s: the rule has no id; give it one (a UUID) so it can be replaced and removed", f)
			}
			got, err := c.PutRule(ctx, tf.tenant, r.ID, src)
			if err != nil {
				return fmt.Errorf("%s: %w", f, explain(err))
			}
			fmt.Fprintf(env.stdout, "%s  %s  %s\n", got.ID, got.Level, got.Title)
		}
		return nil

	case "remove":
		fs := newFlagSet(env, "rules remove", "custos rules remove --tenant ID --id RULE",
			"Removes one of a tenant's own rules (server rules are removed from --rules).\n")
		var tf tenantFlags
		tf.register(fs)
		id := fs.String("id", "", "rule id (required)")
		c, err := tf.connectID(env, fs, args, id)
		if err != nil {
			return err
		}
		if err := c.DeleteRule(ctx, tf.tenant, *id); err != nil {
			return explain(err)
		}
		fmt.Fprintf(env.stdout, "rule %s removed\n", *id)
		return nil
	}
	return usagef("unknown subcommand %q\nusage: %s", sub, rulesUsage)
}

func listServerRules(ctx context.Context, env cliEnv, tf tenantFlags, format string) error {
	c, err := tf.connect(env)
	if err != nil {
		return err
	}
	list, err := c.Rules(ctx, tf.tenant)
	if err != nil {
		return explain(err)
	}
	if format == "ndjson" {
		return printJSONLines(env, list)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LEVEL\tTITLE\tSCOPE\tID")
	for _, r := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Level, r.Title, r.Scope, r.ID)
	}
	return tw.Flush()
}

// loadRules loads the rules at paths (files or directories), or the
// bundled pack when there are none.
func loadRules(paths []string) ([]*rules.Rule, error) {
	if len(paths) == 0 {
		return rules.Bundled()
	}
	var out []*rules.Rule
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			rs, err := rules.LoadDir(p)
			if err != nil {
				return nil, err
			}
			out = append(out, rs...)
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		r, err := rules.Parse(b, p)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, errors.New("no rules found at the paths given")
	}
	return out, nil
}

func ruleSummary(r *rules.Rule) map[string]any {
	return map[string]any{"id": r.ID, "title": r.Title, "level": r.Level, "source": r.Source,
		"tags": r.Tags, "logsource": r.LogSource}
}

// ruleTester runs rules over records and reports matches.
type ruleTester struct {
	env     cliEnv
	rules   []*rules.Rule
	ndjson  bool
	table   *tabwriter.Writer
	parser  audit.Parser
	records int
	invalid int
	matches int
	counts  map[*rules.Rule]int
}

func (t *ruleTester) readFile(name string) error {
	if name == "-" {
		return t.read(t.env.stdin, "stdin")
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return t.read(f, filepath.Base(name))
}

func (t *ruleTester) read(r io.Reader, name string) error {
	rr, err := client.NewRecordReader(r)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer rr.Close()
	for {
		in, err := rr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if in.Problem != "" {
			t.invalid++
			continue
		}
		rec, err := t.parser.Parse(bytes.Clone(in.Data))
		if err != nil {
			t.invalid++
			continue
		}
		t.records++
		for _, m := range rules.Matching(&rec, t.rules) {
			t.matches++
			t.counts[m]++
			if err := t.report(m, &rec); err != nil {
				return err
			}
		}
	}
}

func (t *ruleTester) report(m *rules.Rule, r *audit.Record) error {
	if t.ndjson {
		return printJSONLine(t.env, map[string]any{
			"rule": m.Title, "ruleId": m.ID, "level": m.Level, "source": m.Source,
			"record": map[string]any{"id": r.ID, "creationTime": r.CreationTime.Format(time.RFC3339), "userId": r.UserID,
				"operation": r.Operation, "workload": r.Workload},
		})
	}
	_, err := fmt.Fprintf(t.table, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Level, m.Title,
		r.CreationTime.Format("2006-01-02 15:04:05"), r.UserID, r.Operation, r.ID)
	return err
}

func (t *ruleTester) finish() error {
	if t.ndjson {
		fmt.Fprintf(t.env.stderr, "%d records, %d matches\n", t.records, t.matches)
		return nil
	}
	if err := t.table.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(t.env.stdout, "\n%d records read", t.records)
	if t.invalid > 0 {
		fmt.Fprintf(t.env.stdout, " (%d not valid audit records, skipped)", t.invalid)
	}
	fmt.Fprintf(t.env.stdout, ", %d matches\n", t.matches)
	sorted := append([]*rules.Rule(nil), t.rules...)
	sort.SliceStable(sorted, func(i, j int) bool { return t.counts[sorted[i]] > t.counts[sorted[j]] })
	for _, r := range sorted {
		fmt.Fprintf(t.env.stdout, "%6d  %s\n", t.counts[r], r.Title)
	}
	return nil
}
