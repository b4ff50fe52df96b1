// Package retention decides how long each of a tenant's records is kept and
// enforces it. Policies are modelled on Microsoft Purview's audit log
// retention policies, so an organisation can carry its own over: criteria
// (record types, operations of one record type, users), a duration from a
// fixed list, and a priority where the lowest number wins. Records no policy
// matches are kept for the server's default (180 days). A legal hold on a
// tenant, or on some of its users, suspends deletion.
package retention

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custos-audit/custos/audit"
)

// Duration is a retention period, one of Purview's: SevenDays, OneMonth,
// ThreeMonths, SixMonths, NineMonths, TwelveMonths, ThreeYears, FiveYears,
// SevenYears, TenYears.
type Duration string

type period struct {
	name         Duration
	short        string
	days, months int
}

var periods = []period{
	{"SevenDays", "7d", 7, 0},
	{"OneMonth", "1mo", 0, 1},
	{"ThreeMonths", "3mo", 0, 3},
	{"SixMonths", "6mo", 0, 6},
	{"NineMonths", "9mo", 0, 9},
	{"TwelveMonths", "12mo", 0, 12},
	{"ThreeYears", "3y", 0, 36},
	{"FiveYears", "5y", 0, 60},
	{"SevenYears", "7y", 0, 84},
	{"TenYears", "10y", 0, 120},
}

// ParseDuration accepts Purview's names (case-insensitive) and the short
// forms 7d, 1mo, 3mo, 6mo, 9mo, 12mo, 3y, 5y, 7y, 10y.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	for _, p := range periods {
		if strings.EqualFold(s, string(p.name)) || strings.EqualFold(s, p.short) {
			return p.name, nil
		}
	}
	names := make([]string, len(periods))
	for i, p := range periods {
		names[i] = fmt.Sprintf("%s (%s)", p.name, p.short)
	}
	return "", fmt.Errorf("retention duration %q: want one of %s", s, strings.Join(names, ", "))
}

// Cutoff is the creation time before which a record kept for d has expired
// at now. Months are calendar months, as a person reading the policy means;
// a day the earlier month lacks becomes its last (one month before 31 March
// is 28 February, not 3 March as time.AddDate would have it).
func (d Duration) Cutoff(now time.Time) time.Time {
	for _, p := range periods {
		if p.name != d {
			continue
		}
		if p.days > 0 {
			return now.AddDate(0, 0, -p.days)
		}
		y, m, day := now.Date()
		first := time.Date(y, m-time.Month(p.months), 1, 0, 0, 0, 0, now.Location())
		last := first.AddDate(0, 1, -1).Day()
		return time.Date(first.Year(), first.Month(), min(day, last),
			now.Hour(), now.Minute(), now.Second(), now.Nanosecond(), now.Location())
	}
	panic("retention: unvalidated duration " + string(d))
}

// Limits from Purview.
const (
	MaxPolicies = 50
	MinPriority = 1
	MaxPriority = 10000
)

// Policy keeps the records it matches for Duration. A record matches when
// its record type is one of RecordTypes, its operation one of Operations
// and its user one of UserIDs; an empty list does not constrain. Among the
// policies matching a record, the lowest Priority decides.
type Policy struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	RecordTypes []string `json:"recordTypes,omitempty"` // names, as Purview lists them
	Operations  []string `json:"operations,omitempty"`  // only with exactly one record type
	UserIDs     []string `json:"userIds,omitempty"`
	Duration    Duration `json:"retentionDuration"`
	Priority    int      `json:"priority"`

	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
	UpdatedBy string    `json:"updatedBy,omitempty"` // token id
}

var policyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$`)

// normalize validates p and puts its fields in canonical form: record type
// names as the audit package spells them, lists de-duplicated.
func (p *Policy) normalize() error {
	var errs []error
	if !policyName.MatchString(p.Name) || strings.TrimSpace(p.Name) != p.Name {
		errs = append(errs, fmt.Errorf("name %q: want 1-64 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit", p.Name))
	}
	if len(p.Description) > 1000 {
		errs = append(errs, errors.New("description: at most 1000 characters"))
	}
	d, err := ParseDuration(string(p.Duration))
	if err != nil {
		errs = append(errs, err)
	}
	p.Duration = d
	if p.Priority < MinPriority || p.Priority > MaxPriority {
		errs = append(errs, fmt.Errorf("priority %d: want %d to %d (lower wins)", p.Priority, MinPriority, MaxPriority))
	}
	for i, t := range p.RecordTypes {
		rt, ok := audit.ParseRecordType(t)
		if !ok {
			errs = append(errs, fmt.Errorf("record type %q is neither a number nor a known record type name", t))
			continue
		}
		p.RecordTypes[i] = rt.String()
	}
	p.RecordTypes = dedupe(p.RecordTypes, false)
	p.Operations = dedupe(p.Operations, true)
	p.UserIDs = dedupe(p.UserIDs, true)
	if len(p.RecordTypes) == 0 && len(p.UserIDs) == 0 {
		errs = append(errs, errors.New("a policy needs record types or user ids (or both)"))
	}
	if len(p.Operations) > 0 && len(p.RecordTypes) != 1 {
		errs = append(errs, fmt.Errorf("operations can only be given with exactly one record type (got %d)", len(p.RecordTypes)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// dedupe trims, drops empty values and repeats (case-insensitively when
// fold), keeping the first spelling.
func dedupe(vals []string, fold bool) []string {
	var out []string
	for _, v := range vals {
		v = strings.TrimSpace(v)
		if v == "" || slices.ContainsFunc(out, func(o string) bool { return o == v || fold && strings.EqualFold(o, v) }) {
			continue
		}
		out = append(out, v)
	}
	return out
}

// recordTypes returns the policy's record types as numbers.
func (p *Policy) recordTypes() []int32 {
	out := make([]int32, 0, len(p.RecordTypes))
	for _, t := range p.RecordTypes {
		if rt, ok := audit.ParseRecordType(t); ok {
			out = append(out, int32(rt))
		}
	}
	return out
}

// Hold is a tenant's legal hold. With All, none of the tenant's records is
// deleted; otherwise the records of Users are kept.
type Hold struct {
	All       bool      `json:"all"`
	Users     []string  `json:"users,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Updated   time.Time `json:"updated,omitzero"`
	UpdatedBy string    `json:"updatedBy,omitempty"`
}

// Active reports whether the hold suspends any deletion.
func (h Hold) Active() bool { return h.All || len(h.Users) > 0 }

// DefaultDays is the retention of records no policy matches unless the
// server is configured otherwise: Purview's default for audit records.
const DefaultDays = 180

// KeepDays renders a default retention in days for people: "180 days",
// or "forever" for 0.
func KeepDays(days int) string {
	if days <= 0 {
		return "forever"
	}
	return strconv.Itoa(days) + " days"
}
