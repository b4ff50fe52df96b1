package audit

import (
	"bytes"
	"net/netip"
)

// NormalizeIP returns the IP address in a free-form client address field, in
// canonical text form (netip's), or "" if the field holds no address. Search
// should pass user input through it so that a query matches the stored column.
//
// Accepted forms, as they occur in Microsoft 365 records:
//
//	1.2.3.4, 1.2.3.4:63070, [1.2.3.4], [1.2.3.4]:12345  -> 1.2.3.4
//	::ffff:1.2.3.4, [::ffff:1.2.3.4]:12345             -> 1.2.3.4 (v4-mapped is unmapped)
//	[fdfd::555]:12346, fe80::1%eth0                    -> fdfd::555, fe80::1
//	FE80:0011::AABB                                    -> fe80:11::aabb (lower case, zeros compressed)
//	"1.1.1.1 " (surrounding spaces)                    -> 1.1.1.1
//	ffff:10.11.0.229                                   -> 10.11.0.229
//	<null>, "", localhost, cool.client.local:12345     -> ""
//
// The "ffff:10.11.0.229" form is not an address at all, but it occurs in
// Microsoft's own documentation example and plainly is ::ffff:10.11.0.229 with
// the leading "::" lost, so it is read as that. Host names are dropped rather
// than resolved: the column is for addresses, and the raw record keeps the name.
func NormalizeIP(s string) string {
	return string(appendIP(nil, []byte(s)))
}

// appendIP appends the normalised address in b to dst, or nothing.
func appendIP(dst, b []byte) []byte {
	host := trimSpace(b)
	switch {
	case len(host) == 0:
		return dst
	case host[0] == '[':
		end := bytes.IndexByte(host, ']')
		if end < 0 || !isPortSuffix(host[end+1:], true) {
			return dst
		}
		host = host[1:end]
	case len(host) > 5 && asciiEqualFold(host[:5], "ffff:") && bytes.IndexByte(host[5:], ':') < 0:
		host = host[5:]
	default:
		// One colon is host:port; more is IPv6, whose last group is never
		// taken for a port.
		if i := bytes.IndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i+1:], ':') < 0 {
			if !isPortSuffix(host[i:], false) {
				return dst
			}
			host = host[:i]
		}
	}
	if i := bytes.IndexByte(host, '%'); i >= 0 {
		host = host[:i] // a zone names a local interface; it is not part of the address
	}
	addr, ok := parseIPv4(host)
	if !ok {
		if addr, ok = parseIPv6(host); !ok {
			return dst
		}
	}
	return addr.Unmap().AppendTo(dst)
}

// isPortSuffix reports whether s is ":" and 1 to 5 digits, or (if empty is
// true) nothing at all.
func isPortSuffix(s []byte, empty bool) bool {
	if len(s) == 0 {
		return empty
	}
	if s[0] != ':' || len(s) < 2 || len(s) > 6 {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseIPv4 parses a dotted quad as netip does (no leading zeros), without
// converting b to a string.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	part := 0
	for i := 0; i < 4; i++ {
		if i > 0 {
			if part >= len(b) || b[part] != '.' {
				return netip.Addr{}, false
			}
			part++
		}
		n, digits := 0, 0
		for part < len(b) && '0' <= b[part] && b[part] <= '9' && digits < 4 {
			if digits == 1 && n == 0 {
				return netip.Addr{}, false // leading zero
			}
			n = n*10 + int(b[part]-'0')
			part++
			digits++
		}
		if digits == 0 || n > 255 {
			return netip.Addr{}, false
		}
		ip[i] = byte(n)
	}
	if part != len(b) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// parseIPv6 parses an IPv6 address without a zone as netip does (groups of
// one to four hex digits, at most one "::" standing for at least one zero
// group, optionally ending in a dotted quad), without converting b to a
// string: netip.ParseAddr would cost an allocation per record.
func parseIPv6(b []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // where "::" is in ip
	if len(b) >= 2 && b[0] == ':' && b[1] == ':' {
		ellipsis = 0
		b = b[2:]
	}
	i := 0
	for len(b) > 0 && i < 16 {
		n, digits := 0, 0
		for digits < len(b) && digits <= 4 {
			h, ok := hexDigit(b[digits])
			if !ok {
				break
			}
			n = n<<4 | h
			digits++
		}
		if digits == 0 || digits > 4 {
			return netip.Addr{}, false
		}
		if digits < len(b) && b[digits] == '.' {
			// A dotted quad ends the address and fills its last four bytes.
			if ellipsis < 0 && i != 12 || i > 12 {
				return netip.Addr{}, false
			}
			v4, ok := parseIPv4(b)
			if !ok {
				return netip.Addr{}, false
			}
			a4 := v4.As4()
			copy(ip[i:], a4[:])
			i += 4
			b = nil
			break
		}
		ip[i], ip[i+1] = byte(n>>8), byte(n)
		i += 2
		b = b[digits:]
		if len(b) == 0 {
			break
		}
		if b[0] != ':' || len(b) == 1 {
			return netip.Addr{}, false
		}
		b = b[1:]
		if b[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis = i
			b = b[1:]
		}
	}
	if len(b) > 0 {
		return netip.Addr{}, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - i
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	return netip.AddrFrom16(ip), true
}

func hexDigit(c byte) (int, bool) {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0'), true
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10, true
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10, true
	}
	return 0, false
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
