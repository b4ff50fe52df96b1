package audit

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// validateAgrees checks validate against encoding/json: it must accept
// only what json.Valid accepts, and reject only for json.Valid's reasons or
// for the three stricter rules of its own.
func validateAgrees(t *testing.T, in []byte) {
	off, reason := validate(in)
	std := json.Valid(in)
	switch {
	case reason == "" && !std:
		t.Fatalf("validate accepts %q, encoding/json does not", in)
	case reason != "" && std:
		stricter := !utf8.Valid(in) ||
			strings.HasPrefix(reason, "unpaired UTF-16 surrogate") ||
			strings.HasPrefix(reason, "nested deeper than")
		if !stricter {
			t.Fatalf("validate rejects %q (at %d: %s), encoding/json accepts it", in, off, reason)
		}
	}
	if reason != "" && (off < 0 || off > len(in)) {
		t.Fatalf("offset %d outside %q", off, in)
	}
}

func TestValidate(t *testing.T) {
	inputs := []string{
		`{}`, `[]`, `""`, `0`, `-0`, `1.5e+10`, `-1E-2`, `true`, `false`, `null`, ` {"a" : [1, 2, {"b":null}] } `,
		`{"a":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"}`, `{"a":1,"a":2}`, `[[[[[]]]]]`,
		``, ` `, `{`, `}`, `[`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a":1 "b":2}`, `{1:2}`,
		`01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `0x10`, `NaN`, `Infinity`, `-Infinity`, `nul`, `truee`, `[tru]`,
		"\"\x00\"", "\"\x1f\"", "\"\x7f\"", `"\x"`, `"\u12"`, `"\u12G4"`, `"\`, `"abc`, "\"\xff\"", "\"\xc3\"",
		`"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, `"\ud800\ud800"`, `"\ud800\"`, `"\ud800\u"`,
		"\ufeff{}", "{}\x00", "{} {}", "{}x", " \t\r\n{}\n", "\v{}", strings.Repeat("[", 129) + strings.Repeat("]", 129),
		strings.Repeat("[", 128) + strings.Repeat("]", 128), strings.Repeat(`{"a":`, 128) + "1" + strings.Repeat("}", 128),
	}
	for _, in := range inputs {
		validateAgrees(t, []byte(in))
	}
	if _, reason := validate([]byte(strings.Repeat("[", 128) + strings.Repeat("]", 128))); reason != "" {
		t.Errorf("128 levels refused: %s", reason)
	}
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{`{"a":[1,"x",{"b":null}]}`, `"\ud83d\ude00"`, `[1e5,-0.5]`, `{"a":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		validateAgrees(t, in)
		if _, reason := validate(in); reason != "" {
			return
		}
		// Navigation must see what encoding/json sees.
		var want any
		if err := json.Unmarshal(in, &want); err != nil {
			return // a number out of float64's range, which JSON allows
		}
		if got := decodeForTest(skipSpaceBytes(in)); !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: navigation gives %#v, encoding/json %#v", in, got, want)
		}
	})
}

func skipSpaceBytes(b []byte) []byte {
	b = b[skipSpace(b, 0):]
	for len(b) > 0 && isJSONSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// decodeForTest decodes a validated value with the navigation functions,
// into the types encoding/json uses.
func decodeForTest(v []byte) any {
	switch v[0] {
	case '{':
		m := map[string]any{}
		it := items(v)
		for k, val, ok := it.next(); ok; k, val, ok = it.next() {
			m[string(appendUnescaped(nil, k))] = decodeForTest(val)
		}
		return m
	case '[':
		a := []any{}
		it := items(v)
		for _, val, ok := it.next(); ok; _, val, ok = it.next() {
			a = append(a, decodeForTest(val))
		}
		return a
	case '"':
		s, _ := unquote(v)
		return string(s)
	case 't':
		return true
	case 'f':
		return false
	case 'n':
		return nil
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return err.Error()
	}
	return f
}

func TestNavigation(t *testing.T) {
	doc := []byte(`{"a" : {"b":[10, {"c":"x\"y"}, []]}, "d\u002ee":1, "a2":"\\\"", "dup":1, "dup":2}`)
	if _, reason := validate(doc); reason != "" {
		t.Fatal(reason)
	}
	tests := []struct {
		path string
		want string
	}{
		{"a.b.0", `10`},
		{"a.b.1.c", `"x\"y"`},
		{"a.b.2", `[]`},
		{"a.b.3", ``},
		{"a.b.-1", ``},
		{`d\.e`, `1`},
		{"a2", `"\\\""`},
		{"dup", `2`},
		{"a.b.1.c.0", ``},
		{"missing", ``},
	}
	for _, tt := range tests {
		p, err := parsePath(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(p.lookup(doc)); got != tt.want {
			t.Errorf("lookup(%s) = %s, want %s", tt.path, got, tt.want)
		}
	}
}
