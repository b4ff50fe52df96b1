package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-audit/custos/client"
)

func runTenant(ctx context.Context, args []string) error {
	return tenantCmd(ctx, args, osEnv())
}

const tenantUsage = "custos tenant create --id ID [--name NAME] | custos tenant list [--format table|ndjson]"

func tenantCmd(ctx context.Context, args []string, env cliEnv) error {
	sub, args, err := subcommand(env, args, "tenant", tenantUsage)
	if err != nil {
		return err
	}
	var cf clientFlags
	switch sub {
	case "create":
		fs := newFlagSet(env, "tenant create", "custos tenant create --id ID [--name NAME]",
			"Creates a tenant (needs a global admin token). The id is lower-case letters,\ndigits and dashes, at most 63 characters.\n")
		cf.register(fs)
		id := fs.String("id", "", "tenant id (required)")
		name := fs.String("name", "", "display name (default: the id)")
		format := fs.String("format", "text", "output: text or ndjson")
		if err := parseNoArgs(fs, args); err != nil {
			return err
		}
		if *id == "" {
			return usagef("--id is required")
		}
		if err := checkFormat(*format, "text", "ndjson"); err != nil {
			return err
		}
		c, err := cf.client(env)
		if err != nil {
			return err
		}
		t, err := c.CreateTenant(ctx, *id, firstNonEmpty(*name, *id))
		if err != nil {
			return explain(err)
		}
		if *format == "ndjson" {
			return printJSONLine(env, t)
		}
		fmt.Fprintf(env.stdout, "created tenant %s (%s)\n", t.ID, t.Name)
		return nil
	case "list":
		fs := newFlagSet(env, "tenant list", "custos tenant list [--format table|ndjson]",
			"Lists the tenants the token can see.\n")
		cf.register(fs)
		format := fs.String("format", "table", "output: table or ndjson (one JSON object per line)")
		if err := parseNoArgs(fs, args); err != nil {
			return err
		}
		if err := checkFormat(*format, "table", "ndjson"); err != nil {
			return err
		}
		c, err := cf.client(env)
		if err != nil {
			return err
		}
		ts, err := c.ListTenants(ctx)
		if err != nil {
			return explain(err)
		}
		slices.SortFunc(ts, func(a, b client.Tenant) int { return strings.Compare(a.ID, b.ID) })
		if *format == "ndjson" {
			for _, t := range ts {
				if err := printJSONLine(env, t); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tCREATED")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Name, formatTime(&t.Created))
		}
		return tw.Flush()
	}
	return usagef("unknown subcommand %q\nusage: %s", sub, tenantUsage)
}

// parseNoArgs parses flags and refuses positional arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments: %s", strings.Join(pos, " "))
	}
	return nil
}

func checkFormat(f string, allowed ...string) error {
	if slices.Contains(allowed, f) {
		return nil
	}
	return usagef("--format %q: want %s", f, strings.Join(allowed, " or "))
}

func printJSONLine(env cliEnv, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(env.stdout, "%s\n", b)
	return err
}

// printJSONLines prints each item as one JSON line (the ndjson format).
func printJSONLines[T any](env cliEnv, items []T) error {
	for _, v := range items {
		if err := printJSONLine(env, v); err != nil {
			return err
		}
	}
	return nil
}

func formatTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
