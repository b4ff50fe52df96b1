package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/retention"
	"github.com/custos-audit/custos/selfaudit"
)

// policyRequest is a retention policy as clients send it.
type policyRequest struct {
	Name        string             `json:"name"`
	Description string             `json:"description"`
	RecordTypes []string           `json:"recordTypes"`
	Operations  []string           `json:"operations"`
	UserIDs     []string           `json:"userIds"`
	Duration    retention.Duration `json:"retentionDuration"`
	Priority    int                `json:"priority"`
}

// retentionHandler is a handler of the retention routes.
type retentionHandler func(w http.ResponseWriter, r *http.Request, p auth.Principal, e *retention.Enforcer)

// withRetention hands h the enforcer, or answers that this server has none.
func (s *Server) withRetention(h retentionHandler) handler {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		if s.cfg.Retention == nil {
			writeError(w, http.StatusServiceUnavailable, "retention is not configured on this server")
			return
		}
		h(w, r, p, s.cfg.Retention)
	}
}

func writeRetentionError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, retention.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, retention.ErrExists), errors.Is(err, retention.ErrLimit):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, retention.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request, p auth.Principal, e *retention.Enforcer) {
	ps := e.Registry().Policies(r.PathValue("tenant"))
	if ps == nil {
		ps = []retention.Policy{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"policies": ps, "defaultDays": e.DefaultDays()})
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, p auth.Principal, e *retention.Enforcer) {
	pol, err := e.Registry().Policy(r.PathValue("tenant"), r.PathValue("name"))
	if err != nil {
		writeRetentionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, pol)
}

func (s *Server) createPolicy(w http.ResponseWriter, r *http.Request, p auth.Principal, e *retention.Enforcer) {
	var req policyRequest
	if !readJSON(w, r, &req) {
		return
	}
	tenant := r.PathValue("tenant")
	pol, err := e.Registry().Create(tenant, retention.Policy{
		Name: req.Name, Description: req.Description, RecordTypes: req.RecordTypes, Operations: req.Operations,
		UserIDs: req.UserIDs, Duration: req.Duration, Priority: req.Priority,
	}, p.TokenID, time.Now())
	if err != nil {
		writeRetentionError(w, err)
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.RetentionPolicyCreated, pol.Name, map[string]any{"policy": pol}))
	writeJSON(w, http.StatusCreated, pol)
}

func (s *Server) updatePolicy(w http.ResponseWriter, r *http.Request, p auth.Principal, e *retention.Enforcer) {
	var patch retention.Patch
	if !readJSON(w, r, &patch) {
		return
	}
	tenant := r.PathValue("tenant")
	before, after, err := e.Registry().Update(tenant, r.PathValue("name"), patch, p.TokenID, time.Now())
	if err != nil {
		writeRetentionError(w, err)
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.RetentionPolicyChanged, after.Name, map[string]any{"before": before, "after": after}))
	writeJSON(w, http.StatusOK, after)
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request, p auth.Principal, e *retention.Enforcer) {
	tenant := r.PathValue("tenant")
	gone, err := e.Registry().Delete(tenant, r.PathValue("name"))
	if err != nil {
		writeRetentionError(w, err)
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.RetentionPolicyDeleted, gone.Name, map[string]any{"policy": gone}))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getHold(w http.ResponseWriter, r *http.Request, p auth.Principal, e *retention.Enforcer) {
	writeJSON(w, http.StatusOK, e.Registry().Hold(r.PathValue("tenant")))
}

func (s *Server) setHold(w http.ResponseWriter, r *http.Request, p auth.Principal, e *retention.Enforcer) {
	var req struct {
		All    bool     `json:"all"`
		Users  []string `json:"users"`
		Reason string   `json:"reason"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	tenant := r.PathValue("tenant")
	before := e.Registry().Hold(tenant)
	h, err := e.Registry().SetHold(tenant, retention.Hold{All: req.All, Users: req.Users, Reason: req.Reason}, p.TokenID, time.Now())
	if err != nil {
		writeRetentionError(w, err)
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.LegalHoldChanged, "", map[string]any{"before": before, "after": h}))
	writeJSON(w, http.StatusOK, h)
}

// enforceRetention runs enforcement for the tenant now. A dry run only
// reads, so a read token may ask for one; deleting needs an admin.
func (s *Server) enforceRetention(w http.ResponseWriter, r *http.Request, p auth.Principal, e *retention.Enforcer) {
	var req struct {
		DryRun bool `json:"dryRun"`
	}
	if r.ContentLength != 0 && !readJSON(w, r, &req) {
		return
	}
	tenant := r.PathValue("tenant")
	if !req.DryRun && p.Authorize(tenant, auth.RoleAdmin) != nil {
		s.recordDenied(r, p, tenant, auth.RoleAdmin)
		writeError(w, http.StatusForbidden, fmt.Sprintf("this token's role (%s) cannot do this; enforcing retention needs admin (a dry run needs read)", p.Role))
		return
	}
	rep, err := e.Run(r.Context(), tenant, req.DryRun)
	a := action(r, p, tenant, selfaudit.RetentionEnforced, "", rep)
	a.Failed = err != nil
	s.audited(r, a)
	if err != nil {
		s.log.Error("retention run failed", "tenant", tenant, "err", err)
		writeJSON(w, http.StatusInternalServerError, rep)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) retentionReport(w http.ResponseWriter, r *http.Request, p auth.Principal, e *retention.Enforcer) {
	rep, ok := e.Registry().LastReport(r.PathValue("tenant"))
	if !ok {
		writeError(w, http.StatusNotFound, "retention has not run for this tenant yet")
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
