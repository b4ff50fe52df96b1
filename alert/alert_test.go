package alert

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

func finding(tenant, entity, rec string, at time.Time) Finding {
	return Finding{Tenant: tenant, Detector: "sigma:inbox", Title: "Inbox rule forwards", Severity: "high",
		Entity: entity, RecordID: rec, At: at, Explanation: "rule forwards to " + rec}
}

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestGroupingCountsAndStatus(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "alerts.jsonl"))
	a1, fresh, err := s.Raise(finding("acme", "ann", "r1", t0.Add(time.Hour)))
	if err != nil || !fresh || a1.Count != 1 || a1.Status != StatusOpen {
		t.Fatalf("first: %+v %v %v", a1, fresh, err)
	}
	// Same incident: joins, earlier record moves FirstSeen, the repeat of r1 counts once.
	a2, fresh, _ := s.Raise(finding("acme", "ann", "r0", t0))
	a3, _, _ := s.Raise(finding("acme", "ann", "r1", t0.Add(time.Hour)))
	if fresh || a2.ID != a1.ID || a3.Count != 2 || !a3.FirstSeen.Equal(t0) || !a3.LastSeen.Equal(t0.Add(time.Hour)) {
		t.Fatalf("grouping: %+v / %+v", a2, a3)
	}
	// Another entity and another tenant are other alerts.
	b, fresh, _ := s.Raise(finding("acme", "bob", "r2", t0))
	c, _, _ := s.Raise(finding("other", "ann", "r3", t0))
	if !fresh || b.ID == a1.ID || c.ID == a1.ID {
		t.Fatal("entities or tenants were merged")
	}
	if _, err := s.Get("other", a1.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant's alert was visible: %v", err)
	}
	if _, _, err := s.SetStatus("other", a1.ID, StatusClosed, "tok", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant closed the alert: %v", err)
	}
	// Acknowledged still groups; closed does not.
	if _, ack, err := s.SetStatus("acme", a1.ID, StatusAcknowledged, "tok1", "looking"); err != nil || ack.Status != StatusAcknowledged || ack.Note != "looking" {
		t.Fatalf("ack: %+v %v", ack, err)
	}
	if a, fresh, _ := s.Raise(finding("acme", "ann", "r4", t0.Add(2*time.Hour))); fresh || a.ID != a1.ID || a.Count != 3 {
		t.Fatalf("after ack: %+v fresh=%v", a, fresh)
	}
	if _, _, err := s.SetStatus("acme", a1.ID, StatusClosed, "tok1", "benign"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SetStatus("acme", a1.ID, StatusAcknowledged, "tok1", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("reopening a closed alert: %v", err)
	}
	d, fresh, _ := s.Raise(finding("acme", "ann", "r5", t0.Add(3*time.Hour)))
	if !fresh || d.ID == a1.ID || d.Count != 1 {
		t.Fatalf("after close, a new incident: %+v fresh=%v", d, fresh)
	}
	if got := s.List("acme", Filter{Statuses: []Status{StatusOpen}}); len(got) != 2 || got[0].ID != d.ID {
		t.Errorf("open alerts newest first: %+v", got)
	}
	if _, _, err := s.Raise(Finding{Tenant: "acme", Detector: "x", RecordID: "r", Severity: "severe"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad severity: %v", err)
	}
}

func TestEvidenceIsBounded(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "alerts.jsonl"))
	var a Alert
	for i := range MaxEvidence + 50 {
		a, _, _ = s.Raise(finding("acme", "ann", fmt.Sprintf("r%d", i), t0.Add(time.Duration(i)*time.Minute)))
	}
	// Repeats beyond the kept evidence still count once.
	a, _, _ = s.Raise(finding("acme", "ann", fmt.Sprintf("r%d", MaxEvidence+10), t0))
	if a.Count != MaxEvidence+50 || len(a.Evidence) != MaxEvidence {
		t.Fatalf("count %d, evidence %d", a.Count, len(a.Evidence))
	}
}

func TestRestartKeepsEverythingAndIgnoresATornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.jsonl")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		s.Raise(finding("acme", fmt.Sprintf("u%d", i%4), fmt.Sprintf("r%d", i), t0.Add(time.Duration(i)*time.Minute)))
	}
	first := s.List("acme", Filter{})
	s.SetStatus("acme", first[0].ID, StatusClosed, "tok", "done")
	want := s.List("acme", Filter{})
	s.Close()
	// A crash in the middle of appending a line.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"id":"torn","tenant":"acme","detec`)
	f.Close()

	s2 := open(t, path)
	if got := s2.List("acme", Filter{}); !reflect.DeepEqual(got, want) {
		t.Fatalf("after restart:\n%+v\nwant\n%+v", got, want)
	}
	// The journal was compacted to one line per alert, and grouping state
	// survived: a repeat of a counted record does not count again.
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n != len(want) {
		t.Errorf("journal has %d lines for %d alerts", n, len(want))
	}
	var still Alert
	for _, a := range want {
		if a.Status == StatusOpen {
			still = a
		}
	}
	a, fresh, _ := s2.Raise(finding("acme", still.Entity, still.Evidence[0], t0))
	if fresh || a.ID != still.ID || a.Count != still.Count {
		t.Errorf("replayed record counted again: %+v", a)
	}
}

func TestReplayedFindingsCountOnceAcrossRestartAndClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.jsonl")
	s := open(t, path)
	raise := func(s *Store, rec string, pos uint64, related string) Alert {
		t.Helper()
		f := finding("acme", "app-x", rec, t0)
		f.Pos, f.Related = pos, related
		a, _, err := s.Raise(f)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// More findings than MaxEvidence, so the evidence list alone cannot
	// tell a repeat.
	var a Alert
	for i := 1; i <= MaxEvidence+20; i++ {
		a = raise(s, fmt.Sprintf("r%d", i), uint64(i), fmt.Sprintf("mbx%d", i%3))
	}
	if a.Count != MaxEvidence+20 || len(a.Related) != 3 || a.Through != MaxEvidence+20 {
		t.Fatalf("count %d related %v through %d", a.Count, a.Related, a.Through)
	}
	s.Close()

	// After a restart, detection replays from an older checkpoint.
	s = open(t, path)
	for i := 50; i <= MaxEvidence+20; i++ {
		a = raise(s, fmt.Sprintf("r%d", i), uint64(i), "")
	}
	if a.Count != MaxEvidence+20 {
		t.Fatalf("replay recounted: count %d, want %d", a.Count, MaxEvidence+20)
	}
	// Closing the alert does not let a replay open a new one.
	if _, _, err := s.SetStatus("acme", a.ID, StatusClosed, "tok", ""); err != nil {
		t.Fatal(err)
	}
	if got := raise(s, "r120", MaxEvidence+20, ""); got.ID != "" {
		t.Fatalf("a replayed finding opened alert %+v after close", got)
	}
	if got := s.List("acme", Filter{}); len(got) != 1 {
		t.Fatalf("%d alerts after replay, want 1", len(got))
	}
	// A new record after the close opens a new alert.
	if got := raise(s, "r121", MaxEvidence+21, ""); got.ID == "" || got.ID == a.ID || got.Count != 1 {
		t.Fatalf("new finding after close: %+v", got)
	}
}
