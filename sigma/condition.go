package sigma

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// expr is a compiled condition.
type expr interface {
	eval(d *detection, e Event) bool
}

type (
	ref     struct{ s *search } // a search identifier, resolved when the condition is parsed
	notExpr struct{ x expr }
	andExpr []expr
	orExpr  []expr
)

func (r ref) eval(d *detection, e Event) bool     { return r.s.match(e) }
func (n notExpr) eval(d *detection, e Event) bool { return !n.x.eval(d, e) }

func (a andExpr) eval(d *detection, e Event) bool {
	for _, x := range a {
		if !x.eval(d, e) {
			return false
		}
	}
	return true
}

func (o orExpr) eval(d *detection, e Event) bool {
	for _, x := range o {
		if x.eval(d, e) {
			return true
		}
	}
	return false
}

// maxConditionDepth bounds nesting so a hostile rule cannot exhaust the
// stack.
const maxConditionDepth = 64

type condParser struct {
	toks  []string
	pos   int
	d     *detection
	depth int
}

// parseCondition compiles a condition over d's search identifiers.
func parseCondition(s string, d *detection) (expr, error) {
	if strings.Contains(s, "|") {
		return nil, errors.New("aggregations (| count() ...) are not supported; use a baseline detector for counting")
	}
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, errors.New("empty condition")
	}
	p := &condParser{toks: toks, d: d}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.toks[p.pos])
	}
	return e, nil
}

func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			toks = append(toks, string(c))
			i++
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}

func (p *condParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *condParser) keyword(k string) bool {
	if strings.EqualFold(p.peek(), k) {
		p.pos++
		return true
	}
	return false
}

func (p *condParser) or() (expr, error) {
	return p.chain("or", p.and, func(xs []expr) expr { return orExpr(xs) })
}

func (p *condParser) and() (expr, error) {
	return p.chain("and", p.not, func(xs []expr) expr { return andExpr(xs) })
}

// chain parses operands joined by the keyword op and combines them; a
// single operand stands alone.
func (p *condParser) chain(op string, operand func() (expr, error), combine func([]expr) expr) (expr, error) {
	x, err := operand()
	if err != nil {
		return nil, err
	}
	list := []expr{x}
	for p.keyword(op) {
		y, err := operand()
		if err != nil {
			return nil, err
		}
		list = append(list, y)
	}
	if len(list) == 1 {
		return x, nil
	}
	return combine(list), nil
}

func (p *condParser) not() (expr, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxConditionDepth {
		return nil, errors.New("condition nested too deeply")
	}
	if p.keyword("not") {
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return notExpr{x}, nil
	}
	return p.primary()
}

func (p *condParser) primary() (expr, error) {
	t := p.peek()
	switch {
	case t == "":
		return nil, errors.New("condition ends too early")
	case t == "(":
		p.pos++
		x, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.keyword(")") {
			return nil, errors.New("missing )")
		}
		return x, nil
	case t == ")":
		return nil, errors.New("unexpected )")
	}
	low := strings.ToLower(t)
	if (low == "1" || low == "any" || low == "all") && p.pos+1 < len(p.toks) && strings.EqualFold(p.toks[p.pos+1], "of") {
		p.pos += 2
		target := p.peek()
		if target == "" || target == "(" || target == ")" {
			return nil, fmt.Errorf("%q of what?", t)
		}
		p.pos++
		refs, err := p.resolve(target)
		if err != nil {
			return nil, err
		}
		if low == "all" {
			return andExpr(refs), nil
		}
		return orExpr(refs), nil
	}
	for _, k := range []string{"and", "or", "of"} {
		if low == k {
			return nil, fmt.Errorf("unexpected %q", t)
		}
	}
	if _, ok := p.d.searches[t]; !ok {
		return nil, fmt.Errorf("no search identifier %q in the detection", t)
	}
	p.pos++
	return ref{p.d.searches[t]}, nil
}

// resolve expands "them" or a pattern like selection_* to the search
// identifiers it names. "them" leaves out identifiers starting with "_".
func (p *condParser) resolve(target string) ([]expr, error) {
	var out []expr
	for _, name := range p.d.order {
		var ok bool
		if strings.EqualFold(target, "them") {
			ok = !strings.HasPrefix(name, "_")
		} else {
			ok, _ = path.Match(target, name)
		}
		if ok {
			out = append(out, ref{p.d.searches[name]})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q matches no search identifier", target)
	}
	return out, nil
}

// gate returns lower-case values such that x can hold only for an event in
// which one of fields is a string equal, lower-cased, to one of them; ok
// is false when x may hold otherwise. It reasons soundly, not completely:
// an and needs only one gated operand, an or needs all of them gated, and
// a not is never gated.
func gate(x expr, fields []string) (values []string, ok bool) {
	switch x := x.(type) {
	case ref:
		return x.s.gate(fields)
	case andExpr:
		for _, y := range x {
			if v, ok := gate(y, fields); ok {
				return v, true
			}
		}
	case orExpr:
		for _, y := range x {
			v, ok := gate(y, fields)
			if !ok {
				return nil, false
			}
			values = append(values, v...)
		}
		return values, len(x) > 0
	}
	return nil, false
}
