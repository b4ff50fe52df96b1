// Package clienttest is a small in-memory stand-in for a custos server,
// for testing clients (the client package, the CLI, collectors) without a
// store. It follows docs/api.md for tenants, tokens and ingest: bearer
// authentication, per-record errors with batch indexes, deduplication by
// Id, gzip and zstd bodies, and it can be told to answer 429 or 5xx.
package clienttest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Fault is an error answer the server gives to an ingest request instead
// of processing it. The zero Fault processes the request normally, so that
// a fault can be aimed at a later request.
type Fault struct {
	Status     int
	RetryAfter string // the Retry-After header, if any
	Message    string
	// Drop closes the connection without an answer, as a crashing server
	// or a failing proxy would.
	Drop bool
}

// Server is a running fake custos server. Its URL is in Server.URL.
type Server struct {
	*httptest.Server
	// AdminToken is a global admin token the server accepts.
	AdminToken string

	mu       sync.Mutex
	tenants  map[string]tenant
	tokens   map[string]*token // by whole token string
	records  map[string][]stored
	ids      map[string]map[string]bool // tenant → Id
	faults   []Fault
	calls    int
	encoding []string
}

type tenant struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

type token struct {
	ID      string     `json:"id"`
	Tenant  string     `json:"tenant"`
	Role    string     `json:"role"`
	Name    string     `json:"name"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

type stored struct{ raw []byte }

// NewServer starts a fake server on loopback; Close it when done.
func NewServer() *Server {
	s := &Server{
		tenants: map[string]tenant{},
		tokens:  map[string]*token{},
		records: map[string][]stored{},
		ids:     map[string]map[string]bool{},
	}
	admin := s.newToken("", "admin", "bootstrap", nil)
	s.AdminToken = admin
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/tenants", s.auth(s.createTenant))
	mux.HandleFunc("GET /api/v1/tenants", s.auth(s.listTenants))
	mux.HandleFunc("POST /api/v1/tokens", s.auth(s.createToken))
	mux.HandleFunc("GET /api/v1/tokens", s.auth(s.listTokens))
	mux.HandleFunc("DELETE /api/v1/tokens/{id}", s.auth(s.revokeToken))
	mux.HandleFunc("POST /api/v1/tenants/{tenant}/records", s.auth(s.ingest))
	s.Server = httptest.NewServer(mux)
	return s
}

// Inject queues error answers for the next ingest requests, in order.
func (s *Server) Inject(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f...)
}

// IngestCalls is the number of ingest requests received, faults included.
func (s *Server) IngestCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Encodings lists the Content-Encoding of every ingest request.
func (s *Server) Encodings() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.encoding...)
}

// Records returns the stored raw records of a tenant, in storing order.
func (s *Server) Records(tenant string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(s.records[tenant]))
	for i, r := range s.records[tenant] {
		out[i] = r.raw
	}
	return out
}

// AddTenant creates a tenant directly.
func (s *Server) AddTenant(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tenants[id] = tenant{ID: id, Name: id, Created: time.Now().UTC()}
}

func (s *Server) newToken(tenant, role, name string, expires *time.Time) string {
	b := make([]byte, 16)
	rand.Read(b)
	id := hex.EncodeToString(b[:4])
	whole := "custos_" + id + "_" + hex.EncodeToString(b[4:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[whole] = &token{ID: id, Tenant: tenant, Role: role, Name: name, Created: time.Now().UTC(), Expires: expires}
	return whole
}

type handler func(w http.ResponseWriter, r *http.Request, t *token)

func (s *Server) auth(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		t := s.tokens[tok]
		s.mu.Unlock()
		if !ok || t == nil || t.Revoked != nil || t.Expires != nil && t.Expires.Before(time.Now()) {
			writeError(w, http.StatusUnauthorized, "invalid token: unknown, revoked or expired")
			return
		}
		h(w, r, t)
	}
}

var tenantID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, t *token) {
	if t.Tenant != "" || t.Role != "admin" {
		writeError(w, http.StatusForbidden, "creating tenants needs a global admin token")
		return
	}
	var req struct{ ID, Name string }
	if err := strictJSON(r.Body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if !tenantID.MatchString(req.ID) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("tenant id %q: want [a-z0-9][a-z0-9-]{0,62}", req.ID))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tenants[req.ID]; ok {
		writeError(w, http.StatusConflict, fmt.Sprintf("tenant %q exists", req.ID))
		return
	}
	tn := tenant{ID: req.ID, Name: req.Name, Created: time.Now().UTC()}
	s.tenants[req.ID] = tn
	writeJSON(w, http.StatusCreated, tn)
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request, t *token) {
	if t.Role != "admin" {
		writeError(w, http.StatusForbidden, "listing tenants needs an admin token")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []tenant{}
	for _, tn := range s.tenants {
		if t.Tenant == "" || t.Tenant == tn.ID {
			out = append(out, tn)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": out})
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, t *token) {
	var req struct {
		Tenant, Role, Name string
		Expires            *time.Time
	}
	if err := strictJSON(r.Body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if t.Role != "admin" || t.Tenant != "" && t.Tenant != req.Tenant {
		writeError(w, http.StatusForbidden, "managing tokens needs an admin token")
		return
	}
	switch req.Role {
	case "ingest", "read", "admin":
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("role %q: want ingest, read or admin", req.Role))
		return
	}
	s.mu.Lock()
	_, known := s.tenants[req.Tenant]
	s.mu.Unlock()
	if req.Tenant != "" && !known {
		writeError(w, http.StatusNotFound, fmt.Sprintf("tenant %q not found", req.Tenant))
		return
	}
	whole := s.newToken(req.Tenant, req.Role, req.Name, req.Expires)
	s.mu.Lock()
	tok := *s.tokens[whole]
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, struct {
		token
		Secret string `json:"token"`
	}{tok, whole})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, t *token) {
	if t.Role != "admin" {
		writeError(w, http.StatusForbidden, "listing tokens needs an admin token")
		return
	}
	want := r.URL.Query().Get("tenant")
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []token{}
	for _, tk := range s.tokens {
		if (want == "" || tk.Tenant == want) && (t.Tenant == "" || tk.Tenant == t.Tenant) {
			out = append(out, *tk)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, t *token) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tk := range s.tokens {
		if tk.ID == id && (t.Tenant == "" || tk.Tenant == t.Tenant) {
			if t.Role != "admin" {
				writeError(w, http.StatusForbidden, "revoking tokens needs an admin token")
				return
			}
			now := time.Now().UTC()
			tk.Revoked = &now
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("token %q not found", id))
}

// recordError is one entry of an ingest answer's errors.
type recordError struct {
	Index int    `json:"index"`
	Line  int    `json:"line,omitempty"`
	ID    string `json:"id,omitempty"`
	Field string `json:"field,omitempty"`
	Error string `json:"error"`
}

const maxListedErrors = 1000

func (s *Server) ingest(w http.ResponseWriter, r *http.Request, t *token) {
	ten := r.PathValue("tenant")
	s.mu.Lock()
	s.calls++
	s.encoding = append(s.encoding, r.Header.Get("Content-Encoding"))
	_, known := s.tenants[ten]
	var fault *Fault
	if len(s.faults) > 0 {
		fault = &s.faults[0]
		s.faults = s.faults[1:]
	}
	s.mu.Unlock()
	if t.Tenant != "" && t.Tenant != ten || !known {
		writeError(w, http.StatusNotFound, fmt.Sprintf("tenant %q not found", ten))
		return
	}
	if t.Role != "ingest" && t.Role != "admin" {
		writeError(w, http.StatusForbidden, "this token's role cannot ingest")
		return
	}
	if fault != nil && fault.Status == 0 && !fault.Drop {
		fault = nil
	}
	if fault != nil && fault.Drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if fault != nil {
		io.Copy(io.Discard, r.Body)
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		msg := fault.Message
		if msg == "" {
			msg = http.StatusText(fault.Status)
		}
		writeError(w, fault.Status, msg)
		return
	}
	switch ct := strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]); ct {
	case "", "application/json", "application/x-ndjson":
	default:
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Type %q", ct))
		return
	}
	var body io.Reader = r.Body
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			writeError(w, http.StatusUnsupportedMediaType, "gzip: "+err.Error())
			return
		}
		body = zr
	case "zstd":
		zr, err := zstd.NewReader(r.Body)
		if err != nil {
			writeError(w, http.StatusUnsupportedMediaType, "zstd: "+err.Error())
			return
		}
		defer zr.Close()
		body = zr
	default:
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q (use gzip, zstd or none)", enc))
		return
	}
	data, err := io.ReadAll(body)
	if err != nil {
		writeError(w, http.StatusUnsupportedMediaType, "decoding body: "+err.Error())
		return
	}

	res := struct {
		Accepted        int           `json:"accepted"`
		Duplicate       int           `json:"duplicate"`
		Rejected        int           `json:"rejected"`
		Errors          []recordError `json:"errors,omitempty"`
		ErrorsTruncated bool          `json:"errors_truncated,omitempty"`
	}{}
	reject := func(e recordError) {
		res.Rejected++
		if len(res.Errors) < maxListedErrors {
			res.Errors = append(res.Errors, e)
		} else {
			res.ErrorsTruncated = true
		}
	}
	type pending struct {
		id  string
		raw []byte
	}
	var valid []pending
	check := func(i, line int, raw []byte) {
		if len(raw) > 1<<20 {
			reject(recordError{Index: i, Line: line, Error: fmt.Sprintf("record is %d bytes, over the %d byte limit", len(raw), 1<<20)})
			return
		}
		var rec map[string]any
		if err := json.Unmarshal(raw, &rec); err != nil {
			reject(recordError{Index: i, Line: line, Error: "invalid JSON: " + err.Error()})
			return
		}
		id, _ := rec["Id"].(string)
		if id == "" {
			reject(recordError{Index: i, Line: line, Field: "Id", Error: "Id: missing"})
			return
		}
		if ct, ok := rec["CreationTime"].(string); !ok || !validTime(ct) {
			reject(recordError{Index: i, Line: line, ID: id, Field: "CreationTime", Error: fmt.Sprintf("CreationTime: unparsable time %q", fmt.Sprint(rec["CreationTime"]))})
			return
		}
		valid = append(valid, pending{id, append([]byte(nil), raw...)})
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(trimmed, &elems); err != nil {
			reject(recordError{Index: 0, Error: "malformed JSON array: " + err.Error()})
		}
		for i, e := range elems {
			check(i, 0, e)
		}
	} else {
		i := 0
		for n, l := range bytes.Split(data, []byte("\n")) {
			l = bytes.TrimSpace(l)
			if len(l) == 0 {
				continue
			}
			check(i, n+1, l)
			i++
		}
	}
	s.mu.Lock()
	if s.ids[ten] == nil {
		s.ids[ten] = map[string]bool{}
	}
	for _, p := range valid {
		if s.ids[ten][p.id] {
			res.Duplicate++
			continue
		}
		s.ids[ten][p.id] = true
		s.records[ten] = append(s.records[ten], stored{p.raw})
		res.Accepted++
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, res)
}

// validTime accepts the CreationTime shapes real records have.
func validTime(s string) bool {
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04:05.999999999", time.RFC3339Nano} {
		if _, err := time.Parse(layout, s); err == nil {
			return true
		}
	}
	return false
}

func strictJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
