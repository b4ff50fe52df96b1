package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/custos-audit/custos/client"
)

// readAll reads every record of in: data or "!problem", with its line.
func readAll(t *testing.T, in []byte) (recs []string, lines []int, err error) {
	t.Helper()
	rr, err := client.NewRecordReader(bytes.NewReader(in))
	if err != nil {
		return nil, nil, err
	}
	defer rr.Close()
	for {
		rec, err := rr.Next()
		if err == io.EOF {
			return recs, lines, nil
		}
		if err != nil {
			return recs, lines, err
		}
		if rec.Problem != "" {
			recs = append(recs, "!"+rec.Problem)
		} else {
			recs = append(recs, string(rec.Data))
		}
		lines = append(lines, rec.Line)
	}
}

func TestRecordReader(t *testing.T) {
	big := `{"a":"` + strings.Repeat("x", client.MaxRecordBytes) + `"}`
	bigger := `{"a":"` + strings.Repeat("x", client.MaxRecordBytes+2000) + `"}`
	tests := []struct {
		name    string
		in      string
		format  client.Format
		recs    []string
		lines   []int
		wantErr string // substring of the reader's final error
	}{
		{
			name:   "ndjson with blank lines, CRLF and a BOM",
			in:     "\ufeff\n{\"a\":1}\r\n\r\n  {\"b\":\"x,y\"}  \n\n{\"c\":[1,2]}",
			format: client.FormatNDJSON,
			recs:   []string{`{"a":1}`, `{"b":"x,y"}`, `{"c":[1,2]}`},
			lines:  []int{2, 4, 6},
		},
		{
			name:   "ndjson line that is not an object",
			in:     "{\"a\":1}\n[{\"b\":2}]\nnull\n",
			format: client.FormatNDJSON,
			recs:   []string{`{"a":1}`, "!not a JSON object", "!not a JSON object"},
			lines:  []int{1, 2, 3},
		},
		{
			name:   "ndjson record over the limit",
			in:     "{\"a\":1}\n" + big + "\n{\"b\":2}\n",
			format: client.FormatNDJSON,
			recs:   []string{`{"a":1}`, "!record is 1048584 bytes, over the 1048576 byte limit", `{"b":2}`},
			lines:  []int{1, 2, 3},
		},
		{
			name:   "empty input",
			in:     " \n\t\n",
			format: client.FormatNDJSON,
		},
		{
			// Elements are passed on byte for byte, white space and all.
			name:   "pretty JSON array",
			in:     "[\n  {\n    \"a\": \"x ] , { \\\" y\",\n    \"n\": [1, {\"m\": 2}]\n  },\n  {\"b\":2}\n,{\"c\":3}]\n",
			format: client.FormatJSONArray,
			recs:   []string{"{\n    \"a\": \"x ] , { \\\" y\",\n    \"n\": [1, {\"m\": 2}]\n  }", `{"b":2}`, `{"c":3}`},
			lines:  []int{2, 6, 7},
		},
		{
			name:   "JSON array with CRLF, tabs and escapes",
			in:     "[\r\n\t{\r\n\t\t\"Id\" : \"\\u0041\\/b\",\r\n\t\t\"n\":1.0e+2 , \"e\":{ }, \"l\":[ ]\r\n\t} ,\r\n\t{\"Id\":\"2\"}\t]\r\n",
			format: client.FormatJSONArray,
			recs:   []string{"{\r\n\t\t\"Id\" : \"\\u0041\\/b\",\r\n\t\t\"n\":1.0e+2 , \"e\":{ }, \"l\":[ ]\r\n\t}", `{"Id":"2"}`},
			lines:  []int{2, 6},
		},
		{
			// Over the limit, whether or not the reader keeps the bytes
			// for the server's wording.
			name:   "JSON array elements over the limit",
			in:     "[\n" + big + ",\n  " + bigger + "\n, {\"b\":\n2}]",
			format: client.FormatJSONArray,
			recs:   []string{"!record is 1048584 bytes, over the 1048576 byte limit", "!record is 1050584 bytes, over the 1048576 byte limit", "{\"b\":\n2}"},
			lines:  []int{2, 3, 4},
		},
		{
			name:   "empty JSON array",
			in:     " [ ] ",
			format: client.FormatJSONArray,
		},
		{
			// Invalid elements are passed on as they are, for the
			// Uploader or the server to refuse.
			name:   "JSON array with non-objects and invalid elements",
			in:     "[1, \"s\",\n{\"a\":\n tru}, {\"b\":1 2, \"c\" : - 1},\n{\"d\":\"x\ny\"},{\"e\":1}]",
			format: client.FormatJSONArray,
			recs:   []string{"!not a JSON object", "!not a JSON object", "{\"a\":\n tru}", `{"b":1 2, "c" : - 1}`, "!line break inside a JSON string (not valid JSON)", `{"e":1}`},
			lines:  []int{1, 1, 2, 3, 4, 5},
		},
		{
			// A raw CR in a string is refused like a LF; a LF after a
			// backslash still counts as a line.
			name:   "JSON array with raw line breaks in strings",
			in:     "[{\"a\":\"x\ry\"},\n{\"b\":\"x\\\ny\"},\n{\"c\":1}]",
			format: client.FormatJSONArray,
			recs:   []string{"!line break inside a JSON string (not valid JSON)", "{\"b\":\"x\\\ny\"}", `{"c":1}`},
			lines:  []int{1, 2, 4},
		},
		{
			name:    "JSON array cut short",
			in:      "[{\"a\":1},\n{\"b\":",
			format:  client.FormatJSONArray,
			recs:    []string{`{"a":1}`},
			lines:   []int{1},
			wantErr: "line 2: the input ends inside the JSON array element",
		},
		{
			name:    "JSON array not closed",
			in:      "[{\"a\":1}",
			format:  client.FormatJSONArray,
			recs:    []string{`{"a":1}`},
			lines:   []int{1},
			wantErr: "before the JSON array is closed",
		},
		{
			name:    "JSON array missing a comma",
			in:      "[{\"a\":1}\n{\"b\":2}]",
			format:  client.FormatJSONArray,
			recs:    []string{`{"a":1}`},
			lines:   []int{1},
			wantErr: "line 2: malformed JSON array: want ',' or ']'",
		},
		{
			name:    "text after the JSON array",
			in:      "[{\"a\":1}]\n{\"b\":2}",
			format:  client.FormatJSONArray,
			recs:    []string{`{"a":1}`},
			lines:   []int{1},
			wantErr: "line 2: unexpected '{' after the end of the JSON array",
		},
		{
			name: "Purview CSV, current layout, hand-written",
			in: "RecordId,CreationDate,RecordType,Operation,UserId,AuditData,AssociatedAdminUnits,AssociatedAdminUnitsNames\r\n" +
				`1,2024-05-01T10:00:00,2,MailItemsAccessed,a@x.com,"{""Id"":""1"",""Subject"":""Q1, Q2 and \""the plan\""""}",,` + "\r\n" +
				`2,2024-05-01T10:00:01,15,UserLoggedIn,b@x.com,"{` + "\r\n" + `  ""Id"": ""2"",` + "\r\n" + `  ""ClientIP"": ""1.2.3.4:5""` + "\r\n" + `}","a,b",""` + "\r\n" +
				"\r\n" +
				`3,2024-05-01T10:00:02,2,Send,c@x.com,"{""Id"":""3""}",,` + "\r\n",
			format: client.FormatPurviewCSV,
			recs:   []string{`{"Id":"1","Subject":"Q1, Q2 and \"the plan\""}`, `{"Id":"2","ClientIP":"1.2.3.4:5"}`, `{"Id":"3"}`},
			lines:  []int{2, 3, 8},
		},
		{
			name: "Purview CSV, older layout, hand-written, with a BOM and no final line break",
			in: "\ufeffCreationDate,UserIds,Operations,AuditData\n" +
				`2024-05-01T10:00:00.0000000Z,a@x.com,FileAccessed,"{""Id"":""1"",""ObjectId"":""https://x/a,b.docx""}"` + "\n" +
				`2024-05-01T10:00:01.0000000Z,"b@x.com","FileAccessed","{""Id"":""2""}"`,
			format: client.FormatPurviewCSV,
			recs:   []string{`{"Id":"1","ObjectId":"https://x/a,b.docx"}`, `{"Id":"2"}`},
			lines:  []int{2, 3},
		},
		{
			name: "CSV rows that cannot be read",
			in: "CreationDate,UserIds,Operations,AuditData\n" +
				`d,u,o,"{""Id"":""1""}"x` + "\n" +
				`d,u"v,o,"{""Id"":""2""}"` + "\n" +
				"d,u,o\n" +
				`d,u,o,""` + "\n" +
				`d,u,o,"{""Id"":""6""}"` + "\n",
			format: client.FormatPurviewCSV,
			recs: []string{"!invalid CSV: text after the closing quote of column 4", "!invalid CSV: a quote inside an unquoted field (column 2)",
				"!row has 3 columns, the header has 4; no AuditData", "!empty AuditData", `{"Id":"6"}`},
			lines: []int{2, 3, 4, 5, 6},
		},
		{
			name: "CSV quote missing: the next row is read as part of the field",
			in: "CreationDate,UserIds,Operations,AuditData\n" +
				`d,u,o,"{""Id"":""1""}"` + "\n" +
				`d,u,o,"{""Id"":""2""}` + "\n" +
				`d,u,o,"{""Id"":""3""}"` + "\n" +
				`d,u,o,"{""Id"":""4""}"` + "\n",
			format: client.FormatPurviewCSV,
			recs:   []string{`{"Id":"1"}`, "!invalid CSV: text after the closing quote of column 4", `{"Id":"4"}`},
			lines:  []int{2, 3, 5},
		},
		{
			name: "CSV quote never closed",
			in: "CreationDate,UserIds,Operations,AuditData\n" +
				`d,u,o,"{""Id"":""1""}"` + "\n" +
				`d,u,o,"{""Id"":""2""}` + "\n" +
				`d,u,o,x` + "\n",
			format:  client.FormatPurviewCSV,
			recs:    []string{`{"Id":"1"}`},
			lines:   []int{2},
			wantErr: "line 3: a quoted field opened there is never closed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, comp := range []string{"none", "gzip", "zstd"} {
				in := compress(t, comp, []byte(tt.in))
				rr, err := client.NewRecordReader(bytes.NewReader(in))
				if err != nil {
					t.Fatal(err)
				}
				if rr.Format() != tt.format || rr.Compression() != comp {
					t.Errorf("%s: detected %v, %s; want %v, %s", comp, rr.Format(), rr.Compression(), tt.format, comp)
				}
				rr.Close()
				recs, lines, err := readAll(t, in)
				if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
					t.Errorf("%s: err = %v, want %q", comp, err, tt.wantErr)
				}
				if !slices.Equal(recs, tt.recs) {
					t.Errorf("%s: records\n%s\nwant\n%s", comp, short(recs), short(tt.recs))
				}
				if !equalInts(lines, tt.lines) {
					t.Errorf("%s: lines %v, want %v", comp, lines, tt.lines)
				}
			}
		})
	}
}

func TestRecordReaderUnrecognised(t *testing.T) {
	for name, in := range map[string]string{
		"CSV without AuditData": "a,b,c\n1,2,3\n",
		"plain text":            "hello world\n",
		"UTF-16":                "\xff\xfe[\x00",
		"binary":                strings.Repeat("\x00\x01", 100000),
	} {
		if _, err := client.NewRecordReader(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Corrupt compression is an error at the point it is found.
	gz := compress(t, "gzip", []byte(strings.Repeat(`{"a":1}`+"\n", 10000)))
	gz = gz[:len(gz)/2]
	_, _, err := readAll(t, gz)
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated gzip: err = %v, want unexpected EOF", err)
	}
}

func compress(t testing.TB, how string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch how {
	case "none":
		return b
	case "gzip":
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(b)
		zw.Close()
	}
	return buf.Bytes()
}

func short(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if len(s) > 120 {
			s = s[:120] + "…"
		}
		out[i] = fmt.Sprintf("  %q", s)
	}
	return strings.Join(out, "\n")
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
