package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/api"
	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/collection"
	"github.com/custos-audit/custos/detect"
	"github.com/custos-audit/custos/durable"
	"github.com/custos-audit/custos/ingest"
	"github.com/custos-audit/custos/notify"
	"github.com/custos-audit/custos/queryjob"
	"github.com/custos-audit/custos/retention"
	"github.com/custos-audit/custos/rules"
	"github.com/custos-audit/custos/sealed"
	"github.com/custos-audit/custos/selfaudit"
	"github.com/custos-audit/custos/source"
	"github.com/custos-audit/custos/store"
)

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: custos serve [flags]\n\nRuns the custos server. Every flag can also be set by the environment\nvariable CUSTOS_<FLAG> (upper case, '-' as '_'), e.g. CUSTOS_LISTEN.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var (
		data         = fs.String("data", "./custos-data", "data directory")
		listen       = fs.String("listen", "127.0.0.1:8470", "address to listen on")
		logLevel     = fs.String("log-level", "info", "log level: debug, info, warn, error")
		logFormat    = fs.String("log-format", "text", "log format: text or json")
		memoryLimit  = fs.String("memory-limit", "4GB", "DuckDB memory limit")
		maxBody      = fs.Int64("max-body-bytes", 256<<20, "largest ingest body accepted, after decompression")
		sealInterval = fs.Duration("seal-interval", 5*time.Minute, "seal the in-memory head to Parquet at least this often")
		sealBytes    = fs.Int64("seal-bytes", 256<<20, "seal the head once it holds this many raw bytes")
		dedupWindow  = fs.Duration("dedup-window", 8*24*time.Hour, "days of CreationTime whose record ids stay in memory for deduplication")
		minFree      = fs.Int64("min-free-bytes", 1<<30, "refuse writes (503) when free disk space falls below this")
		mappings     = fs.String("mappings", "", "JSON file of field mappings for non-Microsoft sources")
		retainDays   = fs.Int("retention-days", retention.DefaultDays, "keep records no retention policy matches this many days (0: forever)")
		retainEvery  = fs.Duration("retention-interval", time.Hour, "how often retention is enforced")
		detectOn     = fs.Bool("detect", true, "run detection (baselines and Sigma rules) on every committed record")
		rulesDir     = fs.String("rules", "", "directory of Sigma rules (.yml) to evaluate besides the bundled pack")
		geoip        = fs.String("geoip", "", "comma-separated MaxMind-format .mmdb files (ASN, country) for network baselines")
		learningDays = fs.Int("learning-days", 14, "days each tenant's baselines learn before they alert")
		shutdownWait = fs.Duration("shutdown-timeout", 30*time.Second, "how long to wait for in-flight requests on shutdown")
		silence      = fs.Duration("source-silence", 15*time.Minute, "alert when a source sends nothing (or only heartbeats) for this long")
		lowFraction  = fs.Float64("source-low-fraction", 0.25, "alert when an hour brings less than this fraction of a source's learned volume")
		secretKey    = fs.String("secret-key-file", "", "key sealing source credentials at rest; must exist (default: <data>/secret.key, created on first use)")
		collectEvery = fs.Duration("collect-interval", time.Minute, "pause between the collection passes of each configured source")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return usagef("%v", err)
	}

	if err := os.MkdirAll(*data, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	reg, err := auth.Open(filepath.Join(*data, "auth.json"))
	if err != nil {
		return err
	}
	if *retainDays < 0 {
		return usagef("--retention-days %d: want 0 (forever) or more", *retainDays)
	}
	if *retainEvery < time.Minute {
		return usagef("--retention-interval %s: want at least 1m", *retainEvery)
	}
	// The system tenant's log holds self-audit records of actions that
	// concern no single tenant (tenants, global tokens).
	if _, err := reg.CreateTenant(selfaudit.SystemTenant, "custos server administration"); err != nil && !errors.Is(err, auth.ErrExists) {
		return err
	}
	if !reg.HasTokens() {
		if err := bootstrapAdmin(reg, *data, log); err != nil {
			return err
		}
	}
	var maps map[string]*audit.Mapping
	if *mappings != "" {
		if maps, err = audit.LoadMappings(*mappings); err != nil {
			return fmt.Errorf("mappings: %w", err)
		}
	}

	db, err := store.Open(*data, store.Options{
		MemoryLimit:  *memoryLimit,
		SealInterval: *sealInterval,
		SealBytes:    *sealBytes,
		DedupWindow:  *dedupWindow,
		MinFreeBytes: *minFree,
		Logger:       log.With("component", "store"),
	})
	if err != nil {
		return err
	}
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), db.Collector())
	var det detection
	if *detectOn {
		if det, err = openDetection(db, *data, *rulesDir, *geoip, *learningDays, promReg, log); err != nil {
			db.Close()
			return err
		}
		defer det.alerts.Close()
	} else if err := db.DropFeed(detectionFeed); err != nil {
		log.Warn("releasing detection's hold on the write-ahead log", "err", err)
	}
	sources, err := openSources(ctx, db, reg, det.alerts, *data, *silence, *lowFraction, promReg, log)
	if err != nil {
		db.Close()
		return err
	}
	defer sources.Close()
	svc := ingest.New(db, ingest.Config{MaxBodyBytes: *maxBody, Mappings: maps, Registerer: promReg, Observer: sources})
	retReg, err := retention.OpenRegistry(filepath.Join(*data, "retention.json"))
	if err != nil {
		db.Close()
		return err
	}
	audits := selfaudit.New(svc)
	enforcer := retention.NewEnforcer(retention.EnforcerConfig{
		Registry: retReg,
		Store:    db,
		Tenants: func() []string {
			var ids []string
			for _, t := range reg.Tenants() {
				ids = append(ids, t.ID)
			}
			return ids
		},
		DefaultDays: *retainDays,
		Interval:    *retainEvery,
		Logger:      log.With("component", "retention"),
		OnReport: func(rep retention.Report) {
			if rep.Records == 0 && rep.Error == "" {
				return // an hourly "nothing to do" per tenant would drown the log
			}
			a := selfaudit.Action{Tenant: rep.Tenant, Operation: selfaudit.RetentionEnforced, Actor: selfaudit.System,
				Failed: rep.Error != "", Parameters: rep}
			if err := audits.Record(ctx, a); err != nil {
				log.Error("self-audit record of a retention run was lost", "tenant", rep.Tenant, "err", err)
			}
		},
	})
	promReg.MustRegister(enforcer.Collector())
	queries, err := queryjob.Open(queryjob.Config{Dir: filepath.Join(*data, "queries"), Reader: db, Logger: log.With("component", "queries")})
	if err != nil {
		db.Close()
		return err
	}

	collectors, err := openCollectors(*data, *secretKey, *collectEvery, svc, sources, promReg, log)
	if err != nil {
		queries.Close()
		db.Close()
		return err
	}

	srv := &http.Server{
		Handler: api.New(api.Config{
			Registry:   reg,
			Ingest:     svc,
			Reader:     db,
			Retention:  enforcer,
			Queries:    queries,
			Alerts:     det.alerts,
			Detect:     det.engine,
			Notify:     det.notifier,
			Sources:    sources,
			Collectors: collectors,
			Ready:      db.Ready,
			Metrics:    promhttp.HandlerFor(promReg, promhttp.HandlerOpts{Registry: promReg}),
			Logger:     log.With("component", "api"),
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Minute, // large batches on slow links
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		queries.Close()
		db.Close()
		return err
	}
	log.Info("custos listening", "addr", ln.Addr().String(), "data", *data)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	jobs, stopJobs := context.WithCancel(context.Background())
	jobsDone := make(chan struct{})
	go func() { enforcer.Loop(jobs); close(jobsDone) }()
	detectDone := make(chan struct{})
	go func() { det.run(jobs); close(detectDone) }()
	sourcesDone := make(chan struct{})
	go func() { sources.Run(jobs, sourceCheckInterval); close(sourcesDone) }()
	collectorsDone := make(chan struct{})
	go func() { collectors.Run(jobs); close(collectorsDone) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down: finishing in-flight requests, then sealing the head")
		sctx, cancel := context.WithTimeout(context.Background(), *shutdownWait)
		err = srv.Shutdown(sctx)
		cancel()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	stopJobs()
	<-jobsDone
	<-detectDone
	<-sourcesDone
	<-collectorsDone // collectors write through ingest: stop them before the store
	queries.Close()  // before the store: running jobs stop and run again at the next start
	if cerr := db.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err == nil {
		log.Info("custos stopped cleanly")
	}
	return err
}

// sourceCheckInterval is how often sources' health is judged: well inside
// the minute of slack the silence threshold allows.
const sourceCheckInterval = 20 * time.Second

// openSources opens the source registry and recounts its hourly volumes
// from the store, before any new record can arrive.
func openSources(ctx context.Context, db *store.DB, reg *auth.Registry, alerts *alert.Store, data string, silence time.Duration,
	lowFraction float64, promReg prometheus.Registerer, log *slog.Logger) (*source.Registry, error) {
	if silence < time.Minute {
		return nil, usagef("--source-silence %s: want at least 1m", silence)
	}
	if lowFraction <= 0 || lowFraction >= 1 {
		return nil, usagef("--source-low-fraction %g: want a fraction between 0 and 1", lowFraction)
	}
	cfg := source.Config{
		Dir:         filepath.Join(data, "sources"),
		Arrivals:    db,
		Silence:     silence,
		LowFraction: lowFraction,
		Logger:      log.With("component", "sources"),
		Tenants: func() []string {
			var ids []string
			for _, t := range reg.Tenants() {
				ids = append(ids, t.ID)
			}
			return ids
		},
	}
	if alerts != nil { // a nil *alert.Store in the interface would not be nil
		cfg.Alerts = alerts
	}
	sources, err := source.Open(cfg)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := sources.Recount(ctx); err != nil {
		sources.Close()
		return nil, err
	}
	promReg.MustRegister(sources.Collector())
	log.Info("source tracking running", "sources", sources.Len(), "recount", time.Since(start).Round(time.Millisecond), "silence", silence)
	return sources, nil
}

// detectionFeed is the store feed detection reads.
const detectionFeed = "detect"

// detection is what runs when detection is on; its zero value is off.
type detection struct {
	alerts   *alert.Store
	engine   *detect.Engine
	notifier *notify.Notifier
}

// run evaluates records and delivers alerts until ctx ends; the engine
// saves its state on the way out.
func (d detection) run(ctx context.Context) {
	if d.engine == nil {
		return
	}
	done := make(chan struct{})
	go func() { d.notifier.Run(ctx); close(done) }()
	d.engine.Run(ctx)
	<-done
}

// openDetection opens the alert store, the detection engine with the
// bundled rules plus those of rulesDir, and the notifier.
func openDetection(db *store.DB, data, rulesDir, geoip string, learningDays int, reg prometheus.Registerer, log *slog.Logger) (detection, error) {
	var none detection
	if learningDays < 0 {
		return none, usagef("--learning-days %d: want 0 or more", learningDays)
	}
	rs, err := rules.Bundled()
	if err != nil {
		return none, fmt.Errorf("bundled rules: %w", err)
	}
	if rulesDir != "" {
		more, err := rules.LoadDir(rulesDir)
		if err != nil {
			// A broken rule file must not silently disable the others,
			// nor stop the server: say which failed, run the rest.
			log.Error("some rules could not be loaded", "dir", rulesDir, "err", err)
		}
		rs = append(rs, more...)
	}
	var geo detect.Geo
	if geoip != "" {
		if geo, err = detect.OpenGeo(strings.Split(geoip, ",")...); err != nil {
			return none, err
		}
	}
	feed, err := db.Feed(detectionFeed)
	if err != nil {
		return none, err
	}
	alerts, err := alert.Open(alert.Path(data))
	if err != nil {
		return none, err
	}
	learning := time.Duration(learningDays) * 24 * time.Hour
	if learningDays == 0 {
		learning = time.Nanosecond // alert from the first record
	}
	engine, err := detect.Open(filepath.Join(data, "detect"), feed, alerts, geo, detect.Options{
		Learning:   learning,
		Logger:     log.With("component", "detect"),
		Registerer: reg,
	})
	if err != nil {
		alerts.Close()
		return none, err
	}
	engine.SetRules(rs)
	notifier, err := notify.Open(filepath.Join(data, "notify.json"), alerts, notify.Options{
		Logger:     log.With("component", "notify"),
		Registerer: reg,
	})
	if err != nil {
		alerts.Close()
		return none, err
	}
	log.Info("detection running", "rules", len(rs), "learning_days", learningDays, "geoip", geoip != "", "notification_channels", len(notifier.All()))
	return detection{alerts, engine, notifier}, nil
}

// bootstrapAdmin creates the first global admin token of a fresh install,
// prints it once and keeps a copy only the owner can read.
func bootstrapAdmin(reg *auth.Registry, data string, log *slog.Logger) error {
	tok, secret, err := reg.CreateToken("", auth.RoleAdmin, "bootstrap-admin", nil)
	if err != nil {
		return fmt.Errorf("bootstrap admin token: %w", err)
	}
	path := filepath.Join(data, "admin.token")
	if err := durable.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	log.Info("created bootstrap admin token", "token_id", tok.ID, "file", path)
	fmt.Printf("custos: bootstrap admin token (shown once; a copy is in %s, mode 0600):\n%s\n", path, secret)
	return nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// parseFlags parses args, then fills every flag not given on the command
// line from CUSTOS_<NAME> in the environment.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "CUSTOS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := f.Value.Set(v); e != nil {
				err = usagef("%s=%q: %v", env, v, e)
			}
		}
	})
	return err
}

// openCollectors opens the configured sources (their collectors start with
// Run). tracker hears heartbeats and upstream windows; nil is a no-op.
func openCollectors(data, keyFile string, interval time.Duration, svc *ingest.Service, tracker collection.Tracker,
	reg prometheus.Registerer, log *slog.Logger) (*collection.Manager, error) {
	if interval < time.Second {
		return nil, usagef("--collect-interval %s: want at least 1s", interval)
	}
	// A key kept elsewhere must exist: making a new one there would
	// silently orphan every credential sealed with the old one.
	keys := &sealed.KeyFile{Path: keyFile}
	if keyFile == "" {
		keys = &sealed.KeyFile{Path: filepath.Join(data, "secret.key"), Create: true}
	}
	return collection.Open(collection.Options{
		Path:       filepath.Join(data, "collectors", "sources.json"),
		StateDir:   filepath.Join(data, "collectors"),
		Keys:       keys,
		Ingest:     svc,
		Tracker:    tracker,
		Interval:   interval,
		Registerer: reg,
		Logger:     log.With("component", "collectors"),
	})
}
