package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/custos-audit/custos/forward"
)

func runForward(ctx context.Context, args []string) error {
	return forwardCmd(ctx, args, osEnv())
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// forwardVersion is what heartbeats report as the forwarder's version.
const forwardVersion = "custos-forward/1"

func forwardCmd(ctx context.Context, args []string, env cliEnv) error {
	fs := newFlagSet(env, "forward", "custos forward --tenant ID --server URL [--file GLOB]... [--listen ADDR] [flags]",
		`Ships audit records to a custos server: NDJSON files that services write
(followed across rotation) and records POSTed to a local HTTP endpoint go
into a bounded disk queue, and from there to the server, at least once,
in batches numbered 1, 2, 3… per source. Heartbeats carry the
forwarder's counters; /metrics and /healthz show its health.
See docs/forwarding.md.
`)
	var tf tenantFlags
	tf.register(fs)
	hostname, _ := os.Hostname()
	var files stringList
	fs.Var(&files, "file", "NDJSON files to follow, a glob pattern (repeatable)")
	name := fs.String("name", hostname, "source name sent with every batch and heartbeat")
	listen := fs.String("listen", "", "serve POST /records, /metrics and /healthz on this address (a bare :port binds to loopback)")
	metricsListen := fs.String("metrics-listen", "", "serve only /metrics and /healthz on this address, when there is no --listen")
	queueDir := fs.String("queue", "./custos-forward", "disk queue directory")
	queueMax := byteSize(1 << 30)
	fs.Var(&queueMax, "queue-max-bytes", "bound of the disk queue (KiB, MiB, GiB suffixes accepted)")
	batchRecords := fs.Int("batch-records", 5000, "records per batch, at most")
	batchBytes := byteSize(4 << 20)
	fs.Var(&batchBytes, "batch-bytes", "bytes per batch, at most")
	batchWait := fs.Duration("batch-wait", time.Second, "longest wait for a batch to fill")
	concurrency := fs.Int("concurrency", 2, "batches in flight")
	heartbeat := fs.Duration("heartbeat", 30*time.Second, "heartbeat interval")
	poll := fs.Duration("poll", time.Second, "how often files are checked for new lines and new files")
	maxLine := byteSize(4 << 20)
	fs.Var(&maxLine, "max-line-bytes", "longer lines in files are skipped and counted")
	compress := fs.String("compress", "zstd", "request compression: zstd, gzip or none")
	maxBackoff := fs.Duration("max-backoff", 30*time.Second, "longest wait between tries of a batch the server did not take (a Retry-After may ask for longer)")
	tokenFile := fs.String("token-file", "", "read the API token from this file (instead of --token or $CUSTOS_TOKEN)")
	authRetry := fs.Duration("auth-retry", time.Minute, "wait before trying again after the server refused the token (401/403)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("unexpected arguments %q (files are given with --file)", fs.Args())
	case len(files) == 0 && *listen == "":
		return usagef("no input: give --file GLOB and/or --listen ADDR")
	case *listen != "" && *metricsListen != "":
		return usagef("--metrics-listen is for when there is no --listen (which serves /metrics too)")
	case !forward.SourceNameRE.MatchString(*name):
		return usagef("--name %q: want letters, digits and . _ : @ - (at most 128, starting with a letter or digit)", *name)
	case *batchRecords <= 0 || *concurrency <= 0 || *heartbeat <= 0 || *poll <= 0 || *batchWait <= 0:
		return usagef("--batch-records, --concurrency, --heartbeat, --poll and --batch-wait must be positive")
	}
	switch *compress {
	case "zstd", "gzip", "none":
	default:
		return usagef("--compress %q: want zstd, gzip or none", *compress)
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		tf.token = strings.TrimSpace(string(b))
	}
	c, err := tf.connect(env)
	if err != nil {
		return err
	}
	c.Encoding = *compress
	if *maxBackoff > 0 {
		c.MaxBackoff = *maxBackoff
		c.MinBackoff = min(c.MinBackoff, *maxBackoff)
	}

	addr := *listen
	if addr == "" {
		addr = *metricsListen
	}
	var ln net.Listener
	if addr != "" {
		// A bare :port would listen on every interface; the endpoint
		// takes records without authentication, so keep it local
		// unless a host is named.
		if strings.HasPrefix(addr, ":") {
			addr = "127.0.0.1" + addr
		}
		if ln, err = net.Listen("tcp", addr); err != nil {
			return err
		}
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, nil))
	f, err := forward.New(forward.Config{
		Client: c, Tenant: tf.tenant, Source: *name,
		QueueDir: *queueDir, QueueMaxBytes: int64(queueMax),
		Files: files, Poll: *poll, MaxLineBytes: int(maxLine),
		Listener: ln, Records: *listen != "",
		BatchRecords: *batchRecords, BatchBytes: int(batchBytes), BatchWait: *batchWait, Concurrency: *concurrency,
		Heartbeat: *heartbeat, AuthRetry: *authRetry, Version: forwardVersion, Logger: logger,
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	return f.Run(ctx)
}
