package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-audit/custos/alert"
)

const secret = "0123456789abcdef-test"

// receiver is a webhook endpoint on loopback that answers with whatever
// fail says and keeps what it accepted.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	got      []delivery
	attempts int
	fail     func(body []byte, attempt int) int // status to answer; 0 accepts
}

type delivery struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.attempts++
		if r.fail != nil {
			if code := r.fail(body, r.attempts); code != 0 {
				http.Error(w, "not now", code)
				return
			}
		}
		r.got = append(r.got, delivery{req.Header.Clone(), body})
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) setFail(f func(body []byte, attempt int) int) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

func (r *receiver) messages(t *testing.T) []Message {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Message
	for _, d := range r.got {
		if err := Verify(secret, d.header.Get("X-Custos-Signature"), d.body, time.Now(), time.Minute); err != nil {
			t.Fatalf("delivery fails verification: %v", err)
		}
		var m Message
		if err := json.Unmarshal(d.body, &m); err != nil {
			t.Fatalf("delivery: %v", err)
		}
		out = append(out, m)
	}
	return out
}

// waitFor polls cond; the deadline only bounds a broken test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type fixture struct {
	dir    string
	alerts *alert.Store
	n      *Notifier
	stop   func()
}

func start(t *testing.T, dir string) *fixture {
	t.Helper()
	alerts, err := alert.Open(filepath.Join(dir, "alerts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := Open(filepath.Join(dir, "notify.json"), alerts, Options{BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond, GiveUpAfter: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	f := &fixture{dir: dir, alerts: alerts, n: n}
	f.stop = func() { cancel(); <-done; alerts.Close() }
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			f.stop()
		}
	})
	return f
}

func raise(t *testing.T, s *alert.Store, tenant, entity, severity string) alert.Alert {
	t.Helper()
	a, fresh, err := s.Raise(alert.Finding{Tenant: tenant, Detector: "mail-app-new", Title: "new app reading mail",
		Severity: severity, Entity: entity, RecordID: "rec-" + entity, At: time.Now(), Explanation: "app " + entity + " read mail"})
	if err != nil || !fresh {
		t.Fatalf("raise %s: fresh=%v err=%v", entity, fresh, err)
	}
	return a
}

func TestDeliversSignedAlertsOfItsTenantInOrder(t *testing.T) {
	rx := newReceiver(t)
	f := start(t, t.TempDir())
	raise(t, f.alerts, "contoso", "before-the-channel", "high")
	ch, err := f.n.Add("contoso", Channel{Name: "soc", URL: rx.URL + "/hook/secret-path", Secret: secret, MinSeverity: "medium"}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, sev := range []string{"high", "low", "critical", "medium"} {
		a := raise(t, f.alerts, "contoso", fmt.Sprint("app-", i), sev)
		if sev != "low" {
			want = append(want, a.ID)
		}
	}
	raise(t, f.alerts, "fabrikam", "other-tenant", "critical")
	waitFor(t, "three deliveries", func() bool { return len(rx.messages(t)) >= 3 })
	// Let any wrong extra delivery arrive before counting.
	waitFor(t, "the cursor to pass the last alert", func() bool { return f.n.List("contoso")[0].Through == f.alerts.LastSeq()-1 })
	msgs := rx.messages(t)
	var got []string
	for _, m := range msgs {
		if m.Event != "alert.opened" || m.Alert.Tenant != "contoso" {
			t.Errorf("delivered %s of tenant %s", m.Event, m.Alert.Tenant)
		}
		got = append(got, m.Alert.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v (in order, no history, nothing below medium, nothing of another tenant)", got, want)
	}
	rx.mu.Lock()
	h := rx.got[0].header
	rx.mu.Unlock()
	if h.Get("X-Custos-Delivery") != ch.ID+"."+want[0] || h.Get("X-Custos-Event") != "alert.opened" {
		t.Errorf("headers: %v", h)
	}
	st := f.n.List("contoso")
	if len(st) != 1 || st[0].Delivered != 3 || st[0].Pending != 0 || st[0].Secret != "" || !st[0].SecretSet ||
		strings.Contains(st[0].URL, "secret-path") {
		t.Errorf("status %+v", st)
	}
	if got := f.n.List("fabrikam"); len(got) != 0 {
		t.Errorf("fabrikam sees %d channels of contoso", len(got))
	}
}

func TestRetriesWithBackoffUntilTheReceiverRecovers(t *testing.T) {
	rx := newReceiver(t)
	rx.setFail(func(_ []byte, attempt int) int {
		if attempt <= 4 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	f := start(t, t.TempDir())
	if _, err := f.n.Add("contoso", Channel{Name: "soc", URL: rx.URL, Secret: secret}, ""); err != nil {
		t.Fatal(err)
	}
	a := raise(t, f.alerts, "contoso", "app", "high")
	waitFor(t, "the delivery", func() bool { return len(rx.messages(t)) == 1 })
	if m := rx.messages(t)[0]; m.Alert.ID != a.ID {
		t.Fatalf("delivered %s, want %s", m.Alert.ID, a.ID)
	}
	rx.mu.Lock()
	attempts := rx.attempts
	rx.mu.Unlock()
	if attempts != 5 {
		t.Errorf("%d attempts, want 4 failures then a success", attempts)
	}
	waitFor(t, "the status to clear", func() bool { return f.n.List("contoso")[0].LastError == "" })
}

func TestUndeliveredAlertsSurviveARestart(t *testing.T) {
	rx := newReceiver(t)
	rx.setFail(func([]byte, int) int { return http.StatusBadGateway })
	dir := t.TempDir()
	f := start(t, dir)
	if _, err := f.n.Add("contoso", Channel{Name: "soc", URL: rx.URL, Secret: secret, Format: FormatJSON}, ""); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 5 {
		want = append(want, raise(t, f.alerts, "contoso", fmt.Sprint("app-", i), "high").ID)
	}
	waitFor(t, "failed attempts", func() bool { rx.mu.Lock(); defer rx.mu.Unlock(); return rx.attempts >= 3 })
	if st := f.n.List("contoso")[0]; st.Pending != 5 || st.LastError == "" || st.FailingAt.IsZero() {
		t.Fatalf("while failing: %+v", st)
	}
	f.stop()

	rx.setFail(nil)
	f = start(t, dir)
	waitFor(t, "the backlog", func() bool { return len(rx.messages(t)) >= 5 })
	waitFor(t, "the cursor", func() bool { return f.n.List("contoso")[0].Pending == 0 })
	var got []string
	for _, m := range rx.messages(t) {
		got = append(got, m.Alert.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after restart delivered %v, want %v", got, want)
	}
}

func TestAnAlertTheReceiverKeepsRejectingIsDroppedAndCounted(t *testing.T) {
	rx := newReceiver(t)
	rx.setFail(func(body []byte, _ int) int {
		if strings.Contains(string(body), "poison") {
			return http.StatusBadRequest
		}
		return 0
	})
	f := start(t, t.TempDir())
	if _, err := f.n.Add("contoso", Channel{Name: "soc", URL: rx.URL, Secret: secret}, ""); err != nil {
		t.Fatal(err)
	}
	raise(t, f.alerts, "contoso", "poison", "high")
	good := raise(t, f.alerts, "contoso", "fine", "high")
	waitFor(t, "the next alert", func() bool { return len(rx.messages(t)) == 1 })
	if m := rx.messages(t)[0]; m.Alert.ID != good.ID {
		t.Fatalf("delivered %s, want %s", m.Alert.ID, good.ID)
	}
	rx.mu.Lock()
	attempts := rx.attempts
	rx.mu.Unlock()
	st := f.n.List("contoso")[0]
	if attempts != 4 || st.Dropped != 1 || st.Delivered != 1 {
		t.Errorf("attempts %d (want 3 rejected + 1), status %+v", attempts, st)
	}
}

func TestRemovedChannelStopsAndOtherTenantsCannotTouchIt(t *testing.T) {
	rx := newReceiver(t)
	f := start(t, t.TempDir())
	ch, err := f.n.Add("contoso", Channel{Name: "soc", URL: rx.URL, Secret: secret}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.n.Remove("fabrikam", ch.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant removed it: %v", err)
	}
	if err := f.n.Test(context.Background(), "fabrikam", ch.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant tested it: %v", err)
	}
	if err := f.n.Test(context.Background(), "contoso", ch.ID); err != nil {
		t.Fatal(err)
	}
	if m := rx.messages(t); len(m) != 1 || m[0].Event != "alert.test" {
		t.Fatalf("test delivery: %+v", m)
	}
	if _, err := f.n.Remove("contoso", ch.ID); err != nil {
		t.Fatal(err)
	}
	raise(t, f.alerts, "contoso", "app", "critical")
	// The removed channel's worker has stopped: a fresh channel receives the
	// next alert, the removed one nothing more.
	rx2 := newReceiver(t)
	if _, err := f.n.Add("contoso", Channel{Name: "soc2", URL: rx2.URL, Secret: secret}, ""); err != nil {
		t.Fatal(err)
	}
	raise(t, f.alerts, "contoso", "app2", "critical")
	waitFor(t, "the new channel", func() bool { return len(rx2.messages(t)) == 1 })
	if m := rx.messages(t); len(m) != 1 {
		t.Fatalf("removed channel got %d messages", len(m))
	}
}

func TestChannelValidation(t *testing.T) {
	f := start(t, t.TempDir())
	for _, c := range []Channel{
		{Name: "", URL: "https://example.org/h", Secret: secret},
		{Name: "x", URL: "ftp://example.org/h", Secret: secret},
		{Name: "x", URL: "/relative", Secret: secret},
		{Name: "x", URL: "https://user:pw@example.org/h", Secret: secret},
		{Name: "x", URL: "https://example.org/h"}, // json needs a secret
		{Name: "x", URL: "https://example.org/h", Secret: "short"},
		{Name: "x", URL: "https://example.org/h", Secret: secret, Format: "email"},
		{Name: "x", URL: "https://example.org/h", Secret: secret, MinSeverity: "urgent"},
	} {
		if _, err := f.n.Add("contoso", c, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v accepted (%v)", c, err)
		}
	}
	if _, err := f.n.Add("contoso", Channel{Name: "teams", URL: "https://example.org/workflows/x?sig=abc", Format: FormatTeams}, ""); err != nil {
		t.Errorf("a teams channel needs no secret: %v", err)
	}
	if st := f.n.List("contoso"); len(st) != 1 || st[0].URL != "https://example.org/…" || st[0].MinSeverity != "low" {
		t.Errorf("status %+v", st)
	}
}

func TestChatPayloadsEscapeHostileText(t *testing.T) {
	a := alert.Alert{ID: "a1", Tenant: "contoso", Severity: "high", Title: "t", Entity: "<!channel> [click](https://evil.example) *x*",
		Explanation: "rule <@U123> & co", Related: []string{"victim@contoso.com"}}
	b, err := payload(FormatSlack, "alert.opened", a)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, "<!channel>") || strings.Contains(s, "<@U123>") || !strings.Contains(s, "&lt;!channel&gt;") || !strings.Contains(s, "victim@contoso.com") {
		t.Errorf("slack: %s", s)
	}
	b, err = payload(FormatTeams, "alert.opened", a)
	if err != nil {
		t.Fatal(err)
	}
	var card struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string `json:"contentType"`
			Content     struct {
				Type string           `json:"type"`
				Body []map[string]any `json:"body"`
			} `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(b, &card); err != nil {
		t.Fatal(err)
	}
	if card.Type != "message" || len(card.Attachments) != 1 || card.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" ||
		card.Attachments[0].Content.Type != "AdaptiveCard" || len(card.Attachments[0].Content.Body) != 3 {
		t.Fatalf("teams card shape: %s", b)
	}
	if strings.Contains(string(b), "[click](") || !strings.Contains(string(b), `\\[click\\]`) {
		t.Errorf("teams: %s", b)
	}
}

func TestVerifyRejectsTamperingAndOldSignatures(t *testing.T) {
	body := []byte(`{"event":"alert.opened"}`)
	now := time.Now()
	sig := Sign(secret, now, body)
	if err := Verify(secret, sig, body, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"body":      Verify(secret, sig, []byte(`{"event":"alert.test"}`), now, time.Minute),
		"secret":    Verify(secret+"x", sig, body, now, time.Minute),
		"old":       Verify(secret, sig, body, now.Add(10*time.Minute), time.Minute),
		"malformed": Verify(secret, "v1=abc", body, now, time.Minute),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
