package detect

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// mmdbGeo looks addresses up in MaxMind-format databases: an ASN database
// (GeoLite2-ASN or compatible), a country or city database, or one that
// has both. The admin supplies the files; custos ships none.
type mmdbGeo struct {
	readers []*maxminddb.Reader
}

// mmdbRecord is the part of a MaxMind record custos reads.
type mmdbRecord struct {
	ASN     uint32 `maxminddb:"autonomous_system_number"`
	Org     string `maxminddb:"autonomous_system_organization"`
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Registered struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

// OpenGeo opens MaxMind-format .mmdb files. Lookups consult each in
// order and combine what they know.
func OpenGeo(paths ...string) (Geo, error) {
	g := &mmdbGeo{}
	for _, p := range paths {
		r, err := maxminddb.Open(p)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("detect: open enrichment database %s: %w", p, err)
		}
		g.readers = append(g.readers, r)
	}
	return g, nil
}

func (g *mmdbGeo) Lookup(addr netip.Addr) (Network, bool) {
	var n Network
	found := false
	for _, r := range g.readers {
		res := r.Lookup(addr.Unmap())
		if !res.Found() {
			continue
		}
		var rec mmdbRecord
		if res.Decode(&rec) != nil {
			continue
		}
		found = true
		if n.ASN == 0 {
			n.ASN, n.Org = rec.ASN, rec.Org
		}
		if n.Country == "" {
			n.Country = rec.Country.ISOCode
			if n.Country == "" {
				n.Country = rec.Registered.ISOCode
			}
		}
	}
	return n, found
}

// Close closes the databases.
func (g *mmdbGeo) Close() error {
	var errs []error
	for _, r := range g.readers {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}
