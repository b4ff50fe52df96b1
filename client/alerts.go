package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

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

// Rule is a detection rule as the server lists it.
type Rule struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Level   string    `json:"level"`
	Scope   string    `json:"scope"` // server or tenant
	Source  string    `json:"source,omitempty"`
	YAML    string    `json:"yaml,omitempty"`
	Added   time.Time `json:"added,omitzero"`
	AddedBy string    `json:"addedBy,omitempty"`
}

// Rules lists the rules evaluated on a tenant's records.
func (c *Client) Rules(ctx context.Context, tenant string) ([]Rule, error) {
	var out struct {
		Rules []Rule `json:"rules"`
	}
	err := c.do(ctx, http.MethodGet, tenantPath(tenant, "/rules"), nil, &out)
	return out.Rules, err
}

// PutRule adds or replaces a tenant's rule from its Sigma YAML.
func (c *Client) PutRule(ctx context.Context, tenant, id string, yaml []byte) (Rule, error) {
	req, err := c.newRequest(ctx, http.MethodPut, tenantPath(tenant, "/rules/"+url.PathEscape(id)), bytes.NewReader(yaml))
	if err != nil {
		return Rule{}, err
	}
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Rule{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return Rule{}, readAPIError(resp)
	}
	var r Rule
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return Rule{}, fmt.Errorf("put rule %s: decode answer: %w", id, err)
	}
	return r, nil
}

// DeleteRule removes a tenant's rule.
func (c *Client) DeleteRule(ctx context.Context, tenant, id string) error {
	return c.do(ctx, http.MethodDelete, tenantPath(tenant, "/rules/"+url.PathEscape(id)), nil, nil)
}
