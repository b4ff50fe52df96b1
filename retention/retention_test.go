package retention

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/store"
)

var ctx = context.Background()

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]Duration{
		"SevenDays": "SevenDays", "sevendays": "SevenDays", "7d": "SevenDays", " 1mo ": "OneMonth",
		"TwelveMonths": "TwelveMonths", "12mo": "TwelveMonths", "10y": "TenYears", "FiveYears": "FiveYears",
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "180d", "OneYear", "2y", "7 days"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	now := time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)
	for d, want := range map[Duration]time.Time{
		"SevenDays":    time.Date(2026, 3, 24, 12, 0, 0, 0, time.UTC),
		"OneMonth":     time.Date(2026, 2, 28, 12, 0, 0, 0, time.UTC),
		"ThreeMonths":  time.Date(2025, 12, 31, 12, 0, 0, 0, time.UTC),
		"TwelveMonths": time.Date(2025, 3, 31, 12, 0, 0, 0, time.UTC),
		"TenYears":     time.Date(2016, 3, 31, 12, 0, 0, 0, time.UTC),
	} {
		if got := d.Cutoff(now); !got.Equal(want) {
			t.Errorf("%s.Cutoff = %s, want %s", d, got, want)
		}
	}
}

func TestPolicyValidation(t *testing.T) {
	ok := Policy{Name: "Exchange items", RecordTypes: []string{"exchangeitem", "2"}, Duration: "1mo", Priority: 10}
	if err := ok.normalize(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ok.RecordTypes, []string{"ExchangeItem"}) || ok.Duration != "OneMonth" {
		t.Errorf("not normalised: %+v", ok)
	}
	for name, p := range map[string]Policy{
		"no criteria":               {Name: "a", Duration: "7d", Priority: 1},
		"operations, 2 types":       {Name: "a", RecordTypes: []string{"ExchangeItem", "SharePoint"}, Operations: []string{"x"}, Duration: "7d", Priority: 1},
		"operations, only users":    {Name: "a", UserIDs: []string{"u"}, Operations: []string{"x"}, Duration: "7d", Priority: 1},
		"priority 0":                {Name: "a", UserIDs: []string{"u"}, Duration: "7d", Priority: 0},
		"priority 10001":            {Name: "a", UserIDs: []string{"u"}, Duration: "7d", Priority: 10001},
		"bad duration":              {Name: "a", UserIDs: []string{"u"}, Duration: "180d", Priority: 1},
		"unknown record type":       {Name: "a", RecordTypes: []string{"NoSuchType"}, Duration: "7d", Priority: 1},
		"hostile name":              {Name: "a/../../b", UserIDs: []string{"u"}, Duration: "7d", Priority: 1},
		"empty name":                {Name: "", UserIDs: []string{"u"}, Duration: "7d", Priority: 1},
		"only blank user ids count": {Name: "a", UserIDs: []string{" ", ""}, Duration: "7d", Priority: 1},
	} {
		if err := p.normalize(); err == nil {
			t.Errorf("%s: accepted %+v", name, p)
		}
	}
}

func TestRegistryPersistsAndEnforcesLimits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "retention.json")
	r, err := OpenRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := range MaxPolicies {
		_, err := r.Create("acme", Policy{Name: fmt.Sprintf("p%d", i), UserIDs: []string{"u"}, Duration: "7d", Priority: 100 + i}, "tok", now)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Create("acme", Policy{Name: "one-too-many", UserIDs: []string{"u"}, Duration: "7d", Priority: 1}, "tok", now); !errors.Is(err, ErrLimit) {
		t.Fatalf("policy %d: %v, want ErrLimit", MaxPolicies+1, err)
	}
	// Another tenant has its own allowance and namespace.
	if _, err := r.Create("other", Policy{Name: "P0", UserIDs: []string{"u"}, Duration: "7d", Priority: 100}, "tok", now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Create("other", Policy{Name: "p0", UserIDs: []string{"u"}, Duration: "7d", Priority: 5}, "tok", now); !errors.Is(err, ErrExists) {
		t.Fatalf("same name in another case: %v, want ErrExists", err)
	}
	if _, err := r.Create("other", Policy{Name: "x", UserIDs: []string{"u"}, Duration: "7d", Priority: 100}, "tok", now); !errors.Is(err, ErrExists) {
		t.Fatalf("same priority: %v, want ErrExists", err)
	}
	if _, _, err := r.Update("acme", "p1", Patch{Priority: ptr(100)}, "tok", now); !errors.Is(err, ErrExists) {
		t.Fatalf("update to a taken priority: %v", err)
	}
	before, after, err := r.Update("acme", "P1", Patch{Priority: ptr(1), Duration: ptr(Duration("10y"))}, "tok2", now.Add(time.Hour))
	if err != nil || before.Priority != 101 || after.Priority != 1 || after.Duration != "TenYears" || after.UpdatedBy != "tok2" {
		t.Fatalf("update: %+v -> %+v, %v", before, after, err)
	}
	if _, _, err := r.Update("acme", "p2", Patch{Operations: &[]string{"x"}}, "tok", now); err == nil {
		t.Fatal("update made operations without exactly one record type")
	}
	if _, err := r.Delete("acme", "p3"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Delete("acme", "p3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := r.SetHold("acme", Hold{Users: []string{"a@x", "A@X", "b@x"}, Reason: "case 7"}, "tok", now); err != nil {
		t.Fatal(err)
	}

	r2, err := OpenRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := r2.Policies("acme")
	if len(ps) != MaxPolicies-1 || ps[0].Name != "p1" || ps[0].Duration != "TenYears" {
		t.Fatalf("after reopen: %d policies, first %+v", len(ps), ps[0])
	}
	if h := r2.Hold("acme"); !slices.Equal(h.Users, []string{"a@x", "b@x"}) || h.Reason != "case 7" || h.All {
		t.Fatalf("hold after reopen: %+v", h)
	}
	if len(r2.Policies("other")) != 1 || len(r2.Policies("nobody")) != 0 {
		t.Fatal("tenants mixed up")
	}
}

func ptr[T any](v T) *T { return &v }

// rec is a record as Microsoft would send it, parsed like ingest does.
func rec(t *testing.T, id string, age time.Duration, now time.Time, recordType int, op, user string) audit.Record {
	t.Helper()
	raw := fmt.Sprintf(`{"Id":%q,"CreationTime":%q,"RecordType":%d,"Operation":%q,"UserId":%q,"Workload":"Test"}`,
		id, now.Add(-age).UTC().Format("2006-01-02T15:04:05"), recordType, op, user)
	var p audit.Parser
	r, err := p.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	r.Tenant = "acme"
	return r
}

func ids(t *testing.T, db *store.DB) []string {
	t.Helper()
	var out []string
	if err := db.Records(ctx, "acme", store.Query{}, func(r *audit.Record) error {
		out = append(out, r.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestEnforcement: records older than the policy that wins for them
// disappear, and no others; priorities decide between policies; a legal
// hold suspends deletion.
func TestEnforcement(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "data"), store.Options{MemoryLimit: "1GB", Threads: 2, SealInterval: time.Hour, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg, err := OpenRegistry(filepath.Join(dir, "retention.json"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	const (
		item  = int(audit.ExchangeItem)
		logon = int(audit.AzureActiveDirectoryStsLogon)
		sp    = int(audit.SharePointFileOperation)
	)
	type c struct {
		r    audit.Record
		kept bool // under the first set of policies
	}
	cases := []c{
		// vip: ten years (priority 1) beats seven days for items (priority 5).
		{rec(t, "vip-item-2y", 730*day, now, item, "Update", "vip@acme.example"), true},
		{rec(t, "vip-sp-11y", 4020*day, now, sp, "FileAccessed", "VIP@acme.example"), false},
		{rec(t, "item-8d", 8*day, now, item, "Update", "ann@acme.example"), false},
		{rec(t, "item-6d", 6*day, now, item, "Update", "ann@acme.example"), true},
		// Failed logons: three years; other logons fall to the default.
		{rec(t, "failed-2y", 730*day, now, logon, "UserLoginFailed", "bob@acme.example"), true},
		{rec(t, "failed-4y", 1460*day, now, logon, "userloginfailed", "bob@acme.example"), false},
		{rec(t, "logon-200d", 200*day, now, logon, "UserLoggedIn", "bob@acme.example"), false},
		{rec(t, "logon-100d", 100*day, now, logon, "UserLoggedIn", "bob@acme.example"), true},
		// No policy: the 180-day default.
		{rec(t, "sp-181d", 181*day, now, sp, "FileAccessed", "cy@acme.example"), false},
		{rec(t, "sp-179d", 179*day, now, sp, "FileAccessed", "cy@acme.example"), true},
		{rec(t, "sp-400d-held", 400*day, now, sp, "FileAccessed", "held@acme.example"), false},
	}
	var recs []audit.Record
	for _, x := range cases {
		recs = append(recs, x.r)
	}
	if _, err := db.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := db.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Policy{
		{Name: "vip", UserIDs: []string{"vip@acme.example"}, Duration: "10y", Priority: 1},
		{Name: "items", RecordTypes: []string{"ExchangeItem"}, Duration: "7d", Priority: 5},
		{Name: "failed logons", RecordTypes: []string{"AzureActiveDirectoryStsLogon"}, Operations: []string{"UserLoginFailed"}, Duration: "ThreeYears", Priority: 10},
	} {
		if _, err := reg.Create("acme", p, "tok", now); err != nil {
			t.Fatal(err)
		}
	}
	enf := NewEnforcer(EnforcerConfig{Registry: reg, Store: db, DefaultDays: DefaultDays,
		Now: func() time.Time { return now }})

	want := func(keep func(c) bool) []string {
		var out []string
		for _, x := range cases {
			if keep(x) {
				out = append(out, x.r.ID)
			}
		}
		slices.Sort(out)
		return out
	}
	all := want(func(c) bool { return true })

	// A tenant-wide hold: nothing goes, and the report says why.
	if _, err := reg.SetHold("acme", Hold{All: true, Reason: "litigation"}, "tok", now); err != nil {
		t.Fatal(err)
	}
	rep, err := enf.Run(ctx, "acme", false)
	if err != nil || !rep.Held || rep.Records != 0 || !slices.Equal(ids(t, db), all) {
		t.Fatalf("under a tenant hold: %+v, %v; %d records left", rep, err, len(ids(t, db)))
	}

	// A hold on one user keeps only that user's records.
	if _, err := reg.SetHold("acme", Hold{Users: []string{"HELD@acme.example"}}, "tok", now); err != nil {
		t.Fatal(err)
	}
	dry, err := enf.Run(ctx, "acme", true)
	kept := want(func(x c) bool { return x.kept || x.r.UserID == "held@acme.example" })
	if err != nil || dry.Records != int64(len(all)-len(kept)) || !slices.Equal(ids(t, db), all) {
		t.Fatalf("dry run: %+v, %v", dry, err)
	}
	byPolicy := map[string]int64{}
	for _, r := range dry.Removed {
		byPolicy[r.Policy] += r.Records
	}
	if fmt.Sprint(byPolicy) != fmt.Sprint(map[string]int64{DefaultPolicy: 2, "failed logons": 1, "items": 1, "vip": 1}) {
		t.Errorf("dry run by policy: %v", byPolicy)
	}
	rep, err = enf.Run(ctx, "acme", false)
	if err != nil || rep.Records != dry.Records {
		t.Fatalf("run: %+v, %v", rep, err)
	}
	if got := ids(t, db); !slices.Equal(got, kept) {
		t.Fatalf("kept %v\nwant %v", got, kept)
	}
	if last, ok := reg.LastReport("acme"); !ok || last.Records != rep.Records || last.DryRun {
		t.Errorf("last report: %+v, %v", last, ok)
	}

	// Lifting the hold and giving items priority over vip: vip's old item goes.
	if _, err := reg.SetHold("acme", Hold{}, "tok", now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Update("acme", "vip", Patch{Priority: ptr(50)}, "tok", now); err != nil {
		t.Fatal(err)
	}
	if _, err := enf.Run(ctx, "acme", false); err != nil {
		t.Fatal(err)
	}
	kept = want(func(x c) bool { return x.kept && x.r.ID != "vip-item-2y" })
	if got := ids(t, db); !slices.Equal(got, kept) {
		t.Fatalf("after reprioritising: %v\nwant %v", got, kept)
	}

	// A week later the periodic loop removes item-6d (seven-day items)
	// and sp-179d (the default), and reports it.
	now = now.Add(7 * day)
	reports := make(chan Report, 10)
	loop := NewEnforcer(EnforcerConfig{Registry: reg, Store: db, DefaultDays: DefaultDays, Now: func() time.Time { return now },
		Tenants: func() []string { return []string{"acme"} }, FirstRun: time.Millisecond, Interval: time.Hour,
		OnReport: func(r Report) { reports <- r }})
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { loop.Loop(lctx); close(done) }()
	rep = <-reports
	cancel()
	<-done
	if rep.DryRun || rep.Records != 2 || fmt.Sprint(rep.Removed) != "[{2026-05-25 (default) 1} {2026-11-14 items 1}]" {
		t.Errorf("periodic run: %+v", rep)
	}
	kept = want(func(x c) bool { return x.kept && x.r.ID != "vip-item-2y" && x.r.ID != "item-6d" && x.r.ID != "sp-179d" })
	if got := ids(t, db); !slices.Equal(got, kept) {
		t.Errorf("after the periodic run: %v\nwant %v", got, kept)
	}
}
