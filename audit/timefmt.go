package audit

import "time"

// parseTime parses the timestamps audit sources write, returning UTC:
//
//	2020-02-17T17:12:03            no zone: UTC, as the Management Activity API means it
//	2020-02-17T17:12:03Z
//	2020-02-17T17:12:03.1037807Z   up to 9 fractional digits (.NET writes 7)
//	2020-02-17T19:12:03+02:00      also +0200 and +02
//	2022-12-12 22:19:00            space instead of T (Panther and SQL exports)
//
// It is hand-written because time.Parse needs one layout per variant, and
// trying them in turn costs several microseconds per record. Every field is
// range-checked, since time.Date would silently normalise 2021-02-30.
func parseTime(b []byte) (time.Time, bool) {
	b = trimSpace(b)
	if len(b) < len("2006-01-02T15:04:05") {
		return time.Time{}, false
	}
	year, ok1 := atoiFixed(b[0:4])
	month, ok2 := atoiFixed(b[5:7])
	day, ok3 := atoiFixed(b[8:10])
	hour, ok4 := atoiFixed(b[11:13])
	minute, ok5 := atoiFixed(b[14:16])
	sec, ok6 := atoiFixed(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		b[4] != '-' || b[7] != '-' || b[13] != ':' || b[16] != ':' ||
		(b[10] != 'T' && b[10] != 't' && b[10] != ' ') {
		return time.Time{}, false
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	rest := b[19:]

	nsec := 0
	if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
		n := 1
		for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
			n++
		}
		digits := rest[1:n]
		if len(digits) == 0 || len(digits) > 9 {
			return time.Time{}, false
		}
		for i := range 9 {
			nsec *= 10
			if i < len(digits) {
				nsec += int(digits[i] - '0')
			}
		}
		rest = rest[n:]
	}

	offset := 0 // seconds east of UTC
	switch {
	case len(rest) == 0:
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case rest[0] == '+' || rest[0] == '-':
		var ok bool
		if offset, ok = parseOffset(rest[1:]); !ok {
			return time.Time{}, false
		}
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), true
}

// parseOffset parses the zone offset after its sign: 02, 0200 or 02:00.
func parseOffset(z []byte) (int, bool) {
	var hh, mm []byte
	switch {
	case len(z) == 2:
		hh = z
	case len(z) == 4:
		hh, mm = z[:2], z[2:]
	case len(z) == 5 && z[2] == ':':
		hh, mm = z[:2], z[3:]
	default:
		return 0, false
	}
	h, okH := atoiFixed(hh)
	m, okM := atoiFixed(mm)
	if !okH || !okM || h > 23 || m > 59 {
		return 0, false
	}
	return (h*60 + m) * 60, true
}

// atoiFixed parses a run of ASCII digits, all of which must be digits.
func atoiFixed(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(m time.Month, year int) int {
	switch m {
	case time.February:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

// trimSpace trims ASCII whitespace, the only kind that can surround a JSON
// text or pad a field value in practice.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
