package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"net/netip"
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
	anyOf := func(expr string, vals []string, fold bool) {
		if len(vals) == 0 {
			return
		}
		ors := make([]string, len(vals))
		var a []any
		for i, v := range vals {
			if fold {
				ors[i] = "lower(" + expr + ") = lower(?)"
			} else {
				ors[i] = expr + " = ?"
			}
			a = append(a, v)
		}
		add("("+strings.Join(ors, " OR ")+")", a...)
	}
	anyOf("operation", f.Operations, true)
	anyOf("workload", f.Workloads, true)
	anyOf("user_id", f.UserIDs, true)
	anyOf("session_id", f.SessionIDs, false)
	anyOf("result_status", f.ResultStatuses, true)
	if len(f.RecordTypes) > 0 {
		ors := make([]string, len(f.RecordTypes))
		var a []any
		for i, t := range f.RecordTypes {
			ors[i], a = "record_type = ?", append(a, t)
		}
		add("("+strings.Join(ors, " OR ")+")", a...)
	}
	if len(f.AppIDs) > 0 {
		ors := make([]string, len(f.AppIDs))
		var a []any
		for i, v := range f.AppIDs {
			ors[i], a = "(lower(app_id) = lower(?) OR lower(client_app_id) = lower(?))", append(a, v, v)
		}
		add("("+strings.Join(ors, " OR ")+")", a...)
	}
	if len(f.ObjectIDs) > 0 {
		ors := make([]string, len(f.ObjectIDs))
		var a []any
		for i, v := range f.ObjectIDs {
			ors[i], a = `object_id ILIKE ? ESCAPE '\'`, append(a, wildcardPattern(v))
		}
		add("("+strings.Join(ors, " OR ")+")", a...)
	}
	if len(f.MessageIDs) > 0 {
		// The column holds the ids joined by spaces; ids never contain one.
		ors := make([]string, len(f.MessageIDs))
		var a []any
		for i, v := range f.MessageIDs {
			ors[i], a = "list_contains(string_split(internet_message_ids, ' '), ?)", append(a, v)
		}
		add("("+strings.Join(ors, " OR ")+")", a...)
	}
	if len(f.IPs) > 0 {
		ors := make([]string, len(f.IPs))
		var a []any
		for i, p := range f.IPs {
			ors[i], a = "custos_ip_in(client_ip, ?)", append(a, p.Masked().String())
		}
		add("("+strings.Join(ors, " OR ")+")", a...)
	}
	if f.Keyword != "" {
		add(`raw ILIKE ? ESCAPE '\'`, "%"+escapeLike(f.Keyword)+"%")
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
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
