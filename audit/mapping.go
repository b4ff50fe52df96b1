package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A Mapping maps the JSON audit events of a non-Microsoft source (GitHub,
// Okta, an in-house service) onto Record's columns, so that they are
// searched and watched like Microsoft 365 records. Fields it does not map
// stay in the raw record. MAPPING.md describes the configuration.
//
// A Mapping is safe for concurrent use.
type Mapping struct {
	cols       [numColumns]columnRule
	timeFormat string // "rfc3339", "unix", "unix_ms", "unix_us", "unix_ns" or a Go layout
	idFromHash bool
	states     sync.Pool // *mappingState
}

// columnRule is how one column is filled: from the first of paths present
// in the event, else from constant (JSON text).
type columnRule struct {
	paths    []path
	constant []byte
}

// path is a dotted path such as "actor.0.id". A numeric segment indexes an
// array, or names a member of an object.
type path struct {
	text string // as configured, for error messages
	segs []segment
}

type segment struct {
	key   string
	index int // -1 if key is not a decimal number
}

type mappingState struct {
	top  []topMember
	strs arena
}

// column identifies a Record column in mapping files, by the name the store
// gives it.
type column int

const (
	colID column = iota
	colCreationTime
	colRecordType
	colOperation
	colOrganizationID
	colUserType
	colUserKey
	colWorkload
	colResultStatus
	colObjectID
	colUserID
	colClientIP
	colScope
	colAppID
	colClientAppID
	colSessionID
	colUniqueTokenID
	colClientInfoString
	colLogonType
	colMailboxOwnerUPN
	colMailboxGUID
	colMailAccessType
	colIsThrottled
	colOperationCount
	colInternetMessageIDs
	colExternalAccess
	numColumns
)

var columnNames = [numColumns]string{
	colID:                 "id",
	colCreationTime:       "creation_time",
	colRecordType:         "record_type",
	colOperation:          "operation",
	colOrganizationID:     "organization_id",
	colUserType:           "user_type",
	colUserKey:            "user_key",
	colWorkload:           "workload",
	colResultStatus:       "result_status",
	colObjectID:           "object_id",
	colUserID:             "user_id",
	colClientIP:           "client_ip",
	colScope:              "scope",
	colAppID:              "app_id",
	colClientAppID:        "client_app_id",
	colSessionID:          "session_id",
	colUniqueTokenID:      "unique_token_id",
	colClientInfoString:   "client_info_string",
	colLogonType:          "logon_type",
	colMailboxOwnerUPN:    "mailbox_owner_upn",
	colMailboxGUID:        "mailbox_guid",
	colMailAccessType:     "mail_access_type",
	colIsThrottled:        "is_throttled",
	colOperationCount:     "operation_count",
	colInternetMessageIDs: "internet_message_ids",
	colExternalAccess:     "external_access",
}

func columnByName(name string) (column, bool) {
	i := slices.Index(columnNames[:], name)
	return column(i), i >= 0
}

// The configuration file, as decoded.
type mappingConfig struct {
	Columns    map[string]pathList        `json:"columns"`
	Constants  map[string]json.RawMessage `json:"constants"`
	TimeFormat string                     `json:"time_format"`
	IDFromHash bool                       `json:"id_from_hash"`
}

// pathList is one path or a list of them.
type pathList []string

func (l *pathList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = pathList{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(l))
}

var mappingName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// LoadMappings reads a file of named mappings (see MAPPING.md).
func LoadMappings(file string) (map[string]*Mapping, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m, err := ParseMappings(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return m, nil
}

// ParseMappings parses the content of a mappings file.
func ParseMappings(data []byte) (map[string]*Mapping, error) {
	var cfgs map[string]mappingConfig
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields() // a misspelt option must not be silently ignored
	if err := d.Decode(&cfgs); err != nil {
		return nil, fmt.Errorf("mappings: %w", err)
	}
	if d.More() {
		return nil, errors.New("mappings: data after the top-level object")
	}
	out := make(map[string]*Mapping, len(cfgs))
	for name, cfg := range cfgs {
		if !mappingName.MatchString(name) {
			return nil, fmt.Errorf("mapping %q: name must be letters, digits, '_', '.' or '-'", name)
		}
		m, err := newMapping(cfg)
		if err != nil {
			return nil, fmt.Errorf("mapping %q: %w", name, err)
		}
		out[name] = m
	}
	return out, nil
}

func newMapping(cfg mappingConfig) (*Mapping, error) {
	m := &Mapping{timeFormat: cfg.TimeFormat, idFromHash: cfg.IDFromHash}
	m.states.New = func() any { return new(mappingState) }
	if m.timeFormat == "" {
		m.timeFormat = "rfc3339"
	}
	if err := checkTimeFormat(m.timeFormat); err != nil {
		return nil, err
	}
	for name, paths := range cfg.Columns {
		c, ok := columnByName(name)
		if !ok {
			return nil, fmt.Errorf("unknown column %q (known: %s)", name, strings.Join(columnNames[:], ", "))
		}
		if len(paths) == 0 {
			return nil, fmt.Errorf("column %s: no paths", name)
		}
		for _, text := range paths {
			p, err := parsePath(text)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", name, err)
			}
			m.cols[c].paths = append(m.cols[c].paths, p)
		}
	}
	for name, value := range cfg.Constants {
		c, ok := columnByName(name)
		if !ok {
			return nil, fmt.Errorf("unknown column %q in constants", name)
		}
		if c == colID || c == colCreationTime {
			return nil, fmt.Errorf("column %s cannot be a constant", name)
		}
		// Parse reads constants as it reads events, so they must pass the
		// same validation (encoding/json lets unpaired surrogates through).
		value = bytes.TrimSpace(value)
		if _, reason := validate(value); reason != "" {
			return nil, fmt.Errorf("constant %s: %s", name, reason)
		}
		m.cols[c].constant = value
	}
	switch {
	case len(m.cols[colID].paths) == 0 && !m.idFromHash:
		return nil, errors.New(`no paths for column id (or set "id_from_hash": true)`)
	case len(m.cols[colCreationTime].paths) == 0:
		return nil, errors.New("no paths for column creation_time")
	case len(m.cols[colOperation].paths) == 0 && m.cols[colOperation].constant == nil:
		return nil, errors.New("no paths or constant for column operation")
	}
	// A constant must suit its column: convert it once now, as Parse would.
	for c := range numColumns {
		if k := m.cols[c].constant; k != nil {
			var st mappingState
			if _, err := m.convert(&st, c, path{}, k); err != nil {
				var fe *FieldError
				errors.As(err, &fe)
				return nil, fmt.Errorf("constant %s: %s", columnNames[c], fe.Reason)
			}
		}
	}
	return m, nil
}

func checkTimeFormat(f string) error {
	switch f {
	case "rfc3339", "unix", "unix_ms", "unix_us", "unix_ns":
		return nil
	}
	// Any other text is a Go layout; it must at least carry a whole date.
	ref := time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)
	t, err := time.Parse(f, ref.Format(f))
	if err != nil || t.Year() != 2006 || t.Month() != 1 || t.Day() != 2 {
		return fmt.Errorf("time_format %q is neither rfc3339, unix, unix_ms, unix_us, unix_ns nor a Go layout with a full date", f)
	}
	return nil
}

// parsePath splits a dotted path; "\." is a dot inside a key.
func parsePath(text string) (path, error) {
	p := path{text: text}
	var key []byte
	for i := 0; i <= len(text); i++ {
		switch {
		case i == len(text) || text[i] == '.':
			if len(key) == 0 {
				return path{}, fmt.Errorf("path %q has an empty segment", text)
			}
			seg := segment{key: string(key), index: -1}
			if n, err := strconv.Atoi(seg.key); err == nil && n >= 0 && seg.key[0] != '+' {
				seg.index = n
			}
			p.segs = append(p.segs, seg)
			key = key[:0]
		case text[i] == '\\' && i+1 < len(text) && text[i+1] == '.':
			key = append(key, '.')
			i++
		default:
			key = append(key, text[i])
		}
	}
	return p, nil
}

// lookup returns the value at p in the JSON value v, or nil.
func (p path) lookup(v []byte) []byte {
	return p.lookupFrom(v, 0)
}

// lookupTop is lookup in a record whose top-level members validateTop has
// listed, which spares scanning the record once per path.
func (p path) lookupTop(raw []byte, top []topMember) []byte {
	for i := len(top) - 1; i >= 0; i-- { // the last of repeated keys wins
		if m := top[i]; keyIs(raw[m.keyLo:m.keyHi], p.segs[0].key) {
			return p.lookupFrom(raw[m.valLo:m.valHi], 1)
		}
	}
	return nil
}

func (p path) lookupFrom(v []byte, from int) []byte {
	for _, s := range p.segs[from:] {
		switch {
		case len(v) == 0:
			return nil
		case v[0] == '{':
			v = member(v, s.key)
		case v[0] == '[' && s.index >= 0:
			v = element(v, s.index)
		default:
			return nil
		}
	}
	return v
}

// present reports whether a mapped value counts as there: not missing,
// not null and not an empty string.
func present(v []byte) bool {
	return !isNull(v) && string(v) != `""`
}

// Parse maps one event onto a Record, with the same validation and errors
// as Parser.Parse: the event must be a strict JSON object no larger than
// MaxRecordSize, with an id (unless id_from_hash), a creation_time and an
// operation. The FieldError names the event's field by its path.
func (m *Mapping) Parse(raw []byte) (Record, error) {
	raw = trimSpace(raw)
	st := m.states.Get().(*mappingState)
	defer func() {
		if cap(st.strs.buf) <= 64<<10 && cap(st.top) <= 4096 {
			m.states.Put(st)
		}
	}()
	st.top = st.top[:0]
	if err := checkRecord(raw, &st.top); err != nil {
		return Record{}, err
	}
	st.strs.reset()

	var spans [numColumns]span
	var r Record
	r.RecordType, r.UserType, r.Scope, r.LogonType = Absent, Absent, Absent, Absent
	msgStart := len(st.strs.spans)
	for c := range numColumns {
		v, p := m.value(raw, st.top, c)
		if v == nil {
			switch {
			case c == colID && m.idFromHash:
				// Stable across re-deliveries of the same bytes, so they
				// still deduplicate; 128 bits keep collisions out of reach.
				sum := sha256.Sum256(raw)
				var id [32]byte
				hex.Encode(id[:], sum[:16])
				spans[c] = st.strs.add(id[:])
			case c == colID || c == colCreationTime || c == colOperation:
				return m.failed(st, spans[colID], m.missing(c))
			}
			continue
		}
		out, err := m.convert(st, c, p, v)
		if err != nil {
			return m.failed(st, spans[colID], err)
		}
		switch c {
		case colCreationTime:
			r.CreationTime = out.t
		case colRecordType:
			r.RecordType = int32(out.n)
		case colUserType:
			r.UserType = int32(out.n)
		case colScope:
			r.Scope = int32(out.n)
		case colLogonType:
			r.LogonType = int32(out.n)
		case colOperationCount:
			r.OperationCount = out.n
		case colIsThrottled:
			r.IsThrottled = out.b
		case colExternalAccess:
			r.ExternalAccess = out.b
		default:
			spans[c] = out.s
		}
	}

	s := st.strs.string()
	r.ID = s.of(spans[colID])
	r.Operation = s.of(spans[colOperation])
	r.OrganizationID = s.of(spans[colOrganizationID])
	r.UserKey = s.of(spans[colUserKey])
	r.Workload = s.of(spans[colWorkload])
	r.ResultStatus = s.of(spans[colResultStatus])
	r.ObjectID = s.of(spans[colObjectID])
	r.UserID = s.of(spans[colUserID])
	r.ClientIP = s.of(spans[colClientIP])
	r.AppID = s.of(spans[colAppID])
	r.ClientAppID = s.of(spans[colClientAppID])
	r.SessionID = s.of(spans[colSessionID])
	r.UniqueTokenID = s.of(spans[colUniqueTokenID])
	r.ClientInfoString = s.of(spans[colClientInfoString])
	r.MailboxOwnerUPN = s.of(spans[colMailboxOwnerUPN])
	r.MailboxGUID = s.of(spans[colMailboxGUID])
	r.MailAccessType = s.of(spans[colMailAccessType])
	if msgs := st.strs.spans[msgStart:]; len(msgs) > 0 {
		r.InternetMessageIDs = make([]string, len(msgs))
		for i, sp := range msgs {
			r.InternetMessageIDs[i] = s.of(sp)
		}
	}
	r.Raw = append([]byte(nil), raw...)
	return r, nil
}

// value finds column c's value in the event: the first present path, else
// the constant. It returns nil if there is neither.
func (m *Mapping) value(raw []byte, top []topMember, c column) ([]byte, path) {
	rule := &m.cols[c]
	for _, p := range rule.paths {
		if v := p.lookupTop(raw, top); present(v) {
			return v, p
		}
	}
	if rule.constant != nil {
		return rule.constant, path{text: columnNames[c]}
	}
	return nil, path{}
}

func (m *Mapping) missing(c column) error {
	paths := m.cols[c].paths
	if len(paths) == 0 {
		return &FieldError{Field: columnNames[c], Reason: "missing"}
	}
	reason := "missing"
	if len(paths) > 1 {
		var also []string
		for _, p := range paths[1:] {
			also = append(also, p.text)
		}
		reason += " (nor " + strings.Join(also, ", ") + ")"
	}
	return &FieldError{Field: paths[0].text, Reason: reason}
}

func (m *Mapping) failed(st *mappingState, id span, err error) (Record, error) {
	return Record{ID: string(st.strs.buf[id.lo:id.hi])}, err
}

// converted is a column value of whichever type the column has.
type converted struct {
	s span
	n int64
	b bool
	t time.Time
}

// convert turns the value v found at p into column c's type. Only id,
// creation_time, operation and record_type can fail: the other columns, as
// in Parser, stay empty (or Absent) when the value does not fit.
func (m *Mapping) convert(st *mappingState, c column, p path, v []byte) (converted, error) {
	var out converted
	a := &st.strs
	fail := func(reason string) (converted, error) {
		return converted{}, &FieldError{Field: p.text, Reason: reason}
	}
	switch c {
	case colID, colOperation:
		if v[0] != '"' && v[0] != '-' && (v[0] < '0' || v[0] > '9') {
			return fail("want a string or a number, got " + kind(v))
		}
		if out.s = a.text(v); len(trimSpace(a.buf[out.s.lo:out.s.hi])) == 0 {
			return fail("empty")
		}
	case colCreationTime:
		t, err := m.parseTime(v)
		if err != nil {
			return fail(err.Error())
		}
		out.t = t
	case colRecordType:
		n, err := recordType(p.text, v)
		if err != nil {
			return converted{}, err
		}
		out.n = int64(n)
	case colUserType, colScope, colLogonType:
		out.n = int64(int32OrAbsent(v))
	case colOperationCount:
		out.n, _ = integer(v)
	case colIsThrottled, colExternalAccess:
		out.b, _ = boolean(v)
	case colClientIP:
		out.s = a.ip(v)
	case colInternetMessageIDs:
		add := func(v []byte) {
			if sp := a.text(v); !sp.empty() {
				a.spans = append(a.spans, sp)
			}
		}
		if v[0] == '[' {
			it := items(v)
			for _, e, ok := it.next(); ok; _, e, ok = it.next() {
				add(e)
			}
		} else {
			add(v)
		}
	default:
		out.s = a.text(v)
	}
	return out, nil
}

// parseTime reads creation_time in the mapping's format. The result is UTC.
func (m *Mapping) parseTime(v []byte) (time.Time, error) {
	s, isString := unquote(v)
	if !isString {
		if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
			return time.Time{}, fmt.Errorf("want a string or a number, got %s", kind(v))
		}
		s = v
	}
	var t time.Time
	ok := false
	switch m.timeFormat {
	case "rfc3339":
		t, ok = parseTime(s)
	case "unix":
		t, ok = parseUnix(s, time.Second)
	case "unix_ms":
		t, ok = parseUnix(s, time.Millisecond)
	case "unix_us":
		t, ok = parseUnix(s, time.Microsecond)
	case "unix_ns":
		t, ok = parseUnix(s, time.Nanosecond)
	default:
		var err error
		t, err = time.Parse(m.timeFormat, string(s))
		ok = err == nil
	}
	if !ok || t.Year() < 0 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("unparsable time %s (format %s)", quote(s), m.timeFormat)
	}
	return t.UTC(), nil
}

// parseUnix reads a count of units since the Unix epoch: exactly when it is
// an integer, to float precision when it has a fraction or an exponent.
func parseUnix(b []byte, unit time.Duration) (time.Time, bool) {
	b = trimSpace(b)
	if len(b) == 0 || !isNumberStart(b[0]) {
		return time.Time{}, false
	}
	per := int64(time.Second / unit)
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		return time.Unix(n/per, n%per*int64(unit)), true
	}
	f, err := strconv.ParseFloat(string(b), 64)
	sec := f / float64(per)
	if err != nil || !(math.Abs(sec) <= 1e12) { // also rejects ±Inf and NaN
		return time.Time{}, false
	}
	whole := math.Floor(sec)
	return time.Unix(int64(whole), int64(math.Round((sec-whole)*1e9))), true
}
