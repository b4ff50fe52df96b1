package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/queryjob"
	"github.com/custos-audit/custos/selfaudit"
	"github.com/custos-audit/custos/store"
)

// Page sizes of GET .../queries/{id}/records.
const (
	defaultQueryPage = 1000
	maxQueryPage     = 10_000
)

// auditLogQuery is Graph's query resource, as clients send and receive it.
type auditLogQuery struct {
	ODataType   string   `json:"@odata.type,omitempty"`
	ID          string   `json:"id,omitempty"`
	DisplayName string   `json:"displayName"`
	Start       string   `json:"filterStartDateTime"` // RFC 3339; custos also takes a date or 30d
	End         string   `json:"filterEndDateTime"`
	RecordTypes []string `json:"recordTypeFilters"`
	Keyword     string   `json:"keywordFilter"`
	Services    []string `json:"serviceFilters"`
	Service     string   `json:"serviceFilter,omitempty"` // Graph's earlier, single form
	Operations  []string `json:"operationFilters"`
	Users       []string `json:"userPrincipalNameFilters"`
	IPs         []string `json:"ipAddressFilters"`
	ObjectIDs   []string `json:"objectIdFilters"`
	AdminUnits  []string `json:"administrativeUnitIdFilters"`
	Status      string   `json:"status,omitempty"`

	// custos's additions, for progress and errors.
	Records  *int64     `json:"recordCount,omitempty"`
	Created  *time.Time `json:"createdDateTime,omitempty"`
	Finished *time.Time `json:"completedDateTime,omitempty"`
	Error    string     `json:"error,omitempty"`
}

const queryODataType = "#microsoft.graph.security.auditLogQuery"

func queryResource(j queryjob.Job) auditLogQuery {
	f := j.Filters
	q := auditLogQuery{ODataType: queryODataType, ID: j.ID, DisplayName: j.DisplayName,
		Start: f.Start.Format(time.RFC3339Nano), End: f.End.Format(time.RFC3339Nano),
		RecordTypes: nonNilList(f.RecordTypes), Keyword: f.Keyword, Services: nonNilList(f.Services),
		Operations: nonNilList(f.Operations), Users: nonNilList(f.Users), IPs: nonNilList(f.IPs),
		ObjectIDs: nonNilList(f.ObjectIDs), AdminUnits: []string{}, Status: string(j.Status),
		Records: &j.Records, Created: &j.Created, Error: j.Error}
	if !j.Finished.IsZero() {
		q.Finished = &j.Finished
	}
	return q
}

func nonNilList(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// toJob checks a query as sent and turns it into the job's filters and
// store query.
func (q auditLogQuery) toJob(now time.Time) (queryjob.Filters, store.Query, error) {
	var f queryjob.Filters
	var sq store.Query
	if q.ODataType != "" && q.ODataType != queryODataType {
		return f, sq, fmt.Errorf("@odata.type %q: want %s", q.ODataType, queryODataType)
	}
	if q.Start == "" {
		return f, sq, errors.New("filterStartDateTime is required")
	}
	var err error
	if f.Start, err = parseTime(q.Start); err != nil {
		return f, sq, fmt.Errorf("filterStartDateTime: %w", err)
	}
	f.End = now.UTC()
	if q.End != "" {
		if f.End, err = parseTime(q.End); err != nil {
			return f, sq, fmt.Errorf("filterEndDateTime: %w", err)
		}
	}
	if !f.End.After(f.Start) {
		return f, sq, errors.New("filterEndDateTime must be after filterStartDateTime")
	}
	if len(q.AdminUnits) > 0 {
		return f, sq, errors.New("administrativeUnitIdFilters: custos has no administrative units; leave it empty")
	}
	sq.From, sq.To = f.Start, f.End
	for _, t := range q.RecordTypes {
		rt, ok := audit.ParseRecordType(t)
		if !ok {
			return f, sq, fmt.Errorf("recordTypeFilters: %q is not a record type", t)
		}
		sq.RecordTypes = append(sq.RecordTypes, int32(rt))
	}
	f.RecordTypes = q.RecordTypes
	f.Keyword, sq.Keyword = q.Keyword, q.Keyword
	f.Services = q.Services
	if q.Service != "" {
		f.Services = append(f.Services, q.Service)
	}
	sq.Workloads = f.Services
	f.Operations, sq.Operations = q.Operations, q.Operations
	f.Users, sq.UserIDs = q.Users, q.Users
	f.ObjectIDs, sq.ObjectIDs = q.ObjectIDs, q.ObjectIDs
	f.IPs = q.IPs
	for _, s := range q.IPs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return f, sq, fmt.Errorf("ipAddressFilters: %q is not an address or CIDR range", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		sq.IPs = append(sq.IPs, p)
	}
	return f, sq, nil
}

// withQueries hands the manager, or answers that this server has none.
func (s *Server) withQueries(h func(w http.ResponseWriter, r *http.Request, p auth.Principal, m *queryjob.Manager)) handler {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		if s.cfg.Queries == nil {
			writeError(w, http.StatusServiceUnavailable, "query jobs are not configured on this server")
			return
		}
		h(w, r, p, s.cfg.Queries)
	}
}

func writeQueryError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, queryjob.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, queryjob.ErrBusy):
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, err.Error())
	case errors.Is(err, queryjob.ErrNotReady), errors.Is(err, queryjob.ErrFinished):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, queryjob.ErrBadToken):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func (s *Server) createQuery(w http.ResponseWriter, r *http.Request, p auth.Principal, m *queryjob.Manager) {
	var q auditLogQuery
	if !readJSON(w, r, &q) {
		return
	}
	if q.ID != "" || q.Status != "" {
		writeError(w, http.StatusBadRequest, "id and status are set by the server")
		return
	}
	f, sq, err := q.toJob(time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	tenant := r.PathValue("tenant")
	j, err := m.Create(tenant, q.DisplayName, f, sq, p.TokenID)
	if err != nil {
		writeQueryError(w, err)
		return
	}
	// Like any search, a job that cannot be audited does not go ahead.
	if !s.auditFirst(w, r, action(r, p, tenant, selfaudit.AuditQueryCreated, j.ID, f)) {
		m.Delete(tenant, j.ID)
		return
	}
	writeJSON(w, http.StatusCreated, queryResource(j))
}

func (s *Server) listQueries(w http.ResponseWriter, r *http.Request, p auth.Principal, m *queryjob.Manager) {
	out := []auditLogQuery{}
	for _, j := range m.List(r.PathValue("tenant")) {
		out = append(out, queryResource(j))
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
}

func (s *Server) getQuery(w http.ResponseWriter, r *http.Request, p auth.Principal, m *queryjob.Manager) {
	j, err := m.Get(r.PathValue("tenant"), r.PathValue("id"))
	if err != nil {
		writeQueryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, queryResource(j))
}

func (s *Server) cancelQuery(w http.ResponseWriter, r *http.Request, p auth.Principal, m *queryjob.Manager) {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	j, err := m.Cancel(tenant, id)
	if err != nil {
		writeQueryError(w, err)
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.AuditQueryCancelled, id, nil))
	writeJSON(w, http.StatusOK, queryResource(j))
}

func (s *Server) deleteQuery(w http.ResponseWriter, r *http.Request, p auth.Principal, m *queryjob.Manager) {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	if err := m.Delete(tenant, id); err != nil {
		writeQueryError(w, err)
		return
	}
	s.audited(r, action(r, p, tenant, selfaudit.AuditQueryDeleted, id, nil))
	w.WriteHeader(http.StatusNoContent)
}

// auditLogRecord is Graph's record of a query's results.
type auditLogRecord struct {
	ID                 string          `json:"id"`
	CreatedDateTime    time.Time       `json:"createdDateTime"`
	AuditLogRecordType string          `json:"auditLogRecordType"`
	Operation          string          `json:"operation"`
	OrganizationID     string          `json:"organizationId"`
	UserType           string          `json:"userType"`
	UserID             string          `json:"userId"`
	Service            string          `json:"service"`
	ObjectID           string          `json:"objectId"`
	UserPrincipalName  string          `json:"userPrincipalName"`
	ClientIP           string          `json:"clientIp"`
	AdministrativeUnit []string        `json:"administrativeUnits"`
	AuditData          json.RawMessage `json:"auditData"`
}

// graphUserTypes are Graph's names for Microsoft's UserType numbers.
var graphUserTypes = []string{"regular", "reserved", "admin", "dcAdmin", "system", "application",
	"servicePrincipal", "customPolicy", "systemPolicy", "partnerTechnician", "guest"}

func graphRecord(p *audit.Parser, raw []byte) (auditLogRecord, error) {
	rec, err := p.Parse(raw)
	if err != nil {
		return auditLogRecord{}, err
	}
	rt := audit.RecordType(rec.RecordType).String()
	if rt != "" {
		rt = strings.ToLower(rt[:1]) + rt[1:] // Graph's enum spelling: exchangeItem
	}
	ut := "unknownFutureValue"
	if rec.UserType >= 0 && int(rec.UserType) < len(graphUserTypes) {
		ut = graphUserTypes[rec.UserType]
	}
	return auditLogRecord{ID: rec.ID, CreatedDateTime: rec.CreationTime, AuditLogRecordType: rt, Operation: rec.Operation,
		OrganizationID: rec.OrganizationID, UserType: ut, UserID: rec.UserID, Service: rec.Workload, ObjectID: rec.ObjectID,
		UserPrincipalName: rec.UserID, ClientIP: rec.ClientIP, AdministrativeUnit: []string{}, AuditData: json.RawMessage(raw)}, nil
}

func (s *Server) queryRecords(w http.ResponseWriter, r *http.Request, p auth.Principal, m *queryjob.Manager) {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	top := defaultQueryPage
	if v := r.URL.Query().Get("$top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxQueryPage {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("$top: want 1 to %d", maxQueryPage))
			return
		}
		top = n
	}
	var skip int64
	if v := r.URL.Query().Get("$skiptoken"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeQueryError(w, queryjob.ErrBadToken)
			return
		}
		skip = n
	}
	if _, err := m.Get(tenant, id); err != nil {
		writeQueryError(w, err)
		return
	}
	if !s.auditFirst(w, r, action(r, p, tenant, selfaudit.AuditQueryRecordsRead, id, map[string]any{"skip": skip, "top": top})) {
		return
	}
	raws, next, err := m.Page(tenant, id, skip, top)
	if err != nil {
		writeQueryError(w, err)
		return
	}
	var parser audit.Parser
	out := make([]auditLogRecord, 0, len(raws))
	for _, raw := range raws {
		rec, err := graphRecord(&parser, raw)
		if err != nil {
			// Stored records were valid when ingested; a failure here is a bug.
			s.log.Error("query result record does not parse", "tenant", tenant, "id", id, "err", err)
			writeError(w, http.StatusInternalServerError, "a stored record could not be read")
			return
		}
		out = append(out, rec)
	}
	resp := map[string]any{"value": out}
	if next >= 0 {
		u := url.URL{Path: r.URL.Path, RawQuery: url.Values{"$top": {strconv.Itoa(top)}, "$skiptoken": {strconv.FormatInt(next, 10)}}.Encode()}
		resp["@odata.nextLink"] = absolute(r, u.String())
	}
	writeJSON(w, http.StatusOK, resp)
}

// absolute makes a link on this server, as Graph's nextLink is.
func absolute(r *http.Request, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + path
}
