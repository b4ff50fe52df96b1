package simulate

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// ScenarioInfo says what a scenario injects into this run, for evaluation.
type ScenarioInfo struct {
	Name     string
	Start    time.Time // first injected record
	End      time.Time // last injected record
	Entities []string  // label entities: targeted mailboxes or compromised accounts
	Targets  []string  // mailboxes the attacker reads (MailboxOwnerUPN)
	AppIDs   []string  // applications only the attacker uses
	IPs      []string  // addresses the attacker uses
	Planned  int       // injected records before MailItemsAccessed throttling
}

// Scenarios describes the injected scenarios of this run.
func (g *Generator) Scenarios() []ScenarioInfo { return append([]ScenarioInfo(nil), g.scenInfo...) }

// Attack clients: what Exchange records for the scenarios' tooling.
var (
	// Storm-0558 used forged tokens against the mailbox REST API.
	cliStorm = &client{cis: "Client=REST;Client=RESTSystem;;", appID: StormAppID, clientAppID: StormAppID, requestID: true}
	// The consented application reads mail through Microsoft Graph.
	cliConsentApp = &client{cis: "Client=REST;Client=RESTSystem;;", appID: appGraph, clientAppID: ConsentAppID, apiID: appGraph, requestID: true}
)

var signInConsentApp = &signIn{ConsentAppID, appGraph, "OAuth2:Authorize"}

// scenarioQueries are what attackers search a mailbox for (QueryText of
// SearchQueryInitiatedExchange; event arg 1 + index).
var scenarioQueries = []string{"invoice", "wire transfer", "payment details", "password", "bank account", "confidential", "merger"}

// injectScenarios plans the events of every configured scenario. Each
// scenario draws from its own random stream; they are planned in a fixed
// order (Storm-0558 first, as it needs the most executives) and never share
// a victim while there are users to spare.
func (g *Generator) injectScenarios() []event {
	var out []event
	used := map[*user]bool{}
	for _, name := range []string{ScenarioStorm0558, ScenarioDelegatedMailbox, ScenarioInboxRule, ScenarioConsentPhishing} {
		if !slices.Contains(g.cfg.Scenarios, name) {
			continue
		}
		id := scenarioIndex(name)
		r := newRNG(g.t.key, 0x5ce0, uint64(id))
		n0 := len(out)
		var info ScenarioInfo
		switch name {
		case ScenarioStorm0558:
			out, info = g.storm0558(&r, id, used, out)
		case ScenarioInboxRule:
			out, info = g.inboxRule(&r, id, used, out)
		case ScenarioConsentPhishing:
			out, info = g.consentPhishing(&r, id, used, out)
		case ScenarioDelegatedMailbox:
			out, info = g.delegatedAbuse(&r, id, used, out)
		}
		// Keep what falls inside the run.
		kept := out[:n0]
		for _, e := range out[n0:] {
			if e.t >= g.start && e.t < g.end {
				kept = append(kept, e)
			}
		}
		out = kept
		info.Name = name
		info.Planned = len(out) - n0
		if info.Planned > 0 {
			lo, hi := out[n0].t, out[n0].t
			for _, e := range out[n0:] {
				lo, hi = min(lo, e.t), max(hi, e.t)
			}
			info.Start, info.End = time.Unix(lo, 0).UTC(), time.Unix(hi, 0).UTC()
		}
		g.scenInfo = append(g.scenInfo, info)
	}
	slices.SortFunc(g.scenInfo, func(a, b ScenarioInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// pickUsers returns up to n distinct users of the pools, taken in order,
// that no other scenario uses, skipping heavy readers (their mailboxes are
// throttled, which would hide the attack). The tenant always has enough
// users: New requires minScenarioUsers.
func pickUsers(r *rng, n int, used map[*user]bool, pools ...[]*user) []*user {
	var out []*user
	for _, pool := range pools {
		var free []*user
		for _, u := range pool {
			if !u.heavy && !used[u] {
				free = append(free, u)
			}
		}
		for i := len(free) - 1; i > 0; i-- {
			j := r.intn(i + 1)
			free[i], free[j] = free[j], free[i]
		}
		for _, u := range free {
			if len(out) == n {
				break
			}
			used[u] = true
			out = append(out, u)
		}
	}
	return out
}

// localTime returns the unix time of hh:00 local on day k of the scenario,
// plus up to spread seconds.
func (g *Generator) scenarioTime(r *rng, day int, hour int, spread int) int64 {
	s := g.cfg.ScenarioStart.Unix() + int64(day)*86400
	midnight := floorDiv(s+g.offset, 86400)*86400 - g.offset
	t := midnight + int64(hour)*3600 + int64(r.intn(spread+1))
	if t < s {
		t += 86400
	}
	return t
}

// storm0558: mailbox reads with forged tokens. The actor reads a few
// executives' mailboxes through an application never seen in the tenant,
// from a new network, in its own working hours (01:00–10:00 UTC), for five
// days. No sign-in records: forged tokens bypass Entra ID.
func (g *Generator) storm0558(r *rng, id uint8, used map[*user]bool, out []event) ([]event, ScenarioInfo) {
	targets := pickUsers(r, 3+r.intn(3), used, g.t.execs, g.t.regulars())
	info := ScenarioInfo{AppIDs: []string{StormAppID}, IPs: []string{StormNetwork, StormVPS1, StormVPS2}}
	for _, u := range targets {
		info.Entities = append(info.Entities, u.upn)
		info.Targets = append(info.Targets, u.upn)
	}
	s0 := g.cfg.ScenarioStart.Unix()
	next := 0
	for day := 0; day < 5; day++ {
		sessions := 2 + r.intn(3)
		for j := 0; j < sessions; j++ {
			u := targets[next%len(targets)]
			next++
			start := s0 + int64(day)*86400 + int64(r.between(3600, 10*3600))
			ip := StormVPS1
			switch x := r.intn(10); {
			case x < 7:
				ip = "203.0.113." + strconv.Itoa(r.between(10, 250))
			case x < 9:
				ip = StormVPS2
			}
			s := &session{u: u, surf: sAttack, cli: cliStorm, ip: ip, id: r.guid(), noAAD: true,
				start: start, scen: id, entity: u.upn, bulk: true}
			nb := r.between(4, 15)
			for i := 0; i < nb; i++ {
				out = append(out, event{t: start + int64(i)*130 + int64(r.intn(10)), s: s, r: r.u64(), kind: kBind, mbx: int32(u.mbx)})
			}
		}
	}
	return out, info
}

// inboxRule: password spraying succeeds against one user; the attacker
// signs in from a new address, reads and searches the mailbox in OWA, and
// creates an inbox rule forwarding mail to an external address. A day
// later it comes back and turns the rule into a silent redirect.
func (g *Generator) inboxRule(r *rng, id uint8, used map[*user]bool, out []event) ([]event, ScenarioInfo) {
	victim := pickUsers(r, 1, used, g.t.regulars(), g.t.users)[0]
	info := ScenarioInfo{Entities: []string{victim.upn}, Targets: []string{victim.upn},
		IPs: []string{InboxRuleIP1, InboxRuleIP2}}
	t0 := g.scenarioTime(r, 0, 10, 5*3600)
	s := &session{u: victim, surf: sAttack, cli: cliOWA, signIns: []*signIn{signInOfficeHome}, ip: InboxRuleIP1,
		id: r.guid(), aad: r.guid(), start: t0, ua: uaAttackLinux, scen: id, entity: victim.upn}
	for i := 0; i < 3; i++ {
		out = append(out, event{t: t0 + int64(i)*25, s: s, r: r.u64(), kind: kLoginFailed})
	}
	s.start = t0 + 80
	out = append(out, event{t: s.start, s: s, r: r.u64(), kind: kLogin})
	out = append(out, event{t: s.start + 150, s: s, r: r.u64(), kind: kSearchExchange, mbx: int32(victim.mbx), arg: 1})
	out = append(out, event{t: s.start + 190, s: s, r: r.u64(), kind: kSearchExchange, mbx: int32(victim.mbx), arg: 3})
	nb := r.between(3, 6)
	for i := 0; i < nb; i++ {
		out = append(out, event{t: s.start + 240 + int64(i)*130, s: s, r: r.u64(), kind: kBind, mbx: int32(victim.mbx)})
	}
	out = append(out, event{t: s.start + 240 + int64(nb)*130 + int64(r.intn(300)), s: s, r: r.u64(), kind: kNewInboxRule, mbx: int32(victim.mbx)})

	t1 := t0 + 86400 + int64(r.between(-3600, 3600))
	s2 := &session{u: victim, surf: sAttack, cli: cliOWA, signIns: []*signIn{signInOfficeHome}, ip: InboxRuleIP2,
		id: r.guid(), aad: r.guid(), start: t1, ua: uaAttackLinux, scen: id, entity: victim.upn}
	out = append(out, event{t: t1, s: s2, r: r.u64(), kind: kLogin})
	out = append(out, event{t: t1 + int64(r.between(60, 400)), s: s2, r: r.u64(), kind: kSetInboxRule, mbx: int32(victim.mbx)})
	return out, info
}

// consentPhishing: a user consents, from their own device and address, to
// a multi-tenant application asking for Mail.Read; the application then
// reads the mailbox through Microsoft Graph from hosting addresses every few
// hours, around the clock, until the run ends (at most five days).
func (g *Generator) consentPhishing(r *rng, id uint8, used map[*user]bool, out []event) ([]event, ScenarioInfo) {
	victim := pickUsers(r, 1, used, g.t.regulars(), g.t.users)[0]
	info := ScenarioInfo{Entities: []string{victim.upn}, Targets: []string{victim.upn}, AppIDs: []string{ConsentAppID}}
	for i := 200; i < 210; i++ {
		info.IPs = append(info.IPs, ConsentIPPrefix+strconv.Itoa(i))
	}
	t0 := g.scenarioTime(r, 0, 11, 4*3600)
	d := int((t0 - g.day0) / 86400)
	ip := g.t.officeIP(victim, d)
	if r.chance(0.5) {
		ip = g.t.homeIP(victim, d)
	}
	s := &session{u: victim, surf: sBrowser, signIns: []*signIn{signInConsentApp}, ip: ip, id: r.guid(),
		aad: r.guid(), start: t0, ua: victim.userAgent(sBrowser), scen: id, entity: victim.upn}
	out = append(out, event{t: t0, s: s, r: r.u64(), kind: kLogin})
	out = append(out, event{t: t0 + 40, s: s, r: r.u64(), kind: kAddServicePrincipal})
	out = append(out, event{t: t0 + 41, s: s, r: r.u64(), kind: kAddGrant})
	out = append(out, event{t: t0 + 42, s: s, r: r.u64(), kind: kConsent})

	// The application holds a refresh token from that sign-in, so its
	// reads carry the same Entra session.
	for t := t0 + int64(r.between(900, 1800)); t < t0+5*86400; t += int64(r.between(2*3600, 4*3600)) {
		as := &session{u: victim, surf: sAttack, cli: cliConsentApp, ip: ConsentIPPrefix + strconv.Itoa(r.between(200, 209)),
			id: r.guid(), aad: s.aad, start: t, scen: id, entity: victim.upn, bulk: true}
		nb := r.between(1, 4)
		for i := 0; i < nb; i++ {
			out = append(out, event{t: t + int64(i)*130 + int64(r.intn(10)), s: as, r: r.u64(), kind: kBind, mbx: int32(victim.mbx)})
		}
	}
	return out, info
}

// delegatedAbuse: a compromised admin account grants itself FullAccess to
// an executive's mailbox from a new address, then reads it in OWA, that day
// and the next two.
func (g *Generator) delegatedAbuse(r *rng, id uint8, used map[*user]bool, out []event) ([]event, ScenarioInfo) {
	admin := pickUsers(r, 1, used, g.t.admins)[0]
	target := pickUsers(r, 1, used, g.t.execs, g.t.regulars())[0]
	info := ScenarioInfo{Entities: []string{admin.upn}, Targets: []string{target.upn}, IPs: []string{DelegatedIP1, DelegatedIP2}}
	t0 := g.scenarioTime(r, 0, 13, 4*3600)
	ps := &session{u: admin, surf: sAttack, signIns: []*signIn{signInPowerShell}, ip: DelegatedIP1, id: r.guid(),
		aad: r.guid(), start: t0, ua: uaPowerShell, scen: id, entity: admin.upn}
	out = append(out, event{t: t0, s: ps, r: r.u64(), kind: kLogin})
	out = append(out, event{t: t0 + int64(r.between(120, 400)), s: ps, r: r.u64(), kind: kAddMailboxPermission,
		mbx: int32(target.mbx), arg: int32(admin.idx)})
	for day := 0; day < 3; day++ {
		sessions := 1
		start := t0 + 900
		ip := DelegatedIP1
		if day > 0 {
			sessions = r.between(1, 2)
			ip = DelegatedIP2
		}
		for j := 0; j < sessions; j++ {
			if day > 0 {
				start = g.scenarioTime(r, day, 9, 9*3600)
			}
			s := &session{u: admin, surf: sAttack, cli: cliOWA, signIns: []*signIn{signInOWA}, ip: ip, id: r.guid(),
				aad: r.guid(), start: start, ua: uaAttackLinux, scen: id, entity: admin.upn}
			out = append(out, event{t: start, s: s, r: r.u64(), kind: kLogin})
			if day == 0 {
				out = append(out, event{t: start + 100, s: s, r: r.u64(), kind: kSearchExchange, mbx: int32(target.mbx), arg: 2})
			}
			nb := r.between(5, 15)
			if day == 0 {
				nb = r.between(8, 20)
			}
			for i := 0; i < nb; i++ {
				out = append(out, event{t: start + 180 + int64(i)*130 + int64(r.intn(10)), s: s, r: r.u64(), kind: kBind, mbx: int32(target.mbx)})
			}
		}
	}
	return out, info
}
