package audit

import (
	"strconv"
	"unicode/utf8"
)

// FieldError is why a record was rejected. Field names the JSON field at
// fault as the sender wrote it ("CreationTime", or a mapping's path such as
// "actor.id"); it is empty when the record as a whole is unusable (not JSON,
// too large, not an object).
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// quote quotes b for an error message, cut short so that a hostile megabyte
// value does not end up in logs and HTTP responses.
func quote(b []byte) string {
	const limit = 64
	if len(b) <= limit {
		return strconv.Quote(string(b))
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return strconv.Quote(string(b[:cut])) + "..."
}
