package collection

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/custos-audit/custos/m365"
)

// KindM365 is the Office 365 Management Activity API collector.
const KindM365 = "m365"

// namePattern is what a source name may look like: short, printable, safe
// as a path element and a metric label.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// Errors, for mapping to HTTP statuses.
var (
	ErrInvalid  = errors.New("invalid source")
	ErrExists   = errors.New("source already exists")
	ErrNotFound = errors.New("no such source")
)

// Config is a configured source as it is stored and shown. It never holds
// a secret: those are in Secret, sealed apart.
type Config struct {
	Tenant    string      `json:"tenant"`
	Name      string      `json:"name"`
	Kind      string      `json:"kind"`
	M365      *M365Config `json:"m365,omitempty"`
	Created   time.Time   `json:"created"`
	CreatedBy string      `json:"createdBy,omitempty"`
}

// M365Config is where and as whom a Microsoft 365 collector pulls.
type M365Config struct {
	TenantID     string   `json:"tenantId"`
	ClientID     string   `json:"clientId"`
	Cloud        string   `json:"cloud,omitempty"`
	APIRoot      string   `json:"apiRoot,omitempty"`
	Authority    string   `json:"authority,omitempty"`
	ContentTypes []string `json:"contentTypes,omitempty"`
	PublisherID  string   `json:"publisherId,omitempty"`
	Rate         float64  `json:"rate,omitempty"`

	// Credential is "secret" or "certificate"; SecretSet says a credential
	// is stored (sealed). The certificate's thumbprint and expiry are not
	// secret and help an administrator match it with Entra's portal.
	Credential            string     `json:"credential"`
	SecretSet             bool       `json:"secretSet"`
	CertificateThumbprint string     `json:"certificateThumbprint,omitempty"`
	CertificateExpires    *time.Time `json:"certificateExpires,omitempty"`
}

// Secret is the write-only credential of a source.
type Secret struct {
	ClientSecret string `json:"clientSecret,omitempty"`
	// Certificate is PEM: the certificate and its RSA private key.
	Certificate string `json:"certificate,omitempty"`
}

// LogValue keeps a Secret out of logs even if one is logged by mistake.
func (s Secret) LogValue() slog.Value { return slog.StringValue("[secret]") }

// String keeps a Secret out of %v.
func (s Secret) String() string { return "[secret]" }

// GoString keeps a Secret out of %#v.
func (s Secret) GoString() string { return "[secret]" }

// prepare validates c with its secret, fills in defaults, and returns the
// collector's tenant credential. All problems are reported at once.
func prepare(c *Config, sec Secret) (m365.Tenant, error) {
	var errs []error
	if !namePattern.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("name %q: want 1-128 letters, digits and . _ : @ -, starting with a letter or digit", c.Name))
	}
	if c.Kind != KindM365 {
		return m365.Tenant{}, fmt.Errorf("%w: kind %q (known: %s)", ErrInvalid, c.Kind, KindM365)
	}
	m := c.M365
	if m == nil {
		return m365.Tenant{}, fmt.Errorf("%w: kind m365 needs an \"m365\" object", ErrInvalid)
	}
	m.TenantID = strings.ToLower(strings.TrimSpace(m.TenantID))
	m.ClientID = strings.TrimSpace(m.ClientID)
	if m.Cloud == "" && m.APIRoot == "" && m.Authority == "" {
		m.Cloud = "commercial"
	}
	if m.Cloud != "" {
		cl, err := m365.LookupCloud(m.Cloud)
		if err != nil {
			errs = append(errs, err)
		} else {
			m.Cloud = cl.Name
			if m.APIRoot == "" {
				m.APIRoot = cl.APIRoot
			}
			if m.Authority == "" {
				m.Authority = cl.Authority
			}
		}
	} else if m.APIRoot == "" || m.Authority == "" {
		errs = append(errs, errors.New("without a cloud preset, both apiRoot and authority are needed"))
	}
	if len(m.ContentTypes) == 0 {
		m.ContentTypes = m365.DefaultContentTypes()
	}
	if m.PublisherID == "" {
		m.PublisherID = m.TenantID
	}
	if m.Rate == 0 {
		m.Rate = 30
	}
	t := m365.Tenant{ID: m.TenantID, ClientID: m.ClientID}
	m.SecretSet, m.CertificateThumbprint, m.CertificateExpires = false, "", nil
	switch {
	case sec.ClientSecret != "" && sec.Certificate != "":
		errs = append(errs, errors.New("give clientSecret or certificate, not both"))
	case sec.Certificate != "":
		cert, err := m365.ParseCertificate([]byte(sec.Certificate))
		if err != nil {
			errs = append(errs, err)
			break
		}
		t.Certificate = cert
		m.Credential, m.SecretSet, m.CertificateThumbprint = "certificate", true, cert.Thumbprint()
		exp := cert.Cert.NotAfter.UTC()
		m.CertificateExpires = &exp
	case sec.ClientSecret != "":
		t.ClientSecret = sec.ClientSecret
		m.Credential, m.SecretSet = "secret", true
	default:
		errs = append(errs, errors.New("no credential: give clientSecret or certificate"))
	}
	// The collector checks the rest (GUIDs, content types, URLs, rate).
	// It needs a credential and a state directory to say so; neither is
	// used here.
	probe := t
	if probe.ClientSecret == "" && probe.Certificate == nil {
		probe.ClientSecret = "-"
	}
	if _, err := m365.New(m365.Config{Tenants: []m365.Tenant{probe}, PublisherIdentifier: m.PublisherID,
		ContentTypes: m.ContentTypes, APIRoot: m.APIRoot, Authority: m.Authority, StateDir: "-", Rate: m.Rate}, discard{}); err != nil {
		errs = append(errs, errors.Unwrap(err))
	}
	if err := errors.Join(errs...); err != nil {
		return m365.Tenant{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return t, nil
}

// credential rebuilds the collector's credential from an opened secret.
func credential(m *M365Config, sec Secret) (m365.Tenant, error) {
	t := m365.Tenant{ID: m.TenantID, ClientID: m.ClientID, ClientSecret: sec.ClientSecret}
	if sec.Certificate != "" {
		cert, err := m365.ParseCertificate([]byte(sec.Certificate))
		if err != nil {
			return t, err
		}
		t.Certificate = cert
	}
	return t, nil
}
