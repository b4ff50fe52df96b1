package client

import (
	"context"
	"io"
	"net/url"
)

// SearchPage is one answer of a search: the body (NDJSON raw records or
// CSV, as asked) to read and close, and the cursor of the next page when
// the search had a limit and there may be more.
type SearchPage struct {
	Body       io.ReadCloser
	NextCursor string
}

// Search runs GET /api/v1/tenants/{tenant}/records with params (from, to,
// operation, user, ip, appId, keyword, format, limit, cursor, ...; see
// docs/api.md). The body streams: an export of any size is never held in
// memory.
func (c *Client) Search(ctx context.Context, tenant string, params url.Values) (SearchPage, error) {
	path := "/api/v1/tenants/" + url.PathEscape(tenant) + "/records?" + params.Encode()
	req, err := c.newRequest(ctx, "GET", path, nil)
	if err != nil {
		return SearchPage{}, err
	}
	req.Header.Set("Accept", "application/x-ndjson, text/csv, application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return SearchPage{}, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return SearchPage{}, readAPIError(resp)
	}
	return SearchPage{Body: resp.Body, NextCursor: resp.Header.Get("Custos-Next-Cursor")}, nil
}
