package m365_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-audit/custos/m365"
)

// TestFileSinkResume: reopening keeps the Ids already written, cuts a torn
// last line, and compacts pretty-printed records to one line each.
func TestFileSinkResume(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out.ndjson")
	ctx := context.Background()
	s, err := m365.OpenFileSink(p)
	if err != nil {
		t.Fatal(err)
	}
	recs := []json.RawMessage{json.RawMessage(`{"Id":"a","X":1}`), json.RawMessage("{\n  \"Id\": \"b\"\n}"), json.RawMessage(`{"Id":"a","X":1}`)}
	if err := s.Write(ctx, "t", recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of the next line.
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"Id":"c","Tor`)
	f.Close()

	s, err = m365.OpenFileSink(p)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Existing != 2 {
		t.Fatalf("existing %d, want 2", st.Existing)
	}
	if err := s.Write(ctx, "t", []json.RawMessage{json.RawMessage(`{"Id":"b"}`), json.RawMessage(`{"Id":"c","Torn":false}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	want := "{\"Id\":\"a\",\"X\":1}\n{\"Id\":\"b\"}\n{\"Id\":\"c\",\"Torn\":false}\n"
	if string(b) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", b, want)
	}

	// A file that is not NDJSON records is refused rather than appended to.
	os.WriteFile(p, []byte("hello\n"), 0o600)
	if _, err := m365.OpenFileSink(p); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("err = %v, want a refusal naming line 1", err)
	}
}
