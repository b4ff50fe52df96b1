// Package auth holds tenants and the API tokens that grant access to them.
//
// A token has a role and a scope (one tenant, or global). Only a SHA-256 of
// each token's secret is kept; the whole token is shown once, at creation.
// Scope is checked in one place, Principal.Authorize, so that no route can
// forget it: a token for tenant A asking about tenant B learns nothing, not
// even whether B exists.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/custos-audit/custos/durable"
)

// Role is what a token may do.
type Role string

const (
	RoleIngest Role = "ingest" // write records
	RoleRead   Role = "read"   // read records
	RoleAdmin  Role = "admin"  // manage tenants and tokens; implies read and ingest
)

// ParseRole accepts the names above.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(strings.TrimSpace(s))); r {
	case RoleIngest, RoleRead, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want ingest, read or admin)", s)
}

// allows reports whether a holder of r may act with role need.
func (r Role) allows(need Role) bool {
	return r == need || r == RoleAdmin
}

// Errors returned by Authorize and the registry. The API maps them to
// 401, 403, 404 and 409.
var (
	ErrUnauthenticated = errors.New("missing, unknown, revoked or expired token")
	ErrForbidden       = errors.New("token's role does not allow this")
	ErrNotFound        = errors.New("not found")
	ErrExists          = errors.New("already exists")
)

var tenantIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidTenantID reports whether id can name a tenant. The pattern is also
// what makes tenant ids safe inside file paths and SQL identifiers.
func ValidTenantID(id string) bool { return tenantIDPattern.MatchString(id) }

// Tenant is an organisation whose audit log custos keeps.
type Tenant struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// Token is an API token as listed; it never carries the secret.
type Token struct {
	ID      string     `json:"id"`
	Tenant  string     `json:"tenant"` // "" for a global token
	Role    Role       `json:"role"`
	Name    string     `json:"name"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// Principal is the authenticated holder of a token.
type Principal struct {
	TokenID string
	Tenant  string // "" for global
	Role    Role
	Name    string
}

// Global reports whether the principal's token is not bound to one tenant.
func (p Principal) Global() bool { return p.Tenant == "" }

// Authorize decides whether p may act with role need on tenant. A token
// scoped to another tenant gets ErrNotFound, so it cannot probe which
// tenants exist.
func (p Principal) Authorize(tenant string, need Role) error {
	if !p.Global() && p.Tenant != tenant {
		return ErrNotFound
	}
	if !p.Role.allows(need) {
		return ErrForbidden
	}
	return nil
}

type storedToken struct {
	Token
	Hash string `json:"sha256"` // hex SHA-256 of the secret part
}

type state struct {
	Tenants []Tenant       `json:"tenants"`
	Tokens  []*storedToken `json:"tokens"`
}

// Registry is the persistent set of tenants and tokens. It is small and
// changes rarely, so it lives in one JSON file rewritten atomically.
type Registry struct {
	path string
	now  func() time.Time

	mu      sync.RWMutex
	tenants map[string]Tenant
	tokens  map[string]*storedToken
}

// Open loads the registry at path, creating an empty one if absent.
func Open(path string) (*Registry, error) {
	r := &Registry{
		path:    path,
		now:     func() time.Time { return time.Now().UTC() },
		tenants: map[string]Tenant{},
		tokens:  map[string]*storedToken{},
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth: read %s: %w", path, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("auth: parse %s: %w", path, err)
	}
	for _, t := range st.Tenants {
		r.tenants[t.ID] = t
	}
	for _, t := range st.Tokens {
		r.tokens[t.ID] = t
	}
	return r, nil
}

// save writes the whole registry; callers hold r.mu.
func (r *Registry) save() error {
	st := state{Tenants: make([]Tenant, 0, len(r.tenants)), Tokens: make([]*storedToken, 0, len(r.tokens))}
	for _, t := range r.tenants {
		st.Tenants = append(st.Tenants, t)
	}
	for _, t := range r.tokens {
		st.Tokens = append(st.Tokens, t)
	}
	sort.Slice(st.Tenants, func(i, j int) bool { return st.Tenants[i].ID < st.Tenants[j].ID })
	sort.Slice(st.Tokens, func(i, j int) bool { return st.Tokens[i].ID < st.Tokens[j].ID })
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(r.path, b, 0o600); err != nil {
		return fmt.Errorf("auth: save: %w", err)
	}
	return nil
}

// CreateTenant adds a tenant.
func (r *Registry) CreateTenant(id, name string) (Tenant, error) {
	if !ValidTenantID(id) {
		return Tenant{}, fmt.Errorf("invalid tenant id %q: use 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit", id)
	}
	if name == "" {
		name = id
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.tenants[id]; ok {
		return Tenant{}, fmt.Errorf("tenant %q: %w", id, ErrExists)
	}
	t := Tenant{ID: id, Name: name, Created: r.now()}
	r.tenants[id] = t
	if err := r.save(); err != nil {
		delete(r.tenants, id)
		return Tenant{}, err
	}
	return t, nil
}

// Tenant returns the tenant with id.
func (r *Registry) Tenant(id string) (Tenant, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.tenants[id]
	return t, ok
}

// Tenants lists all tenants by id.
func (r *Registry) Tenants() []Tenant {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Tenant, 0, len(r.tenants))
	for _, t := range r.tenants {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

const tokenPrefix = "custos_"

// CreateToken issues a token and returns it with its secret string, which
// is not kept and cannot be shown again. tenant "" makes a global token.
func (r *Registry) CreateToken(tenant string, role Role, name string, expires *time.Time) (Token, string, error) {
	if _, err := ParseRole(string(role)); err != nil {
		return Token{}, "", err
	}
	if expires != nil && !expires.After(r.now()) {
		return Token{}, "", fmt.Errorf("expiry %s is in the past", expires.Format(time.RFC3339))
	}
	var idb [8]byte
	var secret [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return Token{}, "", err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return Token{}, "", err
	}
	id := hex.EncodeToString(idb[:])
	sec := base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(sec))

	r.mu.Lock()
	defer r.mu.Unlock()
	if tenant != "" {
		if _, ok := r.tenants[tenant]; !ok {
			return Token{}, "", fmt.Errorf("tenant %q: %w", tenant, ErrNotFound)
		}
	}
	st := &storedToken{
		Token: Token{ID: id, Tenant: tenant, Role: role, Name: name, Created: r.now(), Expires: expires},
		Hash:  hex.EncodeToString(sum[:]),
	}
	r.tokens[id] = st
	if err := r.save(); err != nil {
		delete(r.tokens, id)
		return Token{}, "", err
	}
	return st.Token, tokenPrefix + id + "_" + sec, nil
}

// Tokens lists tokens, of one tenant or (tenant "") all of them.
func (r *Registry) Tokens(tenant string) []Token {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Token
	for _, t := range r.tokens {
		if tenant == "" || t.Tenant == tenant {
			out = append(out, t.Token)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created.Before(out[j].Created) || (out[i].Created.Equal(out[j].Created) && out[i].ID < out[j].ID)
	})
	return out
}

// TokenInfo returns one token's listing.
func (r *Registry) TokenInfo(id string) (Token, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.tokens[id]
	if !ok {
		return Token{}, false
	}
	return t.Token, true
}

// Revoke makes a token unusable from now on. Revoking twice is not an error.
func (r *Registry) Revoke(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tokens[id]
	if !ok {
		return fmt.Errorf("token %q: %w", id, ErrNotFound)
	}
	if t.Revoked != nil {
		return nil
	}
	now := r.now()
	t.Revoked = &now
	if err := r.save(); err != nil {
		t.Revoked = nil
		return err
	}
	return nil
}

// HasTokens reports whether any token was ever issued, which tells a fresh
// installation (that needs a bootstrap admin token) from an existing one.
func (r *Registry) HasTokens() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.tokens) > 0
}

// Authenticate resolves a presented token string.
func (r *Registry) Authenticate(presented string) (Principal, error) {
	rest, ok := strings.CutPrefix(presented, tokenPrefix)
	if !ok {
		return Principal{}, ErrUnauthenticated
	}
	id, sec, ok := strings.Cut(rest, "_")
	if !ok {
		return Principal{}, ErrUnauthenticated
	}
	r.mu.RLock()
	t, found := r.tokens[id]
	var tok Token
	var want string
	if found {
		tok, want = t.Token, t.Hash
	}
	r.mu.RUnlock()
	sum := sha256.Sum256([]byte(sec))
	got := hex.EncodeToString(sum[:])
	// Compare even when the id is unknown so timing does not reveal which
	// ids exist.
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 || !found {
		return Principal{}, ErrUnauthenticated
	}
	if tok.Revoked != nil || (tok.Expires != nil && !r.now().Before(*tok.Expires)) {
		return Principal{}, ErrUnauthenticated
	}
	return Principal{TokenID: tok.ID, Tenant: tok.Tenant, Role: tok.Role, Name: tok.Name}, nil
}
