package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/custos-audit/custos/collection"
)

// NewM365Source is a Microsoft 365 source to add. ClientSecret or
// Certificate (PEM: certificate and RSA key) is the credential; the
// server seals it and never returns it.
type NewM365Source struct {
	TenantID     string   `json:"tenantId"`
	ClientID     string   `json:"clientId"`
	ClientSecret string   `json:"clientSecret,omitempty"`
	Certificate  string   `json:"certificate,omitempty"`
	Cloud        string   `json:"cloud,omitempty"`
	APIRoot      string   `json:"apiRoot,omitempty"`
	Authority    string   `json:"authority,omitempty"`
	ContentTypes []string `json:"contentTypes,omitempty"`
	PublisherID  string   `json:"publisherId,omitempty"`
	Rate         float64  `json:"rate,omitempty"`
}

// AddM365Source configures a Microsoft 365 collector named name for tenant.
func (c *Client) AddM365Source(ctx context.Context, tenant, name string, src NewM365Source) (collection.Config, error) {
	body := struct {
		Name string        `json:"name"`
		Kind string        `json:"kind"`
		M365 NewM365Source `json:"m365"`
	}{name, collection.KindM365, src}
	var out collection.Config
	err := c.do(ctx, http.MethodPost, tenantPath(tenant, "/sources"), body, &out)
	return out, err
}

// SourceConfig returns a configured source, without its credential.
func (c *Client) SourceConfig(ctx context.Context, tenant, name string) (collection.Config, error) {
	var out collection.Config
	err := c.do(ctx, http.MethodGet, tenantPath(tenant, "/sources/"+url.PathEscape(name)+"/config"), nil, &out)
	return out, err
}

// RemoveSource deletes a configured source; its collector stops.
func (c *Client) RemoveSource(ctx context.Context, tenant, name string) error {
	return c.do(ctx, http.MethodDelete, tenantPath(tenant, "/sources/"+url.PathEscape(name)), nil, nil)
}
