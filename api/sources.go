package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/source"
)

// Headers a sender numbers its batches with.
const (
	sourceHeader   = "X-Custos-Source"
	sequenceHeader = "X-Custos-Sequence"
)

// batchSource is the source a batch of records comes from: the sender's
// X-Custos-Source, or the token's name; and its batch number.
func batchSource(r *http.Request, p auth.Principal) (name string, seq uint64, err error) {
	name = p.Name
	if name == "" {
		name = "token:" + p.TokenID
	}
	if h := r.Header.Get(sourceHeader); h != "" {
		if !source.ValidName(h) {
			return "", 0, fmt.Errorf("%s %q: want letters, digits and . _ : @ -, at most 128", sourceHeader, h)
		}
		name = h
	}
	if h := r.Header.Get(sequenceHeader); h != "" {
		if seq, err = strconv.ParseUint(strings.TrimSpace(h), 10, 64); err != nil || seq == 0 {
			return "", 0, fmt.Errorf("%s %q: want a batch number from 1", sequenceHeader, h)
		}
	}
	return name, seq, nil
}

func writeSourceError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, source.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, source.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// heartbeat takes a sender's report on itself. Unknown fields are allowed:
// a newer forwarder may count more than this server knows.
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	var hb source.Heartbeat
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody)).Decode(&hb); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if err := s.cfg.Sources.Report(r.PathValue("tenant"), r.PathValue("name"), hb); err != nil {
		writeSourceError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listSources(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	list := s.cfg.Sources.List(r.PathValue("tenant"))
	if list == nil {
		list = []source.Status{}
	}
	if wantsNDJSON(r) {
		writeNDJSON(w, list)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sources": list})
}

func (s *Server) getSource(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	st, err := s.cfg.Sources.Get(r.PathValue("tenant"), r.PathValue("name"))
	if err != nil {
		writeSourceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// coverage answers a source's hours from `from` (default a day back) to
// `to` (default now).
func (s *Server) coverage(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	q := r.URL.Query()
	from, err := parseTime(q.Get("from"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "from: "+err.Error())
		return
	}
	to, err := parseTime(q.Get("to"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "to: "+err.Error())
		return
	}
	if to.IsZero() {
		to = time.Now().UTC()
	}
	if from.IsZero() {
		from = to.Add(-24 * time.Hour)
	}
	c, err := s.cfg.Sources.Coverage(r.Context(), r.PathValue("tenant"), r.PathValue("name"), from, to)
	if err != nil {
		writeSourceError(w, err)
		return
	}
	if wantsNDJSON(r) {
		writeNDJSON(w, c.Hours)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func wantsNDJSON(r *http.Request) bool {
	return r.URL.Query().Get("format") == "ndjson" || strings.Contains(r.Header.Get("Accept"), "ndjson")
}

func writeNDJSON[T any](w http.ResponseWriter, items []T) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			return
		}
	}
}

// withSources answers 503 on a server that does not track sources.
func (s *Server) withSources(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		if s.cfg.Sources == nil {
			writeError(w, http.StatusServiceUnavailable, "source tracking is not enabled on this server")
			return
		}
		h(w, r, p)
	}
}
