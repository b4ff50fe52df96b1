package store

import (
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/simulate"
)

// scenarioRecords returns all records of a small simulated tenant with
// every attack scenario, so filters have rare values to find.
func scenarioRecords(t *testing.T) []audit.Record {
	t.Helper()
	return simulated(t, simulate.Config{Tenant: "acme", Users: 40, Days: 4, Seed: 3,
		Start: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), Scenarios: simulate.ScenarioNames(),
		ScenarioStart: time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)}, 0)
}

// matches is the reference: Filter's meaning written independently of SQL.
func matches(f Filter, r *audit.Record) bool {
	anyFold := func(vals []string, v string) bool {
		return len(vals) == 0 || slices.ContainsFunc(vals, func(x string) bool { return strings.EqualFold(x, v) })
	}
	if !anyFold(f.Operations, r.Operation) || !anyFold(f.Workloads, r.Workload) ||
		!anyFold(f.UserIDs, r.UserID) || !anyFold(f.ResultStatuses, r.ResultStatus) {
		return false
	}
	if len(f.SessionIDs) > 0 && !slices.Contains(f.SessionIDs, r.SessionID) {
		return false
	}
	if len(f.RecordTypes) > 0 && !slices.Contains(f.RecordTypes, r.RecordType) {
		return false
	}
	if len(f.AppIDs) > 0 && !anyFold(f.AppIDs, r.AppID) && !anyFold(f.AppIDs, r.ClientAppID) {
		return false
	}
	if len(f.ObjectIDs) > 0 && !slices.ContainsFunc(f.ObjectIDs, func(w string) bool {
		parts := strings.Split(w, "*")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		return regexp.MustCompile(`(?is)^` + strings.Join(parts, ".*") + `$`).MatchString(r.ObjectID)
	}) {
		return false
	}
	if len(f.MessageIDs) > 0 && !slices.ContainsFunc(f.MessageIDs, func(m string) bool { return slices.Contains(r.InternetMessageIDs, m) }) {
		return false
	}
	if len(f.IPs) > 0 {
		a, err := netip.ParseAddr(r.ClientIP)
		if err != nil || !slices.ContainsFunc(f.IPs, func(p netip.Prefix) bool { return p.Contains(a.Unmap()) }) {
			return false
		}
	}
	if f.Keyword != "" && !strings.Contains(strings.ToLower(string(r.Raw)), strings.ToLower(f.Keyword)) {
		return false
	}
	return true
}

func TestFiltersMatchReference(t *testing.T) {
	recs := scenarioRecords(t)
	dir := t.TempDir()
	db := openTest(t, dir, testOptions())
	defer func() { db.Close() }()
	// Half sealed, half in the head: every query spans both.
	half := len(recs) / 2
	mustAppend(t, db, recs[:half])
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, recs[half:])

	// Pick real values so that every filter has matches.
	var withMsg, withSession, withObject *audit.Record
	for i := range recs {
		r := &recs[i]
		if withMsg == nil && len(r.InternetMessageIDs) > 1 {
			withMsg = r
		}
		if withSession == nil && r.SessionID != "" {
			withSession = r
		}
		if withObject == nil && strings.HasPrefix(r.ObjectID, "https://") {
			withObject = r
		}
	}
	if withMsg == nil || withSession == nil || withObject == nil {
		t.Fatal("simulator output lacks message ids, sessions or URL object ids")
	}
	storm := netip.MustParsePrefix("203.0.113.0/24")
	cases := map[string]Filter{
		"none":            {},
		"operation":       {Operations: []string{"mailitemsaccessed"}},
		"operations":      {Operations: []string{"Send", "New-InboxRule", "Consent to application."}},
		"record type":     {RecordTypes: []int32{50, 8}},
		"workload":        {Workloads: []string{"AzureActiveDirectory"}},
		"user":            {UserIDs: []string{strings.ToUpper(recs[7].UserID)}},
		"ip exact":        {IPs: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr(recs[11].ClientIP), netip.MustParseAddr(recs[11].ClientIP).BitLen())}},
		"ip cidr":         {IPs: []netip.Prefix{storm, netip.MustParsePrefix("198.51.100.0/24")}},
		"ipv6 cidr":       {IPs: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}},
		"app id":          {AppIDs: []string{"6b7f0558-3c2d-4e91-a8f0-2d5c0de05580"}},
		"object wildcard": {ObjectIDs: []string{withObject.ObjectID[:20] + "*"}},
		"object exact":    {ObjectIDs: []string{withObject.ObjectID}},
		"session":         {SessionIDs: []string{withSession.SessionID}},
		"message id":      {MessageIDs: []string{withMsg.InternetMessageIDs[1]}},
		"result status":   {ResultStatuses: []string{"SUCCEEDED"}},
		"keyword":         {Keyword: "INBOXRULE"},
		// As a regular expression, ".." would match any two characters.
		"keyword with regexp metacharacters": {Keyword: `"Value":".."`},
		// Unescaped, % and _ would match MailItemsAccessed.
		"matches nothing: literal percent":    {Keyword: "MailItems%ccessed"},
		"matches nothing: literal underscore": {Keyword: "MailItems_ccessed"},
		"combined":                            {Operations: []string{"MailItemsAccessed"}, AppIDs: []string{"6b7f0558-3c2d-4e91-a8f0-2d5c0de05580"}, IPs: []netip.Prefix{storm}},
		"matches nothing":                     {UserIDs: []string{"nobody@nowhere"}},
	}
	from, to := recs[0].CreationTime.Add(6*time.Hour), recs[len(recs)-1].CreationTime.Add(-6*time.Hour)
	check := func(stage string) {
		for name, f := range cases {
			t.Run(stage+"/"+name, func(t *testing.T) {
				for _, q := range []Query{{Filter: f}, {Filter: f, From: from, To: to}} {
					var want []string
					for i := range recs {
						r := &recs[i]
						inRange := (q.From.IsZero() || !r.CreationTime.Before(q.From)) && (q.To.IsZero() || r.CreationTime.Before(q.To))
						if inRange && matches(f, r) {
							want = append(want, r.ID)
						}
					}
					var got []string
					if err := db.Records(ctx, "acme", q, func(r *audit.Record) error {
						got = append(got, r.ID)
						return nil
					}); err != nil {
						t.Fatal(err)
					}
					n, err := db.Count(ctx, "acme", q)
					if err != nil {
						t.Fatal(err)
					}
					slices.Sort(got)
					slices.Sort(want)
					if !slices.Equal(got, want) || n != int64(len(want)) {
						t.Fatalf("%+v: got %d records (count %d), want %d", q, len(got), n, len(want))
					}
					if !strings.HasPrefix(name, "matches nothing") && len(want) == 0 && q.From.IsZero() {
						t.Fatalf("filter %s matches nothing in the reference: the case tests nothing", name)
					}
				}
			})
		}
	}
	check("hot and sealed")
	// A crash-like restart: the unsealed half comes back from the WAL.
	db.skipCloseSeal = true
	db.Close()
	db = openTest(t, dir, testOptions())
	if n := len(db.Parts()); n == 0 {
		t.Fatal("nothing sealed before the restart")
	}
	check("after restart")
}

// TestCursorPagingWhileIngesting pages newest-first through the records
// present at the start while other records keep arriving, some newer and
// some older than the pages read so far: every original record is seen
// exactly once and in order.
func TestCursorPagingWhileIngesting(t *testing.T) {
	db := openTest(t, t.TempDir(), testOptions())
	defer db.Close()
	day := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	orig := mkrecs("acme", 2000, day, time.Minute)
	mustAppend(t, db, orig)
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Late arrivals interleaved with the originals, and new ones.
			at := day.Add(time.Duration(i%2000)*time.Minute + 30*time.Second)
			if i%3 == 0 {
				at = day.Add(3000*time.Minute + time.Duration(i)*time.Second)
			}
			db.Append(ctx, []audit.Record{mkrec("acme", fmt.Sprintf("new-%d", i), at, "u@x")})
			if i%50 == 0 {
				db.Seal(ctx)
			}
		}
	}()
	seen := map[string]int{}
	var order []time.Time
	q := Query{To: day.Add(2000 * time.Minute), Limit: 97}
	for pages := 0; ; pages++ {
		var last *audit.Record
		n := 0
		if err := db.Records(ctx, "acme", q, func(r *audit.Record) error {
			n++
			if !strings.HasPrefix(r.ID, "new-") {
				seen[r.ID]++
				order = append(order, r.CreationTime)
			}
			last = r
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		q.After = &Cursor{Time: last.CreationTime, ID: last.ID}
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
	}
	close(stop)
	wg.Wait()
	for _, r := range orig {
		if seen[r.ID] != 1 {
			t.Fatalf("record %s seen %d times", r.ID, seen[r.ID])
		}
	}
	if !slices.IsSortedFunc(order, func(a, b time.Time) int { return b.Compare(a) }) {
		t.Fatal("pages are not newest first")
	}
}

func TestHistogram(t *testing.T) {
	db := openTest(t, t.TempDir(), testOptions())
	defer db.Close()
	day := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	recs := mkrecs("acme", 300, day.Add(-30*time.Minute), 7*time.Minute) // ~35 hours
	mustAppend(t, db, recs[:150])
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, recs[150:])
	q := Query{From: day, To: day.Add(24 * time.Hour), Filter: Filter{UserIDs: []string{"user3@acme.example"}}}
	got, err := db.Histogram(ctx, "acme", q, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := map[time.Time]int64{}
	for _, r := range recs {
		if r.UserID == "user3@acme.example" && !r.CreationTime.Before(q.From) && r.CreationTime.Before(q.To) {
			want[r.CreationTime.Truncate(time.Hour)]++
		}
	}
	var total int64
	for _, b := range got {
		if b.Count != want[b.Start] {
			t.Errorf("bucket %s: %d, want %d", b.Start, b.Count, want[b.Start])
		}
		total += b.Count
	}
	n, _ := db.Count(ctx, "acme", q)
	if len(got) != len(want) || total != n || n == 0 {
		t.Fatalf("%d buckets totalling %d (count %d), want %d buckets", len(got), total, n, len(want))
	}
	if !slices.IsSortedFunc(got, func(a, b Bucket) int { return a.Start.Compare(b.Start) }) {
		t.Error("buckets out of order")
	}
}

// TestUserFilterEveryCase: the byte-range bounds that let DuckDB skip row
// groups never drop a spelling that matches case-insensitively, the Kelvin
// sign (whose lower case is k) included, in the head and in sealed files.
func TestUserFilterEveryCase(t *testing.T) {
	db := openTest(t, t.TempDir(), testOptions())
	defer db.Close()
	at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	ids := []string{"Kim@X.example", "kim@x.example", "KIM@X.EXAMPLE", "\u212Aim@x.example", "kimberly@x.example", "jim@x.example", "ĸim@x.example"}
	var recs []audit.Record
	for i, u := range ids {
		recs = append(recs, mkrec("acme", fmt.Sprintf("u%d", i), at.Add(time.Duration(i)*time.Minute), u))
	}
	check := func(stage string) {
		t.Helper()
		var got []string
		q := Query{Filter: Filter{UserIDs: []string{"kIm@x.EXAMPLE"}}}
		if err := db.Records(ctx, "acme", q, func(r *audit.Record) error { got = append(got, r.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if want := []string{"u0", "u1", "u2", "u3"}; !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", stage, got, want)
		}
	}
	mustAppend(t, db, recs[:4])
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, recs[4:])
	check("sealed")
	mustAppend(t, db, []audit.Record{mkrec("acme", "u7", at.Add(time.Hour), "\u212AIM@x.example")})
	var got []string
	db.Records(ctx, "acme", Query{Filter: Filter{UserIDs: []string{"kim@x.example"}}}, func(r *audit.Record) error { got = append(got, r.ID); return nil })
	if len(got) != 5 {
		t.Errorf("head and sealed: %v, want five", got)
	}
}

// TestUserFilterSpellings: a user filter finds every spelling whose DuckDB
// lower case is the id's, and nothing else, once each, whether the filter
// names one user, several, the same user twice in different cases, or so
// many that it is not split; sealed and in the head; counted and listed
// alike. İ (U+0130) lowers to i, so "İM@x" sorts after every ASCII
// spelling of "im@x" and a bound that ends at "im@x" misses it.
func TestUserFilterSpellings(t *testing.T) {
	db := openTest(t, t.TempDir(), testOptions())
	defer db.Close()
	at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	ids := []string{
		"im@x.example", "IM@X.EXAMPLE", "\u0130M@x.example", "i\u212Am@x.example", "ik@x.example",
		"oLga@x.example", "Olga@x.example", "olga@x.example", "OLGA@X.EXAMPLE", "olgb@x.example", "ola@x.example",
		"o1@x.example", "42@x.example", "@x.example", "a@x.example", "z@x.example", "Zed@x.example",
	}
	var recs []audit.Record
	for i, u := range ids {
		for j := range 3 {
			recs = append(recs, mkrec("acme", fmt.Sprintf("u%02d-%d", i, j), at.Add(time.Duration(i*3+j)*time.Minute), u))
		}
	}
	// The duckdb reference: which ids lower to which.
	lower := map[string]string{}
	for _, u := range ids {
		var l string
		if err := db.sql.QueryRowContext(ctx, "SELECT lower(?)", u).Scan(&l); err != nil {
			t.Fatal(err)
		}
		lower[u] = l
	}
	filters := [][]string{
		{"im@x.example"}, {"IM@x.example"}, {"olga@x.example"}, {"OLGA@x.EXAMPLE", "olga@X.example"},
		{"olga@x.example", "im@x.example"}, {"42@x.example"}, {"@x.example"}, {"ZED@x.example"},
		{"ik@x.example", "a@x.example", "z@x.example", "ola@x.example", "olgb@x.example"}, // too many spans to split
		{"nobody@x.example"},
		{"~nobody@x.example"}, // beyond every part's user ids: no part is read
	}
	check := func(stage string) {
		t.Helper()
		for _, users := range filters {
			var want []string
			for _, r := range recs {
				for _, u := range users {
					if lower[r.UserID] == strings.ToLower(u) {
						want = append(want, r.ID)
						break
					}
				}
			}
			var got []string
			q := Query{Filter: Filter{UserIDs: users}}
			if err := db.Records(ctx, "acme", q, func(r *audit.Record) error { got = append(got, r.ID); return nil }); err != nil {
				t.Fatal(err)
			}
			n, err := db.Count(ctx, "acme", q)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) || n != int64(len(want)) {
				t.Errorf("%s: users %q: got %v (count %d), want %v", stage, users, got, n, want)
			}
		}
	}
	mustAppend(t, db, recs[:len(recs)/2])
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, recs[len(recs)/2:])
	check("half sealed")
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	check("sealed")
}

// TestUserSpans: every spelling of an id lies in exactly one of its spans,
// and the spans are disjoint and in order.
func TestUserSpans(t *testing.T) {
	for _, id := range []string{"kim@x.example", "im", "olga.brandt@bench.onmicrosoft.com", "42@x", "@", "a", "z9k"} {
		spans := userSpans(id)
		for i := 1; i < len(spans); i++ {
			if spans[i-1].hi >= spans[i].lo {
				t.Errorf("%s: spans %q and %q overlap or are out of order", id, spans[i-1], spans[i])
			}
		}
		// Every spelling of the first four characters, the rest varied too.
		var spell func(prefix, rest string)
		spell = func(prefix, rest string) {
			if rest == "" || len(prefix) > 12 {
				for _, tail := range []string{lowest(rest), rest, highest(rest)} {
					s := prefix + tail
					n := 0
					for _, sp := range spans {
						if sp.lo <= s && s <= sp.hi {
							n++
						}
					}
					if n != 1 {
						t.Errorf("%s: spelling %q lies in %d spans", id, s, n)
					}
				}
				return
			}
			c := rest[0]
			if 'a' <= c && c <= 'z' {
				for _, v := range letterSpellings(c) {
					spell(prefix+v, rest[1:])
				}
			} else {
				spell(prefix+string(c), rest[1:])
			}
		}
		spell("", id)
	}
}

// TestExportBySlices: a query without a limit reads slice by slice of
// time (several parts of a day, days of parts, the head with late records
// of sealed days), and returns exactly what one sorted query returns, in
// the same order, with and without a time range and a cursor, ties of
// CreationTime included; a callback's error stops it.
func TestExportBySlices(t *testing.T) {
	db := openTest(t, t.TempDir(), testOptions())
	defer db.Close()
	day := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	var recs []audit.Record
	for i := range 600 {
		// Three records share each second: ties are ordered by id.
		at := day.Add(time.Duration(i/3) * 19 * time.Minute)
		recs = append(recs, mkrec("acme", fmt.Sprintf("r%04d", (i*7919)%600), at, fmt.Sprintf("u%d@x.example", i%5)))
	}
	// Two rounds of seals, so days hold several parts; then the head gets
	// half the last day and a few late records of the day before.
	var sealed [2][]audit.Record
	var head []audit.Record
	for i, r := range recs {
		switch h := r.CreationTime.Sub(day).Hours(); {
		case h >= 48 && i%2 == 0, h >= 30 && h < 31:
			head = append(head, r)
		default:
			sealed[(i*48271)%7%2] = append(sealed[(i*48271)%7%2], r)
		}
	}
	for _, batch := range sealed {
		mustAppend(t, db, batch)
		if err := db.Seal(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, db, head)
	v := db.acquire()
	gens, parts := holdings(v, "acme", Query{})
	sl := timeSlices("acme", gens, parts)
	db.release(v)
	if len(sl) < 2 || len(parts) < 4 {
		t.Fatalf("%d parts in %d slices: the test does not exercise slicing", len(parts), len(sl))
	}
	for i := 1; i < len(sl); i++ {
		if !sl[i].newest.Before(sl[i-1].oldest) {
			t.Fatalf("slices %d and %d overlap", i-1, i)
		}
	}
	// The reference: one query with a limit above the count is never sliced.
	ids := func(q Query) []string {
		var out []string
		if err := db.Records(ctx, "acme", q, func(r *audit.Record) error { out = append(out, r.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	mid := recs[300]
	for _, q := range []Query{
		{},
		{From: day.Add(20 * time.Hour), To: day.Add(50 * time.Hour)},
		{After: &Cursor{Time: mid.CreationTime, ID: mid.ID}},
		{Filter: Filter{Operations: []string{"mailitemsaccessed"}}, From: day.Add(time.Hour)},
	} {
		want := ids(Query{From: q.From, To: q.To, After: q.After, Filter: q.Filter, Limit: 10_000})
		got := ids(q)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%+v: sliced %d records, one query %d; equal in order: %v", q, len(got), len(want), slices.Equal(got, want))
		}
	}
	stop := errors.New("enough")
	n := 0
	err := db.Records(ctx, "acme", Query{}, func(*audit.Record) error {
		if n++; n == 250 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 250 {
		t.Errorf("callback error: %v after %d records", err, n)
	}
}

// TestTimeSlices: parts whose times overlap share a slice; slices are
// newest first and every part is in exactly one.
func TestTimeSlices(t *testing.T) {
	at := func(h int) time.Time {
		return time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(h) * time.Hour)
	}
	parts := []Part{
		{Path: "a", MinTime: at(0), MaxTime: at(24)},
		{Path: "b", MinTime: at(30), MaxTime: at(40)},
		{Path: "c", MinTime: at(24), MaxTime: at(29)}, // touches a
		{Path: "d", MinTime: at(35), MaxTime: at(50)}, // overlaps b
		{Path: "e", MinTime: at(60), MaxTime: at(70)},
	}
	var got [][]string
	for _, s := range timeSlices("acme", nil, parts) {
		var names []string
		for _, p := range s.parts {
			names = append(names, p.Path)
		}
		slices.Sort(names)
		got = append(got, names)
	}
	want := [][]string{{"e"}, {"b", "d"}, {"a", "c"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("slices %v, want %v", got, want)
	}
}

// TestUserBoundsOfOldParts: parts recorded before the catalog kept their
// user ids are read by every user search until the seal loop records
// them; searches are right before and after.
func TestUserBoundsOfOldParts(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, testOptions())
	at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	var recs []audit.Record
	for i, u := range []string{"Ann@x.example", "bob@x.example", "carl@x.example", "", "dora@x.example"} {
		recs = append(recs, mkrec("acme", fmt.Sprintf("u%d", i), at.Add(time.Duration(i)*24*time.Hour), u))
	}
	mustAppend(t, db, recs)
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range db.Parts() {
		if !p.UsersKnown || (p.MaxUser == "") != (p.Day == "2026-06-04") {
			t.Fatalf("a new part's user ids are not recorded: %+v", p)
		}
	}
	db.Close()
	// The catalog as an older version wrote it.
	cat, err := loadCatalog(filepath.Join(dir, "catalog.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range cat.Parts {
		cat.Parts[i].MinUser, cat.Parts[i].MaxUser, cat.Parts[i].UsersKnown = "", "", false
	}
	if err := cat.save(filepath.Join(dir, "catalog.json")); err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.Tick = time.Hour // the seal loop records the bounds only when asked below
	db = openTest(t, dir, opts)
	defer db.Close()
	search := func(stage string) {
		t.Helper()
		for user, want := range map[string]int{"ann@x.example": 1, "BOB@x.example": 1, "dora@X.example": 1, "eve@x.example": 0} {
			n, err := db.Count(ctx, "acme", Query{Filter: Filter{UserIDs: []string{user}}})
			if err != nil || n != int64(want) {
				t.Errorf("%s: %s: %d, %v; want %d", stage, user, n, err, want)
			}
		}
	}
	search("bounds unknown")
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range db.Parts() {
		var lo, hi sql.NullString
		db.sql.QueryRow("SELECT min(user_id), max(user_id) FROM read_parquet(?)", db.path(p.Path)).Scan(&lo, &hi)
		if !p.UsersKnown || p.MinUser != lo.String || p.MaxUser != hi.String {
			t.Errorf("part %s: recorded users %q to %q (known %v), want %q to %q", p.Path, p.MinUser, p.MaxUser, p.UsersKnown, lo.String, hi.String)
		}
	}
	search("bounds recorded")
	if p := (Part{UsersKnown: true, MinUser: "b", MaxUser: "d"}); p.mayHoldUsers("a", "az") || p.mayHoldUsers("e", "f") ||
		!p.mayHoldUsers("a", "b") || !p.mayHoldUsers("c", "c") || !p.mayHoldUsers("d", "z") ||
		(Part{UsersKnown: true}).mayHoldUsers("", "z") || !(Part{}).mayHoldUsers("x", "y") {
		t.Error("mayHoldUsers")
	}
}
