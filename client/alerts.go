package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/detect"
)

// tenantPath is the API path of rest under a tenant.
func tenantPath(tenant, rest string) string {
	return "/api/v1/tenants/" + url.PathEscape(tenant) + rest
}

// AlertFilter selects alerts; empty fields select everything.
type AlertFilter struct {
	Statuses []string
	Severity string // at least this severe
	Detector string
}

// Alerts lists a tenant's alerts, most recently seen first.
func (c *Client) Alerts(ctx context.Context, tenant string, f AlertFilter) ([]alert.Alert, error) {
	q := url.Values{}
	for _, s := range f.Statuses {
		q.Add("status", s)
	}
	if f.Severity != "" {
		q.Set("severity", f.Severity)
	}
	if f.Detector != "" {
		q.Set("detector", f.Detector)
	}
	var out struct {
		Alerts []alert.Alert `json:"alerts"`
	}
	err := c.do(ctx, http.MethodGet, tenantPath(tenant, "/alerts?"+q.Encode()), nil, &out)
	return out.Alerts, err
}

// Alert returns one alert.
func (c *Client) Alert(ctx context.Context, tenant, id string) (alert.Alert, error) {
	var a alert.Alert
	err := c.do(ctx, http.MethodGet, tenantPath(tenant, "/alerts/"+url.PathEscape(id)), nil, &a)
	return a, err
}

// SetAlertStatus acknowledges ("ack") or closes ("close") an alert.
func (c *Client) SetAlertStatus(ctx context.Context, tenant, id, verb, note string) (alert.Alert, error) {
	var a alert.Alert
	body := map[string]string{"note": note}
	err := c.do(ctx, http.MethodPost, tenantPath(tenant, "/alerts/"+url.PathEscape(id)+"/"+verb), body, &a)
	return a, err
}

// RebuildBaseline relearns a tenant's baselines from its stored records of
// the last days.
func (c *Client) RebuildBaseline(ctx context.Context, tenant string, days int) (detect.RebuildReport, error) {
	var rep detect.RebuildReport
	err := c.do(ctx, http.MethodPost, tenantPath(tenant, "/detection/rebuild?days="+strconv.Itoa(days)), nil, &rep)
	return rep, err
}

// DetectionStatus is a tenant's detection state.
type DetectionStatus struct {
	Baseline detect.TenantStatus `json:"baseline"`
	Rules    []struct {
		ID, Title, Level, Source string
	} `json:"rules"`
}

// Detection returns a tenant's detection state.
func (c *Client) Detection(ctx context.Context, tenant string) (DetectionStatus, error) {
	var st DetectionStatus
	err := c.do(ctx, http.MethodGet, tenantPath(tenant, "/detection"), nil, &st)
	return st, err
}
