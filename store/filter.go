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
// with its arguments.
func (q Query) where() (string, []any) {
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
	addAnyOf(add, "(user_id BETWEEN ? AND ? AND lower(user_id) = lower(?))", f.UserIDs, userArgs)
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

// userArgs bound a user id's spellings in any case, so that DuckDB can skip
// the row groups of files sorted by user whose min/max statistics rule the
// user out: a user's MailItemsAccessed over months costs a third as much.
// The bounds are the byte-wise smallest and largest strings whose lower
// case is the id's: upper-case letters sort first, lower-case after, and
// the Kelvin sign, the one non-ASCII character whose lower case is ASCII
// (k), after both. Ids with other non-ASCII text are not bounded.
func userArgs(v string) []any {
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			return []any{"", "\U0010FFFF", v}
		}
	}
	return []any{strings.ToUpper(v), strings.ReplaceAll(strings.ToLower(v), "k", "\u212A"), v}
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
