package audit

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNormalizeIP(t *testing.T) {
	tests := []struct{ in, want string }{
		// The forms of SUMMARY.md's "Client IP field forms".
		{"1.2.3.4", "1.2.3.4"},
		{"1.2.3.4:63070", "1.2.3.4"},
		{"[10.11.12.13]", "10.11.12.13"},
		{"[10.11.12.13]:12345", "10.11.12.13"},
		{"::ffff:1.2.3.4", "1.2.3.4"},
		{"[::ffff:10.11.12.13]:12345", "10.11.12.13"},
		{"::FFFF:0a0b:0c0d", "10.11.12.13"},
		{"2001:db8::abcd", "2001:db8::abcd"},
		{"[2001:db8::abcd]", "2001:db8::abcd"},
		{"[fdfd::555]:12346", "fdfd::555"},
		{"fe80:0011:2233:4455:6677:8899:AABB:CCDD", "fe80:11:2233:4455:6677:8899:aabb:ccdd"},
		{"FE80::", "fe80::"},
		{"1000:1000:100:007::1", "1000:1000:100:7::1"},
		{"2401:4900:60d2:179b:c004:b6f:b678:b148", "2401:4900:60d2:179b:c004:b6f:b678:b148"},
		{"1.1.1.1 ", "1.1.1.1"},
		{"\t 1.1.1.1\r\n", "1.1.1.1"},
		{"ffff:10.11.0.229", "10.11.0.229"},
		{"FFFF:10.11.0.229", "10.11.0.229"},
		{"fe80::1%eth0", "fe80::1"},
		{"[fe80::1%25eth0]:443", "fe80::1"},
		{"::", "::"},
		{"::1", "::1"},
		{"0.0.0.0", "0.0.0.0"},
		{"::1.2.3.4", "::102:304"},

		// Not addresses.
		{"", ""},
		{"<null>", ""},
		{"null", ""},
		{"localhost", ""},
		{"localhost:12345", ""},
		{"[localhost]:12345", ""},
		{"cool.client.local", ""},
		{"cool.client.local:12345", ""},
		{"[cool.client.local]:12345", ""},
		{"1.2.3.4:", ""},
		{"1.2.3.4:port", ""},
		{"1.2.3.4:1234567", ""},
		{"[1.2.3.4]x", ""},
		{"[1.2.3.4", ""},
		{"1.2.3", ""},
		{"1.2.3.4.5", ""},
		{"256.1.1.1", ""},
		{"01.2.3.4", ""},
		{"1.2.3.04", ""},
		{"ffff:10.11.0", ""},
		{"ffff:abcd", ""},
		{"1::2::3", ""},
		{"12345::", ""},
		{"1:2:3:4:5:6:7:8:9", ""},
		{"2001:db8::1:443", "2001:db8::1:443"}, // a valid address, not an address and a port
		{strings.Repeat("1", 1000), ""},
	}
	for _, tt := range tests {
		if got := NormalizeIP(tt.in); got != tt.want {
			t.Errorf("NormalizeIP(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzAddrParsers checks the allocation-free address parsers against netip.
func FuzzAddrParsers(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::", "::1", "1::", "2001:db8::1", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8",
		"1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "1:2:3:4:5:6:1.2.3.4", "fe80::1.2.3.4", ":::", "1:::2", "12345::",
		"1:2", "1:", ":1", "00000::1", "0:0:0:0:0:0:0:0", "01.2.3.4", "1.2.3.256", "1.2.3.4.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.Contains(s, "%") {
			return // zones are stripped before these parsers run
		}
		want, err := netip.ParseAddr(s)
		got, ok := parseIPv4([]byte(s))
		if !ok {
			got, ok = parseIPv6([]byte(s))
		}
		if ok != (err == nil) || ok && got != want {
			t.Fatalf("%q: got %v %v, netip %v %v", s, got, ok, want, err)
		}
	})
}

func BenchmarkNormalizeIP(b *testing.B) {
	var buf []byte
	for _, in := range []string{"203.0.113.145", "2603:10b6:5:127::10", "[::ffff:10.11.12.13]:12345"} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = appendIP(buf[:0], []byte(in))
			}
		})
	}
}
