// Package api serves custos's REST API. Every route but the health checks
// authenticates a bearer token, and every tenant route goes through one
// authorization step (tenantRoute) so that no handler can forget scoping.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/detect"
	"github.com/custos-audit/custos/ingest"
	"github.com/custos-audit/custos/notify"
	"github.com/custos-audit/custos/queryjob"
	"github.com/custos-audit/custos/retention"
	"github.com/custos-audit/custos/selfaudit"
	"github.com/custos-audit/custos/source"
	"github.com/custos-audit/custos/store"
)

// Reader is the read side of the store the API serves.
type Reader interface {
	Records(ctx context.Context, tenant string, q store.Query, fn func(*audit.Record) error) error
	Count(ctx context.Context, tenant string, q store.Query) (int64, error)
	Histogram(ctx context.Context, tenant string, q store.Query, interval time.Duration) ([]store.Bucket, error)
}

// Config wires the API to the rest of custos.
type Config struct {
	Registry  *auth.Registry
	Ingest    *ingest.Service
	Reader    Reader
	Retention *retention.Enforcer
	Queries   *queryjob.Manager
	Alerts    *alert.Store     // nil: detection is off
	Detect    *detect.Engine   // nil: detection is off
	Notify    *notify.Notifier // nil: detection is off
	Sources   *source.Registry // nil: sources are not tracked
	Ready     func() error     // nil error when the server can take writes
	Metrics   http.Handler     // Prometheus exposition
	Logger    *slog.Logger

	// Collectors keeps the tenants' configured sources (nil: none).
	Collectors SourceConfigs
}

// Server is the HTTP API.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	audit    *selfaudit.Recorder
	patterns []string // every route, for tests that must cover them all
}

// New builds the API's routes.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// Self-audit writes through the same ingest service as everything
	// else; there is deliberately no way to configure it away.
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), audit: selfaudit.New(cfg.Ingest)}
	handle := func(pattern string, h http.Handler) {
		s.patterns = append(s.patterns, pattern)
		s.mux.Handle(pattern, h)
	}
	handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	handle("GET /readyz", http.HandlerFunc(s.readyz))
	handle("GET /metrics", s.authed(s.metrics))

	handle("POST /api/v1/tenants", s.authed(s.createTenant))
	handle("GET /api/v1/tenants", s.authed(s.listTenants))
	handle("GET /api/v1/tenants/{tenant}", s.tenantRoute(auth.RoleRead, s.getTenant, auth.RoleIngest))
	handle("POST /api/v1/tenants/{tenant}/records", s.tenantRoute(auth.RoleIngest, s.ingestRecords))
	handle("GET /api/v1/tenants/{tenant}/records", s.tenantRoute(auth.RoleRead, s.listRecords))
	handle("POST /api/v1/tenants/{tenant}/records/search", s.tenantRoute(auth.RoleRead, s.searchRecords))

	handle("POST /api/v1/tenants/{tenant}/queries", s.tenantRoute(auth.RoleRead, s.withQueries(s.createQuery)))
	handle("GET /api/v1/tenants/{tenant}/queries", s.tenantRoute(auth.RoleRead, s.withQueries(s.listQueries)))
	handle("GET /api/v1/tenants/{tenant}/queries/{id}", s.tenantRoute(auth.RoleRead, s.withQueries(s.getQuery)))
	handle("GET /api/v1/tenants/{tenant}/queries/{id}/records", s.tenantRoute(auth.RoleRead, s.withQueries(s.queryRecords)))
	handle("POST /api/v1/tenants/{tenant}/queries/{id}/cancel", s.tenantRoute(auth.RoleRead, s.withQueries(s.cancelQuery)))
	handle("DELETE /api/v1/tenants/{tenant}/queries/{id}", s.tenantRoute(auth.RoleRead, s.withQueries(s.deleteQuery)))

	handle("GET /api/v1/tenants/{tenant}/retention/policies", s.tenantRoute(auth.RoleRead, s.withRetention(s.listPolicies)))
	handle("POST /api/v1/tenants/{tenant}/retention/policies", s.tenantRoute(auth.RoleAdmin, s.withRetention(s.createPolicy)))
	handle("GET /api/v1/tenants/{tenant}/retention/policies/{name}", s.tenantRoute(auth.RoleRead, s.withRetention(s.getPolicy)))
	handle("PATCH /api/v1/tenants/{tenant}/retention/policies/{name}", s.tenantRoute(auth.RoleAdmin, s.withRetention(s.updatePolicy)))
	handle("DELETE /api/v1/tenants/{tenant}/retention/policies/{name}", s.tenantRoute(auth.RoleAdmin, s.withRetention(s.deletePolicy)))
	handle("GET /api/v1/tenants/{tenant}/retention/hold", s.tenantRoute(auth.RoleRead, s.withRetention(s.getHold)))
	handle("PUT /api/v1/tenants/{tenant}/retention/hold", s.tenantRoute(auth.RoleAdmin, s.withRetention(s.setHold)))
	handle("POST /api/v1/tenants/{tenant}/retention/enforce", s.tenantRoute(auth.RoleRead, s.withRetention(s.enforceRetention)))
	handle("GET /api/v1/tenants/{tenant}/retention/report", s.tenantRoute(auth.RoleRead, s.withRetention(s.retentionReport)))

	handle("GET /api/v1/tenants/{tenant}/alerts", s.tenantRoute(auth.RoleRead, s.withDetection(s.listAlerts)))
	handle("GET /api/v1/tenants/{tenant}/alerts/{id}", s.tenantRoute(auth.RoleRead, s.withDetection(s.getAlert)))
	handle("POST /api/v1/tenants/{tenant}/alerts/{id}/ack", s.tenantRoute(auth.RoleRead, s.withDetection(s.setAlertStatus(alert.StatusAcknowledged))))
	handle("POST /api/v1/tenants/{tenant}/alerts/{id}/close", s.tenantRoute(auth.RoleRead, s.withDetection(s.setAlertStatus(alert.StatusClosed))))
	handle("GET /api/v1/tenants/{tenant}/detection", s.tenantRoute(auth.RoleRead, s.withDetection(s.detectionStatus)))
	handle("POST /api/v1/tenants/{tenant}/detection/rebuild", s.tenantRoute(auth.RoleAdmin, s.withDetection(s.rebuildBaseline)))
	handle("GET /api/v1/tenants/{tenant}/detection/allowlist", s.tenantRoute(auth.RoleRead, s.withDetection(s.listAllow)))
	handle("POST /api/v1/tenants/{tenant}/detection/allowlist", s.tenantRoute(auth.RoleAdmin, s.withDetection(s.addAllow)))
	handle("DELETE /api/v1/tenants/{tenant}/detection/allowlist", s.tenantRoute(auth.RoleAdmin, s.withDetection(s.removeAllow)))

	handle("GET /api/v1/tenants/{tenant}/rules", s.tenantRoute(auth.RoleRead, s.withDetection(s.listRules)))
	handle("GET /api/v1/tenants/{tenant}/rules/{id}", s.tenantRoute(auth.RoleRead, s.withDetection(s.getRule)))
	handle("PUT /api/v1/tenants/{tenant}/rules/{id}", s.tenantRoute(auth.RoleAdmin, s.withDetection(s.putRule)))
	handle("DELETE /api/v1/tenants/{tenant}/rules/{id}", s.tenantRoute(auth.RoleAdmin, s.withDetection(s.deleteRule)))
	handle("GET /api/v1/tenants/{tenant}/sources", s.tenantRoute(auth.RoleRead, s.withSources(s.listSources)))
	handle("GET /api/v1/tenants/{tenant}/sources/{name}", s.tenantRoute(auth.RoleRead, s.withSources(s.getSource)))
	handle("GET /api/v1/tenants/{tenant}/sources/{name}/coverage", s.tenantRoute(auth.RoleRead, s.withSources(s.coverage)))
	handle("POST /api/v1/tenants/{tenant}/sources/{name}/heartbeat", s.tenantRoute(auth.RoleIngest, s.withSources(s.heartbeat)))
	handle("GET /api/v1/tenants/{tenant}/notifications", s.tenantRoute(auth.RoleRead, s.withNotify(s.listChannels)))
	handle("POST /api/v1/tenants/{tenant}/notifications", s.tenantRoute(auth.RoleAdmin, s.withNotify(s.addChannel)))
	handle("DELETE /api/v1/tenants/{tenant}/notifications/{id}", s.tenantRoute(auth.RoleAdmin, s.withNotify(s.removeChannel)))
	handle("POST /api/v1/tenants/{tenant}/notifications/{id}/test", s.tenantRoute(auth.RoleAdmin, s.withNotify(s.testChannel)))

	handle("POST /api/v1/tenants/{tenant}/sources", s.tenantRoute(auth.RoleAdmin, s.withCollectors(s.addSource)))
	handle("GET /api/v1/tenants/{tenant}/sources/{name}/config", s.tenantRoute(auth.RoleAdmin, s.withCollectors(s.getSourceConfig)))
	handle("DELETE /api/v1/tenants/{tenant}/sources/{name}", s.tenantRoute(auth.RoleAdmin, s.withCollectors(s.removeSource)))

	handle("POST /api/v1/tokens", s.authed(s.createToken))
	handle("GET /api/v1/tokens", s.authed(s.listTokens))
	handle("DELETE /api/v1/tokens/{id}", s.authed(s.revokeToken))

	// Unknown paths still need a token, so they reveal nothing either.
	s.mux.Handle("/", s.authed(func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		writeError(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path)
	}))
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

type handler func(w http.ResponseWriter, r *http.Request, p auth.Principal)

// authed requires a valid token before h runs.
func (s *Server) authed(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="custos"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token (Authorization: Bearer <token>)")
			return
		}
		p, err := s.cfg.Registry.Authenticate(tok)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="custos", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid token: unknown, revoked or expired")
			return
		}
		h(w, r, p)
	})
}

// tenantRoute authorizes p for the {tenant} in the path with role need (or
// any of also) and checks that the tenant exists. A token scoped to another
// tenant gets the same 404 as a missing tenant.
func (s *Server) tenantRoute(need auth.Role, h handler, also ...auth.Role) http.Handler {
	return s.authed(func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		tenant := r.PathValue("tenant")
		err := p.Authorize(tenant, need)
		for _, alt := range also {
			if errors.Is(err, auth.ErrForbidden) {
				err = p.Authorize(tenant, alt)
			}
		}
		switch {
		case errors.Is(err, auth.ErrNotFound):
			writeError(w, http.StatusNotFound, fmt.Sprintf("tenant %q not found", tenant))
			return
		case errors.Is(err, auth.ErrForbidden):
			if _, ok := s.cfg.Registry.Tenant(tenant); ok {
				s.recordDenied(r, p, tenant, need)
			}
			writeError(w, http.StatusForbidden, fmt.Sprintf("this token's role (%s) cannot do this; it needs %s", p.Role, need))
			return
		case err != nil:
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		if _, ok := s.cfg.Registry.Tenant(tenant); !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("tenant %q not found", tenant))
			return
		}
		h(w, r, p)
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// metrics is open to any global token: a Prometheus scraper gets a global
// read token, never an admin one.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if !p.Global() {
		writeError(w, http.StatusForbidden, "metrics cover every tenant; use a global token")
		return
	}
	s.cfg.Metrics.ServeHTTP(w, r)
}

// ---- tenants ----

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if !p.Global() || p.Role != auth.RoleAdmin {
		writeError(w, http.StatusForbidden, "creating tenants needs a global admin token")
		return
	}
	var req struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	t, err := s.cfg.Registry.CreateTenant(req.ID, req.Name)
	switch {
	case errors.Is(err, auth.ErrExists):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		s.log.Info("tenant created", "tenant", t.ID, "by_token", p.TokenID)
		s.audited(r, action(r, p, selfaudit.SystemTenant, selfaudit.TenantCreated, t.ID, t))
		writeJSON(w, http.StatusCreated, t)
	}
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	if p.Role != auth.RoleAdmin {
		writeError(w, http.StatusForbidden, "listing tenants needs an admin token")
		return
	}
	out := []auth.Tenant{}
	for _, t := range s.cfg.Registry.Tenants() {
		if p.Authorize(t.ID, auth.RoleAdmin) == nil {
			out = append(out, t)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": out})
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	t, _ := s.cfg.Registry.Tenant(r.PathValue("tenant"))
	writeJSON(w, http.StatusOK, t)
}

// ---- tokens ----

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req struct {
		Tenant  string     `json:"tenant"`
		Role    string     `json:"role"`
		Name    string     `json:"name"`
		Expires *time.Time `json:"expires"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Tenant == "" {
		if !p.Global() || p.Role != auth.RoleAdmin {
			writeError(w, http.StatusForbidden, "global tokens can be created only with a global admin token")
			return
		}
	} else if !s.adminOf(w, p, req.Tenant) {
		return
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	tok, secret, err := s.cfg.Registry.CreateToken(req.Tenant, role, req.Name, req.Expires)
	switch {
	case errors.Is(err, auth.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.log.Info("token created", "token_id", tok.ID, "tenant", tok.Tenant, "role", tok.Role, "by_token", p.TokenID)
	s.audited(r, action(r, p, logOf(tok.Tenant), selfaudit.TokenCreated, tok.ID, tok))
	writeJSON(w, http.StatusCreated, struct {
		auth.Token
		Secret string `json:"token"`
	}{tok, secret})
}

// logOf is the tenant whose log records a change to something scoped to
// tenant: that tenant's, or the system log for global things.
func logOf(tenant string) string {
	if tenant == "" {
		return selfaudit.SystemTenant
	}
	return tenant
}

// adminOf checks that p administers tenant, answering 404/403 otherwise.
func (s *Server) adminOf(w http.ResponseWriter, p auth.Principal, tenant string) bool {
	err := p.Authorize(tenant, auth.RoleAdmin)
	if err == nil {
		if _, ok := s.cfg.Registry.Tenant(tenant); !ok {
			err = auth.ErrNotFound
		}
	}
	switch {
	case errors.Is(err, auth.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("tenant %q not found", tenant))
	case err != nil:
		writeError(w, http.StatusForbidden, "managing tokens needs an admin token")
	}
	return err == nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	tenant := r.URL.Query().Get("tenant")
	if !p.Global() {
		if tenant != "" && tenant != p.Tenant {
			writeError(w, http.StatusNotFound, fmt.Sprintf("tenant %q not found", tenant))
			return
		}
		tenant = p.Tenant
	}
	if p.Role != auth.RoleAdmin {
		writeError(w, http.StatusForbidden, "listing tokens needs an admin token")
		return
	}
	toks := s.cfg.Registry.Tokens(tenant)
	if toks == nil {
		toks = []auth.Token{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": toks})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id := r.PathValue("id")
	tok, ok := s.cfg.Registry.TokenInfo(id)
	// A tenant-scoped token may not learn of other tenants' or global tokens.
	if !ok || (!p.Global() && tok.Tenant != p.Tenant) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("token %q not found", id))
		return
	}
	if p.Role != auth.RoleAdmin {
		writeError(w, http.StatusForbidden, "revoking tokens needs an admin token")
		return
	}
	if err := s.cfg.Registry.Revoke(id); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.log.Info("token revoked", "token_id", id, "by_token", p.TokenID)
	s.audited(r, action(r, p, logOf(tok.Tenant), selfaudit.TokenRevoked, tok.ID, tok))
	w.WriteHeader(http.StatusNoContent)
}

// ---- records ----

func (s *Server) ingestRecords(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	ct := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]))
	ndjson := false
	switch ct {
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines":
		ndjson = true
	case "", "application/json", "text/plain", "application/octet-stream":
	default:
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Type %q: send NDJSON (application/x-ndjson) or a JSON array (application/json)", ct))
		return
	}
	limit := s.cfg.Ingest.MaxBodyBytes()
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is over the %d byte limit; send smaller batches", r.ContentLength, limit))
		return
	}
	src, seq, err := batchSource(r, p)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := s.cfg.Ingest.Ingest(r.Context(), ingest.Batch{
		Tenant:   r.PathValue("tenant"),
		Source:   src,
		Sequence: seq,
		Body:     http.MaxBytesReader(w, r.Body, limit),
		Encoding: r.Header.Get("Content-Encoding"),
		Mapping:  r.URL.Query().Get("mapping"),
		NDJSON:   ndjson,
		SizeHint: r.ContentLength,
	})
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, res)
	case errors.Is(err, ingest.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is over the %d byte limit (after decompression); send smaller batches", limit))
	case errors.Is(err, ingest.ErrUnsupported):
		writeError(w, http.StatusUnsupportedMediaType, err.Error())
	case errors.Is(err, store.ErrBusy):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "write queue is full; retry after a second")
	case errors.Is(err, store.ErrNoSpace):
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "disk headroom exhausted; nothing was stored")
	case errors.Is(err, store.ErrClosed):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "server is shutting down; nothing was stored")
	case errors.Is(err, context.Canceled):
		writeError(w, 499, "request cancelled")
	default:
		s.log.Error("ingest failed", "tenant", r.PathValue("tenant"), "err", err)
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "records could not be stored: "+err.Error())
	}
}

// parseTime accepts RFC 3339, a date, or a duration back from now (30d, 12h).
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if n := len(s); n > 1 {
		if v, err := strconv.Atoi(s[:n-1]); err == nil && v >= 0 {
			unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[s[n-1]]
			if unit != 0 {
				return time.Now().UTC().Add(-time.Duration(v) * unit), nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("%q is not RFC 3339, YYYY-MM-DD or a duration like 30d", s)
}

// ---- helpers ----

const maxJSONBody = 1 << 20

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
