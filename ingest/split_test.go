package ingest

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestSplitLines(t *testing.T) {
	body := []byte("\ufeff{\"a\":1}\r\n\n  \n{\"b\":2}  \n{\"c\":3}")
	var got []string
	var lines []int
	splitLines(body, func(i, line int, raw []byte) {
		if i != len(got) {
			t.Errorf("index %d out of order", i)
		}
		got = append(got, string(raw))
		lines = append(lines, line)
	})
	want := []string{`{"a":1}`, `{"b":2}`, `{"c":3}`}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("records %q", got)
	}
	if lines[0] != 1 || lines[1] != 4 || lines[2] != 5 {
		t.Fatalf("lines %v, want [1 4 5]", lines)
	}
}

func TestSplitArrayKeepsElementsBeforeABreak(t *testing.T) {
	var res Result
	var got []string
	splitArray([]byte(` [ {"a":1} ,{"b":[2,3]}, {"c": ]`), func(i, line int, raw []byte) { got = append(got, string(raw)) }, &res)
	if len(got) != 2 || got[0] != `{"a":1}` || got[1] != `{"b":[2,3]}` {
		t.Fatalf("elements %q", got)
	}
	if res.Rejected != 1 || res.Errors[0].Index != 2 {
		t.Fatalf("rejection %+v", res)
	}
}

// FuzzSplit: splitting never panics, never invents bytes, and an NDJSON
// body's records are exactly its non-blank trimmed lines.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{"", "\n", "{}\n{}", "[{},{}]", "[", "[{]", "\ufeff[1]", "{\"a\":\"\\n\"}\r\n", "[[[[]]]]", " [ {} , ] "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var res Result
		n := 0
		splitArray(body, func(i, line int, raw []byte) {
			if !bytes.Contains(body, raw) {
				t.Fatalf("array element %q is not in the body", raw)
			}
			if !json.Valid(raw) {
				t.Fatalf("array element %q is not a JSON value", raw)
			}
			n++
		}, &res)
		var want [][]byte
		for i, l := range bytes.Split(body, []byte("\n")) {
			if i == 0 {
				l = bytes.TrimPrefix(l, []byte("\ufeff"))
			}
			if l = bytes.TrimSpace(l); len(l) > 0 {
				want = append(want, l)
			}
		}
		var got [][]byte
		splitLines(body, func(i, line int, raw []byte) { got = append(got, raw) })
		if len(got) != len(want) {
			t.Fatalf("%d lines split, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("line %d: %q, want %q", i, got[i], want[i])
			}
		}
	})
}
