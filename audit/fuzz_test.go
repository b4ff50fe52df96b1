package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParse checks that Parse never panics and that what it accepts is
// sound: strict JSON by encoding/json's judgement, Raw the trimmed input,
// a UTC time, and the Id and Operation encoding/json reads.
// The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(mailItemsAccessed))
	f.Fuzz(func(t *testing.T, in []byte) {
		var p Parser
		r, err := p.Parse(in)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if !reflect.DeepEqual(r, Record{ID: r.ID}) {
				t.Fatalf("failed record carries more than its ID: %+v", r)
			}
			return
		}
		checkParsed(t, in, r)
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(r.Raw))
		d.UseNumber() // 1e999 is valid JSON, if not a valid float64
		if err := d.Decode(&m); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", in, err)
		}
		if m["Id"] != r.ID || m["Operation"] != r.Operation {
			t.Fatalf("Id %q, Operation %q; encoding/json reads %#v, %#v", r.ID, r.Operation, m["Id"], m["Operation"])
		}
		// Parsing again, by the same reused Parser, gives the same record.
		again, err := p.Parse(in)
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("second parse differs: %v\n%+v\n%+v", err, again, r)
		}
	})
}

// checkParsed checks what holds of every record either parser accepts.
func checkParsed(t *testing.T, in []byte, r Record) {
	t.Helper()
	if !bytes.Equal(r.Raw, trimSpace(in)) {
		t.Fatalf("Raw %q is not the trimmed input %q", r.Raw, in)
	}
	if r.ID == "" {
		t.Fatal("accepted without an ID")
	}
	if r.CreationTime.Location() != time.UTC {
		t.Fatalf("CreationTime %v is not UTC", r.CreationTime)
	}
	if r.IssuedAtTime.Location() != time.UTC {
		t.Fatalf("IssuedAtTime %v is not UTC", r.IssuedAtTime)
	}
	if !json.Valid(r.Raw) {
		t.Fatalf("accepted invalid JSON %q", r.Raw)
	}
	strs := append([]string{r.ID, r.Operation, r.OrganizationID, r.UserKey, r.Workload, r.ResultStatus,
		r.ObjectID, r.UserID, r.ClientIP, r.AppID, r.ClientAppID, r.SessionID, r.UniqueTokenID,
		r.ClientAppName, r.CorrelationID, r.ClientInfoString, r.MailboxOwnerUPN, r.MailboxGUID, r.MailAccessType}, r.InternetMessageIDs...)
	for _, s := range strs {
		if !utf8.ValidString(s) {
			t.Fatalf("column %q is not UTF-8", s)
		}
	}
	if r.ClientIP != "" && NormalizeIP(r.ClientIP) != r.ClientIP {
		t.Fatalf("ClientIP %q is not normalised", r.ClientIP)
	}
}

// FuzzMappingParse does the same for a Mapping, the Okta one of testdata.
func FuzzMappingParse(f *testing.F) {
	m := loadTestMappings(f)["okta"]
	f.Add([]byte(`{"uuid":"u1","published":"2025-03-15T10:42:17.318Z","eventType":"user.session.start","actor":{"id":"00u1","alternateId":"a@example.com"},"client":{"ipAddress":"[2001:db8::1]:443"},"target":[{"id":"t"}]}`))
	f.Add([]byte(`{"uuid":7,"published":"2025-03-15 10:42:17","eventType":"x","request":{"ipChain":[{"ip":"1.2.3.4"}]},"outcome":{"result":true}}`))
	f.Add([]byte(`{"uuid":"","published":"2025-03-15T10:42:17Z","eventType":"x"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := m.Parse(in)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			return
		}
		checkParsed(t, in, r)
		if r.Workload != "Okta" {
			t.Fatalf("constant workload lost: %q", r.Workload)
		}
	})
}

// FuzzMappingConfig checks that any mappings file either fails to load or
// gives mappings that parse events without panicking.
func FuzzMappingConfig(f *testing.F) {
	f.Add([]byte(`{"m":{"columns":{"id":"id","creation_time":"t","operation":"op","user_id":["a.0.b","c\\.d"]},"constants":{"workload":"W","record_type":15},"time_format":"unix_ms"}}`),
		[]byte(`{"id":"1","t":1742036812345,"op":"x","a":[{"b":"u"}]}`))
	f.Add([]byte(`{"h":{"columns":{"creation_time":"t","operation":"op"},"id_from_hash":true,"time_format":"2006-01-02"}}`),
		[]byte(`{"t":"2025-03-15","op":7}`))
	f.Fuzz(func(t *testing.T, config, event []byte) {
		maps, err := ParseMappings(config)
		if err != nil {
			return
		}
		for _, m := range maps {
			if r, err := m.Parse(event); err == nil {
				checkParsed(t, event, r)
			}
		}
	})
}
