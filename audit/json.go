package audit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is the package's JSON layer: a strict validator, and navigation
// over text the validator has accepted. This is what makes parsing fast: a
// record is scanned once, to validate it and list its top-level members, and
// only the nested values asked for are looked at again; nothing is decoded
// that is not extracted, and nothing allocates.
//
// A value is handled as its text: a []byte slice of the record starting at
// the value's first byte and ending after its last, so v[0] tells its type.

// maxDepth bounds the nesting of objects and arrays. Real records nest a
// handful of levels; the bound keeps hostile input from costing deep
// recursion.
const maxDepth = 128

// validate checks that b is one JSON text (RFC 8259) that is also I-JSON
// (RFC 7493) as far as it matters here: UTF-8, no unpaired surrogate
// escapes, and nesting no deeper than maxDepth. It returns "" if b is valid,
// or what is wrong and the byte offset where.
func validate(b []byte) (offset int, reason string) {
	return validateTop(b, nil)
}

// validateTop is validate that also appends to *top, if not nil, the
// members of the top-level object, sparing a second pass to find them.
func validateTop(b []byte, top *[]topMember) (offset int, reason string) {
	if !utf8.Valid(b) {
		return invalidUTF8At(b), "invalid UTF-8"
	}
	c := checker{b: b, top: top}
	c.ws()
	if c.value(0) {
		c.ws()
		if c.i == len(b) {
			return 0, ""
		}
		c.fail("unexpected " + c.describe() + " after the value")
	}
	return c.at, c.reason
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// topMember locates a member of the top-level object by offsets (not
// slices, which would cost GC write barriers to store): its raw key, the
// text between the quotes, is b[keyLo:keyHi] and its value b[valLo:valHi].
type topMember struct {
	keyLo, keyHi, valLo, valHi int32
	keyEscaped                 bool
}

// checker is a recursive-descent validator; recursion is bounded by maxDepth.
type checker struct {
	b      []byte
	i      int
	at     int
	reason string
	top    *[]topMember
}

func (c *checker) fail(reason string) bool {
	c.at, c.reason = c.i, reason
	return false
}

func (c *checker) describe() string {
	if c.i >= len(c.b) {
		return "end of input"
	}
	r, _ := utf8.DecodeRune(c.b[c.i:])
	return "character " + strconv.QuoteRune(r)
}

func (c *checker) ws() {
	for c.i < len(c.b) && isJSONSpace(c.b[c.i]) {
		c.i++
	}
}

func (c *checker) value(depth int) bool {
	if c.i >= len(c.b) {
		return c.fail("unexpected end of input")
	}
	switch ch := c.b[c.i]; {
	case ch == '{' || ch == '[':
		if depth >= maxDepth {
			return c.fail(fmt.Sprintf("nested deeper than %d levels", maxDepth))
		}
		return c.container(depth + 1)
	case ch == '"':
		_, ok := c.str()
		return ok
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	case ch == '-' || '0' <= ch && ch <= '9':
		end, ok := scanNumber(c.b, c.i)
		if !ok {
			return c.fail("malformed number")
		}
		c.i = end
		return true
	}
	return c.fail("unexpected " + c.describe())
}

// container checks an object or an array starting at c.i.
func (c *checker) container(depth int) bool {
	object := c.b[c.i] == '{'
	closing := byte(']')
	if object {
		closing = '}'
	}
	c.i++
	c.ws()
	if c.i < len(c.b) && c.b[c.i] == closing {
		c.i++
		return true
	}
	var keyAt, keyEnd int
	var keyEscaped, ok bool
	for {
		if object {
			keyAt = c.i
			if c.i >= len(c.b) || c.b[c.i] != '"' {
				return c.fail("want a string key, got " + c.describe())
			}
			if keyEscaped, ok = c.str(); !ok {
				return false
			}
			keyEnd = c.i
			c.ws()
			if c.i >= len(c.b) || c.b[c.i] != ':' {
				return c.fail("want ':' after object key, got " + c.describe())
			}
			c.i++
			c.ws()
		}
		valAt := c.i
		if !c.value(depth) {
			return false
		}
		if object && depth == 1 && c.top != nil {
			*c.top = append(*c.top, topMember{int32(keyAt + 1), int32(keyEnd - 1), int32(valAt), int32(c.i), keyEscaped})
		}
		c.ws()
		if c.i < len(c.b) && c.b[c.i] == ',' {
			c.i++
			c.ws()
			continue
		}
		if c.i < len(c.b) && c.b[c.i] == closing {
			c.i++
			return true
		}
		return c.fail(fmt.Sprintf("want ',' or '%c', got %s", closing, c.describe()))
	}
}

func (c *checker) literal(lit string) bool {
	if !bytes.HasPrefix(c.b[c.i:], []byte(lit)) {
		return c.fail("invalid literal (want " + lit + ")")
	}
	c.i += len(lit)
	return true
}

// str checks the string at c.i and moves past it, reporting whether it has
// escapes.
func (c *checker) str() (escaped, ok bool) {
	end, escaped, reason := scanString(c.b, c.i+1)
	c.i = end
	if reason != "" {
		return false, c.fail(reason)
	}
	return escaped, true
}

// scanString scans the content of a string starting just after its opening
// quote and returns the offset just after the closing quote and whether the
// string has escapes, or the offset of a problem and its description.
func scanString(b []byte, i int) (end int, escaped bool, reason string) {
	for {
		// Find the next quote, backslash or control character eight bytes
		// at a time: strings are most of a record.
		for {
			if len(b)-i < 8 {
				for i < len(b) && b[i] != '"' && b[i] != '\\' && b[i] >= 0x20 {
					i++
				}
				break
			}
			if m := stringStops(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(b) {
			return i, escaped, "unterminated string"
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, ""
		case c < 0x20:
			return i, escaped, fmt.Sprintf("control character 0x%02x in string", c)
		}
		// A backslash.
		escaped = true
		if i+1 >= len(b) {
			return i, escaped, "unterminated string"
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			r, ok := hex4(b, i+2)
			if !ok {
				return i, escaped, "malformed \\u escape"
			}
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by a low one makes a character.
				lo, ok := hex4(b, i+8)
				if r >= 0xDC00 || !ok || b[i+6] != '\\' || b[i+7] != 'u' || lo < 0xDC00 || lo >= 0xE000 {
					return i, escaped, "unpaired UTF-16 surrogate escape"
				}
				i += 6
			}
			i += 6
		default:
			r, _ := utf8.DecodeRune(b[i+1:])
			return i, escaped, "invalid escape \\" + string(r)
		}
	}
}

// stringStops marks with its high bit each byte of x (little endian) that
// is a quote, a backslash or a control character, by the usual SWAR tricks:
// (v - 0x0101..) & ^v & 0x8080.. marks the zero bytes of v, and
// (x - n*0x0101..) & ^x & 0x8080.. the bytes of x below n (n <= 0x80). A
// mark can be wrong only above a right one, so the lowest mark is exact.
func stringStops(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote := x ^ (ones * '"')
	backslash := x ^ (ones * '\\')
	return ((x-ones*0x20)&^x | (quote-ones)&^quote | (backslash-ones)&^backslash) & highs
}

// hex4 decodes four hex digits at b[i:]; it is false if they are not there.
func hex4(b []byte, i int) (rune, bool) {
	if i < 0 || len(b)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// scanNumber scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i:]
// and returns the offset after it.
func scanNumber(b []byte, i int) (int, bool) {
	digits := func() bool {
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > start
	}
	if b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if !digits() {
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return i, false
		}
	}
	return i, true
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// Navigation. Everything below assumes text accepted by validate.

// skipValue returns the offset just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i+1)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i+1)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && !isJSONSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the offset just past the closing quote of the string
// whose content starts at b[i]. It scans like scanString, minus the checks.
func skipString(b []byte, i int) int {
	for {
		for len(b)-i >= 8 {
			if m := stringStops(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(b) && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) {
			return i
		}
		if b[i] == '"' {
			return i + 1
		}
		i += 2 // an escape; the hex digits of \uXXXX are ordinary bytes
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isJSONSpace(b[i]) {
		i++
	}
	return i
}

// iter walks the members of an object or the elements of an array.
type iter struct {
	b []byte // the container's text
	i int    // where the next member or element starts, or len(b) when done
}

// items returns an iterator over v's members or elements; over nothing if v
// is neither an object nor an array.
func items(v []byte) iter {
	if len(v) == 0 || v[0] != '{' && v[0] != '[' {
		return iter{}
	}
	return iter{b: v, i: 1}
}

// next returns the next element, or member with its raw key (the text
// between the quotes, escapes not decoded). ok is false at the end.
func (it *iter) next() (key, val []byte, ok bool) {
	i := skipSpace(it.b, it.i)
	if i >= len(it.b) || it.b[i] == '}' || it.b[i] == ']' {
		it.i = len(it.b)
		return nil, nil, false
	}
	if it.b[i] == ',' {
		i = skipSpace(it.b, i+1)
	}
	if it.b[0] == '{' {
		end := skipString(it.b, i+1)
		key = it.b[i+1 : end-1]
		i = skipSpace(it.b, end)
		i = skipSpace(it.b, i+1) // past the colon
	}
	end := skipValue(it.b, i)
	it.i = end
	return key, it.b[i:end], true
}

// member returns the value of the member of object v named key, or nil. A
// repeated key gives its last value, as encoding/json and most JSON readers
// do.
func member(v []byte, key string) []byte {
	var found []byte
	it := items(v)
	for k, val, ok := it.next(); ok; k, val, ok = it.next() {
		if keyIs(k, key) {
			found = val
		}
	}
	return found
}

// element returns the n-th element of array v, or nil.
func element(v []byte, n int) []byte {
	if len(v) == 0 || v[0] != '[' {
		return nil
	}
	it := items(v)
	for _, val, ok := it.next(); ok; _, val, ok = it.next() {
		if n == 0 {
			return val
		}
		n--
	}
	return nil
}

// keyIs reports whether the raw key k, once unescaped, is name.
func keyIs(k []byte, name string) bool {
	if bytes.IndexByte(k, '\\') < 0 {
		return string(k) == name
	}
	var buf [64]byte
	return string(appendUnescaped(buf[:0], k)) == name
}

// appendUnescaped appends the decoded content of a string (the text between
// its quotes).
func appendUnescaped(dst, s []byte) []byte {
	for {
		n := bytes.IndexByte(s, '\\')
		if n < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:n]...)
		c := s[n+1]
		s = s[n+2:]
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(s, 0)
			s = s[4:]
			if utf16.IsSurrogate(r) {
				lo, _ := hex4(s, 2)
				r = utf16.DecodeRune(r, lo)
				s = s[6:]
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
	}
}

// unquote returns the decoded content of string value v, which is a slice
// of v unless v has escapes; ok is false if v is not a string.
func unquote(v []byte) (s []byte, ok bool) {
	if len(v) < 2 || v[0] != '"' {
		return nil, false
	}
	s = v[1 : len(v)-1]
	if bytes.IndexByte(s, '\\') >= 0 {
		s = appendUnescaped(nil, s)
	}
	return s, true
}

func isNull(v []byte) bool { return len(v) == 0 || v[0] == 'n' }

// kind names the JSON type of v for error messages.
func kind(v []byte) string {
	switch {
	case len(v) == 0 || v[0] == 'n':
		return "null"
	case v[0] == '{':
		return "object"
	case v[0] == '[':
		return "array"
	case v[0] == '"':
		return "string"
	case v[0] == 't' || v[0] == 'f':
		return "boolean"
	}
	return "number"
}
