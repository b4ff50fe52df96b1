// Package m365 collects audit records from the Office 365 Management Activity
// API: it starts subscriptions, lists available content in windows of at most
// 24 hours, fetches the content blobs concurrently within a request rate, and
// hands their records to a Sink. Progress is checkpointed per tenant and
// content type so that a restart resumes without skipping a window.
package m365

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Cloud is a Microsoft 365 national cloud: where its API and its token
// authority live.
type Cloud struct {
	Name      string
	APIRoot   string
	Authority string
}

// Clouds are the presets from Microsoft's Management Activity API reference;
// the plan of the tenant decides which one applies.
var clouds = []Cloud{
	{"commercial", "https://manage.office.com", "https://login.microsoftonline.com"},
	{"gcc", "https://manage-gcc.office.com", "https://login.microsoftonline.com"},
	{"gcchigh", "https://manage.office365.us", "https://login.microsoftonline.us"},
	{"dod", "https://manage.protection.apps.mil", "https://login.microsoftonline.us"},
}

// LookupCloud returns the preset named name (commercial, gcc, gcchigh, dod).
func LookupCloud(name string) (Cloud, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, c := range clouds {
		if c.Name == n {
			return c, nil
		}
	}
	return Cloud{}, fmt.Errorf("unknown cloud %q (known: %s)", name, strings.Join(CloudNames(), ", "))
}

// CloudNames lists the presets.
func CloudNames() []string {
	n := make([]string, len(clouds))
	for i, c := range clouds {
		n[i] = c.Name
	}
	return n
}

// Content types of the Management Activity API.
const (
	AuditAzureActiveDirectory = "Audit.AzureActiveDirectory"
	AuditExchange             = "Audit.Exchange"
	AuditSharePoint           = "Audit.SharePoint"
	AuditGeneral              = "Audit.General"
	DLPAll                    = "DLP.All"
)

// DefaultContentTypes are all content types the API offers.
func DefaultContentTypes() []string {
	return []string{AuditAzureActiveDirectory, AuditExchange, AuditSharePoint, AuditGeneral, DLPAll}
}

// Limits set by the API (reference: "List available content").
const (
	// MaxWindow is the longest startTime..endTime span the API answers
	// completely; longer spans may return partial results.
	MaxWindow = 24 * time.Hour
	// Retention is how long content stays retrievable after it was created.
	Retention = 7 * 24 * time.Hour
)

// Tenant is one Entra tenant to collect from.
type Tenant struct {
	// ID is the tenant GUID (Entra "Directory ID").
	ID string
	// ClientID is the application (client) id of the app registration.
	ClientID string
	// ClientSecret authenticates the app. It is never logged.
	ClientSecret string
	// Certificate authenticates the app instead of a secret: a client
	// assertion signed with its key. Exactly one of the two is set.
	Certificate *Certificate
}

// LogValue keeps the secret out of logs even if a Tenant is logged whole.
func (t Tenant) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", t.ID), slog.String("client_id", t.ClientID))
}

// String keeps the secret out of %v and %+v.
func (t Tenant) String() string { return "tenant " + t.ID + " (client " + t.ClientID + ")" }

// GoString keeps the secret out of %#v.
func (t Tenant) GoString() string { return t.String() }

// Config configures a Collector. Zero values select the documented defaults.
type Config struct {
	Tenants []Tenant
	// PublisherIdentifier is the GUID of the organisation running the
	// collector; the API assigns request quota by it. Sent on every call.
	PublisherIdentifier string
	// ContentTypes to collect. Default: DefaultContentTypes().
	ContentTypes []string
	// APIRoot (e.g. https://manage.office.com) and Authority (e.g.
	// https://login.microsoftonline.com). Default: the commercial cloud.
	APIRoot   string
	Authority string

	// StateDir holds one checkpoint file per tenant and content type.
	// Required: without it a restart could not resume.
	StateDir string

	// Window is the span of one content listing; at most MaxWindow.
	// Default 1h: short windows checkpoint often, so a restart repeats little.
	Window time.Duration
	// Overlap is how far before the checkpoint a resumed run lists again,
	// to catch blobs that the API lists later than their contentCreated.
	// Default 6h.
	Overlap time.Duration
	// Concurrency is the number of content blobs fetched at once per tenant.
	// Default 4.
	Concurrency int
	// Rate is the most API requests per second per tenant, and Burst the
	// most sent at once. Default 30/s (the API's baseline quota is
	// 2,000 a minute per tenant) and Concurrency.
	Rate  float64
	Burst int
	// MaxAttempts bounds the tries of one request on throttling, server
	// errors and transport errors. Default 10.
	MaxAttempts int
	// BaseDelay and MaxDelay shape the exponential backoff with full
	// jitter. Defaults 1s and 2m. A Retry-After from the server is always
	// waited at least.
	BaseDelay, MaxDelay time.Duration

	// HTTPClient sends the requests. Default: a client with a 2-minute timeout.
	HTTPClient *http.Client
	// Now is the clock (tests run simulated days on it). Default time.Now.
	Now func() time.Time
	// Logger receives progress and problems. Default: discard.
	Logger *slog.Logger
	// OnEvent, if set, is called for every Event (from several goroutines).
	OnEvent func(Event)
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

var knownTypes = map[string]bool{AuditAzureActiveDirectory: true, AuditExchange: true, AuditSharePoint: true, AuditGeneral: true, DLPAll: true}

// normalize validates cfg and fills in defaults. All problems are reported
// at once, so a misconfigured source can be fixed in one go.
func (cfg Config) normalize() (Config, error) {
	var errs []error
	if len(cfg.Tenants) == 0 {
		errs = append(errs, errors.New("no tenant configured"))
	}
	seen := map[string]bool{}
	for i, t := range cfg.Tenants {
		t.ID = strings.ToLower(strings.TrimSpace(t.ID))
		t.ClientID = strings.TrimSpace(t.ClientID)
		cfg.Tenants[i] = t
		switch {
		case !guidRE.MatchString(t.ID):
			errs = append(errs, fmt.Errorf("tenant id %q is not a GUID (use the Directory ID, not a domain name)", t.ID))
		case seen[t.ID]:
			errs = append(errs, fmt.Errorf("tenant %s configured twice", t.ID))
		}
		seen[t.ID] = true
		if !guidRE.MatchString(t.ClientID) {
			errs = append(errs, fmt.Errorf("tenant %s: client id %q is not a GUID", t.ID, t.ClientID))
		}
		switch {
		case t.ClientSecret == "" && t.Certificate == nil:
			errs = append(errs, fmt.Errorf("tenant %s: no client secret and no certificate", t.ID))
		case t.ClientSecret != "" && t.Certificate != nil:
			errs = append(errs, fmt.Errorf("tenant %s: both a client secret and a certificate; give one", t.ID))
		case t.Certificate != nil && (t.Certificate.Cert == nil || t.Certificate.Key == nil):
			errs = append(errs, fmt.Errorf("tenant %s: incomplete certificate credential", t.ID))
		}
	}
	cfg.PublisherIdentifier = strings.TrimSpace(cfg.PublisherIdentifier)
	if !guidRE.MatchString(cfg.PublisherIdentifier) {
		errs = append(errs, fmt.Errorf("publisher identifier %q is not a GUID (use your organisation's tenant GUID)", cfg.PublisherIdentifier))
	}
	if len(cfg.ContentTypes) == 0 {
		cfg.ContentTypes = DefaultContentTypes()
	}
	ctSeen := map[string]bool{}
	var cts []string
	for _, ct := range cfg.ContentTypes {
		ct = strings.TrimSpace(ct)
		if ctSeen[ct] {
			continue
		}
		ctSeen[ct] = true
		if !knownTypes[ct] {
			errs = append(errs, fmt.Errorf("unknown content type %q (known: %s)", ct, strings.Join(DefaultContentTypes(), ", ")))
			continue
		}
		cts = append(cts, ct)
	}
	cfg.ContentTypes = cts
	if cfg.APIRoot == "" {
		cfg.APIRoot = clouds[0].APIRoot
	}
	if cfg.Authority == "" {
		cfg.Authority = clouds[0].Authority
	}
	for _, u := range []struct {
		name string
		v    *string
	}{{"api root", &cfg.APIRoot}, {"authority", &cfg.Authority}} {
		*u.v = strings.TrimRight(strings.TrimSpace(*u.v), "/")
		p, err := url.Parse(*u.v)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.RawQuery != "" {
			errs = append(errs, fmt.Errorf("%s %q: want an http(s) URL without query", u.name, *u.v))
		}
	}
	if cfg.StateDir == "" {
		errs = append(errs, errors.New("no state directory for checkpoints"))
	}
	if cfg.Window == 0 {
		cfg.Window = time.Hour
	}
	if cfg.Window < time.Minute || cfg.Window > MaxWindow {
		errs = append(errs, fmt.Errorf("window %v: want 1m..%v", cfg.Window, MaxWindow))
	}
	if cfg.Overlap == 0 {
		cfg.Overlap = 6 * time.Hour
	}
	if cfg.Overlap < 0 || cfg.Overlap > Retention/2 {
		errs = append(errs, fmt.Errorf("overlap %v: want 0..%v", cfg.Overlap, Retention/2))
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 4
	}
	if cfg.Concurrency < 1 || cfg.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("concurrency %d: want 1..256", cfg.Concurrency))
	}
	if cfg.Rate == 0 {
		cfg.Rate = 30
	}
	if !(cfg.Rate > 0) {
		errs = append(errs, fmt.Errorf("rate %v: want requests per second > 0", cfg.Rate))
	}
	if cfg.Burst == 0 {
		cfg.Burst = cfg.Concurrency
	}
	if cfg.Burst < 1 {
		errs = append(errs, fmt.Errorf("burst %d: want >= 1", cfg.Burst))
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max attempts %d: want >= 1", cfg.MaxAttempts))
	}
	if cfg.BaseDelay == 0 {
		cfg.BaseDelay = time.Second
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = 2 * time.Minute
	}
	if cfg.BaseDelay < 0 || cfg.MaxDelay < cfg.BaseDelay {
		errs = append(errs, fmt.Errorf("backoff delays %v..%v: want 0 <= base <= max", cfg.BaseDelay, cfg.MaxDelay))
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 2 * time.Minute}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, errors.Join(errs...)
}
