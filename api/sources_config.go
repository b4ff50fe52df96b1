package api

import (
	"errors"
	"net/http"

	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/collection"
	"github.com/custos-audit/custos/selfaudit"
)

// SourceConfigs is the part of the collector manager the API needs;
// *collection.Manager is one.
type SourceConfigs interface {
	Add(tenant string, c collection.Config, sec collection.Secret, by string) (collection.Config, error)
	Get(tenant, name string) (collection.Config, error)
	Remove(tenant, name string) (collection.Config, error)
}

// withCollectors answers 503 on servers built without a collector manager.
func (s *Server) withCollectors(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		if s.cfg.Collectors == nil {
			writeError(w, http.StatusServiceUnavailable, "configured sources are not enabled on this server")
			return
		}
		h(w, r, p)
	}
}

// sourceRequest is the body of POST .../sources. The credential fields
// are write-only: they go to the manager to be sealed and are never
// written back, logged or audited.
type sourceRequest struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	M365 *struct {
		TenantID     string   `json:"tenantId"`
		ClientID     string   `json:"clientId"`
		ClientSecret string   `json:"clientSecret"`
		Certificate  string   `json:"certificate"`
		Cloud        string   `json:"cloud"`
		APIRoot      string   `json:"apiRoot"`
		Authority    string   `json:"authority"`
		ContentTypes []string `json:"contentTypes"`
		PublisherID  string   `json:"publisherId"`
		Rate         float64  `json:"rate"`
	} `json:"m365"`
}

func (s *Server) addSource(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req sourceRequest
	if !readJSON(w, r, &req) {
		return
	}
	tenant := r.PathValue("tenant")
	c := collection.Config{Name: req.Name, Kind: req.Kind}
	var sec collection.Secret
	if req.M365 != nil {
		m := req.M365
		c.M365 = &collection.M365Config{TenantID: m.TenantID, ClientID: m.ClientID, Cloud: m.Cloud, APIRoot: m.APIRoot,
			Authority: m.Authority, ContentTypes: m.ContentTypes, PublisherID: m.PublisherID, Rate: m.Rate}
		sec = collection.Secret{ClientSecret: m.ClientSecret, Certificate: m.Certificate}
	}
	by := p.Name
	if by == "" {
		by = "token:" + p.TokenID
	}
	cfg, err := s.cfg.Collectors.Add(tenant, c, sec, by)
	if err != nil {
		s.writeSourceError(w, tenant, err)
		return
	}
	s.log.Info("source added", "tenant", tenant, "source", cfg.Name, "kind", cfg.Kind, "by_token", p.TokenID)
	s.audited(r, action(r, p, tenant, selfaudit.SourceChanged, cfg.Name, map[string]any{"added": cfg}))
	writeJSON(w, http.StatusCreated, cfg)
}

func (s *Server) getSourceConfig(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	tenant := r.PathValue("tenant")
	cfg, err := s.cfg.Collectors.Get(tenant, r.PathValue("name"))
	if err != nil {
		s.writeSourceError(w, tenant, err)
		return
	}
	writeJSON(w, http.StatusOK, cfg)
}

func (s *Server) removeSource(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	tenant := r.PathValue("tenant")
	cfg, err := s.cfg.Collectors.Remove(tenant, r.PathValue("name"))
	if err != nil {
		s.writeSourceError(w, tenant, err)
		return
	}
	s.log.Info("source removed", "tenant", tenant, "source", cfg.Name, "by_token", p.TokenID)
	s.audited(r, action(r, p, tenant, selfaudit.SourceChanged, cfg.Name, map[string]any{"removed": cfg}))
	w.WriteHeader(http.StatusNoContent)
}

// writeSourceError maps the manager's errors to statuses. Its messages
// name fields and reasons, never credential values.
func (s *Server) writeSourceError(w http.ResponseWriter, tenant string, err error) {
	switch {
	case errors.Is(err, collection.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, collection.ErrExists):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, collection.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		s.log.Error("source configuration failed", "tenant", tenant, "err", err)
		writeError(w, http.StatusInternalServerError, "the source could not be saved: "+err.Error())
	}
}
