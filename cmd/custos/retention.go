package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/custos-audit/custos/client"
	"github.com/custos-audit/custos/retention"
)

func runRetention(ctx context.Context, args []string) error {
	return retentionCmd(ctx, args, osEnv())
}

const retentionUsage = "custos retention list|create|update|delete|hold|enforce|report --tenant ID [flags]"

// policyFlags are the flags that describe a policy, for create and update.
type policyFlags struct {
	name, description, duration string
	priority                    int
	types, ops, users           listFlag
}

func (pf *policyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&pf.name, "name", "", "policy name (required)")
	fs.StringVar(&pf.description, "description", "", "what the policy is for")
	fs.StringVar(&pf.duration, "duration", "", "how long matching records are kept: 7d, 1mo, 3mo, 6mo, 9mo, 12mo, 3y, 5y, 7y, 10y\n(or Purview's names: SevenDays, OneMonth, ... TenYears)")
	fs.IntVar(&pf.priority, "priority", 0, "1 to 10000; where policies overlap, the lowest number wins")
	fs.Var(&pf.types, "record-type", "record type name or number (repeatable, or comma-separated)")
	fs.Var(&pf.ops, "operation", "operation; only with exactly one --record-type")
	fs.Var(&pf.users, "user", "user id")
}

func retentionCmd(ctx context.Context, args []string, env cliEnv) error {
	sub, args, err := subcommand(env, args, "retention", retentionUsage)
	if err != nil {
		return err
	}
	var tf tenantFlags
	common := tf.register
	connect := func(fs *flag.FlagSet, args []string) (*client.Client, error) {
		if err := parseNoArgs(fs, args); err != nil {
			return nil, err
		}
		return tf.connect(env)
	}
	switch sub {
	case "list":
		fs := newFlagSet(env, "retention list", "custos retention list --tenant ID [--format table|ndjson]",
			"Lists a tenant's retention policies, highest priority first.\n")
		common(fs)
		format := fs.String("format", "table", "output: table or ndjson (one JSON policy per line)")
		c, err := connect(fs, args)
		if err != nil {
			return err
		}
		if err := checkFormat(*format, "table", "ndjson"); err != nil {
			return err
		}
		ps, days, err := c.RetentionPolicies(ctx, tf.tenant)
		if err != nil {
			return explain(err)
		}
		if *format == "ndjson" {
			return printJSONLines(env, ps)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PRIORITY\tNAME\tKEEP\tRECORD TYPES\tOPERATIONS\tUSERS")
		for _, p := range ps {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", p.Priority, p.Name, p.Duration,
				listOrAny(p.RecordTypes), listOrAny(p.Operations), listOrAny(p.UserIDs))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "records no policy matches are kept %s\n", retention.KeepDays(days))
		return nil

	case "create", "update":
		var pf policyFlags
		synopsis := "custos retention create --tenant ID --name NAME --duration D --priority N [--record-type T] [--operation O] [--user U]"
		about := "Creates a retention policy. A record matches when it has one of the record\ntypes, one of the operations and one of the users given (a criterion not\ngiven matches everything); at least record types or users are required.\n"
		if sub == "update" {
			synopsis = "custos retention update --tenant ID --name NAME [--duration D] [--priority N] [--record-type T] [--operation O] [--user U]"
			about = "Changes the given fields of a retention policy; a list flag given as ''\nclears that criterion.\n"
		}
		fs := newFlagSet(env, "retention "+sub, synopsis, about)
		common(fs)
		pf.register(fs)
		c, err := connect(fs, args)
		if err != nil {
			return err
		}
		if pf.name == "" {
			return usagef("--name is required")
		}
		var p retention.Policy
		if sub == "create" {
			p, err = c.CreateRetentionPolicy(ctx, tf.tenant, retention.Policy{Name: pf.name, Description: pf.description,
				RecordTypes: pf.types, Operations: pf.ops, UserIDs: pf.users, Duration: retention.Duration(pf.duration), Priority: pf.priority})
		} else {
			var patch retention.Patch
			fs.Visit(func(f *flag.Flag) {
				switch f.Name {
				case "description":
					patch.Description = &pf.description
				case "duration":
					d := retention.Duration(pf.duration)
					patch.Duration = &d
				case "priority":
					patch.Priority = &pf.priority
				case "record-type":
					patch.RecordTypes = nonNil(pf.types)
				case "operation":
					patch.Operations = nonNil(pf.ops)
				case "user":
					patch.UserIDs = nonNil(pf.users)
				}
			})
			p, err = c.UpdateRetentionPolicy(ctx, tf.tenant, pf.name, patch)
		}
		if err != nil {
			return explain(err)
		}
		fmt.Fprintf(env.stdout, "%s policy %q: priority %d, keep %s; record types %s; operations %s; users %s\n",
			map[string]string{"create": "created", "update": "updated"}[sub], p.Name, p.Priority, p.Duration, listOrAny(p.RecordTypes), listOrAny(p.Operations), listOrAny(p.UserIDs))
		return nil

	case "delete":
		fs := newFlagSet(env, "retention delete", "custos retention delete --tenant ID --name NAME",
			"Deletes a retention policy; its records fall to the next policy or the default.\n")
		common(fs)
		name := fs.String("name", "", "policy name (required)")
		c, err := connect(fs, args)
		if err != nil {
			return err
		}
		if *name == "" {
			return usagef("--name is required")
		}
		if err := c.DeleteRetentionPolicy(ctx, tf.tenant, *name); err != nil {
			return explain(err)
		}
		fmt.Fprintf(env.stdout, "deleted policy %q\n", *name)
		return nil

	case "hold":
		fs := newFlagSet(env, "retention hold", "custos retention hold --tenant ID [--all | --user U ... | --off] [--reason TEXT]",
			"Shows or sets the tenant's legal hold. While it holds, retention deletes\nnothing of the tenant (--all) or of the users given (--user).\n")
		common(fs)
		all := fs.Bool("all", false, "hold every record of the tenant")
		off := fs.Bool("off", false, "lift the hold")
		reason := fs.String("reason", "", "why (kept with the hold and in the audit log)")
		var users listFlag
		fs.Var(&users, "user", "hold this user's records (repeatable, or comma-separated)")
		c, err := connect(fs, args)
		if err != nil {
			return err
		}
		var h retention.Hold
		switch {
		case *off && (*all || len(users) > 0):
			return usagef("--off cannot be combined with --all or --user")
		case *off || *all || len(users) > 0:
			h, err = c.SetLegalHold(ctx, tf.tenant, retention.Hold{All: *all, Users: users, Reason: *reason})
		default:
			h, err = c.LegalHold(ctx, tf.tenant)
		}
		if err != nil {
			return explain(err)
		}
		switch {
		case h.All:
			fmt.Fprintf(env.stdout, "legal hold on every record of %s", tf.tenant)
		case len(h.Users) > 0:
			fmt.Fprintf(env.stdout, "legal hold on the records of %s", strings.Join(h.Users, ", "))
		default:
			fmt.Fprint(env.stdout, "no legal hold")
		}
		if h.Reason != "" {
			fmt.Fprintf(env.stdout, " (%s)", h.Reason)
		}
		fmt.Fprintln(env.stdout)
		return nil

	case "enforce", "report":
		synopsis, about := "custos retention report --tenant ID [--format text|json]", "Shows what the tenant's last retention run removed.\n"
		if sub == "enforce" {
			synopsis = "custos retention enforce --tenant ID [--dry-run] [--format text|json]"
			about = "Enforces the tenant's retention now (custos also does so every hour).\nWith --dry-run it only reports what would be removed; that needs a read token,\nremoving needs an admin one.\n"
		}
		fs := newFlagSet(env, "retention "+sub, synopsis, about)
		common(fs)
		dry := false
		if sub == "enforce" {
			fs.BoolVar(&dry, "dry-run", false, "report what would be removed without removing it")
		}
		format := fs.String("format", "text", "output: text or json")
		c, err := connect(fs, args)
		if err != nil {
			return err
		}
		if err := checkFormat(*format, "text", "json"); err != nil {
			return err
		}
		var rep retention.Report
		if sub == "enforce" {
			rep, err = c.EnforceRetention(ctx, tf.tenant, dry)
		} else {
			rep, err = c.RetentionReport(ctx, tf.tenant)
		}
		if err != nil {
			return explain(err)
		}
		if *format == "json" {
			return printJSONLine(env, rep)
		}
		return printReport(env, rep)
	}
	return usagef("unknown subcommand %q\nusage: %s", sub, retentionUsage)
}

func printReport(env cliEnv, rep retention.Report) error {
	verb := "removed"
	if rep.DryRun {
		verb = "would remove"
	}
	switch {
	case rep.Held:
		fmt.Fprintf(env.stdout, "%s: legal hold on the whole tenant; nothing removed\n", rep.Tenant)
		return nil
	case rep.Records == 0:
		fmt.Fprintf(env.stdout, "%s: nothing to remove (%d policies, default keep %s; checked %d files)\n",
			rep.Tenant, rep.Policies, retention.KeepDays(rep.DefaultDays), rep.PartsChecked)
		return nil
	}
	fmt.Fprintf(env.stdout, "%s: %s %d records (%d files dropped, %d rewritten", rep.Tenant, verb, rep.Records, rep.PartsDropped, rep.PartsRewritten)
	if !rep.DryRun {
		fmt.Fprintf(env.stdout, ", %d bytes freed", rep.BytesFreed)
	}
	fmt.Fprintln(env.stdout, ")")
	if len(rep.HeldUsers) > 0 {
		fmt.Fprintf(env.stdout, "kept by legal hold: %s\n", strings.Join(rep.HeldUsers, ", "))
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DAY\tPOLICY\tRECORDS")
	for _, r := range rep.Removed {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", r.Day, r.Policy, r.Records)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.Error != "" {
		return fmt.Errorf("the run stopped early: %s", rep.Error)
	}
	return nil
}

func listOrAny(v []string) string {
	if len(v) == 0 {
		return "any"
	}
	return strings.Join(v, ",")
}

// nonNil makes an explicitly emptied list flag send [] rather than null.
func nonNil(l listFlag) *[]string {
	v := []string(l)
	if v == nil {
		v = []string{}
	}
	return &v
}
