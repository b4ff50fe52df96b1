package simulate

import (
	"math"
	"slices"
)

// kind is the operation an event renders to.
type kind uint8

const (
	kBind kind = iota
	kSync
	kSend
	kSearchExchange
	kFileAccessed
	kFileModified
	kFileDownloaded
	kSearchSharePoint
	kLogin
	kLoginFailed
	kSetMailbox
	kAddMailboxPermission
	kUpdateUser
	kAddMember
	kNewInboxRule
	kSetInboxRule
	kAddServicePrincipal
	kAddGrant
	kConsent
	numKinds
)

// kindOperation is the Operation field of each kind. Bind and Sync are both
// MailItemsAccessed; Stats keeps them apart.
var kindOperation = [numKinds]string{
	kBind: "MailItemsAccessed", kSync: "MailItemsAccessed", kSend: "Send",
	kSearchExchange: "SearchQueryInitiatedExchange", kFileAccessed: "FileAccessed",
	kFileModified: "FileModified", kFileDownloaded: "FileDownloaded",
	kSearchSharePoint: "SearchQueryInitiatedSharePoint", kLogin: "UserLoggedIn",
	kLoginFailed: "UserLoginFailed", kSetMailbox: "Set-Mailbox",
	kAddMailboxPermission: "Add-MailboxPermission", kUpdateUser: "Update user.",
	kAddMember: "Add member to group.", kNewInboxRule: "New-InboxRule", kSetInboxRule: "Set-InboxRule",
	kAddServicePrincipal: "Add service principal.", kAddGrant: "Add delegated permission grant.",
	kConsent: "Consent to application.",
}

// kindName names kinds in Stats: the operation, with the MailItemsAccessed
// access type.
func kindName(k kind) string {
	switch k {
	case kBind:
		return "MailItemsAccessed/Bind"
	case kSync:
		return "MailItemsAccessed/Sync"
	}
	return kindOperation[k]
}

// session is one sitting of one actor on one device: every record it
// produces shares the client, the address and the session ids.
type session struct {
	u       *user
	surf    surface
	cli     *client
	signIns []*signIn
	ip      string
	id      guid // Exchange SessionId
	aad     guid // Entra session: stable per device for a week
	noAAD   bool // forged tokens have no Entra session
	start   int64
	ua      string
	scen    uint8  // scenario id, 0 for normal activity
	entity  string // label entity for scenario records
	bulk    bool   // bind records read many items at once (scenarios)
}

// event is one record to be rendered. All the randomness a record needs
// beyond these fields is drawn from r, so that its bytes depend only on the
// event and not on the interleaving of other users.
type event struct {
	t    int64 // CreationTime, unix seconds
	s    *session
	r    uint64
	mbx  int32 // mailbox accessed, or target user for directory operations
	arg  int32 // kind-specific
	kind kind
}

// Day shape: how much of a weekday's activity happens on each weekday.
var dayFactor = [7]float64{0.09, 1, 1.02, 1, 0.97, 0.9, 0.13} // Sunday … Saturday

// localMidnight returns the unix time of local midnight of day d of the run
// (day 0 is the local date of the run's first instant).
func (g *Generator) localMidnight(d int) int64 { return g.day0 + int64(d)*86400 }

func (g *Generator) weekday(d int) int {
	// 1970-01-01 was a Thursday (4).
	days := (g.day0 + int64(g.offset)) / 86400
	return int(((days+int64(d))%7 + 7 + 4) % 7)
}

// planDay appends user u's events of local day d to out.
func (g *Generator) planDay(u *user, d int, out []event) []event {
	t := g.t
	r := newRNG(t.key, 0xda1, uint64(u.idx), uint64(d))
	wd := g.weekday(d)
	weekend := wd == 0 || wd == 6
	f := dayFactor[wd]
	if weekend {
		f *= u.weekendWork
	}
	budget := g.cfg.Rate * g.scale * u.weight * f * r.lognormal(0.3)
	var nSess int
	if budget < 8 {
		nSess = r.round(budget / 8)
	} else {
		nSess = clamp(r.round(budget/16), 1, 40)
	}
	midnight := g.localMidnight(d)
	home := weekend || r.chance(u.wfh)
	startOut := len(out)

	type plan struct {
		s      *session
		dur    int64
		quota  int
		weight float64
	}
	plans := make([]plan, 0, nSess)
	logins := 0
	for i := 0; i < nSess; i++ {
		surf := pickSurface(&r, u, weekend)
		local := sessionStart(&r, u, weekend)
		dur := sessionLength(&r, surf)
		s := &session{
			u:       u,
			surf:    surf,
			cli:     u.mailClient(surf),
			signIns: signIns(surf, u),
			start:   midnight + local,
			ua:      u.userAgent(surf),
			id:      r.guid(),
			aad:     guidOf(t.key, 0xaad, uint64(u.idx), uint64(surf), uint64((d+7000)/7)),
		}
		atHome := home || local < 7*3600 || local > 19*3600
		switch {
		case surf == sMobile && r.chance(0.5):
			s.ip = t.carrier[r.intn(len(t.carrier))]
		case atHome:
			s.ip = t.homeIP(u, d)
		default:
			s.ip = t.officeIP(u, d)
		}
		out = g.signInEvents(&r, s, dur, out)
		logins += 1 + int(dur/3600)
		w := float64(dur) / 60 * [...]float64{0.7, 1.0, 1.6}[surf]
		plans = append(plans, plan{s: s, dur: dur, weight: w})
	}
	rest := budget - float64(logins)
	if rest > 0 {
		total := 0.0
		for _, p := range plans {
			total += p.weight
		}
		for i := range plans {
			plans[i].quota = r.round(rest * plans[i].weight / total)
		}
	}
	for _, p := range plans {
		out = g.sessionEvents(&r, p.s, p.dur, p.quota, out)
	}
	if u.admin && !weekend {
		out = g.adminEvents(&r, u, d, home, out)
	}
	for _, gr := range u.grants {
		if gr.at >= midnight && gr.at < midnight+86400 {
			out = g.grantEvents(&r, u, d, gr, out)
		}
	}
	// Keep only the events of the run; partial local days at either end
	// are generated whole and cut here.
	kept := out[:startOut]
	for _, e := range out[startOut:] {
		if e.t >= g.start && e.t < g.end {
			kept = append(kept, e)
		}
	}
	return kept
}

// pickSurface chooses a session's device from the user's habits; on
// weekends the phone takes over.
func pickSurface(r *rng, u *user, weekend bool) surface {
	var w [3]float64
	if u.hasDesktop {
		w[sDesktop] = 1
	}
	w[sBrowser] = 0.25 + u.owaAffinity*0.4
	if u.mobile != mobileNone {
		w[sMobile] = 0.7
	}
	if weekend {
		w[sDesktop] *= 0.4
		w[sMobile] *= 3
	}
	x := r.float() * (w[0] + w[1] + w[2])
	for i, v := range w {
		if x < v {
			return surface(i)
		}
		x -= v
	}
	return sBrowser
}

// sessionStart returns a session's start in seconds after local midnight:
// mostly within the user's working day (with a lunch dip), some in the
// evening, a few at any hour; on weekends spread over the daytime.
func sessionStart(r *rng, u *user, weekend bool) int64 {
	x := r.float()
	var s int64
	switch {
	case weekend && x < 0.7:
		s = int64(r.between(9*3600, 21*3600))
	case weekend && x < 0.92:
		s = int64(r.between(21*3600, 24*3600-1))
	case !weekend && x < 0.86:
		for {
			s = 8*3600 + u.shift + int64(r.intn(int(9.5*3600)))
			if s < 12*3600 || s >= 13*3600 || r.chance(0.5) {
				break
			}
		}
	case !weekend && x < 0.97:
		s = int64(r.between(18*3600+1800, 23*3600+1800))
	default:
		s = int64(r.intn(86400))
	}
	// Keep clear of midnight: a failed sign-in may precede the session by
	// up to 90 seconds, and a day's events must not start before its
	// midnight (see stream).
	return min(max(s, 120), 86399)
}

func sessionLength(r *rng, s surface) int64 {
	switch s {
	case sDesktop:
		return int64(math.Min(6*3600, 5400*r.lognormal(0.6)))
	case sBrowser:
		return int64(math.Min(3*3600, 1800*r.lognormal(0.7)))
	}
	return int64(math.Min(3600, 600*r.lognormal(0.7)))
}

// signInEvents appends a session's sign-ins: one at the start (sometimes
// after an interrupted attempt), then a token refresh every hour.
func (g *Generator) signInEvents(r *rng, s *session, dur int64, out []event) []event {
	if r.chance(0.06) {
		out = append(out, event{t: s.start - int64(r.between(5, 90)), s: s, r: r.u64(), kind: kLoginFailed})
	}
	for h := int64(0); h*3600 <= dur; h++ {
		t := s.start + h*3600
		if h > 0 {
			t += int64(r.intn(300))
		}
		out = append(out, event{t: t, s: s, r: r.u64(), kind: kLogin, arg: int32(h % int64(len(s.signIns)))})
	}
	return out
}

// Operation mixes per surface, for the records of a session that are not
// sign-ins or folder syncs. Weights are relative.
type opWeight struct {
	k     kind
	teams bool // the bind goes through Teams (Graph)
	w     float64
}

var surfaceMix = [3][]opWeight{
	sDesktop: {{kBind, false, 0.36}, {kBind, true, 0.04}, {kSend, false, 0.07}, {kSearchExchange, false, 0.03},
		{kFileAccessed, false, 0.26}, {kFileModified, false, 0.13}, {kFileDownloaded, false, 0.05}, {kSearchSharePoint, false, 0.01}},
	sBrowser: {{kBind, false, 0.60}, {kSend, false, 0.06}, {kSearchExchange, false, 0.03},
		{kFileAccessed, false, 0.19}, {kFileModified, false, 0.04}, {kFileDownloaded, false, 0.04}, {kSearchSharePoint, false, 0.04}},
	sMobile: {{kBind, false, 0.84}, {kBind, true, 0.06}, {kSend, false, 0.07}, {kSearchExchange, false, 0.03}},
}

func pickOp(r *rng, mix []opWeight) opWeight {
	total := 0.0
	for _, o := range mix {
		total += o.w
	}
	x := r.float() * total
	for _, o := range mix {
		if x < o.w {
			return o
		}
		x -= o.w
	}
	return mix[0]
}

// sessionEvents appends quota records of a session: folder syncs for
// desktop Outlook, then records drawn from the surface's mix. Bind records
// of one context never fall within two minutes of each other, because
// Exchange aggregates those into one record.
func (g *Generator) sessionEvents(r *rng, s *session, dur int64, quota int, out []event) []event {
	u := s.u
	if quota <= 0 {
		return out
	}
	if s.cli.sync {
		out, quota = g.syncEvents(r, s, dur, quota, out)
	}
	var teamsSession *session
	binds := 0
	type bindTarget struct {
		mbx   int32
		teams bool
	}
	var targets []bindTarget
	for i := 0; i < quota; i++ {
		o := pickOp(r, surfaceMix[s.surf])
		if u.heavy && r.chance(0.7) {
			o = opWeight{k: kBind}
		}
		switch o.k {
		case kBind:
			binds++
			mbx := int32(u.mbx)
			if !o.teams && len(u.access) > 0 && s.surf != sMobile && r.chance(0.3) {
				a := u.access[r.intn(len(u.access))]
				if a.from == 0 || a.from < s.start {
					mbx = int32(a.mbx)
				}
			}
			targets = append(targets, bindTarget{mbx, o.teams && u.usesTeams})
		default:
			out = append(out, event{t: s.start + int64(r.intn(int(dur)+1)), s: s, r: r.u64(), kind: o.k, mbx: int32(u.mbx)})
		}
	}
	if binds == 0 {
		return out
	}
	// Binds go into distinct 130-second slots per context (client and
	// mailbox), so that no two records of one context are within the
	// two-minute aggregation window. A session too short for its binds
	// stretches.
	const slot = 130
	slots := int(dur / slot)
	if slots < binds {
		slots = binds
	}
	perm := make([]int32, slots)
	for i := range perm {
		perm[i] = int32(i)
	}
	for i, bt := range targets {
		j := i + r.intn(slots-i)
		perm[i], perm[j] = perm[j], perm[i]
		ss := s
		if bt.teams {
			if teamsSession == nil {
				cp := *s
				cp.cli = cliTeamsGraph
				cp.id = r.guid()
				teamsSession = &cp
			}
			ss = teamsSession
		}
		t := s.start + int64(perm[i])*slot + int64(r.intn(10))
		out = append(out, event{t: t, s: ss, r: r.u64(), kind: kBind, mbx: bt.mbx})
	}
	return out
}

// syncEvents appends desktop Outlook's folder syncs: the Inbox, Sent Items,
// Drafts and one more folder of the own mailbox, and the Inbox of each
// delegated mailbox, when Outlook starts; then the Inbox once an hour
// (Exchange keeps one sync record per folder and context per hour). Syncs
// use at most a third of the session's quota.
func (g *Generator) syncEvents(r *rng, s *session, dur int64, quota int, out []event) ([]event, int) {
	u := s.u
	budget := quota / 3
	if budget < 1 {
		budget = 1
	}
	n := 0
	add := func(t int64, mbx, folder int) {
		if n < budget {
			out = append(out, event{t: t, s: s, r: r.u64(), kind: kSync, mbx: int32(mbx), arg: int32(folder)})
			n++
		}
	}
	own := g.t.mailboxes[u.mbx]
	extra := fArchive + r.intn(len(own.folders)-fArchive)
	for i, f := range []int{fInbox, fSent, fDrafts, extra} {
		add(s.start+int64(i)+int64(r.intn(20)), u.mbx, f)
	}
	for _, a := range u.access {
		if a.from == 0 || a.from < s.start {
			add(s.start+int64(r.between(5, 60)), a.mbx, fInbox)
		}
	}
	for h := int64(1); h*3600 < dur; h++ {
		add(s.start+h*3600+30+int64(r.intn(600)), u.mbx, fInbox)
	}
	return out, quota - n
}

// adminEvents appends an admin's routine work on a weekday: a PowerShell
// or portal session with a few cmdlets or directory changes.
func (g *Generator) adminEvents(r *rng, u *user, d int, home bool, out []event) []event {
	t := g.t
	n := r.round(1.5 * r.lognormal(0.5))
	for i := 0; i < n; i++ {
		s := g.adminSession(r, u, d, home, g.localMidnight(d)+int64(r.between(9*3600, 17*3600))+u.shift)
		out = append(out, event{t: s.start, s: s, r: r.u64(), kind: kLogin})
		ops := r.between(1, 4)
		for j := 0; j < ops; j++ {
			at := s.start + int64(r.between(30, 1800))
			x := r.float()
			switch {
			case x < 0.45:
				out = append(out, event{t: at, s: s, r: r.u64(), kind: kSetMailbox, mbx: int32(r.intn(len(t.mailboxes)))})
			case x < 0.8:
				out = append(out, event{t: at, s: s, r: r.u64(), kind: kUpdateUser, mbx: int32(r.intn(len(t.users)))})
			default:
				out = append(out, event{t: at, s: s, r: r.u64(), kind: kAddMember, mbx: int32(r.intn(len(t.users)))})
			}
		}
	}
	return out
}

func (g *Generator) adminSession(r *rng, u *user, d int, home bool, start int64) *session {
	s := &session{
		u:       u,
		surf:    sAdmin,
		signIns: []*signIn{signInPowerShell},
		start:   start,
		ua:      uaPowerShell,
		id:      r.guid(),
		aad:     guidOf(g.t.key, 0xaad, uint64(u.idx), uint64(sAdmin), uint64((d+7000)/7)),
	}
	if r.chance(0.4) {
		s.signIns = []*signIn{signInPortal}
		s.ua = u.userAgent(sBrowser)
	}
	if home {
		s.ip = g.t.homeIP(u, d)
	} else {
		s.ip = g.t.officeIP(u, d)
	}
	return s
}

// grantEvents appends an admin granting a delegate FullAccess (the
// delegate reads the mailbox from then on).
func (g *Generator) grantEvents(r *rng, u *user, d int, gr grant, out []event) []event {
	s := g.adminSession(r, u, d, false, gr.at-int64(r.between(60, 600)))
	s.signIns = []*signIn{signInPowerShell}
	s.ua = uaPowerShell
	out = append(out, event{t: s.start, s: s, r: r.u64(), kind: kLogin})
	return append(out, event{t: gr.at, s: s, r: r.u64(), kind: kAddMailboxPermission, mbx: int32(gr.mbx), arg: int32(gr.grantee.idx)})
}

// sortEvents orders events by time; the stable sort keeps generation order
// for ties, so the output is deterministic.
func sortEvents(ev []event) {
	slices.SortStableFunc(ev, func(a, b event) int {
		switch {
		case a.t < b.t:
			return -1
		case a.t > b.t:
			return 1
		}
		return 0
	})
}
