package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/audit"
)

// Detector names, as alerts and allowlists carry them.
const (
	MailAppNew        = "mail-app-new"       // an application reads mail that never did in the tenant
	MailboxAppNew     = "mailbox-app-new"    // ... a known one reads a mailbox it never read
	MailNetworkNew    = "mail-network-new"   // a user reads mail from a country, ASN or range never seen for them
	CrossMailboxRead  = "cross-mailbox-read" // a user reads another's mailbox they never read
	MailVolume        = "mail-volume"        // a mailbox's access far above its history, or throttled for the first time
	ClientNew         = "client-new"         // a user's new client or user-agent family
	TokenIssuerNew    = "token-issuer-new"   // a token issuer or signing key never seen in the tenant
	RulePrefix        = "sigma:"             // + rule id: a Sigma rule matched
	mailItemsAccessed = "MailItemsAccessed"
)

// Detectors describes the built-in baseline detectors.
var Detectors = []struct{ Name, Severity, Description string }{
	{MailAppNew, "high", "MailItemsAccessed by an AppId / ClientAppId never seen accessing mail in the tenant"},
	{MailboxAppNew, "medium", "MailItemsAccessed by an application known in the tenant but never seen for that mailbox"},
	{MailNetworkNew, "medium", "mailbox access from a country (high), ASN or, without enrichment, an address range never seen for the user"},
	{CrossMailboxRead, "medium", "a user reading another user's mailbox they have never read (UserId ≠ MailboxOwnerUPN)"},
	{MailVolume, "medium", "a mailbox's daily mail access far above its own history, or IsThrottled for the first time"},
	{ClientNew, "low", "a client (ClientInfoString) or user-agent family never seen for the user"},
	{TokenIssuerNew, "high", "a token issuer or signing key id never seen in the tenant"},
}

// detect runs the baseline detectors on r: it learns from r and returns the
// findings r sets off.
func (e *Engine) detect(b *baseline, r *audit.Record, pos uint64, now time.Time) []alert.Finding {
	o := &e.opts
	t := r.CreationTime.Unix()
	// A record stamped in the future (a wrong clock, a forged time) must
	// not drag the baseline's clock along: that would age out everything
	// learned. Past a day ahead of now, it does not move the clock.
	b.clock(min(t, now.Unix()+86400))
	learning := b.learning(t, o)
	days := func() int64 { return max(1, (t-b.First)/86400) }
	var out []alert.Finding
	find := func(det, sev, entity, related, why string) {
		out = append(out, alert.Finding{Tenant: r.Tenant, Detector: det, Severity: sev, Entity: entity,
			Related: related, RecordID: r.ID, At: r.CreationTime, Pos: pos, Explanation: why, Title: title(det)})
	}
	user := strings.ToLower(r.UserID)
	// Keys are built in one buffer: looking a known value up (nearly every
	// time) allocates nothing.
	var buf [160]byte
	key := func(parts ...string) []byte {
		k := buf[:0]
		for _, p := range parts {
			k = append(k, p...)
		}
		return k
	}

	// Networks are learned from every record of the user (a sign-in from
	// home makes home known), but alerted on only for mailbox access.
	var netKeys []netKey
	if user != "" {
		netKeys = e.networks(r.ClientIP)
	}
	mail := r.Operation == mailItemsAccessed
	for _, k := range netKeys {
		key := key("net|", user, "|", k.key)
		if !mail {
			b.see(key, t, o)
			continue
		}
		if b.see(key, t, o) {
			find(MailNetworkNew, k.severity, user, r.ClientIP, fmt.Sprintf(
				"%s read mailbox %s from %s (%s), never seen for this user during %d days of history",
				r.UserID, mailboxOf(r), r.ClientIP, k.what, days()))
		}
	}

	if user != "" {
		if fam := e.clientFamily(r); fam != "" && b.see(key("cli|", user, "|", fam), t, o) {
			find(ClientNew, "low", user, fam, fmt.Sprintf("%s used client %q, never seen for this user during %d days of history",
				r.UserID, fam, days()))
		}
	}

	if mayNameToken(r.Raw) {
		for _, v := range tokenFields(r.Raw) {
			if b.see(key("tok|", v), t, o) {
				find(TokenIssuerNew, "high", v, user, fmt.Sprintf("%s presented a token from %s, never seen in this tenant during %d days of history",
					orNone(r.UserID), v, days()))
			}
		}
	}

	if r.Operation == "Add-MailboxPermission" {
		learnGrant(b, r, t, o)
	}
	if !mail {
		return out
	}
	mbx := mailboxOf(r)
	if app := appOf(r); app != "" {
		tenantNew := b.see(key("app|", app), t, o)
		mailboxNew := b.see(key("mapp|", mbx, "|", app), t, o)
		switch {
		case tenantNew:
			find(MailAppNew, "high", app, mbx, fmt.Sprintf(
				"AppId %s accessed mailbox %s; never seen accessing mail in this tenant during %d days of history", app, mbx, days()))
		case mailboxNew && !b.flagged(key("app|", app)):
			find(MailboxAppNew, "medium", mbx, app, fmt.Sprintf(
				"AppId %s accessed mailbox %s; it reads mail in this tenant but never read this mailbox during %d days of history", app, mbx, days()))
		}
	}
	if user != "" && strings.Contains(user, "@") && mbx != "" && mbx != user {
		// Access someone else granted (an admin's Add-MailboxPermission)
		// explains the reads that follow; access a user granted
		// themselves does not.
		if b.see(key("xmbx|", user, "|", mbx), t, o) && !b.known([]byte(grantKey(user, mbx))) {
			find(CrossMailboxRead, "medium", user, mbx, fmt.Sprintf(
				"%s read the mailbox of %s, which they never read during %d days of history", r.UserID, mbx, days()))
		}
	}
	if mbx != "" {
		n := max(r.OperationCount, 1)
		if spike, peak := b.count(mbx, int32(t/86400), n, learning, o); spike {
			find(MailVolume, "medium", mbx, "", fmt.Sprintf(
				"mailbox %s had over %.0f items accessed on %s; its busiest day in its history had %.0f",
				mbx, max(o.VolumeFactor*peak, peak+float64(o.VolumeFloor)), r.CreationTime.Format(time.DateOnly), peak))
		}
		if r.IsThrottled && b.see(key("thr|", mbx), t, o) {
			find(MailVolume, "medium", mbx, "", fmt.Sprintf(
				"mail access to mailbox %s was throttled (IsThrottled), which never happened during %d days of history", mbx, days()))
		}
	}
	return out
}

func title(det string) string {
	for _, d := range Detectors {
		if d.Name == det {
			return d.Description
		}
	}
	return det
}

func orNone(s string) string {
	if s == "" {
		return "(no user)"
	}
	return s
}

// mailboxOf is the mailbox a MailItemsAccessed record reads.
func mailboxOf(r *audit.Record) string {
	if r.MailboxOwnerUPN != "" {
		return strings.ToLower(r.MailboxOwnerUPN)
	}
	return strings.ToLower(r.UserID)
}

// appOf is the application that read mail: the client application when
// there is one (an app reading through Microsoft Graph has Graph as AppId
// and itself as ClientAppId), else AppId.
func appOf(r *audit.Record) string {
	if r.ClientAppID != "" {
		return strings.ToLower(r.ClientAppID)
	}
	return strings.ToLower(r.AppID)
}

// netKey is one way of naming where an address is.
type netKey struct {
	key, what, severity string
}

// networks names the address ip (a record's ClientIP) by country and ASN
// when the enrichment databases know it, else by its /24 (IPv4) or /48
// (IPv6) range; it names no network for an unusable, loopback or private
// address.
func (e *Engine) networks(ip string) []netKey {
	if ip == "" {
		return nil
	}
	// A tenant's users come from few addresses, again and again: looking
	// each up once saves parsing it and most of the database walks.
	e.nets.mu.Lock()
	keys, ok := e.nets.m[ip]
	e.nets.mu.Unlock()
	if ok {
		return keys
	}
	if addr, err := netip.ParseAddr(ip); err == nil && !addr.IsLoopback() && !addr.IsPrivate() {
		keys = e.lookupNetworks(addr)
	}
	e.nets.mu.Lock()
	if e.nets.m == nil || len(e.nets.m) >= maxCachedNetworks {
		e.nets.m = make(map[string][]netKey)
	}
	e.nets.m[strings.Clone(ip)] = keys // not pinning the record's strings
	e.nets.mu.Unlock()
	return keys
}

// maxCachedNetworks bounds the address cache; full, it starts over.
const maxCachedNetworks = 1 << 16

func (e *Engine) lookupNetworks(addr netip.Addr) []netKey {
	if e.geo != nil {
		n, ok := e.geo.Lookup(addr)
		if ok && (n.Country != "" || n.ASN != 0) {
			var out []netKey
			if n.Country != "" {
				out = append(out, netKey{"cc|" + n.Country, "country " + n.Country, "high"})
			}
			if n.ASN != 0 {
				what := "AS" + strconv.FormatUint(uint64(n.ASN), 10)
				if n.Org != "" {
					what += " " + n.Org
				}
				out = append(out, netKey{"asn|" + strconv.FormatUint(uint64(n.ASN), 10), what, "medium"})
			}
			return out
		}
	}
	bits := 24
	if addr.Is6() && !addr.Is4In6() {
		bits = 48
	}
	p, _ := addr.Unmap().Prefix(bits)
	return []netKey{{"range|" + p.String(), "range " + p.String(), "low"}}
}

// clientFamily names the kind of client a record came from: the Exchange
// client (Client=OWA, REST, ...) with its browser and OS, or a sign-in's
// user agent family. Versions are left out: they change every month.
// Families are cached by client string and by user agent: records repeat
// a handful of them.
func (e *Engine) clientFamily(r *audit.Record) string {
	if cis := r.ClientInfoString; cis != "" {
		return e.clients.get(&e.clients.byInfo, cis, cisFamily)
	}
	if !signIn(r.Operation) {
		return ""
	}
	// Sign-ins keep the user agent in ExtendedProperties; scanning every
	// other record's raw bytes for it would cost for nothing.
	i := bytes.Index(r.Raw, []byte(`"UserAgent"`))
	if i < 0 {
		return ""
	}
	if ua, ok := plainExtendedValue(r.Raw[i:]); ok {
		return e.clients.getBytes(ua)
	}
	return e.clients.get(&e.clients.byAgent, extendedValue(r.Raw[i:]), uaFamily)
}

// clientCache holds client families by ClientInfoString and by user agent.
type clientCache struct {
	mu              sync.Mutex
	byInfo, byAgent map[string]string
}

// maxCachedClients bounds each map of the client cache; full, it starts over.
const maxCachedClients = 1 << 12

func (c *clientCache) get(m *map[string]string, s string, family func(string) string) string {
	c.mu.Lock()
	f, ok := (*m)[s]
	c.mu.Unlock()
	if ok {
		return f
	}
	f = family(s)
	c.mu.Lock()
	if *m == nil || len(*m) >= maxCachedClients {
		*m = make(map[string]string)
	}
	(*m)[strings.Clone(s)] = f
	c.mu.Unlock()
	return f
}

// getBytes is get of a user agent given as bytes, copied only when new.
func (c *clientCache) getBytes(ua []byte) string {
	c.mu.Lock()
	f, ok := c.byAgent[string(ua)]
	c.mu.Unlock()
	if ok {
		return f
	}
	return c.get(&c.byAgent, string(ua), uaFamily)
}

// cisFamily is the family of a ClientInfoString: its Client= part with the
// family of the user agent in it.
func cisFamily(cis string) string {
	var client, ua string
	for part := range strings.SplitSeq(cis, ";") {
		if c, ok := strings.CutPrefix(part, "Client="); ok && client == "" {
			client = c
		} else if strings.Contains(part, "/") {
			ua = part
		}
	}
	fam := uaFamily(ua)
	switch {
	case client != "" && fam != "":
		return client + " " + fam
	case client != "":
		return client
	}
	return fam
}

// learnGrant learns an Add-MailboxPermission giving FullAccess to a user
// other than the one who ran it.
func learnGrant(b *baseline, r *audit.Record, t int64, o *Options) {
	var rec struct {
		Parameters []struct {
			Name  string
			Value json.RawMessage
		}
	}
	if json.Unmarshal(r.Raw, &rec) != nil {
		return
	}
	var identity, grantee string
	full := false
	for _, p := range rec.Parameters {
		var v string
		if json.Unmarshal(p.Value, &v) != nil {
			v = string(p.Value) // a list of rights, say
		}
		switch strings.ToLower(p.Name) {
		case "identity":
			identity = v
		case "user":
			grantee = strings.ToLower(v)
		case "accessrights":
			full = strings.Contains(strings.ToLower(v), "fullaccess")
		}
	}
	if identity == "" || grantee == "" || !full || grantee == strings.ToLower(r.UserID) {
		return
	}
	b.see([]byte(grantKey(grantee, identity)), t, o)
}

// grantKey names a grant of mailbox to user. Exchange names the mailbox by
// alias, UPN or a path ending in the alias; reads name it by UPN: both are
// reduced to the alias.
func grantKey(user, mailbox string) string {
	m := strings.ToLower(mailbox)
	if i := strings.LastIndexAny(m, `\/`); i >= 0 {
		m = m[i+1:]
	}
	m, _, _ = strings.Cut(m, "@")
	return "grant|" + user + "|" + m
}

// signIn reports whether op is an Entra ID sign-in (AzureActiveDirectoryStsLogon).
func signIn(op string) bool { return op == "UserLoggedIn" || op == "UserLoginFailed" }

// extendedValue reads the Value of a {"Name":"UserAgent","Value":"..."}
// entry starting at b, without decoding the whole record.
func extendedValue(b []byte) string {
	end := bytes.IndexByte(b, '}')
	if end < 0 {
		return ""
	}
	var kv struct{ Value string }
	if json.Unmarshal(append([]byte(`{`), b[len(`"UserAgent"`)+1:end+1]...), &kv) != nil {
		return ""
	}
	return kv.Value
}

// plainExtendedValue is extendedValue for the usual shape, ,"Value":"..."}
// right after the name with nothing escaped in the value; ok is false for
// any other, which extendedValue then reads. It returns the bytes in b.
func plainExtendedValue(b []byte) (v []byte, ok bool) {
	const name, value = `"UserAgent"`, `,"Value":"`
	rest, ok := bytes.CutPrefix(b[len(name):], []byte(value))
	if !ok {
		return nil, false
	}
	n := bytes.IndexByte(rest, '"')
	if n < 0 || n+1 >= len(rest) || rest[n+1] != '}' {
		return nil, false
	}
	v = rest[:n]
	for _, c := range v {
		// Escapes and control characters need a decoder (a control
		// character makes the JSON invalid, so the value empty);
		// anything not ASCII too, as invalid UTF-8 would be replaced;
		// extendedValue ends the entry at the first }, even in a value.
		if c == '\\' || c < 0x20 || c >= 0x80 || c == '}' {
			return nil, false
		}
	}
	return v, true
}

// mayNameToken reports whether raw contains "TokenIssuer" or "KeyId",
// which a record naming a token issuer or signing key must. It looks for
// the rarest letter of each (K and k are ~3 and ~6 in a typical record,
// against ~13 T), so it is cheaper than two bytes.Contains.
func mayNameToken(raw []byte) bool {
	return containsAround(raw, "KeyId", 0) || containsAround(raw, "TokenIssuer", 2)
}

// containsAround is bytes.Contains(s, needle), found by looking for
// needle[at].
func containsAround(s []byte, needle string, at int) bool {
	c := needle[at]
	for i := at; i < len(s); {
		j := bytes.IndexByte(s[i:], c)
		if j < 0 {
			return false
		}
		start := i + j - at
		if start+len(needle) <= len(s) && string(s[start:start+len(needle)]) == needle {
			return true
		}
		i += j + 1
	}
	return false
}

// uaFamily reduces a user agent to its browser or tool and OS.
func uaFamily(ua string) string {
	if ua == "" {
		return ""
	}
	l := strings.ToLower(ua)
	tool := ""
	for _, c := range []struct{ needle, name string }{
		{"edg/", "Edge"}, {"firefox/", "Firefox"}, {"chrome/", "Chrome"}, {"safari/", "Safari"},
		{"outlook", "Outlook"}, {"powershell", "PowerShell"}, {"python", "Python"}, {"curl/", "curl"},
		{"go-http-client", "Go"}, {"okhttp", "okhttp"}, {"msal", "MSAL"},
	} {
		if strings.Contains(l, c.needle) {
			tool = c.name
			break
		}
	}
	os := ""
	for _, c := range []struct{ needle, name string }{
		{"windows", "Windows"}, {"iphone", "iOS"}, {"ipad", "iOS"}, {"android", "Android"},
		{"mac os", "macOS"}, {"macintosh", "macOS"}, {"cros", "ChromeOS"}, {"linux", "Linux"},
	} {
		if strings.Contains(l, c.needle) {
			os = c.name
			break
		}
	}
	switch {
	case tool == "" && os == "":
		if i := strings.IndexAny(ua, "/ "); i > 0 {
			return ua[:i]
		}
		return ua
	case os == "":
		return tool
	case tool == "":
		return os
	}
	return tool + "/" + os
}

// tokenFields returns the token issuer and signing key ids a record names,
// as "issuer:<value>" and "key:<value>". Microsoft puts them in different
// places per workload, so every object and Name/Value list is searched.
func tokenFields(raw []byte) []string {
	var doc any
	if json.Unmarshal(raw, &doc) != nil {
		return nil
	}
	var out []string
	add := func(name string, v any) {
		s, ok := v.(string)
		if !ok || s == "" {
			return
		}
		n := strings.ToLower(name)
		switch {
		case strings.HasPrefix(n, "tokenissuer"):
			out = append(out, "issuer:"+s)
		case n == "signingkeyid" || n == "keyid" || n == "tokensigningkeyid":
			out = append(out, "key:"+s)
		}
	}
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if depth > 4 {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			if name, ok := x["Name"].(string); ok {
				add(name, x["Value"])
			}
			for k, c := range x {
				add(k, c)
				walk(c, depth+1)
			}
		case []any:
			for _, c := range x {
				walk(c, depth+1)
			}
		}
	}
	walk(doc, 0)
	return out
}
