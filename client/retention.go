package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/custos-audit/custos/retention"
)

func retentionPath(tenant, rest string) string {
	return tenantPath(tenant, "/retention"+rest)
}

// RetentionPolicies lists a tenant's retention policies, highest priority
// first, and the server's default retention in days (0: forever).
func (c *Client) RetentionPolicies(ctx context.Context, tenant string) (ps []retention.Policy, defaultDays int, err error) {
	var out struct {
		Policies    []retention.Policy `json:"policies"`
		DefaultDays int                `json:"defaultDays"`
	}
	err = c.do(ctx, http.MethodGet, retentionPath(tenant, "/policies"), nil, &out)
	return out.Policies, out.DefaultDays, err
}

// CreateRetentionPolicy adds a policy; only its criteria, duration,
// priority, name and description are sent.
func (c *Client) CreateRetentionPolicy(ctx context.Context, tenant string, p retention.Policy) (retention.Policy, error) {
	body := struct {
		Name        string             `json:"name"`
		Description string             `json:"description,omitempty"`
		RecordTypes []string           `json:"recordTypes,omitempty"`
		Operations  []string           `json:"operations,omitempty"`
		UserIDs     []string           `json:"userIds,omitempty"`
		Duration    retention.Duration `json:"retentionDuration"`
		Priority    int                `json:"priority"`
	}{p.Name, p.Description, p.RecordTypes, p.Operations, p.UserIDs, p.Duration, p.Priority}
	var out retention.Policy
	err := c.do(ctx, http.MethodPost, retentionPath(tenant, "/policies"), body, &out)
	return out, err
}

// UpdateRetentionPolicy changes the fields of patch that are set.
func (c *Client) UpdateRetentionPolicy(ctx context.Context, tenant, name string, patch retention.Patch) (retention.Policy, error) {
	var out retention.Policy
	err := c.do(ctx, http.MethodPatch, retentionPath(tenant, "/policies/"+url.PathEscape(name)), patch, &out)
	return out, err
}

// DeleteRetentionPolicy removes a policy.
func (c *Client) DeleteRetentionPolicy(ctx context.Context, tenant, name string) error {
	return c.do(ctx, http.MethodDelete, retentionPath(tenant, "/policies/"+url.PathEscape(name)), nil, nil)
}

// LegalHold returns a tenant's legal hold.
func (c *Client) LegalHold(ctx context.Context, tenant string) (retention.Hold, error) {
	var h retention.Hold
	err := c.do(ctx, http.MethodGet, retentionPath(tenant, "/hold"), nil, &h)
	return h, err
}

// SetLegalHold replaces a tenant's legal hold.
func (c *Client) SetLegalHold(ctx context.Context, tenant string, h retention.Hold) (retention.Hold, error) {
	body := struct {
		All    bool     `json:"all"`
		Users  []string `json:"users"`
		Reason string   `json:"reason,omitempty"`
	}{h.All, h.Users, h.Reason}
	var out retention.Hold
	err := c.do(ctx, http.MethodPut, retentionPath(tenant, "/hold"), body, &out)
	return out, err
}

// EnforceRetention runs retention for a tenant now, or with dryRun reports
// what it would remove.
func (c *Client) EnforceRetention(ctx context.Context, tenant string, dryRun bool) (retention.Report, error) {
	var rep retention.Report
	err := c.do(ctx, http.MethodPost, retentionPath(tenant, "/enforce"), map[string]bool{"dryRun": dryRun}, &rep)
	return rep, err
}

// RetentionReport returns the report of the tenant's last enforcement run.
func (c *Client) RetentionReport(ctx context.Context, tenant string) (retention.Report, error) {
	var rep retention.Report
	err := c.do(ctx, http.MethodGet, retentionPath(tenant, "/report"), nil, &rep)
	return rep, err
}
