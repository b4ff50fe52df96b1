package detect

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custos-audit/custos/alert"
	"github.com/custos-audit/custos/durable"
)

// An Allow entry suppresses findings of a tenant whose entity or related
// value is Value (case-insensitive): a known application, a service
// account, a partner's mailbox. Detector limits it to one detector ("" for
// any).
type Allow struct {
	Detector string    `json:"detector,omitempty"`
	Value    string    `json:"value"`
	Note     string    `json:"note,omitempty"`
	Added    time.Time `json:"added"`
	AddedBy  string    `json:"addedBy,omitempty"`
}

// ErrInvalid marks a rejected allowlist entry.
var ErrInvalid = errors.New("invalid allowlist entry")

// MaxAllow bounds one tenant's allowlist.
const MaxAllow = 10000

// Allowlist holds every tenant's allow entries, persisted as one JSON file.
type Allowlist struct {
	mu      sync.RWMutex
	path    string
	tenants map[string][]Allow
}

func loadAllowlist(path string) (*Allowlist, error) {
	a := &Allowlist{path: path, tenants: map[string][]Allow{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("detect: read allowlist: %w", err)
	}
	if err := json.Unmarshal(b, &a.tenants); err != nil {
		return nil, fmt.Errorf("detect: parse allowlist %s: %w", path, err)
	}
	return a, nil
}

// List returns the tenant's entries.
func (a *Allowlist) List(tenant string) []Allow {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return slices.Clone(a.tenants[tenant])
}

// Add adds an entry to the tenant's allowlist; an entry with the same
// detector and value is replaced.
func (a *Allowlist) Add(tenant string, e Allow) error {
	e.Value = strings.TrimSpace(e.Value)
	if e.Value == "" || len(e.Value) > 512 {
		return fmt.Errorf("%w: value must be 1 to 512 characters", ErrInvalid)
	}
	if e.Detector != "" && !knownDetector(e.Detector) {
		return fmt.Errorf("%w: unknown detector %q", ErrInvalid, e.Detector)
	}
	if len(e.Note) > 1000 {
		return fmt.Errorf("%w: note over 1000 characters", ErrInvalid)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	list := slices.DeleteFunc(slices.Clone(a.tenants[tenant]), func(x Allow) bool {
		return x.Detector == e.Detector && strings.EqualFold(x.Value, e.Value)
	})
	if len(list) >= MaxAllow {
		return fmt.Errorf("%w: the tenant already has %d entries", ErrInvalid, MaxAllow)
	}
	return a.replace(tenant, append(list, e))
}

// Remove removes the tenant's entries with this detector and value, and
// reports whether there were any.
func (a *Allowlist) Remove(tenant, detector, value string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.tenants[tenant]
	list := slices.DeleteFunc(slices.Clone(cur), func(x Allow) bool {
		return x.Detector == detector && strings.EqualFold(x.Value, value)
	})
	if len(list) == len(cur) {
		return false, nil
	}
	return true, a.replace(tenant, list)
}

// replace sets the tenant's list and saves; a.mu is held.
func (a *Allowlist) replace(tenant string, list []Allow) error {
	old, had := a.tenants[tenant]
	if len(list) == 0 {
		delete(a.tenants, tenant)
	} else {
		a.tenants[tenant] = list
	}
	b, err := json.MarshalIndent(a.tenants, "", " ")
	if err == nil {
		err = durable.WriteFile(a.path, b, 0o600)
	}
	if err != nil {
		if had {
			a.tenants[tenant] = old
		} else {
			delete(a.tenants, tenant)
		}
		return fmt.Errorf("detect: save allowlist: %w", err)
	}
	return nil
}

// allows reports whether an entry suppresses f.
func (a *Allowlist) allows(f alert.Finding) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, x := range a.tenants[f.Tenant] {
		if x.Detector != "" && x.Detector != f.Detector {
			continue
		}
		if strings.EqualFold(x.Value, f.Entity) || strings.EqualFold(x.Value, f.Related) {
			return true
		}
	}
	return false
}

func knownDetector(name string) bool {
	if strings.HasPrefix(name, RulePrefix) && len(name) > len(RulePrefix) {
		return true
	}
	for _, d := range Detectors {
		if d.Name == name {
			return true
		}
	}
	return false
}
