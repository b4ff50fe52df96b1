package store

import (
	"bufio"
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
	"github.com/custos-audit/custos/simulate"
)

// expireStart is the first day of the records the expiry tests use; their
// clock is 30 days later.
var expireStart = time.Date(2026, 4, 6, 0, 0, 0, 0, time.UTC)

// monthOfRecords is simulator activity spread over 30 days, so that
// retention cutoffs fall inside some days and past others.
func monthOfRecords(tb testing.TB, tenant string) []audit.Record {
	tb.Helper()
	// A day before the simulated month that expires whole, so its part is
	// dropped rather than rewritten.
	out := mkrecs(tenant, 300, expireStart.Add(-5*24*time.Hour), time.Minute)
	return append(out, simulated(tb, simulate.Config{Tenant: tenant, Users: 25, Days: 30, Rate: 8, Seed: 3, Start: expireStart}, 0)...)
}

// testExpiry exercises every part of an Expiry against recs: a rule on a
// record type and one user, a broader one on the same record type, a rule
// with an operation, the default, and a user on hold.
func testExpiry(recs []audit.Record) Expiry {
	now := expireStart.Add(30 * 24 * time.Hour)
	var longUser, heldUser string
	for _, r := range recs {
		if r.RecordType == int32(audit.ExchangeItem) && longUser == "" {
			longUser = r.UserID
		}
		if r.UserID != "" && r.UserID != longUser && heldUser == "" && longUser != "" {
			heldUser = r.UserID
		}
	}
	return Expiry{
		Rules: []ExpiryRule{
			{RecordTypes: []int32{int32(audit.ExchangeItem)}, UserIDs: []string{strings.ToUpper(longUser)}, Before: now.AddDate(0, 0, -25)},
			{RecordTypes: []int32{int32(audit.ExchangeItem)}, Before: now.AddDate(0, 0, -5)},
			{RecordTypes: []int32{int32(audit.AzureActiveDirectoryStsLogon)}, Operations: []string{"userloggedin"}, Before: now.AddDate(0, 0, -28)},
		},
		Default: now.AddDate(0, 0, -12),
		Held:    []string{heldUser},
	}
}

// referenceExpiry decides in Go, independently of the SQL, which records e
// expires, and counts them per day and rule as ExpiryReport.Groups does.
func referenceExpiry(recs []audit.Record, e Expiry) (kept []audit.Record, groups []ExpiredGroup) {
	in := func(v string, set []string) bool {
		return slices.ContainsFunc(set, func(s string) bool { return strings.EqualFold(s, v) })
	}
	count := map[ExpiredGroup]int64{}
	for _, r := range recs {
		rule, cutoff := -1, e.Default
		for i, x := range e.Rules {
			if (len(x.RecordTypes) == 0 || slices.Contains(x.RecordTypes, r.RecordType)) &&
				(len(x.Operations) == 0 || in(r.Operation, x.Operations)) &&
				(len(x.UserIDs) == 0 || in(r.UserID, x.UserIDs)) {
				rule, cutoff = i, x.Before
				break
			}
		}
		if r.CreationTime.Before(cutoff) && !in(r.UserID, e.Held) {
			count[ExpiredGroup{Day: r.CreationTime.UTC().Format(dayLayout), Rule: rule}]++
			continue
		}
		kept = append(kept, r)
	}
	for g, n := range count {
		g.Records = n
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b ExpiredGroup) int {
		return cmpOr(strings.Compare(a.Day, b.Day), a.Rule-b.Rule)
	})
	return kept, groups
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func TestExpireMatchesReference(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, testOptions())
	defer func() { db.Close() }()
	acme := monthOfRecords(t, "acme")
	other := monthOfRecords(t, "other")
	mustAppend(t, db, acme)
	mustAppend(t, db, other)
	// Two seals, so some days have two parts and a rewrite and a drop can
	// happen in one day.
	half := len(acme) / 2
	late := make([]audit.Record, 0, half)
	for i, r := range acme[:half] {
		if i%3 == 0 { // re-sent: must stay one record
			late = append(late, r)
		}
	}
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, late)
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}

	e := testExpiry(acme)
	kept, groups := referenceExpiry(acme, e)
	used := map[int]bool{}
	for _, g := range groups {
		used[g.Rule] = true
	}
	if len(used) != len(e.Rules)+1 || len(kept) == 0 || len(kept) == len(acme) {
		t.Fatalf("test data does not exercise every rule: rules deciding expiries %v, %d of %d kept", used, len(kept), len(acme))
	}
	wantExpired := int64(len(acme) - len(kept))

	before := contents(t, db, "acme")
	dry, err := db.Expire(ctx, "acme", e, true)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Records != wantExpired || !slices.Equal(dry.Groups, groups) {
		t.Fatalf("dry run: %d records in %v\nwant %d in %v", dry.Records, dry.Groups, wantExpired, groups)
	}
	if got := contents(t, db, "acme"); !slices.Equal(got, before) {
		t.Fatal("a dry run changed the records")
	}

	rep, err := db.Expire(ctx, "acme", e, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != wantExpired || !slices.Equal(rep.Groups, groups) {
		t.Fatalf("expire: %d records in %v\nwant %d in %v", rep.Records, rep.Groups, wantExpired, groups)
	}
	if rep.PartsDropped == 0 || rep.PartsRewritten == 0 || rep.BytesFreed <= 0 {
		t.Fatalf("expected whole parts dropped and others rewritten, freeing bytes: %+v", rep)
	}
	if rep.PartsDropped != dry.PartsDropped || rep.PartsRewritten != dry.PartsRewritten {
		t.Errorf("dry run predicted %d dropped, %d rewritten; did %d, %d",
			dry.PartsDropped, dry.PartsRewritten, rep.PartsDropped, rep.PartsRewritten)
	}
	check := func(stage string) {
		t.Helper()
		if got, want := contents(t, db, "acme"), expected(kept); !slices.Equal(got, want) {
			t.Fatalf("%s: %d records stored, want the %d the reference keeps", stage, len(got), len(want))
		}
		if got, want := contents(t, db, "other"), expected(other); !slices.Equal(got, want) {
			t.Fatalf("%s: expiring acme changed tenant other: %d records, want %d", stage, len(got), len(want))
		}
		for _, p := range db.Parts() {
			if n := misorderedRows(t, db, p); n != 0 {
				t.Errorf("%s: part %s: %d rows out of order", stage, p.Path, n)
			}
		}
	}
	check("after expire")

	again, err := db.Expire(ctx, "acme", e, false)
	if err != nil || again.Records != 0 || again.PartsDropped+again.PartsRewritten != 0 {
		t.Fatalf("second pass should find nothing: %+v, %v", again, err)
	}
	db.Close()
	db = openTest(t, dir, testOptions())
	check("after restart")
	files := 0
	filepath.WalkDir(filepath.Join(dir, "blocks"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return err
	})
	if files != len(db.Parts()) {
		t.Errorf("%d Parquet files on disk, catalog lists %d: replaced parts were not deleted", files, len(db.Parts()))
	}
}

// TestExpireKill9 kills the process enforcing retention at random moments:
// whatever survives must hold every record that should stay, none twice,
// and a later pass must finish the job exactly.
func TestExpireKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 rounds take a while")
	}
	seed := t.TempDir()
	db := openTest(t, seed, testOptions())
	acme := monthOfRecords(t, "acme")
	// Many parts: one seal per few days.
	for i := 0; i < len(acme); {
		j := min(i+len(acme)/8, len(acme))
		mustAppend(t, db, acme[i:j])
		if err := db.Seal(ctx); err != nil {
			t.Fatal(err)
		}
		i = j
	}
	db.Close()
	kept, _ := referenceExpiry(acme, testExpiry(acme))
	all, want := expected(acme), expected(kept)

	rng := rand.New(rand.NewPCG(11, 11))
	for round := range 4 {
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.CopyFS(dir, os.DirFS(seed)); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestExpireKill9Child$")
		cmd.Env = append(os.Environ(), "CUSTOS_EXPIRE_DIR="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() && sc.Text() != "expiring" {
		}
		time.Sleep(time.Duration(rng.IntN(60*(round+1))) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		db := openTest(t, dir, testOptions())
		got := contents(t, db, "acme")
		if len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("round %d: duplicate records after the kill", round)
		}
		for _, w := range want {
			if _, found := slices.BinarySearch(got, w); !found {
				t.Fatalf("round %d: a record that should stay was lost: %.80s", round, w)
			}
		}
		for _, g := range got {
			if _, found := slices.BinarySearch(all, g); !found {
				t.Fatalf("round %d: unknown record appeared: %.80s", round, g)
			}
		}
		removed := len(all) - len(got)
		if _, err := db.Expire(ctx, "acme", testExpiry(acme), false); err != nil {
			t.Fatal(err)
		}
		if got := contents(t, db, "acme"); !slices.Equal(got, want) {
			t.Fatalf("round %d: after a full pass %d records, want %d", round, len(got), len(want))
		}
		db.Close()
		t.Logf("round %d: killed with %d of %d expired records removed", round, removed, len(all)-len(want))
	}
}

// TestExpireKill9Child is the child of TestExpireKill9.
func TestExpireKill9Child(t *testing.T) {
	dir := os.Getenv("CUSTOS_EXPIRE_DIR")
	if dir == "" {
		t.Skip("child process of TestExpireKill9")
	}
	db, err := Open(dir, testOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(1)
	}
	e := testExpiry(monthOfRecords(t, "acme"))
	fmt.Println("expiring")
	rep, err := db.Expire(ctx, "acme", e, false)
	fmt.Println("done", strconv.FormatInt(rep.Records, 10), err)
	os.Exit(0)
}
