package main

import "context"

func runSources(ctx context.Context, args []string) error { return sourcesCmd(ctx, args, osEnv()) }

const sourcesUsage = "custos sources add|remove|config [flags]"

// sourcesCmd dispatches the sources subcommands to the groups that
// handle them.
func sourcesCmd(ctx context.Context, args []string, env cliEnv) error {
	sub, args, err := subcommand(env, args, "sources", sourcesUsage)
	if err != nil {
		return err
	}
	if handled, err := sourcesConfigCmd(ctx, sub, args, env); handled {
		return err
	}
	return usagef("unknown sources command %q (want add, remove or config)", sub)
}
