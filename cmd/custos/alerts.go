package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/client"
)

func runAlerts(ctx context.Context, args []string) error { return alertsCmd(ctx, args, osEnv()) }

const alertsUsage = "custos alerts list|show|ack|close --tenant ID [flags]"

func alertsCmd(ctx context.Context, args []string, env cliEnv) error {
	sub, args, err := subcommand(env, args, "alerts", alertsUsage)
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
		fs := newFlagSet(env, "alerts list", "custos alerts list --tenant ID [--status S] [--severity S] [--detector D] [--format table|ndjson]",
			"Lists a tenant's alerts, the most recently seen first.\n")
		common(fs)
		var statuses listFlag
		fs.Var(&statuses, "status", "open, acknowledged or closed (repeatable; default: all)")
		severity := fs.String("severity", "", "only alerts at least this severe: "+strings.Join(alert.Severities, ", "))
		detector := fs.String("detector", "", "only this detector's alerts (e.g. mail-app-new, sigma:<rule id>)")
		format := fs.String("format", "table", "output: table or ndjson (one JSON alert per line)")
		c, err := connect(fs, args)
		if err != nil {
			return err
		}
		if err := checkFormat(*format, "table", "ndjson"); err != nil {
			return err
		}
		list, err := c.Alerts(ctx, tf.tenant, client.AlertFilter{Statuses: statuses, Severity: *severity, Detector: *detector})
		if err != nil {
			return explain(err)
		}
		if *format == "ndjson" {
			return printJSONLines(env, list)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSEVERITY\tSTATUS\tDETECTOR\tENTITY\tCOUNT\tLAST SEEN")
		for _, a := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", a.ID, a.Severity, a.Status, a.Detector, a.Entity, a.Count,
				a.LastSeen.Format(time.RFC3339))
		}
		return tw.Flush()

	case "show":
		fs := newFlagSet(env, "alerts show", "custos alerts show --tenant ID --id ALERT [--format text|json]",
			"Shows one alert with its explanation and evidence.\n")
		common(fs)
		id := fs.String("id", "", "alert id (required)")
		format := fs.String("format", "text", "output: text or json")
		c, err := tf.connectID(env, fs, args, id)
		if err != nil {
			return err
		}
		if err := checkFormat(*format, "text", "json"); err != nil {
			return err
		}
		a, err := c.Alert(ctx, tf.tenant, *id)
		if err != nil {
			return explain(err)
		}
		if *format == "json" {
			return printJSONLine(env, a)
		}
		printAlert(env, a)
		return nil

	case "ack", "close":
		verb := map[string]string{"ack": "Acknowledges", "close": "Closes"}[sub]
		fs := newFlagSet(env, "alerts "+sub, "custos alerts "+sub+" --tenant ID --id ALERT [--note TEXT]",
			verb+" an alert. New findings join an acknowledged alert; after close they open a new one.\n")
		common(fs)
		id := fs.String("id", "", "alert id (required)")
		note := fs.String("note", "", "why (kept with the alert and in the audit log)")
		c, err := tf.connectID(env, fs, args, id)
		if err != nil {
			return err
		}
		a, err := c.SetAlertStatus(ctx, tf.tenant, *id, sub, *note)
		if err != nil {
			return explain(err)
		}
		fmt.Fprintf(env.stdout, "alert %s is %s\n", a.ID, a.Status)
		return nil
	}
	return usagef("unknown alerts command %q (want list, show, ack or close)", sub)
}

func printAlert(env cliEnv, a alert.Alert) {
	w := env.stdout
	fmt.Fprintf(w, "%s  %s  %s\n", a.ID, strings.ToUpper(a.Severity), a.Status)
	fmt.Fprintf(w, "detector:    %s\n", a.Detector)
	fmt.Fprintf(w, "title:       %s\n", a.Title)
	fmt.Fprintf(w, "entity:      %s\n", a.Entity)
	fmt.Fprintf(w, "records:     %d, %s – %s\n", a.Count, a.FirstSeen.Format(time.RFC3339), a.LastSeen.Format(time.RFC3339))
	fmt.Fprintf(w, "explanation: %s\n", a.Explanation)
	if len(a.Related) > 0 {
		fmt.Fprintf(w, "related:     %s\n", strings.Join(a.Related, ", "))
	}
	if a.UpdatedBy != "" {
		fmt.Fprintf(w, "updated by:  %s at %s\n", a.UpdatedBy, a.Updated.Format(time.RFC3339))
	}
	if a.Note != "" {
		fmt.Fprintf(w, "note:        %s\n", a.Note)
	}
	fmt.Fprintf(w, "evidence (record ids, first %d):\n", alert.MaxEvidence)
	for _, id := range a.Evidence {
		fmt.Fprintf(w, "  %s\n", id)
	}
}

func runBaseline(ctx context.Context, args []string) error { return baselineCmd(ctx, args, osEnv()) }

func baselineCmd(ctx context.Context, args []string, env cliEnv) error {
	sub, args, err := subcommand(env, args, "baseline", "custos baseline status|rebuild --tenant ID [flags]")
	if err != nil {
		return err
	}
	var tf tenantFlags
	fs := newFlagSet(env, "baseline "+sub, "custos baseline "+sub+" --tenant ID", map[string]string{
		"status":  "Shows what a tenant's baselines have learned, and until when they learn.\n",
		"rebuild": "Relearns a tenant's baselines from its stored records of the last --days days,\nso a new install learns from imported logs instead of waiting out the\nlearning period. Raises no alerts.\n",
	}[sub])
	tf.register(fs)
	days := fs.Int("days", 30, "days of stored history to learn from (rebuild)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	c, err := tf.connect(env)
	if err != nil {
		return err
	}
	switch sub {
	case "status":
		st, err := c.Detection(ctx, tf.tenant)
		if err != nil {
			return explain(err)
		}
		b := st.Baseline
		if b.First.IsZero() {
			fmt.Fprintf(env.stdout, "tenant %s: no records learned yet; %d rules loaded\n", tf.tenant, len(st.Rules))
			return nil
		}
		fmt.Fprintf(env.stdout, "tenant %s: learned from records of %s to %s\n", tf.tenant, b.First.Format(time.DateOnly), b.Latest.Format(time.DateOnly))
		fmt.Fprintf(env.stdout, "values %d, mailboxes %d, learning until %s, %d rules loaded\n", b.Values, b.Mailboxes,
			b.LearningUntil.Format(time.RFC3339), len(st.Rules))
		return nil
	case "rebuild":
		fmt.Fprintf(env.stderr, "rebuilding baselines of %s from %d days of stored records...\n", tf.tenant, *days)
		rep, err := c.RebuildBaseline(ctx, tf.tenant, *days)
		if err != nil {
			return explain(err)
		}
		fmt.Fprintf(env.stdout, "learned from %d records (%s – %s) in %s; the baselines hold %d values\n", rep.Records,
			rep.From.Format(time.DateOnly), rep.To.Format(time.DateOnly), rep.Elapsed.Round(time.Millisecond), rep.Values)
		return nil
	}
	return usagef("unknown baseline command %q (want status or rebuild)", sub)
}
