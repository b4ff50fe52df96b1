package m365

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-audit/custos/durable"
)

// checkpoint is the durable progress of one tenant and content type.
// Everything listed in [Start, End) on contentCreated has been handed to the
// sink and accepted, except what Gaps say.
type checkpoint struct {
	Version int       `json:"version"`
	Tenant  string    `json:"tenant"`
	Type    string    `json:"contentType"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	// Done maps the contentIds completed within the overlap before End to
	// their contentCreated, so that re-listing the overlap does not fetch
	// them again.
	Done map[string]time.Time `json:"done,omitempty"`
}

const checkpointVersion = 1

func checkpointPath(dir, tenant, ct string) string {
	return filepath.Join(dir, tenant, ct+".json")
}

// loadCheckpoint returns the stored checkpoint, or an empty one (zero End)
// if there is none yet.
func loadCheckpoint(dir, tenant, ct string) (*checkpoint, error) {
	p := checkpointPath(dir, tenant, ct)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return &checkpoint{Version: checkpointVersion, Tenant: tenant, Type: ct, Done: map[string]time.Time{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var cp checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		// A checkpoint is only ever replaced whole, so this is damage from
		// outside; guessing could skip windows, so stop and say where.
		return nil, fmt.Errorf("checkpoint %s is corrupt (remove it to collect again from the start): %w", p, err)
	}
	if cp.Version != checkpointVersion || cp.Tenant != tenant || cp.Type != ct {
		return nil, fmt.Errorf("checkpoint %s is for %s/%s version %d, want %s/%s version %d", p, cp.Tenant, cp.Type, cp.Version, tenant, ct, checkpointVersion)
	}
	if cp.Done == nil {
		cp.Done = map[string]time.Time{}
	}
	return &cp, nil
}

// save replaces the checkpoint file atomically and durably.
func (cp *checkpoint) save(dir string) error {
	p := checkpointPath(dir, cp.Tenant, cp.Type)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := durable.WriteFile(p, b, 0o600); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// advance records that [start, end) is complete with the blobs done, and
// forgets completed blobs that fell out of the overlap.
func (cp *checkpoint) advance(start, end time.Time, done map[string]time.Time, overlap time.Duration) {
	if cp.Start.IsZero() || start.Before(cp.Start) {
		cp.Start = start
	}
	if end.After(cp.End) {
		cp.End = end
	}
	for id, t := range done {
		cp.Done[id] = t
	}
	keep := cp.End.Add(-overlap)
	for id, t := range cp.Done {
		if t.Before(keep) {
			delete(cp.Done, id)
		}
	}
}
