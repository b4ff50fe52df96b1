package m365

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tokenSource gets app-only access tokens with the OAuth2 client-credentials
// grant at the tenant's v1 token endpoint ({authority}/{tenant}/oauth2/token,
// resource = API root), the form Microsoft's Management API documentation
// uses, and caches each until shortly before it expires.
type tokenSource struct {
	endpoint string
	form     url.Values // may hold the secret: never log it
	// cert, when set, replaces the secret: each request carries a fresh
	// client assertion for audience (the endpoint) signed with its key.
	cert     *Certificate
	clientID string
	audience string
	hc       *http.Client
	now      func() time.Time

	mu  sync.Mutex
	tok string
	exp time.Time
}

func newTokenSource(cfg Config, t Tenant) *tokenSource {
	ts := &tokenSource{
		endpoint: cfg.Authority + "/" + url.PathEscape(t.ID) + "/oauth2/token",
		form: url.Values{
			"grant_type": {"client_credentials"},
			"client_id":  {t.ClientID},
			"resource":   {cfg.APIRoot},
		},
		cert:     t.Certificate,
		clientID: t.ClientID,
		hc:       cfg.HTTPClient,
		now:      cfg.Now,
	}
	// Entra checks the assertion's audience against its token endpoint.
	ts.audience = ts.endpoint
	if ts.cert == nil {
		ts.form.Set("client_secret", t.ClientSecret)
	}
	return ts
}

// body is the form of one token request. A certificate credential signs a
// new assertion each time: an assertion is short-lived by design.
func (ts *tokenSource) body() (string, error) {
	if ts.cert == nil {
		return ts.form.Encode(), nil
	}
	a, err := ts.cert.assertion(ts.audience, ts.clientID, ts.now())
	if err != nil {
		return "", err
	}
	f := url.Values{}
	for k, v := range ts.form {
		f[k] = v
	}
	f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
	f.Set("client_assertion", a)
	return f.Encode(), nil
}

// tokenResponse is the v1 endpoint's answer. expires_in arrives as a string
// there ("3599") and as a number from the v2 endpoint; flexInt takes both.
type tokenResponse struct {
	TokenType   string  `json:"token_type"`
	AccessToken string  `json:"access_token"`
	ExpiresIn   flexInt `json:"expires_in"`
	Error       string  `json:"error"`
	Description string  `json:"error_description"`
}

type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("expires_in %s: %w", b, err)
	}
	*f = flexInt(n)
	return nil
}

// get returns a valid cached token or fetches a new one. Fetching under the
// lock means concurrent workers wait for one request instead of each
// asking the authority.
func (ts *tokenSource) get(ctx context.Context) (string, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.tok != "" && ts.now().Before(ts.exp) {
		return ts.tok, nil
	}
	tok, lifetime, err := ts.fetch(ctx)
	if err != nil {
		return "", err
	}
	// Renew five minutes early (or at half the lifetime of a short token)
	// so a token never expires between being taken and being checked.
	early := 5 * time.Minute
	if lifetime < 2*early {
		early = lifetime / 2
	}
	ts.tok, ts.exp = tok, ts.now().Add(lifetime-early)
	return tok, nil
}

// invalidate drops tok if it is still the cached one, after the API refused
// it (revoked, or the clocks disagree about its expiry).
func (ts *tokenSource) invalidate(tok string) {
	ts.mu.Lock()
	if ts.tok == tok {
		ts.tok = ""
	}
	ts.mu.Unlock()
}

// tokenError is a refusal by the authority; retryable says whether asking
// again may help (throttling, server trouble).
type tokenError struct {
	status    int
	msg       string
	retryable bool
}

func (e *tokenError) Error() string { return e.msg }

func (ts *tokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	body, err := ts.body()
	if err != nil {
		return "", 0, fmt.Errorf("token request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.endpoint, strings.NewReader(body))
	if err != nil {
		return "", 0, fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := ts.hc.Do(req)
	if err != nil {
		return "", 0, &tokenError{msg: fmt.Sprintf("token request to %s: %v", ts.endpoint, err), retryable: true}
	}
	defer resp.Body.Close()
	rbody, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", 0, &tokenError{msg: fmt.Sprintf("token response from %s: %v", ts.endpoint, err), retryable: true}
	}
	var tr tokenResponse
	jerr := json.Unmarshal(rbody, &tr)
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("token endpoint %s refused: HTTP %d", ts.endpoint, resp.StatusCode)
		if jerr == nil && tr.Error != "" {
			// The description is the authority's text (AADSTS code and
			// reason); it never contains the secret we sent.
			msg += ": " + tr.Error + ": " + firstLine(tr.Description)
		}
		return "", 0, &tokenError{status: resp.StatusCode, msg: msg,
			retryable: resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500}
	}
	if jerr != nil {
		return "", 0, fmt.Errorf("token response from %s: %w", ts.endpoint, jerr)
	}
	if tr.AccessToken == "" {
		return "", 0, fmt.Errorf("token response from %s has no access_token", ts.endpoint)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return "", 0, fmt.Errorf("token response from %s: token type %q, want Bearer", ts.endpoint, tr.TokenType)
	}
	lifetime := time.Duration(tr.ExpiresIn) * time.Second
	if lifetime <= 0 {
		// No lifetime given: assume the shortest Entra issues (one hour is
		// the norm; 60-90 minutes are randomised) minus margin.
		lifetime = 30 * time.Minute
	}
	return tr.AccessToken, lifetime, nil
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
