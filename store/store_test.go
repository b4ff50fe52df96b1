package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
)

var ctx = context.Background()

func testOptions() Options {
	return Options{MemoryLimit: "1GB", Threads: 2, SealInterval: time.Hour, MinFreeBytes: -1}
}

func openTest(t *testing.T, dir string, opts Options) *DB {
	t.Helper()
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return db
}

// mkrec builds a record whose raw JSON carries its identity, so a test can
// check raw bytes and columns against each other.
func mkrec(tenant, id string, at time.Time, user string) audit.Record {
	raw := fmt.Sprintf(`{"Id":%q,"CreationTime":%q,"Operation":"MailItemsAccessed","UserId":%q,"RecordType":50}`,
		id, at.UTC().Format("2006-01-02T15:04:05"), user)
	return audit.Record{
		Tenant: tenant, ID: id, CreationTime: at.UTC(), RecordType: 50, Operation: "MailItemsAccessed",
		UserID: user, UserType: audit.Absent, Scope: audit.Absent, LogonType: 0, ClientIP: "10.0.0.1",
		InternetMessageIDs: []string{"<a@x>", "<b@y>"}, OperationCount: 2, Raw: []byte(raw),
		Received: time.Unix(1700000000, 0).UTC(), Source: "test",
	}
}

func mkrecs(tenant string, n int, start time.Time, step time.Duration) []audit.Record {
	recs := make([]audit.Record, n)
	for i := range recs {
		recs[i] = mkrec(tenant, fmt.Sprintf("%s-%06d", tenant, i), start.Add(time.Duration(i)*step), fmt.Sprintf("user%d@%s.example", i%7, tenant))
	}
	return recs
}

// contents returns "id|raw" of every record of tenant, sorted.
func contents(t *testing.T, db *DB, tenant string) []string {
	t.Helper()
	var out []string
	err := db.Records(ctx, tenant, Query{}, func(r *audit.Record) error {
		out = append(out, r.ID+"|"+string(r.Raw))
		return nil
	})
	if err != nil {
		t.Fatalf("records: %v", err)
	}
	slices.Sort(out)
	return out
}

func expected(recs ...[]audit.Record) []string {
	var out []string
	for _, rs := range recs {
		for _, r := range rs {
			out = append(out, r.ID+"|"+string(r.Raw))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func mustAppend(t *testing.T, db *DB, recs []audit.Record) (stored, dups int) {
	t.Helper()
	dup, err := db.Append(ctx, recs)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	for _, d := range dup {
		if d {
			dups++
		} else {
			stored++
		}
	}
	return stored, dups
}

func TestAppendDedupSealRestart(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, testOptions())
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	recs := mkrecs("acme", 500, day, 7*time.Minute) // spans ~2.4 days

	if s, d := mustAppend(t, db, recs); s != 500 || d != 0 {
		t.Fatalf("first append: stored %d dup %d, want 500 0", s, d)
	}
	// Same ids again, in another order, mixed with 10 new ones.
	again := slices.Clone(recs)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(again), func(i, j int) { again[i], again[j] = again[j], again[i] })
	extra := mkrecs("acme", 510, day, 7*time.Minute)[500:]
	if s, d := mustAppend(t, db, append(again, extra...)); s != 10 || d != 500 {
		t.Fatalf("second append: stored %d dup %d, want 10 500", s, d)
	}
	// Duplicates inside one batch count once.
	inBatch := []audit.Record{mkrec("acme", "twin", day, "u"), mkrec("acme", "twin", day, "u")}
	if s, d := mustAppend(t, db, inBatch); s != 1 || d != 1 {
		t.Fatalf("in-batch twin: stored %d dup %d, want 1 1", s, d)
	}
	want := expected(recs, extra, inBatch)
	if got := contents(t, db, "acme"); !slices.Equal(got, want) {
		t.Fatalf("head contents: %d records, want %d", len(got), len(want))
	}

	if err := db.Seal(ctx); err != nil {
		t.Fatalf("seal: %v", err)
	}
	if got := contents(t, db, "acme"); !slices.Equal(got, want) {
		t.Fatalf("after seal: %d records, want %d", len(got), len(want))
	}
	parts := db.Parts()
	if len(parts) != 3 { // three UTC days
		t.Fatalf("parts after seal: %d, want 3: %+v", len(parts), parts)
	}
	var rows int64
	for _, p := range parts {
		rows += p.Rows
		if p.SHA256 == "" || p.Bytes == 0 || p.MinTime.After(p.MaxTime) {
			t.Errorf("part %s has incomplete catalog entry: %+v", p.Path, p)
		}
		if p.MinTime.Format(dayLayout) != p.Day || p.MaxTime.Format(dayLayout) != p.Day {
			t.Errorf("part %s of day %s holds %s..%s", p.Path, p.Day, p.MinTime, p.MaxTime)
		}
	}
	if rows != int64(len(want)) {
		t.Fatalf("catalog rows %d, want %d", rows, len(want))
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	// After a restart the dedup index is rebuilt from the sealed files.
	db = openTest(t, dir, testOptions())
	defer db.Close()
	if got := contents(t, db, "acme"); !slices.Equal(got, want) {
		t.Fatalf("after restart: %d records, want %d", len(got), len(want))
	}
	if s, d := mustAppend(t, db, recs[:50]); s != 0 || d != 50 {
		t.Fatalf("re-append after restart: stored %d dup %d, want 0 50", s, d)
	}
	// Columns survive the round trip through Parquet.
	var r0 *audit.Record
	db.Records(ctx, "acme", Query{From: recs[3].CreationTime, To: recs[3].CreationTime.Add(time.Second)}, func(r *audit.Record) error {
		r0 = r
		return nil
	})
	if r0 == nil || r0.ID != recs[3].ID || r0.UserID != recs[3].UserID || r0.RecordType != 50 ||
		r0.UserType != audit.Absent || r0.LogonType != 0 || !slices.Equal(r0.InternetMessageIDs, recs[3].InternetMessageIDs) ||
		r0.OperationCount != 2 || r0.ClientIP != "10.0.0.1" || !r0.Received.Equal(recs[3].Received) || r0.Source != "test" {
		t.Fatalf("round-tripped record differs: %+v", r0)
	}
}

func TestLateRecordsAndCompaction(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.MaxDayParts = 100 // seals must not merge; the test's compactions do
	db := openTest(t, dir, opts)
	sat := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC) // week of Monday 2026-01-05
	tue := time.Date(2026, 1, 6, 0, 0, 0, 0, time.UTC)
	var all [][]audit.Record
	add := func(name string, at time.Time) {
		recs := mkrecs("acme", 40, at, time.Minute)
		for j := range recs {
			recs[j].ID = fmt.Sprintf("%s-%d", name, j)
		}
		mustAppend(t, db, recs)
		all = append(all, recs)
		if err := db.Seal(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Five seals add records to Saturday, two to Tuesday.
	for i := range 5 {
		add(fmt.Sprintf("sat-%d", i), sat.Add(time.Duration(i)*time.Hour))
	}
	add("tue-0", tue)
	add("tue-1", tue.Add(time.Hour))
	if n := len(db.Parts()); n != 7 {
		t.Fatalf("parts before compaction: %d, want 7", n)
	}
	want := expected(all...)
	compact := func(now time.Time) []Part {
		t.Helper()
		if err := db.onSealLoop(ctx, func(ctx context.Context) error { return db.compact(ctx, now) }); err != nil {
			t.Fatalf("compact: %v", err)
		}
		if got := contents(t, db, "acme"); !slices.Equal(got, want) {
			t.Fatalf("compaction changed contents")
		}
		for _, p := range db.Parts() {
			if n := misorderedRows(t, db, p); n != 0 {
				t.Fatalf("part %s: %d rows out of order", p.Path, n)
			}
		}
		return db.Parts()
	}
	// On the week's Sunday it is not over: Saturday, with more than
	// MaxDayParts parts, becomes one day part; Tuesday waits.
	db.onSealLoop(ctx, func(context.Context) error { db.opts.MaxDayParts = 3; return nil }) // the loop reads it
	parts := compact(time.Date(2026, 1, 11, 12, 0, 0, 0, time.UTC))
	if len(parts) != 3 || parts[0].Day != "2026-01-06" || parts[2].Day != "2026-01-10" || parts[2].Level != 1 || parts[2].Rows != 200 {
		t.Fatalf("during the week: %+v", parts)
	}
	// Once the week is over and quiet, it becomes one block.
	later := time.Now().Add(opts.CompactAfter + time.Hour)
	parts = compact(later)
	if len(parts) != 1 || parts[0].Level != 2 || parts[0].Rows != 280 || parts[0].Day != "2026-01-05" || parts[0].LastDay != "2026-01-10" {
		t.Fatalf("after the week: %+v", parts)
	}
	// A late record of the week joins the block at the next compaction.
	add("wed-late", time.Date(2026, 1, 7, 9, 0, 0, 0, time.UTC))
	want = expected(all...)
	parts = compact(later.Add(opts.CompactAfter + time.Hour))
	if len(parts) != 1 || parts[0].Level != 2 || parts[0].Rows != 320 {
		t.Fatalf("after a late record: %+v", parts)
	}
	// Replaced files are gone once no reader holds them.
	files, _ := filepath.Glob(filepath.Join(dir, "blocks", "acme", "*", "*.parquet"))
	if len(files) != 1 {
		t.Fatalf("files on disk after compaction: %v", files)
	}
	db.Close()
	db = openTest(t, dir, opts)
	defer db.Close()
	if got := contents(t, db, "acme"); !slices.Equal(got, want) {
		t.Fatalf("after restart: contents differ")
	}
	// Late duplicates of days inside the block are still recognised.
	if s, d := mustAppend(t, db, append(slices.Clone(all[2][:5]), all[5][:3]...)); s != 0 || d != 8 {
		t.Fatalf("late duplicates: stored %d dup %d", s, d)
	}
}

func TestTenantIsolation(t *testing.T) {
	db := openTest(t, t.TempDir(), testOptions())
	defer db.Close()
	day := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	a := mkrecs("alpha", 30, day, time.Minute)
	b := mkrecs("beta", 20, day, time.Minute)
	// The same Id in two tenants is two records.
	b[0].ID = a[0].ID
	b[0].Raw = []byte(strings.Replace(string(b[0].Raw), "beta-000000", a[0].ID, 1))
	mustAppend(t, db, a)
	if s, _ := mustAppend(t, db, b); s != 20 {
		t.Fatalf("tenant beta stored %d of 20", s)
	}
	check := func(stage string) {
		if got := contents(t, db, "alpha"); !slices.Equal(got, expected(a)) {
			t.Fatalf("%s: alpha sees %d records", stage, len(got))
		}
		if got := contents(t, db, "beta"); !slices.Equal(got, expected(b)) {
			t.Fatalf("%s: beta sees %d records", stage, len(got))
		}
		if n, _ := db.Count(ctx, "gamma", Query{}); n != 0 {
			t.Fatalf("%s: unknown tenant has %d records", stage, n)
		}
	}
	check("head")
	db.Seal(ctx)
	check("sealed")
}

func TestQueryTimeRangeAcrossHeadAndParts(t *testing.T) {
	db := openTest(t, t.TempDir(), testOptions())
	defer db.Close()
	day := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	old := mkrecs("acme", 100, day, time.Hour)
	mustAppend(t, db, old)
	db.Seal(ctx)
	fresh := mkrecs("acme", 200, day, time.Hour)[100:]
	mustAppend(t, db, fresh)
	from, to := day.Add(90*time.Hour), day.Add(110*time.Hour)
	n, err := db.Count(ctx, "acme", Query{From: from, To: to})
	if err != nil || n != 20 {
		t.Fatalf("count across head and parts: %d, %v; want 20", n, err)
	}
	var times []time.Time
	db.Records(ctx, "acme", Query{From: from, To: to, Limit: 5}, func(r *audit.Record) error {
		times = append(times, r.CreationTime)
		return nil
	})
	if len(times) != 5 || !times[0].Equal(day.Add(109*time.Hour)) || !slices.IsSortedFunc(times, func(a, b time.Time) int { return b.Compare(a) }) {
		t.Fatalf("newest-first page: %v", times)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	in := mkrecs("acme", 3, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Second)
	in[1].RecordType = -1
	in[2].UserType = audit.Absent
	in[2].InternetMessageIDs = nil
	in[0].ClientAppName, in[0].CorrelationID = "Microsoft Office", "0c2f3b8e-1111-2222-3333-444455556666"
	in[0].IssuedAtTime = time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	ptrs := []*audit.Record{&in[0], &in[1], &in[2]}
	p := encodeRecords(nil, ptrs)
	out, err := decodeRecords(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if fmt.Sprintf("%+v", in[i]) != fmt.Sprintf("%+v", out[i]) {
			t.Fatalf("record %d:\n in %+v\nout %+v", i, in[i], out[i])
		}
	}
	// A version 1 payload (before the AppAccessContext fields) still reads:
	// it is a version 2 payload of one such record without their three
	// empty values, which sit right before the raw length.
	one := encodeRecords(nil, ptrs[1:2])
	tail := len(in[1].Raw) + len(binary.AppendUvarint(nil, uint64(len(in[1].Raw))))
	v1 := append(append([]byte{payloadV1}, one[1:len(one)-tail-3]...), one[len(one)-tail:]...)
	if old, err := decodeRecords(v1); err != nil || len(old) != 1 || fmt.Sprintf("%+v", old[0]) != fmt.Sprintf("%+v", in[1]) {
		t.Fatalf("version 1 payload: %v, %+v", err, old)
	}
	for cut := 0; cut < len(p); cut += 7 {
		if _, err := decodeRecords(p[:cut]); err == nil {
			t.Fatalf("truncated payload of %d/%d bytes decoded without error", cut, len(p))
		}
	}
}

func TestBackpressure(t *testing.T) {
	opts := testOptions()
	opts.MaxQueueBytes = 1 // any second batch in flight overflows
	db := openTest(t, t.TempDir(), opts)
	defer db.Close()
	db.queued.Add(10) // simulate a batch waiting for the committer
	_, err := db.Append(ctx, mkrecs("acme", 1, time.Now(), 0))
	if err != ErrBusy {
		t.Fatalf("append with full queue: %v, want ErrBusy", err)
	}
	db.queued.Add(-10)
	if _, err := db.Append(ctx, mkrecs("acme", 1, time.Now(), 0)); err != nil {
		t.Fatalf("append after queue drained: %v", err)
	}
}

// TestKill9 runs a writer in a child process, kills it with SIGKILL at
// random moments (during appends, seals and compactions), and checks that
// every acknowledged record is present exactly once after each restart.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 rounds take a while")
	}
	dir := t.TempDir()
	acked := map[string]bool{}
	rng := rand.New(rand.NewPCG(7, 7))
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Writer$")
		cmd.Env = append(os.Environ(), "CUSTOS_KILL9_DIR="+dir, "CUSTOS_KILL9_ROUND="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		deadline := time.After(time.Duration(800+rng.IntN(1500)) * time.Millisecond)
		ready := false
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				if l == "ready" {
					ready = true
					continue
				}
				if id, ok := strings.CutPrefix(l, "ack "); ok {
					for _, x := range strings.Split(id, ",") {
						acked[x] = true
					}
				}
			case <-deadline:
				if !ready { // still opening (replaying); give it time
					deadline = time.After(500 * time.Millisecond)
					continue
				}
				cmd.Process.Signal(syscall.SIGKILL)
				for l := range lines { // drain what was printed before death
					if id, ok := strings.CutPrefix(l, "ack "); ok {
						for _, x := range strings.Split(id, ",") {
							acked[x] = true
						}
					}
				}
				break read
			}
		}
		cmd.Wait()
	}
	db := openTest(t, dir, testOptions())
	defer db.Close()
	seen := map[string]int{}
	db.Records(ctx, "acme", Query{}, func(r *audit.Record) error {
		seen[r.ID]++
		if !strings.Contains(string(r.Raw), r.ID) {
			t.Errorf("record %s has wrong raw %s", r.ID, r.Raw)
		}
		return nil
	})
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged record %s present %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("record %s present %d times", id, n)
		}
	}
	if len(acked) < 1000 {
		t.Fatalf("only %d records acknowledged over all rounds; the test did not exercise much", len(acked))
	}
	parts := db.Parts()
	compacted := 0
	for _, p := range parts {
		if p.Level > 0 {
			compacted++
		}
	}
	if len(parts) < 6 || compacted == 0 {
		t.Errorf("%d parts, %d compacted: seals and compactions were not exercised", len(parts), compacted)
	}
	t.Logf("%d acknowledged, %d stored, %d parts (%d compacted)", len(acked), len(seen), len(parts), compacted)
}

// TestKill9Writer is the child of TestKill9: it appends batches forever,
// re-sending earlier batches too (duplicates), with a tiny seal threshold
// so seals and compactions are frequently in flight when it dies.
func TestKill9Writer(t *testing.T) {
	dir := os.Getenv("CUSTOS_KILL9_DIR")
	if dir == "" {
		t.Skip("child process of TestKill9")
	}
	round, _ := strconv.Atoi(os.Getenv("CUSTOS_KILL9_ROUND"))
	opts := testOptions()
	opts.SealBytes = 64 << 10
	opts.MaxDayParts = 3
	opts.Tick = 20 * time.Millisecond
	db, err := Open(dir, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	day := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for b := 0; ; b++ {
		recs := make([]audit.Record, 50)
		for i := range recs {
			// Some ids repeat across rounds and batches: duplicates must not
			// become two records even when the first copy is unsealed.
			id := fmt.Sprintf("r%d-b%d-%d", round, b, i)
			if i%10 == 0 && b > 0 {
				id = fmt.Sprintf("r%d-b%d-%d", round, b-1, i)
			}
			recs[i] = mkrec("acme", id, day.Add(time.Duration(b*50+i)*time.Second+time.Duration(round)*48*time.Hour), "u@x")
		}
		_, err := db.Append(ctx, recs)
		for errors.Is(err, ErrBusy) { // what a client does on 429
			time.Sleep(5 * time.Millisecond)
			_, err = db.Append(ctx, recs)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(1)
		}
		ids := make([]string, len(recs))
		for i, r := range recs {
			ids[i] = r.ID
		}
		fmt.Println("ack " + strings.Join(ids, ","))
	}
}

func TestDiskHeadroomRefusesWrites(t *testing.T) {
	opts := testOptions()
	opts.MinFreeBytes = 1 << 62 // more than any disk has
	db := openTest(t, t.TempDir(), opts)
	defer db.Close()
	if _, err := db.Append(ctx, mkrecs("acme", 3, time.Now(), time.Second)); err != ErrNoSpace {
		t.Fatalf("append without headroom: %v, want ErrNoSpace", err)
	}
	if db.Ready() != ErrNoSpace {
		t.Fatalf("ready: %v", db.Ready())
	}
	if n, _ := db.Count(ctx, "acme", Query{}); n != 0 {
		t.Fatalf("%d records stored without headroom", n)
	}
}

// TestHeadAndPartsReturnIdenticalRecords reads simulator records back from
// the head, from sealed parts and after a restart (WAL replay), comparing
// every field, and checks that sealed parts are in partOrder.
func TestHeadAndPartsReturnIdenticalRecords(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, testOptions())
	in := simRecords(t, 3000, 10)
	for i := range in {
		in[i].Source, in[i].Received = "sim", time.Unix(1700000000, int64(i)*1000).UTC()
	}
	mustAppend(t, db, in)
	want := map[string]string{}
	for _, r := range in {
		want[r.ID] = fmt.Sprintf("%+v", r)
	}
	check := func(stage string) {
		t.Helper()
		n := 0
		err := db.Records(ctx, "acme", Query{}, func(r *audit.Record) error {
			n++
			if got := fmt.Sprintf("%+v", *r); got != want[r.ID] {
				t.Fatalf("%s: record %s differs:\n got %s\nwant %s", stage, r.ID, got, want[r.ID])
			}
			return nil
		})
		if err != nil || n != len(in) {
			t.Fatalf("%s: %d records, %v; want %d", stage, n, err, len(in))
		}
		// A slim read carries exactly the fields it promises.
		n = 0
		err = db.Records(ctx, "acme", Query{Slim: true}, func(r *audit.Record) error {
			n++
			var w audit.Record
			for _, x := range in {
				if x.ID == r.ID {
					w = audit.Record{Tenant: x.Tenant, ID: x.ID, CreationTime: x.CreationTime, RecordType: x.RecordType,
						Operation: x.Operation, UserID: x.UserID, Workload: x.Workload, Raw: x.Raw}
				}
			}
			if got, want := fmt.Sprintf("%+v", *r), fmt.Sprintf("%+v", w); got != want {
				t.Fatalf("%s: slim record differs:\n got %s\nwant %s", stage, got, want)
			}
			return nil
		})
		if err != nil || n != len(in) {
			t.Fatalf("%s: slim: %d records, %v", stage, n, err)
		}
	}
	check("head")
	db.skipCloseSeal = true
	db.Close()
	db = openTest(t, dir, testOptions())
	defer db.Close()
	if len(db.Parts()) != 0 {
		t.Fatal("records were sealed before the restart; replay is not tested")
	}
	check("head after replay")
	db.minRun = 200 // seal each day as parallel runs
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	check("sealed")
	parts := db.Parts()
	perDay := map[string]int{}
	for _, p := range parts {
		perDay[p.Day]++
	}
	if len(perDay) < 2 || len(parts) <= len(perDay) {
		t.Fatalf("expected several days sealed as several runs each, got %d parts over %d days", len(parts), len(perDay))
	}
	for _, p := range parts {
		if n := misorderedRows(t, db, p); n != 0 {
			t.Errorf("part %s: %d rows out of user/time/id order", p.Path, n)
		}
	}
}

// misorderedRows counts the rows of part p that break partOrder.
func misorderedRows(t *testing.T, db *DB, p Part) int {
	t.Helper()
	var misordered int
	q := fmt.Sprintf(`SELECT count(*) FROM (
		SELECT user_id, creation_time, id,
		       lag(user_id) OVER () AS pu, lag(creation_time) OVER () AS pt, lag(id) OVER () AS pi
		FROM read_parquet(%s))
		WHERE pi IS NOT NULL AND NOT (
		  (pu IS NOT NULL AND user_id IS NULL) OR pu < user_id OR
		  (pu IS NOT DISTINCT FROM user_id AND (pt < creation_time OR (pt = creation_time AND pi < id))))`,
		sqlString(db.path(p.Path)))
	if err := db.sql.QueryRow(q).Scan(&misordered); err != nil {
		t.Fatal(err)
	}
	return misordered
}

// TestHeadBackpressure: when sealing cannot keep up, Append waits for room
// in the head and then answers ErrBusy; a seal lets writes in again.
func TestHeadBackpressure(t *testing.T) {
	opts := testOptions()
	opts.SealBytes = 1 << 40 // the seal loop never seals by size...
	opts.MaxHeadBytes = 1    // ...so one batch fills the head
	db := openTest(t, t.TempDir(), opts)
	defer db.Close()
	mustAppend(t, db, mkrecs("acme", 10, time.Now(), time.Second))
	if _, err := db.Append(ctx, mkrecs("other", 1, time.Now(), 0)); !errors.Is(err, ErrBusy) {
		t.Fatalf("append with a full head: %v, want ErrBusy", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := db.Append(ctx, mkrecs("other", 1, time.Now(), 0))
		done <- err
	}()
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil && !errors.Is(err, ErrBusy) {
		t.Fatalf("append racing a seal: %v", err)
	}
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Append(ctx, mkrecs("other", 5, time.Now(), 0)); err != nil {
		t.Fatalf("append after seal: %v", err)
	}
}

func TestSplitRuns(t *testing.T) {
	var recs []*audit.Record
	for i, u := range []string{"a", "a", "a", "b", "b", "c", "d", "d", "d", "d", "e", ""} {
		recs = append(recs, &audit.Record{ID: strconv.Itoa(i), UserID: u})
	}
	for _, tc := range []struct {
		n, min int
		want   []int // run lengths
	}{
		{1, 1, []int{12}},
		{2, 100, []int{12}}, // too few records to split
		{2, 1, []int{6, 6}}, // cut at 6 lands between c and d
		{3, 1, []int{5, 5, 2}},
		{4, 3, []int{3, 3, 4, 2}},
	} {
		var got []int
		total := 0
		for _, r := range splitRuns(recs, tc.n, tc.min) {
			got = append(got, len(r))
			total += len(r)
			if len(r) > 0 && total < len(recs) && r[len(r)-1].UserID == recs[total].UserID {
				t.Errorf("n=%d: run ends inside user %q", tc.n, r[len(r)-1].UserID)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("splitRuns(n=%d, min=%d) = %v, want %v", tc.n, tc.min, got, tc.want)
		}
	}
}
