package audit

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// corpusDir holds real published Microsoft 365 records (see its SUMMARY.md).
// It is read in place and never copied into the repository.
const corpusDir = "/work/shared/corpus/m365-published"

// Short names of the corpus files, as SUMMARY.md abbreviates them.
const (
	sek   = "SEKOIA-IO__intake-formats__office365-o365-tests.ndjson"
	sekd  = "SEKOIA-IO__intake-formats__m365defender-rawevent.ndjson"
	beats = "elastic__beats__o365-module-tests.ndjson"
	integ = "elastic__integrations__o365-pipeline-tests.ndjson"
	docs  = "MicrosoftDocs__office-365-management-api__doc-examples.ndjson"
	pan   = "panther-labs__panther-analysis__schema-tests.ndjson"
)

type corpusLine struct {
	file string
	line int
	raw  []byte
}

func readCorpus(t *testing.T) []corpusLine {
	t.Helper()
	if _, err := os.Stat(corpusDir); os.IsNotExist(err) {
		t.Skipf("corpus %s not present", corpusDir)
	}
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []corpusLine
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 2*MaxRecordSize)
		for n := 1; sc.Scan(); n++ {
			lines = append(lines, corpusLine{filepath.Base(f), n, bytes.Clone(sc.Bytes())})
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return lines
}

// TestCorpus parses every raw-tier record. All must parse, except the
// deliberately minimal ip-format fixtures (Elastic's ip-formats.log), which
// have no Operation.
func TestCorpus(t *testing.T) {
	lines := readCorpus(t)
	if len(lines) != 247 {
		t.Errorf("corpus has %d records, want the 247 of SUMMARY.md", len(lines))
	}
	wantRejected := map[string]string{}
	for n := 80; n <= 94; n++ {
		wantRejected[fmt.Sprintf("%s:%d", beats, n)] = "Operation"
	}
	gotRejected := map[string]string{}
	var p Parser
	for _, l := range lines {
		where := fmt.Sprintf("%s:%d", l.file, l.line)
		r, err := p.Parse(l.raw)
		if err != nil {
			fe, ok := err.(*FieldError)
			if !ok {
				t.Errorf("%s: %v is not a *FieldError", where, err)
				continue
			}
			gotRejected[where] = fe.Field
			continue
		}
		if !bytes.Equal(r.Raw, l.raw) {
			t.Errorf("%s: Raw differs from the input line", where)
		}
		if r.ID == "" || r.Operation == "" || r.CreationTime.IsZero() || r.CreationTime.Location() != time.UTC {
			t.Errorf("%s: incomplete record %+v", where, r)
		}
	}
	if !reflect.DeepEqual(gotRejected, wantRejected) {
		t.Errorf("rejected %v\nwant     %v", gotRejected, wantRejected)
	}
}

// TestCorpusValues checks extracted columns of particular records, chosen
// for the quirks SUMMARY.md lists.
func TestCorpusValues(t *testing.T) {
	byLine := map[string][]byte{}
	for _, l := range readCorpus(t) {
		byLine[fmt.Sprintf("%s:%d", l.file, l.line)] = l.raw
	}
	tests := []struct {
		file  string
		line  int
		check func(r Record) (got, want any)
	}{
		// Client address forms (SUMMARY "Client IP field forms").
		{sek, 38, func(r Record) (any, any) { return r.ClientIP, "1.2.3.4" }},     // 1.2.3.4:63070
		{beats, 53, func(r Record) (any, any) { return r.ClientIP, "fdfd::555" }}, // [fdfd::555]:12346
		{beats, 52, func(r Record) (any, any) { return r.ClientIP, "216.160.83.57" }},
		{beats, 36, func(r Record) (any, any) { return r.ClientIP, "" }},          // ""
		{sek, 68, func(r Record) (any, any) { return r.ClientIP, "" }},            // <null>
		{docs, 9, func(r Record) (any, any) { return r.ClientIP, "10.11.0.229" }}, // ffff:10.11.0.229
		{sek, 60, func(r Record) (any, any) { return r.ClientIP, "1.2.3.4" }},     // ::ffff:1.2.3.4
		{sekd, 1, func(r Record) (any, any) { return r.ClientIP, "1.1.1.1" }},
		{sek, 12, func(r Record) (any, any) { return r.ClientIP, "fe80::" }}, // FE80::
		{sek, 70, func(r Record) (any, any) { return r.ClientIP, "" }},       // "" and ""
		{sek, 76, func(r Record) (any, any) { return r.ClientIP, "1000:1000:100:7::1" }},
		{sek, 65, func(r Record) (any, any) { return r.ClientIP, "192.0.2.1" }}, // ClientIP wins over ActorIpAddress

		// Numbers as strings, the last of a repeated key, nested Ids.
		{integ, 4, func(r Record) (any, any) {
			return [4]any{r.RecordType, r.UserType, r.LogonType, r.ID}, [4]any{int32(2), int32(0), int32(0), "11111111-aaaa-bbbb-cccc-222222222222"}
		}},
		{integ, 11, func(r Record) (any, any) {
			return [3]any{r.RecordType, r.OperationCount, r.ID}, [3]any{int32(20), int64(1), "7"}
		}},
		{integ, 7, func(r Record) (any, any) { return [2]any{r.RecordType, r.MailAccessType}, [2]any{int32(20), ""} }},
		{docs, 9, func(r Record) (any, any) {
			return [3]any{r.ID, r.RecordType, RecordType(r.RecordType).String()}, [3]any{"99b0a960-13a0-461f-8c5c-cb2316ea273d", int32(261), "CopilotInteraction"}
		}},
		{sekd, 1, func(r Record) (any, any) {
			return [2]any{r.ID, r.CreationTime}, [2]any{"33333333-3333-3333-3333-333333333333", time.Date(2024, 10, 1, 8, 18, 26, 0, time.UTC)}
		}},
		{beats, 1, func(r Record) (any, any) {
			return [2]any{r.UserID, r.ResultStatus}, [2]any{`NT AUTHORITY\SYSTEM (Microsoft.Exchange.ServiceHost)`, "True"}
		}},
		{sek, 12, func(r Record) (any, any) { return r.ExternalAccess, false }}, // "False"

		// MailItemsAccessed, Exchange mailbox fields (SUMMARY "MailItemsAccessed").
		{sekd, 4, func(r Record) (any, any) {
			got := Record{AppID: r.AppID, ClientAppID: r.ClientAppID, ClientIP: r.ClientIP, ClientInfoString: r.ClientInfoString,
				MailboxOwnerUPN: r.MailboxOwnerUPN, MailboxGUID: r.MailboxGUID, UserType: r.UserType, LogonType: r.LogonType,
				MailAccessType: r.MailAccessType, IsThrottled: r.IsThrottled, OperationCount: r.OperationCount,
				InternetMessageIDs: r.InternetMessageIDs, RecordType: r.RecordType}
			want := Record{AppID: "22222222-2222-2222-2222-222222222222", ClientAppID: "22222222-2222-2222-2222-222222222222",
				ClientIP: "fe80:11:2233:4455:6677:8899:aabb:ccdd", ClientInfoString: "Client=REST;Client=RESTSystem;;",
				MailboxOwnerUPN: "john.doe@example.com", MailboxGUID: "66666666-6666-6666-6666-666666666666", UserType: 5, LogonType: 0,
				MailAccessType: "Bind", OperationCount: 6, RecordType: 50,
				InternetMessageIDs: []string{"<1641470871.2259807.1727868231060@ltx1-app86239.prod.linkedin.com>", "<1.prod.linkedin.com>",
					"<2.prod.linkedin.com>", "<1@emsecure.net>", "<1@geopod-ismtpd-10>", "<1@.prod.linkedin.com>"}}
			return got, want
		}},
		{integ, 3, func(r Record) (any, any) {
			return [6]any{r.ClientIP, r.SessionID, r.UniqueTokenID, r.ClientAppID, r.OperationCount, len(r.InternetMessageIDs)},
				[6]any{"203.0.113.145", "dddddddd-aaaa-eeee-dddd-123456789012", "ZZZZZZZZZZKKKKKKKKKKAA", "7777777-6666-aaaa-bbbb-123456789012", int64(6), 6}
		}},
		{sek, 18, func(r Record) (any, any) {
			// An OWA record: AppId only, no ClientAppId anywhere.
			return [3]any{r.AppID, r.ClientAppID, r.ClientIP}, [3]any{"00000002-0000-0ff1-ce00-000000000000", "", "192.0.2.1"}
		}},
		// AppAccessContext: ClientAppName and CorrelationId of SharePoint
		// and OneDrive records, IssuedAtTime of Exchange and Teams ones.
		{sek, 27, func(r Record) (any, any) {
			return [3]any{r.ClientAppName, r.CorrelationID, r.IssuedAtTime}, [3]any{"MeTA", "27de65c0-1c43-4d70-9a4d-45a66418dbd6", time.Time{}}
		}},
		{sek, 31, func(r Record) (any, any) {
			// The top-level CorrelationId is another value.
			return [2]any{r.ClientAppName, r.CorrelationID}, [2]any{"f482d5ab-3acd-4c27-9721-30b09a03a648", "75b4c463-190b-46e9-b38e-00b45b967900"}
		}},
		{sek, 61, func(r Record) (any, any) {
			return [3]any{r.ClientAppName, r.CorrelationID, r.IssuedAtTime}, [3]any{"", "", time.Date(2024, 6, 10, 6, 51, 28, 0, time.UTC)}
		}},
		{integ, 3, func(r Record) (any, any) { return r.IssuedAtTime, time.Date(2025, 9, 26, 22, 27, 27, 0, time.UTC) }},
		{pan, 2, func(r Record) (any, any) {
			return [3]any{r.ClientIP, r.MailAccessType, r.InternetMessageIDs},
				[3]any{"2603:10b6:5:127::10", "Bind", []string{"<13827bae-2713-4547-b29d-922bb368d28f@az.westus2.production.microsoft.com>"}}
		}},
	}
	var p Parser
	for _, tt := range tests {
		where := fmt.Sprintf("%s:%d", tt.file, tt.line)
		raw, ok := byLine[where]
		if !ok {
			t.Errorf("%s: no such line", where)
			continue
		}
		r, err := p.Parse(raw)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if got, want := tt.check(r); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\ngot  %#v\nwant %#v", where, got, want)
		}
	}
}
