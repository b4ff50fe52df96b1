package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/custos-audit/custos/source"
)

// Sources lists a tenant's sources and their health.
func (c *Client) Sources(ctx context.Context, tenant string) ([]source.Status, error) {
	var out struct {
		Sources []source.Status `json:"sources"`
	}
	err := c.do(ctx, http.MethodGet, tenantPath(tenant, "/sources"), nil, &out)
	return out.Sources, err
}

// Source returns one source.
func (c *Client) Source(ctx context.Context, tenant, name string) (source.Status, error) {
	var st source.Status
	err := c.do(ctx, http.MethodGet, tenantPath(tenant, "/sources/"+url.PathEscape(name)), nil, &st)
	return st, err
}

// Coverage reports a source's hours in [from, to): expected and observed
// records and each hour's status. from and to are as the server takes
// them: RFC 3339, a date, or back from now (2d); "" for its defaults.
func (c *Client) Coverage(ctx context.Context, tenant, name, from, to string) (source.Coverage, error) {
	q := url.Values{}
	if from != "" {
		q.Set("from", from)
	}
	if to != "" {
		q.Set("to", to)
	}
	var cov source.Coverage
	err := c.do(ctx, http.MethodGet, tenantPath(tenant, "/sources/"+url.PathEscape(name)+"/coverage?"+q.Encode()), nil, &cov)
	return cov, err
}
