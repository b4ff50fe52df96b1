package store

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Expiry says which of a tenant's records have outlived their retention.
// The store knows nothing of policies; the retention package compiles them
// into this.
type Expiry struct {
	// Rules are tried in order; the first that matches a record decides
	// its cutoff.
	Rules []ExpiryRule
	// Default is the cutoff of records no rule matches.
	Default time.Time
	// Held are user ids on legal hold: their records never expire.
	Held []string
}

// ExpiryRule matches records by record type, operation and user (each an
// any-of; an empty list matches everything) and expires those created
// before Before.
type ExpiryRule struct {
	RecordTypes []int32
	Operations  []string
	UserIDs     []string
	Before      time.Time
}

// ExpiredGroup counts the records of one UTC day that one rule expires.
type ExpiredGroup struct {
	Day     string `json:"day"`
	Rule    int    `json:"rule"` // index into Expiry.Rules; -1 for the default
	Records int64  `json:"records"`
}

// ExpiryReport is what one enforcement pass removed, or would remove.
type ExpiryReport struct {
	Tenant         string         `json:"tenant"`
	DryRun         bool           `json:"dryRun"`
	PartsChecked   int            `json:"partsChecked"`
	PartsDropped   int            `json:"partsDropped"`
	PartsRewritten int            `json:"partsRewritten"`
	Records        int64          `json:"records"`
	BytesFreed     int64          `json:"bytesFreed"` // 0 in a dry run
	Groups         []ExpiredGroup `json:"groups"`     // by day, then rule
}

// expiredSQL is a condition true exactly for the records e expires, and
// ruleSQL the index of the rule deciding a record (-1 for the default).
// Values are inlined as literals (sqlString escapes) because the COPY that
// rewrites a part takes no parameters. Neither expression is ever NULL.
func (e Expiry) sql() (expired, rule string) {
	ts := func(t time.Time) string {
		return "TIMESTAMP " + sqlString(t.UTC().Format("2006-01-02 15:04:05.999999"))
	}
	lowerIn := func(col string, vals []string) string {
		q := make([]string, len(vals))
		for i, v := range vals {
			q[i] = sqlString(strings.ToLower(v))
		}
		return fmt.Sprintf("coalesce(lower(%s) IN (%s), false)", col, strings.Join(q, ", "))
	}
	var cutoff, index strings.Builder
	cutoff.WriteString("CASE")
	index.WriteString("CASE")
	for i, r := range e.Rules {
		var conds []string
		if len(r.RecordTypes) > 0 {
			n := make([]string, len(r.RecordTypes))
			for j, t := range r.RecordTypes {
				n[j] = strconv.Itoa(int(t))
			}
			conds = append(conds, fmt.Sprintf("coalesce(record_type IN (%s), false)", strings.Join(n, ", ")))
		}
		if len(r.Operations) > 0 {
			conds = append(conds, lowerIn("operation", r.Operations))
		}
		if len(r.UserIDs) > 0 {
			conds = append(conds, lowerIn("user_id", r.UserIDs))
		}
		match := "true"
		if len(conds) > 0 {
			match = strings.Join(conds, " AND ")
		}
		fmt.Fprintf(&cutoff, " WHEN %s THEN %s", match, ts(r.Before))
		fmt.Fprintf(&index, " WHEN %s THEN %d", match, i)
	}
	fmt.Fprintf(&cutoff, " ELSE %s END", ts(e.Default))
	index.WriteString(" ELSE -1 END")
	expired = fmt.Sprintf("coalesce(creation_time < (%s), false)", cutoff.String())
	if len(e.Held) > 0 {
		expired += " AND NOT " + lowerIn("user_id", e.Held)
	}
	return expired, index.String()
}

// latest is the newest cutoff: records created at or after it never expire.
func (e Expiry) latest() time.Time {
	t := e.Default
	for _, r := range e.Rules {
		if r.Before.After(t) {
			t = r.Before
		}
	}
	return t
}

// Expire removes the tenant's sealed records that e expires: a part whose
// records all expire is dropped, a part with some is rewritten without
// them. With dryRun nothing changes and the report says what would go.
//
// Each part is handled in one step of the seal loop, so seals and
// compaction interleave with a long pass instead of waiting for it, and a
// part is always replaced the way compaction replaces one: the new file is
// durable before the catalog names it, and the old one is deleted only
// after. A crash at any point leaves either the old part or the new one.
// Records still in the head (the last minutes of ingest) are left to the
// next pass after they are sealed.
func (db *DB) Expire(ctx context.Context, tenant string, e Expiry, dryRun bool) (ExpiryReport, error) {
	rep := ExpiryReport{Tenant: tenant, DryRun: dryRun}
	latest := e.latest()
	if latest.IsZero() {
		return rep, nil // nothing expires: every cutoff is at the beginning of time
	}
	v := db.acquire()
	parts := v.cat.parts(tenant, time.Time{}, latest)
	db.release(v)

	groups := map[[2]string]int64{} // day, rule → records
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		err := db.onSealLoop(ctx, func(ctx context.Context) error {
			return db.expirePart(ctx, p, e, dryRun, &rep, groups)
		})
		if err != nil {
			return rep, fmt.Errorf("expire %s: %w", p.Path, err)
		}
	}
	for k, n := range groups {
		rule, _ := strconv.Atoi(k[1])
		rep.Groups = append(rep.Groups, ExpiredGroup{Day: k[0], Rule: rule, Records: n})
	}
	sort.Slice(rep.Groups, func(i, j int) bool {
		a, b := rep.Groups[i], rep.Groups[j]
		if a.Day != b.Day {
			return a.Day < b.Day
		}
		return a.Rule < b.Rule
	})
	return rep, nil
}

// expirePart runs on the seal loop.
func (db *DB) expirePart(ctx context.Context, p Part, e Expiry, dryRun bool, rep *ExpiryReport, groups map[[2]string]int64) error {
	v := db.acquire()
	cur := v.cat
	db.release(v)
	if !cur.has(p.Path) {
		return nil // compacted or expired meanwhile; its successor is in a later pass
	}
	rep.PartsChecked++
	expired, rule := e.sql()
	src := "read_parquet(" + sqlString(db.path(p.Path)) + ")"
	rows, err := db.sql.QueryContext(ctx, fmt.Sprintf(
		"SELECT strftime(creation_time, '%%Y-%%m-%%d') AS day, %s AS rule, count(*) FROM %s WHERE %s GROUP BY ALL",
		rule, src, expired))
	if err != nil {
		return fmt.Errorf("count expired records: %w", err)
	}
	var n int64
	for rows.Next() {
		var day string
		var r int
		var c int64
		if err := rows.Scan(&day, &r, &c); err != nil {
			rows.Close()
			return fmt.Errorf("count expired records: %w", err)
		}
		groups[[2]string{day, strconv.Itoa(r)}] += c
		n += c
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("count expired records: %w", err)
	}
	if n == 0 {
		return nil
	}
	rep.Records += n
	if n == p.Rows {
		rep.PartsDropped++
	} else {
		rep.PartsRewritten++
	}
	if dryRun {
		return nil
	}

	var added []Part
	if n < p.Rows {
		sel := fmt.Sprintf("SELECT %s FROM %s WHERE NOT (%s) ORDER BY %s", columnList(), src, expired, partOrder)
		np, err := db.writePart(ctx, p.Tenant, p.Day, p.Level, sel)
		if err != nil {
			return err
		}
		if np.Rows != p.Rows-n {
			os.Remove(db.path(np.Path))
			return fmt.Errorf("rewrite kept %d rows, expected %d", np.Rows, p.Rows-n)
		}
		added = append(added, np)
		rep.BytesFreed -= np.Bytes
	}
	cat := cur.with(added, map[string]bool{p.Path: true}, 0)
	if err := cat.save(db.path("catalog.json")); err != nil {
		db.removeParts(added)
		return err
	}
	db.publish(func(cur *view) *view { return &view{cat: cat, gens: cur.gens} }, func() { db.removeParts([]Part{p}) })
	rep.BytesFreed += p.Bytes
	db.log.Info("expired records", "tenant", p.Tenant, "part", p.Path, "records", n, "kept", p.Rows-n)
	return nil
}
