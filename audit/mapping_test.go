package audit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func loadTestMappings(t testing.TB) map[string]*Mapping {
	t.Helper()
	maps, err := LoadMappings(filepath.Join("testdata", "mappings.json"))
	if err != nil {
		t.Fatal(err)
	}
	return maps
}

func readLines(t *testing.T, name string) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	return lines
}

func TestMappingGitHub(t *testing.T) {
	m := loadTestMappings(t)["github"]
	lines := readLines(t, "github.ndjson")
	var got []Record
	for i, l := range lines {
		r, err := m.Parse(l)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if string(r.Raw) != string(l) {
			t.Errorf("line %d: Raw differs", i+1)
		}
		r.Raw = nil
		got = append(got, r)
	}
	blank := Record{RecordType: Absent, UserType: Absent, Scope: Absent, LogonType: Absent, Workload: "GitHub"}
	want := []Record{blank, blank, blank}
	want[0].ID = "Q2x1ZS1ub3QtcmVhbC1pZA"
	want[0].CreationTime = time.Date(2025, 3, 15, 11, 6, 52, 345e6, time.UTC)
	want[0].Operation = "repo.add_member"
	want[0].UserID = "mona-admin"
	want[0].UserKey = "5123001"
	want[0].ClientIP = "198.51.100.23"
	want[0].OrganizationID = "example-org"
	want[0].ObjectID = "example-org/payments-api"
	want[0].AppID = "1234567"
	want[0].SessionID = "c2hhMjU2IG9mIGEgdG9rZW4="
	want[0].ClientInfoString = "Mozilla/5.0 (X11; Linux x86_64)"

	// No _document_id: the id is derived from the bytes.
	want[1].ID = wantHashID(lines[1])
	want[1].CreationTime = time.Date(2025, 3, 15, 11, 8, 20, 1e6, time.UTC)
	want[1].Operation = "org.update_member"
	want[1].UserID = "mona-admin"
	want[1].UserKey = "5123001"
	want[1].ClientIP = "2001:db8:7::15"
	want[1].OrganizationID = "example-org"
	want[1].ObjectID = "octo-intern" // no repo or team: user comes next

	// Only created_at; an empty actor_ip is no address.
	want[2].ID = "aW5zdGFsbC1pZA"
	want[2].CreationTime = time.Date(2025, 3, 15, 11, 10, 0, 0, time.UTC)
	want[2].Operation = "integration_installation.create"
	want[2].UserID = "mona-admin"
	want[2].OrganizationID = "example-org"
	want[2].ObjectID = "example-org"
	if !reflect.DeepEqual(got, want) {
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("line %d:\ngot  %+v\nwant %+v", i+1, got[i], want[i])
			}
		}
	}
}

// wantHashID is the id_from_hash of a line, computed independently.
func wantHashID(raw []byte) string {
	sum := sha256.Sum256(trimSpace(raw))
	return hex.EncodeToString(sum[:16])
}

func TestMappingOkta(t *testing.T) {
	m := loadTestMappings(t)["okta"]
	lines := readLines(t, "okta.ndjson")

	r, err := m.Parse(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	r.Raw = nil
	want := Record{
		ID:               "4e3b2f9a-1c7d-11f0-9a3e-5b6c7d8e9f01",
		CreationTime:     time.Date(2025, 3, 15, 10, 42, 17, 318e6, time.UTC),
		RecordType:       Absent,
		Operation:        "user.session.start",
		UserType:         Absent,
		UserKey:          "00u1abcdEFGHijkl5d7",
		Workload:         "Okta",
		ResultStatus:     "SUCCESS",
		ObjectID:         "Example HR Portal",
		UserID:           "dana.smith@example.com",
		ClientIP:         "203.0.113.77",
		Scope:            Absent,
		ClientAppID:      "0oa9client7",
		SessionID:        "102aBcDeFgHiJkLmNoP",
		ClientInfoString: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3)",
		LogonType:        Absent,
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("line 1:\ngot  %+v\nwant %+v", r, want)
	}

	// client.ipAddress null: the next path, an array element, is used; the
	// target has no alternateId, so its id is.
	r, err = m.Parse(lines[1])
	if err != nil {
		t.Fatal(err)
	}
	if r.ClientIP != "2001:db8:1::99" || r.ObjectID != "0oa1appABCDE" || r.ResultStatus != "FAILURE" ||
		!r.CreationTime.Equal(time.Date(2025, 3, 15, 9, 44, 2, 1e6, time.UTC)) || r.CreationTime.Location() != time.UTC {
		t.Errorf("line 2: %+v", r)
	}

	_, err = m.Parse(lines[2])
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "published" || err.Error() != `published: unparsable time "yesterday" (format rfc3339)` {
		t.Errorf("line 3: %v", err)
	}
}

func TestMappingIDFromHash(t *testing.T) {
	m := loadTestMappings(t)["github"]
	a := []byte(`{"created_at":1742037000000,"action":"x"}`)
	b := []byte(`{"created_at":1742037000000, "action":"x"}`)
	ra, err := m.Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := m.Parse(append([]byte("  "), a...))
	rb, _ := m.Parse(b)
	if ra.ID != again.ID {
		t.Errorf("same bytes, different ids: %s %s", ra.ID, again.ID)
	}
	if ra.ID == rb.ID {
		t.Errorf("different bytes, same id %s", ra.ID)
	}
	if ra.ID != wantHashID(a) {
		t.Errorf("id %s, want %s", ra.ID, wantHashID(a))
	}
}

func TestMappingFormats(t *testing.T) {
	tests := []struct {
		name   string
		config string // the body of one mapping
		event  string
		check  func(r Record) (got, want any)
		err    string
	}{
		{name: "unix seconds", config: `"time_format":"unix"`, event: `{"id":"1","t":1742036812,"op":"x"}`,
			check: func(r Record) (any, any) { return r.CreationTime, time.Date(2025, 3, 15, 11, 6, 52, 0, time.UTC) }},
		{name: "unix seconds fraction", config: `"time_format":"unix"`, event: `{"id":"1","t":"1742036812.25","op":"x"}`,
			check: func(r Record) (any, any) { return r.CreationTime, time.Date(2025, 3, 15, 11, 6, 52, 25e7, time.UTC) }},
		{name: "unix micros", config: `"time_format":"unix_us"`, event: `{"id":"1","t":1742036812000001,"op":"x"}`,
			check: func(r Record) (any, any) { return r.CreationTime, time.Date(2025, 3, 15, 11, 6, 52, 1000, time.UTC) }},
		{name: "unix nanos", config: `"time_format":"unix_ns"`, event: `{"id":"1","t":1742036812000000001,"op":"x"}`,
			check: func(r Record) (any, any) { return r.CreationTime, time.Date(2025, 3, 15, 11, 6, 52, 1, time.UTC) }},
		{name: "unix before 1970", config: `"time_format":"unix_ms"`, event: `{"id":"1","t":-1500,"op":"x"}`,
			check: func(r Record) (any, any) { return r.CreationTime, time.Date(1969, 12, 31, 23, 59, 58, 5e8, time.UTC) }},
		{name: "Go layout", config: `"time_format":"02/Jan/2006:15:04:05 -0700"`, event: `{"id":"1","t":"15/Mar/2025:12:06:52 +0100","op":"x"}`,
			check: func(r Record) (any, any) { return r.CreationTime, time.Date(2025, 3, 15, 11, 6, 52, 0, time.UTC) }},
		{name: "Go layout without zone is UTC", config: `"time_format":"2006-01-02 15:04"`, event: `{"id":"1","t":"2025-03-15 11:06","op":"x"}`,
			check: func(r Record) (any, any) { return r.CreationTime, time.Date(2025, 3, 15, 11, 6, 0, 0, time.UTC) }},
		{name: "unix far future", config: `"time_format":"unix"`, event: `{"id":"1","t":1e300,"op":"x"}`, err: `t: unparsable time "1e300" (format unix)`},
		{name: "unix word", config: `"time_format":"unix"`, event: `{"id":"1","t":"soon","op":"x"}`, err: `t: unparsable time "soon" (format unix)`},
		{name: "time object", config: ``, event: `{"id":"1","t":{},"op":"x"}`, err: `t: want a string or a number, got object`},

		{name: "numeric id", config: ``, event: `{"id":12345,"t":"2025-03-15T11:06:52Z","op":"x"}`,
			check: func(r Record) (any, any) { return r.ID, "12345" }},
		{name: "missing id", config: ``, event: `{"t":"2025-03-15T11:06:52Z","op":"x"}`, err: `id: missing (nor event.id)`},
		{name: "empty id", config: ``, event: `{"id":"","event":{"id":""},"t":"2025-03-15T11:06:52Z","op":"x"}`, err: `id: missing (nor event.id)`},
		{name: "second id path", config: ``, event: `{"event":{"id":"e1"},"t":"2025-03-15T11:06:52Z","op":"x"}`,
			check: func(r Record) (any, any) { return r.ID, "e1" }},
		{name: "bool id", config: ``, event: `{"id":true,"t":"2025-03-15T11:06:52Z","op":"x"}`, err: `id: want a string or a number, got boolean`},
		{name: "missing time", config: ``, event: `{"id":"1","op":"x"}`, err: `t: missing`},
		{name: "operation constant", config: `"constants":{"operation":"login"}`, event: `{"id":"1","t":"2025-03-15T11:06:52Z"}`,
			check: func(r Record) (any, any) { return r.Operation, "login" }},
		{name: "operation path before constant", config: `"constants":{"operation":"login"}`, event: `{"id":"1","t":"2025-03-15T11:06:52Z","op":"logout"}`,
			check: func(r Record) (any, any) { return r.Operation, "logout" }},
		{name: "missing operation", config: ``, event: `{"id":"1","t":"2025-03-15T11:06:52Z"}`, err: `op: missing`},
		{name: "record type name", config: `"constants":{"record_type":"AzureActiveDirectoryStsLogon"}`, event: `{"id":"1","t":"2025-03-15T11:06:52Z","op":"x"}`,
			check: func(r Record) (any, any) { return r.RecordType, int32(15) }},
		{name: "record type path", config: `"columns":{"record_type":"rt"}`, event: `{"id":"1","t":"2025-03-15T11:06:52Z","op":"x","rt":"abc"}`,
			err: `rt: unknown record type "abc"`},
		{name: "typed columns", config: `"columns":{"user_type":"u","logon_type":"l","operation_count":"n","external_access":"e","is_throttled":"th","internet_message_ids":"m"}`,
			event: `{"id":"1","t":"2025-03-15T11:06:52Z","op":"x","u":"2","l":1.0,"n":"7","e":"True","th":true,"m":["<a@x>",5,"<b@x>"]}`,
			check: func(r Record) (any, any) {
				return [6]any{r.UserType, r.LogonType, r.OperationCount, r.ExternalAccess, r.IsThrottled, r.InternetMessageIDs},
					[6]any{int32(2), int32(1), int64(7), true, true, []string{"<a@x>", "5", "<b@x>"}}
			}},
		{name: "one message id", config: `"columns":{"internet_message_ids":"m"}`, event: `{"id":"1","t":"2025-03-15T11:06:52Z","op":"x","m":"<a@x>"}`,
			check: func(r Record) (any, any) { return r.InternetMessageIDs, []string{"<a@x>"} }},
		{name: "unusable optional columns", config: `"columns":{"user_type":"u","user_id":"who","client_ip":"ip"}`,
			event: `{"id":"1","t":"2025-03-15T11:06:52Z","op":"x","u":"admin","who":{"name":"a"},"ip":"host.example"}`,
			check: func(r Record) (any, any) {
				return [3]any{r.UserType, r.UserID, r.ClientIP}, [3]any{int32(Absent), "", ""}
			}},
		{name: "escaped dot and index", config: `"columns":{"user_id":"a\\.b.1.c"}`, event: `{"id":"1","t":"2025-03-15T11:06:52Z","op":"x","a.b":[{},{"c":"deep"}]}`,
			check: func(r Record) (any, any) { return r.UserID, "deep" }},
		{name: "numeric key in object", config: `"columns":{"user_id":"m.0"}`, event: `{"id":"1","t":"2025-03-15T11:06:52Z","op":"x","m":{"0":"zero"}}`,
			check: func(r Record) (any, any) { return r.UserID, "zero" }},
		{name: "not an object", config: ``, event: `[{"id":"1"}]`, err: `not a JSON object (got array)`},
		{name: "not JSON", config: ``, event: `{"id":1,}`, err: `invalid JSON at byte 8: want a string key, got character '}'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := `{"id":["id","event.id"],"creation_time":"t","operation":"op"}`
			body := tt.config
			// Merge the test's columns into the default ones.
			if strings.Contains(body, `"columns":{`) {
				body = strings.Replace(body, `"columns":{`, `"columns":{"id":["id","event.id"],"creation_time":"t","operation":"op",`, 1)
			} else {
				if body != "" {
					body += ","
				}
				body += `"columns":` + cfg
			}
			maps, err := ParseMappings([]byte(`{"m":{` + body + `}}`))
			if err != nil {
				t.Fatal(err)
			}
			r, err := maps["m"].Parse([]byte(tt.event))
			if tt.err != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || err.Error() != tt.err {
					t.Fatalf("error %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tt.check(r); !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
			if r.CreationTime.Location() != time.UTC {
				t.Errorf("CreationTime in %v", r.CreationTime.Location())
			}
		})
	}
}

func TestParseMappingsErrors(t *testing.T) {
	const cols = `"columns":{"id":"id","creation_time":"t","operation":"op"}`
	tests := []struct{ config, err string }{
		{`{"m":{` + cols + `,"colour":"red"}}`, `json: unknown field "colour"`},
		{`{"m":{"columns":{"id":"id","creation_time":"t","operation":"op","userid":"u"}}}`, `unknown column "userid"`},
		{`{"m":{` + cols + `,"constants":{"wrkload":"x"}}}`, `unknown column "wrkload" in constants`},
		{`{"m":{"columns":{"creation_time":"t","operation":"op"}}}`, `no paths for column id`},
		{`{"m":{"columns":{"id":"id","operation":"op"}}}`, `no paths for column creation_time`},
		{`{"m":{"columns":{"id":"id","creation_time":"t"}}}`, `no paths or constant for column operation`},
		{`{"m":{` + cols + `,"constants":{"id":"x"}}}`, `column id cannot be a constant`},
		{`{"m":{` + cols + `,"constants":{"record_type":"NoSuchType"}}}`, `constant record_type: unknown record type "NoSuchType"`},
		{`{"m":{` + cols + `,"constants":{"operation":""}}}`, `constant operation: empty`},
		{`{"m":{` + cols + `,"constants":{"workload":"\ud800"}}}`, `constant workload: unpaired UTF-16 surrogate escape`},
		{`{"m":{` + cols + `,"constants":{"operation":null}}}`, `constant operation: want a string or a number, got null`},
		{`{"m":{` + cols + `,"time_format":"unix_s"}}`, `time_format "unix_s" is neither`},
		{`{"m":{` + cols + `,"time_format":"15:04"}}`, `time_format "15:04" is neither`},
		{`{"m":{"columns":{"id":"a..b","creation_time":"t","operation":"op"}}}`, `path "a..b" has an empty segment`},
		{`{"m":{"columns":{"id":[],"creation_time":"t","operation":"op"}}}`, `column id: no paths`},
		{`{"m":{"columns":{"id":5,"creation_time":"t","operation":"op"}}}`, `cannot unmarshal number`},
		{`{"bad name":{` + cols + `}}`, `name must be letters`},
		{`{"m":{` + cols + `}} {}`, `data after the top-level object`},
		{`[]`, `cannot unmarshal array`},
	}
	for _, tt := range tests {
		_, err := ParseMappings([]byte(tt.config))
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ParseMappings(%s) = %v, want an error containing %q", tt.config, err, tt.err)
		}
	}
	if _, err := LoadMappings(filepath.Join("testdata", "no-such-file.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestMappingConcurrent(t *testing.T) {
	// Run with -race: one Mapping serves many ingest requests at once.
	m := loadTestMappings(t)["okta"]
	line := readLines(t, "okta.ndjson")[0]
	done := make(chan error)
	for range 4 {
		go func() {
			var err error
			for range 200 {
				r, e := m.Parse(line)
				if e != nil || r.UserID != "dana.smith@example.com" {
					err = errors.Join(e, errors.New("wrong record "+r.UserID))
					break
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkMappingParse(b *testing.B) {
	m := loadTestMappings(b)["okta"]
	raw, err := os.ReadFile(filepath.Join("testdata", "okta.ndjson"))
	if err != nil {
		b.Fatal(err)
	}
	line := raw[:strings.IndexByte(string(raw), '\n')]
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Parse(line); err != nil {
			b.Fatal(err)
		}
	}
}
