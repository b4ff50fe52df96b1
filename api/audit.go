package api

import (
	"net"
	"net/http"

	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/selfaudit"
)

func actor(p auth.Principal) selfaudit.Actor {
	return selfaudit.Actor{TokenID: p.TokenID, TokenName: p.Name, Role: string(p.Role), Global: p.Global()}
}

// action is the self-audit record of what p does through request r.
func action(r *http.Request, p auth.Principal, tenant, op, object string, params any) selfaudit.Action {
	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	return selfaudit.Action{Tenant: tenant, Operation: op, Actor: actor(p), ClientIP: ip,
		UserAgent: r.UserAgent(), ObjectID: object, Parameters: params}
}

// auditFirst records a read before it runs and answers 503 if it cannot:
// a search that would leave no trace must not happen.
func (s *Server) auditFirst(w http.ResponseWriter, r *http.Request, a selfaudit.Action) bool {
	if err := s.audit.Record(r.Context(), a); err != nil {
		s.log.Error("self-audit failed; refusing the request", "tenant", a.Tenant, "operation", a.Operation, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "this request could not be recorded in the audit log, so it was not run; retry shortly")
		return false
	}
	return true
}

// audited records a change that has been made. The change stands if the
// record cannot be written (undoing it could fail too), so the failure is
// logged at error level for the operator.
func (s *Server) audited(r *http.Request, a selfaudit.Action) {
	if err := s.audit.Record(r.Context(), a); err != nil {
		s.log.Error("self-audit record of a change was lost", "tenant", a.Tenant, "operation", a.Operation,
			"object", a.ObjectID, "token_id", a.Actor.TokenID, "err", err)
	}
}

// recordDenied records a token trying what its role does not allow on its
// own tenant: a read token probing retention settings is worth knowing of.
func (s *Server) recordDenied(r *http.Request, p auth.Principal, tenant string, need auth.Role) {
	a := action(r, p, tenant, selfaudit.AccessDenied, r.URL.Path,
		map[string]string{"method": r.Method, "path": r.URL.Path, "needs": string(need)})
	a.Failed = true
	s.audited(r, a)
}
