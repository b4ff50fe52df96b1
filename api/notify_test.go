package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-audit/custos/notify"
	"github.com/custos-audit/custos/selfaudit"
)

func TestNotificationChannels(t *testing.T) {
	e := newEnv(t)
	const secret = "s3cret-0123456789-hmac"
	var mu sync.Mutex
	var got []notify.Message
	fail := false
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if err := notify.Verify(secret, r.Header.Get("X-Custos-Signature"), body, time.Now(), time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var m notify.Message
		json.Unmarshal(body, &m)
		got = append(got, m)
	}))
	defer rx.Close()
	base, admin, read := "/api/v1/tenants/alpha/notifications", e.tokens["alpha/admin"], e.tokens["alpha/read"]

	for _, bad := range []string{
		`{"name":"x","url":"` + rx.URL + `"}`, // json without a secret
		`{"name":"x","url":"file:///etc/passwd","secret":"` + secret + `"}`,
		`{"name":"x","url":"` + rx.URL + `","secret":"` + secret + `","format":"pager"}`,
		`{"name":"x","url":"` + rx.URL + `","secret":"` + secret + `","minSeverity":"urgent"}`,
		`{"name":"x","url":`,
	} {
		if r := e.do("POST", base, admin, []byte(bad)); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad, r.status, r.body)
		}
	}
	r := e.do("POST", base, admin, []byte(`{"name":"soc webhook","url":"`+rx.URL+`/hook/credential-part","secret":"`+secret+`","minSeverity":"high"}`))
	if r.status != http.StatusCreated {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	var ch notify.Status
	json.Unmarshal(r.body, &ch)
	if ch.ID == "" || !ch.SecretSet || strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), "credential-part") || ch.Format != "json" {
		t.Fatalf("add answered %s", r.body)
	}
	r = e.do("GET", base, read, nil)
	var list struct{ Channels []notify.Status }
	json.Unmarshal(r.body, &list)
	if r.status != 200 || len(list.Channels) != 2 || strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), "credential-part") {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	if r := e.do("POST", base+"/"+ch.ID+"/test", admin, nil); r.status != 200 {
		t.Fatalf("test: %d %s", r.status, r.body)
	}
	mu.Lock()
	if len(got) != 1 || got[0].Event != "alert.test" || got[0].Alert.Tenant != "alpha" {
		t.Errorf("receiver got %+v", got)
	}
	fail = true
	mu.Unlock()
	if r := e.do("POST", base+"/"+ch.ID+"/test", admin, nil); r.status != http.StatusBadGateway || !strings.Contains(string(r.body), "503") {
		t.Errorf("test against a failing receiver: %d %s, want 502 naming the receiver's answer", r.status, r.body)
	}
	if r := e.do("DELETE", base+"/"+ch.ID, admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", base+"/"+ch.ID, admin, nil); r.status != http.StatusNotFound {
		t.Errorf("remove again: %d %s", r.status, r.body)
	}
	ops := auditOps(t, e, "alpha")
	if ops[selfaudit.NotificationChanged] != 2 || ops[selfaudit.NotificationTested] != 2 {
		t.Errorf("self-audit: %v", ops)
	}
	for _, rec := range auditRecords(t, e, "alpha") {
		if strings.Contains(string(rec.Raw), secret) || strings.Contains(string(rec.Raw), "credential-part") {
			t.Errorf("self-audit record %s holds a credential: %s", rec.Operation, rec.Raw)
		}
	}
}
