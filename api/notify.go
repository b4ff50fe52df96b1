package api

import (
	"errors"
	"net/http"

	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/notify"
	"github.com/custos-audit/custos/selfaudit"
)

// withNotify answers 503 on servers that run without detection.
func (s *Server) withNotify(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		if s.cfg.Notify == nil {
			writeError(w, http.StatusServiceUnavailable, "detection (and so notification) is not enabled on this server")
			return
		}
		h(w, r, p)
	}
}

func (s *Server) listChannels(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	list := s.cfg.Notify.List(r.PathValue("tenant"))
	if list == nil {
		list = []notify.Status{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"channels": list})
}

// channelAudit is what the self-audit keeps of a channel: never its secret
// nor the credential part of its URL.
func channelAudit(st notify.Status) map[string]any {
	return map[string]any{"id": st.ID, "name": st.Name, "url": st.URL, "format": st.Format, "minSeverity": st.MinSeverity, "secretSet": st.SecretSet}
}

func (s *Server) addChannel(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var req struct {
		Name        string `json:"name"`
		URL         string `json:"url"`
		Format      string `json:"format"`
		Secret      string `json:"secret"`
		MinSeverity string `json:"minSeverity"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	tenant := r.PathValue("tenant")
	st, err := s.cfg.Notify.Add(tenant, notify.Channel{Name: req.Name, URL: req.URL, Format: req.Format, Secret: req.Secret, MinSeverity: req.MinSeverity}, p.Name)
	if err != nil {
		writeDetectionError(w, err)
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.NotificationChanged, st.ID, map[string]any{"added": channelAudit(st)}))
	writeJSON(w, http.StatusCreated, st)
}

func (s *Server) removeChannel(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	tenant := r.PathValue("tenant")
	st, err := s.cfg.Notify.Remove(tenant, r.PathValue("id"))
	if err != nil {
		writeDetectionError(w, err)
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.NotificationChanged, st.ID, map[string]any{"removed": channelAudit(st)}))
	w.WriteHeader(http.StatusNoContent)
}

// testChannel sends a sample alert now; 502 says the receiver did not take it.
func (s *Server) testChannel(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	err := s.cfg.Notify.Test(r.Context(), tenant, id)
	if errors.Is(err, notify.ErrNotFound) {
		writeDetectionError(w, err)
		return
	}
	result := map[string]any{"delivered": err == nil}
	if err != nil {
		result["error"] = err.Error()
	}
	a := action(r, p, tenant, selfaudit.NotificationTested, id, result)
	a.Failed = err != nil
	s.audited(r, a)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, result)
		return
	}
	writeJSON(w, http.StatusOK, result)
}
