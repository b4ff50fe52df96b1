package m365

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Certificate is an app registration's certificate credential: the
// certificate uploaded to Entra and its RSA private key. The collector
// proves possession of the key with a signed client assertion (RFC 7523)
// instead of sending a shared secret, so nothing that crosses the wire can
// be replayed for long.
type Certificate struct {
	Cert *x509.Certificate
	Key  *rsa.PrivateKey
}

// Thumbprint is the SHA-1 hash of the certificate in upper-case hex, the
// form the Entra portal shows under "Certificates & secrets".
func (c *Certificate) Thumbprint() string {
	s := sha1.Sum(c.Cert.Raw)
	return strings.ToUpper(hex.EncodeToString(s[:]))
}

// LogValue keeps the key out of logs.
func (c *Certificate) LogValue() slog.Value { return slog.StringValue(c.String()) }

// String keeps the key out of %v.
func (c *Certificate) String() string { return "certificate " + c.Thumbprint() }

// GoString keeps the key out of %#v.
func (c *Certificate) GoString() string { return c.String() }

// LoadCertificate reads a certificate and its RSA key from PEM files: both
// in certFile, or the key in keyFile when that is not empty.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	if keyFile != "" {
		k, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("certificate key: %w", err)
		}
		b = append(append(b, '\n'), k...)
	}
	return ParseCertificate(b)
}

// ParseCertificate reads PEM holding a certificate (possibly with its
// chain) and its RSA private key, PKCS#1 ("RSA PRIVATE KEY") or PKCS#8
// ("PRIVATE KEY"). The certificate used is the one whose public key
// matches the private key, so the order of the blocks does not matter.
func ParseCertificate(pemData []byte) (*Certificate, error) {
	var (
		certs []*x509.Certificate
		key   *rsa.PrivateKey
	)
	for rest := pemData; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate: %w", err)
			}
			certs = append(certs, c)
		case "RSA PRIVATE KEY":
			if key != nil {
				return nil, errors.New("certificate: more than one private key")
			}
			k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate key (PKCS#1): %w", err)
			}
			key = k
		case "PRIVATE KEY":
			if key != nil {
				return nil, errors.New("certificate: more than one private key")
			}
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate key (PKCS#8): %w", err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("certificate key is %T; Entra client assertions need an RSA key", k)
			}
			key = rk
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("certificate key is encrypted; export it without a passphrase (openssl pkey -in key.pem -out plain.pem) and protect the file instead")
		case "EC PRIVATE KEY":
			return nil, errors.New("certificate key is an EC key; Entra client assertions need an RSA key")
		}
	}
	switch {
	case len(certs) == 0:
		return nil, errors.New("certificate: no CERTIFICATE block in the PEM data")
	case key == nil:
		return nil, errors.New("certificate: no private key (RSA PRIVATE KEY or PRIVATE KEY block) in the PEM data")
	}
	for _, c := range certs {
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && pub.Equal(&key.PublicKey) {
			if key.N.BitLen() < 2048 {
				return nil, fmt.Errorf("certificate key has %d bits; Entra requires at least 2048", key.N.BitLen())
			}
			return &Certificate{Cert: c, Key: key}, nil
		}
	}
	return nil, errors.New("certificate: the private key does not belong to any certificate in the PEM data")
}

// assertionLifetime is how long a client assertion is valid. Entra accepts
// up to a few hours; a short one limits what a captured request is worth.
const assertionLifetime = 10 * time.Minute

// assertion returns a client assertion JWT for the token endpoint aud,
// signed RS256 with the certificate's key. The header names the
// certificate by its SHA-1 thumbprint (x5t), which is how Entra finds the
// registered key, and by its SHA-256 thumbprint (x5t#S256) as newer
// guidance asks.
func (c *Certificate) assertion(aud, clientID string, now time.Time) (string, error) {
	s1 := sha1.Sum(c.Cert.Raw)
	s256 := sha256.Sum256(c.Cert.Raw)
	hdr, err := json.Marshal(map[string]string{
		"alg":      "RS256",
		"typ":      "JWT",
		"x5t":      base64.RawURLEncoding.EncodeToString(s1[:]),
		"x5t#S256": base64.RawURLEncoding.EncodeToString(s256[:]),
	})
	if err != nil {
		return "", err
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("client assertion id: %w", err)
	}
	claims, err := json.Marshal(map[string]any{
		"aud": aud,
		"iss": clientID,
		"sub": clientID,
		"jti": hex.EncodeToString(jti[:]),
		// Issued a little in the past: the authority's clock may lag ours.
		"nbf": now.Add(-time.Minute).Unix(),
		"iat": now.Add(-time.Minute).Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	})
	if err != nil {
		return "", err
	}
	signing := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, c.Key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
