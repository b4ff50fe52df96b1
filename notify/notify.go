// Package notify delivers alerts to the webhooks each tenant configures:
// plain JSON signed with HMAC-SHA256, or a Microsoft Teams or Slack
// message.
//
// Delivery is at-least-once and never holds up detection or ingest. The
// alert store numbers alerts in the order they open (alert.Alert.Seq);
// each channel keeps, on disk, the Seq of the last alert it delivered, and
// a worker per channel sends whatever opened after it, retrying with
// exponential backoff. The cursor moves only after the receiver answered
// 2xx, so a crash or restart re-sends at most the alert in flight; the
// X-Custos-Delivery header lets receivers drop such repeats.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/durable"
)

// Formats of a channel's payload.
const (
	FormatJSON  = "json"
	FormatTeams = "teams"
	FormatSlack = "slack"
)

// MaxChannels bounds the channels of one tenant.
const MaxChannels = 20

// Errors.
var (
	ErrNotFound = errors.New("no such notification channel")
	ErrInvalid  = errors.New("invalid notification channel")
)

// Channel is one webhook of a tenant.
type Channel struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	Name        string    `json:"name"`
	URL         string    `json:"url"`
	Format      string    `json:"format"`
	Secret      string    `json:"secret,omitempty"` // the HMAC key; never shown
	MinSeverity string    `json:"minSeverity"`
	Created     time.Time `json:"created"`
	CreatedBy   string    `json:"createdBy,omitempty"`
	// Through is the Seq of the last alert delivered (or passed over as
	// below MinSeverity).
	Through uint64 `json:"through"`
	// Delivered, Dropped and the last error describe the channel's health.
	Delivered int64     `json:"delivered"`
	Dropped   int64     `json:"dropped"`
	LastOK    time.Time `json:"lastDelivery,omitzero"`
	LastError string    `json:"lastError,omitempty"`
	FailingAt time.Time `json:"failingSince,omitzero"`
}

// Status is a channel as shown to users: the secret withheld, the URL
// reduced to its scheme and host (a Slack or Teams URL is itself a
// credential), and the alerts waiting.
type Status struct {
	Channel
	SecretSet bool `json:"secretSet"`
	Pending   int  `json:"pending"`
}

// Source is where alerts come from; *alert.Store is one.
type Source interface {
	Opened(tenant string, after uint64) []alert.Alert
	LastSeq() uint64
	OpenedSignal() <-chan struct{}
}

// Options tune delivery.
type Options struct {
	// Timeout bounds one delivery (default 10s).
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the wait between retries of one
	// alert (defaults 1s and 5m); the wait doubles each attempt.
	BackoffMin, BackoffMax time.Duration
	// GiveUpAfter is how many attempts an alert gets when the receiver
	// keeps rejecting it outright (4xx other than 408 and 429), before it
	// is dropped, logged and counted (default 10). Other failures are
	// retried for as long as they last.
	GiveUpAfter int
	Client      *http.Client
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
}

// Notifier holds the channels and runs their workers.
type Notifier struct {
	path string
	src  Source
	opts Options
	m    metrics

	mu       sync.Mutex
	channels map[string]*Channel
	runCtx   context.Context // set while Run runs
	stop     map[string]context.CancelFunc
	wg       sync.WaitGroup
}

type metrics struct {
	delivered, failed, dropped *prometheus.CounterVec
}

// Open loads the channels kept at path.
func Open(path string, src Source, opts Options) (*Notifier, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = time.Second
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = max(5*time.Minute, opts.BackoffMin)
	}
	if opts.GiveUpAfter <= 0 {
		opts.GiveUpAfter = 10
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{path: path, src: src, opts: opts, channels: map[string]*Channel{}, stop: map[string]context.CancelFunc{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("notify: %w", err)
	default:
		var list []*Channel
		if err := json.Unmarshal(b, &list); err != nil {
			return nil, fmt.Errorf("notify: %s: %w", path, err)
		}
		for _, c := range list {
			n.channels[c.ID] = c
		}
	}
	n.m = metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_notify_delivered_total", Help: "Alerts delivered to notification channels."}, []string{"format"}),
		failed:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_notify_failures_total", Help: "Failed notification attempts (each is retried)."}, []string{"format"}),
		dropped:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_notify_dropped_total", Help: "Alerts given up on after the receiver kept rejecting them."}, []string{"format"}),
	}
	if opts.Registerer != nil {
		pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "custos_notify_pending", Help: "Alerts waiting to be delivered, over all channels."}, func() float64 {
			total := 0
			for _, s := range n.All() {
				total += s.Pending
			}
			return float64(total)
		})
		for _, c := range []prometheus.Collector{n.m.delivered, n.m.failed, n.m.dropped, pending} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("notify: metrics: %w", err)
			}
		}
	}
	return n, nil
}

// Run delivers until ctx ends, then waits for the workers to stop.
func (n *Notifier) Run(ctx context.Context) {
	n.mu.Lock()
	n.runCtx = ctx
	for id := range n.channels {
		n.start(id)
	}
	n.mu.Unlock()
	<-ctx.Done()
	n.mu.Lock()
	n.runCtx = nil
	n.mu.Unlock()
	n.wg.Wait()
}

// start runs a worker for channel id; callers hold n.mu.
func (n *Notifier) start(id string) {
	if n.runCtx == nil {
		return
	}
	ctx, cancel := context.WithCancel(n.runCtx)
	n.stop[id] = cancel
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer cancel()
		n.work(ctx, id)
	}()
}

// Add validates c and adds it as a channel of tenant. It starts after the
// latest alert: a new channel is not flooded with history.
func (n *Notifier) Add(tenant string, c Channel, by string) (Status, error) {
	c.Tenant, c.CreatedBy = tenant, by
	if err := validate(&c); err != nil {
		return Status{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	count := 0
	for _, o := range n.channels {
		if o.Tenant == tenant {
			count++
		}
	}
	if count >= MaxChannels {
		return Status{}, fmt.Errorf("%w: tenant %s has %d channels already (at most %d)", ErrInvalid, tenant, count, MaxChannels)
	}
	c.ID = newID()
	c.Created = time.Now().UTC()
	c.Through = n.src.LastSeq()
	c.Delivered, c.Dropped, c.LastOK, c.LastError, c.FailingAt = 0, 0, time.Time{}, "", time.Time{}
	n.channels[c.ID] = &c
	if err := n.saveLocked(); err != nil {
		delete(n.channels, c.ID)
		return Status{}, err
	}
	n.start(c.ID)
	return n.status(&c), nil
}

// Remove deletes a tenant's channel.
func (n *Notifier) Remove(tenant, id string) (Status, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.channels[id]
	if !ok || c.Tenant != tenant {
		return Status{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	delete(n.channels, id)
	if err := n.saveLocked(); err != nil {
		n.channels[id] = c
		return Status{}, err
	}
	if stop := n.stop[id]; stop != nil {
		stop()
		delete(n.stop, id)
	}
	return n.status(c), nil
}

// List returns the tenant's channels.
func (n *Notifier) List(tenant string) []Status {
	var out []Status
	for _, s := range n.All() {
		if s.Tenant == tenant {
			out = append(out, s)
		}
	}
	return out
}

// All returns every tenant's channels.
func (n *Notifier) All() []Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Status, 0, len(n.channels))
	for _, c := range n.channels {
		out = append(out, n.status(c))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// status describes c; callers hold n.mu.
func (n *Notifier) status(c *Channel) Status {
	s := Status{Channel: *c, SecretSet: c.Secret != ""}
	s.Secret = ""
	s.URL = redact(c.URL)
	for _, a := range n.src.Opened(c.Tenant, c.Through) {
		if atLeast(a.Severity, c.MinSeverity) {
			s.Pending++
		}
	}
	return s
}

// Test sends a sample alert to a tenant's channel now and reports how the
// receiver answered. It moves no cursor.
func (n *Notifier) Test(ctx context.Context, tenant, id string) error {
	n.mu.Lock()
	c, ok := n.channels[id]
	var cc Channel
	if ok {
		cc = *c
	}
	n.mu.Unlock()
	if !ok || cc.Tenant != tenant {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	now := time.Now().UTC()
	sample := alert.Alert{ID: "test-" + newID(), Tenant: tenant, Detector: "custos-test", Title: "custos test notification",
		Severity: "informational", Entity: cc.Name, Status: alert.StatusOpen, Count: 1, FirstSeen: now, LastSeen: now,
		Created: now, Updated: now, Explanation: "A test of notification channel " + cc.Name + "; no action needed."}
	return n.send(ctx, cc, sample, "alert.test")
}

// work delivers channel id's alerts until ctx ends or the channel goes.
func (n *Notifier) work(ctx context.Context, id string) {
	log := n.opts.Logger.With("channel", id)
	attempt := 0
	for {
		signal := n.src.OpenedSignal()
		c, ok := n.channel(id)
		if !ok {
			return
		}
		next, skipped := n.next(c)
		if next == nil {
			if skipped > c.Through {
				n.advance(id, skipped, false, false)
			}
			select {
			case <-ctx.Done():
				return
			case <-signal:
			}
			continue
		}
		err := n.send(ctx, c, *next, "alert.opened")
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			n.m.delivered.WithLabelValues(c.Format).Inc()
			n.advance(id, next.Seq, true, false)
			attempt = 0
			continue
		}
		attempt++
		n.m.failed.WithLabelValues(c.Format).Inc()
		var re *rejectedError
		if errors.As(err, &re) && attempt >= n.opts.GiveUpAfter {
			log.Error("notification dropped: the receiver keeps rejecting it", "alert", next.ID, "attempts", attempt, "err", err)
			n.m.dropped.WithLabelValues(c.Format).Inc()
			n.fail(id, err)
			n.advance(id, next.Seq, false, true)
			attempt = 0
			continue
		}
		n.fail(id, err)
		wait := n.backoff(attempt)
		log.Warn("notification failed; will retry", "alert", next.ID, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (n *Notifier) channel(id string) (Channel, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.channels[id]
	if !ok {
		return Channel{}, false
	}
	return *c, true
}

// next finds the first alert c should deliver, and the Seq up to which
// alerts below c's severity can be passed over.
func (n *Notifier) next(c Channel) (*alert.Alert, uint64) {
	skipped := c.Through
	for _, a := range n.src.Opened(c.Tenant, c.Through) {
		if atLeast(a.Severity, c.MinSeverity) {
			return &a, skipped
		}
		skipped = a.Seq
	}
	return nil, skipped
}

// advance moves channel id's cursor to seq and saves it.
func (n *Notifier) advance(id string, seq uint64, delivered, dropped bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.channels[id]
	if !ok || seq <= c.Through {
		return
	}
	c.Through = seq
	switch {
	case delivered:
		c.Delivered++
		c.LastOK = time.Now().UTC()
		c.LastError, c.FailingAt = "", time.Time{}
	case dropped:
		c.Dropped++
	}
	if err := n.saveLocked(); err != nil {
		// The cursor stays advanced in memory; after a restart the alert
		// is sent again, which at-least-once allows.
		n.opts.Logger.Error("notification cursor not saved", "channel", id, "err", err)
	}
}

// fail records err as channel id's last error (in memory; the cursor
// save that follows a success or drop persists it).
func (n *Notifier) fail(id string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.channels[id]; ok {
		c.LastError = err.Error()
		if c.FailingAt.IsZero() {
			c.FailingAt = time.Now().UTC()
		}
	}
}

func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.opts.BackoffMin
	for i := 1; i < attempt && d < n.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, n.opts.BackoffMax)
	// ±20 % so channels failing together do not retry in step.
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

// saveLocked writes every channel; callers hold n.mu.
func (n *Notifier) saveLocked() error {
	list := make([]*Channel, 0, len(n.channels))
	for _, c := range n.channels {
		list = append(list, c)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(n.path, b, 0o600); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// rejectedError is a 4xx answer other than 408 and 429: retrying the same
// payload is unlikely to help.
type rejectedError struct {
	status int
	body   string
}

func (e *rejectedError) Error() string {
	return fmt.Sprintf("receiver rejected the notification: HTTP %d %s", e.status, e.body)
}

// send posts a to c's URL in c's format.
func (n *Notifier) send(ctx context.Context, c Channel, a alert.Alert, event string) error {
	body, err := payload(c.Format, event, a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "custos-notify/1")
	req.Header.Set("X-Custos-Event", event)
	req.Header.Set("X-Custos-Delivery", c.ID+"."+a.ID)
	if c.Secret != "" {
		req.Header.Set("X-Custos-Signature", Sign(c.Secret, time.Now(), body))
	}
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("deliver to %s: %w", redact(c.URL), scrub(err, c.URL))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return &rejectedError{resp.StatusCode, strings.TrimSpace(string(msg))}
	}
	return fmt.Errorf("deliver to %s: HTTP %d %s", redact(c.URL), resp.StatusCode, strings.TrimSpace(string(msg)))
}

// Sign returns the X-Custos-Signature value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<unix seconds>.<body>">".
// Receivers recompute it with the shared secret and reject old t to stop
// replays.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a signature made by Sign with secret over body, and that
// it is no older than maxAge.
func Verify(secret, signature string, body []byte, now time.Time, maxAge time.Duration) error {
	var ts, sig string
	for part := range strings.SplitSeq(signature, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("malformed signature")
	}
	if age := now.Sub(time.Unix(sec, 0)); age > maxAge || age < -maxAge {
		return fmt.Errorf("signature timestamp %s is outside %s", time.Unix(sec, 0).UTC().Format(time.RFC3339), maxAge)
	}
	want := Sign(secret, time.Unix(sec, 0), body)
	if !hmac.Equal([]byte(want), []byte("t="+ts+",v1="+sig)) {
		return errors.New("signature mismatch")
	}
	return nil
}

func validate(c *Channel) error {
	c.Name = strings.TrimSpace(c.Name)
	if c.Name == "" || len(c.Name) > 100 {
		return fmt.Errorf("%w: name: want 1 to 100 characters", ErrInvalid)
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%w: url: want an absolute http or https URL", ErrInvalid)
	}
	if u.User != nil {
		return fmt.Errorf("%w: url: credentials in the URL are not allowed; use secret for signing", ErrInvalid)
	}
	if c.Format == "" {
		c.Format = FormatJSON
	}
	if !slices.Contains([]string{FormatJSON, FormatTeams, FormatSlack}, c.Format) {
		return fmt.Errorf("%w: format %q: want json, teams or slack", ErrInvalid, c.Format)
	}
	if c.MinSeverity == "" {
		c.MinSeverity = "low"
	}
	if !slices.Contains(alert.Severities, c.MinSeverity) {
		return fmt.Errorf("%w: minSeverity %q: want one of %s", ErrInvalid, c.MinSeverity, strings.Join(alert.Severities, ", "))
	}
	if c.Format == FormatJSON && c.Secret == "" {
		return fmt.Errorf("%w: secret: a json channel needs an HMAC secret (16 or more characters) so receivers can check where alerts come from", ErrInvalid)
	}
	if c.Secret != "" && len(c.Secret) < 16 {
		return fmt.Errorf("%w: secret: want 16 or more characters", ErrInvalid)
	}
	return nil
}

// atLeast reports whether severity sev is at least min.
func atLeast(sev, min string) bool {
	return slices.Index(alert.Severities, sev) >= slices.Index(alert.Severities, min)
}

// redact keeps a URL's scheme and host: webhook paths and queries of Slack
// and Teams carry their credentials.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	if u.Path == "" || u.Path == "/" {
		return u.Scheme + "://" + u.Host + "/"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// scrub removes the full URL from err's text (net/http quotes it).
func scrub(err error, raw string) error {
	return errors.New(strings.ReplaceAll(err.Error(), raw, redact(raw)))
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
