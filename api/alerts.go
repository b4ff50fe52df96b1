package api

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/detect"
	"github.com/custos-audit/custos/notify"
	"github.com/custos-audit/custos/rules"
	"github.com/custos-audit/custos/selfaudit"
)

// withDetection answers 503 on servers that run without detection.
func (s *Server) withDetection(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		if s.cfg.Alerts == nil || s.cfg.Detect == nil {
			writeError(w, http.StatusServiceUnavailable, "detection is not enabled on this server")
			return
		}
		h(w, r, p)
	}
}

// writeDetectionError answers an error of the alert store, detection or
// notification with its status: their not-found, invalid and conflict
// errors mean the same to a client.
func writeDetectionError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, alert.ErrNotFound), errors.Is(err, detect.ErrRuleNotFound), errors.Is(err, notify.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, detect.ErrRuleConflict):
		status = http.StatusConflict
	case errors.Is(err, alert.ErrInvalid), errors.Is(err, detect.ErrInvalid), errors.Is(err, detect.ErrInvalidRule),
		errors.Is(err, notify.ErrInvalid):
		status = http.StatusBadRequest
	}
	writeError(w, status, err.Error())
}

// listAlerts answers the tenant's alerts, most recently seen first:
// a JSON object, or one alert per line with format=ndjson (or Accept:
// application/x-ndjson).
func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := r.URL.Query()
	var f alert.Filter
	for _, st := range splitList(q["status"]) {
		switch alert.Status(st) {
		case alert.StatusOpen, alert.StatusAcknowledged, alert.StatusClosed:
			f.Statuses = append(f.Statuses, alert.Status(st))
		default:
			writeError(w, http.StatusBadRequest, "status "+strconv.Quote(st)+": want open, acknowledged or closed")
			return
		}
	}
	for _, sev := range splitList(q["severity"]) {
		i := slices.Index(alert.Severities, sev)
		if i < 0 {
			writeError(w, http.StatusBadRequest, "severity "+strconv.Quote(sev)+": want one of "+strings.Join(alert.Severities, ", "))
			return
		}
		f.Severities = append(f.Severities, sev)
	}
	if len(f.Severities) == 1 {
		// One severity means "at least this severe".
		f.Severities = alert.Severities[slices.Index(alert.Severities, f.Severities[0]):]
	}
	f.Detector = q.Get("detector")
	list := s.cfg.Alerts.List(r.PathValue("tenant"), f)
	if wantsNDJSON(r) {
		writeNDJSON(w, list)
		return
	}
	if list == nil {
		list = []alert.Alert{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": list})
}

// splitList flattens repeated and comma-separated query values.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for x := range strings.SplitSeq(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
	}
	return out
}

func (s *Server) getAlert(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	a, err := s.cfg.Alerts.Get(r.PathValue("tenant"), r.PathValue("id"))
	if err != nil {
		writeDetectionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// setAlertStatus serves ack and close.
func (s *Server) setAlertStatus(status alert.Status) handler {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		var req struct {
			Note string `json:"note"`
		}
		if r.ContentLength != 0 && !readJSON(w, r, &req) {
			return
		}
		tenant, id := r.PathValue("tenant"), r.PathValue("id")
		before, after, err := s.cfg.Alerts.SetStatus(tenant, id, status, p.Name, req.Note)
		if err != nil {
			writeDetectionError(w, err)
			return
		}
		s.audited(r, action(r, p, tenant, selfaudit.AlertStatusChanged, id, map[string]any{
			"detector": after.Detector, "entity": after.Entity, "before": before.Status, "after": after.Status, "note": req.Note}))
		writeJSON(w, http.StatusOK, after)
	}
}

func (s *Server) detectionStatus(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	e := s.cfg.Detect
	var rules []map[string]string
	for _, rl := range e.Rules() {
		rules = append(rules, map[string]string{"id": rl.ID, "title": rl.Title, "level": rl.Level, "source": rl.Source})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"baseline":  e.Status(r.PathValue("tenant")),
		"detectors": detect.Detectors,
		"rules":     rules,
	})
}

func (s *Server) rebuildBaseline(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	tenant := r.PathValue("tenant")
	days, err := strconv.Atoi(r.URL.Query().Get("days"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "days: want a whole number of days, e.g. days=30")
		return
	}
	rep, err := s.cfg.Detect.Rebuild(r.Context(), s.cfg.Reader, tenant, days, time.Now(), nil)
	if err != nil {
		writeDetectionError(w, err)
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.BaselineRebuilt, "", rep))
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) listAllow(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	list := s.cfg.Detect.Allowlist().List(r.PathValue("tenant"))
	if list == nil {
		list = []detect.Allow{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"allowlist": list})
}

func (s *Server) addAllow(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req detect.Allow
	if !readJSON(w, r, &req) {
		return
	}
	req.Added, req.AddedBy = time.Now().UTC(), p.Name
	tenant := r.PathValue("tenant")
	if err := s.cfg.Detect.Allowlist().Add(tenant, req); err != nil {
		writeDetectionError(w, err)
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.AllowlistChanged, req.Value, map[string]any{"added": req}))
	writeJSON(w, http.StatusCreated, req)
}

func (s *Server) removeAllow(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	tenant, q := r.PathValue("tenant"), r.URL.Query()
	removed, err := s.cfg.Detect.Allowlist().Remove(tenant, q.Get("detector"), q.Get("value"))
	if err != nil {
		writeDetectionError(w, err)
		return
	}
	if !removed {
		writeError(w, http.StatusNotFound, "no allowlist entry with that detector and value")
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.AllowlistChanged, q.Get("value"),
		map[string]any{"removed": map[string]string{"detector": q.Get("detector"), "value": q.Get("value")}}))
	w.WriteHeader(http.StatusNoContent)
}

// ruleInfo describes a rule in the rules listing.
type ruleInfo struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Level   string    `json:"level"`
	Scope   string    `json:"scope"`            // server (bundled or --rules) or tenant (added through the API)
	Source  string    `json:"source,omitempty"` // server rules: where they were loaded from
	YAML    string    `json:"yaml,omitempty"`   // tenant rules, when one is asked for
	Added   time.Time `json:"added,omitzero"`
	AddedBy string    `json:"addedBy,omitempty"`
}

func serverRuleInfo(rl *rules.Rule) ruleInfo {
	return ruleInfo{ID: rl.ID, Title: rl.Title, Level: rl.Level, Scope: "server", Source: rl.Source}
}

func tenantRuleInfo(tr detect.TenantRule, withYAML bool) ruleInfo {
	ri := ruleInfo{ID: tr.ID, Title: tr.Title, Level: tr.Level, Scope: "tenant", Added: tr.Added, AddedBy: tr.AddedBy}
	if withYAML {
		ri.YAML = tr.YAML
	}
	return ri
}

// listRules answers every rule evaluated on the tenant's records.
func (s *Server) listRules(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	out := []ruleInfo{}
	for _, rl := range s.cfg.Detect.Rules() {
		out = append(out, serverRuleInfo(rl))
	}
	for _, tr := range s.cfg.Detect.TenantRules().List(r.PathValue("tenant")) {
		out = append(out, tenantRuleInfo(tr, false))
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": out})
}

func (s *Server) getRule(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id := r.PathValue("id")
	for _, rl := range s.cfg.Detect.Rules() {
		if rl.ID == id {
			writeJSON(w, http.StatusOK, serverRuleInfo(rl))
			return
		}
	}
	tr, err := s.cfg.Detect.TenantRules().Get(r.PathValue("tenant"), id)
	if err != nil {
		writeDetectionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, tenantRuleInfo(tr, true))
}

// putRule adds or replaces one of the tenant's rules; the body is the
// Sigma rule's YAML.
func (s *Server) putRule(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	src, err := io.ReadAll(http.MaxBytesReader(w, r.Body, detect.MaxRuleBytes+1))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "a rule is at most "+strconv.Itoa(detect.MaxRuleBytes)+" bytes of YAML")
		return
	}
	tenant := r.PathValue("tenant")
	tr, replaced, err := s.cfg.Detect.TenantRules().Put(tenant, r.PathValue("id"), src, p.Name, s.cfg.Detect.ServerRule)
	if err != nil {
		writeDetectionError(w, err)
		return
	}
	verb, status := "added", http.StatusCreated
	if replaced {
		verb, status = "replaced", http.StatusOK
	}
	s.audited(r, action(r, p, tenant, selfaudit.RuleChanged, tr.ID, map[string]any{verb: tenantRuleInfo(tr, true)}))
	writeJSON(w, status, tenantRuleInfo(tr, true))
}

func (s *Server) deleteRule(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	tenant := r.PathValue("tenant")
	tr, err := s.cfg.Detect.TenantRules().Remove(tenant, r.PathValue("id"))
	if err != nil {
		writeDetectionError(w, err)
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.RuleChanged, tr.ID, map[string]any{"removed": tenantRuleInfo(tr, false)}))
	w.WriteHeader(http.StatusNoContent)
}
