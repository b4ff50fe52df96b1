package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-audit/custos/client"
)

func runToken(ctx context.Context, args []string) error {
	return tokenCmd(ctx, args, osEnv())
}

const tokenUsage = `custos token create [--tenant ID] --role ingest|read|admin [--name N] [--expires TIME]
       custos token list [--tenant ID] [--format table|ndjson]
       custos token revoke ID`

func tokenCmd(ctx context.Context, args []string, env cliEnv) error {
	sub, args, err := subcommand(env, args, "token", tokenUsage)
	if err != nil {
		return err
	}
	var cf clientFlags
	switch sub {
	case "create":
		fs := newFlagSet(env, "token create", "custos token create [--tenant ID] --role ingest|read|admin [--name N] [--expires TIME]",
			`Creates an API token and prints it alone on the last line of standard
output; its id, scope and expiry go to standard error. The token is shown
only this once. Without --tenant the token is global (only a global admin
token can create one).
`)
		cf.register(fs)
		tenant := fs.String("tenant", "", "tenant the token is scoped to (default: a global token)")
		role := fs.String("role", "", "ingest, read or admin (required)")
		name := fs.String("name", "", "what the token is for; ingested records keep it as their source")
		expires := fs.String("expires", "", "expiry: RFC 3339 time, or a duration from now like 720h or 90d (default: never)")
		if err := parseNoArgs(fs, args); err != nil {
			return err
		}
		switch *role {
		case "ingest", "read", "admin":
		case "":
			return usagef("--role is required: ingest, read or admin")
		default:
			return usagef("--role %q: want ingest, read or admin", *role)
		}
		var exp time.Time
		if *expires != "" {
			if exp, err = parseExpiry(*expires, time.Now()); err != nil {
				return usagef("--expires: %v", err)
			}
		}
		c, err := cf.client(env)
		if err != nil {
			return err
		}
		t, err := c.CreateToken(ctx, client.TokenRequest{Tenant: *tenant, Role: *role, Name: *name, Expires: exp})
		if err != nil {
			return explain(err)
		}
		fmt.Fprintf(env.stderr, "created %s token %s for %s, %s; it is shown only now:\n",
			t.Role, t.ID, scope(t.Tenant), expiry(t.Expires))
		_, err = fmt.Fprintln(env.stdout, t.Secret)
		return err
	case "list":
		fs := newFlagSet(env, "token list", "custos token list [--tenant ID] [--format table|ndjson]",
			"Lists API tokens (never their secrets).\n")
		cf.register(fs)
		tenant := fs.String("tenant", "", "only the tokens of this tenant")
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
		ts, err := c.ListTokens(ctx, *tenant)
		if err != nil {
			return explain(err)
		}
		slices.SortFunc(ts, func(a, b client.Token) int {
			if c := a.Created.Compare(b.Created); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		if *format == "ndjson" {
			for _, t := range ts {
				if err := printJSONLine(env, t); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTENANT\tROLE\tNAME\tCREATED\tEXPIRES\tREVOKED")
		for _, t := range ts {
			exp := "never"
			if t.Expires != nil {
				exp = formatTime(t.Expires)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, firstNonEmpty(t.Tenant, "(global)"), t.Role,
				firstNonEmpty(t.Name, "-"), formatTime(&t.Created), exp, formatTime(t.Revoked))
		}
		return tw.Flush()
	case "revoke":
		fs := newFlagSet(env, "token revoke", "custos token revoke ID",
			"Revokes a token by its id (the part after custos_ in the token, as listed).\n")
		cf.register(fs)
		pos, err := parseArgs(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usagef("want exactly one token id\nusage: custos token revoke ID")
		}
		c, err := cf.client(env)
		if err != nil {
			return err
		}
		if err := c.RevokeToken(ctx, pos[0]); err != nil {
			return explain(err)
		}
		fmt.Fprintf(env.stdout, "revoked token %s\n", pos[0])
		return nil
	}
	return usagef("unknown subcommand %q\nusage: %s", sub, tokenUsage)
}

// parseExpiry reads an RFC 3339 time or a positive duration from now; Go
// durations stop at hours, so a trailing d (days) is accepted too.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		if !t.After(now) {
			return time.Time{}, fmt.Errorf("%s is in the past", s)
		}
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if days, ok := strings.CutSuffix(s, "d"); ok && err != nil {
		n, aerr := strconv.Atoi(days)
		d, err = time.Duration(n)*24*time.Hour, aerr
	}
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2027-01-01T00:00:00Z) or a positive duration (720h, 90d)", s)
	}
	return now.Add(d).UTC().Truncate(time.Second), nil
}

func scope(tenant string) string {
	if tenant == "" {
		return "all tenants (global)"
	}
	return "tenant " + tenant
}

func expiry(t *time.Time) string {
	if t == nil {
		return "never expires"
	}
	return "expires " + formatTime(t)
}
