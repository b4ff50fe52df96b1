package retention

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custos-audit/custos/durable"
)

// Errors of the registry; the API maps them to 400, 404, 409 and 409.
var (
	ErrInvalid  = errors.New("invalid retention setting")
	ErrNotFound = errors.New("no such retention policy")
	ErrExists   = errors.New("already exists")
	ErrLimit    = fmt.Errorf("a tenant has at most %d retention policies", MaxPolicies)
)

// tenantState is one tenant's retention settings.
type tenantState struct {
	Policies   []Policy `json:"policies"`
	Hold       Hold     `json:"hold"`
	LastReport *Report  `json:"lastReport,omitempty"`
}

type fileState struct {
	Version int                     `json:"version"`
	Tenants map[string]*tenantState `json:"tenants"`
}

// Registry is the persistent set of every tenant's policies and hold. It is
// small and changes rarely, so it is one JSON file rewritten atomically:
// a crash leaves the old settings or the new ones.
type Registry struct {
	path string

	mu      sync.Mutex
	tenants map[string]*tenantState
}

// OpenRegistry loads the registry at path, or starts an empty one.
func OpenRegistry(path string) (*Registry, error) {
	r := &Registry{path: path, tenants: map[string]*tenantState{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("retention: read %s: %w", path, err)
	}
	var st fileState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("retention: parse %s: %w", path, err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("retention: %s: unsupported version %d", path, st.Version)
	}
	for t, s := range st.Tenants {
		for i := range s.Policies {
			if err := s.Policies[i].normalize(); err != nil {
				return nil, fmt.Errorf("retention: %s: tenant %s: policy %q: %w", path, t, s.Policies[i].Name, err)
			}
		}
		r.tenants[t] = s
	}
	return r, nil
}

// save writes the registry; callers hold r.mu. On error the caller undoes
// its change, so memory never runs ahead of the file.
func (r *Registry) save() error {
	b, err := json.MarshalIndent(fileState{Version: 1, Tenants: r.tenants}, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(r.path, b, 0o600); err != nil {
		return fmt.Errorf("retention: save: %w", err)
	}
	return nil
}

// change applies fn to a copy of tenant's state and keeps it if fn
// succeeds and the file is written.
func (r *Registry) change(tenant string, fn func(st *tenantState) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.tenants[tenant]
	next := &tenantState{}
	if old != nil {
		next.Policies = slices.Clone(old.Policies)
		next.Hold = old.Hold
		next.LastReport = old.LastReport
	}
	if err := fn(next); err != nil {
		return err
	}
	r.tenants[tenant] = next
	if err := r.save(); err != nil {
		if old == nil {
			delete(r.tenants, tenant)
		} else {
			r.tenants[tenant] = old
		}
		return err
	}
	return nil
}

// Policies returns tenant's policies, highest priority (lowest number) first.
func (r *Registry) Policies(tenant string) []Policy {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.tenants[tenant]
	if st == nil {
		return nil
	}
	out := slices.Clone(st.Policies)
	slices.SortFunc(out, func(a, b Policy) int { return a.Priority - b.Priority })
	return out
}

// Policy returns tenant's policy called name (case-insensitive).
func (r *Registry) Policy(tenant, name string) (Policy, error) {
	for _, p := range r.Policies(tenant) {
		if strings.EqualFold(p.Name, name) {
			return p, nil
		}
	}
	return Policy{}, fmt.Errorf("%w: %q", ErrNotFound, name)
}

// checkUnique refuses a policy whose name or priority another one has:
// with equal priorities, which policy wins would be arbitrary.
func checkUnique(ps []Policy, p Policy, except string) error {
	for _, o := range ps {
		if strings.EqualFold(o.Name, except) {
			continue
		}
		if strings.EqualFold(o.Name, p.Name) {
			return fmt.Errorf("retention policy %q: %w", p.Name, ErrExists)
		}
		if o.Priority == p.Priority {
			return fmt.Errorf("priority %d is taken by policy %q: %w", p.Priority, o.Name, ErrExists)
		}
	}
	return nil
}

// Create adds a policy to tenant.
func (r *Registry) Create(tenant string, p Policy, by string, now time.Time) (Policy, error) {
	if err := p.normalize(); err != nil {
		return Policy{}, err
	}
	p.Created, p.Updated, p.UpdatedBy = now.UTC(), now.UTC(), by
	err := r.change(tenant, func(st *tenantState) error {
		if len(st.Policies) >= MaxPolicies {
			return ErrLimit
		}
		if err := checkUnique(st.Policies, p, ""); err != nil {
			return err
		}
		st.Policies = append(st.Policies, p)
		return nil
	})
	return p, err
}

// Patch changes some fields of a policy; nil fields stay as they are.
type Patch struct {
	Description *string   `json:"description"`
	RecordTypes *[]string `json:"recordTypes"`
	Operations  *[]string `json:"operations"`
	UserIDs     *[]string `json:"userIds"`
	Duration    *Duration `json:"retentionDuration"`
	Priority    *int      `json:"priority"`
}

// Update applies patch to tenant's policy called name and returns the
// policy before and after.
func (r *Registry) Update(tenant, name string, patch Patch, by string, now time.Time) (before, after Policy, err error) {
	err = r.change(tenant, func(st *tenantState) error {
		i := slices.IndexFunc(st.Policies, func(p Policy) bool { return strings.EqualFold(p.Name, name) })
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		before = st.Policies[i]
		p := before
		p.RecordTypes, p.Operations, p.UserIDs = slices.Clone(p.RecordTypes), slices.Clone(p.Operations), slices.Clone(p.UserIDs)
		if patch.Description != nil {
			p.Description = *patch.Description
		}
		if patch.RecordTypes != nil {
			p.RecordTypes = slices.Clone(*patch.RecordTypes)
		}
		if patch.Operations != nil {
			p.Operations = slices.Clone(*patch.Operations)
		}
		if patch.UserIDs != nil {
			p.UserIDs = slices.Clone(*patch.UserIDs)
		}
		if patch.Duration != nil {
			p.Duration = *patch.Duration
		}
		if patch.Priority != nil {
			p.Priority = *patch.Priority
		}
		if err := p.normalize(); err != nil {
			return err
		}
		if err := checkUnique(st.Policies, p, before.Name); err != nil {
			return err
		}
		p.Updated, p.UpdatedBy = now.UTC(), by
		st.Policies[i] = p
		after = p
		return nil
	})
	return before, after, err
}

// Delete removes tenant's policy called name and returns it.
func (r *Registry) Delete(tenant, name string) (Policy, error) {
	var gone Policy
	err := r.change(tenant, func(st *tenantState) error {
		i := slices.IndexFunc(st.Policies, func(p Policy) bool { return strings.EqualFold(p.Name, name) })
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		gone = st.Policies[i]
		st.Policies = slices.Delete(st.Policies, i, i+1)
		return nil
	})
	return gone, err
}

// Hold returns tenant's legal hold.
func (r *Registry) Hold(tenant string) Hold {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.tenants[tenant]; st != nil {
		h := st.Hold
		h.Users = slices.Clone(h.Users)
		return h
	}
	return Hold{}
}

// SetHold replaces tenant's legal hold.
func (r *Registry) SetHold(tenant string, h Hold, by string, now time.Time) (Hold, error) {
	h.Users = dedupe(h.Users, true)
	if len(h.Reason) > 1000 {
		return Hold{}, fmt.Errorf("%w: reason: at most 1000 characters", ErrInvalid)
	}
	h.Updated, h.UpdatedBy = now.UTC(), by
	err := r.change(tenant, func(st *tenantState) error {
		st.Hold = h
		return nil
	})
	return h, err
}

// LastReport returns the report of tenant's last enforcement (not dry) run.
func (r *Registry) LastReport(tenant string) (Report, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.tenants[tenant]; st != nil && st.LastReport != nil {
		return *st.LastReport, true
	}
	return Report{}, false
}

func (r *Registry) setLastReport(rep Report) error {
	return r.change(rep.Tenant, func(st *tenantState) error {
		st.LastReport = &rep
		return nil
	})
}
