package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custos-audit/custos/alert"
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

// env is a real server on loopback: registry file, DuckDB store, ingest.
type env struct {
	t      *testing.T
	srv    *httptest.Server
	api    *Server
	db     *store.DB
	reg    *auth.Registry
	ret    *retention.Registry
	alerts *alert.Store
	notify *notify.Notifier
	engine *detect.Engine
	src    *source.Registry
	clock  time.Time         // retention's now; zero means the real clock
	tokens map[string]string // "alpha/ingest", "global/admin", ... → token
	ids    map[string]string // same keys → token id
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	reg, err := auth.Open(filepath.Join(dir, "auth.json"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(dir, store.Options{MemoryLimit: "1GB", Threads: 2, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(db.Collector())
	ret, err := retention.OpenRegistry(filepath.Join(dir, "retention.json"))
	if err != nil {
		t.Fatal(err)
	}
	queries, err := queryjob.Open(queryjob.Config{Dir: filepath.Join(dir, "queries"), Reader: db})
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := alert.Open(filepath.Join(dir, "alerts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	engine, err := detect.Open(filepath.Join(dir, "detect"), nil, alerts, nil, detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	notifier, err := notify.Open(filepath.Join(dir, "notify.json"), alerts, notify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sources, err := source.Open(source.Config{Dir: filepath.Join(dir, "sources"), Arrivals: db, Alerts: alerts})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, reg: reg, ret: ret, alerts: alerts, engine: engine, notify: notifier, src: sources, tokens: map[string]string{}, ids: map[string]string{}}
	e.api = New(Config{
		Registry: reg,
		Ingest:   ingest.New(db, ingest.Config{MaxBodyBytes: 4 << 20, Registerer: promReg, Observer: sources}),
		Sources:  sources,
		Reader:   db,
		Retention: retention.NewEnforcer(retention.EnforcerConfig{Registry: ret, Store: db, DefaultDays: retention.DefaultDays,
			Now: func() time.Time { return e.now() }}),
		Queries: queries,
		Alerts:  alerts,
		Detect:  engine,
		Notify:  notifier,
		Ready:   db.Ready,
		Metrics: promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}),
	})
	a := e.api
	e.srv = httptest.NewServer(a)
	t.Cleanup(func() { e.srv.Close(); queries.Close(); alerts.Close(); db.Close() })
	// Each tenant has an alert, so routes naming one can be tried across tenants.
	for _, tenant := range []string{"alpha", "beta"} {
		a, _, err := alerts.Raise(alert.Finding{Tenant: tenant, Detector: detect.MailAppNew, Severity: "high",
			Entity: "app-" + tenant, RecordID: tenant + "-secret", At: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		e.ids[tenant+"/alert"] = a.ID
		ch, err := notifier.Add(tenant, notify.Channel{Name: "soc", URL: "https://hooks.example.org/" + tenant, Format: notify.FormatSlack}, "")
		if err != nil {
			t.Fatal(err)
		}
		e.ids[tenant+"/channel"] = ch.ID
		if err := sources.Report(tenant, tenant+"-fwd", source.Heartbeat{Kind: source.KindForwarder}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := engine.TenantRules().Put(tenant, tenant+"-rule", []byte(ruleYAML(tenant+"-rule")), "", engine.ServerRule); err != nil {
			t.Fatal(err)
		}
	}
	for _, tenant := range []string{"alpha", "beta"} {
		if _, err := reg.CreateTenant(tenant, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, scope := range []string{"alpha", "beta", "global"} {
		for _, role := range []auth.Role{auth.RoleIngest, auth.RoleRead, auth.RoleAdmin} {
			tenant := scope
			if scope == "global" {
				tenant = ""
			}
			tok, secret, err := reg.CreateToken(tenant, role, scope+"-"+string(role), nil)
			if err != nil {
				t.Fatal(err)
			}
			e.tokens[scope+"/"+string(role)] = secret
			e.ids[scope+"/"+string(role)] = tok.ID
		}
	}
	return e
}

// ruleYAML is a Sigma rule with the given id.
func ruleYAML(id string) string {
	return "title: rule " + id + "\nid: " + id + "\nlevel: medium\nlogsource:\n  product: m365\ndetection:\n  sel:\n    Operation: Set-Mailbox\n  condition: sel\n"
}

func (e *env) now() time.Time {
	if e.clock.IsZero() {
		return time.Now()
	}
	return e.clock
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(method, path, token string, body []byte, hdr ...string) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func rec(id string, at time.Time, extra string) string {
	return fmt.Sprintf(`{"Id":%q,"CreationTime":%q,"RecordType":50,"Operation":"MailItemsAccessed","UserId":"u@x.example","Workload":"Exchange"%s}`,
		id, at.UTC().Format("2006-01-02T15:04:05"), extra)
}

func (e *env) ingest(tenant, token, body string, hdr ...string) (reply, ingest.Result) {
	e.t.Helper()
	r := e.do("POST", "/api/v1/tenants/"+tenant+"/records", token, []byte(body), hdr...)
	var res ingest.Result
	if r.status == 200 {
		if err := json.Unmarshal(r.body, &res); err != nil {
			e.t.Fatalf("ingest answer %s: %v", r.body, err)
		}
	}
	return r, res
}

// isolationCase says, for one route, how to call it against a tenant and
// which role it needs there.
type isolationCase struct {
	path func(e *env, tenant string) string
	body func(tenant string) []byte
	need auth.Role // the least role that may call it on its own tenant
}

var isolationCases = map[string]isolationCase{
	"GET /api/v1/tenants/{tenant}": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t },
		need: auth.RoleIngest,
	},
	"POST /api/v1/tenants/{tenant}/records": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/records" },
		body: func(t string) []byte { return []byte(rec("iso-"+t, time.Now(), "")) },
		need: auth.RoleIngest,
	},
	"GET /api/v1/tenants/{tenant}/records": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/records?from=30d" },
		need: auth.RoleRead,
	},
	"POST /api/v1/tenants/{tenant}/records/search": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/records/search" },
		body: func(t string) []byte { return []byte(`{"from":"30d","operations":["MailItemsAccessed"]}`) },
		need: auth.RoleRead,
	},
	"POST /api/v1/tenants/{tenant}/queries": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/queries" },
		body: func(t string) []byte {
			return []byte(`{"displayName":"iso","filterStartDateTime":"2026-01-01T00:00:00Z"}`)
		},
		need: auth.RoleRead,
	},
	"GET /api/v1/tenants/{tenant}/queries": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/queries" },
		need: auth.RoleRead,
	},
	"GET /api/v1/tenants/{tenant}/queries/{id}": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/queries/0123456789abcdef01234567" },
		need: auth.RoleRead,
	},
	"GET /api/v1/tenants/{tenant}/queries/{id}/records": {
		path: func(e *env, t string) string {
			return "/api/v1/tenants/" + t + "/queries/0123456789abcdef01234567/records"
		},
		need: auth.RoleRead,
	},
	"POST /api/v1/tenants/{tenant}/queries/{id}/cancel": {
		path: func(e *env, t string) string {
			return "/api/v1/tenants/" + t + "/queries/0123456789abcdef01234567/cancel"
		},
		need: auth.RoleRead,
	},
	"DELETE /api/v1/tenants/{tenant}/queries/{id}": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/queries/0123456789abcdef01234567" },
		need: auth.RoleRead,
	},
	"GET /api/v1/tenants/{tenant}/sources": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/sources" },
		need: auth.RoleRead,
	},
	"GET /api/v1/tenants/{tenant}/sources/{name}": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/sources/" + t + "-fwd" },
		need: auth.RoleRead,
	},
	"GET /api/v1/tenants/{tenant}/sources/{name}/coverage": {
		path: func(e *env, t string) string {
			return "/api/v1/tenants/" + t + "/sources/" + t + "-fwd/coverage?from=2d"
		},
		need: auth.RoleRead,
	},
	"POST /api/v1/tenants/{tenant}/sources/{name}/heartbeat": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/sources/" + t + "-fwd/heartbeat" },
		body: func(t string) []byte { return []byte(`{"kind":"forwarder","sequence":7}`) },
		need: auth.RoleIngest,
	},
	"GET /api/v1/tenants/{tenant}/retention/policies": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/retention/policies" },
		need: auth.RoleRead,
	},
	"POST /api/v1/tenants/{tenant}/retention/policies": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/retention/policies" },
		body: func(t string) []byte {
			return []byte(`{"name":"iso","recordTypes":["ExchangeItem"],"retentionDuration":"7d","priority":1}`)
		},
		need: auth.RoleAdmin,
	},
	"GET /api/v1/tenants/{tenant}/retention/policies/{name}": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/retention/policies/keep" },
		need: auth.RoleRead,
	},
	"PATCH /api/v1/tenants/{tenant}/retention/policies/{name}": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/retention/policies/keep" },
		body: func(t string) []byte { return []byte(`{"retentionDuration":"7d"}`) },
		need: auth.RoleAdmin,
	},
	"DELETE /api/v1/tenants/{tenant}/retention/policies/{name}": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/retention/policies/keep" },
		need: auth.RoleAdmin,
	},
	"GET /api/v1/tenants/{tenant}/retention/hold": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/retention/hold" },
		need: auth.RoleRead,
	},
	"PUT /api/v1/tenants/{tenant}/retention/hold": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/retention/hold" },
		body: func(t string) []byte { return []byte(`{"all":false}`) },
		need: auth.RoleAdmin,
	},
	"POST /api/v1/tenants/{tenant}/retention/enforce": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/retention/enforce" },
		body: func(t string) []byte { return []byte(`{"dryRun":false}`) },
		need: auth.RoleAdmin,
	},
	"GET /api/v1/tenants/{tenant}/retention/report": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/retention/report" },
		need: auth.RoleRead,
	},
	"GET /api/v1/tenants/{tenant}/alerts": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/alerts" },
		need: auth.RoleRead,
	},
	"GET /api/v1/tenants/{tenant}/alerts/{id}": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/alerts/" + e.ids["beta/alert"] },
		need: auth.RoleRead,
	},
	"POST /api/v1/tenants/{tenant}/alerts/{id}/ack": {
		path: func(e *env, t string) string {
			return "/api/v1/tenants/" + t + "/alerts/" + e.ids["beta/alert"] + "/ack"
		},
		need: auth.RoleRead,
	},
	"POST /api/v1/tenants/{tenant}/alerts/{id}/close": {
		path: func(e *env, t string) string {
			return "/api/v1/tenants/" + t + "/alerts/" + e.ids["beta/alert"] + "/close"
		},
		need: auth.RoleRead,
	},
	"GET /api/v1/tenants/{tenant}/detection": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/detection" },
		need: auth.RoleRead,
	},
	"POST /api/v1/tenants/{tenant}/detection/rebuild": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/detection/rebuild?days=1" },
		need: auth.RoleAdmin,
	},
	"GET /api/v1/tenants/{tenant}/detection/allowlist": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/detection/allowlist" },
		need: auth.RoleRead,
	},
	"POST /api/v1/tenants/{tenant}/detection/allowlist": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/detection/allowlist" },
		body: func(t string) []byte { return []byte(`{"value":"x"}`) },
		need: auth.RoleAdmin,
	},
	"DELETE /api/v1/tenants/{tenant}/detection/allowlist": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/detection/allowlist?value=x" },
		need: auth.RoleAdmin,
	},
	"GET /api/v1/tenants/{tenant}/rules": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/rules" },
		need: auth.RoleRead,
	},
	"GET /api/v1/tenants/{tenant}/rules/{id}": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/rules/" + t + "-rule" },
		need: auth.RoleRead,
	},
	"PUT /api/v1/tenants/{tenant}/rules/{id}": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/rules/" + t + "-rule" },
		body: func(t string) []byte { return []byte(ruleYAML(t + "-rule")) },
		need: auth.RoleAdmin,
	},
	"DELETE /api/v1/tenants/{tenant}/rules/{id}": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/rules/" + t + "-rule" },
		need: auth.RoleAdmin,
	},
	"GET /api/v1/tenants/{tenant}/notifications": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/notifications" },
		need: auth.RoleRead,
	},
	"POST /api/v1/tenants/{tenant}/notifications": {
		path: func(e *env, t string) string { return "/api/v1/tenants/" + t + "/notifications" },
		body: func(t string) []byte { return []byte(`{"name":"x","url":"https://example.org/x","format":"slack"}`) },
		need: auth.RoleAdmin,
	},
	"DELETE /api/v1/tenants/{tenant}/notifications/{id}": {
		path: func(e *env, t string) string {
			return "/api/v1/tenants/" + t + "/notifications/" + e.ids["beta/channel"]
		},
		need: auth.RoleAdmin,
	},
	"POST /api/v1/tenants/{tenant}/notifications/{id}/test": {
		path: func(e *env, t string) string {
			return "/api/v1/tenants/" + t + "/notifications/" + e.ids["beta/channel"] + "/test"
		},
		need: auth.RoleAdmin,
	},
	"POST /api/v1/tokens": {
		path: func(e *env, t string) string { return "/api/v1/tokens" },
		body: func(t string) []byte { return []byte(`{"tenant":"` + t + `","role":"read"}`) },
		need: auth.RoleAdmin,
	},
	"GET /api/v1/tokens": {
		path: func(e *env, t string) string { return "/api/v1/tokens?tenant=" + t },
		need: auth.RoleAdmin,
	},
	"DELETE /api/v1/tokens/{id}": {
		path: func(e *env, t string) string { return "/api/v1/tokens/" + e.ids[t+"/read"] },
		need: auth.RoleAdmin,
	},
}

// Routes not scoped to a tenant, with the answer a tenant-scoped admin gets.
var globalOnly = map[string]int{
	"POST /api/v1/tenants": http.StatusForbidden,
	"GET /metrics":         http.StatusForbidden,
}

var public = []string{"GET /healthz", "GET /readyz"}

func TestEveryRouteIsCovered(t *testing.T) {
	e := newEnv(t)
	for _, p := range e.api.patterns {
		_, tenanted := isolationCases[p]
		_, global := globalOnly[p]
		if !tenanted && !global && !slices.Contains(public, p) && p != "GET /api/v1/tenants" {
			t.Errorf("route %q has no isolation test case", p)
		}
	}
}

func TestTenantIsolationOnEveryRoute(t *testing.T) {
	e := newEnv(t)
	// beta has data alpha must never see or change.
	if r, res := e.ingest("beta", e.tokens["beta/ingest"], rec("beta-secret", time.Now(), "")); r.status != 200 || res.Accepted != 1 {
		t.Fatalf("seed beta: %d %s", r.status, r.body)
	}
	before := e.idsOf("beta")
	order := []string{}
	for p := range isolationCases {
		order = append(order, p)
	}
	slices.Sort(order) // DELETE last would be nicer, but each case uses its own token ids
	for _, pattern := range order {
		c := isolationCases[pattern]
		method, _, _ := strings.Cut(pattern, " ")
		var body []byte
		if c.body != nil {
			body = c.body("beta")
		}
		for _, role := range []auth.Role{auth.RoleIngest, auth.RoleRead, auth.RoleAdmin} {
			r := e.do(method, c.path(e, "beta"), e.tokens["alpha/"+string(role)], body)
			if r.status != http.StatusNotFound {
				t.Errorf("%s on beta with alpha/%s token: %d %s, want 404", pattern, role, r.status, r.body)
			}
			if bytes.Contains(r.body, []byte("beta-secret")) {
				t.Errorf("%s leaked beta's record to alpha/%s", pattern, role)
			}
		}
		// No token and a bad token get 401 everywhere.
		for _, tok := range []string{"", "custos_0123456789abcdef_nope"} {
			if r := e.do(method, c.path(e, "beta"), tok, body); r.status != http.StatusUnauthorized {
				t.Errorf("%s with token %q: %d, want 401", pattern, tok, r.status)
			}
		}
		// On its own tenant, a role below the route's need gets 403.
		for _, role := range []auth.Role{auth.RoleIngest, auth.RoleRead} {
			if role == c.need || c.need == auth.RoleIngest {
				continue
			}
			var own []byte
			if c.body != nil {
				own = c.body("alpha")
			}
			if r := e.do(method, c.path(e, "alpha"), e.tokens["alpha/"+string(role)], own); r.status != http.StatusForbidden {
				t.Errorf("%s on alpha with alpha/%s: %d %s, want 403", pattern, role, r.status, r.body)
			}
		}
	}
	if after := e.idsOf("beta"); !slices.Equal(before, after) {
		t.Fatalf("beta's records changed: %v → %v", before, after)
	}
	if _, ok := e.reg.TokenInfo(e.ids["beta/read"]); !ok {
		t.Fatal("beta's token vanished")
	}
	if tok, _ := e.reg.TokenInfo(e.ids["beta/read"]); tok.Revoked != nil {
		t.Fatal("alpha revoked beta's token")
	}
	if a, err := e.alerts.Get("beta", e.ids["beta/alert"]); err != nil || a.Status != alert.StatusOpen {
		t.Fatalf("alpha changed beta's alert: %+v %v", a, err)
	}
	if rs := e.engine.TenantRules().List("beta"); len(rs) != 1 || rs[0].ID != "beta-rule" {
		t.Fatalf("alpha changed beta's rules: %+v", rs)
	}
	if st, err := e.src.Get("beta", "beta-fwd"); err != nil || st.Heartbeat == nil || st.Heartbeat.Sequence != 0 {
		t.Fatalf("alpha changed beta's source: %+v %v", st, err)
	}
	if chs := e.notify.List("beta"); len(chs) != 1 || chs[0].ID != e.ids["beta/channel"] {
		t.Fatalf("alpha changed beta's notification channels: %+v", chs)
	}
	if ps := e.ret.Policies("beta"); len(ps) != 0 || e.ret.Hold("beta").Active() {
		t.Fatalf("alpha changed beta's retention: %+v %+v", ps, e.ret.Hold("beta"))
	}
	for pattern, want := range globalOnly {
		method, path, _ := strings.Cut(pattern, " ")
		if r := e.do(method, path, e.tokens["alpha/admin"], []byte(`{"id":"gamma"}`)); r.status != want {
			t.Errorf("%s with alpha/admin: %d, want %d", pattern, r.status, want)
		}
		if r := e.do(method, path, "", nil); r.status != http.StatusUnauthorized {
			t.Errorf("%s without token: %d, want 401", pattern, r.status)
		}
	}
	// A tenant admin lists only its own tenant and tokens.
	r := e.do("GET", "/api/v1/tenants", e.tokens["alpha/admin"], nil)
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"alpha"`)) || bytes.Contains(r.body, []byte(`"beta"`)) {
		t.Errorf("alpha admin lists tenants: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/api/v1/tokens", e.tokens["alpha/admin"], nil)
	if r.status != 200 || bytes.Contains(r.body, []byte(`"beta`)) || bytes.Contains(r.body, []byte(`"tenant":""`)) {
		t.Errorf("alpha admin lists tokens: %d %s", r.status, r.body)
	}
	// Unknown paths need a token too.
	if r := e.do("GET", "/api/v1/nothing", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("unknown path without token: %d", r.status)
	}
	for _, p := range public {
		_, path, _ := strings.Cut(p, " ")
		if r := e.do("GET", path, "", nil); r.status != 200 {
			t.Errorf("%s without token: %d, want 200", p, r.status)
		}
	}
}

func (e *env) idsOf(tenant string) []string {
	r := e.do("GET", "/api/v1/tenants/"+tenant+"/records?from=2000-01-01", e.tokens["global/read"], nil)
	if r.status != 200 {
		e.t.Fatalf("list %s: %d %s", tenant, r.status, r.body)
	}
	var ids []string
	for _, l := range bytes.Split(bytes.TrimSpace(r.body), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var v struct{ Id, Workload string }
		json.Unmarshal(l, &v)
		if v.Workload != selfaudit.Workload { // earlier listings' own audit records
			ids = append(ids, v.Id)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestIngestPartialBatchAndDuplicates(t *testing.T) {
	e := newEnv(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	lines := []string{
		rec("a1", now, ""),
		`{"Id":"bad-json",`,
		rec("a2", now, ""),
		`{"Id":"no-time","Operation":"X"}`,
		"",
		rec("a3", now, ""),
		`{"Id":"t","CreationTime":"yesterday","Operation":"X"}`,
		`[1,2,3]`,
		rec("a1", now, ""), // duplicate within the batch
	}
	r, res := e.ingest("alpha", e.tokens["alpha/ingest"], strings.Join(lines, "\n"))
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if res.Accepted != 3 || res.Duplicate != 1 || res.Rejected != 4 {
		t.Fatalf("counts %+v", res)
	}
	wantLines := []int{2, 4, 7, 8}
	for i, re := range res.Errors {
		if re.Line != wantLines[i] || re.Error == "" {
			t.Errorf("error %d: %+v, want line %d", i, re, wantLines[i])
		}
	}
	if res.Errors[1].Field != "CreationTime" || res.Errors[2].Field != "CreationTime" {
		t.Errorf("errors do not name the field: %+v", res.Errors)
	}
	if got := e.idsOf("alpha"); !slices.Equal(got, []string{"a1", "a2", "a3"}) {
		t.Fatalf("stored %v", got)
	}
	// The same batch again: all duplicates, nothing new.
	_, res = e.ingest("alpha", e.tokens["alpha/ingest"], strings.Join(lines, "\n"))
	if res.Accepted != 0 || res.Duplicate != 4 || res.Rejected != 4 {
		t.Fatalf("re-post counts %+v", res)
	}
}

func TestIngestEncodingsAndArrays(t *testing.T) {
	e := newEnv(t)
	now := time.Date(2026, 6, 2, 8, 0, 0, 0, time.UTC)
	array := "[" + rec("j1", now, "") + ",\n " + rec("j2", now, `,"ClientIP":"[fdfd::555]:12346"`) + "]"
	if _, res := e.ingest("alpha", e.tokens["alpha/admin"], array, "Content-Type", "application/json"); res.Accepted != 2 {
		t.Fatalf("array: %+v", res)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(rec("g1", now, "") + "\n" + rec("g2", now, "")))
	zw.Close()
	if r, res := e.ingest("alpha", e.tokens["alpha/ingest"], gz.String(), "Content-Encoding", "gzip"); res.Accepted != 2 {
		t.Fatalf("gzip: %d %s", r.status, r.body)
	}
	enc, _ := zstd.NewWriter(nil)
	z := enc.EncodeAll([]byte(rec("z1", now, "")), nil)
	if r, res := e.ingest("alpha", e.tokens["alpha/ingest"], string(z), "Content-Encoding", "zstd"); res.Accepted != 1 {
		t.Fatalf("zstd: %d %s", r.status, r.body)
	}
	// A broken array keeps the elements before the break.
	broken := "[" + rec("k1", now, "") + "," + rec("k2", now, "") + `, {"Id": ]`
	r, res := e.ingest("alpha", e.tokens["alpha/ingest"], broken)
	if r.status != 200 || res.Accepted != 2 || res.Rejected != 1 || !strings.Contains(res.Errors[0].Error, "malformed JSON array") {
		t.Fatalf("broken array: %d %+v", r.status, res)
	}
	// Declared NDJSON is read line by line even when a line starts with '['.
	r, res = e.ingest("alpha", e.tokens["alpha/ingest"], "[1,2]\n"+rec("n1", now, ""), "Content-Type", "application/x-ndjson")
	if r.status != 200 || res.Accepted != 1 || res.Rejected != 1 || res.Errors[0].Line != 1 {
		t.Fatalf("ndjson starting with '[': %d %+v", r.status, res)
	}
	// Raw bytes are kept exactly.
	raw := e.do("GET", "/api/v1/tenants/alpha/records?from=2026-06-02&to=2026-06-03", e.tokens["alpha/read"], nil)
	if !bytes.Contains(raw.body, []byte(`"ClientIP":"[fdfd::555]:12346"`)) {
		t.Fatalf("raw record altered: %s", raw.body)
	}
	if got := e.idsOf("alpha"); !slices.Equal(got, []string{"g1", "g2", "j1", "j2", "k1", "k2", "n1", "z1"}) {
		t.Fatalf("stored %v", got)
	}
}

func TestIngestLimitsAndErrors(t *testing.T) {
	e := newEnv(t)
	tok := e.tokens["alpha/ingest"]
	big := strings.Repeat("x", 5<<20)
	if r, _ := e.ingest("alpha", tok, big); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("5 MiB body with 4 MiB limit: %d", r.status)
	}
	// A compression bomb is stopped at the decoded limit.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte(" "), 8<<20))
	zw.Close()
	if r, _ := e.ingest("alpha", tok, gz.String(), "Content-Encoding", "gzip"); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("gzip bomb: %d %s", r.status, r.body)
	}
	if r, _ := e.ingest("alpha", tok, "{}", "Content-Encoding", "br"); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("brotli: %d", r.status)
	}
	if r, _ := e.ingest("alpha", tok, "{}", "Content-Type", "text/csv"); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("csv: %d", r.status)
	}
	if r, _ := e.ingest("alpha", tok, "not gzip", "Content-Encoding", "gzip"); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("bad gzip: %d", r.status)
	}
	// A record over 1 MiB is rejected alone; its neighbours are kept.
	huge := rec("huge", time.Now(), `,"Pad":"`+strings.Repeat("a", 1<<20)+`"`)
	r, res := e.ingest("alpha", tok, rec("ok1", time.Now(), "")+"\n"+huge+"\n"+rec("ok2", time.Now(), ""))
	if r.status != 200 || res.Accepted != 2 || res.Rejected != 1 || res.Errors[0].Line != 2 {
		t.Errorf("huge record: %d %+v", r.status, res)
	}
	if r, _ := e.ingest("nope", e.tokens["global/admin"], rec("x", time.Now(), "")); r.status != http.StatusNotFound {
		t.Errorf("unknown tenant: %d", r.status)
	}
}

func TestTokenLifecycleOverHTTP(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/api/v1/tenants", e.tokens["global/admin"], []byte(`{"id":"gamma","name":"Gamma Ltd"}`))
	if r.status != http.StatusCreated {
		t.Fatalf("create tenant: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/v1/tenants", e.tokens["global/admin"], []byte(`{"id":"gamma"}`)); r.status != http.StatusConflict {
		t.Fatalf("duplicate tenant: %d", r.status)
	}
	if r := e.do("POST", "/api/v1/tenants", e.tokens["global/admin"], []byte(`{"id":"Bad Id"}`)); r.status != http.StatusBadRequest {
		t.Fatalf("bad tenant id: %d", r.status)
	}
	r = e.do("POST", "/api/v1/tokens", e.tokens["global/admin"], []byte(`{"tenant":"gamma","role":"ingest","name":"c1"}`))
	var created struct {
		ID, Token, Tenant string
		Role              auth.Role
	}
	json.Unmarshal(r.body, &created)
	if r.status != http.StatusCreated || created.Tenant != "gamma" || created.Role != auth.RoleIngest || !strings.HasPrefix(created.Token, "custos_") {
		t.Fatalf("create token: %d %s", r.status, r.body)
	}
	if _, res := e.ingest("gamma", created.Token, rec("g", time.Now(), "")); res.Accepted != 1 {
		t.Fatalf("new token cannot ingest: %+v", res)
	}
	list := e.do("GET", "/api/v1/tokens?tenant=gamma", e.tokens["global/admin"], nil)
	if bytes.Contains(list.body, []byte(created.Token)) || !bytes.Contains(list.body, []byte(created.ID)) {
		t.Fatalf("token list leaks the secret or misses the token: %s", list.body)
	}
	if r := e.do("DELETE", "/api/v1/tokens/"+created.ID, e.tokens["global/admin"], nil); r.status != http.StatusNoContent {
		t.Fatalf("revoke: %d", r.status)
	}
	if r, _ := e.ingest("gamma", created.Token, rec("g2", time.Now(), "")); r.status != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", r.status)
	}
	if r := e.do("POST", "/api/v1/tokens", e.tokens["alpha/admin"], []byte(`{"role":"admin"}`)); r.status != http.StatusForbidden {
		t.Fatalf("tenant admin made a global token: %d", r.status)
	}
	if r := e.do("GET", "/metrics", e.tokens["global/read"], nil); r.status != 200 || !bytes.Contains(r.body, []byte("custos_ingest_records_total")) {
		t.Fatalf("metrics: %d", r.status)
	}
}
