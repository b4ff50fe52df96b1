package audit

// arena collects the strings of one record in one buffer, so that a record
// costs one string allocation rather than one per column. Values are copied
// in as they are read.
type arena struct {
	buf   []byte
	spans []span // spans beyond the fixed columns, such as message ids
}

// span locates one string in the arena.
type span struct{ lo, hi int }

func (s span) empty() bool { return s.lo == s.hi }

func (a *arena) reset() {
	a.buf = a.buf[:0]
	a.spans = a.spans[:0]
}

func (a *arena) add(b []byte) span {
	lo := len(a.buf)
	a.buf = append(a.buf, b...)
	return span{lo, len(a.buf)}
}

// text adds the text of a scalar: a string decoded, a number or boolean as
// written. Null, objects and arrays add nothing: an optional column with an
// unexpected shape stays empty and the raw record keeps the value.
func (a *arena) text(v []byte) span {
	lo := len(a.buf)
	if len(v) > 0 {
		switch c := v[0]; {
		case c == '"':
			a.buf = appendUnescaped(a.buf, v[1:len(v)-1])
		case c == 't' || c == 'f' || c == '-' || '0' <= c && c <= '9':
			a.buf = append(a.buf, v...)
		}
	}
	return span{lo, len(a.buf)}
}

// required adds a string field that must be present and not blank.
func (a *arena) required(field string, v []byte) (span, error) {
	if isNull(v) {
		return span{}, &FieldError{Field: field, Reason: "missing"}
	}
	if v[0] != '"' {
		return span{}, &FieldError{Field: field, Reason: "want a string, got " + kind(v)}
	}
	sp := a.text(v)
	if len(trimSpace(a.buf[sp.lo:sp.hi])) == 0 {
		a.buf = a.buf[:sp.lo]
		return span{}, &FieldError{Field: field, Reason: "empty"}
	}
	return sp, nil
}

// ip adds the first usable address among the candidate fields.
func (a *arena) ip(candidates ...[]byte) span {
	lo := len(a.buf)
	for _, v := range candidates {
		if s, ok := unquote(v); ok {
			if a.buf = appendIP(a.buf, s); len(a.buf) > lo {
				break
			}
		}
	}
	return span{lo, len(a.buf)}
}

// frozen is the arena's buffer turned into a string, from which the
// record's strings are sliced.
type frozen string

func (a *arena) string() frozen { return frozen(a.buf) }

func (s frozen) of(sp span) string { return string(s[sp.lo:sp.hi]) }
