// Command custos is the unified audit log: server, collectors and CLI in one binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand. run gets the arguments after the subcommand name.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"serve":     {"run the custos server", runServe},
		"alerts":    {"list, show, acknowledge and close detection alerts (list, show, ack, close)", runAlerts},
		"baseline":  {"detection baselines: what they learned; relearn from stored history (status, rebuild)", runBaseline},
		"notify":    {"alert notifications: webhooks, Teams and Slack (list, add, remove, test)", runNotify},
		"simulate":  {"generate realistic Microsoft 365 audit activity", runSimulate},
		"ingest":    {"send audit records from files to a server", runIngest},
		"forward":   {"follow local files and a local endpoint, ship their records to a server through a disk queue", runForward},
		"search":    {"search a tenant's records; export them as csv or ndjson", runSearch},
		"query":     {"asynchronous audit log queries, Graph-style (create, list, show, records, cancel, delete)", runQuery},
		"rules":     {"detection rules: list them, test them on records, add and remove a tenant's own (list, test, add, remove)", runRules},
		"retention": {"manage retention policies and legal hold; enforce retention (list, create, update, delete, hold, enforce, report)", runRetention},
		"tenant":    {"manage tenants (create, list)", runTenant},
		"token":     {"manage API tokens (create, list, revoke)", runToken},
		"sources":   {"sources of records: health, hourly coverage, in-server Microsoft 365 collectors (list, show, coverage, add, remove, config)", runSources},
		"collect":   {"pull audit records from Microsoft 365 into a file, resumably (collect m365)", runCollect},
		"bench":     {"measure ingest throughput, storage and memory, search speed, and the forwarder (bench ingest, bench search, bench forward)", runBench},
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: custos <command> [flags]\n\ncommands:\n")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'custos <command> -h' for the flags of a command.\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := commands()[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "custos: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "custos %s: %v\n", os.Args[1], err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a mistake in how a command was called (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }
