package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/custos-audit/custos/audit"
)

// Query selects a tenant's records.
type Query struct {
	From, To time.Time // CreationTime in [From, To); zero means unbounded
	Filter
	After *Cursor // only records after this position, newest first
	Limit int     // 0 means no limit
	// Slim reads only what a search answer shows: ID, CreationTime,
	// RecordType, Operation, UserID, Workload and Raw; the other fields
	// of the records passed on are zero. Exports run ~3× faster.
	Slim bool
}

// slimColumns are the columns a Slim query reads, in scanSlim's order.
const slimColumns = "tenant, id, creation_time, record_type, operation, user_id, workload, raw"

// source is one SQL relation holding records: a head scan, or sealed
// parts read by one read_parquet.
type source struct {
	sql   string // the head scan
	parts []Part // or the sealed parts
}

// sources returns the SQL relations holding the tenant's records in view v
// that may overlap q: head scans and one read_parquet over the pruned
// sealed parts. Only the tenant's own tables and files can ever be named,
// which is what isolates tenants here.
func (db *DB) sources(v *view, tenant string, q Query) []source {
	gens, parts := holdings(v, tenant, q)
	return db.sourcesOf(tenant, q, gens, parts)
}

// holdings returns the head generations holding records of the tenant and
// the sealed parts that may overlap q.
func holdings(v *view, tenant string, q Query) ([]*headGen, []Part) {
	var gens []*headGen
	for _, g := range v.gens {
		if g.has(tenant) {
			gens = append(gens, g)
		}
	}
	to := q.To
	if c := q.After; c != nil && (to.IsZero() || c.Time.Before(to)) {
		// Later pages skip the files wholly newer than the cursor.
		to = c.Time.Add(time.Microsecond)
	}
	return gens, v.cat.parts(tenant, q.From, to)
}

// sourcesOf returns the SQL relations of the tenant's records in gens and
// parts.
func (db *DB) sourcesOf(tenant string, q Query, gens []*headGen, parts []Part) []source {
	var out []source
	for _, g := range gens {
		out = append(out, source{sql: headSQL(g, tenant, q.From, q.To)})
	}
	if len(parts) > 0 {
		out = append(out, source{parts: parts})
	}
	return out
}

// readParts is the relation of the records in parts.
func (db *DB) readParts(parts []Part) string {
	paths := make([]string, len(parts))
	for i, p := range parts {
		paths[i] = sqlString(db.path(p.Path))
	}
	return fmt.Sprintf("read_parquet([%s], union_by_name = true)", strings.Join(paths, ", "))
}

// union selects cols from every source with q's condition pushed into
// each branch, so Parquet row groups are pruned by their statistics. A
// user filter splits the sealed parts' scan into one branch per range of
// the users' spellings (Filter.userSplits), each of which DuckDB can prune
// by; the branches' rows are disjoint. A branch reads only the parts whose
// range of user ids meets its range, and is left out when none does: a
// scan that matches nothing still cost DuckDB ~1 ms per file and column
// read, a third of a search for one user.
func (db *DB) union(sources []source, cols string, q Query) (string, []any) {
	where, args := q.where(nil)
	splits := q.userSplits()
	var branches []string
	var all []any
	for _, s := range sources {
		switch {
		case s.parts == nil:
			branches = append(branches, "SELECT "+cols+" FROM "+s.sql+where)
			all = append(all, args...)
		case splits == nil:
			branches = append(branches, "SELECT "+cols+" FROM "+db.readParts(s.parts)+where)
			all = append(all, args...)
		default:
			for i, sp := range splits {
				var parts []Part
				for _, p := range s.parts {
					if p.mayHoldUsers(sp.lo, sp.hi) {
						parts = append(parts, p)
					}
				}
				if len(parts) == 0 {
					continue
				}
				w, a := q.where(&splits[i])
				branches = append(branches, "SELECT "+cols+" FROM "+db.readParts(parts)+w)
				all = append(all, a...)
			}
		}
	}
	if len(branches) == 0 {
		// No part may hold the users: a relation with the columns and no rows.
		return "SELECT " + cols + " FROM " + db.readParts(sources[len(sources)-1].parts) + " WHERE false", nil
	}
	return strings.Join(branches, " UNION ALL "), all
}

// Records implements Store.
func (db *DB) Records(ctx context.Context, tenant string, q Query, fn func(*audit.Record) error) error {
	v := db.acquire()
	defer db.release(v)
	gens, parts := holdings(v, tenant, q)
	if len(gens) == 0 && len(parts) == 0 {
		return nil
	}
	cols, scan := columnList(), scanRecord
	if q.Slim {
		cols, scan = slimColumns, scanSlim
	}
	if q.Limit == 0 && len(q.UserIDs) == 0 {
		if sl := timeSlices(tenant, gens, parts); len(sl) > 1 {
			return db.recordsBySlice(ctx, tenant, q, sl, cols, scan, fn)
		}
	}
	rows, err := db.queryRecords(ctx, q, db.sourcesOf(tenant, q, gens, parts), cols)
	if err != nil {
		return err
	}
	return each(rows, scan, fn)
}

// queryRecords runs the query of q's records in srcs, newest first.
func (db *DB) queryRecords(ctx context.Context, q Query, srcs []source, cols string) (*sql.Rows, error) {
	stmt, args := db.union(srcs, cols, q)
	stmt += " ORDER BY creation_time DESC, id DESC"
	if q.Limit > 0 {
		stmt += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	rows, err := db.sql.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("store: query records: %w", err)
	}
	return rows, nil
}

// timeSlice is head generations and sealed parts whose records' times lie
// in [oldest, newest], a range no other slice's overlaps.
type timeSlice struct {
	oldest, newest time.Time
	gens           []*headGen
	parts          []Part
}

// timeSlices cuts the tenant's records in gens and parts into slices of
// time, newest first. Weekly blocks and day parts hold disjoint times, so a
// long export becomes one slice per block or day.
func timeSlices(tenant string, gens []*headGen, parts []Part) []timeSlice {
	type item struct {
		oldest, newest time.Time
		gen            *headGen
		part           *Part
	}
	var items []item
	for _, g := range gens {
		if lo, hi, ok := g.span(tenant); ok {
			// Whole microseconds, as DuckDB and the head scan compare them.
			items = append(items, item{oldest: time.UnixMicro(lo.UnixMicro()), newest: time.UnixMicro(hi.UnixMicro()), gen: g})
		}
	}
	for i := range parts {
		items = append(items, item{oldest: parts[i].MinTime, newest: parts[i].MaxTime, part: &parts[i]})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].newest.After(items[j].newest) })
	var out []timeSlice
	for _, it := range items {
		n := len(out)
		if n == 0 || it.newest.Before(out[n-1].oldest) {
			out = append(out, timeSlice{oldest: it.oldest, newest: it.newest})
			n++
		}
		s := &out[n-1]
		if it.oldest.Before(s.oldest) {
			s.oldest = it.oldest
		}
		if it.gen != nil {
			s.gens = append(s.gens, it.gen)
		} else {
			s.parts = append(s.parts, *it.part)
		}
	}
	return out
}

// recordsBySlice passes on q's records slice by slice, newest first: one
// query each, the next one running while the records of the one before are
// read. A single query sorts every record before it returns the first, so
// DuckDB worked while the reader waited, then the reader worked while
// DuckDB waited; sorted a week at a time, an export also never needs to
// hold months of raw records in DuckDB's memory at once. Each slice's query
// is bounded to the slice's times, so a late record reaching the head
// meanwhile cannot come out of order.
func (db *DB) recordsBySlice(ctx context.Context, tenant string, q Query, slices []timeSlice, cols string,
	scan func(*sql.Rows) (*audit.Record, error), fn func(*audit.Record) error) error {
	ctx, cancel := context.WithCancel(ctx)
	type result struct {
		rows *sql.Rows
		err  error
	}
	results := make(chan result) // unbuffered: one slice's query runs ahead
	go func() {
		defer close(results)
		for _, s := range slices {
			sq := q
			if sq.From.IsZero() || sq.From.Before(s.oldest) {
				sq.From = s.oldest
			}
			if to := s.newest.Add(time.Microsecond); sq.To.IsZero() || to.Before(sq.To) {
				sq.To = to
			}
			rows, err := db.queryRecords(ctx, sq, db.sourcesOf(tenant, sq, s.gens, s.parts), cols)
			select {
			case results <- result{rows, err}:
			case <-ctx.Done():
				if rows != nil {
					rows.Close()
				}
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		for r := range results {
			if r.rows != nil {
				r.rows.Close()
			}
		}
	}()
	for r := range results {
		if r.err != nil {
			return r.err
		}
		if err := each(r.rows, scan, fn); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// each passes on the records of rows and closes them.
func each(rows *sql.Rows, scan func(*sql.Rows) (*audit.Record, error), fn func(*audit.Record) error) error {
	defer rows.Close()
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return fmt.Errorf("store: read record: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Count implements Store.
func (db *DB) Count(ctx context.Context, tenant string, q Query) (int64, error) {
	v := db.acquire()
	defer db.release(v)
	srcs := db.sources(v, tenant, q)
	if len(srcs) == 0 {
		return 0, nil
	}
	var n int64
	stmt, args := db.union(srcs, "1 AS x", q)
	err := db.sql.QueryRowContext(ctx, "SELECT count(*) FROM ("+stmt+")", args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count records: %w", err)
	}
	return n, nil
}

// Bucket is one interval of a histogram: records with CreationTime in
// [Start, Start+interval).
type Bucket struct {
	Start time.Time `json:"start"`
	Count int64     `json:"count"`
}

// Histogram counts the tenant's records matching q per interval of
// CreationTime, aligned to the Unix epoch (so to whole hours and UTC days).
// Empty intervals are left out.
func (db *DB) Histogram(ctx context.Context, tenant string, q Query, interval time.Duration) ([]Bucket, error) {
	if interval < time.Second {
		return nil, fmt.Errorf("store: histogram interval %s is under a second", interval)
	}
	v := db.acquire()
	defer db.release(v)
	srcs := db.sources(v, tenant, q)
	if len(srcs) == 0 {
		return nil, nil
	}
	stmt, args := db.union(srcs, "epoch_us(creation_time) AS us", q)
	step := interval.Microseconds()
	rows, err := db.sql.QueryContext(ctx, fmt.Sprintf(
		"SELECT (us // %d) * %d AS b, count(*) FROM (%s) GROUP BY b ORDER BY b", step, step, stmt), args...)
	if err != nil {
		return nil, fmt.Errorf("store: histogram: %w", err)
	}
	defer rows.Close()
	var out []Bucket
	for rows.Next() {
		var us, n int64
		if err := rows.Scan(&us, &n); err != nil {
			return nil, fmt.Errorf("store: histogram: %w", err)
		}
		out = append(out, Bucket{Start: time.UnixMicro(us).UTC(), Count: n})
	}
	return out, rows.Err()
}

// stringBytes returns the bytes of s without copying them. The driver
// hands each raw record over as a fresh string; copying it again into a
// []byte was a tenth of an export's CPU. Records are never modified after
// reading, which is what makes sharing the string's bytes safe.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func scanSlim(rows *sql.Rows) (*audit.Record, error) {
	var (
		r                           audit.Record
		recordType                  sql.NullInt32
		operation, userID, workload sql.NullString
		raw                         string
	)
	if err := rows.Scan(&r.Tenant, &r.ID, &r.CreationTime, &recordType, &operation, &userID, &workload, &raw); err != nil {
		return nil, err
	}
	r.Raw = stringBytes(raw)
	r.CreationTime = r.CreationTime.UTC()
	r.RecordType = nullInt(recordType)
	r.Operation, r.UserID, r.Workload = operation.String, userID.String, workload.String
	return &r, nil
}

func scanRecord(rows *sql.Rows) (*audit.Record, error) {
	var (
		r                                      audit.Record
		ns                                     [20]sql.NullString
		issued                                 sql.NullTime
		recordType, userType, scope, logonType sql.NullInt32
		opCount                                sql.NullInt64
		throttled, external                    sql.NullBool
		received                               sql.NullTime
		raw                                    string
	)
	err := rows.Scan(&r.Tenant, &r.ID, &r.CreationTime, &recordType, &ns[0], &ns[1], &ns[2], &userType,
		&ns[3], &ns[4], &ns[5], &ns[6], &ns[7], &scope, &ns[8], &ns[9], &ns[10], &ns[11], &ns[12],
		&logonType, &ns[13], &ns[14], &ns[15], &throttled, &opCount, &ns[16], &external, &ns[17],
		&received, &ns[18], &ns[19], &issued, &raw)
	if err != nil {
		return nil, err
	}
	r.CreationTime = r.CreationTime.UTC()
	r.Workload, r.Operation, r.OrganizationID = ns[0].String, ns[1].String, ns[2].String
	r.UserKey, r.UserID, r.ClientIP, r.ObjectID, r.ResultStatus = ns[3].String, ns[4].String, ns[5].String, ns[6].String, ns[7].String
	r.AppID, r.ClientAppID, r.SessionID, r.UniqueTokenID, r.ClientInfoString = ns[8].String, ns[9].String, ns[10].String, ns[11].String, ns[12].String
	r.MailboxOwnerUPN, r.MailboxGUID, r.MailAccessType = ns[13].String, ns[14].String, ns[15].String
	if ns[16].String != "" {
		r.InternetMessageIDs = strings.Split(ns[16].String, " ")
	}
	r.Source = ns[17].String
	r.RecordType, r.UserType, r.Scope, r.LogonType = nullInt(recordType), nullInt(userType), nullInt(scope), nullInt(logonType)
	r.OperationCount = opCount.Int64
	r.IsThrottled, r.ExternalAccess = throttled.Bool, external.Bool
	if received.Valid {
		r.Received = received.Time.UTC()
	}
	r.ClientAppName, r.CorrelationID = ns[18].String, ns[19].String
	if issued.Valid {
		r.IssuedAtTime = issued.Time.UTC()
	}
	r.Raw = stringBytes(raw)
	return &r, nil
}

func nullInt(v sql.NullInt32) int32 {
	if !v.Valid {
		return audit.Absent
	}
	return v.Int32
}

// Stats describe the store for metrics and operators.
type Stats struct {
	HeadRecords     int64
	HeadBytes       int64 // raw bytes in the head
	SealedParts     int
	SealedRecords   int64
	SealedBytes     int64 // bytes of Parquet on disk
	WALBytes        int64
	DedupPartitions int
	DedupIDs        int
	QueuedBytes     int64
	Committed       uint64
	SealedThrough   uint64
	SealFailures    int64
	FeedTailFrames  uint64 // frames feeds were given from the in-memory tail of recent commits
	FeedLogFrames   uint64 // ... and read back from the write-ahead log
}

// Stats returns a snapshot of the store's size.
func (db *DB) Stats() Stats {
	v := db.acquire()
	defer db.release(v)
	var s Stats
	for _, g := range v.gens {
		s.HeadRecords += g.rows.Load()
		s.HeadBytes += g.bytes.Load()
	}
	s.SealedParts = len(v.cat.Parts)
	for _, p := range v.cat.Parts {
		s.SealedRecords += p.Rows
		s.SealedBytes += p.Bytes
	}
	s.WALBytes = db.wal.Size()
	s.DedupPartitions, s.DedupIDs = db.dedup.size()
	s.QueuedBytes = db.queued.Load()
	s.Committed = db.committed.Load()
	s.SealedThrough = v.cat.SealedThrough
	s.SealFailures = db.sealErrs.Load()
	s.FeedTailFrames, s.FeedLogFrames = db.tail.served.Load(), db.tail.replayed.Load()
	return s
}

// Parts returns the catalog's sealed parts, for inspection and tests.
func (db *DB) Parts() []Part {
	v := db.acquire()
	defer db.release(v)
	return append([]Part(nil), v.cat.Parts...)
}

// Arrival counts one source's records whose CreationTime falls in one hour,
// and how many of them were received late.
type Arrival struct {
	Source  string
	Hour    time.Time
	Records int64
	Late    int64 // received more than the source's lateness after the hour ended
}

// Arrivals counts the tenant's records with CreationTime in [from, to) per
// source and UTC hour. Lateness is how long after an hour's end a source's
// records still count as on time: lateness[source], or def for a source
// not named. Counting from the stored records themselves, rather than from
// counters kept beside them, keeps the completeness log true across crashes:
// a record is counted exactly when it is stored.
func (db *DB) Arrivals(ctx context.Context, tenant string, from, to time.Time, lateness map[string]time.Duration, def time.Duration) ([]Arrival, error) {
	v := db.acquire()
	defer db.release(v)
	q := Query{From: from, To: to}
	srcs := db.sources(v, tenant, q)
	if len(srcs) == 0 {
		return nil, nil
	}
	stmt, args := db.union(srcs, "source, epoch_us(creation_time) // 3600000000 AS h, epoch_us(received) AS r", q)
	// The allowance is chosen per source in SQL so one scan serves all.
	allow := fmt.Sprint(def.Microseconds())
	if len(lateness) > 0 {
		var b strings.Builder
		b.WriteString("CASE source")
		names := make([]string, 0, len(lateness))
		for s := range lateness {
			names = append(names, s)
		}
		sort.Strings(names)
		for _, s := range names {
			fmt.Fprintf(&b, " WHEN %s THEN %d", sqlString(s), lateness[s].Microseconds())
		}
		fmt.Fprintf(&b, " ELSE %d END", def.Microseconds())
		allow = b.String()
	}
	rows, err := db.sql.QueryContext(ctx, fmt.Sprintf(
		"SELECT coalesce(source, ''), h, count(*), count_if(r > (h + 1) * 3600000000 + %s) FROM (%s) GROUP BY ALL ORDER BY 1, 2",
		allow, stmt), args...)
	if err != nil {
		return nil, fmt.Errorf("store: count arrivals: %w", err)
	}
	defer rows.Close()
	var out []Arrival
	for rows.Next() {
		var a Arrival
		var h int64
		if err := rows.Scan(&a.Source, &h, &a.Records, &a.Late); err != nil {
			return nil, fmt.Errorf("store: count arrivals: %w", err)
		}
		a.Hour = time.Unix(h*3600, 0).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}
