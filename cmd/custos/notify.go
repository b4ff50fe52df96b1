package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/client"
)

func runNotify(ctx context.Context, args []string) error { return notifyCmd(ctx, args, osEnv()) }

const notifyUsage = "custos notify list|add|remove|test --tenant ID [flags]"

func notifyCmd(ctx context.Context, args []string, env cliEnv) error {
	sub, args, err := subcommand(env, args, "notify", notifyUsage)
	if err != nil {
		return err
	}
	var tf tenantFlags
	switch sub {
	case "list":
		fs := newFlagSet(env, "notify list", "custos notify list --tenant ID [--format table|ndjson]",
			"Lists a tenant's notification channels and how delivery is going.\n")
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
		list, err := c.Channels(ctx, tf.tenant)
		if err != nil {
			return explain(err)
		}
		if *format == "ndjson" {
			return printJSONLines(env, list)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tFORMAT\tMIN SEVERITY\tURL\tDELIVERED\tPENDING\tDROPPED\tLAST ERROR")
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.ID, s.Name, s.Format, s.MinSeverity, s.URL,
				s.Delivered, s.Pending, s.Dropped, s.LastError)
		}
		return tw.Flush()

	case "add":
		fs := newFlagSet(env, "notify add", "custos notify add --tenant ID --name NAME --url URL [--format json|teams|slack] [--secret-file F | --generate-secret] [--min-severity S]",
			"Adds a webhook that receives every new alert of the tenant at least --min-severity.\n"+
				"json posts the alert signed with HMAC-SHA256 in X-Custos-Signature (a secret is\n"+
				"required); teams posts an Adaptive Card to a Teams Workflows webhook; slack\n"+
				"posts to a Slack incoming webhook. The channel starts with the next alert.\n")
		tf.register(fs)
		name := fs.String("name", "", "a name for the channel (required)")
		u := fs.String("url", "", "the webhook URL (required); Slack and Teams URLs are credentials: mind your shell history")
		format := fs.String("format", "json", "payload: json, teams or slack")
		secretFile := fs.String("secret-file", "", "file holding the HMAC secret (- for stdin)")
		generate := fs.Bool("generate-secret", false, "generate an HMAC secret and print it once")
		minSev := fs.String("min-severity", "low", "least severe alert sent: "+strings.Join(alert.Severities, ", "))
		if err := parseNoArgs(fs, args); err != nil {
			return err
		}
		if *name == "" || *u == "" {
			return usagef("--name and --url are required")
		}
		if *secretFile != "" && *generate {
			return usagef("give --secret-file or --generate-secret, not both")
		}
		var secret string
		switch {
		case *generate:
			secret = "whsec_" + rand.Text()
		case *secretFile == "-":
			b, err := io.ReadAll(io.LimitReader(env.stdin, 4096))
			if err != nil {
				return err
			}
			secret = strings.TrimSpace(string(b))
		case *secretFile != "":
			b, err := os.ReadFile(*secretFile)
			if err != nil {
				return err
			}
			secret = strings.TrimSpace(string(b))
		}
		c, err := tf.connect(env)
		if err != nil {
			return err
		}
		st, err := c.AddChannel(ctx, tf.tenant, client.NewChannel{Name: *name, URL: *u, Format: *format, Secret: secret, MinSeverity: *minSev})
		if err != nil {
			return explain(err)
		}
		fmt.Fprintf(env.stdout, "channel %s (%s, %s and above) added for tenant %s\n", st.ID, st.Format, st.MinSeverity, tf.tenant)
		if *generate {
			fmt.Fprintf(env.stdout, "HMAC secret (shown once; give it to the receiver):\n%s\n", secret)
		}
		return nil

	case "remove", "test":
		about := map[string]string{
			"remove": "Removes a notification channel; alerts not yet delivered to it are not sent.\n",
			"test":   "Sends a sample alert through a channel now and reports the receiver's answer.\n",
		}[sub]
		fs := newFlagSet(env, "notify "+sub, "custos notify "+sub+" --tenant ID --id CHANNEL", about)
		tf.register(fs)
		id := fs.String("id", "", "channel id (required)")
		c, err := tf.connectID(env, fs, args, id)
		if err != nil {
			return err
		}
		if sub == "remove" {
			if err := c.RemoveChannel(ctx, tf.tenant, *id); err != nil {
				return explain(err)
			}
			fmt.Fprintf(env.stdout, "channel %s removed\n", *id)
			return nil
		}
		start := time.Now()
		if err := c.TestChannel(ctx, tf.tenant, *id); err != nil {
			return explain(err)
		}
		fmt.Fprintf(env.stdout, "channel %s: the receiver accepted the test alert (%s)\n", *id, time.Since(start).Round(time.Millisecond))
		return nil
	}
	return usagef("unknown notify command %q (want list, add, remove or test)", sub)
}
