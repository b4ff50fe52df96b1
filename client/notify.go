package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/custos-audit/custos/notify"
)

// NewChannel is a notification channel to add.
type NewChannel struct {
	Name        string `json:"name"`
	URL         string `json:"url"`
	Format      string `json:"format,omitempty"`
	Secret      string `json:"secret,omitempty"`
	MinSeverity string `json:"minSeverity,omitempty"`
}

// Channels lists a tenant's notification channels.
func (c *Client) Channels(ctx context.Context, tenant string) ([]notify.Status, error) {
	var out struct {
		Channels []notify.Status `json:"channels"`
	}
	err := c.do(ctx, http.MethodGet, tenantPath(tenant, "/notifications"), nil, &out)
	return out.Channels, err
}

// AddChannel adds a notification channel to a tenant.
func (c *Client) AddChannel(ctx context.Context, tenant string, ch NewChannel) (notify.Status, error) {
	var st notify.Status
	err := c.do(ctx, http.MethodPost, tenantPath(tenant, "/notifications"), ch, &st)
	return st, err
}

// RemoveChannel deletes a tenant's notification channel.
func (c *Client) RemoveChannel(ctx context.Context, tenant, id string) error {
	return c.do(ctx, http.MethodDelete, tenantPath(tenant, "/notifications/"+url.PathEscape(id)), nil, nil)
}

// TestChannel sends a sample alert through a channel now.
func (c *Client) TestChannel(ctx context.Context, tenant, id string) error {
	return c.do(ctx, http.MethodPost, tenantPath(tenant, "/notifications/"+url.PathEscape(id)+"/test"), nil, nil)
}
