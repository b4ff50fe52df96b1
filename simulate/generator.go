// Package simulate generates deterministic, realistic Microsoft 365 unified
// audit log activity for one tenant: the records the Office 365 Management
// Activity API would deliver (MailItemsAccessed, Send, searches, SharePoint
// file operations, Entra sign-ins, admin cmdlets), in CreationTime order,
// with optional attack scenarios injected and labelled for evaluation.
//
// The model and every knob are described in docs/simulator.md.
package simulate

import (
	"bufio"
	"io"
	"time"
)

// Label identifies an injected (malicious) record.
type Label struct {
	ID       string `json:"id"`
	Scenario string `json:"scenario"`
	Entity   string `json:"entity"`
}

// Generator produces the records of one run. It is not safe for concurrent
// use.
type Generator struct {
	cfg        Config
	t          *tenant
	start, end int64 // the run, unix seconds, [start, end)
	day0       int64 // local midnight of the first local day, as unix time
	offset     int64 // tenant UTC offset, seconds
	localDays  int
	scale      float64 // normalises the weekly shape so --rate is the mean

	heap []head     // min-heap of the streams' next events
	mb   []throttle // per mailbox

	buf   []byte
	id    []byte // Id of the last record
	label Label
	isBad bool
	last  kind // kind of the record last returned

	stats    Stats // ByKind and Injected are filled from the arrays by Stats()
	byKind   [numKinds]int64
	injected [len(scenarioByID)]int64
	scenInfo []ScenarioInfo
}

// Stats counts what a run produced so far.
type Stats struct {
	Records  int64            // records returned by Next
	Bytes    int64            // their JSON bytes, without newlines
	ByKind   map[string]int64 // per operation (MailItemsAccessed split into /Bind and /Sync)
	Injected map[string]int64 // per scenario
	// Throttled counts IsThrottled=True records; Suppressed the Bind
	// records Exchange would not have logged during the 24 hours after.
	Throttled  int64
	Suppressed int64
	First      time.Time // CreationTime of the first and last record
	Last       time.Time
}

// stream yields one actor's events in time order. User streams plan one
// local day at a time: events at or after the next unplanned day's midnight
// are held back until that day is planned and merged in, because a session
// that crosses midnight must interleave with the next day's.
type stream struct {
	ev      []event
	pos     int
	u       *user // nil for the scenario stream
	nextDay int   // next local day to plan
	order   int   // tie-breaker between streams: users first, in order, then scenarios
}

// head is a heap entry: a stream and the time of its next event, kept in
// the heap array itself so that sifting compares without chasing pointers.
type head struct {
	t     int64
	order int32
	s     *stream
}

type throttle struct {
	win   []int64 // times of the Bind records of the last 24 hours
	head  int
	until int64 // no Bind records before this time
}

// ThrottleLimit is the number of MailItemsAccessed Bind records a mailbox may
// produce within 24 hours; the next one is marked IsThrottled and opens 24
// hours without Bind records for that mailbox.
const ThrottleLimit = 1000

const throttleWindow = 86400

// New validates cfg and prepares a run.
func New(cfg Config) (*Generator, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg}
	g.start = cfg.Start.Unix()
	g.end = g.start + int64(cfg.Days)*86400
	g.offset = int64(cfg.UTCOffset / time.Second)
	local := g.start + g.offset
	g.day0 = floorDiv(local, 86400)*86400 - g.offset
	g.localDays = int((g.end - g.day0 + 86399) / 86400)
	g.t = buildTenant(cfg)

	// Scale the weekly shape so that the mean over the run's days is 1:
	// --rate is then the mean number of records per user per day.
	sum := 0.0
	for d := 0; d < cfg.Days; d++ {
		wd := g.weekday(d)
		f := dayFactor[wd]
		if wd == 0 || wd == 6 {
			f *= 1.3 // mean of the users' weekend multipliers
		}
		sum += f
	}
	g.scale = float64(cfg.Days) / sum

	g.mb = make([]throttle, len(g.t.mailboxes))
	streams := make([]*stream, 0, len(g.t.users)+1)
	for i, u := range g.t.users {
		streams = append(streams, &stream{u: u, order: i})
	}
	if len(cfg.Scenarios) > 0 {
		ev := g.injectScenarios()
		sortEvents(ev)
		streams = append(streams, &stream{ev: ev, nextDay: g.localDays, order: len(g.t.users)})
	}
	// Prime every stream, drop the empty ones, build the heap.
	for _, s := range streams {
		if g.fill(s) {
			g.heap = append(g.heap, head{t: s.ev[s.pos].t, order: int32(s.order), s: s})
		}
	}
	for i := len(g.heap)/2 - 1; i >= 0; i-- {
		g.down(i)
	}
	return g, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// fill makes sure s has a final next event; it reports false when s is
// exhausted.
func (g *Generator) fill(s *stream) bool {
	for {
		if s.pos < len(s.ev) && (s.nextDay >= g.localDays || s.ev[s.pos].t < g.localMidnight(s.nextDay)) {
			return true
		}
		if s.nextDay >= g.localDays {
			return false
		}
		n := copy(s.ev, s.ev[s.pos:])
		s.ev, s.pos = s.ev[:n], 0
		s.ev = g.planDay(s.u, s.nextDay, s.ev)
		s.nextDay++
		sortEvents(s.ev)
	}
}

func (a *head) less(b *head) bool {
	return a.t < b.t || a.t == b.t && a.order < b.order
}

func (g *Generator) down(i int) {
	h := g.heap
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].less(&h[l]) {
			m = r
		}
		if !h[m].less(&h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// Next returns the next record in CreationTime order, as JSON without a
// trailing newline. The slice is valid until the next call. ok is false at
// the end of the run.
func (g *Generator) Next() (rec []byte, ok bool) {
	for len(g.heap) > 0 {
		s := g.heap[0].s
		e := s.ev[s.pos]
		s.pos++
		if g.fill(s) {
			g.heap[0].t = s.ev[s.pos].t
			g.down(0)
		} else {
			last := len(g.heap) - 1
			g.heap[0] = g.heap[last]
			g.heap = g.heap[:last]
			g.down(0)
		}
		throttled := false
		if e.kind == kBind {
			switch g.throttle(int(e.mbx), e.t) {
			case throttleDrop:
				g.stats.Suppressed++
				continue
			case throttleMark:
				throttled = true
				g.stats.Throttled++
			}
		}
		g.buf = g.render(g.buf[:0], &e, throttled)
		g.count(&e)
		return g.buf, true
	}
	return nil, false
}

const (
	throttleOK = iota
	throttleMark
	throttleDrop
)

// throttle applies Exchange Online's MailItemsAccessed throttling to a Bind
// record of mailbox m at time t.
func (g *Generator) throttle(m int, t int64) int {
	st := &g.mb[m]
	if t < st.until {
		return throttleDrop
	}
	for st.head < len(st.win) && st.win[st.head] <= t-throttleWindow {
		st.head++
	}
	if st.head > 1024 && st.head*2 > len(st.win) {
		n := copy(st.win, st.win[st.head:])
		st.win, st.head = st.win[:n], 0
	}
	if len(st.win)-st.head >= ThrottleLimit {
		st.until = t + throttleWindow
		st.win, st.head = st.win[:0], 0
		return throttleMark
	}
	st.win = append(st.win, t)
	return throttleOK
}

func (g *Generator) count(e *event) {
	st := &g.stats
	if st.Records == 0 {
		st.First = time.Unix(e.t, 0).UTC()
	}
	st.Last = time.Unix(e.t, 0).UTC()
	st.Records++
	st.Bytes += int64(len(g.buf))
	g.byKind[e.kind]++
	g.last = e.kind
	g.isBad = e.s.scen != 0
	if g.isBad {
		g.injected[e.s.scen]++
		g.label = Label{ID: string(g.id), Scenario: scenarioByID[e.s.scen], Entity: e.s.entity}
	}
}

// Injected reports whether the record last returned by Next was injected by
// a scenario, and its label.
func (g *Generator) Injected() (Label, bool) {
	if !g.isBad {
		return Label{}, false
	}
	return g.label, true
}

// Stats returns the counts so far.
func (g *Generator) Stats() Stats {
	s := g.stats
	s.ByKind = map[string]int64{}
	for k, n := range g.byKind {
		if n > 0 {
			s.ByKind[kindName(kind(k))] += n
		}
	}
	s.Injected = map[string]int64{}
	for id, n := range g.injected {
		if n > 0 {
			s.Injected[scenarioByID[id]] = n
		}
	}
	return s
}

// Config returns the configuration with its defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

// OrganizationID is the tenant's OrganizationId GUID.
func (g *Generator) OrganizationID() string { return g.t.orgID }

// WriteTo writes all remaining records to w as NDJSON.
func (g *Generator) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	var n int64
	for {
		rec, ok := g.Next()
		if !ok {
			break
		}
		m, err := bw.Write(rec)
		n += int64(m)
		if err != nil {
			return n, err
		}
		if err := bw.WriteByte('\n'); err != nil {
			return n, err
		}
		n++
	}
	return n, bw.Flush()
}
