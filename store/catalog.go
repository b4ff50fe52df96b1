package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/custos-audit/custos/durable"
)

// Part is one sealed Parquet file: records of one tenant, sorted by user
// then time. A seal writes parts of one UTC day; compaction merges a day's
// parts (level 1), then a past week's into one block (level 2).
type Part struct {
	Tenant  string    `json:"tenant"`
	Day     string    `json:"day"`                // YYYY-MM-DD, UTC: the first day it may hold
	LastDay string    `json:"last_day,omitempty"` // the last, for a block; empty when it is Day
	Path    string    `json:"path"`               // relative to the data directory
	Rows    int64     `json:"rows"`
	Bytes   int64     `json:"bytes"`
	MinTime time.Time `json:"min_time"`
	MaxTime time.Time `json:"max_time"`
	SHA256  string    `json:"sha256"`
	Level   int       `json:"level"` // 0: written by a seal; 1: a day's parts merged; 2: a week's block
	Created time.Time `json:"created"`
	// The smallest and largest user_id, byte-wise, when UsersKnown (both
	// empty: the part has none). Parts written before these were recorded
	// get them from the seal loop (DB.recordUserBounds).
	MinUser    string `json:"min_user,omitempty"`
	MaxUser    string `json:"max_user,omitempty"`
	UsersKnown bool   `json:"users_known,omitempty"`
}

// mayHoldUsers reports whether p may hold a user_id in [lo, hi].
func (p Part) mayHoldUsers(lo, hi string) bool {
	if !p.UsersKnown {
		return true
	}
	return p.MaxUser != "" && p.MinUser <= hi && lo <= p.MaxUser
}

const dayLayout = "2006-01-02"

// catalog is an immutable list of sealed parts plus the WAL position up to
// which everything is sealed. Changes make a new catalog, so readers can hold
// one without locks.
type catalog struct {
	SealedThrough uint64 `json:"sealed_through"`
	Parts         []Part `json:"parts"` // sorted by tenant, day, path
}

type catalogFile struct {
	Version int `json:"version"`
	catalog
}

func loadCatalog(path string) (*catalog, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &catalog{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	var f catalogFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse catalog %s: %w", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("catalog %s: unsupported version %d", path, f.Version)
	}
	c := f.catalog
	c.sort()
	return &c, nil
}

func (c *catalog) save(path string) error {
	b, err := json.MarshalIndent(catalogFile{Version: 1, catalog: *c}, "", " ")
	if err != nil {
		return err
	}
	return durable.WriteFile(path, b, 0o644)
}

func (c *catalog) sort() {
	sort.Slice(c.Parts, func(i, j int) bool {
		a, b := c.Parts[i], c.Parts[j]
		if a.Tenant != b.Tenant {
			return a.Tenant < b.Tenant
		}
		if a.Day != b.Day {
			return a.Day < b.Day
		}
		return a.Path < b.Path
	})
}

// with returns a new catalog with parts added, the parts at removed paths
// dropped, and sealedThrough raised to at least through.
func (c *catalog) with(added []Part, removed map[string]bool, through uint64) *catalog {
	n := &catalog{SealedThrough: max(c.SealedThrough, through)}
	n.Parts = make([]Part, 0, len(c.Parts)+len(added))
	for _, p := range c.Parts {
		if !removed[p.Path] {
			n.Parts = append(n.Parts, p)
		}
	}
	n.Parts = append(n.Parts, added...)
	n.sort()
	return n
}

// parts returns the tenant's parts whose time range overlaps [from, to).
// A zero from or to is unbounded.
func (c *catalog) parts(tenant string, from, to time.Time) []Part {
	i := sort.Search(len(c.Parts), func(i int) bool { return c.Parts[i].Tenant >= tenant })
	var out []Part
	for ; i < len(c.Parts) && c.Parts[i].Tenant == tenant; i++ {
		p := c.Parts[i]
		if !from.IsZero() && p.MaxTime.Before(from) {
			continue
		}
		if !to.IsZero() && !p.MinTime.Before(to) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// withUserBounds returns a new catalog with the user bounds of the parts
// at the paths of bounds set.
func (c *catalog) withUserBounds(bounds map[string][2]string) *catalog {
	n := &catalog{SealedThrough: c.SealedThrough, Parts: append([]Part(nil), c.Parts...)}
	for i := range n.Parts {
		if b, ok := bounds[n.Parts[i].Path]; ok {
			n.Parts[i].MinUser, n.Parts[i].MaxUser, n.Parts[i].UsersKnown = b[0], b[1], true
		}
	}
	return n
}

// has reports whether the catalog lists a part at path.
func (c *catalog) has(path string) bool {
	for _, p := range c.Parts {
		if p.Path == path {
			return true
		}
	}
	return false
}

// lastDay is the last UTC day p may hold.
func (p Part) lastDay() string {
	if p.LastDay != "" {
		return p.LastDay
	}
	return p.Day
}

// dayParts returns the tenant's parts that may hold records of day.
func (c *catalog) dayParts(tenant, day string) []Part {
	var out []Part
	for _, p := range c.parts(tenant, time.Time{}, time.Time{}) {
		if p.Day <= day && day <= p.lastDay() {
			out = append(out, p)
		}
	}
	return out
}
