package sigma

import (
	"regexp"
	"strings"
)

// pattern is a Sigma string value: case-insensitive unless cased, with *
// for any run of characters and ? for one; \*, \? and \\ are literal and
// any other backslash is itself.
type pattern struct {
	kind  patternKind
	lit   string // literal text, lower-cased unless cased
	cased bool
	// asciiLit: lit is ASCII, so an ASCII value can be compared folding
	// bytes.
	asciiLit bool
	regexp   *regexp.Regexp
}

type patternKind uint8

const (
	exact patternKind = iota
	prefix
	suffix
	substring
	glob
)

func compilePattern(s string, contains, startswith, endswith, cased bool) *pattern {
	p := buildPattern(s, contains, startswith, endswith, cased)
	p.asciiLit = isASCII(p.lit)
	return p
}

func buildPattern(s string, contains, startswith, endswith, cased bool) *pattern {
	// Split into literal runs and wildcards.
	type piece struct {
		lit  string
		wild byte // 0, '*' or '?'
	}
	var pieces []piece
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\'):
			cur.WriteByte(s[i+1])
			i++
		case c == '*' || c == '?':
			pieces = append(pieces, piece{lit: cur.String()}, piece{wild: c})
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	pieces = append(pieces, piece{lit: cur.String()})
	if contains || endswith {
		pieces = append([]piece{{wild: '*'}}, pieces...)
	}
	if contains || startswith {
		pieces = append(pieces, piece{wild: '*'})
	}
	// Drop empty literals and collapse the common shapes to string tests.
	var p []piece
	for _, x := range pieces {
		if x.wild != 0 || x.lit != "" {
			p = append(p, x)
		}
	}
	fold := func(s string) string {
		if cased {
			return s
		}
		return strings.ToLower(s)
	}
	star := func(x piece) bool { return x.wild == '*' }
	switch {
	case len(p) == 0:
		return &pattern{kind: exact, cased: cased}
	case len(p) == 1 && p[0].wild == 0:
		return &pattern{kind: exact, lit: fold(p[0].lit), cased: cased}
	case len(p) == 1 && star(p[0]):
		return &pattern{kind: substring, cased: cased} // "*" matches everything
	case len(p) == 2 && p[0].wild == 0 && star(p[1]):
		return &pattern{kind: prefix, lit: fold(p[0].lit), cased: cased}
	case len(p) == 2 && star(p[0]) && p[1].wild == 0:
		return &pattern{kind: suffix, lit: fold(p[1].lit), cased: cased}
	case len(p) == 3 && star(p[0]) && p[1].wild == 0 && star(p[2]):
		return &pattern{kind: substring, lit: fold(p[1].lit), cased: cased}
	}
	var re strings.Builder
	re.WriteString("(?s")
	if !cased {
		re.WriteString("i")
	}
	re.WriteString(")^")
	for _, x := range p {
		switch x.wild {
		case '*':
			re.WriteString(".*")
		case '?':
			re.WriteString(".")
		default:
			// regexp takes only valid UTF-8; a stray byte in a rule must
			// not make compiling it panic.
			re.WriteString(regexp.QuoteMeta(strings.ToValidUTF8(x.lit, "\uFFFD")))
		}
	}
	re.WriteString("$")
	return &pattern{kind: glob, cased: cased, regexp: regexp.MustCompile(re.String())}
}

func (p *pattern) match(s string) bool {
	switch {
	case p.kind == glob:
		return p.regexp.MatchString(s)
	case p.cased:
		return p.test(s)
	case p.asciiLit && isASCII(s):
		// Most values and every bundled rule's literals are ASCII: compare
		// folding bytes, without building a lower-cased copy per test.
		return p.testFoldASCII(s)
	}
	return p.test(strings.ToLower(s))
}

// test compares s, already folded if need be, with the literal.
func (p *pattern) test(s string) bool {
	switch p.kind {
	case exact:
		return s == p.lit
	case prefix:
		return strings.HasPrefix(s, p.lit)
	case suffix:
		return strings.HasSuffix(s, p.lit)
	}
	return strings.Contains(s, p.lit)
}

// testFoldASCII is test for an ASCII s against the lower-case ASCII literal.
func (p *pattern) testFoldASCII(s string) bool {
	lit := p.lit
	switch p.kind {
	case exact:
		return len(s) == len(lit) && equalFoldASCII(s, lit)
	case prefix:
		return len(s) >= len(lit) && equalFoldASCII(s[:len(lit)], lit)
	case suffix:
		return len(s) >= len(lit) && equalFoldASCII(s[len(s)-len(lit):], lit)
	}
	if lit == "" {
		return true
	}
	first := lit[0]
	for i := 0; i+len(lit) <= len(s); i++ {
		if lowerASCII(s[i]) == first && equalFoldASCII(s[i:i+len(lit)], lit) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFoldASCII reports whether s lower-cased equals lit (lower case),
// both of the same length.
func equalFoldASCII(s, lit string) bool {
	for i := 0; i < len(lit); i++ {
		if lowerASCII(s[i]) != lit[i] {
			return false
		}
	}
	return true
}
