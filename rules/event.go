package rules

import (
	"encoding/json"
	"strings"

	"github.com/custos-audit/custos/audit"
)

// recordEvent presents an audit record to Sigma rules. Field names are the
// record's own JSON names (Operation, UserId, Parameters, ...) with dotted
// paths into objects, plus the names Sigma's m365 rules use:
//
//	eventSource          Workload
//	eventName            Operation
//	status               "success" or "failure", from ResultStatus
//	Payload              the whole record, as text
//	Parameters.<Name>    the Value of the Parameters entry called Name
//	ExtendedProperties.<Name>, OperationProperties.<Name>, DeviceProperties.<Name>
//	                     likewise
//	ModifiedProperties.<Name>  that entry's NewValue
//
// Microsoft keeps Exchange cmdlet arguments and Entra ID changes in such
// Name/Value lists, so a rule can say Parameters.ForwardTo instead of
// searching the whole list's text.
type recordEvent struct {
	r   *audit.Record
	doc map[string]any // the decoded raw record, on first need
	bad bool           // the raw record did not decode as an object
	// Operation and Workload as interface values, made once: every rule
	// asks for them.
	op, workload any
}

// Event wraps r for rule evaluation.
func Event(r *audit.Record) *recordEvent { return &recordEvent{r: r} }

func (e *recordEvent) Text() string { return string(e.r.Raw) }

func (e *recordEvent) decoded() map[string]any {
	if e.doc == nil && !e.bad {
		if err := json.Unmarshal(e.r.Raw, &e.doc); err != nil || e.doc == nil {
			e.bad = true
		}
	}
	return e.doc
}

// nameValueLists are the lists of {Name, Value} entries a dotted field
// reaches into by name, and the key holding each entry's value.
var nameValueLists = map[string]string{
	"Parameters":          "Value",
	"ExtendedProperties":  "Value",
	"OperationProperties": "Value",
	"DeviceProperties":    "Value",
	"ModifiedProperties":  "NewValue",
}

func (e *recordEvent) Field(name string) (any, bool) {
	r := e.r
	switch name {
	case "eventSource", "Workload":
		if r.Workload == "" {
			return nil, false
		}
		if e.workload == nil {
			e.workload = r.Workload
		}
		return e.workload, true
	case "eventName", "Operation":
		if r.Operation == "" {
			return nil, false
		}
		if e.op == nil {
			e.op = r.Operation
		}
		return e.op, true
	case "status":
		if r.ResultStatus == "" {
			return nil, false
		}
		return successOrFailure(r.ResultStatus), true
	case "Payload":
		return string(r.Raw), true
	case "ClientIP":
		// The normalised address (no port or brackets), so cidr works.
		if r.ClientIP != "" {
			return r.ClientIP, true
		}
	}
	doc := e.decoded()
	if doc == nil {
		return nil, false
	}
	if v, ok := lookup(doc, name); ok {
		return v, true
	}
	// Parameters.ForwardTo: the entry of a Name/Value list.
	list, entry, ok := strings.Cut(name, ".")
	valueKey, known := nameValueLists[list]
	if !ok || !known {
		return nil, false
	}
	items, _ := doc[list].([]any)
	for _, it := range items {
		m, _ := it.(map[string]any)
		if n, _ := m["Name"].(string); strings.EqualFold(n, entry) {
			v, ok := m[valueKey]
			return v, ok
		}
	}
	return nil, false
}

// lookup follows a dotted path through objects, matching keys exactly,
// else ignoring case (Microsoft's casing varies between workloads).
func lookup(doc map[string]any, path string) (any, bool) {
	var cur any = doc
	for part := range strings.SplitSeq(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		v, ok := obj[part]
		if !ok {
			for k, x := range obj {
				if strings.EqualFold(k, part) {
					v, ok = x, true
					break
				}
			}
		}
		if !ok {
			return nil, false
		}
		cur = v
	}
	return cur, true
}

// successOrFailure maps Microsoft's ResultStatus spellings onto Sigma's.
func successOrFailure(s string) string {
	switch strings.ToLower(s) {
	case "succeeded", "success", "true", "partiallysucceeded":
		return "success"
	case "failed", "failure", "false":
		return "failure"
	}
	return strings.ToLower(s)
}
