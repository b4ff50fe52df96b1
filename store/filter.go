package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// Filter selects records by their extracted columns. Each non-empty field
// must match (AND); a field matches when any of its values does (OR).
// String comparisons ignore case except for ids that are case-exact
// (Id, SessionId, InternetMessageId).
type Filter struct {
	Operations     []string
	RecordTypes    []int32
	Workloads      []string
	UserIDs        []string
	IPs            []netip.Prefix // a single address is a /32 or /128
	AppIDs         []string       // AppId or ClientAppId
	ObjectIDs      []string       // '*' matches any run of characters
	SessionIDs     []string
	MessageIDs     []string // one of the record's InternetMessageIds
	ResultStatuses []string
	Keyword        string // anywhere in the raw record, case-insensitive
}

// Cursor is a position in the newest-first order of (CreationTime, Id): a
// query with After set returns only records strictly after it in that
// order, i.e. older ones. Keyset paging stays correct while records
// arrive: new records sort before the cursor or after it, never both.
type Cursor struct {
	Time time.Time
	ID   string
}

// where builds the SQL condition for q's time range, cursor and filter,
// with its arguments. A non-nil span replaces the user filter by one of
// its alternatives (see userSplits).
func (q Query) where(span *userSpan) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) {
		conds = append(conds, cond)
		args = append(args, a...)
	}
	if !q.From.IsZero() {
		add("creation_time >= ?", q.From.UTC())
	}
	if !q.To.IsZero() {
		add("creation_time < ?", q.To.UTC())
	}
	if c := q.After; c != nil {
		add("(creation_time < ? OR (creation_time = ? AND id < ?))", c.Time.UTC(), c.Time.UTC(), c.ID)
	}
	f := q.Filter
	str := func(expr string, vals []string) { addAnyOf(add, expr, vals, func(v string) []any { return []any{v} }) }
	str("lower(operation) = lower(?)", f.Operations)
	str("lower(workload) = lower(?)", f.Workloads)
	const userCond = "(user_id BETWEEN ? AND ? AND lower(user_id) = lower(?))"
	if span != nil {
		add(userCond, span.lo, span.hi, span.user)
	} else {
		addAnyOf(add, userCond, f.UserIDs, func(v string) []any {
			lo, hi := userBounds(v)
			return []any{lo, hi, v}
		})
	}
	str("session_id = ?", f.SessionIDs)
	str("lower(result_status) = lower(?)", f.ResultStatuses)
	// The column holds the ids joined by spaces; ids never contain one.
	str("list_contains(string_split(internet_message_ids, ' '), ?)", f.MessageIDs)
	addAnyOf(add, "record_type = ?", f.RecordTypes, func(t int32) []any { return []any{t} })
	addAnyOf(add, "(lower(app_id) = lower(?) OR lower(client_app_id) = lower(?))", f.AppIDs,
		func(v string) []any { return []any{v, v} })
	addAnyOf(add, `object_id ILIKE ? ESCAPE '\'`, f.ObjectIDs, func(v string) []any { return []any{wildcardPattern(v)} })
	addAnyOf(add, "custos_ip_in(client_ip, ?)", f.IPs, func(p netip.Prefix) []any { return []any{p.Masked().String()} })
	if f.Keyword != "" {
		// A case-insensitive RE2 search for the literal text: measured 9×
		// faster than ILIKE '%…%' over raw records.
		add("regexp_matches(raw, ?)", "(?i)"+regexp.QuoteMeta(f.Keyword))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// The user filter compares lower(user_id) with lower(v), which no Parquet
// statistic can prune by. What can prune is a byte range of user_id that
// holds every spelling s with lower(s) = lower(v): DuckDB then skips the
// row groups of files sorted by user whose min/max statistics rule the
// user out.
//
// For an ASCII id the spellings are fixed: each letter is its upper case,
// its lower case, or, for i and k, the one non-ASCII character whose
// DuckDB lower case is that letter (İ U+0130, the Kelvin sign U+212A;
// found by lowering every code point). Byte-wise, upper-case letters sort
// before lower-case ones and those two characters after both, so every
// spelling lies between the all-upper-case spelling and the one with the
// largest character at each letter. Ids with other non-ASCII text are not
// bounded.
//
// That one range is wide, though: "OLGA@X" to "olga@x" holds every user
// whose id sorts between an upper-case O and "olga@x", so a search for one
// user read half of each file. Split on the first letter's spellings, each
// range is tight ("oLGA@X" to "olga@x" holds only the users from "o" to
// "olga@x" that start with a lower-case o), and a scan of each range skips
// all but a few row groups; DuckDB prunes by one range per column but not
// by an OR of several.

// userSpan is one range of a user filter's spellings: rows whose user_id
// lies in [lo, hi] and whose lower case is user's.
type userSpan struct {
	lo, hi, user string
}

// maxUserSpans caps the scans a user filter splits into: each costs a pass
// over the files' metadata even when it matches nothing.
const maxUserSpans = 8

// userSplits returns alternatives to the user filter for scans of sealed
// parts: each row matching the filter matches exactly one of them. It
// returns nil when the filter is empty or would split into too many (the
// filter then stays one condition).
func (f Filter) userSplits() []userSpan {
	if len(f.UserIDs) == 0 {
		return nil
	}
	var out []userSpan
	seen := map[string]bool{}
	for _, v := range f.UserIDs {
		low, ok := asciiLower(v)
		if !ok {
			return nil
		}
		if seen[low] {
			continue // one lower case, one set of rows: a second span would repeat them
		}
		seen[low] = true
		out = append(out, userSpans(low)...)
		if len(out) > maxUserSpans {
			return nil
		}
	}
	return out
}

// asciiLower returns v in lower case, and whether v is ASCII.
func asciiLower(v string) (string, bool) {
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			return "", false
		}
	}
	return strings.ToLower(v), true
}

// letterSpellings are the spellings of an ASCII lower-case letter c whose
// DuckDB lower case is c, in byte order.
func letterSpellings(c byte) []string {
	switch c {
	case 'i':
		return []string{"I", "i", "\u0130"}
	case 'k':
		return []string{"K", "k", "\u212A"}
	}
	return []string{string(c - 'a' + 'A'), string(c)}
}

// lowest and highest spell the ASCII lower-case text s with the byte-wise
// smallest and largest spelling of each letter.
func lowest(s string) string { return strings.ToUpper(s) }

func highest(s string) string {
	return strings.NewReplacer("i", "\u0130", "k", "\u212A").Replace(s)
}

// userSpans splits the spellings of the ASCII lower-case id low on its
// first letter: one span per spelling of that letter, disjoint and in byte
// order.
func userSpans(low string) []userSpan {
	i := strings.IndexFunc(low, func(r rune) bool { return 'a' <= r && r <= 'z' })
	if i < 0 {
		return []userSpan{{low, low, low}} // no letters: one spelling
	}
	pre, rest := low[:i], low[i+1:]
	var out []userSpan
	for _, c := range letterSpellings(low[i]) {
		out = append(out, userSpan{pre + c + lowest(rest), pre + c + highest(rest), low})
	}
	return out
}

// userBounds returns the one range holding every spelling of v, or the
// whole range of strings when v is not ASCII.
func userBounds(v string) (lo, hi string) {
	low, ok := asciiLower(v)
	if !ok {
		return "", "\U0010FFFF"
	}
	return lowest(low), highest(low)
}

// addAnyOf adds the condition that cond holds for at least one of vals,
// args giving each value's arguments to cond; nothing when vals is empty.
func addAnyOf[T any](add func(string, ...any), cond string, vals []T, args func(T) []any) {
	if len(vals) == 0 {
		return
	}
	ors := make([]string, len(vals))
	var all []any
	for i, v := range vals {
		ors[i] = cond
		all = append(all, args(v)...)
	}
	add("("+strings.Join(ors, " OR ")+")", all...)
}

// escapeLike makes s match itself literally in a LIKE pattern.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// wildcardPattern turns a '*' wildcard into a LIKE pattern.
func wildcardPattern(s string) string {
	parts := strings.Split(s, "*")
	for i, p := range parts {
		parts[i] = escapeLike(p)
	}
	return strings.Join(parts, "%")
}

// registerIPIn installs custos_ip_in(ip, prefix): whether the address in
// the client_ip column lies in the CIDR prefix. DuckDB's inet extension is
// not available offline, and string prefixes cannot express /20 or IPv6.
func (db *DB) registerIPIn(ctx context.Context) error {
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: connection for ip filter: %w", err)
	}
	defer conn.Close()
	if err := duckdb.RegisterScalarUDF(conn, "custos_ip_in", ipInFunc{prefixes: &sync.Map{}}); err != nil {
		return fmt.Errorf("store: register ip filter: %w", err)
	}
	return nil
}

type ipInFunc struct {
	prefixes *sync.Map // prefix text → netip.Prefix: a query passes a few, for every row
}

func (ipInFunc) Config() duckdb.ScalarFuncConfig {
	varchar, _ := duckdb.NewTypeInfo(duckdb.TYPE_VARCHAR)
	boolean, _ := duckdb.NewTypeInfo(duckdb.TYPE_BOOLEAN)
	return duckdb.ScalarFuncConfig{
		InputTypeInfos: []duckdb.TypeInfo{varchar, varchar},
		ResultTypeInfo: boolean,
	}
}

func (f ipInFunc) Executor() duckdb.ScalarFuncExecutor {
	return duckdb.ScalarFuncExecutor{RowExecutor: func(values []driver.Value) (any, error) {
		ip, _ := values[0].(string)
		ps, _ := values[1].(string)
		if ip == "" || ps == "" {
			return false, nil
		}
		var p netip.Prefix
		if v, ok := f.prefixes.Load(ps); ok {
			p = v.(netip.Prefix)
		} else {
			var err error
			if p, err = netip.ParsePrefix(ps); err != nil {
				return nil, fmt.Errorf("custos_ip_in: %w", err)
			}
			f.prefixes.Store(ps, p)
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return false, nil
		}
		return p.Contains(a.Unmap()), nil
	}}
}
