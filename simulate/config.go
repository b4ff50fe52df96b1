package simulate

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Config describes one simulated tenant and run. The zero value of every
// optional field selects the documented default (docs/simulator.md).
type Config struct {
	// Tenant is the tenant id as custos knows it (e.g. "contoso"). It
	// determines the OrganizationId GUID, the *.onmicrosoft.com name and the
	// SharePoint host names. Required.
	Tenant string
	// Domain is the UPN domain of the users. Default: Tenant if it contains
	// a dot, else "<tenant>.onmicrosoft.com".
	Domain string
	// Users is the number of licensed users (shared mailboxes come on top).
	Users int
	// Days is the length of the run in days of 24 hours.
	Days int
	// Start is the first instant of the run (UTC). Default: Monday
	// 2026-03-02 00:00 UTC, so that a zero Config is reproducible.
	Start time.Time
	// Rate is the average number of records per user per day over the run.
	// Default 120.
	Rate float64
	// Seed makes the run deterministic: same Config, same bytes.
	Seed int64
	// Scenarios are attacks injected on top of normal activity; see
	// ScenarioNames.
	Scenarios []string
	// ScenarioStart is when the scenarios begin. Default: Start plus two
	// thirds of Days, rounded down to a whole day.
	ScenarioStart time.Time
	// UTCOffset is the tenant's time zone (working hours are local).
	// Default 0 (UTC); whole or half hours between -12h and +14h.
	UTCOffset time.Duration
}

// Scenario names accepted in Config.Scenarios.
const (
	ScenarioStorm0558        = "storm-0558"
	ScenarioInboxRule        = "inbox-rule-forwarding"
	ScenarioConsentPhishing  = "oauth-consent-phishing"
	ScenarioDelegatedMailbox = "delegated-mailbox-abuse"
)

// ScenarioNames lists the known scenarios, sorted.
func ScenarioNames() []string {
	n := []string{ScenarioStorm0558, ScenarioInboxRule, ScenarioConsentPhishing, ScenarioDelegatedMailbox}
	sort.Strings(n)
	return n
}

// DefaultRate is the default average of records per user per day, the order
// of magnitude seen in real E5 tenants where MailItemsAccessed dominates.
const DefaultRate = 120

// defaultStart is used when Config.Start is zero.
var defaultStart = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// Limits that keep a run meaningful and its memory bounded.
const (
	MaxUsers = 1_000_000
	MaxDays  = 3660
	MaxRate  = 100_000
)

var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$`)

// normalize validates cfg and fills in defaults.
func (cfg Config) normalize() (Config, error) {
	var errs []error
	if !tenantRE.MatchString(cfg.Tenant) {
		errs = append(errs, fmt.Errorf("tenant %q: want 1-63 letters, digits, '.' or '-'", cfg.Tenant))
	}
	if cfg.Domain == "" {
		if strings.Contains(cfg.Tenant, ".") {
			cfg.Domain = strings.ToLower(cfg.Tenant)
		} else {
			cfg.Domain = strings.ToLower(cfg.Tenant) + ".onmicrosoft.com"
		}
	} else if !tenantRE.MatchString(cfg.Domain) || !strings.Contains(cfg.Domain, ".") {
		errs = append(errs, fmt.Errorf("domain %q is not a DNS name", cfg.Domain))
	}
	cfg.Domain = strings.ToLower(cfg.Domain)
	if cfg.Users < 1 || cfg.Users > MaxUsers {
		errs = append(errs, fmt.Errorf("users %d: want 1..%d", cfg.Users, MaxUsers))
	}
	if cfg.Days < 1 || cfg.Days > MaxDays {
		errs = append(errs, fmt.Errorf("days %d: want 1..%d", cfg.Days, MaxDays))
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if !(cfg.Rate > 0 && cfg.Rate <= MaxRate) { // also rejects NaN
		errs = append(errs, fmt.Errorf("rate %v: want a number of records per user per day in (0, %d]", cfg.Rate, MaxRate))
	}
	if cfg.Start.IsZero() {
		cfg.Start = defaultStart
	}
	// CreationTime has a one-second resolution; so does the run.
	cfg.Start = cfg.Start.UTC().Truncate(time.Second)
	if cfg.UTCOffset < -12*time.Hour || cfg.UTCOffset > 14*time.Hour || cfg.UTCOffset%(30*time.Minute) != 0 {
		errs = append(errs, fmt.Errorf("utc offset %v: want whole or half hours in [-12h, +14h]", cfg.UTCOffset))
	}

	seen := map[string]bool{}
	var scen []string
	for _, s := range cfg.Scenarios {
		s = strings.TrimSpace(s)
		if s == "" || seen[s] {
			continue
		}
		if scenarioIndex(s) == 0 {
			errs = append(errs, fmt.Errorf("unknown scenario %q (known: %s)", s, strings.Join(ScenarioNames(), ", ")))
			continue
		}
		seen[s] = true
		scen = append(scen, s)
	}
	sort.Strings(scen) // order of the flag must not change the output
	cfg.Scenarios = scen
	end := cfg.Start.Add(time.Duration(cfg.Days) * 24 * time.Hour)
	if cfg.ScenarioStart.IsZero() {
		cfg.ScenarioStart = cfg.Start.Add(time.Duration(cfg.Days*2/3) * 24 * time.Hour)
	}
	cfg.ScenarioStart = cfg.ScenarioStart.UTC().Truncate(time.Second)
	if len(scen) > 0 {
		if cfg.Users < minScenarioUsers {
			errs = append(errs, fmt.Errorf("scenarios need at least %d users, have %d", minScenarioUsers, cfg.Users))
		}
		if cfg.ScenarioStart.Before(cfg.Start) || !cfg.ScenarioStart.Before(end) {
			errs = append(errs, fmt.Errorf("scenario start %s is outside the run [%s, %s)",
				cfg.ScenarioStart.Format(time.RFC3339), cfg.Start.Format(time.RFC3339), end.Format(time.RFC3339)))
		}
	}
	return cfg, errors.Join(errs...)
}

// minScenarioUsers leaves room for distinct targets, victims and an admin.
const minScenarioUsers = 8

// scenarioIndex maps a scenario name to its 1-based id (0: unknown). Id 0
// marks normal activity in events.
func scenarioIndex(name string) uint8 {
	for i, n := range scenarioByID {
		if i > 0 && n == name {
			return uint8(i)
		}
	}
	return 0
}

var scenarioByID = [...]string{"", ScenarioStorm0558, ScenarioInboxRule, ScenarioConsentPhishing, ScenarioDelegatedMailbox}

// ParseStart parses a --start value: RFC 3339 or a bare YYYY-MM-DD (00:00 UTC).
func ParseStart(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-03-02T00:00:00Z) or YYYY-MM-DD", s)
}
