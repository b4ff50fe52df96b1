package sealed

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealRoundTripAndRefusals(t *testing.T) {
	dir := t.TempDir()
	kf := &KeyFile{Path: filepath.Join(dir, "secret.key"), Create: true}
	box, err := kf.Box()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(kf.Path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi, err)
	}
	secret := []byte("client-secret~value.0123456789")
	ad := []byte("contoso\x00m365-prod")
	s1, err := box.Seal(secret, ad)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := box.Seal(secret, ad)
	if s1 == s2 {
		t.Fatal("two seals of one value are equal: the nonce is not fresh")
	}
	if bytes.Contains([]byte(s1), secret) {
		t.Fatal("sealed text holds the plaintext")
	}
	// The same key file opened again (a restart) opens the value.
	again, err := (&KeyFile{Path: kf.Path}).Box()
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := again.Open(s1, ad); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("round trip: %q %v", pt, err)
	}

	// Any flipped byte in the payload fails.
	for i := len("v1.") + len(box.KeyID()) + 1; i < len(s1); i++ {
		b := []byte(s1)
		b[i] ^= 0x01
		if _, err := box.Open(string(b), ad); err == nil {
			t.Fatalf("tampered at %d: opened", i)
		}
	}
	if _, err := box.Open(s1, []byte("contoso\x00m365-other")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("other additional data: %v, want ErrCorrupt", err)
	}
	if _, err := box.Open(s1, []byte("fabrikam\x00m365-prod")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("other tenant: %v, want ErrCorrupt", err)
	}
	other, _ := New(bytes.Repeat([]byte{7}, KeySize))
	if _, err := other.Open(s1, ad); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("other key: %v, want ErrWrongKey", err)
	}
	for _, bad := range []string{"", "v1", "v2." + box.KeyID() + ".AAAA", "v1." + box.KeyID() + ".!!", "v1." + box.KeyID() + ".AAAA"} {
		if _, err := box.Open(bad, ad); err == nil {
			t.Errorf("%q opened", bad)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	// A key that must exist is not invented.
	if _, err := (&KeyFile{Path: filepath.Join(dir, "missing.key")}).Box(); err == nil {
		t.Fatal("a missing key file without Create gave a key")
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.key")); err == nil {
		t.Fatal("a key file was created without Create")
	}
	// Raw 32 bytes are accepted as well as base64.
	raw := filepath.Join(dir, "raw.key")
	os.WriteFile(raw, bytes.Repeat([]byte{1}, KeySize), 0o600)
	b1, err := (&KeyFile{Path: raw}).Box()
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := New(bytes.Repeat([]byte{1}, KeySize))
	if b1.KeyID() != b2.KeyID() {
		t.Fatal("raw key file read differently")
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("c2hvcnQ=\n"), 0o600)
	if _, err := (&KeyFile{Path: short, Create: true}).Box(); err == nil {
		t.Fatal("a short key was accepted")
	}
}
