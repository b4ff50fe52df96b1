package detect

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/audit"
)

func testEngine(t *testing.T) (*Engine, *alert.Store) {
	t.Helper()
	dir := t.TempDir()
	as, err := alert.Open(filepath.Join(dir, "alerts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as.Close() })
	e, err := Open(filepath.Join(dir, "detect"), nil, as, nil, Options{Learning: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return e, as
}

var day0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func mailRead(id, app string, at time.Time) audit.Record {
	return audit.Record{Tenant: "acme", ID: id, CreationTime: at, Operation: mailItemsAccessed, UserID: "ann@acme.example",
		MailboxOwnerUPN: "ann@acme.example", AppID: app, ClientIP: "198.18.0.7", Raw: []byte(`{}`)}
}

// Baselines run on record time: a record dated inside the learning period
// never alerts, however late it arrives, and a record of a value learned
// late but dated earlier is not news.
func TestLateAndOutOfOrderRecords(t *testing.T) {
	e, as := testEngine(t)
	seq := uint64(0)
	feed := func(recs ...audit.Record) {
		seq++
		e.apply(seq, recs)
	}
	var normal []audit.Record
	for d := range 10 {
		normal = append(normal, mailRead(fmt.Sprintf("n%d", d), "outlook", day0.AddDate(0, 0, d)))
	}
	feed(normal...)
	// Arrives after learning ended, but happened on day 2: learned, no alert.
	feed(mailRead("late", "backup-app", day0.AddDate(0, 0, 2)))
	// A new app on day 10 is news; "backup-app" is not.
	feed(mailRead("x1", "backup-app", day0.AddDate(0, 0, 10)), mailRead("x2", "evil-app", day0.AddDate(0, 0, 10)))
	got := as.List("acme", alert.Filter{Detector: MailAppNew})
	if len(got) != 1 || got[0].Entity != "evil-app" || got[0].Evidence[0] != "x2" {
		t.Fatalf("alerts %+v, want one for evil-app", got)
	}
	// A frame seen again (a replay after a restart) changes nothing.
	e.apply(seq, []audit.Record{mailRead("x3", "evil-app", day0.AddDate(0, 0, 11))})
	if a := as.List("acme", alert.Filter{Detector: MailAppNew}); a[0].Count != 1 {
		t.Fatalf("a replayed frame counted: %+v", a[0])
	}
	// The allowlist silences a known app.
	if err := e.Allowlist().Add("acme", Allow{Detector: MailAppNew, Value: "Partner-App"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Allowlist().Add("acme", Allow{Detector: "no-such-detector", Value: "x"}); err == nil {
		t.Fatal("an unknown detector was accepted")
	}
	feed(mailRead("p1", "partner-app", day0.AddDate(0, 0, 12)))
	if a := as.List("acme", alert.Filter{Detector: MailAppNew}); len(a) != 1 {
		t.Fatalf("the allowlisted app raised an alert: %+v", a)
	}
	// State survives a save and reopen.
	if err := e.saveOnly(); err != nil {
		t.Fatal(err)
	}
	e2, err := Open(e.dir, nil, as, nil, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if e2.Position() != seq || e2.Status("acme").Values != e.Status("acme").Values {
		t.Fatalf("reopened at %d with %d values, want %d with %d", e2.Position(), e2.Status("acme").Values, seq, e.Status("acme").Values)
	}
}

func TestTokenIssuerAndClientFamily(t *testing.T) {
	e, as := testEngine(t)
	logon := func(id string, at time.Time, issuer, ua string) audit.Record {
		raw := fmt.Sprintf(`{"Id":%q,"Operation":"UserLoggedIn","ExtendedProperties":[{"Name":"UserAgent","Value":%q},{"Name":"TokenIssuerType","Value":%q}]}`, id, ua, issuer)
		return audit.Record{Tenant: "acme", ID: id, CreationTime: at, Operation: "UserLoggedIn", UserID: "bob@acme.example", Raw: []byte(raw)}
	}
	win := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
	for d := range 8 {
		e.apply(uint64(d+1), []audit.Record{logon(fmt.Sprintf("l%d", d), day0.AddDate(0, 0, d), "AzureAD", win)})
	}
	e.apply(9, []audit.Record{logon("bad", day0.AddDate(0, 0, 9), "ADFS", "python-requests/2.31")})
	tok := as.List("acme", alert.Filter{Detector: TokenIssuerNew})
	if len(tok) != 1 || tok[0].Entity != "issuer:ADFS" {
		t.Fatalf("token alerts %+v", tok)
	}
	cli := as.List("acme", alert.Filter{Detector: ClientNew})
	if len(cli) != 1 || cli[0].Related[0] != "Python" {
		t.Fatalf("client alerts %+v", cli)
	}
	if f := uaFamily(win); f != "Chrome/Windows" {
		t.Errorf("family of a Windows Chrome agent: %q", f)
	}
}

// Records whose time is far ahead of the baseline's (custos's own audit
// records of an install fed with older history, a forged timestamp) must
// not age out what was learned: after them, a known app is still known.
func TestFutureAndOwnRecordsDoNotAgeOutTheBaseline(t *testing.T) {
	e, as := testEngine(t)
	var normal []audit.Record
	for d := range 10 {
		normal = append(normal, mailRead(fmt.Sprintf("n%d", d), "outlook", day0.AddDate(0, 0, d)))
	}
	e.apply(1, normal)
	own := mailRead("self", "custos", time.Now())
	own.RecordType, own.Operation = int32(audit.CustosAudit), "NotificationChanged"
	forged := mailRead("forged", "outlook", time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))
	e.apply(2, []audit.Record{own, forged})
	if err := e.saveOnly(); err != nil { // saving is when values age out
		t.Fatal(err)
	}
	e.apply(3, []audit.Record{mailRead("later", "outlook", day0.AddDate(0, 0, 11))})
	if got := as.List("acme", alert.Filter{Detector: MailAppNew}); len(got) != 0 {
		t.Fatalf("a learned app alerted after far-future records: %+v", got)
	}
	if st := e.Status("acme"); st.Latest.Year() > time.Now().Year()+1 {
		t.Errorf("the baseline's clock jumped to %s", st.Latest)
	}
}

// A delegate an administrator granted FullAccess reads the mailbox without
// an alert; a user who granted themselves access does not get that pass.
func TestGrantedAccessExplainsCrossMailboxReads(t *testing.T) {
	e, as := testEngine(t)
	var normal []audit.Record
	for d := range 10 {
		normal = append(normal, mailRead(fmt.Sprintf("n%d", d), "outlook", day0.AddDate(0, 0, d)))
	}
	e.apply(1, normal)
	grant := func(id, by, user string) audit.Record {
		raw := fmt.Sprintf(`{"Id":%q,"Operation":"Add-MailboxPermission","UserId":%q,"Parameters":[{"Name":"Identity","Value":"NAMPR01A001.prod.outlook.com/Microsoft Exchange Hosted Organizations/acme.example/ceo"},{"Name":"User","Value":%q},{"Name":"AccessRights","Value":"FullAccess"}]}`, id, by, user)
		return audit.Record{Tenant: "acme", ID: id, CreationTime: day0.AddDate(0, 0, 11), Operation: "Add-MailboxPermission", UserID: by, Raw: []byte(raw)}
	}
	read := func(id, user string) audit.Record {
		r := mailRead(id, "outlook", day0.AddDate(0, 0, 12))
		r.UserID, r.MailboxOwnerUPN = user, "CEO@acme.example"
		return r
	}
	e.apply(2, []audit.Record{
		grant("g1", "admin@acme.example", "pa@acme.example"),
		grant("g2", "mallory@acme.example", "mallory@acme.example"),
		read("r1", "pa@acme.example"),
		read("r2", "mallory@acme.example"),
	})
	got := as.List("acme", alert.Filter{Detector: CrossMailboxRead})
	if len(got) != 1 || got[0].Entity != "mallory@acme.example" {
		t.Fatalf("cross-mailbox alerts %+v, want one for mallory's self-granted access", got)
	}
}

// FuzzRawScans: the shortcuts through raw records agree with what they
// replace: mayNameToken with two bytes.Contains, plainExtendedValue with
// decoding the entry as JSON.
func FuzzRawScans(f *testing.F) {
	for _, s := range []string{
		`{"Name":"UserAgent","Value":"Mozilla/5.0 (Windows NT 10.0; Win64; x64)"},{"Name":"KeyId","Value":"k1"}`,
		`"UserAgent","Value":"a\"b"}`, `"UserAgent","Value":"tab	here"}`, `"UserAgent","Value":"é"}`,
		`"UserAgent","Value":"x"} `, `"UserAgent","Value":"x","Other":1}`, `"UserAgent":"x"}`, `"UserAgent","Value":""}`,
		`TokenIssuer`, `KeyI`, `xxTokenIssuerxx`, `okenIssuer KeyId`, `kKkK`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := bytes.Contains(b, []byte("TokenIssuer")) || bytes.Contains(b, []byte("KeyId"))
		if got := mayNameToken(b); got != want {
			t.Fatalf("mayNameToken(%q) = %v, want %v", b, got, want)
		}
		i := bytes.Index(b, []byte(`"UserAgent"`))
		if i < 0 {
			return
		}
		if v, ok := plainExtendedValue(b[i:]); ok && string(v) != extendedValue(b[i:]) {
			t.Fatalf("plainExtendedValue(%q) = %q, decoding says %q", b[i:], v, extendedValue(b[i:]))
		}
	})
}

// The client family cache answers what the families say, for clients
// and user agents met for the first time and again, even once full.
func TestClientFamilyCache(t *testing.T) {
	e, _ := testEngine(t)
	rec := func(cis, op, ua string) *audit.Record {
		raw := `{}`
		if ua != "" {
			raw = `{"ExtendedProperties":[{"Name":"UserAgent","Value":` + strconv.Quote(ua) + `}]}`
		}
		return &audit.Record{ClientInfoString: cis, Operation: op, Raw: []byte(raw)}
	}
	for round := range 2 {
		for i := range maxCachedClients + 10 {
			win := fmt.Sprintf("Mozilla/5.0 (Windows NT 10.0) Chrome/%d.0", i)
			for _, tc := range []struct {
				r    *audit.Record
				want string
			}{
				{rec("Client=OWA;Action=ViaProxy;"+win, "MailItemsAccessed", ""), "OWA Chrome/Windows"},
				{rec("Client=REST;Client=RESTSystem;", "MailItemsAccessed", ""), "REST"},
				{rec("", "UserLoggedIn", win), "Chrome/Windows"},
				{rec("", "UserLoggedIn", "python-requests/"+strconv.Itoa(i)+" \u00e9"), "Python"},
				{rec("", "FileAccessed", win), ""},
				{rec("", "UserLoginFailed", ""), ""},
				{rec(fmt.Sprintf("Tool%d/1.0", i), "Send", ""), fmt.Sprintf("Tool%d", i)},
			} {
				if got := e.clientFamily(tc.r); got != tc.want {
					t.Fatalf("round %d, %d: family of %q / %s: %q, want %q", round, i, tc.r.ClientInfoString, tc.r.Raw, got, tc.want)
				}
			}
		}
	}
	if n := len(e.clients.byInfo); n == 0 || n > maxCachedClients {
		t.Fatalf("the cache holds %d clients, want 1 to %d", n, maxCachedClients)
	}
}
