package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custos-audit/custos/m365"
)

func runCollect(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(os.Stderr, "usage: custos collect m365 [flags]\n\nRun 'custos collect m365 -h' for the flags.\n")
		if len(args) == 0 {
			return usagef("collect: which source? (m365)")
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "m365":
		return runCollectM365(ctx, args[1:])
	}
	return usagef("collect: unknown source %q (known: m365)", args[0])
}

func runCollectM365(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("collect m365", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: custos collect m365 --tenant-id GUID --client-id GUID --out FILE [flags]

Pulls audit records from the Office 365 Management Activity API into an
NDJSON file, one record per line, each record Id once. Progress is
checkpointed in --state: run the same command again after an interruption
and it resumes where it stopped. The app authenticates with a certificate
(--certificate, and --certificate-key if the key is in its own file) or a
client secret read from --client-secret-file or $CUSTOS_M365_CLIENT_SECRET,
never from the command line. See docs/collection.md.

flags:
`)
		fs.PrintDefaults()
	}
	var (
		tenants     = fs.String("tenant-id", "", "Entra tenant GUID(s), comma-separated (required)")
		clientID    = fs.String("client-id", "", "application (client) id of the app registration (required)")
		secretFile  = fs.String("client-secret-file", "", "file holding the client secret (default: $CUSTOS_M365_CLIENT_SECRET)")
		certFile    = fs.String("certificate", "", "PEM file with the app's certificate and its RSA private key (instead of a secret)")
		keyFile     = fs.String("certificate-key", "", "PEM file with the certificate's private key, if not in --certificate")
		publisher   = fs.String("publisher", "", "PublisherIdentifier: your organisation's tenant GUID, for API quota (default: the first --tenant-id)")
		cloud       = fs.String("cloud", "commercial", "cloud preset: "+strings.Join(m365.CloudNames(), ", "))
		apiRoot     = fs.String("api-root", "", "API root URL (overrides --cloud)")
		authority   = fs.String("authority", "", "token authority URL (overrides --cloud)")
		types       = fs.String("content-types", strings.Join(m365.DefaultContentTypes(), ","), "content types, comma-separated")
		fromS       = fs.String("from", "", "first contentCreated to collect, RFC 3339 or YYYY-MM-DD (default: as far back as the API keeps, 7 days)")
		toS         = fs.String("to", "", "end of the collection, exclusive, RFC 3339 or YYYY-MM-DD (default: now)")
		out         = fs.String("out", "", "NDJSON output file, appended to (required)")
		state       = fs.String("state", "", "checkpoint directory (default: <out>.state)")
		concurrency = fs.Int("concurrency", 4, "content blobs fetched at once per tenant")
		rateF       = fs.Float64("rate", 30, "most API requests per second per tenant")
		window      = fs.Duration("window", time.Hour, "span of one content listing (at most 24h)")
		overlap     = fs.Duration("overlap", 6*time.Hour, "how far before the checkpoint a resumed run lists again, for blobs listed late")
		quiet       = fs.Bool("quiet", false, "only warnings and errors on stderr")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *tenants == "" || *clientID == "" || *out == "" {
		return usagef("--tenant-id, --client-id and --out are required")
	}
	var (
		secret string
		cert   *m365.Certificate
		err    error
	)
	switch {
	case *certFile != "" && *secretFile != "":
		return usagef("give --certificate or --client-secret-file, not both")
	case *keyFile != "" && *certFile == "":
		return usagef("--certificate-key needs --certificate")
	case *certFile != "":
		if cert, err = m365.LoadCertificate(*certFile, *keyFile); err != nil {
			return err
		}
	default:
		if secret, err = readSecret(*secretFile); err != nil {
			return err
		}
	}
	c, err := m365.LookupCloud(*cloud)
	if err != nil {
		return usageError{err.Error()}
	}
	if *apiRoot != "" {
		c.APIRoot = *apiRoot
	}
	if *authority != "" {
		c.Authority = *authority
	}
	var from, to time.Time
	if *fromS != "" {
		if from, err = parseInstant(*fromS); err != nil {
			return usagef("--from: %v", err)
		}
	}
	if *toS != "" {
		if to, err = parseInstant(*toS); err != nil {
			return usagef("--to: %v", err)
		}
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return usagef("--from %s is not before --to %s", *fromS, *toS)
	}
	var ts []m365.Tenant
	for _, id := range strings.Split(*tenants, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ts = append(ts, m365.Tenant{ID: id, ClientID: *clientID, ClientSecret: secret, Certificate: cert})
		}
	}
	if *publisher == "" && len(ts) > 0 {
		*publisher = ts[0].ID
	}
	if *state == "" {
		*state = *out + ".state"
	}
	if err := os.MkdirAll(*state, 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	sink, err := m365.OpenFileSink(*out)
	if err != nil {
		return err
	}
	defer sink.Close()
	var gaps, windows atomic.Int64
	col, err := m365.New(m365.Config{
		Tenants:             ts,
		PublisherIdentifier: *publisher,
		ContentTypes:        splitList(*types),
		APIRoot:             c.APIRoot,
		Authority:           c.Authority,
		StateDir:            *state,
		Window:              *window,
		Overlap:             *overlap,
		Concurrency:         *concurrency,
		Rate:                *rateF,
		Logger:              log,
		OnEvent: func(e m365.Event) {
			switch e.Kind {
			case m365.EventWindow:
				windows.Add(1)
				log.Debug("window done", "tenant", e.Tenant, "content_type", e.ContentType, "start", e.Start, "end", e.End, "blobs", e.Blobs, "records", e.Records)
			case m365.EventGap:
				gaps.Add(1)
			}
		},
	}, sink)
	if err != nil {
		return usageError{err.Error()}
	}
	log.Info("collecting", "tenants", len(ts), "api_root", c.APIRoot, "out", *out, "state", *state,
		"existing_records", sink.Stats().Existing)

	// Progress every few seconds: a backfill of a big tenant takes hours.
	pctx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	begin := time.Now()
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
				s := col.Stats()
				log.Info("progress", "windows", s.Windows, "blobs", s.Blobs, "records", s.Records,
					"written", sink.Stats().Written, "retries", s.Retries, "gaps", s.Gaps)
			}
		}
	}()
	perr := col.Pass(ctx, from, to)
	stopProgress()
	cerr := sink.Close()
	s, fsStats := col.Stats(), sink.Stats()
	elapsed := time.Since(begin)
	log.Info("done", "windows", s.Windows, "blobs", s.Blobs, "records", s.Records, "written", fsStats.Written,
		"duplicates", fsStats.Duplicates, "retries", s.Retries, "gaps", s.Gaps,
		"elapsed", elapsed.Round(time.Millisecond), "records_per_s", int(float64(s.Records)/max(elapsed.Seconds(), 1e-9)))
	if gaps.Load() > 0 {
		log.Warn("some content had expired before it could be collected; see the warnings above", "gaps", gaps.Load())
	}
	if perr != nil {
		return fmt.Errorf("incomplete (run again to resume): %w", perr)
	}
	return cerr
}

// readSecret takes the secret from a file or the environment, never from
// a flag: command lines are visible to every user of the machine.
func readSecret(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("client secret: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("client secret file %s is empty", file)
		}
		return s, nil
	}
	if s := strings.TrimSpace(os.Getenv("CUSTOS_M365_CLIENT_SECRET")); s != "" {
		return s, nil
	}
	return "", usagef("no credential: use --certificate, --client-secret-file or $CUSTOS_M365_CLIENT_SECRET")
}

func parseInstant(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-03-02T15:04:05Z) or a date (2026-03-02)", s)
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
