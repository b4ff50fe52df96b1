// Package m365test is a fake Office 365 Management Activity API and Entra
// token endpoint for tests, served over real HTTP (httptest on loopback).
//
// It follows the published reference: subscriptions start/list/stop,
// content listing on contentCreated in windows of at most 24 hours within
// the last 7 days, paging through the NextPageUri header, content blobs that
// are JSON arrays of records, and errors as {"error":{"code","message"}}.
// Faults can be injected: throttling (HTTP 429 with Retry-After, and 403
// with AF429 as the troubleshooting guide shows), server errors, blobs
// listed twice, records present in two blobs, blobs listed hours after their
// contentCreated, expired content (AF20051) and revoked tokens.
//
// Records come from the simulator (package simulate), so every record has a
// unique Id and the test can check that each arrives exactly once.
package m365test

import (
	"cmp"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custos-audit/custos/simulate"
)

// TenantOptions describes one fake tenant.
type TenantOptions struct {
	ID, ClientID, ClientSecret string
	// Certificate is a certificate credential registered on the app: a
	// client assertion signed by its key is accepted as well as the secret.
	Certificate *x509.Certificate
	// Records are simulated for Users over Days from Start, at Rate records
	// per user per day (see simulate.Config).
	Users int
	Days  int
	Start time.Time
	Rate  float64
	// Subscribed content types start enabled; Disabled ones start disabled
	// (as if by an admin); the rest have no subscription (AF20022).
	Subscribed []string
	Disabled   []string
}

// Faults are injected at random (seeded) per request or per blob.
type Faults struct {
	ThrottleRate    float64 // API requests refused as throttled
	RetryAfter      int     // seconds sent in Retry-After with HTTP 429
	ServerErrorRate float64 // API requests answered 500 AF50000 or 503

	DuplicateListRate   float64       // blobs listed twice in one listing
	DuplicateRecordRate float64       // records also copied into another blob
	LateRate            float64       // blobs listed only LateBy after contentCreated
	LateBy              time.Duration // default 3h
	ExpiredRate         float64       // blobs answering AF20051 however early they are fetched
}

// Options configures a Server.
type Options struct {
	Tenants []TenantOptions
	// Now is the server's clock. Default time.Now.
	Now func() time.Time
	// PageSize is the most blobs per content listing page. Default 20.
	PageSize int
	// BlobSpan groups records into blobs by CreationTime; Latency is added
	// to the end of the span to make contentCreated. Defaults 10m and 45m
	// (the guide says core workloads typically show up in 60-90 minutes).
	BlobSpan, Latency time.Duration
	// TokenLifetime of issued access tokens. Default 1h.
	TokenLifetime time.Duration
	Seed          uint64
	Faults        Faults
}

// ContentTypes served, and which workloads feed them.
var workloadType = map[string]string{
	"AzureActiveDirectory": "Audit.AzureActiveDirectory",
	"Exchange":             "Audit.Exchange",
	"SharePoint":           "Audit.SharePoint",
	"OneDrive":             "Audit.SharePoint",
}

var contentTypes = []string{"Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All"}

type blob struct {
	id      string
	ct      string
	created time.Time
	visible time.Time // when listings start to show it
	twice   bool      // listed twice
	expired bool      // answers AF20051
	body    []byte
	ids     []string
}

type tenant struct {
	opts   TenantOptions
	subs   map[string]string // content type -> "enabled" / "disabled"
	blobs  map[string][]*blob
	byID   map[string]*blob
	recIDs map[string][]string // record Id -> blobs holding it
	until  time.Time           // real time until which the tenant is throttled
}

type token struct {
	tenant  string
	expires time.Time
}

// Server is the fake API. It is an http.Handler.
type Server struct {
	opts Options
	now  func() time.Time

	mu      sync.Mutex
	rng     *rand.Rand
	faults  Faults
	tenants map[string]*tenant
	tokens  map[string]token
	tokSeq  int
	stats   Stats
	fetches map[string]int
}

// Stats count what the server saw and did.
type Stats struct {
	Requests         int // API requests (not token requests)
	Tokens           int // tokens issued
	TokenRefused     int // API requests with a missing, unknown or expired token
	Throttled        int
	ServerErrors     int
	MissingPublisher int // API requests without PublisherIdentifier
	EarlyRetries     int // requests that came back while the tenant was still throttled
	BadWindows       int // content listings refused for their time range
	Listings         int // content listing pages served
	BlobFetches      int // content blobs served
	Expired          int // AF20051 answers
	Started          int // subscriptions started
	AssertionRefused int // client assertions refused
}

// New builds the server's content from the options.
func New(opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PageSize == 0 {
		opts.PageSize = 20
	}
	if opts.BlobSpan == 0 {
		opts.BlobSpan = 10 * time.Minute
	}
	if opts.Latency == 0 {
		opts.Latency = 45 * time.Minute
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.Faults.LateBy == 0 {
		opts.Faults.LateBy = 3 * time.Hour
	}
	s := &Server{
		opts: opts, now: opts.Now, faults: opts.Faults,
		rng:     rand.New(rand.NewPCG(opts.Seed, 0x6d333635)),
		tenants: map[string]*tenant{}, tokens: map[string]token{}, fetches: map[string]int{},
	}
	for i, to := range opts.Tenants {
		t, err := s.build(i, to)
		if err != nil {
			return nil, fmt.Errorf("m365test: tenant %s: %w", to.ID, err)
		}
		s.tenants[strings.ToLower(to.ID)] = t
	}
	return s, nil
}

func (s *Server) build(n int, to TenantOptions) (*tenant, error) {
	gen, err := simulate.New(simulate.Config{
		Tenant: fmt.Sprintf("tenant%d", n), Users: to.Users, Days: to.Days, Start: to.Start,
		Rate: to.Rate, Seed: int64(s.opts.Seed) + int64(n),
	})
	if err != nil {
		return nil, err
	}
	t := &tenant{opts: to, subs: map[string]string{}, blobs: map[string][]*blob{}, byID: map[string]*blob{}, recIDs: map[string][]string{}}
	for _, ct := range to.Subscribed {
		t.subs[ct] = "enabled"
	}
	for _, ct := range to.Disabled {
		t.subs[ct] = "disabled"
	}
	type key struct {
		ct   string
		span int64
	}
	groups := map[key][][]byte{}
	var keys []key
	seen := map[string]bool{}
	for {
		rec, ok := gen.Next()
		if !ok {
			break
		}
		var head struct {
			ID, CreationTime, Workload string
		}
		if err := json.Unmarshal(rec, &head); err != nil {
			return nil, err
		}
		if seen[head.ID] {
			return nil, fmt.Errorf("simulator repeated record Id %s", head.ID)
		}
		seen[head.ID] = true
		ct, ok := workloadType[head.Workload]
		if !ok {
			ct = "Audit.General"
		}
		ts, err := time.Parse("2006-01-02T15:04:05", head.CreationTime)
		if err != nil {
			return nil, err
		}
		k := key{ct, ts.UnixNano() / int64(s.opts.BlobSpan)}
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], append([]byte(nil), rec...))
	}
	var all []*blob
	for i, k := range keys {
		spanEnd := time.Unix(0, (k.span+1)*int64(s.opts.BlobSpan)).UTC()
		created := spanEnd.Add(s.opts.Latency).Add(time.Duration(s.rng.Int64N(int64(time.Minute)))).Truncate(time.Millisecond)
		b := &blob{
			ct:      k.ct,
			created: created,
			visible: created,
			id: fmt.Sprintf("%s$%s$%s%s$%016x$04", created.Format("20060102150405"), created.Format("20060102150405"),
				strings.ReplaceAll(strings.ToLower(to.ID), "-", ""), strings.ToLower(strings.TrimPrefix(k.ct, "Audit.")), s.rng.Uint64()),
		}
		if s.rng.Float64() < s.faults.LateRate {
			b.visible = created.Add(s.faults.LateBy)
		}
		b.twice = s.rng.Float64() < s.faults.DuplicateListRate
		b.expired = s.rng.Float64() < s.faults.ExpiredRate
		recs := groups[k]
		if s.faults.DuplicateRecordRate > 0 && i > 0 {
			// The audit service retries internally and may put a record
			// into a later blob again (troubleshooting guide).
			for _, r := range groups[keys[i-1]] {
				if s.rng.Float64() < s.faults.DuplicateRecordRate {
					recs = append(recs, r)
				}
			}
		}
		var buf []byte
		buf = append(buf, '[')
		for j, r := range recs {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, r...)
			var h struct{ ID string }
			json.Unmarshal(r, &h)
			b.ids = append(b.ids, h.ID)
			t.recIDs[h.ID] = append(t.recIDs[h.ID], b.id)
		}
		b.body = append(buf, ']')
		all = append(all, b)
	}
	for _, b := range all {
		t.blobs[b.ct] = append(t.blobs[b.ct], b)
		t.byID[b.id] = b
	}
	for _, bs := range t.blobs {
		slices.SortFunc(bs, func(a, b *blob) int {
			return cmp.Or(a.created.Compare(b.created), strings.Compare(a.id, b.id))
		})
	}
	return t, nil
}

// SetFaults changes the faults injected from now on (per-blob faults were
// decided when the server was built).
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// RevokeTokens makes every issued token invalid, as when tokens expire
// earlier than the client expected.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	clear(s.tokens)
	s.mu.Unlock()
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Fetches returns how often each blob was served.
func (s *Server) Fetches() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.fetches))
	for k, v := range s.fetches {
		m[k] = v
	}
	return m
}

// Expect is what a collector that kept up yields for a tenant from [from,
// to) on contentCreated, as of the server's now: the record Ids, and the
// blobs that answer AF20051 by fault.
type Expect struct {
	Records map[string]bool
	Expired []string // contentIds
	Blobs   int
}

// Expected computes Expect for tenant and content types (all if none).
func (s *Server) Expected(tenantID string, from, to time.Time, types ...string) Expect {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[strings.ToLower(tenantID)]
	e := Expect{Records: map[string]bool{}}
	if len(types) == 0 {
		types = contentTypes
	}
	now := s.now()
	// A record is retrievable if at least one of its blobs is.
	for _, ct := range types {
		for _, b := range t.blobs[ct] {
			if b.created.Before(from) || !b.created.Before(to) || b.visible.After(now) {
				continue
			}
			e.Blobs++
			// Only blobs that expired by fault: age-expired ones were
			// retrievable while a collector kept up.
			if b.expired {
				e.Expired = append(e.Expired, b.id)
				continue
			}
			for _, id := range b.ids {
				e.Records[id] = true
			}
		}
	}
	return e
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 3 && parts[1] == "oauth2" && parts[2] == "token":
		s.serveToken(w, r, strings.ToLower(parts[0]))
	case len(parts) >= 5 && parts[0] == "api" && parts[1] == "v1.0" && parts[3] == "activity" && parts[4] == "feed":
		s.serveAPI(w, r, strings.ToLower(parts[2]), parts[5:])
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) base(r *http.Request) string { return "http://" + r.Host }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func afError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// serveToken is the Entra v1 token endpoint for the client-credentials
// grant. Errors use the OAuth2 shape with AADSTS codes in the description.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, tid string) {
	oauthErr := func(status int, code, desc string) {
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		oauthErr(http.StatusMethodNotAllowed, "invalid_request", "AADSTS900561: The endpoint only accepts POST requests.")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthErr(http.StatusBadRequest, "invalid_request", "AADSTS900144: malformed request body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tid]
	switch {
	case t == nil:
		oauthErr(http.StatusBadRequest, "invalid_request", "AADSTS90002: Tenant '"+tid+"' not found.")
	case r.PostForm.Get("grant_type") != "client_credentials":
		oauthErr(http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: grant type not supported here")
	case r.PostForm.Get("client_id") != t.opts.ClientID:
		oauthErr(http.StatusBadRequest, "unauthorized_client", "AADSTS700016: Application not found in the directory.")
	case r.PostForm.Has("client_assertion") || r.PostForm.Has("client_assertion_type"):
		if r.PostForm.Has("client_secret") {
			oauthErr(http.StatusBadRequest, "invalid_request", "AADSTS700025: Client is public so neither 'client_assertion' nor 'client_secret' should be presented.")
			return
		}
		if status, code, desc := s.checkAssertion(r, t, tid); status != 0 {
			s.stats.AssertionRefused++
			oauthErr(status, code, desc)
			return
		}
		s.issue(w, r, tid)
	case r.PostForm.Get("client_secret") == "":
		oauthErr(http.StatusUnauthorized, "invalid_client", "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	case t.opts.ClientSecret == "" || r.PostForm.Get("client_secret") != t.opts.ClientSecret:
		oauthErr(http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
	case r.PostForm.Get("resource") != s.base(r):
		oauthErr(http.StatusBadRequest, "invalid_resource", "AADSTS500011: The resource principal named "+r.PostForm.Get("resource")+" was not found.")
	default:
		s.issue(w, r, tid)
	}
}

// issue answers a token request with a new access token; callers hold s.mu.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, tid string) {
	s.tokSeq++
	tok := fmt.Sprintf("fake.%s.%d.%016x", tid, s.tokSeq, s.rng.Uint64())
	exp := s.now().Add(s.opts.TokenLifetime)
	s.tokens[tok] = token{tenant: tid, expires: exp}
	s.stats.Tokens++
	writeJSON(w, http.StatusOK, map[string]string{
		"token_type": "Bearer", "expires_in": strconv.Itoa(int(s.opts.TokenLifetime / time.Second)),
		"expires_on": strconv.FormatInt(exp.Unix(), 10), "resource": s.base(r), "access_token": tok,
	})
}

// clockSkew is the tolerance Entra allows on an assertion's nbf and exp.
const clockSkew = 5 * time.Minute

// checkAssertion verifies a client assertion (RFC 7523) as Entra does:
// the JWT is well formed and RS256, its x5t names a certificate registered
// on the app, its signature verifies with that certificate's key, its
// audience is this tenant's token endpoint, iss and sub are the client id,
// and now lies within nbf..exp. It returns the HTTP status, OAuth error
// and AADSTS description of a refusal, or status 0.
func (s *Server) checkAssertion(r *http.Request, t *tenant, tid string) (int, string, string) {
	const bad = http.StatusUnauthorized
	if r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return http.StatusBadRequest, "invalid_request", "AADSTS700010: Invalid client_assertion_type: '" + r.PostForm.Get("client_assertion_type") + "'."
	}
	parts := strings.Split(r.PostForm.Get("client_assertion"), ".")
	if len(parts) != 3 {
		return http.StatusBadRequest, "invalid_request", "AADSTS50027: JWT token is invalid or malformed."
	}
	var hdr struct {
		Alg string `json:"alg"`
		X5t string `json:"x5t"`
	}
	var claims struct {
		Aud any    `json:"aud"`
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Jti string `json:"jti"`
		Nbf *int64 `json:"nbf"`
		Exp *int64 `json:"exp"`
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(cb, &claims) != nil {
		return http.StatusBadRequest, "invalid_request", "AADSTS50027: JWT token is invalid or malformed."
	}
	if hdr.Alg != "RS256" {
		return bad, "invalid_client", "AADSTS5002738: Invalid JWT token. '" + hdr.Alg + "' is not a supported signature algorithm."
	}
	cert := t.opts.Certificate
	if cert == nil {
		return bad, "invalid_client", "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found.]"
	}
	thumb := sha1.Sum(cert.Raw)
	if hdr.X5t != base64.RawURLEncoding.EncodeToString(thumb[:]) {
		return bad, "invalid_client", "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '" +
			strings.ToUpper(hexOf(hdr.X5t)) + "']"
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ok || rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) != nil {
		return bad, "invalid_client", "AADSTS700027: Client assertion failed signature validation."
	}
	aud, _ := claims.Aud.(string)
	endpoints := []string{s.base(r) + "/" + tid + "/oauth2/token", s.base(r) + "/" + tid + "/oauth2/v2.0/token"}
	if !slices.Contains(endpoints, aud) {
		return bad, "invalid_client", "AADSTS700023: Client assertion audience claim does not match Realm issuer. Presented audience: '" + aud + "'."
	}
	if claims.Iss != t.opts.ClientID || claims.Sub != t.opts.ClientID {
		return bad, "invalid_client", "AADSTS700021: Client assertion application identifier doesn't match 'client_id' parameter."
	}
	if claims.Jti == "" || claims.Exp == nil {
		return http.StatusBadRequest, "invalid_request", "AADSTS50027: JWT token is invalid or malformed (missing jti or exp)."
	}
	now := s.now()
	if now.After(time.Unix(*claims.Exp, 0).Add(clockSkew)) || (claims.Nbf != nil && now.Add(clockSkew).Before(time.Unix(*claims.Nbf, 0))) {
		return bad, "invalid_client", "AADSTS700024: Client assertion is not within its valid time range. Current time: " + now.UTC().Format("2006-01-02T15:04:05.0000000Z") +
			", assertion valid to: " + time.Unix(*claims.Exp, 0).UTC().Format("2006-01-02T15:04:05.0000000Z") + "."
	}
	return 0, "", ""
}

func hexOf(b64 string) string {
	b, _ := base64.RawURLEncoding.DecodeString(b64)
	return fmt.Sprintf("%x", b)
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, tid string, op []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	q := r.URL.Query()
	if q.Get("PublisherIdentifier") == "" {
		s.stats.MissingPublisher++
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	tk, known := s.tokens[tok]
	if !ok || !known || !s.now().Before(tk.expires) {
		s.stats.TokenRefused++
		writeJSON(w, http.StatusUnauthorized, map[string]string{"Message": "Authorization has been denied for this request."})
		return
	}
	t := s.tenants[tid]
	if t == nil {
		afError(w, http.StatusBadRequest, "AF20011", "Specified tenant ID ("+tid+") does not exist in the system or has been deleted.")
		return
	}
	if tk.tenant != tid {
		afError(w, http.StatusForbidden, "AF20010", "The tenant ID passed in the URL ("+tid+") does not match the tenant ID passed in the access token ("+tk.tenant+").")
		return
	}
	if time.Now().Before(t.until) {
		s.stats.EarlyRetries++
	}
	if s.rng.Float64() < s.faults.ThrottleRate {
		s.stats.Throttled++
		pid := q.Get("PublisherIdentifier")
		if pid == "" {
			pid = "00000000-0000-0000-0000-000000000000"
		}
		msg := "Too many requests. Method=" + r.Method + ", PublisherId=" + pid
		if s.stats.Throttled%2 == 1 {
			w.Header().Set("Retry-After", strconv.Itoa(s.faults.RetryAfter))
			t.until = time.Now().Add(time.Duration(s.faults.RetryAfter) * time.Second)
			afError(w, http.StatusTooManyRequests, "AF429", msg)
		} else {
			afError(w, http.StatusForbidden, "AF429", msg)
		}
		return
	}
	if s.rng.Float64() < s.faults.ServerErrorRate {
		s.stats.ServerErrors++
		if s.stats.ServerErrors%2 == 1 {
			afError(w, http.StatusInternalServerError, "AF50000", "An internal error occurred. Retry the request.")
		} else {
			http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		}
		return
	}
	switch {
	case len(op) == 2 && op[0] == "subscriptions" && op[1] == "list" && r.Method == http.MethodGet:
		var list []map[string]any
		for _, ct := range contentTypes {
			if st, ok := t.subs[ct]; ok {
				list = append(list, map[string]any{"contentType": ct, "status": st, "webhook": nil})
			}
		}
		if list == nil {
			list = []map[string]any{}
		}
		writeJSON(w, http.StatusOK, list)
	case len(op) == 2 && op[0] == "subscriptions" && (op[1] == "start" || op[1] == "stop") && r.Method == http.MethodPost:
		ct := q.Get("contentType")
		if !slices.Contains(contentTypes, ct) {
			afError(w, http.StatusBadRequest, "AF20020", "The specified content type is not valid.")
			return
		}
		if op[1] == "stop" {
			t.subs[ct] = "disabled"
			w.WriteHeader(http.StatusOK)
			return
		}
		if t.subs[ct] == "enabled" {
			afError(w, http.StatusBadRequest, "AF20024", "The subscription is already enabled. No property change.")
			return
		}
		t.subs[ct] = "enabled"
		s.stats.Started++
		writeJSON(w, http.StatusOK, map[string]any{"contentType": ct, "status": "enabled", "webhook": nil})
	case len(op) == 2 && op[0] == "subscriptions" && op[1] == "content" && r.Method == http.MethodGet:
		s.serveContentList(w, r, t, q)
	case len(op) == 2 && op[0] == "audit" && r.Method == http.MethodGet:
		id, _ := url.PathUnescape(op[1])
		b := t.byID[id]
		if b == nil {
			afError(w, http.StatusNotFound, "AF20050", "The specified content ("+id+") does not exist.")
			return
		}
		if b.expired || s.now().Sub(b.created) > 7*24*time.Hour {
			s.stats.Expired++
			afError(w, http.StatusBadRequest, "AF20051", "Content requested with the key "+id+" has already expired. Content older than 7 days cannot be retrieved.")
			return
		}
		s.stats.BlobFetches++
		s.fetches[id]++
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(b.body)
	default:
		http.NotFound(w, r)
	}
}

// parseAPITime accepts the forms the reference lists, and a trailing Z.
func parseAPITime(v string) (time.Time, bool) {
	v = strings.TrimSuffix(v, "Z")
	for _, f := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(f, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

type listEntry struct {
	b    *blob
	copy int
}

func (s *Server) serveContentList(w http.ResponseWriter, r *http.Request, t *tenant, q url.Values) {
	ct := q.Get("contentType")
	if ct == "" {
		afError(w, http.StatusBadRequest, "AF20001", "Missing parameter: contentType.")
		return
	}
	if !slices.Contains(contentTypes, ct) {
		afError(w, http.StatusBadRequest, "AF20020", "The specified content type is not valid.")
		return
	}
	switch t.subs[ct] {
	case "":
		afError(w, http.StatusBadRequest, "AF20022", "No subscription found for the specified content type.")
		return
	case "disabled":
		afError(w, http.StatusBadRequest, "AF20023", "The subscription was disabled by a tenant admin.")
		return
	}
	now := s.now()
	st, et := q.Get("startTime"), q.Get("endTime")
	var start, end time.Time
	switch {
	case st == "" && et == "":
		start, end = now.Add(-24*time.Hour), now
	case st == "" || et == "":
		s.stats.BadWindows++
		afError(w, http.StatusBadRequest, "AF20055", "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart, with the start time prior to end time and start time no more than 7 days in the past.")
		return
	default:
		var ok1, ok2 bool
		start, ok1 = parseAPITime(st)
		end, ok2 = parseAPITime(et)
		if !ok1 || !ok2 {
			afError(w, http.StatusBadRequest, "AF20002", "Invalid parameter type: startTime/endTime. Expected type: datetime")
			return
		}
	}
	if !start.Before(end) || end.Sub(start) > 24*time.Hour || start.Before(now.Add(-7*24*time.Hour)) {
		s.stats.BadWindows++
		afError(w, http.StatusBadRequest, "AF20055", "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart, with the start time prior to end time and start time no more than 7 days in the past.")
		return
	}
	var entries []listEntry
	for _, b := range t.blobs[ct] {
		if b.created.Before(start) || !b.created.Before(end) || b.visible.After(now) {
			continue
		}
		entries = append(entries, listEntry{b, 0})
		if b.twice {
			entries = append(entries, listEntry{b, 1})
		}
	}
	// nextPage is a cursor (the entry to start at), not an offset, so that
	// blobs appearing between two pages do not shift what later pages hold.
	from := 0
	if np := q.Get("nextPage"); np != "" {
		c, err := base64.RawURLEncoding.DecodeString(np)
		id, cp, ok := strings.Cut(string(c), "|")
		n, cerr := strconv.Atoi(cp)
		if err != nil || !ok || cerr != nil {
			afError(w, http.StatusBadRequest, "AF20031", "Invalid nextPage Input: "+np+".")
			return
		}
		from = len(entries)
		for i, e := range entries {
			if e.b.id == id && e.copy == n {
				from = i
				break
			}
		}
	}
	page := entries[from:]
	if len(page) > s.opts.PageSize {
		nx := page[s.opts.PageSize]
		page = page[:s.opts.PageSize]
		nq := url.Values{}
		nq.Set("contentType", ct)
		nq.Set("startTime", st)
		nq.Set("endTime", et)
		nq.Set("nextPage", base64.RawURLEncoding.EncodeToString([]byte(nx.b.id+"|"+strconv.Itoa(nx.copy))))
		// Like the documented example, the next page's URL carries no
		// PublisherIdentifier: the client must add it again.
		w.Header().Set("NextPageUri", s.base(r)+"/api/v1.0/"+strings.ToLower(t.opts.ID)+"/activity/feed/subscriptions/content?"+nq.Encode())
	}
	out := make([]map[string]string, 0, len(page))
	for _, e := range page {
		out = append(out, map[string]string{
			"contentType":       ct,
			"contentId":         e.b.id,
			"contentUri":        s.base(r) + "/api/v1.0/" + strings.ToLower(t.opts.ID) + "/activity/feed/audit/" + e.b.id,
			"contentCreated":    e.b.created.Format("2006-01-02T15:04:05.000Z"),
			"contentExpiration": e.b.created.Add(7 * 24 * time.Hour).Format("2006-01-02T15:04:05.000Z"),
		})
	}
	s.stats.Listings++
	writeJSON(w, http.StatusOK, out)
}

// Clock is a settable clock for running simulated days quickly.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
