// Package sealed encrypts small secrets (API client secrets, private keys)
// for storage at rest with AES-256-GCM under one server key.
//
// Each value is sealed with a fresh random nonce and with additional data
// naming what it belongs to, so a sealed value copied from one object to
// another does not open. The key lives in its own file, ideally on another
// disk than the data: a copy of the data directory alone then reveals no
// secret.
package sealed

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/custos-audit/custos/durable"
)

// KeySize is the key length: AES-256.
const KeySize = 32

// Errors of Open.
var (
	// ErrWrongKey: the value was sealed under another key (the key file
	// was replaced or lost).
	ErrWrongKey = errors.New("sealed with another key")
	// ErrCorrupt: the value was altered, or belongs to another object.
	ErrCorrupt = errors.New("sealed value is corrupt or belongs to something else")
)

// Box seals and opens values under one key.
type Box struct {
	aead cipher.AEAD
	id   string // a short, public fingerprint of the key
}

// New returns a Box for a KeySize-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealed: key of %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	// The fingerprint is a hash of the key under a fixed label, so it says
	// which key sealed a value without helping anyone guess the key.
	fp := sha256.Sum256(append([]byte("custos sealed key id\x00"), key...))
	return &Box{aead: aead, id: hex.EncodeToString(fp[:4])}, nil
}

// KeyID is the key's public fingerprint.
func (b *Box) KeyID() string { return b.id }

// prefix marks the format: version, key id.
const version = "v1"

// Seal encrypts plaintext bound to ad and returns printable text:
// "v1.<key id>.<base64url(nonce | ciphertext | tag)>".
func (b *Box) Seal(plaintext, ad []byte) (string, error) {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("sealed: nonce: %w", err)
	}
	out := b.aead.Seal(nonce, nonce, plaintext, b.ad(ad))
	return version + "." + b.id + "." + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts a value Seal returned for the same ad.
func (b *Box) Open(sealedText string, ad []byte) ([]byte, error) {
	parts := strings.Split(sealedText, ".")
	if len(parts) != 3 || parts[0] != version {
		return nil, fmt.Errorf("sealed: %w (not a %s sealed value)", ErrCorrupt, version)
	}
	if parts[1] != b.id {
		return nil, fmt.Errorf("sealed: %w (key %s, this server's key is %s)", ErrWrongKey, parts[1], b.id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(raw) < b.aead.NonceSize()+b.aead.Overhead() {
		return nil, fmt.Errorf("sealed: %w", ErrCorrupt)
	}
	n := b.aead.NonceSize()
	pt, err := b.aead.Open(nil, raw[:n], raw[n:], b.ad(ad))
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", ErrCorrupt)
	}
	return pt, nil
}

// ad binds the format version too, so a future format cannot be confused
// with this one.
func (b *Box) ad(ad []byte) []byte {
	return append([]byte("custos/sealed/"+version+"\x00"), ad...)
}

// KeyFile is a key kept in a file and loaded on first use.
type KeyFile struct {
	// Path of the key file.
	Path string
	// Create makes the key (mode 0600) if the file does not exist. Leave it
	// off for a key that must already exist (one kept off the data disk):
	// a new key would make every value sealed so far unreadable.
	Create bool

	mu  sync.Mutex
	box *Box
}

// Box loads the key, creating it if allowed, and returns its Box.
func (k *KeyFile) Box() (*Box, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.box != nil {
		return k.box, nil
	}
	key, err := readKey(k.Path)
	if errors.Is(err, fs.ErrNotExist) && k.Create {
		key, err = createKey(k.Path)
	}
	if err != nil {
		return nil, err
	}
	b, err := New(key)
	if err != nil {
		return nil, fmt.Errorf("sealed: key file %s: %w", k.Path, err)
	}
	k.box = b
	return b, nil
}

// readKey accepts the key as base64 text (what createKey writes, easy to
// copy into a password manager) or as 32 raw bytes.
func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sealed: key file: %w", err)
	}
	if len(b) == KeySize {
		return b, nil
	}
	t := bytes.TrimSpace(b)
	key, err := base64.StdEncoding.DecodeString(string(t))
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("sealed: key file %s: want %d bytes, base64-encoded", path, KeySize)
	}
	return key, nil
}

// createKey writes a new random key. O_EXCL: two servers starting on one
// data directory cannot each write their own key.
func createKey(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("sealed: new key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("sealed: new key: %w", err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("sealed: new key: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return key, nil
}
