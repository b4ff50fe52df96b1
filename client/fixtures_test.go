package client_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"testing"
)

// fixtureRecords makes n realistic, awkward records: commas, quotes,
// backslashes, escaped line breaks, non-ASCII text, nested values.
func fixtureRecords(t testing.TB, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range n {
		rec := map[string]any{
			"Id":              fmt.Sprintf("5f24aa82-%04x-4a1b-9c3d-%012d", i%65536, i),
			"CreationTime":    fmt.Sprintf("2024-05-%02dT%02d:%02d:%02d", 1+i%28, i%24, i%60, (i*7)%60),
			"RecordType":      fmt.Sprint(2 + i%3),
			"Operation":       []string{"MailItemsAccessed", "FileAccessed", "UserLoggedIn"}[i%3],
			"UserId":          fmt.Sprintf("user%d@contoso.onmicrosoft.com", i%17),
			"ClientIPAddress": []string{"1.2.3.4:63070", "[fdfd::555]:12346", "<null>", "", "::ffff:1.2.3.4"}[i%5],
			"Subject":         fmt.Sprintf("Re: \"Q%d\", plans, budget \\ cost\nline two – naïve café ✓", i),
			"Folders":         []any{map[string]any{"Path": `\Inbox\Sub, folder`, "FolderItems": []any{map[string]any{"InternetMessageId": fmt.Sprintf("<%d@mail>", i)}}}},
			"OperationCount":  "1.0",
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func toNDJSON(recs [][]byte) []byte {
	var b bytes.Buffer
	for i, r := range recs {
		b.Write(r)
		b.WriteByte('\n')
		if i%10 == 3 {
			b.WriteString("\n") // blank lines are skipped
		}
	}
	return b.Bytes()
}

// indented pretty-prints records as toArray lays them out: each is the
// bytes of one element of its array, spanning lines.
func indented(t testing.TB, recs [][]byte) [][]byte {
	out := make([][]byte, len(recs))
	for i, r := range recs {
		var b bytes.Buffer
		if err := json.Indent(&b, r, "  ", "  "); err != nil {
			t.Fatal(err)
		}
		out[i] = b.Bytes()
	}
	return out
}

// toArray writes records as a pretty-printed JSON array.
func toArray(t testing.TB, recs [][]byte) []byte {
	var b bytes.Buffer
	b.WriteString("[\n  ")
	b.Write(bytes.Join(indented(t, recs), []byte(",\n  ")))
	b.WriteString("\n]\n")
	return b.Bytes()
}

// toCSV writes a Purview export with encoding/csv, an implementation
// independent of the reader under test. Every seventh AuditData cell is
// pretty-printed, so that it spans lines as some exports do.
func toCSV(t testing.TB, recs [][]byte, old bool) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.UseCRLF = true
	if old {
		w.Write([]string{"CreationDate", "UserIds", "Operations", "AuditData"})
	} else {
		w.Write([]string{"RecordId", "CreationDate", "RecordType", "Operation", "UserId", "AuditData", "AssociatedAdminUnits", "AssociatedAdminUnitsNames"})
	}
	for i, r := range recs {
		audit := string(r)
		if i%7 == 0 {
			var ind bytes.Buffer
			json.Indent(&ind, r, "", "  ")
			audit = ind.String()
		}
		var v struct{ Id, CreationTime, RecordType, Operation, UserId string }
		json.Unmarshal(r, &v)
		if old {
			w.Write([]string{v.CreationTime + ".0000000Z", v.UserId, v.Operation, audit})
		} else {
			w.Write([]string{v.Id, v.CreationTime + ".0000000Z", v.RecordType, v.Operation, v.UserId, audit, "", ""})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
