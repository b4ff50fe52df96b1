// Package alert keeps the alerts detection raises: one alert per incident
// (tenant, detector, entity) with a count, first and last seen, the evidence
// (record ids and a one-line explanation), and a status an analyst moves from
// open to acknowledged to closed.
//
// Alerts live in memory, backed by an append-only journal of whole alerts
// (one JSON line per change, fsync'd before a change is visible), so a
// restart rebuilds exactly what was acknowledged, and the journal is
// rewritten compactly when it has grown to several times the live set.
package alert

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/custos-audit/custos/durable"
)

// Status of an alert.
type Status string

const (
	StatusOpen         Status = "open"
	StatusAcknowledged Status = "acknowledged"
	StatusClosed       Status = "closed"
)

// Severities, least to most severe (Sigma's levels).
var Severities = []string{"informational", "low", "medium", "high", "critical"}

// MaxEvidence bounds the record ids kept with one alert; Count goes on.
const MaxEvidence = 100

// MaxRelated bounds the related values kept with one alert.
const MaxRelated = 50

// Alert is one incident.
type Alert struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	Detector    string    `json:"detector"` // a baseline detector's name, or "sigma:<rule id>"
	Title       string    `json:"title"`
	Severity    string    `json:"severity"`
	Entity      string    `json:"entity"` // who or what: a user, an app, a mailbox
	Status      Status    `json:"status"`
	Count       int64     `json:"count"`
	FirstSeen   time.Time `json:"firstSeen"` // CreationTime of the earliest evidence
	LastSeen    time.Time `json:"lastSeen"`  // ... and of the latest
	Created     time.Time `json:"created"`   // when custos raised it
	Updated     time.Time `json:"updated"`
	Explanation string    `json:"explanation"`
	Evidence    []string  `json:"evidence"`          // record ids, the first MaxEvidence
	Related     []string  `json:"related,omitempty"` // what else the evidence touched (mailboxes, addresses), the first MaxRelated
	// Through is the feed position of the latest evidence. Detection
	// replays records after a restart; a finding at or before its group's
	// position was already counted.
	Through uint64 `json:"through,omitempty"`
	// Seq numbers alerts in the order they were opened, across the
	// store; notifications follow it.
	Seq       uint64 `json:"seq,omitempty"`
	UpdatedBy string `json:"updatedBy,omitempty"`
	Note      string `json:"note,omitempty"`
}

// Finding is one detection to record: a record that set off a detector.
type Finding struct {
	Tenant      string
	Detector    string
	Title       string
	Severity    string
	Entity      string
	RecordID    string
	At          time.Time // the record's CreationTime
	Explanation string
	Related     string // what else the record touched, e.g. the mailbox read; optional
	// Pos is the record's position in the detection feed (0: none). Findings
	// of one group must come in increasing Pos; a repeat is ignored.
	Pos uint64
}

// Errors.
var (
	ErrNotFound = errors.New("no such alert")
	ErrInvalid  = errors.New("invalid alert change")
)

// Store holds alerts.
type Store struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	alerts  map[string]*Alert          // id → alert
	active  map[groupKey]*Alert        // the open or acknowledged alert of each group
	seen    map[string]map[string]bool // alert id → evidence ids, to count a record once
	through map[groupKey]uint64        // latest feed position counted in each group
	journal *os.File
	lines   int           // lines in the journal
	seq     uint64        // the latest Seq given
	opened  chan struct{} // closed, and replaced, when an alert opens
}

type groupKey struct{ tenant, detector, entity string }

// Open loads the alert journal at path, creating it if absent.
func Open(path string) (*Store, error) {
	s := &Store{path: path, now: time.Now, alerts: map[string]*Alert{}, active: map[groupKey]*Alert{}, seen: map[string]map[string]bool{},
		through: map[groupKey]uint64{}, opened: make(chan struct{})}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("alert: open %s: %w", path, err)
	default:
		err := s.replay(f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	if err := s.rewrite(); err != nil {
		return nil, err
	}
	return s, nil
}

// replay reads the journal; the last line of each alert wins. A torn last
// line (a crash mid-append) is ignored: its change was never acknowledged.
func (s *Store) replay(r io.Reader) error {
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var a Alert
			if jerr := json.Unmarshal(line, &a); jerr != nil {
				return fmt.Errorf("alert: %s line %d: %w", s.path, n, jerr)
			}
			s.put(&a)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("alert: read %s: %w", s.path, err)
		}
	}
}

// put installs a in the indexes; callers hold s.mu (or own s alone).
func (s *Store) put(a *Alert) {
	s.alerts[a.ID] = a
	k := groupKey{a.Tenant, a.Detector, a.Entity}
	if a.Status == StatusClosed {
		if cur := s.active[k]; cur != nil && cur.ID == a.ID {
			delete(s.active, k)
		}
	} else {
		s.active[k] = a
	}
	s.through[k] = max(s.through[k], a.Through)
	s.seq = max(s.seq, a.Seq)
	ids := s.seen[a.ID]
	if ids == nil {
		ids = map[string]bool{}
		s.seen[a.ID] = ids
	}
	for _, e := range a.Evidence {
		ids[e] = true
	}
}

// rewrite replaces the journal with one line per alert.
func (s *Store) rewrite() error {
	var buf bytes.Buffer
	ids := make([]string, 0, len(s.alerts))
	for id := range s.alerts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		b, err := json.Marshal(s.alerts[id])
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := durable.WriteFile(s.path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("alert: %w", err)
	}
	if s.journal != nil {
		s.journal.Close()
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("alert: %w", err)
	}
	s.journal, s.lines = f, len(ids)
	return nil
}

// append journals a and makes it durable; callers hold s.mu.
func (s *Store) append(a *Alert) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if _, err := s.journal.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("alert: journal: %w", err)
	}
	if err := s.journal.Sync(); err != nil {
		return fmt.Errorf("alert: journal: %w", err)
	}
	s.lines++
	if s.lines > 4*len(s.alerts)+1024 {
		return s.rewrite()
	}
	return nil
}

// Close closes the journal.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.journal == nil {
		return nil
	}
	err := s.journal.Close()
	s.journal = nil
	return err
}

// Raise records f: it joins the open or acknowledged alert of its tenant,
// detector and entity, or opens a new one. A record already counted in the
// alert is not counted again, so replaying records after a restart does
// not inflate counts. It reports the alert and whether it is new.
func (s *Store) Raise(f Finding) (Alert, bool, error) {
	if f.Tenant == "" || f.Detector == "" || f.RecordID == "" {
		return Alert{}, false, fmt.Errorf("%w: a finding needs a tenant, a detector and a record id", ErrInvalid)
	}
	if !slices.Contains(Severities, f.Severity) {
		return Alert{}, false, fmt.Errorf("%w: severity %q", ErrInvalid, f.Severity)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC()
	k := groupKey{f.Tenant, f.Detector, f.Entity}
	cur, fresh := s.active[k], false
	if f.Pos != 0 && f.Pos <= s.through[k] {
		if cur == nil {
			return Alert{}, false, nil
		}
		return *cur, false, nil
	}
	var a Alert
	if cur == nil {
		fresh = true
		a = Alert{ID: newID(), Seq: s.seq + 1, Tenant: f.Tenant, Detector: f.Detector, Title: f.Title, Severity: f.Severity,
			Entity: f.Entity, Status: StatusOpen, FirstSeen: f.At.UTC(), LastSeen: f.At.UTC(), Created: now, Explanation: f.Explanation}
	} else {
		if s.seen[cur.ID][f.RecordID] {
			return *cur, false, nil
		}
		a = cur.clone()
		if f.At.Before(a.FirstSeen) {
			a.FirstSeen = f.At.UTC()
		}
		if f.At.After(a.LastSeen) {
			a.LastSeen = f.At.UTC()
			a.Explanation = f.Explanation // the latest says most
		}
	}
	a.Count++
	a.Updated = now
	a.Through = max(a.Through, f.Pos)
	if len(a.Evidence) < MaxEvidence {
		a.Evidence = append(a.Evidence, f.RecordID)
	}
	if f.Related != "" && len(a.Related) < MaxRelated && !slices.Contains(a.Related, f.Related) {
		a.Related = append(a.Related, f.Related)
	}
	if err := s.append(&a); err != nil {
		return Alert{}, false, err
	}
	s.put(&a)
	// Past the kept evidence, ids are remembered (in memory) only to count
	// them once.
	s.seen[a.ID][f.RecordID] = true
	if fresh {
		close(s.opened)
		s.opened = make(chan struct{})
	}
	return a, fresh, nil
}

// Opened returns the tenant's alerts opened after seq, in the order they
// opened, as they are now.
func (s *Store) Opened(tenant string, after uint64) []Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Alert
	for _, a := range s.alerts {
		if a.Tenant == tenant && a.Seq > after {
			out = append(out, a.clone())
		}
	}
	slices.SortFunc(out, func(a, b Alert) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// LastSeq is the Seq of the latest alert opened.
func (s *Store) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// OpenedSignal returns a channel closed when the next alert opens.
func (s *Store) OpenedSignal() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened
}

// Filter selects alerts of a tenant.
type Filter struct {
	Statuses   []Status
	Severities []string // at least this severe when one value; any of them when several
	Detector   string
}

// List returns the tenant's alerts matching f, the most recently seen first.
func (s *Store) List(tenant string, f Filter) []Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Alert
	for _, a := range s.alerts {
		if a.Tenant != tenant ||
			(len(f.Statuses) > 0 && !slices.Contains(f.Statuses, a.Status)) ||
			(len(f.Severities) > 0 && !slices.Contains(f.Severities, a.Severity)) ||
			(f.Detector != "" && !strings.EqualFold(f.Detector, a.Detector)) {
			continue
		}
		out = append(out, a.clone())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastSeen.Equal(out[j].LastSeen) {
			return out[i].LastSeen.After(out[j].LastSeen)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Get returns a tenant's alert; another tenant's id is not found.
func (s *Store) Get(tenant, id string) (Alert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.alerts[id]
	if !ok || a.Tenant != tenant {
		return Alert{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return a.clone(), nil
}

// SetStatus moves a tenant's alert to status, with an optional note. A
// closed alert stays closed; new findings of its group open a new alert.
func (s *Store) SetStatus(tenant, id string, status Status, by, note string) (before, after Alert, err error) {
	if status != StatusAcknowledged && status != StatusClosed {
		return Alert{}, Alert{}, fmt.Errorf("%w: status %q (want acknowledged or closed)", ErrInvalid, status)
	}
	if len(note) > 2000 {
		return Alert{}, Alert{}, fmt.Errorf("%w: note over 2000 characters", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.alerts[id]
	if !ok || cur.Tenant != tenant {
		return Alert{}, Alert{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if cur.Status == StatusClosed {
		return *cur, *cur, fmt.Errorf("%w: alert %s is closed", ErrInvalid, id)
	}
	a := cur.clone()
	a.Status, a.UpdatedBy, a.Updated = status, by, s.now().UTC()
	if note != "" {
		a.Note = note
	}
	if err := s.append(&a); err != nil {
		return Alert{}, Alert{}, err
	}
	s.put(&a)
	return *cur, a, nil
}

// clone returns a copy that shares no slices with a.
func (a *Alert) clone() Alert {
	x := *a
	x.Evidence = slices.Clone(a.Evidence)
	x.Related = slices.Clone(a.Related)
	return x
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Path is the journal's place in a data directory.
func Path(data string) string { return filepath.Join(data, "alerts.jsonl") }
