package sigma

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// detection is a rule's compiled detection section.
type detection struct {
	searches map[string]*search
	order    []string // search identifiers in the rule's order
	cond     expr
}

// search is one search identifier: alternatives (OR) of matcher sets
// (AND). A keyword list is alternatives of one field-less matcher each.
type search struct {
	alternatives [][]*matcher
}

func (s *search) match(e Event) bool {
	for _, alt := range s.alternatives {
		ok := true
		for _, m := range alt {
			if !m.match(e) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func parseDetection(n *yaml.Node) (*detection, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: detection must be a map of search identifiers and a condition", n.Line)
	}
	d := &detection{searches: map[string]*search{}}
	var condNode *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i].Value, n.Content[i+1]
		switch key {
		case "condition":
			condNode = val
			continue
		case "timeframe":
			return nil, fmt.Errorf("line %d: timeframe belongs to aggregations, which are not supported", val.Line)
		}
		if _, dup := d.searches[key]; dup {
			return nil, fmt.Errorf("line %d: search identifier %q given twice", n.Content[i].Line, key)
		}
		s, err := parseSearch(val)
		if err != nil {
			return nil, fmt.Errorf("search %q: %w", key, err)
		}
		d.searches[key] = s
		d.order = append(d.order, key)
	}
	if condNode == nil {
		return nil, fmt.Errorf("line %d: detection has no condition", n.Line)
	}
	var conds []string
	switch condNode.Kind {
	case yaml.ScalarNode:
		conds = []string{condNode.Value}
	case yaml.SequenceNode: // an older form: any of several conditions
		for _, c := range condNode.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: condition list items must be strings", c.Line)
			}
			conds = append(conds, c.Value)
		}
	default:
		return nil, fmt.Errorf("line %d: condition must be a string", condNode.Line)
	}
	var parts []expr
	for _, c := range conds {
		e, err := parseCondition(c, d)
		if err != nil {
			return nil, fmt.Errorf("condition %q: %w", c, err)
		}
		parts = append(parts, e)
	}
	d.cond = parts[0]
	if len(parts) > 1 {
		d.cond = orExpr(parts)
	}
	return d, nil
}

func parseSearch(n *yaml.Node) (*search, error) {
	switch n.Kind {
	case yaml.MappingNode:
		ms, err := parseFieldMap(n)
		if err != nil {
			return nil, err
		}
		return &search{alternatives: [][]*matcher{ms}}, nil
	case yaml.SequenceNode:
		s := &search{}
		for _, item := range n.Content {
			switch item.Kind {
			case yaml.MappingNode:
				ms, err := parseFieldMap(item)
				if err != nil {
					return nil, err
				}
				s.alternatives = append(s.alternatives, ms)
			case yaml.ScalarNode:
				m, err := newMatcher("", nil, []*yaml.Node{item}, item.Line)
				if err != nil {
					return nil, err
				}
				s.alternatives = append(s.alternatives, []*matcher{m})
			default:
				return nil, fmt.Errorf("line %d: a list must hold maps of fields or keywords", item.Line)
			}
		}
		if len(s.alternatives) == 0 {
			return nil, fmt.Errorf("line %d: empty list", n.Line)
		}
		return s, nil
	}
	return nil, fmt.Errorf("line %d: a search identifier must be a map of fields or a list", n.Line)
}

func parseFieldMap(n *yaml.Node) ([]*matcher, error) {
	var out []*matcher
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		parts := strings.Split(key.Value, "|")
		var vals []*yaml.Node
		switch val.Kind {
		case yaml.ScalarNode:
			vals = []*yaml.Node{val}
		case yaml.SequenceNode:
			for _, v := range val.Content {
				if v.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("line %d: field %q: values must be scalars", v.Line, parts[0])
				}
				vals = append(vals, v)
			}
		default:
			return nil, fmt.Errorf("line %d: field %q: want a value or a list of values", val.Line, parts[0])
		}
		m, err := newMatcher(parts[0], parts[1:], vals, key.Line)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("line %d: empty map", n.Line)
	}
	return out, nil
}

// matcher tests one field (or, with no field, the event's text) against
// values, any of which may match (all, with the all modifier).
type matcher struct {
	field  string
	all    bool
	exists *bool  // the exists modifier: presence is all that is tested
	ref    string // fieldref: the other field to compare with
	tests  []valueTest
	// equal holds the lower-cased values when the matcher is a plain
	// case-insensitive comparison of a string field with them (no
	// modifiers, no wildcards): it holds only when the field lower-cased
	// equals one of them.
	equal []string
}

// valueTest tests one event value.
type valueTest func(v any) bool

func (m *matcher) match(e Event) bool {
	if m.exists != nil {
		_, ok := e.Field(m.field)
		return ok == *m.exists
	}
	var v any
	ok := true
	if m.field == "" {
		v = e.Text()
	} else {
		v, ok = e.Field(m.field)
	}
	if m.ref != "" {
		other, ook := e.Field(m.ref)
		return ok && ook && strings.EqualFold(scalarText(v), scalarText(other))
	}
	if m.all {
		for _, t := range m.tests {
			if !testValue(t, v, ok) {
				return false
			}
		}
		return true
	}
	for _, t := range m.tests {
		if testValue(t, v, ok) {
			return true
		}
	}
	return false
}

// testValue applies t to v; a list matches when any element does. An
// absent field is tested as null, so "field: null" matches it.
func testValue(t valueTest, v any, present bool) bool {
	if !present {
		return t(nil)
	}
	if list, ok := v.([]any); ok {
		for _, x := range list {
			if t(x) {
				return true
			}
		}
		// A list of objects is also matched as its JSON text, which is
		// how Sigma's m365 rules search Parameters.
		return t(jsonText(v))
	}
	return t(v)
}

var supportedModifiers = map[string]bool{
	"contains": true, "startswith": true, "endswith": true, "all": true, "re": true, "i": true, "m": true, "s": true,
	"cidr": true, "exists": true, "gt": true, "gte": true, "lt": true, "lte": true, "cased": true,
	"base64": true, "base64offset": true, "windash": true, "fieldref": true,
}

func newMatcher(field string, mods []string, vals []*yaml.Node, line int) (*matcher, error) {
	m := &matcher{field: field}
	has := map[string]bool{}
	for _, mod := range mods {
		mod = strings.ToLower(strings.TrimSpace(mod))
		if !supportedModifiers[mod] {
			return nil, fmt.Errorf("line %d: field %q: modifier %q is not supported", line, field, mod)
		}
		has[mod] = true
	}
	if field == "" {
		// A keyword is looked for anywhere in the event.
		has["contains"] = true
	}
	m.all = has["all"]
	if len(vals) == 0 {
		return nil, fmt.Errorf("line %d: field %q has no values", line, field)
	}
	switch {
	case has["exists"]:
		if len(vals) != 1 || (vals[0].Value != "true" && vals[0].Value != "false") {
			return nil, fmt.Errorf("line %d: field %q: exists takes true or false", line, field)
		}
		b := vals[0].Value == "true"
		m.exists = &b
		return m, nil
	case has["fieldref"]:
		if len(vals) != 1 {
			return nil, fmt.Errorf("line %d: field %q: fieldref takes one field name", line, field)
		}
		m.ref = vals[0].Value
		return m, nil
	}
	for _, v := range vals {
		t, err := compileValue(v, has)
		if err != nil {
			return nil, fmt.Errorf("line %d: field %q: %w", v.Line, field, err)
		}
		m.tests = append(m.tests, t...)
	}
	if len(mods) == 0 && field != "" {
		for _, v := range vals {
			p := compilePattern(v.Value, false, false, false, false)
			if v.Tag != "!!str" || p.kind != exact {
				m.equal = nil
				break
			}
			m.equal = append(m.equal, p.lit)
		}
	}
	return m, nil
}

// gate is the condition gate (see gate) of a search: every alternative
// needs a plain comparison of one of fields.
func (s *search) gate(fields []string) (values []string, ok bool) {
	for _, alt := range s.alternatives {
		i := slices.IndexFunc(alt, func(m *matcher) bool { return m.equal != nil && slices.Contains(fields, m.field) })
		if i < 0 {
			return nil, false
		}
		values = append(values, alt[i].equal...)
	}
	return values, len(s.alternatives) > 0
}

// compileValue turns one rule value into tests, several when a modifier
// expands it (base64offset, windash); any of them may match.
func compileValue(n *yaml.Node, has map[string]bool) ([]valueTest, error) {
	switch {
	case has["re"]:
		flags := ""
		for _, f := range []string{"i", "m", "s"} {
			if has[f] {
				flags += f
			}
		}
		expr := n.Value
		if flags != "" {
			expr = "(?" + flags + ")" + expr
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("regular expression %q: %w", n.Value, err)
		}
		return []valueTest{func(v any) bool { return v != nil && re.MatchString(scalarText(v)) }}, nil
	case has["cidr"]:
		p, err := netip.ParsePrefix(strings.TrimSpace(n.Value))
		if err != nil {
			return nil, fmt.Errorf("cidr %q: %w", n.Value, err)
		}
		p = p.Masked()
		return []valueTest{func(v any) bool {
			a, err := netip.ParseAddr(scalarText(v))
			return err == nil && p.Contains(a.Unmap())
		}}, nil
	case has["gt"] || has["gte"] || has["lt"] || has["lte"]:
		want, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			return nil, fmt.Errorf("comparison needs a number, not %q", n.Value)
		}
		cmp := func(x float64) bool {
			switch {
			case has["gt"]:
				return x > want
			case has["gte"]:
				return x >= want
			case has["lt"]:
				return x < want
			}
			return x <= want
		}
		return []valueTest{func(v any) bool {
			x, ok := number(v)
			return ok && cmp(x)
		}}, nil
	}
	if n.Tag == "!!null" {
		return []valueTest{func(v any) bool { return v == nil }}, nil
	}
	if n.Tag == "!!int" || n.Tag == "!!float" {
		want, err := strconv.ParseFloat(n.Value, 64)
		if err == nil && !has["contains"] && !has["startswith"] && !has["endswith"] {
			text := n.Value
			return []valueTest{func(v any) bool {
				if x, ok := v.(float64); ok {
					return x == want
				}
				return v != nil && scalarText(v) == text
			}}, nil
		}
	}
	values := []string{n.Value}
	if has["windash"] {
		values = windash(n.Value)
	}
	if has["base64"] || has["base64offset"] {
		var enc []string
		for _, s := range values {
			if has["base64offset"] {
				enc = append(enc, base64Offsets(s)...)
			} else {
				enc = append(enc, base64.StdEncoding.EncodeToString([]byte(s)))
			}
		}
		values = enc
	}
	var tests []valueTest
	for _, s := range values {
		p := compilePattern(s, has["contains"] || has["base64offset"], has["startswith"], has["endswith"], has["cased"])
		tests = append(tests, func(v any) bool { return v != nil && p.match(scalarText(v)) })
	}
	return tests, nil
}

// windash expands a command-line flag written with '-' into the other
// dashes Windows accepts for it.
func windash(s string) []string {
	if !strings.ContainsAny(s, "-/") {
		return []string{s}
	}
	out := []string{s}
	for _, d := range []string{"/", "–", "—", "―"} {
		out = append(out, strings.ReplaceAll(s, "-", d))
	}
	return out
}

// base64Offsets are the three encodings of s as it may appear inside a
// longer base64 text, depending on its offset modulo 3.
func base64Offsets(s string) []string {
	out := make([]string, 0, 3)
	for i := range 3 {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, i), s...))
		start := []int{0, 2, 3}[i]
		end := len(enc) - []int{0, 3, 2}[(len(s)+i)%3]
		if end > start {
			out = append(out, enc[start:end])
		}
	}
	return out
}

// scalarText renders an event value as the text rules compare with.
func scalarText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return jsonText(v)
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	return 0, false
}
