package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/custos-audit/custos/client"
)

// cliEnv is what a client command uses besides its arguments, so that
// tests can run commands with their own streams and environment.
type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	stderrTTY      bool // stderr is a terminal: progress is drawn in place
}

func osEnv() cliEnv {
	tty := false
	if fi, err := os.Stderr.Stat(); err == nil {
		tty = fi.Mode()&os.ModeCharDevice != 0
	}
	return cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, stderrTTY: tty}
}

// clientFlags are the flags every command that talks to a server takes.
// Only these two fall back to the environment: a stray CUSTOS_TENANT
// silently scoping a token meant to be global would be a nasty surprise.
type clientFlags struct {
	server, token string
}

func (cf *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&cf.server, "server", "", "custos server URL (default $CUSTOS_SERVER, else "+client.DefaultServer+")")
	fs.StringVar(&cf.token, "token", "", "API token (default $CUSTOS_TOKEN)")
}

// tenantFlags are the flags of a command that acts on one tenant.
type tenantFlags struct {
	clientFlags
	tenant string
}

func (tf *tenantFlags) register(fs *flag.FlagSet) {
	tf.clientFlags.register(fs)
	fs.StringVar(&tf.tenant, "tenant", "", "tenant id (required)")
}

// connect checks that a tenant was named and returns the client.
func (tf *tenantFlags) connect(env cliEnv) (*client.Client, error) {
	if tf.tenant == "" {
		return nil, usagef("--tenant is required")
	}
	return tf.client(env)
}

// connectID parses a command that names one object by --id: no
// positional arguments, --id and --tenant required.
func (tf *tenantFlags) connectID(env cliEnv, fs *flag.FlagSet, args []string, id *string) (*client.Client, error) {
	if err := parseNoArgs(fs, args); err != nil {
		return nil, err
	}
	if *id == "" {
		return nil, usagef("--id is required")
	}
	return tf.connect(env)
}

// client returns a client for the server and token given by the flags or
// the environment.
func (cf *clientFlags) client(env cliEnv) (*client.Client, error) {
	server := firstNonEmpty(cf.server, env.getenv("CUSTOS_SERVER"), client.DefaultServer)
	u, err := url.Parse(client.NormalizeServer(server))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--server %q: want a URL like %s", server, client.DefaultServer)
	}
	token := firstNonEmpty(cf.token, env.getenv("CUSTOS_TOKEN"))
	if token == "" {
		return nil, usagef("no API token: pass --token TOKEN or set CUSTOS_TOKEN (the server writes its first admin token to <data>/admin.token)")
	}
	return client.New(server, token), nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// parseArgs parses flags that may come before, between or after the
// positional arguments (custos token revoke ID --server URL), and returns
// the positional ones. "--" ends the flags; "-" is positional (stdin).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" || len(rest) == 0 {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// newFlagSet returns a flag set writing its messages to env.stderr, with
// a usage text of synopsis, description and the flags.
func newFlagSet(env cliEnv, name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n\n%s\nflags:\n", synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// subcommand picks the subcommand of tenant or token.
func subcommand(env cliEnv, args []string, name, usage string) (string, []string, error) {
	if len(args) == 0 {
		return "", nil, usagef("missing subcommand\nusage: %s", usage)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(env.stderr, "usage: %s\n\nRun 'custos %s <subcommand> -h' for its flags.\n", usage, name)
		return "", nil, flag.ErrHelp
	}
	return args[0], args[1:], nil
}

// byteSize is a flag value in bytes that also takes KiB, MiB, GiB suffixes.
type byteSize int

func (b *byteSize) String() string { return strconv.Itoa(int(*b)) }

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a positive number of bytes, optionally with KiB, MiB or GiB")
	}
	*b = byteSize(n * mult)
	return nil
}

// explain adds a hint to the errors a user can fix by calling differently.
func explain(err error) error {
	var ae *client.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return fmt.Errorf("%w (check --token or CUSTOS_TOKEN)", err)
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
		return fmt.Errorf("%w (the token's role or tenant does not allow this)", err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (is the server running? check --server or CUSTOS_SERVER)", err)
	}
	return err
}
