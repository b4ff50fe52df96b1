package m365

import (
	"testing"
	"time"
)

// TestCheckURL: contentUri and NextPageUri come from the server; the bearer
// token must only go to the configured API root.
func TestCheckURL(t *testing.T) {
	cfg, err := Config{
		Tenants:             []Tenant{{ID: "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", ClientID: "11111111-2222-4333-8444-555555555555", ClientSecret: "x"}},
		PublisherIdentifier: "99999999-8888-4777-8666-555555555555", StateDir: t.TempDir(),
	}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	c, err := newClient(&cfg, cfg.Tenants[0], newMetrics(), func(Event) {})
	if err != nil {
		t.Fatal(err)
	}
	for u, ok := range map[string]bool{
		"https://manage.office.com/api/v1.0/t/activity/feed/audit/x":      true,
		"https://MANAGE.office.com/api/v1.0/t/activity/feed/audit/x":      true,
		"http://manage.office.com/api/v1.0/t/activity/feed/audit/x":       false,
		"https://manage.office.com.evil.example/api/v1.0/t/activity/feed": false,
		"https://evil.example/api/v1.0/t/activity/feed/audit/x":           false,
		"https://manage.office.com/other":                                 false,
	} {
		if _, err := c.checkURL(u); (err == nil) != ok {
			t.Errorf("%s: err = %v, want allowed %v", u, err, ok)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "5": 5 * time.Second, "-3": 0, "junk": 0, "999999": time.Hour,
		"Mon, 02 Mar 2026 12:00:30 GMT": 30 * time.Second,
		"Mon, 02 Mar 2026 11:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("%q: %v, want %v", v, got, want)
		}
	}
}
