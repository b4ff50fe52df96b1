package simulate

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"
)

// First-party Microsoft application ids, as listed in Microsoft's "verify
// first-party Microsoft applications in sign-in reports" and in the tenant
// service principals owned by Microsoft (f8cdef31-a31e-4b4a-93e4-5f571e91255a).
const (
	appOffice        = "d3590ed6-52b3-4102-aeff-aad2292ab01c" // Microsoft Office (Outlook desktop, Word, Excel…)
	appOutlookMobile = "27922004-5251-4030-b22d-91ecd9a37ea4" // Outlook Mobile (iOS, Android)
	appTeams         = "1fec8e78-bce4-4aaf-ab1b-5451cc387264" // Microsoft Teams
	appExchange      = "00000002-0000-0ff1-ce00-000000000000" // Office 365 Exchange Online (what OWA reports as AppId)
	appGraph         = "00000003-0000-0000-c000-000000000000" // Microsoft Graph
	appSharePoint    = "00000003-0000-0ff1-ce00-000000000000" // Office 365 SharePoint Online
	appOneDriveSync  = "ab9b8c07-8f02-4f72-87fa-80105867a763" // OneDrive SyncEngine
	appOfficeHome    = "4765445b-32c6-49b0-83e6-1d93765276ca" // OfficeHome (office.com)
	appOWA           = "9199bf20-a13f-4107-85dc-02114787ef48" // Outlook Web App Office 365 (sign-ins)
	appEXOPowerShell = "fb78d390-0c51-40cd-8e17-fdbfab77341b" // Microsoft Exchange REST API Based Powershell
	appAuthBroker    = "29d9ed98-a469-4536-ade2-f981bc1d605e" // Microsoft Authentication Broker
	appAzurePortal   = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c" // Azure Portal
)

// Scenario constants: fixed so that an evaluation can be written against
// them (docs/simulator.md lists them all). None of them occurs in normal
// activity.
const (
	// StormAppID is the application the storm-0558 actor's forged tokens
	// claim. It is not a Microsoft application and never appears otherwise.
	StormAppID = "6b7f0558-3c2d-4e91-a8f0-2d5c0de05580"
	// StormNetwork is the /24 the storm-0558 actor operates from.
	StormNetwork = "203.0.113.0/24"
	// StormVPS1 and StormVPS2 are the actor's rented servers.
	StormVPS1 = "198.51.100.23"
	StormVPS2 = "198.51.100.187"

	// InboxRuleIP1 is where the inbox-rule-forwarding attacker signs in and
	// creates the rule; InboxRuleIP2 where it comes back a day later.
	InboxRuleIP1 = "198.51.100.77"
	InboxRuleIP2 = "198.51.100.78"
	// InboxRuleDomain receives the forwarded mail.
	InboxRuleDomain = "securemail-relay.example"

	// ConsentAppID is the multi-tenant application the phished user consents
	// to; ConsentAppName its display name.
	ConsentAppID   = "c3d0a9e1-7f52-4b86-9e0d-4a1f6c2b8e73"
	ConsentAppName = "PDF Secure Viewer"
	// ConsentIPPrefix: the consented app reads mail from ConsentIPPrefix+"200"
	// through ConsentIPPrefix+"209".
	ConsentIPPrefix = "198.51.100."

	// DelegatedIP1 is where the compromised admin grants itself FullAccess;
	// DelegatedIP2 where it reads the mailbox on the following days.
	DelegatedIP1 = "198.51.100.150"
	DelegatedIP2 = "198.51.100.151"
)

type osKind uint8

const (
	osWindows osKind = iota
	osMac
)

type mobileKind uint8

const (
	mobileNone mobileKind = iota
	mobileIOS
	mobileAndroid
)

// tenant is the static model of the simulated organisation, derived once
// from the configuration and never changed during a run.
type tenant struct {
	key       uint64 // seed-derived key for all random choices
	domain    string // UPN domain
	orgName   string // <name>.onmicrosoft.com
	orgID     string // OrganizationId GUID: a function of the tenant name only
	exoPrefix string // ObjectId prefix of Exchange admin records
	spHost    string // https://<name>.sharepoint.com
	myHost    string // https://<name>-my.sharepoint.com
	geo       string // SharePoint GeoLocation
	sidBase   string // "S-1-5-21-a-b-c-"

	users     []*user
	mailboxes []*mailbox
	sites     []*site
	groups    []group
	offices   []office
	carrier   []string // mobile carrier NAT addresses
	servers   []server
	admins    []*user
	execs     []*user
}

type server struct {
	name   string // e.g. AM0PR07MB5763
	origin string // OriginatingServer of mailbox records, JSON-escaped, with its trailing CR LF
	admin  string // OriginatingServer of admin records
	region string // for internal message ids: eurprd07
}

type office struct {
	egress []string // NAT addresses of the office /24
	v6     [6]byte  // 2001:db8:xxxx::/48
	net    string   // the /24, for the docs and tests
}

type user struct {
	idx          int
	upn, display string
	first, last  string
	alias        string
	oid          string // Entra object id
	puid         string // 16 hex digits
	spKey        string // SharePoint UserKey: i:0h.f|membership|<puid>@live.com
	sid          string
	mbx          int // own mailbox index
	dept         int
	title        string
	exec, admin  bool
	heavy        bool // reads enough mail to be throttled
	weight       float64
	office       int
	wfh          float64 // probability of working from home on a weekday
	shift        int64   // personal offset of the working day, seconds
	weekendWork  float64 // weekend activity multiplier

	os          osKind
	browser     int // index into browsers
	mobile      mobileKind
	hasDesktop  bool
	owaAffinity float64
	usesTeams   bool
	v6Office    bool // office traffic over IPv6
	v6Home      bool
	v6iid       uint64
	homeEpoch   int // days a home address lasts
	homePhase   int
	compliant   bool
	sites       []int
	personal    *site
	access      []access // other mailboxes this user reads as a delegate
	grants      []grant  // delegations this admin grants during the run
	group       int
}

// access is a delegation: the user reads mailbox mbx from time from (unix
// seconds; 0 means before the run).
type access struct {
	mbx  int
	from int64
}

// grant is an Add-MailboxPermission an admin runs during the run, after
// which the grantee starts reading the mailbox.
type grant struct {
	mbx     int
	grantee *user
	at      int64
}

type mailbox struct {
	idx      int
	upn      string
	alias    string
	guid     string
	sid      string
	puid     string
	owner    *user // nil for shared mailboxes
	srv      *server
	idPrefix string // first characters of the store ids of its items
	folders  []folder
	interval int64 // seconds between two arriving messages
	epoch    int64 // arrival time of message 0
	sent     uint64
}

type folder struct {
	id   string
	path string // JSON-escaped, e.g. \\Inbox
}

// Well-known folder indexes in mailbox.folders.
const (
	fInbox = iota
	fSent
	fDrafts
	fDeleted
	fArchive
	fFirstSub
)

type site struct {
	url      string // with trailing slash
	name     string
	id       string
	web      string
	list     string
	lib      string // document library path: "Shared Documents" or "Documents"
	files    int
	personal bool
	key      uint64
}

type group struct {
	name string
	oid  string
}

var firstNames = strings.Fields(`Adam Aisha Alex Alice Amir Ana Andrea Anna Ben Bianca Carla Carlos Chen Chloe Daniel
David Diana Elena Emma Erik Eva Fatima Felix Fiona Frank Grace Hana Hannah Hugo Ian Ines Isaac Ivan Jack James Jana
Javier Jonas Julia Karim Kate Laura Leo Lina Lucas Luis Maria Mark Marta Max Mei Mia Nadia Nina Noah Olga Omar Paul
Petra Priya Rafael Rosa Sam Sara Sofia Tom Uma Victor Yara Yusuf Zoe`)

var lastNames = strings.Fields(`Abbott Adler Alvarez Andersen Bauer Becker Bennett Berger Brandt Brooks Campbell Costa
Dalton Dubois Duarte Eriksen Evans Fischer Fontaine Garcia Graham Hahn Hansen Hartmann Hughes Ivanova Jansen Jensen
Kaiser Keller Khan Klein Kowalski Kramer Lambert Larsen Lehmann Lopez Martin Meyer Moreau Morgan Nakamura Nielsen Novak
Okafor Olsen Park Patel Perez Peters Petrov Quinn Ramos Reyes Richter Rossi Russo Santos Schmidt Schneider Schulz
Silva Singh Sorensen Suzuki Tanaka Taylor Thomas Torres Vogel Wagner Walker Weber Wolf Wright Young Zimmermann`)

var departments = []struct {
	name   string
	weight int
}{
	{"Sales", 20}, {"Engineering", 22}, {"Operations", 14}, {"Customer Support", 12}, {"Marketing", 9},
	{"Finance", 8}, {"IT", 6}, {"Human Resources", 5}, {"Legal", 4},
}

const deptIT = 6

var execTitles = []string{"Chief Executive Officer", "Chief Financial Officer", "Chief Operating Officer",
	"Chief Technology Officer", "General Counsel", "Chief Marketing Officer", "VP Sales", "VP Engineering",
	"Chief People Officer", "VP Operations", "Chief Information Security Officer", "VP Finance"}

var sharedNames = []string{"info", "support", "finance", "hr", "sales", "accounts", "helpdesk", "recruiting",
	"legal", "marketing", "office", "press", "invoices", "orders", "partners", "events"}

var subfolderNames = []string{"Projects", "Customers", "Invoices", "Newsletters", "Team", "Travel", "Reports", "Archive 2025", "Vendors", "Board"}

// buildTenant derives the whole organisation from the configuration.
func buildTenant(cfg Config) *tenant {
	key := mix(uint64(cfg.Seed), 0x7e4a47)
	label := strings.ToLower(cfg.Tenant)
	if i := strings.IndexByte(label, '.'); i > 0 {
		label = label[:i]
	}
	label = strings.ReplaceAll(label, "-", "")
	if label == "" {
		label = "tenant"
	}
	h := fnv.New64a()
	h.Write([]byte(strings.ToLower(cfg.Tenant)))
	nameKey := h.Sum64()

	t := &tenant{
		key:     key,
		domain:  cfg.Domain,
		orgName: label + ".onmicrosoft.com",
		orgID:   guidOf(nameKey, 1).String(),
		spHost:  "https://" + label + ".sharepoint.com",
		myHost:  "https://" + label + "-my.sharepoint.com",
	}
	r := newRNG(key, 1)
	if r.chance(0.6) {
		t.geo = "EUR"
	} else {
		t.geo = "NAM"
	}
	nk := newRNG(nameKey, 2)
	t.sidBase = fmt.Sprintf("S-1-5-21-%d-%d-%d-", 1000000000+nk.intn(3000000000), 1000000000+nk.intn(3000000000), 1000000000+nk.intn(3000000000))
	t.buildServers(&r)
	forest := "EURPR07A010"
	if t.geo == "NAM" {
		forest = "NAMPR13A004"
	}
	t.exoPrefix = forest + ".PROD.OUTLOOK.COM/Microsoft Exchange Hosted Organizations/" + t.orgName + "/"
	t.buildNetworks(&r)
	t.buildSites(&r, cfg.Users)
	t.buildUsers(&r, cfg)
	t.buildShared(&r, cfg)
	return t
}

func (t *tenant) buildServers(r *rng) {
	prefixes := []string{"AM0PR", "DB9PR", "PA4PR", "AS8PR", "VI1PR", "DU0PR"}
	region := "eurprd"
	if t.geo == "NAM" {
		prefixes = []string{"BN0PR", "CH3PR", "DM6PR", "SA1PR", "MN2PR", "PH0PR"}
		region = "namprd"
	}
	builds := []string{"15.20.8398.025", "15.20.8445.017", "15.20.8466.020", "15.20.8511.012"}
	for i := 0; i < 48; i++ {
		dc := r.between(1, 19)
		name := fmt.Sprintf("%s%02dMB%04d", prefixes[r.intn(len(prefixes))], dc, r.between(1000, 9999))
		b := builds[r.intn(len(builds))]
		t.servers = append(t.servers, server{
			name:   name,
			origin: name + " (" + b + `)\r\n`,
			admin:  name + " (" + b + ")",
			region: fmt.Sprintf("%s%02d", region, dc),
		})
	}
}

// buildNetworks picks the tenant's office /24s from 198.18.0.0/15 (reserved
// for benchmarking, so never a real customer's network) and a pool of mobile
// carrier NAT addresses from 240.0.0.0/4 (reserved, but shaped like public
// space). Attack scenarios use the TEST-NET ranges, which normal activity
// never touches.
func (t *tenant) buildNetworks(r *rng) {
	n := 2 + r.intn(3)
	used := map[int]bool{}
	for i := 0; i < n; i++ {
		c := r.intn(512)
		for used[c] {
			c = r.intn(512)
		}
		used[c] = true
		a, b := 18+c/256, c%256
		var o office
		o.net = fmt.Sprintf("198.%d.%d.0/24", a, b)
		hosts := map[int]bool{}
		for len(o.egress) < 4 {
			hst := r.between(2, 250)
			if !hosts[hst] {
				hosts[hst] = true
				o.egress = append(o.egress, fmt.Sprintf("198.%d.%d.%d", a, b, hst))
			}
		}
		seg := 0x1000 + r.intn(0x6000) // 2001:db8:1000:: – 2001:db8:6fff::, below the home and mobile ranges
		o.v6 = [6]byte{0x20, 0x01, 0x0d, 0xb8, byte(seg >> 8), byte(seg)}
		t.offices = append(t.offices, o)
	}
	for i := 0; i < 64; i++ {
		t.carrier = append(t.carrier, fmt.Sprintf("%d.%d.%d.%d", 240+r.intn(15), r.intn(256), r.intn(256), r.between(1, 254)))
	}
}

func (t *tenant) buildSites(r *rng, users int) {
	files := 150 + users*3
	if files > 5000 {
		files = 5000
	}
	names := make([]string, 0, len(departments)+2)
	for _, d := range departments {
		names = append(names, strings.ReplaceAll(d.name, " ", ""))
	}
	names = append(names, "Intranet", "Projects")
	for i, n := range names {
		k := mix(t.key, 0x517e, uint64(i))
		t.sites = append(t.sites, &site{
			url:   t.spHost + "/sites/" + n + "/",
			name:  n,
			id:    guidOf(k, 1).String(),
			web:   guidOf(k, 2).String(),
			list:  guidOf(k, 3).String(),
			lib:   "Shared Documents",
			files: files/2 + r.intn(files),
			key:   k,
		})
	}
}

const (
	siteIntranet = 9 // index of the Intranet site (after the departments)
	siteProjects = 10
)

func (t *tenant) buildUsers(r *rng, cfg Config) {
	n := cfg.Users
	nExec := clamp(n/50, 3, len(execTitles))
	if nExec > n {
		nExec = n
	}
	nAdmin := clamp(n/100, 1, 40)
	if nExec+nAdmin > n {
		nAdmin = n - nExec
	}
	nHeavy := n / 150
	seen := make(map[string]int, n)
	deptTotal := 0
	for _, d := range departments {
		deptTotal += d.weight
	}
	for i := 0; i < n; i++ {
		ur := newRNG(t.key, 0x05e1, uint64(i))
		u := &user{idx: i}
		u.first = firstNames[ur.intn(len(firstNames))]
		u.last = lastNames[ur.intn(len(lastNames))]
		alias := strings.ToLower(u.first + "." + u.last)
		if c := seen[alias]; c > 0 {
			seen[alias] = c + 1
			alias += strconv.Itoa(c + 1)
		} else {
			seen[alias] = 1
		}
		u.alias = alias
		u.upn = alias + "@" + t.domain
		u.display = u.first + " " + u.last
		u.oid = guidOf(t.key, 0x01d, uint64(i)).String()
		u.puid = puid(mix(t.key, 0x9a1d, uint64(i)))
		u.spKey = "i:0h.f|membership|" + strings.ToLower(u.puid) + "@live.com"
		u.sid = t.sidBase + strconv.Itoa(10000000+int(mix(t.key, 0x51d, uint64(i))%90000000))

		switch {
		case i < nExec:
			u.exec = true
			u.title = execTitles[i]
			u.dept = ur.intn(len(departments))
		case i < nExec+nAdmin:
			u.admin = true
			u.dept = deptIT
			u.title = "Systems Administrator"
		default:
			x := ur.intn(deptTotal)
			for d, dd := range departments {
				if x < dd.weight {
					u.dept = d
					break
				}
				x -= dd.weight
			}
			u.title = departments[u.dept].name + " Specialist"
		}
		// Heavy readers are the last users of the list, so that adding users
		// never turns an existing user into one. Less than 1% of mailboxes are
		// throttled in real tenants; these are they.
		if nHeavy > 0 && i >= n-nHeavy {
			u.heavy = true
		}
		u.weight = ur.lognormal(0.5)
		switch {
		case u.heavy:
			u.weight = 13
		case u.exec:
			u.weight *= 0.8
		case u.admin:
			u.weight *= 1.1
		}
		u.office = ur.intn(len(t.offices))
		u.wfh = []float64{0.05, 0.2, 0.4, 0.6}[ur.intn(4)]
		u.shift = int64(ur.norm() * 45 * 60)
		u.weekendWork = 1
		if ur.chance(0.15) {
			u.weekendWork = 3
		}
		if u.exec {
			u.weekendWork = 2.5
		}
		if ur.chance(0.8) {
			u.os = osWindows
			u.browser = pick(&ur, []int{bEdge, bEdge, bEdge, bChrome, bChrome, bFirefox})
		} else {
			u.os = osMac
			u.browser = pick(&ur, []int{bSafari, bChrome, bChrome})
		}
		u.hasDesktop = ur.chance(0.88)
		switch {
		case ur.chance(0.55):
			u.mobile = mobileIOS
		case ur.chance(0.6):
			u.mobile = mobileAndroid
		}
		if u.exec && u.mobile == mobileNone {
			u.mobile = mobileIOS
		}
		u.owaAffinity = []float64{0.1, 0.3, 0.6, 1.2}[ur.intn(4)]
		if !u.hasDesktop {
			u.owaAffinity += 1
		}
		if u.heavy { // a browser-bound power user: OWA binds every item
			u.hasDesktop = false
			u.owaAffinity = 3
		}
		u.usesTeams = ur.chance(0.9)
		u.v6Office = ur.chance(0.25)
		u.v6Home = ur.chance(0.2)
		u.v6iid = ur.u64() | 1
		u.homeEpoch = ur.between(10, 90)
		u.homePhase = ur.intn(u.homeEpoch)
		u.compliant = ur.chance(0.85)
		u.group = u.dept
		u.sites = []int{u.dept, siteIntranet}
		if ur.chance(0.5) {
			u.sites = append(u.sites, siteProjects)
		}
		if ur.chance(0.3) {
			u.sites = append(u.sites, ur.intn(len(departments)))
		}
		pk := mix(t.key, 0x0d1e, uint64(i))
		u.personal = &site{
			url:      t.myHost + "/personal/" + strings.NewReplacer(".", "_", "@", "_", "-", "_").Replace(u.upn) + "/",
			name:     u.display,
			id:       guidOf(pk, 1).String(),
			web:      guidOf(pk, 2).String(),
			list:     guidOf(pk, 3).String(),
			lib:      "Documents",
			files:    40 + ur.intn(200),
			personal: true,
			key:      pk,
		}
		u.mbx = len(t.mailboxes)
		t.mailboxes = append(t.mailboxes, t.newMailbox(&ur, len(t.mailboxes), u.alias, u.upn, u, u.exec))
		t.users = append(t.users, u)
		if u.admin {
			t.admins = append(t.admins, u)
		}
		if u.exec {
			t.execs = append(t.execs, u)
		}
	}
	// Normalise the activity weights to a mean of 1, so that --rate is the
	// mean per user whatever the mix of roles.
	sum := 0.0
	for _, u := range t.users {
		sum += u.weight
	}
	for _, u := range t.users {
		u.weight *= float64(n) / sum
	}
	for _, d := range departments {
		k := mix(t.key, 0x6709, uint64(len(t.groups)))
		t.groups = append(t.groups, group{name: d.name + " Team", oid: guidOf(k).String()})
	}
}

// regulars returns the users who are neither executives nor admins.
func (t *tenant) regulars() []*user {
	var out []*user
	for _, u := range t.users {
		if !u.exec && !u.admin {
			out = append(out, u)
		}
	}
	return out
}

// buildShared creates the shared mailboxes and the delegations: each
// executive's assistant reads the executive's mailbox, and small teams read
// shared mailboxes. Most delegations predate the run; some are granted by an
// admin during it (Add-MailboxPermission), and reading starts only after.
func (t *tenant) buildShared(r *rng, cfg Config) {
	regs := t.regulars()
	if len(regs) == 0 {
		return
	}
	start := cfg.Start.Unix()
	grantAt := func(gr *rng) int64 {
		if cfg.Days < 2 || !gr.chance(0.15) || len(t.admins) == 0 {
			return 0
		}
		day := gr.between(1, cfg.Days-1)
		// 10:00–16:00 in the tenant's zone on that day.
		return start + int64(day)*86400 - int64(cfg.UTCOffset.Seconds()) + int64(10*3600+gr.intn(6*3600))
	}
	addAccess := func(gr *rng, reader *user, mbx int) {
		for _, a := range reader.access {
			if a.mbx == mbx {
				return
			}
		}
		from := grantAt(gr)
		reader.access = append(reader.access, access{mbx: mbx, from: from})
		if from > 0 {
			adm := t.admins[gr.intn(len(t.admins))]
			adm.grants = append(adm.grants, grant{mbx: mbx, grantee: reader, at: from})
		}
	}
	// Assistants: one per two executives.
	for i, e := range t.execs {
		gr := newRNG(t.key, 0xa551, uint64(i))
		addAccess(&gr, regs[(i/2*7919)%len(regs)], e.mbx)
	}
	if cfg.Users < 10 {
		return
	}
	nShared := clamp(cfg.Users/25, 1, 400)
	for i := 0; i < nShared; i++ {
		gr := newRNG(t.key, 0x54a3, uint64(i))
		alias := sharedNames[i%len(sharedNames)]
		if i >= len(sharedNames) {
			alias += strconv.Itoa(i/len(sharedNames) + 1)
		}
		m := t.newMailbox(&gr, len(t.mailboxes), alias, alias+"@"+t.domain, nil, false)
		t.mailboxes = append(t.mailboxes, m)
		nd := gr.between(2, 6)
		for j := 0; j < nd; j++ {
			addAccess(&gr, regs[gr.intn(len(regs))], m.idx)
		}
	}
}

func (t *tenant) newMailbox(r *rng, idx int, alias, upn string, owner *user, busy bool) *mailbox {
	k := mix(t.key, 0x3b0c, uint64(idx))
	m := &mailbox{
		idx:   idx,
		upn:   upn,
		alias: alias,
		guid:  guidOf(k, 1).String(),
		owner: owner,
		srv:   &t.servers[r.intn(len(t.servers))],
	}
	if owner != nil {
		m.sid, m.puid = owner.sid, owner.puid
	} else {
		m.sid = t.sidBase + strconv.Itoa(10000000+int(mix(k, 3)%90000000))
		m.puid = puid(mix(k, 4))
	}
	kr := newRNG(k, 2)
	// Store ids of one mailbox share a long prefix (the mailbox and folder
	// part of the entry id); only the tail differs between items.
	m.idPrefix = string(appendB64([]byte("RgAAAAD"), &kr, 37, b64std))
	paths := []string{`\\Inbox`, `\\Sent Items`, `\\Drafts`, `\\Deleted Items`, `\\Archive`}
	nsub := 2 + kr.intn(4)
	for i := 0; i < nsub; i++ {
		paths = append(paths, `\\Inbox\\`+subfolderNames[(i+kr.intn(len(subfolderNames)))%len(subfolderNames)])
	}
	for _, p := range paths {
		id := appendB64([]byte("LgAAAAA"), &kr, 49, b64std)
		id = append(id, "AAAB"...)
		m.folders = append(m.folders, folder{id: string(id), path: p})
	}
	perDay := 30 + kr.intn(90)
	if busy {
		perDay = 150
	}
	if owner == nil {
		perDay = 60 + kr.intn(100)
	}
	m.interval = int64(86400 / perDay)
	m.epoch = -int64(kr.intn(1 << 20))
	return m
}

// homeIP is the user's home address on local day d: stable for an epoch of
// weeks, then the ISP hands out a new one.
func (t *tenant) homeIP(u *user, d int) string {
	epoch := (d + u.homePhase + 100000) / u.homeEpoch
	h := mix(t.key, 0x40e, uint64(u.idx), uint64(epoch))
	if u.v6Home {
		var a [16]byte
		a[0], a[1], a[2], a[3] = 0x20, 0x01, 0x0d, 0xb8
		a[4], a[5] = byte(0x80|(h>>8)&0x7f), byte(h)
		a[6], a[7] = byte(h>>16), byte(h>>24)
		putIID(&a, u.v6iid)
		return netip.AddrFrom16(a).String()
	}
	return fmt.Sprintf("%d.%d.%d.%d", 240+h%15, (h>>8)&255, (h>>16)&255, 1+(h>>24)%254)
}

// officeIP is the address a user's traffic leaves an office from on day d.
func (t *tenant) officeIP(u *user, d int) string {
	o := &t.offices[u.office]
	if u.v6Office {
		var a [16]byte
		copy(a[:], o.v6[:])
		a[6], a[7] = 0, byte(1+u.idx%16)
		putIID(&a, u.v6iid^uint64(u.office))
		return netip.AddrFrom16(a).String()
	}
	return o.egress[int(mix(t.key, 0x0ff, uint64(u.idx), uint64(d))%uint64(len(o.egress)))]
}

func putIID(a *[16]byte, iid uint64) {
	for i := 0; i < 8; i++ {
		a[8+i] = byte(iid >> (56 - 8*i))
	}
}

// puid formats a Passport unique id: 16 upper-case hex digits, 1003xxxx….
func puid(h uint64) string {
	return string(appendHexUpper([]byte("1003"), h, 12))
}

func clamp(v, lo, hi int) int {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

func pick[T any](r *rng, xs []T) T { return xs[r.intn(len(xs))] }
