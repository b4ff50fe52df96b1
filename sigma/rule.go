// Package sigma parses Sigma detection rules (https://sigmahq.io) and
// evaluates them against events.
//
// No maintained Go implementation is reachable from this build (the module
// proxy does not serve bradleyjkemp/sigma-go, runreveal/sigmalite or
// markuskont/go-sigma-rule-engine), so this is custos's own, covering the
// detection part of the specification that single-event rules use: search
// identifiers as maps (AND), lists of maps (OR) and keyword lists; the value
// modifiers contains, startswith, endswith, all, re (with i, m, s), cidr,
// exists, gt, gte, lt, lte, cased, base64, base64offset, windash and
// fieldref; and conditions with and, or, not, parentheses, "1 of", "any of"
// and "all of" over patterns or "them". Aggregations (the deprecated "|"
// pipes) and correlation rules are refused with a clear error rather than
// silently ignored.
//
// Events are abstract (Event): the caller decides how Sigma's field names
// map onto its records.
package sigma

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Rule is a parsed Sigma rule.
type Rule struct {
	ID             string
	Title          string
	Status         string
	Description    string
	Author         string
	Level          string // informational, low, medium, high, critical
	Tags           []string
	References     []string
	FalsePositives []string
	LogSource      LogSource

	detection *detection
}

// LogSource says which events a rule is written for.
type LogSource struct {
	Product  string `yaml:"product"`
	Service  string `yaml:"service"`
	Category string `yaml:"category"`
}

// Event is one thing a rule is evaluated against.
type Event interface {
	// Field returns the value of a field named in a rule: a string,
	// float64, bool, nil (present but null), []any or map[string]any, as
	// encoding/json decodes them; ok is false when the event lacks it.
	Field(name string) (v any, ok bool)
	// Text is what keyword searches look in: the whole event.
	Text() string
}

// Levels, from least to most severe.
var Levels = []string{"informational", "low", "medium", "high", "critical"}

// maxRuleBytes bounds a rule's source: real rules are a few kilobytes.
const maxRuleBytes = 1 << 20

type ruleYAML struct {
	Title          string    `yaml:"title"`
	ID             string    `yaml:"id"`
	Status         string    `yaml:"status"`
	Description    string    `yaml:"description"`
	Author         string    `yaml:"author"`
	Level          string    `yaml:"level"`
	Tags           []string  `yaml:"tags"`
	References     []string  `yaml:"references"`
	FalsePositives []string  `yaml:"falsepositives"`
	LogSource      LogSource `yaml:"logsource"`
	Detection      yaml.Node `yaml:"detection"`
	Type           string    `yaml:"type"`        // correlation rules have one
	Correlation    yaml.Node `yaml:"correlation"` // ... and this
	Action         string    `yaml:"action"`      // rule collections
}

// ParseRule parses one Sigma rule from YAML.
func ParseRule(src []byte) (*Rule, error) {
	if len(src) > maxRuleBytes {
		return nil, fmt.Errorf("sigma: rule is %d bytes, over the %d byte limit", len(src), maxRuleBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var y ruleYAML
	if err := dec.Decode(&y); err != nil {
		return nil, fmt.Errorf("sigma: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, errors.New("sigma: rule collections (several YAML documents in one file) are not supported; put one rule per file")
	}
	switch {
	case y.Action != "":
		return nil, fmt.Errorf("sigma: rule collections (action: %s) are not supported; put one rule per file", y.Action)
	case y.Type != "" || y.Correlation.Kind != 0:
		return nil, errors.New("sigma: correlation rules are not supported; custos's baselines cover counting and first-seen")
	case strings.TrimSpace(y.Title) == "":
		return nil, errors.New("sigma: rule has no title")
	case y.Detection.Kind == 0:
		return nil, errors.New("sigma: rule has no detection")
	}
	r := &Rule{
		ID: y.ID, Title: y.Title, Status: y.Status, Description: y.Description, Author: y.Author,
		Level: strings.ToLower(strings.TrimSpace(y.Level)), Tags: y.Tags, References: y.References,
		FalsePositives: y.FalsePositives, LogSource: y.LogSource,
	}
	if r.Level == "" {
		r.Level = "medium"
	}
	if !slices.Contains(Levels, r.Level) {
		return nil, fmt.Errorf("sigma: level %q: want one of %s", y.Level, strings.Join(Levels, ", "))
	}
	d, err := parseDetection(&y.Detection)
	if err != nil {
		return nil, fmt.Errorf("sigma: rule %q: %w", r.Title, err)
	}
	r.detection = d
	return r, nil
}

// Match reports whether e matches the rule's detection.
func (r *Rule) Match(e Event) bool { return r.detection.cond.eval(r.detection, e) }

// A Gate is a cheap test that rules out most events before a rule is
// evaluated: a rule that only ever matches some operations need not be
// evaluated for the others.
type Gate struct {
	values []string // lower case
}

// Gate tells, when the rule's condition allows it to, which values a field
// must have for the rule to match. fields are names of one field (aliases
// an Event gives the same value). When ok, the rule matches no event in
// which that field is absent, or is a string s for which g.Allows(s) is
// false; for any other kind of value, evaluate the rule.
func (r *Rule) Gate(fields ...string) (g Gate, ok bool) {
	v, ok := gate(r.detection.cond, fields)
	if !ok {
		return Gate{}, false
	}
	slices.Sort(v)
	return Gate{values: slices.Compact(v)}, true
}

// Allows reports whether s, lower-cased as rules compare it, is one of the
// gate's values.
func (g Gate) Allows(s string) bool {
	if isASCII(s) {
		for _, v := range g.values {
			if len(v) == len(s) && equalFoldASCII(s, v) {
				return true
			}
		}
		return false
	}
	return slices.Contains(g.values, strings.ToLower(s))
}

// Fields lists the event fields the rule reads, sorted, for callers that
// map or check them.
func (r *Rule) Fields() []string {
	seen := map[string]bool{}
	for _, s := range r.detection.searches {
		for _, alt := range s.alternatives {
			for _, m := range alt {
				if m.field != "" {
					seen[m.field] = true
				}
				if m.ref != "" {
					seen[m.ref] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for f := range seen {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}
