package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Query is an asynchronous audit log query, in Microsoft Graph's shape.
type Query struct {
	ID          string     `json:"id,omitempty"`
	DisplayName string     `json:"displayName"`
	Start       string     `json:"filterStartDateTime"`         // RFC 3339, a date, or back from now (30d)
	End         string     `json:"filterEndDateTime,omitempty"` // default now
	RecordTypes []string   `json:"recordTypeFilters,omitempty"`
	Keyword     string     `json:"keywordFilter,omitempty"`
	Services    []string   `json:"serviceFilters,omitempty"`
	Operations  []string   `json:"operationFilters,omitempty"`
	Users       []string   `json:"userPrincipalNameFilters,omitempty"`
	IPs         []string   `json:"ipAddressFilters,omitempty"`
	ObjectIDs   []string   `json:"objectIdFilters,omitempty"`
	Status      string     `json:"status,omitempty"`
	Records     int64      `json:"recordCount,omitempty"`
	Created     *time.Time `json:"createdDateTime,omitempty"`
	Finished    *time.Time `json:"completedDateTime,omitempty"`
	Error       string     `json:"error,omitempty"`
}

// QueryRecord is one record of a query's results: Graph's auditLogRecord.
type QueryRecord struct {
	ID        string          `json:"id"`
	Created   time.Time       `json:"createdDateTime"`
	Type      string          `json:"auditLogRecordType"`
	Operation string          `json:"operation"`
	UserID    string          `json:"userId"`
	Service   string          `json:"service"`
	ClientIP  string          `json:"clientIp"`
	AuditData json.RawMessage `json:"auditData"`
}

func queriesPath(tenant string) string {
	return tenantPath(tenant, "/queries")
}

// CreateQuery starts a query job.
func (c *Client) CreateQuery(ctx context.Context, tenant string, q Query) (Query, error) {
	q.ID, q.Status, q.Records, q.Created, q.Finished, q.Error = "", "", 0, nil, nil, ""
	var out Query
	err := c.do(ctx, http.MethodPost, queriesPath(tenant), q, &out)
	return out, err
}

// Queries lists a tenant's query jobs, newest first.
func (c *Client) Queries(ctx context.Context, tenant string) ([]Query, error) {
	var out struct {
		Value []Query `json:"value"`
	}
	err := c.do(ctx, http.MethodGet, queriesPath(tenant), nil, &out)
	return out.Value, err
}

// GetQuery returns one query job.
func (c *Client) GetQuery(ctx context.Context, tenant, id string) (Query, error) {
	var out Query
	err := c.do(ctx, http.MethodGet, queriesPath(tenant)+"/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CancelQuery stops an unfinished query job.
func (c *Client) CancelQuery(ctx context.Context, tenant, id string) (Query, error) {
	var out Query
	err := c.do(ctx, http.MethodPost, queriesPath(tenant)+"/"+url.PathEscape(id)+"/cancel", nil, &out)
	return out, err
}

// DeleteQuery removes a query job and its results.
func (c *Client) DeleteQuery(ctx context.Context, tenant, id string) error {
	return c.do(ctx, http.MethodDelete, queriesPath(tenant)+"/"+url.PathEscape(id), nil, nil)
}

// QueryRecords calls fn with each page of a succeeded query's records,
// following the server's next links, until the last page or an error.
func (c *Client) QueryRecords(ctx context.Context, tenant, id string, pageSize int, fn func([]QueryRecord) error) error {
	skip := ""
	for {
		v := url.Values{"$top": {strconv.Itoa(pageSize)}}
		if skip != "" {
			v.Set("$skiptoken", skip)
		}
		var page struct {
			Value    []QueryRecord `json:"value"`
			NextLink string        `json:"@odata.nextLink"`
		}
		if err := c.do(ctx, http.MethodGet, queriesPath(tenant)+"/"+url.PathEscape(id)+"/records?"+v.Encode(), nil, &page); err != nil {
			return err
		}
		if err := fn(page.Value); err != nil {
			return err
		}
		if page.NextLink == "" {
			return nil
		}
		// Follow the token, not the link's host: the link names the host the
		// server saw, which a proxy may have rewritten.
		u, err := url.Parse(page.NextLink)
		if err != nil {
			return err
		}
		skip = u.Query().Get("$skiptoken")
		if skip == "" {
			return nil
		}
	}
}
