package m365

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// APIError is an error answer of the Management Activity API: the HTTP
// status and the documented {"error":{"code":"AF…","message":"…"}} body.
type APIError struct {
	Status  int
	Code    string // e.g. AF20022; empty if the body had none
	Message string
	Op      string // what we were doing, e.g. "list content Audit.Exchange"
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s: HTTP %d", e.Op, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Error codes the collector acts on (reference, "Errors").
const (
	codeNoSubscription = "AF20022" // no subscription for the content type: start it
	codeDisabled       = "AF20023" // subscription disabled by an admin
	codeAlreadyEnabled = "AF20024" // start on an enabled subscription (seen in practice, not in the published table)
	codeExpired        = "AF20051" // content older than 7 days
	codeThrottled      = "AF429"   // too many requests, usually with HTTP 403
	codeInternal       = "AF50000" // internal error: retry
)

// IsCode reports whether err is an APIError with the given AF code.
func IsCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// maxBody bounds what one response may hold; real content blobs are a few MB.
const maxBody = 256 << 20

// client talks to the API for one tenant. Its limiter and throttle gate are
// per tenant because the API assigns quota per tenant.
type client struct {
	cfg    *Config
	tenant string
	root   *url.URL
	tokens *tokenSource
	lim    *rate.Limiter
	m      *metrics
	emit   func(Event)

	gateMu    sync.Mutex
	notBefore time.Time // real time; throttling pauses every worker of the tenant
	rngMu     sync.Mutex
	rng       *rand.Rand
}

func newClient(cfg *Config, t Tenant, m *metrics, emit func(Event)) (*client, error) {
	root, err := url.Parse(cfg.APIRoot)
	if err != nil {
		return nil, fmt.Errorf("api root: %w", err)
	}
	return &client{
		cfg:    cfg,
		tenant: t.ID,
		root:   root,
		tokens: newTokenSource(*cfg, t),
		lim:    rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst),
		m:      m,
		emit:   emit,
		rng:    rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}, nil
}

// feedURL is {root}/api/v1.0/{tenant}/activity/feed/{op} with the query q
// (PublisherIdentifier is added by do).
func (c *client) feedURL(op string, q url.Values) string {
	u := *c.root
	u.Path = strings.TrimRight(u.Path, "/") + "/api/v1.0/" + url.PathEscape(c.tenant) + "/activity/feed/" + op
	u.RawQuery = q.Encode()
	return u.String()
}

// checkURL refuses to send the bearer token anywhere but the configured API
// root: contentUri and NextPageUri come from the server's answers, and a
// token for the tenant's audit log must not follow a rogue link.
func (c *client) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q: %w", raw, err)
	}
	if !strings.EqualFold(u.Scheme, c.root.Scheme) || !strings.EqualFold(u.Host, c.root.Host) ||
		!strings.HasPrefix(u.Path, strings.TrimRight(c.root.Path, "/")+"/api/") {
		return nil, fmt.Errorf("URL %q is outside the API root %s; refusing to send the token there", raw, c.cfg.APIRoot)
	}
	return u, nil
}

type response struct {
	body   []byte
	header http.Header
}

// do sends one API request, retrying throttling, server errors, transport
// errors and a refused (expired) token with backoff. Other errors return at
// once as *APIError.
func (c *client) do(ctx context.Context, op, method, rawURL string) (*response, error) {
	u, err := c.checkURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	q := u.Query()
	if q.Get("PublisherIdentifier") == "" {
		// NextPageUri and contentUri come without it; quota depends on it.
		q.Set("PublisherIdentifier", c.cfg.PublisherIdentifier)
		u.RawQuery = q.Encode()
	}
	target := u.String()
	var last error
	for attempt := 0; attempt < c.cfg.MaxAttempts; attempt++ {
		if attempt > 0 {
			c.m.retries.WithLabelValues(c.tenant, retryReason(last)).Inc()
			c.emit(Event{Kind: EventRetry, Tenant: c.tenant, Err: last, Attempt: attempt})
			c.cfg.Logger.Debug("m365: retrying", "tenant", c.tenant, "op", op, "attempt", attempt, "err", last)
		}
		if err := c.waitGate(ctx); err != nil {
			return nil, err
		}
		if err := c.lim.Wait(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		resp, retryAfter, err := c.once(ctx, op, method, target)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		var re *retryable
		if !errors.As(err, &re) {
			return nil, err
		}
		last = re.err
		delay := c.backoff(attempt)
		if retryAfter > delay {
			delay = retryAfter
		}
		if re.reason == reasonThrottled {
			// Pause the whole tenant, not just this worker: the others
			// would only earn more throttling.
			c.pause(delay)
		} else if err := sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil, fmt.Errorf("%s: giving up after %d attempts: %w", op, c.cfg.MaxAttempts, last)
}

const (
	reasonThrottled = "throttled"
	reasonServer    = "server"
	reasonNetwork   = "network"
	reasonToken     = "token"
)

type retryable struct {
	reason string
	err    error
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

func retryReason(err error) string {
	var re *retryable
	if errors.As(err, &re) {
		return re.reason
	}
	return reasonServer
}

// once sends the request a single time. A retryable failure comes back as
// *retryable with the server's Retry-After, if any.
func (c *client) once(ctx context.Context, op, method, target string) (*response, time.Duration, error) {
	tok, err := c.tokens.get(ctx)
	if err != nil {
		var te *tokenError
		if errors.As(err, &te) && te.retryable {
			return nil, 0, &retryable{reasonToken, fmt.Errorf("%s: %w", op, err)}
		}
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, 0, &retryable{reasonNetwork, fmt.Errorf("%s: %w", op, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, 0, &retryable{reasonNetwork, fmt.Errorf("%s: reading response: %w", op, err)}
	}
	if len(body) > maxBody {
		return nil, 0, fmt.Errorf("%s: response larger than %d bytes", op, maxBody)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return &response{body: body, header: resp.Header}, 0, nil
	}
	ae := &APIError{Status: resp.StatusCode, Op: op}
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil {
		ae.Code, ae.Message = eb.Error.Code, firstLine(eb.Error.Message)
	} else if len(body) > 0 {
		ae.Message = firstLine(string(body))
	}
	retryAfter := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		// Expired or revoked token: take a fresh one. A wrong secret fails
		// at the token endpoint instead, so this does not loop on bad config.
		c.tokens.invalidate(tok)
		return nil, 0, &retryable{reasonToken, ae}
	case resp.StatusCode == http.StatusTooManyRequests || ae.Code == codeThrottled:
		return nil, retryAfter, &retryable{reasonThrottled, ae}
	case resp.StatusCode >= 500 || ae.Code == codeInternal:
		return nil, retryAfter, &retryable{reasonServer, ae}
	}
	return nil, 0, ae
}

// backoff is exponential with full jitter, so many workers throttled at
// once do not come back in step.
func (c *client) backoff(attempt int) time.Duration {
	d := c.cfg.BaseDelay
	for i := 0; i < attempt && d < c.cfg.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, c.cfg.MaxDelay)
	if d <= 0 {
		return 0
	}
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return time.Duration(c.rng.Int64N(int64(d) + 1))
}

func (c *client) pause(d time.Duration) {
	c.gateMu.Lock()
	if t := time.Now().Add(d); t.After(c.notBefore) {
		c.notBefore = t
	}
	c.gateMu.Unlock()
}

func (c *client) waitGate(ctx context.Context) error {
	for {
		c.gateMu.Lock()
		d := time.Until(c.notBefore)
		c.gateMu.Unlock()
		if d <= 0 {
			return nil
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// parseRetryAfter reads delay-seconds or an HTTP date; anything else is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(min(n, 3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), time.Hour)
	}
	return 0
}

// subscription is one entry of /subscriptions/list.
type subscription struct {
	ContentType string `json:"contentType"`
	Status      string `json:"status"`
}

func (c *client) listSubscriptions(ctx context.Context) ([]subscription, error) {
	resp, err := c.do(ctx, "list subscriptions", http.MethodGet, c.feedURL("subscriptions/list", nil))
	if err != nil {
		return nil, err
	}
	var subs []subscription
	if err := json.Unmarshal(resp.body, &subs); err != nil {
		return nil, fmt.Errorf("list subscriptions: decoding: %w", err)
	}
	return subs, nil
}

func (c *client) startSubscription(ctx context.Context, ct string) error {
	_, err := c.do(ctx, "start subscription "+ct, http.MethodPost, c.feedURL("subscriptions/start", url.Values{"contentType": {ct}}))
	if IsCode(err, codeAlreadyEnabled) {
		return nil
	}
	return err
}

// blobRef is one entry of /subscriptions/content.
type blobRef struct {
	ContentType       string    `json:"contentType"`
	ContentID         string    `json:"contentId"`
	ContentURI        string    `json:"contentUri"`
	ContentCreated    time.Time `json:"contentCreated"`
	ContentExpiration time.Time `json:"contentExpiration"`
}

// apiTime is the startTime/endTime format: UTC to the second, no zone (one
// of the forms the reference lists).
const apiTime = "2006-01-02T15:04:05"

// listContent lists the blobs created in [start, end), following NextPageUri
// until a page comes without it.
func (c *client) listContent(ctx context.Context, ct string, start, end time.Time) ([]blobRef, error) {
	op := "list content " + ct
	next := c.feedURL("subscriptions/content", url.Values{
		"contentType": {ct},
		"startTime":   {start.UTC().Format(apiTime)},
		"endTime":     {end.UTC().Format(apiTime)},
	})
	var all []blobRef
	seenPages := map[string]bool{}
	for page := 1; next != ""; page++ {
		if seenPages[next] {
			return nil, fmt.Errorf("%s: NextPageUri repeats %s", op, next)
		}
		seenPages[next] = true
		resp, err := c.do(ctx, op, http.MethodGet, next)
		if err != nil {
			return nil, err
		}
		var refs []blobRef
		if err := json.Unmarshal(resp.body, &refs); err != nil {
			return nil, fmt.Errorf("%s: decoding page %d: %w", op, page, err)
		}
		all = append(all, refs...)
		next = resp.header.Get("NextPageUri")
	}
	return all, nil
}

// fetchBlob returns the records of one content blob, each kept verbatim.
func (c *client) fetchBlob(ctx context.Context, b blobRef) ([]json.RawMessage, error) {
	resp, err := c.do(ctx, "fetch content "+b.ContentID, http.MethodGet, b.ContentURI)
	if err != nil {
		return nil, err
	}
	var recs []json.RawMessage
	if err := json.Unmarshal(resp.body, &recs); err != nil {
		return nil, fmt.Errorf("fetch content %s: decoding: %w", b.ContentID, err)
	}
	return recs, nil
}
