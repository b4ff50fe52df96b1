package detect

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-audit/custos/durable"
	"github.com/custos-audit/custos/rules"
)

// Errors of tenant rules.
var (
	ErrInvalidRule  = errors.New("invalid rule")
	ErrRuleNotFound = errors.New("no such rule")
	ErrRuleConflict = errors.New("rule id taken")
)

// Limits of tenant rules.
const (
	MaxTenantRules = 500
	MaxRuleBytes   = 64 << 10
)

// TenantRule is a Sigma rule one tenant's administrators added through the
// API. It is evaluated on that tenant's records only.
type TenantRule struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Level   string    `json:"level"`
	YAML    string    `json:"yaml"`
	Added   time.Time `json:"added"`
	AddedBy string    `json:"addedBy,omitempty"`
}

// TenantRules holds every tenant's own rules, persisted as one JSON file.
// Detection reads the parsed rules without a lock; changes swap them.
type TenantRules struct {
	path   string
	mu     sync.Mutex // serialises changes
	source map[string][]TenantRule
	parsed atomic.Pointer[map[string][]*rules.Rule]
}

func loadTenantRules(path string) (*TenantRules, error) {
	t := &TenantRules{path: path, source: map[string][]TenantRule{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("detect: read tenant rules: %w", err)
	default:
		if err := json.Unmarshal(b, &t.source); err != nil {
			return nil, fmt.Errorf("detect: parse tenant rules %s: %w", path, err)
		}
	}
	parsed, err := parseAll(t.source)
	if err != nil {
		return nil, err
	}
	t.parsed.Store(&parsed)
	return t, nil
}

func parseAll(source map[string][]TenantRule) (map[string][]*rules.Rule, error) {
	out := map[string][]*rules.Rule{}
	for tenant, list := range source {
		for _, tr := range list {
			r, err := rules.Parse([]byte(tr.YAML), "tenant/"+tr.ID)
			if err != nil {
				return nil, fmt.Errorf("detect: tenant %s rule %s: %w", tenant, tr.ID, err)
			}
			out[tenant] = append(out[tenant], r)
		}
	}
	return out, nil
}

// For returns the tenant's rules, parsed.
func (t *TenantRules) For(tenant string) []*rules.Rule { return (*t.parsed.Load())[tenant] }

// List returns the tenant's rules.
func (t *TenantRules) List(tenant string) []TenantRule {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.source[tenant])
}

// Get returns one of the tenant's rules.
func (t *TenantRules) Get(tenant, id string) (TenantRule, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.source[tenant] {
		if r.ID == id {
			return r, nil
		}
	}
	return TenantRule{}, fmt.Errorf("%w: %q", ErrRuleNotFound, id)
}

// Put adds the rule in src as the tenant's rule id, or replaces it. The
// rule's own id must be id, and must not be a server rule's (taken lists
// those). It reports whether the rule replaced one.
func (t *TenantRules) Put(tenant, id string, src []byte, by string, taken func(id string) bool) (TenantRule, bool, error) {
	if len(src) > MaxRuleBytes {
		return TenantRule{}, false, fmt.Errorf("%w: over %d bytes", ErrInvalidRule, MaxRuleBytes)
	}
	r, err := rules.Parse(src, "tenant/"+id)
	if err != nil {
		return TenantRule{}, false, fmt.Errorf("%w: %v", ErrInvalidRule, err)
	}
	if r.ID == "" || r.ID != id {
		return TenantRule{}, false, fmt.Errorf("%w: the rule's id is %q; it must be %q, the id in the path", ErrInvalidRule, r.ID, id)
	}
	if taken(id) {
		return TenantRule{}, false, fmt.Errorf("%w: a server rule has id %s; give the tenant's rule its own", ErrRuleConflict, id)
	}
	tr := TenantRule{ID: id, Title: r.Title, Level: strings.ToLower(r.Level), YAML: string(src), Added: time.Now().UTC(), AddedBy: by}
	t.mu.Lock()
	defer t.mu.Unlock()
	list := slices.Clone(t.source[tenant])
	i := slices.IndexFunc(list, func(x TenantRule) bool { return x.ID == id })
	replaced := i >= 0
	if replaced {
		list[i] = tr
	} else {
		if len(list) >= MaxTenantRules {
			return TenantRule{}, false, fmt.Errorf("%w: tenant %s has %d rules (at most %d)", ErrInvalidRule, tenant, len(list), MaxTenantRules)
		}
		list = append(list, tr)
	}
	return tr, replaced, t.commit(tenant, list)
}

// Remove deletes the tenant's rule id.
func (t *TenantRules) Remove(tenant, id string) (TenantRule, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := slices.Clone(t.source[tenant])
	i := slices.IndexFunc(list, func(x TenantRule) bool { return x.ID == id })
	if i < 0 {
		return TenantRule{}, fmt.Errorf("%w: %q", ErrRuleNotFound, id)
	}
	gone := list[i]
	return gone, t.commit(tenant, slices.Delete(list, i, i+1))
}

// commit saves the tenant's new list and swaps the parsed rules; callers
// hold t.mu.
func (t *TenantRules) commit(tenant string, list []TenantRule) error {
	next := make(map[string][]TenantRule, len(t.source)+1)
	for k, v := range t.source {
		next[k] = v
	}
	if len(list) == 0 {
		delete(next, tenant)
	} else {
		next[tenant] = list
	}
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(t.path, b, 0o600); err != nil {
		return fmt.Errorf("detect: save tenant rules: %w", err)
	}
	parsed, err := parseAll(next)
	if err != nil {
		return err
	}
	t.source = next
	t.parsed.Store(&parsed)
	return nil
}
