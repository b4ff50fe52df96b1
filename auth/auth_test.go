package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTokensPersistHashedAndAuthenticate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.json")
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.HasTokens() {
		t.Fatal("fresh registry has tokens")
	}
	if _, err := r.CreateTenant("acme", "Acme"); err != nil {
		t.Fatal(err)
	}
	tok, secret, err := r.CreateToken("acme", RoleIngest, "collector", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	_, sec, _ := strings.Cut(strings.TrimPrefix(secret, tokenPrefix), "_")
	if strings.Contains(string(b), sec) {
		t.Fatal("registry file contains the token secret")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("registry file mode %v, want 0600", fi.Mode().Perm())
	}

	// A reopened registry authenticates the same token.
	r, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Authenticate(secret)
	if err != nil || p.TokenID != tok.ID || p.Tenant != "acme" || p.Role != RoleIngest {
		t.Fatalf("authenticate: %+v, %v", p, err)
	}
	for _, bad := range []string{"", "custos_", secret + "x", strings.Replace(secret, tok.ID, "0000000000000000", 1),
		"Bearer " + secret, secret[:len(secret)-1]} {
		if _, err := r.Authenticate(bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("authenticate(%q) = %v, want ErrUnauthenticated", bad, err)
		}
	}
	if err := r.Revoke(tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate(secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked token authenticated: %v", err)
	}
	if err := r.Revoke("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	r, _ := Open(filepath.Join(t.TempDir(), "auth.json"))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	exp := now.Add(time.Hour)
	_, secret, err := r.CreateToken("", RoleRead, "", &exp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate(secret); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	now = exp
	if _, err := r.Authenticate(secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("at expiry: %v", err)
	}
	past := now.Add(-time.Minute)
	if _, _, err := r.CreateToken("", RoleRead, "", &past); err == nil {
		t.Fatal("token with past expiry was created")
	}
}

func TestAuthorize(t *testing.T) {
	tests := []struct {
		p      Principal
		tenant string
		need   Role
		want   error
	}{
		{Principal{Tenant: "a", Role: RoleIngest}, "a", RoleIngest, nil},
		{Principal{Tenant: "a", Role: RoleIngest}, "a", RoleRead, ErrForbidden},
		{Principal{Tenant: "a", Role: RoleRead}, "a", RoleIngest, ErrForbidden},
		{Principal{Tenant: "a", Role: RoleAdmin}, "a", RoleRead, nil},
		{Principal{Tenant: "a", Role: RoleAdmin}, "b", RoleRead, ErrNotFound},
		{Principal{Tenant: "a", Role: RoleRead}, "b", RoleIngest, ErrNotFound}, // not ErrForbidden: reveals nothing about b
		{Principal{Role: RoleRead}, "b", RoleRead, nil},
		{Principal{Role: RoleRead}, "b", RoleAdmin, ErrForbidden},
	}
	for _, tt := range tests {
		if got := tt.p.Authorize(tt.tenant, tt.need); !errors.Is(got, tt.want) && got != tt.want {
			t.Errorf("%+v.Authorize(%s, %s) = %v, want %v", tt.p, tt.tenant, tt.need, got, tt.want)
		}
	}
}

func TestTenants(t *testing.T) {
	r, _ := Open(filepath.Join(t.TempDir(), "auth.json"))
	for _, bad := range []string{"", "Acme", "-a", "a_b", "a/b", "../x", strings.Repeat("a", 64), "a b"} {
		if _, err := r.CreateTenant(bad, ""); err == nil {
			t.Errorf("tenant id %q accepted", bad)
		}
	}
	if _, err := r.CreateTenant("acme", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateTenant("acme", ""); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate tenant: %v", err)
	}
	if _, _, err := r.CreateToken("nope", RoleRead, "", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("token for unknown tenant: %v", err)
	}
	if _, _, err := r.CreateToken("acme", Role("root"), "", nil); err == nil {
		t.Fatal("unknown role accepted")
	}
}
