package simulate

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var allScenarios = []string{ScenarioStorm0558, ScenarioInboxRule, ScenarioConsentPhishing, ScenarioDelegatedMailbox}

// monday is the default start: runs begin on a Monday.
var monday = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// rec is one generated record: raw bytes, time and label; the JSON is
// parsed on first use (parsing everything makes the tests slow).
type rec struct {
	raw   []byte
	m     map[string]any
	t     time.Time
	label *Label
}

func (r *rec) fields() map[string]any {
	if r.m == nil {
		if err := json.Unmarshal(r.raw, &r.m); err != nil {
			panic(fmt.Sprintf("record is not JSON: %v\n%s", err, r.raw))
		}
	}
	return r.m
}

func (r *rec) str(k string) string { s, _ := r.fields()[k].(string); return s }

func (r *rec) access() string { return opProp(r.fields(), "MailAccessType") }

func opProp(m map[string]any, name string) string {
	props, _ := m["OperationProperties"].([]any)
	for _, p := range props {
		p, _ := p.(map[string]any)
		if p["Name"] == name {
			v, _ := p["Value"].(string)
			return v
		}
	}
	return ""
}

type run struct {
	g    *Generator
	recs []rec
}

var creationTime = []byte(`"CreationTime":"`)

func recordTime(t *testing.T, raw []byte) time.Time {
	t.Helper()
	i := bytes.Index(raw, creationTime)
	if i < 0 || len(raw) < i+len(creationTime)+19 {
		t.Fatalf("no CreationTime: %s", raw)
	}
	ct, err := time.Parse("2006-01-02T15:04:05", string(raw[i+len(creationTime):][:19]))
	if err != nil {
		t.Fatalf("CreationTime: %v", err)
	}
	return ct
}

// generate runs cfg to the end and keeps every record.
func generate(t *testing.T, cfg Config) run {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := run{g: g}
	for {
		raw, ok := g.Next()
		if !ok {
			break
		}
		r := rec{raw: bytes.Clone(raw), t: recordTime(t, raw)}
		if l, bad := g.Injected(); bad {
			r.label = &l
		}
		out.recs = append(out.recs, r)
	}
	return out
}

func digest(t *testing.T, cfg Config) ([32]byte, int) {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n := 0
	for {
		raw, ok := g.Next()
		if !ok {
			break
		}
		h.Write(raw)
		h.Write([]byte{'\n'})
		if l, bad := g.Injected(); bad {
			fmt.Fprintf(h, "%+v\n", l)
		}
		n++
	}
	return [32]byte(h.Sum(nil)), n
}

func TestDeterminism(t *testing.T) {
	cfg := Config{Tenant: "contoso", Users: 40, Days: 4, Seed: 7, Scenarios: allScenarios}
	a, n := digest(t, cfg)
	if n == 0 {
		t.Fatal("no records")
	}
	if b, _ := digest(t, cfg); a != b {
		t.Error("same config, different output")
	}
	rev := cfg
	rev.Scenarios = []string{ScenarioDelegatedMailbox, ScenarioConsentPhishing, ScenarioInboxRule, ScenarioStorm0558, ScenarioStorm0558}
	if b, _ := digest(t, rev); a != b {
		t.Error("the order of --scenario changed the output")
	}
	other := cfg
	other.Seed = 8
	if b, _ := digest(t, other); a == b {
		t.Error("different seeds, same output")
	}
	other = cfg
	other.Tenant = "fabrikam"
	if b, _ := digest(t, other); a == b {
		t.Error("different tenants, same output")
	}
}

var (
	guidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	timeRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$`)
)

// TestSchema checks every record against the shapes Microsoft's
// Management Activity API uses: field names, JSON types and the
// per-workload fields.
func TestSchema(t *testing.T) {
	out := generate(t, Config{Tenant: "contoso", Users: 60, Days: 7, Seed: 3, Scenarios: allScenarios})
	orgID := out.g.OrganizationID()
	if !guidRE.MatchString(orgID) {
		t.Fatalf("OrganizationId %q", orgID)
	}
	seenOps := map[string]int{}
	for i := range out.recs {
		r := &out.recs[i]
		m := r.fields()
		errf := func(format string, args ...any) {
			t.Helper()
			t.Errorf("record %d (%s): %s\n%s", i, r.str("Operation"), fmt.Sprintf(format, args...), r.raw)
		}
		num := func(k string) (float64, bool) {
			v, ok := m[k].(float64)
			if !ok {
				errf("%s is %T, want a number", k, m[k])
			}
			return v, ok
		}
		isStr := func(k string) string {
			v, ok := m[k].(string)
			if !ok {
				errf("%s is %T, want a string", k, m[k])
			}
			return v
		}
		addr := func(k string) {
			if _, err := netip.ParseAddr(isStr(k)); err != nil {
				errf("%s: %v", k, err)
			}
		}
		if !timeRE.MatchString(r.str("CreationTime")) {
			errf("CreationTime %q", r.str("CreationTime"))
		}
		if !guidRE.MatchString(isStr("Id")) {
			errf("Id %q", r.str("Id"))
		}
		if isStr("OrganizationId") != orgID {
			errf("OrganizationId %q, want %q", r.str("OrganizationId"), orgID)
		}
		if v, _ := num("Version"); v != 1 {
			errf("Version %v", v)
		}
		if v, _ := num("UserType"); v != 0 && v != 2 {
			errf("UserType %v", v)
		}
		if isStr("UserKey") == "" {
			errf("empty UserKey")
		}
		if !strings.Contains(isStr("UserId"), "@") {
			errf("UserId %q", r.str("UserId"))
		}
		op := isStr("Operation")
		seenOps[op]++
		rt, _ := num("RecordType")
		wl := isStr("Workload")
		want := map[string]struct {
			rt int
			wl string
		}{
			"MailItemsAccessed": {50, "Exchange"}, "Send": {2, "Exchange"}, "SearchQueryInitiatedExchange": {101, "Exchange"},
			"FileAccessed": {6, ""}, "FileModified": {6, ""}, "FileDownloaded": {6, ""},
			"SearchQueryInitiatedSharePoint": {102, "SharePoint"}, "UserLoggedIn": {15, "AzureActiveDirectory"},
			"UserLoginFailed": {15, "AzureActiveDirectory"}, "Set-Mailbox": {1, "Exchange"}, "Add-MailboxPermission": {1, "Exchange"},
			"New-InboxRule": {1, "Exchange"}, "Set-InboxRule": {1, "Exchange"}, "Update user.": {8, "AzureActiveDirectory"},
			"Add member to group.": {8, "AzureActiveDirectory"}, "Consent to application.": {8, "AzureActiveDirectory"},
			"Add service principal.": {8, "AzureActiveDirectory"}, "Add delegated permission grant.": {8, "AzureActiveDirectory"},
		}[op]
		if want.rt == 0 {
			errf("unexpected operation")
			continue
		}
		if int(rt) != want.rt {
			errf("RecordType %v, want %d", rt, want.rt)
		}
		if want.wl != "" && wl != want.wl {
			errf("Workload %q, want %q", wl, want.wl)
		}
		switch rt {
		case 50, 2, 101: // Exchange mailbox records
			addr("ClientIPAddress")
			if isStr("ResultStatus") != "Succeeded" {
				errf("ResultStatus %q", r.str("ResultStatus"))
			}
			for _, k := range []string{"AppId", "ClientAppId", "ClientInfoString", "LogonUserSid", "MailboxOwnerSid", "OrganizationName", "OriginatingServer"} {
				isStr(k)
			}
			for _, k := range []string{"MailboxGuid", "SessionId"} {
				if !guidRE.MatchString(isStr(k)) {
					errf("%s %q", k, r.str(k))
				}
			}
			if m["ExternalAccess"] != false {
				errf("ExternalAccess %v", m["ExternalAccess"])
			}
			lt, _ := num("LogonType")
			ilt, _ := num("InternalLogonType")
			owner := isStr("MailboxOwnerUPN")
			if lt != ilt || (lt == 0) != (owner == r.str("UserId")) || (lt != 0 && lt != 2) {
				errf("LogonType %v/%v for %s on %s", lt, ilt, r.str("UserId"), owner)
			}
		}
		switch op {
		case "MailItemsAccessed":
			if _, ok := m["ClientIP"]; ok {
				errf("MailItemsAccessed carries ClientIP; Exchange uses ClientIPAddress")
			}
			acc, thr := r.access(), opProp(m, "IsThrottled")
			if (acc != "Bind" && acc != "Sync") || (thr != "True" && thr != "False") {
				errf("OperationProperties %v", m["OperationProperties"])
			}
			folders, _ := m["Folders"].([]any)
			if len(folders) == 0 {
				errf("no Folders")
			}
			items := 0
			for _, f := range folders {
				f, _ := f.(map[string]any)
				path, _ := f["Path"].(string)
				id, _ := f["Id"].(string)
				if !strings.HasPrefix(path, `\`) || id == "" {
					errf("folder %v", f)
				}
				fi, hasItems := f["FolderItems"].([]any)
				if acc == "Sync" && hasItems {
					errf("a Sync record lists items")
				}
				for _, it := range fi {
					it, _ := it.(map[string]any)
					mid, _ := it["InternetMessageId"].(string)
					if _, ok := it["SizeInBytes"].(float64); !ok || !strings.HasPrefix(mid, "<") || !strings.HasSuffix(mid, ">") || !strings.Contains(mid, "@") {
						errf("folder item %v", it)
					}
					items++
				}
			}
			oc, _ := num("OperationCount")
			if acc == "Bind" && (items == 0 || int(oc) != items) || acc == "Sync" && oc != 1 {
				errf("OperationCount %v for %d items", oc, items)
			}
		case "Send":
			item, _ := m["Item"].(map[string]any)
			pf, _ := item["ParentFolder"].(map[string]any)
			if _, ok := item["Subject"].(string); !ok || item["InternetMessageId"] == nil || pf["Path"] == nil {
				errf("Item %v", item)
			}
			if r.str("ClientIP") != r.str("ClientIPAddress") {
				errf("ClientIP and ClientIPAddress differ")
			}
		case "SearchQueryInitiatedExchange", "SearchQueryInitiatedSharePoint":
			if isStr("QueryText") == "" {
				errf("empty QueryText")
			}
		case "FileAccessed", "FileModified", "FileDownloaded":
			addr("ClientIP")
			if wl != "SharePoint" && wl != "OneDrive" {
				errf("Workload %q", wl)
			}
			if _, ok := m["ResultStatus"]; ok {
				errf("SharePoint file records carry no ResultStatus")
			}
			obj, site, name := isStr("ObjectId"), isStr("SiteUrl"), isStr("SourceFileName")
			if !strings.HasPrefix(obj, site) || !strings.HasSuffix(obj, "/"+name) || !strings.HasSuffix(name, "."+isStr("SourceFileExtension")) {
				errf("ObjectId %q, SiteUrl %q, SourceFileName %q", obj, site, name)
			}
			num("FileSizeBytes")
		case "UserLoggedIn", "UserLoginFailed":
			addr("ClientIP")
			if r.str("ActorIpAddress") != r.str("ClientIP") {
				errf("ActorIpAddress differs from ClientIP")
			}
			if !guidRE.MatchString(isStr("ApplicationId")) {
				errf("ApplicationId %q", r.str("ApplicationId"))
			}
			ext := map[string]string{}
			eps, _ := m["ExtendedProperties"].([]any)
			for _, p := range eps {
				p, _ := p.(map[string]any)
				n, _ := p["Name"].(string)
				v, _ := p["Value"].(string)
				ext[n] = v
			}
			if ext["UserAgent"] == "" || ext["RequestType"] == "" {
				errf("ExtendedProperties %v", eps)
			}
			if (isStr("ErrorNumber") == "0") != (op == "UserLoggedIn") {
				errf("ErrorNumber %q", r.str("ErrorNumber"))
			}
		}
		switch rt {
		case 1:
			if _, err := netip.ParseAddrPort(isStr("ClientIP")); err != nil {
				errf("ClientIP: %v", err)
			}
			if isStr("ResultStatus") != "True" || m["ExternalAccess"] != false {
				errf("ResultStatus %v ExternalAccess %v", m["ResultStatus"], m["ExternalAccess"])
			}
			params, _ := m["Parameters"].([]any)
			for _, p := range params {
				p, _ := p.(map[string]any)
				if _, ok := p["Name"].(string); !ok {
					errf("Parameters %v", params)
				}
				if _, ok := p["Value"].(string); !ok {
					errf("Parameters %v", params)
				}
			}
		case 8:
			for _, k := range []string{"ModifiedProperties", "Actor", "Target", "ExtendedProperties"} {
				if _, ok := m[k].([]any); !ok {
					errf("%s is %T", k, m[k])
				}
			}
		}
		if t.Failed() && i > 20 {
			t.FailNow()
		}
	}
	for _, op := range []string{"MailItemsAccessed", "Send", "SearchQueryInitiatedExchange", "SearchQueryInitiatedSharePoint",
		"FileAccessed", "FileModified", "FileDownloaded", "UserLoggedIn", "UserLoginFailed", "Set-Mailbox",
		"Update user.", "Add member to group.", "New-InboxRule", "Consent to application.", "Add-MailboxPermission"} {
		if seenOps[op] == 0 {
			t.Errorf("no %s records", op)
		}
	}
}

func TestOrderAndRange(t *testing.T) {
	for _, off := range []time.Duration{0, 5*time.Hour + 30*time.Minute, -8 * time.Hour} {
		cfg := Config{Tenant: "contoso", Users: 30, Days: 3, Seed: 1, UTCOffset: off, Start: monday.Add(7 * time.Hour), Scenarios: allScenarios}
		out := generate(t, cfg)
		start, end := cfg.Start, cfg.Start.Add(72*time.Hour)
		for i, r := range out.recs {
			if r.t.Before(start) || !r.t.Before(end) {
				t.Fatalf("offset %v: record %d at %v is outside [%v, %v)", off, i, r.t, start, end)
			}
			if i > 0 && r.t.Before(out.recs[i-1].t) {
				t.Fatalf("offset %v: record %d at %v comes after %v", off, i, r.t, out.recs[i-1].t)
			}
		}
		st := out.g.Stats()
		if st.Records != int64(len(out.recs)) || !st.First.Equal(out.recs[0].t) || !st.Last.Equal(out.recs[len(out.recs)-1].t) {
			t.Errorf("Stats %+v disagree with the records", st)
		}
	}
}

// TestShape checks the diurnal and weekly rhythm in the tenant's zone.
func TestShape(t *testing.T) {
	for _, off := range []time.Duration{0, 5 * time.Hour} {
		g, err := New(Config{Tenant: "contoso", Users: 150, Days: 14, Seed: 5, UTCOffset: off})
		if err != nil {
			t.Fatal(err)
		}
		var hours [24]float64
		var weekday, weekend float64
		for {
			raw, ok := g.Next()
			if !ok {
				break
			}
			local := recordTime(t, raw).Add(off)
			hours[local.Hour()]++
			if wd := local.Weekday(); wd == time.Saturday || wd == time.Sunday {
				weekend++
			} else {
				weekday++
			}
		}
		work := (hours[9] + hours[10] + hours[11] + hours[14] + hours[15] + hours[16]) / 6
		night := (hours[1] + hours[2] + hours[3] + hours[4]) / 4
		if work < 8*night {
			t.Errorf("offset %v: working hours %.0f/h, night %.0f/h: want a clear diurnal rhythm", off, work, night)
		}
		// 10 weekdays and 4 weekend days in two weeks.
		if wdRate, weRate := weekday/10, weekend/4; wdRate < 3*weRate {
			t.Errorf("offset %v: %.0f records per weekday, %.0f per weekend day", off, wdRate, weRate)
		}
	}
}

func TestRate(t *testing.T) {
	for _, tc := range []struct {
		users, days int
		rate        float64
	}{{100, 14, 0}, {100, 7, 40}, {60, 10, 300}} {
		g, err := New(Config{Tenant: "contoso", Users: tc.users, Days: tc.days, Rate: tc.rate, Seed: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, ok := g.Next(); ok; _, ok = g.Next() {
		}
		want := tc.rate
		if want == 0 {
			want = DefaultRate
		}
		got := float64(g.Stats().Records) / float64(tc.users*tc.days)
		if got < 0.88*want || got > 1.12*want {
			t.Errorf("%d users, %d days, rate %v: %.1f records per user per day", tc.users, tc.days, want, got)
		}
	}
}

// TestThrottling checks MailItemsAccessed throttling per mailbox: no more
// than ThrottleLimit Bind records within 24 hours; the next one says
// IsThrottled=True and the mailbox has no Bind record for 24 hours after.
func TestThrottling(t *testing.T) {
	g, err := New(Config{Tenant: "contoso", Users: 300, Days: 4, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	type bind struct {
		t         int64
		throttled bool
	}
	binds := map[string][]bind{}
	syncs := map[string]int{}
	for {
		raw, ok := g.Next()
		if !ok {
			break
		}
		if !bytes.Contains(raw, []byte(`"Operation":"MailItemsAccessed"`)) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		ct, _ := time.Parse("2006-01-02T15:04:05", m["CreationTime"].(string))
		mbx := m["MailboxOwnerUPN"].(string)
		if opProp(m, "MailAccessType") == "Sync" {
			syncs[mbx]++
			if opProp(m, "IsThrottled") != "False" {
				t.Errorf("throttled sync record: %s", raw)
			}
			continue
		}
		binds[mbx] = append(binds[mbx], bind{ct.Unix(), opProp(m, "IsThrottled") == "True"})
	}
	throttled := 0
	for mbx, bs := range binds {
		lo := 0
		for i, b := range bs {
			for bs[lo].t <= b.t-throttleWindow {
				lo++
			}
			n := i - lo + 1 // Bind records within 24 hours, this one included
			if n > ThrottleLimit+1 || n == ThrottleLimit+1 && !b.throttled {
				t.Fatalf("%s: %d Bind records within 24 hours up to %s without IsThrottled", mbx, n, time.Unix(b.t, 0).UTC())
			}
			if b.throttled {
				throttled++
				if n != ThrottleLimit+1 {
					t.Errorf("%s: IsThrottled after %d records in 24 hours, want after %d", mbx, n-1, ThrottleLimit)
				}
				if i+1 < len(bs) && bs[i+1].t < b.t+throttleWindow {
					t.Errorf("%s: Bind record %v after being throttled at %v", mbx, time.Unix(bs[i+1].t, 0).UTC(), time.Unix(b.t, 0).UTC())
				}
			}
		}
	}
	st := g.Stats()
	if throttled == 0 || int64(throttled) != st.Throttled || st.Suppressed == 0 {
		t.Errorf("throttled records: %d seen, stats %d throttled %d suppressed; want some", throttled, st.Throttled, st.Suppressed)
	}
}

func labelled(out run, scenario string) []rec {
	var l []rec
	for _, r := range out.recs {
		if r.label != nil && r.label.Scenario == scenario {
			l = append(l, r)
		}
	}
	return l
}

func TestStorm0558(t *testing.T) {
	cfg := Config{Tenant: "contoso", Users: 60, Days: 14, Seed: 9, Scenarios: []string{ScenarioStorm0558}}
	out := generate(t, cfg)
	infos := out.g.Scenarios()
	if len(infos) != 1 || infos[0].Name != ScenarioStorm0558 {
		t.Fatalf("Scenarios() = %+v", infos)
	}
	info := infos[0]
	if n := len(info.Targets); n < 3 || n > 5 {
		t.Errorf("%d targets, want 3 to 5", n)
	}
	stormNet := netip.MustParsePrefix(StormNetwork)
	days := map[string]map[string]bool{} // day -> session ids
	injected := labelled(out, ScenarioStorm0558)
	if len(injected) == 0 || int64(len(injected)) != out.g.Stats().Injected[ScenarioStorm0558] {
		t.Fatalf("%d injected records, stats say %d", len(injected), out.g.Stats().Injected[ScenarioStorm0558])
	}
	for _, r := range injected {
		owner := r.str("MailboxOwnerUPN")
		ip, err := netip.ParseAddr(r.str("ClientIPAddress"))
		switch {
		case r.str("Operation") != "MailItemsAccessed" || r.access() != "Bind":
			t.Errorf("injected %s %s", r.str("Operation"), r.access())
		case r.str("AppId") != StormAppID || r.str("ClientAppId") != StormAppID:
			t.Errorf("injected record with AppId %s ClientAppId %s", r.str("AppId"), r.str("ClientAppId"))
		case !slices.Contains(info.Targets, owner) || r.str("UserId") != owner || r.label.Entity != owner:
			t.Errorf("injected record against %s by %s labelled %s; targets %v", owner, r.str("UserId"), r.label.Entity, info.Targets)
		case err != nil || !stormNet.Contains(ip) && ip.String() != StormVPS1 && ip.String() != StormVPS2:
			t.Errorf("injected record from %s", r.str("ClientIPAddress"))
		case r.t.Before(cfg.Start.Add(9 * 24 * time.Hour)):
			t.Errorf("injected record at %v, before the scenario start", r.t)
		}
		day := r.t.Format("2006-01-02")
		if days[day] == nil {
			days[day] = map[string]bool{}
		}
		days[day][r.str("SessionId")] = true
	}
	if len(days) != 5 {
		t.Errorf("storm-0558 active on %d days, want 5", len(days))
	}
	for d, s := range days {
		if len(s) < 2 || len(s) > 4 {
			t.Errorf("%s: %d sessions, want 2 to 4", d, len(s))
		}
	}
	// The application and the network are never seen in normal activity.
	for _, r := range out.recs {
		if r.label == nil && (bytes.Contains(r.raw, []byte(StormAppID)) || bytes.Contains(r.raw, []byte(`"203.0.113.`)) ||
			bytes.Contains(r.raw, []byte(StormVPS1)) || bytes.Contains(r.raw, []byte(StormVPS2))) {
			t.Fatalf("normal record carries a storm-0558 indicator: %s", r.raw)
		}
	}

	// Scenarios come on top: the normal records are exactly those of the
	// same run without the scenario.
	cfg.Scenarios = nil
	base := generate(t, cfg)
	var normal [][]byte
	for _, r := range out.recs {
		if r.label == nil {
			normal = append(normal, r.raw)
		}
	}
	if len(normal) != len(base.recs) {
		t.Fatalf("%d normal records with the scenario, %d without", len(normal), len(base.recs))
	}
	for i := range normal {
		if !bytes.Equal(normal[i], base.recs[i].raw) {
			t.Fatalf("normal record %d differs with the scenario:\n%s\n%s", i, normal[i], base.recs[i].raw)
		}
	}
}

func TestOtherScenarios(t *testing.T) {
	cfg := Config{Tenant: "contoso", Users: 80, Days: 9, Seed: 11, Scenarios: allScenarios}
	out := generate(t, cfg)
	info := map[string]ScenarioInfo{}
	for _, si := range out.g.Scenarios() {
		info[si.Name] = si
		if si.Planned == 0 || out.g.Stats().Injected[si.Name] == 0 {
			t.Errorf("%s injected nothing", si.Name)
		}
	}
	sStart := cfg.Start.Add(6 * 24 * time.Hour)
	for _, name := range allScenarios {
		for _, r := range labelled(out, name) {
			if r.t.Before(sStart) {
				t.Errorf("%s: record at %v before the scenario start %v", name, r.t, sStart)
			}
		}
	}

	t.Run("inbox-rule-forwarding", func(t *testing.T) {
		recs := labelled(out, ScenarioInboxRule)
		victim := info[ScenarioInboxRule].Entities[0]
		var failed, loggedIn, rule, redirect time.Time
		for _, r := range recs {
			if r.str("UserId") != victim || r.label.Entity != victim {
				t.Errorf("record by %s labelled %s, victim %s", r.str("UserId"), r.label.Entity, victim)
			}
			switch r.str("Operation") {
			case "UserLoginFailed":
				if failed.IsZero() {
					failed = r.t
				}
			case "UserLoggedIn":
				if loggedIn.IsZero() {
					loggedIn = r.t
				}
				if r.str("ClientIP") != InboxRuleIP1 && r.str("ClientIP") != InboxRuleIP2 {
					t.Errorf("attacker sign-in from %s", r.str("ClientIP"))
				}
			case "New-InboxRule":
				rule = r.t
				if !bytes.Contains(r.raw, []byte(`{"Name":"ForwardTo","Value":"`)) || !bytes.Contains(r.raw, []byte("@"+InboxRuleDomain+`"`)) {
					t.Errorf("New-InboxRule without external ForwardTo: %s", r.raw)
				}
			case "Set-InboxRule":
				redirect = r.t
				if !bytes.Contains(r.raw, []byte(`{"Name":"RedirectTo","Value":"`)) {
					t.Errorf("Set-InboxRule without RedirectTo: %s", r.raw)
				}
			}
		}
		if failed.IsZero() || loggedIn.IsZero() || rule.IsZero() || redirect.IsZero() ||
			!failed.Before(loggedIn) || !loggedIn.Before(rule) || !rule.Before(redirect) {
			t.Errorf("sequence: failed %v, signed in %v, rule %v, redirect %v", failed, loggedIn, rule, redirect)
		}
	})

	t.Run("oauth-consent-phishing", func(t *testing.T) {
		victim := info[ScenarioConsentPhishing].Entities[0]
		var consent time.Time
		reads := 0
		for _, r := range labelled(out, ScenarioConsentPhishing) {
			switch r.str("Operation") {
			case "Consent to application.":
				consent = r.t
				if r.str("UserId") != victim || !bytes.Contains(r.raw, []byte("Mail.Read")) {
					t.Errorf("consent: %s", r.raw)
				}
			case "MailItemsAccessed":
				reads++
				if consent.IsZero() || !consent.Before(r.t) {
					t.Errorf("mail read at %v before the consent", r.t)
				}
				if r.str("ClientAppId") != ConsentAppID || r.str("AppId") != appGraph || r.str("MailboxOwnerUPN") != victim {
					t.Errorf("app read: %s", r.raw)
				}
			}
		}
		if consent.IsZero() || reads < 5 {
			t.Errorf("consent at %v, %d reads", consent, reads)
		}
		for _, r := range out.recs {
			if r.label == nil && bytes.Contains(r.raw, []byte(ConsentAppID)) {
				t.Fatalf("normal record carries the consented app: %s", r.raw)
			}
		}
	})

	t.Run("delegated-mailbox-abuse", func(t *testing.T) {
		si := info[ScenarioDelegatedMailbox]
		admin, target := si.Entities[0], si.Targets[0]
		var grant time.Time
		reads := 0
		for _, r := range labelled(out, ScenarioDelegatedMailbox) {
			if r.str("UserId") != admin {
				t.Errorf("record by %s, want the admin %s", r.str("UserId"), admin)
			}
			switch r.str("Operation") {
			case "Add-MailboxPermission":
				grant = r.t
				if !bytes.Contains(r.raw, []byte(`{"Name":"User","Value":"`+admin+`"}`)) || !bytes.Contains(r.raw, []byte(`"FullAccess"`)) {
					t.Errorf("grant: %s", r.raw)
				}
			case "MailItemsAccessed":
				reads++
				lt, _ := r.fields()["LogonType"].(float64)
				if grant.IsZero() || !grant.Before(r.t) || r.str("MailboxOwnerUPN") != target || lt != 2 {
					t.Errorf("read at %v (grant %v): %s", r.t, grant, r.raw)
				}
			}
		}
		if grant.IsZero() || reads < 10 {
			t.Errorf("grant at %v, %d reads", grant, reads)
		}
		for _, r := range out.recs {
			if r.label == nil && bytes.Contains(r.raw, []byte(`"UserId":"`+admin+`"`)) && bytes.Contains(r.raw, []byte(`"MailboxOwnerUPN":"`+target+`"`)) {
				t.Errorf("normal activity of the admin on the target mailbox: %s", r.raw)
			}
		}
	})
}

// TestDelegates checks that delegate access is consistent: a user reads
// another mailbox either throughout the run or only after an admin granted
// it, never out of nowhere.
func TestDelegates(t *testing.T) {
	cfg := Config{Tenant: "contoso", Users: 120, Days: 14, Seed: 6}
	out := generate(t, cfg)
	domain := "@" + out.g.Config().Domain
	granted := map[[2]string]time.Time{}
	type pair = [2]string
	days := map[pair]map[int]bool{}
	first := map[pair]time.Time{}
	for _, r := range out.recs {
		if !bytes.Contains(r.raw, []byte(`"LogonType":2`)) && !bytes.Contains(r.raw, []byte(`"Add-MailboxPermission"`)) {
			continue
		}
		switch r.str("Operation") {
		case "Add-MailboxPermission":
			var identity, user string
			for _, p := range r.fields()["Parameters"].([]any) {
				p := p.(map[string]any)
				switch p["Name"] {
				case "Identity":
					identity = p["Value"].(string) + domain
				case "User":
					user = p["Value"].(string)
				}
			}
			granted[pair{user, identity}] = r.t
		case "MailItemsAccessed", "Send", "SearchQueryInitiatedExchange":
			if r.fields()["LogonType"].(float64) != 2 {
				continue
			}
			p := pair{r.str("UserId"), r.str("MailboxOwnerUPN")}
			if days[p] == nil {
				days[p] = map[int]bool{}
				first[p] = r.t
			}
			days[p][int(r.t.Sub(out.g.Config().Start).Hours()/24)] = true
		}
	}
	if len(days) < 5 {
		t.Fatalf("only %d delegate pairs", len(days))
	}
	grantedPairs := 0
	for p, d := range days {
		if at, ok := granted[p]; ok {
			grantedPairs++
			if first[p].Before(at) {
				t.Errorf("%s read %s at %v, before the grant at %v", p[0], p[1], first[p], at)
			}
			continue
		}
		if len(d) < 5 {
			t.Errorf("%s read %s on %d of 14 days only", p[0], p[1], len(d))
		}
	}
	t.Logf("%d delegate pairs, %d granted during the run", len(days), grantedPairs)
}

func TestValidation(t *testing.T) {
	ok := Config{Tenant: "contoso", Users: 10, Days: 3}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"tenant", func(c *Config) { c.Tenant = "" }, "tenant"},
		{"tenant chars", func(c *Config) { c.Tenant = "a b" }, "tenant"},
		{"users", func(c *Config) { c.Users = 0 }, "users"},
		{"days", func(c *Config) { c.Days = -1 }, "days"},
		{"rate", func(c *Config) { c.Rate = -5 }, "rate"},
		{"offset", func(c *Config) { c.UTCOffset = 15 * time.Hour }, "offset"},
		{"scenario", func(c *Config) { c.Scenarios = []string{"storm-0558", "stuxnet"} },
			`unknown scenario "stuxnet" (known: delegated-mailbox-abuse, inbox-rule-forwarding, oauth-consent-phishing, storm-0558)`},
		{"scenario users", func(c *Config) { c.Users = 3; c.Scenarios = []string{"storm-0558"} }, "at least"},
		{"scenario start", func(c *Config) {
			c.Scenarios = []string{"storm-0558"}
			c.ScenarioStart = defaultStart.Add(5 * 24 * time.Hour)
		}, "outside the run"},
	} {
		cfg := ok
		tc.mod(&cfg)
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	if _, err := New(ok); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestParseStart(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-03-02":                monday,
		"2026-03-02T09:30:00Z":      monday.Add(9*time.Hour + 30*time.Minute),
		"2026-03-02T10:30:00+01:00": monday.Add(9*time.Hour + 30*time.Minute),
	} {
		got, err := ParseStart(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseStart(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseStart("yesterday"); err == nil {
		t.Error("ParseStart accepted \"yesterday\"")
	}
}

func TestWriteTo(t *testing.T) {
	cfg := Config{Tenant: "contoso", Users: 10, Days: 1, Seed: 1}
	g, _ := New(cfg)
	var buf bytes.Buffer
	n, err := g.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo = %d, %v; wrote %d", n, err, buf.Len())
	}
	lines := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
	if int64(len(lines)) != g.Stats().Records {
		t.Errorf("%d lines, %d records", len(lines), g.Stats().Records)
	}
}

// TestScenariosSmallTenant runs every scenario in the smallest tenant
// allowed: victims stay distinct and every scenario still injects.
func TestScenariosSmallTenant(t *testing.T) {
	out := generate(t, Config{Tenant: "tiny", Users: minScenarioUsers, Days: 3, Seed: 1, Scenarios: allScenarios})
	seen := map[string]string{}
	for _, si := range out.g.Scenarios() {
		if out.g.Stats().Injected[si.Name] == 0 {
			t.Errorf("%s injected nothing", si.Name)
		}
		for _, e := range append(append([]string(nil), si.Entities...), si.Targets...) {
			if other, ok := seen[e]; ok && other != si.Name {
				t.Errorf("%s is used by %s and %s", e, other, si.Name)
			}
			seen[e] = si.Name
		}
	}
	if n := len(out.g.Scenarios()); n != len(allScenarios) {
		t.Errorf("%d scenarios described, want %d", n, len(allScenarios))
	}
}
