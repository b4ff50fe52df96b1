// Package client talks to a custos server over its HTTP API (docs/api.md):
// tenants, tokens and ingest. Ingest batches are compressed and retried on
// the answers that mean "nothing was stored, try again" (429, 503, other 5xx,
// broken connections); re-sending is safe because the server deduplicates
// records by (tenant, Id). Uploader adds batching, concurrency and the
// mapping of per-record errors back to file and line.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultServer is where the CLI looks for a server when none is given.
const DefaultServer = "http://127.0.0.1:8470"

// Client is a custos API client. Its exported fields may be changed after
// New and before first use; it is safe for concurrent use afterwards.
type Client struct {
	// HTTP sends the requests. New sets one with connect and response-header
	// timeouts and enough idle connections for concurrent uploads.
	HTTP *http.Client
	// Encoding is the Content-Encoding of ingest batches: "zstd" (default),
	// "gzip" or "identity".
	Encoding string
	// Attempts bounds the tries of one ingest request (default 8).
	Attempts int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// retries (default 500ms and 30s). A Retry-After answer waits at least
	// as long as the server asked.
	MinBackoff, MaxBackoff time.Duration

	server string // base URL without a trailing slash
	token  string

	zstdOnce sync.Once
	zstd     zstdEncoder
	zstdErr  error
	gzipPool sync.Pool
}

// New returns a client for the server at base URL server (a bare host:port
// means http) authenticating with the API token.
func New(server, token string) *Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute, // an ingest answer waits for fsync, which can be slow under load
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   32, // the default of 2 would reconnect for every batch of a concurrent upload
		ForceAttemptHTTP2:     true,
	}
	return &Client{
		HTTP:       &http.Client{Transport: tr},
		Encoding:   "zstd",
		Attempts:   8,
		MinBackoff: 500 * time.Millisecond,
		MaxBackoff: 30 * time.Second,
		server:     NormalizeServer(server),
		token:      token,
	}
}

// NormalizeServer adds http:// to a bare host:port and drops trailing slashes.
func NormalizeServer(s string) string {
	s = strings.TrimSpace(s)
	if s != "" && !strings.Contains(s, "://") {
		s = "http://" + s
	}
	return strings.TrimRight(s, "/")
}

// Server is the base URL the client talks to.
func (c *Client) Server() string { return c.server }

// APIError is an error answer of the server.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the server's "error" text, or the body when it was not JSON
	// RetryAfter is the server's Retry-After, zero when absent.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	return fmt.Sprintf("server answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Tenant is one tenant.
type Tenant struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// TokenRequest asks for a new API token.
type TokenRequest struct {
	Tenant  string    // empty for a global token
	Role    string    // ingest, read or admin
	Name    string    // what it is for, shown in listings and kept as the ingest source
	Expires time.Time // zero for a token that does not expire
}

// Token describes an API token; the secret is never listed.
type Token struct {
	ID      string     `json:"id"`
	Tenant  string     `json:"tenant"`
	Role    string     `json:"role"`
	Name    string     `json:"name"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// CreatedToken is a new token with its secret, shown only this once.
type CreatedToken struct {
	Token
	Secret string `json:"token"` // the whole bearer token, custos_<id>_<secret>
}

// CreateTenant creates a tenant (global admin token needed).
func (c *Client) CreateTenant(ctx context.Context, id, name string) (Tenant, error) {
	var t Tenant
	err := c.do(ctx, http.MethodPost, "/api/v1/tenants", map[string]string{"id": id, "name": name}, &t)
	return t, err
}

// ListTenants lists the tenants the token may see.
func (c *Client) ListTenants(ctx context.Context) ([]Tenant, error) {
	var out struct {
		Tenants []Tenant `json:"tenants"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/tenants", nil, &out)
	return out.Tenants, err
}

// CreateToken creates an API token.
func (c *Client) CreateToken(ctx context.Context, r TokenRequest) (CreatedToken, error) {
	body := struct {
		Tenant  string     `json:"tenant"`
		Role    string     `json:"role"`
		Name    string     `json:"name"`
		Expires *time.Time `json:"expires,omitempty"`
	}{Tenant: r.Tenant, Role: r.Role, Name: r.Name}
	if !r.Expires.IsZero() {
		e := r.Expires.UTC()
		body.Expires = &e
	}
	var t CreatedToken
	err := c.do(ctx, http.MethodPost, "/api/v1/tokens", body, &t)
	return t, err
}

// ListTokens lists API tokens, of one tenant when tenant is not empty.
func (c *Client) ListTokens(ctx context.Context, tenant string) ([]Token, error) {
	p := "/api/v1/tokens"
	if tenant != "" {
		p += "?tenant=" + url.QueryEscape(tenant)
	}
	var out struct {
		Tokens []Token `json:"tokens"`
	}
	err := c.do(ctx, http.MethodGet, p, nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes the token with the given id.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), nil, nil)
}

// do sends one request with a JSON body (when in is not nil) and decodes a
// JSON answer into out (when not nil). Administrative calls are not retried:
// creating a tenant twice would turn a lost answer into a 409.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err // a *url.Error: it names the method and URL
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readAPIError(resp)
	}
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)) // so the connection can be reused
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	if c.server == "" {
		return nil, errors.New("no server URL")
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "custos-client")
	return req, nil
}

// readAPIError turns an error answer into an *APIError.
func readAPIError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	e := &APIError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var v struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &v) == nil && v.Error != "" {
		e.Message = v.Error
	} else if s := strings.TrimSpace(string(b)); s != "" {
		e.Message = s
	} else {
		e.Message = "(no details)"
	}
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date; zero when absent or
// unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
