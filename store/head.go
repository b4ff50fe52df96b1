package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/custos-audit/custos/audit"
)

// The head holds acknowledged records that are not sealed yet, in Go
// memory, grouped by generation and tenant. DuckDB reads it through the
// custos_head table function, so records are copied into DuckDB vectors
// only when a query or a seal needs them, and only the columns it needs.
// Loading them into DuckDB tables instead cost more than parsing and
// sealing together (an appender flush per group commit, a copy of every
// string into DuckDB's row groups).

// headGen is one generation of the head: records are added to the active
// generation; the seal loop freezes it (a new one becomes active), writes
// it to Parquet and drops it once no reader holds a view that includes it.
type headGen struct {
	id      int
	mu      sync.Mutex
	tenants map[string]*headTenant
	maxSeq  atomic.Uint64
	rows    atomic.Int64
	bytes   atomic.Int64
	first   atomic.Int64 // unix nanos when the first record was added
}

// headTenant is one tenant's records in a generation. batches only grow,
// and a batch never changes once added, so a reader may keep the slice it
// saw under the lock and scan it without one.
type headTenant struct {
	batches [][]*audit.Record
	rows    int
	days    map[string]int // UTC day → records
	minTime time.Time      // the oldest and newest CreationTime
	maxTime time.Time
}

func newHeadGen(id int) *headGen {
	return &headGen{id: id, tenants: map[string]*headTenant{}}
}

// add appends one committed WAL frame's records.
func (g *headGen) add(seq uint64, recs []*audit.Record) {
	if len(recs) == 0 {
		return
	}
	// Group by tenant; batches are almost always single-tenant.
	byTenant := map[string][]*audit.Record{}
	var order []string
	var bytes int64
	for _, r := range recs {
		if _, ok := byTenant[r.Tenant]; !ok {
			order = append(order, r.Tenant)
		}
		byTenant[r.Tenant] = append(byTenant[r.Tenant], r)
		bytes += int64(len(r.Raw))
	}
	g.mu.Lock()
	for _, t := range order {
		ht := g.tenants[t]
		if ht == nil {
			ht = &headTenant{days: map[string]int{}}
			g.tenants[t] = ht
		}
		b := byTenant[t]
		ht.batches = append(ht.batches, b)
		ht.rows += len(b)
		for _, r := range b {
			ht.days[r.CreationTime.UTC().Format(dayLayout)]++
			if ht.minTime.IsZero() || r.CreationTime.Before(ht.minTime) {
				ht.minTime = r.CreationTime
			}
			if r.CreationTime.After(ht.maxTime) {
				ht.maxTime = r.CreationTime
			}
		}
	}
	g.mu.Unlock()
	g.first.CompareAndSwap(0, time.Now().UnixNano())
	g.rows.Add(int64(len(recs)))
	g.bytes.Add(bytes)
	g.maxSeq.Store(seq)
}

// snapshot returns the tenant's batches and row count as of now.
func (g *headGen) snapshot(tenant string) ([][]*audit.Record, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ht := g.tenants[tenant]
	if ht == nil {
		return nil, 0
	}
	return ht.batches[:len(ht.batches):len(ht.batches)], ht.rows
}

// span returns the oldest and newest CreationTime of the tenant's records
// as of now; ok is false when it has none.
func (g *headGen) span(tenant string) (oldest, newest time.Time, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ht := g.tenants[tenant]
	if ht == nil || ht.rows == 0 {
		return time.Time{}, time.Time{}, false
	}
	return ht.minTime, ht.maxTime, true
}

func (g *headGen) has(tenant string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tenants[tenant] != nil
}

// tenantDays lists, per tenant, the UTC days the generation holds.
func (g *headGen) tenantDays() map[string][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string][]string, len(g.tenants))
	for t, ht := range g.tenants {
		for d := range ht.days {
			out[t] = append(out[t], d)
		}
	}
	return out
}

// headRegistry maps generation ids to generations for the table function,
// which DuckDB binds by id. A generation is registered while any view may
// name it.
type headRegistry struct {
	mu      sync.Mutex
	gens    map[int]*headGen
	runs    map[int64][]*audit.Record // sorted runs being sealed, by id
	nextRun int64
}

// putRun registers records for custos_run and returns their id.
func (h *headRegistry) putRun(recs []*audit.Record) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextRun++
	h.runs[h.nextRun] = recs
	return h.nextRun
}

func (h *headRegistry) dropRun(id int64) {
	h.mu.Lock()
	delete(h.runs, id)
	h.mu.Unlock()
}

func (h *headRegistry) run(id int64) ([]*audit.Record, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.runs[id]
	return r, ok
}

func (h *headRegistry) put(g *headGen) {
	h.mu.Lock()
	h.gens[g.id] = g
	h.mu.Unlock()
}

func (h *headRegistry) drop(id int) {
	h.mu.Lock()
	delete(h.gens, id)
	h.mu.Unlock()
}

func (h *headRegistry) get(id int) *headGen {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gens[id]
}

// headSQL names the relation of one tenant's records in generation g with
// CreationTime in [from, to) (zero: unbounded). The tenant is a bound
// argument of the table function: the scan can only ever return that
// tenant's records.
func headSQL(g *headGen, tenant string, from, to time.Time) string {
	lo, hi := int64(minMicros), int64(maxMicros)
	if !from.IsZero() {
		lo = from.UnixMicro()
	}
	if !to.IsZero() {
		hi = to.UnixMicro()
	}
	return fmt.Sprintf("custos_head(%d, %s, %d, %d)", g.id, sqlString(tenant), lo, hi)
}

const (
	minMicros = -1 << 62
	maxMicros = 1<<62 - 1
)

// registerHead installs the table functions that read the head:
// custos_head(generation, tenant, from_us, to_us) for queries and
// custos_run(id) for a sorted run being sealed.
func (db *DB) registerHead(ctx context.Context) error {
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: connection for head scan: %w", err)
	}
	defer conn.Close()
	bigint, err := duckdb.NewTypeInfo(duckdb.TYPE_BIGINT)
	if err != nil {
		return err
	}
	varchar, err := duckdb.NewTypeInfo(duckdb.TYPE_VARCHAR)
	if err != nil {
		return err
	}
	infos, err := headColumnInfos()
	if err != nil {
		return err
	}
	fn := duckdb.ChunkTableFunction{
		Config: duckdb.TableFunctionConfig{Arguments: []duckdb.TypeInfo{bigint, varchar, bigint, bigint}},
		BindArguments: func(_ map[string]any, args ...any) (duckdb.ChunkTableSource, error) {
			id, tenant, lo, hi := args[0].(int64), args[1].(string), args[2].(int64), args[3].(int64)
			g := db.heads.get(int(id))
			if g == nil {
				return nil, fmt.Errorf("head generation %d is gone", id)
			}
			batches, rows := g.snapshot(tenant)
			return &headScan{infos: infos, batches: batches, rows: rows, lo: lo, hi: hi}, nil
		},
	}
	if err := duckdb.RegisterTableUDF(conn, "custos_head", fn); err != nil {
		return fmt.Errorf("store: register head scan: %w", err)
	}
	run := duckdb.ChunkTableFunction{
		Config: duckdb.TableFunctionConfig{Arguments: []duckdb.TypeInfo{bigint}},
		BindArguments: func(_ map[string]any, args ...any) (duckdb.ChunkTableSource, error) {
			recs, ok := db.heads.run(args[0].(int64))
			if !ok {
				return nil, fmt.Errorf("seal run %d is gone", args[0])
			}
			return &headScan{infos: infos, batches: [][]*audit.Record{recs}, rows: len(recs), lo: minMicros, hi: maxMicros}, nil
		},
	}
	if err := duckdb.RegisterTableUDF(conn, "custos_run", run); err != nil {
		return fmt.Errorf("store: register seal scan: %w", err)
	}
	return nil
}

func headColumnInfos() ([]duckdb.ColumnInfo, error) {
	infos := make([]duckdb.ColumnInfo, len(columns))
	for i, c := range columns {
		var t duckdb.Type
		switch c.typ {
		case "VARCHAR":
			t = duckdb.TYPE_VARCHAR
		case "INTEGER":
			t = duckdb.TYPE_INTEGER
		case "BIGINT":
			t = duckdb.TYPE_BIGINT
		case "BOOLEAN":
			t = duckdb.TYPE_BOOLEAN
		case "TIMESTAMP":
			t = duckdb.TYPE_TIMESTAMP
		default:
			return nil, fmt.Errorf("store: column %s has unsupported type %s", c.name, c.typ)
		}
		ti, err := duckdb.NewTypeInfo(t)
		if err != nil {
			return nil, err
		}
		infos[i] = duckdb.ColumnInfo{Name: c.name, T: ti}
	}
	return infos, nil
}

// headScan feeds one tenant's head records to DuckDB, a chunk at a time.
type headScan struct {
	infos   []duckdb.ColumnInfo
	batches [][]*audit.Record
	rows    int
	lo, hi  int64 // CreationTime bounds in unix microseconds, [lo, hi)
	proj    []bool
	bi, ri  int
}

// sortedRecords returns the records of batches with CreationTime in
// [lo, hi) (unix microseconds) in partOrder: user_id (empty last),
// creation_time, id. Sorting pointers in Go costs far less than DuckDB
// sorting the wide rows.
func sortedRecords(batches [][]*audit.Record, lo, hi int64) []*audit.Record {
	// Sorting keys next to the pointer saves a pointer chase per compare.
	type key struct {
		user string
		at   int64
		id   string
		r    *audit.Record
	}
	var keys []key
	for _, b := range batches {
		for _, r := range b {
			if us := r.CreationTime.UnixMicro(); us >= lo && us < hi {
				keys = append(keys, key{r.UserID, r.CreationTime.UnixNano(), r.ID, r})
			}
		}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if (a.user == "") != (b.user == "") {
			if a.user == "" {
				return 1
			}
			return -1
		}
		if c := strings.Compare(a.user, b.user); c != 0 {
			return c
		}
		if a.at != b.at {
			if a.at < b.at {
				return -1
			}
			return 1
		}
		return strings.Compare(a.id, b.id)
	})
	recs := make([]*audit.Record, len(keys))
	for i, k := range keys {
		recs[i] = k.r
	}
	return recs
}

// splitRuns cuts sorted records into at most n runs of at least min
// records, each ending where the user changes, so that runs can be sealed
// in parallel into parts whose user ranges do not overlap.
func splitRuns(recs []*audit.Record, n, min int) [][]*audit.Record {
	if n > len(recs)/min {
		n = len(recs) / min
	}
	if n <= 1 {
		return [][]*audit.Record{recs}
	}
	var runs [][]*audit.Record
	size := len(recs) / n
	for len(recs) > 0 {
		end := size
		if len(runs) == n-1 || end >= len(recs) {
			end = len(recs)
		}
		for end < len(recs) && recs[end].UserID == recs[end-1].UserID {
			end++
		}
		runs = append(runs, recs[:end])
		recs = recs[end:]
	}
	return runs
}

func (s *headScan) ColumnInfos() []duckdb.ColumnInfo { return s.infos }

func (s *headScan) Cardinality() *duckdb.CardinalityInfo {
	return &duckdb.CardinalityInfo{Cardinality: uint(s.rows)}
}

func (s *headScan) Init() {}

func (s *headScan) FillChunk(c duckdb.DataChunk) error {
	if s.proj == nil {
		// Columns the query does not read are not in the chunk; writing
		// them would only cost an error value per cell.
		s.proj = make([]bool, len(columns))
		for i := range columns {
			_, err := c.GetVector(i)
			s.proj[i] = err == nil
		}
	}
	n, capacity := 0, duckdb.GetDataChunkCapacity()
	for n < capacity && s.bi < len(s.batches) {
		b := s.batches[s.bi]
		if s.ri >= len(b) {
			s.bi, s.ri = s.bi+1, 0
			continue
		}
		r := b[s.ri]
		s.ri++
		if us := r.CreationTime.UnixMicro(); us < s.lo || us >= s.hi {
			continue
		}
		if err := s.put(c, n, r); err != nil {
			return err
		}
		n++
	}
	return c.SetSize(n)
}

func (s *headScan) put(c duckdb.DataChunk, row int, r *audit.Record) error {
	var err error
	for i, col := range columns {
		if !s.proj[i] {
			continue
		}
		switch {
		case col.str != nil:
			if v := col.str(r); v == "" {
				err = c.SetValue(i, row, nil)
			} else {
				err = duckdb.SetChunkValue(c, i, row, v)
			}
		case col.bytes != nil:
			err = duckdb.SetChunkValue(c, i, row, col.bytes(r))
		case col.i32 != nil:
			if v := col.i32(r); v == audit.Absent {
				err = c.SetValue(i, row, nil)
			} else {
				err = duckdb.SetChunkValue(c, i, row, v)
			}
		case col.i64 != nil:
			err = duckdb.SetChunkValue(c, i, row, col.i64(r))
		case col.flag != nil:
			err = duckdb.SetChunkValue(c, i, row, col.flag(r))
		case col.time != nil:
			if v := col.time(r); v.IsZero() {
				err = c.SetValue(i, row, nil)
			} else {
				err = duckdb.SetChunkValue(c, i, row, v.UTC())
			}
		}
		if err != nil {
			return fmt.Errorf("head column %s of record %s: %w", col.name, r.ID, err)
		}
	}
	return nil
}
