// Package rules holds custos's Sigma detection rules: the bundled pack, rules
// loaded from a directory, and how they see an audit record (the field
// mapping from Sigma's m365 and azure names onto Microsoft 365 records).
package rules

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/sigma"
)

//go:embed bundled/*.yml
var bundled embed.FS

// Rule is a Sigma rule and where it came from.
type Rule struct {
	*sigma.Rule
	Source string // "bundled/<file>" or a file path

	// gate rules out, from the record's Operation alone, records the rule
	// cannot match (every bundled rule names its operations), so they are
	// not evaluated; gated is false for a rule it cannot judge.
	gate  sigma.Gate
	gated bool
}

// products are the logsource products custos's records can satisfy. A rule
// for another product (windows, linux, ...) could never match and is
// refused when loaded, so a mistaken directory is noticed.
var products = []string{"", "m365", "microsoft365", "office365", "azure"}

// Parse parses one rule and checks it applies to custos's records.
func Parse(src []byte, source string) (*Rule, error) {
	r, err := sigma.ParseRule(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if p := strings.ToLower(r.LogSource.Product); !slices.Contains(products, p) {
		return nil, fmt.Errorf("%s: rule %q is for product %q; custos evaluates m365 and azure rules", source, r.Title, r.LogSource.Product)
	}
	out := &Rule{Rule: r, Source: source}
	// Operation and eventName are the same field of a record (see Field).
	out.gate, out.gated = r.Gate("Operation", "eventName")
	return out, nil
}

// Bundled returns the rule pack shipped with custos.
func Bundled() ([]*Rule, error) {
	sub, err := fs.Sub(bundled, "bundled")
	if err != nil {
		return nil, err
	}
	return loadFS(sub, "bundled")
}

// LoadDir loads every .yml and .yaml file under dir. A rule that does not
// parse is reported and the others are still loaded.
func LoadDir(dir string) ([]*Rule, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("rules directory: %w", err)
	}
	return loadFS(os.DirFS(dir), dir)
}

func loadFS(fsys fs.FS, prefix string) ([]*Rule, error) {
	var out []*Rule
	var errs []error
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ext := strings.ToLower(filepath.Ext(p))
		if d.IsDir() || (ext != ".yml" && ext != ".yaml") {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		r, err := Parse(b, filepath.Join(prefix, p))
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// Matching returns the rules of sets that r matches, in the order given.
// The record is decoded at most once however many sets there are.
func Matching(r *audit.Record, sets ...[]*Rule) []*Rule {
	var ev *recordEvent // made when a rule passes its gate
	var out []*Rule
	for _, rs := range sets {
		for _, x := range rs {
			if x.gated && !x.gate.Allows(r.Operation) {
				continue
			}
			if ev == nil {
				ev = Event(r)
			}
			if x.Match(ev) {
				out = append(out, x)
			}
		}
	}
	return out
}
