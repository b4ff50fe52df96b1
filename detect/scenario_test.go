package detect

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/rules"
	"github.com/custos-audit/custos/simulate"
)

// testGeo writes a small MaxMind-format database covering the simulator's
// address plan: offices in the corporate ASN, homes and carriers in a
// national ISP, and the attackers' addresses in hosting networks abroad.
func testGeo(t testing.TB) Geo {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "custos-test", RecordSize: 28, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		cidr, org, country string
		asn                uint32
	}{
		{"198.18.0.0/15", "Contoso Corp", "US", 64500},
		{"2001:db8::/33", "Contoso Corp", "US", 64500},
		{"240.0.0.0/4", "Example Broadband", "US", 64510},
		{"2001:db8:8000::/33", "Example Broadband", "US", 64510},
		{"203.0.113.0/24", "Example VPS", "NL", 64601},
		{"198.51.100.0/24", "Example Cloud", "DE", 64602},
	} {
		_, ipnet, err := net.ParseCIDR(n.cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(n.asn),
			"autonomous_system_organization": mmdbtype.String(n.org),
			"country":                        mmdbtype.Map{"iso_code": mmdbtype.String(n.country)},
		}
		if err := tree.Insert(ipnet, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "test.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	g, err := OpenGeo(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.(*mmdbGeo).Close() })
	return g
}

// run is one simulated tenant's records through an engine.
type run struct {
	alerts   []alert.Alert
	labels   map[string]simulate.Label // injected record id → label
	info     []simulate.ScenarioInfo
	records  int
	learnEnd time.Time
}

// simulateRun feeds the simulator's records, in the order it makes them, to
// an engine writing to a real alert store, a frame per 500 records.
func simulateRun(t *testing.T, seed int64, users, days int, scenarios []string, geo Geo, withRules bool) run {
	t.Helper()
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	sim, err := simulate.New(simulate.Config{Tenant: "contoso", Users: users, Days: days, Seed: seed, Start: start,
		Scenarios: scenarios, ScenarioStart: start.AddDate(0, 0, days-5)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	as, err := alert.Open(filepath.Join(dir, "alerts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	e, err := Open(filepath.Join(dir, "detect"), nil, as, geo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if withRules {
		rs, err := rules.Bundled()
		if err != nil {
			t.Fatal(err)
		}
		e.SetRules(rs)
	}
	out := run{labels: map[string]simulate.Label{}, info: sim.Scenarios()}
	var p audit.Parser
	var frame []audit.Record
	seq := uint64(0)
	for {
		raw, ok := sim.Next()
		if ok {
			r, err := p.Parse(bytes.Clone(raw))
			if err != nil {
				t.Fatal(err)
			}
			r.Tenant = "contoso"
			if l, injected := sim.Injected(); injected {
				out.labels[r.ID] = l
			}
			frame = append(frame, r)
			out.records++
		}
		if len(frame) == 500 || (!ok && len(frame) > 0) {
			seq++
			e.apply(seq, frame)
			frame = nil
		}
		if !ok {
			break
		}
	}
	out.alerts = as.List("contoso", alert.Filter{})
	out.learnEnd = start.Add(e.opts.Learning)
	return out
}

// malicious reports whether an alert's evidence holds an injected record.
func (r run) malicious(a alert.Alert) (string, bool) {
	for _, id := range a.Evidence {
		if l, ok := r.labels[id]; ok {
			return l.Scenario, true
		}
	}
	return "", false
}

// checkStorm requires the run's Storm-0558 intrusion to be one high alert
// for the attacker's application, naming every targeted mailbox and
// counting every injected record.
func checkStorm(t *testing.T, seed int64, r run) {
	t.Helper()
	var storm *alert.Alert
	for i, a := range r.alerts {
		if a.Detector == MailAppNew && a.Entity == strings.ToLower(simulate.StormAppID) {
			storm = &r.alerts[i]
		}
	}
	if storm == nil {
		t.Errorf("seed %d: no %s alert for the attacker's AppId among %d alerts", seed, MailAppNew, len(r.alerts))
		return
	}
	for _, info := range r.info {
		if info.Name != simulate.ScenarioStorm0558 {
			continue
		}
		for _, m := range info.Targets {
			if !slices.Contains(storm.Related, strings.ToLower(m)) {
				t.Errorf("seed %d: the alert does not name targeted mailbox %s (related: %v)", seed, m, storm.Related)
			}
		}
	}
	if !strings.Contains(storm.Explanation, "never seen accessing mail in this tenant") {
		t.Errorf("seed %d: explanation %q", seed, storm.Explanation)
	}
	injected := 0
	for _, l := range r.labels {
		if l.Scenario == simulate.ScenarioStorm0558 {
			injected++
		}
	}
	if storm.Count != int64(injected) || storm.Severity != "high" {
		t.Errorf("seed %d: alert counts %d records at %s, want all %d injected, high", seed, storm.Count, storm.Severity, injected)
	}
}

func TestNoApplicationAlertsOnNormalActivity(t *testing.T) {
	r := simulateRun(t, 1, 1000, 35, nil, testGeo(t), false)
	for _, a := range r.alerts {
		if a.Detector == MailAppNew {
			t.Errorf("normal activity raised %s: %s", a.Detector, a.Explanation)
		}
	}
	byDet := map[string]int{}
	for _, a := range r.alerts {
		byDet[a.Detector]++
	}
	t.Logf("%d records, alerts without any attack: %v", r.records, byDet)
}

// TestPrecisionAndRecall runs every scenario over several seeds (30 days of
// normal activity for 1,000 users, then the attacks) and reports, per
// detector, how many alerts were raised and how many of them hold an
// attacker's record; and per scenario, whether any alert caught it. It
// requires every scenario to be caught in every seed, Storm-0558 as one
// complete alert, and mail-app-new never to be wrong.
func TestPrecisionAndRecall(t *testing.T) {
	geo := testGeo(t)
	type tally struct{ alerts, true_ int }
	perDet := map[string]*tally{}
	caught := map[string]int{}
	seeds := []int64{1, 2, 3}
	for _, seed := range seeds {
		r := simulateRun(t, seed, 1000, 35, simulate.ScenarioNames(), geo, true)
		checkStorm(t, seed, r)
		seen := map[string]bool{}
		for _, a := range r.alerts {
			x := perDet[a.Detector]
			if x == nil {
				x = &tally{}
				perDet[a.Detector] = x
			}
			x.alerts++
			if sc, ok := r.malicious(a); ok {
				x.true_++
				seen[sc] = true
			}
		}
		for _, sc := range simulate.ScenarioNames() {
			if seen[sc] {
				caught[sc]++
			} else {
				t.Errorf("seed %d: scenario %s raised no alert", seed, sc)
			}
		}
	}
	names := make([]string, 0, len(perDet))
	for d := range perDet {
		names = append(names, d)
	}
	sort.Strings(names)
	var tb strings.Builder
	fmt.Fprintf(&tb, "%-32s %7s %7s %9s\n", "detector", "alerts", "true", "precision")
	var all, allTrue int
	for _, d := range names {
		x := perDet[d]
		all += x.alerts
		allTrue += x.true_
		fmt.Fprintf(&tb, "%-32s %7d %7d %8.0f%%\n", d, x.alerts, x.true_, 100*float64(x.true_)/float64(x.alerts))
	}
	fmt.Fprintf(&tb, "%-32s %7d %7d %8.0f%%\n", "all", all, allTrue, 100*float64(allTrue)/float64(all))
	for _, sc := range simulate.ScenarioNames() {
		fmt.Fprintf(&tb, "recall %-25s %d/%d seeds\n", sc, caught[sc], len(seeds))
	}
	t.Logf("precision and recall over %d seeds, 1,000 users, 35 days:\n%s", len(seeds), tb.String())
	if x := perDet[MailAppNew]; x == nil || x.true_ != x.alerts {
		t.Errorf("%s raised false alerts: %+v", MailAppNew, x)
	}
}
